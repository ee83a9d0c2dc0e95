//! What each function's invocations and workers did, recorded on the
//! invocation path with relaxed atomics only: counts by type and outcome,
//! queue wait and run time as histograms, worker starts and exits.
//!
//! The histogram is ours rather than `prometheus_client`'s because that one
//! takes a write lock per observation and does not let its buckets be read
//! back, which `edgefc stats` and the status page's last-minute quantiles
//! need; it is encoded with `prometheus_client`'s encoder all the same.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// How an invocation reached its function: the `type` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::runtime) enum Kind {
    Sync,
    Async,
    /// A message delivered along a QoS 0 route.
    Message,
}

impl Kind {
    pub(in crate::runtime) const ALL: [Kind; 3] = [Kind::Sync, Kind::Async, Kind::Message];

    pub(in crate::runtime) fn label(self) -> &'static str {
        match self {
            Kind::Sync => "sync",
            Kind::Async => "async",
            Kind::Message => "message",
        }
    }
}

/// How one attempt of an invocation ended: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::runtime) enum Outcome {
    Ok,
    /// The handler answered with an error.
    HandledError,
    /// The handler threw, or its worker could not start.
    UnhandledError,
    Timeout,
    /// Its worker used more than the function's `memorySize` and was killed.
    MemoryLimit,
    /// Its worker ended before answering.
    WorkerLost,
    /// Not taken: the function's or the runtime's queue, or the store, was
    /// full. (Calls that arrive while the runtime stops are refused before
    /// a function is chosen, with `ERR_SHUTTING_DOWN`, and not counted.)
    Refused,
    /// Cut short because the runtime stopped.
    Stopped,
}

impl Outcome {
    pub(in crate::runtime) const ALL: [Outcome; 8] = [
        Outcome::Ok,
        Outcome::HandledError,
        Outcome::UnhandledError,
        Outcome::Timeout,
        Outcome::MemoryLimit,
        Outcome::WorkerLost,
        Outcome::Refused,
        Outcome::Stopped,
    ];

    pub(in crate::runtime) fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::HandledError => "handled_error",
            Outcome::UnhandledError => "unhandled_error",
            Outcome::Timeout => "timeout",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::WorkerLost => "worker_lost",
            Outcome::Refused => "refused",
            Outcome::Stopped => "stopped",
        }
    }

    pub(in crate::runtime) fn is_error(self) -> bool {
        !matches!(self, Outcome::Ok)
    }
}

/// Why a worker process ended: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::runtime) enum ExitReason {
    /// Stopped by the runtime: idle, or the runtime stopping.
    Stopped,
    /// Replaced after one of its invocations timed out.
    Timeout,
    MemoryLimit,
    /// Ended by itself (a crash, `process.exit`).
    Crashed,
}

impl ExitReason {
    pub(in crate::runtime) const ALL: [ExitReason; 4] =
        [ExitReason::Stopped, ExitReason::Timeout, ExitReason::MemoryLimit, ExitReason::Crashed];

    pub(in crate::runtime) fn label(self) -> &'static str {
        match self {
            ExitReason::Stopped => "stopped",
            ExitReason::Timeout => "timeout",
            ExitReason::MemoryLimit => "memory_limit",
            ExitReason::Crashed => "crashed",
        }
    }
}

/// Upper bounds of the latency buckets, in seconds (`+Inf` follows): from
/// 100 µs, about what the fastest round trip takes here, to 5 minutes, the
/// longest a Sync call may wait.
pub(in crate::runtime) const LATENCY_BUCKETS: [f64; 19] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

const BUCKETS: usize = LATENCY_BUCKETS.len() + 1;

/// The bucket bounds in nanoseconds, for a comparison without floats.
const BOUNDS_NANOS: [u64; LATENCY_BUCKETS.len()] = {
    let mut nanos = [0u64; LATENCY_BUCKETS.len()];
    let mut index = 0;
    while index < nanos.len() {
        nanos[index] = (LATENCY_BUCKETS[index] * 1e9) as u64;
        index += 1;
    }
    nanos
};

/// A latency histogram: a count per bucket (not cumulative) and the sum.
#[derive(Default)]
pub(in crate::runtime) struct Latency {
    buckets: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

/// A latency histogram read at one moment: per-bucket counts (the last is
/// `+Inf`), not cumulative.
#[derive(Debug, Clone, Default, PartialEq)]
pub(in crate::runtime) struct LatencySnapshot {
    pub(in crate::runtime) buckets: [u64; BUCKETS],
    pub(in crate::runtime) sum_nanos: u64,
}

impl Latency {
    pub(in crate::runtime) fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS.iter().position(|&bound| nanos <= bound).unwrap_or(BUCKETS - 1);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(in crate::runtime) fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            buckets: std::array::from_fn(|bucket| self.buckets[bucket].load(Ordering::Relaxed)),
            sum_nanos: self.sum_nanos.load(Ordering::Relaxed),
        }
    }
}

impl LatencySnapshot {
    pub(in crate::runtime) fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// What was observed since `earlier`.
    pub(in crate::runtime) fn since(&self, earlier: &LatencySnapshot) -> LatencySnapshot {
        LatencySnapshot {
            buckets: std::array::from_fn(|bucket| self.buckets[bucket].saturating_sub(earlier.buckets[bucket])),
            sum_nanos: self.sum_nanos.saturating_sub(earlier.sum_nanos),
        }
    }

    /// `(upper bound in seconds, count)` per bucket, not cumulative, the
    /// last bound `f64::MAX` for `+Inf`: what `prometheus_client` encodes.
    pub(in crate::runtime) fn by_bound(&self) -> Vec<(f64, u64)> {
        LATENCY_BUCKETS.iter().copied().chain(std::iter::once(f64::MAX)).zip(self.buckets).collect()
    }

    /// The `q` quantile (0 to 1) in seconds, interpolated within its bucket
    /// as Prometheus' `histogram_quantile` does; `None` with no observation.
    /// In the `+Inf` bucket it is the last finite bound.
    pub(in crate::runtime) fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let mut below = 0u64;
        for (bucket, &in_bucket) in self.buckets.iter().enumerate() {
            if in_bucket == 0 || ((below + in_bucket) as f64) < rank {
                below += in_bucket;
                continue;
            }
            let Some(&upper) = LATENCY_BUCKETS.get(bucket) else {
                return LATENCY_BUCKETS.last().copied();
            };
            let lower = if bucket == 0 { 0.0 } else { LATENCY_BUCKETS[bucket - 1] };
            let within = (rank - below as f64) / in_bucket as f64;
            return Some(lower + (upper - lower) * within);
        }
        LATENCY_BUCKETS.last().copied()
    }
}

/// One function's counters and histograms.
#[derive(Default)]
pub(in crate::runtime) struct FunctionMetrics {
    /// Indexed by `[kind][outcome]`.
    invocations: [[AtomicU64; Outcome::ALL.len()]; Kind::ALL.len()],
    /// From admission to the start of the run (a permit and a worker).
    pub(in crate::runtime) queue_wait: Latency,
    /// From the task sent to its worker to the result.
    pub(in crate::runtime) run_time: Latency,
    worker_starts: AtomicU64,
    worker_start_failures: AtomicU64,
    worker_exits: [AtomicU64; ExitReason::ALL.len()],
}

/// A function's counters, as `edgefc stats` shows them.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(in crate::runtime) struct FunctionCounts {
    /// `{"sync": {"ok": 3, …}, "async": {…}, "message": {…}}`, outcomes with a zero count left out.
    pub(in crate::runtime) invocations: std::collections::BTreeMap<&'static str, std::collections::BTreeMap<&'static str, u64>>,
    pub(in crate::runtime) worker_starts: u64,
    pub(in crate::runtime) worker_start_failures: u64,
    /// By reason, zero counts left out.
    pub(in crate::runtime) worker_exits: std::collections::BTreeMap<&'static str, u64>,
}

impl FunctionMetrics {
    pub(in crate::runtime) fn count(&self, kind: Kind, outcome: Outcome) {
        self.invocations[kind as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(in crate::runtime) fn invocations(&self, kind: Kind, outcome: Outcome) -> u64 {
        self.invocations[kind as usize][outcome as usize].load(Ordering::Relaxed)
    }

    pub(in crate::runtime) fn worker_started(&self) {
        self.worker_starts.fetch_add(1, Ordering::Relaxed);
    }

    pub(in crate::runtime) fn worker_start_failed(&self) {
        self.worker_start_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(in crate::runtime) fn worker_exited(&self, reason: ExitReason) {
        self.worker_exits[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(in crate::runtime) fn counts(&self) -> FunctionCounts {
        let mut invocations = std::collections::BTreeMap::new();
        for kind in Kind::ALL {
            let outcomes: std::collections::BTreeMap<_, _> = Outcome::ALL
                .into_iter()
                .map(|outcome| (outcome.label(), self.invocations(kind, outcome)))
                .filter(|&(_, count)| count > 0)
                .collect();
            invocations.insert(kind.label(), outcomes);
        }
        FunctionCounts {
            invocations,
            worker_starts: self.worker_starts.load(Ordering::Relaxed),
            worker_start_failures: self.worker_start_failures.load(Ordering::Relaxed),
            worker_exits: ExitReason::ALL
                .into_iter()
                .map(|reason| (reason.label(), self.worker_exits[reason as usize].load(Ordering::Relaxed)))
                .filter(|&(_, count)| count > 0)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_lands_in_the_first_bucket_that_holds_it() {
        let latency = Latency::default();
        latency.observe(Duration::from_micros(100));
        latency.observe(Duration::from_micros(101));
        latency.observe(Duration::from_secs(600));
        let snapshot = latency.snapshot();
        assert_eq!(snapshot.buckets[0], 1);
        assert_eq!(snapshot.buckets[1], 1);
        assert_eq!(snapshot.buckets[BUCKETS - 1], 1);
        assert_eq!(snapshot.count(), 3);
        let by_bound = snapshot.by_bound();
        assert_eq!(by_bound[1], (0.00025, 1));
        assert_eq!(by_bound.last(), Some(&(f64::MAX, 1)));
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let latency = Latency::default();
        for _ in 0..100 {
            latency.observe(Duration::from_micros(700)); // (0.5 ms, 1 ms]
        }
        let snapshot = latency.snapshot();
        let median = snapshot.quantile(0.5).unwrap();
        assert!((median - 0.00075).abs() < 1e-9, "{median}");
        assert!((snapshot.quantile(0.99).unwrap() - 0.000995).abs() < 1e-9);
        assert_eq!(LatencySnapshot::default().quantile(0.5), None);
    }

    #[test]
    fn since_subtracts_an_earlier_snapshot() {
        let latency = Latency::default();
        latency.observe(Duration::from_millis(2));
        let earlier = latency.snapshot();
        latency.observe(Duration::from_millis(20));
        let recent = latency.snapshot().since(&earlier);
        assert_eq!(recent.count(), 1);
        assert_eq!(recent.sum_nanos, 20_000_000);
    }
}
