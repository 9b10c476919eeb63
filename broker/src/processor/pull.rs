//! The pull processor: PULL_MESSAGE on any replica (committed data only), held up to the
//! client's suspend timeout while nothing new arrives (long polling). A follower answers as a
//! RocketMQ slave: it never tells a consumer its offset moved.

use std::time::Duration;

use rocketraft_protocol::body::SubscriptionData;
use rocketraft_protocol::headers::*;
use rocketraft_protocol::sysflag;
use rocketraft_protocol::{response_code, RemotingCommand};
use rocketraft_raft::types::ConsumerOffset;
use rocketraft_raft::{MetaStore, QueueRead, ReadLimits};
use rocketraft_store::io::Storage;
use rocketraft_store::QueueOffset;

use crate::filter::Filter;
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
    check_names(req, Some(&h.topic), Some(&h.consumer_group))?;
    let filter = subscription(req, &h, inner)?;
    // An operator reset the group's offset on this queue: the consumer moves there first.
    let requested = u64::try_from(h.queue_offset).unwrap_or(0);
    if is_leader(inner) {
        if let Some(target) =
            inner.resets.take_for_pull(&h.consumer_group, &h.topic, h.queue_id, requested)
        {
            let (min, max) = inner
                .replica
                .queue_bounds(&h.topic, h.queue_id)
                .map_or((0, 0), |(a, b)| (a.0, b.0));
            return Ok(reply(req, response_code::PULL_OFFSET_MOVED, "OFFSET_RESET").with_header(
                &PullMessageResponseHeader {
                    suggest_which_broker_id: 0,
                    next_begin_offset: target as i64,
                    min_offset: min as i64,
                    max_offset: max as i64,
                },
            ));
        }
    }
    // Only for a known group (the pull itself checked the topic and queue).
    if h.sys_flag & sysflag::pull::COMMIT_OFFSET != 0
        && h.commit_offset >= 0
        && is_leader(inner)
        && super::offsets::check_offset_target(req, inner, &h.consumer_group, &h.topic, h.queue_id)
            .is_ok()
    {
        // The commit-offset piggyback: the consumer's progress rides on its pull.
        let offset =
            super::offsets::within_queue(inner, &h.topic, h.queue_id, h.commit_offset as u64);
        inner.replica.commit_offset(ConsumerOffset {
            group: h.consumer_group.clone(),
            topic: h.topic.clone(),
            queue_id: h.queue_id,
            offset,
        });
    }
    // A negative offset is below every queue's start: the master sends the consumer to the
    // start (OFFSET_MOVED), a follower leaves it where it is (see the Moved arm).
    let below_start = if is_leader(inner) { 0 } else { u64::MAX };
    let mut offset = QueueOffset(u64::try_from(h.queue_offset).unwrap_or(below_start));
    let max = h.max_msg_nums.clamp(1, inner.config.pull_batch_max) as usize;
    #[cfg(madsim)]
    let max = if inner.config.sim_bug_pull_batch_unbounded {
        h.max_msg_nums.max(1) as usize
    } else {
        max
    };
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
        #[allow(clippy::disallowed_methods)] // the runtime's clock, virtual under madsim
        let looked = tokio::time::Instant::now();
        let (mut found, min, max_offset) = inner
            .replica
            .read_queue(&h.topic, h.queue_id, offset, limits, |code| filter.matches_code(code))
            .map_err(system_error(req))?;
        if let QueueRead::Found { body, messages, next } = &mut found {
            if filter.reads_records() {
                *messages = filter.retain_records(body);
                if *messages == 0 {
                    found = QueueRead::NoMatch { next: *next };
                }
            }
        }
        let respond = |code: i32, next: i64, body: Vec<u8>, remark: &str| {
            let mut resp = reply(req, code, remark).with_header(&PullMessageResponseHeader {
                suggest_which_broker_id: 0,
                next_begin_offset: next,
                min_offset: min.0 as i64,
                max_offset: max_offset.0 as i64,
            });
            resp.body = body.into();
            resp
        };
        match found {
            QueueRead::Found { body, messages, next } => {
                inner.rates.record(&h.consumer_group, messages as u64, now_ms(inner));
                let (n, bytes) = (messages as u64, body.len() as u64);
                inner.stats.pulled(&h.consumer_group, &h.topic, n, bytes, looked.elapsed());
                #[cfg(madsim)]
                let next = QueueOffset(next.0 + u64::from(inner.config.sim_bug_pull_skips_one));
                return Ok(respond(response_code::SUCCESS, next.0 as i64, body, "FOUND"));
            }
            QueueRead::NoMatch { next } if suspend && next == max_offset => {
                // Nothing matched up to the end: wait there for a message that does (the
                // consumer is not woken by the ones it would skip).
                offset = next;
                tokio::select! {
                    biased;
                    _ = &mut woken, if !deadline.is_elapsed() => continue,
                    _ = &mut deadline => return Ok(respond(response_code::PULL_NOT_FOUND, offset.0 as i64, Vec::new(), "NO_NEW_MESSAGE")),
                }
            }
            QueueRead::NoMatch { next } => {
                return Ok(respond(
                    response_code::PULL_RETRY_IMMEDIATELY,
                    next.0 as i64,
                    Vec::new(),
                    "NO_MATCHED_MESSAGE",
                ))
            }
            QueueRead::Moved { next } if !is_leader(inner) => {
                // A RocketMQ slave never moves a consumer (`offsetCheckInSlave` off): its
                // queues may start later or end sooner than the master's. The consumer tries
                // again at the same offset, and the master decides.
                let status =
                    if next > offset { "OFFSET_TOO_SMALL" } else { "OFFSET_OVERFLOW_BADLY" };
                return Ok(respond(
                    response_code::PULL_RETRY_IMMEDIATELY,
                    h.queue_offset,
                    Vec::new(),
                    status,
                ));
            }
            QueueRead::Moved { next } => {
                return Ok(respond(
                    response_code::PULL_OFFSET_MOVED,
                    next.0 as i64,
                    Vec::new(),
                    "OFFSET_MOVED",
                ))
            }
            QueueRead::NoNew if !suspend => {
                return Ok(respond(
                    response_code::PULL_NOT_FOUND,
                    offset.0 as i64,
                    Vec::new(),
                    "NO_NEW_MESSAGE",
                ))
            }
            QueueRead::NoNew => {
                tokio::select! {
                    biased;
                    _ = &mut woken => continue,
                    _ = &mut deadline => return Ok(respond(response_code::PULL_NOT_FOUND, offset.0 as i64, Vec::new(), "NO_NEW_MESSAGE")),
                }
            }
        }
    }
}

/// The pull's filter: the subscription it posts (the SUBSCRIPTION flag), else the one its
/// consumer registered by heartbeat, else every message.
fn subscription<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    h: &PullMessageRequestHeader,
    inner: &Inner<S, M>,
) -> Result<Filter, RemotingCommand> {
    let posted = h.sys_flag & sysflag::pull::SUBSCRIPTION != 0;
    let compiled = match &h.subscription {
        Some(expr) if posted => Filter::compile(
            &h.topic,
            h.expression_type.as_deref(),
            expr,
            h.sub_version,
            inner.config.enable_property_filter,
        ),
        _ => {
            let registered = inner
                .clients
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .subscription(&h.consumer_group, &h.topic)
                .cloned();
            match registered {
                Some(sub) => Filter::compile(
                    &h.topic,
                    Some(&sub.expression_type),
                    &sub.sub_string,
                    sub.sub_version,
                    inner.config.enable_property_filter,
                ),
                None => Ok(Filter::Tags(SubscriptionData::tag(h.topic.clone(), "*", 0))),
            }
        }
    };
    compiled.map_err(|r| reply(req, r.code, r.remark))
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use rocketraft_protocol::body::{ConsumeFromWhere, ConsumeType};
    use rocketraft_protocol::message::decode_records;
    use rocketraft_raft::MemMeta;
    use rocketraft_store::io::sim::SimStorage;

    use super::super::testing::{request, OneReplica};
    use super::*;

    fn pull_at(offset: i64, tags: Option<&str>) -> RemotingCommand {
        request(rc::PULL_MESSAGE, pull_header(offset, "TAG", tags))
    }

    /// A pull of queue 0 of "T" from `offset`, posting `expr` (of `kind`) if given.
    fn pull_header(offset: i64, kind: &str, expr: Option<&str>) -> PullMessageRequestHeader {
        PullMessageRequestHeader {
            consumer_group: "CG".into(),
            topic: "T".into(),
            queue_offset: offset,
            max_msg_nums: 32,
            sys_flag: sysflag::pull::build(false, false, expr.is_some()),
            subscription: expr.map(str::to_owned),
            expression_type: Some(kind.into()),
            ..Default::default()
        }
    }

    /// Topic "T" with "one" (tag a), "two" (b) and "three" (a) in queue 0.
    async fn three_tagged(r: &OneReplica) {
        r.topic("T").await;
        for (tag, body) in [("a", "one"), ("b", "two"), ("a", "three")] {
            assert_eq!(r.send("T", tag, body, body).await.code, response_code::SUCCESS);
        }
    }

    #[tokio::test]
    async fn pulls_return_stored_records_filter_by_tag_and_say_where_to_go_next() {
        let r = OneReplica::start().await;
        three_tagged(&r).await;
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

        // A negative offset is before the queue's start: read from the start, not skipped.
        let negative = r.call(&p, pull_at(-5, None)).await;
        assert_eq!(negative.code, response_code::SUCCESS, "{:?}", negative.remark);
        assert_eq!(decode_records(&negative.body).unwrap().len(), 3);
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

    /// The properties of the filter test's message `i`: `n` a number (absent from every 7th,
    /// the text "x" in every 11th), `region` one of three, `price` a double.
    fn filter_props(i: u32) -> Vec<(&'static str, String)> {
        let mut p = vec![
            ("TAGS", if i.is_multiple_of(2) { "even" } else { "odd" }.to_owned()),
            ("region", ["eu", "us", "apac"][i as usize % 3].to_owned()),
            ("price", format!("{}.5", i % 50)),
        ];
        if i.is_multiple_of(11) {
            p.push(("n", "x".to_owned()));
        } else if !i.is_multiple_of(7) {
            p.push(("n", (i % 100).to_string()));
        }
        p
    }

    /// Every body the subscription (`expr` of `kind`, posted on each pull) takes from queue 0
    /// of "T", pulled to the end.
    async fn pull_all(
        p: &PullProcessor<SimStorage, MemMeta>,
        r: &OneReplica,
        kind: &str,
        expr: &str,
    ) -> Vec<u32> {
        let mut got = Vec::new();
        let mut offset = 0;
        loop {
            let req = request(rc::PULL_MESSAGE, pull_header(offset, kind, Some(expr)));
            let answer = r.call(p, req).await;
            let h: PullMessageResponseHeader = answer.decode_header().unwrap();
            match answer.code {
                response_code::SUCCESS => {
                    for m in decode_records(&answer.body).unwrap() {
                        got.push(std::str::from_utf8(m.body).unwrap().parse().unwrap());
                    }
                }
                response_code::PULL_RETRY_IMMEDIATELY => {}
                response_code::PULL_NOT_FOUND => return got,
                other => panic!("{expr}: {other} {:?}", answer.remark),
            }
            offset = h.next_begin_offset;
        }
    }

    #[tokio::test]
    async fn sql92_selectors_deliver_exactly_the_matching_messages() {
        use rocketraft_protocol::message::{encode_batch, properties_to_string, BatchMessage};
        let r = OneReplica::start_with(|c| c.enable_property_filter = true).await;
        r.topic("T").await;
        const COUNT: u32 = 10_000;
        for first in (0..COUNT).step_by(500) {
            let batch: Vec<BatchMessage> = (first..first + 500)
                .map(|i| BatchMessage {
                    flag: 0,
                    body: bytes::Bytes::from(i.to_string()),
                    properties: properties_to_string(
                        filter_props(i).iter().map(|(k, v)| (*k, v.as_str())),
                    ),
                })
                .collect();
            let h = SendMessageRequestHeader {
                producer_group: "PG".into(),
                topic: "T".into(),
                queue_id: 0,
                batch: Some(true),
                ..Default::default()
            };
            let req = request(rc::SEND_BATCH_MESSAGE, SendMessageRequestHeaderV2::from(h))
                .with_body(encode_batch(&batch).unwrap());
            let answer = r.call(&super::super::send::SendProcessor(r.inner.clone()), req).await;
            assert_eq!(answer.code, response_code::SUCCESS, "{:?}", answer.remark);
        }
        let p = PullProcessor(r.inner.clone());
        // Each selector, and the same question answered by plain Rust over the properties.
        type Oracle = fn(u32) -> bool;
        fn n(i: u32) -> Option<u32> {
            (!i.is_multiple_of(11) && !i.is_multiple_of(7)).then_some(i % 100)
        }
        let cases: [(&str, Oracle); 7] = [
            ("n > 90", |i| n(i).is_some_and(|n| n > 90)),
            ("n BETWEEN 10 AND 12 AND region = 'eu'", |i| {
                n(i).is_some_and(|n| (10..=12).contains(&n)) && i % 3 == 0
            }),
            ("region IN ('us', 'apac') AND TAGS = 'even' AND price >= 48.5", |i| {
                i % 3 != 0 && i % 2 == 0 && i % 50 >= 48
            }),
            ("n IS NULL", |i| i % 7 == 0 && i % 11 != 0),
            ("NOT (n < 95)", |i| n(i).is_some_and(|n| n >= 95)),
            // n = "x" (every 11th) makes the whole selector false, as in RocketMQ.
            ("n = 3 OR price = 7.5", |i| i % 11 != 0 && (n(i) == Some(3) || i % 50 == 7)),
            ("region = 'mars'", |_| false),
        ];
        for (expr, oracle) in cases {
            let want: Vec<u32> = (0..COUNT).filter(|i| oracle(*i)).collect();
            let got = pull_all(&p, &r, "SQL92", expr).await;
            assert_eq!(got.len(), want.len(), "{expr}");
            assert_eq!(got, want, "{expr}");
        }
        // A tag subscription is unchanged.
        let odd = pull_all(&p, &r, "TAG", "odd").await;
        assert_eq!(odd, (0..COUNT).filter(|i| i % 2 == 1).collect::<Vec<_>>());
        drop(p);
        r.stop().await;
    }

    #[tokio::test]
    async fn sql92_refused_when_off_or_unparsable_and_heartbeat_subscriptions_filter_pulls() {
        let r = OneReplica::start().await;
        three_tagged(&r).await;
        let p = PullProcessor(r.inner.clone());
        let sql = |expr: &str| request(rc::PULL_MESSAGE, pull_header(0, "SQL92", Some(expr)));
        // Property filtering off (the default): RocketMQ's answer.
        let off = r.call(&p, sql("a > 1")).await;
        assert_eq!(off.code, response_code::SYSTEM_ERROR);
        assert_eq!(off.remark.as_deref(), Some(crate::filter::SQL92_DISABLED));
        // A consumer that registered tag "b" by heartbeat and does not post it on its pulls
        // (Java's default) gets only "b".
        let heartbeat = rocketraft_protocol::body::HeartbeatData {
            client_id: "c1".into(),
            consumer_data_set: vec![rocketraft_protocol::body::ConsumerData {
                consume_from_where: ConsumeFromWhere::ConsumeFromLastOffset,
                consume_type: ConsumeType::ConsumePassively,
                group_name: "CG".into(),
                message_model: rocketraft_protocol::body::MessageModel::Clustering,
                subscription_data_set: vec![SubscriptionData::tag("T", "b", 1)],
                unit_mode: false,
            }],
            producer_data_set: Vec::new(),
        };
        let hb = RemotingCommand::request_without_header(rc::HEART_BEAT).with_body(
            rocketraft_protocol::body::JsonBody::to_json(
                &heartbeat,
                rocketraft_protocol::body::JsonStyle::Standard,
            ),
        );
        let clients = super::super::clients::ClientsProcessor(r.inner.clone());
        assert_eq!(r.call(&clients, hb).await.code, response_code::SUCCESS);
        let registered = r.call(&p, pull_at(0, None)).await;
        assert_eq!(registered.code, response_code::SUCCESS, "{:?}", registered.remark);
        let bodies: Vec<_> =
            decode_records(&registered.body).unwrap().iter().map(|m| m.body.to_vec()).collect();
        assert_eq!(bodies, [b"two".to_vec()]);
        drop((p, clients));
        r.stop().await;

        let r = OneReplica::start_with(|c| c.enable_property_filter = true).await;
        r.topic("T").await;
        let p = PullProcessor(r.inner.clone());
        let bad = r.call(&p, sql("a > AND")).await;
        assert_eq!(bad.code, response_code::SUBSCRIPTION_PARSE_FAILED);
        assert!(bad.remark.as_deref().unwrap().contains("column 5"), "{:?}", bad.remark);
        // CHECK_CLIENT_CONFIG answers the same before a consumer starts.
        let check = |expr: &str| {
            let body = rocketraft_protocol::body::CheckClientRequestBody {
                client_id: "c1".into(),
                group: "CG".into(),
                subscription_data: Some(SubscriptionData::sql92("T", expr, 1)),
            };
            RemotingCommand::request_without_header(rc::CHECK_CLIENT_CONFIG).with_body(
                rocketraft_protocol::body::JsonBody::to_json(
                    &body,
                    rocketraft_protocol::body::JsonStyle::Standard,
                ),
            )
        };
        let clients = super::super::clients::ClientsProcessor(r.inner.clone());
        assert_eq!(r.call(&clients, check("a > 1")).await.code, response_code::SUCCESS);
        let refused = r.call(&clients, check("a >")).await;
        assert_eq!(refused.code, response_code::SUBSCRIPTION_PARSE_FAILED, "{:?}", refused.remark);
        drop((p, clients));
        r.stop().await;
    }

    #[tokio::test]
    async fn a_held_pull_is_not_woken_by_messages_its_filter_skips() {
        let r = OneReplica::start_with(|c| c.enable_property_filter = true).await;
        r.topic("T").await;
        let p = PullProcessor(r.inner.clone());
        let mut h = pull_header(0, "SQL92", Some("TAGS = 'wanted'"));
        h.sys_flag = sysflag::pull::build(false, true, true);
        h.suspend_timeout_millis = 5_000;
        let held = r.call(&p, request(rc::PULL_MESSAGE, h));
        let sends = async {
            for i in 0..3 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                r.send("T", "other", "k", &format!("skip{i}")).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            r.send("T", "wanted", "k", "take").await;
        };
        let (answer, ()) = tokio::join!(held, sends);
        assert_eq!(answer.code, response_code::SUCCESS, "{:?}", answer.remark);
        let bodies: Vec<_> =
            decode_records(&answer.body).unwrap().iter().map(|m| m.body.to_vec()).collect();
        assert_eq!(bodies, [b"take".to_vec()], "answered once, with the match only");
        let next: PullMessageResponseHeader = answer.decode_header().unwrap();
        assert_eq!(next.next_begin_offset, 4);
        drop(p);
        r.stop().await;
    }
}
