//! The Raft state machine of a broker group replica.
//!
//! Applying a committed entry: message records go to the ConsumeQueues and IndexFiles
//! (dispatch) and wake long-polling pulls; metadata commands change topics, groups and consumer
//! offsets in the metadata store, written lazily, and the applied id is deferred after them
//! (see [`crate::meta`]): a crash keeps a prefix of those writes and openraft re-applies from
//! the applied id it finds, which never runs ahead of what it covers.
//!
//! A snapshot is what a log needs beside itself: the metadata (topics, groups, offsets,
//! membership) at an applied id, and the log cut where the next entry goes. Its contents are
//! taken between applies (openraft asks for the builder on the state machine's task), so all of
//! it describes that one id; encoding and storing it runs on a task of its own. Sent, a
//! snapshot carries its history, the sender's log from its first retained entry up to the cut
//! ([`crate::snapshot_data`]); a follower that installs one and does not hold the snapshot's
//! last entry restarts its CommitLog there, copies the history in and rebuilds its queues from
//! it, so it holds what its leader holds, at the same positions.
//!
//! Dispatch does not sync its files here: the replica's watcher does, every
//! [`crate::node::DISPATCH_SYNC_MS`], off the send path ([`StateMachine::sync_dispatch`]); on
//! start the state machine dispatches again from the dispatch checkpoint up to the applied id.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, StorageError, StorageIOError, StoredMembership,
};
use rocketraft_store::io::Storage;
use rocketraft_store::{
    Arrival, CommitLog, CommitLogOffset, Dispatcher, LogCut, QueueOffset, RaftIndex,
};
use serde::{Deserialize, Serialize};

use crate::log_store::lock;
use crate::meta::{MetaOp, MetaStore};
use crate::snapshot_data::{PinnedHistory, SnapshotData, SPOOL_DIR};
use crate::types::{
    decode, decode_untrusted, encode, to_log_entry, GroupMeta, HalfOutcome, MetaCommand, NodeId,
    Request, Response, TopicMeta, TypeConfig,
};
use rocketraft_protocol::body::MessageQueue;
use rocketraft_protocol::names::{
    SCHEDULE_TOPIC, TIMER_TOPIC, TRANS_CHECK_MAX_TIME_TOPIC, TRANS_HALF_TOPIC,
};

pub(crate) const KEY_APPLIED: &[u8] = b"sm/applied";
const KEY_MEMBERSHIP: &[u8] = b"sm/membership";
const KEY_SNAPSHOT: &[u8] = b"sm/snapshot";
/// A snapshot install under way: the snapshot's meta and its spooled length, written durably
/// (the spool synced first) before the log is reset to the snapshot's history, deleted by the
/// install's last write. Found at start, the install is done again from the spool
/// ([`StateMachine::finish_interrupted_install`]): a crash in between would otherwise leave a
/// log starting past the applied id, which no restart gets over.
const KEY_INSTALLING: &[u8] = b"sm/installing";
const PREFIX_TOPIC: &[u8] = b"topic/";
const PREFIX_GROUP: &[u8] = b"group/";
const PREFIX_OFFSET: &[u8] = b"offset/";
/// How far the broker moved messages out of each parked queue (delay levels, timers).
const PREFIX_MOVED: &[u8] = b"moved/";
/// How each resolved transaction half message was resolved: `txn-done/<half offset, BE>`.
const PREFIX_HALF_DONE: &[u8] = b"txn-done/";
/// How often each unresolved half message was checked back: `txn-checks/<half offset, BE>`.
const PREFIX_HALF_CHECKS: &[u8] = b"txn-checks/";
/// Every half message before this offset is resolved (its marks are forgotten).
const KEY_HALVES_FROM: &[u8] = b"txn-from/";
/// Who a queue lock was last granted to: `lock/<group>\0<topic>\0<broker>\0<queue id>` ->
/// client id.
const PREFIX_LOCK: &[u8] = b"lock/";
/// Each replica's incarnation (see `MetaCommand::SetReplica`): `replica/<node id, be>`.
const PREFIX_REPLICA: &[u8] = b"replica/";
/// The replicated metadata, as prefixes of the metadata store.
const REPLICATED: [&[u8]; 9] = [
    PREFIX_TOPIC,
    PREFIX_GROUP,
    PREFIX_OFFSET,
    PREFIX_MOVED,
    PREFIX_HALF_DONE,
    PREFIX_HALF_CHECKS,
    KEY_HALVES_FROM,
    PREFIX_LOCK,
    PREFIX_REPLICA,
];
/// The largest snapshot head accepted from a peer (metadata of every topic, group and offset).
const SNAPSHOT_MAX_BYTES: usize = 1 << 30;
/// A snapshot as sent starts with these bytes, then the head's length (u64, big-endian), the
/// head ([`WireHead`]) and the history. Bytes without them are a body alone (as sent before
/// snapshots carried history).
const WIRE_MAGIC: &[u8; 8] = b"RRSNAPH1";
/// The largest file a received snapshot is spooled in.
const SPOOL_PART_MAX_BYTES: u64 = 64 << 20;
/// Entries dispatched per read of copied history.
const HISTORY_DISPATCH_BATCH: u64 = 256;

type Membership = StoredMembership<NodeId, openraft::BasicNode>;

/// Called with the messages each apply made visible (long polling wakes on it).
pub type ArrivalListener = Arc<dyn Fn(&[Arrival]) + Send + Sync>;

fn key(prefix: &[u8], name: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// `offset/<group>\0<topic>\0<queue id>`
pub fn offset_key(group: &str, topic: &str, queue_id: i32) -> Vec<u8> {
    let mut k = PREFIX_OFFSET.to_vec();
    k.extend_from_slice(group.as_bytes());
    k.push(0);
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(queue_id.to_string().as_bytes());
    k
}

/// `moved/<topic>\0<queue id>`
fn moved_key(topic: &str, queue_id: i32) -> Vec<u8> {
    let mut k = PREFIX_MOVED.to_vec();
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(queue_id.to_string().as_bytes());
    k
}

/// `lock/<group>\0<topic>\0<broker name>\0<queue id>`
fn lock_key(group: &str, q: &MessageQueue) -> Vec<u8> {
    let mut k = PREFIX_LOCK.to_vec();
    for part in [group, &q.topic, &q.broker_name] {
        k.extend_from_slice(part.as_bytes());
        k.push(0);
    }
    k.extend_from_slice(q.queue_id.to_string().as_bytes());
    k
}

/// The longest range one `ForgetHalves` drops the marks of.
pub const FORGET_HALVES_MAX: u64 = 10_000;

fn half_key(prefix: &[u8], half_offset: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&half_offset.to_be_bytes());
    k
}

/// What a snapshot holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotBody {
    /// Where the entry after the snapshot goes.
    cut_next_index: u64,
    cut_position: u64,
    cut_prev_crc: u32,
    /// The replicated metadata, key by key.
    metadata: Vec<(Vec<u8>, Vec<u8>)>,
    /// Each queue's next offset (topic, queue id, offset): a replica that resets its log to the
    /// cut starts its queues there, so offsets continue instead of restarting at 0.
    queues: Vec<(String, i32, u64)>,
}

/// A snapshot's head as sent: its body, and the history that follows the head: the sender's
/// log bytes from the cut `history_*` (its first retained entry) up to the body's cut.
#[derive(Debug, Serialize, Deserialize)]
struct WireHead {
    body: Vec<u8>,
    history_next_index: u64,
    history_position: u64,
    history_prev_crc: u32,
    history_len: u64,
}

impl WireHead {
    fn history_from(&self) -> LogCut {
        LogCut {
            next_index: RaftIndex(self.history_next_index),
            position: CommitLogOffset(self.history_position),
            prev_crc: self.history_prev_crc,
        }
    }
}

/// Reads a received snapshot's head: (the head, where its history starts in the data).
fn read_wire_head(data: &SnapshotData) -> std::io::Result<(WireHead, u64)> {
    let bad = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
    let mut magic = [0u8; 16];
    if data.len() >= 16 {
        data.read_at(0, &mut magic)?;
    }
    if &magic[..8] != WIRE_MAGIC {
        // A body alone, from a sender without history.
        let len = usize::try_from(data.len()).ok().filter(|l| *l <= SNAPSHOT_MAX_BYTES);
        let len = len.ok_or_else(|| bad(format!("snapshot of {} bytes", data.len())))?;
        let mut body = vec![0u8; len];
        data.read_at(0, &mut body)?;
        let head = WireHead {
            body,
            history_next_index: 0,
            history_position: 0,
            history_prev_crc: 0,
            history_len: 0,
        };
        return Ok((head, data.len()));
    }
    let head_len = u64::from_be_bytes(magic[8..].try_into().unwrap_or_default());
    let head_len = usize::try_from(head_len).ok().filter(|l| *l <= SNAPSHOT_MAX_BYTES);
    let head_len = head_len.ok_or_else(|| bad("snapshot head too large".into()))?;
    let mut raw = vec![0u8; head_len];
    data.read_at(16, &mut raw)?;
    let head: WireHead =
        decode_untrusted::<_, SNAPSHOT_MAX_BYTES>(&raw).map_err(|e| bad(e.to_string()))?;
    let history_at = 16 + head_len as u64;
    if history_at.checked_add(head.history_len) != Some(data.len()) {
        return Err(bad(format!(
            "snapshot of {} bytes, its head says {}",
            data.len(),
            history_at.saturating_add(head.history_len)
        )));
    }
    Ok((head, history_at))
}

/// Topics and subscription groups as applied, in memory: a send looks its topic up here and
/// never in the metadata store. Kept in step with the store by apply and snapshot installs
/// (each changes the store first, then this table).
#[derive(Debug, Default)]
struct Catalog {
    topics: BTreeMap<String, TopicMeta>,
    groups: BTreeMap<String, GroupMeta>,
    /// Each replica's incarnation, as the group recorded it.
    replicas: BTreeMap<NodeId, u64>,
}

impl Catalog {
    fn load(meta: &impl MetaStore) -> Result<Self, StorageError<NodeId>> {
        let mut c = Catalog::default();
        for (_, v) in meta.scan_prefix(PREFIX_TOPIC).map_err(sm_read)? {
            let t: TopicMeta = decode(&v).map_err(sm_read)?;
            c.topics.insert(t.name.clone(), t);
        }
        for (_, v) in meta.scan_prefix(PREFIX_GROUP).map_err(sm_read)? {
            let g: GroupMeta = decode(&v).map_err(sm_read)?;
            c.groups.insert(g.name.clone(), g);
        }
        for (_, v) in meta.scan_prefix(PREFIX_REPLICA).map_err(sm_read)? {
            let (node, incarnation): (NodeId, u64) = decode(&v).map_err(sm_read)?;
            c.replicas.insert(node, incarnation);
        }
        Ok(c)
    }

    fn apply(&mut self, cmd: &MetaCommand) {
        match cmd {
            MetaCommand::PutTopic(t) => {
                self.topics.insert(t.name.clone(), t.clone());
            }
            MetaCommand::DeleteTopic { topic } => {
                self.topics.remove(topic);
            }
            MetaCommand::PutGroup(g) => {
                self.groups.insert(g.name.clone(), g.clone());
            }
            MetaCommand::DeleteGroup { group } => {
                self.groups.remove(group);
            }
            MetaCommand::SetReplica { node, incarnation } => {
                self.replicas.insert(*node, *incarnation);
            }
            MetaCommand::CommitOffsets(_)
            | MetaCommand::SkipParked { .. }
            | MetaCommand::RollBackHalf { .. }
            | MetaCommand::HalfChecks { .. }
            | MetaCommand::ForgetHalves { .. }
            | MetaCommand::SetLockOwner { .. } => {}
        }
    }
}

/// The state machine; cheap to clone (the snapshot builder is a clone).
pub struct StateMachine<S: Storage, M: MetaStore> {
    log: Arc<Mutex<CommitLog<S>>>,
    dispatcher: Arc<Mutex<Dispatcher<S>>>,
    meta: Arc<M>,
    catalog: Arc<RwLock<Catalog>>,
    listener: Option<ArrivalListener>,
    stats: Arc<crate::RaftStats>,
    /// `SimBugs::applied_before_metadata`.
    #[cfg(madsim)]
    sim_bug_applied_before_metadata: bool,
}

impl<S: Storage, M: MetaStore> Clone for StateMachine<S, M> {
    fn clone(&self) -> Self {
        StateMachine {
            log: self.log.clone(),
            dispatcher: self.dispatcher.clone(),
            meta: self.meta.clone(),
            catalog: self.catalog.clone(),
            listener: self.listener.clone(),
            stats: self.stats.clone(),
            #[cfg(madsim)]
            sim_bug_applied_before_metadata: self.sim_bug_applied_before_metadata,
        }
    }
}

/// The applied id as the state machine last recorded it (deferred: the newest, durable or not).
pub(crate) fn read_applied<M: MetaStore>(
    meta: &M,
) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
    match meta.get(KEY_APPLIED).map_err(sm_read)? {
        Some(raw) => decode(&raw).map_err(sm_read),
        None => Ok(None),
    }
}

fn sm_read(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(&e).into()
}

fn sm_write(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&e).into()
}

fn apply_error(log_id: LogId<NodeId>, e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::apply(log_id, &e).into()
}

fn snapshot_error(
    meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
    e: impl std::error::Error + 'static,
) -> StorageError<NodeId> {
    StorageIOError::read_snapshot(Some(meta.signature()), &e).into()
}

impl<S: Storage + Clone, M: MetaStore> StateMachine<S, M> {
    /// Wraps the replica's log, dispatcher and metadata, and dispatches whatever was applied
    /// but not yet durably dispatched before a restart.
    pub fn new(
        log: Arc<Mutex<CommitLog<S>>>,
        dispatcher: Arc<Mutex<Dispatcher<S>>>,
        meta: Arc<M>,
        listener: Option<ArrivalListener>,
    ) -> Result<Self, StorageError<NodeId>> {
        let catalog = Arc::new(RwLock::new(Catalog::load(&*meta)?));
        let stats = Arc::default();
        let sm = StateMachine {
            log,
            dispatcher,
            meta,
            catalog,
            listener,
            stats,
            #[cfg(madsim)]
            sim_bug_applied_before_metadata: false,
        };
        sm.catch_up_dispatch()?;
        Ok(sm)
    }

    /// Counts into `stats` from now on (the replica's, shared with its log store and proposer).
    pub fn with_stats(mut self, stats: Arc<crate::RaftStats>) -> Self {
        self.stats = stats;
        self
    }

    /// Simulation builds only: the applied id is made durable before the metadata changes
    /// it covers (`SimBugs::applied_before_metadata`).
    #[cfg(madsim)]
    pub fn sim_bug_applied_before_metadata(mut self, on: bool) -> Self {
        self.sim_bug_applied_before_metadata = on;
        self
    }

    /// The replica's counters.
    pub fn stats(&self) -> &Arc<crate::RaftStats> {
        &self.stats
    }

    fn applied(&self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        read_applied(&*self.meta)
    }

    /// Returns once this replica's own log is durable through `index`. Apply calls it before
    /// it writes what an entry changed in the metadata store: those writes may reach the disk
    /// before the next metadata sync (a crash keeps a prefix of them), and an entry whose
    /// effects survive must survive too. Otherwise a replica that applied an entry, then lost
    /// it from its unsynced log tail (async flush; or a follower that applies what the others
    /// committed before its own sync returned), would keep effects of an entry it no longer
    /// holds: if its group lost that entry as well, the next leader writes another at its
    /// index and this replica would silently differ from the others.
    async fn log_durable_through(&self, index: u64) -> Result<(), StorageError<NodeId>> {
        loop {
            {
                let log = lock(&self.log);
                // An entry the log does not hold (openraft's storage suite applies entries it
                // never appended) has nothing to sync.
                if log.flushed().next_index.0 > index || log.end().next_index.0 <= index {
                    return Ok(());
                }
            }
            // A slow disk's extra time per sync (the simulation's; zero on a real disk, whose
            // syncs take the time they take), waited out as the flusher does.
            let latency = lock(&self.log).storage().sync_latency();
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            let log = self.log.clone();
            let flushed = crate::runtime::run_blocking(move || rocketraft_store::sync_log(&log))
                .await
                .map_err(sm_write)?;
            if flushed.next_index.0 > index {
                return Ok(());
            }
            // Another sync (the flusher's) holds the job that covers the entry: wait for it.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    fn catch_up_dispatch(&self) -> Result<(), StorageError<NodeId>> {
        let Some(applied) = self.applied()? else { return Ok(()) };
        let log = lock(&self.log);
        let mut d = lock(&self.dispatcher);
        let from = d.next().next_index.max(log.start().next_index);
        let to = RaftIndex((applied.index + 1).min(log.end().next_index.0));
        if from >= to {
            return Ok(());
        }
        for e in log.entries(from..to).map_err(sm_read)? {
            let position = log.entry_meta(e.index).map_err(sm_read)?.position;
            d.dispatch(position, &e).map_err(sm_write)?;
        }
        d.flush().map_err(sm_write)?;
        tracing::info!(from = %from, to = %to, "dispatched entries applied before the restart");
        Ok(())
    }

    /// A stored snapshot's body as sent: a head, then this log's history from its first entry
    /// up to the snapshot's cut, pinned against retention while the snapshot is alive.
    fn with_history(&self, body: Vec<u8>) -> Result<SnapshotData, StorageError<NodeId>> {
        let parsed: SnapshotBody = decode(&body).map_err(sm_read)?;
        let mut log = lock(&self.log);
        let start = log.start();
        let (from, len) = if start.next_index.0 < parsed.cut_next_index
            && start.position.0 < parsed.cut_position
        {
            (start, parsed.cut_position - start.position.0)
        } else {
            (LogCut::default(), 0)
        };
        let head = WireHead {
            body,
            history_next_index: from.next_index.0,
            history_position: from.position.0,
            history_prev_crc: from.prev_crc,
            history_len: len,
        };
        let raw = encode(&head).map_err(sm_read)?;
        let mut bytes = Vec::with_capacity(16 + raw.len());
        bytes.extend_from_slice(WIRE_MAGIC);
        bytes.extend_from_slice(&(raw.len() as u64).to_be_bytes());
        bytes.extend_from_slice(&raw);
        if len == 0 {
            // Nothing before the cut to send, nor to pin.
            return Ok(SnapshotData::memory(bytes));
        }
        let history = PinnedHistory::pin(&self.log, &mut log, from.next_index, from.position, len);
        Ok(SnapshotData::outgoing(bytes, history))
    }

    /// Restarts the log at `from` with the history a snapshot carries (its bytes at
    /// `history_at` in `data`, up to `cut`), durably, and the queues and indexes from it; queues
    /// with no message in the history start where the snapshot says they are.
    fn install_history(
        &self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        data: &SnapshotData,
        from: LogCut,
        history_at: u64,
        cut: LogCut,
        queues: &[(String, i32, u64)],
    ) -> Result<(), StorageError<NodeId>> {
        if from.position > cut.position || from.next_index > cut.next_index {
            let e = std::io::Error::other(format!("history {from:?} after the cut {cut:?}"));
            return Err(snapshot_error(meta, e));
        }
        let mut log = lock(&self.log);
        log.reset(from).map_err(sm_write)?;
        let copied = log
            .copy_in(cut, &mut |position, buf| {
                data.read_at(history_at + (position - from.position.0), buf)
            })
            .map_err(|e| snapshot_error(meta, e))?;
        log.flush().map_err(sm_write)?;
        let mut d = lock(&self.dispatcher);
        d.reset(from).map_err(sm_write)?;
        let mut next = from.next_index;
        while next < cut.next_index {
            let to = RaftIndex((next.0 + HISTORY_DISPATCH_BATCH).min(cut.next_index.0));
            for e in log.entries(next..to).map_err(sm_read)? {
                let position = log.entry_meta(e.index).map_err(sm_read)?.position;
                d.dispatch(position, &e).map_err(sm_write)?;
            }
            next = to;
        }
        for (topic, id, next) in queues {
            match d.queue(topic, *id).map(|q| q.max_offset().0) {
                None => d.seed_queue(topic, *id, QueueOffset(*next)).map_err(sm_write)?,
                Some(max) if max != *next => tracing::warn!(
                    topic = %topic,
                    queue_id = id,
                    from_history = max,
                    in_snapshot = next,
                    "a queue rebuilt from a snapshot's history ends elsewhere than the snapshot says"
                ),
                Some(_) => {}
            }
        }
        d.flush().map_err(sm_write)?;
        tracing::info!(
            from = %from.next_index,
            cut = %cut.next_index,
            entries = copied,
            "installed a snapshot with its history"
        );
        Ok(())
    }

    /// Installs `snapshot` (see `RaftStateMachine::install_snapshot`); `again` resets the log
    /// to its history even if the log holds its last entry (an install a crash interrupted
    /// is done again whole).
    fn install(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<SnapshotData>,
        again: bool,
    ) -> Result<(), StorageError<NodeId>> {
        // The snapshot came from a peer: bound what it may make us allocate.

        let (head, history_at) = read_wire_head(&snapshot).map_err(|e| snapshot_error(meta, e))?;
        let body: SnapshotBody = decode_untrusted::<_, SNAPSHOT_MAX_BYTES>(&head.body)
            .map_err(|e| snapshot_error(meta, e))?;
        let cut = LogCut {
            next_index: RaftIndex(body.cut_next_index),
            position: CommitLogOffset(body.cut_position),
            prev_crc: body.cut_prev_crc,
        };
        // Keep the log if it holds the snapshot's last entry (openraft then purges up to it,
        // logically); otherwise start it again with the leader's history, so positions and what
        // consumers find stay identical to the leader's.
        let holds_last = {
            let log = lock(&self.log);
            match meta.last_log_id {
                Some(last) => log.entry_meta(RaftIndex(last.index)).is_ok_and(|m| {
                    m.term == last.leader_id.term && m.leader == last.leader_id.node_id
                }),
                None => true,
            }
        };
        let resets_log = !holds_last || again;
        if resets_log {
            if snapshot.is_spooled() {
                snapshot.sync().map_err(sm_write)?;
                let installing = encode(&(meta.clone(), snapshot.len())).map_err(sm_write)?;
                self.meta
                    .write(vec![MetaOp::Put(KEY_INSTALLING.to_vec(), installing)])
                    .map_err(sm_write)?;
            }
            let from = if head.history_len > 0 { head.history_from() } else { cut };
            self.install_history(meta, &snapshot, from, history_at, cut, &body.queues)?;
        }
        let mut ops: Vec<MetaOp> =
            REPLICATED.iter().map(|p| MetaOp::DeletePrefix(p.to_vec())).collect();
        ops.extend(body.metadata.into_iter().map(|(k, v)| MetaOp::Put(k, v)));
        ops.push(MetaOp::Put(KEY_APPLIED.to_vec(), encode(&meta.last_log_id).map_err(sm_write)?));
        ops.push(MetaOp::Put(
            KEY_MEMBERSHIP.to_vec(),
            encode(&meta.last_membership).map_err(sm_write)?,
        ));
        // Stored as built: the body alone (this replica sends its own history with it).
        ops.push(MetaOp::Put(
            KEY_SNAPSHOT.to_vec(),
            encode(&(meta.clone(), head.body)).map_err(sm_write)?,
        ));
        // The log no longer holds what came before its history: purged through the
        // snapshot's last entry, as openraft records it right after an install (a restart in
        // between must not look for the entries the reset removed).
        if let (true, Some(last)) = (resets_log, meta.last_log_id) {
            let purged = crate::log_store::read_purged(&*self.meta)?;
            if purged.is_none_or(|p| p.index < last.index) {
                ops.push(MetaOp::Put(
                    crate::log_store::KEY_PURGED.to_vec(),
                    encode(&last).map_err(sm_write)?,
                ));
            }
        }
        ops.push(MetaOp::Delete(KEY_INSTALLING.to_vec()));
        self.meta.write(ops).map_err(sm_write)?;
        *self.catalog_mut() = Catalog::load(&*self.meta)?;
        drop(snapshot);
        if let Err(e) = lock(&self.log).storage().remove_dir_all(SPOOL_DIR) {
            tracing::warn!(error = %e, "removing the received snapshot's spool failed");
        }
        self.catch_up_dispatch()?;
        self.stats.snapshots_installed.inc();
        Ok(())
    }

    /// Finishes a snapshot install a crash interrupted (see [`KEY_INSTALLING`]): the log may
    /// have been reset to the snapshot's history, wholly or in part, while the metadata still
    /// describes the state before it. The install is done again from the snapshot received
    /// into files. Call at start, before anything reads the applied state. Answers whether
    /// there was one.
    pub fn finish_interrupted_install(&mut self) -> Result<bool, StorageError<NodeId>> {
        type Installing = (SnapshotMeta<NodeId, openraft::BasicNode>, u64);
        let Some((meta, len)) = self.read_value::<Installing>(KEY_INSTALLING)? else {
            return Ok(false);
        };
        tracing::warn!(
            snapshot = ?meta.last_log_id,
            "a snapshot install was interrupted: finishing it from the copy received"
        );
        let storage = lock(&self.log).storage().clone();
        let data = SnapshotData::spooled(storage, len).map_err(|e| snapshot_error(&meta, e))?;
        self.install(&meta, Box::new(data), true)?;
        Ok(true)
    }

    /// The replicated metadata (topics, groups, offsets, delayed and transaction progress,
    /// queue lock owners, members' incarnations), in key order: what a snapshot carries, and
    /// the same on every replica that applied the same entries.
    pub fn replicated_metadata(&self) -> Result<crate::meta::KvPairs, StorageError<NodeId>> {
        let mut metadata = Vec::new();
        for prefix in REPLICATED {
            metadata.extend(self.meta.scan_prefix(prefix).map_err(sm_read)?);
        }
        Ok(metadata)
    }

    /// The first CommitLog sync that failed, if one did: the replica must stop (see
    /// `StoreError::SyncFailed`).
    pub fn commit_log_sync_failure(&self) -> Option<String> {
        lock(&self.log).sync_failure().map(str::to_owned)
    }

    /// The damage a read found in the CommitLog, if any (see `CommitLog::damage`): the log is
    /// quarantined and the replica must stop.
    pub fn commit_log_damage(&self) -> Option<String> {
        lock(&self.log).damage().map(str::to_owned)
    }

    /// Moves the CommitLog's checkpoint up to what is durable (see `CommitLog::checkpoint`).
    pub fn checkpoint_log(&self) -> Result<bool, rocketraft_store::StoreError> {
        lock(&self.log).checkpoint()
    }

    /// Syncs the queues and indexes and moves the dispatch checkpoint up to what was
    /// dispatched: what a restart re-dispatches from the log starts there. Blocking I/O.
    pub fn sync_dispatch(&self) -> Result<(), StorageError<NodeId>> {
        lock(&self.dispatcher).flush().map_err(sm_write)?;
        Ok(())
    }

    /// The incarnation the group recorded for replica `node` (see `MetaCommand::SetReplica`).
    pub fn incarnation_of(&self, node: NodeId) -> Option<u64> {
        self.catalog().replicas.get(&node).copied()
    }

    fn catalog(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(|p| p.into_inner())
    }

    fn catalog_mut(&self) -> std::sync::RwLockWriteGuard<'_, Catalog> {
        self.catalog.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A topic's configuration (from memory).
    pub fn topic(&self, name: &str) -> Result<Option<TopicMeta>, StorageError<NodeId>> {
        Ok(self.catalog().topics.get(name).cloned())
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Result<Vec<TopicMeta>, StorageError<NodeId>> {
        Ok(self.catalog().topics.values().cloned().collect())
    }

    /// A subscription group's configuration (from memory).
    pub fn group(&self, name: &str) -> Result<Option<GroupMeta>, StorageError<NodeId>> {
        Ok(self.catalog().groups.get(name).cloned())
    }

    /// Every subscription group, by name.
    pub fn groups(&self) -> Result<Vec<GroupMeta>, StorageError<NodeId>> {
        Ok(self.catalog().groups.values().cloned().collect())
    }

    /// How many subscription groups there are.
    pub fn group_count(&self) -> usize {
        self.catalog().groups.len()
    }

    /// The topics on which a group has committed offsets.
    pub fn offset_topics(&self, group: &str) -> Result<BTreeSet<String>, StorageError<NodeId>> {
        let mut prefix = PREFIX_OFFSET.to_vec();
        prefix.extend_from_slice(group.as_bytes());
        prefix.push(0);
        let pairs = self.meta.scan_prefix(&prefix).map_err(sm_read)?;
        Ok(pairs
            .iter()
            .filter_map(|(k, _)| {
                let rest = &k[prefix.len()..];
                let end = rest.iter().position(|&b| b == 0)?;
                Some(String::from_utf8_lossy(&rest[..end]).into_owned())
            })
            .collect())
    }

    /// The groups with a committed offset on `topic` (every group's offsets are read: an
    /// admin call, not a hot path).
    pub fn offset_groups(&self, topic: &str) -> Result<BTreeSet<String>, StorageError<NodeId>> {
        let pairs = self.meta.scan_prefix(PREFIX_OFFSET).map_err(sm_read)?;
        Ok(pairs
            .iter()
            .filter_map(|(k, _)| {
                let mut parts = k[PREFIX_OFFSET.len()..].split(|&b| b == 0);
                let (group, on) = (parts.next()?, parts.next()?);
                (on == topic.as_bytes()).then(|| String::from_utf8_lossy(group).into_owned())
            })
            .collect())
    }

    /// Every replicated queue lock: (group, queue, the client it was last granted to). What a
    /// new master honours.
    pub fn lock_owners(&self) -> Result<Vec<(String, MessageQueue, String)>, StorageError<NodeId>> {
        let pairs = self.meta.scan_prefix(PREFIX_LOCK).map_err(sm_read)?;
        let mut owners = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            let mut parts = k[PREFIX_LOCK.len()..].split(|&b| b == 0);
            let mut text = || parts.next().map(|p| String::from_utf8_lossy(p).into_owned());
            let (Some(group), Some(topic), Some(broker_name), Some(queue_id)) =
                (text(), text(), text(), text())
            else {
                continue;
            };
            let Ok(queue_id) = queue_id.parse() else { continue };
            let owner: String = decode(&v).map_err(sm_read)?;
            owners.push((group, MessageQueue { topic, broker_name, queue_id }, owner));
        }
        Ok(owners)
    }

    /// A group's committed offset on a queue.
    pub fn consumer_offset(
        &self,
        group: &str,
        topic: &str,
        queue_id: i32,
    ) -> Result<Option<u64>, StorageError<NodeId>> {
        self.read_value(&offset_key(group, topic, queue_id))
    }

    /// The first offset of a parked queue (a delay level's, a timer step's) not yet moved to
    /// its real topic: one past the last record whose moved copy was applied.
    pub fn moved_up_to(&self, topic: &str, queue_id: i32) -> Result<u64, StorageError<NodeId>> {
        Ok(self.read_value(&moved_key(topic, queue_id))?.unwrap_or(0))
    }

    /// How the transaction half message at `half_offset` of the half queue was resolved, if
    /// it was.
    pub fn half_outcome(
        &self,
        half_offset: u64,
    ) -> Result<Option<HalfOutcome>, StorageError<NodeId>> {
        if half_offset < self.halves_from()? {
            return Ok(Some(HalfOutcome::Forgotten));
        }
        self.half_mark(half_offset)
    }

    /// The mark of the half at `half_offset` as kept (a half before [`Self::halves_from`]
    /// has none any more: see [`Self::half_outcome`]).
    pub fn half_mark(&self, half_offset: u64) -> Result<Option<HalfOutcome>, StorageError<NodeId>> {
        self.read_value(&half_key(PREFIX_HALF_DONE, half_offset))
    }

    /// How often the half message at `half_offset` was checked back.
    pub fn half_checks(&self, half_offset: u64) -> Result<u32, StorageError<NodeId>> {
        Ok(self.read_value(&half_key(PREFIX_HALF_CHECKS, half_offset))?.unwrap_or(0))
    }

    /// Where the oldest record the broker has still to act on lies in the CommitLog: a parked
    /// message (a delay level's, a timer's) not yet moved to its topic, or the oldest
    /// transaction half message not known to be resolved. Retention keeps the segment that
    /// holds it, whatever the disk: consumers that lag behind retention lose what it deletes
    /// (as in RocketMQ), but these records were acknowledged to a producer and have not yet
    /// been delivered anywhere. `None`: nothing is waiting.
    pub fn retention_floor(&self) -> Result<Option<CommitLogOffset>, StorageError<NodeId>> {
        let mut waiting = Vec::new();
        {
            let d = lock(&self.dispatcher);
            for ((topic, queue_id), cq) in d.queues() {
                let parked = topic == SCHEDULE_TOPIC || topic == TIMER_TOPIC;
                if parked || topic == TRANS_HALF_TOPIC {
                    waiting.push((topic.clone(), *queue_id, cq.min_offset(), cq.max_offset()));
                }
            }
        }
        let mut floor: Option<CommitLogOffset> = None;
        for (topic, queue_id, min, max) in waiting {
            let from = if topic == TRANS_HALF_TOPIC {
                self.halves_from()?
            } else {
                self.moved_up_to(&topic, queue_id)?
            };
            let from = QueueOffset(from).max(min);
            if from >= max {
                continue;
            }
            let d = lock(&self.dispatcher);
            let entry = match d.queue(&topic, queue_id) {
                Some(cq) => cq.get(from).map_err(sm_read)?,
                None => None,
            };
            drop(d);
            if let Some(e) = entry {
                floor = Some(floor.map_or(e.position, |f| f.min(e.position)));
            }
        }
        Ok(floor)
    }

    /// The first half-queue offset whose resolution is still kept: every half message
    /// before it is resolved.
    pub fn halves_from(&self) -> Result<u64, StorageError<NodeId>> {
        Ok(self.read_value(KEY_HALVES_FROM)?.unwrap_or(0))
    }

    fn read_value<T: serde::de::DeserializeOwned>(
        &self,
        k: &[u8],
    ) -> Result<Option<T>, StorageError<NodeId>> {
        match self.meta.get(k).map_err(sm_read)? {
            Some(raw) => Ok(Some(decode(&raw).map_err(sm_read)?)),
            None => Ok(None),
        }
    }

    /// Whether `topic` exists at this point of the apply batch: the last of `ops` on its key
    /// says, else the catalog (the store as it was before the batch, in memory: no read).
    fn topic_exists_at(&self, topic: &str, ops: &[MetaOp]) -> Result<bool, StorageError<NodeId>> {
        let k = key(PREFIX_TOPIC, topic);
        for op in ops.iter().rev() {
            match op {
                MetaOp::Put(at, _) if *at == k => return Ok(true),
                MetaOp::Delete(at) if *at == k => return Ok(false),
                MetaOp::DeletePrefix(p) if k.starts_with(p) => return Ok(false),
                _ => {}
            }
        }
        Ok(self.catalog().topics.contains_key(topic))
    }

    /// `cmd` without the offsets and lock owners of topics that no longer exist (a commit
    /// checked before a DELETE_TOPIC that was applied first), or `None` when it keeps all.
    fn on_existing_topics(
        &self,
        cmd: &MetaCommand,
        ops: &[MetaOp],
    ) -> Result<Option<MetaCommand>, StorageError<NodeId>> {
        let mut exists = BTreeMap::new();
        let mut check = |topic: &str| -> Result<bool, StorageError<NodeId>> {
            if let Some(e) = exists.get(topic) {
                return Ok(*e);
            }
            let e = self.topic_exists_at(topic, ops)?;
            exists.insert(topic.to_owned(), e);
            Ok(e)
        };
        match cmd {
            // Copied only when something goes: a commit batch may hold 100,000 offsets.
            MetaCommand::CommitOffsets(offsets) => {
                let mut gone = BTreeSet::new();
                for o in offsets {
                    if !check(&o.topic)? {
                        gone.insert(o.topic.as_str());
                    }
                }
                Ok((!gone.is_empty()).then(|| {
                    let kept = offsets.iter().filter(|o| !gone.contains(o.topic.as_str()));
                    MetaCommand::CommitOffsets(kept.cloned().collect())
                }))
            }
            MetaCommand::SetLockOwner { group, owner, queues } => {
                let mut kept = Vec::with_capacity(queues.len());
                for q in queues {
                    if check(&q.topic)? {
                        kept.push(q.clone());
                    }
                }
                Ok((kept.len() < queues.len()).then(|| MetaCommand::SetLockOwner {
                    group: group.clone(),
                    owner: owner.clone(),
                    queues: kept,
                }))
            }
            _ => Ok(None),
        }
    }

    /// Deletes for what a deleted topic leaves behind: its consumer offsets and replicated
    /// queue-lock owners (RocketMQ cleans offsets by topic too), so creating and deleting
    /// topics does not grow the metadata. Both what is stored and what `ops` (this apply
    /// batch, so far) puts are covered, so the outcome does not depend on how entries were
    /// batched.
    fn topic_leftovers(
        &self,
        topic: &str,
        ops: &mut Vec<MetaOp>,
    ) -> Result<(), StorageError<NodeId>> {
        // `<prefix><group>\0<topic>\0...`
        let names_topic = |k: &[u8], prefix: &[u8]| {
            let mut parts = k[prefix.len()..].split(|&b| b == 0);
            parts.next().is_some() && parts.next() == Some(topic.as_bytes())
        };
        let mut doomed = BTreeSet::new();
        for prefix in [PREFIX_OFFSET, PREFIX_LOCK] {
            for (k, _) in self.meta.scan_prefix(prefix).map_err(sm_read)? {
                if names_topic(&k, prefix) {
                    doomed.insert(k);
                }
            }
            for op in ops.iter() {
                if let MetaOp::Put(k, _) = op {
                    if k.starts_with(prefix) && names_topic(k, prefix) {
                        doomed.insert(k.clone());
                    }
                }
            }
        }
        ops.extend(doomed.into_iter().map(MetaOp::Delete));
        Ok(())
    }

    fn command_ops(cmd: &MetaCommand, ops: &mut Vec<MetaOp>) -> Result<(), StorageError<NodeId>> {
        match cmd {
            MetaCommand::PutTopic(t) => {
                ops.push(MetaOp::Put(key(PREFIX_TOPIC, &t.name), encode(t).map_err(sm_write)?))
            }
            MetaCommand::DeleteTopic { topic } => {
                ops.push(MetaOp::Delete(key(PREFIX_TOPIC, topic)))
            }
            MetaCommand::PutGroup(g) => {
                ops.push(MetaOp::Put(key(PREFIX_GROUP, &g.name), encode(g).map_err(sm_write)?))
            }
            MetaCommand::DeleteGroup { group } => {
                ops.push(MetaOp::Delete(key(PREFIX_GROUP, group)));
                for prefix in [PREFIX_OFFSET, PREFIX_LOCK] {
                    let mut p = prefix.to_vec();
                    p.extend_from_slice(group.as_bytes());
                    p.push(0);
                    ops.push(MetaOp::DeletePrefix(p));
                }
            }
            MetaCommand::CommitOffsets(offsets) => {
                for o in offsets {
                    ops.push(MetaOp::Put(
                        offset_key(&o.group, &o.topic, o.queue_id),
                        encode(&o.offset).map_err(sm_write)?,
                    ));
                }
            }
            MetaCommand::SkipParked { topic, queue_id, next_offset } => ops.push(MetaOp::Put(
                moved_key(topic, *queue_id),
                encode(next_offset).map_err(sm_write)?,
            )),
            MetaCommand::RollBackHalf { half_offset } => {
                ops.push(MetaOp::Put(
                    half_key(PREFIX_HALF_DONE, *half_offset),
                    encode(&HalfOutcome::RolledBack).map_err(sm_write)?,
                ));
            }
            MetaCommand::HalfChecks { checks } => {
                for (half_offset, count) in checks {
                    ops.push(MetaOp::Put(
                        half_key(PREFIX_HALF_CHECKS, *half_offset),
                        encode(count).map_err(sm_write)?,
                    ));
                }
            }
            MetaCommand::ForgetHalves { from, below } => {
                // A forged or corrupt range must not make apply loop for long: a legitimate
                // one is at most FORGET_HALVES_MAX long.
                for o in *from..(*below).min(from.saturating_add(FORGET_HALVES_MAX)) {
                    ops.push(MetaOp::Delete(half_key(PREFIX_HALF_DONE, o)));
                    ops.push(MetaOp::Delete(half_key(PREFIX_HALF_CHECKS, o)));
                }
                ops.push(MetaOp::Put(KEY_HALVES_FROM.to_vec(), encode(below).map_err(sm_write)?));
            }
            MetaCommand::SetLockOwner { group, owner, queues } => {
                let owner = encode(owner).map_err(sm_write)?;
                for q in queues {
                    ops.push(MetaOp::Put(lock_key(group, q), owner.clone()));
                }
            }
            MetaCommand::SetReplica { node, incarnation } => {
                let mut k = PREFIX_REPLICA.to_vec();
                k.extend_from_slice(&node.to_be_bytes());
                ops.push(MetaOp::Put(k, encode(&(*node, *incarnation)).map_err(sm_write)?));
            }
        }
        Ok(())
    }

    fn current_cut(&self, applied: Option<LogId<NodeId>>) -> Result<LogCut, StorageError<NodeId>> {
        let log = lock(&self.log);
        let next = applied.map_or(log.start().next_index, |a| RaftIndex(a.index + 1));
        let next = next.max(log.start().next_index).min(log.end().next_index);
        log.cut_before(next).map_err(sm_read)
    }

    /// What a snapshot of the state as applied now holds. Called by openraft between applies
    /// (`get_snapshot_builder`, on the state machine's task), so the applied id, the metadata,
    /// the queues' next offsets and the cut all describe the same point; the builder then
    /// encodes and stores it on a task of its own while applies go on. (Once, the builder read
    /// the live state on its own task: queues already past the snapshot's last entry, which a
    /// follower installing it seeded its queues with, and dropped the entries after it.)
    fn capture(&self) -> Result<Captured, StorageError<NodeId>> {
        // Queues and indexes durable up to here first: the log before the snapshot may be
        // purged, and a restart re-dispatches only from the dispatch checkpoint.
        lock(&self.dispatcher).flush().map_err(sm_write)?;
        let applied = self.applied()?;
        let membership: Membership = self.read_value(KEY_MEMBERSHIP)?.unwrap_or_default();
        let cut = self.current_cut(applied)?;
        let metadata = self.replicated_metadata()?;
        let queues = lock(&self.dispatcher)
            .queues()
            .map(|((topic, id), q)| (topic.clone(), *id, q.max_offset().0))
            .collect();
        let body = SnapshotBody {
            cut_next_index: cut.next_index.0,
            cut_position: cut.position.0,
            cut_prev_crc: cut.prev_crc,
            metadata,
            queues,
        };
        let snapshot_id = match applied {
            Some(a) => format!("{}-{}-{}", a.leader_id.term, a.index, cut.position.0),
            None => format!("empty-{}", cut.position.0),
        };
        let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id };
        Ok(Captured { meta, body })
    }
}

/// A snapshot's contents, taken between applies.
struct Captured {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    body: SnapshotBody,
}

/// Builds the snapshot captured when openraft asked for a builder (see
/// [`StateMachine::capture`]): encodes it and stores it as the current snapshot.
pub struct SnapshotBuilder<M: MetaStore> {
    meta: Arc<M>,
    captured: Option<Result<Captured, StorageError<NodeId>>>,
}

impl<M: MetaStore> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<M> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let captured = self.captured.take().unwrap_or_else(|| {
            Err(StorageIOError::read_snapshot(None, &std::io::Error::other("built twice")).into())
        });
        let Captured { meta, body } = captured?;
        let data = encode(&body).map_err(sm_read)?;
        let stored = encode(&(meta.clone(), data.clone())).map_err(sm_write)?;
        self.meta.write(vec![MetaOp::Put(KEY_SNAPSHOT.to_vec(), stored)]).map_err(sm_write)?;
        Ok(Snapshot { meta, snapshot: Box::new(SnapshotData::memory(data)) })
    }
}

impl<S: Storage + Clone, M: MetaStore> RaftStateMachine<TypeConfig> for StateMachine<S, M> {
    type SnapshotBuilder = SnapshotBuilder<M>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        let mut applied = self.applied()?;
        // The applied id is saved once a second and the log's tail may be lost unsynced (async
        // flush, or a follower applying what its peers committed before its own sync): after a
        // power loss the saved id can name entries past the log's end. openraft would take them
        // for purged (committed and held elsewhere) and never fetch them, leaving a hole. They
        // are re-applied from the leader instead: what they changed never reached the metadata
        // store (apply makes the log durable first) and their queue entries past the log's end
        // were dropped when the queues were opened.
        let last = lock(&self.log).last();
        if let (Some(a), Some(last)) = (applied, last) {
            if a.index > last.index.0 {
                tracing::warn!(
                    applied = a.index,
                    log_end = last.index.0,
                    "the saved applied index is past the log's end (its unsynced tail was lost); \
                     re-applying from the log's end"
                );
                let clamped = crate::types::log_id(last.term, last.leader, last.index.0);
                let raw = encode(&Some(clamped)).map_err(sm_write)?;
                self.meta.put_deferred(KEY_APPLIED, raw).map_err(sm_write)?;
                applied = Some(clamped);
            }
        }
        Ok((applied, self.read_value(KEY_MEMBERSHIP)?.unwrap_or_default()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let mut ops = Vec::new();
        let mut arrivals = Vec::new();
        let mut last_applied = None;
        let mut catalog_changes = Vec::new();
        for e in entries {
            let mut position = CommitLogOffset(0);
            match &e.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(Request::Messages(_)) => {
                    position = lock(&self.log)
                        .entry_meta(RaftIndex(e.log_id.index))
                        .map_err(|err| apply_error(e.log_id, err))?
                        .position;
                    let stored = to_log_entry(&e).map_err(|err| apply_error(e.log_id, err))?;
                    let got = lock(&self.dispatcher)
                        .dispatch(position, &stored)
                        .map_err(|err| apply_error(e.log_id, err))?;
                    // Moved copies carry their parked record's place: that queue's progress
                    // changes in the same entry as the copy (see `protocol::schedule`).
                    // A transaction half message's committed (or discarded) copy marks the
                    // half resolved, in the same entry.
                    for a in &got {
                        let Some(from) = a.moved_from.as_ref() else { continue };
                        if from.topic == TRANS_HALF_TOPIC {
                            let outcome = if a.topic == TRANS_CHECK_MAX_TIME_TOPIC {
                                HalfOutcome::Discarded
                            } else {
                                HalfOutcome::Committed
                            };
                            let half = from.queue_offset.0;
                            ops.push(MetaOp::Put(
                                half_key(PREFIX_HALF_DONE, half),
                                encode(&outcome).map_err(sm_write)?,
                            ));
                            continue;
                        }
                        let next = from.queue_offset.0 + 1;
                        ops.push(MetaOp::Put(
                            moved_key(&from.topic, from.queue_id),
                            encode(&next).map_err(sm_write)?,
                        ));
                    }
                    arrivals.extend(got);
                }
                EntryPayload::Normal(Request::Metadata(cmds)) => {
                    for cmd in cmds {
                        let kept = self.on_existing_topics(cmd, &ops)?;
                        Self::command_ops(kept.as_ref().unwrap_or(cmd), &mut ops)?;
                        if let MetaCommand::DeleteTopic { topic } = cmd {
                            self.topic_leftovers(topic, &mut ops)?;
                        }
                        if matches!(
                            cmd,
                            MetaCommand::PutTopic(_)
                                | MetaCommand::DeleteTopic { .. }
                                | MetaCommand::PutGroup(_)
                                | MetaCommand::DeleteGroup { .. }
                                | MetaCommand::SetReplica { .. }
                        ) {
                            catalog_changes.push(cmd.clone());
                        }
                    }
                }
                EntryPayload::Membership(m) => {
                    let stored = Membership::new(Some(e.log_id), m.clone());
                    ops.push(MetaOp::Put(
                        KEY_MEMBERSHIP.to_vec(),
                        encode(&stored).map_err(sm_write)?,
                    ));
                }
            }
            last_applied = Some(e.log_id);
            responses.push(Response { entry_position: position.0 });
        }
        // What these entries changed, lazily, then the applied id, deferred: a crash keeps a
        // prefix of the changes and an applied id no newer than them, and openraft re-applies
        // from the applied id it finds (dispatch and metadata commands are idempotent in log
        // order). The node syncs them every second, and a purge or snapshot (durable writes)
        // makes them durable first. A send's entries change no metadata: no write at all.
        if !ops.is_empty() {
            if let Some(last) = last_applied {
                self.log_durable_through(last.index).await?;
            }
            #[cfg(madsim)]
            if let (true, Some(applied)) = (self.sim_bug_applied_before_metadata, last_applied) {
                let raw = encode(&Some(applied)).map_err(sm_write)?;
                self.meta.write(vec![MetaOp::Put(KEY_APPLIED.to_vec(), raw)]).map_err(sm_write)?;
            }
            self.meta.write_lazy(ops).map_err(sm_write)?;
        }
        if let Some(applied) = last_applied {
            let raw = encode(&Some(applied)).map_err(sm_write)?;
            self.meta.put_deferred(KEY_APPLIED, raw).map_err(sm_write)?;
        }
        if !catalog_changes.is_empty() {
            let mut catalog = self.catalog_mut();
            for cmd in &catalog_changes {
                catalog.apply(cmd);
            }
        }
        if let (Some(listener), false) = (&self.listener, arrivals.is_empty()) {
            listener(&arrivals);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.stats.snapshots_built.inc();
        SnapshotBuilder { meta: self.meta.clone(), captured: Some(self.capture()) }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<SnapshotData>, StorageError<NodeId>> {
        let (storage, part) = {
            let log = lock(&self.log);
            let part = log.config().segment_size_bytes.min(SPOOL_PART_MAX_BYTES);
            (log.storage().clone(), part)
        };
        Ok(Box::new(SnapshotData::incoming(storage, part).map_err(sm_write)?))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError<NodeId>> {
        self.install(meta, snapshot, false)
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        type Stored = (SnapshotMeta<NodeId, openraft::BasicNode>, Vec<u8>);
        let Some((meta, body)) = self.read_value::<Stored>(KEY_SNAPSHOT)? else { return Ok(None) };
        let data = self.with_history(body)?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(data) }))
    }
}
