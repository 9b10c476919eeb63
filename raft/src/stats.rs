//! What a replica counts as it runs, for its metrics (see `rocketraft_metrics`): updated with
//! relaxed atomic adds where it happens (a proposal, a sync, a purge), read on a scrape with
//! the state openraft and the CommitLog already keep ([`RaftNode::gather`]).

use rocketraft_metrics::{Counter, Gather, Gauge, Histogram};
use rocketraft_store::io::Storage;

/// One replica's counters. Made with its state machine and shared by its log store, proposer,
/// watcher and retention task.
#[derive(Debug)]
pub struct RaftStats {
    /// The highest index openraft reported committed (`save_committed`).
    pub committed: Gauge,
    /// How long each CommitLog sync took (from the flusher's start to done; the counts of
    /// syncs are the log's own, `CommitLog::io_counts`).
    pub sync_latency: Histogram,
    /// Proposals (batches) proposed, proposed and not yet answered, and their sizes.
    pub proposals: Counter,
    pub proposals_in_flight: Gauge,
    /// The most proposals in flight at once since the replica started (what
    /// `proposals_in_flight_max` bounds).
    pub proposals_in_flight_peak: Gauge,
    pub batch_records: Histogram,
    pub batch_bytes: Histogram,
    /// Terms this replica has seen begin since it started: each begins with an election.
    pub elections: Counter,
    /// Snapshots this replica built, and installed from its leader.
    pub snapshots_built: Counter,
    pub snapshots_installed: Counter,
    /// Retention's purges of whole CommitLog segments.
    pub purges: Counter,
    /// The data disk as last measured (by retention, every check and after each purge).
    pub disk_total_bytes: Gauge,
    pub disk_available_bytes: Gauge,
}

impl Default for RaftStats {
    fn default() -> Self {
        RaftStats {
            committed: Gauge::default(),
            sync_latency: Histogram::latency(),
            proposals: Counter::default(),
            proposals_in_flight: Gauge::default(),
            proposals_in_flight_peak: Gauge::default(),
            batch_records: Histogram::new(rocketraft_metrics::COUNT, 1.0),
            batch_bytes: Histogram::new(rocketraft_metrics::BYTES, 1.0),
            elections: Counter::default(),
            snapshots_built: Counter::default(),
            snapshots_installed: Counter::default(),
            purges: Counter::default(),
            disk_total_bytes: Gauge::default(),
            disk_available_bytes: Gauge::default(),
        }
    }
}

impl RaftStats {
    /// Records a measurement of the data disk.
    pub fn disk_measured(&self, usage: rocketraft_store::io::DiskUsage) {
        self.disk_total_bytes.set(i64::try_from(usage.total_bytes).unwrap_or(i64::MAX));
        self.disk_available_bytes.set(i64::try_from(usage.available_bytes).unwrap_or(i64::MAX));
    }
}

/// The role as a label value.
fn role_name(state: openraft::ServerState) -> &'static str {
    match state {
        openraft::ServerState::Leader => "leader",
        openraft::ServerState::Follower => "follower",
        openraft::ServerState::Candidate => "candidate",
        openraft::ServerState::Learner => "learner",
        openraft::ServerState::Shutdown => "shutdown",
    }
}

/// Adds a replica's Raft and storage metrics to a scrape (see [`crate::Replica::gather`]).
pub(crate) fn gather<S: Storage>(
    raft: &openraft::Raft<crate::TypeConfig>,
    log: &std::sync::Mutex<rocketraft_store::CommitLog<S>>,
    stats: &RaftStats,
    out: &mut Gather,
) {
    let (term, state, leader, last_log, applied, snapshot, purged, lags, voters, learners) = {
        let m = raft.metrics();
        let m = m.borrow();
        let last_log = m.last_log_index.unwrap_or(0);
        let lags: Vec<(String, u64)> = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .filter(|(id, _)| **id != m.id)
                    .map(|(id, matched)| {
                        let at = matched.map_or(0, |l| l.index);
                        (id.to_string(), last_log.saturating_sub(at))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let membership = m.membership_config.membership();
        (
            m.current_term,
            m.state,
            m.current_leader,
            last_log,
            m.last_applied.map_or(0, |l| l.index),
            m.snapshot.map_or(0, |l| l.index),
            m.purged.map_or(0, |l| l.index),
            lags,
            membership.voter_ids().count(),
            membership.learner_ids().count(),
        )
    };
    out.gauge("rocketraft_raft_term", "The replica's current Raft term.", &[], term as f64);
    for r in ["leader", "follower", "candidate", "learner", "shutdown"] {
        let v = if role_name(state) == r { 1.0 } else { 0.0 };
        out.gauge(
            "rocketraft_raft_role",
            "1 for the replica's current Raft role.",
            &[("role", r)],
            v,
        );
    }
    out.gauge(
        "rocketraft_raft_leader_id",
        "The node id of the leader this replica knows, -1 for none.",
        &[],
        leader.map_or(-1.0, |l| l as f64),
    );
    out.gauge(
        "rocketraft_raft_last_log_index",
        "The last index in the replica's log.",
        &[],
        last_log as f64,
    );
    out.gauge(
        "rocketraft_raft_commit_index",
        "The highest index the replica knows committed.",
        &[],
        stats.committed.get() as f64,
    );
    out.gauge("rocketraft_raft_applied_index", "The last index applied.", &[], applied as f64);
    out.gauge(
        "rocketraft_raft_snapshot_index",
        "The last index the replica's newest snapshot covers.",
        &[],
        snapshot as f64,
    );
    out.gauge(
        "rocketraft_raft_purged_index",
        "The last index purged from the log.",
        &[],
        purged as f64,
    );
    for (follower, lag) in &lags {
        out.gauge(
            "rocketraft_raft_follower_lag_entries",
            "On the leader: entries a follower's log is behind the leader's.",
            &[("follower", follower)],
            *lag as f64,
        );
    }
    out.gauge("rocketraft_raft_voters", "Voters in the group's membership.", &[], voters as f64);
    out.gauge(
        "rocketraft_raft_learners",
        "Learners in the group's membership.",
        &[],
        learners as f64,
    );
    out.counter(
        "rocketraft_raft_elections",
        "Terms this replica has seen begin since it started (each begins with an election).",
        &[],
        stats.elections.get(),
    );
    out.counter(
        "rocketraft_raft_proposals",
        "Batches this replica proposed as leader.",
        &[],
        stats.proposals.get(),
    );
    out.gauge(
        "rocketraft_raft_proposals_in_flight",
        "Batches proposed and not yet answered.",
        &[],
        stats.proposals_in_flight.get() as f64,
    );
    out.gauge(
        "rocketraft_raft_proposals_in_flight_peak",
        "The most batches in flight at once since the replica started (bounded by proposals_in_flight_max).",
        &[],
        stats.proposals_in_flight_peak.get() as f64,
    );
    out.histogram(
        "rocketraft_raft_batch_records",
        "Records per proposed batch.",
        &[],
        &stats.batch_records,
    );
    out.histogram(
        "rocketraft_raft_batch_bytes",
        "Bytes per proposed batch.",
        &[],
        &stats.batch_bytes,
    );
    let (io, start, end) = {
        let log = crate::log_store::lock(log);
        (log.io_counts(), log.start().position.0, log.end().position.0)
    };
    out.counter(
        "rocketraft_commitlog_appends",
        "CommitLog appends (batches of entries).",
        &[],
        io.appends,
    );
    out.counter(
        "rocketraft_commitlog_entries",
        "Entries appended to the CommitLog.",
        &[],
        io.entries,
    );
    out.counter(
        "rocketraft_commitlog_syncs",
        "CommitLog flushes that synced something (each covers every append before it).",
        &[],
        io.flush_jobs,
    );
    out.counter(
        "rocketraft_commitlog_file_syncs",
        "fdatasync calls on CommitLog files.",
        &[],
        io.file_syncs,
    );
    out.histogram(
        "rocketraft_commitlog_sync_seconds",
        "How long a CommitLog sync took, from the flusher's start to done.",
        &[],
        &stats.sync_latency,
    );
    out.counter(
        "rocketraft_snapshots_built",
        "Snapshots this replica built.",
        &[],
        stats.snapshots_built.get(),
    );
    out.counter(
        "rocketraft_snapshots_installed",
        "Snapshots this replica installed from its leader.",
        &[],
        stats.snapshots_installed.get(),
    );
    out.counter(
        "rocketraft_retention_purges",
        "Times retention deleted the oldest CommitLog segments.",
        &[],
        stats.purges.get(),
    );
    out.gauge(
        "rocketraft_commitlog_start_offset",
        "The CommitLog's first byte still kept (it moves up as retention deletes segments).",
        &[],
        start as f64,
    );
    out.gauge(
        "rocketraft_commitlog_end_offset",
        "The CommitLog's end: bytes ever appended.",
        &[],
        end as f64,
    );
    out.gauge(
        "rocketraft_disk_total_bytes",
        "The data disk's size (or the configured capacity), as last measured.",
        &[],
        stats.disk_total_bytes.get() as f64,
    );
    out.gauge(
        "rocketraft_disk_available_bytes",
        "Bytes still available on the data disk (or of the configured capacity), as last measured.",
        &[],
        stats.disk_available_bytes.get() as f64,
    );
}
