//! One replica of a broker group: its CommitLog, queues, metadata, Raft and RPC server.
//!
//! [`RaftNode::start`] recovers the store, refuses to start a replica removed from its group,
//! starts Raft and its RPC server, and bootstraps the group exactly once: on first start (no
//! vote, empty log, nothing applied) the replica with the lowest id initializes the membership
//! from the static peer list; the others wait for it. After that Raft's membership is the
//! truth (see [`crate::membership`]); a replica not in the peer list waits to be added.
//! Create it inside the runtime (and, in the simulation, inside the node) that should own it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use rocketraft_store::io::Storage;
use rocketraft_store::retention::{self, RetentionConfig};
use rocketraft_store::{
    CommitLog, CommitLogConfig, DispatchConfig, Dispatcher, FlushMode, RaftIndex,
};
use tokio::net::TcpListener;

use crate::error::AppliedEntriesLost;
use crate::gate::WriteGate;
use crate::log_store::LogStore;
use crate::meta::{MetaOp, MetaStore};
use crate::network::{serve, AppendGuard, Incarnations, Network};
use crate::state_machine::{ArrivalListener, StateMachine};
use crate::types::{NodeId, TypeConfig};

/// Raft timing and snapshots. Defaults: heartbeat 250 ms, election timeout 1000-2000 ms
/// (DESIGN.md §5), a snapshot every 10,000 entries.
///
/// The election timeout is how long a follower hears nothing from its leader before it starts
/// an election. openraft 0.9 waits its leader lease (= its `election_timeout_max`) *plus* a
/// random `election_timeout_min..max` after the last leader contact, so the values passed to
/// openraft are derived to make that total fall within this range ([`openraft_election_window`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftTiming {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_every_entries: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            heartbeat_interval_ms: 250,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_every_entries: 10_000,
        }
    }
}

impl RaftTiming {
    /// Whether these timings can be run (see [`openraft_election_window`]): an error says why.
    pub fn validate(&self) -> Result<(), String> {
        openraft_election_window(self).map(|_| ())
    }
}

/// openraft's `(election_timeout_min, election_timeout_max)` for a total wait within
/// `[min, max]`: `max' = max / 2`, `min' = max(min - max', heartbeat + 1)`, so that
/// `max' + [min', max')` lies in `[min, max)` whenever `min >= max / 2 + heartbeat`.
pub fn openraft_election_window(t: &RaftTiming) -> Result<(u64, u64), String> {
    let max = t.election_timeout_max_ms / 2;
    let min = t.election_timeout_min_ms.saturating_sub(max).max(t.heartbeat_interval_ms + 1);
    if min >= max {
        return Err(format!(
            "election timeout {}-{} ms leaves no room above the {} ms heartbeat: widen it",
            t.election_timeout_min_ms, t.election_timeout_max_ms, t.heartbeat_interval_ms
        ));
    }
    Ok((min, max))
}

/// Everything a replica needs to know.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The broker group (RocketMQ's brokerName); every RPC names it.
    pub group: String,
    pub id: NodeId,
    /// The group's first voters: id -> Raft address (host:port). Only a fresh group's bootstrap
    /// reads it (the lowest id initializes the group with them); once the group runs, its
    /// membership in Raft is the truth (replicas added and removed since). A replica not listed
    /// is one being added: it waits for the leader to add it.
    pub peers: BTreeMap<NodeId, String>,
    pub timing: RaftTiming,
    pub commit_log: CommitLogConfig,
    pub dispatch: DispatchConfig,
    pub flush: FlushMode,
    pub retention: RetentionConfig,
    /// How often retention runs. Default 10,000 ms ([`RETENTION_CHECK_MS_DEFAULT`]).
    pub retention_check_ms: u64,
    /// Faults injected into outgoing Raft RPCs (the simulation's seam). Default none.
    pub message_faults: crate::network::MessageFaults,
    /// Mutual TLS on the Raft port and to the peers. Default none (plain TCP: keep the port
    /// on a private network).
    pub tls: Option<crate::network::RaftTls>,
    /// Simulation builds only: the log store reports appends durable before they are synced
    /// (see `LogStore::sim_bug_ack_before_fsync`). A bug put in on purpose, to show the
    /// simulation's checkers catch it; no real build has it.
    #[cfg(madsim)]
    pub sim_bug_ack_before_fsync: bool,
    /// Simulation builds only: this replica sends its Raft calls unchecked, so a peer whose
    /// data was wiped is taken for the member it was (see [`crate::network::RpcRequest::Checked`]).
    /// A bug put in on purpose, as above.
    #[cfg(madsim)]
    pub sim_bug_accept_wiped: bool,
    /// Simulation builds only: retention deletes segments holding parked messages not yet
    /// moved and transaction halves not yet resolved (it ignores
    /// `StateMachine::retention_floor`). A bug put in on purpose, as above.
    #[cfg(madsim)]
    pub sim_bug_retention_ignores_floor: bool,
    /// Simulation builds only: more bugs put in on purpose (see [`SimBugs`]).
    #[cfg(madsim)]
    pub sim_bugs: SimBugs,
}

/// Simulation builds only: bugs put back on purpose, each to show that a checker of the
/// simulation catches what it names (B.5 #29); no real build has them. All off by default.
#[cfg(madsim)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimBugs {
    /// The vote is written like the committed id, deferred (durable with the next sync, up to
    /// a second later): a power loss right after an election takes it back, and the replica's
    /// term goes back (B.5 #5).
    pub vote_not_synced: bool,
    /// Retention deletes the segments before what is applied, whether a snapshot covers them
    /// or not, without waiting for openraft to purge them (B.5 #6: purged <= snapshot).
    pub retention_past_snapshot: bool,
    /// Apply makes the applied id durable before the metadata changes of the entries it
    /// covers (which stay lazy): a power loss then keeps the id and drops the changes, and the
    /// replica never applies them again, so its metadata differs from its peers' (B.5 #22).
    pub applied_before_metadata: bool,
}

/// How often a replica checks retention and disk usage by default.
pub const RETENTION_CHECK_MS_DEFAULT: u64 = 10_000;

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid Raft configuration: {0}")]
    Config(String),
    #[error(
        "node {id} was removed from group {group}: it serves no more from this data directory \
         (to add the machine again, start it on an empty directory and run `rocketraft cluster \
         add-replica`)"
    )]
    Removed { group: String, id: NodeId },
    #[error("store: {0}")]
    Store(#[from] rocketraft_store::StoreError),
    #[error("Raft: {0}")]
    Raft(String),
}

/// Whether `m` shows a leader whose state is current: it leads, and it has applied an entry of
/// its own term (the blank entry a new leader appends first). Only then does its state machine
/// hold every entry an earlier leader committed: before it, a new leader's topics, queues and
/// consumer offsets may lag what was acknowledged (a restarted replica rebuilds them from its
/// log, since the applied id is saved deferred). The broker serves as master only from then on.
pub fn leads_with_current_state(m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>) -> bool {
    m.current_leader == Some(m.id)
        && m.last_applied.is_some_and(|a| a.leader_id.term == m.current_term)
}

/// Waits, up to `wait_ms_max`, until this replica is a leader with current state (see
/// [`leads_with_current_state`]) or stops leading. True if it leads with current state.
/// It polls rather than adding a waiter to openraft's metrics channel (the simulation's
/// determinism depends on the order of that channel's waiters).
pub async fn await_current_leader(raft: &Raft<TypeConfig>, wait_ms_max: u64) -> bool {
    const POLL_MS: u64 = 2;
    let mut waited = 0;
    loop {
        let (ready, leads) = {
            let m = raft.metrics();
            let m = m.borrow();
            (leads_with_current_state(&m), m.current_leader == Some(m.id))
        };
        if ready || !leads || waited >= wait_ms_max {
            return ready;
        }
        tokio::time::sleep(std::time::Duration::from_millis(POLL_MS)).await;
        waited += POLL_MS;
    }
}

/// A running replica.
pub struct RaftNode<S: Storage + Clone, M: MetaStore> {
    pub raft: Raft<TypeConfig>,
    pub state_machine: StateMachine<S, M>,
    pub log: Arc<Mutex<CommitLog<S>>>,
    pub dispatcher: Arc<Mutex<Dispatcher<S>>>,
    /// Proposals to acknowledge once this replica's own log has them (`replication =
    /// "leader"`; see [`crate::local_ack`]).
    pub local_appends: Arc<crate::local_ack::LocalAppends>,
    /// Wakes retention to measure the disk before its next periodic check.
    pub(crate) disk_check: Arc<tokio::sync::Notify>,
    /// Every proposal passes it (see [`crate::gate`]).
    pub(crate) gate: Arc<WriteGate>,
    /// The transport openraft calls peers with, for calls of our own.
    pub(crate) network: Network,
    /// Started empty outside the peer list: a replica being added, which waits for it.
    pub(crate) joins_later: bool,
    /// The incarnations the group recorded (see [`crate::network::RpcRequest::Checked`]).
    pub(crate) known: Incarnations,
    /// Set by the first AppendEntries of a leader in this replica's term or later (see
    /// [`crate::Replica::heard_from_leader`]).
    pub(crate) heard_leader: Arc<std::sync::atomic::AtomicBool>,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    server: tokio::task::JoinHandle<()>,
    /// The fatal-error watcher and periodic syncs, and retention: both end on stop.
    watcher: tokio::task::JoinHandle<()>,
    retention: tokio::task::JoinHandle<()>,
    /// Set once Raft stopped on a fatal error (see [`RaftNode::stopped_on_fatal`]).
    fatal: tokio::sync::watch::Receiver<Option<String>>,
    /// Set once this replica was removed from its group (see [`RaftNode::removed`]).
    removed: tokio::sync::watch::Receiver<bool>,
    meta: Arc<M>,
    /// What the replica counts for its metrics (see [`RaftNode::gather`]).
    pub(crate) stats: Arc<crate::RaftStats>,
}

impl<S: Storage + Clone, M: MetaStore> RaftNode<S, M> {
    /// Recovers the replica from `storage` and `meta` and starts it, serving Raft RPCs on
    /// `listener` (already bound to this replica's Raft address).
    pub async fn start(
        config: NodeConfig,
        storage: S,
        meta: M,
        listener: TcpListener,
        arrivals: Option<ArrivalListener>,
    ) -> Result<Self, StartError> {
        let (election_min, election_max) =
            openraft_election_window(&config.timing).map_err(StartError::Config)?;
        let raft_config = Config {
            cluster_name: config.group.clone(),
            heartbeat_interval: config.timing.heartbeat_interval_ms,
            election_timeout_min: election_min,
            election_timeout_max: election_max,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.timing.snapshot_every_entries),
            // The log is purged by retention (whole segments), not right after a snapshot.
            max_in_snapshot_log_to_keep: u64::MAX,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Config(e.to_string()))?;

        let meta = Arc::new(meta);
        let (log, report) = CommitLog::open(storage.clone(), config.commit_log.clone())?;
        tracing::info!(group = %config.group, id = config.id, end = %report.end.next_index, "CommitLog recovered");
        let dispatcher =
            Arc::new(Mutex::new(Dispatcher::open(storage, config.dispatch.clone(), &log)?));
        let log = Arc::new(Mutex::new(log));
        let stats: Arc<crate::RaftStats> = Arc::default();
        let mut log_store =
            LogStore::with_stats(log.clone(), meta.clone(), config.flush, stats.clone());
        #[cfg(madsim)]
        if config.sim_bug_ack_before_fsync {
            log_store.sim_bug_ack_before_fsync();
        }
        #[cfg(madsim)]
        if config.sim_bugs.vote_not_synced {
            log_store.sim_bug_vote_not_synced();
        }
        let local_appends = log_store.local_appends();
        let mut state_machine =
            StateMachine::new(log.clone(), dispatcher.clone(), meta.clone(), arrivals)
                .map_err(|e| StartError::Raft(e.to_string()))?
                .with_stats(stats.clone());
        #[cfg(madsim)]
        {
            state_machine = state_machine
                .sim_bug_applied_before_metadata(config.sim_bugs.applied_before_metadata);
        }

        // A snapshot install a crash interrupted is finished before anything reads the state.
        state_machine.finish_interrupted_install().map_err(|e| StartError::Raft(e.to_string()))?;
        let configured: BTreeSet<NodeId> = config.peers.keys().copied().collect();
        let (applied, membership) =
            state_machine.applied_state().await.map_err(|e| StartError::Raft(e.to_string()))?;
        let stored: BTreeSet<NodeId> = membership.membership().voter_ids().collect();
        // Only the mark the watcher leaves: a replica being added applies memberships without
        // itself (the log before its addition, a snapshot's) long before the one that adds it.
        let removed = meta.get(KEY_REMOVED).map_err(|e| StartError::Raft(e.to_string()))?;
        if removed.is_some() {
            return Err(StartError::Removed { group: config.group.clone(), id: config.id });
        }
        // The peer list only bootstraps a fresh group: after, Raft's membership is the truth.
        if !stored.is_empty() && stored != configured {
            tracing::info!(group = %config.group, id = config.id, voters = ?stored, peers = ?configured, "the group's voters differ from the configured peers (membership changed since): the voters count");
        }
        let was_voter = stored.contains(&config.id);
        let fresh = applied.is_none()
            && log_store.read_vote().await.map_err(|e| StartError::Raft(e.to_string()))?.is_none()
            && log_store
                .get_log_state()
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?
                .last_log_id
                .is_none();

        // openraft gives a restarted leader its leadership back at once, in the same term. Under
        // async flush its log may have lost entries it had acknowledged, and the entries it
        // writes next would reuse their log ids (same term and index, other content): a
        // follower holding the old ones takes them for a match and diverges. So a leader
        // restarting under async flush stands for a new term instead.
        if matches!(config.flush, FlushMode::Async { .. }) {
            let vote = log_store.read_vote().await.map_err(|e| StartError::Raft(e.to_string()))?;
            if let Some(vote) = vote.filter(|v| v.is_committed()) {
                if vote.leader_id().voted_for() == Some(config.id) {
                    let term = vote.leader_id().get_term();
                    let uncommitted = openraft::Vote::new(term, config.id);
                    log_store
                        .save_vote(&uncommitted)
                        .await
                        .map_err(|e| StartError::Raft(e.to_string()))?;
                    tracing::info!(group = %config.group, id = config.id, term, "was leader; async flush: standing for a new term");
                }
            }
        }

        let incarnation = incarnation(&*meta, config.id).map_err(StartError::Raft)?;
        let known = {
            let sm = state_machine.clone();
            Incarnations(Arc::new(move |node| sm.incarnation_of(node)))
        };
        #[cfg(madsim)]
        let known =
            if config.sim_bug_accept_wiped { Incarnations(Arc::new(|_| None)) } else { known };
        let network = Network::new(
            config.group.clone(),
            config.message_faults,
            log_store.replication_budget(),
        )
        .with_tls(config.tls.as_ref().map(|t| t.client.clone()))
        .with_incarnations(known.clone());
        let raft = Raft::new(
            config.id,
            Arc::new(raft_config),
            network.clone(),
            log_store,
            state_machine.clone(),
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let stop = Arc::new(stop);
        let (fatal_tx, fatal) = tokio::sync::watch::channel(None);
        let (removed_tx, removed) = tokio::sync::watch::channel(false);
        let refused = Arc::new(Mutex::new(None));
        let watcher = tokio::spawn(watch_replica(
            raft.clone(),
            meta.clone(),
            state_machine.clone(),
            refused.clone(),
            Arc::downgrade(&stop),
            Outcomes { fatal: fatal_tx, removed: removed_tx, was_voter },
            config.group.clone(),
            config.id,
        ));
        let heard_leader = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let transport = if config.tls.is_some() { "mutual TLS" } else { "plain TCP" };
        tracing::info!(group = %config.group, id = config.id, "Raft RPCs over {transport}");
        let server = tokio::spawn(serve(
            listener,
            raft.clone(),
            config.group.clone(),
            config.id,
            stop_rx.clone(),
            Some(leader_heard(
                raft.clone(),
                heard_leader.clone(),
                applied_entries_guard(raft.clone(), log.clone(), refused),
            )),
            config.tls.as_ref().map(|t| t.server.clone()),
            Some(incarnation),
        ));
        let gate: Arc<WriteGate> = Arc::default();
        tokio::spawn(record_incarnations(
            raft.clone(),
            network.clone(),
            known.clone(),
            gate.clone(),
            incarnation,
            stop_rx.clone(),
        ));
        let disk_check = Arc::new(tokio::sync::Notify::new());
        let retention = tokio::spawn(run_retention(
            raft.clone(),
            state_machine.clone(),
            log.clone(),
            dispatcher.clone(),
            config.retention.clone(),
            Checks {
                every_ms: config.retention_check_ms,
                disk_now: disk_check.clone(),
                stats: state_machine.stats().clone(),
                #[cfg(madsim)]
                ignore_floor: config.sim_bug_retention_ignores_floor,
                #[cfg(madsim)]
                past_snapshot: config.sim_bugs.retention_past_snapshot,
            },
            stop_rx,
        ));

        // A replica outside the peer list (one being added) never bootstraps: it waits to be
        // added by the group's leader.
        let lowest = config.peers.keys().next().copied();
        let members: BTreeMap<NodeId, BasicNode> =
            config.peers.iter().map(|(id, addr)| (*id, BasicNode { addr: addr.clone() })).collect();
        // ...nor does one whose peers already run a group: its data was wiped (or a new
        // machine took its id), and a group of its own would stand for elections against it.
        // Asked in the background: a peer whose port is open but that does not serve yet (it
        // is starting too) holds this one for its timeout, and the start must not wait.
        if fresh && lowest == Some(config.id) {
            let (raft, network, group, id) =
                (raft.clone(), network.clone(), config.group.clone(), config.id);
            tokio::spawn(async move {
                if let Some(peer) = peer_founded(&network, &members, id).await {
                    tracing::warn!(group = %group, id, peer, "empty data, but a peer already belongs to the group: not bootstrapping it again; this replica waits to be added (`rocketraft cluster repair-replica`)");
                    return;
                }
                match raft.initialize(members).await {
                    Ok(()) => {
                        tracing::info!(group = %group, "bootstrapped the group from its peer list")
                    }
                    Err(e) => {
                        tracing::error!(group = %group, error = %e, "bootstrapping the group failed")
                    }
                }
            });
        }
        Ok(RaftNode {
            raft,
            state_machine,
            log,
            dispatcher,
            local_appends,
            disk_check,
            gate,
            network,
            known,
            joins_later: fresh && !config.peers.contains_key(&config.id),
            heard_leader,
            stop,
            server,
            watcher,
            retention,
            fatal,
            removed,
            meta,
            stats,
        })
    }

    /// Purges the log through `index` as retention does: openraft's purge, then the whole
    /// segments it covers with their queue entries and index files (an operator's or a test's
    /// call; entries a snapshot does not cover are kept by openraft).
    pub async fn purge_log(&self, index: u64) -> Result<(), String> {
        purge_log(&self.raft, &self.log, &self.dispatcher, RaftIndex(index)).await
    }

    /// Hands this replica's leadership to the voter `to` (see [`crate::transfer`]).
    pub async fn transfer_leader(
        &self,
        to: NodeId,
        timeout: std::time::Duration,
    ) -> Result<crate::Transferred, crate::TransferError> {
        let id = self.raft.metrics().borrow().id;
        crate::transfer::transfer(&self.raft, &self.network, &self.gate, id, to, timeout).await
    }

    /// Before a planned stop: if this replica leads and its group has another voter, hands
    /// leadership to the one furthest along (within `timeout`), so the group does not wait out
    /// an election timeout. `None` when there was nothing to hand over.
    pub async fn hand_over(
        &self,
        timeout: std::time::Duration,
    ) -> Option<Result<crate::Transferred, crate::TransferError>> {
        let to = crate::transfer::candidate(&self.raft)?;
        Some(self.transfer_leader(to, timeout).await)
    }

    /// The fatal error Raft stopped on, if it did: a storage error (a disk that refused a write
    /// or a sync, an entry that could not be applied) or a panic in its core. The replica then
    /// serves nothing; [`RaftNode::shutdown`] still stops it cleanly.
    pub fn fatal_error(&self) -> Option<String> {
        self.fatal.borrow().clone()
    }

    /// Waits until Raft stops on a fatal error and answers it; never returns for a replica
    /// that runs on or is stopped by [`RaftNode::shutdown`]. Its owner then stops the replica
    /// (unregisters, exits non-zero so a supervisor restarts it).
    pub async fn stopped_on_fatal(&self) -> String {
        let mut fatal = self.fatal.clone();
        loop {
            if let Some(e) = fatal.borrow_and_update().clone() {
                return e;
            }
            if fatal.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits until this replica is removed from its group (a committed membership in which it
    /// was a voter no more, see [`crate::membership`]); never returns while it is a member. Its
    /// owner then stops it: it unregisters, and a restart on the same data directory is refused
    /// ([`StartError::Removed`]).
    /// Whether this replica was removed from its group (see [`RaftNode::removed`]).
    pub fn was_removed(&self) -> bool {
        *self.removed.borrow()
    }

    pub async fn removed(&self) {
        let mut removed = self.removed.clone();
        if removed.wait_for(|r| *r).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Adds replica `id` at Raft address `addr` to this replica's group, which it leads (see
    /// [`crate::membership`]).
    pub async fn add_replica(
        &self,
        id: NodeId,
        addr: &str,
        timeout: std::time::Duration,
    ) -> Result<crate::membership::Members, crate::membership::MembershipError> {
        let peers = (&self.network, &self.known);
        crate::membership::add_replica(&self.raft, &self.gate, peers, id, addr, timeout).await
    }

    /// Removes replica `id` from this replica's group, which it leads (see
    /// [`crate::membership`]).
    pub async fn remove_replica(
        &self,
        id: NodeId,
        timeout: std::time::Duration,
    ) -> Result<crate::membership::Members, crate::membership::MembershipError> {
        crate::membership::remove_replica(&self.raft, &self.gate, id, timeout).await
    }

    /// Stops Raft, the RPC server and its connections (the data stays; start again to
    /// recover).
    pub async fn shutdown(self) {
        let fatal = self.fatal_error().is_some();
        let _ = self.stop.send(true);
        // The listener is closed when the server task returns: wait, so the port is free.
        let _ = self.server.await;
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft shutdown");
        }
        // Async flush leaves up to one interval of entries unsynced: sync them before the
        // process goes (sync mode has nothing left to do here), and the lazy and deferred
        // metadata, so a clean restart re-applies nothing. Not after a fatal error: a sync the
        // disk refused must not be followed by one that reports it all durable.
        if !fatal {
            if let Err(e) = crate::log_store::lock(&self.log).flush() {
                tracing::error!(error = %e, "final CommitLog flush failed");
            }
            let meta = self.meta.clone();
            if let Err(e) = crate::runtime::run_blocking(move || meta.sync()).await {
                tracing::error!(error = %e, "final metadata sync failed");
            }
            let sm = self.state_machine.clone();
            if let Err(e) = crate::runtime::run_blocking(move || sm.sync_dispatch()).await {
                tracing::error!(error = %e, "final queue and index sync failed");
            }
        }
        // Wait until nothing else holds the replica's state, so that starting it again finds
        // its files and its metadata store (a lock, for sled) free: the watcher and retention
        // end on the stop, and openraft's state machine worker shortly after its core.
        let RaftNode {
            meta,
            watcher,
            retention,
            raft,
            state_machine,
            log,
            dispatcher,
            local_appends,
            stop,
            fatal,
            removed,
            network,
            known,
            ..
        } = self;
        drop((raft, state_machine, log, dispatcher, local_appends, stop, fatal, removed));
        drop((network, known));
        let _ = watcher.await;
        let _ = retention.await;
        let mut waited_ms = 0;
        while Arc::strong_count(&meta) > 1 && waited_ms < RELEASE_WAIT_MS_MAX {
            tokio::time::sleep(std::time::Duration::from_millis(RELEASE_POLL_MS)).await;
            waited_ms += RELEASE_POLL_MS;
        }
        if Arc::strong_count(&meta) > 1 {
            tracing::warn!(
                "the metadata store is still in use {RELEASE_WAIT_MS_MAX} ms after the stop"
            );
        }
    }
}

/// Set (durably) once this replica was removed from its group: a restart is refused.
const KEY_REMOVED: &[u8] = b"raft/removed";
/// This data directory's incarnation (see [`crate::network::RpcRequest::Checked`]).
const KEY_INCARNATION: &[u8] = b"raft/incarnation";
/// How often a leader looks for members whose incarnation its group has not recorded.
const RECORD_INCARNATIONS_MS: u64 = 1_000;

/// This data directory's incarnation: made (and written durably) when the directory is new,
/// from the clock and the node id, so a wiped directory comes back with another one.
fn incarnation<M: MetaStore>(meta: &M, id: NodeId) -> Result<u64, String> {
    if let Some(raw) = meta.get(KEY_INCARNATION).map_err(|e| e.to_string())? {
        let bytes: [u8; 8] =
            raw.as_slice().try_into().map_err(|_| "a bad incarnation".to_owned())?;
        return Ok(u64::from_be_bytes(bytes));
    }
    let made = (crate::clock::now_ms() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ id;
    let op = MetaOp::Put(KEY_INCARNATION.to_vec(), made.to_be_bytes().to_vec());
    meta.write(vec![op]).map_err(|e| e.to_string())?;
    Ok(made)
}

/// On the leader: records the incarnation of each member its group has none for (its own; the
/// others' asked with [`crate::network::RpcRequest::Identity`]), so that from then on a member
/// whose data is wiped is refused its group's calls. Only once every member answers (a replica
/// of an older version could not apply the entry; see [`crate::membership`]). Members added with
/// [`crate::membership::add_replica`] are recorded before they join; this covers a group's
/// first members (and groups from before incarnations). Polls its stop (no waiter on a watch
/// channel: see [`await_current_leader`]).
async fn record_incarnations(
    raft: Raft<TypeConfig>,
    network: Network,
    known: Incarnations,
    gate: Arc<WriteGate>,
    own_incarnation: u64,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        // Ticks of the watcher's period, so a stop lets go of the replica's state at once.
        for _ in 0..RECORD_INCARNATIONS_MS / FATAL_CHECK_MS {
            tokio::time::sleep(std::time::Duration::from_millis(FATAL_CHECK_MS)).await;
            if *stop.borrow() {
                return;
            }
        }
        let m = raft.metrics().borrow().clone();
        if !leads_with_current_state(&m) {
            continue;
        }
        let members: Vec<(NodeId, BasicNode)> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, node)| (*id, node.clone()))
            .collect();
        if members.iter().all(|(id, _)| (known.0)(*id).is_some()) {
            continue;
        }
        // Only once every member answers: see `membership::every_incarnation`.
        let given = Some((m.id, own_incarnation));
        let Some(all) = crate::membership::every_incarnation(&network, members, given).await else {
            continue;
        };
        let found: Vec<_> = all
            .into_iter()
            .filter(|(id, _)| (known.0)(*id).is_none())
            .map(|(node, incarnation)| crate::types::MetaCommand::SetReplica { node, incarnation })
            .collect();
        let written = {
            let _passing = gate.pass().await;
            raft.client_write_ff(crate::types::Request::Metadata(found)).await
        };
        if let Ok(answer) = written {
            let _ = answer.await;
        }
    }
}

/// What the watcher reports to the replica's owner.
struct Outcomes {
    fatal: tokio::sync::watch::Sender<Option<String>>,
    removed: tokio::sync::watch::Sender<bool>,
    /// The replica was a voter in the membership it applied last (a new replica is not).
    was_voter: bool,
}

/// How long a stop waits for the replica's tasks to let go of its state, and how often it
/// looks.
const RELEASE_WAIT_MS_MAX: u64 = 5_000;
const RELEASE_POLL_MS: u64 = 10;

/// How often a replica checks whether Raft stopped on a fatal error.
const FATAL_CHECK_MS: u64 = 100;
/// How often a replica makes its lazy and deferred metadata (committed and applied ids, what
/// apply changed) durable: what a crash can make it re-apply from the log at start. Also how
/// often it moves the CommitLog's checkpoint up to the log's durable cut (below it, recovery
/// takes a bad entry for damage rather than a torn write).
pub const META_SYNC_MS: u64 = 1_000;

/// How often a replica syncs its queues and indexes and moves the dispatch checkpoint: what a
/// crash makes it re-dispatch from the log at start (at most this long's entries). Not in
/// apply: the sync is blocking I/O (msync of every dirty queue and IndexFile page, the latter
/// scattered over the hash slots), which ran on apply's async task every 1,000 entries.
pub const DISPATCH_SYNC_MS: u64 = 5_000;

/// What a replica is in its group, as its role-change log line says it: seen by the watcher
/// (every [`FATAL_CHECK_MS`]), so a change that reverts within that time is not logged, and a
/// candidate's new terms are not changes (one line when it starts standing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Leader { term: u64 },
    Follower { term: u64, leader: Option<NodeId> },
    Candidate { term: u64 },
    Other,
}

impl Role {
    fn of(m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>) -> Role {
        let term = m.current_term;
        match m.state {
            openraft::ServerState::Leader => Role::Leader { term },
            openraft::ServerState::Follower => Role::Follower { term, leader: m.current_leader },
            openraft::ServerState::Candidate => Role::Candidate { term },
            _ => Role::Other,
        }
    }

    /// One INFO line per change. A follower that knows no leader yet says nothing: it either
    /// learns one (the next line) or stands for election.
    fn log(self, group: &str, id: NodeId) {
        match self {
            Role::Leader { term } => tracing::info!(group = %group, id, term, "leads its group"),
            Role::Follower { term, leader: Some(leader) } => {
                tracing::info!(group = %group, id, term, leader, "follows the leader")
            }
            Role::Candidate { term } => {
                tracing::info!(group = %group, id, term, "stands for election")
            }
            Role::Follower { leader: None, .. } | Role::Other => {}
        }
    }
}

/// Watches Raft's running state and the CommitLog's syncs and damage, syncs the lazy and
/// deferred metadata and the CommitLog's checkpoint every [`META_SYNC_MS`] and the queues and
/// indexes every [`DISPATCH_SYNC_MS`], off the send path. A fatal error (not our own shutdown), or a sync the disk refused, is logged
/// once, published to `fatal`, and stops the replica's RPC server and retention (and Raft, for
/// a failed sync): its peers then see it as down, not as a peer that answers and never acts.
///
/// It polls every [`FATAL_CHECK_MS`] rather than waiting on openraft's metrics channel: one
/// more waiter there changes the order tokio wakes its waiters in, which madsim does not
/// control, and the simulation would lose its determinism.
///
/// It holds the stop signal weakly: a node dropped without [`RaftNode::shutdown`] still stops
/// its tasks. openraft's own "stopped" state is our shutdown, never reported as fatal.
#[allow(clippy::too_many_arguments)]
async fn watch_replica<S: Storage + Clone, M: MetaStore>(
    raft: Raft<TypeConfig>,
    meta: Arc<M>,
    state_machine: StateMachine<S, M>,
    refused: Arc<Mutex<Option<String>>>,
    stop: std::sync::Weak<tokio::sync::watch::Sender<bool>>,
    outcomes: Outcomes,
    group: String,
    id: NodeId,
) {
    let Outcomes { fatal, removed, mut was_voter } = outcomes;
    let mut since_sync_ms = 0;
    let mut since_dispatch_sync_ms = 0;
    let mut role = None;
    let mut term = None;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(FATAL_CHECK_MS)).await;
        let Some(stop) = stop.upgrade() else { return };
        if *stop.borrow() {
            return;
        }
        let metrics = raft.metrics();
        let (state, now) = {
            let m = metrics.borrow();
            (m.running_state.clone(), Role::of(&m))
        };
        // A candidate that keeps standing (no majority reachable) says so once, not per term.
        let now_term = metrics.borrow().current_term;
        if let Some(before) = term.replace(now_term) {
            state_machine.stats().elections.add(now_term.saturating_sub(before));
        }
        let changed = match role.replace(now) {
            Some(Role::Candidate { .. }) => !matches!(now, Role::Candidate { .. }),
            before => before != Some(now),
        };
        if changed {
            now.log(&group, id);
        }
        // Removed: a committed (applied) membership no longer has this replica as a voter,
        // though one it applied before did. Said once, recorded durably (a restart is
        // refused), and published to the owner, which stops the replica.
        let voter = {
            let m = metrics.borrow();
            let config = &m.membership_config;
            let committed =
                config.log_id().is_some_and(|l| m.last_applied.is_some_and(|a| a.index >= l.index));
            committed.then(|| config.membership().voter_ids().any(|v| v == id))
        };
        match voter {
            Some(true) => was_voter = true,
            Some(false) if was_voter && !*removed.borrow() => {
                tracing::info!(group = %group, id, "removed from the group's voters: this replica stops serving");
                if let Err(e) = meta.write(vec![MetaOp::Put(KEY_REMOVED.to_vec(), b"1".to_vec())]) {
                    tracing::error!(error = %e, "could not record the removal (a restart would serve again)");
                }
                let _ = removed.send(true);
            }
            _ => {}
        }
        let mut error = match state {
            Ok(()) | Err(openraft::error::Fatal::Stopped) => None,
            Err(e) => Some(e.to_string()),
        };
        // Damage a read found in the CommitLog (a pull, replication, apply, a snapshot's
        // history): the log wrote its quarantine marker, and the replica stops (no vote, no
        // lead). Named first: the read that met it may have stopped openraft already, with an
        // error that does not say why.
        if let Some(e) = state_machine.commit_log_damage() {
            if error.is_none() {
                let raft = raft.clone();
                tokio::spawn(async move { raft.shutdown().await });
            }
            error = Some(format!("the CommitLog is damaged, quarantined: {e}"));
        }
        // An AppendEntries the RPC server refused (see `applied_entries_guard`): openraft
        // never saw it; the replica stops.
        if error.is_none() {
            if let Some(why) = crate::log_store::lock(&refused).clone() {
                let raft = raft.clone();
                tokio::spawn(async move { raft.shutdown().await });
                error = Some(why);
            }
        }
        // A CommitLog sync that failed (in async mode no append waits for it, so openraft
        // never hears of it): the log takes no more writes, and the replica stops.
        if error.is_none() {
            if let Some(e) = state_machine.commit_log_sync_failure() {
                let raft = raft.clone();
                tokio::spawn(async move { raft.shutdown().await });
                error = Some(format!("syncing the CommitLog failed: {e}"));
            }
        }
        since_sync_ms += FATAL_CHECK_MS;
        if error.is_none() && since_sync_ms >= META_SYNC_MS {
            since_sync_ms = 0;
            let m = meta.clone();
            error = periodic_sync(&raft, "the metadata store", move || m.sync()).await;
            if error.is_none() {
                let sm = state_machine.clone();
                error = periodic_sync(&raft, "the CommitLog's checkpoint", move || {
                    sm.checkpoint_log().map(|_| ())
                })
                .await;
            }
        }
        since_dispatch_sync_ms += FATAL_CHECK_MS;
        if error.is_none() && since_dispatch_sync_ms >= DISPATCH_SYNC_MS {
            since_dispatch_sync_ms = 0;
            let sm = state_machine.clone();
            error =
                periodic_sync(&raft, "the queues and indexes", move || sm.sync_dispatch()).await;
        }
        if let Some(e) = error {
            tracing::error!(
                group = %group,
                id,
                error = %e,
                "FATAL: Raft stopped on this replica; it no longer serves. Fix the cause (see the \
                 error) and restart the process"
            );
            let _ = fatal.send(Some(e));
            let _ = stop.send(true);
            return;
        }
    }
}

/// Wraps `guard` to record that a leader called: an AppendEntries whose vote is committed and
/// not older than this replica's (a leader this replica would follow, not a deposed one).
fn leader_heard(
    raft: Raft<TypeConfig>,
    heard: Arc<std::sync::atomic::AtomicBool>,
    guard: AppendGuard,
) -> AppendGuard {
    Arc::new(move |req| {
        if !heard.load(std::sync::atomic::Ordering::Relaxed)
            && req.vote.is_committed()
            && req.vote >= raft.metrics().borrow().vote
        {
            heard.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        guard(req)
    })
}

/// Refuses an AppendEntries that names, at or below this replica's applied index, an entry
/// other than the one this replica holds there (its `prev_log_id` or one of its entries): the
/// leader's log differs from entries this replica applied, so its group lost committed entries
/// (async flush and a power loss of a majority: see [`AppliedEntriesLost`]). openraft takes
/// every index up to a follower's committed one as matching without looking (a debug build
/// asserts, a release build would append the leader's entries after a different one: replicas
/// that differ), so the check has to come first. Only a request from a leader at least as new
/// as the one this replica follows is checked (a deposed leader's is refused by openraft). An
/// index the log no longer holds (purged, or before a snapshot's history) is not checked. The
/// refusal is left in `refused`, from which the replica's watcher stops the replica.
fn applied_entries_guard<S: Storage>(
    raft: Raft<TypeConfig>,
    log: Arc<Mutex<CommitLog<S>>>,
    refused: Arc<Mutex<Option<String>>>,
) -> AppendGuard {
    Arc::new(move |req| {
        let first = match (&req.prev_log_id, req.entries.first()) {
            (Some(prev), _) => prev.index,
            (None, Some(e)) => e.log_id.index,
            (None, None) => return Ok(()),
        };
        let (vote, applied) = {
            let m = raft.metrics();
            let m = m.borrow();
            (m.vote, m.last_applied)
        };
        // A request from a leader this replica has seen deposed is openraft's to refuse: its
        // entries may be ones a later leader replaced before they committed.
        if req.vote < vote {
            return Ok(());
        }
        let Some(applied) = applied.filter(|a| a.index >= first) else { return Ok(()) };
        // The leader's ids up to the applied index: the one before its entries, and theirs.
        let named = req.prev_log_id.iter().chain(req.entries.iter().map(|e| &e.log_id));
        let log = crate::log_store::lock(&log);
        for leader_has in named.take_while(|id| id.index <= applied.index) {
            let Ok(own) = log.entry_meta(RaftIndex(leader_has.index)) else { continue };
            let own = crate::types::log_id(own.term, own.leader, own.index.0);
            if own == *leader_has {
                continue;
            }
            let lost = AppliedEntriesLost { since: leader_has.index, applied: applied.index };
            tracing::error!(
                error = %lost,
                ?own,
                ?leader_has,
                "the group lost entries this replica applied"
            );
            let why = lost.to_string();
            crate::log_store::lock(&refused).get_or_insert_with(|| why.clone());
            return Err(why);
        }
        Ok(())
    })
}

/// Runs one of the watcher's syncs on a blocking thread. A sync the disk refused is fatal: Raft
/// is stopped and the error returned for the watcher to publish.
async fn periodic_sync<E: std::fmt::Display + Send + 'static>(
    raft: &Raft<TypeConfig>,
    what: &str,
    sync: impl FnOnce() -> Result<(), E> + Send + 'static,
) -> Option<String> {
    let e = crate::runtime::run_blocking(sync).await.err()?;
    let raft = raft.clone();
    tokio::spawn(async move { raft.shutdown().await });
    Some(format!("syncing {what} failed: {e}"))
}

/// When retention looks at the disk: every `every_ms`, and when `disk_now` is notified (the
/// writes since the last measurement took a quarter of the room it left: see `DiskBudget`).
struct Checks {
    every_ms: u64,
    disk_now: Arc<tokio::sync::Notify>,
    stats: Arc<crate::RaftStats>,
    /// `NodeConfig::sim_bug_retention_ignores_floor`.
    #[cfg(madsim)]
    ignore_floor: bool,
    /// `SimBugs::retention_past_snapshot`.
    #[cfg(madsim)]
    past_snapshot: bool,
}

/// Retention for a replica: at start and every `every_ms` after, measure the disk (new writes
/// are refused at its usage limit, and a replica started on a full disk refuses its first send)
/// and delete the segments retention allows that a snapshot covers and that hold no record the
/// broker has still to act on (`StateMachine::retention_floor`: parked messages not yet moved,
/// transaction halves not yet resolved). Between those checks the disk is measured again
/// whenever the send path asks (`Checks::disk_now`), so a fast producer meets the limit before
/// the disk runs out. The purge goes through openraft (`trigger().purge_log`), so its view of
/// the log stays consistent; the queues and indexes are then trimmed to where the log starts.
async fn run_retention<S: Storage + Clone, M: MetaStore>(
    raft: Raft<TypeConfig>,
    state_machine: StateMachine<S, M>,
    log: Arc<Mutex<CommitLog<S>>>,
    dispatcher: Arc<Mutex<Dispatcher<S>>>,
    config: RetentionConfig,
    checks: Checks,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use crate::log_store::lock;
    #[allow(clippy::disallowed_methods)] // the runtime's clock, virtual under madsim
    let now = tokio::time::Instant::now;
    let every = std::time::Duration::from_millis(checks.every_ms);
    let mut next = now();
    let failed = rocketraft_remoting::throttle::LogThrottle::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            // The next check is `every` after this one starts, or after it ends if it took longer.
            _ = tokio::time::sleep_until(next) => next = now() + every,
            _ = checks.disk_now.notified() => {
                measure_disk(&log, &config, &failed, &checks.stats);
                continue;
            }
        }
        // Entries a snapshot covers may go; the rest are still needed to catch followers up.
        let mut limit =
            raft.metrics().borrow().snapshot.map_or(RaftIndex(0), |s| RaftIndex(s.index + 1));
        // ...and none the broker has still to act on: the segment holding the oldest stays.
        let floor =
            state_machine.retention_floor().map_err(|e| e.to_string()).and_then(|f| match f {
                // Already behind the log's start (purged before the queues were trimmed, or a
                // snapshot reset): nothing left to keep, and no reason to stop retention.
                Some(position) if position < lock(&log).start().position => Ok(None),
                Some(position) => lock(&log)
                    .entry_containing(position)
                    .map(|e| Some(e.index))
                    .map_err(|e| e.to_string()),
                None => Ok(None),
            });
        #[cfg(madsim)]
        let floor = if checks.ignore_floor { Ok(None) } else { floor };
        #[cfg(madsim)]
        if checks.past_snapshot {
            let applied = raft.metrics().borrow().last_applied.map(|a| a.index);
            limit = applied.map_or(RaftIndex(0), |a| RaftIndex(a + 1));
        }
        match floor {
            Ok(Some(index)) => limit = limit.min(index),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "retention check failed (finding parked records)");
                measure_disk(&log, &config, &failed, &checks.stats);
                continue;
            }
        }
        let plan = {
            let mut log = lock(&log);
            let plan = retention::plan(&log, crate::clock::now_ms(), limit, &config);
            if let Ok(p) = &plan {
                log.disk_measured(p.usage, config.disk_max_used_ratio, p.mark);
                checks.stats.disk_measured(p.usage);
            }
            plan
        };
        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "retention check failed");
                continue;
            }
        };
        if let Some(through) = plan.through {
            if plan.early {
                tracing::warn!(
                    through = through.0,
                    disk_clean_ratio = config.disk_clean_ratio,
                    "the disk is fuller than disk_clean_ratio: deleting the oldest CommitLog \
                     segment before its retention time"
                );
            }
            #[cfg(madsim)]
            if checks.past_snapshot {
                // The bug: deleted at once, whatever openraft purged.
                let start = lock(&log).purge_through(through).map(|s| s.position);
                if let Ok(start) = start {
                    let _ = lock(&dispatcher).purge_before(start);
                }
                continue;
            }
            if purge_log(&raft, &log, &dispatcher, through).await.is_err() {
                return; // Raft has stopped
            }
            checks.stats.purges.inc();
            // What the purge freed counts at once: a refusing leader admits sends again.
            measure_disk(&log, &config, &failed, &checks.stats);
        }
    }
}

/// Measures the disk for the send path's admission (`CommitLog::disk_measured`), outside the
/// log's lock: appends go on meanwhile, and count from the mark taken before. A measurement
/// that fails changes nothing (sends are still admitted against the last one, and refused once
/// that one's room is spent) and is logged at most once per 10 s.
fn measure_disk<S: Storage + Clone>(
    log: &Arc<Mutex<CommitLog<S>>>,
    config: &RetentionConfig,
    failed: &rocketraft_remoting::throttle::LogThrottle,
    stats: &crate::RaftStats,
) {
    use crate::log_store::lock;
    let (storage, mark) = {
        let log = lock(log);
        (log.storage().clone(), log.disk_mark())
    };
    match retention::disk_usage(&storage, config) {
        Ok(usage) => {
            lock(log).disk_measured(usage, config.disk_max_used_ratio, mark);
            stats.disk_measured(usage);
        }
        Err(e) => {
            if let Some(more) = failed.due() {
                tracing::error!(
                    error = %e,
                    more,
                    "measuring the disk failed: sends are admitted against the last measurement"
                );
            }
        }
    }
}

/// Purges the log through `through`: openraft first (its view of the log, and the purged id
/// saved durably), then the whole segments it covers and the queue entries and index files that
/// pointed into them ([`delete_purged`]). Errs only when Raft has stopped.
pub(crate) async fn purge_log<S: Storage + Clone>(
    raft: &Raft<TypeConfig>,
    log: &Arc<Mutex<CommitLog<S>>>,
    dispatcher: &Arc<Mutex<Dispatcher<S>>>,
    through: RaftIndex,
) -> Result<(), String> {
    raft.trigger().purge_log(through.0).await.map_err(|e| e.to_string())?;
    // The trigger only asks: openraft purges once no replication stream reads the entries.
    // Delete when it has (or after 5 s, what is purged by then).
    let _ = raft
        .wait(Some(std::time::Duration::from_secs(5)))
        .metrics(|m| m.purged.is_some_and(|p| p.index >= through.0), "purged")
        .await;
    if let Err(e) = delete_purged(raft, log, dispatcher, through) {
        tracing::error!(error = %e, "deleting purged CommitLog segments failed");
    }
    Ok(())
}

/// Deletes the whole segments whose entries openraft has purged, up to `through` (never one
/// holding an entry a snapshot being sent still reads: `CommitLog::pin_from`), then trims the
/// queues and indexes to where the log now starts. openraft's own purges (after a follower
/// installs a snapshot) are logical only: the history the snapshot brought stays until
/// retention wants its space.
fn delete_purged<S: Storage + Clone>(
    raft: &Raft<TypeConfig>,
    log: &Arc<Mutex<CommitLog<S>>>,
    dispatcher: &Arc<Mutex<Dispatcher<S>>>,
    through: RaftIndex,
) -> Result<(), rocketraft_store::StoreError> {
    use crate::log_store::lock;
    let Some(purged) = raft.metrics().borrow().purged.map(|p| p.index) else { return Ok(()) };
    let start = lock(log).purge_through(RaftIndex(purged.min(through.0)))?.position;
    lock(dispatcher).purge_before(start)
}

/// How long a replica with empty data waits for each peer's answer before it bootstraps.
const FOUNDED_TIMEOUT_MS: u64 = 500;

/// The first peer of `members` (but `own`) that answers it belongs to a group already. A peer
/// that does not answer (down, or a version without the call) does not hold the bootstrap
/// back: a group's first start must not wait for every machine.
async fn peer_founded(
    network: &Network,
    members: &BTreeMap<NodeId, BasicNode>,
    own: NodeId,
) -> Option<NodeId> {
    use openraft::network::RaftNetworkFactory;
    for (id, node) in members.iter().filter(|(id, _)| **id != own) {
        let mut client = network.clone().new_client(*id, node).await;
        let timeout = std::time::Duration::from_millis(FOUNDED_TIMEOUT_MS);
        if client.founded(timeout).await == Ok(true) {
            return Some(*id);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_election_wait_falls_in_the_configured_range() {
        let t = RaftTiming::default();
        let (min, max) = openraft_election_window(&t).unwrap();
        assert_eq!((min, max), (251, 1000));
        // openraft waits max + [min, max): 1251..2000 ms, inside 1000..2000.
        assert!(max + min >= t.election_timeout_min_ms && 2 * max <= t.election_timeout_max_ms);
        let tight = RaftTiming {
            heartbeat_interval_ms: 250,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 400,
            ..t
        };
        assert!(openraft_election_window(&tight).is_err());
    }
}
