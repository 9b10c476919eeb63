//! Real processes from the built binary, shared by the process tests: a NameServer and
//! `rocketraft broker --config` replicas, each with its own TOML file and data directory.
// Real processes in real time: wall-clock deadlines and a thread draining each stdout.
#![allow(clippy::disallowed_methods, dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn rocketraft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rocketraft"))
}

/// Ports nobody listens on right now, below Linux's ephemeral range (32768+) so that no
/// client socket takes one while a killed replica is down; where the search starts depends on
/// the process id, so concurrent runs look in different places, and each call goes on from where
/// the last one stopped, so the tests of one run (which run at once) never share a port.
pub fn free_ports(n: usize) -> Vec<u16> {
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
pub struct Proc {
    child: Option<Child>,
    name: String,
    log: PathBuf,
    ready: Option<std::sync::mpsc::Receiver<Option<String>>>,
    /// The line that said it was ready.
    ready_line: String,
}

impl Proc {
    /// Starts `rocketraft args`, stderr to `log`, and waits for its "ready" line on stdout.
    /// It logs at its default level (what an operator sees), whatever the test's `RUST_LOG`.
    pub fn start(name: &str, args: &[&str], log: PathBuf) -> Proc {
        let mut p = Proc::spawn(name, args, log);
        p.wait_ready();
        p
    }

    /// Starts `rocketraft args` without waiting for it (see [`Proc::wait_ready`]).
    pub fn spawn(name: &str, args: &[&str], log: PathBuf) -> Proc {
        let err = std::fs::File::create(&log).unwrap();
        let mut child = rocketraft()
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // A thread reads stdout (and keeps draining it, so the child never blocks on a full
        // pipe) and says whether the ready line came.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            let ready = lines.find(|l| l.contains("ready"));
            let _ = tx.send(ready);
            lines.for_each(drop);
        });
        Proc {
            child: Some(child),
            name: name.into(),
            log,
            ready: Some(rx),
            ready_line: String::new(),
        }
    }

    /// Waits at most 60 s for the "ready" line.
    pub fn wait_ready(&mut self) {
        let Some(rx) = self.ready.take() else { return };
        let ready = rx.recv_timeout(Duration::from_secs(60)).ok().flatten();
        assert!(ready.is_some(), "{} did not get ready:\n{}", self.name, self.log_text());
        self.ready_line = ready.unwrap_or_default();
    }

    /// The line that said it was ready (empty before [`Proc::wait_ready`]).
    pub fn ready_line(&self) -> &str {
        &self.ready_line
    }

    pub fn log_text(&self) -> String {
        format!("--- {} log ---\n{}", self.name, self.log())
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `secs` for a line of its log to contain `what`.
    pub fn wait_log(&self, what: &str, secs: u64) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while !self.log().contains(what) {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    }

    /// Waits up to `secs` for the process to exit by itself.
    pub fn wait_exit(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
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

    pub fn signal(&mut self, sig: &str) -> std::process::ExitStatus {
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

/// One throwaway CA and node certificate for the group, written to `dir/tls/`: the replicas
/// talk Raft over mutual TLS with it (their client ports stay permissive, so plain clients
/// work). Returns the `[tls]` section.
pub fn tls_section(dir: &Path) -> String {
    let made = rocketraft_remoting::tls::throwaway(&["127.0.0.1", "localhost"]).unwrap();
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    for (name, text) in
        [("ca.pem", &made.ca_pem), ("node.pem", &made.cert_pem), ("node.key", &made.key_pem)]
    {
        std::fs::write(tls.join(name), text).unwrap();
    }
    let path = |name: &str| tls.join(name).display().to_string();
    format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\nca_file = {:?}\nclient_mode = \"permissive\"\n",
        path("node.pem"),
        path("node.key"),
        path("ca.pem")
    )
}

pub fn broker_config(
    dir: &Path,
    id: usize,
    namesrv: u16,
    clients: &[u16],
    raft: &[u16],
    store: &str,
    tls: &str,
) -> PathBuf {
    let peers: Vec<String> =
        raft.iter().enumerate().map(|(i, p)| format!("\"{i}\" = \"127.0.0.1:{p}\"")).collect();
    let text = format!(
        r#"
cluster_name = "ProcCluster"
broker_name = "broker-a"
listen = "127.0.0.1:{port}"
metrics_listen = "127.0.0.1:0"
advertised_addr = "127.0.0.1:{port}"
namesrv_addrs = ["127.0.0.1:{namesrv}"]
store_dir = "broker-a-{id}"

[raft]
node_id = {id}
peers = {{ {peers} }}

[store]
{store}

{tls}
"#,
        port = clients[id],
        peers = peers.join(", "),
    );
    let path = dir.join(format!("broker-a-{id}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts replica `i` of the group from its config file.
pub fn start_broker(dir: &Path, configs: &[PathBuf], i: usize) -> Proc {
    let mut p = spawn_broker(dir, configs, i);
    p.wait_ready();
    p
}

/// Starts replica `i` without waiting for it to be ready.
pub fn spawn_broker(dir: &Path, configs: &[PathBuf], i: usize) -> Proc {
    Proc::spawn(
        &format!("broker-a-{i}"),
        &["broker", "--config", configs[i].to_str().unwrap()],
        dir.join(format!("broker-a-{i}.log")),
    )
}

/// `rocketraft cluster list --json`, parsed (empty while the NameServer knows no broker).
pub fn cluster(namesrv: &str) -> Vec<serde_json::Value> {
    let out = rocketraft().args(["cluster", "list", "--json", "-n", namesrv]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cluster list failed: {err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().cloned().expect("a JSON array")
}

/// Polls `cluster list` until `ok` holds (up to `secs`), returning the last answer.
pub fn wait_cluster(
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

pub fn leader_of(c: &[serde_json::Value]) -> Option<u64> {
    c.iter()
        .find(|r| r["role"] == "leader" && r["brokerId"] == 0)
        .and_then(|r| r["raftNode"].as_u64())
}

/// A NameServer and three `rocketraft broker` processes of one group, each with its own config
/// file and data directory under `dir`, once every replica is registered and one leads.
pub struct ProcGroup {
    pub ns: Proc,
    pub namesrv: String,
    pub configs: Vec<PathBuf>,
    pub brokers: Vec<Proc>,
    pub leader: u64,
}

/// The `[store]` settings of the process tests: small files, and no refusal for the machine's
/// shared disk being fuller than RocketMQ's ratios (others fill it; only a full one refuses).
pub const SMALL_STORE: &str = "segment_size_bytes = 67108864\nindex_slot_count = 100000\n\
                               index_max = 400000\ndisk_clean_ratio = 1.0\n\
                               disk_max_used_ratio = 1.0";

impl ProcGroup {
    pub fn start(dir: &Path) -> ProcGroup {
        Self::start_with(dir, |_| dir.to_owned(), SMALL_STORE)
    }

    /// A group whose replica `i` keeps its config file and data under `data_root(i)` (its
    /// `store_dir` is `broker-a-<i>` there; logs stay in `dir`), with `store` as its `[store]`
    /// settings.
    pub fn start_with(dir: &Path, data_root: impl Fn(usize) -> PathBuf, store: &str) -> ProcGroup {
        Self::start_with_tls(dir, data_root, store, true)
    }

    /// [`ProcGroup::start_with`], with Raft over mutual TLS or plain TCP.
    pub fn start_with_tls(
        dir: &Path,
        data_root: impl Fn(usize) -> PathBuf,
        store: &str,
        tls: bool,
    ) -> ProcGroup {
        let ports = free_ports(7);
        let (ns_port, clients, raft) = (ports[0], &ports[1..4], &ports[4..7]);
        let namesrv = format!("127.0.0.1:{ns_port}");
        let ns = Proc::start(
            "namesrv",
            &["namesrv", "--listen", &namesrv, "--metrics-listen", "127.0.0.1:0"],
            dir.join("namesrv.log"),
        );
        let tls = if tls { tls_section(dir) } else { String::new() };
        let configs: Vec<PathBuf> = (0..3)
            .map(|i| broker_config(&data_root(i), i, ns_port, clients, raft, store, &tls))
            .collect();
        // All three at once, as a supervisor starts them: none waits for another to be ready.
        let mut brokers: Vec<Proc> = (0..3).map(|i| spawn_broker(dir, &configs, i)).collect();
        for b in &mut brokers {
            b.wait_ready();
        }
        let view = wait_cluster(&namesrv, 30, |c| {
            c.iter().filter(|r| r["role"] != "not registered").count() == 3
                && leader_of(c).is_some()
        });
        let leader = leader_of(&view).unwrap_or_else(|| panic!("no leader registered: {view:?}"));
        ProcGroup { ns, namesrv, configs, brokers, leader }
    }
}

/// Consumes `topic` from its first offset as consumer group `group` until every message id in
/// `want` came (or `secs` passed); answers the ids received.
pub async fn consume_ids(
    namesrv: &str,
    topic: &str,
    group: &str,
    want: &BTreeSet<String>,
    secs: u64,
) -> BTreeSet<String> {
    use rocketraft_client::{ConsumeFrom, PullConsumer, PullConsumerConfig};
    let mut config = PullConsumerConfig::new(namesrv, group);
    config.consume_from = ConsumeFrom::FirstOffset;
    let consumer = PullConsumer::start(config).await.unwrap();
    consumer.subscribe(topic, "*").await.unwrap();
    let mut received = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !want.is_subset(&received) && tokio::time::Instant::now() < deadline {
        for m in consumer.poll(1_000).await.unwrap_or_default() {
            received.insert(m.msg_id().unwrap_or_default().to_owned());
        }
    }
    consumer.shutdown().await;
    received
}
