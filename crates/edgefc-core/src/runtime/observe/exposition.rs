//! `/metrics`: a [`Stats`] snapshot in the OpenMetrics text format, which
//! Prometheus scrapes, encoded by `prometheus_client`. Every metric is
//! named `edgefc_…`; labels are functions, brokers and fixed reasons only,
//! so their number is bounded by the configuration.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeCounterValue, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::metrics::{ExitReason, Kind, LatencySnapshot, Outcome};
use super::stats::Stats;
use crate::runtime::budget::BudgetStats;

/// The content type of what [`encode`] writes.
pub(in crate::runtime) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `stats` in the OpenMetrics text format.
pub(in crate::runtime) fn encode(stats: Stats) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(stats)));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

#[derive(Debug)]
struct Snapshot(Stats);

type Labels = Vec<(&'static str, String)>;

/// The encoder writes label values as they are: the config's names may
/// hold what the text format must escape.
fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.into_iter().map(|(name, value)| (name, escaped(value))).collect()
}

fn escaped(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// One metric family: its descriptor, then its samples, one per label
/// set; a family without labels has one sample.
struct Family<'a> {
    encoder: Option<MetricEncoder<'a>>,
}

fn family<'a>(
    encoder: &'a mut DescriptorEncoder<'_>,
    name: &'a str,
    help: &str,
    metric_type: MetricType,
) -> Result<Family<'a>, fmt::Error> {
    Ok(Family { encoder: Some(encoder.encode_descriptor(name, help, None, metric_type)?) })
}

impl Family<'_> {
    fn sample(&mut self, labels: &Labels, write: impl FnOnce(MetricEncoder<'_>) -> fmt::Result) -> fmt::Result {
        if labels.is_empty() {
            return write(self.encoder.take().ok_or(fmt::Error)?);
        }
        write(self.encoder.as_mut().ok_or(fmt::Error)?.encode_family(labels)?)
    }

    fn counter(&mut self, labels: &Labels, value: impl EncodeCounterValue) -> fmt::Result {
        self.sample(labels, |encoder| ConstCounter::new(value).encode(encoder))
    }

    fn gauge(&mut self, labels: &Labels, value: f64) -> fmt::Result {
        self.sample(labels, |encoder| ConstGauge::new(value).encode(encoder))
    }

    fn histogram(&mut self, labels: &Labels, histogram: &LatencySnapshot) -> fmt::Result {
        self.sample(labels, |mut encoder| {
            encoder.encode_histogram::<Labels>(histogram.sum_nanos as f64 / 1e9, histogram.count(), &histogram.by_bound(), None)
        })
    }
}

/// A family with one sample per element of `items`.
fn each<T>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric_type: MetricType,
    items: impl IntoIterator<Item = T>,
    mut sample: impl FnMut(&mut Family<'_>, T) -> fmt::Result,
) -> fmt::Result {
    let mut family = family(encoder, name, help, metric_type)?;
    for item in items {
        sample(&mut family, item)?;
    }
    Ok(())
}

fn counter<V: EncodeCounterValue>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, V)>,
) -> fmt::Result {
    each(encoder, name, help, MetricType::Counter, samples, |family, (labels, value)| family.counter(&labels, value))
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, f64)>,
) -> fmt::Result {
    each(encoder, name, help, MetricType::Gauge, samples, |family, (labels, value)| family.gauge(&labels, value))
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let stats = &self.0;
        let e = &mut encoder;
        gauge(e, "edgefc_uptime_seconds", "Seconds since the runtime started.", [(vec![], stats.uptime_seconds)])?;
        gauge(
            e,
            "edgefc_build_info",
            "The runtime's version and gateway id.",
            [(labels([("version", stats.version), ("gateway", &stats.gateway_id)]), 1.0)],
        )?;
        functions(e, stats)?;
        queues(e, stats)?;
        bus(e, stats)?;
        connections(e, stats)?;
        store(e, stats)?;
        mqtt(e, stats)?;
        remote(e, stats)?;
        counter(e, "edgefc_log_function_lines", "Lines functions printed.", [(vec![], stats.log.function_lines)])?;
        counter(
            e,
            "edgefc_log_dropped_lines",
            "Lines not written because stdout or stderr stalled.",
            [(vec![], stats.log.dropped_lines)],
        )?;
        counter(
            e,
            "edgefc_log_split_lines",
            "Function lines longer than log.maxLineBytes, split.",
            [(vec![], stats.log.split_lines)],
        )
    }
}

fn functions(e: &mut DescriptorEncoder<'_>, stats: &Stats) -> fmt::Result {
    let functions = &stats.functions;
    let mut invocations = Vec::new();
    for function in functions {
        for kind in Kind::ALL {
            for outcome in Outcome::ALL {
                let count = function.counts.invocations.get(kind.label()).and_then(|outcomes| outcomes.get(outcome.label()));
                let labels = labels([("function", &function.function), ("type", kind.label()), ("outcome", outcome.label())]);
                invocations.push((labels, count.copied().unwrap_or(0)));
            }
        }
    }
    counter(e, "edgefc_invocations", "Invocation attempts ended, by function, type and outcome.", invocations)?;
    each(
        e,
        "edgefc_invocation_queue_wait_seconds",
        "From admission to the task sent to a worker.",
        MetricType::Histogram,
        functions,
        |family, function| family.histogram(&labels([("function", &function.function)]), &function.queue_wait),
    )?;
    each(
        e,
        "edgefc_invocation_run_seconds",
        "From the task sent to a worker to its result or timeout.",
        MetricType::Histogram,
        functions,
        |family, function| family.histogram(&labels([("function", &function.function)]), &function.run_time),
    )?;
    let by_function = |value: &dyn Fn(&super::stats::FunctionStats) -> u64| {
        functions.iter().map(|function| (labels([("function", &function.function)]), value(function))).collect::<Vec<_>>()
    };
    counter(e, "edgefc_worker_starts", "Worker processes started.", by_function(&|function| function.counts.worker_starts))?;
    counter(
        e,
        "edgefc_worker_start_failures",
        "Worker processes that could not start or did not connect.",
        by_function(&|function| function.counts.worker_start_failures),
    )?;
    let exits = functions.iter().flat_map(|function| {
        ExitReason::ALL.into_iter().map(|reason| {
            let count = function.counts.worker_exits.get(reason.label()).copied().unwrap_or(0);
            (labels([("function", &function.function), ("reason", reason.label())]), count)
        })
    });
    counter(e, "edgefc_worker_exits", "Worker processes ended, by reason.", exits)?;
    // One worker per function: the pid is in the stats, not a label (each restart would make new series).
    let workers = || functions.iter().flat_map(|function| function.workers.iter().map(move |worker| (function, worker)));
    gauge(
        e,
        "edgefc_workers",
        "Worker processes connected.",
        functions.iter().map(|function| (labels([("function", &function.function)]), function.workers.len() as f64)),
    )?;
    gauge(
        e,
        "edgefc_worker_resident_bytes",
        "Resident memory of each worker process.",
        workers().filter_map(|(function, worker)| Some((labels([("function", &function.function)]), worker.rss_bytes? as f64))),
    )?;
    gauge(
        e,
        "edgefc_worker_in_flight",
        "Tasks sent to each worker and not yet done.",
        workers().map(|(function, worker)| (labels([("function", &function.function)]), worker.in_flight as f64)),
    )
}

fn queues(e: &mut DescriptorEncoder<'_>, stats: &Stats) -> fmt::Result {
    let queues = &stats.queues.functions;
    let of = |function: &str| labels([("function", function)]);
    gauge(e, "edgefc_running", "Invocations running.", queues.iter().map(|queue| (of(&queue.function), queue.running as f64)))?;
    gauge(
        e,
        "edgefc_max_concurrency",
        "maxConcurrency of each function.",
        queues.iter().map(|queue| (of(&queue.function), queue.max_concurrency as f64)),
    )?;
    // Each function's admitted invocations, and (in families of their own,
    // so that a sum over functions stays a sum) every function's together.
    type Figure = fn(&BudgetStats) -> usize;
    let budgets: [(&str, &str, &str, Figure); 4] = [
        ("edgefc_queued_invocations", "edgefc_runtime_queued_invocations", "Invocations admitted (running and waiting).", |b| {
            b.count
        }),
        ("edgefc_queued_bytes", "edgefc_runtime_queued_bytes", "Payload bytes of the invocations admitted.", |b| b.bytes),
        ("edgefc_queue_max_invocations", "edgefc_runtime_queue_max_invocations", "The bound on invocations admitted.", |b| {
            b.max_count
        }),
        ("edgefc_queue_max_bytes", "edgefc_runtime_queue_max_bytes", "The bound on payload bytes admitted.", |b| b.max_bytes),
    ];
    for (name, total_name, help, figure) in budgets {
        gauge(e, name, help, queues.iter().map(|queue| (of(&queue.function), figure(&queue.admitted) as f64)))?;
        gauge(e, total_name, &format!("{help} Every function's together."), [(vec![], figure(&stats.queues.total) as f64)])?;
    }
    gauge(
        e,
        "edgefc_async_pending",
        "Async invocations in the store, not yet ended.",
        queues.iter().map(|queue| (of(&queue.function), queue.async_pending as f64)),
    )
}

fn bus(e: &mut DescriptorEncoder<'_>, stats: &Stats) -> fmt::Result {
    let bus = &stats.bus;
    counter(e, "edgefc_messages_published", "Messages published.", [(vec![], bus.published)])?;
    counter(e, "edgefc_messages_delivered", "Messages delivered to a route's target.", [(vec![], bus.delivered)])?;
    counter(
        e,
        "edgefc_messages_dropped",
        "Messages not delivered, by reason.",
        [
            (labels([("reason", "no_route")]), bus.dropped_no_route),
            (labels([("reason", "queue_full")]), bus.refused_queue_full),
            (labels([("reason", "slow_subscriber")]), bus.dropped_slow_subscriber),
        ],
    )?;
    counter(
        e,
        "edgefc_subscribers_disconnected",
        "Subscribers disconnected because they did not keep up.",
        [(vec![], bus.disconnected_slow_subscriber)],
    )?;
    gauge(e, "edgefc_subscriptions", "Subscriptions open.", [(vec![], bus.subscriptions as f64)])
}

fn connections(e: &mut DescriptorEncoder<'_>, stats: &Stats) -> fmt::Result {
    let connections = &stats.connections;
    gauge(
        e,
        "edgefc_connections",
        "Connections open, by kind: clients (callers, the CLI), workers, and those that have not said Hello yet.",
        [
            (labels([("kind", "client")]), connections.open.saturating_sub(connections.workers) as f64),
            (labels([("kind", "worker")]), connections.workers as f64),
            (labels([("kind", "unauthenticated")]), connections.unauthenticated as f64),
        ],
    )?;
    gauge(e, "edgefc_connections_max", "connections.max.", [(vec![], connections.max as f64)])?;
    gauge(
        e,
        "edgefc_connection_output_bytes",
        "Bytes written for peers and not yet read by them.",
        [(vec![], connections.output_bytes as f64)],
    )?;
    counter(
        e,
        "edgefc_connection_refusals",
        "Connections refused or closed by the runtime, by reason.",
        [
            (labels([("reason", "accept_error")]), connections.accept_errors),
            (labels([("reason", "evicted_unauthenticated")]), connections.evicted_unauthenticated),
            (labels([("reason", "hello_timeout")]), connections.hello_timeouts),
            (labels([("reason", "hello_refused")]), connections.hello_refused),
            (labels([("reason", "too_many")]), connections.refused_too_many),
            (labels([("reason", "slow_reader")]), connections.closed_slow_reader),
        ],
    )?;
    counter(
        e,
        "edgefc_requests_refused_in_flight",
        "Requests refused because their connection had too many in flight.",
        [(vec![], connections.refused_in_flight)],
    )?;
    counter(
        e,
        "edgefc_connection_read_pauses",
        "Times a connection's requests waited for its peer to read.",
        [(vec![], connections.read_pauses)],
    )
}

fn store(e: &mut DescriptorEncoder<'_>, stats: &Stats) -> fmt::Result {
    let store = &stats.store;
    gauge(
        e,
        "edgefc_store_held_bytes",
        "Bytes of pending Async invocations and dead letters.",
        [(vec![], store.held_bytes as f64)],
    )?;
    gauge(e, "edgefc_store_max_bytes", "store.maxBytes.", [(vec![], store.max_bytes as f64)])?;
    gauge(e, "edgefc_dead_letters", "Dead letters kept.", [(vec![], store.dead_letters as f64)])?;
    gauge(e, "edgefc_dead_letters_max", "store.maxDeadLetters.", [(vec![], store.max_dead_letters as f64)])?;
    counter(
        e,
        "edgefc_dead_letters_evicted",
        "Dead letters dropped, oldest first, because they were full.",
        [(vec![], store.dead_letters_evicted)],
    )?;
    counter(e, "edgefc_store_commits", "Store transactions committed (each fsynced).", [(vec![], store.commits)])?;
    let commit_seconds = store.commit_micros as f64 / 1e6;
    counter(e, "edgefc_store_commit_seconds", "Time spent committing, fsync included.", [(vec![], commit_seconds)])?;
    counter(e, "edgefc_store_damaged_records", "Store records that could not be read back.", [(vec![], store.damaged_records)])
}

fn mqtt(e: &mut DescriptorEncoder<'_>, stats: &Stats) -> fmt::Result {
    let links = &stats.mqtt;
    let of = |broker: &str| labels([("broker", broker)]);
    gauge(
        e,
        "edgefc_mqtt_connected",
        "1 while connected to the broker with every subscription taken.",
        links.iter().map(|link| (of(&link.broker), f64::from(u8::from(link.connected)))),
    )?;
    counter(
        e,
        "edgefc_mqtt_connects",
        "Connections made to the broker.",
        links.iter().map(|link| (of(&link.broker), link.connects)),
    )?;
    counter(
        e,
        "edgefc_mqtt_connection_errors",
        "Connections to the broker that failed or broke.",
        links.iter().map(|link| (of(&link.broker), link.connection_errors)),
    )?;
    gauge(
        e,
        "edgefc_mqtt_outbox_messages",
        "QoS 1 messages in the outbox.",
        links.iter().map(|link| (of(&link.broker), link.outbox_messages as f64)),
    )?;
    gauge(
        e,
        "edgefc_mqtt_outbox_bytes",
        "Bytes of the QoS 1 messages in the outbox.",
        links.iter().map(|link| (of(&link.broker), link.outbox_bytes as f64)),
    )?;
    counter(e, "edgefc_mqtt_sent", "Messages sent to the broker.", links.iter().map(|link| (of(&link.broker), link.sent)))?;
    counter(
        e,
        "edgefc_mqtt_acknowledged",
        "QoS 1 messages the broker acknowledged.",
        links.iter().map(|link| (of(&link.broker), link.acknowledged)),
    )?;
    counter(
        e,
        "edgefc_mqtt_received",
        "Messages received from the broker.",
        links.iter().map(|link| (of(&link.broker), link.received)),
    )?;
    let drops = links.iter().flat_map(|link| {
        [
            ("refused_by_broker", link.refused_by_broker),
            ("outbox_full_dropped_oldest", link.dropped_oldest),
            ("outbox_full_rejected", link.rejected_full),
            ("qos0_waiting", link.dropped_qos0),
            ("inbound", link.dropped_inbound),
            ("unsendable", link.dropped_unsendable),
        ]
        .map(|(reason, count)| (labels([("broker", &link.broker), ("reason", reason)]), count))
    });
    counter(e, "edgefc_mqtt_dropped", "Messages to or from the broker dropped, by reason.", drops)?;
    counter(
        e,
        "edgefc_mqtt_refused_subscriptions",
        "Subscriptions the broker refused.",
        links.iter().map(|link| (of(&link.broker), link.refused_subscriptions)),
    )
}

fn remote(e: &mut DescriptorEncoder<'_>, stats: &Stats) -> fmt::Result {
    let remote = &stats.remote;
    counter(
        e,
        "edgefc_remote_calls",
        "Calls to functions of other gateways, by result.",
        [
            (labels([("result", "answered")]), remote.answered),
            (labels([("result", "timed_out")]), remote.timed_out),
            (labels([("result", "offline")]), remote.offline),
        ],
    )?;
    counter(
        e,
        "edgefc_remote_requests",
        "Requests from other gateways, by result.",
        [
            (labels([("result", "taken")]), remote.requests),
            (labels([("result", "repeat")]), remote.repeats),
            (labels([("result", "not_exposed")]), remote.not_exposed),
            (labels([("result", "malformed")]), remote.malformed),
        ],
    )?;
    counter(
        e,
        "edgefc_remote_answers_dropped",
        "Answers to other gateways dropped because too many waited for the broker.",
        [(vec![], remote.answers_dropped)],
    )?;
    gauge(
        e,
        "edgefc_remote_gateways",
        "Other gateways seen, by status.",
        [
            (labels([("status", "online")]), remote.gateways_online as f64),
            (labels([("status", "offline")]), remote.gateways_offline as f64),
        ],
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped_as_the_text_format_requires() {
        assert_eq!(super::escaped("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(super::escaped("acs:fc:::service:S:function:f"), "acs:fc:::service:S:function:f");
    }
}
