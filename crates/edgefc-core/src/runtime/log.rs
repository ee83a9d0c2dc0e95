//! Where the runtime's own messages and its functions' output go: every line
//! is a `tracing` event, so `EDGEFC_LOG` (an `EnvFilter`, default `info`)
//! selects what is printed. Warnings and what functions write to stderr go to
//! stderr, the rest to stdout; a function's lines are prefixed `[function]`.
//!
//! The standalone runtime writes through a bounded non-blocking writer
//! ([`init_standalone`]): a stalled stdout then drops lines instead of
//! freezing every function, which a single-threaded runtime would otherwise
//! do. Embedded in Node, output goes to the process's own streams as it comes.

use std::fmt;

use tracing::Level;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Keeps the standalone runtime's writer threads; dropping it writes what is
/// still buffered.
pub struct LogGuard {
    _stdout: tracing_appender::non_blocking::WorkerGuard,
    _stderr: tracing_appender::non_blocking::WorkerGuard,
}

/// Lines that may wait for a slow stdout (or stderr) before new ones are
/// dropped. The writer's queue is allocated whole at start, so this is also
/// what it costs idle: the library's default (128,000) took 8 MiB.
pub const MAX_WAITING_LINES: usize = 4096;

/// Installs the logger of the standalone runtime process.
pub fn init_standalone() -> LogGuard {
    let writer =
        || tracing_appender::non_blocking::NonBlockingBuilder::default().buffered_lines_limit(MAX_WAITING_LINES).lossy(true);
    let (stdout, stdout_guard) = writer().finish(std::io::stdout());
    let (stderr, stderr_guard) = writer().finish(std::io::stderr());
    install(stderr.with_max_level(Level::WARN).or_else(stdout));
    LogGuard { _stdout: stdout_guard, _stderr: stderr_guard }
}

/// Installs the logger of a runtime embedded in another process; a second
/// call changes nothing.
pub fn init_embedded() {
    install(std::io::stderr.with_max_level(Level::WARN).or_else(std::io::stdout));
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
