//! The broker's remoting server and its processors for the core paths: send (on the leader,
//! through the proposer), pull with long polling (on any replica, committed data only), topic
//! creation through Raft, queue offsets, heartbeats.
//!
//! Requests on one connection run concurrently (a held pull must not block the sends behind
//! it), at most `requests_in_flight_max` per connection; beyond that a request is answered
//! SYSTEM_BUSY "[OVERLOAD]..." as RocketMQ does. Unknown codes get REQUEST_CODE_NOT_SUPPORTED,
//! even oneway. Malformed frames close the connection; bad headers get the RocketMQ code a Java
//! client expects, with a remark.
//!
//! Lock order: the CommitLog before the dispatcher (the state machine takes them so); most
//! handlers hold one at a time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use rocketraft_protocol::frame::{encode_frame, FrameDecoder};
use rocketraft_protocol::headers::*;
use rocketraft_protocol::{request_code as rc, response_code, RemotingCommand};
use rocketraft_raft::MetaStore;
use rocketraft_raft::{RaftNode, Replica, ReplicaConfig};
use rocketraft_store::io::Storage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

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

/// A connection's read buffer: room for a window of small sends per read syscall.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Queued answers are written together up to about this many bytes per syscall.
const RESPONSE_BATCH_BYTES: usize = 64 * 1024;

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
    /// Each connection's response channel, for requests the broker sends (notifications).
    pub(crate) channels:
        std::sync::Mutex<std::collections::HashMap<ConnId, mpsc::Sender<RemotingCommand>>>,
    pub(crate) next_conn: AtomicU64,
    pub(crate) connections: AtomicUsize,
    /// Spreads sends that name no queue (queueId < 0) over the writable queues.
    pub(crate) next_queue: AtomicU64,
    pub(crate) epoch_ms: i64,
    pub(crate) epoch: tokio::time::Instant,
}

/// A running broker replica's remoting server.
pub struct Broker {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    /// The registration task: on stop it unregisters from every NameServer, then ends.
    register: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The accept loop: on stop it ends and closes the listener.
    accept: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
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
        let addr = listener.local_addr()?;
        let replica = Replica::start(
            node,
            ReplicaConfig {
                proposals_in_flight_max: config.proposals_in_flight_max,
                replication: config.replication,
                ..Default::default()
            },
        );
        let inner = Arc::new(Inner {
            config,
            replica,
            rates: crate::rates::ConsumeRates::default(),
            waiters,
            clients: std::sync::Mutex::new(ClientManager::new()),
            register_now: Arc::new(tokio::sync::Notify::new()),
            channels: std::sync::Mutex::new(std::collections::HashMap::new()),
            next_conn: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            next_queue: AtomicU64::new(0),
            epoch_ms: now_ms,
            // The runtime's clock (virtual under madsim, where it is std's Instant).
            #[allow(clippy::disallowed_methods)]
            epoch: tokio::time::Instant::now(),
        });
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
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
                stop_rx.clone(),
            )));
        }
        tokio::spawn(expire_clients(inner.clone(), stop_rx.clone()));
        let accept = tokio::spawn(accept_loop(listener, inner, stop_rx));
        Ok(Broker {
            addr,
            stop,
            register: std::sync::Mutex::new(register),
            accept: std::sync::Mutex::new(Some(accept)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving: connections close at once; unregistering from the NameServers goes on
    /// in the background (see [`Broker::shutdown_and_unregister`] to wait for it).
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops serving and waits until the listener is closed (its port can be bound again) and
    /// every NameServer was told this replica is leaving (each call bounded by the 3 s call
    /// timeout), so clients stop routing to it at once instead of after the NameServers' 120 s
    /// expiry.
    pub async fn shutdown_and_unregister(&self) {
        self.shutdown();
        let accept = lock(&self.accept).take();
        if let Some(task) = accept {
            let _ = task.await;
        }
        let task = lock(&self.register).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        // Every task that holds the replica's state holds a stop receiver and ends on stop:
        // wait for the last of them, so a restart finds the files and the metadata store free.
        let wait = Duration::from_millis(STOP_WAIT_MS_MAX);
        if tokio::time::timeout(wait, self.stop.closed()).await.is_err() {
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
            _ = stop.changed() => return,
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
        let channels = lock(&inner.channels);
        for conn in conns {
            if let Some(tx) = channels.get(&conn) {
                let notify = RemotingCommand::request(
                    rc::NOTIFY_CONSUMER_IDS_CHANGED,
                    &NotifyConsumerIdsChangedRequestHeader { consumer_group: group.clone() },
                )
                .into_oneway();
                let _ = tx.try_send(notify);
            }
        }
    }
}

async fn accept_loop<S: Storage + Clone, M: MetaStore>(
    listener: TcpListener,
    inner: Arc<Inner<S, M>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.changed() => return,
            r = listener.accept() => r,
        };
        let Ok((stream, peer)) = accepted else { return };
        // Responses are small and must not wait for the client's delayed ACK (Nagle): RocketMQ
        // sets tcpNoDelay too.
        let _ = stream.set_nodelay(true);
        if inner.connections.fetch_add(1, Ordering::SeqCst) >= inner.config.connections_max {
            inner.connections.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(%peer, "too many connections: closing a new one");
            continue;
        }
        let (inner, stop) = (inner.clone(), stop.clone());
        tokio::spawn(async move {
            serve_connection(stream, peer, inner.clone(), stop).await;
            inner.connections.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Serves one connection until the peer closes it, sends a malformed frame, or the broker
/// stops; at a stop the socket closes at once, requests in flight or not (as if the process
/// died), so clients fail over instead of waiting for held pulls and proposals.
async fn serve_connection<S: Storage + Clone, M: MetaStore>(
    stream: TcpStream,
    peer: SocketAddr,
    inner: Arc<Inner<S, M>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let max = inner.config.requests_in_flight_max;
    let (tx, mut rx) = mpsc::channel::<RemotingCommand>(max);
    let conn = inner.next_conn.fetch_add(1, Ordering::Relaxed);
    lock(&inner.channels).insert(conn, tx.clone());
    let in_flight = Arc::new(Semaphore::new(max));
    let handling = in_flight.clone();
    let writer = tokio::spawn(async move {
        let mut out = BytesMut::with_capacity(RESPONSE_BATCH_BYTES);
        // An answer that cannot be framed (over the frame limit) is dropped, and said so: the
        // client's call then times out.
        let encode = |cmd: &RemotingCommand, out: &mut BytesMut| {
            if let Err(e) = encode_frame(cmd, out) {
                tracing::warn!(%peer, code = cmd.code, error = %e, "answer not sent");
            }
        };
        while let Some(resp) = rx.recv().await {
            out.clear();
            encode(&resp, &mut out);
            // Answers to one Raft round become ready together: while other requests of this
            // connection are being handled, let the tasks holding them queue theirs, then write
            // every queued answer with one syscall. A lone answer goes out at once.
            if handling.available_permits() < max {
                tokio::task::yield_now().await;
            }
            while out.len() < RESPONSE_BATCH_BYTES {
                let Ok(next) = rx.try_recv() else { break };
                encode(&next, &mut out);
            }
            if out.is_empty() {
                continue;
            }
            // madsim's TCP sends on flush only; real tokio's flush is a no-op.
            if wr.write_all(&out).await.is_err() || wr.flush().await.is_err() {
                return;
            }
            if out.capacity() > 4 * RESPONSE_BATCH_BYTES {
                out = BytesMut::with_capacity(RESPONSE_BATCH_BYTES);
            }
        }
    });
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    'read: loop {
        loop {
            let cmd = match decoder.decode(&mut buf) {
                Ok(Some(cmd)) => cmd,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "malformed frame: closing the connection");
                    break 'read;
                }
            };
            if cmd.is_response() {
                continue;
            }
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                if !cmd.is_oneway() {
                    let busy = RemotingCommand::response_to(
                        &cmd,
                        response_code::SYSTEM_BUSY,
                        Some("[OVERLOAD]system busy, start flow control for a while".into()),
                    );
                    let _ = tx.send(busy).await;
                }
                continue;
            };
            let (inner, tx, mut stop) = (inner.clone(), tx.clone(), stop.clone());
            tokio::spawn(async move {
                // A stop ends the request too (a held pull would otherwise keep the replica's
                // state, its files and its metadata store's lock, until it timed out).
                let resp = tokio::select! {
                    biased;
                    _ = stop.wait_for(|stopped| *stopped) => None,
                    r = handle(&cmd, peer, conn, &inner) => r,
                };
                drop(permit);
                if let Some(resp) = resp {
                    let _ = tx.send(resp).await;
                }
            });
        }
        if buf.capacity() - buf.len() < READ_BUFFER_BYTES / 4 {
            buf.reserve(READ_BUFFER_BYTES);
        }
        let read = tokio::select! {
            biased;
            _ = stop.changed() => {
                writer.abort();
                break 'read;
            }
            r = rd.read_buf(&mut buf) => r,
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    lock(&inner.channels).remove(&conn);
    let changed = lock(&inner.clients).connection_closed(conn);
    notify_changed(&inner, changed);
    drop(tx);
    let _ = writer.await;
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
