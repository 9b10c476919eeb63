//! [`Storage`] in memory, for the simulation and for crash tests. Each file keeps its current
//! bytes, its durable bytes (as of the syncs so far) and the writes made since; a simulated
//! power failure ([`SimStorage::power_loss`]) rebuilds every file from its durable bytes plus
//! a prefix of the later writes, the last of which may be torn. Faults (a full disk, failing
//! syncs) can be switched on to drive the error paths.
//!
//! It reads no clock and starts no thread: the caller supplies the time for `modified_ms`.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{check_range, DiskUsage, Storage, StorageFile};

/// What a power failure keeps of each file's unsynced writes.
pub trait PowerLossPlan {
    /// For a file with `pending` unsynced writes (oldest first): how many to re-apply, and, if
    /// `Some(n)`, the first `n` bytes of the next one (a torn write).
    fn keep(&mut self, path: &str, pending: &[usize]) -> (usize, Option<usize>);
}

/// Drops every unsynced write.
pub struct DropAllUnsynced;

impl PowerLossPlan for DropAllUnsynced {
    fn keep(&mut self, _path: &str, _pending: &[usize]) -> (usize, Option<usize>) {
        (0, None)
    }
}

/// Keeps a random prefix of each file's unsynced writes and tears the next one at a random
/// byte, drawn from a seed (xorshift64*: deterministic and dependency free).
pub struct RandomPowerLoss {
    state: u64,
}

impl RandomPowerLoss {
    pub fn new(seed: u64) -> Self {
        RandomPowerLoss { state: seed.max(1) }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

impl PowerLossPlan for RandomPowerLoss {
    fn keep(&mut self, _path: &str, pending: &[usize]) -> (usize, Option<usize>) {
        if pending.is_empty() {
            return (0, None);
        }
        let kept = (self.next() % (pending.len() as u64 + 1)) as usize;
        let torn = match pending.get(kept) {
            Some(&len) if len > 0 && self.next().is_multiple_of(2) => {
                Some((self.next() % len as u64) as usize)
            }
            _ => None,
        };
        (kept, torn)
    }
}

#[derive(Debug, Default)]
struct FileState {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Unsynced writes, oldest first: (offset, bytes).
    pending: Vec<(u64, Vec<u8>)>,
    modified_ms: i64,
}

/// One simulated file.
#[derive(Debug)]
pub struct SimFile {
    state: Mutex<FileState>,
    capacity: u64,
    /// Under `commitlog/` (see [`SimStorage::set_fail_commitlog_syncs`]).
    commitlog: bool,
    faults: Arc<Faults>,
    clock_ms: Arc<AtomicI64>,
}

#[derive(Debug, Default)]
struct Faults {
    disk_full: AtomicBool,
    fail_syncs: AtomicBool,
    fail_commitlog_syncs: AtomicBool,
    sync_latency_ms: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock poisons it; the state is still consistent (every
    // mutation completes before returning), so keep going rather than cascade.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StorageFile for SimFile {
    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        check_range(self.capacity, offset, data.len() as u64)?;
        if self.faults.disk_full.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "simulated disk full"));
        }
        let mut st = lock(&self.state);
        let at = offset as usize;
        st.data[at..at + data.len()].copy_from_slice(data);
        st.pending.push((offset, data.to_vec()));
        st.modified_ms = self.clock_ms.load(Ordering::Relaxed);
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check_range(self.capacity, offset, buf.len() as u64)?;
        let st = lock(&self.state);
        let at = offset as usize;
        buf.copy_from_slice(&st.data[at..at + buf.len()]);
        Ok(())
    }

    fn read_in_place(&self, offset: u64, len: usize, f: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        check_range(self.capacity, offset, len as u64)?;
        let st = lock(&self.state);
        let at = offset as usize;
        f(&st.data[at..at + len]);
        Ok(())
    }

    fn sync_range(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self.capacity, offset, len)?;
        let fail = self.faults.fail_syncs.load(Ordering::Relaxed)
            || (self.commitlog && self.faults.fail_commitlog_syncs.load(Ordering::Relaxed));
        if fail {
            return Err(io::Error::other("simulated fsync failure"));
        }
        let mut st = lock(&self.state);
        let (start, end) = (offset as usize, (offset + len) as usize);
        let synced = st.data[start..end].to_vec();
        st.durable[start..end].copy_from_slice(&synced);
        // Keep only the parts of pending writes outside the synced range.
        let pending = std::mem::take(&mut st.pending);
        for (off, bytes) in pending {
            let (ws, we) = (off as usize, off as usize + bytes.len());
            if ws < start {
                let cut = we.min(start);
                st.pending.push((off, bytes[..cut - ws].to_vec()));
            }
            if we > end {
                let from = ws.max(end);
                st.pending.push((from as u64, bytes[from - ws..].to_vec()));
            }
        }
        Ok(())
    }
}

/// A simulated directory tree.
#[derive(Debug, Clone, Default)]
pub struct SimStorage {
    files: Arc<Mutex<BTreeMap<String, Arc<SimFile>>>>,
    faults: Arc<Faults>,
    clock_ms: Arc<AtomicI64>,
    capacity_bytes: Arc<AtomicI64>,
}

impl SimStorage {
    /// An empty tree on a simulated 64 GiB volume, at time 0.
    pub fn new() -> Self {
        let s = SimStorage::default();
        s.capacity_bytes.store(64 << 30, Ordering::Relaxed);
        s
    }

    /// Deletes every file, durable or not: a machine whose data directory was lost.
    pub fn wipe(&self) {
        lock(&self.files).clear();
    }

    /// Sets the time stamped on writes (Unix milliseconds).
    pub fn set_now_ms(&self, now_ms: i64) {
        self.clock_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Sets the simulated volume size (used by `disk_usage`).
    pub fn set_volume_bytes(&self, bytes: u64) {
        self.capacity_bytes.store(bytes as i64, Ordering::Relaxed);
    }

    /// While on, every write fails with `StorageFull`.
    pub fn set_disk_full(&self, on: bool) {
        self.faults.disk_full.store(on, Ordering::Relaxed);
    }

    /// While on, every sync fails.
    pub fn set_fail_syncs(&self, on: bool) {
        self.faults.fail_syncs.store(on, Ordering::Relaxed);
    }

    /// While on, every sync of a file under `commitlog/` fails (the other files sync).
    pub fn set_fail_commitlog_syncs(&self, on: bool) {
        self.faults.fail_commitlog_syncs.store(on, Ordering::Relaxed);
    }

    /// Makes every log sync take `ms` longer (a slow disk); 0 for none.
    pub fn set_sync_latency_ms(&self, ms: u64) {
        self.faults.sync_latency_ms.store(ms, Ordering::Relaxed);
    }

    /// A power failure: each file keeps its durable bytes plus what `plan` keeps of the writes
    /// since. Handles opened before keep working and see the new contents.
    pub fn power_loss(&self, plan: &mut dyn PowerLossPlan) {
        let files = lock(&self.files);
        for (path, file) in files.iter() {
            let mut st = lock(&file.state);
            let lens: Vec<usize> = st.pending.iter().map(|(_, b)| b.len()).collect();
            let (kept, torn) = plan.keep(path, &lens);
            let mut data = st.durable.clone();
            let pending = std::mem::take(&mut st.pending);
            for (i, (off, bytes)) in pending.iter().enumerate() {
                let at = *off as usize;
                if i < kept {
                    data[at..at + bytes.len()].copy_from_slice(bytes);
                } else if i == kept {
                    if let Some(n) = torn {
                        let n = n.min(bytes.len());
                        data[at..at + n].copy_from_slice(&bytes[..n]);
                    }
                    break;
                }
            }
            st.durable = data.clone();
            st.data = data;
        }
    }

    /// Flips bits of the byte at `offset` of file `path`, in what is written and in what is
    /// durable (a bad sector, bit rot: the damage survives a power loss). Returns false if
    /// there is no such file or byte.
    pub fn corrupt(&self, path: &str, offset: u64, mask: u8) -> bool {
        let files = lock(&self.files);
        let Some(file) = files.get(path) else { return false };
        let mut st = lock(&file.state);
        let at = offset as usize;
        if at >= st.data.len() {
            return false;
        }
        st.data[at] ^= mask;
        st.durable[at] ^= mask;
        for (off, bytes) in st.pending.iter_mut() {
            if let Some(b) = at.checked_sub(*off as usize).and_then(|i| bytes.get_mut(i)) {
                *b ^= mask;
            }
        }
        true
    }

    /// Bytes of every file, for comparing replicas.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        lock(&self.files).iter().map(|(p, f)| (p.clone(), lock(&f.state).data.clone())).collect()
    }

    fn used_bytes(&self) -> u64 {
        lock(&self.files).values().map(|f| f.capacity).sum()
    }
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

impl Storage for SimStorage {
    type File = SimFile;

    fn create(&self, path: &str, capacity_bytes: u64) -> io::Result<Arc<SimFile>> {
        if self.faults.disk_full.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "simulated disk full"));
        }
        let mut files = lock(&self.files);
        if files.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, path.to_owned()));
        }
        if capacity_bytes == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty file"));
        }
        let n = usize::try_from(capacity_bytes)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large"))?;
        let file = Arc::new(SimFile {
            state: Mutex::new(FileState {
                data: vec![0; n],
                durable: vec![0; n],
                pending: Vec::new(),
                modified_ms: self.clock_ms.load(Ordering::Relaxed),
            }),
            capacity: capacity_bytes,
            commitlog: path.starts_with("commitlog/"),
            faults: self.faults.clone(),
            clock_ms: self.clock_ms.clone(),
        });
        files.insert(path.to_owned(), file.clone());
        Ok(file)
    }

    fn open(&self, path: &str) -> io::Result<Arc<SimFile>> {
        lock(&self.files)
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.to_owned()))
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let files = lock(&self.files);
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let mut names: Vec<String> = files
            .keys()
            .filter_map(|p| p.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
            .collect();
        names.dedup();
        Ok(names)
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        lock(&self.files).remove(path);
        Ok(())
    }

    fn remove_dir_all(&self, dir: &str) -> io::Result<()> {
        let prefix = format!("{dir}/");
        lock(&self.files).retain(|p, _| !p.starts_with(&prefix) && parent_of(p) != dir);
        Ok(())
    }

    fn modified_ms(&self, path: &str) -> io::Result<i64> {
        Ok(lock(&self.open(path)?.state).modified_ms)
    }

    fn occupied_bytes(&self) -> io::Result<u64> {
        Ok(self.used_bytes())
    }

    fn disk_usage(&self) -> io::Result<DiskUsage> {
        let total = self.capacity_bytes.load(Ordering::Relaxed) as u64;
        let free = total.saturating_sub(self.used_bytes());
        Ok(DiskUsage { total_bytes: total, free_bytes: free, available_bytes: free })
    }

    fn sync_latency(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.faults.sync_latency_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_loss_keeps_synced_bytes_and_a_prefix_of_the_rest() {
        let s = SimStorage::new();
        let f = s.create("a/b", 16).unwrap();
        f.write_at(0, b"AAAA").unwrap();
        f.sync_range(0, 4).unwrap();
        f.write_at(4, b"BBBB").unwrap();
        f.write_at(8, b"CCCC").unwrap();
        struct KeepOneTearNext;
        impl PowerLossPlan for KeepOneTearNext {
            fn keep(&mut self, _: &str, pending: &[usize]) -> (usize, Option<usize>) {
                assert_eq!(pending, &[4, 4]);
                (1, Some(2))
            }
        }
        s.power_loss(&mut KeepOneTearNext);
        let mut buf = [0u8; 12];
        f.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"AAAABBBBCC\0\0");
        s.power_loss(&mut DropAllUnsynced);
        f.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"AAAABBBBCC\0\0", "what survived a power loss is durable");
    }

    #[test]
    fn a_partial_sync_keeps_the_unsynced_parts_pending() {
        let s = SimStorage::new();
        let f = s.create("x", 12).unwrap();
        f.write_at(0, b"0123456789AB").unwrap();
        f.sync_range(4, 4).unwrap();
        s.power_loss(&mut DropAllUnsynced);
        let mut buf = [0u8; 12];
        f.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"\0\0\0\x004567\0\0\0\0");
    }

    #[test]
    fn faults_fail_the_calls() {
        let s = SimStorage::new();
        let f = s.create("x", 4).unwrap();
        s.set_disk_full(true);
        assert_eq!(f.write_at(0, b"a").unwrap_err().kind(), io::ErrorKind::StorageFull);
        s.set_disk_full(false);
        s.set_fail_syncs(true);
        assert!(f.sync_range(0, 4).is_err());
    }
}
