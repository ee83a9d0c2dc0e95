//! The MQTT bridge against a real Mosquitto: routes to a broker, routes from
//! it, and QoS 1 messages through broker restarts.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::mosquitto::Mosquitto;
use common::*;
use edgefc_core::proto::{Payload, Request};
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, Incoming, MqttOptions};
use tokio::sync::mpsc;

/// A broker client of the test's own: what it receives comes out of the channel as (topic, payload, UTF-8 flag).
struct Peer {
    client: AsyncClient,
    received: mpsc::UnboundedReceiver<(String, Bytes, bool)>,
}

impl Peer {
    /// The next message; a test that waits a minute for one has failed (the bridge delivers in milliseconds).
    async fn next(&mut self) -> (String, Bytes, bool) {
        tokio::time::timeout(Duration::from_secs(60), self.received.recv())
            .await
            .expect("a message within a minute")
            .expect("the peer's connection task runs")
    }

    async fn connect(broker: &Mosquitto, id: &str, filters: &[&str]) -> Peer {
        let mut options = MqttOptions::new(id, "127.0.0.1", broker.port);
        options.set_clean_start(false).set_session_expiry_interval(Some(3600)).set_keep_alive(Duration::from_secs(5));
        let (client, mut events) = AsyncClient::new(options, 100);
        let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
        let (received_tx, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Incoming::Publish(publish))) => {
                        let text = publish.properties.as_ref().and_then(|p| p.payload_format_indicator) == Some(1);
                        let topic = String::from_utf8(publish.topic.to_vec()).unwrap();
                        let _ = received_tx.send((topic, publish.payload.clone(), text));
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(_) => {}
                    // The broker restarts in some tests: rumqttc reconnects on the next poll.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        for filter in filters {
            client.subscribe(*filter, QoS::AtLeastOnce).await.unwrap();
            subscribed.recv().await.unwrap();
        }
        Peer { client, received }
    }
}

fn bridge_config(broker: &Mosquitto, routes: &str) -> String {
    format!(
        r#""mqtt": {{"brokers": {{"hub": {{"url": "{}", "reconnect": {{"baseMs": 50, "capMs": 500}}}}}}}}, "routes": [{routes}],"#,
        broker.url()
    )
}

#[tokio::test]
async fn local_publishes_reach_the_broker_along_their_routes() {
    need_mosquitto!();
    let broker = Mosquitto::start();
    let mut peer = Peer::connect(&broker, "watcher", &["up/#", "fast/#"]).await;
    let routes = r#"{"source": "any", "topicFilter": "up/#", "target": "mqtt:hub", "qos": 1},
                    {"source": "any", "topicFilter": "fast/#", "target": "mqtt:hub"}"#;
    let fixture = Fixture::start(&bridge_config(&broker, routes)).await;
    let client = fixture.client().await;
    publish(&client, "up/text", Payload::text("héllo")).await;
    publish(&client, "up/bytes", Payload::Binary(Bytes::from_static(&[0, 159, 255]))).await;
    let mut got = HashMap::new();
    while got.len() < 2 {
        let (topic, payload, text) = peer.next().await;
        got.insert(topic, (payload, text));
    }
    assert_eq!(got["up/text"], (Bytes::from("héllo"), true), "text keeps its UTF-8 flag");
    assert_eq!(got["up/bytes"], (Bytes::from_static(&[0, 159, 255]), false));
    // QoS 0 goes once the link is up (it is: the QoS 1 messages arrived).
    publish(&client, "fast/x", Payload::text("quick")).await;
    assert_eq!(peer.next().await.1, Bytes::from("quick"));
    let stats = query(&client, "stats").await.unwrap();
    assert_eq!(stats["mqtt"][0]["broker"], "hub");
    assert_eq!(stats["mqtt"][0]["acknowledged"], 2);
    assert_eq!(stats["mqtt"][0]["outboxMessages"], 0);
    fixture.stop().await;
}

#[tokio::test]
async fn broker_messages_reach_functions_as_text_or_bytes() {
    need_mosquitto!();
    let broker = Mosquitto::start();
    let routes = r#"{"source": "mqtt:hub", "topicFilter": "down/#", "target": "function:echo", "qos": 1}"#;
    let fixture = Fixture::start(&bridge_config(&broker, routes)).await;
    // The link counts as connected once the broker took its subscriptions.
    let client = fixture.client().await;
    wait_for_stats(&client, |stats| stats["mqtt"][0]["connected"] == true).await;
    let peer = Peer::connect(&broker, "sender", &[]).await;
    let text = PublishProperties { payload_format_indicator: Some(1), ..Default::default() };
    peer.client.publish_with_properties("down/a", QoS::AtLeastOnce, false, "for echo", text).await.unwrap();
    peer.client.publish("down/b", QoS::AtLeastOnce, false, vec![1u8, 2, 3]).await.unwrap();
    let tasks = fixture.launcher.tasks.clone();
    let seen = wait_until(|| {
        let tasks = tasks.lock().unwrap();
        (tasks.len() >= 2).then(|| tasks.iter().map(|(_, _, payload)| payload.clone()).collect::<Vec<_>>())
    })
    .await;
    assert!(seen.contains(&Payload::text("for echo")), "{seen:?}");
    assert!(seen.contains(&Payload::Binary(Bytes::from_static(&[1, 2, 3]))), "{seen:?}");
    fixture.stop().await;
}

#[tokio::test]
async fn a_flood_from_a_broker_past_the_receive_maximum_is_taken_on_one_connection() {
    need_mosquitto!();
    const COUNT: usize = 5000;
    // No limit of the broker's own (and Mosquitto 2.0 does not keep to the client's Receive Maximum):
    // the excess waits, bounded, while deliveries share their commits; the connection stays.
    let broker = Mosquitto::start_with_config("max_inflight_messages 0\n");
    let routes = r#"{"source": "mqtt:hub", "topicFilter": "down/#", "target": "function:echo", "qos": 1}"#;
    let fixture = Fixture::start(&bridge_config(&broker, routes)).await;
    let client = fixture.client().await;
    wait_for_stats(&client, |stats| stats["mqtt"][0]["connected"] == true).await;
    let peer = Peer::connect(&broker, "flooder", &[]).await;
    for n in 0..COUNT {
        peer.client.publish("down/n", QoS::AtLeastOnce, false, n.to_string()).await.unwrap();
    }
    let tasks = fixture.launcher.tasks.clone();
    wait_until(|| {
        let tasks = tasks.lock().unwrap();
        let distinct: std::collections::HashSet<_> = tasks.iter().map(|(_, _, payload)| payload.bytes().clone()).collect();
        (distinct.len() == COUNT).then_some(())
    })
    .await;
    let stats = stats(&client).await;
    assert_eq!(stats["mqtt"][0]["connects"], 1, "one connection all along: {stats}");
    assert_eq!(stats["mqtt"][0]["droppedInbound"], 0, "{stats}");
    fixture.stop().await;
}

#[tokio::test]
async fn qos1_messages_survive_three_broker_restarts() {
    need_mosquitto!();
    const COUNT: usize = 10_000;
    let mut broker = Mosquitto::start();
    let mut peer = Peer::connect(&broker, "collector", &["up/#"]).await;
    let routes = r#"{"source": "any", "topicFilter": "up/#", "target": "mqtt:hub", "qos": 1}"#;
    let fixture = Fixture::start(&bridge_config(&broker, routes)).await;
    let client = Arc::new(fixture.client().await);
    let mut published = 0;
    for round in 0..4 {
        // 500 at a time: a connection may have 1024 requests in flight.
        for chunk in (published..published + COUNT / 4).collect::<Vec<_>>().chunks(500) {
            let batch: Vec<_> = chunk
                .iter()
                .map(|n| {
                    let (client, n) = (client.clone(), *n);
                    tokio::spawn(async move { publish(&client, "up/n", Payload::text(n.to_string())).await })
                })
                .collect();
            for publish in batch {
                publish.await.unwrap();
            }
        }
        published += COUNT / 4;
        if round < 3 {
            broker.restart();
            // Each round goes to a broker the link has connected to again: two
            // restarts within one outage would be one reconnect.
            wait_for_stats(&client, |stats| stats["mqtt"][0]["connects"].as_u64() >= Some(round + 2)).await;
        }
    }
    let mut seen = vec![0u32; COUNT];
    let mut distinct = 0;
    while distinct < COUNT {
        let (_, payload, _) = peer.next().await;
        let n: usize = std::str::from_utf8(&payload).unwrap().parse().unwrap();
        if seen[n] == 0 {
            distinct += 1;
        }
        seen[n] += 1;
    }
    let duplicates: u32 = seen.iter().map(|times| times - 1).sum();
    println!("{COUNT} QoS 1 messages through 3 broker restarts: 0 lost, {duplicates} duplicates");
    let stats = drained(&client).await;
    assert_eq!(stats["mqtt"][0]["outboxMessages"], 0);
    assert!(stats["mqtt"][0]["connects"].as_u64().unwrap() >= 4);
    fixture.stop().await;
}

#[tokio::test]
async fn the_outbox_outlives_a_runtime_restart_while_the_broker_is_down() {
    need_mosquitto!();
    let mut broker = Mosquitto::start();
    let mut peer = Peer::connect(&broker, "patient", &["up/#"]).await;
    let routes = r#"{"source": "any", "topicFilter": "up/#", "target": "mqtt:hub", "qos": 1}"#;
    let mut fixture = Fixture::start(&bridge_config(&broker, routes)).await;
    broker.stop();
    let client = fixture.client().await;
    for n in 0..300 {
        publish(&client, "up/later", Payload::text(n.to_string())).await;
    }
    drop(client);
    fixture.restart().await;
    broker.start_again();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 300 {
        let (_, payload, _) = peer.next().await;
        seen.insert(payload);
    }
    let stats = drained(&fixture.client().await).await;
    assert_eq!(stats["mqtt"][0]["acknowledged"].as_u64().unwrap(), 300);
    fixture.stop().await;
}

#[tokio::test]
async fn a_full_outbox_drops_the_oldest_or_refuses_the_newest_as_configured() {
    need_mosquitto!();
    for (on_full, refused) in [("dropOldest", 0), ("rejectNew", 50)] {
        let mut broker = Mosquitto::start();
        let mut peer = Peer::connect(&broker, "bounded", &["up/#"]).await;
        broker.stop();
        let extra = format!(
            r#""mqtt": {{"brokers": {{"hub": {{"url": "{}", "outbox": {{"maxMessages": 100, "onFull": "{on_full}"}},
                "reconnect": {{"baseMs": 50, "capMs": 200}}}}}}}},
               "routes": [{{"source": "any", "topicFilter": "up/#", "target": "mqtt:hub", "qos": 1}}],"#,
            broker.url()
        );
        let fixture = Fixture::start(&extra).await;
        let client = fixture.client().await;
        let mut failures = 0;
        for n in 0..150 {
            let request = Request::Publish { topic: "up/n".into(), payload: Payload::text(n.to_string()) };
            if let Err(error) = client.call(request).await {
                assert_eq!(error.code, edgefc_core::ErrorCode::QueueFull, "{error}");
                failures += 1;
            }
        }
        assert_eq!(failures, refused, "{on_full}");
        broker.start_again();
        let mut got = Vec::new();
        while got.len() < 100 {
            let (_, payload, _) = peer.next().await;
            got.push(std::str::from_utf8(&payload).unwrap().parse::<usize>().unwrap());
        }
        got.sort_unstable();
        got.dedup();
        let kept: Vec<usize> = if on_full == "dropOldest" { (50..150).collect() } else { (0..100).collect() };
        assert_eq!(got, kept, "{on_full}");
        let stats = drained(&client).await;
        let counter = if on_full == "dropOldest" { "droppedOldest" } else { "rejectedFull" };
        assert_eq!(stats["mqtt"][0][counter], 50);
        fixture.stop().await;
    }
}

#[tokio::test]
async fn a_cut_line_is_reconnected_and_nothing_is_lost() {
    need_mosquitto!();
    const COUNT: usize = 3_000;
    let broker = Mosquitto::start();
    let proxy = common::mosquitto::CutProxy::start(broker.port).await;
    let mut peer = Peer::connect(&broker, "far", &["up/#"]).await;
    let extra = format!(
        r#""mqtt": {{"brokers": {{"hub": {{"url": "{}", "reconnect": {{"baseMs": 20, "capMs": 200}}}}}}}},
           "routes": [{{"source": "any", "topicFilter": "up/#", "target": "mqtt:hub", "qos": 1}}],"#,
        proxy.url()
    );
    let fixture = Fixture::start(&extra).await;
    let client = fixture.client().await;
    for n in 0..COUNT {
        // Three cuts along the way, each healed a little later.
        if n % 1000 == 500 {
            proxy.cut();
        }
        if n % 1000 == 700 {
            proxy.heal();
        }
        publish(&client, "up/n", Payload::text(n.to_string())).await;
    }
    let mut seen = std::collections::HashSet::new();
    while seen.len() < COUNT {
        let (_, payload, _) = peer.next().await;
        seen.insert(payload);
    }
    let stats = drained(&client).await;
    assert!(stats["mqtt"][0]["connects"].as_u64().unwrap() >= 2, "{stats}");
    fixture.stop().await;
}

#[tokio::test]
async fn a_broker_is_reached_over_tls() {
    need_mosquitto!();
    let broker = Mosquitto::start_with_tls();
    let mut peer = Peer::connect(&broker, "plain-watcher", &["up/#"]).await;
    let extra = format!(
        r#""mqtt": {{"brokers": {{"secure": {{"url": "mqtts://localhost:{}", "tls": {{"ca": "{}"}}}}}}}},
           "routes": [{{"source": "any", "topicFilter": "up/#", "target": "mqtt:secure", "qos": 1}}],"#,
        broker.tls_port.unwrap(),
        broker.ca_path().display()
    );
    let fixture = Fixture::start(&extra).await;
    let client = fixture.client().await;
    publish(&client, "up/secret", Payload::text("over TLS")).await;
    let (topic, payload, _) = peer.next().await;
    assert_eq!((topic.as_str(), payload), ("up/secret", Bytes::from("over TLS")));
    fixture.stop().await;
}

#[tokio::test]
async fn a_message_the_broker_refuses_for_good_is_dropped_and_counted_not_sent_forever() {
    need_mosquitto!();
    let broker = Mosquitto::start_with_acl("topic readwrite up/#\n");
    let mut peer = Peer::connect(&broker, "acl-watcher", &["up/#"]).await;
    let routes = r##"{"source": "any", "topicFilter": "#", "target": "mqtt:hub", "qos": 1}"##;
    let fixture = Fixture::start(&bridge_config(&broker, routes)).await;
    let client = fixture.client().await;
    publish(&client, "denied/x", Payload::text("not allowed")).await;
    publish(&client, "up/ok", Payload::text("allowed")).await;
    assert_eq!(peer.next().await.0, "up/ok");
    let stats = wait_for_stats(&client, |stats| stats["mqtt"][0]["outboxMessages"] == 0).await;
    assert_eq!(stats["mqtt"][0]["refusedByBroker"], 1, "{stats}");
    assert_eq!(stats["mqtt"][0]["acknowledged"], 1, "{stats}");
    fixture.stop().await;
}

#[tokio::test]
async fn a_message_over_the_brokers_maximum_packet_size_is_dropped_not_sent_forever() {
    need_mosquitto!();
    // The broker says so in its CONNACK; rumqttc would end the connection on such a publish, at every reconnect.
    let broker = Mosquitto::start_with_config("max_packet_size 2000\n");
    let mut peer = Peer::connect(&broker, "size-watcher", &["up/#"]).await;
    let routes = r##"{"source": "any", "topicFilter": "up/#", "target": "mqtt:hub", "qos": 1},
                     {"source": "any", "topicFilter": "fast/#", "target": "mqtt:hub"}"##;
    let fixture = Fixture::start(&bridge_config(&broker, routes)).await;
    let client = fixture.client().await;
    publish(&client, "up/large", Payload::Binary(Bytes::from(vec![1u8; 4000]))).await;
    publish(&client, "fast/large", Payload::Binary(Bytes::from(vec![2u8; 4000]))).await;
    publish(&client, "up/small", Payload::text("fits")).await;
    assert_eq!(peer.next().await.0, "up/small");
    let stats = wait_for_stats(&client, |stats| stats["mqtt"][0]["outboxMessages"] == 0).await;
    assert_eq!(stats["mqtt"][0]["droppedUnsendable"], 2, "{stats}");
    assert_eq!(stats["mqtt"][0]["connects"], 1, "the connection stayed up: {stats}");
    fixture.stop().await;
}

/// No broker needed: nothing listens where the link tries, so the outbox only fills.
#[tokio::test]
async fn a_message_larger_than_the_whole_outbox_is_refused_and_drops_nothing() {
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let extra = format!(
        r#""mqtt": {{"brokers": {{"hub": {{"url": "mqtt://127.0.0.1:{nowhere}", "outbox": {{"maxBytes": 2048}}}}}}}},
           "routes": [{{"source": "any", "topicFilter": "up/#", "target": "mqtt:hub", "qos": 1}}],"#
    );
    let fixture = Fixture::start(&extra).await;
    let client = fixture.client().await;
    for n in 0..3 {
        publish(&client, "up/small", Payload::text(n.to_string())).await;
    }
    let request = Request::Publish { topic: "up/large".into(), payload: Payload::Binary(Bytes::from(vec![0u8; 4096])) };
    let error = client.call(request).await.unwrap_err();
    assert_eq!(error.code, edgefc_core::ErrorCode::QueueFull, "{error}");
    let stats = query(&client, "stats").await.unwrap();
    assert_eq!(stats["mqtt"][0]["outboxMessages"], 3, "{stats}");
    assert_eq!(stats["mqtt"][0]["droppedOldest"], 0, "{stats}");
    fixture.stop().await;
}

/// No broker needed: nothing listens where the link tries, so the outbox only fills.
#[tokio::test]
async fn concurrent_publishes_never_overshoot_the_outbox_bounds() {
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let extra = format!(
        r#""mqtt": {{"brokers": {{"hub": {{"url": "mqtt://127.0.0.1:{nowhere}", "outbox": {{"maxMessages": 10, "onFull": "rejectNew"}}}}}}}},
           "routes": [{{"source": "any", "topicFilter": "up/#", "target": "mqtt:hub", "qos": 1}}],"#
    );
    let fixture = Fixture::start(&extra).await;
    let client = Arc::new(fixture.client().await);
    // All at once: each waits for its commit, and none may count on the others' room.
    let publishes: Vec<_> = (0..100)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                client.call(Request::Publish { topic: "up/n".into(), payload: Payload::text(n.to_string()) }).await
            })
        })
        .collect();
    let mut accepted = 0;
    for publish in publishes {
        match publish.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(error) => assert_eq!(error.code, edgefc_core::ErrorCode::QueueFull, "{error}"),
        }
    }
    let stats = query(&client, "stats").await.unwrap();
    assert_eq!(accepted, 10, "{stats}");
    assert_eq!(stats["mqtt"][0]["outboxMessages"], 10, "{stats}");
    assert_eq!(stats["mqtt"][0]["rejectedFull"], 90, "{stats}");
    fixture.stop().await;
}

/// Polls `check` until it gives a value (the bridge works on its own schedule).
async fn wait_until<T>(mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..3000 {
        if let Some(value) = check() {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not within a minute");
}

/// The stats once the outbox has drained (the last acknowledgements may come after the deliveries).
async fn drained(client: &edgefc_core::client::Client) -> serde_json::Value {
    wait_for_stats(client, |stats| stats["mqtt"][0]["outboxMessages"] == 0).await
}

/// The stats once `ready` says so; within a minute.
async fn wait_for_stats(client: &edgefc_core::client::Client, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    for _ in 0..3000 {
        let stats = query(client, "stats").await.unwrap();
        if ready(&stats) {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the stats did not get there within a minute");
}
