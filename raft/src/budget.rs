//! How many bytes of entries one AppendEntries carries.
//!
//! openraft 0.9 sends a follower up to `max_payload_entries` (300) entries at once and bounds
//! the whole RPC, transfer and the follower's append and flush, by the heartbeat interval. With
//! entries of up to a few MiB (a batch of sends is one entry), a count alone makes requests a
//! lagging follower can never take: over the frame limit (refused outright), or too slow to
//! finish in 250 ms (timed out, and sent again the same size). So the log reader cuts each
//! request at a byte budget (always at least one entry), and the budget follows what the links
//! manage: a request with entries that times out halves it, one answered in under a quarter of
//! its time doubles it back, between [`REPLICATION_BYTES_MIN`] and [`REPLICATION_BYTES_MAX`].
//! It is one budget per replica for all its followers: a slow follower makes the requests to
//! the others smaller for a while, never larger than what works for it.
//!
//! The largest entry must still cross a link within the heartbeat interval: a 4 MiB message
//! needs at least 16 MiB/s with the default 250 ms (ARCHITECTURE.md, "Replication").

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The most entry bytes one AppendEntries carries (a quarter of the 64 MiB frame limit leaves
/// room for the envelope and keeps one request under 250 ms on a 1 Gbit/s link).
pub const REPLICATION_BYTES_MAX: u64 = 16 << 20;

/// The least the budget shrinks to after timeouts (a request always carries one entry).
pub const REPLICATION_BYTES_MIN: u64 = 64 << 10;

/// The byte budget of one AppendEntries; see the module documentation.
#[derive(Debug)]
pub struct ReplicationBudget {
    bytes: AtomicU64,
}

impl Default for ReplicationBudget {
    fn default() -> Self {
        ReplicationBudget { bytes: AtomicU64::new(REPLICATION_BYTES_MAX) }
    }
}

impl ReplicationBudget {
    /// The entry bytes the next request may carry.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// A request with entries did not finish in its time: the next ones carry half as much.
    pub fn timed_out(&self) {
        let _ = self.bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
            Some((b / 2).max(REPLICATION_BYTES_MIN))
        });
    }

    /// A request with entries was answered after `took` of the `limit` it had: one answered
    /// well within it lets the next ones carry twice as much.
    pub fn answered(&self, took: Duration, limit: Duration) {
        if took.saturating_mul(4) <= limit {
            let _ = self.bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_mul(2).min(REPLICATION_BYTES_MAX))
            });
        }
    }
}

/// How many of the entries `start..end` one request carries: as many as fit `budget` bytes by
/// `size_of`, at least one. `size_of` answers `None` for an entry it cannot size (purged, past
/// the end): the request stops before it (or is that one entry, for the reader to report).
pub fn entries_within(
    start: u64,
    end: u64,
    budget: u64,
    mut size_of: impl FnMut(u64) -> Option<u64>,
) -> u64 {
    let mut bytes = 0u64;
    let mut next = start;
    while next < end {
        let Some(size) = size_of(next) else { break };
        if next > start && bytes.saturating_add(size) > budget {
            break;
        }
        bytes = bytes.saturating_add(size);
        next += 1;
    }
    next.max(start.saturating_add(1)).min(end).max(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_takes_what_fits_and_always_one() {
        let sizes = |i: u64| Some(if i == 3 { 10_000 } else { 100 });
        assert_eq!(entries_within(0, 10, 350, sizes), 3, "three of 100 fit in 350");
        assert_eq!(entries_within(3, 10, 350, sizes), 4, "one too large still goes alone");
        assert_eq!(entries_within(4, 6, 10_000, sizes), 6, "the range ends first");
        assert_eq!(entries_within(5, 5, 100, sizes), 5, "an empty range stays empty");
        assert_eq!(entries_within(0, 10, 1_000, |i| (i < 2).then_some(100)), 2, "stops unsized");
        assert_eq!(entries_within(7, 10, 1_000, |_| None), 8, "the reader reports the first");
    }

    #[test]
    fn timeouts_halve_the_budget_and_quick_answers_grow_it_back() {
        let b = ReplicationBudget::default();
        let limit = Duration::from_millis(250);
        b.answered(Duration::from_millis(10), limit);
        assert_eq!(b.bytes(), REPLICATION_BYTES_MAX, "never above the maximum");
        b.timed_out();
        b.timed_out();
        assert_eq!(b.bytes(), REPLICATION_BYTES_MAX / 4);
        b.answered(Duration::from_millis(100), limit);
        assert_eq!(b.bytes(), REPLICATION_BYTES_MAX / 4, "slow answers do not grow it");
        b.answered(Duration::from_millis(50), limit);
        assert_eq!(b.bytes(), REPLICATION_BYTES_MAX / 2);
        for _ in 0..64 {
            b.timed_out();
        }
        assert_eq!(b.bytes(), REPLICATION_BYTES_MIN, "never below the minimum");
    }
}
