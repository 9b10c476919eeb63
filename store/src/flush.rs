//! Flush modes and group commit: how appends become durable and how callers learn it.
//!
//! - [`FlushMode::Sync`] (the default): an append is reported done only once a sync covers it.
//!   Whoever drives the log calls [`GroupCommit::flush_once`] in a loop; each call takes one
//!   [`crate::FlushJob`] for everything appended so far, runs its syncs *without* holding the
//!   log's lock (appends continue meanwhile), and then releases every waiter the sync covered.
//!   One sync serves every append that arrived while the previous one ran: group commit.
//! - [`FlushMode::Async`]: an append is reported done once written; the driver calls
//!   `flush_once` every `interval_ms` (500 by default, RocketMQ's `flushIntervalCommitLog`).
//!   A crash of the machine (not just the process) can lose up to one interval of data.
//!
//! The driver is the caller's: a tokio task in the Raft layer (so it runs under madsim too),
//! a thread in the benchmarks. This module only keeps the waiters and runs one cycle.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::commitlog::{CommitLog, LogCut};
use crate::error::StoreResult;
use crate::io::Storage;
use crate::types::RaftIndex;

/// When an append counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushMode {
    /// Durable before done (group commit).
    #[default]
    Sync,
    /// Done when written; synced every `interval_ms`.
    Async { interval_ms: u64 },
}

impl FlushMode {
    /// RocketMQ's default async flush interval.
    pub const ASYNC_INTERVAL_MS_DEFAULT: u64 = 500;
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waiters for durability, keyed by the last raft index each one needs.
pub struct GroupCommit<W> {
    mode: FlushMode,
    waiters: Mutex<BTreeMap<RaftIndex, Vec<W>>>,
}

impl<W> Default for GroupCommit<W> {
    fn default() -> Self {
        GroupCommit::new(FlushMode::Sync)
    }
}

impl<W> GroupCommit<W> {
    pub fn new(mode: FlushMode) -> Self {
        GroupCommit { mode, waiters: Mutex::new(BTreeMap::new()) }
    }

    pub fn mode(&self) -> FlushMode {
        self.mode
    }

    /// Whether the driver should run [`GroupCommit::flush_once`] now, `ms_since_flush` after
    /// the last one: in sync mode as soon as anyone waits, in async mode every interval.
    pub fn flush_due(&self, ms_since_flush: u64) -> bool {
        match self.mode {
            FlushMode::Sync => self.pending() > 0,
            FlushMode::Async { interval_ms } => ms_since_flush >= interval_ms,
        }
    }

    /// Registers interest in entries up to `index` (inclusive). The waiter comes straight back
    /// when they count as done already: durable (`flushed`) in sync mode, written in async
    /// mode. Otherwise a later [`GroupCommit::release`] hands it back.
    pub fn wait(&self, index: RaftIndex, flushed: LogCut, waiter: W) -> Option<W> {
        if index < flushed.next_index || matches!(self.mode, FlushMode::Async { .. }) {
            return Some(waiter);
        }
        lock(&self.waiters).entry(index).or_default().push(waiter);
        None
    }

    /// How many waiters are pending.
    pub fn pending(&self) -> usize {
        lock(&self.waiters).values().map(Vec::len).sum()
    }

    /// The waiters covered by `flushed`, oldest first.
    pub fn release(&self, flushed: LogCut) -> Vec<W> {
        let mut waiters = lock(&self.waiters);
        let rest = waiters.split_off(&flushed.next_index);
        let done = std::mem::replace(&mut *waiters, rest);
        done.into_values().flatten().collect()
    }

    /// One flush cycle ([`sync_log`]), returning the durable point with the waiters it
    /// releases. An error means the disk refused the sync: nothing after the previous durable
    /// point may be reported durable, and the process should stop (STYLE.md rule 9).
    pub fn flush_once<S: Storage>(
        &self,
        log: &Mutex<CommitLog<S>>,
    ) -> StoreResult<(LogCut, Vec<W>)> {
        let flushed = sync_log(log)?;
        Ok((flushed, self.release(flushed)))
    }
}

/// Makes what was appended to `log` durable: takes a job under the lock, syncs outside it,
/// records it, and returns the durable point. With nothing new to sync (or another caller's
/// job still running) it returns the durable point as it stands, which may be short of the
/// log's end: a caller that needs a given entry durable checks and asks again. A log whose
/// sync failed answers that failure, now and every time after.
pub fn sync_log<S: Storage>(log: &Mutex<CommitLog<S>>) -> StoreResult<LogCut> {
    let job = lock(log).flush_job();
    match job {
        Some(job) => {
            if let Err(e) = job.run() {
                lock(log).sync_failed(&e);
                return Err(e);
            }
            lock(log).complete_flush(job)
        }
        None => {
            let log = lock(log);
            log.check_syncs()?;
            Ok(log.flushed())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commitlog::CommitLogConfig;
    use crate::entry::{EntryKind, LogEntry};
    use crate::io::sim::SimStorage;

    fn entry(i: u64) -> LogEntry {
        LogEntry {
            index: RaftIndex(i),
            term: 1,
            leader: 1,
            kind: EntryKind::Blank,
            payload: Default::default(),
        }
    }

    fn small_log(storage: SimStorage) -> Mutex<CommitLog<SimStorage>> {
        let config = CommitLogConfig { segment_size_bytes: 4096, checkpoint_every_entries: 10 };
        Mutex::new(CommitLog::open(storage, config).unwrap().0)
    }

    #[test]
    fn one_sync_releases_every_waiter_it_covers() {
        let log = small_log(SimStorage::new());
        let gc = GroupCommit::default();
        for i in 0..5 {
            lock(&log).append(&[entry(i)]).unwrap();
            let flushed = lock(&log).flushed();
            assert!(gc.wait(RaftIndex(i), flushed, i).is_none());
        }
        assert_eq!(gc.pending(), 5);
        let (flushed, done) = gc.flush_once(&log).unwrap();
        assert_eq!(flushed.next_index, RaftIndex(5));
        assert_eq!(done, vec![0, 1, 2, 3, 4]);
        // Already durable: comes straight back.
        assert_eq!(gc.wait(RaftIndex(3), flushed, 9), Some(9));
        lock(&log).append(&[entry(5)]).unwrap();
        assert!(gc.wait(RaftIndex(5), flushed, 5).is_none());
        assert!(gc.release(flushed).is_empty(), "not covered yet");
    }

    #[test]
    fn async_mode_answers_at_once_and_flushes_on_its_interval() {
        let gc = GroupCommit::new(FlushMode::Async { interval_ms: 500 });
        let flushed = LogCut::default();
        assert_eq!(gc.wait(RaftIndex(7), flushed, "w"), Some("w"), "done when written");
        assert!(!gc.flush_due(499));
        assert!(gc.flush_due(500));
        let sync = GroupCommit::new(FlushMode::Sync);
        assert!(!sync.flush_due(10_000), "nothing waits");
        assert!(sync.wait(RaftIndex(0), flushed, ()).is_none());
        assert!(sync.flush_due(0));
    }

    #[test]
    fn a_failed_sync_releases_nothing() {
        let storage = SimStorage::new();
        let log = small_log(storage.clone());
        let gc = GroupCommit::default();
        lock(&log).append(&[entry(0)]).unwrap();
        gc.wait(RaftIndex(0), lock(&log).flushed(), ());
        storage.set_fail_syncs(true);
        assert!(gc.flush_once(&log).is_err());
        assert_eq!(gc.pending(), 1, "the waiter is still waiting");
        assert_eq!(lock(&log).flushed().next_index, RaftIndex(0));
    }

    /// After a failed fsync the kernel may drop the unsynced pages and mark them clean, so the
    /// next sync succeeds without them: the failed range must never be reported durable. Once,
    /// async mode logged the error and the next flush marked everything up to the end durable.
    #[test]
    fn a_failed_sync_poisons_the_log_for_good() {
        let storage = SimStorage::new();
        let log = small_log(storage.clone());
        let gc = GroupCommit::<()>::new(FlushMode::Async { interval_ms: 500 });
        lock(&log).append(&[entry(0)]).unwrap();
        gc.flush_once(&log).unwrap();
        lock(&log).append(&[entry(1)]).unwrap();
        storage.set_fail_syncs(true);
        assert!(gc.flush_once(&log).is_err());
        storage.set_fail_syncs(false);
        // The disk takes syncs again: still nothing after index 0 counts as durable.
        let err = gc.flush_once(&log).unwrap_err();
        assert!(matches!(err, crate::StoreError::SyncFailed { .. }), "{err}");
        assert_eq!(lock(&log).flushed().next_index, RaftIndex(1));
        assert!(lock(&log).sync_failure().is_some());
        let append = lock(&log).append(&[entry(2)]);
        assert!(matches!(append, Err(crate::StoreError::SyncFailed { .. })), "{append:?}");
        assert!(lock(&log).admit_new_writes(0).is_err(), "sends are refused at the door");
        assert!(lock(&log).flush().is_err());
    }
}
