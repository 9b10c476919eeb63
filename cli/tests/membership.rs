//! Membership of a group of real processes: a replica whose machine died (SIGKILL, data
//! directory wiped) is replaced by a fresh process with `rocketraft cluster replace-replica`,
//! and the group is back to three voters, caught up, with nothing lost; then the leader is
//! removed with `remove-replica` (its leadership moves first): its process unregisters and
//! exits 0, and sends go on.
#![cfg(not(madsim))]
// Real processes in real time: wall-clock deadlines.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use rocketraft_client::{Message, Producer, ProducerConfig};
use support::{consume_ids, free_ports, leader_of, wait_cluster, Proc, ProcGroup};

async fn send(namesrv: &str, from: usize, count: usize) -> BTreeSet<String> {
    let producer = Producer::start(ProducerConfig::new(namesrv)).await.unwrap();
    let mut acked = BTreeSet::new();
    for i in from..from + count {
        let r = producer.send(Message::new("MemberTopic", format!("m{i}"))).await;
        acked.insert(r.unwrap_or_else(|e| panic!("send {i} failed: {e}")).msg_id);
    }
    producer.shutdown().await;
    acked
}

/// `rocketraft ARGS FLAGS --json -n NAMESRV`, parsed; fails the test if it fails.
fn cli(namesrv: &str, args: &[&str], flags: &[(&str, String)]) -> serde_json::Value {
    let mut cmd = support::rocketraft();
    cmd.args(args).args(["--json", "-n", namesrv]);
    for (flag, value) in flags {
        cmd.args([*flag, value.as_str()]);
    }
    let out = cmd.output().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{args:?} failed: {stdout}{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn a_dead_replica_is_replaced_and_a_live_one_removed_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let ProcGroup { ns: _ns, namesrv, configs, mut brokers, leader } = ProcGroup::start(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut acked = rt.block_on(send(&namesrv, 0, 200));

    // A follower's machine dies: SIGKILL, and its disk is gone.
    let dead = (leader + 1) % 3;
    brokers[dead as usize].signal("-KILL");
    std::fs::remove_dir_all(dir.path().join(format!("broker-a-{dead}"))).unwrap();
    acked.extend(rt.block_on(send(&namesrv, 200, 200)));

    // A fresh process on a new machine (here: new ports and directory), node 3, outside the
    // peer list: it starts and waits to be added.
    let ports = free_ports(2);
    let (client_port, raft_port) = (ports[0], ports[1]);
    let raft_addr = format!("127.0.0.1:{raft_port}");
    let text = std::fs::read_to_string(&configs[0]).unwrap();
    let old_port = text
        .lines()
        .find_map(|l| l.strip_prefix("listen = \"127.0.0.1:"))
        .and_then(|p| p.strip_suffix('"'))
        .unwrap()
        .to_owned();
    let text = text
        .replace(&format!("127.0.0.1:{old_port}\""), &format!("127.0.0.1:{client_port}\""))
        .replace("store_dir = \"broker-a-0\"", "store_dir = \"broker-a-3\"")
        .replace("node_id = 0", &format!("node_id = 3\naddr = \"{raft_addr}\""));
    let config = dir.path().join("broker-a-3.toml");
    std::fs::write(&config, text).unwrap();
    let mut fresh = Proc::start(
        "broker-a-3",
        &["broker", "--config", config.to_str().unwrap()],
        dir.path().join("broker-a-3.log"),
    );
    // Not a member yet: not routed.
    std::thread::sleep(Duration::from_secs(1));
    let registered = |c: &[serde_json::Value], node: u64| {
        c.iter().any(|r| r["raftNode"].as_u64() == Some(node) && r["role"] != "not registered")
    };
    assert!(!registered(&support::cluster(&namesrv), 3), "a replica not added is not routed");

    let done = cli(
        &namesrv,
        &["cluster", "replace-replica", "--group", "broker-a"],
        &[("--from", dead.to_string()), ("--to", "3".into()), ("--addr", raft_addr.clone())],
    );
    let voters: BTreeSet<u64> =
        done["voters"].as_array().unwrap().iter().filter_map(|v| v.as_u64()).collect();
    let want: BTreeSet<u64> = (0..4).filter(|n| *n != dead).collect();
    assert_eq!(voters, want, "{done}");

    // Three healthy replicas again, the new one caught up; the dead one is no member.
    let view = wait_cluster(&namesrv, 30, |c| {
        let listed: BTreeSet<u64> = c.iter().filter_map(|r| r["raftNode"].as_u64()).collect();
        listed == want && c.iter().all(|r| r["role"] != "not registered" && r["lagEntries"] == 0)
    });
    let listed: BTreeSet<u64> = view.iter().filter_map(|r| r["raftNode"].as_u64()).collect();
    assert_eq!(listed, want, "{view:?}\n{}", fresh.log_text());
    assert!(view.iter().all(|r| r["lagEntries"] == 0), "{view:?}");
    acked.extend(rt.block_on(send(&namesrv, 400, 200)));

    // The leader is removed: its leadership moves first, its process says so, unregisters
    // and exits 0; the two others go on taking sends.
    let leader_now = leader_of(&view).expect("a leader");
    let done = cli(
        &namesrv,
        &["cluster", "remove-replica", "--group", "broker-a"],
        &[("--node", leader_now.to_string())],
    );
    let voters: BTreeSet<u64> =
        done["voters"].as_array().unwrap().iter().filter_map(|v| v.as_u64()).collect();
    assert_eq!(voters.len(), 2, "{done}");
    assert!(!voters.contains(&leader_now), "{done}");
    let removed = if leader_now == 3 { &mut fresh } else { &mut brokers[leader_now as usize] };
    let status = removed.wait_exit(15).unwrap_or_else(|| panic!("{}", removed.log_text()));
    assert!(status.success(), "{status}\n{}", removed.log_text());
    assert!(removed.log().contains("removed from the group's voters"), "{}", removed.log_text());
    let view = wait_cluster(&namesrv, 10, |c| {
        c.len() == 2 && c.iter().all(|r| r["role"] != "not registered")
    });
    assert_eq!(view.len(), 2, "the removed replica is gone from the routes: {view:?}");
    acked.extend(rt.block_on(send(&namesrv, 600, 100)));

    let received = rt.block_on(consume_ids(&namesrv, "MemberTopic", "member-group", &acked, 30));
    let lost: Vec<&String> = acked.difference(&received).collect();
    assert!(lost.is_empty(), "{} acknowledged messages lost: {lost:?}", lost.len());
}

/// A replica that finds its own synced data damaged quarantines itself, and is repaired from
/// its peers: a follower is SIGKILLed; the leader takes 400 sends of 64 KiB (more than its
/// window of recent entries, so they are read back from its disk); a bit is flipped on the
/// leader's disk in the first of them; the follower restarts and its catch-up reads that entry
/// on the leader, which quarantines itself and exits 1 (the others serve on). Started again on
/// its data it refuses to start and says how to repair it; started on an empty directory and
/// repaired with `cluster repair-replica`, it catches up, leads on request, and every
/// acknowledged message is consumed from it.
#[test]
fn a_quarantined_replica_is_repaired_from_its_peers() {
    let dir = tempfile::tempdir().unwrap();
    let ProcGroup { ns: _ns, namesrv, configs, mut brokers, leader } = ProcGroup::start(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut acked = rt.block_on(send(&namesrv, 0, 100));

    let follower = (leader + 1) % 3;
    brokers[follower as usize].signal("-KILL");
    // Bodies sent as they are (not compressed), so the test finds one on the disk.
    let config =
        ProducerConfig { compress_over_bytes: usize::MAX, ..ProducerConfig::new(&namesrv) };
    let producer = rt.block_on(Producer::start(config)).unwrap();
    for i in 0..400 {
        let mut body = format!("DAMAGE-ME-{i}:").into_bytes();
        body.resize(64 << 10, b'x');
        let sent = rt.block_on(producer.send(Message::new("MemberTopic", body)));
        acked.insert(sent.unwrap_or_else(|e| panic!("send {i} failed: {e}")).msg_id);
    }
    rt.block_on(producer.shutdown());

    // A bit flips in the leader's copy of the first of them (on its disk: the broker maps the
    // same pages).
    let segment = dir.path().join(format!("broker-a-{leader}/commitlog/{:020}", 0));
    let bytes = std::fs::read(&segment).unwrap();
    let at =
        bytes.windows(12).position(|w| w == b"DAMAGE-ME-0:").expect("the first big body") + 100;
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().write(true).open(&segment).unwrap();
        file.write_all_at(&[bytes[at] ^ 0x10], at as u64).unwrap();
        file.sync_all().unwrap();
    }
    drop(bytes);

    brokers[follower as usize] = support::start_broker(dir.path(), &configs, follower as usize);
    let status = brokers[leader as usize].wait_exit(30).unwrap_or_else(|| {
        panic!("the damaged leader kept running:\n{}", brokers[leader as usize].log_text())
    });
    let log = brokers[leader as usize].log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("quarantined"), "{log}");
    // The two others serve on.
    acked.extend(rt.block_on(send(&namesrv, 100, 100)));

    // Started again on its data, it refuses, and says what to do.
    let again = support::rocketraft()
        .args(["broker", "--config", configs[leader as usize].to_str().unwrap()])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&again.stderr).into_owned()
        + &String::from_utf8_lossy(&again.stdout);
    assert!(!again.status.success(), "it started on damaged data: {said}");
    assert!(said.contains("quarantined") && said.contains("repair-replica"), "{said}");

    // The operator's repair: the data set aside, an empty directory, `repair-replica`.
    let data = dir.path().join(format!("broker-a-{leader}"));
    std::fs::rename(&data, dir.path().join(format!("broker-a-{leader}.damaged"))).unwrap();
    brokers[leader as usize] = support::start_broker(dir.path(), &configs, leader as usize);
    let text = std::fs::read_to_string(&configs[leader as usize]).unwrap();
    let raft_addr = text
        .split(&format!("\"{leader}\" = \""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("its address in peers")
        .to_owned();
    let done = cli(
        &namesrv,
        &["cluster", "repair-replica", "--group", "broker-a"],
        &[("--node", leader.to_string()), ("--addr", raft_addr)],
    );
    let voters: BTreeSet<u64> =
        done["voters"].as_array().unwrap().iter().filter_map(|v| v.as_u64()).collect();
    assert_eq!(voters, (0..3).collect(), "{done}");
    // The lowest id starts a fresh group's first election; on empty data it must not start a
    // group of its own while its old one goes on (it would stand for elections against it).
    if leader == 0 {
        let log = brokers[0].log_text();
        assert!(log.contains("not bootstrapping it again"), "{log}");
    }
    let view = wait_cluster(&namesrv, 30, |c| {
        c.len() == 3 && c.iter().all(|r| r["role"] != "not registered" && r["lagEntries"] == 0)
    });
    assert!(
        view.len() == 3 && view.iter().all(|r| r["lagEntries"] == 0),
        "{view:?}\n{}",
        brokers[leader as usize].log_text()
    );

    // It holds the group's log: made leader, it serves every acknowledged message.
    cli(
        &namesrv,
        &["cluster", "transfer-leader", "--group", "broker-a"],
        &[("--to", leader.to_string())],
    );
    wait_cluster(&namesrv, 10, |c| leader_of(c) == Some(leader));
    acked.extend(rt.block_on(send(&namesrv, 200, 100)));
    let received = rt.block_on(consume_ids(&namesrv, "MemberTopic", "repair-group", &acked, 30));
    let lost: Vec<&String> = acked.difference(&received).collect();
    assert!(lost.is_empty(), "{} acknowledged messages lost: {lost:?}", lost.len());
}
