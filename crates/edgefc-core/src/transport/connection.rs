//! One Unix socket connection split in two: a [`FrameReader`] for the task
//! that owns the connection, and a cloneable [`FrameSender`] that any thread
//! can use to queue a frame. Frames gather in one buffer that is written with
//! one syscall, so many small results coalesce under load without delaying a
//! lone frame. What a peer has not read yet is bounded by an [`OutputBound`].
//!
//! A connection can instead be driven by a thread's own event loop
//! ([`split_polled`]): that thread is told when the socket is readable or
//! writable (Node's libuv loop, in the binding), reads with a
//! [`PolledReader`] and writes with [`FrameSender::write_ready`], and no
//! other thread is woken on the way.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::Notify;
use tokio_util::codec::{Decoder, FramedRead};

use crate::proto::frame::{Frame, FrameCodec, FrameError};

/// A read or write buffer that grew past this for a large frame or a burst
/// is given back, so that idle connections hold little memory.
const KEPT_BUFFER_BYTES: usize = 64 << 10;

/// A payload this large is written from the bytes it arrived in (one
/// vectored write with what comes before and after it), not copied into
/// the write buffer first: the runtime forwards what it read.
const LARGE_PAYLOAD_BYTES: usize = 64 << 10;
/// Buffers handed to one vectored write at most (Linux takes 1,024).
const MAX_WRITE_SLICES: usize = 64;

/// Gives back an empty buffer's memory if it grew past [`KEPT_BUFFER_BYTES`].
fn give_back_if_large(buffer: &mut BytesMut) {
    if buffer.is_empty() && buffer.capacity() > KEPT_BUFFER_BYTES {
        *buffer = BytesMut::new();
    }
}

pub struct FrameReader {
    inner: FramedRead<OwnedReadHalf, FrameCodec>,
}

impl FrameReader {
    /// The next frame; `Ok(None)` when the peer closed the connection cleanly
    /// between frames. A truncated, oversized or unknown frame is an error,
    /// after which the connection must be dropped.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let frame = self.inner.next().await.transpose();
        // After a large frame the buffer keeps its capacity; an idle
        // connection should not hold the largest frame it ever read.
        give_back_if_large(self.inner.read_buffer_mut());
        frame
    }
}

/// Queues frames for a connection. Frames are encoded straight into the
/// connection's write buffer; a writer task writes whatever has gathered with
/// one syscall, so replies to many concurrent calls coalesce. A thread that
/// is not a tokio task (the JavaScript thread) can instead [`queue`] frames
/// and [`flush`] them itself once per turn of its event loop: then a call
/// costs no wake-up of another thread at all.
///
/// [`queue`]: FrameSender::queue
/// [`flush`]: FrameSender::flush
#[derive(Clone)]
pub struct FrameSender {
    inner: Arc<SenderHandle>,
}

/// Dropped with the last `FrameSender`: tells the writer to finish.
struct SenderHandle {
    shared: Arc<WriteShared>,
}

impl Drop for SenderHandle {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap().senders_gone = true;
        self.shared.wake_writer();
    }
}

/// Who writes what the sending threads could not.
enum WriteSocket {
    /// A tokio task (`write_frames`), woken through `WriteShared::wake`.
    Task(OwnedWriteHalf),
    /// The thread that polls the socket: `ask_to_write` asks it to call
    /// [`FrameSender::write_ready`] (now, and again whenever the socket is
    /// writable until that returns false).
    Polled { stream: Arc<std::os::unix::net::UnixStream>, ask_to_write: Arc<dyn Fn() + Send + Sync> },
}

impl WriteSocket {
    fn try_write(&self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            WriteSocket::Task(socket) => socket.try_write(bytes),
            WriteSocket::Polled { stream, .. } => std::io::Write::write(&mut &**stream, bytes),
        }
    }

    fn try_write_vectored(&self, slices: &[IoSlice<'_>]) -> std::io::Result<usize> {
        match self {
            WriteSocket::Task(socket) => socket.try_write_vectored(slices),
            WriteSocket::Polled { stream, .. } => std::io::Write::write_vectored(&mut &**stream, slices),
        }
    }

    fn shut_down(&self) {
        let _ = match self {
            WriteSocket::Task(socket) => {
                socket2::SockRef::from(socket.as_ref() as &UnixStream).shutdown(std::net::Shutdown::Both)
            }
            WriteSocket::Polled { stream, .. } => stream.shutdown(std::net::Shutdown::Both),
        };
    }
}

impl WriteShared {
    fn wake_writer(&self) {
        match &self.socket {
            WriteSocket::Task(_) => self.wake.notify_one(),
            WriteSocket::Polled { ask_to_write, .. } => ask_to_write(),
        }
    }
}

struct WriteShared {
    socket: WriteSocket,
    state: Mutex<WriteState>,
    wake: Notify,
    /// Woken whenever output has been written or the connection closed.
    drained: Notify,
}

struct WriteState {
    /// Output that goes before `buffer`: frames up to and including a large
    /// payload, which stays in the bytes it arrived in.
    segments: VecDeque<Bytes>,
    segment_bytes: usize,
    buffer: BytesMut,
    codec: FrameCodec,
    bound: OutputBound,
    /// Bytes the writer task has taken from `buffer` and not finished writing.
    in_writer: usize,
    /// The writer task owns the socket for now: others only append.
    writer_busy: bool,
    closed: bool,
    senders_gone: bool,
}

impl WriteState {
    fn unwritten(&self) -> usize {
        self.segment_bytes + self.buffer.len() + self.in_writer
    }

    /// Nothing queued that the writer task has not taken.
    fn is_empty(&self) -> bool {
        self.segments.is_empty() && self.buffer.is_empty()
    }

    /// Takes `written` bytes off the front of what is queued.
    fn consume(&mut self, written: usize) {
        let past_segments = advance(&mut self.segments, written);
        self.segment_bytes -= written - past_segments;
        self.buffer.advance(past_segments);
    }

    /// Past the soft bound, or a little behind while every connection
    /// together is past the total.
    fn past_soft(&self) -> bool {
        let unwritten = self.unwritten();
        unwritten >= self.bound.soft || (self.bound.past_total() && unwritten >= KEPT_BUFFER_BYTES)
    }

    /// Past the hard bound, or past the soft one while every connection
    /// together is past the total.
    fn past_hard(&self) -> bool {
        let unwritten = self.unwritten();
        unwritten >= self.bound.hard || (self.bound.past_total() && unwritten >= self.bound.soft)
    }
}

/// How much output a peer may leave unread. Past `soft`, [`FrameSender::offer`]
/// declines frames and [`FrameSender::below_soft_bound`] waits; past `hard`,
/// [`FrameSender::send_bounded`] closes the connection instead of growing it.
/// Connections that share a `gauge` are also bounded together by `total`.
#[derive(Clone)]
pub struct OutputBound {
    pub soft: usize,
    pub hard: usize,
    pub total: usize,
    /// Counts the unwritten bytes of every connection that shares it.
    pub gauge: Option<Arc<AtomicUsize>>,
}

impl OutputBound {
    /// For a process's own connection: its output is what it asked to send.
    pub fn unbounded() -> OutputBound {
        OutputBound { soft: usize::MAX, hard: usize::MAX, total: usize::MAX, gauge: None }
    }

    fn past_total(&self) -> bool {
        self.gauge.as_ref().is_some_and(|gauge| gauge.load(Ordering::Relaxed) >= self.total)
    }

    fn add(&self, bytes: usize) {
        if let Some(gauge) = &self.gauge {
            gauge.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    fn remove(&self, bytes: usize) {
        if let Some(gauge) = &self.gauge {
            gauge.fetch_sub(bytes, Ordering::Relaxed);
        }
    }
}

/// What became of a frame offered with [`FrameSender::offer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// The peer is more than the soft bound behind; the frame was not queued.
    Full,
    Closed,
}

impl FrameSender {
    /// Queues `frame` and lets the writer task write it. Returns false when
    /// the connection is closed.
    pub fn send(&self, frame: Frame) -> bool {
        let shared = &self.inner.shared;
        let mut state = shared.state.lock().unwrap();
        if !append(&mut state, &frame) {
            return false;
        }
        wake_writer(shared, state);
        true
    }

    /// Like [`send`](FrameSender::send), but a peer more than the hard bound
    /// behind is disconnected instead ([`Offer::Full`]): it is not reading
    /// what it asked for.
    pub fn send_bounded(&self, frame: Frame) -> Offer {
        self.queue_unless(frame, WriteState::past_hard, true)
    }

    /// Queues `frame` unless the peer is more than the soft bound behind.
    pub fn offer(&self, frame: Frame) -> Offer {
        self.queue_unless(frame, WriteState::past_soft, false)
    }

    /// Queues `frame` and lets the writer write it, unless `behind` holds;
    /// then the frame is not queued, and the connection is closed if
    /// `close_when_behind`.
    fn queue_unless(&self, frame: Frame, behind: fn(&WriteState) -> bool, close_when_behind: bool) -> Offer {
        let shared = &self.inner.shared;
        let mut state = shared.state.lock().unwrap();
        if state.closed {
            return Offer::Closed;
        }
        if behind(&state) {
            if close_when_behind {
                close(shared, &mut state);
            }
            return Offer::Full;
        }
        if !append(&mut state, &frame) {
            return Offer::Closed;
        }
        wake_writer(shared, state);
        Offer::Queued
    }

    /// True while the peer is past the soft bound.
    pub fn is_behind(&self) -> bool {
        self.inner.shared.state.lock().unwrap().past_soft()
    }

    /// Resolves once the peer is no longer past the soft bound (or the
    /// connection is closed).
    pub async fn below_soft_bound(&self) {
        self.wait_until(|state| !state.past_soft()).await;
    }

    /// Resolves once everything queued is written (or the connection is closed).
    pub async fn all_written(&self) {
        self.wait_until(|state| state.unwritten() == 0).await;
    }

    async fn wait_until(&self, ready: impl Fn(&WriteState) -> bool) {
        let shared = &self.inner.shared;
        loop {
            let drained = shared.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let state = shared.state.lock().unwrap();
                if state.closed || ready(&state) {
                    return;
                }
            }
            drained.await;
        }
    }

    /// Takes the bound off this connection's output, e.g. once it turns out
    /// to be a worker's, whose tasks are bounded where they are admitted.
    pub fn lift_bound(&self) {
        let mut state = self.inner.shared.state.lock().unwrap();
        let gauge = state.bound.gauge.take();
        state.bound = OutputBound { gauge, ..OutputBound::unbounded() };
    }

    /// Closes the connection; what is still queued is dropped.
    pub fn close(&self) {
        let shared = &self.inner.shared;
        close(shared, &mut shared.state.lock().unwrap());
    }

    /// Queues `frame` without writing it; [`flush`](FrameSender::flush) writes.
    pub fn queue(&self, frame: Frame) -> bool {
        append(&mut self.inner.shared.state.lock().unwrap(), &frame)
    }

    /// Writes what is queued from the calling thread, without blocking; what
    /// the socket does not take now is left to the writer.
    pub fn flush(&self) {
        let shared = &self.inner.shared;
        let mut state = shared.state.lock().unwrap();
        if state.writer_busy || state.closed || state.is_empty() {
            return;
        }
        if write_now(shared, &mut state) {
            state.writer_busy = true;
            drop(state);
            shared.wake_writer();
        }
    }

    /// For a polled connection, on its polling thread: writes what the
    /// socket takes now. True while output remains, for which the socket's
    /// writability must be watched.
    pub fn write_ready(&self) -> bool {
        let shared = &self.inner.shared;
        let mut state = shared.state.lock().unwrap();
        if state.closed {
            return false;
        }
        if write_now(shared, &mut state) {
            return true;
        }
        state.writer_busy = false;
        if state.senders_gone {
            close(shared, &mut state);
        }
        false
    }

    pub fn is_closed(&self) -> bool {
        self.inner.shared.state.lock().unwrap().closed
    }
}

/// Encodes `frame` at the end of the write buffer; false when the connection
/// is closed or the frame cannot be encoded (senders check sizes first, so
/// that is a caller's bug, and it fails that frame alone).
fn append(state: &mut WriteState, frame: &Frame) -> bool {
    if state.closed {
        return false;
    }
    let WriteState { codec, buffer, bound, segments, segment_bytes, .. } = state;
    let before = buffer.len();
    match codec.encode_leaving_out(frame, buffer, LARGE_PAYLOAD_BYTES) {
        Ok(None) => {
            bound.add(buffer.len() - before);
            true
        }
        Ok(Some(payload)) => {
            let head = buffer.split().freeze();
            bound.add(head.len() - before + payload.len());
            *segment_bytes += head.len() + payload.len();
            segments.push_back(head);
            segments.push_back(payload);
            true
        }
        Err(_) => false,
    }
}

/// Takes `written` bytes off the front of `segments`; returns what was
/// written past them.
fn advance(segments: &mut VecDeque<Bytes>, mut written: usize) -> usize {
    while let Some(front) = segments.front_mut() {
        if written < front.len() {
            front.advance(written);
            return 0;
        }
        written -= front.len();
        segments.pop_front();
    }
    written
}

/// The front of `segments` (and then `tail`) as slices for one vectored write.
fn io_slices<'a>(segments: &'a VecDeque<Bytes>, tail: &'a [u8]) -> Vec<IoSlice<'a>> {
    let mut slices: Vec<IoSlice<'a>> = segments.iter().take(MAX_WRITE_SLICES).map(|segment| IoSlice::new(segment)).collect();
    if segments.len() < MAX_WRITE_SLICES && !tail.is_empty() {
        slices.push(IoSlice::new(tail));
    }
    slices
}

/// Writes what is queued that the socket takes without blocking; true
/// when some is left. A failed write closes the connection.
fn write_now(shared: &WriteShared, state: &mut WriteState) -> bool {
    while !state.is_empty() {
        let result = if state.segments.is_empty() {
            shared.socket.try_write(&state.buffer)
        } else {
            shared.socket.try_write_vectored(&io_slices(&state.segments, &state.buffer))
        };
        match result {
            Ok(written) => {
                state.consume(written);
                state.bound.remove(written);
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                close(shared, state);
                return false;
            }
        }
    }
    shared.drained.notify_waiters();
    !state.is_empty()
}

fn wake_writer(shared: &WriteShared, mut state: std::sync::MutexGuard<'_, WriteState>) {
    if !state.writer_busy {
        state.writer_busy = true;
        drop(state);
        shared.wake_writer();
    }
}

/// Marks the connection closed, gives back what was queued and shuts the
/// socket down: once closed, nothing queued would ever be written, and the
/// reader seeing the end too fails the calls still waiting for replies
/// instead of leaving them waiting.
fn close(shared: &WriteShared, state: &mut WriteState) {
    if state.closed {
        return;
    }
    state.closed = true;
    state.bound.remove(state.segment_bytes + state.buffer.len());
    state.segments.clear();
    state.segment_bytes = 0;
    state.buffer = BytesMut::new();
    shared.socket.shut_down();
    shared.drained.notify_waiters();
    if let WriteSocket::Task(_) = shared.socket {
        shared.wake.notify_one();
    }
}

/// The socket send buffer asked for (the kernel caps it at
/// `net.core.wmem_max`). With the default of about 200 KiB, a 1 MiB payload
/// crosses in five fill-and-drain rounds, each costing both processes a
/// wake-up; the memory is only used while data is in flight.
const SEND_BUFFER_BYTES: usize = 4 << 20;

/// Splits `stream` and spawns its writer task on the current tokio runtime;
/// `codec` bounds what the reader accepts, `bound` what the peer may leave unread.
pub fn split(stream: UnixStream, codec: FrameCodec, bound: OutputBound) -> (FrameReader, FrameSender) {
    // Best effort: a smaller buffer only costs speed.
    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER_BYTES);
    let (read_half, write_half) = stream.into_split();
    let shared = write_shared(WriteSocket::Task(write_half), bound);
    tokio::spawn(write_frames(shared.clone()));
    (FrameReader { inner: FramedRead::new(read_half, codec) }, FrameSender { inner: Arc::new(SenderHandle { shared }) })
}

/// Splits a non-blocking `stream` for a thread that polls it: reads go
/// through the [`PolledReader`] (starting with `already_read`, bytes read
/// before the split), and `ask_to_write` is called, from any thread, when
/// [`FrameSender::write_ready`] must be called on the polling thread.
pub fn split_polled(
    stream: std::os::unix::net::UnixStream,
    already_read: BytesMut,
    codec: FrameCodec,
    ask_to_write: Arc<dyn Fn() + Send + Sync>,
) -> (PolledReader, FrameSender) {
    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER_BYTES);
    let stream = Arc::new(stream);
    let shared = write_shared(WriteSocket::Polled { stream: stream.clone(), ask_to_write }, OutputBound::unbounded());
    let reader = PolledReader { stream, buffer: already_read, codec };
    (reader, FrameSender { inner: Arc::new(SenderHandle { shared }) })
}

fn write_shared(socket: WriteSocket, bound: OutputBound) -> Arc<WriteShared> {
    Arc::new(WriteShared {
        socket,
        state: Mutex::new(WriteState {
            segments: VecDeque::new(),
            segment_bytes: 0,
            buffer: BytesMut::new(),
            codec: FrameCodec::unlimited(),
            bound,
            in_writer: 0,
            writer_busy: false,
            closed: false,
            senders_gone: false,
        }),
        wake: Notify::new(),
        drained: Notify::new(),
    })
}

/// Bytes asked of the socket in one read, at least.
const READ_CHUNK: usize = 64 << 10;
/// Bytes read in one turn of [`PolledReader::read_ready`] at most, so that a
/// fast peer cannot keep the polling thread from its other work; the rest is
/// read on the next turn.
const MAX_READ_PER_TURN: usize = 4 << 20;

/// The reading side of a polled connection, used on its polling thread.
pub struct PolledReader {
    stream: Arc<std::os::unix::net::UnixStream>,
    buffer: BytesMut,
    codec: FrameCodec,
}

/// How a turn of [`PolledReader::read_ready`] ended.
#[derive(Debug)]
pub enum ReadTurn {
    /// Nothing more to read now.
    Open,
    /// The peer closed the connection cleanly between frames.
    Closed,
    /// A read failed, or a frame was truncated, oversized or unknown: the
    /// connection must be dropped.
    Failed(FrameError),
}

impl PolledReader {
    /// The descriptor to poll for readability.
    pub fn fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&*self.stream)
    }

    /// Reads what the socket has now (up to a bound) and hands each whole
    /// frame to `on_frame`, in order.
    pub fn read_ready(&mut self, mut on_frame: impl FnMut(Frame)) -> ReadTurn {
        let mut read_this_turn = 0;
        let mut drained = false;
        loop {
            loop {
                match self.codec.decode(&mut self.buffer) {
                    Ok(Some(frame)) => on_frame(frame),
                    Ok(None) => break,
                    Err(error) => return ReadTurn::Failed(error),
                }
            }
            if read_this_turn >= MAX_READ_PER_TURN {
                return ReadTurn::Open;
            }
            if drained {
                break;
            }
            self.buffer.reserve(READ_CHUNK);
            let spare = self.buffer.spare_capacity_mut();
            let asked = spare.len();
            match socket2::SockRef::from(&*self.stream).recv(spare) {
                Ok(0) if self.buffer.is_empty() => return ReadTurn::Closed,
                Ok(0) => return ReadTurn::Failed(FrameError::Malformed("the connection ended inside a frame")),
                Ok(read) => {
                    // SAFETY: `recv` initialised the first `read` bytes of the spare capacity.
                    unsafe { self.buffer.set_len(self.buffer.len() + read) };
                    read_this_turn += read;
                    // Less than asked: the socket is empty for now, and
                    // asking again would only return EAGAIN. (If more
                    // comes meanwhile, the poller sees it readable.)
                    drained = read < asked;
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return ReadTurn::Failed(FrameError::Io(error)),
            }
        }
        give_back_if_large(&mut self.buffer);
        ReadTurn::Open
    }
}

/// The writer task of a connection that `split` made.
async fn write_frames(shared: Arc<WriteShared>) {
    let WriteSocket::Task(socket) = &shared.socket else {
        return;
    };
    let mut chunk = BytesMut::new();
    loop {
        shared.wake.notified().await;
        loop {
            let mut segments;
            let taken;
            {
                let mut state = shared.state.lock().unwrap();
                if state.closed {
                    return;
                }
                if state.is_empty() {
                    state.writer_busy = false;
                    if state.senders_gone {
                        state.closed = true;
                        return;
                    }
                    break;
                }
                state.writer_busy = true;
                segments = std::mem::take(&mut state.segments);
                std::mem::swap(&mut state.buffer, &mut chunk);
                taken = std::mem::take(&mut state.segment_bytes) + chunk.len();
                state.in_writer = taken;
            }
            let written = write_all_vectored(socket, &mut segments, &chunk).await;
            {
                let mut state = shared.state.lock().unwrap();
                state.in_writer = 0;
                state.bound.remove(taken);
                if written.is_err() {
                    close(&shared, &mut state);
                    return;
                }
            }
            shared.drained.notify_waiters();
            chunk.clear();
            give_back_if_large(&mut chunk);
        }
    }
}

/// Writes `segments`, then `tail` (with plain writes once no segment is left).
async fn write_all_vectored(socket: &OwnedWriteHalf, segments: &mut VecDeque<Bytes>, mut tail: &[u8]) -> std::io::Result<()> {
    while !segments.is_empty() {
        socket.writable().await?;
        match socket.try_write_vectored(&io_slices(segments, tail)) {
            Ok(written) => tail = &tail[advance(segments, written)..],
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        }
    }
    write_all(socket, tail).await
}

async fn write_all(socket: &OwnedWriteHalf, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        socket.writable().await?;
        match socket.try_write(bytes) {
            Ok(written) => bytes = &bytes[written..],
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

impl FrameReader {
    /// Admits payloads up to `max_payload` from now on, e.g. once the
    /// handshake has told the limit.
    pub fn set_max_payload(&mut self, max_payload: usize) {
        *self.inner.decoder_mut() = FrameCodec::for_max_payload(max_payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::Payload;

    /// Small frames, and frames whose payload is written from its own bytes,
    /// alternating; 25 MiB in all, more than the socket holds, so writes end
    /// part of the way through a payload.
    fn mixed_frames() -> Vec<Frame> {
        (0..300)
            .map(|n| {
                let size = if n % 3 == 0 { LARGE_PAYLOAD_BYTES + n * 1021 } else { n };
                let payload = Payload::Binary(Bytes::from((0..size).map(|at| (at * 7 + n) as u8).collect::<Vec<u8>>()));
                Frame::Message { id: n as u64, source: format!("source {n}"), topic: "t".into(), payload }
            })
            .collect()
    }

    #[tokio::test]
    async fn the_writer_task_keeps_every_frame_whole_and_in_order_around_large_payloads() {
        let (near, far) = UnixStream::pair().unwrap();
        let (_reader, sender) = split(near, FrameCodec::unlimited(), OutputBound::unbounded());
        let sent = mixed_frames();
        for frame in &sent {
            assert!(sender.send(frame.clone()));
        }
        let mut frames = FramedRead::new(far, FrameCodec::unlimited());
        for expected in &sent {
            assert_eq!(&frames.next().await.unwrap().unwrap(), expected);
        }
        sender.all_written().await;
        assert_eq!(sender.inner.shared.state.lock().unwrap().unwritten(), 0);
    }

    #[test]
    fn a_polled_connection_keeps_every_frame_whole_and_in_order_around_large_payloads() {
        let (near, far) = std::os::unix::net::UnixStream::pair().unwrap();
        near.set_nonblocking(true).unwrap();
        let (_reader, sender) = split_polled(near, BytesMut::new(), FrameCodec::unlimited(), Arc::new(|| {}));
        let sent = mixed_frames();
        let expected = sent.clone();
        let reading = std::thread::spawn(move || {
            let mut codec = FrameCodec::unlimited();
            let mut buffer = BytesMut::new();
            let mut far = far;
            let mut received = Vec::new();
            loop {
                while let Some(frame) = codec.decode(&mut buffer).unwrap() {
                    received.push(frame);
                }
                if received.len() >= expected.len() {
                    break;
                }
                let mut chunk = [0u8; 64 << 10];
                let read = std::io::Read::read(&mut far, &mut chunk).unwrap();
                assert!(read > 0, "the connection ended early");
                buffer.extend_from_slice(&chunk[..read]);
            }
            assert_eq!(received, expected);
        });
        for (n, frame) in sent.iter().enumerate() {
            assert!(sender.queue(frame.clone()));
            if n == 0 {
                let state = sender.inner.shared.state.lock().unwrap();
                assert_eq!(state.segments.len(), 2, "the first frame's payload is queued as its own bytes, after its head");
                assert!(state.buffer.is_empty());
            }
            if n % 10 == 9 {
                sender.flush();
            }
        }
        // As the poller would: write whenever the socket takes more, until all is out.
        sender.flush();
        while sender.write_ready() {
            std::thread::yield_now();
        }
        reading.join().unwrap();
        assert_eq!(sender.inner.shared.state.lock().unwrap().unwritten(), 0);
    }
}
