//! [`Storage`] over real files mapped with memmap2, read through the mapping. Two ways to write:
//! - a file opened with `create`/`open`: memcpy into the mapping, made durable by `msync` of
//!   the range (`MmapRaw::flush_range`); for indexes and queues, small writes synced now and
//!   then;
//! - a log file (`create_log`/`open_log`, the CommitLog's segments): `pwrite` and `fdatasync`,
//!   the mapping read-only. Measured on ext4 (BENCHMARKS.md, "Writing the CommitLog"): a sync
//!   after every write costs less this way, since `msync` has to write-protect the mapped pages
//!   again (a TLB shootdown on every CPU per sync) and every first write to a page faults.
//!
//! A file written through its mapping has its disk blocks taken (`fallocate`) ahead of the
//! writes: a store into a mapped page with no block behind it on a full disk is a SIGBUS that
//! kills the process, where a failed `fallocate` is an error the caller handles. (Log files
//! need none: `pwrite` answers ENOSPC.)
//!
//! Every mapping is advised `MADV_RANDOM`. Without it, page faults read around the faulting
//! page in large folios, including the part of a file not yet written; a later write dirties the
//! whole folio and the next sync writes it all back: measured, a 1 KiB write + sync cost 4 KiB
//! of device writes on a fresh file and 2 MiB after 60 MB. Creating or removing a file also
//! fsyncs its directory.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use memmap2::{Advice, MmapOptions, MmapRaw};

use super::{check_range, DiskUsage, Storage, StorageFile};

/// Files under one root directory.
#[derive(Debug, Clone)]
pub struct MmapStorage {
    root: PathBuf,
}

impl MmapStorage {
    /// Uses (and creates) `root`.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(MmapStorage { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// A mapped file. The mapping lives as long as the handle.
pub struct MmapFile {
    map: MmapRaw,
    capacity: u64,
    file: fs::File,
    /// A log file: writes go through `file` (`pwrite`), the mapping is read-only.
    log: bool,
    /// For a file written through its mapping: the bytes from 0 known to have disk blocks
    /// behind them. A store into a mapped page with no block behind it on a full disk is a
    /// SIGBUS that kills the process; blocks are taken ahead of the writes instead
    /// ([`RESERVE_STEP_BYTES`] at a time), so a full disk is an error of the write.
    reserved: AtomicU64,
}

/// How far ahead of a mapped write disk blocks are taken: one `fallocate` per this many bytes
/// written in order (a ConsumeQueue file, an IndexFile's entries).
pub const RESERVE_STEP_BYTES: u64 = 1 << 20;

impl std::fmt::Debug for MmapFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmapFile")
            .field("capacity", &self.capacity)
            .field("log", &self.log)
            .finish()
    }
}

impl MmapFile {
    fn map(file: fs::File, log: bool) -> io::Result<MmapFile> {
        let capacity = file.metadata()?.len();
        if capacity == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "cannot map an empty file"));
        }
        let map = if log {
            MmapOptions::new().map_raw_read_only(&file)?
        } else {
            MmapRaw::map_raw(&file)?
        };
        map.advise(Advice::Random)?;
        Ok(MmapFile { map, capacity, file, log, reserved: AtomicU64::new(0) })
    }

    /// Takes disk blocks for `[0, end)` (rounded up to the next step) unless it has them.
    /// A volume that cannot allocate ahead (no `fallocate`) is written as before.
    fn reserve(&self, end: u64) -> io::Result<()> {
        let reserved = self.reserved.load(Ordering::Relaxed);
        if end <= reserved {
            return Ok(());
        }
        let to = end.div_ceil(RESERVE_STEP_BYTES).saturating_mul(RESERVE_STEP_BYTES);
        let to = to.min(self.capacity);
        // SAFETY: plain syscall on a descriptor we own; the range lies within the file, so
        // its size does not change.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                0,
                reserved as libc::off_t,
                (to - reserved) as libc::off_t,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {}
                _ => return Err(e),
            }
            self.reserved.store(self.capacity, Ordering::Relaxed);
            return Ok(());
        }
        self.reserved.store(to, Ordering::Relaxed);
        Ok(())
    }
}

impl StorageFile for MmapFile {
    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        check_range(self.capacity, offset, data.len() as u64)?;
        if self.log {
            return self.file.write_all_at(data, offset);
        }
        self.reserve(offset + data.len() as u64)?;
        // SAFETY: the range is inside the mapping (checked above); the mapping is writable and
        // lives as long as `self`. The Storage contract (one writer per file, no reader of a
        // range while it is written) rules out overlapping concurrent access.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.map.as_mut_ptr().add(offset as usize),
                data.len(),
            );
        }
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check_range(self.capacity, offset, buf.len() as u64)?;
        // SAFETY: as in write_at; `buf` is ours and cannot overlap the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(offset as usize),
                buf.as_mut_ptr(),
                buf.len(),
            );
        }
        Ok(())
    }

    fn read_in_place(&self, offset: u64, len: usize, f: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        check_range(self.capacity, offset, len as u64)?;
        // SAFETY: the range is inside the mapping, which lives as long as `self` (and so for
        // the whole call). As for `read_at`, the Storage contract keeps writers off a range
        // while it is read, so the slice does not change under `f`.
        let bytes =
            unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(offset as usize), len) };
        f(bytes);
        Ok(())
    }

    fn sync_range(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self.capacity, offset, len)?;
        if len == 0 {
            return Ok(());
        }
        if self.log {
            // The file's written pages are few (it is synced after almost every write), so
            // syncing them all is syncing the range.
            self.file.sync_data()
        } else {
            self.map.flush_range(offset as usize, len as usize)
        }
    }
}

impl MmapStorage {
    fn create_file(&self, path: &str, capacity_bytes: u64, log: bool) -> io::Result<Arc<MmapFile>> {
        let full = self.path(path);
        let parent = full.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&parent)?;
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&full)?;
        file.set_len(capacity_bytes)?;
        file.sync_all()?;
        sync_dir(&parent)?;
        Ok(Arc::new(MmapFile::map(file, log)?))
    }

    fn open_file(&self, path: &str, log: bool) -> io::Result<Arc<MmapFile>> {
        let file = OpenOptions::new().read(true).write(true).open(self.path(path))?;
        Ok(Arc::new(MmapFile::map(file, log)?))
    }
}

impl Storage for MmapStorage {
    type File = MmapFile;

    fn create(&self, path: &str, capacity_bytes: u64) -> io::Result<Arc<MmapFile>> {
        self.create_file(path, capacity_bytes, false)
    }

    fn open(&self, path: &str) -> io::Result<Arc<MmapFile>> {
        self.open_file(path, false)
    }

    fn create_log(&self, path: &str, capacity_bytes: u64) -> io::Result<Arc<MmapFile>> {
        self.create_file(path, capacity_bytes, true)
    }

    fn open_log(&self, path: &str) -> io::Result<Arc<MmapFile>> {
        self.open_file(path, true)
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        match fs::read_dir(self.path(dir)) {
            Ok(entries) => {
                for e in entries {
                    if let Some(name) = e?.file_name().to_str() {
                        names.push(name.to_owned());
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        names.sort();
        Ok(names)
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        let full = self.path(path);
        match fs::remove_file(&full) {
            Ok(()) => sync_dir(full.parent().unwrap_or(&self.root)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn remove_dir_all(&self, dir: &str) -> io::Result<()> {
        let full = self.path(dir);
        match fs::remove_dir_all(&full) {
            Ok(()) => sync_dir(full.parent().unwrap_or(&self.root)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn modified_ms(&self, path: &str) -> io::Result<i64> {
        let modified = fs::metadata(self.path(path))?.modified()?;
        Ok(modified
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0))
    }

    fn occupied_bytes(&self) -> io::Result<u64> {
        fn walk(dir: &Path, total: &mut u64) -> io::Result<()> {
            let entries = match fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            for e in entries {
                let e = e?;
                let meta = match e.metadata() {
                    Ok(m) => m,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue, // just removed
                    Err(err) => return Err(err),
                };
                // st_blocks counts 512-byte units whatever the filesystem's block size.
                *total += meta.blocks() * 512;
                if meta.is_dir() {
                    walk(&e.path(), total)?;
                }
            }
            Ok(())
        }
        let mut total = 0;
        walk(&self.root, &mut total)?;
        Ok(total)
    }

    fn disk_usage(&self) -> io::Result<DiskUsage> {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(self.root.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: c_path is a valid NUL-terminated string and st a valid out-pointer.
        let rc = unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: statvfs returned 0, so it filled the struct.
        let st = unsafe { st.assume_init() };
        #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
        let frsize = st.f_frsize as u64;
        #[allow(clippy::unnecessary_cast)]
        Ok(DiskUsage {
            total_bytes: st.f_blocks as u64 * frsize,
            free_bytes: st.f_bfree as u64 * frsize,
            available_bytes: st.f_bavail as u64 * frsize,
        })
    }
}
