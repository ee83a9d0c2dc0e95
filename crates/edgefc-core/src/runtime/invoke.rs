//! An `Invoke` frame, from the function table to the reply: a Sync
//! invocation is answered with its result, an Async one with `Accepted` as
//! soon as it is durable in the store (`asynchronous`). A function of
//! another gateway is called through the MQTT bridge (`mqtt::remote`),
//! which brings other gateways' invocations here too ([`serve_remote`]).

use std::sync::Arc;

use base64::Engine;
use tokio::sync::OwnedSemaphorePermit;

use super::config::{function_arn, FUNCTION_NAME_PREFIX, GATEWAY_PREFIX, ROUTER_FUNCTION_ID};
use super::host::{Admission, FunctionHost, Run};
use super::mqtt::remote::{Answer, IncomingRequest, RemoteCall};
use super::mqtt::settings::RemoteFunction;
use super::observe::Kind;
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
    let asynchronous = request.asynchronous;
    let answer = match target_of(shared, caller, &request.target)? {
        Target::Local(index) => {
            let InvokeRequest { default_timeout_secs, invoker_context, payload, .. } = request;
            invoke_here(shared, &shared.hosts[index], asynchronous, default_timeout_secs, invoker_context, payload).await?
        }
        Target::Remote(RemoteFunction { gateway_id, service_name, function_name, broker }) => {
            let call = RemoteCall {
                gateway_id,
                service_name,
                function_name,
                broker,
                asynchronous,
                default_timeout_secs: request.default_timeout_secs,
                caller_timeout_ms: request.caller_timeout_ms,
                invoker_context: request.invoker_context,
                payload: request.payload,
            };
            shared.bridge.call(call).await?
        }
    };
    match answer {
        Answer::Result(result) => Ok(Some(result)),
        Answer::Accepted(accepted_id) => {
            server::reply(shared, sender, Frame::Accepted { id, accepted_id });
            drop(in_flight);
            Ok(None)
        }
    }
}

/// Runs a Sync invocation of a function of this runtime, or accepts an
/// Async one (durably), for a caller here or on another gateway.
async fn invoke_here(
    shared: &Shared,
    host: &Arc<FunctionHost>,
    asynchronous: bool,
    default_timeout_secs: u16,
    invoker_context: String,
    payload: Payload,
) -> Result<Answer> {
    if asynchronous {
        return asynchronous::accept(host, &shared.store, default_timeout_secs, invoker_context, payload)
            .await
            .map(Answer::Accepted);
    }
    let admission = host.admit(&invoker_context, &payload).inspect_err(|error| host.refused(Kind::Sync, error))?;
    let run = Run {
        kind: Kind::Sync,
        request_id: super::ids::new_id(),
        attempt: 1,
        timeout: host.spec.timeout_for(default_timeout_secs),
        invoker_context,
        payload,
    };
    host.run(admission, run).await.map(Answer::Result)
}

/// An invocation from another gateway, of a function this one exposes
/// (`mqtt::remote` checked that against `exposedFunctions`).
pub(super) async fn serve_remote(shared: &Shared, request: IncomingRequest) -> Result<Answer> {
    check_payload(&request.payload, shared.max_payload)?;
    let arn = function_arn(&request.service_name, &request.function_name);
    let index = shared.functions.get(&arn).ok_or_else(|| {
        Error::new(
            ErrorCode::FunctionNotFound,
            format!("function {}/{} does not exist", request.service_name, request.function_name),
        )
    })?;
    let IncomingRequest { asynchronous, default_timeout_secs, invoker_context, payload, .. } = request;
    invoke_here(shared, &shared.hosts[index], asynchronous, default_timeout_secs, invoker_context, payload).await
}

/// Where an invocation goes.
enum Target {
    /// A function of this runtime (its index).
    Local(usize),
    /// A function of another gateway.
    Remote(RemoteFunction),
}

/// The function an invocation names: by id or ARN, or, after
/// [`FUNCTION_NAME_PREFIX`], by its bare `functionName` (see
/// [`FunctionTable::by_function_name`]); else a function of another
/// gateway that `remoteFunctions` names so; or, after [`GATEWAY_PREFIX`],
/// a function by its ARN on the gateway named.
fn target_of(shared: &Shared, caller: Caller, target: &str) -> Result<Target> {
    if let Some(addressed) = target.strip_prefix(GATEWAY_PREFIX) {
        let (gateway_id, target) = addressed.split_once(':').ok_or_else(|| {
            Error::new(ErrorCode::InvalidParams, format!("{target} must look like {GATEWAY_PREFIX}<gatewayId>:<target>"))
        })?;
        if gateway_id == shared.remote.gateway_id {
            return target_of(shared, caller, target);
        }
        let (service_name, function_name) = match shared.remote.named(target) {
            Some(remote) => (remote.service_name.clone(), remote.function_name.clone()),
            None => names_in_arn(target).ok_or_else(|| {
                Error::new(
                    ErrorCode::InvalidParams,
                    format!("with a gatewayId, name the function by serviceName and functionName (got {target})"),
                )
            })?,
        };
        // They become topic levels: '/', '+' or '#' would change which topic, or make none.
        for (what, name) in [("gatewayId", gateway_id), ("serviceName", &service_name), ("functionName", &function_name)] {
            super::mqtt::settings::check_topic_level(what, name)
                .map_err(|error| Error::new(ErrorCode::InvalidParams, error.message))?;
        }
        let broker = shared.remote.broker_for(gateway_id);
        return Ok(Target::Remote(RemoteFunction { gateway_id: gateway_id.to_string(), service_name, function_name, broker }));
    }
    let local = match target.strip_prefix(FUNCTION_NAME_PREFIX) {
        Some(name) => {
            let own_service = match caller {
                Caller::Function(index) => Some(shared.hosts[index].spec.service_name.as_str()),
                Caller::Admin => None,
            };
            shared.functions.by_function_name(name, own_service)
        }
        None => shared
            .functions
            .get(target)
            .ok_or_else(|| Error::new(ErrorCode::FunctionNotFound, format!("function {target} does not exist"))),
    };
    match (local, shared.remote.named(target)) {
        (Ok(index), _) => Ok(Target::Local(index)),
        (Err(error), _) if error.code != ErrorCode::FunctionNotFound => Err(error),
        (Err(_), Some(remote)) => Ok(Target::Remote(remote.clone())),
        (Err(error), None) => Err(error),
    }
}

/// The service and function names in an ARN as [`function_arn`] writes it.
fn names_in_arn(arn: &str) -> Option<(String, String)> {
    let (head, function_name) = arn.rsplit_once(":function:")?;
    let (_, service_name) = head.rsplit_once(":service:")?;
    (!service_name.is_empty() && !function_name.is_empty()).then(|| (service_name.to_string(), function_name.to_string()))
}

/// Runs a routed message's invocation, which nobody waits for (at most
/// once), and logs how it failed, if it did.
pub(super) async fn run_detached(host: Arc<FunctionHost>, admission: Admission, invoker_context: String, payload: Payload) {
    let request_id = super::ids::new_id();
    let run = Run {
        kind: Kind::Message,
        request_id: request_id.clone(),
        attempt: 1,
        timeout: host.spec.timeout,
        invoker_context,
        payload,
    };
    match host.run(admission, run).await {
        Ok(result) if result.function_error != FunctionError::None => {
            let detail = log::error_body(result.payload.bytes());
            crate::warn!("invoke", "routed message {request_id} to {} failed: {detail}", host.spec.function_id);
        }
        Ok(_) => {}
        Err(error) => crate::warn!("invoke", "routed message {request_id} to {} was dropped: {error}", host.spec.function_id),
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
