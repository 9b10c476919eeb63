//! Whatever a client sends, the group stays up (issue 14): a dev cluster (NameServer and three
//! replicas on real files and loopback TCP, as `rocketraft dev` runs them) takes randomized
//! RocketMQ requests mixed with normal sends; afterwards every replica runs, all applied the
//! same index, and every acknowledged normal send is pullable from every replica. And a
//! replica whose disk fails stops cleanly while the others go on.
//!
//! ```text
//!   seeded rng ──▶ SEND(_V2) / SEND_BATCH / HEART_BEAT / admin / queries (hostile and normal)
//!                  normal sends ──ack (queue, offset, body)──▶ kept
//!   then: quiesce ─▶ every replica healthy, one applied index ─▶ pull every ack everywhere
//! ```
//!
//! Rerun a seed, or run longer (the README's "Development" table):
//! `ROCKETRAFT_FUZZ_SEED=7 ROCKETRAFT_FUZZ_SECS=1800 cargo test -p rocketraft-tests --test requests`

// Real processes, files and sockets: not for the madsim build.
#![cfg(not(madsim))]
#![allow(clippy::disallowed_methods)] // tests read the clock to bound their waits

// Its own test binary, not a module of `client`: its thousands of requests (4 MiB bodies among
// them) would run beside the client tests, whose timing they disturb.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rocketraft::dev::DevCluster;
use rocketraft_protocol::body::{
    ConsumeFromWhere, ConsumeType, ConsumerData, HeartbeatData, JsonBody, JsonStyle, MessageModel,
    ProducerData, SubscriptionData,
};
use rocketraft_protocol::frame::{encode_frame, FrameDecoder};
use rocketraft_protocol::headers::*;
use rocketraft_protocol::message::{
    decode_records, encode_batch, properties_to_string, BatchMessage, MESSAGE_MAX_BYTES_DEFAULT,
};
use rocketraft_protocol::sysflag;
use rocketraft_protocol::{request_code as rc, response_code, ExtFields, RemotingCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "support/dev.rs"]
mod dev;

/// A dev cluster on free ports in `dir`, with quick elections, once a master is routed.
async fn start_cluster(dir: &tempfile::TempDir) -> DevCluster {
    dev::start_cluster(dir, 64 << 20, Duration::from_secs(15)).await
}

/// The seed of the randomized run (default 1).
const SEED_ENV: &str = "ROCKETRAFT_FUZZ_SEED";
/// How long the randomized run may send, in seconds (default 60). When set, the request count
/// is unbounded unless ROCKETRAFT_FUZZ_REQUESTS says otherwise.
const SECS_ENV: &str = "ROCKETRAFT_FUZZ_SECS";
/// How many requests the randomized run sends (default 3,000).
const REQUESTS_ENV: &str = "ROCKETRAFT_FUZZ_REQUESTS";

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")))
}

/// One remoting connection; answers are matched by opaque (others are dropped: a request that
/// timed out may still be answered later).
struct Conn {
    addr: SocketAddr,
    stream: TcpStream,
    decoder: FrameDecoder,
    buf: BytesMut,
    opaque: i32,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            stream: TcpStream::connect(addr).await.expect("connect"),
            decoder: FrameDecoder::default(),
            buf: BytesMut::new(),
            opaque: 0,
        }
    }

    /// The response, or `None` if the broker closed the connection or took longer than
    /// `wait` (the connection is then replaced).
    async fn call(&mut self, mut cmd: RemotingCommand, wait: Duration) -> Option<RemotingCommand> {
        self.opaque += 1;
        cmd.opaque = self.opaque;
        let mut out = BytesMut::new();
        encode_frame(&cmd, &mut out).expect("encodable");
        let oneway = cmd.is_oneway();
        let got = tokio::time::timeout(wait, async {
            self.stream.write_all(&out).await.ok()?;
            if oneway {
                return None;
            }
            loop {
                match self.decoder.decode(&mut self.buf) {
                    Ok(Some(c)) if c.is_response() && c.opaque == cmd.opaque => return Some(c),
                    Ok(Some(_)) => continue,
                    Ok(None) => {}
                    Err(e) => panic!("the broker sent a malformed frame: {e}"),
                }
                if self.stream.read_buf(&mut self.buf).await.ok()? == 0 {
                    return None;
                }
            }
        })
        .await
        .ok()
        .flatten();
        if got.is_none() && !oneway {
            *self = Conn::connect(self.addr).await;
        }
        got
    }
}

fn send_header(
    topic: &str,
    queue_id: i32,
    sys_flag: i32,
    props: String,
) -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "PG".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id,
        sys_flag,
        born_timestamp: 1_700_000_000_000,
        flag: 0,
        properties: Some(props),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        batch: Some(false),
        max_reconsume_times: None,
        broker_name: None,
    }
}

/// Creates `topic` with `queues` queues through `conn` (to the leader).
async fn create_topic(conn: &mut Conn, topic: &str, queues: i32) {
    let create = RemotingCommand::request(
        rc::UPDATE_AND_CREATE_TOPIC,
        &CreateTopicRequestHeader {
            topic: topic.into(),
            default_topic: "TBW102".into(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: 6,
            topic_filter_type: "SINGLE_TAG".into(),
            topic_sys_flag: None,
            order: None,
        },
    );
    let created = conn.call(create, Duration::from_secs(10)).await.expect("answered");
    assert_eq!(created.code, response_code::SUCCESS, "{:?}", created.remark);
}

fn pull(topic: &str, queue_id: i32, offset: i64) -> RemotingCommand {
    RemotingCommand::request(
        rc::PULL_MESSAGE,
        &PullMessageRequestHeader {
            consumer_group: "Checker".into(),
            topic: topic.into(),
            queue_id,
            queue_offset: offset,
            max_msg_nums: 32,
            sys_flag: 0,
            commit_offset: 0,
            suspend_timeout_millis: 0,
            subscription: None,
            sub_version: 0,
            expression_type: None,
            broker_name: None,
        },
    )
}

/// Every replica runs and has applied its whole log, all at one index.
async fn wait_quiet_and_level(cluster: &DevCluster, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let failed = cluster.failed();
        assert!(failed.is_empty(), "replicas stopped on a fatal error: {failed:?}");
        let states = cluster.raft_states();
        let first = states.values().next().copied();
        let level = states
            .values()
            .all(|s| s.running && s.last_applied == s.last_log_index && Some(*s) == first);
        if level && states.len() == 3 {
            return;
        }
        assert!(Instant::now() < deadline, "replicas not healthy and level: {states:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Generates requests: hostile and odd ones, and normal sends.
struct Gen {
    rng: StdRng,
}

const NORMAL: &str = "Normal";
const NORMAL_QUEUES: i32 = 4;

impl Gen {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.gen_range(0..items.len())]
    }

    fn name(&mut self) -> String {
        match self.rng.gen_range(0..14) {
            0 => "../../escape".into(),
            1 => "a/b".into(),
            2 => String::new(),
            3 => "x y\u{1}\u{2}".into(),
            4 => "t".repeat(self.rng.gen_range(120..140)),
            5 => format!("%RETRY%{}", "g".repeat(self.rng.gen_range(1..260))),
            6 => self
                .pick(&["SCHEDULE_TOPIC_XXXX", "RMQ_SYS_TRANS_HALF_TOPIC", "TBW102"])
                .to_string(),
            7 => "naïve".into(),
            8 => ".".into(),
            _ => format!("F{}", self.rng.gen_range(0..6)),
        }
    }

    fn topic(&mut self) -> String {
        if self.rng.gen_bool(0.3) {
            NORMAL.into()
        } else {
            self.name()
        }
    }

    /// A topic admin calls may change: never the normal topic (its acks are checked).
    fn admin_topic(&mut self) -> String {
        loop {
            let t = self.name();
            if t != NORMAL {
                return t;
            }
        }
    }

    fn sys_flag(&mut self) -> i32 {
        use sysflag::message::*;
        match self.rng.gen_range(0..9) {
            0 => TRANSACTION_PREPARED,
            1 => TRANSACTION_COMMIT,
            2 => TRANSACTION_ROLLBACK,
            3 => COMPRESSED | MULTI_TAGS,
            4 => BORNHOST_V6 | STOREHOST_V6,
            5 => self.rng.gen(),
            _ => 0,
        }
    }

    fn properties(&mut self) -> String {
        match self.rng.gen_range(0..10) {
            0 => String::new(),
            1 => "p".repeat(self.rng.gen_range(32_700..32_800)),
            2 => "\u{1}\u{2}\u{1}\u{1}=\u{2}".into(),
            3 => properties_to_string([("TRAN_MSG", *self.pick(&["true", "TRUE", "false"]))]),
            4 => {
                let delay = self.rng.gen_range(-3..40).to_string();
                properties_to_string([("DELAY", delay.as_str()), ("TAGS", "T")])
            }
            5 => {
                let keys =
                    (0..self.rng.gen_range(0..200)).map(|i| format!("k{i}")).collect::<Vec<_>>();
                properties_to_string([("KEYS", keys.join(" ").as_str()), ("UNIQ_KEY", "U")])
            }
            6 => properties_to_string([
                ("REAL_TOPIC", "../x"),
                ("REAL_QID", "-5"),
                ("PGROUP", "a/b"),
            ]),
            _ => properties_to_string([("TAGS", "TagA"), ("KEYS", "key")]),
        }
    }

    fn body(&mut self) -> Vec<u8> {
        let n = match self.rng.gen_range(0..100) {
            0 => MESSAGE_MAX_BYTES_DEFAULT,
            1 => MESSAGE_MAX_BYTES_DEFAULT + 1,
            2 => MESSAGE_MAX_BYTES_DEFAULT - self.rng.gen_range(1..40_000),
            3..=5 => self.rng.gen_range(0..(1 << 20)),
            6..=10 => 0,
            _ => self.rng.gen_range(1..256),
        };
        let mut b = vec![0u8; n];
        self.rng.fill(&mut b[..n.min(4096)]);
        b
    }

    fn queue_id(&mut self) -> i32 {
        match self.rng.gen_range(0..8) {
            0 => -1,
            1 => self.rng.gen(),
            2 => i32::MAX,
            _ => self.rng.gen_range(0..8),
        }
    }

    /// A hostile or odd send: one message or a batch, V1 or V2 header.
    fn send(&mut self) -> RemotingCommand {
        let h = send_header(&self.topic(), self.queue_id(), self.sys_flag(), self.properties());
        let code = *self.pick(&[rc::SEND_MESSAGE, rc::SEND_MESSAGE_V2, rc::SEND_BATCH_MESSAGE]);
        let body = if code == rc::SEND_BATCH_MESSAGE && self.rng.gen_bool(0.8) {
            let n = self.rng.gen_range(0..6);
            let msgs: Vec<BatchMessage> = (0..n)
                .map(|_| BatchMessage {
                    flag: self.rng.gen(),
                    body: Bytes::from(self.body().into_iter().take(70_000).collect::<Vec<_>>()),
                    properties: self.properties(),
                })
                .collect();
            encode_batch(&msgs).unwrap_or_else(|_| b"not a batch".to_vec())
        } else {
            self.body()
        };
        let cmd = if code == rc::SEND_MESSAGE {
            RemotingCommand::request(code, &h)
        } else {
            RemotingCommand::request(code, &SendMessageRequestHeaderV2::from(h))
        };
        cmd.with_body(body)
    }

    fn heartbeat(&mut self) -> RemotingCommand {
        if self.rng.gen_bool(0.1) {
            return RemotingCommand::request_without_header(rc::HEART_BEAT)
                .with_body(&b"{not json"[..]);
        }
        let consumers = (0..self.rng.gen_range(0..3))
            .map(|_| ConsumerData {
                consume_from_where: ConsumeFromWhere::ConsumeFromLastOffset,
                consume_type: ConsumeType::ConsumePassively,
                group_name: self.name(),
                message_model: MessageModel::Clustering,
                subscription_data_set: vec![SubscriptionData::tag(self.topic(), "*", 1)],
                unit_mode: false,
            })
            .collect();
        let data = HeartbeatData {
            client_id: format!("client-{}", self.rng.gen_range(0..4)),
            consumer_data_set: consumers,
            producer_data_set: vec![ProducerData { group_name: self.name() }],
        };
        RemotingCommand::request_without_header(rc::HEART_BEAT)
            .with_body(data.to_json(JsonStyle::Standard))
    }

    /// An admin call or query with random header fields (numbers that are not numbers too).
    fn admin(&mut self) -> RemotingCommand {
        let any_code = self.rng.gen_range(0..400);
        let code = *self.pick(&[
            rc::UPDATE_AND_CREATE_TOPIC,
            rc::DELETE_TOPIC_IN_BROKER,
            rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
            rc::DELETE_SUBSCRIPTIONGROUP,
            rc::UPDATE_CONSUMER_OFFSET,
            rc::QUERY_CONSUMER_OFFSET,
            rc::GET_MAX_OFFSET,
            rc::GET_MIN_OFFSET,
            rc::GET_EARLIEST_MSG_STORETIME,
            rc::SEARCH_OFFSET_BY_TIMESTAMP,
            rc::VIEW_MESSAGE_BY_ID,
            rc::QUERY_MESSAGE,
            rc::PULL_MESSAGE,
            rc::GET_ALL_TOPIC_CONFIG,
            rc::GET_BROKER_RUNTIME_INFO,
            rc::GET_TOPIC_STATS_INFO,
            rc::GET_CONSUME_STATS,
            rc::GET_CONSUMER_LIST_BY_GROUP,
            rc::LOCK_BATCH_MQ,
            rc::UNLOCK_BATCH_MQ,
            rc::UNREGISTER_CLIENT,
            rc::CONSUMER_SEND_MSG_BACK,
            rc::END_TRANSACTION,
            rc::CHECK_CLIENT_CONFIG,
            any_code,
        ]);
        let mut f = ExtFields::new();
        let topic = self.admin_topic();
        f.insert("topic", topic);
        f.insert("defaultTopic", "TBW102");
        let number = |g: &mut Gen| -> String {
            match g.rng.gen_range(0..6) {
                0 => "x".into(),
                1 => g.rng.gen::<i64>().to_string(),
                2 => "-1".into(),
                _ => g.rng.gen_range(0..16).to_string(),
            }
        };
        for key in [
            "readQueueNums",
            "writeQueueNums",
            "perm",
            "queueId",
            "commitOffset",
            "queueOffset",
            "maxMsgNums",
            "sysFlag",
            "offset",
            "timestamp",
            "maxNum",
            "beginTimestamp",
            "endTimestamp",
            "subVersion",
            "suspendTimeoutMillis",
        ] {
            if self.rng.gen_bool(0.85) {
                f.insert(key, number(self));
            }
        }
        f.insert("suspendTimeoutMillis", "0");
        let group = self.name();
        f.insert("consumerGroup", group.clone());
        f.insert("groupName", group.clone());
        f.insert("key", "key");
        f.insert("topicFilterType", "SINGLE_TAG");
        let mut cmd = RemotingCommand::request_without_header(code);
        cmd.ext_fields = Some(f);
        let body = match self.rng.gen_range(0..4) {
            0 => format!(r#"{{"groupName":{group:?},"retryQueueNums":1,"retryMaxTimes":2}}"#).into_bytes(),
            1 => format!(r#"{{"consumerGroup":{group:?},"clientId":"c","mqSet":[{{"topic":"F1","brokerName":"broker-a","queueId":{}}}]}}"#, self.rng.gen::<i32>()).into_bytes(),
            2 => self.body().into_iter().take(512).collect(),
            _ => Vec::new(),
        };
        if self.rng.gen_bool(0.05) {
            cmd = cmd.into_oneway();
        }
        cmd.with_body(body)
    }
}

/// A few thousand randomized requests against a running group (seed and duration from the
/// environment), then: every replica healthy and level, every acknowledged normal send
/// pullable from every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_requests_leave_every_replica_healthy_and_every_ack_pullable() {
    let seed = env_u64(SEED_ENV).unwrap_or(1);
    let secs = env_u64(SECS_ENV);
    let requests = env_u64(REQUESTS_ENV).unwrap_or(if secs.is_some() { u64::MAX } else { 3_000 });
    let until = Instant::now() + Duration::from_secs(secs.unwrap_or(60));
    eprintln!("randomized requests: seed {seed} (rerun with {SEED_ENV}={seed}), up to {requests} requests, {}s", secs.unwrap_or(60));
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(&dir).await;
    let leader = cluster.leader().expect("a leader");
    let leader_addr = cluster.broker_addrs()[&leader];
    let mut conn = Conn::connect(leader_addr).await;
    create_topic(&mut conn, NORMAL, NORMAL_QUEUES).await;

    let mut gen = Gen { rng: StdRng::seed_from_u64(seed) };
    let mut acked: BTreeMap<(i32, i64), Vec<u8>> = BTreeMap::new();
    let mut codes: BTreeMap<i32, u64> = BTreeMap::new();
    let followers: Vec<SocketAddr> =
        cluster.broker_addrs().iter().filter(|(id, _)| **id != leader).map(|(_, a)| *a).collect();
    let mut to_follower = Conn::connect(followers[0]).await;
    let mut sent = 0u64;
    while sent < requests && Instant::now() < until {
        sent += 1;
        let roll = gen.rng.gen_range(0..100);
        if roll < 30 {
            let queue = gen.rng.gen_range(0..NORMAL_QUEUES);
            let body = format!("normal-{seed}-{sent}").into_bytes();
            let h = send_header(NORMAL, queue, 0, properties_to_string([("TAGS", "N")]));
            let cmd =
                RemotingCommand::request(rc::SEND_MESSAGE_V2, &SendMessageRequestHeaderV2::from(h))
                    .with_body(body.clone());
            if let Some(r) = conn.call(cmd, Duration::from_secs(10)).await {
                if r.code == response_code::SERVICE_NOT_AVAILABLE {
                    // The leader may have moved (an election under load): follow it.
                    if let Some(l) = cluster.leader() {
                        conn = Conn::connect(cluster.broker_addrs()[&l]).await;
                    }
                }
                if r.code == response_code::SUCCESS {
                    let h: SendMessageResponseHeader = r.decode_header().unwrap();
                    assert_eq!(h.queue_id, queue);
                    let dup = acked.insert((queue, h.queue_offset), body);
                    assert!(dup.is_none(), "queue {queue} offset {} given twice", h.queue_offset);
                }
                *codes.entry(r.code).or_default() += 1;
            }
            continue;
        }
        let cmd = match roll {
            30..=64 => gen.send(),
            65..=74 => gen.heartbeat(),
            75..=98 => gen.admin(),
            _ => {
                // Garbage bytes on a fresh connection: the broker closes it.
                let mut raw = TcpStream::connect(leader_addr).await.unwrap();
                let junk: Vec<u8> = (0..gen.rng.gen_range(1..64)).map(|_| gen.rng.gen()).collect();
                let _ = raw.write_all(&junk).await;
                continue;
            }
        };
        let target = if gen.rng.gen_bool(0.1) { &mut to_follower } else { &mut conn };
        if let Some(r) = target.call(cmd, Duration::from_secs(5)).await {
            *codes.entry(r.code).or_default() += 1;
        }
    }
    eprintln!(
        "sent {sent} requests; response codes: {codes:?}; {} normal sends acknowledged",
        acked.len()
    );
    assert!(acked.len() as u64 > sent / 5, "too few normal sends succeeded: {codes:?}");

    tracing::info!("--- every replica healthy and level");
    wait_quiet_and_level(&cluster, Duration::from_secs(60)).await;

    tracing::info!("--- every acknowledged normal send, from every replica");
    for (id, addr) in cluster.broker_addrs() {
        let mut c = Conn::connect(*addr).await;
        for queue in 0..NORMAL_QUEUES {
            let wanted: Vec<(i64, &Vec<u8>)> =
                acked.iter().filter(|((q, _), _)| *q == queue).map(|((_, o), b)| (*o, b)).collect();
            let end = wanted.last().map_or(0, |(o, _)| o + 1);
            let mut got: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
            let mut next = 0;
            while next < end {
                let r =
                    c.call(pull(NORMAL, queue, next), Duration::from_secs(10)).await.expect("pull");
                assert_eq!(
                    r.code,
                    response_code::SUCCESS,
                    "replica {id} queue {queue} at {next}: {:?}",
                    r.remark
                );
                for rec in decode_records(&r.body).unwrap() {
                    got.insert(rec.queue_offset, rec.body.to_vec());
                    next = rec.queue_offset + 1;
                }
            }
            for (offset, body) in wanted {
                assert_eq!(
                    got.get(&offset),
                    Some(body),
                    "replica {id} queue {queue} offset {offset} (seed {seed})"
                );
            }
        }
    }
    cluster.shutdown().await;
}

/// A replica whose disk refuses a write stops on its own: it reports the fatal error, stops
/// serving, and the group goes on with the other two; the cluster still shuts down. (Once, the
/// process kept running with a dead Raft core and no longer stopped on SIGTERM.) The failure
/// is a real one: the queue directory the follower must create is taken by a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_disk_fails_stops_and_the_group_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start_cluster(&dir).await;
    let leader = cluster.leader().expect("a leader");
    let doomed = (0..3).find(|id| *id != leader).unwrap();
    let queues = cluster.data_dirs()[&doomed].join("consumequeue");
    std::fs::create_dir_all(&queues).unwrap();
    std::fs::write(queues.join("Doomed"), b"not a directory").unwrap();

    let mut conn = Conn::connect(cluster.broker_addrs()[&leader]).await;
    let send = |topic: &str, body: &str| {
        let h = send_header(topic, 0, 0, String::new());
        RemotingCommand::request(rc::SEND_MESSAGE_V2, &SendMessageRequestHeaderV2::from(h))
            .with_body(body.as_bytes().to_vec())
    };
    let r = conn.call(send("Doomed", "first"), Duration::from_secs(10)).await.unwrap();
    assert_eq!(r.code, response_code::SUCCESS, "{:?}", r.remark);

    tracing::info!("--- the follower stops on the fatal error; the cluster reports it");
    let (id, why) = tokio::time::timeout(Duration::from_secs(20), cluster.next_fatal())
        .await
        .expect("the follower reports its fatal error");
    assert_eq!(id, doomed);
    assert!(why.contains("Doomed"), "{why}");
    assert_eq!(cluster.failed().len(), 1);
    tokio::time::timeout(Duration::from_secs(20), cluster.stop_replica(doomed))
        .await
        .expect("a failed replica stops");
    assert!(
        TcpStream::connect(cluster.broker_addrs()[&doomed]).await.is_err(),
        "it serves nothing"
    );

    tracing::info!("--- the other two go on");
    for i in 0..10 {
        let r = conn.call(send("Doomed", &format!("m{i}")), Duration::from_secs(10)).await.unwrap();
        assert_eq!(r.code, response_code::SUCCESS, "{:?}", r.remark);
    }
    tokio::time::timeout(Duration::from_secs(30), cluster.shutdown()).await.expect("it shuts down");
}

/// A follower answers as a RocketMQ slave: asked for an offset outside its queue (past the
/// end, or for a queue it does not have yet) it answers PULL_RETRY_IMMEDIATELY with the
/// offset unchanged, never PULL_OFFSET_MOVED; the leader does move the consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_never_moves_a_consumers_offset() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(&dir).await;
    let leader = cluster.leader().expect("a leader");
    let mut conn = Conn::connect(cluster.broker_addrs()[&leader]).await;
    create_topic(&mut conn, "Slave", 1).await;
    for i in 0..3 {
        let h = send_header("Slave", 0, 0, properties_to_string([("TAGS", "N")]));
        let req = RemotingCommand::request(rc::SEND_MESSAGE, &h).with_body(format!("m{i}"));
        let sent = conn.call(req, Duration::from_secs(10)).await.expect("answered");
        assert_eq!(sent.code, response_code::SUCCESS, "{:?}", sent.remark);
    }
    wait_quiet_and_level(&cluster, Duration::from_secs(30)).await;
    let past_end = conn.call(pull("Slave", 0, 100), Duration::from_secs(10)).await.unwrap();
    assert_eq!(past_end.code, response_code::PULL_OFFSET_MOVED, "the leader moves it");
    let follower = *cluster.broker_addrs().iter().find(|(id, _)| **id != leader).unwrap().1;
    let mut to_follower = Conn::connect(follower).await;
    for offset in [100, -5] {
        let answer =
            to_follower.call(pull("Slave", 0, offset), Duration::from_secs(10)).await.unwrap();
        assert_eq!(
            answer.code,
            response_code::PULL_RETRY_IMMEDIATELY,
            "offset {offset}: {:?}",
            answer.remark
        );
        let h: PullMessageResponseHeader = answer.decode_header().unwrap();
        assert_eq!(h.next_begin_offset, offset, "offset {offset} unchanged");
    }
    // What it has, it serves.
    let found = to_follower.call(pull("Slave", 0, 0), Duration::from_secs(10)).await.unwrap();
    assert_eq!(found.code, response_code::SUCCESS, "{:?}", found.remark);
    cluster.shutdown().await;
}
