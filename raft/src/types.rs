//! The Raft type configuration and what travels in entries: message records (the RocketMQ
//! bytes, as stored) and metadata commands; and the conversion between openraft's entries and
//! the CommitLog's framed entries.

use bytes::Bytes;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership};
use rocketraft_store::{EntryKind, LogEntry, RaftIndex};
use serde::{Deserialize, Serialize};

use crate::error::CodecError;

/// A replica's id in its group (n0 = 0, n1 = 1, ...).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// RocketRaft's Raft types.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = crate::snapshot_data::SnapshotData,
        AsyncRuntime = crate::runtime::MadRuntime,
);

/// What a client proposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// RocketMQ message records back to back, queue offsets already assigned by the leader.
    /// Stored as they are; the CommitLog sets each record's PHYSICALOFFSET.
    Messages(Bytes),
    /// Metadata commands applied together.
    Metadata(Vec<MetaCommand>),
}

/// A change to the replicated metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    PutTopic(TopicMeta),
    DeleteTopic {
        topic: String,
    },
    PutGroup(GroupMeta),
    DeleteGroup {
        group: String,
    },
    /// Consumer offsets, many per command (clients commit every 5 s per queue).
    CommitOffsets(Vec<ConsumerOffset>),
    /// Records of a parked queue (delay level, timer) before `next_offset` need no move: they
    /// were removed by retention, or cannot be moved. Moves record their progress themselves.
    SkipParked {
        topic: String,
        queue_id: i32,
        next_offset: u64,
    },
    /// A transaction half message (its offset in the half queue) was rolled back. A commit
    /// or a discard is recorded by its own record instead, in the same entry (see
    /// [`crate::state_machine`]).
    RollBackHalf {
        half_offset: u64,
    },
    /// How often each unresolved half message was checked back (absolute counts, so that
    /// applying the command again changes nothing).
    HalfChecks {
        checks: Vec<(u64, u32)>,
    },
    /// Every half message before `below` is resolved: the marks of `from..below` are dropped
    /// and a half before `below` reads as resolved from now on. The proposer keeps the range
    /// short (applying it deletes each key of it).
    ForgetHalves {
        from: u64,
        below: u64,
    },
    /// Queue locks a master granted to a new owner (orderly consumption, a queue handed over):
    /// `owner` (a client id) holds `queues` for `group`. Only changes of owner are replicated,
    /// not renewals: a new master honours every lock the old one granted, for one whole expiry
    /// from when it takes over, instead of granting the queue to a second consumer.
    SetLockOwner {
        group: String,
        owner: String,
        queues: Vec<rocketraft_protocol::body::MessageQueue>,
    },
    /// Replica `node` of the group is the one whose data directory has `incarnation` (made
    /// when that directory was new): Raft calls to it say so, and a replica with another one
    /// (its data wiped, or another machine under its id) refuses them (see
    /// `crate::network`). Last, so older entries decode as before.
    SetReplica {
        node: NodeId,
        incarnation: u64,
    },
}

/// How a transaction half message was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HalfOutcome {
    Committed,
    RolledBack,
    /// Checked back `transactionCheckMax` times without an answer: moved to
    /// `TRANS_CHECK_MAX_TIME_TOPIC`.
    Discarded,
    /// Before the forgotten cut: resolved, how is no longer kept.
    Forgotten,
}

/// A topic's configuration (RocketMQ's `TopicConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    pub perm: i32,
    pub topic_sys_flag: i32,
    pub order: bool,
    pub filter_type: String,
}

/// A subscription group's configuration (RocketMQ's `SubscriptionGroupConfig`, the fields
/// RocketRaft uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMeta {
    pub name: String,
    pub consume_enable: bool,
    pub consume_broadcast_enable: bool,
    pub retry_queue_nums: i32,
    pub retry_max_times: i32,
}

/// A consumer group's committed offset on one queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerOffset {
    pub group: String,
    pub topic: String,
    pub queue_id: i32,
    pub offset: u64,
}

/// What applying an entry answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The CommitLog position of the entry (its records follow its 44-byte header).
    pub entry_position: u64,
}

pub(crate) fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, bincode_config()).map_err(|e| CodecError(e.to_string()))
}

/// Appends `value`'s encoding to `out`.
pub(crate) fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(value, out, bincode_config())
        .map(drop)
        .map_err(|e| CodecError(e.to_string()))
}

/// Decodes bytes from a peer: no collection may claim more than `limit_bytes`, so a hostile
/// length prefix cannot make us allocate beyond what the frame could hold.
pub(crate) fn decode_untrusted<T: serde::de::DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
) -> Result<T, CodecError> {
    let config = bincode_config().with_limit::<LIMIT>();
    match bincode::serde::decode_from_slice(bytes, config) {
        Ok((v, used)) if used == bytes.len() => Ok(v),
        Ok((_, used)) => Err(CodecError(format!("{} trailing bytes", bytes.len() - used))),
        Err(e) => Err(CodecError(e.to_string())),
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bincode::serde::decode_from_slice(bytes, bincode_config()) {
        Ok((v, used)) if used == bytes.len() => Ok(v),
        Ok((_, used)) => Err(CodecError(format!("{} trailing bytes", bytes.len() - used))),
        Err(e) => Err(CodecError(e.to_string())),
    }
}

/// openraft entry -> CommitLog entry.
pub fn to_log_entry(e: &Entry<TypeConfig>) -> Result<LogEntry, CodecError> {
    let (kind, payload) = match &e.payload {
        EntryPayload::Blank => (EntryKind::Blank, Bytes::new()),
        EntryPayload::Normal(Request::Messages(records)) => (EntryKind::Messages, records.clone()),
        EntryPayload::Normal(Request::Metadata(cmds)) => {
            (EntryKind::Metadata, Bytes::from(encode(cmds)?))
        }
        EntryPayload::Membership(m) => (EntryKind::Membership, Bytes::from(encode(m)?)),
    };
    Ok(LogEntry {
        index: RaftIndex(e.log_id.index),
        term: e.log_id.leader_id.term,
        leader: e.log_id.leader_id.node_id,
        kind,
        payload,
    })
}

/// CommitLog entry -> openraft entry.
pub fn from_log_entry(e: LogEntry) -> Result<Entry<TypeConfig>, CodecError> {
    let payload = match e.kind {
        EntryKind::Blank => EntryPayload::Blank,
        EntryKind::Messages => EntryPayload::Normal(Request::Messages(e.payload)),
        EntryKind::Metadata => EntryPayload::Normal(Request::Metadata(decode(&e.payload)?)),
        EntryKind::Membership => {
            EntryPayload::Membership(decode::<Membership<NodeId, openraft::BasicNode>>(&e.payload)?)
        }
    };
    Ok(Entry { log_id: log_id(e.term, e.leader, e.index.0), payload })
}

pub fn log_id(term: u64, leader: NodeId, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, leader), index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_payload_kind_round_trips_through_the_commitlog_form() {
        let members: BTreeSet<NodeId> = [0, 1, 2].into();
        let entries = vec![
            Entry { log_id: log_id(1, 0, 0), payload: EntryPayload::Blank },
            Entry {
                log_id: log_id(1, 0, 1),
                payload: EntryPayload::Membership(Membership::new(vec![members], None)),
            },
            Entry {
                log_id: log_id(2, 1, 2),
                payload: EntryPayload::Normal(Request::Metadata(vec![MetaCommand::CommitOffsets(
                    vec![ConsumerOffset {
                        group: "g".into(),
                        topic: "t".into(),
                        queue_id: 3,
                        offset: 42,
                    }],
                )])),
            },
            Entry {
                log_id: log_id(2, 1, 3),
                payload: EntryPayload::Normal(Request::Messages(Bytes::from_static(b"records"))),
            },
        ];
        for e in entries {
            let back = from_log_entry(to_log_entry(&e).unwrap()).unwrap();
            assert_eq!(back.log_id, e.log_id);
            assert_eq!(format!("{:?}", back.payload), format!("{:?}", e.payload));
        }
    }

    #[test]
    fn garbage_payloads_are_errors() {
        let bad = LogEntry {
            index: RaftIndex(1),
            term: 1,
            leader: 0,
            kind: EntryKind::Metadata,
            payload: Bytes::from_static(&[0xFF; 9]),
        };
        assert!(from_log_entry(bad).is_err());
    }
}
