//! Published messages: shown to the subscribers whose filter matches, then
//! queued for every function a route names, without ever waiting on either.
//! A subscriber more than `connections.maxOutputBytes` behind misses
//! messages (or is disconnected, per `connections.slowSubscriber`); a
//! function whose queue is full misses them too; both are counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use serde::Serialize;

use super::config::{ConnectionLimits, SlowSubscriber};
use super::log::Throttle;
use super::observe::Kind;
use super::router::{check_topic, Publisher, RouteTarget, Router, TopicFilter};
use super::{asynchronous, invoke, Caller, Shared};
use crate::error::{Error, ErrorCode, Result};
use crate::proto::frame::{Frame, Payload};
use crate::proto::limits::check_payload;
use crate::transport::{FrameSender, Offer};

static SLOW_SUBSCRIBER: Throttle = Throttle::new(Duration::from_secs(10));

pub(super) struct Bus {
    pub(super) router: Router,
    subscriptions: Mutex<Vec<Subscription>>,
    slow_subscriber: SlowSubscriber,
    max_subscriptions: usize,
    counters: Counters,
}

struct Subscription {
    connection_id: u64,
    sender: FrameSender,
    /// The id of the Subscribe request; its messages carry it.
    request_id: u64,
    filter: TopicFilter,
}

/// What the bus has done, for `edgefc stats` and the tests.
#[derive(Default)]
struct Counters {
    published: AtomicU64,
    delivered: AtomicU64,
    dropped_no_route: AtomicU64,
    refused_queue_full: AtomicU64,
    dropped_slow_subscriber: AtomicU64,
    disconnected_slow_subscriber: AtomicU64,
}

/// The JSON of `edgefc stats` and `runtime.stats()`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BusStats {
    pub(super) published: u64,
    pub(super) delivered: u64,
    pub(super) dropped_no_route: u64,
    pub(super) refused_queue_full: u64,
    pub(super) dropped_slow_subscriber: u64,
    pub(super) disconnected_slow_subscriber: u64,
    pub(super) subscriptions: usize,
}

impl Bus {
    pub(super) fn new(router: Router, limits: &ConnectionLimits) -> Bus {
        Bus {
            router,
            subscriptions: Mutex::new(Vec::new()),
            slow_subscriber: limits.slow_subscriber,
            max_subscriptions: limits.max_subscriptions,
            counters: Counters::default(),
        }
    }

    pub(super) fn stats(&self) -> BusStats {
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        BusStats {
            published: count(&self.counters.published),
            delivered: count(&self.counters.delivered),
            dropped_no_route: count(&self.counters.dropped_no_route),
            refused_queue_full: count(&self.counters.refused_queue_full),
            dropped_slow_subscriber: count(&self.counters.dropped_slow_subscriber),
            disconnected_slow_subscriber: count(&self.counters.disconnected_slow_subscriber),
            subscriptions: self.subscriptions.lock().unwrap().len(),
        }
    }

    /// Adds a subscription of the admin connection `connection_id`.
    pub(super) fn subscribe(
        &self,
        caller: Caller,
        connection_id: u64,
        sender: &FrameSender,
        request_id: u64,
        topic_filter: &str,
    ) -> Result<()> {
        if let Caller::Function(_) = caller {
            return Err(Error::new(
                ErrorCode::Unauthorized,
                "functions receive messages through routes; subscribing needs the admin token",
            ));
        }
        let filter = TopicFilter::parse(topic_filter)?;
        let mut subscriptions = self.subscriptions.lock().unwrap();
        let held = subscriptions.iter().filter(|subscription| subscription.connection_id == connection_id).count();
        if held >= self.max_subscriptions {
            return Err(Error::new(
                ErrorCode::QueueFull,
                format!("this connection already has {held} subscriptions (connections.maxSubscriptions)"),
            ));
        }
        subscriptions.push(Subscription { connection_id, sender: sender.clone(), request_id, filter });
        Ok(())
    }

    /// Ends the subscriptions of a connection that closed.
    pub(super) fn unsubscribe_connection(&self, connection_id: u64) {
        self.subscriptions.lock().unwrap().retain(|subscription| subscription.connection_id != connection_id);
    }

    /// A connection gets a message once, however many of its filters match.
    fn notify_subscribers(&self, source: &str, topic: &str, payload: &Payload) {
        let subscriptions = self.subscriptions.lock().unwrap();
        let mut notified = Vec::new();
        for subscription in subscriptions.iter().filter(|subscription| subscription.filter.matches(topic)) {
            if notified.contains(&subscription.connection_id) {
                continue;
            }
            notified.push(subscription.connection_id);
            let message = Frame::Message {
                id: subscription.request_id,
                source: source.to_string(),
                topic: topic.to_string(),
                payload: payload.clone(),
            };
            if subscription.sender.offer(message) == Offer::Full {
                self.behind(&subscription.sender);
            }
        }
    }

    /// A subscriber too far behind: drop the message, or the subscriber.
    fn behind(&self, subscriber: &FrameSender) {
        let what = match self.slow_subscriber {
            SlowSubscriber::Drop => {
                self.counters.dropped_slow_subscriber.fetch_add(1, Ordering::Relaxed);
                "a message was dropped"
            }
            SlowSubscriber::Disconnect => {
                subscriber.close();
                self.counters.disconnected_slow_subscriber.fetch_add(1, Ordering::Relaxed);
                "it was disconnected"
            }
        };
        if let Some(held_back) = SLOW_SUBSCRIBER.admit() {
            crate::warn!(
                "bus",
                "a subscriber is more than connections.maxOutputBytes behind; {what} (connections.slowSubscriber){held_back}"
            );
        }
    }
}

/// Routes one message and returns its id. A target whose queue is full is
/// skipped and named in the `ERR_QUEUE_FULL` error; the others still get it.
/// Targets of `"qos": 1` routes get it durably: the publish is acknowledged
/// once they all have it in the store.
pub(super) async fn publish(shared: &Shared, caller: Caller, topic: String, payload: Payload) -> Result<String> {
    let (message_id, durable) = publish_at_most_once(shared, caller, topic, payload)?;
    match durable {
        Some(deliveries) => deliveries.deliver(shared).await.map(|()| message_id),
        None => Ok(message_id),
    }
}

/// A message from broker `broker` (the bridge's), along the routes from it;
/// resolves once delivered, durably where a route says `"qos": 1`.
pub(super) async fn publish_from_broker(shared: &Shared, broker: usize, topic: String, payload: Payload) -> Result<()> {
    let (_, durable) = route(shared, Publisher::Broker(broker), topic, payload)?;
    match durable {
        Some(deliveries) => deliveries.deliver(shared).await,
        None => Ok(()),
    }
}

/// Targets that get a message durably: functions as Async invocations,
/// brokers in their outbox.
pub(super) struct DurableDeliveries {
    targets: Vec<RouteTarget>,
    topic: String,
    invoker_context: String,
    payload: Payload,
}

impl DurableDeliveries {
    /// Stores the message for each target; `ERR_QUEUE_FULL` names those
    /// that could not take it (the others have it).
    pub(super) async fn deliver(self, shared: &Shared) -> Result<()> {
        let mut full = Vec::new();
        for target in self.targets {
            let (stored, name) = match target {
                RouteTarget::Function(index) => {
                    let host = &shared.hosts[index];
                    let accepted =
                        asynchronous::accept(host, &shared.store, 0, self.invoker_context.clone(), self.payload.clone()).await;
                    (accepted.map(drop), host.spec.function_id.clone())
                }
                RouteTarget::Broker(index) => {
                    let posted = shared.bridge.post(index, self.topic.clone(), self.payload.clone()).await;
                    (posted, format!("mqtt:{}", shared.bridge.name(index)))
                }
            };
            match stored {
                Ok(()) => {
                    shared.bus.counters.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    shared.bus.counters.refused_queue_full.fetch_add(1, Ordering::Relaxed);
                    full.push(name);
                }
            }
        }
        if !full.is_empty() {
            return Err(Error::new(
                ErrorCode::QueueFull,
                format!("{} could not take the message on {} durably (queue or store full)", full.join(", "), self.topic),
            ));
        }
        Ok(())
    }
}

/// Routes one message to subscribers and at-most-once targets; what is left
/// for `"qos": 1` targets comes back to be delivered (it waits for a commit).
pub(super) fn publish_at_most_once(
    shared: &Shared,
    caller: Caller,
    topic: String,
    payload: Payload,
) -> Result<(String, Option<DurableDeliveries>)> {
    let publisher = match caller {
        Caller::Admin => Publisher::Admin,
        Caller::Function(index) => Publisher::Function(index),
    };
    route(shared, publisher, topic, payload)
}

fn route(shared: &Shared, publisher: Publisher, topic: String, payload: Payload) -> Result<(String, Option<DurableDeliveries>)> {
    check_topic(&topic)?;
    check_payload(&payload, shared.max_payload)?;
    let bus = &shared.bus;
    let message_id = super::ids::new_id();
    bus.counters.published.fetch_add(1, Ordering::Relaxed);
    let source = shared.source_name(publisher);
    bus.notify_subscribers(&source, &topic, &payload);
    let targets = bus.router.targets(publisher, &topic);
    if targets.is_empty() {
        bus.counters.dropped_no_route.fetch_add(1, Ordering::Relaxed);
        return Ok((message_id, None));
    }
    let invoker_context = routed_context(&source, &topic);
    let durable: Vec<RouteTarget> = targets.iter().filter(|target| target.durable).map(|target| target.to).collect();
    let mut full = Vec::new();
    for target in targets.iter().filter(|target| !target.durable) {
        let index = match target.to {
            RouteTarget::Function(index) => index,
            RouteTarget::Broker(index) => {
                shared.bridge.offer(index, topic.clone(), payload.clone());
                bus.counters.delivered.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let host = &shared.hosts[index];
        match host.admit(&invoker_context, &payload) {
            Ok(admission) => {
                bus.counters.delivered.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(invoke::run_detached(host.clone(), admission, invoker_context.clone(), payload.clone()));
            }
            Err(error) => {
                host.refused(Kind::Message, &error);
                bus.counters.refused_queue_full.fetch_add(1, Ordering::Relaxed);
                full.push(host.spec.function_id.as_str());
            }
        }
    }
    if !full.is_empty() {
        return Err(Error::new(
            ErrorCode::QueueFull,
            format!("the queue of {} is full; the message on {topic} was not delivered there", full.join(", ")),
        ));
    }
    let durable = (!durable.is_empty()).then(|| DurableDeliveries { targets: durable, topic, invoker_context, payload });
    Ok((message_id, durable))
}

/// What a routed message's handler finds in `context.invokerContext`.
fn routed_context(source: &str, topic: &str) -> String {
    let context = serde_json::json!({ "custom": { "source": source, "topic": topic } }).to_string();
    base64::engine::general_purpose::STANDARD.encode(context)
}
