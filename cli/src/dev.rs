//! A development cluster in one process: a NameServer and one broker group of (by default)
//! three replicas on loopback, each on real files under one data directory. `rocketraft dev`
//! runs it; the integration tests start it with port 0 everywhere.
//!
//! Layout: `<data_dir>/<group>-<id>/` per replica (see [`crate::replica`]). Restarting with the
//! same data directory and ports resumes the same cluster.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rocketraft_broker::BrokerConfig;
use rocketraft_metrics::Hub;
use rocketraft_namesrv::{NameServer, NamesrvConfig};
use rocketraft_protocol::acl::Credentials;
use rocketraft_raft::node::RETENTION_CHECK_MS_DEFAULT;
use rocketraft_raft::{NodeConfig, RaftTiming};
use rocketraft_remoting::acl::Acl;
use rocketraft_remoting::http::HttpServer;
pub use rocketraft_remoting::tls::TlsMode;
use rocketraft_remoting::tls::{throwaway, ClientTls, ServerTls, TlsError};
use rocketraft_store::flush::FlushMode;
use rocketraft_store::indexfile::IndexConfig;
use rocketraft_store::{CommitLogConfig, DispatchConfig};
use tokio::net::TcpListener;

pub use rocketraft_store::RetentionConfig;

use crate::replica::{Replica, ReplicaError};

/// Development cluster settings. Port 0 picks a free port.
#[derive(Debug, Clone)]
pub struct DevConfig {
    /// Where the replicas keep their files. Default `./rocketraft-data`.
    pub data_dir: PathBuf,
    /// The address everything listens on. Default 127.0.0.1.
    pub host: String,
    /// Default 9876.
    pub namesrv_port: u16,
    /// The metrics endpoint (`http://host:port/metrics`) for the NameServer and every
    /// replica. Default 9877.
    pub metrics_port: u16,
    /// Replica i's broker port is `broker_port + 10 * i` (10911, 10921, 10931) unless 0.
    pub broker_port: u16,
    /// Replica i's Raft port is `raft_port + i` (40911, 40912, 40913) unless 0.
    pub raft_port: u16,
    /// Default 3.
    pub replicas: u64,
    pub cluster_name: String,
    /// Default "broker-a".
    pub group: String,
    /// Default sync (acknowledged = on a majority's disks).
    pub flush: FlushMode,
    /// When a send is acknowledged. Default quorum (a majority has it).
    pub replication: rocketraft_raft::Replication,
    /// CommitLog segment size. Default 64 MiB (smaller than production's 1 GiB: a dev machine
    /// should not map gigabytes for a few test messages).
    pub segment_size_bytes: u64,
    pub timing: RaftTiming,
    /// How often replicas register with the NameServer. Default 30,000 ms.
    pub register_interval_ms: u64,
    /// The delay of each `DELAY` level (RocketMQ's `messageDelayLevel`). Default RocketMQ's
    /// 18 levels, 1 s to 2 h.
    pub delay_levels: rocketraft_protocol::schedule::DelayLevels,
    /// How often unresolved transaction half messages are checked back. Default 30,000 ms.
    pub transaction_check_interval_ms: u64,
    /// Half messages younger than this are not checked back. Default 6,000 ms.
    pub transaction_timeout_ms: u64,
    /// Unanswered check-backs before a half message is discarded. Default 15.
    pub transaction_check_max: u32,
    /// ACL on the NameServer and every replica (off by default): the accounts file, and the
    /// admin account the replicas sign their registrations with.
    pub acl: Option<DevAcl>,
    /// TLS with a throwaway CA written to `data_dir/tls/ca.pem`: mutual TLS on the Raft ports,
    /// permissive TLS on the client ports (the NameServer's and the replicas'), registrations
    /// over TLS. Default off.
    pub tls: bool,
    /// With `tls`: the client ports' mode. Default permissive (TLS and plain clients).
    pub tls_client_mode: TlsMode,
    /// When old segments go and when the volume is too full for new writes. Default RocketMQ's
    /// (72 h; early deletion at 75 % used; sends refused at 90 %).
    pub retention: RetentionConfig,
}

/// `rocketraft dev --acl-file`: who may do what, and who the replicas register as.
#[derive(Debug, Clone)]
pub struct DevAcl {
    pub file: PathBuf,
    /// An admin account of `file`.
    pub registration: Credentials,
}

impl Default for DevConfig {
    fn default() -> Self {
        DevConfig {
            data_dir: PathBuf::from("rocketraft-data"),
            host: "127.0.0.1".into(),
            namesrv_port: rocketraft_namesrv::NAMESRV_PORT_DEFAULT,
            metrics_port: crate::metrics::NAMESRV_METRICS_PORT_DEFAULT,
            broker_port: rocketraft_broker::BROKER_PORT_DEFAULT,
            raft_port: 40911,
            replicas: 3,
            cluster_name: "DefaultCluster".into(),
            group: "broker-a".into(),
            flush: FlushMode::Sync,
            replication: rocketraft_raft::Replication::Quorum,
            segment_size_bytes: 64 << 20,
            timing: RaftTiming::default(),
            register_interval_ms: 30_000,
            delay_levels: Default::default(),
            transaction_check_interval_ms: 30_000,
            transaction_timeout_ms: 6_000,
            transaction_check_max: 15,
            acl: None,
            tls: false,
            tls_client_mode: TlsMode::Permissive,
            retention: RetentionConfig::default(),
        }
    }
}

/// Why the cluster did not start.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("cannot listen on {addr}: {error}; is another rocketraft running? Stop it or choose other ports")]
    Port { addr: String, error: std::io::Error },
    #[error("replica {id}: {source}")]
    Replica {
        id: u64,
        #[source]
        source: ReplicaError,
    },
    #[error("{0}")]
    Invalid(String),
}

/// A replica's Raft as it reports itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftState {
    /// No fatal error stopped it.
    pub running: bool,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
}

/// A running development cluster.
pub struct DevCluster {
    config: DevConfig,
    namesrv: NameServer,
    namesrv_addr: SocketAddr,
    raft_addrs: BTreeMap<u64, SocketAddr>,
    broker_addrs: BTreeMap<u64, SocketAddr>,
    replicas: BTreeMap<u64, Replica>,
    tls: Option<DevTls>,
    /// Every component's metrics, served by `metrics`.
    hub: Arc<Hub>,
    metrics: HttpServer,
}

/// The TLS settings a `--tls` dev cluster made from its throwaway CA (its client ports, the
/// NameServer's included, in `tls_client_mode`).
struct DevTls {
    raft: rocketraft_raft::network::RaftTls,
    client_port: ServerTls,
    namesrv: ClientTls,
    ca_file: PathBuf,
}

impl DevTls {
    /// A throwaway CA and one certificate for every process (they all run on `host`), the CA
    /// written to `data_dir/tls/ca.pem` for clients.
    fn make(data_dir: &Path, host: &str, client_mode: TlsMode) -> Result<DevTls, DevError> {
        let bad = |e: TlsError| DevError::Invalid(format!("TLS: {e}"));
        let made = throwaway(&[host, "localhost", "127.0.0.1"]).map_err(bad)?;
        let dir = data_dir.join("tls");
        let ca_file = dir.join("ca.pem");
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&ca_file, &made.ca_pem))
            .map_err(|e| {
                DevError::Invalid(format!("TLS: cannot write {}: {e}", ca_file.display()))
            })?;
        let identity = Some((made.cert_pem.as_str(), made.key_pem.as_str()));
        Ok(DevTls {
            raft: rocketraft_raft::network::RaftTls {
                server: ServerTls::new(&made.pem(true), TlsMode::Enforcing).map_err(bad)?,
                client: ClientTls::new(&made.ca_pem, identity).map_err(bad)?,
            },
            client_port: ServerTls::new(&made.pem(false), client_mode).map_err(bad)?,
            namesrv: ClientTls::new(&made.ca_pem, None).map_err(bad)?,
            ca_file,
        })
    }
}

async fn bind(addr: String) -> Result<TcpListener, DevError> {
    TcpListener::bind(&addr).await.map_err(|error| DevError::Port { addr, error })
}

fn port(base: u16, step: u16, i: u64) -> u16 {
    if base == 0 {
        0
    } else {
        base.saturating_add(step.saturating_mul(i as u16))
    }
}

impl DevCluster {
    pub async fn start(config: DevConfig) -> Result<DevCluster, DevError> {
        if config.replicas == 0 || config.replicas > 9 {
            return Err(DevError::Invalid(format!(
                "{} replicas: a dev group has 1 to 9",
                config.replicas
            )));
        }
        let namesrv_listen = format!("{}:{}", config.host, config.namesrv_port);
        if let Some(acl) = &config.acl {
            // Read here so that a bad file is reported as such, not as a port in use.
            let accounts = Acl::read(&acl.file).map_err(|e| DevError::Invalid(e.to_string()))?;
            if !accounts.is_admin(&acl.registration) {
                return Err(DevError::Invalid(format!(
                    "ACL: the replicas register as {:?}, which is not an admin account of {} \
                     with that secret key",
                    acl.registration.access_key,
                    acl.file.display()
                )));
            }
        }
        let tls = match config.tls {
            true => Some(DevTls::make(&config.data_dir, &config.host, config.tls_client_mode)?),
            false => None,
        };
        let namesrv = NameServer::start(NamesrvConfig {
            listen: namesrv_listen.clone(),
            acl_file: config.acl.as_ref().map(|a| a.file.clone()),
            tls: tls.as_ref().map(|t| t.client_port.clone()),
            ..Default::default()
        })
        .await
        .map_err(|error| DevError::Port { addr: namesrv_listen, error })?;
        let namesrv_addr = namesrv.local_addr();
        let hub = Hub::new();
        hub.add(Vec::new(), &namesrv.metrics());
        let metrics_addr = format!("{}:{}", config.host, config.metrics_port);
        let metrics_listener = bind(metrics_addr.clone()).await?;
        let metrics = crate::metrics::serve(metrics_listener, hub.clone())
            .map_err(|error| DevError::Port { addr: metrics_addr, error })?;
        let mut raft_listeners = BTreeMap::new();
        let mut broker_listeners = BTreeMap::new();
        for id in 0..config.replicas {
            let r = bind(format!("{}:{}", config.host, port(config.raft_port, 1, id))).await?;
            let b = bind(format!("{}:{}", config.host, port(config.broker_port, 10, id))).await?;
            raft_listeners.insert(id, r);
            broker_listeners.insert(id, b);
        }
        let addr_of = |l: &TcpListener| l.local_addr().expect("a bound listener has an address");
        let raft_addrs: BTreeMap<u64, SocketAddr> =
            raft_listeners.iter().map(|(id, l)| (*id, addr_of(l))).collect();
        let broker_addrs: BTreeMap<u64, SocketAddr> =
            broker_listeners.iter().map(|(id, l)| (*id, addr_of(l))).collect();
        let mut cluster = DevCluster {
            config,
            namesrv,
            namesrv_addr,
            raft_addrs,
            broker_addrs,
            replicas: BTreeMap::new(),
            tls,
            hub,
            metrics,
        };
        for id in 0..cluster.config.replicas {
            let (r, b) = (raft_listeners.remove(&id), broker_listeners.remove(&id));
            if let (Some(r), Some(b)) = (r, b) {
                cluster.start_on(id, r, b).await?;
            }
        }
        Ok(cluster)
    }

    fn node_config(&self, id: u64) -> NodeConfig {
        NodeConfig {
            group: self.config.group.clone(),
            id,
            peers: self.raft_addrs.iter().map(|(i, a)| (*i, a.to_string())).collect(),
            timing: self.config.timing.clone(),
            commit_log: CommitLogConfig {
                segment_size_bytes: self.config.segment_size_bytes,
                ..Default::default()
            },
            dispatch: DispatchConfig {
                // 1 M slots and 4 M entries: an 84 MB index file instead of 420 MB.
                index: IndexConfig { slot_count: 1_000_000, index_max: 4_000_000 },
                ..Default::default()
            },
            flush: self.config.flush,
            retention: self.config.retention.clone(),
            retention_check_ms: RETENTION_CHECK_MS_DEFAULT,
            message_faults: Default::default(),
            tls: self.tls.as_ref().map(|t| t.raft.clone()),
            #[cfg(madsim)]
            sim_bug_ack_before_fsync: false,
            #[cfg(madsim)]
            sim_bug_accept_wiped: false,
            #[cfg(madsim)]
            sim_bug_retention_ignores_floor: false,
            #[cfg(madsim)]
            sim_bugs: Default::default(),
        }
    }

    fn broker_config(&self, id: u64) -> BrokerConfig {
        let mut b = BrokerConfig::new(self.config.group.clone(), self.broker_addrs[&id]);
        b.cluster_name = self.config.cluster_name.clone();
        b.listen = self.broker_addrs[&id].to_string();
        b.namesrv_addrs = vec![self.namesrv_addr.to_string()];
        b.register_interval_ms = self.config.register_interval_ms;
        b.replication = self.config.replication;
        b.delay_levels = self.config.delay_levels.clone();
        b.transaction_check_interval_ms = self.config.transaction_check_interval_ms;
        b.transaction_timeout_ms = self.config.transaction_timeout_ms;
        b.transaction_check_max = self.config.transaction_check_max;
        // A development cluster takes every subscription a client may try.
        b.enable_property_filter = true;
        if let Some(acl) = &self.config.acl {
            b.acl_file = Some(acl.file.clone());
            b.credentials = Some(acl.registration.clone());
        }
        if let Some(tls) = &self.tls {
            b.tls = Some(tls.client_port.clone());
            b.namesrv_tls = Some(tls.namesrv.clone());
        }
        b
    }

    fn replica_dir(&self, id: u64) -> PathBuf {
        self.config.data_dir.join(format!("{}-{id}", self.config.group))
    }

    async fn start_on(
        &mut self,
        id: u64,
        raft: TcpListener,
        broker: TcpListener,
    ) -> Result<(), DevError> {
        let dir = self.replica_dir(id);
        let replica =
            Replica::start(self.node_config(id), self.broker_config(id), &dir, raft, broker)
                .await
                .map_err(|source| DevError::Replica { id, source })?;
        let labels =
            crate::metrics::replica_labels(&self.config.cluster_name, &self.config.group, id);
        self.hub.add(labels, &replica.broker.metrics());
        self.replicas.insert(id, replica);
        Ok(())
    }

    /// The CA a `--tls` cluster's clients must trust (PEM).
    pub fn tls_ca_file(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca_file.as_path())
    }

    /// Where the metrics are served (`http://ADDR/metrics`).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics.local_addr()
    }

    /// The NameServer's address (what clients are given).
    pub fn namesrv_addr(&self) -> SocketAddr {
        self.namesrv_addr
    }

    /// Each replica's broker address.
    pub fn broker_addrs(&self) -> &BTreeMap<u64, SocketAddr> {
        &self.broker_addrs
    }

    /// Each replica's data directory.
    pub fn data_dirs(&self) -> BTreeMap<u64, PathBuf> {
        self.broker_addrs.keys().map(|id| (*id, self.replica_dir(*id))).collect()
    }

    pub fn namesrv(&self) -> &NameServer {
        &self.namesrv
    }

    /// The running replicas.
    pub fn running(&self) -> Vec<u64> {
        self.replicas.keys().copied().collect()
    }

    /// The leader as a running replica sees it.
    pub fn leader(&self) -> Option<u64> {
        self.replicas
            .values()
            .filter_map(|r| r.node.raft.metrics().borrow().current_leader)
            .find(|l| self.replicas.contains_key(l))
    }

    /// Waits up to `timeout` for a running replica to lead.
    pub async fn wait_leader(&self, timeout: Duration) -> Option<u64> {
        let step = Duration::from_millis(50);
        let mut waited = Duration::ZERO;
        loop {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            if waited >= timeout {
                return None;
            }
            tokio::time::sleep(step).await;
            waited += step;
        }
    }

    /// Waits up to `timeout` until clients can send: a replica leads and the NameServer
    /// routes the group's master (brokerId 0), template topic TBW102 included. The leader
    /// registers as master only after confirming its leadership, so this follows the election.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let step = Duration::from_millis(50);
        let mut waited = Duration::ZERO;
        loop {
            let routed = self
                .namesrv
                .registry()
                .route(rocketraft_broker::AUTO_CREATE_TOPIC)
                .is_some_and(|r| r.broker_datas.iter().any(|b| b.master_addr().is_some()));
            if routed && self.leader().is_some() {
                return true;
            }
            if waited >= timeout {
                return false;
            }
            tokio::time::sleep(step).await;
            waited += step;
        }
    }

    /// Waits until a running replica's Raft stops on a fatal error and answers which and why
    /// (the caller then stops it with [`DevCluster::stop_replica`]). Never returns while every
    /// replica runs.
    pub async fn next_fatal(&self) -> (u64, String) {
        if self.replicas.is_empty() {
            return std::future::pending().await;
        }
        let mut waits: Vec<_> = self
            .replicas
            .iter()
            .map(|(id, r)| Box::pin(async move { (*id, r.stopped_on_fatal().await) }))
            .collect();
        std::future::poll_fn(|cx| {
            for w in &mut waits {
                if let std::task::Poll::Ready(done) = w.as_mut().poll(cx) {
                    return std::task::Poll::Ready(done);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }

    /// What each running replica's Raft says of itself.
    pub fn raft_states(&self) -> BTreeMap<u64, RaftState> {
        self.replicas
            .iter()
            .map(|(id, r)| {
                let m = r.node.raft.metrics().borrow().clone();
                let state = RaftState {
                    running: m.running_state.is_ok(),
                    last_log_index: m.last_log_index,
                    last_applied: m.last_applied.map(|l| l.index),
                };
                (*id, state)
            })
            .collect()
    }

    /// Replicas whose Raft stopped on a fatal error, with the error (still counted as running
    /// until [`DevCluster::stop_replica`]).
    pub fn failed(&self) -> Vec<(u64, String)> {
        self.replicas.iter().filter_map(|(id, r)| r.node.fatal_error().map(|e| (*id, e))).collect()
    }

    /// Stops replica `id` (its connections close, as when its process dies; files stay).
    pub async fn stop_replica(&mut self, id: u64) {
        if let Some(r) = self.replicas.remove(&id) {
            r.shutdown().await;
        }
    }

    /// Starts replica `id` again on its ports and files.
    pub async fn restart_replica(&mut self, id: u64) -> Result<(), DevError> {
        if self.replicas.contains_key(&id) {
            return Ok(());
        }
        let (Some(raft), Some(broker)) = (self.raft_addrs.get(&id), self.broker_addrs.get(&id))
        else {
            return Err(DevError::Invalid(format!("no replica {id}")));
        };
        let r = bind(raft.to_string()).await?;
        let b = bind(broker.to_string()).await?;
        self.start_on(id, r, b).await
    }

    /// Stops every replica, then the NameServer.
    pub async fn shutdown(self) {
        for (_, r) in self.replicas {
            r.shutdown().await;
        }
        self.namesrv.shutdown();
    }
}
