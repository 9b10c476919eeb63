//! Delayed delivery: where a delayed message waits, and the leader's service that moves due
//! messages on, through Raft.
//!
//! A send with a `DELAY` level waits in `SCHEDULE_TOPIC_XXXX`, queue `level - 1`; a 5.x timer
//! waits in the timer queues of `rmq_sys_wheel_timer` (`protocol::schedule` has the rule).
//! Either way the parked record keeps its real topic and queue in `REAL_TOPIC`/`REAL_QID`, and
//! its due time in `TIMER_OUT_MS`, which dispatch makes its ConsumeQueue tag code. In each of
//! these queues the record stored first is due first.
//!
//! The service runs on the master only. Every tick it reads, from each parked queue, the
//! records due by now (stopping at the first that is not), and proposes their moved copies
//! (to the real topic, or to the next timer queue) in one submission. Each copy carries the
//! place of the record it came from (`RR_MOVED_FROM`), and applying it records that queue's
//! progress, so the copy and the progress are one Raft entry: a new master reads the progress
//! where the old one left it, and nothing is moved twice or lost by a failover. Within a term
//! the service keeps its own cursor per queue; any failed proposal (the term changed, or may
//! have) drops the cursors, and they are read again once this replica is master with current
//! state (every entry of its log applied, its own proposals included).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rocketraft_protocol::code::perm;
use rocketraft_protocol::message::{
    body_crc, find_property, property, rewrite_properties, MessageRecord, RecordView,
};
use rocketraft_protocol::names::{SCHEDULE_TOPIC, TIMER_TOPIC};
use rocketraft_protocol::schedule::{
    timer_deliver_ms, timer_queue_for, timer_step_ms, DelayLevels, TimerError, TIMER_QUEUES,
};
use rocketraft_protocol::{message::decode_records, response_code};
use rocketraft_raft::types::TopicMeta;
use rocketraft_raft::{MetaCommand, MetaStore, QueueRead, ReadLimits};
use rocketraft_store::io::Storage;
use rocketraft_store::QueueOffset;

use crate::admission::Refusal;
use crate::server::{group_now_ms, Inner};

/// How often the service looks for due messages (RocketMQ's schedule service: 100 ms).
pub const TICK_MS: u64 = 100;
/// Records moved in one submission at most (one Raft entry).
const MOVE_BATCH_MAX: usize = 256;
/// Bytes of records moved in one submission at most.
const MOVE_BATCH_BYTES_MAX: usize = 1 << 20;

/// Where a message goes: its topic, queue and properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub topic: String,
    pub queue_id: i32,
    pub properties: String,
}

/// What decides where a delayed message waits.
#[derive(Debug, Clone, Copy)]
pub struct ParkRules<'a> {
    pub levels: &'a DelayLevels,
    pub timer_max_delay_sec: u64,
}

/// Where a message sent to `topic`/`queue_id` at `now_ms` is stored: parked if it asks for a
/// delay level or a timer in the future, else `None` (as sent). A batch may ask for neither
/// (RocketMQ's rule); a timer past the limit is refused with RocketMQ's code and remark, and
/// so is a message that sets the broker's own `RR_MOVED_FROM`.
pub fn park(
    topic: &str,
    queue_id: i32,
    properties: &str,
    now_ms: i64,
    rules: ParkRules<'_>,
    batch: bool,
) -> Result<Option<Destination>, Refusal> {
    let illegal = |remark: String| Refusal { code: response_code::MESSAGE_ILLEGAL, remark };
    if find_property(properties, property::MOVED_FROM).is_some() {
        return Err(illegal(format!("the property {} is the broker's own", property::MOVED_FROM)));
    }
    let level = rules.levels.level_of(find_property(properties, property::DELAY));
    let timer = if level.is_none() {
        timer_deliver_ms(properties, now_ms, rules.timer_max_delay_sec).map_err(|e| match e {
            TimerError::TooLate(_) | TimerError::NotANumber(..) => illegal(e.to_string()),
        })?
    } else {
        None
    };
    let parked = level.is_some() || timer.is_some_and(|t| t > now_ms);
    if batch && parked {
        return Err(illegal("TimeDelayLevel is not supported for batching".into()));
    }
    let (real_topic, real_qid) = (topic.to_owned(), queue_id.to_string());
    if let Some(level) = level {
        let due = now_ms.saturating_add(rules.levels.delay_ms(level) as i64).to_string();
        let level = level.to_string();
        let set = [
            (property::DELAY, level.as_str()),
            (property::REAL_TOPIC, real_topic.as_str()),
            (property::REAL_QID, real_qid.as_str()),
            (property::TIMER_OUT_MS, due.as_str()),
        ];
        return Ok(Some(Destination {
            topic: SCHEDULE_TOPIC.to_owned(),
            queue_id: level.parse::<i32>().unwrap_or(1) - 1,
            properties: rewrite_properties(properties, &[], &set),
        }));
    }
    match timer {
        Some(deliver) if deliver > now_ms => {
            let step = timer_queue_for((deliver - now_ms) as u64);
            let out = now_ms.saturating_add(timer_step_ms(step) as i64).to_string();
            let deliver = deliver.to_string();
            // Relative delays become the absolute time, so later moves measure from it.
            let remove = [property::TIMER_DELAY_SEC, property::TIMER_DELAY_MS];
            let set = [
                (property::TIMER_DELIVER_MS, deliver.as_str()),
                (property::REAL_TOPIC, real_topic.as_str()),
                (property::REAL_QID, real_qid.as_str()),
                (property::TIMER_OUT_MS, out.as_str()),
            ];
            Ok(Some(Destination {
                topic: TIMER_TOPIC.to_owned(),
                queue_id: step,
                properties: rewrite_properties(properties, &remove, &set),
            }))
        }
        _ => Ok(None),
    }
}

/// Where a parked record that is due at `now_ms` goes next: its real topic and queue (a delay
/// level's, a timer's once its time has come; `DELAY` and `TIMER_OUT_MS` removed, everything
/// else kept, as RocketMQ's moved copy), or the next timer queue. Either way with
/// `RR_MOVED_FROM` naming the parked record. An error for a record the broker did not park
/// (no real topic or queue).
pub fn next_stop(parked: &RecordView<'_>, now_ms: i64) -> Result<Destination, String> {
    let props = parked.properties;
    let real_topic = find_property(props, property::REAL_TOPIC)
        .filter(|t| rocketraft_protocol::names::valid_topic_name(t))
        .ok_or("no valid REAL_TOPIC")?;
    let real_qid: i32 = find_property(props, property::REAL_QID)
        .and_then(|q| q.parse().ok())
        .filter(|q| *q >= 0)
        .ok_or("no valid REAL_QID")?;
    let from = format!("{}:{}:{}", parked.topic, parked.queue_id, parked.queue_offset);
    let deliver = find_property(props, property::TIMER_DELIVER_MS).and_then(|v| v.parse().ok());
    if parked.topic == TIMER_TOPIC {
        if let Some(deliver) = deliver.filter(|d: &i64| *d > now_ms) {
            let step = timer_queue_for((deliver - now_ms) as u64);
            let out = now_ms.saturating_add(timer_step_ms(step) as i64).to_string();
            let set = [(property::TIMER_OUT_MS, out.as_str()), (property::MOVED_FROM, &from)];
            return Ok(Destination {
                topic: TIMER_TOPIC.to_owned(),
                queue_id: step,
                properties: rewrite_properties(props, &[], &set),
            });
        }
    }
    Ok(Destination {
        topic: real_topic.to_owned(),
        queue_id: real_qid,
        properties: rewrite_properties(
            props,
            &[property::DELAY, property::TIMER_OUT_MS],
            &[(property::MOVED_FROM, &from)],
        ),
    })
}

/// The record to store for `parked` at `to`, stamped now by `store_host`: body, flags, hosts
/// and reconsume count kept (also the discarded copy of a transaction half message).
pub(crate) fn moved_record(
    parked: &RecordView<'_>,
    to: Destination,
    now_ms: i64,
    store_host: std::net::SocketAddr,
) -> Result<Vec<u8>, String> {
    MessageRecord {
        body_crc: body_crc(parked.body),
        queue_id: to.queue_id,
        flag: parked.flag,
        sys_flag: parked.sys_flag,
        born_timestamp: parked.born_timestamp,
        born_host: parked.born_host,
        store_timestamp: now_ms,
        store_host,
        reconsume_times: parked.reconsume_times,
        body: bytes::Bytes::copy_from_slice(parked.body),
        topic: to.topic,
        properties: to.properties,
        ..Default::default()
    }
    .encode()
    .map_err(|e| e.to_string())
}

/// The parked queues: every delay level's, then every timer queue.
fn parked_queues(levels: &DelayLevels) -> impl Iterator<Item = (&'static str, i32)> {
    let levels = (0..levels.len()).map(|q| (SCHEDULE_TOPIC, q));
    levels.chain((0..TIMER_QUEUES).map(|q| (TIMER_TOPIC, q)))
}

/// Moves due messages on while this replica is master, until `stop`.
pub(crate) async fn run<S: Storage + Clone, M: MetaStore>(
    inner: Arc<Inner<S, M>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // Per parked queue, the next offset to move; valid for one term.
    let mut cursors: HashMap<(&'static str, i32), u64> = HashMap::new();
    let mut term = None;
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(Duration::from_millis(TICK_MS)) => {}
        }
        if !inner.replica.is_master() {
            term = None;
            continue;
        }
        let now_term = inner.replica.term();
        if term != Some(now_term) {
            // A new term: the progress is read again once every entry of the log is applied
            // (moves an earlier term proposed included).
            let catch_up = Duration::from_millis(crate::processor::MASTER_CATCH_UP_MS);
            if !inner.replica.master_ready(crate::processor::MASTER_CATCH_UP_MS).await
                || !inner.replica.whole_log_applied(catch_up).await
            {
                continue;
            }
            if let Err(e) = ensure_parked_topics(&inner).await {
                tracing::info!(error = %e, "the parked topics are not registered yet");
                continue;
            }
            cursors.clear();
            term = Some(now_term);
        }
        if let Err(e) = move_due(&inner, &mut cursors).await {
            tracing::info!(error = %e, "delayed delivery paused until this replica is master again");
            term = None;
        }
    }
}

/// Registers the parked topics (a queue per delay level, a queue per timer step), so admin
/// tools list them and their queues can be read like any topic's. Nobody may send to them.
async fn ensure_parked_topics<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
) -> Result<(), String> {
    let mut missing = Vec::new();
    for (topic, queues) in
        [(SCHEDULE_TOPIC, inner.config.delay_levels.len()), (TIMER_TOPIC, TIMER_QUEUES)]
    {
        let meta = inner.replica.metadata().topic(topic).map_err(|e| e.to_string())?;
        if meta.is_none_or(|t| t.read_queue_nums < queues) {
            missing.push(MetaCommand::PutTopic(TopicMeta {
                name: topic.to_owned(),
                read_queue_nums: queues,
                write_queue_nums: queues,
                perm: perm::READ | perm::WRITE,
                topic_sys_flag: 0,
                order: false,
                filter_type: "SINGLE_TAG".into(),
            }));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    inner.replica.propose_metadata(missing).await.map_err(|e| e.to_string())
}

/// One tick: moves every due message of every parked queue.
async fn move_due<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    cursors: &mut HashMap<(&'static str, i32), u64>,
) -> Result<(), String> {
    let limits = ReadLimits {
        messages_max: MOVE_BATCH_MAX,
        bytes_max: MOVE_BATCH_BYTES_MAX,
        scan_per_message: 1,
    };
    for (topic, queue_id) in parked_queues(&inner.config.delay_levels) {
        loop {
            let cursor = match cursors.get(&(topic, queue_id)) {
                Some(c) => *c,
                None => {
                    let c = inner
                        .replica
                        .metadata()
                        .moved_up_to(topic, queue_id)
                        .map_err(|e| e.to_string())?;
                    #[cfg(madsim)]
                    let c = if inner.config.sim_bug_schedule_from_zero { 0 } else { c };
                    cursors.insert((topic, queue_id), c);
                    c
                }
            };
            let now = group_now_ms(inner);
            #[cfg(madsim)]
            let now = if inner.config.sim_bug_deliver_early { now + 10_000 } else { now };
            let read = inner
                .replica
                .read_due(topic, queue_id, QueueOffset(cursor), limits, now)
                .map_err(|e| e.to_string())?;
            let (body, next) = match read {
                QueueRead::Found { body, next, .. } => (body, next),
                QueueRead::Moved { next } if next.0 > cursor => {
                    // Retention removed parked records before they were due (a delay longer
                    // than the CommitLog is kept): they are gone on every replica.
                    tracing::warn!(
                        topic,
                        queue_id,
                        from = cursor,
                        to = next.0,
                        "parked messages were removed by retention before they were due"
                    );
                    skip(inner, topic, queue_id, next.0).await?;
                    cursors.insert((topic, queue_id), next.0);
                    continue;
                }
                _ => break,
            };
            let full = moved_batch(inner, &body, now).await?;
            cursors.insert((topic, queue_id), next.0);
            if !full {
                break;
            }
        }
    }
    Ok(())
}

/// Moves the parked records in `body` (due, in queue order); whether the read was a full
/// batch (more may be due).
async fn moved_batch<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    body: &[u8],
    now: i64,
) -> Result<bool, String> {
    let parked = decode_records(body).map_err(|e| e.to_string())?;
    let mut records = Vec::with_capacity(parked.len());
    for p in &parked {
        let to = next_stop(p, now);
        match to.and_then(|to| moved_record(p, to, now, inner.config.advertised_addr)) {
            Ok(r) => records.push(r),
            Err(why) => {
                // Only a record the broker did not park can fail here: it is passed over, in
                // order, with the moves before it.
                tracing::error!(
                    topic = p.topic,
                    queue_id = p.queue_id,
                    offset = p.queue_offset,
                    why,
                    "a parked record cannot be moved: skipped"
                );
                if !records.is_empty() {
                    inner
                        .replica
                        .propose(std::mem::take(&mut records))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                skip(inner, p.topic, p.queue_id, p.queue_offset as u64 + 1).await?;
            }
        }
    }
    if !records.is_empty() {
        inner.replica.propose(records).await.map_err(|e| e.to_string())?;
    }
    Ok(parked.len() >= MOVE_BATCH_MAX)
}

/// Records that a parked queue's records before `next` need no move.
async fn skip<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    topic: &str,
    queue_id: i32,
    next: u64,
) -> Result<(), String> {
    let command = MetaCommand::SkipParked { topic: topic.to_owned(), queue_id, next_offset: next };
    inner.replica.propose_metadata(vec![command]).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocketraft_protocol::message::{parse_properties, properties_to_string};

    const NOW: i64 = 1_700_000_000_000;

    fn rules(levels: &DelayLevels) -> ParkRules<'_> {
        ParkRules { levels, timer_max_delay_sec: 60 }
    }

    fn parked_view(d: &Destination, offset: i64) -> Vec<u8> {
        MessageRecord {
            topic: d.topic.clone(),
            queue_id: d.queue_id,
            queue_offset: offset,
            properties: d.properties.clone(),
            body: bytes::Bytes::from_static(b"hello"),
            ..Default::default()
        }
        .encode()
        .unwrap()
    }

    #[test]
    fn a_delay_level_parks_in_its_queue_and_moves_back_with_everything_but_delay() {
        let levels = DelayLevels::default();
        let props = properties_to_string([("DELAY", "3"), ("KEYS", "k"), ("UNIQ_KEY", "U")]);
        let d = park("T", 2, &props, NOW, rules(&levels), false).unwrap().unwrap();
        assert_eq!((d.topic.as_str(), d.queue_id), (SCHEDULE_TOPIC, 2));
        let p = parse_properties(&d.properties);
        assert_eq!(p["REAL_TOPIC"], "T");
        assert_eq!(p["REAL_QID"], "2");
        assert_eq!(p["TIMER_OUT_MS"], (NOW + 10_000).to_string());

        let raw = parked_view(&d, 7);
        let view = RecordView::decode(&raw).unwrap();
        let back = next_stop(&view, NOW + 10_000).unwrap();
        assert_eq!((back.topic.as_str(), back.queue_id), ("T", 2));
        let p = parse_properties(&back.properties);
        assert_eq!((p["KEYS"].as_str(), p["UNIQ_KEY"].as_str()), ("k", "U"));
        assert!(!p.contains_key("DELAY") && !p.contains_key("TIMER_OUT_MS"));
        assert_eq!(p["RR_MOVED_FROM"], format!("{SCHEDULE_TOPIC}:2:7"));

        let over = properties_to_string([("DELAY", "99")]);
        let d = park("T", 0, &over, NOW, rules(&levels), false).unwrap().unwrap();
        assert_eq!(d.queue_id, 17, "above the last level is the last");
        assert_eq!(park("T", 0, "", NOW, rules(&levels), false), Ok(None));
    }

    #[test]
    fn a_timer_hops_through_the_timer_queues_and_is_never_early() {
        let levels = DelayLevels::default();
        let props = properties_to_string([("TIMER_DELAY_SEC", "3")]);
        let d = park("T", 1, &props, NOW, rules(&levels), false).unwrap().unwrap();
        assert_eq!((d.topic.as_str(), d.queue_id), (TIMER_TOPIC, 4), "1.6 s first");
        let p = parse_properties(&d.properties);
        assert_eq!(p["TIMER_DELIVER_MS"], (NOW + 3_000).to_string());
        assert!(!p.contains_key("TIMER_DELAY_SEC"));

        // Follow it: each stop is due at its TIMER_OUT_MS; the last goes to T.
        let (mut d, mut offset) = (d, 0);
        let at = loop {
            let at: i64 = parse_properties(&d.properties)["TIMER_OUT_MS"].parse().unwrap();
            let raw = parked_view(&d, offset);
            d = next_stop(&RecordView::decode(&raw).unwrap(), at).unwrap();
            offset += 1;
            if d.topic == "T" {
                break at;
            }
            assert!(offset < 10, "too many hops");
        };
        assert!((NOW + 3_000..NOW + 3_100).contains(&at), "delivered at +{} ms", at - NOW);
        assert!(!parse_properties(&d.properties).contains_key("TIMER_OUT_MS"));

        let past = properties_to_string([("TIMER_DELIVER_MS", "5")]);
        assert_eq!(park("T", 1, &past, NOW, rules(&levels), false), Ok(None), "due: as sent");
        let late = properties_to_string([("TIMER_DELAY_SEC", "61")]);
        let refused = park("T", 1, &late, NOW, rules(&levels), false).unwrap_err();
        assert_eq!(refused.code, response_code::MESSAGE_ILLEGAL);
        assert!(refused.remark.contains("max delay 60000ms"), "{}", refused.remark);
    }

    #[test]
    fn batches_and_forged_progress_are_refused() {
        let levels = DelayLevels::default();
        let delayed = properties_to_string([("DELAY", "1")]);
        let refused = park("T", 0, &delayed, NOW, rules(&levels), true).unwrap_err();
        assert_eq!(refused.code, response_code::MESSAGE_ILLEGAL);
        assert_eq!(park("T", 0, "", NOW, rules(&levels), true), Ok(None));
        let forged = properties_to_string([("RR_MOVED_FROM", "SCHEDULE_TOPIC_XXXX:0:99")]);
        assert!(park("T", 0, &forged, NOW, rules(&levels), false).is_err());
        let raw =
            MessageRecord { topic: SCHEDULE_TOPIC.into(), ..Default::default() }.encode().unwrap();
        assert!(next_stop(&RecordView::decode(&raw).unwrap(), NOW).is_err(), "not parked by us");
    }
}
