//! A cluster of real processes from the built binary: one `rocketraft namesrv` and three
//! `rocketraft broker --config` replicas of one group, each with its own TOML file and data
//! directory. Sends and consumes through them with the SDK, SIGKILLs the leader's process,
//! watches a new leader take over (through `rocketraft cluster list --json`), checks that no
//! acknowledged message is lost, restarts the killed process and sees it rejoin and catch up.
//! The replicas talk Raft over mutual TLS (a throwaway CA: `support::tls_section`).
//! (The test lives in the `rocketraft` package because Cargo hands `CARGO_BIN_EXE_rocketraft`,
//! a fresh build of the binary, only to that package's tests.)
#![cfg(not(madsim))]
// Real processes in real time: wall-clock deadlines and a thread draining each stdout.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::BTreeSet;

use rocketraft_client::{Message, Producer, ProducerConfig};
use support::{consume_ids, leader_of, start_broker, wait_cluster, ProcGroup};

#[test]
fn a_cluster_of_processes_survives_sigkill_of_its_leader() {
    let dir = tempfile::tempdir().unwrap();
    let ProcGroup { ns, namesrv, configs, mut brokers, leader } = ProcGroup::start(dir.path());
    let start_broker = |i: usize| start_broker(dir.path(), &configs, i);
    assert!(dir.path().join("broker-a-0").join("replica.id").exists(), "store_dir from the config");
    for b in &brokers {
        assert!(b.log_text().contains("Raft RPCs over mutual TLS"), "{}", b.log_text());
    }
    // A healthy start logs no warning at the default level (the first replica up calls the
    // others before they listen), and each replica says its role once it has one.
    for (i, b) in brokers.iter().enumerate() {
        let says = if i as u64 == leader { "leads its group" } else { "follows the leader" };
        assert!(b.wait_log(says, 10), "broker-a-{i} says {says:?}\n{}", b.log_text());
        let log = b.log();
        assert!(!log.contains("WARN") && !log.contains("ERROR"), "{}", b.log_text());
    }

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let acked = rt.block_on(async {
        let producer = Producer::start(ProducerConfig::new(&namesrv)).await.unwrap();
        let mut acked = BTreeSet::new();
        let mut failed = 0;
        for i in 0..600 {
            if i == 300 {
                // SIGKILL: no unregistering, no flush; the NameServer sees the connection close.
                let status = brokers[leader as usize].signal("-KILL");
                assert!(!status.success());
            }
            let msg = Message::new("ProcTopic", format!("m{i}")).with_keys([format!("k{i}")]);
            match producer.send(msg).await {
                Ok(r) => {
                    acked.insert(r.msg_id);
                }
                Err(_) => failed += 1,
            }
        }
        producer.shutdown().await;
        eprintln!("acknowledged {} of 600 sends ({failed} failed across the kill)", acked.len());
        acked
    });
    assert!(acked.len() >= 550, "sends kept succeeding after the failover: {}", acked.len());

    let view = wait_cluster(&namesrv, 30, |c| leader_of(c).is_some_and(|l| l != leader));
    let new_leader = leader_of(&view).unwrap_or_else(|| panic!("no new leader: {view:?}"));
    assert_ne!(new_leader, leader);
    // The new leader says so, and, once the killed one has failed its calls for a while,
    // names it (once, not per heartbeat).
    let new = &brokers[new_leader as usize];
    assert!(new.wait_log("leads its group", 10), "{}", new.log_text());
    assert!(new.wait_log("Raft calls to a peer keep failing", 15), "{}", new.log_text());
    let log = new.log();
    let warned: Vec<&str> = log.lines().filter(|l| l.contains("keep failing")).collect();
    // Once per 30 s while it lasts, not per heartbeat (100 ms).
    assert!((1..=3).contains(&warned.len()), "{}", new.log_text());
    let named = format!("peer={leader} ");
    assert!(warned.iter().all(|l| l.contains(&named)), "{}", new.log_text());
    let registered = view.iter().filter(|r| r["role"] != "not registered").count();
    assert_eq!(registered, 2, "the killed replica is gone from the routes: {view:?}");
    // The new leader still counts it a member, behind by what it missed.
    let down = view.iter().find(|r| r["raftNode"].as_u64() == Some(leader));
    let down = down.unwrap_or_else(|| panic!("the killed member is listed: {view:?}"));
    assert_eq!(down["role"], "not registered", "{view:?}");
    assert!(down["lagEntries"].as_u64().is_some(), "{view:?}");

    // The killed process comes back on its files and catches up.
    brokers[leader as usize] = start_broker(leader as usize);
    let view = wait_cluster(&namesrv, 30, |c| {
        c.iter().filter(|r| r["role"] != "not registered").count() == 3
            && c.iter().any(|r| {
                r["raftNode"].as_u64() == Some(leader)
                    && r["role"] == "follower"
                    && r["lagEntries"] == 0
            })
    });
    assert!(
        view.iter().any(|r| r["raftNode"].as_u64() == Some(leader) && r["lagEntries"] == 0),
        "the restarted replica rejoined and caught up: {view:?}\n{}",
        brokers[leader as usize].log_text()
    );
    let new = &brokers[new_leader as usize];
    assert!(new.wait_log("a Raft peer answers again", 10), "{}", new.log_text());

    // Every acknowledged message is there to consume.
    let received = rt.block_on(consume_ids(&namesrv, "ProcTopic", "proc-group", &acked, 30));
    let lost: Vec<&String> = acked.difference(&received).collect();
    assert!(lost.is_empty(), "{} acknowledged messages lost: {lost:?}", lost.len());

    // A clean stop: SIGTERM, exit 0, after unregistering.
    for (i, b) in brokers.iter_mut().enumerate() {
        let status = b.signal("-TERM");
        assert!(status.success(), "broker-a-{i} stops cleanly: {status}\n{}", b.log_text());
    }
    let view = wait_cluster(&namesrv, 5, |c| c.is_empty());
    assert!(view.is_empty(), "stopped replicas are gone: {view:?}");
    // Gone because each said so (closing the connection alone would also evict it).
    let log = ns.log_text();
    assert_eq!(log.matches("a broker unregistered").count(), 3, "{log}");
}

/// A replica process whose disk fails (the queue directory it must create is taken by a file)
/// exits non-zero with the error, after unregistering, so a supervisor restarts it; the other
/// two go on serving. (Once, it kept running with a dead Raft core, never exiting, so
/// systemd's Restart=on-failure never fired.)
#[test]
fn a_broker_process_exits_non_zero_on_a_fatal_error() {
    let dir = tempfile::tempdir().unwrap();
    let ProcGroup { ns, namesrv, mut brokers, leader, .. } = ProcGroup::start(dir.path());
    let doomed = (0..3).find(|i| *i != leader as usize).unwrap();
    let queues = dir.path().join(format!("broker-a-{doomed}")).join("consumequeue");
    std::fs::create_dir_all(&queues).unwrap();
    std::fs::write(queues.join("Doomed"), b"not a directory").unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let send = |body: &str| {
        rt.block_on(async {
            let producer = Producer::start(ProducerConfig::new(&namesrv)).await.unwrap();
            let r = producer.send(Message::new("Doomed", body.to_owned())).await;
            producer.shutdown().await;
            r
        })
    };
    send("first").expect("the send is acknowledged");
    let status = brokers[doomed].wait_exit(30);
    let log = brokers[doomed].log_text();
    let status = status.unwrap_or_else(|| panic!("broker-a-{doomed} kept running:\n{log}"));
    assert!(!status.success(), "a fatal error exits non-zero: {status}\n{log}");
    assert!(log.contains("stopped on a fatal error") && log.contains("Doomed"), "{log}");
    let view = wait_cluster(&namesrv, 10, |c| {
        c.iter().filter(|r| r["role"] != "not registered").count() == 2
    });
    assert_eq!(view.iter().filter(|r| r["role"] != "not registered").count(), 2, "{view:?}");
    assert!(ns.log_text().contains("a broker unregistered"), "it unregistered first");
    send("second").expect("the other two go on");
    for (i, b) in brokers.iter_mut().enumerate().filter(|(i, _)| *i != doomed) {
        let status = b.signal("-TERM");
        assert!(status.success(), "broker-a-{i} stops cleanly: {status}");
    }
}

/// Leadership moves without a failed send: `rocketraft cluster transfer-leader` hands it to the
/// replica named, and a SIGTERM on the leader hands it over before the process goes (a rolling
/// restart costs no election timeout). The SDK's send loop runs throughout; nothing it was
/// told is stored goes missing.
#[test]
fn leadership_moves_on_request_and_on_a_clean_stop_with_no_failed_send() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let ProcGroup { ns, namesrv, configs: _, mut brokers, leader } = ProcGroup::start(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (namesrv, stop) = (namesrv.clone(), stop.clone());
        rt.spawn(async move {
            let producer = Producer::start(ProducerConfig::new(&namesrv)).await.unwrap();
            let (mut acked, mut failed) = (BTreeSet::new(), Vec::new());
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let msg = Message::new("MoveTopic", format!("m{i}"));
                match producer.send(msg).await {
                    Ok(r) => {
                        acked.insert(r.msg_id);
                    }
                    Err(e) => failed.push(e.to_string()),
                }
                i += 1;
            }
            producer.shutdown().await;
            (acked, failed)
        })
    };
    std::thread::sleep(Duration::from_secs(2));

    // On request, to the replica named.
    let to = (leader + 1) % 3;
    let started = Instant::now();
    let out = support::rocketraft()
        .args(["cluster", "transfer-leader", "--group", "broker-a", "--json", "-n", &namesrv])
        .args(["--to", &to.to_string()])
        .output()
        .unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "transfer-leader failed: {stdout}{stderr}");
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((answer["from"].as_u64(), answer["leader"].as_u64()), (Some(leader), Some(to)));
    eprintln!("transfer-leader took {:?}", started.elapsed());
    let view = wait_cluster(&namesrv, 10, |c| leader_of(c) == Some(to));
    assert_eq!(leader_of(&view), Some(to), "{view:?}");
    assert!(brokers[to as usize].wait_log("leads its group", 5));
    // The NameServer and the new master each say so, with group, node and term.
    let term = answer["term"].as_u64().unwrap();
    let line_with = |p: &support::Proc, parts: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = p.log();
            if log.lines().any(|l| parts.iter().all(|part| l.contains(part))) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let term_is = format!("broker_id=0 term={term}");
    let said = line_with(&ns, &["a broker registered as master", "group=broker-a", &term_is]);
    assert!(said, "{}", ns.log_text());
    let node_is = format!("node={to}");
    let parts = ["registered with the NameServers as master", "group=broker-a", &node_is, &term_is];
    assert!(line_with(&brokers[to as usize], &parts), "{}", brokers[to as usize].log_text());
    std::thread::sleep(Duration::from_secs(2));

    // On a clean stop of the leader.
    let stopped = Instant::now();
    let status = brokers[to as usize].signal("-TERM");
    assert!(status.success(), "{}", brokers[to as usize].log_text());
    let log = brokers[to as usize].log_text();
    assert!(log.contains("handed leadership over before stopping"), "{log}");
    let view = wait_cluster(&namesrv, 10, |c| leader_of(c).is_some_and(|l| l != to));
    let next = leader_of(&view).unwrap_or_else(|| panic!("no new leader: {view:?}"));
    // Well within one election timeout (1-2 s) of the stop, handover and registration included.
    eprintln!("a new leader registered {:?} after the SIGTERM", stopped.elapsed());
    assert!(brokers[next as usize].log_text().contains("leads its group"));
    std::thread::sleep(Duration::from_secs(2));

    stop.store(true, Ordering::Relaxed);
    let (acked, failed) = rt.block_on(sender).unwrap();
    eprintln!("{} sends acknowledged, {} failed", acked.len(), failed.len());
    assert!(failed.is_empty(), "sends failed while leadership moved: {failed:?}");
    assert!(acked.len() > 100, "sends went on: {}", acked.len());
    let received = rt.block_on(consume_ids(&namesrv, "MoveTopic", "move-group", &acked, 30));
    let lost: Vec<&String> = acked.difference(&received).collect();
    assert!(lost.is_empty(), "{} acknowledged messages lost: {lost:?}", lost.len());
}
