//! Offsets an operator reset (INVOKE_BROKER_TO_RESET_OFFSET) that the group's consumers have
//! not seen yet, as RocketMQ 5.x keeps them on the master.
//!
//! The reset itself is committed through Raft (every replica has the new offsets). A consumer
//! that is running still holds its old position in memory and would commit it back; so until
//! it pulls the queue again:
//! - its next pull of the queue at another offset is answered PULL_OFFSET_MOVED with the reset
//!   offset (the consumer jumps there), and that ends the pending reset;
//! - its offset commits for the queue (UPDATE_CONSUMER_OFFSET, or the commit riding on a pull)
//!   are ignored.
//!
//! The table lives in the master's memory, as RocketMQ's does: after a failover a consumer
//! that did not pull in between may commit its old offset over the reset (rerun the reset).
//! It is bounded: at most [`RESETS_PENDING_MAX`] queues wait; a reset that would exceed it is
//! refused.

use std::collections::BTreeMap;

/// Queues with a reset not yet seen by their consumers, at most.
pub const RESETS_PENDING_MAX: usize = 65_536;

type Key = (String, String, i32);

/// (group, topic, queue) -> the offset the reset set.
#[derive(Debug, Default)]
pub struct PendingResets {
    pending: std::sync::Mutex<BTreeMap<Key, u64>>,
}

fn key(group: &str, topic: &str, queue_id: i32) -> Key {
    (group.to_owned(), topic.to_owned(), queue_id)
}

impl PendingResets {
    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, u64>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `count` more queues fit.
    pub fn has_room(&self, count: usize) -> bool {
        self.table().len() + count <= RESETS_PENDING_MAX
    }

    /// Records a queue's reset offset (replacing an earlier one).
    pub fn set(&self, group: &str, topic: &str, queue_id: i32, offset: u64) {
        self.table().insert(key(group, topic, queue_id), offset);
    }

    /// Whether a reset of the queue waits for the group's consumer. Every offset commit asks:
    /// with no reset pending (nearly always) it costs a lock and no allocation.
    pub fn is_pending(&self, group: &str, topic: &str, queue_id: i32) -> bool {
        let table = self.table();
        !table.is_empty() && table.contains_key(&key(group, topic, queue_id))
    }

    /// A pull of the queue at `offset`: the reset offset if the consumer must move there.
    /// Either way the reset counts as seen and is no longer pending. Every pull on the master
    /// asks: with no reset pending it costs a lock and no allocation.
    pub fn take_for_pull(
        &self,
        group: &str,
        topic: &str,
        queue_id: i32,
        offset: u64,
    ) -> Option<u64> {
        let mut table = self.table();
        if table.is_empty() {
            return None;
        }
        let target = table.remove(&key(group, topic, queue_id))?;
        (target != offset).then_some(target)
    }

    /// How many queues wait.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_moves_the_next_pull_once_and_blocks_commits_until_then() {
        let r = PendingResets::default();
        r.set("G", "T", 0, 5);
        r.set("G", "T", 1, 9);
        assert!(r.is_pending("G", "T", 0));
        assert!(!r.is_pending("G", "T", 2) && !r.is_pending("H", "T", 0));
        assert_eq!(r.take_for_pull("G", "T", 0, 40), Some(5), "moved to the reset");
        assert!(!r.is_pending("G", "T", 0), "seen");
        assert_eq!(r.take_for_pull("G", "T", 0, 40), None, "only once");
        assert_eq!(r.take_for_pull("G", "T", 1, 9), None, "already there: nothing to move");
        assert!(r.is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let r = PendingResets::default();
        assert!(r.has_room(RESETS_PENDING_MAX));
        assert!(!r.has_room(RESETS_PENDING_MAX + 1));
        r.set("G", "T", 0, 1);
        assert!(!r.has_room(RESETS_PENDING_MAX));
        r.set("G", "T", 0, 2);
        assert_eq!(r.len(), 1, "a second reset of a queue replaces the first");
    }
}
