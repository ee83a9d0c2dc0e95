//! The caller side of the transport: one multiplexed connection per process.
//!
//! Every request carries an id; a reader task routes each reply to the
//! request waiting for it, so any number of invocations share one socket. A
//! connection opened with `serve` also receives the tasks of the function it
//! hosts (the worker side), which is how a hosted function's own
//! `FCClient` calls and its handler share one connection.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use crate::connection::{self, FrameReader, FrameSender};
use crate::error::{Error, ErrorCode, Result};
use crate::frame::{Frame, FrameCodec, FunctionError, Payload, MAX_FIELD_LEN, PROTOCOL_VERSION};

/// How long connecting plus the handshake may take before the runtime is
/// declared unavailable.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Replies handed to the sink at most at once, so that the receiving thread
/// can start on the first ones while the rest are still being read.
const MAX_COMPLETION_BATCH: usize = 64;

/// A client does not know the runtime's payload limit before the handshake;
/// this bounds what it is willing to read until then.
const HANDSHAKE_MAX_PAYLOAD: usize = 0;

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub socket_path: PathBuf,
    pub token: String,
    /// Receive the tasks of the function this token belongs to.
    pub serve: bool,
    pub connect_timeout: Duration,
}

impl ConnectOptions {
    pub fn new(socket_path: impl Into<PathBuf>, token: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            socket_path: socket_path.into(),
            token: token.into(),
            serve: false,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeRequest {
    /// A function id or ARN.
    pub target: String,
    pub asynchronous: bool,
    /// Base64 JSON, passed through untouched.
    pub invoker_context: String,
    pub payload: Payload,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    pub status: u16,
    pub function_error: FunctionError,
    pub payload: Payload,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeReply {
    Completed(SyncResult),
    Accepted { invocation_id: String },
}

/// A published message, as a subscriber receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub source: String,
    pub topic: String,
    pub payload: Payload,
}

/// One run of the hosted function's handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: u64,
    pub request_id: String,
    pub invoker_context: String,
    pub payload: Payload,
}

/// Who waits for a reply: an awaiting caller, or a tag whose reply goes to
/// the connection's [`CompletionSink`] in a batch.
enum Waiter {
    Reply(oneshot::Sender<Result<InvokeReply>>),
    Tagged(u64),
}

type Pending = Arc<Mutex<Option<HashMap<u64, Waiter>>>>;

/// Receives the replies to tagged requests, as many at a time as arrived
/// together, so that a binding can hand them over in one crossing (one
/// wake-up of the JavaScript thread for a whole batch).
pub type CompletionSink = Arc<dyn Fn(Vec<(u64, Result<InvokeReply>)>) + Send + Sync>;

/// Receives a serving connection's tasks in batches, instead of
/// [`Client::next_tasks`]; an empty batch means the connection has closed.
pub type TaskSink = Arc<dyn Fn(Vec<Task>) + Send + Sync>;

/// Where a connection hands over what it reads, for bindings that want
/// pushes rather than awaiting.
#[derive(Clone, Default)]
pub struct Sinks {
    pub completions: Option<CompletionSink>,
    pub tasks: Option<TaskSink>,
}

/// How a frame leaves: through the connection's writer task, or queued for
/// the caller's own [`Client::flush`] (a thread outside tokio that flushes
/// once per turn of its event loop saves a thread wake-up per frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    Writer,
    Queue,
}

/// A request sent with [`Client::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Invoke(InvokeRequest),
    Publish { topic: String, payload: Payload },
}

impl Outgoing {
    fn into_frame(self, id: u64) -> Frame {
        match self {
            Outgoing::Invoke(request) => Frame::Invoke {
                id,
                asynchronous: request.asynchronous,
                target: request.target,
                invoker_context: request.invoker_context,
                payload: request.payload,
            },
            Outgoing::Publish { topic, payload } => Frame::Publish { id, topic, payload },
        }
    }
}

pub struct Client {
    sender: FrameSender,
    /// `None` once the connection is gone: late requests fail fast instead of
    /// waiting on a reply that cannot come.
    pending: Pending,
    next_id: AtomicU64,
    max_payload: usize,
    tasks: tokio::sync::Mutex<mpsc::UnboundedReceiver<Task>>,
    messages: tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>,
}

impl Client {
    /// Connects and authenticates. Fails with `ERR_RUNTIME_UNAVAILABLE` when
    /// nothing answers within `connect_timeout`, `ERR_UNAUTHORIZED` when the
    /// token is refused.
    pub async fn connect(options: &ConnectOptions) -> Result<Client> {
        Client::connect_with_sinks(options, Sinks::default()).await
    }

    /// Like [`connect`](Client::connect); replies to tagged requests
    /// ([`start`](Client::start)) and tasks go to `sinks`.
    pub async fn connect_with_sinks(options: &ConnectOptions, sinks: Sinks) -> Result<Client> {
        let handshake = Client::handshake(options, sinks);
        match tokio::time::timeout(options.connect_timeout, handshake).await {
            Ok(result) => result,
            Err(_) => Err(Error::runtime_unavailable(format!(
                "the runtime at {} did not answer within {} ms",
                options.socket_path.display(),
                options.connect_timeout.as_millis()
            ))),
        }
    }

    async fn handshake(options: &ConnectOptions, sinks: Sinks) -> Result<Client> {
        check_field("the token", &options.token)?;
        let stream = UnixStream::connect(&options.socket_path).await.map_err(|error| {
            Error::runtime_unavailable(format!(
                "cannot connect to the edgefc runtime at {}: {error}",
                options.socket_path.display()
            ))
        })?;
        let (mut reader, sender) = connection::split(stream, FrameCodec::for_max_payload(HANDSHAKE_MAX_PAYLOAD));
        sender.send(Frame::Hello { version: PROTOCOL_VERSION, serve: options.serve, token: options.token.clone() });
        let max_payload = match reader.read_frame().await {
            Ok(Some(Frame::Welcome { version: PROTOCOL_VERSION, max_payload })) => max_payload as usize,
            Ok(Some(Frame::Welcome { version, .. })) => {
                return Err(Error::new(
                    ErrorCode::Protocol,
                    format!("the runtime speaks protocol version {version}, this client {PROTOCOL_VERSION}"),
                ))
            }
            Ok(Some(Frame::Failure { code, message, .. })) => return Err(Error::new(code, message)),
            Ok(Some(_)) => return Err(Error::new(ErrorCode::Protocol, "unexpected frame during the handshake")),
            Ok(None) => return Err(Error::runtime_unavailable("the runtime closed the connection during the handshake")),
            Err(error) => return Err(Error::runtime_unavailable(format!("handshake with the runtime failed: {error}"))),
        };
        reader.set_max_payload(max_payload);
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let (task_queue, tasks) = mpsc::unbounded_channel();
        let (message_queue, messages) = mpsc::unbounded_channel();
        tokio::spawn(route_replies(reader, pending.clone(), task_queue, message_queue, sinks));
        Ok(Client {
            sender,
            pending,
            next_id: AtomicU64::new(1),
            max_payload,
            tasks: tokio::sync::Mutex::new(tasks),
            messages: tokio::sync::Mutex::new(messages),
        })
    }

    /// The largest payload the runtime accepts, learned in the handshake.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_closed() || self.pending.lock().unwrap().is_none()
    }

    pub async fn invoke(&self, request: InvokeRequest) -> Result<InvokeReply> {
        let outgoing = Outgoing::Invoke(request);
        self.check(&outgoing)?;
        self.request(|id| outgoing.into_frame(id)).await
    }

    /// Sends a request without waiting: its reply goes to the sink given at
    /// connect time, with `tag`. Errors found before sending are returned.
    pub fn start(&self, outgoing: Outgoing, tag: u64, dispatch: Dispatch) -> Result<()> {
        self.check(&outgoing)?;
        self.send_request(Waiter::Tagged(tag), |id| outgoing.into_frame(id), dispatch)
    }

    /// Writes the frames queued with [`Dispatch::Queue`].
    pub fn flush(&self) {
        self.sender.flush();
    }

    /// The limits a request must keep before it is sent.
    fn check(&self, outgoing: &Outgoing) -> Result<()> {
        match outgoing {
            Outgoing::Invoke(request) => {
                self.check_payload(&request.payload)?;
                check_field("the function id", &request.target)?;
                check_field("invokerContext", &request.invoker_context)
            }
            Outgoing::Publish { topic, payload } => {
                self.check_payload(payload)?;
                check_field("the topic", topic)
            }
        }
    }

    /// Publishes a message; resolves with its id once the runtime has routed it.
    pub async fn publish(&self, topic: String, payload: Payload) -> Result<String> {
        let outgoing = Outgoing::Publish { topic, payload };
        self.check(&outgoing)?;
        match self.request(|id| outgoing.into_frame(id)).await? {
            InvokeReply::Accepted { invocation_id } => Ok(invocation_id),
            InvokeReply::Completed(_) => Err(unexpected_reply()),
        }
    }

    /// Asks the runtime for one of its services (`credentials`, `stats`); the answer is JSON.
    pub async fn query(&self, operation: &str) -> Result<String> {
        check_field("the request", operation)?;
        let operation = operation.to_string();
        match self.request(|id| Frame::Request { id, operation }).await? {
            InvokeReply::Completed(result) => Ok(String::from_utf8_lossy(result.payload.bytes()).into_owned()),
            InvokeReply::Accepted { .. } => Err(unexpected_reply()),
        }
    }

    /// From now on, every published message whose topic matches
    /// `topic_filter` is returned by [`next_messages`](Client::next_messages).
    pub async fn subscribe(&self, topic_filter: String) -> Result<()> {
        check_field("the topic filter", &topic_filter)?;
        self.request(|id| Frame::Subscribe { id, topic_filter }).await.map(|_| ())
    }

    /// Waits for at least one message and returns every message that is
    /// ready, or `None` once the connection is closed.
    pub async fn next_messages(&self) -> Option<Vec<Message>> {
        drain_at_least_one(&mut *self.messages.lock().await).await
    }

    fn check_payload(&self, payload: &Payload) -> Result<()> {
        if payload.len() > self.max_payload {
            return Err(payload_too_large(payload.len(), self.max_payload));
        }
        Ok(())
    }

    /// Sends the frame built for a fresh request id and waits for its reply.
    async fn request(&self, frame: impl FnOnce(u64) -> Frame) -> Result<InvokeReply> {
        let (reply_to, reply) = oneshot::channel();
        self.send_request(Waiter::Reply(reply_to), frame, Dispatch::Writer)?;
        reply.await.unwrap_or_else(|_| Err(connection_lost()))
    }

    /// Registers `waiter` under a fresh request id and sends the frame built for it.
    fn send_request(&self, waiter: Waiter, frame: impl FnOnce(u64) -> Frame, dispatch: Dispatch) -> Result<()> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        match self.pending.lock().unwrap().as_mut() {
            Some(pending) => pending.insert(id, waiter),
            None => return Err(connection_lost()),
        };
        if !self.send_frame(frame(id), dispatch) {
            if let Some(pending) = self.pending.lock().unwrap().as_mut() {
                pending.remove(&id);
            }
            return Err(connection_lost());
        }
        Ok(())
    }

    /// Waits for at least one task and returns every task that is ready, or
    /// `None` once the connection is closed.
    pub async fn next_tasks(&self) -> Option<Vec<Task>> {
        drain_at_least_one(&mut *self.tasks.lock().await).await
    }

    /// Reports a finished task. A result over the payload limit is replaced
    /// by an `Unhandled` error so that the caller learns why.
    pub fn complete(&self, task_id: u64, function_error: FunctionError, payload: Payload, dispatch: Dispatch) -> Result<()> {
        let (function_error, payload) = if payload.len() > self.max_payload {
            let error = payload_too_large(payload.len(), self.max_payload);
            (FunctionError::Unhandled, error_payload("PayloadTooLarge", &error.message))
        } else {
            (function_error, payload)
        };
        if self.pending.lock().unwrap().is_none() {
            return Err(connection_lost());
        }
        if self.send_frame(Frame::TaskDone { id: task_id, function_error, payload }, dispatch) {
            Ok(())
        } else {
            Err(connection_lost())
        }
    }

    /// False when the connection is closed.
    fn send_frame(&self, frame: Frame, dispatch: Dispatch) -> bool {
        match dispatch {
            Dispatch::Writer => self.sender.send(frame),
            Dispatch::Queue => self.sender.queue(frame),
        }
    }
}

impl FrameReader {
    fn set_max_payload(&mut self, max_payload: usize) {
        self.set_codec(FrameCodec::for_max_payload(max_payload));
    }
}

async fn drain_at_least_one<T>(queue: &mut mpsc::UnboundedReceiver<T>) -> Option<Vec<T>> {
    let first = queue.recv().await?;
    let mut batch = vec![first];
    while let Ok(item) = queue.try_recv() {
        batch.push(item);
    }
    Some(batch)
}

async fn route_replies(
    mut reader: FrameReader,
    pending: Pending,
    task_queue: mpsc::UnboundedSender<Task>,
    message_queue: mpsc::UnboundedSender<Message>,
    sinks: Sinks,
) {
    let Sinks { completions: sink, tasks: task_sink } = sinks;
    let mut batch = Vec::new();
    let mut tasks = Vec::new();
    'connection: loop {
        // Wait for one frame, then take every frame that is already here,
        // and hand the tagged replies over together.
        let mut next = reader.read_frame().await;
        loop {
            let reply = match next {
                Ok(Some(Frame::Result { id, status, function_error, payload })) => {
                    Some((id, Ok(InvokeReply::Completed(SyncResult { status, function_error, payload }))))
                }
                Ok(Some(Frame::Accepted { id, invocation_id })) => Some((id, Ok(InvokeReply::Accepted { invocation_id }))),
                Ok(Some(Frame::Failure { id, code, message })) => Some((id, Err(Error::new(code, message)))),
                Ok(Some(Frame::Task { id, request_id, invoker_context, payload })) => {
                    let task = Task { id, request_id, invoker_context, payload };
                    if task_sink.is_some() {
                        tasks.push(task);
                        if tasks.len() >= MAX_COMPLETION_BATCH {
                            deliver(&task_sink, &mut tasks);
                        }
                    } else {
                        let _ = task_queue.send(task);
                    }
                    None
                }
                Ok(Some(Frame::Message { source, topic, payload, .. })) => {
                    let _ = message_queue.send(Message { source, topic, payload });
                    None
                }
                // The runtime never sends anything else; a peer that does is not
                // one we can keep talking to.
                Ok(Some(_)) | Ok(None) | Err(_) => break 'connection,
            };
            if let Some((id, reply)) = reply {
                let waiter = pending.lock().unwrap().as_mut().and_then(|pending| pending.remove(&id));
                match waiter {
                    Some(Waiter::Reply(waiting)) => {
                        let _ = waiting.send(reply);
                    }
                    Some(Waiter::Tagged(tag)) => {
                        batch.push((tag, reply));
                        if batch.len() >= MAX_COMPLETION_BATCH {
                            deliver(&sink, &mut batch);
                        }
                    }
                    None => {}
                }
            }
            match reader.read_frame().now_or_never() {
                Some(frame) => next = frame,
                None => break,
            }
        }
        deliver(&sink, &mut batch);
        deliver(&task_sink, &mut tasks);
    }
    let orphaned = pending.lock().unwrap().take();
    for (_, waiter) in orphaned.into_iter().flatten() {
        match waiter {
            Waiter::Reply(waiting) => {
                let _ = waiting.send(Err(connection_lost()));
            }
            Waiter::Tagged(tag) => batch.push((tag, Err(connection_lost()))),
        }
    }
    deliver(&sink, &mut batch);
    // Tasks read together with the end still reach the worker, before the end does.
    deliver(&task_sink, &mut tasks);
    if let Some(task_sink) = &task_sink {
        task_sink(Vec::new());
    }
}

/// Hands a non-empty batch to its sink, if there is one.
fn deliver<T>(sink: &Option<Arc<dyn Fn(Vec<T>) + Send + Sync>>, batch: &mut Vec<T>) {
    if let Some(sink) = sink {
        if !batch.is_empty() {
            sink(std::mem::take(batch));
        }
    }
}

/// Strings travel in fields of at most 65535 bytes.
fn check_field(what: &str, value: &str) -> Result<()> {
    if value.len() > MAX_FIELD_LEN {
        return Err(Error::new(
            ErrorCode::InvalidParams,
            format!("{what} is {} bytes long; at most {MAX_FIELD_LEN} are allowed", value.len()),
        ));
    }
    Ok(())
}

fn unexpected_reply() -> Error {
    Error::new(ErrorCode::Protocol, "the runtime answered with an unexpected frame")
}

fn connection_lost() -> Error {
    Error::runtime_unavailable("the connection to the edgefc runtime was lost")
}

pub(crate) fn payload_too_large(len: usize, max: usize) -> Error {
    Error::new(ErrorCode::PayloadTooLarge, format!("payload of {len} bytes exceeds the limit of {max} bytes"))
}

/// The JSON body of a function error, shaped like Function Compute's.
pub fn error_payload(error_type: &str, message: &str) -> Payload {
    Payload::text(serde_json::json!({ "errorMessage": message, "errorType": error_type }).to_string())
}

/// A client that connects on first use and reconnects after the runtime
/// restarts. A serving connection is never replaced: its worker must exit
/// with it.
pub struct Channel {
    options: ConnectOptions,
    sinks: Sinks,
    connecting: tokio::sync::Mutex<()>,
    /// The connected client, readable without waiting, for the hot path.
    current: std::sync::RwLock<Option<Arc<Client>>>,
}

impl Channel {
    pub fn new(options: ConnectOptions) -> Channel {
        Channel::with_sinks(options, Sinks::default())
    }

    /// Every connection this channel makes hands over to `sinks`.
    pub fn with_sinks(options: ConnectOptions, sinks: Sinks) -> Channel {
        Channel { options, sinks, connecting: tokio::sync::Mutex::new(()), current: std::sync::RwLock::new(None) }
    }

    /// The connected client, if it is still open; never waits.
    pub fn ready(&self) -> Option<Arc<Client>> {
        self.current.read().unwrap().as_ref().filter(|client| !client.is_closed()).cloned()
    }

    pub async fn client(&self) -> Result<Arc<Client>> {
        if let Some(client) = self.ready() {
            return Ok(client);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(client) = self.ready() {
            return Ok(client);
        }
        if self.options.serve && self.current.read().unwrap().is_some() {
            return Err(connection_lost());
        }
        let client = Arc::new(Client::connect_with_sinks(&self.options, self.sinks.clone()).await?);
        *self.current.write().unwrap() = Some(client.clone());
        Ok(client)
    }
}
