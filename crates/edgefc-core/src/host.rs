//! One hosted function: its worker process, its concurrency limit and its
//! queue. A worker is started on the first invocation, carries up to
//! `maxConcurrency` invocations at once, and is replaced after it crashes or
//! after one of its invocations runs past `timeoutMs`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Semaphore};

use crate::client::{error_payload, SyncResult};
use crate::config::FunctionSpec;
use crate::connection::FrameSender;
use crate::error::{Error, ErrorCode, Result};
use crate::frame::{Frame, FunctionError, Payload};
use crate::launcher::{LaunchSpec, WorkerLauncher, WorkerProcess};

/// How long a new worker may take to load and connect.
const WORKER_START_TIMEOUT: Duration = Duration::from_secs(10);

/// The status code of every invocation that reached the function, as in the
/// HTTP-based upstream runtime.
pub const STATUS_OK: u16 = 200;

pub struct FunctionHost {
    pub spec: FunctionSpec,
    token: String,
    socket_path: PathBuf,
    launcher: Arc<dyn WorkerLauncher>,
    permits: Semaphore,
    /// Invocations admitted and not yet finished: running plus queued.
    admitted: AtomicUsize,
    max_admitted: usize,
    next_task_id: AtomicU64,
    worker: tokio::sync::Mutex<Option<Arc<WorkerLink>>>,
    /// Set while a worker is starting: the connection that authenticates with
    /// this function's token and asks to serve is handed over through it.
    attach: Mutex<Option<oneshot::Sender<Arc<WorkerLink>>>>,
    stopping: AtomicBool,
}

/// A worker that has connected: where its tasks go and who waits for them.
pub struct WorkerLink {
    sender: FrameSender,
    /// `None` once the worker is gone; dropping the senders fails the waiters.
    pending: Mutex<Option<HashMap<u64, oneshot::Sender<SyncResult>>>>,
    process: Mutex<Option<WorkerProcess>>,
}

impl WorkerLink {
    fn is_closed(&self) -> bool {
        self.sender.is_closed() || self.pending.lock().unwrap().is_none()
    }

    /// Fails every task still running on this worker.
    pub fn close(&self) {
        self.pending.lock().unwrap().take();
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
        let process = self.process.lock().unwrap().take();
        if let Some(mut process) = process {
            let _ = tokio::time::timeout(Duration::from_secs(2), process.wait()).await;
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

/// The right to become the function's worker, claimed during the handshake.
pub struct WorkerStart(oneshot::Sender<Arc<WorkerLink>>);

/// Holds a place among the admitted invocations until dropped.
pub struct Admission<'a> {
    host: &'a FunctionHost,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.host.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl FunctionHost {
    pub fn new(
        spec: FunctionSpec,
        token: String,
        socket_path: PathBuf,
        launcher: Arc<dyn WorkerLauncher>,
        max_queued: usize,
    ) -> FunctionHost {
        FunctionHost {
            permits: Semaphore::new(spec.max_concurrency),
            max_admitted: spec.max_concurrency + max_queued,
            spec,
            token,
            socket_path,
            launcher,
            admitted: AtomicUsize::new(0),
            next_task_id: AtomicU64::new(1),
            worker: tokio::sync::Mutex::new(None),
            attach: Mutex::new(None),
            stopping: AtomicBool::new(false),
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Takes a place in the function's queue, or fails with `ERR_QUEUE_FULL`.
    pub fn admit(&self) -> Result<Admission<'_>> {
        let before = self.admitted.fetch_add(1, Ordering::AcqRel);
        let admission = Admission { host: self };
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
    pub async fn run(&self, _admission: Admission<'_>, request_id: String, invoker_context: String, payload: Payload) -> Result<SyncResult> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::runtime_unavailable("the runtime is stopping"))?;
        let link = match self.ensure_worker().await {
            Ok(link) => link,
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

    async fn ensure_worker(&self) -> std::result::Result<Arc<WorkerLink>, String> {
        let mut current = self.worker.lock().await;
        if let Some(link) = current.as_ref().filter(|link| !link.is_closed()) {
            return Ok(link.clone());
        }
        current.take();
        let (attach_tx, attached) = oneshot::channel();
        *self.attach.lock().unwrap() = Some(attach_tx);
        let launched = self.launcher.launch(&LaunchSpec {
            function: &self.spec,
            token: &self.token,
            socket_path: &self.socket_path,
        });
        let mut process = match launched {
            Ok(process) => process,
            Err(error) => {
                self.attach.lock().unwrap().take();
                return Err(format!("cannot start the worker of {}: {error}", self.spec.function_id));
            }
        };
        let outcome = tokio::select! {
            link = attached => link.map_err(|_| "the runtime is stopping".to_string()),
            how = process.wait() => {
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
    /// function's token asks to serve. `None` when no worker is starting, so
    /// a stray process holding the token cannot steal invocations.
    pub fn claim_start(&self) -> Option<WorkerStart> {
        self.attach.lock().unwrap().take().map(WorkerStart)
    }

    /// Hands the new worker's connection to the invocation that started it.
    pub fn attach_worker(&self, start: WorkerStart, sender: FrameSender) -> Option<Arc<WorkerLink>> {
        let WorkerStart(waiting) = start;
        let link = Arc::new(WorkerLink {
            sender,
            pending: Mutex::new(Some(HashMap::new())),
            process: Mutex::new(None),
        });
        waiting.send(link.clone()).ok()?;
        Some(link)
    }

    /// From now on, an invocation whose worker goes away failed because the
    /// runtime is stopping, not because the function crashed.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Stops the worker and refuses further invocations.
    pub async fn stop(&self) {
        self.begin_stop();
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
