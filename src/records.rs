//! Replies and tasks handed to JavaScript as records in one buffer that the
//! session shares with its facade, instead of as objects built through
//! N-API: building an object costs a call into V8 per property (and a
//! Buffer an allocation of its own), several microseconds per reply, while
//! the facade reads a record with plain JavaScript (`lib/core/records.js`).
//!
//! A delivery calls back with `(arena, count, lent)`: `count` records from
//! the start of `arena`, and `lent`, the values too large to copy into it
//! (or `undefined` when there are none). All numbers are little-endian.
//!
//! ```text
//! text      u32 n, then n bytes of UTF-8; or u32 LENT|i: the string lent[i]
//! payload   u8 kind (0 text, 1 bytes), then as text (bytes: a Buffer)
//! reply     u8 COMPLETED, f64 tag, u8 functionError (0 none, 1 Handled,
//!             2 Unhandled), u16 status, text replyContext, payload
//!         | u8 ACCEPTED, f64 tag, text acceptedId
//!         | u8 FAILED, f64 tag, text code, text message
//! task      f64 id, u16 attempt, text requestId, text invokerContext, payload
//! ```

use std::ptr;

use edgefc_core::proto::{FunctionError, Payload, Reply, Task};
use edgefc_core::Result;
use napi::bindgen_prelude::ToNapiValue;
use napi::sys;

use crate::convert::JsPayload;

/// The shared buffer's size: records are written into it until the next
/// does not fit, then handed over, and the buffer is written again.
pub const ARENA_BYTES: usize = 64 << 10;
/// A field longer than this is lent as a value of its own: copying it
/// through the buffer would cost more than making it directly.
const INLINE_MAX: usize = 8 << 10;
/// Marks a length that is an index into `lent` instead.
const LENT: u32 = 1 << 31;

const COMPLETED: u8 = 0;
const ACCEPTED: u8 = 1;
const FAILED: u8 = 2;

const TEXT: u8 = 0;
const BYTES: u8 = 1;

/// What is written into a record: its size is known before it is written,
/// so a record is never split between two deliveries.
pub trait Record {
    fn inline_bytes(&self) -> usize;
    /// Writes the record; values it lends are made in `env`.
    fn write(self, writer: &mut RecordWriter) -> napi::Result<()>;
}

fn field_bytes(len: usize) -> usize {
    4 + if len <= INLINE_MAX { len } else { 0 }
}

fn payload_bytes(payload: &Payload) -> usize {
    1 + field_bytes(payload.len())
}

impl Record for (u64, Result<Reply>) {
    fn inline_bytes(&self) -> usize {
        9 + match &self.1 {
            Ok(Reply::Completed(result)) => 3 + field_bytes(result.reply_context.len()) + payload_bytes(&result.payload),
            Ok(Reply::Accepted { accepted_id }) => field_bytes(accepted_id.len()),
            Err(error) => field_bytes(error.code.as_str().len()) + field_bytes(error.message.len()),
        }
    }

    fn write(self, writer: &mut RecordWriter) -> napi::Result<()> {
        let (tag, reply) = self;
        match reply {
            Ok(Reply::Completed(result)) => {
                writer.put(&[COMPLETED])?;
                writer.put(&(tag as f64).to_le_bytes())?;
                writer.put(&[function_error_number(result.function_error)])?;
                writer.put(&result.status.to_le_bytes())?;
                writer.text(result.reply_context.as_bytes())?;
                writer.payload(result.payload)
            }
            Ok(Reply::Accepted { accepted_id }) => {
                writer.put(&[ACCEPTED])?;
                writer.put(&(tag as f64).to_le_bytes())?;
                writer.text(accepted_id.as_bytes())
            }
            Err(error) => {
                writer.put(&[FAILED])?;
                writer.put(&(tag as f64).to_le_bytes())?;
                writer.text(error.code.as_str().as_bytes())?;
                writer.text(error.message.as_bytes())
            }
        }
    }
}

impl Record for Task {
    fn inline_bytes(&self) -> usize {
        10 + field_bytes(self.request_id.len()) + field_bytes(self.invoker_context.len()) + payload_bytes(&self.payload)
    }

    fn write(self, writer: &mut RecordWriter) -> napi::Result<()> {
        writer.put(&(self.id as f64).to_le_bytes())?;
        writer.put(&self.attempt.to_le_bytes())?;
        writer.text(self.request_id.as_bytes())?;
        writer.text(self.invoker_context.as_bytes())?;
        writer.payload(self.payload)
    }
}

/// As the worker bootstrap reports it (`convert::function_error_from_js`).
fn function_error_number(function_error: FunctionError) -> u8 {
    match function_error {
        FunctionError::None => 0,
        FunctionError::Handled => 1,
        FunctionError::Unhandled => 2,
    }
}

/// Writes records into the shared buffer, and makes what they lend.
///
/// It holds the buffer as a pointer, not a slice: JavaScript reads the same
/// bytes during each callback, while the writer lives on.
pub struct RecordWriter {
    env: sys::napi_env,
    arena: *mut u8,
    capacity: usize,
    at: usize,
    count: u32,
    lent: Vec<sys::napi_value>,
}

impl RecordWriter {
    /// A writer into the `capacity` bytes at `arena`.
    ///
    /// # Safety
    /// They are the bytes of a Buffer of `env`, kept alive while the writer
    /// is used, on the JavaScript thread of `env`, and written by nothing else.
    pub unsafe fn new(env: sys::napi_env, arena: *mut u8, capacity: usize) -> RecordWriter {
        RecordWriter { env, arena, capacity, at: 0, count: 0, lent: Vec::new() }
    }

    /// Whether `record` fits after what is written (it always fits in an empty arena).
    pub fn has_room_for(&self, record: &impl Record) -> bool {
        self.count == 0 || self.at + record.inline_bytes() <= self.capacity
    }

    pub fn push(&mut self, record: impl Record) -> napi::Result<()> {
        record.write(self)?;
        self.count += 1;
        Ok(())
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// `count` and `lent` as the callback takes them, and a fresh start.
    pub fn take(&mut self) -> napi::Result<(u32, sys::napi_value)> {
        let count = std::mem::take(&mut self.count);
        self.at = 0;
        let lent = std::mem::take(&mut self.lent);
        let mut value = ptr::null_mut();
        // SAFETY: on the JavaScript thread of `env`, inside the caller's handle scope.
        unsafe {
            if lent.is_empty() {
                check(sys::napi_get_undefined(self.env, &mut value))?;
            } else {
                check(sys::napi_create_array_with_length(self.env, lent.len(), &mut value))?;
                for (index, item) in lent.into_iter().enumerate() {
                    check(sys::napi_set_element(self.env, value, index as u32, item))?;
                }
            }
        }
        Ok((count, value))
    }

    fn put(&mut self, bytes: &[u8]) -> napi::Result<()> {
        if bytes.len() > self.capacity - self.at {
            // `inline_bytes` and the writing disagree: a bug, refused rather than written past the end.
            return Err(napi::Error::from_reason("a record does not fit in the shared buffer"));
        }
        // SAFETY: within the `capacity` bytes at `arena` (checked above), which `new`'s caller vouches for.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), self.arena.add(self.at), bytes.len()) };
        self.at += bytes.len();
        Ok(())
    }

    fn lend(&mut self, value: sys::napi_value) -> napi::Result<()> {
        self.put(&(LENT | self.lent.len() as u32).to_le_bytes())?;
        self.lent.push(value);
        Ok(())
    }

    /// A field's bytes in the buffer, after their length.
    fn put_inline(&mut self, bytes: &[u8]) -> napi::Result<()> {
        self.put(&(bytes.len() as u32).to_le_bytes())?;
        self.put(bytes)
    }

    fn text(&mut self, text: &[u8]) -> napi::Result<()> {
        if text.len() <= INLINE_MAX {
            return self.put_inline(text);
        }
        let mut value = ptr::null_mut();
        // SAFETY: as in `take`; text fields are UTF-8 (Rust strings).
        check(unsafe { sys::napi_create_string_utf8(self.env, text.as_ptr().cast(), text.len() as isize, &mut value) })?;
        self.lend(value)
    }

    fn payload(&mut self, payload: Payload) -> napi::Result<()> {
        let bytes = match payload {
            Payload::Text(text) => {
                self.put(&[TEXT])?;
                return self.text(&text);
            }
            Payload::Binary(bytes) => bytes,
        };
        self.put(&[BYTES])?;
        if bytes.len() <= INLINE_MAX {
            return self.put_inline(&bytes);
        }
        // SAFETY: as in `take`.
        let value = unsafe { JsPayload::to_napi_value(self.env, JsPayload(Payload::Binary(bytes)))? };
        self.lend(value)
    }
}

fn check(status: sys::napi_status) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::new(napi::Status::from(status), "cannot hand records to JavaScript".to_string()))
    }
}
