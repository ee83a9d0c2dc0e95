//! The runtime's side of the transport: accepts connections, authenticates
//! them, and turns `Invoke` frames into runs of hosted functions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::client::SyncResult;
use crate::config::FunctionTable;
use crate::connection::{self, FrameReader, FrameSender};
use crate::error::{Error, ErrorCode};
use crate::frame::{Frame, FrameCodec, FunctionError, Payload, PROTOCOL_VERSION};
use crate::host::{FunctionHost, WorkerLink, STATUS_OK};

/// A client that connects but does not say Hello in time is dropped.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Who a token belongs to.
#[derive(Clone)]
pub(crate) enum Caller {
    /// The CLI and local scripts, with the admin token.
    Admin,
    /// A hosted function, with its own token.
    Function(Arc<FunctionHost>),
}

pub(crate) struct Shared {
    pub functions: FunctionTable<Arc<FunctionHost>>,
    pub tokens: HashMap<String, Caller>,
    pub max_payload: usize,
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
    let (mut reader, sender) = connection::split(stream, FrameCodec::for_max_payload(shared.max_payload));
    let Some(worker) = greet(&mut reader, &sender, &shared).await else {
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
                tokio::spawn(invoke(shared.clone(), sender.clone(), request));
            }
            Ok(Some(Frame::TaskDone { id, function_error, payload })) => match &worker {
                Some(link) => link.complete(id, SyncResult { status: STATUS_OK, function_error, payload }),
                None => break,
            },
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
}

/// Reads and checks the Hello; answers Welcome or a Failure. `None` ends the
/// connection; otherwise the worker link when the connection serves tasks.
async fn greet(reader: &mut FrameReader, sender: &FrameSender, shared: &Shared) -> Option<Option<Arc<WorkerLink>>> {
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
    let Some(caller) = shared.tokens.get(&token).cloned() else {
        refuse(sender, ErrorCode::Unauthorized, "the token was not accepted by the edgefc runtime");
        return None;
    };
    let start = match (&caller, serve) {
        (_, false) => None,
        (Caller::Function(host), true) => match host.claim_start() {
            Some(start) => Some((host, start)),
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
    Some(worker)
}

fn refuse(sender: &FrameSender, code: ErrorCode, message: &str) {
    sender.send(Frame::Failure { id: 0, code, message: message.to_string() });
}

struct Invocation {
    id: u64,
    asynchronous: bool,
    target: String,
    invoker_context: String,
    payload: Payload,
}

async fn invoke(shared: Arc<Shared>, sender: FrameSender, request: Invocation) {
    let id = request.id;
    let reply = match run_invocation(&shared, &sender, request).await {
        Ok(Some(result)) => Frame::Result {
            id,
            status: result.status,
            function_error: result.function_error,
            payload: result.payload,
        },
        Ok(None) => return,
        Err(error) => Frame::Failure { id, code: error.code, message: error.message },
    };
    sender.send(reply);
}

/// `Ok(None)` for an async invocation, which was answered when accepted.
async fn run_invocation(shared: &Shared, sender: &FrameSender, request: Invocation) -> Result<Option<SyncResult>, Error> {
    if request.payload.len() > shared.max_payload {
        return Err(crate::client::payload_too_large(request.payload.len(), shared.max_payload));
    }
    let host = shared.functions.get(&request.target).ok_or_else(|| {
        Error::new(ErrorCode::FunctionNotFound, format!("function {} does not exist", request.target))
    })?;
    let admission = host.admit()?;
    let request_id = uuid::Uuid::new_v4().to_string();
    if !request.asynchronous {
        let result = host.run(admission, request_id, request.invoker_context, request.payload).await?;
        return Ok(Some(result));
    }
    sender.send(Frame::Accepted { id: request.id, invocation_id: request_id.clone() });
    let outcome = host.run(admission, request_id.clone(), request.invoker_context, request.payload).await;
    match outcome {
        Ok(result) if result.function_error != FunctionError::None => {
            let detail = String::from_utf8_lossy(result.payload.bytes());
            eprintln!("[edgefc] async invocation {request_id} of {} failed: {detail}", host.spec.function_id);
        }
        Ok(_) => {}
        Err(error) => eprintln!("[edgefc] async invocation {request_id} of {} was dropped: {error}", host.spec.function_id),
    }
    Ok(None)
}
