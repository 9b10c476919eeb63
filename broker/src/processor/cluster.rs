//! The Raft group's own administration, answered by its leader (RocketRaft's codes; RocketMQ
//! has none for DLedger groups): leadership transfer, adding and removing replicas.

use std::time::Duration;

use rocketraft_protocol::headers::{
    ChangeReplicaRequestHeader, MembersResponseHeader, TransferLeaderRequestHeader,
    TransferLeaderResponseHeader,
};
use rocketraft_protocol::{response_code, RemotingCommand};
use rocketraft_raft::{MembershipError, MetaStore, TransferError};
use rocketraft_store::io::Storage;

use crate::server::Inner;

use super::*;

/// How long a transfer may hold writes by default (a RocketMQ client's send timeout).
pub const TRANSFER_TIMEOUT_MS_DEFAULT: u64 = 3_000;
/// The longest transfer a request may ask for.
const TRANSFER_TIMEOUT_MS_MAX: u64 = 30_000;
/// How long adding a replica waits for it to catch up by default: a new replica copies the
/// group's retained log (or a snapshot and its history) first.
pub const ADD_REPLICA_TIMEOUT_MS_DEFAULT: u64 = 600_000;
/// How long removing a replica may take by default.
pub const REMOVE_REPLICA_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// The longest membership change a request may ask for.
const MEMBERSHIP_TIMEOUT_MS_MAX: u64 = 3_600_000;

/// Raft group administration.
pub(crate) struct ClusterProcessor<S: Storage + Clone, M: MetaStore>(pub(crate) Arc<Inner<S, M>>);

impl<S: Storage + Clone, M: MetaStore> ClusterProcessor<S, M> {
    pub(crate) const CODES: &'static [i32] =
        &[rc::RAFT_TRANSFER_LEADER, rc::RAFT_ADD_REPLICA, rc::RAFT_REMOVE_REPLICA];
}

impl<S: Storage + Clone, M: MetaStore> Processor for ClusterProcessor<S, M> {
    fn process(&self, req: RemotingCommand, _peer: Peer) -> Answer<'_> {
        Box::pin(async move {
            let (req, inner) = (&req, &*self.0);
            match req.code {
                rc::RAFT_TRANSFER_LEADER => transfer_leader(req, inner).await,
                rc::RAFT_ADD_REPLICA | rc::RAFT_REMOVE_REPLICA => change_replica(req, inner).await,
                _ => Err(unsupported(req)),
            }
            .unwrap_or_else(|e| e)
        })
    }
}

async fn transfer_leader<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: TransferLeaderRequestHeader = header(req)?;
    let to = node_id(req, h.to, "to")?;
    let timeout_ms =
        timeout_ms(req, h.timeout_millis, TRANSFER_TIMEOUT_MS_DEFAULT, TRANSFER_TIMEOUT_MS_MAX)?;
    let group = &inner.config.broker_name;
    tracing::info!(group = %group, to, timeout_ms, "leadership transfer asked for");
    match inner.replica.transfer_leader(to, Duration::from_millis(timeout_ms)).await {
        Ok(done) => {
            tracing::info!(group = %group, leader = done.leader, term = done.term, "leadership transfer done");
            let remark = if done.leader == to {
                format!("node {to} leads {group} in term {}", done.term)
            } else {
                format!(
                    "node {} leads {group} in term {} (asked for node {to})",
                    done.leader, done.term
                )
            };
            Ok(reply(req, response_code::SUCCESS, remark).with_header(
                &TransferLeaderResponseHeader {
                    leader: done.leader as i64,
                    term: done.term as i64,
                },
            ))
        }
        Err(e) => {
            tracing::warn!(group = %group, to, error = %e, "leadership transfer failed");
            let code = match e {
                TransferError::NotLeader { .. } => response_code::SERVICE_NOT_AVAILABLE,
                _ => response_code::SYSTEM_ERROR,
            };
            Err(reply(req, code, format!("{group}: {e}")))
        }
    }
}

async fn change_replica<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: ChangeReplicaRequestHeader = header(req)?;
    let node = node_id(req, h.node, "node")?;
    let adding = req.code == rc::RAFT_ADD_REPLICA;
    let default_ms =
        if adding { ADD_REPLICA_TIMEOUT_MS_DEFAULT } else { REMOVE_REPLICA_TIMEOUT_MS_DEFAULT };
    let timeout_ms = timeout_ms(req, h.timeout_millis, default_ms, MEMBERSHIP_TIMEOUT_MS_MAX)?;
    let timeout = Duration::from_millis(timeout_ms);
    let group = &inner.config.broker_name;
    let done = if adding {
        let addr = h.addr.filter(|a| valid_addr(a)).ok_or_else(|| {
            reply(req, response_code::SYSTEM_ERROR, "addr must be the new replica's Raft host:port")
        })?;
        tracing::info!(group = %group, node, addr = %addr, "adding a replica");
        inner.replica.add_replica(node, &addr, timeout).await
    } else {
        tracing::info!(group = %group, node, "removing a replica");
        inner.replica.remove_replica(node, timeout).await
    };
    match done {
        Ok(members) => {
            let what = if adding { "added" } else { "removed" };
            tracing::info!(group = %group, node, voters = ?members.voters, "replica {what}");
            let remark = format!("node {node} {what}; voters of {group}: {}", ids(&members.voters));
            Ok(reply(req, response_code::SUCCESS, remark).with_header(&MembersResponseHeader {
                voters: ids(&members.voters),
                learners: ids(&members.learners),
            }))
        }
        Err(e) => {
            tracing::warn!(group = %group, node, error = %e, "membership change failed");
            let code = match e {
                MembershipError::NotLeader { .. } => response_code::SERVICE_NOT_AVAILABLE,
                _ => response_code::SYSTEM_ERROR,
            };
            Err(reply(req, code, format!("{group}: {e}")))
        }
    }
}

/// A header's Raft node id, checked.
fn node_id(req: &RemotingCommand, value: i64, name: &str) -> Result<u64, RemotingCommand> {
    u64::try_from(value).map_err(|_| {
        reply(req, response_code::SYSTEM_ERROR, format!("{name} must be a node id (>= 0)"))
    })
}

/// A header's `timeoutMillis`: `default` when absent, refused outside `1..=max`.
fn timeout_ms(
    req: &RemotingCommand,
    given: Option<i64>,
    default: u64,
    max: u64,
) -> Result<u64, RemotingCommand> {
    match given {
        None => Ok(default),
        Some(ms) if (1..=max as i64).contains(&ms) => Ok(ms as u64),
        Some(_) => Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            format!("timeoutMillis must be between 1 and {max}"),
        )),
    }
}

fn ids(set: &std::collections::BTreeSet<u64>) -> String {
    set.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// A Raft address: `host:port` with a port number (the host is resolved when it is called).
fn valid_addr(addr: &str) -> bool {
    addr.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}
