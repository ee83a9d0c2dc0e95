//! The runtime's own services, asked for with `Request` frames and answered as JSON.

use super::{Caller, Shared};
use crate::error::{Error, ErrorCode, Result};

pub(super) fn answer(shared: &Shared, caller: Caller, operation: &str) -> Result<String> {
    let json = match operation {
        "credentials" => {
            if let Caller::Admin = caller {
                return Err(Error::new(ErrorCode::Unauthorized, "credentials are served to hosted functions only"));
            }
            let credentials = shared.credentials.as_ref().ok_or_else(|| {
                Error::new(ErrorCode::CredentialsUnavailable, "no credentials are configured: add \"credentials\" to edgefc.json")
            })?;
            serde_json::to_string(credentials)
        }
        "stats" => serde_json::to_string(&shared.bus.stats()),
        other => return Err(Error::new(ErrorCode::InvalidParams, format!("unknown request {other}"))),
    };
    json.map_err(|error| Error::new(ErrorCode::Internal, format!("cannot encode the answer to {operation}: {error}")))
}
