//! The local runtime: hosts functions in worker processes and routes
//! invocations and published messages between them.
//!
//! - [`config`]: `edgefc.json` and the function table built from it.
//! - `server`: accepts connections, authenticates them, and hands each frame
//!   to the module that answers it.
//! - `connections`: how many connections, and what each may leave unread.
//! - `invoke`: an `Invoke` frame, from the function table to the reply.
//! - `bus`: a `Publish` frame, to subscribers and along the routes.
//! - [`router`]: topic filters and the routes they select.
//! - [`mqtt`]: the bridge to MQTT brokers: outbound and inbound routes, and
//!   invocations between gateways (`invoke` sends and serves them through it).
//! - `services`: `Request` frames (credentials, stats, dead letters).
//! - [`observe`]: counters and latency histograms per function, the stats
//!   snapshot, and the opt-in listener with `/metrics` and the status page.
//! - `ids`: request, invocation and message ids.
//! - `host`: one function: admission, concurrency, timeouts.
//! - `asynchronous`: Async invocations: accepted durably, run from the
//!   store, retried, buried as dead letters.
//! - [`store`]: the durable store (redb) and its group-commit writer.
//! - `dead_letters`: what `edgefc dlq` lists, shows, replays and purges.
//! - `budget`: a bound by count and bytes, for a function's queue and the runtime's.
//! - `supervisor`: that function's worker process: launch, attach, restart, idle stop.
//! - [`launcher`]: how a worker process is started (Node in production).
//! - [`identity`]: which user a worker runs as (`runAs`).
//! - `cgroup`: a control group per worker, where the runtime may create one.
//! - [`log`]: where the runtime's and the functions' output goes.
//! - `state_dir`: the state directory, its lock, the socket and token files, owner-only.

mod asynchronous;
mod budget;
mod bus;
mod cgroup;
pub mod config;
mod connections;
mod dead_letters;
mod host;
pub mod identity;
mod ids;
mod invoke;
pub mod launcher;
pub mod log;
pub mod mqtt;
pub mod observe;
pub mod router;
mod server;
mod services;
mod state_dir;
pub mod store;
mod supervisor;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use bus::Bus;
pub use config::{function_arn, Config, Credentials, FunctionSpec, FunctionTable};
use host::{FunctionHost, HostSettings};
pub use launcher::{LaunchSpec, NodeLauncher, WorkerLauncher, WorkerProcess};

/// `context.invokerContext.custom.source` of messages published by the CLI
/// and scripts (admin token) rather than by a function.
pub const ADMIN_SOURCE: &str = "local";

/// Who is on a connection.
#[derive(Clone, Copy)]
enum Caller {
    /// The CLI and local scripts, with the admin token.
    Admin,
    /// A hosted function (its index): its worker, on the connection the
    /// runtime made for it.
    Function(usize),
}

/// What every connection of one runtime sees.
struct Shared {
    hosts: Vec<Arc<FunctionHost>>,
    functions: FunctionTable,
    /// Replaced by `edgefc token rotate`.
    admin_token: Arc<std::sync::RwLock<String>>,
    admin_token_path: PathBuf,
    max_payload: usize,
    credentials: Option<Credentials>,
    bus: Bus,
    store: Arc<store::Store>,
    connections: Arc<connections::Connections>,
    settings: Arc<HostSettings>,
    bridge: Arc<mqtt::Bridge>,
    /// Which functions of other gateways callers here reach, and how.
    remote: mqtt::RemoteSettings,
    started_at: std::time::Instant,
    /// Each function's counters a minute ago and since, for the status page.
    samples: observe::Samples,
}

impl Shared {
    fn source_name(&self, publisher: router::Publisher) -> String {
        match publisher {
            router::Publisher::Admin => ADMIN_SOURCE.to_string(),
            router::Publisher::Function(index) => self.hosts[index].spec.function_id.clone(),
            router::Publisher::Broker(index) => format!("mqtt:{}", self.bridge.name(index)),
        }
    }
}

/// The runtime's admin token as it is now, however often it was rotated.
#[derive(Clone)]
pub struct AdminTokenCell(Arc<std::sync::RwLock<String>>);

impl AdminTokenCell {
    pub fn current(&self) -> String {
        self.0.read().unwrap().clone()
    }
}

/// A running runtime. Dropping the handle does not stop it; call [`stop`](RuntimeHandle::stop).
pub struct RuntimeHandle {
    socket_path: PathBuf,
    admin_token: Arc<std::sync::RwLock<String>>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    hosts: Vec<Arc<FunctionHost>>,
    store: Arc<store::Store>,
    settings: Arc<HostSettings>,
    bridge: Arc<mqtt::Bridge>,
    /// How long calls already taken may run on once stopping begins.
    shutdown_grace: std::time::Duration,
    observe_address: Option<std::net::SocketAddr>,
    /// Released last, once the socket and token are gone.
    _state_lock: state_dir::StateLock,
}

/// Binds the socket and starts serving. Must be called on a tokio runtime.
pub async fn start(mut config: Config, launcher: Arc<dyn WorkerLauncher>) -> Result<RuntimeHandle> {
    connections::fit_file_limit(&mut config.limits.connections, config.functions.len());
    for function in &config.functions {
        launcher
            .check(function)
            .map_err(|why| Error::config(format!("function {}/{}: {why}", function.service_name, function.function_name)))?;
    }
    let socket_path = config.socket_path();
    state_dir::prepare(&config.state_dir)?;
    let state_lock = state_dir::lock(&config.state_dir, &socket_path)?;
    state_dir::remove_stale_socket(&socket_path)?;
    let listener = UnixListener::bind(&socket_path)
        .map_err(|error| Error::config(format!("cannot listen on {}: {error}", socket_path.display())))?;
    state_dir::restrict_to_owner(&socket_path)?;
    let (store, pending) = store::Store::open(&config.state_dir, config.limits.store)?;
    let store = Arc::new(store);
    let exposed = config
        .remote
        .exposed
        .iter()
        .map(|&index| format!("{}/{}", config.functions[index].service_name, config.functions[index].function_name))
        .collect();
    let bridge = Arc::new(mqtt::Bridge::new(
        std::mem::take(&mut config.brokers),
        config.remote.clone(),
        exposed,
        &store,
        config.max_payload,
    )?);

    let admin_token_path = config.admin_token_path();
    let admin_token = Arc::new(std::sync::RwLock::new(state_dir::load_or_create_token(&admin_token_path)?));
    let observe_listener = observe::bind(config.observe.as_ref()).await?;
    let observe_address = observe_listener.as_ref().and_then(|listener| listener.local_addr().ok());
    let observe_token = match &config.observe {
        Some(settings) if settings.needs_token() => Some(state_dir::load_or_create_token(&config.observe_token_path())?),
        _ => None,
    };

    // Bounded by the function count: a function launches one worker at a time.
    let (worker_connections, new_workers) = tokio::sync::mpsc::unbounded_channel();
    let settings = Arc::new(HostSettings {
        launcher,
        thing_function_id: config.thing_function.map(|index| config.functions[index].function_id.clone()),
        total_queue: budget::Budget::new(config.limits.max_total_queued, config.limits.max_total_queued_bytes),
        max_line_bytes: config.limits.log.max_line_bytes,
        worker_connections,
        draining: CancellationToken::new(),
        recent_errors: observe::RecentErrors::default(),
    });
    let hosts: Vec<Arc<FunctionHost>> = config
        .functions
        .iter()
        .enumerate()
        .map(|(index, spec)| Arc::new(FunctionHost::new(spec.clone(), index, settings.clone())))
        .collect();
    let shared = Arc::new(Shared {
        hosts: hosts.clone(),
        functions: config.table,
        admin_token: admin_token.clone(),
        admin_token_path,
        max_payload: config.max_payload,
        credentials: config.credentials,
        bus: Bus::new(config.router, &config.limits.connections),
        bridge: bridge.clone(),
        store: store.clone(),
        connections: connections::Connections::new(config.limits.connections),
        settings: settings.clone(),
        remote: config.remote,
        started_at: std::time::Instant::now(),
        samples: observe::Samples::new(hosts.len()),
    });
    let shutdown = CancellationToken::new();
    observe::start(&shared, observe_listener, observe_token, shutdown.clone());
    if let Some(address) = observe_address {
        crate::info!("runtime", "edgefc observe listening on http://{address}/");
    }
    let from_brokers = Arc::downgrade(&shared);
    let from_gateways = Arc::downgrade(&shared);
    bridge.start(
        &shared.bus.router,
        move |broker, topic, payload| {
            let shared = from_brokers.clone();
            async move {
                let shared = shared.upgrade().ok_or_else(|| Error::runtime_unavailable("the runtime stopped"))?;
                bus::publish_from_broker(&shared, broker, topic, payload).await
            }
        },
        move |request| {
            let shared = from_gateways.clone();
            async move {
                let shared = shared.upgrade().ok_or_else(|| Error::runtime_unavailable("the runtime stopped"))?;
                invoke::serve_remote(&shared, request).await
            }
        },
    );
    let server = tokio::spawn(server::serve(listener, new_workers, shared, shutdown.clone()));
    requeue(&hosts, &store, pending);
    for host in &hosts {
        tokio::spawn(host.clone().supervise());
        tokio::spawn(asynchronous::dispatch(host.clone(), store.clone()));
    }
    Ok(RuntimeHandle {
        socket_path,
        admin_token,
        shutdown,
        server,
        hosts,
        store,
        settings,
        bridge,
        shutdown_grace: config.shutdown_grace,
        observe_address,
        _state_lock: state_lock,
    })
}

/// Gives every function the Async invocations it had pending when the
/// runtime last stopped (or died). Those of a function no longer configured
/// become dead letters, which a replay can bring back once it is.
fn requeue(hosts: &[Arc<FunctionHost>], store: &store::Store, pending: Vec<store::PendingEntry>) {
    let count = pending.len();
    for entry in pending {
        match hosts.iter().find(|host| host.spec.function_id == entry.function_id) {
            Some(host) => host.asynchronous.add(entry.seq, entry.size, entry.not_before_ms),
            None => {
                if let Ok(Some(invocation)) = store.read(entry.seq) {
                    let error = format!("function {} is not configured", entry.function_id);
                    let dead = store::DeadLetter { invocation, error, dead_at_ms: asynchronous::now_ms() };
                    store.bury(entry.seq, entry.size, &dead);
                }
            }
        }
    }
    if count > 0 {
        crate::info!("runtime", "{count} Async invocations were pending in {}; running them again", store.path().display());
    }
}

impl RuntimeHandle {
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Where the observe listener (`/metrics`, the status page) is, when configured.
    pub fn observe_address(&self) -> Option<std::net::SocketAddr> {
        self.observe_address
    }

    /// The admin token now: it stays the same across restarts until rotated.
    pub fn admin_token(&self) -> String {
        self.admin_token.read().unwrap().clone()
    }

    /// Where the admin token is kept, for holders that outlive a borrow of
    /// the handle and must see a rotation (`edgefc token rotate`).
    pub fn admin_token_cell(&self) -> AdminTokenCell {
        AdminTokenCell(self.admin_token.clone())
    }

    /// Stops gracefully: new calls are refused (`ERR_SHUTTING_DOWN`); those
    /// already taken, Sync calls and Async attempts, may finish within
    /// `shutdownGraceMs`; Async invocations still pending stay in the store
    /// for the next start. Then every connection and worker ends, the store
    /// is closed and the socket removed.
    pub async fn stop(self) {
        self.settings.draining.cancel();
        // Nothing more from the brokers: what they sent and was not delivered stays unacknowledged there.
        self.bridge.stop().await;
        let settled = futures_util::future::join_all(self.hosts.iter().map(|host| host.settled()));
        let _ = tokio::time::timeout(self.shutdown_grace, settled).await;
        for host in &self.hosts {
            host.begin_stop();
        }
        self.shutdown.cancel();
        let _ = self.server.await;
        for host in &self.hosts {
            host.stop().await;
        }
        self.store.close().await;
        let _ = std::fs::remove_file(&self.socket_path);
    }
}
