//! The observe listener: `/metrics` after a known sequence of calls, read
//! exactly; the same numbers in `edgefc stats`; the token rule off loopback.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{completed, invoke, query, sync, Fixture, SLOW};
use edgefc_core::proto::{FunctionError, InvokeRequest, Payload, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ECHO: &str = "echo";
const NARROW: &str = "acs:fc:::service:S:function:narrow";

/// A GET on the runtime's observe listener: status code, headers (lower-cased names) and body.
async fn get(address: std::net::SocketAddr, path: &str, authorization: Option<&str>) -> (u16, HashMap<String, String>, String) {
    get_as(address, &address.to_string(), path, authorization).await
}

/// The same, with the `Host` header a browser would send for `host`.
async fn get_as(
    address: std::net::SocketAddr,
    host: &str,
    path: &str,
    authorization: Option<&str>,
) -> (u16, HashMap<String, String>, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connects");
    let authorization = authorization.map(|value| format!("Authorization: {value}\r\n")).unwrap_or_default();
    let head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{authorization}Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a head");
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// The samples of an OpenMetrics text: `name{labels}` to value. Checks on
/// the way that every sample belongs to a family declared with `# TYPE`
/// and that the text ends with `# EOF`.
fn samples(text: &str) -> HashMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "{text}");
    let mut families = Vec::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            families.push(declared.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(families.iter().any(|family| name.starts_with(family.as_str())), "{name} has no # TYPE line before it");
        assert!(name.starts_with("edgefc_"), "{name}");
        samples.insert(series.to_string(), value.parse().unwrap_or_else(|_| panic!("a number: {line}")));
    }
    samples
}

fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples.get(series).unwrap_or_else(|| panic!("no sample {series}"))
}

async fn scrape(fixture: &Fixture) -> HashMap<String, f64> {
    let (status, headers, body) = get(fixture.handle().observe_address().unwrap(), "/metrics", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(headers["content-type"].starts_with("application/openmetrics-text"), "{headers:?}");
    samples(&body)
}

/// Polls `condition` against fresh scrapes until it holds, for what ends
/// after the call that caused it has returned (a worker's exit, an Async run).
async fn scrape_until(fixture: &Fixture, condition: impl Fn(&HashMap<String, f64>) -> bool) -> HashMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let samples = scrape(fixture).await;
        if condition(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "the metrics never got there");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_errors_timeouts_and_refusals_exactly() {
    let fixture = Fixture::start(r#""observe": {"listen": "127.0.0.1:0"}, "maxQueuedInvocations": 0,"#).await;
    let client = fixture.client().await;
    for _ in 0..3 {
        assert_eq!(completed(&client, sync(ECHO, Payload::text("hi"))).await.function_error, FunctionError::None);
    }
    assert_eq!(completed(&client, sync(ECHO, Payload::text("fail"))).await.function_error, FunctionError::Handled);
    assert_eq!(completed(&client, sync(SLOW, Payload::text("hang"))).await.function_error, FunctionError::Unhandled);
    let accepted = InvokeRequest { asynchronous: true, ..sync(ECHO, Payload::text("later")) };
    assert!(matches!(invoke(&client, accepted).await.unwrap(), Reply::Accepted { .. }));
    // narrow runs two at once and queues none: a third call is refused.
    let gated: Vec<_> = (0..2)
        .map(|_| {
            let request = sync(NARROW, Payload::text("gate"));
            let client = &client;
            async move { completed(client, request).await }
        })
        .collect();
    let gated = futures_util::future::join_all(gated);
    tokio::pin!(gated);
    let refused = async {
        while fixture.launcher.running.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        let refused = invoke(&client, sync(NARROW, Payload::text("x"))).await.unwrap_err();
        fixture.launcher.gate.notify_waiters();
        refused
    };
    let (results, refused) = tokio::join!(gated, refused);
    assert_eq!(refused.code, edgefc_core::ErrorCode::QueueFull);
    assert!(results.iter().all(|result| result.function_error == FunctionError::None));

    let slow = edgefc_core::runtime::function_arn("S", "slow");
    let metrics = scrape_until(&fixture, |samples| {
        samples.get(r#"edgefc_invocations_total{function="echo",type="async",outcome="ok"}"#) == Some(&1.0)
            && samples.get(&format!(r#"edgefc_worker_exits_total{{function="{slow}",reason="timeout"}}"#)) == Some(&1.0)
    })
    .await;
    let invocations = |function: &str, kind: &str, outcome: &str| {
        value(&metrics, &format!(r#"edgefc_invocations_total{{function="{function}",type="{kind}",outcome="{outcome}"}}"#))
    };
    assert_eq!(invocations(ECHO, "sync", "ok"), 3.0);
    assert_eq!(invocations(ECHO, "sync", "handled_error"), 1.0);
    assert_eq!(invocations(ECHO, "sync", "timeout"), 0.0);
    assert_eq!(invocations(&slow, "sync", "timeout"), 1.0);
    assert_eq!(invocations(NARROW, "sync", "ok"), 2.0);
    assert_eq!(invocations(NARROW, "sync", "refused"), 1.0);
    // Every attempt that reached a worker is in both histograms; a refusal in neither.
    for (function, runs) in [(ECHO, 5.0), (slow.as_str(), 1.0), (NARROW, 2.0)] {
        for histogram in ["edgefc_invocation_run_seconds", "edgefc_invocation_queue_wait_seconds"] {
            assert_eq!(
                value(&metrics, &format!(r#"{histogram}_count{{function="{function}"}}"#)),
                runs,
                "{histogram} {function}"
            );
            assert_eq!(value(&metrics, &format!(r#"{histogram}_bucket{{le="+Inf",function="{function}"}}"#)), runs);
        }
    }
    // The timed-out run took at least its 200 ms: not in the buckets up to 100 ms.
    assert_eq!(value(&metrics, &format!(r#"edgefc_invocation_run_seconds_bucket{{le="0.1",function="{slow}"}}"#)), 0.0);
    assert_eq!(value(&metrics, &format!(r#"edgefc_worker_starts_total{{function="{slow}"}}"#)), 1.0);
    assert_eq!(value(&metrics, r#"edgefc_worker_starts_total{function="echo"}"#), 1.0);
    assert_eq!(value(&metrics, r#"edgefc_workers{function="echo"}"#), 1.0);
    assert_eq!(value(&metrics, r#"edgefc_connections{kind="client"}"#), 1.0);
    // echo's and narrow's at least (the in-process launcher may keep slow's retired one open).
    assert!(value(&metrics, r#"edgefc_connections{kind="worker"}"#) >= 2.0);
    // Each function's queue bounds, and the runtime's in families of their own.
    assert_eq!(value(&metrics, r#"edgefc_queue_max_invocations{function="echo"}"#), 100.0);
    assert_eq!(value(&metrics, "edgefc_runtime_queue_max_invocations"), 20_000.0);

    // `edgefc stats` reads the same numbers.
    let stats = query(&client, "stats").await.unwrap();
    let echo = stats["functions"].as_array().unwrap().iter().find(|function| function["function"] == ECHO).unwrap();
    assert_eq!(echo["invocations"]["sync"]["ok"], 3);
    assert_eq!(echo["invocations"]["sync"]["handledError"], serde_json::Value::Null, "{echo}");
    assert_eq!(echo["invocations"]["sync"]["handled_error"], 1);
    assert_eq!(echo["runTime"]["count"], 5);
    assert_eq!(echo["workers"][0]["inFlight"], 0);
    assert!(echo["workers"][0]["uptimeSeconds"].as_f64().unwrap() > 0.0);
    assert_eq!(echo["lastMinute"]["invocations"], 5);
    assert_eq!(echo["lastMinute"]["errors"], 1);
    // Failed invocations, newest first, without payloads.
    let errors = stats["recentErrors"].as_array().unwrap();
    let outcomes: Vec<_> = errors.iter().map(|error| error["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["refused", "timeout", "handled_error"]);
    assert_eq!(errors[1]["errorType"], "TimeoutError");
    assert_eq!(errors[0]["errorType"], "ERR_QUEUE_FULL");
    assert!(!stats.to_string().contains("hang"), "a payload leaked into the stats");
    fixture.stop().await;
}

#[tokio::test]
async fn a_listener_off_loopback_needs_the_observe_token() {
    let fixture = Fixture::start(r#""observe": {"listen": "0.0.0.0:0"},"#).await;
    let port = fixture.handle().observe_address().unwrap().port();
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let token = std::fs::read_to_string(fixture.state_dir().join("observe.token")).unwrap();
    assert_eq!(token.len(), 64);
    for path in ["/metrics", "/api/stats"] {
        let (status, headers, _) = get(address, path, None).await;
        assert_eq!((status, headers["www-authenticate"].as_str()), (401, "Bearer"), "{path}");
        assert_eq!(get(address, path, Some(&format!("Bearer {}", "0".repeat(64)))).await.0, 401);
        assert_eq!(get(address, path, Some(&format!("Bearer {}", fixture.handle().admin_token()))).await.0, 401);
        assert_eq!(get(address, path, Some(&format!("Bearer {token}"))).await.0, 200, "{path}");
    }
    // The page itself holds no numbers: it asks /api/stats with the token from its URL fragment.
    let (status, headers, page) = get(address, "/", None).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].starts_with("text/html"));
    assert!(page.contains("/page.js"));
    assert_eq!(get(address, "/nothing", None).await.0, 404);
    fixture.stop().await;
}

#[tokio::test]
async fn on_loopback_the_stats_are_served_without_a_token_and_match_edgefc_stats() {
    let fixture = Fixture::start(r#""observe": {"listen": "127.0.0.1:0"},"#).await;
    let client = fixture.client().await;
    completed(&client, sync(ECHO, Payload::text("hi"))).await;
    let (status, headers, body) = get(fixture.handle().observe_address().unwrap(), "/api/stats", None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    let served: serde_json::Value = serde_json::from_str(&body).unwrap();
    let asked = query(&client, "stats").await.unwrap();
    assert_eq!(served["functions"][0]["invocations"], asked["functions"][0]["invocations"]);
    assert_eq!(served["functions"][0]["invocations"]["sync"]["ok"], 1);
    assert!(!fixture.state_dir().join("observe.token").exists(), "no token is made for a loopback listener");
    // Without a token, only requests that name this machine by address or as localhost are answered:
    // a web page that points its own name at 127.0.0.1 (DNS rebinding) reads nothing.
    let address = fixture.handle().observe_address().unwrap();
    assert_eq!(get_as(address, &format!("localhost:{}", address.port()), "/api/stats", None).await.0, 200);
    assert_eq!(get_as(address, &format!("evil.example:{}", address.port()), "/api/stats", None).await.0, 421);
    assert_eq!(get_as(address, "evil.example", "/", None).await.0, 421);
    fixture.stop().await;
}

#[tokio::test]
async fn without_observe_there_is_no_listener_and_a_bad_address_is_a_config_error() {
    let fixture = Fixture::start("").await;
    assert_eq!(fixture.handle().observe_address(), None);
    fixture.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let error =
        edgefc_core::runtime::Config::parse(r#"{"functions": [], "observe": {"listen": "localhost"}}"#, dir.path()).unwrap_err();
    assert_eq!(error.code, edgefc_core::ErrorCode::Config);
    assert!(error.message.contains("observe.listen"), "{}", error.message);
    // "observe": {} listens on loopback.
    let config = edgefc_core::runtime::Config::parse(r#"{"functions": [], "observe": {}}"#, dir.path()).unwrap();
    assert_eq!(config.observe.unwrap().listen, "127.0.0.1:9464".parse().unwrap());
}
