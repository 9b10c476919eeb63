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

use bytes::{Bytes, BytesMut};
use openraft::Raft;
use rocketraft_protocol::body::{
    ConsumeStats, ConsumerListBody, DataVersion, HeartbeatData, JsonBody, JsonStyle, KvTable,
    LockBatchRequestBody, LockBatchResponseBody, MessageQueue, OffsetWrapper, SubscriptionData,
    SubscriptionGroupConfig, SubscriptionGroupWrapper, TopicConfigSerializeWrapper, TopicOffset,
    TopicStatsTable,
};
use rocketraft_protocol::code::perm;
use rocketraft_protocol::frame::{encode_frame, FrameDecoder};
use rocketraft_protocol::headers::*;
use rocketraft_protocol::message::offset_msg_id;
use rocketraft_protocol::names;
use rocketraft_protocol::sysflag;
use rocketraft_protocol::{request_code as rc, response_code, CommandHeader, RemotingCommand};
use rocketraft_raft::types::{ConsumerOffset, GroupMeta, TopicMeta};
use rocketraft_raft::MetaStore;
use rocketraft_raft::{
    MetaCommand, ProposeError, Proposer, ProposerConfig, RaftNode, Replication, Request,
    StateMachine, TypeConfig,
};
use rocketraft_store::io::Storage;
use rocketraft_store::{CommitLog, Dispatcher, QueueOffset};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

use crate::admission::{self, Refusal, SendLimits, Stamp};
use crate::clients::{ClientManager, ConnId, CHANNEL_EXPIRY_MS_DEFAULT, LOCK_EXPIRY_MS_DEFAULT};
use crate::long_poll::PullWaiters;
use crate::offsets::{OffsetBatchConfig, OffsetCommitter};
use crate::register::topic_config;

/// The default broker port.
pub const BROKER_PORT_DEFAULT: u16 = 10911;
/// A connection's read buffer: room for a window of small sends per read syscall.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Queued answers are written together up to about this many bytes per syscall.
const RESPONSE_BATCH_BYTES: usize = 64 * 1024;

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
    /// The longest a pull is held (longer client values are cut). Default 30,000 ms.
    pub suspend_max_ms: u64,
    /// Connections beyond this are closed at once. Default 4,096.
    pub connections_max: usize,
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
    /// Simulation builds only: acknowledge sends before they commit. A known bug, reintroduced
    /// on purpose so the simulation can show its checkers catch it; no real build has it.
    #[cfg(madsim)]
    pub sim_bug_ack_before_commit: bool,
}

impl BrokerConfig {
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
            suspend_max_ms: 30_000,
            connections_max: 4096,
            requests_in_flight_max: 4096,
            namesrv_addrs: Vec::new(),
            register_interval_ms: 30_000,
            auto_create_topic: true,
            proposals_in_flight_max: ProposerConfig::default().in_flight_max,
            replication: Replication::Quorum,
            #[cfg(madsim)]
            sim_bug_ack_before_commit: false,
        }
    }
}

struct Inner<S: Storage + Clone, M: MetaStore> {
    config: BrokerConfig,
    id: u64,
    raft: Raft<TypeConfig>,
    state_machine: StateMachine<S, M>,
    log: Arc<std::sync::Mutex<CommitLog<S>>>,
    dispatcher: Arc<std::sync::Mutex<Dispatcher<S>>>,
    proposer: Proposer,
    offsets: OffsetCommitter,
    /// Messages served per group, for GET_CONSUME_STATS.
    rates: crate::rates::ConsumeRates,
    waiters: Arc<PullWaiters>,
    clients: std::sync::Mutex<ClientManager>,
    /// Asks the registration task for a round now (after a topic is created).
    register_now: Arc<tokio::sync::Notify>,
    /// Each connection's response channel, for requests the broker sends (notifications).
    channels: std::sync::Mutex<std::collections::HashMap<ConnId, mpsc::Sender<RemotingCommand>>>,
    next_conn: AtomicU64,
    connections: AtomicUsize,
    /// Spreads sends that name no queue (queueId < 0) over the writable queues.
    next_queue: AtomicU64,
    epoch_ms: i64,
    epoch: tokio::time::Instant,
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
        let proposer_config = ProposerConfig {
            entry_payload_max_bytes: lock(&node.log).entry_payload_max_bytes(),
            in_flight_max: config.proposals_in_flight_max.max(1),
            replication: config.replication,
            ..Default::default()
        };
        let proposer = Proposer::start(
            node.raft.clone(),
            node.dispatcher.clone(),
            node.local_appends.clone(),
            proposer_config,
        );
        let inner = Arc::new(Inner {
            id: node.raft.metrics().borrow().id,
            config,
            raft: node.raft.clone(),
            state_machine: node.state_machine.clone(),
            log: node.log.clone(),
            dispatcher: node.dispatcher.clone(),
            proposer,
            offsets: OffsetCommitter::start(node.raft.clone(), OffsetBatchConfig::default()),
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
                inner.raft.clone(),
                inner.state_machine.clone(),
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

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms<S: Storage + Clone, M: MetaStore>(inner: &Inner<S, M>) -> i64 {
    inner.epoch_ms + inner.epoch.elapsed().as_millis() as i64
}

/// Tells every member of each changed group to rebalance now (oneway, best effort).
fn notify_changed<S: Storage + Clone, M: MetaStore>(
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

fn reply(req: &RemotingCommand, code: i32, remark: impl Into<String>) -> RemotingCommand {
    RemotingCommand::response_to(req, code, Some(remark.into()))
}

/// Maps an internal error (storage, metadata) to SYSTEM_ERROR with its message as the remark.
fn system_error<E: std::fmt::Display>(req: &RemotingCommand) -> impl Fn(E) -> RemotingCommand + '_ {
    move |e| reply(req, response_code::SYSTEM_ERROR, e.to_string())
}

fn header<H: CommandHeader>(req: &RemotingCommand) -> Result<H, RemotingCommand> {
    req.decode_header::<H>().map_err(system_error(req))
}

/// Checks a topic and a group a request names against RocketMQ's rules (`names`): a name that
/// fails is answered SYSTEM_ERROR with RocketMQ's remark and never reaches Raft or a file name.
fn check_names(
    req: &RemotingCommand,
    topic: Option<&str>,
    group: Option<&str>,
) -> Result<(), RemotingCommand> {
    let bad = |e: names::NameError| reply(req, response_code::SYSTEM_ERROR, e.to_string());
    if let Some(t) = topic {
        names::check_topic(t).map_err(bad)?;
    }
    if let Some(g) = group {
        names::check_group(g).map_err(bad)?;
    }
    Ok(())
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

/// Whether this replica serves as its group's master: it leads, with current state
/// (`leads_with_current_state`: an entry of its own term applied).
fn is_leader<S: Storage + Clone, M: MetaStore>(inner: &Inner<S, M>) -> bool {
    rocketraft_raft::leads_with_current_state(&inner.raft.metrics().borrow())
}

/// How long a newly elected leader's requests wait for its state to become current before it
/// answers as a follower would (the proposer waits as long before its first send).
const MASTER_CATCH_UP_MS: u64 = 3_000;

/// [`is_leader`], waiting out a new leader's catch-up: a replica that was just elected answers
/// once its state holds everything committed before, not from an older state (a restarted
/// replica rebuilds its applied state from its log, and must not serve a consumer an offset
/// or a queue end older than one already served).
async fn master_ready<S: Storage + Clone, M: MetaStore>(inner: &Inner<S, M>) -> bool {
    rocketraft_raft::await_current_leader(&inner.raft, MASTER_CATCH_UP_MS).await
}

fn not_master<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> RemotingCommand {
    // SERVICE_NOT_AVAILABLE is retried on another broker by every RocketMQ producer.
    reply(
        req,
        response_code::SERVICE_NOT_AVAILABLE,
        format!(
            "this replica of {} is not its master; send to the master",
            inner.config.broker_name
        ),
    )
}

pub use rocketraft_protocol::names::{retry_topic, AUTO_CREATE_TOPIC, DLQ_PREFIX};

/// TBW102 as RocketMQ's brokers create it: 8 queues, readable, writable, inheritable.
pub(crate) fn template_topic() -> TopicMeta {
    TopicMeta {
        name: AUTO_CREATE_TOPIC.to_owned(),
        read_queue_nums: 8,
        write_queue_nums: 8,
        perm: perm::READ | perm::WRITE | perm::INHERIT,
        topic_sys_flag: 0,
        order: false,
        filter_type: "SINGLE_TAG".to_owned(),
    }
}

/// RocketMQ's auto-creation: a send to an unknown topic whose default topic is TBW102 creates
/// it with the smaller of the producer's and TBW102's queue counts and TBW102's permissions
/// (minus inheritance). Refused with TOPIC_NOT_EXIST when disabled or for other templates.
async fn auto_create<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
    h: &SendMessageRequestHeader,
) -> Result<TopicMeta, RemotingCommand> {
    let not_exist = || {
        reply(
            req,
            response_code::TOPIC_NOT_EXIST,
            format!("topic[{}] not exist, apply first please!", h.topic),
        )
    };
    // A group's dead-letter topic is created on its first use whatever the setting, as
    // RocketMQ's send-back does: consumers send there after the last retry.
    let dead_letter = h.topic.starts_with(DLQ_PREFIX);
    if !(inner.config.auto_create_topic || dead_letter) || h.default_topic != AUTO_CREATE_TOPIC {
        return Err(not_exist());
    }
    // The master creates TBW102 on its first registration round; before that (or with no
    // NameServers configured) its defaults apply.
    let template = match inner.state_machine.topic(AUTO_CREATE_TOPIC) {
        Ok(t) => t.unwrap_or_else(template_topic),
        Err(e) => return Err(reply(req, response_code::SYSTEM_ERROR, e.to_string())),
    };
    if !perm::is_inherited(template.perm) || !rocketraft_protocol::names::valid_topic_name(&h.topic)
    {
        return Err(not_exist());
    }
    let queues = h.default_topic_queue_nums.clamp(1, template.write_queue_nums.max(1));
    check_queue_room(req, inner, &h.topic, queues)?;
    let meta = TopicMeta {
        name: h.topic.clone(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        perm: template.perm & !perm::INHERIT,
        topic_sys_flag: 0,
        order: false,
        filter_type: template.filter_type,
    };
    propose_metadata(req, inner, vec![MetaCommand::PutTopic(meta.clone())]).await?;
    tracing::info!(topic = %meta.name, queues, "topic auto-created from {AUTO_CREATE_TOPIC}");
    inner.register_now.notify_one();
    Ok(meta)
}

fn topic_of<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
    topic: &str,
) -> Result<TopicMeta, RemotingCommand> {
    match inner.state_machine.topic(topic) {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err(reply(
            req,
            response_code::TOPIC_NOT_EXIST,
            format!("topic[{topic}] not exist, apply first please!"),
        )),
        Err(e) => Err(reply(req, response_code::SYSTEM_ERROR, e.to_string())),
    }
}

async fn send<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    peer: SocketAddr,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: SendMessageRequestHeader =
        if req.code == rc::SEND_MESSAGE_V2 || req.code == rc::SEND_BATCH_MESSAGE {
            header::<SendMessageRequestHeaderV2>(req)?.into()
        } else {
            header(req)?
        };
    if !master_ready(inner).await {
        return Err(not_master(req, inner));
    }
    let refused = |r: Refusal| reply(req, r.code, r.remark);
    admission::check_header(&h, inner.config.advertised_addr).map_err(refused)?;
    let topic = match topic_of(req, inner, &h.topic) {
        Err(e) if e.code == response_code::TOPIC_NOT_EXIST => auto_create(req, inner, &h).await?,
        other => other?,
    };
    if !perm::is_writeable(topic.perm) {
        return Err(reply(
            req,
            response_code::NO_PERMISSION,
            format!("the topic[{}] sending message is forbidden", h.topic),
        ));
    }
    let queues = topic.write_queue_nums.max(1);
    let queue_id = if h.queue_id < 0 {
        (inner.next_queue.fetch_add(1, Ordering::Relaxed) % queues as u64) as i32
    } else if h.queue_id >= queues {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            format!(
                "request queueId[{}] is illegal, topic:[{}] topicConfig.writeQueueNums:[{}]",
                h.queue_id, h.topic, queues
            ),
        ));
    } else {
        h.queue_id
    };
    let entry_payload_max_bytes = {
        let log = lock(&inner.log);
        log.admit_new_writes().map_err(|e| refused(admission::disk_full(&e.to_string())))?;
        log.entry_payload_max_bytes()
    };
    let limits =
        SendLimits { body_max_bytes: inner.config.message_max_bytes, entry_payload_max_bytes };
    let stamp = Stamp {
        born_host: peer,
        store_host: inner.config.advertised_addr,
        store_timestamp_ms: now_ms(inner),
    };
    let encoded = admission::encode_records(req.code, &h, &req.body, queue_id, stamp, limits)
        .map_err(refused)?;
    #[cfg(madsim)]
    if inner.config.sim_bug_ack_before_commit {
        // The bug: answer SEND_OK now and propose in the background, a little later (so a
        // leader killed while sends flow always has acknowledged sends it never proposed,
        // whatever the schedule).
        let proposer = inner.proposer.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = proposer.submit(encoded).await;
        });
        return Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None).with_header(
            &SendMessageResponseHeader {
                msg_id: String::new(),
                queue_id,
                queue_offset: -1,
                transaction_id: None,
                msg_region: Some(inner.config.region_id.clone()),
                trace_on: Some(inner.config.trace_on),
            },
        ));
    }
    match inner.proposer.submit(encoded).await {
        Ok(placed) => {
            let msg_id = placed
                .iter()
                .map(|p| offset_msg_id(inner.config.advertised_addr, p.position.0 as i64))
                .collect::<Vec<_>>()
                .join(",");
            Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None).with_header(
                &SendMessageResponseHeader {
                    msg_id,
                    queue_id,
                    queue_offset: placed[0].queue_offset.0 as i64,
                    transaction_id: None,
                    msg_region: Some(inner.config.region_id.clone()),
                    trace_on: Some(inner.config.trace_on),
                },
            ))
        }
        Err(ProposeError::NotLeader { .. }) => Err(not_master(req, inner)),
        Err(ProposeError::Overloaded) => Err(reply(
            req,
            response_code::SYSTEM_BUSY,
            "[OVERLOAD]system busy, start flow control for a while",
        )),
        Err(ProposeError::Invalid(why)) => Err(reply(req, response_code::MESSAGE_ILLEGAL, why)),
        Err(e) => Err(reply(req, response_code::SYSTEM_ERROR, e.to_string())),
    }
}

enum Lookup {
    Found { body: Vec<u8>, messages: usize, next: QueueOffset },
    NoMatch { next: QueueOffset },
    NoNew,
    Moved { next: QueueOffset },
}

fn lookup<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    topic: &str,
    queue_id: i32,
    offset: QueueOffset,
    max: usize,
    sub: &SubscriptionData,
) -> Result<(Lookup, QueueOffset, QueueOffset), String> {
    let (entries, min, max_offset) = {
        let d = inner.dispatcher.lock().unwrap_or_else(|p| p.into_inner());
        let Some(q) = d.queue(topic, queue_id) else {
            return Ok((Lookup::NoNew, QueueOffset(0), QueueOffset(0)));
        };
        let (min, max_offset) = (q.min_offset(), q.max_offset());
        if offset < min || offset > max_offset {
            return Ok((
                Lookup::Moved { next: if offset < min { min } else { max_offset } },
                min,
                max_offset,
            ));
        }
        if offset == max_offset {
            return Ok((Lookup::NoNew, min, max_offset));
        }
        // Scan up to 16 entries per wanted message for tag matches.
        (q.range(offset, max * 16).map_err(|e| e.to_string())?, min, max_offset)
    };
    let mut wanted = Vec::new();
    let mut scanned = 0u64;
    let mut bytes = 0usize;
    for e in &entries {
        if sub.matches_all() || sub.code_set.contains(&(e.tags_code as i32)) {
            // A byte budget per response, as RocketMQ's; the first record always goes.
            if !wanted.is_empty() && bytes + e.size as usize > inner.config.pull_bytes_max {
                break;
            }
            bytes += e.size as usize;
            wanted.push(*e);
        }
        scanned += 1;
        if wanted.len() >= max {
            break;
        }
    }
    let next = QueueOffset(offset.0 + scanned);
    if wanted.is_empty() {
        return Ok((Lookup::NoMatch { next }, min, max_offset));
    }
    let mut body = Vec::new();
    {
        let log = inner.log.lock().unwrap_or_else(|p| p.into_inner());
        let log_start = log.start().position;
        if wanted[0].position < log_start {
            drop(log);
            return removed(inner, topic, queue_id, log_start).map(|gone| (gone, min, max_offset));
        }
        log.read_queue_records_into(&wanted, &mut body).map_err(|e| e.to_string())?;
    }
    Ok((Lookup::Found { body, messages: wanted.len(), next }, min, max_offset))
}

/// Records retention removed while the queue still points to them (it is trimmed once the
/// Raft purge completes): RocketMQ's "message was removing". The master sends the reader on to
/// the first message still stored (PULL_RETRY_IMMEDIATELY, which every client follows at
/// once); a follower says the offset moved, which clients take only from a master, since the
/// master may still hold what this replica removed.
fn removed<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    topic: &str,
    queue_id: i32,
    log_start: rocketraft_store::CommitLogOffset,
) -> Result<Lookup, String> {
    let d = inner.dispatcher.lock().unwrap_or_else(|p| p.into_inner());
    let next = match d.queue(topic, queue_id) {
        Some(q) => q.first_at_or_after(log_start).map_err(|e| e.to_string())?,
        None => return Ok(Lookup::NoNew),
    };
    Ok(if is_leader(inner) { Lookup::NoMatch { next } } else { Lookup::Moved { next } })
}

async fn pull<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: PullMessageRequestHeader = header(req)?;
    // A new master serves pulls from current queues, never from shorter ones (it would send
    // readers back with OFFSET_MOVED).
    master_ready(inner).await;
    let topic = topic_of(req, inner, &h.topic)?;
    if h.queue_id < 0 || h.queue_id >= topic.read_queue_nums.max(1) {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            format!(
                "queueId[{}] is illegal, topic:[{}] topicConfig.readQueueNums:[{}]",
                h.queue_id, h.topic, topic.read_queue_nums
            ),
        ));
    }
    let sub = match (&h.subscription, h.sys_flag & sysflag::pull::SUBSCRIPTION != 0) {
        (Some(expr), true) => SubscriptionData::tag(h.topic.clone(), expr, h.sub_version),
        _ => SubscriptionData::tag(h.topic.clone(), "*", h.sub_version),
    };
    check_names(req, Some(&h.topic), Some(&h.consumer_group))?;
    if h.sys_flag & sysflag::pull::COMMIT_OFFSET != 0 && h.commit_offset >= 0 && is_leader(inner) {
        // The commit-offset piggyback: the consumer's progress rides on its pull.
        inner.offsets.commit(ConsumerOffset {
            group: h.consumer_group.clone(),
            topic: h.topic.clone(),
            queue_id: h.queue_id,
            offset: h.commit_offset as u64,
        });
    }
    let offset = QueueOffset(u64::try_from(h.queue_offset).unwrap_or(u64::MAX));
    let max = h.max_msg_nums.clamp(1, inner.config.pull_batch_max) as usize;
    let suspend = h.sys_flag & sysflag::pull::SUSPEND != 0;
    let hold = Duration::from_millis(
        (h.suspend_timeout_millis.max(0) as u64).min(inner.config.suspend_max_ms),
    );
    let notifier = inner.waiters.notifier(&h.topic, h.queue_id);
    let deadline = tokio::time::sleep(hold);
    tokio::pin!(deadline);
    loop {
        // Register interest before looking, so an arrival between the look and the wait wakes us.
        let woken = notifier.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let (found, min, max_offset) = lookup(inner, &h.topic, h.queue_id, offset, max, &sub)
            .map_err(|e| reply(req, response_code::SYSTEM_ERROR, e))?;
        let respond = |code: i32, next: QueueOffset, body: Vec<u8>, remark: &str| {
            let mut resp = reply(req, code, remark).with_header(&PullMessageResponseHeader {
                suggest_which_broker_id: 0,
                next_begin_offset: next.0 as i64,
                min_offset: min.0 as i64,
                max_offset: max_offset.0 as i64,
            });
            resp.body = body.into();
            resp
        };
        match found {
            Lookup::Found { body, messages, next } => {
                inner.rates.record(&h.consumer_group, messages as u64, now_ms(inner));
                return Ok(respond(response_code::SUCCESS, next, body, "FOUND"));
            }
            Lookup::NoMatch { next } => {
                return Ok(respond(
                    response_code::PULL_RETRY_IMMEDIATELY,
                    next,
                    Vec::new(),
                    "NO_MATCHED_MESSAGE",
                ))
            }
            Lookup::Moved { next } => {
                return Ok(respond(
                    response_code::PULL_OFFSET_MOVED,
                    next,
                    Vec::new(),
                    "OFFSET_MOVED",
                ))
            }
            Lookup::NoNew if !suspend => {
                return Ok(respond(
                    response_code::PULL_NOT_FOUND,
                    offset,
                    Vec::new(),
                    "NO_NEW_MESSAGE",
                ))
            }
            Lookup::NoNew => {
                tokio::select! {
                    biased;
                    _ = &mut woken => continue,
                    _ = &mut deadline => return Ok(respond(response_code::PULL_NOT_FOUND, offset, Vec::new(), "NO_NEW_MESSAGE")),
                }
            }
        }
    }
}

async fn create_topic<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: CreateTopicRequestHeader = header(req)?;
    check_names(req, Some(&h.topic), None)?;
    if !FILTER_TYPES.contains(&h.topic_filter_type.as_str()) {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            "topicFilterType must be SINGLE_TAG or MULTI_TAG",
        ));
    }
    if !(1..=1024).contains(&h.read_queue_nums) || !(1..=1024).contains(&h.write_queue_nums) {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            "queue counts must be between 1 and 1024",
        ));
    }
    check_queue_room(req, inner, &h.topic, h.read_queue_nums.max(h.write_queue_nums))?;
    let meta = TopicMeta {
        name: h.topic,
        read_queue_nums: h.read_queue_nums,
        write_queue_nums: h.write_queue_nums,
        perm: h.perm,
        topic_sys_flag: h.topic_sys_flag.unwrap_or(0),
        order: h.order.unwrap_or(false),
        filter_type: h.topic_filter_type,
    };
    let done = propose_metadata(req, inner, vec![MetaCommand::PutTopic(meta)]).await?;
    // Publish the new topic's queues to the NameServers now, not in 30 s.
    inner.register_now.notify_one();
    Ok(done)
}

/// Replicates metadata commands through Raft and answers SUCCESS once they are committed and
/// applied on the leader; followers answer NOT_MASTER with the leader's address.
async fn propose_metadata<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
    commands: Vec<MetaCommand>,
) -> Result<RemotingCommand, RemotingCommand> {
    if !master_ready(inner).await {
        return Err(not_master(req, inner));
    }
    match inner.raft.client_write(Request::Metadata(commands)).await {
        Ok(_) => Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)),
        Err(e) if e.forward_to_leader().is_some() => Err(not_master(req, inner)),
        Err(e) => Err(reply(req, response_code::SYSTEM_ERROR, e.to_string())),
    }
}

/// GET_BROKER_RUNTIME_INFO: RocketMQ's keys where this broker has the figure (version, boot
/// time, uptime, CommitLog offsets), then this replica's Raft state under `raft*` keys.
fn runtime_info<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let (min, max, flushed, io) = {
        let log = lock(&inner.log);
        (log.start().position.0, log.end().position.0, log.flushed().position.0, log.io_counts())
    };
    let m = inner.raft.metrics().borrow().clone();
    let up = inner.epoch.elapsed().as_secs();
    let runtime = format!(
        "[ {} days, {} hours, {} minutes, {} seconds ]",
        up / 86_400,
        up / 3_600 % 24,
        up / 60 % 60,
        up % 60
    );
    let index = |l: Option<openraft::LogId<u64>>| l.map_or(0, |l| l.index).to_string();
    let members: Vec<String> = m.membership_config.voter_ids().map(|id| id.to_string()).collect();
    // On the leader: how far each replica's log matches its own (what `cluster list` shows as
    // lag, including replicas that are down and so not registered anywhere).
    let matched = m.replication.iter().flatten().map(|(id, log)| {
        (
            format!("raftMatched.{id}"),
            log.map_or_else(|| "none".to_owned(), |l| l.index.to_string()),
        )
    });
    let table: std::collections::BTreeMap<String, String> = [
        ("brokerVersion", rocketraft_protocol::code::version::CURRENT.to_string()),
        ("brokerVersionDesc", "V4_9_8".to_owned()),
        ("bootTimestamp", inner.epoch_ms.to_string()),
        ("runtime", runtime),
        ("commitLogMinOffset", min.to_string()),
        ("commitLogMaxOffset", max.to_string()),
        ("commitLogFlushedOffset", flushed.to_string()),
        // Since the replica started: Raft appends (rounds), entries, group-commit flushes and
        // the file range syncs they ran (entry bytes and index slots).
        ("commitLogAppends", io.appends.to_string()),
        ("commitLogEntries", io.entries.to_string()),
        ("commitLogFlushes", io.flush_jobs.to_string()),
        ("commitLogFileSyncs", io.file_syncs.to_string()),
        ("clientConnections", inner.connections.load(Ordering::Relaxed).to_string()),
        ("raftNodeId", inner.id.to_string()),
        ("raftRole", format!("{:?}", m.state)),
        ("raftTerm", m.current_term.to_string()),
        ("raftLeader", m.current_leader.map_or_else(|| "none".to_owned(), |l| l.to_string())),
        ("raftLastLogIndex", m.last_log_index.unwrap_or(0).to_string()),
        ("raftLastApplied", index(m.last_applied)),
        ("raftSnapshot", index(m.snapshot)),
        ("raftMembers", members.join(",")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .chain(matched)
    .collect();
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_body(KvTable { table }.to_json(JsonStyle::Standard)))
}

/// The store time of the message at `offset` of a queue, 0 if the queue has none there.
fn store_time_at<S: Storage + Clone>(
    log: &CommitLog<S>,
    d: &Dispatcher<S>,
    topic: &str,
    queue_id: i32,
    offset: u64,
) -> rocketraft_store::StoreResult<i64> {
    match d.queue(topic, queue_id).map(|q| q.get(QueueOffset(offset))).transpose()?.flatten() {
        Some(e) => store_time_in(log, e),
        None => Ok(0),
    }
}

/// GET_TOPIC_STATS_INFO: each queue's min and max offsets and the store time of its newest
/// message.
fn topic_stats<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: TopicRequestHeader = header(req)?;
    let t = topic_of(req, inner, &h.topic)?;
    let log = lock(&inner.log);
    let d = lock(&inner.dispatcher);
    let mut table = TopicStatsTable::default();
    for queue_id in 0..t.read_queue_nums.max(t.write_queue_nums) {
        let (min, max) =
            d.queue(&t.name, queue_id).map_or((0, 0), |q| (q.min_offset().0, q.max_offset().0));
        let last = match max.checked_sub(1) {
            Some(newest) => {
                store_time_at(&log, &d, &t.name, queue_id, newest).map_err(system_error(req))?
            }
            None => 0,
        };
        let q = MessageQueue {
            broker_name: inner.config.broker_name.clone(),
            queue_id,
            topic: t.name.clone(),
        };
        table.offset_table.insert(
            q,
            TopicOffset {
                last_update_timestamp: last,
                max_offset: max as i64,
                min_offset: min as i64,
            },
        );
    }
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None).with_body(table.encode()))
}

/// GET_CONSUME_STATS: a group's committed offset against each queue's max offset, for one topic
/// or for every topic the group subscribes to or has committed on, and the messages per second
/// this replica served the group over the last minute.
fn consume_stats<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: GetConsumeStatsRequestHeader = header(req)?;
    let topics: std::collections::BTreeSet<String> = match h.topic.filter(|t| !t.is_empty()) {
        Some(t) => [t].into(),
        None => {
            let mut topics = lock(&inner.clients).subscribed_topics(&h.consumer_group);
            topics.extend(
                inner.state_machine.offset_topics(&h.consumer_group).map_err(system_error(req))?,
            );
            topics
        }
    };
    let mut stats = ConsumeStats {
        consume_tps: inner.rates.tps(&h.consumer_group, now_ms(inner)),
        ..Default::default()
    };
    for topic in topics {
        let Some(t) = inner.state_machine.topic(&topic).map_err(system_error(req))? else {
            continue;
        };
        for queue_id in 0..t.read_queue_nums.max(t.write_queue_nums) {
            let committed = inner
                .state_machine
                .consumer_offset(&h.consumer_group, &topic, queue_id)
                .map_err(system_error(req))?
                .unwrap_or(0);
            let log = lock(&inner.log);
            let d = lock(&inner.dispatcher);
            let max = d.queue(&topic, queue_id).map_or(0, |q| q.max_offset().0);
            let last = match committed.checked_sub(1) {
                Some(consumed) => store_time_at(&log, &d, &topic, queue_id, consumed)
                    .map_err(system_error(req))?,
                None => 0,
            };
            let q = MessageQueue {
                broker_name: inner.config.broker_name.clone(),
                queue_id,
                topic: topic.clone(),
            };
            stats.offset_table.insert(
                q,
                OffsetWrapper {
                    broker_offset: max as i64,
                    consumer_offset: committed as i64,
                    last_timestamp: last,
                },
            );
        }
    }
    if stats.offset_table.is_empty() {
        return Err(reply(
            req,
            response_code::CONSUMER_NOT_ONLINE,
            format!("the consumer group {} has no subscription or offset here", h.consumer_group),
        ));
    }
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None).with_body(stats.encode()))
}

/// DELETE_TOPIC_IN_BROKER: the topic stops being routed and accepting sends on every replica.
/// Its stored messages stay readable by offset until retention removes their files.
async fn delete_topic<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: TopicRequestHeader = header(req)?;
    check_names(req, Some(&h.topic), None)?;
    let command = MetaCommand::DeleteTopic { topic: h.topic };
    let done = propose_metadata(req, inner, vec![command]).await?;
    inner.register_now.notify_one();
    Ok(done)
}

/// The version stamped on metadata tables: the Raft index they were read at.
fn data_version<S: Storage + Clone, M: MetaStore>(inner: &Inner<S, M>) -> DataVersion {
    let applied = inner.raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
    DataVersion { counter: applied as i64, timestamp: applied as i64 }
}

fn all_topic_configs<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let data_version = data_version(inner);
    let topics = inner.state_machine.topics().map_err(system_error(req))?;
    let body = TopicConfigSerializeWrapper {
        data_version,
        topic_config_table: topics.into_iter().map(|t| (t.name.clone(), topic_config(t))).collect(),
    };
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_body(body.to_json(JsonStyle::Standard)))
}

/// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: the body is a `SubscriptionGroupConfig`.
async fn create_group<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let g = SubscriptionGroupConfig::from_json(&req.body).map_err(system_error(req))?;
    check_names(req, None, Some(&g.group_name))?;
    if g.retry_queue_nums < 0 || g.retry_max_times < 0 {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            "a subscription group needs a name and non-negative retry settings",
        ));
    }
    let meta = GroupMeta {
        name: g.group_name,
        consume_enable: g.consume_enable,
        consume_broadcast_enable: g.consume_broadcast_enable,
        retry_queue_nums: g.retry_queue_nums,
        retry_max_times: g.retry_max_times,
    };
    propose_metadata(req, inner, vec![MetaCommand::PutGroup(meta)]).await
}

fn all_group_configs<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let data_version = data_version(inner);
    let groups = inner.state_machine.groups().map_err(system_error(req))?;
    let table = groups
        .into_iter()
        .map(|g| {
            let mut c = SubscriptionGroupConfig::new(g.name.clone());
            c.consume_enable = g.consume_enable;
            c.consume_broadcast_enable = g.consume_broadcast_enable;
            c.retry_queue_nums = g.retry_queue_nums;
            c.retry_max_times = g.retry_max_times;
            (g.name, c)
        })
        .collect();
    let body = SubscriptionGroupWrapper { data_version, subscription_group_table: table };
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_body(body.to_json(JsonStyle::Standard)))
}

/// DELETE_SUBSCRIPTIONGROUP: the group's configuration and all its committed offsets go.
async fn delete_group<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: DeleteSubscriptionGroupRequestHeader = header(req)?;
    check_names(req, None, Some(&h.group_name))?;
    propose_metadata(req, inner, vec![MetaCommand::DeleteGroup { group: h.group_name }]).await
}

async fn queue_offset<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: TopicQueueRequestHeader = header(req)?;
    master_ready(inner).await;
    let d = inner.dispatcher.lock().unwrap_or_else(|p| p.into_inner());
    let (min, max) =
        d.queue(&h.topic, h.queue_id).map_or((0, 0), |q| (q.min_offset().0, q.max_offset().0));
    let offset = if req.code == rc::GET_MAX_OFFSET { max } else { min };
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_header(&OffsetResponseHeader { offset: offset as i64 }))
}

async fn query_consumer_offset<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: QueryConsumerOffsetRequestHeader = header(req)?;
    // A master answers from current state; a follower from its own, which may lag (RocketMQ's
    // slaves answer from theirs too; clients ask the master while it is up).
    master_ready(inner).await;
    let stored = inner
        .state_machine
        .consumer_offset(&h.consumer_group, &h.topic, h.queue_id)
        .map_err(system_error(req))?;
    let offset = match stored {
        Some(o) => o,
        None if h.set_zero_if_not_found == Some(false) => {
            return Err(reply(req, response_code::QUERY_NOT_FOUND, "the group has no offset here"));
        }
        None => {
            // RocketMQ: no stored offset and the queue still starts at 0 -> 0; otherwise the
            // consumer decides where to start (CONSUME_FROM_*).
            let min = inner
                .dispatcher
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .queue(&h.topic, h.queue_id)
                .map_or(0, |q| q.min_offset().0);
            if min > 0 {
                return Err(reply(
                    req,
                    response_code::QUERY_NOT_FOUND,
                    "Not found, maybe this group consumer boot first",
                ));
            }
            0
        }
    };
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_header(&OffsetResponseHeader { offset: offset as i64 }))
}

/// Oneway commits are batched and forgotten; a commit that expects an answer gets it once the
/// offset is committed through Raft (SYSTEM_ERROR if that failed), so a consumer that hands a
/// queue over knows every replica already has the offset.
async fn update_consumer_offset<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: UpdateConsumerOffsetRequestHeader = header(req)?;
    check_names(req, Some(&h.topic), Some(&h.consumer_group))?;
    if !master_ready(inner).await {
        return Err(not_master(req, inner));
    }
    if h.commit_offset < 0 {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            format!("commitOffset {} is negative", h.commit_offset),
        ));
    }
    let offset = ConsumerOffset {
        group: h.consumer_group,
        topic: h.topic,
        queue_id: h.queue_id,
        offset: h.commit_offset as u64,
    };
    if req.is_oneway() {
        inner.offsets.commit(offset);
    } else if !inner.offsets.commit_and_wait(offset).await {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            "the offset was not committed (leader changed or too many commits waiting); send it again",
        ));
    }
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None))
}

fn heartbeat<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    conn: ConnId,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let mut data = HeartbeatData::from_json(&req.body).map_err(system_error(req))?;
    // A group's name becomes its retry topic (a ConsumeQueue directory). One client process
    // sends one heartbeat for all its groups: the valid ones are registered, the others are
    // left out and named in the answer (SYSTEM_ERROR, which clients log).
    let mut refused: Option<RemotingCommand> = None;
    data.consumer_data_set.retain(|c| {
        let names = std::iter::once(check_names(req, None, Some(&c.group_name)))
            .chain(c.subscription_data_set.iter().map(|s| check_names(req, Some(&s.topic), None)));
        match names.collect::<Result<Vec<()>, RemotingCommand>>() {
            Ok(_) => true,
            Err(e) => {
                refused.get_or_insert(e);
                false
            }
        }
    });
    data.producer_data_set.retain(|p| match check_names(req, None, Some(&p.group_name)) {
        Ok(()) => true,
        Err(e) => {
            refused.get_or_insert(e);
            false
        }
    });
    let changed = lock(&inner.clients).heartbeat(conn, &data, now_ms(inner));
    notify_changed(inner, changed);
    if is_leader(inner) {
        // As RocketMQ's defaults (autoCreateSubscriptionGroup): each consumer group gets its
        // subscription group and its retry topic (1 queue, read-write) on first contact.
        // At most HEARTBEAT_GROUPS_CREATED_MAX groups per heartbeat (the rest on the next one),
        // so one Raft entry stays small; none past the group's queue limit.
        let mut commands = Vec::new();
        let mut room = queues_left(inner);
        for c in data.consumer_data_set.iter().take(HEARTBEAT_GROUPS_CREATED_MAX) {
            let retry = retry_topic(&c.group_name);
            if matches!(inner.state_machine.topic(&retry), Ok(None)) && room > 0 {
                room -= 1;
                commands.push(MetaCommand::PutTopic(TopicMeta {
                    name: retry,
                    read_queue_nums: 1,
                    write_queue_nums: 1,
                    perm: perm::READ | perm::WRITE,
                    topic_sys_flag: 0,
                    order: false,
                    filter_type: "SINGLE_TAG".into(),
                }));
            }
            if matches!(inner.state_machine.group(&c.group_name), Ok(None)) {
                commands.push(MetaCommand::PutGroup(GroupMeta {
                    name: c.group_name.clone(),
                    consume_enable: true,
                    consume_broadcast_enable: true,
                    retry_queue_nums: 1,
                    retry_max_times: 16,
                }));
            }
        }
        if !commands.is_empty() {
            let (raft, register_now) = (inner.raft.clone(), inner.register_now.clone());
            tokio::spawn(async move {
                match raft.client_write(Request::Metadata(commands)).await {
                    Ok(_) => register_now.notify_one(),
                    Err(e) => {
                        tracing::debug!(error = %e, "retry topic not created (the next heartbeat tries again)")
                    }
                }
            });
        }
    }
    if let Some(refused) = refused {
        return Err(refused);
    }
    // The response's version (409) is what Java clients record as the broker's version.
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None))
}

/// The most consumer groups one heartbeat creates (retry topic and subscription group).
const HEARTBEAT_GROUPS_CREATED_MAX: usize = 64;

/// The queues all topics hold together (each counted by its larger queue count).
fn queues_held<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    except: Option<&str>,
) -> usize {
    inner
        .state_machine
        .topics()
        .unwrap_or_default()
        .iter()
        .filter(|t| Some(t.name.as_str()) != except)
        .map(|t| t.read_queue_nums.max(t.write_queue_nums).max(0) as usize)
        .sum()
}

/// How many more queues the group may create.
fn queues_left<S: Storage + Clone, M: MetaStore>(inner: &Inner<S, M>) -> usize {
    inner.config.queues_max.saturating_sub(queues_held(inner, None))
}

/// Refuses a topic of `queues` queues (replacing `topic`'s own) past `queues_max`.
fn check_queue_room<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
    topic: &str,
    queues: i32,
) -> Result<(), RemotingCommand> {
    let held = queues_held(inner, Some(topic));
    if held + queues.max(0) as usize > inner.config.queues_max {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            format!(
                "topic[{topic}] needs {queues} queues and the group holds {held} of its \
                 queues_max {}: delete topics or raise queues_max",
                inner.config.queues_max
            ),
        ));
    }
    Ok(())
}

/// RocketMQ's topic filter types (`TopicFilterType`).
const FILTER_TYPES: [&str; 2] = ["SINGLE_TAG", "MULTI_TAG"];

fn unregister_client<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: UnregisterClientRequestHeader = header(req)?;
    let changed = lock(&inner.clients).unregister(
        &h.client_id,
        h.producer_group.as_deref(),
        h.consumer_group.as_deref(),
    );
    notify_changed(inner, changed);
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None))
}

fn consumer_list<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: GetConsumerListByGroupRequestHeader = header(req)?;
    let ids = lock(&inner.clients).consumer_ids(&h.consumer_group);
    if ids.is_empty() {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            format!("no consumer for this group, {}", h.consumer_group),
        ));
    }
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_body(ConsumerListBody { consumer_id_list: ids }.to_json(JsonStyle::Standard)))
}

fn queue_locks<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let body = LockBatchRequestBody::from_json(&req.body).map_err(system_error(req))?;
    let mut clients = lock(&inner.clients);
    if req.code == rc::UNLOCK_BATCH_MQ {
        clients.unlock(&body.consumer_group, &body.client_id, &body.mq_set);
        return Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None));
    }
    let held = clients.lock(
        &body.consumer_group,
        &body.client_id,
        &body.mq_set,
        now_ms(inner),
        LOCK_EXPIRY_MS_DEFAULT,
    );
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_body(LockBatchResponseBody { lock_ok_mq_set: held }.to_json(JsonStyle::Standard)))
}

/// The record at a CommitLog position (its size is its first field), checked whole.
fn record_at<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    position: u64,
) -> Result<Bytes, String> {
    let log = lock(&inner.log);
    let head =
        log.read_raw(rocketraft_store::CommitLogOffset(position), 4).map_err(|e| e.to_string())?;
    let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let mut records = log
        .read_records(&[(rocketraft_store::CommitLogOffset(position), size)])
        .map_err(|e| e.to_string())?;
    Ok(records.remove(0))
}

fn store_time_in<S: Storage>(
    log: &CommitLog<S>,
    e: rocketraft_store::CqEntry,
) -> rocketraft_store::StoreResult<i64> {
    let raw = log.read_records(&[(e.position, e.size)])?;
    rocketraft_protocol::message::RecordView::decode(&raw[0]).map(|r| r.store_timestamp).map_err(
        |err| rocketraft_store::StoreError::Corrupt {
            position: e.position,
            reason: err.to_string(),
        },
    )
}

fn view_message<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: ViewMessageRequestHeader = header(req)?;
    let record = u64::try_from(h.offset)
        .map_err(|_| "negative offset".to_owned())
        .and_then(|p| record_at(inner, p))
        .map_err(|e| {
            reply(
                req,
                response_code::SYSTEM_ERROR,
                format!("can not find message by the offset {}: {e}", h.offset),
            )
        })?;
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None).with_body(record))
}

/// The most records one QUERY_MESSAGE by UNIQ_KEY returns (RocketMQ's `defaultQueryMaxNum`).
const UNIQUE_KEY_QUERY_MAX: usize = 32;
/// The most records any QUERY_MESSAGE returns.
const QUERY_MAX: usize = 64;

fn query_message<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    use rocketraft_protocol::message::{property, split_keys, RecordView};
    let h: QueryMessageRequestHeader = header(req)?;
    let by_uniq = req.ext_field(UNIQUE_KEY_QUERY).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let max =
        if by_uniq { UNIQUE_KEY_QUERY_MAX } else { (h.max_num.max(1) as usize).min(QUERY_MAX) };
    let (positions, (last_ts, last_phy)) = {
        let d = lock(&inner.dispatcher);
        let index = d.index();
        let found = index
            .query(&h.topic, &h.key, h.begin_timestamp, h.end_timestamp, max)
            .map_err(system_error(req))?;
        (found, index.last_update())
    };
    let mut body = Vec::new();
    for p in positions {
        let Ok(record) = record_at(inner, p.0) else { continue };
        let Ok(r) = RecordView::decode(&record) else { continue };
        // The index finds by hash: keep only records that really carry the key.
        let matches = r.topic == h.topic
            && (r.property(property::UNIQ_KEY) == Some(h.key.as_str())
                || r.property(property::KEYS).is_some_and(|k| split_keys(k).any(|k| k == h.key)));
        if matches {
            body.extend_from_slice(&record);
        }
    }
    if body.is_empty() {
        return Err(reply(
            req,
            response_code::QUERY_NOT_FOUND,
            format!("can not find message, maybe time range not correct: key {}", h.key),
        ));
    }
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_header(&QueryMessageResponseHeader {
            index_last_update_timestamp: last_ts,
            index_last_update_phyoffset: last_phy,
        })
        .with_body(body))
}

fn search_offset<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: SearchOffsetRequestHeader = header(req)?;
    // Lock order: the CommitLog before the dispatcher (as the state machine takes them).
    let log = lock(&inner.log);
    let d = lock(&inner.dispatcher);
    let offset = match d.queue(&h.topic, h.queue_id) {
        Some(q) => {
            q.search_by_timestamp(h.timestamp, |e| store_time_in(&log, e))
                .map_err(system_error(req))?
                .0
        }
        None => 0,
    };
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_header(&OffsetResponseHeader { offset: offset as i64 }))
}

fn earliest_store_time<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: TopicQueueRequestHeader = header(req)?;
    let first = {
        let d = lock(&inner.dispatcher);
        d.queue(&h.topic, h.queue_id).and_then(|q| q.get(q.min_offset()).ok().flatten())
    };
    let Some(first) = first else {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            format!("no message in {}/{}", h.topic, h.queue_id),
        ));
    };
    let timestamp = store_time_in(&lock(&inner.log), first).map_err(system_error(req))?;
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_header(&GetEarliestMsgStoretimeResponseHeader { timestamp }))
}
