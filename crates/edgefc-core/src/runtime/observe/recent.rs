//! What the status page shows of the last minute: the most recent failed
//! invocations (never their payloads or messages, which may carry user
//! data), and rates and quantiles from snapshots of the counters taken
//! every few seconds, so the invocation path pays nothing for them.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::metrics::{FunctionMetrics, Kind, LatencySnapshot, Outcome};

/// How many failed invocations are kept, newest first.
pub(in crate::runtime) const MAX_RECENT_ERRORS: usize = 50;
/// The longest `errorType` kept; longer ones are cut.
const MAX_ERROR_TYPE: usize = 100;
/// Result bodies larger than this are not parsed for their `errorType`.
const MAX_PARSED_ERROR_BODY: usize = 64 << 10;

/// One failed invocation.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(in crate::runtime) struct RecentError {
    /// Milliseconds since the Unix epoch.
    pub(in crate::runtime) at_ms: u64,
    pub(in crate::runtime) function: String,
    #[serde(rename = "type")]
    pub(in crate::runtime) kind: &'static str,
    pub(in crate::runtime) outcome: &'static str,
    /// The error's `errorType` (`TimeoutError`, `TypeError`, `QueueFull`…), when it has one.
    pub(in crate::runtime) error_type: Option<String>,
    /// Empty for an invocation refused before it got an id.
    pub(in crate::runtime) invocation_id: String,
    pub(in crate::runtime) attempt: u16,
}

#[derive(Default)]
pub(in crate::runtime) struct RecentErrors {
    newest_first: Mutex<VecDeque<RecentError>>,
}

impl RecentErrors {
    pub(in crate::runtime) fn push(&self, error: RecentError) {
        let mut errors = self.newest_first.lock().unwrap();
        if errors.len() == MAX_RECENT_ERRORS {
            errors.pop_back();
        }
        errors.push_front(error);
    }

    pub(in crate::runtime) fn list(&self) -> Vec<RecentError> {
        self.newest_first.lock().unwrap().iter().cloned().collect()
    }
}

/// The `errorType` of a function's error body (`{"errorType": …}`), cut to a bounded length.
pub(in crate::runtime) fn error_type_of(body: &[u8]) -> Option<String> {
    if body.len() > MAX_PARSED_ERROR_BODY {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error_type = value.get("errorType")?.as_str()?;
    Some(error_type.chars().take(MAX_ERROR_TYPE).collect())
}

/// How often the counters are sampled, and how far back the window reaches.
pub(in crate::runtime) const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
pub(in crate::runtime) const WINDOW: Duration = Duration::from_secs(60);

/// One function's counters at one moment.
#[derive(Clone, Default)]
pub(in crate::runtime) struct FunctionSample {
    invocations: u64,
    errors: u64,
    pub(in crate::runtime) queue_wait: LatencySnapshot,
    pub(in crate::runtime) run_time: LatencySnapshot,
}

impl FunctionSample {
    pub(in crate::runtime) fn of(metrics: &FunctionMetrics) -> FunctionSample {
        let mut sample = FunctionSample::default();
        for kind in Kind::ALL {
            for outcome in Outcome::ALL {
                let count = metrics.invocations(kind, outcome);
                sample.invocations += count;
                if outcome.is_error() {
                    sample.errors += count;
                }
            }
        }
        sample.queue_wait = metrics.queue_wait.snapshot();
        sample.run_time = metrics.run_time.snapshot();
        sample
    }
}

/// The samples of the last minute, oldest first; the first is the window's base.
pub(in crate::runtime) struct Samples {
    samples: Mutex<VecDeque<(Instant, Vec<FunctionSample>)>>,
}

/// One function over the last minute (or since the runtime started, when that is sooner).
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(in crate::runtime) struct LastMinute {
    /// How many seconds the figures cover.
    pub(in crate::runtime) seconds: f64,
    /// Invocation attempts ended (refusals included), and those that failed.
    pub(in crate::runtime) invocations: u64,
    pub(in crate::runtime) errors: u64,
    pub(in crate::runtime) per_second: f64,
    /// Run time quantiles and the 99th percentile of queue wait, in seconds; null with no invocation.
    pub(in crate::runtime) run_p50_seconds: Option<f64>,
    pub(in crate::runtime) run_p99_seconds: Option<f64>,
    pub(in crate::runtime) queue_p99_seconds: Option<f64>,
}

impl Samples {
    /// Starts with a zero base for `functions` functions: until a minute
    /// has passed, the window is everything since the start.
    pub(in crate::runtime) fn new(functions: usize) -> Samples {
        let base = (Instant::now(), vec![FunctionSample::default(); functions]);
        Samples { samples: Mutex::new(VecDeque::from([base])) }
    }

    /// Takes a sample of every function's counters; drops those older than the window.
    pub(in crate::runtime) fn take<'a>(&self, metrics: impl Iterator<Item = &'a FunctionMetrics>) {
        let now = Instant::now();
        let sample = metrics.map(FunctionSample::of).collect();
        let mut samples = self.samples.lock().unwrap();
        samples.push_back((now, sample));
        // The oldest sample kept is the newest one at least a window old.
        while samples.len() > 1 && now.duration_since(samples[1].0) >= WINDOW {
            samples.pop_front();
        }
    }

    /// Function `index`, whose counters are `now`, over the window.
    pub(in crate::runtime) fn last_minute(&self, index: usize, now: &FunctionSample) -> LastMinute {
        let (at, base) = {
            let samples = self.samples.lock().unwrap();
            let (at, base) = &samples[0];
            (*at, base.get(index).cloned().unwrap_or_default())
        };
        let seconds = at.elapsed().as_secs_f64();
        let invocations = now.invocations.saturating_sub(base.invocations);
        let run_time = now.run_time.since(&base.run_time);
        LastMinute {
            seconds,
            invocations,
            errors: now.errors.saturating_sub(base.errors),
            // Not over less than a sample's interval: just after a start it would spike.
            per_second: invocations as f64 / seconds.max(SAMPLE_INTERVAL.as_secs_f64()),
            run_p50_seconds: run_time.quantile(0.5),
            run_p99_seconds: run_time.quantile(0.99),
            queue_p99_seconds: now.queue_wait.since(&base.queue_wait).quantile(0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_errors_are_kept() {
        let errors = RecentErrors::default();
        for attempt in 0..(MAX_RECENT_ERRORS as u16 + 5) {
            errors.push(RecentError {
                at_ms: 0,
                function: "f".into(),
                kind: "sync",
                outcome: "timeout",
                error_type: None,
                invocation_id: String::new(),
                attempt,
            });
        }
        let list = errors.list();
        assert_eq!(list.len(), MAX_RECENT_ERRORS);
        assert_eq!(list[0].attempt, MAX_RECENT_ERRORS as u16 + 4);
    }

    #[test]
    fn the_error_type_is_read_from_an_error_body_and_bounded() {
        assert_eq!(error_type_of(br#"{"errorMessage":"x","errorType":"TypeError"}"#).as_deref(), Some("TypeError"));
        assert_eq!(error_type_of(b"not json"), None);
        let long = format!(r#"{{"errorType":"{}"}}"#, "E".repeat(500));
        assert_eq!(error_type_of(long.as_bytes()).map(|kind| kind.len()), Some(MAX_ERROR_TYPE));
    }

    #[test]
    fn the_window_counts_what_happened_since_its_base() {
        let metrics = FunctionMetrics::default();
        metrics.count(Kind::Sync, Outcome::Ok);
        let samples = Samples::new(1);
        metrics.count(Kind::Sync, Outcome::Ok);
        metrics.count(Kind::Async, Outcome::Timeout);
        metrics.run_time.observe(Duration::from_millis(3));
        let window = samples.last_minute(0, &FunctionSample::of(&metrics));
        // The base is zero: everything since the start.
        assert_eq!((window.invocations, window.errors), (3, 1));
        samples.take(std::iter::once(&metrics));
        metrics.count(Kind::Sync, Outcome::HandledError);
        // A sample newer than the window's base does not move the base.
        let window = samples.last_minute(0, &FunctionSample::of(&metrics));
        assert_eq!(window.invocations, 4);
        assert!(window.run_p50_seconds.is_some());
    }
}
