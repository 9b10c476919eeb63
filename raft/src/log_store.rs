//! openraft's log storage (v2) on the store's CommitLog: the CommitLog *is* the Raft log.
//!
//! - `append` writes the entries and hands openraft's callback to the group commit: in sync
//!   mode it is called once a sync covers the entries (a flusher task runs the syncs off the
//!   async workers, one sync per batch of waiting appends); in async mode at once, with the
//!   flusher syncing every interval.
//! - `purge` is logical only (the purged id is saved durably and reads start after it). Whole
//!   segments are deleted by the replica's retention (`node::delete_purged`), not here: a
//!   follower that installs a snapshot is purged up to it by openraft, and must keep the
//!   history before it that the snapshot brought.
//! - the vote, the committed id and the purged id live in the metadata store.
//! - the entries appended last stay in memory too ([`RecentEntries`], a bounded window):
//!   replication to followers that keep up and apply read them from there, as the `Bytes`
//!   they arrived as, instead of reading, checksumming and copying them back from the log.
//!
//! The flusher task holds only a weak reference: it ends when the store is dropped.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftLogId, StorageError, StorageIOError, Vote,
};
use rocketraft_store::io::Storage;
use rocketraft_store::{CommitLog, FlushMode, GroupCommit, RaftIndex};

use crate::budget::ReplicationBudget;
use crate::error::AppliedEntriesLost;
use crate::local_ack::{LocalAck, LocalAppends, PendingAcks};
use crate::meta::{MetaOp, MetaStore};
use crate::types::{decode, encode, from_log_entry, to_log_entry, NodeId, Request, TypeConfig};

pub(crate) const KEY_VOTE: &[u8] = b"raft/vote";
pub(crate) const KEY_COMMITTED: &[u8] = b"raft/committed";
pub(crate) const KEY_PURGED: &[u8] = b"raft/purged";

/// How long the flusher sleeps when nothing wakes it (it then checks whether to exit).
const FLUSHER_IDLE_MS: u64 = 50;
/// The window of recent entries holds at most this many payload bytes...
pub const RECENT_ENTRIES_BYTES_MAX: usize = 16 << 20;
/// ...and at most this many entries.
pub const RECENT_ENTRIES_MAX: usize = 4096;
/// What an entry without message bytes is counted as in the window.
const RECENT_ENTRY_OVERHEAD_BYTES: usize = 64;

/// The last entries appended, in index order without gaps, bounded by
/// [`RECENT_ENTRIES_BYTES_MAX`] and [`RECENT_ENTRIES_MAX`]. Kept in step with the log:
/// truncation and purging drop entries here first, so the window never holds an entry the log
/// no longer has. A message entry's payload is the `Bytes` it was appended with (the log's
/// copy has each record's PHYSICALOFFSET filled in; every reader recomputes positions from
/// the entry's place in the log, so the two are interchangeable).
#[derive(Default)]
pub(crate) struct RecentEntries {
    entries: std::collections::VecDeque<Entry<TypeConfig>>,
    bytes: usize,
}

fn window_bytes(e: &Entry<TypeConfig>) -> usize {
    match &e.payload {
        EntryPayload::Normal(Request::Messages(records)) => records.len(),
        _ => RECENT_ENTRY_OVERHEAD_BYTES,
    }
}

impl RecentEntries {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.log_id.index)
    }

    /// Adds entries just appended to the log.
    fn push(&mut self, appended: impl IntoIterator<Item = Entry<TypeConfig>>) {
        for e in appended {
            let next = self.entries.back().map(|l| l.log_id.index + 1);
            if next.is_some_and(|n| n != e.log_id.index) {
                self.clear();
            }
            self.bytes += window_bytes(&e);
            self.entries.push_back(e);
        }
        while self.bytes > RECENT_ENTRIES_BYTES_MAX || self.entries.len() > RECENT_ENTRIES_MAX {
            let Some(old) = self.entries.pop_front() else { break };
            self.bytes -= window_bytes(&old);
        }
    }

    /// Drops entries at `from` and after.
    fn truncate_from(&mut self, from: u64) {
        while self.entries.back().is_some_and(|e| e.log_id.index >= from) {
            let e = self.entries.pop_back().expect("checked non-empty");
            self.bytes -= window_bytes(&e);
        }
    }

    /// Drops entries up to and including `through`.
    fn purge_through(&mut self, through: u64) {
        while self.entries.front().is_some_and(|e| e.log_id.index <= through) {
            let e = self.entries.pop_front().expect("checked non-empty");
            self.bytes -= window_bytes(&e);
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// The entries from `from` that fit `budget` bytes (at least one, at most up to `to`), if
    /// the window holds all of `from..to`: a follower that keeps up is sized and served from
    /// memory, without the log's lock. Sizes are the payloads' (an entry's header and framing
    /// add some tens of bytes: far inside the frame's margin over the largest budget).
    fn within(&self, from: u64, to: u64, budget: u64) -> Option<Vec<Entry<TypeConfig>>> {
        let first = self.first_index()?;
        if from >= to || from < first || to > first + self.entries.len() as u64 {
            return None;
        }
        let to = crate::budget::entries_within(from, to, budget, |i| {
            self.entries.get((i - first) as usize).map(|e| window_bytes(e) as u64)
        });
        self.get(from, to)
    }

    /// The entries `from..to` if the window holds all of them.
    fn get(&self, from: u64, to: u64) -> Option<Vec<Entry<TypeConfig>>> {
        let first = self.first_index()?;
        if from < first || to > first + self.entries.len() as u64 {
            return None;
        }
        Some(self.entries.range((from - first) as usize..(to - first) as usize).cloned().collect())
    }
}

/// A requested range as `from..to`, `to` `None` when unbounded.
fn bounds(range: &impl RangeBounds<u64>) -> (u64, Option<u64>) {
    let from = match range.start_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let to = match range.end_bound() {
        Bound::Included(i) => Some(i.saturating_add(1)),
        Bound::Excluded(i) => Some(*i),
        Bound::Unbounded => None,
    };
    (from, to)
}

/// The entries in `range`: from the window of recent entries when it holds the whole
/// (bounded) range, else from the log.
fn read_entries<S: Storage, M: MetaStore>(
    log: &Mutex<CommitLog<S>>,
    recent: &Mutex<RecentEntries>,
    meta: &M,
    range: impl RangeBounds<u64>,
) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
    let (from, to) = bounds(&range);
    if let Some(to) = to.filter(|to| from < *to) {
        if let Some(entries) = lock(recent).get(from, to) {
            return Ok(entries);
        }
    }
    entries_in(log, meta, from, to)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What an append waits for its flush with: openraft's callback, and the proposals in it that
/// are acknowledged once the leader's own log has them (`replication = "leader"`).
struct Callback {
    flushed: LogFlushed<TypeConfig>,
    acks: PendingAcks,
}

impl Callback {
    fn completed(self) {
        self.flushed.log_io_completed(Ok(()));
        self.acks.send();
    }

    /// The sync failed: nothing in it is acknowledged (the proposers' waits end unanswered).
    fn failed(self, e: std::io::Error) {
        self.flushed.log_io_completed(Err(e));
    }
}

struct Flusher<S: Storage> {
    log: Arc<Mutex<CommitLog<S>>>,
    /// The log's volume, asked for its extra sync latency (a simulated slow disk) per flush.
    storage: S,
    group_commit: Arc<GroupCommit<Callback>>,
    stats: Arc<crate::RaftStats>,
}

/// The Raft log of one replica.
pub struct LogStore<S: Storage, M: MetaStore> {
    log: Arc<Mutex<CommitLog<S>>>,
    recent: Arc<Mutex<RecentEntries>>,
    meta: Arc<M>,
    flusher: Arc<Flusher<S>>,
    wake: Arc<tokio::sync::Notify>,
    mode: FlushMode,
    local_appends: Arc<LocalAppends>,
    budget: Arc<ReplicationBudget>,
    #[cfg(madsim)]
    sim_bug_ack_before_fsync: bool,
    #[cfg(madsim)]
    sim_bug_vote_not_synced: bool,
}

/// Reads entries concurrently with appends.
pub struct LogReader<S: Storage, M: MetaStore> {
    log: Arc<Mutex<CommitLog<S>>>,
    recent: Arc<Mutex<RecentEntries>>,
    meta: Arc<M>,
    /// Cuts what replication reads for one AppendEntries (see [`crate::budget`]).
    budget: Arc<ReplicationBudget>,
}

impl<S: Storage, M: MetaStore> Clone for LogReader<S, M> {
    fn clone(&self) -> Self {
        LogReader {
            log: self.log.clone(),
            recent: self.recent.clone(),
            meta: self.meta.clone(),
            budget: self.budget.clone(),
        }
    }
}

fn io_read(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_logs(&e).into()
}

fn io_write(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_logs(&e).into()
}

pub(crate) fn read_purged<M: MetaStore>(
    meta: &M,
) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
    match meta.get(KEY_PURGED).map_err(io_read)? {
        Some(raw) => Ok(Some(decode(&raw).map_err(io_read)?)),
        None => Ok(None),
    }
}

/// The entries `from..to` (`to` `None`: to the end) that the log holds after the purged id.
fn entries_in<S: Storage, M: MetaStore>(
    log: &Mutex<CommitLog<S>>,
    meta: &M,
    from: u64,
    to: Option<u64>,
) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
    let purged = read_purged(meta)?;
    let log = lock(log);
    let first = log.start().next_index.0.max(purged.map_or(0, |p| p.index + 1));
    let end = log.end().next_index.0;
    let from = from.max(first);
    let to = to.unwrap_or(end).min(end);
    if from >= to {
        return Ok(Vec::new());
    }
    log.entries(RaftIndex(from)..RaftIndex(to))
        .map_err(io_read)?
        .into_iter()
        .map(|e| from_log_entry(e).map_err(io_read))
        .collect()
}

impl<S: Storage, M: MetaStore> RaftLogReader<TypeConfig> for LogReader<S, M> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        read_entries(&self.log, &self.recent, &*self.meta, range)
    }

    /// What replication sends a follower in one AppendEntries: the entries from `start` that
    /// fit the byte budget, at least one; none if `start` was purged. openraft can ask for a
    /// range it decided on before a purge (a follower back from a restart, its progress older
    /// than the purge): later entries instead would reach the follower as if they followed
    /// `start - 1` (openraft's follower asserts this in debug builds, and in release appends
    /// them after a gap). An empty answer counts as a heartbeat; the follower's reply then
    /// shows openraft it needs a snapshot.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let purged = read_purged(&*self.meta)?.map_or(0, |p| p.index + 1);
        if start < purged.max(lock(&self.log).start().next_index.0) {
            tracing::info!(start, purged, "replication asked for purged entries: none sent");
            return Ok(Vec::new());
        }
        if let Some(entries) = lock(&self.recent).within(start, end, self.budget.bytes()) {
            return Ok(entries);
        }
        let end = {
            let log = lock(&self.log);
            crate::budget::entries_within(start, end, self.budget.bytes(), |i| {
                log.entry_meta(RaftIndex(i)).ok().map(|m| u64::from(m.size))
            })
        };
        read_entries(&self.log, &self.recent, &*self.meta, start..end)
    }
}

impl<S: Storage, M: MetaStore> LogStore<S, M> {
    /// The purged and last log ids (what `get_log_state` answers).
    fn log_state(&self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id = read_purged(&*self.meta)?;
        let last = lock(&self.log).last();
        let last_log_id = match last {
            Some(m) if last_purged_log_id.is_none_or(|p| m.index.0 > p.index) => {
                Some(crate::types::log_id(m.term, m.leader, m.index.0))
            }
            _ => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    /// Wraps a recovered CommitLog. Must be called inside the runtime (and, in the
    /// simulation, inside the node) that will run Raft: it spawns the flusher task there.
    pub fn new(log: Arc<Mutex<CommitLog<S>>>, meta: Arc<M>, mode: FlushMode) -> Self
    where
        S: Clone,
    {
        Self::with_stats(log, meta, mode, Arc::default())
    }

    /// As [`LogStore::new`], counting its syncs and commits into `stats`.
    pub fn with_stats(
        log: Arc<Mutex<CommitLog<S>>>,
        meta: Arc<M>,
        mode: FlushMode,
        stats: Arc<crate::RaftStats>,
    ) -> Self
    where
        S: Clone,
    {
        let storage = lock(&log).storage().clone();
        let group_commit = Arc::new(GroupCommit::new(mode));
        let flusher = Arc::new(Flusher { log: log.clone(), storage, group_commit, stats });
        let wake = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(run_flusher(Arc::downgrade(&flusher), wake.clone(), mode));
        LogStore {
            log,
            recent: Arc::default(),
            meta,
            flusher,
            wake,
            mode,
            local_appends: Arc::default(),
            budget: Arc::default(),
            #[cfg(madsim)]
            sim_bug_ack_before_fsync: false,
            #[cfg(madsim)]
            sim_bug_vote_not_synced: false,
        }
    }

    /// Simulation builds only: the vote is written deferred, as the committed id is, so a
    /// power loss within a second of an election takes it back (`SimBugs::vote_not_synced`).
    #[cfg(madsim)]
    pub fn sim_bug_vote_not_synced(&mut self) {
        self.sim_bug_vote_not_synced = true;
    }

    /// Simulation builds only: from now on an append is reported durable (openraft's flush
    /// callback) as soon as it is written, while the flusher syncs it in the background, as a
    /// log store that answered before its fsync would. Sync flush then acknowledges sends that
    /// a power loss can take away. A bug put in on purpose, to show the simulation's checkers
    /// catch it.
    #[cfg(madsim)]
    pub fn sim_bug_ack_before_fsync(&mut self) {
        self.sim_bug_ack_before_fsync = true;
    }

    /// The byte budget of one AppendEntries, which the network adjusts to what the links
    /// manage (see [`crate::budget`]).
    pub fn replication_budget(&self) -> Arc<ReplicationBudget> {
        self.budget.clone()
    }

    /// Where this replica's proposer registers proposals to be acknowledged once this log has
    /// them (see [`crate::local_ack`]).
    pub fn local_appends(&self) -> Arc<LocalAppends> {
        self.local_appends.clone()
    }

    /// The CommitLog, shared with the state machine.
    pub fn commit_log(&self) -> Arc<Mutex<CommitLog<S>>> {
        self.log.clone()
    }
}

/// Runs flush cycles until the store is gone: on demand in sync mode, every interval in async
/// mode. A failed sync fails every waiting append (openraft then stops this node: nothing may
/// be acknowledged after the disk said no).
async fn run_flusher<S: Storage>(
    flusher: Weak<Flusher<S>>,
    wake: Arc<tokio::sync::Notify>,
    mode: FlushMode,
) {
    let idle = match mode {
        FlushMode::Sync => Duration::from_millis(FLUSHER_IDLE_MS),
        FlushMode::Async { interval_ms } => Duration::from_millis(interval_ms),
    };
    let mut ms_since_flush = 0u64;
    loop {
        let slept = tokio::time::timeout(idle, wake.notified()).await.is_err();
        if slept {
            ms_since_flush += idle.as_millis() as u64;
        }
        let Some(f) = flusher.upgrade() else { return };
        if !f.group_commit.flush_due(ms_since_flush) {
            continue;
        }
        ms_since_flush = 0;
        let (log, gc, stats) = (f.log.clone(), f.group_commit.clone(), f.stats.clone());
        // A slow disk (simulated; zero on a real one) delays every sync by its latency.
        let latency = f.storage.sync_latency();
        drop(f);
        #[allow(clippy::disallowed_methods)] // the runtime's clock, virtual under madsim
        let started = tokio::time::Instant::now();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let result = crate::runtime::run_blocking(move || {
            let before = lock(&log).io_counts().flush_jobs;
            let r = gc.flush_once(&log);
            let synced = lock(&log).io_counts().flush_jobs != before;
            (r, gc, synced)
        })
        .await;
        let (result, synced) = ((result.0, result.1), result.2);
        if synced {
            stats.sync_latency.observe_duration(started.elapsed());
        }
        match result {
            (Ok((_, done)), _) => {
                for cb in done {
                    cb.completed();
                }
            }
            (Err(e), gc) => {
                tracing::error!(error = %e, "CommitLog sync failed: failing every waiting append");
                let all = gc.release(rocketraft_store::LogCut {
                    next_index: RaftIndex(u64::MAX),
                    ..Default::default()
                });
                for cb in all {
                    cb.failed(std::io::Error::other(e.to_string()));
                }
            }
        }
    }
}

impl<S: Storage, M: MetaStore> RaftLogReader<TypeConfig> for LogStore<S, M> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        read_entries(&self.log, &self.recent, &*self.meta, range)
    }
}

impl<S: Storage, M: MetaStore> RaftLogStorage<TypeConfig> for LogStore<S, M> {
    type LogReader = LogReader<S, M>;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.log_state()
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            log: self.log.clone(),
            recent: self.recent.clone(),
            meta: self.meta.clone(),
            budget: self.budget.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let raw = encode(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        #[cfg(madsim)]
        if self.sim_bug_vote_not_synced {
            return self
                .meta
                .put_deferred(KEY_VOTE, raw)
                .map_err(|e| StorageIOError::write_vote(&e).into());
        }
        self.meta
            .write(vec![MetaOp::Put(KEY_VOTE.to_vec(), raw)])
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        match self.meta.get(KEY_VOTE).map_err(|e| StorageIOError::read_vote(&e))? {
            Some(raw) => Ok(Some(decode(&raw).map_err(|e| StorageIOError::read_vote(&e))?)),
            None => Ok(None),
        }
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Deferred (written by the once-a-second sync): a committed id lost in a crash only
        // means openraft re-applies less at start and learns the rest from the leader (the
        // applied id is what it resumes from).
        let raw = encode(&committed).map_err(io_write)?;
        self.flusher.stats.committed.set(committed.map_or(0, |c| c.index as i64));
        self.meta.put_deferred(KEY_COMMITTED, raw).map_err(io_write)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        let committed: Option<LogId<NodeId>> =
            match self.meta.get(KEY_COMMITTED).map_err(io_read)? {
                Some(raw) => decode(&raw).map_err(io_read)?,
                None => None,
            };
        // The committed id is deferred and the CommitLog may be synced lazily too (async
        // flush): after a power loss either can be ahead of the other. What the log still holds
        // up to the committed index is a prefix of the committed entries, so the last of them
        // is committed; openraft re-applies up to it and learns the rest from the leader.
        let Some(committed) = committed else { return Ok(None) };
        if matches!(self.mode, FlushMode::Async { .. }) {
            // Async flush acknowledges before the sync, so a power loss of the whole group can
            // lose committed entries and the next leader writes others at those indexes: a
            // committed id saved before it would then name entries the group no longer has
            // (openraft asserts it never does). Start from the applied id instead and learn
            // the commit from the leader.
            return Ok(None);
        }
        let last = self.log_state()?.last_log_id;
        Ok(match last {
            Some(last) if last.index < committed.index => {
                tracing::info!(
                    committed = committed.index,
                    log_end = last.index,
                    "the saved committed index is past the log's end; starting from the log's end"
                );
                Some(last)
            }
            _ => Some(committed),
        })
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = Vec::new();
        let mut waiting = Vec::new();
        let mut appended = Vec::new();
        for e in entries {
            if let EntryPayload::Normal(Request::Messages(payload)) = &e.payload {
                if let Some(tx) = self.local_appends.take(payload) {
                    waiting.push((tx, e.log_id.index));
                }
            }
            batch.push(
                to_log_entry(&e)
                    .map_err(|err| StorageIOError::write_log_entry(*e.get_log_id(), &err))?,
            );
            appended.push(e);
        }
        let mut acks = PendingAcks::default();
        let (last, flushed) = {
            let mut log = lock(&self.log);
            log.append(&batch).map_err(io_write)?;
            for (tx, index) in waiting {
                let entry_position = log.entry_meta(RaftIndex(index)).map_err(io_write)?.position.0;
                acks.push(tx, LocalAck { index, entry_position });
            }
            (log.last().map(|m| m.index), log.flushed())
        };
        lock(&self.recent).push(appended);
        let callback = Callback { flushed: callback, acks };
        #[cfg(madsim)]
        if self.sim_bug_ack_before_fsync {
            callback.completed();
            // The sync follows (the flusher has no waiter to run for): what is written now,
            // durable once a slow disk's latency has passed.
            let log = self.log.clone();
            let latency = self.flusher.storage.sync_latency();
            let job = lock(&log).flush_job();
            tokio::spawn(async move {
                let Some(job) = job else { return };
                tokio::time::sleep(latency).await;
                let _ = crate::runtime::run_blocking(move || {
                    job.run()?;
                    lock(&log).complete_flush(job).map(|_| ())
                })
                .await;
            });
            return Ok(());
        }
        let Some(last) = last else {
            callback.completed();
            return Ok(());
        };
        match self.flusher.group_commit.wait(last, flushed, callback) {
            Some(done) => done.completed(),
            None => self.wake.notify_one(),
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Raft never replaces a committed entry, and applied entries are committed, unless the
        // group lost them (async flush; see `AppliedEntriesLost`).
        if let Some(applied) = crate::state_machine::read_applied(&*self.meta)? {
            if applied.index >= log_id.index {
                let lost = AppliedEntriesLost { since: log_id.index, applied: applied.index };
                tracing::error!(error = %lost, "the group lost entries this replica applied");
                return Err(io_write(lost));
            }
        }
        let keep = log_id.index.checked_sub(1).map(RaftIndex);
        let mut recent = lock(&self.recent);
        recent.truncate_from(log_id.index);
        let result = lock(&self.log).truncate_after(keep).map_err(io_write);
        if result.is_err() {
            // The log may have kept entries the window dropped: start the window afresh.
            recent.clear();
        }
        result
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Durably: this also makes the deferred applied id durable first (it is written
        // before these ops), so a restart never finds the applied id behind the purged one.
        let raw = encode(&log_id).map_err(io_write)?;
        self.meta.write(vec![MetaOp::Put(KEY_PURGED.to_vec(), raw)]).map_err(io_write)?;
        lock(&self.recent).purge_through(log_id.index);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::types::log_id;

    fn messages(index: u64, bytes: usize) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(1, 0, index),
            payload: EntryPayload::Normal(Request::Messages(Bytes::from(vec![7u8; bytes]))),
        }
    }

    fn blank(index: u64) -> Entry<TypeConfig> {
        Entry { log_id: log_id(1, 0, index), payload: EntryPayload::Blank }
    }

    fn indexes(got: Option<Vec<Entry<TypeConfig>>>) -> Option<Vec<u64>> {
        got.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn the_window_answers_only_ranges_it_holds_whole() {
        let mut w = RecentEntries::default();
        w.push((3..8).map(blank));
        assert_eq!(indexes(w.get(3, 8)), Some(vec![3, 4, 5, 6, 7]));
        assert_eq!(indexes(w.get(5, 6)), Some(vec![5]));
        assert_eq!(indexes(w.get(2, 5)), None, "starts before the window");
        assert_eq!(indexes(w.get(6, 9)), None, "ends past the window");
        w.truncate_from(6);
        assert_eq!(indexes(w.get(3, 6)), Some(vec![3, 4, 5]));
        assert_eq!(indexes(w.get(3, 7)), None, "truncated entries are gone");
        w.purge_through(3);
        assert_eq!(indexes(w.get(3, 5)), None, "purged entries are gone");
        assert_eq!(indexes(w.get(4, 6)), Some(vec![4, 5]));
        w.push([blank(9)]);
        assert_eq!(indexes(w.get(9, 10)), Some(vec![9]), "a gap starts the window afresh");
        assert_eq!(indexes(w.get(4, 5)), None);
    }

    #[test]
    fn the_window_sizes_a_request_by_its_payloads() {
        let mut w = RecentEntries::default();
        w.push((1..6).map(|i| messages(i, 1_000)));
        assert_eq!(indexes(w.within(1, 6, 2_500)), Some(vec![1, 2]), "what fits the budget");
        assert_eq!(indexes(w.within(2, 6, 10)), Some(vec![2]), "always one");
        assert_eq!(indexes(w.within(1, 6, 1 << 20)), Some(vec![1, 2, 3, 4, 5]));
        assert_eq!(indexes(w.within(1, 7, 1 << 20)), None, "ends past the window: the log's");
        assert_eq!(indexes(w.within(0, 3, 1 << 20)), None, "starts before the window");
    }

    #[test]
    fn the_window_is_bounded_by_bytes_and_by_entries() {
        let mut w = RecentEntries::default();
        let each = RECENT_ENTRIES_BYTES_MAX / 4;
        w.push((0..6).map(|i| messages(i, each)));
        assert_eq!(w.first_index(), Some(2), "the oldest entries leave first");
        assert!(w.bytes <= RECENT_ENTRIES_BYTES_MAX);
        let mut w = RecentEntries::default();
        w.push((0..RECENT_ENTRIES_MAX as u64 + 10).map(blank));
        assert_eq!(w.entries.len(), RECENT_ENTRIES_MAX);
        assert_eq!(w.first_index(), Some(10));
        w.truncate_from(0);
        assert_eq!((w.entries.len(), w.bytes), (0, 0));
    }
}
