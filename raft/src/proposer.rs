//! The leader's send path into Raft: queue offsets assigned in log order, many sends batched
//! into one proposal.
//!
//! Queue offsets must be dense in the order entries reach the log (dispatch refuses a gap). So
//! offsets go to exactly the records dispatch puts in a queue (`admit::takes_queue_offset`:
//! not transaction half messages or rollbacks, which keep offset 0 as in RocketMQ), and
//! one task owns the assignment, takes submissions in arrival order, assigns offsets, patches
//! them into the records, and proposes batches in that order.
//!
//! Proposals are pipelined: up to `in_flight_max` batches are proposed and not yet answered
//! (openraft appends them in the order they were proposed, so offsets stay in log order), and
//! while they are in flight the next batch collects every submission that arrives (up to the
//! limits). Answers come back in log order and each submitter is answered exactly once.
//!
//! On becoming leader (a new term) it first waits until every entry in its log is applied,
//! then takes each queue's next offset from its ConsumeQueue (DLedger does the same before a
//! new leader serves). A failed proposal answers its submitters with an error and discards the
//! assignments; nothing new is proposed until every proposal in flight has been answered
//! (they fail too, or are committed: either way the log then shows them), and the assignments
//! are rebuilt from the applied log before the next batch. So a leader change with proposals
//! in flight gives no offset twice and leaves no gap. Followers answer `NotLeader` with the
//! leader they know of.
//!
//! With [`Replication::Leader`] (RocketMQ's asynchronous replication) a proposal's submitters
//! are answered as soon as the leader's own log has its entry ([`crate::local_ack`]), before a
//! majority does; the commit answer then only keeps the pipeline's accounting. What that mode
//! can lose is in [`Replication::Leader`]'s documentation.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use openraft::Raft;
use rocketraft_protocol::message::{patch_queue_offset, patch_store_timestamp, RecordView};
use rocketraft_store::admit;
use rocketraft_store::entry::ENTRY_HEADER_BYTES;
use rocketraft_store::io::Storage;
use rocketraft_store::{CommitLog, CommitLogOffset, Dispatcher, QueueOffset};
use tokio::sync::{mpsc, oneshot};

use crate::clock::GroupClock;
use crate::gate::WriteGate;
use crate::local_ack::{LocalAck, LocalAppends};
use crate::log_store::lock;
use crate::types::{NodeId, Request, TypeConfig};

/// When a send is acknowledged: RocketMQ's synchronous and asynchronous replication. In a
/// broker file: `replication = "quorum"` or `"leader"` under `[raft]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Replication {
    /// Once a majority has the entry (synced, in sync flush) and the leader applied it. Nothing
    /// acknowledged is lost while a majority survives. The default.
    #[default]
    Quorum,
    /// Once the leader's own log has it (synced in sync flush, written in async flush), before
    /// any follower does: the latency of one local append. A failover can then lose
    /// acknowledged messages (those no follower had when the leader failed: the new leader's
    /// log wins), and the new leader gives their queue offsets again, to other messages.
    Leader,
}

/// Proposals in flight at least, under [`Replication::Leader`]: a send is answered before its
/// proposal commits, so the next one must not wait for that commit to be proposed.
pub const LEADER_ACK_IN_FLIGHT_MIN: usize = 64;

/// Proposals not yet in the leader's own log at once, under [`Replication::Leader`]: the
/// leader appends and flushes them one at a time, so more only split what arrives into more,
/// smaller entries, each flushed on its own. Two keep the next append queued behind the
/// current flush; sends that arrive meanwhile wait and go out together.
pub const LEADER_ACK_UNFLUSHED_MAX: usize = 2;

/// Limits of the proposer (STYLE.md rule 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposerConfig {
    /// Submissions waiting for a batch; beyond it `submit` answers `Overloaded`. Default 10,000
    /// (DLedger's `maxPendingRequestsNum`).
    pub pending_max: usize,
    /// Bytes of records in one proposal. Default 1 MiB.
    pub batch_bytes_max: usize,
    /// Records in one proposal. Default 1,024.
    pub batch_records_max: usize,
    /// How long a new leader waits to apply its whole log before it refuses sends. Default 3 s.
    pub catch_up_ms_max: u64,
    /// Proposals in flight (proposed, not yet committed and applied) at once. Default 1
    /// (stop-and-wait): openraft 0.9 appends and flushes one proposal at a time on the leader,
    /// so with the replicas' disks shared (the dev cluster) more in flight only means smaller
    /// batches and more fsyncs (BENCHMARKS.md, "Pipelined proposals"). Raise it where the round
    /// trip, not the disk, bounds a round.
    pub in_flight_max: usize,
    /// The largest entry payload the log takes (`CommitLog::entry_payload_max_bytes`): a
    /// submission larger is refused, and a batch never grows past it. Default 1 GiB less the
    /// entry header (the default segment).
    pub entry_payload_max_bytes: usize,
    /// When a send is acknowledged. Default [`Replication::Quorum`].
    pub replication: Replication,
}

impl Default for ProposerConfig {
    fn default() -> Self {
        ProposerConfig {
            pending_max: 10_000,
            batch_bytes_max: 1 << 20,
            batch_records_max: 1024,
            catch_up_ms_max: 3_000,
            in_flight_max: 1,
            entry_payload_max_bytes: (1 << 30) - ENTRY_HEADER_BYTES,
            replication: Replication::Quorum,
        }
    }
}

/// Why a submission was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("too many sends waiting: try again")]
    Overloaded,
    #[error("invalid record: {0}")]
    Invalid(String),
    /// The proposal may or may not have been stored (the leader changed while it was in
    /// flight): the outcome is unknown to the caller.
    #[error("Raft: {0}")]
    Raft(String),
    #[error("the proposer has stopped")]
    Stopped,
}

/// Where a record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub queue_offset: QueueOffset,
    /// The record's CommitLog position (its PHYSICALOFFSET, the offset in its msgId).
    pub position: CommitLogOffset,
    /// The Raft index of the entry holding it.
    pub index: u64,
}

struct Submission {
    records: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<Vec<Placed>, ProposeError>>,
}

impl Submission {
    fn bytes(&self) -> usize {
        self.records.iter().map(Vec::len).sum()
    }
}

/// A handle to submit records; cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Submission>,
    entry_payload_max_bytes: usize,
}

impl Proposer {
    /// Starts the proposer task for this replica (call inside the node's runtime).
    pub fn start<S: Storage + Clone>(parts: ProposerParts<S>, config: ProposerConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.pending_max);
        let entry_payload_max_bytes = config.entry_payload_max_bytes;
        tokio::spawn(run(parts, config, rx));
        Proposer { tx, entry_payload_max_bytes }
    }

    /// Stores `records` (encoded RocketMQ records; their QUEUEOFFSET is assigned here) in one
    /// entry, in order, and answers where each went once the entry is committed and applied.
    /// Records dispatch could not index (`admit::check_record`) and submissions larger than an
    /// entry are refused here, before anything is proposed: what reaches the log must apply on
    /// every replica. Under [`Replication::Leader`] it answers once the leader's log has the
    /// entry instead.
    pub async fn submit(&self, records: Vec<Vec<u8>>) -> Result<Vec<Placed>, ProposeError> {
        let mut bytes = 0usize;
        for r in &records {
            let view = RecordView::decode(r).map_err(|e| ProposeError::Invalid(e.to_string()))?;
            if view.total_size != r.len() {
                return Err(ProposeError::Invalid(format!(
                    "record of {} bytes says it has {}",
                    r.len(),
                    view.total_size
                )));
            }
            admit::check_record(&view).map_err(ProposeError::Invalid)?;
            bytes += r.len();
        }
        if records.is_empty() || bytes > self.entry_payload_max_bytes {
            return Err(ProposeError::Invalid(format!(
                "{} records of {bytes} bytes: one entry holds 1 or more records and at most {} bytes",
                records.len(),
                self.entry_payload_max_bytes
            )));
        }
        let (reply, rx) = oneshot::channel();
        self.tx.try_send(Submission { records, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ProposeError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => ProposeError::Stopped,
        })?;
        rx.await.map_err(|_| ProposeError::Stopped)?
    }
}

/// Next offsets per queue, valid for one leader term.
struct Assigner {
    term: u64,
    next: HashMap<(String, i32), u64>,
    /// The newest store timestamp proposed (or in the log at the term's start): a record
    /// stamped earlier (its request read the clock before one proposed ahead of it) is
    /// stamped with it instead, so stamps never go backwards in log order, as in RocketMQ,
    /// which stamps under the CommitLog's lock.
    newest_stamp: i64,
}

type Answer = tokio::sync::oneshot::Receiver<openraft::raft::ClientWriteResult<TypeConfig>>;

/// A proposed batch waiting for its answer.
struct InFlight {
    /// Empty once answered from the leader's own log (`Replication::Leader`).
    batch: Vec<Submission>,
    /// Per submission: each record's queue offset and place in the entry's payload.
    placed: Vec<Vec<(QueueOffset, usize)>>,
    answer: Answer,
    payload: Bytes,
    /// `Replication::Leader`: answered once the leader's own log has the entry.
    local: Option<oneshot::Receiver<LocalAck>>,
}

/// What happened to the proposals in flight.
enum Event {
    /// The oldest one committed and applied, or failed.
    Answered(Result<openraft::raft::ClientWriteResult<TypeConfig>, oneshot::error::RecvError>),
    /// The oldest one waiting for the leader's own log is in it (or its append failed).
    InLocalLog(Result<LocalAck, oneshot::error::RecvError>),
}

/// What the proposer works with: the replica's Raft, log, queues, own appends
/// ([`crate::RaftNode::local_appends`]), clock, write gate and counters.
pub struct ProposerParts<S: Storage + Clone> {
    pub raft: Raft<TypeConfig>,
    pub log: Arc<Mutex<CommitLog<S>>>,
    pub dispatcher: Arc<Mutex<Dispatcher<S>>>,
    pub local_appends: Arc<LocalAppends>,
    pub clock: Arc<GroupClock>,
    pub gate: Arc<WriteGate>,
    pub stats: Arc<crate::RaftStats>,
}

async fn run<S: Storage + Clone>(
    parts: ProposerParts<S>,
    config: ProposerConfig,
    mut rx: mpsc::Receiver<Submission>,
) {
    let ProposerParts { raft, log, dispatcher, local_appends, clock, gate, stats } = parts;
    let leader_ack = config.replication == Replication::Leader;
    let in_flight_max = if leader_ack {
        config.in_flight_max.max(LEADER_ACK_IN_FLIGHT_MIN)
    } else {
        config.in_flight_max.max(1)
    };
    let mut assigner: Option<Assigner> = None;
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    // A submission that did not fit the last batch opens the next one.
    let mut held: Option<Submission> = None;
    // Set when a proposal failed: nothing new is proposed until the pipeline is empty.
    let mut draining = false;
    // Every handle is gone: answer what is in flight, then end.
    let mut closed = false;
    loop {
        stats.proposals_in_flight.set(in_flight.len() as i64);
        stats.proposals_in_flight_peak.raise_to(in_flight.len() as i64);
        if closed && in_flight.is_empty() {
            return;
        }
        let unflushed_room = !leader_ack
            || in_flight.iter().filter(|f| f.local.is_some()).count() < LEADER_ACK_UNFLUSHED_MAX;
        let room = in_flight.len() < in_flight_max && unflushed_room && !draining && !closed;
        let first = tokio::select! {
            biased;
            event = next_event(&mut in_flight) => {
                match event {
                    Event::Answered(answered) => {
                        let done = in_flight.pop_front().expect("head answered");
                        if leader_ack {
                            local_appends.forget(&done.payload);
                        }
                        if !answer(done.batch, done.placed, answered) {
                            assigner = None;
                            draining = true;
                        }
                        if in_flight.is_empty() {
                            draining = false;
                        }
                    }
                    Event::InLocalLog(ack) => {
                        let f = in_flight
                            .iter_mut()
                            .find(|f| f.local.is_some())
                            .expect("a proposal waited for the local log");
                        f.local = None;
                        // Err: its append failed; the commit answer will tell its submitters.
                        if let Ok(ack) = ack {
                            let (batch, placed) =
                                (std::mem::take(&mut f.batch), std::mem::take(&mut f.placed));
                            answer_placed(batch, placed, ack.entry_position, ack.index);
                        }
                    }
                }
                continue;
            }
            s = next(&mut held, &mut rx), if room => match s {
                Some(s) => s,
                None => {
                    closed = true;
                    continue;
                }
            },
        };
        let (mut bytes, mut count) = (first.bytes(), first.records.len());
        let mut batch = vec![first];
        while bytes < config.batch_bytes_max && count < config.batch_records_max {
            match rx.try_recv() {
                Ok(s) if bytes + s.bytes() > config.entry_payload_max_bytes => {
                    held = Some(s);
                    break;
                }
                Ok(s) => {
                    bytes += s.bytes();
                    count += s.records.len();
                    batch.push(s);
                }
                Err(_) => break,
            }
        }
        // A leadership transfer holds new proposals back here; once through, this one is
        // handed to Raft before the transfer reads the leader's last index.
        let passing = gate.pass().await;
        let metrics = raft.metrics().borrow().clone();
        if metrics.current_leader != Some(metrics.id) {
            assigner = None;
            fail(batch, ProposeError::NotLeader { leader: metrics.current_leader });
            continue;
        }
        if assigner.as_ref().is_none_or(|a| a.term != metrics.current_term) {
            // A new term (or a failed proposal): answer what is in flight first, then apply the
            // whole log, so the queues show every offset in it.
            while let Some(f) = in_flight.pop_front() {
                let answered = f.answer.await;
                if leader_ack {
                    local_appends.forget(&f.payload);
                }
                answer(f.batch, f.placed, answered);
            }
            draining = false;
            let last = raft.metrics().borrow().last_log_index;
            let caught_up = raft
                .wait(Some(Duration::from_millis(config.catch_up_ms_max)))
                .applied_index_at_least(last, "new leader applies its log")
                .await;
            if caught_up.is_err() {
                fail(batch, ProposeError::NotLeader { leader: None });
                continue;
            }
            // The group's time goes on from the newest stamp in the log (the whole log is
            // applied: nothing before this term is still to come).
            let term = metrics.current_term;
            let newest_stamp = crate::replica::keep_up_with_log(&clock, term, &log, &dispatcher);
            assigner =
                Some(Assigner { term: metrics.current_term, next: HashMap::new(), newest_stamp });
        }
        let a = assigner.as_mut().expect("set above");
        let mut payload = Vec::with_capacity(bytes);
        let mut placed = Vec::with_capacity(batch.len());
        for s in &mut batch {
            let mut mine = Vec::with_capacity(s.records.len());
            for r in &mut s.records {
                let view = RecordView::decode(r).expect("checked in submit");
                let (stamp, sys_flag) = (view.store_timestamp, view.sys_flag);
                let key = (view.topic.to_owned(), view.queue_id);
                if stamp < a.newest_stamp {
                    patch_store_timestamp(r, a.newest_stamp);
                } else {
                    a.newest_stamp = stamp;
                }
                if !admit::takes_queue_offset(sys_flag) {
                    // Not dispatched to a queue: no offset of it (RocketMQ stores 0).
                    patch_queue_offset(r, 0);
                    mine.push((QueueOffset(0), payload.len()));
                    payload.extend_from_slice(r);
                    continue;
                }
                let next = a.next.entry(key).or_insert_with_key(|(topic, queue)| {
                    lock(&dispatcher).queue(topic, *queue).map_or(0, |q| q.max_offset().0)
                });
                patch_queue_offset(r, *next as i64);
                mine.push((QueueOffset(*next), payload.len()));
                *next += 1;
                payload.extend_from_slice(r);
            }
            placed.push(mine);
        }
        let payload = Bytes::from(payload);
        let local = leader_ack.then(|| local_appends.register(&payload));
        let written = raft.client_write_ff(Request::Messages(payload.clone())).await;
        drop(passing);
        match written {
            Ok(answer) => {
                stats.proposals.inc();
                stats.batch_records.observe(count as u64);
                stats.batch_bytes.observe(payload.len() as u64);
                in_flight.push_back(InFlight { batch, placed, answer, payload, local })
            }
            Err(e) => {
                if leader_ack {
                    local_appends.forget(&payload);
                }
                // Raft stopped: what is in flight is answered with errors as it drops them.
                assigner = None;
                draining = !in_flight.is_empty();
                fail(batch, ProposeError::Raft(e.to_string()));
            }
        }
    }
}

/// The next thing to happen to the proposals in flight: the oldest one's answer, or the oldest
/// one waiting for the leader's own log getting there. Pending while there is none.
async fn next_event(in_flight: &mut VecDeque<InFlight>) -> Event {
    std::future::poll_fn(|cx| {
        if let Some(f) = in_flight.front_mut() {
            if let Poll::Ready(r) = Pin::new(&mut f.answer).poll(cx) {
                return Poll::Ready(Event::Answered(r));
            }
        }
        if let Some(local) = in_flight.iter_mut().find_map(|f| f.local.as_mut()) {
            if let Poll::Ready(r) = Pin::new(local).poll(cx) {
                return Poll::Ready(Event::InLocalLog(r));
            }
        }
        Poll::Pending
    })
    .await
}

/// The next submission: the one held over from the last batch, else the next to arrive.
async fn next(
    held: &mut Option<Submission>,
    rx: &mut mpsc::Receiver<Submission>,
) -> Option<Submission> {
    match held.take() {
        Some(s) => Some(s),
        None => rx.recv().await,
    }
}

/// Answers a proposal's submitters. False if the proposal failed.
fn answer(
    batch: Vec<Submission>,
    placed: Vec<Vec<(QueueOffset, usize)>>,
    answered: Result<
        openraft::raft::ClientWriteResult<TypeConfig>,
        tokio::sync::oneshot::error::RecvError,
    >,
) -> bool {
    let err = match answered {
        Ok(Ok(resp)) => {
            answer_placed(batch, placed, resp.data.entry_position, resp.log_id.index);
            return true;
        }
        Ok(Err(openraft::error::ClientWriteError::ForwardToLeader(f))) => {
            ProposeError::NotLeader { leader: f.leader_id }
        }
        Ok(Err(e)) => ProposeError::Raft(e.to_string()),
        // Raft dropped the answer: it stopped.
        Err(_) => ProposeError::Raft("Raft stopped before the proposal was answered".to_owned()),
    };
    fail(batch, err);
    false
}

/// Tells each submitter where its records went, in the entry at `entry_position`.
fn answer_placed(
    batch: Vec<Submission>,
    placed: Vec<Vec<(QueueOffset, usize)>>,
    entry_position: u64,
    index: u64,
) {
    let base = entry_position + ENTRY_HEADER_BYTES as u64;
    for (s, mine) in batch.into_iter().zip(placed) {
        let out = mine
            .into_iter()
            .map(|(queue_offset, at)| Placed {
                queue_offset,
                position: CommitLogOffset(base + at as u64),
                index,
            })
            .collect();
        let _ = s.reply.send(Ok(out));
    }
}

fn fail(batch: Vec<Submission>, err: ProposeError) {
    for s in batch {
        let _ = s.reply.send(Err(err.clone()));
    }
}
