//! One Unix socket connection split in two: a [`FrameReader`] for the task
//! that owns the connection, and a cloneable [`FrameSender`] that any thread
//! can use to queue a frame. Frames gather in one buffer that is written with
//! one syscall, so many small results coalesce under load without delaying a
//! lone frame.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::Notify;
use tokio_util::codec::{Encoder, FramedRead};

use crate::proto::frame::{Frame, FrameCodec, FrameError};

/// A write buffer that grew past four times this while a burst was written
/// is given back.
const MAX_BATCH_BYTES: usize = 1 << 20;

pub struct FrameReader {
    inner: FramedRead<OwnedReadHalf, FrameCodec>,
}

impl FrameReader {
    /// The next frame; `Ok(None)` when the peer closed the connection cleanly
    /// between frames. A truncated, oversized or unknown frame is an error,
    /// after which the connection must be dropped.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        self.inner.next().await.transpose()
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
        self.shared.wake.notify_one();
    }
}

struct WriteShared {
    socket: OwnedWriteHalf,
    state: Mutex<WriteState>,
    wake: Notify,
}

struct WriteState {
    buffer: BytesMut,
    codec: FrameCodec,
    /// The writer task owns the socket for now: others only append.
    writer_busy: bool,
    closed: bool,
    senders_gone: bool,
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
        if !state.writer_busy {
            state.writer_busy = true;
            drop(state);
            shared.wake.notify_one();
        }
        true
    }

    /// Queues `frame` without writing it; [`flush`](FrameSender::flush) writes.
    pub fn queue(&self, frame: Frame) -> bool {
        append(&mut self.inner.shared.state.lock().unwrap(), &frame)
    }

    /// Writes what is queued from the calling thread, without blocking; what
    /// the socket does not take now is left to the writer task.
    pub fn flush(&self) {
        let shared = &self.inner.shared;
        let mut state = shared.state.lock().unwrap();
        if state.writer_busy || state.closed || state.buffer.is_empty() {
            return;
        }
        while !state.buffer.is_empty() {
            match shared.socket.try_write(&state.buffer) {
                Ok(written) => {
                    let _ = state.buffer.split_to(written);
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    state.closed = true;
                    shut_down(&shared.socket);
                    return;
                }
            }
        }
        if !state.buffer.is_empty() {
            state.writer_busy = true;
            drop(state);
            shared.wake.notify_one();
        }
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
    let WriteState { codec, buffer, .. } = state;
    codec.encode(frame, buffer).is_ok()
}

/// The socket send buffer asked for (the kernel caps it at
/// `net.core.wmem_max`). With the default of about 200 KiB, a 1 MiB payload
/// crosses in five fill-and-drain rounds, each costing both processes a
/// wake-up; the memory is only used while data is in flight.
const SEND_BUFFER_BYTES: usize = 4 << 20;

/// Splits `stream` and spawns its writer task on the current tokio runtime;
/// `codec` bounds what the reader accepts.
pub fn split(stream: UnixStream, codec: FrameCodec) -> (FrameReader, FrameSender) {
    // Best effort: a smaller buffer only costs speed.
    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER_BYTES);
    let (read_half, write_half) = stream.into_split();
    let shared = Arc::new(WriteShared {
        socket: write_half,
        state: Mutex::new(WriteState {
            buffer: BytesMut::with_capacity(64 * 1024),
            codec: FrameCodec::unlimited(),
            writer_busy: false,
            closed: false,
            senders_gone: false,
        }),
        wake: Notify::new(),
    });
    tokio::spawn(write_frames(shared.clone()));
    (FrameReader { inner: FramedRead::new(read_half, codec) }, FrameSender { inner: Arc::new(SenderHandle { shared }) })
}

async fn write_frames(shared: Arc<WriteShared>) {
    let mut chunk = BytesMut::new();
    loop {
        shared.wake.notified().await;
        loop {
            {
                let mut state = shared.state.lock().unwrap();
                if state.buffer.is_empty() {
                    state.writer_busy = false;
                    if state.senders_gone {
                        state.closed = true;
                        return;
                    }
                    break;
                }
                state.writer_busy = true;
                std::mem::swap(&mut state.buffer, &mut chunk);
            }
            if write_all(&shared.socket, &chunk).await.is_err() {
                shared.state.lock().unwrap().closed = true;
                shut_down(&shared.socket);
                return;
            }
            chunk.clear();
            if chunk.capacity() > 4 * MAX_BATCH_BYTES {
                chunk = BytesMut::new();
            }
        }
    }
}

/// After a failed write, the frames in the buffer are lost: closing both
/// directions makes the reader see the end too, which fails the calls still
/// waiting for replies instead of leaving them waiting.
fn shut_down(socket: &OwnedWriteHalf) {
    let stream: &UnixStream = socket.as_ref();
    let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Both);
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
