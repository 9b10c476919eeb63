//! One concept, one type (STYLE.md rule 5): positions in the CommitLog, offsets in a
//! ConsumeQueue and Raft indexes never travel as bare integers across module edges.

use std::fmt;

/// A byte position in the CommitLog (RocketMQ's "physical offset").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct CommitLogOffset(pub u64);

/// A position in one ConsumeQueue: the n-th message of a topic queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct QueueOffset(pub u64);

/// A Raft log index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RaftIndex(pub u64);

impl RaftIndex {
    pub fn next(self) -> RaftIndex {
        RaftIndex(self.0 + 1)
    }
}

macro_rules! display {
    ($($t:ident),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}
display!(CommitLogOffset, QueueOffset, RaftIndex);

/// A file name made of a 20-digit zero-padded number, as RocketMQ names CommitLog and
/// ConsumeQueue files by their start offset.
pub fn offset_file_name(offset: u64) -> String {
    format!("{offset:020}")
}

/// Parses a 20-digit file name; anything else is `None` (and ignored by directory scans).
pub fn parse_offset_file_name(name: &str) -> Option<u64> {
    (name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit())).then(|| name.parse().ok())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_twenty_digits() {
        assert_eq!(offset_file_name(1_073_741_824), "00000000001073741824");
        assert_eq!(parse_offset_file_name("00000000001073741824"), Some(1_073_741_824));
        assert_eq!(parse_offset_file_name("00000000001073741824.idx"), None);
        assert_eq!(parse_offset_file_name("checkpoint"), None);
    }
}
