//! Admin calls (what the `rocketraft` command's admin verbs need): cluster and route
//! information, topic creation and deletion, queue offsets and a group's progress, and
//! message lookup by key, by UNIQ_KEY and by offset message id.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rocketraft_protocol::admin::{
    parse_properties, ConsumerConnection, ConsumerRunningInfo, GroupList, ResetOffsetBody,
};
use rocketraft_protocol::body::{
    ClusterInfo, ConsumeStats, DelayOffsets, JsonBody, KvTable, TopicList, TopicRouteData,
    TopicStatsTable, UnresolvedHalf, UnresolvedHalves,
};
use rocketraft_protocol::code::perm;
use rocketraft_protocol::headers::{
    ChangeReplicaRequestHeader, CreateTopicRequestHeader, GetConsumeStatsRequestHeader,
    GetConsumerConnectionListRequestHeader, GetConsumerRunningInfoRequestHeader,
    MembersResponseHeader, QueryMessageRequestHeader, ResetOffsetRequestHeader, TopicRequestHeader,
    TransferLeaderRequestHeader, TransferLeaderResponseHeader, UnresolvedHalvesRequestHeader,
    ViewMessageRequestHeader, UNIQUE_KEY_QUERY,
};
use rocketraft_protocol::message::{decode_offset_msg_id, decode_records};
use rocketraft_protocol::{request_code, response_code, RemotingCommand};

use crate::consumer::read_addr;
use crate::core::{ClientConfig, Core};
use crate::error::{ClientError, Result};
use crate::message::MessageExt;

/// Most messages a key lookup returns per broker group.
pub const QUERY_MAX: i32 = 64;

/// One parked queue of a broker group: a delay level's queue of `SCHEDULE_TOPIC_XXXX` or a
/// timer queue of `rmq_sys_wheel_timer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedQueue {
    pub broker_name: String,
    pub topic: String,
    pub queue_id: i32,
    /// Messages ever parked here (the queue's end offset).
    pub stored: i64,
    /// Of those, moved on already (the replicated progress).
    pub moved: i64,
}

impl ParkedQueue {
    /// Messages waiting here now.
    pub fn pending(&self) -> i64 {
        (self.stored - self.moved).max(0)
    }
}

/// An admin handle.
pub struct Admin {
    core: Arc<Core>,
}

impl Drop for Admin {
    /// Dropped without `shutdown`: close connections.
    fn drop(&mut self) {
        self.core.halt();
    }
}

impl Admin {
    pub async fn start(config: ClientConfig) -> Result<Admin> {
        Ok(Admin { core: Core::start(config, None).await? })
    }

    /// Asks the NameServers in turn; the first answer wins.
    async fn namesrv_call(&self, req: RemotingCommand) -> Result<RemotingCommand> {
        let mut last = None;
        for addr in &self.core.config.namesrv_addrs {
            match self.core.call_ok(addr, req.clone()).await {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ClientError::InvalidArgument("no NameServer address".into())))
    }

    /// Broker groups and clusters (GET_BROKER_CLUSTER_INFO).
    pub async fn cluster_info(&self) -> Result<ClusterInfo> {
        let resp = self
            .namesrv_call(RemotingCommand::request_without_header(
                request_code::GET_BROKER_CLUSTER_INFO,
            ))
            .await?;
        ClusterInfo::from_json(&resp.body)
            .map_err(|e| ClientError::Protocol { addr: "NameServer".into(), source: e })
    }

    /// Every topic the NameServer knows.
    pub async fn topics(&self) -> Result<BTreeSet<String>> {
        let resp = self
            .namesrv_call(RemotingCommand::request_without_header(
                request_code::GET_ALL_TOPIC_LIST_FROM_NAMESERVER,
            ))
            .await?;
        TopicList::from_json(&resp.body)
            .map(|l| l.topic_list)
            .map_err(|e| ClientError::Protocol { addr: "NameServer".into(), source: e })
    }

    /// A topic's route, fetched now.
    pub async fn route(&self, topic: &str) -> Result<TopicRouteData> {
        Ok(self.core.routes.refresh(topic).await?.data.clone())
    }

    /// The master address of every broker group of `cluster` (all clusters if `None`).
    pub async fn masters(&self, cluster: Option<&str>) -> Result<BTreeMap<String, String>> {
        let info = self.cluster_info().await?;
        let names: BTreeSet<String> = match cluster {
            Some(c) => info.cluster_addr_table.get(c).cloned().ok_or_else(|| {
                ClientError::InvalidArgument(format!(
                    "no cluster named {c:?} (known: {})",
                    info.cluster_addr_table.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?,
            None => info.broker_addr_table.keys().cloned().collect(),
        };
        Ok(names
            .into_iter()
            .filter_map(|n| {
                let addr = info.broker_addr_table.get(&n)?.master_addr()?.to_owned();
                Some((n, addr))
            })
            .collect())
    }

    /// Creates (or updates) `topic` with `queues` read and write queues on every master of
    /// `cluster` (all clusters if `None`); returns the broker groups it was created on.
    pub async fn create_topic(
        &self,
        cluster: Option<&str>,
        topic: &str,
        queues: i32,
        order: bool,
    ) -> Result<Vec<String>> {
        if !(1..=1024).contains(&queues) {
            return Err(ClientError::InvalidArgument(format!(
                "{queues} queues: a topic has 1 to 1024"
            )));
        }
        let masters = self.masters(cluster).await?;
        if masters.is_empty() {
            return Err(ClientError::NoRoute {
                topic: topic.to_owned(),
                reason: "no broker group has a master registered with the NameServers".into(),
            });
        }
        let header = CreateTopicRequestHeader {
            topic: topic.to_owned(),
            default_topic: crate::producer::AUTO_CREATE_TOPIC.to_owned(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: perm::READ | perm::WRITE,
            topic_filter_type: "SINGLE_TAG".into(),
            topic_sys_flag: Some(0),
            order: Some(order),
        };
        let mut done = Vec::new();
        for (name, addr) in masters {
            let req = RemotingCommand::request(request_code::UPDATE_AND_CREATE_TOPIC, &header);
            self.core.call_ok(&addr, req).await?;
            done.push(name);
        }
        Ok(done)
    }

    /// Deletes `topic` from every master of `cluster` and from every NameServer.
    pub async fn delete_topic(&self, cluster: Option<&str>, topic: &str) -> Result<()> {
        let header = TopicRequestHeader { topic: topic.to_owned() };
        for addr in self.masters(cluster).await?.values() {
            let req = RemotingCommand::request(request_code::DELETE_TOPIC_IN_BROKER, &header);
            self.core.call_ok(addr, req).await?;
        }
        for addr in &self.core.config.namesrv_addrs {
            let req = RemotingCommand::request(request_code::DELETE_TOPIC_IN_NAMESRV, &header);
            self.core.call_ok(addr, req).await?;
        }
        Ok(())
    }

    /// Min and max offsets of every queue of `topic` (GET_TOPIC_STATS_INFO on each group).
    pub async fn topic_stats(&self, topic: &str) -> Result<TopicStatsTable> {
        let route = self.core.routes.refresh(topic).await?;
        let mut all = TopicStatsTable::default();
        for b in &route.data.broker_datas {
            let Some(addr) = read_addr(&route, &b.broker_name) else { continue };
            let req = RemotingCommand::request(
                request_code::GET_TOPIC_STATS_INFO,
                &TopicRequestHeader { topic: topic.to_owned() },
            );
            let resp = self.core.call_ok(&addr, req).await?;
            let t = TopicStatsTable::decode(&resp.body)
                .map_err(|e| ClientError::Protocol { addr, source: e })?;
            all.offset_table.extend(t.offset_table);
        }
        Ok(all)
    }

    /// A group's committed offsets and the queues' ends (GET_CONSUME_STATS on every master
    /// of the topic's route, or of the cluster when no topic is given).
    pub async fn consume_stats(&self, group: &str, topic: Option<&str>) -> Result<ConsumeStats> {
        let addrs: Vec<String> = match topic {
            Some(t) => {
                let route = self.core.routes.refresh(t).await?;
                route
                    .data
                    .broker_datas
                    .iter()
                    .filter_map(|b| read_addr(&route, &b.broker_name))
                    .collect()
            }
            None => self.masters(None).await?.into_values().collect(),
        };
        let mut all = ConsumeStats::default();
        for addr in addrs {
            let req = RemotingCommand::request(
                request_code::GET_CONSUME_STATS,
                &GetConsumeStatsRequestHeader {
                    consumer_group: group.to_owned(),
                    topic: topic.map(str::to_owned),
                },
            );
            let resp = match self.core.call_ok(&addr, req).await {
                Ok(r) => r,
                // This group has neither offsets nor members on this broker group: it adds
                // nothing (RocketMQ's answer), while the others may have its offsets.
                Err(e) if e.code() == Some(response_code::CONSUMER_NOT_ONLINE) => continue,
                Err(e) => return Err(e),
            };
            let s = ConsumeStats::decode(&resp.body)
                .map_err(|e| ClientError::Protocol { addr, source: e })?;
            all.consume_tps += s.consume_tps;
            all.offset_table.extend(s.offset_table);
        }
        Ok(all)
    }

    /// Transaction half messages no END_TRANSACTION has resolved yet, in every broker group
    /// (or `cluster`'s), of `topic` and/or `producer_group` if given: (broker group, half),
    /// oldest first per group, at most `max` per group; and whether a group had more.
    pub async fn unresolved_halves(
        &self,
        cluster: Option<&str>,
        topic: Option<&str>,
        producer_group: Option<&str>,
        max: i32,
    ) -> Result<(Vec<(String, UnresolvedHalf)>, bool)> {
        let mut out = Vec::new();
        let mut more = false;
        for (broker, addr) in self.masters(cluster).await? {
            let header = UnresolvedHalvesRequestHeader {
                topic: topic.map(str::to_owned),
                producer_group: producer_group.map(str::to_owned),
                max: Some(max),
            };
            let req = RemotingCommand::request(request_code::GET_UNRESOLVED_HALVES, &header);
            let resp = self.core.call_ok(&addr, req).await?;
            let body = UnresolvedHalves::from_json(&resp.body)
                .map_err(|e| ClientError::Protocol { addr: addr.clone(), source: e })?;
            more |= body.more;
            out.extend(body.halves.into_iter().map(|h| (broker.clone(), h)));
        }
        Ok((out, more))
    }

    /// Every parked queue (delay levels, timers) of every master, with what is waiting in it
    /// (GET_ALL_DELAY_OFFSET and GET_TOPIC_STATS_INFO of the parked topics).
    pub async fn parked(&self) -> Result<Vec<ParkedQueue>> {
        use rocketraft_protocol::names::{SCHEDULE_TOPIC, TIMER_TOPIC};
        let mut out = Vec::new();
        for (broker, addr) in self.masters(None).await? {
            let req = RemotingCommand::request_without_header(request_code::GET_ALL_DELAY_OFFSET);
            let resp = self.core.call_ok(&addr, req).await?;
            let moved = DelayOffsets::from_json(&resp.body)
                .map_err(|e| ClientError::Protocol { addr: addr.clone(), source: e })?;
            for (topic, progress, first_queue) in [
                (SCHEDULE_TOPIC, &moved.offset_table, 1),
                (TIMER_TOPIC, &moved.timer_offset_table, 0),
            ] {
                let req = RemotingCommand::request(
                    request_code::GET_TOPIC_STATS_INFO,
                    &TopicRequestHeader { topic: topic.to_owned() },
                );
                let resp =
                    self.core.remoting.call(&addr, req, self.core.config.call_timeout_ms).await?;
                // Not registered yet (a master that never led): nothing parked there.
                if resp.code == response_code::TOPIC_NOT_EXIST {
                    continue;
                }
                let resp = crate::core::expect_success(&addr, resp)?;
                let ends = TopicStatsTable::decode(&resp.body)
                    .map_err(|e| ClientError::Protocol { addr: addr.clone(), source: e })?;
                for (q, end) in ends.offset_table {
                    // Delay levels count from 1, their queues from 0.
                    let moved = progress.get(&(q.queue_id + first_queue)).copied().unwrap_or(0);
                    out.push(ParkedQueue {
                        broker_name: broker.clone(),
                        topic: topic.to_owned(),
                        queue_id: q.queue_id,
                        stored: end.max_offset,
                        moved,
                    });
                }
            }
        }
        Ok(out)
    }

    /// A broker replica's configuration (GET_BROKER_CONFIG), key by key.
    pub async fn broker_config(&self, broker_addr: &str) -> Result<BTreeMap<String, String>> {
        let req = RemotingCommand::request_without_header(request_code::GET_BROKER_CONFIG);
        let resp = self.core.call_ok(broker_addr, req).await?;
        Ok(parse_properties(&String::from_utf8_lossy(&resp.body)))
    }

    /// Who is connected for a consumer group (GET_CONSUMER_CONNECTION_LIST on every master;
    /// the members of a group talk to every group that serves its topics). An error with
    /// CONSUMER_NOT_ONLINE when no master has a member online.
    pub async fn consumer_connections(&self, group: &str) -> Result<ConsumerConnection> {
        let mut all: Option<ConsumerConnection> = None;
        for addr in self.masters(None).await?.into_values() {
            let req = RemotingCommand::request(
                request_code::GET_CONSUMER_CONNECTION_LIST,
                &GetConsumerConnectionListRequestHeader { consumer_group: group.to_owned() },
            );
            let resp = match self.core.call_ok(&addr, req).await {
                Ok(r) => r,
                Err(e) if e.code() == Some(response_code::CONSUMER_NOT_ONLINE) => continue,
                Err(e) => return Err(e),
            };
            let c = ConsumerConnection::from_json(&resp.body)
                .map_err(|e| ClientError::Protocol { addr, source: e })?;
            match &mut all {
                None => all = Some(c),
                Some(a) => {
                    a.connection_set.extend(c.connection_set);
                    for (topic, sub) in c.subscription_table {
                        a.subscription_table.entry(topic).or_insert(sub);
                    }
                }
            }
        }
        all.ok_or_else(|| ClientError::Broker {
            addr: "every master".into(),
            code: response_code::CONSUMER_NOT_ONLINE,
            remark: format!("the consumer group[{group}] not online"),
        })
    }

    /// What a running consumer says of itself: its settings, subscriptions and queues
    /// (GET_CONSUMER_RUNNING_INFO, which a master forwards to the consumer). Asks each master
    /// until one knows the consumer.
    pub async fn consumer_running_info(
        &self,
        group: &str,
        client_id: &str,
    ) -> Result<ConsumerRunningInfo> {
        let mut last = None;
        for addr in self.masters(None).await?.into_values() {
            let req = RemotingCommand::request(
                request_code::GET_CONSUMER_RUNNING_INFO,
                &GetConsumerRunningInfoRequestHeader {
                    consumer_group: group.to_owned(),
                    client_id: client_id.to_owned(),
                    jstack_enable: Some(false),
                },
            );
            match self.core.call_ok(&addr, req).await {
                Ok(resp) => {
                    return ConsumerRunningInfo::decode(&resp.body)
                        .map_err(|e| ClientError::Protocol { addr, source: e })
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::NoRoute {
            topic: format!("%RETRY%{group}"),
            reason: "no broker group has a master".into(),
        }))
    }

    /// Which groups consume `topic` (QUERY_TOPIC_CONSUME_BY_WHO on every master of its route):
    /// the groups online with a subscription to it and those with committed offsets on it.
    pub async fn topic_consumers(&self, topic: &str) -> Result<BTreeSet<String>> {
        let route = self.core.routes.refresh(topic).await?;
        let mut groups = BTreeSet::new();
        for b in &route.data.broker_datas {
            let Some(addr) = b.master_addr().map(str::to_owned) else { continue };
            let req = RemotingCommand::request(
                request_code::QUERY_TOPIC_CONSUME_BY_WHO,
                &TopicRequestHeader { topic: topic.to_owned() },
            );
            let resp = self.core.call_ok(&addr, req).await?;
            let list = GroupList::from_json(&resp.body)
                .map_err(|e| ClientError::Protocol { addr, source: e })?;
            groups.extend(list.group_list);
        }
        Ok(groups)
    }

    /// Moves a group's offsets on every queue of `topic` to the first message stored at or
    /// after `timestamp_ms` (-1: the end of each queue) on every master of its route
    /// (INVOKE_BROKER_TO_RESET_OFFSET); returns each queue's new offset. Running consumers
    /// move there on their next pull.
    pub async fn reset_offset_by_time(
        &self,
        group: &str,
        topic: &str,
        timestamp_ms: i64,
    ) -> Result<ResetOffsetBody> {
        let route = self.core.routes.refresh(topic).await?;
        let mut all = ResetOffsetBody::default();
        for b in &route.data.broker_datas {
            let Some(addr) = b.master_addr().map(str::to_owned) else {
                return Err(ClientError::Broker {
                    addr: b.broker_name.clone(),
                    code: response_code::SYSTEM_ERROR,
                    remark: "the broker group has no master now: its offsets were not reset".into(),
                });
            };
            let req = RemotingCommand::request(
                request_code::INVOKE_BROKER_TO_RESET_OFFSET,
                &ResetOffsetRequestHeader {
                    topic: topic.to_owned(),
                    group: group.to_owned(),
                    queue_id: Some(-1),
                    offset: None,
                    timestamp: timestamp_ms,
                    is_force: Some(true),
                },
            );
            let resp = self.core.call_ok(&addr, req).await?;
            let body = ResetOffsetBody::decode(&resp.body)
                .map_err(|e| ClientError::Protocol { addr, source: e })?;
            all.offset_table.extend(body.offset_table);
        }
        Ok(all)
    }

    /// Asks the leader of a broker group (the replica at `leader_addr`) to hand leadership to
    /// its Raft node `to`, holding writes at most `timeout_ms` meanwhile (RAFT_TRANSFER_LEADER,
    /// RocketRaft's own): answers who leads then and in which term.
    pub async fn transfer_leader(
        &self,
        leader_addr: &str,
        to: u64,
        timeout_ms: u64,
    ) -> Result<(u64, u64)> {
        let header =
            TransferLeaderRequestHeader { to: to as i64, timeout_millis: Some(timeout_ms as i64) };
        let req = RemotingCommand::request(request_code::RAFT_TRANSFER_LEADER, &header);
        let done: TransferLeaderResponseHeader =
            self.long_call(leader_addr, req, timeout_ms).await?;
        Ok((done.leader as u64, done.term as u64))
    }

    /// A call that may take `timeout_ms` at the broker (plus the call timeout), answered
    /// SUCCESS with header `H`.
    async fn long_call<H: rocketraft_protocol::CommandHeader>(
        &self,
        addr: &str,
        req: RemotingCommand,
        timeout_ms: u64,
    ) -> Result<H> {
        let wait = timeout_ms + self.core.config.call_timeout_ms;
        let resp = self.core.remoting.call(addr, req, wait).await?;
        let resp = crate::core::expect_success(addr, resp)?;
        resp.decode_header().map_err(|e| ClientError::Protocol { addr: addr.to_owned(), source: e })
    }

    /// Asks the leader of a broker group (at `leader_addr`) to add its Raft node `node`, which
    /// listens for Raft at `raft_addr`: answered once the node caught up and votes, with the
    /// group's (voters, learners) (RAFT_ADD_REPLICA, RocketRaft's own). Catching up may take
    /// up to `timeout_ms`.
    pub async fn add_replica(
        &self,
        leader_addr: &str,
        node: u64,
        raft_addr: &str,
        timeout_ms: u64,
    ) -> Result<(Vec<u64>, Vec<u64>)> {
        let header = ChangeReplicaRequestHeader {
            node: node as i64,
            addr: Some(raft_addr.to_owned()),
            timeout_millis: Some(timeout_ms as i64),
        };
        self.change_replica(leader_addr, request_code::RAFT_ADD_REPLICA, header, timeout_ms).await
    }

    /// Asks the leader of a broker group (at `leader_addr`) to remove its Raft node `node`
    /// (never the leader itself: transfer its leadership first), answering the group's
    /// (voters, learners) (RAFT_REMOVE_REPLICA, RocketRaft's own).
    pub async fn remove_replica(
        &self,
        leader_addr: &str,
        node: u64,
        timeout_ms: u64,
    ) -> Result<(Vec<u64>, Vec<u64>)> {
        let header = ChangeReplicaRequestHeader {
            node: node as i64,
            addr: None,
            timeout_millis: Some(timeout_ms as i64),
        };
        self.change_replica(leader_addr, request_code::RAFT_REMOVE_REPLICA, header, timeout_ms)
            .await
    }

    async fn change_replica(
        &self,
        leader_addr: &str,
        code: i32,
        header: ChangeReplicaRequestHeader,
        timeout_ms: u64,
    ) -> Result<(Vec<u64>, Vec<u64>)> {
        let req = RemotingCommand::request(code, &header);
        let members: MembersResponseHeader = self.long_call(leader_addr, req, timeout_ms).await?;
        let ids = |s: &str| s.split(',').filter_map(|n| n.parse().ok()).collect();
        Ok((ids(&members.voters), ids(&members.learners)))
    }

    /// A broker replica's runtime table (GET_BROKER_RUNTIME_INFO).
    pub async fn runtime_info(&self, broker_addr: &str) -> Result<BTreeMap<String, String>> {
        let req = RemotingCommand::request_without_header(request_code::GET_BROKER_RUNTIME_INFO);
        let resp = self.core.call_ok(broker_addr, req).await?;
        KvTable::from_json(&resp.body)
            .map(|t| t.table)
            .map_err(|e| ClientError::Protocol { addr: broker_addr.to_owned(), source: e })
    }

    /// Messages of `topic` carrying `key` among their KEYS (up to [`QUERY_MAX`] per group).
    pub async fn query_by_key(&self, topic: &str, key: &str) -> Result<Vec<MessageExt>> {
        self.query(topic, key, false).await
    }

    /// The message whose UNIQ_KEY (the producer's msgId) is `msg_id`, if stored.
    pub async fn query_by_msg_id(&self, topic: &str, msg_id: &str) -> Result<Option<MessageExt>> {
        Ok(self.query(topic, msg_id, true).await?.into_iter().next())
    }

    async fn query(&self, topic: &str, key: &str, uniq: bool) -> Result<Vec<MessageExt>> {
        let route = self.core.routes.refresh(topic).await?;
        let mut found = Vec::new();
        for b in &route.data.broker_datas {
            let Some(addr) = read_addr(&route, &b.broker_name) else { continue };
            let mut req = RemotingCommand::request(
                request_code::QUERY_MESSAGE,
                &QueryMessageRequestHeader {
                    topic: topic.to_owned(),
                    key: key.to_owned(),
                    max_num: QUERY_MAX,
                    begin_timestamp: 0,
                    end_timestamp: i64::MAX,
                },
            );
            if uniq {
                req.set_ext_field(UNIQUE_KEY_QUERY, "true");
            }
            let resp =
                self.core.remoting.call(&addr, req, self.core.config.call_timeout_ms).await?;
            if resp.code == response_code::QUERY_NOT_FOUND {
                continue;
            }
            let resp = crate::core::expect_success(&addr, resp)?;
            let records = decode_records(&resp.body)
                .map_err(|e| ClientError::Protocol { addr: addr.clone(), source: e })?;
            found.extend(records.iter().map(|r| MessageExt::from_record(r, &b.broker_name)));
        }
        Ok(found)
    }

    /// The message with the broker id `offset_msg_id` (VIEW_MESSAGE_BY_ID at the replica the
    /// id names).
    pub async fn view_by_offset_id(&self, offset_msg_id: &str) -> Result<MessageExt> {
        let (host, offset) = decode_offset_msg_id(offset_msg_id)
            .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        let addr = host.to_string();
        let req = RemotingCommand::request(
            request_code::VIEW_MESSAGE_BY_ID,
            &ViewMessageRequestHeader { offset },
        );
        let resp = self.core.call_ok(&addr, req).await?;
        let records = decode_records(&resp.body)
            .map_err(|e| ClientError::Protocol { addr: addr.clone(), source: e })?;
        let r = records.first().ok_or_else(|| ClientError::Broker {
            addr: addr.clone(),
            code: response_code::SUCCESS,
            remark: "the answer holds no message".into(),
        })?;
        let broker = self
            .core
            .routes
            .brokers()
            .into_iter()
            .find(|(_, replicas)| replicas.values().any(|a| a == &addr))
            .map(|(n, _)| n)
            .unwrap_or_default();
        Ok(MessageExt::from_record(r, &broker))
    }

    pub async fn shutdown(self) {
        self.core.shutdown(None, None).await;
    }
}
