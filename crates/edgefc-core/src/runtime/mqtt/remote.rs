//! Invocations between gateways, over MQTT 5 request/response. Nothing runs
//! in the broker: any MQTT 5 broker (or bridge, with
//! `bridge_protocol_version mqttv50`) carries them.
//!
//! Topics, `{gw}` being a gateway id:
//! - `edgefc/v1/{gw}/invoke/{serviceName}/{functionName}`: requests, QoS 1,
//!   with a Response Topic, the call's id as Correlation Data, and the
//!   caller's timeout as Message Expiry (a stale request dies in the broker).
//! - `edgefc/v1/{gw}/reply/{instance}`: the answers for one run of gateway
//!   `gw`'s runtime (`instance` is new at every start).
//! - `edgefc/v1/{gw}/status`: retained `online` while a gateway that exposes
//!   functions is connected, and `offline` (its Will) once it is not.
//!
//! Everything under `edgefc/v1/` is this module's: routes never see it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use rumqttc::v5::mqttbytes::v5::{LastWill, LastWillProperties, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use serde::Serialize;
use tokio::sync::{oneshot, Semaphore};

use super::link::{format_indicator, payload_of, DirectMessage, Link};
use super::settings::RemoteSettings;
use crate::error::{Error, ErrorCode, Result};
use crate::proto::frame::{FunctionError, Payload};
use crate::proto::message::SyncResult;
use crate::runtime::ids;

pub(super) const TOPIC_ROOT: &str = "edgefc/v1/";

/// Remote calls waiting for their answer, at most; more are refused (`ERR_QUEUE_FULL`).
const MAX_WAITING_CALLS: usize = 10_000;
/// Requests from other gateways being answered at once; more are answered `ERR_QUEUE_FULL`.
const MAX_RUNNING_REQUESTS: usize = 1024;
/// Answers kept to answer a repeated request (QoS 1 may deliver one twice)
/// without running it again, at most (count, bytes): the oldest go first.
const MAX_KEPT_ANSWERS: usize = 10_000;
const MAX_KEPT_ANSWER_BYTES: usize = 16 << 20;
/// Gateways whose status is remembered (per broker), at most; one past it is treated as online.
const MAX_KNOWN_GATEWAYS: usize = 4096;
/// The longest gateway id, correlation data and reply topic taken from a
/// peer; longer is malformed (what is kept per request stays small).
const MAX_GATEWAY_ID_BYTES: usize = 256;
const MAX_CORRELATION_BYTES: usize = 64;
const MAX_REPLY_TOPIC_BYTES: usize = 512;

// User properties of a request.
const TYPE: &str = "edgefc-type";
const CALLER: &str = "edgefc-caller";
const INVOKER_CONTEXT: &str = "edgefc-invoker-context";
const DEFAULT_TIMEOUT_SECS: &str = "edgefc-default-timeout-secs";
// User properties of an answer.
const OUTCOME: &str = "edgefc-outcome";
const FUNCTION_ERROR: &str = "edgefc-function-error";
const STATUS: &str = "edgefc-status";
const REPLY_CONTEXT: &str = "edgefc-reply-context";
const ERROR_CODE: &str = "edgefc-error-code";

/// A local caller's invocation of a function on another gateway.
pub struct RemoteCall {
    pub gateway_id: String,
    pub service_name: String,
    pub function_name: String,
    /// Index into the config's brokers.
    pub broker: usize,
    pub asynchronous: bool,
    pub default_timeout_secs: u16,
    /// How long the caller waits (0: not said).
    pub caller_timeout_ms: u32,
    pub invoker_context: String,
    pub payload: Payload,
}

/// What an invocation answers, on either side.
pub enum Answer {
    Result(SyncResult),
    /// An Async invocation, durable on the gateway that runs it: its id there.
    Accepted(String),
}

/// An invocation from another gateway, for this runtime to run.
pub struct IncomingRequest {
    pub service_name: String,
    pub function_name: String,
    pub asynchronous: bool,
    pub default_timeout_secs: u16,
    pub invoker_context: String,
    pub payload: Payload,
}

/// Runs an [`IncomingRequest`] (the runtime's `invoke` module does).
pub(super) type Serve = Arc<dyn Fn(IncomingRequest) -> BoxFuture<'static, Result<Answer>> + Send + Sync>;

/// What `edgefc stats` shows of remote invocations.
#[derive(Debug, Default, Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct RemoteStats {
    pub gateway_id: String,
    /// Calls to other gateways: made, answered, and ended without an answer in time.
    pub calls: u64,
    pub answered: u64,
    pub timed_out: u64,
    /// Calls refused at once because their gateway's status said offline.
    pub offline: u64,
    /// Requests from other gateways: taken, answered again from the kept
    /// answers (repeats), refused (not exposed), and dropped as malformed.
    pub requests: u64,
    pub repeats: u64,
    pub not_exposed: u64,
    pub malformed: u64,
    /// Answers dropped because too many messages waited for the broker (their callers time out).
    pub answers_dropped: u64,
    /// Gateways whose retained status says online, and offline.
    pub gateways_online: usize,
    pub gateways_offline: usize,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    answered: AtomicU64,
    timed_out: AtomicU64,
    offline: AtomicU64,
    requests: AtomicU64,
    repeats: AtomicU64,
    not_exposed: AtomicU64,
    malformed: AtomicU64,
    answers_dropped: AtomicU64,
}

struct WaitingCall {
    gateway_id: String,
    /// The broker the request went through.
    broker: String,
    answer: oneshot::Sender<Result<Answer>>,
}

/// Invocations to and from other gateways, for every broker link.
pub(super) struct Remote {
    settings: RemoteSettings,
    /// This run of the runtime: the last level of its reply topic.
    instance: String,
    /// `serviceName/functionName` of the functions other gateways may call.
    exposed: Vec<String>,
    waiting: Mutex<HashMap<Bytes, WaitingCall>>,
    /// (broker, gateway id) to online (true) or offline, from the gateways'
    /// retained status there: a gateway offline on one broker may be online on another.
    gateways: Mutex<HashMap<(String, String), bool>>,
    answers: Mutex<KeptAnswers>,
    running: Arc<Semaphore>,
    serve: std::sync::OnceLock<Serve>,
    counters: Counters,
}

impl Remote {
    pub(super) fn new(settings: RemoteSettings, exposed: Vec<String>) -> Remote {
        Remote {
            settings,
            instance: ids::new_id(),
            exposed,
            waiting: Mutex::new(HashMap::new()),
            gateways: Mutex::new(HashMap::new()),
            answers: Mutex::new(KeptAnswers::default()),
            running: Arc::new(Semaphore::new(MAX_RUNNING_REQUESTS)),
            serve: std::sync::OnceLock::new(),
            counters: Counters::default(),
        }
    }

    pub(super) fn set_serve(&self, serve: Serve) {
        let _ = self.serve.set(serve);
    }

    fn gateway_topic(&self, gateway_id: &str, rest: &str) -> String {
        format!("{TOPIC_ROOT}{gateway_id}/{rest}")
    }

    fn reply_topic(&self) -> String {
        self.gateway_topic(&self.settings.gateway_id, &format!("reply/{}", self.instance))
    }

    fn exposes(&self) -> bool {
        !self.exposed.is_empty()
    }

    /// What a link subscribes to for remote invocations (QoS 1): its
    /// answers, every gateway's status, and, when it exposes functions, its requests.
    pub(super) fn subscriptions(&self) -> Vec<String> {
        let mut filters = vec![self.reply_topic(), format!("{TOPIC_ROOT}+/status")];
        if self.exposes() {
            filters.push(self.gateway_topic(&self.settings.gateway_id, "invoke/#"));
        }
        filters
    }

    fn status(&self, online: bool) -> (String, Bytes) {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Status<'a> {
            status: &'a str,
            gateway_id: &'a str,
            functions: &'a [String],
        }
        let functions: &[String] = if online { &self.exposed } else { &[] };
        let status =
            Status { status: if online { "online" } else { "offline" }, gateway_id: &self.settings.gateway_id, functions };
        let body = serde_json::to_vec(&status).unwrap_or_default();
        (self.gateway_topic(&self.settings.gateway_id, "status"), Bytes::from(body))
    }

    /// The retained `online` status a link publishes once connected, when it exposes functions.
    pub(super) fn online_status(&self) -> Option<DirectMessage> {
        let (topic, payload) = self.status(true);
        self.exposes().then(|| DirectMessage {
            topic,
            payload,
            properties: PublishProperties { payload_format_indicator: Some(1), ..Default::default() },
            qos: QoS::AtLeastOnce,
            retain: true,
            deadline: None,
        })
    }

    /// The Will that says `offline` when a link's connection ends, when it exposes functions.
    pub(super) fn will(&self) -> Option<LastWill> {
        let (topic, payload) = self.status(false);
        let properties = LastWillProperties {
            delay_interval: None,
            payload_format_indicator: Some(1),
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        };
        self.exposes().then(|| LastWill::new(topic, payload.to_vec(), QoS::AtLeastOnce, true, Some(properties)))
    }

    /// Calls a function on another gateway through `link`, and waits for its answer.
    pub(super) async fn call(&self, link: &Link, call: RemoteCall) -> Result<Answer> {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let target = format!("{}/{} on gateway {}", call.service_name, call.function_name, call.gateway_id);
        let status_key = (link.spec.name.clone(), call.gateway_id.clone());
        if self.gateways.lock().unwrap().get(&status_key) == Some(&false) {
            self.counters.offline.fetch_add(1, Ordering::Relaxed);
            return Err(offline(&call.gateway_id, &target));
        }
        // The caller's own wait, else what its API implies, else remoteTimeoutMs.
        let timeout = match (call.caller_timeout_ms, call.default_timeout_secs) {
            (0, 0) => self.settings.timeout,
            (0, secs) => Duration::from_secs(u64::from(secs)),
            (ms, _) => Duration::from_millis(u64::from(ms)),
        };
        let correlation = Bytes::from(ids::new_id());
        let (answer, answered) = oneshot::channel();
        {
            let mut waiting = self.waiting.lock().unwrap();
            if waiting.len() >= MAX_WAITING_CALLS {
                return Err(Error::new(
                    ErrorCode::QueueFull,
                    format!("{MAX_WAITING_CALLS} calls to other gateways already wait for their answers"),
                ));
            }
            waiting.insert(
                correlation.clone(),
                WaitingCall { gateway_id: call.gateway_id.clone(), broker: link.spec.name.clone(), answer },
            );
        }
        // However this call ends (answered, timed out, or its caller gone), it stops waiting.
        let _forget = Forget { remote: self, correlation: correlation.clone() };
        let mut user_properties = vec![
            (TYPE.to_string(), if call.asynchronous { "async" } else { "sync" }.to_string()),
            (CALLER.to_string(), self.settings.gateway_id.clone()),
        ];
        if call.default_timeout_secs > 0 {
            user_properties.push((DEFAULT_TIMEOUT_SECS.to_string(), call.default_timeout_secs.to_string()));
        }
        if !call.invoker_context.is_empty() {
            user_properties.push((INVOKER_CONTEXT.to_string(), call.invoker_context));
        }
        let request = DirectMessage {
            topic: self.gateway_topic(&call.gateway_id, &format!("invoke/{}/{}", call.service_name, call.function_name)),
            payload: call.payload.bytes().clone(),
            properties: PublishProperties {
                payload_format_indicator: Some(format_indicator(&call.payload)),
                // Message Expiry: the link sets it from the deadline, as it sends.
                response_topic: Some(self.reply_topic()),
                correlation_data: Some(correlation),
                user_properties,
                ..Default::default()
            },
            qos: QoS::AtLeastOnce,
            retain: false,
            // Not sent once the caller has given up: queued through an outage, it would run for nobody.
            deadline: Some(Instant::now() + timeout),
        };
        if !link.send_direct(request) {
            return Err(Error::new(
                ErrorCode::QueueFull,
                format!("too many messages wait for broker {}; {target} was not called", link.spec.name),
            ));
        }
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(answer)) => {
                self.counters.answered.fetch_add(1, Ordering::Relaxed);
                answer
            }
            Ok(Err(_)) => Err(Error::runtime_unavailable("the runtime stopped")),
            Err(_) => {
                self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
                Err(Error::new(ErrorCode::Timeout, format!("{target} did not answer within {} ms", timeout.as_millis())))
            }
        }
    }

    /// A message on a topic under [`TOPIC_ROOT`], which `link` received.
    pub(super) async fn take(self: &Arc<Self>, link: &Arc<Link>, publish: Publish) {
        let Ok(topic) = std::str::from_utf8(&publish.topic) else { return };
        let Some(rest) = topic.strip_prefix(TOPIC_ROOT) else { return };
        let mut levels = rest.split('/');
        let (Some(gateway_id), Some(kind)) = (levels.next(), levels.next()) else { return };
        let levels: Vec<&str> = levels.collect();
        let own = gateway_id == self.settings.gateway_id;
        match (kind, levels.as_slice()) {
            ("status", []) => self.take_status(link, gateway_id, &publish.payload),
            ("reply", [instance]) if own && *instance == self.instance => self.take_answer(publish),
            ("invoke", [service, function]) if own && self.exposes() => {
                let (service, function) = (service.to_string(), function.to_string());
                self.take_request(link, service, function, publish).await
            }
            // Another run's answers, another gateway's traffic: not for this runtime.
            _ => {}
        }
    }

    fn take_status(&self, link: &Link, gateway_id: &str, payload: &[u8]) {
        if gateway_id.len() > MAX_GATEWAY_ID_BYTES {
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let key = (link.spec.name.clone(), gateway_id.to_string());
        let online = match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(status) => status.get("status").and_then(|status| status.as_str()) == Some("online"),
            // An empty retained message clears the status: nothing is known.
            Err(_) if payload.is_empty() => {
                self.gateways.lock().unwrap().remove(&key);
                return;
            }
            Err(_) => return,
        };
        {
            let mut gateways = self.gateways.lock().unwrap();
            if gateways.len() < MAX_KNOWN_GATEWAYS || gateways.contains_key(&key) {
                gateways.insert(key, online);
            }
        }
        if !online {
            // Calls already waiting on that gateway end now rather than at their timeout.
            let mut waiting = self.waiting.lock().unwrap();
            let gone: Vec<Bytes> = waiting
                .iter()
                .filter(|(_, call)| call.gateway_id == gateway_id && call.broker == link.spec.name)
                .map(|(key, _)| key.clone())
                .collect();
            for key in gone {
                if let Some(call) = waiting.remove(&key) {
                    let error = Error::new(
                        ErrorCode::GatewayOffline,
                        format!(
                            "gateway {gateway_id} went offline while the call waited; the function may run when it is back \
                             (its broker keeps the request until the call's timeout)"
                        ),
                    );
                    let _ = call.answer.send(Err(error));
                }
            }
        }
    }

    fn take_answer(&self, publish: Publish) {
        let Some(properties) = publish.properties else { return };
        let Some(correlation) = &properties.correlation_data else { return };
        let Some(call) = self.waiting.lock().unwrap().remove(correlation) else {
            // Answered already (a repeat), or given up on.
            return;
        };
        let answer = decode_answer(&properties, publish.payload);
        let _ = call.answer.send(answer);
    }

    async fn take_request(self: &Arc<Self>, link: &Arc<Link>, service: String, function: String, publish: Publish) {
        let Some(properties) = publish.properties else {
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let (Some(response_topic), Some(correlation)) = (properties.response_topic.clone(), properties.correlation_data.clone())
        else {
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        // What this gateway keeps per request stays small, whatever a peer sends.
        if correlation.len() > MAX_CORRELATION_BYTES || response_topic.len() > MAX_REPLY_TOPIC_BYTES {
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Answers go to reply topics only: a request cannot make this gateway publish anywhere else.
        if !is_reply_topic(&response_topic) {
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            crate::warn!("remote", "a remote request names {response_topic} for its answer, which is no reply topic; dropped");
            return;
        }
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let key = Bytes::from([response_topic.as_bytes(), b"\0", &correlation[..]].concat());
        let to = Addressee {
            topic: response_topic,
            correlation,
            deadline: properties.message_expiry_interval.map(|secs| Instant::now() + Duration::from_secs(u64::from(secs))),
        };
        // Taken before anything is kept for the request: one refused now may come again, and then run.
        let Ok(permit) = self.running.clone().try_acquire_owned() else {
            let busy = Error::new(
                ErrorCode::QueueFull,
                format!("gateway {} runs {MAX_RUNNING_REQUESTS} requests from other gateways already", self.settings.gateway_id),
            );
            self.answer(link, to.address(encode_answer(Err(busy))));
            return;
        };
        match self.answers.lock().unwrap().begin(&key) {
            Kept::New => {}
            Kept::Running => {
                self.counters.repeats.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Kept::Answered(answer) => {
                self.counters.repeats.fetch_add(1, Ordering::Relaxed);
                self.answer(link, to.address(*answer));
                return;
            }
        }
        let exposed = self.exposed.iter().any(|name| name.split_once('/') == Some((service.as_str(), function.as_str())));
        let answer = if !exposed {
            self.counters.not_exposed.fetch_add(1, Ordering::Relaxed);
            // The same words whether or not the function exists here.
            Some(Err(Error::new(
                ErrorCode::FunctionNotFound,
                format!("gateway {} exposes no function {service}/{function}", self.settings.gateway_id),
            )))
        } else {
            None
        };
        if let Some(answer) = answer {
            let answer = encode_answer(answer);
            self.answers.lock().unwrap().finish(&key, Some(&answer));
            self.answer(link, to.address(answer));
            return;
        }
        let Some(serve) = self.serve.get().cloned() else {
            // Not kept: a repeat, once the runtime has started, runs.
            self.answers.lock().unwrap().finish(&key, None);
            self.answer(link, to.address(encode_answer(Err(Error::runtime_unavailable("the runtime is starting")))));
            return;
        };
        let user = |name: &str| user_property(&properties, name);
        let request = IncomingRequest {
            service_name: service,
            function_name: function,
            asynchronous: user(TYPE) == Some("async"),
            default_timeout_secs: user(DEFAULT_TIMEOUT_SECS).and_then(|secs| secs.parse().ok()).unwrap_or(0),
            invoker_context: user(INVOKER_CONTEXT).unwrap_or_default().to_string(),
            payload: payload_of(properties.payload_format_indicator, publish.payload),
        };
        let (remote, link) = (self.clone(), link.clone());
        tokio::spawn(async move {
            let answer = encode_answer(serve(request).await);
            remote.answers.lock().unwrap().finish(&key, Some(&answer));
            remote.answer(&link, to.address(answer));
            drop(permit);
        });
    }

    /// Sends an answer; one that finds the link's memory queue full is lost (its caller times out), and counted.
    fn answer(&self, link: &Link, answer: DirectMessage) {
        if !link.send_direct(answer) {
            self.counters.answers_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn stats(&self) -> RemoteStats {
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let gateways = self.gateways.lock().unwrap();
        let online = gateways.values().filter(|online| **online).count();
        RemoteStats {
            gateway_id: self.settings.gateway_id.clone(),
            calls: count(&self.counters.calls),
            answered: count(&self.counters.answered),
            timed_out: count(&self.counters.timed_out),
            offline: count(&self.counters.offline),
            requests: count(&self.counters.requests),
            repeats: count(&self.counters.repeats),
            not_exposed: count(&self.counters.not_exposed),
            malformed: count(&self.counters.malformed),
            answers_dropped: count(&self.counters.answers_dropped),
            gateways_online: online,
            gateways_offline: gateways.len() - online,
        }
    }
}

/// Where the answer to one request goes.
struct Addressee {
    topic: String,
    correlation: Bytes,
    /// When the request's Message Expiry ends: the caller waits no longer.
    deadline: Option<Instant>,
}

impl Addressee {
    fn address(&self, mut answer: DirectMessage) -> DirectMessage {
        answer.topic = self.topic.clone();
        answer.properties.correlation_data = Some(self.correlation.clone());
        answer.deadline = self.deadline;
        answer
    }
}

/// Takes a call out of the waiting ones when it ends, however it ends.
struct Forget<'a> {
    remote: &'a Remote,
    correlation: Bytes,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.remote.waiting.lock().unwrap().remove(&self.correlation);
    }
}

fn offline(gateway_id: &str, target: &str) -> Error {
    Error::new(ErrorCode::GatewayOffline, format!("gateway {gateway_id} is offline (its status); {target} was not run"))
}

/// `edgefc/v1/{gw}/reply/{instance}`, and nothing else.
fn is_reply_topic(topic: &str) -> bool {
    let Some(rest) = topic.strip_prefix(TOPIC_ROOT) else { return false };
    let levels: Vec<&str> = rest.split('/').collect();
    matches!(levels.as_slice(), [gateway, "reply", instance]
        if !gateway.is_empty() && !instance.is_empty() && !rest.contains(['+', '#']))
}

/// The value of user property `name`, if the message has it.
fn user_property<'a>(properties: &'a PublishProperties, name: &str) -> Option<&'a str> {
    properties.user_properties.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

/// An answer as it travels: its payload and user properties (the topic and
/// correlation data are the request's).
fn encode_answer(answer: Result<Answer>) -> DirectMessage {
    let mut user_properties = Vec::new();
    let payload = match answer {
        Ok(Answer::Result(result)) => {
            user_properties.push((OUTCOME.to_string(), "result".to_string()));
            if let Some(error) = result.function_error.as_str() {
                user_properties.push((FUNCTION_ERROR.to_string(), error.to_string()));
            }
            user_properties.push((STATUS.to_string(), result.status.to_string()));
            if !result.reply_context.is_empty() {
                user_properties.push((REPLY_CONTEXT.to_string(), result.reply_context));
            }
            result.payload
        }
        Ok(Answer::Accepted(invocation_id)) => {
            user_properties.push((OUTCOME.to_string(), "accepted".to_string()));
            Payload::text(invocation_id)
        }
        Err(error) => {
            user_properties.push((OUTCOME.to_string(), "failure".to_string()));
            user_properties.push((ERROR_CODE.to_string(), error.code.as_str().to_string()));
            Payload::text(error.message)
        }
    };
    DirectMessage {
        topic: String::new(),
        properties: PublishProperties {
            payload_format_indicator: Some(format_indicator(&payload)),
            user_properties,
            ..Default::default()
        },
        payload: payload.bytes().clone(),
        qos: QoS::AtLeastOnce,
        retain: false,
        deadline: None,
    }
}

fn decode_answer(properties: &PublishProperties, payload: Bytes) -> Result<Answer> {
    let user = |name: &str| user_property(properties, name);
    let payload = payload_of(properties.payload_format_indicator, payload);
    let text = || String::from_utf8_lossy(payload.bytes()).into_owned();
    match user(OUTCOME) {
        Some("result") => Ok(Answer::Result(SyncResult {
            status: user(STATUS).and_then(|status| status.parse().ok()).unwrap_or(crate::proto::message::STATUS_OK),
            function_error: match user(FUNCTION_ERROR) {
                Some("Handled") => FunctionError::Handled,
                Some("Unhandled") => FunctionError::Unhandled,
                _ => FunctionError::None,
            },
            reply_context: user(REPLY_CONTEXT).unwrap_or_default().to_string(),
            payload,
        })),
        Some("accepted") => Ok(Answer::Accepted(text())),
        Some("failure") => {
            let code = user(ERROR_CODE).and_then(ErrorCode::from_name).unwrap_or(ErrorCode::Internal);
            Err(Error::new(code, text()))
        }
        _ => Err(Error::new(ErrorCode::Protocol, "another gateway sent an answer this runtime cannot read")),
    }
}

enum Kept {
    New,
    Running,
    Answered(Box<DirectMessage>),
}

/// The answers to the last requests from other gateways, by response topic
/// and correlation data: a request delivered twice runs once.
#[derive(Default)]
struct KeptAnswers {
    entries: HashMap<Bytes, KeptAnswer>,
    order: VecDeque<Bytes>,
    /// Keys, payloads and properties, all counted.
    bytes: usize,
}

struct KeptAnswer {
    /// None while the request runs.
    answer: Option<(Bytes, PublishProperties)>,
    weight: usize,
}

impl KeptAnswers {
    fn begin(&mut self, key: &Bytes) -> Kept {
        match self.entries.get(key).map(|kept| &kept.answer) {
            Some(None) => return Kept::Running,
            Some(Some((payload, properties))) => {
                return Kept::Answered(Box::new(DirectMessage {
                    topic: String::new(),
                    payload: payload.clone(),
                    properties: properties.clone(),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    deadline: None,
                }))
            }
            None => {}
        }
        self.entries.insert(key.clone(), KeptAnswer { answer: None, weight: key.len() });
        self.bytes += key.len();
        self.order.push_back(key.clone());
        self.evict();
        Kept::New
    }

    /// Keeps `answer` for repeats of `key`'s request; `None` forgets the request (a repeat runs it).
    fn finish(&mut self, key: &Bytes, answer: Option<&DirectMessage>) {
        let Some(kept) = self.entries.get_mut(key) else { return };
        let weight = key.len() + answer.map_or(0, DirectMessage::size);
        match answer {
            // One answer larger than a quarter of the budget is not kept: a repeat of it is then ignored.
            Some(answer) if weight <= MAX_KEPT_ANSWER_BYTES / 4 => {
                self.bytes = self.bytes - kept.weight + weight;
                *kept = KeptAnswer { answer: Some((answer.payload.clone(), answer.properties.clone())), weight };
            }
            Some(_) => {}
            None => {
                self.bytes -= kept.weight;
                self.entries.remove(key);
                self.order.retain(|kept| kept != key);
            }
        }
        self.evict();
    }

    fn evict(&mut self) {
        while self.order.len() > MAX_KEPT_ANSWERS || self.bytes > MAX_KEPT_ANSWER_BYTES {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some(kept) = self.entries.remove(&oldest) {
                self.bytes -= kept.weight;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reply_topics_take_answers() {
        assert!(is_reply_topic("edgefc/v1/gw1/reply/abc"));
        for topic in
            ["edgefc/v1/gw1/invoke/a/b", "edgefc/v1/gw1/reply", "other/topic", "edgefc/v1/+/reply/x", "edgefc/v1/gw/reply/a/b"]
        {
            assert!(!is_reply_topic(topic), "{topic}");
        }
    }

    #[test]
    fn answers_travel_and_read_back() {
        let result = SyncResult {
            status: 201,
            function_error: FunctionError::Handled,
            reply_context: "{\"a\":1}".into(),
            payload: Payload::Binary(Bytes::from_static(&[0, 255])),
        };
        let message = encode_answer(Ok(Answer::Result(result.clone())));
        match decode_answer(&message.properties, message.payload) {
            Ok(Answer::Result(back)) => assert_eq!(back, result),
            _ => panic!("not a result"),
        }
        let message = encode_answer(Err(Error::new(ErrorCode::QueueFull, "full")));
        let error = decode_answer(&message.properties, message.payload).err().expect("a failure");
        assert_eq!((error.code, error.message.as_str()), (ErrorCode::QueueFull, "full"));
    }

    #[test]
    fn kept_answers_are_bounded_and_answer_repeats() {
        let mut kept = KeptAnswers::default();
        let answer = encode_answer(Ok(Answer::Accepted("id".into())));
        assert!(matches!(kept.begin(&Bytes::from_static(b"a")), Kept::New));
        assert!(matches!(kept.begin(&Bytes::from_static(b"a")), Kept::Running));
        kept.finish(&Bytes::from_static(b"a"), Some(&answer));
        assert!(matches!(kept.begin(&Bytes::from_static(b"a")), Kept::Answered(_)));
        for n in 0..MAX_KEPT_ANSWERS + 10 {
            kept.begin(&Bytes::from(n.to_string()));
        }
        assert_eq!(kept.entries.len(), MAX_KEPT_ANSWERS);
        assert!(matches!(kept.begin(&Bytes::from_static(b"a")), Kept::New), "the oldest went first");
    }
}
