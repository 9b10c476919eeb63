//! The client SDK's examples (client/examples/), run as processes against a dev cluster (the
//! code `rocketraft dev` runs), as the README tells users to run them.

// Real processes, files and sockets: not for the madsim build.
#![cfg(not(madsim))]

use std::process::Command;
use std::time::Duration;

use rocketraft::dev::{DevCluster, DevConfig, RetentionConfig};

async fn start_cluster(dir: &tempfile::TempDir) -> DevCluster {
    let config = DevConfig {
        data_dir: dir.path().to_owned(),
        namesrv_port: 0,
        metrics_port: 0,
        broker_port: 0,
        raft_port: 0,
        segment_size_bytes: 8 << 20,
        // The transaction example's undecided orders are checked back within a second or two.
        transaction_check_interval_ms: 1_000,
        transaction_timeout_ms: 1_000,
        // The machine's disk is shared and others fill it: its usage must not refuse sends.
        retention: RetentionConfig::by_age_only(),
        ..Default::default()
    };
    let cluster = DevCluster::start(config).await.expect("the dev cluster starts");
    assert!(cluster.wait_ready(Duration::from_secs(15)).await, "a master is routed");
    cluster
}

/// Runs an example binary to completion (off the runtime's threads) and returns its stdout.
async fn run(exe: &'static str, namesrv: String, args: &'static [&'static str]) -> String {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(exe).args(args).env("NAMESRV_ADDR", namesrv).output().expect("runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{exe} failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_run_against_a_dev_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start_cluster(&dir).await;
    let ns = cluster.namesrv_addr().to_string();

    let out = run(env!("CARGO_BIN_EXE_example-producer"), ns.clone(), &["5"]).await;
    assert!(out.contains("sent 15 messages"), "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("sync ")).count(), 5, "{out}");

    // TagA (sync) and TagB (async) match the consumer's expression; TagC (oneway) does not.
    let out = run(env!("CARGO_BIN_EXE_example-push-consumer"), ns.clone(), &["10"]).await;
    assert!(out.contains("consumed 10"), "{out}");
    assert!(!out.contains("oneway"), "TagC is filtered out: {out}");

    let out = run(env!("CARGO_BIN_EXE_example-ordered"), ns.clone(), &[]).await;
    assert!(out.contains("10 orders, every order's steps in order: true"), "{out}");

    let out = run(env!("CARGO_BIN_EXE_example-broadcast"), ns.clone(), &[]).await;
    assert!(out.contains("each member received [20, 20] of 20"), "{out}");

    // Orders 1 and 5 fail (rolled back); 2 and 5 are undecided until checked back.
    let out = run(env!("CARGO_BIN_EXE_example-transaction"), ns, &[]).await;
    assert!(
        out.contains("6 of 8 orders delivered, every delivered order was saved: true"),
        "{out}"
    );
    cluster.shutdown().await;
}
