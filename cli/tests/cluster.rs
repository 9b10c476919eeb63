//! A cluster of real processes from the built binary: one `rocketraft namesrv` and three
//! `rocketraft broker --config` replicas of one group, each with its own TOML file and data
//! directory. Sends and consumes through them with the SDK, SIGKILLs the leader's process,
//! watches a new leader take over (through `rocketraft cluster list --json`), checks that no
//! acknowledged message is lost, restarts the killed process and sees it rejoin and catch up.
//! (The test lives in the `rocketraft` package because Cargo hands `CARGO_BIN_EXE_rocketraft`,
//! a fresh build of the binary, only to that package's tests.)
#![cfg(not(madsim))]
// Real processes in real time: wall-clock deadlines and a thread draining each stdout.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rocketraft_client::{
    ConsumeFrom, Message, Producer, ProducerConfig, PullConsumer, PullConsumerConfig,
};

fn rocketraft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rocketraft"))
}

/// Ports nobody listens on right now, below Linux's ephemeral range (32768+) so that no
/// client socket takes one while a killed replica is down; where the search starts depends on
/// the process id, so concurrent runs look in different places, and each call goes on from where
/// the last one stopped, so the tests of one run (which run at once) never share a port.
fn free_ports(n: usize) -> Vec<u16> {
    static NEXT: std::sync::Mutex<u16> = std::sync::Mutex::new(0);
    let mut next = NEXT.lock().unwrap_or_else(|p| p.into_inner());
    if *next == 0 {
        *next = 20_000 + (std::process::id() % 1_000) as u16 * 12;
    }
    let mut ports = Vec::new();
    let mut candidate = *next;
    while ports.len() < n {
        candidate = if candidate >= 32_000 { 20_000 } else { candidate + 1 };
        if std::net::TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
            ports.push(candidate);
        }
    }
    *next = candidate;
    ports
}

/// A child process killed when the test ends, whatever happens.
struct Proc {
    child: Option<Child>,
    name: String,
    log: PathBuf,
}

impl Proc {
    /// Starts `rocketraft args`, stderr to `log`, and waits for its "ready" line on stdout.
    fn start(name: &str, args: &[&str], log: PathBuf) -> Proc {
        let err = std::fs::File::create(&log).unwrap();
        let mut child = rocketraft()
            .args(args)
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // A thread reads stdout (and keeps draining it, so the child never blocks on a full
        // pipe); the test waits at most 60 s for the ready line.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            let ready = lines.any(|l| l.contains("ready"));
            let _ = tx.send(ready);
            lines.for_each(drop);
        });
        let ready = rx.recv_timeout(Duration::from_secs(60)).unwrap_or(false);
        let p = Proc { child: Some(child), name: name.into(), log };
        assert!(ready, "{name} did not get ready:\n{}", p.log_text());
        p
    }

    fn log_text(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        format!("--- {} log ---\n{log}", self.name)
    }

    /// Waits up to `secs` for the process to exit by itself.
    fn wait_exit(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().expect("running").try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    fn signal(&mut self, sig: &str) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
        assert!(ok.success());
        child.wait().unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn broker_config(dir: &Path, id: usize, namesrv: u16, clients: &[u16], raft: &[u16]) -> PathBuf {
    let peers: Vec<String> =
        raft.iter().enumerate().map(|(i, p)| format!("\"{i}\" = \"127.0.0.1:{p}\"")).collect();
    let text = format!(
        r#"
cluster_name = "ProcCluster"
broker_name = "broker-a"
listen = "127.0.0.1:{port}"
advertised_addr = "127.0.0.1:{port}"
namesrv_addrs = ["127.0.0.1:{namesrv}"]
store_dir = "broker-a-{id}"

[raft]
node_id = {id}
peers = {{ {peers} }}

[store]
segment_size_bytes = 67108864
index_slot_count = 100000
index_max = 400000
"#,
        port = clients[id],
        peers = peers.join(", "),
    );
    let path = dir.join(format!("broker-a-{id}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts replica `i` of the group from its config file.
fn start_broker(dir: &Path, configs: &[PathBuf], i: usize) -> Proc {
    Proc::start(
        &format!("broker-a-{i}"),
        &["broker", "--config", configs[i].to_str().unwrap()],
        dir.join(format!("broker-a-{i}.log")),
    )
}

/// `rocketraft cluster list --json`, parsed (empty while the NameServer knows no broker).
fn cluster(namesrv: &str) -> Vec<serde_json::Value> {
    let out = rocketraft().args(["cluster", "list", "--json", "-n", namesrv]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cluster list failed: {err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().cloned().expect("a JSON array")
}

/// Polls `cluster list` until `ok` holds (up to `secs`), returning the last answer.
fn wait_cluster(
    namesrv: &str,
    secs: u64,
    ok: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let c = cluster(namesrv);
        if ok(&c) || std::time::Instant::now() > deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn leader_of(c: &[serde_json::Value]) -> Option<u64> {
    c.iter()
        .find(|r| r["role"] == "leader" && r["brokerId"] == 0)
        .and_then(|r| r["raftNode"].as_u64())
}

/// A NameServer and three `rocketraft broker` processes of one group, each with its own config
/// file and data directory under `dir`, once every replica is registered and one leads.
struct ProcGroup {
    ns: Proc,
    namesrv: String,
    configs: Vec<PathBuf>,
    brokers: Vec<Proc>,
    leader: u64,
}

impl ProcGroup {
    fn start(dir: &Path) -> ProcGroup {
        let ports = free_ports(7);
        let (ns_port, clients, raft) = (ports[0], &ports[1..4], &ports[4..7]);
        let namesrv = format!("127.0.0.1:{ns_port}");
        let ns =
            Proc::start("namesrv", &["namesrv", "--listen", &namesrv], dir.join("namesrv.log"));
        let configs: Vec<PathBuf> =
            (0..3).map(|i| broker_config(dir, i, ns_port, clients, raft)).collect();
        let brokers: Vec<Proc> = (0..3).map(|i| start_broker(dir, &configs, i)).collect();
        let view = wait_cluster(&namesrv, 30, |c| {
            c.iter().filter(|r| r["role"] != "not registered").count() == 3
                && leader_of(c).is_some()
        });
        let leader = leader_of(&view).unwrap_or_else(|| panic!("no leader registered: {view:?}"));
        ProcGroup { ns, namesrv, configs, brokers, leader }
    }
}

#[test]
fn a_cluster_of_processes_survives_sigkill_of_its_leader() {
    let dir = tempfile::tempdir().unwrap();
    let ProcGroup { ns, namesrv, configs, mut brokers, leader } = ProcGroup::start(dir.path());
    let start_broker = |i: usize| start_broker(dir.path(), &configs, i);
    assert!(dir.path().join("broker-a-0").join("replica.id").exists(), "store_dir from the config");

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

    // Every acknowledged message is there to consume.
    let received = rt.block_on(async {
        let mut config = PullConsumerConfig::new(&namesrv, "proc-group");
        config.consume_from = ConsumeFrom::FirstOffset;
        let consumer = PullConsumer::start(config).await.unwrap();
        consumer.subscribe("ProcTopic", "*").await.unwrap();
        let mut received = BTreeSet::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !acked.is_subset(&received) && tokio::time::Instant::now() < deadline {
            for m in consumer.poll(1_000).await.unwrap_or_default() {
                received.insert(m.msg_id().unwrap_or_default().to_owned());
            }
        }
        consumer.shutdown().await;
        received
    });
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
