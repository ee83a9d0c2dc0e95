//! The requests sent on one connection and still waiting for their replies,
//! by request id. Whoever reads the connection takes each waiter out when its
//! reply arrives; when the connection ends, [`close`](PendingTable::close)
//! hands every waiter back at once so each can be failed, and later requests
//! are refused instead of waiting on a reply that cannot come.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub struct PendingTable<W> {
    /// `None` once closed.
    waiters: Mutex<Option<HashMap<u64, W>>>,
    next_id: AtomicU64,
}

impl<W> Default for PendingTable<W> {
    fn default() -> Self {
        PendingTable::new()
    }
}

impl<W> PendingTable<W> {
    pub fn new() -> PendingTable<W> {
        PendingTable { waiters: Mutex::new(Some(HashMap::new())), next_id: AtomicU64::new(1) }
    }

    /// Files `waiter` under a fresh request id; `None` when the table is closed.
    pub fn register(&self, waiter: W) -> Option<u64> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.waiters.lock().unwrap().as_mut()?.insert(id, waiter);
        Some(id)
    }

    /// The waiter of `id`, if it is still waiting.
    pub fn take(&self, id: u64) -> Option<W> {
        self.waiters.lock().unwrap().as_mut()?.remove(&id)
    }

    /// Refuses new requests and returns every waiter left.
    pub fn close(&self) -> Vec<W> {
        self.waiters.lock().unwrap().take().map(|waiters| waiters.into_values().collect()).unwrap_or_default()
    }

    pub fn is_closed(&self) -> bool {
        self.waiters.lock().unwrap().is_none()
    }

    /// How many requests are waiting (none once closed).
    pub fn len(&self) -> usize {
        self.waiters.lock().unwrap().as_ref().map_or(0, HashMap::len)
    }

    /// No request is waiting (true once closed).
    pub fn is_empty(&self) -> bool {
        self.waiters.lock().unwrap().as_ref().is_none_or(HashMap::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::PendingTable;

    #[test]
    fn waiters_are_taken_once_and_handed_back_on_close() {
        let table = PendingTable::new();
        let first = table.register("first").unwrap();
        let second = table.register("second").unwrap();
        assert_ne!(first, second);
        assert_eq!(table.take(first), Some("first"));
        assert_eq!(table.take(first), None, "a reply for a finished request finds no one");
        assert_eq!(table.close(), vec!["second"]);
        assert!(table.is_closed());
        assert_eq!(table.register("late"), None, "a closed table refuses new requests");
        assert_eq!(table.take(second), None);
    }
}
