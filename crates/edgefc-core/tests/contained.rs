//! What a careless operator's config cannot do: load code from outside a
//! function's directory, take over a state directory a live runtime holds,
//! or run in (and change) a directory others can reach.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use edgefc_core::proto::{Payload, Request};
use edgefc_core::runtime::{self, Config};
use edgefc_core::ErrorCode;

fn config_in(dir: &std::path::Path, functions: &str) -> edgefc_core::Result<Config> {
    Config::parse(&format!(r#"{{"stateDir": "s", "functions": [{functions}]}}"#), dir)
}

const ECHO: &str = r#"{"serviceName": "S", "functionName": "echo", "codeDir": "."}"#;

#[tokio::test]
async fn a_second_runtime_on_the_same_state_directory_refuses_and_removes_nothing() {
    let dir = tempfile::Builder::new().prefix("efc").tempdir_in("/tmp").unwrap();
    let first = runtime::start(config_in(dir.path(), ECHO).unwrap(), InProcess::new()).await.expect("starts");
    let error = runtime::start(config_in(dir.path(), ECHO).unwrap(), InProcess::new()).await.err().expect("refused");
    assert_eq!(error.code, ErrorCode::Config);
    assert!(error.message.contains(&format!("(pid {})", std::process::id())), "{}", error.message);
    assert!(first.socket_path().exists(), "the live runtime's socket is still there");
    first.stop().await;
    let again =
        runtime::start(config_in(dir.path(), ECHO).unwrap(), InProcess::new()).await.expect("starts once the first stopped");
    again.stop().await;
}

#[tokio::test]
async fn a_state_directory_others_can_reach_is_refused_and_left_as_it_is() {
    let dir = tempfile::Builder::new().prefix("efc").tempdir_in("/tmp").unwrap();
    let shared = dir.path().join("s");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let error = runtime::start(config_in(dir.path(), ECHO).unwrap(), InProcess::new()).await.err().expect("refused");
    assert_eq!(error.code, ErrorCode::Config);
    assert!(error.message.contains("no one else can reach"), "{}", error.message);
    assert_eq!(std::fs::metadata(&shared).unwrap().permissions().mode() & 0o777, 0o755);
}

#[test]
fn a_handler_outside_its_code_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("code")).unwrap();
    std::fs::write(dir.path().join("elsewhere.js"), "exports.handler = () => {};").unwrap();
    std::os::unix::fs::symlink(dir.path().join("elsewhere.js"), dir.path().join("code").join("link.js")).unwrap();
    for handler in ["../elsewhere.handler", "/etc/passwd.handler", "link.handler"] {
        let function = format!(r#"{{"serviceName": "S", "functionName": "f", "codeDir": "code", "handler": "{handler}"}}"#);
        let error = config_in(dir.path(), &function).unwrap_err();
        assert!(error.message.contains("lies outside codeDir"), "{handler}: {}", error.message);
    }
    let inside = r#"{"serviceName": "S", "functionName": "f", "codeDir": "code", "handler": "lib/index.handler"}"#;
    assert!(config_in(dir.path(), inside).is_ok());
}

#[tokio::test]
async fn a_worker_invokes_and_publishes_but_cannot_subscribe_or_read_stats() {
    let fixture = Fixture::start("").await;
    completed(&fixture.client().await, sync("echo", Payload::text("start the worker"))).await;
    let worker = fixture.launcher.workers.lock().unwrap()[0].clone();
    assert_eq!(completed(&worker, sync("echo", Payload::text("hi"))).await.payload, Payload::text("hi"));
    publish(&worker, "/as/itself", Payload::text("m")).await;
    let subscribing = worker.call(Request::Subscribe { topic_filter: "#".into() }).await.unwrap_err();
    assert_eq!(subscribing.code, ErrorCode::Unauthorized);
    assert_eq!(query(&worker, "stats").await.unwrap_err().code, ErrorCode::Unauthorized);
    fixture.stop().await;
}
