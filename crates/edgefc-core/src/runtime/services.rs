//! The runtime's own services, asked for with `Request` frames and answered as JSON.

use serde::Serialize;

use super::budget::BudgetStats;
use super::bus::BusStats;
use super::connections::ConnectionStats;
use super::host::QueueStats;
use super::{dead_letters, launcher, log, state_dir, Caller, Shared};
use crate::error::{Error, ErrorCode, Result};

/// The JSON of `edgefc stats` and `runtime.stats()`: the bus's counters at
/// the top, then each bound's use and what it refused or dropped.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stats {
    #[serde(flatten)]
    bus: BusStats,
    connections: ConnectionStats,
    queues: QueuesStats,
    store: StoreStats,
    log: LogStats,
    /// Each broker link of the MQTT bridge.
    mqtt: Vec<super::mqtt::LinkStats>,
    /// Invocations to and from other gateways.
    remote: super::mqtt::RemoteStats,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StoreStats {
    /// Bytes of pending Async invocations and dead letters (`store.maxBytes`).
    held_bytes: usize,
    max_bytes: usize,
    dead_letters: usize,
    max_dead_letters: usize,
    /// Dead letters dropped, oldest first, because the dead letters were full.
    dead_letters_evicted: u64,
    /// Transactions committed: each made any number of accepts durable at once.
    commits: u64,
    /// Time those commits took, fsync included.
    commit_micros: u64,
    /// Records that could not be read back, and were left out.
    damaged_records: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueuesStats {
    /// Every function's queue together (`maxTotalQueued*`).
    total: BudgetStats,
    functions: Vec<QueueStats>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogStats {
    /// Lines (or pieces of lines) functions printed, as read by the runtime.
    function_lines: u64,
    /// Lines the runtime could not write because its stdout or stderr stalled.
    dropped_lines: u64,
    /// Function output lines longer than `log.maxLineBytes`, split.
    split_lines: u64,
}

fn stats(shared: &Shared) -> Stats {
    Stats {
        bus: shared.bus.stats(),
        mqtt: shared.bridge.stats(),
        remote: shared.bridge.remote_stats(),
        connections: shared.connections.stats(),
        queues: QueuesStats {
            total: shared.settings.total_queue.stats(),
            functions: shared.hosts.iter().map(|host| host.queue_stats()).collect(),
        },
        store: {
            let store = &shared.store;
            let (counters, limits) = (store.counters(), store.limits());
            let load = |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
            StoreStats {
                held_bytes: store.held_bytes(),
                max_bytes: limits.max_bytes,
                dead_letters: store.dead_letter_count(),
                max_dead_letters: limits.max_dead_letters,
                dead_letters_evicted: load(&counters.dead_letters_evicted),
                commits: load(&counters.commits),
                commit_micros: load(&counters.commit_micros),
                damaged_records: load(&counters.damaged_records),
            }
        },
        log: LogStats {
            function_lines: launcher::output_lines(),
            dropped_lines: log::dropped_lines(),
            split_lines: launcher::split_lines(),
        },
    }
}

/// Answers a `Request`: `credentials` (functions), `stats`,
/// `token.rotate` and the dead letters' `dlq.*` (admin).
pub(super) async fn answer(shared: &Shared, caller: Caller, operation: &str) -> Result<String> {
    let (name, argument) = operation.split_once(' ').unwrap_or((operation, ""));
    if name == "credentials" {
        if let Caller::Admin = caller {
            return Err(Error::new(ErrorCode::Unauthorized, "credentials are served to hosted functions only"));
        }
        let credentials = shared.credentials.as_ref().ok_or_else(|| {
            Error::new(ErrorCode::CredentialsUnavailable, "no credentials are configured: add \"credentials\" to edgefc.json")
        })?;
        return to_json(operation, credentials);
    }
    if let Caller::Function(_) = caller {
        return Err(Error::new(ErrorCode::Unauthorized, format!("{name} needs the admin token")));
    }
    match name {
        "stats" => to_json(operation, &stats(shared)),
        "token.rotate" => {
            let token = state_dir::rotate_admin_token(&shared.admin_token_path)?;
            *shared.admin_token.write().unwrap() = token;
            to_json(operation, &serde_json::json!({ "rotated": true }))
        }
        "dlq.list" => to_json(operation, &dead_letters::list(shared)?),
        "dlq.show" => to_json(operation, &dead_letters::show(shared, argument)?),
        "dlq.replay" => to_json(operation, &dead_letters::replay(shared, argument).await?),
        "dlq.purge" => to_json(operation, &dead_letters::purge(shared, argument).await?),
        other => Err(Error::new(ErrorCode::InvalidParams, format!("unknown request {other}"))),
    }
}

fn to_json(operation: &str, value: &impl Serialize) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|error| Error::new(ErrorCode::Internal, format!("cannot encode the answer to {operation}: {error}")))
}
