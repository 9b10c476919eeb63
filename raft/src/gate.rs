//! The leader's write gate: every proposal of the replica (the proposer's batches, consumer
//! offsets, metadata) passes it on its way into Raft, and a leadership transfer holds it shut
//! while the target catches up (see [`crate::transfer`]). Without it the leader keeps
//! appending, the target's log stays behind, its election is refused on log length, and its
//! higher term unseats the leader anyway: an election timeout with no leader instead of a
//! handover.
//!
//! A pass lasts while its proposal is handed to Raft ([`Passing`] is dropped after
//! `client_write` queued it), so once the gate is shut and the passes drained, the leader's
//! log holds every proposal that will be written before the transfer ends. The cost on the
//! send path is one uncontended watch update per proposal (a batch), not per message.

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, Default)]
struct State {
    held: bool,
    passing: usize,
}

/// See the module docs.
#[derive(Debug)]
pub struct WriteGate {
    state: watch::Sender<State>,
    /// Leadership transfers and membership changes run one at a time on a replica: a change
    /// during a transfer would append entries the target has not got (and fail it), and a
    /// transfer during a change would leave the change to a leader that never heard of it.
    changes: tokio::sync::Mutex<()>,
}

impl Default for WriteGate {
    fn default() -> Self {
        WriteGate { state: watch::Sender::new(State::default()), changes: Default::default() }
    }
}

/// A proposal on its way through the gate.
#[must_use = "the pass lasts while the proposal is handed to Raft"]
pub struct Passing<'a>(&'a WriteGate);

impl Drop for Passing<'_> {
    fn drop(&mut self) {
        self.0.state.send_modify(|s| s.passing -= 1);
    }
}

/// The gate held shut; dropping it opens the gate again.
#[must_use = "the gate opens again when this is dropped"]
pub struct Held<'a>(&'a WriteGate);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.state.send_modify(|s| s.held = false);
    }
}

impl WriteGate {
    /// Waits until the gate is open, then passes.
    pub async fn pass(&self) -> Passing<'_> {
        let mut open = self.state.subscribe();
        loop {
            let mut entered = false;
            self.state.send_if_modified(|s| {
                entered = !s.held;
                if entered {
                    s.passing += 1;
                }
                entered
            });
            if entered {
                return Passing(self);
            }
            // The sender is `self`: it outlives the wait.
            let _ = open.wait_for(|s| !s.held).await;
        }
    }

    /// Shuts the gate, unless it is shut already (`None`: another transfer holds it).
    pub fn hold(&self) -> Option<Held<'_>> {
        let mut took = false;
        self.state.send_if_modified(|s| {
            took = !s.held;
            s.held = true;
            took
        });
        // Built only when taken: a `Held` dropped here would open the gate.
        took.then(|| Held(self))
    }

    /// The right to transfer leadership or change the membership now; `None` while another
    /// such operation runs on this replica.
    pub fn change(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        self.changes.try_lock().ok()
    }

    /// [`WriteGate::change`], waiting up to `timeout` for the operation running to end (a
    /// handover at a broker's stop waits for a membership change so, within its own bound).
    pub async fn change_within(
        &self,
        timeout: std::time::Duration,
    ) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        tokio::time::timeout(timeout, self.changes.lock()).await.ok()
    }

    /// Waits until no proposal is on its way through (call with the gate held).
    pub async fn drained(&self) {
        let mut state = self.state.subscribe();
        let _ = state.wait_for(|s| s.passing == 0).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn transfers_and_membership_changes_run_one_at_a_time() {
        let gate = WriteGate::default();
        let first = gate.change().expect("nothing runs yet");
        assert!(gate.change().is_none(), "a second change waits for the first");
        drop(first);
        assert!(gate.change().is_some(), "free again once the first is done");
    }

    #[tokio::test]
    async fn a_held_gate_stops_new_passes_and_drains_the_old() {
        let gate = std::sync::Arc::new(WriteGate::default());
        let early = gate.pass().await;
        let held = gate.hold().expect("open");
        assert!(gate.hold().is_none(), "one holder at a time");
        // The early pass keeps the gate undrained until it is dropped.
        let drained = tokio::time::timeout(Duration::from_millis(50), gate.drained()).await;
        assert!(drained.is_err());
        drop(early);
        gate.drained().await;
        // A new pass waits for the gate to open.
        let g = gate.clone();
        let late = tokio::spawn(async move {
            let _p = g.pass().await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!late.is_finished());
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), late).await.unwrap().unwrap();
        assert!(gate.hold().is_some());
    }
}
