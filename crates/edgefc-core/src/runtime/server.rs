//! Accepting connections: each says Hello with a token, which tells who is
//! calling; a worker's connection must also come from the process the
//! runtime launched. Then every frame goes to the module that answers it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use super::supervisor::WorkerLink;
use super::{bus, invoke, log, services, Caller, Shared};
use crate::error::{Error, ErrorCode};
use crate::proto::frame::{Frame, FrameCodec, Payload, MAX_FIELD_LEN, PROTOCOL_VERSION};
use crate::proto::message::{InvokeRequest, SyncResult};
use crate::transport::{self, FrameReader, FrameSender};

/// A client that connects but does not say Hello in time is dropped.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn serve(listener: UnixListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let next_connection_id = AtomicU64::new(1);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    log::warn(format_args!("accept failed: {error}"));
                    // Out of file descriptors, typically: give others a moment to close theirs.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let connection_id = next_connection_id.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(handle_connection(stream, connection_id, shared.clone(), shutdown.clone()));
    }
}

/// One authenticated connection: who is on it, and where its replies go.
struct Peer {
    connection_id: u64,
    caller: Caller,
    sender: FrameSender,
    /// Set when the connection is a function's worker.
    worker: Option<Arc<WorkerLink>>,
}

async fn handle_connection(stream: UnixStream, connection_id: u64, shared: Arc<Shared>, shutdown: CancellationToken) {
    let peer_pid = stream.peer_cred().ok().and_then(|credentials| credentials.pid()).and_then(|pid| u32::try_from(pid).ok());
    let (mut reader, sender) = transport::split(stream, FrameCodec::for_max_payload(shared.max_payload));
    let Some((caller, worker)) = greet(&mut reader, &sender, &shared, peer_pid).await else {
        return;
    };
    let peer = Peer { connection_id, caller, sender, worker };
    loop {
        let frame = tokio::select! {
            frame = reader.read_frame() => frame,
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
    shared.bus.unsubscribe_connection(connection_id);
}

/// Answers one frame; false when the connection must end.
fn dispatch(shared: &Arc<Shared>, peer: &Peer, frame: Frame) -> bool {
    let reply = match frame {
        Frame::Invoke { id, asynchronous, target, invoker_context, payload } => {
            let request = InvokeRequest { target, asynchronous, invoker_context, payload };
            tokio::spawn(invoke::handle(shared.clone(), peer.sender.clone(), peer.caller, id, request));
            return true;
        }
        Frame::TaskDone { id, function_error, payload } => {
            let Some(link) = &peer.worker else {
                refuse(&peer.sender, ErrorCode::Protocol, "only a worker reports tasks");
                return false;
            };
            link.complete(id, SyncResult { function_error, ..SyncResult::ok(payload) });
            return true;
        }
        Frame::Publish { id, topic, payload } => match bus::publish(shared, peer.caller, topic, payload) {
            Ok(message_id) => Frame::Accepted { id, accepted_id: message_id },
            Err(error) => failure(id, error),
        },
        Frame::Request { id, operation } => match services::answer(shared, peer.caller, &operation) {
            Ok(json) => SyncResult::ok(Payload::text(json)).into_frame(id),
            Err(error) => failure(id, error),
        },
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
    peer.sender.send(reply);
    true
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
        refuse(
            sender,
            ErrorCode::Protocol,
            &format!("protocol version {version} is not supported; the runtime speaks {PROTOCOL_VERSION}"),
        );
        return None;
    }
    let Some(caller) = shared.tokens.get(&token).copied() else {
        refuse(sender, ErrorCode::Unauthorized, "the token was not accepted by the edgefc runtime");
        return None;
    };
    let launch = match (caller, serve) {
        (_, false) => None,
        (Caller::Function(index), true) => match shared.hosts[index].claim_launch(peer_pid) {
            Some(launch) => Some(launch),
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
    let worker = match launch {
        Some(launch) => Some(launch.attach(sender.clone())?),
        None => None,
    };
    Some((caller, worker))
}

fn refuse(sender: &FrameSender, code: ErrorCode, message: &str) {
    sender.send(failure(0, Error::new(code, message)));
}

/// A Failure frame; a message longer than a field can carry (it may quote a
/// caller's long function name) is cut, so the reply is never lost.
pub(super) fn failure(id: u64, error: Error) -> Frame {
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
