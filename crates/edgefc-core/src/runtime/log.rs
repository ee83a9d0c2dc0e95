//! Where the runtime's own messages and its functions' output go: every line
//! is a `tracing` event, so `EDGEFC_LOG` (an `EnvFilter`, default `info`)
//! selects what is printed. Warnings and what functions write to stderr go to
//! stderr, the rest to stdout; a function's lines are prefixed `[function]`.
//!
//! Lines are written through bounded non-blocking writers ([`init_standalone`]):
//! a stalled stdout then drops lines (counted, [`dropped_lines`]) instead of
//! freezing every function, which a single-threaded runtime would otherwise do.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::Level;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Keeps the standalone runtime's writer threads; dropping it writes what is
/// still buffered, waiting at most [`FLUSH_TIMEOUT`].
pub struct LogGuard {
    writers: Option<[tracing_appender::non_blocking::WorkerGuard; 2]>,
}

/// How long a stopping process waits for its last lines to be written.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

impl Drop for LogGuard {
    /// The writers' own guards wait for a stalled stdout and then print to
    /// it, which would block (or, with a closed pipe, panic) forever: they
    /// are dropped on a thread of their own, which exiting leaves behind.
    fn drop(&mut self) {
        let Some(writers) = self.writers.take() else {
            return;
        };
        let (flushed_tx, flushed) = std::sync::mpsc::channel();
        let flush = std::thread::Builder::new().name("edgefc-log-flush".into()).spawn(move || {
            drop(writers);
            let _ = flushed_tx.send(());
        });
        if flush.is_ok() {
            let _ = flushed.recv_timeout(FLUSH_TIMEOUT);
        }
    }
}

/// Lines that may wait for a slow stdout (or stderr) before new ones are
/// dropped, unless `log.maxWaitingLines` says otherwise. The writer's queue
/// is allocated whole at start, so this is also what it costs idle: the
/// library's default (128,000) took 8 MiB.
pub const MAX_WAITING_LINES: usize = 4096;

/// Lines dropped because stdout or stderr did not keep up.
static DROPPED: OnceLock<[tracing_appender::non_blocking::ErrorCounter; 2]> = OnceLock::new();

/// Installs the logger of the standalone runtime process: its stdout and
/// stderr are written by threads of their own, through queues of
/// `max_waiting_lines` lines.
pub fn init_standalone(max_waiting_lines: usize) -> LogGuard {
    let writer =
        || tracing_appender::non_blocking::NonBlockingBuilder::default().buffered_lines_limit(max_waiting_lines).lossy(true);
    let (stdout, stdout_guard) = writer().finish(std::io::stdout());
    let (stderr, stderr_guard) = writer().finish(std::io::stderr());
    let _ = DROPPED.set([stdout.error_counter(), stderr.error_counter()]);
    install(stderr.with_max_level(Level::WARN).or_else(stdout));
    LogGuard { writers: Some([stdout_guard, stderr_guard]) }
}

/// Installs the logger of a runtime embedded in another process; a second
/// call changes nothing. Its lines go through the same bounded queues, kept
/// for the life of the process.
pub fn init_embedded() {
    static GUARD: OnceLock<LogGuard> = OnceLock::new();
    GUARD.get_or_init(|| init_standalone(MAX_WAITING_LINES));
}

/// Output lines dropped so far because stdout or stderr was not being read.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |counters| counters.iter().map(|counter| counter.dropped_lines() as u64).sum())
}

/// Lets a warning about something that may happen many times a second
/// through at most once per period, with how many were held back.
pub(crate) struct Throttle {
    period: Duration,
    last: Mutex<Option<Instant>>,
    held_back: AtomicU64,
}

impl Throttle {
    pub(crate) const fn new(period: Duration) -> Throttle {
        Throttle { period, last: Mutex::new(None), held_back: AtomicU64::new(0) }
    }

    pub(crate) fn warn(&self, message: fmt::Arguments<'_>) {
        let now = Instant::now();
        {
            let mut last = self.last.lock().unwrap();
            if last.is_some_and(|last| now.duration_since(last) < self.period) {
                self.held_back.fetch_add(1, Ordering::Relaxed);
                return;
            }
            *last = Some(now);
        }
        match self.held_back.swap(0, Ordering::Relaxed) {
            0 => warn(message),
            held_back => warn(format_args!("{message} ({held_back} more like it since the last such line)")),
        }
    }
}

fn install<W>(writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_env("EDGEFC_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Fails only when a logger is already installed, which is then kept.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

/// A status line, printed as it is written (`edgefc runtime listening on ...`).
pub fn info(message: fmt::Arguments<'_>) {
    tracing::info!(target: "edgefc", "{message}");
}

/// Something an operator should look at, printed as `[edgefc] ...`.
pub fn warn(message: fmt::Arguments<'_>) {
    tracing::warn!(target: "edgefc", "[edgefc] {message}");
}

/// Which of a worker's streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// One line a function printed, prefixed with its name.
pub fn function_output(function: &str, stream: OutputStream, line: &str) {
    match stream {
        OutputStream::Stdout => tracing::info!(target: "edgefc::function", "[{function}] {line}"),
        OutputStream::Stderr => tracing::warn!(target: "edgefc::function", "[{function}] {line}"),
    }
}
