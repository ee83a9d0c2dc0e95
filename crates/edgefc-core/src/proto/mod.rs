//! The wire: what a caller, the runtime and a worker say to each other.
//!
//! - [`frame`]: the binary frame layout and its codec.
//! - [`message`]: the requests, replies and tasks that frames carry, as both
//!   sides use them.
//! - [`limits`]: the size rules a request must keep, checked by the sender
//!   before it sends and by the runtime when it receives.

pub mod frame;
pub mod limits;
pub mod message;

pub use frame::{Frame, FrameCodec, FrameError, FunctionError, Payload, PROTOCOL_VERSION};
pub use message::{InvokeRequest, Message, Reply, Request, SyncResult, Task, STATUS_OK};
