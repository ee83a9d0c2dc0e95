//! A client connection driven by a thread's own event loop (a `Poller`), as
//! the Node binding drives it from libuv: here a plain `poll(2)` loop.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{mpsc, Arc, Mutex};

use common::*;
use edgefc_core::client::{Arrived, Client, ConnectOptions, Dispatch, Poller, Sinks};
use edgefc_core::proto::{FunctionError, Payload, Reply, Request};
use edgefc_core::ErrorCode;

/// One thread that polls every watched client and a wake-up socket.
struct ThreadPoller {
    state: Mutex<PollState>,
    wake: UnixStream,
}

#[derive(Default)]
struct PollState {
    to_watch: Vec<Arc<Client>>,
    to_write: Vec<u64>,
    stopped: bool,
}

impl Poller for ThreadPoller {
    fn watch(&self, client: Arc<Client>) {
        self.state.lock().unwrap().to_watch.push(client);
        let _ = (&self.wake).write(&[1]);
    }

    fn write_soon(&self, client_id: u64) {
        self.state.lock().unwrap().to_write.push(client_id);
        let _ = (&self.wake).write(&[1]);
    }
}

impl ThreadPoller {
    /// Starts the polling thread; what arrives goes to the receiver.
    fn start() -> (Arc<ThreadPoller>, mpsc::Receiver<Arrived>) {
        let (wake, woken) = UnixStream::pair().unwrap();
        woken.set_nonblocking(true).unwrap();
        let poller = Arc::new(ThreadPoller { state: Mutex::new(PollState::default()), wake });
        let (arrivals, arrived) = mpsc::channel();
        let polling = poller.clone();
        std::thread::spawn(move || polling.run(woken, arrivals));
        (poller, arrived)
    }

    fn stop(&self) {
        self.state.lock().unwrap().stopped = true;
        let _ = (&self.wake).write(&[1]);
    }

    fn run(&self, mut woken: UnixStream, arrivals: mpsc::Sender<Arrived>) {
        // Each watched client, and whether it waits for writability.
        let mut watched: HashMap<u64, (Arc<Client>, bool)> = HashMap::new();
        loop {
            let mut fds = vec![libc::pollfd { fd: woken.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
            let ids: Vec<u64> = watched.keys().copied().collect();
            for id in &ids {
                let (client, writing) = &watched[id];
                let events = if *writing { libc::POLLIN | libc::POLLOUT } else { libc::POLLIN };
                fds.push(libc::pollfd { fd: client.fd().unwrap(), events, revents: 0 });
            }
            // SAFETY: `fds` is a valid array of pollfd of the given length.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if fds[0].revents != 0 {
                let mut drained = [0u8; 64];
                while woken.read(&mut drained).map(|read| read > 0).unwrap_or(false) {}
                let (to_watch, to_write, stopped) = {
                    let mut state = self.state.lock().unwrap();
                    (std::mem::take(&mut state.to_watch), std::mem::take(&mut state.to_write), state.stopped)
                };
                if stopped {
                    return;
                }
                for client in to_watch {
                    let id = client.id();
                    watched.insert(id, (client, false));
                    read(&mut watched, id, &arrivals);
                }
                for id in to_write {
                    if let Some((client, writing)) = watched.get_mut(&id) {
                        *writing = client.write_ready();
                    }
                }
            }
            for (index, id) in ids.iter().enumerate() {
                let revents = fds[index + 1].revents;
                if revents & libc::POLLOUT != 0 {
                    if let Some((client, writing)) = watched.get_mut(id) {
                        *writing = client.write_ready();
                    }
                }
                if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                    read(&mut watched, *id, &arrivals);
                }
            }
        }
    }
}

fn read(watched: &mut HashMap<u64, (Arc<Client>, bool)>, id: u64, arrivals: &mpsc::Sender<Arrived>) {
    let Some((client, _)) = watched.get(&id) else {
        return;
    };
    let arrived = client.read_ready();
    if arrived.ended {
        watched.remove(&id);
    }
    if !arrived.replies.is_empty() || !arrived.tasks.is_empty() || arrived.ended {
        let _ = arrivals.send(arrived);
    }
}

async fn polled_client(fixture: &Fixture, poller: &Arc<ThreadPoller>) -> Arc<Client> {
    let mut options = ConnectOptions::new(fixture.handle().socket_path(), fixture.handle().admin_token());
    options.poller = Some(poller.clone());
    let client = Arc::new(Client::connect(&options, Sinks::default()).await.expect("connects"));
    poller.watch(client.clone());
    client
}

/// Collects replies until `count` have arrived, or (with `None`) until the
/// connection has ended.
fn replies(arrived: &mpsc::Receiver<Arrived>, count: Option<usize>) -> (HashMap<u64, edgefc_core::Result<Reply>>, bool) {
    let mut replies = HashMap::new();
    let mut ended = false;
    while !ended && count.is_none_or(|count| replies.len() < count) {
        let batch = arrived.recv_timeout(std::time::Duration::from_secs(20)).expect("replies arrive");
        ended = batch.ended;
        replies.extend(batch.replies);
    }
    (replies, ended)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polled_client_gets_every_reply_through_its_poller_large_payloads_included() {
    let fixture = Fixture::start("").await;
    let (poller, arrived) = ThreadPoller::start();
    let client = polled_client(&fixture, &poller).await;
    // 1 MiB payloads fill the socket: writing then waits for writability.
    let payloads: Vec<Payload> = (0..40u8)
        .map(|i| if i % 4 == 0 { Payload::Binary(vec![i; 1 << 20].into()) } else { Payload::text(format!("call {i}")) })
        .collect();
    for (tag, payload) in payloads.iter().enumerate() {
        client.submit(Request::Invoke(sync("echo", payload.clone())), tag as u64, Dispatch::Queue).expect("sent");
    }
    client.flush();
    let (replies, ended) = replies(&arrived, Some(payloads.len()));
    assert!(!ended);
    for (tag, payload) in payloads.iter().enumerate() {
        match &replies[&(tag as u64)] {
            Ok(Reply::Completed(result)) => {
                assert_eq!(result.function_error, FunctionError::None);
                assert_eq!(&result.payload, payload, "reply {tag}");
            }
            other => panic!("reply {tag}: {other:?}"),
        }
    }
    // An awaited call goes out through the poller's thread (`write_soon`).
    assert!(query(&client, "stats").await.is_ok());
    poller.stop();
    fixture.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_runtime_goes_the_poller_learns_it_and_waiting_calls_fail() {
    let fixture = Fixture::start("").await;
    let (poller, arrived) = ThreadPoller::start();
    let client = polled_client(&fixture, &poller).await;
    subscribe(&client, "#").await;
    client.submit(Request::Invoke(sync("echo", Payload::text("hang"))), 7, Dispatch::Queue).expect("sent");
    client.flush();
    fixture.stop().await;
    let (replies, ended) = replies(&arrived, None);
    assert!(ended, "the end of the connection is reported");
    let failure = replies[&7].as_ref().expect_err("the waiting call fails");
    assert!(matches!(failure.code, ErrorCode::RuntimeUnavailable | ErrorCode::ShuttingDown), "{failure:?}");
    assert!(client.is_closed());
    let after_end = tokio::time::timeout(std::time::Duration::from_secs(10), client.next_messages()).await;
    assert!(after_end.expect("a subscriber learns that the connection ended").is_none());
    poller.stop();
}
