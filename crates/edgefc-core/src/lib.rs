//! The edgefc engine: everything that is not Node-specific.
//!
//! Layout, one module per concern:
//!
//! - [`frame`]: the binary wire format and its codec.
//! - [`connection`]: a socket split into a frame reader and a batching writer.
//! - [`client`]: the multiplexed caller side, used by the Node addon for
//!   `FCClient` calls and by hosted workers to receive their tasks.
//! - [`config`]: the runtime's `edgefc.json` and the function table.
//! - [`launcher`]: how a function's worker process is started.
//! - [`router`]: topic filters and the routes that deliver published messages.
//! - [`host`]: one hosted function: worker lifecycle, concurrency, timeouts.
//! - [`server`]: accepting and authenticating connections, routing invocations.
//! - [`runtime`]: starting and stopping all of it.
//! - [`error`]: the stable error codes shared with the Node facade.

pub mod client;
pub mod config;
pub mod connection;
pub mod error;
pub mod frame;
pub mod host;
pub mod launcher;
pub mod router;
pub mod runtime;
mod server;

pub use client::{
    Channel, Client, CompletionSink, ConnectOptions, Dispatch, InvokeReply, InvokeRequest, Message, Outgoing, Sinks,
    SyncResult, Task, TaskSink,
};
pub use config::{function_arn, Config, FunctionSpec};
pub use error::{Error, ErrorCode, Result};
pub use frame::{Frame, FrameCodec, FunctionError, Payload};
pub use launcher::{LaunchSpec, NodeLauncher, WorkerLauncher, WorkerProcess};
pub use runtime::RuntimeHandle;
