//! The wire format: one binary frame per message, length-prefixed.
//!
//! ```text
//!  0      4      5       6       8              16
//!  +------+------+-------+-------+--------------+--------------------+---------+
//!  | len  | kind | flags | code  | id           | fields             | payload |
//!  | u32  | u8   | u8    | u16   | u64          | (u16 len + UTF-8)* | bytes   |
//!  +------+------+-------+-------+--------------+--------------------+---------+
//! ```
//!
//! All integers are little-endian. `len` counts every byte after itself. Each
//! kind has a fixed number of string fields; whatever follows them is the
//! payload, carried raw (never base64, never JSON-wrapped). `docs/protocol.md`
//! is the user-facing description of the same layout.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::ErrorCode;

/// Bumped whenever the layout or the meaning of a field changes.
pub const PROTOCOL_VERSION: u16 = 3;

/// Bytes before the first field: len + kind + flags + code + id.
pub const HEADER_LEN: usize = 16;

/// The longest string field: its length travels as a `u16`.
pub const MAX_FIELD_LEN: usize = u16::MAX as usize;

/// Room for the fields on top of the payload limit: at most two string
/// fields of at most `u16::MAX` bytes each, with their length prefixes,
/// and Invoke's caller timeout.
pub const MAX_FIELDS_LEN: usize = 4 + 2 * (2 + u16::MAX as usize);

const KIND_HELLO: u8 = 1;
const KIND_WELCOME: u8 = 2;
const KIND_INVOKE: u8 = 3;
const KIND_ACCEPTED: u8 = 4;
const KIND_RESULT: u8 = 5;
const KIND_FAILURE: u8 = 6;
const KIND_TASK: u8 = 7;
const KIND_TASK_DONE: u8 = 8;
const KIND_PUBLISH: u8 = 9;
const KIND_REQUEST: u8 = 10;
const KIND_SUBSCRIBE: u8 = 11;
const KIND_MESSAGE: u8 = 12;

/// The payload is UTF-8 text (a JS string), not binary (a Buffer).
const FLAG_TEXT: u8 = 0x01;
/// Hello: this connection hosts a function and receives its tasks.
const FLAG_SERVE: u8 = 0x02;
/// Invoke: fire and forget; the runtime answers with `Accepted`.
const FLAG_ASYNC: u8 = 0x04;
/// Result / TaskDone: the handler reported an error through its callback.
const FLAG_HANDLED: u8 = 0x08;
/// Result / TaskDone: the handler threw, crashed or timed out.
const FLAG_UNHANDLED: u8 = 0x10;

/// Bytes that keep whether they were a string or a Buffer on the JS side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Text(Bytes),
    Binary(Bytes),
}

impl Payload {
    pub fn empty_text() -> Payload {
        Payload::Text(Bytes::new())
    }

    pub fn text(text: impl Into<String>) -> Payload {
        Payload::Text(Bytes::from(text.into()))
    }

    pub fn bytes(&self) -> &Bytes {
        match self {
            Payload::Text(bytes) | Payload::Binary(bytes) => bytes,
        }
    }

    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    fn flag(&self) -> u8 {
        match self {
            Payload::Text(_) => FLAG_TEXT,
            Payload::Binary(_) => 0,
        }
    }
}

/// How a function invocation ended, as seen by the caller (`functionError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionError {
    None,
    /// The handler called `callback(err)`.
    Handled,
    /// The handler threw, rejected, crashed or ran past its timeout.
    Unhandled,
}

impl FunctionError {
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            FunctionError::None => None,
            FunctionError::Handled => Some("Handled"),
            FunctionError::Unhandled => Some("Unhandled"),
        }
    }

    fn flag(self) -> u8 {
        match self {
            FunctionError::None => 0,
            FunctionError::Handled => FLAG_HANDLED,
            FunctionError::Unhandled => FLAG_UNHANDLED,
        }
    }

    fn from_flags(flags: u8) -> Result<FunctionError, FrameError> {
        match (flags & FLAG_HANDLED != 0, flags & FLAG_UNHANDLED != 0) {
            (false, false) => Ok(FunctionError::None),
            (true, false) => Ok(FunctionError::Handled),
            (false, true) => Ok(FunctionError::Unhandled),
            (true, true) => Err(FrameError::Malformed("both Handled and Unhandled set")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// First frame of every connection, client to runtime.
    Hello { version: u16, serve: bool, token: String },
    /// The runtime accepted the Hello; `max_payload` is the largest payload it takes.
    Welcome { version: u16, max_payload: u64 },
    /// `default_timeout_secs` (in the header's code slot; 0 for none) is
    /// how long the caller's API lets a function run when the function's
    /// config sets no `timeoutMs` of its own.
    /// `caller_timeout_ms` (a `u32` before the string fields; 0 for none)
    /// is how long the caller waits for the answer: the timeout of a call
    /// to another gateway.
    Invoke {
        id: u64,
        asynchronous: bool,
        default_timeout_secs: u16,
        caller_timeout_ms: u32,
        target: String,
        invoker_context: String,
        payload: Payload,
    },
    /// The runtime took a request it answers no further: an Async invoke
    /// (`accepted_id` is its invocation id), a publish (the message id) or a
    /// subscription (empty).
    Accepted { id: u64, accepted_id: String },
    /// A sync invocation finished. `reply_context` is what the handler said
    /// about its payload (JSON, e.g. its content type), or empty.
    Result { id: u64, status: u16, function_error: FunctionError, reply_context: String, payload: Payload },
    /// A request (or, with id 0, the connection) failed.
    Failure { id: u64, code: ErrorCode, message: String },
    /// Runtime to a function's worker: run the handler once. `attempt`
    /// (1, 2, …) travels in the header's code slot.
    Task { id: u64, attempt: u16, request_id: String, invoker_context: String, payload: Payload },
    /// Worker to runtime: the handler finished. `status` travels in the
    /// header's code slot (0 when the handler gave none: 200).
    TaskDone { id: u64, status: u16, function_error: FunctionError, reply_context: String, payload: Payload },
    /// Client to runtime: route a message; answered by `Accepted` or `Failure`.
    Publish { id: u64, topic: String, payload: Payload },
    /// Client to runtime: a runtime service (`credentials`, `stats`);
    /// answered by `Result` (JSON payload) or `Failure`.
    Request { id: u64, operation: String },
    /// Client to runtime: receive every routed message whose topic matches
    /// `topic_filter` as `Message` frames carrying this `id`.
    Subscribe { id: u64, topic_filter: String },
    /// Runtime to subscriber: a message that was published.
    Message { id: u64, source: String, topic: String, payload: Payload },
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    #[error("a string field is longer than 65535 bytes")]
    FieldTooLong,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Encodes and decodes [`Frame`]s; frames longer than `max_frame_len` are
/// rejected before their body is buffered.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame_len: usize,
}

impl FrameCodec {
    /// A codec that admits payloads up to `max_payload` bytes.
    pub fn for_max_payload(max_payload: usize) -> FrameCodec {
        FrameCodec { max_frame_len: HEADER_LEN + MAX_FIELDS_LEN + max_payload }
    }

    /// A codec that admits frames up to `max_frame_len` bytes in all, e.g.
    /// a Hello, before anything else is allowed.
    pub fn for_max_frame(max_frame_len: usize) -> FrameCodec {
        FrameCodec { max_frame_len }
    }

    /// A codec for the sending side, bounded only by the `u32` length field:
    /// senders check the peer's payload limit before queueing a frame.
    pub fn unlimited() -> FrameCodec {
        FrameCodec { max_frame_len: u32::MAX as usize }
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let body_len = u32::from_le_bytes([src[0], src[1], src[2], src[3]]) as usize;
        let frame_len = 4 + body_len;
        if frame_len > self.max_frame_len {
            return Err(FrameError::TooLarge { len: frame_len, max: self.max_frame_len });
        }
        if frame_len < HEADER_LEN {
            return Err(FrameError::Malformed("frame shorter than its header"));
        }
        if src.len() < frame_len {
            src.reserve(frame_len - src.len());
            return Ok(None);
        }
        let mut body = src.split_to(frame_len).freeze();
        body.advance(4);
        decode_body(body).map(Some)
    }
}

fn decode_body(mut body: Bytes) -> Result<Frame, FrameError> {
    let kind = body.get_u8();
    let flags = body.get_u8();
    let code = body.get_u16_le();
    let id = body.get_u64_le();
    let frame = match kind {
        KIND_HELLO => Frame::Hello { version: code, serve: flags & FLAG_SERVE != 0, token: take_field(&mut body)? },
        KIND_WELCOME => Frame::Welcome { version: code, max_payload: id },
        KIND_INVOKE => Frame::Invoke {
            id,
            asynchronous: flags & FLAG_ASYNC != 0,
            default_timeout_secs: code,
            caller_timeout_ms: take_u32(&mut body)?,
            target: take_field(&mut body)?,
            invoker_context: take_field(&mut body)?,
            payload: take_payload(flags, &mut body)?,
        },
        KIND_ACCEPTED => Frame::Accepted { id, accepted_id: take_field(&mut body)? },
        KIND_RESULT => Frame::Result {
            id,
            status: code,
            function_error: FunctionError::from_flags(flags)?,
            reply_context: take_field(&mut body)?,
            payload: take_payload(flags, &mut body)?,
        },
        KIND_FAILURE => Frame::Failure {
            id,
            code: ErrorCode::from_wire(code).ok_or(FrameError::Malformed("unknown error code"))?,
            message: take_field(&mut body)?,
        },
        KIND_TASK => Frame::Task {
            id,
            attempt: code,
            request_id: take_field(&mut body)?,
            invoker_context: take_field(&mut body)?,
            payload: take_payload(flags, &mut body)?,
        },
        KIND_TASK_DONE => Frame::TaskDone {
            id,
            status: code,
            function_error: FunctionError::from_flags(flags)?,
            reply_context: take_field(&mut body)?,
            payload: take_payload(flags, &mut body)?,
        },
        KIND_PUBLISH => Frame::Publish { id, topic: take_field(&mut body)?, payload: take_payload(flags, &mut body)? },
        KIND_REQUEST => Frame::Request { id, operation: take_field(&mut body)? },
        KIND_SUBSCRIBE => Frame::Subscribe { id, topic_filter: take_field(&mut body)? },
        KIND_MESSAGE => Frame::Message {
            id,
            source: take_field(&mut body)?,
            topic: take_field(&mut body)?,
            payload: take_payload(flags, &mut body)?,
        },
        other => return Err(FrameError::UnknownKind(other)),
    };
    if !body.is_empty() && !frame_has_payload(&frame) {
        return Err(FrameError::Malformed("trailing bytes after the last field"));
    }
    Ok(frame)
}

fn frame_has_payload(frame: &Frame) -> bool {
    matches!(
        frame,
        Frame::Invoke { .. }
            | Frame::Result { .. }
            | Frame::Task { .. }
            | Frame::TaskDone { .. }
            | Frame::Publish { .. }
            | Frame::Message { .. }
    )
}

fn take_u32(body: &mut Bytes) -> Result<u32, FrameError> {
    if body.len() < 4 {
        return Err(FrameError::Malformed("truncated fixed field"));
    }
    Ok(body.get_u32_le())
}

fn take_field(body: &mut Bytes) -> Result<String, FrameError> {
    if body.len() < 2 {
        return Err(FrameError::Malformed("truncated field length"));
    }
    let len = body.get_u16_le() as usize;
    if body.len() < len {
        return Err(FrameError::Malformed("truncated field"));
    }
    let raw = body.split_to(len);
    String::from_utf8(raw.to_vec()).map_err(|_| FrameError::Malformed("field is not UTF-8"))
}

fn take_payload(flags: u8, body: &mut Bytes) -> Result<Payload, FrameError> {
    let bytes = std::mem::take(body);
    if flags & FLAG_TEXT != 0 {
        if std::str::from_utf8(&bytes).is_err() {
            return Err(FrameError::Malformed("text payload is not UTF-8"));
        }
        Ok(Payload::Text(bytes))
    } else {
        Ok(Payload::Binary(bytes))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode(&frame, dst)
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_leaving_out(frame, dst, usize::MAX).map(|_| ())
    }
}

impl FrameCodec {
    /// Encodes `frame` at the end of `dst`, except a payload of
    /// `leave_out_from` bytes or more: that is returned instead (sharing its
    /// bytes, not copied), to be written right after what `dst` got.
    pub fn encode_leaving_out(
        &mut self,
        frame: &Frame,
        dst: &mut BytesMut,
        leave_out_from: usize,
    ) -> Result<Option<Bytes>, FrameError> {
        let (kind, flags, code, id, field_slots, field_count, payload): (u8, u8, u16, u64, [&str; 2], usize, Option<&Payload>) =
            match frame {
                Frame::Hello { version, serve, token } => {
                    (KIND_HELLO, if *serve { FLAG_SERVE } else { 0 }, *version, 0, [token, ""], 1, None)
                }
                Frame::Welcome { version, max_payload } => (KIND_WELCOME, 0, *version, *max_payload, ["", ""], 0, None),
                Frame::Invoke {
                    id,
                    asynchronous,
                    default_timeout_secs,
                    caller_timeout_ms: _,
                    target,
                    invoker_context,
                    payload,
                } => (
                    KIND_INVOKE,
                    payload.flag() | if *asynchronous { FLAG_ASYNC } else { 0 },
                    *default_timeout_secs,
                    *id,
                    [target, invoker_context],
                    2,
                    Some(payload),
                ),
                Frame::Accepted { id, accepted_id } => (KIND_ACCEPTED, 0, 0, *id, [accepted_id, ""], 1, None),
                Frame::Result { id, status, function_error, reply_context, payload } => {
                    (KIND_RESULT, payload.flag() | function_error.flag(), *status, *id, [reply_context, ""], 1, Some(payload))
                }
                Frame::Failure { id, code, message } => (KIND_FAILURE, 0, *code as u16, *id, [message, ""], 1, None),
                Frame::Task { id, attempt, request_id, invoker_context, payload } => {
                    (KIND_TASK, payload.flag(), *attempt, *id, [request_id, invoker_context], 2, Some(payload))
                }
                Frame::TaskDone { id, status, function_error, reply_context, payload } => {
                    (KIND_TASK_DONE, payload.flag() | function_error.flag(), *status, *id, [reply_context, ""], 1, Some(payload))
                }
                Frame::Publish { id, topic, payload } => (KIND_PUBLISH, payload.flag(), 0, *id, [topic, ""], 1, Some(payload)),
                Frame::Request { id, operation } => (KIND_REQUEST, 0, 0, *id, [operation, ""], 1, None),
                Frame::Subscribe { id, topic_filter } => (KIND_SUBSCRIBE, 0, 0, *id, [topic_filter, ""], 1, None),
                Frame::Message { id, source, topic, payload } => {
                    (KIND_MESSAGE, payload.flag(), 0, *id, [source, topic], 2, Some(payload))
                }
            };
        let fields = &field_slots[..field_count];
        if fields.iter().any(|field| field.len() > MAX_FIELD_LEN) {
            return Err(FrameError::FieldTooLong);
        }
        // Invoke alone has a fixed field before its strings.
        let caller_timeout_ms = match frame {
            Frame::Invoke { caller_timeout_ms, .. } => Some(*caller_timeout_ms),
            _ => None,
        };
        let fields_len: usize = fields.iter().map(|field| 2 + field.len()).sum::<usize>() + caller_timeout_ms.map_or(0, |_| 4);
        let payload_len = payload.map_or(0, Payload::len);
        let frame_len = HEADER_LEN + fields_len + payload_len;
        if frame_len > self.max_frame_len {
            return Err(FrameError::TooLarge { len: frame_len, max: self.max_frame_len });
        }
        dst.reserve(if payload_len >= leave_out_from { frame_len - payload_len } else { frame_len });
        dst.put_u32_le((frame_len - 4) as u32);
        dst.put_u8(kind);
        dst.put_u8(flags);
        dst.put_u16_le(code);
        dst.put_u64_le(id);
        if let Some(caller_timeout_ms) = caller_timeout_ms {
            dst.put_u32_le(caller_timeout_ms);
        }
        for field in fields {
            dst.put_u16_le(field.len() as u16);
            dst.put_slice(field.as_bytes());
        }
        match payload {
            Some(payload) if payload_len >= leave_out_from => Ok(Some(payload.bytes().clone())),
            Some(payload) => {
                dst.put_slice(payload.bytes());
                Ok(None)
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    // The codec: every frame kind round-trips, the documented layout holds, and
    // malformed input is rejected rather than misread.
    use super::{Frame, FrameCodec, FrameError, FunctionError, Payload, HEADER_LEN, PROTOCOL_VERSION};
    use crate::error::ErrorCode;
    use bytes::{BufMut, Bytes, BytesMut};
    use tokio_util::codec::{Decoder, Encoder};

    fn codec() -> FrameCodec {
        FrameCodec::for_max_payload(1024)
    }

    fn encode(frame: &Frame) -> BytesMut {
        let mut buffer = BytesMut::new();
        codec().encode(frame, &mut buffer).expect("encodes");
        buffer
    }

    fn every_kind() -> Vec<Frame> {
        vec![
            Frame::Hello { version: PROTOCOL_VERSION, serve: true, token: "secret".into() },
            Frame::Hello { version: 9, serve: false, token: String::new() },
            Frame::Welcome { version: PROTOCOL_VERSION, max_payload: 6 << 20 },
            Frame::Invoke {
                id: u64::MAX,
                asynchronous: true,
                default_timeout_secs: 300,
                caller_timeout_ms: 2500,
                target: "acs:fc:::service:EdgeFC:function:helloworld".into(),
                invoker_context: "eyJjdXN0b20iOnt9fQ==".into(),
                payload: Payload::Binary(Bytes::from_static(&[0, 1, 255])),
            },
            Frame::Invoke {
                id: 1,
                asynchronous: false,
                default_timeout_secs: 0,
                caller_timeout_ms: 0,
                target: "id".into(),
                invoker_context: String::new(),
                payload: Payload::text("中文 text"),
            },
            Frame::Accepted { id: 2, accepted_id: "abc".into() },
            Frame::Result {
                id: 3,
                status: 200,
                function_error: FunctionError::None,
                reply_context: String::new(),
                payload: Payload::empty_text(),
            },
            Frame::Result {
                id: 4,
                status: 404,
                function_error: FunctionError::Handled,
                reply_context: r#"{"contentType":"application/json"}"#.into(),
                payload: Payload::Binary(Bytes::new()),
            },
            Frame::Failure { id: 5, code: ErrorCode::QueueFull, message: "full".into() },
            Frame::Task { id: 6, attempt: 2, request_id: "r".into(), invoker_context: "c".into(), payload: Payload::text("t") },
            Frame::TaskDone {
                id: 7,
                status: 0,
                function_error: FunctionError::Unhandled,
                reply_context: String::new(),
                payload: Payload::text("{}"),
            },
            Frame::TaskDone {
                id: 8,
                status: 201,
                function_error: FunctionError::None,
                reply_context: "{}".into(),
                payload: Payload::text("made"),
            },
            Frame::Publish { id: 8, topic: "/hello/world".into(), payload: Payload::Binary(Bytes::from_static(b"\x00\xff")) },
            Frame::Request { id: 9, operation: "credentials".into() },
            Frame::Subscribe { id: 10, topic_filter: "/hello/#".into() },
            Frame::Message { id: 10, source: "fn".into(), topic: "/hello/world".into(), payload: Payload::text("hi") },
        ]
    }

    #[test]
    fn every_frame_kind_round_trips() {
        for frame in every_kind() {
            let mut buffer = encode(&frame);
            let decoded = codec().decode(&mut buffer).expect("decodes").expect("whole frame");
            assert_eq!(decoded, frame);
            assert!(buffer.is_empty(), "the decoder consumed exactly one frame");
        }
    }

    #[test]
    fn frames_decode_from_a_stream_split_at_every_byte() {
        let mut stream = BytesMut::new();
        for frame in every_kind() {
            stream.extend_from_slice(&encode(&frame));
        }
        let mut decoder = codec();
        let mut received = BytesMut::new();
        let mut decoded = Vec::new();
        for byte in stream.iter() {
            received.put_u8(*byte);
            while let Some(frame) = decoder.decode(&mut received).expect("valid stream") {
                decoded.push(frame);
            }
        }
        assert_eq!(decoded, every_kind());
    }

    #[test]
    fn layout_matches_the_protocol_document() {
        let frame = Frame::Invoke {
            id: 0x0102,
            asynchronous: true,
            default_timeout_secs: 0,
            caller_timeout_ms: 0x0304,
            target: "f".into(),
            invoker_context: String::new(),
            payload: Payload::text("hi"),
        };
        let bytes = encode(&frame);
        let expected: Vec<u8> = [
            &[23, 0, 0, 0][..],              // length of what follows: 12 + 4 + 3 + 2 + 2
            &[3],                            // kind Invoke
            &[0x01 | 0x04],                  // flags TEXT | ASYNC
            &[0, 0],                         // code
            &[0x02, 0x01, 0, 0, 0, 0, 0, 0], // id
            &[0x04, 0x03, 0, 0],             // caller timeout (ms)
            &[1, 0, b'f'],                   // field: target
            &[0, 0],                         // field: invoker context
            b"hi",                           // payload, raw
        ]
        .concat();
        assert_eq!(&bytes[..], &expected[..]);
        assert_eq!(HEADER_LEN, 16);
    }

    #[test]
    fn payload_bytes_are_carried_raw() {
        let payload: Vec<u8> = (0..=255).collect();
        let bytes = encode(&Frame::TaskDone {
            id: 1,
            status: 0,
            function_error: FunctionError::None,
            reply_context: String::new(),
            payload: Payload::Binary(payload.clone().into()),
        });
        assert_eq!(&bytes[bytes.len() - 256..], &payload[..]);
    }

    #[test]
    fn an_oversized_frame_is_rejected_from_its_header_alone() {
        let mut buffer = BytesMut::new();
        buffer.put_u32_le(u32::MAX);
        buffer.put_u8(3);
        match codec().decode(&mut buffer) {
            Err(FrameError::TooLarge { .. }) => {}
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn an_oversized_payload_is_refused_by_the_encoder() {
        let frame = Frame::TaskDone {
            id: 1,
            status: 0,
            function_error: FunctionError::None,
            reply_context: String::new(),
            payload: Payload::Binary(vec![0; 1 << 20].into()),
        };
        assert!(matches!(codec().encode(&frame, &mut BytesMut::new()), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn the_largest_allowed_payload_fits() {
        let frame = Frame::Invoke {
            id: 1,
            asynchronous: false,
            default_timeout_secs: 0,
            caller_timeout_ms: u32::MAX,
            target: "t".repeat(u16::MAX as usize),
            invoker_context: "c".repeat(u16::MAX as usize),
            payload: Payload::Binary(vec![7; 1024].into()),
        };
        let mut buffer = encode(&frame);
        assert_eq!(codec().decode(&mut buffer).unwrap(), Some(frame));
    }

    #[test]
    fn a_partial_frame_waits_for_more_bytes() {
        let whole = encode(&Frame::Accepted { id: 9, accepted_id: "x".into() });
        for cut in 0..whole.len() {
            let mut partial = BytesMut::from(&whole[..cut]);
            assert_eq!(codec().decode(&mut partial).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn a_truncated_frame_at_end_of_stream_is_an_error() {
        let whole = encode(&Frame::Accepted { id: 9, accepted_id: "x".into() });
        let mut partial = BytesMut::from(&whole[..whole.len() - 1]);
        assert!(codec().decode_eof(&mut partial).is_err());
    }

    fn raw_frame(kind: u8, flags: u8, code: u16, body: &[u8]) -> BytesMut {
        let mut buffer = BytesMut::new();
        buffer.put_u32_le((12 + body.len()) as u32);
        buffer.put_u8(kind);
        buffer.put_u8(flags);
        buffer.put_u16_le(code);
        buffer.put_u64_le(1);
        buffer.put_slice(body);
        buffer
    }

    #[test]
    fn malformed_frames_are_rejected() {
        let cases: Vec<(&str, BytesMut)> = vec![
            ("unknown kind", raw_frame(99, 0, 0, &[])),
            ("kind zero", raw_frame(0, 0, 0, &[])),
            ("field length past the end", raw_frame(6, 0, 1, &[10, 0, b'a'])),
            ("missing field", raw_frame(4, 0, 0, &[])),
            ("field not UTF-8", raw_frame(4, 0, 0, &[2, 0, 0xff, 0xfe])),
            ("text payload not UTF-8", raw_frame(8, 0x01, 0, &[0xc3, 0x28])),
            ("Handled and Unhandled at once", raw_frame(8, 0x08 | 0x10, 0, &[])),
            ("unknown error code", raw_frame(6, 0, 999, &[0, 0])),
            ("trailing bytes", raw_frame(4, 0, 0, &[1, 0, b'a', b'!'])),
            ("shorter than a header", {
                let mut buffer = BytesMut::new();
                buffer.put_u32_le(3);
                buffer.put_slice(&[1, 2, 3]);
                buffer
            }),
        ];
        for (name, mut bytes) in cases {
            assert!(codec().decode(&mut bytes).is_err(), "{name} was accepted");
        }
    }

    /// A bounded property test in place of a fuzzer (cargo-fuzz needs a
    /// nightly toolchain): every frame kind cut short, every byte of it
    /// changed, and pseudo-random bodies behind valid headers decode to a
    /// frame or an error, never a panic, and never consume past the input.
    #[test]
    fn damaged_frames_are_an_error_never_a_panic() {
        for frame in every_kind() {
            let encoded = encode(&frame);
            for end in 0..encoded.len() {
                let mut cut = BytesMut::from(&encoded[..end]);
                assert!(matches!(codec().decode(&mut cut), Ok(None) | Err(_)), "{frame:?} cut at {end}");
            }
            for at in 0..encoded.len() {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut changed = encoded.clone();
                    changed[at] ^= flip;
                    let _ = codec().decode(&mut changed);
                }
            }
        }
        let mut random = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let mut body = vec![0; random.usize(..64)];
            random.fill(&mut body);
            let mut bytes = raw_frame(random.u8(..14), random.u8(..), random.u16(..), &body);
            let _ = codec().decode(&mut bytes);
        }
    }
}
