//! Async invocations: accepted only once durable in the store, run from
//! there, retried with back-off after a failed attempt, and buried as dead
//! letters after the last one. At-least-once: an invocation whose attempt
//! was cut short by a crash or a stop runs again, with the same id.
//!
//! Each function has an [`AsyncQueue`]: the store's sequence numbers of its
//! pending invocations, with when each may run next, and the invocations
//! themselves while they fit in `maxQueuedBytes` (the others are read back
//! from the store when they run, off the runtime's thread). Its dispatcher
//! runs up to `maxConcurrency` of them at once, oldest first.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, Semaphore};

use super::config::RetryPolicy;
use super::host::{FunctionHost, Run};
use super::log;
use super::observe::Kind;
use super::store::{DeadLetter, Invocation, Store};
use crate::error::{Error, ErrorCode, Result};
use crate::proto::frame::{FunctionError, Payload};

/// While the function's in-memory queue is full, a pending invocation waits
/// this long before it asks again; this is not an attempt.
const ADMISSION_PAUSE: Duration = Duration::from_millis(200);

pub(super) struct AsyncQueue {
    state: Mutex<QueueState>,
    /// Woken when an entry is added or becomes runnable.
    wake: Notify,
    /// Pending invocations past which accepts are refused (`maxConcurrency`
    /// plus `maxQueuedInvocations`, as for Sync calls).
    max_pending: usize,
    /// Bytes of invocations kept in memory (`maxQueuedBytes`).
    max_kept_bytes: usize,
}

#[derive(Default)]
struct QueueState {
    entries: BTreeMap<u64, Entry>,
    /// The entries not running whose time has come, by age (sequence number).
    ready: BTreeSet<u64>,
    /// The entries not running, by when they may run next (`not_before_ms`),
    /// until they are found ready: so that finding the next to run never
    /// walks past the running ones.
    later: BTreeSet<(u64, u64)>,
    kept_bytes: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    /// What the store counts for it.
    size: usize,
    not_before_ms: u64,
    running: bool,
    /// The invocation itself, when it fitted in memory.
    kept: Option<Arc<Invocation>>,
}

/// What the queue has for the dispatcher.
enum Next {
    Run { seq: u64, size: usize, kept: Option<Arc<Invocation>> },
    WaitUntil(u64),
    Empty,
}

impl AsyncQueue {
    pub(super) fn new(max_pending: usize, max_kept_bytes: usize) -> AsyncQueue {
        AsyncQueue { state: Mutex::new(QueueState::default()), wake: Notify::new(), max_pending, max_kept_bytes }
    }

    pub(super) fn pending(&self) -> usize {
        self.state.lock().unwrap().entries.len()
    }

    /// Adds an invocation already in the store (found there at start, or replayed).
    pub(super) fn add(&self, seq: u64, size: usize, not_before_ms: u64) {
        self.insert(seq, Entry { size, not_before_ms, running: false, kept: None });
    }

    /// Adds an invocation just accepted, kept in memory if it fits.
    fn add_accepted(&self, seq: u64, invocation: Invocation) {
        let size = invocation.size();
        let not_before_ms = invocation.not_before_ms;
        let mut state = self.state.lock().unwrap();
        let kept = (state.kept_bytes + size <= self.max_kept_bytes).then(|| {
            state.kept_bytes += size;
            Arc::new(invocation)
        });
        drop(state);
        self.insert(seq, Entry { size, not_before_ms, running: false, kept });
    }

    fn insert(&self, seq: u64, entry: Entry) {
        let not_before_ms = entry.not_before_ms;
        let mut state = self.state.lock().unwrap();
        if let Some(replaced) = state.entries.insert(seq, entry) {
            state.forget(seq, replaced.running, replaced.not_before_ms);
        }
        state.later.insert((not_before_ms, seq));
        drop(state);
        self.wake.notify_one();
    }

    /// The oldest entry whose time has come, now marked running; else when
    /// the next one's comes.
    fn next(&self, now_ms: u64) -> Next {
        let mut state = self.state.lock().unwrap();
        while let Some(&(not_before_ms, seq)) = state.later.first() {
            if not_before_ms > now_ms {
                break;
            }
            state.later.pop_first();
            state.ready.insert(seq);
        }
        while let Some(seq) = state.ready.pop_first() {
            if let Some(entry) = state.entries.get_mut(&seq) {
                entry.running = true;
                return Next::Run { seq, size: entry.size, kept: entry.kept.clone() };
            }
        }
        state.later.first().map_or(Next::Empty, |&(not_before_ms, _)| Next::WaitUntil(not_before_ms))
    }

    fn remove(&self, seq: u64) {
        let mut state = self.state.lock().unwrap();
        if let Some(entry) = state.entries.remove(&seq) {
            state.forget(seq, entry.running, entry.not_before_ms);
            if entry.kept.is_some() {
                state.kept_bytes -= entry.size;
            }
        }
    }

    /// A retry's new attempt count, where the invocation is kept.
    fn keep_retry(&self, seq: u64, invocation: Invocation) {
        if let Some(entry) = self.state.lock().unwrap().entries.get_mut(&seq) {
            if entry.kept.is_some() {
                entry.kept = Some(Arc::new(invocation));
            }
        }
    }

    /// The entry runs again at `not_before_ms`.
    fn release(&self, seq: u64, not_before_ms: u64) {
        let mut state = self.state.lock().unwrap();
        let Some(entry) = state.entries.get_mut(&seq) else {
            return;
        };
        let (was_running, was_due) = (entry.running, entry.not_before_ms);
        entry.running = false;
        entry.not_before_ms = not_before_ms;
        state.forget(seq, was_running, was_due);
        state.later.insert((not_before_ms, seq));
        drop(state);
        self.wake.notify_one();
    }
}

impl QueueState {
    /// Takes entry `seq`, as it was (`running`, due at `not_before_ms`), off the waiting sets.
    fn forget(&mut self, seq: u64, running: bool, not_before_ms: u64) {
        if !running {
            self.ready.remove(&seq);
            self.later.remove(&(not_before_ms, seq));
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(super) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Accepts an Async invocation of `host`: durable in the store before this
/// returns its invocation id. `ERR_QUEUE_FULL` past the function's
/// `maxQueuedInvocations` pending or the store's `store.maxBytes`.
pub(super) async fn accept(
    host: &FunctionHost,
    store: &Store,
    default_timeout_secs: u16,
    invoker_context: String,
    payload: Payload,
) -> Result<String> {
    let queue = &host.asynchronous;
    if queue.pending() >= queue.max_pending {
        let error = Error::new(
            ErrorCode::QueueFull,
            format!(
                "function {} already has {} Async invocations pending (maxQueuedInvocations)",
                host.spec.function_id, queue.max_pending
            ),
        );
        host.refused(Kind::Async, &error);
        return Err(error);
    }
    let now = now_ms();
    let invocation = Invocation {
        function_id: host.spec.function_id.clone(),
        invocation_id: super::ids::new_id(),
        invoker_context,
        payload,
        attempt: 1,
        accepted_at_ms: now,
        not_before_ms: now,
        replays: 0,
        default_timeout_secs,
    };
    let seq = store.accept(&invocation).await.inspect_err(|error| host.refused(Kind::Async, error))?;
    let invocation_id = invocation.invocation_id.clone();
    queue.add_accepted(seq, invocation);
    Ok(invocation_id)
}

/// Runs `host`'s pending invocations, oldest first, up to `maxConcurrency`
/// at once, until the runtime stops.
pub(super) async fn dispatch(host: Arc<FunctionHost>, store: Arc<Store>) {
    let slots = Arc::new(Semaphore::new(host.spec.max_concurrency));
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            _ = host.settings.draining.cancelled() => return,
        };
        let Ok(slot) = slot else {
            return;
        };
        let (seq, size, kept) = loop {
            let woken = host.asynchronous.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let now = now_ms();
            let until = match host.asynchronous.next(now) {
                Next::Run { seq, size, kept } => break (seq, size, kept),
                Next::WaitUntil(at) => Some(Duration::from_millis(at.saturating_sub(now))),
                Next::Empty => None,
            };
            let sleep = async {
                match until {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = woken => {}
                _ = sleep => {}
                _ = host.settings.draining.cancelled() => return,
            }
        };
        let (host, store) = (host.clone(), store.clone());
        // Boxed as `server` boxes Sync invocations.
        tokio::spawn(Box::pin(async move {
            attempt(&host, &store, seq, size, kept).await;
            drop(slot);
        }));
    }
}

/// Runs one attempt of the pending invocation `seq`, then finishes it,
/// schedules its retry, or buries it.
async fn attempt(host: &Arc<FunctionHost>, store: &Arc<Store>, seq: u64, size: usize, kept: Option<Arc<Invocation>>) {
    let queue = &host.asynchronous;
    let read = match kept {
        Some(kept) => Ok(Some(kept)),
        // A read may wait for the store's file: not on the runtime's thread.
        None => {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.read(seq))
                .await
                .unwrap_or_else(|_| Err(Error::new(ErrorCode::Internal, "reading the store panicked")))
                .map(|read| read.map(Arc::new))
        }
    };
    let invocation = match read {
        Ok(Some(invocation)) => invocation,
        Ok(None) => return queue.remove(seq),
        Err(error) => {
            crate::warn!("async", "Async invocation {seq} of {} cannot be read: {error}", host.spec.function_id);
            return queue.remove(seq);
        }
    };
    let Ok(admission) = host.admit(&invocation.invoker_context, &invocation.payload) else {
        return queue.release(seq, now_ms() + ADMISSION_PAUSE.as_millis() as u64);
    };
    let run = Run {
        kind: Kind::Async,
        request_id: invocation.invocation_id.clone(),
        attempt: u16::try_from(invocation.attempt).unwrap_or(u16::MAX),
        timeout: host.spec.timeout_for(invocation.default_timeout_secs),
        invoker_context: invocation.invoker_context.clone(),
        payload: invocation.payload.clone(),
    };
    let result = match host.run(admission, run).await {
        Ok(result) => result,
        // The runtime is stopping: the invocation stays pending for the next start.
        Err(_) => return,
    };
    if host.is_stopping() && result.function_error != FunctionError::None {
        // Cut short by the stop, most likely: not held against the invocation.
        return;
    }
    if result.function_error == FunctionError::None {
        store.finish(seq, size);
        return queue.remove(seq);
    }
    let error = String::from_utf8_lossy(result.payload.bytes()).into_owned();
    let now = now_ms();
    match next_attempt_at(&host.spec.retry, &invocation, now) {
        Some(at) => {
            log_failure(host, &invocation, &error, &format!("tried again in {} ms", at - now));
            let retried = Invocation { attempt: invocation.attempt + 1, not_before_ms: at, ..Invocation::clone(&invocation) };
            store.retry(seq, &retried);
            queue.keep_retry(seq, retried);
            queue.release(seq, at);
        }
        None => {
            log_failure(host, &invocation, &error, "now a dead letter");
            let dead = DeadLetter { invocation: Invocation::clone(&invocation), error, dead_at_ms: now };
            store.bury(seq, size, &dead);
            queue.remove(seq);
        }
    }
}

/// When the attempt after a failed one may start, or `None` when there is
/// to be no other: back-off × 4ⁿ⁻¹ (capped, ±20%), within the invocation's
/// attempts and its maximum age.
fn next_attempt_at(policy: &RetryPolicy, invocation: &Invocation, now_ms: u64) -> Option<u64> {
    if invocation.attempt >= policy.max_attempts {
        return None;
    }
    let base = policy.backoff.as_millis() as u64;
    let delay = base.saturating_mul(4u64.saturating_pow(invocation.attempt - 1)).min(policy.max_backoff.as_millis() as u64);
    let jitter = (delay as f64 * 0.2 * (fastrand::f64() * 2.0 - 1.0)) as i64;
    let at = now_ms + delay.saturating_add_signed(jitter);
    (at <= invocation.accepted_at_ms + policy.max_event_age.as_millis() as u64).then_some(at)
}

fn log_failure(host: &FunctionHost, invocation: &Invocation, error: &str, then: &str) {
    crate::warn!(
        "async",
        "Async invocation {} of {} failed (attempt {}); {then}: {}",
        invocation.invocation_id,
        host.spec.function_id,
        invocation.attempt,
        log::error_body(error.as_bytes())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(attempt: u32) -> Invocation {
        Invocation {
            function_id: "f".into(),
            invocation_id: "i".into(),
            invoker_context: String::new(),
            payload: Payload::empty_text(),
            attempt,
            accepted_at_ms: 0,
            not_before_ms: 0,
            replays: 0,
            default_timeout_secs: 0,
        }
    }

    #[test]
    fn failed_attempts_wait_one_then_four_seconds_within_a_fifth_then_stop() {
        let policy = crate::runtime::config::DEFAULT_RETRY;
        let first = next_attempt_at(&policy, &invocation(1), 0).unwrap();
        assert!((800..=1200).contains(&first), "{first}");
        let second = next_attempt_at(&policy, &invocation(2), 0).unwrap();
        assert!((3200..=4800).contains(&second), "{second}");
        assert_eq!(next_attempt_at(&policy, &invocation(3), 0), None);
    }

    fn next_seq(queue: &AsyncQueue, now_ms: u64) -> Option<u64> {
        match queue.next(now_ms) {
            Next::Run { seq, .. } => Some(seq),
            _ => None,
        }
    }

    #[test]
    fn the_queue_runs_the_oldest_ready_entry_and_skips_running_removed_and_later_ones() {
        let queue = AsyncQueue::new(100, 1 << 20);
        for seq in [5, 3, 9, 7] {
            queue.add(seq, 10, 100);
        }
        queue.add(1, 10, 500);
        assert!(matches!(queue.next(50), Next::WaitUntil(100)));
        assert_eq!(next_seq(&queue, 100), Some(3));
        assert_eq!(next_seq(&queue, 100), Some(5));
        queue.remove(7);
        assert_eq!(next_seq(&queue, 100), Some(9));
        // Everything ready is running; the entry of seq 1 comes at 500.
        assert!(matches!(queue.next(100), Next::WaitUntil(500)));
        queue.release(3, 300);
        assert!(matches!(queue.next(200), Next::WaitUntil(300)));
        assert_eq!(next_seq(&queue, 600), Some(1));
        assert_eq!(next_seq(&queue, 600), Some(3));
        assert!(matches!(queue.next(600), Next::Empty));
        for seq in [3, 5, 9, 1] {
            queue.remove(seq);
        }
        assert_eq!(queue.pending(), 0);
        let state = queue.state.lock().unwrap();
        assert!(state.ready.is_empty() && state.later.is_empty());
    }

    #[test]
    fn an_invocation_past_its_maximum_age_is_not_tried_again() {
        let policy = RetryPolicy { max_event_age: Duration::from_secs(10), ..crate::runtime::config::DEFAULT_RETRY };
        assert!(next_attempt_at(&policy, &invocation(1), 5_000).is_some());
        assert_eq!(next_attempt_at(&policy, &invocation(1), 9_500), None);
    }
}
