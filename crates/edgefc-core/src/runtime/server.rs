//! Serving connections: one accepted on the socket says Hello with the admin
//! token; a worker's was made by the runtime when it launched the worker,
//! which already tells whose it is. Then every frame goes to the module that
//! answers it. What a connection may cost is `connections`' business.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::connections::{GreetingPlace, OpenPlace, PeerKind};
use super::log::Throttle;
use super::supervisor::{WorkerConnection, WorkerLink};
use super::{bus, invoke, services, Caller, Shared};
use crate::error::{Error, ErrorCode};
use crate::proto::frame::{Frame, FrameCodec, Payload, MAX_FIELD_LEN, PROTOCOL_VERSION};
use crate::proto::message::{InvokeRequest, SyncResult, STATUS_OK};
use crate::transport::{self, FrameReader, FrameSender, Offer};

/// Pauses of the accept loop after a failed accept (out of file descriptors,
/// typically): doubling from the first to the last while accepting fails.
const FIRST_ACCEPT_PAUSE: Duration = Duration::from_millis(10);
const LAST_ACCEPT_PAUSE: Duration = Duration::from_secs(1);

static SLOW_READER: Throttle = Throttle::new(Duration::from_secs(10));

/// What a listener does after a failed accept (out of descriptors, say):
/// pauses, doubling from `FIRST_ACCEPT_PAUSE` to `LAST_ACCEPT_PAUSE` and
/// back to the first after a success, and warns at most every 10 s.
pub(super) struct AcceptPause {
    listener: &'static str,
    next: Duration,
    warnings: Throttle,
}

impl AcceptPause {
    pub(super) const fn new(listener: &'static str) -> AcceptPause {
        AcceptPause { listener, next: FIRST_ACCEPT_PAUSE, warnings: Throttle::new(Duration::from_secs(10)) }
    }

    pub(super) fn accepted(&mut self) {
        self.next = FIRST_ACCEPT_PAUSE;
    }

    /// Warns and waits; false when `shutdown` came first.
    pub(super) async fn failed(&mut self, error: &std::io::Error, shutdown: &CancellationToken) -> bool {
        if let Some(held_back) = self.warnings.admit() {
            crate::warn!("server", "accepting a connection on {} failed: {error}{held_back}", self.listener);
        }
        let waited = tokio::select! {
            _ = tokio::time::sleep(self.next) => true,
            _ = shutdown.cancelled() => false,
        };
        self.next = (self.next * 2).min(LAST_ACCEPT_PAUSE);
        waited
    }
}

pub(super) async fn serve(
    listener: UnixListener,
    mut new_workers: mpsc::UnboundedReceiver<WorkerConnection>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut pause = AcceptPause::new("the runtime's socket");
    loop {
        let stream = tokio::select! {
            Some(worker) = new_workers.recv() => {
                tokio::spawn(handle_worker(worker, shared.clone(), shutdown.clone()));
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    shared.connections.counters.accept_errors.fetch_add(1, Ordering::Relaxed);
                    if !pause.failed(&error, &shutdown).await {
                        return;
                    }
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        pause.accepted();
        let place = shared.connections.greet();
        tokio::spawn(handle_connection(stream, place, shared.clone(), shutdown.clone()));
        // Let the connections accepted so far read their Hello before more
        // are accepted: in a flood of connections, a client that says Hello
        // at once then keeps its place instead of being the oldest.
        tokio::task::yield_now().await;
    }
}

/// One authenticated connection: who is on it, and where its replies go.
struct Peer {
    connection_id: u64,
    caller: Caller,
    sender: FrameSender,
    /// Set when the connection is a function's worker.
    worker: Option<Arc<WorkerLink>>,
    /// One permit per request being answered (`connections.maxInFlight`).
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    _place: OpenPlace,
}

async fn handle_connection(stream: UnixStream, place: GreetingPlace, shared: Arc<Shared>, shutdown: CancellationToken) {
    let limits = &shared.connections.limits;
    let (mut reader, sender) =
        transport::split(stream, FrameCodec::for_max_frame(limits.max_hello_bytes), shared.connections.output_bound());
    let greeted = tokio::select! {
        greeted = tokio::time::timeout(limits.hello_timeout, greet(&mut reader, &sender, &shared)) => greeted,
        _ = place.evicted.cancelled() => return,
        _ = shutdown.cancelled() => return,
    };
    let connection_id = place.id;
    drop(place);
    match greeted {
        Ok(Some((caller, open_place))) => {
            serve_peer(reader, sender, connection_id, caller, None, open_place, shared, shutdown).await
        }
        Ok(None) => {}
        Err(_) => {
            shared.connections.counters.hello_timeouts.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A new worker's connection: it needs no token, and takes no greeting
/// place (a flood of strangers cannot evict it).
async fn handle_worker(worker: WorkerConnection, shared: Arc<Shared>, shutdown: CancellationToken) {
    let stream = match worker.stream.set_nonblocking(true).and_then(|()| UnixStream::from_std(worker.stream)) {
        Ok(stream) => stream,
        Err(error) => {
            crate::warn!("server", "a worker's connection cannot be served: {error}");
            return;
        }
    };
    let limits = &shared.connections.limits;
    let (mut reader, sender) =
        transport::split(stream, FrameCodec::for_max_frame(limits.max_hello_bytes), shared.connections.output_bound());
    let caller = Caller::Function(worker.function);
    let greeted = tokio::select! {
        greeted = tokio::time::timeout(limits.hello_timeout, greet_worker(&mut reader, &sender, &shared)) => greeted,
        _ = shutdown.cancelled() => return,
    };
    let Ok(Some(open_place)) = greeted else {
        return;
    };
    // Welcome goes first: once attached, the worker's tasks follow on the same queue.
    welcome(&shared, &sender);
    let Some(link) = worker.attach.attach(sender.clone()) else {
        return;
    };
    serve_peer(reader, sender, shared.connections.next_id(), caller, Some(link), open_place, shared, shutdown).await;
}

/// Answers an authenticated connection's frames until it ends.
#[allow(clippy::too_many_arguments)]
async fn serve_peer(
    mut reader: FrameReader,
    sender: FrameSender,
    connection_id: u64,
    caller: Caller,
    worker: Option<Arc<WorkerLink>>,
    open_place: OpenPlace,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let limits = &shared.connections.limits;
    reader.set_max_payload(shared.max_payload);
    let max_in_flight = match (&worker, caller) {
        // A worker's tasks are bounded where they are admitted; each of its
        // `maxConcurrency` handlers may be calling another function.
        (Some(_), Caller::Function(index)) => {
            sender.lift_bound();
            limits.max_in_flight.max(shared.hosts[index].spec.max_concurrency)
        }
        _ => limits.max_in_flight,
    };
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    let peer = Peer { connection_id, caller, sender, worker, in_flight, max_in_flight, _place: open_place };
    loop {
        let frame = tokio::select! {
            frame = next_frame(&shared, &peer, &mut reader) => frame,
            _ = shutdown.cancelled() => break,
        };
        let keep_going = match frame {
            Ok(Some(frame)) => dispatch(&shared, &peer, frame),
            Ok(None) => false,
            Err(error) => {
                refuse(&peer.sender, ErrorCode::Protocol, &error.to_string());
                false
            }
        };
        if !keep_going {
            break;
        }
    }
    if let Some(link) = &peer.worker {
        link.close();
    }
    shared.bus.unsubscribe_connection(peer.connection_id);
    linger(peer).await;
}

/// How long a connection whose peer has stopped sending may take to get the
/// replies to what it sent, before it is closed.
const LINGER: Duration = Duration::from_secs(5);

/// Answers what is still running for a peer that has stopped sending (it
/// may still be reading), still holding the connection's place, then closes
/// the connection so that nothing of it outlives `LINGER`.
async fn linger(peer: Peer) {
    let answered = async {
        let _all = peer.in_flight.acquire_many(peer.max_in_flight as u32).await;
        peer.sender.all_written().await;
    };
    let _ = tokio::time::timeout(LINGER, answered).await;
    peer.sender.close();
}

/// The next frame, read only once the peer has read enough of its replies
/// (backpressure: a peer that stops reading stops being read).
async fn next_frame(
    shared: &Shared,
    peer: &Peer,
    reader: &mut FrameReader,
) -> Result<Option<Frame>, crate::proto::frame::FrameError> {
    if peer.sender.is_behind() {
        shared.connections.counters.read_pauses.fetch_add(1, Ordering::Relaxed);
        peer.sender.below_soft_bound().await;
    }
    reader.read_frame().await
}

/// Sends a reply; a peer so far behind that it passed `closeOutputBytes` is
/// disconnected instead (its waiting calls then fail on its side).
pub(super) fn reply(shared: &Shared, sender: &FrameSender, frame: Frame) {
    if sender.send_bounded(frame) == Offer::Full {
        shared.connections.counters.closed_slow_reader.fetch_add(1, Ordering::Relaxed);
        if let Some(held_back) = SLOW_READER.admit() {
            crate::warn!(
                "server",
                "a connection that did not read its replies was closed ({} bytes unread; connections.closeOutputBytes){held_back}",
                shared.connections.limits.close_output_bytes
            );
        }
    }
}

/// A place among the connection's requests in flight, or the refusal to send.
fn take_in_flight(shared: &Shared, peer: &Peer, id: u64) -> Result<OwnedSemaphorePermit, Frame> {
    peer.in_flight.clone().try_acquire_owned().map_err(|_| {
        shared.connections.counters.refused_in_flight.fetch_add(1, Ordering::Relaxed);
        failure(
            id,
            Error::new(
                ErrorCode::QueueFull,
                format!("this connection already has {} invocations in flight (connections.maxInFlight)", peer.max_in_flight),
            ),
        )
    })
}

/// Sends the answer to request `id` once `answer` (given the runtime's
/// shared state) resolves, holding a place among the connection's requests
/// in flight meanwhile; `Some(refusal)` when none is free.
fn answer_later<F, A>(shared: &Arc<Shared>, peer: &Peer, id: u64, answer: A) -> Option<Frame>
where
    A: FnOnce(Arc<Shared>) -> F,
    F: std::future::Future<Output = Frame> + Send + 'static,
{
    let permit = match take_in_flight(shared, peer, id) {
        Ok(permit) => permit,
        Err(refusal) => return Some(refusal),
    };
    let (answering, sender) = (answer(shared.clone()), peer.sender.clone());
    let shared = shared.clone();
    tokio::spawn(async move {
        let frame = answering.await;
        reply(&shared, &sender, frame);
        drop(permit);
    });
    None
}

/// Answers one frame; false when the connection must end.
fn dispatch(shared: &Arc<Shared>, peer: &Peer, frame: Frame) -> bool {
    if shared.settings.draining.is_cancelled() {
        if let Frame::Invoke { id, .. } | Frame::Publish { id, .. } = frame {
            let error = Error::new(ErrorCode::ShuttingDown, "the edgefc runtime is shutting down and takes no new calls");
            reply(shared, &peer.sender, failure(id, error));
            return true;
        }
    }
    let answer = match frame {
        Frame::Invoke { id, asynchronous, default_timeout_secs, caller_timeout_ms, target, invoker_context, payload } => {
            match take_in_flight(shared, peer, id) {
                Ok(permit) => {
                    let request =
                        InvokeRequest { target, asynchronous, default_timeout_secs, caller_timeout_ms, invoker_context, payload };
                    // Boxed: the task then holds a pointer, not the whole
                    // invocation's state (about 2 KB), which it would copy
                    // each time it moves it (spawning, finishing).
                    let handled = invoke::handle(shared.clone(), peer.sender.clone(), peer.caller, id, request, permit);
                    tokio::spawn(Box::pin(handled));
                    return true;
                }
                Err(refusal) => refusal,
            }
        }
        Frame::TaskDone { id, status, function_error, reply_context, payload } => {
            let Some(link) = &peer.worker else {
                refuse(&peer.sender, ErrorCode::Protocol, "only a worker reports tasks");
                return false;
            };
            let status = if status == 0 { STATUS_OK } else { status };
            link.complete(id, SyncResult { status, function_error, reply_context, payload });
            return true;
        }
        Frame::Publish { id, topic, payload } => match bus::publish_at_most_once(shared, peer.caller, topic, payload) {
            Ok((message_id, None)) => Frame::Accepted { id, accepted_id: message_id },
            Ok((message_id, Some(durable))) => {
                let answer = answer_later(shared, peer, id, move |shared| async move {
                    match durable.deliver(&shared).await {
                        Ok(()) => Frame::Accepted { id, accepted_id: message_id },
                        Err(error) => failure(id, error),
                    }
                });
                match answer {
                    Some(refusal) => refusal,
                    None => return true,
                }
            }
            Err(error) => failure(id, error),
        },
        Frame::Request { id, operation } => {
            let caller = peer.caller;
            let answer = answer_later(shared, peer, id, move |shared| async move {
                match services::answer(&shared, caller, &operation).await {
                    Ok(json) => SyncResult::ok(Payload::text(json)).into_frame(id),
                    Err(error) => failure(id, error),
                }
            });
            match answer {
                Some(refusal) => refusal,
                None => return true,
            }
        }
        Frame::Subscribe { id, topic_filter } => {
            match shared.bus.subscribe(peer.caller, peer.connection_id, &peer.sender, id, &topic_filter) {
                Ok(()) => Frame::Accepted { id, accepted_id: String::new() },
                Err(error) => failure(id, error),
            }
        }
        _ => {
            refuse(&peer.sender, ErrorCode::Protocol, "unexpected frame");
            return false;
        }
    };
    reply(shared, &peer.sender, answer);
    true
}

/// Reads the Hello of a connection accepted on the socket and checks its
/// token (only the admin token opens one); answers Welcome or a Failure.
/// `None` ends the connection.
async fn greet(reader: &mut FrameReader, sender: &FrameSender, shared: &Arc<Shared>) -> Option<(Caller, OpenPlace)> {
    let (serve, token) = read_hello(reader, sender, shared).await?;
    if token != *shared.admin_token.read().unwrap() {
        shared.connections.counters.hello_refused.fetch_add(1, Ordering::Relaxed);
        refuse(sender, ErrorCode::Unauthorized, "the token was not accepted by the edgefc runtime");
        return None;
    }
    if serve {
        refuse(sender, ErrorCode::Unauthorized, "only a hosted function's worker can serve tasks");
        return None;
    }
    let open_place = open(sender, shared, PeerKind::Client)?;
    welcome(shared, sender);
    Some((Caller::Admin, open_place))
}

/// Reads the Hello on a worker's connection, which must ask to serve.
async fn greet_worker(reader: &mut FrameReader, sender: &FrameSender, shared: &Arc<Shared>) -> Option<OpenPlace> {
    let (serve, _) = read_hello(reader, sender, shared).await?;
    if !serve {
        refuse(sender, ErrorCode::Protocol, "a worker's connection serves its function's tasks");
        return None;
    }
    open(sender, shared, PeerKind::Worker)
}

/// The Hello's `serve` flag and token, once its version is checked.
async fn read_hello(reader: &mut FrameReader, sender: &FrameSender, shared: &Arc<Shared>) -> Option<(bool, String)> {
    let (version, serve, token) = match reader.read_frame().await {
        Ok(Some(Frame::Hello { version, serve, token })) => (version, serve, token),
        Ok(None) => return None,
        Ok(Some(_)) => {
            shared.connections.counters.hello_refused.fetch_add(1, Ordering::Relaxed);
            refuse(sender, ErrorCode::Protocol, "expected a Hello frame");
            return None;
        }
        Err(error) => {
            shared.connections.counters.hello_refused.fetch_add(1, Ordering::Relaxed);
            refuse(sender, ErrorCode::Protocol, &format!("expected a Hello frame: {error}"));
            return None;
        }
    };
    if version != PROTOCOL_VERSION {
        refuse(
            sender,
            ErrorCode::Protocol,
            &format!("protocol version {version} is not supported; the runtime speaks {PROTOCOL_VERSION}"),
        );
        return None;
    }
    Some((serve, token))
}

/// A place among the open connections (`connections.max`), or the refusal.
fn open(sender: &FrameSender, shared: &Shared, kind: PeerKind) -> Option<OpenPlace> {
    let place = shared.connections.open(kind);
    if place.is_none() {
        refuse(
            sender,
            ErrorCode::TooManyConnections,
            &format!("the runtime already serves {} connections (connections.max)", shared.connections.limits.max),
        );
    }
    place
}

fn welcome(shared: &Shared, sender: &FrameSender) {
    sender.send(Frame::Welcome { version: PROTOCOL_VERSION, max_payload: shared.max_payload as u64 });
}

fn refuse(sender: &FrameSender, code: ErrorCode, message: &str) {
    sender.send(failure(0, Error::new(code, message)));
}

/// A Failure frame; a message longer than a field can carry (it may quote a
/// caller's long function name) is cut, so the reply is never lost.
pub(super) fn failure(id: u64, error: Error) -> Frame {
    let mut message = error.message;
    if message.len() > MAX_FIELD_LEN {
        message.truncate(message.floor_char_boundary(MAX_FIELD_LEN - 3));
        message.push_str("...");
    }
    Frame::Failure { id, code: error.code, message }
}
