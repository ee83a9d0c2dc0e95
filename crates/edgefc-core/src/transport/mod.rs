//! Moving frames over a Unix socket, for callers, workers and the runtime alike.
//!
//! - [`connection`]: a socket split into a frame reader and a batching writer.
//! - [`pending`]: the table of requests sent on a connection and not yet answered.
//! - [`allocator`]: how the C allocator keeps the buffers of large frames warm.

pub mod allocator;
pub mod connection;
pub mod pending;

pub use connection::{split, split_polled, FrameReader, FrameSender, Offer, OutputBound, PolledReader, ReadTurn};
pub use pending::PendingTable;
