//! Every queue and buffer of the runtime has a bound: these peers break each
//! one, and each test checks the named outcome (a refusal code, a counter, a
//! closed connection) and that a well-behaved client is still answered.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use edgefc_core::proto::{Frame, InvokeRequest, Payload, Reply, PROTOCOL_VERSION};
use edgefc_core::runtime::Config;
use edgefc_core::ErrorCode;

fn count(stats: &serde_json::Value, pointer: &str) -> u64 {
    stats.pointer(pointer).and_then(|value| value.as_u64()).unwrap_or_else(|| panic!("no {pointer} in {stats}"))
}

/// A good client is still answered.
async fn still_answered(fixture: &Fixture) {
    let client = fixture.client().await;
    let result = completed(&client, sync("echo", Payload::text("still here"))).await;
    assert_eq!(result.payload, Payload::text("still here"));
}

/// A raw subscriber to `#` that never reads what it is sent.
async fn stalled_subscriber(fixture: &Fixture) -> Raw {
    let mut raw = Raw::admin(fixture).await;
    raw.send(&Frame::Subscribe { id: 1, topic_filter: "#".into() }).await;
    assert!(matches!(raw.read_frame().await, Some(Frame::Accepted { .. })), "subscribed");
    raw
}

/// Publishes 1 KiB messages until `enough` holds for the stats; returns how many.
async fn publish_until(fixture: &Fixture, enough: impl Fn(&serde_json::Value) -> bool) -> usize {
    let publisher = fixture.client().await;
    let payload = Payload::Binary(Bytes::from(vec![7u8; 1024]));
    let mut published = 0;
    loop {
        for _ in 0..256 {
            publish(&publisher, "/load", payload.clone()).await;
            published += 1;
        }
        if enough(&stats(&publisher).await) {
            return published;
        }
    }
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_misses_messages_while_others_get_every_one() {
    let fixture = Fixture::start(r#""connections": {"maxOutputBytes": 65536},"#).await;
    let _stalled = stalled_subscriber(&fixture).await;
    let good = Arc::new(fixture.client().await);
    subscribe(&good, "#").await;
    let reader = {
        let good = good.clone();
        tokio::spawn(async move {
            let mut received = 0;
            while let Some(batch) = good.next_messages().await {
                received += batch.len();
                if batch.iter().any(|message| message.topic == "/last") {
                    return received;
                }
            }
            received
        })
    };
    let published = publish_until(&fixture, |stats| count(stats, "/droppedSlowSubscriber") > 0).await;
    publish(&fixture.client().await, "/last", Payload::text("end")).await;
    assert_eq!(reader.await.unwrap(), published + 1, "the reading subscriber got every message");
    still_answered(&fixture).await;
    fixture.stop().await;
}

#[tokio::test]
async fn a_slow_subscriber_can_be_disconnected_instead() {
    let fixture = Fixture::start(r#""connections": {"maxOutputBytes": 65536, "slowSubscriber": "disconnect"},"#).await;
    let mut stalled = stalled_subscriber(&fixture).await;
    publish_until(&fixture, |stats| count(stats, "/disconnectedSlowSubscriber") > 0).await;
    stalled.closed().await;
    let admin = fixture.client().await;
    stats_when(&admin, |stats| count(stats, "/subscriptions") == 0).await;
    still_answered(&fixture).await;
    fixture.stop().await;
}

#[tokio::test]
async fn a_caller_that_does_not_read_its_replies_stops_being_read() {
    let fixture =
        Fixture::start(r#""maxPayloadBytes": 131072, "connections": {"maxOutputBytes": 65536, "closeOutputBytes": 1048576},"#)
            .await;
    let mut flooder = Raw::admin(&fixture).await;
    let payload = Payload::Binary(Bytes::from(vec![1u8; 64 * 1024]));
    let flood = tokio::spawn(async move {
        for id in 1.. {
            let frame = Frame::Invoke {
                id,
                asynchronous: false,
                default_timeout_secs: 0,
                caller_timeout_ms: 0,
                target: "echo".into(),
                invoker_context: String::new(),
                payload: payload.clone(),
            };
            flooder.send(&frame).await;
        }
    });
    let admin = fixture.client().await;
    let stats = stats_when(&admin, |stats| count(stats, "/connections/readPauses") > 0).await;
    assert!(count(&stats, "/connections/outputBytes") <= 2 * 1024 * 1024, "bounded output: {stats}");
    still_answered(&fixture).await;
    flood.abort();
    fixture.stop().await;
}

#[tokio::test]
async fn requests_in_flight_on_one_connection_are_bounded() {
    let fixture = Fixture::start(r#""connections": {"maxInFlight": 2},"#).await;
    let caller = Arc::new(fixture.client().await);
    let gated: Vec<_> = (0..2)
        .map(|_| {
            let caller = caller.clone();
            tokio::spawn(async move { invoke(&caller, sync("echo", Payload::text("gate"))).await })
        })
        .collect();
    let admin = fixture.client().await;
    stats_when(&admin, |stats| count(stats, "/queues/functions/0/running") == 2).await;
    let error = invoke(&caller, sync("echo", Payload::text("third"))).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::QueueFull);
    assert!(error.message.contains("connections.maxInFlight"), "{}", error.message);
    assert_eq!(count(&stats(&admin).await, "/connections/refusedInFlight"), 1);
    fixture.launcher.gate.notify_waiters();
    for call in gated {
        assert!(matches!(call.await.unwrap(), Ok(Reply::Completed(_))));
    }
    fixture.stop().await;
}

fn gated_payload(bytes: usize) -> Payload {
    let mut payload = b"gate".to_vec();
    payload.resize(bytes, b'.');
    Payload::Binary(Bytes::from(payload))
}

#[tokio::test]
async fn subscriptions_per_connection_are_bounded() {
    let fixture = Fixture::start(r#""connections": {"maxSubscriptions": 2},"#).await;
    let admin = fixture.client().await;
    subscribe(&admin, "/a").await;
    subscribe(&admin, "/b").await;
    let error = admin.call(edgefc_core::proto::Request::Subscribe { topic_filter: "/c".into() }).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::QueueFull);
    assert!(error.message.contains("connections.maxSubscriptions"), "{}", error.message);
    subscribe(&fixture.client().await, "/c").await;
    fixture.stop().await;
}

#[tokio::test]
async fn queues_are_bounded_by_bytes_per_function_and_for_the_runtime() {
    let fixture = Fixture::start(r#""maxQueuedBytes": 2048, "maxTotalQueuedBytes": 3072,"#).await;
    let caller = Arc::new(fixture.client().await);
    let start = |target: &'static str| {
        let caller = caller.clone();
        tokio::spawn(async move { invoke(&caller, sync(target, gated_payload(1000))).await })
    };
    let held = vec![start("echo"), start("echo")];
    let admin = fixture.client().await;
    stats_when(&admin, |stats| count(stats, "/queues/functions/0/admitted/bytes") == 2000).await;
    let error = invoke(&caller, sync("echo", gated_payload(1000))).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::QueueFull);
    assert!(error.message.contains("function echo"), "{}", error.message);
    let narrow = "acs:fc:::service:S:function:narrow";
    let third = {
        let caller = caller.clone();
        tokio::spawn(async move { invoke(&caller, sync(narrow, gated_payload(1000))).await })
    };
    stats_when(&admin, |stats| count(stats, "/queues/total/bytes") == 3000).await;
    let error = invoke(&caller, sync(narrow, gated_payload(1000))).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::QueueFull);
    assert!(error.message.contains("runtime's queue"), "{}", error.message);
    let stats = stats(&admin).await;
    assert_eq!(count(&stats, "/queues/functions/0/admitted/refused"), 1);
    assert_eq!(count(&stats, "/queues/total/refused"), 1);
    fixture.launcher.gate.notify_waiters();
    for call in held.into_iter().chain([third]) {
        assert!(matches!(call.await.unwrap(), Ok(Reply::Completed(_))));
    }
    fixture.stop().await;
}

#[tokio::test]
async fn an_invoker_context_counts_towards_the_queue_bytes() {
    let fixture = Fixture::start(r#""maxQueuedBytes": 2048,"#).await;
    let caller = Arc::new(fixture.client().await);
    let with_context = || InvokeRequest { invoker_context: "c".repeat(1500), ..sync("echo", Payload::text("gate")) };
    let held = {
        let (caller, request) = (caller.clone(), with_context());
        tokio::spawn(async move { invoke(&caller, request).await })
    };
    let admin = fixture.client().await;
    stats_when(&admin, |stats| count(stats, "/queues/functions/0/admitted/bytes") == 1504).await;
    assert_eq!(invoke(&caller, with_context()).await.unwrap_err().code, ErrorCode::QueueFull);
    fixture.launcher.gate.notify_waiters();
    assert!(matches!(held.await.unwrap(), Ok(Reply::Completed(_))));
    fixture.stop().await;
}

#[tokio::test]
async fn a_hello_must_be_small_and_come_in_time() {
    let fixture = Fixture::start(r#""connections": {"helloTimeoutMs": 50},"#).await;
    let mut large = Raw::connect(&fixture).await;
    large.send(&Frame::Hello { version: PROTOCOL_VERSION, serve: false, token: "t".repeat(8192) }).await;
    match large.read_frame().await {
        Some(Frame::Failure { code, .. }) => assert_eq!(code, ErrorCode::Protocol),
        other => panic!("expected a Failure, got {other:?}"),
    }
    large.closed().await;
    let mut silent = Raw::connect(&fixture).await;
    silent.closed().await;
    let admin = fixture.client().await;
    let stats = stats(&admin).await;
    assert_eq!(count(&stats, "/connections/helloRefused"), 1);
    assert_eq!(count(&stats, "/connections/helloTimeouts"), 1);
    fixture.stop().await;
}

#[tokio::test]
async fn connections_that_never_say_hello_cannot_keep_clients_out() {
    let fixture = Fixture::start(r#""connections": {"maxUnauthenticated": 2},"#).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(Raw::connect(&fixture).await);
    }
    idle[0].closed().await;
    still_answered(&fixture).await;
    let stats = stats(&fixture.client().await).await;
    assert!(count(&stats, "/connections/evictedUnauthenticated") >= 2, "{stats}");
    fixture.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_maximum_are_refused() {
    let fixture = Fixture::start(r#""connections": {"max": 1},"#).await;
    let first = fixture.client().await;
    let error = edgefc_core::client::Client::connect(
        &edgefc_core::client::ConnectOptions::new(fixture.handle().socket_path(), fixture.handle().admin_token()),
        Default::default(),
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(error.code, ErrorCode::TooManyConnections);
    assert_eq!(count(&stats(&first).await, "/connections/refusedTooMany"), 1);
    fixture.stop().await;
}

#[test]
fn every_number_in_the_config_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let function = |key: &str, value: &str| {
        format!(r#"{{"functions": [{{"serviceName": "S", "functionName": "f", "codeDir": ".", "{key}": {value}}}]}}"#)
    };
    let cases = [
        (function("maxConcurrency", "2305843009213693952"), "maxConcurrency must be between 1 and 10000"),
        (function("timeoutMs", "99999999999"), "timeoutMs must be between"),
        (function("idleTimeoutMs", "0"), "idleTimeoutMs must be between"),
        (function("maxQueuedInvocations", "1000000000"), "maxQueuedInvocations must be between"),
        (function("maxQueuedBytes", "1"), "maxQueuedBytes must be between"),
        (r#"{"functions": [], "maxPayloadBytes": 1073741824}"#.into(), "maxPayloadBytes must be between"),
        (r#"{"functions": [], "maxTotalQueuedBytes": 0}"#.into(), "maxTotalQueuedBytes must be between"),
        (r#"{"functions": [], "connections": {"max": 0}}"#.into(), "connections.max must be between"),
        (r#"{"functions": [], "connections": {"maxOutputBytes": 1}}"#.into(), "connections.maxOutputBytes"),
        (
            r#"{"functions": [], "connections": {"maxOutputBytes": 1048576, "closeOutputBytes": 65536}}"#.into(),
            "connections.closeOutputBytes",
        ),
        (r#"{"functions": [], "connections": {"slowSubscriber": "ignore"}}"#.into(), "unknown variant"),
        (r#"{"functions": [], "log": {"maxLineBytes": 99999999999}}"#.into(), "log.maxLineBytes"),
        (r#"{"functions": [], "store": {"cacheBytes": 4096}}"#.into(), "store.cacheBytes must be between"),
    ];
    for (text, expected) in cases {
        let error = Config::parse(&text, dir.path()).unwrap_err();
        assert_eq!(error.code, ErrorCode::Config);
        assert!(error.message.contains(expected), "{text}: {}", error.message);
        assert!(!error.message.contains('\n'), "one line: {}", error.message);
    }
}
