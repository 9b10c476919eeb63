//! Registration with the NameServers, driven by the Raft role (DESIGN.md §5).
//!
//! - A replica registers with every NameServer every `register_interval_ms` (30 s), and at once
//!   when its Raft role changes.
//! - It registers as master (brokerId 0, with the group's topics) only after a linearizable
//!   read confirms it still leads and it has applied everything up to that read
//!   (`Replica::confirmed_master`: without check-quorum, a partitioned or just-restarted
//!   ex-leader reports Leader for a while). Otherwise it registers as a slave
//!   with brokerId = node id + 1 (DLedger's numbering; node 0 would otherwise be id 0).
//! - On shutdown it unregisters from every NameServer.
//!
//! Each NameServer gets its own connection (the shared `remoting` client), reconnected on
//! failure; a NameServer that does not answer delays a round by at most `call_timeout_ms`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rocketraft_protocol::body::{
    DataVersion, JsonBody, JsonStyle, RegisterBrokerBody, TopicConfig, TopicConfigSerializeWrapper,
};
use rocketraft_protocol::headers::{RegisterBrokerRequestHeader, UnregisterBrokerRequestHeader};
use rocketraft_protocol::{request_code, response_code, RemotingCommand};
use rocketraft_raft::types::TopicMeta;
use rocketraft_raft::{MetaCommand, MetaStore, Replica};
use rocketraft_remoting::{Remoting, RemotingConfig};
use rocketraft_store::io::Storage;

/// Registration settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterConfig {
    pub cluster_name: String,
    pub broker_name: String,
    /// The address clients reach this replica at.
    pub broker_addr: SocketAddr,
    /// Every NameServer (host:port).
    pub namesrv_addrs: Vec<String>,
    /// Default 30,000 ms (RocketMQ's `registerNameServerPeriod`).
    pub register_interval_ms: u64,
    /// Bound on one call to a NameServer. Default 3,000 ms.
    pub call_timeout_ms: u64,
    /// As master, make sure the auto-creation template topic TBW102 exists (and so is routed).
    /// The cluster's reply topic is kept whatever this says.
    pub auto_create_topic: bool,
    /// Registrations are signed with these (NameServers with ACL on refuse unsigned ones).
    pub credentials: Option<rocketraft_protocol::acl::Credentials>,
    /// Registrations go over TLS, trusting this CA.
    pub tls: Option<rocketraft_remoting::tls::ClientTls>,
}

/// The broker id a replica registers with.
pub fn broker_id(is_master: bool, node_id: u64) -> i64 {
    if is_master {
        0
    } else {
        node_id as i64 + 1
    }
}

/// How soon a leader that could not confirm its leadership registers again.
const UNCONFIRMED_RETRY_MS: u64 = 500;

/// How often a replica that is not a voter of its group (yet) looks whether it is one now.
const NOT_VOTER_RETRY_MS: u64 = 1_000;
/// How often a replica that has not heard from a leader since it started looks again (the
/// first registration follows the first leader's call within this).
const NOT_HEARD_RETRY_MS: u64 = 100;

/// How soon a replica whose registration a NameServer refused tries again (a fixed ACL file,
/// or a successor's registration the NameServer has not seen yet).
const REFUSED_RETRY_MS: u64 = 5_000;

/// Runs registration until `stop` changes or Raft stops, then unregisters. `now` asks for a
/// round at once.
pub async fn run<S: Storage + Clone, M: MetaStore>(
    config: RegisterConfig,
    replica: Replica<S, M>,
    now: std::sync::Arc<tokio::sync::Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let node_id = replica.id();
    let timeout = Duration::from_millis(config.call_timeout_ms);
    // One connection per NameServer, reconnected on the next call after it broke.
    let remoting = Remoting::new(
        RemotingConfig {
            connect_timeout_ms: config.call_timeout_ms,
            credentials: config.credentials.clone(),
            tls: config.tls.clone(),
            ..Default::default()
        },
        None,
    );
    let call = |addr: &String, cmd: RemotingCommand| {
        let remoting = remoting.clone();
        let addr = addr.clone();
        async move { remoting.call(&addr, cmd, config.call_timeout_ms).await }
    };
    let mut leader = replica.leader_watch();
    let mut last_role: Option<(bool, u64)> = None;
    // The broker id this replica is registered under now, if it is.
    let mut registered: Option<i64> = None;
    let mut counter = 0i64;
    let unregister = |id: i64| {
        let unregister = RemotingCommand::request(
            request_code::UNREGISTER_BROKER,
            &UnregisterBrokerRequestHeader {
                broker_name: config.broker_name.clone(),
                broker_addr: config.broker_addr.to_string(),
                cluster_name: config.cluster_name.clone(),
                broker_id: id,
            },
        );
        let calls: Vec<_> =
            config.namesrv_addrs.iter().map(|addr| call(addr, unregister.clone())).collect();
        async move {
            for c in calls {
                let _ = c.await;
            }
        }
    };
    let mut heard = false;
    loop {
        // A replica that is not a voter of its group (one being added, still a learner, or one
        // just removed) is not routed: clients would read a log that is not the group's. Nor
        // is one that has not heard from a leader since it started: removed while it was down,
        // it would still find itself a voter (see `Replica::heard_from_leader`).
        if !heard {
            heard = replica.heard_from_leader()
                || (leader.peek() == Some(node_id) && replica.confirmed_master(timeout).await);
        }
        if !replica.is_voter() || !heard {
            if let Some(id) = registered.take() {
                tracing::info!(group = %config.broker_name, node = node_id, "not a voter of the group: unregistering");
                unregister(id).await;
                last_role = None;
            }
            let wait = if heard { NOT_VOTER_RETRY_MS } else { NOT_HEARD_RETRY_MS };
            tokio::time::sleep(Duration::from_millis(wait)).await;
            if *stop.borrow() {
                remoting.shutdown();
                return;
            }
            continue;
        }
        // The leader this round decides on: a change during the round triggers another.
        let before = leader.current();
        // The term it leads in: read on both sides of the confirmation, and a change between
        // them (it voted for a successor meanwhile) means it is not master in the term read.
        let term = replica.term();
        let master = replica.confirmed_master(timeout).await && replica.term() == term;
        let id = broker_id(master, node_id);
        if master {
            ensure_system_topics(&replica, &config).await;
        }
        let mut topics: BTreeMap<String, TopicConfig> = BTreeMap::new();
        if master {
            for t in replica.metadata().topics().unwrap_or_default() {
                topics.insert(t.name.clone(), topic_config(t));
            }
        }
        counter += 1;
        let body = RegisterBrokerBody {
            filter_server_list: vec![],
            topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
                data_version: DataVersion { counter, timestamp: counter, ..Default::default() },
                topic_config_table: topics,
                ..Default::default()
            },
        }
        .to_json(JsonStyle::Standard);
        let header = RegisterBrokerRequestHeader {
            broker_name: config.broker_name.clone(),
            broker_addr: config.broker_addr.to_string(),
            cluster_name: config.cluster_name.clone(),
            ha_server_addr: config.broker_addr.to_string(),
            broker_id: id,
            compressed: Some(false),
            body_crc32: Some(RegisterBrokerBody::crc32(&body)),
            raft_term: i64::try_from(term).ok(),
            raft_leader: master.then(|| i64::try_from(node_id).ok()).flatten(),
        };
        let cmd = RemotingCommand::request(request_code::REGISTER_BROKER, &header).with_body(body);
        let mut refused = false;
        for addr in &config.namesrv_addrs {
            match call(addr, cmd.clone()).await {
                Ok(r) if r.code == response_code::SUCCESS => {}
                // ACL (wrong [acl] keys) or a live master claiming a newer term: said once a
                // round, and tried again soon rather than a whole period later.
                Ok(r) => {
                    refused = true;
                    let why = r.remark.unwrap_or_default();
                    tracing::warn!(namesrv = %addr, code = r.code, "registration refused: {why}");
                }
                Err(e) => {
                    tracing::warn!(namesrv = %addr, error = %e, "registration failed; retrying on the next round")
                }
            }
        }
        registered = Some(id);
        if last_role != Some((master, term)) {
            let role = if master { "master" } else { "slave" };
            tracing::info!(group = %config.broker_name, node = node_id, broker_id = id, term, "registered with the NameServers as {role}");
            last_role = Some((master, term));
        }
        // Next round: the interval, at once when the Raft role or leader changes, or when asked
        // (a topic was created: RocketMQ brokers re-register right after).
        // A leader that could not confirm its leadership yet (a fresh election) tries again
        // soon rather than a whole period later, so it is not a slave in the routes for 30 s.
        let wait_ms = if before == Some(node_id) && !master {
            UNCONFIRMED_RETRY_MS.min(config.register_interval_ms)
        } else if refused {
            REFUSED_RETRY_MS.min(config.register_interval_ms)
        } else {
            config.register_interval_ms
        };
        let deadline = tokio::time::sleep(Duration::from_millis(wait_ms));
        tokio::pin!(deadline);
        let leave = loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break true,
                _ = &mut deadline => break false,
                _ = now.notified() => break false,
                changed = leader.changed() => {
                    // A closed channel: Raft stopped (a fatal error). Registering again would
                    // spin here; this replica serves nothing more, so it leaves.
                    if changed.is_err() {
                        break true;
                    }
                    if leader.peek() != before {
                        break false;
                    }
                }
            }
        };
        if leave {
            unregister(id).await;
            remoting.shutdown();
            return;
        }
    }
}

/// The topics a master keeps so that they are routed: the cluster's reply topic (one queue,
/// as RocketMQ's brokers create it at start) and, with auto-creation on, the template topic
/// TBW102 (8 queues, readable, writable, inheritable). Missing ones are created through Raft in
/// one entry; a failure is logged and retried on the next round.
async fn ensure_system_topics<S: Storage + Clone, M: MetaStore>(
    replica: &Replica<S, M>,
    config: &RegisterConfig,
) {
    let mut wanted: Vec<TopicMeta> =
        crate::processor::reply::reply_topic_meta(&config.cluster_name).into_iter().collect();
    if config.auto_create_topic {
        wanted.push(crate::processor::send::template_topic());
    }
    let missing: Vec<MetaCommand> = wanted
        .into_iter()
        .filter(|t| matches!(replica.metadata().topic(&t.name), Ok(None)))
        .map(MetaCommand::PutTopic)
        .collect();
    if missing.is_empty() {
        return;
    }
    if let Err(e) = replica.propose_metadata(missing).await {
        tracing::warn!(error = %e, "could not create the system topics; retrying");
    }
}

/// A replicated topic as RocketMQ's `TopicConfig`, for registrations and GET_ALL_TOPIC_CONFIG.
pub(crate) fn topic_config(t: TopicMeta) -> TopicConfig {
    let mut tc = TopicConfig::new(t.name, t.write_queue_nums);
    tc.read_queue_nums = t.read_queue_nums;
    tc.perm = t.perm;
    tc.order = t.order;
    tc.topic_sys_flag = t.topic_sys_flag;
    tc.topic_filter_type = t.filter_type;
    tc
}

#[cfg(test)]
mod tests {
    #[test]
    fn slaves_never_take_the_master_id() {
        assert_eq!(super::broker_id(true, 2), 0);
        assert_eq!(super::broker_id(false, 0), 1);
        assert_eq!(super::broker_id(false, 2), 3);
    }
}
