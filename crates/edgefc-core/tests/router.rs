//! Topic filters (MQTT wildcard semantics) and route selection.

use edgefc_core::router::{check_topic, Route, RouteSource, Router, TopicFilter};
use edgefc_core::ErrorCode;

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
    Route { source, filter: TopicFilter::parse(filter).unwrap(), target }
}

#[test]
fn routes_select_targets_by_source_and_filter() {
    let router = Router::new(vec![
        route(RouteSource::Any, "/hello/#", 0),
        route(RouteSource::Function(5), "/hello/world", 1),
        route(RouteSource::Any, "/other", 2),
    ]);
    assert_eq!(router.targets(None, "/hello/world"), vec![0]);
    assert_eq!(router.targets(Some(5), "/hello/world"), vec![0, 1]);
    assert_eq!(router.targets(Some(4), "/hello/world"), vec![0]);
    assert_eq!(router.targets(Some(5), "/other"), vec![2]);
    assert!(router.targets(Some(5), "/nowhere").is_empty());
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
    assert_eq!(router.targets(None, "/hello/world"), vec![0]);
    assert_eq!(router.targets(Some(1), "/hello/world"), vec![0]);
    assert_eq!(router.targets(Some(1), "/elsewhere"), vec![0]);
}
