//! The reader task of a client connection: every frame the runtime sends is
//! a reply to a request, a task for the hosted function, or a message for a
//! subscription, and goes to whoever waits for it.

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

/// What one turn of reading has gathered for the sinks.
struct Batches {
    sinks: Sinks,
    replies: Vec<(u64, Result<Reply>)>,
    tasks: Vec<Task>,
}

impl Batches {
    fn push_reply(&mut self, tag: u64, reply: Result<Reply>) {
        self.replies.push((tag, reply));
        if self.replies.len() >= MAX_BATCH {
            self.hand_over_replies();
        }
    }

    fn push_task(&mut self, task: Task) {
        if self.sinks.tasks.is_none() {
            return;
        }
        self.tasks.push(task);
        if self.tasks.len() >= MAX_BATCH {
            self.hand_over_tasks();
        }
    }

    fn hand_over_replies(&mut self) {
        if let (Some(sink), false) = (&self.sinks.completions, self.replies.is_empty()) {
            sink(std::mem::take(&mut self.replies));
        }
    }

    fn hand_over_tasks(&mut self) {
        if let (Some(sink), false) = (&self.sinks.tasks, self.tasks.is_empty()) {
            sink(std::mem::take(&mut self.tasks));
        }
    }

    fn hand_over(&mut self) {
        self.hand_over_replies();
        self.hand_over_tasks();
    }
}

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
        Frame::Result { id, status, function_error, payload } => {
            Incoming::Reply(id, Ok(Reply::Completed(SyncResult { status, function_error, payload })))
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

/// Reads until the connection ends, then fails every request still waiting
/// and, for a serving connection, tells the task sink with an empty batch.
pub(super) async fn route(mut reader: FrameReader, pending: Arc<PendingTable<Waiter>>, messages: MessageQueue, sinks: Sinks) {
    let mut batches = Batches { sinks, replies: Vec::new(), tasks: Vec::new() };
    'connection: loop {
        // Wait for one frame, then take every frame that is already here,
        // and hand what they carry over together.
        let mut next = reader.read_frame().await;
        loop {
            let Some(incoming) = next.ok().flatten().and_then(classify) else {
                break 'connection;
            };
            match incoming {
                Incoming::Reply(id, reply) => match pending.take(id) {
                    Some(Waiter::Call(waiting)) => {
                        let _ = waiting.send(reply);
                    }
                    Some(Waiter::Tagged(tag)) => batches.push_reply(tag, reply),
                    None => {}
                },
                Incoming::Task(task) => batches.push_task(task),
                Incoming::Message(message) => messages.push(message),
            }
            match reader.read_frame().now_or_never() {
                Some(frame) => next = frame,
                None => break,
            }
        }
        batches.hand_over();
    }
    for waiter in pending.close() {
        match waiter {
            Waiter::Call(waiting) => {
                let _ = waiting.send(Err(connection_lost()));
            }
            Waiter::Tagged(tag) => batches.push_reply(tag, Err(connection_lost())),
        }
    }
    // Tasks read together with the end still reach the worker, before the end does.
    batches.hand_over();
    if let Some(task_sink) = &batches.sinks.tasks {
        task_sink(Vec::new());
    }
}
