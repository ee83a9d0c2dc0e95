//! `NativeSession`: a process's connection to the runtime
//! ([`edgefc_core::client::Session`]), shared by every client object that
//! uses the same socket and token.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use edgefc_core::client::{CompletionSink, ConnectOptions, Endpoint, Session, Sinks};
use edgefc_core::proto::{InvokeRequest, Reply, Request, SyncResult};
use edgefc_core::{Error, ErrorCode};
use napi::bindgen_prelude::{BufferSlice, Either, Function, PromiseRaw};
use napi::Env;
use napi_derive::napi;

use crate::convert::{function_error_from_js, payload_from_js, NativeMessage};
use crate::error::{self, to_js};
use crate::event_loop::{Callbacks, LoopHandle};

#[napi]
pub struct NativeSession {
    session: Arc<Session>,
    /// Where the connection is read and written: this thread's event loop.
    _event_loop: LoopHandle,
}

#[napi]
impl NativeSession {
    /// A caller's session on the runtime's socket, authenticated with
    /// `token`. `onCompletions(arena, count, lent)` receives the outcomes of
    /// `submitInvoke` and `submitPublish`, batched, as records
    /// (`src/records.rs`, read by `lib/core/records.js`); it does not keep
    /// the process alive.
    #[napi(constructor)]
    pub fn new(
        env: Env,
        socket_path: String,
        token: String,
        connect_timeout_ms: u32,
        #[napi(ts_arg_type = "(arena: Buffer, count: number, lent: unknown[] | undefined) => void")] on_completions: Function<'_>,
    ) -> error::Result<NativeSession> {
        let mut options = ConnectOptions::new(PathBuf::from(socket_path), token);
        options.connect_timeout = Duration::from_millis(u64::from(connect_timeout_ms.max(1)));
        NativeSession::with(&env, options, on_completions, None)
    }

    /// A worker's session, on the connection the runtime handed it at
    /// descriptor `fd`; its function's tasks go to `onTasks(arena, count,
    /// lent)`, batched as records (a count of 0 once the connection
    /// closed). Throws unless `fd` is a socket.
    #[napi(factory)]
    pub fn inherited(
        env: Env,
        fd: i32,
        #[napi(ts_arg_type = "(arena: Buffer, count: number, lent: unknown[] | undefined) => void")] on_completions: Function<'_>,
        #[napi(ts_arg_type = "(arena: Buffer, count: number, lent: unknown[] | undefined) => void")] on_tasks: Function<'_>,
    ) -> error::Result<NativeSession> {
        let endpoint = Endpoint::inherited(fd).map_err(to_js)?;
        NativeSession::with(&env, ConnectOptions::worker(endpoint), on_completions, Some(on_tasks))
    }

    fn with(
        env: &Env,
        mut options: ConnectOptions,
        on_completions: Function<'_>,
        on_tasks: Option<Function<'_>>,
    ) -> error::Result<NativeSession> {
        let callbacks = Callbacks { on_completions: &on_completions, on_tasks: on_tasks.as_ref() };
        let (poller, event_loop) = LoopHandle::start(env, callbacks).map_err(to_js)?;
        options.poller = Some(poller.clone());
        let completions: CompletionSink = Arc::new(move |batch| poller.complete_later(batch));
        let sinks = Sinks { completions: Some(completions), tasks: None };
        Ok(NativeSession { session: Session::new(options, sinks, crate::engine()), _event_loop: event_loop })
    }

    /// Sends an invocation; its outcome comes to `onCompletions` with `tag`.
    /// Written at once when `flush_now`, else with the next `flush`.
    /// Throws what is wrong before sending (a payload over the limit, say).
    #[napi]
    // Flat arguments, not an object: this is the hot path, and each property read from an object costs a call into V8.
    #[allow(clippy::too_many_arguments)]
    pub fn submit_invoke(
        &self,
        tag: i64,
        target: String,
        asynchronous: bool,
        default_timeout_secs: u32,
        caller_timeout_ms: u32,
        invoker_context: String,
        payload: Either<String, BufferSlice>,
        flush_now: bool,
    ) -> error::Result<()> {
        let default_timeout_secs = u16::try_from(default_timeout_secs)
            .map_err(|_| to_js(Error::new(ErrorCode::InvalidParams, "a default timeout is at most 65535 s")))?;
        let request = InvokeRequest {
            target,
            asynchronous,
            default_timeout_secs,
            caller_timeout_ms,
            invoker_context,
            payload: payload_from_js(payload),
        };
        self.submit(Request::Invoke(request), tag, flush_now)
    }

    /// Publishes; the outcome (the message id as `acceptedId`) comes to
    /// `onCompletions`. Written as `submitInvoke` says.
    #[napi]
    pub fn submit_publish(
        &self,
        tag: i64,
        topic: String,
        payload: Either<String, BufferSlice>,
        flush_now: bool,
    ) -> error::Result<()> {
        self.submit(Request::Publish { topic, payload: payload_from_js(payload) }, tag, flush_now)
    }

    fn submit(&self, request: Request, tag: i64, flush_now: bool) -> error::Result<()> {
        self.session.submit(request, tag as u64).map_err(to_js)?;
        if flush_now {
            self.session.flush();
        }
        Ok(())
    }

    /// Writes every frame queued by `submitInvoke`, `submitPublish` and
    /// `completeTask`; the facade calls it once per turn of the event loop.
    #[napi]
    pub fn flush(&self) {
        self.session.flush();
    }

    /// Connects (a worker: and starts receiving tasks).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn open<'env>(&self, env: &'env Env) -> napi::Result<PromiseRaw<'env, ()>> {
        let session = self.session.clone();
        error::promise(env, async move { session.attach().await.map(drop) }, |()| ())
    }

    /// Asks the runtime for a service (`credentials`, `stats`); resolves with its JSON.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn query<'env>(&self, env: &'env Env, operation: String) -> napi::Result<PromiseRaw<'env, String>> {
        let session = self.session.clone();
        let work = async move {
            match session.client().await?.call(Request::Query { operation }).await? {
                Reply::Completed(result) => Ok(String::from_utf8_lossy(result.payload.bytes()).into_owned()),
                Reply::Accepted { .. } => Err(Error::new(ErrorCode::Protocol, "the runtime answered a query with Accepted")),
            }
        };
        error::promise(env, work, |json| json)
    }

    /// Subscribes to a topic filter; the messages come from `nextMessages`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn subscribe<'env>(&self, env: &'env Env, topic_filter: String) -> napi::Result<PromiseRaw<'env, ()>> {
        let session = self.session.clone();
        let work = async move { session.attach().await?.call(Request::Subscribe { topic_filter }).await.map(drop) };
        error::promise(env, work, |()| ())
    }

    /// The messages that are ready (at least one), or `null` once the
    /// connection is closed.
    #[napi]
    pub async fn next_messages(&self) -> Option<Vec<NativeMessage>> {
        let messages = self.session.next_messages().await?;
        Some(messages.into_iter().map(NativeMessage::from).collect())
    }

    /// Messages dropped because too many were waiting for `nextMessages`.
    #[napi]
    pub fn dropped_messages(&self) -> f64 {
        self.session.dropped_messages() as f64
    }

    /// Reports a finished task: `functionError` is 0 (none), 1 (Handled) or
    /// 2 (Unhandled); `status` 0 stands for 200; `replyContext` is what the
    /// handler says about its payload (JSON), or empty. Written at once
    /// when `flush_now`, else with the next `flush`.
    #[napi]
    pub fn complete_task(
        &self,
        id: i64,
        function_error: u32,
        status: u32,
        reply_context: String,
        payload: Either<String, BufferSlice>,
        flush_now: bool,
    ) -> error::Result<()> {
        let status = u16::try_from(status)
            .map_err(|_| to_js(Error::new(ErrorCode::InvalidParams, format!("status {status} is not an HTTP status"))))?;
        let result = SyncResult {
            status,
            function_error: function_error_from_js(function_error),
            reply_context,
            payload: payload_from_js(payload),
        };
        self.session.complete(id as u64, result).map_err(to_js)?;
        if flush_now {
            self.session.flush();
        }
        Ok(())
    }
}
