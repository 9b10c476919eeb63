//! The storage I/O seam: every file the store touches (CommitLog segments, position indexes,
//! ConsumeQueue and IndexFile files, the checkpoint) goes through [`Storage`].
//!
//! Two implementations pass one conformance suite ([`conformance`]): [`mmap::MmapStorage`]
//! (real files read through a mapping; written through it and `msync`ed, or for log files with
//! `pwrite` and `fdatasync`) and [`sim::SimStorage`] (in memory; it remembers what was synced,
//! so a simulated power failure can drop or tear unsynced writes).
//!
//! Contract: files have a fixed capacity set at creation and read as zeros where never
//! written. One writer per file at a time; a reader never reads a range while it is being
//! written (the CommitLog publishes a position only after writing below it). Creating and
//! removing files is durable when the call returns.

pub mod conformance;
pub mod mmap;
pub mod sim;

use std::io;
use std::sync::Arc;

/// Bytes used and available on the volume under the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    pub total_bytes: u64,
    /// Free blocks, the filesystem's reserve for root included (statvfs `f_bfree`).
    pub free_bytes: u64,
    /// Free blocks this process may use (statvfs `f_bavail`).
    pub available_bytes: u64,
}

impl DiskUsage {
    /// The usage of a store capped at `capacity` bytes on a volume whose own usage is
    /// `volume`: `occupied` of the cap is used, and what is left of it is available as far as
    /// the volume still has room.
    pub fn capped(capacity: u64, occupied: u64, volume: DiskUsage) -> DiskUsage {
        let used = occupied.min(capacity);
        let left = capacity - used;
        DiskUsage {
            total_bytes: capacity,
            free_bytes: left.min(volume.free_bytes),
            available_bytes: left.min(volume.available_bytes),
        }
    }

    /// Used fraction of the space this process can have, 0.0 to 1.0: `df`'s Use%, used /
    /// (used + available), which is also how RocketMQ reckons `diskMaxUsedSpaceRatio`. Blocks
    /// reserved for root count as neither (ext4 reserves 5 % by default; some volumes far
    /// more), so they cannot make an almost empty disk look full.
    pub fn used_ratio(&self) -> f64 {
        let used = self.total_bytes.saturating_sub(self.free_bytes);
        let room = used.saturating_add(self.available_bytes);
        if room == 0 {
            return 1.0;
        }
        used as f64 / room as f64
    }
}

/// A directory tree of fixed-capacity files, addressed by relative `/`-separated paths.
pub trait Storage: Send + Sync + 'static {
    type File: StorageFile;

    /// Creates a zero-filled file of `capacity_bytes` (and its parent directories). Fails with
    /// `AlreadyExists` if it exists.
    fn create(&self, path: &str, capacity_bytes: u64) -> io::Result<Arc<Self::File>>;

    /// Opens an existing file; its capacity is its size.
    fn open(&self, path: &str) -> io::Result<Arc<Self::File>>;

    /// [`Storage::create`] for a log file: written front to back and synced after almost
    /// every write (a CommitLog segment). Same contract; the implementation may write it
    /// another way.
    fn create_log(&self, path: &str, capacity_bytes: u64) -> io::Result<Arc<Self::File>> {
        self.create(path, capacity_bytes)
    }

    /// [`Storage::open`] for a log file (see [`Storage::create_log`]).
    fn open_log(&self, path: &str) -> io::Result<Arc<Self::File>> {
        self.open(path)
    }

    /// The names directly under `dir` ("" is the root), files and directories, sorted.
    /// A directory that does not exist lists as empty.
    fn list(&self, dir: &str) -> io::Result<Vec<String>>;

    /// Removes a file. Removing a file that does not exist is not an error.
    fn remove(&self, path: &str) -> io::Result<()>;

    /// Removes a directory and everything under it. A missing directory is not an error.
    fn remove_dir_all(&self, dir: &str) -> io::Result<()>;

    /// When the file was last written, Unix milliseconds (for retention).
    fn modified_ms(&self, path: &str) -> io::Result<i64>;

    /// Space on the volume.
    fn disk_usage(&self) -> io::Result<DiskUsage>;

    /// Bytes the tree's files occupy on the volume (allocated, not their nominal sizes): what
    /// a capacity cap (`RetentionConfig::capacity_bytes`) counts as used.
    fn occupied_bytes(&self) -> io::Result<u64>;

    /// Extra time a sync of a log file takes on this volume, beyond the call itself: zero for
    /// a real disk (its syncs take the time they take). The simulation sets it to model a slow
    /// disk; the CommitLog's flusher waits it out, in the runtime's (simulated) time, before
    /// each sync, since a blocking call cannot advance simulated time.
    fn sync_latency(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// One fixed-capacity file.
pub trait StorageFile: Send + Sync + std::fmt::Debug + 'static {
    fn capacity(&self) -> u64;

    /// Writes `data` at `offset`; the range must lie within the capacity. Not durable until a
    /// [`StorageFile::sync_range`] covering it returns.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;

    /// Fills `buf` from `offset`; the range must lie within the capacity.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Hands `f` the bytes of `[offset, offset + len)` where they lie, for a reader that looks
    /// at them once (a checksum, a copy of a part): a mapped file lends its mapping, with no
    /// copy. The range must lie within the capacity. This default copies through `read_at`.
    fn read_in_place(&self, offset: u64, len: usize, f: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        let mut buf = vec![0u8; len];
        self.read_at(offset, &mut buf)?;
        f(&buf);
        Ok(())
    }

    /// Makes `[offset, offset + len)` durable. An error means the disk said no: the caller
    /// must not report anything in that range as durable (STYLE.md rule 9).
    fn sync_range(&self, offset: u64, len: u64) -> io::Result<()>;
}

/// Checks that `[offset, offset + len)` lies within `capacity`.
pub(crate) fn check_range(capacity: u64, offset: u64, len: u64) -> io::Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("range {offset}+{len} is outside the file's {capacity} bytes"),
        )),
    }
}

/// Joins a directory and a name into a storage path.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// Reads a whole small file into memory.
pub fn read_all<F: StorageFile + ?Sized>(file: &F) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; file.capacity() as usize];
    file.read_at(0, &mut buf)?;
    Ok(buf)
}

/// Shared handle to a file.
pub type FileRef<S> = Arc<<S as Storage>::File>;
