//! One broker connection (rumqttc, MQTT 5): what goes out, from the outbox
//! and the QoS 0 queue, and what comes in, along the routes from the broker.
//!
//! rumqttc keeps its un-acknowledged messages in memory and drops them when
//! the broker lost the session, and it reconnects without pause. So each
//! connection is a new rumqttc event loop, the outbox (durable) is the only
//! record of what awaits an acknowledgement, everything in it is sent again
//! after every connect, and the pause between attempts is ours.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use rumqttc::v5::mqttbytes::v5::{PubAck, PubAckReason, Publish, PublishProperties, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, Incoming, MqttOptions};
use rumqttc::{NetworkOptions, Outgoing, TlsConfiguration, Transport};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::remote::{Remote, TOPIC_ROOT};
use super::settings::{BrokerSpec, BrokerTransport, OnFull};
use crate::error::{Error, ErrorCode, Result};
use crate::proto::frame::Payload;
use crate::runtime::store::{OutboxMessage, Store};

/// Messages kept in memory only (QoS 0 ones, and the requests and replies
/// of remote invocations) waiting for a connection, at most (count,
/// bytes); past either, a QoS 0 message is dropped and counted, a remote
/// invocation's refused.
const MAX_DIRECT_WAITING: usize = 10_000;
const MAX_DIRECT_WAITING_BYTES: usize = 8 << 20;
/// QoS 1 messages the broker may send unacknowledged (our CONNECT's Receive
/// Maximum): room for that many is kept in the inbound queue.
const RECEIVE_MAXIMUM: u16 = 256;
/// QoS 1 messages past the Receive Maximum held for a broker that ignores
/// it, at most; past that, or past `max_inbound_bytes` in all, the
/// connection is given up (the broker sends them again).
const MAX_OVERFLOW: usize = 10_000;
const MAX_INBOUND_BYTES: usize = 32 << 20;
/// Messages from the broker being delivered at once.
const MAX_CONCURRENT_DELIVERIES: usize = 64;
/// QoS 0 messages from the broker waiting for delivery, at most, beside
/// that room; more are dropped and counted.
const MAX_INBOUND_WAITING: usize = 1024;
/// Room for a publish's topic and properties beside its payload.
const PACKET_OVERHEAD: usize = 128 << 10;

/// rumqttc's request queue: the in-flight window, the subscriptions, and room for acks.
fn request_capacity(spec: &BrokerSpec, subscriptions: usize) -> usize {
    usize::from(spec.max_inflight) + subscriptions + 16
}

/// Delivers a message from the broker along its routes; resolves once it
/// is delivered (durably, for QoS 1 routes).
pub(super) type Deliver = Arc<dyn Fn(String, Payload) -> futures_util::future::BoxFuture<'static, Result<()>> + Send + Sync>;

/// What `edgefc stats` shows of a broker link.
#[derive(Debug, Default, Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct LinkStats {
    pub broker: String,
    /// Connected, and every subscription of the routes from this broker taken.
    pub connected: bool,
    pub connects: u64,
    pub connection_errors: u64,
    /// QoS 1 messages in the outbox (durable, not yet acknowledged).
    pub outbox_messages: usize,
    pub outbox_bytes: usize,
    pub sent: u64,
    pub acknowledged: u64,
    /// Messages the broker refused for good (not authorized, an invalid topic or payload): dropped.
    pub refused_by_broker: u64,
    /// The outbox was full (`outbox.onFull`: "dropOldest").
    pub dropped_oldest: u64,
    /// The outbox was full (`outbox.onFull`: "rejectNew").
    pub rejected_full: u64,
    /// QoS 0 messages dropped while too many waited for a connection.
    pub dropped_qos0: u64,
    pub received: u64,
    /// Messages from the broker that could not be delivered (QoS 0 past the queue, or refused by every target).
    pub dropped_inbound: u64,
    /// Subscriptions of routes from this broker that it refused (an ACL, say): those routes get nothing.
    pub refused_subscriptions: u64,
    /// Messages that can never be sent (from the outbox too): larger than
    /// the broker's Maximum Packet Size, or on an invalid topic. Dropped.
    pub dropped_unsendable: u64,
}

#[derive(Default)]
struct Counters {
    connected: AtomicBool,
    connects: AtomicU64,
    connection_errors: AtomicU64,
    sent: AtomicU64,
    acknowledged: AtomicU64,
    refused_by_broker: AtomicU64,
    dropped_oldest: AtomicU64,
    rejected_full: AtomicU64,
    dropped_qos0: AtomicU64,
    received: AtomicU64,
    dropped_inbound: AtomicU64,
    refused_subscriptions: AtomicU64,
    dropped_unsendable: AtomicU64,
}

/// The outbox's messages of this broker, by sequence number (oldest
/// first), without payloads; and those the current connection has not sent
/// yet. Both change under one lock, so a message posted while another is
/// being committed is never passed over.
#[derive(Default)]
struct OutboxIndex {
    entries: BTreeMap<u64, usize>,
    bytes: usize,
    unsent: BTreeSet<u64>,
    /// Messages (and their bytes) given room but still being committed:
    /// they count against the bounds, so concurrent posts cannot overshoot them.
    reserved: usize,
    reserved_bytes: usize,
}

impl OutboxIndex {
    fn insert(&mut self, seq: u64, size: usize) {
        self.entries.insert(seq, size);
        self.bytes += size;
        self.unsent.insert(seq);
    }

    fn unreserve(&mut self, size: usize) {
        self.reserved -= 1;
        self.reserved_bytes -= size;
    }

    /// The entry leaves (acknowledged, or dropped); false if it was not there.
    fn remove(&mut self, seq: u64) -> bool {
        self.unsent.remove(&seq);
        match self.entries.remove(&seq) {
            Some(size) => {
                self.bytes -= size;
                true
            }
            None => false,
        }
    }
}

/// Room in the outbox for one message being committed; given back when
/// the message is in, or when its post ends any other way.
struct Room<'a> {
    link: &'a Link,
    size: usize,
    held: bool,
}

impl Room<'_> {
    /// Gives the room back under a lock already held.
    fn release(mut self, outbox: &mut OutboxIndex) {
        outbox.unreserve(self.size);
        self.held = false;
    }
}

impl Drop for Room<'_> {
    fn drop(&mut self) {
        if self.held {
            self.link.outbox.lock().unwrap().unreserve(self.size);
        }
    }
}

/// What one connection has handed rumqttc and not yet seen acknowledged.
#[derive(Default)]
struct Window {
    state: Mutex<WindowState>,
    /// An acknowledgement made room.
    room: Notify,
}

#[derive(Default)]
struct WindowState {
    /// Publishes handed to rumqttc, in order, until it says which packet id
    /// each got (`None`: QoS 0, which gets none).
    submitted: VecDeque<Option<u64>>,
    /// Packet id to outbox sequence number, until the PUBACK.
    inflight: HashMap<u16, u64>,
}

/// A message sent from memory, never from the outbox: a QoS 0 one, or a
/// remote invocation's request or reply (whose caller waits for it, and
/// fails when it does not come).
pub(super) struct DirectMessage {
    pub(super) topic: String,
    pub(super) payload: Bytes,
    pub(super) properties: PublishProperties,
    pub(super) qos: QoS,
    pub(super) retain: bool,
    /// When its caller stops waiting: not sent after, and its Message
    /// Expiry is what is left when it is.
    pub(super) deadline: Option<Instant>,
}

impl DirectMessage {
    pub(super) fn size(&self) -> usize {
        let properties = &self.properties;
        let user: usize = properties.user_properties.iter().map(|(key, value)| key.len() + value.len()).sum();
        self.topic.len()
            + self.payload.len()
            + user
            + properties.correlation_data.as_ref().map_or(0, Bytes::len)
            + properties.response_topic.as_ref().map_or(0, String::len)
    }
}

/// Messages from the broker waiting for delivery. The exchange loop only
/// pushes (it must never wait while polling rumqttc, which may be halfway
/// through writing a packet); the receive task takes them.
#[derive(Default)]
struct InboundQueue {
    state: Mutex<InboundState>,
    /// A message was pushed.
    pushed: Notify,
}

#[derive(Default)]
struct InboundState {
    messages: VecDeque<Publish>,
    bytes: usize,
}

impl InboundQueue {
    fn push(&self, publish: Publish) {
        let mut state = self.state.lock().unwrap();
        state.bytes += publish.payload.len();
        state.messages.push_back(publish);
        drop(state);
        self.pushed.notify_one();
    }

    async fn pop(&self) -> Publish {
        loop {
            {
                let mut state = self.state.lock().unwrap();
                if let Some(publish) = state.messages.pop_front() {
                    state.bytes -= publish.payload.len();
                    return publish;
                }
            }
            self.pushed.notified().await;
        }
    }
}

#[derive(Default)]
struct DirectQueue {
    messages: VecDeque<DirectMessage>,
    bytes: usize,
}

pub(super) struct Link {
    pub(super) spec: BrokerSpec,
    store: Arc<Store>,
    /// The runtime's `maxPayloadBytes`.
    max_payload: usize,
    outbox: Mutex<OutboxIndex>,
    direct: Mutex<DirectQueue>,
    /// Something new to send.
    ready: Notify,
    /// The current connection's Maximum Packet Size, as the broker said (0: none).
    max_packet: AtomicU32,
    counters: Counters,
}

impl Link {
    pub(super) fn new(spec: BrokerSpec, store: Arc<Store>, max_payload: usize) -> Link {
        Link {
            spec,
            store,
            max_payload,
            outbox: Mutex::new(OutboxIndex::default()),
            direct: Mutex::new(DirectQueue::default()),
            ready: Notify::new(),
            max_packet: AtomicU32::new(0),
            counters: Counters::default(),
        }
    }

    /// A message found in the outbox at start.
    pub(super) fn restore(&self, seq: u64, size: usize) {
        self.outbox.lock().unwrap().insert(seq, size);
    }

    /// A QoS 1 message: durable in the outbox before this returns.
    pub(super) async fn post(&self, topic: String, payload: Payload) -> Result<()> {
        let message = OutboxMessage { broker: self.spec.name.clone(), topic, payload, accepted_at_ms: now_ms() };
        let size = message.size();
        let room = self.make_room(size)?;
        let seq = self.store.post(&message).await?;
        let mut outbox = self.outbox.lock().unwrap();
        outbox.insert(seq, size);
        room.release(&mut outbox);
        drop(outbox);
        self.ready.notify_one();
        Ok(())
    }

    /// Room for one more message of `size` bytes, held until it is in the
    /// outbox (or its post failed). Past `outbox.maxMessages` or
    /// `outbox.maxBytes`: the oldest goes, or the new one is refused.
    fn make_room(&self, size: usize) -> Result<Room<'_>> {
        let mut outbox = self.outbox.lock().unwrap();
        let full = |outbox: &OutboxIndex| {
            outbox.entries.len() + outbox.reserved + 1 > self.spec.max_messages
                || outbox.bytes + outbox.reserved_bytes + size > self.spec.max_bytes
        };
        let refused = || {
            self.counters.rejected_full.fetch_add(1, Ordering::Relaxed);
            Error::new(
                ErrorCode::QueueFull,
                format!(
                    "the outbox of broker {} is full ({} messages or {} bytes; mqtt.brokers.{}.outbox)",
                    self.spec.name, self.spec.max_messages, self.spec.max_bytes, self.spec.name
                ),
            )
        };
        if full(&outbox) {
            // A message larger than the whole outbox would empty it and still not fit.
            if self.spec.on_full == OnFull::RejectNew || size > self.spec.max_bytes {
                return Err(refused());
            }
            while full(&outbox) {
                // Only messages still being committed fill it: none of them can go.
                let Some((&seq, _)) = outbox.entries.first_key_value() else { return Err(refused()) };
                outbox.remove(seq);
                self.store.unpost(seq);
                self.counters.dropped_oldest.fetch_add(1, Ordering::Relaxed);
            }
            crate::warn!("mqtt", "the outbox of broker {} is full; its oldest messages were dropped", self.spec.name);
        }
        outbox.reserved += 1;
        outbox.reserved_bytes += size;
        Ok(Room { link: self, size, held: true })
    }

    /// A QoS 0 message: sent when connected, dropped (and counted) when too many wait.
    pub(super) fn offer(&self, topic: String, payload: Payload) {
        let (payload, properties) = wire_payload(&payload);
        let message = DirectMessage { topic, payload, properties, qos: QoS::AtMostOnce, retain: false, deadline: None };
        if !self.send_direct(message) {
            self.counters.dropped_qos0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues a message kept in memory only; false when too many wait.
    pub(super) fn send_direct(&self, message: DirectMessage) -> bool {
        let size = message.size();
        let mut queue = self.direct.lock().unwrap();
        if queue.messages.len() >= MAX_DIRECT_WAITING || queue.bytes + size > self.max_direct_bytes() {
            return false;
        }
        queue.bytes += size;
        queue.messages.push_back(message);
        drop(queue);
        self.ready.notify_one();
        true
    }

    /// Bytes of messages from the broker that may wait for delivery: room for two of the largest.
    fn max_inbound_bytes(&self) -> usize {
        MAX_INBOUND_BYTES.max(2 * self.max_payload)
    }

    /// Bytes of messages kept in memory for the broker: room for two of the largest.
    fn max_direct_bytes(&self) -> usize {
        MAX_DIRECT_WAITING_BYTES.max(2 * self.max_payload)
    }

    pub(super) fn stats(&self) -> LinkStats {
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let outbox = self.outbox.lock().unwrap();
        LinkStats {
            broker: self.spec.name.clone(),
            connected: self.counters.connected.load(Ordering::Relaxed),
            connects: count(&self.counters.connects),
            connection_errors: count(&self.counters.connection_errors),
            outbox_messages: outbox.entries.len(),
            outbox_bytes: outbox.bytes,
            sent: count(&self.counters.sent),
            acknowledged: count(&self.counters.acknowledged),
            refused_by_broker: count(&self.counters.refused_by_broker),
            dropped_oldest: count(&self.counters.dropped_oldest),
            rejected_full: count(&self.counters.rejected_full),
            dropped_qos0: count(&self.counters.dropped_qos0),
            received: count(&self.counters.received),
            dropped_inbound: count(&self.counters.dropped_inbound),
            refused_subscriptions: count(&self.counters.refused_subscriptions),
            dropped_unsendable: count(&self.counters.dropped_unsendable),
        }
    }

    fn options(&self, subscriptions: usize, remote: &Remote) -> MqttOptions {
        let spec = &self.spec;
        let mut options = MqttOptions::new(spec.client_id.clone(), spec.host.clone(), spec.port);
        options
            .set_keep_alive(spec.keep_alive)
            .set_clean_start(false)
            .set_session_expiry_interval(Some(spec.session_expiry_secs))
            .set_manual_acks(true)
            .set_outgoing_inflight_upper_limit(spec.max_inflight)
            .set_receive_maximum(Some(RECEIVE_MAXIMUM))
            .set_request_channel_capacity(request_capacity(spec, subscriptions))
            // What the runtime takes from anyone: a larger packet from the broker ends the connection.
            .set_max_packet_size(Some(u32::try_from(self.max_payload + PACKET_OVERHEAD).unwrap_or(u32::MAX)));
        // Small messages, often a request waiting for its answer: Nagle's delay with the peer's delayed ack costs 40 ms each way.
        let mut network = NetworkOptions::new();
        network.set_tcp_nodelay(true);
        options.set_network_options(network);
        if let Some(will) = remote.will() {
            options.set_last_will(will);
        }
        if let Some((username, password)) = &spec.credentials {
            options.set_credentials(username.clone(), password.clone());
        }
        if let BrokerTransport::Tls { ca, client_auth } = &spec.transport {
            options.set_transport(Transport::Tls(TlsConfiguration::Simple {
                ca: ca.clone(),
                alpn: None,
                client_auth: client_auth.clone(),
            }));
        }
        options
    }

    /// Connects, and connects again after every loss, until `stop`.
    /// `subscriptions` are the routes' (filter, QoS 1); `remote` adds its own.
    pub(super) async fn run(
        self: Arc<Self>,
        mut subscriptions: Vec<(String, bool)>,
        deliver: Deliver,
        remote: Arc<Remote>,
        stop: CancellationToken,
    ) {
        subscriptions.extend(remote.subscriptions().into_iter().map(|filter| (filter, true)));
        let mut pause = self.spec.reconnect_base;
        loop {
            let started = std::time::Instant::now();
            let session = self.clone().session(&subscriptions, deliver.clone(), &remote, &stop);
            let outcome = tokio::select! {
                outcome = session => outcome,
                () = stop.cancelled() => return,
            };
            self.counters.connected.store(false, Ordering::Relaxed);
            match outcome {
                // The connection worked for a while: the next attempt starts from the shortest pause.
                // (One dropped right after its CONNACK backs off like a refused one.)
                Ok(()) if started.elapsed() >= self.spec.reconnect_cap => pause = self.spec.reconnect_base,
                Ok(()) => {}
                Err(error) => {
                    self.counters.connection_errors.fetch_add(1, Ordering::Relaxed);
                    crate::warn!("mqtt", "broker {}: {error}; trying again in {} ms", self.spec.name, pause.as_millis());
                }
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = stop.cancelled() => return,
            }
            pause = next_pause(pause, self.spec.reconnect_base, self.spec.reconnect_cap);
        }
    }

    /// One connection, from CONNECT to its loss: `Ok` if it got as far as a
    /// CONNACK, else the error that stopped it.
    async fn session(
        self: Arc<Self>,
        subscriptions: &[(String, bool)],
        deliver: Deliver,
        remote: &Arc<Remote>,
        stop: &CancellationToken,
    ) -> std::result::Result<(), String> {
        let (client, mut events) =
            AsyncClient::new(self.options(subscriptions.len(), remote), request_capacity(&self.spec, subscriptions.len()));
        let max_packet = wait_for_connack(&mut events).await?;
        self.counters.connects.fetch_add(1, Ordering::Relaxed);
        // Connected counts once the broker has taken every subscription too (see `exchange`).
        self.counters.connected.store(subscriptions.is_empty(), Ordering::Relaxed);
        crate::info!("mqtt", "broker {}: connected to {}:{}", self.spec.name, self.spec.host, self.spec.port);
        for (filter, durable) in subscriptions {
            let qos = if *durable { QoS::AtLeastOnce } else { QoS::AtMostOnce };
            client.try_subscribe(filter.clone(), qos).map_err(|error| format!("cannot subscribe to {filter}: {error}"))?;
        }
        // Retained, and replaced by the Will once this connection ends. Sent
        // through the send task, which keeps count of what it hands rumqttc.
        if let Some(status) = remote.online_status() {
            if !self.send_direct(status) {
                crate::warn!("mqtt", "broker {}: too many messages wait; this gateway's status was not sent", self.spec.name);
            }
        }
        let inbound = Arc::new(InboundQueue::default());
        let undelivered = CancellationToken::new();
        // Ends with the session, however it ends (the runtime's stop drops it).
        let _receiver = AbortOnDropHandle::new(tokio::spawn(self.clone().receive(
            inbound.clone(),
            client.clone(),
            deliver,
            remote.clone(),
            undelivered.clone(),
        )));
        // 0: the broker set none.
        self.max_packet.store(max_packet.unwrap_or(0), Ordering::Relaxed);
        let outcome = self.exchange(&client, &mut events, subscriptions.len(), &inbound, &undelivered, stop).await;
        // A connection that had worked counts as such; what ended it is logged.
        if let Err(error) = outcome {
            crate::warn!("mqtt", "broker {}: connection lost: {error}", self.spec.name);
        }
        Ok(())
    }

    /// Reads what comes, until the connection fails; a task beside it sends what waits.
    async fn exchange(
        self: &Arc<Self>,
        client: &AsyncClient,
        events: &mut EventLoop,
        mut unconfirmed_subscriptions: usize,
        inbound: &InboundQueue,
        undelivered: &CancellationToken,
        stop: &CancellationToken,
    ) -> std::result::Result<(), String> {
        let window = Arc::new(Window::default());
        {
            // Everything in the outbox goes again on every connection, oldest first.
            let mut outbox = self.outbox.lock().unwrap();
            outbox.unsent = outbox.entries.keys().copied().collect();
        }
        let _sender = AbortOnDropHandle::new(tokio::spawn(self.clone().send(client.clone(), window.clone())));
        loop {
            // Only this loop polls rumqttc; a poll is cut short only when the connection is given up.
            // An idle connection still pings once per keep-alive: a longer silence is a broker that stopped reading.
            let event = tokio::select! {
                event = tokio::time::timeout(self.spec.keep_alive * 2 + Duration::from_secs(5), events.poll()) => match event {
                    Ok(event) => event,
                    Err(_) => break Err("nothing moved for two keep-alive periods".into()),
                },
                () = undelivered.cancelled() => {
                    break Err("a message could not be stored for its targets; reconnecting, so that the broker sends it again".into())
                }
                () = stop.cancelled() => break Ok(()),
            };
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    // What rumqttc read before the connection failed is still
                    // queued, and goes with this event loop: the broker's
                    // answers in it count. (Mosquitto 2.0 closes the
                    // connection right after refusing a message it does not
                    // authorize: unread, that refusal would be sent again,
                    // and refused again, on every connection.)
                    for event in events.state.events.drain(..) {
                        match event {
                            Event::Outgoing(Outgoing::Publish(pkid)) => self.handed_over(&window, pkid),
                            Event::Incoming(Incoming::PubAck(ack)) => self.acknowledged(&window, &ack),
                            _ => {}
                        }
                    }
                    break Err(error.to_string());
                }
            };
            match event {
                Event::Outgoing(Outgoing::Publish(pkid)) => self.handed_over(&window, pkid),
                Event::Incoming(Incoming::SubAck(ack)) => {
                    for code in &ack.return_codes {
                        if !matches!(code, SubscribeReasonCode::Success(_)) {
                            self.counters.refused_subscriptions.fetch_add(1, Ordering::Relaxed);
                            crate::warn!("mqtt", "broker {}: a subscription was refused ({code:?})", self.spec.name);
                        }
                    }
                    unconfirmed_subscriptions = unconfirmed_subscriptions.saturating_sub(1);
                    if unconfirmed_subscriptions == 0 {
                        self.counters.connected.store(true, Ordering::Relaxed);
                    }
                }
                Event::Incoming(Incoming::PubAck(ack)) => self.acknowledged(&window, &ack),
                Event::Incoming(Incoming::Publish(publish)) => {
                    self.counters.received.fetch_add(1, Ordering::Relaxed);
                    let (waiting, bytes) = {
                        let state = inbound.state.lock().unwrap();
                        (state.messages.len(), state.bytes)
                    };
                    if publish.qos == QoS::AtMostOnce {
                        // QoS 0 messages never take the room kept for QoS 1 ones.
                        if waiting >= MAX_INBOUND_WAITING || bytes + publish.payload.len() > self.max_inbound_bytes() {
                            self.counters.dropped_inbound.fetch_add(1, Ordering::Relaxed);
                        } else {
                            inbound.push(publish);
                        }
                        continue;
                    }
                    // Past our Receive Maximum (Mosquitto 2.0 does not keep to it) the excess waits here, bounded.
                    if waiting >= usize::from(RECEIVE_MAXIMUM) + MAX_OVERFLOW
                        || bytes + publish.payload.len() > self.max_inbound_bytes()
                    {
                        break Err(format!(
                            "the broker sent more than {MAX_OVERFLOW} messages (or {} bytes) beyond the Receive Maximum \
                             ({RECEIVE_MAXIMUM}); reconnecting",
                            self.max_inbound_bytes()
                        ));
                    }
                    inbound.push(publish);
                }
                _ => {}
            }
        }
    }

    /// Hands rumqttc what fits in the in-flight window, in order: messages
    /// kept in memory, then the outbox from its oldest message (everything
    /// in it goes again on every connection).
    async fn send(self: Arc<Self>, client: AsyncClient, window: Arc<Window>) {
        loop {
            let direct = {
                let mut queue = self.direct.lock().unwrap();
                let next = queue.messages.pop_front();
                if let Some(message) = &next {
                    queue.bytes -= message.size();
                }
                next
            };
            if let Some(message) = direct {
                // Not the outbox's: its acknowledgement, if any, matters to nobody here.
                let DirectMessage { topic, payload, mut properties, qos, retain, deadline } = message;
                if let Some(deadline) = deadline {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        // Its caller has given up: sent now, it would run for nobody.
                        continue;
                    }
                    properties.message_expiry_interval = Some(expiry_secs(left));
                }
                if self.unsendable(&topic, qos, &payload, &properties) {
                    continue;
                }
                window.state.lock().unwrap().submitted.push_back(None);
                if client.publish_with_properties(topic, qos, retain, payload, properties).await.is_err() {
                    return;
                }
                continue;
            }
            let has_room = {
                let state = window.state.lock().unwrap();
                state.submitted.len() + state.inflight.len() < usize::from(self.spec.max_inflight)
            };
            let next = has_room.then(|| self.outbox.lock().unwrap().unsent.pop_first());
            let Some(Some(seq)) = next else {
                // Nothing to send, or no room: wait for a new message or an acknowledgement.
                tokio::select! {
                    () = self.ready.notified() => {}
                    () = window.room.notified() => {}
                }
                continue;
            };
            let message = match self.store.read_posted(seq) {
                Ok(Some(message)) => message,
                // Dropped (outbox full) since: nothing to send.
                Ok(None) => continue,
                Err(error) => {
                    crate::warn!("mqtt", "broker {}: outbox message {seq} cannot be read: {error}", self.spec.name);
                    continue;
                }
            };
            let (bytes, properties) = wire_payload(&message.payload);
            if self.unsendable(&message.topic, QoS::AtLeastOnce, &bytes, &properties) {
                if self.outbox.lock().unwrap().remove(seq) {
                    self.store.unpost(seq);
                }
                continue;
            }
            window.state.lock().unwrap().submitted.push_back(Some(seq));
            if client.publish_with_properties(message.topic, QoS::AtLeastOnce, false, bytes, properties).await.is_err() {
                return;
            }
        }
    }

    /// Whether a publish can never be sent, and is dropped (logged and
    /// counted): over the broker's Maximum Packet Size (rumqttc would fail
    /// the whole connection on it, again after every reconnect), or on a
    /// topic rumqttc refuses (its send would end this task).
    fn unsendable(&self, topic: &str, qos: QoS, payload: &Bytes, properties: &PublishProperties) -> bool {
        let why = if !rumqttc::valid_topic(topic) || topic.is_empty() {
            "is not a valid topic"
        } else {
            let max = self.max_packet.load(Ordering::Relaxed);
            let mut publish = Publish::new(topic, qos, payload.clone(), Some(properties.clone()));
            publish.pkid = 1;
            if max == 0 || publish.size() <= max as usize {
                return false;
            }
            "makes a message larger than the broker's Maximum Packet Size"
        };
        self.counters.dropped_unsendable.fetch_add(1, Ordering::Relaxed);
        crate::warn!("mqtt", "broker {}: {topic} {why}; the message is dropped", self.spec.name);
        true
    }

    /// rumqttc wrote the next message handed to it, as packet `pkid`.
    fn handed_over(&self, window: &Window, pkid: u16) {
        let mut state = window.state.lock().unwrap();
        if let Some(Some(seq)) = state.submitted.pop_front() {
            state.inflight.insert(pkid, seq);
        }
        drop(state);
        // A QoS 0 message out of the window makes room too.
        window.room.notify_one();
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// The broker acknowledged packet `pkid`: the outbox message it carried was answered.
    fn acknowledged(&self, window: &Window, ack: &PubAck) {
        let seq = window.state.lock().unwrap().inflight.remove(&ack.pkid);
        if let Some(seq) = seq {
            self.answered(seq, &ack.reason);
            window.room.notify_one();
        }
    }

    /// The broker answered message `seq`. Taken: it leaves the outbox.
    /// Refused for good (not authorized, a topic or payload it will never
    /// take): it leaves too, logged and counted. Refused for now (a quota,
    /// an error of its own): it stays, and goes again on the next connection.
    fn answered(&self, seq: u64, reason: &PubAckReason) {
        let refused_for_good =
            matches!(reason, PubAckReason::NotAuthorized | PubAckReason::TopicNameInvalid | PubAckReason::PayloadFormatInvalid);
        if !matches!(reason, PubAckReason::Success | PubAckReason::NoMatchingSubscribers) && !refused_for_good {
            crate::warn!("mqtt", "broker {}: message {seq} was refused for now ({reason:?}); it goes again", self.spec.name);
            return;
        }
        if self.outbox.lock().unwrap().remove(seq) {
            self.store.unpost(seq);
        }
        if refused_for_good {
            self.counters.refused_by_broker.fetch_add(1, Ordering::Relaxed);
            crate::warn!("mqtt", "broker {}: message {seq} was refused ({reason:?}) and is dropped", self.spec.name);
        } else {
            self.counters.acknowledged.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Delivers the broker's messages, up to `MAX_CONCURRENT_DELIVERIES` at
    /// once (so that their durable commits share fsyncs), started in order
    /// and acknowledged in order, each once delivered. A QoS 1 message that a
    /// full queue refused stays unacknowledged: `undelivered` ends the
    /// connection, and the broker sends it again on the next.
    async fn receive(
        self: Arc<Self>,
        inbound: Arc<InboundQueue>,
        client: AsyncClient,
        deliver: Deliver,
        remote: Arc<Remote>,
        undelivered: CancellationToken,
    ) {
        let mut delivering: FuturesOrdered<futures_util::future::BoxFuture<'static, (Publish, bool)>> = FuturesOrdered::new();
        loop {
            tokio::select! {
                // Finished deliveries first: their acks free the broker's window.
                biased;
                Some((publish, delivered)) = delivering.next(), if !delivering.is_empty() => {
                    if !delivered {
                        undelivered.cancel();
                        return;
                    }
                    // An ack of a lost connection goes nowhere.
                    let _ = client.ack(&publish).await;
                }
                publish = inbound.pop(), if delivering.len() < MAX_CONCURRENT_DELIVERIES => {
                    delivering.push_back(self.clone().delivery(publish, deliver.clone(), remote.clone()).boxed());
                }
            }
        }
    }

    /// One message from the broker, to its routes (or, under `TOPIC_ROOT`,
    /// to remote invocations); false if it must not be acknowledged.
    async fn delivery(self: Arc<Self>, publish: Publish, deliver: Deliver, remote: Arc<Remote>) -> (Publish, bool) {
        if publish.topic.starts_with(TOPIC_ROOT.as_bytes()) {
            // Acknowledged once taken: what a remote caller relies on is the answer, not this.
            remote.take(&self, publish.clone()).await;
            return (publish, true);
        }
        let Ok(topic) = String::from_utf8(publish.topic.to_vec()) else {
            self.counters.dropped_inbound.fetch_add(1, Ordering::Relaxed);
            return (publish, true);
        };
        let indicator = publish.properties.as_ref().and_then(|properties| properties.payload_format_indicator);
        let payload = payload_of(indicator, publish.payload.clone());
        if let Err(error) = deliver(topic.clone(), payload).await {
            // Only what can never be delivered (too large, a bad topic) is acknowledged and dropped.
            let never = matches!(error.code, ErrorCode::PayloadTooLarge | ErrorCode::InvalidParams);
            if publish.qos != QoS::AtMostOnce && !never {
                crate::warn!("mqtt", "broker {}: a message on {topic} waits: {error}", self.spec.name);
                return (publish, false);
            }
            self.counters.dropped_inbound.fetch_add(1, Ordering::Relaxed);
            crate::warn!("mqtt", "broker {}: a message on {topic} was not delivered: {error}", self.spec.name);
        }
        // Delivered (durably, for QoS 1 routes).
        (publish, true)
    }
}

/// The payload's bytes, and whether it is UTF-8 text (Payload Format Indicator 1).
fn wire_payload(payload: &Payload) -> (Bytes, PublishProperties) {
    (
        payload.bytes().clone(),
        PublishProperties { payload_format_indicator: Some(format_indicator(payload)), ..Default::default() },
    )
}

/// The Payload Format Indicator of a payload: 1 for UTF-8 text (a JS string), 0 for bytes.
pub(super) fn format_indicator(payload: &Payload) -> u8 {
    match payload {
        Payload::Text(_) => 1,
        Payload::Binary(_) => 0,
    }
}

/// A payload from MQTT: a String when the sender said UTF-8 (and it is), else a Buffer.
pub(super) fn payload_of(indicator: Option<u8>, bytes: Bytes) -> Payload {
    match indicator == Some(1) && std::str::from_utf8(&bytes).is_ok() {
        true => Payload::Text(bytes),
        false => Payload::Binary(bytes),
    }
}

/// A Message Expiry: whole seconds, rounded up, at least one.
fn expiry_secs(left: Duration) -> u32 {
    u32::try_from(left.as_millis().div_ceil(1000)).unwrap_or(u32::MAX).max(1)
}

/// Waits for the CONNACK; returns the broker's Maximum Packet Size, if it set one.
async fn wait_for_connack(events: &mut EventLoop) -> std::result::Result<Option<u32>, String> {
    loop {
        match events.poll().await.map_err(|error| error.to_string())? {
            Event::Incoming(Incoming::ConnAck(ack)) => {
                return Ok(ack.properties.and_then(|properties| properties.max_packet_size))
            }
            _ => continue,
        }
    }
}

/// Decorrelated jitter: between `base` and three times the last pause, at most `cap`.
fn next_pause(last: Duration, base: Duration, cap: Duration) -> Duration {
    let upper = (last.as_millis() as u64).saturating_mul(3).max(base.as_millis() as u64 + 1);
    Duration::from_millis(fastrand::u64(base.as_millis() as u64..upper)).min(cap)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::next_pause;
    use std::time::Duration;

    #[test]
    fn pauses_grow_with_jitter_between_the_base_and_the_cap() {
        let (base, cap) = (Duration::from_secs(1), Duration::from_secs(30));
        let mut pause = base;
        for _ in 0..50 {
            let next = next_pause(pause, base, cap);
            assert!(next >= base && next <= cap && next <= pause * 3, "{pause:?} -> {next:?}");
            pause = next;
        }
    }
}
