//! The dead letters as `edgefc dlq` shows and handles them, by invocation
//! id: list, show, replay (back to pending, first attempt again, same id),
//! purge.

use base64::Engine;
use serde::Serialize;

use super::asynchronous::now_ms;
use super::store::DeadLetter;
use super::Shared;
use crate::error::{Error, ErrorCode, Result};
use crate::proto::frame::Payload;

/// How much of a dead letter's error a listing shows.
const LISTED_ERROR_BYTES: usize = 200;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Summary {
    invocation_id: String,
    function_id: String,
    /// Attempts made before it was given up.
    attempts: u32,
    /// Times it was replayed before.
    replays: u32,
    accepted_at_ms: u64,
    dead_at_ms: u64,
    payload_bytes: usize,
    error: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Detail {
    #[serde(flatten)]
    summary: Summary,
    /// Base64 JSON, as the caller sent it.
    invoker_context: String,
    /// A string, or `{"base64": …}` for bytes.
    payload: serde_json::Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Replayed {
    replayed: usize,
    /// Dead letters of functions no longer configured, left where they are.
    skipped: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Purged {
    purged: usize,
}

fn summary(letter: &DeadLetter, error_bytes: usize) -> Summary {
    let invocation = &letter.invocation;
    let end = letter.error.floor_char_boundary(error_bytes);
    Summary {
        invocation_id: invocation.invocation_id.clone(),
        function_id: invocation.function_id.clone(),
        attempts: invocation.attempt,
        replays: invocation.replays,
        accepted_at_ms: invocation.accepted_at_ms,
        dead_at_ms: letter.dead_at_ms,
        payload_bytes: invocation.payload.len(),
        error: letter.error[..end].to_string(),
    }
}

pub(super) fn list(shared: &Shared) -> Result<Vec<Summary>> {
    Ok(shared.store.dead_letters()?.iter().map(|(_, letter)| summary(letter, LISTED_ERROR_BYTES)).collect())
}

pub(super) fn show(shared: &Shared, id: &str) -> Result<Detail> {
    let (_, letter) = find(shared, id)?;
    let payload = match &letter.invocation.payload {
        Payload::Text(bytes) => serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()),
        Payload::Binary(bytes) => serde_json::json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
    };
    Ok(Detail { summary: summary(&letter, usize::MAX), invoker_context: letter.invocation.invoker_context.clone(), payload })
}

/// Replays one dead letter (by invocation id) or `all`.
pub(super) async fn replay(shared: &Shared, which: &str) -> Result<Replayed> {
    let letters = chosen(shared, which)?;
    let mut outcome = Replayed { replayed: 0, skipped: 0 };
    for (seq, letter) in letters {
        let Some(host) = shared.hosts.iter().find(|host| host.spec.function_id == letter.invocation.function_id) else {
            if which != "all" {
                return Err(Error::new(
                    ErrorCode::FunctionNotFound,
                    format!("function {} of dead letter {which} is not configured", letter.invocation.function_id),
                ));
            }
            outcome.skipped += 1;
            continue;
        };
        let now = now_ms();
        let (new_seq, invocation) = shared.store.revive(seq, letter, now).await?;
        host.asynchronous.add(new_seq, invocation.size(), now);
        outcome.replayed += 1;
    }
    Ok(outcome)
}

/// Removes one dead letter (by invocation id) or `all`.
pub(super) async fn purge(shared: &Shared, which: &str) -> Result<Purged> {
    let seqs = chosen(shared, which)?.into_iter().map(|(seq, _)| seq).collect();
    Ok(Purged { purged: shared.store.purge(seqs).await? })
}

fn chosen(shared: &Shared, which: &str) -> Result<Vec<(u64, DeadLetter)>> {
    if which == "all" {
        shared.store.dead_letters()
    } else {
        Ok(vec![find(shared, which)?])
    }
}

fn find(shared: &Shared, id: &str) -> Result<(u64, DeadLetter)> {
    if id.is_empty() {
        return Err(Error::new(ErrorCode::InvalidParams, "name a dead letter by its invocation id"));
    }
    shared
        .store
        .dead_letters()?
        .into_iter()
        .find(|(_, letter)| letter.invocation.invocation_id == id)
        .ok_or_else(|| Error::new(ErrorCode::InvalidParams, format!("no dead letter has invocation id {id}")))
}
