//! Wall-clock time: the one place that reads it ([`now_ms`]), and the group's clock
//! ([`GroupClock`]) that store timestamps and every decision taken from them use.
//!
//! A replica reads the wall clock once, at start; from then on its time runs on the
//! monotonic clock, so a step of the machine's clock while it runs changes nothing until it
//! restarts. Replicas' clocks still differ (skew, a step taken before a restart), and a new
//! leader stamps messages and decides what is due against its own. [`GroupClock`] keeps the
//! group's time from running backwards across leaders: a new leader never stamps, or takes
//! for "now", a time earlier than the newest stamp already in its log. A leader whose clock
//! is ahead moves the group's time forward, and it stays there (messages parked before the
//! step may come due early by up to the step; nothing can tell a clock that is ahead from
//! one that is right).
//!
//! Under madsim the wall clock is simulated, and a node's clock can be set off from the
//! others' ([`set_skew_ms`]), as a step on a real machine would.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Unix milliseconds now, on this node's wall clock.
#[allow(clippy::disallowed_methods)] // the clock seam itself
pub fn now_ms() -> i64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    #[cfg(madsim)]
    let ms = ms + sim_skew::current();
    ms
}

/// Sets the simulated node `node`'s wall clock `skew_ms` off the simulation's (a step of
/// that machine's clock). A broker reads the wall clock at start, so it sees the step when
/// it next starts; retention sees it at once. [`clear_skews`] forgets every node's.
#[cfg(madsim)]
pub fn set_skew_ms(node: madsim::task::NodeId, skew_ms: i64) {
    sim_skew::SKEWS.with(|s| s.borrow_mut().insert(node, skew_ms));
}

/// Forgets every simulated node's skew (a new simulated cluster starts with true clocks).
#[cfg(madsim)]
pub fn clear_skews() {
    sim_skew::SKEWS.with(|s| s.borrow_mut().clear());
}

#[cfg(madsim)]
mod sim_skew {
    use std::cell::RefCell;
    use std::collections::HashMap;

    thread_local! {
        // One simulation runs on one thread, so a table per thread is a table per run.
        pub(super) static SKEWS: RefCell<HashMap<madsim::task::NodeId, i64>> =
            RefCell::new(HashMap::new());
    }

    /// The skew of the node the calling task runs on (0 outside a simulation's nodes).
    pub(super) fn current() -> i64 {
        if madsim::runtime::Handle::try_current().is_err() {
            return 0;
        }
        let node = madsim::plugin::node();
        SKEWS.with(|s| s.borrow().get(&node).copied().unwrap_or(0))
    }
}

/// A replica's view of its group's time: the wall clock read at start plus the monotonic
/// time since, moved forward (never back) so it is never behind the newest store timestamp
/// in the log when this replica starts leading. Shared by the broker and the proposer.
#[derive(Debug)]
pub struct GroupClock {
    start_ms: i64,
    // The runtime's clock (virtual under madsim).
    started: tokio::time::Instant,
    /// How far this replica's clock is moved forward to keep up with its group's.
    ahead_ms: AtomicI64,
    /// The term whose log this clock was last moved to (u64::MAX: none yet).
    term: AtomicU64,
}

impl GroupClock {
    /// A clock that reads `start_ms` now (this replica's wall clock at start).
    pub fn new(start_ms: i64) -> Self {
        GroupClock {
            start_ms,
            #[allow(clippy::disallowed_methods)] // the runtime's clock, virtual under madsim
            started: tokio::time::Instant::now(),
            ahead_ms: AtomicI64::new(0),
            term: AtomicU64::new(u64::MAX),
        }
    }

    /// The group's time now, in Unix milliseconds. Never goes backwards.
    pub fn now_ms(&self) -> i64 {
        self.own_ms().saturating_add(self.ahead_ms.load(Ordering::Acquire))
    }

    /// This replica's own time: its wall clock at start plus the monotonic time since.
    fn own_ms(&self) -> i64 {
        self.start_ms.saturating_add(self.started.elapsed().as_millis() as i64)
    }

    /// How far this replica's clock has been moved forward to keep up with its group's.
    pub fn ahead_ms(&self) -> i64 {
        self.ahead_ms.load(Ordering::Acquire)
    }

    /// Whether the clock was already moved to the log of `term`.
    pub fn moved_for(&self, term: u64) -> bool {
        self.term.load(Ordering::Acquire) == term
    }

    /// From now on never reads earlier than `floor_ms` (the newest store timestamp in the
    /// log this replica leads with in `term`).
    pub fn not_before(&self, term: u64, floor_ms: i64) {
        // Idempotent: callers that race (the proposer, a send, a tick) move it once.
        let ahead = floor_ms.saturating_sub(self.own_ms());
        let before = self.ahead_ms.fetch_max(ahead, Ordering::AcqRel);
        if ahead > before {
            tracing::info!(
                term,
                moved_ms = ahead - before,
                ahead_ms = ahead,
                "this replica's clock is behind its group's newest store timestamp: \
                 moved forward to it"
            );
        }
        self.term.store(term, Ordering::Release);
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_group_clock_moves_forward_to_the_log_and_never_back() {
        let clock = GroupClock::new(1_000);
        let t0 = clock.now_ms();
        assert!((1_000..1_100).contains(&t0), "{t0}");
        // A log whose newest stamp is ahead: the clock jumps to it and runs on from there.
        clock.not_before(3, 1_000_000);
        assert!(clock.moved_for(3) && !clock.moved_for(4));
        let t1 = clock.now_ms();
        assert!((1_000_000..1_000_100).contains(&t1), "{t1}");
        assert!(clock.ahead_ms() >= 1_000_000 - t0 - 100);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let t2 = clock.now_ms();
        assert!(t2 >= t1 + 20, "{t1} then {t2}");
        // A log whose newest stamp is behind changes nothing: never backwards.
        let ahead = clock.ahead_ms();
        clock.not_before(4, 2_000);
        assert!(clock.moved_for(4));
        assert_eq!(clock.ahead_ms(), ahead);
        assert!(clock.now_ms() >= t2);
    }
}
