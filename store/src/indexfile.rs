//! IndexFile: lookup of message positions by `topic#key` within a time range (reference
//! §3.9), for every KEYS token and the UNIQ_KEY of each message.
//!
//! ```text
//! header (40 B): beginTimestamp i64 | endTimestamp i64 | beginPhyOffset i64 | endPhyOffset i64
//!                | hashSlotCount i32 | indexCount i32 (starts at 1; entry 0 is unused)
//! slots:         slot_count x i32: number of the newest entry whose key hashes here (0: none)
//! entries:       index_max x (keyHash i32 | phyOffset i64 | timeDiff i32 seconds | prevIndex i32)
//! ```
//!
//! A file is full at `index_max` entries; the next key rolls to a new file. Files are named by
//! the CommitLog position of their first entry (20 digits) rather than RocketMQ's creation
//! time, so rebuilding from the CommitLog gives identical names and bytes on every replica.
//! Hash collisions are possible: callers check the key of every record they read.

use std::sync::Arc;

use crate::error::{IoContext, StoreError, StoreResult};
use crate::io::{join, Storage, StorageFile};
use crate::types::{offset_file_name, parse_offset_file_name, CommitLogOffset};

const DIR: &str = "index";
const HEADER_BYTES: u64 = 40;
const SLOT_BYTES: u64 = 4;
const ENTRY_BYTES: u64 = 20;

/// IndexFile sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexConfig {
    /// Hash slots per file. Default 5,000,000 (RocketMQ's `maxHashSlotNum`).
    pub slot_count: u32,
    /// Entries per file. Default 20,000,000 (RocketMQ's `maxIndexNum`).
    pub index_max: u32,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig { slot_count: 5_000_000, index_max: 20_000_000 }
    }
}

impl IndexConfig {
    fn file_bytes(&self) -> u64 {
        HEADER_BYTES
            + u64::from(self.slot_count) * SLOT_BYTES
            + u64::from(self.index_max) * ENTRY_BYTES
    }
}

/// The hash an IndexFile stores for `key` of a record of `topic`: RocketMQ's
/// `abs("topic#key".hashCode())` (0 if still negative, for Integer.MIN_VALUE), folded over the
/// parts instead of building the joined string (once per key per record on apply).
fn key_hash(topic: &str, key: &str) -> i32 {
    let h = [topic, "#", key]
        .iter()
        .flat_map(|part| part.encode_utf16())
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    h.checked_abs().unwrap_or(0)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Header {
    begin_ts: i64,
    end_ts: i64,
    begin_phy: i64,
    end_phy: i64,
    slots_used: i32,
    index_count: i32,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_BYTES as usize] {
        let mut b = [0u8; HEADER_BYTES as usize];
        b[0..8].copy_from_slice(&self.begin_ts.to_be_bytes());
        b[8..16].copy_from_slice(&self.end_ts.to_be_bytes());
        b[16..24].copy_from_slice(&self.begin_phy.to_be_bytes());
        b[24..32].copy_from_slice(&self.end_phy.to_be_bytes());
        b[32..36].copy_from_slice(&self.slots_used.to_be_bytes());
        b[36..40].copy_from_slice(&self.index_count.to_be_bytes());
        b
    }

    fn decode(b: &[u8; HEADER_BYTES as usize]) -> Header {
        let i64_at = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().unwrap_or_default());
        let i32_at = |at: usize| i32::from_be_bytes(b[at..at + 4].try_into().unwrap_or_default());
        Header {
            begin_ts: i64_at(0),
            end_ts: i64_at(8),
            begin_phy: i64_at(16),
            end_phy: i64_at(24),
            slots_used: i32_at(32),
            index_count: i32_at(36),
        }
    }
}

/// One index file.
pub struct IndexFile<F> {
    file: Arc<F>,
    name: u64,
    config: IndexConfig,
    header: Header,
    dirty: bool,
}

impl<F: StorageFile> IndexFile<F> {
    fn open(file: Arc<F>, name: u64, config: IndexConfig) -> StoreResult<Self> {
        let mut b = [0u8; HEADER_BYTES as usize];
        file.read_at(0, &mut b).doing(|| "reading an index header".into())?;
        let mut header = Header::decode(&b);
        if header.index_count < 1 || header.index_count as u32 > config.index_max.saturating_add(1)
        {
            header = Header { index_count: 1, ..Header::default() };
        }
        Ok(IndexFile { file, name, config, header, dirty: false })
    }

    /// Entry numbers run from 1, so a file holds `index_max - 1` entries (as RocketMQ's).
    fn is_full(&self) -> bool {
        self.header.index_count as u32 >= self.config.index_max
    }

    /// Whether every slot points below the header's entry count.
    fn slots_consistent(&self) -> StoreResult<bool> {
        let chunk_slots = 64 * 1024u64;
        let total = u64::from(self.config.slot_count);
        let mut at = 0;
        let mut buf = Vec::new();
        while at < total {
            let n = chunk_slots.min(total - at);
            buf.resize((n * SLOT_BYTES) as usize, 0);
            self.file
                .read_at(HEADER_BYTES + at * SLOT_BYTES, &mut buf)
                .doing(|| "checking an index file".into())?;
            for raw in buf.chunks(SLOT_BYTES as usize) {
                let v = i32::from_be_bytes(raw.try_into().unwrap_or_default());
                if v < 0 || v >= self.header.index_count {
                    return Ok(false);
                }
            }
            at += n;
        }
        Ok(true)
    }

    fn slot_at(&self, hash: i32) -> u64 {
        HEADER_BYTES + (hash as u64 % u64::from(self.config.slot_count)) * SLOT_BYTES
    }

    fn entry_at(&self, n: i32) -> u64 {
        HEADER_BYTES + u64::from(self.config.slot_count) * SLOT_BYTES + n as u64 * ENTRY_BYTES
    }

    fn read_i32(&self, at: u64) -> StoreResult<i32> {
        let mut b = [0u8; 4];
        self.file.read_at(at, &mut b).doing(|| "reading an index file".into())?;
        Ok(i32::from_be_bytes(b))
    }

    /// Adds a key (by its hash) for the record at `position` stored at `store_ts_ms`. False
    /// when full.
    fn put(&mut self, hash: i32, position: CommitLogOffset, store_ts_ms: i64) -> StoreResult<bool> {
        if self.is_full() {
            return Ok(false);
        }
        let slot = self.slot_at(hash);
        let prev = self.read_i32(slot)?;
        if self.header.index_count == 1 {
            self.header.begin_ts = store_ts_ms;
            self.header.begin_phy = position.0 as i64;
        }
        let time_diff =
            ((store_ts_ms - self.header.begin_ts) / 1000).clamp(0, i32::MAX as i64) as i32;
        let n = self.header.index_count;
        let mut e = [0u8; ENTRY_BYTES as usize];
        e[0..4].copy_from_slice(&hash.to_be_bytes());
        e[4..12].copy_from_slice(&(position.0 as i64).to_be_bytes());
        e[12..16].copy_from_slice(&time_diff.to_be_bytes());
        e[16..20].copy_from_slice(&prev.max(0).to_be_bytes());
        self.file.write_at(self.entry_at(n), &e).doing(|| "writing an index entry".into())?;
        self.file.write_at(slot, &n.to_be_bytes()).doing(|| "writing an index slot".into())?;
        if prev <= 0 {
            self.header.slots_used += 1;
        }
        self.header.index_count += 1;
        self.header.end_ts = store_ts_ms;
        self.header.end_phy = position.0 as i64;
        self.file.write_at(0, &self.header.encode()).doing(|| "writing an index header".into())?;
        self.dirty = true;
        Ok(true)
    }

    /// Positions of records whose key hashes to `hash`, stored within `[begin_ms, end_ms]`,
    /// newest first, at most `max`.
    fn query(
        &self,
        hash: i32,
        begin_ms: i64,
        end_ms: i64,
        max: usize,
        out: &mut Vec<CommitLogOffset>,
    ) -> StoreResult<()> {
        let mut n = self.read_i32(self.slot_at(hash))?;
        let mut steps = 0;
        while n > 0
            && n < self.header.index_count
            && out.len() < max
            && steps < self.config.index_max
        {
            let mut e = [0u8; ENTRY_BYTES as usize];
            self.file
                .read_at(self.entry_at(n), &mut e)
                .doing(|| "reading an index entry".into())?;
            let h = i32::from_be_bytes(e[0..4].try_into().unwrap_or_default());
            let pos = i64::from_be_bytes(e[4..12].try_into().unwrap_or_default());
            let diff = i32::from_be_bytes(e[12..16].try_into().unwrap_or_default());
            let prev = i32::from_be_bytes(e[16..20].try_into().unwrap_or_default());
            let ts = self.header.begin_ts + i64::from(diff) * 1000;
            if h == hash && ts >= begin_ms - 999 && ts <= end_ms && pos > 0 {
                out.push(CommitLogOffset(pos as u64));
            }
            if prev >= n {
                break; // chains only point backwards; anything else is damage
            }
            n = prev;
            steps += 1;
        }
        Ok(())
    }
}

/// All index files, oldest first; the last takes new keys.
pub struct IndexService<S: Storage> {
    storage: S,
    config: IndexConfig,
    files: Vec<IndexFile<S::File>>,
    /// Set when `open` dropped a damaged last file: re-index records after this position.
    rebuild_after: Option<CommitLogOffset>,
}

impl<S: Storage> IndexService<S> {
    pub fn open(storage: S, config: IndexConfig) -> StoreResult<Self> {
        let mut names: Vec<u64> = storage
            .list(DIR)
            .doing(|| "listing index".into())?
            .iter()
            .filter_map(|n| parse_offset_file_name(n))
            .collect();
        names.sort_unstable();
        let mut files = Vec::new();
        for name in names {
            let path = join(DIR, &offset_file_name(name));
            let f = storage.open(&path).doing(|| format!("opening {path}"))?;
            if f.capacity() != config.file_bytes() {
                return Err(StoreError::Config(format!(
                    "{path} does not match the index configuration"
                )));
            }
            files.push(IndexFile::open(f, name, config.clone())?);
        }
        // A power loss can keep a slot update but lose the header update on another page; the
        // slot then points past the header's count and hides the older chain. Such a last file
        // is dropped and rebuilt from the records after the previous file.
        let mut rebuild_after = None;
        if let Some(last) = files.last() {
            if !last.slots_consistent()? {
                let last = files.pop().expect("checked");
                let path = join(DIR, &offset_file_name(last.name));
                storage.remove(&path).doing(|| format!("removing {path}"))?;
                let after = files.last().map_or(0, |f| f.header.end_phy as u64 + 1);
                tracing::warn!(file = %path, "index file damaged by a crash; rebuilding it");
                rebuild_after = Some(CommitLogOffset(after));
            }
        }
        Ok(IndexService { storage, config, files, rebuild_after })
    }

    /// Where re-indexing must start because `open` dropped a damaged file (taken once).
    pub fn take_rebuild(&mut self) -> Option<CommitLogOffset> {
        self.rebuild_after.take()
    }

    /// Indexes `key` of a record of `topic` for the record at `position`.
    pub fn put(
        &mut self,
        topic: &str,
        key: &str,
        position: CommitLogOffset,
        store_ts_ms: i64,
    ) -> StoreResult<()> {
        self.put_hash(key_hash(topic, key), position, store_ts_ms)
    }

    fn put_hash(
        &mut self,
        hash: i32,
        position: CommitLogOffset,
        store_ts_ms: i64,
    ) -> StoreResult<()> {
        let need_new = self.files.last().is_none_or(|f| f.is_full());
        if need_new {
            // Make the full file durable before its successor gets a single write, so that
            // after a crash only the last file can be half written (what `open` checks).
            if let Some(full) = self.files.last_mut().filter(|f| f.dirty) {
                full.file
                    .sync_range(0, full.file.capacity())
                    .doing(|| "syncing a full index file".into())?;
                full.dirty = false;
            }
            let path = join(DIR, &offset_file_name(position.0));
            self.storage.remove(&path).doing(|| format!("removing {path}"))?;
            let f = self
                .storage
                .create(&path, self.config.file_bytes())
                .doing(|| format!("creating {path}"))?;
            self.files.push(IndexFile::open(f, position.0, self.config.clone())?);
        }
        let last = self.files.last_mut().expect("ensured above");
        if !last.put(hash, position, store_ts_ms)? {
            return Err(StoreError::Config("a new index file is already full".into()));
        }
        Ok(())
    }

    /// Positions of records of `topic` indexed under `key` stored in `[begin_ms, end_ms]`,
    /// newest first (records whose key merely hashes alike come too: check what is read).
    pub fn query(
        &self,
        topic: &str,
        key: &str,
        begin_ms: i64,
        end_ms: i64,
        max: usize,
    ) -> StoreResult<Vec<CommitLogOffset>> {
        let mut out = Vec::new();
        for f in self.files.iter().rev() {
            if f.header.index_count > 1
                && f.header.end_ts >= begin_ms
                && f.header.begin_ts <= end_ms
            {
                f.query(key_hash(topic, key), begin_ms, end_ms, max, &mut out)?;
            }
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// The newest indexed position and time (QUERY_MESSAGE's response header).
    pub fn last_update(&self) -> (i64, i64) {
        self.files.last().map_or((0, 0), |f| (f.header.end_ts, f.header.end_phy))
    }

    /// Removes files whose entries lie wholly before `log_start` (retention), keeping the last.
    pub fn purge_before(&mut self, log_start: CommitLogOffset) -> StoreResult<()> {
        while self.files.len() > 1 && (self.files[0].header.end_phy as u64) < log_start.0 {
            let f = self.files.remove(0);
            let path = join(DIR, &offset_file_name(f.name));
            self.storage.remove(&path).doing(|| format!("removing {path}"))?;
        }
        Ok(())
    }

    /// Removes files holding entries at or after `position` (recovery re-indexes from the
    /// returned position, the start of the first removed file).
    pub fn truncate_from(
        &mut self,
        position: CommitLogOffset,
    ) -> StoreResult<Option<CommitLogOffset>> {
        let mut rebuild_from = None;
        while let Some(f) = self.files.last() {
            if f.header.index_count > 1 && (f.header.end_phy as u64) < position.0 {
                break;
            }
            let f = self.files.pop().expect("checked");
            if f.header.index_count > 1 {
                rebuild_from = Some(CommitLogOffset(f.header.begin_phy as u64));
            }
            let path = join(DIR, &offset_file_name(f.name));
            self.storage.remove(&path).doing(|| format!("removing {path}"))?;
        }
        Ok(rebuild_from)
    }

    pub fn flush(&mut self) -> StoreResult<()> {
        for f in self.files.iter_mut().filter(|f| f.dirty) {
            f.file.sync_range(0, f.file.capacity()).doing(|| "syncing an index file".into())?;
            f.dirty = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::sim::SimStorage;

    fn tiny() -> IndexConfig {
        IndexConfig { slot_count: 7, index_max: 5 }
    }

    #[test]
    fn a_key_hashes_as_rocketmq_hashes_topic_hash_key() {
        use rocketraft_protocol::message::java_string_hash;
        for (t, k) in [("T", "k1"), ("", ""), ("TopicTest", "é\u{1F600}x"), ("a#b", "#")] {
            let joined = java_string_hash(&format!("{t}#{k}")).checked_abs().unwrap_or(0);
            assert_eq!(key_hash(t, k), joined);
        }
    }

    #[test]
    fn keys_are_found_within_their_time_range_across_rolled_files() {
        let s = SimStorage::new();
        let mut idx = IndexService::open(s.clone(), tiny()).unwrap();
        for i in 0..12u64 {
            let key = format!("k{}", i % 3);
            idx.put("T", &key, CommitLogOffset(100 + i), 1_000_000 + i as i64 * 1000).unwrap();
        }
        assert_eq!(s.list("index").unwrap().len(), 3, "4 entries per file: 12 keys take 3 files");
        let all = idx.query("T", "k1", 0, i64::MAX, 100).unwrap();
        assert_eq!(
            all,
            vec![
                CommitLogOffset(110),
                CommitLogOffset(107),
                CommitLogOffset(104),
                CommitLogOffset(101)
            ]
        );
        let window = idx.query("T", "k1", 1_004_000, 1_008_000, 100).unwrap();
        assert_eq!(window, vec![CommitLogOffset(107), CommitLogOffset(104)]);
        assert_eq!(idx.query("T", "k1", 0, i64::MAX, 2).unwrap().len(), 2, "max");
        let reopened = IndexService::open(s.clone(), tiny()).unwrap();
        assert_eq!(reopened.query("T", "k1", 0, i64::MAX, 100).unwrap(), all);
        assert_eq!(reopened.last_update(), (1_011_000, 111));
    }

    #[test]
    fn truncation_and_purge_remove_whole_files() {
        let s = SimStorage::new();
        let mut idx = IndexService::open(s.clone(), tiny()).unwrap();
        for i in 0..12u64 {
            idx.put("T", "k", CommitLogOffset(100 + i), i as i64 * 1000).unwrap();
        }
        // Files hold 100..=103, 104..=107, 108..=111: the last two reach 107.
        assert_eq!(idx.truncate_from(CommitLogOffset(107)).unwrap(), Some(CommitLogOffset(104)));
        assert_eq!(s.list("index").unwrap().len(), 1);
        idx.purge_before(CommitLogOffset(1000)).unwrap();
        assert_eq!(s.list("index").unwrap().len(), 1, "the last file stays");
    }
}
