//! One Unix socket connection split in two: a [`FrameReader`] for the task
//! that owns the connection, and a cloneable [`FrameSender`] that any task can
//! use to queue a frame. A single writer task drains the queue and writes all
//! frames that are ready with one syscall, so many small results coalesce
//! under load without delaying a lone frame.

use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::codec::{Encoder, FramedRead};

use crate::frame::{Frame, FrameCodec, FrameError};

/// Frames written per syscall at most, so one busy connection cannot starve
/// the writer's own buffer of memory.
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

/// Queues frames for the connection's writer task. Sending never blocks; the
/// frame is dropped if the connection is already gone.
#[derive(Clone)]
pub struct FrameSender {
    queue: mpsc::UnboundedSender<Frame>,
}

impl FrameSender {
    /// Returns false when the connection is closed.
    pub fn send(&self, frame: Frame) -> bool {
        self.queue.send(frame).is_ok()
    }

    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Resolves once the writer task has stopped (the connection is gone).
    pub async fn closed(&self) {
        self.queue.closed().await
    }
}

/// Splits `stream` and spawns its writer task on the current tokio runtime;
/// `codec` bounds what the reader accepts.
pub fn split(stream: UnixStream, codec: FrameCodec) -> (FrameReader, FrameSender) {
    let (read_half, write_half) = stream.into_split();
    let (queue, frames) = mpsc::unbounded_channel();
    tokio::spawn(write_frames(write_half, FrameCodec::unlimited(), frames));
    (FrameReader { inner: FramedRead::new(read_half, codec) }, FrameSender { queue })
}

async fn write_frames(mut socket: OwnedWriteHalf, mut codec: FrameCodec, mut frames: mpsc::UnboundedReceiver<Frame>) {
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    while let Some(frame) = frames.recv().await {
        // Senders check sizes before queueing; a frame that still fails to
        // encode is dropped alone rather than taking the connection down.
        if codec.encode(&frame, &mut buffer).is_err() {
            continue;
        }
        while buffer.len() < MAX_BATCH_BYTES {
            match frames.try_recv() {
                Ok(frame) => {
                    let _ = codec.encode(&frame, &mut buffer);
                }
                Err(_) => break,
            }
        }
        if socket.write_all(&buffer).await.is_err() {
            break;
        }
        buffer.clear();
        if buffer.capacity() > 4 * MAX_BATCH_BYTES {
            buffer = BytesMut::with_capacity(64 * 1024);
        }
    }
    // Closing the receiver makes every FrameSender see the connection as gone.
    frames.close();
    let _ = socket.shutdown().await;
}

impl FrameReader {
    /// Replaces the codec, e.g. once the handshake has told the payload limit.
    pub(crate) fn set_codec(&mut self, codec: FrameCodec) {
        *self.inner.decoder_mut() = codec;
    }
}
