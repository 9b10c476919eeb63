//! CONSUMER_SEND_MSG_BACK: a consumer could not process a message. The broker stores a copy
//! in the group's retry topic `%RETRY%<group>`, delayed by level `3 + reconsumeTimes` (or the
//! level the client asks for), or, once the message was consumed `retryMaxTimes` times (or
//! the client asks for level -1), in the group's dead-letter topic `%DLQ%<group>`. The copy
//! keeps body, flags, keys, tags and UNIQ_KEY; it gains RETRY_TOPIC (the topic it was first
//! sent to) and ORIGIN_MESSAGE_ID, and its reconsume count goes up by one. It is a send like
//! any other: on the master, through Raft, parked as a delayed message until it is due.

use rocketraft_protocol::code::perm;
use rocketraft_protocol::headers::*;
use rocketraft_protocol::message::{
    body_crc, offset_msg_id, property, rewrite_properties, MessageRecord, RecordView,
};
use rocketraft_protocol::names::{dlq_topic, retry_topic};
use rocketraft_protocol::{response_code, RemotingCommand};
use rocketraft_raft::types::{GroupMeta, TopicMeta};
use rocketraft_raft::{MetaCommand, MetaStore, ProposeError};
use rocketraft_store::io::Storage;
use rocketraft_store::CommitLogOffset;

use crate::schedule::{park, ParkRules};
use crate::server::{now_ms, Inner};

use super::*;

/// CONSUMER_SEND_MSG_BACK.
pub(crate) struct SendBackProcessor<S: Storage + Clone, M: MetaStore>(pub(crate) Arc<Inner<S, M>>);

impl<S: Storage + Clone, M: MetaStore> SendBackProcessor<S, M> {
    pub(crate) const CODES: &'static [i32] = &[rc::CONSUMER_SEND_MSG_BACK];
}

impl<S: Storage + Clone, M: MetaStore> Processor for SendBackProcessor<S, M> {
    fn process(&self, req: RemotingCommand, _peer: Peer) -> Answer<'_> {
        Box::pin(async move { send_back(&req, &self.0).await.unwrap_or_else(|e| e) })
    }
}

/// The request version from which a client's `maxReconsumeTimes` is honoured (V3_4_9).
const MAX_RECONSUME_TIMES_VERSION: i32 = 121;
/// Retry and dead-letter topics have one queue (RocketMQ's `DLQ_NUMS_PER_GROUP`).
const SYSTEM_QUEUES: i32 = 1;

async fn send_back<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: ConsumerSendMsgBackRequestHeader = header(req)?;
    check_names(req, None, Some(&h.group))?;
    if !master_ready(inner).await {
        return Err(not_master(req, inner));
    }
    let group = match inner.replica.metadata().group(&h.group).map_err(system_error(req))? {
        Some(g) => g,
        None => {
            return Err(reply(
                req,
                response_code::SUBSCRIPTION_GROUP_NOT_EXIST,
                format!("subscription group not exist, {}", h.group),
            ))
        }
    };
    if group.retry_queue_nums <= 0 {
        // RocketMQ: a group without retry queues drops what it sends back.
        return Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None));
    }
    let look_failed = || {
        reply(
            req,
            response_code::SYSTEM_ERROR,
            format!("look message by offset failed, {}", h.offset),
        )
    };
    let position = u64::try_from(h.offset).map_err(|_| look_failed())?;
    let raw = inner.replica.record_at(CommitLogOffset(position)).map_err(|_| look_failed())?;
    let original = RecordView::decode(&raw).map_err(|_| look_failed())?;

    let max_times = match h.max_reconsume_times {
        Some(m) if req.version >= MAX_RECONSUME_TIMES_VERSION => m,
        _ => group.retry_max_times,
    };
    let dead = original.reconsume_times >= max_times || h.delay_level < 0;
    let topic = if dead { dlq_topic(&h.group) } else { retry_topic(&h.group) };
    let meta = system_topic(req, inner, &topic).await?;
    if !perm::is_writeable(meta.perm) {
        return Err(reply(
            req,
            response_code::NO_PERMISSION,
            format!("the topic[{topic}] sending message is forbidden"),
        ));
    }

    let first_topic = original.property(property::RETRY_TOPIC).unwrap_or(original.topic);
    let origin_id = original
        .property(property::ORIGIN_MESSAGE_ID)
        .map(str::to_owned)
        .or_else(|| h.origin_msg_id.clone().filter(|id| !id.is_empty()))
        .unwrap_or_else(|| offset_msg_id(original.store_host, original.physical_offset));
    let level = if h.delay_level > 0 { h.delay_level } else { 3 + original.reconsume_times };
    let level = level.to_string();
    let mut set = vec![
        (property::RETRY_TOPIC, first_topic),
        (property::ORIGIN_MESSAGE_ID, origin_id.as_str()),
    ];
    if !dead {
        set.push((property::DELAY, level.as_str()));
    }
    // What a parked or moved message carried is not the copy's: it is parked anew (if at all).
    let stale = [
        property::DELAY,
        property::REAL_TOPIC,
        property::REAL_QID,
        property::TIMER_OUT_MS,
        property::TIMER_DELIVER_MS,
        property::TIMER_DELAY_SEC,
        property::TIMER_DELAY_MS,
        property::MOVED_FROM,
    ];
    let properties = rewrite_properties(original.properties, &stale, &set);
    let now = now_ms(inner);
    let rules = ParkRules {
        levels: &inner.config.delay_levels,
        timer_max_delay_sec: inner.config.timer_max_delay_sec,
    };
    let refused = |r: crate::admission::Refusal| reply(req, r.code, r.remark);
    let (to_topic, queue_id, properties) =
        match park(&topic, 0, &properties, now, rules, false).map_err(refused)? {
            Some(to) => (to.topic, to.queue_id, to.properties),
            None => (topic.clone(), 0, properties),
        };
    let record = MessageRecord {
        body_crc: body_crc(original.body),
        queue_id,
        flag: original.flag,
        sys_flag: original.sys_flag,
        born_timestamp: original.born_timestamp,
        born_host: original.born_host,
        store_timestamp: now,
        store_host: inner.config.advertised_addr,
        reconsume_times: original.reconsume_times.saturating_add(1),
        body: bytes::Bytes::copy_from_slice(original.body),
        topic: to_topic,
        properties,
        ..Default::default()
    }
    .encode()
    .map_err(system_error(req))?;
    match inner.replica.propose(vec![record]).await {
        Ok(_) => {
            if dead {
                tracing::info!(group = %h.group, id = %origin_id, "a message reached its dead-letter topic");
            }
            Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None))
        }
        Err(ProposeError::NotLeader { .. }) => Err(not_master(req, inner)),
        Err(ProposeError::Overloaded) => Err(reply(
            req,
            response_code::SYSTEM_BUSY,
            rocketraft_remoting::server::OVERLOAD_REMARK,
        )),
        Err(e) => Err(reply(req, response_code::SYSTEM_ERROR, e.to_string())),
    }
}

/// A group's retry or dead-letter topic, created (one queue, read-write, as RocketMQ 4.9
/// creates both) if the group has none yet.
pub(crate) async fn system_topic<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
    topic: &str,
) -> Result<TopicMeta, RemotingCommand> {
    if let Some(t) = inner.replica.metadata().topic(topic).map_err(system_error(req))? {
        return Ok(t);
    }
    super::send::check_queue_room(req, inner, topic, SYSTEM_QUEUES)?;
    let meta = TopicMeta {
        name: topic.to_owned(),
        read_queue_nums: SYSTEM_QUEUES,
        write_queue_nums: SYSTEM_QUEUES,
        perm: perm::READ | perm::WRITE,
        topic_sys_flag: 0,
        order: false,
        filter_type: "SINGLE_TAG".into(),
    };
    propose_metadata(req, inner, vec![MetaCommand::PutTopic(meta.clone())]).await?;
    inner.register_now.notify_one();
    Ok(meta)
}

/// The group's retry budget as a send to `%RETRY%<group>` states it (a client re-sending
/// itself when CONSUMER_SEND_MSG_BACK failed): the header's `maxReconsumeTimes` from V3_4_9,
/// else the group's `retryMaxTimes` (16 when the group is unknown).
pub(crate) fn retry_budget(
    req: &RemotingCommand,
    max_reconsume_times: Option<i32>,
    group: Option<&GroupMeta>,
) -> i32 {
    match max_reconsume_times {
        Some(m) if req.version >= MAX_RECONSUME_TIMES_VERSION => m,
        _ => group.map_or(16, |g| g.retry_max_times),
    }
}
