//! Clients of a simulated run, built on the real SDK: producers and push consumers that
//! record what they do into the run's [`History`]. Run them on a client
//! node (the main simulation task cannot open connections).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocketraft_client::{
    Admin, ClientConfig, ClientError, ConsumeFrom, ConsumeResult, Message, MessageExt, Producer,
    ProducerConfig, PullConsumer, PullConsumerConfig, PushConsumer, PushConsumerConfig,
    QueueChange, QueueListener, TransactionListener, TransactionProducer, TransactionState,
};

use crate::check::{Event, History, SendOutcome};
use madsim::rand::Rng;

pub type Shared = Arc<Mutex<History>>;

/// Gives a client an explicit instance name: the default counts instances per process, which
/// would differ between two runs of one seed in one process (and so would the client ids
/// that rebalancing sorts).
fn named(mut c: ClientConfig, name: &str) -> ClientConfig {
    c.instance_name = Some(name.to_owned());
    c
}

/// Creates `topic` with `queues` queues on every group's master, waiting (up to `timeout`)
/// until it is created on `groups` groups and routed.
pub async fn create_topic(ns: &str, topic: &str, queues: i32, groups: usize, timeout: Duration) {
    let admin =
        Admin::start(named(ClientConfig::new(ns), "admin-create")).await.expect("admin starts");
    let step = Duration::from_millis(200);
    let mut waited = Duration::ZERO;
    loop {
        if let Ok(done) = admin.create_topic(None, topic, queues, false).await {
            if done.len() == groups {
                if let Ok(route) = admin.route(topic).await {
                    if route.queue_datas.len() == groups {
                        break;
                    }
                }
            }
        }
        assert!(waited < timeout, "topic {topic} not created on {groups} groups in {timeout:?}");
        madsim::time::sleep(step).await;
        waited += step;
    }
    admin.shutdown().await;
}

/// How a failed send is recorded: no attempt made -> failed (never stored); otherwise
/// indeterminate, since an earlier attempt may have timed out after storing it.
fn outcome_of(e: &ClientError) -> SendOutcome {
    match e {
        ClientError::SendFailed { .. } | ClientError::Timeout { .. } => SendOutcome::Indeterminate,
        _ => SendOutcome::Failed,
    }
}

/// The outcome of a send, as the history records it.
fn sent_outcome(
    id: &str,
    sent: &Result<rocketraft_client::SendResult, ClientError>,
    t0: madsim::time::Instant,
) -> SendOutcome {
    match sent {
        Ok(r) => SendOutcome::Acked {
            queue: (r.queue.broker_name.clone(), r.queue.queue_id),
            offset: r.queue_offset,
            at_ms: t0.elapsed().as_millis() as i64,
        },
        Err(e) => {
            tracing::info!(%id, error = %e, "send failed");
            outcome_of(e)
        }
    }
}

/// Records how the send of `id` ended, in the history and the producer's report.
fn record_sent(
    history: &Shared,
    report: &mut ProduceReport,
    id: String,
    sent: Result<rocketraft_client::SendResult, ClientError>,
    t0: madsim::time::Instant,
) {
    let outcome = sent_outcome(&id, &sent, t0);
    match &sent {
        Ok(r) => report.acks.push((t0.elapsed(), r.queue.broker_name.clone())),
        Err(_) => report.failures += 1,
    }
    history.lock().unwrap().push(Event::Sent { id, outcome });
}

/// What a producer run did, for the scenario's own assertions.
#[derive(Debug, Default, Clone)]
pub struct ProduceReport {
    /// (simulated time since the run's start, broker group) of each acknowledgement.
    pub acks: Vec<(Duration, String)>,
    pub failures: usize,
    /// Acknowledged sends with a body larger than their id, and the largest such body.
    pub padded_acked: usize,
    pub largest_acked_bytes: usize,
}

/// Sends `count` messages `m-{first + i}` to `topic`, one every `pace`, with a sharding key
/// `k{i % keys}` when `keys` is given; records every send and its outcome.
#[allow(clippy::too_many_arguments)]
pub async fn produce(
    ns: String,
    topic: String,
    first: u32,
    count: u32,
    keys: Option<u32>,
    pace: Duration,
    history: Shared,
    t0: madsim::time::Instant,
) -> ProduceReport {
    let mut config = ProducerConfig::new(&ns);
    config.send_timeout_ms = 5_000;
    // Bodies go as they are: compressed (over 4 KiB by default) the large ones would reach the
    // log as a few KiB, and never fill segments, cut AppendEntries or wake retention.
    config.compress_over_bytes = usize::MAX;
    config.client = named(config.client, &format!("producer-{first}"));
    let producer = Producer::start(config).await.expect("producer starts");
    let mut report = ProduceReport::default();
    for i in first..first + count {
        let id = format!("m-{i}");
        let key = keys.map(|k| format!("k{}", i % k));
        history.lock().unwrap().push(Event::Send { id: id.clone(), key: key.clone() });
        let body = plain_body(&id);
        let padded = body.len() > id.len();
        let body_len = body.len();
        let msg = Message::new(topic.clone(), body);
        let sent = match &key {
            Some(k) => producer.send_ordered(msg, k).await,
            None => producer.send(msg).await,
        };
        if padded && sent.is_ok() {
            report.padded_acked += 1;
            report.largest_acked_bytes = report.largest_acked_bytes.max(body_len);
        }
        record_sent(&history, &mut report, id, sent, t0);
        madsim::time::sleep(pace).await;
    }
    producer.shutdown().await;
    report
}

/// Plain messages larger than their id: one send in this many.
const PADDED_ONE_IN: u32 = 10;
/// The largest body a padded message gets (the broker's default limit is 4 MiB).
const PADDED_MAX_BYTES: usize = 1 << 20;

/// The body of plain message `id`: mostly the id alone; one send in [`PADDED_ONE_IN`] the id,
/// `#`, the filler's length, `#` and 1 B to 1 MiB of filler (sizes spread evenly over the
/// powers of two, drawn from the seed), which [`id_of`] checks. Large bodies take the paths
/// 5-byte ones never reach: entries of many MiB, AppendEntries cut at a byte budget, segments
/// filling and rolling.
pub fn plain_body(id: &str) -> Vec<u8> {
    let mut rng = madsim::rand::thread_rng();
    if rng.gen_range(0..PADDED_ONE_IN) != 0 {
        return id.as_bytes().to_vec();
    }
    let bits = rng.gen_range(0..=PADDED_MAX_BYTES.trailing_zeros());
    let len = rng.gen_range((1usize << bits) / 2 + 1..=1usize << bits);
    let mut body = format!("{id}#{len}#").into_bytes();
    body.extend(filler(id, len));
    body
}

/// `id`'s filler, `len` bytes: a pattern of the id and the place, so that a byte moved, lost or
/// taken from another message shows.
fn filler(id: &str, len: usize) -> impl Iterator<Item = u8> {
    let seed = id.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let mixed = seed.wrapping_mul(0x9E37_79B9);
    (0..len).map(move |j| ((j as u32 ^ mixed).wrapping_mul(2_654_435_761) >> 24) as u8)
}

/// The message id a delivered body carries; `damaged:<id>` when its filler is not what
/// [`plain_body`] sent (the checkers then find a delivery that was never sent).
pub fn id_of(body: &[u8]) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut parts = body.splitn(3, |&b| b == b'#');
    let (Some(id), Some(len), Some(padding)) = (parts.next(), parts.next(), parts.next()) else {
        return text(body);
    };
    let id = text(id);
    let intact = text(len).parse::<usize>() == Ok(padding.len())
        && padding.iter().copied().eq(filler(&id, padding.len()));
    if intact {
        id
    } else {
        format!("damaged:{id}")
    }
}

/// Starts a push consumer of `group` on `topic` that records every delivery as `name`.
pub async fn consume(
    ns: &str,
    group: &str,
    topic: &str,
    name: &str,
    orderly: bool,
    history: Shared,
) -> PushConsumer {
    let mut config = PushConsumerConfig::new(ns, group).subscribe(topic, "*");
    config.consume_from = ConsumeFrom::FirstOffset;
    config.client = named(config.client, name);
    config.queue_listener = Some(queue_changes(name, group, topic, orderly, history.clone()));
    let (name, group_name) = (name.to_owned(), group.to_owned());
    let listener = move |msgs: Vec<MessageExt>| {
        let mut h = history.lock().unwrap();
        for m in msgs {
            h.push(Event::Delivered {
                consumer: name.clone(),
                group: group_name.clone(),
                id: id_of(&m.body),
                queue: (m.queue.broker_name.clone(), m.queue.queue_id),
                offset: m.queue_offset,
            });
        }
        std::future::ready(ConsumeResult::Success)
    };
    let started = if orderly {
        PushConsumer::start_orderly(config, listener).await
    } else {
        PushConsumer::start_concurrently(config, listener).await
    };
    started.expect("consumer starts")
}

/// Records consumer `name`'s takes and releases of `topic`'s queues (not of its group's retry
/// topic, whose queue ids are the same numbers) for the B.5 #18 check.
fn queue_changes(
    name: &str,
    group: &str,
    topic: &str,
    orderly: bool,
    history: Shared,
) -> QueueListener {
    let (name, group, topic) = (name.to_owned(), group.to_owned(), topic.to_owned());
    QueueListener(Arc::new(move |change: &QueueChange| {
        let event = match change {
            QueueChange::Taken { queue, offset } if queue.topic == topic => Event::Taken {
                consumer: name.clone(),
                group: group.clone(),
                queue: (queue.broker_name.clone(), queue.queue_id),
                offset: *offset,
                orderly,
            },
            QueueChange::Released { queue } if queue.topic == topic => Event::Released {
                consumer: name.clone(),
                queue: (queue.broker_name.clone(), queue.queue_id),
            },
            _ => return,
        };
        history.lock().unwrap().push(event);
    }))
}

/// Reads every queue of `topic` from its start with a pull consumer that asks for `asked`
/// messages a pull, until no pull finds more for a second (or 2,000 pulls), and records each
/// pull that found messages (B.5 #26: the broker bounds what it returns, whatever is asked).
pub async fn read_in_big_pulls(ns: &str, topic: &str, asked: i32, history: Shared) {
    let mut config = PullConsumerConfig::new(ns, "bounds-reader");
    config.consume_from = ConsumeFrom::FirstOffset;
    config.poll_batch_max = asked;
    config.client = named(config.client, "bounds-reader");
    let consumer = PullConsumer::start(config).await.expect("pull consumer starts");
    let queues = consumer.topic_queues(topic).await.expect("the topic is routed");
    consumer.assign(queues);
    let mut empty = 0;
    for _ in 0..2_000 {
        match consumer.poll(500).await {
            Ok(found) if !found.is_empty() => {
                empty = 0;
                let queue = (found[0].queue.broker_name.clone(), found[0].queue.queue_id);
                let bytes = found.iter().map(|m| m.body.len()).sum();
                let pulled = Event::Pulled { queue, asked, messages: found.len(), bytes };
                history.lock().unwrap().push(pulled);
            }
            _ => {
                empty += 1;
                if empty == 2 {
                    break;
                }
            }
        }
    }
    consumer.shutdown().await;
}

/// The delay the delayed workload gives message `i`, in ms, and the message: even ones a
/// delay level (1 to 3; the simulated brokers' levels are 1 s, 2 s and 3 s), odd ones a 5.x
/// timer of 0.3 to 3 s.
pub fn delayed_message(topic: &str, i: u32) -> (Message, i64) {
    let id = format!("{}{i}", crate::check::DELAYED_PREFIX);
    let msg = Message::new(topic.to_owned(), id);
    if i.is_multiple_of(2) {
        let level = (i / 2) % 3 + 1;
        (msg.with_delay_level(level), i64::from(level) * 1_000)
    } else {
        let ms = 300 + u64::from(i.wrapping_mul(137) % 2_700);
        (msg.with_delay(Duration::from_millis(ms)), ms as i64)
    }
}

/// Sends `count` delayed messages (see [`delayed_message`]) to `topic`, one every `pace`,
/// recording each send, its outcome and the earliest time it may be delivered.
pub async fn produce_delayed(
    ns: String,
    topic: String,
    count: u32,
    pace: Duration,
    history: Shared,
    t0: madsim::time::Instant,
) -> ProduceReport {
    let mut config = ProducerConfig::new(&ns);
    config.send_timeout_ms = 5_000;
    config.client = named(config.client, "producer-delayed");
    let producer = Producer::start(config).await.expect("producer starts");
    let mut report = ProduceReport::default();
    for i in 0..count {
        let (msg, delay_ms) = delayed_message(&topic, i);
        let id = id_of(&msg.body);
        let not_before_ms = t0.elapsed().as_millis() as i64 + delay_ms;
        {
            let mut h = history.lock().unwrap();
            h.push(Event::Send { id: id.clone(), key: None });
            h.push(Event::Due { id: id.clone(), not_before_ms });
        }
        let sent = producer.send(msg).await;
        record_sent(&history, &mut report, id, sent, t0);
        madsim::time::sleep(pace).await;
    }
    producer.shutdown().await;
    report
}

/// Starts a push consumer of `group` on the delayed workload's `topic`, recording each
/// delivery with the time and the parked record it was moved from. With `fail_first`, it
/// refuses every message the first time it sees it (reconsume count 0), so each comes back
/// through the group's retry topic, and records only the second delivery.
pub async fn consume_delayed(
    ns: &str,
    group: &str,
    topic: &str,
    name: &str,
    fail_first: bool,
    history: Shared,
    t0: madsim::time::Instant,
) -> PushConsumer {
    let mut config = PushConsumerConfig::new(ns, group).subscribe(topic, "*");
    config.consume_from = ConsumeFrom::FirstOffset;
    config.client = named(config.client, name);
    let (name, group_name) = (name.to_owned(), group.to_owned());
    let listener = move |msgs: Vec<MessageExt>| {
        let at_ms = t0.elapsed().as_millis() as i64;
        if fail_first && msgs.iter().any(|m| m.reconsume_times == 0) {
            let mut h = history.lock().unwrap();
            for m in &msgs {
                let (group, id) = (group_name.clone(), id_of(&m.body));
                h.push(Event::SentBack { group, id, at_ms });
            }
            return std::future::ready(ConsumeResult::Later);
        }
        let mut h = history.lock().unwrap();
        for m in msgs {
            let id = id_of(&m.body);
            let queue = (m.queue.broker_name.clone(), m.queue.queue_id);
            h.push(Event::Delivered {
                consumer: name.clone(),
                group: group_name.clone(),
                id: id.clone(),
                queue: queue.clone(),
                offset: m.queue_offset,
            });
            if let Some(origin) = m.property(rocketraft_protocol::message::property::MOVED_FROM) {
                let origin = format!("{}/{origin}", m.queue.broker_name);
                let group = group_name.clone();
                h.push(Event::Moved { group, id, origin, queue, offset: m.queue_offset, at_ms });
            }
        }
        std::future::ready(ConsumeResult::Success)
    };
    PushConsumer::start_concurrently(config, listener).await.expect("consumer starts")
}

/// Sends `probe-{n}` to queue 0 of `broker` every `every` until `stop`, each send with a
/// 5 s timeout, recording them (one sharding key, so their order is checked too). Returns
/// (started, acknowledged) times of each acknowledged send: the group's availability.
pub async fn probe(
    ns: String,
    topic: String,
    broker: String,
    every: Duration,
    history: Shared,
    stop: Arc<std::sync::atomic::AtomicBool>,
    t0: madsim::time::Instant,
) -> Vec<(Duration, Duration)> {
    let mut config = ProducerConfig::new(&ns);
    config.send_timeout_ms = 5_000;
    config.client = named(config.client, &format!("probe-{broker}"));
    let producer = Producer::start(config).await.expect("probe producer starts");
    let target = broker.clone();
    let selector: rocketraft_client::producer::QueueSelector = Arc::new(move |queues, _| {
        queues.iter().find(|q| q.broker_name == target && q.queue_id == 0).cloned()
    });
    let mut acks = Vec::new();
    let mut n = 0u32;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let id = format!("probe-{n}");
        n += 1;
        history.lock().unwrap().push(Event::Send { id: id.clone(), key: Some(broker.clone()) });
        let started = t0.elapsed();
        let outcome = match producer
            .send_with_selector(Message::new(topic.clone(), id.clone()), selector.clone())
            .await
        {
            Ok(r) => {
                acks.push((started, t0.elapsed()));
                SendOutcome::Acked {
                    queue: (r.queue.broker_name, r.queue.queue_id),
                    offset: r.queue_offset,
                    at_ms: t0.elapsed().as_millis() as i64,
                }
            }
            Err(e) => outcome_of(&e),
        };
        history.lock().unwrap().push(Event::Sent { id, outcome });
        madsim::time::sleep(every).await;
    }
    producer.shutdown().await;
    acks
}

/// The transactional workload's producer group.
pub const TX_PRODUCER_GROUP: &str = "XP";

/// What the transactional workload does with transaction `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxPlan {
    /// What its local transaction answers, after `local_ms`.
    pub local: TransactionState,
    pub local_ms: u64,
    /// What the application's state says when a check-back asks: its intent.
    pub commit: bool,
}

/// Transaction `i`'s plan: of every 6, two commit at once, one rolls back, two answer
/// Unknown (a check-back then commits one and rolls back the other), and one commits after
/// 2.5 s, longer than the brokers' check timeout, so a check-back answer races its commit.
pub fn tx_plan(i: u32) -> TxPlan {
    use TransactionState::{Commit, Rollback, Unknown};
    let (local, local_ms, commit) = match i % 6 {
        0 | 5 => (Commit, 0, true),
        1 => (Rollback, 0, false),
        2 => (Unknown, 0, true),
        3 => (Unknown, 0, false),
        _ => (Commit, 2_500, true),
    };
    TxPlan { local, local_ms, commit }
}

/// The plan of the transaction whose body is `x-<i>`, if it is one.
fn plan_of(body: &[u8]) -> Option<TxPlan> {
    let id = std::str::from_utf8(body).ok()?;
    Some(tx_plan(id.strip_prefix(crate::check::TX_PREFIX)?.parse().ok()?))
}

/// The workload's local transactions and its answers to check-backs, both from the plan: the
/// same for every producer of the group (as an application's database would be).
pub struct Ledger;

impl TransactionListener for Ledger {
    async fn execute_local(
        &self,
        msg: &Message,
        _sent: &rocketraft_client::SendResult,
    ) -> TransactionState {
        let Some(plan) = plan_of(&msg.body) else { return TransactionState::Unknown };
        madsim::time::sleep(Duration::from_millis(plan.local_ms)).await;
        plan.local
    }

    async fn check(&self, msg: MessageExt) -> TransactionState {
        match plan_of(&msg.body) {
            Some(p) if p.commit => TransactionState::Commit,
            Some(_) => TransactionState::Rollback,
            None => TransactionState::Unknown,
        }
    }
}

/// A producer of [`TX_PRODUCER_GROUP`] named `name` sends transactions `x-{first + i}` to
/// `topic`, one every `pace` (each in its own task: a slow local transaction does not hold up
/// the next), recording each one's intent and how its half message's send ended; it answers
/// check-backs (for any transaction of the group) as long as it runs. Returns it when every
/// transaction it started has ended.
#[allow(clippy::too_many_arguments)]
pub async fn produce_transactions(
    ns: String,
    topic: String,
    name: String,
    first: u32,
    count: u32,
    pace: Duration,
    history: Shared,
    t0: madsim::time::Instant,
) -> TransactionProducer<Ledger> {
    let mut config = ProducerConfig::new(&ns);
    config.group = TX_PRODUCER_GROUP.to_owned();
    config.send_timeout_ms = 5_000;
    config.client = named(config.client, &name);
    let producer = TransactionProducer::start(config, Ledger).await.expect("producer starts");
    let mut running = Vec::new();
    for i in first..first + count {
        let id = format!("{}{i}", crate::check::TX_PREFIX);
        {
            let mut h = history.lock().unwrap();
            h.push(Event::Send { id: id.clone(), key: None });
            h.push(Event::TxIntent { id: id.clone(), commit: tx_plan(i).commit });
        }
        let (producer, history, topic) = (producer.clone(), history.clone(), topic.clone());
        running.push(tokio::spawn(async move {
            let sent = producer.send(Message::new(topic, id.clone())).await.map(|r| r.sent);
            let outcome = sent_outcome(&id, &sent, t0);
            history.lock().unwrap().push(Event::Sent { id, outcome });
        }));
        madsim::time::sleep(pace).await;
    }
    for task in running {
        let _ = task.await;
    }
    producer
}

/// The half messages of `topic` still unresolved: (broker, transaction id, half offset), as
/// the masters answer; asks every 500 ms until none is left or `timeout` passed (then the
/// last answer).
pub async fn unresolved_halves(
    ns: &str,
    topic: &str,
    timeout: Duration,
) -> Vec<(String, String, i64)> {
    let admin =
        Admin::start(named(ClientConfig::new(ns), "admin-halves")).await.expect("admin starts");
    let step = Duration::from_millis(500);
    let mut waited = Duration::ZERO;
    let mut last = Vec::new();
    loop {
        match admin.unresolved_halves(None, Some(topic), None, 1_000).await {
            Ok((halves, _)) => {
                last = halves
                    .into_iter()
                    .map(|(broker, h)| (broker, h.msg_id, h.half_offset))
                    .collect();
                if last.is_empty() {
                    break;
                }
            }
            Err(e) => tracing::info!(error = %e, "unresolved halves not listed"),
        }
        if waited >= timeout {
            break;
        }
        madsim::time::sleep(step).await;
        waited += step;
    }
    admin.shutdown().await;
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_or_cut_body_is_told_apart() {
        let id = "m-7";
        let mut body = format!("{id}#300#").into_bytes();
        body.extend(filler(id, 300));
        assert_eq!(id_of(&body), "m-7");
        assert_eq!(id_of(b"m-8"), "m-8");
        let mut flipped = body.clone();
        let at = flipped.len() - 100;
        flipped[at] ^= 1;
        assert_eq!(id_of(&flipped), "damaged:m-7");
        assert_eq!(id_of(&body[..body.len() - 1]), "damaged:m-7");
        let mut other = b"m-9#300#".to_vec();
        other.extend(filler(id, 300));
        assert_eq!(id_of(&other), "damaged:m-9", "another message's filler");
    }
}
