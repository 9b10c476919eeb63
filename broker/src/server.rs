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
use rocketraft_protocol::{request_code as rc, response_code, RemotingCommand};
use rocketraft_raft::MetaStore;
use rocketraft_raft::{RaftNode, Replica, ReplicaConfig};
use rocketraft_remoting::{Connections, Handler, Peer, Server, ServerConfig};
use rocketraft_store::io::Storage;
use tokio::net::TcpListener;

use crate::broker_config::BrokerConfig;
use crate::clients::{ClientManager, ConnId, CHANNEL_EXPIRY_MS_DEFAULT};
use crate::long_poll::PullWaiters;
use crate::processor::admin::{
    all_group_configs, all_topic_configs, create_group, create_topic, delete_group, delete_topic,
};
use crate::processor::clients::{consumer_list, heartbeat, queue_locks, unregister_client};
use crate::processor::lookup::{query_message, view_message};
use crate::processor::offsets::{
    earliest_store_time, query_consumer_offset, queue_offset, search_offset, update_consumer_offset,
};
use crate::processor::pull::pull;
use crate::processor::reply;
use crate::processor::send::send;
use crate::processor::stats::{consume_stats, runtime_info, topic_stats};

pub(crate) struct Inner<S: Storage + Clone, M: MetaStore> {
    pub(crate) config: BrokerConfig,
    /// The group replica: its log, queues, metadata, proposer and offsets.
    pub(crate) replica: Replica<S, M>,
    /// Messages served per group, for GET_CONSUME_STATS.
    pub(crate) rates: crate::rates::ConsumeRates,
    pub(crate) waiters: Arc<PullWaiters>,
    pub(crate) clients: std::sync::Mutex<ClientManager>,
    /// Asks the registration task for a round now (after a topic is created).
    pub(crate) register_now: Arc<tokio::sync::Notify>,
    /// The open connections, for requests the broker sends (notifications).
    pub(crate) connections: Connections,
    /// Spreads sends that name no queue (queueId < 0) over the writable queues.
    pub(crate) next_queue: AtomicU64,
    pub(crate) epoch_ms: i64,
    pub(crate) epoch: tokio::time::Instant,
}

/// The remoting server's handler: routes each request to its processor.
struct Processors<S: Storage + Clone, M: MetaStore>(Arc<Inner<S, M>>);

impl<S: Storage + Clone, M: MetaStore> Handler for Processors<S, M> {
    async fn handle(&self, req: RemotingCommand, peer: Peer) -> Option<RemotingCommand> {
        handle(&req, peer.addr, peer.conn, &self.0).await
    }

    fn closed(&self, peer: Peer) {
        let changed = lock(&self.0.clients).connection_closed(peer.conn);
        notify_changed(&self.0, changed);
    }
}

/// A running broker replica's remoting server.
pub struct Broker {
    server: Server,
    /// The registration task: on stop it unregisters from every NameServer, then ends.
    register: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
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
        let replica = Replica::start(
            node,
            ReplicaConfig {
                proposals_in_flight_max: config.proposals_in_flight_max,
                replication: config.replication,
                ..Default::default()
            },
        );
        let server_config = ServerConfig {
            connections_max: config.connections_max,
            requests_in_flight_max: config.requests_in_flight_max,
            ..Default::default()
        };
        let connections = Connections::new();
        let inner = Arc::new(Inner {
            config,
            replica,
            rates: crate::rates::ConsumeRates::default(),
            waiters,
            clients: std::sync::Mutex::new(ClientManager::new()),
            register_now: Arc::new(tokio::sync::Notify::new()),
            connections: connections.clone(),
            next_queue: AtomicU64::new(0),
            epoch_ms: now_ms,
            // The runtime's clock (virtual under madsim, where it is std's Instant).
            #[allow(clippy::disallowed_methods)]
            epoch: tokio::time::Instant::now(),
        });
        let server = Server::start(
            listener,
            server_config,
            Arc::new(Processors(inner.clone())),
            connections,
        )?;
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
            };
            register = Some(tokio::spawn(crate::register::run(
                rc,
                inner.replica.clone(),
                inner.register_now.clone(),
                server.stop_signal(),
            )));
        }
        tokio::spawn(expire_clients(inner, server.stop_signal()));
        Ok(Broker { server, register: std::sync::Mutex::new(register) })
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

pub(crate) fn now_ms<S: Storage + Clone, M: MetaStore>(inner: &Inner<S, M>) -> i64 {
    inner.epoch_ms + inner.epoch.elapsed().as_millis() as i64
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

async fn handle<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    peer: SocketAddr,
    conn: ConnId,
    inner: &Inner<S, M>,
) -> Option<RemotingCommand> {
    let resp = match req.code {
        rc::SEND_MESSAGE | rc::SEND_MESSAGE_V2 | rc::SEND_BATCH_MESSAGE => {
            send(req, peer, inner).await
        }
        rc::PULL_MESSAGE => pull(req, inner).await,
        rc::UPDATE_AND_CREATE_TOPIC => create_topic(req, inner).await,
        rc::DELETE_TOPIC_IN_BROKER => delete_topic(req, inner).await,
        rc::GET_ALL_TOPIC_CONFIG => all_topic_configs(req, inner),
        rc::GET_BROKER_RUNTIME_INFO => runtime_info(req, inner),
        rc::GET_TOPIC_STATS_INFO => topic_stats(req, inner),
        rc::GET_CONSUME_STATS => consume_stats(req, inner),
        rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => create_group(req, inner).await,
        rc::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => all_group_configs(req, inner),
        rc::DELETE_SUBSCRIPTIONGROUP => delete_group(req, inner).await,
        rc::GET_MAX_OFFSET | rc::GET_MIN_OFFSET => queue_offset(req, inner).await,
        rc::QUERY_CONSUMER_OFFSET => query_consumer_offset(req, inner).await,
        rc::VIEW_MESSAGE_BY_ID => view_message(req, inner),
        rc::QUERY_MESSAGE => query_message(req, inner),
        rc::SEARCH_OFFSET_BY_TIMESTAMP => search_offset(req, inner),
        rc::GET_EARLIEST_MSG_STORETIME => earliest_store_time(req, inner),
        rc::UPDATE_CONSUMER_OFFSET => update_consumer_offset(req, inner).await,
        rc::HEART_BEAT => heartbeat(req, conn, inner),
        rc::UNREGISTER_CLIENT => unregister_client(req, inner),
        rc::GET_CONSUMER_LIST_BY_GROUP => consumer_list(req, inner),
        rc::LOCK_BATCH_MQ | rc::UNLOCK_BATCH_MQ => queue_locks(req, inner),
        code => Ok(reply(
            req,
            response_code::REQUEST_CODE_NOT_SUPPORTED,
            format!(" request type {code} not supported"),
        )),
    }
    .unwrap_or_else(|e| e);
    if req.is_oneway() && resp.code != response_code::REQUEST_CODE_NOT_SUPPORTED {
        return None;
    }
    Some(resp)
}
