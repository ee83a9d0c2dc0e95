//! What a caller or worker process uses: one multiplexed connection to the
//! runtime per process.
//!
//! Every request carries an id; each reply is routed ([`replies`]) to whoever
//! waits for it, so any number of requests share one socket. A connection is
//! read either by a tokio task or, when a [`Poller`] is given, by the
//! poller's thread (the JavaScript thread, whose event loop then watches the
//! socket itself: no other thread is woken between the socket and it). A
//! connection opened with `serve` also receives the tasks of the function it
//! hosts (the worker side), which is how a hosted function's own `FCClient`
//! calls and its handler share one connection.
//!
//! - [`Client`]: one connection: connect, send requests, report tasks.
//! - [`Session`]: a process's connection as the binding holds it: connects on
//!   first use, keeps the order of requests sent meanwhile, reconnects after
//!   the runtime restarts.

mod replies;
mod session;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::{Encoder, FramedRead};

use crate::error::{Error, ErrorCode, Result};
use crate::proto::frame::{Frame, FrameCodec, MAX_FIELD_LEN, PROTOCOL_VERSION};
use crate::proto::limits::{check_field, check_request, payload_too_large};
use crate::proto::message::{Message, Reply, Request, SyncResult, Task};
use crate::transport::{self, FrameReader, FrameSender, OutputBound, PendingTable, PolledReader, ReadTurn};

pub use replies::Arrived;
pub use session::Session;

/// How long connecting plus the handshake may take before the runtime is
/// declared unavailable.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A client does not know the runtime's payload limit before the handshake;
/// this bounds what it is willing to read until then.
const HANDSHAKE_MAX_PAYLOAD: usize = 0;

/// Messages of this connection's subscriptions that may wait to be taken
/// with [`Client::next_messages`], by count and by payload bytes. Past
/// either, new messages are dropped and counted ([`Client::dropped_messages`]).
pub const MAX_WAITING_MESSAGES: usize = 1024;
pub const MAX_WAITING_MESSAGE_BYTES: usize = 8 << 20;

/// Where a client's connection comes from.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// The runtime's socket, and a token to authenticate with.
    Socket { path: PathBuf, token: String },
    /// The connection the runtime handed a worker when it started it: the
    /// runtime already knows whose it is, so it needs no token. It can be
    /// used once; a worker ends with it.
    Inherited(Arc<std::sync::Mutex<Option<std::os::unix::net::UnixStream>>>),
}

impl Endpoint {
    /// Takes over the inherited connection at descriptor `fd`: it is kept
    /// from the processes this one starts (close-on-exec). Fails unless
    /// `fd` is an open socket.
    pub fn inherited(fd: std::os::fd::RawFd) -> Result<Endpoint> {
        let not_inherited =
            |why: String| Error::runtime_unavailable(format!("no connection was inherited at descriptor {fd}: {why}"));
        // SAFETY: fstat only writes into the buffer it is given.
        let mut status: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut status) } != 0 {
            return Err(not_inherited(std::io::Error::last_os_error().to_string()));
        }
        if status.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(not_inherited("it is not a socket".to_string()));
        }
        // SAFETY: fcntl on a descriptor just checked to be open.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return Err(not_inherited(std::io::Error::last_os_error().to_string()));
        }
        // SAFETY: the descriptor is open, a socket, and handed to this process to own.
        let stream = unsafe { <std::os::unix::net::UnixStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        stream.set_nonblocking(true).map_err(|error| not_inherited(error.to_string()))?;
        Ok(Endpoint::Inherited(Arc::new(std::sync::Mutex::new(Some(stream)))))
    }

    fn describe(&self) -> String {
        match self {
            Endpoint::Socket { path, .. } => format!("the edgefc runtime at {}", path.display()),
            Endpoint::Inherited(_) => "the edgefc runtime (inherited connection)".to_string(),
        }
    }
}

/// A thread that reads and writes connections from its own event loop.
/// Once connected, a polled [`Client`] is handed to [`watch`]; from then on
/// that thread calls [`Client::read_ready`] when the socket is readable, and
/// [`Client::write_ready`] when asked to through [`write_soon`] and then
/// whenever the socket is writable, until it returns false.
///
/// [`watch`]: Poller::watch
/// [`write_soon`]: Poller::write_soon
pub trait Poller: Send + Sync {
    /// Starts watching `client`'s socket ([`Client::fd`]); called from any thread.
    fn watch(&self, client: Arc<Client>);
    /// The client numbered `client_id` ([`Client::id`]) has output that the
    /// polling thread must write; called from any thread.
    fn write_soon(&self, client_id: u64);
}

#[derive(Clone)]
pub struct ConnectOptions {
    pub endpoint: Endpoint,
    /// Receive the tasks of the function whose worker this is.
    pub serve: bool,
    pub connect_timeout: Duration,
    /// Who reads and writes the connection once it is open; a tokio task when `None`.
    pub poller: Option<Arc<dyn Poller>>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("endpoint", &self.endpoint)
            .field("serve", &self.serve)
            .field("connect_timeout", &self.connect_timeout)
            .field("polled", &self.poller.is_some())
            .finish()
    }
}

impl ConnectOptions {
    pub fn new(socket_path: impl Into<PathBuf>, token: impl Into<String>) -> ConnectOptions {
        let endpoint = Endpoint::Socket { path: socket_path.into(), token: token.into() };
        ConnectOptions { endpoint, serve: false, connect_timeout: DEFAULT_CONNECT_TIMEOUT, poller: None }
    }

    /// A worker's connection, handed over by the runtime: it serves tasks.
    pub fn worker(endpoint: Endpoint) -> ConnectOptions {
        ConnectOptions { endpoint, serve: true, connect_timeout: DEFAULT_CONNECT_TIMEOUT, poller: None }
    }
}

/// Receives the replies to requests sent with [`Client::submit`], each with
/// the tag it was sent with, as many at a time as arrived together, so that
/// a binding can hand them over in one crossing (one wake-up of the
/// JavaScript thread for a whole batch).
pub type CompletionSink = Arc<dyn Fn(Vec<(u64, Result<Reply>)>) + Send + Sync>;

/// Receives a serving connection's tasks in batches; an empty batch means
/// the connection has closed.
pub type TaskSink = Arc<dyn Fn(Vec<Task>) + Send + Sync>;

/// Where a connection hands over what it reads.
#[derive(Clone, Default)]
pub struct Sinks {
    /// Replies to submitted requests; without it they are dropped.
    pub completions: Option<CompletionSink>,
    /// Tasks, for a serving connection; without it they are dropped.
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

/// Who waits for a reply: an awaiting [`Client::call`], or a tag whose reply
/// goes to the connection's [`CompletionSink`] in a batch.
enum Waiter {
    Call(oneshot::Sender<Result<Reply>>),
    Tagged(u64),
}

pub struct Client {
    id: u64,
    sender: FrameSender,
    pending: Arc<PendingTable<Waiter>>,
    max_payload: usize,
    messages: tokio::sync::Mutex<mpsc::Receiver<WaitingMessage>>,
    dropped_messages: Arc<AtomicU64>,
    /// The reading side, for a polled connection; only its poller's thread takes it.
    polled: Option<std::sync::Mutex<(PolledReader, replies::Router)>>,
}

/// Numbers clients, so that a poller can tell them apart.
static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

/// A message waiting for [`Client::next_messages`], holding its share of
/// [`MAX_WAITING_MESSAGE_BYTES`].
pub(crate) struct WaitingMessage {
    message: Message,
    _bytes: OwnedSemaphorePermit,
}

impl Client {
    /// Connects and authenticates; replies to submitted requests and tasks go
    /// to `sinks`. Fails with `ERR_RUNTIME_UNAVAILABLE` when nothing answers
    /// within `connect_timeout`, `ERR_UNAUTHORIZED` when the token is refused.
    pub async fn connect(options: &ConnectOptions, sinks: Sinks) -> Result<Client> {
        let deadline = tokio::time::Instant::now() + options.connect_timeout;
        let handshake = Client::handshake(options, sinks, deadline);
        match tokio::time::timeout(options.connect_timeout, handshake).await {
            Ok(result) => result,
            Err(_) => Err(Error::runtime_unavailable(format!(
                "{} did not answer within {} ms",
                options.endpoint.describe(),
                options.connect_timeout.as_millis()
            ))),
        }
    }

    async fn handshake(options: &ConnectOptions, sinks: Sinks, deadline: tokio::time::Instant) -> Result<Client> {
        let (mut stream, token) = match &options.endpoint {
            Endpoint::Socket { path, token } => {
                check_field("the token", token)?;
                let stream = connect_once_listening(path, deadline).await.map_err(|error| {
                    Error::runtime_unavailable(format!("cannot connect to {}: {error}", options.endpoint.describe()))
                })?;
                (stream, token.clone())
            }
            Endpoint::Inherited(slot) => {
                let stream = slot.lock().unwrap().take().ok_or_else(connection_lost)?;
                let stream = UnixStream::from_std(stream)
                    .map_err(|error| Error::runtime_unavailable(format!("the inherited connection cannot be used: {error}")))?;
                (stream, String::new())
            }
        };
        let hello = Frame::Hello { version: PROTOCOL_VERSION, serve: options.serve, token };
        // A tokio-polled connection is split first, its reader task reading
        // from the first frame on; a polled one reads the welcome here, and
        // keeps what the runtime sent right after it (a worker's first tasks).
        let (max_payload, connection) = match &options.poller {
            None => {
                let (mut reader, sender) =
                    transport::split(stream, FrameCodec::for_max_payload(HANDSHAKE_MAX_PAYLOAD), OutputBound::unbounded());
                sender.send(hello);
                let max_payload = welcome(reader.read_frame().await)?;
                reader.set_max_payload(max_payload);
                (max_payload, Opened::ByTask(reader, sender))
            }
            Some(poller) => {
                let mut bytes = bytes::BytesMut::new();
                FrameCodec::unlimited().encode(&hello, &mut bytes).map_err(|error| handshake_failed(&error))?;
                stream.write_all(&bytes).await.map_err(|error| handshake_failed(&error))?;
                let mut framed = FramedRead::new(&mut stream, FrameCodec::for_max_payload(HANDSHAKE_MAX_PAYLOAD));
                let max_payload = welcome(framed.next().await.transpose())?;
                let already_read = std::mem::take(framed.read_buffer_mut());
                drop(framed);
                (max_payload, Opened::Polled(poller.clone(), stream, already_read))
            }
        };
        let id = NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed);
        let pending = Arc::new(PendingTable::new());
        let (message_queue, messages) = mpsc::channel(MAX_WAITING_MESSAGES);
        let message_bytes = Arc::new(Semaphore::new(MAX_WAITING_MESSAGE_BYTES));
        let dropped_messages = Arc::new(AtomicU64::new(0));
        let waiting = replies::MessageQueue { queue: message_queue, bytes: message_bytes, dropped: dropped_messages.clone() };
        let router = replies::Router { pending: pending.clone(), messages: Some(waiting), arrived: Arrived::default() };
        let (sender, polled) = match connection {
            Opened::Polled(poller, stream, already_read) => {
                let stream = stream.into_std().map_err(|error| handshake_failed(&error))?;
                let ask_to_write = Arc::new(move || poller.write_soon(id));
                let codec = FrameCodec::for_max_payload(max_payload);
                let (reader, sender) = transport::split_polled(stream, already_read, codec, ask_to_write);
                (sender, Some(std::sync::Mutex::new((reader, router))))
            }
            Opened::ByTask(reader, sender) => {
                tokio::spawn(replies::route(reader, router, sinks));
                (sender, None)
            }
        };
        Ok(Client { id, sender, pending, max_payload, messages: tokio::sync::Mutex::new(messages), dropped_messages, polled })
    }

    /// This client's number, unique in the process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Ends the connection: what is queued is dropped, and the requests
    /// still waiting fail once the reading side sees the end.
    pub fn close(&self) {
        self.sender.close();
    }

    /// For a polled client whose poller stops (its thread ends, or it could
    /// not watch it): ends the connection here and now, failing every
    /// request still waiting; their replies are dropped with the poller.
    pub fn abandon(&self) {
        self.sender.close();
        if let Some(polled) = &self.polled {
            polled.lock().unwrap().1.end();
        }
    }

    /// For a polled client: the descriptor its poller watches.
    pub fn fd(&self) -> Option<std::os::fd::RawFd> {
        self.polled.as_ref().map(|polled| polled.lock().unwrap().0.fd())
    }

    /// For a polled client, on its poller's thread, when the socket is
    /// readable: reads what is there and returns what arrived for the
    /// binding. Once `ended` is set, the poller stops watching.
    pub fn read_ready(&self) -> Arrived {
        let Some(polled) = &self.polled else {
            return Arrived::default();
        };
        let mut polled = polled.lock().unwrap();
        let (reader, router) = &mut *polled;
        let mut trusted = true;
        let turn = reader.read_ready(|frame| trusted = trusted && router.route(frame));
        if !trusted || !matches!(turn, ReadTurn::Open) {
            self.sender.close();
            router.end();
        }
        router.take()
    }

    /// For a polled client, on its poller's thread: writes what the socket
    /// takes now; true while output remains (watch for writability).
    pub fn write_ready(&self) -> bool {
        self.sender.write_ready()
    }

    /// The largest payload the runtime accepts, learned in the handshake.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_closed() || self.pending.is_closed()
    }

    /// Sends a request without waiting: its reply goes to the completion
    /// sink with `tag`. A request that breaks a limit fails here, unsent.
    pub fn submit(&self, request: Request, tag: u64, dispatch: Dispatch) -> Result<()> {
        check_request(&request, self.max_payload)?;
        self.send_request(Waiter::Tagged(tag), request, dispatch)
    }

    /// Sends a request and waits for its reply.
    pub async fn call(&self, request: Request) -> Result<Reply> {
        check_request(&request, self.max_payload)?;
        let (reply_to, reply) = oneshot::channel();
        self.send_request(Waiter::Call(reply_to), request, Dispatch::Writer)?;
        reply.await.unwrap_or_else(|_| Err(connection_lost()))
    }

    fn send_request(&self, waiter: Waiter, request: Request, dispatch: Dispatch) -> Result<()> {
        let id = self.pending.register(waiter).ok_or_else(connection_lost)?;
        // A waiter has exactly one outcome: if the connection's end took it
        // first, its failure is on its way already (failing it here as well
        // would give the tag a second outcome, which may reach a later call
        // given the same tag).
        if !self.send_frame(request.into_frame(id), dispatch) && self.pending.take(id).is_some() {
            return Err(connection_lost());
        }
        Ok(())
    }

    /// Writes the frames queued with [`Dispatch::Queue`].
    pub fn flush(&self) {
        self.sender.flush();
    }

    /// Waits for at least one message of this connection's subscriptions and
    /// returns every message that is ready, or `None` once the connection is
    /// closed.
    pub async fn next_messages(&self) -> Option<Vec<Message>> {
        let mut queue = self.messages.lock().await;
        let first = queue.recv().await?;
        let mut batch = vec![first.message];
        while let Ok(waiting) = queue.try_recv() {
            batch.push(waiting.message);
        }
        Some(batch)
    }

    /// Messages of this connection's subscriptions dropped because
    /// [`MAX_WAITING_MESSAGES`] or [`MAX_WAITING_MESSAGE_BYTES`] were waiting.
    pub fn dropped_messages(&self) -> u64 {
        self.dropped_messages.load(Ordering::Relaxed)
    }

    /// Reports a finished task (`result.status` 0 stands for 200). A result
    /// over the payload limit, or with a reply context too long for its
    /// field, is replaced by an `Unhandled` error so that the caller learns why.
    pub fn complete(&self, task_id: u64, result: SyncResult, dispatch: Dispatch) -> Result<()> {
        let SyncResult { status, function_error, reply_context, payload } = if result.payload.len() > self.max_payload {
            let error = payload_too_large(result.payload.len(), self.max_payload);
            SyncResult::unhandled("PayloadTooLarge", &error.message)
        } else if result.reply_context.len() > MAX_FIELD_LEN {
            let message = format!("the reply's context is {} bytes; at most {MAX_FIELD_LEN} fit", result.reply_context.len());
            SyncResult::unhandled("PayloadTooLarge", &message)
        } else {
            result
        };
        let frame = Frame::TaskDone { id: task_id, status, function_error, reply_context, payload };
        if self.pending.is_closed() || !self.send_frame(frame, dispatch) {
            return Err(connection_lost());
        }
        Ok(())
    }

    /// False when the connection is closed.
    fn send_frame(&self, frame: Frame, dispatch: Dispatch) -> bool {
        match dispatch {
            Dispatch::Writer => self.sender.send(frame),
            Dispatch::Queue => self.sender.queue(frame),
        }
    }
}

/// A connection past the handshake, before its reading starts.
enum Opened {
    /// Read by a tokio task.
    ByTask(FrameReader, FrameSender),
    /// Read by the poller, starting with bytes that came after the welcome.
    Polled(Arc<dyn Poller>, UnixStream, bytes::BytesMut),
}

/// The limit the runtime's welcome tells, or why there was none.
fn welcome(frame: std::result::Result<Option<Frame>, crate::proto::frame::FrameError>) -> Result<usize> {
    match frame {
        Ok(Some(Frame::Welcome { version: PROTOCOL_VERSION, max_payload })) => Ok(max_payload as usize),
        Ok(Some(Frame::Welcome { version, .. })) => Err(Error::new(
            ErrorCode::Protocol,
            format!("the runtime speaks protocol version {version}, this client {PROTOCOL_VERSION}"),
        )),
        Ok(Some(Frame::Failure { code, message, .. })) => Err(Error::new(code, message)),
        Ok(Some(_)) => Err(Error::new(ErrorCode::Protocol, "unexpected frame during the handshake")),
        Ok(None) => Err(Error::runtime_unavailable("the runtime closed the connection during the handshake")),
        Err(error) => Err(handshake_failed(&error)),
    }
}

fn handshake_failed(error: &dyn std::fmt::Display) -> Error {
    Error::runtime_unavailable(format!("handshake with the runtime failed: {error}"))
}

/// Pauses between connect attempts while the runtime is not listening:
/// doubling from the first to the last.
const FIRST_CONNECT_PAUSE: Duration = Duration::from_millis(10);
const LAST_CONNECT_PAUSE: Duration = Duration::from_millis(200);

/// Connects to the socket at `path`, trying again while nothing listens
/// there (a runtime restarting) until `deadline`.
async fn connect_once_listening(path: &std::path::Path, deadline: tokio::time::Instant) -> std::io::Result<UnixStream> {
    let mut pause = FIRST_CONNECT_PAUSE;
    loop {
        match UnixStream::connect(path).await {
            Err(error)
                if matches!(error.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused)
                    && tokio::time::Instant::now() + pause < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LAST_CONNECT_PAUSE);
            }
            connected => return connected,
        }
    }
}

fn connection_lost() -> Error {
    Error::runtime_unavailable("the connection to the edgefc runtime was lost")
}
