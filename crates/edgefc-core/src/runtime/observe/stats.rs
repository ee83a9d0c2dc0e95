//! The runtime's numbers at one moment: the JSON of `edgefc stats`,
//! `runtime.stats()` and the status page, and what `/metrics` encodes.
//! One snapshot feeds all of them, so they never disagree.

use serde::{Serialize, Serializer};

use super::metrics::{FunctionCounts, LatencySnapshot, LATENCY_BUCKETS};
use super::recent::{FunctionSample, LastMinute, RecentError};
use crate::runtime::budget::BudgetStats;
use crate::runtime::bus::BusStats;
use crate::runtime::connections::ConnectionStats;
use crate::runtime::host::QueueStats;
use crate::runtime::mqtt::{LinkStats, RemoteStats};
use crate::runtime::router::{Route, RouteSource, RouteTarget};
use crate::runtime::{launcher, log, Shared};

/// The bus's counters at the top, then each bound's use and what it
/// refused or dropped, then each function's invocations and workers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(in crate::runtime) struct Stats {
    pub(in crate::runtime) version: &'static str,
    pub(in crate::runtime) gateway_id: String,
    pub(in crate::runtime) uptime_seconds: f64,
    #[serde(flatten)]
    pub(in crate::runtime) bus: BusStats,
    pub(in crate::runtime) connections: ConnectionStats,
    pub(in crate::runtime) queues: QueuesStats,
    pub(in crate::runtime) store: StoreStats,
    pub(in crate::runtime) log: LogStats,
    /// Each broker link of the MQTT bridge.
    pub(in crate::runtime) mqtt: Vec<LinkStats>,
    /// Invocations to and from other gateways.
    pub(in crate::runtime) remote: RemoteStats,
    pub(in crate::runtime) functions: Vec<FunctionStats>,
    /// Upper bounds, in seconds, of the latency histograms' buckets (`+Inf` follows).
    pub(in crate::runtime) latency_buckets: &'static [f64],
    /// The most recent failed invocations, newest first, without payloads or messages.
    pub(in crate::runtime) recent_errors: Vec<RecentError>,
    /// The routes of `edgefc.json`.
    pub(in crate::runtime) routes: Vec<RouteStats>,
}

/// A route: messages on `filter` from `source` (a function, `any` for any
/// local publisher, or `mqtt:<broker>`) go to `target`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(in crate::runtime) struct RouteStats {
    pub(in crate::runtime) source: String,
    pub(in crate::runtime) filter: String,
    pub(in crate::runtime) target: String,
    pub(in crate::runtime) qos: u8,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(in crate::runtime) struct StoreStats {
    /// Bytes of pending Async invocations and dead letters (`store.maxBytes`).
    pub(in crate::runtime) held_bytes: usize,
    pub(in crate::runtime) max_bytes: usize,
    pub(in crate::runtime) dead_letters: usize,
    pub(in crate::runtime) max_dead_letters: usize,
    /// Dead letters dropped, oldest first, because the dead letters were full.
    pub(in crate::runtime) dead_letters_evicted: u64,
    /// Transactions committed: each made any number of accepts durable at once.
    pub(in crate::runtime) commits: u64,
    /// Time those commits took, fsync included.
    pub(in crate::runtime) commit_micros: u64,
    /// Records that could not be read back, and were left out.
    pub(in crate::runtime) damaged_records: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(in crate::runtime) struct QueuesStats {
    /// Every function's queue together (`maxTotalQueued*`).
    pub(in crate::runtime) total: BudgetStats,
    pub(in crate::runtime) functions: Vec<QueueStats>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(in crate::runtime) struct LogStats {
    /// Lines (or pieces of lines) functions printed, as read by the runtime.
    pub(in crate::runtime) function_lines: u64,
    /// Lines the runtime could not write because its stdout or stderr stalled.
    pub(in crate::runtime) dropped_lines: u64,
    /// Function output lines longer than `log.maxLineBytes`, split.
    pub(in crate::runtime) split_lines: u64,
}

/// One function: what its invocations did and the worker that runs them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(in crate::runtime) struct FunctionStats {
    pub(in crate::runtime) function: String,
    pub(in crate::runtime) service_name: String,
    pub(in crate::runtime) function_name: String,
    pub(in crate::runtime) run_mode: crate::runtime::config::RunMode,
    #[serde(flatten)]
    pub(in crate::runtime) counts: FunctionCounts,
    /// From admission to the task sent to a worker.
    pub(in crate::runtime) queue_wait: LatencySnapshot,
    /// From the task sent to its result (or timeout).
    pub(in crate::runtime) run_time: LatencySnapshot,
    pub(in crate::runtime) workers: Vec<WorkerStats>,
    pub(in crate::runtime) last_minute: LastMinute,
}

/// A worker process of a function.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(in crate::runtime) struct WorkerStats {
    pub(in crate::runtime) pid: Option<u32>,
    /// Resident memory; null once the process is gone.
    pub(in crate::runtime) rss_bytes: Option<u64>,
    pub(in crate::runtime) uptime_seconds: f64,
    /// Tasks sent to it and not yet done.
    pub(in crate::runtime) in_flight: usize,
    /// Takes no new tasks: one of its invocations timed out.
    pub(in crate::runtime) retiring: bool,
}

/// `{"count": …, "sumSeconds": …, "buckets": [per-bucket counts, not cumulative, +Inf last]}`.
impl Serialize for LatencySnapshot {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut histogram = serializer.serialize_struct("Histogram", 3)?;
        histogram.serialize_field("count", &self.count())?;
        histogram.serialize_field("sumSeconds", &(self.sum_nanos as f64 / 1e9))?;
        histogram.serialize_field("buckets", &self.buckets)?;
        histogram.end()
    }
}

pub(in crate::runtime) fn stats(shared: &Shared) -> Stats {
    let store = &shared.store;
    let (counters, limits) = (store.counters(), store.limits());
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    Stats {
        version: env!("CARGO_PKG_VERSION"),
        gateway_id: shared.remote.gateway_id.clone(),
        uptime_seconds: shared.started_at.elapsed().as_secs_f64(),
        bus: shared.bus.stats(),
        mqtt: shared.bridge.stats(),
        remote: shared.bridge.remote_stats(),
        connections: shared.connections.stats(),
        queues: QueuesStats {
            total: shared.settings.total_queue.stats(),
            functions: shared.hosts.iter().map(|host| host.queue_stats()).collect(),
        },
        store: StoreStats {
            held_bytes: store.held_bytes(),
            max_bytes: limits.max_bytes,
            dead_letters: store.dead_letter_count(),
            max_dead_letters: limits.max_dead_letters,
            dead_letters_evicted: load(&counters.dead_letters_evicted),
            commits: load(&counters.commits),
            commit_micros: load(&counters.commit_micros),
            damaged_records: load(&counters.damaged_records),
        },
        log: LogStats {
            function_lines: launcher::output_lines(),
            dropped_lines: log::dropped_lines(),
            split_lines: launcher::split_lines(),
        },
        functions: shared
            .hosts
            .iter()
            .map(|host| {
                // Read once: the histograms shown and the last minute's quantiles agree.
                let now = FunctionSample::of(&host.metrics);
                FunctionStats {
                    function: host.spec.function_id.clone(),
                    service_name: host.spec.service_name.clone(),
                    function_name: host.spec.function_name.clone(),
                    run_mode: host.spec.run_mode,
                    counts: host.metrics.counts(),
                    last_minute: shared.samples.last_minute(host.index, &now),
                    queue_wait: now.queue_wait,
                    run_time: now.run_time,
                    workers: host.worker_stats(),
                }
            })
            .collect(),
        latency_buckets: &LATENCY_BUCKETS,
        recent_errors: shared.settings.recent_errors.list(),
        routes: shared.bus.router.routes().iter().map(|route| route_stats(shared, route)).collect(),
    }
}

fn route_stats(shared: &Shared, route: &Route) -> RouteStats {
    let function = |index: usize| shared.hosts[index].spec.function_id.clone();
    let broker = |index: usize| format!("mqtt:{}", shared.bridge.name(index));
    RouteStats {
        source: match route.source {
            RouteSource::Any => "any".to_string(),
            RouteSource::Function(index) => function(index),
            RouteSource::Broker(index) => broker(index),
        },
        filter: route.filter.as_str().to_string(),
        target: match route.target {
            RouteTarget::Function(index) => function(index),
            RouteTarget::Broker(index) => broker(index),
        },
        qos: u8::from(route.durable),
    }
}
