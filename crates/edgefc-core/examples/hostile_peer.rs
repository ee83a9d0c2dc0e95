//! The careless and hostile peers of `npm run stress`: each mode misbehaves
//! towards a running runtime in one way, then prints one JSON line of what
//! it saw. The runtime must stay bounded and keep answering others meanwhile.
//!
//! `hostile_peer <mode> --socket <path> --token <admin token> [options]`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use clap::{Parser, ValueEnum};
use edgefc_core::client::{Client, ConnectOptions, Sinks};
use edgefc_core::proto::{Frame, FrameCodec, InvokeRequest, Payload, Reply, Request, PROTOCOL_VERSION};
use edgefc_core::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::codec::Encoder;

#[derive(Parser)]
struct Args {
    mode: Mode,
    #[arg(long)]
    socket: PathBuf,
    #[arg(long)]
    token: String,
    /// How long the misbehaviour lasts.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Connections, or invocations, depending on the mode.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Payload (or Hello) bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    #[arg(long, default_value = "echo")]
    target: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// Subscribes to `#` and never reads, while publishing 1 KiB messages.
    StalledSubscriber,
    /// Only publishes (for a subscriber that is someone else).
    Publish,
    /// Pipelines Sync invokes of `size` bytes and never reads a reply.
    Pipeline,
    /// Sends `count` Async invokes of `size` bytes to `target`.
    AsyncFlood,
    /// Opens `count` connections that each send a Hello of `size` bytes.
    BigHellos,
    /// Opens `count` connections that never say Hello, and holds them.
    Idle,
    /// `count` bursts of 10,000 connections, each greeted and closed.
    Bursts,
}

fn encode(frame: &Frame) -> BytesMut {
    let mut bytes = BytesMut::new();
    FrameCodec::unlimited().encode(frame, &mut bytes).expect("encodes");
    bytes
}

async fn greeted(args: &Args) -> UnixStream {
    let mut stream = UnixStream::connect(&args.socket).await.expect("connects");
    stream
        .write_all(&encode(&Frame::Hello { version: PROTOCOL_VERSION, serve: false, token: args.token.clone() }))
        .await
        .expect("says Hello");
    stream
}

async fn client(args: &Args) -> Client {
    Client::connect(&ConnectOptions::new(&args.socket, &args.token), Sinks::default()).await.expect("connects")
}

/// Publishes 1 KiB messages, 64 at a time, until the deadline.
async fn publish_for(args: &Args, deadline: Instant) -> u64 {
    let publisher = client(args).await;
    let payload = Payload::Binary(Bytes::from(vec![7u8; 1024]));
    let mut published = 0;
    while Instant::now() < deadline {
        let batch = (0..64).map(|_| publisher.call(Request::Publish { topic: "/stress".into(), payload: payload.clone() }));
        published += futures_util::future::join_all(batch).await.iter().filter(|reply| reply.is_ok()).count() as u64;
    }
    published
}

async fn run(args: Args) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    match args.mode {
        Mode::StalledSubscriber => {
            let mut subscriber = greeted(&args).await;
            subscriber.write_all(&encode(&Frame::Subscribe { id: 1, topic_filter: "#".into() })).await.expect("subscribes");
            let published = publish_for(&args, deadline).await;
            drop(subscriber);
            serde_json::json!({ "published": published })
        }
        Mode::Publish => serde_json::json!({ "published": publish_for(&args, deadline).await }),
        Mode::Pipeline => {
            let mut caller = greeted(&args).await;
            let payload = Payload::Binary(Bytes::from(vec![1u8; args.size]));
            let mut sent = 0u64;
            let flood = async {
                loop {
                    let frame = Frame::Invoke {
                        id: sent + 1,
                        asynchronous: false,
                        default_timeout_secs: 0,
                        caller_timeout_ms: 0,
                        target: args.target.clone(),
                        invoker_context: String::new(),
                        payload: payload.clone(),
                    };
                    if caller.write_all(&encode(&frame)).await.is_err() {
                        return "closed by the runtime";
                    }
                    sent += 1;
                }
            };
            let outcome = tokio::time::timeout_at(deadline.into(), flood).await.unwrap_or("still open, not read");
            serde_json::json!({ "sent": sent, "outcome": outcome })
        }
        Mode::AsyncFlood => {
            let caller = client(&args).await;
            let payload = Payload::Binary(Bytes::from(vec![2u8; args.size]));
            let (mut accepted, mut refused, mut other) = (0, 0, 0);
            for _ in 0..args.count {
                let request = InvokeRequest {
                    target: args.target.clone(),
                    asynchronous: true,
                    default_timeout_secs: 0,
                    caller_timeout_ms: 0,
                    invoker_context: String::new(),
                    payload: payload.clone(),
                };
                match caller.call(Request::Invoke(request)).await {
                    Ok(Reply::Accepted { .. }) => accepted += 1,
                    Err(error) if error.code == ErrorCode::QueueFull => refused += 1,
                    _ => other += 1,
                }
            }
            serde_json::json!({ "accepted": accepted, "refusedQueueFull": refused, "other": other })
        }
        Mode::BigHellos => {
            let hello = encode(&Frame::Hello { version: PROTOCOL_VERSION, serve: false, token: "t".repeat(60_000) });
            let mut header = hello.to_vec();
            // Claim a Hello of `size` bytes; send the claimed bytes after the real header.
            header[..4].copy_from_slice(&((args.size - 4) as u32).to_le_bytes());
            let mut held = Vec::new();
            let mut refused = 0;
            for _ in 0..args.count {
                let mut stream = UnixStream::connect(&args.socket).await.expect("connects");
                let filler = vec![b't'; args.size.saturating_sub(header.len())];
                let sent = async {
                    stream.write_all(&header).await?;
                    stream.write_all(&filler).await
                };
                if tokio::time::timeout(Duration::from_millis(100), sent).await.map_or(true, |sent| sent.is_err()) {
                    refused += 1;
                }
                held.push(stream);
            }
            tokio::time::sleep_until(deadline.into()).await;
            serde_json::json!({ "connections": args.count, "notFullyRead": refused })
        }
        Mode::Idle => {
            let mut held = Vec::new();
            let mut failed = 0;
            for _ in 0..args.count {
                match UnixStream::connect(&args.socket).await {
                    Ok(stream) => held.push(stream),
                    Err(_) => failed += 1,
                }
            }
            tokio::time::sleep_until(deadline.into()).await;
            let mut closed_by_runtime = 0;
            for stream in &mut held {
                let mut byte = [0u8; 1];
                if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), stream.read(&mut byte)).await {
                    closed_by_runtime += 1;
                }
            }
            serde_json::json!({ "opened": held.len(), "failed": failed, "closedByRuntime": closed_by_runtime })
        }
        Mode::Bursts => {
            let mut opened = 0;
            for _ in 0..args.count {
                let mut burst = Vec::new();
                for _ in 0..10_000 {
                    if let Ok(stream) = UnixStream::connect(&args.socket).await {
                        burst.push(stream);
                    }
                }
                opened += burst.len();
                let hello = encode(&Frame::Hello { version: PROTOCOL_VERSION, serve: false, token: args.token.clone() });
                for stream in &mut burst {
                    let _ = stream.write_all(&hello).await;
                }
                drop(burst);
            }
            serde_json::json!({ "opened": opened })
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let result = run(Args::parse()).await;
    println!("{result}");
}
