//! `startRuntime`: a runtime embedded in this Node process, and where a
//! runtime started from a config listens.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use edgefc_core::runtime::{self, log, AdminTokenCell, Config, NodeLauncher, RuntimeHandle};
use napi::bindgen_prelude::PromiseRaw;
use napi::Env;
use napi_derive::napi;

use crate::error::{self, to_js};

#[napi]
pub struct NativeRuntime {
    handle: Arc<tokio::sync::Mutex<Option<RuntimeHandle>>>,
    socket_path: String,
    admin_token: AdminTokenCell,
    observe_address: Option<String>,
}

#[napi]
impl NativeRuntime {
    #[napi(getter)]
    pub fn socket_path(&self) -> String {
        self.socket_path.clone()
    }

    /// `address:port` of the observe listener, when `observe.listen` is set.
    #[napi(getter)]
    pub fn observe_address(&self) -> Option<String> {
        self.observe_address.clone()
    }

    /// The token now: `edgefc token rotate` replaces it.
    #[napi(getter)]
    pub fn admin_token(&self) -> String {
        self.admin_token.current()
    }

    /// Stops the runtime and its workers; later calls do nothing.
    #[napi]
    pub async fn stop(&self) {
        if let Some(handle) = self.handle.lock().await.take() {
            handle.stop().await;
        }
    }
}

/// Where the worker bootstrap lives and what runs it; the JS side knows.
#[napi(object)]
pub struct WorkerSetup {
    pub node: String,
    pub bootstrap: String,
    pub module_dir: String,
}

/// Loads `configPath` and starts a runtime in this process. Rejects with
/// `ERR_CONFIG` when the file is wrong or the socket is taken by a live runtime.
#[napi(ts_return_type = "Promise<NativeRuntime>")]
pub fn start_runtime<'env>(
    env: &'env Env,
    config_path: String,
    worker: WorkerSetup,
) -> napi::Result<PromiseRaw<'env, NativeRuntime>> {
    let launcher =
        NodeLauncher::new(PathBuf::from(worker.node), PathBuf::from(worker.bootstrap), PathBuf::from(worker.module_dir));
    let work = async move {
        let config = Config::load(Path::new(&config_path))?;
        log::init_embedded(config.limits.log.max_waiting_lines, config.limits.log.max_waiting_bytes);
        runtime::start(config, Arc::new(launcher)).await
    };
    error::promise(env, work, |handle| NativeRuntime {
        socket_path: handle.socket_path().display().to_string(),
        admin_token: handle.admin_token_cell(),
        observe_address: handle.observe_address().map(|address| address.to_string()),
        handle: Arc::new(tokio::sync::Mutex::new(Some(handle))),
    })
}

#[napi(object)]
pub struct RuntimeEndpoint {
    pub socket_path: String,
    pub admin_token_path: String,
}

/// Where the runtime started from `configPath` listens and keeps its admin
/// token, so the CLI and scripts can reach it. Throws `ERR_CONFIG`.
#[napi]
pub fn runtime_endpoint(config_path: String) -> error::Result<RuntimeEndpoint> {
    let config = Config::load(Path::new(&config_path)).map_err(to_js)?;
    Ok(RuntimeEndpoint {
        socket_path: config.socket_path().display().to_string(),
        admin_token_path: config.admin_token_path().display().to_string(),
    })
}
