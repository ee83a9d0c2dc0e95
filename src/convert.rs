//! Values between JavaScript and the engine: payloads keep whether they were
//! a string or a Buffer; messages become plain objects (replies and tasks
//! go through `records`).

use std::ptr;

use bytes::Bytes;
use edgefc_core::proto::{FunctionError, Message, Payload};
use napi::bindgen_prelude::{BufferSlice, Either, ToNapiValue, TypeName, ValueType};
use napi::sys;
use napi_derive::napi;

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
