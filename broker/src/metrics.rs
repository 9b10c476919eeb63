//! The broker replica's metrics: what its send and pull paths count (by topic, by consumer
//! group and topic), and on a scrape the state it already keeps: its Raft and CommitLog (the
//! replica's own gather), connections, consumer groups' lag per queue, delayed and
//! transactional messages pending. See `rocketraft_metrics` for how a process serves them.

use std::sync::{Arc, Weak};

use rocketraft_metrics::{Counter, Gather, Histogram, Keyed, Source};
use rocketraft_protocol::names::{SCHEDULE_TOPIC, TIMER_TOPIC, TRANS_HALF_TOPIC};
use rocketraft_raft::MetaStore;
use rocketraft_store::io::Storage;

use crate::server::Inner;

/// Topics counted by name at most; further ones count under `_other`.
const TOPICS_MAX: usize = 10_000;
/// Consumer groups counted by name at most, and topics per group (group names on pulls come
/// from the network: the scrape drops those the metadata does not know).
const GROUPS_MAX: usize = 2_000;
const TOPICS_PER_GROUP_MAX: usize = 200;

/// Messages that went through a path (sends stored for a topic, or a group's pulls of a topic
/// that found messages): how many, their bytes, how long each request took.
#[derive(Debug)]
pub(crate) struct Flow {
    messages: Counter,
    bytes: Counter,
    latency: Histogram,
}

impl Default for Flow {
    fn default() -> Self {
        Flow {
            messages: Counter::default(),
            bytes: Counter::default(),
            latency: Histogram::latency(),
        }
    }
}

/// The names and help texts of a flow's series: messages, bytes, latency.
type FlowSeries = [(&'static str, &'static str); 3];

const SENDS: FlowSeries = [
    ("rocketraft_send_messages", "Messages stored by sends (SEND_OK), by topic."),
    ("rocketraft_send_bytes", "Bytes of the records stored by sends, by topic."),
    (
        "rocketraft_send_latency_seconds",
        "From a send's admission to its SEND_OK (proposal, replication, fsyncs, apply), by topic.",
    ),
];

const PULLS: FlowSeries = [
    ("rocketraft_pull_messages", "Messages returned by pulls, by consumer group and topic."),
    ("rocketraft_pull_bytes", "Bytes returned by pulls, by consumer group and topic."),
    (
        "rocketraft_pull_latency_seconds",
        "How long a pull that found messages took to read and filter them (a held pull's wait not included).",
    ),
];

impl Flow {
    fn gather(&self, out: &mut Gather, series: &FlowSeries, labels: &[(&'static str, &str)]) {
        let [(messages, messages_help), (bytes, bytes_help), (latency, latency_help)] = *series;
        out.counter(messages, messages_help, labels, self.messages.get());
        out.counter(bytes, bytes_help, labels, self.bytes.get());
        out.histogram(latency, latency_help, labels, &self.latency);
    }

    fn add(&self, messages: u64, bytes: u64, latency: std::time::Duration) {
        self.messages.add(messages);
        self.bytes.add(bytes);
        self.latency.observe_duration(latency);
    }
}

#[derive(Debug)]
pub(crate) struct GroupPulls(Keyed<Flow>);

impl Default for GroupPulls {
    fn default() -> Self {
        GroupPulls(Keyed::new(TOPICS_PER_GROUP_MAX))
    }
}

/// What the send and pull paths count. Each update is a lock-free lookup and relaxed adds.
#[derive(Debug)]
pub(crate) struct BrokerStats {
    sends: Keyed<Flow>,
    pulls: Keyed<GroupPulls>,
}

impl Default for BrokerStats {
    fn default() -> Self {
        BrokerStats { sends: Keyed::new(TOPICS_MAX), pulls: Keyed::new(GROUPS_MAX) }
    }
}

impl BrokerStats {
    /// A send of `messages` records, `bytes` in all, to `topic`, stored `latency` after it
    /// was admitted.
    pub(crate) fn sent(
        &self,
        topic: &str,
        messages: u64,
        bytes: u64,
        latency: std::time::Duration,
    ) {
        self.sends.with(topic, |f| f.add(messages, bytes, latency));
    }

    /// A pull by `group` that found `messages` records of `topic` (`bytes` in all), read in
    /// `latency`.
    pub(crate) fn pulled(
        &self,
        group: &str,
        topic: &str,
        messages: u64,
        bytes: u64,
        latency: std::time::Duration,
    ) {
        self.pulls.with(group, |g| g.0.with(topic, |f| f.add(messages, bytes, latency)));
    }
}

/// The replica's metrics source (held by the [`crate::Broker`]; the process's hub holds it
/// weakly).
pub(crate) struct BrokerMetrics<S: Storage + Clone, M: MetaStore> {
    pub(crate) inner: Weak<Inner<S, M>>,
}

impl<S: Storage + Clone, M: MetaStore> Source for BrokerMetrics<S, M> {
    fn gather(&self, out: &mut Gather) {
        let Some(inner) = self.inner.upgrade() else { return };
        inner.replica.gather(out);
        gather_paths(&inner, out);
        gather_state(&inner, out);
    }
}

fn gather_paths<S: Storage + Clone, M: MetaStore>(inner: &Arc<Inner<S, M>>, out: &mut Gather) {
    let stats = &inner.stats;
    // A topic deleted since stops being shown.
    let catalog = inner.replica.metadata();
    stats.sends.retain(|t| matches!(catalog.topic(t), Ok(Some(_))));
    for (topic, s) in stats.sends.entries() {
        s.gather(out, &SENDS, &[("topic", topic.as_str())]);
    }
    stats.pulls.retain(|g| matches!(catalog.group(g), Ok(Some(_))));
    for (group, topics) in stats.pulls.entries() {
        topics.0.retain(|t| matches!(catalog.topic(t), Ok(Some(_))));
        for (topic, p) in topics.0.entries() {
            p.gather(out, &PULLS, &[("consumer_group", group.as_str()), ("topic", topic.as_str())]);
        }
    }
}

fn gather_state<S: Storage + Clone, M: MetaStore>(inner: &Arc<Inner<S, M>>, out: &mut Gather) {
    out.gauge(
        "rocketraft_connections",
        "Client connections open on the broker port.",
        &[],
        inner.connections.len() as f64,
    );
    let meta = inner.replica.metadata();
    let topics = meta.topics().unwrap_or_default();
    out.gauge("rocketraft_topics", "Topics in the group's metadata.", &[], topics.len() as f64);
    out.gauge(
        "rocketraft_consumer_groups",
        "Subscription groups in the group's metadata.",
        &[],
        meta.group_count() as f64,
    );
    // Consumer lag: per group and queue with a committed offset, the messages after it.
    for group in meta.groups().unwrap_or_default() {
        for topic in meta.offset_topics(&group.name).unwrap_or_default() {
            let Some(t) = topics.iter().find(|t| t.name == topic) else { continue };
            for queue_id in 0..t.read_queue_nums.max(t.write_queue_nums) {
                let Ok(Some(committed)) = meta.consumer_offset(&group.name, &topic, queue_id)
                else {
                    continue;
                };
                let max = inner.replica.queue_bounds(&topic, queue_id).map_or(0, |(_, m)| m.0);
                let queue = queue_id.to_string();
                out.gauge(
                    "rocketraft_consumer_lag_messages",
                    "Messages in a queue after the consumer group's committed offset.",
                    &[
                        ("consumer_group", group.name.as_str()),
                        ("topic", topic.as_str()),
                        ("queue", queue.as_str()),
                    ],
                    max.saturating_sub(committed) as f64,
                );
            }
        }
    }
    // Delayed messages: per delay level, and for timers, those parked and not yet moved.
    let pending = |topic: &str, queue: i32| {
        let Some((min, end)) = inner.replica.queue_bounds(topic, queue) else { return 0 };
        end.0.saturating_sub(meta.moved_up_to(topic, queue).unwrap_or(end.0).max(min.0))
    };
    for level in 1..=inner.config.delay_levels.len() {
        let l = level.to_string();
        out.gauge(
            "rocketraft_delayed_messages_pending",
            "Messages parked for a delay level (or a timer) and not yet delivered.",
            &[("level", l.as_str())],
            pending(SCHEDULE_TOPIC, level - 1) as f64,
        );
    }
    let timers: u64 =
        (0..rocketraft_protocol::schedule::TIMER_QUEUES).map(|q| pending(TIMER_TOPIC, q)).sum();
    out.gauge(
        "rocketraft_delayed_messages_pending",
        "Messages parked for a delay level (or a timer) and not yet delivered.",
        &[("level", "timer")],
        timers as f64,
    );
    // Transactions: half messages with no outcome yet, among the first CHECK_SCAN_MAX kept.
    let halves = match inner.replica.queue_bounds(TRANS_HALF_TOPIC, 0) {
        None => 0,
        Some((min, end)) => {
            let start = meta.halves_from().unwrap_or(end.0).max(min.0);
            let stop = end.0.min(start.saturating_add(crate::transaction::CHECK_SCAN_MAX));
            (start..stop).filter(|o| matches!(meta.half_mark(*o), Ok(None))).count()
        }
    };
    out.gauge(
        "rocketraft_transaction_half_messages_pending",
        "Transactional half messages not yet committed or rolled back (counted among the oldest 10,000 kept).",
        &[],
        halves as f64,
    );
}
