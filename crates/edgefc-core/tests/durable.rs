//! Nothing accepted is lost: an Async invocation answered Accepted is in
//! the store, runs again after a restart with the same id, is retried after
//! a failed attempt, and becomes a dead letter after the last one.

mod common;

use common::*;
use edgefc_core::client::{Client, ConnectOptions, Sinks};
use edgefc_core::proto::{InvokeRequest, Payload, Reply};
use edgefc_core::runtime::store::{Store, StoreLimits};
use edgefc_core::ErrorCode;

const LIMITS: StoreLimits =
    StoreLimits { max_bytes: 1 << 20, max_dead_letters: 10, max_dead_letter_bytes: 1 << 20, cache_bytes: 1 << 20 };

fn asynchronous(target: &str, payload: &str) -> InvokeRequest {
    InvokeRequest { asynchronous: true, ..sync(target, Payload::text(payload)) }
}

async fn accepted(client: &Client, request: InvokeRequest) -> String {
    match invoke(client, request).await.expect("accepted") {
        Reply::Accepted { accepted_id } => accepted_id,
        other => panic!("expected Accepted, got {other:?}"),
    }
}

/// The tasks started so far: (request id, attempt, payload).
fn tasks(fixture: &Fixture) -> Vec<(String, u16, Payload)> {
    fixture.launcher.tasks.lock().unwrap().clone()
}

async fn tasks_when(fixture: &Fixture, ready: impl Fn(&[(String, u16, Payload)]) -> bool) -> Vec<(String, u16, Payload)> {
    loop {
        let seen = tasks(fixture);
        if ready(&seen) {
            return seen;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn accepted_invocations_cut_short_by_a_restart_run_again_with_the_same_id() {
    let mut fixture = Fixture::start("").await;
    let client = fixture.client().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(accepted(&client, asynchronous("echo", "hang")).await);
    }
    tasks_when(&fixture, |seen| seen.len() == 5).await;
    fixture.restart().await;
    let seen = tasks_when(&fixture, |seen| seen.len() == 10).await;
    let mut again: Vec<String> = seen[5..].iter().map(|(id, _, _)| id.clone()).collect();
    again.sort();
    ids.sort();
    assert_eq!(again, ids, "the same invocations, with the same ids");
    assert!(seen.iter().all(|(_, attempt, _)| *attempt == 1), "a stop is not held against an invocation: {seen:?}");
    fixture.stop().await;
}

#[tokio::test]
async fn what_completed_leaves_the_store_and_what_did_not_stays() {
    let mut fixture = Fixture::start("").await;
    let client = fixture.client().await;
    accepted(&client, asynchronous("echo", "done once")).await;
    stats_when(&client, |stats| stats["queues"]["functions"][0]["asyncPending"] == 0).await;
    let hanging = accepted(&client, asynchronous("echo", "hang")).await;
    fixture.handle.take().unwrap().stop().await;
    let (store, pending) = Store::open(&fixture.state_dir(), LIMITS).expect("opens");
    assert_eq!(pending.len(), 1);
    assert_eq!(store.read(pending[0].seq).unwrap().unwrap().invocation_id, hanging);
    store.close().await;
}

#[tokio::test]
async fn a_failing_invocation_is_retried_with_the_same_id_then_becomes_a_dead_letter() {
    let fixture = Fixture::start(r#""retry": {"maxAttempts": 3, "backoffMs": 10},"#).await;
    let client = fixture.client().await;
    let id = accepted(&client, asynchronous("echo", "fail")).await;
    let stats = stats_when(&client, |stats| stats["store"]["deadLetters"] == 1).await;
    let attempts: Vec<u16> =
        tasks(&fixture).iter().filter(|(request_id, _, _)| *request_id == id).map(|(_, attempt, _)| *attempt).collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    assert_eq!(stats["queues"]["functions"][0]["asyncPending"], 0);
    fixture.stop().await;
}

#[tokio::test]
async fn accepts_past_the_pending_bound_are_refused_and_accepted_ones_kept() {
    let fixture = Fixture::start(r#""maxQueuedInvocations": 0,"#).await;
    let client = fixture.client().await;
    let mut refused = None;
    let mut accepted_count = 0;
    // The echo function runs 100 at once; "hang" keeps them running.
    for _ in 0..200 {
        match invoke(&client, asynchronous("echo", "hang")).await {
            Ok(Reply::Accepted { .. }) => accepted_count += 1,
            Err(error) => {
                refused = Some(error);
                break;
            }
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    let refused = refused.expect("the bound was reached");
    assert_eq!(refused.code, ErrorCode::QueueFull);
    assert!(refused.message.contains("maxQueuedInvocations"), "{}", refused.message);
    assert_eq!(accepted_count, 100, "maxConcurrency plus maxQueuedInvocations");
    assert_eq!(stats(&client).await["queues"]["functions"][0]["asyncPending"], accepted_count);
    fixture.stop().await;
}

#[tokio::test]
async fn a_stop_refuses_new_calls_and_lets_those_running_finish() {
    let mut fixture = Fixture::start(r#""shutdownGraceMs": 10000,"#).await;
    let client = fixture.client().await;
    let running = {
        let client = fixture.client().await;
        tokio::spawn(async move { completed(&client, sync("echo", Payload::text("sleep:300"))).await })
    };
    while fixture.launcher.running.load(std::sync::atomic::Ordering::SeqCst) < 1 {
        tokio::task::yield_now().await;
    }
    let stopping = tokio::spawn(fixture.handle.take().unwrap().stop());
    let refused = loop {
        match invoke(&client, sync("echo", Payload::text("late"))).await {
            Err(error) => break error,
            Ok(_) => tokio::task::yield_now().await,
        }
    };
    assert_eq!(refused.code, ErrorCode::ShuttingDown);
    assert_eq!(running.await.unwrap().payload, Payload::text("sleep:300"), "the call taken before the stop finished");
    stopping.await.unwrap();
}

#[tokio::test]
async fn the_admin_token_outlives_a_restart_until_it_is_rotated() {
    let mut fixture = Fixture::start("").await;
    let (socket, token) = (fixture.handle().socket_path().to_path_buf(), fixture.handle().admin_token());
    fixture.restart().await;
    let client =
        Client::connect(&ConnectOptions::new(&socket, token.clone()), Sinks::default()).await.expect("the old token works");
    query(&client, "token.rotate").await.expect("rotated");
    let refused = Client::connect(&ConnectOptions::new(&socket, token), Sinks::default()).await.err().expect("refused");
    assert_eq!(refused.code, ErrorCode::Unauthorized);
    let rotated = std::fs::read_to_string(fixture.state_dir().join("admin.token")).unwrap();
    assert_eq!(rotated, fixture.handle().admin_token());
    Client::connect(&ConnectOptions::new(&socket, rotated), Sinks::default()).await.expect("the new token works");
    fixture.stop().await;
}

#[tokio::test]
async fn a_client_connecting_while_the_runtime_is_down_waits_for_it_within_its_connect_timeout() {
    let mut fixture = Fixture::start("").await;
    let mut options = ConnectOptions::new(fixture.handle().socket_path(), fixture.handle().admin_token());
    options.connect_timeout = std::time::Duration::from_secs(5);
    fixture.stop_runtime().await;
    let connecting = tokio::spawn(async move { Client::connect(&options, Sinks::default()).await });
    fixture.start_again().await;
    let client = connecting.await.unwrap().expect("connected once the runtime was back");
    assert_eq!(completed(&client, sync("echo", Payload::text("back"))).await.payload, Payload::text("back"));
    fixture.stop().await;
}

#[tokio::test]
async fn a_dead_letter_can_be_listed_shown_replayed_with_its_id_and_purged() {
    let fixture = Fixture::start(r#""retry": {"maxAttempts": 1},"#).await;
    let client = fixture.client().await;
    let id = accepted(&client, asynchronous("echo", "fail")).await;
    stats_when(&client, |stats| stats["store"]["deadLetters"] == 1).await;
    let listed = query(&client, "dlq.list").await.unwrap();
    assert_eq!(listed[0]["invocationId"], id.as_str());
    assert_eq!(listed[0]["attempts"], 1);
    assert!(listed[0]["error"].as_str().unwrap().contains("failed"), "{listed}");
    let shown = query(&client, &format!("dlq.show {id}")).await.unwrap();
    assert_eq!(shown["payload"], "fail");

    let replayed = query(&client, &format!("dlq.replay {id}")).await.unwrap();
    assert_eq!(replayed["replayed"], 1);
    tasks_when(&fixture, |seen| seen.iter().filter(|(request_id, _, _)| *request_id == id).count() == 2).await;
    let again = stats_when(&client, |stats| stats["store"]["deadLetters"] == 1).await;
    assert_eq!(again["queues"]["functions"][0]["asyncPending"], 0);
    assert_eq!(query(&client, "dlq.list").await.unwrap()[0]["replays"], 1);

    assert_eq!(query(&client, "dlq.purge all").await.unwrap()["purged"], 1);
    let emptied = stats(&client).await;
    assert_eq!(emptied["store"]["deadLetters"], 0);
    assert_eq!(emptied["store"]["heldBytes"], 0, "what the store counts comes back to nothing once nothing is in it");
    let missing = query(&client, &format!("dlq.show {id}")).await.unwrap_err();
    assert_eq!(missing.code, ErrorCode::InvalidParams);
    fixture.stop().await;
}

#[tokio::test]
async fn a_damaged_store_is_reported_at_start_never_a_panic() {
    let mut fixture = Fixture::start("").await;
    fixture.stop_runtime().await;
    std::fs::write(fixture.state_dir().join("store.redb"), vec![0x5a; 64 * 1024]).unwrap();
    let error = Store::open(&fixture.state_dir(), LIMITS).err().expect("refused");
    assert_eq!(error.code, ErrorCode::Config);
    assert!(error.message.contains("move it aside"), "{}", error.message);
}

#[tokio::test]
async fn a_message_on_a_qos_1_route_is_durable_before_the_publish_is_acknowledged() {
    let routes = r#""routes": [
        {"source": "any", "topicFilter": "/durable/#", "target": "function:echo", "qos": 1},
        {"source": "any", "topicFilter": "/fast/#", "target": "function:echo"}
    ],"#;
    let mut fixture = Fixture::start(routes).await;
    let client = fixture.client().await;
    publish(&client, "/durable/x", Payload::text("hang")).await;
    publish(&client, "/fast/x", Payload::text("hang")).await;
    let before = tasks_when(&fixture, |seen| seen.len() == 2).await;
    assert_eq!(stats(&client).await["queues"]["functions"][0]["asyncPending"], 1, "only the qos 1 message is in the store");
    fixture.restart().await;
    let after = tasks_when(&fixture, |seen| seen.len() == 3).await;
    assert!(before.iter().any(|(id, _, _)| *id == after[2].0), "the durable message ran again with its id");
    fixture.stop().await;
}

/// Storage whose writes reach the "disk" only at `sync_data`, as after a
/// power cut: `durable` is what would be left.
#[derive(Debug, Default)]
struct PowerCut {
    live: std::sync::Mutex<Vec<u8>>,
    durable: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl PowerCut {
    fn from_image(image: Vec<u8>) -> PowerCut {
        PowerCut { live: std::sync::Mutex::new(image.clone()), durable: std::sync::Arc::new(std::sync::Mutex::new(image)) }
    }
}

impl redb::StorageBackend for PowerCut {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.live.lock().unwrap().len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        let live = self.live.lock().unwrap();
        let start = offset as usize;
        let bytes = live.get(start..start + out.len()).ok_or_else(|| std::io::Error::other("read past the end"))?;
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.live.lock().unwrap().resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self) -> std::io::Result<()> {
        *self.durable.lock().unwrap() = self.live.lock().unwrap().clone();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut live = self.live.lock().unwrap();
        let end = offset as usize + data.len();
        if live.len() < end {
            live.resize(end, 0);
        }
        live[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
}

fn invocation(n: usize) -> edgefc_core::runtime::store::Invocation {
    edgefc_core::runtime::store::Invocation {
        function_id: "f".into(),
        invocation_id: format!("invocation-{n}"),
        invoker_context: String::new(),
        payload: Payload::text(format!("payload {n}")),
        attempt: 1,
        accepted_at_ms: 0,
        not_before_ms: 0,
        replays: 0,
        default_timeout_secs: 0,
    }
}

#[tokio::test]
async fn every_accept_answered_is_on_disk_when_the_power_goes() {
    let backend = PowerCut::default();
    let disk = backend.durable.clone();
    let label = std::path::Path::new("power-cut");
    let (store, _) = Store::open_with_backend(backend, label, LIMITS).expect("opens");
    let store = std::sync::Arc::new(store);
    // Accepts in flight together, so that they share commits.
    let accepts: Vec<_> = (0..200)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.accept(&invocation(n)).await.map(|seq| (seq, n)) })
        })
        .collect();
    let mut answered = Vec::new();
    for accept in accepts {
        answered.push(accept.await.unwrap().expect("accepted"));
    }
    // Some finish without waiting for a commit of their own: that may be lost, and only runs them again.
    for (seq, n) in &answered[..50] {
        store.finish(*seq, invocation(*n).size());
    }
    // The power goes now: what is left is what was synced.
    let image = disk.lock().unwrap().clone();
    let (after, pending) = Store::open_with_backend(PowerCut::from_image(image), label, LIMITS).expect("reopens");
    for (seq, n) in &answered[50..] {
        let kept = after.read(*seq).unwrap().unwrap_or_else(|| panic!("accept {n} was answered but is gone"));
        assert_eq!(kept, invocation(*n));
    }
    assert!(pending.len() >= 150);
    after.close().await;
    store.close().await;
}

#[tokio::test]
async fn removals_of_finished_invocations_wait_for_the_next_commit_and_are_kept_at_close() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), LIMITS).expect("opens");
    let first = store.accept(&invocation(1)).await.expect("accepted");
    let second = store.accept(&invocation(2)).await.expect("accepted");
    let commits = || store.counters().commits.load(Ordering::Relaxed);
    let before = commits();
    store.finish(first, invocation(1).size());
    store.finish(second, invocation(2).size());
    // Not a synchronization: a tenth of the time (1 s) a removal may wait,
    // in which a commit of their own would have been made.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(commits(), before, "removals alone make no commit of their own");
    let third = store.accept(&invocation(3)).await.expect("accepted");
    assert_eq!(commits(), before + 1, "the two removals rode along with the next accept's commit");
    // Alone, a removal still reaches the file within a second.
    store.finish(third, invocation(3).size());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while commits() == before + 1 {
        assert!(std::time::Instant::now() < deadline, "the held-back removal was never committed");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let fourth = store.accept(&invocation(4)).await.expect("accepted");
    store.finish(fourth, invocation(4).size());
    store.close().await;
    let (reopened, pending) = Store::open(dir.path(), LIMITS).expect("reopens");
    assert!(pending.is_empty(), "a removal held back at close is committed by the close: {pending:?}");
    reopened.close().await;
}
