//! How an accepted invocation and a dead letter are laid out in the store:
//! a version byte, then length-prefixed fields, little-endian. Decoding
//! checks every length, so a damaged record is an error, never a panic.

use bytes::{Buf, BufMut, Bytes};

use crate::proto::frame::Payload;

/// Bumped whenever the layout or the meaning of a field changes; records
/// of every earlier version still read back.
const VERSION: u8 = 2;
/// Version 1 lacked `default_timeout_secs` (read back as 0).
const VERSION_1: u8 = 1;

const PAYLOAD_TEXT: u8 = 0;
const PAYLOAD_BINARY: u8 = 1;

/// An accepted invocation, from its accept to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The function it was accepted for (its `functionId`, which outlives a
    /// change of the config's order).
    pub function_id: String,
    /// Stable across attempts and replays; what handlers deduplicate on.
    pub invocation_id: String,
    pub invoker_context: String,
    pub payload: Payload,
    /// The attempt that runs next: 1 for the first.
    pub attempt: u32,
    /// Milliseconds since the Unix epoch.
    pub accepted_at_ms: u64,
    /// The next attempt does not start before this time (retry back-off).
    pub not_before_ms: u64,
    /// How many times it came back from the dead letters.
    pub replays: u32,
    /// The caller's API's timeout, for a function that configures none (0: none).
    pub default_timeout_secs: u16,
}

/// An invocation whose last attempt failed, or that grew too old.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub invocation: Invocation,
    /// The last attempt's error body, or why it was given up.
    pub error: String,
    pub dead_at_ms: u64,
}

/// A message for an MQTT broker, in the outbox until the broker acknowledged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// The broker's name in the config.
    pub broker: String,
    pub topic: String,
    pub payload: Payload,
    /// Milliseconds since the Unix epoch.
    pub accepted_at_ms: u64,
}

/// A record that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("damaged record: {0}")]
pub struct Damaged(&'static str);

impl Invocation {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size());
        out.put_u8(VERSION);
        self.put(&mut out);
        out
    }

    pub fn decode(mut bytes: &[u8]) -> Result<Invocation, Damaged> {
        let version = take_version(&mut bytes)?;
        let invocation = Invocation::take(&mut bytes, version)?;
        finished(bytes)?;
        Ok(invocation)
    }

    /// The length of [`encode`](Invocation::encode)'s record: what the
    /// store counts for it, whether written now or read back later.
    pub fn size(&self) -> usize {
        // Version, payload kind, four length prefixes, attempt, two times, replays, default timeout.
        1 + 1
            + 4 * 4
            + 4
            + 8
            + 8
            + 4
            + 2
            + self.function_id.len()
            + self.invocation_id.len()
            + self.invoker_context.len()
            + self.payload.len()
    }

    fn put(&self, out: &mut Vec<u8>) {
        put_bytes(out, self.function_id.as_bytes());
        put_bytes(out, self.invocation_id.as_bytes());
        put_bytes(out, self.invoker_context.as_bytes());
        put_payload(out, &self.payload);
        out.put_u32_le(self.attempt);
        out.put_u64_le(self.accepted_at_ms);
        out.put_u64_le(self.not_before_ms);
        out.put_u32_le(self.replays);
        out.put_u16_le(self.default_timeout_secs);
    }

    fn take(bytes: &mut &[u8], version: u8) -> Result<Invocation, Damaged> {
        let function_id = take_string(bytes)?;
        let invocation_id = take_string(bytes)?;
        let invoker_context = take_string(bytes)?;
        let payload = take_payload(bytes)?;
        Ok(Invocation {
            function_id,
            invocation_id,
            invoker_context,
            payload,
            attempt: take_u32(bytes)?,
            accepted_at_ms: take_u64(bytes)?,
            not_before_ms: take_u64(bytes)?,
            replays: take_u32(bytes)?,
            default_timeout_secs: if version == VERSION_1 { 0 } else { take_u16(bytes)? },
        })
    }
}

impl DeadLetter {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.invocation.size() + 4 + self.error.len() + 8);
        out.put_u8(VERSION);
        self.invocation.put(&mut out);
        put_bytes(&mut out, self.error.as_bytes());
        out.put_u64_le(self.dead_at_ms);
        out
    }

    pub fn decode(mut bytes: &[u8]) -> Result<DeadLetter, Damaged> {
        let version = take_version(&mut bytes)?;
        let invocation = Invocation::take(&mut bytes, version)?;
        let error = take_string(&mut bytes)?;
        let dead_at_ms = take_u64(&mut bytes)?;
        finished(bytes)?;
        Ok(DeadLetter { invocation, error, dead_at_ms })
    }
}

impl OutboxMessage {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size());
        out.put_u8(VERSION);
        put_bytes(&mut out, self.broker.as_bytes());
        put_bytes(&mut out, self.topic.as_bytes());
        put_payload(&mut out, &self.payload);
        out.put_u64_le(self.accepted_at_ms);
        out
    }

    pub fn decode(mut bytes: &[u8]) -> Result<OutboxMessage, Damaged> {
        if take_version(&mut bytes)? != VERSION {
            return Err(Damaged("unknown record version"));
        }
        let message = OutboxMessage {
            broker: take_string(&mut bytes)?,
            topic: take_string(&mut bytes)?,
            payload: take_payload(&mut bytes)?,
            accepted_at_ms: take_u64(&mut bytes)?,
        };
        finished(bytes)?;
        Ok(message)
    }

    /// The length of [`encode`](OutboxMessage::encode)'s record.
    pub fn size(&self) -> usize {
        // Version, three length prefixes, payload kind, the time.
        1 + 3 * 4 + 1 + 8 + self.broker.len() + self.topic.len() + self.payload.len()
    }
}

fn put_payload(out: &mut Vec<u8>, payload: &Payload) {
    out.put_u8(match payload {
        Payload::Text(_) => PAYLOAD_TEXT,
        Payload::Binary(_) => PAYLOAD_BINARY,
    });
    put_bytes(out, payload.bytes());
}

fn take_payload(bytes: &mut &[u8]) -> Result<Payload, Damaged> {
    match take_u8(bytes)? {
        PAYLOAD_TEXT => Ok(Payload::Text(Bytes::from(take_string(bytes)?))),
        PAYLOAD_BINARY => Ok(Payload::Binary(Bytes::copy_from_slice(take_bytes(bytes)?))),
        _ => Err(Damaged("unknown payload kind")),
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.put_u32_le(u32::try_from(bytes.len()).expect("records are far below 4 GiB"));
    out.put_slice(bytes);
}

fn take_version(bytes: &mut &[u8]) -> Result<u8, Damaged> {
    match take_u8(bytes)? {
        version @ (VERSION | VERSION_1) => Ok(version),
        _ => Err(Damaged("unknown record version")),
    }
}

fn finished(bytes: &[u8]) -> Result<(), Damaged> {
    if bytes.is_empty() {
        Ok(())
    } else {
        Err(Damaged("trailing bytes"))
    }
}

fn take_u8(bytes: &mut &[u8]) -> Result<u8, Damaged> {
    if bytes.remaining() < 1 {
        return Err(Damaged("truncated"));
    }
    Ok(bytes.get_u8())
}

fn take_u16(bytes: &mut &[u8]) -> Result<u16, Damaged> {
    if bytes.remaining() < 2 {
        return Err(Damaged("truncated"));
    }
    Ok(bytes.get_u16_le())
}

fn take_u32(bytes: &mut &[u8]) -> Result<u32, Damaged> {
    if bytes.remaining() < 4 {
        return Err(Damaged("truncated"));
    }
    Ok(bytes.get_u32_le())
}

fn take_u64(bytes: &mut &[u8]) -> Result<u64, Damaged> {
    if bytes.remaining() < 8 {
        return Err(Damaged("truncated"));
    }
    Ok(bytes.get_u64_le())
}

fn take_bytes<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], Damaged> {
    let len = take_u32(bytes)? as usize;
    if bytes.len() < len {
        return Err(Damaged("truncated field"));
    }
    let (field, rest) = bytes.split_at(len);
    *bytes = rest;
    Ok(field)
}

fn take_string(bytes: &mut &[u8]) -> Result<String, Damaged> {
    String::from_utf8(take_bytes(bytes)?.to_vec()).map_err(|_| Damaged("text is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(payload: Payload) -> Invocation {
        Invocation {
            function_id: "f".into(),
            invocation_id: "0b6a6c3e-2f0e-4a51-9d6c-1a2b3c4d5e6f".into(),
            invoker_context: "eyJ9".into(),
            payload,
            attempt: 2,
            accepted_at_ms: 1_700_000_000_000,
            not_before_ms: 1_700_000_004_000,
            replays: 1,
            default_timeout_secs: 300,
        }
    }

    #[test]
    fn outbox_messages_read_back_as_written_and_damage_is_an_error() {
        let message = OutboxMessage {
            broker: "hub".into(),
            topic: "up/temperature".into(),
            payload: Payload::Binary(Bytes::from_static(&[0, 1, 255])),
            accepted_at_ms: 7,
        };
        let record = message.encode();
        assert_eq!(record.len(), message.size());
        assert_eq!(OutboxMessage::decode(&record).unwrap(), message);
        for end in 0..record.len() {
            assert!(OutboxMessage::decode(&record[..end]).is_err(), "prefix of {end} bytes");
        }
    }

    #[test]
    fn version_1_records_read_back_without_a_default_timeout() {
        let written = invocation(Payload::text("old"));
        let mut old = written.encode();
        old[0] = VERSION_1;
        old.truncate(old.len() - 2);
        assert_eq!(Invocation::decode(&old).unwrap(), Invocation { default_timeout_secs: 0, ..written.clone() });
        let mut dead = DeadLetter { invocation: written.clone(), error: "e".into(), dead_at_ms: 3 }.encode();
        dead[0] = VERSION_1;
        dead.drain(written.size() - 2..written.size());
        let read = DeadLetter::decode(&dead).unwrap();
        assert_eq!((read.invocation.default_timeout_secs, read.error.as_str(), read.dead_at_ms), (0, "e", 3));
    }

    #[test]
    fn records_read_back_as_written() {
        for payload in [Payload::text("héllo"), Payload::Binary(Bytes::from_static(&[0, 255, 7]))] {
            let written = invocation(payload);
            assert_eq!(written.encode().len(), written.size());
            assert_eq!(Invocation::decode(&written.encode()).unwrap(), written);
            let dead = DeadLetter { invocation: written, error: "{\"errorMessage\":\"x\"}".into(), dead_at_ms: 9 };
            assert_eq!(DeadLetter::decode(&dead.encode()).unwrap(), dead);
        }
    }

    /// A bounded property test in place of a fuzzer: every prefix, every
    /// single-byte change and pseudo-random bytes decode to a record or an
    /// error, never a panic.
    #[test]
    fn damaged_bytes_are_an_error_never_a_panic() {
        let record = DeadLetter { invocation: invocation(Payload::text("payload")), error: "e".into(), dead_at_ms: 1 }.encode();
        for end in 0..record.len() {
            assert!(DeadLetter::decode(&record[..end]).is_err(), "prefix of {end} bytes");
            let _ = Invocation::decode(&record[..end]);
        }
        for at in 0..record.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut changed = record.clone();
                changed[at] ^= flip;
                let _ = DeadLetter::decode(&changed);
                let _ = Invocation::decode(&changed);
            }
        }
        let mut random = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut noise = vec![0; random.usize(..96)];
            random.fill(&mut noise);
            if let Some(first) = noise.first_mut().filter(|_| random.bool()) {
                *first = VERSION;
            }
            let _ = DeadLetter::decode(&noise);
            let _ = Invocation::decode(&noise);
        }
    }
}
