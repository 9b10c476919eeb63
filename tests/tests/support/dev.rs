//! The in-process cluster the integration test binaries start (included with `#[path]`, so
//! each binary compiles it; Cargo does not take `tests/support/` for a test target).

use std::time::Duration;

use rocketraft::dev::{DevCluster, DevConfig, RetentionConfig};
use rocketraft_raft::RaftTiming;

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A dev cluster (a NameServer, one group of 3) on free ports in `dir`, with quick elections,
/// delay levels of 1 s each (a retry comes back after 1 s, not 10 s and more) and segments of
/// `segment_size_bytes`, once a master is routed (within `ready_within`).
#[allow(dead_code)] // not every test binary takes the defaults
pub async fn start_cluster(
    dir: &tempfile::TempDir,
    segment_size_bytes: u64,
    ready_within: Duration,
) -> DevCluster {
    start_cluster_with(dir, segment_size_bytes, ready_within, |_| {}).await
}

/// [`start_cluster`] with settings changed by `tweak`.
#[allow(dead_code)] // not every test binary changes settings
pub async fn start_cluster_with(
    dir: &tempfile::TempDir,
    segment_size_bytes: u64,
    ready_within: Duration,
    tweak: impl FnOnce(&mut DevConfig),
) -> DevCluster {
    init_tracing();
    let mut config = DevConfig {
        data_dir: dir.path().to_owned(),
        namesrv_port: 0,
        metrics_port: 0,
        broker_port: 0,
        raft_port: 0,
        segment_size_bytes,
        timing: RaftTiming {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 600,
            election_timeout_max_ms: 800,
            snapshot_every_entries: 10_000,
        },
        delay_levels: rocketraft_protocol::schedule::DelayLevels::parse("1s 1s 1s").unwrap(),
        // The machine's disk is shared and others fill it: its usage must not refuse sends.
        retention: RetentionConfig::by_age_only(),
        ..Default::default()
    };
    tweak(&mut config);
    let cluster = DevCluster::start(config).await.expect("the dev cluster starts");
    assert!(cluster.wait_ready(ready_within).await, "a master is routed");
    cluster
}

/// Creates `topic` with `queues` queues through an admin with `client`'s settings (the leader
/// may not be routed yet: it retries) and waits until the NameServer routes it.
#[allow(dead_code)] // not every test binary creates topics
pub async fn create_topic(client: rocketraft_client::ClientConfig, topic: &str, queues: i32) {
    #[allow(clippy::disallowed_methods)] // a test bounds its wait by the wall clock
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let admin = rocketraft_client::Admin::start(client).await.unwrap();
    loop {
        // The leader registers as brokerId 0 once it has applied its log: until then there is
        // no master to create the topic on.
        match admin.create_topic(None, topic, queues, false).await {
            Ok(groups) if !groups.is_empty() => break,
            #[allow(clippy::disallowed_methods)]
            other => assert!(std::time::Instant::now() < deadline, "topic not created: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while admin.route(topic).await.map_or(true, |r| r.queue_datas.is_empty()) {
        #[allow(clippy::disallowed_methods)]
        let late = std::time::Instant::now() >= deadline;
        assert!(!late, "topic {topic} never routed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    admin.shutdown().await;
}
