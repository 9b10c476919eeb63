//! ConsumeQueue: per topic and queue id, a dense array of 24-byte entries, in fixed-size files
//! `consumequeue/{topic}/{queueId}/{20-digit start byte offset}`.
//!
//! ```text
//! entry n at byte n*24:  CommitLog position i64 | record size i32 | tags code i64 | record crc u32
//! ```
//!
//! RocketMQ's entry (reference §3.8) is the first 20 bytes; the crc is ours. It is the CRC32 of
//! the record as the CommitLog stores it ([`record_crc`]), so a pull checks each record it
//! returns over exactly its own bytes, not the whole Raft entry around it. Files of the 20-byte
//! format are rebuilt from the CommitLog on open (see `Dispatcher::open`).
//!
//! Invariants: queue offsets are dense (an append must be the next offset, or repeat an
//! existing entry exactly, which makes re-dispatch after a crash idempotent); a size of 0 marks
//! the end (no record is empty and no record sits at position 0, so a zeroed entry is never
//! valid); `min` only moves forward (retention).

use std::ops::Range;
use std::sync::Arc;

use crate::checkpoint::RecordFile;
use crate::error::{IoContext, StoreError, StoreResult};
use crate::io::{join, Storage, StorageFile};
use crate::types::{offset_file_name, parse_offset_file_name, CommitLogOffset, QueueOffset};

/// Bytes per entry.
pub const CQ_ENTRY_BYTES: u64 = 24;
const DIR: &str = "consumequeue";
/// The record file holding a queue's start offset, when it was started at one.
const BASE_FILE: &str = "base";

/// One ConsumeQueue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqEntry {
    pub position: CommitLogOffset,
    pub size: u32,
    /// Java hash of the TAGS property (0 without tags).
    pub tags_code: i64,
    /// [`record_crc`] of the record.
    pub crc: u32,
}

/// The crc a ConsumeQueue entry keeps of its record: CRC32 (IEEE) of the record's bytes as the
/// CommitLog stores them at `position`, that is with PHYSICALOFFSET set to `position` (the
/// CommitLog sets it on append), whatever `record` holds there.
pub fn record_crc(record: &[u8], position: CommitLogOffset) -> u32 {
    use rocketraft_protocol::message::PHYSICAL_OFFSET_POS as AT;
    let mut h = crc32fast::Hasher::new();
    match (record.get(..AT), record.get(AT + 8..)) {
        (Some(before), Some(after)) => {
            h.update(before);
            h.update(&(position.0 as i64).to_be_bytes());
            h.update(after);
        }
        // Too short to be a record: no stored record matches this.
        _ => h.update(record),
    }
    h.finalize()
}

impl CqEntry {
    fn encode(&self) -> [u8; CQ_ENTRY_BYTES as usize] {
        let mut b = [0u8; CQ_ENTRY_BYTES as usize];
        b[0..8].copy_from_slice(&(self.position.0 as i64).to_be_bytes());
        b[8..12].copy_from_slice(&(self.size as i32).to_be_bytes());
        b[12..20].copy_from_slice(&self.tags_code.to_be_bytes());
        b[20..24].copy_from_slice(&self.crc.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<CqEntry> {
        let position = i64::from_be_bytes(b[0..8].try_into().ok()?);
        let size = i32::from_be_bytes(b[8..12].try_into().ok()?);
        let tags_code = i64::from_be_bytes(b[12..20].try_into().ok()?);
        let crc = u32::from_be_bytes(b[20..24].try_into().ok()?);
        (size > 0 && position > 0).then_some(CqEntry {
            position: CommitLogOffset(position as u64),
            size: size as u32,
            tags_code,
            crc,
        })
    }
}

/// ConsumeQueue settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumeQueueConfig {
    /// Entries per file. Default 300,000 (RocketMQ's 6,000,000-byte files).
    pub entries_per_file: u64,
}

impl Default for ConsumeQueueConfig {
    fn default() -> Self {
        ConsumeQueueConfig { entries_per_file: 300_000 }
    }
}

/// The directory of one queue.
///
/// The mapping cannot leave `consumequeue/`: the topic must pass `names::check_topic` (one path
/// component of `[A-Za-z0-9%|_-]`, no `/` or `.`) and the queue id must not be negative.
pub fn queue_dir(topic: &str, queue_id: i32) -> StoreResult<String> {
    rocketraft_protocol::names::check_topic(topic)
        .map_err(|e| StoreError::BadQueueName { topic: topic.to_owned(), reason: e.to_string() })?;
    if queue_id < 0 {
        return Err(StoreError::BadQueueName {
            topic: topic.to_owned(),
            reason: format!("queue id {queue_id} is negative"),
        });
    }
    Ok(join(&join(DIR, topic), &queue_id.to_string()))
}

/// One topic queue.
pub struct ConsumeQueue<S: Storage> {
    storage: S,
    dir: String,
    topic: String,
    queue_id: i32,
    file_bytes: u64,
    /// (start byte offset, file), ascending and contiguous.
    files: Vec<(u64, Arc<S::File>)>,
    min: QueueOffset,
    max: QueueOffset,
    dirty: Option<Range<u64>>,
    /// Where the queue starts when it was started empty at an offset (a replica that reset to
    /// a snapshot), persisted in `base`.
    base: Option<RecordFile<S>>,
}

impl<S: Storage> ConsumeQueue<S> {
    /// Opens a queue (empty if it has no files) and finds its end by scanning the last file.
    pub fn open(
        storage: S,
        topic: &str,
        queue_id: i32,
        config: &ConsumeQueueConfig,
    ) -> StoreResult<Self> {
        let dir = queue_dir(topic, queue_id)?;
        let file_bytes = config.entries_per_file * CQ_ENTRY_BYTES;
        let mut starts: Vec<u64> = storage
            .list(&dir)
            .doing(|| format!("listing {dir}"))?
            .iter()
            .filter_map(|n| parse_offset_file_name(n))
            .collect();
        starts.sort_unstable();
        let mut files = Vec::new();
        for start in starts {
            let path = join(&dir, &offset_file_name(start));
            let f = storage.open(&path).doing(|| format!("opening {path}"))?;
            if f.capacity() != file_bytes || start % file_bytes != 0 {
                return Err(StoreError::Config(format!(
                    "{path} does not match entries_per_file {}",
                    config.entries_per_file
                )));
            }
            if let Some((prev, _)) = files.last() {
                if start != prev + file_bytes {
                    return Err(StoreError::CorruptFile {
                        what: dir.clone(),
                        reason: format!("file {} is missing", offset_file_name(prev + file_bytes)),
                    });
                }
            }
            files.push((start, f));
        }
        let base_path = join(&dir, BASE_FILE);
        let (base, base_offset) = if storage
            .list(&dir)
            .doing(|| format!("listing {dir}"))?
            .iter()
            .any(|n| n == BASE_FILE)
        {
            let (file, record) = RecordFile::open(&storage, &base_path)?;
            let offset = record.and_then(|r| r.try_into().ok()).map(u64::from_be_bytes);
            (Some(file), offset)
        } else {
            (None, None)
        };
        let mut q = ConsumeQueue {
            storage,
            dir,
            topic: topic.to_owned(),
            queue_id,
            file_bytes,
            files,
            min: QueueOffset(0),
            max: QueueOffset(0),
            dirty: None,
            base,
        };
        q.min = q.first_written()?.max(QueueOffset(base_offset.unwrap_or(0)));
        q.max = q.scan_end()?.max(q.min);
        Ok(q)
    }

    /// The first written entry of the first file (a queue started at an offset has never
    /// written the entries before it), or where the files start if none is.
    fn first_written(&self) -> StoreResult<QueueOffset> {
        let Some((start, file)) = self.files.first() else { return Ok(QueueOffset(0)) };
        let first = start / CQ_ENTRY_BYTES;
        let n = self.file_bytes / CQ_ENTRY_BYTES;
        let chunk = 4096u64;
        let mut buf = vec![0u8; (chunk * CQ_ENTRY_BYTES) as usize];
        let mut i = 0;
        while i < n {
            let count = chunk.min(n - i);
            let bytes = &mut buf[..(count * CQ_ENTRY_BYTES) as usize];
            file.read_at(i * CQ_ENTRY_BYTES, bytes).doing(|| format!("scanning {}", self.dir))?;
            if let Some(k) =
                bytes.chunks(CQ_ENTRY_BYTES as usize).position(|e| CqEntry::decode(e).is_some())
            {
                return Ok(QueueOffset(first + i + k as u64));
            }
            i += count;
        }
        Ok(QueueOffset(first))
    }

    /// Starts an empty queue at `offset`: its next entry will be `offset` (a replica whose log
    /// was reset to a snapshot's cut continues the queue where the group left it). Durable.
    pub fn start_at(&mut self, offset: QueueOffset) -> StoreResult<()> {
        if self.max > self.min || !self.files.is_empty() {
            return Err(StoreError::Config(format!(
                "queue {}/{} is not empty",
                self.topic, self.queue_id
            )));
        }
        let file = match self.base.take() {
            Some(f) => f,
            None => RecordFile::open(&self.storage, &join(&self.dir, BASE_FILE))?.0,
        };
        let mut file = file;
        file.write(&offset.0.to_be_bytes())?;
        self.base = Some(file);
        self.min = offset;
        self.max = offset;
        Ok(())
    }

    fn scan_end(&self) -> StoreResult<QueueOffset> {
        let Some((start, file)) = self.files.last() else { return Ok(self.min) };
        // Binary search for the first empty entry of the last file (entries are written in
        // order, so the written ones form a prefix).
        let n = self.file_bytes / CQ_ENTRY_BYTES;
        let (mut lo, mut hi) = (0u64, n);
        let mut b = [0u8; CQ_ENTRY_BYTES as usize];
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            file.read_at(mid * CQ_ENTRY_BYTES, &mut b)
                .doing(|| format!("scanning {}", self.dir))?;
            if CqEntry::decode(&b).is_some() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(QueueOffset(start / CQ_ENTRY_BYTES + lo))
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn queue_id(&self) -> i32 {
        self.queue_id
    }

    /// The first readable offset.
    pub fn min_offset(&self) -> QueueOffset {
        self.min
    }

    /// The next offset to be written (RocketMQ's GET_MAX_OFFSET).
    pub fn max_offset(&self) -> QueueOffset {
        self.max
    }

    fn file_for(&self, byte: u64) -> Option<&(u64, Arc<S::File>)> {
        let first = self.files.first()?.0;
        let i = byte.checked_sub(first)? / self.file_bytes;
        self.files.get(i as usize)
    }

    /// Appends the entry for `offset`. Repeating an existing entry exactly is a no-op
    /// (re-dispatch); anything else out of order is an error.
    pub fn append(&mut self, offset: QueueOffset, entry: CqEntry) -> StoreResult<()> {
        if offset < self.max {
            return match self.get(offset)? {
                Some(existing) if existing == entry => Ok(()),
                _ if offset < self.min => Ok(()),
                _ => Err(StoreError::QueueGap {
                    topic: self.topic.clone(),
                    queue_id: self.queue_id,
                    expected: self.max,
                    got: offset,
                }),
            };
        }
        if offset > self.max {
            if self.max == self.min && self.files.is_empty() {
                // An empty queue may start anywhere (its earlier entries were purged).
                self.min = offset;
                self.max = offset;
            } else {
                return Err(StoreError::QueueGap {
                    topic: self.topic.clone(),
                    queue_id: self.queue_id,
                    expected: self.max,
                    got: offset,
                });
            }
        }
        let byte = offset.0 * CQ_ENTRY_BYTES;
        if self.file_for(byte).is_none() {
            let start = byte - byte % self.file_bytes;
            let path = join(&self.dir, &offset_file_name(start));
            self.storage.remove(&path).doing(|| format!("removing {path}"))?;
            let f =
                self.storage.create(&path, self.file_bytes).doing(|| format!("creating {path}"))?;
            self.files.push((start, f));
        }
        let (start, file) = self.file_for(byte).expect("created above");
        file.write_at(byte - start, &entry.encode()).doing(|| format!("writing {}", self.dir))?;
        self.dirty = Some(match self.dirty.take() {
            Some(d) => d.start.min(byte)..d.end.max(byte + CQ_ENTRY_BYTES),
            None => byte..byte + CQ_ENTRY_BYTES,
        });
        self.max = QueueOffset(offset.0 + 1);
        Ok(())
    }

    /// The entry at `offset`, if it is in `[min, max)`.
    pub fn get(&self, offset: QueueOffset) -> StoreResult<Option<CqEntry>> {
        Ok(self.range(offset, 1)?.into_iter().next())
    }

    /// Up to `max_count` entries from `offset`.
    pub fn range(&self, offset: QueueOffset, max_count: usize) -> StoreResult<Vec<CqEntry>> {
        if offset < self.min || offset >= self.max {
            return Ok(Vec::new());
        }
        let count = (self.max.0 - offset.0).min(max_count as u64);
        let mut out = Vec::with_capacity(count as usize);
        let mut byte = offset.0 * CQ_ENTRY_BYTES;
        let end = byte + count * CQ_ENTRY_BYTES;
        while byte < end {
            let (start, file) = self.file_for(byte).ok_or_else(|| StoreError::CorruptFile {
                what: self.dir.clone(),
                reason: format!("no file holds byte {byte}"),
            })?;
            let chunk_end = end.min(start + self.file_bytes);
            let mut buf = vec![0u8; (chunk_end - byte) as usize];
            file.read_at(byte - start, &mut buf).doing(|| format!("reading {}", self.dir))?;
            for raw in buf.chunks(CQ_ENTRY_BYTES as usize) {
                out.push(CqEntry::decode(raw).ok_or_else(|| StoreError::CorruptFile {
                    what: self.dir.clone(),
                    reason: format!("empty entry below the end at byte {byte}"),
                })?);
            }
            byte = chunk_end;
        }
        Ok(out)
    }

    /// Drops entries at and after `offset`.
    pub fn truncate_from(&mut self, offset: QueueOffset) -> StoreResult<()> {
        if offset < self.max {
            self.cut_at(offset.max(self.min))?;
        }
        Ok(())
    }

    /// Makes `offset` the end: deletes later files and zeroes (synced) the rest of the file
    /// holding it, so that neither a reopen nor a second crash brings anything back.
    fn cut_at(&mut self, offset: QueueOffset) -> StoreResult<()> {
        let byte = offset.0 * CQ_ENTRY_BYTES;
        while self
            .files
            .last()
            .is_some_and(|(start, _)| *start > byte || (*start == byte && offset > self.min))
        {
            let (start, _) = self.files.pop().expect("checked");
            let path = join(&self.dir, &offset_file_name(start));
            self.storage.remove(&path).doing(|| format!("removing {path}"))?;
        }
        if let Some((start, file)) = self.files.last() {
            let end = start + self.file_bytes;
            if byte < end {
                let zeros = vec![0u8; (end - byte) as usize];
                file.write_at(byte - start, &zeros).doing(|| format!("cutting {}", self.dir))?;
                file.sync_range(byte - start, end - byte)
                    .doing(|| format!("syncing {}", self.dir))?;
            }
        }
        self.max = offset;
        self.min = self.min.min(self.max);
        Ok(())
    }

    /// After a crash: keeps the entries that point before `dispatched_to` (the dispatch
    /// checkpoint: they were flushed before it was written, so they are durable and form a
    /// prefix) and drops the rest, which may have holes or torn entries. A torn entry whose
    /// size field did not make it reads as empty; one whose size did has its whole position,
    /// which lies at or after `dispatched_to`. So "valid and before `dispatched_to`" holds
    /// exactly for a prefix, and a binary search finds its end. Returns the new end.
    pub fn recover(&mut self, dispatched_to: CommitLogOffset) -> StoreResult<QueueOffset> {
        let Some((last_start, _)) = self.files.last() else { return Ok(self.max) };
        let files_end = (last_start + self.file_bytes) / CQ_ENTRY_BYTES;
        let (mut lo, mut hi) = (self.min.0, files_end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.read_raw(QueueOffset(mid))?.is_some_and(|e| e.position < dispatched_to) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        self.cut_at(QueueOffset(lo))?;
        Ok(self.max)
    }

    fn read_raw(&self, offset: QueueOffset) -> StoreResult<Option<CqEntry>> {
        let byte = offset.0 * CQ_ENTRY_BYTES;
        let Some((start, file)) = self.file_for(byte) else { return Ok(None) };
        let mut b = [0u8; CQ_ENTRY_BYTES as usize];
        file.read_at(byte - start, &mut b).doing(|| format!("reading {}", self.dir))?;
        Ok(CqEntry::decode(&b))
    }

    /// The first offset whose record is at or after `log_start` (`max` if none): where a reader
    /// goes when retention has removed the records before it but this queue is not trimmed yet.
    pub fn first_at_or_after(&self, log_start: CommitLogOffset) -> StoreResult<QueueOffset> {
        // Entries point into the log in order: binary search the first one still in it.
        let (mut lo, mut hi) = (self.min.0, self.max.0);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(QueueOffset(mid))? {
                Some(e) if e.position < log_start => lo = mid + 1,
                _ => hi = mid,
            }
        }
        Ok(QueueOffset(lo))
    }

    /// Moves `min` to the first entry whose record is at or after `log_start` (retention), and
    /// deletes files that hold only entries before it.
    pub fn purge_before(&mut self, log_start: CommitLogOffset) -> StoreResult<QueueOffset> {
        let lo = self.first_at_or_after(log_start)?.0;
        self.min = QueueOffset(lo);
        let keep_from = lo * CQ_ENTRY_BYTES;
        while self.files.len() > 1 && self.files[0].0 + self.file_bytes <= keep_from {
            let (start, _) = self.files.remove(0);
            let path = join(&self.dir, &offset_file_name(start));
            self.storage.remove(&path).doing(|| format!("removing {path}"))?;
        }
        Ok(self.min)
    }

    /// The first offset whose record was stored at or after `timestamp_ms`; `max` if none.
    /// `store_time` reads a record's STORETIMESTAMP from the CommitLog.
    pub fn search_by_timestamp(
        &self,
        timestamp_ms: i64,
        mut store_time: impl FnMut(CqEntry) -> StoreResult<i64>,
    ) -> StoreResult<QueueOffset> {
        let (mut lo, mut hi) = (self.min.0, self.max.0);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let Some(e) = self.get(QueueOffset(mid))? else {
                // In [min, max) yet unreadable: the file is damaged, not a reason to panic.
                return Err(StoreError::CorruptFile {
                    what: self.dir.clone(),
                    reason: format!("no entry at offset {mid} of [{}, {})", self.min.0, self.max.0),
                });
            };
            if store_time(e)? < timestamp_ms {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(QueueOffset(lo))
    }

    /// Syncs what was written since the last flush.
    pub fn flush(&mut self) -> StoreResult<()> {
        let Some(dirty) = self.dirty.take() else { return Ok(()) };
        for (start, file) in &self.files {
            let (lo, hi) = (dirty.start.max(*start), dirty.end.min(start + self.file_bytes));
            if lo < hi {
                file.sync_range(lo - start, hi - lo).doing(|| format!("syncing {}", self.dir))?;
            }
        }
        Ok(())
    }
}

/// Every (topic, queue id) that has a directory under `consumequeue/`.
pub fn list_queues<S: Storage>(storage: &S) -> StoreResult<Vec<(String, i32)>> {
    let mut out = Vec::new();
    for topic in storage.list(DIR).doing(|| "listing consumequeue".into())? {
        if let Err(e) = rocketraft_protocol::names::check_topic(&topic) {
            // Not ours (no version of the broker writes such a directory): leave it alone.
            tracing::warn!(dir = %topic, error = %e, "ignoring a directory under consumequeue/");
            continue;
        }
        for q in storage.list(&join(DIR, &topic)).doing(|| format!("listing {topic}"))? {
            if let Ok(id) = q.parse::<i32>() {
                out.push((topic.clone(), id));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::sim::SimStorage;

    fn e(pos: u64) -> CqEntry {
        CqEntry { position: CommitLogOffset(pos), size: 100, tags_code: pos as i64 * 7, crc: 9 }
    }

    fn small() -> ConsumeQueueConfig {
        ConsumeQueueConfig { entries_per_file: 4 }
    }

    #[test]
    fn a_queue_directory_never_leaves_consumequeue() {
        assert_eq!(queue_dir("%RETRY%cg", 3).unwrap(), "consumequeue/%RETRY%cg/3");
        for hostile in ["../x", "..", "a/b", "/abs", "%RETRY%../../etc", "", "a\0b", "."] {
            let e = queue_dir(hostile, 0).unwrap_err();
            assert!(matches!(e, StoreError::BadQueueName { .. }), "{hostile:?}: {e}");
        }
        assert!(queue_dir("T", -1).is_err());
        let s = SimStorage::new();
        assert!(ConsumeQueue::open(s.clone(), "../../outside", 0, &small()).is_err());
        assert!(s.list("").unwrap().iter().all(|n| n != "outside"));
    }

    #[test]
    fn dense_appends_across_files_and_reopen() {
        let s = SimStorage::new();
        let mut q = ConsumeQueue::open(s.clone(), "T", 1, &small()).unwrap();
        for i in 0..10 {
            q.append(QueueOffset(i), e(100 + i * 100)).unwrap();
        }
        assert_eq!(q.max_offset(), QueueOffset(10));
        assert_eq!(
            q.range(QueueOffset(3), 4).unwrap(),
            (3..7).map(|i| e(100 + i * 100)).collect::<Vec<_>>()
        );
        assert!(q.range(QueueOffset(10), 4).unwrap().is_empty());
        // Re-dispatch of an existing entry is a no-op; a different one or a gap is an error.
        q.append(QueueOffset(4), e(500)).unwrap();
        assert!(matches!(q.append(QueueOffset(4), e(999)), Err(StoreError::QueueGap { .. })));
        assert!(matches!(q.append(QueueOffset(12), e(999)), Err(StoreError::QueueGap { .. })));
        let q2 = ConsumeQueue::open(s.clone(), "T", 1, &small()).unwrap();
        assert_eq!((q2.min_offset(), q2.max_offset()), (QueueOffset(0), QueueOffset(10)));
        assert_eq!(list_queues(&s).unwrap(), vec![("T".to_owned(), 1)]);
    }

    #[test]
    fn truncate_purge_and_search() {
        let s = SimStorage::new();
        let mut q = ConsumeQueue::open(s.clone(), "T", 0, &small()).unwrap();
        for i in 0..10 {
            q.append(QueueOffset(i), e(100 + i * 100)).unwrap();
        }
        q.truncate_from(QueueOffset(5)).unwrap();
        assert_eq!(q.max_offset(), QueueOffset(5));
        let reopened = ConsumeQueue::open(s.clone(), "T", 0, &small()).unwrap();
        assert_eq!(reopened.max_offset(), QueueOffset(5));
        assert_eq!(q.purge_before(CommitLogOffset(450)).unwrap(), QueueOffset(4));
        assert!(q.get(QueueOffset(3)).unwrap().is_none());
        assert_eq!(s.list(&queue_dir("T", 0).unwrap()).unwrap().len(), 1, "file 0..4 deleted");
        // store time = position; find the first at or after 480 -> offset 4 (position 500)
        let found = q.search_by_timestamp(480, |e| Ok(e.position.0 as i64)).unwrap();
        assert_eq!(found, QueueOffset(4));
        assert_eq!(
            q.search_by_timestamp(10_000, |e| Ok(e.position.0 as i64)).unwrap(),
            QueueOffset(5)
        );
    }

    /// Entries before the dispatch checkpoint were synced; after a power loss the rest may be
    /// missing, present or torn in any mix. Recovery keeps exactly the synced prefix.
    #[test]
    fn recovery_keeps_the_synced_prefix_whatever_the_power_loss_kept() {
        use crate::io::sim::RandomPowerLoss;
        for seed in 1..200 {
            let s = SimStorage::new();
            let mut q = ConsumeQueue::open(s.clone(), "T", 0, &small()).unwrap();
            for i in 0..10 {
                q.append(QueueOffset(i), e(100 * (i + 1))).unwrap();
            }
            q.flush().unwrap();
            for i in 10..23 {
                q.append(QueueOffset(i), e(100 * (i + 1))).unwrap();
            }
            drop(q);
            s.power_loss(&mut RandomPowerLoss::new(seed));
            let mut q = ConsumeQueue::open(s.clone(), "T", 0, &small()).unwrap();
            // The checkpoint said: dispatched up to the record of entry 10 (position 1100).
            assert_eq!(q.recover(CommitLogOffset(1100)).unwrap(), QueueOffset(10), "seed {seed}");
            assert_eq!(q.range(QueueOffset(0), 100).unwrap().len(), 10);
            q.append(QueueOffset(10), e(1100)).unwrap();
            let again = ConsumeQueue::open(s.clone(), "T", 0, &small()).unwrap();
            assert_eq!(
                again.max_offset(),
                QueueOffset(11),
                "seed {seed}: nothing after the cut returns"
            );
        }
    }

    #[test]
    fn a_queue_started_at_an_offset_keeps_it_across_reopens() {
        let s = SimStorage::new();
        let mut q = ConsumeQueue::open(s.clone(), "T", 2, &small()).unwrap();
        q.start_at(QueueOffset(10)).unwrap();
        let mut q = ConsumeQueue::open(s.clone(), "T", 2, &small()).unwrap();
        assert_eq!((q.min_offset(), q.max_offset()), (QueueOffset(10), QueueOffset(10)));
        assert!(matches!(
            q.append(QueueOffset(9), e(900)),
            Err(StoreError::QueueGap { .. }) | Ok(())
        ));
        q.append(QueueOffset(10), e(1000)).unwrap();
        q.append(QueueOffset(11), e(1100)).unwrap();
        let q = ConsumeQueue::open(s.clone(), "T", 2, &small()).unwrap();
        assert_eq!(
            (q.min_offset(), q.max_offset()),
            (QueueOffset(10), QueueOffset(12)),
            "min is the first written entry, not the file start"
        );
        assert_eq!(q.range(QueueOffset(10), 5).unwrap().len(), 2);
        assert!(q.range(QueueOffset(8), 5).unwrap().is_empty());
    }
}
