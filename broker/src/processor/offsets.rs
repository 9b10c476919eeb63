//! Queue and consumer offsets: a queue's min and max, the offset at a time, the earliest store
//! time, and consumer offsets queried and committed (through Raft, batched).

use rocketraft_protocol::headers::*;
use rocketraft_protocol::{request_code as rc, response_code, RemotingCommand};
use rocketraft_raft::types::ConsumerOffset;
use rocketraft_raft::MetaStore;
use rocketraft_store::io::Storage;

#[cfg(all(test, not(madsim)))]
use crate::server::group_now_ms;
use crate::server::Inner;

use super::*;

/// Queue offsets, offsets by time, consumer offsets.
pub(crate) struct OffsetsProcessor<S: Storage + Clone, M: MetaStore>(pub(crate) Arc<Inner<S, M>>);

impl<S: Storage + Clone, M: MetaStore> OffsetsProcessor<S, M> {
    pub(crate) const CODES: &'static [i32] = &[
        rc::GET_MAX_OFFSET,
        rc::GET_MIN_OFFSET,
        rc::QUERY_CONSUMER_OFFSET,
        rc::SEARCH_OFFSET_BY_TIMESTAMP,
        rc::GET_EARLIEST_MSG_STORETIME,
        rc::UPDATE_CONSUMER_OFFSET,
        rc::INVOKE_BROKER_TO_RESET_OFFSET,
    ];
}

impl<S: Storage + Clone, M: MetaStore> Processor for OffsetsProcessor<S, M> {
    fn process(&self, req: RemotingCommand, _peer: Peer) -> Answer<'_> {
        Box::pin(async move {
            let (req, inner) = (&req, &*self.0);
            match req.code {
                rc::GET_MAX_OFFSET | rc::GET_MIN_OFFSET => queue_offset(req, inner).await,
                rc::QUERY_CONSUMER_OFFSET => query_consumer_offset(req, inner).await,
                rc::SEARCH_OFFSET_BY_TIMESTAMP => search_offset(req, inner),
                rc::GET_EARLIEST_MSG_STORETIME => earliest_store_time(req, inner),
                rc::UPDATE_CONSUMER_OFFSET => update_consumer_offset(req, inner).await,
                rc::INVOKE_BROKER_TO_RESET_OFFSET => reset_offset(req, inner).await,
                _ => Err(unsupported(req)),
            }
            .unwrap_or_else(|e| e)
        })
    }
}

pub(crate) async fn queue_offset<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: TopicQueueRequestHeader = header(req)?;
    master_ready(inner).await;
    let (min, max) = inner
        .replica
        .queue_bounds(&h.topic, h.queue_id)
        .map_or((0, 0), |(min, max)| (min.0, max.0));
    let offset = if req.code == rc::GET_MAX_OFFSET { max } else { min };
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_header(&OffsetResponseHeader { offset: offset as i64 }))
}

pub(crate) async fn query_consumer_offset<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: QueryConsumerOffsetRequestHeader = header(req)?;
    // A master answers from current state; a follower from its own, which may lag (RocketMQ's
    // slaves answer from theirs too; clients ask the master while it is up).
    master_ready(inner).await;
    let stored = inner
        .replica
        .metadata()
        .consumer_offset(&h.consumer_group, &h.topic, h.queue_id)
        .map_err(system_error(req))?;
    let offset = match stored {
        Some(o) => o,
        None if h.set_zero_if_not_found == Some(false) => {
            return Err(reply(req, response_code::QUERY_NOT_FOUND, "the group has no offset here"));
        }
        None => {
            // RocketMQ: no stored offset and the queue still starts at 0 -> 0; otherwise the
            // consumer decides where to start (CONSUME_FROM_*).
            let min = inner.replica.queue_bounds(&h.topic, h.queue_id).map_or(0, |(min, _)| min.0);
            if min > 0 {
                return Err(reply(
                    req,
                    response_code::QUERY_NOT_FOUND,
                    "Not found, maybe this group consumer boot first",
                ));
            }
            0
        }
    };
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_header(&OffsetResponseHeader { offset: offset as i64 }))
}

/// Oneway commits are batched and forgotten; a commit that expects an answer gets it once the
/// offset is committed through Raft (SYSTEM_ERROR if that failed), so a consumer that hands a
/// queue over knows every replica already has the offset.
pub(crate) async fn update_consumer_offset<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: UpdateConsumerOffsetRequestHeader = header(req)?;
    check_names(req, Some(&h.topic), Some(&h.consumer_group))?;
    if !master_ready(inner).await {
        return Err(not_master(req, inner));
    }
    if h.commit_offset < 0 {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            format!("commitOffset {} is negative", h.commit_offset),
        ));
    }
    check_offset_target(req, inner, &h.consumer_group, &h.topic, h.queue_id)
        .map_err(|answer| logged(inner, answer))?;
    if inner.resets.is_pending(&h.consumer_group, &h.topic, h.queue_id) {
        // The consumer's position predates an operator's reset: it learns the new one on its
        // next pull (RocketMQ answers the same).
        return Ok(reply(req, response_code::SUCCESS, "Offset has been previously reset"));
    }
    let offset = ConsumerOffset {
        offset: within_queue(inner, &h.topic, h.queue_id, h.commit_offset as u64),
        group: h.consumer_group,
        topic: h.topic,
        queue_id: h.queue_id,
    };
    if req.is_oneway() {
        inner.replica.commit_offset(offset);
    } else if !inner.replica.commit_offset_and_wait(offset).await {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            "the offset was not committed (leader changed or too many commits waiting); send it again",
        ));
    }
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None))
}

/// What a committed offset may name, as RocketMQ 5.x checks it: a subscription group (or one a
/// heartbeat is creating), an existing topic and one of its queues. So the offsets table grows
/// only with what exists.
pub(crate) fn check_offset_target<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
    group: &str,
    topic: &str,
    queue_id: i32,
) -> Result<(), RemotingCommand> {
    if !super::send::known_group(inner, group) {
        return Err(reply(
            req,
            response_code::SUBSCRIPTION_GROUP_NOT_EXIST,
            format!("Group {group} not exist!"),
        ));
    }
    let Some(t) = inner.replica.metadata().topic(topic).map_err(system_error(req))? else {
        return Err(reply(
            req,
            response_code::TOPIC_NOT_EXIST,
            format!("Topic {topic} not exist!"),
        ));
    };
    let queues = t.read_queue_nums.max(t.write_queue_nums);
    if queue_id < 0 || queue_id >= queues {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            format!("queueId[{queue_id}] is illegal, topic:[{topic}] has {queues} queues"),
        ));
    }
    Ok(())
}

/// A committed offset as the master keeps it: one past the queue's end is cut to the end (a
/// consumer there would skip every message sent until the queue reached it); lower ones,
/// below the queue's start too, stand (seeks and resets move consumers back on purpose). A
/// queue that holds nothing yet ends at 0.
pub(crate) fn within_queue<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    topic: &str,
    queue_id: i32,
    offset: u64,
) -> u64 {
    let end = inner.replica.queue_bounds(topic, queue_id).map_or(0, |(_, max)| max.0);
    if offset > end {
        tracing::debug!(topic, queue_id, offset, end, "a commit past the queue's end is cut to it");
    }
    offset.min(end)
}

/// INVOKE_BROKER_TO_RESET_OFFSET, as RocketMQ 5.x does it by default (server side): the master
/// works out each queue's new offset (an exact `offset` for one queue; else the first message
/// stored at or after `timestamp`, or the queue's end for a negative one), commits them all
/// through Raft in one entry, and answers them; running consumers are moved on their next pull
/// (see [`crate::resets`]). No consumer needs to be online, and `isForce` changes nothing (an
/// offset may move either way).
pub(crate) async fn reset_offset<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: ResetOffsetRequestHeader = header(req)?;
    check_names(req, Some(&h.topic), Some(&h.group))?;
    if !master_ready(inner).await {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            "Can not reset offset in slave broker",
        ));
    }
    let Some(topic) = inner.replica.metadata().topic(&h.topic).map_err(system_error(req))? else {
        return Err(reply(
            req,
            response_code::TOPIC_NOT_EXIST,
            format!("Topic {} does not exist", h.topic),
        ));
    };
    if inner.replica.metadata().group(&h.group).map_err(system_error(req))?.is_none() {
        return Err(reply(
            req,
            response_code::SUBSCRIPTION_GROUP_NOT_EXIST,
            format!("Group {} does not exist", h.group),
        ));
    }
    let queue_id = h.queue_id.unwrap_or(-1);
    let queues: Vec<i32> = if queue_id >= 0 {
        if queue_id >= topic.read_queue_nums {
            return Err(reply(
                req,
                response_code::SYSTEM_ERROR,
                format!(
                    "queueId {queue_id} is not a queue of {} ({} queues)",
                    h.topic, topic.read_queue_nums
                ),
            ));
        }
        vec![queue_id]
    } else {
        (0..topic.read_queue_nums).collect()
    };
    if queues.is_empty() {
        return Err(reply(req, response_code::SYSTEM_ERROR, "No queues to reset."));
    }
    if !inner.resets.has_room(queues.len()) {
        return Err(reply(
            req,
            response_code::SYSTEM_BUSY,
            "too many offset resets wait for their consumers; try again later",
        ));
    }
    let exact = h.offset.filter(|o| *o != -1 && queue_id >= 0);
    let mut offsets = Vec::with_capacity(queues.len());
    for q in queues {
        let (min, max) =
            inner.replica.queue_bounds(&h.topic, q).map_or((0, 0), |(a, b)| (a.0, b.0));
        let target = match exact {
            Some(o) if o < min as i64 || o > max as i64 => {
                return Err(reply(
                    req,
                    response_code::SYSTEM_ERROR,
                    format!("Target offset {o} not in consume queue range [{min}-{max}]"),
                ));
            }
            Some(o) => o as u64,
            None if h.timestamp < 0 => max,
            None => inner
                .replica
                .search_offset(&h.topic, q, h.timestamp)
                .map_err(system_error(req))?
                .clamp(min, max),
        };
        offsets.push(ConsumerOffset {
            group: h.group.clone(),
            topic: h.topic.clone(),
            queue_id: q,
            offset: target,
        });
    }
    propose_metadata(
        req,
        inner,
        vec![rocketraft_raft::MetaCommand::CommitOffsets(offsets.clone())],
    )
    .await?;
    let mut body = rocketraft_protocol::admin::ResetOffsetBody::default();
    for o in offsets {
        inner.resets.set(&o.group, &o.topic, o.queue_id, o.offset);
        let queue = rocketraft_protocol::body::MessageQueue {
            broker_name: inner.config.broker_name.clone(),
            queue_id: o.queue_id,
            topic: o.topic,
        };
        body.offset_table.insert(queue, o.offset as i64);
    }
    tracing::info!(group = %h.group, topic = %h.topic, queues = body.offset_table.len(), timestamp = h.timestamp, "consumer offsets reset");
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None).with_body(body.encode()))
}

pub(crate) fn search_offset<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: SearchOffsetRequestHeader = header(req)?;
    let offset = inner
        .replica
        .search_offset(&h.topic, h.queue_id, h.timestamp)
        .map_err(system_error(req))?;
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_header(&OffsetResponseHeader { offset: offset as i64 }))
}

pub(crate) fn earliest_store_time<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: TopicQueueRequestHeader = header(req)?;
    let first =
        inner.replica.earliest_store_time(&h.topic, h.queue_id).map_err(system_error(req))?;
    let Some(timestamp) = first else {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            format!("no message in {}/{}", h.topic, h.queue_id),
        ));
    };
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_header(&GetEarliestMsgStoretimeResponseHeader { timestamp }))
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::super::testing::{request, OneReplica};
    use super::*;

    fn commit(offset: i64) -> RemotingCommand {
        let h = UpdateConsumerOffsetRequestHeader {
            consumer_group: "CG".into(),
            topic: "T".into(),
            commit_offset: offset,
            ..Default::default()
        };
        request(rc::UPDATE_CONSUMER_OFFSET, h)
    }

    fn offset_of(answer: &RemotingCommand) -> i64 {
        assert_eq!(answer.code, response_code::SUCCESS, "{:?}", answer.remark);
        answer.decode_header::<OffsetResponseHeader>().unwrap().offset
    }

    #[tokio::test]
    async fn queue_bounds_and_consumer_offsets_answer_from_replicated_state() {
        let r = OneReplica::start().await;
        r.topic("T").await;
        r.group("CG").await;
        for _ in 0..5 {
            r.send("T", "a", "k", "x").await;
        }
        let p = OffsetsProcessor(r.inner.clone());
        let queue = |code| {
            request(code, TopicQueueRequestHeader { topic: "T".into(), ..Default::default() })
        };
        assert_eq!(offset_of(&r.call(&p, queue(rc::GET_MAX_OFFSET)).await), 5);
        assert_eq!(offset_of(&r.call(&p, queue(rc::GET_MIN_OFFSET)).await), 0);

        let query = || {
            let h = QueryConsumerOffsetRequestHeader {
                consumer_group: "CG".into(),
                topic: "T".into(),
                set_zero_if_not_found: Some(false),
                ..Default::default()
            };
            request(rc::QUERY_CONSUMER_OFFSET, h)
        };
        assert_eq!(r.call(&p, query()).await.code, response_code::QUERY_NOT_FOUND);
        assert_eq!(r.call(&p, commit(4)).await.code, response_code::SUCCESS);
        assert_eq!(offset_of(&r.call(&p, query()).await), 4);
        assert_eq!(r.call(&p, commit(-1)).await.code, response_code::SYSTEM_ERROR);
        assert_eq!(offset_of(&r.call(&p, query()).await), 4, "a refused commit changes nothing");
        assert_eq!(r.call(&p, commit(2)).await.code, response_code::SUCCESS);
        assert_eq!(offset_of(&r.call(&p, query()).await), 2, "a consumer may move back");
        assert_eq!(r.call(&p, commit(500)).await.code, response_code::SUCCESS);
        assert_eq!(offset_of(&r.call(&p, query()).await), 5, "past the end: cut to the end");

        // Only what exists: an unknown group or topic, or a queue the topic lacks.
        let commit_to = |group: &str, topic: &str, queue_id: i32| {
            let h = UpdateConsumerOffsetRequestHeader {
                consumer_group: group.into(),
                topic: topic.into(),
                queue_id,
                commit_offset: 1,
                ..Default::default()
            };
            request(rc::UPDATE_CONSUMER_OFFSET, h)
        };
        let refused = r.call(&p, commit_to("Stranger", "T", 0)).await;
        assert_eq!(refused.code, response_code::SUBSCRIPTION_GROUP_NOT_EXIST);
        assert_eq!(refused.remark.as_deref(), Some("Group Stranger not exist!"));
        let refused = r.call(&p, commit_to("CG", "Nope", 0)).await;
        assert_eq!(refused.code, response_code::TOPIC_NOT_EXIST);
        assert_eq!(refused.remark.as_deref(), Some("Topic Nope not exist!"));
        for queue_id in [-1, 4] {
            let refused = r.call(&p, commit_to("CG", "T", queue_id)).await;
            assert_eq!(refused.code, response_code::SYSTEM_ERROR, "queue {queue_id}");
        }
        let offsets = r.inner.replica.metadata().offset_topics("Stranger").unwrap();
        assert!(offsets.is_empty(), "nothing was stored for the refused commits");
        drop(p);
        r.stop().await;
    }

    fn reset(
        topic: &str,
        group: &str,
        queue_id: Option<i32>,
        offset: Option<i64>,
        timestamp: i64,
    ) -> RemotingCommand {
        let h = ResetOffsetRequestHeader {
            topic: topic.into(),
            group: group.into(),
            queue_id,
            offset,
            timestamp,
            is_force: Some(true),
        };
        request(rc::INVOKE_BROKER_TO_RESET_OFFSET, h)
    }

    /// `mqadmin resetOffsetByTime` against a running consumer: every replica gets the new
    /// offsets, the consumer's stale commits are ignored and its next pull moves it there.
    #[tokio::test]
    async fn a_reset_by_time_commits_new_offsets_and_moves_the_running_consumer() {
        use rocketraft_protocol::admin::ResetOffsetBody;
        use rocketraft_protocol::body::{JsonBody, JsonStyle, SubscriptionGroupConfig};
        let r = OneReplica::start().await;
        r.topic("T").await;
        let before = group_now_ms(&r.inner);
        for _ in 0..5 {
            r.send("T", "a", "k", "x").await;
        }
        let group =
            RemotingCommand::request_without_header(rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
                .with_body(
                    SubscriptionGroupConfig::new("CG".to_owned()).to_json(JsonStyle::Standard),
                );
        assert_eq!(
            r.call(&super::super::admin::AdminProcessor(r.inner.clone()), group).await.code,
            0
        );
        let p = OffsetsProcessor(r.inner.clone());
        assert_eq!(r.call(&p, commit(4)).await.code, response_code::SUCCESS);

        assert_eq!(
            r.call(&p, reset("Nope", "CG", None, None, 0)).await.code,
            response_code::TOPIC_NOT_EXIST
        );
        assert_eq!(
            r.call(&p, reset("T", "Nobody", None, None, 0)).await.code,
            response_code::SUBSCRIPTION_GROUP_NOT_EXIST
        );
        let out_of_range = r.call(&p, reset("T", "CG", Some(0), Some(9), 0)).await;
        assert_eq!(out_of_range.code, response_code::SYSTEM_ERROR);
        assert!(out_of_range.remark.unwrap().contains("not in consume queue range [0-5]"));

        // Back to the first message stored at or after `before`: the start of queue 0.
        let answer = r.call(&p, reset("T", "CG", None, None, before)).await;
        assert_eq!(answer.code, response_code::SUCCESS, "{:?}", answer.remark);
        let body = ResetOffsetBody::decode(&answer.body).unwrap();
        assert_eq!(body.offset_table.len(), 4, "every queue of the topic");
        assert!(body.offset_table.values().all(|o| *o == 0), "{body:?}");
        let query = request(
            rc::QUERY_CONSUMER_OFFSET,
            QueryConsumerOffsetRequestHeader {
                consumer_group: "CG".into(),
                topic: "T".into(),
                ..Default::default()
            },
        );
        assert_eq!(offset_of(&r.call(&p, query.clone()).await), 0, "committed through Raft");

        let stale = r.call(&p, commit(4)).await;
        assert_eq!(stale.remark.as_deref(), Some("Offset has been previously reset"));
        assert_eq!(offset_of(&r.call(&p, query.clone()).await), 0, "the stale commit is ignored");
        let pulls = super::super::pull::PullProcessor(r.inner.clone());
        let pull = |offset: i64| {
            request(
                rc::PULL_MESSAGE,
                PullMessageRequestHeader {
                    consumer_group: "CG".into(),
                    topic: "T".into(),
                    queue_offset: offset,
                    max_msg_nums: 32,
                    ..Default::default()
                },
            )
        };
        let moved = r.call(&pulls, pull(4)).await;
        assert_eq!(moved.code, response_code::PULL_OFFSET_MOVED);
        assert_eq!(
            moved.decode_header::<PullMessageResponseHeader>().unwrap().next_begin_offset,
            0
        );
        assert_eq!(r.call(&pulls, pull(0)).await.code, response_code::SUCCESS);
        assert_eq!(r.call(&p, commit(2)).await.remark, None, "commits count again");
        assert_eq!(offset_of(&r.call(&p, query.clone()).await), 2);

        // A negative time is the end of each queue; one queue at an exact offset.
        let answer = r.call(&p, reset("T", "CG", None, None, -1)).await;
        let body = ResetOffsetBody::decode(&answer.body).unwrap();
        assert_eq!(body.offset_table.values().copied().collect::<Vec<_>>(), [5, 0, 0, 0]);
        let answer = r.call(&p, reset("T", "CG", Some(0), Some(3), 0)).await;
        assert_eq!(ResetOffsetBody::decode(&answer.body).unwrap().offset_table.len(), 1);
        assert_eq!(offset_of(&r.call(&p, query).await), 3);
        drop((p, pulls));
        r.stop().await;
    }
}
