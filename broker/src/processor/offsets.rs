//! Queue and consumer offsets: a queue's min and max, the offset at a time, the earliest store
//! time, and consumer offsets queried and committed (through Raft, batched).

use rocketraft_protocol::headers::*;
use rocketraft_protocol::{request_code as rc, response_code, RemotingCommand};
use rocketraft_raft::types::ConsumerOffset;
use rocketraft_raft::MetaStore;
use rocketraft_store::io::Storage;

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
    let offset = ConsumerOffset {
        group: h.consumer_group,
        topic: h.topic,
        queue_id: h.queue_id,
        offset: h.commit_offset as u64,
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
        drop(p);
        r.stop().await;
    }
}
