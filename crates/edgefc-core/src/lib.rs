//! The edgefc engine: everything that is not Node-specific.
//!
//! # Layers
//!
//! Imports run one way, from the wire up; nothing below imports what is above it:
//!
//! ```text
//!  client (caller, worker)        runtime (server, hosts, bus)
//!          \                         /
//!           +------ transport ------+      sockets, batching writer, pending calls
//!                       |
//!                     proto                 frames, messages, limits
//!                       |
//!                     error                 the one list of error codes
//! ```
//!
//! - [`error`]: [`Error`] and the stable [`ErrorCode`]s that cross every boundary.
//! - [`proto`]: the wire: the binary frame codec ([`proto::frame`]), the
//!   requests, replies and tasks it carries ([`proto::message`]), and the size
//!   rules both sides check ([`proto::limits`]).
//! - [`transport`]: a Unix socket as a frame reader and a batching writer
//!   ([`transport::connection`]), and the table of requests awaiting replies
//!   ([`transport::pending`]).
//! - [`client`]: what a caller or a worker process uses: [`client::Client`]
//!   (one connection) and [`client::Session`] (connect on first use,
//!   reconnect, keep order), which the Node binding wraps.
//! - [`runtime`]: the daemon: configuration, accepting and authenticating
//!   connections, invocations, the message bus and router, the durable
//!   store, the MQTT bridge, one host per function, worker supervision and
//!   launching, logging, and what operators see (metrics, the status page).
//!
//! # The path of one Sync invoke
//!
//! 1. The caller's [`client::Session::submit`] checks the request against
//!    [`proto::limits`], files it in the connection's
//!    [`transport::PendingTable`] and queues an `Invoke` frame
//!    ([`proto::frame`]) on its [`transport::FrameSender`].
//! 2. The runtime's `runtime::server` reads it, and `runtime::invoke` looks
//!    the target up in the [`runtime::FunctionTable`], takes a place in the
//!    function's queue (`runtime::host`) and waits for a permit.
//! 3. `runtime::supervisor` gives it the function's worker, launching one
//!    through the [`runtime::WorkerLauncher`] if none is connected (with one
//!    end of a socketpair, the worker's connection, which `runtime::server`
//!    serves as that function's without a token); the host
//!    files the run in the worker's pending table and sends a `Task` frame.
//! 4. The worker's client reads the `Task` and hands it to the task sink
//!    (the Node handler); its `TaskDone` comes back, the host's waiter takes
//!    it, and `runtime::invoke` answers with a `Result` frame.
//! 5. The caller's reader (`client::replies`) takes the waiter out of the
//!    pending table and hands the reply, with its tag, to the completion sink.
//!
//! A publish follows steps 1 and 2 as a `Publish` frame; `runtime::bus`
//! shows it to matching subscribers and queues it, along the routes
//! ([`runtime::router`]), for each target function as in steps 3 to 4.

pub mod client;
pub mod error;
pub mod proto;
pub mod runtime;
pub mod transport;

pub use error::{Error, ErrorCode, Result};
