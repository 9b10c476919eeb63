//! Dispatch: turning committed CommitLog entries into ConsumeQueue and IndexFile entries.
//!
//! The Raft state machine calls [`Dispatcher::dispatch`] with each committed entry and its
//! position in the CommitLog; [`Dispatcher::flush`] makes the queues and indexes durable and
//! then records how far dispatch got in the `checkpoint` file. After a crash,
//! [`Dispatcher::open`] drops queue entries and index files past that point and says where to
//! dispatch again from; re-dispatching an entry that is already there changes nothing. So the
//! queues and indexes are a pure function of the committed log: rebuilding them from the
//! CommitLog gives identical files.
//!
//! What is dispatched (as RocketMQ's `CommitLogDispatcher`s do): every record except
//! transaction half messages (PREPARED) and rollbacks goes to its topic queue; every KEYS token
//! and the UNIQ_KEY of every record except rollbacks goes to the index as `topic#key`.

use std::collections::BTreeMap;

use rocketraft_protocol::message::{property, split_keys, tags_code, RecordView};
use rocketraft_protocol::names;
use rocketraft_protocol::sysflag::message as msgflag;

use crate::checkpoint::RecordFile;
use crate::commitlog::{CommitLog, LogCut};
use crate::consumequeue::{list_queues, record_crc, ConsumeQueue, ConsumeQueueConfig, CqEntry};
use crate::entry::{EntryKind, LogEntry, ENTRY_HEADER_BYTES};
use crate::error::{StoreError, StoreResult};
use crate::indexfile::{IndexConfig, IndexService};
use crate::io::Storage;
use crate::types::{CommitLogOffset, QueueOffset, RaftIndex};

const CHECKPOINT: &str = "checkpoint";
/// The ConsumeQueue format the checkpoint vouches for: 2, the 24-byte entry with a record crc.
/// A checkpoint without it (16 bytes) comes from the 20-byte format, whose queues are rebuilt.
const QUEUE_FORMAT: u32 = 2;

/// Sizes of the derived files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DispatchConfig {
    pub consume_queue: ConsumeQueueConfig,
    pub index: IndexConfig,
}

/// A message that became visible: long-polling pulls on its queue can be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: QueueOffset,
    /// The parked record it was moved from (its `RR_MOVED_FROM` property), if the broker
    /// moved it out of a delay-level or timer queue.
    pub moved_from: Option<QueuePlace>,
}

/// A place in a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePlace {
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: QueueOffset,
}

impl QueuePlace {
    /// Reads `<topic>:<queue id>:<queue offset>`.
    pub fn parse(s: &str) -> Option<QueuePlace> {
        let mut parts = s.rsplitn(3, ':');
        let offset = parts.next()?.parse().ok()?;
        let queue_id = parts.next()?.parse().ok()?;
        let topic = parts.next()?;
        (!topic.is_empty()).then(|| QueuePlace {
            topic: topic.to_owned(),
            queue_id,
            queue_offset: QueueOffset(offset),
        })
    }
}

impl std::fmt::Display for QueuePlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.topic, self.queue_id, self.queue_offset.0)
    }
}

/// The records of `entry` that the broker moved out of a parked queue, as arrivals.
fn moved_copies(entry: &LogEntry) -> StoreResult<Vec<Arrival>> {
    let mut out = Vec::new();
    if entry.kind != EntryKind::Messages {
        return Ok(out);
    }
    let mut at = 0usize;
    while at < entry.payload.len() {
        let view = RecordView::decode(&entry.payload[at..])
            .map_err(|e| StoreError::BadPayload { reason: e.to_string() })?;
        if let Some(from) = view.property(property::MOVED_FROM).and_then(QueuePlace::parse) {
            out.push(Arrival {
                topic: view.topic.to_owned(),
                queue_id: view.queue_id,
                queue_offset: QueueOffset(u64::try_from(view.queue_offset).unwrap_or(0)),
                moved_from: Some(from),
            });
        }
        at += view.total_size;
    }
    Ok(out)
}

/// A record's ConsumeQueue tag code: the hash of its tags, or for a record parked in a
/// delay-level or timer queue the time it is due to move on (its `TIMER_OUT_MS`), as
/// RocketMQ's schedule queues hold it.
fn queue_tags_code(r: &RecordView<'_>) -> i64 {
    if r.topic == names::SCHEDULE_TOPIC || r.topic == names::TIMER_TOPIC {
        if let Some(due) = r.property(property::TIMER_OUT_MS).and_then(|v| v.parse().ok()) {
            return due;
        }
    }
    tags_code(r.property(property::TAGS))
}

/// ConsumeQueues and the IndexFiles of one replica, and how far they are built.
pub struct Dispatcher<S: Storage> {
    storage: S,
    config: DispatchConfig,
    queues: BTreeMap<(String, i32), ConsumeQueue<S>>,
    index: IndexService<S>,
    checkpoint: RecordFile<S>,
    /// The next entry to dispatch and where it is.
    next: LogCut,
    /// Records before this position are already in the index (recovery re-dispatches whole
    /// entries from before it).
    index_from: CommitLogOffset,
    /// The newest store timestamp of a record dispatched since open (0: none yet).
    newest_stamp: i64,
}

impl<S: Storage + Clone> Dispatcher<S> {
    /// Opens the queues and indexes and undoes whatever was dispatched after the checkpoint.
    /// The caller must dispatch committed entries again from [`Dispatcher::next`].
    pub fn open(storage: S, config: DispatchConfig, log: &CommitLog<S>) -> StoreResult<Self> {
        let (checkpoint, record) = RecordFile::open(&storage, CHECKPOINT)?;
        let cut_of = |r: &[u8]| LogCut {
            next_index: RaftIndex(u64::from_be_bytes(r[0..8].try_into().unwrap_or_default())),
            position: CommitLogOffset(u64::from_be_bytes(r[8..16].try_into().unwrap_or_default())),
            prev_crc: 0,
        };
        let format = record
            .as_ref()
            .and_then(|r| r.get(16..20))
            .map(|f| u32::from_be_bytes(f.try_into().unwrap_or_default()));
        let mut saved = record.as_deref().filter(|r| r.len() >= 16).map(cut_of);
        // Queues of another format (or whose format no checkpoint vouches for) are rebuilt
        // from the log: they are a function of it. The index keeps what it has.
        let mut index_from_saved = None;
        if format != Some(QUEUE_FORMAT) && !list_queues(&storage)?.is_empty() {
            tracing::warn!(
                format = ?format,
                "consume queues of an older format: rebuilding them from the CommitLog"
            );
            storage
                .remove_dir_all("consumequeue")
                .map_err(|e| StoreError::Io { doing: "removing consumequeue".into(), source: e })?;
            index_from_saved = saved.map(|c| c.position);
            saved = None;
        }
        let mut queues = BTreeMap::new();
        for (topic, id) in list_queues(&storage)? {
            let q = ConsumeQueue::open(storage.clone(), &topic, id, &config.consume_queue)?;
            queues.insert((topic, id), q);
        }
        let mut index = IndexService::open(storage.clone(), config.index.clone())?;
        // Nothing before the log's start can be dispatched again: start there at the earliest.
        let mut next = saved.unwrap_or(log.start());
        if next.next_index < log.start().next_index {
            next = log.start();
        }
        // Nor past its end: a power loss can take unsynced entries from the log (async flush)
        // after the queues recorded them. What they recorded for the lost entries goes (the
        // entries at those positions will be others), all before is dispatched.
        if next.next_index > log.end().next_index || next.position > log.end().position {
            next = log.end();
        }
        for q in queues.values_mut() {
            q.recover(next.position)?;
            // Entries that point before the log's start were purged with it.
            q.purge_before(log.start().position)?;
        }
        // Rebuilding the queues: records before the old checkpoint are in the index already.
        let mut index_from = index_from_saved
            .map_or(next.position, |p| p.min(log.end().position).max(next.position));
        let dropped = index.truncate_from(index_from)?;
        let damaged = index.take_rebuild();
        let rebuild = match (dropped, damaged) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(rebuild) = rebuild.filter(|r| *r < index_from) {
            // Re-dispatch from the entry holding the first record the index lost; records
            // before `rebuild` in it are indexed already.
            let rebuild = rebuild.max(log.start().position);
            if rebuild >= next.position {
                index_from = rebuild;
            } else if rebuild < log.end().position {
                let meta = log.entry_containing(rebuild)?;
                next = LogCut { next_index: meta.index, position: meta.position, prev_crc: 0 };
                index_from = rebuild;
            }
        }
        Ok(Dispatcher {
            storage,
            config,
            queues,
            index,
            checkpoint,
            next,
            index_from,
            newest_stamp: 0,
        })
    }

    /// The next entry to dispatch.
    pub fn next(&self) -> LogCut {
        self.next
    }

    /// The newest store timestamp of the records dispatched since open; 0 if none was.
    pub fn newest_store_timestamp(&self) -> i64 {
        self.newest_stamp
    }

    /// Dispatches one committed entry stored at `position`. Entries before [`Dispatcher::next`]
    /// are skipped (dispatched already). Entries without messages need not be passed at all:
    /// the caller may skip them, so indexes may jump forward.
    pub fn dispatch(
        &mut self,
        position: CommitLogOffset,
        entry: &LogEntry,
    ) -> StoreResult<Vec<Arrival>> {
        if entry.index < self.next.next_index {
            // Dispatched already (the queues were synced, then a crash lost the caller's own
            // record of applying it). The queues are right; what the caller derives from the
            // records (a moved copy's origin: the progress of a parked queue) it must derive
            // again, so those records are reported.
            return moved_copies(entry);
        }
        let mut arrivals = Vec::new();
        if entry.kind == EntryKind::Messages {
            let payload_at = position.0 + ENTRY_HEADER_BYTES as u64;
            let mut at = 0usize;
            while at < entry.payload.len() {
                let view = RecordView::decode(&entry.payload[at..])
                    .map_err(|e| StoreError::BadPayload { reason: e.to_string() })?;
                let record_pos = CommitLogOffset(payload_at + at as u64);
                let raw = &entry.payload[at..at + view.total_size];
                self.newest_stamp = self.newest_stamp.max(view.store_timestamp);
                self.dispatch_record(&view, raw, record_pos, &mut arrivals)?;
                at += view.total_size;
            }
        }
        self.next = LogCut {
            next_index: entry.index.next(),
            position: CommitLogOffset(position.0 + entry.stored_len() as u64),
            prev_crc: 0,
        };
        Ok(arrivals)
    }

    fn dispatch_record(
        &mut self,
        r: &RecordView<'_>,
        raw: &[u8],
        pos: CommitLogOffset,
        arrivals: &mut Vec<Arrival>,
    ) -> StoreResult<()> {
        if let Err(reason) = crate::admit::check_record(r) {
            // The leader checks every record before proposing it: reaching here is a bug.
            debug_assert!(false, "committed record at {pos} cannot be indexed: {reason}");
            return Err(StoreError::Unindexable { position: pos, reason });
        }
        let tran = msgflag::transaction_value(r.sys_flag);
        if crate::admit::takes_queue_offset(r.sys_flag) {
            let key = (r.topic.to_owned(), r.queue_id);
            if !self.queues.contains_key(&key) {
                let q = ConsumeQueue::open(
                    self.storage.clone(),
                    r.topic,
                    r.queue_id,
                    &self.config.consume_queue,
                )?;
                self.queues.insert(key.clone(), q);
            }
            let q = self.queues.get_mut(&key).expect("inserted above");
            let offset =
                QueueOffset(u64::try_from(r.queue_offset).map_err(|_| StoreError::BadPayload {
                    reason: format!("negative queue offset {}", r.queue_offset),
                })?);
            let entry = CqEntry {
                position: pos,
                size: r.total_size as u32,
                tags_code: queue_tags_code(r),
                crc: record_crc(raw, pos),
            };
            q.append(offset, entry)?;
            let moved_from = r.property(property::MOVED_FROM).and_then(QueuePlace::parse);
            arrivals.push(Arrival {
                topic: key.0,
                queue_id: key.1,
                queue_offset: offset,
                moved_from,
            });
        }
        if tran != msgflag::TRANSACTION_ROLLBACK && pos >= self.index_from {
            if let Some(keys) = r.property(property::KEYS) {
                for k in split_keys(keys) {
                    self.index.put(r.topic, k, pos, r.store_timestamp)?;
                }
            }
            if let Some(uniq) = r.property(property::UNIQ_KEY) {
                self.index.put(r.topic, uniq, pos, r.store_timestamp)?;
            }
        }
        Ok(())
    }

    /// Makes queues and indexes durable, then records the progress.
    pub fn flush(&mut self) -> StoreResult<LogCut> {
        for q in self.queues.values_mut() {
            q.flush()?;
        }
        self.index.flush()?;
        let mut rec = Vec::with_capacity(20);
        rec.extend_from_slice(&self.next.next_index.0.to_be_bytes());
        rec.extend_from_slice(&self.next.position.0.to_be_bytes());
        rec.extend_from_slice(&QUEUE_FORMAT.to_be_bytes());
        self.checkpoint.write(&rec)?;
        Ok(self.next)
    }

    /// Discards every queue and index file and starts dispatch again at `cut` (a follower
    /// whose log was reset to a snapshot's cut).
    pub fn reset(&mut self, cut: LogCut) -> StoreResult<LogCut> {
        use crate::error::IoContext;
        self.queues.clear();
        for dir in ["consumequeue", "index"] {
            self.storage.remove_dir_all(dir).doing(|| format!("removing {dir}"))?;
        }
        self.index = IndexService::open(self.storage.clone(), self.config.index.clone())?;
        self.next = cut;
        self.index_from = cut.position;
        self.flush()
    }

    /// Starts an empty queue at `next_offset` (after [`Dispatcher::reset`]: the queue continues
    /// where the group's snapshot says it was).
    pub fn seed_queue(
        &mut self,
        topic: &str,
        queue_id: i32,
        next_offset: QueueOffset,
    ) -> StoreResult<()> {
        let mut q =
            ConsumeQueue::open(self.storage.clone(), topic, queue_id, &self.config.consume_queue)?;
        q.start_at(next_offset)?;
        self.queues.insert((topic.to_owned(), queue_id), q);
        Ok(())
    }

    /// One queue, if it exists.
    pub fn queue(&self, topic: &str, queue_id: i32) -> Option<&ConsumeQueue<S>> {
        self.queues.get(&(topic.to_owned(), queue_id))
    }

    /// Every queue, by (topic, queue id).
    pub fn queues(&self) -> impl Iterator<Item = (&(String, i32), &ConsumeQueue<S>)> {
        self.queues.iter()
    }

    pub fn index(&self) -> &IndexService<S> {
        &self.index
    }

    /// Drops queue entries and index files that point only before `log_start` (retention).
    pub fn purge_before(&mut self, log_start: CommitLogOffset) -> StoreResult<()> {
        for q in self.queues.values_mut() {
            q.purge_before(log_start)?;
        }
        self.index.purge_before(log_start)
    }
}
