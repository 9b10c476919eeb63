//! Simulation tests, one module per theme.

mod wire {
    //! The remoting codec over madsim's simulated TCP: frames written in random chunk sizes
    //! arrive whole, in order, and each response echoes its request's opaque.
    //!
    //! ```text
    //!   client (10.0.0.2) --N requests, random sizes and serializations--> server (10.0.0.1:9876)
    //!   client <--------------- N responses (same opaque, same serialization) ---- server
    //! ```

    use bytes::BytesMut;
    use madsim::rand::Rng;
    use rocketraft_protocol::code::SerializeType;
    use rocketraft_protocol::frame::{encode_frame, FrameDecoder};
    use rocketraft_protocol::RemotingCommand;
    use rocketraft_sim::{replay_hint, TraceHash};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const REQUESTS: i32 = 200;

    async fn serve(addr: &str) {
        let listener = TcpListener::bind(addr).await.unwrap();
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        loop {
            if stream.read_buf(&mut buf).await.unwrap() == 0 {
                return;
            }
            while let Some(req) = decoder.decode(&mut buf).unwrap() {
                let resp = RemotingCommand::response_to(&req, 0, None).with_body(req.body.clone());
                let mut out = BytesMut::new();
                encode_frame(&resp, &mut out).unwrap();
                stream.write_all(&out).await.unwrap();
                // madsim's TCP sends only on flush (real tokio's flush is a no-op).
                stream.flush().await.unwrap();
            }
        }
    }

    /// Runs one exchange and returns the hash of everything the client saw.
    async fn exchange() -> u64 {
        let handle = madsim::runtime::Handle::current();
        let server = handle.create_node().name("server").ip("10.0.0.1".parse().unwrap()).build();
        server.spawn(serve("10.0.0.1:9876"));
        let client = handle.create_node().name("client").ip("10.0.0.2".parse().unwrap()).build();
        client
            .spawn(async move {
                madsim::time::sleep(std::time::Duration::from_millis(10)).await;
                let stream = TcpStream::connect("10.0.0.1:9876").await.unwrap();
                let (mut reader, mut writer) = tokio::io::split(stream);
                let mut rng = madsim::rand::thread_rng();
                let mut wire = BytesMut::new();
                let mut sent = Vec::new();
                let mut chunks = Vec::new();
                for opaque in 0..REQUESTS {
                    let body = vec![opaque as u8; rng.gen_range(0..3000)];
                    let mut req = RemotingCommand::request_without_header(11)
                        .with_opaque(opaque)
                        .with_body(body);
                    req.set_ext_field("queueId", opaque.to_string());
                    if rng.gen_bool(0.5) {
                        req.serialize_type = SerializeType::RocketMq;
                    }
                    encode_frame(&req, &mut wire).unwrap();
                    sent.push(req);
                }
                // Random chunk sizes so that frames straddle reads on the other side.
                while !wire.is_empty() {
                    let n = rng.gen_range(1..=wire.len().min(5000));
                    chunks.push(wire.split_to(n));
                }
                // Write from another task: the server answers while we still send.
                tokio::spawn(async move {
                    for chunk in chunks {
                        writer.write_all(&chunk).await.unwrap();
                        writer.flush().await.unwrap();
                    }
                });
                let mut decoder = FrameDecoder::default();
                let mut buf = BytesMut::new();
                let mut trace = TraceHash::default();
                // Virtual time under madsim: the ban on Instant::now guards real builds.
                #[allow(clippy::disallowed_methods)]
                let start = madsim::time::Instant::now();
                let mut got = 0;
                while got < REQUESTS {
                    assert!(reader.read_buf(&mut buf).await.unwrap() > 0, "server closed early");
                    while let Some(resp) = decoder.decode(&mut buf).unwrap() {
                        let req = &sent[got as usize];
                        assert!(resp.is_response());
                        assert_eq!(resp.opaque, req.opaque);
                        assert_eq!(resp.serialize_type, req.serialize_type);
                        assert_eq!(resp.body, req.body);
                        let now = start.elapsed().as_nanos();
                        trace.record(
                            format!("{} {} {now}", resp.opaque, resp.body.len()).as_bytes(),
                        );
                        got += 1;
                    }
                }
                trace.value()
            })
            .await
            .unwrap()
    }

    #[madsim::test]
    async fn frames_cross_simulated_tcp_whole_and_in_order() {
        let seed = madsim::runtime::Handle::current().seed();
        eprintln!("replay: {}", replay_hint("frames_cross_simulated_tcp_whole_and_in_order", seed));
        exchange().await;
    }

    /// The same seed gives the same trace hash: nothing in the codec path leaks nondeterminism.
    #[test]
    fn one_seed_twice_gives_one_trace() {
        let run = |seed: u64| {
            let rt =
                madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
            rt.block_on(exchange())
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8), "different seeds should draw different sizes");
    }
}

mod raft_failover {
    //! One broker group of three replicas under madsim, each on the simulated disk with
    //! in-memory metadata (they survive a kill, as files survive a process crash).
    //!
    //! ```text
    //!   n0 n1 n2 boot after seeded delays -> a leader is elected -> 20 writes commit
    //!   kill the leader -> a new leader (higher term) takes writes within 3 s
    //!   restart the old leader -> it catches up; all three logs byte-identical
    //! ```
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use madsim::rand::Rng;
    use madsim::runtime::Handle;
    use rocketraft_raft::{MemMeta, NodeConfig, RaftNode, RaftTiming, Request, TypeConfig};
    use rocketraft_sim::{replay_hint, TraceHash};
    use rocketraft_store::io::sim::SimStorage;
    use rocketraft_store::{CommitLog, CommitLogConfig, DispatchConfig, FlushMode};

    type Registry =
        Arc<Mutex<BTreeMap<u64, (openraft::Raft<TypeConfig>, Arc<Mutex<CommitLog<SimStorage>>>)>>>;

    /// Two election rounds (each at most 2 s of silence) and a commit.
    const FAILOVER_MAX: Duration = Duration::from_secs(6);
    /// DESIGN.md §5's target for a killed leader's group to take writes again.
    const FAILOVER_TARGET: Duration = Duration::from_secs(3);

    fn addr(id: u64) -> String {
        format!("10.0.1.{}:40911", id + 1)
    }

    fn config(id: u64) -> NodeConfig {
        NodeConfig {
            group: "broker-a".into(),
            id,
            peers: (0..3).map(|i| (i, addr(i))).collect(),
            timing: RaftTiming::default(),
            commit_log: CommitLogConfig { segment_size_bytes: 64 * 1024, ..Default::default() },
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
        }
    }

    fn write(n: u64) -> Request {
        Request::Metadata(vec![rocketraft_raft::MetaCommand::CommitOffsets(vec![
            rocketraft_raft::types::ConsumerOffset {
                group: "g".into(),
                topic: "t".into(),
                queue_id: 0,
                offset: n,
            },
        ])])
    }

    fn log_bytes(log: &Mutex<CommitLog<SimStorage>>) -> Vec<u8> {
        let log = log.lock().unwrap();
        log.bytes_between(log.start().position, log.end().position).unwrap()
    }

    async fn leader(registry: &Registry, not: Option<u64>) -> (u64, u64) {
        for _ in 0..200 {
            let handles: Vec<_> =
                registry.lock().unwrap().iter().map(|(id, (r, _))| (*id, r.clone())).collect();
            for (_, raft) in handles {
                let m = raft.metrics().borrow().clone();
                if let Some(l) = m.current_leader {
                    if Some(l) != not && registry.lock().unwrap().contains_key(&l) {
                        return (l, m.current_term);
                    }
                }
            }
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no leader within 10 s of simulated time");
    }

    /// The whole scenario; returns the trace hash of what it observed and the failover time.
    async fn scenario() -> (u64, Duration) {
        let handle = Handle::current();
        let registry: Registry = Arc::default();
        let disks: Vec<(SimStorage, MemMeta)> =
            (0..3).map(|_| (SimStorage::new(), MemMeta::new())).collect();
        let mut nodes = Vec::new();
        for id in 0..3u64 {
            let (disk, meta) = disks[id as usize].clone();
            let registry = registry.clone();
            let node = handle
                .create_node()
                .name(format!("n{id}"))
                .ip(format!("10.0.1.{}", id + 1).parse().unwrap())
                .init(move || {
                    let (disk, meta, registry) = (disk.clone(), meta.clone(), registry.clone());
                    async move {
                        // Without a seeded boot delay every seed elects the same first leader.
                        let delay = madsim::rand::thread_rng().gen_range(0..200);
                        madsim::time::sleep(Duration::from_millis(delay)).await;
                        let listener = tokio::net::TcpListener::bind(addr(id)).await.unwrap();
                        let node =
                            RaftNode::start(config(id), disk, meta, listener, None).await.unwrap();
                        registry.lock().unwrap().insert(id, (node.raft.clone(), node.log.clone()));
                        std::future::pending::<()>().await;
                    }
                })
                .build();
            nodes.push(node);
        }
        let mut trace = TraceHash::default();
        // Virtual time under madsim: the ban on Instant::now guards real builds.
        #[allow(clippy::disallowed_methods)]
        let t0 = madsim::time::Instant::now();

        let (first, term) = leader(&registry, None).await;
        trace.record(format!("leader {first} term {term} at {:?}", t0.elapsed()).as_bytes());
        let raft = registry.lock().unwrap()[&first].0.clone();
        for n in 0..20 {
            raft.client_write(write(n)).await.unwrap();
        }

        // Kill the leader: its tasks stop, its "disk" stays.
        handle.kill(nodes[first as usize].id());
        registry.lock().unwrap().remove(&first);
        let killed_at = t0.elapsed();
        let (second, term2) = leader(&registry, Some(first)).await;
        assert!(term2 > term, "a new term");
        let raft = registry.lock().unwrap()[&second].0.clone();
        raft.client_write(write(100)).await.unwrap();
        let failover = t0.elapsed() - killed_at;
        trace.record(format!("leader {second} term {term2} failover {failover:?}").as_bytes());
        // DESIGN.md targets 3 s; a split vote can need a second election round, so one seed is
        // only held to two rounds. The distribution over seeds is what `failover_report` prints.
        assert!(failover <= FAILOVER_MAX, "failover took {failover:?} of simulated time");
        eprintln!("failover (kill -> first acknowledged write): {failover:?} simulated");
        for n in 101..120 {
            raft.client_write(write(n)).await.unwrap();
        }

        // The old leader restarts from its disk and catches up.
        handle.restart(nodes[first as usize].id());
        let last = raft.metrics().borrow().last_log_index.unwrap();
        for _ in 0..200 {
            if registry.lock().unwrap().len() == 3 {
                break;
            }
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
        let handles: Vec<_> = registry.lock().unwrap().values().cloned().collect();
        // The leader may append meanwhile (it records the restarted replica's incarnation):
        // the logs are compared once every replica applied the leader's last entry as it is.
        let mut last = last;
        let mut bytes = Vec::new();
        for _ in 0..10 {
            for (r, _) in &handles {
                r.wait(Some(Duration::from_secs(30)))
                    .applied_index_at_least(Some(last), "caught up")
                    .await
                    .unwrap();
            }
            bytes = log_bytes(&handles[0].1);
            if handles.iter().all(|(_, log)| log_bytes(log) == bytes) {
                break;
            }
            madsim::time::sleep(Duration::from_millis(500)).await;
            last = raft.metrics().borrow().last_log_index.unwrap();
        }
        for (_, log) in &handles {
            assert!(log_bytes(log) == bytes, "replica logs differ");
        }
        trace.record(
            format!("caught up at {:?}, {} log bytes", t0.elapsed(), bytes.len()).as_bytes(),
        );
        (trace.value(), failover)
    }

    #[madsim::test]
    async fn leader_killed_new_leader_takes_writes_old_leader_rejoins() {
        let seed = Handle::current().seed();
        eprintln!(
            "replay: {}",
            replay_hint("leader_killed_new_leader_takes_writes_old_leader_rejoins", seed)
        );
        scenario().await;
    }

    /// One seed run twice gives one trace; another seed gives another.
    #[test]
    fn failover_is_deterministic() {
        let run = |seed: u64| {
            madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default())
                .block_on(scenario())
                .0
        };
        assert_eq!(run(11), run(11));
        let others: std::collections::BTreeSet<u64> = (12..16).map(run).collect();
        assert!(others.len() > 1, "different seeds should give different schedules");
    }

    /// Failover time (leader killed -> first acknowledged write) over 20 seeds: min, median,
    /// max, and how many meet DESIGN.md's 3 s target. Most must.
    #[test]
    fn failover_report() {
        let mut times: Vec<Duration> = (100..120)
            .map(|seed| {
                madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default())
                    .block_on(scenario())
                    .1
            })
            .collect();
        times.sort();
        let within = times.iter().filter(|t| **t <= FAILOVER_TARGET).count();
        eprintln!(
            "failover over {} seeds (simulated): min {:?}, median {:?}, max {:?}; {within} within {FAILOVER_TARGET:?}",
            times.len(),
            times[0],
            times[times.len() / 2],
            times[times.len() - 1]
        );
        assert!(times[times.len() / 2] <= FAILOVER_TARGET, "the median failover misses the target");
        assert!(within * 10 >= times.len() * 8, "fewer than 80 % of seeds meet the target");
    }
}

mod namesrv_eviction {
    //! The NameServer on madsim time, with a broker that registers every 30 s (DESIGN.md §6).
    //!
    //! ```text
    //!   broker-a registers at 0, 30, 60 s ... then is partitioned from the NameServer
    //!   -> still routed 119 s after its last registration, gone by 130 s (10 s scan, 120 s expiry)
    //!   broker-b registers, then its node is killed -> its connection closes -> gone at once
    //! ```
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bytes::BytesMut;
    use madsim::runtime::Handle;
    use rocketraft_namesrv::{NameServer, NamesrvConfig};
    use rocketraft_protocol::body::*;
    use rocketraft_protocol::frame::{encode_frame, FrameDecoder};
    use rocketraft_protocol::headers::*;
    use rocketraft_protocol::{request_code, response_code, RemotingCommand};
    use rocketraft_sim::replay_hint;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const NS: &str = "10.0.2.1:9876";

    async fn call(stream: &mut TcpStream, cmd: &RemotingCommand) -> Option<RemotingCommand> {
        let mut out = BytesMut::new();
        encode_frame(cmd, &mut out).unwrap();
        stream.write_all(&out).await.ok()?;
        stream.flush().await.ok()?;
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        loop {
            if let Some(c) = decoder.decode(&mut buf).unwrap() {
                return Some(c);
            }
            if stream.read_buf(&mut buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    fn register(name: &str, addr: &str, topic: &str) -> RemotingCommand {
        let body = RegisterBrokerBody {
            filter_server_list: vec![],
            topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
                data_version: DataVersion::default(),
                topic_config_table: [(topic.to_owned(), TopicConfig::new(topic, 4))].into(),
                ..Default::default()
            },
        }
        .to_json(JsonStyle::Standard);
        let header = RegisterBrokerRequestHeader {
            broker_name: name.into(),
            broker_addr: addr.into(),
            cluster_name: "DefaultCluster".into(),
            ha_server_addr: addr.into(),
            broker_id: 0,
            compressed: Some(false),
            body_crc32: Some(RegisterBrokerBody::crc32(&body)),
            raft_term: None,
            raft_leader: None,
        };
        RemotingCommand::request(request_code::REGISTER_BROKER, &header).with_body(body)
    }

    /// Asks the NameServer for a route from the client node.
    async fn routed(client: &madsim::runtime::NodeHandle, topic: &'static str) -> bool {
        client
            .spawn(async move {
                let mut s = TcpStream::connect(NS).await.unwrap();
                let req = RemotingCommand::request(
                    request_code::GET_ROUTEINFO_BY_TOPIC,
                    &GetRouteInfoRequestHeader {
                        topic: topic.into(),
                        accept_standard_json_only: None,
                    },
                );
                call(&mut s, &req).await.unwrap().code == response_code::SUCCESS
            })
            .await
            .unwrap()
    }

    /// A broker node that registers every 30 s; records when its last registration succeeded.
    fn broker(
        handle: &Handle,
        name: &'static str,
        ip: &str,
        topic: &'static str,
        last_ok: Arc<Mutex<Option<Duration>>>,
        t0: madsim::time::Instant,
    ) -> madsim::runtime::NodeHandle {
        let addr = format!("{ip}:10911");
        handle
            .create_node()
            .name(name)
            .ip(ip.parse().unwrap())
            .init(move || {
                let (addr, last_ok) = (addr.clone(), last_ok.clone());
                async move {
                    let mut stream = TcpStream::connect(NS).await.unwrap();
                    loop {
                        let sent = tokio::time::timeout(
                            Duration::from_secs(3),
                            call(&mut stream, &register(name, &addr, topic)),
                        )
                        .await;
                        if let Ok(Some(resp)) = sent {
                            assert_eq!(resp.code, response_code::SUCCESS);
                            *last_ok.lock().unwrap() = Some(t0.elapsed());
                        }
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                }
            })
            .build()
    }

    #[madsim::test]
    async fn a_silent_broker_is_routed_for_120_s_and_a_closed_one_not_at_all() {
        let handle = Handle::current();
        eprintln!(
            "replay: {}",
            replay_hint(
                "a_silent_broker_is_routed_for_120_s_and_a_closed_one_not_at_all",
                handle.seed()
            )
        );
        // Virtual time under madsim: the ban on Instant::now guards real builds.
        #[allow(clippy::disallowed_methods)]
        let t0 = madsim::time::Instant::now();
        handle
            .create_node()
            .name("namesrv")
            .ip("10.0.2.1".parse().unwrap())
            .init(|| async {
                let _ns =
                    NameServer::start(NamesrvConfig { listen: NS.into(), ..Default::default() })
                        .await
                        .unwrap();
                std::future::pending::<()>().await;
            })
            .build();
        let client = handle.create_node().name("client").ip("10.0.2.9".parse().unwrap()).build();
        madsim::time::sleep(Duration::from_millis(100)).await;
        let last_a = Arc::new(Mutex::new(None));
        let a = broker(&handle, "broker-a", "10.0.2.2", "TA", last_a.clone(), t0);

        tracing::info!("--- broker-a registers every 30 s, then is cut off from the NameServer");
        madsim::time::sleep(Duration::from_secs(65)).await;
        assert!(routed(&client, "TA").await);
        madsim::net::NetSim::current().clog_node(a.id());
        let last = last_a.lock().unwrap().expect("broker-a registered");
        assert!(last >= Duration::from_secs(60), "it registered at 60 s (last {last:?})");
        madsim::time::sleep((last + Duration::from_secs(119)).saturating_sub(t0.elapsed())).await;
        assert!(routed(&client, "TA").await, "still routed 119 s after its last registration");
        madsim::time::sleep(Duration::from_secs(11)).await;
        assert!(!routed(&client, "TA").await, "gone 130 s after its last registration");

        tracing::info!("--- broker-b registers, then its node dies: its connection closes");
        let last_b = Arc::new(Mutex::new(None));
        let b = broker(&handle, "broker-b", "10.0.2.3", "TB", last_b.clone(), t0);
        madsim::time::sleep(Duration::from_secs(1)).await;
        assert!(routed(&client, "TB").await);
        handle.kill(b.id());
        madsim::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !routed(&client, "TB").await,
            "a closed connection evicts at once, not after 120 s"
        );
    }
}

mod whole_cluster {
    //! The whole cluster of DESIGN.md §6 on madsim: 2 NameServers, 2 broker groups of 3
    //! replicas (simulated disks, sync flush), producers and consumers on the real client SDK.
    //! Every run records a history that the checkers of `rocketraft_sim::check` judge:
    //!
    //! ```text
    //!   ready -> topic T (4 queues on each group) -> 2 consumers of group G
    //!   -> 600 round-robin sends (10 ms apart) + a probe pinned to broker-a's queue 0 (50 ms)
    //!   -> at 2 s the fault hits broker-a (or a NameServer), healed 10 s later
    //!   -> drain, quiesce, judge: nothing acked lost, nothing unexpected, duplicates explained,
    //!      offsets never backwards, leader ids never backwards, replicas byte-identical
    //! ```
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use madsim::rand::Rng;
    use madsim::runtime::{Handle, Runtime};
    use rocketraft_raft::network::MessageFaults;
    use rocketraft_raft::node::SimBugs;
    use rocketraft_raft::Replication;
    use rocketraft_sim::check::{self, History};
    use rocketraft_sim::cluster::{broker_addr, group_name, SimCluster, Topology};
    use rocketraft_sim::workload;
    use rocketraft_sim::{replay_hint, TraceHash};

    const TOPIC: &str = "T";
    const GROUP: &str = "G";
    /// The delayed workload's topic, its consumer group, and a group that refuses each
    /// message once (so it comes back through the broker's retry topic).
    const DELAYED: &str = "D";
    const DELAYED_GROUP: &str = "DG";
    const RETRIED_GROUP: &str = "RG";
    /// A second consumer group, orderly: per-key order is checked on it.
    const ORDERLY: &str = "O";
    /// A group that starts consuming `TOPIC` only once the fault is healed, from the first
    /// offset: every acknowledged message must still be there (on whichever replica leads).
    const LATE_GROUP: &str = "L";
    /// The transactional workload's topic and its consumer group.
    const TX: &str = "X";
    const TX_GROUP: &str = "XG";
    /// The transactional producers: the first crashes early in the run (ids from 0), the
    /// second runs throughout (ids from this one) and answers the check-backs of both.
    const TX_SURVIVOR_FIRST: u32 = 1_000;
    /// When the fault hits, and how long until it is healed (simulated).
    const FAULT_AT: Duration = Duration::from_secs(2);
    const FAULT_FOR: Duration = Duration::from_secs(10);

    /// What goes wrong in a run.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fault {
        /// broker-a's leader is killed, and restarted when healed.
        KillLeader,
        /// broker-a's leader is cut off the network (it must stop acknowledging).
        IsolateLeader,
        /// broker-a's leader is cut off its peers only: clients and NameServers still reach it,
        /// so it keeps taking sends it cannot replicate.
        PartitionLeaderFromPeers,
        /// One follower of broker-a is cut off (a 2/1 split: the majority goes on).
        IsolateFollower,
        /// All three replicas of broker-a are cut off from each other (1/1/1: no quorum).
        SplitAll,
        /// broker-a's leader loses power: unsynced writes gone, the last one torn.
        PowerLossLeader,
        /// All of broker-a loses power at once.
        PowerLossAll,
        /// broker-a's leader loses power, every write not synced gone, at a moment its
        /// metadata store holds a transaction's outcome not yet durable (aimed, within 5 s):
        /// it must apply the entry again after its restart, 1 s later (outcomes are written
        /// once).
        PowerLossLeaderWithLazyMetadata,
        /// broker-a's leader is killed; as soon as another replica leads, all of broker-a
        /// loses power, every write not synced gone: votes given in that election must
        /// survive it (a replica's term never goes back).
        ElectionThenPowerLossAll,
        /// broker-a's disks turn slow (every CommitLog sync takes [`SLOW_SYNC_MS`] longer);
        /// 2 s later all of broker-a loses power at once, every write not synced gone on every
        /// replica (the worst a power loss can do): the slow syncs widen the window between a
        /// write and its sync, where an acknowledgement must not fall.
        SlowDisksThenPowerLossAll,
        /// As [`Fault::SlowDisksThenPowerLossAll`], aimed at a replica that applied what its
        /// group then loses: one follower's disk stays fast while the other two sync
        /// [`AHEAD_SLOW_SYNC_MS`] late; after the power loss the two restart first, elect and
        /// write, and the fast one comes back to a log that replaced entries it applied.
        OneDiskAheadThenPowerLossAll,
        /// As [`Fault::SlowDisksThenPowerLossAll`], 12 s later: once the delayed and
        /// transactional workloads are done, so few entries change metadata (whose apply syncs
        /// the log first) and the probe's sends are most of what the group writes.
        QuietThenSlowDisksThenPowerLossAll,
        /// NameServer 0 is killed, and restarted when healed (clients use NameServer 1).
        KillNamesrv,
        /// broker-a's leader is paused (frozen, connections kept) longer than an election
        /// takes, then resumed: a deposed leader must not acknowledge anything.
        PauseLeader,
        /// One follower of broker-a syncs slowly (every CommitLog sync takes
        /// [`SLOW_SYNC_MS`] longer); 3 s later the leader is killed, so every commit needs the
        /// slow disk until the leader is restarted (when healed, with the disk).
        SlowFollowerThenKillLeader,
        /// A follower of broker-a is killed; meanwhile the others snapshot and purge their logs
        /// (logically: no segment is deleted), so restarted it catches up by a snapshot; then
        /// it is made to lead. A consumer group that starts afterwards reads every message
        /// from the first offset off it: the history before the snapshot must be there.
        FollowerRestoredBySnapshotLeads,
        /// broker-a's leader hears nothing for half the fault (its heartbeats still reach its
        /// followers, so they elect no one, and no answer reaches it: nothing commits), then is
        /// heard by no one for the other half (its followers elect; clients' sends to it are
        /// lost on the way back). Asymmetric partitions, clients and NameServers included.
        AsymmetricLeader,
        /// A follower of broker-a is killed; 5 s later a bit flips in the leader's copy of an
        /// entry of the workload's topic among its last 30, which the follower lacks (synced, a
        /// bad sector), and
        /// the follower is restarted: the leader's read of that entry to replicate it (or a
        /// consumer's, at the latest the late group's) fails its crc, the leader quarantines
        /// itself and stops, and the third replica, whose copy is sound,
        /// leads and brings the follower up to date. Nothing acknowledged is lost.
        DamagedEntryOnLeader,
        /// Every message between any two nodes takes
        /// [`rocketraft_sim::cluster::SPIKE_LATENCY`] (past the heartbeat: AppendEntries time
        /// out, elections start, clients' calls time out).
        LatencySpike,
        /// broker-a's replicas' clocks are stepped, one at a time, each restarted so its broker
        /// reads its stepped clock, and made to lead, while the delayed and transactional
        /// workloads run: first a follower an hour ahead ([`CLOCK_STEP_MS`]), then the other
        /// follower an hour behind, then the replica whose clock is right. The group's time
        /// must not run backwards at any handover (store timestamps, parked messages coming
        /// due, half messages checked back).
        ClockSteps,
        /// broker-a's leadership is handed on under load, four times, each to the next replica
        /// by id, by the admin call `rocketraft cluster transfer-leader` makes: each must land
        /// on the replica named, and the probe's sends go on without an election's gap.
        TransferLeader,
        /// broker-a (3 replicas and 2 spares) changes its membership under load, by the admin
        /// calls `rocketraft cluster add-replica` and `remove-replica` make: spare 3 is added
        /// while its leader is killed mid-change; spare 4 is added while it is killed and
        /// restarted as it catches up; then two of the first three are removed (leadership
        /// moved off them first), leaving three voters, two of them new.
        Membership,
        /// A follower of broker-a is cut off its peers while the other two commit; then the
        /// leader and the other follower are killed, the latter's data is wiped and it starts
        /// again on an empty directory, and the cut one is healed. The wiped replica must be
        /// refused (it would vote the cut one in, which lacks what the other two committed):
        /// the group waits for the old leader; then the wiped replica is removed and added
        /// again, as an operator repairs it.
        WipedFollower,
        /// A follower of broker-a is killed, removed from the group while it is down, and
        /// restarted on its data: it still finds itself a voter of the membership it last
        /// applied, but no leader calls it; it must not be routed (its log falls behind) nor
        /// unseat the group's leader.
        RemovedWhileDown,
        /// Faults drawn from the seed: 3 of the above at random times, then healed.
        Swarm,
    }

    /// The longest broker-a went without acknowledging a probe send, from `from` to `to`
    /// (since the run's start).
    fn probe_gap(o: &Outcome, from: Duration, to: Duration) -> Duration {
        let mut acks: Vec<Duration> = o
            .probe_acks
            .iter()
            .map(|(_, acked)| *acked)
            .filter(|a| *a >= from && *a <= to)
            .collect();
        acks.sort();
        acks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(to - from)
    }

    /// How far [`Fault::ClockSteps`] steps a replica's clock (back, then another's ahead).
    const CLOCK_STEP_MS: i64 = 3_600_000;

    /// The slow disks' extra time per sync in [`Fault::OneDiskAheadThenPowerLossAll`]: most of
    /// a flush interval, so the fast disk is durably ahead of the others most of the time.
    const AHEAD_SLOW_SYNC_MS: u64 = 400;

    /// A slow disk's extra time per sync: below the 250 ms heartbeat that bounds an
    /// AppendEntries call (a slower one is issue 20's "slow followers").
    const SLOW_SYNC_MS: u64 = 120;

    fn banner(test: &str) {
        eprintln!("replay: {}", replay_hint(test, Handle::current().seed()));
        // RUST_LOG=rocketraft_client=debug ... shows the clients' side of a failing seed.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }

    #[allow(clippy::disallowed_methods)] // virtual time under madsim
    fn now() -> madsim::time::Instant {
        madsim::time::Instant::now()
    }

    /// Every check of a finished, healed and drained run, by the rules of `replication`: under
    /// `Replication::Leader` a failover may lose acknowledged sends and give their queue offsets
    /// again (what that mode documents); every other check holds in both modes.
    /// Which acknowledged sends a run may lose.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum MayLose {
        /// None: quorum replication, where a committed entry is on a majority (on disk, in sync
        /// flush) before its send is acknowledged.
        Nothing,
        /// Any: `replication = "leader"`, where a failover loses what only the leader had.
        Any,
        /// Those acknowledged from this many ms after the run's start on: async flush, whose
        /// writes reach the disk within one flush interval, and a power loss of the whole
        /// group one interval after that.
        AckedFrom(i64),
    }

    impl MayLose {
        /// What `replication` and async flush's power losses allow in a run of `fault`.
        fn of(topology: &Topology, fault: Fault, fault_at: Duration) -> Self {
            if topology.replication == Replication::Leader {
                return MayLose::Any;
            }
            match (topology.flush, fault) {
                (
                    rocketraft_store::FlushMode::Async { interval_ms },
                    Fault::PowerLossAll
                    | Fault::SlowDisksThenPowerLossAll
                    | Fault::OneDiskAheadThenPowerLossAll
                    | Fault::QuietThenSlowDisksThenPowerLossAll,
                ) => MayLose::AckedFrom(fault_at.as_millis() as i64 - interval_ms as i64),
                _ => MayLose::Nothing,
            }
        }
    }

    /// The acknowledged sends of `lost` that `may_lose` does not allow to be lost.
    fn not_allowed(h: &History, lost: Vec<String>, may_lose: MayLose) -> Vec<String> {
        let from = match may_lose {
            MayLose::Nothing => return lost,
            MayLose::Any => return Vec::new(),
            MayLose::AckedFrom(from) => from,
        };
        let acked_at = acked_at(h);
        lost.into_iter()
            .filter(|id| acked_at.get(id.as_str()).is_none_or(|at| *at < from))
            .collect()
    }

    /// `lost` but the messages retention may have deleted before the group read them: stored
    /// in `topic` below the furthest start its queue had on any replica (see
    /// [`SimCluster::observe_retention`]). `stored` says where each message is in `topic`.
    fn not_retained(
        cluster: &SimCluster,
        topic: &str,
        stored: &std::collections::BTreeMap<&str, (&check::Queue, i64)>,
        lost: Vec<String>,
    ) -> Vec<String> {
        let group_of = |name: &str| (0..cluster.topology.groups).find(|g| group_name(*g) == name);
        lost.into_iter()
            .filter(|id| {
                let Some(((broker, q), offset)) = stored.get(id.as_str()) else { return true };
                group_of(broker).is_none_or(|g| {
                    u64::try_from(*offset).unwrap_or(0) >= cluster.retained_from(g, topic, *q)
                })
            })
            .collect()
    }

    /// Where each acknowledged plain send is stored in `TOPIC`.
    fn stored_plain(h: &History) -> std::collections::BTreeMap<&str, (&check::Queue, i64)> {
        h.events
            .iter()
            .filter_map(|e| match e {
                check::Event::Sent {
                    id,
                    outcome: check::SendOutcome::Acked { queue, offset, .. },
                } => Some((id.as_str(), (queue, *offset))),
                _ => None,
            })
            .collect()
    }

    /// Where each delayed message's copy in `DELAYED` is stored, as the delayed group (which
    /// reads every one of them at its first delivery) saw it, or else as a replica's queue
    /// showed it ([`SimCluster::observe_stored`]: a copy retention deleted unread).
    fn stored_delayed(h: &History) -> std::collections::BTreeMap<&str, (&check::Queue, i64)> {
        let mut stored = std::collections::BTreeMap::new();
        for e in &h.events {
            match e {
                check::Event::Moved { group, id, queue, offset, .. } if group == DELAYED_GROUP => {
                    stored.entry(id.as_str()).or_insert((queue, *offset));
                }
                // Moved but deleted by retention before a consumer read it.
                check::Event::Stored { id, queue, offset } => {
                    stored.entry(id.as_str()).or_insert((queue, *offset));
                }
                _ => {}
            }
        }
        stored
    }

    /// The lost messages of `group` but those it sent back within the window `may_lose`
    /// allows: the copy a consumer sends back (to be delivered to it again) is a write like a
    /// send, which async flush may lose when a whole group loses power within one flush
    /// interval of it; the consumer, whose position is past the original, never sees it again.
    fn sent_back_in_window(
        h: &History,
        group: &str,
        lost: Vec<String>,
        may_lose: MayLose,
    ) -> Vec<String> {
        let MayLose::AckedFrom(from) = may_lose else { return lost };
        // Only those sent back before the power loss: one sent back after it was not lost by it.
        let Some(loss) = h.events.iter().rev().find_map(|e| match e {
            check::Event::PowerLoss { at_ms } => Some(*at_ms),
            _ => None,
        }) else {
            return lost;
        };
        let late: std::collections::BTreeSet<&str> = h
            .events
            .iter()
            .filter_map(|e| match e {
                check::Event::SentBack { group: g, id, at_ms }
                    if g == group && (from..=loss).contains(at_ms) =>
                {
                    Some(id.as_str())
                }
                _ => None,
            })
            .collect();
        lost.into_iter().filter(|id| !late.contains(id.as_str())).collect()
    }

    /// When each acknowledged send was acknowledged (ms since the run's start).
    fn acked_at(h: &History) -> std::collections::BTreeMap<&str, i64> {
        h.events
            .iter()
            .filter_map(|e| match e {
                check::Event::Sent { id, outcome: check::SendOutcome::Acked { at_ms, .. } } => {
                    Some((id.as_str(), *at_ms))
                }
                _ => None,
            })
            .collect()
    }

    /// Whether the messages named by one queue offset are explained by a loss `may_lose`
    /// allows: the first of them (by `time`: its acknowledgement, or for a moved copy its
    /// first delivery) is one the group was allowed to lose, and the offset was given again.
    fn given_again_allowed(
        ids: &std::collections::BTreeSet<String>,
        time: impl Fn(&str) -> Option<i64>,
        may_lose: MayLose,
    ) -> bool {
        match may_lose {
            MayLose::Nothing => false,
            MayLose::Any => true,
            MayLose::AckedFrom(from) => ids.iter().filter_map(|id| time(id)).min() >= Some(from),
        }
    }

    fn judge(
        h: &History,
        cluster: &SimCluster,
        may_lose: MayLose,
    ) -> Result<check::Duplicates, String> {
        // A replica stopped on a fatal error is a bug, but for two: a replica that applied
        // entries its group then lost (async flush and a power loss of the group) must stop,
        // since it cannot follow a log that differs from what it applied; and one whose disk
        // the run damaged must quarantine itself once a read meets the damage.
        for ((g, r), why) in cluster.stopped_on_fatal() {
            let lost_applied = why.contains("its group lost committed entries");
            let quarantined = why.contains("quarantined") && cluster.was_corrupted(g, r);
            let allowed =
                quarantined || (lost_applied && matches!(may_lose, MayLose::AckedFrom(_)));
            if !allowed {
                return Err(format!("{}-{r} stopped on a fatal error: {why}", group_name(g)));
            }
        }
        // The group's time never runs backwards: store timestamps grow in log order, whichever
        // replica stamped them and however its clock was set. One replica a group is read
        // (the quiesce check compares the others' bytes with it); not one whose disk the run
        // damaged (the read would quarantine it).
        for g in 0..2 {
            let sound = |r: &u64| !cluster.was_corrupted(g, *r);
            let Some(r) = cluster.leader(g).filter(sound).or_else(|| (0..3).find(sound)) else {
                continue;
            };
            if let Some((index, newest, stamp)) = cluster.stamps_backwards(g, r)? {
                return Err(format!(
                    "{}-{r}: store timestamps go backwards at entry {index}: {stamp} after {newest}",
                    group_name(g)
                ));
            }
        }
        cluster.observe_retention(TOPIC, 4);
        cluster.observe_retention(DELAYED, 2);
        let (plain, delayed) = (stored_plain(h), stored_delayed(h));
        for group in [GROUP, ORDERLY, LATE_GROUP] {
            let lost = not_allowed(h, check::lost(h, group), may_lose);
            let lost = not_retained(cluster, TOPIC, &plain, lost);
            if !lost.is_empty() {
                let queues: std::collections::BTreeSet<_> = h
                    .events
                    .iter()
                    .filter_map(|e| match e {
                        check::Event::Sent {
                            id,
                            outcome: check::SendOutcome::Acked { queue, .. },
                        } if lost.contains(id) => Some(queue.clone()),
                        _ => None,
                    })
                    .collect();
                return Err(format!(
                    "{} acknowledged sends never consumed by {group} (queues {queues:?}): {:?}",
                    lost.len(),
                    &lost[..lost.len().min(10)]
                ));
            }
        }
        for group in [DELAYED_GROUP, RETRIED_GROUP] {
            let lost = not_allowed(h, check::lost_delayed(h, group), may_lose);
            let lost = sent_back_in_window(h, group, lost, may_lose);
            let lost = not_retained(cluster, DELAYED, &delayed, lost);
            if !lost.is_empty() {
                return Err(format!(
                    "{} acknowledged delayed sends never consumed by {group}: {:?}",
                    lost.len(),
                    &lost[..lost.len().min(10)]
                ));
            }
        }
        let lost = not_allowed(h, check::lost_transactions(h, TX_GROUP), may_lose);
        if !lost.is_empty() {
            return Err(format!(
                "{} transactions to commit, half message acknowledged, never consumed by {TX_GROUP}: {:?}",
                lost.len(),
                &lost[..lost.len().min(10)]
            ));
        }
        let rolled_back = check::rolled_back_delivered(h);
        if !rolled_back.is_empty() {
            return Err(format!("rolled-back transactions delivered: {rolled_back:?}"));
        }
        moved_copies(h, TX_GROUP, "transactions committed twice (half messages)", may_lose)?;
        let unresolved = check::unresolved(h);
        if !unresolved.is_empty() {
            return Err(format!(
                "half messages never resolved (broker, id, half offset): {unresolved:?}"
            ));
        }
        // A leader whose clock was stepped ahead moves the group's time forward: messages
        // parked before it led come due early by up to the step (nothing can tell its clock
        // from a right one). Earlier than that is a bug.
        let moved_by: std::collections::BTreeMap<&str, usize> = h
            .events
            .iter()
            .filter_map(|e| match e {
                check::Event::Moved { id, queue, .. } => {
                    Some((id.as_str(), usize::from(queue.0 != group_name(0))))
                }
                _ => None,
            })
            .collect();
        let ahead = |id: &str| moved_by.get(id).map_or(0, |g| cluster.clock_ahead_max_ms(*g));
        let early: Vec<_> =
            check::early(h).into_iter().filter(|(id, at, due)| due - at > ahead(id)).collect();
        if !early.is_empty() {
            return Err(format!("delayed messages delivered early (id, at, due): {early:?}"));
        }
        moved_copies(h, DELAYED_GROUP, "parked messages moved twice", may_lose)?;
        // The probe's sends share one key: the orderly group must see them in send order,
        // except sends stored at a queue offset given again after an allowed loss: the
        // consumer's own position, past the lost messages, may have skipped them at first
        // (found again once it is moved back).
        let acked_at = acked_at(h);
        let given_again: std::collections::BTreeSet<String> = check::inconsistent_offsets(h)
            .into_iter()
            .filter(|(_, _, ids)| {
                given_again_allowed(ids, |id| acked_at.get(id).copied(), may_lose)
            })
            .flat_map(|(_, _, ids)| ids)
            .collect();
        let order = check::order_violations(h, ORDERLY, |id| given_again.contains(id));
        if !order.is_empty() {
            return Err(format!("orderly group saw a key out of order: {order:?}"));
        }
        // The simulated brokers' own (defaults).
        let bounds = rocketraft_broker::BrokerConfig::new("bounds", "127.0.0.1:0".parse().unwrap());
        let over =
            check::pulls_over_bounds(h, bounds.pull_batch_max as usize, bounds.pull_bytes_max);
        if !over.is_empty() {
            return Err(format!(
                "pulls over the brokers' bounds: {:?}",
                &over[..over.len().min(5)]
            ));
        }
        let breaks = consumption_breaks(h, cluster, may_lose);
        if !breaks.is_empty() {
            return Err(format!(
                "consumers skipped or went back ({}): {:?}",
                breaks.len(),
                &breaks[..breaks.len().min(5)]
            ));
        }
        let unexpected = check::unexpected(h);
        if !unexpected.is_empty() {
            return Err(format!("delivered but never (successfully) sent: {unexpected:?}"));
        }
        let dups = check::duplicates(h, GROUP);
        if dups.unexplained > 0 {
            return Err(format!("unexplained duplicates: {dups:?}"));
        }
        // Raft's own invariants, observed every 100 ms (B.5 #3-#6, #22): async flush may lose
        // applied entries in a whole-group power loss (#3), and a replica that applied them
        // differs from the others at one index until it stops (#22); nothing else may.
        cluster.observe_raft();
        let raft: Vec<_> = cluster
            .raft_violations()
            .into_iter()
            .filter(|(n, _)| !((*n == 3 || *n == 22) && matches!(may_lose, MayLose::AckedFrom(_))))
            .collect();
        if !raft.is_empty() {
            return Err(format!(
                "Raft invariants broken (B.5 number, what): {:?}",
                &raft[..raft.len().min(5)]
            ));
        }
        let splits = check::split_brains(h);
        if !splits.is_empty() {
            return Err(format!(
                "a replica went back to an older leader id (broker, replica, (term, node) \
                 from, to): {splits:?}"
            ));
        }
        let mut incons = check::inconsistent_offsets(h);
        incons.retain(|(_, _, ids)| {
            !given_again_allowed(ids, |id| acked_at.get(id).copied(), may_lose)
        });
        if !incons.is_empty() {
            return Err(format!("one queue offset, two messages: {incons:?}"));
        }
        let back = check::offset_regressions(h);
        if !back.is_empty() {
            return Err(format!("committed offsets went backwards: {back:?}"));
        }
        replicas_diverge(cluster)?;
        Ok(dups)
    }

    /// B.5 #7 and #22 at quiesce: every replica of a group holds the leader's applied index,
    /// log bytes and replicated metadata.
    fn replicas_diverge(cluster: &SimCluster) -> Result<(), String> {
        for g in 0..cluster.topology.groups {
            let leader = cluster.leader(g).ok_or(format!("{} has no leader", group_name(g)))?;
            // A follower whose disk the run damaged and that never read the damaged entry
            // holds it still: its bytes differ, and a read of them must fail its check.
            let mut states = cluster.replica_states(g);
            states.retain(|s| {
                s.id == leader
                    || !cluster.was_corrupted(g, s.id)
                    || !cluster.damage_caught_on_read(g, s.id)
            });
            let diverge = check::replicas_diverge(leader, &states);
            if !diverge.is_empty() {
                return Err(format!("{}: {diverge:?}", group_name(g)));
            }
        }
        Ok(())
    }

    /// B.5 #18 on the plain workload's consumers (see [`check::consumption_breaks`]): none skips
    /// or goes back while it holds a queue. Not judged where acknowledged sends may be lost: a
    /// queue offset is then given again, and a consumer past it is moved back.
    fn consumption_breaks(h: &History, cluster: &SimCluster, may_lose: MayLose) -> Vec<String> {
        if may_lose != MayLose::Nothing {
            return Vec::new();
        }
        cluster.observe_retention(TOPIC, 4);
        let group_of = |name: &str| (0..cluster.topology.groups).find(|g| group_name(*g) == name);
        let retained_from = |(broker, q): &check::Queue| {
            group_of(broker).map_or(0, |g| cluster.retained_from(g, TOPIC, *q) as i64)
        };
        let mut breaks = check::consumption_breaks(h, retained_from);
        if !h.events.iter().any(|e| matches!(e, check::Event::Taken { .. })) {
            breaks.push("no consumer recorded taking a queue: the check would be vacuous".into());
        }
        breaks
    }

    /// The checks of records the broker moved (delayed messages, committed transactions), as
    /// `group` received them: no origin moved twice (`twice` names that failure), one message
    /// per queue offset (unless the run was allowed to lose acknowledged sends and did), no
    /// unexplained duplicate.
    fn moved_copies(
        h: &History,
        group: &str,
        twice: &str,
        may_lose: MayLose,
    ) -> Result<(), String> {
        let mut first_moved: std::collections::BTreeMap<&str, i64> = Default::default();
        // Each origin's first copy as the consumer saw it: when, and where.
        let mut origin_first: std::collections::BTreeMap<&str, (i64, &check::Queue, i64)> =
            Default::default();
        for e in &h.events {
            if let check::Event::Moved { group: g, id, origin, queue, offset, at_ms } = e {
                if g == group {
                    first_moved.entry(id.as_str()).or_insert(*at_ms);
                    origin_first.entry(origin.as_str()).or_insert((*at_ms, queue, *offset));
                }
            }
        }
        // A run allowed to lose acknowledged sends to a power loss of the whole group (async
        // flush) may lose a move the consumer had already seen: the broker then moves the
        // record again, as a producer sends again a send it lost. Allowed only when the first
        // copy was seen inside the window the run may lose and was lost indeed (its queue
        // offset was given to another message after it); any other second move is a bug, in
        // every mode.
        let given_twice: std::collections::BTreeSet<(check::Queue, i64)> =
            check::inconsistent_delayed_offsets(h, group)
                .into_iter()
                .map(|(q, o, _)| (q, o))
                .collect();
        let mut moved = check::moved_twice(h, group);
        moved.retain(|origin| {
            let Some(&(first_at, queue, offset)) = origin_first.get(origin.as_str()) else {
                return true;
            };
            let lost = given_twice.contains(&(queue.clone(), offset));
            !matches!(may_lose, MayLose::AckedFrom(from) if first_at >= from && lost)
        });
        if !moved.is_empty() {
            return Err(format!("{twice}: {moved:?}"));
        }
        let mut incons = check::inconsistent_delayed_offsets(h, group);
        incons.retain(|(_, _, ids)| {
            !given_again_allowed(ids, |id| first_moved.get(id).copied(), may_lose)
        });
        if !incons.is_empty() {
            return Err(format!("{group}: one queue offset, two messages: {incons:?}"));
        }
        let dups = check::duplicates(h, group);
        if dups.unexplained > 0 {
            return Err(format!("{group}: unexplained duplicates: {dups:?}"));
        }
        Ok(())
    }

    /// What a run gives back.
    struct Outcome {
        /// Judged by the rules of the run's replication mode.
        verdict: Result<check::Duplicates, String>,
        /// Judged by quorum replication's rules, whatever the mode.
        strict: Result<check::Duplicates, String>,
        /// Acknowledged sends never consumed, and queue offsets that named two messages.
        lost: usize,
        offsets_given_twice: usize,
        /// Fault -> first acknowledged probe send to broker-a after it (for leader faults).
        failover: Option<Duration>,
        /// When the fault started, and each acknowledged probe send's (start, ack) times,
        /// all since the run's start.
        fault_at: Duration,
        probe_acks: Vec<(Duration, Duration)>,
        /// Replicas stopped on a fatal error at the end, with the error.
        stopped: std::collections::BTreeMap<(usize, u64), String>,
        /// Running replicas whose log no longer starts where it began, at the end.
        trimmed: usize,
        /// The Raft invariants broken in the run (B.5 number, what).
        raft_violations: Vec<check::RaftViolation>,
        /// Consumers that skipped or went back while holding a queue (B.5 #18).
        breaks: Vec<String>,
        /// How many segments the longest log of a running replica reaches into, at the end.
        segments: u64,
        trace: u64,
    }

    /// Applies `fault` (at its time) and heals it `FAULT_FOR` later.
    async fn inject(cluster: &SimCluster, fault: Fault) {
        match fault {
            Fault::KillLeader | Fault::PowerLossLeader => {
                let leader = cluster.leader(0).expect("broker-a has a leader");
                cluster.kill(0, leader);
                if fault == Fault::PowerLossLeader {
                    let seed = madsim::rand::thread_rng().gen();
                    cluster.power_loss(0, leader, seed);
                }
                madsim::time::sleep(FAULT_FOR).await;
                cluster.restart(0, leader);
            }
            Fault::IsolateLeader => {
                let leader = cluster.leader(0).expect("broker-a has a leader");
                cluster.isolate(0, leader, true);
                madsim::time::sleep(FAULT_FOR).await;
                cluster.isolate(0, leader, false);
            }
            Fault::IsolateFollower => {
                let leader = cluster.leader(0).expect("broker-a has a leader");
                let follower = (0..3).find(|r| *r != leader).unwrap();
                cluster.isolate(0, follower, true);
                madsim::time::sleep(FAULT_FOR).await;
                cluster.isolate(0, follower, false);
            }
            Fault::PartitionLeaderFromPeers => {
                let leader = cluster.leader(0).expect("broker-a has a leader");
                cluster.cut_from_peers(0, leader, true);
                madsim::time::sleep(FAULT_FOR).await;
                cluster.cut_from_peers(0, leader, false);
            }
            Fault::SplitAll => {
                for r in 0..3 {
                    cluster.isolate(0, r, true);
                }
                madsim::time::sleep(FAULT_FOR).await;
                for r in 0..3 {
                    cluster.isolate(0, r, false);
                }
            }
            Fault::PowerLossAll
            | Fault::SlowDisksThenPowerLossAll
            | Fault::QuietThenSlowDisksThenPowerLossAll => {
                if fault == Fault::QuietThenSlowDisksThenPowerLossAll {
                    madsim::time::sleep(Duration::from_secs(12)).await;
                }
                let slow = fault != Fault::PowerLossAll;
                if slow {
                    for r in 0..3 {
                        cluster.slow_disk(0, r, SLOW_SYNC_MS);
                    }
                    madsim::time::sleep(Duration::from_secs(2)).await;
                    // Aimed: the power goes while the leader has applied (so acknowledged)
                    // an entry no replica synced yet, if that happens within 2 s (it cannot
                    // without a bug that acknowledges before fsync: then the power goes after
                    // the 2 s).
                    for _ in 0..2_000 {
                        if cluster.applied_but_synced_nowhere(0) {
                            break;
                        }
                        madsim::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                for r in 0..3 {
                    cluster.kill(0, r);
                    if slow {
                        cluster.power_loss_dropping_unsynced(0, r);
                        cluster.slow_disk(0, r, 0);
                    } else {
                        let seed = madsim::rand::thread_rng().gen();
                        cluster.power_loss(0, r, seed);
                    }
                }
                madsim::time::sleep(FAULT_FOR).await;
                for r in 0..3 {
                    cluster.restart(0, r);
                }
            }
            Fault::PowerLossLeaderWithLazyMetadata => {
                let leader = cluster.leader(0).expect("broker-a has a leader");
                for _ in 0..5_000 {
                    if cluster.metas[&(0, leader)].pending_puts(b"txn-done/") > 0 {
                        break;
                    }
                    madsim::time::sleep(Duration::from_millis(1)).await;
                }
                cluster.kill(0, leader);
                cluster.power_loss_dropping_unsynced(0, leader);
                // Back soon, so it catches up from its own log (a snapshot from its leader
                // would replace its metadata whole).
                madsim::time::sleep(Duration::from_secs(1)).await;
                cluster.restart(0, leader);
            }
            Fault::ElectionThenPowerLossAll => {
                let old = cluster.leader(0).expect("broker-a has a leader");
                cluster.kill(0, old);
                for _ in 0..1_000 {
                    if cluster.leader(0).is_some_and(|l| l != old) {
                        break;
                    }
                    madsim::time::sleep(Duration::from_millis(10)).await;
                }
                // The new term seen before the power goes.
                cluster.observe_raft();
                for r in 0..3 {
                    if r != old {
                        cluster.kill(0, r);
                    }
                    cluster.power_loss_dropping_unsynced(0, r);
                }
                madsim::time::sleep(FAULT_FOR).await;
                for r in 0..3 {
                    cluster.restart(0, r);
                }
            }
            Fault::OneDiskAheadThenPowerLossAll => {
                let leader = cluster.leader(0).expect("broker-a has a leader");
                let ahead = (0..3).find(|r| *r != leader).unwrap();
                for r in (0..3).filter(|r| *r != ahead) {
                    cluster.slow_disk(0, r, AHEAD_SLOW_SYNC_MS);
                }
                madsim::time::sleep(Duration::from_secs(2)).await;
                for r in 0..3 {
                    cluster.kill(0, r);
                    cluster.power_loss_dropping_unsynced(0, r);
                    cluster.slow_disk(0, r, 0);
                }
                madsim::time::sleep(FAULT_FOR).await;
                for r in (0..3).filter(|r| *r != ahead) {
                    cluster.restart(0, r);
                }
                // They elect a leader and write (the probe's sends) before the third is back.
                madsim::time::sleep(Duration::from_secs(4)).await;
                cluster.restart(0, ahead);
            }
            Fault::KillNamesrv => {
                cluster.kill_namesrv(0);
                madsim::time::sleep(FAULT_FOR).await;
                cluster.restart_namesrv(0);
            }
            Fault::PauseLeader => {
                let leader = cluster.leader(0).expect("broker-a has a leader");
                cluster.pause(0, leader, true);
                madsim::time::sleep(FAULT_FOR).await;
                cluster.pause(0, leader, false);
            }
            Fault::SlowFollowerThenKillLeader => {
                let leader = cluster.leader(0).expect("broker-a has a leader");
                let slow = (0..3).find(|r| *r != leader).unwrap();
                cluster.slow_disk(0, slow, SLOW_SYNC_MS);
                let before_kill = Duration::from_secs(3);
                madsim::time::sleep(before_kill).await;
                cluster.kill(0, leader);
                madsim::time::sleep(FAULT_FOR - before_kill).await;
                cluster.restart(0, leader);
                cluster.slow_disk(0, slow, 0);
            }
            Fault::FollowerRestoredBySnapshotLeads => {
                let leader = cluster.leader(0).expect("broker-a has a leader");
                let follower = (0..3).find(|r| *r != leader).unwrap();
                cluster.kill(0, follower);
                madsim::time::sleep(FAULT_FOR / 2).await;
                let mut purged = 0;
                for r in (0..3).filter(|r| *r != follower) {
                    purged = purged.max(cluster.snapshot_and_purge(0, r).await.unwrap_or(0));
                }
                assert!(purged > 0, "no replica of broker-a snapshotted and purged its log");
                cluster.restart(0, follower);
                // Caught up by a snapshot (its log held nothing past what was purged)...
                let mut restored = None;
                for _ in 0..200 {
                    restored = cluster.applied_and_snapshot(0, follower);
                    if restored.is_some_and(|(applied, snap)| applied >= purged && snap.is_some()) {
                        break;
                    }
                    madsim::time::sleep(Duration::from_millis(100)).await;
                }
                let snapshot = restored.and_then(|(_, s)| s);
                assert!(
                    snapshot.is_some_and(|s| s >= purged),
                    "the restarted follower did not catch up by snapshot: {restored:?}, \
                     the others purged through {purged}"
                );
                // ...then it leads.
                make_lead(cluster, 0, follower).await;
                assert_eq!(cluster.leader(0), Some(follower), "the restored follower never led");
                eprintln!(
                    "restored follower {follower}: snapshot {snapshot:?}, log from {:?}, leads",
                    cluster.log_start(0, follower)
                );
            }
            Fault::AsymmetricLeader => {
                let leader = cluster.leader(0).expect("broker-a has a leader");
                cluster.clog_one_way(0, leader, true, true);
                madsim::time::sleep(FAULT_FOR / 2).await;
                cluster.clog_one_way(0, leader, true, false);
                cluster.clog_one_way(0, leader, false, true);
                madsim::time::sleep(FAULT_FOR / 2).await;
                cluster.clog_one_way(0, leader, false, false);
            }
            Fault::DamagedEntryOnLeader => {
                let leader = cluster.leader(0).expect("broker-a has a leader");
                let follower = (0..3).find(|r| *r != leader).unwrap();
                let lacks_from = cluster.last_log_index(0, follower).map_or(1, |l| l + 1);
                cluster.kill(0, follower);
                madsim::time::sleep(FAULT_FOR / 2).await;
                // Among the last entries: retention may delete older segments (and the damage
                // with them) before any read meets it.
                let recent = cluster.last_log_index(0, leader).map_or(1, |l| l.saturating_sub(30));
                let damaged = cluster.corrupt_entry(0, leader, lacks_from.max(recent), TOPIC);
                let damaged = damaged.expect("the leader has an entry of messages to damage");
                eprintln!("damaged entry {damaged} on leader {leader}");
                cluster.restart(0, follower);
                // A consumer reading the topic from its start pulls the damaged record from
                // the leader's disk (the restarted follower's catch-up is served from the
                // leader's window of recent entries, in memory).
                let reader = cluster.client_node(3);
                let ns = cluster.namesrv_list();
                let reading = reader.spawn(async move {
                    let h = Arc::new(Mutex::new(History::default()));
                    let c = workload::consume(&ns, "reader-from-start", TOPIC, "r0", false, h);
                    let consumer = c.await;
                    std::future::pending::<()>().await;
                    drop(consumer);
                });
                let mut why = None;
                for _ in 0..300 {
                    why = cluster.stopped_on_fatal().remove(&(0, leader));
                    if why.is_some() {
                        break;
                    }
                    madsim::time::sleep(Duration::from_millis(100)).await;
                }
                drop(reading);
                cluster.kill_client(&reader);
                let why = why.unwrap_or_else(|| panic!("leader {leader} was not quarantined"));
                assert!(why.contains("quarantined"), "leader {leader} stopped: {why}");
                eprintln!("leader {leader} stopped: {why}");
                // Started again on its damaged data, it stays down (the log does not open).
                cluster.kill(0, leader);
                cluster.restart(0, leader);
                madsim::time::sleep(Duration::from_secs(1)).await;
                let again = cluster.stopped_on_fatal().remove(&(0, leader)).unwrap_or_default();
                assert!(again.contains("quarantined"), "restarted on damaged data: {again:?}");
                // The operator's repair: its data set aside, it starts empty (its group refuses
                // it as a wiped replica), and is removed and added again, which copies the
                // group's log to it from a sound peer. The quiesce check then compares its
                // bytes with the others'.
                cluster.kill(0, leader);
                cluster.wipe(0, leader);
                cluster.restart(0, leader);
                retry("remove the quarantined replica", || cluster.remove_replica(0, leader)).await;
                retry("add it again", || cluster.add_replica(0, leader)).await;
                eprintln!("replica {leader} repaired: voters {:?}", cluster.voters(0));
                madsim::time::sleep(FAULT_FOR / 2).await;
            }
            Fault::LatencySpike => {
                cluster.latency_spike(true);
                madsim::time::sleep(FAULT_FOR).await;
                cluster.latency_spike(false);
            }
            Fault::ClockSteps => {
                let right = cluster.leader(0).expect("broker-a has a leader");
                let ahead = (0..3).find(|r| *r != right).unwrap();
                let behind = (0..3).find(|r| *r != right && *r != ahead).unwrap();
                for (r, step) in [(ahead, CLOCK_STEP_MS), (behind, -CLOCK_STEP_MS)] {
                    cluster.step_clock(0, r, step);
                    cluster.kill(0, r);
                    cluster.restart(0, r);
                    // Caught up with the leader's log (else it cannot win an election).
                    for _ in 0..50 {
                        madsim::time::sleep(Duration::from_millis(100)).await;
                        let leader = cluster.leader(0).and_then(|l| cluster.last_log_index(0, l));
                        if cluster.last_log_index(0, r).is_some_and(|i| Some(i) >= leader) {
                            break;
                        }
                    }
                    make_lead(cluster, 0, r).await;
                    assert_eq!(
                        cluster.leader(0),
                        Some(r),
                        "replica {r} (clock {step} ms) never led"
                    );
                    madsim::time::sleep(Duration::from_secs(2)).await;
                }
                make_lead(cluster, 0, right).await;
                assert_eq!(
                    cluster.leader(0),
                    Some(right),
                    "the replica with the right clock never led"
                );
            }
            Fault::TransferLeader => {
                let n = cluster.topology.replicas;
                for _ in 0..4 {
                    let leader = cluster.leader(0).expect("broker-a has a leader");
                    let to = (leader + 1) % n;
                    let (now, term) = cluster
                        .transfer_leader(0, to)
                        .await
                        .unwrap_or_else(|e| panic!("transfer {leader} -> {to} failed: {e}"));
                    eprintln!("leadership of broker-a: {leader} -> {now} (term {term})");
                    assert_eq!(now, to, "the replica named leads");
                    madsim::time::sleep(Duration::from_secs(2)).await;
                }
            }
            Fault::Membership => membership_changes(cluster).await,
            Fault::WipedFollower => {
                let leader = cluster.leader(0).expect("broker-a has a leader");
                // The wiped one is never node 0 (a wiped lowest id would bootstrap a group of
                // its own: not this fault), the cut one is the other follower.
                let followers: Vec<u64> = (0..3).filter(|r| *r != leader).collect();
                let wiped = *followers.iter().find(|r| **r != 0).unwrap();
                let cut = *followers.iter().find(|r| **r != wiped).unwrap();
                // Every member's incarnation is recorded within a second of the start.
                cluster.cut_from_peers(0, cut, true);
                madsim::time::sleep(Duration::from_secs(2)).await;
                cluster.kill(0, leader);
                cluster.kill(0, wiped);
                cluster.wipe(0, wiped);
                cluster.cut_from_peers(0, cut, false);
                cluster.restart(0, wiped);
                eprintln!("broker-a: {cut} cut, {leader} (leader) killed, {wiped} wiped");
                madsim::time::sleep(Duration::from_secs(5)).await;
                cluster.restart(0, leader);
                for _ in 0..20 {
                    if cluster.leader(0).is_some() {
                        break;
                    }
                    madsim::time::sleep(Duration::from_millis(500)).await;
                }
                // The operator's repair of a replica its group refuses (its log stays empty:
                // the group sends it nothing): remove it and add it again. (Under the bug put
                // in on purpose nothing refuses it: it took the log of whoever leads.)
                madsim::time::sleep(Duration::from_secs(2)).await;
                if cluster.last_log_index(0, wiped).is_none() {
                    if cluster.leader(0) == Some(wiped) {
                        let to = (0..3).find(|r| *r != wiped).unwrap();
                        make_lead(cluster, 0, to).await;
                    }
                    retry("remove the wiped replica", || cluster.remove_replica(0, wiped)).await;
                    retry("add it again", || cluster.add_replica(0, wiped)).await;
                } else {
                    assert!(
                        cluster.topology.sim_bug_accept_wiped,
                        "the wiped replica was not refused"
                    );
                }
            }
            Fault::RemovedWhileDown => {
                let leader = cluster.leader(0).expect("broker-a has a leader");
                let gone = (0..3).find(|r| *r != leader).unwrap();
                cluster.kill(0, gone);
                retry("remove the dead follower", || cluster.remove_replica(0, gone)).await;
                cluster.restart(0, gone);
                let addr = rocketraft_sim::cluster::broker_addr(0, gone);
                for _ in 0..10 {
                    madsim::time::sleep(Duration::from_secs(1)).await;
                    for ns in 0..2 {
                        let routed = cluster.registry(ns).and_then(|r| r.broker_id_of(&addr));
                        assert!(
                            routed.is_none(),
                            "removed {gone} routed by NameServer {ns}: {routed:?}"
                        );
                    }
                }
                assert_eq!(cluster.voters(0).len(), 2, "two voters remain");
            }
            Fault::Swarm => swarm_faults(cluster).await,
        }
    }

    /// Tries `call` until it succeeds (20 times at most, 1 s apart); panics with the last error.
    async fn retry<T, F, Fut>(what: &str, call: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        try_again(call).await.unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Tries `call` until it succeeds (20 times at most, 1 s apart), or answers the last error.
    async fn try_again<T, F, Fut>(mut call: F) -> Result<T, String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let mut last = String::new();
        for _ in 0..20 {
            match call().await {
                Ok(t) => return Ok(t),
                Err(e) => {
                    eprintln!("{e}; again");
                    last = e;
                }
            }
            madsim::time::sleep(Duration::from_secs(1)).await;
        }
        Err(last)
    }

    /// [`Fault::Membership`].
    async fn membership_changes(cluster: &SimCluster) {
        // Spare 3 joins while the leader is killed mid-change; the change goes on (or is
        // asked again) under the next leader.
        let leader = cluster.leader(0).expect("broker-a has a leader");
        let kill = async {
            let after = madsim::rand::thread_rng().gen_range(0..400);
            madsim::time::sleep(Duration::from_millis(after)).await;
            cluster.kill(0, leader);
        };
        let (first, ()) = tokio::join!(cluster.add_replica(0, 3), kill);
        eprintln!("add 3 with leader {leader} killed mid-change: {first:?}");
        madsim::time::sleep(Duration::from_secs(3)).await;
        retry("add 3", || cluster.add_replica(0, 3)).await;
        cluster.restart(0, leader);
        // Spare 4 is killed while it catches up (its disk slowed so that catching up takes
        // several rounds), and restarted.
        cluster.slow_disk(0, 4, SLOW_SYNC_MS);
        let bounce = async {
            // Killed once it is a learner (catching up), a little later drawn from the seed.
            for _ in 0..500 {
                if cluster.membership(0).1.contains(&4) {
                    break;
                }
                madsim::time::sleep(Duration::from_millis(10)).await;
            }
            let learner = cluster.membership(0).1.contains(&4);
            let after = madsim::rand::thread_rng().gen_range(0..100);
            madsim::time::sleep(Duration::from_millis(after)).await;
            let still = cluster.membership(0).1.contains(&4);
            cluster.kill(0, 4);
            cluster.slow_disk(0, 4, 0);
            madsim::time::sleep(Duration::from_secs(2)).await;
            cluster.restart(0, 4);
            learner && still
        };
        let (second, mid_catch_up) = tokio::join!(cluster.add_replica(0, 4), bounce);
        eprintln!("add 4, killed while catching up ({mid_catch_up}): {second:?}");
        assert!(mid_catch_up, "spare 4 was not killed while it caught up");
        retry("add 4", || cluster.add_replica(0, 4)).await;
        assert_eq!(cluster.voters(0), (0..5).collect(), "five voters");
        // Two of the first three go (each moved off the lead first): three voters remain.
        let keep = madsim::rand::thread_rng().gen_range(0..3);
        for gone in (0..3).filter(|r| *r != keep) {
            if cluster.leader(0) == Some(gone) {
                make_lead(cluster, 0, 3).await;
            }
            retry(&format!("remove {gone}"), || cluster.remove_replica(0, gone)).await;
        }
        let voters = cluster.voters(0);
        eprintln!("broker-a's voters now: {voters:?}");
        assert_eq!(voters, [keep, 3, 4].into_iter().collect(), "three voters, two of them new");
    }

    /// Makes replica r of group g lead: its leader hands leadership to it (the admin call
    /// `rocketraft cluster transfer-leader` makes), tried again while the group is electing or
    /// r is still catching up (10 times at most, 500 ms apart); the caller checks that r leads.
    /// (Before transfers, this killed the leader and restarted the third replica, hoping r
    /// stood first: it needed several rounds, and a run's other tests could change the odds.)
    async fn make_lead(cluster: &SimCluster, g: usize, r: u64) {
        for _ in 0..10 {
            match cluster.leader(g) {
                Some(leader) if leader == r => return,
                Some(_) => match cluster.transfer_leader(g, r).await {
                    Ok((leader, _)) if leader == r => return,
                    Ok((leader, term)) => eprintln!("make_lead {r}: {leader} leads in {term}"),
                    Err(e) => eprintln!("make_lead {r}: {e}"),
                },
                None => {}
            }
            madsim::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Three faults drawn from the seed, each at a random time in the first 10 s and lasting
    /// 1-6 s, on random replicas of random groups; everything healed at the end.
    async fn swarm_faults(cluster: &SimCluster) {
        let mut rng = madsim::rand::thread_rng();
        let mut plan: Vec<(u64, u8, usize, u64, u64)> = (0..3)
            .map(|_| {
                (
                    rng.gen_range(0..10_000),
                    rng.gen_range(0..13),
                    rng.gen_range(0..2),
                    rng.gen_range(0..3),
                    rng.gen_range(1_000..6_000),
                )
            })
            .collect();
        plan.sort();
        eprintln!("swarm plan (at ms, kind, group, replica, for ms): {plan:?}");
        let mut elapsed = 0;
        let mut heal: Vec<(u64, u8, usize, u64, u64)> = Vec::new();
        // Replicas whose CommitLog syncs fail: no other fault's healing restarts them (a start
        // on that disk fails, as a real one would until the disk is sound), their own does.
        let mut failing = std::collections::BTreeSet::new();
        for (at, kind, g, r, dur) in plan {
            madsim::time::sleep(Duration::from_millis(at - elapsed)).await;
            elapsed = at;
            match kind {
                0 => cluster.kill(g, r),
                1 => {
                    // Power loss hits a running node only (a dead one has nothing in flight).
                    if !cluster.is_down(g, r) {
                        cluster.kill(g, r);
                        let seed = rng.gen();
                        cluster.power_loss(g, r, seed);
                    }
                }
                2 => cluster.isolate(g, r, true),
                3 => cluster.kill_namesrv(r as usize % 2),
                4 => cluster.disk_full(g, r, true),
                // Healed by a restart after the others purged their logs: see below.
                6 => cluster.kill(g, r),
                // An asymmetric partition: the replica hears nothing (odd durations) or is
                // heard by no one (even ones), clients and NameServers included.
                7 => cluster.clog_one_way(g, r, dur % 2 == 1, true),
                8 => cluster.latency_spike(true),
                // A bad sector under the leader of group g: a bit flips in a synced entry of the
                // workload's topic it wrote lately (one damaged replica a group at most: the
                // fault model never damages a majority's copies of an entry).
                9 => {
                    let leader = cluster.leader(g);
                    let already = (0..3).any(|p| cluster.was_corrupted(g, p));
                    if let (Some(leader), false) = (leader, already) {
                        let last = cluster.last_log_index(g, leader).unwrap_or(0);
                        let from = last.saturating_sub(30).max(1);
                        cluster.corrupt_entry(g, leader, from, TOPIC);
                    }
                }
                // A step of the replica's clock, up to an hour either way; it is restarted when
                // healed and its broker reads the stepped clock then.
                10 => {
                    let step = rng.gen_range(1_000..3_600_000) * if dur % 2 == 1 { -1 } else { 1 };
                    cluster.step_clock(g, r, step);
                    cluster.kill(g, r);
                }
                // Leadership handed to replica r, whatever else is going on: it may fail (r
                // down, cut off, behind), never unsafely.
                // A slow disk: each CommitLog sync of the replica takes 20-200 ms longer (a
                // leader's slows every send; a follower's, its acks).
                12 => cluster.slow_disk(g, r, 20 + dur % 181),
                11 => match cluster.transfer_leader(g, r).await {
                    Ok((leader, term)) => {
                        eprintln!("swarm: {g} handed to {r}: {leader} leads in {term}")
                    }
                    Err(e) => eprintln!("swarm: {g} not handed to {r}: {e}"),
                },
                _ => {
                    failing.insert((g, r));
                    cluster.fail_syncs(g, r, true);
                }
            }
            heal.push((at + dur, kind, g, r, dur));
        }
        heal.sort();
        for (at, kind, g, r, dur) in heal {
            madsim::time::sleep(Duration::from_millis(at.saturating_sub(elapsed))).await;
            elapsed = elapsed.max(at);
            match kind {
                0 | 1 | 6 | 10 if failing.contains(&(g, r)) => {}
                0 | 1 | 10 => cluster.restart(g, r),
                6 => {
                    // The replica comes back to peers that purged (logically) what it lacks:
                    // it catches up by a snapshot and its history.
                    for peer in (0..3).filter(|p| *p != r) {
                        cluster.snapshot_and_purge(g, peer).await;
                    }
                    cluster.restart(g, r);
                }
                2 => cluster.isolate(g, r, false),
                3 => cluster.restart_namesrv(r as usize % 2),
                4 => cluster.disk_full(g, r, false),
                7 => cluster.clog_one_way(g, r, dur % 2 == 1, false),
                8 => cluster.latency_spike(false),
                12 => cluster.slow_disk(g, r, 0),
                // Damage stays: a read meets it and quarantines the replica, or it is still
                // there, unread, when the run is judged (where a read must catch it).
                9 | 11 => {}
                _ => {
                    // As a supervisor would: the replica stopped on its failed sync (or will
                    // not now); the disk is sound again, the process is restarted.
                    failing.remove(&(g, r));
                    cluster.fail_syncs(g, r, false);
                    cluster.kill(g, r);
                    cluster.restart(g, r);
                }
            }
        }
        // A replica that quarantined itself by now is repaired from its peers, as an operator
        // would (its data set aside, removed and added again): it then takes part in the
        // quiesce check like the others. One that meets its damage later stays quarantined.
        let quarantined: Vec<(usize, u64)> = cluster
            .stopped_on_fatal()
            .into_iter()
            .filter(|(_, why)| why.contains("quarantined"))
            .map(|(at, _)| at)
            .collect();
        for (g, r) in quarantined {
            cluster.kill(g, r);
            cluster.wipe(g, r);
            cluster.restart(g, r);
            let removed = try_again(|| cluster.remove_replica(g, r)).await;
            let added = match removed {
                Ok(_) => try_again(|| cluster.add_replica(g, r)).await.map(|_| ()),
                Err(e) => Err(e),
            };
            eprintln!("swarm: quarantined {g}-{r} repaired: {added:?}");
            added.unwrap_or_else(|e| panic!("the repair of {g}-{r} failed: {e}"));
        }
    }

    /// [`run`] in a runtime of its own seed, on a thread of its own: the thread's first
    /// `HashMap` then takes its hash keys inside the simulation (seeded), not from the test
    /// harness's thread (random per process), so a seed's run, and the iteration order of every
    /// map in it, are the same every time. (Runs on the harness's thread were not: their
    /// outcome changed from one `cargo test` to the next once a timing change hit a path
    /// where the order of a map's entries mattered.)
    fn run_seeded(seed: u64, fault: Fault, topology: Topology) -> Outcome {
        // Not a replica's thread: the test's own, which waits for the run.
        #[allow(clippy::disallowed_methods)]
        let run = std::thread::spawn(move || {
            Runtime::with_seed_and_config(seed, madsim::Config::default())
                .block_on(run(fault, topology))
        });
        run.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// One run of the workload under `fault`.
    async fn run(fault: Fault, topology: Topology) -> Outcome {
        let cluster = SimCluster::start(topology);
        assert!(cluster.wait_ready(Duration::from_secs(30)).await, "no masters routed");
        let ns = cluster.namesrv_list();
        let history: workload::Shared = Arc::new(Mutex::new(History::default()));
        let client = cluster.client_node(0);
        let t0 = now();
        {
            let ns = ns.clone();
            client
                .spawn(async move {
                    workload::create_topic(&ns, TOPIC, 4, 2, Duration::from_secs(30)).await;
                    workload::create_topic(&ns, DELAYED, 2, 2, Duration::from_secs(30)).await;
                    workload::create_topic(&ns, TX, 2, 2, Duration::from_secs(30)).await;
                })
                .await
                .unwrap();
        }
        let consumers = {
            let (ns, h) = (ns.clone(), history.clone());
            client.spawn(async move {
                let a = workload::consume(&ns, GROUP, TOPIC, "c0", false, h.clone()).await;
                let b = workload::consume(&ns, GROUP, TOPIC, "c1", false, h.clone()).await;
                let o = workload::consume(&ns, ORDERLY, TOPIC, "o0", true, h.clone()).await;
                let (topic, dg, rg) = (DELAYED, DELAYED_GROUP, RETRIED_GROUP);
                let d = workload::consume_delayed(&ns, dg, topic, "d0", false, h.clone(), t0).await;
                let r = workload::consume_delayed(&ns, rg, topic, "r0", true, h.clone(), t0).await;
                let x = workload::consume_delayed(&ns, TX_GROUP, TX, "x0", false, h, t0).await;
                (a, b, o, d, r, x)
            })
        };
        let consumers = consumers.await.unwrap();
        let producer = {
            let (ns, h) = (ns.clone(), history.clone());
            let pace = Duration::from_millis(10);
            client.spawn(workload::produce(ns, TOPIC.into(), 0, 600, None, pace, h, t0))
        };
        let delayed_producer = {
            let (ns, h) = (ns.clone(), history.clone());
            let pace = Duration::from_millis(50);
            client.spawn(workload::produce_delayed(ns, DELAYED.into(), 120, pace, h, t0))
        };
        // Transactions from two producers of one group, each on its own client node; the
        // first crashes at a time drawn from the seed, leaving halves whose outcome it never
        // told (the second answers their check-backs).
        let (tx_crashing, tx_survivor) = (cluster.client_node(1), cluster.client_node(2));
        let tx_pace = Duration::from_millis(100);
        {
            let (ns, h) = (ns.clone(), history.clone());
            let name = "tx-producer-a".to_owned();
            tx_crashing.spawn(workload::produce_transactions(
                ns,
                TX.into(),
                name,
                0,
                40,
                tx_pace,
                h,
                t0,
            ));
        }
        let tx_producer = {
            let (ns, h) = (ns.clone(), history.clone());
            let (name, first) = ("tx-producer-b".to_owned(), TX_SURVIVOR_FIRST);
            tx_survivor.spawn(workload::produce_transactions(
                ns,
                TX.into(),
                name,
                first,
                60,
                tx_pace,
                h,
                t0,
            ))
        };
        let crash_at = Duration::from_millis(madsim::rand::thread_rng().gen_range(1_500..3_500));
        // A probe pinned to broker-a's queue 0 measures that group's own availability
        // (round-robin sends steer around a failed group on purpose).
        let probe_stop = Arc::new(AtomicBool::new(false));
        let probe = {
            let (ns, h, stop) = (ns.clone(), history.clone(), probe_stop.clone());
            let every = Duration::from_millis(50);
            client.spawn(workload::probe(ns, TOPIC.into(), group_name(0), every, h, stop, t0))
        };
        let observe = async {
            // Leadership as every replica sees it and every replica's applied consumer
            // offsets, every 100 ms (checked for split brain and for offsets going back).
            loop {
                cluster.observe_leaders(&history);
                cluster.observe_offsets(&history, GROUP, TOPIC, 4);
                cluster.observe_retention(TOPIC, 4);
                cluster.observe_retention(DELAYED, 2);
                cluster.observe_stored(&history, DELAYED, 2);
                cluster.observe_raft();
                madsim::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let crash = async {
            madsim::time::sleep(crash_at).await;
            cluster.kill_client(&tx_crashing);
            // Its transactions in flight: the half may or may not be stored.
            let mut h = history.lock().unwrap();
            let ended: std::collections::BTreeSet<String> = h
                .events
                .iter()
                .filter_map(|e| match e {
                    check::Event::Sent { id, .. } => Some(id.clone()),
                    _ => None,
                })
                .collect();
            let in_flight: Vec<String> = h
                .events
                .iter()
                .filter_map(|e| match e {
                    check::Event::TxIntent { id, .. } if !ended.contains(id) => Some(id.clone()),
                    _ => None,
                })
                .filter(|id| {
                    id[check::TX_PREFIX.len()..].parse::<u32>().unwrap() < TX_SURVIVOR_FIRST
                })
                .collect();
            for id in in_flight {
                h.push(check::Event::Sent { id, outcome: check::SendOutcome::Indeterminate });
            }
        };
        let faulted = async {
            madsim::time::sleep(FAULT_AT).await;
            let at = t0.elapsed();
            inject(&cluster, fault).await;
            let late = {
                let (ns, h) = (ns.clone(), history.clone());
                client.spawn(async move {
                    workload::consume(&ns, LATE_GROUP, TOPIC, "l0", false, h).await
                })
            };
            let report = producer.await.unwrap();
            delayed_producer.await.unwrap();
            (at, report, late.await.unwrap())
        };
        let faulted = async { tokio::join!(faulted, crash).0 };
        let (fault_at, report, late) = tokio::select! {
            biased;
            r = faulted => r,
            _ = observe => unreachable!("the observer never ends"),
        };
        if let Some(at) = cluster.last_power_loss() {
            let at_ms = at.saturating_duration_since(t0).as_millis() as i64;
            history.lock().unwrap().push(check::Event::PowerLoss { at_ms });
        }
        let tx_producer = tx_producer.await.unwrap();
        probe_stop.store(true, Ordering::SeqCst);
        let probe_acks = probe.await.unwrap();
        // The first send started after the fault and acknowledged (an answer already on its
        // way when the leader died does not count).
        let failover = probe_acks
            .iter()
            .find(|(started, _)| *started > fault_at)
            .map(|(_, at)| *at - fault_at);
        // Drain: every acknowledged send consumed, or give up after 60 s.
        for _ in 0..600 {
            cluster.observe_retention(TOPIC, 4);
            cluster.observe_retention(DELAYED, 2);
            cluster.observe_stored(&history, DELAYED, 2);
            let drained = {
                let h = history.lock().unwrap();
                let (plain, delayed) = (stored_plain(&h), stored_delayed(&h));
                let lost = |group| not_retained(&cluster, TOPIC, &plain, check::lost(&h, group));
                let lost_delayed = |group| {
                    not_retained(&cluster, DELAYED, &delayed, check::lost_delayed(&h, group))
                };
                lost(GROUP).is_empty()
                    && lost(ORDERLY).is_empty()
                    && lost(LATE_GROUP).is_empty()
                    && lost_delayed(DELAYED_GROUP).is_empty()
                    && lost_delayed(RETRIED_GROUP).is_empty()
                    && check::lost_transactions(&h, TX_GROUP).is_empty()
            };
            if drained {
                break;
            }
            cluster.observe_leaders(&history);
            madsim::time::sleep(Duration::from_millis(100)).await;
        }
        // Every half message resolved (by its producer or a check-back), or give up after 60 s.
        let unresolved = {
            let ns = ns.clone();
            client
                .spawn(async move {
                    workload::unresolved_halves(&ns, TX, Duration::from_secs(60)).await
                })
                .await
                .unwrap()
        };
        {
            let mut h = history.lock().unwrap();
            for (broker, id, half_offset) in unresolved {
                h.push(check::Event::Unresolved { broker, id, half_offset });
            }
        }
        // B.5 #26: one reader asks each queue for 1,000 messages a pull, from its start.
        {
            let (ns, h) = (ns.clone(), history.clone());
            client
                .spawn(async move { workload::read_in_big_pulls(&ns, TOPIC, 1_000, h).await })
                .await
                .unwrap();
        }
        // Let the last offset commits land, then quiesce every group.
        madsim::time::sleep(Duration::from_secs(6)).await;
        cluster.observe_offsets(&history, GROUP, TOPIC, 4);
        let mut stuck = Vec::new();
        for g in 0..2 {
            if !cluster.wait_quiesced(g, Duration::from_secs(30)).await {
                stuck.push(group_name(g));
            }
        }
        cluster.observe_leaders(&history);
        // Not vacuous: the run reached large bodies and snapshots.
        let snapshots = cluster.replicas_with_snapshots();
        assert!(snapshots > 0, "no replica built or installed a snapshot");
        let (trimmed, segments) = cluster.replicas_trimmed();
        if trimmed == 0 && segments >= 3 {
            eprintln!("retention deleted nothing:{}", cluster.retention_report());
        }
        assert!(report.padded_acked > 0, "no send with a large body was acknowledged");
        cluster.observe_stored(&history, DELAYED, 2);
        let h = history.lock().unwrap().clone();
        let lost = check::lost(&h, GROUP).len();
        let offsets_given_twice = check::inconsistent_offsets(&h).len();
        let breaks =
            consumption_breaks(&h, &cluster, MayLose::of(&cluster.topology, fault, fault_at));
        let (verdict, strict) = if stuck.is_empty() {
            (
                judge(&h, &cluster, MayLose::of(&cluster.topology, fault, fault_at)),
                judge(&h, &cluster, MayLose::Nothing),
            )
        } else {
            let e = Err(format!("{stuck:?} did not recover within 30 s of healing ({lost} acknowledged sends not consumed)"));
            (e.clone(), e)
        };
        let tx_acked = h
            .events
            .iter()
            .filter(|e| {
                matches!(e, check::Event::Sent { id, outcome: check::SendOutcome::Acked { .. } }
                    if id.starts_with(check::TX_PREFIX))
            })
            .count();
        let tx_delivered: std::collections::BTreeSet<&str> = h
            .events
            .iter()
            .filter_map(|e| match e {
                check::Event::Delivered { group, id, .. } if group == TX_GROUP => Some(id.as_str()),
                _ => None,
            })
            .collect();
        eprintln!(
            "{fault:?}: {} events, verdict {verdict:?}, broker-a probe back after {failover:?}, {} sends failed, {tx_acked} half messages acknowledged, {} transactions delivered, {} large bodies acknowledged (largest {} bytes), {snapshots} replicas with a snapshot, {trimmed} whose log retention trimmed (longest log: {segments} segments)",
            h.events.len(),
            report.failures,
            tx_delivered.len(),
            report.padded_acked,
            report.largest_acked_bytes,
        );
        let (c0, c1, o0, d0, r0, x0) = consumers;
        client
            .spawn(async move {
                c0.shutdown().await;
                c1.shutdown().await;
                o0.shutdown().await;
                d0.shutdown().await;
                r0.shutdown().await;
                x0.shutdown().await;
                late.shutdown().await;
            })
            .await
            .unwrap();
        tx_survivor.spawn(async move { tx_producer.shutdown().await }).await.unwrap();
        let stopped = cluster.stopped_on_fatal();
        let raft_violations = cluster.raft_violations();
        cluster.stop().await;
        let mut trace = TraceHash::default();
        for e in &h.events {
            trace.record(format!("{e:?}").as_bytes());
        }
        Outcome {
            verdict,
            strict,
            lost,
            offsets_given_twice,
            failover,
            fault_at,
            probe_acks,
            stopped,
            trimmed,
            segments,
            raft_violations,
            breaks,
            trace: trace.value(),
        }
    }

    async fn scenario(test: &str, fault: Fault) -> Outcome {
        scenario_on(test, fault, Topology::default()).await
    }

    async fn scenario_on(test: &str, fault: Fault, topology: Topology) -> Outcome {
        banner(test);
        let outcome = run(fault, topology).await;
        if let Err(e) = &outcome.verdict {
            panic!("{fault:?}: {e}\nreplay: {}", replay_hint(test, Handle::current().seed()));
        }
        outcome
    }

    /// Kill broker-a's leader under load: a new leader takes over, re-registers as master,
    /// the probe's sends resume within 3 s, nothing acknowledged is lost.
    #[madsim::test]
    async fn kill_the_leader_under_load() {
        let o = scenario("kill_the_leader_under_load", Fault::KillLeader).await;
        let failover = o.failover.expect("broker-a took sends again");
        assert!(failover <= Duration::from_secs(6), "failover took {failover:?}");
    }

    /// Cut broker-a's leader off: it cannot acknowledge (no quorum); the others elect.
    #[madsim::test]
    async fn isolate_the_leader() {
        scenario("isolate_the_leader", Fault::IsolateLeader).await;
    }

    /// Cut broker-a's leader off its peers only: clients still reach it and it still takes
    /// sends, but (quorum replication) acknowledges none of them; the others elect.
    #[madsim::test]
    async fn partition_the_leader_from_its_peers() {
        scenario("partition_the_leader_from_its_peers", Fault::PartitionLeaderFromPeers).await;
    }

    /// A follower restored by a snapshot holds the history its peers retained before it: once
    /// it leads, a group that starts then from the first offset finds every acknowledged
    /// message (before, it found only those after the snapshot's cut).
    #[madsim::test]
    async fn a_follower_restored_by_snapshot_serves_the_history_once_it_leads() {
        scenario(
            "a_follower_restored_by_snapshot_serves_the_history_once_it_leads",
            Fault::FollowerRestoredBySnapshotLeads,
        )
        .await;
    }

    /// broker-a's leader freezes for 10 s (its sockets stay open) and wakes up deposed.
    #[madsim::test]
    async fn pause_the_leader() {
        scenario("pause_the_leader", Fault::PauseLeader).await;
    }

    /// A 2/1 split: the majority keeps serving; the follower catches up when healed.
    #[madsim::test]
    async fn split_a_follower_off() {
        scenario("split_a_follower_off", Fault::IsolateFollower).await;
    }

    /// A 1/1/1 split: broker-a has no quorum for 10 s (broker-b takes the round-robin
    /// sends); healed, it elects and nothing is lost.
    #[madsim::test]
    async fn split_every_replica_apart() {
        scenario("split_every_replica_apart", Fault::SplitAll).await;
    }

    /// broker-a's leader loses power (unsynced writes gone, the last torn): sync flush loses
    /// nothing acknowledged.
    #[madsim::test]
    async fn power_loss_of_the_leader() {
        scenario("power_loss_of_the_leader", Fault::PowerLossLeader).await;
    }

    /// All of broker-a loses power at once: sync flush still loses nothing acknowledged.
    #[madsim::test]
    async fn power_loss_of_a_whole_group() {
        scenario("power_loss_of_a_whole_group", Fault::PowerLossAll).await;
    }

    /// broker-a's disks turn slow, then all of it loses power with every unsynced write gone:
    /// sync flush loses nothing acknowledged.
    #[madsim::test]
    async fn slow_disks_then_a_group_power_loss_lose_nothing() {
        scenario(
            "slow_disks_then_a_group_power_loss_lose_nothing",
            Fault::SlowDisksThenPowerLossAll,
        )
        .await;
    }

    /// The same, 12 s later, when the probe's and the last plain sends are most of what the
    /// group writes (the control of `the_checkers_catch_acks_before_fsync`).
    #[madsim::test]
    async fn quiet_then_slow_disks_then_a_group_power_loss_lose_nothing() {
        scenario(
            "quiet_then_slow_disks_then_a_group_power_loss_lose_nothing",
            Fault::QuietThenSlowDisksThenPowerLossAll,
        )
        .await;
    }

    /// A follower of broker-a syncs 120 ms slower than the others, then the leader dies: the
    /// group commits at the slow disk's pace (a new leader and the slow follower are the only
    /// majority), takes sends again, and loses nothing acknowledged.
    #[madsim::test]
    async fn a_slow_follower_disk_then_the_leader_dies() {
        let o = scenario(
            "a_slow_follower_disk_then_the_leader_dies",
            Fault::SlowFollowerThenKillLeader,
        )
        .await;
        // Sends to broker-a started after the leader died and before it came back: each was
        // committed by the two survivors, one of them on the slow disk.
        let (dead_from, dead_to) = (o.fault_at + Duration::from_secs(3), o.fault_at + FAULT_FOR);
        let mut waits: Vec<Duration> = o
            .probe_acks
            .iter()
            .filter(|(started, acked)| *started > dead_from && *acked < dead_to)
            .map(|(started, acked)| *acked - *started)
            .collect();
        assert!(
            waits.len() >= 10,
            "broker-a acknowledged {} probe sends while it needed the slow disk",
            waits.len()
        );
        // ...and the slow disk was on their path: a send waited for at least one slow sync.
        waits.sort();
        let median = waits[waits.len() / 2];
        eprintln!("{} probe sends with the slow disk, median ack {median:?}", waits.len());
        assert!(median >= Duration::from_millis(SLOW_SYNC_MS), "median ack {median:?}");
    }

    /// Hand broker-a's leadership on four times under load, by the admin call: each lands on
    /// the replica named, no acknowledged send is lost, no replica back to an older leader id, and the
    /// probe's sends to broker-a never stop for an election timeout (1-2 s).
    #[madsim::test]
    async fn transfer_the_leader_under_load() {
        let o = scenario("transfer_the_leader_under_load", Fault::TransferLeader).await;
        let gap = probe_gap(&o, o.fault_at, o.fault_at + Duration::from_secs(8));
        eprintln!("longest probe gap across the transfers: {gap:?}");
        assert!(gap < Duration::from_millis(900), "probe sends stopped for {gap:?}");
    }

    /// As [`transfer_the_leader_under_load`] with five replicas a group: the target needs a
    /// vote beyond the leader's, so the leader first waits out its followers' lease.
    #[madsim::test]
    async fn transfer_the_leader_of_five_replicas() {
        let topology = Topology { replicas: 5, ..Topology::default() };
        let o =
            scenario_on("transfer_the_leader_of_five_replicas", Fault::TransferLeader, topology)
                .await;
        let gap = probe_gap(&o, o.fault_at, o.fault_at + Duration::from_secs(12));
        eprintln!("longest probe gap across the transfers: {gap:?}");
        assert!(gap < Duration::from_millis(2_000), "probe sends stopped for {gap:?}");
    }

    /// broker-a's leader first hears nothing, then is heard by no one (5 s each): nothing it
    /// cannot replicate is acknowledged, its followers elect once it falls silent, and the
    /// group serves again when healed.
    #[madsim::test]
    async fn asymmetric_partitions_of_the_leader() {
        scenario("asymmetric_partitions_of_the_leader", Fault::AsymmetricLeader).await;
    }

    /// broker-a's replicas lead in turn with a clock an hour ahead, an hour behind, then
    /// right, each having read its clock at a restart: store timestamps never go backwards,
    /// parked messages and half messages come due as they should (early only by what the
    /// clock ahead stepped), nothing acknowledged is lost.
    #[madsim::test]
    async fn clock_steps_on_one_replica_at_a_time() {
        scenario("clock_steps_on_one_replica_at_a_time", Fault::ClockSteps).await;
    }

    /// A bit flips in the leader's synced copy of an entry a restarted follower needs: the
    /// leader's read meets it, it quarantines itself (stops, and does not start again on that
    /// data: both asserted in the fault), the sound third replica leads, and nothing
    /// acknowledged is lost. The operator then repairs it from a peer (its data set aside,
    /// removed and added again): the run ends with three identical replicas.
    #[madsim::test]
    async fn a_damaged_entry_quarantines_the_leader_until_repaired() {
        let o = scenario(
            "a_damaged_entry_quarantines_the_leader_until_repaired",
            Fault::DamagedEntryOnLeader,
        )
        .await;
        assert!(o.stopped.is_empty(), "stopped at the end: {:?}", o.stopped);
    }

    /// Every link slows to 50-600 ms for 10 s: timeouts and elections, nothing lost, and the
    /// group serves at normal speed again afterwards.
    #[madsim::test]
    async fn a_latency_spike_on_every_link() {
        scenario("a_latency_spike_on_every_link", Fault::LatencySpike).await;
    }

    /// broker-a adds two replicas (its leader killed during the first addition, the new
    /// replica killed while catching up during the second) and removes two of its first
    /// three, under load: nothing acknowledged is lost, no replica back to an older leader id, and the
    /// probe's sends stop only for the killed leader's failover.
    #[madsim::test]
    async fn membership_changes_under_load_and_faults() {
        let topology = Topology { spares: 2, ..Topology::default() };
        let o =
            scenario_on("membership_changes_under_load_and_faults", Fault::Membership, topology)
                .await;
        let gap = probe_gap(&o, o.fault_at, o.fault_at + Duration::from_secs(20));
        eprintln!("longest probe gap across the changes: {gap:?}");
        assert!(gap < Duration::from_secs(6), "probe sends stopped for {gap:?}");
    }

    /// A follower's data is wiped while its peers are down or cut off: it is refused by its
    /// group (rather than vote in a replica that lacks committed entries), and nothing
    /// acknowledged is lost; removed and added again, it catches up.
    #[madsim::test]
    async fn a_wiped_follower_is_refused_until_added_again() {
        scenario("a_wiped_follower_is_refused_until_added_again", Fault::WipedFollower).await;
    }

    /// A follower removed while it was down and restarted is never routed, and the group
    /// (two voters) goes on serving: its sends stop only for moments.
    #[madsim::test]
    async fn a_replica_removed_while_down_is_not_routed_when_restarted() {
        let o = scenario(
            "a_replica_removed_while_down_is_not_routed_when_restarted",
            Fault::RemovedWhileDown,
        )
        .await;
        let gap = probe_gap(&o, o.fault_at, o.fault_at + Duration::from_secs(12));
        eprintln!("longest probe gap: {gap:?}");
        assert!(gap < Duration::from_secs(2), "probe sends stopped for {gap:?}");
    }

    /// NameServer 0 is killed and restarted: clients and brokers use NameServer 1 meanwhile.
    #[madsim::test]
    async fn kill_and_restart_a_namesrv() {
        scenario("kill_and_restart_a_namesrv", Fault::KillNamesrv).await;
    }

    /// Three faults drawn from the seed (a kill, a power loss, an isolation, a NameServer
    /// restart, a full disk, a disk whose CommitLog syncs fail until its replica is
    /// restarted, a replica restarted after its peers purged their logs so that it catches up
    /// by snapshot, a replica that hears nothing or is heard by no one, a latency spike on
    /// every link, a bit flipped under a leader, a clock step, a leadership transfer, a slow
    /// disk), then a healing phase in which every group must have a leader and every
    /// consumer must drain (the checks of every run).
    #[madsim::test]
    async fn swarm_of_faults_then_healing() {
        // The Raft transport also drops and duplicates up to 5 % of RPCs, drawn from the seed.
        let mut rng = madsim::rand::thread_rng();
        let faults = MessageFaults {
            drop_per_mille: rng.gen_range(0..50),
            duplicate_per_mille: rng.gen_range(0..50),
        };
        eprintln!("raft message faults: {faults:?}");
        let topology = Topology { raft_message_faults: faults, ..Topology::default() };
        scenario_on("swarm_of_faults_then_healing", Fault::Swarm, topology).await;
    }

    /// Every replica's Raft transport drops 5 % and duplicates 5 % of its RPCs while the
    /// leader is killed: elections and replication go on, nothing acknowledged is lost.
    #[madsim::test]
    async fn lossy_and_duplicating_raft_messages() {
        let faults = MessageFaults { drop_per_mille: 50, duplicate_per_mille: 50 };
        let topology = Topology { raft_message_faults: faults, ..Topology::default() };
        scenario_on("lossy_and_duplicating_raft_messages", Fault::KillLeader, topology).await;
    }

    /// Retention deletes CommitLog segments while the workloads run and broker-a's leader is
    /// killed (every simulated segment is past its retention time, so each one a snapshot
    /// covers goes, but the last and those holding a parked or half message still to act
    /// on): every run's checks hold, allowing only the losses retention explains (a message
    /// stored below the furthest start its queue had, unread by then), and replicas match
    /// over what all of them still hold. Not vacuous: in at least 4 of 6 runs some replica's
    /// log was trimmed. (The swarm draws the same; a run there may end before a snapshot
    /// covers a whole segment, or with a follower down, whose replication keeps the leader's
    /// entries.)
    #[test]
    fn retention_deletes_segments_under_load_and_a_failover() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let mut trimmed = 0;
        for seed in 500..506 {
            let o = run_seeded(seed, Fault::KillLeader, Topology::default());
            eprintln!(
                "retention, seed {seed}: {:?}; {} replicas trimmed, longest log {} segments",
                o.verdict, o.trimmed, o.segments
            );
            assert!(o.verdict.is_ok(), "seed {seed}: {:?}", o.verdict);
            trimmed += usize::from(o.trimmed > 0);
        }
        assert!(trimmed >= 4, "retention trimmed a log in only {trimmed} of 6 runs");
    }

    /// What async flush keeps: all of broker-a loses power at once with writes acknowledged
    /// but not yet synced (synced every 500 ms). Async flush promises every send acknowledged
    /// more than one flush interval before the power loss (it is on a majority's disks by
    /// then); the run is judged by every checker with only the sends acknowledged in that last
    /// interval allowed to be lost (and their queue offsets to be given again). The group must
    /// recover (a leader, sends taken, every consumer drained, replicas identical).
    #[test]
    fn async_flush_loses_at_most_its_last_interval_in_a_group_power_loss() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let (mut lost_in_window, mut given_again) = (0, 0);
        for seed in 400..404 {
            let topology = Topology {
                flush: rocketraft_store::FlushMode::Async { interval_ms: 500 },
                ..Topology::default()
            };
            let o = run_seeded(seed, Fault::PowerLossAll, topology);
            eprintln!(
                "async flush, group power loss, seed {seed}: {:?}; by quorum rules: {:?}",
                o.verdict, o.strict
            );
            assert!(o.verdict.is_ok(), "seed {seed}: {:?}", o.verdict);
            // Not vacuous: the group lost power while it acknowledged sends, and took sends
            // again after.
            assert!(
                o.probe_acks.iter().any(|(_, acked)| *acked < o.fault_at),
                "seed {seed}: no send acknowledged before the power loss"
            );
            assert!(
                o.failover.is_some(),
                "seed {seed}: broker-a took no send after the power loss"
            );
            lost_in_window += o.lost;
            given_again += o.offsets_given_twice;
        }
        eprintln!(
            "async flush, 4 group power losses: {lost_in_window} acknowledged sends never \
             consumed and {given_again} queue offsets given again, all within the last flush \
             interval"
        );
    }

    /// Async flush, then a power loss of the whole group that drops every unsynced write, aimed
    /// at a replica that synced and applied entries the other two lose
    /// ([`Fault::OneDiskAheadThenPowerLossAll`]): only sends acknowledged in the last flush
    /// interval may be lost (and what a consumer sent back in it, and a delayed message moved
    /// in it may be moved again). The other two elect a leader and write other entries at
    /// those indexes; the one ahead stops on `AppliedEntriesLost` when the leader's first
    /// AppendEntries names an entry it applied differently, and the group goes on with two.
    /// Before that check the replica took the leader's entries as following its own (openraft
    /// trusts every index up to its committed one): a debug build panicked on openraft's
    /// assertion, a release build would have let the replicas differ. The one ahead stops in
    /// about a third of the seeds (in the others its applied id was not yet durable, and it
    /// follows); the seeds run include five that stop, so at least one must.
    ///
    /// `RR_SIM_SCAN_SEEDS=300-700 scripts/simtest async_flush_slow -- --nocapture` runs those
    /// seeds instead and prints the ones where a replica stopped, and those that failed.
    #[test]
    fn async_flush_slow_disks_then_a_group_power_loss() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let scan: Option<Vec<u64>> = std::env::var("RR_SIM_SCAN_SEEDS").ok().map(|range| {
            let (from, to) = range.split_once('-').expect("RR_SIM_SCAN_SEEDS=FROM-TO");
            (from.parse().expect("a seed")..to.parse().expect("a seed")).collect()
        });
        let seeds = scan.clone().unwrap_or_else(|| ASYNC_FLUSH_LOSS_SEEDS.to_vec());
        let mut stopped = 0;
        let (mut stopping, mut failing) = (Vec::new(), Vec::new());
        for seed in seeds {
            let topology = Topology {
                flush: rocketraft_store::FlushMode::Async { interval_ms: 500 },
                ..Topology::default()
            };
            let o = run_seeded(seed, Fault::OneDiskAheadThenPowerLossAll, topology);
            eprintln!(
                "async flush, slow disks, group power loss, seed {seed}: {:?}; stopped: {:?}",
                o.verdict, o.stopped
            );
            if scan.is_some() && o.verdict.is_err() {
                failing.push(seed);
                continue;
            }
            assert!(o.verdict.is_ok(), "seed {seed}: {:?}", o.verdict);
            assert!(
                o.probe_acks.iter().any(|(_, acked)| *acked < o.fault_at),
                "seed {seed}: no send acknowledged before the power loss"
            );
            assert!(o.failover.is_some(), "seed {seed}: broker-a took no send after it");
            stopped += o.stopped.len();
            if !o.stopped.is_empty() {
                stopping.push(seed);
            }
        }
        if scan.is_some() {
            eprintln!(
                "seeds where a replica stopped: {stopping:?}; seeds that failed: {failing:?}"
            );
        }
        // Not vacuous: the seeds include one where a replica applied what its group lost.
        assert!(stopped > 0, "no replica applied entries its group lost in these seeds");
    }

    /// The seeds [`async_flush_slow_disks_then_a_group_power_loss`] runs (see its doc).
    const ASYNC_FLUSH_LOSS_SEEDS: [u64; 7] = [300, 301, 302, 303, 307, 313, 314];

    /// The variable that makes `one_seed_twice_gives_one_trace` a child: run that seed once
    /// and print its trace.
    const TRACE_OF_SEED: &str = "RR_SIM_TRACE_OF_SEED";

    /// One seed replayed gives one trace: seed 7 run in two fresh processes of this test binary
    /// (how a failing seed is replayed, `MADSIM_TEST_SEED=7`) yields the same trace hash.
    /// Two runs in one process are not compared: they can differ (an open finding of issue 20,
    /// ARCHITECTURE.md "Known"), which is why a seed is always replayed in a process of its own.
    #[test]
    fn one_seed_twice_gives_one_trace() {
        if let Ok(seed) = std::env::var(TRACE_OF_SEED) {
            let seed: u64 = seed.parse().expect("a seed");
            let trace = Runtime::with_seed_and_config(seed, madsim::Config::default())
                .block_on(run(Fault::KillLeader, Topology::default()))
                .trace;
            println!("trace={trace}");
            return;
        }
        let replay = || {
            let out =
                std::process::Command::new(std::env::current_exe().expect("this test binary"))
                    .args([
                        "whole_cluster::one_seed_twice_gives_one_trace",
                        "--exact",
                        "--nocapture",
                    ])
                    .env(TRACE_OF_SEED, "7")
                    .output()
                    .expect("the test binary runs");
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "the replay failed: {stdout}");
            stdout
                .lines()
                .find_map(|l| l.strip_prefix("trace="))
                .map(str::to_owned)
                .unwrap_or_else(|| panic!("the replay printed no trace: {stdout}"))
        };
        assert_eq!(replay(), replay());
    }

    /// Failover time (leader killed -> first acknowledged send to its group) over 10 seeds:
    /// min, median and max of simulated time; DESIGN.md's target is 3 s.
    #[test]
    fn failover_report() {
        let mut times: Vec<Duration> = (200..210)
            .map(|seed| {
                Runtime::with_seed_and_config(seed, madsim::Config::default())
                    .block_on(run(Fault::KillLeader, Topology::default()))
                    .failover
                    .expect("broker-a took sends again")
            })
            .collect();
        times.sort();
        let within = times.iter().filter(|t| **t <= Duration::from_secs(3)).count();
        eprintln!(
            "whole-cluster failover over {} seeds (simulated): min {:?}, median {:?}, max {:?}; {within} within 3 s",
            times.len(),
            times[0],
            times[times.len() / 2],
            times[times.len() - 1]
        );
        assert!(times[times.len() / 2] <= Duration::from_secs(3), "the median misses 3 s");
    }

    /// The checkers catch a known bug put back on purpose: brokers that acknowledge sends
    /// before they commit lose acknowledged messages when the leader dies (over 10 seeds, at
    /// least one run must be judged lossy). The bug proposes 200 ms after it answers, so a
    /// leader killed while sends flow holds acknowledged sends in every schedule; answering
    /// at once, a run lost only if a send was in the short window at the kill, and small
    /// changes in the schedule left 10 seeds without one.
    #[test]
    fn the_checkers_catch_acks_before_commit() {
        let caught = (300..310)
            .filter(|&seed| {
                let topology = Topology { sim_bug_ack_before_commit: true, ..Topology::default() };
                let o = run_seeded(seed, Fault::KillLeader, topology);
                o.verdict.is_err()
            })
            .count();
        assert!(caught > 0, "acks before commit went unnoticed over 10 seeds");
        eprintln!("acks before commit: caught in {caught} of 10 seeds");
    }

    /// The checkers catch a stale leader that goes on acknowledging: brokers that acknowledge
    /// a send once their own log has it (`replication = "leader"`), judged by quorum rules,
    /// with broker-a's leader cut off from its peers while its clients still reach it: it
    /// acknowledges sends the new leader never gets. At least 5 of 6 seeds must catch it.
    #[test]
    fn the_checkers_catch_a_stale_leader_acknowledging() {
        let caught = (320..326)
            .filter(|&seed| {
                let topology = Topology { replication: Replication::Leader, ..Topology::default() };
                let o = run_seeded(seed, Fault::PartitionLeaderFromPeers, topology);
                eprintln!("stale leader acknowledging, seed {seed}: {:?}", o.strict);
                o.strict.is_err()
            })
            .count();
        assert!(caught >= 5, "a stale leader acknowledging caught in only {caught} of 6 seeds");
    }

    /// The checkers catch consumer offset commits applied out of order, put in on purpose:
    /// after each batch of commits, the offsets its queues had before it are proposed again
    /// (a retried older commit applied after a newer one), so a group's committed offset goes
    /// back, as the observer reading every replica's applied offsets every 100 ms sees. At
    /// least 5 of 6 seeds must catch it.
    #[test]
    fn the_checkers_catch_offset_commits_out_of_order() {
        let caught = (330..336)
            .filter(|&seed| {
                let topology =
                    Topology { sim_bug_offsets_out_of_order: true, ..Topology::default() };
                let o = run_seeded(seed, Fault::KillLeader, topology);
                eprintln!("offset commits out of order, seed {seed}: {:?}", o.verdict);
                o.verdict.as_ref().is_err_and(|e| e.contains("backwards"))
            })
            .count();
        assert!(caught >= 5, "offset commits out of order caught in only {caught} of 6 seeds");
    }

    /// The checkers catch acknowledgements before fsync, put in on purpose: every replica's
    /// log store reports an append durable as soon as it is written (its sync follows in the
    /// background), so sync flush commits and acknowledges sends no disk holds yet. The fault
    /// is aimed at that window: once the delayed and transactional workloads are done (an
    /// entry that changes metadata makes apply sync the log first, which closes the window:
    /// during them the bug is caught in only 3 of 6 seeds), broker-a's disks turn slow (a sync
    /// is durable 120 ms after it starts), then the whole group loses every unsynced write:
    /// sends acknowledged in those 120 ms are gone. At least 5 of 6 seeds must catch it. The
    /// same fault without the bug: `quiet_then_slow_disks_then_a_group_power_loss_lose_nothing`.
    #[test]
    fn the_checkers_catch_acks_before_fsync() {
        let (mut caught, mut by_quorum_check) = (0, 0);
        for seed in 340..346 {
            let topology = Topology { sim_bug_ack_before_fsync: true, ..Topology::default() };
            let o = run_seeded(seed, Fault::QuietThenSlowDisksThenPowerLossAll, topology);
            let quorum: Vec<_> = o.raft_violations.iter().filter(|(n, _)| *n == 4).collect();
            eprintln!(
                "acks before fsync, seed {seed}: {:?}; B.5 #4 broken {} times, first {:?}",
                o.verdict,
                quorum.len(),
                quorum.first()
            );
            caught += usize::from(o.verdict.as_ref().is_err_and(|e| e.contains("never consumed")));
            by_quorum_check += usize::from(!quorum.is_empty());
        }
        assert!(caught >= 5, "acks before fsync caught in only {caught} of 6 seeds");
        // The invariant itself (an applied entry on a majority's disks) catches it too.
        assert!(by_quorum_check >= 5, "B.5 #4 caught acks before fsync in {by_quorum_check} of 6");
    }

    /// The checkers catch a wiped replica taken for the member it was, put in on purpose:
    /// every replica sends its Raft calls unchecked, so in [`Fault::WipedFollower`] the wiped
    /// follower votes in the one that was cut off, which lacks what the other two committed
    /// while it was: those acknowledged sends are lost. At least 5 of 6 seeds must catch it.
    /// The same fault without the bug: `a_wiped_follower_is_refused_until_added_again`. The
    /// new leader then writes other entries where the others had applied the lost ones: B.5 #3
    /// (an applied index never changes its entry) must catch that too, in 5 of 6 seeds.
    #[test]
    fn the_checkers_catch_a_wiped_replica_taken_for_a_member() {
        let (mut caught, mut by_applied_check) = (0, 0);
        for seed in 350..356 {
            let topology = Topology { sim_bug_accept_wiped: true, ..Topology::default() };
            let o = run_seeded(seed, Fault::WipedFollower, topology);
            let rewritten: Vec<_> = o.raft_violations.iter().filter(|(n, _)| *n == 3).collect();
            eprintln!(
                "wiped replica accepted, seed {seed}: {} lost, {:?}; B.5 #3 broken {} times, first {:?}",
                o.lost,
                o.verdict,
                rewritten.len(),
                rewritten.first()
            );
            caught += usize::from(o.lost > 0 && o.verdict.is_err());
            by_applied_check += usize::from(!rewritten.is_empty());
        }
        assert!(
            caught >= 5,
            "a wiped replica taken for a member caught in only {caught} of 6 seeds"
        );
        assert!(by_applied_check >= 5, "B.5 #3 caught it in {by_applied_check} of 6 seeds");
    }

    /// The checkers catch retention deleting what it must keep, put in on purpose: segments
    /// holding parked messages not yet moved (and halves not yet resolved) are deleted like
    /// any other, so delayed messages and transactions acknowledged to their producers are
    /// never delivered. The allowance for retention (a message stored below its queue's
    /// furthest start) must not hide it: a parked message lost before it was moved is stored
    /// in no queue a consumer reads. At least 4 of 6 seeds must catch it; the same runs
    /// without the bug: [`retention_deletes_segments_under_load_and_a_failover`].
    #[test]
    fn the_checkers_catch_retention_deleting_parked_messages() {
        let caught = (500..506)
            .filter(|&seed| {
                let topology =
                    Topology { sim_bug_retention_ignores_floor: true, ..Topology::default() };
                let o = run_seeded(seed, Fault::KillLeader, topology);
                eprintln!("retention ignoring its floor, seed {seed}: {:?}", o.verdict);
                o.verdict.is_err()
            })
            .count();
        assert!(
            caught >= 4,
            "retention deleting parked messages caught in only {caught} of 6 seeds"
        );
    }

    /// The checkers catch votes that do not survive a power loss, put in on purpose: the vote
    /// is written deferred (durable up to a second later), and broker-a loses power right after
    /// it elected a new leader: restarted, its replicas are back in the old term (B.5 #5: a
    /// replica's term never goes back). At least 5 of 6 seeds must catch it, and the same
    /// fault without the bug (seed 360) passes every check.
    #[test]
    fn the_checkers_catch_a_vote_lost_in_a_power_loss() {
        let clean = run_seeded(360, Fault::ElectionThenPowerLossAll, Topology::default());
        assert!(clean.verdict.is_ok(), "without the bug: {:?}", clean.verdict);
        let caught = (360..366)
            .filter(|&seed| {
                let bugs = SimBugs { vote_not_synced: true, ..SimBugs::default() };
                let topology = Topology { sim_bugs: bugs, ..Topology::default() };
                let o = run_seeded(seed, Fault::ElectionThenPowerLossAll, topology);
                let back: Vec<_> = o.raft_violations.iter().filter(|(n, _)| *n == 5).collect();
                eprintln!(
                    "vote not synced, seed {seed}: B.5 #5 broken {} times, first {:?}; {:?}",
                    back.len(),
                    back.first(),
                    o.verdict
                );
                !back.is_empty() && o.verdict.is_err()
            })
            .count();
        assert!(caught >= 5, "a vote lost in a power loss caught in only {caught} of 6 seeds");
    }

    /// The checkers catch retention deleting what no snapshot covers, put in on purpose:
    /// segments go up to what is applied, deleted at once rather than once openraft purged
    /// them (B.5 #6: purged <= snapshot <= applied <= last log). At least 4 of 6 seeds (those of
    /// `retention_deletes_segments_under_load_and_a_failover`) must catch it.
    #[test]
    fn the_checkers_catch_retention_past_the_snapshot() {
        let caught = (500..506)
            .filter(|&seed| {
                let bugs = SimBugs { retention_past_snapshot: true, ..SimBugs::default() };
                let topology = Topology { sim_bugs: bugs, ..Topology::default() };
                let o = run_seeded(seed, Fault::KillLeader, topology);
                let order: Vec<_> = o.raft_violations.iter().filter(|(n, _)| *n == 6).collect();
                eprintln!(
                    "retention past the snapshot, seed {seed}: B.5 #6 broken {} times, first {:?}",
                    order.len(),
                    order.first()
                );
                !order.is_empty() && o.verdict.is_err()
            })
            .count();
        assert!(caught >= 4, "retention past the snapshot caught in only {caught} of 6 seeds");
    }

    /// The checkers catch metadata lost in a power loss, put in on purpose: apply makes the
    /// applied id durable before the metadata changes it covers, so broker-a's leader, losing
    /// power while transactions resolve, keeps the id and drops the changes (each half's
    /// outcome is written once) and never applies them again (B.5 #22: acknowledged metadata
    /// survives a restart, and replicas that applied the same entries hold the same
    /// metadata). Leading again, the replica also finds those halves unresolved, checks them
    /// back and commits them a second time, which rewrites the outcomes: by quiesce the
    /// replicas agree again, so it is the per-observation comparison (replicas at one applied
    /// index) that must catch it, in at least 5 of 6 seeds; the same fault without the bug
    /// (seed 370) passes every check.
    #[test]
    fn the_checkers_catch_metadata_lost_in_a_power_loss() {
        let clean = run_seeded(370, Fault::PowerLossLeaderWithLazyMetadata, Topology::default());
        assert!(clean.verdict.is_ok(), "without the bug: {:?}", clean.verdict);
        let caught = (370..376)
            .filter(|&seed| {
                let bugs = SimBugs { applied_before_metadata: true, ..SimBugs::default() };
                let topology = Topology { sim_bugs: bugs, ..Topology::default() };
                let o = run_seeded(seed, Fault::PowerLossLeaderWithLazyMetadata, topology);
                let differ: Vec<_> = o.raft_violations.iter().filter(|(n, _)| *n == 22).collect();
                eprintln!(
                    "applied id before metadata, seed {seed}: B.5 #22 broken {} times, first {:?}; {:?}",
                    differ.len(),
                    differ.first(),
                    o.verdict
                );
                o.verdict.is_err() && !differ.is_empty()
            })
            .count();
        assert!(caught >= 5, "metadata lost in a power loss caught in only {caught} of 6 seeds");
    }

    /// The checkers catch a consumer that skips, put in on purpose: brokers answer each pull
    /// that found messages with a next offset one too far, so every consumer skips a message
    /// a pull (B.5 #18: no consumer skips or goes back while it holds a queue). At least 5 of
    /// 6 seeds must catch it in that check.
    #[test]
    fn the_checkers_catch_consumers_skipping() {
        let caught = (380..386)
            .filter(|&seed| {
                let topology = Topology { sim_bug_pull_skips_one: true, ..Topology::default() };
                let o = run_seeded(seed, Fault::KillLeader, topology);
                eprintln!(
                    "pulls skipping one, seed {seed}: {} breaks, first {:?}",
                    o.breaks.len(),
                    o.breaks.first()
                );
                o.breaks.iter().any(|b| b.contains("skipped")) && o.verdict.is_err()
            })
            .count();
        assert!(caught >= 5, "consumers skipping caught in only {caught} of 6 seeds");
    }

    /// The checkers catch pulls over the brokers' bounds, put in on purpose: brokers return
    /// as many messages as a pull asks for, `pull_batch_max` ignored (B.5 #26). The run's
    /// reader asks for 1,000 a pull: at least 5 of 6 seeds must catch it.
    #[test]
    fn the_checkers_catch_unbounded_pulls() {
        let caught = (390..396)
            .filter(|&seed| {
                let topology =
                    Topology { sim_bug_pull_batch_unbounded: true, ..Topology::default() };
                let o = run_seeded(seed, Fault::KillLeader, topology);
                eprintln!("unbounded pulls, seed {seed}: {:?}", o.verdict);
                o.verdict.as_ref().is_err_and(|e| e.contains("bounds"))
            })
            .count();
        assert!(caught >= 5, "unbounded pulls caught in only {caught} of 6 seeds");
    }

    /// The checkers catch proposals over their bound, put in on purpose: brokers give their
    /// replicas 1,024 proposals in flight, not the 4 the run configures (B.5 #26, from each
    /// replica's high-water mark). At least 5 of 6 seeds must catch it.
    #[test]
    fn the_checkers_catch_unbounded_proposals() {
        let caught = (396..402)
            .filter(|&seed| {
                let topology =
                    Topology { sim_bug_proposals_unbounded: true, ..Topology::default() };
                let o = run_seeded(seed, Fault::KillLeader, topology);
                let over: Vec<_> = o.raft_violations.iter().filter(|(n, _)| *n == 26).collect();
                eprintln!(
                    "unbounded proposals, seed {seed}: {} over, first {:?}",
                    over.len(),
                    over.first()
                );
                !over.is_empty() && o.verdict.is_err()
            })
            .count();
        assert!(caught >= 5, "unbounded proposals caught in only {caught} of 6 seeds");
    }

    /// The delayed-delivery checkers catch the bugs they name, put in on purpose: a new master
    /// that moves parked messages from each queue's start (not from the replicated progress)
    /// moves some twice after the leader is killed; a schedule service 10 s ahead of the clock
    /// delivers early. Each is caught in at least one of 3 seeds.
    #[test]
    fn the_checkers_catch_delayed_delivery_bugs() {
        let bugs = [
            (Topology { sim_bug_schedule_from_zero: true, ..Topology::default() }, "moved twice"),
            (Topology { sim_bug_deliver_early: true, ..Topology::default() }, "delivered early"),
        ];
        for (topology, names) in bugs {
            let caught = (300..303)
                .filter(|&seed| {
                    let o = run_seeded(seed, Fault::KillLeader, topology.clone());
                    o.verdict.as_ref().is_err_and(|e| e.contains(names))
                })
                .count();
            assert!(caught > 0, "a bug whose messages are {names} went unnoticed over 3 seeds");
            eprintln!("{names}: caught in {caught} of 3 seeds");
        }
    }

    /// The transaction checkers catch the bugs they name, put in on purpose, with broker-a's
    /// leader killed: END_TRANSACTION that ignores the half's mark commits a transaction twice
    /// (a check-back answer races a slow local transaction's commit); a check-back answer that
    /// always commits delivers rolled-back transactions; a new master that checks back only
    /// halves stored after it became master leaves halves unresolved (and their commits
    /// undelivered). Each is caught in at least one of 3 seeds (the run stops at the first).
    #[test]
    fn the_checkers_catch_transaction_bugs() {
        let bugs = [
            (Topology { sim_bug_tx_end_unchecked: true, ..Topology::default() }, "committed twice"),
            (
                Topology { sim_bug_tx_check_answer_commits: true, ..Topology::default() },
                "rolled-back transactions delivered",
            ),
            (Topology { sim_bug_tx_scan_from_term_start: true, ..Topology::default() }, "never"),
        ];
        for (topology, names) in bugs {
            let caught = (300..303).find(|&seed| {
                let o = run_seeded(seed, Fault::KillLeader, topology.clone());
                eprintln!("{names}, seed {seed}: {:?}", o.verdict);
                o.verdict.as_ref().is_err_and(|e| e.contains(names))
            });
            assert!(caught.is_some(), "a bug whose transactions are {names} went unnoticed");
        }
    }

    /// Asynchronous replication (`replication = "leader"`) with the leader cut off its peers
    /// for 10 s (clients still reach it): every run passes the checkers by that mode's rules
    /// (acknowledged sends may be lost and their queue offsets given again, nothing else), and
    /// quorum replication's rules catch the loss in every run: the mode really acknowledges
    /// before a majority has a send, and the checkers still see it when not told to allow it.
    /// (`partition_the_leader_from_its_peers` runs the same fault with quorum replication.)
    #[test]
    fn leader_replication_loses_only_what_it_documents() {
        let mut caught = 0;
        for seed in 300..305 {
            let topology = Topology { replication: Replication::Leader, ..Topology::default() };
            let o = run_seeded(seed, Fault::PartitionLeaderFromPeers, topology);
            assert!(o.verdict.is_ok(), "seed {seed}: {:?}", o.verdict);
            if o.strict.is_err() {
                caught += 1;
            }
            eprintln!(
                "leader replication, seed {seed}: {} acknowledged sends lost, {} queue offsets given twice",
                o.lost, o.offsets_given_twice
            );
        }
        assert_eq!(caught, 5, "leader replication lost nothing: is it acknowledging early?");
    }

    /// A follower cut off from NameServer 0 (not from anything else) stays routed there until
    /// 120 s after its last registration and is gone after the next 10 s scan; it stays
    /// routed by NameServer 1 throughout. A killed replica's connections close, and both
    /// NameServers drop it at once. Prints the eviction time.
    #[madsim::test]
    async fn eviction_after_120_s_silence_or_at_once_on_close() {
        banner("eviction_after_120_s_silence_or_at_once_on_close");
        let cluster = SimCluster::start(Topology::default());
        assert!(cluster.wait_ready(Duration::from_secs(30)).await);
        let leader = cluster.leader(1).expect("broker-b has a leader");
        let cut = (0..3).find(|r| *r != leader).unwrap();
        let addr = broker_addr(1, cut);
        // Ready means the masters are routed; a follower may register a little later.
        let registered = || cluster.registry(0).and_then(|r| r.last_update_ms(&addr));
        for _ in 0..300 {
            if registered().is_some() {
                break;
            }
            madsim::time::sleep(Duration::from_millis(100)).await;
        }
        cluster.cut_from_namesrv(1, cut, 0, true);
        let last = registered().expect("the follower registered within 30 s");
        let cut_at = cluster.namesrv_now_ms(0).unwrap();
        let mut evicted_after = None;
        for _ in 0..180 {
            madsim::time::sleep(Duration::from_secs(1)).await;
            let reg = cluster.registry(0).unwrap();
            let now = cluster.namesrv_now_ms(0).unwrap();
            let silent_ms = now - last;
            let present = reg.last_update_ms(&addr).is_some();
            assert!(
                cluster.registry(1).unwrap().last_update_ms(&addr).is_some(),
                "NameServer 1 still hears from it"
            );
            if silent_ms <= 119_000 {
                assert!(present, "evicted after only {silent_ms} ms of silence");
            }
            if !present {
                evicted_after = Some(silent_ms);
                break;
            }
        }
        let evicted_after = evicted_after.expect("never evicted");
        assert!(evicted_after <= 131_000, "evicted {evicted_after} ms after the last registration");
        eprintln!(
            "eviction: {:.1} s after the last registration ({:.1} s after the cut)",
            evicted_after as f64 / 1000.0,
            (cluster.namesrv_now_ms(0).unwrap() - cut_at) as f64 / 1000.0
        );

        let victim = (0..3).find(|r| *r != cut).unwrap();
        let victim_addr = broker_addr(1, victim);
        cluster.kill(1, victim);
        madsim::time::sleep(Duration::from_millis(500)).await;
        for i in 0..2 {
            let gone = cluster.registry(i).unwrap().last_update_ms(&victim_addr).is_none();
            assert!(gone, "NameServer {i} still routes a replica whose connection closed");
        }
        cluster.stop().await;
    }

    /// Every broker replica registers with both NameServers every 30 s (observed in the
    /// NameServers' tables: the last registration time moves at least every 30 s).
    #[madsim::test]
    async fn every_broker_registers_with_every_namesrv_every_30_s() {
        banner("every_broker_registers_with_every_namesrv_every_30_s");
        let cluster = SimCluster::start(Topology::default());
        assert!(cluster.wait_ready(Duration::from_secs(30)).await);
        // Ready means every group has a master routed; a follower's first registration may
        // still be on its way (seed 26 once found one missing).
        let all_registered = || {
            (0..2).all(|i| {
                let reg = cluster.registry(i).expect("NameServer runs");
                (0..2).all(|g| (0..3).all(|r| reg.last_update_ms(&broker_addr(g, r)).is_some()))
            })
        };
        for _ in 0..30 {
            if all_registered() {
                break;
            }
            madsim::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(all_registered(), "every replica registers with every NameServer within 30 s");
        let mut seen: std::collections::BTreeMap<(usize, String), Vec<i64>> = Default::default();
        for _ in 0..100 {
            for i in 0..2 {
                let reg = cluster.registry(i).expect("NameServer runs");
                for g in 0..2 {
                    for r in 0..3 {
                        let addr = broker_addr(g, r);
                        let last = reg.last_update_ms(&addr).expect("registered");
                        let times = seen.entry((i, addr)).or_default();
                        if times.last() != Some(&last) {
                            times.push(last);
                        }
                    }
                }
            }
            madsim::time::sleep(Duration::from_secs(1)).await;
        }
        cluster.stop().await;
        assert_eq!(seen.len(), 12, "6 replicas x 2 NameServers");
        for ((i, addr), times) in &seen {
            assert!(
                times.len() >= 4,
                "{addr} registered {} times with NameServer {i} in 100 s",
                times.len()
            );
            for w in times.windows(2) {
                let gap = w[1] - w[0];
                assert!(gap <= 30_500, "{addr} -> NameServer {i}: {gap} ms between registrations");
            }
        }
    }
}
