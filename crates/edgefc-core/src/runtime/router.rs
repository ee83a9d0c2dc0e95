//! The message router: MQTT-style topic filters and the routes of
//! `edgefc.json` that say which function receives which published message.

use crate::error::{Error, ErrorCode, Result};

/// A topic filter: levels separated by `/`; `+` matches exactly one level,
/// `#` (last level only) matches the rest, including nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFilter {
    text: String,
    levels: Vec<FilterLevel>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum FilterLevel {
    Exact(String),
    AnyOne,
    Rest,
}

impl TopicFilter {
    pub fn parse(filter: &str) -> Result<TopicFilter> {
        if filter.is_empty() {
            return Err(invalid("a topic filter cannot be empty"));
        }
        let parts: Vec<&str> = filter.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        for (index, part) in parts.iter().enumerate() {
            let level = match *part {
                "#" if index + 1 == parts.len() => FilterLevel::Rest,
                "#" => return Err(invalid(format!("\"#\" must be the last level of topic filter {filter}"))),
                "+" => FilterLevel::AnyOne,
                text if text.contains(['#', '+']) => {
                    return Err(invalid(format!("wildcards must fill a whole level in topic filter {filter}")))
                }
                text => FilterLevel::Exact(text.to_string()),
            };
            levels.push(level);
        }
        Ok(TopicFilter { text: filter.to_string(), levels })
    }

    /// The filter as written (what a broker is asked to subscribe to).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, topic: &str) -> bool {
        // As in MQTT, a wildcard in the first level does not match a topic that starts with '$'.
        if topic.starts_with('$') && !matches!(self.levels.first(), Some(FilterLevel::Exact(_))) {
            return false;
        }
        let mut topic_levels = topic.split('/');
        for level in &self.levels {
            match level {
                FilterLevel::Rest => return true,
                FilterLevel::AnyOne => {
                    if topic_levels.next().is_none() {
                        return false;
                    }
                }
                FilterLevel::Exact(expected) => {
                    if topic_levels.next() != Some(expected.as_str()) {
                        return false;
                    }
                }
            }
        }
        topic_levels.next().is_none()
    }
}

/// A topic one can publish to: not empty, no wildcards.
pub fn check_topic(topic: &str) -> Result<()> {
    if topic.is_empty() {
        return Err(invalid("the topic cannot be empty"));
    }
    if topic.contains(['#', '+']) {
        return Err(invalid(format!("cannot publish to {topic}: a topic has no wildcards")));
    }
    Ok(())
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidParams, message)
}

/// Who may publish along a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteSource {
    /// Any local publisher: a function, the CLI or a script (not a broker).
    Any,
    /// The function at this index of the config's functions.
    Function(usize),
    /// Messages from the MQTT broker at this index of the config's brokers.
    Broker(usize),
}

/// Where a route takes a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteTarget {
    /// The function at this index of the config's functions.
    Function(usize),
    /// The MQTT broker at this index of the config's brokers.
    Broker(usize),
}

/// Who published a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publisher {
    /// The CLI or a script, with the admin token.
    Admin,
    Function(usize),
    Broker(usize),
}

#[derive(Debug, Clone)]
pub struct Route {
    pub source: RouteSource,
    pub filter: TopicFilter,
    pub target: RouteTarget,
    /// `"qos": 1`: the message is durable for the target before the
    /// publish is acknowledged (a function's as an Async invocation, a
    /// broker's in its outbox), and delivered at least once; otherwise at
    /// most once, in memory.
    pub durable: bool,
}

/// Where a message goes, and whether durably.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub to: RouteTarget,
    pub durable: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Router {
        Router { routes }
    }

    /// Where a message on `topic` from `publisher` goes, in route order. A
    /// message has one source, so every matching route to a target has the
    /// same source and target: the target gets it once, however many routes
    /// match, durably if any of them says so.
    pub fn targets(&self, publisher: Publisher, topic: &str) -> Vec<Target> {
        let mut targets: Vec<Target> = Vec::new();
        for route in &self.routes {
            let source_matches = match (route.source, publisher) {
                (RouteSource::Any, Publisher::Admin | Publisher::Function(_)) => true,
                (RouteSource::Function(index), Publisher::Function(from)) => index == from,
                (RouteSource::Broker(index), Publisher::Broker(from)) => index == from,
                _ => false,
            };
            if !source_matches || !route.filter.matches(topic) {
                continue;
            }
            match targets.iter_mut().find(|target| target.to == route.target) {
                Some(target) => target.durable |= route.durable,
                None => targets.push(Target { to: route.target, durable: route.durable }),
            }
        }
        targets
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// What to subscribe to at broker `broker`: each filter of a route from
    /// it, and whether any such route is durable (QoS 1).
    pub fn broker_subscriptions(&self, broker: usize) -> Vec<(String, bool)> {
        let mut filters: Vec<(String, bool)> = Vec::new();
        for route in self.routes.iter().filter(|route| route.source == RouteSource::Broker(broker)) {
            match filters.iter_mut().find(|(filter, _)| filter == route.filter.as_str()) {
                Some((_, durable)) => *durable |= route.durable,
                None => filters.push((route.filter.as_str().to_string(), route.durable)),
            }
        }
        filters
    }
}

#[cfg(test)]
mod tests {
    // Topic filters (MQTT wildcard semantics) and route selection.
    use super::{check_topic, Publisher, Route, RouteSource, RouteTarget, Router, Target, TopicFilter};
    use crate::error::ErrorCode;

    #[test]
    fn wildcard_matching_table() {
        let table: &[(&str, &str, bool)] = &[
            ("/hello/world", "/hello/world", true),
            ("/hello/world", "/hello/world/x", false),
            ("/hello/world", "/hello", false),
            ("/hello/+", "/hello/world", true),
            ("/hello/+", "/hello/", true),
            ("/hello/+", "/hello", false),
            ("/hello/+", "/hello/world/deep", false),
            ("/+/world", "/hello/world", true),
            ("+/+", "/hello", true),
            ("/hello/#", "/hello", true),
            ("/hello/#", "/hello/world", true),
            ("/hello/#", "/hello/world/deep/er", true),
            ("/hello/#", "/hellO/world", false),
            ("/hello/#", "/other/world", false),
            ("#", "/anything/at/all", true),
            ("#", "$SYS/broker", false),
            ("+/broker", "$SYS/broker", false),
            ("$SYS/#", "$SYS/broker", true),
            ("/sys/things/+/+/services/#", "/sys/things/pk/dn/services/get", true),
            ("/sys/things/+/+/services/#", "/sys/things/pk/services/get", false),
            ("/a/+/c/#", "/a/b/c", true),
            ("/a/+/c/#", "/a/b/d", false),
        ];
        for (filter, topic, expected) in table {
            let parsed = TopicFilter::parse(filter).unwrap();
            assert_eq!(parsed.matches(topic), *expected, "filter {filter} on topic {topic}");
        }
    }

    #[test]
    fn malformed_filters_and_topics_are_rejected() {
        for filter in ["", "/a/#/b", "/a/b#", "/a+/b", "/#x"] {
            assert_eq!(TopicFilter::parse(filter).unwrap_err().code, ErrorCode::InvalidParams, "{filter}");
        }
        for topic in ["", "/a/+", "/a/#"] {
            assert_eq!(check_topic(topic).unwrap_err().code, ErrorCode::InvalidParams, "{topic}");
        }
        assert!(check_topic("/hello/world").is_ok());
    }

    fn route(source: RouteSource, filter: &str, target: usize) -> Route {
        Route { source, filter: TopicFilter::parse(filter).unwrap(), target: RouteTarget::Function(target), durable: false }
    }

    fn functions(router: &Router, publisher: Option<usize>, topic: &str) -> Vec<usize> {
        let publisher = publisher.map_or(Publisher::Admin, Publisher::Function);
        router
            .targets(publisher, topic)
            .iter()
            .map(|target| match target.to {
                RouteTarget::Function(index) => index,
                RouteTarget::Broker(index) => 1000 + index,
            })
            .collect()
    }

    #[test]
    fn a_target_gets_a_message_durably_when_any_matching_route_says_so() {
        let router = Router::new(vec![
            route(RouteSource::Any, "/hello/#", 0),
            Route { durable: true, ..route(RouteSource::Any, "/hello/world", 0) },
        ]);
        let to = RouteTarget::Function(0);
        assert_eq!(router.targets(Publisher::Admin, "/hello/world"), vec![Target { to, durable: true }]);
        assert_eq!(router.targets(Publisher::Admin, "/hello/there"), vec![Target { to, durable: false }]);
    }

    #[test]
    fn routes_select_targets_by_source_and_filter() {
        let router = Router::new(vec![
            route(RouteSource::Any, "/hello/#", 0),
            route(RouteSource::Function(5), "/hello/world", 1),
            route(RouteSource::Any, "/other", 2),
        ]);
        assert_eq!(functions(&router, None, "/hello/world"), vec![0]);
        assert_eq!(functions(&router, Some(5), "/hello/world"), vec![0, 1]);
        assert_eq!(functions(&router, Some(4), "/hello/world"), vec![0]);
        assert_eq!(functions(&router, Some(5), "/other"), vec![2]);
        assert!(functions(&router, Some(5), "/nowhere").is_empty());
    }

    #[test]
    fn routes_with_the_same_source_and_target_deliver_at_most_once() {
        let router = Router::new(vec![
            route(RouteSource::Any, "/hello/#", 0),
            route(RouteSource::Any, "/hello/+", 0),
            route(RouteSource::Any, "/hello/world", 0),
            route(RouteSource::Function(1), "/hello/world", 0),
            route(RouteSource::Function(1), "#", 0),
        ]);
        assert_eq!(functions(&router, None, "/hello/world"), vec![0]);
        assert_eq!(functions(&router, Some(1), "/hello/world"), vec![0]);
        assert_eq!(functions(&router, Some(1), "/elsewhere"), vec![0]);
    }

    #[test]
    fn broker_messages_follow_only_the_routes_from_their_broker() {
        let router = Router::new(vec![
            route(RouteSource::Any, "#", 0),
            route(RouteSource::Broker(0), "down/#", 1),
            Route { durable: true, ..route(RouteSource::Broker(0), "down/+", 2) },
            route(RouteSource::Broker(1), "down/#", 3),
            Route { target: RouteTarget::Broker(0), ..route(RouteSource::Function(4), "up/#", 0) },
        ]);
        assert_eq!(
            router.targets(Publisher::Broker(0), "down/x"),
            vec![Target { to: RouteTarget::Function(1), durable: false }, Target { to: RouteTarget::Function(2), durable: true },]
        );
        assert_eq!(functions(&router, Some(4), "up/y"), vec![0, 1000]);
        assert_eq!(router.broker_subscriptions(0), vec![("down/#".to_string(), false), ("down/+".to_string(), true)]);
        assert!(router.broker_subscriptions(2).is_empty());
    }
}
