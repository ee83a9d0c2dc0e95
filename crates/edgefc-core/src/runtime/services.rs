//! The runtime's own services, asked for with `Request` frames and answered as JSON.

use serde::Serialize;

use super::{dead_letters, observe, state_dir, Caller, Shared};
use crate::error::{Error, ErrorCode, Result};

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
        "stats" => to_json(operation, &observe::stats(shared)),
        "token.rotate" => {
            let token = state_dir::rotate_token(&shared.admin_token_path)?;
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
