//! How the runtime allocates: small blocks from mimalloc, large frame
//! buffers from the C allocator, asked to keep them warm.
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

/// Applies the settings to this process (the standalone runtime, at
/// start). Elsewhere than glibc this does nothing.
pub fn keep_large_buffers_warm() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; both values are in range.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int);
    }
}

/// The same settings for a process about to start (a worker), as the
/// `GLIBC_TUNABLES` environment variable.
pub fn tunables() -> String {
    format!("glibc.malloc.mmap_threshold={MMAP_THRESHOLD}:glibc.malloc.trim_threshold={TRIM_THRESHOLD}")
}

/// Allocations past this size go to the C allocator, smaller ones to mimalloc.
const SMALL_MAX: usize = 16 << 10;

/// The standalone runtime's allocator: mimalloc for small allocations
/// (under durable Async load glibc's `malloc` and `free` were a quarter of
/// the runtime thread's samples), glibc's heap, tuned as above, for large
/// frame buffers. mimalloc gave each 64 KiB frame buffer memory that was
/// cold in the cache, where glibc hands back the one just freed: 64 KiB
/// calls took 13% longer with mimalloc alone.
///
/// Every allocation goes back to the allocator it came from: Rust passes
/// `dealloc` and `realloc` the size it was allocated with.
pub struct SplitAllocator;

fn is_small(layout: std::alloc::Layout) -> bool {
    layout.size() <= SMALL_MAX
}

// SAFETY: each method forwards to the allocator that `is_small` picks for
// the layout, which is the one the block came from (see above); a block that
// changes side in `realloc` is copied and freed where it came from.
unsafe impl std::alloc::GlobalAlloc for SplitAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if is_small(layout) {
            mimalloc::MiMalloc.alloc(layout)
        } else {
            std::alloc::System.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if is_small(layout) {
            mimalloc::MiMalloc.alloc_zeroed(layout)
        } else {
            std::alloc::System.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: std::alloc::Layout) {
        if is_small(layout) {
            mimalloc::MiMalloc.dealloc(block, layout)
        } else {
            std::alloc::System.dealloc(block, layout)
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        let new_layout = std::alloc::Layout::from_size_align_unchecked(new_size, layout.align());
        match (is_small(layout), is_small(new_layout)) {
            (true, true) => mimalloc::MiMalloc.realloc(block, layout, new_size),
            (false, false) => std::alloc::System.realloc(block, layout, new_size),
            _ => {
                let moved = self.alloc(new_layout);
                if !moved.is_null() {
                    std::ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                    self.dealloc(block, layout);
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::alloc::{GlobalAlloc, Layout};

    use super::{SplitAllocator, SMALL_MAX};

    #[test]
    fn a_block_keeps_its_bytes_as_it_grows_and_shrinks_across_the_two_allocators() {
        let sizes = [100, SMALL_MAX, SMALL_MAX + 1, 1 << 20, 3 * SMALL_MAX, 64, 200];
        let mut layout = Layout::from_size_align(sizes[0], 16).unwrap();
        // SAFETY: every block is used within its layout and freed once, with the layout it has.
        unsafe {
            let mut block = SplitAllocator.alloc_zeroed(layout);
            assert!(!block.is_null());
            assert!(std::slice::from_raw_parts(block, layout.size()).iter().all(|&byte| byte == 0));
            for (n, byte) in std::slice::from_raw_parts_mut(block, layout.size()).iter_mut().enumerate() {
                *byte = n as u8;
            }
            for &size in &sizes[1..] {
                block = SplitAllocator.realloc(block, layout, size);
                assert!(!block.is_null());
                assert_eq!(block as usize % 16, 0, "alignment kept at {size}");
                let kept = layout.size().min(size).min(sizes[0]);
                let bytes = std::slice::from_raw_parts(block, kept);
                assert!(bytes.iter().enumerate().all(|(n, &byte)| byte == n as u8), "bytes kept at {size}");
                layout = Layout::from_size_align(size, 16).unwrap();
            }
            SplitAllocator.dealloc(block, layout);
        }
    }
}
