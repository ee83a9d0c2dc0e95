//! Values between JavaScript and the engine: payloads keep whether they were
//! a string or a Buffer; replies, tasks and messages become plain objects.

use bytes::Bytes;
use edgefc_core::proto::{FunctionError, Message, Payload, Reply, Task};
use napi::bindgen_prelude::{Buffer, BufferSlice, Either};
use napi_derive::napi;

use crate::error::NativeFailure;

/// A payload as JavaScript passes it: a string, or the bytes of a Buffer.
pub fn payload_from_js(value: Either<String, BufferSlice<'_>>) -> Payload {
    match value {
        Either::A(text) => Payload::Text(Bytes::from(text)),
        Either::B(buffer) => Payload::Binary(Bytes::copy_from_slice(&buffer)),
    }
}

pub fn payload_to_js(payload: Payload) -> Either<String, Buffer> {
    match payload {
        Payload::Text(bytes) => {
            // The decoder has already checked that text payloads are UTF-8.
            Either::A(
                String::from_utf8(Vec::from(bytes))
                    .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned()),
            )
        }
        Payload::Binary(bytes) => Either::B(Buffer::from(Vec::from(bytes))),
    }
}

/// `functionError` as the worker bootstrap reports it: 0 none, 1 Handled, 2 Unhandled.
pub fn function_error_from_js(value: u32) -> FunctionError {
    match value {
        0 => FunctionError::None,
        1 => FunctionError::Handled,
        _ => FunctionError::Unhandled,
    }
}

/// The outcome of one submitted request: `failure`, or the result of a
/// Sync call, or the id the runtime gave what it accepted.
#[napi(object)]
pub struct Outcome {
    /// The tag the request was submitted with.
    pub tag: i64,
    pub failure: Option<NativeFailure>,
    pub function_error: Option<String>,
    pub status_code: Option<u32>,
    pub payload: Option<Either<String, Buffer>>,
    /// An Async invocation's id, or a published message's id.
    pub accepted_id: Option<String>,
}

impl Outcome {
    pub fn of(tag: u64, reply: edgefc_core::Result<Reply>) -> Outcome {
        let mut outcome =
            Outcome { tag: tag as i64, failure: None, function_error: None, status_code: None, payload: None, accepted_id: None };
        match reply {
            Ok(Reply::Completed(result)) => {
                outcome.function_error = result.function_error.as_str().map(str::to_string);
                outcome.status_code = Some(u32::from(result.status));
                outcome.payload = Some(payload_to_js(result.payload));
            }
            Ok(Reply::Accepted { accepted_id }) => outcome.accepted_id = Some(accepted_id),
            Err(error) => outcome.failure = Some(error.into()),
        }
        outcome
    }
}

/// One run of the hosted function's handler, as the worker bootstrap sees it.
#[napi(object)]
pub struct NativeTask {
    pub id: i64,
    /// 1 for an invocation's first run, more for its retries.
    pub attempt: u32,
    /// The invocation's id, the same on every attempt.
    pub request_id: String,
    /// Base64 JSON as the caller sent it; the bootstrap decodes it.
    pub invoker_context: String,
    pub payload: Either<String, Buffer>,
}

impl From<Task> for NativeTask {
    fn from(task: Task) -> NativeTask {
        NativeTask {
            id: task.id as i64,
            attempt: u32::from(task.attempt),
            request_id: task.request_id,
            invoker_context: task.invoker_context,
            payload: payload_to_js(task.payload),
        }
    }
}

/// A published message, as a subscriber sees it.
#[napi(object)]
pub struct NativeMessage {
    pub source: String,
    pub topic: String,
    pub payload: Either<String, Buffer>,
}

impl From<Message> for NativeMessage {
    fn from(message: Message) -> NativeMessage {
        NativeMessage { source: message.source, topic: message.topic, payload: payload_to_js(message.payload) }
    }
}
