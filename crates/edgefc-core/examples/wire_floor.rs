//! The wire floor for `npm run bench`: a Rust client, a Rust broker and a
//! Rust worker, three processes as in edgefc's design, exchanging edgefc
//! frames over two Unix sockets with nothing else in the way (no Node, no
//! authentication, no queues). What a three-process design on this machine
//! could reach at best: each process is one thread, as the runtime is.
//!
//! `wire_floor <payload bytes> <in flight> <duration ms>` prints one JSON
//! line: `{"calls", "seconds", "p50_us", "p99_us"}`. It starts itself twice
//! more, as `wire_floor broker <client socket> <worker socket>` and
//! `wire_floor worker <worker socket>`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgefc_core::proto::{Frame, FrameCodec, FunctionError, Payload};
use edgefc_core::transport::{self, FrameSender, OutputBound, PendingTable};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{oneshot, Mutex};

const MAX_PAYLOAD: usize = 8 << 20;

fn codec() -> FrameCodec {
    FrameCodec::for_max_payload(MAX_PAYLOAD)
}

/// Echoes every Task back as TaskDone.
async fn worker(stream: UnixStream) {
    let (mut reader, sender) = transport::split(stream, codec(), OutputBound::unbounded());
    while let Ok(Some(Frame::Task { id, payload, .. })) = reader.read_frame().await {
        sender.send(Frame::TaskDone {
            id,
            status: 0,
            function_error: FunctionError::None,
            reply_context: String::new(),
            payload,
        });
    }
}

/// Forwards Invoke → Task and TaskDone → Result, as the runtime does.
async fn broker(client: UnixStream, worker: UnixStream) {
    let (mut from_client, to_client) = transport::split(client, codec(), OutputBound::unbounded());
    let (mut from_worker, to_worker) = transport::split(worker, codec(), OutputBound::unbounded());
    let back = tokio::spawn(async move {
        while let Ok(Some(Frame::TaskDone { id, function_error, reply_context, payload, .. })) = from_worker.read_frame().await {
            to_client.send(Frame::Result { id, status: 200, function_error, reply_context, payload });
        }
    });
    while let Ok(Some(Frame::Invoke { id, payload, .. })) = from_client.read_frame().await {
        to_worker.send(Frame::Task { id, attempt: 1, request_id: String::new(), invoker_context: String::new(), payload });
    }
    back.abort();
}

type Waiting = Arc<PendingTable<oneshot::Sender<()>>>;

async fn call(sender: &FrameSender, waiting: &Waiting, payload: &Payload) {
    let (done, wait) = oneshot::channel();
    let id = waiting.register(done).expect("open");
    sender.send(Frame::Invoke {
        id,
        asynchronous: false,
        default_timeout_secs: 0,
        caller_timeout_ms: 0,
        target: "echo".into(),
        invoker_context: String::new(),
        payload: payload.clone(),
    });
    let _ = wait.await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["broker", client_path, worker_path] => return serve_broker(client_path, worker_path).await,
        ["worker", worker_path] => return worker(UnixStream::connect(worker_path).await.expect("the broker listens")).await,
        _ => {}
    }
    let numbers: Vec<usize> = args.iter().map(|arg| arg.parse().expect("numbers")).collect();
    let [size, in_flight, duration_ms] = numbers[..] else {
        panic!("usage: wire_floor <payload bytes> <in flight> <duration ms>");
    };
    let dir = std::env::temp_dir().join(format!("edgefc-floor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (client_path, worker_path) = (dir.join("c.sock"), dir.join("w.sock"));
    let me = std::env::current_exe().unwrap();
    let mut broker = std::process::Command::new(&me)
        .args(["broker".as_ref(), client_path.as_os_str(), worker_path.as_os_str()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The broker says when it listens.
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(broker.stdout.take().unwrap()), &mut ready).unwrap();
    let mut worker = std::process::Command::new(&me).args(["worker".as_ref(), worker_path.as_os_str()]).spawn().unwrap();
    let client = UnixStream::connect(&client_path).await.unwrap();

    let (mut replies, sender) = transport::split(client, codec(), OutputBound::unbounded());
    let waiting: Waiting = Default::default();
    let router = waiting.clone();
    tokio::spawn(async move {
        while let Ok(Some(Frame::Result { id, .. })) = replies.read_frame().await {
            if let Some(done) = router.take(id) {
                let _ = done.send(());
            }
        }
    });

    let payload = Payload::Binary(Bytes::from(vec![7u8; size]));
    // Warm up: connections, allocator, caches.
    for _ in 0..50 {
        call(&sender, &waiting, &payload).await;
    }
    let samples = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_millis(duration_ms as u64);
    let started = Instant::now();
    let lanes: Vec<_> = (0..in_flight)
        .map(|_| {
            let (sender, waiting, payload, samples) = (sender.clone(), waiting.clone(), payload.clone(), samples.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while Instant::now() < deadline {
                    let begun = Instant::now();
                    call(&sender, &waiting, &payload).await;
                    mine.push(begun.elapsed().as_secs_f64() * 1e6);
                }
                samples.lock().await.extend(mine);
            })
        })
        .collect();
    for lane in lanes {
        lane.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut samples = samples.lock().await.clone();
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!("{{\"calls\":{},\"seconds\":{seconds:.4},\"p50_us\":{:.2},\"p99_us\":{:.2}}}", samples.len(), at(0.50), at(0.99));
    let _ = broker.kill();
    let _ = worker.kill();
    let _ = (broker.wait(), worker.wait());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The broker process: listens on both sockets, says so on stdout, then
/// forwards between the client and the worker.
async fn serve_broker(client_path: &str, worker_path: &str) {
    let (client_listener, worker_listener) = (UnixListener::bind(client_path).unwrap(), UnixListener::bind(worker_path).unwrap());
    println!("ready");
    let (client, worker) = tokio::join!(client_listener.accept(), worker_listener.accept());
    broker(client.unwrap().0, worker.unwrap().0).await;
}
