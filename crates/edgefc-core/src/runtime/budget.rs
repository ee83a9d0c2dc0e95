//! A bound on what is held at once, by count and by bytes: what a function's
//! queue and the runtime as a whole may hold of admitted invocations, and
//! what may wait for the runtime's stdout and stderr.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

use serde::Serialize;

pub(super) struct Budget {
    max_count: usize,
    max_bytes: usize,
    used: Mutex<Used>,
    refused: AtomicU64,
    /// Woken when the last place is given back.
    emptied: Notify,
}

#[derive(Clone, Copy, Default)]
struct Used {
    count: usize,
    bytes: usize,
}

/// A budget's use and bounds, as `edgefc stats` shows them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BudgetStats {
    pub(super) count: usize,
    pub(super) max_count: usize,
    pub(super) bytes: usize,
    pub(super) max_bytes: usize,
    pub(super) refused: u64,
}

impl Budget {
    pub(super) fn new(max_count: usize, max_bytes: usize) -> Budget {
        Budget { max_count, max_bytes, used: Mutex::new(Used::default()), refused: AtomicU64::new(0), emptied: Notify::new() }
    }

    /// Takes one place of `bytes`, or counts a refusal.
    pub(super) fn try_take(&self, bytes: usize) -> bool {
        self.take(bytes, false)
    }

    /// Like [`try_take`](Budget::try_take), but an empty budget always takes
    /// one, so that a payload larger than the byte bound can still run, alone.
    pub(super) fn try_take_or_alone(&self, bytes: usize) -> bool {
        self.take(bytes, true)
    }

    fn take(&self, bytes: usize, alone_fits: bool) -> bool {
        let mut used = self.used.lock().unwrap();
        let bytes_fit = used.bytes.saturating_add(bytes) <= self.max_bytes || (alone_fits && used.count == 0);
        if used.count >= self.max_count || !bytes_fit {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        used.count += 1;
        used.bytes += bytes;
        true
    }

    /// Gives back a place taken with [`try_take`](Budget::try_take).
    pub(super) fn give_back(&self, bytes: usize) {
        let mut used = self.used.lock().unwrap();
        used.count -= 1;
        used.bytes -= bytes;
        if used.count == 0 {
            self.emptied.notify_waiters();
        }
    }

    /// Resolves once nothing is held.
    pub(super) async fn empty(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            if self.used.lock().unwrap().count == 0 {
                return;
            }
            emptied.await;
        }
    }

    pub(super) fn max_count(&self) -> usize {
        self.max_count
    }

    pub(super) fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    pub(super) fn stats(&self) -> BudgetStats {
        let used = *self.used.lock().unwrap();
        BudgetStats {
            count: used.count,
            max_count: self.max_count,
            bytes: used.bytes,
            max_bytes: self.max_bytes,
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}
