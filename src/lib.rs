//! The Node binding: converts values between JavaScript and `edgefc-core`
//! and nothing else. Failures are returned as `{code, message}` values rather
//! than thrown, so the JavaScript facade can build its typed errors (with a
//! stable `code`) in one place.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use edgefc_core::{
    Channel, Client, CompletionSink, ConnectOptions, Dispatch, Error, FunctionError, InvokeReply, InvokeRequest, NodeLauncher,
    Outgoing, Payload, RuntimeHandle, Sinks, TaskSink,
};
use napi::bindgen_prelude::{Buffer, BufferSlice, Either};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;

/// What an invocation gave: either `code` and `message` (it failed), or the
/// result of a Sync call, or the id of an accepted Async call.
#[napi(object)]
pub struct InvokeOutcome {
    /// The tag the request was started with (`startInvoke`, `startPublish`).
    pub tag: Option<i64>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub function_error: Option<String>,
    pub status_code: Option<u32>,
    pub payload: Option<Either<String, Buffer>>,
    pub invocation_id: Option<String>,
}

impl InvokeOutcome {
    fn empty() -> InvokeOutcome {
        InvokeOutcome {
            tag: None,
            code: None,
            message: None,
            function_error: None,
            status_code: None,
            payload: None,
            invocation_id: None,
        }
    }

    fn failed(error: Error) -> InvokeOutcome {
        InvokeOutcome { code: Some(error.code.as_str().to_string()), message: Some(error.message), ..InvokeOutcome::empty() }
    }

    fn of(reply: Result<InvokeReply, Error>) -> InvokeOutcome {
        match reply {
            Ok(InvokeReply::Completed(result)) => InvokeOutcome {
                function_error: result.function_error.as_str().map(str::to_string),
                status_code: Some(u32::from(result.status)),
                payload: Some(payload_to_js(result.payload)),
                ..InvokeOutcome::empty()
            },
            Ok(InvokeReply::Accepted { invocation_id }) => {
                InvokeOutcome { invocation_id: Some(invocation_id), ..InvokeOutcome::empty() }
            }
            Err(error) => InvokeOutcome::failed(error),
        }
    }
}

/// Called on the JavaScript thread with every reply that arrived together.
type CompletionCallback = ThreadsafeFunction<Vec<InvokeOutcome>, (), Vec<InvokeOutcome>, Status, false, true>;

/// Called on the JavaScript thread with the tasks that arrived together; an
/// empty array means the connection closed.
type TaskCallback = ThreadsafeFunction<Vec<NativeTask>, (), Vec<NativeTask>, Status, false, true>;

/// A published message, as a subscriber sees it.
#[napi(object)]
pub struct NativeMessage {
    pub source: String,
    pub topic: String,
    pub payload: Either<String, Buffer>,
}

/// One run of the hosted function's handler, as the worker bootstrap sees it.
#[napi(object)]
pub struct NativeTask {
    pub id: i64,
    pub request_id: String,
    /// Base64 JSON as the caller sent it; the bootstrap decodes it.
    pub invoker_context: String,
    pub payload: Either<String, Buffer>,
}

#[napi(object)]
pub struct NativeFailure {
    pub code: String,
    pub message: String,
}

impl From<Error> for NativeFailure {
    fn from(error: Error) -> NativeFailure {
        NativeFailure { code: error.code.as_str().to_string(), message: error.message }
    }
}

fn payload_from_slice(value: Either<String, BufferSlice>) -> Payload {
    match value {
        Either::A(text) => Payload::Text(Bytes::from(text)),
        Either::B(buffer) => Payload::Binary(Bytes::copy_from_slice(&buffer)),
    }
}

fn payload_to_js(payload: Payload) -> Either<String, Buffer> {
    match payload {
        Payload::Text(bytes) => {
            // The decoder has already checked that text payloads are UTF-8.
            Either::A(String::from_utf8(Vec::from(bytes)).unwrap_or_else(|error| {
                String::from_utf8_lossy(error.as_bytes()).into_owned()
            }))
        }
        Payload::Binary(bytes) => Either::B(Buffer::from(Vec::from(bytes))),
    }
}

/// Requests started while no connection is ready, in the order they were
/// started; `Some` while one connect attempt is under way for all of them.
type Backlog = Arc<Mutex<Option<Vec<(Outgoing, u64)>>>>;

/// A process's connection to the runtime, shared by every `FCClient` that
/// uses the same socket and token.
#[napi]
pub struct NativeChannel {
    channel: Arc<Channel>,
    sink: Option<CompletionSink>,
    backlog: Backlog,
    /// The client whose task or message queue is being read, once
    /// connected; `completeTask` is synchronous and must not wait on the
    /// channel's lock.
    attached: Arc<Mutex<Option<Arc<Client>>>>,
}

#[napi]
impl NativeChannel {
    /// `onCompletions(outcomes)` receives the replies to `startInvoke` and
    /// `startPublish`, batched; `onTasks(tasks)` the tasks of a serving
    /// channel. Neither keeps the process alive.
    #[napi(constructor)]
    pub fn new(
        socket_path: String,
        token: String,
        serve: bool,
        connect_timeout_ms: u32,
        on_completions: Option<CompletionCallback>,
        on_tasks: Option<TaskCallback>,
    ) -> NativeChannel {
        let options = ConnectOptions {
            socket_path: PathBuf::from(socket_path),
            token,
            serve,
            connect_timeout: Duration::from_millis(u64::from(connect_timeout_ms.max(1))),
        };
        let sink = on_completions.map(|callback| {
            Arc::new(move |batch: Vec<(u64, Result<InvokeReply, Error>)>| {
                let outcomes = batch
                    .into_iter()
                    .map(|(tag, reply)| InvokeOutcome { tag: Some(tag as i64), ..InvokeOutcome::of(reply) })
                    .collect();
                callback.call(outcomes, ThreadsafeFunctionCallMode::NonBlocking);
            }) as CompletionSink
        });
        let tasks = on_tasks.map(|callback| {
            Arc::new(move |batch: Vec<edgefc_core::Task>| {
                let tasks = batch
                    .into_iter()
                    .map(|task| NativeTask {
                        id: task.id as i64,
                        request_id: task.request_id,
                        invoker_context: task.invoker_context,
                        payload: payload_to_js(task.payload),
                    })
                    .collect();
                callback.call(tasks, ThreadsafeFunctionCallMode::NonBlocking);
            }) as TaskSink
        });
        NativeChannel {
            channel: Arc::new(Channel::with_sinks(options, Sinks { completions: sink.clone(), tasks })),
            sink,
            backlog: Arc::new(Mutex::new(None)),
            attached: Arc::new(Mutex::new(None)),
        }
    }

    /// Sends an invocation; its outcome comes to `onCompletions` with `tag`.
    /// Returns a failure found before sending (e.g. a payload over the limit).
    #[napi]
    pub fn start_invoke(
        &self,
        tag: i64,
        target: String,
        asynchronous: bool,
        invoker_context: String,
        payload: Either<String, BufferSlice>,
    ) -> Option<NativeFailure> {
        let request = InvokeRequest { target, asynchronous, invoker_context, payload: payload_from_slice(payload) };
        self.start(Outgoing::Invoke(request), tag as u64)
    }

    /// Publishes; the outcome (the message id as `invocationId`) comes to `onCompletions`.
    #[napi]
    pub fn start_publish(&self, tag: i64, topic: String, payload: Either<String, BufferSlice>) -> Option<NativeFailure> {
        self.start(Outgoing::Publish { topic, payload: payload_from_slice(payload) }, tag as u64)
    }

    /// Frames started (or completed) on this thread are queued; the facade
    /// calls `flush` once per turn of the event loop to write them all.
    /// Without a connection, requests wait in the backlog, in order, for
    /// one connect attempt that sends them all or fails them all.
    fn start(&self, outgoing: Outgoing, tag: u64) -> Option<NativeFailure> {
        let mut backlog = self.backlog.lock().unwrap();
        if backlog.is_none() {
            if let Some(client) = self.channel.ready() {
                drop(backlog);
                return client.start(outgoing, tag, Dispatch::Queue).err().map(NativeFailure::from);
            }
            *backlog = Some(Vec::new());
            let (channel, sink, waiting) = (self.channel.clone(), self.sink.clone(), self.backlog.clone());
            napi::bindgen_prelude::spawn(async move {
                let connected = channel.client().await;
                // Held while sending, so that nothing started meanwhile overtakes the backlog.
                let mut waiting = waiting.lock().unwrap();
                let mut failed = Vec::new();
                for (outgoing, tag) in waiting.take().unwrap_or_default() {
                    let started = match &connected {
                        Ok(client) => client.start(outgoing, tag, Dispatch::Queue),
                        Err(error) => Err(error.clone()),
                    };
                    if let Err(error) = started {
                        failed.push((tag, Err(error)));
                    }
                }
                if let Ok(client) = &connected {
                    client.flush();
                }
                drop(waiting);
                if let (false, Some(sink)) = (failed.is_empty(), sink) {
                    sink(failed);
                }
            });
        }
        backlog.as_mut().expect("set above").push((outgoing, tag));
        None
    }

    /// Connects (serving) and returns a failure, or `null` once connected.
    #[napi]
    pub async fn open(&self) -> Option<NativeFailure> {
        self.attach().await.err().map(NativeFailure::from)
    }

    async fn attach(&self) -> Result<Arc<Client>, Error> {
        let client = self.channel.client().await?;
        *self.attached.lock().unwrap() = Some(client.clone());
        Ok(client)
    }

    /// Asks the runtime for a service (`credentials`, `stats`); the outcome's payload is JSON.
    #[napi]
    pub async fn query(&self, operation: String) -> InvokeOutcome {
        let answer = match self.channel.client().await {
            Ok(client) => client.query(&operation).await,
            Err(error) => Err(error),
        };
        match answer {
            Ok(json) => InvokeOutcome { payload: Some(Either::A(json)), ..InvokeOutcome::empty() },
            Err(error) => InvokeOutcome::failed(error),
        }
    }

    /// Writes every frame queued by `startInvoke`, `startPublish` and `completeTask`.
    #[napi]
    pub fn flush(&self) {
        if let Some(client) = self.channel.ready() {
            client.flush();
        }
    }

    /// Subscribes this channel to a topic filter; messages come from `nextMessages`.
    #[napi]
    pub async fn subscribe(&self, topic_filter: String) -> Option<NativeFailure> {
        let subscribed = match self.attach().await {
            Ok(client) => client.subscribe(topic_filter).await,
            Err(error) => Err(error),
        };
        subscribed.err().map(NativeFailure::from)
    }

    /// The messages that are ready (at least one), or `null` once the
    /// connection is closed.
    #[napi]
    pub async fn next_messages(&self) -> Option<Vec<NativeMessage>> {
        let client = self.attached.lock().unwrap().clone()?;
        let messages = client.next_messages().await?;
        Some(
            messages
                .into_iter()
                .map(|message| NativeMessage {
                    source: message.source,
                    topic: message.topic,
                    payload: payload_to_js(message.payload),
                })
                .collect(),
        )
    }

    /// Reports a finished task: `functionError` is 0 (none), 1 (Handled) or
    /// 2 (Unhandled).
    #[napi]
    pub fn complete_task(&self, id: i64, function_error: u32, payload: Either<String, BufferSlice>) -> Option<NativeFailure> {
        let function_error = match function_error {
            0 => FunctionError::None,
            1 => FunctionError::Handled,
            _ => FunctionError::Unhandled,
        };
        let client = self.attached.lock().unwrap().clone();
        let Some(client) = client else {
            return Some(Error::runtime_unavailable("this channel is not serving tasks").into());
        };
        client.complete(id as u64, function_error, payload_from_slice(payload), Dispatch::Queue).err().map(NativeFailure::from)
    }
}

#[napi]
pub struct NativeRuntime {
    handle: Arc<tokio::sync::Mutex<Option<RuntimeHandle>>>,
    socket_path: String,
    admin_token: String,
}

#[napi]
impl NativeRuntime {
    #[napi(getter)]
    pub fn socket_path(&self) -> String {
        self.socket_path.clone()
    }

    #[napi(getter)]
    pub fn admin_token(&self) -> String {
        self.admin_token.clone()
    }

    /// Stops the runtime and its workers; later calls do nothing.
    #[napi]
    pub async fn stop(&self) {
        if let Some(handle) = self.handle.lock().await.take() {
            handle.stop().await;
        }
    }
}

/// Where the worker bootstrap lives and what runs it; the JS side knows.
#[napi(object)]
pub struct WorkerSetup {
    pub node: String,
    pub bootstrap: String,
    pub module_dir: String,
}

/// Loads `configPath` and starts a runtime in this process. Rejects with a
/// message that names the problem (bad config, socket in use).
#[napi]
pub async fn start_runtime(config_path: String, worker: WorkerSetup) -> napi::Result<NativeRuntime> {
    let config = edgefc_core::Config::load(std::path::Path::new(&config_path))
        .map_err(|error| napi::Error::from_reason(error.message))?;
    let launcher = NodeLauncher {
        node: PathBuf::from(worker.node),
        bootstrap: PathBuf::from(worker.bootstrap),
        module_dir: PathBuf::from(worker.module_dir),
    };
    let handle = edgefc_core::runtime::start(config, Arc::new(launcher))
        .await
        .map_err(|error| napi::Error::from_reason(error.message))?;
    Ok(NativeRuntime {
        socket_path: handle.socket_path().display().to_string(),
        admin_token: handle.admin_token().to_string(),
        handle: Arc::new(tokio::sync::Mutex::new(Some(handle))),
    })
}

/// The codes every failure carries, for the facade's typed errors.
#[napi]
pub fn error_codes() -> Vec<String> {
    edgefc_core::ErrorCode::ALL.iter().map(|code| code.as_str().to_string()).collect()
}

#[napi(object)]
pub struct RuntimeEndpoint {
    pub socket_path: String,
    pub admin_token_path: String,
}

/// Where the runtime started from `configPath` listens and keeps its admin
/// token, so the CLI and scripts can reach it.
#[napi]
pub fn runtime_endpoint(config_path: String) -> Either<RuntimeEndpoint, NativeFailure> {
    match edgefc_core::Config::load(std::path::Path::new(&config_path)) {
        Ok(config) => Either::A(RuntimeEndpoint {
            socket_path: config.socket_path().display().to_string(),
            admin_token_path: config.admin_token_path().display().to_string(),
        }),
        Err(error) => Either::B(error.into()),
    }
}

/// One worker thread for the addon's async work: a process talks to the
/// runtime over one connection, so more threads only add hand-offs (and
/// wake-ups) between them.
#[napi_derive::module_init]
fn init() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build();
    if let Ok(runtime) = runtime {
        napi::bindgen_prelude::create_custom_tokio_runtime(runtime);
    }
}
