//! How many connections the runtime holds and what they may cost it: a
//! connection that has not said Hello yet takes one of a few places (the
//! oldest is closed when a new one needs a place, so idle or hostile peers
//! cannot keep legitimate clients out), an authenticated one takes one of
//! `connections.max`, and every connection's unread output is bounded.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::config::ConnectionLimits;
use crate::transport::OutputBound;

pub(super) struct Connections {
    pub(super) limits: ConnectionLimits,
    /// Connections waiting for their Hello, oldest first.
    greeting: Mutex<VecDeque<(u64, CancellationToken)>>,
    next_id: AtomicU64,
    authenticated: AtomicUsize,
    /// Of those, workers' connections.
    workers: AtomicUsize,
    /// Unwritten output of every connection together.
    output_bytes: Arc<AtomicUsize>,
    pub(super) counters: ConnectionCounters,
}

/// Refusals and closings, each by its reason.
#[derive(Default)]
pub(super) struct ConnectionCounters {
    pub(super) accept_errors: AtomicU64,
    pub(super) evicted_unauthenticated: AtomicU64,
    pub(super) hello_timeouts: AtomicU64,
    pub(super) hello_refused: AtomicU64,
    pub(super) refused_too_many: AtomicU64,
    pub(super) closed_slow_reader: AtomicU64,
    pub(super) refused_in_flight: AtomicU64,
    pub(super) read_pauses: AtomicU64,
}

/// The JSON of `connections` in `edgefc stats`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ConnectionStats {
    pub(super) open: usize,
    /// Of the open connections, workers' (the others are clients: callers, the CLI).
    pub(super) workers: usize,
    pub(super) max: usize,
    pub(super) unauthenticated: usize,
    pub(super) max_unauthenticated: usize,
    pub(super) output_bytes: usize,
    pub(super) max_output_bytes_each: usize,
    pub(super) max_total_output_bytes: usize,
    pub(super) accept_errors: u64,
    pub(super) evicted_unauthenticated: u64,
    pub(super) hello_timeouts: u64,
    pub(super) hello_refused: u64,
    pub(super) refused_too_many: u64,
    pub(super) closed_slow_reader: u64,
    pub(super) refused_in_flight: u64,
    pub(super) read_pauses: u64,
}

/// A connection's place among those waiting for their Hello; given back
/// when dropped. `evicted` fires when a newer connection took the place.
pub(super) struct GreetingPlace {
    connections: Arc<Connections>,
    pub(super) id: u64,
    pub(super) evicted: CancellationToken,
}

impl Drop for GreetingPlace {
    fn drop(&mut self) {
        self.connections.greeting.lock().unwrap().retain(|(id, _)| *id != self.id);
    }
}

/// Who is on an authenticated connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum PeerKind {
    /// A caller, the CLI, a script: it gave a token.
    Client,
    /// A function's worker, on the connection the runtime made for it.
    Worker,
}

/// A place among the authenticated connections, given back when dropped.
pub(super) struct OpenPlace {
    connections: Arc<Connections>,
    kind: PeerKind,
}

impl Drop for OpenPlace {
    fn drop(&mut self) {
        self.connections.authenticated.fetch_sub(1, Ordering::AcqRel);
        if self.kind == PeerKind::Worker {
            self.connections.workers.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Connections {
    pub(super) fn new(limits: ConnectionLimits) -> Arc<Connections> {
        Arc::new(Connections {
            limits,
            greeting: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
            authenticated: AtomicUsize::new(0),
            workers: AtomicUsize::new(0),
            output_bytes: Arc::new(AtomicUsize::new(0)),
            counters: ConnectionCounters::default(),
        })
    }

    /// A place for a connection just accepted; when every place is taken,
    /// the connection that has waited longest for its Hello is closed.
    pub(super) fn greet(self: &Arc<Self>) -> GreetingPlace {
        let id = self.next_id();
        let evicted = CancellationToken::new();
        let mut greeting = self.greeting.lock().unwrap();
        while greeting.len() >= self.limits.max_unauthenticated {
            if let Some((_, oldest)) = greeting.pop_front() {
                oldest.cancel();
                count(&self.counters.evicted_unauthenticated);
            }
        }
        greeting.push_back((id, evicted.clone()));
        GreetingPlace { connections: self.clone(), id, evicted }
    }

    /// An id for a connection that needs no greeting place (a worker's).
    pub(super) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A place among the authenticated connections, or `None` when all
    /// `connections.max` are taken.
    pub(super) fn open(self: &Arc<Self>, kind: PeerKind) -> Option<OpenPlace> {
        let before = self.authenticated.fetch_add(1, Ordering::AcqRel);
        if kind == PeerKind::Worker {
            self.workers.fetch_add(1, Ordering::AcqRel);
        }
        let place = OpenPlace { connections: self.clone(), kind };
        if before >= self.limits.max {
            count(&self.counters.refused_too_many);
            return None;
        }
        Some(place)
    }

    /// What a peer may leave unread before its requests wait and, past
    /// `closeOutputBytes`, before it is disconnected.
    pub(super) fn output_bound(&self) -> OutputBound {
        OutputBound {
            soft: self.limits.max_output_bytes,
            hard: self.limits.close_output_bytes,
            total: self.limits.max_total_output_bytes,
            gauge: Some(self.output_bytes.clone()),
        }
    }

    pub(super) fn stats(&self) -> ConnectionStats {
        let counters = &self.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ConnectionStats {
            open: self.authenticated.load(Ordering::Relaxed).min(self.limits.max),
            workers: self.workers.load(Ordering::Relaxed),
            max: self.limits.max,
            unauthenticated: self.greeting.lock().unwrap().len(),
            max_unauthenticated: self.limits.max_unauthenticated,
            output_bytes: self.output_bytes.load(Ordering::Relaxed),
            max_output_bytes_each: self.limits.max_output_bytes,
            max_total_output_bytes: self.limits.max_total_output_bytes,
            accept_errors: load(&counters.accept_errors),
            evicted_unauthenticated: load(&counters.evicted_unauthenticated),
            hello_timeouts: load(&counters.hello_timeouts),
            hello_refused: load(&counters.hello_refused),
            refused_too_many: load(&counters.refused_too_many),
            closed_slow_reader: load(&counters.closed_slow_reader),
            refused_in_flight: load(&counters.refused_in_flight),
            read_pauses: load(&counters.read_pauses),
        }
    }
}

/// File descriptors kept free for what is not a connection: the state
/// files, each worker's pipes, the logger.
const RESERVED_FDS: usize = 64;
const FDS_PER_FUNCTION: usize = 4;

/// Raises the soft limit on open files to the hard one, and lowers
/// `connections.max` when the limit could not hold that many connections
/// besides the unauthenticated ones and the reserve.
pub(super) fn fit_file_limit(limits: &mut ConnectionLimits, functions: usize) {
    let available = raise_file_limit();
    let reserve = RESERVED_FDS + FDS_PER_FUNCTION * functions + limits.max_unauthenticated;
    let fitting = available.saturating_sub(reserve).max(1);
    if limits.max > fitting {
        crate::warn!(
            "server",
            "connections.max lowered from {} to {fitting}: the process may open {available} files",
            limits.max
        );
        limits.max = fitting;
    }
}

/// The soft limit after raising it as far as allowed.
fn raise_file_limit() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return usize::MAX;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}
