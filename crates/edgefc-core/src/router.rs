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
}

#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Router {
        Router { routes }
    }

    /// The functions (by index) that receive a message on `topic` from
    /// `publisher` (a function's index; `None` for the CLI and scripts), in
    /// route order. A message has one source, so every matching route to a
    /// target has the same source and target: the target gets it once,
    /// however many routes match.
    pub fn targets(&self, publisher: Option<usize>, topic: &str) -> Vec<usize> {
        let mut targets = Vec::new();
        for route in &self.routes {
            let source_matches = match route.source {
                RouteSource::Any => true,
                RouteSource::Function(index) => publisher == Some(index),
            };
            if source_matches && !targets.contains(&route.target) && route.filter.matches(topic) {
                targets.push(route.target);
            }
        }
        targets
    }
}
