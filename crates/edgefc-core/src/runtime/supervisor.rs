//! A hosted function's worker process: launched by the first invocation (or
//! with the runtime, when long-lived) with one end of a connection made for
//! it, attached once it says Hello on that connection, replaced after it crashes or times out, restarted with
//! back-off when long-lived, stopped after `idleTimeoutMs` when on demand.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::config::RunMode;
use super::host::FunctionHost;
use super::launcher::{LaunchSpec, WorkerProcess};
use super::observe::{ExitReason, WorkerStats};
use crate::proto::message::SyncResult;
use crate::transport::{FrameSender, PendingTable};

/// How long a new worker may take to load and connect.
const WORKER_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Restart delays of a long-lived worker that keeps ending: doubling from the
/// first to the last, and back to the first once a worker has stayed up for
/// `STABLE_RUN`.
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(100);
const LAST_RESTART_DELAY: Duration = Duration::from_secs(30);
const STABLE_RUN: Duration = Duration::from_secs(60);

/// A worker that has connected: where its tasks go and who waits for them.
pub(super) struct WorkerLink {
    pub(super) sender: FrameSender,
    /// The tasks sent and not yet done; closing it fails their waiters.
    pub(super) pending: PendingTable<oneshot::Sender<SyncResult>>,
    process: Mutex<Option<WorkerProcess>>,
    closed: CancellationToken,
    /// Set once a task timed out: the worker takes no new tasks.
    retiring: AtomicBool,
    /// Woken whenever a task ends.
    settled: Notify,
    /// Set once the runtime asked it to stop: its exit is not a crash.
    stop_requested: AtomicBool,
    connected_at: Instant,
}

impl WorkerLink {
    /// Closed, or retiring: either way new tasks go to another worker.
    fn is_closed(&self) -> bool {
        self.sender.is_closed() || self.pending.is_closed() || self.retiring.load(Ordering::Acquire)
    }

    /// Fails every task still running on this worker.
    pub(super) fn close(&self) {
        self.pending.close();
        self.closed.cancel();
        self.settled.notify_waiters();
    }

    /// A task that timed out: its late result, if any, is dropped.
    pub(super) fn forget(&self, task_id: u64) {
        self.pending.take(task_id);
        self.settled.notify_waiters();
    }

    /// Whether the worker was killed for using more than its memory limit.
    pub(super) fn exceeded_memory(&self) -> bool {
        self.process.lock().unwrap().as_ref().is_some_and(WorkerProcess::exceeded_memory)
    }

    /// Marks the worker as taking no new tasks; false if it already was.
    pub(super) fn begin_retiring(&self) -> bool {
        !self.retiring.swap(true, Ordering::AcqRel)
    }

    /// Resolves once no task is running on the worker.
    pub(super) async fn settled(&self) {
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if self.pending.is_empty() {
                return;
            }
            settled.await;
        }
    }

    /// Stops the worker process; its connection closes with it.
    pub(super) fn kill(&self) {
        self.stop_requested.store(true, Ordering::Release);
        self.close();
        if let Some(process) = self.process.lock().unwrap().as_mut() {
            process.stop();
        }
    }

    /// Stops the worker and waits (briefly) until it has ended and its
    /// output has been forwarded.
    pub(super) async fn stop(&self) {
        self.kill();
        self.exited(Duration::from_secs(2)).await;
    }

    /// Waits, at most `bound`, until the worker's process has ended and its
    /// output has been forwarded.
    pub(super) async fn exited(&self, bound: Duration) {
        let exit = self.process.lock().unwrap().as_ref().map(WorkerProcess::exit);
        if let Some(exit) = exit {
            let _ = tokio::time::timeout(bound, exit).await;
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

    /// Why its process ended, once it has.
    fn exit_reason(&self) -> ExitReason {
        if self.exceeded_memory() {
            ExitReason::MemoryLimit
        } else if self.retiring.load(Ordering::Acquire) {
            ExitReason::Timeout
        } else if self.stop_requested.load(Ordering::Acquire) {
            ExitReason::Stopped
        } else {
            ExitReason::Crashed
        }
    }

    /// A task finished; a result for an unknown or timed-out task is dropped.
    pub(super) fn complete(&self, task_id: u64, result: SyncResult) {
        if let Some(waiting) = self.pending.take(task_id) {
            let _ = waiting.send(result);
        }
        self.settled.notify_waiters();
    }
}

/// A new worker's end of the connection the runtime made for it (the
/// worker inherited the other end), for the server to serve: whoever is on
/// it speaks for `function`, without a token.
pub(super) struct WorkerConnection {
    pub(super) stream: std::os::unix::net::UnixStream,
    pub(super) function: usize,
    pub(super) attach: AttachWorker,
}

/// Hands the worker's link, once its connection said Hello, to the
/// invocation that launched it.
pub(super) struct AttachWorker(oneshot::Sender<Arc<WorkerLink>>);

impl AttachWorker {
    pub(super) fn attach(self, sender: FrameSender) -> Option<Arc<WorkerLink>> {
        let link = Arc::new(WorkerLink {
            sender,
            pending: PendingTable::new(),
            process: Mutex::new(None),
            closed: CancellationToken::new(),
            retiring: AtomicBool::new(false),
            settled: Notify::new(),
            stop_requested: AtomicBool::new(false),
            connected_at: Instant::now(),
        });
        self.0.send(link.clone()).ok()?;
        Some(link)
    }
}

impl FunctionHost {
    /// The connected worker, launching one first if there is none.
    pub(super) async fn ensure_worker(&self) -> Result<Arc<WorkerLink>, String> {
        let mut current = self.worker.lock().await;
        if let Some(link) = current.as_ref().filter(|link| !link.is_closed()) {
            return Ok(link.clone());
        }
        current.take();
        if self.is_stopping() {
            return Err("the runtime is stopping".to_string());
        }
        let link = self.start_worker().await.inspect_err(|_| {
            if !self.is_stopping() {
                self.metrics.worker_start_failed();
            }
        })?;
        *self.observed_worker.lock().unwrap() = Arc::downgrade(&link);
        *current = Some(link.clone());
        Ok(link)
    }

    /// Launches a worker and waits until it has connected.
    async fn start_worker(&self) -> Result<Arc<WorkerLink>, String> {
        let cannot_start = |why: String| format!("cannot start the worker of {}: {why}", self.spec.function_id);
        let (runtime_end, worker_end) =
            std::os::unix::net::UnixStream::pair().map_err(|error| cannot_start(error.to_string()))?;
        let process = self
            .settings
            .launcher
            .launch(LaunchSpec {
                function: &self.spec,
                connection: worker_end.into(),
                thing_function_id: self.settings.thing_function_id.as_deref(),
                max_line_bytes: self.settings.max_line_bytes,
            })
            .map_err(|error| cannot_start(error.to_string()))?;
        let (attach_tx, attached) = oneshot::channel();
        let connection = WorkerConnection { stream: runtime_end, function: self.index, attach: AttachWorker(attach_tx) };
        if self.settings.worker_connections.send(connection).is_err() {
            return Err("the runtime is stopping".to_string());
        }
        let outcome = tokio::select! {
            link = attached => link.map_err(|_| "the runtime is stopping".to_string()),
            how = process.exit() => {
                Err(format!("the worker of {} ended during start ({how}); its output above says why", self.spec.function_id))
            }
            _ = tokio::time::sleep(WORKER_START_TIMEOUT) => {
                Err(format!("the worker of {} did not connect within {} s", self.spec.function_id, WORKER_START_TIMEOUT.as_secs()))
            }
        };
        let link = outcome?;
        self.metrics.worker_started();
        let pid = process.pid().map_or_else(|| "none".to_string(), |pid| pid.to_string());
        crate::debug!("host", "the worker of {} started (pid {pid})", self.spec.function_id);
        // Weak: a link nobody uses any more must drop its process, which stops it.
        let (metrics, watched, exit) = (self.metrics.clone(), Arc::downgrade(&link), process.exit());
        let function_id = self.spec.function_id.clone();
        tokio::spawn(async move {
            let how = exit.await;
            let reason = watched.upgrade().map_or(ExitReason::Stopped, |link| link.exit_reason());
            metrics.worker_exited(reason);
            crate::debug!("host", "the worker of {function_id} (pid {pid}) ended ({how}; {})", reason.label());
        });
        *link.process.lock().unwrap() = Some(process);
        Ok(link)
    }

    /// The function's worker as the stats show it, while it is connected.
    pub(super) fn worker_stats(&self) -> Vec<WorkerStats> {
        let observed = self.observed_worker.lock().unwrap().upgrade();
        let Some(link) = observed.filter(|link| !link.sender.is_closed()) else {
            return Vec::new();
        };
        let pid = link.process.lock().unwrap().as_ref().and_then(WorkerProcess::pid);
        vec![WorkerStats {
            pid,
            rss_bytes: pid.and_then(super::launcher::resident_bytes),
            uptime_seconds: link.connected_at.elapsed().as_secs_f64(),
            in_flight: link.pending.len(),
            retiring: link.retiring.load(Ordering::Acquire),
        }]
    }

    /// Keeps the function's worker in the shape its run mode asks for, until
    /// the runtime stops: a long-lived worker is (re)started, an idle
    /// on-demand worker is stopped.
    pub(super) async fn supervise(self: Arc<Self>) {
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
                    if self.is_stopping() {
                        return;
                    }
                    crate::warn!("host", "long-lived function {} ended ({how}); restarting", self.spec.function_id);
                }
                Err(message) => crate::warn!("host", "{message}; retrying"),
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
}
