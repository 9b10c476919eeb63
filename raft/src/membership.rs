//! Membership changes of a running group, on its leader: add a replica (it joins as a learner,
//! catches up by log or snapshot, then becomes a voter), remove one. Both go through openraft's
//! joint consensus (`change_membership`: a joint entry, then the uniform one).
//!
//! - **Add**: the new replica is started first, with an empty data directory and the group's
//!   peers in its configuration (it never bootstraps: it waits to be added). The leader adds it
//!   as a learner (replication starts at once), waits until its log matches the leader's as of
//!   the moment it was added, then makes it a voter. Waiting happens before it votes, so a
//!   replica far behind never sits in the quorum (a 1 -> 2 change would stop commits until it
//!   caught up). Adding a voter again is a no-op; a learner already there just waits and is
//!   promoted (so a call that timed out waiting can be repeated).
//! - **Remove**: never the leader (transfer its leadership first: [`crate::transfer`]). The
//!   voter is removed but kept as a learner (`retain`), so it receives the uniform entry
//!   without itself as a voter and knows it was removed (its node stops serving: see
//!   [`crate::node::RaftNode::removed`]); once it has it (bounded wait), it is dropped from the
//!   membership altogether. The last voter is never removed.
//!
//! A change refused because another is still being committed (`InProgress`, also right after
//! bootstrap) is retried until the deadline. A leader lost halfway leaves the group in the
//! joint configuration: the next change (at the new leader) finishes it first.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft, RaftNetworkFactory};

use crate::network::{Incarnations, Network};
use crate::types::{MetaCommand, NodeId, Request, TypeConfig};

/// How long adding a replica waits for it to say which incarnation it runs.
const IDENTITY_TIMEOUT_MS: u64 = 3_000;

/// How often a change looks at Raft's metrics or retries a change refused as in progress.
const POLL_MS: u64 = 20;
/// How long a removal waits for the removed replica to receive its removal.
const REMOVED_TOLD_MS: u64 = 3_000;

/// The group's members after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
}

/// Why a membership change was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("node {id} does not lead its group; the leader is {}", leader.map_or("not known".to_owned(), |l| format!("node {l}")))]
    NotLeader { id: NodeId, leader: Option<NodeId> },
    #[error("node {0} leads the group: transfer its leadership to another replica first")]
    RemovingLeader(NodeId),
    #[error("node {0} is the group's last voter")]
    LastVoter(NodeId),
    #[error("node {id} is already a member at {known}, not {asked}")]
    OtherAddress { id: NodeId, known: String, asked: String },
    #[error("node {id} is still catching up ({behind} entries behind) after {waited_ms} ms: it stays a learner; run the command again to wait more")]
    CatchingUp { id: NodeId, behind: u64, waited_ms: u64 },
    #[error("another membership change is still being committed after {0} ms")]
    InProgress(u64),
    #[error("a leadership transfer or another membership change is in progress on the leader")]
    Busy,
    #[error("node {0} runs on new data, which cannot be recorded while a member does not answer which data it runs on: try again once every member answers")]
    Unrecorded(NodeId),
    #[error("node {id} at {addr} does not answer: {why}")]
    Unreachable { id: NodeId, addr: String, why: String },
    #[error("node {0} is a member but runs on other data than the group recorded (wiped, or another machine): remove it first, then add it again")]
    OtherData(NodeId),
    #[error("Raft: {0}")]
    Raft(String),
}

fn members_of(m: &openraft::RaftMetrics<NodeId, BasicNode>) -> Members {
    let membership = m.membership_config.membership();
    Members {
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
    }
}

fn leads(
    raft: &Raft<TypeConfig>,
) -> Result<openraft::RaftMetrics<NodeId, BasicNode>, MembershipError> {
    let m = raft.metrics().borrow().clone();
    if m.current_leader != Some(m.id) {
        return Err(MembershipError::NotLeader { id: m.id, leader: m.current_leader });
    }
    Ok(m)
}

/// Adds replica `id` at Raft address `addr` (see the module docs), within `timeout`.
pub async fn add_replica(
    raft: &Raft<TypeConfig>,
    gate: &crate::gate::WriteGate,
    peers: (&Network, &Incarnations),
    id: NodeId,
    addr: &str,
    timeout: Duration,
) -> Result<Members, MembershipError> {
    let deadline = now() + timeout;
    let _change = gate.change_within(timeout).await.ok_or(MembershipError::Busy)?;
    let m = leads(raft)?;
    let membership = m.membership_config.membership().clone();
    if let Some(known) = membership.get_node(&id) {
        if known.addr != addr {
            return Err(MembershipError::OtherAddress {
                id,
                known: known.addr.clone(),
                asked: addr.to_owned(),
            });
        }
    }
    // Which data it runs on, recorded before it joins: from then on the group's calls to it
    // name it, and a wipe of its directory takes it out until it is added again.
    let (network, known) = peers;
    let node = BasicNode { addr: addr.to_owned() };
    let mut client = network.clone().new_client(id, &node).await;
    let answer = client.identity(Duration::from_millis(IDENTITY_TIMEOUT_MS)).await;
    let unreachable = |why: String| MembershipError::Unreachable { id, addr: addr.to_owned(), why };
    let incarnation = answer.map_err(unreachable)?;
    let recorded = (known.0)(id);
    if let Some(incarnation) = incarnation.filter(|i| recorded != Some(*i)) {
        if recorded.is_some() && membership.get_node(&id).is_some() {
            return Err(MembershipError::OtherData(id));
        }
        // Recorded now if every member can take the entry; else the leader records it once
        // they can (see `node::record_incarnations`).
        let others: Vec<(NodeId, BasicNode)> =
            membership.nodes().filter(|(n, _)| **n != id).map(|(n, b)| (*n, b.clone())).collect();
        if every_incarnation(network, others, None).await.is_some() {
            let record = Request::Metadata(vec![MetaCommand::SetReplica { node: id, incarnation }]);
            raft.client_write(record).await.map_err(|e| match e.forward_to_leader() {
                Some(f) => MembershipError::NotLeader { id: m.id, leader: f.leader_id },
                None => MembershipError::Raft(e.to_string()),
            })?;
        } else if recorded.is_some() {
            // The group would go on calling it by its old data's incarnation, which it refuses:
            // it could never catch up. Add it once its new data can be recorded.
            return Err(MembershipError::Unrecorded(id));
        } else {
            tracing::info!(node = id, "not every replica answers which data it runs on: the new replica's is recorded once they do");
        }
    }
    if membership.voter_ids().any(|v| v == id) && membership.get_joint_config().len() == 1 {
        return Ok(members_of(&m));
    }
    if membership.get_node(&id).is_none() {
        let node = BasicNode { addr: addr.to_owned() };
        change(raft, deadline, |raft| {
            let node = node.clone();
            async move { raft.add_learner(id, node, false).await }
        })
        .await?;
        tracing::info!(node = id, addr, "added a learner; waiting for it to catch up");
    }
    // Caught up with the leader's log as it is now (the learner's own entry included).
    let target = raft.metrics().borrow().last_log_index.unwrap_or(0);
    let started = now();
    loop {
        let m = leads(raft)?;
        let matched = matched(&m, id);
        if matched >= target {
            break;
        }
        if now() >= deadline {
            return Err(MembershipError::CatchingUp {
                id,
                behind: m.last_log_index.unwrap_or(0).saturating_sub(matched),
                waited_ms: started.elapsed().as_millis() as u64,
            });
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    let ids: BTreeSet<NodeId> = [id].into();
    change(raft, deadline, |raft| {
        let ids = ids.clone();
        async move { raft.change_membership(ChangeMembers::AddVoterIds(ids), false).await }
    })
    .await?;
    let m = raft.metrics().borrow().clone();
    tracing::info!(node = id, voters = ?members_of(&m).voters, "a replica joined the group's voters");
    Ok(members_of(&m))
}

/// Removes replica `id` from the group (see the module docs), within `timeout`.
pub async fn remove_replica(
    raft: &Raft<TypeConfig>,
    gate: &crate::gate::WriteGate,
    id: NodeId,
    timeout: Duration,
) -> Result<Members, MembershipError> {
    let deadline = now() + timeout;
    let _change = gate.change_within(timeout).await.ok_or(MembershipError::Busy)?;
    let m = leads(raft)?;
    if id == m.id {
        return Err(MembershipError::RemovingLeader(id));
    }
    let members = members_of(&m);
    if members.voters.contains(&id) {
        if members.voters.len() == 1 {
            return Err(MembershipError::LastVoter(id));
        }
        let ids: BTreeSet<NodeId> = [id].into();
        let written = change(raft, deadline, |raft| {
            let ids = ids.clone();
            async move { raft.change_membership(ChangeMembers::RemoveVoters(ids), true).await }
        })
        .await?;
        // The removed replica, still a learner, receives the entry that made it one: its node
        // sees it is no voter any more and stops. Bounded: it may be down (then it never
        // learns, and a restart of it stands for elections no one grants).
        let told = now() + Duration::from_millis(REMOVED_TOLD_MS);
        while now() < told.min(deadline) && matched(&leads(raft)?, id) < written {
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
        tracing::info!(node = id, "a replica left the group's voters");
    }
    if leads(raft)?.membership_config.membership().get_node(&id).is_some() {
        let ids: BTreeSet<NodeId> = [id].into();
        change(raft, deadline, |raft| {
            let ids = ids.clone();
            async move { raft.change_membership(ChangeMembers::RemoveNodes(ids), false).await }
        })
        .await?;
    }
    Ok(members_of(&raft.metrics().borrow()))
}

/// Every member's incarnation, asked of each with [`crate::network::RpcRequest::Identity`]
/// (`given` needs no call): `None` unless every one answers. A `SetReplica` entry is proposed
/// only then: a replica of a version from before incarnations knows neither the call nor the
/// entry (it would stop on applying it: a rolling upgrade must not reach that), and a member
/// that is down only defers the recording.
pub(crate) async fn every_incarnation(
    network: &Network,
    members: Vec<(NodeId, BasicNode)>,
    given: Option<(NodeId, u64)>,
) -> Option<BTreeMap<NodeId, u64>> {
    let mut all = BTreeMap::new();
    for (id, node) in members {
        let incarnation = match given {
            Some((own, incarnation)) if own == id => incarnation,
            _ => {
                let mut client = network.clone().new_client(id, &node).await;
                let timeout = Duration::from_millis(IDENTITY_TIMEOUT_MS);
                client.identity(timeout).await.ok().flatten()?
            }
        };
        all.insert(id, incarnation);
    }
    Some(all)
}

/// How far the leader knows `id`'s log matches its own (0: nothing yet).
fn matched(m: &openraft::RaftMetrics<NodeId, BasicNode>, id: NodeId) -> u64 {
    m.replication
        .as_ref()
        .and_then(|r: &BTreeMap<NodeId, Option<openraft::LogId<NodeId>>>| {
            r.get(&id).copied().flatten()
        })
        .map_or(0, |l| l.index)
}

type WriteResult = Result<
    openraft::raft::ClientWriteResponse<TypeConfig>,
    RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
>;

/// Runs one membership change, retried while another is in progress, until `deadline`;
/// answers the index of the entry it wrote.
async fn change<'a, F, Fut>(
    raft: &'a Raft<TypeConfig>,
    deadline: tokio::time::Instant,
    write: F,
) -> Result<u64, MembershipError>
where
    F: Fn(&'a Raft<TypeConfig>) -> Fut,
    Fut: std::future::Future<Output = WriteResult>,
{
    let started = now();
    loop {
        match write(raft).await {
            Ok(r) => return Ok(r.log_id.index),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(_),
            ))) if now() < deadline => {
                tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(_),
            ))) => return Err(MembershipError::InProgress(started.elapsed().as_millis() as u64)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                let id = raft.metrics().borrow().id;
                return Err(MembershipError::NotLeader { id, leader: f.leader_id });
            }
            Err(e) => return Err(MembershipError::Raft(e.to_string())),
        }
    }
}

/// The runtime's clock (virtual under madsim).
fn now() -> tokio::time::Instant {
    #[allow(clippy::disallowed_methods)]
    tokio::time::Instant::now()
}
