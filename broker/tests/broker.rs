//! The broker over real TCP: a three-replica group in one process, a broker server on each.
//!
//! ```text
//!   create topic T on the leader (a follower refuses) -> send 20 messages (V2 header) to the
//!   leader (a follower refuses with SERVICE_NOT_AVAILABLE) -> pull them from the leader and from
//!   a follower (same bytes), with a tag filter -> a held pull wakes when a message is sent
//! ```

// A real-socket test on real tokio that measures how fast a held pull wakes: wall time.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rocketraft_broker::{arrival_listener, Broker, BrokerConfig, PullWaiters};
use rocketraft_protocol::frame::{encode_frame, FrameDecoder};
use rocketraft_protocol::headers::*;
use rocketraft_protocol::message::{decode_offset_msg_id, decode_records, properties_to_string};
use rocketraft_protocol::sysflag;
use rocketraft_protocol::{request_code, response_code, RemotingCommand};
use rocketraft_raft::{MemMeta, NodeConfig, RaftNode, RaftTiming};
use rocketraft_store::io::sim::SimStorage;
use rocketraft_store::{CommitLogConfig, DispatchConfig, FlushMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[path = "broker/delayed.rs"]
mod delayed;
#[path = "broker/hostile.rs"]
mod hostile;
#[path = "broker/reply.rs"]
mod reply;

struct Conn {
    stream: TcpStream,
    decoder: FrameDecoder,
    buf: BytesMut,
    opaque: i32,
    /// Requests the broker sent us (notifications), in arrival order.
    pushed: Vec<RemotingCommand>,
}

impl Conn {
    async fn connect(addr: std::net::SocketAddr) -> Conn {
        Conn {
            stream: TcpStream::connect(addr).await.unwrap(),
            decoder: FrameDecoder::default(),
            buf: BytesMut::new(),
            opaque: 0,
            pushed: Vec::new(),
        }
    }

    /// Sends `cmd` and waits for its answer: at most a minute, so that a request the broker
    /// never answers fails the test that sent it instead of hanging the whole run.
    async fn call(&mut self, cmd: RemotingCommand) -> RemotingCommand {
        let code = cmd.code;
        tokio::time::timeout(Duration::from_secs(60), self.call_unbounded(cmd))
            .await
            .unwrap_or_else(|_| panic!("request code {code} got no answer within 60 s"))
    }

    async fn call_unbounded(&mut self, mut cmd: RemotingCommand) -> RemotingCommand {
        self.opaque += 1;
        cmd.opaque = self.opaque;
        let mut out = BytesMut::new();
        encode_frame(&cmd, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
        loop {
            if let Some(c) = self.decoder.decode(&mut self.buf).unwrap() {
                if !c.is_response() {
                    self.pushed.push(c);
                    continue;
                }
                assert_eq!(c.opaque, cmd.opaque);
                return c;
            }
            assert!(self.stream.read_buf(&mut self.buf).await.unwrap() > 0, "closed");
        }
    }

    /// Writes `answer` (to a request the broker pushed) without waiting for anything.
    async fn answer(&mut self, answer: RemotingCommand) {
        let mut out = BytesMut::new();
        encode_frame(&answer, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next request the broker pushes, within `wait`.
    async fn next_push(&mut self, wait: Duration) -> Option<RemotingCommand> {
        if !self.pushed.is_empty() {
            return Some(self.pushed.remove(0));
        }
        tokio::time::timeout(wait, async {
            loop {
                if let Some(c) = self.decoder.decode(&mut self.buf).unwrap() {
                    return Some(c);
                }
                if self.stream.read_buf(&mut self.buf).await.unwrap_or(0) == 0 {
                    return None;
                }
            }
        })
        .await
        .ok()
        .flatten()
    }
}

struct Replica {
    node: RaftNode<SimStorage, MemMeta>,
    broker: Broker,
    /// The replica's simulated disk (to fill it).
    disk: SimStorage,
}

async fn start_group() -> BTreeMap<u64, Replica> {
    start_group_with(Vec::new()).await
}

/// Replica `id` advertises 127.0.0.1:(10911 + id).
fn advertised(id: u64) -> std::net::SocketAddr {
    format!("127.0.0.1:{}", 10911 + id).parse().unwrap()
}

async fn start_group_with(namesrv_addrs: Vec<String>) -> BTreeMap<u64, Replica> {
    start_group_advertising(namesrv_addrs, false, |_| {}).await
}

/// With `real_addrs`, each broker listens on a free port and advertises it, so clients that
/// follow NameServer routes reach it; otherwise replica `id` advertises [`advertised`].
async fn start_group_advertising(
    namesrv_addrs: Vec<String>,
    real_addrs: bool,
    tune: impl Fn(&mut NodeConfig),
) -> BTreeMap<u64, Replica> {
    start_group_configured(namesrv_addrs, real_addrs, tune, |_| {}).await
}

/// As [`start_group_advertising`], with each broker's settings tuned too.
async fn start_group_configured(
    namesrv_addrs: Vec<String>,
    real_addrs: bool,
    tune: impl Fn(&mut NodeConfig),
    tune_broker: impl Fn(&mut BrokerConfig),
) -> BTreeMap<u64, Replica> {
    let mut listeners = BTreeMap::new();
    let mut peers = BTreeMap::new();
    for id in 0..3u64 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        peers.insert(id, l.local_addr().unwrap().to_string());
        listeners.insert(id, l);
    }
    let mut group = BTreeMap::new();
    for id in 0..3u64 {
        let waiters = Arc::new(PullWaiters::default());
        let config = NodeConfig {
            group: "broker-a".into(),
            id,
            peers: peers.clone(),
            timing: RaftTiming {
                heartbeat_interval_ms: 100,
                election_timeout_min_ms: 600,
                election_timeout_max_ms: 800,
                snapshot_every_entries: 10_000,
            },
            commit_log: CommitLogConfig { segment_size_bytes: 1 << 20, ..Default::default() },
            dispatch: DispatchConfig::default(),
            flush: FlushMode::Sync,
            retention: Default::default(),
            retention_check_ms: rocketraft_raft::node::RETENTION_CHECK_MS_DEFAULT,
            message_faults: Default::default(),
            tls: None,
            #[cfg(madsim)]
            sim_bug_ack_before_fsync: false,
            #[cfg(madsim)]
            sim_bug_accept_wiped: false,
            #[cfg(madsim)]
            sim_bug_retention_ignores_floor: false,
            #[cfg(madsim)]
            sim_bugs: Default::default(),
        };
        let mut config = config;
        tune(&mut config);
        let listener = listeners.remove(&id).unwrap();
        let disk = SimStorage::new();
        let node = RaftNode::start(
            config,
            disk.clone(),
            MemMeta::new(),
            listener,
            Some(arrival_listener(&waiters)),
        )
        .await
        .unwrap();
        let mut bc = BrokerConfig::new("broker-a", advertised(id));
        bc.listen = "127.0.0.1:0".into();
        if real_addrs {
            let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
            bc.advertised_addr = free;
            bc.listen = free.to_string();
        }
        bc.namesrv_addrs = namesrv_addrs.clone();
        tune_broker(&mut bc);
        let broker = Broker::start(bc.clone(), &node, waiters, 1_700_000_000_000).await.unwrap();
        group.insert(id, Replica { node, broker, disk });
    }
    group
}

/// A connection to the leader once it has created `topic` (a new leader serves after applying
/// its log, so the first attempts may be refused). `leader` is asked first; if it refuses, the
/// leader is looked up again (an election may have replaced the one the test saw: on a loaded
/// machine the first leader of a fresh group is sometimes deposed at once).
async fn with_topic(group: &BTreeMap<u64, Replica>, leader: u64, topic: &str) -> Conn {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut target = leader;
    loop {
        let mut c = Conn::connect(group[&target].broker.local_addr()).await;
        if c.call(create_topic(topic)).await.code == response_code::SUCCESS {
            return c;
        }
        assert!(Instant::now() < deadline, "no leader created topic {topic} within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
        target = group
            .values()
            .find_map(|r| r.node.raft.metrics().borrow().current_leader)
            .filter(|l| group.contains_key(l))
            .unwrap_or(leader);
    }
}

async fn stop_group(group: BTreeMap<u64, Replica>) {
    for (_, r) in group {
        r.broker.shutdown();
        r.node.shutdown().await;
    }
}

async fn leader(group: &BTreeMap<u64, Replica>) -> u64 {
    for _ in 0..100 {
        if let Some(l) = group[&0].node.raft.metrics().borrow().current_leader {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no leader");
}

fn create_topic(topic: &str) -> RemotingCommand {
    RemotingCommand::request(
        request_code::UPDATE_AND_CREATE_TOPIC,
        &CreateTopicRequestHeader {
            topic: topic.into(),
            default_topic: "TBW102".into(),
            read_queue_nums: 4,
            write_queue_nums: 4,
            perm: 6,
            topic_filter_type: "SINGLE_TAG".into(),
            topic_sys_flag: None,
            order: None,
        },
    )
}

/// A send that names no template topic, so an unknown topic is not auto-created.
fn no_template(cmd: RemotingCommand) -> RemotingCommand {
    let mut h: SendMessageRequestHeaderV2 = cmd.decode_header().unwrap();
    h.c = String::new();
    cmd.with_header(&h)
}

fn send(topic: &str, queue_id: i32, tag: &str, body: &str) -> RemotingCommand {
    let v1 = SendMessageRequestHeader {
        producer_group: "PG".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        flag: 0,
        properties: Some(properties_to_string([("TAGS", tag), ("KEYS", body)])),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        batch: Some(false),
        max_reconsume_times: None,
        broker_name: Some("broker-a".into()),
    };
    RemotingCommand::request(request_code::SEND_MESSAGE_V2, &SendMessageRequestHeaderV2::from(v1))
        .with_body(body.as_bytes().to_vec())
}

fn pull(
    topic: &str,
    queue_id: i32,
    offset: i64,
    subscription: Option<&str>,
    suspend_ms: i64,
) -> RemotingCommand {
    RemotingCommand::request(
        request_code::PULL_MESSAGE,
        &PullMessageRequestHeader {
            consumer_group: "CG".into(),
            topic: topic.into(),
            queue_id,
            queue_offset: offset,
            max_msg_nums: 32,
            sys_flag: sysflag::pull::build(false, suspend_ms > 0, subscription.is_some()),
            commit_offset: 0,
            suspend_timeout_millis: suspend_ms,
            subscription: subscription.map(str::to_owned),
            sub_version: 1,
            expression_type: Some("TAG".into()),
            broker_name: None,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_pull_and_long_poll_on_a_three_replica_group() {
    let group = start_group().await;
    let leader = leader(&group).await;
    let follower = (0..3).find(|id| *id != leader).unwrap();
    let mut to_leader = Conn::connect(group[&leader].broker.local_addr()).await;
    let mut to_follower = Conn::connect(group[&follower].broker.local_addr()).await;

    tracing::info!("--- topics are created on the master only");
    assert_eq!(
        to_follower.call(create_topic("T")).await.code,
        response_code::SERVICE_NOT_AVAILABLE
    );
    let mut created = false;
    for _ in 0..50 {
        // A new leader serves once it has applied its log.
        if to_leader.call(create_topic("T")).await.code == response_code::SUCCESS {
            created = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(created);
    assert_eq!(
        to_leader.call(no_template(send("Nope", 0, "TagA", "x"))).await.code,
        response_code::TOPIC_NOT_EXIST
    );
    // A send naming TBW102 as its template creates the topic (autoCreateTopicEnable).
    let resp = to_leader.call(send("Auto", 1, "TagA", "x")).await;
    assert_eq!(resp.code, response_code::SUCCESS, "{:?}", resp.remark);
    let auto = group[&leader].node.state_machine.topic("Auto").unwrap().unwrap();
    assert_eq!((auto.write_queue_nums, auto.perm), (4, 6), "4 queues asked, RW without inherit");

    tracing::info!("--- 20 sends to the master; a follower refuses (retryable)");
    let mut sent = Vec::new();
    for i in 0..20 {
        let tag = if i % 2 == 0 { "TagA" } else { "TagB" };
        let resp = to_leader.call(send("T", i % 4, tag, &format!("m{i}"))).await;
        assert_eq!(resp.code, response_code::SUCCESS, "{:?}", resp.remark);
        let h: SendMessageResponseHeader = resp.decode_header().unwrap();
        assert_eq!((h.queue_id, h.queue_offset), (i % 4, (i / 4) as i64));
        assert_eq!(h.msg_region.as_deref(), Some("DefaultRegion"));
        let (host, position) = decode_offset_msg_id(&h.msg_id).unwrap();
        assert_eq!(host, advertised(leader));
        sent.push(position);
    }
    assert_eq!(
        to_follower.call(send("T", 0, "TagA", "x")).await.code,
        response_code::SERVICE_NOT_AVAILABLE
    );
    let bad_queue = to_leader.call(send("T", 9, "TagA", "x")).await;
    assert_eq!(bad_queue.code, response_code::SYSTEM_ERROR);
    assert!(bad_queue.remark.unwrap().contains("queueId[9] is illegal"));

    tracing::info!("--- pull from the master and from a follower: the same records");
    let from_leader = to_leader.call(pull("T", 0, 0, None, 0)).await;
    assert_eq!(from_leader.code, response_code::SUCCESS);
    let records = decode_records(&from_leader.body).unwrap();
    assert_eq!(records.iter().map(|r| r.queue_offset).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    assert_eq!(records[0].body, b"m0");
    assert_eq!(records[0].physical_offset, sent[0], "the msgId names the record's position");
    let mut same = false;
    for _ in 0..50 {
        let r = to_follower.call(pull("T", 0, 0, None, 0)).await;
        if r.code == response_code::SUCCESS && r.body == from_leader.body {
            same = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(same, "a follower serves the same committed records");
    let h: PullMessageResponseHeader = from_leader.decode_header().unwrap();
    assert_eq!((h.next_begin_offset, h.max_offset), (5, 5));

    tracing::info!("--- a tag filter (queue 1 has only TagB)");
    let tag_b = to_leader.call(pull("T", 1, 0, Some("TagB"), 0)).await;
    assert_eq!(decode_records(&tag_b.body).unwrap().len(), 5);
    let tag_a = to_leader.call(pull("T", 1, 0, Some("TagA"), 0)).await;
    assert_eq!(tag_a.code, response_code::PULL_RETRY_IMMEDIATELY, "no match: skip ahead");
    assert_eq!(tag_a.decode_header::<PullMessageResponseHeader>().unwrap().next_begin_offset, 5);
    assert_eq!(
        to_leader.call(pull("T", 0, 99, None, 0)).await.code,
        response_code::PULL_OFFSET_MOVED
    );
    assert_eq!(to_leader.call(pull("T", 0, 5, None, 0)).await.code, response_code::PULL_NOT_FOUND);

    tracing::info!("--- a held pull wakes when a message arrives, and times out when none does");
    let addr = group[&leader].broker.local_addr();
    let held = tokio::spawn(async move {
        let mut c = Conn::connect(addr).await;
        let started = Instant::now();
        let resp = c.call(pull("T", 0, 5, None, 10_000)).await;
        (resp, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent_at = Instant::now();
    assert_eq!(to_leader.call(send("T", 0, "TagA", "late")).await.code, response_code::SUCCESS);
    let (resp, waited) = held.await.unwrap();
    assert_eq!(resp.code, response_code::SUCCESS);
    assert_eq!(decode_records(&resp.body).unwrap()[0].body, b"late");
    assert!(
        waited < Duration::from_secs(5),
        "woken by the arrival, not the 10 s timeout ({waited:?})"
    );
    eprintln!("long poll answered {:?} after the send", sent_at.elapsed());
    let timed_out = to_leader.call(pull("T", 2, 5, None, 300)).await;
    assert_eq!(timed_out.code, response_code::PULL_NOT_FOUND);

    let max = RemotingCommand::request(
        request_code::GET_MAX_OFFSET,
        &TopicQueueRequestHeader { topic: "T".into(), queue_id: 0, broker_name: None },
    );
    assert_eq!(
        to_leader.call(max).await.decode_header::<OffsetResponseHeader>().unwrap().offset,
        6
    );
    let unknown = to_leader.call(RemotingCommand::request_without_header(9999)).await;
    assert_eq!(unknown.code, response_code::REQUEST_CODE_NOT_SUPPORTED);
    stop_group(group).await;
}

/// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP for `group` with RocketMQ's defaults.
fn create_subscription_group(group: &str) -> RemotingCommand {
    RemotingCommand::request(
        request_code::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
        &rocketraft_protocol::header::EmptyHeader,
    )
    .with_body(format!(r#"{{"groupName":"{group}"}}"#).into_bytes())
}

fn update_offset(group: &str, queue_id: i32, offset: i64) -> RemotingCommand {
    RemotingCommand::request(
        request_code::UPDATE_CONSUMER_OFFSET,
        &UpdateConsumerOffsetRequestHeader {
            consumer_group: group.into(),
            topic: "T".into(),
            queue_id,
            commit_offset: offset,
            broker_name: None,
        },
    )
    .into_oneway()
}

fn query_offset(group: &str, queue_id: i32) -> RemotingCommand {
    RemotingCommand::request(
        request_code::QUERY_CONSUMER_OFFSET,
        &QueryConsumerOffsetRequestHeader {
            consumer_group: group.into(),
            topic: "T".into(),
            queue_id,
            set_zero_if_not_found: None,
            broker_name: None,
        },
    )
}

async fn offset_on(conn: &mut Conn, group: &str, queue_id: i32) -> (i32, i64) {
    let r = conn.call(query_offset(group, queue_id)).await;
    (r.code, r.decode_header::<OffsetResponseHeader>().map_or(-1, |h| h.offset))
}

/// Offsets committed oneway (as Java consumers do) and piggybacked on a pull are replicated:
/// a follower answers them, and they survive the leader stopping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_offsets_are_replicated_and_survive_a_leader_change() {
    let mut group = start_group().await;
    let leader = leader(&group).await;
    let follower = (0..3).find(|id| *id != leader).unwrap();
    let mut to_leader = Conn::connect(group[&leader].broker.local_addr()).await;
    while to_leader.call(create_topic("T")).await.code != response_code::SUCCESS {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Offsets are taken for known groups only (RocketMQ 5.x's check).
    assert_eq!(to_leader.call(create_subscription_group("CG")).await.code, response_code::SUCCESS);
    for i in 0..8 {
        assert_eq!(
            to_leader.call(send("T", i % 4, "TagA", &format!("m{i}"))).await.code,
            response_code::SUCCESS
        );
    }
    let mut to_follower = Conn::connect(group[&follower].broker.local_addr()).await;
    assert_eq!(
        offset_on(&mut to_follower, "CG", 0).await,
        (response_code::SUCCESS, 0),
        "nothing stored, queue starts at 0"
    );
    let mut strict = query_offset("CG", 0);
    strict.set_ext_field("setZeroIfNotFound", "false");
    assert_eq!(
        to_follower.call(strict).await.code,
        response_code::QUERY_NOT_FOUND,
        "5.x clients may ask for 'not found' instead"
    );

    tracing::info!("--- commit oneway on the master, and through a pull's commit-offset flag");
    let mut fire = Conn::connect(group[&leader].broker.local_addr()).await;
    {
        let mut out = BytesMut::new();
        encode_frame(&update_offset("CG", 0, 2), &mut out).unwrap();
        fire.stream.write_all(&out).await.unwrap();
    }
    let mut piggyback = pull("T", 1, 0, None, 0);
    let mut h: PullMessageRequestHeader = piggyback.decode_header().unwrap();
    h.sys_flag |= sysflag::pull::COMMIT_OFFSET;
    h.commit_offset = 1;
    piggyback = piggyback.with_header(&h);
    assert_eq!(to_leader.call(piggyback).await.code, response_code::SUCCESS);
    let mut replicated = false;
    for _ in 0..50 {
        if offset_on(&mut to_follower, "CG", 0).await == (response_code::SUCCESS, 2)
            && offset_on(&mut to_follower, "CG", 1).await == (response_code::SUCCESS, 1)
        {
            replicated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(replicated, "the follower answers the committed offsets");

    tracing::info!("--- the leader stops; the new one has the offsets");
    let old = group.remove(&leader).unwrap();
    old.broker.shutdown();
    old.node.shutdown().await;
    let mut new_leader = None;
    for _ in 0..100 {
        let l = group
            .values()
            .find_map(|r| r.node.raft.metrics().borrow().current_leader)
            .filter(|l| group.contains_key(l));
        if l.is_some() {
            new_leader = l;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut to_new =
        Conn::connect(group[&new_leader.expect("a new leader")].broker.local_addr()).await;
    assert_eq!(offset_on(&mut to_new, "CG", 0).await, (response_code::SUCCESS, 2));
    assert_eq!(offset_on(&mut to_new, "CG", 1).await, (response_code::SUCCESS, 1));
    stop_group(group).await;
}

fn heartbeat(client: &str) -> RemotingCommand {
    use rocketraft_protocol::body::*;
    let data = HeartbeatData {
        client_id: client.into(),
        consumer_data_set: vec![ConsumerData {
            consume_from_where: ConsumeFromWhere::ConsumeFromLastOffset,
            consume_type: ConsumeType::ConsumePassively,
            group_name: "CG".into(),
            message_model: MessageModel::Clustering,
            subscription_data_set: vec![SubscriptionData::tag("T", "*", 1)],
            unit_mode: false,
        }],
        producer_data_set: vec![],
    };
    RemotingCommand::request_without_header(request_code::HEART_BEAT)
        .with_body(data.to_json(JsonStyle::Standard))
}

fn lock_request(client: &str, queues: &[i32]) -> RemotingCommand {
    use rocketraft_protocol::body::*;
    let body = LockBatchRequestBody {
        client_id: client.into(),
        consumer_group: "CG".into(),
        mq_set: queues
            .iter()
            .map(|q| MessageQueue {
                broker_name: "broker-a".into(),
                queue_id: *q,
                topic: "T".into(),
            })
            .collect(),
        only_this_broker: false,
    };
    RemotingCommand::request_without_header(request_code::LOCK_BATCH_MQ)
        .with_body(body.to_json(JsonStyle::Standard))
}

async fn locked(conn: &mut Conn, client: &str, queues: &[i32]) -> Vec<i32> {
    use rocketraft_protocol::body::*;
    let answer = conn.call(lock_request(client, queues)).await;
    assert_eq!(answer.code, response_code::SUCCESS, "{:?}", answer.remark);
    let held = LockBatchResponseBody::from_json(&answer.body).unwrap().lock_ok_mq_set;
    held.into_iter().map(|q| q.queue_id).collect()
}

/// Queue locks survive a failover (issue 20): the new master honours the lock its
/// predecessor granted, so the queue is not handed to a second consumer while the first may
/// still be consuming; the holder renews it there, and free queues are granted as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_master_honours_the_queue_locks_of_the_old_one() {
    let mut group = start_group().await;
    let leader = leader(&group).await;
    // Locks are granted on queues that exist.
    let mut admin = Conn::connect(group[&leader].broker.local_addr()).await;
    while admin.call(create_topic("T")).await.code != response_code::SUCCESS {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Consumers send heartbeats to every replica, as RocketMQ's do.
    let mut conns = BTreeMap::new();
    for (id, r) in &group {
        let mut c1 = Conn::connect(r.broker.local_addr()).await;
        let mut c2 = Conn::connect(r.broker.local_addr()).await;
        assert_eq!(c1.call(heartbeat("c1")).await.code, response_code::SUCCESS);
        assert_eq!(c2.call(heartbeat("c2")).await.code, response_code::SUCCESS);
        conns.insert(*id, (c1, c2));
    }
    let mut granted = Vec::new();
    for _ in 0..50 {
        granted = locked(&mut conns.get_mut(&leader).unwrap().0, "c1", &[0]).await;
        if !granted.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(granted, [0], "the master grants c1 queue 0");
    assert!(locked(&mut conns.get_mut(&leader).unwrap().1, "c2", &[0]).await.is_empty());

    tracing::info!("--- the leader stops; the new one keeps queue 0 for c1");
    let old = group.remove(&leader).unwrap();
    conns.remove(&leader);
    old.broker.shutdown();
    old.node.shutdown().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let new_leader = loop {
        let l = group
            .values()
            .find_map(|r| r.node.raft.metrics().borrow().current_leader)
            .filter(|l| group.contains_key(l));
        // A new leader grants locks once its state is current; c2 asks for a free queue.
        if let Some(l) = l {
            if locked(&mut conns.get_mut(&l).unwrap().1, "c2", &[1]).await == [1] {
                break l;
            }
        }
        assert!(Instant::now() < deadline, "no new master granted a free queue");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (c1, c2) = conns.get_mut(&new_leader).unwrap();
    assert!(locked(c2, "c2", &[0]).await.is_empty(), "queue 0 is still c1's");
    assert_eq!(locked(c1, "c1", &[0]).await, [0], "c1 renews it on the new master");
    assert!(locked(c2, "c2", &[0]).await.is_empty());
    stop_group(group).await;
}

/// Members of a consumer group are told at once when it changes; the member list and queue
/// locks answer as RocketMQ's do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_hear_of_group_changes_and_lock_queues() {
    use rocketraft_protocol::body::*;
    let group = start_group().await;
    let leader = leader(&group).await;
    let addr = group[&leader].broker.local_addr();
    let mut c1 = Conn::connect(addr).await;
    let mut c2 = Conn::connect(addr).await;
    // Locks are granted on queues that exist.
    while c1.call(create_topic("T")).await.code != response_code::SUCCESS {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hb = c1.call(heartbeat("c1")).await;
    assert_eq!(hb.code, response_code::SUCCESS);
    assert!(hb.version >= 401, "Java clients read the broker's version from this");
    assert_eq!(c2.call(heartbeat("c2")).await.code, response_code::SUCCESS);

    tracing::info!("--- c1 hears that c2 joined");
    let notify = c1.next_push(Duration::from_secs(2)).await.expect("a notification");
    assert_eq!(notify.code, request_code::NOTIFY_CONSUMER_IDS_CHANGED);
    assert!(notify.is_oneway());
    assert_eq!(
        notify.decode_header::<NotifyConsumerIdsChangedRequestHeader>().unwrap().consumer_group,
        "CG"
    );
    let list = c1
        .call(RemotingCommand::request(
            request_code::GET_CONSUMER_LIST_BY_GROUP,
            &GetConsumerListByGroupRequestHeader { consumer_group: "CG".into(), broker_name: None },
        ))
        .await;
    assert_eq!(ConsumerListBody::from_json(&list.body).unwrap().consumer_id_list, vec!["c1", "c2"]);

    tracing::info!("--- queue locks: one client per queue");
    let mq = |q| MessageQueue { broker_name: "broker-a".into(), queue_id: q, topic: "T".into() };
    let lock = |client: &str, qs: &[i32]| {
        let body = LockBatchRequestBody {
            client_id: client.into(),
            consumer_group: "CG".into(),
            mq_set: qs.iter().map(|q| mq(*q)).collect(),
            only_this_broker: false,
        };
        RemotingCommand::request_without_header(request_code::LOCK_BATCH_MQ)
            .with_body(body.to_json(JsonStyle::Standard))
    };
    let got = c1.call(lock("c1", &[0, 1])).await;
    assert_eq!(LockBatchResponseBody::from_json(&got.body).unwrap().lock_ok_mq_set.len(), 2);
    let got = c2.call(lock("c2", &[1, 2])).await;
    assert_eq!(LockBatchResponseBody::from_json(&got.body).unwrap().lock_ok_mq_set, [mq(2)].into());
    tracing::info!("--- a follower grants no lock, even on a queue nobody holds");
    let follower = (0..3).find(|id| *id != leader).unwrap();
    let mut to_follower = Conn::connect(group[&follower].broker.local_addr()).await;
    let got = to_follower.call(lock("c3", &[3])).await;
    assert_eq!(got.code, response_code::SUCCESS);
    assert!(LockBatchResponseBody::from_json(&got.body).unwrap().lock_ok_mq_set.is_empty());

    tracing::info!("--- c2's connection closes: c1 hears it, and c2 leaves the list");
    c1.pushed.clear();
    drop(c2);
    let notify = c1.next_push(Duration::from_secs(2)).await.expect("a notification");
    assert_eq!(notify.code, request_code::NOTIFY_CONSUMER_IDS_CHANGED);
    let list = c1
        .call(RemotingCommand::request(
            request_code::GET_CONSUMER_LIST_BY_GROUP,
            &GetConsumerListByGroupRequestHeader { consumer_group: "CG".into(), broker_name: None },
        ))
        .await;
    assert_eq!(ConsumerListBody::from_json(&list.body).unwrap().consumer_id_list, vec!["c1"]);
    stop_group(group).await;
}

/// The leader registers as brokerId 0, followers as node id + 1; when the leader stops, the new
/// leader is brokerId 0 in the NameServer's route within 1 s of its election.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_namesrv_follows_the_raft_leader() {
    use rocketraft_namesrv::{NameServer, NamesrvConfig};
    let ns =
        NameServer::start(NamesrvConfig { listen: "127.0.0.1:0".into(), ..Default::default() })
            .await
            .unwrap();
    let mut group = start_group_with(vec![ns.local_addr().to_string()]).await;
    let leader = leader(&group).await;
    let mut to_leader = Conn::connect(group[&leader].broker.local_addr()).await;
    while to_leader.call(create_topic("T")).await.code != response_code::SUCCESS {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let route_of =
        |ns: &NameServer| ns.registry().route("T").map(|r| r.broker_datas[0].broker_addrs.clone());
    let expect = |leader: u64| -> BTreeMap<i64, String> {
        (0..3u64)
            .map(|id| (if id == leader { 0 } else { id as i64 + 1 }, advertised(id).to_string()))
            .collect()
    };
    // The master re-registers right after creating a topic: the route appears at once.
    let mut members = None;
    for _ in 0..50 {
        members = Some(route_of(&ns));
        if members == Some(Some(expect(leader))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        members,
        Some(Some(expect(leader))),
        "brokerId 0 is the leader, followers are node id + 1"
    );

    tracing::info!("--- the leader stops; the new leader re-registers as brokerId 0 at once");
    let old = group.remove(&leader).unwrap();
    old.broker.shutdown();
    old.node.shutdown().await;
    let mut elected = None;
    for _ in 0..100 {
        let l = group
            .values()
            .find_map(|r| r.node.raft.metrics().borrow().current_leader)
            .filter(|l| group.contains_key(l));
        if let Some(l) = l {
            elected = Some((l, Instant::now()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (new_leader, elected_at) = elected.expect("a new leader");
    let mut seen = None;
    while elected_at.elapsed() < Duration::from_secs(5) {
        let master = ns
            .registry()
            .cluster_info()
            .broker_addr_table
            .get("broker-a")
            .and_then(|b| b.broker_addrs.get(&0).cloned());
        if master == Some(advertised(new_leader).to_string()) {
            seen = Some(elected_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = seen.expect("the new leader registered as brokerId 0");
    eprintln!("new leader registered as brokerId 0 {seen:?} after its election was observed");
    assert!(seen < Duration::from_secs(1), "{seen:?}");
    assert!(route_of(&ns)
        .is_some_and(|addrs| addrs.get(&0) == Some(&advertised(new_leader).to_string())));
    stop_group(group).await;
}

/// Messages are found by key, by UNIQ_KEY, by offset msgId and by store time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_found_by_key_id_and_time() {
    let group = start_group().await;
    let leader = leader(&group).await;
    let mut c = with_topic(&group, leader, "T").await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let mut cmd = send("T", 0, "TagA", &format!("order-{i}"));
        let mut h: SendMessageRequestHeaderV2 = cmd.decode_header().unwrap();
        h.i = Some(properties_to_string([
            ("TAGS", "TagA"),
            ("KEYS", &format!("order-{i} common")),
            ("UNIQ_KEY", &format!("U{i:04}")),
        ]));
        cmd = cmd.with_header(&h);
        let resp = c.call(cmd).await;
        ids.push(resp.decode_header::<SendMessageResponseHeader>().unwrap().msg_id);
    }
    let query = |key: &str, uniq: bool| {
        let mut q = RemotingCommand::request(
            request_code::QUERY_MESSAGE,
            &QueryMessageRequestHeader {
                topic: "T".into(),
                key: key.into(),
                max_num: 32,
                begin_timestamp: 0,
                end_timestamp: i64::MAX,
            },
        );
        if uniq {
            q.set_ext_field(UNIQUE_KEY_QUERY, "true");
        }
        q
    };
    let by_key = c.call(query("order-7", false)).await;
    assert_eq!(by_key.code, response_code::SUCCESS);
    let found = decode_records(&by_key.body).unwrap();
    assert_eq!((found.len(), found[0].body), (1, &b"order-7"[..]));
    assert_eq!(decode_records(&c.call(query("common", false)).await.body).unwrap().len(), 10);
    let by_uniq = c.call(query("U0003", true)).await;
    assert_eq!(decode_records(&by_uniq.body).unwrap()[0].body, b"order-3");
    assert_eq!(c.call(query("nope", false)).await.code, response_code::QUERY_NOT_FOUND);

    let (_, position) = decode_offset_msg_id(&ids[5]).unwrap();
    let view = c
        .call(RemotingCommand::request(
            request_code::VIEW_MESSAGE_BY_ID,
            &ViewMessageRequestHeader { offset: position },
        ))
        .await;
    assert_eq!(decode_records(&view.body).unwrap()[0].body, b"order-5");
    let bad = c
        .call(RemotingCommand::request(
            request_code::VIEW_MESSAGE_BY_ID,
            &ViewMessageRequestHeader { offset: 3 },
        ))
        .await;
    assert_eq!(
        bad.code,
        response_code::SYSTEM_ERROR,
        "a position inside an entry header is no record"
    );

    let search = |ts: i64| {
        RemotingCommand::request(
            request_code::SEARCH_OFFSET_BY_TIMESTAMP,
            &SearchOffsetRequestHeader {
                topic: "T".into(),
                queue_id: 0,
                timestamp: ts,
                broker_name: None,
            },
        )
    };
    let offset_of = |r: RemotingCommand| r.decode_header::<OffsetResponseHeader>().unwrap().offset;
    assert_eq!(offset_of(c.call(search(0)).await), 0);
    assert_eq!(offset_of(c.call(search(i64::MAX)).await), 10, "after every message: the end");
    let earliest = c
        .call(RemotingCommand::request(
            request_code::GET_EARLIEST_MSG_STORETIME,
            &TopicQueueRequestHeader { topic: "T".into(), queue_id: 0, broker_name: None },
        ))
        .await;
    let ts = earliest.decode_header::<GetEarliestMsgStoretimeResponseHeader>().unwrap().timestamp;
    assert!(ts >= 1_700_000_000_000, "store time counts from the broker's start time");
    stop_group(group).await;
}

/// A batch send stores every message with consecutive offsets, a oneway send is stored too; a
/// consumer's heartbeat creates its group's retry topic and subscription group on every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_and_retry_topics() {
    use rocketraft_protocol::message::{encode_batch, BatchMessage};
    let group = start_group().await;
    let leader = leader(&group).await;
    let mut c = with_topic(&group, leader, "T").await;
    let batch: Vec<BatchMessage> = (0..5)
        .map(|i| BatchMessage {
            flag: 0,
            body: format!("b{i}").into(),
            properties: properties_to_string([("KEYS", format!("k{i}").as_str())]),
        })
        .collect();
    let mut cmd = send("T", 2, "TagA", "");
    cmd.code = request_code::SEND_BATCH_MESSAGE;
    let mut h: SendMessageRequestHeaderV2 = cmd.decode_header().unwrap();
    h.m = Some(true);
    h.i = Some(properties_to_string([("WAIT", "true")]));
    let cmd = cmd.with_header(&h).with_body(encode_batch(&batch).unwrap());
    let resp = c.call(cmd).await;
    assert_eq!(resp.code, response_code::SUCCESS, "{:?}", resp.remark);
    let r: SendMessageResponseHeader = resp.decode_header().unwrap();
    assert_eq!(r.msg_id.split(',').count(), 5, "one offset msgId per message");
    let pulled = c.call(pull("T", 2, 0, None, 0)).await;
    let records = decode_records(&pulled.body).unwrap();
    assert_eq!(records.iter().map(|r| r.queue_offset).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    assert_eq!(records[3].body, b"b3");
    assert_eq!(records[3].property("KEYS"), Some("k3"));
    assert_eq!(records[3].property("WAIT"), Some("true"), "the batch's properties are appended");

    // A oneway send (no response) is stored after the batch.
    let mut out = BytesMut::new();
    encode_frame(&send("T", 2, "TagA", "fire").into_oneway(), &mut out).unwrap();
    c.stream.write_all(&out).await.unwrap();
    let mut stored = false;
    for _ in 0..50 {
        let r = c.call(pull("T", 2, 5, None, 0)).await;
        if r.code == response_code::SUCCESS {
            stored = decode_records(&r.body).unwrap()[0].body == b"fire";
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stored, "the oneway message follows the batch at offset 5");

    assert_eq!(c.call(heartbeat("c1")).await.code, response_code::SUCCESS);
    let mut everywhere = false;
    for _ in 0..50 {
        everywhere = group.values().all(|r| {
            r.node
                .state_machine
                .topic(&rocketraft_broker::retry_topic("CG"))
                .unwrap()
                .is_some_and(|t| t.write_queue_nums == 1)
                && r.node
                    .state_machine
                    .group("CG")
                    .unwrap()
                    .is_some_and(|g| g.retry_max_times == 16)
        });
        if everywhere {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(everywhere, "%RETRY%CG and the group exist on every replica");
    stop_group(group).await;
}

/// The admin calls mqadmin makes: topic and subscription-group tables are listed, created and
/// deleted through Raft, so every replica agrees, and a deleted topic takes no more sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_manage_topics_and_groups() {
    use rocketraft_protocol::body::{
        ConsumeStats, JsonBody, KvTable, SubscriptionGroupWrapper, TopicConfigSerializeWrapper,
        TopicStatsTable,
    };
    let group = start_group().await;
    let leader = leader(&group).await;
    let follower = *group.keys().find(|&&id| id != leader).unwrap();
    let mut c = with_topic(&group, leader, "T").await;
    let mut f = Conn::connect(group[&follower].broker.local_addr()).await;
    let all = RemotingCommand::request(
        request_code::GET_ALL_TOPIC_CONFIG,
        &rocketraft_protocol::header::EmptyHeader,
    );
    let topics = TopicConfigSerializeWrapper::from_json(&c.call(all.clone()).await.body).unwrap();
    assert_eq!(topics.topic_config_table["T"].write_queue_nums, 4);

    let runtime = RemotingCommand::request(
        request_code::GET_BROKER_RUNTIME_INFO,
        &rocketraft_protocol::header::EmptyHeader,
    );
    let info = KvTable::from_json(&c.call(runtime.clone()).await.body).unwrap().table;
    assert_eq!(info["raftRole"], "Leader");
    assert_eq!(info["raftLeader"], leader.to_string());
    assert!(info["commitLogMaxOffset"].parse::<u64>().unwrap() > 0, "{info:?}");
    assert!(info["runtime"].starts_with("[ 0 days, 0 hours"), "{info:?}");
    // The CommitLog's counters: at most one flush per Raft round (append), each syncing at
    // least the entry bytes.
    let count = |k: &str| info[k].parse::<u64>().unwrap();
    assert!(count("commitLogFlushes") > 0, "{info:?}");
    assert!(count("commitLogEntries") >= count("commitLogAppends"), "{info:?}");
    assert!(count("commitLogFlushes") <= count("commitLogAppends"), "{info:?}");
    assert!(count("commitLogFileSyncs") >= count("commitLogFlushes"), "{info:?}");
    let info = KvTable::from_json(&f.call(runtime).await.body).unwrap().table;
    assert_eq!(info["raftRole"], "Follower");
    assert_eq!(info["raftNodeId"], follower.to_string());

    let create_group = RemotingCommand::request(
        request_code::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
        &rocketraft_protocol::header::EmptyHeader,
    )
    .with_body(br#"{"groupName":"G","retryMaxTimes":3}"#.to_vec());
    assert_ne!(f.call(create_group.clone()).await.code, response_code::SUCCESS, "followers refuse");
    let bad = create_group.clone().with_body(b"{not json".to_vec());
    assert_eq!(c.call(bad).await.code, response_code::SYSTEM_ERROR);
    assert_eq!(c.call(create_group).await.code, response_code::SUCCESS);
    let list = RemotingCommand::request(
        request_code::GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
        &rocketraft_protocol::header::EmptyHeader,
    );
    let groups = SubscriptionGroupWrapper::from_json(&c.call(list.clone()).await.body).unwrap();
    assert_eq!(groups.subscription_group_table["G"].retry_max_times, 3);
    assert!(groups.data_version.counter > 0);

    let del_group = RemotingCommand::request(
        request_code::DELETE_SUBSCRIPTIONGROUP,
        &DeleteSubscriptionGroupRequestHeader { group_name: "G".into() },
    );
    assert_eq!(c.call(del_group).await.code, response_code::SUCCESS);
    let groups = SubscriptionGroupWrapper::from_json(&c.call(list).await.body).unwrap();
    assert!(!groups.subscription_group_table.contains_key("G"));

    // Stats: three messages on queue 1, of which group G2 has consumed two.
    for i in 0..3 {
        assert_eq!(c.call(send("T", 1, "", &format!("m{i}"))).await.code, response_code::SUCCESS);
    }
    assert_eq!(c.call(create_subscription_group("G2")).await.code, response_code::SUCCESS);
    let commit = RemotingCommand::request(
        request_code::UPDATE_CONSUMER_OFFSET,
        &UpdateConsumerOffsetRequestHeader {
            consumer_group: "G2".into(),
            topic: "T".into(),
            queue_id: 1,
            commit_offset: 2,
            broker_name: None,
        },
    );
    assert_eq!(c.call(commit).await.code, response_code::SUCCESS);
    while offset_on(&mut c, "G2", 1).await != (response_code::SUCCESS, 2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = RemotingCommand::request(
        request_code::GET_TOPIC_STATS_INFO,
        &TopicRequestHeader { topic: "T".into() },
    );
    let stats = TopicStatsTable::decode(&c.call(stats).await.body).unwrap().offset_table;
    assert_eq!(stats.len(), 4);
    let q1 = stats.iter().find(|(q, _)| q.queue_id == 1).unwrap().1;
    assert_eq!((q1.min_offset, q1.max_offset), (0, 3));
    assert!(q1.last_update_timestamp > 0);
    let q0 = stats.iter().find(|(q, _)| q.queue_id == 0).unwrap().1;
    assert_eq!((q0.max_offset, q0.last_update_timestamp), (0, 0));
    let consume = |group: &str| {
        RemotingCommand::request(
            request_code::GET_CONSUME_STATS,
            &GetConsumeStatsRequestHeader { consumer_group: group.into(), topic: None },
        )
    };
    let progress = ConsumeStats::decode(&c.call(consume("G2")).await.body).unwrap().offset_table;
    let q1 = progress.iter().find(|(q, _)| q.queue_id == 1).unwrap().1;
    assert_eq!((q1.broker_offset, q1.consumer_offset), (3, 2));
    assert!(q1.last_timestamp > 0 && q1.last_timestamp <= stats_newest(&stats));
    assert_eq!(c.call(consume("nobody")).await.code, response_code::CONSUMER_NOT_ONLINE);
    // consumeTps: the messages served to a group's pulls over the last minute.
    assert_eq!(c.call(pull("T", 1, 0, None, 0)).await.code, response_code::SUCCESS);
    let cg_on_t = RemotingCommand::request(
        request_code::GET_CONSUME_STATS,
        &GetConsumeStatsRequestHeader { consumer_group: "CG".into(), topic: Some("T".into()) },
    );
    let cg = ConsumeStats::decode(&c.call(cg_on_t).await.body).unwrap();
    assert_eq!(cg.consume_tps, 3.0 / 60.0, "3 messages pulled in the last minute");

    // Configuration changes only through the config file: nobody on the network can change it.
    let update_config = RemotingCommand::request(
        request_code::UPDATE_BROKER_CONFIG,
        &rocketraft_protocol::header::EmptyHeader,
    )
    .with_body(b"brokerPermission=0".to_vec());
    assert_eq!(c.call(update_config).await.code, response_code::REQUEST_CODE_NOT_SUPPORTED);

    let del_topic = RemotingCommand::request(
        request_code::DELETE_TOPIC_IN_BROKER,
        &TopicRequestHeader { topic: "T".into() },
    );
    assert_eq!(c.call(del_topic).await.code, response_code::SUCCESS);
    assert_eq!(
        c.call(no_template(send("T", 0, "", "x"))).await.code,
        response_code::TOPIC_NOT_EXIST
    );
    let topics = TopicConfigSerializeWrapper::from_json(&c.call(all).await.body).unwrap();
    assert!(!topics.topic_config_table.contains_key("T"));
    let mut gone = false;
    for _ in 0..50 {
        gone = group.values().all(|r| {
            r.node.state_machine.topic("T").unwrap().is_none()
                && r.node.state_machine.group("G").unwrap().is_none()
        });
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the deletions reach every replica");
    stop_group(group).await;
}

fn stats_newest(
    stats: &BTreeMap<
        rocketraft_protocol::body::MessageQueue,
        rocketraft_protocol::body::TopicOffset,
    >,
) -> i64 {
    stats.values().map(|o| o.last_update_timestamp).max().unwrap_or(0)
}

/// A real RocketMQ client (ali-ons from npm) against a NameServer and a 3-replica group over
/// TCP: 1,000 sends with tags and keys, a clustering push consumer that gets them all, and a
/// lookup of each by key. Needs Node.js and `npm ci --prefix interop` (scripts/verify runs it).
#[cfg(not(madsim))] // runs node, a real process
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ali_ons_sends_consumes_and_finds_by_key() {
    use rocketraft_namesrv::{NameServer, NamesrvConfig};
    let ns =
        NameServer::start(NamesrvConfig { listen: "127.0.0.1:0".into(), ..Default::default() })
            .await
            .unwrap();
    // ali-ons keeps routes for 30 s and gives a send 3 s: a leader change mid-run fails it.
    // A loaded CI machine can starve heartbeats for a second, so this group waits longer
    // before it elects (nothing here tests failover).
    let group = start_group_advertising(vec![ns.local_addr().to_string()], true, |c| {
        c.timing.election_timeout_min_ms = 2_500;
        c.timing.election_timeout_max_ms = 4_000;
    })
    .await;
    let leader = leader(&group).await;
    let leader_addr = group[&leader].broker.local_addr();
    with_topic(&group, leader, "Interop").await;
    let args =
        [ns.local_addr().to_string(), leader_addr.to_string(), "Interop".into(), "1000".into()];
    let result = tokio::task::spawn_blocking(move || {
        rocketraft_tests::interop::run_node("ons_e2e.js", &args)
    })
    .await
    .unwrap();
    assert_eq!(result, serde_json::json!({"sent": 1000, "consumed": 1000, "found": 1000}));
    stop_group(group).await;
    ns.shutdown();
}

/// A second, independent real client: Apache rocketmq-client-cpp (the PyPI wheel `rocketmq`,
/// its prebuilt librocketmq.so) against a NameServer and a 3-replica group over TCP. It speaks
/// SEND_MESSAGE (code 10) with numbers in its header fields, registers its consumer with Java
/// ordinals for the enums, and reads routes in fastjson's form: 200 sends with tags and keys, a
/// clustering push consumer that gets each once, and a pull consumer that finds them all.
/// Needs Python 3 and `interop/.venv` (scripts/verify installs it).
#[cfg(not(madsim))] // runs python, a real process
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocketmq_client_cpp_sends_and_consumes() {
    use rocketraft_namesrv::{NameServer, NamesrvConfig};
    let ns =
        NameServer::start(NamesrvConfig { listen: "127.0.0.1:0".into(), ..Default::default() })
            .await
            .unwrap();
    // As for ali-ons: no failover here, so a loaded machine must not elect mid-run.
    let group = start_group_advertising(vec![ns.local_addr().to_string()], true, |c| {
        c.timing.election_timeout_min_ms = 2_500;
        c.timing.election_timeout_max_ms = 4_000;
    })
    .await;
    let leader = leader(&group).await;
    with_topic(&group, leader, "CppInterop").await;
    let args = [ns.local_addr().to_string(), "CppInterop".into(), "200".into()];
    let result = tokio::task::spawn_blocking(move || {
        rocketraft_tests::interop::run_python("cpp_e2e.py", &args)
    })
    .await
    .unwrap();
    assert_eq!(result, serde_json::json!({"sent": 200, "consumed": 200, "pulled": 200}));
    stop_group(group).await;
    ns.shutdown();
}

/// Retention removes old segments through a Raft purge and trims the queues afterwards. A pull
/// in between, at an offset whose record is gone, is sent on to the first message still
/// stored (PULL_RETRY_IMMEDIATELY with the next offset, as RocketMQ answers a message being
/// removed), not failed. The purge is done by hand and retention never runs, so the queue
/// is never trimmed here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_of_removed_messages_moves_to_what_is_stored() {
    let group = start_group_advertising(vec![], false, |c| {
        c.commit_log.segment_size_bytes = 1 << 16;
        c.retention_check_ms = 3_600_000;
    })
    .await;
    let mut l = leader(&group).await;
    let mut c = with_topic(&group, l, "Kept").await;
    let body = "x".repeat(1024);
    for _ in 0..300 {
        // A loaded machine may see an election early on: follow the leader.
        let mut tries = 0;
        loop {
            let r = c.call(send("Kept", 0, "t", &body)).await;
            if r.code == response_code::SUCCESS {
                break;
            }
            tries += 1;
            assert!(tries < 50, "{:?}", r.remark);
            tokio::time::sleep(Duration::from_millis(100)).await;
            l = leader(&group).await;
            c = Conn::connect(group[&l].broker.local_addr()).await;
        }
    }
    // Every replica snapshots and purges its own log, so whichever leads when we pull (a
    // loaded machine may elect another) has the removed history the test is about.
    for replica in group.values() {
        let raft = &replica.node.raft;
        raft.trigger().snapshot().await.unwrap();
        let m = raft
            .wait(Some(Duration::from_secs(20)))
            .metrics(|m| m.snapshot.is_some_and(|s| s.index >= 300), "snapshot")
            .await
            .unwrap();
        // openraft's purge, then the segments deleted by hand without the queue trim that
        // retention does next: the window this test is about.
        let index = m.snapshot.unwrap().index;
        raft.trigger().purge_log(index).await.unwrap();
        raft.wait(Some(Duration::from_secs(20)))
            .metrics(|m| m.purged.is_some(), "purged")
            .await
            .unwrap();
        let through = rocketraft_store::RaftIndex(index);
        replica.node.log.lock().unwrap().purge_through(through).unwrap();
    }

    // Only the master moves a reader (a follower leaves it where it is): ask the leader, and
    // ask again if it was deposed between the look-up and the pull.
    let mut tries = 0;
    let (mut c, h) = loop {
        let l = leader(&group).await;
        let mut c = Conn::connect(group[&l].broker.local_addr()).await;
        let r = c.call(pull("Kept", 0, 0, None, 0)).await;
        assert_eq!(r.code, response_code::PULL_RETRY_IMMEDIATELY, "{:?}", r.remark);
        let h: PullMessageResponseHeader = r.decode_header().unwrap();
        if r.remark.as_deref() == Some("NO_MATCHED_MESSAGE") {
            break (c, h);
        }
        tries += 1;
        assert!(tries < 50, "never reached the master: {:?}", r.remark);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(h.next_begin_offset > 0, "sent on past the removed messages");
    let r = c.call(pull("Kept", 0, h.next_begin_offset, None, 0)).await;
    assert_eq!(r.code, response_code::SUCCESS, "{:?}", r.remark);
    let records = decode_records(&r.body).unwrap();
    assert_eq!(records[0].queue_offset, h.next_begin_offset, "the first message still stored");
    stop_group(group).await;
}
