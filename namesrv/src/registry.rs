//! The route registry: which brokers are alive, which topics they serve, and the routes
//! clients ask for (reference §2.5-§2.6). Plain functions over a table: no sockets, no clocks
//! (the caller passes the time), so every decision is unit-tested (STYLE.md rule 2).
//!
//! Invariants:
//! - a broker address appears under at most one (broker name, broker id): re-registering an
//!   address with another id (a slave that became master) replaces the old entry;
//! - a topic's queues come only from master (brokerId 0) registrations of that broker name;
//! - routes list only live brokers: eviction (silence past the expiry, or a closed connection)
//!   removes a broker's address and, when no address of the broker name is left, its queues.

use std::collections::{BTreeMap, BTreeSet};

use rocketraft_protocol::body::{
    BrokerData, ClusterInfo, DataVersion, QueueData, TopicConfig, TopicList, TopicRouteData,
};
use rocketraft_protocol::code::perm;

/// RocketMQ's `BROKER_CHANNEL_EXPIRED_TIME`: a broker silent this long is evicted.
pub const BROKER_EXPIRY_MS_DEFAULT: i64 = 120_000;
/// The master's broker id.
pub const MASTER_ID: i64 = 0;

/// An identifier of the connection a registration arrived on (closing it evicts the broker).
pub type ConnId = u64;

/// One REGISTER_BROKER request, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub cluster: String,
    pub broker_name: String,
    pub broker_addr: String,
    pub broker_id: i64,
    pub ha_server_addr: String,
    pub data_version: DataVersion,
    /// The broker's topics (used when it registers as master).
    pub topics: BTreeMap<String, TopicConfig>,
    /// The Raft term it registers in (RocketRaft brokers say; RocketMQ's do not).
    pub raft_term: Option<i64>,
    /// The node id of that term's leader (RocketRaft brokers say, since openraft's leader ids
    /// are (term, node id): one term may see two leaders in turn, the higher id last).
    pub raft_leader: Option<i64>,
}

/// What a registration answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Registered {
    /// The master's address, for a slave.
    pub master_addr: Option<String>,
    /// The master's HA address, for a slave.
    pub ha_server_addr: Option<String>,
    /// The address was not registered, or is now under another broker id or Raft term: worth
    /// one line in the log (a registration every 30 s that changes nothing is not).
    pub news: bool,
}

/// A broker the registry let go of (silent too long, or its connection closed), as its log
/// line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub addr: String,
    pub group: String,
    pub broker_id: i64,
    pub raft_term: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Live {
    broker_name: String,
    broker_id: i64,
    last_update_ms: i64,
    data_version: DataVersion,
    ha_server_addr: String,
    conn: ConnId,
    raft_term: Option<i64>,
    raft_leader: Option<i64>,
}

/// The NameServer's whole state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    clusters: BTreeMap<String, BTreeSet<String>>,
    brokers: BTreeMap<String, BrokerData>,
    /// topic -> broker name -> queues
    topics: BTreeMap<String, BTreeMap<String, QueueData>>,
    /// broker address -> liveness
    live: BTreeMap<String, Live>,
    /// Broker groups whose write permission an operator wiped (WIPE_WRITE_PERM_OF_BROKER):
    /// their queues are routed read-only until ADD_WRITE_PERM_OF_BROKER, or until the group's
    /// master registers afresh (RocketMQ's first registration rebuilds the queue data).
    write_wiped: BTreeSet<String>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Why `r` may not be recorded: it names itself master of a group whose live master is at
    /// another address and said its Raft term, and `r` does not claim a newer leader id (an
    /// impostor, or a deposed leader that has not heard of its successor yet): a newer term,
    /// or the same term won by a higher node id where both said theirs (openraft's leader
    /// ids). A master that said no term (a RocketMQ broker) is replaced by the newer
    /// registration, as RocketMQ does.
    pub fn master_conflict(&self, r: &Registration) -> Option<String> {
        if r.broker_id != MASTER_ID {
            return None;
        }
        let current = self.brokers.get(&r.broker_name)?.broker_addrs.get(&MASTER_ID)?;
        if *current == r.broker_addr {
            return None;
        }
        let live = self.live.get(current)?;
        let held = live.raft_term?;
        let higher_leader =
            matches!((r.raft_leader, live.raft_leader), (Some(a), Some(b)) if a > b);
        match r.raft_term {
            Some(claimed) if claimed > held => None,
            Some(claimed) if claimed == held && higher_leader => None,
            claimed => Some(format!(
                "{current} is the live master of {} at Raft term {held}; {} claims {} and cannot \
                 replace it",
                r.broker_name,
                r.broker_addr,
                claimed.map_or_else(|| "no term".to_owned(), |t| format!("term {t}"))
            )),
        }
    }

    /// Records a registration (REGISTER_BROKER) at `now_ms` on connection `conn`.
    pub fn register(&mut self, r: Registration, now_ms: i64, conn: ConnId) -> Registered {
        if r.broker_id == MASTER_ID && !self.live.contains_key(&r.broker_addr) {
            self.write_wiped.remove(&r.broker_name);
        }
        self.clusters.entry(r.cluster.clone()).or_default().insert(r.broker_name.clone());
        let broker = self.brokers.entry(r.broker_name.clone()).or_insert_with(|| BrokerData {
            broker_addrs: BTreeMap::new(),
            broker_name: r.broker_name.clone(),
            cluster: r.cluster.clone(),
            ..Default::default()
        });
        if broker.cluster != r.cluster {
            // The group moved to another cluster: it leaves the old one's list.
            let old = std::mem::replace(&mut broker.cluster, r.cluster.clone());
            if let Some(names) = self.clusters.get_mut(&old) {
                names.remove(&r.broker_name);
                if names.is_empty() {
                    self.clusters.remove(&old);
                }
            }
        }
        // "Switch slave to master": the same address under another id goes first.
        broker.broker_addrs.retain(|id, addr| !(addr == &r.broker_addr && *id != r.broker_id));
        broker.broker_addrs.insert(r.broker_id, r.broker_addr.clone());
        if r.broker_id == MASTER_ID {
            self.replace_queues(&r.broker_name, &r.topics);
        }
        // An address registered under another broker name earlier moves here.
        if let Some(old) = self.live.get(&r.broker_addr) {
            if old.broker_name != r.broker_name {
                let old_name = old.broker_name.clone();
                self.remove_addr_from(&old_name, &r.broker_addr);
            }
        }
        let news = self.live.get(&r.broker_addr).is_none_or(|l| {
            l.broker_id != r.broker_id
                || l.raft_term != r.raft_term
                || l.raft_leader != r.raft_leader
        });
        self.live.insert(
            r.broker_addr.clone(),
            Live {
                broker_name: r.broker_name.clone(),
                broker_id: r.broker_id,
                last_update_ms: now_ms,
                data_version: r.data_version,
                ha_server_addr: r.ha_server_addr.clone(),
                conn,
                raft_term: r.raft_term,
                raft_leader: r.raft_leader,
            },
        );
        if r.broker_id == MASTER_ID {
            return Registered { news, ..Registered::default() };
        }
        let broker = &self.brokers[&r.broker_name];
        let master_addr = broker.broker_addrs.get(&MASTER_ID).cloned();
        let ha_server_addr =
            master_addr.as_ref().and_then(|m| self.live.get(m)).map(|l| l.ha_server_addr.clone());
        Registered { master_addr, ha_server_addr, news }
    }

    fn replace_queues(&mut self, broker_name: &str, topics: &BTreeMap<String, TopicConfig>) {
        for queues in self.topics.values_mut() {
            queues.remove(broker_name);
        }
        let wiped = self.write_wiped.contains(broker_name);
        for (name, t) in topics {
            self.topics.entry(name.clone()).or_default().insert(
                broker_name.to_owned(),
                QueueData {
                    broker_name: broker_name.to_owned(),
                    perm: if wiped { t.perm & !perm::WRITE } else { t.perm },
                    read_queue_nums: t.read_queue_nums,
                    topic_sys_flag: t.topic_sys_flag,
                    write_queue_nums: t.write_queue_nums,
                },
            );
        }
        self.topics.retain(|_, q| !q.is_empty());
    }

    /// Whether a registration with `version` would change anything (QUERY_DATA_VERSION).
    pub fn data_version_changed(&self, broker_addr: &str, version: DataVersion) -> bool {
        self.live.get(broker_addr).is_none_or(|l| l.data_version != version)
    }

    /// A broker asked about its data version: it is alive (as RocketMQ does, so a broker with
    /// `forceRegister=false` that only re-registers on change is not evicted).
    pub fn touch(&mut self, broker_addr: &str, now_ms: i64) {
        if let Some(l) = self.live.get_mut(broker_addr) {
            l.last_update_ms = now_ms;
        }
    }

    /// Removes one broker address (UNREGISTER_BROKER, or eviction).
    pub fn unregister(&mut self, broker_name: &str, broker_addr: &str) {
        self.remove_addr_from(broker_name, broker_addr);
    }

    fn remove_addr_from(&mut self, broker_name: &str, broker_addr: &str) {
        if self.live.get(broker_addr).is_some_and(|l| l.broker_name == broker_name) {
            self.live.remove(broker_addr);
        }
        let Some(broker) = self.brokers.get_mut(broker_name) else { return };
        broker.broker_addrs.retain(|_, a| a != broker_addr);
        if broker.broker_addrs.is_empty() {
            let cluster = broker.cluster.clone();
            self.brokers.remove(broker_name);
            if let Some(names) = self.clusters.get_mut(&cluster) {
                names.remove(broker_name);
                if names.is_empty() {
                    self.clusters.remove(&cluster);
                }
            }
        }
        if !self.brokers.contains_key(broker_name) {
            // A group nobody registers is no longer wiped (its next master registers afresh).
            self.write_wiped.remove(broker_name);
            // No address of the group is left: its queues leave the routes. (With only the
            // master gone, RocketMQ keeps them: producers skip a group without id 0, consumers
            // can still pull from its slaves while a new master is elected.)
            for queues in self.topics.values_mut() {
                queues.remove(broker_name);
            }
            self.topics.retain(|_, q| !q.is_empty());
        }
    }

    /// Evicts every broker whose last registration is older than `expiry_ms` at `now_ms`
    /// (silent for longer than the expiry); returns the evicted addresses.
    pub fn evict_expired(&mut self, now_ms: i64, expiry_ms: i64) -> Vec<Dropped> {
        self.drop_live(|l| now_ms - l.last_update_ms > expiry_ms)
    }

    /// Evicts the brokers that registered on a connection that closed; returns their addresses.
    pub fn connection_closed(&mut self, conn: ConnId) -> Vec<Dropped> {
        self.drop_live(|l| l.conn == conn)
    }

    fn drop_live(&mut self, gone: impl Fn(&Live) -> bool) -> Vec<Dropped> {
        let dropped: Vec<Dropped> = self
            .live
            .iter()
            .filter(|(_, l)| gone(l))
            .map(|(addr, l)| Dropped {
                addr: addr.clone(),
                group: l.broker_name.clone(),
                broker_id: l.broker_id,
                raft_term: l.raft_term,
            })
            .collect();
        for d in &dropped {
            self.remove_addr_from(&d.group, &d.addr);
        }
        dropped
    }

    /// The route of a topic (GET_ROUTEINFO_BY_TOPIC), `None` if no live broker serves it.
    pub fn route(&self, topic: &str) -> Option<TopicRouteData> {
        let queues = self.topics.get(topic)?;
        let queue_datas: Vec<QueueData> = queues.values().cloned().collect();
        let broker_datas: Vec<BrokerData> =
            queues.keys().filter_map(|name| self.brokers.get(name).cloned()).collect();
        if broker_datas.is_empty() {
            return None;
        }
        Some(TopicRouteData {
            broker_datas,
            filter_server_table: BTreeMap::new(),
            order_topic_conf: None,
            queue_datas,
        })
    }

    /// Every live broker by cluster (GET_BROKER_CLUSTER_INFO).
    pub fn cluster_info(&self) -> ClusterInfo {
        ClusterInfo {
            broker_addr_table: self.brokers.clone(),
            cluster_addr_table: self.clusters.clone(),
        }
    }

    /// Every topic with a live route (GET_ALL_TOPIC_LIST_FROM_NAMESERVER).
    pub fn topics(&self) -> BTreeSet<String> {
        self.topics.keys().cloned().collect()
    }

    /// The topics served by a cluster's brokers (GET_TOPICS_BY_CLUSTER).
    pub fn topics_of_cluster(&self, cluster: &str) -> BTreeSet<String> {
        let Some(names) = self.clusters.get(cluster) else { return BTreeSet::new() };
        self.topics
            .iter()
            .filter(|(_, q)| q.keys().any(|b| names.contains(b)))
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// GET_SYSTEM_TOPIC_LIST_FROM_NS: every cluster name and broker group name (RocketMQ
    /// lists those as "system topics"), and one broker's address to ask for the rest.
    pub fn system_topics(&self) -> TopicList {
        let mut topic_list: BTreeSet<String> = BTreeSet::new();
        for (cluster, names) in &self.clusters {
            topic_list.insert(cluster.clone());
            topic_list.extend(names.iter().cloned());
        }
        let broker_addr =
            self.brokers.values().find_map(|b| b.broker_addrs.values().next().cloned());
        TopicList { broker_addr, topic_list }
    }

    /// WIPE_WRITE_PERM_OF_BROKER (`writable` false: every queue of the group is routed
    /// read-only, so producers go elsewhere) and ADD_WRITE_PERM_OF_BROKER (`writable` true:
    /// read and write again). Returns how many topics have queues on the group, as RocketMQ
    /// counts them.
    pub fn set_write_perm(&mut self, broker_name: &str, writable: bool) -> i32 {
        if writable {
            self.write_wiped.remove(broker_name);
        } else if self.brokers.contains_key(broker_name) {
            // Only a known group: the set must not grow by names nobody registered.
            self.write_wiped.insert(broker_name.to_owned());
        }
        let mut count = 0;
        for q in self.topics.values_mut().filter_map(|t| t.get_mut(broker_name)) {
            q.perm = if writable { perm::READ | perm::WRITE } else { q.perm & !perm::WRITE };
            count += 1;
        }
        count
    }

    /// How many broker addresses are registered and live.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// Whether `broker_addr` is registered and live.
    pub fn is_live(&self, broker_addr: &str) -> bool {
        self.live.contains_key(broker_addr)
    }

    /// Removes a topic's route (DELETE_TOPIC_IN_NAMESRV).
    pub fn delete_topic(&mut self, topic: &str) -> bool {
        self.topics.remove(topic).is_some()
    }

    /// The broker id registered for an address, if it is alive.
    /// When `broker_addr` last registered (or was kept alive), if it is live.
    pub fn last_update_ms(&self, broker_addr: &str) -> Option<i64> {
        self.live.get(broker_addr).map(|l| l.last_update_ms)
    }

    pub fn broker_id_of(&self, broker_addr: &str) -> Option<i64> {
        self.live.get(broker_addr).map(|l| l.broker_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(dropped: Vec<Dropped>) -> Vec<String> {
        dropped.into_iter().map(|d| d.addr).collect()
    }

    const S: i64 = 1000;

    fn reg(name: &str, addr: &str, id: i64, topics: &[&str]) -> Registration {
        Registration {
            cluster: "DefaultCluster".into(),
            broker_name: name.into(),
            broker_addr: addr.into(),
            broker_id: id,
            ha_server_addr: format!("{addr}-ha"),
            data_version: DataVersion { counter: 1, timestamp: 1, ..Default::default() },
            topics: topics.iter().map(|t| (t.to_string(), TopicConfig::new(*t, 4))).collect(),
            raft_term: None,
            raft_leader: None,
        }
    }

    #[test]
    fn a_master_registration_publishes_its_topics() {
        let mut r = Registry::new();
        let first = r.register(reg("broker-a", "10.0.0.1:10911", 0, &["T1", "T2"]), 0, 1);
        assert_eq!(first, Registered { news: true, ..Registered::default() });
        // The same again is no news (nothing to log every 30 s); another term is.
        let again = r.register(reg("broker-a", "10.0.0.1:10911", 0, &["T1", "T2"]), 10, 1);
        assert_eq!(again, Registered::default());
        let mut newer = reg("broker-a", "10.0.0.1:10911", 0, &["T1", "T2"]);
        newer.raft_term = Some(3);
        assert!(r.register(newer, 20, 1).news);
        let route = r.route("T1").unwrap();
        assert_eq!(route.broker_datas[0].master_addr(), Some("10.0.0.1:10911"));
        assert_eq!(route.queue_datas[0].write_queue_nums, 4);
        assert_eq!(r.topics(), ["T1".to_owned(), "T2".to_owned()].into());
        assert!(r.route("T3").is_none());
    }

    #[test]
    fn a_wiped_group_stays_read_only_across_its_registrations_until_write_is_added() {
        let mut r = Registry::new();
        r.register(reg("broker-a", "10.0.0.1:10911", 0, &["T1", "T2"]), 0, 1);
        r.register(reg("broker-b", "10.0.0.2:10911", 0, &["T1"]), 0, 2);
        let perm_of = |r: &Registry, topic: &str, name: &str| {
            r.route(topic).unwrap().queue_datas.iter().find(|q| q.broker_name == name).unwrap().perm
        };
        assert_eq!(r.set_write_perm("broker-a", false), 2);
        assert_eq!(perm_of(&r, "T1", "broker-a"), perm::READ);
        assert_eq!(perm_of(&r, "T1", "broker-b"), perm::READ | perm::WRITE, "others untouched");
        // The periodic registration of the same master keeps it wiped.
        r.register(reg("broker-a", "10.0.0.1:10911", 0, &["T1", "T2"]), 30 * S, 1);
        assert_eq!(perm_of(&r, "T2", "broker-a"), perm::READ);
        assert_eq!(r.set_write_perm("broker-a", true), 2);
        assert_eq!(perm_of(&r, "T2", "broker-a"), perm::READ | perm::WRITE);
        assert_eq!(r.set_write_perm("nobody", false), 0);
        // A master registering afresh (after an eviction) is routed as it registers.
        r.set_write_perm("broker-a", false);
        r.unregister("broker-a", "10.0.0.1:10911");
        r.register(reg("broker-a", "10.0.0.1:10911", 0, &["T1"]), 60 * S, 3);
        assert_eq!(perm_of(&r, "T1", "broker-a"), perm::READ | perm::WRITE);
    }

    /// What names leave with them: a group that moves to another cluster leaves the old one's
    /// list, and a gone group is no longer in the wiped set (neither grows by churn).
    #[test]
    fn names_leave_the_tables_with_their_groups() {
        let mut r = Registry::new();
        for i in 0..3 {
            let mut moved = reg("broker-a", "10.0.0.1:10911", 0, &["T1"]);
            moved.cluster = format!("C{i}");
            r.register(moved, i * S, 1);
        }
        assert_eq!(r.clusters.keys().collect::<Vec<_>>(), ["C2"]);
        for i in 0..3 {
            let name = format!("g{i}");
            r.register(reg(&name, "10.0.0.9:10911", 0, &["T9"]), 0, 9);
            r.set_write_perm(&name, false);
            r.unregister(&name, "10.0.0.9:10911");
        }
        assert!(r.write_wiped.is_empty(), "{:?}", r.write_wiped);
    }

    #[test]
    fn system_topics_are_cluster_and_group_names_with_one_broker_to_ask() {
        let mut r = Registry::new();
        assert_eq!(r.system_topics(), TopicList::default());
        r.register(reg("broker-a", "10.0.0.1:10911", 0, &["T1"]), 0, 1);
        let list = r.system_topics();
        assert_eq!(list.topic_list, ["DefaultCluster".to_owned(), "broker-a".to_owned()].into());
        assert_eq!(list.broker_addr.as_deref(), Some("10.0.0.1:10911"));
    }

    #[test]
    fn slaves_get_the_master_address_but_do_not_publish_topics() {
        let mut r = Registry::new();
        r.register(reg("broker-a", "10.0.0.1:10911", 0, &["T1"]), 0, 1);
        let answer = r.register(reg("broker-a", "10.0.0.2:10911", 1, &["T1", "SlaveOnly"]), 0, 2);
        assert_eq!(answer.master_addr.as_deref(), Some("10.0.0.1:10911"));
        assert_eq!(answer.ha_server_addr.as_deref(), Some("10.0.0.1:10911-ha"));
        assert!(r.route("SlaveOnly").is_none());
        assert_eq!(r.route("T1").unwrap().broker_datas[0].broker_addrs.len(), 2);
    }

    #[test]
    fn re_registering_an_address_with_another_id_replaces_it() {
        let mut r = Registry::new();
        r.register(reg("broker-a", "n0:10911", 0, &["T1"]), 0, 1);
        r.register(reg("broker-a", "n1:10911", 1, &["T1"]), 0, 2);
        // n0 died; n1 won the election and registers as master; n0 comes back as a slave.
        r.unregister("broker-a", "n0:10911");
        let during = r.route("T1").expect("the slave still serves reads");
        assert_eq!(during.broker_datas[0].master_addr(), None, "no master: producers skip it");
        r.register(reg("broker-a", "n1:10911", 0, &["T1"]), 1, 2);
        r.register(reg("broker-a", "n0:10911", 2, &["T1"]), 1, 3);
        let addrs = &r.route("T1").unwrap().broker_datas[0].broker_addrs;
        assert_eq!(addrs, &[(0, "n1:10911".to_owned()), (2, "n0:10911".to_owned())].into());
        assert_eq!(r.broker_id_of("n1:10911"), Some(0));
    }

    #[test]
    fn eviction_happens_after_120_s_of_silence_not_before() {
        let mut r = Registry::new();
        r.register(reg("broker-a", "a:1", 0, &["T1"]), 0, 1);
        r.register(reg("broker-b", "b:1", 0, &["T1"]), 0, 2);
        r.register(reg("broker-b", "b:1", 0, &["T1"]), 60 * S, 2); // b keeps registering
        assert!(
            r.evict_expired(119 * S, BROKER_EXPIRY_MS_DEFAULT).is_empty(),
            "119 s: still alive"
        );
        assert_eq!(addrs(r.evict_expired(121 * S, BROKER_EXPIRY_MS_DEFAULT)), ["a:1"]);
        let route = r.route("T1").unwrap();
        assert_eq!(route.broker_datas.len(), 1);
        assert_eq!(route.broker_datas[0].broker_name, "broker-b");
        assert_eq!(route.queue_datas.len(), 1, "the evicted broker's queues are gone");
        assert_eq!(
            r.cluster_info().cluster_addr_table["DefaultCluster"],
            ["broker-b".to_owned()].into()
        );
    }

    #[test]
    fn a_closed_connection_evicts_at_once() {
        let mut r = Registry::new();
        r.register(reg("broker-a", "a:1", 0, &["T1"]), 0, 7);
        r.register(reg("broker-a", "a2:1", 1, &["T1"]), 0, 8);
        assert_eq!(addrs(r.connection_closed(7)), ["a:1"]);
        assert_eq!(
            r.route("T1").unwrap().broker_datas[0].master_addr(),
            None,
            "the master is gone"
        );
        assert!(
            r.cluster_info().broker_addr_table["broker-a"].broker_addrs.contains_key(&1),
            "the slave stays"
        );
        assert!(r.connection_closed(99).is_empty());
        assert_eq!(addrs(r.connection_closed(8)), ["a2:1"]);
        assert!(r.route("T1").is_none(), "nothing of the group is left");
    }

    #[test]
    fn a_new_master_registration_replaces_the_topic_set() {
        let mut r = Registry::new();
        r.register(reg("broker-a", "a:1", 0, &["T1", "T2"]), 0, 1);
        r.register(reg("broker-a", "a:1", 0, &["T2"]), 1, 1);
        assert!(r.route("T1").is_none(), "T1 was deleted on the broker");
        assert!(r.route("T2").is_some());
        assert!(!r.data_version_changed(
            "a:1",
            DataVersion { counter: 1, timestamp: 1, ..Default::default() }
        ));
        assert!(r.data_version_changed(
            "a:1",
            DataVersion { counter: 2, timestamp: 1, ..Default::default() }
        ));
        assert!(r.data_version_changed("unknown:1", DataVersion::default()));
        r.touch("a:1", 100 * S);
        assert!(
            r.evict_expired(200 * S, BROKER_EXPIRY_MS_DEFAULT).is_empty(),
            "a query keeps it alive"
        );
        assert_eq!(r.topics_of_cluster("DefaultCluster"), ["T2".to_owned()].into());
        assert!(r.delete_topic("T2"));
        assert!(r.route("T2").is_none());
    }

    #[test]
    fn a_live_master_is_replaced_only_by_a_newer_term() {
        let mut r = Registry::new();
        let at = |term: Option<i64>, addr: &str| Registration {
            raft_term: term,
            ..reg("b", addr, 0, &["T"])
        };
        r.register(at(Some(5), "n0:1"), S, 1);
        assert_eq!(r.master_conflict(&at(Some(5), "n0:1")), None, "the master itself");
        let impostor = r.master_conflict(&at(None, "evil:1")).expect("no term: refused");
        assert!(impostor.contains("n0:1 is the live master of b at Raft term 5"), "{impostor}");
        assert!(r.master_conflict(&at(Some(5), "n1:1")).is_some(), "the same term");
        // openraft's leader ids: one term may see two leaders in turn, the higher node id last.
        let led_by =
            |term, leader, addr| Registration { raft_leader: Some(leader), ..at(Some(term), addr) };
        let mut by_id = Registry::new();
        by_id.register(led_by(5, 1, "n1:1"), S, 1);
        assert!(by_id.master_conflict(&led_by(5, 0, "n0:1")).is_some(), "a lower id, same term");
        assert!(by_id.master_conflict(&at(Some(5), "n2:1")).is_some(), "the same term, no id");
        assert_eq!(by_id.master_conflict(&led_by(5, 2, "n2:1")), None, "a higher id, same term");
        assert!(r.master_conflict(&at(Some(4), "n1:1")).is_some(), "a deposed leader");
        assert_eq!(r.master_conflict(&at(Some(6), "n1:1")), None, "its successor");
        assert_eq!(r.master_conflict(&reg("b", "n2:1", 3, &[])), None, "a slave");
        r.register(at(Some(6), "n1:1"), S + 1, 2);
        assert_eq!(r.route("T").unwrap().broker_datas[0].master_addr(), Some("n1:1"));
        // A master that said no term (a RocketMQ broker) is replaced as RocketMQ replaces it.
        let mut r = Registry::new();
        r.register(at(None, "n0:1"), S, 1);
        assert_eq!(r.master_conflict(&at(None, "n1:1")), None);
    }
}
