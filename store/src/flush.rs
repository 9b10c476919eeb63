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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    /// Durable before done (group commit).
    Sync,
    /// Done when written; synced every `interval_ms`.
    Async { interval_ms: u64 },
}

impl Default for FlushMode {
    fn default() -> Self {
        FlushMode::Sync
    }
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
    waiters: Mutex<BTreeMap<RaftIndex, Vec<W>>>,
}

impl<W> Default for GroupCommit<W> {
    fn default() -> Self {
        GroupCommit { waiters: Mutex::new(BTreeMap::new()) }
    }
}

impl<W> GroupCommit<W> {
    /// Waits for entries up to `index` (inclusive) to be durable. If they already are
    /// (`flushed`), the waiter comes straight back.
    pub fn wait(&self, index: RaftIndex, flushed: LogCut, waiter: W) -> Option<W> {
        if index < flushed.next_index {
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

    /// One flush cycle: take a job under the lock, sync outside it, record it, and return the
    /// durable point with the waiters it releases. An error means the disk refused the sync:
    /// nothing after the previous durable point may be reported durable, and the process
    /// should stop (STYLE.md rule 9).
    pub fn flush_once<S: Storage>(
        &self,
        log: &Mutex<CommitLog<S>>,
    ) -> StoreResult<(LogCut, Vec<W>)> {
        let job = lock(log).flush_job();
        let flushed = match job {
            Some(job) => {
                job.run()?;
                lock(log).complete_flush(job)?
            }
            None => lock(log).flushed(),
        };
        Ok((flushed, self.release(flushed)))
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

    #[test]
    fn one_sync_releases_every_waiter_it_covers() {
        let (log, _) = CommitLog::open(
            SimStorage::new(),
            CommitLogConfig {
                segment_size_bytes: 4096,
                checkpoint_every_entries: 10,
                ..Default::default()
            },
        )
        .unwrap();
        let log = Mutex::new(log);
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
    fn a_failed_sync_releases_nothing() {
        let storage = SimStorage::new();
        let (log, _) = CommitLog::open(
            storage.clone(),
            CommitLogConfig {
                segment_size_bytes: 4096,
                checkpoint_every_entries: 10,
                ..Default::default()
            },
        )
        .unwrap();
        let log = Mutex::new(log);
        let gc = GroupCommit::default();
        lock(&log).append(&[entry(0)]).unwrap();
        gc.wait(RaftIndex(0), lock(&log).flushed(), ());
        storage.set_fail_syncs(true);
        assert!(gc.flush_once(&log).is_err());
        assert_eq!(gc.pending(), 1, "the waiter is still waiting");
        assert_eq!(lock(&log).flushed().next_index, RaftIndex(0));
    }
}
