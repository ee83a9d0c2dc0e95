//! Where the runtime's own messages and its functions' output go: every line
//! is a `tracing` event, so `EDGEFC_LOG` (an `EnvFilter`, default `info`)
//! selects what is printed. Warnings and what functions write to stderr go to
//! stderr, the rest to stdout; a function's lines are prefixed `[function]`.
//!
//! Lines are written through bounded non-blocking writers ([`init_standalone`]):
//! a stalled stdout then drops lines (counted, [`dropped_lines`]) instead of
//! freezing every function, which a single-threaded runtime would otherwise do.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::Level;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use super::budget::Budget;

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
/// Their bytes, unless `log.maxWaitingBytes` says otherwise.
pub const MAX_WAITING_BYTES: usize = 8 << 20;

/// Lines dropped because stdout or stderr did not keep up.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Installs the logger of the standalone runtime process: its stdout and
/// stderr are written by threads of their own, each through a queue of at
/// most `max_lines` lines and `max_bytes` bytes; what does not fit is dropped.
pub fn init_standalone(max_lines: usize, max_bytes: usize) -> LogGuard {
    let (stdout, stdout_guard) = Bounded::new(std::io::stdout(), max_lines, max_bytes);
    let (stderr, stderr_guard) = Bounded::new(std::io::stderr(), max_lines, max_bytes);
    install(stderr.with_max_level(Level::WARN).or_else(stdout));
    LogGuard { writers: Some([stdout_guard, stderr_guard]) }
}

/// Installs the logger of a runtime embedded in another process; a second
/// call changes nothing (the first runtime's bounds stay). Its lines go
/// through the same bounded queues, kept for the life of the process.
pub fn init_embedded(max_lines: usize, max_bytes: usize) {
    static GUARD: OnceLock<LogGuard> = OnceLock::new();
    GUARD.get_or_init(|| init_standalone(max_lines, max_bytes));
}

/// Output lines dropped so far because stdout or stderr was not being read.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// The writing side of one stream's queue: takes a place per line, or
/// drops the line when the queue is full, so that it never blocks.
#[derive(Clone)]
struct Bounded {
    queue: tracing_appender::non_blocking::NonBlocking,
    waiting: Arc<Budget>,
}

/// The stream itself, on the writer thread: each line written gives its place back.
struct Draining<W> {
    stream: W,
    waiting: Arc<Budget>,
}

impl Bounded {
    fn new<W: Write + Send + 'static>(
        stream: W,
        max_lines: usize,
        max_bytes: usize,
    ) -> (Bounded, tracing_appender::non_blocking::WorkerGuard) {
        let waiting = Arc::new(Budget::new(max_lines, max_bytes));
        // One more place than lines, for the writer's own shutdown message:
        // with the places counted here, sending never waits.
        let (queue, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .buffered_lines_limit(max_lines + 1)
            .lossy(false)
            .finish(Draining { stream, waiting: waiting.clone() });
        (Bounded { queue, waiting }, guard)
    }
}

impl Write for Bounded {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        if !self.waiting.try_take(line.len()) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return Ok(line.len());
        }
        self.queue.write(line)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Bounded {
    type Writer = Bounded;

    fn make_writer(&'a self) -> Bounded {
        self.clone()
    }
}

impl<W: Write> Write for Draining<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.stream.write(bytes)
    }

    /// The writer thread writes each line with one call: its place is free after it.
    fn write_all(&mut self, line: &[u8]) -> io::Result<()> {
        let written = self.stream.write_all(line);
        self.waiting.give_back(line.len());
        written
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
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
/// How much of a function's error body a log line shows.
const MAX_LOGGED_ERROR_BYTES: usize = 1024;

/// A function's error body as a log line shows it: at most
/// `MAX_LOGGED_ERROR_BYTES`, marked when cut.
pub(super) fn error_body(body: &[u8]) -> String {
    let shown = String::from_utf8_lossy(&body[..body.len().min(MAX_LOGGED_ERROR_BYTES)]);
    if body.len() > MAX_LOGGED_ERROR_BYTES {
        format!("{shown} [cut]")
    } else {
        shown.into_owned()
    }
}

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
