//! Values between JavaScript and the engine: payloads keep whether they were
//! a string or a Buffer; replies, tasks and messages become plain objects.

use std::ptr;

use bytes::Bytes;
use edgefc_core::proto::{FunctionError, Message, Payload, Reply, Task};
use napi::bindgen_prelude::{BufferSlice, Either, ToNapiValue, TypeName, ValueType};
use napi::sys;
use napi_derive::napi;

use crate::error::NativeFailure;

/// A payload as JavaScript passes it: a string, or the bytes of a Buffer.
pub fn payload_from_js(value: Either<String, BufferSlice<'_>>) -> Payload {
    match value {
        Either::A(text) => Payload::Text(Bytes::from(text)),
        Either::B(buffer) => Payload::Binary(Bytes::copy_from_slice(&buffer)),
    }
}

/// A payload on its way to JavaScript: text becomes a string, binary a
/// Buffer. A large binary payload is lent to its Buffer, not copied: the
/// Buffer is made over the bytes as they were read, and frees them when it
/// is collected.
pub struct JsPayload(pub Payload);

/// From this size on, a Buffer borrows its bytes instead of copying them.
/// Below it a copy is cheaper than an external buffer's bookkeeping, and
/// would not keep alive the larger read buffer the bytes are part of.
const LEND_FROM_BYTES: usize = 64 << 10;

impl TypeName for JsPayload {
    fn type_name() -> &'static str {
        "string | Buffer"
    }

    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}

impl ToNapiValue for JsPayload {
    unsafe fn to_napi_value(env: sys::napi_env, payload: JsPayload) -> napi::Result<sys::napi_value> {
        let mut value = ptr::null_mut();
        let status = match payload.0 {
            // The decoder has already checked that text payloads are UTF-8.
            Payload::Text(bytes) => sys::napi_create_string_utf8(env, bytes.as_ptr().cast(), bytes.len() as isize, &mut value),
            Payload::Binary(bytes) if bytes.len() < LEND_FROM_BYTES => {
                sys::napi_create_buffer_copy(env, bytes.len(), bytes.as_ptr().cast(), ptr::null_mut(), &mut value)
            }
            Payload::Binary(bytes) => {
                let (data, len) = (bytes.as_ptr().cast_mut().cast(), bytes.len());
                let owner = Box::into_raw(Box::new(bytes));
                let status = sys::napi_create_external_buffer(env, len, data, Some(release_lent), owner.cast(), &mut value);
                if status != sys::Status::napi_ok {
                    drop(Box::from_raw(owner));
                }
                status
            }
        };
        if status == sys::Status::napi_ok {
            Ok(value)
        } else {
            Err(napi::Error::new(napi::Status::from(status), "cannot make a payload for JavaScript".to_string()))
        }
    }
}

/// Frees the bytes lent to a Buffer once it is collected.
unsafe extern "C" fn release_lent(_env: sys::napi_env, _data: *mut std::ffi::c_void, owner: *mut std::ffi::c_void) {
    drop(Box::from_raw(owner.cast::<Bytes>()));
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
#[napi(object, object_from_js = false)]
pub struct Outcome {
    /// The tag the request was submitted with.
    pub tag: i64,
    pub failure: Option<NativeFailure>,
    pub function_error: Option<String>,
    pub status_code: Option<u32>,
    /// What the handler said about its payload (JSON), or empty.
    pub reply_context: Option<String>,
    #[napi(ts_type = "string | Buffer")]
    pub payload: Option<JsPayload>,
    /// An Async invocation's id, or a published message's id.
    pub accepted_id: Option<String>,
}

impl Outcome {
    pub fn of(tag: u64, reply: edgefc_core::Result<Reply>) -> Outcome {
        let mut outcome = Outcome {
            tag: tag as i64,
            failure: None,
            function_error: None,
            status_code: None,
            reply_context: None,
            payload: None,
            accepted_id: None,
        };
        match reply {
            Ok(Reply::Completed(result)) => {
                outcome.function_error = result.function_error.as_str().map(str::to_string);
                outcome.status_code = Some(u32::from(result.status));
                outcome.reply_context = Some(result.reply_context);
                outcome.payload = Some(JsPayload(result.payload));
            }
            Ok(Reply::Accepted { accepted_id }) => outcome.accepted_id = Some(accepted_id),
            Err(error) => outcome.failure = Some(error.into()),
        }
        outcome
    }
}

/// One run of the hosted function's handler, as the worker bootstrap sees it.
#[napi(object, object_from_js = false)]
pub struct NativeTask {
    pub id: i64,
    /// 1 for an invocation's first run, more for its retries.
    pub attempt: u32,
    /// The invocation's id, the same on every attempt.
    pub request_id: String,
    /// Base64 JSON as the caller sent it; the bootstrap decodes it.
    pub invoker_context: String,
    #[napi(ts_type = "string | Buffer")]
    pub payload: JsPayload,
}

impl From<Task> for NativeTask {
    fn from(task: Task) -> NativeTask {
        NativeTask {
            id: task.id as i64,
            attempt: u32::from(task.attempt),
            request_id: task.request_id,
            invoker_context: task.invoker_context,
            payload: JsPayload(task.payload),
        }
    }
}

/// A published message, as a subscriber sees it.
#[napi(object, object_from_js = false)]
pub struct NativeMessage {
    pub source: String,
    pub topic: String,
    #[napi(ts_type = "string | Buffer")]
    pub payload: JsPayload,
}

impl From<Message> for NativeMessage {
    fn from(message: Message) -> NativeMessage {
        NativeMessage { source: message.source, topic: message.topic, payload: JsPayload(message.payload) }
    }
}
