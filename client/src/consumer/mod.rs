//! Consumers: the push consumer (long-polling pulls feeding a listener) and the pull consumer
//! (the caller polls). This module holds what both use: the listener contract, where to start
//! in a queue without a committed offset, and the broker calls of consumption (pull, offsets,
//! queue locks, group members).

mod offsets;
mod pull;
mod push;

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use rocketraft_protocol::body::ConsumerListBody;
use rocketraft_protocol::body::{
    CheckClientRequestBody, JsonBody, JsonStyle, LockBatchRequestBody, LockBatchResponseBody,
    MessageQueue, SubscriptionData,
};
use rocketraft_protocol::headers::{
    GetConsumerListByGroupRequestHeader, OffsetResponseHeader, PullMessageRequestHeader,
    PullMessageResponseHeader, QueryConsumerOffsetRequestHeader, SearchOffsetRequestHeader,
    TopicQueueRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use rocketraft_protocol::message::decode_records;
use rocketraft_protocol::{request_code, response_code, sysflag, RemotingCommand};

pub use offsets::OFFSET_FILE_NAME;
pub use pull::{PullConsumer, PullConsumerConfig};
pub use push::{PushConsumer, PushConsumerConfig, QueueChange, QueueListener};

use crate::core::{expect_success, Core};
use crate::error::{ClientError, Result};
use crate::message::MessageExt;
use crate::route::TopicRoute;
use crate::select::tag_matches;

/// What a consumer takes from a topic (RocketMQ's `MessageSelector`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// A tag expression: `*`, or tags joined by `||`. The broker filters by tag hash, the
    /// client by the tag itself.
    Tag(String),
    /// A SQL92 selector over message properties (`TAGS` among them), evaluated by the broker
    /// (which must have `enable_property_filter` on).
    Sql92(String),
}

impl Selector {
    /// The subscription of `topic` it makes.
    pub fn subscription(&self, topic: &str, sub_version: i64) -> SubscriptionData {
        match self {
            Selector::Tag(e) => SubscriptionData::tag(topic, e, sub_version),
            Selector::Sql92(e) => SubscriptionData::sql92(topic, e, sub_version),
        }
    }
}

/// Asks every broker group serving `sub`'s topic whether it can filter by it
/// (CHECK_CLIENT_CONFIG, as Java consumers do before they start): a SQL92 selector that does
/// not parse, or a broker without property filtering, is an error now rather than a consumer
/// that silently receives nothing.
pub(crate) async fn check_in_brokers(
    core: &Core,
    group: &str,
    sub: &SubscriptionData,
) -> Result<()> {
    let route = core.routes.get(&sub.topic).await?;
    let body = CheckClientRequestBody {
        client_id: core.client_id.clone(),
        group: group.to_owned(),
        subscription_data: Some(sub.clone()),
    };
    for broker in &route.data.broker_datas {
        let Some(addr) = route.master_addr(&broker.broker_name) else { continue };
        let req = RemotingCommand::request_without_header(request_code::CHECK_CLIENT_CONFIG)
            .with_body(body.to_json(JsonStyle::Standard));
        core.call_ok(addr, req).await?;
    }
    Ok(())
}

/// Where a consumer group starts reading a queue it has no committed offset for (RocketMQ's
/// `ConsumeFromWhere`). It applies to every such queue: the client asks the broker for "not
/// found" rather than 0 (5.x's `setZeroIfNotFound=false`). RocketMQ 4.x clients read a queue
/// that still holds its first message from the start whatever they say, as the broker answers
/// 0 for it; RocketRaft's broker still does that for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeFrom {
    /// Skip what is already stored: start at the queue's end. The default.
    LastOffset,
    /// Start at the oldest message still stored.
    FirstOffset,
    /// Start at the first message stored at or after this Unix time in milliseconds.
    Timestamp(i64),
}

/// What a listener says about the messages it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeResult {
    /// Consumed: they will not be delivered to this group again.
    Success,
    /// Not consumed now: deliver them again later (RocketMQ's RECONSUME_LATER and
    /// SUSPEND_CURRENT_QUEUE_A_MOMENT).
    Later,
}

/// Consumes messages. Any `Fn(Vec<MessageExt>) -> impl Future<Output = ConsumeResult>` is
/// one. A listener that panics is treated as having returned [`ConsumeResult::Later`].
pub trait MessageListener: Send + Sync + 'static {
    fn consume(&self, messages: Vec<MessageExt>) -> impl Future<Output = ConsumeResult> + Send;
}

impl<F, Fut> MessageListener for F
where
    F: Fn(Vec<MessageExt>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ConsumeResult> + Send,
{
    fn consume(&self, messages: Vec<MessageExt>) -> impl Future<Output = ConsumeResult> + Send {
        self(messages)
    }
}

/// Runs a listener call, turning a panic into `None`.
pub(crate) struct CatchPanic<F>(pub Pin<Box<F>>);

impl<F: Future> Future for CatchPanic<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Some(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(None),
        }
    }
}

/// What a pull found.
#[derive(Debug)]
pub(crate) enum Pulled {
    /// Messages (already filtered by tag), each one's stored record (a view of the response,
    /// kept to hand the message out again after a failed listener call), and the offset to
    /// pull next.
    Found { messages: Vec<MessageExt>, records: Vec<bytes::Bytes>, next: i64 },
    /// Nothing new (or nothing matching): pull again from `next`.
    Nothing { next: i64 },
    /// The offset is outside the queue: continue from `next`.
    Moved { next: i64 },
}

/// The address to read `broker`'s queues from: its master, or any replica while it has none
/// (followers serve committed data).
pub(crate) fn read_addr(route: &TopicRoute, broker: &str) -> Option<String> {
    let replicas = route.broker_addrs(broker)?;
    replicas.get(&0).or_else(|| replicas.values().next()).cloned()
}

fn master_addr(route: &TopicRoute, mq: &MessageQueue) -> Result<String> {
    route.master_addr(&mq.broker_name).map(str::to_owned).ok_or_else(|| ClientError::NoRoute {
        topic: mq.topic.clone(),
        reason: format!("broker group {} has no master now", mq.broker_name),
    })
}

fn reader(route: &TopicRoute, mq: &MessageQueue) -> Result<String> {
    read_addr(route, &mq.broker_name).ok_or_else(|| ClientError::NoRoute {
        topic: mq.topic.clone(),
        reason: format!("broker group {} is not in the route", mq.broker_name),
    })
}

/// PULL_MESSAGE at `offset`, held by the broker up to `suspend_ms` when nothing is there.
pub(crate) async fn pull(
    core: &Core,
    group: &str,
    mq: &MessageQueue,
    sub: &SubscriptionData,
    offset: i64,
    batch_max: i32,
    suspend_ms: u64,
) -> Result<Pulled> {
    let route = core.routes.get(&mq.topic).await?;
    let addr = reader(&route, mq)?;
    let header = PullMessageRequestHeader {
        consumer_group: group.to_owned(),
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        queue_offset: offset,
        max_msg_nums: batch_max,
        sys_flag: sysflag::pull::build(false, suspend_ms > 0, true),
        commit_offset: 0,
        suspend_timeout_millis: suspend_ms as i64,
        subscription: Some(sub.sub_string.clone()),
        sub_version: sub.sub_version,
        expression_type: Some(sub.expression_type.clone()),
        broker_name: Some(mq.broker_name.clone()),
    };
    let req = RemotingCommand::request(request_code::PULL_MESSAGE, &header);
    // The broker holds the pull up to suspend_ms; allow for that plus a normal call.
    let timeout_ms = suspend_ms + core.config.call_timeout_ms;
    let resp = core.remoting.call(&addr, req, timeout_ms).await?;
    let code = resp.code;
    if !matches!(
        code,
        response_code::SUCCESS
            | response_code::PULL_NOT_FOUND
            | response_code::PULL_RETRY_IMMEDIATELY
            | response_code::PULL_OFFSET_MOVED
    ) {
        return Err(expect_success(&addr, resp).unwrap_err());
    }
    let h: PullMessageResponseHeader = resp
        .decode_header()
        .map_err(|e| ClientError::Protocol { addr: addr.clone(), source: e })?;
    let next = h.next_begin_offset;
    match code {
        response_code::SUCCESS => {
            let records = decode_records(&resp.body)
                .map_err(|e| ClientError::Protocol { addr: addr.clone(), source: e })?;
            let mut messages = Vec::with_capacity(records.len());
            let mut raws = Vec::with_capacity(records.len());
            let mut inflate_budget = crate::message::INFLATED_MAX_BYTES;
            let mut at = 0;
            for r in &records {
                r.verify_body_crc()
                    .map_err(|e| ClientError::Protocol { addr: addr.clone(), source: e })?;
                let raw = resp.body.slice(at..at + r.total_size);
                at += r.total_size;
                let m = MessageExt::from_record_within(
                    r,
                    Some(&resp.body),
                    &mq.broker_name,
                    &mut inflate_budget,
                );
                if tag_matches(sub, m.tags()) {
                    messages.push(m);
                    raws.push(raw);
                }
            }
            if next <= offset {
                return Err(ClientError::Broker {
                    addr,
                    code,
                    remark: format!("pull at {offset} answered messages but next offset {next}"),
                });
            }
            Ok(if messages.is_empty() {
                Pulled::Nothing { next }
            } else {
                Pulled::Found { messages, records: raws, next }
            })
        }
        // Only the master's word moves a consumer: a follower reset to a snapshot may start its
        // queues later than the leader, and believing it would skip messages.
        response_code::PULL_OFFSET_MOVED if route.master_addr(&mq.broker_name) == Some(&addr) => {
            Ok(Pulled::Moved { next })
        }
        response_code::PULL_OFFSET_MOVED => Err(ClientError::Broker {
            addr,
            code,
            remark: format!("a follower says offset {offset} moved to {next}: asking the master"),
        }),
        // A follower (a RocketMQ slave) that cannot serve the offset answers so: asking it
        // again at once would spin until the route names a master.
        response_code::PULL_RETRY_IMMEDIATELY
            if next == offset && route.master_addr(&mq.broker_name) != Some(&addr) =>
        {
            Err(ClientError::Broker {
                addr,
                code,
                remark: format!("a follower cannot serve offset {offset} now: asking the master"),
            })
        }
        _ => Ok(Pulled::Nothing { next }),
    }
}

/// The group's committed offset of `mq`, or `None` if it has none.
pub(crate) async fn committed_offset(
    core: &Core,
    group: &str,
    mq: &MessageQueue,
) -> Result<Option<i64>> {
    let route = core.routes.get(&mq.topic).await?;
    let addr = reader(&route, mq)?;
    let req = RemotingCommand::request(
        request_code::QUERY_CONSUMER_OFFSET,
        &QueryConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            // "Not found" rather than 0, so that ConsumeFrom applies to new queues too.
            set_zero_if_not_found: Some(false),
            broker_name: Some(mq.broker_name.clone()),
        },
    );
    let resp = core.remoting.call(&addr, req, core.config.call_timeout_ms).await?;
    if resp.code == response_code::QUERY_NOT_FOUND {
        return Ok(None);
    }
    let resp = expect_success(&addr, resp)?;
    let h: OffsetResponseHeader =
        resp.decode_header().map_err(|e| ClientError::Protocol { addr, source: e })?;
    Ok(Some(h.offset))
}

/// Commits `offset` for the group and waits until the broker group has it (the broker
/// answers once it is committed through Raft).
pub(crate) async fn commit_offset(
    core: &Core,
    group: &str,
    mq: &MessageQueue,
    offset: i64,
) -> Result<()> {
    let route = core.routes.get(&mq.topic).await?;
    let addr = master_addr(&route, mq)?;
    let req = RemotingCommand::request(
        request_code::UPDATE_CONSUMER_OFFSET,
        &UpdateConsumerOffsetRequestHeader {
            consumer_group: group.to_owned(),
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
            commit_offset: offset,
            broker_name: Some(mq.broker_name.clone()),
        },
    );
    core.call_ok(&addr, req).await.map(|_| ())
}

/// Where to start `mq` when the group has no committed offset: the master's answer (a follower
/// reset to a snapshot may report a later first offset).
pub(crate) async fn start_offset(core: &Core, mq: &MessageQueue, from: ConsumeFrom) -> Result<i64> {
    let route = core.routes.get(&mq.topic).await?;
    let addr = master_addr(&route, mq)?;
    let topic_queue = TopicQueueRequestHeader {
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        broker_name: Some(mq.broker_name.clone()),
    };
    let req = match from {
        ConsumeFrom::LastOffset => {
            RemotingCommand::request(request_code::GET_MAX_OFFSET, &topic_queue)
        }
        ConsumeFrom::FirstOffset => {
            RemotingCommand::request(request_code::GET_MIN_OFFSET, &topic_queue)
        }
        ConsumeFrom::Timestamp(ms) => RemotingCommand::request(
            request_code::SEARCH_OFFSET_BY_TIMESTAMP,
            &SearchOffsetRequestHeader {
                topic: mq.topic.clone(),
                queue_id: mq.queue_id,
                timestamp: ms,
                broker_name: Some(mq.broker_name.clone()),
            },
        ),
    };
    let resp = core.call_ok(&addr, req).await?;
    let h: OffsetResponseHeader =
        resp.decode_header().map_err(|e| ClientError::Protocol { addr, source: e })?;
    Ok(h.offset)
}

/// The offset to start `mq` at: the committed one, else per `from`.
pub(crate) async fn initial_offset(
    core: &Core,
    group: &str,
    mq: &MessageQueue,
    from: ConsumeFrom,
) -> Result<i64> {
    match committed_offset(core, group, mq).await? {
        Some(o) => Ok(o),
        None => start_offset(core, mq, from).await,
    }
}

/// LOCK_BATCH_MQ at the master of `broker`: the queues this client now holds.
pub(crate) async fn lock_queues(
    core: &Core,
    group: &str,
    route: &TopicRoute,
    broker: &str,
    queues: BTreeSet<MessageQueue>,
) -> Result<BTreeSet<MessageQueue>> {
    let addr =
        route.master_addr(broker).map(str::to_owned).ok_or_else(|| ClientError::NoRoute {
            topic: route.topic.clone(),
            reason: format!("broker group {broker} has no master now"),
        })?;
    let resp =
        core.call_ok(&addr, lock_request(core, group, request_code::LOCK_BATCH_MQ, queues)).await?;
    let got = LockBatchResponseBody::from_json(&resp.body)
        .map_err(|e| ClientError::Protocol { addr, source: e })?;
    Ok(got.lock_ok_mq_set)
}

/// UNLOCK_BATCH_MQ at the master of `broker`.
pub(crate) async fn unlock_queues(
    core: &Core,
    group: &str,
    route: &TopicRoute,
    broker: &str,
    queues: BTreeSet<MessageQueue>,
) -> Result<()> {
    let Some(addr) = route.master_addr(broker).map(str::to_owned) else {
        return Ok(()); // no master: the locks live on no one now
    };
    core.call_ok(&addr, lock_request(core, group, request_code::UNLOCK_BATCH_MQ, queues))
        .await
        .map(|_| ())
}

fn lock_request(
    core: &Core,
    group: &str,
    code: i32,
    queues: BTreeSet<MessageQueue>,
) -> RemotingCommand {
    let body = LockBatchRequestBody {
        client_id: core.client_id.clone(),
        consumer_group: group.to_owned(),
        mq_set: queues,
        only_this_broker: false,
    };
    RemotingCommand::request_without_header(code).with_body(body.to_json(JsonStyle::Standard))
}

/// The group's members as a broker of `route` knows them, sorted.
pub(crate) async fn group_members(
    core: &Core,
    group: &str,
    route: &TopicRoute,
) -> Result<Vec<String>> {
    let mut last = None;
    let mut names: Vec<&str> =
        route.data.broker_datas.iter().map(|b| b.broker_name.as_str()).collect();
    names.sort();
    for name in names {
        let Some(addr) = read_addr(route, name) else { continue };
        let req = RemotingCommand::request(
            request_code::GET_CONSUMER_LIST_BY_GROUP,
            &GetConsumerListByGroupRequestHeader {
                consumer_group: group.to_owned(),
                broker_name: None,
            },
        );
        match core.call_ok(&addr, req).await {
            Ok(resp) => {
                let mut ids = ConsumerListBody::from_json(&resp.body)
                    .map_err(|e| ClientError::Protocol { addr, source: e })?
                    .consumer_id_list;
                ids.sort();
                ids.dedup();
                return Ok(ids);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| ClientError::NoRoute {
        topic: route.topic.clone(),
        reason: "no broker of the topic is reachable".into(),
    }))
}
