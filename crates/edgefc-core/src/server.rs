//! The runtime's side of the transport: accepts connections, authenticates
//! them, turns `Invoke` frames into runs of hosted functions and `Publish`
//! frames into deliveries along the routes, and answers `Request`s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::client::SyncResult;
use crate::config::{Credentials, FunctionTable, ROUTER_FUNCTION_ID};
use crate::connection::{self, FrameReader, FrameSender};
use crate::error::{Error, ErrorCode, Result};
use crate::frame::{Frame, FrameCodec, FunctionError, Payload, MAX_FIELD_LEN, PROTOCOL_VERSION};
use crate::host::{FunctionHost, WorkerLink, STATUS_OK};
use crate::router::{check_topic, Router, TopicFilter};

/// A client that connects but does not say Hello in time is dropped.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// `context.invokerContext.custom.source` of messages published by the CLI
/// and scripts (admin token) rather than by a function.
pub const ADMIN_SOURCE: &str = "local";

/// Who a token belongs to.
#[derive(Clone, Copy)]
pub(crate) enum Caller {
    /// The CLI and local scripts, with the admin token.
    Admin,
    /// A hosted function (its index), with its own token.
    Function(usize),
}

/// What the router has done, for `edgefc stats` and the tests.
#[derive(Default)]
pub(crate) struct Stats {
    published: AtomicU64,
    delivered: AtomicU64,
    dropped_no_route: AtomicU64,
    refused_queue_full: AtomicU64,
}

impl Stats {
    fn to_json(&self, subscriptions: usize) -> String {
        serde_json::json!({
            "published": self.published.load(Ordering::Relaxed),
            "delivered": self.delivered.load(Ordering::Relaxed),
            "droppedNoRoute": self.dropped_no_route.load(Ordering::Relaxed),
            "refusedQueueFull": self.refused_queue_full.load(Ordering::Relaxed),
            "subscriptions": subscriptions,
        })
        .to_string()
    }
}

struct Subscription {
    connection_id: u64,
    sender: FrameSender,
    id: u64,
    filter: TopicFilter,
}

pub(crate) struct Shared {
    pub hosts: Vec<Arc<FunctionHost>>,
    pub functions: FunctionTable,
    pub tokens: HashMap<String, Caller>,
    pub max_payload: usize,
    pub router: Router,
    pub credentials: Option<Credentials>,
    pub stats: Stats,
    subscriptions: Mutex<Vec<Subscription>>,
    next_connection_id: AtomicU64,
}

impl Shared {
    pub fn new(
        hosts: Vec<Arc<FunctionHost>>,
        functions: FunctionTable,
        tokens: HashMap<String, Caller>,
        max_payload: usize,
        router: Router,
        credentials: Option<Credentials>,
    ) -> Shared {
        Shared {
            hosts,
            functions,
            tokens,
            max_payload,
            router,
            credentials,
            stats: Stats::default(),
            subscriptions: Mutex::new(Vec::new()),
            next_connection_id: AtomicU64::new(1),
        }
    }

    fn source_name(&self, caller: Caller) -> String {
        match caller {
            Caller::Admin => ADMIN_SOURCE.to_string(),
            Caller::Function(index) => self.hosts[index].spec.function_id.clone(),
        }
    }
}

pub(crate) async fn serve(listener: UnixListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    eprintln!("[edgefc] accept failed: {error}");
                    // Out of file descriptors, typically: give others a moment to close theirs.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        tokio::spawn(handle_connection(stream, shared.clone(), shutdown.clone()));
    }
}

async fn handle_connection(stream: UnixStream, shared: Arc<Shared>, shutdown: CancellationToken) {
    let peer_pid = stream.peer_cred().ok().and_then(|credentials| credentials.pid()).and_then(|pid| u32::try_from(pid).ok());
    let connection_id = shared.next_connection_id.fetch_add(1, Ordering::Relaxed);
    let (mut reader, sender) = connection::split(stream, FrameCodec::for_max_payload(shared.max_payload));
    let Some((caller, worker)) = greet(&mut reader, &sender, &shared, peer_pid).await else {
        return;
    };
    loop {
        let frame = tokio::select! {
            frame = reader.read_frame() => frame,
            _ = shutdown.cancelled() => break,
        };
        match frame {
            Ok(Some(Frame::Invoke { id, asynchronous, target, invoker_context, payload })) => {
                let request = Invocation { id, asynchronous, target, invoker_context, payload };
                tokio::spawn(invoke(shared.clone(), sender.clone(), caller, request));
            }
            Ok(Some(Frame::TaskDone { id, function_error, payload })) => match &worker {
                Some(link) => link.complete(id, SyncResult { status: STATUS_OK, function_error, payload }),
                None => break,
            },
            Ok(Some(Frame::Publish { id, topic, payload })) => {
                let reply = match publish(&shared, caller, topic, payload) {
                    Ok(message_id) => Frame::Accepted { id, invocation_id: message_id },
                    Err(error) => failure(id, error),
                };
                sender.send(reply);
            }
            Ok(Some(Frame::Request { id, operation })) => {
                let reply = match answer(&shared, caller, &operation) {
                    Ok(json) => Frame::Result { id, status: STATUS_OK, function_error: FunctionError::None, payload: Payload::text(json) },
                    Err(error) => failure(id, error),
                };
                sender.send(reply);
            }
            Ok(Some(Frame::Subscribe { id, topic_filter })) => {
                let reply = match subscribe(&shared, caller, &sender, connection_id, id, &topic_filter) {
                    Ok(()) => Frame::Accepted { id, invocation_id: String::new() },
                    Err(error) => failure(id, error),
                };
                sender.send(reply);
            }
            Ok(None) => break,
            Ok(Some(_)) => {
                refuse(&sender, ErrorCode::Protocol, "unexpected frame");
                break;
            }
            Err(error) => {
                refuse(&sender, ErrorCode::Protocol, &error.to_string());
                break;
            }
        }
    }
    if let Some(link) = worker {
        link.close();
    }
    shared.subscriptions.lock().unwrap().retain(|subscription| subscription.connection_id != connection_id);
}

/// Reads and checks the Hello; answers Welcome or a Failure. `None` ends the
/// connection; otherwise who is calling and, when the connection serves
/// tasks, its worker link.
async fn greet(
    reader: &mut FrameReader,
    sender: &FrameSender,
    shared: &Shared,
    peer_pid: Option<u32>,
) -> Option<(Caller, Option<Arc<WorkerLink>>)> {
    let hello = tokio::time::timeout(HELLO_TIMEOUT, reader.read_frame()).await;
    let (version, serve, token) = match hello {
        Ok(Ok(Some(Frame::Hello { version, serve, token }))) => (version, serve, token),
        Ok(Ok(None)) => return None,
        _ => {
            refuse(sender, ErrorCode::Protocol, "expected a Hello frame");
            return None;
        }
    };
    if version != PROTOCOL_VERSION {
        refuse(sender, ErrorCode::Protocol, &format!("protocol version {version} is not supported; the runtime speaks {PROTOCOL_VERSION}"));
        return None;
    }
    let Some(caller) = shared.tokens.get(&token).copied() else {
        refuse(sender, ErrorCode::Unauthorized, "the token was not accepted by the edgefc runtime");
        return None;
    };
    let start = match (caller, serve) {
        (_, false) => None,
        (Caller::Function(index), true) => match shared.hosts[index].claim_start(peer_pid) {
            Some(start) => Some((&shared.hosts[index], start)),
            None => {
                refuse(sender, ErrorCode::Unauthorized, "no worker of this function is being started");
                return None;
            }
        },
        (Caller::Admin, true) => {
            refuse(sender, ErrorCode::Unauthorized, "only a hosted function's worker can serve tasks");
            return None;
        }
    };
    // Welcome goes first: once attached, the worker's tasks follow on the same queue.
    sender.send(Frame::Welcome { version: PROTOCOL_VERSION, max_payload: shared.max_payload as u64 });
    let worker = match start {
        Some((host, start)) => Some(host.attach_worker(start, sender.clone())?),
        None => None,
    };
    Some((caller, worker))
}

fn refuse(sender: &FrameSender, code: ErrorCode, message: &str) {
    sender.send(failure(0, Error::new(code, message)));
}

/// A Failure frame; a message longer than a field can carry (it may quote a
/// caller's long function name) is cut, so the reply is never lost.
fn failure(id: u64, error: Error) -> Frame {
    let mut message = error.message;
    if message.len() > MAX_FIELD_LEN {
        let mut end = MAX_FIELD_LEN - 3;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    Frame::Failure { id, code: error.code, message }
}

fn check_payload(shared: &Shared, payload: &Payload) -> Result<()> {
    if payload.len() > shared.max_payload {
        return Err(crate::client::payload_too_large(payload.len(), shared.max_payload));
    }
    Ok(())
}

struct Invocation {
    id: u64,
    asynchronous: bool,
    target: String,
    invoker_context: String,
    payload: Payload,
}

async fn invoke(shared: Arc<Shared>, sender: FrameSender, caller: Caller, request: Invocation) {
    let id = request.id;
    let reply = match run_invocation(&shared, &sender, caller, request).await {
        Ok(Some(result)) => Frame::Result {
            id,
            status: result.status,
            function_error: result.function_error,
            payload: result.payload,
        },
        Ok(None) => return,
        Err(error) => failure(id, error),
    };
    sender.send(reply);
}

/// `Ok(None)` for an async invocation, which was answered when accepted.
async fn run_invocation(shared: &Shared, sender: &FrameSender, caller: Caller, request: Invocation) -> Result<Option<SyncResult>> {
    check_payload(shared, &request.payload)?;
    if request.target == ROUTER_FUNCTION_ID {
        return publish_through_router_function(shared, sender, caller, request);
    }
    let index = shared.functions.get(&request.target).ok_or_else(|| {
        Error::new(ErrorCode::FunctionNotFound, format!("function {} does not exist", request.target))
    })?;
    let host = &shared.hosts[index];
    let admission = host.admit()?;
    let request_id = uuid::Uuid::new_v4().to_string();
    if !request.asynchronous {
        let result = host.run(admission, request_id, request.invoker_context, request.payload).await?;
        return Ok(Some(result));
    }
    sender.send(Frame::Accepted { id: request.id, invocation_id: request_id.clone() });
    report_async_outcome(host, &request_id, host.run(admission, request_id.clone(), request.invoker_context, request.payload).await);
    Ok(None)
}

fn report_async_outcome(host: &FunctionHost, request_id: &str, outcome: Result<SyncResult>) {
    match outcome {
        Ok(result) if result.function_error != FunctionError::None => {
            let detail = String::from_utf8_lossy(result.payload.bytes());
            eprintln!("[edgefc] async invocation {request_id} of {} failed: {detail}", host.spec.function_id);
        }
        Ok(_) => {}
        Err(error) => eprintln!("[edgefc] async invocation {request_id} of {} was dropped: {error}", host.spec.function_id),
    }
}

/// Upstream's `publish` invokes `ROUTER_FUNCTION_ID` with the topic in the
/// invoker context; code that does so directly keeps working.
fn publish_through_router_function(shared: &Shared, sender: &FrameSender, caller: Caller, request: Invocation) -> Result<Option<SyncResult>> {
    let topic = base64::engine::general_purpose::STANDARD
        .decode(&request.invoker_context)
        .ok()
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .and_then(|context| context.pointer("/custom/topic").and_then(|topic| topic.as_str()).map(str::to_string))
        .ok_or_else(|| Error::new(ErrorCode::InvalidParams, "a message for the router needs invokerContext.custom.topic"))?;
    let message_id = publish(shared, caller, topic, request.payload)?;
    if request.asynchronous {
        sender.send(Frame::Accepted { id: request.id, invocation_id: message_id });
        return Ok(None);
    }
    Ok(Some(SyncResult { status: STATUS_OK, function_error: FunctionError::None, payload: Payload::empty_text() }))
}

/// Routes one message: shows it to matching subscribers, then queues it for
/// every target function. Never waits on a subscriber: a target whose queue
/// is full is skipped and named in the `ERR_QUEUE_FULL` error.
fn publish(shared: &Shared, caller: Caller, topic: String, payload: Payload) -> Result<String> {
    check_topic(&topic)?;
    check_payload(shared, &payload)?;
    let message_id = uuid::Uuid::new_v4().to_string();
    shared.stats.published.fetch_add(1, Ordering::Relaxed);
    let source = shared.source_name(caller);
    notify_subscribers(shared, &source, &topic, &payload);
    let publisher = match caller {
        Caller::Admin => None,
        Caller::Function(index) => Some(index),
    };
    let targets = shared.router.targets(publisher, &topic);
    if targets.is_empty() {
        shared.stats.dropped_no_route.fetch_add(1, Ordering::Relaxed);
        return Ok(message_id);
    }
    let context = serde_json::json!({ "custom": { "source": source, "topic": topic } }).to_string();
    let invoker_context = base64::engine::general_purpose::STANDARD.encode(context);
    let mut full = Vec::new();
    for target in targets {
        let host = shared.hosts[target].clone();
        match host.admit() {
            Ok(admission) => {
                shared.stats.delivered.fetch_add(1, Ordering::Relaxed);
                let (invoker_context, payload) = (invoker_context.clone(), payload.clone());
                tokio::spawn(async move {
                    let request_id = uuid::Uuid::new_v4().to_string();
                    let outcome = host.run(admission, request_id.clone(), invoker_context, payload).await;
                    report_async_outcome(&host, &request_id, outcome);
                });
            }
            Err(_) => {
                shared.stats.refused_queue_full.fetch_add(1, Ordering::Relaxed);
                full.push(host.spec.function_id.clone());
            }
        }
    }
    if !full.is_empty() {
        return Err(Error::new(
            ErrorCode::QueueFull,
            format!("the queue of {} is full; the message on {topic} was not delivered there", full.join(", ")),
        ));
    }
    Ok(message_id)
}

fn notify_subscribers(shared: &Shared, source: &str, topic: &str, payload: &Payload) {
    let subscriptions = shared.subscriptions.lock().unwrap();
    for subscription in subscriptions.iter().filter(|subscription| subscription.filter.matches(topic)) {
        subscription.sender.send(Frame::Message {
            id: subscription.id,
            source: source.to_string(),
            topic: topic.to_string(),
            payload: payload.clone(),
        });
    }
}

fn subscribe(shared: &Shared, caller: Caller, sender: &FrameSender, connection_id: u64, id: u64, topic_filter: &str) -> Result<()> {
    if let Caller::Function(_) = caller {
        return Err(Error::new(ErrorCode::Unauthorized, "functions receive messages through routes; subscribing needs the admin token"));
    }
    let filter = TopicFilter::parse(topic_filter)?;
    shared.subscriptions.lock().unwrap().push(Subscription { connection_id, sender: sender.clone(), id, filter });
    Ok(())
}

/// The runtime's own services, answered as JSON.
fn answer(shared: &Shared, caller: Caller, operation: &str) -> Result<String> {
    match operation {
        "credentials" => {
            if let Caller::Admin = caller {
                return Err(Error::new(ErrorCode::Unauthorized, "credentials are served to hosted functions only"));
            }
            let credentials = shared.credentials.as_ref().ok_or_else(|| {
                Error::new(ErrorCode::CredentialsUnavailable, "no credentials are configured: add \"credentials\" to edgefc.json")
            })?;
            Ok(serde_json::to_string(credentials).expect("credentials serialize"))
        }
        "stats" => Ok(shared.stats.to_json(shared.subscriptions.lock().unwrap().len())),
        other => Err(Error::new(ErrorCode::InvalidParams, format!("unknown request {other}"))),
    }
}
