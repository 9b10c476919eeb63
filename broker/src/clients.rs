//! The client manager: which producers and consumers are connected, what the consumers
//! subscribe to, and which consumer holds which queue lock (orderly consumption). Plain
//! functions over tables with the time passed in (STYLE.md rule 2); the server wraps them and
//! pushes NOTIFY_CONSUMER_IDS_CHANGED to the groups a call reports as changed.
//!
//! Rules (RocketMQ's `ConsumerManager`, `ProducerManager`, `RebalanceLockManager`):
//! - a client is known by its client id; each heartbeat refreshes it and replaces its
//!   subscriptions; a client silent for `channel_expiry_ms` (120 s) or whose connection closed
//!   leaves every group;
//! - a consumer group's member list changing (join or leave) is reported, so its members
//!   rebalance at once;
//! - a queue lock belongs to one client of a group until `lock_expiry_ms` (60 s) after its last
//!   renewal (the master's table: followers grant none; a new master starts from the owners
//!   its predecessors replicated, `honour_locks`); another client gets it only once it expired or was released, or the holder
//!   unregistered from the group (a graceful shutdown: the next owner need not wait a minute).
//!   A closed connection does not free them: the client may be alive and still trusts its
//!   locks for 30 s (RocketMQ's split between client and broker), so a crashed member's queues
//!   wait for the expiry, as in RocketMQ.

use std::collections::{BTreeMap, BTreeSet};

use rocketraft_protocol::admin::Connection;
use rocketraft_protocol::body::{
    ConsumeFromWhere, ConsumeType, HeartbeatData, MessageModel, MessageQueue, SubscriptionData,
};

/// RocketMQ's channel expiry: a client silent this long is dropped.
pub const CHANNEL_EXPIRY_MS_DEFAULT: i64 = 120_000;
/// RocketMQ's `rocketmq.broker.rebalance.lockMaxLiveTime`.
pub const LOCK_EXPIRY_MS_DEFAULT: i64 = 60_000;

/// The connection a client talks on.
pub type ConnId = u64;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    conn: ConnId,
    last_heartbeat_ms: i64,
    subscriptions: BTreeMap<String, SubscriptionData>,
    kind: ConsumerKind,
}

/// How a consumer group's member consumes, as its last heartbeat said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerKind {
    pub consume_type: ConsumeType,
    pub message_model: MessageModel,
    pub consume_from_where: ConsumeFromWhere,
}

/// What a client's connection says of it (for connection lists): its address, language and
/// version, from its heartbeat request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub addr: String,
    pub language: String,
    pub version: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Lock {
    client_id: String,
    renewed_ms: i64,
}

/// Connected clients and queue locks of one broker replica.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientManager {
    /// consumer group -> client id -> member
    consumers: BTreeMap<String, BTreeMap<String, Member>>,
    /// producer group -> client id -> (connection, last heartbeat)
    producers: BTreeMap<String, BTreeMap<String, (ConnId, i64)>>,
    /// (consumer group, queue) -> lock
    locks: BTreeMap<(String, MessageQueue), Lock>,
    /// What each connection a member or producer is registered on said of its client.
    infos: BTreeMap<ConnId, ClientInfo>,
    /// The Raft term whose replicated lock owners the lock table holds (see
    /// [`ClientManager::honour_locks`]); 0 before the first.
    locks_term: u64,
}

/// What LOCK_BATCH_MQ did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locked {
    /// Every queue asked for that the client now holds.
    pub held: BTreeSet<MessageQueue>,
    /// Those of `held` it did not hold before (free, expired, or another client's that
    /// expired): the changes of owner to replicate.
    pub taken: BTreeSet<MessageQueue>,
}

impl ClientManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// [`ClientManager::heartbeat`], remembering what the connection says of its client.
    pub fn heartbeat_from(
        &mut self,
        conn: ConnId,
        info: ClientInfo,
        data: &HeartbeatData,
        now_ms: i64,
    ) -> BTreeSet<String> {
        self.infos.insert(conn, info);
        let changed = self.heartbeat(conn, data, now_ms);
        self.prune();
        changed
    }

    /// How many client registrations are held (a consumer or producer in one group).
    pub fn registrations(&self) -> usize {
        self.consumers.values().map(BTreeMap::len).sum::<usize>()
            + self.producers.values().map(BTreeMap::len).sum::<usize>()
    }

    /// The registrations `client_id` holds: (consumer?, group).
    pub fn held_by(&self, client_id: &str) -> BTreeSet<(bool, String)> {
        let consumers = self.consumers.iter().filter(|(_, m)| m.contains_key(client_id));
        let producers = self.producers.iter().filter(|(_, m)| m.contains_key(client_id));
        consumers
            .map(|(g, _)| (true, g.clone()))
            .chain(producers.map(|(g, _)| (false, g.clone())))
            .collect()
    }

    /// Records a heartbeat; returns the consumer groups whose member list changed.
    pub fn heartbeat(
        &mut self,
        conn: ConnId,
        data: &HeartbeatData,
        now_ms: i64,
    ) -> BTreeSet<String> {
        let mut changed = BTreeSet::new();
        for c in &data.consumer_data_set {
            let members = self.consumers.entry(c.group_name.clone()).or_default();
            let subscriptions =
                c.subscription_data_set.iter().map(|s| (s.topic.clone(), s.clone())).collect();
            let kind = ConsumerKind {
                consume_type: c.consume_type,
                message_model: c.message_model,
                consume_from_where: c.consume_from_where,
            };
            let member = Member { conn, last_heartbeat_ms: now_ms, subscriptions, kind };
            if members.insert(data.client_id.clone(), member).is_none() {
                changed.insert(c.group_name.clone());
            }
        }
        for p in &data.producer_data_set {
            self.producers
                .entry(p.group_name.clone())
                .or_default()
                .insert(data.client_id.clone(), (conn, now_ms));
        }
        changed
    }

    /// UNREGISTER_CLIENT: the client leaves the named groups; returns the consumer groups that
    /// changed.
    pub fn unregister(
        &mut self,
        client_id: &str,
        producer_group: Option<&str>,
        consumer_group: Option<&str>,
    ) -> BTreeSet<String> {
        if let Some(g) = producer_group {
            if let Some(p) = self.producers.get_mut(g) {
                p.remove(client_id);
            }
        }
        let mut changed = BTreeSet::new();
        if let Some(g) = consumer_group {
            if self.consumers.get_mut(g).is_some_and(|m| m.remove(client_id).is_some()) {
                changed.insert(g.to_owned());
            }
            self.locks.retain(|(group, _), l| group != g || l.client_id != client_id);
        }
        self.prune();
        changed
    }

    /// A connection closed: its clients leave every group. Returns the consumer groups that
    /// changed. Their queue locks stay until they expire: a client whose connection merely
    /// broke still trusts its locks for 30 s and may be consuming.
    pub fn connection_closed(&mut self, conn: ConnId) -> BTreeSet<String> {
        self.remove_where(|m_conn, _| m_conn == conn, false)
    }

    /// Drops clients silent for longer than `expiry_ms`, and their locks; returns the consumer
    /// groups that changed.
    pub fn expire(&mut self, now_ms: i64, expiry_ms: i64) -> BTreeSet<String> {
        self.remove_where(|_, last| now_ms - last > expiry_ms, true)
    }

    fn remove_where(
        &mut self,
        gone: impl Fn(ConnId, i64) -> bool,
        free_locks: bool,
    ) -> BTreeSet<String> {
        let mut changed = BTreeSet::new();
        let mut left = BTreeSet::new();
        for (group, members) in &mut self.consumers {
            let before = members.len();
            members.retain(|id, m| {
                let stays = !gone(m.conn, m.last_heartbeat_ms);
                if !stays {
                    left.insert((group.clone(), id.clone()));
                }
                stays
            });
            if members.len() != before {
                changed.insert(group.clone());
            }
        }
        if free_locks {
            self.locks
                .retain(|(group, _), l| !left.contains(&(group.clone(), l.client_id.clone())));
        }
        for members in self.producers.values_mut() {
            members.retain(|_, (conn, last)| !gone(*conn, *last));
        }
        self.prune();
        changed
    }

    fn prune(&mut self) {
        self.consumers.retain(|_, m| !m.is_empty());
        self.producers.retain(|_, m| !m.is_empty());
        let used: BTreeSet<ConnId> = self
            .consumers
            .values()
            .flat_map(|m| m.values().map(|c| c.conn))
            .chain(self.producers.values().flat_map(|p| p.values().map(|(conn, _)| *conn)))
            .collect();
        self.infos.retain(|conn, _| used.contains(conn));
    }

    fn connection(&self, client_id: &str, conn: ConnId) -> Connection {
        let info = self.infos.get(&conn).cloned().unwrap_or_default();
        Connection {
            client_addr: info.addr,
            client_id: client_id.to_owned(),
            language: info.language,
            version: info.version,
        }
    }

    /// GET_CONSUMER_CONNECTION_LIST: a group's members with their connections, how the group
    /// consumes (as its latest heartbeat said) and the subscriptions they registered; `None`
    /// when no member is online.
    pub fn consumer_connections_of(
        &self,
        group: &str,
    ) -> Option<(Vec<Connection>, ConsumerKind, BTreeMap<String, SubscriptionData>)> {
        let members = self.consumers.get(group).filter(|m| !m.is_empty())?;
        let latest = members.values().max_by_key(|m| m.last_heartbeat_ms)?;
        let connections = members.iter().map(|(id, m)| self.connection(id, m.conn)).collect();
        let mut subscriptions = BTreeMap::new();
        for m in members.values() {
            for (topic, s) in &m.subscriptions {
                subscriptions.entry(topic.clone()).or_insert_with(|| s.clone());
            }
        }
        Some((connections, latest.kind, subscriptions))
    }

    /// The connection a consumer of `group` registered on, if it is online.
    pub fn consumer_conn(&self, group: &str, client_id: &str) -> Option<ConnId> {
        self.consumers.get(group)?.get(client_id).map(|m| m.conn)
    }

    /// GET_PRODUCER_CONNECTION_LIST: a producer group's connections; `None` when none is
    /// online.
    pub fn producer_connections_of(&self, group: &str) -> Option<Vec<Connection>> {
        let members = self.producers.get(group).filter(|m| !m.is_empty())?;
        Some(members.iter().map(|(id, (conn, _))| self.connection(id, *conn)).collect())
    }

    /// The online consumer groups with a member subscribed to `topic`.
    pub fn groups_consuming(&self, topic: &str) -> BTreeSet<String> {
        self.consumers
            .iter()
            .filter(|(_, m)| m.values().any(|c| c.subscriptions.contains_key(topic)))
            .map(|(g, _)| g.clone())
            .collect()
    }

    /// A group's client ids (GET_CONSUMER_LIST_BY_GROUP), sorted.
    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        self.consumers.get(group).map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// The connections of a group's members (where NOTIFY_CONSUMER_IDS_CHANGED goes).
    pub fn consumer_connections(&self, group: &str) -> BTreeSet<ConnId> {
        self.consumers.get(group).map(|m| m.values().map(|c| c.conn).collect()).unwrap_or_default()
    }

    /// The topics any member of a group subscribes to.
    pub fn subscribed_topics(&self, group: &str) -> BTreeSet<String> {
        self.consumers
            .get(group)
            .map(|m| m.values().flat_map(|c| c.subscriptions.keys().cloned()).collect())
            .unwrap_or_default()
    }

    /// A member's subscription to a topic, if it has one.
    pub fn subscription(&self, group: &str, topic: &str) -> Option<&SubscriptionData> {
        self.consumers.get(group)?.values().find_map(|m| m.subscriptions.get(topic))
    }

    /// The connection of some live producer of a group (transaction check-back goes there).
    pub fn producer_connection(&self, group: &str) -> Option<ConnId> {
        self.producers.get(group)?.values().next().map(|(conn, _)| *conn)
    }

    /// The connection a producer with this client id last sent a heartbeat on, in any group
    /// (where a reply to its request goes; RocketMQ's `ProducerManager.findChannel`).
    pub fn producer_conn_of_client(&self, client_id: &str) -> Option<ConnId> {
        self.producers
            .values()
            .filter_map(|members| members.get(client_id))
            .max_by_key(|(_, last)| *last)
            .map(|(conn, _)| *conn)
    }

    /// Whether the lock table holds the replicated lock owners of `term` yet.
    pub fn honours_locks_of(&self, term: u64) -> bool {
        self.locks_term == term
    }

    /// A new master's first lock call of its `term`: every lock the previous masters granted
    /// (`owners`, replicated: group, queue, client) to a client still registered in that group
    /// here is taken as renewed `now_ms`, so its holder keeps it for a whole expiry unless it
    /// renews or leaves, and nobody else gets the queue meanwhile (the holder may still be
    /// consuming on the old master's word). Consumers send their heartbeats to every replica,
    /// so a live holder is registered here; an owner that is not (it left, or its process
    /// ended) is not waited for.
    pub fn honour_locks(
        &mut self,
        term: u64,
        owners: impl IntoIterator<Item = (String, MessageQueue, String)>,
        now_ms: i64,
    ) {
        for (group, q, client_id) in owners {
            if self.consumers.get(&group).is_some_and(|m| m.contains_key(&client_id)) {
                self.locks.insert((group, q), Lock { client_id, renewed_ms: now_ms });
            }
        }
        self.locks_term = term;
    }

    /// LOCK_BATCH_MQ: locks (or renews) every queue that is free, expired or already the
    /// client's.
    pub fn lock(
        &mut self,
        group: &str,
        client_id: &str,
        queues: &BTreeSet<MessageQueue>,
        now_ms: i64,
        expiry_ms: i64,
    ) -> Locked {
        let mut locked = Locked::default();
        for q in queues {
            let key = (group.to_owned(), q.clone());
            let (free, renewal) = match self.locks.get(&key) {
                None => (true, false),
                Some(l) if l.client_id == client_id => (true, true),
                Some(l) => (now_ms - l.renewed_ms > expiry_ms, false),
            };
            if free {
                self.locks
                    .insert(key, Lock { client_id: client_id.to_owned(), renewed_ms: now_ms });
                locked.held.insert(q.clone());
                if !renewal {
                    locked.taken.insert(q.clone());
                }
            }
        }
        locked
    }

    /// UNLOCK_BATCH_MQ: releases the client's locks on these queues.
    pub fn unlock(&mut self, group: &str, client_id: &str, queues: &BTreeSet<MessageQueue>) {
        for q in queues {
            let key = (group.to_owned(), q.clone());
            if self.locks.get(&key).is_some_and(|l| l.client_id == client_id) {
                self.locks.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocketraft_protocol::body::{
        ConsumeFromWhere, ConsumeType, ConsumerData, MessageModel, ProducerData,
    };

    const S: i64 = 1000;

    fn hb(client: &str, groups: &[&str]) -> HeartbeatData {
        HeartbeatData {
            client_id: client.into(),
            consumer_data_set: groups
                .iter()
                .map(|g| ConsumerData {
                    consume_from_where: ConsumeFromWhere::ConsumeFromLastOffset,
                    consume_type: ConsumeType::ConsumePassively,
                    group_name: g.to_string(),
                    message_model: MessageModel::Clustering,
                    subscription_data_set: vec![SubscriptionData::tag("T", "TagA", 1)],
                    unit_mode: false,
                })
                .collect(),
            producer_data_set: vec![ProducerData { group_name: "PG".into() }],
        }
    }

    fn mq(q: i32) -> MessageQueue {
        MessageQueue { broker_name: "broker-a".into(), queue_id: q, topic: "T".into() }
    }

    #[test]
    fn connection_lists_say_who_is_connected_from_where_until_they_leave() {
        let mut m = ClientManager::new();
        let info = |port: u16| ClientInfo {
            addr: format!("127.0.0.1:{port}"),
            language: "JAVA".into(),
            version: 413,
        };
        assert!(m.consumer_connections_of("G").is_none());
        m.heartbeat_from(1, info(5001), &hb("c1", &["G"]), 0);
        m.heartbeat_from(2, info(5002), &hb("c2", &["G", "H"]), 0);
        let (conns, kind, subs) = m.consumer_connections_of("G").unwrap();
        assert_eq!(conns.len(), 2);
        assert_eq!(conns[0].client_id, "c1");
        assert_eq!(conns[0].client_addr, "127.0.0.1:5001");
        assert_eq!(conns[1].version, 413);
        assert_eq!(kind.consume_type, ConsumeType::ConsumePassively);
        assert_eq!(subs["T"].sub_string, "TagA");
        assert_eq!(m.groups_consuming("T"), ["G".to_owned(), "H".to_owned()].into());
        assert!(m.groups_consuming("U").is_empty());
        assert_eq!(m.producer_connections_of("PG").unwrap().len(), 2);
        m.connection_closed(1);
        assert_eq!(m.consumer_connections_of("G").unwrap().0.len(), 1);
        assert!(!m.infos.contains_key(&1), "a closed connection's description goes with it");
        m.connection_closed(2);
        assert!(m.consumer_connections_of("G").is_none());
        assert!(m.producer_connections_of("PG").is_none());
        assert!(m.infos.is_empty());
    }

    #[test]
    fn joins_and_leaves_are_reported_refreshes_are_not() {
        let mut m = ClientManager::new();
        assert_eq!(m.heartbeat(1, &hb("c1", &["G"]), 0), ["G".to_owned()].into());
        assert!(m.heartbeat(1, &hb("c1", &["G"]), 30 * S).is_empty(), "a refresh changes nothing");
        assert_eq!(m.heartbeat(2, &hb("c2", &["G"]), 30 * S), ["G".to_owned()].into());
        assert_eq!(m.consumer_ids("G"), vec!["c1".to_owned(), "c2".to_owned()]);
        assert_eq!(m.consumer_connections("G"), [1, 2].into());
        assert_eq!(m.subscription("G", "T").unwrap().sub_string, "TagA");
        assert_eq!(m.producer_connection("PG"), Some(1));
        assert_eq!(m.producer_conn_of_client("c2"), Some(2));
        // A client that reconnected is found on its newest connection.
        m.heartbeat(3, &hb("c2", &[]), 31 * S);
        assert_eq!(m.producer_conn_of_client("c2"), Some(3));
        assert_eq!(m.producer_conn_of_client("nobody"), None);
        assert_eq!(m.unregister("c2", Some("PG"), Some("G")), ["G".to_owned()].into());
        assert_eq!(m.consumer_ids("G"), vec!["c1".to_owned()]);
    }

    #[test]
    fn silent_clients_expire_after_120_s_and_closed_connections_at_once() {
        let mut m = ClientManager::new();
        m.heartbeat(1, &hb("c1", &["G"]), 0);
        m.heartbeat(2, &hb("c2", &["G"]), 0);
        m.heartbeat(2, &hb("c2", &["G"]), 60 * S);
        assert!(m.expire(119 * S, CHANNEL_EXPIRY_MS_DEFAULT).is_empty());
        assert_eq!(m.expire(121 * S, CHANNEL_EXPIRY_MS_DEFAULT), ["G".to_owned()].into());
        assert_eq!(m.consumer_ids("G"), vec!["c2".to_owned()]);
        assert_eq!(m.connection_closed(2), ["G".to_owned()].into());
        assert!(m.consumer_ids("G").is_empty());
        assert_eq!(m.producer_connection("PG"), None);
    }

    #[test]
    fn an_unregistered_clients_locks_are_free_at_once() {
        let mut m = ClientManager::new();
        m.heartbeat(1, &hb("c1", &["G"]), 0);
        m.heartbeat(2, &hb("c2", &["G"]), 0);
        m.heartbeat(3, &hb("c3", &["G"]), 0);
        for (c, q) in [("c1", 0), ("c2", 1), ("c3", 2)] {
            assert_eq!(
                m.lock("G", c, &[mq(q)].into(), 0, LOCK_EXPIRY_MS_DEFAULT).held,
                [mq(q)].into()
            );
        }
        let all: BTreeSet<_> = [mq(0), mq(1), mq(2)].into();
        assert!(m.lock("G", "c9", &all, S, LOCK_EXPIRY_MS_DEFAULT).held.is_empty(), "all held");
        m.unregister("c1", None, Some("G"));
        m.connection_closed(2);
        assert_eq!(
            m.lock("G", "c9", &all, 2 * S, LOCK_EXPIRY_MS_DEFAULT).held,
            [mq(0)].into(),
            "c1 unregistered; c2's connection closed but it may still consume; c3 holds q2"
        );
        assert_eq!(
            m.lock("G", "c9", &all, 61 * S, LOCK_EXPIRY_MS_DEFAULT).held,
            all,
            "c2's and c3's locks expired"
        );
    }

    #[test]
    fn a_lock_is_one_clients_until_released_or_expired() {
        let mut m = ClientManager::new();
        let both: BTreeSet<_> = [mq(0), mq(1)].into();
        assert_eq!(
            m.lock("G", "c1", &[mq(0)].into(), 0, LOCK_EXPIRY_MS_DEFAULT).held,
            [mq(0)].into()
        );
        assert_eq!(
            m.lock("G", "c2", &both, 10 * S, LOCK_EXPIRY_MS_DEFAULT).held,
            [mq(1)].into(),
            "q0 is c1's"
        );
        assert_eq!(
            m.lock("H", "c2", &both, 10 * S, LOCK_EXPIRY_MS_DEFAULT).held,
            both,
            "another group locks apart"
        );
        let renewed = m.lock("G", "c1", &[mq(0)].into(), 50 * S, LOCK_EXPIRY_MS_DEFAULT);
        assert_eq!(renewed.held, [mq(0)].into(), "renewed");
        assert!(renewed.taken.is_empty(), "a renewal changes no owner: nothing to replicate");
        assert!(
            m.lock("G", "c2", &[mq(0)].into(), 109 * S, LOCK_EXPIRY_MS_DEFAULT).held.is_empty(),
            "59 s after the renewal"
        );
        let taken = m.lock("G", "c2", &[mq(0)].into(), 111 * S, LOCK_EXPIRY_MS_DEFAULT);
        assert_eq!((taken.held, taken.taken), ([mq(0)].into(), [mq(0)].into()), "expired");
        m.unlock("G", "c1", &[mq(0)].into());
        assert!(
            m.lock("G", "c1", &[mq(0)].into(), 112 * S, LOCK_EXPIRY_MS_DEFAULT).held.is_empty(),
            "c1 cannot unlock c2's"
        );
        m.unlock("G", "c2", &[mq(0)].into());
        assert_eq!(
            m.lock("G", "c1", &[mq(0)].into(), 113 * S, LOCK_EXPIRY_MS_DEFAULT).held,
            [mq(0)].into()
        );
    }

    /// A new master takes every replicated owner's lock as renewed when it takes over: the
    /// holder keeps its queue (and renews it), another client waits a whole expiry.
    #[test]
    fn a_new_master_honours_the_locks_its_predecessor_granted() {
        let mut m = ClientManager::new();
        m.heartbeat(1, &hb("c1", &["G"]), 100 * S);
        assert!(!m.honours_locks_of(3));
        let owners =
            [("G".to_owned(), mq(0), "c1".to_owned()), ("G".to_owned(), mq(1), "gone".to_owned())];
        m.honour_locks(3, owners, 100 * S);
        assert!(m.honours_locks_of(3));
        assert!(m
            .lock("G", "c2", &[mq(0)].into(), 101 * S, LOCK_EXPIRY_MS_DEFAULT)
            .held
            .is_empty());
        let renewed = m.lock("G", "c1", &[mq(0)].into(), 102 * S, LOCK_EXPIRY_MS_DEFAULT);
        assert_eq!((renewed.held, renewed.taken), ([mq(0)].into(), BTreeSet::new()));
        assert!(m
            .lock("G", "c2", &[mq(0)].into(), 161 * S, LOCK_EXPIRY_MS_DEFAULT)
            .held
            .is_empty());
        let taken = m.lock("G", "c2", &[mq(0)].into(), 163 * S, LOCK_EXPIRY_MS_DEFAULT);
        assert_eq!(taken.taken, [mq(0)].into(), "expired 60 s after the last renewal");
        let q1 = m.lock("G", "c2", &[mq(1)].into(), 101 * S, LOCK_EXPIRY_MS_DEFAULT);
        assert_eq!(q1.held, [mq(1)].into(), "an owner no longer registered is not waited for");
    }
}
