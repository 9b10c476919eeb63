//! A small record replaced atomically: two slots written alternately, each with a sequence
//! number and a crc. Reading takes the valid slot with the highest sequence, so a torn write
//! of one slot leaves the other, older record intact.
//!
//! ```text
//! slot (SLOT_BYTES each, two of them):  seq u64 | len u32 | data[len] | crc u32 (of seq,len,data)
//! ```

use std::sync::Arc;

use crate::error::{IoContext, StoreError, StoreResult};
use crate::io::{Storage, StorageFile};

/// Bytes per slot; a record may hold up to `SLOT_BYTES - 16`.
pub const SLOT_BYTES: u64 = 512;

/// One atomically replaced record.
pub struct RecordFile<S: Storage> {
    file: Arc<S::File>,
    path: String,
    seq: u64,
}

impl<S: Storage> RecordFile<S> {
    /// Opens `path`, creating it if missing; returns the file and its current record.
    pub fn open(storage: &S, path: &str) -> StoreResult<(Self, Option<Vec<u8>>)> {
        let file = match storage.open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                storage.create(path, 2 * SLOT_BYTES).doing(|| format!("creating {path}"))?
            }
            Err(e) => return Err(StoreError::Io { doing: format!("opening {path}"), source: e }),
        };
        if file.capacity() != 2 * SLOT_BYTES {
            return Err(StoreError::CorruptFile {
                what: path.to_owned(),
                reason: format!("size {} is not {}", file.capacity(), 2 * SLOT_BYTES),
            });
        }
        let mut best: Option<(u64, Vec<u8>)> = None;
        for slot in 0..2 {
            let mut buf = vec![0u8; SLOT_BYTES as usize];
            file.read_at(slot * SLOT_BYTES, &mut buf).doing(|| format!("reading {path}"))?;
            if let Some((seq, data)) = parse_slot(&buf) {
                if best.as_ref().is_none_or(|(s, _)| seq > *s) {
                    best = Some((seq, data));
                }
            }
        }
        let seq = best.as_ref().map_or(0, |(s, _)| *s);
        Ok((RecordFile { file, path: path.to_owned(), seq }, best.map(|(_, d)| d)))
    }

    /// Replaces the record durably.
    pub fn write(&mut self, data: &[u8]) -> StoreResult<()> {
        assert!(data.len() as u64 <= SLOT_BYTES - 16, "record larger than its slot");
        let seq = self.seq + 1;
        let mut buf = Vec::with_capacity(16 + data.len());
        buf.extend_from_slice(&seq.to_be_bytes());
        buf.extend_from_slice(&(data.len() as u32).to_be_bytes());
        buf.extend_from_slice(data);
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_be_bytes());
        let at = (seq % 2) * SLOT_BYTES;
        self.file.write_at(at, &buf).doing(|| format!("writing {}", self.path))?;
        self.file.sync_range(at, SLOT_BYTES).doing(|| format!("syncing {}", self.path))?;
        self.seq = seq;
        Ok(())
    }
}

fn parse_slot(buf: &[u8]) -> Option<(u64, Vec<u8>)> {
    let seq = u64::from_be_bytes(buf[0..8].try_into().ok()?);
    let len = u32::from_be_bytes(buf[8..12].try_into().ok()?) as usize;
    if seq == 0 || 12 + len + 4 > buf.len() {
        return None;
    }
    let crc = u32::from_be_bytes(buf[12 + len..16 + len].try_into().ok()?);
    (crc32fast::hash(&buf[..12 + len]) == crc).then(|| (seq, buf[12..12 + len].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::sim::{DropAllUnsynced, PowerLossPlan, SimStorage};

    #[test]
    fn latest_record_wins_and_a_torn_write_keeps_the_previous() {
        let s = SimStorage::new();
        let (mut f, none) = RecordFile::open(&s, "cp").unwrap();
        assert!(none.is_none());
        f.write(b"one").unwrap();
        f.write(b"two").unwrap();
        assert_eq!(RecordFile::open(&s, "cp").unwrap().1.as_deref(), Some(&b"two"[..]));
        // Tear the next write: its slot fails its crc, the previous record survives.
        let file = s.open("cp").unwrap();
        file.write_at(SLOT_BYTES, &[0xFF; 20]).unwrap(); // seq 3 goes to slot 1
        struct TearAll;
        impl PowerLossPlan for TearAll {
            fn keep(&mut self, _: &str, p: &[usize]) -> (usize, Option<usize>) {
                (p.len(), None)
            }
        }
        s.power_loss(&mut TearAll);
        assert_eq!(RecordFile::open(&s, "cp").unwrap().1.as_deref(), Some(&b"two"[..]));
        s.power_loss(&mut DropAllUnsynced);
        let (mut f, _) = RecordFile::open(&s, "cp").unwrap();
        f.write(b"three").unwrap();
        assert_eq!(RecordFile::open(&s, "cp").unwrap().1.as_deref(), Some(&b"three"[..]));
    }
}
