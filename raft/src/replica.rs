//! The replica as a broker sees it: one handle that owns the CommitLog, the dispatcher (queues
//! and indexes), the metadata table, the proposer and the consumer-offset committer of a broker
//! group replica, and offers what the broker's processors need: propose records and metadata,
//! read committed records by queue and offset, look records up by key, position or time, the
//! role. The broker names neither openraft nor a store mutex.
//!
//! Lock order: the CommitLog before the dispatcher (the state machine takes them so). Every
//! method here takes what it needs and lets go before it returns; none holds a lock across an
//! await.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use openraft::Raft;
use rocketraft_store::consumequeue::CqEntry;
use rocketraft_store::io::Storage;
use rocketraft_store::{
    CommitLog, CommitLogOffset, Dispatcher, IoCounts, QueueOffset, StoreError, StoreResult,
};

use crate::clock::GroupClock;
use crate::gate::WriteGate;
use crate::log_store::lock;
use crate::membership::{Members, MembershipError};
use crate::meta::MetaStore;
use crate::network::Network;
use crate::node::{await_current_leader, leads_with_current_state, RaftNode};
use crate::offsets::{OffsetBatchConfig, OffsetCommitter};
use crate::proposer::{Placed, ProposeError, Proposer, ProposerConfig, Replication};
use crate::state_machine::StateMachine;
use crate::transfer::{TransferError, Transferred};
use crate::types::{ConsumerOffset, MetaCommand, NodeId, Request, TypeConfig};

/// How the replica's send path runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// Proposals in flight at once (see `ProposerConfig::in_flight_max`). Default 1.
    pub proposals_in_flight_max: usize,
    /// When a send is acknowledged. Default quorum.
    pub replication: Replication,
    pub offsets: OffsetBatchConfig,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            proposals_in_flight_max: 1,
            replication: Replication::Quorum,
            offsets: OffsetBatchConfig::default(),
        }
    }
}

/// One broker group replica; cheap to clone (every part is a shared handle).
pub struct Replica<S: Storage + Clone, M: MetaStore> {
    id: NodeId,
    raft: Raft<TypeConfig>,
    state_machine: StateMachine<S, M>,
    log: Arc<Mutex<CommitLog<S>>>,
    dispatcher: Arc<Mutex<Dispatcher<S>>>,
    proposer: Proposer,
    offsets: OffsetCommitter,
    clock: Arc<GroupClock>,
    /// Asks retention to measure the disk now (see [`Replica::admit_new_writes`]).
    disk_check: Arc<tokio::sync::Notify>,
    /// Every proposal passes it; a leadership transfer holds it (see [`crate::gate`]).
    gate: Arc<WriteGate>,
    /// Calls a peer outside openraft (a leadership transfer's `TimeoutNow`).
    network: Network,
    /// Started empty outside the peer list: it waits to be added (see [`Replica::is_voter`]).
    joins_later: bool,
    /// Whether a leader called since the start (see [`Replica::heard_from_leader`]).
    heard_leader: Arc<std::sync::atomic::AtomicBool>,
    /// The incarnations the group recorded.
    known: crate::network::Incarnations,
}

impl<S: Storage + Clone, M: MetaStore> Clone for Replica<S, M> {
    fn clone(&self) -> Self {
        Replica {
            id: self.id,
            raft: self.raft.clone(),
            state_machine: self.state_machine.clone(),
            log: self.log.clone(),
            dispatcher: self.dispatcher.clone(),
            proposer: self.proposer.clone(),
            offsets: self.offsets.clone(),
            clock: self.clock.clone(),
            disk_check: self.disk_check.clone(),
            gate: self.gate.clone(),
            network: self.network.clone(),
            joins_later: self.joins_later,
            known: self.known.clone(),
            heard_leader: self.heard_leader.clone(),
        }
    }
}

/// What a read of a queue found (see [`Replica::read_queue`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueRead {
    /// Records back to back (a pull response's body), how many, and the offset to read next.
    Found { body: Vec<u8>, messages: usize, next: QueueOffset },
    /// Entries were scanned but none matched: read on from `next`.
    NoMatch { next: QueueOffset },
    /// Nothing at or after the offset yet (or no such queue).
    NoNew,
    /// The offset is outside the queue: `next` is where reading can go on.
    Moved { next: QueueOffset },
}

/// What a read does when the queues are locked by someone else.
#[derive(Clone, Copy)]
enum Busy {
    Wait,
    Skip,
}

/// What a read does with a queue entry, by its tag code.
enum Select {
    Take,
    Skip,
    Stop,
}

/// A queue read's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Records returned at most.
    pub messages_max: usize,
    /// Bytes returned at most (the first record always goes).
    pub bytes_max: usize,
    /// Queue entries scanned at most per record wanted, looking for tag matches.
    pub scan_per_message: usize,
}

/// The CommitLog's extent and I/O counters, for runtime information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    pub min: u64,
    pub max: u64,
    pub flushed: u64,
    pub io: IoCounts,
}

/// Follows changes of the leader this replica sees.
pub struct LeaderWatch {
    metrics: tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, openraft::BasicNode>>,
}

impl LeaderWatch {
    /// The leader now, marking it seen.
    pub fn current(&mut self) -> Option<NodeId> {
        self.metrics.borrow_and_update().current_leader
    }

    /// Waits for a change of the replica's Raft state (not necessarily of the leader: compare
    /// with [`LeaderWatch::peek`]). An error: Raft stopped.
    pub async fn changed(&mut self) -> Result<(), ()> {
        self.metrics.changed().await.map_err(|_| ())
    }

    /// The leader now, without marking it seen.
    pub fn peek(&self) -> Option<NodeId> {
        self.metrics.borrow().current_leader
    }
}

/// The largest entry payload the log takes that also crosses to a follower in one frame.
fn replicable(log_max: usize) -> usize {
    log_max.min(crate::network::ENTRY_PAYLOAD_REPLICABLE_MAX_BYTES)
}

impl<S: Storage + Clone, M: MetaStore> Replica<S, M> {
    /// Adds this replica's Raft and storage metrics to a scrape.
    pub fn gather(&self, out: &mut rocketraft_metrics::Gather) {
        crate::stats::gather(&self.raft, &self.log, self.state_machine.stats(), out);
    }

    /// The replica of a started node, with its proposer and offset committer running.
    /// Starts the replica's send path and offset committer over `node`; `now_ms` is this
    /// replica's wall clock now (the base of its [`GroupClock`]).
    pub fn start(node: &RaftNode<S, M>, config: ReplicaConfig, now_ms: i64) -> Self {
        let clock = Arc::new(GroupClock::new(now_ms));
        let proposer_config = ProposerConfig {
            entry_payload_max_bytes: replicable(lock(&node.log).entry_payload_max_bytes()),
            in_flight_max: config.proposals_in_flight_max.max(1),
            replication: config.replication,
            ..Default::default()
        };
        let parts = crate::proposer::ProposerParts {
            raft: node.raft.clone(),
            log: node.log.clone(),
            dispatcher: node.dispatcher.clone(),
            local_appends: node.local_appends.clone(),
            clock: clock.clone(),
            gate: node.gate.clone(),
            stats: node.stats.clone(),
        };
        let proposer = Proposer::start(parts, proposer_config);
        Replica {
            id: node.raft.metrics().borrow().id,
            offsets: OffsetCommitter::start(node.raft.clone(), node.gate.clone(), config.offsets),
            raft: node.raft.clone(),
            state_machine: node.state_machine.clone(),
            log: node.log.clone(),
            dispatcher: node.dispatcher.clone(),
            proposer,
            clock,
            disk_check: node.disk_check.clone(),
            gate: node.gate.clone(),
            network: node.network.clone(),
            joins_later: node.joins_later,
            heard_leader: node.heard_leader.clone(),
            known: node.known.clone(),
        }
    }

    /// The group's time now, in Unix milliseconds (see [`GroupClock`]): what a record is
    /// stamped with and what decides that a parked message or a half message is due. When
    /// this replica leads in a term its clock was not yet moved for, it is first moved
    /// forward to the newest store timestamp in its log, so the group's time does not run
    /// backwards when a replica whose clock is behind takes over.
    pub fn now_ms(&self) -> i64 {
        let (term, leads) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (m.current_term, m.current_leader == Some(m.id))
        };
        if leads && !self.clock.moved_for(term) {
            keep_up_with_log(&self.clock, term, &self.log, &self.dispatcher);
        }
        self.clock.now_ms()
    }

    /// How far this replica's clock has been moved forward to keep up with its group's (0
    /// when it never was behind).
    pub fn clock_ahead_ms(&self) -> i64 {
        self.clock.ahead_ms()
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    // -----------------------------------------------------------------------------------------
    // Role

    /// Whether this replica serves as its group's master: it leads, with current state (see
    /// [`leads_with_current_state`]).
    pub fn is_master(&self) -> bool {
        leads_with_current_state(&self.raft.metrics().borrow())
    }

    /// [`Replica::is_master`], waiting up to `catch_up_ms` for a newly elected leader's state
    /// to become current.
    pub async fn master_ready(&self, catch_up_ms: u64) -> bool {
        await_current_leader(&self.raft, catch_up_ms).await
    }

    /// Waits, up to `timeout`, until every entry in this replica's log (as it is now) is
    /// applied. [`Replica::master_ready`] is not enough for state derived from the log as a
    /// whole: a leader restarted after a power loss may resume its term, and then counts as
    /// current as soon as it applied an entry of that term, before it re-applied the rest.
    pub async fn whole_log_applied(&self, timeout: Duration) -> bool {
        let last = self.raft.metrics().borrow().last_log_index;
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(last, "apply the whole log")
            .await
            .is_ok()
    }

    /// Whether this replica may register as master now: it leads, a linearizable read
    /// confirms it (openraft 0.9 has no check-quorum, so a stale leader may still think it
    /// leads), and it has applied up to that read.
    pub async fn confirmed_master(&self, timeout: Duration) -> bool {
        if self.raft.metrics().borrow().current_leader != Some(self.id) {
            return false;
        }
        let Ok(Ok(read)) = tokio::time::timeout(timeout, self.raft.ensure_linearizable()).await
        else {
            return false;
        };
        let index = read.map(|l| l.index);
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(index, "apply before serving as master")
            .await
            .is_ok()
    }

    /// Whether this replica votes in its group's membership as it knows it (a replica being
    /// added is a learner first; a removed one is none). Before Raft has published any
    /// membership (the first moments after a start), a replica counts as one, unless it
    /// started empty outside the peer list (it waits to be added).
    pub fn is_voter(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        if membership.voter_ids().next().is_none() {
            return !self.joins_later;
        }
        membership.voter_ids().any(|v| v == self.id)
    }

    /// Whether a leader called this replica (an AppendEntries in its term or a later one)
    /// since it started. A replica removed from its group while it was down still finds itself
    /// a voter in the membership it last applied (and openraft restores the leader it last
    /// knew, itself included), but no leader calls it any more. (A leader never hears from one:
    /// [`Replica::confirmed_master`] is its evidence.)
    pub fn heard_from_leader(&self) -> bool {
        self.heard_leader.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The Raft term this replica is in.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// Follows the leader this replica sees.
    pub fn leader_watch(&self) -> LeaderWatch {
        LeaderWatch { metrics: self.raft.metrics() }
    }

    /// The Raft index applied here: the version of the metadata tables read now.
    pub fn applied_index(&self) -> u64 {
        self.raft.metrics().borrow().last_applied.map_or(0, |l| l.index)
    }

    /// This replica's Raft state as `(key, value)` pairs under `raft*` keys, for runtime
    /// information: node id, role, term, leader, last log index, applied, snapshot, members
    /// and (on the leader) how far each replica's log matches.
    pub fn raft_status(&self) -> Vec<(String, String)> {
        let m = self.raft.metrics().borrow().clone();
        let index = |l: Option<openraft::LogId<u64>>| l.map_or(0, |l| l.index).to_string();
        let members: Vec<String> =
            m.membership_config.voter_ids().map(|id| id.to_string()).collect();
        let learners: Vec<String> =
            m.membership_config.membership().learner_ids().map(|id| id.to_string()).collect();
        let mut out: Vec<(String, String)> = [
            ("raftNodeId", self.id.to_string()),
            ("raftRole", format!("{:?}", m.state)),
            ("raftTerm", m.current_term.to_string()),
            ("raftLeader", m.current_leader.map_or_else(|| "none".to_owned(), |l| l.to_string())),
            ("raftLastLogIndex", m.last_log_index.unwrap_or(0).to_string()),
            ("raftLastApplied", index(m.last_applied)),
            ("raftSnapshot", index(m.snapshot)),
            ("raftMembers", members.join(",")),
            ("raftLearners", learners.join(",")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        out.extend(m.replication.iter().flatten().map(|(id, log)| {
            (
                format!("raftMatched.{id}"),
                log.map_or_else(|| "none".to_owned(), |l| l.index.to_string()),
            )
        }));
        out
    }

    // -----------------------------------------------------------------------------------------
    // Writes

    /// The largest payload one proposal may carry, once the disk admits a new write of about
    /// `bytes` (an error while the disk is at its usage limit, or the write would take it past:
    /// nothing new is proposed then). Once the writes since the disk was last measured took a
    /// quarter of the room it had left, retention is asked to measure it now.
    pub fn admit_new_writes(&self, bytes: u64) -> StoreResult<usize> {
        let mut log = lock(&self.log);
        let admitted = log.admit_new_writes(bytes);
        if log.disk_measure_due() {
            self.disk_check.notify_one();
        }
        admitted?;
        Ok(replicable(log.entry_payload_max_bytes()))
    }

    /// Proposes encoded records (see [`Proposer::submit`]); answers once they are stored as
    /// the replication mode says.
    pub async fn propose(&self, records: Vec<Vec<u8>>) -> Result<Vec<Placed>, ProposeError> {
        self.proposer.submit(records).await
    }

    /// Replicates metadata commands; answers once they are committed and applied here.
    pub async fn propose_metadata(&self, commands: Vec<MetaCommand>) -> Result<(), ProposeError> {
        let written = {
            let _passing = self.gate.pass().await;
            self.raft.client_write_ff(Request::Metadata(commands)).await
        };
        let answer = match written {
            Ok(answer) => answer.await,
            Err(e) => return Err(ProposeError::Raft(e.to_string())),
        };
        match answer {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(openraft::error::ClientWriteError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader { leader: f.leader_id })
            }
            Ok(Err(e)) => Err(ProposeError::Raft(e.to_string())),
            Err(e) => Err(ProposeError::Raft(e.to_string())),
        }
    }

    /// Hands this replica's leadership over to the voter `to`, within `timeout` (see
    /// [`crate::transfer`]): answers who leads then, the target or (rarely) another voter.
    /// Writes wait at the gate meanwhile and are refused as "not master" once it is over.
    pub async fn transfer_leader(
        &self,
        to: NodeId,
        timeout: Duration,
    ) -> Result<Transferred, TransferError> {
        crate::transfer::transfer(&self.raft, &self.network, &self.gate, self.id, to, timeout).await
    }

    /// Adds replica `id` at Raft address `addr` to the group this replica leads (see
    /// [`crate::membership`]).
    pub async fn add_replica(
        &self,
        id: NodeId,
        addr: &str,
        timeout: Duration,
    ) -> Result<Members, MembershipError> {
        let peers = (&self.network, &self.known);
        crate::membership::add_replica(&self.raft, &self.gate, peers, id, addr, timeout).await
    }

    /// Removes replica `id` from the group this replica leads (see [`crate::membership`]).
    pub async fn remove_replica(
        &self,
        id: NodeId,
        timeout: Duration,
    ) -> Result<Members, MembershipError> {
        crate::membership::remove_replica(&self.raft, &self.gate, id, timeout).await
    }

    /// The voter this replica would hand leadership to (see [`crate::transfer::candidate`]).
    pub fn transfer_candidate(&self) -> Option<NodeId> {
        crate::transfer::candidate(&self.raft)
    }

    /// Queues a consumer offset commit (batched; see [`OffsetCommitter::commit`]).
    pub fn commit_offset(&self, offset: ConsumerOffset) {
        self.offsets.commit(offset);
    }

    /// Commits a consumer offset and waits until it is committed through Raft.
    pub async fn commit_offset_and_wait(&self, offset: ConsumerOffset) -> bool {
        self.offsets.commit_and_wait(offset).await
    }

    // -----------------------------------------------------------------------------------------
    // Reads

    /// The replicated metadata: topics, groups, consumer offsets.
    pub fn metadata(&self) -> &StateMachine<S, M> {
        &self.state_machine
    }

    /// A queue's `[min, max)` offsets, if the queue exists here.
    pub fn queue_bounds(&self, topic: &str, queue_id: i32) -> Option<(QueueOffset, QueueOffset)> {
        lock(&self.dispatcher).queue(topic, queue_id).map(|q| (q.min_offset(), q.max_offset()))
    }

    /// Reads committed records of a queue from `offset`: those whose tags code `matches`
    /// accepts, within `limits`. Also answers the queue's `[min, max)` offsets at the read.
    /// Records retention removed while the queue still points to them (it is trimmed once the
    /// Raft purge completes) send the reader on to the first message still stored: a master
    /// says no match from there (RocketMQ's PULL_RETRY_IMMEDIATELY, which clients follow at
    /// once), a follower says the offset moved, which clients take only from a master.
    pub fn read_queue(
        &self,
        topic: &str,
        queue_id: i32,
        offset: QueueOffset,
        limits: ReadLimits,
        matches: impl Fn(i64) -> bool,
    ) -> StoreResult<(QueueRead, QueueOffset, QueueOffset)> {
        self.read_entries(topic, queue_id, offset, limits, Busy::Wait, |tags_code| {
            if matches(tags_code) {
                Select::Take
            } else {
                Select::Skip
            }
        })
    }

    /// Reads the records of a parked queue (delay level, timer step) from `offset` that are
    /// due by `now_ms` (their tag code is their due time), stopping at the first that is not:
    /// in such a queue the record stored first is due first, and none may be passed over.
    /// Nothing due reads as [`QueueRead::NoNew`], and so does a read while the queues are
    /// busy (a snapshot flushing them): a background service must not hold a runtime worker
    /// waiting for them, it looks again on its next tick.
    pub fn read_due(
        &self,
        topic: &str,
        queue_id: i32,
        offset: QueueOffset,
        limits: ReadLimits,
        now_ms: i64,
    ) -> StoreResult<QueueRead> {
        let read = self.read_entries(topic, queue_id, offset, limits, Busy::Skip, |due| {
            if due <= now_ms {
                Select::Take
            } else {
                Select::Stop
            }
        })?;
        Ok(match read.0 {
            QueueRead::NoMatch { .. } => QueueRead::NoNew,
            other => other,
        })
    }

    fn read_entries(
        &self,
        topic: &str,
        queue_id: i32,
        offset: QueueOffset,
        limits: ReadLimits,
        busy: Busy,
        select: impl Fn(i64) -> Select,
    ) -> StoreResult<(QueueRead, QueueOffset, QueueOffset)> {
        let (entries, min, max) = {
            let d = match (busy, self.dispatcher.try_lock()) {
                (_, Ok(d)) => d,
                (_, Err(std::sync::TryLockError::Poisoned(p))) => p.into_inner(),
                (Busy::Wait, Err(std::sync::TryLockError::WouldBlock)) => lock(&self.dispatcher),
                (Busy::Skip, Err(std::sync::TryLockError::WouldBlock)) => {
                    return Ok((QueueRead::NoNew, QueueOffset(0), QueueOffset(0)))
                }
            };
            let Some(q) = d.queue(topic, queue_id) else {
                return Ok((QueueRead::NoNew, QueueOffset(0), QueueOffset(0)));
            };
            let (min, max) = (q.min_offset(), q.max_offset());
            if offset < min || offset > max {
                let next = if offset < min { min } else { max };
                return Ok((QueueRead::Moved { next }, min, max));
            }
            if offset == max {
                return Ok((QueueRead::NoNew, min, max));
            }
            let scan = limits.messages_max.saturating_mul(limits.scan_per_message.max(1));
            (q.range(offset, scan)?, min, max)
        };
        let mut wanted: Vec<CqEntry> = Vec::new();
        let mut scanned = 0u64;
        let mut bytes = 0usize;
        for e in &entries {
            match select(e.tags_code) {
                Select::Stop => break,
                Select::Skip => {}
                Select::Take => {
                    if !wanted.is_empty() && bytes + e.size as usize > limits.bytes_max {
                        break;
                    }
                    bytes += e.size as usize;
                    wanted.push(*e);
                }
            }
            scanned += 1;
            if wanted.len() >= limits.messages_max {
                break;
            }
        }
        let next = QueueOffset(offset.0 + scanned);
        if wanted.is_empty() {
            return Ok((QueueRead::NoMatch { next }, min, max));
        }
        let mut body = Vec::new();
        let log_start = {
            let log = lock(&self.log);
            let start = log.start().position;
            if wanted[0].position >= start {
                log.read_queue_records_into(&wanted, &mut body)?;
                None
            } else {
                Some(start)
            }
        };
        let Some(log_start) = log_start else {
            return Ok((QueueRead::Found { body, messages: wanted.len(), next }, min, max));
        };
        let next = match lock(&self.dispatcher).queue(topic, queue_id) {
            Some(q) => q.first_at_or_after(log_start)?,
            None => return Ok((QueueRead::NoNew, min, max)),
        };
        let read =
            if self.is_master() { QueueRead::NoMatch { next } } else { QueueRead::Moved { next } };
        Ok((read, min, max))
    }

    /// The store time of the message at `offset` of a queue, 0 if the queue has none there.
    pub fn store_time_at(
        &self,
        topic: &str,
        queue_id: i32,
        offset: QueueOffset,
    ) -> StoreResult<i64> {
        let entry = {
            let d = lock(&self.dispatcher);
            d.queue(topic, queue_id).map(|q| q.get(offset)).transpose()?.flatten()
        };
        match entry {
            Some(e) => store_time_in(&lock(&self.log), e),
            None => Ok(0),
        }
    }

    /// The store time of a queue's oldest message, `None` if it has none.
    pub fn earliest_store_time(&self, topic: &str, queue_id: i32) -> StoreResult<Option<i64>> {
        let first = {
            let d = lock(&self.dispatcher);
            d.queue(topic, queue_id).map(|q| q.get(q.min_offset())).transpose()?.flatten()
        };
        first.map(|e| store_time_in(&lock(&self.log), e)).transpose()
    }

    /// The first offset of a queue whose message was stored at or after `timestamp` (0 for no
    /// such queue).
    pub fn search_offset(&self, topic: &str, queue_id: i32, timestamp: i64) -> StoreResult<u64> {
        let log = lock(&self.log);
        let d = lock(&self.dispatcher);
        Ok(match d.queue(topic, queue_id) {
            Some(q) => q.search_by_timestamp(timestamp, |e| store_time_in(&log, e))?.0,
            None => 0,
        })
    }

    /// The record stored at `position` (a msgId's offset), checked.
    pub fn record_at(&self, position: CommitLogOffset) -> StoreResult<Bytes> {
        let log = lock(&self.log);
        let head = log.read_raw(position, 4)?;
        let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let mut records = log.read_records(&[(position, size)])?;
        Ok(records.remove(0))
    }

    /// Positions of records indexed under `key` in `topic`, stored within `[begin, end]` ms, at
    /// most `max`; with the index's last update (timestamp, position).
    pub fn query_key(
        &self,
        topic: &str,
        key: &str,
        begin: i64,
        end: i64,
        max: usize,
    ) -> StoreResult<(Vec<CommitLogOffset>, (i64, i64))> {
        let d = lock(&self.dispatcher);
        let index = d.index();
        Ok((index.query(topic, key, begin, end, max)?, index.last_update()))
    }

    /// The CommitLog's extent and I/O counters.
    pub fn log_stats(&self) -> LogStats {
        let log = lock(&self.log);
        LogStats {
            min: log.start().position.0,
            max: log.end().position.0,
            flushed: log.flushed().position.0,
            io: log.io_counts(),
        }
    }
}

/// Moves `clock` forward to the newest store timestamp in the log this replica leads with
/// in `term` ([`GroupClock::not_before`]) and answers that stamp: the proposer's term start
/// and the first [`Replica::now_ms`] of a term both come here.
pub(crate) fn keep_up_with_log<S: Storage + Clone>(
    clock: &GroupClock,
    term: u64,
    log: &Mutex<CommitLog<S>>,
    dispatcher: &Mutex<Dispatcher<S>>,
) -> i64 {
    let newest = newest_store_timestamp(&lock(log), dispatcher);
    clock.not_before(term, newest);
    newest
}

/// The newest store timestamp in the log: its last records' (the proposer keeps stamps in log
/// order). The entries not dispatched yet are looked through from the end for one that holds
/// records; if none does, the dispatcher's newest; if it dispatched none since it opened, the
/// rest of the log, back to its start (entry headers only until one holds records). 0 when the
/// log holds no records. An entry that cannot be read (damage, which quarantines the log as
/// it is read, and the replica stops) is logged and the dispatcher's newest answered.
fn newest_store_timestamp<S: Storage + Clone>(
    log: &CommitLog<S>,
    dispatcher: &Mutex<Dispatcher<S>>,
) -> i64 {
    use rocketraft_store::{EntryKind, RaftIndex};
    let (dispatched_to, dispatched_newest) = {
        let d = lock(dispatcher);
        (d.next().next_index.0, d.newest_store_timestamp())
    };
    let (start, end) = (log.start().next_index.0, log.end().next_index.0);
    let from = if dispatched_newest > 0 { dispatched_to.max(start) } else { start };
    let unreadable = |index: u64, why: String| {
        tracing::warn!(index, error = %why, "cannot read the newest store timestamp in the log");
        dispatched_newest
    };
    for index in (from..end).rev() {
        let meta = match log.entry_meta(RaftIndex(index)) {
            Ok(meta) => meta,
            Err(e) => return unreadable(index, e.to_string()),
        };
        if meta.kind != EntryKind::Messages {
            continue;
        }
        let entry = match log.entries(RaftIndex(index)..RaftIndex(index + 1)) {
            Ok(mut entries) => entries.pop(),
            Err(e) => return unreadable(index, e.to_string()),
        };
        let Some(entry) = entry else { return unreadable(index, "no entry".into()) };
        return match rocketraft_protocol::message::decode_records(&entry.payload) {
            Ok(records) => {
                records.iter().map(|r| r.store_timestamp).max().unwrap_or(0).max(dispatched_newest)
            }
            Err(e) => unreadable(index, e.to_string()),
        };
    }
    dispatched_newest
}

/// The store time of the record a queue entry points to.
fn store_time_in<S: Storage>(log: &CommitLog<S>, e: CqEntry) -> StoreResult<i64> {
    let raw = log.read_records(&[(e.position, e.size)])?;
    rocketraft_protocol::message::RecordView::decode(&raw[0])
        .map(|r| r.store_timestamp)
        .map_err(|err| StoreError::Corrupt { position: e.position, reason: err.to_string() })
}
