//! `rocketraft bench produce|consume|e2e`: load against a running cluster, like RocketMQ's
//! benchmark Producer and Consumer. Reports throughput (messages/s, MiB/s) and latency
//! (p50/p99/p99.9/max), with a live progress line while it runs, and the CPU time spent per
//! message by the bench itself and, when the cluster runs on this machine, by its server
//! processes ([`crate::cpu`]).
//!
//! Bench bodies carry a header so that a consumer can time delivery and find losses:
//! `RRB1` | send time (Unix µs, u64 BE) | run id (u64 BE) | sequence number (u64 BE) | filler.
//! Send latency is measured from the call to its acknowledgement; end-to-end latency from the
//! producer's clock reading in the body to the consumer's listener (same machine, or clocks in
//! sync). `e2e` runs both in one process and reports every acknowledged message it did not
//! receive back. With `--delay-ms`, every message is a 5.x timer message due that long after
//! its send, and end-to-end latency becomes lateness: from when it was due to its receipt.
//! `--rate` paces the producers (messages per second, all together).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocketraft_client::{
    Admin, ClientConfig, ConsumeFrom, ConsumeResult, Message, MessageExt, Producer, ProducerConfig,
    PushConsumer, PushConsumerConfig, SendResult, TransactionListener, TransactionProducer,
    TransactionState,
};
use serde_json::{json, Value};

use crate::hist::Histogram;

const MAGIC: &[u8; 4] = b"RRB1";
/// Bytes of the bench header: the smallest body that can be timed and checked.
pub const HEADER_BYTES: usize = 28;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub namesrv: String,
    /// The clients' settings (NameServers, ACL credentials).
    pub client: ClientConfig,
    pub topic: String,
    /// Queues of the topic if the bench creates it. Default 8.
    pub queues: i32,
    pub producers: usize,
    pub consumers: usize,
    /// Body size in bytes. Default 1,024.
    pub size: usize,
    /// Stop after this long (default 30 s when no count is given).
    pub duration: Option<Duration>,
    /// Stop after this many sends (or, consuming, receipts).
    pub count: Option<u64>,
    /// `false`: each producer waits for every send (sync); `true`: up to `in_flight` sends
    /// outstanding per producer (async).
    pub asynchronous: bool,
    pub in_flight: usize,
    /// The consumer group (`consume`); `e2e` makes a fresh one per run.
    pub group: String,
    /// `consume`: a new group starts at the oldest message; with neither a duration nor a
    /// count, the run stops once the backlog found at its start is read.
    pub from_first: bool,
    /// How long `e2e` waits for the last acknowledged messages to arrive. Default 30 s.
    pub drain: Duration,
    /// Print a progress line every second (a terminal) or every 10 s (anything else).
    pub live: bool,
    /// Send every message as a timer message due this long after its send (0: none).
    /// Delays of 100 ms x 2^k are stored once before they are delivered (one stop in the
    /// broker's timer queues); others take more stops.
    pub delay_ms: u64,
    /// Messages per second, all producers together (`None`: as fast as they go).
    pub rate: Option<u64>,
    /// Send transactional messages whose local transaction takes this long, then commits
    /// (`None`: plain sends). Up to `in_flight` transactions run at once per producer.
    pub transaction_local_ms: Option<u64>,
    /// Give every message a property `n`: its sequence number mod 100.
    pub numbered: bool,
    /// Consumers subscribe with this SQL92 selector (`None`: every message).
    pub sql: Option<String>,
}

/// The bench's local transaction: waits, then commits (and commits when checked back).
#[derive(Clone)]
struct BenchTransaction {
    local: Duration,
}

impl TransactionListener for BenchTransaction {
    async fn execute_local(&self, _msg: &Message, _sent: &SendResult) -> TransactionState {
        if !self.local.is_zero() {
            tokio::time::sleep(self.local).await;
        }
        TransactionState::Commit
    }

    async fn check(&self, _msg: MessageExt) -> TransactionState {
        TransactionState::Commit
    }
}

/// A bench producer: plain, or transactional.
enum BenchProducer {
    Plain(Producer),
    Transactional(TransactionProducer<BenchTransaction>),
}

impl BenchProducer {
    async fn shutdown(&self) {
        match self {
            BenchProducer::Plain(p) => p.shutdown().await,
            BenchProducer::Transactional(p) => p.shutdown().await,
        }
    }
}

/// Unix time in microseconds (wall clock: bodies carry it between processes).
#[allow(clippy::disallowed_methods)] // real time is what a benchmark measures
fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[allow(clippy::disallowed_methods)] // real time is what a benchmark measures
fn instant() -> std::time::Instant {
    std::time::Instant::now()
}

/// A body of `size` bytes: the header when it fits, then filler.
pub fn make_body(size: usize, run: u64, seq: u64, sent_us: u64) -> Vec<u8> {
    let mut body = Vec::with_capacity(size.max(HEADER_BYTES));
    body.extend_from_slice(MAGIC);
    body.extend_from_slice(&sent_us.to_be_bytes());
    body.extend_from_slice(&run.to_be_bytes());
    body.extend_from_slice(&seq.to_be_bytes());
    body.truncate(size);
    body.resize(size, b'x');
    body
}

/// (send time µs, run, sequence) of a bench body.
pub fn read_header(body: &[u8]) -> Option<(u64, u64, u64)> {
    if body.len() < HEADER_BYTES || &body[..4] != MAGIC {
        return None;
    }
    let at = |i: usize| u64::from_be_bytes(body[i..i + 8].try_into().unwrap_or([0; 8]));
    Some((at(4), at(12), at(20)))
}

/// A growable bit set of sequence numbers.
#[derive(Default)]
struct Seqs(Vec<u64>);

impl Seqs {
    fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        let new = self.0[word] & (1 << bit) == 0;
        self.0[word] |= 1 << bit;
        new
    }
    fn contains(&self, seq: u64) -> bool {
        self.0.get((seq / 64) as usize).is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }
    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().enumerate().flat_map(|(i, w)| {
            (0..64).filter(move |b| w & (1 << b) != 0).map(move |b| i as u64 * 64 + b)
        })
    }
}

/// One side's figures (sends or receipts).
#[derive(Default)]
struct Side {
    ok: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    total: Mutex<Histogram>,
    interval: Mutex<Histogram>,
    /// Wall-clock microseconds of the first and the last record (0: none yet).
    first_us: AtomicU64,
    last_us: AtomicU64,
}

impl Side {
    fn record(&self, micros: u64, bytes: usize) {
        let now = wall_us();
        let _ = self.first_us.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last_us.fetch_max(now, Ordering::Relaxed);
        self.ok.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        crate::lock(&self.total).record(micros);
        crate::lock(&self.interval).record(micros);
    }
}

struct Shared {
    config: BenchConfig,
    run: u64,
    stop: AtomicBool,
    /// Sequence numbers handed out to producers.
    next_seq: AtomicU64,
    sent: Side,
    received: Side,
    acked: Mutex<Seqs>,
    got: Mutex<Seqs>,
    duplicates: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    /// The next sequence number, or None once the count is reached or the run stopped.
    fn claim(&self) -> Option<u64> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        match self.config.count {
            Some(n) if seq >= n => None,
            _ => Some(seq),
        }
    }

    fn failed(&self, e: impl std::fmt::Display) {
        self.sent.errors.fetch_add(1, Ordering::Relaxed);
        *crate::lock(&self.last_error) = Some(e.to_string());
    }
}

/// Which parts run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Produce,
    Consume,
    EndToEnd,
}

/// Runs a benchmark until its duration or count is reached or `stop` resolves; returns the
/// summary as text and JSON.
pub async fn run(
    kind: Kind,
    config: BenchConfig,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<(String, Value)> {
    if config.size == 0 {
        anyhow::bail!("--size 0: a message needs at least one byte");
    }
    if kind == Kind::EndToEnd && config.size < HEADER_BYTES {
        anyhow::bail!(
            "--size {}: e2e needs at least {HEADER_BYTES} bytes to time and check each message",
            config.size
        );
    }
    crate::admin::check_topic_name(&config.topic)?;
    let mut config = config;
    let admin = Admin::start(config.client.clone()).await?;
    if kind == Kind::Consume
        && config.from_first
        && config.count.is_none()
        && config.duration.is_none()
    {
        // Read the backlog as it stands now, then stop.
        let backlog = match backlog(&admin, &config).await {
            Ok(n) => n,
            Err(e) => {
                admin.shutdown().await;
                return Err(e);
            }
        };
        if backlog == 0 {
            admin.shutdown().await;
            anyhow::bail!(
                "group {} has nothing left to read in {}: no backlog to time",
                config.group,
                config.topic
            );
        }
        config.count = Some(backlog);
    }
    let start_ms = (wall_us() / 1000) as i64;
    let run = u64::from(std::process::id()) << 32 ^ wall_us();
    let shared = Arc::new(Shared {
        config: config.clone(),
        run,
        stop: AtomicBool::new(false),
        next_seq: AtomicU64::new(0),
        sent: Side::default(),
        received: Side::default(),
        acked: Mutex::default(),
        got: Mutex::default(),
        duplicates: AtomicU64::new(0),
        last_error: Mutex::default(),
    });
    // Topic creation and the e2e wait for queue assignment ask the cluster through `admin`.
    if kind != Kind::Consume {
        if let Err(e) = ensure_topic(&admin, &config).await {
            admin.shutdown().await;
            return Err(e);
        }
    }

    let mut consumers = Vec::new();
    if kind != Kind::Produce {
        let (group, from) = match kind {
            // A fresh group reading from this run's start: nothing older, nothing missed.
            Kind::EndToEnd => {
                (format!("rocketraft-bench-{run:x}"), ConsumeFrom::Timestamp(start_ms - 1_000))
            }
            _ if config.from_first => (config.group.clone(), ConsumeFrom::FirstOffset),
            _ => (config.group.clone(), ConsumeFrom::LastOffset),
        };
        for i in 0..config.consumers.max(1) {
            let c = PushConsumerConfig {
                client: config.client.clone(),
                ..PushConsumerConfig::new(&config.namesrv, group.clone())
            };
            let mut c = match &config.sql {
                Some(expr) => c.subscribe_sql(config.topic.clone(), expr.clone()),
                None => c.subscribe(config.topic.clone(), "*"),
            };
            c.consume_from = from;
            c.client.instance_name = Some(format!("bench-{run:x}-c{i}"));
            let shared = shared.clone();
            let listener = move |msgs: Vec<MessageExt>| {
                let shared = shared.clone();
                async move {
                    receive(&shared, kind, &msgs);
                    ConsumeResult::Success
                }
            };
            consumers.push(PushConsumer::start_concurrently(c, listener).await?);
        }
    }

    if kind == Kind::EndToEnd {
        // Produce once the group holds every queue, so the first messages are not timed
        // waiting for the first rebalance.
        wait_for_assignment(&admin, &config, &consumers).await;
    }
    let servers = local_servers(&admin, &config).await;
    admin.shutdown().await;

    let server_cpu = crate::cpu::CpuMeter::start(servers);
    let own_cpu = crate::cpu::CpuMeter::start([std::process::id()].into());
    let t0 = instant();
    let mut producers = Vec::new();
    let mut tasks = Vec::new();
    if kind != Kind::Consume {
        for i in 0..config.producers.max(1) {
            let mut pc = ProducerConfig {
                client: config.client.clone(),
                ..ProducerConfig::new(&config.namesrv)
            };
            pc.client.instance_name = Some(format!("bench-{run:x}-p{i}"));
            pc.async_sends_max = pc.async_sends_max.max(config.in_flight);
            let p = Arc::new(match config.transaction_local_ms {
                Some(ms) => {
                    pc.group = format!("bench_tx_{run:x}");
                    let local = BenchTransaction { local: Duration::from_millis(ms) };
                    BenchProducer::Transactional(TransactionProducer::start(pc, local).await?)
                }
                None => BenchProducer::Plain(Producer::start(pc).await?),
            });
            producers.push(p.clone());
            tasks.push(tokio::spawn(produce(shared.clone(), p)));
        }
    }
    let progress = tokio::spawn(progress(shared.clone(), kind, t0));

    // Run until the duration, the count or a stop signal.
    let duration = config.duration.or(if config.count.is_none() {
        Some(Duration::from_secs(30))
    } else {
        None
    });
    let count_reached = {
        let shared = shared.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let Some(n) = shared.config.count else { continue };
                let done = match kind {
                    Kind::Consume => shared.received.ok.load(Ordering::Relaxed) >= n,
                    _ => {
                        shared.sent.ok.load(Ordering::Relaxed)
                            + shared.sent.errors.load(Ordering::Relaxed)
                            >= n
                    }
                };
                if done {
                    return;
                }
            }
        }
    };
    let mut interrupted = false;
    tokio::pin!(stop);
    tokio::select! {
        biased;
        _ = &mut stop => interrupted = true,
        _ = async { match duration { Some(d) => tokio::time::sleep(d).await, None => std::future::pending().await } } => {}
        _ = count_reached => {}
    }
    shared.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let produced_in = t0.elapsed();
    for p in &producers {
        p.shutdown().await;
    }

    // e2e: wait for every acknowledged message to come back (or the drain time).
    if kind == Kind::EndToEnd && !interrupted {
        let deadline = instant() + config.drain;
        loop {
            let missing = missing(&shared).len();
            if missing == 0 || instant() >= deadline {
                break;
            }
            tokio::select! {
                biased;
                _ = &mut stop => break,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }
    let consumed_in = t0.elapsed();
    progress.abort();
    if config.live {
        eprintln!();
    }
    let cpu = CpuUsed {
        servers: server_cpu.pids().len(),
        server_us: server_cpu.used_us(),
        own_us: own_cpu.used_us(),
    };
    for c in consumers {
        c.shutdown().await;
    }
    Ok(summary(&shared, kind, produced_in, consumed_in, interrupted, cpu))
}

/// CPU time over the run: of the cluster's local server processes (how many were found) and
/// of the bench's own process.
#[derive(Debug, Clone, Copy)]
struct CpuUsed {
    servers: usize,
    server_us: u64,
    own_us: u64,
}

/// The local processes serving the cluster's NameServers and brokers (none for a remote one).
async fn local_servers(admin: &Admin, config: &BenchConfig) -> std::collections::BTreeSet<u32> {
    let mut addrs: Vec<String> = config.namesrv.split(';').map(|a| a.trim().to_owned()).collect();
    if let Ok(info) = admin.cluster_info().await {
        for broker in info.broker_addr_table.values() {
            addrs.extend(broker.broker_addrs.values().cloned());
        }
    }
    let resolved: Vec<std::net::SocketAddr> = addrs
        .iter()
        .filter_map(|a| std::net::ToSocketAddrs::to_socket_addrs(a.as_str()).ok())
        .flatten()
        .collect();
    crate::cpu::local_listeners(&resolved)
}

/// Creates the topic (`queues` queues on every group) unless the NameServers know it.
async fn ensure_topic(admin: &Admin, config: &BenchConfig) -> anyhow::Result<()> {
    if !admin.topics().await?.contains(&config.topic) {
        admin.create_topic(None, &config.topic, config.queues, false).await?;
    }
    Ok(())
}

/// Waits (up to 15 s) until the consumers between them hold every readable queue of the
/// topic's route.
async fn wait_for_assignment(admin: &Admin, config: &BenchConfig, consumers: &[PushConsumer]) {
    for _ in 0..150 {
        let expected: usize = match admin.route(&config.topic).await {
            Ok(r) => r.queue_datas.iter().map(|q| q.read_queue_nums.max(0) as usize).sum(),
            Err(_) => 0,
        };
        let held: std::collections::BTreeSet<_> =
            consumers.iter().flat_map(|c| c.assigned_queues()).collect();
        if expected > 0 && held.len() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn produce(shared: Arc<Shared>, producer: Arc<BenchProducer>) {
    let config = &shared.config;
    let permits = Arc::new(tokio::sync::Semaphore::new(config.in_flight.max(1)));
    // Each producer sends its share of the rate, evenly spaced.
    let pace = config
        .rate
        .filter(|r| *r > 0)
        .map(|r| Duration::from_secs_f64(config.producers.max(1) as f64 / r as f64));
    let mut next = instant();
    while let Some(seq) = shared.claim() {
        if let Some(pace) = pace {
            next += pace;
            let now = instant();
            if next > now {
                tokio::time::sleep(next - now).await;
            }
        }
        let body = make_body(config.size, shared.run, seq, wall_us());
        let mut msg = Message::new(config.topic.clone(), body).with_tags("bench");
        if config.numbered {
            msg = msg.with_property("n", (seq % 100).to_string());
        }
        if config.delay_ms > 0 {
            msg = msg.with_delay(Duration::from_millis(config.delay_ms));
        }
        let started = instant();
        let producer = match &*producer {
            BenchProducer::Plain(p) => p,
            BenchProducer::Transactional(tx) => {
                // Timed from when it may start (not while it waits for a free slot).
                let Ok(permit) = permits.clone().acquire_owned().await else { break };
                let started = instant();
                let (shared, tx) = (shared.clone(), tx.clone());
                tokio::spawn(async move {
                    match tx.send(msg).await {
                        Ok(_) => sent(&shared, seq, started),
                        Err(e) => shared.failed(e),
                    }
                    drop(permit);
                });
                continue;
            }
        };
        if !config.asynchronous {
            match producer.send(msg).await {
                Ok(_) => sent(&shared, seq, started),
                Err(e) => shared.failed(e),
            }
            continue;
        }
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        match producer.send_async(msg).await {
            Ok(handle) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    match handle.await {
                        Ok(_) => sent(&shared, seq, started),
                        Err(e) => shared.failed(e),
                    }
                    drop(permit);
                });
            }
            Err(e) => shared.failed(e),
        }
    }
    // Wait for this producer's outstanding async sends.
    let _ = permits.acquire_many(config.in_flight.max(1) as u32).await;
}

fn sent(shared: &Shared, seq: u64, started: std::time::Instant) {
    shared.sent.record(started.elapsed().as_micros() as u64, shared.config.size);
    crate::lock(&shared.acked).insert(seq);
}

fn receive(shared: &Shared, kind: Kind, msgs: &[MessageExt]) {
    // A delayed message is timed from when it was due.
    let now = wall_us().saturating_sub(shared.config.delay_ms.saturating_mul(1_000));
    for m in msgs {
        let header = read_header(&m.body);
        let sent_us = match header {
            Some((sent_us, run, seq)) if kind == Kind::EndToEnd => {
                if run != shared.run {
                    continue; // another run's message
                }
                if !crate::lock(&shared.got).insert(seq) {
                    shared.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                sent_us
            }
            Some((sent_us, _, _)) => sent_us,
            None => (m.born_timestamp_ms.max(0) as u64).saturating_mul(1000),
        };
        shared.received.record(now.saturating_sub(sent_us), m.body.len());
    }
}

/// The messages `config.group` has still to read in `config.topic`: per queue, from its
/// committed offset (or the queue's first message) to the queue's end.
async fn backlog(admin: &Admin, config: &BenchConfig) -> anyhow::Result<u64> {
    let ends = admin.topic_stats(&config.topic).await?;
    let committed = match admin.consume_stats(&config.group, Some(&config.topic)).await {
        Ok(s) => s.offset_table,
        // A group no broker knows has committed nothing.
        Err(e)
            if e.code() == Some(rocketraft_protocol::code::response_code::CONSUMER_NOT_ONLINE) =>
        {
            Default::default()
        }
        Err(e) => return Err(e.into()),
    };
    Ok(ends
        .offset_table
        .iter()
        .map(|(q, t)| {
            let from = committed.get(q).map_or(0, |o| o.consumer_offset).max(t.min_offset);
            t.max_offset.saturating_sub(from).max(0) as u64
        })
        .sum())
}

/// Acknowledged sequence numbers not received (e2e).
fn missing(shared: &Shared) -> Vec<u64> {
    let acked = crate::lock(&shared.acked);
    let got = crate::lock(&shared.got);
    acked.iter().filter(|s| !got.contains(*s)).collect()
}

async fn progress(shared: Arc<Shared>, kind: Kind, t0: std::time::Instant) {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let every = if tty { 1 } else { 10 };
    let mut last = (0u64, 0u64);
    let mut tick = 0u64;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        tick += 1;
        if !shared.config.live || !tick.is_multiple_of(every) {
            continue;
        }
        let secs = every as f64;
        let (s, r) =
            (shared.sent.ok.load(Ordering::Relaxed), shared.received.ok.load(Ordering::Relaxed));
        let mut line = format!("[{:>4.0} s]", t0.elapsed().as_secs_f64());
        let interval = |side: &Side| std::mem::take(&mut *crate::lock(&side.interval));
        if kind != Kind::Consume {
            let h = interval(&shared.sent);
            line.push_str(&format!(
                "  sent {:>8.0}/s  p99 {:>7.2} ms  errors {}",
                (s - last.0) as f64 / secs,
                h.quantile(0.99) as f64 / 1000.0,
                shared.sent.errors.load(Ordering::Relaxed)
            ));
        }
        if kind != Kind::Produce {
            let h = interval(&shared.received);
            line.push_str(&format!(
                "  received {:>8.0}/s  e2e p99 {:>7.2} ms",
                (r - last.1) as f64 / secs,
                h.quantile(0.99) as f64 / 1000.0
            ));
        }
        last = (s, r);
        if tty {
            eprint!("\r\x1b[K{line}");
        } else {
            eprintln!("{line}");
        }
    }
}

fn side_json(side: &Side, secs: f64) -> Value {
    let h = crate::lock(&side.total).clone();
    let ok = side.ok.load(Ordering::Relaxed);
    let bytes = side.bytes.load(Ordering::Relaxed);
    let ms = |us: u64| us as f64 / 1000.0;
    json!({
        "messages": ok,
        "errors": side.errors.load(Ordering::Relaxed),
        "seconds": secs,
        "msgsPerSec": if secs > 0.0 { ok as f64 / secs } else { 0.0 },
        "mibPerSec": if secs > 0.0 { bytes as f64 / secs / 1_048_576.0 } else { 0.0 },
        "latencyMs": {
            "p50": ms(h.quantile(0.5)), "p99": ms(h.quantile(0.99)),
            "p999": ms(h.quantile(0.999)), "max": ms(h.max()), "mean": h.mean() / 1000.0,
        },
    })
}

/// The time from a side's first record to its last, once it has two.
fn first_to_last(side: &Side) -> Option<Duration> {
    let (first, last) =
        (side.first_us.load(Ordering::Relaxed), side.last_us.load(Ordering::Relaxed));
    (side.ok.load(Ordering::Relaxed) > 1 && last > first)
        .then(|| Duration::from_micros(last - first))
}

fn side_text(name: &str, what: &str, v: &Value) -> String {
    let l = &v["latencyMs"];
    format!(
        "{name}: {} msgs in {:.1} s = {:.0} msgs/s, {:.2} MiB/s, {} errors\n  {what} latency (ms): p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  mean {:.2}\n",
        v["messages"], v["seconds"].as_f64().unwrap_or(0.0), v["msgsPerSec"].as_f64().unwrap_or(0.0),
        v["mibPerSec"].as_f64().unwrap_or(0.0), v["errors"],
        l["p50"].as_f64().unwrap_or(0.0), l["p99"].as_f64().unwrap_or(0.0), l["p999"].as_f64().unwrap_or(0.0),
        l["max"].as_f64().unwrap_or(0.0), l["mean"].as_f64().unwrap_or(0.0),
    )
}

fn summary(
    shared: &Shared,
    kind: Kind,
    produced_in: Duration,
    consumed_in: Duration,
    interrupted: bool,
    cpu: CpuUsed,
) -> (String, Value) {
    let c = &shared.config;
    let mut json = json!({
        "kind": match kind { Kind::Produce => "produce", Kind::Consume => "consume", Kind::EndToEnd => "e2e" },
        "topic": c.topic, "size": c.size, "producers": c.producers, "consumers": c.consumers, "sql": c.sql,
        "mode": if c.asynchronous { "async" } else { "sync" },
        "inFlightPerProducer": if c.asynchronous { c.in_flight } else { 1 },
        "delayMs": c.delay_ms, "rate": c.rate,
    });
    let producers = if c.asynchronous {
        format!("{} producer(s), async, {} in flight each", c.producers, c.in_flight)
    } else {
        format!("{} producer(s), sync", c.producers)
    };
    let consumers = format!("{} consumer(s)", c.consumers.max(1));
    let parts = match kind {
        Kind::Produce => producers,
        Kind::Consume => consumers,
        Kind::EndToEnd => format!("{producers}, {consumers}"),
    };
    let mut text = format!(
        "bench {}: topic {}, {}-byte messages, {parts}\n",
        json["kind"].as_str().unwrap_or_default(),
        c.topic,
        c.size,
    );
    if kind != Kind::Consume {
        let v = side_json(&shared.sent, produced_in.as_secs_f64());
        text.push_str(&side_text("sent", "send", &v));
        if let Some(e) = crate::lock(&shared.last_error).as_ref() {
            text.push_str(&format!("  last send error: {e}\n"));
        }
        json["produce"] = v;
    }
    if kind != Kind::Produce {
        // A reader is timed from its first message to its last: not the group's start and
        // first rebalance, nor the wait after the last message.
        let secs = match kind {
            Kind::Consume => first_to_last(&shared.received).unwrap_or(consumed_in),
            _ => consumed_in,
        };
        let v = side_json(&shared.received, secs.as_secs_f64());
        let what = if c.delay_ms > 0 { "lateness (receipt - due)" } else { "end-to-end" };
        text.push_str(&side_text("received", what, &v));
        json["consume"] = v;
    }
    if kind == Kind::EndToEnd && interrupted {
        text.push_str(
            "acknowledged but not received: not checked (interrupted before the drain)\n",
        );
        json["notReceived"] = Value::Null;
    } else if kind == Kind::EndToEnd {
        let lost = missing(shared).len();
        let dup = shared.duplicates.load(Ordering::Relaxed);
        text.push_str(&format!("acknowledged but not received: {lost}; received twice: {dup}\n"));
        json["notReceived"] = json!(lost);
        json["duplicates"] = json!(dup);
    }
    // Per message moved: sent (produce, e2e: each is also received once) or received.
    let messages = match kind {
        Kind::Consume => shared.received.ok.load(Ordering::Relaxed),
        _ => shared.sent.ok.load(Ordering::Relaxed),
    };
    let per_message = |us: u64| if messages > 0 { us as f64 / messages as f64 } else { 0.0 };
    let (own, server) = (per_message(cpu.own_us), per_message(cpu.server_us));
    let mut cpu_json = json!({ "benchUsPerMsg": own, "serverProcesses": cpu.servers });
    if cpu.servers > 0 {
        cpu_json["serverUsPerMsg"] = json!(server);
        text.push_str(&format!(
            "CPU per message: servers {server:.1} us ({} local process(es)), this bench {own:.1} us\n",
            cpu.servers
        ));
    } else {
        cpu_json["serverUsPerMsg"] = Value::Null;
        text.push_str(&format!(
            "CPU per message: this bench {own:.1} us (servers not on this machine: not measured)\n"
        ));
    }
    json["cpu"] = cpu_json;
    (text, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_a_readable_header() {
        let b = make_body(1024, 7, 42, 1_000_000);
        assert_eq!(b.len(), 1024);
        assert_eq!(read_header(&b), Some((1_000_000, 7, 42)));
        assert_eq!(make_body(10, 7, 42, 1).len(), 10);
        assert_eq!(read_header(&make_body(10, 7, 42, 1)), None, "too short to hold the header");
        assert_eq!(read_header(b"RRB2-----------------------------"), None);
    }

    #[test]
    fn sequence_sets_find_what_is_missing() {
        let mut s = Seqs::default();
        assert!(s.insert(3) && s.insert(64) && s.insert(1000));
        assert!(!s.insert(64), "a second insert is a duplicate");
        assert!(s.contains(1000) && !s.contains(999));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![3, 64, 1000]);
    }
}
