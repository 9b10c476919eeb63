//! The leader's send path into Raft: queue offsets assigned in log order, many sends batched
//! into one proposal.
//!
//! Queue offsets must be dense in the order entries reach the log (dispatch refuses a gap). So
//! offsets go to exactly the records dispatch puts in a queue (`admit::takes_queue_offset`:
//! not transaction half messages or rollbacks, which keep offset 0 as in RocketMQ), and
//! one task owns the assignment, takes submissions in arrival order, assigns offsets, patches
//! them into the records, and proposes one batch at a time: while a batch is in flight the
//! next one collects every submission that arrives (up to the limits), so throughput grows
//! with load instead of with the number of proposals.
//!
//! On becoming leader (a new term) it first waits until every entry in its log is applied,
//! then takes each queue's next offset from its ConsumeQueue (DLedger does the same before a
//! new leader serves). A failed proposal answers its submitters with an error and discards the
//! assignments, which are rebuilt that way before the next batch. Followers answer
//! `NotLeader` with the leader they know of.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::Raft;
use rocketraft_protocol::message::{patch_queue_offset, RecordView};
use rocketraft_store::admit;
use rocketraft_store::entry::ENTRY_HEADER_BYTES;
use rocketraft_store::io::Storage;
use rocketraft_store::{CommitLogOffset, Dispatcher, QueueOffset};
use tokio::sync::{mpsc, oneshot};

use crate::log_store::lock;
use crate::types::{NodeId, Request, TypeConfig};

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
    /// The largest entry payload the log takes (`CommitLog::entry_payload_max_bytes`): a
    /// submission larger is refused, and a batch never grows past it. Default 1 GiB less the
    /// entry header (the default segment).
    pub entry_payload_max_bytes: usize,
}

impl Default for ProposerConfig {
    fn default() -> Self {
        ProposerConfig {
            pending_max: 10_000,
            batch_bytes_max: 1 << 20,
            batch_records_max: 1024,
            catch_up_ms_max: 3_000,
            entry_payload_max_bytes: (1 << 30) - ENTRY_HEADER_BYTES,
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
    pub fn start<S: Storage + Clone>(
        raft: Raft<TypeConfig>,
        dispatcher: Arc<Mutex<Dispatcher<S>>>,
        config: ProposerConfig,
    ) -> Self {
        let (tx, rx) = mpsc::channel(config.pending_max);
        let entry_payload_max_bytes = config.entry_payload_max_bytes;
        tokio::spawn(run(raft, dispatcher, config, rx));
        Proposer { tx, entry_payload_max_bytes }
    }

    /// Stores `records` (encoded RocketMQ records; their QUEUEOFFSET is assigned here) in one
    /// entry, in order, and answers where each went once the entry is committed and applied.
    /// Records dispatch could not index (`admit::check_record`) and submissions larger than an
    /// entry are refused here, before anything is proposed: what reaches the log must apply on
    /// every replica.
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
}

async fn run<S: Storage + Clone>(
    raft: Raft<TypeConfig>,
    dispatcher: Arc<Mutex<Dispatcher<S>>>,
    config: ProposerConfig,
    mut rx: mpsc::Receiver<Submission>,
) {
    let mut assigner: Option<Assigner> = None;
    // A submission that did not fit the last batch opens the next one.
    let mut held: Option<Submission> = None;
    loop {
        let first = match held.take() {
            Some(s) => s,
            None => match rx.recv().await {
                Some(s) => s,
                None => return,
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
        let metrics = raft.metrics().borrow().clone();
        if metrics.current_leader != Some(metrics.id) {
            assigner = None;
            fail(batch, ProposeError::NotLeader { leader: metrics.current_leader });
            continue;
        }
        if assigner.as_ref().is_none_or(|a| a.term != metrics.current_term) {
            // A new term: apply the whole log first, so the queues show every offset in it.
            let last = metrics.last_log_index;
            let caught_up = raft
                .wait(Some(Duration::from_millis(config.catch_up_ms_max)))
                .applied_index_at_least(last, "new leader applies its log")
                .await;
            if caught_up.is_err() {
                fail(batch, ProposeError::NotLeader { leader: None });
                continue;
            }
            assigner = Some(Assigner { term: metrics.current_term, next: HashMap::new() });
        }
        let a = assigner.as_mut().expect("set above");
        let mut payload = Vec::with_capacity(bytes);
        let mut placed = Vec::with_capacity(batch.len());
        for s in &mut batch {
            let mut mine = Vec::with_capacity(s.records.len());
            for r in &mut s.records {
                let view = RecordView::decode(r).expect("checked in submit");
                if !admit::takes_queue_offset(view.sys_flag) {
                    // Not dispatched to a queue: no offset of it (RocketMQ stores 0).
                    patch_queue_offset(r, 0);
                    mine.push((QueueOffset(0), payload.len()));
                    payload.extend_from_slice(r);
                    continue;
                }
                let key = (view.topic.to_owned(), view.queue_id);
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
        match raft.client_write(Request::Messages(payload.into())).await {
            Ok(resp) => {
                let base = resp.data.entry_position + ENTRY_HEADER_BYTES as u64;
                for (s, mine) in batch.into_iter().zip(placed) {
                    let out = mine
                        .into_iter()
                        .map(|(queue_offset, at)| Placed {
                            queue_offset,
                            position: CommitLogOffset(base + at as u64),
                            index: resp.log_id.index,
                        })
                        .collect();
                    let _ = s.reply.send(Ok(out));
                }
            }
            Err(e) => {
                assigner = None;
                let err = match e.forward_to_leader() {
                    Some(f) => ProposeError::NotLeader { leader: f.leader_id },
                    None => ProposeError::Raft(e.to_string()),
                };
                fail(batch, err);
            }
        }
    }
}

fn fail(batch: Vec<Submission>, err: ProposeError) {
    for s in batch {
        let _ = s.reply.send(Err(err.clone()));
    }
}
