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
use rocketraft_raft::{MetaCommand, MetaStore};
use rocketraft_store::io::Storage;
use rocketraft_store::CommitLogOffset;

use crate::schedule::{park, ParkRules};
use crate::server::{group_now_ms, Inner};

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
    // The record is named by its offset alone: it must be of the topic the request says (the
    // one ACL checked the caller may read), so nobody copies another topic's message into a
    // retry topic they can read. RocketMQ clients name the message's topic as they got it:
    // the original one (RETRY_TOPIC) or the retry topic itself.
    let first = original.property(property::RETRY_TOPIC).unwrap_or(original.topic);
    match h.origin_topic.as_deref().filter(|t| !t.is_empty()) {
        Some(t) if t == first || t == original.topic => {}
        Some(t) => {
            return Err(reply(
                req,
                response_code::NO_PERMISSION,
                format!("the message at offset {} is not of topic {t}", h.offset),
            ))
        }
        None if inner.config.acl_file.is_some() => {
            return Err(reply(
                req,
                response_code::NO_PERMISSION,
                "originTopic is required when ACL is on".to_owned(),
            ))
        }
        None => {}
    }

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
    let now = group_now_ms(inner);
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
    admit(inner, req, record.len())?;
    match inner.replica.propose(vec![record]).await {
        Ok(_) => {
            if dead {
                tracing::info!(group = %h.group, id = %origin_id, "a message reached its dead-letter topic");
            }
            Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None))
        }
        Err(e) => Err(proposal_refused(req, inner, e)),
    }
}

/// A group's retry or dead-letter topic (or the cluster's reply topic), created (one queue,
/// read-write, as RocketMQ 4.9 creates them: `DLQ_NUMS_PER_GROUP`) if there is none yet.
pub(crate) async fn system_topic<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
    topic: &str,
) -> Result<TopicMeta, RemotingCommand> {
    if let Some(t) = inner.replica.metadata().topic(topic).map_err(system_error(req))? {
        return Ok(t);
    }
    let meta = single_queue_topic(topic.to_owned());
    super::send::check_queue_room(req, inner, topic, meta.write_queue_nums)?;
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

#[cfg(all(test, not(madsim)))]
mod tests {
    use rocketraft_protocol::body::{JsonBody, JsonStyle, SubscriptionGroupConfig};
    use rocketraft_protocol::message::{decode_offset_msg_id, decode_records};

    use super::super::admin::AdminProcessor;
    use super::super::pull::PullProcessor;
    use super::super::testing::{request, OneReplica};
    use super::*;

    fn send_back_at(offset: i64, group: &str, delay_level: i32) -> RemotingCommand {
        let h = ConsumerSendMsgBackRequestHeader {
            offset,
            group: group.into(),
            delay_level,
            ..Default::default()
        };
        request(rc::CONSUMER_SEND_MSG_BACK, h)
    }

    async fn group(r: &OneReplica, name: &str, retry_queue_nums: i32) {
        let mut g = SubscriptionGroupConfig::new(name.to_owned());
        g.retry_queue_nums = retry_queue_nums;
        let req = RemotingCommand::request_without_header(rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
            .with_body(g.to_json(JsonStyle::Standard));
        let answer = r.call(&AdminProcessor(r.inner.clone()), req).await;
        assert_eq!(answer.code, response_code::SUCCESS, "{:?}", answer.remark);
    }

    async fn read_only_topic(r: &OneReplica, topic: &str) {
        let h = CreateTopicRequestHeader {
            topic: topic.into(),
            read_queue_nums: 1,
            write_queue_nums: 1,
            perm: perm::READ,
            topic_filter_type: "SINGLE_TAG".into(),
            ..Default::default()
        };
        let answer =
            r.call(&AdminProcessor(r.inner.clone()), request(rc::UPDATE_AND_CREATE_TOPIC, h)).await;
        assert_eq!(answer.code, response_code::SUCCESS, "{:?}", answer.remark);
    }

    async fn stored(r: &OneReplica, topic: &str) -> Vec<String> {
        let h = PullMessageRequestHeader {
            consumer_group: "reader".into(),
            topic: topic.into(),
            max_msg_nums: 32,
            sys_flag: rocketraft_protocol::sysflag::pull::build(false, false, false),
            ..Default::default()
        };
        let answer = r.call(&PullProcessor(r.inner.clone()), request(rc::PULL_MESSAGE, h)).await;
        if answer.code != response_code::SUCCESS {
            return Vec::new();
        }
        let records = decode_records(&answer.body).unwrap();
        records.iter().map(|m| String::from_utf8_lossy(m.body).into_owned()).collect()
    }

    #[tokio::test]
    async fn send_backs_refuse_what_the_group_may_not_do_with_rocketmqs_codes() {
        let r = OneReplica::start().await;
        r.topic("T").await;
        let sent = r.send("T", "a", "k", "payload").await;
        let h: SendMessageResponseHeader = sent.decode_header().unwrap();
        let (_, offset) = decode_offset_msg_id(&h.msg_id).unwrap();
        let p = SendBackProcessor(r.inner.clone());

        // A group the broker does not know, and an offset holding no message.
        let stranger = r.call(&p, send_back_at(offset, "nobody", 0)).await;
        assert_eq!(stranger.code, response_code::SUBSCRIPTION_GROUP_NOT_EXIST);
        group(&r, "CG", 1).await;
        for nowhere in [-1, offset + 1, i64::MAX] {
            let answer = r.call(&p, send_back_at(nowhere, "CG", 0)).await;
            assert_eq!(answer.code, response_code::SYSTEM_ERROR, "offset {nowhere}");
            let remark = answer.remark.unwrap_or_default();
            assert!(remark.starts_with("look message by offset failed"), "{remark}");
        }

        // A retry topic the group may not write to (made read-only by an operator).
        read_only_topic(&r, "%RETRY%CG").await;
        let forbidden = r.call(&p, send_back_at(offset, "CG", 0)).await;
        assert_eq!(forbidden.code, response_code::NO_PERMISSION);
        assert_eq!(
            forbidden.remark.as_deref(),
            Some("the topic[%RETRY%CG] sending message is forbidden")
        );

        // A group without retry queues drops what it gives back (RocketMQ's rule).
        group(&r, "NR", 0).await;
        let dropped = r.call(&p, send_back_at(offset, "NR", 0)).await;
        assert_eq!(dropped.code, response_code::SUCCESS);
        assert!(r.inner.replica.metadata().topic("%RETRY%NR").unwrap().is_none());

        // Level -1 asks for the dead-letter topic at once, created on first use.
        group(&r, "DL", 1).await;
        let dead = r.call(&p, send_back_at(offset, "DL", -1)).await;
        assert_eq!(dead.code, response_code::SUCCESS, "{:?}", dead.remark);
        assert_eq!(stored(&r, "%DLQ%DL").await, ["payload"]);
        assert!(stored(&r, "%RETRY%DL").await.is_empty());
        drop(p);
        r.stop().await;
    }
}
