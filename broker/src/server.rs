//! The broker's server: a `remoting::Server` whose handler routes each request code to its
//! processor (`crate::processor`), and the tasks that live with it (client expiry,
//! registration with the NameServers).
//!
//! Requests on one connection run concurrently (a held pull must not block the sends behind
//! it); the remoting server's limits answer as RocketMQ does (SYSTEM_BUSY "[OVERLOAD]...", a
//! closed connection for a malformed or oversized frame). Unknown codes get
//! REQUEST_CODE_NOT_SUPPORTED, even oneway; bad headers get the RocketMQ code a Java client
//! expects, with a remark.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use rocketraft_protocol::headers::*;
use rocketraft_protocol::{request_code as rc, RemotingCommand};
use rocketraft_raft::MetaStore;
use rocketraft_raft::{RaftNode, Replica, ReplicaConfig};
use rocketraft_remoting::acl::{AclGuard, Scope};
use rocketraft_remoting::{Connections, Server, ServerConfig};
use rocketraft_store::io::Storage;
use tokio::net::TcpListener;

use crate::broker_config::BrokerConfig;
use crate::clients::{ClientManager, CHANNEL_EXPIRY_MS_DEFAULT};
use crate::long_poll::PullWaiters;

pub(crate) struct Inner<S: Storage + Clone, M: MetaStore> {
    pub(crate) config: BrokerConfig,
    /// The ACL in force (when on): processors that learn what a request touches only from the
    /// record it names (END_TRANSACTION) check the caller's permission with it.
    pub(crate) acl: Option<Arc<AclGuard>>,
    /// The group replica: its log, queues, metadata, proposer and offsets.
    pub(crate) replica: Replica<S, M>,
    /// Messages served per group, for GET_CONSUME_STATS.
    pub(crate) rates: crate::rates::ConsumeRates,
    pub(crate) waiters: Arc<PullWaiters>,
    pub(crate) clients: std::sync::Mutex<ClientManager>,
    /// Subscription groups a heartbeat is creating (proposed, not yet applied): counted
    /// against `groups_max` with the applied ones, so concurrent heartbeats cannot pass it.
    pub(crate) groups_creating: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// Requests refused for a limit are logged at most once per interval.
    pub(crate) refusals: rocketraft_remoting::throttle::LogThrottle,
    /// Asks the registration task for a round now (after a topic is created).
    pub(crate) register_now: Arc<tokio::sync::Notify>,
    /// The open connections, for requests the broker sends (notifications).
    pub(crate) connections: Connections,
    /// Spreads sends that name no queue (queueId < 0) over the writable queues.
    pub(crate) next_queue: AtomicU64,
    pub(crate) epoch_ms: i64,
    pub(crate) epoch: tokio::time::Instant,
    /// Transaction half messages being resolved on this master now.
    pub(crate) resolving: crate::transaction::Resolving,
    /// The term in which this master's state was last seen to cover its whole log.
    pub(crate) current_term: AtomicU64,
    /// Offset resets the groups' consumers have not seen yet.
    pub(crate) resets: crate::resets::PendingResets,
    /// What the send and pull paths count, for the metrics.
    pub(crate) stats: crate::metrics::BrokerStats,
}

impl<S: Storage + Clone, M: MetaStore> Inner<S, M> {
    /// The state the processors share, over `node`'s replica; `connections` are the server's.
    pub(crate) fn new(
        config: BrokerConfig,
        node: &RaftNode<S, M>,
        waiters: Arc<PullWaiters>,
        now_ms: i64,
        connections: Connections,
    ) -> Self {
        #[allow(unused_mut)] // set further in simulation builds
        let mut replica_config = ReplicaConfig {
            proposals_in_flight_max: config.proposals_in_flight_max,
            replication: config.replication,
            ..Default::default()
        };
        #[cfg(madsim)]
        {
            if config.sim_bug_proposals_unbounded {
                replica_config.proposals_in_flight_max = 1024;
            }
            replica_config.offsets.sim_bug_out_of_order = config.sim_bug_offsets_out_of_order;
        }
        let replica = Replica::start(node, replica_config, now_ms);
        Inner {
            config,
            acl: None,
            replica,
            rates: crate::rates::ConsumeRates::default(),
            waiters,
            clients: std::sync::Mutex::new(ClientManager::new()),
            groups_creating: Default::default(),
            refusals: Default::default(),
            register_now: Arc::new(tokio::sync::Notify::new()),
            connections,
            next_queue: AtomicU64::new(0),
            epoch_ms: now_ms,
            // The runtime's clock (virtual under madsim, where it is std's Instant).
            #[allow(clippy::disallowed_methods)]
            epoch: tokio::time::Instant::now(),
            resolving: Default::default(),
            current_term: AtomicU64::new(u64::MAX),
            resets: Default::default(),
            stats: Default::default(),
        }
    }
}

/// A running broker replica's remoting server.
pub struct Broker {
    server: Server,
    /// The registration task: on stop it unregisters from every NameServer, then ends.
    register: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The replica's metrics (see [`Broker::metrics`]).
    metrics: Arc<dyn rocketraft_metrics::Source>,
}

impl Broker {
    /// Serves `node` (started with [`crate::arrival_listener`] of the same `waiters`).
    /// `now_ms` is the wall-clock time at start (store timestamps count from it).
    pub async fn start<S: Storage + Clone, M: MetaStore>(
        config: BrokerConfig,
        node: &RaftNode<S, M>,
        waiters: Arc<PullWaiters>,
        now_ms: i64,
    ) -> std::io::Result<Broker> {
        let listener = TcpListener::bind(&config.listen).await?;
        Self::start_on(listener, config, node, waiters, now_ms).await
    }

    /// As [`Broker::start`], on a listener already bound (`config.listen` is not used): a
    /// caller that binds port 0 first knows the address to advertise before starting.
    pub async fn start_on<S: Storage + Clone, M: MetaStore>(
        listener: TcpListener,
        config: BrokerConfig,
        node: &RaftNode<S, M>,
        waiters: Arc<PullWaiters>,
        now_ms: i64,
    ) -> std::io::Result<Broker> {
        let server_config = ServerConfig {
            connections_max: config.connections_max,
            connections_per_ip_max: config.connections_per_ip_max,
            requests_in_flight_max: config.requests_in_flight_max,
            tls: config.tls.clone(),
            ..Default::default()
        };
        let acl = match &config.acl_file {
            Some(path) => Some(
                AclGuard::load(path, Scope::Broker)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
            ),
            None => None,
        };
        let mut inner = Inner::new(config, node, waiters, now_ms, Connections::new());
        inner.acl = acl.clone();
        let inner = Arc::new(inner);
        let connections = inner.connections.clone();
        let mut router = crate::processor::router(&inner);
        if let Some(acl) = acl {
            router = router.guarded(acl);
        }
        let server = Server::start(listener, server_config, Arc::new(router), connections)?;
        let mut register = None;
        if !inner.config.namesrv_addrs.is_empty() {
            let rc = crate::register::RegisterConfig {
                cluster_name: inner.config.cluster_name.clone(),
                broker_name: inner.config.broker_name.clone(),
                broker_addr: inner.config.advertised_addr,
                namesrv_addrs: inner.config.namesrv_addrs.clone(),
                register_interval_ms: inner.config.register_interval_ms,
                call_timeout_ms: 3_000,
                auto_create_topic: inner.config.auto_create_topic,
                credentials: inner.config.credentials.clone(),
                tls: inner.config.namesrv_tls.clone(),
            };
            register = Some(tokio::spawn(crate::register::run(
                rc,
                inner.replica.clone(),
                inner.register_now.clone(),
                server.stop_signal(),
            )));
        }
        tokio::spawn(crate::schedule::run(inner.clone(), server.stop_signal()));
        tokio::spawn(crate::transaction::run(inner.clone(), server.stop_signal()));
        let metrics: Arc<dyn rocketraft_metrics::Source> =
            Arc::new(crate::metrics::BrokerMetrics { inner: Arc::downgrade(&inner) });
        tokio::spawn(expire_clients(inner, server.stop_signal()));
        Ok(Broker { server, register: std::sync::Mutex::new(register), metrics })
    }

    /// The replica's metrics: its Raft and CommitLog, sends and pulls, connections, consumer
    /// lag, delayed and transactional messages pending. Add it to the process's
    /// `rocketraft_metrics::Hub`, which holds it only as long as this broker lives.
    pub fn metrics(&self) -> Arc<dyn rocketraft_metrics::Source> {
        self.metrics.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops serving: connections close at once; unregistering from the NameServers goes on
    /// in the background (see [`Broker::shutdown_and_unregister`] to wait for it).
    pub fn shutdown(&self) {
        self.server.shutdown();
    }

    /// Stops serving and waits until the listener is closed (its port can be bound again) and
    /// every NameServer was told this replica is leaving (each call bounded by the 3 s call
    /// timeout), so clients stop routing to it at once instead of after the NameServers' 120 s
    /// expiry.
    pub async fn shutdown_and_unregister(&self) {
        self.server.shutdown_and_wait().await;
        let task = lock(&self.register).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        // Every task that holds the replica's state holds a stop receiver and ends on stop:
        // wait for the last of them, so a restart finds the files and the metadata store free.
        if !self.server.wait_stopped(Duration::from_millis(STOP_WAIT_MS_MAX)).await {
            tracing::warn!("some broker tasks still run {STOP_WAIT_MS_MAX} ms after the stop");
        }
    }
}

/// How long a stop waits for the broker's tasks to end.
const STOP_WAIT_MS_MAX: u64 = 5_000;

/// How often silent clients are looked for.
const CLIENT_SCAN_MS: u64 = 10_000;

async fn expire_clients<S: Storage + Clone, M: MetaStore>(
    inner: Arc<Inner<S, M>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            _ = tokio::time::sleep(Duration::from_millis(CLIENT_SCAN_MS)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let changed = lock(&inner.clients).expire(now_ms(&inner), CHANNEL_EXPIRY_MS_DEFAULT);
        notify_changed(&inner, changed);
    }
}

pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// This replica's own time (its wall clock at start plus the monotonic time since): for what
/// only this replica measures (client liveness, lock expiry, rates).
pub(crate) fn now_ms<S: Storage + Clone, M: MetaStore>(inner: &Inner<S, M>) -> i64 {
    inner.epoch_ms + inner.epoch.elapsed().as_millis() as i64
}

/// The group's time (`Replica::now_ms`): for what is stamped into the log or decided from
/// stamps in it (store timestamps, due parked messages, half messages' age), so a replica
/// whose clock is behind does not run the group's time backwards when it takes over.
pub(crate) fn group_now_ms<S: Storage + Clone, M: MetaStore>(inner: &Inner<S, M>) -> i64 {
    inner.replica.now_ms()
}

/// Tells every member of each changed group to rebalance now (oneway, best effort).
pub(crate) fn notify_changed<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    groups: std::collections::BTreeSet<String>,
) {
    for group in groups {
        let conns = lock(&inner.clients).consumer_connections(&group);
        let notify = RemotingCommand::request(
            rc::NOTIFY_CONSUMER_IDS_CHANGED,
            &NotifyConsumerIdsChangedRequestHeader { consumer_group: group.clone() },
        )
        .into_oneway();
        for conn in conns {
            inner.connections.send(conn, &notify);
        }
    }
}
