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
