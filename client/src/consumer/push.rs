//! The push consumer: rebalances a group's queues among its members, long-polls each queue it
//! owns, hands the messages to the listener, and commits offsets.
//!
//! Delivery rules:
//! - a queue's committed offset is the lowest offset not yet consumed (messages in flight or
//!   waiting for a retry hold it back), so nothing is skipped: after a crash the next owner
//!   starts at or before the first message not consumed (at-least-once);
//! - **queue hand-over through broker locks** (clustering): a member takes a queue only once
//!   it holds the queue's lock on the group's master, and a member that gives a queue up first
//!   stops, lets running listener calls finish, commits (the broker answers once the offset is
//!   committed through Raft) and only then unlocks. So a rebalance among live members
//!   redelivers nothing. RocketMQ's concurrent consumers take queues without locks, which
//!   redelivers whatever the previous owner had not yet committed; its orderly consumers lock
//!   as we do. A member that dies loses its locks when its connection closes;
//! - orderly listeners get one queue's messages one batch at a time, in queue order, and only
//!   while the queue's lock is held (renewed every `lock_renew_ms`, trusted for 30 s);
//! - a listener that returns [`ConsumeResult::Later`] (or panics): a concurrent clustering
//!   consumer gives the message back to the broker (CONSUMER_SEND_MSG_BACK), which stores a
//!   copy in `%RETRY%<group>` delayed by level `3 + reconsume_times` (10 s, 30 s, 1 min ...
//!   2 h), or in `%DLQ%<group>` once it was consumed `max_reconsume_times` times; the group
//!   subscribes to its retry topic, so the copy comes back with `reconsume_times` counted up
//!   and the original's offset is committed at once. If the broker cannot take it back, the
//!   consumer re-sends it to the retry topic itself (RocketMQ's fallback), and only if that
//!   fails too is it retried in the client after `retry_delays_ms[n]`. Orderly consumers (and
//!   broadcasting ones, which share no retry topic) retry in the client: orderly after
//!   `orderly_retry_ms`, holding the queue, as RocketMQ's do, until a message was consumed
//!   `orderly_max_reconsume_times` more times (unbounded by default, RocketMQ's
//!   `Integer.MAX_VALUE`): it then goes to `%DLQ%<group>` and the queue moves on;
//! - bounded: at most `queue_cached_messages_max` messages and `queue_cached_bytes_max` bytes
//!   wait per queue (pulling pauses beyond), at most `consume_concurrency_max` listener calls
//!   run at once.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rocketraft_protocol::admin::{ConsumerRunningInfo, ProcessQueueInfo};
use rocketraft_protocol::body::{
    ConsumeFromWhere, ConsumeType, ConsumerData, HeartbeatData, MessageModel, MessageQueue,
    SubscriptionData,
};
use rocketraft_protocol::headers::{
    ConsumerSendMsgBackRequestHeader, GetConsumerRunningInfoRequestHeader,
    SendMessageRequestHeaderV2,
};
use rocketraft_protocol::message::RecordView;
use rocketraft_protocol::message::{properties_to_string, property};
use rocketraft_protocol::{request_code, response_code, RemotingCommand};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};

use super::Selector;
use super::{
    commit_offset, group_members, initial_offset, lock_queues, offsets, pull, start_offset,
    unlock_queues, CatchPanic, ConsumeFrom, ConsumeResult, MessageListener, Pulled,
};
use crate::clock;
use crate::core::{expect_success, ClientConfig, Core};
use crate::error::{ClientError, Result};
use crate::lock;
use crate::message::MessageExt;
use crate::select::{subscribe_queues, Allocation};

/// RocketMQ's retry backoff (delay levels 3..18: 10 s, 30 s, 1 min ... 2 h).
pub const RETRY_DELAYS_MS_DEFAULT: [u64; 16] = [
    10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000, 420_000, 480_000, 540_000,
    600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000,
];

/// How long a client trusts a queue lock after taking it (RocketMQ's 30 s; the broker keeps it
/// 60 s).
const LOCK_TRUST_MS: u64 = 30_000;

/// Push consumer settings. Defaults follow RocketMQ's `DefaultMQPushConsumer`.
#[derive(Debug, Clone)]
pub struct PushConsumerConfig {
    pub client: ClientConfig,
    /// The consumer group.
    pub group: String,
    /// Topic -> what to take from it: a tag expression (`*`, `TagA || TagB`) or a SQL92
    /// selector.
    pub subscriptions: BTreeMap<String, Selector>,
    /// Clustering (the group shares the queues) or broadcasting (every member reads all).
    /// Default clustering.
    pub model: MessageModel,
    /// Where to start a queue without a committed offset. Default [`ConsumeFrom::LastOffset`].
    pub consume_from: ConsumeFrom,
    /// Listener calls running at once. Default 20 (`consumeThreadMax`).
    pub consume_concurrency_max: usize,
    /// Messages per listener call. Default 1 (`consumeMessageBatchMaxSize`).
    pub consume_batch_max: usize,
    /// Messages per pull. Default 32 (`pullBatchSize`).
    pub pull_batch_max: i32,
    /// How long the broker holds a pull that finds nothing. Default 15,000 ms.
    pub pull_suspend_ms: u64,
    /// Wait after a failed pull. Default 1,000 ms.
    pub pull_error_backoff_ms: u64,
    /// Messages waiting per queue before pulling pauses. Default 1,000.
    pub queue_cached_messages_max: usize,
    /// Bytes waiting per queue before pulling pauses. Default 100 MiB.
    pub queue_cached_bytes_max: usize,
    /// How often the group's queues are shared out again. Default 10,000 ms (DESIGN.md §6).
    pub rebalance_ms: u64,
    /// How the group's queues are shared out (clustering). Default [`Allocation::Averagely`]
    /// (`AllocateMessageQueueAveragely`); every member of the group must use the same.
    pub allocation: Allocation,
    /// How soon a rebalance is retried when a queue's lock was not free. Default 1,000 ms.
    pub rebalance_retry_ms: u64,
    /// How often offsets are committed. Default 5,000 ms (`persistConsumerOffsetInterval`).
    pub commit_ms: u64,
    /// How often held queue locks are renewed. Default 20,000 ms.
    pub lock_renew_ms: u64,
    /// Retries of a concurrent listener's failed message before the dead-letter topic (sent
    /// with each send-back; the broker decides). Default 16.
    pub max_reconsume_times: i32,
    /// Wait before the n-th retry of a concurrent listener's failed message that the broker
    /// could not take back, and of a broadcasting consumer's (the last entry repeats).
    /// Default [`RETRY_DELAYS_MS_DEFAULT`] (the broker's delays for levels 3 to 18).
    pub retry_delays_ms: Vec<u64>,
    /// Wait before an orderly listener's failed batch is retried. Default 1,000 ms
    /// (`suspendCurrentQueueTimeMillis`).
    pub orderly_retry_ms: u64,
    /// Retries of an orderly listener's failed message before it goes to `%DLQ%<group>` and
    /// the queue moves on past it. Default `i32::MAX`: retried until consumed, as RocketMQ's
    /// orderly consumers do when `maxReconsumeTimes` is not set.
    pub orderly_max_reconsume_times: i32,
    /// Broadcasting only: where the offset file lives. Default
    /// `$HOME/.rocketraft_offsets/<client id>/<group>` (RocketMQ's layout).
    pub offset_dir: Option<PathBuf>,
    /// How long shutdown waits for running listener calls. Default 30,000 ms.
    pub shutdown_wait_ms: u64,
    /// Told each time this member starts or stops consuming a queue (RocketMQ's
    /// `MessageQueueListener`). Default none.
    pub queue_listener: Option<QueueListener>,
}

/// A change in the queues a push consumer's member consumes (see [`QueueListener`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueChange {
    /// The member starts consuming `queue` at `offset`: the group's committed offset, or where
    /// [`PushConsumerConfig::consume_from`] points when there is none.
    Taken { queue: MessageQueue, offset: i64 },
    /// The member stopped consuming `queue` (a rebalance, a lock lost, shutdown): no listener
    /// call for it starts after this one.
    Released { queue: MessageQueue },
}

/// Called on each [`QueueChange`], from the consumer's own tasks: it must return quickly.
#[derive(Clone)]
pub struct QueueListener(pub Arc<dyn Fn(&QueueChange) + Send + Sync>);

impl std::fmt::Debug for QueueListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueueListener")
    }
}

impl PushConsumerConfig {
    pub fn new(namesrv_addrs: &str, group: impl Into<String>) -> Self {
        PushConsumerConfig {
            client: ClientConfig::new(namesrv_addrs),
            group: group.into(),
            subscriptions: BTreeMap::new(),
            model: MessageModel::Clustering,
            consume_from: ConsumeFrom::LastOffset,
            consume_concurrency_max: 20,
            consume_batch_max: 1,
            pull_batch_max: 32,
            pull_suspend_ms: 15_000,
            pull_error_backoff_ms: 1_000,
            queue_cached_messages_max: 1_000,
            queue_cached_bytes_max: 100 << 20,
            rebalance_ms: 10_000,
            allocation: Allocation::Averagely,
            rebalance_retry_ms: 1_000,
            commit_ms: 5_000,
            lock_renew_ms: 20_000,
            max_reconsume_times: 16,
            retry_delays_ms: RETRY_DELAYS_MS_DEFAULT.to_vec(),
            orderly_retry_ms: 1_000,
            orderly_max_reconsume_times: i32::MAX,
            offset_dir: None,
            shutdown_wait_ms: 30_000,
            queue_listener: None,
        }
    }

    /// Subscribes to `topic` with a tag expression.
    pub fn subscribe(mut self, topic: impl Into<String>, expression: impl Into<String>) -> Self {
        self.subscriptions.insert(topic.into(), Selector::Tag(expression.into()));
        self
    }

    /// Subscribes to `topic` with a SQL92 selector over message properties
    /// (`MessageSelector.bySql`), e.g. `a > 5 AND region = 'eu'`. The brokers must allow it
    /// (`enable_property_filter`); [`PushConsumer::start_concurrently`] fails if one refuses
    /// it or the expression does not parse.
    pub fn subscribe_sql(
        mut self,
        topic: impl Into<String>,
        expression: impl Into<String>,
    ) -> Self {
        self.subscriptions.insert(topic.into(), Selector::Sql92(expression.into()));
        self
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(ClientError::InvalidArgument(m.to_owned()));
        if let Err(e) = rocketraft_protocol::names::check_group(&self.group) {
            return bad(&e.to_string());
        }
        if self.subscriptions.is_empty() {
            return bad("subscribe to at least one topic before starting");
        }
        if self.consume_concurrency_max == 0 || self.consume_batch_max == 0 {
            return bad("consume_concurrency_max and consume_batch_max must be at least 1");
        }
        if self.pull_batch_max <= 0 || self.queue_cached_messages_max == 0 {
            return bad("pull_batch_max and queue_cached_messages_max must be at least 1");
        }
        if self.retry_delays_ms.is_empty() {
            return bad("retry_delays_ms needs at least one delay");
        }
        if self.rebalance_ms == 0 || self.commit_ms == 0 || self.lock_renew_ms == 0 {
            return bad("rebalance_ms, commit_ms and lock_renew_ms must be positive");
        }
        Ok(())
    }
}

/// A running push consumer.
pub struct PushConsumer {
    inner: Arc<dyn Running>,
}

trait Running: Send + Sync {
    fn shutdown(self: Arc<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
    /// Stops every loop at once, without commits (a consumer dropped without shutdown).
    fn halt(&self);
    fn assigned(&self) -> BTreeSet<MessageQueue>;
    fn client_id(&self) -> String;
}

impl PushConsumer {
    /// Starts consuming with a concurrent listener: messages of one queue may be handled in
    /// parallel and out of order.
    pub async fn start_concurrently<L: MessageListener>(
        config: PushConsumerConfig,
        listener: L,
    ) -> Result<PushConsumer> {
        Self::start(config, listener, false).await
    }

    /// Starts consuming with an orderly listener: each queue's messages one batch at a time,
    /// in queue order, while this member holds the queue's lock.
    pub async fn start_orderly<L: MessageListener>(
        config: PushConsumerConfig,
        listener: L,
    ) -> Result<PushConsumer> {
        Self::start(config, listener, true).await
    }

    async fn start<L: MessageListener>(
        config: PushConsumerConfig,
        listener: L,
        orderly: bool,
    ) -> Result<PushConsumer> {
        config.validate()?;
        let rebalance_now = Arc::new(Notify::new());
        let notify = rebalance_now.clone();
        let group = config.group.clone();
        // Filled once the consumer exists: what GET_CONSUMER_RUNNING_INFO reads.
        let describe: Arc<std::sync::OnceLock<std::sync::Weak<dyn Describe>>> = Arc::default();
        let described = describe.clone();
        let handler: crate::remoting::InboundHandler = Arc::new(move |addr, req| match req.code {
            request_code::NOTIFY_CONSUMER_IDS_CHANGED => {
                tracing::debug!(%addr, %group, "group members changed: rebalancing now");
                notify.notify_one();
                None
            }
            request_code::GET_CONSUMER_RUNNING_INFO => {
                Some(running_info_answer(req, &group, described.get().and_then(|w| w.upgrade())))
            }
            _ => None,
        });
        let core = Core::start(config.client.clone(), Some(handler)).await?;
        let sub_version = clock::now_ms();
        let mut subs: BTreeMap<String, SubscriptionData> = config
            .subscriptions
            .iter()
            .map(|(t, selector)| (t.clone(), selector.subscription(t, sub_version)))
            .collect();
        for sub in subs.values().filter(|s| s.is_sql92()) {
            if let Err(e) = super::check_in_brokers(&core, &config.group, sub).await {
                core.halt();
                return Err(e);
            }
        }
        if config.model == MessageModel::Clustering {
            // Messages given back come through the group's retry topic (RocketMQ's clients
            // subscribe to it the same way).
            let retry = rocketraft_protocol::names::retry_topic(&config.group);
            subs.entry(retry.clone())
                .or_insert_with(|| SubscriptionData::tag(retry, "*", sub_version));
        }
        let offset_dir = match config.model {
            MessageModel::Broadcasting => Some(config.offset_dir.clone().unwrap_or_else(|| {
                let home =
                    std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
                home.join(".rocketraft_offsets")
                    .join(core.client_id.replace([':', '@'], "_"))
                    .join(&config.group)
            })),
            MessageModel::Clustering => None,
        };
        let local_offsets = match &offset_dir {
            Some(dir) => offsets::load(dir)?,
            None => BTreeMap::new(),
        };
        let workers = if orderly { 0 } else { config.consume_concurrency_max };
        let (batches, to_consume) = mpsc::channel(config.consume_concurrency_max);
        let inner = Arc::new(Inner {
            permits: Arc::new(Semaphore::new(config.consume_concurrency_max)),
            batches,
            core,
            config,
            listener: Arc::new(listener),
            orderly,
            subs,
            queues: Mutex::new(BTreeMap::new()),
            local_offsets: Mutex::new(local_offsets),
            offset_dir,
            rebalance_now,
            stopping: AtomicBool::new(false),
            rebalancing: tokio::sync::Mutex::new(()),
            started_ms: sub_version,
        });
        let weak: std::sync::Weak<dyn Describe> = Arc::downgrade(&inner) as _;
        let _ = describe.set(weak);
        for topic in inner.subs.keys() {
            if let Err(e) = inner.core.routes.get(topic).await {
                tracing::warn!(%topic, error = %e, "no route yet; consumption starts once the topic exists");
            }
        }
        inner.core.heartbeat(&inner.heartbeat_data()).await;
        inner.core.poll_routes();
        let weak = Arc::downgrade(&inner);
        inner.core.every(inner.core.config.heartbeat_ms, move || {
            let weak = weak.clone();
            async move {
                if let Some(c) = weak.upgrade() {
                    c.core.heartbeat(&c.heartbeat_data()).await;
                }
            }
        });
        let weak = Arc::downgrade(&inner);
        inner.core.every(inner.config.commit_ms, move || {
            let weak = weak.clone();
            async move {
                if let Some(c) = weak.upgrade() {
                    c.commit_all().await;
                }
            }
        });
        if inner.config.model == MessageModel::Clustering {
            let weak = Arc::downgrade(&inner);
            inner.core.every(inner.config.lock_renew_ms, move || {
                let weak = weak.clone();
                async move {
                    if let Some(c) = weak.upgrade() {
                        c.renew_locks().await;
                    }
                }
            });
        }
        // A fixed set of workers runs concurrent listener calls: no task is spawned per
        // message. They end once the consumer is dropped (the sender goes with it).
        let to_consume = Arc::new(tokio::sync::Mutex::new(to_consume));
        for _ in 0..workers {
            tokio::spawn(consume_worker(Arc::downgrade(&inner), to_consume.clone()));
        }
        tokio::spawn(rebalance_loop(inner.clone()));
        Ok(PushConsumer { inner })
    }

    /// The queues this member consumes now.
    pub fn assigned_queues(&self) -> BTreeSet<MessageQueue> {
        self.inner.assigned()
    }

    pub fn client_id(&self) -> String {
        self.inner.client_id()
    }

    /// Stops pulling, waits for running listener calls (up to `shutdown_wait_ms`), commits
    /// every offset, releases the queue locks and leaves the group.
    pub async fn shutdown(self) {
        self.inner.clone().shutdown().await
    }
}

impl Drop for PushConsumer {
    /// A consumer dropped without [`PushConsumer::shutdown`] stops its loops; it commits
    /// nothing more (the last periodic commit stands) and its locks expire on the broker.
    fn drop(&mut self) {
        self.inner.halt();
    }
}

struct Inner<L> {
    core: Arc<Core>,
    config: PushConsumerConfig,
    listener: Arc<L>,
    orderly: bool,
    subs: BTreeMap<String, SubscriptionData>,
    queues: Mutex<BTreeMap<MessageQueue, Arc<ProcessQueue>>>,
    permits: Arc<Semaphore>,
    /// Concurrent listeners: batches for the consume workers (each holds a permit).
    batches: mpsc::Sender<Batch>,
    /// Broadcasting: the offsets in the local file.
    local_offsets: Mutex<BTreeMap<MessageQueue, i64>>,
    offset_dir: Option<PathBuf>,
    rebalance_now: Arc<Notify>,
    /// Set at shutdown: no queue is taken any more.
    stopping: AtomicBool,
    /// Held through each rebalance round, so shutdown can wait for the one running.
    rebalancing: tokio::sync::Mutex<()>,
    /// When it started (Unix ms), for GET_CONSUMER_RUNNING_INFO.
    started_ms: i64,
}

/// What a running consumer says of itself (GET_CONSUMER_RUNNING_INFO).
trait Describe: Send + Sync {
    fn running_info(&self) -> ConsumerRunningInfo;
}

impl<L: Send + Sync + 'static> Describe for Inner<L> {
    fn running_info(&self) -> ConsumerRunningInfo {
        let config = &self.config;
        let properties: BTreeMap<String, String> = [
            ("PROP_NAMESERVER_ADDR", config.client.namesrv_addrs.join(";")),
            ("PROP_CONSUME_TYPE", "CONSUME_PASSIVELY".to_owned()),
            ("PROP_CONSUMEORDERLY", self.orderly.to_string()),
            ("PROP_THREADPOOL_CORE_SIZE", config.consume_concurrency_max.to_string()),
            ("PROP_CLIENT_VERSION", format!("RocketRaft {}", env!("CARGO_PKG_VERSION"))),
            ("PROP_CONSUMER_START_TIMESTAMP", self.started_ms.to_string()),
            ("consumerGroup", config.group.clone()),
            ("messageModel", format!("{:?}", config.model).to_uppercase()),
            ("consumeFrom", format!("{:?}", config.consume_from)),
            ("allocation", format!("{:?}", config.allocation)),
            ("pullBatchSize", config.pull_batch_max.to_string()),
            ("consumeMessageBatchMaxSize", config.consume_batch_max.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let now = clock::instant();
        let mq_table = lock(&self.queues)
            .iter()
            .map(|(q, pq)| {
                let state = lock(&pq.state);
                let first = state.cached.keys().next().copied().unwrap_or(0);
                let last = state.cached.keys().next_back().copied().unwrap_or(0);
                let info = ProcessQueueInfo {
                    cached_msg_count: state.cached.len() as i32,
                    cached_msg_min_offset: first,
                    cached_msg_max_offset: last,
                    cached_msg_size_in_mib: (state.cached_bytes >> 20) as i32,
                    commit_offset: state.committed,
                    droped: pq.is_dropped(),
                    locked: state.locked_until.is_some_and(|t| t > now),
                    ..Default::default()
                };
                (q.clone(), info)
            })
            .collect();
        ConsumerRunningInfo {
            properties,
            subscription_set: self.subs.values().cloned().collect(),
            mq_table,
            status_table: BTreeMap::new(),
        }
    }
}

/// The answer to GET_CONSUMER_RUNNING_INFO for consumer group `group`.
fn running_info_answer(
    req: &RemotingCommand,
    group: &str,
    consumer: Option<Arc<dyn Describe>>,
) -> RemotingCommand {
    let asked = req.decode_header::<GetConsumerRunningInfoRequestHeader>();
    match (asked, consumer) {
        (Ok(h), Some(c)) if h.consumer_group == group => {
            RemotingCommand::response_to(req, response_code::SUCCESS, None)
                .with_body(c.running_info().encode())
        }
        (Ok(h), _) => RemotingCommand::response_to(
            req,
            response_code::SYSTEM_ERROR,
            Some(format!("The Consumer Group <{}> not exist in this consumer", h.consumer_group)),
        ),
        (Err(e), _) => {
            RemotingCommand::response_to(req, response_code::SYSTEM_ERROR, Some(e.to_string()))
        }
    }
}

/// One owned queue: what was pulled and not yet consumed.
struct ProcessQueue {
    mq: MessageQueue,
    /// Turns true when the queue is given up (rebalance or shutdown).
    dropped: watch::Sender<bool>,
    state: Mutex<QueueState>,
    /// Signalled when messages arrive or finish.
    changed: Notify,
    /// Serializes this queue's offset commits, so a late periodic commit cannot land after
    /// (and overwrite) the final one of a hand-over.
    commit_lock: tokio::sync::Mutex<()>,
}

struct QueueState {
    next_pull: i64,
    /// offset -> message, pulled and not yet consumed (running or retrying included).
    cached: BTreeMap<i64, Cached>,
    cached_bytes: usize,
    /// Listener calls running on this queue's messages.
    running: usize,
    /// Given up: no listener call starts any more (checked with `running` under one lock, so
    /// once a hand-over saw `running == 0` nothing runs behind its back).
    closing: bool,
    /// The last offset committed (or read at start).
    committed: i64,
    /// Until when this member may trust its lock (clustering).
    locked_until: Option<tokio::time::Instant>,
}

/// A message waiting in a queue's cache: its body's size, and the message itself for an
/// orderly listener (a concurrent one's messages travel with their batch instead).
struct Cached {
    bytes: usize,
    message: Option<MessageExt>,
}

/// Messages for one concurrent listener call, with their stored records (to hand them out
/// again after a failed call) and the permit that counts the call.
struct Batch {
    pq: Arc<ProcessQueue>,
    messages: Vec<MessageExt>,
    records: Vec<Bytes>,
    permit: OwnedSemaphorePermit,
}

/// Takes batches, one at a time, and makes their first listener call, until the consumer is
/// gone.
async fn consume_worker<L: MessageListener>(
    inner: std::sync::Weak<Inner<L>>,
    batches: Arc<tokio::sync::Mutex<mpsc::Receiver<Batch>>>,
) {
    loop {
        let next = batches.lock().await.recv().await;
        let (Some(batch), Some(inner)) = (next, inner.upgrade()) else { return };
        inner.consume_concurrently(batch).await;
    }
}

impl ProcessQueue {
    fn is_dropped(&self) -> bool {
        *self.dropped.borrow()
    }

    /// Stops everything on this queue: no new listener call, pulls and retries end. Whether
    /// it was open until now.
    fn close(&self) -> bool {
        lock(&self.state).closing = true;
        let was_closed = self.dropped.send_replace(true);
        self.changed.notify_waiters();
        !was_closed
    }

    /// Whether this member may consume the queue now: not given up, and (clustering) its lock
    /// is still trusted.
    fn may_consume(s: &QueueState) -> bool {
        !s.closing && s.locked_until.is_none_or(|u| clock::instant() < u)
    }

    /// The offset to commit: the first not consumed.
    fn consumed_offset(&self) -> i64 {
        let s = lock(&self.state);
        s.cached.keys().next().copied().unwrap_or(s.next_pull)
    }

    fn finish(&self, offsets: &[i64]) {
        let mut s = lock(&self.state);
        for o in offsets {
            if let Some(c) = s.cached.remove(o) {
                s.cached_bytes = s.cached_bytes.saturating_sub(c.bytes);
            }
        }
        drop(s);
        self.changed.notify_waiters();
    }
}

impl<L: MessageListener> Running for Inner<L> {
    fn shutdown(self: Arc<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move { self.stop().await })
    }

    fn halt(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let queues: Vec<Arc<ProcessQueue>> = lock(&self.queues).values().cloned().collect();
        for pq in &queues {
            self.release(pq);
        }
        self.core.halt();
    }

    fn assigned(&self) -> BTreeSet<MessageQueue> {
        lock(&self.queues)
            .iter()
            .filter(|(_, pq)| !pq.is_dropped())
            .map(|(q, _)| q.clone())
            .collect()
    }

    fn client_id(&self) -> String {
        self.core.client_id.clone()
    }
}

async fn rebalance_loop<L: MessageListener>(inner: Arc<Inner<L>>) {
    let mut stopped = inner.core.stopped();
    loop {
        let all_taken = inner.rebalance().await;
        let wait =
            if all_taken { inner.config.rebalance_ms } else { inner.config.rebalance_retry_ms };
        tokio::select! {
            biased;
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = inner.rebalance_now.notified() => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

impl<L: MessageListener> Inner<L> {
    fn heartbeat_data(&self) -> HeartbeatData {
        HeartbeatData {
            client_id: self.core.client_id.clone(),
            consumer_data_set: vec![ConsumerData {
                consume_from_where: match self.config.consume_from {
                    ConsumeFrom::LastOffset => ConsumeFromWhere::ConsumeFromLastOffset,
                    ConsumeFrom::FirstOffset => ConsumeFromWhere::ConsumeFromFirstOffset,
                    ConsumeFrom::Timestamp(_) => ConsumeFromWhere::ConsumeFromTimestamp,
                },
                consume_type: ConsumeType::ConsumePassively,
                group_name: self.config.group.clone(),
                message_model: self.config.model,
                subscription_data_set: self.subs.values().cloned().collect(),
                unit_mode: false,
            }],
            producer_data_set: Vec::new(),
        }
    }

    /// One rebalance round over every subscribed topic; false if some queue could not be
    /// taken yet (its lock is still held by the previous owner).
    async fn rebalance(self: &Arc<Self>) -> bool {
        let _round = self.rebalancing.lock().await;
        let mut all_taken = true;
        for (topic, sub) in &self.subs {
            if self.stopping.load(Ordering::SeqCst) {
                return true;
            }
            let route = match self.core.routes.get(topic).await {
                Ok(r) => r,
                Err(e) => {
                    // Look again soon: the topic may be being created right now.
                    tracing::debug!(%topic, error = %e, "no route: nothing to consume yet");
                    all_taken = false;
                    continue;
                }
            };
            let queues = subscribe_queues(topic, &route.data);
            let mine: BTreeSet<MessageQueue> = match self.config.model {
                MessageModel::Broadcasting => queues.into_iter().collect(),
                MessageModel::Clustering => {
                    match group_members(&self.core, &self.config.group, &route).await {
                        Ok(members) if members.contains(&self.core.client_id) => self
                            .config
                            .allocation
                            .allocate(&queues, &members, &self.core.client_id)
                            .into_iter()
                            .collect(),
                        other => {
                            // The topic's brokers do not know this member yet (its route was
                            // unknown at the last heartbeat): introduce it and look again soon.
                            // Queues held stay held.
                            tracing::debug!(%topic, answer = ?other.map(|m| m.len()), "not a known member yet: sending a heartbeat");
                            self.core.heartbeat(&self.heartbeat_data()).await;
                            all_taken = false;
                            continue;
                        }
                    }
                }
            };
            let current: BTreeMap<MessageQueue, Arc<ProcessQueue>> = lock(&self.queues)
                .iter()
                .filter(|(q, _)| &q.topic == topic)
                .map(|(q, pq)| (q.clone(), pq.clone()))
                .collect();
            for (q, pq) in &current {
                if !mine.contains(q) && !pq.is_dropped() {
                    tracing::info!(queue = ?q, "giving the queue up (rebalance)");
                    // Closed before the task runs, so the next round cannot spawn another.
                    self.release(pq);
                    let me = self.clone();
                    let pq = pq.clone();
                    tokio::spawn(async move { me.give_up(pq).await });
                }
            }
            let wanted: Vec<MessageQueue> =
                mine.iter().filter(|q| !current.contains_key(*q)).cloned().collect();
            if mine.iter().any(|q| current.get(q).is_some_and(|pq| pq.is_dropped())) {
                all_taken = false; // still being given up: take it again next round
            }
            if wanted.is_empty() {
                continue;
            }
            let granted = match self.config.model {
                MessageModel::Broadcasting => wanted.clone(),
                MessageModel::Clustering => {
                    let mut by_broker: BTreeMap<String, BTreeSet<MessageQueue>> = BTreeMap::new();
                    for q in &wanted {
                        by_broker.entry(q.broker_name.clone()).or_default().insert(q.clone());
                    }
                    let mut granted = Vec::new();
                    for (broker, qs) in by_broker {
                        match lock_queues(&self.core, &self.config.group, &route, &broker, qs).await
                        {
                            Ok(got) => granted.extend(got),
                            Err(e) => {
                                tracing::debug!(%broker, error = %e, "queue locks not taken");
                                // No master in our route, or it stopped answering: the route
                                // may be stale (a NameServer restarted, a failover), so fetch
                                // it again now rather than at the next 30 s poll.
                                if let Err(e) = self.core.routes.refresh(topic).await {
                                    tracing::debug!(%topic, error = %e, "route not refreshed");
                                }
                            }
                        }
                    }
                    granted
                }
            };
            if granted.len() < wanted.len() {
                all_taken = false;
            }
            for q in granted {
                if let Err(e) = self.take(q.clone(), sub.clone()).await {
                    all_taken = false;
                    tracing::debug!(queue = ?q, error = %e, "queue not taken: its offset is unknown");
                    if self.config.model == MessageModel::Clustering {
                        let broker = q.broker_name.clone();
                        let _ = unlock_queues(
                            &self.core,
                            &self.config.group,
                            &route,
                            &broker,
                            [q].into(),
                        )
                        .await;
                    }
                }
            }
        }
        all_taken
    }

    /// Starts consuming a queue this member now owns.
    async fn take(self: &Arc<Self>, mq: MessageQueue, sub: SubscriptionData) -> Result<()> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(ClientError::Shutdown);
        }
        let start = match self.config.model {
            MessageModel::Clustering => {
                initial_offset(&self.core, &self.config.group, &mq, self.config.consume_from)
                    .await?
            }
            MessageModel::Broadcasting => {
                let known = lock(&self.local_offsets).get(&mq).copied();
                match known {
                    Some(o) => o,
                    None => start_offset(&self.core, &mq, self.config.consume_from).await?,
                }
            }
        };
        tracing::info!(queue = ?mq, offset = start, "consuming the queue");
        let locked_until = (self.config.model == MessageModel::Clustering)
            .then(|| clock::instant() + Duration::from_millis(LOCK_TRUST_MS));
        let pq = Arc::new(ProcessQueue {
            mq: mq.clone(),
            dropped: watch::channel(false).0,
            state: Mutex::new(QueueState {
                next_pull: start,
                cached: BTreeMap::new(),
                cached_bytes: 0,
                running: 0,
                closing: false,
                committed: start,
                locked_until,
            }),
            changed: Notify::new(),
            commit_lock: tokio::sync::Mutex::new(()),
        });
        lock(&self.queues).insert(mq.clone(), pq.clone());
        self.queue_changed(QueueChange::Taken { queue: mq, offset: start });
        tokio::spawn(self.clone().pull_loop(pq.clone(), sub));
        if self.orderly {
            tokio::spawn(self.clone().orderly_loop(pq));
        }
        Ok(())
    }

    /// Gives a queue up: stop pulling, let running calls finish, commit, unlock, forget.
    async fn give_up(self: &Arc<Self>, pq: Arc<ProcessQueue>) {
        self.release(&pq);
        let deadline = clock::instant() + Duration::from_millis(self.config.shutdown_wait_ms);
        self.wait_idle(&pq, deadline).await;
        self.final_commit(&pq).await;
        if self.config.model == MessageModel::Clustering {
            if let Ok(route) = self.core.routes.get(&pq.mq.topic).await {
                let (group, broker) = (&self.config.group, &pq.mq.broker_name);
                if let Err(e) =
                    unlock_queues(&self.core, group, &route, broker, [pq.mq.clone()].into()).await
                {
                    tracing::debug!(queue = ?pq.mq, error = %e, "unlock failed; the lock expires by itself");
                }
            }
        }
        self.forget(&pq);
    }

    /// Stops consuming `pq` (see [`ProcessQueue::close`]) and tells the queue listener, once.
    fn release(&self, pq: &ProcessQueue) {
        if pq.close() {
            self.queue_changed(QueueChange::Released { queue: pq.mq.clone() });
        }
    }

    fn queue_changed(&self, change: QueueChange) {
        if let Some(listener) = &self.config.queue_listener {
            (listener.0)(&change);
        }
    }

    /// Removes `pq` from the owned queues (unless a newer entry replaced it).
    fn forget(&self, pq: &Arc<ProcessQueue>) {
        let mut queues = lock(&self.queues);
        if queues.get(&pq.mq).is_some_and(|p| Arc::ptr_eq(p, pq)) {
            queues.remove(&pq.mq);
        }
    }

    /// The last commit of a closed queue, after any periodic commit still in flight.
    async fn final_commit(&self, pq: &ProcessQueue) {
        let _one_at_a_time = pq.commit_lock.lock().await;
        let offset = pq.consumed_offset();
        match self.commit(&pq.mq, offset).await {
            Ok(()) => lock(&pq.state).committed = offset,
            Err(e) => {
                tracing::warn!(queue = ?pq.mq, error = %e, "final offset not committed; the next owner may see some messages again")
            }
        }
    }

    /// Waits until no listener call runs on the queue, at most until `deadline`.
    async fn wait_idle(&self, pq: &ProcessQueue, deadline: tokio::time::Instant) {
        let wait = async {
            loop {
                let notified = pq.changed.notified();
                if lock(&pq.state).running == 0 {
                    return;
                }
                notified.await;
            }
        };
        let left = deadline.saturating_duration_since(clock::instant());
        if tokio::time::timeout(left, wait).await.is_err() {
            tracing::warn!(queue = ?pq.mq, "listener calls still running after the shutdown wait");
        }
    }

    async fn commit(&self, mq: &MessageQueue, offset: i64) -> Result<()> {
        match &self.offset_dir {
            None => commit_offset(&self.core, &self.config.group, mq, offset).await,
            Some(dir) => {
                // Written under the table's lock: one writer of the file at a time, and never
                // an older table after a newer one.
                let mut t = lock(&self.local_offsets);
                t.insert(mq.clone(), offset);
                offsets::store(dir, &t)
            }
        }
    }

    /// Commits every owned queue whose consumed offset moved (closed ones commit their own).
    async fn commit_all(&self) {
        let queues: Vec<Arc<ProcessQueue>> = lock(&self.queues).values().cloned().collect();
        for pq in queues {
            let _one_at_a_time = pq.commit_lock.lock().await;
            if pq.is_dropped() {
                continue;
            }
            let offset = pq.consumed_offset();
            if offset == lock(&pq.state).committed {
                continue;
            }
            match self.commit(&pq.mq, offset).await {
                Ok(()) => lock(&pq.state).committed = offset,
                Err(e) => {
                    tracing::debug!(queue = ?pq.mq, error = %e, "offset not committed; trying again next period")
                }
            }
        }
    }

    async fn renew_locks(&self) {
        let held: Vec<Arc<ProcessQueue>> =
            lock(&self.queues).values().filter(|pq| !pq.is_dropped()).cloned().collect();
        let mut by_topic_broker: BTreeMap<(String, String), BTreeSet<MessageQueue>> =
            BTreeMap::new();
        for pq in &held {
            by_topic_broker
                .entry((pq.mq.topic.clone(), pq.mq.broker_name.clone()))
                .or_default()
                .insert(pq.mq.clone());
        }
        for ((topic, broker), qs) in by_topic_broker {
            let Ok(route) = self.core.routes.get(&topic).await else { continue };
            match lock_queues(&self.core, &self.config.group, &route, &broker, qs.clone()).await {
                Ok(got) => {
                    let until = clock::instant() + Duration::from_millis(LOCK_TRUST_MS);
                    // Only this request's queues: the others' locks are renewed by their own.
                    let asked = || held.iter().filter(|pq| qs.contains(&pq.mq));
                    for pq in asked().filter(|pq| got.contains(&pq.mq)) {
                        lock(&pq.state).locked_until = Some(until);
                        pq.changed.notify_waiters();
                    }
                    for pq in asked().filter(|pq| !got.contains(&pq.mq)) {
                        // Another member holds it (ours expired): it is theirs now. Stop at
                        // once and commit nothing (the owner's offsets win).
                        tracing::warn!(queue = ?pq.mq, "lock lost to another member: dropping the queue");
                        self.release(pq);
                        self.forget(pq);
                    }
                    // A queue given up while this renewal was on its way may have been locked
                    // again after its hand-over unlocked it: release those.
                    let stale: BTreeSet<MessageQueue> = {
                        let queues = lock(&self.queues);
                        got.iter().filter(|q| !queues.contains_key(*q)).cloned().collect()
                    };
                    if !stale.is_empty() {
                        let _ =
                            unlock_queues(&self.core, &self.config.group, &route, &broker, stale)
                                .await;
                    }
                }
                Err(e) => tracing::debug!(%broker, error = %e, "locks not renewed"),
            }
        }
    }

    async fn pull_loop(self: Arc<Self>, pq: Arc<ProcessQueue>, sub: SubscriptionData) {
        let mut dropped = pq.dropped.subscribe();
        loop {
            if pq.is_dropped() || self.core.is_stopped() {
                return;
            }
            let (offset, full, trusted) = {
                let s = lock(&pq.state);
                let full = s.cached.len() >= self.config.queue_cached_messages_max
                    || s.cached_bytes >= self.config.queue_cached_bytes_max;
                (s.next_pull, full, ProcessQueue::may_consume(&s))
            };
            // A full cache, or a lock no longer trusted (clustering: the renewal failed for
            // 30 s, so another member may own the queue soon): pull nothing now.
            if full || !trusted {
                tokio::select! {
                    biased;
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = dropped.wait_for(|d| *d) => return,
                }
                continue;
            }
            let pulled = tokio::select! {
                biased;
                r = pull(&self.core, &self.config.group, &pq.mq, &sub, offset, self.config.pull_batch_max, self.config.pull_suspend_ms) => r,
                _ = dropped.wait_for(|d| *d) => return,
            };
            match pulled {
                Ok(Pulled::Found { messages, records, next }) => {
                    // Only messages not cached already (a pull may overlap an earlier one).
                    let mut fresh = Vec::with_capacity(messages.len());
                    {
                        let mut guard = lock(&pq.state);
                        let s = &mut *guard;
                        for (m, raw) in messages.into_iter().zip(records) {
                            if m.queue_offset < offset || m.queue_offset >= next {
                                continue;
                            }
                            if let std::collections::btree_map::Entry::Vacant(e) =
                                s.cached.entry(m.queue_offset)
                            {
                                s.cached_bytes += m.body.len();
                                if self.orderly {
                                    e.insert(Cached { bytes: m.body.len(), message: Some(m) });
                                } else {
                                    e.insert(Cached { bytes: m.body.len(), message: None });
                                    fresh.push((m, raw));
                                }
                            }
                        }
                        s.next_pull = next;
                    }
                    pq.changed.notify_waiters();
                    let mut fresh = fresh.into_iter().peekable();
                    while fresh.peek().is_some() {
                        let (messages, records) =
                            fresh.by_ref().take(self.config.consume_batch_max).unzip();
                        let Some(permit) = self.permit(&mut dropped).await else { return };
                        let batch = Batch { pq: pq.clone(), messages, records, permit };
                        // The workers live as long as the consumer: a closed channel means it
                        // is going.
                        if self.batches.send(batch).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(Pulled::Nothing { next }) => lock(&pq.state).next_pull = next,
                Ok(Pulled::Moved { next }) => {
                    tracing::warn!(queue = ?pq.mq, from = offset, to = next, "offset outside the queue: moving on");
                    lock(&pq.state).next_pull = next;
                }
                Err(e) => {
                    tracing::debug!(queue = ?pq.mq, error = %e, "pull failed; trying again");
                    // Where the master is now, without waiting for the periodic poll (30 s).
                    self.core.routes.refresh_after_failure(&pq.mq.topic, &e).await;
                    tokio::select! {
                        biased;
                        _ = tokio::time::sleep(Duration::from_millis(self.config.pull_error_backoff_ms)) => {}
                        _ = dropped.wait_for(|d| *d) => return,
                    }
                }
            }
        }
    }

    /// A batch's first listener call, on a consume worker. A batch the listener did not take
    /// goes on in a task of its own (see [`Inner::retry`]), so a worker never waits out a
    /// retry delay.
    async fn consume_concurrently(self: Arc<Self>, batch: Batch) {
        let Batch { pq, messages, records, permit } = batch;
        if pq.is_dropped() || messages.is_empty() {
            return;
        }
        let offsets: Vec<i64> = messages.iter().map(|m| m.queue_offset).collect();
        // A producer may send any reconsumeTimes: no arithmetic on it may overflow.
        let times = messages[0].reconsume_times.max(0);
        let outcome = self.call_listener(&pq, messages).await;
        drop(permit);
        match outcome {
            Some(true) => pq.finish(&offsets),
            Some(false) if self.config.model == MessageModel::Clustering => {
                tokio::spawn(self.give_back(pq, records, offsets, times));
            }
            not_taken => {
                tokio::spawn(self.retry(pq, records, offsets, times, not_taken.is_some()));
            }
        }
    }

    /// A failed batch of a clustering consumer: each message goes back to the broker (or, if
    /// it cannot take it, to the retry topic by a send of our own), and is then done here.
    /// Those neither took are retried in the client.
    async fn give_back(
        self: Arc<Self>,
        pq: Arc<ProcessQueue>,
        records: Vec<Bytes>,
        offsets: Vec<i64>,
        times: i32,
    ) {
        let messages = self.decode_again(&pq, &records, times);
        let (mut done, mut kept_records, mut kept_offsets) = (Vec::new(), Vec::new(), Vec::new());
        for ((m, raw), offset) in messages.iter().zip(records).zip(offsets) {
            let back = match self.send_back(&pq, m).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    tracing::debug!(error = %e, "send-back refused: re-sending to the retry topic");
                    self.resend_to_retry(&pq, m).await
                }
            };
            match back {
                Ok(()) => done.push(offset),
                Err(e) => {
                    tracing::warn!(error = %e, msg_id = ?m.msg_id(), "the broker took no retry: retrying here");
                    kept_records.push(raw);
                    kept_offsets.push(offset);
                }
            }
        }
        pq.finish(&done);
        if !kept_offsets.is_empty() {
            self.retry(pq, kept_records, kept_offsets, times, true).await;
        }
    }

    /// The master of the broker group `pq` reads from.
    async fn master_of(&self, pq: &ProcessQueue) -> Result<String> {
        let route = self.core.routes.get(&pq.mq.topic).await?;
        route.master_addr(&pq.mq.broker_name).map(str::to_owned).ok_or_else(|| {
            ClientError::NoRoute { topic: pq.mq.topic.clone(), reason: "no master".into() }
        })
    }

    /// CONSUMER_SEND_MSG_BACK for `m` (delay chosen by the broker: `3 + reconsume_times`).
    async fn send_back(&self, pq: &ProcessQueue, m: &MessageExt) -> Result<()> {
        let addr = self.master_of(pq).await?;
        let header = ConsumerSendMsgBackRequestHeader {
            offset: m.commit_log_offset,
            group: self.config.group.clone(),
            delay_level: 0,
            origin_msg_id: Some(m.msg_id().map_or_else(|| m.offset_msg_id(), str::to_owned)),
            origin_topic: Some(m.topic.clone()),
            unit_mode: Some(false),
            max_reconsume_times: Some(self.config.max_reconsume_times),
            broker_name: Some(pq.mq.broker_name.clone()),
        };
        let req = RemotingCommand::request(request_code::CONSUMER_SEND_MSG_BACK, &header);
        let resp = self.core.remoting.call(&addr, req, self.core.config.call_timeout_ms).await?;
        expect_success(&addr, resp).map(|_| ())
    }

    /// RocketMQ's fallback when the broker refuses a send-back: `m` sent to `%RETRY%<group>`
    /// with delay level `3 + reconsume_times`, its reconsume count up by one (the broker sends
    /// it to the dead-letter topic instead once that passes `max_reconsume_times`).
    async fn resend_to_retry(&self, pq: &ProcessQueue, m: &MessageExt) -> Result<()> {
        let retry = rocketraft_protocol::names::retry_topic(&self.config.group);
        let level = 3 + m.reconsume_times.clamp(0, 1_000);
        let header =
            self.resend_header(pq, m, &retry, Some(level), m.reconsume_times.saturating_add(1));
        let addr = self.master_of(pq).await?;
        let req = RemotingCommand::request(request_code::SEND_MESSAGE_V2, &header)
            .with_body(m.body.clone());
        let resp = self.core.remoting.call(&addr, req, self.core.config.call_timeout_ms).await?;
        expect_success(&addr, resp).map(|_| ())
    }

    /// The header of a send of `m` to `topic` on the group's behalf (a retry or dead letter).
    fn resend_header(
        &self,
        pq: &ProcessQueue,
        m: &MessageExt,
        topic: &str,
        delay_level: Option<i32>,
        reconsume_times: i32,
    ) -> SendMessageRequestHeaderV2 {
        let mut props = m.properties.clone();
        props.entry(property::RETRY_TOPIC.to_owned()).or_insert_with(|| m.topic.clone());
        props.insert(
            property::ORIGIN_MESSAGE_ID.to_owned(),
            m.msg_id().map_or_else(|| m.offset_msg_id(), str::to_owned),
        );
        props.insert(property::RECONSUME_TIME.to_owned(), reconsume_times.to_string());
        props.remove(property::MOVED_FROM);
        match delay_level {
            Some(level) => props.insert(property::DELAY.to_owned(), level.to_string()),
            None => props.remove(property::DELAY),
        };
        SendMessageRequestHeaderV2 {
            a: format!("CID_RETRY_{}", self.config.group),
            b: topic.to_owned(),
            c: crate::producer::AUTO_CREATE_TOPIC.to_owned(),
            d: 1,
            e: 0,
            f: 0,
            g: m.born_timestamp_ms,
            h: m.flag,
            i: Some(properties_to_string(props.iter().map(|(k, v)| (k.as_str(), v.as_str())))),
            j: Some(reconsume_times),
            k: Some(false),
            l: Some(self.config.max_reconsume_times),
            m: None,
            n: None,
            broker_name: Some(pq.mq.broker_name.clone()),
        }
    }

    /// Hands a batch to the listener again until it succeeds, the messages go to the
    /// dead-letter topic, or the queue is given up (the messages then stay uncommitted for the
    /// next owner). `failed`: the last call failed (rather than not running at all, because
    /// the queue was closing or its lock not trusted). The messages are decoded again from
    /// their records for each call, with `reconsume_times` counting up.
    async fn retry(
        self: Arc<Self>,
        pq: Arc<ProcessQueue>,
        records: Vec<Bytes>,
        offsets: Vec<i64>,
        mut times: i32,
        mut failed: bool,
    ) {
        let mut dropped = pq.dropped.subscribe();
        loop {
            let wait_ms = if failed {
                let tries = times.saturating_add(1);
                if tries > self.config.max_reconsume_times {
                    for m in &self.decode_again(&pq, &records, times) {
                        if !self.to_dead_letter(&pq, m).await {
                            return; // given up: the next owner consumes them
                        }
                    }
                    pq.finish(&offsets);
                    return;
                }
                times = tries;
                let delays = &self.config.retry_delays_ms;
                delays[(tries as usize).saturating_sub(1).min(delays.len() - 1)]
            } else {
                self.config.orderly_retry_ms
            };
            tokio::select! {
                biased;
                _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                _ = dropped.wait_for(|d| *d) => return,
            }
            let Some(permit) = self.permit(&mut dropped).await else { return };
            if pq.is_dropped() {
                return;
            }
            let outcome = self.call_listener(&pq, self.decode_again(&pq, &records, times)).await;
            drop(permit);
            match outcome {
                Some(true) => {
                    pq.finish(&offsets);
                    return;
                }
                outcome => failed = outcome.is_some(),
            }
        }
    }

    /// A listener-call permit, or `None` once the queue is given up (or the consumer closes).
    async fn permit(&self, dropped: &mut watch::Receiver<bool>) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            biased;
            p = self.permits.clone().acquire_owned() => p.ok(),
            _ = dropped.wait_for(|d| *d) => None,
        }
    }

    /// The messages of `records` as the listener gets them on try `times`.
    fn decode_again(&self, pq: &ProcessQueue, records: &[Bytes], times: i32) -> Vec<MessageExt> {
        records
            .iter()
            // These records decoded when they were pulled; they decode again.
            .filter_map(|raw| RecordView::decode(raw).ok().map(|r| (raw, r)))
            .map(|(raw, r)| {
                let mut budget = crate::message::INFLATED_MAX_BYTES;
                let mut m =
                    MessageExt::from_record_within(&r, Some(raw), &pq.mq.broker_name, &mut budget);
                m.reconsume_times = times;
                m
            })
            .collect()
    }

    /// One listener call: `Some(true)` on success, `Some(false)` for later (or a panic),
    /// `None` if it did not run because the queue is closing or its lock is not trusted. The
    /// check and the `running` count change under one lock, so a hand-over that saw no call
    /// running sees none start after it.
    async fn call_listener(&self, pq: &ProcessQueue, msgs: Vec<MessageExt>) -> Option<bool> {
        {
            let mut s = lock(&pq.state);
            if !ProcessQueue::may_consume(&s) {
                return None;
            }
            s.running += 1;
        }
        let result = CatchPanic(Box::pin(self.listener.consume(msgs))).await;
        lock(&pq.state).running -= 1;
        pq.changed.notify_waiters();
        match result {
            Some(ConsumeResult::Success) => Some(true),
            Some(ConsumeResult::Later) => Some(false),
            None => {
                tracing::warn!(queue = ?pq.mq, "the listener panicked: the messages will be retried");
                Some(false)
            }
        }
    }

    /// Sends a message that failed too often to `%DLQ%<group>`, retrying until it is stored
    /// (true) or the queue is given up (false).
    async fn to_dead_letter(&self, pq: &ProcessQueue, m: &MessageExt) -> bool {
        let dlq = rocketraft_protocol::names::dlq_topic(&self.config.group);
        let header = self.resend_header(pq, m, &dlq, None, m.reconsume_times);
        let mut dropped = pq.dropped.subscribe();
        loop {
            let sent = async {
                let route = self.core.routes.get(&pq.mq.topic).await?;
                let addr =
                    route.master_addr(&pq.mq.broker_name).map(str::to_owned).ok_or_else(|| {
                        ClientError::NoRoute { topic: dlq.clone(), reason: "no master".into() }
                    })?;
                let req = RemotingCommand::request(request_code::SEND_MESSAGE_V2, &header)
                    .with_body(m.body.clone());
                let resp =
                    self.core.remoting.call(&addr, req, self.core.config.call_timeout_ms).await?;
                expect_success(&addr, resp).map(|_| ())
            }
            .await;
            match sent {
                Ok(()) => {
                    tracing::warn!(msg_id = ?m.msg_id(), topic = %m.topic, "message sent to {dlq} after {} retries", m.reconsume_times);
                    return true;
                }
                Err(e) => tracing::warn!(error = %e, "dead-letter send failed; trying again"),
            }
            tokio::select! {
                biased;
                _ = tokio::time::sleep(Duration::from_millis(self.config.pull_error_backoff_ms)) => {}
                _ = dropped.wait_for(|d| *d) => return false,
            }
        }
    }

    /// Orderly: one batch at a time from the front of the queue, while the lock is trusted.
    async fn orderly_loop(self: Arc<Self>, pq: Arc<ProcessQueue>) {
        loop {
            let notified = pq.changed.notified();
            if pq.is_dropped() || self.core.is_stopped() {
                return;
            }
            let (batch, lock_ok) = {
                let s = lock(&pq.state);
                let batch: Vec<MessageExt> = s
                    .cached
                    .values()
                    .filter_map(|c| c.message.clone())
                    .take(self.config.consume_batch_max)
                    .collect();
                (batch, ProcessQueue::may_consume(&s))
            };
            if batch.is_empty() || !lock_ok {
                // Woken by new messages, a renewed lock, or the drop; re-check periodically.
                let _ = tokio::time::timeout(
                    Duration::from_millis(self.config.orderly_retry_ms),
                    notified,
                )
                .await;
                continue;
            }
            let permit = match self.permits.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => return,
            };
            if pq.is_dropped() {
                return;
            }
            let offsets: Vec<i64> = batch.iter().map(|m| m.queue_offset).collect();
            let outcome = self.call_listener(&pq, batch).await;
            drop(permit);
            match outcome {
                Some(true) => {
                    pq.finish(&offsets);
                    continue;
                }
                Some(false) => {
                    // A message retried `orderly_max_reconsume_times` times goes to the
                    // dead-letter topic (RocketMQ's checkReconsumeTimes); the others count up.
                    let max = self.config.orderly_max_reconsume_times;
                    let spent: Vec<MessageExt> = {
                        let mut s = lock(&pq.state);
                        let mut spent = Vec::new();
                        for o in &offsets {
                            let Some(m) = s.cached.get_mut(o).and_then(|c| c.message.as_mut())
                            else {
                                continue;
                            };
                            if m.reconsume_times >= max {
                                spent.push(m.clone());
                            } else {
                                m.reconsume_times = m.reconsume_times.max(0).saturating_add(1);
                            }
                        }
                        spent
                    };
                    if !spent.is_empty() {
                        for m in &spent {
                            if !self.to_dead_letter(&pq, m).await {
                                return; // given up: the next owner consumes what is left
                            }
                        }
                        let done: Vec<i64> = spent.iter().map(|m| m.queue_offset).collect();
                        pq.finish(&done);
                        if done.len() == offsets.len() {
                            continue; // the whole batch is dead-lettered: no wait
                        }
                    }
                }
                None => {} // closing, or the lock is not trusted: wait and look again
            }
            let mut dropped = pq.dropped.subscribe();
            tokio::select! {
                biased;
                _ = tokio::time::sleep(Duration::from_millis(self.config.orderly_retry_ms)) => {}
                _ = dropped.wait_for(|d| *d) => return,
            }
        }
    }

    async fn stop(self: Arc<Self>) {
        // No queue is taken from now on; wait for a rebalance round in progress to end.
        self.stopping.store(true, Ordering::SeqCst);
        drop(self.rebalancing.lock().await);
        let queues: Vec<Arc<ProcessQueue>> = lock(&self.queues).values().cloned().collect();
        for pq in &queues {
            self.release(pq);
        }
        // One deadline for all: shutdown waits at most shutdown_wait_ms, not that per queue.
        let deadline = clock::instant() + Duration::from_millis(self.config.shutdown_wait_ms);
        for pq in &queues {
            self.wait_idle(pq, deadline).await;
        }
        // Final commits, then release the locks so that the others take over at once.
        for pq in &queues {
            self.final_commit(pq).await;
        }
        if self.config.model == MessageModel::Clustering {
            let mut by: BTreeMap<(String, String), BTreeSet<MessageQueue>> = BTreeMap::new();
            for pq in &queues {
                by.entry((pq.mq.topic.clone(), pq.mq.broker_name.clone()))
                    .or_default()
                    .insert(pq.mq.clone());
            }
            for ((topic, broker), qs) in by {
                if let Ok(route) = self.core.routes.get(&topic).await {
                    let _ =
                        unlock_queues(&self.core, &self.config.group, &route, &broker, qs).await;
                }
            }
        }
        lock(&self.queues).clear();
        self.core.shutdown(None, Some(&self.config.group)).await;
    }
}
