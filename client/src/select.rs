//! The client's deterministic decisions, as plain functions of their inputs (STYLE.md rule 2):
//! which queues a route offers for sending and for consuming, which queue a send goes to
//! (round robin with latency-based fault avoidance, or a hash of a sharding key), how a
//! consumer group's queues are shared out, and whether a tag matches a subscription.

use std::collections::BTreeMap;

use rocketraft_protocol::body::{MessageQueue, SubscriptionData, TopicRouteData};
use rocketraft_protocol::code::perm;
use rocketraft_protocol::message::java_string_hash;

/// The queues a producer may send to: the write queues of every writable queue data (only of
/// groups that have a master now, if `master_now`), ordered by broker name then queue id.
pub fn publish_queues(topic: &str, route: &TopicRouteData, master_now: bool) -> Vec<MessageQueue> {
    let mut datas: Vec<_> = route.queue_datas.iter().collect();
    datas.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    let mut out = Vec::new();
    for q in datas {
        if q.perm & perm::WRITE == 0 {
            continue;
        }
        let has_master = route
            .broker_datas
            .iter()
            .any(|b| b.broker_name == q.broker_name && b.master_addr().is_some());
        if master_now && !has_master {
            continue;
        }
        for id in 0..q.write_queue_nums.max(0) {
            out.push(MessageQueue {
                broker_name: q.broker_name.clone(),
                queue_id: id,
                topic: topic.to_owned(),
            });
        }
    }
    out
}

/// The queues a consumer reads: the read queues of every readable queue data (a group whose
/// master is down still serves reads from its other replicas), ordered.
pub fn subscribe_queues(topic: &str, route: &TopicRouteData) -> Vec<MessageQueue> {
    let mut out: Vec<MessageQueue> = route
        .queue_datas
        .iter()
        .filter(|q| q.perm & perm::READ != 0)
        .flat_map(|q| {
            (0..q.read_queue_nums.max(0)).map(move |id| MessageQueue {
                broker_name: q.broker_name.clone(),
                queue_id: id,
                topic: topic.to_owned(),
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// RocketMQ's `AllocateMessageQueueAveragely`: with `queues` and `consumers` sorted the same
/// way by every member, consumer i takes a contiguous block, the first `len % n` blocks one
/// longer. A consumer not in the list gets nothing.
pub fn allocate_averagely(
    queues: &[MessageQueue],
    consumers: &[String],
    me: &str,
) -> Vec<MessageQueue> {
    let Some(index) = consumers.iter().position(|c| c == me) else {
        return Vec::new();
    };
    let (q, n) = (queues.len(), consumers.len());
    if q == 0 {
        return Vec::new();
    }
    let rem = q % n;
    let size = if q <= n {
        1
    } else if index < rem {
        q / n + 1
    } else {
        q / n
    };
    let start = if index < rem { index * size } else { index * size + rem };
    let take = size.min(q.saturating_sub(start));
    (0..take).map(|i| queues[(start + i) % q].clone()).collect()
}

/// How a consumer group's queues are shared out among its members: RocketMQ's
/// `AllocateMessageQueueStrategy` implementations. Every member of a group must use the same
/// one (each computes its own share from the same sorted queue and member lists), whatever
/// client it runs: these place queues exactly as RocketMQ's Java classes do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Allocation {
    /// `AllocateMessageQueueAveragely`: contiguous blocks. The default.
    #[default]
    Averagely,
    /// `AllocateMessageQueueAveragelyByCircle`: member i takes queues i, i + n, i + 2n...
    AveragelyByCircle,
    /// `AllocateMessageQueueConsistentHash`: queues on an MD5 ring of `virtual_nodes` points
    /// per member (Java's default 10), so a member joining or leaving moves few queues.
    ConsistentHash { virtual_nodes: usize },
    /// `AllocateMessageQueueByMachineRoom`: only queues of broker groups named
    /// `<room>@<name>` whose room is one of `rooms`, shared averagely.
    ByMachineRoom { rooms: std::collections::BTreeSet<String> },
    /// `AllocateMessageQueueByConfig`: exactly these queues, whoever the members are.
    ByConfig { queues: Vec<MessageQueue> },
}

impl Allocation {
    /// Java's default virtual nodes per member on the consistent-hash ring.
    pub const VIRTUAL_NODES_DEFAULT: usize = 10;

    /// The queues `me` takes, of `queues` (sorted) among `consumers` (sorted). A member not
    /// in the list takes nothing (except [`Allocation::ByConfig`], which ignores the list).
    pub fn allocate(
        &self,
        queues: &[MessageQueue],
        consumers: &[String],
        me: &str,
    ) -> Vec<MessageQueue> {
        if let Allocation::ByConfig { queues } = self {
            return queues.clone();
        }
        let Some(index) = consumers.iter().position(|c| c == me) else {
            return Vec::new();
        };
        match self {
            Allocation::Averagely => allocate_averagely(queues, consumers, me),
            Allocation::AveragelyByCircle => {
                queues.iter().skip(index).step_by(consumers.len()).cloned().collect()
            }
            Allocation::ConsistentHash { virtual_nodes } => {
                let ring = hash_ring(consumers, *virtual_nodes);
                queues
                    .iter()
                    .filter(|q| ring_owner(&ring, &java_queue_text(q)) == Some(me))
                    .cloned()
                    .collect()
            }
            Allocation::ByMachineRoom { rooms } => {
                let mine: Vec<&MessageQueue> = queues
                    .iter()
                    .filter(|q| {
                        let mut parts = q.broker_name.split('@');
                        match (parts.next(), parts.next(), parts.next()) {
                            (Some(room), Some(_), None) => rooms.contains(room),
                            _ => false,
                        }
                    })
                    .collect();
                let n = consumers.len();
                let (each, rem) = (mine.len() / n, mine.len() % n);
                let start = each * index;
                let mut out: Vec<MessageQueue> =
                    mine[start..start + each].iter().map(|q| (*q).clone()).collect();
                if rem > index {
                    out.push(mine[index + each * n].clone());
                }
                out
            }
            Allocation::ByConfig { .. } => Vec::new(),
        }
    }
}

/// `MessageQueue.toString()` in Java: what the consistent-hash ring places.
fn java_queue_text(q: &MessageQueue) -> String {
    format!(
        "MessageQueue [topic={}, brokerName={}, queueId={}]",
        q.topic, q.broker_name, q.queue_id
    )
}

/// RocketMQ's `MD5Hash`: the first four bytes of the MD5 digest, big-endian, unsigned.
fn md5_hash(key: &str) -> u32 {
    use md5::Digest;
    let d = md5::Md5::digest(key.as_bytes());
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// The ring: `<member>-<i>` for i in 0..`virtual_nodes`, by hash (a later point with the same
/// hash replaces an earlier one, as Java's TreeMap does).
fn hash_ring(consumers: &[String], virtual_nodes: usize) -> BTreeMap<u32, &str> {
    let mut ring = BTreeMap::new();
    for c in consumers {
        for i in 0..virtual_nodes {
            ring.insert(md5_hash(&format!("{c}-{i}")), c.as_str());
        }
    }
    ring
}

/// The member owning `key`: the first point at or after its hash, wrapping around.
fn ring_owner<'a>(ring: &BTreeMap<u32, &'a str>, key: &str) -> Option<&'a str> {
    let h = md5_hash(key);
    ring.range(h..).next().or_else(|| ring.iter().next()).map(|(_, c)| *c)
}

/// RocketMQ's `SelectMessageQueueByHash`: the Java hash of `key` modulo the queue count.
pub fn queue_by_hash(queues: &[MessageQueue], key: &str) -> Option<MessageQueue> {
    if queues.is_empty() {
        return None;
    }
    let h = java_string_hash(key) % queues.len() as i32;
    Some(queues[h.unsigned_abs() as usize].clone())
}

/// Whether a message with `tags` is wanted by `sub` (the broker filters by tag hash; the
/// client checks the tag itself, as hashes collide).
pub fn tag_matches(sub: &SubscriptionData, tags: Option<&str>) -> bool {
    if sub.matches_all() {
        return true;
    }
    tags.is_some_and(|t| sub.tags_set.contains(t))
}

/// Latency-based fault avoidance (RocketMQ's `MQFaultStrategy`, 5.x thresholds): a broker
/// group that answered slowly, or failed, is skipped for a while. Keyed by broker name.
#[derive(Debug, Default, Clone)]
pub struct FaultTable {
    /// broker name -> unavailable until (ms on the caller's clock)
    until_ms: BTreeMap<String, u64>,
}

/// Latency thresholds (ms) and how long a broker that answered that slowly is avoided (ms).
pub const FAULT_LATENCY_MS: [u64; 7] = [50, 100, 550, 1_800, 3_000, 5_000, 15_000];
pub const FAULT_AVOID_MS: [u64; 7] = [0, 0, 2_000, 5_000, 6_000, 10_000, 30_000];
/// How long a broker whose send failed is avoided.
pub const FAULT_ISOLATION_MS: u64 = 10_000;
/// Bound on the table (one entry per broker group seen).
pub const FAULT_TABLE_MAX: usize = 4_096;

impl FaultTable {
    /// Records a send to `broker` that took `latency_ms`, or failed.
    pub fn record(&mut self, broker: &str, latency_ms: u64, failed: bool, now_ms: u64) {
        let avoid = if failed {
            FAULT_ISOLATION_MS
        } else {
            FAULT_LATENCY_MS.iter().rposition(|&t| latency_ms >= t).map_or(0, |i| FAULT_AVOID_MS[i])
        };
        if avoid == 0 {
            self.until_ms.remove(broker);
            return;
        }
        if self.until_ms.len() >= FAULT_TABLE_MAX && !self.until_ms.contains_key(broker) {
            self.until_ms.retain(|_, &mut u| u > now_ms);
            if self.until_ms.len() >= FAULT_TABLE_MAX {
                return;
            }
        }
        self.until_ms.insert(broker.to_owned(), now_ms + avoid);
    }

    pub fn is_available(&self, broker: &str, now_ms: u64) -> bool {
        self.until_ms.get(broker).is_none_or(|&u| u <= now_ms)
    }
}

/// Round robin over `queues` starting at `counter`: the first queue whose broker is available
/// and is not `avoid` (the broker the previous attempt failed on); failing that, the first not
/// on `avoid`; failing that, the queue at `counter` (a lone broker is still tried).
pub fn queue_round_robin(
    queues: &[MessageQueue],
    counter: usize,
    avoid: Option<&str>,
    faults: &FaultTable,
    now_ms: u64,
) -> Option<MessageQueue> {
    if queues.is_empty() {
        return None;
    }
    let n = queues.len();
    let order = (0..n).map(|i| &queues[(counter + i) % n]);
    let not_avoided = |q: &&MessageQueue| avoid != Some(q.broker_name.as_str());
    order
        .clone()
        .find(|q| not_avoided(q) && faults.is_available(&q.broker_name, now_ms))
        .or_else(|| order.clone().find(not_avoided))
        .or_else(|| order.clone().next())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocketraft_protocol::body::{BrokerData, QueueData};

    fn mq(b: &str, q: i32) -> MessageQueue {
        MessageQueue { broker_name: b.into(), queue_id: q, topic: "T".into() }
    }

    fn route(groups: &[(&str, bool, i32, i32)]) -> TopicRouteData {
        TopicRouteData {
            broker_datas: groups
                .iter()
                .map(|(name, master, ..)| BrokerData {
                    broker_addrs: if *master {
                        [(0, format!("{name}:0")), (1, format!("{name}:1"))].into()
                    } else {
                        [(1, format!("{name}:1"))].into()
                    },
                    broker_name: name.to_string(),
                    cluster: "C".into(),
                    ..Default::default()
                })
                .collect(),
            queue_datas: groups
                .iter()
                .map(|(name, _, p, n)| QueueData {
                    broker_name: name.to_string(),
                    perm: *p,
                    read_queue_nums: *n,
                    topic_sys_flag: 0,
                    write_queue_nums: *n,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn publish_skips_groups_without_a_master_or_write_permission() {
        let rw = perm::READ | perm::WRITE;
        let r = route(&[("b", true, rw, 2), ("a", false, rw, 2), ("c", true, perm::READ, 2)]);
        assert_eq!(publish_queues("T", &r, true), vec![mq("b", 0), mq("b", 1)]);
        assert_eq!(
            publish_queues("T", &r, false),
            vec![mq("a", 0), mq("a", 1), mq("b", 0), mq("b", 1)],
            "keyed sends keep their queues while a group elects"
        );
        assert_eq!(
            subscribe_queues("T", &r),
            vec![mq("a", 0), mq("a", 1), mq("b", 0), mq("b", 1), mq("c", 0), mq("c", 1)],
            "reads go on without a master"
        );
    }

    #[test]
    fn averaging_gives_every_queue_to_exactly_one_consumer() {
        let queues: Vec<_> = (0..8).map(|i| mq("a", i)).collect();
        for n in 1..=10usize {
            let ids: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
            let mut all = Vec::new();
            for id in &ids {
                let mine = allocate_averagely(&queues, &ids, id);
                assert!(mine.len() <= 8usize.div_ceil(n) && mine.len() >= 8 / n, "n={n}");
                all.extend(mine);
            }
            all.sort();
            assert_eq!(all, queues, "{n} consumers");
        }
        let ids = ["c0".to_owned(), "c1".to_owned(), "c2".to_owned()];
        assert_eq!(allocate_averagely(&queues, &ids, "c0"), queues[0..3].to_vec());
        assert_eq!(allocate_averagely(&queues, &ids, "c2"), queues[6..8].to_vec());
        assert!(allocate_averagely(&queues, &ids, "stranger").is_empty());
    }

    #[test]
    fn every_strategy_gives_each_queue_to_at_most_one_member() {
        let queues: Vec<_> = (0..10)
            .map(|i| mq(if i % 2 == 0 { "east@a" } else { "west@b" }, i / 2))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let rooms = ["east".to_owned()].into();
        for strategy in [
            Allocation::Averagely,
            Allocation::AveragelyByCircle,
            Allocation::ConsistentHash { virtual_nodes: Allocation::VIRTUAL_NODES_DEFAULT },
            Allocation::ByMachineRoom { rooms },
        ] {
            for n in 1..=6usize {
                let ids: Vec<String> = (0..n).map(|i| format!("10.0.0.{i}@{i}")).collect();
                let mut all: Vec<MessageQueue> =
                    ids.iter().flat_map(|id| strategy.allocate(&queues, &ids, id)).collect();
                all.sort();
                let expected: Vec<MessageQueue> = match &strategy {
                    Allocation::ByMachineRoom { .. } => queues
                        .iter()
                        .filter(|q| q.broker_name.starts_with("east@"))
                        .cloned()
                        .collect(),
                    _ => queues.clone(),
                };
                assert_eq!(all, expected, "{strategy:?} with {n} members");
                assert!(strategy.allocate(&queues, &ids, "stranger").is_empty());
            }
        }
        let ids = ["c0".to_owned(), "c1".to_owned(), "c2".to_owned()];
        assert_eq!(
            Allocation::AveragelyByCircle.allocate(&queues, &ids, "c1"),
            vec![queues[1].clone(), queues[4].clone(), queues[7].clone()]
        );
        let fixed = vec![queues[3].clone()];
        let by_config = Allocation::ByConfig { queues: fixed.clone() };
        assert_eq!(by_config.allocate(&queues, &ids, "anyone"), fixed);
    }

    #[test]
    fn the_consistent_hash_ring_is_rocketmqs_and_moves_few_queues() {
        // MD5("abc") = 900150983cd24fb0...: the ring's hash is its first four bytes.
        assert_eq!(md5_hash("abc"), 0x9001_5098);
        assert_eq!(
            java_queue_text(&mq("broker-a", 3)),
            "MessageQueue [topic=T, brokerName=broker-a, queueId=3]"
        );
        let queues: Vec<_> = (0..64).map(|i| mq("a", i)).collect();
        let ring = Allocation::ConsistentHash { virtual_nodes: 10 };
        let four: Vec<String> = (0..4).map(|i| format!("c{i}")).collect();
        let five: Vec<String> = (0..5).map(|i| format!("c{i}")).collect();
        let owner = |ids: &[String], q: &MessageQueue| {
            ids.iter().find(|id| ring.allocate(&queues, ids, id).contains(q)).cloned()
        };
        let moved = queues.iter().filter(|q| owner(&four, q) != owner(&five, q)).count();
        // A fifth member takes about a fifth; the others keep theirs.
        assert!(moved > 0 && moved < 32, "{moved} of 64 moved");
        for q in &queues {
            let (before, after) = (owner(&four, q), owner(&five, q));
            assert!(
                before == after || after.as_deref() == Some("c4"),
                "{q:?} moved between old members"
            );
        }
    }

    #[test]
    fn hashing_is_javas_and_stable() {
        let queues: Vec<_> = (0..4).map(|i| mq("a", i)).collect();
        // Java: "order-1".hashCode() = -1207111310; -1207111310 % 4 = -2; |-2| = 2.
        assert_eq!(java_string_hash("order-1"), -1_207_111_310);
        assert_eq!(queue_by_hash(&queues, "order-1"), Some(mq("a", 2)));
        for k in ["x", "order-7", "ü"] {
            assert_eq!(queue_by_hash(&queues, k), queue_by_hash(&queues, k));
        }
        assert_eq!(queue_by_hash(&[], "x"), None);
    }

    #[test]
    fn round_robin_avoids_the_failed_broker_and_slow_ones() {
        let queues = vec![mq("a", 0), mq("a", 1), mq("b", 0), mq("b", 1)];
        let mut faults = FaultTable::default();
        assert_eq!(queue_round_robin(&queues, 0, None, &faults, 0), Some(mq("a", 0)));
        assert_eq!(queue_round_robin(&queues, 5, None, &faults, 0), Some(mq("a", 1)));
        assert_eq!(queue_round_robin(&queues, 0, Some("a"), &faults, 0), Some(mq("b", 0)));
        faults.record("b", 600, false, 1_000);
        assert!(!faults.is_available("b", 2_999) && faults.is_available("b", 3_000));
        assert_eq!(
            queue_round_robin(&queues, 2, None, &faults, 1_500),
            Some(mq("a", 0)),
            "b answered in 600 ms: avoided for 2 s"
        );
        assert_eq!(
            queue_round_robin(&queues, 0, Some("a"), &faults, 1_500),
            Some(mq("b", 0)),
            "slow beats the broker that just failed"
        );
        faults.record("b", 10, false, 1_600);
        assert!(faults.is_available("b", 1_600), "a fast answer clears it");
        faults.record("a", 0, true, 0);
        let only_a = vec![mq("a", 0)];
        assert_eq!(
            queue_round_robin(&only_a, 0, Some("a"), &faults, 0),
            Some(mq("a", 0)),
            "a lone broker is still tried"
        );
    }

    #[test]
    fn tags_match_as_rocketmq_filters() {
        let all = SubscriptionData::tag("T", "*", 0);
        let some = SubscriptionData::tag("T", "TagA || TagB", 0);
        assert!(tag_matches(&all, None) && tag_matches(&all, Some("X")));
        assert!(tag_matches(&some, Some("TagB")));
        assert!(!tag_matches(&some, Some("TagC")) && !tag_matches(&some, None));
    }
}
