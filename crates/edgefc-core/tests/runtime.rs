//! The runtime and the client, end to end over a real Unix socket.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use edgefc_core::client::{Client, ConnectOptions, Sinks};
use edgefc_core::proto::{FunctionError, InvokeRequest, Payload, Reply, SyncResult};
use edgefc_core::runtime::Config;
use edgefc_core::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

#[tokio::test]
async fn sync_invocations_round_trip_text_and_binary() {
    let fixture = Fixture::start("").await;
    let client = fixture.client().await;
    let binary = Payload::Binary(Bytes::from((0..=255u8).collect::<Vec<_>>()));
    for payload in [Payload::text("hello"), Payload::empty_text(), binary, Payload::Binary(Bytes::new())] {
        let result = completed(&client, sync("echo", payload.clone())).await;
        assert_eq!(
            result,
            SyncResult { status: 200, function_error: FunctionError::None, reply_context: String::new(), payload }
        );
    }
    let by_arn = completed(&client, sync("acs:fc:::service:S:function:echo", Payload::text("arn"))).await;
    assert_eq!(by_arn.payload, Payload::text("arn"));
    assert_eq!(fixture.launcher.launches.load(Ordering::SeqCst), 1, "one worker serves every call");
    fixture.stop().await;
}

#[tokio::test]
async fn a_handled_error_reaches_the_caller() {
    let fixture = Fixture::start("").await;
    let result = completed(&fixture.client().await, sync("echo", Payload::text("fail"))).await;
    assert_eq!(result.function_error, FunctionError::Handled);
    fixture.stop().await;
}

#[tokio::test]
async fn async_invocations_are_accepted_with_an_id() {
    let fixture = Fixture::start("").await;
    let client = fixture.client().await;
    let request = InvokeRequest { asynchronous: true, ..sync("echo", Payload::text("later")) };
    match invoke(&client, request).await.unwrap() {
        Reply::Accepted { accepted_id } => assert_eq!(accepted_id.len(), 36),
        other => panic!("expected Accepted, got {other:?}"),
    }
    fixture.stop().await;
}

#[tokio::test]
async fn unknown_functions_are_reported() {
    let fixture = Fixture::start("").await;
    let error = invoke(&fixture.client().await, sync("missing", Payload::empty_text())).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::FunctionNotFound);
    fixture.stop().await;
}

#[tokio::test]
async fn a_bare_function_name_reaches_its_function() {
    let fixture = Fixture::start("").await;
    let client = fixture.client().await;
    let result = completed(&client, sync("edgefc:name:narrow", Payload::text("by name"))).await;
    assert_eq!(result.payload, Payload::text("by name"));
    let error = invoke(&client, sync("edgefc:name:nobody", Payload::empty_text())).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::FunctionNotFound);
    assert!(error.message.contains("no function is named nobody"), "{}", error.message);
    fixture.stop().await;
}

#[test]
fn a_bare_name_means_the_callers_own_service_first_then_the_only_one_of_that_name() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"{"functions": [
        {"serviceName": "A", "functionName": "add", "codeDir": "."},
        {"serviceName": "B", "functionName": "add", "codeDir": "."},
        {"serviceName": "B", "functionName": "only", "codeDir": "."},
        {"serviceName": "C", "functionName": "x", "functionId": "add-by-id", "codeDir": "."}
    ]}"#;
    let table = Config::parse(text, dir.path()).unwrap().table;
    assert_eq!(table.by_function_name("add", Some("A")).unwrap(), 0);
    assert_eq!(table.by_function_name("add", Some("B")).unwrap(), 1);
    assert_eq!(table.by_function_name("only", Some("A")).unwrap(), 2);
    assert_eq!(table.by_function_name("only", None).unwrap(), 2);
    assert_eq!(table.by_function_name("add-by-id", None).unwrap(), 3, "an id is the last resort");
    for own_service in [None, Some("C")] {
        let error = table.by_function_name("add", own_service).unwrap_err();
        assert_eq!(error.code, ErrorCode::FunctionNotFound);
        assert!(error.message.contains("ambiguous: it names A/add and B/add"), "{}", error.message);
    }
}

#[test]
fn each_flavor_has_its_platforms_default_handler() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"{"functions": [
        {"serviceName": "S", "functionName": "a", "codeDir": "."},
        {"serviceName": "S", "functionName": "b", "codeDir": ".", "flavor": "wechat"},
        {"serviceName": "S", "functionName": "c", "codeDir": ".", "flavor": "minapp"},
        {"serviceName": "S", "functionName": "d", "codeDir": ".", "flavor": "supabase"},
        {"serviceName": "S", "functionName": "e", "codeDir": ".", "flavor": "supabase", "handler": "main.fetch"}
    ]}"#;
    let config = Config::parse(text, dir.path()).unwrap();
    let handlers: Vec<String> = config.functions.iter().map(|function| function.handler()).collect();
    assert_eq!(handlers, ["index.handler", "index.main", "index.main", "index", "main.fetch"]);
    // No caller's API gets more time than a config could give (an hour).
    assert_eq!(config.functions[0].timeout_for(u16::MAX), Duration::from_secs(3600));
    assert_eq!(config.functions[0].timeout_for(300), Duration::from_secs(300));
    for (entry, expected) in [
        (r#""flavor": "aws""#, "unknown variant"),
        (r#""flavor": "wechat", "handler": "index""#, "handler must look like \"index.handler\""),
    ] {
        let text = format!(r#"{{"functions": [{{"serviceName": "S", "functionName": "f", "codeDir": ".", {entry}}}]}}"#);
        let error = Config::parse(&text, dir.path()).unwrap_err();
        assert!(error.message.contains(expected), "{entry}: {}", error.message);
    }
}

/// On a paused clock: the in-process handler's "sleep:" and the timeouts run on it.
#[tokio::test(start_paused = true)]
async fn a_callers_default_timeout_applies_only_to_functions_without_their_own() {
    let fixture = Fixture::start("").await;
    let client = fixture.client().await;
    let with_default = |target: &str, seconds: u16, payload: &str| InvokeRequest {
        default_timeout_secs: seconds,
        ..sync(target, Payload::text(payload.to_string()))
    };
    // echo sets no timeoutMs: the runtime's 5 s, or the caller's.
    let result = completed(&client, with_default("echo", 1, "sleep:1500")).await;
    assert_eq!(result.function_error, FunctionError::Unhandled);
    assert!(String::from_utf8_lossy(result.payload.bytes()).contains("timed out after 1000 ms"));
    let result = completed(&client, with_default("echo", 0, "sleep:1500")).await;
    assert_eq!(result.function_error, FunctionError::None);
    let result = completed(&client, with_default("echo", 10, "sleep:7000")).await;
    assert_eq!(result.function_error, FunctionError::None, "10 s replace the runtime's 5 s");
    // slow's own timeoutMs (200) wins over the caller's 10 s.
    let result = completed(&client, with_default(SLOW, 10, "sleep:300")).await;
    assert!(String::from_utf8_lossy(result.payload.bytes()).contains("timed out after 200 ms"));
    fixture.stop().await;
}

#[tokio::test]
async fn a_wrong_token_is_refused() {
    let fixture = Fixture::start("").await;
    let error =
        Client::connect(&ConnectOptions::new(fixture.handle().socket_path(), "wrong"), Sinks::default()).await.err().unwrap();
    assert_eq!(error.code, ErrorCode::Unauthorized);
    fixture.stop().await;
}

#[tokio::test]
async fn the_admin_token_cannot_serve_tasks() {
    let fixture = Fixture::start("").await;
    let mut options = ConnectOptions::new(fixture.handle().socket_path(), fixture.handle().admin_token());
    options.serve = true;
    assert_eq!(Client::connect(&options, Sinks::default()).await.err().unwrap().code, ErrorCode::Unauthorized);
    fixture.stop().await;
}

#[tokio::test]
async fn oversized_payloads_fail_alone() {
    let fixture = Fixture::start(r#""maxPayloadBytes": 1000,"#).await;
    let client = fixture.client().await;
    assert_eq!(client.max_payload(), 1000);
    let exact = Payload::Binary(vec![1; 1000].into());
    assert_eq!(completed(&client, sync("echo", exact.clone())).await.payload, exact);
    let error = invoke(&client, sync("echo", Payload::Binary(vec![1; 1001].into()))).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::PayloadTooLarge);
    assert_eq!(completed(&client, sync("echo", Payload::text("after"))).await.payload, Payload::text("after"));
    fixture.stop().await;
}

#[tokio::test]
async fn a_malformed_frame_closes_only_its_own_connection() {
    let fixture = Fixture::start("").await;
    let good = fixture.client().await;
    for garbage in [
        &[5u8, 0, 0, 0, 1, 2, 3, 4, 5][..],                      // shorter than a header
        &[0xff, 0xff, 0xff, 0x7f][..],                           // oversized
        &[12, 0, 0, 0, 99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..], // unknown kind
    ] {
        let mut raw = UnixStream::connect(fixture.handle().socket_path()).await.unwrap();
        raw.write_all(garbage).await.unwrap();
        let mut sink = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut sink)).await;
        assert!(closed.is_ok(), "the runtime closed the bad connection");
    }
    // A truncated frame followed by end of stream.
    let mut raw = UnixStream::connect(fixture.handle().socket_path()).await.unwrap();
    raw.write_all(&[40, 0, 0, 0, 1, 0]).await.unwrap();
    raw.shutdown().await.unwrap();
    let mut sink = Vec::new();
    assert!(tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut sink)).await.is_ok());

    assert_eq!(completed(&good, sync("echo", Payload::text("unharmed"))).await.payload, Payload::text("unharmed"));
    fixture.stop().await;
}

#[tokio::test]
async fn a_timed_out_invocation_is_unhandled_and_its_worker_replaced() {
    let fixture = Fixture::start("").await;
    let client = fixture.client().await;
    let result = completed(&client, sync(SLOW, Payload::text("hang"))).await;
    assert_eq!(result.function_error, FunctionError::Unhandled);
    assert!(String::from_utf8_lossy(result.payload.bytes()).contains("TimeoutError"));
    assert_eq!(completed(&client, sync(SLOW, Payload::text("ok"))).await.payload, Payload::text("ok"));
    assert_eq!(fixture.launcher.launches.load(Ordering::SeqCst), 2, "a new worker answered");
    fixture.stop().await;
}

/// On a paused clock, so that the calls' timeouts fall exactly where meant.
#[tokio::test(start_paused = true)]
async fn a_timeout_fails_only_its_own_call_and_the_others_finish_before_the_worker_is_replaced() {
    let fixture = Fixture::start("").await;
    let caller = Arc::new(fixture.client().await);
    let call = |payload: &'static str| {
        let caller = caller.clone();
        tokio::spawn(async move { invoke(&caller, sync(SLOW, Payload::text(payload))).await })
    };
    // `slow` times out after 200 ms: the stuck call at 200 ms, the others,
    // started at 100 ms and done at 250 ms, within their own.
    let stuck = call("hang");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let good: Vec<_> = (0..19).map(|_| call("sleep:150")).collect();
    match stuck.await.unwrap() {
        Ok(Reply::Completed(result)) => assert_eq!(result.function_error, FunctionError::Unhandled),
        other => panic!("expected a timeout, got {other:?}"),
    }
    for call in good {
        match call.await.unwrap() {
            Ok(Reply::Completed(result)) => assert_eq!(result.payload, Payload::text("sleep:150")),
            other => panic!("a good call failed: {other:?}"),
        }
    }
    let after = completed(&caller, sync(SLOW, Payload::text("after"))).await;
    assert_eq!(after.payload, Payload::text("after"));
    assert_eq!(fixture.launcher.launches.load(Ordering::SeqCst), 2, "the worker was replaced");
    fixture.stop().await;
}

#[tokio::test]
async fn concurrency_is_limited_per_function_and_the_rest_queue() {
    let fixture = Fixture::start("").await;
    let client = Arc::new(fixture.client().await);
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(
                async move { completed(&client, sync("acs:fc:::service:S:function:narrow", Payload::text("gate"))).await },
            )
        })
        .collect();
    // Open the gate one waiter at a time until every call has finished.
    let mut pending = calls;
    while !pending.is_empty() {
        fixture.launcher.gate.notify_one();
        let (done, _, rest) = futures_util::future::select_all(pending).await;
        assert_eq!(done.unwrap().payload, Payload::text("opened"));
        pending = rest;
    }
    assert_eq!(fixture.launcher.peak.load(Ordering::SeqCst), 2, "never more than maxConcurrency at once");
    fixture.stop().await;
}

#[tokio::test]
async fn a_full_queue_is_refused() {
    let fixture = Fixture::start(r#""maxQueuedInvocations": 1,"#).await;
    let client = Arc::new(fixture.client().await);
    // narrow runs 2 and queues 1: of 4 calls held at the gate, one is refused.
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { invoke(&client, sync("acs:fc:::service:S:function:narrow", Payload::text("gate"))).await })
        })
        .collect();
    let (first, _, mut pending) = futures_util::future::select_all(calls).await;
    assert_eq!(first.unwrap().unwrap_err().code, ErrorCode::QueueFull, "the first answer is the refusal");
    while !pending.is_empty() {
        fixture.launcher.gate.notify_one();
        let (done, _, rest) = futures_util::future::select_all(pending).await;
        assert!(matches!(done.unwrap(), Ok(Reply::Completed(_))));
        pending = rest;
    }
    fixture.stop().await;
}

#[tokio::test]
async fn stopping_the_runtime_fails_waiting_callers_and_removes_the_socket() {
    let fixture = Fixture::start("").await;
    let client = Arc::new(fixture.client().await);
    let socket = fixture.handle().socket_path().to_path_buf();
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { invoke(&client, sync("echo", Payload::text("gate"))).await })
    };
    while fixture.launcher.running.load(Ordering::SeqCst) < 1 {
        tokio::task::yield_now().await;
    }
    fixture.stop().await;
    let error = waiting.await.unwrap().unwrap_err();
    assert_eq!(error.code, ErrorCode::RuntimeUnavailable);
    assert!(!socket.exists());
    let error = Client::connect(&ConnectOptions::new(&socket, "t"), Sinks::default()).await.err().unwrap();
    assert_eq!(error.code, ErrorCode::RuntimeUnavailable);
}

#[tokio::test]
async fn overlong_fields_are_refused_before_sending_and_long_error_messages_are_cut() {
    let fixture = Fixture::start("").await;
    let client = fixture.client().await;
    let request = InvokeRequest { invoker_context: "c".repeat(70_000), ..sync("echo", Payload::empty_text()) };
    assert_eq!(invoke(&client, request).await.unwrap_err().code, ErrorCode::InvalidParams);
    // The runtime's "does not exist" message quotes the name: it must still arrive.
    let error = invoke(&client, sync(&"z".repeat(65_530), Payload::empty_text())).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::FunctionNotFound);
    assert!(error.message.len() <= u16::MAX as usize);
    fixture.stop().await;
}

#[tokio::test]
async fn messages_reach_subscribers_and_subscriptions_end_with_their_connection() {
    let fixture = Fixture::start("").await;
    let admin = fixture.client().await;
    let subscriber = fixture.client().await;
    subscribe(&subscriber, "/hello/+").await;
    publish(&admin, "/hello/world", Payload::Binary(Bytes::from_static(&[0, 1, 2]))).await;
    publish(&admin, "/other", Payload::text("unseen")).await;
    let messages = subscriber.next_messages().await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].topic, "/hello/world");
    assert_eq!(messages[0].source, "local");
    assert_eq!(messages[0].payload, Payload::Binary(Bytes::from_static(&[0, 1, 2])));
    let stats = query(&admin, "stats").await.unwrap();
    assert_eq!(stats["subscriptions"], 1);
    assert_eq!(stats["published"], 2);
    assert_eq!(stats["droppedNoRoute"], 2);
    drop(subscriber);
    while query(&admin, "stats").await.unwrap()["subscriptions"] != 0 {
        tokio::task::yield_now().await;
    }
    fixture.stop().await;
}

#[tokio::test]
async fn a_connection_whose_filters_overlap_gets_each_message_once() {
    let fixture = Fixture::start("").await;
    let admin = fixture.client().await;
    let subscriber = fixture.client().await;
    subscribe(&subscriber, "/hello/+").await;
    subscribe(&subscriber, "/hello/#").await;
    publish(&admin, "/hello/world", Payload::text("first")).await;
    publish(&admin, "/hello/world", Payload::text("second")).await;
    let mut received = Vec::new();
    while received.len() < 2 {
        received.extend(subscriber.next_messages().await.unwrap());
    }
    let payloads: Vec<_> = received.iter().map(|message| message.payload.clone()).collect();
    assert_eq!(payloads, vec![Payload::text("first"), Payload::text("second")], "each message once, in order");
    fixture.stop().await;
}

#[tokio::test]
async fn credentials_are_served_to_functions_only() {
    let fixture = Fixture::start("").await;
    let error = query(&fixture.client().await, "credentials").await.unwrap_err();
    assert_eq!(error.code, ErrorCode::Unauthorized);
    fixture.stop().await;
}

#[test]
fn config_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (r#"{"functions": [{"serviceName": "S", "functionName": "f", "codeDir": "missing"}]}"#, "is not a directory"),
        (r#"{"functions": [{"serviceName": "", "functionName": "f", "codeDir": "."}]}"#, "non-empty serviceName"),
        (r#"{"functions": [{"serviceName": "S", "functionName": "f", "codeDir": ".", "maxConcurrency": 0}]}"#, "maxConcurrency"),
        (r#"{"functions": [], "maxPayloadBytes": 0}"#, "maxPayloadBytes"),
        (
            r#"{"functions": [{"serviceName": "S", "functionName": "f", "codeDir": ".", "functionId": "x"},
                           {"serviceName": "S", "functionName": "g", "codeDir": ".", "functionId": "x"}]}"#,
            "both named x",
        ),
        (r#"{"functions": "#, "EOF"),
        (
            r#"{"functions": [], "routes": [{"source": "any", "topicFilter": "/a", "target": "function:nope"}]}"#,
            "names no configured function",
        ),
        (r#"{"functions": [], "routes": [{"source": "any", "topicFilter": "/a", "target": "x"}]}"#, "must look like"),
        (
            r#"{"functions": [{"serviceName": "S", "functionName": "f", "codeDir": "."}],
             "routes": [{"source": "any", "topicFilter": "/a/#/b", "target": "function:acs:fc:::service:S:function:f"}]}"#,
            "last level",
        ),
        (r#"{"functions": [], "thingFunction": "nope"}"#, "thingFunction"),
        (
            r#"{"functions": [], "routes": [{"source": "any", "topicFilter": "/a", "target": "mqtt:nowhere"}]}"#,
            "names no broker of mqtt.brokers",
        ),
        (r#"{"functions": [], "mqtt": {"brokers": {"hub": {"url": "mqtt://h", "protocol": 4}}}}"#, "edgefc speaks MQTT 5"),
        (r#"{"functions": [], "mqtt": {"brokers": {"hub": {"url": "mqtts://h"}}}}"#, "needs tls.ca"),
        (r#"{"functions": [], "mqtt": {"brokers": {"hub": {"url": "mqtt://h", "keepAliveSecs": 3}}}}"#, "between 5 and 65535"),
        (r#"{"functions": [], "mqtt": {"brokers": {"hub": {"url": "http://h"}}}}"#, "not mqtt:// or mqtts://"),
        (r#"{"functions": [], "mqtt": {"brokers": {"a/b": {"url": "mqtt://h"}}}}"#, "a broker's name"),
        (
            r#"{"functions": [], "mqtt": {"brokers": {"hub": {"url": "mqtt://h"}, "edge": {"url": "mqtt://e"}}},
               "routes": [{"source": "mqtt:hub", "topicFilter": "up/#", "target": "mqtt:edge"}]}"#,
            "messages from a broker go to functions",
        ),
        (r#"{"functions": [], "gatewayId": "a/b"}"#, "gatewayId"),
        (
            r#"{"functions": [], "remoteFunctions": [{"serviceName": "S", "functionName": "f", "gatewayId": "gw2"}]}"#,
            "need a broker in mqtt.brokers",
        ),
        (
            r#"{"functions": [], "mqtt": {"brokers": {"hub": {"url": "mqtt://h"}}},
               "remoteFunctions": [{"serviceName": "S", "functionName": "f", "gatewayId": "gw2", "broker": "edge"}]}"#,
            "broker edge is not in mqtt.brokers",
        ),
        (
            r#"{"functions": [], "gatewayId": "gw1", "mqtt": {"brokers": {"hub": {"url": "mqtt://h"}}},
               "remoteFunctions": [{"serviceName": "S", "functionName": "f", "gatewayId": "gw1"}]}"#,
            "this gateway's own id",
        ),
        (
            r#"{"functions": [{"serviceName": "S", "functionName": "f", "codeDir": "."}], "mqtt": {"brokers": {"hub": {"url": "mqtt://h"}}},
               "remoteFunctions": [{"serviceName": "S", "functionName": "f", "gatewayId": "gw2"}]}"#,
            "a local function has the same serviceName and functionName",
        ),
        (
            r#"{"functions": [], "mqtt": {"brokers": {"hub": {"url": "mqtt://h"}}},
               "remoteFunctions": [{"serviceName": "S", "functionName": "f/g", "gatewayId": "gw2"}]}"#,
            "without '/', '+', '#'",
        ),
        (
            r#"{"functions": [], "mqtt": {"brokers": {"hub": {"url": "mqtt://h"}}},
               "exposedFunctions": [{"serviceName": "S", "functionName": "f"}]}"#,
            "exposedFunctions S/f names no configured function",
        ),
        (r#"{"functions": [], "remoteTimeoutMs": 0}"#, "remoteTimeoutMs"),
        (
            r#"{"functions": [{"serviceName": "S", "functionName": "f", "codeDir": ".", "runMode": "sometimes"}]}"#,
            "unknown variant",
        ),
    ];
    for (text, expected) in cases {
        let error = Config::parse(text, dir.path()).unwrap_err();
        assert_eq!(error.code, ErrorCode::Config);
        assert!(error.message.contains(expected), "{text}: {}", error.message);
    }
}
