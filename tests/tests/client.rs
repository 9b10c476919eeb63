//! The client SDK against a real in-process cluster: a NameServer and one 3-replica broker
//! group on loopback TCP, each replica on real files (mmap segments, sled), started by the same
//! code as `rocketraft dev`.
//!
//! ```text
//!   producers ──send──▶ leader ──raft──▶ followers
//!        │                 ▲                 │
//!        └── routes ── NameServer ◀─register─┘
//!   consumers ──pull (any replica)──▶ commit offsets (leader, through Raft)
//! ```

// Real processes, files and sockets: not for the madsim build.
#![cfg(not(madsim))]
#![allow(clippy::disallowed_methods)] // tests read the clock to bound their waits

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocketraft::dev::DevCluster;
use rocketraft_client::{
    Admin, Allocation, ClientConfig, ClientError, ConsumeFrom, ConsumeResult, Message, MessageExt,
    MessageModel, MessageQueue, Producer, ProducerConfig, PullConsumer, PullConsumerConfig,
    PushConsumer, PushConsumerConfig, SendResult, TransactionListener, TransactionProducer,
    TransactionState,
};

#[path = "support/dev.rs"]
mod dev;

/// A cluster on free ports in a temporary directory, with quick elections.
async fn start_cluster(dir: &tempfile::TempDir) -> DevCluster {
    dev::start_cluster(dir, 8 << 20, Duration::from_secs(10)).await
}

fn namesrv(cluster: &DevCluster) -> String {
    cluster.namesrv_addr().to_string()
}

/// Creates `topic` with `queues` queues and waits until the NameServer routes it.
async fn create_topic(cluster: &DevCluster, topic: &str, queues: i32) {
    dev::create_topic(ClientConfig::new(&namesrv(cluster)), topic, queues).await
}

fn producer_config(cluster: &DevCluster) -> ProducerConfig {
    let mut c = ProducerConfig::new(&namesrv(cluster));
    c.client.route_poll_ms = 1_000;
    c
}

/// Quick periods so the tests do not wait for RocketMQ's defaults (10 s rebalance, 5 s
/// commits).
fn consumer_config(cluster: &DevCluster, group: &str, topic: &str) -> PushConsumerConfig {
    let mut c = PushConsumerConfig::new(&namesrv(cluster), group).subscribe(topic, "*");
    c.consume_from = ConsumeFrom::FirstOffset;
    c.rebalance_ms = 1_000;
    c.rebalance_retry_ms = 200;
    c.commit_ms = 500;
    c.pull_suspend_ms = 2_000;
    c.retry_delays_ms = vec![100];
    // Renewals during the tests (each member holds two topics' locks: its own and the group's
    // retry topic).
    c.lock_renew_ms = 1_000;
    c.client.route_poll_ms = 1_000;
    c.client.heartbeat_ms = 1_000;
    c
}

/// What every consumer of a test received: (consumer, body) in arrival order.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(usize, MessageExt)>>>);

impl Received {
    fn listener(
        &self,
        who: usize,
    ) -> impl Fn(Vec<MessageExt>) -> std::future::Ready<ConsumeResult> + Send + Sync + 'static {
        let me = self.clone();
        move |msgs| {
            let mut all = me.0.lock().unwrap();
            all.extend(msgs.into_iter().map(|m| (who, m)));
            std::future::ready(ConsumeResult::Success)
        }
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// body -> times received
    fn counts(&self) -> BTreeMap<String, usize> {
        let mut c = BTreeMap::new();
        for (_, m) in self.0.lock().unwrap().iter() {
            *c.entry(String::from_utf8_lossy(&m.body).into_owned()).or_default() += 1;
        }
        c
    }

    fn by_consumer(&self, who: usize) -> usize {
        self.0.lock().unwrap().iter().filter(|(w, _)| *w == who).count()
    }

    async fn wait_for(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} messages consumed in {timeout:?}",
                self.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits until the consumers' queues are disjoint and cover `queues` queues (of the topics
/// they subscribed; each also holds or not its group's retry queue).
async fn wait_balanced(consumers: &[&PushConsumer], queues: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sets: Vec<BTreeSet<_>> = consumers
            .iter()
            .map(|c| {
                let all = c.assigned_queues().into_iter();
                all.filter(|q| !q.topic.starts_with("%RETRY%")).collect()
            })
            .collect();
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<_> = sets.iter().flatten().collect();
        let fair = sets.iter().all(|s| s.len() >= queues / consumers.len());
        if total == queues && union.len() == queues && fair {
            return;
        }
        assert!(Instant::now() < deadline, "never balanced: {sets:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 10,000 messages, a third each sent sync, async and oneway, consumed by a clustering group of
/// three; halfway through, one member leaves and the other two take its queues over. Every
/// message is consumed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clustering_group_consumes_every_message_exactly_once_across_a_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(&dir).await;
    create_topic(&cluster, "Orders", 8).await;

    tracing::info!("phase 1: three consumers share the 8 queues");
    let got = Received::default();
    let mut consumers = Vec::new();
    for who in 0..3 {
        let c = PushConsumer::start_concurrently(
            consumer_config(&cluster, "G", "Orders"),
            got.listener(who),
        )
        .await
        .unwrap();
        consumers.push(c);
    }
    wait_balanced(&consumers.iter().collect::<Vec<_>>(), 8).await;

    tracing::info!("phase 2: send 10,000 (sync, async, oneway)");
    let producer = Producer::start(producer_config(&cluster)).await.unwrap();
    let total = 10_000;
    let sender = {
        let producer = producer.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            let mut handles = Vec::new();
            for i in 0..total {
                let msg = Message::new("Orders", format!("m-{i}")).with_tags("TagA");
                match i % 3 {
                    0 => {
                        producer.send(msg).await.expect("sync send");
                    }
                    1 => handles.push(producer.send_async(msg).await.expect("async send")),
                    _ => producer.send_oneway(msg).await.expect("oneway send"),
                }
            }
            for h in handles {
                h.await.expect("async send acknowledged");
            }
            tracing::info!(elapsed = ?t0.elapsed(), "all {total} sent");
        })
    };

    tracing::info!("phase 3: once half is consumed, consumer 1 leaves");
    got.wait_for(total / 2, Duration::from_secs(60)).await;
    let leaving = consumers.remove(1);
    leaving.shutdown().await;
    let after_leave = got.by_consumer(1);
    wait_balanced(&consumers.iter().collect::<Vec<_>>(), 8).await;

    sender.await.unwrap();
    got.wait_for(total, Duration::from_secs(60)).await;
    // Give any duplicate time to show up before judging.
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let counts = got.counts();
    let missing: Vec<_> =
        (0..total).map(|i| format!("m-{i}")).filter(|b| !counts.contains_key(b)).collect();
    let duplicated: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        missing.is_empty(),
        "{} never consumed, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        duplicated.is_empty(),
        "{} consumed twice, e.g. {:?}",
        duplicated.len(),
        &duplicated[..duplicated.len().min(5)]
    );
    assert_eq!(got.len(), total);
    assert_eq!(got.by_consumer(1), after_leave, "nothing reaches a member after it left");
    assert!(after_leave > 0 && got.by_consumer(0) > 0 && got.by_consumer(2) > 0);
    tracing::info!(
        c0 = got.by_consumer(0),
        c1 = after_leave,
        c2 = got.by_consumer(2),
        "every message consumed once"
    );

    for c in consumers {
        c.shutdown().await;
    }
    producer.shutdown().await;
    cluster.shutdown().await;
}

/// Two broadcasting members each receive every message, keeping offsets in their own files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasting_members_each_receive_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(&dir).await;
    create_topic(&cluster, "News", 4).await;
    let got = [Received::default(), Received::default()];
    let mut consumers = Vec::new();
    for (who, r) in got.iter().enumerate() {
        let mut c = consumer_config(&cluster, "B", "News");
        c.model = MessageModel::Broadcasting;
        c.offset_dir = Some(dir.path().join(format!("offsets-{who}")));
        consumers.push(PushConsumer::start_concurrently(c, r.listener(who)).await.unwrap());
    }
    for c in &consumers {
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.assigned_queues().len() < 4 {
            assert!(Instant::now() < deadline, "a broadcasting member reads every queue");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let producer = Producer::start(producer_config(&cluster)).await.unwrap();
    for i in 0..400 {
        producer.send(Message::new("News", format!("n-{i}"))).await.unwrap();
    }
    for r in &got {
        r.wait_for(400, Duration::from_secs(30)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for r in &got {
        let counts = r.counts();
        assert_eq!(counts.len(), 400, "each member has every message");
        assert!(counts.values().all(|&n| n == 1), "and each once");
    }
    for c in consumers {
        c.shutdown().await;
    }
    for who in 0..2 {
        let file = dir
            .path()
            .join(format!("offsets-{who}"))
            .join(rocketraft_client::consumer::OFFSET_FILE_NAME);
        let text = std::fs::read_to_string(&file).expect("broadcasting offsets are in a file");
        assert!(text.contains("News"), "{text}");
    }
    producer.shutdown().await;
    cluster.shutdown().await;
}

/// An orderly group of two sees each sharding key's messages in send order, even when the
/// listener asks for some to be retried later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orderly_consumer_sees_each_keys_messages_in_send_order() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(&dir).await;
    create_topic(&cluster, "Ledger", 4).await;
    let seen: Arc<Mutex<Vec<(String, u32)>>> = Arc::default();
    let refused: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let mut consumers = Vec::new();
    for _ in 0..2 {
        let (seen, refused) = (seen.clone(), refused.clone());
        let mut c = consumer_config(&cluster, "O", "Ledger");
        c.orderly_retry_ms = 50;
        let listener = move |msgs: Vec<MessageExt>| {
            let mut out = Vec::new();
            let mut later = false;
            for m in &msgs {
                let body = String::from_utf8_lossy(&m.body).into_owned();
                // Every 13th message is refused once: it must come back before its successors.
                let (key, seq) = body.split_once('#').unwrap();
                let seq: u32 = seq.parse().unwrap();
                if seq % 13 == 5 && refused.lock().unwrap().insert(body.clone()) {
                    later = true;
                    break;
                }
                out.push((key.to_owned(), seq));
            }
            if !later {
                seen.lock().unwrap().extend(out);
            }
            std::future::ready(if later { ConsumeResult::Later } else { ConsumeResult::Success })
        };
        consumers.push(PushConsumer::start_orderly(c, listener).await.unwrap());
    }
    wait_balanced(&consumers.iter().collect::<Vec<_>>(), 4).await;
    let producer = Producer::start(producer_config(&cluster)).await.unwrap();
    let keys = 16;
    let per_key = 40u32;
    for seq in 0..per_key {
        for k in 0..keys {
            let key = format!("order-{k}");
            producer
                .send_ordered(Message::new("Ledger", format!("{key}#{seq}")), &key)
                .await
                .unwrap();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().len() < (keys * per_key as usize) {
        assert!(Instant::now() < deadline, "only {} consumed", seen.lock().unwrap().len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut per: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (k, s) in seen.lock().unwrap().iter() {
        per.entry(k.clone()).or_default().push(*s);
    }
    assert_eq!(per.len(), keys);
    for (k, seqs) in per {
        assert_eq!(seqs, (0..per_key).collect::<Vec<_>>(), "key {k} out of order or incomplete");
    }
    assert!(!refused.lock().unwrap().is_empty(), "some messages were retried");
    for c in consumers {
        c.shutdown().await;
    }
    producer.shutdown().await;
    cluster.shutdown().await;
}

/// A replica stopped while it holds a consumer's long-polling pull can be started again at
/// once: the held pull ends with the stop instead of keeping the replica's files and metadata
/// store (whose lock a restart needs) until its suspend time runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_holding_a_pull_restarts_at_once_after_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start_cluster(&dir).await;
    create_topic(&cluster, "Quiet", 1).await;
    let mut config = consumer_config(&cluster, "Q", "Quiet");
    config.pull_suspend_ms = 30_000;
    let got = Received::default();
    let consumer = PushConsumer::start_concurrently(config, got.listener(0)).await.unwrap();
    // Nothing is ever sent: once the consumer has a queue, its pulls wait at the broker.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leader = cluster.leader().expect("a leader");
    cluster.stop_replica(leader).await;
    let started = Instant::now();
    cluster.restart_replica(leader).await.expect("the stopped replica starts again");
    assert!(started.elapsed() < Duration::from_secs(10), "restart took {:?}", started.elapsed());
    consumer.shutdown().await;
    cluster.shutdown().await;
}

/// The leader is stopped in the middle of a send loop. Sends fail over to the new leader; every
/// acknowledged message is consumed (duplicates are counted and reported, none is lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_survives_the_leader_dying_mid_send_loop() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start_cluster(&dir).await;
    create_topic(&cluster, "Pay", 4).await;
    let got = Received::default();
    let consumer =
        PushConsumer::start_concurrently(consumer_config(&cluster, "P", "Pay"), got.listener(0))
            .await
            .unwrap();
    let mut pc = producer_config(&cluster);
    pc.send_timeout_ms = 10_000;
    let producer = Producer::start(pc).await.unwrap();

    let total = 2_000;
    let mut acked = BTreeSet::new();
    let mut failed = 0;
    let mut killed = None;
    let mut failover = None;
    for i in 0..total {
        if i == total / 3 {
            let leader = cluster.leader().expect("a leader");
            tracing::info!(leader, "stopping the leader mid-loop");
            cluster.stop_replica(leader).await;
            killed = Some((leader, Instant::now()));
        }
        let body = format!("p-{i}");
        match producer.send(Message::new("Pay", body.clone())).await {
            Ok(_) => {
                if let (Some((_, at)), None) = (killed, failover) {
                    failover = Some(at.elapsed());
                }
                acked.insert(body);
            }
            Err(e) => {
                failed += 1;
                tracing::warn!(error = %e, "send failed");
            }
        }
    }
    let (old, _) = killed.unwrap();
    let new_leader = cluster.leader().expect("a new leader");
    assert_ne!(new_leader, old);
    tracing::info!(?failover, failed, acked = acked.len(), "send loop done");
    assert!(acked.len() >= total - 10, "only {} of {total} acknowledged", acked.len());

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = got.counts();
        let lost: Vec<_> = acked.iter().filter(|b| !counts.contains_key(*b)).collect();
        if lost.is_empty() {
            let dups = counts.values().filter(|&&n| n > 1).count();
            tracing::info!(
                duplicates = dups,
                consumed = counts.len(),
                "no acknowledged message lost"
            );
            eprintln!("failover: first acknowledged send {failover:?} after the stop; {failed} sends failed; {dups} duplicates");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged messages never consumed, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    tracing::info!("the stopped replica restarts and rejoins");
    cluster.restart_replica(old).await.unwrap();
    consumer.shutdown().await;
    producer.shutdown().await;
    cluster.shutdown().await;
}

/// A listener that panics does not kill the consumer: the message comes back, counted,
/// through the group's retry topic on the broker (CONSUMER_SEND_MSG_BACK), no sooner than its
/// delay level's time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_listener_gets_the_message_again() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(&dir).await;
    create_topic(&cluster, "Fragile", 2).await;
    let deliveries: Arc<Mutex<Vec<(String, i32)>>> = Arc::default();
    let via: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let (d, v) = (deliveries.clone(), via.clone());
    let listener = move |msgs: Vec<MessageExt>| {
        let first = msgs[0].reconsume_times == 0;
        d.lock().unwrap().extend(
            msgs.iter().map(|m| (String::from_utf8_lossy(&m.body).into_owned(), m.reconsume_times)),
        );
        v.lock().unwrap().extend(msgs.iter().map(|m| (m.queue.topic.clone(), Instant::now())));
        async move {
            if first {
                panic!("listener bug on first delivery");
            }
            ConsumeResult::Success
        }
    };
    let consumer =
        PushConsumer::start_concurrently(consumer_config(&cluster, "F", "Fragile"), listener)
            .await
            .unwrap();
    let producer = Producer::start(producer_config(&cluster)).await.unwrap();
    for i in 0..5 {
        producer.send(Message::new("Fragile", format!("f-{i}"))).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while deliveries.lock().unwrap().len() < 10 {
        assert!(Instant::now() < deadline, "deliveries: {:?}", deliveries.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = deliveries.lock().unwrap().clone();
    for i in 0..5 {
        let body = format!("f-{i}");
        let times: Vec<i32> = all.iter().filter(|(b, _)| *b == body).map(|(_, r)| *r).collect();
        assert_eq!(times, vec![0, 1], "{body}: delivered, panicked, delivered again");
    }
    let via = via.lock().unwrap().clone();
    let firsts: Vec<Instant> =
        via.iter().filter(|(t, _)| t == "Fragile").map(|(_, at)| *at).collect();
    let again: Vec<Instant> =
        via.iter().filter(|(t, _)| t == "%RETRY%F").map(|(_, at)| *at).collect();
    assert_eq!((firsts.len(), again.len()), (5, 5), "retries come from the retry topic");
    let first_failure = *firsts.iter().min().unwrap();
    assert!(
        *again.iter().min().unwrap() >= first_failure + Duration::from_millis(900),
        "a retry came before its delay level's second"
    );
    consumer.shutdown().await;
    producer.shutdown().await;
    cluster.shutdown().await;
}

/// A message its listener keeps refusing goes to the group's dead-letter topic after
/// `max_reconsume_times` retries; the others are consumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_refused_too_often_goes_to_the_dead_letter_topic() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(&dir).await;
    create_topic(&cluster, "Jobs", 1).await;
    let tries = Arc::new(Mutex::new(0));
    let t = tries.clone();
    let listener = move |msgs: Vec<MessageExt>| {
        let poison = msgs.iter().any(|m| &m.body[..] == b"poison");
        if poison {
            *t.lock().unwrap() += 1;
        }
        std::future::ready(if poison { ConsumeResult::Later } else { ConsumeResult::Success })
    };
    let mut config = consumer_config(&cluster, "J", "Jobs");
    config.max_reconsume_times = 2;
    let consumer = PushConsumer::start_concurrently(config, listener).await.unwrap();
    let producer = Producer::start(producer_config(&cluster)).await.unwrap();
    let sent = producer.send(Message::new("Jobs", "poison").with_keys(["bad-job"])).await.unwrap();
    producer.send(Message::new("Jobs", "fine")).await.unwrap();

    let admin = Admin::start(ClientConfig::new(&namesrv(&cluster))).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let dead = loop {
        if let Ok(found) = admin.query_by_key("%DLQ%J", "bad-job").await {
            if let Some(m) = found.into_iter().next() {
                break m;
            }
        }
        assert!(Instant::now() < deadline, "never dead-lettered ({} tries)", tries.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(*tries.lock().unwrap(), 3, "first delivery + 2 retries");
    // The broker moved it there: three send-backs, the last past the budget, each counting.
    assert_eq!(dead.reconsume_times, 3);
    assert_eq!(&dead.body[..], b"poison");
    assert_eq!(dead.topic, "Jobs", "the original topic is kept");
    assert_eq!(dead.msg_id(), Some(sent.msg_id.as_str()));
    admin.shutdown().await;
    consumer.shutdown().await;
    producer.shutdown().await;
    cluster.shutdown().await;
}

/// An orderly consumer retries a refused message in place, holding its queue, until it was
/// retried `orderly_max_reconsume_times` times; it then goes to the group's dead-letter topic
/// and the queue goes on with the next message, still in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orderly_consumer_dead_letters_a_message_after_its_maximum_and_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(&dir).await;
    create_topic(&cluster, "Steps", 1).await;
    let calls: Arc<Mutex<Vec<(String, i32)>>> = Arc::default();
    let c = calls.clone();
    let listener = move |msgs: Vec<MessageExt>| {
        let mut c = c.lock().unwrap();
        let mut result = ConsumeResult::Success;
        for m in &msgs {
            let body = String::from_utf8_lossy(&m.body).into_owned();
            c.push((body.clone(), m.reconsume_times));
            if body == "poison" {
                result = ConsumeResult::Later;
            }
        }
        std::future::ready(result)
    };
    let mut config = consumer_config(&cluster, "OD", "Steps");
    config.orderly_retry_ms = 50;
    config.orderly_max_reconsume_times = 2;
    let consumer = PushConsumer::start_orderly(config, listener).await.unwrap();
    let producer = Producer::start(producer_config(&cluster)).await.unwrap();
    for body in ["before", "poison", "after"] {
        let m = Message::new("Steps", body).with_keys([format!("{body}-key")]);
        producer.send_ordered(m, "k").await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !calls.lock().unwrap().iter().any(|(b, _)| b == "after") {
        assert!(Instant::now() < deadline, "calls: {:?}", calls.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let calls = calls.lock().unwrap().clone();
    let order: Vec<(&str, i32)> = calls.iter().map(|(b, t)| (b.as_str(), *t)).collect();
    assert_eq!(
        order,
        vec![("before", 0), ("poison", 0), ("poison", 1), ("poison", 2), ("after", 0)],
        "retried in place up to the maximum, then the queue moved on"
    );
    let admin = Admin::start(ClientConfig::new(&namesrv(&cluster))).await.unwrap();
    // The dead-letter topic was created by that send: its route may take a registration.
    let deadline = Instant::now() + Duration::from_secs(30);
    let dead = loop {
        match admin.query_by_key("%DLQ%OD", "poison-key").await {
            Ok(found) if !found.is_empty() => break found,
            other => assert!(Instant::now() < deadline, "not in the dead-letter topic: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(dead.len(), 1, "dead-lettered once");
    assert_eq!(&dead[0].body[..], b"poison");
    assert_eq!(dead[0].topic, "Steps", "the original topic is kept");
    assert_eq!(dead[0].reconsume_times, 2);
    admin.shutdown().await;
    consumer.shutdown().await;
    producer.shutdown().await;
    cluster.shutdown().await;
}

/// The pull consumer (assign, poll, seek, commit), batch sends, and the admin calls the CLI
/// uses: routes, cluster info, lookups by key, UNIQ_KEY and offset id, a group's offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_consumer_batches_and_admin_calls() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(&dir).await;
    create_topic(&cluster, "Audit", 2).await;
    let producer = Producer::start(producer_config(&cluster)).await.unwrap();
    let batch: Vec<Message> = (0..10)
        .map(|i| {
            Message::new("Audit", format!("a-{i}")).with_keys([format!("k{i}")]).with_tags("T")
        })
        .collect();
    let r = producer.send_batch(batch).await.unwrap();
    let ids: Vec<&str> = r.msg_id.split(',').collect();
    assert_eq!(ids.len(), 10, "one UNIQ_KEY per message");
    assert_eq!(r.offset_msg_id.split(',').count(), 10);
    let queue = r.queue.clone();

    tracing::info!("pull consumer: everything of the batch's queue, in order");
    let mut pcfg = PullConsumerConfig::new(&namesrv(&cluster), "PULL");
    pcfg.consume_from = ConsumeFrom::FirstOffset;
    let pull = PullConsumer::start(pcfg).await.unwrap();
    assert_eq!(pull.topic_queues("Audit").await.unwrap().len(), 2);
    pull.assign([queue.clone()]);
    let mut bodies = Vec::new();
    while bodies.len() < 10 {
        let got = pull.poll(3_000).await.unwrap();
        assert!(!got.is_empty(), "poll timed out with {} of 10", bodies.len());
        bodies.extend(got.into_iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()));
    }
    assert_eq!(bodies, (0..10).map(|i| format!("a-{i}")).collect::<Vec<_>>());
    assert_eq!(pull.position(&queue), Some(r.queue_offset + 10));
    pull.seek(&queue, r.queue_offset + 7).unwrap();
    let again = pull.poll(3_000).await.unwrap();
    assert_eq!(&again[0].body[..], b"a-7", "seek moves the next poll");
    pull.commit().await.unwrap();

    tracing::info!("admin: the group's committed offset is what the pull consumer committed");
    let admin = Admin::start(ClientConfig::new(&namesrv(&cluster))).await.unwrap();
    let stats = admin.consume_stats("PULL", Some("Audit")).await.unwrap();
    let w = stats.offset_table.get(&queue).expect("the committed queue is listed");
    assert_eq!(w.consumer_offset, r.queue_offset + 10);
    assert_eq!(w.broker_offset, r.queue_offset + 10);

    let info = admin.cluster_info().await.unwrap();
    assert!(info.broker_addr_table.contains_key("broker-a"));
    let route = admin.route("Audit").await.unwrap();
    assert_eq!(route.queue_datas[0].write_queue_nums, 2);
    assert!(admin.topics().await.unwrap().contains("Audit"));
    let stats = admin.topic_stats("Audit").await.unwrap();
    assert_eq!(stats.offset_table[&queue].max_offset, r.queue_offset + 10);

    let by_key = admin.query_by_key("Audit", "k3").await.unwrap();
    assert_eq!(by_key.len(), 1);
    assert_eq!(&by_key[0].body[..], b"a-3");
    let by_id = admin.query_by_msg_id("Audit", ids[4]).await.unwrap().expect("found by UNIQ_KEY");
    assert_eq!(&by_id.body[..], b"a-4");
    let by_offset = admin.view_by_offset_id(&by_id.offset_msg_id()).await.unwrap();
    assert_eq!(&by_offset.body[..], b"a-4");
    assert!(admin.query_by_key("Audit", "nope").await.unwrap().is_empty());

    tracing::info!("a subscribed pull consumer starting from a time reads only what came after");
    let mark_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as i64;
    tokio::time::sleep(Duration::from_millis(20)).await;
    for i in 0..6 {
        producer.send(Message::new("Audit", format!("b-{i}"))).await.unwrap();
    }
    let mut tcfg = PullConsumerConfig::new(&namesrv(&cluster), "PULL-TS");
    tcfg.consume_from = ConsumeFrom::Timestamp(mark_ms);
    let since = PullConsumer::start(tcfg).await.unwrap();
    since.subscribe("Audit", "*").await.unwrap();
    assert_eq!(since.assignment().len(), 2, "the only member gets both queues");
    let mut later = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while later.len() < 6 {
        assert!(Instant::now() < deadline, "got {later:?}");
        for m in since.poll(1_000).await.unwrap() {
            later.insert(String::from_utf8_lossy(&m.body).into_owned());
        }
    }
    assert!(later.iter().all(|b| b.starts_with("b-")), "nothing from before the mark: {later:?}");
    since.shutdown().await;

    tracing::info!("bad input gets clear errors");
    let too_big = Message::new("Audit", vec![0u8; (4 << 20) + 1]);
    assert!(matches!(producer.send(too_big).await, Err(ClientError::MessageTooLarge { .. })));
    assert!(matches!(
        admin.create_topic(Some("NoSuchCluster"), "X", 4, false).await,
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(matches!(admin.view_by_offset_id("zz").await, Err(ClientError::InvalidArgument(_))));

    admin.shutdown().await;
    pull.shutdown().await;
    producer.shutdown().await;
    cluster.shutdown().await;
}

/// A listener that decides by the body: `commit-*` and `rollback-*` at once, `later-commit`
/// and `later-rollback` only when checked back, `silent` never. It counts check-backs.
#[derive(Default, Clone)]
struct Ledger {
    checks: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl TransactionListener for Ledger {
    async fn execute_local(&self, msg: &Message, _sent: &SendResult) -> TransactionState {
        match std::str::from_utf8(&msg.body).unwrap_or("") {
            b if b.starts_with("commit") => TransactionState::Commit,
            b if b.starts_with("rollback") => TransactionState::Rollback,
            _ => TransactionState::Unknown,
        }
    }

    async fn check(&self, msg: MessageExt) -> TransactionState {
        let body = String::from_utf8_lossy(&msg.body).into_owned();
        *self.checks.lock().unwrap().entry(body.clone()).or_default() += 1;
        match body.as_str() {
            "later-commit" => TransactionState::Commit,
            "later-rollback" => TransactionState::Rollback,
            _ => TransactionState::Unknown,
        }
    }
}

/// Transactions end to end over real sockets: a committed half is consumed once, a rolled
/// back one never, an unknown one is checked back and resolved by the producer's answer, one
/// never answered is discarded to TRANS_CHECK_MAX_TIME_TOPIC after `transaction_check_max`
/// checks, and halves sent between plain messages leave the queue's offsets dense.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_roll_back_and_are_checked_back() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = dev::start_cluster_with(&dir, 8 << 20, Duration::from_secs(10), |c| {
        c.transaction_check_interval_ms = 300;
        c.transaction_timeout_ms = 500;
        c.transaction_check_max = 3;
    })
    .await;
    create_topic(&cluster, "Orders", 1).await;
    let plain = Producer::start(producer_config(&cluster)).await.unwrap();
    let ledger = Ledger::default();
    let mut config = producer_config(&cluster);
    config.group = "TXP".into();
    let tx = TransactionProducer::start(config, ledger.clone()).await.unwrap();

    plain.send(Message::new("Orders", "plain-0")).await.unwrap();
    let mut states = BTreeMap::new();
    for body in ["commit-1", "rollback-1", "later-commit", "later-rollback", "silent"] {
        let m = Message::new("Orders", body).with_keys([format!("{body}-key")]);
        let r = tx.send(m).await.unwrap();
        states.insert(body, r.state);
    }
    plain.send(Message::new("Orders", "plain-1")).await.unwrap();
    assert_eq!(states["commit-1"], TransactionState::Commit);
    assert_eq!(states["rollback-1"], TransactionState::Rollback);
    assert_eq!(states["silent"], TransactionState::Unknown);

    // Read the queue until the last check-back resolution and the discard are done.
    let mut pcfg = PullConsumerConfig::new(&namesrv(&cluster), "READER");
    pcfg.consume_from = ConsumeFrom::FirstOffset;
    let reader = PullConsumer::start(pcfg).await.unwrap();
    let queue = reader.topic_queues("Orders").await.unwrap().into_iter().next().unwrap();
    reader.assign([queue.clone()]);
    let mut got: Vec<(i64, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 4 {
        assert!(Instant::now() < deadline, "consumed only {got:?}");
        for m in reader.poll(500).await.unwrap() {
            got.push((m.queue_offset, String::from_utf8_lossy(&m.body).into_owned()));
        }
    }
    let discarded = loop {
        assert!(Instant::now() < deadline, "never discarded; checks {:?}", ledger.checks);
        let found = reader.topic_queues("TRANS_CHECK_MAX_TIME_TOPIC").await;
        if let Ok(qs) = found {
            let mut dcfg = PullConsumerConfig::new(&namesrv(&cluster), "DISCARD_READER");
            dcfg.consume_from = ConsumeFrom::FirstOffset;
            let d = PullConsumer::start(dcfg).await.unwrap();
            d.assign(qs);
            let ms = d.poll(2_000).await.unwrap();
            d.shutdown().await;
            if let Some(m) = ms.into_iter().next() {
                break m;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(&discarded.body[..], b"silent");
    assert_eq!(discarded.properties.get("TRANSACTION_CHECK_TIMES").map(String::as_str), Some("3"));
    // Nothing more arrives: the rolled-back and discarded halves never show.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for m in reader.poll(500).await.unwrap() {
        got.push((m.queue_offset, String::from_utf8_lossy(&m.body).into_owned()));
    }
    got.sort();
    let offsets: Vec<i64> = got.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3], "dense offsets, each message once: {got:?}");
    let bodies: BTreeSet<&str> = got.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(bodies, BTreeSet::from(["plain-0", "commit-1", "plain-1", "later-commit"]));
    let checks = ledger.checks.lock().unwrap().clone();
    assert_eq!(checks.get("silent"), Some(&3), "checked transaction_check_max times: {checks:?}");
    assert_eq!(checks.get("later-commit"), Some(&1));
    assert_eq!(checks.get("later-rollback"), Some(&1));
    assert!(!checks.contains_key("commit-1") && !checks.contains_key("rollback-1"));
    // The committed message keeps what it was sent with.
    let admin = Admin::start(ClientConfig::new(&namesrv(&cluster))).await.unwrap();
    let found = admin.query_by_key("Orders", "later-commit-key").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].properties.get("TRAN_MSG").map(String::as_str), Some("true"));
    admin.shutdown().await;
    reader.shutdown().await;
    tx.shutdown().await;
    plain.shutdown().await;
    cluster.shutdown().await;
}

/// A push consumer subscribed with a SQL92 selector receives exactly the messages whose
/// properties match (the broker filters; the client does not filter by tag); one whose
/// selector does not parse fails to start, with where it failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql92_subscriber_gets_only_matching_messages_and_a_bad_selector_fails_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(&dir).await;
    create_topic(&cluster, "Sql", 2).await;
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let g = got.clone();
    let listener = move |msgs: Vec<MessageExt>| {
        g.lock()
            .unwrap()
            .extend(msgs.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()));
        std::future::ready(ConsumeResult::Success)
    };
    let mut config = consumer_config(&cluster, "SQLG", "Sql");
    config.subscriptions.clear();
    let config = config.subscribe_sql("Sql", "n >= 30 AND TAGS = 'even'");
    let consumer = PushConsumer::start_concurrently(config, listener).await.unwrap();
    let producer = Producer::start(producer_config(&cluster)).await.unwrap();
    for i in 0..40 {
        let tag = if i % 2 == 0 { "even" } else { "odd" };
        let m =
            Message::new("Sql", format!("m{i}")).with_tags(tag).with_property("n", i.to_string());
        producer.send(m).await.unwrap();
    }
    let want: Vec<String> = (30..40).step_by(2).map(|i| format!("m{i}")).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.lock().unwrap().len() < want.len() {
        assert!(Instant::now() < deadline, "got {:?}", got.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing else arrives afterwards.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut seen = got.lock().unwrap().clone();
    seen.sort_by_key(|b| b[1..].parse::<u32>().unwrap());
    assert_eq!(seen, want);

    let bad = consumer_config(&cluster, "SQLBAD", "Sql");
    let mut bad = bad;
    bad.subscriptions.clear();
    let bad = bad.subscribe_sql("Sql", "n > AND");
    let refused = PushConsumer::start_concurrently(bad, |_: Vec<MessageExt>| {
        std::future::ready(ConsumeResult::Success)
    })
    .await;
    let e = refused.err().expect("a selector that does not parse is refused").to_string();
    assert!(e.contains("column 5"), "{e}");
    producer.shutdown().await;
    consumer.shutdown().await;
    cluster.shutdown().await;
}

/// A body over the threshold travels and is stored zlib-compressed (as Java producers send
/// it), a consumer gets it back as sent; an incompressible or short body goes as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_are_sent_compressed_and_consumed_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(&dir).await;
    create_topic(&cluster, "Zip", 1).await;
    let producer = Producer::start(producer_config(&cluster)).await.unwrap();
    let text = "an order line that repeats itself ".repeat(300).into_bytes(); // ~10 KiB
    let mut seed = 7u64;
    let noise: Vec<u8> = (0..10_000)
        .map(|_| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 56) as u8
        })
        .collect();
    let bodies = [text.clone(), noise.clone(), b"short".to_vec(), b"end".to_vec()];
    for b in &bodies {
        producer.send(Message::new("Zip", b.clone())).await.unwrap();
    }
    let received = Received::default();
    let consumer = PushConsumer::start_concurrently(
        consumer_config(&cluster, "ZIPG", "Zip"),
        received.listener(0),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.len() < bodies.len() {
        assert!(Instant::now() < deadline, "got {}", received.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut got: Vec<MessageExt> =
        received.0.lock().unwrap().iter().map(|(_, m)| m.clone()).collect();
    got.sort_by_key(|m| m.queue_offset);
    for (m, b) in got.iter().zip(&bodies) {
        assert_eq!(&m.body[..], &b[..], "offset {}", m.queue_offset);
        assert_eq!(m.sys_flag & 0x1, 0, "delivered inflated, the flag cleared");
    }
    // What each message took in the CommitLog: the compressible one far less than its 10 KiB,
    // the noise (which zlib cannot shorten) more.
    let stored = |i: usize| got[i + 1].commit_log_offset - got[i].commit_log_offset;
    assert!(stored(0) < 2_000, "compressed: {} bytes stored", stored(0));
    assert!(stored(1) > 10_000, "sent as it was: {} bytes stored", stored(1));
    producer.shutdown().await;
    consumer.shutdown().await;
    cluster.shutdown().await;
}

/// Two members sharing a topic's queues by circle (RocketMQ's
/// `AllocateMessageQueueAveragelyByCircle`) and by consistent hash: each takes what the strategy
/// gives it, and together they hold every queue once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_share_queues_by_the_strategy_they_are_configured_with() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(&dir).await;
    create_topic(&cluster, "Circle", 4).await;
    for (group, strategy) in [
        ("CIRCLE", Allocation::AveragelyByCircle),
        ("RING", Allocation::ConsistentHash { virtual_nodes: Allocation::VIRTUAL_NODES_DEFAULT }),
    ] {
        let received = Received::default();
        let mut consumers = Vec::new();
        for who in 0..2 {
            let mut config = consumer_config(&cluster, group, "Circle");
            config.allocation = strategy.clone();
            consumers.push(
                PushConsumer::start_concurrently(config, received.listener(who)).await.unwrap(),
            );
        }
        let refs: Vec<&PushConsumer> = consumers.iter().collect();
        if strategy == Allocation::AveragelyByCircle {
            wait_balanced(&refs, 4).await;
            for c in &consumers {
                let ids: Vec<i32> = c
                    .assigned_queues()
                    .into_iter()
                    .filter(|q| q.topic == "Circle")
                    .map(|q| q.queue_id)
                    .collect();
                assert!(ids == [0, 2] || ids == [1, 3], "by circle: {ids:?}");
            }
        } else {
            // The ring need not split four queues evenly: wait until they cover all four once.
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let mut all: Vec<MessageQueue> = consumers
                    .iter()
                    .flat_map(|c| c.assigned_queues())
                    .filter(|q| q.topic == "Circle")
                    .collect();
                all.sort();
                let ids: Vec<i32> = all.iter().map(|q| q.queue_id).collect();
                if ids == [0, 1, 2, 3] {
                    break;
                }
                assert!(Instant::now() < deadline, "ring never settled: {ids:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        for c in consumers {
            c.shutdown().await;
        }
    }
    cluster.shutdown().await;
}

/// `mqadmin consumerStatus`'s call: an admin tool asks a master, the master asks the
/// consumer on its connection, and the consumer's own account comes back: its settings,
/// subscriptions and the queues it holds. A client id the broker does not know is refused
/// with RocketMQ's remark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumers_running_info_comes_from_the_consumer_through_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(&dir).await;
    create_topic(&cluster, "Info", 2).await;
    let received = Received::default();
    let consumer = PushConsumer::start_concurrently(
        consumer_config(&cluster, "INFOG", "Info"),
        received.listener(0),
    )
    .await
    .unwrap();
    wait_balanced(&[&consumer], 2).await;
    let admin = Admin::start(ClientConfig::new(&namesrv(&cluster))).await.unwrap();
    let info = admin.consumer_running_info("INFOG", &consumer.client_id()).await.unwrap();
    assert_eq!(info.properties["PROP_CONSUME_TYPE"], "CONSUME_PASSIVELY");
    assert_eq!(info.properties["consumerGroup"], "INFOG");
    assert!(info.subscription_set.iter().any(|s| s.topic == "Info"), "{info:?}");
    let held: Vec<i32> =
        info.mq_table.keys().filter(|q| q.topic == "Info").map(|q| q.queue_id).collect();
    assert_eq!(held, [0, 1], "{info:?}");
    let e = admin.consumer_running_info("INFOG", "nobody@0").await.unwrap_err().to_string();
    assert!(e.contains("The Consumer <INFOG> <nobody@0> not online"), "{e}");
    admin.shutdown().await;
    consumer.shutdown().await;
    cluster.shutdown().await;
}

/// Request-reply (`DefaultMQProducer.request()`): requests go to a topic a consumer group
/// serves, each consumer replies with `Producer::reply`, and every requester gets the reply to
/// its own request, through the broker's push. A request nobody answers ends in `NoReply`
/// after its timeout, and a message that is not a request cannot be replied to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_gets_the_reply_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(&dir).await;
    create_topic(&cluster, "Ask", 2).await;
    create_topic(&cluster, "Unanswered", 1).await;
    let replier = Producer::start(producer_config(&cluster)).await.unwrap();
    let not_requests = Arc::new(Mutex::new(Vec::new()));
    let listener = {
        let (replier, not_requests) = (replier.clone(), not_requests.clone());
        move |msgs: Vec<MessageExt>| {
            let (replier, not_requests) = (replier.clone(), not_requests.clone());
            async move {
                for m in msgs {
                    if m.property("CORRELATION_ID").is_none() {
                        not_requests.lock().unwrap().push(Message::reply_to(&m, "x").unwrap_err());
                        continue;
                    }
                    let answer = format!("re:{}", String::from_utf8_lossy(&m.body));
                    if let Err(e) = replier.reply(&m, answer).await {
                        tracing::warn!(error = %e, "reply failed");
                        return ConsumeResult::Later;
                    }
                }
                ConsumeResult::Success
            }
        }
    };
    let consumer =
        PushConsumer::start_concurrently(consumer_config(&cluster, "ASKG", "Ask"), listener)
            .await
            .unwrap();
    wait_balanced(&[&consumer], 2).await;

    let requester = Producer::start(producer_config(&cluster)).await.unwrap();
    let asks: Vec<_> = (0..20)
        .map(|i| {
            let requester = requester.clone();
            tokio::spawn(async move {
                requester.request(Message::new("Ask", format!("q{i}")), 10_000).await
            })
        })
        .collect();
    for (i, ask) in asks.into_iter().enumerate() {
        let reply = ask.await.unwrap().unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(String::from_utf8_lossy(&reply.body), format!("re:q{i}"));
        assert_eq!(reply.topic, "DefaultCluster_REPLY_TOPIC");
        assert!(reply.is_reply());
        assert_eq!(reply.property("REPLY_TO_CLIENT"), Some(requester.client_id()));
        assert_eq!(reply.property("TTL"), Some("10000"));
        assert!(reply.property("ARRIVE_TIME").is_some());
    }

    tracing::info!("--- a request nobody answers, and a plain message");
    let started = Instant::now();
    let e = requester.request(Message::new("Unanswered", "?"), 1_000).await.unwrap_err();
    assert!(matches!(e, ClientError::NoReply { timeout_ms: 1_000, .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    replier.send(Message::new("Ask", "plain")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while not_requests.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the plain message never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = not_requests.lock().unwrap()[0].to_string();
    assert!(e.contains("not a request message: property[CORRELATION_ID] is null"), "{e}");

    requester.shutdown().await;
    consumer.shutdown().await;
    replier.shutdown().await;
    cluster.shutdown().await;
}
