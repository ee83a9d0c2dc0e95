//! The size rules of the wire. A sender checks them before sending, so that
//! one oversized request fails alone instead of closing its connection; the
//! runtime checks them again on what it receives, since a peer may not.

use crate::error::{Error, ErrorCode, Result};
use crate::proto::frame::{Payload, MAX_FIELD_LEN};
use crate::proto::message::Request;

/// Strings travel in fields of at most 65535 bytes.
pub fn check_field(what: &str, value: &str) -> Result<()> {
    if value.len() > MAX_FIELD_LEN {
        return Err(Error::new(
            ErrorCode::InvalidParams,
            format!("{what} is {} bytes long; at most {MAX_FIELD_LEN} are allowed", value.len()),
        ));
    }
    Ok(())
}

/// A payload fits within the runtime's `maxPayloadBytes`.
pub fn check_payload(payload: &Payload, max_payload: usize) -> Result<()> {
    if payload.len() > max_payload {
        return Err(payload_too_large(payload.len(), max_payload));
    }
    Ok(())
}

pub fn payload_too_large(len: usize, max: usize) -> Error {
    Error::new(ErrorCode::PayloadTooLarge, format!("payload of {len} bytes exceeds the limit of {max} bytes"))
}

/// Every rule a request must keep before it is sent.
pub fn check_request(request: &Request, max_payload: usize) -> Result<()> {
    match request {
        Request::Invoke(invoke) => {
            check_payload(&invoke.payload, max_payload)?;
            check_field("the function id", &invoke.target)?;
            check_field("invokerContext", &invoke.invoker_context)
        }
        Request::Publish { topic, payload } => {
            check_payload(payload, max_payload)?;
            check_field("the topic", topic)
        }
        Request::Query { operation } => check_field("the request", operation),
        Request::Subscribe { topic_filter } => check_field("the topic filter", topic_filter),
    }
}
