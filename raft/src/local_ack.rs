//! Acknowledging a send once the leader's own log has it (`replication = "leader"`, RocketMQ's
//! asynchronous replication): the proposer registers each proposal's payload here, and the
//! leader's log store answers it once the entry holding that payload is in the log as the flush
//! mode counts it (synced in sync flush, written in async flush), before any follower has it.
//!
//! A proposal is found by its payload buffer: openraft hands the leader's log store the very
//! `Bytes` the proposer proposed (moved, or cloned without copying), so the buffer's address
//! names the proposal. The proposer holds a clone until it forgets the registration, so no other
//! buffer can take that address meanwhile. Followers' entries arrive decoded from the network,
//! in buffers of their own: they never match.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::log_store::lock;

/// Where a registered proposal went in the leader's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAck {
    /// The Raft index of the entry.
    pub index: u64,
    /// The entry's CommitLog position (its records follow its 44-byte header).
    pub entry_position: u64,
}

/// Proposals waiting to be in the leader's own log. One per replica, shared by its log store
/// and its proposer.
#[derive(Debug, Default)]
pub struct LocalAppends {
    waiters: Mutex<HashMap<usize, oneshot::Sender<LocalAck>>>,
}

fn key(payload: &Bytes) -> usize {
    payload.as_ptr() as usize
}

impl LocalAppends {
    /// Registers a proposal's payload (keep a clone of it until [`LocalAppends::forget`]).
    pub fn register(&self, payload: &Bytes) -> oneshot::Receiver<LocalAck> {
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).insert(key(payload), tx);
        rx
    }

    /// Drops a registration that was not answered (the proposal failed before its append).
    pub fn forget(&self, payload: &Bytes) {
        lock(&self.waiters).remove(&key(payload));
    }

    /// The waiter for an appended entry's payload, if it was registered.
    pub(crate) fn take(&self, payload: &Bytes) -> Option<oneshot::Sender<LocalAck>> {
        let mut waiters = lock(&self.waiters);
        if waiters.is_empty() {
            return None;
        }
        waiters.remove(&key(payload))
    }
}

/// Answers taken waiters once their entries count as in the log.
#[derive(Debug, Default)]
pub(crate) struct PendingAcks(Vec<(oneshot::Sender<LocalAck>, LocalAck)>);

impl PendingAcks {
    pub(crate) fn push(&mut self, tx: oneshot::Sender<LocalAck>, ack: LocalAck) {
        self.0.push((tx, ack));
    }

    /// The entries are in the log: tell their proposers.
    pub(crate) fn send(self) {
        for (tx, ack) in self.0 {
            let _ = tx.send(ack);
        }
    }
}
