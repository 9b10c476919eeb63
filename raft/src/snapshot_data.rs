//! The bytes of a snapshot as openraft moves them between replicas ([`SnapshotData`]).
//!
//! On the wire a snapshot is a head (the state: metadata, queues, the cut where the log goes
//! on) and then its history: the sender's CommitLog from its first retained entry up to the
//! cut, byte for byte. A follower that installs it copies the history into its own log, so it
//! holds what its leader holds (a consumer behind the cut still finds its messages after a
//! failover), not only what follows the cut: DLedger's model, a replica's log is its leader's.
//!
//! The head is small and kept in memory. The history can be as large as the retained log, so
//! the sender reads it from the log as openraft asks for chunks (the entries stay pinned
//! against retention meanwhile), and the receiver spools it to files under `snapshot-in/`.
//! Reads and writes are plain file I/O done in place, like every other CommitLog access.

use std::io::{self, SeekFrom};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rocketraft_store::io::{join, Storage, StorageFile};
use rocketraft_store::{CommitLog, CommitLogOffset, RaftIndex};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

use crate::log_store::lock;

/// Where a follower spools a snapshot it receives.
pub(crate) const SPOOL_DIR: &str = "snapshot-in";

/// A snapshot's bytes: openraft's `SnapshotData`.
pub struct SnapshotData {
    bytes: Bytes,
    pos: u64,
}

enum Bytes {
    /// Kept in memory: a snapshot with no history (just built; a legacy one).
    Memory(Vec<u8>),
    /// What a leader sends: the head, then its log's bytes from `from` on.
    Outgoing { head: Vec<u8>, history: PinnedHistory },
    /// What a follower receives.
    Incoming(Arc<dyn Spool>),
}

impl std::fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.bytes {
            Bytes::Memory(_) => "memory",
            Bytes::Outgoing { .. } => "outgoing",
            Bytes::Incoming(_) => "incoming",
        };
        write!(f, "SnapshotData({kind}, {} bytes)", self.len())
    }
}

impl SnapshotData {
    pub(crate) fn memory(bytes: Vec<u8>) -> Self {
        SnapshotData { bytes: Bytes::Memory(bytes), pos: 0 }
    }

    /// A head followed by `history`.
    pub(crate) fn outgoing(head: Vec<u8>, history: PinnedHistory) -> Self {
        SnapshotData { bytes: Bytes::Outgoing { head, history }, pos: 0 }
    }

    /// An empty snapshot spooled to files of `part_bytes` under [`SPOOL_DIR`] (anything
    /// spooled there before is removed).
    pub(crate) fn incoming<S: Storage>(storage: S, part_bytes: u64) -> io::Result<Self> {
        storage.remove_dir_all(SPOOL_DIR)?;
        let spool = FileSpool { storage, part_bytes, parts: Mutex::new(Vec::new()), len: 0.into() };
        Ok(SnapshotData { bytes: Bytes::Incoming(Arc::new(spool)), pos: 0 })
    }

    /// The snapshot spooled under [`SPOOL_DIR`] by an earlier receive, `len` bytes of it:
    /// what an install a crash interrupted is done again from.
    pub(crate) fn spooled<S: Storage>(storage: S, len: u64) -> io::Result<Self> {
        let mut names = storage.list(SPOOL_DIR)?;
        names.sort();
        let mut parts = Vec::with_capacity(names.len());
        let mut part_bytes = 0;
        for name in &names {
            let name = name.rsplit('/').next().unwrap_or(name);
            let file = storage.open_log(&join(SPOOL_DIR, name))?;
            part_bytes = file.capacity();
            let start = parts.len() as u64 * part_bytes;
            if name.parse::<u64>().ok() != Some(start) {
                return Err(io::Error::other(format!(
                    "the spooled snapshot's part {name} is not the one expected at {start}"
                )));
            }
            parts.push(file);
        }
        if parts.len() as u64 * part_bytes < len {
            return Err(io::Error::other(format!(
                "the spooled snapshot holds {} of its {len} bytes",
                parts.len() as u64 * part_bytes
            )));
        }
        let spool = FileSpool { storage, part_bytes, parts: Mutex::new(parts), len: len.into() };
        Ok(SnapshotData { bytes: Bytes::Incoming(Arc::new(spool)), pos: 0 })
    }

    /// Whether the snapshot was received into files (and so an install can be done again from
    /// them after a crash).
    pub(crate) fn is_spooled(&self) -> bool {
        matches!(self.bytes, Bytes::Incoming(_))
    }

    /// Makes a received snapshot's bytes durable; other kinds have nothing to sync.
    pub(crate) fn sync(&self) -> io::Result<()> {
        match &self.bytes {
            Bytes::Incoming(spool) => spool.sync(),
            _ => Ok(()),
        }
    }

    pub(crate) fn len(&self) -> u64 {
        match &self.bytes {
            Bytes::Memory(v) => v.len() as u64,
            Bytes::Outgoing { head, history } => head.len() as u64 + history.len,
            Bytes::Incoming(spool) => spool.len(),
        }
    }

    /// Fills `buf` from `at`; the range must lie within [`SnapshotData::len`].
    pub(crate) fn read_at(&self, at: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = at.checked_add(buf.len() as u64).filter(|e| *e <= self.len());
        if end.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("snapshot read {at}+{} past its {} bytes", buf.len(), self.len()),
            ));
        }
        match &self.bytes {
            Bytes::Memory(v) => {
                buf.copy_from_slice(&v[at as usize..at as usize + buf.len()]);
                Ok(())
            }
            Bytes::Outgoing { head, history } => {
                let head_len = head.len() as u64;
                let mut done = 0;
                if at < head_len {
                    done = (head_len - at).min(buf.len() as u64) as usize;
                    buf[..done].copy_from_slice(&head[at as usize..at as usize + done]);
                }
                if done < buf.len() {
                    let from = at + done as u64 - head_len;
                    history.read(from, &mut buf[done..])?;
                }
                Ok(())
            }
            Bytes::Incoming(spool) => spool.read_at(at, buf),
        }
    }

    fn write_at(&mut self, at: u64, data: &[u8]) -> io::Result<()> {
        match &mut self.bytes {
            Bytes::Memory(v) => {
                let end = at as usize + data.len();
                if v.len() < end {
                    v.resize(end, 0);
                }
                v[at as usize..end].copy_from_slice(data);
                Ok(())
            }
            Bytes::Outgoing { .. } => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a snapshot being sent is read-only",
            )),
            Bytes::Incoming(spool) => spool.write_at(at, data),
        }
    }
}

impl AsyncRead for SnapshotData {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = (buf.remaining() as u64).min(this.len().saturating_sub(this.pos)) as usize;
        if n > 0 {
            let dst = buf.initialize_unfilled_to(n);
            this.read_at(this.pos, &mut dst[..n])?;
            buf.advance(n);
            this.pos += n as u64;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SnapshotData {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.write_at(this.pos, data)?;
        this.pos += data.len() as u64;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        let to = match position {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => this.len().checked_add_signed(d),
            SeekFrom::Current(d) => this.pos.checked_add_signed(d),
        };
        this.pos = to.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before the snapshot's start")
        })?;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}

/// A log read from a snapshot being sent, type-erased (openraft's snapshot type names no
/// storage).
pub(crate) trait HistoryLog: Send + Sync {
    /// See `CommitLog::read_history`.
    fn read_history(
        &self,
        next: &mut (RaftIndex, u64),
        position: u64,
        buf: &mut [u8],
    ) -> io::Result<()>;
    fn unpin(&self, token: u64);
}

impl<S: Storage> HistoryLog for Mutex<CommitLog<S>> {
    fn read_history(
        &self,
        next: &mut (RaftIndex, u64),
        position: u64,
        buf: &mut [u8],
    ) -> io::Result<()> {
        let log = lock(self);
        log.read_history(next, CommitLogOffset(position), buf).map_err(io::Error::other)
    }

    fn unpin(&self, token: u64) {
        lock(self).unpin(token);
    }
}

/// `len` bytes of a log from position `from`, whose entries are pinned against retention
/// until this is dropped.
pub(crate) struct PinnedHistory {
    log: Arc<dyn HistoryLog>,
    token: u64,
    from: u64,
    len: u64,
    /// The first entry not checked yet (index, position): each is checked by crc before any
    /// of its bytes are read out.
    unchecked: Mutex<(RaftIndex, u64)>,
}

impl PinnedHistory {
    /// Pins `log`'s entries from `first` on; the caller holds the log's lock (so nothing is
    /// purged between reading where the history starts and the pin).
    pub(crate) fn pin<S: Storage>(
        log: &Arc<Mutex<CommitLog<S>>>,
        locked: &mut CommitLog<S>,
        first: RaftIndex,
        from: CommitLogOffset,
        len: u64,
    ) -> Self {
        let token = locked.pin_from(first);
        let log: Arc<dyn HistoryLog> = log.clone();
        let unchecked = Mutex::new((first, from.0));
        PinnedHistory { log, token, from: from.0, len, unchecked }
    }

    fn read(&self, at: u64, buf: &mut [u8]) -> io::Result<()> {
        self.log.read_history(&mut lock(&self.unchecked), self.from + at, buf)
    }
}

impl Drop for PinnedHistory {
    fn drop(&mut self) {
        self.log.unpin(self.token);
    }
}

/// Where a received snapshot's bytes go, type-erased like [`HistoryLog`].
trait Spool: Send + Sync {
    fn write_at(&self, at: u64, data: &[u8]) -> io::Result<()>;
    fn read_at(&self, at: u64, buf: &mut [u8]) -> io::Result<()>;
    fn len(&self) -> u64;
    fn sync(&self) -> io::Result<()>;
}

/// Files of `part_bytes` each, `snapshot-in/<20-digit start>`, made as writes reach them.
struct FileSpool<S: Storage> {
    storage: S,
    part_bytes: u64,
    parts: Mutex<Vec<Arc<S::File>>>,
    len: std::sync::atomic::AtomicU64,
}

impl<S: Storage> FileSpool<S> {
    /// Runs `f` on each (part, offset in it, range of the caller's buffer) that
    /// `[at, at + len)` covers, making parts as needed when `create`.
    fn each_part(
        &self,
        at: u64,
        len: usize,
        create: bool,
        mut f: impl FnMut(&S::File, u64, std::ops::Range<usize>) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut parts = lock(&self.parts);
        let mut done = 0usize;
        while done < len {
            let pos = at + done as u64;
            let i = (pos / self.part_bytes) as usize;
            while parts.len() <= i {
                if !create {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "past the spool"));
                }
                let start = parts.len() as u64 * self.part_bytes;
                let path = join(SPOOL_DIR, &format!("{start:020}"));
                parts.push(self.storage.create_log(&path, self.part_bytes)?);
            }
            let within = pos % self.part_bytes;
            let n = ((self.part_bytes - within) as usize).min(len - done);
            f(&parts[i], within, done..done + n)?;
            done += n;
        }
        Ok(())
    }
}

impl<S: Storage> Spool for FileSpool<S> {
    /// A write at 0 starts the snapshot over: openraft sends a snapshot from offset 0 again
    /// under the same id when a sending was cut off, and the second sending may be shorter
    /// (its history is the sender's log from its start as of then, which retention may have
    /// moved), so the length is what this sending writes, not the longest ever written.
    fn write_at(&self, at: u64, data: &[u8]) -> io::Result<()> {
        self.each_part(at, data.len(), true, |file, within, range| {
            file.write_at(within, &data[range])
        })?;
        let end = at + data.len() as u64;
        if at == 0 {
            self.len.store(end, std::sync::atomic::Ordering::Relaxed);
        } else {
            self.len.fetch_max(end, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    fn read_at(&self, at: u64, buf: &mut [u8]) -> io::Result<()> {
        let len = buf.len();
        self.each_part(at, len, false, |file, within, range| file.read_at(within, &mut buf[range]))
    }

    fn len(&self) -> u64 {
        self.len.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn sync(&self) -> io::Result<()> {
        for part in lock(&self.parts).iter() {
            part.sync_range(0, part.capacity())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rocketraft_store::io::sim::SimStorage;
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn a_snapshot_sent_again_from_its_start_is_as_long_as_the_second_sending() {
        let storage = SimStorage::new();
        let mut data = SnapshotData::incoming(storage.clone(), 1000).unwrap();
        data.write_at(0, &[1u8; 1500]).unwrap();
        data.write_at(1500, &[2u8; 1500]).unwrap();
        assert_eq!(data.len(), 3000);
        // Sent again, shorter: retention moved the sender's log start meanwhile.
        data.write_at(0, &[3u8; 1200]).unwrap();
        data.write_at(1200, &[4u8; 800]).unwrap();
        assert_eq!(data.len(), 2000);
        let mut back = vec![0u8; 2000];
        data.read_at(0, &mut back).unwrap();
        assert_eq!((back[0], back[1199], back[1200], back[1999]), (3, 3, 4, 4));
    }

    #[tokio::test]
    async fn a_spooled_snapshot_reads_back_what_was_written_across_parts() {
        let storage = SimStorage::new();
        let mut data = SnapshotData::incoming(storage.clone(), 1000).unwrap();
        let bytes: Vec<u8> = (0..3500u32).map(|i| (i * 7 % 251) as u8).collect();
        // Chunks as openraft writes them, one sent twice (a retried chunk).
        for (at, chunk) in [
            (0, &bytes[..1500]),
            (1500, &bytes[1500..2999]),
            (1500, &bytes[1500..2999]),
            (2999, &bytes[2999..]),
        ] {
            data.seek(SeekFrom::Start(at)).await.unwrap();
            data.write_all(chunk).await.unwrap();
        }
        assert_eq!(data.len(), 3500);
        assert_eq!(storage.list(SPOOL_DIR).unwrap().len(), 4, "parts of 1000 bytes");
        data.seek(SeekFrom::Start(0)).await.unwrap();
        let mut back = Vec::new();
        data.read_to_end(&mut back).await.unwrap();
        assert!(back == bytes, "read back differs");
        let mut past = [0u8; 10];
        assert!(data.read_at(3495, &mut past).is_err(), "a read past the end is an error");
        // A new receive starts from an empty spool.
        let again = SnapshotData::incoming(storage.clone(), 1000).unwrap();
        assert_eq!((again.len(), storage.list(SPOOL_DIR).unwrap().len()), (0, 0));
    }
}
