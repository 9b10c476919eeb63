//! Every server process serves Prometheus metrics: a NameServer and three `rocketraft broker`
//! processes, and `rocketraft dev`. Each endpoint is scraped over HTTP before and after a load
//! (sends, a delayed and a transactional message left pending, a consumer that reads part of a
//! topic): the series the README lists exist, and the ones the load drives move.
#![cfg(not(madsim))]
// Real processes in real time: wall-clock deadlines and a thread draining each stdout.
#![allow(clippy::disallowed_methods)]

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use rocketraft_client::{
    Message, MessageExt, Producer, ProducerConfig, SendResult, TransactionListener,
    TransactionProducer, TransactionState,
};
use support::{Proc, ProcGroup};

/// The `http://ADDR/metrics` a ready line names.
fn metrics_url(ready_line: &str) -> String {
    let at =
        ready_line.find("http://").unwrap_or_else(|| panic!("no metrics URL in {ready_line:?}"));
    let url = &ready_line[at..];
    let end = url.find("/metrics").expect("the URL ends in /metrics") + "/metrics".len();
    url[..end].to_owned()
}

/// GETs `url` with a plain HTTP/1.1 request; answers the body of a 200.
fn scrape(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    body.to_owned()
}

/// The sum of the samples of metric `name` whose line holds every one of `labels`
/// (`key="value"` pieces); `None` when there is no such sample.
fn sum(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let series_end = line.find(['{', ' ']).unwrap_or(line.len());
        if &line[..series_end] != name || !labels.iter().all(|l| line.contains(l)) {
            continue;
        }
        let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        *found.get_or_insert(0.0) += v;
    }
    found
}

fn has(text: &str, name: &str, labels: &[&str]) -> f64 {
    sum(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
}

/// Series every replica shows from its start.
const REPLICA_SERIES: &[&str] = &[
    "rocketraft_raft_term",
    "rocketraft_raft_role",
    "rocketraft_raft_leader_id",
    "rocketraft_raft_commit_index",
    "rocketraft_raft_applied_index",
    "rocketraft_raft_last_log_index",
    "rocketraft_raft_elections_total",
    "rocketraft_raft_proposals_in_flight",
    "rocketraft_raft_proposals_in_flight_peak",
    "rocketraft_raft_batch_records_count",
    "rocketraft_commitlog_syncs_total",
    "rocketraft_commitlog_sync_seconds_bucket",
    "rocketraft_commitlog_end_offset",
    "rocketraft_snapshots_built_total",
    "rocketraft_snapshots_installed_total",
    "rocketraft_retention_purges_total",
    "rocketraft_disk_total_bytes",
    "rocketraft_disk_available_bytes",
    "rocketraft_connections",
    "rocketraft_delayed_messages_pending",
    "rocketraft_transaction_half_messages_pending",
];

/// Leaves every half message's outcome unknown: the halves stay pending.
struct Undecided;

impl TransactionListener for Undecided {
    async fn execute_local(&self, _: &Message, _: &SendResult) -> TransactionState {
        TransactionState::Unknown
    }
    async fn check(&self, _: MessageExt) -> TransactionState {
        TransactionState::Unknown
    }
}

#[test]
fn every_process_serves_metrics_that_move_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let group = ProcGroup::start(dir.path());
    let ns_url = metrics_url(group.ns.ready_line());
    let urls: Vec<String> = group.brokers.iter().map(|b| metrics_url(b.ready_line())).collect();
    let leader = group.leader as usize;
    // Disk figures come with retention's first check, at start.
    std::thread::sleep(Duration::from_millis(500));
    let before: Vec<String> = urls.iter().map(|u| scrape(u)).collect();
    for (i, text) in before.iter().enumerate() {
        for name in REPLICA_SERIES {
            has(
                text,
                name,
                &[&format!("node=\"{i}\""), "group=\"broker-a\"", "cluster=\"ProcCluster\""],
            );
        }
        let role = if i == leader { "leader" } else { "follower" };
        assert_eq!(
            has(text, "rocketraft_raft_role", &[&format!("role=\"{role}\"")]),
            1.0,
            "{text}"
        );
        assert!(has(text, "rocketraft_disk_total_bytes", &[]) > 0.0, "{text}");
        assert!(has(text, "rocketraft_raft_term", &[]) >= 1.0);
    }
    for f in (0..3).filter(|f| *f != leader) {
        has(
            &before[leader],
            "rocketraft_raft_follower_lag_entries",
            &[&format!("follower=\"{f}\"")],
        );
    }
    let ns_before = scrape(&ns_url);
    assert_eq!(has(&ns_before, "rocketraft_namesrv_brokers", &[]), 3.0, "{ns_before}");
    for name in [
        "rocketraft_namesrv_broker_groups",
        "rocketraft_namesrv_topics",
        "rocketraft_namesrv_connections",
        "rocketraft_namesrv_registrations_total",
        "rocketraft_namesrv_evictions_total",
        "rocketraft_namesrv_route_lookups_total",
    ] {
        has(&ns_before, name, &[]);
    }

    // The load: 200 sends, one message delayed 2 h, one half message left undecided; a
    // consumer group reads the topic and commits.
    const SENDS: usize = 200;
    let namesrv = group.namesrv.clone();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let producer = Producer::start(ProducerConfig::new(&namesrv)).await.unwrap();
        for i in 0..SENDS {
            producer.send(Message::new("MetricsTopic", format!("m{i}"))).await.unwrap();
        }
        producer.send(Message::new("MetricsTopic", "later").with_delay_level(18)).await.unwrap();
        producer.shutdown().await;
        let mut config = ProducerConfig::new(&namesrv);
        config.group = "MetricsTx".into();
        let tx = TransactionProducer::start(config, Undecided).await.unwrap();
        tx.send(Message::new("MetricsTopic", "maybe")).await.unwrap();
        tx.shutdown().await;
    });
    rt.block_on(async {
        use rocketraft_client::{ConsumeFrom, PullConsumer, PullConsumerConfig};
        let mut config = PullConsumerConfig::new(&namesrv, "MetricsGroup");
        config.consume_from = ConsumeFrom::FirstOffset;
        let consumer = PullConsumer::start(config).await.unwrap();
        consumer.subscribe("MetricsTopic", "*").await.unwrap();
        let (mut got, deadline) = (0, tokio::time::Instant::now() + Duration::from_secs(20));
        while got < SENDS && tokio::time::Instant::now() < deadline {
            got += consumer.poll(1_000).await.unwrap_or_default().len();
        }
        assert!(got >= SENDS, "consumed {got} of {SENDS}");
        consumer.commit().await.unwrap();
        consumer.shutdown().await;
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let after = loop {
        let after: Vec<String> = urls.iter().map(|u| scrape(u)).collect();
        let lagged = after.iter().all(|t| {
            sum(t, "rocketraft_consumer_lag_messages", &["consumer_group=\"MetricsGroup\""])
                .is_some()
        });
        if lagged || std::time::Instant::now() > deadline {
            break after;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let topic = "topic=\"MetricsTopic\"";
    let l = &after[leader];
    assert!(has(l, "rocketraft_send_messages_total", &[topic]) >= SENDS as f64, "{l}");
    assert!(has(l, "rocketraft_send_bytes_total", &[topic]) > 0.0);
    assert!(has(l, "rocketraft_send_latency_seconds_count", &[topic]) >= SENDS as f64);
    assert!(
        has(l, "rocketraft_raft_proposals_total", &[])
            > has(&before[leader], "rocketraft_raft_proposals_total", &[])
    );
    assert!(has(l, "rocketraft_raft_batch_records_count", &[]) > 0.0);
    assert!(has(l, "rocketraft_delayed_messages_pending", &["level=\"18\""]) >= 1.0, "{l}");
    assert!(has(l, "rocketraft_transaction_half_messages_pending", &[]) >= 1.0, "{l}");
    let pulled: f64 = after
        .iter()
        .filter_map(|t| {
            sum(t, "rocketraft_pull_messages_total", &["consumer_group=\"MetricsGroup\"", topic])
        })
        .sum();
    assert!(pulled >= SENDS as f64, "pulls counted: {pulled}");
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        for name in [
            "rocketraft_raft_commit_index",
            "rocketraft_raft_applied_index",
            "rocketraft_commitlog_syncs_total",
            "rocketraft_commitlog_end_offset",
        ] {
            assert!(has(a, name, &[]) > has(b, name, &[]), "node {i}: {name} did not move\n{a}");
        }
        has(
            a,
            "rocketraft_consumer_lag_messages",
            &["consumer_group=\"MetricsGroup\"", topic, "queue=\"0\""],
        );
        assert!(has(a, "rocketraft_commitlog_sync_seconds_count", &[]) > 0.0);
    }
    let ns_after = scrape(&ns_url);
    assert!(
        has(&ns_after, "rocketraft_namesrv_route_lookups_total", &[])
            > has(&ns_before, "rocketraft_namesrv_route_lookups_total", &[]),
        "{ns_after}"
    );
    assert!(
        has(&ns_after, "rocketraft_namesrv_topics", &[])
            >= has(&ns_before, "rocketraft_namesrv_topics", &[])
    );
    drop(group);
}

#[test]
fn the_dev_cluster_serves_every_component_on_the_url_its_ready_line_names() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let dev = Proc::start(
        "dev",
        &[
            "dev",
            "--data-dir",
            data,
            "--namesrv-port",
            "0",
            "--broker-port",
            "0",
            "--raft-port",
            "0",
            "--metrics-port",
            "0",
        ],
        dir.path().join("dev.log"),
    );
    let url = metrics_url(dev.ready_line());
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let text = loop {
        let text = scrape(&url);
        if sum(&text, "rocketraft_namesrv_brokers", &[]) == Some(3.0)
            || std::time::Instant::now() > deadline
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(has(&text, "rocketraft_namesrv_brokers", &[]), 3.0, "{text}");
    for node in 0..3 {
        for name in REPLICA_SERIES {
            has(&text, name, &[&format!("node=\"{node}\"")]);
        }
    }
    assert_eq!(has(&text, "rocketraft_raft_role", &["role=\"leader\""]), 1.0, "one leader: {text}");
    assert_eq!(text.matches("# TYPE rocketraft_raft_term gauge").count(), 1, "one family per name");
    drop(dev);
}
