//! The message router: MQTT-style topic filters and the routes of
//! `edgefc.json` that say which function receives which published message.

use crate::error::{Error, ErrorCode, Result};

/// A topic filter: levels separated by `/`; `+` matches exactly one level,
/// `#` (last level only) matches the rest, including nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFilter {
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
        Ok(TopicFilter { levels })
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
    Any,
    /// The function at this index of the config's functions.
    Function(usize),
}

#[derive(Debug, Clone)]
pub struct Route {
    pub source: RouteSource,
    pub filter: TopicFilter,
    /// Index of the target function.
    pub target: usize,
    /// `"qos": 1`: the message is durable for the target before the
    /// publish is acknowledged, and delivered at least once (as an Async
    /// invocation); otherwise at most once, in memory.
    pub durable: bool,
}

/// A function a message goes to, and whether durably.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub function: usize,
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

    /// The functions that receive a message on `topic` from `publisher` (a
    /// function's index; `None` for the CLI and scripts), in route order. A
    /// message has one source, so every matching route to a target has the
    /// same source and target: the target gets it once, however many routes
    /// match, durably if any of them says so.
    pub fn targets(&self, publisher: Option<usize>, topic: &str) -> Vec<Target> {
        let mut targets: Vec<Target> = Vec::new();
        for route in &self.routes {
            let source_matches = match route.source {
                RouteSource::Any => true,
                RouteSource::Function(index) => publisher == Some(index),
            };
            if !source_matches || !route.filter.matches(topic) {
                continue;
            }
            match targets.iter_mut().find(|target| target.function == route.target) {
                Some(target) => target.durable |= route.durable,
                None => targets.push(Target { function: route.target, durable: route.durable }),
            }
        }
        targets
    }
}

#[cfg(test)]
mod tests {
    // Topic filters (MQTT wildcard semantics) and route selection.
    use super::{check_topic, Route, RouteSource, Router, TopicFilter};
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
        Route { source, filter: TopicFilter::parse(filter).unwrap(), target, durable: false }
    }

    fn functions(router: &Router, publisher: Option<usize>, topic: &str) -> Vec<usize> {
        router.targets(publisher, topic).iter().map(|target| target.function).collect()
    }

    #[test]
    fn a_target_gets_a_message_durably_when_any_matching_route_says_so() {
        let router = Router::new(vec![
            route(RouteSource::Any, "/hello/#", 0),
            Route { durable: true, ..route(RouteSource::Any, "/hello/world", 0) },
        ]);
        assert_eq!(router.targets(None, "/hello/world"), vec![super::Target { function: 0, durable: true }]);
        assert_eq!(router.targets(None, "/hello/there"), vec![super::Target { function: 0, durable: false }]);
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
}
