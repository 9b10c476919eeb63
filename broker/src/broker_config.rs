//! The broker's settings (what `config.rs` reads from a TOML file becomes one of these).

use std::net::SocketAddr;

use rocketraft_protocol::acl::Credentials;
use rocketraft_protocol::schedule::{DelayLevels, TIMER_MAX_DELAY_SEC_DEFAULT};
use rocketraft_raft::ReplicaConfig;
use rocketraft_raft::Replication;

/// The default broker port.
pub const BROKER_PORT_DEFAULT: u16 = 10911;
/// Where a replica serves its Prometheus metrics by default (`metrics_listen` in its config file).
pub const METRICS_PORT_DEFAULT: u16 = 5557;

/// Broker settings. Defaults follow RocketMQ's.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub cluster_name: String,
    /// The broker group's name (all replicas share it).
    pub broker_name: String,
    /// Where to listen. Default `0.0.0.0:10911`.
    pub listen: String,
    /// The address clients reach this replica at: the store host of records and msgIds.
    pub advertised_addr: SocketAddr,
    /// `MSG_REGION` in send responses. Default "DefaultRegion".
    pub region_id: String,
    /// `TRACE_ON` in send responses. Default true.
    pub trace_on: bool,
    /// The largest message body accepted. Default 4 MiB.
    pub message_max_bytes: usize,
    /// The most messages one pull returns. Default 32.
    pub pull_batch_max: i32,
    /// The most bytes of records one pull returns (at least one record, whatever its size).
    /// Default 256 KiB (RocketMQ's `maxTransferBytesOnMessageInMemory`): 32 records of 4 MiB
    /// would not fit a 16 MiB frame.
    pub pull_bytes_max: usize,
    /// The most queues (summed over every topic, retry topics included) the group holds; a
    /// topic creation past it is refused. Each queue maps a file on every replica, and a
    /// process may map at most `vm.max_map_count` (65,530 by default). Default 8,192.
    pub queues_max: usize,
    /// The most subscription groups the group holds; creating one past it is refused, and a
    /// heartbeat creates none then. Default 10,000.
    pub groups_max: usize,
    /// The most client registrations held at once (a consumer or producer in one group, from
    /// heartbeats); a heartbeat that would add one past it is refused. Default 100,000.
    pub clients_max: usize,
    /// The longest a pull is held (longer client values are cut). Default 30,000 ms.
    pub suspend_max_ms: u64,
    /// Connections beyond this are closed at once. Default 4,096.
    pub connections_max: usize,
    /// Connections from one IP address beyond this are closed at once. Default 1,024.
    pub connections_per_ip_max: usize,
    /// Requests running at once on one connection. Default 4,096 (a consumer holds one pull per
    /// queue it owns, and a producer keeps up to 1,024 async sends in flight).
    pub requests_in_flight_max: usize,
    /// The NameServers to register with (host:port). Default none.
    pub namesrv_addrs: Vec<String>,
    /// How often to register. Default 30,000 ms.
    pub register_interval_ms: u64,
    /// RocketMQ's `autoCreateTopicEnable`: the leader keeps the template topic TBW102 (8 queues)
    /// registered, and a send to an unknown topic that names TBW102 as its default topic
    /// creates it through Raft. Default true, as in RocketMQ; production clusters usually turn
    /// it off so that a typo cannot create a topic.
    pub auto_create_topic: bool,
    /// Send proposals in flight at once on the leader (`ProposerConfig::in_flight_max`).
    /// Default 1.
    pub proposals_in_flight_max: usize,
    /// When a send is acknowledged: once a majority has it (`Quorum`, the default) or once the
    /// leader's own log has it (`Leader`, RocketMQ's asynchronous replication; see
    /// [`rocketraft_raft::Replication`] for what a failover can lose).
    pub replication: Replication,
    /// RocketMQ's `messageDelayLevel`: the delay of each level a `DELAY` property names.
    /// Default "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h". Every replica of
    /// a group should have the same levels (a parked message's due time is fixed when it is
    /// stored, by the leader of the time).
    pub delay_levels: DelayLevels,
    /// RocketMQ's `timerMaxDelaySec`: the longest delay a 5.x timer message may ask for.
    /// Default 259,200 s (3 days).
    pub timer_max_delay_sec: u64,
    /// RocketMQ's `rejectTransactionMessage`: refuse transactional sends. Default false.
    pub reject_transaction_message: bool,
    /// RocketMQ's `enablePropertyFilter`: consumers may subscribe with SQL92 selectors over
    /// message properties. Default false, as RocketMQ (SQL92 subscriptions are refused with
    /// its remark); `rocketraft dev` turns it on.
    pub enable_property_filter: bool,
    /// RocketMQ's `transactionTimeOut`: a half message younger than this is not checked back
    /// (its `CHECK_IMMUNITY_TIME_IN_SECONDS` property overrides it). Default 6,000 ms.
    pub transaction_timeout_ms: u64,
    /// RocketMQ's `transactionCheckInterval`: how often the master checks back unresolved
    /// half messages. Default 30,000 ms (5.x; 4.9 used 60,000).
    pub transaction_check_interval_ms: u64,
    /// RocketMQ's `transactionCheckMax`: checks without an answer before a half message is
    /// discarded to `TRANS_CHECK_MAX_TIME_TOPIC`. Default 15.
    pub transaction_check_max: u32,
    /// RocketMQ's `storeReplyMessageEnable`: a reply to a request message is also stored in the
    /// cluster's reply topic (through Raft, after it was pushed to the requester), so it can be
    /// read back. Default true, as RocketMQ.
    pub store_reply_message: bool,
    /// An ACL file: when set, every request is checked against its accounts (RocketMQ's
    /// `aclEnable`; see `rocketraft_remoting::acl`). Default none.
    pub acl_file: Option<std::path::PathBuf>,
    /// What this replica signs its NameServer registrations with. Default none.
    pub credentials: Option<Credentials>,
    /// TLS on the client port, in its mode. Default none (plain).
    pub tls: Option<rocketraft_remoting::tls::ServerTls>,
    /// Registrations go to the NameServers over TLS, trusting this. Default none (plain).
    pub namesrv_tls: Option<rocketraft_remoting::tls::ClientTls>,
    /// Simulation builds only: acknowledge sends before they commit. A known bug, reintroduced
    /// on purpose so the simulation can show its checkers catch it; no real build has it.
    #[cfg(madsim)]
    pub sim_bug_ack_before_commit: bool,
    /// Simulation builds only: a new master moves parked messages from each queue's start,
    /// not from the replicated progress (moves repeated after a failover).
    #[cfg(madsim)]
    pub sim_bug_schedule_from_zero: bool,
    /// Simulation builds only: the schedule service moves messages 10 s before they are due.
    #[cfg(madsim)]
    pub sim_bug_deliver_early: bool,
    /// Simulation builds only: END_TRANSACTION does not look at the half's mark, so a second
    /// commit of one half (a check-back answer racing the producer's own) stores it twice.
    #[cfg(madsim)]
    pub sim_bug_tx_end_unchecked: bool,
    /// Simulation builds only: a check-back answer commits whatever it says.
    #[cfg(madsim)]
    pub sim_bug_tx_check_answer_commits: bool,
    /// Simulation builds only: a new master checks back only the halves stored after it
    /// became master (its scan starts where the half queue ended then, not from the
    /// replicated progress), so halves left unresolved by a failover are never checked.
    #[cfg(madsim)]
    pub sim_bug_tx_scan_from_term_start: bool,
    /// Simulation builds only: older consumer offset commits are applied after newer ones
    /// (see `OffsetBatchConfig::sim_bug_out_of_order`).
    #[cfg(madsim)]
    pub sim_bug_offsets_out_of_order: bool,
    /// Simulation builds only: a pull that finds messages answers a next offset one past the
    /// right one, so its consumer skips a message each pull.
    #[cfg(madsim)]
    pub sim_bug_pull_skips_one: bool,
    /// Simulation builds only: a pull returns as many messages as the client asks for,
    /// `pull_batch_max` ignored (the byte budget still holds).
    #[cfg(madsim)]
    pub sim_bug_pull_batch_unbounded: bool,
    /// Simulation builds only: the replica is given 1,024 proposals in flight, whatever
    /// `proposals_in_flight_max` says.
    #[cfg(madsim)]
    pub sim_bug_proposals_unbounded: bool,
}

impl BrokerConfig {
    /// The settings as GET_BROKER_CONFIG answers them (`key=value` lines, sorted): under
    /// RocketMQ's names where RocketMQ has the setting (`brokerName`, `namesrvAddr`,
    /// `maxMessageSize`, `messageDelayLevel`...), under ours otherwise. Simulation-only knobs
    /// are left out.
    pub fn properties(&self) -> std::collections::BTreeMap<String, String> {
        let replication = match self.replication {
            Replication::Quorum => "quorum",
            Replication::Leader => "leader",
        };
        [
            ("brokerClusterName", self.cluster_name.clone()),
            ("brokerName", self.broker_name.clone()),
            ("listen", self.listen.clone()),
            ("brokerIP1", self.advertised_addr.ip().to_string()),
            ("listenPort", self.advertised_addr.port().to_string()),
            ("regionId", self.region_id.clone()),
            ("traceOn", self.trace_on.to_string()),
            ("maxMessageSize", self.message_max_bytes.to_string()),
            ("pullBatchMax", self.pull_batch_max.to_string()),
            ("pullBytesMax", self.pull_bytes_max.to_string()),
            ("queuesMax", self.queues_max.to_string()),
            ("groupsMax", self.groups_max.to_string()),
            ("clientsMax", self.clients_max.to_string()),
            ("longPollingSuspendMaxMs", self.suspend_max_ms.to_string()),
            ("connectionsMax", self.connections_max.to_string()),
            ("connectionsPerIpMax", self.connections_per_ip_max.to_string()),
            ("requestsInFlightMax", self.requests_in_flight_max.to_string()),
            ("namesrvAddr", self.namesrv_addrs.join(";")),
            ("registerNameServerPeriod", self.register_interval_ms.to_string()),
            ("autoCreateTopicEnable", self.auto_create_topic.to_string()),
            ("proposalsInFlightMax", self.proposals_in_flight_max.to_string()),
            ("replication", replication.to_owned()),
            ("messageDelayLevel", self.delay_levels.to_string()),
            ("timerMaxDelaySec", self.timer_max_delay_sec.to_string()),
            ("rejectTransactionMessage", self.reject_transaction_message.to_string()),
            ("enablePropertyFilter", self.enable_property_filter.to_string()),
            ("transactionTimeOut", self.transaction_timeout_ms.to_string()),
            ("transactionCheckInterval", self.transaction_check_interval_ms.to_string()),
            ("transactionCheckMax", self.transaction_check_max.to_string()),
            ("storeReplyMessageEnable", self.store_reply_message.to_string()),
            ("aclEnable", self.acl_file.is_some().to_string()),
            (
                "tlsServerMode",
                self.tls
                    .as_ref()
                    .map_or("disabled".into(), |t| format!("{:?}", t.mode()).to_lowercase()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    pub fn new(broker_name: impl Into<String>, advertised_addr: SocketAddr) -> Self {
        BrokerConfig {
            cluster_name: "DefaultCluster".into(),
            broker_name: broker_name.into(),
            listen: format!("0.0.0.0:{BROKER_PORT_DEFAULT}"),
            advertised_addr,
            region_id: "DefaultRegion".into(),
            trace_on: true,
            message_max_bytes: rocketraft_protocol::message::MESSAGE_MAX_BYTES_DEFAULT,
            pull_batch_max: 32,
            pull_bytes_max: 256 * 1024,
            queues_max: 8_192,
            groups_max: 10_000,
            clients_max: 100_000,
            suspend_max_ms: 30_000,
            connections_max: 4096,
            connections_per_ip_max: rocketraft_remoting::server::CONNECTIONS_PER_IP_MAX_DEFAULT,
            requests_in_flight_max: 4096,
            namesrv_addrs: Vec::new(),
            register_interval_ms: 30_000,
            auto_create_topic: true,
            proposals_in_flight_max: ReplicaConfig::default().proposals_in_flight_max,
            replication: Replication::Quorum,
            delay_levels: DelayLevels::default(),
            timer_max_delay_sec: TIMER_MAX_DELAY_SEC_DEFAULT,
            reject_transaction_message: false,
            enable_property_filter: false,
            transaction_timeout_ms: 6_000,
            transaction_check_interval_ms: 30_000,
            transaction_check_max: 15,
            store_reply_message: true,
            acl_file: None,
            credentials: None,
            tls: None,
            namesrv_tls: None,
            #[cfg(madsim)]
            sim_bug_ack_before_commit: false,
            #[cfg(madsim)]
            sim_bug_schedule_from_zero: false,
            #[cfg(madsim)]
            sim_bug_deliver_early: false,
            #[cfg(madsim)]
            sim_bug_tx_end_unchecked: false,
            #[cfg(madsim)]
            sim_bug_tx_check_answer_commits: false,
            #[cfg(madsim)]
            sim_bug_tx_scan_from_term_start: false,
            #[cfg(madsim)]
            sim_bug_offsets_out_of_order: false,
            #[cfg(madsim)]
            sim_bug_pull_skips_one: false,
            #[cfg(madsim)]
            sim_bug_pull_batch_unbounded: false,
            #[cfg(madsim)]
            sim_bug_proposals_unbounded: false,
        }
    }
}
