//! Starting and stopping the runtime: the state directory, the socket, the
//! tokens, and the function hosts.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, FunctionTable, THING_FUNCTION_ALIAS};
use crate::error::{Error, Result};
use crate::host::{FunctionHost, HostSettings};
use crate::launcher::WorkerLauncher;
use crate::server::{self, Caller, Shared};

/// A running runtime. Dropping the handle does not stop it; call [`stop`](RuntimeHandle::stop).
pub struct RuntimeHandle {
    socket_path: PathBuf,
    admin_token_path: PathBuf,
    admin_token: String,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    hosts: Vec<Arc<FunctionHost>>,
}

/// A random secret, unguessable by other local processes.
fn new_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// Binds the socket and starts serving. Must be called on a tokio runtime.
pub async fn start(config: Config, launcher: Arc<dyn WorkerLauncher>) -> Result<RuntimeHandle> {
    let socket_path = config.socket_path();
    prepare_state_dir(&config.state_dir)?;
    remove_stale_socket(&socket_path).await?;
    let listener = UnixListener::bind(&socket_path)
        .map_err(|error| Error::config(format!("cannot listen on {}: {error}", socket_path.display())))?;
    std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o600))
        .map_err(|error| Error::config(format!("cannot restrict {}: {error}", socket_path.display())))?;

    let admin_token = new_token();
    let admin_token_path = config.admin_token_path();
    write_owner_only(&admin_token_path, admin_token.as_bytes())?;

    let settings = Arc::new(HostSettings {
        socket_path: socket_path.clone(),
        launcher,
        thing_function_id: config.thing_function.map(|index| config.functions[index].function_id.clone()),
    });
    let hosts: Vec<Arc<FunctionHost>> = config
        .functions
        .iter()
        .map(|spec| Arc::new(FunctionHost::new(spec.clone(), new_token(), settings.clone())))
        .collect();
    let mut tokens = HashMap::new();
    tokens.insert(admin_token.clone(), Caller::Admin);
    for (index, host) in hosts.iter().enumerate() {
        tokens.insert(host.token().to_string(), Caller::Function(index));
    }
    let mut functions = FunctionTable::build(&config.functions)?;
    if let Some(index) = config.thing_function {
        functions.alias(THING_FUNCTION_ALIAS, index);
    }
    let shared = Arc::new(Shared::new(hosts.clone(), functions, tokens, config.max_payload, config.router, config.credentials));
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(server::serve(listener, shared, shutdown.clone()));
    for host in &hosts {
        tokio::spawn(host.clone().supervise());
    }
    Ok(RuntimeHandle { socket_path, admin_token_path, admin_token, shutdown, server, hosts })
}

impl RuntimeHandle {
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Stops accepting, ends every connection and worker, and removes the
    /// socket and the admin token file.
    pub async fn stop(self) {
        for host in &self.hosts {
            host.begin_stop();
        }
        self.shutdown.cancel();
        let _ = self.server.await;
        for host in &self.hosts {
            host.stop().await;
        }
        let _ = std::fs::remove_file(&self.socket_path);
        let _ = std::fs::remove_file(&self.admin_token_path);
    }
}

fn prepare_state_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|_| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|error| Error::config(format!("cannot create state directory {}: {error}", dir.display())))
}

/// A socket file left by a runtime that died is removed; one that still
/// answers belongs to a live runtime, which is an error.
async fn remove_stale_socket(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    if UnixStream::connect(path).await.is_ok() {
        return Err(Error::config(format!("another edgefc runtime is already listening on {}", path.display())));
    }
    std::fs::remove_file(path).map_err(|error| Error::config(format!("cannot remove stale socket {}: {error}", path.display())))
}

fn write_owner_only(path: &Path, contents: &[u8]) -> Result<()> {
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(contents))
        .map_err(|error| Error::config(format!("cannot write {}: {error}", path.display())))
}
