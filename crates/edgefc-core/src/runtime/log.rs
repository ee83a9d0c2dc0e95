//! Where the runtime's own messages and its functions' output go: every line
//! is a `tracing` event, so `EDGEFC_LOG` (an `EnvFilter`, default `info`)
//! selects what is printed. Warnings and what functions write to stderr go to
//! stderr, the rest to stdout; a function's lines are prefixed `[function]`.
//!
//! Lines are written through bounded non-blocking writers ([`init_standalone`]):
//! a stalled stdout then drops lines (counted, [`dropped_lines`]) instead of
//! freezing every function, which a single-threaded runtime would otherwise do.

use std::fmt;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::Level;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
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

/// How many lines like this one were held back; shown after the line that got through.
pub(crate) struct HeldBack(u64);

impl fmt::Display for HeldBack {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            held_back => write!(formatter, " ({held_back} more like it since the last such line)"),
        }
    }
}

impl Throttle {
    pub(crate) const fn new(period: Duration) -> Throttle {
        Throttle { period, last: Mutex::new(None), held_back: AtomicU64::new(0) }
    }

    /// `Some` when the line may be written now; otherwise it is counted as held back.
    pub(crate) fn admit(&self) -> Option<HeldBack> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap();
        if last.is_some_and(|last| now.duration_since(last) < self.period) {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(HeldBack(self.held_back.swap(0, Ordering::Relaxed)))
    }
}

/// `EDGEFC_LOG_FORMAT=json`: one JSON object per line. Anything else: plain
/// lines. Read once, so that workers tag their output exactly when the
/// installed logger shows the tags.
pub(crate) fn json_wanted() -> bool {
    static JSON: OnceLock<bool> = OnceLock::new();
    *JSON.get_or_init(|| std::env::var("EDGEFC_LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json")))
}

fn install<W>(writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_env("EDGEFC_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Fails only when a logger is already installed, which is then kept.
    let _ = if json_wanted() {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(writer)
            .try_init()
    } else {
        tracing_subscriber::fmt().event_format(Plain).with_env_filter(filter).with_writer(writer).try_init()
    };
}

/// The plain format: a function's line as `[name] line`, the runtime's
/// warnings as `[edgefc] message`, its other lines as they are.
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &tracing::Event<'_>) -> fmt::Result {
        let mut fields = PlainFields::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        if let Some(name) = fields.name {
            write!(writer, "[{name}] ")?;
        } else if *metadata.level() <= Level::WARN {
            writer.write_str("[edgefc] ")?;
        } else if *metadata.level() >= Level::DEBUG {
            write!(writer, "[{}] ", metadata.target())?;
        }
        writeln!(writer, "{}", fields.message)
    }
}

/// The fields the plain format shows: the message, and a function's name.
#[derive(Default)]
struct PlainFields {
    message: String,
    name: Option<String>,
}

impl Visit for PlainFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "name" => self.name = Some(value.to_string()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        }
    }
}

/// A line for the runtime part `$part` (log target `edgefc::$part`, which
/// `EDGEFC_LOG=edgefc::$part=debug` selects): `warn!("store", "…", …)` for
/// what an operator should look at, `info!` for status, `debug!` for detail.
#[macro_export]
macro_rules! warn {
    ($part:literal, $($message:tt)+) => { ::tracing::warn!(target: concat!("edgefc::", $part), $($message)+) };
}

#[macro_export]
macro_rules! info {
    ($part:literal, $($message:tt)+) => { ::tracing::info!(target: concat!("edgefc::", $part), $($message)+) };
}

#[macro_export]
macro_rules! debug {
    ($part:literal, $($message:tt)+) => { ::tracing::debug!(target: concat!("edgefc::", $part), $($message)+) };
}

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

/// Which of a worker's streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Who printed a function's output line: its name (shown in plain lines),
/// its id and its worker's pid (fields of JSON lines).
pub struct OutputSource {
    pub name: String,
    pub function_id: String,
    pub pid: Option<u32>,
    /// The worker was asked to start each line with its invocation's tag (`EDGEFC_TAG_OUTPUT`).
    pub tagged: bool,
}

/// One line a function printed (target `edgefc::function`): stdout at
/// `info`, stderr at `warn`; with the invocation that printed it when its
/// worker tagged the line.
pub fn function_output(source: &OutputSource, stream: OutputStream, line: &str) {
    let OutputSource { name, function_id, pid, tagged } = source;
    let (invocation, line) = if *tagged { untag(line) } else { (None, line) };
    match stream {
        OutputStream::Stdout => tracing::info!(
            target: "edgefc::function",
            name = name.as_str(),
            function = function_id.as_str(),
            pid = *pid,
            invocation,
            stream = "stdout",
            "{line}"
        ),
        OutputStream::Stderr => tracing::warn!(
            target: "edgefc::function",
            name = name.as_str(),
            function = function_id.as_str(),
            pid = *pid,
            invocation,
            stream = "stderr",
            "{line}"
        ),
    }
}

/// The invocation id a worker put before a line (`\x1e<id>\x1f`, see
/// `lib/core/worker.js`), and the line without it. An id is at most 64
/// letters, digits, `-` or `_`; anything else is left as printed.
fn untag(line: &str) -> (Option<&str>, &str) {
    let tagged = line.strip_prefix('\x1e').and_then(|rest| rest.split_once('\x1f'));
    match tagged {
        Some((id, rest))
            if !id.is_empty()
                && id.len() <= 64
                && id.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_') =>
        {
            (Some(id), rest)
        }
        _ => (None, line),
    }
}

#[cfg(test)]
mod tests {
    use super::untag;

    #[test]
    fn a_tag_is_taken_off_a_line_only_when_it_is_one() {
        assert_eq!(untag("\x1eabc-1\x1fhello"), (Some("abc-1"), "hello"));
        assert_eq!(untag("hello"), (None, "hello"));
        assert_eq!(untag("\x1e\x1fhello"), (None, "\x1e\x1fhello"));
        assert_eq!(untag("\x1ea b\x1fhello"), (None, "\x1ea b\x1fhello"));
        assert_eq!(untag("\x1eno end"), (None, "\x1eno end"));
    }
}
