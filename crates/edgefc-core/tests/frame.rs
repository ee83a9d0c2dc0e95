//! The codec: every frame kind round-trips, the documented layout holds, and
//! malformed input is rejected rather than misread.

use bytes::{BufMut, Bytes, BytesMut};
use edgefc_core::frame::{FrameError, HEADER_LEN, PROTOCOL_VERSION};
use edgefc_core::{ErrorCode, Frame, FrameCodec, FunctionError, Payload};
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
            target: "acs:fc:::service:EdgeFC:function:helloworld".into(),
            invoker_context: "eyJjdXN0b20iOnt9fQ==".into(),
            payload: Payload::Binary(Bytes::from_static(&[0, 1, 255])),
        },
        Frame::Invoke {
            id: 1,
            asynchronous: false,
            target: "id".into(),
            invoker_context: String::new(),
            payload: Payload::text("中文 text"),
        },
        Frame::Accepted { id: 2, invocation_id: "abc".into() },
        Frame::Result { id: 3, status: 200, function_error: FunctionError::None, payload: Payload::empty_text() },
        Frame::Result { id: 4, status: 200, function_error: FunctionError::Handled, payload: Payload::Binary(Bytes::new()) },
        Frame::Failure { id: 5, code: ErrorCode::QueueFull, message: "full".into() },
        Frame::Task { id: 6, request_id: "r".into(), invoker_context: "c".into(), payload: Payload::text("t") },
        Frame::TaskDone { id: 7, function_error: FunctionError::Unhandled, payload: Payload::text("{}") },
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
        target: "f".into(),
        invoker_context: String::new(),
        payload: Payload::text("hi"),
    };
    let bytes = encode(&frame);
    let expected: Vec<u8> = [
        &[19, 0, 0, 0][..],           // length of what follows: 12 + 3 + 2 + 2
        &[3],                         // kind Invoke
        &[0x01 | 0x04],               // flags TEXT | ASYNC
        &[0, 0],                      // code
        &[0x02, 0x01, 0, 0, 0, 0, 0, 0], // id
        &[1, 0, b'f'],                // field: target
        &[0, 0],                      // field: invoker context
        b"hi",                        // payload, raw
    ]
    .concat();
    assert_eq!(&bytes[..], &expected[..]);
    assert_eq!(HEADER_LEN, 16);
}

#[test]
fn payload_bytes_are_carried_raw() {
    let payload: Vec<u8> = (0..=255).collect();
    let bytes = encode(&Frame::TaskDone { id: 1, function_error: FunctionError::None, payload: Payload::Binary(payload.clone().into()) });
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
    let frame = Frame::TaskDone { id: 1, function_error: FunctionError::None, payload: Payload::Binary(vec![0; 1 << 20].into()) };
    assert!(matches!(codec().encode(&frame, &mut BytesMut::new()), Err(FrameError::TooLarge { .. })));
}

#[test]
fn the_largest_allowed_payload_fits() {
    let frame = Frame::Invoke {
        id: 1,
        asynchronous: false,
        target: "t".repeat(u16::MAX as usize),
        invoker_context: "c".repeat(u16::MAX as usize),
        payload: Payload::Binary(vec![7; 1024].into()),
    };
    let mut buffer = encode(&frame);
    assert_eq!(codec().decode(&mut buffer).unwrap(), Some(frame));
}

#[test]
fn a_partial_frame_waits_for_more_bytes() {
    let whole = encode(&Frame::Accepted { id: 9, invocation_id: "x".into() });
    for cut in 0..whole.len() {
        let mut partial = BytesMut::from(&whole[..cut]);
        assert_eq!(codec().decode(&mut partial).unwrap(), None, "cut at {cut}");
    }
}

#[test]
fn a_truncated_frame_at_end_of_stream_is_an_error() {
    let whole = encode(&Frame::Accepted { id: 9, invocation_id: "x".into() });
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
