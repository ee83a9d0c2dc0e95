//! The durable store, `<stateDir>/store.redb` (redb): every accepted Async
//! invocation until its last attempt ends, and the dead letters.
//!
//! One writer thread owns every write transaction. It takes everything
//! waiting, applies it in one transaction and commits once, and only then
//! answers: group commit, one fsync for as many accepts as arrived
//! meanwhile. What must survive a crash (an accept, a replay, a purge)
//! commits with `Durability::Immediate` before it is answered. What may be
//! lost (a finished invocation's removal, a retry's new attempt count)
//! rides along non-durably: losing it only runs an invocation once more,
//! which at-least-once allows; a commit within `FLUSH_AFTER` makes it
//! durable when nothing else comes. Removals that arrive with nothing else
//! make no commit at all until something else, or `FLUSH_AFTER`, comes.
//!
//! The answers of one commit go back to the runtime's thread in one message,
//! and a task there hands them out: waking each waiter from the writer
//! thread would wake the runtime's thread once per answer, and the replies
//! would leave one by one instead of in one write.
//!
//! The MQTT bridge's outbox lives here too: a message for a broker is
//! durable before the publish that made it is answered, and leaves once the
//! broker acknowledged it.
//!
//! - [`record`]: how an invocation, a dead letter and an outbox message are laid out.

pub mod record;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::error::{Error, ErrorCode, Result};
pub use record::{DeadLetter, Invocation, OutboxMessage};

/// Accepted invocations not yet ended, by sequence number (FIFO).
const PENDING: TableDefinition<u64, &[u8]> = TableDefinition::new("pending");
/// Dead letters, by the sequence number they had while pending.
const DEAD: TableDefinition<u64, &[u8]> = TableDefinition::new("dead");
/// Messages for MQTT brokers not yet acknowledged, by sequence number (FIFO).
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");

pub const STORE_FILE: &str = "store.redb";

/// Writes taken into one transaction at most, beside held-back removals.
const MAX_GROUP: usize = 1024;
/// How long a non-durable write may wait for a durable commit.
const FLUSH_AFTER: Duration = Duration::from_secs(1);
/// Removals of finished invocations held back for the next commit at most.
const MAX_HELD_BACK_REMOVALS: usize = 4096;

/// How much the store may hold (`store.*` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Bytes of pending invocations and dead letters together.
    pub max_bytes: usize,
    /// Dead letters kept; past this (or `max_dead_letter_bytes`) the oldest is dropped and counted.
    pub max_dead_letters: usize,
    pub max_dead_letter_bytes: usize,
    /// redb's page cache. Its own default, 1 GiB, let the runtime's RSS
    /// grow by what the store held (a store of large payloads fills it).
    pub cache_bytes: usize,
}

pub struct Store {
    path: PathBuf,
    /// `None` once closed: the file's lock goes with the last handle.
    db: std::sync::RwLock<Option<Arc<Database>>>,
    writes: mpsc::Sender<Write>,
    next_seq: AtomicU64,
    limits: StoreLimits,
    /// Bytes held: pending and dead together.
    held: Arc<AtomicUsize>,
    dead: Arc<std::sync::Mutex<DeadIndex>>,
    counters: Arc<Counters>,
}

/// The dead letters' sizes, oldest first: what the writer evicts from.
#[derive(Default)]
struct DeadIndex {
    sizes: BTreeMap<u64, usize>,
    bytes: usize,
}

impl DeadIndex {
    fn insert(&mut self, seq: u64, size: usize) {
        self.sizes.insert(seq, size);
        self.bytes += size;
    }

    /// The size of the dead letter `seq`, which leaves the index; `None` if it was not there.
    fn remove(&mut self, seq: u64) -> Option<usize> {
        let size = self.sizes.remove(&seq)?;
        self.bytes -= size;
        Some(size)
    }
}

#[derive(Default)]
pub struct Counters {
    pub commits: AtomicU64,
    /// Time spent applying and committing, fsync included.
    pub commit_micros: AtomicU64,
    pub dead_letters_evicted: AtomicU64,
    pub damaged_records: AtomicU64,
}

type Waiter = oneshot::Sender<Result<()>>;

/// The waiters of one commit, and how it went.
struct Answers {
    waiters: Vec<Waiter>,
    outcome: Result<()>,
}

/// One pending invocation as loaded at start: all but its payload.
#[derive(Debug, Clone)]
pub struct PendingEntry {
    pub seq: u64,
    pub function_id: String,
    pub size: usize,
    pub not_before_ms: u64,
}

enum Write {
    /// Durable before `done`.
    Insert { seq: u64, record: Vec<u8>, done: Waiter },
    /// Non-durable.
    Remove { seq: u64 },
    /// Non-durable: a retry's new attempt count and start time.
    Replace { seq: u64, record: Vec<u8> },
    /// Non-durable: from pending to the dead letters.
    Bury { seq: u64, record: Vec<u8> },
    /// Durable before `done`: from the dead letters back to pending, under a new sequence number.
    Revive { dead_seq: u64, seq: u64, record: Vec<u8>, done: Waiter },
    /// Durable before `done`: dead letters removed.
    Purge { seqs: Vec<u64>, done: Waiter },
    /// Everything before it made durable, then the writer ends.
    Close { done: Waiter },
    /// Durable before `done`: a message for a broker.
    Post { seq: u64, record: Vec<u8>, done: Waiter },
    /// Non-durable: the broker acknowledged it, or the outbox dropped it (losing this sends it once more).
    Unpost { seq: u64 },
}

/// One message in the outbox as found at start: its broker, sequence number and size.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub seq: u64,
    pub broker: String,
    pub size: usize,
}

impl Store {
    /// Opens (or creates) the store in `state_dir`, and returns what was
    /// pending when it was last closed. Must be called on a tokio runtime.
    /// A damaged file is an error that says so; a damaged record is
    /// counted, logged and left out.
    pub fn open(state_dir: &Path, limits: StoreLimits) -> Result<(Store, Vec<PendingEntry>)> {
        let path = state_dir.join(STORE_FILE);
        let db = database_builder(limits).create(&path).map_err(|error| damaged(&path, &error))?;
        Store::on(db, path, limits)
    }

    /// The store on another storage than a file (`label` names it in
    /// messages): how the tests cut the power between two syncs.
    pub fn open_with_backend(
        backend: impl redb::StorageBackend,
        label: &Path,
        limits: StoreLimits,
    ) -> Result<(Store, Vec<PendingEntry>)> {
        let db = database_builder(limits).create_with_backend(backend).map_err(|error| damaged(label, &error))?;
        Store::on(db, label.to_path_buf(), limits)
    }

    fn on(db: Database, path: PathBuf, limits: StoreLimits) -> Result<(Store, Vec<PendingEntry>)> {
        let damaged = |error: &dyn std::fmt::Display| damaged(&path, error);
        let setup = db.begin_write().map_err(|error| damaged(&error))?;
        setup.open_table(PENDING).map_err(|error| damaged(&error))?;
        setup.open_table(DEAD).map_err(|error| damaged(&error))?;
        setup.open_table(OUTBOX).map_err(|error| damaged(&error))?;
        setup.commit().map_err(|error| damaged(&error))?;
        let counters = Arc::new(Counters::default());
        let (pending, dead, last_seq) = load(&db, &counters).map_err(|error| damaged(&error))?;
        let held = pending.iter().map(|entry| entry.size).sum::<usize>() + dead.bytes;
        let db = Arc::new(db);
        let held = Arc::new(AtomicUsize::new(held));
        let dead = Arc::new(std::sync::Mutex::new(dead));
        // Unbounded, but what it carries is bounded before it: accepts by each
        // function's pending limit and `store.maxBytes`, removals and retries
        // by the invocations those admitted, posts by each outbox's bounds.
        let (writes, incoming) = mpsc::channel();
        // Unbounded, but holds no more than the writes taken, which callers bound.
        let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel::<Answers>();
        tokio::spawn(async move {
            while let Some(Answers { waiters, outcome }) = answered.recv().await {
                for waiter in waiters {
                    let _ = waiter.send(outcome.clone());
                }
            }
        });
        let writer =
            Writer { db: db.clone(), limits, held: held.clone(), dead: dead.clone(), counters: counters.clone(), answers };
        std::thread::Builder::new()
            .name("edgefc-store".into())
            .spawn(move || writer.run(incoming))
            .map_err(|error| Error::new(ErrorCode::Internal, format!("cannot start the store's writer: {error}")))?;
        let store = Store {
            path,
            db: std::sync::RwLock::new(Some(db)),
            writes,
            next_seq: AtomicU64::new(last_seq + 1),
            limits,
            held,
            dead,
            counters,
        };
        Ok((store, pending))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Bytes held by pending invocations and dead letters.
    pub fn held_bytes(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    pub fn dead_letter_count(&self) -> usize {
        self.dead.lock().unwrap().sizes.len()
    }

    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// Stores an accepted invocation, durably, and returns its sequence
    /// number. Fails with `ERR_QUEUE_FULL` when it would pass `store.maxBytes`.
    pub async fn accept(&self, invocation: &Invocation) -> Result<u64> {
        let size = invocation.size();
        let held = self.held.fetch_add(size, Ordering::AcqRel);
        if held + size > self.limits.max_bytes {
            self.held.fetch_sub(size, Ordering::AcqRel);
            return Err(Error::new(
                ErrorCode::QueueFull,
                format!(
                    "the store is full ({} bytes of accepted invocations and dead letters; store.maxBytes)",
                    self.limits.max_bytes
                ),
            ));
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let (done, committed) = oneshot::channel();
        self.send(Write::Insert { seq, record: invocation.encode(), done });
        match committed.await.unwrap_or_else(|_| Err(stopped())) {
            Ok(()) => Ok(seq),
            Err(error) => {
                self.held.fetch_sub(size, Ordering::AcqRel);
                Err(error)
            }
        }
    }

    /// Puts a message for a broker in the outbox, durably; returns its sequence number.
    pub async fn post(&self, message: &OutboxMessage) -> Result<u64> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let (done, committed) = oneshot::channel();
        self.send(Write::Post { seq, record: message.encode(), done });
        committed.await.unwrap_or_else(|_| Err(stopped()))?;
        Ok(seq)
    }

    /// The message left the outbox (acknowledged, or dropped).
    pub fn unpost(&self, seq: u64) {
        self.send(Write::Unpost { seq });
    }

    /// A message in the outbox.
    pub fn read_posted(&self, seq: u64) -> Result<Option<OutboxMessage>> {
        let read = self.database()?.begin_read().map_err(storage)?;
        let table = read.open_table(OUTBOX).map_err(storage)?;
        let bytes = table.get(seq).map_err(storage)?;
        bytes.map(|bytes| OutboxMessage::decode(bytes.value()).map_err(|error| self.damaged(error))).transpose()
    }

    /// Every message in the outbox, oldest first, without its payload:
    /// what the bridge resends after a restart.
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>> {
        let read = self.database()?.begin_read().map_err(storage)?;
        let table = read.open_table(OUTBOX).map_err(storage)?;
        let mut entries = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (seq, bytes) = entry.map_err(storage)?;
            match OutboxMessage::decode(bytes.value()) {
                Ok(message) => entries.push(OutboxEntry { seq: seq.value(), broker: message.broker, size: bytes.value().len() }),
                Err(error) => {
                    self.counters.damaged_records.fetch_add(1, Ordering::Relaxed);
                    crate::warn!("store", "outbox message {} is unreadable and is left out: {error}", seq.value());
                }
            }
        }
        Ok(entries)
    }

    /// Makes everything written so far durable and closes the file; the
    /// store answers nothing after this.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        self.send(Write::Close { done });
        let _ = closed.await;
        self.db.write().unwrap().take();
    }

    fn database(&self) -> Result<Arc<Database>> {
        self.db.read().unwrap().clone().ok_or_else(stopped)
    }

    /// An invocation as stored, payload included.
    pub fn read(&self, seq: u64) -> Result<Option<Invocation>> {
        let read = self.database()?.begin_read().map_err(storage)?;
        let table = read.open_table(PENDING).map_err(storage)?;
        let bytes = table.get(seq).map_err(storage)?;
        bytes.map(|bytes| Invocation::decode(bytes.value()).map_err(|error| self.damaged(error))).transpose()
    }

    /// The invocation ended: it leaves the store.
    pub fn finish(&self, seq: u64, size: usize) {
        self.held.fetch_sub(size, Ordering::AcqRel);
        self.send(Write::Remove { seq });
    }

    /// A failed attempt that will be retried: its new attempt count and start time.
    pub fn retry(&self, seq: u64, invocation: &Invocation) {
        self.send(Write::Replace { seq, record: invocation.encode() });
    }

    /// The last attempt failed: the invocation becomes a dead letter.
    pub fn bury(&self, seq: u64, size: usize, dead: &DeadLetter) {
        let record = dead.encode();
        // The dead letter replaces the invocation in what the store holds.
        self.held.fetch_add(record.len(), Ordering::AcqRel);
        self.held.fetch_sub(size, Ordering::AcqRel);
        self.send(Write::Bury { seq, record });
    }

    /// Every dead letter, oldest first (at most `store.maxDeadLetterBytes` of them).
    pub fn dead_letters(&self) -> Result<Vec<(u64, DeadLetter)>> {
        let read = self.database()?.begin_read().map_err(storage)?;
        let table = read.open_table(DEAD).map_err(storage)?;
        let mut letters = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (seq, bytes) = entry.map_err(storage)?;
            match DeadLetter::decode(bytes.value()) {
                Ok(letter) => letters.push((seq.value(), letter)),
                Err(error) => crate::warn!("store", "dead letter {} is unreadable: {error}", seq.value()),
            }
        }
        Ok(letters)
    }

    /// Moves the dead letter `dead_seq` (as [`dead_letters`](Store::dead_letters)
    /// read it) back to pending, first attempt again with the same invocation
    /// id, durably; returns its new sequence number and record.
    pub async fn revive(&self, dead_seq: u64, letter: DeadLetter, now_ms: u64) -> Result<(u64, Invocation)> {
        let mut invocation = letter.invocation;
        invocation.attempt = 1;
        invocation.not_before_ms = now_ms;
        invocation.accepted_at_ms = now_ms;
        invocation.replays += 1;
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let (done, committed) = oneshot::channel();
        self.send(Write::Revive { dead_seq, seq, record: invocation.encode(), done });
        committed.await.unwrap_or_else(|_| Err(stopped()))?;
        Ok((seq, invocation))
    }

    /// Removes dead letters, durably; returns how many there were.
    pub async fn purge(&self, seqs: Vec<u64>) -> Result<usize> {
        let existing: Vec<u64> = {
            let dead = self.dead.lock().unwrap();
            seqs.into_iter().filter(|seq| dead.sizes.contains_key(seq)).collect()
        };
        let count = existing.len();
        let (done, committed) = oneshot::channel();
        self.send(Write::Purge { seqs: existing, done });
        committed.await.unwrap_or_else(|_| Err(stopped()))?;
        Ok(count)
    }

    fn send(&self, write: Write) {
        // The writer lives as long as the store: a send fails only while the process ends.
        let _ = self.writes.send(write);
    }

    fn damaged(&self, error: record::Damaged) -> Error {
        self.counters.damaged_records.fetch_add(1, Ordering::Relaxed);
        Error::new(ErrorCode::Internal, format!("{}: {error}", self.path.display()))
    }
}

fn damaged(path: &Path, error: &dyn std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::Config,
        format!("the store {} cannot be opened: {error}; move it aside to start with an empty one", path.display()),
    )
}

/// How the store's database is opened, on a file or another backend alike.
fn database_builder(limits: StoreLimits) -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_cache_size(limits.cache_bytes);
    builder
}

fn stopped() -> Error {
    Error::runtime_unavailable("the store stopped")
}

fn storage(error: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::Internal, format!("the store failed: {error}"))
}

/// What was pending, the dead letters' sizes, and the last sequence number used.
fn load(db: &Database, counters: &Counters) -> std::result::Result<(Vec<PendingEntry>, DeadIndex, u64), redb::Error> {
    let read = db.begin_read()?;
    let pending_table = read.open_table(PENDING)?;
    let mut last_seq = 0;
    let mut pending = Vec::new();
    for entry in pending_table.iter()? {
        let (seq, bytes) = entry?;
        let seq = seq.value();
        last_seq = last_seq.max(seq);
        match Invocation::decode(bytes.value()) {
            Ok(invocation) => pending.push(PendingEntry {
                seq,
                size: invocation.size(),
                function_id: invocation.function_id,
                not_before_ms: invocation.not_before_ms,
            }),
            Err(error) => {
                counters.damaged_records.fetch_add(1, Ordering::Relaxed);
                crate::warn!("store", "pending invocation {seq} is unreadable and is left out: {error}");
            }
        }
    }
    let mut dead = DeadIndex::default();
    for entry in read.open_table(DEAD)?.iter()? {
        let (seq, bytes) = entry?;
        last_seq = last_seq.max(seq.value());
        dead.insert(seq.value(), bytes.value().len());
    }
    if let Some((seq, _)) = read.open_table(OUTBOX)?.last()? {
        last_seq = last_seq.max(seq.value());
    }
    Ok((pending, dead, last_seq))
}

/// The thread that owns every write transaction.
struct Writer {
    db: Arc<Database>,
    limits: StoreLimits,
    held: Arc<AtomicUsize>,
    dead: Arc<std::sync::Mutex<DeadIndex>>,
    counters: Arc<Counters>,
    answers: tokio::sync::mpsc::UnboundedSender<Answers>,
}

impl Writer {
    fn run(self, incoming: mpsc::Receiver<Write>) {
        // Whether non-durable writes wait for a durable commit.
        let mut unflushed = false;
        // Removals that arrived alone: they wait for the next commit rather
        // than make one of their own (half the commits under Async load).
        // Nothing reads a finished invocation again, and one that comes back
        // after a crash runs once more, as for any non-durable write.
        let mut held_back: Vec<Write> = Vec::new();
        loop {
            let first = if unflushed || !held_back.is_empty() {
                match incoming.recv_timeout(FLUSH_AFTER) {
                    Ok(write) => write,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        unflushed = self.commit(std::mem::take(&mut held_back), true).is_err();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match incoming.recv() {
                    Ok(write) => write,
                    Err(_) => break,
                }
            };
            let mut group = std::mem::take(&mut held_back);
            let held_back_count = group.len();
            group.push(first);
            while group.len() - held_back_count < MAX_GROUP {
                match incoming.try_recv() {
                    Ok(write) => group.push(write),
                    Err(_) => break,
                }
            }
            if group.len() < MAX_HELD_BACK_REMOVALS && group.iter().all(|write| matches!(write, Write::Remove { .. })) {
                held_back = group;
                continue;
            }
            let close = group.iter().position(|write| matches!(write, Write::Close { .. })).map(|at| group.remove(at));
            let durable = unflushed
                || close.is_some()
                || group.iter().any(|write| {
                    matches!(write, Write::Insert { .. } | Write::Revive { .. } | Write::Purge { .. } | Write::Post { .. })
                });
            let outcome = self.commit(group, durable);
            unflushed = !durable || outcome.is_err();
            if let Some(Write::Close { done }) = close {
                // The file's lock goes with the last handle: this one goes before the answer.
                drop(self);
                let _ = done.send(outcome);
                return;
            }
        }
        // The store is closing: what rode along non-durably is made durable.
        if unflushed || !held_back.is_empty() {
            let _ = self.commit(held_back, true);
        }
    }

    /// Applies `group` in one transaction, commits, then answers whoever waits.
    fn commit(&self, group: Vec<Write>, durable: bool) -> Result<()> {
        let started = std::time::Instant::now();
        let outcome = self.apply(&group, durable);
        self.counters.commit_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        if outcome.is_ok() {
            self.counters.commits.fetch_add(1, Ordering::Relaxed);
        } else if let Err(error) = &outcome {
            crate::warn!("store", "{error}");
        }
        let waiters: Vec<Waiter> = group
            .into_iter()
            .filter_map(|write| match write {
                Write::Insert { done, .. }
                | Write::Revive { done, .. }
                | Write::Purge { done, .. }
                | Write::Post { done, .. } => Some(done),
                _ => None,
            })
            .collect();
        if !waiters.is_empty() {
            let _ = self.answers.send(Answers { waiters, outcome: outcome.clone() });
        }
        outcome
    }

    /// The dead letters' index is held from the first change to the
    /// commit, so that no one sees a change before it is committed. A
    /// failed commit leaves the index as changed, but then redb answers
    /// every later read and write with an error until the runtime restarts
    /// (and rebuilds the index from the file).
    fn apply(&self, group: &[Write], durable: bool) -> Result<()> {
        let touches_dead_letters =
            group.iter().any(|write| matches!(write, Write::Bury { .. } | Write::Revive { .. } | Write::Purge { .. }));
        if !touches_dead_letters {
            // Nothing here reads or changes the index, and readers of it need not wait for this commit.
            return self.try_apply(group, durable, &mut DeadIndex::default(), &mut HeldChange::default());
        }
        let mut index = self.dead.lock().unwrap();
        let mut change = HeldChange::default();
        self.try_apply(group, durable, &mut index, &mut change)?;
        change.settle(&self.held, &self.counters);
        Ok(())
    }

    fn try_apply(&self, group: &[Write], durable: bool, index: &mut DeadIndex, change: &mut HeldChange) -> Result<()> {
        let mut transaction = self.db.begin_write().map_err(storage)?;
        if !durable {
            transaction.set_durability(Durability::None).map_err(storage)?;
        }
        {
            let mut pending = transaction.open_table(PENDING).map_err(storage)?;
            let mut dead = transaction.open_table(DEAD).map_err(storage)?;
            let mut outbox = transaction.open_table(OUTBOX).map_err(storage)?;
            for write in group {
                match write {
                    Write::Insert { seq, record, .. } | Write::Replace { seq, record } => {
                        pending.insert(*seq, record.as_slice()).map_err(storage)?;
                    }
                    Write::Remove { seq } => {
                        pending.remove(*seq).map_err(storage)?;
                    }
                    Write::Bury { seq, record } => {
                        pending.remove(*seq).map_err(storage)?;
                        dead.insert(*seq, record.as_slice()).map_err(storage)?;
                        index.insert(*seq, record.len());
                        self.evict_oldest(&mut dead, index, change)?;
                    }
                    Write::Revive { dead_seq, seq, record, .. } => {
                        change.freed += index.remove(*dead_seq).unwrap_or(0);
                        dead.remove(*dead_seq).map_err(storage)?;
                        pending.insert(*seq, record.as_slice()).map_err(storage)?;
                        change.added += record.len();
                    }
                    Write::Close { .. } => {}
                    Write::Post { seq, record, .. } => {
                        outbox.insert(*seq, record.as_slice()).map_err(storage)?;
                    }
                    Write::Unpost { seq } => {
                        outbox.remove(*seq).map_err(storage)?;
                    }
                    Write::Purge { seqs, .. } => {
                        for seq in seqs {
                            dead.remove(*seq).map_err(storage)?;
                            change.freed += index.remove(*seq).unwrap_or(0);
                        }
                    }
                }
            }
        }
        transaction.commit().map_err(storage)
    }

    /// Drops the oldest dead letters past `store.maxDeadLetters` or
    /// `store.maxDeadLetterBytes`.
    fn evict_oldest(&self, dead: &mut redb::Table<u64, &[u8]>, index: &mut DeadIndex, change: &mut HeldChange) -> Result<()> {
        while index.sizes.len() > self.limits.max_dead_letters || index.bytes > self.limits.max_dead_letter_bytes {
            let Some(seq) = index.sizes.keys().next().copied() else {
                break;
            };
            change.freed += index.remove(seq).unwrap_or(0);
            dead.remove(seq).map_err(storage)?;
            change.evicted.push(seq);
        }
        Ok(())
    }
}

/// What one transaction changes in what the store holds; it counts only
/// once committed.
#[derive(Default)]
struct HeldChange {
    added: usize,
    freed: usize,
    evicted: Vec<u64>,
}

impl HeldChange {
    fn settle(self, held: &AtomicUsize, counters: &Counters) {
        held.fetch_add(self.added, Ordering::AcqRel);
        held.fetch_sub(self.freed, Ordering::AcqRel);
        for seq in self.evicted {
            counters.dead_letters_evicted.fetch_add(1, Ordering::Relaxed);
            crate::warn!(
                "store",
                "dead letter {seq} was dropped: the dead letters are full (store.maxDeadLetters, store.maxDeadLetterBytes)"
            );
        }
    }
}
