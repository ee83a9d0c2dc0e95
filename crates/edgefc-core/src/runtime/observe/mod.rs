//! What an operator sees of a running runtime.
//!
//! - `metrics`: each function's counters and latency histograms, recorded
//!   on the invocation path (relaxed atomics only).
//! - `recent`: the last failed invocations, and rates and quantiles over
//!   the last minute from samples taken every few seconds.
//! - `stats`: one snapshot of every number: the JSON of `edgefc stats`,
//!   `runtime.stats()` and the status page.
//! - `exposition`: that snapshot as Prometheus metrics (`/metrics`).
//! - `http`: the opt-in listener that serves them, and the status page.

mod exposition;
mod http;
mod metrics;
mod recent;
mod stats;

use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub(super) use metrics::{ExitReason, FunctionMetrics, Kind, Outcome};
pub(super) use recent::{error_type_of, RecentError, RecentErrors, Samples};
pub(super) use stats::{stats, WorkerStats};

use super::Shared;
use crate::error::{Error, Result};

/// `observe` in `edgefc.json`.
#[derive(Debug, Clone)]
pub struct ObserveSettings {
    /// Where `/metrics`, `/api/stats` and the status page are served.
    pub listen: SocketAddr,
}

impl ObserveSettings {
    /// Off the loopback interface, a token is needed.
    pub fn needs_token(&self) -> bool {
        !self.listen.ip().is_loopback()
    }
}

/// Binds the observe listener, when one is configured.
pub(super) async fn bind(settings: Option<&ObserveSettings>) -> Result<Option<TcpListener>> {
    let Some(settings) = settings else { return Ok(None) };
    TcpListener::bind(settings.listen)
        .await
        .map(Some)
        .map_err(|error| Error::config(format!("observe.listen: cannot listen on {}: {error}", settings.listen)))
}

/// Serves `listener` and samples the counters every few seconds for the
/// last-minute figures, until `shutdown`.
pub(super) fn start(shared: &Arc<Shared>, listener: Option<TcpListener>, token: Option<String>, shutdown: CancellationToken) {
    let sampled = Arc::downgrade(shared);
    let sampling_stop = shutdown.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + recent::SAMPLE_INTERVAL, recent::SAMPLE_INTERVAL);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = sampling_stop.cancelled() => return,
            }
            let Some(shared) = Weak::upgrade(&sampled) else { return };
            shared.samples.take(shared.hosts.iter().map(|host| &*host.metrics));
        }
    });
    if let Some(listener) = listener {
        tokio::spawn(http::serve(listener, Arc::downgrade(shared), token, shutdown));
    }
}

/// What the invocation path pays for its metrics, per invocation, with
/// `threads` threads recording into one function's metrics at once (the
/// worst case: every core on the same cache lines): three clock reads, two
/// histogram observations and a count, as `host` does. For the benchmark.
#[doc(hidden)]
pub fn recording_cost(threads: usize, per_thread: u32) -> std::time::Duration {
    use std::time::Instant;
    let metrics = Arc::new(FunctionMetrics::default());
    let barrier = Arc::new(std::sync::Barrier::new(threads));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (metrics, barrier) = (metrics.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let started = Instant::now();
                for _ in 0..per_thread {
                    let admitted = Instant::now();
                    let sent = Instant::now();
                    metrics.queue_wait.observe(sent - admitted);
                    metrics.run_time.observe(sent.elapsed());
                    metrics.count(Kind::Sync, Outcome::Ok);
                }
                started.elapsed()
            })
        })
        .collect();
    let slowest = workers.into_iter().map(|worker| worker.join().unwrap_or_default()).max().unwrap_or_default();
    slowest / per_thread.max(1)
}
