//! Raft layer tests, one module per theme.

/// A read-write topic of 4 queues, as a metadata command carries it.
fn topic_meta(name: &str) -> rocketraft_raft::types::TopicMeta {
    rocketraft_raft::types::TopicMeta {
        name: name.into(),
        read_queue_nums: 4,
        write_queue_nums: 4,
        perm: 6,
        topic_sys_flag: 0,
        order: false,
        filter_type: "SINGLE_TAG".into(),
    }
}

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
        CommitLogConfig { segment_size_bytes: 64 * 1024, checkpoint_every_entries: 4 }
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

    /// A leader's log that would replace entries this replica has applied is refused with
    /// `AppliedEntriesLost`, and the log keeps them: the group lost committed entries (async
    /// flush, a power loss of a majority), and this replica's state still holds what they
    /// changed. Entries after the applied index are replaced as usual.
    #[tokio::test]
    async fn replacing_applied_entries_is_refused() {
        use openraft::storage::{RaftLogStorage, RaftStateMachine};
        use openraft::testing::{blank_ent, log_id};

        let (mut ls, mut sm) = build(SimStorage::new(), MemMeta::new());
        let entries: Vec<_> = (1..=4).map(|i| blank_ent::<TypeConfig>(1, 0, i)).collect();
        let stored: Vec<_> =
            entries.iter().map(|e| rocketraft_raft::types::to_log_entry(e).unwrap()).collect();
        ls.commit_log().lock().unwrap().append(&stored).unwrap();
        sm.apply(entries[..3].to_vec()).await.unwrap();

        let refused = ls.truncate(log_id(2, 1, 3)).await.unwrap_err().to_string();
        assert!(refused.contains("applied up to 3"), "{refused}");
        let last = ls.get_log_state().await.unwrap().last_log_id.map(|l| l.index);
        assert_eq!(last, Some(4), "nothing was truncated");

        ls.truncate(log_id(2, 1, 4)).await.unwrap();
        let last = ls.get_log_state().await.unwrap().last_log_id.map(|l| l.index);
        assert_eq!(last, Some(3));
    }

    /// A deleted topic takes its consumer offsets with it, and a commit applied after the
    /// deletion stores nothing, however the entries are batched into `apply` calls (so
    /// replicas that batch differently hold the same metadata).
    #[tokio::test]
    async fn a_deleted_topics_offsets_go_however_the_entries_are_batched() {
        use openraft::storage::RaftStateMachine;
        use openraft::testing::log_id;
        use openraft::{Entry, EntryPayload};
        use rocketraft_raft::types::{ConsumerOffset, Request};
        use rocketraft_raft::MetaCommand;

        let topic = |name: &str| MetaCommand::PutTopic(super::topic_meta(name));
        let commit = |t: &str, queue_id: i32| {
            let o = ConsumerOffset { group: "g".into(), topic: t.into(), queue_id, offset: 1 };
            MetaCommand::CommitOffsets(vec![o])
        };
        let cmds = [
            topic("T"),
            topic("U"),
            commit("T", 0),
            commit("U", 0),
            MetaCommand::DeleteTopic { topic: "T".into() },
            commit("T", 1),
        ];
        for batch in 1..=cmds.len() {
            let (ls, mut sm) = build(SimStorage::new(), MemMeta::new());
            let entries: Vec<Entry<TypeConfig>> = cmds
                .iter()
                .enumerate()
                .map(|(i, c)| Entry {
                    log_id: log_id(1, 0, i as u64 + 1),
                    payload: EntryPayload::Normal(Request::Metadata(vec![c.clone()])),
                })
                .collect();
            let stored: Vec<_> =
                entries.iter().map(|e| rocketraft_raft::types::to_log_entry(e).unwrap()).collect();
            ls.commit_log().lock().unwrap().append(&stored).unwrap();
            for chunk in entries.chunks(batch) {
                sm.apply(chunk.to_vec()).await.unwrap();
            }
            assert_eq!(sm.offset_topics("g").unwrap(), ["U".to_owned()].into(), "batch {batch}");
            assert!(sm.offset_groups("T").unwrap().is_empty(), "batch {batch}");
        }
    }

    /// Replication that asks for entries from a purged index (a range openraft chose before
    /// the purge) gets none, never the entries after the purge: those would reach the
    /// follower as if they came right after what it has. (Found by the swarm: a follower back
    /// from a restart while its peers purged their logs.)
    #[tokio::test]
    async fn replication_never_reads_past_a_purged_start() {
        use openraft::storage::{RaftLogReader, RaftLogStorage};
        use openraft::testing::{blank_ent, log_id};

        let (mut ls, _sm) = build(SimStorage::new(), MemMeta::new());
        let entries: Vec<_> = (1..=10).map(|i| blank_ent::<TypeConfig>(1, 0, i)).collect();
        let stored: Vec<_> =
            entries.iter().map(|e| rocketraft_raft::types::to_log_entry(e).unwrap()).collect();
        ls.commit_log().lock().unwrap().append(&stored).unwrap();
        ls.purge(log_id(1, 0, 6)).await.unwrap();
        let mut reader = ls.get_log_reader().await;
        let sent = reader.limited_get_log_entries(4, 11).await.unwrap();
        let first = sent.first().map(|e| e.log_id.index);
        assert!(sent.is_empty(), "entries from {first:?} sent for a range from 4");
        let sent = reader.limited_get_log_entries(7, 11).await.unwrap();
        assert_eq!(sent.first().map(|e| e.log_id.index), Some(7));
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
    use rocketraft_store::{CommitLogConfig, DispatchConfig, FlushMode, QueueOffset};
    use tokio::net::TcpListener;

    type Node = RaftNode<MmapStorage, SledMeta>;

    fn record(queue_id: i32, queue_offset: i64) -> Bytes {
        let body = Bytes::from(format!("q{queue_id}-o{queue_offset}"));
        let rec = MessageRecord {
            body_crc: body_crc(&body),
            queue_id,
            queue_offset,
            body,
            topic: "T".into(),
            ..Default::default()
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
            // Real files on the machine's shared disk, whose usage is others'.
            retention: rocketraft_store::RetentionConfig::by_age_only(),
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

    /// Three Raft ports on loopback, bound, and the peer list naming them.
    pub(super) async fn bind_three() -> (BTreeMap<u64, TcpListener>, BTreeMap<u64, String>) {
        let mut listeners = BTreeMap::new();
        let mut peers = BTreeMap::new();
        for id in 0..3u64 {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            peers.insert(id, l.local_addr().unwrap().to_string());
            listeners.insert(id, l);
        }
        (listeners, peers)
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
        log.bytes_between(log.start().position, log.end().position).unwrap()
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

    /// Mutual TLS on the Raft port. A group whose replicas hold certificates of the cluster's CA
    /// elects and replicates. A forged AppendEntries from a higher term (which a replica would
    /// obey: it would depose its leader) is refused and changes nothing when it comes without
    /// the cluster's key: over plain TCP, or over TLS with another CA's certificate. The control:
    /// with the key, a request is answered.
    ///
    /// ```text
    ///   n0 <-mTLS-> n1 <-mTLS-> n2          attacker --plain / foreign cert--> n_follower: closed
    /// ```
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_a_forged_append_entries_without_the_cluster_key_changes_nothing() {
        use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
        use openraft::{BasicNode, Vote};
        use rocketraft_raft::budget::ReplicationBudget;
        use rocketraft_raft::network::{Network, RaftTls};
        use rocketraft_remoting::tls::{throwaway, ClientTls, ServerTls, TlsMode};

        let key = throwaway(&["127.0.0.1"]).unwrap();
        let identity = Some((key.cert_pem.as_str(), key.key_pem.as_str()));
        let tls = RaftTls {
            server: ServerTls::new(&key.pem(true), TlsMode::Enforcing).unwrap(),
            client: ClientTls::new(&key.ca_pem, identity).unwrap(),
        };
        let root = tempfile::tempdir().unwrap();
        let (mut listeners, peers) = bind_three().await;
        let mut nodes = BTreeMap::new();
        for id in 0..3u64 {
            let dir = root.path().join(format!("n{id}"));
            let storage = MmapStorage::new(dir.join("data")).unwrap();
            let meta = SledMeta::open(dir.join("meta")).unwrap();
            let config = NodeConfig { tls: Some(tls.clone()), ..config(id, &peers) };
            let listener = listeners.remove(&id).unwrap();
            let node = RaftNode::start(config, storage, meta, listener, None).await.unwrap();
            nodes.insert(id, node);
        }

        tracing::info!("--- over mutual TLS, a leader is elected and replicates");
        let leader = leader_of(&nodes).await;
        for offset in 0..20i64 {
            nodes[&leader].raft.client_write(Request::Messages(record(0, offset))).await.unwrap();
        }
        let last = nodes[&leader].raft.metrics().borrow().last_log_index.unwrap();
        wait_applied(&nodes, last).await;
        let follower = *nodes.keys().find(|id| **id != leader).unwrap();
        let state = |n: &Node| {
            let m = n.raft.metrics().borrow().clone();
            (m.current_term, m.vote, m.last_log_index, m.current_leader)
        };
        let before = state(&nodes[&follower]);

        let forged = || openraft::raft::AppendEntriesRequest {
            vote: Vote::new_committed(before.0 + 5, 7),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        };
        let node = BasicNode { addr: peers[&follower].clone() };
        let option = || RPCOption::new(Duration::from_secs(5));
        let budget = std::sync::Arc::new(ReplicationBudget::default());
        let attacker = |tls: Option<ClientTls>| {
            Network::new("broker-a", Default::default(), budget.clone()).with_tls(tls)
        };

        tracing::info!("--- without the key: plain TCP, then TLS with another CA's certificate");
        let mut plain = attacker(None).new_client(follower, &node).await;
        assert!(plain.append_entries(forged(), option()).await.is_err(), "plain TCP answered");
        let other = throwaway(&["127.0.0.1"]).unwrap();
        let foreign = ClientTls::new(&key.ca_pem, Some((&other.cert_pem, &other.key_pem))).unwrap();
        let mut foreign = attacker(Some(foreign)).new_client(follower, &node).await;
        assert!(foreign.append_entries(forged(), option()).await.is_err(), "a foreign cert got in");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(state(&nodes[&follower]), before, "the forged requests changed the follower");
        assert_eq!(leader_of(&nodes).await, leader);

        tracing::info!("--- the control: with the key, a (harmless, stale) vote is answered");
        let mut keyed = attacker(Some(tls.client.clone())).new_client(follower, &node).await;
        let stale = openraft::raft::VoteRequest::new(Vote::new(0, 7), None);
        let answer = keyed.vote(stale, option()).await.expect("answered over mutual TLS");
        assert!(!answer.vote_granted);
        for n in nodes.into_values() {
            n.shutdown().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_replicas_elect_replicate_fail_over_and_catch_up() {
        let root = tempfile::tempdir().unwrap();
        let dirs: BTreeMap<u64, PathBuf> =
            (0..3).map(|i| (i, root.path().join(format!("n{i}")))).collect();
        let (mut listeners, peers) = bind_three().await;
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

mod recovery {
    //! Catch-up by snapshot after the log was purged; a full disk on the leader; a membership
    //! that disagrees with the stored one; corrupt and misdirected RPC frames. Three replicas
    //! in one process on loopback TCP, on the simulated disk (so faults can be injected).
    use std::collections::BTreeMap;
    use std::time::Duration;

    use rocketraft_raft::network::{Envelope, RpcRequest, RpcResponse};
    use rocketraft_raft::types::ConsumerOffset;
    use rocketraft_raft::{
        MemMeta, MetaCommand, NodeConfig, RaftNode, RaftTiming, Request, StartError,
    };
    use rocketraft_store::io::sim::SimStorage;
    use rocketraft_store::{
        CommitLogConfig, CommitLogOffset, DispatchConfig, FlushMode, RaftIndex,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    type Node = RaftNode<SimStorage, MemMeta>;

    struct Group {
        peers: BTreeMap<u64, String>,
        disks: BTreeMap<u64, (SimStorage, MemMeta)>,
        nodes: BTreeMap<u64, Node>,
        /// Every segment counts as old and retention runs every 100 ms.
        retain_nothing: bool,
        flush: FlushMode,
        /// Applied to every node's config last.
        tweak: fn(&mut NodeConfig),
    }

    fn config(id: u64, peers: &BTreeMap<u64, String>) -> NodeConfig {
        NodeConfig {
            group: "broker-a".into(),
            id,
            peers: peers.clone(),
            timing: RaftTiming {
                heartbeat_interval_ms: 100,
                election_timeout_min_ms: 600,
                election_timeout_max_ms: 800,
                snapshot_every_entries: 40,
            },
            commit_log: CommitLogConfig { segment_size_bytes: 4096, ..Default::default() },
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

    /// A metadata write: an offset commit on one of 7 topics (put in the same entry: offsets
    /// are kept only for topics that exist).
    fn offset_write(n: u64) -> Request {
        let topic = format!("topic-{}", n % 7);
        Request::Metadata(vec![
            MetaCommand::PutTopic(super::topic_meta(&topic)),
            MetaCommand::CommitOffsets(vec![ConsumerOffset {
                group: "g".into(),
                topic,
                queue_id: (n % 4) as i32,
                offset: n,
            }]),
        ])
    }

    impl Group {
        async fn shutdown(&mut self) {
            for (_, n) in std::mem::take(&mut self.nodes) {
                n.shutdown().await;
            }
        }

        async fn start() -> Group {
            Self::start_with(false).await
        }

        async fn start_with(retain_nothing: bool) -> Group {
            Self::start_flushing(retain_nothing, FlushMode::Sync).await
        }

        async fn start_flushing(retain_nothing: bool, flush: FlushMode) -> Group {
            Self::start_tweaked(retain_nothing, flush, |_| {}).await
        }

        async fn start_tweaked(
            retain_nothing: bool,
            flush: FlushMode,
            tweak: fn(&mut NodeConfig),
        ) -> Group {
            let (mut listeners, peers) = super::cluster::bind_three().await;
            let disks: BTreeMap<_, _> =
                (0..3).map(|id| (id, (SimStorage::new(), MemMeta::new()))).collect();
            let mut g =
                Group { peers, disks, nodes: BTreeMap::new(), retain_nothing, flush, tweak };
            for id in 0..3 {
                g.start_node(id, listeners.remove(&id)).await.unwrap();
            }
            g
        }

        async fn start_node(
            &mut self,
            id: u64,
            listener: Option<TcpListener>,
        ) -> Result<(), StartError> {
            let listener = match listener {
                Some(l) => l,
                None => TcpListener::bind(&self.peers[&id]).await.unwrap(),
            };
            let (disk, meta) = self.disks[&id].clone();
            let mut c = config(id, &self.peers);
            c.flush = self.flush;
            if self.retain_nothing {
                c.retention.file_reserved_hours = 0;
                c.retention_check_ms = 100;
            }
            (self.tweak)(&mut c);
            let node = RaftNode::start(c, disk, meta, listener, None).await?;
            self.nodes.insert(id, node);
            Ok(())
        }

        /// A proposer on replica `id` (any replica: a follower's answers NotLeader).
        fn proposer(
            &self,
            id: u64,
            config: rocketraft_raft::ProposerConfig,
        ) -> rocketraft_raft::Proposer {
            let n = &self.nodes[&id];
            let parts = rocketraft_raft::proposer::ProposerParts {
                raft: n.raft.clone(),
                log: n.log.clone(),
                dispatcher: n.dispatcher.clone(),
                local_appends: n.local_appends.clone(),
                clock: std::sync::Arc::new(rocketraft_raft::clock::GroupClock::new(0)),
                gate: std::sync::Arc::default(),
                stats: std::sync::Arc::default(),
            };
            rocketraft_raft::Proposer::start(parts, config)
        }

        async fn leader(&self, not: Option<u64>) -> u64 {
            for _ in 0..100 {
                for n in self.nodes.values() {
                    if let Some(l) = n.raft.metrics().borrow().current_leader {
                        if self.nodes.contains_key(&l) && Some(l) != not {
                            return l;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("no leader within 10 s");
        }

        async fn write(&self, leader: u64, range: std::ops::Range<u64>) {
            for n in range {
                self.nodes[&leader].raft.client_write(offset_write(n)).await.unwrap();
            }
        }

        async fn wait_applied(&self, index: u64) {
            for n in self.nodes.values() {
                n.raft
                    .wait(Some(Duration::from_secs(20)))
                    .applied_index_at_least(Some(index), "catch up")
                    .await
                    .unwrap();
            }
        }

        fn last_index(&self, id: u64) -> u64 {
            self.nodes[&id].raft.metrics().borrow().last_log_index.unwrap()
        }
    }

    /// Bytes of a log from `from` to its end.
    fn bytes_from(node: &Node, from: CommitLogOffset) -> Vec<u8> {
        let log = node.log.lock().unwrap();
        log.bytes_between(from, log.end().position).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_down_while_the_log_was_purged_catches_up_by_snapshot() {
        let mut g = Group::start().await;
        let leader = g.leader(None).await;
        let lagger = (0..3).find(|id| *id != leader).unwrap();
        let proposer = g.proposer(leader, Default::default());
        for i in 0..12 {
            proposer.submit(vec![record(i % 4, format!("before-{i}"))]).await.unwrap();
        }
        g.write(leader, 0..20).await;
        g.wait_applied(g.last_index(leader)).await;

        tracing::info!("--- the lagger stops; the others write on, snapshot and purge their logs");
        g.nodes.remove(&lagger).unwrap().shutdown().await;
        g.write(leader, 20..400).await;
        for i in 0..8 {
            // Queue 0 only: queues 1-3 get nothing more after the lagger left.
            proposer.submit(vec![record(0, format!("during-{i}"))]).await.unwrap();
        }
        g.write(leader, 400..420).await;
        let last = g.last_index(leader);
        for n in g.nodes.values() {
            // The snapshot policy (every 40 entries) has built one near the end by now.
            let m = n
                .raft
                .wait(Some(Duration::from_secs(20)))
                .metrics(|m| m.snapshot.is_some_and(|s| s.index + 40 >= last), "a recent snapshot")
                .await
                .unwrap();
            n.purge_log(m.snapshot.unwrap().index).await.unwrap();
        }
        for _ in 0..50 {
            let started = g.nodes[&leader].log.lock().unwrap().start().next_index;
            if started > RaftIndex(20) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let leader_start = g.nodes[&leader].log.lock().unwrap().start();
        assert!(
            leader_start.next_index > RaftIndex(20),
            "the leader's log was purged past what the lagger has"
        );

        tracing::info!("--- the lagger restarts and gets the snapshot");
        g.start_node(lagger, None).await.unwrap();
        g.write(leader, 420..440).await;
        let last = g.last_index(leader);
        g.wait_applied(last).await;
        let lag_start = g.nodes[&lagger].log.lock().unwrap().start();
        let snapshot_cut = g.nodes[&lagger].raft.metrics().borrow().snapshot.unwrap().index + 1;
        assert!(
            lag_start.next_index < RaftIndex(snapshot_cut),
            "the lagger's log starts at its snapshot's cut ({snapshot_cut}): the history before \
             it, which its leader retains, was not copied"
        );
        assert_eq!(
            lag_start,
            g.nodes[&leader].log.lock().unwrap().start(),
            "the lagger holds the history its leader retains"
        );
        let from = lag_start.position;
        assert!(
            bytes_from(&g.nodes[&lagger], from) == bytes_from(&g.nodes[&leader], from),
            "logs differ"
        );
        let off = g.nodes[&lagger].state_machine.consumer_offset("g", "topic-0", 0).unwrap();
        assert_eq!(off, Some(420), "metadata arrived with the snapshot and the entries after it");
        for q in 0..4 {
            let next = |id: u64| {
                g.nodes[&id].dispatcher.lock().unwrap().queue("T", q).map(|q| q.max_offset())
            };
            assert_eq!(next(lagger), next(leader), "queue {q} continues where the group left it");
            let first = |id: u64| {
                g.nodes[&id].dispatcher.lock().unwrap().queue("T", q).map(|q| q.min_offset())
            };
            assert_eq!(first(lagger), first(leader), "queue {q} starts where the leader's does");
        }
        assert_eq!(
            g.nodes[&leader].dispatcher.lock().unwrap().queue("T", 0).unwrap().max_offset().0,
            11
        );
        g.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_stops_the_leader_and_loses_nothing_committed() {
        let mut g = Group::start().await;
        let leader = g.leader(None).await;
        g.write(leader, 0..30).await;
        let committed = g.last_index(leader);
        g.wait_applied(committed).await;

        tracing::info!(
            "--- the leader's disk fills up: its next append fails and Raft stops there"
        );
        g.disks[&leader].0.set_disk_full(true);
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            g.nodes[&leader].raft.client_write(offset_write(99)),
        )
        .await;
        assert!(!matches!(r, Ok(Ok(_))), "a write the disk refused was acknowledged");
        let old = g.nodes.remove(&leader).unwrap();
        let new_leader = g.leader(Some(leader)).await;
        g.write(new_leader, 100..110).await;
        old.shutdown().await;

        tracing::info!("--- with space again the old leader restarts with everything committed, and catches up");
        g.disks[&leader].0.set_disk_full(false);
        g.start_node(leader, None).await.unwrap();
        let last = g.last_index(new_leader);
        g.wait_applied(last).await;
        for n in g.nodes.values() {
            assert_eq!(
                n.state_machine.consumer_offset("g", "topic-4", 1).unwrap(),
                Some(109), // write 109 (after the failover) went to topic-4 queue 1
                "node {}",
                n.raft.metrics().borrow().id
            );
        }
        g.shutdown().await;
    }

    /// A replica joins a running group (started outside the peer list, it waits; added, it
    /// catches up as a learner, then votes and takes part in commits), and another leaves it:
    /// the removed one sees its removal and stops, and a restart on its data directory is
    /// refused. The leader is never removed, nor the last voter; the peer list is only the
    /// bootstrap's (a replica outside it starts again on its own data).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_join_and_leave_a_running_group() {
        use rocketraft_raft::MembershipError;
        let mut g = Group::start().await;
        let leader = g.leader(None).await;
        g.write(leader, 0..20).await;

        // A new replica, not in the peer list: it does not bootstrap, it waits.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        g.disks.insert(3, (SimStorage::new(), MemMeta::new()));
        g.start_node(3, Some(listener)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(g.nodes[&3].raft.metrics().borrow().current_leader, None);
        let n = &g.nodes[&leader];
        let members = n.add_replica(3, &addr, Duration::from_secs(20)).await.unwrap();
        assert_eq!(members.voters, [0, 1, 2, 3].into());
        assert!(members.learners.is_empty());
        // Adding it again is a no-op; another address for it is refused.
        assert_eq!(n.add_replica(3, &addr, Duration::from_secs(5)).await.unwrap(), members);
        let other = n.add_replica(3, "127.0.0.1:1", Duration::from_secs(5)).await;
        assert!(matches!(other, Err(MembershipError::OtherAddress { .. })), "{other:?}");
        g.write(leader, 20..40).await;
        g.wait_applied(g.last_index(leader)).await;
        let whole = |id: u64| {
            let log = g.nodes[&id].log.lock().unwrap();
            log.bytes_between(log.start().position, log.end().position).unwrap()
        };
        assert_eq!(whole(3), whole(leader), "caught up whole");

        // The leader and the last voter are not removed.
        let n = &g.nodes[&leader];
        let itself = n.remove_replica(leader, Duration::from_secs(5)).await;
        assert_eq!(itself, Err(MembershipError::RemovingLeader(leader)));
        // A follower leaves: it sees it and stops; it does not start again.
        let gone = (0..3).find(|id| *id != leader).unwrap();
        let members = n.remove_replica(gone, Duration::from_secs(20)).await.unwrap();
        assert!(!members.voters.contains(&gone) && !members.learners.contains(&gone));
        assert_eq!(members.voters.len(), 3);
        tokio::time::timeout(Duration::from_secs(10), g.nodes[&gone].removed())
            .await
            .expect("the removed replica learns it was removed");
        g.nodes.remove(&gone).unwrap().shutdown().await;
        let err = g.start_node(gone, None).await.expect_err("a removed replica stays out");
        assert!(matches!(err, StartError::Removed { .. }), "{err}");
        // The others go on committing without it.
        g.write(leader, 40..60).await;
        g.wait_applied(g.last_index(leader)).await;

        // The added replica restarts on its own data (it is in no peer list) and stays a voter.
        g.nodes.remove(&3).unwrap().shutdown().await;
        let listener = TcpListener::bind(&addr).await.unwrap();
        g.start_node(3, Some(listener)).await.unwrap();
        g.write(leader, 60..70).await;
        g.wait_applied(g.last_index(leader)).await;
        let voters: std::collections::BTreeSet<u64> =
            g.nodes[&3].raft.metrics().borrow().membership_config.voter_ids().collect();
        assert!(voters.contains(&3) && !voters.contains(&gone), "{voters:?}");
        g.shutdown().await;
    }

    /// A replica whose data directory was wiped and that is started again under its old id is
    /// refused by its group (each call names the incarnation the group recorded): it neither
    /// votes nor counts toward a commit, so with the other follower down nothing commits
    /// (before, the leader counted the empty replica's acknowledgements and a later election
    /// could lose acknowledged entries). Removed and added again, it catches up and counts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wiped_replica_is_refused_until_it_is_added_again() {
        let mut g = Group::start().await;
        let leader = g.leader(None).await;
        g.write(leader, 0..10).await;
        // The leader records every member's incarnation within a second or two.
        for _ in 0..100 {
            let sm = &g.nodes[&leader].state_machine;
            if (0..3).all(|id| sm.incarnation_of(id).is_some()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let sm = &g.nodes[&leader].state_machine;
        assert!((0..3).all(|id| sm.incarnation_of(id).is_some()), "incarnations recorded");
        // Wipe a follower that is not the lowest id (that one would bootstrap a group of its
        // own when it comes back empty: refused all the same, but noisier).
        let wiped = (1..3).find(|id| *id != leader).unwrap();
        let other = (0..3).find(|id| *id != leader && *id != wiped).unwrap();
        g.nodes.remove(&wiped).unwrap().shutdown().await;
        g.disks.insert(wiped, (SimStorage::new(), MemMeta::new()));
        g.start_node(wiped, None).await.unwrap();
        g.nodes.remove(&other).unwrap().shutdown().await;
        let n = &g.nodes[&leader];
        let write =
            tokio::time::timeout(Duration::from_secs(3), n.raft.client_write(offset_write(10)));
        assert!(write.await.is_err(), "a write committed with the wiped replica's help");
        assert_eq!(g.nodes[&wiped].raft.metrics().borrow().last_log_index, None, "it got nothing");

        // The other follower back: the write commits. Then the wiped replica is removed and
        // added again, under its old id and address, with its new data.
        g.start_node(other, None).await.unwrap();
        let committed = g.last_index(leader);
        for id in [leader, other] {
            let wait = g.nodes[&id].raft.wait(Some(Duration::from_secs(20)));
            wait.applied_index_at_least(Some(committed), "commit").await.unwrap();
        }
        let n = &g.nodes[&leader];
        let adding = n.add_replica(wiped, &g.peers[&wiped], Duration::from_secs(5)).await;
        assert!(
            matches!(adding, Err(rocketraft_raft::MembershipError::OtherData(id)) if id == wiped),
            "{adding:?}"
        );
        n.remove_replica(wiped, Duration::from_secs(10)).await.unwrap();
        let members =
            n.add_replica(wiped, &g.peers[&wiped], Duration::from_secs(20)).await.unwrap();
        assert!(members.voters.contains(&wiped), "{members:?}");
        // It counts again: with the other follower down, writes commit.
        g.nodes.remove(&other).unwrap().shutdown().await;
        let n = &g.nodes[&leader];
        let write =
            tokio::time::timeout(Duration::from_secs(10), n.raft.client_write(offset_write(11)));
        write.await.expect("commits with the re-added replica").unwrap();
        g.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrupt_and_misdirected_frames_close_or_answer_but_never_crash() {
        let g = Group::start().await;
        let leader = g.leader(None).await;
        let target = &g.peers[&leader];

        tracing::info!("--- a frame that does not decode: the connection is closed");
        let mut s = TcpStream::connect(target).await.unwrap();
        s.write_all(&[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]).await.unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .unwrap()
                .unwrap_or(0),
            0
        );

        tracing::info!("--- a small frame claiming a huge collection: refused, nothing allocated");
        let mut s = TcpStream::connect(target).await.unwrap();
        // Envelope { group: String (length 2^60 as a varint), .. }
        let hostile = [0xFD, 0, 0, 0, 0, 0, 0, 0, 0x10];
        s.write_all(&(hostile.len() as u32).to_be_bytes()).await.unwrap();
        s.write_all(&hostile).await.unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .unwrap()
                .unwrap_or(0),
            0
        );

        tracing::info!("--- a frame over the limit: closed before it is read");
        let mut s = TcpStream::connect(target).await.unwrap();
        s.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                .await
                .unwrap()
                .unwrap_or(0),
            0
        );

        tracing::info!("--- a well-formed request for another group: answered as misdirected");
        let mut s = TcpStream::connect(target).await.unwrap();
        let vote = openraft::raft::VoteRequest::new(openraft::Vote::new(1, 9), None);
        let env = Envelope { group: "broker-b".into(), to: leader, body: RpcRequest::Vote(vote) };
        let payload = bincode::serde::encode_to_vec(&env, bincode::config::standard()).unwrap();
        s.write_all(&(payload.len() as u32).to_be_bytes()).await.unwrap();
        s.write_all(&payload).await.unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.unwrap();
        let mut resp = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut resp).await.unwrap();
        let (resp, _): (RpcResponse, usize) =
            bincode::serde::decode_from_slice(&resp, bincode::config::standard()).unwrap();
        assert!(matches!(resp, RpcResponse::Misdirected { .. }), "{resp:?}");

        tracing::info!("--- the group still works");
        g.write(leader, 0..5).await;
        assert_eq!(g.leader(None).await, leader, "no election was caused");
        for (_, n) in g.nodes {
            n.shutdown().await;
        }
    }

    /// A misdirected vote: answered without touching Raft, so it probes a connection.
    fn probe_frame() -> Vec<u8> {
        let vote = openraft::raft::VoteRequest::new(openraft::Vote::new(1, 9), None);
        let env = Envelope { group: "broker-b".into(), to: 0, body: RpcRequest::Vote(vote) };
        let payload = bincode::serde::encode_to_vec(&env, bincode::config::standard()).unwrap();
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&payload);
        frame
    }

    /// Reads one answer frame, or `None` if the connection closed (or nothing came in 5 s).
    async fn answer(s: &mut TcpStream) -> Option<RpcResponse> {
        let read = async {
            let mut len = [0u8; 4];
            s.read_exact(&mut len).await.ok()?;
            let mut resp = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut resp).await.ok()?;
            Some(bincode::serde::decode_from_slice(&resp, bincode::config::standard()).unwrap().0)
        };
        tokio::time::timeout(Duration::from_secs(5), read).await.ok().flatten()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_raft_port_limits_connections_closes_idle_ones_and_reads_frames_together() {
        use rocketraft_raft::network::{serve_with, ServeLimits};
        let g = Group::start().await;
        let leader = g.leader(None).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let limits =
            ServeLimits { connections_max: 2, idle_timeout_ms: 1_000, ..ServeLimits::default() };
        let raft = g.nodes[&leader].raft.clone();
        tokio::spawn(serve_with(
            listener,
            raft,
            "broker-a".into(),
            leader,
            stop_rx,
            limits,
            None,
            None,
            None,
        ));

        tracing::info!("--- two frames in one write: both answered, in order");
        let mut a = TcpStream::connect(addr).await.unwrap();
        let two = [probe_frame(), probe_frame()].concat();
        a.write_all(&two).await.unwrap();
        for _ in 0..2 {
            assert!(matches!(answer(&mut a).await, Some(RpcResponse::Misdirected { .. })));
        }

        tracing::info!("--- a third connection while two are open: closed at once");
        let mut b = TcpStream::connect(addr).await.unwrap();
        b.write_all(&probe_frame()).await.unwrap();
        assert!(answer(&mut b).await.is_some());
        let mut c = TcpStream::connect(addr).await.unwrap();
        let _ = c.write_all(&probe_frame()).await;
        assert!(answer(&mut c).await.is_none(), "a connection over the limit is served");

        tracing::info!("--- a busy connection stays, an idle one is closed");
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            a.write_all(&probe_frame()).await.unwrap();
            assert!(answer(&mut a).await.is_some(), "a connection in use was closed");
        }
        // `b` sat idle for 1.8 s (over 1 s): it was closed, and its slot is free again.
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(5), b.read(&mut byte)).await;
        assert_eq!(closed.unwrap().unwrap_or(0), 0, "an idle connection was kept");
        let mut d = TcpStream::connect(addr).await.unwrap();
        d.write_all(&probe_frame()).await.unwrap();
        assert!(answer(&mut d).await.is_some(), "a closed connection still counts");

        tracing::info!("--- a frame that claims more than it sends holds only what it sent");
        drop(a);
        // The server sees `a` close and frees its slot.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut e = TcpStream::connect(addr).await.unwrap();
        e.write_all(&(60u32 << 20).to_be_bytes()).await.unwrap();
        e.write_all(&[0u8; 16]).await.unwrap();
        // Then silence: closed by the idle timeout, not left waiting for 60 MiB.
        let closed = tokio::time::timeout(Duration::from_secs(5), e.read(&mut byte)).await;
        assert_eq!(closed.unwrap().unwrap_or(0), 0);

        let _ = stop_tx.send(true);
        for (_, n) in g.nodes {
            n.shutdown().await;
        }
    }

    fn record(queue_id: i32, body: String) -> Vec<u8> {
        use rocketraft_protocol::message::{body_crc, MessageRecord};
        let body = bytes::Bytes::from(body);
        MessageRecord {
            body_crc: body_crc(&body),
            queue_id,
            body,
            topic: "T".into(),
            ..Default::default()
        }
        .encode()
        .unwrap()
    }

    /// Retention, even with every segment past its time, keeps the segment that holds a parked
    /// message (a delay level's) not yet moved to its topic: it was acknowledged to a producer
    /// and never delivered. Once its moved copy is applied, the segment goes. Once, retention
    /// deleted it with the rest (found by the simulation with retention on a small disk).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_keeps_a_parked_message_until_it_is_moved() {
        retention_keeps_until_released(Waiting::Parked).await;
    }

    /// The same for a transaction half message: its segment stays until the half is resolved
    /// (the check rounds move the resolved prefix on with `ForgetHalves`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_keeps_an_unresolved_half_message() {
        retention_keeps_until_released(Waiting::Half).await;
    }

    /// A record the broker has still to act on.
    enum Waiting {
        Parked,
        Half,
    }

    async fn retention_keeps_until_released(waiting: Waiting) {
        use rocketraft_protocol::message::MessageRecord;
        use rocketraft_protocol::message::{body_crc, properties_to_string, property};
        use rocketraft_protocol::names::{SCHEDULE_TOPIC, TRANS_HALF_TOPIC};
        use rocketraft_raft::ProposerConfig;

        let waiting_record = |topic: &str, props: String| {
            let body = bytes::Bytes::from_static(b"waiting");
            MessageRecord {
                body_crc: body_crc(&body),
                queue_id: 0,
                body,
                topic: topic.into(),
                properties: props,
                ..Default::default()
            }
            .encode()
            .unwrap()
        };
        let topic = match waiting {
            Waiting::Parked => SCHEDULE_TOPIC,
            Waiting::Half => TRANS_HALF_TOPIC,
        };
        let mut g = Group::start_with(true).await;
        let leader = g.leader(None).await;
        let proposer = g.proposer(leader, ProposerConfig::default());
        proposer.submit(vec![waiting_record(topic, String::new())]).await.unwrap();
        let write = |from: usize, n: usize| {
            let proposer = proposer.clone();
            async move {
                for i in from..from + n {
                    proposer.submit(vec![record(0, format!("m{i:04}"))]).await.unwrap();
                }
            }
        };
        // About 25 segments of 4 KiB, all past their time, snapshots every 40 entries.
        write(0, 1_000).await;
        g.wait_applied(g.last_index(leader)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        for (id, n) in &g.nodes {
            assert!(n.raft.metrics().borrow().snapshot.is_some(), "replica {id} has a snapshot");
            assert_eq!(
                n.log.lock().unwrap().start().position,
                CommitLogOffset(0),
                "replica {id} deleted the segment of the {topic} record"
            );
        }

        // Released (moved: the copy names its parked record; resolved: the prefix of resolved
        // halves moves past it); then retention deletes the old segments.
        match waiting {
            Waiting::Parked => {
                let moved_from = format!("{SCHEDULE_TOPIC}:0:0");
                let copy = properties_to_string([(property::MOVED_FROM, moved_from.as_str())]);
                proposer.submit(vec![waiting_record("T", copy)]).await.unwrap();
            }
            Waiting::Half => {
                let forget = MetaCommand::ForgetHalves { from: 0, below: 1 };
                g.nodes[&leader].raft.client_write(Request::Metadata(vec![forget])).await.unwrap();
            }
        }
        write(1_000, 50).await;
        for (id, n) in &g.nodes {
            let purged = n
                .raft
                .wait(Some(Duration::from_secs(20)))
                .metrics(|m| m.purged.is_some(), "retention purged the log")
                .await;
            assert!(purged.is_ok(), "replica {id} kept its log after the record was released");
        }
        g.shutdown().await;
    }

    /// A snapshot describes one point: the queues it seeds a follower with are those of its
    /// last applied entry, however many entries were applied while it was being built. Once,
    /// the builder read the live queues on its own task: a follower installing the snapshot
    /// started its queues past the entries after the snapshot, and dropped them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_holds_the_queues_of_its_last_entry() {
        use std::sync::{Arc, Mutex};

        use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
        use rocketraft_raft::{ProposerConfig, StateMachine};
        use rocketraft_store::{CommitLog, Dispatcher};

        let mut g = Group::start().await;
        let leader = g.leader(None).await;
        let proposer = g.proposer(leader, ProposerConfig::default());
        let write = |n: usize| {
            let proposer = proposer.clone();
            async move {
                for i in 0..n {
                    proposer.submit(vec![record(0, format!("m{i}"))]).await.unwrap();
                }
            }
        };
        write(10).await;
        let mut sm = g.nodes[&leader].state_machine.clone();
        let mut builder = sm.get_snapshot_builder().await;
        write(5).await;
        let last = g.last_index(leader);
        g.wait_applied(last).await;
        let snapshot = builder.build_snapshot().await.unwrap();

        // A fresh replica installs it: its queue continues after the snapshot's 10 messages.
        let storage = SimStorage::new();
        let config = CommitLogConfig { segment_size_bytes: 4096, ..Default::default() };
        let (log, _) = CommitLog::open(storage.clone(), config).unwrap();
        let dispatcher = Dispatcher::open(storage, DispatchConfig::default(), &log).unwrap();
        let dispatcher = Arc::new(Mutex::new(dispatcher));
        let mut fresh = StateMachine::new(
            Arc::new(Mutex::new(log)),
            dispatcher.clone(),
            Arc::new(MemMeta::new()),
            None,
        )
        .unwrap();
        fresh.install_snapshot(&snapshot.meta, snapshot.snapshot).await.unwrap();
        let next = dispatcher.lock().unwrap().queue("T", 0).map(|q| q.max_offset().0);
        assert_eq!(next, Some(10), "the queue as of the snapshot's last entry");
        g.shutdown().await;
    }

    /// Metadata whose `write` number `fail_at` (counting from 1) fails, as if the process died
    /// there: what earlier writes made durable stays, for the replica started again.
    struct FailingMeta {
        inner: MemMeta,
        writes: std::sync::atomic::AtomicUsize,
        fail_at: usize,
    }

    impl rocketraft_raft::MetaStore for FailingMeta {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, rocketraft_raft::error::MetaError> {
            self.inner.get(key)
        }
        fn write(
            &self,
            ops: Vec<rocketraft_raft::meta::MetaOp>,
        ) -> Result<(), rocketraft_raft::error::MetaError> {
            let n = self.writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if n == self.fail_at {
                return Err(rocketraft_raft::error::MetaError::Io("the process died".into()));
            }
            self.inner.write(ops)
        }
        fn write_lazy(
            &self,
            ops: Vec<rocketraft_raft::meta::MetaOp>,
        ) -> Result<(), rocketraft_raft::error::MetaError> {
            self.inner.write_lazy(ops)
        }
        fn put_deferred(
            &self,
            key: &[u8],
            value: Vec<u8>,
        ) -> Result<(), rocketraft_raft::error::MetaError> {
            self.inner.put_deferred(key, value)
        }
        fn sync(&self) -> Result<(), rocketraft_raft::error::MetaError> {
            self.inner.sync()
        }
        fn scan_prefix(
            &self,
            prefix: &[u8],
        ) -> Result<rocketraft_raft::meta::KvPairs, rocketraft_raft::error::MetaError> {
            self.inner.scan_prefix(prefix)
        }
    }

    /// A replica that dies in the middle of installing a snapshot (its log reset to the
    /// snapshot's history, the snapshot's metadata not written yet) finishes the install when
    /// it starts again, from the snapshot it received into files: it comes back with the
    /// snapshot applied and its queues as the snapshot says. Once, it found its log starting
    /// past its applied id, and did not start.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_interrupted_snapshot_install_is_finished_at_start() {
        use std::sync::{Arc, Mutex};

        use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
        use rocketraft_raft::{ProposerConfig, StateMachine};
        use rocketraft_store::{CommitLog, Dispatcher};

        let mut g = Group::start().await;
        let leader = g.leader(None).await;
        let proposer = g.proposer(leader, ProposerConfig::default());
        for i in 0..10 {
            proposer.submit(vec![record(0, format!("m{i}"))]).await.unwrap();
        }
        let last = g.last_index(leader);
        g.wait_applied(last).await;
        let mut sm = g.nodes[&leader].state_machine.clone();
        let snapshot = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        g.shutdown().await;

        let storage = SimStorage::new();
        let config = CommitLogConfig { segment_size_bytes: 4096, ..Default::default() };
        let start = |meta: Arc<FailingMeta>| {
            let (log, _) = CommitLog::open(storage.clone(), config.clone()).unwrap();
            let dispatcher =
                Dispatcher::open(storage.clone(), DispatchConfig::default(), &log).unwrap();
            let dispatcher = Arc::new(Mutex::new(dispatcher));
            let sm = StateMachine::new(Arc::new(Mutex::new(log)), dispatcher.clone(), meta, None);
            (sm.unwrap(), dispatcher)
        };
        let durable = MemMeta::new();
        // Write 1 marks the install under way; write 2, its last, dies.
        let meta = Arc::new(FailingMeta { inner: durable.clone(), writes: 0.into(), fail_at: 2 });
        let (mut fresh, _) = start(meta);
        // Received into files, as openraft hands a snapshot over.
        let mut received = fresh.begin_receiving_snapshot().await.unwrap();
        let mut sent = snapshot.snapshot;
        tokio::io::copy(&mut *sent, &mut *received).await.unwrap();
        let died = fresh.install_snapshot(&snapshot.meta, received).await;
        assert!(died.is_err(), "the install's last write was to fail");
        drop(fresh);

        // Started again on the same files and metadata.
        let meta = Arc::new(FailingMeta { inner: durable, writes: 0.into(), fail_at: usize::MAX });
        let (mut again, dispatcher) = start(meta);
        assert!(again.finish_interrupted_install().unwrap(), "an interrupted install found");
        let (applied, _) = again.applied_state().await.unwrap();
        assert_eq!(applied, snapshot.meta.last_log_id, "the snapshot is applied");
        let next = dispatcher.lock().unwrap().queue("T", 0).map(|q| q.max_offset().0);
        assert_eq!(next, Some(10), "the queue as of the snapshot's last entry");
        assert!(!again.finish_interrupted_install().unwrap(), "finished once");
    }

    /// A follower that missed more than one Raft frame of large entries (72 of 1 MiB, where a
    /// frame carries 64 MiB) catches up: replication cuts each AppendEntries at its byte
    /// budget. Once, openraft's 300 entries went in one request, over the frame limit, refused
    /// as a network error and sent again the same size forever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_follower_behind_by_more_than_a_frame_catches_up() {
        use rocketraft_raft::ProposerConfig;
        let mut g = Group::start_tweaked(false, FlushMode::Sync, |c| {
            c.commit_log.segment_size_bytes = 8 << 20;
        })
        .await;
        let leader = g.leader(None).await;
        let lagger = (0..3).find(|id| *id != leader).unwrap();
        g.nodes.remove(&lagger).unwrap().shutdown().await;
        let proposer = g.proposer(leader, ProposerConfig::default());
        let body = "x".repeat(1 << 20);
        for _ in 0..72 {
            proposer.submit(vec![record(0, body.clone())]).await.unwrap();
        }
        let last = g.last_index(leader);
        g.start_node(lagger, None).await.unwrap();
        g.nodes[&lagger]
            .raft
            .wait(Some(Duration::from_secs(60)))
            .applied_index_at_least(Some(last), "the lagger catches up")
            .await
            .unwrap();
        let max = g.nodes[&lagger].dispatcher.lock().unwrap().queue("T", 0).unwrap().max_offset();
        assert_eq!(max.0, 72);
        g.shutdown().await;
    }

    /// Concurrent sends through the leader's proposer get dense, unique queue offsets and
    /// positions that read back their own records; after a failover the new leader continues
    /// every queue where it stopped; a follower answers NotLeader.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_proposer_assigns_dense_offsets_across_a_failover() {
        use rocketraft_protocol::message::RecordView;
        use rocketraft_raft::{ProposeError, Proposer, ProposerConfig};
        let mut g = Group::start().await;
        let leader = g.leader(None).await;
        let proposers: BTreeMap<u64, Proposer> =
            g.nodes.keys().map(|id| (*id, g.proposer(*id, ProposerConfig::default()))).collect();
        let follower = (0..3).find(|id| *id != leader).unwrap();
        // A follower learns who leads from the leader's first append: wait for it, or the
        // refusal names no leader.
        let mut follower_metrics = g.nodes[&follower].raft.metrics();
        tokio::time::timeout(
            Duration::from_secs(10),
            follower_metrics.wait_for(|m| m.current_leader == Some(leader)),
        )
        .await
        .expect("the follower learns the leader")
        .unwrap();
        let err = proposers[&follower].submit(vec![record(0, "x".into())]).await.unwrap_err();
        assert_eq!(err, ProposeError::NotLeader { leader: Some(leader) });

        let send_all = |p: Proposer, round: u32| async move {
            let mut tasks = Vec::new();
            for w in 0..16i32 {
                let p = p.clone();
                tasks.push(tokio::spawn(async move {
                    let mut out = Vec::new();
                    for i in 0..25 {
                        let placed = p
                            .submit(vec![record(w % 4, format!("r{round}-w{w}-{i}"))])
                            .await
                            .unwrap();
                        out.push((w % 4, placed[0]));
                    }
                    out
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        };
        let check =
            |g: &Group, id: u64, placed: &[(i32, rocketraft_raft::Placed)], per_queue: u64| {
                for q in 0..4 {
                    let mut offsets: Vec<u64> = placed
                        .iter()
                        .filter(|(qq, _)| *qq == q)
                        .map(|(_, p)| p.queue_offset.0)
                        .collect();
                    offsets.sort_unstable();
                    assert_eq!(
                        offsets,
                        (0..per_queue).collect::<Vec<_>>(),
                        "queue {q}: dense and unique"
                    );
                }
                let log = g.nodes[&id].log.lock().unwrap();
                for (q, p) in placed {
                    let raw = log
                        .read_records(&[(
                            p.position,
                            (*log)
                                .read_raw(p.position, 4)
                                .map(|b| u32::from_be_bytes(b[..4].try_into().unwrap()))
                                .unwrap(),
                        )])
                        .unwrap();
                    let r = RecordView::decode(&raw[0]).unwrap();
                    assert_eq!(
                        (r.queue_id, r.queue_offset as u64, r.physical_offset as u64),
                        (*q, p.queue_offset.0, p.position.0)
                    );
                }
            };
        let first = send_all(proposers[&leader].clone(), 0).await;
        check(&g, leader, &first, 100);

        tracing::info!("--- the leader stops; the new one continues every queue where it stopped");
        g.nodes.remove(&leader).unwrap().shutdown().await;
        let new_leader = g.leader(Some(leader)).await;
        let mut both = first.clone();
        loop {
            match proposers[&new_leader].submit(vec![record(0, "probe".into())]).await {
                Ok(p) => {
                    both.push((0, p[0]));
                    break;
                }
                Err(ProposeError::NotLeader { .. }) => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await
                }
                Err(e) => panic!("{e}"),
            }
        }
        let second = send_all(proposers[&new_leader].clone(), 1).await;
        both.extend(second);
        // 100 per queue before, 100 after, and the probe in queue 0.
        let mut q0: Vec<u64> =
            both.iter().filter(|(q, _)| *q == 0).map(|(_, p)| p.queue_offset.0).collect();
        q0.sort_unstable();
        assert_eq!(q0, (0..201).collect::<Vec<_>>());
        for q in 1..4 {
            let mut o: Vec<u64> =
                both.iter().filter(|(qq, _)| *qq == q).map(|(_, p)| p.queue_offset.0).collect();
            o.sort_unstable();
            assert_eq!(o, (0..200).collect::<Vec<_>>(), "queue {q}");
        }
        g.shutdown().await;
    }

    /// Pipelined proposals (several batches in flight) across a leader change: every
    /// submission is answered exactly once; what was acknowledged is in the new leader's queues
    /// at the offset it was acknowledged with; each queue is dense and no offset is given twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pipelined_proposals_survive_a_leader_change_in_flight() {
        use rocketraft_protocol::message::RecordView;
        use rocketraft_raft::{ProposeError, Proposer, ProposerConfig};
        let mut g = Group::start().await;
        let leader = g.leader(None).await;
        // Small batches, four in flight: many proposals are in flight when the leader stops.
        let config =
            ProposerConfig { in_flight_max: 4, batch_records_max: 4, ..Default::default() };
        let proposers: BTreeMap<u64, Proposer> =
            g.nodes.keys().map(|id| (*id, g.proposer(*id, config.clone()))).collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..16i32 {
            let (p, stop) = (proposers[&leader].clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let (mut acked, mut failed) = (Vec::new(), 0u32);
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = format!("w{w}-{i}");
                    match p.submit(vec![record(w % 4, body.clone())]).await {
                        Ok(placed) => acked.push((w % 4, placed[0].queue_offset.0, body)),
                        Err(_) => {
                            failed += 1;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                    i += 1;
                }
                (acked, failed)
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        tracing::info!("--- the leader stops with proposals in flight");
        g.nodes.remove(&leader).unwrap().shutdown().await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut acked = Vec::new();
        for t in tasks {
            // Every submission is answered (the task ends): none hangs on a dropped proposal.
            let (a, _failed) = tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("every submission is answered")
                .unwrap();
            acked.extend(a);
        }
        assert!(acked.len() > 16, "sends were acknowledged before the leader stopped");
        let new_leader = g.leader(Some(leader)).await;
        loop {
            match proposers[&new_leader].submit(vec![record(0, "probe".into())]).await {
                Ok(_) => break,
                Err(ProposeError::NotLeader { .. }) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("{e}"),
            }
        }
        let node = &g.nodes[&new_leader];
        let mut seen = std::collections::BTreeSet::new();
        for (q, offset, body) in &acked {
            assert!(seen.insert((*q, *offset)), "queue {q} offset {offset} acknowledged twice");
            let entry = {
                let d = node.dispatcher.lock().unwrap();
                let queue = d.queue("T", *q).expect("queue exists");
                assert!(
                    queue.max_offset().0 > *offset,
                    "acknowledged offset {offset} of queue {q} lost"
                );
                queue.range(rocketraft_store::QueueOffset(*offset), 1).unwrap()[0]
            };
            let raw =
                node.log.lock().unwrap().read_records(&[(entry.position, entry.size)]).unwrap();
            let r = RecordView::decode(&raw[0]).unwrap();
            assert_eq!((r.queue_offset as u64, r.body), (*offset, body.as_bytes()));
        }
        g.shutdown().await;
    }

    /// A leadership transfer under load: writers on the leader's replica (moving to the new
    /// leader's when told "not the leader", as a client does) see their writes held, never
    /// lost; the target leads in a newer term within the transfer's timeout; every
    /// acknowledged record is in the new leader's queue at its offset; and back again. Calls
    /// that cannot transfer are refused with a reason.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leadership_moves_to_the_chosen_voter_under_load_with_nothing_lost() {
        use rocketraft_protocol::message::RecordView;
        use rocketraft_raft::{ProposeError, Replica, ReplicaConfig, TransferError};
        let mut g = Group::start().await;
        let first = g.leader(None).await;
        let replicas: BTreeMap<u64, Replica<SimStorage, MemMeta>> = g
            .nodes
            .iter()
            .map(|(id, n)| (*id, Replica::start(n, ReplicaConfig::default(), 0)))
            .collect();
        let replicas = std::sync::Arc::new(replicas);
        let leads = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(first));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..8i32 {
            let (replicas, leads, stop) = (replicas.clone(), leads.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let (mut acked, mut refused) = (Vec::new(), 0u32);
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = format!("w{w}-{i}");
                    let at = leads.load(std::sync::atomic::Ordering::Relaxed);
                    match replicas[&at].propose(vec![record(w % 4, body.clone())]).await {
                        Ok(placed) => acked.push((w % 4, placed[0].queue_offset.0, body)),
                        Err(ProposeError::NotLeader { .. }) => {
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(e) => panic!("write failed otherwise: {e}"),
                    }
                    i += 1;
                }
                (acked, refused)
            }));
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;

        let follower = (0..3).find(|id| *id != first).unwrap();
        assert_eq!(
            replicas[&follower].transfer_leader(first, Duration::from_secs(3)).await,
            Err(TransferError::NotLeader { id: follower, leader: Some(first) })
        );
        assert_eq!(
            replicas[&first].transfer_leader(9, Duration::from_secs(3)).await,
            Err(TransferError::NotVoter(9))
        );
        let mut at = first;
        for _ in 0..2 {
            let to = replicas[&at].transfer_candidate().expect("a voter to hand over to");
            assert_ne!(to, at);
            let term = replicas[&at].term();
            let started = tokio::time::Instant::now();
            let done = replicas[&at].transfer_leader(to, Duration::from_secs(3)).await.unwrap();
            assert_eq!(done.leader, to, "the chosen voter leads");
            assert!(done.term > term);
            assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
            leads.store(to, std::sync::atomic::Ordering::Relaxed);
            at = to;
            // The new leader takes writes.
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut acked = Vec::new();
        let mut refused = 0;
        for t in tasks {
            let (a, r) = tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("every write is answered")
                .unwrap();
            acked.extend(a);
            refused += r;
        }
        // At most the writes held at the gate when it opened (one per writer and handover)
        // are refused, not a stream of them while no one leads.
        assert!(refused <= 8 * 2 * 2, "{refused} writes refused");
        let node = &g.nodes[&at];
        let (before, after): (Vec<_>, Vec<_>) = acked.iter().partition(|(_, o, _)| *o < 10);
        assert!(!before.is_empty() && after.len() > 50, "writes went on: {}", acked.len());
        let mut seen = std::collections::BTreeSet::new();
        for (q, offset, body) in &acked {
            assert!(seen.insert((*q, *offset)), "queue {q} offset {offset} acknowledged twice");
            let entry = {
                let d = node.dispatcher.lock().unwrap();
                let queue = d.queue("T", *q).expect("queue exists");
                assert!(queue.max_offset().0 > *offset, "acknowledged offset {offset} lost");
                queue.range(rocketraft_store::QueueOffset(*offset), 1).unwrap()[0]
            };
            let raw =
                node.log.lock().unwrap().read_records(&[(entry.position, entry.size)]).unwrap();
            let r = RecordView::decode(&raw[0]).unwrap();
            assert_eq!((r.queue_offset as u64, r.body), (*offset, body.as_bytes()));
        }
        drop(replicas);
        g.shutdown().await;
    }

    /// `Replication::Leader` acknowledges once the leader's own log has the entry: with both
    /// followers stopped a send is still acknowledged (quorum replication waits for them), at
    /// the place the leader's log holds it, before anything commits; when the followers come
    /// back it commits and applies there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leader_replication_acknowledges_from_the_leaders_own_log() {
        use rocketraft_protocol::message::RecordView;
        use rocketraft_raft::{ProposerConfig, Replication};
        let mut g = Group::start().await;
        let leader = g.leader(None).await;
        let config = ProposerConfig { replication: Replication::Leader, ..Default::default() };
        let proposer = g.proposer(leader, config);
        let first = proposer.submit(vec![record(0, "with everyone up".into())]).await.unwrap();
        let followers: Vec<u64> = (0..3).filter(|id| *id != leader).collect();
        for id in &followers {
            g.nodes.remove(id).unwrap().shutdown().await;
        }
        let n = &g.nodes[&leader];
        let placed = tokio::time::timeout(
            Duration::from_secs(5),
            proposer.submit(vec![record(0, "alone".into())]),
        )
        .await
        .expect("acknowledged with no follower up")
        .unwrap();
        assert_eq!(placed[0].queue_offset.0, first[0].queue_offset.0 + 1);
        let applied = n.raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
        assert!(applied < placed[0].index, "acknowledged before it committed ({applied})");
        let size = record(0, "alone".into()).len() as u32;
        let raw = n.log.lock().unwrap().read_records(&[(placed[0].position, size)]).unwrap();
        let in_log = raw.first().and_then(|r| RecordView::decode(r).ok()).map(|r| r.body.to_vec());
        assert_eq!(in_log.as_deref(), Some(&b"alone"[..]), "the leader's log holds it there");

        for id in &followers {
            g.start_node(*id, None).await.unwrap();
        }
        g.wait_applied(placed[0].index).await;
        let n = &g.nodes[&leader];
        let entry = {
            let d = n.dispatcher.lock().unwrap();
            d.queue("T", 0).unwrap().range(placed[0].queue_offset, 1).unwrap()[0]
        };
        assert_eq!(entry.position, placed[0].position, "committed where it was acknowledged");
        g.shutdown().await;
    }

    /// Transaction half messages and rollbacks are not dispatched to their queue, so they take
    /// no queue offset (RocketMQ stores 0): records around them stay dense, and every replica
    /// applies the entry. Once, the half took the next offset and the queue refused the record
    /// after it, which stopped apply on every replica.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn half_messages_and_rollbacks_take_no_queue_offset() {
        use rocketraft_protocol::message::{body_crc, MessageRecord};
        use rocketraft_protocol::sysflag::message as msgflag;
        use rocketraft_raft::ProposerConfig;
        let mut g = Group::start().await;
        let leader = g.leader(None).await;
        let proposer = g.proposer(leader, ProposerConfig::default());
        let with_flag = |sys_flag: i32, body: &'static str| {
            let body = bytes::Bytes::from_static(body.as_bytes());
            MessageRecord {
                body_crc: body_crc(&body),
                sys_flag,
                body,
                topic: "T".into(),
                ..Default::default()
            }
            .encode()
            .unwrap()
        };
        let placed = proposer
            .submit(vec![
                with_flag(0, "m0"),
                with_flag(msgflag::TRANSACTION_PREPARED, "half"),
                with_flag(msgflag::TRANSACTION_ROLLBACK, "rollback"),
                with_flag(msgflag::TRANSACTION_COMMIT, "commit"),
            ])
            .await
            .unwrap();
        let offsets: Vec<u64> = placed.iter().map(|p| p.queue_offset.0).collect();
        assert_eq!(offsets, vec![0, 0, 0, 1]);
        let next = proposer.submit(vec![with_flag(0, "m2")]).await.unwrap();
        assert_eq!(next[0].queue_offset.0, 2);
        let last = next[0].index;
        for (id, node) in &g.nodes {
            node.raft
                .wait(Some(Duration::from_secs(10)))
                .applied_index_at_least(Some(last), "applied")
                .await
                .unwrap_or_else(|e| panic!("replica {id}: {e}"));
            assert_eq!(node.fatal_error(), None, "replica {id}");
            let max = node.dispatcher.lock().unwrap().queue("T", 0).unwrap().max_offset().0;
            assert_eq!(max, 3, "replica {id}: m0, commit, m2");
        }
        // A record dispatch could not index never reaches the log.
        let bad = MessageRecord { topic: "../x".into(), ..Default::default() }.encode().unwrap();
        let err = proposer.submit(vec![bad]).await.unwrap_err();
        assert!(matches!(err, rocketraft_raft::ProposeError::Invalid(_)), "{err}");
        g.shutdown().await;
    }

    /// openraft gives a restarted leader its leadership back at once, in its old term. Under
    /// async flush its log may have lost entries it acknowledged, and reusing their log ids
    /// would let followers holding the old entries diverge: it stands for a new term instead.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leader_restarted_under_async_flush_does_not_resume_its_term() {
        let mut g = Group::start_flushing(false, FlushMode::Async { interval_ms: 500 }).await;
        let leader = g.leader(None).await;
        g.write(leader, 0..10).await;
        let term = g.nodes[&leader].raft.metrics().borrow().current_term;
        g.nodes.remove(&leader).unwrap().shutdown().await;
        g.start_node(leader, None).await.unwrap();
        let resumed = g.nodes[&leader]
            .raft
            .wait(Some(std::time::Duration::from_millis(800)))
            .metrics(
                |m| m.state == openraft::ServerState::Leader && m.current_term == term,
                "leader again in its old term",
            )
            .await;
        assert!(resumed.is_err(), "resumed leadership in term {term}");
        // The group goes on, under a newer term.
        let now = g.leader(None).await;
        g.write(now, 10..20).await;
        assert!(g.nodes[&now].raft.metrics().borrow().current_term > term);
        g.shutdown().await;
    }

    /// A CommitLog sync that fails under async flush (no append waits for it) stops the replica,
    /// and nothing the failed sync covered ever counts as durable there, even once the disk
    /// syncs again (the kernel may have dropped the pages and marked them clean). Once, the
    /// error was only logged and the next successful sync marked the whole range durable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_sync_under_async_flush_stops_the_replica() {
        let mut g = Group::start_flushing(false, FlushMode::Async { interval_ms: 100 }).await;
        let leader = g.leader(None).await;
        g.write(leader, 0..10).await;
        let doomed = (0..3).find(|id| *id != leader).unwrap();
        g.disks[&doomed].0.set_fail_commitlog_syncs(true);
        g.write(leader, 10..20).await;
        let why =
            tokio::time::timeout(Duration::from_secs(10), g.nodes[&doomed].stopped_on_fatal())
                .await
                .expect("the replica stops on the failed sync");
        assert!(why.contains("CommitLog"), "{why}");
        let flushed = g.nodes[&doomed].log.lock().unwrap().flushed();
        g.disks[&doomed].0.set_fail_commitlog_syncs(false);
        tokio::time::sleep(Duration::from_millis(300)).await;
        {
            let mut log = g.nodes[&doomed].log.lock().unwrap();
            assert_eq!(log.flushed(), flushed, "nothing more counts as durable");
            assert!(log.admit_new_writes(0).is_err(), "and it takes no new writes");
        }

        tracing::info!("--- the other two go on; the stopped one restarts and catches up");
        g.write(leader, 20..30).await;
        g.nodes.remove(&doomed).unwrap().shutdown().await;
        g.start_node(doomed, None).await.unwrap();
        let last = g.last_index(leader);
        g.wait_applied(last).await;
        let offset = g.nodes[&doomed].state_machine.consumer_offset("g", "topic-1", 1).unwrap();
        assert_eq!(offset, Some(29), "write 29 went to topic-1 queue 1");
        g.shutdown().await;
    }

    /// The retention task of a running replica purges old segments that a snapshot covers,
    /// through openraft; the group keeps taking writes and a restarted replica recovers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_purges_a_running_replicas_log() {
        let mut g = Group::start_with(true).await;
        let leader = g.leader(None).await;
        g.write(leader, 0..300).await;
        let last = g.last_index(leader);
        g.wait_applied(last).await;
        for n in g.nodes.values() {
            let m = n
                .raft
                .wait(Some(std::time::Duration::from_secs(20)))
                .metrics(|m| m.purged.is_some(), "retention purged the log")
                .await
                .unwrap();
            // Retention deletes the segments once openraft has purged them.
            let mut start = n.log.lock().unwrap().start();
            for _ in 0..100 {
                if start.next_index.0 > 0 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                start = n.log.lock().unwrap().start();
            }
            assert!(start.next_index.0 > 0 && start.next_index.0 <= m.purged.unwrap().index + 1);
        }
        g.write(leader, 300..310).await;
        let id = (0..3).find(|id| *id != leader).unwrap();
        g.nodes.remove(&id).unwrap().shutdown().await;
        g.start_node(id, None).await.unwrap();
        g.write(leader, 310..320).await;
        g.wait_applied(g.last_index(leader)).await;
        assert_eq!(
            g.nodes[&id].state_machine.consumer_offset("g", "topic-3", 3).unwrap(),
            Some(311)
        );
        g.shutdown().await;
    }
}
