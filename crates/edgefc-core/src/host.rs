//! One hosted function: its worker process, its concurrency limit and its
//! queue. An on-demand worker is started by the first invocation and stopped
//! after `idleTimeoutMs` without one; a long-lived worker is started with the
//! runtime and restarted with back-off whenever it ends. Either carries up to
//! `maxConcurrency` invocations at once and is replaced after it crashes or
//! after one of its invocations runs past `timeoutMs`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::client::{error_payload, SyncResult};
use crate::config::{FunctionSpec, RunMode};
use crate::connection::FrameSender;
use crate::error::{Error, ErrorCode, Result};
use crate::frame::{Frame, FunctionError, Payload};
use crate::launcher::{LaunchSpec, WorkerLauncher, WorkerProcess};

/// How long a new worker may take to load and connect.
const WORKER_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Restart delays of a long-lived worker that keeps ending: doubling from the
/// first to the last, and back to the first once a worker has stayed up for
/// `STABLE_RUN`.
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(100);
const LAST_RESTART_DELAY: Duration = Duration::from_secs(30);
const STABLE_RUN: Duration = Duration::from_secs(60);

/// The status code of every invocation that reached the function, as in the
/// HTTP-based upstream runtime.
pub const STATUS_OK: u16 = 200;

/// What every host of one runtime shares.
pub struct HostSettings {
    pub socket_path: PathBuf,
    pub launcher: Arc<dyn WorkerLauncher>,
    /// Given to workers as `THING_FUNCTION_ID`.
    pub thing_function_id: Option<String>,
}

pub struct FunctionHost {
    pub spec: FunctionSpec,
    token: String,
    settings: Arc<HostSettings>,
    permits: Semaphore,
    /// Invocations admitted and not yet finished: running plus queued.
    admitted: AtomicUsize,
    max_admitted: usize,
    next_task_id: AtomicU64,
    worker: tokio::sync::Mutex<Option<Arc<WorkerLink>>>,
    /// Set while a worker is starting: the connection that authenticates with
    /// this function's token, asks to serve and comes from the started
    /// process is handed over through it.
    attach: Mutex<Option<PendingStart>>,
    last_activity: Mutex<Instant>,
    stopping: AtomicBool,
    stopped: CancellationToken,
}

/// A worker that has connected: where its tasks go and who waits for them.
pub struct WorkerLink {
    sender: FrameSender,
    /// `None` once the worker is gone; dropping the senders fails the waiters.
    pending: Mutex<Option<HashMap<u64, oneshot::Sender<SyncResult>>>>,
    process: Mutex<Option<WorkerProcess>>,
    closed: CancellationToken,
}

impl WorkerLink {
    fn is_closed(&self) -> bool {
        self.sender.is_closed() || self.pending.lock().unwrap().is_none()
    }

    /// Fails every task still running on this worker.
    pub fn close(&self) {
        self.pending.lock().unwrap().take();
        self.closed.cancel();
    }

    /// Stops the worker process; its connection closes with it.
    fn kill(&self) {
        self.close();
        if let Some(process) = self.process.lock().unwrap().as_mut() {
            process.stop();
        }
    }

    /// Stops the worker and waits (briefly) until it has ended and its
    /// output has been forwarded.
    async fn stop(&self) {
        self.kill();
        let exit = self.process.lock().unwrap().as_ref().map(WorkerProcess::exit);
        if let Some(exit) = exit {
            let _ = tokio::time::timeout(Duration::from_secs(2), exit).await;
        }
    }

    /// Resolves when the worker's connection is gone, and says how the process ended.
    async fn ended(&self) -> String {
        self.closed.cancelled().await;
        let exit = self.process.lock().unwrap().as_ref().map(WorkerProcess::exit);
        match exit {
            Some(exit) => exit.await,
            None => "stopped".to_string(),
        }
    }

    /// A task finished; a result for an unknown or timed-out task is dropped.
    pub fn complete(&self, task_id: u64, result: SyncResult) {
        let waiting = self.pending.lock().unwrap().as_mut().and_then(|pending| pending.remove(&task_id));
        if let Some(waiting) = waiting {
            let _ = waiting.send(result);
        }
    }
}

/// A worker being started: who it will be and who waits for it.
struct PendingStart {
    attached: oneshot::Sender<Arc<WorkerLink>>,
    pid: Option<u32>,
}

/// The right to become the function's worker, claimed during the handshake.
pub struct WorkerStart(oneshot::Sender<Arc<WorkerLink>>);

/// Holds a place among the admitted invocations until dropped.
pub struct Admission {
    host: Arc<FunctionHost>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.host.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl FunctionHost {
    pub fn new(spec: FunctionSpec, token: String, settings: Arc<HostSettings>) -> FunctionHost {
        FunctionHost {
            permits: Semaphore::new(spec.max_concurrency),
            max_admitted: spec.max_concurrency + spec.max_queued,
            spec,
            token,
            settings,
            admitted: AtomicUsize::new(0),
            next_task_id: AtomicU64::new(1),
            worker: tokio::sync::Mutex::new(None),
            attach: Mutex::new(None),
            last_activity: Mutex::new(Instant::now()),
            stopping: AtomicBool::new(false),
            stopped: CancellationToken::new(),
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Takes a place in the function's queue, or fails with `ERR_QUEUE_FULL`.
    pub fn admit(self: &Arc<Self>) -> Result<Admission> {
        let before = self.admitted.fetch_add(1, Ordering::AcqRel);
        let admission = Admission { host: self.clone() };
        if before >= self.max_admitted {
            return Err(Error::new(
                ErrorCode::QueueFull,
                format!(
                    "function {} already has {} invocations running or queued",
                    self.spec.function_id, self.max_admitted
                ),
            ));
        }
        Ok(admission)
    }

    /// Runs one invocation to its end. Errors are only for invocations that
    /// never reached the function (the runtime is stopping); whatever
    /// happens to the function itself is an `Unhandled` result.
    pub async fn run(&self, _admission: Admission, request_id: String, invoker_context: String, payload: Payload) -> Result<SyncResult> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::runtime_unavailable("the runtime is stopping"))?;
        self.touch();
        let result = self.run_admitted(request_id, invoker_context, payload).await;
        self.touch();
        result
    }

    async fn run_admitted(&self, request_id: String, invoker_context: String, payload: Payload) -> Result<SyncResult> {
        let link = match self.ensure_worker().await {
            Ok(link) => link,
            Err(_) if self.stopping.load(Ordering::Acquire) => {
                return Err(Error::runtime_unavailable("the runtime stopped before the invocation started"))
            }
            Err(message) => return Ok(unhandled("WorkerStartError", &message)),
        };
        let task_id = self.next_task_id.fetch_add(1, Ordering::Relaxed);
        let (done_tx, done) = oneshot::channel();
        match link.pending.lock().unwrap().as_mut() {
            Some(pending) => pending.insert(task_id, done_tx),
            None => return Ok(worker_lost()),
        };
        link.sender.send(Frame::Task { id: task_id, request_id, invoker_context, payload });
        match tokio::time::timeout(self.spec.timeout, done).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) if self.stopping.load(Ordering::Acquire) => {
                Err(Error::runtime_unavailable("the runtime stopped before the invocation finished"))
            }
            Ok(Err(_)) => Ok(worker_lost()),
            Err(_) => {
                // The handler may be stuck in a loop; only a new process is sure to be free of it.
                link.kill();
                Ok(unhandled(
                    "TimeoutError",
                    &format!("function {} timed out after {} ms", self.spec.function_id, self.spec.timeout.as_millis()),
                ))
            }
        }
    }

    fn touch(&self) {
        *self.last_activity.lock().unwrap() = Instant::now();
    }

    fn is_idle(&self) -> bool {
        self.permits.available_permits() == self.spec.max_concurrency
    }

    async fn ensure_worker(&self) -> std::result::Result<Arc<WorkerLink>, String> {
        let mut current = self.worker.lock().await;
        if let Some(link) = current.as_ref().filter(|link| !link.is_closed()) {
            return Ok(link.clone());
        }
        current.take();
        if self.stopping.load(Ordering::Acquire) {
            return Err("the runtime is stopping".to_string());
        }
        let (attach_tx, attached) = oneshot::channel();
        // The slot stays locked while launching, so that no connection can
        // claim it before it knows which process to expect.
        let process = {
            let mut attach = self.attach.lock().unwrap();
            let process = self
                .settings
                .launcher
                .launch(&LaunchSpec {
                    function: &self.spec,
                    token: &self.token,
                    socket_path: &self.settings.socket_path,
                    thing_function_id: self.settings.thing_function_id.as_deref(),
                })
                .map_err(|error| format!("cannot start the worker of {}: {error}", self.spec.function_id))?;
            *attach = Some(PendingStart { attached: attach_tx, pid: process.pid() });
            process
        };
        let outcome = tokio::select! {
            link = attached => link.map_err(|_| "the runtime is stopping".to_string()),
            how = process.exit() => {
                Err(format!("the worker of {} ended during start ({how}); its output above says why", self.spec.function_id))
            }
            _ = tokio::time::sleep(WORKER_START_TIMEOUT) => {
                Err(format!("the worker of {} did not connect within {} s", self.spec.function_id, WORKER_START_TIMEOUT.as_secs()))
            }
        };
        self.attach.lock().unwrap().take();
        let link = outcome?;
        *link.process.lock().unwrap() = Some(process);
        *current = Some(link.clone());
        Ok(link)
    }

    /// Called by the server when a connection authenticated with this
    /// function's token asks to serve. `None` when no worker is starting or
    /// the connection comes from another process (`peer_pid`), so that a
    /// stray process holding the token (a child of the worker, say) cannot
    /// steal invocations.
    pub fn claim_start(&self, peer_pid: Option<u32>) -> Option<WorkerStart> {
        let mut attach = self.attach.lock().unwrap();
        let expected = attach.as_ref()?.pid;
        if expected.is_some() && expected != peer_pid {
            return None;
        }
        attach.take().map(|start| WorkerStart(start.attached))
    }

    /// Hands the new worker's connection to the invocation that started it.
    pub fn attach_worker(&self, start: WorkerStart, sender: FrameSender) -> Option<Arc<WorkerLink>> {
        let WorkerStart(waiting) = start;
        let link = Arc::new(WorkerLink {
            sender,
            pending: Mutex::new(Some(HashMap::new())),
            process: Mutex::new(None),
            closed: CancellationToken::new(),
        });
        waiting.send(link.clone()).ok()?;
        Some(link)
    }

    /// Keeps the function's worker in the shape its run mode asks for, until
    /// the runtime stops: a long-lived worker is (re)started, an idle
    /// on-demand worker is stopped.
    pub async fn supervise(self: Arc<Self>) {
        match self.spec.run_mode {
            RunMode::LongLived => self.keep_alive().await,
            RunMode::OnDemand => self.stop_when_idle().await,
        }
    }

    async fn keep_alive(&self) {
        let mut delay = FIRST_RESTART_DELAY;
        while !self.stopping.load(Ordering::Acquire) {
            let started = Instant::now();
            match self.ensure_worker().await {
                Ok(link) => {
                    let how = tokio::select! {
                        how = link.ended() => how,
                        _ = self.stopped.cancelled() => return,
                    };
                    if self.stopping.load(Ordering::Acquire) {
                        return;
                    }
                    eprintln!("[edgefc] long-lived function {} ended ({how}); restarting", self.spec.function_id);
                }
                Err(message) => eprintln!("[edgefc] {message}; retrying"),
            }
            if started.elapsed() >= STABLE_RUN {
                delay = FIRST_RESTART_DELAY;
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.stopped.cancelled() => return,
            }
            delay = (delay * 2).min(LAST_RESTART_DELAY);
        }
    }

    async fn stop_when_idle(&self) {
        loop {
            let idle_since = *self.last_activity.lock().unwrap();
            let deadline = idle_since + self.spec.idle_timeout;
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = self.stopped.cancelled() => return,
            }
            // Holding the worker slot: an invocation that already has a
            // permit keeps the worker busy; one that has not will start a new worker.
            let mut current = self.worker.lock().await;
            let quiet = *self.last_activity.lock().unwrap() == idle_since;
            if quiet {
                if self.is_idle() {
                    if let Some(link) = current.take() {
                        drop(current);
                        link.stop().await;
                    }
                }
                // Busy with one long invocation counts as active: look again a whole timeout later.
                self.touch();
            }
        }
    }

    /// From now on, an invocation whose worker goes away failed because the
    /// runtime is stopping, not because the function crashed.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Stops the worker and refuses further invocations.
    pub async fn stop(&self) {
        self.begin_stop();
        self.stopped.cancel();
        self.permits.close();
        self.attach.lock().unwrap().take();
        let link = self.worker.lock().await.take();
        if let Some(link) = link {
            link.stop().await;
        }
    }
}

fn unhandled(error_type: &str, message: &str) -> SyncResult {
    SyncResult { status: STATUS_OK, function_error: FunctionError::Unhandled, payload: error_payload(error_type, message) }
}

fn worker_lost() -> SyncResult {
    unhandled("WorkerExited", "the function's worker process exited before the invocation finished")
}
