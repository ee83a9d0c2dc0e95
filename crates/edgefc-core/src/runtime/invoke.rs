//! An `Invoke` frame, from the function table to the reply: a Sync
//! invocation is answered with its result, an Async one with `Accepted` as
//! soon as it is durable in the store (`asynchronous`).

use std::sync::Arc;

use base64::Engine;
use tokio::sync::OwnedSemaphorePermit;

use super::config::{FUNCTION_NAME_PREFIX, ROUTER_FUNCTION_ID};
use super::host::{Admission, FunctionHost, Run};
use super::{asynchronous, bus, log, server, Caller, Shared};
use crate::error::{Error, ErrorCode, Result};
use crate::proto::frame::{Frame, FunctionError, Payload};
use crate::proto::limits::check_payload;
use crate::proto::message::{InvokeRequest, SyncResult};
use crate::transport::FrameSender;

/// Runs one `Invoke` frame (request id `id`) and sends its reply; holds a
/// place among the connection's requests in flight until then.
pub(super) async fn handle(
    shared: Arc<Shared>,
    sender: FrameSender,
    caller: Caller,
    id: u64,
    request: InvokeRequest,
    in_flight: OwnedSemaphorePermit,
) {
    let reply = match run(&shared, &sender, caller, id, request, in_flight).await {
        Ok(Some(result)) => result.into_frame(id),
        Ok(None) => return,
        Err(error) => server::failure(id, error),
    };
    server::reply(&shared, &sender, reply);
}

/// `Ok(None)` for an Async invocation, which was answered when accepted
/// (and stopped counting as in flight then).
async fn run(
    shared: &Shared,
    sender: &FrameSender,
    caller: Caller,
    id: u64,
    request: InvokeRequest,
    in_flight: OwnedSemaphorePermit,
) -> Result<Option<SyncResult>> {
    check_payload(&request.payload, shared.max_payload)?;
    if request.target == ROUTER_FUNCTION_ID {
        return publish_through_router_function(shared, sender, caller, id, request).await;
    }
    let host = &shared.hosts[target_function(shared, caller, &request.target)?];
    if request.asynchronous {
        let invocation_id =
            asynchronous::accept(host, &shared.store, request.default_timeout_secs, request.invoker_context, request.payload)
                .await?;
        server::reply(shared, sender, Frame::Accepted { id, accepted_id: invocation_id });
        drop(in_flight);
        return Ok(None);
    }
    let admission = host.admit(&request.invoker_context, &request.payload)?;
    let run = Run {
        request_id: super::ids::new_id(),
        attempt: 1,
        timeout: host.spec.timeout_for(request.default_timeout_secs),
        invoker_context: request.invoker_context,
        payload: request.payload,
    };
    host.run(admission, run).await.map(Some)
}

/// The function an invocation names: by id or ARN, or, after
/// [`FUNCTION_NAME_PREFIX`], by its bare `functionName` (see
/// [`FunctionTable::by_function_name`]).
fn target_function(shared: &Shared, caller: Caller, target: &str) -> Result<usize> {
    if let Some(name) = target.strip_prefix(FUNCTION_NAME_PREFIX) {
        let own_service = match caller {
            Caller::Function(index) => Some(shared.hosts[index].spec.service_name.as_str()),
            Caller::Admin => None,
        };
        return shared.functions.by_function_name(name, own_service);
    }
    shared
        .functions
        .get(target)
        .ok_or_else(|| Error::new(ErrorCode::FunctionNotFound, format!("function {target} does not exist")))
}

/// Runs a routed message's invocation, which nobody waits for (at most
/// once), and logs how it failed, if it did.
pub(super) async fn run_detached(host: Arc<FunctionHost>, admission: Admission, invoker_context: String, payload: Payload) {
    let request_id = super::ids::new_id();
    let run = Run { request_id: request_id.clone(), attempt: 1, timeout: host.spec.timeout, invoker_context, payload };
    match host.run(admission, run).await {
        Ok(result) if result.function_error != FunctionError::None => {
            let detail = log::error_body(result.payload.bytes());
            log::warn(format_args!("routed message {request_id} to {} failed: {detail}", host.spec.function_id));
        }
        Ok(_) => {}
        Err(error) => log::warn(format_args!("routed message {request_id} to {} was dropped: {error}", host.spec.function_id)),
    }
}

/// Upstream's `publish` invokes `ROUTER_FUNCTION_ID` with the topic in the
/// invoker context; code that does so directly keeps working.
async fn publish_through_router_function(
    shared: &Shared,
    sender: &FrameSender,
    caller: Caller,
    id: u64,
    request: InvokeRequest,
) -> Result<Option<SyncResult>> {
    let topic = base64::engine::general_purpose::STANDARD
        .decode(&request.invoker_context)
        .ok()
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .and_then(|context| context.pointer("/custom/topic").and_then(|topic| topic.as_str()).map(str::to_string))
        .ok_or_else(|| Error::new(ErrorCode::InvalidParams, "a message for the router needs invokerContext.custom.topic"))?;
    let message_id = bus::publish(shared, caller, topic, request.payload).await?;
    if request.asynchronous {
        server::reply(shared, sender, Frame::Accepted { id, accepted_id: message_id });
        return Ok(None);
    }
    Ok(Some(SyncResult::ok(Payload::empty_text())))
}
