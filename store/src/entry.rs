//! CommitLog entry framing: one Raft entry as it sits in a segment.
//!
//! ```text
//! offset  size  field
//!  0      4     magic       0x5252_4C47 ("RRLG")
//!  4      4     size        header + payload bytes
//!  8      8     index       Raft log index
//! 16      8     term        Raft term of the leader that created the entry
//! 24      8     leader      node id of that leader (openraft's LogId.leader_id)
//! 32      1     kind        0 blank, 1 messages, 2 metadata command, 3 membership
//! 33      3     reserved    zero
//! 36      4     prev_crc    crc of the entry before this one (0 for the first entry ever)
//! 40      4     crc         CRC32 (IEEE) of bytes [0, 40) and of the payload
//! 44      ...   payload     kind 1: RocketMQ message records back to back (ref §3.1)
//! ```
//!
//! All integers are big-endian. `prev_crc` chains every entry to the one before it, so a
//! recovery scan cannot continue from new entries into stale bytes left behind by a truncation
//! or a torn write: a stale entry does not chain. A segment ends with a filler when the next
//! entry does not fit: magic 0x5252_4650 ("RRFP") and size = the bytes to the segment end
//! (only written when at least 8 bytes remain).

use bytes::Bytes;

use crate::error::{StoreError, StoreResult};
use crate::types::{CommitLogOffset, RaftIndex};

pub const ENTRY_MAGIC: u32 = 0x5252_4C47;
pub const FILLER_MAGIC: u32 = 0x5252_4650;
pub const ENTRY_HEADER_BYTES: usize = 44;
/// The smallest tail a segment keeps for a filler.
pub const FILLER_MIN_BYTES: u64 = 8;
const CRC_POS: usize = 40;

/// What an entry's payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// openraft's blank entry (a new leader's first entry).
    Blank,
    /// RocketMQ message records back to back.
    Messages,
    /// A metadata command (topics, groups, offsets), encoded by the Raft layer.
    Metadata,
    /// A membership change, encoded by the Raft layer.
    Membership,
}

impl EntryKind {
    pub fn code(self) -> u8 {
        match self {
            EntryKind::Blank => 0,
            EntryKind::Messages => 1,
            EntryKind::Metadata => 2,
            EntryKind::Membership => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<EntryKind> {
        match code {
            0 => Some(EntryKind::Blank),
            1 => Some(EntryKind::Messages),
            2 => Some(EntryKind::Metadata),
            3 => Some(EntryKind::Membership),
            _ => None,
        }
    }
}

/// One Raft entry as the CommitLog stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub index: RaftIndex,
    pub term: u64,
    pub leader: u64,
    pub kind: EntryKind,
    pub payload: Bytes,
}

impl LogEntry {
    /// The stored size of this entry.
    pub fn stored_len(&self) -> usize {
        ENTRY_HEADER_BYTES + self.payload.len()
    }
}

/// The identity of an entry: what openraft calls its LogId, plus where it is and its crc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    pub index: RaftIndex,
    pub term: u64,
    pub leader: u64,
    pub kind: EntryKind,
    pub position: CommitLogOffset,
    pub size: u32,
    pub crc: u32,
    pub prev_crc: u32,
}

impl EntryMeta {
    /// The position just after this entry.
    pub fn end(&self) -> CommitLogOffset {
        CommitLogOffset(self.position.0 + u64::from(self.size))
    }
}

fn crc_of(header_before_crc: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header_before_crc);
    h.update(payload);
    h.finalize()
}

/// Encodes `entry` for `position` with `prev_crc`, into `out` (cleared first). Message records
/// in the payload get their PHYSICALOFFSET set to their real position, so every replica that
/// appends the same entry at the same position writes the same bytes.
/// A payload whose records do not decode is refused (record size limits are the leader's
/// admission check: every replica takes whatever a majority committed).
pub fn encode(
    entry: &LogEntry,
    position: CommitLogOffset,
    prev_crc: u32,
    out: &mut Vec<u8>,
) -> StoreResult<EntryMeta> {
    let size = u32::try_from(entry.stored_len()).map_err(|_| StoreError::EntryTooLarge {
        bytes: entry.stored_len(),
        max_bytes: u32::MAX as usize,
    })?;
    out.clear();
    out.reserve(size as usize);
    out.extend_from_slice(&ENTRY_MAGIC.to_be_bytes());
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&entry.index.0.to_be_bytes());
    out.extend_from_slice(&entry.term.to_be_bytes());
    out.extend_from_slice(&entry.leader.to_be_bytes());
    out.extend_from_slice(&[entry.kind.code(), 0, 0, 0]);
    out.extend_from_slice(&prev_crc.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&entry.payload);
    if entry.kind == EntryKind::Messages {
        let payload_position = position.0 + ENTRY_HEADER_BYTES as u64;
        patch_record_offsets(&mut out[ENTRY_HEADER_BYTES..], payload_position)?;
    }
    let crc = crc_of(&out[..CRC_POS], &out[ENTRY_HEADER_BYTES..]);
    out[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(EntryMeta {
        index: entry.index,
        term: entry.term,
        leader: entry.leader,
        kind: entry.kind,
        position,
        size,
        crc,
        prev_crc,
    })
}

/// Walks the records of a messages payload and writes each one's position into it.
fn patch_record_offsets(payload: &mut [u8], payload_position: u64) -> StoreResult<()> {
    use rocketraft_protocol::message::{patch_physical_offset, RecordView};
    let mut at = 0;
    while at < payload.len() {
        let size = RecordView::decode(&payload[at..])
            .map_err(|e| StoreError::BadPayload { reason: e.to_string() })?
            .total_size;
        patch_physical_offset(&mut payload[at..], (payload_position + at as u64) as i64);
        at += size;
    }
    Ok(())
}

/// What a header says, before the payload is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// An entry header with its fields; its crc is not checked yet.
    Entry {
        size: u32,
        index: u64,
        term: u64,
        leader: u64,
        kind: EntryKind,
        prev_crc: u32,
        crc: u32,
    },
    /// A segment-end filler of `size` bytes.
    Filler { size: u32 },
    /// Zeros: nothing was ever written here.
    Empty,
    /// Anything else: torn or corrupt.
    Invalid,
}

/// Parses a header from its first `ENTRY_HEADER_BYTES` (or 8, for a filler).
pub fn parse_header(b: &[u8]) -> Header {
    if b.len() < 8 {
        return Header::Invalid;
    }
    let u32_at = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let magic = u32_at(0);
    let size = u32_at(4);
    match magic {
        FILLER_MAGIC if size as u64 >= FILLER_MIN_BYTES => Header::Filler { size },
        ENTRY_MAGIC if b.len() >= ENTRY_HEADER_BYTES && size as usize >= ENTRY_HEADER_BYTES => {
            let u64_at = |at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]));
            match EntryKind::from_code(b[32]) {
                Some(kind) if b[33..36] == [0, 0, 0] => Header::Entry {
                    size,
                    index: u64_at(8),
                    term: u64_at(16),
                    leader: u64_at(24),
                    kind,
                    prev_crc: u32_at(36),
                    crc: u32_at(CRC_POS),
                },
                _ => Header::Invalid,
            }
        }
        0 if size == 0 => Header::Empty,
        _ => Header::Invalid,
    }
}

/// Checks an entry's bytes (header and payload) against its crc and decodes it.
pub fn decode(bytes: &[u8], position: CommitLogOffset) -> StoreResult<(EntryMeta, LogEntry)> {
    let meta = check(bytes, position)?;
    let entry = LogEntry {
        index: meta.index,
        term: meta.term,
        leader: meta.leader,
        kind: meta.kind,
        payload: Bytes::copy_from_slice(&bytes[ENTRY_HEADER_BYTES..]),
    };
    Ok((meta, entry))
}

/// Checks an entry's bytes (header and payload) against its crc, where they lie: what a reader
/// of a few of its records needs, without a copy of the payload.
pub fn check(bytes: &[u8], position: CommitLogOffset) -> StoreResult<EntryMeta> {
    let corrupt = |reason: &str| StoreError::Corrupt { position, reason: reason.to_owned() };
    let Header::Entry { size, index, term, leader, kind, prev_crc, crc } = parse_header(bytes)
    else {
        return Err(corrupt("not an entry header"));
    };
    if size as usize != bytes.len() {
        return Err(corrupt("entry size does not match the bytes read"));
    }
    let computed = crc_of(&bytes[..CRC_POS], &bytes[ENTRY_HEADER_BYTES..]);
    if computed != crc {
        return Err(corrupt(&format!(
            "crc mismatch (stored {crc:#010x}, computed {computed:#010x})"
        )));
    }
    Ok(EntryMeta { index: RaftIndex(index), term, leader, kind, position, size, crc, prev_crc })
}

/// The 8 bytes of a filler that covers `size` bytes.
pub fn filler(size: u64) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&FILLER_MAGIC.to_be_bytes());
    b[4..].copy_from_slice(&(size.min(u32::MAX as u64) as u32).to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: EntryKind, payload: &[u8]) -> LogEntry {
        LogEntry {
            index: RaftIndex(9),
            term: 3,
            leader: 2,
            kind,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn encode_then_decode_is_the_identity() {
        let e = entry(EntryKind::Metadata, b"cmd");
        let mut out = Vec::new();
        let meta = encode(&e, CommitLogOffset(100), 77, &mut out).unwrap();
        assert_eq!(out.len(), ENTRY_HEADER_BYTES + 3);
        let (m2, e2) = decode(&out, CommitLogOffset(100)).unwrap();
        assert_eq!((m2, e2), (meta, e));
        assert_eq!(meta.prev_crc, 77);
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let e = entry(EntryKind::Metadata, b"payload!");
        let mut out = Vec::new();
        encode(&e, CommitLogOffset(0), 0, &mut out).unwrap();
        for byte in 0..out.len() {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[byte] ^= 1 << bit;
                assert!(decode(&bad, CommitLogOffset(0)).is_err(), "byte {byte} bit {bit}");
                assert!(check(&bad, CommitLogOffset(0)).is_err(), "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn message_payloads_get_their_positions() {
        use rocketraft_protocol::message::{MessageRecord, RecordView};
        let rec = MessageRecord {
            physical_offset: -1,
            body: Bytes::from_static(b"x"),
            topic: "T".into(),
            ..Default::default()
        };
        let mut payload = rec.encode().unwrap();
        let second_at = payload.len();
        payload.extend(rec.encode().unwrap());
        let mut out = Vec::new();
        encode(&entry(EntryKind::Messages, &payload), CommitLogOffset(1000), 0, &mut out).unwrap();
        let first = RecordView::decode(&out[ENTRY_HEADER_BYTES..]).unwrap();
        let second = RecordView::decode(&out[ENTRY_HEADER_BYTES + second_at..]).unwrap();
        assert_eq!(first.physical_offset, 1000 + ENTRY_HEADER_BYTES as i64);
        assert_eq!(second.physical_offset, 1000 + (ENTRY_HEADER_BYTES + second_at) as i64);
        let bad =
            encode(&entry(EntryKind::Messages, b"not a record"), CommitLogOffset(0), 0, &mut out);
        assert!(matches!(bad, Err(StoreError::BadPayload { .. })));
    }

    #[test]
    fn headers_classify_zeros_fillers_and_garbage() {
        assert_eq!(parse_header(&[0; 44]), Header::Empty);
        assert_eq!(parse_header(&filler(100)), Header::Filler { size: 100 });
        assert_eq!(parse_header(&[0xAB; 44]), Header::Invalid);
        assert_eq!(parse_header(&[0; 3]), Header::Invalid);
    }
}
