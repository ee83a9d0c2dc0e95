//! One hosted function: who may run it, how many at once, and for how long.
//! Up to `maxConcurrency` invocations run at once and `maxQueuedInvocations`
//! more wait, while their payloads fit in `maxQueuedBytes` and the runtime's
//! own budget (`maxTotalQueued*`); an invocation that runs past `timeoutMs` ends as an
//! `Unhandled` error and its worker is replaced, once the worker's other
//! invocations have finished (each within its own timeout). The worker process itself
//! is the supervisor's business (`supervisor.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use super::asynchronous::AsyncQueue;
use super::budget::{Budget, BudgetStats};
use super::config::FunctionSpec;
use super::launcher::{WorkerLauncher, STOP_GRACE};
use super::observe::{error_type_of, FunctionMetrics, Kind, Outcome, RecentError, RecentErrors};
use super::supervisor::{WorkerConnection, WorkerLink};
use crate::error::{Error, ErrorCode, Result};
use crate::proto::frame::{Frame, FunctionError, Payload};
use crate::proto::message::SyncResult;

/// What every host of one runtime shares.
pub(super) struct HostSettings {
    pub launcher: Arc<dyn WorkerLauncher>,
    /// Given to workers as `THING_FUNCTION_ID`.
    pub thing_function_id: Option<String>,
    /// What every function's admitted invocations may hold together.
    pub total_queue: Budget,
    pub max_line_bytes: usize,
    /// Where a new worker's connection goes to be served.
    pub worker_connections: tokio::sync::mpsc::UnboundedSender<WorkerConnection>,
    /// Cancelled when the runtime starts to stop: no new call is taken.
    pub draining: CancellationToken,
    /// Every function's failed invocations, newest first.
    pub recent_errors: RecentErrors,
}

pub(super) struct FunctionHost {
    pub spec: FunctionSpec,
    /// Its place in the runtime's function list: who its worker's connection speaks for.
    pub(super) index: usize,
    /// Its Async invocations pending in the store.
    pub(super) asynchronous: AsyncQueue,
    pub(super) settings: Arc<HostSettings>,
    pub(super) permits: Semaphore,
    /// Invocations admitted and not yet finished: running plus queued.
    queue: Budget,
    /// The connected worker, if any; locked while one is being launched.
    pub(super) worker: tokio::sync::Mutex<Option<Arc<WorkerLink>>>,
    pub(super) last_activity: Mutex<Instant>,
    pub(super) stopping: AtomicBool,
    pub(super) stopped: CancellationToken,
    pub(super) metrics: Arc<FunctionMetrics>,
    /// The last worker started, for the stats: read without waiting for
    /// `worker`, which a launch holds for seconds.
    pub(super) observed_worker: Mutex<std::sync::Weak<WorkerLink>>,
}

/// One run of the function: what its worker's handler gets.
pub(super) struct Run {
    pub kind: Kind,
    /// The invocation's id, the same on every attempt.
    pub request_id: String,
    pub attempt: u16,
    /// How long the handler may take: the function's `timeoutMs`, or the
    /// caller's API's default when the function configures none.
    pub timeout: Duration,
    pub invoker_context: String,
    pub payload: Payload,
}

/// Holds a place among the admitted invocations until dropped.
pub(super) struct Admission {
    host: Arc<FunctionHost>,
    bytes: usize,
    /// Where its queue wait starts.
    admitted_at: Instant,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.host.queue.give_back(self.bytes);
        self.host.settings.total_queue.give_back(self.bytes);
    }
}

/// One function's queue, as `edgefc stats` shows it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct QueueStats {
    pub(super) function: String,
    pub(super) running: usize,
    pub(super) max_concurrency: usize,
    /// Running and waiting.
    pub(super) admitted: BudgetStats,
    /// Async invocations in the store, not yet ended.
    pub(super) async_pending: usize,
}

impl FunctionHost {
    pub(super) fn new(spec: FunctionSpec, index: usize, settings: Arc<HostSettings>) -> FunctionHost {
        FunctionHost {
            permits: Semaphore::new(spec.max_concurrency),
            queue: Budget::new(spec.max_concurrency.saturating_add(spec.max_queued), spec.max_queued_bytes),
            asynchronous: AsyncQueue::new(spec.max_concurrency.saturating_add(spec.max_queued), spec.max_queued_bytes),
            spec,
            index,
            settings,
            worker: tokio::sync::Mutex::new(None),
            last_activity: Mutex::new(Instant::now()),
            stopping: AtomicBool::new(false),
            stopped: CancellationToken::new(),
            metrics: Arc::default(),
            observed_worker: Mutex::new(std::sync::Weak::new()),
        }
    }

    /// Takes a place for an invocation in the function's queue and the
    /// runtime's, counting what it holds (its payload and invoker context),
    /// or fails with `ERR_QUEUE_FULL`.
    pub(super) fn admit(self: &Arc<Self>, invoker_context: &str, payload: &Payload) -> Result<Admission> {
        let bytes = payload.len() + invoker_context.len();
        if !self.queue.try_take_or_alone(bytes) {
            return Err(Error::new(
                ErrorCode::QueueFull,
                format!(
                    "the queue of function {} is full (at most {} invocations and {} payload bytes running or waiting)",
                    self.spec.function_id,
                    self.queue.max_count(),
                    self.queue.max_bytes()
                ),
            ));
        }
        let total = &self.settings.total_queue;
        if !total.try_take_or_alone(bytes) {
            self.queue.give_back(bytes);
            return Err(Error::new(
                ErrorCode::QueueFull,
                format!(
                    "the runtime's queue is full (at most {} invocations and {} payload bytes running or waiting, across functions)",
                    total.max_count(),
                    total.max_bytes()
                ),
            ));
        }
        Ok(Admission { host: self.clone(), bytes, admitted_at: Instant::now() })
    }

    /// Counts an invocation that was not taken (`error` says why: a full queue or store).
    pub(super) fn refused(&self, kind: Kind, error: &Error) {
        self.count_ended(kind, Outcome::Refused, || Some(error.code.as_str().to_string()), String::new(), 0);
    }

    /// Counts how an invocation attempt ended and, when it failed, keeps it
    /// among the recent errors (`error_type` is only asked for then).
    fn count_ended(
        &self,
        kind: Kind,
        outcome: Outcome,
        error_type: impl FnOnce() -> Option<String>,
        invocation_id: String,
        attempt: u16,
    ) {
        self.metrics.count(kind, outcome);
        if outcome.is_error() {
            self.settings.recent_errors.push(RecentError {
                at_ms: super::asynchronous::now_ms(),
                function: self.spec.function_id.clone(),
                kind: kind.label(),
                outcome: outcome.label(),
                error_type: error_type(),
                invocation_id,
                attempt,
            });
        }
    }

    /// Resolves once no invocation is admitted (running or waiting).
    pub(super) async fn settled(&self) {
        self.queue.empty().await;
    }

    pub(super) fn queue_stats(&self) -> QueueStats {
        QueueStats {
            function: self.spec.function_id.clone(),
            running: self.spec.max_concurrency - self.permits.available_permits(),
            max_concurrency: self.spec.max_concurrency,
            admitted: self.queue.stats(),
            async_pending: self.asynchronous.pending(),
        }
    }

    /// Runs one invocation to its end. Errors are only for invocations that
    /// never reached the function (the runtime is stopping); whatever
    /// happens to the function itself is an `Unhandled` result.
    pub(super) async fn run(&self, admission: Admission, run: Run) -> Result<SyncResult> {
        let (kind, request_id, attempt) = (run.kind, run.request_id.clone(), run.attempt);
        let ended = match self.permits.acquire().await {
            Ok(_permit) => self.run_admitted(admission.admitted_at, run).await,
            Err(_) => Err(Error::runtime_unavailable("the runtime is stopping")),
        };
        let outcome = match &ended {
            Ok((_, outcome)) => *outcome,
            Err(_) => Outcome::Stopped,
        };
        let error_type = || match &ended {
            Ok((result, _)) => error_type_of(result.payload.bytes()),
            Err(error) => Some(error.code.as_str().to_string()),
        };
        self.count_ended(kind, outcome, error_type, request_id, attempt);
        ended.map(|(result, _)| result)
    }

    async fn run_admitted(
        &self,
        admitted_at: Instant,
        Run { request_id, attempt, timeout, invoker_context, payload, .. }: Run,
    ) -> Result<(SyncResult, Outcome)> {
        let link = match self.ensure_worker().await {
            Ok(link) => link,
            Err(_) if self.is_stopping() => {
                return Err(Error::runtime_unavailable("the runtime stopped before the invocation started"))
            }
            Err(message) => return Ok((SyncResult::unhandled("WorkerStartError", &message), Outcome::UnhandledError)),
        };
        let (done_tx, done) = oneshot::channel();
        let Some(task_id) = link.pending.register(done_tx) else {
            return Ok((worker_lost(), Outcome::WorkerLost));
        };
        // The clock is read twice per run, for the metrics and the idle
        // timeout alike: on this path each read is a measurable cost.
        let sent_at = Instant::now();
        self.touch_at(sent_at);
        self.metrics.queue_wait.observe(sent_at - admitted_at);
        link.sender.send(Frame::Task { id: task_id, attempt, request_id, invoker_context, payload });
        let done = tokio::time::timeout(timeout, done).await;
        let finished_at = Instant::now();
        self.touch_at(finished_at);
        self.metrics.run_time.observe(finished_at - sent_at);
        match done {
            Ok(Ok(result)) => {
                let outcome = match result.function_error {
                    FunctionError::None => Outcome::Ok,
                    FunctionError::Handled => Outcome::HandledError,
                    FunctionError::Unhandled => Outcome::UnhandledError,
                };
                Ok((result, outcome))
            }
            Ok(Err(_)) if self.is_stopping() => {
                Err(Error::runtime_unavailable("the runtime stopped before the invocation finished"))
            }
            Ok(Err(_)) => {
                // Whether the kernel killed it for its memory is known once it has ended.
                link.exited(STOP_GRACE).await;
                if !link.exceeded_memory() {
                    return Ok((worker_lost(), Outcome::WorkerLost));
                }
                let message = format!(
                    "function {} used more than its memorySize ({} MB); its worker was stopped",
                    self.spec.function_id,
                    self.spec.memory_limit_bytes >> 20
                );
                Ok((SyncResult::unhandled("MemoryLimitExceeded", &message), Outcome::MemoryLimit))
            }
            Err(_) => {
                link.forget(task_id);
                self.retire(link);
                let message = format!("function {} timed out after {} ms", self.spec.function_id, timeout.as_millis());
                Ok((SyncResult::unhandled("TimeoutError", &message), Outcome::Timeout))
            }
        }
    }

    /// After a timeout: the handler may be stuck in a loop, and only a new
    /// process is sure to be free of it. The worker takes no new tasks (the
    /// next one starts a new worker); the tasks it runs still finish, each
    /// within its own timeout, and then it is stopped.
    fn retire(&self, link: Arc<WorkerLink>) {
        if !link.begin_retiring() {
            return;
        }
        let grace = self.spec.timeout;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(grace, link.settled()).await;
            link.stop().await;
        });
    }

    pub(super) fn touch(&self) {
        self.touch_at(Instant::now());
    }

    fn touch_at(&self, at: Instant) {
        *self.last_activity.lock().unwrap() = at;
    }

    pub(super) fn is_idle(&self) -> bool {
        self.permits.available_permits() == self.spec.max_concurrency
    }

    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// From now on, an invocation whose worker goes away failed because the
    /// runtime is stopping, not because the function crashed.
    pub(super) fn begin_stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Stops the worker and refuses further invocations.
    pub(super) async fn stop(&self) {
        self.begin_stop();
        self.stopped.cancel();
        self.permits.close();
        let link = self.worker.lock().await.take();
        if let Some(link) = link {
            link.stop().await;
        }
    }
}

fn worker_lost() -> SyncResult {
    SyncResult::unhandled("WorkerExited", "the function's worker process exited before the invocation finished")
}
