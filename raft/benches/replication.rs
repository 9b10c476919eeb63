//! Replicated commit of 1 KiB message records: three replicas in one process on loopback TCP,
//! real files (mmap) and sled, sync flush (every replica syncs before it acknowledges), the
//! default Raft timing. Through the proposer, as the broker's send path uses it.
//!
//! - `one_at_a_time`: one sender, one record per proposal: the commit latency.
//! - `64_senders`: 64 concurrent senders, one record each per submission: the throughput
//!   (the proposer batches what arrives while a proposal is in flight).
//!
//! `cargo bench -p rocketraft-raft`; figures in BENCHMARKS.md.

// Benchmarks measure real time on real threads; they never run under madsim.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rocketraft_protocol::message::{body_crc, MessageRecord};
use rocketraft_raft::{NodeConfig, Proposer, ProposerConfig, RaftNode, RaftTiming, SledMeta};
use rocketraft_store::io::mmap::MmapStorage;
use rocketraft_store::{CommitLogConfig, DispatchConfig, FlushMode};

fn record(queue_id: i32) -> Vec<u8> {
    let body = Bytes::from(vec![b'x'; 1024]);
    let topic = "BenchTopic".into();
    MessageRecord { body_crc: body_crc(&body), queue_id, body, topic, ..Default::default() }
        .encode()
        .unwrap()
}

struct Cluster {
    rt: tokio::runtime::Runtime,
    proposer: Proposer,
    _nodes: Vec<RaftNode<MmapStorage, SledMeta>>,
    _dir: tempfile::TempDir,
}

fn cluster() -> Cluster {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (proposer, nodes) = rt.block_on(async {
        let mut listeners = Vec::new();
        let mut peers = BTreeMap::new();
        for id in 0..3u64 {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            peers.insert(id, l.local_addr().unwrap().to_string());
            listeners.push(l);
        }
        let mut nodes = Vec::new();
        for (id, l) in listeners.into_iter().enumerate() {
            let id = id as u64;
            let config = NodeConfig {
                group: "bench".into(),
                id,
                peers: peers.clone(),
                timing: RaftTiming::default(),
                commit_log: CommitLogConfig { segment_size_bytes: 256 << 20, ..Default::default() },
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
            let base = dir.path().join(format!("n{id}"));
            let storage = MmapStorage::new(base.join("data")).unwrap();
            let meta = SledMeta::open(base.join("meta")).unwrap();
            nodes.push(RaftNode::start(config, storage, meta, l, None).await.unwrap());
        }
        let leader = loop {
            if let Some(l) = nodes[0].raft.metrics().borrow().current_leader {
                break l as usize;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let n = &nodes[leader];
        let parts = rocketraft_raft::proposer::ProposerParts {
            raft: n.raft.clone(),
            log: n.log.clone(),
            dispatcher: n.dispatcher.clone(),
            local_appends: n.local_appends.clone(),
            clock: std::sync::Arc::new(rocketraft_raft::clock::GroupClock::new(0)),
            gate: std::sync::Arc::default(),
            stats: std::sync::Arc::default(),
        };
        let proposer = Proposer::start(parts, ProposerConfig::default());
        // Wait until the new leader serves.
        while proposer.submit(vec![record(0)]).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (proposer, nodes)
    });
    Cluster { rt, proposer, _nodes: nodes, _dir: dir }
}

fn replicated_commit(c: &mut Criterion) {
    let cl = cluster();
    let mut g = c.benchmark_group("replicated_commit_1KiB_3_replicas_sync");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.bench_function("one_at_a_time", |b| {
        b.iter(|| cl.rt.block_on(cl.proposer.submit(vec![record(0)])).unwrap());
    });
    g.bench_function("64_senders", |b| {
        b.iter_custom(|iters| {
            cl.rt.block_on(async {
                let per = iters.div_ceil(64);
                let start = Instant::now();
                let mut tasks = Vec::new();
                for s in 0..64i32 {
                    let p = cl.proposer.clone();
                    tasks.push(tokio::spawn(async move {
                        for _ in 0..per {
                            p.submit(vec![record(s % 8)]).await.unwrap();
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                start.elapsed().mul_f64(iters as f64 / (per * 64) as f64)
            })
        });
    });
    g.finish();
}

criterion_group!(benches, replicated_commit);
criterion_main!(benches);
