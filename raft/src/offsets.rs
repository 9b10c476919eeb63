//! Consumer offsets: committed through Raft so every replica (and a new leader) has them.
//!
//! Consumers commit every 5 s per queue, usually oneway, and pulls piggyback commits too; one
//! Raft entry per commit would be wasteful, so commits are batched: a task collects them for up to
//! `batch_ms` (100 ms) or `batch_max` (1,024) distinct queues, keeps the last offset per (group,
//! topic, queue), and proposes them as one `CommitOffsets` command. Only the leader proposes; a
//! commit that reaches a follower, or is lost in a leader change, is simply sent again by the
//! consumer's next periodic commit (RocketMQ's at-least-once contract). Bounded: at most
//! `pending_max` commits wait; beyond that new ones are dropped and logged.
//!
//! A commit can also be awaited ([`OffsetCommitter::commit_and_wait`]): the answer comes once
//! the batch holding it has committed through Raft, so a consumer handing a queue over knows the
//! next owner reads its offset from any replica.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::Raft;
use tokio::sync::{mpsc, oneshot};

use crate::gate::WriteGate;
use crate::types::{ConsumerOffset, MetaCommand, Request, TypeConfig};

/// Batching limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetBatchConfig {
    /// How long commits are collected before one proposal. Default 100 ms.
    pub batch_ms: u64,
    /// Distinct queues per proposal. Default 1,024.
    pub batch_max: usize,
    /// Commits waiting at most. Default 100,000.
    pub pending_max: usize,
    /// Simulation builds only: after each batch, the offsets its queues had before it are
    /// proposed again, as a retried older commit applied after a newer one would be (a
    /// consumer's offset goes back). A bug put in on purpose, to show the simulation's
    /// checkers catch it.
    #[cfg(madsim)]
    pub sim_bug_out_of_order: bool,
}

impl Default for OffsetBatchConfig {
    fn default() -> Self {
        OffsetBatchConfig {
            batch_ms: 100,
            batch_max: 1024,
            pending_max: 100_000,
            #[cfg(madsim)]
            sim_bug_out_of_order: false,
        }
    }
}

/// A handle to commit offsets; cheap to clone.
#[derive(Clone)]
pub struct OffsetCommitter {
    tx: mpsc::Sender<Pending>,
}

/// A commit and, for an awaited one, where to say whether it committed.
type Pending = (ConsumerOffset, Option<oneshot::Sender<bool>>);

impl OffsetCommitter {
    /// Starts the committer of `raft`, whose proposals pass `gate` (see [`WriteGate`]).
    pub fn start(raft: Raft<TypeConfig>, gate: Arc<WriteGate>, config: OffsetBatchConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.pending_max);
        tokio::spawn(run(raft, gate, config, rx));
        OffsetCommitter { tx }
    }

    /// Queues a commit; it reaches Raft within the batch interval.
    pub fn commit(&self, offset: ConsumerOffset) {
        if self.tx.try_send((offset, None)).is_err() {
            tracing::warn!("too many consumer offset commits waiting: dropping one (the consumer sends it again)");
        }
    }

    /// Queues a commit and waits until it is committed through Raft: true once it is, false if
    /// it was dropped (queue full) or the proposal failed (not the leader any more).
    pub async fn commit_and_wait(&self, offset: ConsumerOffset) -> bool {
        let (done, rx) = oneshot::channel();
        if self.tx.try_send((offset, Some(done))).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}

async fn run(
    raft: Raft<TypeConfig>,
    gate: Arc<WriteGate>,
    config: OffsetBatchConfig,
    mut rx: mpsc::Receiver<Pending>,
) {
    #[cfg(madsim)]
    let mut before: BTreeMap<(String, String, i32), u64> = BTreeMap::new();
    while let Some((first, waiter)) = rx.recv().await {
        let mut batch: BTreeMap<(String, String, i32), u64> = BTreeMap::new();
        let mut waiters: Vec<oneshot::Sender<bool>> = waiter.into_iter().collect();
        batch.insert((first.group, first.topic, first.queue_id), first.offset);
        let deadline = tokio::time::sleep(Duration::from_millis(config.batch_ms));
        tokio::pin!(deadline);
        while batch.len() < config.batch_max {
            tokio::select! {
                biased;
                next = rx.recv() => match next {
                    Some((o, waiter)) => {
                        batch.insert((o.group, o.topic, o.queue_id), o.offset);
                        waiters.extend(waiter);
                    }
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        let offsets: Vec<ConsumerOffset> = batch
            .into_iter()
            .map(|((group, topic, queue_id), offset)| ConsumerOffset {
                group,
                topic,
                queue_id,
                offset,
            })
            .collect();
        #[cfg(madsim)]
        let stale: Vec<ConsumerOffset> = offsets
            .iter()
            .filter_map(|o| {
                let k = (o.group.clone(), o.topic.clone(), o.queue_id);
                let old = before.insert(k, o.offset)?;
                (config.sim_bug_out_of_order && old != o.offset)
                    .then(|| ConsumerOffset { offset: old, ..o.clone() })
            })
            .collect();
        propose(&raft, &gate, offsets, waiters).await;
        #[cfg(madsim)]
        if !stale.is_empty() {
            propose(&raft, &gate, stale, Vec::new()).await;
        }
    }
}

/// Proposes one batch and tells its waiters whether it committed.
async fn propose(
    raft: &Raft<TypeConfig>,
    gate: &WriteGate,
    offsets: Vec<ConsumerOffset>,
    waiters: Vec<oneshot::Sender<bool>>,
) {
    let written = {
        let _passing = gate.pass().await;
        raft.client_write_ff(Request::Metadata(vec![MetaCommand::CommitOffsets(offsets)])).await
    };
    let answer = match written {
        Ok(answer) => answer.await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let committed = match answer.map(|r| r.map_err(|e| e.to_string())) {
        Ok(Ok(_)) => true,
        Ok(Err(e)) | Err(e) => {
            tracing::debug!(error = %e, "consumer offsets not committed (not the leader?): the consumers send them again");
            false
        }
    };
    for w in waiters {
        let _ = w.send(committed);
    }
}
