//! The simulated cluster: NameServers and broker groups on madsim nodes, each replica on the
//! simulated disk (`SimStorage`: fsync and power loss modelled) with in-memory metadata, both
//! kept outside the node so that they survive a kill or a restart as files survive a crash.
//!
//! Addresses: NameServer i at `10.0.0.(i+1):9876`; replica r of group g at
//! `10.0.(g+1).(r+1)`, broker port 10911, Raft port 40911; clients on `10.0.9.x`.
//! Every replica boots after a seeded delay (otherwise every seed elects the same leader).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::rand::Rng;
use madsim::runtime::{Handle, NodeHandle};
use openraft::Raft;
use rocketraft_broker::{arrival_listener, Broker, BrokerConfig, PullWaiters};
use rocketraft_namesrv::{NameServer, NamesrvConfig, Registry};
use rocketraft_raft::network::MessageFaults;
use rocketraft_raft::{MemMeta, NodeConfig, RaftNode, RaftTiming, StateMachine, TypeConfig};
use rocketraft_store::indexfile::IndexConfig;
use rocketraft_store::io::sim::SimStorage;
use rocketraft_store::io::Storage;
use rocketraft_store::{
    CommitLog, CommitLogConfig, ConsumeQueueConfig, DispatchConfig, FlushMode, StoreError,
};

use crate::check::{Event, History, ReplicaState};

/// What the cluster is made of.
#[derive(Debug, Clone)]
pub struct Topology {
    pub namesrvs: usize,
    pub groups: usize,
    /// Replicas a group starts with (its bootstrap peers: ids 0..replicas).
    pub replicas: u64,
    /// Spare replicas of each group (ids replicas..replicas + spares): started empty outside
    /// the peer list, they wait until [`SimCluster::add_replica`] adds them. Default 0.
    pub spares: u64,
    pub flush: FlushMode,
    /// Broker registration period (DESIGN.md: 30 s).
    pub register_interval_ms: u64,
    /// Brokers acknowledge sends before they commit: a known bug, put back on purpose to show
    /// that the checkers catch it.
    pub sim_bug_ack_before_commit: bool,
    /// Brokers apply older consumer offset commits after newer ones: put in on purpose, as
    /// above.
    pub sim_bug_offsets_out_of_order: bool,
    /// Replicas' log stores report appends durable before they are synced: put in on
    /// purpose, as above.
    pub sim_bug_ack_before_fsync: bool,
    /// Replicas send their Raft calls unchecked, so a replica whose data was wiped is taken
    /// for the member it was: put in on purpose, as above.
    pub sim_bug_accept_wiped: bool,
    /// Retention deletes what parked and half messages still need (see
    /// `NodeConfig::sim_bug_retention_ignores_floor`): a bug put in on purpose.
    pub sim_bug_retention_ignores_floor: bool,
    /// Brokers' schedule services start from each parked queue's start on a new term: a
    /// known-wrong shape, put in on purpose to show the delayed checkers catch it.
    pub sim_bug_schedule_from_zero: bool,
    /// Brokers move parked messages 10 s early: put in on purpose, as above.
    pub sim_bug_deliver_early: bool,
    /// Transaction bugs put in on purpose, for the transaction checkers (see
    /// `BrokerConfig`): END_TRANSACTION ignores the half's mark; a check-back answer always
    /// commits; a new master checks back only halves stored after it became master.
    pub sim_bug_tx_end_unchecked: bool,
    pub sim_bug_tx_check_answer_commits: bool,
    pub sim_bug_tx_scan_from_term_start: bool,
    /// Replica bugs put in on purpose (see `rocketraft_raft::node::SimBugs`).
    pub sim_bugs: rocketraft_raft::node::SimBugs,
    /// Brokers answer a pull's next offset one too far (consumers skip a message a pull), or
    /// ignore `pull_batch_max`: put in on purpose, as above.
    pub sim_bug_pull_skips_one: bool,
    pub sim_bug_pull_batch_unbounded: bool,
    /// Brokers give their replicas 1,024 proposals in flight, not `proposals_in_flight_max`:
    /// put in on purpose, as above.
    pub sim_bug_proposals_unbounded: bool,
    /// Raft RPCs dropped and duplicated (per mille) by every replica's transport.
    pub raft_message_faults: MessageFaults,
    /// Send proposals each leader keeps in flight. Default 4 (not the broker's 1), so every
    /// fault schedule also kills, pauses and isolates leaders with several proposals in flight.
    pub proposals_in_flight_max: usize,
    /// When brokers acknowledge a send. Default quorum; the checkers allow what
    /// `Replication::Leader` documents it can lose only when it is set here.
    pub replication: rocketraft_raft::Replication,
}

impl Default for Topology {
    /// DESIGN.md §6's cluster: 2 NameServers, 2 groups of 3, sync flush.
    fn default() -> Self {
        Topology {
            namesrvs: 2,
            groups: 2,
            replicas: 3,
            flush: FlushMode::Sync,
            register_interval_ms: 30_000,
            sim_bug_ack_before_commit: false,
            sim_bug_offsets_out_of_order: false,
            sim_bug_ack_before_fsync: false,
            spares: 0,
            sim_bug_accept_wiped: false,
            sim_bug_retention_ignores_floor: false,
            sim_bug_schedule_from_zero: false,
            sim_bug_deliver_early: false,
            sim_bug_tx_end_unchecked: false,
            sim_bug_tx_check_answer_commits: false,
            sim_bug_tx_scan_from_term_start: false,
            sim_bugs: Default::default(),
            sim_bug_pull_skips_one: false,
            sim_bug_pull_batch_unbounded: false,
            sim_bug_proposals_unbounded: false,
            raft_message_faults: MessageFaults::default(),
            proposals_in_flight_max: 4,
            replication: rocketraft_raft::Replication::Quorum,
        }
    }
}

pub fn namesrv_addr(i: usize) -> String {
    format!("10.0.0.{}:9876", i + 1)
}

pub fn group_name(g: usize) -> String {
    format!("broker-{}", (b'a' + g as u8) as char)
}

pub fn broker_addr(g: usize, r: u64) -> String {
    format!("10.0.{}.{}:10911", g + 1, r + 1)
}

fn raft_addr(g: usize, r: u64) -> String {
    format!("10.0.{}.{}:40911", g + 1, r + 1)
}

/// The simulated brokers' `transaction_timeout_ms`: a half message younger than this is not
/// checked back.
pub const TX_TIMEOUT_MS: u64 = 1_000;

/// The simulated volume of each replica (SimStorage's default).
const SIM_VOLUME_BYTES: u64 = 64 << 30;

/// What the test can see of a running replica.
#[derive(Clone)]
pub struct ReplicaView {
    pub raft: Raft<TypeConfig>,
    pub log: Arc<Mutex<CommitLog<SimStorage>>>,
    pub state_machine: StateMachine<SimStorage, MemMeta>,
    pub dispatcher: Arc<Mutex<rocketraft_store::Dispatcher<SimStorage>>>,
}

type Views = Arc<Mutex<BTreeMap<(usize, u64), ReplicaView>>>;
/// (group, replica) -> the first applied index not yet recorded for the Raft invariants.
type AppliedCursors = BTreeMap<(usize, u64), u64>;
/// Replicas stopped on a fatal error (and not restarted since), with the error.
type Stopped = Arc<Mutex<BTreeMap<(usize, u64), String>>>;

/// A running simulated cluster.
pub struct SimCluster {
    pub topology: Topology,
    handle: Handle,
    pub namesrv_nodes: Vec<NodeHandle>,
    namesrvs: Arc<Mutex<BTreeMap<usize, NameServer>>>,
    pub replica_nodes: BTreeMap<(usize, u64), NodeHandle>,
    /// Each replica's disk, for power loss.
    pub disks: BTreeMap<(usize, u64), SimStorage>,
    /// Each replica's metadata store: a power loss drops its lazy (unsynced) writes too.
    pub metas: BTreeMap<(usize, u64), MemMeta>,
    views: Views,
    stopped: Stopped,
    /// Replicas whose disk [`SimCluster::corrupt_entry`] damaged: they may be quarantined.
    corrupted: Mutex<std::collections::BTreeSet<(usize, u64)>>,
    /// (group, topic, queue) -> the furthest start of that queue any replica had in this run
    /// (see [`SimCluster::observe_retention`]).
    retained: Mutex<BTreeMap<(usize, String, i32), u64>>,
    /// (group, topic, queue) -> the next queue offset [`SimCluster::observe_stored`] reads.
    stored: Mutex<BTreeMap<(usize, String, i32), u64>>,
    /// How many times each replica's data was wiped (a wiped replica votes afresh).
    wipes: Mutex<BTreeMap<(usize, u64), u32>>,
    /// The Raft invariants checked on every observation, and how far each replica's applied
    /// entries were recorded for them.
    raft: Mutex<(crate::check::RaftInvariants, AppliedCursors)>,
    /// Each replica's applied index when it was last killed: restarted, it applies again up
    /// to there (see `RaftSample::metadata`).
    applied_at_kill: Mutex<BTreeMap<(usize, u64), u64>>,
    /// Nodes killed and not restarted yet (a kill of a dead node or a restart of a live one
    /// does nothing, so overlapping fault schedules stay well-formed).
    down: Mutex<std::collections::BTreeSet<String>>,
    /// Power losses per replica: each starts a new sequence of its applied offsets (see
    /// [`SimCluster::observe_offsets`]).
    power_losses: Mutex<BTreeMap<(usize, u64), u32>>,
    /// The client nodes made by [`SimCluster::client_node`], stopped with the cluster.
    clients: Mutex<Vec<NodeHandle>>,
    /// The node admin calls go from (made at the first).
    admin: Mutex<Option<NodeHandle>>,
    /// Latency spikes in force (they may overlap; the network is slow while any is).
    latency_spikes: Mutex<u32>,
    /// The furthest each group's replicas' clocks were stepped ahead in this run.
    ahead_max: Mutex<BTreeMap<usize, i64>>,
    /// When the last power loss of any replica happened.
    last_power_loss: Mutex<Option<madsim::time::Instant>>,
}

/// Every link's latency while a latency spike is in force: well past the 250 ms heartbeat, so
/// AppendEntries calls time out and elections start, below the 2 s election timeout's top.
pub const SPIKE_LATENCY: std::ops::Range<Duration> =
    Duration::from_millis(50)..Duration::from_millis(600);
/// madsim's own latency range, restored when the last spike ends.
const NORMAL_LATENCY: std::ops::Range<Duration> =
    Duration::from_millis(1)..Duration::from_millis(10);

impl SimCluster {
    /// Creates every node; replicas boot after up to 200 ms (seeded).
    pub fn start(topology: Topology) -> SimCluster {
        let handle = Handle::current();
        rocketraft_raft::clock::clear_skews();
        let namesrvs: Arc<Mutex<BTreeMap<usize, NameServer>>> = Arc::default();
        let mut namesrv_nodes = Vec::new();
        for i in 0..topology.namesrvs {
            let shared = namesrvs.clone();
            let node = handle
                .create_node()
                .name(format!("namesrv-{i}"))
                .ip(namesrv_addr(i).split(':').next().unwrap().parse().unwrap())
                .init(move || {
                    let shared = shared.clone();
                    async move {
                        let config =
                            NamesrvConfig { listen: namesrv_addr(i), ..Default::default() };
                        let ns = NameServer::start(config).await.expect("NameServer starts");
                        shared.lock().unwrap().insert(i, ns);
                        std::future::pending::<()>().await;
                    }
                })
                .build();
            namesrv_nodes.push(node);
        }
        let views: Views = Arc::default();
        let stopped: Stopped = Arc::default();
        let mut replica_nodes = BTreeMap::new();
        let mut disks = BTreeMap::new();
        let mut metas = BTreeMap::new();
        for g in 0..topology.groups {
            for r in 0..topology.replicas + topology.spares {
                let disk = SimStorage::new();
                let meta = MemMeta::new();
                disks.insert((g, r), disk.clone());
                metas.insert((g, r), meta.clone());
                let (views, stopped, topo) = (views.clone(), stopped.clone(), topology.clone());
                let node = handle
                    .create_node()
                    .name(format!("{}-{r}", group_name(g)))
                    .ip(broker_addr(g, r).split(':').next().unwrap().parse().unwrap())
                    .init(move || {
                        let (disk, meta, topo) = (disk.clone(), meta.clone(), topo.clone());
                        let (views, stopped) = (views.clone(), stopped.clone());
                        async move { run_replica(g, r, topo, disk, meta, views, stopped).await }
                    })
                    .build();
                replica_nodes.insert((g, r), node);
            }
        }
        SimCluster {
            topology,
            handle,
            namesrv_nodes,
            namesrvs,
            replica_nodes,
            disks,
            metas,
            views,
            stopped,
            corrupted: Mutex::new(Default::default()),
            retained: Mutex::new(Default::default()),
            wipes: Mutex::new(Default::default()),
            raft: Mutex::new(Default::default()),
            applied_at_kill: Mutex::default(),
            stored: Mutex::default(),
            down: Mutex::new(Default::default()),
            power_losses: Mutex::new(BTreeMap::new()),
            clients: Mutex::new(Vec::new()),
            admin: Mutex::new(None),
            latency_spikes: Mutex::new(0),
            ahead_max: Mutex::new(BTreeMap::new()),
            last_power_loss: Mutex::new(None),
        }
    }

    /// Steps replica (g, r)'s wall clock to `skew_ms` off the true time (a machine whose
    /// clock was set wrong, or stepped by NTP). A running broker keeps the time it read at
    /// start (it counts on the monotonic clock from there), so the step reaches it when it
    /// next starts: see [`SimCluster::restart`]. Retention reads it at once.
    pub fn step_clock(&self, g: usize, r: u64, skew_ms: i64) {
        rocketraft_raft::clock::set_skew_ms(self.replica_nodes[&(g, r)].id(), skew_ms);
        let mut ahead = self.ahead_max.lock().unwrap();
        let max = ahead.entry(g).or_insert(0);
        *max = (*max).max(skew_ms);
    }

    /// The furthest a replica of group `g` had its clock stepped ahead in this run (0 if none
    /// was; a later step back does not undo it): a leader whose clock is ahead moves the
    /// group's time forward, so messages parked before it led come due up to that much early,
    /// and nothing can tell its clock from a right one.
    pub fn clock_ahead_max_ms(&self, g: usize) -> i64 {
        self.ahead_max.lock().unwrap().get(&g).copied().unwrap_or(0)
    }

    /// Where the store timestamps in the log of running replica (g, r) go backwards, in log
    /// order: (index of the entry, newest stamp before it, its record's stamp), the first
    /// such place only (`None`: nowhere, or the replica does not run). A group's time must not
    /// run backwards, whichever replica stamped. Errs if the log cannot be read or decoded.
    pub fn stamps_backwards(&self, g: usize, r: u64) -> Result<Option<(u64, i64, i64)>, String> {
        use rocketraft_protocol::message::decode_records;
        use rocketraft_store::{EntryKind, RaftIndex};
        let Some(log) = self.views.lock().unwrap().get(&(g, r)).map(|v| v.log.clone()) else {
            return Ok(None);
        };
        let log = log.lock().unwrap();
        let (mut at, end) = (log.start().next_index.0, log.end().next_index.0);
        let mut newest = i64::MIN;
        while at < end {
            let to = (at + 256).min(end);
            let entries = log.entries(RaftIndex(at)..RaftIndex(to)).map_err(|e| e.to_string())?;
            for e in entries.iter().filter(|e| e.kind == EntryKind::Messages) {
                let records = decode_records(&e.payload).map_err(|err| err.to_string())?;
                for record in records {
                    if record.store_timestamp < newest {
                        return Ok(Some((e.index.0, newest, record.store_timestamp)));
                    }
                    newest = record.store_timestamp;
                }
            }
            at = to;
        }
        Ok(None)
    }

    /// Stops every node of the run (replicas, NameServers, clients) and lets madsim drop
    /// their tasks. madsim frees a task only when it is woken on a killed node, not when the
    /// runtime ends, so without this each seed's nodes, disks included, stay in memory until
    /// the process exits and a soak of many seeds runs out of memory.
    pub async fn stop(&self) {
        self.views.lock().unwrap().clear();
        self.namesrvs.lock().unwrap().clear();
        let clients = std::mem::take(&mut *self.clients.lock().unwrap());
        let nodes = self.replica_nodes.values().chain(&self.namesrv_nodes).chain(&clients);
        for node in nodes {
            self.handle.kill(node.id());
        }
        madsim::time::sleep(Duration::from_millis(1)).await;
    }

    /// The NameServer list clients are given (`a;b`).
    pub fn namesrv_list(&self) -> String {
        (0..self.topology.namesrvs).map(namesrv_addr).collect::<Vec<_>>().join(";")
    }

    /// A copy of NameServer `i`'s registry, if it runs.
    pub fn registry(&self, i: usize) -> Option<Registry> {
        self.namesrvs.lock().unwrap().get(&i).map(NameServer::registry)
    }

    /// NameServer `i`'s clock, the time base of its registry's `last_update_ms`.
    pub fn namesrv_now_ms(&self, i: usize) -> Option<i64> {
        self.namesrvs.lock().unwrap().get(&i).map(NameServer::now_ms)
    }

    /// A client node (for producers, consumers, admin calls).
    pub fn client_node(&self, n: u8) -> NodeHandle {
        let node = self
            .handle
            .create_node()
            .name(format!("client-{n}"))
            .ip(format!("10.0.9.{}", n + 1).parse().unwrap())
            .build();
        self.clients.lock().unwrap().push(node.clone());
        node
    }

    /// Asks group g's leader, by the admin call `rocketraft cluster transfer-leader` makes
    /// (from a client node of its own), to hand leadership to replica `to` within 3 s: who
    /// leads then and in which term, or why not.
    pub async fn transfer_leader(&self, g: usize, to: u64) -> Result<(u64, u64), String> {
        let leader = self.leader(g).ok_or_else(|| format!("group {g} has no leader"))?;
        let node = self.admin_node();
        let (ns, addr) = (self.namesrv_list(), broker_addr(g, leader));
        node.spawn(async move {
            let mut config = rocketraft_client::ClientConfig::new(&ns);
            config.instance_name = Some("admin-transfer".into());
            let admin = rocketraft_client::Admin::start(config).await.map_err(|e| e.to_string())?;
            let done = admin.transfer_leader(&addr, to, 3_000).await.map_err(|e| e.to_string());
            admin.shutdown().await;
            done
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Asks group g's leader, by the admin call `rocketraft cluster add-replica` makes, to add
    /// replica `r` (a spare, or one removed and wiped) and wait until it votes: the voters
    /// and learners then, or why not.
    pub async fn add_replica(&self, g: usize, r: u64) -> Result<(Vec<u64>, Vec<u64>), String> {
        let raft = raft_addr(g, r);
        self.admin_call(g, move |admin, leader| async move {
            admin.add_replica(&leader, r, &raft, 20_000).await
        })
        .await
    }

    /// Asks group g's leader, by the admin call `rocketraft cluster remove-replica` makes, to
    /// remove replica `r` (never the leader: the caller moves leadership first).
    pub async fn remove_replica(&self, g: usize, r: u64) -> Result<(Vec<u64>, Vec<u64>), String> {
        self.admin_call(g, move |admin, leader| async move {
            admin.remove_replica(&leader, r, 20_000).await
        })
        .await
    }

    /// Runs an admin call against group g's leader from the admin node.
    async fn admin_call<T, F, Fut>(&self, g: usize, call: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(Arc<rocketraft_client::Admin>, String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = rocketraft_client::Result<T>> + Send,
    {
        let leader = self.leader(g).ok_or_else(|| format!("group {g} has no leader"))?;
        let node = self.admin_node();
        let (ns, addr) = (self.namesrv_list(), broker_addr(g, leader));
        node.spawn(async move {
            let mut config = rocketraft_client::ClientConfig::new(&ns);
            config.instance_name = Some("admin-membership".into());
            let admin = rocketraft_client::Admin::start(config).await.map_err(|e| e.to_string())?;
            let admin = Arc::new(admin);
            let done = call(admin.clone(), addr).await.map_err(|e| e.to_string());
            if let Ok(admin) = Arc::try_unwrap(admin) {
                admin.shutdown().await;
            }
            done
        })
        .await
        .map_err(|e| e.to_string())?
    }

    fn admin_node(&self) -> NodeHandle {
        self.admin
            .lock()
            .unwrap()
            .get_or_insert_with(|| {
                let node =
                    self.handle.create_node().name("admin").ip([10, 0, 9, 200].into()).build();
                self.clients.lock().unwrap().push(node.clone());
                node
            })
            .clone()
    }

    /// The voters of group g's current membership, as its leader (else any running replica)
    /// sees it; the bootstrap peers when no replica runs.
    pub fn voters(&self, g: usize) -> std::collections::BTreeSet<u64> {
        self.membership(g).0
    }

    /// The voters and learners of group g's current membership (see [`SimCluster::voters`]).
    pub fn membership(
        &self,
        g: usize,
    ) -> (std::collections::BTreeSet<u64>, std::collections::BTreeSet<u64>) {
        let views = self.views.lock().unwrap();
        let best = views
            .iter()
            .filter(|((vg, _), _)| *vg == g)
            .map(|(_, v)| v.raft.metrics().borrow().clone())
            .max_by_key(|m| (m.state == openraft::ServerState::Leader, m.current_term));
        match best {
            Some(m) => {
                let members = m.membership_config.membership();
                (members.voter_ids().collect(), members.learner_ids().collect())
            }
            None => ((0..self.topology.replicas).collect(), Default::default()),
        }
    }

    /// Wipes replica (g, r)'s disk and metadata (call it while the replica is killed): a
    /// machine whose data directory was lost, or a new machine given the old one's address.
    pub fn wipe(&self, g: usize, r: u64) {
        self.disks[&(g, r)].wipe();
        self.metas[&(g, r)].wipe();
        // The damage a run put on that disk went with it, and its vote.
        self.corrupted.lock().unwrap().remove(&(g, r));
        *self.wipes.lock().unwrap().entry((g, r)).or_default() += 1;
    }

    /// Kills a client node made by [`SimCluster::client_node`]: a client process crashes
    /// (its tasks stop, its connections close).
    pub fn kill_client(&self, node: &NodeHandle) {
        let mut clients = self.clients.lock().unwrap();
        if let Some(i) = clients.iter().position(|n| n.id() == node.id()) {
            clients.remove(i);
            self.handle.kill(node.id());
        }
    }

    /// The leader of group `g`: the running replica that leads in the highest term by its own
    /// account (another replica's view may be stale), else what a running replica believes.
    pub fn leader(&self, g: usize) -> Option<u64> {
        let views = self.views.lock().unwrap();
        let in_group = || views.iter().filter(|((vg, _), _)| *vg == g);
        let leading = in_group()
            .filter_map(|((_, r), v)| {
                let m = v.raft.metrics().borrow().clone();
                (m.state == openraft::ServerState::Leader).then_some((m.current_term, *r))
            })
            .max();
        leading.map(|(_, r)| r).or_else(|| {
            in_group()
                .filter_map(|(_, v)| v.raft.metrics().borrow().current_leader)
                .find(|l| views.contains_key(&(g, *l)))
        })
    }

    /// Waits until every group has a leader that the first NameServer routes as master.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let step = Duration::from_millis(100);
        let mut waited = Duration::ZERO;
        while waited < timeout {
            let ready = (0..self.topology.groups).all(|g| {
                self.leader(g).is_some_and(|l| {
                    self.registry(0)
                        .and_then(|reg| reg.broker_id_of(&broker_addr(g, l)))
                        .is_some_and(|id| id == 0)
                })
            });
            if ready {
                return true;
            }
            madsim::time::sleep(step).await;
            waited += step;
        }
        let leaders: Vec<_> = (0..self.topology.groups).map(|g| self.leader(g)).collect();
        let ids: Vec<_> = (0..self.topology.groups)
            .map(|g| {
                leaders[g]
                    .and_then(|l| self.registry(0).and_then(|r| r.broker_id_of(&broker_addr(g, l))))
            })
            .collect();
        eprintln!(
            "not ready after {timeout:?}: leaders {leaders:?}, their ids at NameServer 0 {ids:?}"
        );
        false
    }

    /// A power loss of replica (g, r)'s machine (call it while the replica is killed): its
    /// disk keeps what was synced and a seeded prefix of the rest, its metadata store its
    /// durable writes and a seeded prefix of the lazy ones.
    pub fn power_loss(&self, g: usize, r: u64, seed: u64) {
        use rocketraft_store::io::sim::RandomPowerLoss;
        self.disks[&(g, r)].power_loss(&mut RandomPowerLoss::new(seed));
        self.metas[&(g, r)].power_loss(|n| (seed as usize) % (n + 1));
        self.lost_power(g, r);
    }

    fn lost_power(&self, g: usize, r: u64) {
        *self.power_losses.lock().unwrap().entry((g, r)).or_default() += 1;
        #[allow(clippy::disallowed_methods)] // virtual time under madsim
        let now = madsim::time::Instant::now();
        *self.last_power_loss.lock().unwrap() = Some(now);
    }

    /// When the last power loss of any replica happened in this run.
    pub fn last_power_loss(&self) -> Option<madsim::time::Instant> {
        *self.last_power_loss.lock().unwrap()
    }

    /// The worst power loss of replica (g, r)'s machine (call it while the replica is
    /// killed): every write not synced is gone, on its disk and in its metadata store.
    pub fn power_loss_dropping_unsynced(&self, g: usize, r: u64) {
        use rocketraft_store::io::sim::DropAllUnsynced;
        self.disks[&(g, r)].power_loss(&mut DropAllUnsynced);
        self.metas[&(g, r)].power_loss(|_| 0);
        self.lost_power(g, r);
    }

    /// Makes every CommitLog sync of replica (g, r) take `ms` longer (a slow disk); 0 heals.
    pub fn slow_disk(&self, g: usize, r: u64, ms: u64) {
        self.disks[&(g, r)].set_sync_latency_ms(ms);
    }

    /// Makes replica (g, r)'s disk report itself full (above every usage limit: as master it
    /// refuses new sends once retention looks) or heals it.
    pub fn disk_full(&self, g: usize, r: u64, full: bool) {
        self.disks[&(g, r)].set_volume_bytes(if full { 1 } else { SIM_VOLUME_BYTES });
    }

    /// Makes every CommitLog sync of replica (g, r) fail (it stops on the fatal error at its
    /// next one) or heals the disk.
    pub fn fail_syncs(&self, g: usize, r: u64, on: bool) {
        self.disks[&(g, r)].set_fail_commitlog_syncs(on);
    }

    /// Snapshots replica (g, r) and purges its log through the snapshot, logically (openraft's
    /// purge; no segment is deleted, so no consumer loses anything): a follower that needs an
    /// entry before it then catches up by a snapshot, whose history brings those entries along.
    /// Returns the snapshot's last index; `None` if the replica is down or no snapshot came
    /// within 5 s.
    pub async fn snapshot_and_purge(&self, g: usize, r: u64) -> Option<u64> {
        let raft = self.views.lock().unwrap().get(&(g, r))?.raft.clone();
        let applied = raft.metrics().borrow().last_applied?.index;
        raft.trigger().snapshot().await.ok()?;
        let m = raft
            .wait(Some(Duration::from_secs(5)))
            .metrics(|m| m.snapshot.is_some_and(|s| s.index >= applied), "a new snapshot")
            .await
            .ok()?;
        let index = m.snapshot?.index;
        raft.trigger().purge_log(index).await.ok()?;
        Some(index)
    }

    /// Replica (g, r)'s last applied index and its snapshot's, if it runs.
    pub fn applied_and_snapshot(&self, g: usize, r: u64) -> Option<(u64, Option<u64>)> {
        let views = self.views.lock().unwrap();
        let m = views.get(&(g, r))?.raft.metrics().borrow().clone();
        Some((m.last_applied.map_or(0, |l| l.index), m.snapshot.map(|s| s.index)))
    }

    /// Where replica (g, r)'s CommitLog starts (its first retained index), if it runs.
    pub fn log_start(&self, g: usize, r: u64) -> Option<u64> {
        let views = self.views.lock().unwrap();
        let log = views.get(&(g, r))?.log.clone();
        drop(views);
        let start = log.lock().unwrap().start().next_index.0;
        Some(start)
    }

    /// Kills replica (g, r): its tasks stop, its connections close, its disk stays.
    pub fn kill(&self, g: usize, r: u64) {
        if self.down.lock().unwrap().insert(format!("{g}-{r}")) {
            if let Some(v) = self.views.lock().unwrap().remove(&(g, r)) {
                if let Some(applied) = v.raft.metrics().borrow().last_applied {
                    self.applied_at_kill.lock().unwrap().insert((g, r), applied.index);
                }
            }
            self.handle.kill(self.replica_nodes[&(g, r)].id());
        }
    }

    /// Restarts replica (g, r) from its disk.
    pub fn restart(&self, g: usize, r: u64) {
        if self.down.lock().unwrap().remove(&format!("{g}-{r}")) {
            self.views.lock().unwrap().remove(&(g, r));
            self.stopped.lock().unwrap().remove(&(g, r));
            self.handle.restart(self.replica_nodes[&(g, r)].id());
        }
    }

    /// Cuts (or heals) the links between replica (g, r) and NameServer `i`, both directions.
    pub fn cut_from_namesrv(&self, g: usize, r: u64, i: usize, cut: bool) {
        cut_link(self.replica_nodes[&(g, r)].id(), self.namesrv_nodes[i].id(), cut);
    }

    /// Cuts (or heals) the links between replica (g, r) and the other replicas of its group,
    /// both directions; clients and NameServers still reach it (an asymmetric partition).
    pub fn cut_from_peers(&self, g: usize, r: u64, cut: bool) {
        let a = self.replica_nodes[&(g, r)].id();
        for peer in (0..self.topology.replicas).filter(|p| *p != r) {
            cut_link(a, self.replica_nodes[&(g, peer)].id(), cut);
        }
    }

    /// Freezes (or resumes) replica (g, r): its tasks stop running, its connections stay.
    pub fn pause(&self, g: usize, r: u64, paused: bool) {
        let id = self.replica_nodes[&(g, r)].id();
        if paused {
            self.handle.pause(id);
        } else {
            self.handle.resume(id);
        }
    }

    /// Whether replica (g, r) is killed now.
    pub fn is_down(&self, g: usize, r: u64) -> bool {
        self.down.lock().unwrap().contains(&format!("{g}-{r}"))
    }

    /// Kills NameServer `i` (its registry is lost, as a process's memory).
    pub fn kill_namesrv(&self, i: usize) {
        if self.down.lock().unwrap().insert(format!("ns{i}")) {
            self.namesrvs.lock().unwrap().remove(&i);
            self.handle.kill(self.namesrv_nodes[i].id());
        }
    }

    /// Restarts NameServer `i` empty; brokers fill it again at their next registration.
    pub fn restart_namesrv(&self, i: usize) {
        if self.down.lock().unwrap().remove(&format!("ns{i}")) {
            self.handle.restart(self.namesrv_nodes[i].id());
        }
    }

    /// Cuts one direction of replica (g, r)'s links (an asymmetric partition): with `inbound`
    /// nothing reaches it but what it sends still arrives; otherwise the reverse. Or heals it.
    pub fn clog_one_way(&self, g: usize, r: u64, inbound: bool, cut: bool) {
        let net = madsim::net::NetSim::current();
        let id = self.replica_nodes[&(g, r)].id();
        match (inbound, cut) {
            (true, true) => net.clog_node_in(id),
            (true, false) => net.unclog_node_in(id),
            (false, true) => net.clog_node_out(id),
            (false, false) => net.unclog_node_out(id),
        }
    }

    /// Starts (or ends) a latency spike: every message between any two nodes takes
    /// [`SPIKE_LATENCY`] while at least one spike is in force.
    pub fn latency_spike(&self, on: bool) {
        let mut spikes = self.latency_spikes.lock().unwrap();
        *spikes = if on { *spikes + 1 } else { spikes.saturating_sub(1) };
        let latency = if *spikes > 0 { SPIKE_LATENCY } else { NORMAL_LATENCY };
        madsim::net::NetSim::current().update_config(|c| c.send_latency = latency);
    }

    /// Cuts replica (g, r) off the network (both directions), or heals it.
    pub fn isolate(&self, g: usize, r: u64, cut: bool) {
        let net = madsim::net::NetSim::current();
        let id = self.replica_nodes[&(g, r)].id();
        if cut {
            net.clog_node(id);
        } else {
            net.unclog_node(id);
        }
    }

    /// Records what every running replica believes about leadership.
    pub fn observe_leaders(&self, history: &Mutex<History>) {
        let views: Vec<_> =
            self.views.lock().unwrap().iter().map(|(k, v)| (*k, v.clone())).collect();
        let wipes = self.wipes.lock().unwrap().clone();
        let mut h = history.lock().unwrap();
        for ((g, r), v) in views {
            let m = v.raft.metrics().borrow().clone();
            if let Some(l) = m.current_leader {
                h.push(Event::Leader {
                    broker: group_name(g),
                    seen_by: format!("{r}#{}", wipes.get(&(g, r)).copied().unwrap_or(0)),
                    term: m.current_term,
                    leader: l,
                });
            }
        }
    }

    /// Records each running replica's applied consumer offsets of `group` on `topic` (queues
    /// `0..queues` of its own broker group), one sequence per replica and power loss:
    /// `group@broker/replica#losses`. A replica applies commits in log order, so its sequence
    /// must never go backwards. A power loss may: the applied state is saved lazily and
    /// rebuilt from the log at start, and the replica serves no reads as master until that is
    /// done (`leads_with_current_state`). (Reading through the brokers would mix replicas,
    /// and a lagging one legitimately answers older values.)
    /// Records where each message of `topic`'s queues `0..queues` is stored (an
    /// [`Event::Stored`] per queue entry, read once from any running replica that has it): a
    /// message the broker wrote itself (a delayed message moved when due) may be deleted by
    /// retention before any consumer reads it, and only its place tells that retention may
    /// take it. Called every 100 ms, and before the judge reads the history.
    pub fn observe_stored(&self, history: &Mutex<History>, topic: &str, queues: i32) {
        let views: Vec<_> =
            self.views.lock().unwrap().iter().map(|(k, v)| (*k, v.clone())).collect();
        let corrupted = self.corrupted.lock().unwrap().clone();
        let mut stored = self.stored.lock().unwrap();
        let mut h = history.lock().unwrap();
        // Not a replica whose disk the run damaged: a read that met the damage would
        // quarantine it, which the run did not do.
        for ((g, _), v) in views.into_iter().filter(|((g, r), _)| !corrupted.contains(&(*g, *r))) {
            for q in 0..queues {
                let next = stored.entry((g, topic.to_owned(), q)).or_default();
                let entries = {
                    let dispatcher = v.dispatcher.lock().unwrap();
                    let Some(cq) = dispatcher.queue(topic, q) else { continue };
                    let from = (*next).max(cq.min_offset().0);
                    cq.range(rocketraft_store::QueueOffset(from), 256).map(|e| (from, e))
                };
                let Ok((from, entries)) = entries else { continue };
                let log = v.log.lock().unwrap();
                for (i, e) in entries.iter().enumerate() {
                    let Ok(mut raw) = log.read_records(&[(e.position, e.size)]) else { break };
                    let Some(raw) = raw.pop() else { break };
                    let Ok(record) = rocketraft_protocol::message::MessageRecord::decode(&raw)
                    else {
                        break;
                    };
                    let offset = from + i as u64;
                    h.push(Event::Stored {
                        id: crate::workload::id_of(&record.body),
                        queue: (group_name(g), q),
                        offset: offset as i64,
                    });
                    *next = offset + 1;
                }
            }
        }
    }

    pub fn observe_offsets(&self, history: &Mutex<History>, group: &str, topic: &str, queues: i32) {
        let views: Vec<_> =
            self.views.lock().unwrap().iter().map(|(k, v)| (*k, v.clone())).collect();
        let losses = self.power_losses.lock().unwrap().clone();
        let mut h = history.lock().unwrap();
        for ((g, r), v) in views {
            let lost = losses.get(&(g, r)).copied().unwrap_or(0);
            for q in 0..queues {
                if let Ok(Some(offset)) = v.state_machine.consumer_offset(group, topic, q) {
                    h.push(Event::OffsetSeen {
                        group: format!("{group}@{}/{r}#{lost}", group_name(g)),
                        queue: (group_name(g), q),
                        offset: offset as i64,
                    });
                }
            }
        }
    }

    /// Checks the Raft invariants of [`crate::check::RaftInvariants`] on every running replica
    /// of every group, as they stand now (called every 100 ms, and before the judge reads
    /// [`SimCluster::raft_violations`]). #4 applies under sync flush (quorum replication
    /// commits only what a majority synced either way), in groups none of whose replicas
    /// was wiped.
    pub fn observe_raft(&self) {
        use openraft::ServerState;
        let views: Vec<_> =
            self.views.lock().unwrap().iter().map(|(k, v)| (*k, v.clone())).collect();
        let wipes = self.wipes.lock().unwrap().clone();
        let applied_at_kill = self.applied_at_kill.lock().unwrap().clone();
        let quorum_durable = matches!(self.topology.flush, rocketraft_store::FlushMode::Sync);
        let mut raft = self.raft.lock().unwrap();
        let (invariants, cursors) = &mut *raft;
        for g in 0..self.topology.groups {
            let voters = self.voters(g);
            let mut samples = Vec::new();
            for ((_, r), v) in views.iter().filter(|((vg, _), _)| *vg == g) {
                let m = v.raft.metrics().borrow().clone();
                let applied = m.last_applied.map(|l| l.index);
                let log = v.log.lock().unwrap();
                // The entries applied since the last observation (again after a restart,
                // which applies from its saved applied id on).
                let cursor = cursors.entry((g, *r)).or_insert(0);
                let from = if applied.is_some_and(|a| a < *cursor) { 0 } else { *cursor };
                let first = from.max(log.start().next_index.0);
                let mut newly_applied = Vec::new();
                if let Some(a) = applied {
                    for i in first..=a {
                        if let Ok(e) = log.entry_meta(rocketraft_store::RaftIndex(i)) {
                            newly_applied.push((i, e.term, e.leader));
                        }
                    }
                    *cursor = a + 1;
                }
                samples.push(crate::check::RaftSample {
                    replica: format!("{r}#{}", wipes.get(&(g, *r)).copied().unwrap_or(0)),
                    voter: voters.contains(r),
                    leader: m.state == ServerState::Leader && m.current_leader == Some(*r),
                    term: m.current_term,
                    last_log: m.last_log_index,
                    applied,
                    snapshot: m.snapshot.map(|l| l.index),
                    // What its CommitLog deleted, if more than openraft purged (it never
                    // should be: segments go only once openraft has purged them).
                    purged: m.purged.map(|l| l.index).max(log.start().next_index.0.checked_sub(1)),
                    durable_next: log.flushed().next_index.0,
                    newly_applied,
                    metadata: (applied >= applied_at_kill.get(&(g, *r)).copied())
                        .then(|| v.state_machine.replicated_metadata().ok())
                        .flatten(),
                });
            }
            // A wiped replica took committed entries' durable copies with it: #4 cannot hold
            // for its group until the others catch up, and is not checked there any more.
            let wiped = wipes.keys().any(|(wg, _)| *wg == g);
            invariants.observe(&group_name(g), voters.len(), quorum_durable && !wiped, &samples);
        }
        // B.5 #26: proposals in flight stay within what the brokers were configured with (a
        // high-water mark, so no peak falls between two observations).
        let bound = match self.topology.replication {
            rocketraft_raft::Replication::Leader => self
                .topology
                .proposals_in_flight_max
                .max(rocketraft_raft::proposer::LEADER_ACK_IN_FLIGHT_MIN),
            rocketraft_raft::Replication::Quorum => self.topology.proposals_in_flight_max.max(1),
        };
        for ((g, r), v) in &views {
            let peak = v.state_machine.stats().proposals_in_flight_peak.get();
            if peak > bound as i64 {
                let what = format!(
                    "{}-{r}: {peak} proposals in flight at once, over {bound}",
                    group_name(*g)
                );
                if !invariants.violations.iter().any(|(n, w)| *n == 26 && *w == what) {
                    invariants.violations.push((26, what));
                }
            }
        }
    }

    /// The Raft invariants broken so far in this run (see [`SimCluster::observe_raft`]).
    pub fn raft_violations(&self) -> Vec<crate::check::RaftViolation> {
        self.raft.lock().unwrap().0.violations.clone()
    }

    /// Notes where queues `0..queues` of `topic` start on every running replica. Retention
    /// deletes the oldest CommitLog segments (once a snapshot covers them; before their time
    /// on a full disk), each replica on its own schedule, and a queue's start moves past the
    /// messages that were in them: a consumer that had not read them yet never will (as in
    /// RocketMQ). Called every 100 ms, and before the judge reads [`SimCluster::retained_from`].
    pub fn observe_retention(&self, topic: &str, queues: i32) {
        let views: Vec<_> =
            self.views.lock().unwrap().iter().map(|(k, v)| (*k, v.clone())).collect();
        let mut retained = self.retained.lock().unwrap();
        for ((g, _), v) in views {
            let dispatcher = v.dispatcher.lock().unwrap();
            for q in 0..queues {
                if let Some(cq) = dispatcher.queue(topic, q) {
                    let start = cq.min_offset().0;
                    let seen = retained.entry((g, topic.to_owned(), q)).or_default();
                    *seen = (*seen).max(start);
                }
            }
        }
    }

    /// The furthest start of group g's queue `q` of `topic` seen on any replica in this run:
    /// a message below it may have been deleted by retention before a consumer read it.
    pub fn retained_from(&self, g: usize, topic: &str, q: i32) -> u64 {
        let retained = self.retained.lock().unwrap();
        retained.get(&(g, topic.to_owned(), q)).copied().unwrap_or(0)
    }

    /// How many running replicas' logs no longer start where they began (retention deleted
    /// segments, or a snapshot install reset the log to the leader's start), and how many
    /// segments the longest log reaches into.
    pub fn replicas_trimmed(&self) -> (usize, u64) {
        let views = self.views.lock().unwrap();
        let (mut trimmed, mut segments) = (0, 0);
        for v in views.values() {
            let log = v.log.lock().unwrap();
            trimmed += usize::from(log.start().position.0 > 0);
            segments = segments.max(log.end().position.0.div_ceil(log.config().segment_size_bytes));
        }
        (trimmed, segments)
    }

    /// Each running replica's log range, snapshot and retention floor, for a failure report.
    pub fn retention_report(&self) -> String {
        let views = self.views.lock().unwrap();
        let mut out = String::new();
        for ((g, r), v) in views.iter() {
            let log = v.log.lock().unwrap();
            let snapshot = v.raft.metrics().borrow().snapshot.map(|s| s.index);
            out.push_str(&format!(
                "\n  {}-{r}: log [{}, {}) at positions [{}, {}), snapshot {snapshot:?}, floor {:?}",
                group_name(*g),
                log.start().next_index.0,
                log.end().next_index.0,
                log.start().position.0,
                log.end().position.0,
                v.state_machine.retention_floor().map(|f| f.map(|p| p.0)),
            ));
        }
        out
    }

    /// (replica, applied index, whole log bytes) of group `g`'s running replicas.
    /// How many running replicas (of every group) hold a snapshot they built or installed.
    pub fn replicas_with_snapshots(&self) -> usize {
        let views = self.views.lock().unwrap();
        views.values().filter(|v| v.raft.metrics().borrow().snapshot.is_some()).count()
    }

    pub fn replica_states(&self, g: usize) -> Vec<ReplicaState> {
        let voters = self.voters(g);
        let views: Vec<_> = self
            .views
            .lock()
            .unwrap()
            .iter()
            .filter(|((vg, r), _)| *vg == g && voters.contains(r))
            .map(|((_, r), v)| (*r, v.clone()))
            .collect();
        views
            .into_iter()
            .map(|(r, v)| {
                let applied = v.raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
                let log = v.log.lock().unwrap();
                let start = log.start().position;
                let bytes = log.bytes_between(start, log.end().position).unwrap();
                let metadata = v.state_machine.replicated_metadata().unwrap();
                ReplicaState { id: r, applied, start: start.0, log: bytes, metadata }
            })
            .collect()
    }

    /// Flips a bit in the middle of the first entry at or after `index` holding messages of
    /// `topic` on replica (g, r)'s disk while it runs (a bad sector under a live process: what
    /// is durable is damaged too). The read that meets it (a pull, replication) must catch it
    /// (crc) and quarantine the replica. Returns the entry's index; `None` if the replica is
    /// down or its log holds no such entry.
    pub fn corrupt_entry(&self, g: usize, r: u64, index: u64, topic: &str) -> Option<u64> {
        use rocketraft_protocol::message::RecordView;
        use rocketraft_store::{EntryKind, RaftIndex};
        let log = self.views.lock().unwrap().get(&(g, r)).map(|v| v.log.clone())?;
        let (meta, seg_size) = {
            let log = log.lock().unwrap();
            let end = log.end().next_index.0;
            let of_topic = |i: u64| {
                let meta = log.entry_meta(RaftIndex(i)).ok()?;
                let e = log.entries(RaftIndex(i)..RaftIndex(i + 1)).ok()?.pop()?;
                let first = RecordView::decode(&e.payload).ok()?;
                (meta.kind == EntryKind::Messages && first.topic == topic).then_some(meta)
            };
            let meta = (index..end).find_map(of_topic)?;
            (meta, log.config().segment_size_bytes)
        };
        let base = meta.position.0 - meta.position.0 % seg_size;
        let at = meta.position.0 - base + u64::from(meta.size) / 2;
        let hit = self.disks[&(g, r)].corrupt(&format!("commitlog/{base:020}"), at, 0x10);
        if hit {
            self.corrupted.lock().unwrap().insert((g, r));
        }
        hit.then_some(meta.index.0)
    }

    /// Whether reading the whole log of running replica (g, r) fails a check (the damage a
    /// run put there is still in it, never read: it would be caught on read). The read
    /// quarantines the replica, as any read that meets damage does.
    pub fn damage_caught_on_read(&self, g: usize, r: u64) -> bool {
        let Some(log) = self.views.lock().unwrap().get(&(g, r)).map(|v| v.log.clone()) else {
            return false;
        };
        let log = log.lock().unwrap();
        let whole = log.start().next_index..log.end().next_index;
        matches!(log.entries(whole), Err(StoreError::Corrupt { .. }))
    }

    /// Whether [`SimCluster::corrupt_entry`] damaged replica (g, r)'s disk in this run.
    pub fn was_corrupted(&self, g: usize, r: u64) -> bool {
        self.corrupted.lock().unwrap().contains(&(g, r))
    }

    /// Whether group g's leader has applied an entry that no running replica of the group has
    /// synced yet (every replica's durable point is before it). Only a log store that reports
    /// appends durable before they are synced gets there.
    pub fn applied_but_synced_nowhere(&self, g: usize) -> bool {
        let Some(leader) = self.leader(g) else { return false };
        let views = self.views.lock().unwrap();
        let Some(applied) = views
            .get(&(g, leader))
            .and_then(|v| v.raft.metrics().borrow().last_applied.map(|l| l.index))
        else {
            return false;
        };
        views
            .iter()
            .filter(|((vg, _), _)| *vg == g)
            .all(|(_, v)| v.log.lock().unwrap().flushed().next_index.0 <= applied)
    }

    /// Replica (g, r)'s last log index, if it runs.
    pub fn last_log_index(&self, g: usize, r: u64) -> Option<u64> {
        let views = self.views.lock().unwrap();
        views.get(&(g, r))?.raft.metrics().borrow().last_log_index
    }

    /// The replicas that stopped on a fatal error and were not restarted since, with the error.
    pub fn stopped_on_fatal(&self) -> BTreeMap<(usize, u64), String> {
        self.stopped.lock().unwrap().clone()
    }

    /// Waits until group `g` is quiet: every replica running (but those stopped on a fatal
    /// error: see [`SimCluster::stopped_on_fatal`]), each with its whole log applied, all at the
    /// same index.
    pub async fn wait_quiesced(&self, g: usize, timeout: Duration) -> bool {
        let step = Duration::from_millis(100);
        let mut waited = Duration::ZERO;
        while waited < timeout {
            // Every replica running, with the same last log entry and the same applied one (a
            // leader's newest entry may still be on its way to followers that lost an RPC).
            let voters = self.voters(g);
            let marks: Vec<(Option<u64>, Option<u64>)> = {
                let views = self.views.lock().unwrap();
                views
                    .iter()
                    .filter(|((vg, r), _)| *vg == g && voters.contains(r))
                    .map(|(_, v)| {
                        let m = v.raft.metrics().borrow().clone();
                        (m.last_log_index, m.last_applied.map(|l| l.index))
                    })
                    .collect()
            };
            let distinct: std::collections::BTreeSet<_> = marks.iter().collect();
            let all_applied = marks.iter().all(|(last, applied)| last == applied);
            let stopped = self
                .stopped
                .lock()
                .unwrap()
                .keys()
                .filter(|(sg, r)| *sg == g && voters.contains(r))
                .count() as u64;
            let running = voters.len() as u64 - stopped;
            if marks.len() as u64 == running && distinct.len() == 1 && all_applied {
                return true;
            }
            if waited + step >= timeout {
                // What is stuck, for the failure report: (last log index, applied) per replica.
                eprintln!("group {g} not quiesced: (last log, applied) per replica {marks:?}");
            }
            madsim::time::sleep(step).await;
            waited += step;
        }
        false
    }
}

/// One replica's life on its node: Raft node, broker, registration; registered in `views`.
async fn run_replica(
    g: usize,
    r: u64,
    topo: Topology,
    disk: SimStorage,
    meta: MemMeta,
    views: Views,
    stopped: Stopped,
) {
    let delay = madsim::rand::thread_rng().gen_range(0..200);
    madsim::time::sleep(Duration::from_millis(delay)).await;
    let config = NodeConfig {
        group: group_name(g),
        id: r,
        peers: (0..topo.replicas).map(|i| (i, raft_addr(g, i))).collect(),
        // Snapshots every 200 entries, so that a run (a few thousand entries) builds several
        // under its faults.
        timing: RaftTiming { snapshot_every_entries: 200, ..RaftTiming::default() },
        // 1.25 MiB segments: room for the workload's 1 MiB bodies (an entry must fit a
        // segment), and small enough that a run (1-3 MB a group) fills and rolls some, and
        // retention deletes them: every segment is past its retention time here (the
        // simulated disk's files are all written at time 0), so each one a snapshot covers
        // goes, but the last, and those holding a parked or half message still to act on.
        commit_log: CommitLogConfig { segment_size_bytes: 5 << 18, ..Default::default() },
        // Small index and queue files: the simulated disk keeps files in memory (twice: data
        // and what is durable), and the defaults (420 MB an index file, 7.2 MB a queue file,
        // some 25 queues a replica with the parked ones) times six replicas are gigabytes.
        dispatch: DispatchConfig {
            index: IndexConfig { slot_count: 4_096, index_max: 16_384 },
            consume_queue: ConsumeQueueConfig { entries_per_file: 4_096 },
        },
        flush: topo.flush,
        retention: Default::default(),
        // Often enough that a disk full for a second or two is seen (and refused) in a run.
        retention_check_ms: 1_000,
        message_faults: topo.raft_message_faults,
        tls: None,
        sim_bug_ack_before_fsync: topo.sim_bug_ack_before_fsync,
        sim_bug_accept_wiped: topo.sim_bug_accept_wiped,
        sim_bug_retention_ignores_floor: topo.sim_bug_retention_ignores_floor,
        sim_bugs: topo.sim_bugs,
    };
    let listener = tokio::net::TcpListener::bind(raft_addr(g, r)).await.expect("raft port");
    let waiters = Arc::new(PullWaiters::default());
    let started =
        RaftNode::start(config, disk.clone(), meta, listener, Some(arrival_listener(&waiters)))
            .await;
    let node = match started {
        Ok(node) => node,
        // A quarantined log does not open (or was found damaged while starting): the replica
        // stays down, as a real one would.
        Err(e) if disk.open(rocketraft_store::commitlog::DAMAGE_MARKER).is_ok() => {
            tracing::error!(group = g, replica = r, error = %e, "replica does not start");
            stopped.lock().unwrap().insert((g, r), format!("quarantined: {e}"));
            std::future::pending::<()>().await;
            unreachable!("pending never ends")
        }
        Err(e) => panic!("replica {g}-{r} does not start: {e}"),
    };
    let addr = broker_addr(g, r);
    let mut bc = BrokerConfig::new(group_name(g), addr.parse().unwrap());
    bc.listen = addr;
    bc.namesrv_addrs = (0..topo.namesrvs).map(namesrv_addr).collect();
    bc.register_interval_ms = topo.register_interval_ms;
    bc.sim_bug_ack_before_commit = topo.sim_bug_ack_before_commit;
    bc.sim_bug_schedule_from_zero = topo.sim_bug_schedule_from_zero;
    bc.sim_bug_deliver_early = topo.sim_bug_deliver_early;
    bc.sim_bug_tx_end_unchecked = topo.sim_bug_tx_end_unchecked;
    bc.sim_bug_tx_check_answer_commits = topo.sim_bug_tx_check_answer_commits;
    bc.sim_bug_tx_scan_from_term_start = topo.sim_bug_tx_scan_from_term_start;
    bc.sim_bug_offsets_out_of_order = topo.sim_bug_offsets_out_of_order;
    bc.sim_bug_pull_skips_one = topo.sim_bug_pull_skips_one;
    bc.sim_bug_pull_batch_unbounded = topo.sim_bug_pull_batch_unbounded;
    bc.sim_bug_proposals_unbounded = topo.sim_bug_proposals_unbounded;
    // Transactions are checked back within a run: a half unresolved for 1 s is checked every
    // 500 ms; it is discarded only after 60 checks (30 s without an answer).
    bc.transaction_timeout_ms = TX_TIMEOUT_MS;
    bc.transaction_check_interval_ms = 500;
    bc.transaction_check_max = 60;
    // Short delay levels, so delayed messages and retries come back within a run.
    bc.delay_levels =
        rocketraft_protocol::schedule::DelayLevels::parse("1s 2s 3s").expect("levels");
    bc.proposals_in_flight_max = topo.proposals_in_flight_max;
    bc.replication = topo.replication;
    let now_ms = rocketraft_raft::clock::now_ms();
    let broker = Broker::start(bc, &node, waiters, now_ms).await.expect("broker starts");
    views.lock().unwrap().insert(
        (g, r),
        ReplicaView {
            raft: node.raft.clone(),
            log: node.log.clone(),
            state_machine: node.state_machine.clone(),
            dispatcher: node.dispatcher.clone(),
        },
    );
    // A fatal error stops the replica as it stops a real process: it unregisters and serves
    // nothing more. It is recorded: the judge takes it for a bug to report unless the run
    // allows that error (see `SimCluster::stopped_on_fatal`).
    // A group that changes its membership: a replica removed from it stops serving and
    // unregisters, as `rocketraft broker` does (polled, so runs without spares keep their
    // schedule).
    let removed = async {
        if topo.spares == 0 {
            std::future::pending::<()>().await;
        }
        while !node.was_removed() {
            madsim::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let why = tokio::select! {
        why = node.stopped_on_fatal() => why,
        () = removed => {
            tracing::info!(group = g, replica = r, "removed from its group: stops serving");
            views.lock().unwrap().remove(&(g, r));
            broker.shutdown_and_unregister().await;
            std::future::pending::<()>().await;
            unreachable!("pending never ends")
        }
    };
    tracing::error!(group = g, replica = r, error = %why, "replica stopped on a fatal error");
    views.lock().unwrap().remove(&(g, r));
    stopped.lock().unwrap().insert((g, r), why);
    broker.shutdown_and_unregister().await;
    std::future::pending::<()>().await;
}

/// Cuts (or heals) the link between two simulated nodes, both directions.
fn cut_link(a: madsim::task::NodeId, b: madsim::task::NodeId, cut: bool) {
    let net = madsim::net::NetSim::current();
    if cut {
        net.clog_link(a, b);
        net.clog_link(b, a);
    } else {
        net.unclog_link(a, b);
        net.unclog_link(b, a);
    }
}
