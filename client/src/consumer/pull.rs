//! The pull consumer (RocketMQ's lite pull consumer): the caller assigns queues or subscribes
//! to topics (the group's queues then shared out among its members, as for push consumers),
//! polls batches, seeks, and commits offsets when it chooses.
//!
//! Positions: each queue's next offset starts at the group's committed offset (or per
//! `consume_from`) and moves past what `poll` returned. `commit` stores these positions on the
//! brokers; nothing is committed behind the caller's back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocketraft_protocol::body::{
    ConsumeFromWhere, ConsumeType, ConsumerData, HeartbeatData, MessageModel, MessageQueue,
    SubscriptionData,
};

use super::Selector;
use super::{commit_offset, group_members, initial_offset, pull, ConsumeFrom, Pulled};
use crate::clock;
use crate::core::{ClientConfig, Core};
use crate::error::{ClientError, Result};
use crate::lock;
use crate::message::MessageExt;
use crate::select::{subscribe_queues, Allocation};

/// Pull consumer settings.
#[derive(Debug, Clone)]
pub struct PullConsumerConfig {
    pub client: ClientConfig,
    pub group: String,
    /// Where a queue without a committed offset starts. Default [`ConsumeFrom::LastOffset`].
    pub consume_from: ConsumeFrom,
    /// Most messages one `poll` returns. Default 32.
    pub poll_batch_max: i32,
    /// How often subscribed topics are shared out again (checked on `poll`). Default 10,000 ms.
    pub rebalance_ms: u64,
    /// How the group's queues are shared out. Default [`Allocation::Averagely`]; every
    /// member of the group must use the same.
    pub allocation: Allocation,
}

impl PullConsumerConfig {
    pub fn new(namesrv_addrs: &str, group: impl Into<String>) -> Self {
        PullConsumerConfig {
            client: ClientConfig::new(namesrv_addrs),
            group: group.into(),
            consume_from: ConsumeFrom::LastOffset,
            poll_batch_max: 32,
            rebalance_ms: 10_000,
            allocation: Allocation::Averagely,
        }
    }
}

#[derive(Default)]
struct State {
    /// Queue -> next offset (None until resolved).
    positions: BTreeMap<MessageQueue, Option<i64>>,
    /// Assigned by hand (no rebalance) or by subscription.
    manual: bool,
    subs: BTreeMap<String, SubscriptionData>,
    last_rebalance: Option<tokio::time::Instant>,
    rotation: usize,
    /// Assigned by hand: a heartbeat went out once the assigned topics' brokers were known
    /// (brokers take offsets only for groups they know).
    joined: bool,
}

/// A pull consumer.
pub struct PullConsumer {
    core: Arc<Core>,
    config: PullConsumerConfig,
    state: Mutex<State>,
}

impl Drop for PullConsumer {
    /// Dropped without `shutdown`: stop the route poll and close connections.
    fn drop(&mut self) {
        self.core.halt();
    }
}

impl PullConsumer {
    pub async fn start(config: PullConsumerConfig) -> Result<PullConsumer> {
        if let Err(e) = rocketraft_protocol::names::check_group(&config.group) {
            return Err(ClientError::InvalidArgument(e.to_string()));
        }
        if config.poll_batch_max <= 0 {
            return Err(ClientError::InvalidArgument("poll_batch_max must be at least 1".into()));
        }
        let core = Core::start(config.client.clone(), None).await?;
        core.poll_routes();
        Ok(PullConsumer { core, config, state: Mutex::new(State::default()) })
    }

    /// The queues of `topic` (for `assign`).
    pub async fn topic_queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        let route = self.core.routes.get(topic).await?;
        Ok(subscribe_queues(topic, &route.data))
    }

    /// Reads exactly these queues (no group rebalance), all messages of their topics.
    pub fn assign(&self, queues: impl IntoIterator<Item = MessageQueue>) {
        let mut s = lock(&self.state);
        s.manual = true;
        let keep: BTreeSet<MessageQueue> = queues.into_iter().collect();
        s.positions.retain(|q, _| keep.contains(q));
        for q in keep {
            s.positions.entry(q).or_insert(None);
        }
    }

    /// Joins the group for `topic` with a tag expression: its queues are shared out among the
    /// group's members.
    pub async fn subscribe(&self, topic: &str, expression: &str) -> Result<()> {
        self.subscribe_with(topic, Selector::Tag(expression.to_owned())).await
    }

    /// As [`PullConsumer::subscribe`], with a SQL92 selector over message properties; fails
    /// if a broker of the topic refuses it or it does not parse.
    pub async fn subscribe_sql(&self, topic: &str, expression: &str) -> Result<()> {
        self.subscribe_with(topic, Selector::Sql92(expression.to_owned())).await
    }

    async fn subscribe_with(&self, topic: &str, selector: Selector) -> Result<()> {
        let sub = selector.subscription(topic, clock::now_ms());
        if sub.is_sql92() {
            super::check_in_brokers(&self.core, &self.config.group, &sub).await?;
        }
        {
            let mut s = lock(&self.state);
            if s.manual {
                return Err(ClientError::InvalidArgument(
                    "this consumer has assigned queues: subscribe or assign, not both".into(),
                ));
            }
            s.subs.insert(topic.to_owned(), sub);
            s.last_rebalance = None;
        }
        self.core.routes.get(topic).await?;
        self.core.heartbeat(&self.heartbeat_data()).await;
        self.rebalance().await
    }

    /// The queues read now.
    pub fn assignment(&self) -> BTreeSet<MessageQueue> {
        lock(&self.state).positions.keys().cloned().collect()
    }

    /// The next offset of `mq`, once known.
    pub fn position(&self, mq: &MessageQueue) -> Option<i64> {
        lock(&self.state).positions.get(mq).copied().flatten()
    }

    /// Makes the next poll of `mq` start at `offset`.
    pub fn seek(&self, mq: &MessageQueue, offset: i64) -> Result<()> {
        if offset < 0 {
            return Err(ClientError::InvalidArgument(format!("offset {offset} is negative")));
        }
        match lock(&self.state).positions.get_mut(mq) {
            Some(p) => {
                *p = Some(offset);
                Ok(())
            }
            None => Err(ClientError::InvalidArgument(format!(
                "{mq:?} is not assigned to this consumer"
            ))),
        }
    }

    /// Returns the next messages of some assigned queue, waiting up to `timeout_ms` for some
    /// to arrive; empty when none did.
    pub async fn poll(&self, timeout_ms: u64) -> Result<Vec<MessageExt>> {
        let deadline = clock::deadline_in(timeout_ms);
        loop {
            self.maybe_rebalance().await;
            let queues: Vec<MessageQueue> = lock(&self.state).positions.keys().cloned().collect();
            if queues.is_empty() {
                if clock::instant() >= deadline {
                    return Ok(Vec::new());
                }
                tokio::time::sleep(Duration::from_millis(100).min(deadline - clock::instant()))
                    .await;
                continue;
            }
            let start = {
                let mut s = lock(&self.state);
                s.rotation = s.rotation.wrapping_add(1);
                s.rotation
            };
            let mut all_failed = true;
            for i in 0..queues.len() {
                let mq = &queues[(start + i) % queues.len()];
                let last = i + 1 == queues.len();
                let remaining =
                    deadline.saturating_duration_since(clock::instant()).as_millis() as u64;
                // Every queue is tried without waiting; the last one of the round long-polls
                // for what is left of the timeout (at most 1 s, so other queues get a turn).
                let suspend = if last { remaining.min(1_000) } else { 0 };
                match self.pull_one(mq, suspend).await {
                    Ok(found) if !found.is_empty() => return Ok(found),
                    Ok(_) => all_failed = false,
                    Err(e) => {
                        tracing::debug!(queue = ?mq, error = %e, "pull failed");
                        // Its master may be gone: the route says where it is now.
                        self.core.routes.refresh_after_failure(&mq.topic, &e).await;
                        if remaining == 0 {
                            return Err(e);
                        }
                    }
                }
            }
            if clock::instant() >= deadline {
                return Ok(Vec::new());
            }
            if all_failed {
                // Every queue failed fast (broker down, no route): do not spin.
                let left = deadline.saturating_duration_since(clock::instant());
                tokio::time::sleep(Duration::from_millis(100).min(left)).await;
            }
        }
    }

    async fn pull_one(&self, mq: &MessageQueue, suspend_ms: u64) -> Result<Vec<MessageExt>> {
        let (offset, sub) = {
            let s = lock(&self.state);
            let sub = s
                .subs
                .get(&mq.topic)
                .cloned()
                .unwrap_or_else(|| SubscriptionData::tag(&mq.topic, "*", 0));
            (s.positions.get(mq).copied().flatten(), sub)
        };
        let offset = match offset {
            Some(o) => o,
            None => {
                let o =
                    initial_offset(&self.core, &self.config.group, mq, self.config.consume_from)
                        .await?;
                if let Some(p) = lock(&self.state).positions.get_mut(mq) {
                    p.get_or_insert(o);
                }
                o
            }
        };
        let pulled = pull(
            &self.core,
            &self.config.group,
            mq,
            &sub,
            offset,
            self.config.poll_batch_max,
            suspend_ms,
        )
        .await?;
        let (found, next) = match pulled {
            Pulled::Found { messages, next, .. } => (messages, next),
            Pulled::Nothing { next } | Pulled::Moved { next } => (Vec::new(), next),
        };
        let mut s = lock(&self.state);
        // A seek while this pull ran wins.
        if let Some(p) = s.positions.get_mut(mq) {
            if *p == Some(offset) {
                *p = Some(next);
                return Ok(found.into_iter().filter(|m| m.queue_offset >= offset).collect());
            }
        }
        Ok(Vec::new())
    }

    /// Commits every known position to the brokers (each answered once it is committed
    /// through Raft). Returns the first failure after trying them all.
    pub async fn commit(&self) -> Result<()> {
        let (positions, join): (Vec<(MessageQueue, i64)>, bool) = {
            let s = lock(&self.state);
            let positions =
                s.positions.iter().filter_map(|(q, p)| p.map(|p| (q.clone(), p))).collect();
            (positions, s.manual && !s.joined)
        };
        if join {
            let topics: BTreeSet<&str> = positions.iter().map(|(q, _)| q.topic.as_str()).collect();
            for topic in topics {
                self.core.routes.get(topic).await?;
            }
            self.core.heartbeat(&self.heartbeat_data()).await;
            lock(&self.state).joined = true;
        }
        let mut first_err = None;
        for (q, p) in positions {
            if let Err(e) = commit_offset(&self.core, &self.config.group, &q, p).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Leaves the group and closes connections (commit first if positions should be kept).
    pub async fn shutdown(self) {
        let joined = {
            let s = lock(&self.state);
            !s.subs.is_empty() || s.last_rebalance.is_some()
        };
        self.core.shutdown(None, joined.then_some(self.config.group.as_str())).await;
    }

    fn heartbeat_data(&self) -> HeartbeatData {
        HeartbeatData {
            client_id: self.core.client_id.clone(),
            consumer_data_set: vec![ConsumerData {
                consume_from_where: ConsumeFromWhere::ConsumeFromLastOffset,
                consume_type: ConsumeType::ConsumeActively,
                group_name: self.config.group.clone(),
                message_model: MessageModel::Clustering,
                subscription_data_set: lock(&self.state).subs.values().cloned().collect(),
                unit_mode: false,
            }],
            producer_data_set: Vec::new(),
        }
    }

    /// Every `rebalance_ms`: a heartbeat, then (subscribed) a rebalance. A consumer of assigned
    /// queues heartbeats too, as Java's clients heartbeat every consumer: brokers take offsets
    /// only for groups they know (RocketMQ 5.x), and the heartbeat makes the group known.
    async fn maybe_rebalance(&self) {
        let (due, manual) = {
            let s = lock(&self.state);
            let due = (s.manual || !s.subs.is_empty())
                && s.last_rebalance.is_none_or(|t| {
                    clock::instant().duration_since(t)
                        >= Duration::from_millis(self.config.rebalance_ms)
                });
            (due, s.manual)
        };
        if due {
            self.core.heartbeat(&self.heartbeat_data()).await;
            if manual {
                lock(&self.state).last_rebalance = Some(clock::instant());
                return;
            }
            if let Err(e) = self.rebalance().await {
                // Counted as a round anyway: the next try waits a period, not the next poll.
                lock(&self.state).last_rebalance = Some(clock::instant());
                tracing::debug!(error = %e, "rebalance failed; keeping the queues");
            }
        }
    }

    async fn rebalance(&self) -> Result<()> {
        let subs: Vec<String> = lock(&self.state).subs.keys().cloned().collect();
        let mut mine = BTreeSet::new();
        for topic in &subs {
            let route = self.core.routes.get(topic).await?;
            let queues = subscribe_queues(topic, &route.data);
            let members = group_members(&self.core, &self.config.group, &route).await?;
            mine.extend(self.config.allocation.allocate(&queues, &members, &self.core.client_id));
        }
        let mut s = lock(&self.state);
        s.positions.retain(|q, _| mine.contains(q));
        for q in mine {
            s.positions.entry(q).or_insert(None);
        }
        s.last_rebalance = Some(clock::instant());
        Ok(())
    }
}
