//! Leadership transfer. openraft 0.9 has no call for it; this is built from what it has, and
//! Raft's safety never depends on any step: the worst outcome is an ordinary election.
//!
//! On the leader L, handing over to the voter T:
//! 1. shut the write gate ([`crate::gate`]) and wait for the proposals on their way into Raft;
//! 2. read L's last log index once openraft has taken every one of them (two round trips
//!    through its core: its metrics are published at the top of each loop, so the second one
//!    sees what the first one queued behind);
//! 3. wait until T's log matches L's to that index (replication carries on while the gate
//!    holds new writes back);
//! 4. wait out L's own leader lease if L was elected less than a lease ago: openraft grants
//!    no vote within a lease of its own election, and T needs L's vote;
//! 5. when T and L are not a majority (5 voters), stop L's heartbeats and wait out the
//!    followers' leases too, so the others grant T their votes;
//! 6. send T a `TimeoutNow` (see [`crate::network::TimeoutNow`]): T checks it still follows L
//!    in that term and holds L's log, and stands for election at once. Its log is as long as
//!    L's, so L grants its vote (and steps down on the higher term); with T's own vote that is
//!    a majority of three;
//! 7. wait until a leader of a newer term is known, then open the gate and turn heartbeats
//!    back on (both on every way out). Writes held at the gate then find L a follower and are
//!    answered "not master", which clients retry at the new master.
//!
//! Writes wait at most the transfer's timeout (the caller's; the broker's default 3 s), and the
//! time T's election takes (a round trip) plus, with 5 voters, one leader lease.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::{BasicNode, Raft, RaftNetworkFactory};

use crate::gate::WriteGate;
use crate::network::{Network, TimeoutNow};
use crate::types::{NodeId, TypeConfig};

/// Waited beyond a leader lease, for the clocks of two replicas and a message in flight.
const LEASE_MARGIN_MS: u64 = 100;
/// How often the transfer looks at Raft's metrics while it waits.
const POLL_MS: u64 = 5;

/// Why leadership was not handed over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("node {id} does not lead its group; the leader is {}", leader.map_or("not known".to_owned(), |l| format!("node {l}")))]
    NotLeader { id: NodeId, leader: Option<NodeId> },
    #[error("node {0} is not a voter of the group")]
    NotVoter(NodeId),
    #[error("a membership change is in progress: try again once it is done")]
    MembershipChanging,
    #[error("another leadership transfer or a membership change is in progress")]
    Busy,
    #[error("node {to} did not catch up with the leader's log (index {index}) in time")]
    CatchUp { to: NodeId, index: u64 },
    #[error("node {to} did not stand for election: {why}")]
    Refused { to: NodeId, why: String },
    #[error("no new leader was elected in time after node {to} stood for election")]
    NoNewLeader { to: NodeId },
    #[error("leadership changed during the transfer (term {term}, leader {leader:?})")]
    Changed { term: u64, leader: Option<NodeId> },
    #[error("Raft stopped: {0}")]
    Stopped(String),
}

/// Who leads once a transfer is done: the target, or (rarely: another voter's election timer
/// fired first) another voter. Either way in a newer term than the transfer started in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transferred {
    pub leader: NodeId,
    pub term: u64,
}

/// Turns the leader's heartbeats back on when the transfer ends, however it ends.
struct HeartbeatsBack<'a>(&'a Raft<TypeConfig>);

impl Drop for HeartbeatsBack<'_> {
    fn drop(&mut self) {
        self.0.runtime_config().heartbeat(true);
    }
}

/// Hands leadership from `id` (the leader) to `to`, within `timeout` (see the module docs).
pub(crate) async fn transfer(
    raft: &Raft<TypeConfig>,
    network: &Network,
    gate: &WriteGate,
    id: NodeId,
    to: NodeId,
    timeout: Duration,
) -> Result<Transferred, TransferError> {
    let deadline = now() + timeout;
    // First: what is read below must not change under a membership change.
    let _change = gate.change_within(timeout).await.ok_or(TransferError::Busy)?;
    let m = raft.metrics().borrow().clone();
    let term = m.current_term;
    if m.current_leader != Some(id) {
        return Err(TransferError::NotLeader { id, leader: m.current_leader });
    }
    if to == id {
        return Ok(Transferred { leader: id, term });
    }
    let membership = m.membership_config.membership().clone();
    if membership.get_joint_config().len() > 1 {
        return Err(TransferError::MembershipChanging);
    }
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let target: BasicNode = match membership.get_node(&to) {
        Some(node) if voters.contains(&to) => node.clone(),
        _ => return Err(TransferError::NotVoter(to)),
    };
    let _held = gate.hold().ok_or(TransferError::Busy)?;
    let _heartbeats = HeartbeatsBack(raft);
    let still_leads = |m: &openraft::RaftMetrics<NodeId, BasicNode>| {
        (m.current_term == term && m.current_leader == Some(id))
            .then_some(())
            .ok_or(TransferError::Changed { term: m.current_term, leader: m.current_leader })
    };

    // 1-2. Nothing more on its way; the last index the leader's log will hold.
    let left = deadline.saturating_duration_since(now());
    if tokio::time::timeout(left, gate.drained()).await.is_err() {
        return Err(TransferError::CatchUp { to, index: m.last_log_index.unwrap_or(0) });
    }
    for _ in 0..2 {
        raft.with_raft_state(|_| ()).await.map_err(|e| TransferError::Stopped(e.to_string()))?;
    }
    let last = raft.metrics().borrow().last_log_index.unwrap_or(0);

    // 3. The target holds all of it.
    let caught_up = |m: &openraft::RaftMetrics<NodeId, BasicNode>| {
        m.replication
            .as_ref()
            .and_then(|r| r.get(&to).copied().flatten())
            .is_some_and(|l| l.index >= last)
    };
    if !poll_until(raft, deadline, |m| still_leads(m).is_err() || caught_up(m)).await {
        return Err(TransferError::CatchUp { to, index: last });
    }
    still_leads(&raft.metrics().borrow())?;

    // 4-5. Leases that would refuse the target's votes.
    let lease = Duration::from_millis(raft.config().election_timeout_max + LEASE_MARGIN_MS);
    let elected = raft
        .with_raft_state(|s| s.vote_last_modified())
        .await
        .map_err(|e| TransferError::Stopped(e.to_string()))?;
    let mut wait = elected.map_or(Duration::ZERO, |at| lease.saturating_sub(at.elapsed()));
    if voters.len() / 2 + 1 > 2 {
        raft.runtime_config().heartbeat(false);
        wait = lease;
    }
    if !wait.is_zero() {
        tokio::time::sleep_until(deadline.min(now() + wait)).await;
    }
    still_leads(&raft.metrics().borrow())?;

    // 6. The target stands.
    let mut client = network.clone().new_client(to, &target).await;
    let left = deadline.saturating_duration_since(now());
    client
        .timeout_now(TimeoutNow { term, from: id, last_log_index: last }, left)
        .await
        .map_err(|why| TransferError::Refused { to, why })?;
    tracing::info!(term, to, index = last, "handing leadership over");

    // 7. A leader of a newer term.
    let newer = |m: &openraft::RaftMetrics<NodeId, BasicNode>| {
        m.current_term > term && m.current_leader.is_some()
    };
    if !poll_until(raft, deadline, newer).await {
        return Err(TransferError::NoNewLeader { to });
    }
    let m = raft.metrics().borrow().clone();
    Ok(Transferred { leader: m.current_leader.expect("checked"), term: m.current_term })
}

/// The voter a leader would hand leadership to: the one whose log matches the leader's
/// furthest (the lowest id among equals). `None` when this replica does not lead or leads
/// alone.
pub fn candidate(raft: &Raft<TypeConfig>) -> Option<NodeId> {
    let m = raft.metrics().borrow().clone();
    if m.current_leader != Some(m.id) {
        return None;
    }
    let replication = m.replication.as_ref()?;
    m.membership_config
        .membership()
        .voter_ids()
        .filter(|v| *v != m.id)
        .map(|v| (replication.get(&v).copied().flatten().map_or(0, |l| l.index + 1), v))
        .max_by_key(|(matched, v)| (*matched, std::cmp::Reverse(*v)))
        .map(|(_, v)| v)
}

/// Polls Raft's metrics until `done` holds (true) or the deadline passes (false). Polled
/// rather than waited on: the simulation's determinism depends on the order of the metrics
/// channel's waiters (see [`crate::node::await_current_leader`]).
async fn poll_until(
    raft: &Raft<TypeConfig>,
    deadline: tokio::time::Instant,
    done: impl Fn(&openraft::RaftMetrics<NodeId, BasicNode>) -> bool,
) -> bool {
    loop {
        if done(&raft.metrics().borrow()) {
            return true;
        }
        if now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}

/// The runtime's clock (virtual under madsim).
fn now() -> tokio::time::Instant {
    #[allow(clippy::disallowed_methods)]
    tokio::time::Instant::now()
}
