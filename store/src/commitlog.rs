//! The CommitLog: the Raft log of a broker group replica, in fixed-size segment files of
//! framed entries ([`crate::entry`]), named by their 20-digit start position.
//!
//! Files under `commitlog/`:
//! - `<base>`: a segment of `segment_size_bytes`; entries never straddle segments (a filler
//!   closes a segment whose tail is too short for the next entry);
//! - `<base>.idx`: the position index of that segment: slot k holds the u64 position of the
//!   entry with raft index `slot_base + k`, where `slot_base` is the index of the segment's
//!   first entry (so `entries(range)` and truncation are O(1) seeks);
//! - `checkpoint`: where the log starts and a point known durable ([`LogCut`]s).
//!
//! Invariants:
//! - Indexes are contiguous from `start` to `end`; truncation and purge only trim the ends. An
//!   append past the end restarts the log at that index (the start moves; see `append_one`).
//! - Every entry's `prev_crc` is the crc of the entry before it, so recovery cannot run from
//!   new entries into stale bytes left by a truncation or a torn write.
//! - The same entries appended from the same starting cut give byte-identical segments on
//!   every replica (records' PHYSICALOFFSET is set from the real position at append time).
//! - `flushed` never passes `end`, and nothing at or after a position is reported durable
//!   before a sync covering it returned.
//! - The checkpoint never claims a durable point beyond the current end: a truncation below
//!   it rewrites it first.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use rocketraft_protocol::message::RecordView;

use crate::checkpoint::RecordFile;
use crate::entry::{self, EntryMeta, Header, LogEntry, ENTRY_HEADER_BYTES, FILLER_MIN_BYTES};
use crate::error::{IoContext, StoreError, StoreResult};
use crate::io::{join, DiskUsage, Storage, StorageFile};
use crate::retention::{DiskBudget, DiskMark};
use crate::types::{offset_file_name, parse_offset_file_name, CommitLogOffset, RaftIndex};

const DIR: &str = "commitlog";
const CHECKPOINT: &str = "commitlog/checkpoint";
/// Written when a read finds the log damaged (see [`CommitLog::damage`]); while it exists the
/// log does not open.
pub const DAMAGE_MARKER: &str = "commitlog/DAMAGED";
const IDX_SUFFIX: &str = ".idx";
/// Slot base of a segment whose first entry is not known yet (recovery only).
const UNKNOWN_INDEX: RaftIndex = RaftIndex(u64::MAX);

/// Configuration of a CommitLog. Every replica of a group must use the same segment size:
/// positions (and so message ids and ConsumeQueue entries) depend on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitLogConfig {
    /// Size of each segment file. Default 1 GiB (RocketMQ's `mappedFileSizeCommitLog`).
    pub segment_size_bytes: u64,
    /// Rewrite the checkpoint after this many newly durable entries. Recovery scans (and
    /// checks) at most this many entries plus what was never flushed. Default 10,000.
    pub checkpoint_every_entries: u64,
}

impl Default for CommitLogConfig {
    fn default() -> Self {
        CommitLogConfig { segment_size_bytes: 1 << 30, checkpoint_every_entries: 10_000 }
    }
}

impl CommitLogConfig {
    fn validate(&self) -> StoreResult<()> {
        let min = 4096;
        if self.segment_size_bytes < min || self.segment_size_bytes > u32::MAX as u64 {
            return Err(StoreError::Config(format!(
                "segment_size_bytes must be between {min} and {} (got {})",
                u32::MAX,
                self.segment_size_bytes
            )));
        }
        Ok(())
    }

    /// The largest entry a segment can hold.
    pub fn entry_max_bytes(&self) -> usize {
        self.segment_size_bytes as usize
    }

    fn idx_capacity(&self) -> u64 {
        (self.segment_size_bytes / ENTRY_HEADER_BYTES as u64 + 1) * 8
    }
}

/// A point between two entries: the next index, where it goes, and the crc it must chain to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogCut {
    pub next_index: RaftIndex,
    pub position: CommitLogOffset,
    pub prev_crc: u32,
}

impl LogCut {
    const BYTES: usize = 20;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.next_index.0.to_be_bytes());
        out.extend_from_slice(&self.position.0.to_be_bytes());
        out.extend_from_slice(&self.prev_crc.to_be_bytes());
    }

    fn decode(b: &[u8]) -> LogCut {
        LogCut {
            next_index: RaftIndex(u64::from_be_bytes(b[0..8].try_into().unwrap_or_default())),
            position: CommitLogOffset(u64::from_be_bytes(b[8..16].try_into().unwrap_or_default())),
            prev_crc: u32::from_be_bytes(b[16..20].try_into().unwrap_or_default()),
        }
    }

    fn after(meta: &EntryMeta) -> LogCut {
        LogCut { next_index: meta.index.next(), position: meta.end(), prev_crc: meta.crc }
    }
}

struct Segment<F> {
    base: u64,
    data: Arc<F>,
    idx: Arc<F>,
    /// Raft index of slot 0.
    slot_base: RaftIndex,
}

/// What [`CommitLog::open`] found, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Entries checked by crc during the scan.
    pub entries_scanned: u64,
    /// Where the scan stopped: the end of the log.
    pub end: LogCut,
    /// Why it stopped there, if not at clean zeros.
    pub cut_reason: Option<String>,
    /// Segment files removed because they lay wholly before the start or after the end.
    pub segments_removed: usize,
}

/// A set of syncs to run outside the log's lock; see [`CommitLog::flush_job`].
pub struct FlushJob<F> {
    syncs: Vec<(Arc<F>, u64, u64)>,
    target: LogCut,
    epoch: u64,
}

impl<F: StorageFile> FlushJob<F> {
    /// Runs the syncs. An error means the disk refused: nothing in the job is durable.
    pub fn run(&self) -> StoreResult<()> {
        for (file, offset, len) in &self.syncs {
            file.sync_range(*offset, *len).doing(|| "syncing the CommitLog".to_owned())?;
        }
        Ok(())
    }

    /// The point that is durable once [`FlushJob::run`] succeeds.
    pub fn target(&self) -> LogCut {
        self.target
    }
}

/// The CommitLog of one replica. Mutations take `&mut self`; reads take `&self` and may run
/// concurrently behind a read lock.
pub struct CommitLog<S: Storage> {
    storage: S,
    config: CommitLogConfig,
    segments: Vec<Segment<S::File>>,
    start: LogCut,
    end: LogCut,
    last: Option<EntryMeta>,
    flushed: LogCut,
    checkpointed: LogCut,
    checkpoint: RecordFile<S>,
    /// Byte range written since the last flush job was taken.
    dirty: Option<Range<u64>>,
    /// Lowest index whose slot was written since the last checkpoint (synced with it).
    dirty_index_from: Option<RaftIndex>,
    /// Bumped by truncation and reset: flush jobs from an older epoch do not count.
    epoch: u64,
    /// What the disk takes before new writes are refused (see [`DiskBudget`]).
    disk: DiskBudget,
    /// Set by the first failed sync, never cleared (see [`StoreError::SyncFailed`]).
    sync_failed: Option<String>,
    scratch: Vec<u8>,
    io: IoCounts,
    /// Entries a reader still needs (a snapshot's history being sent): `purge_through` keeps
    /// every segment holding one at or after the lowest pinned index.
    pins: std::collections::BTreeMap<u64, RaftIndex>,
    next_pin: u64,
    /// The first damage a read found in bytes the log's own index points to (see
    /// [`CommitLog::damage`]). Set from `&self`: reads share the log.
    damage: std::sync::OnceLock<String>,
}

/// What a CommitLog has done since it was opened, for operators and benchmarks: how many
/// append calls (Raft rounds on this replica: one per append of a batch of entries), flush jobs
/// (group commits) and file range syncs (a job syncs the entry bytes and the index slots it
/// covers, per segment) it ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounts {
    pub appends: u64,
    pub entries: u64,
    pub flush_jobs: u64,
    pub file_syncs: u64,
}

impl<S: Storage> CommitLog<S> {
    /// What this log has written and synced since it was opened.
    pub fn io_counts(&self) -> IoCounts {
        self.io
    }

    /// Opens (or creates) the CommitLog in `storage` and recovers it: entries up to the
    /// checkpoint are trusted, the rest are scanned and checked by crc and chain; the log ends
    /// at the first entry that fails, and everything recovered is synced before it is
    /// reported durable.
    pub fn open(storage: S, config: CommitLogConfig) -> StoreResult<(Self, RecoveryReport)> {
        config.validate()?;
        let (checkpoint, record) = RecordFile::open(&storage, CHECKPOINT)?;
        let saved = record
            .filter(|r| r.len() == 2 * LogCut::BYTES)
            .map(|r| (LogCut::decode(&r[..LogCut::BYTES]), LogCut::decode(&r[LogCut::BYTES..])));
        let mut log = CommitLog {
            storage,
            config,
            segments: Vec::new(),
            start: LogCut::default(),
            end: LogCut::default(),
            last: None,
            flushed: LogCut::default(),
            checkpointed: LogCut::default(),
            checkpoint,
            dirty: None,
            dirty_index_from: None,
            epoch: 0,
            disk: DiskBudget::default(),
            sync_failed: None,
            scratch: Vec::new(),
            io: IoCounts::default(),
            pins: std::collections::BTreeMap::new(),
            next_pin: 0,
            damage: std::sync::OnceLock::new(),
        };
        if log.storage.open(DAMAGE_MARKER).is_ok() {
            let reason = match RecordFile::open(&log.storage, DAMAGE_MARKER) {
                Ok((_, Some(r))) => String::from_utf8_lossy(&r).into_owned(),
                _ => String::new(),
            };
            return Err(StoreError::Quarantined { reason, marker: DAMAGE_MARKER.to_owned() });
        }
        let report = log.recover(saved)?;
        Ok((log, report))
    }

    fn recover(&mut self, saved: Option<(LogCut, LogCut)>) -> StoreResult<RecoveryReport> {
        let mut report = RecoveryReport::default();
        let seg_size = self.config.segment_size_bytes;
        let names = self.storage.list(DIR).doing(|| "listing the CommitLog".to_owned())?;
        let mut bases: Vec<u64> = names.iter().filter_map(|n| parse_offset_file_name(n)).collect();
        bases.sort_unstable();

        let (mut start, trusted) = saved.unwrap_or_default();
        // Segments wholly before the start were purged; a crash can leave their files behind.
        let first_needed = start.position.0 - start.position.0 % seg_size;
        for &base in bases.iter().filter(|b| **b < first_needed) {
            self.remove_segment_files(base)?;
            report.segments_removed += 1;
        }
        bases.retain(|b| *b >= first_needed);
        for pair in bases.windows(2) {
            if pair[1] != pair[0] + seg_size {
                return Err(StoreError::CorruptFile {
                    what: "CommitLog".into(),
                    reason: format!(
                        "segment {} is missing between {} and {}",
                        offset_file_name(pair[0] + seg_size),
                        offset_file_name(pair[0]),
                        offset_file_name(pair[1])
                    ),
                });
            }
        }
        let mut scan_from = trusted;
        match bases.first() {
            None => {
                // Nothing on disk: the log is empty at its saved start.
                self.start = start;
                self.end = start;
                self.flushed = start;
                self.checkpointed = start;
                report.end = start;
                self.write_checkpoint()?;
                return Ok(report);
            }
            Some(&first) if saved.is_none() || first > start.position.0 => {
                // No checkpoint, or the files of the start were purged after it was written:
                // the log starts at the first entry of the first segment.
                start = self.first_entry_cut(first)?;
                scan_from = start;
            }
            Some(_) => {}
        }
        self.start = start;
        for &base in &bases {
            let known = (base <= start.position.0).then_some(start.next_index);
            let seg = self.open_segment(base, known)?;
            self.segments.push(seg);
        }
        if scan_from.next_index < start.next_index || scan_from.position < start.position {
            scan_from = start;
        }
        // Entries before `scan_from` are trusted; check that the last of them is where the
        // checkpoint says, or scan everything.
        self.end = scan_from;
        if scan_from != start && !self.cut_matches(scan_from) {
            tracing::warn!(
                "CommitLog checkpoint does not match the segments: scanning all of them"
            );
            scan_from = start;
            self.end = start;
        }
        let (end, last, scanned, reason) = self.scan(scan_from, start)?;
        if end.next_index < trusted.next_index && saved.is_some() {
            // The checkpoint says entries up to `trusted` were synced: a bad one below it is
            // damage, not a torn write. Cutting there would drop entries this replica
            // acknowledged (and it would go on voting with a shorter log): refuse to open, and
            // touch nothing, so the replica stays down until it is repaired.
            return Err(StoreError::Corrupt {
                position: end.position,
                reason: format!(
                    "entry {} fails its check ({}) below the checkpoint, which says entries up \
                     to {} were synced: synced data is damaged. The replica does not start (no \
                     vote, no lead); the rest of its group goes on. Keep the files for \
                     diagnosis; the replica can only rejoin empty through a membership change",
                    end.next_index,
                    reason.as_deref().unwrap_or("missing"),
                    trusted.next_index.0.saturating_sub(1),
                ),
            });
        }
        report.entries_scanned = scanned;
        report.cut_reason = reason;
        // Segments after the one holding the end hold nothing that chains: drop them.
        let end_seg = self.segment_slot(end.position.0);
        while self.segments.len() > end_seg + 1 {
            let seg = self.segments.pop().expect("checked length");
            self.remove_segment_files(seg.base)?;
            report.segments_removed += 1;
        }
        if let Some(seg) = self.segments.last_mut() {
            // The end segment numbers its slots from the next entry if it holds none yet.
            if seg.slot_base == UNKNOWN_INDEX || seg.base == end.position.0 {
                seg.slot_base = end.next_index;
            }
        }
        self.end = end;
        self.last = last;
        // What was read back may sit only in the page cache: make it durable before saying so.
        for seg in &self.segments {
            seg.data.sync_range(0, seg_size).doing(|| "syncing recovered segments".to_owned())?;
            seg.idx
                .sync_range(0, self.config.idx_capacity())
                .doing(|| "syncing recovered position index".to_owned())?;
        }
        self.flushed = end;
        self.write_checkpoint()?;
        report.end = end;
        if let Some(reason) = &report.cut_reason {
            tracing::warn!(end = %end.position, %reason, "CommitLog recovery cut the tail");
        }
        Ok(report)
    }

    /// Whether the entry before `cut` is on disk where `cut` says, with the crc it says.
    fn cut_matches(&self, cut: LogCut) -> bool {
        let Some(prev) = cut.next_index.0.checked_sub(1) else { return false };
        match self.entry_meta(RaftIndex(prev)) {
            Ok(meta) => {
                let bytes = self.read_raw(meta.position, meta.size as usize);
                meta.end() == cut.position
                    && meta.crc == cut.prev_crc
                    && bytes.is_ok_and(|b| entry::decode(&b, meta.position).is_ok())
            }
            Err(_) => false,
        }
    }

    /// The cut before the first entry of the segment at `base` (a log without checkpoint).
    fn first_entry_cut(&self, base: u64) -> StoreResult<LogCut> {
        let path = join(DIR, &offset_file_name(base));
        let data = self.storage.open_log(&path).doing(|| format!("opening {path}"))?;
        let mut header = [0u8; ENTRY_HEADER_BYTES];
        data.read_at(0, &mut header).doing(|| format!("reading {path}"))?;
        Ok(match entry::parse_header(&header) {
            Header::Entry { index, prev_crc, .. } => {
                LogCut { next_index: RaftIndex(index), position: CommitLogOffset(base), prev_crc }
            }
            _ => LogCut { next_index: RaftIndex(0), position: CommitLogOffset(base), prev_crc: 0 },
        })
    }

    /// Walks entries from `from`, checking crc, index and chain, and rewriting their slots.
    #[allow(clippy::type_complexity)]
    fn scan(
        &mut self,
        from: LogCut,
        start: LogCut,
    ) -> StoreResult<(LogCut, Option<EntryMeta>, u64, Option<String>)> {
        let seg_size = self.config.segment_size_bytes;
        let mut cut = from;
        let mut last = if from.next_index > start.next_index {
            Some(self.entry_meta(RaftIndex(from.next_index.0 - 1))?)
        } else {
            None
        };
        let mut scanned = 0;
        let mut buf = Vec::new();
        loop {
            let pos = cut.position.0;
            let slot = self.segment_slot(pos);
            let Some(seg) = self.segments.get(slot) else { return Ok((cut, last, scanned, None)) };
            let seg_end = seg.base + seg_size;
            let remaining = seg_end - pos;
            if remaining < FILLER_MIN_BYTES {
                cut.position = CommitLogOffset(seg_end);
                continue;
            }
            let mut header = [0u8; ENTRY_HEADER_BYTES];
            let n = (remaining as usize).min(ENTRY_HEADER_BYTES);
            seg.data.read_at(pos - seg.base, &mut header[..n]).doing(|| "scanning".into())?;
            let stop = |why: String| Ok((cut, last, scanned, Some(why)));
            match entry::parse_header(&header[..n]) {
                Header::Empty => return Ok((cut, last, scanned, None)),
                Header::Filler { size } if pos + u64::from(size) == seg_end => {
                    cut.position = CommitLogOffset(seg_end);
                }
                Header::Entry { size, index, prev_crc, .. } => {
                    if index != cut.next_index.0 {
                        return stop(format!("index {index} where {} was due", cut.next_index));
                    }
                    let chained = prev_crc == cut.prev_crc || (last.is_none() && cut == start);
                    if !chained {
                        return stop(format!("entry {index} does not chain to the one before"));
                    }
                    if pos + u64::from(size) > seg_end {
                        return stop(format!("entry {index} runs past its segment"));
                    }
                    buf.resize(size as usize, 0);
                    seg.data.read_at(pos - seg.base, &mut buf).doing(|| "scanning".into())?;
                    let meta = match entry::decode(&buf, cut.position) {
                        Ok((meta, _)) => meta,
                        Err(e) => return stop(e.to_string()),
                    };
                    self.write_slot(slot, meta.index, meta.position)?;
                    scanned += 1;
                    cut = LogCut::after(&meta);
                    last = Some(meta);
                }
                Header::Filler { .. } => {
                    return stop("filler does not reach its segment end".into())
                }
                Header::Invalid => return stop("torn or corrupt entry header".into()),
            }
        }
    }

    /// Opens a segment; its slot base is `known`, or the index of the entry at its start.
    fn open_segment(&self, base: u64, known: Option<RaftIndex>) -> StoreResult<Segment<S::File>> {
        let path = join(DIR, &offset_file_name(base));
        let data = self.storage.open_log(&path).doing(|| format!("opening {path}"))?;
        if data.capacity() != self.config.segment_size_bytes {
            return Err(StoreError::Config(format!(
                "segment {path} is {} bytes but segment_size_bytes is {}: every replica and \
                 restart must keep the size the log was created with",
                data.capacity(),
                self.config.segment_size_bytes
            )));
        }
        let idx_path = format!("{path}{IDX_SUFFIX}");
        let idx = match self.storage.open(&idx_path) {
            Ok(f) => f,
            Err(_) => self
                .storage
                .create(&idx_path, self.config.idx_capacity())
                .doing(|| format!("creating {idx_path}"))?,
        };
        let slot_base = match known {
            Some(i) => i,
            None => {
                // A later segment numbers its slots from the entry at its start.
                let mut header = [0u8; ENTRY_HEADER_BYTES];
                data.read_at(0, &mut header).doing(|| format!("reading {path}"))?;
                match entry::parse_header(&header) {
                    Header::Entry { index, .. } => RaftIndex(index),
                    _ => UNKNOWN_INDEX,
                }
            }
        };
        Ok(Segment { base, data, idx, slot_base })
    }

    fn create_segment(&mut self, base: u64, slot_base: RaftIndex) -> StoreResult<()> {
        let path = join(DIR, &offset_file_name(base));
        let idx_path = format!("{path}{IDX_SUFFIX}");
        // Leftovers of a truncated or reset log would hold stale bytes: start clean.
        self.storage.remove(&path).doing(|| format!("removing {path}"))?;
        self.storage.remove(&idx_path).doing(|| format!("removing {idx_path}"))?;
        let data = self
            .storage
            .create_log(&path, self.config.segment_size_bytes)
            .doing(|| format!("creating {path}"))?;
        let idx = self
            .storage
            .create(&idx_path, self.config.idx_capacity())
            .doing(|| format!("creating {idx_path}"))?;
        self.segments.push(Segment { base, data, idx, slot_base });
        Ok(())
    }

    fn remove_segment_files(&self, base: u64) -> StoreResult<()> {
        let path = join(DIR, &offset_file_name(base));
        self.storage.remove(&path).doing(|| format!("removing {path}"))?;
        let idx = format!("{path}{IDX_SUFFIX}");
        self.storage.remove(&idx).doing(|| format!("removing {idx}"))
    }

    /// Saves the start and the durable end. The slots of every entry it claims durable are
    /// synced first: recovery trusts them up to the checkpoint.
    fn write_checkpoint(&mut self) -> StoreResult<()> {
        self.sync_slots()?;
        let mut rec = Vec::with_capacity(2 * LogCut::BYTES);
        self.start.encode(&mut rec);
        self.flushed.encode(&mut rec);
        self.checkpoint.write(&rec)?;
        self.checkpointed = self.flushed;
        Ok(())
    }

    /// Index in `segments` of the segment holding `position` (may be one past the last).
    fn segment_slot(&self, position: u64) -> usize {
        match self.segments.first() {
            Some(first) if position >= first.base => {
                ((position - first.base) / self.config.segment_size_bytes) as usize
            }
            _ => usize::MAX,
        }
    }

    /// The segment that holds `position`, created (its first entry `index`) if there is none.
    fn segment_at(&mut self, position: u64, index: RaftIndex) -> StoreResult<usize> {
        let i = self.segment_slot(position);
        if i < self.segments.len() {
            return Ok(i);
        }
        self.create_segment(position - position % self.config.segment_size_bytes, index)?;
        Ok(self.segments.len() - 1)
    }

    fn segment_for_index(&self, index: RaftIndex) -> &Segment<S::File> {
        let i = self.segments.partition_point(|s| s.slot_base <= index);
        &self.segments[i.saturating_sub(1)]
    }

    fn write_slot(
        &self,
        seg: usize,
        index: RaftIndex,
        position: CommitLogOffset,
    ) -> StoreResult<()> {
        let s = &self.segments[seg];
        let at = (index.0 - s.slot_base.0) * 8;
        s.idx.write_at(at, &position.0.to_be_bytes()).doing(|| "writing the position index".into())
    }

    fn check_index(&self, index: RaftIndex) -> StoreResult<()> {
        if index < self.start.next_index || index >= self.end.next_index {
            return Err(StoreError::IndexOutOfRange {
                index,
                first: self.start.next_index,
                last: RaftIndex(self.end.next_index.0.wrapping_sub(1)),
            });
        }
        Ok(())
    }

    fn slot_position(&self, index: RaftIndex) -> StoreResult<CommitLogOffset> {
        self.check_index(index)?;
        let seg = self.segment_for_index(index);
        let mut b = [0u8; 8];
        seg.idx
            .read_at((index.0 - seg.slot_base.0) * 8, &mut b)
            .doing(|| "reading the position index".into())?;
        let pos = u64::from_be_bytes(b);
        if pos < seg.base || pos >= seg.base + self.config.segment_size_bytes {
            return Err(StoreError::Corrupt {
                position: CommitLogOffset(pos),
                reason: format!("position index slot of entry {index} points outside its segment"),
            });
        }
        Ok(CommitLogOffset(pos))
    }

    // -----------------------------------------------------------------------------------------
    // Reading

    /// The first entry's index (the start of the log; equal to `end().next_index` if empty).
    pub fn start(&self) -> LogCut {
        self.start
    }

    /// Where the next entry goes.
    pub fn end(&self) -> LogCut {
        self.end
    }

    /// The last entry, if the log has any.
    pub fn last(&self) -> Option<EntryMeta> {
        self.last
    }

    /// The point up to which everything is durable.
    pub fn flushed(&self) -> LogCut {
        self.flushed
    }

    /// The durable cut the checkpoint holds: recovery trusts the log up to it.
    pub fn checkpointed(&self) -> LogCut {
        self.checkpointed
    }

    pub fn config(&self) -> &CommitLogConfig {
        &self.config
    }

    /// The header fields of entry `index` (its crc is checked when its bytes are read).
    pub fn entry_meta(&self, index: RaftIndex) -> StoreResult<EntryMeta> {
        let pos = self.slot_position(index)?;
        let seg = &self.segments[self.segment_slot(pos.0)];
        let mut header = [0u8; ENTRY_HEADER_BYTES];
        seg.data
            .read_at(pos.0 - seg.base, &mut header)
            .doing(|| "reading an entry header".into())?;
        match entry::parse_header(&header) {
            Header::Entry { size, index: i, term, leader, kind, prev_crc, crc } if i == index.0 => {
                Ok(EntryMeta { index, term, leader, kind, position: pos, size, crc, prev_crc })
            }
            _ => Err(StoreError::Corrupt {
                position: pos,
                reason: format!("no header of entry {index}"),
            }),
        }
    }

    /// The cut just before entry `index` (`end()` for the next index to be written): where a
    /// snapshot taken after `index - 1` says the log continues, the end of entry `index - 1`.
    /// Not where entry `index` begins, if it is written already: an entry that did not fit its
    /// segment begins the next one, after a filler, and a peer copying the history up to the
    /// cut reads entries only.
    pub fn cut_before(&self, index: RaftIndex) -> StoreResult<LogCut> {
        if index == self.end.next_index {
            return Ok(self.end);
        }
        if index == self.start.next_index {
            return Ok(self.start);
        }
        match index.0.checked_sub(1) {
            Some(before) => Ok(LogCut::after(&self.entry_meta(RaftIndex(before))?)),
            // Entry 0 that does not start the log: not in it (the error says so).
            None => self.entry_meta(index).map(|m| LogCut {
                next_index: index,
                position: m.position,
                prev_crc: m.prev_crc,
            }),
        }
    }

    /// Entries `range` (end exclusive), each checked by crc. Bytes that fail a check are
    /// damage (see [`CommitLog::damage`]).
    pub fn entries(&self, range: Range<RaftIndex>) -> StoreResult<Vec<LogEntry>> {
        let read = self.entries_unchecked_damage(range);
        self.note_damage(read)
    }

    fn entries_unchecked_damage(&self, range: Range<RaftIndex>) -> StoreResult<Vec<LogEntry>> {
        if range.start >= range.end {
            return Ok(Vec::new());
        }
        self.check_index(range.start)?;
        self.check_index(RaftIndex(range.end.0 - 1))?;
        let mut out = Vec::with_capacity((range.end.0 - range.start.0) as usize);
        let mut index = range.start;
        let mut buf = Vec::new();
        while index < range.end {
            // Read a run of entries that share a segment in one read.
            let first = self.slot_position(index)?;
            let seg_i = self.segment_slot(first.0);
            let seg = &self.segments[seg_i];
            let seg_next =
                self.segments.get(seg_i + 1).map_or(self.end.next_index, |s| s.slot_base);
            let run_end = range.end.min(seg_next);
            let stop = if run_end == self.end.next_index {
                self.end.position
            } else if run_end < seg_next {
                self.slot_position(run_end)?
            } else {
                self.entry_meta(RaftIndex(run_end.0 - 1))?.end()
            };
            buf.resize((stop.0 - first.0) as usize, 0);
            seg.data.read_at(first.0 - seg.base, &mut buf).doing(|| "reading entries".into())?;
            let mut at = 0usize;
            while index < run_end {
                let pos = CommitLogOffset(first.0 + at as u64);
                let size = match entry::parse_header(&buf[at..]) {
                    Header::Entry { size, .. } if at + size as usize <= buf.len() => size as usize,
                    _ => {
                        return Err(StoreError::Corrupt {
                            position: pos,
                            reason: "bad entry header".into(),
                        })
                    }
                };
                let (meta, e) = entry::decode(&buf[at..at + size], pos)?;
                if meta.index != index {
                    return Err(StoreError::Corrupt {
                        position: pos,
                        reason: format!("found entry {} where {index} was due", meta.index),
                    });
                }
                out.push(e);
                at += size;
                index = index.next();
            }
        }
        Ok(out)
    }

    /// Raw bytes `[position, position + len)`, which must lie inside one entry's payload area.
    pub fn read_raw(&self, position: CommitLogOffset, len: usize) -> StoreResult<Vec<u8>> {
        self.check_position(position)?;
        let end = position.0 + len as u64;
        if end > self.end.position.0 {
            return Err(StoreError::PastEnd {
                position: CommitLogOffset(end),
                end: self.end.position,
            });
        }
        let seg = &self.segments[self.segment_slot(position.0)];
        if end > seg.base + self.config.segment_size_bytes {
            return Err(StoreError::Corrupt {
                position,
                reason: "read crosses a segment end".into(),
            });
        }
        let mut buf = vec![0u8; len];
        seg.data
            .read_at(position.0 - seg.base, &mut buf)
            .doing(|| "reading the CommitLog".into())?;
        Ok(buf)
    }

    /// The raw bytes of `[from, to)`, across segments (fillers included): what replicas compare
    /// to show their logs are byte-identical. `from` is clamped to the log's start.
    pub fn bytes_between(
        &self,
        from: CommitLogOffset,
        to: CommitLogOffset,
    ) -> StoreResult<Vec<u8>> {
        let seg = self.config.segment_size_bytes;
        let end = to.0.min(self.end.position.0);
        let mut at = from.0.max(self.start.position.0);
        let mut out = Vec::with_capacity(end.saturating_sub(at) as usize);
        while at < end {
            let stop = end.min(at - at % seg + seg);
            out.extend(self.read_raw(CommitLogOffset(at), (stop - at) as usize)?);
            at = stop;
        }
        Ok(out)
    }

    fn check_position(&self, position: CommitLogOffset) -> StoreResult<()> {
        if position < self.start.position {
            return Err(StoreError::Purged { position, first: self.start.position });
        }
        if position >= self.end.position {
            return Err(StoreError::PastEnd { position, end: self.end.position });
        }
        Ok(())
    }

    /// The entry holding `position`: binary search over its segment's position slots.
    pub fn entry_containing(&self, position: CommitLogOffset) -> StoreResult<EntryMeta> {
        self.check_position(position)?;
        let seg_i = self.segment_slot(position.0);
        let seg = &self.segments[seg_i];
        let first = seg.slot_base.max(self.start.next_index);
        let after = self.segments.get(seg_i + 1).map_or(self.end.next_index, |s| s.slot_base);
        let (mut lo, mut hi) = (first.0, after.0);
        // Find the last index whose position is <= `position`.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.slot_position(RaftIndex(mid))? <= position {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let meta = self.entry_meta(RaftIndex(lo))?;
        if position < meta.position || position >= meta.end() {
            return Err(StoreError::Corrupt {
                position,
                reason: "no entry holds this position".into(),
            });
        }
        Ok(meta)
    }

    /// Reads message records by `(position, size)`, one `Bytes` each. Each entry they live in
    /// is checked by crc where it lies (once per call, with no copy of the entry) and each
    /// record must decode whole at exactly that size and position: corrupt bytes are never
    /// served. Pulls use [`CommitLog::read_queue_records_into`], which checks each record on
    /// its own.
    pub fn read_records(&self, wanted: &[(CommitLogOffset, u32)]) -> StoreResult<Vec<Bytes>> {
        let mut out = Vec::with_capacity(wanted.len());
        self.visit_records(wanted, &mut |record| out.push(Bytes::copy_from_slice(record)))?;
        Ok(out)
    }

    /// Appends the records `entries` point to (a ConsumeQueue's entries) back to back to
    /// `out`: a pull response's body. Each record is checked against the crc its entry holds,
    /// over exactly its own bytes where they lie (no copy, and none of the Raft entry around
    /// it is read), and must decode at its size and position: corrupt bytes, in the record or
    /// in the queue entry, are never served. Only the records are copied, once. On an error
    /// `out` may hold some of the records.
    pub fn read_queue_records_into(
        &self,
        entries: &[crate::consumequeue::CqEntry],
        out: &mut Vec<u8>,
    ) -> StoreResult<()> {
        out.reserve(entries.iter().map(|e| e.size as usize).sum());
        for e in entries {
            let read = self.with_range(e.position, u64::from(e.size), &mut |record| {
                let computed = crate::consumequeue::record_crc(record, e.position);
                if computed != e.crc {
                    return Err(StoreError::Corrupt {
                        position: e.position,
                        reason: format!(
                            "record crc mismatch (queue says {:#010x}, computed {computed:#010x})",
                            e.crc
                        ),
                    });
                }
                check_record(record, e.position)?;
                out.extend_from_slice(record);
                Ok(())
            });
            if let Err(err @ StoreError::Corrupt { .. }) = read {
                // The record fails the queue's check: damage in the log if the entry around
                // it fails its own crc (otherwise the queue entry is what is wrong).
                if let Ok(meta) = self.entry_containing(e.position) {
                    self.check_entry(meta.index)?;
                }
                return Err(err);
            }
            read?;
        }
        Ok(())
    }

    /// Passes `read` through, noting it as damage if it failed a check of stored bytes
    /// ([`StoreError::Corrupt`]). Only for reads at positions the log's own index or a queue
    /// gives, never at one a client named (a msgId's offset may point anywhere).
    fn note_damage<T>(&self, read: StoreResult<T>) -> StoreResult<T> {
        if let Err(StoreError::Corrupt { position, reason }) = &read {
            let why =
                format!("entry bytes at CommitLog position {position} fail their check ({reason})");
            if self.damage.set(why.clone()).is_ok() {
                tracing::error!(damage = %why, "CommitLog damaged: quarantining this replica");
                let marked =
                    RecordFile::open(&self.storage, DAMAGE_MARKER).and_then(|(mut f, _)| {
                        let mut text = why.into_bytes();
                        text.truncate(400);
                        f.write(&text)
                    });
                if let Err(e) = marked {
                    tracing::error!(error = %e, "could not write the CommitLog's damage marker");
                }
            }
        }
        read
    }

    /// The damage a read found in this log's bytes (an entry failing its crc, a header that is
    /// not where the index says), if any. The log has then written its marker
    /// ([`DAMAGE_MARKER`]): it does not open again, and its replica must stop (no vote, no
    /// lead) until it is repaired.
    pub fn damage(&self) -> Option<&str> {
        self.damage.get().map(String::as_str)
    }

    /// Hands each wanted record, checked, to `each`, in order.
    fn visit_records(
        &self,
        wanted: &[(CommitLogOffset, u32)],
        each: &mut dyn FnMut(&[u8]),
    ) -> StoreResult<()> {
        let mut i = 0;
        while i < wanted.len() {
            let meta = self.entry_containing(wanted[i].0)?;
            // The run of wanted records in this entry: one read and one crc for all of them.
            let run =
                wanted[i..].iter().take_while(|(p, _)| *p >= meta.position && *p < meta.end());
            let run = &wanted[i..i + run.count()];
            i += run.len();
            self.with_entry(&meta, &mut |bytes| {
                entry::check(bytes, meta.position)?;
                for &(position, size) in run {
                    let from = (position.0 - meta.position.0) as usize;
                    let to = from + size as usize;
                    if from < ENTRY_HEADER_BYTES || to > bytes.len() {
                        return Err(StoreError::Corrupt {
                            position,
                            reason: "record outside its entry's payload".into(),
                        });
                    }
                    let record = &bytes[from..to];
                    check_record(record, position)?;
                    each(record);
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Runs `f` over the stored bytes of the entry `meta` names, where they lie.
    fn with_entry(
        &self,
        meta: &EntryMeta,
        f: &mut dyn FnMut(&[u8]) -> StoreResult<()>,
    ) -> StoreResult<()> {
        self.with_range(meta.position, u64::from(meta.size), f)
    }

    /// Runs `f` over the stored bytes of `[position, position + len)`, where they lie; the
    /// range must be in the log and in one segment.
    fn with_range(
        &self,
        position: CommitLogOffset,
        len: u64,
        f: &mut dyn FnMut(&[u8]) -> StoreResult<()>,
    ) -> StoreResult<()> {
        self.check_position(position)?;
        let end = position.0 + len;
        if end > self.end.position.0 {
            return Err(StoreError::PastEnd {
                position: CommitLogOffset(end),
                end: self.end.position,
            });
        }
        let seg = self.segments.get(self.segment_slot(position.0)).ok_or_else(|| {
            StoreError::Corrupt { position, reason: "no segment holds this position".into() }
        })?;
        if end > seg.base + self.config.segment_size_bytes {
            return Err(StoreError::Corrupt {
                position,
                reason: "read crosses a segment end".into(),
            });
        }
        let mut result = Ok(());
        seg.data
            .read_in_place(position.0 - seg.base, len as usize, &mut |bytes| result = f(bytes))
            .doing(|| "reading the CommitLog".into())?;
        result
    }

    // -----------------------------------------------------------------------------------------
    // Writing

    /// A measurement of the disk (by retention), begun when the log had taken `mark`
    /// ([`CommitLog::disk_mark`]): new writes are admitted until the disk, as measured plus
    /// what the log took since, reaches `limit_ratio` used. Appends themselves always go on: an
    /// entry that reaches the log was already proposed (or, on a follower, committed by a
    /// majority), and refusing it would stop Raft. New writes are refused at the door instead,
    /// before they are proposed.
    pub fn disk_measured(&mut self, usage: DiskUsage, limit_ratio: f64, mark: DiskMark) {
        self.disk.measured(usage, limit_ratio, mark);
    }

    /// What the log has taken so far, for a measurement of the disk that starts now.
    pub fn disk_mark(&self) -> DiskMark {
        self.disk.mark()
    }

    /// Whether the disk should be measured again now: the log took a quarter of what the last
    /// measurement left below the limit.
    pub fn disk_measure_due(&self) -> bool {
        self.disk.measure_due()
    }

    /// Whether a new write of about `bytes` may be proposed for this log: an error after a
    /// failed sync, or while the disk is at its usage limit or the write would take it past.
    /// An admitted write counts against the disk until the next measurement.
    pub fn admit_new_writes(&mut self, bytes: u64) -> StoreResult<()> {
        self.check_syncs()?;
        self.disk.admit(bytes)
    }

    /// The largest entry payload an append takes (an entry fills at most one segment).
    pub fn entry_payload_max_bytes(&self) -> usize {
        self.config.entry_max_bytes().saturating_sub(crate::entry::ENTRY_HEADER_BYTES)
    }

    /// Appends entries after the last one. They are written but not durable until a flush
    /// covers them ([`CommitLog::flush`] or a [`FlushJob`]).
    pub fn append(&mut self, entries: &[LogEntry]) -> StoreResult<()> {
        self.check_syncs()?;
        for e in entries {
            self.append_one(e)?;
            self.io.entries += 1;
        }
        self.io.appends += 1;
        Ok(())
    }

    fn append_one(&mut self, e: &LogEntry) -> StoreResult<()> {
        if e.index > self.end.next_index {
            // A gap: the log restarts at the new index. The entries before it leave the log
            // (as if purged); positions and the crc chain continue unbroken, so recovery still
            // cannot skip into stale bytes. openraft's storage test suite does this; a running
            // node always appends right after its last entry (or after a truncate or reset).
            if self.last.is_some() {
                tracing::warn!(expected = %self.end.next_index, got = %e.index, "append leaves a gap: earlier entries leave the log");
            } else {
                // Nothing to keep: drop leftover empty segments so slots number from here.
                for seg in std::mem::take(&mut self.segments) {
                    self.remove_segment_files(seg.base)?;
                }
            }
            self.start = LogCut { next_index: e.index, ..self.end };
            self.end = self.start;
            self.flushed = self.start;
            self.last = None;
            self.epoch += 1;
            self.write_checkpoint()?;
        }
        if e.index != self.end.next_index {
            return Err(StoreError::NotContiguous { expected: self.end.next_index, got: e.index });
        }
        let size = e.stored_len() as u64;
        let seg_size = self.config.segment_size_bytes;
        if size > seg_size {
            return Err(StoreError::EntryTooLarge {
                bytes: size as usize,
                max_bytes: seg_size as usize,
            });
        }
        let mut pos = self.end.position.0;
        let seg_end = pos - pos % seg_size + seg_size;
        if pos + size > seg_end {
            // Close this segment with a filler and move to the next one. The segment may not
            // exist yet: a log restarted at a snapshot's cut starts mid-segment, with no file.
            let remaining = seg_end - pos;
            if remaining >= FILLER_MIN_BYTES {
                let seg_i = self.segment_at(pos, e.index)?;
                let seg = &self.segments[seg_i];
                seg.data
                    .write_at(pos - seg.base, &entry::filler(remaining))
                    .doing(|| "writing a segment filler".into())?;
                self.mark_dirty(pos..pos + FILLER_MIN_BYTES, e.index);
            }
            pos = seg_end;
        }
        let seg_i = self.segment_at(pos, e.index)?;
        let mut scratch = std::mem::take(&mut self.scratch);
        let meta = entry::encode(e, CommitLogOffset(pos), self.end.prev_crc, &mut scratch);
        let result = meta.and_then(|meta| {
            let seg = &self.segments[seg_i];
            seg.data
                .write_at(pos - seg.base, &scratch)
                .doing(|| "appending to the CommitLog".into())?;
            self.write_slot(seg_i, e.index, CommitLogOffset(pos))?;
            Ok(meta)
        });
        self.scratch = scratch;
        let meta = result?;
        self.disk.appended(size);
        self.mark_dirty(pos..pos + size, e.index);
        self.end = LogCut::after(&meta);
        self.last = Some(meta);
        Ok(())
    }

    fn mark_dirty(&mut self, bytes: Range<u64>, index: RaftIndex) {
        self.dirty = Some(match self.dirty.take() {
            Some(d) => d.start.min(bytes.start)..d.end.max(bytes.end),
            None => bytes,
        });
        self.dirty_index_from = Some(self.dirty_index_from.map_or(index, |d| d.min(index)));
    }

    /// Takes what must be synced to make everything appended so far durable. Run it with
    /// [`FlushJob::run`] outside any lock, then hand it to [`CommitLog::complete_flush`]. One
    /// job covers every append before it: this is group commit.
    ///
    /// A job syncs the entry bytes only. The position index (slots) past the checkpoint is
    /// rebuilt from the entries by recovery's scan, so slots need to be durable only as far as a
    /// checkpoint claims: [`CommitLog::write_checkpoint`] syncs them first. One sync per round.
    pub fn flush_job(&mut self) -> Option<FlushJob<S::File>> {
        let dirty = self.dirty.take()?;
        let seg_size = self.config.segment_size_bytes;
        let mut syncs = Vec::new();
        for seg in &self.segments {
            let (lo, hi) = (seg.base.max(dirty.start), (seg.base + seg_size).min(dirty.end));
            if lo < hi {
                syncs.push((seg.data.clone(), lo - seg.base, hi - lo));
            }
        }
        Some(FlushJob { syncs, target: self.end, epoch: self.epoch })
    }

    /// Syncs the slots written since the last checkpoint (every segment's, up to the end).
    fn sync_slots(&mut self) -> StoreResult<()> {
        let Some(index_from) = self.dirty_index_from.take() else { return Ok(()) };
        for (i, seg) in self.segments.iter().enumerate() {
            let slot_lo = index_from.max(seg.slot_base);
            let next_base = self.segments.get(i + 1).map(|s| s.slot_base);
            let slot_hi = next_base.unwrap_or(self.end.next_index).min(self.end.next_index);
            if slot_lo < slot_hi {
                let at = (slot_lo.0 - seg.slot_base.0) * 8;
                seg.idx
                    .sync_range(at, (slot_hi.0 - slot_lo.0) * 8)
                    .doing(|| "syncing the CommitLog's position index".to_owned())?;
                self.io.file_syncs += 1;
            }
        }
        Ok(())
    }

    /// Records a job that ran successfully; returns the durable point. A job taken before a
    /// truncation or reset does not move it.
    pub fn complete_flush(&mut self, job: FlushJob<S::File>) -> StoreResult<LogCut> {
        self.check_syncs()?;
        self.io.flush_jobs += 1;
        self.io.file_syncs += job.syncs.len() as u64;
        if job.epoch == self.epoch && job.target.next_index >= self.flushed.next_index {
            self.flushed = job.target;
            if self.flushed.next_index.0 - self.checkpointed.next_index.0
                >= self.config.checkpoint_every_entries
            {
                let written = self.write_checkpoint();
                written.inspect_err(|e| self.sync_failed(e))?;
            }
        }
        Ok(self.flushed)
    }

    /// Moves the checkpoint's durable cut up to what is durable now, if it lags (its slots
    /// synced first); returns whether it wrote. Recovery trusts the log up to that cut and
    /// takes a bad entry below it for damage, not a torn write: the sooner the checkpoint
    /// follows the syncs, the fewer synced entries a flipped bit could silently cut. Every
    /// `checkpoint_every_entries` flushed entries it is written anyway; a replica also calls
    /// this once a second (`node::META_SYNC_MS`).
    pub fn checkpoint(&mut self) -> StoreResult<bool> {
        self.check_syncs()?;
        if self.flushed.next_index <= self.checkpointed.next_index {
            return Ok(false);
        }
        let written = self.write_checkpoint();
        written.inspect_err(|e| self.sync_failed(e))?;
        Ok(true)
    }

    /// Makes everything appended so far durable, in the caller's thread.
    pub fn flush(&mut self) -> StoreResult<LogCut> {
        self.check_syncs()?;
        if let Some(job) = self.flush_job() {
            job.run().inspect_err(|e| self.sync_failed(e))?;
            self.complete_flush(job)?;
        }
        Ok(self.flushed)
    }

    /// Records that a sync of this log failed (a [`FlushJob`] run elsewhere, or the
    /// checkpoint's). From then on the log takes no writes and reports nothing more durable:
    /// after a failed `fsync` the kernel may have dropped the unsynced pages and marked them
    /// clean, so a later sync can succeed without them. Only a restart (recovery re-reads and
    /// checks what is really on disk) clears it.
    pub fn sync_failed(&mut self, error: &StoreError) {
        if self.sync_failed.is_none() {
            self.sync_failed = Some(error.to_string());
        }
    }

    /// The first failed sync, if any: the replica must stop.
    pub fn sync_failure(&self) -> Option<&str> {
        self.sync_failed.as_deref()
    }

    /// `Err(SyncFailed)` once a sync of this log has failed.
    pub(crate) fn check_syncs(&self) -> StoreResult<()> {
        match &self.sync_failed {
            Some(reason) => Err(StoreError::SyncFailed { reason: reason.clone() }),
            None => Ok(()),
        }
    }

    /// Deletes every entry after `index` (all of them for `None`). Used when a follower's
    /// uncommitted tail conflicts with its leader's log.
    pub fn truncate_after(&mut self, index: Option<RaftIndex>) -> StoreResult<()> {
        let keep_last = match index {
            Some(i) if i.next() >= self.end.next_index => return Ok(()),
            Some(i) if i >= self.start.next_index => Some(self.entry_meta(i)?),
            _ => None,
        };
        let new_end = keep_last.as_ref().map_or(self.start, LogCut::after);
        self.epoch += 1;
        if new_end.next_index < self.flushed.next_index {
            // The checkpoint must never claim entries that no longer exist.
            self.flushed = new_end;
            self.write_checkpoint()?;
        }
        let keep_seg = self.segment_slot(new_end.position.0);
        while self.segments.len() > keep_seg + 1 {
            let seg = self.segments.pop().expect("checked length");
            self.remove_segment_files(seg.base)?;
        }
        if new_end.position == self.start.position && self.segments.len() == 1 {
            // Nothing left; a fresh segment is made by the next append.
            if let Some(seg) = self.segments.pop() {
                self.remove_segment_files(seg.base)?;
            }
        }
        self.end = new_end;
        self.last = keep_last;
        // The old entries after the cut still chain from the kept ones: put an empty header
        // at the cut so the next flush makes the truncation itself durable. (Before that
        // flush a crash may bring the old tail back; nothing in it was acknowledged.)
        let seg_i = self.segment_slot(new_end.position.0);
        if let Some(seg) = self.segments.get(seg_i) {
            let at = new_end.position.0 - seg.base;
            let len = (self.config.segment_size_bytes - at).min(ENTRY_HEADER_BYTES as u64);
            seg.data
                .write_at(at, &[0u8; ENTRY_HEADER_BYTES][..len as usize])
                .doing(|| "marking a truncation".into())?;
            let from = new_end.position.0;
            self.mark_dirty(from..from + len, new_end.next_index);
        }
        Ok(())
    }

    /// Deletes whole segments whose entries all have indexes `<= index` (the last segment is
    /// always kept). Returns the new start. Entries after `index` are never touched; some at
    /// or before it may stay until their segment can go as a whole.
    pub fn purge_through(&mut self, index: RaftIndex) -> StoreResult<LogCut> {
        let index = match self.pins.values().min() {
            Some(pinned) if pinned.0 == 0 => return Ok(self.start),
            Some(pinned) => RaftIndex(index.0.min(pinned.0 - 1)),
            None => index,
        };
        let mut n = 0;
        while n + 1 < self.segments.len() && self.segments[n + 1].slot_base.0 <= index.0 + 1 {
            n += 1;
        }
        if n == 0 {
            return Ok(self.start);
        }
        let next = &self.segments[n];
        self.start = if next.base == self.end.position.0 {
            // The kept segment holds nothing yet: the log is empty at its end.
            self.end
        } else {
            let mut header = [0u8; ENTRY_HEADER_BYTES];
            next.data.read_at(0, &mut header).doing(|| "reading a segment start".into())?;
            let Header::Entry { index: first, prev_crc, .. } = entry::parse_header(&header) else {
                return Err(StoreError::Corrupt {
                    position: CommitLogOffset(next.base),
                    reason: "segment does not start with an entry".into(),
                });
            };
            LogCut { next_index: RaftIndex(first), position: CommitLogOffset(next.base), prev_crc }
        };
        if self.start.next_index == self.end.next_index {
            self.last = None;
        }
        if self.flushed.next_index < self.start.next_index {
            self.flushed = self.start;
        }
        self.write_checkpoint()?;
        for seg in self.segments.drain(..n).collect::<Vec<_>>() {
            self.remove_segment_files(seg.base)?;
        }
        Ok(self.start)
    }

    /// Keeps the entries from `index` on from being purged until [`CommitLog::unpin`] is called
    /// with the token returned: a snapshot's history is read from the log while it is sent.
    pub fn pin_from(&mut self, index: RaftIndex) -> u64 {
        self.next_pin += 1;
        self.pins.insert(self.next_pin, index);
        self.next_pin
    }

    /// Releases a [`CommitLog::pin_from`].
    pub fn unpin(&mut self, token: u64) {
        self.pins.remove(&token);
    }

    /// Appends the entries of another replica's log from this log's end up to `to`, reading
    /// that log's bytes through `read(position, buf)`, fillers included: a follower installing
    /// a snapshot copies the history its leader retains before the snapshot's cut (after a
    /// [`CommitLog::reset`] to where that history starts). Each entry is checked (crc, index,
    /// chain) and appended as a replicated one would be, so the segments come out
    /// byte-identical; the log must then end exactly at `to`. Returns the entries copied. Not
    /// durable until a flush.
    pub fn copy_in(
        &mut self,
        to: LogCut,
        read: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    ) -> StoreResult<u64> {
        let seg = self.config.segment_size_bytes;
        let corrupt = |position: u64, reason: String| StoreError::Corrupt {
            position: CommitLogOffset(position),
            reason: format!("copied history: {reason}"),
        };
        let mut pos = self.end.position.0;
        let mut header = [0u8; ENTRY_HEADER_BYTES];
        let mut buf = Vec::new();
        let mut copied = 0;
        while pos < to.position.0 {
            let seg_end = pos - pos % seg + seg;
            let avail = (seg_end - pos).min(to.position.0 - pos).min(ENTRY_HEADER_BYTES as u64);
            if avail < FILLER_MIN_BYTES {
                // Too short for a filler: the segment's tail is left as zeros.
                pos = seg_end;
                continue;
            }
            let header = &mut header[..avail as usize];
            read(pos, header).doing(|| "reading copied history".into())?;
            match entry::parse_header(header) {
                Header::Filler { size } if u64::from(size) == seg_end - pos => pos = seg_end,
                Header::Entry { size, .. }
                    if pos + u64::from(size) <= seg_end.min(to.position.0) =>
                {
                    buf.resize(size as usize, 0);
                    read(pos, &mut buf).doing(|| "reading copied history".into())?;
                    let (meta, e) = entry::decode(&buf, CommitLogOffset(pos))?;
                    if meta.index != self.end.next_index || meta.prev_crc != self.end.prev_crc {
                        return Err(corrupt(
                            pos,
                            format!(
                                "entry {} does not follow entry {} of this log",
                                meta.index,
                                self.end.next_index.0.wrapping_sub(1)
                            ),
                        ));
                    }
                    self.append(std::slice::from_ref(&e))?;
                    if self.end.position.0 != meta.end().0 || self.end.prev_crc != meta.crc {
                        return Err(corrupt(
                            pos,
                            format!(
                                "entry {} landed elsewhere here (do the segment sizes differ?)",
                                meta.index
                            ),
                        ));
                    }
                    pos = meta.end().0;
                    copied += 1;
                }
                _ => return Err(corrupt(pos, "neither an entry nor a segment filler".into())),
            }
        }
        if self.end != to {
            return Err(corrupt(
                pos,
                format!("ends at {:?}, not at the snapshot's cut {to:?}", self.end),
            ));
        }
        Ok(copied)
    }

    /// Fills `buf` with the log's bytes from `position` on, across segments (fillers
    /// included): the history a snapshot sends. A position before the log's start or past its
    /// end is an error.
    pub fn read_span(&self, position: CommitLogOffset, buf: &mut [u8]) -> StoreResult<()> {
        let seg = self.config.segment_size_bytes;
        let end = position.0 + buf.len() as u64;
        if end > self.end.position.0 {
            return Err(StoreError::PastEnd {
                position: CommitLogOffset(end),
                end: self.end.position,
            });
        }
        let mut at = position.0;
        let mut done = 0usize;
        while at < end {
            self.check_position(CommitLogOffset(at))?;
            let stop = end.min(at - at % seg + seg);
            let Some(s) = self.segments.get(self.segment_slot(at)) else {
                return Err(StoreError::Corrupt {
                    position: CommitLogOffset(at),
                    reason: "no segment holds this position".into(),
                });
            };
            let n = (stop - at) as usize;
            s.data
                .read_at(at - s.base, &mut buf[done..done + n])
                .doing(|| "reading the CommitLog".into())?;
            done += n;
            at = stop;
        }
        Ok(())
    }

    /// Entry `index`'s header fields, its bytes checked by crc where they lie. A failure is
    /// damage (see [`CommitLog::damage`]).
    pub fn check_entry(&self, index: RaftIndex) -> StoreResult<EntryMeta> {
        let checked = self.entry_meta(index).and_then(|meta| {
            self.with_entry(&meta, &mut |bytes| entry::check(bytes, meta.position).map(|_| ()))?;
            Ok(meta)
        });
        self.note_damage(checked)
    }

    /// [`CommitLog::read_span`] of a run of whole entries (a snapshot's history being sent),
    /// each entry checked by crc before any of its bytes leave: `next` is the index and
    /// position of the first entry not checked yet, moved past every entry that starts before
    /// the span's end. A failure is damage, so a damaged sender quarantines itself instead of
    /// handing a follower bytes its own checks would refuse.
    pub fn read_history(
        &self,
        next: &mut (RaftIndex, u64),
        position: CommitLogOffset,
        buf: &mut [u8],
    ) -> StoreResult<()> {
        let end = position.0 + buf.len() as u64;
        while next.1 < end && next.0 < self.end.next_index {
            let meta = self.check_entry(next.0)?;
            *next = (next.0.next(), meta.end().0);
        }
        self.read_span(position, buf)
    }

    /// Discards the whole log and starts it again at `cut` (a follower installing a snapshot:
    /// `cut` is where the leader's log continues, so positions stay identical).
    pub fn reset(&mut self, cut: LogCut) -> StoreResult<()> {
        self.epoch += 1;
        for seg in std::mem::take(&mut self.segments) {
            self.remove_segment_files(seg.base)?;
        }
        self.start = cut;
        self.end = cut;
        self.flushed = cut;
        self.last = None;
        self.dirty = None;
        self.dirty_index_from = None;
        self.write_checkpoint()
    }

    /// Paths and sizes of the segment files, oldest first (for retention and stats).
    pub fn segment_files(&self) -> Vec<(String, u64)> {
        self.segments.iter().map(|s| (join(DIR, &offset_file_name(s.base)), s.base)).collect()
    }

    /// The first raft index stored in each segment, oldest first.
    pub fn segment_first_indexes(&self) -> Vec<RaftIndex> {
        self.segments.iter().map(|s| s.slot_base.max(self.start.next_index)).collect()
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }
}

/// A record read at `position` must decode whole, at exactly its size, and name `position` as
/// its own (PHYSICALOFFSET).
fn check_record(record: &[u8], position: CommitLogOffset) -> StoreResult<()> {
    let view = RecordView::decode(record)
        .map_err(|e| StoreError::Corrupt { position, reason: e.to_string() })?;
    if view.total_size != record.len() || view.physical_offset != position.0 as i64 {
        return Err(StoreError::Corrupt {
            position,
            reason: "record size or offset mismatch".into(),
        });
    }
    Ok(())
}
