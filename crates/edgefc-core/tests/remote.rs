//! Invocations between gateways: two runtimes, each on its own Mosquitto,
//! the two brokers bridged (MQTT 5) through a third, as separate sites.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::mosquitto::Mosquitto;
use common::*;
use edgefc_core::proto::{FunctionError, InvokeRequest, Payload, Reply};
use edgefc_core::runtime::function_arn;
use edgefc_core::ErrorCode;
use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, Incoming, MqttOptions};
use tokio::sync::mpsc;

/// A hub and two sites' brokers, and a runtime on each site: gateway gw1
/// (service S) may call gw2's (service Site2) `echo` and `narrow`, which
/// gw2 exposes; gw2 also has `slow`, which it does not.
struct Sites {
    gw1: Fixture,
    gw2: Fixture,
    // Dropped last: the brokers outlive the runtimes.
    _brokers: (Mosquitto, Mosquitto, Mosquitto),
}

fn broker_entry(broker: &Mosquitto) -> String {
    format!(r#""mqtt": {{"brokers": {{"site": {{"url": "{}", "reconnect": {{"baseMs": 50, "capMs": 500}}}}}}}},"#, broker.url())
}

impl Sites {
    async fn start(caller_extra: &str) -> Sites {
        let hub = Mosquitto::start();
        let (site1, site2) = (Mosquitto::start_bridged_to(&hub), Mosquitto::start_bridged_to(&hub));
        let gw2 = Fixture::start_as(
            "Site2",
            &format!(
                r#""gatewayId": "gw2", {} "exposedFunctions": [{{"serviceName": "Site2", "functionName": "echo"}},
                    {{"serviceName": "Site2", "functionName": "narrow"}}],"#,
                broker_entry(&site2)
            ),
            InProcess::new(),
        )
        .await;
        let gw1 = Fixture::start(&format!(
            r#""gatewayId": "gw1", {} {caller_extra} "remoteFunctions": [
                {{"serviceName": "Site2", "functionName": "echo", "gatewayId": "gw2", "functionId": "far-echo"}}],"#,
            broker_entry(&site1)
        ))
        .await;
        let sites = Sites { gw1, gw2, _brokers: (hub, site1, site2) };
        // gw2 says it is online once it subscribed to its requests; gw1 hears it through the bridges.
        stats_when(&sites.gw1.client().await, |stats| stats["remote"]["gatewaysOnline"] == 1).await;
        sites
    }
}

fn call(target: &str, asynchronous: bool, payload: Payload) -> InvokeRequest {
    InvokeRequest { asynchronous, ..sync(target, payload) }
}

#[tokio::test]
async fn sync_and_async_invocations_reach_a_function_of_another_gateway() {
    need_mosquitto!();
    let sites = Sites::start("").await;
    let client = sites.gw1.client().await;
    let far_echo = function_arn("Site2", "echo");

    // Bytes stay bytes and text stays text, byte for byte.
    let bytes = Payload::Binary(Bytes::from_static(&[0, 1, 2, 255, 254, b'\n']));
    let result = completed(&client, sync(&far_echo, bytes.clone())).await;
    assert_eq!((result.function_error, &result.payload), (FunctionError::None, &bytes));
    let text = Payload::text("héllo, gw2");
    assert_eq!(completed(&client, sync("far-echo", text.clone())).await.payload, text);

    // A function error comes back as one.
    let failed = completed(&client, sync(&far_echo, Payload::text("fail"))).await;
    assert_eq!(failed.function_error, FunctionError::Handled);
    assert!(String::from_utf8_lossy(failed.payload.bytes()).contains("failed"));

    // Async: accepted once durable on gw2, and run there.
    let accepted = match invoke(&client, call(&far_echo, true, Payload::text("async-1"))).await.unwrap() {
        Reply::Accepted { accepted_id } => accepted_id,
        other => panic!("expected Accepted, got {other:?}"),
    };
    assert_eq!(accepted.len(), 36, "gw2's invocation id: {accepted}");
    loop {
        let ran = sites.gw2.launcher.tasks.lock().unwrap().iter().any(|(_, _, payload)| payload == &Payload::text("async-1"));
        if ran {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // An explicit gateway: a function gw1 has no entry for, by its ARN.
    let narrow = format!("edgefc:gateway:gw2:{}", function_arn("Site2", "narrow"));
    assert_eq!(completed(&client, sync(&narrow, Payload::text("n"))).await.payload, Payload::text("n"));
    // gw2 runs only what it exposes.
    let hidden = format!("edgefc:gateway:gw2:{}", function_arn("Site2", "slow"));
    let refused = invoke(&client, sync(&hidden, Payload::text("s"))).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::FunctionNotFound, "{refused}");
    assert!(refused.message.contains("exposes no function Site2/slow"), "{refused}");
    assert!(sites.gw2.launcher.tasks.lock().unwrap().iter().all(|(_, _, payload)| payload != &Payload::text("s")));
    // Its own gateway id is a local call.
    let own = format!("edgefc:gateway:gw1:{}", function_arn("S", "echo"));
    assert_eq!(completed(&client, sync(&own, Payload::text("here"))).await.payload, Payload::text("here"));

    let remote = &stats(&client).await["remote"];
    assert_eq!((remote["calls"].as_u64(), remote["answered"].as_u64()), (Some(6), Some(6)), "{remote}");
    let served = &stats(&sites.gw2.client().await).await["remote"];
    assert_eq!((served["requests"].as_u64(), served["notExposed"].as_u64()), (Some(6), Some(1)), "{served}");
}

#[tokio::test]
async fn a_gateway_that_goes_offline_fails_its_callers_at_once() {
    need_mosquitto!();
    let mut sites = Sites::start(r#""remoteTimeoutMs": 60000,"#).await;
    let client = sites.gw1.client().await;
    let far_echo = function_arn("Site2", "echo");
    assert_eq!(completed(&client, sync(&far_echo, Payload::text("up"))).await.payload, Payload::text("up"));

    // A call waiting when gw2 stops ends with its Will, not at the 60 s timeout.
    let waiting = {
        let client = sites.gw1.client().await;
        let far_echo = far_echo.clone();
        tokio::spawn(async move { invoke(&client, sync(&far_echo, Payload::text("hang"))).await })
    };
    // (It would end at its function's timeout, 5 s; gw2 stops long before.)
    while !sites.gw2.launcher.tasks.lock().unwrap().iter().any(|(_, _, payload)| payload == &Payload::text("hang")) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = std::time::Instant::now();
    sites.gw2.stop_runtime().await;
    let error = waiting.await.unwrap().unwrap_err();
    assert_eq!(error.code, ErrorCode::GatewayOffline, "{error}");
    assert!(started.elapsed() < Duration::from_secs(3), "ended by the status, not a timeout");

    // Later calls fail at once, and say why.
    stats_when(&client, |stats| stats["remote"]["gatewaysOffline"] == 1).await;
    let error = invoke(&client, sync(&far_echo, Payload::text("down"))).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::GatewayOffline);
    assert!(error.message.contains("gateway gw2 is offline"), "{error}");

    // Back online, it answers again.
    sites.gw2.start_again().await;
    stats_when(&client, |stats| stats["remote"]["gatewaysOnline"] == 1).await;
    assert_eq!(completed(&client, sync(&far_echo, Payload::text("back"))).await.payload, Payload::text("back"));
}

#[tokio::test]
async fn a_gateway_that_never_answers_times_out() {
    need_mosquitto!();
    let broker = Mosquitto::start();
    let fixture = Fixture::start(&format!(r#""gatewayId": "gw1", "remoteTimeoutMs": 300, {}"#, broker_entry(&broker))).await;
    let client = fixture.client().await;
    let started = std::time::Instant::now();
    let nowhere = format!("edgefc:gateway:gw9:{}", function_arn("S", "echo"));
    let error = invoke(&client, sync(&nowhere, Payload::text("x"))).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::Timeout, "{error}");
    assert!(error.message.contains("did not answer within 300 ms"), "{error}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The caller's own wait comes first.
    let started = std::time::Instant::now();
    let error =
        invoke(&client, InvokeRequest { caller_timeout_ms: 100, ..sync(&nowhere, Payload::text("x")) }).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::Timeout, "{error}");
    assert!(error.message.contains("did not answer within 100 ms"), "{error}");
    assert!(started.elapsed() < Duration::from_millis(300));
    // A gateway id that cannot be a topic level is the caller's mistake.
    let error = invoke(&client, sync("edgefc:gateway:g+w:x", Payload::text("x"))).await.unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidParams);
    // So is a name that would change the topic (or make an invalid one), which must not reach the link.
    for name in ["f#", "f/g", "f+"] {
        let error = invoke(&client, sync(&format!("edgefc:gateway:gw9:{}", function_arn("S", name)), Payload::text("x")))
            .await
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidParams, "{name}: {error}");
    }
}

/// A broker client that sends requests by hand, as a misbehaving or
/// repeating gateway would, and collects what comes back.
struct Requester {
    client: AsyncClient,
    answers: mpsc::UnboundedReceiver<Publish>,
}

impl Requester {
    async fn connect(broker: &Mosquitto, reply_topic: &str) -> Requester {
        let mut options = MqttOptions::new("requester", "127.0.0.1", broker.port);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut events) = AsyncClient::new(options, 100);
        let (answers_tx, answers) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(event) = events.poll().await {
                match event {
                    Event::Incoming(Incoming::Publish(publish)) => {
                        let _ = answers_tx.send(publish);
                    }
                    Event::Incoming(Incoming::SubAck(_)) => {
                        let _ = subscribed_tx.send(());
                    }
                    _ => {}
                }
            }
        });
        client.subscribe(reply_topic, QoS::AtLeastOnce).await.unwrap();
        subscribed.recv().await.unwrap();
        Requester { client, answers }
    }

    async fn request(&self, topic: &str, response_topic: Option<&str>, correlation: &[u8], payload: &str) {
        let properties = PublishProperties {
            response_topic: response_topic.map(str::to_string),
            correlation_data: Some(Bytes::copy_from_slice(correlation)),
            payload_format_indicator: Some(1),
            user_properties: vec![("edgefc-type".into(), "async".into())],
            ..Default::default()
        };
        self.client.publish_with_properties(topic, QoS::AtLeastOnce, false, payload.to_string(), properties).await.unwrap();
    }

    async fn next(&mut self) -> Publish {
        tokio::time::timeout(Duration::from_secs(60), self.answers.recv()).await.expect("an answer within a minute").unwrap()
    }
}

#[tokio::test]
async fn a_request_delivered_twice_runs_once_and_answers_go_only_to_reply_topics() {
    need_mosquitto!();
    let broker = Mosquitto::start();
    let gw2 = Fixture::start_as(
        "Site2",
        &format!(
            r#""gatewayId": "gw2", {} "exposedFunctions": [{{"serviceName": "Site2", "functionName": "echo"}}],"#,
            broker_entry(&broker)
        ),
        InProcess::new(),
    )
    .await;
    let gw2_client = gw2.client().await;
    stats_when(&gw2_client, |stats| stats["mqtt"][0]["connected"] == true).await;
    let mut requester = Requester::connect(&broker, "edgefc/v1/tester/reply/#").await;
    let request_topic = "edgefc/v1/gw2/invoke/Site2/echo";
    // QoS 1 may deliver a request twice: the repeat is answered from the answers kept, not run again.
    requester.request(request_topic, Some("edgefc/v1/tester/reply/1"), b"call-1", "once").await;
    let first = requester.next().await;
    requester.request(request_topic, Some("edgefc/v1/tester/reply/1"), b"call-1", "once").await;
    let second = requester.next().await;
    for answer in [&first, &second] {
        let properties = answer.properties.as_ref().unwrap();
        assert_eq!(properties.correlation_data.as_deref(), Some(&b"call-1"[..]));
        assert!(properties.user_properties.contains(&("edgefc-outcome".into(), "accepted".into())), "{properties:?}");
    }
    assert_eq!(first.payload, second.payload, "the repeat gets the same invocation id");
    let ran = || gw2.launcher.tasks.lock().unwrap().iter().filter(|(_, _, payload)| payload == &Payload::text("once")).count();
    while ran() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A request that names any other topic for its answer is dropped, as is one without a response topic.
    requester.request(request_topic, Some("somewhere/else"), b"call-2", "elsewhere").await;
    requester.request(request_topic, None, b"call-3", "nowhere").await;
    let served = stats_when(&gw2_client, |stats| stats["remote"]["malformed"] == 2).await;
    assert_eq!(served["remote"]["requests"], 2, "{served}");
    assert_eq!(served["remote"]["repeats"], 1, "{served}");
    assert_eq!(ran(), 1, "run once");
}
