//! Where what a client connection reads goes: every frame the runtime sends
//! is a reply to a request, a task for the hosted function, or a message for
//! a subscription, and goes to whoever waits for it. A connection that tokio
//! polls has a reader task ([`route`]); a polled one is read by its poller.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::sync::{mpsc, Semaphore};

use super::{connection_lost, Sinks, Waiter, WaitingMessage, MAX_WAITING_MESSAGE_BYTES};
use crate::error::{Error, Result};
use crate::proto::frame::Frame;
use crate::proto::message::{Message, Reply, SyncResult, Task};
use crate::transport::{FrameReader, PendingTable};

/// Replies and tasks handed to a sink at most at once, so that the receiving
/// thread can start on the first ones while the rest are still being read.
const MAX_BATCH: usize = 64;

/// Where messages wait for `next_messages`, bounded by count (the channel)
/// and bytes (the semaphore's permits).
pub(super) struct MessageQueue {
    pub(super) queue: mpsc::Sender<WaitingMessage>,
    pub(super) bytes: Arc<Semaphore>,
    pub(super) dropped: Arc<AtomicU64>,
}

impl MessageQueue {
    /// Queues a message, or drops and counts it when the queue is full: the
    /// reader never waits, so replies behind it still arrive.
    fn push(&self, message: Message) {
        let share = message.payload.len().clamp(1, MAX_WAITING_MESSAGE_BYTES) as u32;
        let queued = match self.bytes.clone().try_acquire_many_owned(share) {
            Ok(bytes) => self.queue.try_send(WaitingMessage { message, _bytes: bytes }).is_ok(),
            Err(_) => false,
        };
        if !queued {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What a frame from the runtime is for; `None` for a frame the runtime
/// never sends, after which the connection cannot be trusted.
enum Incoming {
    Reply(u64, Result<Reply>),
    Task(Task),
    Message(Message),
}

fn classify(frame: Frame) -> Option<Incoming> {
    Some(match frame {
        Frame::Result { id, status, function_error, reply_context, payload } => {
            Incoming::Reply(id, Ok(Reply::Completed(SyncResult { status, function_error, reply_context, payload })))
        }
        Frame::Accepted { id, accepted_id } => Incoming::Reply(id, Ok(Reply::Accepted { accepted_id })),
        Frame::Failure { id, code, message } => Incoming::Reply(id, Err(Error::new(code, message))),
        Frame::Task { id, attempt, request_id, invoker_context, payload } => {
            Incoming::Task(Task { id, attempt, request_id, invoker_context, payload })
        }
        Frame::Message { source, topic, payload, .. } => Incoming::Message(Message { source, topic, payload }),
        _ => return None,
    })
}

/// Routes what a client connection reads: a reply to an awaiting call
/// straight to it, a reply to a tagged request and a task into [`Arrived`]
/// for the binding, a message to its queue.
pub(super) struct Router {
    pub(super) pending: Arc<PendingTable<Waiter>>,
    /// `None` once the connection has ended, which ends `next_messages`.
    pub(super) messages: Option<MessageQueue>,
    pub(super) arrived: Arrived,
}

/// What has arrived for the binding since it last took it.
#[derive(Default)]
pub struct Arrived {
    /// Replies to requests sent with [`Client::submit`](super::Client::submit), by tag.
    pub replies: Vec<(u64, Result<Reply>)>,
    pub tasks: Vec<Task>,
    /// The connection has ended; every request still waiting is among `replies`, failed.
    pub ended: bool,
}

impl Router {
    /// False for a frame the runtime never sends, after which the
    /// connection cannot be trusted.
    pub(super) fn route(&mut self, frame: Frame) -> bool {
        let Some(incoming) = classify(frame) else {
            return false;
        };
        match incoming {
            Incoming::Reply(id, reply) => match self.pending.take(id) {
                Some(Waiter::Call(waiting)) => {
                    let _ = waiting.send(reply);
                }
                Some(Waiter::Tagged(tag)) => self.arrived.replies.push((tag, reply)),
                None => {}
            },
            // Only a serving connection gets tasks; without a task sink they are dropped where handed over.
            Incoming::Task(task) => self.arrived.tasks.push(task),
            Incoming::Message(message) => {
                if let Some(messages) = &self.messages {
                    messages.push(message);
                }
            }
        }
        true
    }

    /// The connection ended: every request still waiting fails.
    pub(super) fn end(&mut self) {
        for waiter in self.pending.close() {
            match waiter {
                Waiter::Call(waiting) => {
                    let _ = waiting.send(Err(connection_lost()));
                }
                Waiter::Tagged(tag) => self.arrived.replies.push((tag, Err(connection_lost()))),
            }
        }
        self.messages = None;
        self.arrived.ended = true;
    }

    pub(super) fn take(&mut self) -> Arrived {
        std::mem::take(&mut self.arrived)
    }
}

/// Hands what arrived to the sinks, each batch in one call.
fn hand_over(arrived: Arrived, sinks: &Sinks) {
    if let (Some(sink), false) = (&sinks.completions, arrived.replies.is_empty()) {
        sink(arrived.replies);
    }
    if let (Some(sink), false) = (&sinks.tasks, arrived.tasks.is_empty()) {
        sink(arrived.tasks);
    }
}

/// The reader task of a connection that tokio polls: reads until the
/// connection ends, then fails every request still waiting and, for a
/// serving connection, tells the task sink with an empty batch.
pub(super) async fn route(mut reader: FrameReader, mut router: Router, sinks: Sinks) {
    'connection: loop {
        // Wait for one frame, then take every frame that is already here,
        // and hand what they carry over together.
        let mut next = reader.read_frame().await;
        loop {
            let Some(frame) = next.ok().flatten() else {
                break 'connection;
            };
            if !router.route(frame) {
                break 'connection;
            }
            if router.arrived.replies.len() >= MAX_BATCH || router.arrived.tasks.len() >= MAX_BATCH {
                hand_over(router.take(), &sinks);
            }
            match reader.read_frame().now_or_never() {
                Some(frame) => next = frame,
                None => break,
            }
        }
        hand_over(router.take(), &sinks);
    }
    // Tasks read together with the end still reach the worker, before the end does.
    router.end();
    hand_over(router.take(), &sinks);
    if let Some(task_sink) = &sinks.tasks {
        task_sink(Vec::new());
    }
}
