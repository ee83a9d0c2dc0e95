//! How the C allocator is asked to treat the buffers of large frames.
//!
//! A frame of a MiB is read into, and written from, a buffer of its size.
//! glibc hands allocations that large straight back to the kernel when they
//! are freed (they are mapped, not taken from the heap), so every such frame
//! met fresh memory, and the page faults cost the runtime about four times
//! what copying the bytes does (measured at 1 MiB, `npm run bench`). Taken
//! from the heap, and with some free heap kept rather than trimmed, the next
//! large frame reuses memory that is already there. A process then keeps
//! no more than it used at its peak, and of that, at most `TRIM_THRESHOLD`
//! free at the top of its heap.

/// Allocations up to this size come from the heap (glibc's largest setting).
const MMAP_THRESHOLD: usize = 32 << 20;
/// Free memory at the top of the heap that is kept for reuse.
const TRIM_THRESHOLD: usize = 32 << 20;

/// The settings for a process about to start (a worker: Node, on glibc),
/// as the `GLIBC_TUNABLES` environment variable. The standalone runtime
/// uses mimalloc instead, which reuses freed large buffers by itself.
pub fn tunables() -> String {
    format!("glibc.malloc.mmap_threshold={MMAP_THRESHOLD}:glibc.malloc.trim_threshold={TRIM_THRESHOLD}")
}
