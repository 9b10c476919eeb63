//! Raft layer tests, one module per theme.

mod storage_suite {
    //! openraft's own storage test suite against the CommitLog-backed log store and the state
    //! machine: once on the simulated disk with in-memory metadata (what the simulation uses),
    //! once on real files with sled (what a broker uses).
    use std::sync::{Arc, Mutex};

    use openraft::testing::{StoreBuilder, Suite};
    use openraft::StorageError;
    use rocketraft_raft::{LogStore, MemMeta, SledMeta, StateMachine, TypeConfig};
    use rocketraft_store::io::mmap::MmapStorage;
    use rocketraft_store::io::sim::SimStorage;
    use rocketraft_store::io::Storage;
    use rocketraft_store::{CommitLog, CommitLogConfig, DispatchConfig, Dispatcher, FlushMode};

    fn config() -> CommitLogConfig {
        CommitLogConfig {
            segment_size_bytes: 64 * 1024,
            checkpoint_every_entries: 4,
            ..Default::default()
        }
    }

    type Stores<S, M> = (LogStore<S, M>, StateMachine<S, M>);

    fn build<S: Storage + Clone, M: rocketraft_raft::MetaStore>(
        storage: S,
        meta: M,
    ) -> Stores<S, M> {
        let meta = Arc::new(meta);
        let (log, _) = CommitLog::open(storage.clone(), config()).unwrap();
        let dispatcher = Dispatcher::open(storage, DispatchConfig::default(), &log).unwrap();
        let log = Arc::new(Mutex::new(log));
        let ls = LogStore::new(log.clone(), meta.clone(), FlushMode::Sync);
        let sm = StateMachine::new(log, Arc::new(Mutex::new(dispatcher)), meta, None).unwrap();
        (ls, sm)
    }

    struct Sim;

    impl
        StoreBuilder<
            TypeConfig,
            LogStore<SimStorage, MemMeta>,
            StateMachine<SimStorage, MemMeta>,
            (),
        > for Sim
    {
        async fn build(
            &self,
        ) -> Result<
            ((), LogStore<SimStorage, MemMeta>, StateMachine<SimStorage, MemMeta>),
            StorageError<u64>,
        > {
            let (ls, sm) = build(SimStorage::new(), MemMeta::new());
            Ok(((), ls, sm))
        }
    }

    struct Real;

    impl
        StoreBuilder<
            TypeConfig,
            LogStore<MmapStorage, SledMeta>,
            StateMachine<MmapStorage, SledMeta>,
            tempfile::TempDir,
        > for Real
    {
        async fn build(
            &self,
        ) -> Result<
            (
                tempfile::TempDir,
                LogStore<MmapStorage, SledMeta>,
                StateMachine<MmapStorage, SledMeta>,
            ),
            StorageError<u64>,
        > {
            let dir = tempfile::tempdir().unwrap();
            let storage = MmapStorage::new(dir.path().join("data")).unwrap();
            let meta = SledMeta::open(dir.path().join("meta")).unwrap();
            let (ls, sm) = build(storage, meta);
            Ok((dir, ls, sm))
        }
    }

    #[test]
    fn openraft_suite_on_the_simulated_disk() {
        Suite::test_all(Sim).unwrap();
    }

    #[test]
    fn openraft_suite_on_real_files_and_sled() {
        Suite::test_all(Real).unwrap();
    }
}

mod cluster {
    //! Three replicas in one process on loopback TCP, real files (mmap) and sled.
    //!
    //! ```text
    //!   start n0 n1 n2 -> a leader is elected
    //!   32 writers x 313 proposals through the leader -> all commit; logs byte-identical
    //!   stop the leader -> a new one is elected and takes writes
    //!   restart the old leader -> it catches up; all three logs byte-identical again
    //! ```
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use bytes::Bytes;
    use rocketraft_protocol::message::{body_crc, MessageRecord};
    use rocketraft_raft::{NodeConfig, RaftNode, RaftTiming, Request, SledMeta};
    use rocketraft_store::io::mmap::MmapStorage;
    use rocketraft_store::{
        CommitLogConfig, CommitLogOffset, DispatchConfig, FlushMode, QueueOffset,
    };
    use tokio::net::TcpListener;

    type Node = RaftNode<MmapStorage, SledMeta>;

    fn record(queue_id: i32, queue_offset: i64) -> Bytes {
        let body = Bytes::from(format!("q{queue_id}-o{queue_offset}"));
        let rec = MessageRecord {
            body_crc: body_crc(&body),
            queue_id,
            flag: 0,
            queue_offset,
            physical_offset: 0,
            sys_flag: 0,
            born_timestamp: 1,
            born_host: "127.0.0.1:1".parse().unwrap(),
            store_timestamp: 2,
            store_host: "127.0.0.1:10911".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body,
            topic: "T".into(),
            properties: String::new(),
        };
        Bytes::from(rec.encode().unwrap())
    }

    fn config(id: u64, peers: &BTreeMap<u64, String>) -> NodeConfig {
        NodeConfig {
            group: "broker-a".into(),
            id,
            peers: peers.clone(),
            timing: RaftTiming {
                heartbeat_interval_ms: 100,
                election_timeout_min_ms: 400,
                election_timeout_max_ms: 800,
                snapshot_every_entries: 100_000,
            },
            commit_log: CommitLogConfig { segment_size_bytes: 1 << 20, ..Default::default() },
            dispatch: DispatchConfig::default(),
            flush: FlushMode::Sync,
        }
    }

    async fn start(
        id: u64,
        dir: &Path,
        peers: &BTreeMap<u64, String>,
        listener: Option<TcpListener>,
    ) -> Node {
        let listener = match listener {
            Some(l) => l,
            None => TcpListener::bind(&peers[&id]).await.unwrap(),
        };
        let storage = MmapStorage::new(dir.join("data")).unwrap();
        let meta = SledMeta::open(dir.join("meta")).unwrap();
        RaftNode::start(config(id, peers), storage, meta, listener, None).await.unwrap()
    }

    async fn leader_of(nodes: &BTreeMap<u64, Node>) -> u64 {
        for _ in 0..100 {
            for n in nodes.values() {
                if let Some(l) = n.raft.metrics().borrow().current_leader {
                    if nodes.contains_key(&l) {
                        return l;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no leader within 10 s");
    }

    /// The bytes of a replica's log from its start to its end.
    fn log_bytes(node: &Node) -> Vec<u8> {
        let log = node.log.lock().unwrap();
        let (start, end) = (log.start().position.0, log.end().position.0);
        let seg = log.config().segment_size_bytes;
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            let stop = end.min(at - at % seg + seg);
            out.extend(log.read_raw(CommitLogOffset(at), (stop - at) as usize).unwrap());
            at = stop;
        }
        out
    }

    async fn wait_applied(nodes: &BTreeMap<u64, Node>, index: u64) {
        for n in nodes.values() {
            n.raft
                .wait(Some(Duration::from_secs(20)))
                .applied_index_at_least(Some(index), "catch up")
                .await
                .unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_replicas_elect_replicate_fail_over_and_catch_up() {
        let root = tempfile::tempdir().unwrap();
        let dirs: BTreeMap<u64, PathBuf> =
            (0..3).map(|i| (i, root.path().join(format!("n{i}")))).collect();
        let mut listeners = BTreeMap::new();
        let mut peers = BTreeMap::new();
        for id in 0..3u64 {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            peers.insert(id, l.local_addr().unwrap().to_string());
            listeners.insert(id, l);
        }
        let mut nodes = BTreeMap::new();
        for id in 0..3u64 {
            let node = start(id, &dirs[&id], &peers, listeners.remove(&id)).await;
            nodes.insert(id, node);
        }

        tracing::info!("--- a leader is elected");
        let leader = leader_of(&nodes).await;

        tracing::info!("--- 10,016 proposals from 32 writers, one queue each");
        let mut writers = Vec::new();
        for w in 0..32i32 {
            let raft = nodes[&leader].raft.clone();
            writers.push(tokio::spawn(async move {
                for offset in 0..313i64 {
                    raft.client_write(Request::Messages(record(w, offset))).await.unwrap();
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        let last = nodes[&leader].raft.metrics().borrow().last_log_index.unwrap();
        wait_applied(&nodes, last).await;
        let bytes0 = log_bytes(&nodes[&0]);
        assert!(bytes0.len() > 10_016 * 100);
        for id in 1..3 {
            assert!(
                log_bytes(&nodes[&id]) == bytes0,
                "replica {id}'s log differs from replica 0's"
            );
        }
        for n in nodes.values() {
            let d = n.dispatcher.lock().unwrap();
            assert_eq!(
                d.queue("T", 31).unwrap().max_offset(),
                QueueOffset(313),
                "every replica dispatched every record"
            );
        }

        tracing::info!("--- stop the leader; a new one is elected and takes writes");
        let old = nodes.remove(&leader).unwrap();
        old.shutdown().await;
        let new_leader = leader_of(&nodes).await;
        assert_ne!(new_leader, leader);
        for offset in 0..50 {
            nodes[&new_leader]
                .raft
                .client_write(Request::Messages(record(100, offset)))
                .await
                .unwrap();
        }

        tracing::info!("--- restart the old leader; it catches up");
        let restarted = start(leader, &dirs[&leader], &peers, None).await;
        nodes.insert(leader, restarted);
        let last = nodes[&new_leader].raft.metrics().borrow().last_log_index.unwrap();
        wait_applied(&nodes, last).await;
        let bytes = log_bytes(&nodes[&new_leader]);
        for (id, n) in &nodes {
            assert!(log_bytes(n) == bytes, "replica {id}'s log differs after the failover");
            assert_eq!(
                n.dispatcher.lock().unwrap().queue("T", 100).unwrap().max_offset(),
                QueueOffset(50)
            );
        }
        for (_, n) in nodes {
            n.shutdown().await;
        }
    }
}
