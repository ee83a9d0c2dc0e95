//! Starting the process that hosts a function. The runtime only needs to
//! start one and to be able to stop it; how is the launcher's business, so
//! the Rust tests can host functions in-process while production starts a
//! Node worker.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{oneshot, watch};

use super::cgroup::{WorkerGroup, WorkerGroups};
use super::config::{FunctionSpec, ROUTER_FUNCTION_ID, THING_FUNCTION_ALIAS};
use super::identity::{self, Identity};
use super::log::{self, OutputSource, OutputStream};

/// What a launcher needs to start a worker.
pub struct LaunchSpec<'a> {
    pub function: &'a FunctionSpec,
    /// The worker's end of its connection to the runtime, made for it: the
    /// worker needs no socket path and no token, so there is none to steal.
    pub connection: OwnedFd,
    /// The function that serves thing operations, if one is configured.
    pub thing_function_id: Option<&'a str>,
    /// Longer lines of the worker's output are split (`log.maxLineBytes`).
    pub max_line_bytes: usize,
}

pub trait WorkerLauncher: Send + Sync + 'static {
    fn launch(&self, spec: LaunchSpec<'_>) -> std::io::Result<WorkerProcess>;

    /// Why `function` could not be launched, found when the runtime starts
    /// (its code unreadable by the user it runs as, say).
    fn check(&self, _function: &FunctionSpec) -> Result<(), String> {
        Ok(())
    }
}

/// A started worker. Dropping it stops the worker.
pub struct WorkerProcess {
    stop: Option<Box<dyn FnOnce() + Send>>,
    exited: watch::Receiver<Option<String>>,
    /// Set before the worker is killed for using more than its memory limit.
    exceeded_memory: Arc<AtomicBool>,
    pid: Option<u32>,
}

impl WorkerProcess {
    /// `stop` ends the worker; `exited` turns to `Some(how)` ("exit code 1",
    /// "signal 9") once it has ended and its output has been forwarded.
    pub fn new(stop: impl FnOnce() + Send + 'static, exited: watch::Receiver<Option<String>>) -> WorkerProcess {
        WorkerProcess { stop: Some(Box::new(stop)), exited, exceeded_memory: Arc::new(AtomicBool::new(false)), pid: None }
    }

    /// The operating system's id of the worker process, where it is one.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Whether the worker was killed for using more than its memory limit.
    pub fn exceeded_memory(&self) -> bool {
        self.exceeded_memory.load(Ordering::Acquire)
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
#[derive(Debug)]
pub struct NodeLauncher {
    node: PathBuf,
    bootstrap: PathBuf,
    /// Prepended to `NODE_PATH`, so `require('linkedge-core-sdk')` resolves
    /// with nothing installed in the function's directory.
    module_dir: PathBuf,
    /// A control group per worker, where the runtime may create them.
    groups: Option<WorkerGroups>,
    /// Whether each worker starts a PID namespace of its own (as root).
    pid_namespaces: AtomicBool,
}

impl NodeLauncher {
    pub fn new(node: PathBuf, bootstrap: PathBuf, module_dir: PathBuf) -> NodeLauncher {
        let pid_namespaces = AtomicBool::new(identity::runtime_uid() == 0);
        NodeLauncher { node, bootstrap, module_dir, groups: WorkerGroups::create(), pid_namespaces }
    }

    /// The user `function`'s workers switch to, if any.
    fn identity(function: &FunctionSpec) -> Result<Option<Identity>, String> {
        identity::worker_identity(function.run_as, identity::runtime_uid(), identity::lookup_user)
    }

    /// Spawns `command` as the first process of a new PID namespace where
    /// the runtime may create one: when that process ends, or the runtime
    /// dies (and with it, by its parent-death signal, the worker), the
    /// kernel ends every process left inside, whatever it did to escape
    /// its process group. Elsewhere, as a plain child.
    fn spawn(&self, command: tokio::process::Command) -> std::io::Result<tokio::process::Child> {
        let own_namespace = self.pid_namespaces.load(Ordering::Relaxed);
        match spawn_on_spawner_thread(command, own_namespace) {
            (Err(error), Some(command)) => {
                crate::warn!(
                    "launcher",
                    "workers cannot get PID namespaces of their own ({error}); they keep their process groups and control groups"
                );
                self.pid_namespaces.store(false, Ordering::Relaxed);
                spawn_on_spawner_thread(command, false).0
            }
            (spawned, _) => spawned,
        }
    }
}

/// What the spawner thread is asked: spawn this, in a new PID namespace or not.
struct SpawnRequest {
    command: tokio::process::Command,
    own_namespace: bool,
    runtime: tokio::runtime::Handle,
    /// The child, or why not (with the command back when only the namespace failed).
    reply: std::sync::mpsc::Sender<(std::io::Result<tokio::process::Child>, Option<tokio::process::Command>)>,
}

/// Spawns on the one thread that starts every worker. A worker's
/// parent-death signal fires when the *thread* that forked it ends, so that
/// thread lives as long as the process; and unshare(CLONE_NEWPID) changes
/// where that thread's children go for good, which no other thread should
/// inherit.
fn spawn_on_spawner_thread(
    command: tokio::process::Command,
    own_namespace: bool,
) -> (std::io::Result<tokio::process::Child>, Option<tokio::process::Command>) {
    static SPAWNER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<SpawnRequest>>> = std::sync::OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = std::sync::mpsc::channel::<SpawnRequest>();
        let started = std::thread::Builder::new().name("edgefc-spawner".into()).spawn(move || {
            // The process's own PID namespace: a thread may unshare only
            // from it, so it is entered again before every worker.
            let own = std::fs::File::open("/proc/self/ns/pid").ok();
            for mut request in incoming {
                let _entered = request.runtime.enter();
                if request.own_namespace {
                    // SAFETY: setns and unshare only change where this thread's children go.
                    let unshared = own.as_ref().is_some_and(|own| unsafe {
                        libc::setns(own.as_raw_fd(), libc::CLONE_NEWPID) == 0 && libc::unshare(libc::CLONE_NEWPID) == 0
                    });
                    if !unshared {
                        let error = std::io::Error::last_os_error();
                        let _ = request.reply.send((Err(error), Some(request.command)));
                        continue;
                    }
                } else if let Some(own) = &own {
                    // SAFETY: as above; a thread that never left its namespace stays in it.
                    unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWPID) };
                }
                // Held across the fork: no orphan sweep may take the new worker for one.
                let mut workers = WORKERS.lock().unwrap();
                let spawned = request.command.spawn();
                if let Some(pid) = spawned.as_ref().ok().and_then(tokio::process::Child::id) {
                    workers.insert(pid);
                }
                drop(workers);
                let _ = request.reply.send((spawned, None));
            }
        });
        if let Err(error) = started {
            crate::warn!("launcher", "the thread that starts workers cannot start: {error}");
        }
        std::sync::Mutex::new(requests)
    });
    let (reply, replied) = std::sync::mpsc::channel();
    let request = SpawnRequest { command, own_namespace, runtime: tokio::runtime::Handle::current(), reply };
    if spawner.lock().unwrap().send(request).is_err() {
        return (Err(std::io::Error::other("the thread that starts workers is gone")), None);
    }
    replied.recv().unwrap_or_else(|_| (Err(std::io::Error::other("the thread that starts workers is gone")), None))
}

impl WorkerLauncher for NodeLauncher {
    fn check(&self, function: &FunctionSpec) -> Result<(), String> {
        let Some(identity) = NodeLauncher::identity(function)? else {
            return Ok(());
        };
        let file = function.handler_candidates().into_iter().find(|candidate| candidate.is_file());
        identity::check_readable(&identity, &function.code_dir, file.as_deref())
    }

    fn launch(&self, spec: LaunchSpec<'_>) -> std::io::Result<WorkerProcess> {
        let function = spec.function;
        let identity = NodeLauncher::identity(function).map_err(std::io::Error::other)?;
        let mut node_path = OsString::from(&self.module_dir);
        if let Some(existing) = std::env::var_os("NODE_PATH").filter(|path| !path.is_empty()) {
            node_path.push(":");
            node_path.push(existing);
        }
        let runtime_pid = std::process::id();
        let group = self.groups.as_ref().and_then(|groups| groups.new_group(function.memory_limit_bytes)).map(Arc::new);
        let group_in_child = group.clone();
        let connection_fd = spec.connection.as_raw_fd();
        let mut command = tokio::process::Command::new(&self.node);
        // Its own process group, so that stopping it reaches what it started;
        // and it dies with the runtime, however the runtime ends.
        command.process_group(0);
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The runtime may have died before the line above took effect.
                // (In a PID namespace of its own the parent is outside it, 0.)
                let parent = libc::getppid();
                if parent != 0 && parent as u32 != runtime_pid {
                    libc::_exit(1);
                }
                // dup2 leaves the new descriptor open across exec; one that
                // already is CONNECTION_FD only needs its close-on-exec flag cleared.
                let handed_over = if connection_fd == CONNECTION_FD {
                    libc::fcntl(CONNECTION_FD, libc::F_SETFD, 0)
                } else {
                    libc::dup2(connection_fd, CONNECTION_FD)
                };
                if handed_over < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(group) = &group_in_child {
                    group.enter();
                }
                Ok(())
            });
        }
        let memory_limit_mb = (function.memory_limit_bytes >> 20).max(1);
        if let Some(identity) = &identity {
            // The worker switches once edgefc's own code is loaded (see `identity`).
            command.env("EDGEFC_RUN_AS", format!("{}:{}", identity.uid, identity.gid));
        } else {
            command.env_remove("EDGEFC_RUN_AS");
        }
        if std::env::var_os("GLIBC_TUNABLES").is_none() {
            // A worker reads and writes large frames as the runtime does.
            command.env("GLIBC_TUNABLES", crate::transport::allocator::tunables());
        }
        command
            // V8's own heap limit backs the watchdog below up.
            .arg(format!("--max-old-space-size={memory_limit_mb}"))
            .arg(&self.bootstrap)
            .current_dir(&function.code_dir)
            .env_remove("EDGEFC_TOKEN")
            .env_remove("AUTH_TOKEN")
            .env_remove("EDGEFC_SOCKET")
            .env("EDGEFC_CONNECTION_FD", CONNECTION_FD.to_string())
            .env("FUNCTION_ID", &function.function_id)
            .env("MY_FUNCTION_ID", &function.function_id)
            .env("ROUTER_FUNCTION_ID", ROUTER_FUNCTION_ID)
            // Upstream's CredentialProviderChain refuses to be built without
            // it (misspelling included); the credentials come from the runtime.
            .env("DEFFAULT_CREDENTIALS_RELATIVE_URI", CREDENTIALS_RELATIVE_URI)
            .env("THING_FUNCTION_ID", spec.thing_function_id.unwrap_or(THING_FUNCTION_ALIAS))
            .env("EDGEFC_SERVICE_NAME", &function.service_name)
            .env("EDGEFC_FUNCTION_NAME", &function.function_name)
            .env("EDGEFC_CODE_DIR", &function.code_dir)
            .env("EDGEFC_HANDLER", function.handler())
            .env("EDGEFC_FLAVOR", function.flavor.as_str())
            .env("EDGEFC_TAG_OUTPUT", if log::json_wanted() { "1" } else { "0" })
            .env("EDGEFC_TIMEOUT_MS", function.timeout.as_millis().to_string())
            .env("EDGEFC_MEMORY_SIZE_MB", memory_limit_mb.to_string())
            .env("NODE_PATH", node_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = self.spawn(command)?;
        drop(spec.connection);
        let pid = child.id();
        let source = Arc::new(OutputSource {
            name: function.function_name.clone(),
            function_id: function.function_id.clone(),
            pid,
            tagged: log::json_wanted(),
        });
        let max_line = spec.max_line_bytes;
        let forwarders = [
            child.stdout.take().map(|stdout| tokio::spawn(forward_lines(stdout, source.clone(), OutputStream::Stdout, max_line))),
            child.stderr.take().map(|stderr| tokio::spawn(forward_lines(stderr, source.clone(), OutputStream::Stderr, max_line))),
        ];
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (exit_tx, exit_rx) = watch::channel(None);
        let exceeded_memory = Arc::new(AtomicBool::new(false));
        let memory_limit = function.memory_limit_bytes;
        let exceeded = exceeded_memory.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                () = memory_exceeded(pid, memory_limit, group.as_deref()) => {
                    exceeded.store(true, Ordering::Release);
                    signal_group(pid, libc::SIGKILL);
                    child.wait().await
                }
                _ = stop_rx => {
                    signal_group(pid, libc::SIGTERM);
                    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                        Ok(status) => status,
                        Err(_) => {
                            let _ = child.start_kill();
                            child.wait().await
                        }
                    }
                }
            };
            if let Some(pid) = pid {
                WORKERS.lock().unwrap().remove(&pid);
            }
            reap_orphans();
            // Whatever the worker started and left behind ends with it.
            signal_group(pid, libc::SIGKILL);
            if let Some(group) = &group {
                // The kernel itself may have killed the worker for its group's memory.
                if group.ran_out_of_memory() {
                    exceeded.store(true, Ordering::Release);
                }
                group.end();
            }
            for forwarder in forwarders.into_iter().flatten() {
                let _ = forwarder.await;
            }
            let description = match status {
                Ok(status) => describe_exit(status),
                Err(error) => format!("unknown status ({error})"),
            };
            let _ = exit_tx.send(Some(description));
        });
        let mut process = WorkerProcess::new(move || drop(stop_tx), exit_rx);
        process.exceeded_memory = exceeded_memory;
        process.pid = pid;
        Ok(process)
    }
}

/// How often a worker's resident memory is looked at.
const MEMORY_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Resolves once the process `pid` holds more than `limit` bytes resident,
/// or the kernel killed a process of its control group for the group's
/// memory (a child the worker started, say: the worker goes too).
async fn memory_exceeded(pid: Option<u32>, limit: u64, group: Option<&WorkerGroup>) {
    let Some(pid) = pid else {
        return std::future::pending().await;
    };
    let mut samples = tokio::time::interval(MEMORY_SAMPLE_INTERVAL);
    loop {
        samples.tick().await;
        if resident_bytes(pid).is_some_and(|bytes| bytes > limit) || group.is_some_and(WorkerGroup::ran_out_of_memory) {
            return;
        }
    }
}

/// The resident memory of process `pid`, if it is still there.
pub(super) fn resident_bytes(pid: u32) -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages = statm.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(pages.saturating_mul(page))
}

/// The descriptor a worker finds its connection to the runtime at.
pub const CONNECTION_FD: libc::c_int = 3;

/// What a worker finds in `DEFFAULT_CREDENTIALS_RELATIVE_URI`. Only its
/// presence matters: the credentials come from the runtime's `credentials`
/// service over the worker's own connection.
pub const CREDENTIALS_RELATIVE_URI: &str = "/edgefc/credentials";

/// The pids of the workers started and not yet waited for: any other child
/// of this process is something a worker left behind (see [`adopt_orphans`]).
static WORKERS: std::sync::Mutex<std::collections::BTreeSet<u32>> = std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Makes this process the subreaper of what its workers start: a
/// descendant whose parent ended (a worker that ended, or a daemon's double
/// fork) becomes this process's child rather than init's, so that it is
/// reaped, and ended by [`end_orphans`] when the runtime stops. Where
/// workers get PID namespaces and control groups (root) those end them
/// sooner; this is what remains without. For the standalone runtime only: a
/// process that embeds the runtime would take its own descendants too.
pub fn adopt_orphans() -> bool {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) has no memory-safety preconditions.
    let adopting = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) == 0 };
    ADOPTING.store(adopting, Ordering::Release);
    adopting
}

/// Set by [`adopt_orphans`]: only then are this process's other children
/// the workers' leftovers (in a host application, they are its own).
static ADOPTING: AtomicBool = AtomicBool::new(false);

/// Kills and reaps every child of this process that is not a worker, once
/// [`adopt_orphans`] made them the workers' leftovers.
pub fn end_orphans() {
    if !ADOPTING.load(Ordering::Acquire) {
        return;
    }
    for pid in orphans() {
        // SAFETY: kill and waitpid on a child of this process.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
}

/// Reaps the children of this process that are not workers and have ended.
fn reap_orphans() {
    if !ADOPTING.load(Ordering::Acquire) {
        return;
    }
    for pid in orphans() {
        // SAFETY: waitpid on a child of this process, without waiting.
        unsafe {
            libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
        }
    }
}

/// This process's children that are not workers.
fn orphans() -> Vec<libc::pid_t> {
    let workers = WORKERS.lock().unwrap();
    let Ok(threads) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    threads
        .flatten()
        .filter_map(|thread| std::fs::read_to_string(thread.path().join("children")).ok())
        .flat_map(|children| children.split_whitespace().filter_map(|pid| pid.parse::<u32>().ok()).collect::<Vec<_>>())
        .filter(|pid| !workers.contains(pid))
        .filter_map(|pid| libc::pid_t::try_from(pid).ok())
        .collect()
}

/// How long a worker asked to stop (SIGTERM) has before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// Signals every process of the group a worker leads.
fn signal_group(leader: Option<u32>, signal: libc::c_int) {
    if let Some(pid) = leader.and_then(|pid| libc::pid_t::try_from(pid).ok()) {
        // SAFETY: kill has no memory-safety preconditions; a negative pid names a process group.
        unsafe {
            libc::kill(-pid, signal);
        }
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

/// Function output lines read, and those split because they were longer
/// than `log.maxLineBytes`.
static OUTPUT_LINES: AtomicU64 = AtomicU64::new(0);
static SPLIT_LINES: AtomicU64 = AtomicU64::new(0);

pub fn output_lines() -> u64 {
    OUTPUT_LINES.load(Ordering::Relaxed)
}

pub fn split_lines() -> u64 {
    SPLIT_LINES.load(Ordering::Relaxed)
}

/// Added to each piece of a line that was split.
const SPLIT_MARKER: &str = " [line continues]";

/// Forwards output line by line, holding at most `max_line` bytes of a line:
/// a longer one goes out in pieces, each but the last marked. Bytes that are
/// not UTF-8 are shown lossily rather than ending the forwarding (which would
/// fill the pipe and block the worker).
async fn forward_lines(stream: impl AsyncRead + Unpin, source: Arc<OutputSource>, output: OutputStream, max_line: usize) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    while let Some(complete) = read_line(&mut reader, &mut line, max_line).await {
        OUTPUT_LINES.fetch_add(1, Ordering::Relaxed);
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches('\r');
        if complete {
            log::function_output(&source, output, text);
        } else {
            SPLIT_LINES.fetch_add(1, Ordering::Relaxed);
            log::function_output(&source, output, &format!("{text}{SPLIT_MARKER}"));
        }
        line.clear();
    }
}

/// Reads into `line` up to a newline (not kept) or `max_line` bytes; `Some(true)`
/// for a whole line, `Some(false)` for a piece of a longer one (cut before a
/// UTF-8 character rather than inside it), `None` at the end.
async fn read_line(reader: &mut (impl AsyncBufRead + Unpin), line: &mut Vec<u8>, max_line: usize) -> Option<bool> {
    loop {
        let available = match reader.fill_buf().await {
            Ok([]) | Err(_) => return (!line.is_empty()).then_some(true),
            Ok(available) => available,
        };
        let room = max_line - line.len();
        // One byte beyond the room: a newline right after a full line ends it.
        let window = &available[..available.len().min(room + 1)];
        if let Some(end) = window.iter().position(|byte| *byte == b'\n') {
            line.extend_from_slice(&window[..end]);
            reader.consume(end + 1);
            return Some(true);
        }
        if window.len() <= room {
            let taken = window.len();
            line.extend_from_slice(window);
            reader.consume(taken);
            continue;
        }
        let mut piece = room;
        while piece > 0 && window[piece] & 0xC0 == 0x80 {
            piece -= 1;
        }
        if piece == 0 && line.is_empty() {
            piece = room;
        }
        line.extend_from_slice(&window[..piece]);
        reader.consume(piece);
        return Some(false);
    }
}

#[cfg(test)]
mod tests {
    use super::read_line;

    async fn lines(mut input: &[u8], max_line: usize) -> Vec<(String, bool)> {
        let mut line = Vec::new();
        let mut read = Vec::new();
        while let Some(complete) = read_line(&mut input, &mut line, max_line).await {
            read.push((String::from_utf8(std::mem::take(&mut line)).expect("cut at a character boundary"), complete));
        }
        read
    }

    #[tokio::test]
    async fn a_line_of_exactly_the_limit_is_whole() {
        assert_eq!(lines(b"abcd\nef\n", 4).await, vec![("abcd".into(), true), ("ef".into(), true)]);
    }

    #[tokio::test]
    async fn a_longer_line_is_split_into_marked_pieces() {
        let pieces = vec![("abcd".into(), false), ("efgh".into(), false), ("ij".into(), true)];
        assert_eq!(lines(b"abcdefghij\n", 4).await, pieces);
    }

    #[tokio::test]
    async fn a_piece_ends_before_a_character_not_inside_it() {
        // "é" takes two bytes: "abc" and "é" do not fit in four together.
        let pieces = vec![("abc".into(), false), ("\u{e9}de".into(), true)];
        assert_eq!(lines("abc\u{e9}de".as_bytes(), 4).await, pieces);
    }
}
