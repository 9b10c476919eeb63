//! The pull processor: PULL_MESSAGE on any replica (committed data only), held up to the
//! client's suspend timeout while nothing new arrives (long polling).

use std::time::Duration;

use rocketraft_protocol::body::SubscriptionData;
use rocketraft_protocol::headers::*;
use rocketraft_protocol::sysflag;
use rocketraft_protocol::{response_code, RemotingCommand};
use rocketraft_raft::types::ConsumerOffset;
use rocketraft_raft::{MetaStore, QueueRead, ReadLimits};
use rocketraft_store::io::Storage;
use rocketraft_store::QueueOffset;

use crate::server::{now_ms, Inner};

use super::*;

/// PULL_MESSAGE.
pub(crate) struct PullProcessor<S: Storage + Clone, M: MetaStore>(pub(crate) Arc<Inner<S, M>>);

impl<S: Storage + Clone, M: MetaStore> PullProcessor<S, M> {
    pub(crate) const CODES: &'static [i32] = &[rc::PULL_MESSAGE];
}

impl<S: Storage + Clone, M: MetaStore> Processor for PullProcessor<S, M> {
    fn process(&self, req: RemotingCommand, _peer: Peer) -> Answer<'_> {
        Box::pin(async move {
            let (req, inner) = (&req, &*self.0);
            pull(req, inner).await.unwrap_or_else(|e| e)
        })
    }
}

/// Queue entries a pull scans per record it may return, looking for tag matches.
pub(crate) const PULL_SCAN_PER_MESSAGE: usize = 16;

pub(crate) async fn pull<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: PullMessageRequestHeader = header(req)?;
    // A new master serves pulls from current queues, never from shorter ones (it would send
    // readers back with OFFSET_MOVED).
    master_ready(inner).await;
    let topic = topic_of(req, inner, &h.topic)?;
    if h.queue_id < 0 || h.queue_id >= topic.read_queue_nums.max(1) {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            format!(
                "queueId[{}] is illegal, topic:[{}] topicConfig.readQueueNums:[{}]",
                h.queue_id, h.topic, topic.read_queue_nums
            ),
        ));
    }
    let sub = match (&h.subscription, h.sys_flag & sysflag::pull::SUBSCRIPTION != 0) {
        (Some(expr), true) => SubscriptionData::tag(h.topic.clone(), expr, h.sub_version),
        _ => SubscriptionData::tag(h.topic.clone(), "*", h.sub_version),
    };
    check_names(req, Some(&h.topic), Some(&h.consumer_group))?;
    if h.sys_flag & sysflag::pull::COMMIT_OFFSET != 0 && h.commit_offset >= 0 && is_leader(inner) {
        // The commit-offset piggyback: the consumer's progress rides on its pull.
        inner.replica.commit_offset(ConsumerOffset {
            group: h.consumer_group.clone(),
            topic: h.topic.clone(),
            queue_id: h.queue_id,
            offset: h.commit_offset as u64,
        });
    }
    let offset = QueueOffset(u64::try_from(h.queue_offset).unwrap_or(u64::MAX));
    let max = h.max_msg_nums.clamp(1, inner.config.pull_batch_max) as usize;
    let suspend = h.sys_flag & sysflag::pull::SUSPEND != 0;
    let hold = Duration::from_millis(
        (h.suspend_timeout_millis.max(0) as u64).min(inner.config.suspend_max_ms),
    );
    let notifier = inner.waiters.notifier(&h.topic, h.queue_id);
    let deadline = tokio::time::sleep(hold);
    tokio::pin!(deadline);
    loop {
        // Register interest before looking, so an arrival between the look and the wait wakes us.
        let woken = notifier.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let limits = ReadLimits {
            messages_max: max,
            bytes_max: inner.config.pull_bytes_max,
            scan_per_message: PULL_SCAN_PER_MESSAGE,
        };
        let matches = |code: i64| sub.matches_all() || sub.code_set.contains(&(code as i32));
        let (found, min, max_offset) = inner
            .replica
            .read_queue(&h.topic, h.queue_id, offset, limits, matches)
            .map_err(system_error(req))?;
        let respond = |code: i32, next: QueueOffset, body: Vec<u8>, remark: &str| {
            let mut resp = reply(req, code, remark).with_header(&PullMessageResponseHeader {
                suggest_which_broker_id: 0,
                next_begin_offset: next.0 as i64,
                min_offset: min.0 as i64,
                max_offset: max_offset.0 as i64,
            });
            resp.body = body.into();
            resp
        };
        match found {
            QueueRead::Found { body, messages, next } => {
                inner.rates.record(&h.consumer_group, messages as u64, now_ms(inner));
                return Ok(respond(response_code::SUCCESS, next, body, "FOUND"));
            }
            QueueRead::NoMatch { next } => {
                return Ok(respond(
                    response_code::PULL_RETRY_IMMEDIATELY,
                    next,
                    Vec::new(),
                    "NO_MATCHED_MESSAGE",
                ))
            }
            QueueRead::Moved { next } => {
                return Ok(respond(
                    response_code::PULL_OFFSET_MOVED,
                    next,
                    Vec::new(),
                    "OFFSET_MOVED",
                ))
            }
            QueueRead::NoNew if !suspend => {
                return Ok(respond(
                    response_code::PULL_NOT_FOUND,
                    offset,
                    Vec::new(),
                    "NO_NEW_MESSAGE",
                ))
            }
            QueueRead::NoNew => {
                tokio::select! {
                    biased;
                    _ = &mut woken => continue,
                    _ = &mut deadline => return Ok(respond(response_code::PULL_NOT_FOUND, offset, Vec::new(), "NO_NEW_MESSAGE")),
                }
            }
        }
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use rocketraft_protocol::message::decode_records;

    use super::super::testing::{request, OneReplica};
    use super::*;

    fn pull_at(offset: i64, tags: Option<&str>) -> RemotingCommand {
        request(
            rc::PULL_MESSAGE,
            PullMessageRequestHeader {
                consumer_group: "CG".into(),
                topic: "T".into(),
                queue_offset: offset,
                max_msg_nums: 32,
                sys_flag: sysflag::pull::build(false, false, tags.is_some()),
                subscription: tags.map(str::to_owned),
                expression_type: Some("TAG".into()),
                ..Default::default()
            },
        )
    }

    #[tokio::test]
    async fn pulls_return_stored_records_filter_by_tag_and_say_where_to_go_next() {
        let r = OneReplica::start().await;
        r.topic("T").await;
        for (tag, body) in [("a", "one"), ("b", "two"), ("a", "three")] {
            assert_eq!(r.send("T", tag, body, body).await.code, response_code::SUCCESS);
        }
        let p = PullProcessor(r.inner.clone());

        let all = r.call(&p, pull_at(0, None)).await;
        assert_eq!(all.code, response_code::SUCCESS, "{:?}", all.remark);
        let bodies: Vec<_> =
            decode_records(&all.body).unwrap().iter().map(|m| m.body.to_vec()).collect();
        assert_eq!(bodies, [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
        let h: PullMessageResponseHeader = all.decode_header().unwrap();
        assert_eq!((h.next_begin_offset, h.min_offset, h.max_offset), (3, 0, 3));

        let tagged = r.call(&p, pull_at(0, Some("a"))).await;
        let bodies: Vec<_> =
            decode_records(&tagged.body).unwrap().iter().map(|m| m.body.to_vec()).collect();
        assert_eq!(bodies, [b"one".to_vec(), b"three".to_vec()]);

        // At the end: nothing new (not held: the request did not ask to be suspended).
        let end = r.call(&p, pull_at(3, None)).await;
        assert_eq!(end.code, response_code::PULL_NOT_FOUND);
        // Past the end: the consumer is told where the queue ends.
        let past = r.call(&p, pull_at(10, None)).await;
        assert_eq!(past.code, response_code::PULL_OFFSET_MOVED);
        let h: PullMessageResponseHeader = past.decode_header().unwrap();
        assert_eq!(h.next_begin_offset, 3);
        drop(p);
        r.stop().await;
    }
}
