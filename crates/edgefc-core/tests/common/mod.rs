//! What the runtime tests share: functions hosted in-process (a launcher
//! that starts a tokio task instead of a Node process, so no Node is
//! needed), a runtime started on a temporary directory, and helpers that
//! speak to it through the client or a raw socket.
#![allow(dead_code)]

pub mod mosquitto;

use bytes::BytesMut;
use edgefc_core::client::{Client, ConnectOptions, Dispatch, Endpoint, Sinks, TaskSink};
use edgefc_core::proto::{
    Frame, FrameCodec, FunctionError, InvokeRequest, Payload, Reply, Request, SyncResult, Task, PROTOCOL_VERSION,
};
use edgefc_core::runtime::{self, Config, LaunchSpec, RuntimeHandle, WorkerLauncher, WorkerProcess};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::codec::{Decoder, Encoder};

/// Hosts every function in-process. The handler answers by payload:
/// "hang" never answers, "fail" is a Handled error, one that starts with
/// "gate" waits for `gate` to open, "sleep:<ms>" answers after that long,
/// anything else is echoed back.
pub struct InProcess {
    pub launches: AtomicUsize,
    pub running: Arc<AtomicUsize>,
    pub peak: Arc<AtomicUsize>,
    pub gate: Arc<Notify>,
    /// Each worker's connection, once it said Hello.
    pub workers: Arc<std::sync::Mutex<Vec<Arc<Client>>>>,
    /// Every task a worker started: its request id, attempt and payload.
    pub tasks: Arc<std::sync::Mutex<Vec<(String, u16, Payload)>>>,
}

impl InProcess {
    pub fn new() -> Arc<InProcess> {
        Arc::new(InProcess {
            launches: AtomicUsize::new(0),
            running: Arc::new(AtomicUsize::new(0)),
            peak: Arc::new(AtomicUsize::new(0)),
            gate: Arc::new(Notify::new()),
            workers: Arc::new(std::sync::Mutex::new(Vec::new())),
            tasks: Arc::new(std::sync::Mutex::new(Vec::new())),
        })
    }
}

impl WorkerLauncher for InProcess {
    fn launch(&self, spec: LaunchSpec<'_>) -> std::io::Result<WorkerProcess> {
        self.launches.fetch_add(1, Ordering::SeqCst);
        let connection = std::os::unix::net::UnixStream::from(spec.connection);
        connection.set_nonblocking(true)?;
        let options = ConnectOptions::worker(Endpoint::Inherited(Arc::new(std::sync::Mutex::new(Some(connection)))));
        let (running, peak, gate) = (self.running.clone(), self.peak.clone(), self.gate.clone());
        let workers = self.workers.clone();
        let tasks_seen = self.tasks.clone();
        let (exit_tx, exit_rx) = watch::channel(None);
        let worker = tokio::spawn(async move {
            let (task_queue, mut tasks) = mpsc::unbounded_channel::<Vec<Task>>();
            let task_sink: TaskSink = Arc::new(move |batch| {
                let _ = task_queue.send(batch);
            });
            let sinks = Sinks { tasks: Some(task_sink), ..Sinks::default() };
            let Ok(client) = Client::connect(&options, sinks).await else {
                return;
            };
            let client = Arc::new(client);
            workers.lock().unwrap().push(client.clone());
            // An empty batch: the connection has closed.
            while let Some(batch) = tasks.recv().await.filter(|batch| !batch.is_empty()) {
                for task in batch {
                    tasks_seen.lock().unwrap().push((task.request_id.clone(), task.attempt, task.payload.clone()));
                    let (client, running, peak, gate) = (client.clone(), running.clone(), peak.clone(), gate.clone());
                    tokio::spawn(async move {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        let answer = match task.payload.bytes().as_ref() {
                            b"hang" => None,
                            b"fail" => Some((FunctionError::Handled, Payload::text("{\"errorMessage\":\"failed\"}"))),
                            payload if payload.starts_with(b"sleep:") => {
                                let ms = std::str::from_utf8(&payload[6..]).ok().and_then(|ms| ms.parse().ok()).unwrap_or(0);
                                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                                Some((FunctionError::None, task.payload.clone()))
                            }
                            payload if payload.starts_with(b"gate") => {
                                gate.notified().await;
                                Some((FunctionError::None, Payload::text("opened")))
                            }
                            _ => Some((FunctionError::None, task.payload.clone())),
                        };
                        running.fetch_sub(1, Ordering::SeqCst);
                        if let Some((function_error, payload)) = answer {
                            let result = SyncResult { function_error, ..SyncResult::ok(payload) };
                            let _ = client.complete(task.id, result, Dispatch::Writer);
                        }
                    });
                }
            }
            let _ = exit_tx.send(Some("exit code 0".to_string()));
        });
        Ok(WorkerProcess::new(move || worker.abort(), exit_rx))
    }
}

pub struct Fixture {
    pub handle: Option<RuntimeHandle>,
    pub launcher: Arc<InProcess>,
    config: String,
    dir: tempfile::TempDir,
}

impl Fixture {
    pub async fn start(extra: &str) -> Fixture {
        Fixture::start_with(extra, InProcess::new()).await
    }

    pub async fn start_with(extra: &str, launcher: Arc<InProcess>) -> Fixture {
        Fixture::start_as("S", extra, launcher).await
    }

    /// With its functions in service `service` (another gateway's, say).
    pub async fn start_as(service: &str, extra: &str, launcher: Arc<InProcess>) -> Fixture {
        let dir = tempfile::Builder::new().prefix("efc").tempdir_in("/tmp").unwrap();
        // Calls that never answer ("hang") would hold a stop for the whole default grace.
        let grace = if extra.contains("shutdownGraceMs") { "" } else { r#""shutdownGraceMs": 100,"# };
        let text = format!(
            r#"{{"stateDir": "s", {grace} {extra} "functions": [
                {{"serviceName": "{service}", "functionName": "echo", "functionId": "echo", "codeDir": "."}},
                {{"serviceName": "{service}", "functionName": "slow", "codeDir": ".", "timeoutMs": 200}},
                {{"serviceName": "{service}", "functionName": "narrow", "codeDir": ".", "maxConcurrency": 2}}
            ]}}"#
        );
        let config = Config::parse(&text, dir.path()).expect("valid config");
        let handle = runtime::start(config, launcher.clone()).await.expect("starts");
        Fixture { handle: Some(handle), launcher, config: text, dir }
    }

    pub fn state_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("s")
    }

    /// Stops the runtime and starts it again on the same state directory.
    pub async fn restart(&mut self) {
        self.stop_runtime().await;
        self.start_again().await;
    }

    /// Stops the runtime, keeping its state directory.
    pub async fn stop_runtime(&mut self) {
        self.handle.take().unwrap().stop().await;
    }

    pub async fn start_again(&mut self) {
        let config = Config::parse(&self.config, self.dir.path()).expect("valid config");
        self.handle = Some(runtime::start(config, self.launcher.clone()).await.expect("starts again"));
    }

    pub fn handle(&self) -> &RuntimeHandle {
        self.handle.as_ref().unwrap()
    }

    pub async fn client(&self) -> Client {
        Client::connect(&ConnectOptions::new(self.handle().socket_path(), self.handle().admin_token()), Sinks::default())
            .await
            .expect("connects")
    }

    pub async fn stop(mut self) {
        self.handle.take().unwrap().stop().await;
    }
}

pub const SLOW: &str = "acs:fc:::service:S:function:slow";

pub fn sync(target: &str, payload: Payload) -> InvokeRequest {
    InvokeRequest {
        target: target.into(),
        asynchronous: false,
        default_timeout_secs: 0,
        caller_timeout_ms: 0,
        invoker_context: String::new(),
        payload,
    }
}

pub async fn invoke(client: &Client, request: InvokeRequest) -> edgefc_core::Result<Reply> {
    client.call(Request::Invoke(request)).await
}

pub async fn completed(client: &Client, request: InvokeRequest) -> SyncResult {
    match invoke(client, request).await.expect("invocation succeeds") {
        Reply::Completed(result) => result,
        other => panic!("expected a result, got {other:?}"),
    }
}

pub async fn subscribe(client: &Client, topic_filter: &str) {
    client.call(Request::Subscribe { topic_filter: topic_filter.into() }).await.expect("subscribed");
}

pub async fn publish(client: &Client, topic: &str, payload: Payload) -> String {
    match client.call(Request::Publish { topic: topic.into(), payload }).await.expect("published") {
        Reply::Accepted { accepted_id } => accepted_id,
        other => panic!("expected Accepted, got {other:?}"),
    }
}

pub async fn query(client: &Client, operation: &str) -> edgefc_core::Result<serde_json::Value> {
    match client.call(Request::Query { operation: operation.into() }).await? {
        Reply::Completed(result) => Ok(serde_json::from_slice(result.payload.bytes()).expect("JSON")),
        other => panic!("expected a result, got {other:?}"),
    }
}

pub async fn stats(client: &Client) -> serde_json::Value {
    query(client, "stats").await.expect("stats")
}

/// Asks for the stats until `ready` holds for them, and returns them.
pub async fn stats_when(client: &Client, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    loop {
        let stats = stats(client).await;
        if ready(&stats) {
            return stats;
        }
        tokio::task::yield_now().await;
    }
}

/// A connection that speaks frames by hand, for peers that misbehave.
pub struct Raw {
    pub stream: UnixStream,
    received: BytesMut,
}

impl Raw {
    pub async fn connect(fixture: &Fixture) -> Raw {
        Raw { stream: UnixStream::connect(fixture.handle().socket_path()).await.expect("connects"), received: BytesMut::new() }
    }

    /// Connected and greeted with the admin token.
    pub async fn admin(fixture: &Fixture) -> Raw {
        let mut raw = Raw::connect(fixture).await;
        let token = fixture.handle().admin_token().to_string();
        raw.send(&Frame::Hello { version: PROTOCOL_VERSION, serve: false, token }).await;
        match raw.read_frame().await {
            Some(Frame::Welcome { .. }) => raw,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    pub async fn send(&mut self, frame: &Frame) {
        let mut bytes = BytesMut::new();
        FrameCodec::unlimited().encode(frame, &mut bytes).expect("encodes");
        self.stream.write_all(&bytes).await.expect("writes");
    }

    /// The next frame, or `None` once the runtime has closed the connection.
    pub async fn read_frame(&mut self) -> Option<Frame> {
        let mut codec = FrameCodec::unlimited();
        loop {
            if let Some(frame) = codec.decode(&mut self.received).expect("a well-formed frame") {
                return Some(frame);
            }
            if self.stream.read_buf(&mut self.received).await.unwrap_or(0) == 0 {
                return None;
            }
        }
    }

    /// Reads, discarding, until the runtime closes the connection.
    pub async fn closed(&mut self) {
        while self.read_frame().await.is_some() {}
    }
}
