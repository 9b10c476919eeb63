//! The broker's TOML config file: one replica of one broker group. Every key is optional except
//! `advertised_addr` and `[raft] peers`; `broker.example.toml` at the repository root lists them
//! all with their defaults. Unknown keys are errors, so a misspelt option is never ignored.
//!
//! There is no UPDATE_BROKER_CONFIG: configuration changes only by editing this file and
//! restarting the replica, so nobody on the network can change it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use rocketraft_protocol::acl::Credentials;
use rocketraft_protocol::schedule::DelayLevels;
use rocketraft_raft::{NodeConfig, RaftTiming};
use rocketraft_store::{
    CommitLogConfig, ConsumeQueueConfig, DispatchConfig, FlushMode, IndexConfig, RetentionConfig,
};
use serde::Deserialize;

use crate::broker_config::BrokerConfig;

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid broker config: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid broker config: {0}")]
    Invalid(String),
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerFile {
    /// RocketMQ's `brokerClusterName`. Default "DefaultCluster".
    #[serde(default = "defaults::cluster_name")]
    pub cluster_name: String,
    /// The broker group (RocketMQ's `brokerName`), the same on all its replicas. Default
    /// "broker-a".
    #[serde(default = "defaults::broker_name")]
    pub broker_name: String,
    /// Where clients connect. Default "0.0.0.0:10911".
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// Where Prometheus metrics are served (`http://ADDR/metrics`; port 0 picks a free one).
    /// Default "0.0.0.0:5557": replicas sharing a machine need one each.
    #[serde(default = "defaults::metrics_listen")]
    pub metrics_listen: String,
    /// The address clients reach this replica at, registered with the NameServers. Required.
    pub advertised_addr: SocketAddr,
    /// NameServers to register with (host:port). Default none.
    #[serde(default)]
    pub namesrv_addrs: Vec<String>,
    /// Where the CommitLog, ConsumeQueues, IndexFiles and metadata live. Default "store".
    #[serde(default = "defaults::store_dir")]
    pub store_dir: PathBuf,
    #[serde(default)]
    pub server: ServerSection,
    pub raft: RaftSection,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub acl: AclSection,
    #[serde(default)]
    pub tls: TlsSection,
}

/// `[tls]`: TLS on this replica's ports. Off unless `cert_file` is set; then the Raft port is
/// mutual TLS (peers must present a certificate `ca_file` signed) and the client port speaks
/// TLS in `client_mode`. Relative paths: as for `[acl] file`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// This replica's certificate chain (PEM), naming its advertised and Raft addresses, and
    /// good for both server and client authentication (it is presented to peers too).
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    pub key_file: Option<PathBuf>,
    /// The cluster's CA (PEM): what Raft peers' certificates must be signed by.
    pub ca_file: Option<PathBuf>,
    /// The client port: "disabled", "permissive" (TLS and plain clients; RocketMQ's default)
    /// or "enforcing" (TLS only). Default "permissive".
    pub client_mode: rocketraft_remoting::tls::TlsMode,
    /// Register with the NameServers over TLS (they must speak it), trusting `ca_file`.
    /// Default false.
    pub namesrv: bool,
}

/// `[acl]`: RocketMQ's ACL. Off unless `file` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AclSection {
    /// The accounts file (RocketMQ's `plain_acl.yml` in TOML; README "Access control"). When
    /// set, every request is checked (RocketMQ's `aclEnable`); the file is reloaded when it
    /// changes. `rocketraft broker` takes a relative path from the config file's directory.
    /// Default none.
    pub file: Option<PathBuf>,
    /// The account this replica signs its registrations with: an admin account of the
    /// NameServers' ACL file. Set both keys or neither. Default none (unsigned).
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
}

/// `[server]`: the remoting server and registration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// `MSG_REGION` in send responses. Default "DefaultRegion".
    pub region_id: String,
    /// `TRACE_ON` in send responses. Default true.
    pub trace_on: bool,
    /// The largest message body accepted. Default 4 MiB.
    pub message_max_bytes: usize,
    /// The most messages one pull returns. Default 32.
    pub pull_batch_max: i32,
    /// The most bytes of records one pull returns (at least one record). Default 262,144.
    pub pull_bytes_max: usize,
    /// The most queues the group holds, summed over its topics. Default 8,192.
    pub queues_max: usize,
    /// The most subscription groups the group holds. Default 10,000.
    pub groups_max: usize,
    /// The most client registrations (a consumer or producer in one group) held at once.
    /// Default 100,000.
    pub clients_max: usize,
    /// The longest a pull is held. Default 30,000 ms.
    pub suspend_max_ms: u64,
    /// Connections beyond this are closed at once. Default 4,096.
    pub connections_max: usize,
    /// Connections from one IP address beyond this are closed at once. Default 1,024.
    pub connections_per_ip_max: usize,
    /// Requests running at once on one connection, then SYSTEM_BUSY. Default 4,096.
    pub requests_in_flight_max: usize,
    /// How often to register with every NameServer. Default 30,000 ms.
    pub register_interval_ms: u64,
    /// RocketMQ's `autoCreateTopicEnable`: a send to an unknown topic creates it from the
    /// template topic TBW102. Default true; turn it off in production.
    pub auto_create_topic: bool,
    /// RocketMQ's `messageDelayLevel`: the delay of each `DELAY` level, e.g. "1s 5s 10s".
    /// Default "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h".
    pub message_delay_level: String,
    /// RocketMQ's `timerMaxDelaySec`: the longest delay of a timer message. Default 259,200.
    pub timer_max_delay_sec: u64,
    /// RocketMQ's `rejectTransactionMessage`. Default false.
    pub reject_transaction_message: bool,
    /// RocketMQ's `enablePropertyFilter`: allow SQL92 subscriptions. Default false.
    pub enable_property_filter: bool,
    /// RocketMQ's `transactionTimeOut`: half messages younger are not checked back. Default
    /// 6,000 ms.
    pub transaction_timeout_ms: u64,
    /// RocketMQ's `transactionCheckInterval`. Default 30,000 ms.
    pub transaction_check_interval_ms: u64,
    /// RocketMQ's `transactionCheckMax`: unanswered checks before a half is discarded.
    /// Default 15.
    pub transaction_check_max: u32,
    /// RocketMQ's `storeReplyMessageEnable`: replies are stored in the reply topic as well as
    /// pushed to the requester. Default true.
    pub store_reply_message: bool,
}

impl Default for ServerSection {
    fn default() -> Self {
        let b = BrokerConfig::new(defaults::broker_name(), ([127, 0, 0, 1], 0).into());
        ServerSection {
            region_id: b.region_id,
            trace_on: b.trace_on,
            message_max_bytes: b.message_max_bytes,
            pull_batch_max: b.pull_batch_max,
            pull_bytes_max: b.pull_bytes_max,
            queues_max: b.queues_max,
            groups_max: b.groups_max,
            clients_max: b.clients_max,
            suspend_max_ms: b.suspend_max_ms,
            connections_max: b.connections_max,
            connections_per_ip_max: b.connections_per_ip_max,
            requests_in_flight_max: b.requests_in_flight_max,
            register_interval_ms: b.register_interval_ms,
            auto_create_topic: b.auto_create_topic,
            message_delay_level: b.delay_levels.to_string(),
            timer_max_delay_sec: b.timer_max_delay_sec,
            reject_transaction_message: b.reject_transaction_message,
            enable_property_filter: b.enable_property_filter,
            transaction_timeout_ms: b.transaction_timeout_ms,
            transaction_check_interval_ms: b.transaction_check_interval_ms,
            transaction_check_max: b.transaction_check_max,
            store_reply_message: b.store_reply_message,
        }
    }
}

/// `[raft]`: this replica and its group.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftSection {
    /// This replica's id: a key of `peers`, or (a replica added to a running group) any id
    /// the group does not use, with `addr`. Required.
    pub node_id: u64,
    /// The group's first replicas: id -> Raft address (host:port). A fresh group's lowest id
    /// bootstraps the group with them; once it runs, its membership in Raft is the truth
    /// (`rocketraft cluster add-replica` / `remove-replica` change it; this list need not
    /// follow). Required; TOML keys are strings, so write
    /// `peers = { "0" = "10.0.0.1:20911", ... }`.
    pub peers: BTreeMap<String, String>,
    /// The Raft address this replica listens on. Default: its entry in `peers`; required for
    /// a replica that is not in `peers` (one added to a running group).
    #[serde(default)]
    pub addr: Option<String>,
    /// Leader heartbeats. Default 250 ms.
    #[serde(default = "defaults::heartbeat")]
    pub heartbeat_interval_ms: u64,
    /// A follower that hears no leader for a random time in [min, max) stands for election.
    /// Defaults 1,000 and 2,000 ms.
    #[serde(default = "defaults::election_min")]
    pub election_timeout_min_ms: u64,
    #[serde(default = "defaults::election_max")]
    pub election_timeout_max_ms: u64,
    /// Snapshot the metadata after this many entries. Default 10,000.
    #[serde(default = "defaults::snapshot_every")]
    pub snapshot_every_entries: u64,
    /// Send proposals the leader keeps in flight at once (1 is stop-and-wait). Default 1.
    #[serde(default = "defaults::proposals_in_flight")]
    pub proposals_in_flight_max: usize,
    /// When a send is acknowledged: "quorum" (a majority has it; the default) or "leader" (the
    /// leader's own log has it: RocketMQ's asynchronous replication, where a failover can lose
    /// acknowledged messages and give their queue offsets again; ARCHITECTURE.md).
    #[serde(default)]
    pub replication: rocketraft_raft::Replication,
}

/// `[store]`: files, flushing and retention.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// "sync" (durable before acknowledged) or "async" (synced every `flush_interval_ms`).
    /// Default "sync".
    pub flush: String,
    /// Async flush interval. Default 500 ms.
    pub flush_interval_ms: u64,
    /// CommitLog segment size. Default 1 GiB.
    pub segment_size_bytes: u64,
    /// CommitLog checkpoint interval in entries. Default 10,000.
    pub checkpoint_every_entries: u64,
    /// ConsumeQueue entries per file. Default 300,000.
    pub consume_queue_entries_per_file: u64,
    /// IndexFile hash slots. Default 5,000,000.
    pub index_slot_count: u32,
    /// IndexFile entries. Default 20,000,000.
    pub index_max: u32,
    /// Keep segments this long after their last write. Default 72 hours.
    pub file_reserved_hours: u64,
    /// Delete the oldest segments early at this used-disk fraction. Default 0.75.
    pub disk_clean_ratio: f64,
    /// Refuse appends at this used-disk fraction. Default 0.90.
    pub disk_max_used_ratio: f64,
    /// How often retention runs. Default 10,000 ms.
    pub retention_check_ms: u64,
    /// Reckon the disk as this many bytes, the store directory's files counting as used (the
    /// ratios above apply to it): for a broker sharing a volume. Default 0: the volume's size.
    pub capacity_bytes: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        let log = CommitLogConfig::default();
        let retention = RetentionConfig::default();
        let index = IndexConfig::default();
        StoreSection {
            flush: "sync".into(),
            flush_interval_ms: FlushMode::ASYNC_INTERVAL_MS_DEFAULT,
            segment_size_bytes: log.segment_size_bytes,
            checkpoint_every_entries: log.checkpoint_every_entries,
            consume_queue_entries_per_file: ConsumeQueueConfig::default().entries_per_file,
            index_slot_count: index.slot_count,
            index_max: index.index_max,
            file_reserved_hours: retention.file_reserved_hours,
            disk_clean_ratio: retention.disk_clean_ratio,
            disk_max_used_ratio: retention.disk_max_used_ratio,
            retention_check_ms: rocketraft_raft::node::RETENTION_CHECK_MS_DEFAULT,
            capacity_bytes: 0,
        }
    }
}

mod defaults {
    use rocketraft_raft::RaftTiming;

    pub fn cluster_name() -> String {
        "DefaultCluster".into()
    }
    pub fn broker_name() -> String {
        "broker-a".into()
    }
    pub fn listen() -> String {
        format!("0.0.0.0:{}", crate::BROKER_PORT_DEFAULT)
    }
    pub fn metrics_listen() -> String {
        format!("0.0.0.0:{}", crate::METRICS_PORT_DEFAULT)
    }
    pub fn store_dir() -> std::path::PathBuf {
        "store".into()
    }
    pub fn heartbeat() -> u64 {
        RaftTiming::default().heartbeat_interval_ms
    }
    pub fn election_min() -> u64 {
        RaftTiming::default().election_timeout_min_ms
    }
    pub fn election_max() -> u64 {
        RaftTiming::default().election_timeout_max_ms
    }
    pub fn snapshot_every() -> u64 {
        RaftTiming::default().snapshot_every_entries
    }
    pub fn proposals_in_flight() -> usize {
        rocketraft_raft::ProposerConfig::default().in_flight_max
    }
}

impl BrokerFile {
    /// The Raft address this replica listens on: `[raft] addr`, else its entry in `peers`.
    pub fn raft_addr(&self) -> Option<String> {
        self.raft
            .addr
            .clone()
            .or_else(|| self.raft.peers.get(&self.raft.node_id.to_string()).cloned())
    }

    /// Parses and checks a config file's text.
    pub fn parse(text: &str) -> Result<BrokerFile, ConfigError> {
        let file: BrokerFile = toml::from_str(text)?;
        // The cluster's reply topic is named after it, so it must make a valid topic name.
        let reply_topic = rocketraft_protocol::names::reply_topic(&file.cluster_name);
        if let Err(e) = rocketraft_protocol::names::check_topic(&reply_topic) {
            return Err(ConfigError::Invalid(format!(
                "cluster_name {:?}: its reply topic {reply_topic} is not a valid topic name ({e})",
                file.cluster_name
            )));
        }
        file.node_config()?;
        DelayLevels::parse(&file.server.message_delay_level)
            .map_err(|e| ConfigError::Invalid(format!("[server] {e}")))?;
        let t = &file.tls;
        if t.cert_file.is_some() != t.key_file.is_some()
            || t.cert_file.is_some() != t.ca_file.is_some()
        {
            return Err(ConfigError::Invalid(
                "[tls] set cert_file, key_file and ca_file together, or none".into(),
            ));
        }
        let tls_wanted = t.namesrv || t.client_mode == rocketraft_remoting::tls::TlsMode::Enforcing;
        if tls_wanted && t.cert_file.is_none() {
            return Err(ConfigError::Invalid(
                "[tls] client_mode = \"enforcing\" or namesrv = true need cert_file, key_file and \
                 ca_file"
                    .into(),
            ));
        }
        if file.acl.access_key.is_some() != file.acl.secret_key.is_some() {
            return Err(ConfigError::Invalid(
                "[acl] set both access_key and secret_key, or neither".into(),
            ));
        }
        if file.server.transaction_check_interval_ms < 100 {
            return Err(ConfigError::Invalid(
                "[server] transaction_check_interval_ms must be at least 100".into(),
            ));
        }
        Ok(file)
    }

    /// The remoting server's settings.
    pub fn broker_config(&self) -> BrokerConfig {
        let s = &self.server;
        let mut b = BrokerConfig::new(self.broker_name.clone(), self.advertised_addr);
        b.cluster_name = self.cluster_name.clone();
        b.listen = self.listen.clone();
        b.namesrv_addrs = self.namesrv_addrs.clone();
        b.region_id = s.region_id.clone();
        b.trace_on = s.trace_on;
        b.message_max_bytes = s.message_max_bytes;
        b.pull_batch_max = s.pull_batch_max;
        b.pull_bytes_max = s.pull_bytes_max;
        b.queues_max = s.queues_max;
        b.groups_max = s.groups_max;
        b.clients_max = s.clients_max;
        b.suspend_max_ms = s.suspend_max_ms;
        b.connections_max = s.connections_max;
        b.connections_per_ip_max = s.connections_per_ip_max;
        b.requests_in_flight_max = s.requests_in_flight_max;
        b.register_interval_ms = s.register_interval_ms;
        b.auto_create_topic = s.auto_create_topic;
        // Checked by `parse`.
        b.delay_levels = DelayLevels::parse(&s.message_delay_level).unwrap_or_default();
        b.timer_max_delay_sec = s.timer_max_delay_sec;
        b.reject_transaction_message = s.reject_transaction_message;
        b.enable_property_filter = s.enable_property_filter;
        b.transaction_timeout_ms = s.transaction_timeout_ms;
        b.transaction_check_interval_ms = s.transaction_check_interval_ms;
        b.transaction_check_max = s.transaction_check_max;
        b.store_reply_message = s.store_reply_message;
        b.proposals_in_flight_max = self.raft.proposals_in_flight_max;
        b.replication = self.raft.replication;
        b.acl_file = self.acl.file.clone();
        b.credentials = match (&self.acl.access_key, &self.acl.secret_key) {
            (Some(a), Some(s)) => Some(Credentials::new(a, s)),
            _ => None,
        };
        b
    }

    /// The Raft replica's settings, checked.
    pub fn node_config(&self) -> Result<NodeConfig, ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let mut peers = BTreeMap::new();
        for (id, addr) in &self.raft.peers {
            let Ok(id) = id.parse::<u64>() else {
                return invalid(format!("[raft] peers: {id:?} is not a node id (an integer)"));
            };
            peers.insert(id, addr.clone());
        }
        if !peers.contains_key(&self.raft.node_id) && self.raft.addr.is_none() {
            return invalid(format!(
                "[raft] node_id {} is not one of peers: a replica added to a running group needs \
                 its own Raft address in [raft] addr",
                self.raft.node_id
            ));
        }
        let timing = RaftTiming {
            heartbeat_interval_ms: self.raft.heartbeat_interval_ms,
            election_timeout_min_ms: self.raft.election_timeout_min_ms,
            election_timeout_max_ms: self.raft.election_timeout_max_ms,
            snapshot_every_entries: self.raft.snapshot_every_entries,
        };
        if !(1..=1024).contains(&self.raft.proposals_in_flight_max) {
            return invalid(format!(
                "[raft] proposals_in_flight_max = {}: use 1 to 1024",
                self.raft.proposals_in_flight_max
            ));
        }
        if let Err(e) = timing.validate() {
            return invalid(format!("[raft] timing: {e}"));
        }
        let st = &self.store;
        let flush = match st.flush.as_str() {
            "sync" => FlushMode::Sync,
            "async" if st.flush_interval_ms > 0 => {
                FlushMode::Async { interval_ms: st.flush_interval_ms }
            }
            "async" => return invalid("[store] flush_interval_ms must be above 0".into()),
            other => {
                return invalid(format!("[store] flush = {other:?}: use \"sync\" or \"async\""))
            }
        };
        // The largest record a body may make, in one entry, must fit one segment.
        let largest_entry =
            rocketraft_protocol::message::record_max_bytes(self.server.message_max_bytes)
                .saturating_add(rocketraft_store::entry::ENTRY_HEADER_BYTES);
        if (st.segment_size_bytes as usize) < largest_entry {
            return invalid(format!(
                "[store] segment_size_bytes = {} cannot hold the largest message: [server] \
                 message_max_bytes = {} makes records of up to {largest_entry} bytes with the \
                 entry header; raise segment_size_bytes or lower message_max_bytes",
                st.segment_size_bytes, self.server.message_max_bytes
            ));
        }
        let replicable = rocketraft_raft::network::ENTRY_PAYLOAD_REPLICABLE_MAX_BYTES;
        if largest_entry > replicable {
            return invalid(format!(
                "[server] message_max_bytes = {} makes records of up to {largest_entry} bytes, \
                 more than one Raft frame carries to a follower ({replicable} bytes)",
                self.server.message_max_bytes
            ));
        }
        let ratios_ok = 0.0 < st.disk_clean_ratio
            && st.disk_clean_ratio <= st.disk_max_used_ratio
            && st.disk_max_used_ratio <= 1.0;
        if !ratios_ok {
            return invalid("[store] need 0 < disk_clean_ratio <= disk_max_used_ratio <= 1".into());
        }
        Ok(NodeConfig {
            group: self.broker_name.clone(),
            id: self.raft.node_id,
            peers,
            timing,
            commit_log: CommitLogConfig {
                segment_size_bytes: st.segment_size_bytes,
                checkpoint_every_entries: st.checkpoint_every_entries,
            },
            dispatch: DispatchConfig {
                consume_queue: ConsumeQueueConfig {
                    entries_per_file: st.consume_queue_entries_per_file,
                },
                index: IndexConfig { slot_count: st.index_slot_count, index_max: st.index_max },
            },
            flush,
            retention: RetentionConfig {
                file_reserved_hours: st.file_reserved_hours,
                disk_clean_ratio: st.disk_clean_ratio,
                disk_max_used_ratio: st.disk_max_used_ratio,
                capacity_bytes: (st.capacity_bytes > 0).then_some(st.capacity_bytes),
            },
            retention_check_ms: st.retention_check_ms,
            message_faults: Default::default(),
            tls: None,
            #[cfg(madsim)]
            sim_bug_ack_before_fsync: false,
            #[cfg(madsim)]
            sim_bug_accept_wiped: false,
            #[cfg(madsim)]
            sim_bug_retention_ignores_floor: false,
            #[cfg(madsim)]
            sim_bugs: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocketraft_raft::Replication;

    const EXAMPLE: &str = include_str!("../../broker.example.toml");
    const MINIMAL: &str = r#"
        advertised_addr = "10.0.0.1:10911"
        [raft]
        node_id = 1
        peers = { "0" = "10.0.0.0:20911", "1" = "10.0.0.1:20911", "2" = "10.0.0.2:20911" }
    "#;

    /// The example documents the real defaults: it parses to the same settings as a file that
    /// gives only the required keys.
    #[test]
    fn the_example_shows_every_default() {
        let example = BrokerFile::parse(EXAMPLE).unwrap();
        let minimal = BrokerFile::parse(MINIMAL).unwrap();
        assert_eq!(minimal.node_config().unwrap().flush, FlushMode::Sync);
        assert_eq!(example.server, minimal.server);
        assert_eq!(example.store, minimal.store);
        assert_eq!(example.acl, minimal.acl);
        assert_eq!(example.tls, minimal.tls);
        let (e, m) = (example.raft, minimal.raft);
        assert_eq!(
            (e.heartbeat_interval_ms, e.election_timeout_min_ms, e.election_timeout_max_ms),
            (m.heartbeat_interval_ms, m.election_timeout_min_ms, m.election_timeout_max_ms)
        );
        assert_eq!(e.snapshot_every_entries, m.snapshot_every_entries);
        assert_eq!(
            (e.replication, m.replication, e.proposals_in_flight_max),
            (Replication::Quorum, Replication::Quorum, m.proposals_in_flight_max)
        );
        assert_eq!(
            (example.cluster_name, example.broker_name, example.listen, example.store_dir),
            (minimal.cluster_name, minimal.broker_name, minimal.listen, minimal.store_dir)
        );
    }

    #[test]
    fn tls_settings_that_would_be_ignored_are_refused() {
        for (tls, why) in [
            ("[tls]\ncert_file = \"a.pem\"\n", "together"),
            ("[tls]\nclient_mode = \"enforcing\"\n", "need cert_file"),
            ("[tls]\nnamesrv = true\n", "need cert_file"),
        ] {
            let e = BrokerFile::parse(&format!("{MINIMAL}{tls}")).unwrap_err().to_string();
            assert!(e.contains(why), "{tls}: {e}");
        }
        let full = "[tls]\ncert_file = \"a\"\nkey_file = \"b\"\nca_file = \"c\"\nnamesrv = true\n";
        assert!(BrokerFile::parse(&format!("{MINIMAL}{full}")).unwrap().tls.namesrv);
    }

    #[test]
    fn settings_reach_the_components() {
        let text = format!(
            "{MINIMAL}\n[store]\nflush = \"async\"\nflush_interval_ms = 200\n[server]\npull_batch_max = 8\n\
             message_delay_level = \"2s 1h\"\ntimer_max_delay_sec = 60\n"
        );
        let file = BrokerFile::parse(&text).unwrap();
        let node = file.node_config().unwrap();
        assert_eq!((node.id, node.peers.len()), (1, 3));
        assert_eq!(node.flush, FlushMode::Async { interval_ms: 200 });
        let b = file.broker_config();
        assert_eq!(b.pull_batch_max, 8);
        assert_eq!((b.delay_levels.len(), b.delay_levels.delay_ms(2)), (2, 3_600_000));
        assert_eq!(b.timer_max_delay_sec, 60);
        assert_eq!(b.advertised_addr, "10.0.0.1:10911".parse().unwrap());
        assert_eq!(b.replication, Replication::Quorum);
        let leader = MINIMAL.replace("node_id = 1", "node_id = 1\nreplication = \"leader\"");
        assert_eq!(
            BrokerFile::parse(&leader).unwrap().broker_config().replication,
            Replication::Leader
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let refused = |text: String, why: &str| {
            let e = BrokerFile::parse(&text).unwrap_err().to_string();
            assert!(e.contains(why), "{e:?} should mention {why:?}");
        };
        refused(format!("{MINIMAL}\n[server]\npul_batch_max = 8\n"), "pul_batch_max");
        refused(
            format!("{MINIMAL}\n[server]\nmessage_delay_level = \"1s 5x\"\n"),
            "messageDelayLevel \"1s 5x\": each delay ends with s, m, h or d",
        );
        refused(MINIMAL.replace("advertised_addr = \"10.0.0.1:10911\"", ""), "advertised_addr");
        refused(MINIMAL.replace("node_id = 1", "node_id = 7"), "node_id 7 is not one of peers");
        let added = BrokerFile::parse(
            &MINIMAL.replace("node_id = 1", "node_id = 7\naddr = \"10.0.0.7:20911\""),
        )
        .unwrap();
        assert_eq!(added.node_config().unwrap().id, 7);
        assert_eq!(added.raft_addr().as_deref(), Some("10.0.0.7:20911"));
        refused(MINIMAL.replace("\"2\" =", "\"two\" ="), "\"two\" is not a node id");
        refused(format!("{MINIMAL}\n[store]\nflush = \"sometimes\"\n"), "\"sometimes\"");
        refused(MINIMAL.replace("node_id = 1", "node_id = 1\nreplication = \"async\""), "async");
        refused(format!("{MINIMAL}\n[store]\ndisk_clean_ratio = 0.95\n"), "disk_clean_ratio");
        refused(format!("{MINIMAL}\nelection_timeout_max_ms = 100\n"), "[raft] timing");
        refused(
            format!("{MINIMAL}\n[store]\nsegment_size_bytes = 4194304\n"),
            "cannot hold the largest message",
        );
        refused(
            format!("{MINIMAL}\n[server]\nmessage_max_bytes = 67108864\n"),
            "more than one Raft frame carries",
        );
        refused(
            format!("cluster_name = \"a b\"\n{MINIMAL}"),
            "its reply topic a b_REPLY_TOPIC is not a valid topic name",
        );
    }
}
