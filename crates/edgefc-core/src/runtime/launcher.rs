//! Starting the process that hosts a function. The runtime only needs to
//! start one and to be able to stop it; how is the launcher's business, so
//! the Rust tests can host functions in-process while production starts a
//! Node worker.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{oneshot, watch};

use super::config::{FunctionSpec, ROUTER_FUNCTION_ID, THING_FUNCTION_ALIAS};
use super::log::{self, OutputStream};

/// What a launcher needs to start a worker that can connect back.
pub struct LaunchSpec<'a> {
    pub function: &'a FunctionSpec,
    /// The function's own token; the worker authenticates with it.
    pub token: &'a str,
    pub socket_path: &'a Path,
    /// The function that serves thing operations, if one is configured.
    pub thing_function_id: Option<&'a str>,
}

pub trait WorkerLauncher: Send + Sync + 'static {
    fn launch(&self, spec: &LaunchSpec<'_>) -> std::io::Result<WorkerProcess>;
}

/// A started worker. Dropping it stops the worker.
pub struct WorkerProcess {
    stop: Option<Box<dyn FnOnce() + Send>>,
    exited: watch::Receiver<Option<String>>,
    pid: Option<u32>,
}

impl WorkerProcess {
    /// `stop` ends the worker; `exited` turns to `Some(how)` ("exit code 1",
    /// "signal 9") once it has ended and its output has been forwarded. A
    /// worker with a `pid` must connect from that process.
    pub fn new(stop: impl FnOnce() + Send + 'static, exited: watch::Receiver<Option<String>>, pid: Option<u32>) -> WorkerProcess {
        WorkerProcess { stop: Some(Box::new(stop)), exited, pid }
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }

    /// A future that resolves, with how the worker ended, once it has.
    pub fn exit(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let mut exited = self.exited.clone();
        async move {
            match exited.wait_for(Option::is_some).await {
                Ok(how) => how.clone().unwrap_or_default(),
                Err(_) => "unknown status".to_string(),
            }
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `node <bootstrap>` in the function's code directory, with the
/// upstream environment variables, and prefixes every line it prints with the
/// function's name.
#[derive(Debug, Clone)]
pub struct NodeLauncher {
    pub node: PathBuf,
    pub bootstrap: PathBuf,
    /// Prepended to `NODE_PATH`, so `require('linkedge-core-sdk')` resolves
    /// with nothing installed in the function's directory.
    pub module_dir: PathBuf,
}

impl WorkerLauncher for NodeLauncher {
    fn launch(&self, spec: &LaunchSpec<'_>) -> std::io::Result<WorkerProcess> {
        let function = spec.function;
        let mut node_path = OsString::from(&self.module_dir);
        if let Some(existing) = std::env::var_os("NODE_PATH").filter(|path| !path.is_empty()) {
            node_path.push(":");
            node_path.push(existing);
        }
        let mut child = tokio::process::Command::new(&self.node)
            .arg(&self.bootstrap)
            .current_dir(&function.code_dir)
            .env_remove("EDGEFC_TOKEN")
            .env("AUTH_TOKEN", spec.token)
            .env("EDGEFC_SOCKET", spec.socket_path)
            .env("FUNCTION_ID", &function.function_id)
            .env("MY_FUNCTION_ID", &function.function_id)
            .env("ROUTER_FUNCTION_ID", ROUTER_FUNCTION_ID)
            .env("THING_FUNCTION_ID", spec.thing_function_id.unwrap_or(THING_FUNCTION_ALIAS))
            .env("EDGEFC_SERVICE_NAME", &function.service_name)
            .env("EDGEFC_FUNCTION_NAME", &function.function_name)
            .env("EDGEFC_CODE_DIR", &function.code_dir)
            .env("EDGEFC_HANDLER", function.handler())
            .env("NODE_PATH", node_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let label = function.function_name.clone();
        let forwarders = [
            child.stdout.take().map(|stdout| tokio::spawn(forward_lines(stdout, label.clone(), OutputStream::Stdout))),
            child.stderr.take().map(|stderr| tokio::spawn(forward_lines(stderr, label.clone(), OutputStream::Stderr))),
        ];
        let pid = child.id();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (exit_tx, exit_rx) = watch::channel(None);
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                _ = stop_rx => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            for forwarder in forwarders.into_iter().flatten() {
                let _ = forwarder.await;
            }
            let description = match status {
                Ok(status) => describe_exit(status),
                Err(error) => format!("unknown status ({error})"),
            };
            let _ = exit_tx.send(Some(description));
        });
        Ok(WorkerProcess::new(move || drop(stop_tx), exit_rx, pid))
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "unknown status".to_string(),
    }
}

/// Forwards output line by line; bytes that are not UTF-8 are shown lossily
/// rather than ending the forwarding (which would fill the pipe and block the
/// worker).
async fn forward_lines(stream: impl AsyncRead + Unpin, label: String, output: OutputStream) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        log::function_output(&label, output, text);
    }
}
