//! Runtime information and statistics: GET_BROKER_RUNTIME_INFO, GET_TOPIC_STATS_INFO,
//! GET_CONSUME_STATS.

use rocketraft_protocol::body::{
    ConsumeStats, DelayOffsets, JsonBody, JsonStyle, KvTable, MessageQueue, OffsetWrapper,
    TopicOffset, TopicStatsTable,
};
use rocketraft_protocol::headers::*;
use rocketraft_protocol::{response_code, RemotingCommand};
use rocketraft_raft::MetaStore;
use rocketraft_store::io::Storage;
use rocketraft_store::QueueOffset;

use crate::server::{lock, now_ms, Inner};

use super::*;

/// Runtime information and statistics.
pub(crate) struct StatsProcessor<S: Storage + Clone, M: MetaStore>(pub(crate) Arc<Inner<S, M>>);

impl<S: Storage + Clone, M: MetaStore> StatsProcessor<S, M> {
    pub(crate) const CODES: &'static [i32] = &[
        rc::GET_BROKER_RUNTIME_INFO,
        rc::GET_TOPIC_STATS_INFO,
        rc::GET_CONSUME_STATS,
        rc::GET_ALL_DELAY_OFFSET,
    ];
}

impl<S: Storage + Clone, M: MetaStore> Processor for StatsProcessor<S, M> {
    fn process(&self, req: RemotingCommand, _peer: Peer) -> Answer<'_> {
        Box::pin(async move {
            let (req, inner) = (&req, &*self.0);
            match req.code {
                rc::GET_BROKER_RUNTIME_INFO => runtime_info(req, inner),
                rc::GET_TOPIC_STATS_INFO => topic_stats(req, inner),
                rc::GET_CONSUME_STATS => consume_stats(req, inner),
                rc::GET_ALL_DELAY_OFFSET => delay_offsets(req, inner),
                _ => Err(unsupported(req)),
            }
            .unwrap_or_else(|e| e)
        })
    }
}

/// GET_BROKER_RUNTIME_INFO: RocketMQ's keys where this broker has the figure (version, boot
/// time, uptime, CommitLog offsets), then this replica's Raft state under `raft*` keys.
/// How far delayed messages were delivered: per delay level and per timer queue, the first
/// parked offset not yet moved to its real topic (the replicated progress, as applied here).
pub(crate) fn delay_offsets<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    use rocketraft_protocol::names::{SCHEDULE_TOPIC, TIMER_TOPIC};
    let moved = |topic, queue| {
        inner
            .replica
            .metadata()
            .moved_up_to(topic, queue)
            .map(|o| o as i64)
            .map_err(system_error(req))
    };
    let mut body = DelayOffsets::default();
    for level in 1..=inner.config.delay_levels.len() {
        body.offset_table.insert(level, moved(SCHEDULE_TOPIC, level - 1)?);
    }
    for queue in 0..rocketraft_protocol::schedule::TIMER_QUEUES {
        body.timer_offset_table.insert(queue, moved(TIMER_TOPIC, queue)?);
    }
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_body(body.to_json(JsonStyle::Standard)))
}

pub(crate) fn runtime_info<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let log = inner.replica.log_stats();
    let up = inner.epoch.elapsed().as_secs();
    let runtime = format!(
        "[ {} days, {} hours, {} minutes, {} seconds ]",
        up / 86_400,
        up / 3_600 % 24,
        up / 60 % 60,
        up % 60
    );
    let table: std::collections::BTreeMap<String, String> = [
        ("brokerVersion", rocketraft_protocol::code::version::CURRENT.to_string()),
        ("brokerVersionDesc", "V4_9_8".to_owned()),
        ("bootTimestamp", inner.epoch_ms.to_string()),
        ("runtime", runtime),
        ("commitLogMinOffset", log.min.to_string()),
        ("commitLogMaxOffset", log.max.to_string()),
        ("commitLogFlushedOffset", log.flushed.to_string()),
        // Since the replica started: Raft appends (rounds), entries, group-commit flushes and
        // the file range syncs they ran (entry bytes and index slots).
        ("commitLogAppends", log.io.appends.to_string()),
        ("commitLogEntries", log.io.entries.to_string()),
        ("commitLogFlushes", log.io.flush_jobs.to_string()),
        ("commitLogFileSyncs", log.io.file_syncs.to_string()),
        ("clientConnections", inner.connections.len().to_string()),
        // How far this replica's clock was moved forward to its group's newest store
        // timestamp when it took over (0: never behind): a replica whose machine's clock is
        // wrong shows here.
        ("clockAheadMs", inner.replica.clock_ahead_ms().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .chain(inner.replica.raft_status())
    .collect();
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_body(KvTable { table }.to_json(JsonStyle::Standard)))
}

/// GET_TOPIC_STATS_INFO: each queue's min and max offsets and the store time of its newest
/// message.
pub(crate) fn topic_stats<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: TopicRequestHeader = header(req)?;
    let t = topic_of(req, inner, &h.topic)?;
    let mut table = TopicStatsTable::default();
    for queue_id in 0..t.read_queue_nums.max(t.write_queue_nums) {
        let (min, max) = inner
            .replica
            .queue_bounds(&t.name, queue_id)
            .map_or((0, 0), |(min, max)| (min.0, max.0));
        let last = match max.checked_sub(1) {
            Some(newest) => inner
                .replica
                .store_time_at(&t.name, queue_id, QueueOffset(newest))
                .map_err(system_error(req))?,
            None => 0,
        };
        let q = MessageQueue {
            broker_name: inner.config.broker_name.clone(),
            queue_id,
            topic: t.name.clone(),
        };
        table.offset_table.insert(
            q,
            TopicOffset {
                last_update_timestamp: last,
                max_offset: max as i64,
                min_offset: min as i64,
            },
        );
    }
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None).with_body(table.encode()))
}

/// GET_CONSUME_STATS: a group's committed offset against each queue's max offset, for one topic
/// or for every topic the group subscribes to or has committed on, and the messages per second
/// this replica served the group over the last minute.
pub(crate) fn consume_stats<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: GetConsumeStatsRequestHeader = header(req)?;
    let topics: std::collections::BTreeSet<String> = match h.topic.filter(|t| !t.is_empty()) {
        Some(t) => [t].into(),
        None => {
            let mut topics = lock(&inner.clients).subscribed_topics(&h.consumer_group);
            topics.extend(
                inner
                    .replica
                    .metadata()
                    .offset_topics(&h.consumer_group)
                    .map_err(system_error(req))?,
            );
            topics
        }
    };
    let mut stats = ConsumeStats {
        consume_tps: inner.rates.tps(&h.consumer_group, now_ms(inner)),
        ..Default::default()
    };
    for topic in topics {
        let Some(t) = inner.replica.metadata().topic(&topic).map_err(system_error(req))? else {
            continue;
        };
        for queue_id in 0..t.read_queue_nums.max(t.write_queue_nums) {
            let committed = inner
                .replica
                .metadata()
                .consumer_offset(&h.consumer_group, &topic, queue_id)
                .map_err(system_error(req))?
                .unwrap_or(0);
            let max = inner.replica.queue_bounds(&topic, queue_id).map_or(0, |(_, max)| max.0);
            let last = match committed.checked_sub(1) {
                Some(consumed) => inner
                    .replica
                    .store_time_at(&topic, queue_id, QueueOffset(consumed))
                    .map_err(system_error(req))?,
                None => 0,
            };
            let q = MessageQueue {
                broker_name: inner.config.broker_name.clone(),
                queue_id,
                topic: topic.clone(),
            };
            stats.offset_table.insert(
                q,
                OffsetWrapper {
                    broker_offset: max as i64,
                    consumer_offset: committed as i64,
                    last_timestamp: last,
                    pull_offset: committed as i64,
                },
            );
        }
    }
    if stats.offset_table.is_empty() {
        return Err(reply(
            req,
            response_code::CONSUMER_NOT_ONLINE,
            format!("the consumer group {} has no subscription or offset here", h.consumer_group),
        ));
    }
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None).with_body(stats.encode()))
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use rocketraft_protocol::body::{JsonBody, KvTable, TopicStatsTable};

    use super::super::testing::{request, OneReplica};
    use super::*;

    #[tokio::test]
    async fn topic_stats_and_runtime_info_describe_the_replica() {
        let r = OneReplica::start().await;
        r.topic("T").await;
        for _ in 0..3 {
            r.send("T", "a", "k", "x").await;
        }
        let p = StatsProcessor(r.inner.clone());
        let stats = r
            .call(&p, request(rc::GET_TOPIC_STATS_INFO, TopicRequestHeader { topic: "T".into() }))
            .await;
        assert_eq!(stats.code, response_code::SUCCESS, "{:?}", stats.remark);
        let table = TopicStatsTable::decode(&stats.body).unwrap().offset_table;
        let max: Vec<i64> = table.values().map(|o| o.max_offset).collect();
        assert_eq!(max, [3, 0, 0, 0]);

        let unknown = request(rc::GET_TOPIC_STATS_INFO, TopicRequestHeader { topic: "U".into() });
        assert_eq!(r.call(&p, unknown).await.code, response_code::TOPIC_NOT_EXIST);

        let info =
            r.call(&p, RemotingCommand::request_without_header(rc::GET_BROKER_RUNTIME_INFO)).await;
        assert_eq!(info.code, response_code::SUCCESS);
        assert!(!KvTable::from_json(&info.body).unwrap().table.is_empty());
        drop(p);
        r.stop().await;
    }
}
