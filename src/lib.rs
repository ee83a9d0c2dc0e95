//! The Node binding of `edgefc-core`: it converts values between JavaScript
//! and the engine, and lets Node's event loop drive each connection; the
//! protocol and its rules all live in the engine.
//!
//! - `session`: `NativeSession`, a process's connection to the runtime.
//! - `runtime`: `startRuntime` (a runtime embedded in this process) and `runtimeEndpoint`.
//! - `convert`: payloads and messages.
//! - `records`: replies and tasks as records in a buffer shared with the facade.
//! - `event_loop`: a session's connection read and written from Node's own event loop.
//! - `error`: the one place engine errors become JavaScript errors.

pub mod convert;
pub mod error;
pub mod event_loop;
pub mod records;
pub mod runtime;
pub mod session;

use std::sync::OnceLock;

use napi_derive::napi;

/// The addon's async runtime, where sessions connect and read.
static ENGINE: OnceLock<tokio::runtime::Handle> = OnceLock::new();

fn engine() -> tokio::runtime::Handle {
    ENGINE.get().cloned().unwrap_or_else(|| napi::bindgen_prelude::within_runtime_if_available(tokio::runtime::Handle::current))
}

/// Every code an error can carry, for the facade's `ErrorCode` and the generated type declarations.
#[napi]
pub fn error_codes() -> Vec<String> {
    edgefc_core::ErrorCode::ALL.iter().map(|code| code.as_str().to_string()).collect()
}

/// The ARN the upstream SDK builds from a service and function name.
#[napi]
pub fn function_arn(service_name: String, function_name: String) -> String {
    edgefc_core::runtime::function_arn(&service_name, &function_name)
}

/// The function id that publishes what is invoked on it (upstream's
/// `ROUTER_FUNCTION_ID`), for callers outside the runtime, which have no
/// such variable.
#[napi]
pub fn router_function_id() -> String {
    edgefc_core::runtime::config::ROUTER_FUNCTION_ID.to_string()
}

/// The name that always reaches the configured thing function, for callers
/// outside the runtime, which have no `THING_FUNCTION_ID`.
#[napi]
pub fn thing_function_alias() -> String {
    edgefc_core::runtime::config::THING_FUNCTION_ALIAS.to_string()
}

/// What goes before a bare function name in an invocation's target: the
/// runtime resolves it in the caller's own service first.
#[napi]
pub fn function_name_prefix() -> String {
    edgefc_core::runtime::config::FUNCTION_NAME_PREFIX.to_string()
}

/// What goes before `<gatewayId>:<target>` in an invocation's target: that
/// function on that gateway, through the MQTT bridge.
#[napi]
pub fn gateway_prefix() -> String {
    edgefc_core::runtime::config::GATEWAY_PREFIX.to_string()
}

/// One worker thread for the addon's async work: a process talks to the
/// runtime over one connection, so more threads only add hand-offs (and
/// wake-ups) between them.
/// Makes this process non-dumpable: other processes of the same user can
/// then neither read its memory and `/proc/<pid>/environ` nor trace it.
/// Workers call it first thing. Returns whether it took effect.
#[napi]
pub fn harden_process() -> bool {
    edgefc_core::runtime::identity::make_non_dumpable()
}

/// Switches this process to `uid` and `gid` for good, without any
/// supplementary group: a worker does it once edgefc's own code is loaded
/// and before the function's is.
#[napi]
pub fn become_user(uid: u32, gid: u32) -> error::Result<()> {
    edgefc_core::runtime::identity::become_user(uid, gid).map_err(|cause| {
        error::to_js(edgefc_core::Error::new(
            edgefc_core::ErrorCode::RuntimeUnavailable,
            format!("cannot switch to uid {uid}, gid {gid}: {cause}"),
        ))
    })
}

#[napi_derive::module_init]
fn init() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build();
    if let Ok(runtime) = runtime {
        let _ = ENGINE.set(runtime.handle().clone());
        napi::bindgen_prelude::create_custom_tokio_runtime(runtime);
    }
}
