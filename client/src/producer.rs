//! The producer: sync, async and oneway sends, batches, queue selection (round robin with
//! fault avoidance, a hash of a sharding key for ordered messages, or the caller's selector),
//! retries on another broker group, and a UNIQ_KEY message id on every message.
//!
//! Retry rules (RocketMQ's, with one change noted):
//! - a round-robin send is tried at most `1 + retries` times within `send_timeout_ms`, each
//!   retry on another broker group when there is one, after refreshing the route at once; an
//!   attempt before the last gets half the time left (at least 1 s), so a broker that never
//!   answers leaves time to retry; a send that fails refreshes its route in the background;
//! - a send by sharding key or selector retries the *same* queue only (another queue would
//!   break per-key order): after a failover the queue is on the group's new master. RocketMQ
//!   does not retry these sends at all;
//! - while a topic's broker group has no master (an election is running), the send waits for
//!   the route to show one, polling every `no_master_wait_ms`, until `send_timeout_ms`;
//! - only SEND_OK-like answers count as acknowledged; a timeout may have stored the message,
//!   so a retry after it can duplicate (at-least-once, as in RocketMQ).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use rocketraft_protocol::body::{HeartbeatData, MessageQueue, ProducerData};
use rocketraft_protocol::headers::{SendMessageRequestHeaderV2, SendMessageResponseHeader};
use rocketraft_protocol::message::{
    encode_batch, properties_to_string, property, BatchMessage, UniqKeyGenerator,
    MESSAGE_MAX_BYTES_DEFAULT,
};
use rocketraft_protocol::sysflag::message as sysflag;
use rocketraft_protocol::{request_code, response_code, RemotingCommand};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::clock;
use crate::core::{ClientConfig, Core};
use crate::error::{ClientError, Result};
use crate::lock;
use crate::message::{Message, MessageExt};
use crate::request::Replies;
use crate::route::TopicRoute;
use crate::select::{self, FaultTable};

/// The least time an attempt that is not the last one gets.
const ATTEMPT_MIN_MS: u64 = 1_000;

/// After a SYSTEM_BUSY answer, the n-th retry waits n times this long.
const SYSTEM_BUSY_BACKOFF_MS: u64 = 50;

/// The template topic brokers create unknown topics from (RocketMQ's TBW102).
pub const AUTO_CREATE_TOPIC: &str = "TBW102";

/// Producer settings. Defaults follow RocketMQ's `DefaultMQProducer`.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub client: ClientConfig,
    /// Producer group name. Default "DEFAULT_PRODUCER".
    pub group: String,
    /// The whole send, retries included, ends by then. Default 3,000 ms.
    pub send_timeout_ms: u64,
    /// Extra attempts after a failed send. Default 2.
    pub retries: u32,
    /// The largest message body (or batch body) sent. Default 4 MiB (the broker's limit).
    pub message_max_bytes: usize,
    /// Queues a topic gets when a broker creates it on first send. Default 4.
    pub default_topic_queue_nums: i32,
    /// Async sends in flight at most; `send_async` waits for room beyond it. Default 1,024
    /// (a broker serves 4,096 requests at once per connection by default).
    pub async_sends_max: usize,
    /// Skip broker groups that answered slowly or failed (select.rs has the thresholds).
    /// Default true.
    pub fault_avoidance: bool,
    /// How often the route is fetched again while a group has no master. Default 200 ms.
    pub no_master_wait_ms: u64,
    /// Bodies longer than this are sent zlib-compressed (when that makes them shorter), as
    /// Java producers do; batches never are. `usize::MAX` turns it off. Default 4,096
    /// (`compressMsgBodyOverHowmuch`). Consumers inflate them.
    pub compress_over_bytes: usize,
    /// zlib level, 0-9. Default 5 (`compressLevel`).
    pub compress_level: u32,
    /// Requests ([`Producer::request`]) waiting for their replies at most; one more fails
    /// with [`ClientError::Overloaded`]. Default 1,024.
    pub requests_max: usize,
}

/// Java's `compressMsgBodyOverHowmuch`.
pub const COMPRESS_OVER_BYTES_DEFAULT: usize = 4_096;
/// Java's `compressLevel`.
pub const COMPRESS_LEVEL_DEFAULT: u32 = 5;

/// `body` zlib-compressed at `level` if it is longer than `over` bytes and compressing makes it
/// shorter; `None` otherwise (sent as it is).
pub fn compress_body(body: &[u8], over: usize, level: u32) -> Option<Bytes> {
    if body.len() <= over {
        return None;
    }
    let mut z = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(body.len() / 2),
        flate2::Compression::new(level.min(9)),
    );
    std::io::Write::write_all(&mut z, body).ok()?;
    let out = z.finish().ok()?;
    (out.len() < body.len()).then(|| Bytes::from(out))
}

impl ProducerConfig {
    pub fn new(namesrv_addrs: &str) -> Self {
        ProducerConfig {
            client: ClientConfig::new(namesrv_addrs),
            group: "DEFAULT_PRODUCER".into(),
            send_timeout_ms: 3_000,
            retries: 2,
            message_max_bytes: MESSAGE_MAX_BYTES_DEFAULT,
            default_topic_queue_nums: 4,
            async_sends_max: 1_024,
            fault_avoidance: true,
            no_master_wait_ms: 200,
            compress_over_bytes: COMPRESS_OVER_BYTES_DEFAULT,
            compress_level: COMPRESS_LEVEL_DEFAULT,
            requests_max: crate::request::REQUESTS_MAX_DEFAULT,
        }
    }
}

/// How a send stored the message (RocketMQ's `SendStatus`). All four mean it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    SendOk,
    FlushDiskTimeout,
    FlushSlaveTimeout,
    SlaveNotAvailable,
}

/// An acknowledged send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    pub status: SendStatus,
    /// The producer's id (UNIQ_KEY); comma-joined for a batch.
    pub msg_id: String,
    /// The broker's id (store host + CommitLog position); comma-joined for a batch.
    pub offset_msg_id: String,
    pub queue: MessageQueue,
    /// The queue offset of the (first) message.
    pub queue_offset: i64,
}

/// Picks a queue from a topic's writable queues (given in a stable order).
pub type QueueSelector =
    Arc<dyn Fn(&[MessageQueue], &Message) -> Option<MessageQueue> + Send + Sync>;

#[derive(Clone)]
enum Selection {
    RoundRobin,
    Hash(String),
    Custom(QueueSelector),
}

struct Inner {
    core: Arc<Core>,
    config: ProducerConfig,
    uniq: Mutex<UniqKeyGenerator>,
    counter: AtomicUsize,
    faults: Mutex<FaultTable>,
    async_permits: Arc<Semaphore>,
    /// Asynchronous sends for the producer's driver task, which runs them all (no task per
    /// send). It ends once the producer and its last send are gone.
    async_sends: mpsc::UnboundedSender<AsyncSend>,
    /// Requests waiting for their replies.
    replies: Arc<Replies>,
    /// Masters (by address) this producer introduced itself to before a request, so that
    /// they can push replies to it.
    greeted: Mutex<BTreeSet<String>>,
}

/// An asynchronous send, with whatever receives its result.
type AsyncSend = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs a producer's asynchronous sends side by side, on one task.
async fn drive_async_sends(mut sends: mpsc::UnboundedReceiver<AsyncSend>) {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let mut running = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            Some(()) = running.next(), if !running.is_empty() => {}
            next = sends.recv() => match next {
                Some(send) => running.push(send),
                None => break,
            },
        }
    }
    while running.next().await.is_some() {}
}

/// A producer; cheap to clone (clones share connections, routes and limits).
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

impl Producer {
    /// Starts a producer: connects to a NameServer, then polls routes every 30 s and sends
    /// heartbeats to the masters it knows every 30 s.
    pub async fn start(config: ProducerConfig) -> Result<Producer> {
        Self::start_with(config, None).await
    }

    /// [`Producer::start`], with a handler for the other requests brokers send it
    /// (CHECK_TRANSACTION_STATE); replies to requests are handled here.
    pub(crate) async fn start_with(
        config: ProducerConfig,
        handler: Option<crate::remoting::InboundHandler>,
    ) -> Result<Producer> {
        if let Err(e) = rocketraft_protocol::names::check_group(&config.group) {
            return Err(ClientError::InvalidArgument(e.to_string()));
        }
        if config.async_sends_max == 0 {
            return Err(ClientError::InvalidArgument("async_sends_max must be at least 1".into()));
        }
        let replies = Replies::new(config.requests_max);
        let handler: crate::remoting::InboundHandler = {
            let replies = replies.clone();
            Arc::new(move |addr, req| {
                if req.code == request_code::PUSH_REPLY_MESSAGE_TO_CLIENT {
                    Some(replies.deliver(addr, req))
                } else {
                    handler.as_ref().and_then(|h| h(addr, req))
                }
            })
        };
        let core = Core::start(config.client.clone(), Some(handler)).await?;
        let client_hash = {
            let mut h: i32 = 0;
            for b in core.client_id.bytes() {
                h = h.wrapping_mul(31).wrapping_add(i32::from(b));
            }
            h ^ clock::now_ms() as i32
        };
        let uniq = UniqKeyGenerator::new(core.local_ip, std::process::id(), client_hash);
        core.poll_routes();
        let (async_sends, to_drive) = mpsc::unbounded_channel();
        tokio::spawn(drive_async_sends(to_drive));
        let inner = Arc::new(Inner {
            async_sends,
            async_permits: Arc::new(Semaphore::new(config.async_sends_max)),
            core,
            config,
            uniq: Mutex::new(uniq),
            counter: AtomicUsize::new(0),
            faults: Mutex::new(FaultTable::default()),
            replies,
            greeted: Mutex::new(BTreeSet::new()),
        });
        let weak = Arc::downgrade(&inner);
        inner.core.every(inner.core.config.heartbeat_ms, move || {
            let weak = weak.clone();
            async move {
                if let Some(p) = weak.upgrade() {
                    p.core.heartbeat(&p.heartbeat_data()).await;
                }
            }
        });
        Ok(Producer { inner })
    }

    /// This client's id (`ip@instance`).
    pub fn client_id(&self) -> &str {
        &self.inner.core.client_id
    }

    /// The connections, routes and settings this producer shares with its clones.
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.inner.core
    }

    /// The producer group.
    pub fn group(&self) -> &str {
        &self.inner.config.group
    }

    /// Sends a heartbeat to every broker replica this producer knows now, not at the next
    /// `heartbeat_ms` (a broker checks transactions back only with producers it knows).
    pub(crate) async fn heartbeat_now(&self) {
        self.inner.core.heartbeat(&self.inner.heartbeat_data()).await;
    }

    /// Sends and waits for the broker's acknowledgement (the message is then replicated to a
    /// majority of its group and, in sync flush mode, on their disks).
    pub async fn send(&self, msg: Message) -> Result<SendResult> {
        self.inner.send(msg, Selection::RoundRobin).await
    }

    /// Sends to the queue chosen by the Java hash of `sharding_key`: messages with one key go
    /// to one queue, in send order, and an orderly consumer sees them in that order.
    pub async fn send_ordered(&self, msg: Message, sharding_key: &str) -> Result<SendResult> {
        self.inner.send(msg, Selection::Hash(sharding_key.to_owned())).await
    }

    /// Sends to the queue `selector` picks.
    pub async fn send_with_selector(
        &self,
        msg: Message,
        selector: QueueSelector,
    ) -> Result<SendResult> {
        self.inner.send(msg, Selection::Custom(selector)).await
    }

    /// Starts a send and returns at once with a handle to its result; waits first while
    /// `async_sends_max` sends are in flight. Dropping the handle does not cancel the send.
    pub async fn send_async(&self, msg: Message) -> Result<SendHandle> {
        let (tx, result) = oneshot::channel();
        self.start_async(msg, move |r| {
            let _ = tx.send(r);
        })
        .await?;
        Ok(SendHandle { result })
    }

    /// Starts a send whose result goes to `callback` (run on the producer's driver task, with
    /// its other sends: keep it short).
    pub async fn send_with_callback<F>(&self, msg: Message, callback: F) -> Result<()>
    where
        F: FnOnce(Result<SendResult>) + Send + 'static,
    {
        self.start_async(msg, callback).await
    }

    /// Hands a send to the driver task once a permit is free.
    async fn start_async<F>(&self, msg: Message, done: F) -> Result<()>
    where
        F: FnOnce(Result<SendResult>) + Send + 'static,
    {
        let permit = self
            .inner
            .async_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Shutdown)?;
        let inner = self.inner.clone();
        let send: AsyncSend = Box::pin(async move {
            let r = inner.send(msg, Selection::RoundRobin).await;
            drop(permit);
            done(r);
        });
        self.inner.async_sends.send(send).map_err(|_| ClientError::Shutdown)
    }

    /// Sends `msg` as a request and waits for its reply, for `timeout_ms` in all (RocketMQ's
    /// `DefaultMQProducer.request`, 4.6+). The request is an ordinary message to its topic
    /// with CORRELATION_ID, REPLY_TO_CLIENT and TTL set; a consumer answers it with
    /// [`Producer::reply`] (or [`Message::reply_to`] and a send), and the broker that takes
    /// the reply pushes it here.
    ///
    /// Errors: the send's own (the request may not have been stored), or
    /// [`ClientError::NoReply`] when it was sent but no reply came in time. A reply that
    /// comes later is dropped. The replier must reach a master this producer introduced
    /// itself to: the masters of the reply topic of the topic's cluster (this call sees to
    /// it before it sends).
    pub async fn request(&self, mut msg: Message, timeout_ms: u64) -> Result<MessageExt> {
        let inner = &self.inner;
        msg.validate(inner.config.message_max_bytes)?;
        if timeout_ms == 0 {
            return Err(ClientError::InvalidArgument("a request's timeout must be above 0".into()));
        }
        let deadline = clock::deadline_in(timeout_ms);
        let id = lock(&inner.uniq).next_id(clock::now_ms());
        msg.properties.insert(property::CORRELATION_ID.to_owned(), id.clone());
        msg.properties.insert(property::REPLY_TO_CLIENT.to_owned(), inner.core.client_id.clone());
        msg.properties.insert(property::TTL.to_owned(), timeout_ms.to_string());
        let topic = msg.topic.clone();
        inner.introduce_for_replies(&topic, deadline).await?;
        // In place before the request leaves: the reply can come before the send's answer.
        let mut waiting = inner.replies.wait(&id)?;
        let left = deadline.saturating_duration_since(clock::instant());
        match tokio::time::timeout(left, inner.send(msg, Selection::RoundRobin)).await {
            Ok(sent) => sent?,
            Err(_) => {
                return Err(ClientError::Timeout {
                    addr: "the brokers".into(),
                    what: "SEND_MESSAGE",
                    timeout_ms,
                })
            }
        };
        let left = deadline.saturating_duration_since(clock::instant());
        match tokio::time::timeout(left, waiting.reply()).await {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => Err(ClientError::Shutdown),
            Err(_) => Err(ClientError::NoReply { topic, correlation_id: id, timeout_ms }),
        }
    }

    /// Replies to `request` (a request message a consumer received) with `body`: sends
    /// [`Message::reply_to`]`(request, body)`. Acknowledged once the broker pushed the reply
    /// to the requester (and, by default, stored it in the reply topic); an error says the
    /// requester did not get it (gone, or not connected to that master).
    pub async fn reply(&self, request: &MessageExt, body: impl Into<Bytes>) -> Result<SendResult> {
        self.send(Message::reply_to(request, body)?).await
    }

    /// Sends without waiting for an answer: no acknowledgement, no retry. Errors are only
    /// those found before the message leaves (no route, bad message, connection refused).
    pub async fn send_oneway(&self, msg: Message) -> Result<()> {
        let inner = &self.inner;
        msg.validate(inner.config.message_max_bytes)?;
        let route = inner.publish_route(&msg.topic).await?;
        let queues = inner.publish_queues(&route, &msg.topic);
        let counter = inner.counter.fetch_add(1, Ordering::Relaxed);
        let now = clock::now_ms() as u64;
        let mq = select::queue_round_robin(&queues, counter, None, &lock(&inner.faults), now)
            .ok_or_else(|| no_master(&msg.topic))?;
        let addr = route.master_addr(&mq.broker_name).ok_or_else(|| no_master(&msg.topic))?;
        let req = inner.request(&msg, &mq, false);
        Ok(inner.core.remoting.call_oneway(addr, req, inner.config.send_timeout_ms).await?)
    }

    /// Sends messages of one topic as one batch (one request, stored together, one queue).
    /// Each message gets its own UNIQ_KEY; the result's ids are comma-joined.
    pub async fn send_batch(&self, msgs: Vec<Message>) -> Result<SendResult> {
        let Some(first) = msgs.first() else {
            return Err(ClientError::InvalidArgument("the batch is empty".into()));
        };
        let topic = first.topic.clone();
        let mut ids = Vec::with_capacity(msgs.len());
        let mut items = Vec::with_capacity(msgs.len());
        let now = clock::now_ms();
        for m in msgs {
            m.validate(self.inner.config.message_max_bytes)?;
            if m.topic != topic {
                return Err(ClientError::InvalidArgument(format!(
                    "a batch holds one topic: {topic} and {}",
                    m.topic
                )));
            }
            let mut props = m.properties.clone();
            let id = props
                .entry(property::UNIQ_KEY.to_owned())
                .or_insert_with(|| lock(&self.inner.uniq).next_id(now))
                .clone();
            ids.push(id);
            items.push(BatchMessage {
                flag: m.flag,
                body: m.body.clone(),
                properties: properties_to_string(
                    props.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                ),
            });
        }
        let body = encode_batch(&items).map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        if body.len() > self.inner.config.message_max_bytes {
            return Err(ClientError::MessageTooLarge {
                bytes: body.len(),
                max_bytes: self.inner.config.message_max_bytes,
            });
        }
        let batch = Message {
            topic,
            body: Bytes::from(body),
            flag: 0,
            properties: [(property::UNIQ_KEY.to_owned(), ids.join(","))].into(),
        };
        self.inner.send_prepared(batch, Selection::RoundRobin, true).await
    }

    /// Waits for async sends in flight (up to the send timeout), leaves the producer group on
    /// the brokers and closes connections.
    pub async fn shutdown(&self) {
        let all = self.inner.config.async_sends_max as u32;
        let wait = Duration::from_millis(self.inner.config.send_timeout_ms + 1_000);
        let _ = tokio::time::timeout(wait, self.inner.async_permits.acquire_many(all)).await;
        self.inner.async_permits.close();
        self.inner.core.shutdown(Some(&self.inner.config.group), None).await;
    }
}

impl Drop for Inner {
    /// The last clone of a producer dropped without `shutdown`: stop its loops.
    fn drop(&mut self) {
        self.core.halt();
    }
}

/// The result of an async send; awaiting it gives the send's result.
pub struct SendHandle {
    result: oneshot::Receiver<Result<SendResult>>,
}

impl Future for SendHandle {
    type Output = Result<SendResult>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.result).poll(cx).map(|r| r.unwrap_or(Err(ClientError::Shutdown)))
    }
}

fn no_master(topic: &str) -> ClientError {
    ClientError::NoRoute {
        topic: topic.to_owned(),
        reason: "no broker group of the topic has a master now".into(),
    }
}

impl Inner {
    fn heartbeat_data(&self) -> HeartbeatData {
        HeartbeatData {
            client_id: self.core.client_id.clone(),
            consumer_data_set: Vec::new(),
            producer_data_set: vec![ProducerData { group_name: self.config.group.clone() }],
        }
    }

    /// Sees to it that every master a reply to a request on `topic` may reach knows this
    /// producer: the masters of the topic's groups and of its clusters' reply topics. A
    /// heartbeat goes out at once when one of them is new (routes are fetched within
    /// `deadline`); the periodic heartbeats keep them informed afterwards.
    async fn introduce_for_replies(
        &self,
        topic: &str,
        deadline: tokio::time::Instant,
    ) -> Result<()> {
        let route = self.bounded(deadline, self.publish_route(topic)).await?;
        let masters = |r: &TopicRoute| -> Vec<String> {
            r.data.broker_datas.iter().filter_map(|b| b.master_addr().map(str::to_owned)).collect()
        };
        let mut reached = masters(&route);
        let clusters: BTreeSet<&str> = route
            .data
            .broker_datas
            .iter()
            .map(|b| b.cluster.as_str())
            .filter(|c| !c.is_empty())
            .collect();
        for cluster in clusters {
            let reply_topic = rocketraft_protocol::names::reply_topic(cluster);
            match self.bounded(deadline, self.core.routes.get(&reply_topic)).await {
                Ok(r) => reached.extend(masters(&r)),
                // A broker without request-reply: replies reach only the topic's own groups.
                Err(e) => {
                    tracing::debug!(topic = %reply_topic, error = %e, "no route to the reply topic")
                }
            }
        }
        let new = {
            let mut greeted = lock(&self.greeted);
            let mut new = false;
            for m in reached {
                new |= greeted.insert(m);
            }
            new
        };
        if new {
            self.core.heartbeat(&self.heartbeat_data()).await;
        }
        Ok(())
    }

    async fn send(&self, mut msg: Message, how: Selection) -> Result<SendResult> {
        msg.validate(self.config.message_max_bytes)?;
        if !msg.properties.contains_key(property::UNIQ_KEY) {
            let id = lock(&self.uniq).next_id(clock::now_ms());
            msg.properties.insert(property::UNIQ_KEY.to_owned(), id);
        }
        self.send_prepared(msg, how, false).await
    }

    /// The route to send `topic` by: its own, or the template topic's while no NameServer
    /// knows it (the broker then creates it).
    async fn publish_route(&self, topic: &str) -> Result<Arc<TopicRoute>> {
        match self.core.routes.get(topic).await {
            Ok(r) => Ok(r),
            Err(ClientError::NoRoute { .. }) => {
                let template = self.core.routes.get(AUTO_CREATE_TOPIC).await.map_err(|e| {
                    ClientError::NoRoute {
                        topic: topic.to_owned(),
                        reason: format!(
                            "no NameServer knows it and it cannot be auto-created ({e}); \
                             create it first (rocketraft topic create)"
                        ),
                    }
                })?;
                Ok(template)
            }
            Err(e) => Err(e),
        }
    }

    /// Writable queues of groups with a master; for a template route, the first
    /// `default_topic_queue_nums` of each group, named for `topic`.
    fn publish_queues<'r>(&self, route: &'r TopicRoute, topic: &str) -> Cow<'r, [MessageQueue]> {
        if route.topic == topic {
            return Cow::Borrowed(route.publish_queues());
        }
        let mut queues = select::publish_queues(topic, &route.data, true);
        queues.retain(|q| q.queue_id < self.config.default_topic_queue_nums);
        Cow::Owned(queues)
    }

    /// The SEND_MESSAGE_V2 (or SEND_BATCH_MESSAGE) request for `msg` to `mq`. A batch's own
    /// properties stay out of the header: the broker appends header properties to every
    /// message of a batch.
    fn request(&self, msg: &Message, mq: &MessageQueue, batch: bool) -> RemotingCommand {
        let header = SendMessageRequestHeaderV2 {
            a: self.config.group.clone(),
            b: msg.topic.clone(),
            c: AUTO_CREATE_TOPIC.to_owned(),
            d: self.config.default_topic_queue_nums,
            e: mq.queue_id,
            // A transactional message is a half message: TRAN_MSG and the PREPARED bit, as
            // RocketMQ's producers send it.
            f: if msg.properties.get(property::TRAN_MSG).is_some_and(|v| v == "true") {
                rocketraft_protocol::sysflag::message::TRANSACTION_PREPARED
            } else {
                0
            },
            g: clock::now_ms(),
            h: msg.flag,
            i: (!batch).then(|| {
                properties_to_string(msg.properties.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            }),
            j: Some(0),
            k: Some(false),
            l: None,
            m: batch.then_some(true),
            n: None,
            broker_name: Some(mq.broker_name.clone()),
        };
        let code = if batch {
            request_code::SEND_BATCH_MESSAGE
        } else if msg.is_reply() {
            request_code::SEND_REPLY_MESSAGE_V2
        } else {
            request_code::SEND_MESSAGE_V2
        };
        let compressed = (!batch)
            .then(|| {
                compress_body(
                    &msg.body,
                    self.config.compress_over_bytes,
                    self.config.compress_level,
                )
            })
            .flatten();
        match compressed {
            Some(body) => {
                // The type bits say zlib (5.x); 4.x consumers look at COMPRESSED only.
                let mut header = header;
                header.f |= sysflag::COMPRESSED | sysflag::COMPRESSION_ZLIB;
                RemotingCommand::request(code, &header).with_body(body)
            }
            None => RemotingCommand::request(code, &header).with_body(msg.body.clone()),
        }
    }

    async fn send_prepared(&self, msg: Message, how: Selection, batch: bool) -> Result<SendResult> {
        let deadline = clock::deadline_in(self.config.send_timeout_ms);
        let max_attempts = 1 + self.config.retries;
        let mut attempts = 0u32;
        let mut avoid: Option<String> = None;
        let mut last: Option<ClientError> = None;
        let mut fresh_route = false;
        while attempts < max_attempts {
            let now = clock::instant();
            if now >= deadline {
                break;
            }
            let route = match self.bounded(deadline, self.publish_route(&msg.topic)).await {
                Ok(r) => r,
                // The NameServers said so: waiting will not change it. After an attempt that
                // may have stored the message, the send is reported failed with its attempts
                // (indeterminate), not as if it never left.
                Err(e @ ClientError::NoRoute { .. }) => {
                    if attempts == 0 {
                        return Err(e);
                    }
                    last = Some(e);
                    break;
                }
                Err(e) => {
                    last = Some(e);
                    if !self.pause_before_route_retry(deadline).await {
                        break;
                    }
                    continue;
                }
            };
            let queues = match how {
                Selection::RoundRobin => self.publish_queues(&route, &msg.topic),
                // Keyed sends choose among every writable queue, master or not, so that a
                // failover does not move keys to other queues.
                _ if route.topic == msg.topic => Cow::Borrowed(route.writable_queues()),
                _ => {
                    let mut all = select::publish_queues(&msg.topic, &route.data, false);
                    all.retain(|q| q.queue_id < self.config.default_topic_queue_nums);
                    Cow::Owned(all)
                }
            };
            let now_ms = clock::now_ms() as u64;
            let chosen = match &how {
                Selection::RoundRobin => {
                    let counter = self.counter.fetch_add(1, Ordering::Relaxed);
                    // Chosen under the table's lock: no copy of the table on every send.
                    let none = FaultTable::default();
                    let table = lock(&self.faults);
                    let faults = if self.config.fault_avoidance { &*table } else { &none };
                    select::queue_round_robin(&queues, counter, avoid.as_deref(), faults, now_ms)
                }
                Selection::Hash(key) => select::queue_by_hash(&queues, key),
                Selection::Custom(f) => f(&queues, &msg),
            };
            let Some(mq) = chosen else {
                last = Some(no_master(&msg.topic));
                if !fresh_route {
                    fresh_route = true;
                    let _ = self.bounded(deadline, self.core.routes.refresh(&route.topic)).await;
                    continue;
                }
                if !self.pause_before_route_retry(deadline).await {
                    break;
                }
                let _ = self.bounded(deadline, self.core.routes.refresh(&route.topic)).await;
                continue;
            };
            let Some(addr) = route.master_addr(&mq.broker_name).map(str::to_owned) else {
                // A keyed send's queue is on a group without a master: wait for the election.
                last = Some(no_master(&msg.topic));
                if !self.pause_before_route_retry(deadline).await {
                    break;
                }
                let _ = self.bounded(deadline, self.core.routes.refresh(&route.topic)).await;
                continue;
            };
            attempts += 1;
            let req = self.request(&msg, &mq, batch);
            // An attempt that is not the last gets half of what is left (at least 1 s), so a
            // broker that swallows requests (frozen, cut off) leaves time for a retry on a
            // refreshed route instead of eating the whole send timeout.
            let remaining = deadline.saturating_duration_since(clock::instant());
            let budget = if attempts < max_attempts {
                (remaining / 2).max(Duration::from_millis(ATTEMPT_MIN_MS)).min(remaining)
            } else {
                remaining
            };
            let t0 = clock::instant();
            let result = self
                .core
                .remoting
                .call(&addr, req, budget.as_millis() as u64)
                .await
                .map_err(ClientError::from);
            let latency_ms = t0.elapsed().as_millis() as u64;
            let outcome = result.and_then(|resp| parse_send_response(&addr, resp, &msg, &mq));
            let failed = matches!(&outcome, Err(e) if e.is_retryable());
            lock(&self.faults).record(&mq.broker_name, latency_ms, failed, clock::now_ms() as u64);
            match outcome {
                Ok(r) => return Ok(r),
                Err(e) if e.is_retryable() => {
                    tracing::debug!(topic = %msg.topic, broker = %mq.broker_name, %addr, attempt = attempts, error = %e, "send failed; retrying");
                    if e.code() == Some(response_code::SYSTEM_BUSY) {
                        // The broker sheds load: give it a moment instead of hammering it.
                        let pause =
                            Duration::from_millis(SYSTEM_BUSY_BACKOFF_MS * u64::from(attempts));
                        let left = deadline.saturating_duration_since(clock::instant());
                        tokio::time::sleep(pause.min(left)).await;
                    }
                    avoid = Some(mq.broker_name.clone());
                    last = Some(e);
                    let _ = self.bounded(deadline, self.core.routes.refresh(&route.topic)).await;
                    fresh_route = true;
                }
                Err(e) => return Err(e),
            }
        }
        let last = last.unwrap_or(ClientError::Timeout {
            addr: "the brokers".into(),
            what: "SEND_MESSAGE",
            timeout_ms: self.config.send_timeout_ms,
        });
        if attempts == 0 {
            return Err(last);
        }
        // The route may be stale (a master that stopped answering): refresh it in the
        // background, so the next send does not need time this one no longer has.
        let routes = self.core.routes.clone();
        let topic = msg.topic.clone();
        tokio::spawn(async move {
            let _ = routes.refresh(&topic).await;
        });
        Err(ClientError::SendFailed { topic: msg.topic, attempts, last: Box::new(last) })
    }

    /// Runs a route call within the send's deadline (a NameServer call may take the whole
    /// call timeout, once per NameServer).
    async fn bounded<T>(
        &self,
        deadline: tokio::time::Instant,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let left = deadline.saturating_duration_since(clock::instant());
        tokio::time::timeout(left, call).await.unwrap_or_else(|_| {
            Err(ClientError::Timeout {
                addr: "the NameServers".into(),
                what: "GET_ROUTEINFO_BY_TOPIC",
                timeout_ms: left.as_millis() as u64,
            })
        })
    }

    /// Sleeps `no_master_wait_ms` (or less, to the deadline); false if no time is left.
    async fn pause_before_route_retry(&self, deadline: tokio::time::Instant) -> bool {
        let now = clock::instant();
        if now >= deadline {
            return false;
        }
        let wait = Duration::from_millis(self.config.no_master_wait_ms).min(deadline - now);
        tokio::time::sleep(wait).await;
        clock::instant() < deadline
    }
}

fn parse_send_response(
    addr: &str,
    resp: RemotingCommand,
    msg: &Message,
    mq: &MessageQueue,
) -> Result<SendResult> {
    let status = match resp.code {
        response_code::SUCCESS => SendStatus::SendOk,
        response_code::FLUSH_DISK_TIMEOUT => SendStatus::FlushDiskTimeout,
        response_code::FLUSH_SLAVE_TIMEOUT => SendStatus::FlushSlaveTimeout,
        response_code::SLAVE_NOT_AVAILABLE => SendStatus::SlaveNotAvailable,
        code => {
            return Err(ClientError::Broker {
                addr: addr.to_owned(),
                code,
                remark: resp.remark.unwrap_or_default(),
            })
        }
    };
    let h: SendMessageResponseHeader = resp
        .decode_header()
        .map_err(|e| ClientError::Protocol { addr: addr.to_owned(), source: e })?;
    Ok(SendResult {
        status,
        msg_id: msg.properties.get(property::UNIQ_KEY).cloned().unwrap_or_default(),
        offset_msg_id: h.msg_id,
        queue: MessageQueue {
            broker_name: mq.broker_name.clone(),
            queue_id: h.queue_id,
            topic: mq.topic.clone(),
        },
        queue_offset: h.queue_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_long_bodies_that_shrink_are_compressed_and_they_inflate_back() {
        let long = b"abcd".repeat(2_000);
        let z = compress_body(&long, COMPRESS_OVER_BYTES_DEFAULT, COMPRESS_LEVEL_DEFAULT).unwrap();
        assert!(z.len() < 200, "{}", z.len());
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&z[..]), &mut back).unwrap();
        assert_eq!(back, long);
        assert!(compress_body(&long[..4_096], 4_096, 5).is_none(), "not over the threshold");
        assert!(compress_body(&long, usize::MAX, 5).is_none(), "turned off");
        let mut seed = 7u64;
        let noise: Vec<u8> = (0..5_000)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (seed >> 56) as u8
            })
            .collect();
        assert!(compress_body(&noise, 4_096, 5).is_none(), "noise does not shrink");
    }
}
