//! What frames carry, as values both sides of the wire use: the caller's
//! requests and the replies it gets, the tasks a worker runs, and the
//! messages a subscriber receives.

use crate::proto::frame::{Frame, FunctionError, Payload};

/// The status code of every invocation that reached the function, as in the
/// HTTP-based upstream runtime.
pub const STATUS_OK: u16 = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeRequest {
    /// A function id or ARN.
    pub target: String,
    pub asynchronous: bool,
    /// How long the caller's API lets the function run (seconds, 0 for no
    /// opinion) when the function's config sets no `timeoutMs`: 知晓云's
    /// 5 s Sync and 300 s Async, for instance.
    pub default_timeout_secs: u16,
    /// How long the caller waits for the answer (ms, 0 for not said): the
    /// timeout of a call to another gateway.
    pub caller_timeout_ms: u32,
    /// Base64 JSON, passed through untouched.
    pub invoker_context: String,
    pub payload: Payload,
}

/// A request a caller sends; the runtime answers each with one [`Reply`] or a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Invoke(InvokeRequest),
    /// Route a message; answered with `Accepted` and the message id.
    Publish {
        topic: String,
        payload: Payload,
    },
    /// One of the runtime's services (`credentials`, `stats`); answered with
    /// a `Completed` result whose payload is JSON.
    Query {
        operation: String,
    },
    /// Receive every routed message whose topic matches the filter.
    Subscribe {
        topic_filter: String,
    },
}

impl Request {
    /// The frame that carries this request under the request id `id`.
    pub fn into_frame(self, id: u64) -> Frame {
        match self {
            Request::Invoke(request) => Frame::Invoke {
                id,
                asynchronous: request.asynchronous,
                default_timeout_secs: request.default_timeout_secs,
                caller_timeout_ms: request.caller_timeout_ms,
                target: request.target,
                invoker_context: request.invoker_context,
                payload: request.payload,
            },
            Request::Publish { topic, payload } => Frame::Publish { id, topic, payload },
            Request::Query { operation } => Frame::Request { id, operation },
            Request::Subscribe { topic_filter } => Frame::Subscribe { id, topic_filter },
        }
    }
}

/// How a Sync invocation (or a query) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    pub status: u16,
    pub function_error: FunctionError,
    /// What the handler said about its payload (JSON), or empty: opaque to
    /// the runtime, read by the caller's API facade.
    pub reply_context: String,
    pub payload: Payload,
}

impl SyncResult {
    pub fn ok(payload: Payload) -> SyncResult {
        SyncResult { status: STATUS_OK, function_error: FunctionError::None, reply_context: String::new(), payload }
    }

    /// The `Result` frame that answers request `id` with this.
    pub fn into_frame(self, id: u64) -> Frame {
        Frame::Result {
            id,
            status: self.status,
            function_error: self.function_error,
            reply_context: self.reply_context,
            payload: self.payload,
        }
    }

    /// The runtime's own report of an invocation that went wrong in the
    /// function (it crashed, timed out, could not start).
    pub fn unhandled(error_type: &str, message: &str) -> SyncResult {
        SyncResult { function_error: FunctionError::Unhandled, ..SyncResult::ok(error_payload(error_type, message)) }
    }
}

/// The runtime's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Completed(SyncResult),
    /// Taken, and answered no further: `accepted_id` is the invocation id of
    /// an Async invoke, the message id of a publish, empty for a subscription.
    Accepted {
        accepted_id: String,
    },
}

/// A published message, as a subscriber receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub source: String,
    pub topic: String,
    pub payload: Payload,
}

/// One run of a hosted function's handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: u64,
    /// 1 for the first run of an invocation, more for its retries.
    pub attempt: u16,
    /// The invocation's id: the same on every attempt.
    pub request_id: String,
    pub invoker_context: String,
    pub payload: Payload,
}

/// The JSON body of a function error, shaped like Function Compute's.
pub fn error_payload(error_type: &str, message: &str) -> Payload {
    Payload::text(serde_json::json!({ "errorMessage": message, "errorType": error_type }).to_string())
}
