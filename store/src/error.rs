//! Store errors. API errors (a read past the end, a purged offset, a full disk) are values the
//! caller can act on; `Io` from a sync means the disk refused and nothing after it may be
//! reported durable (the caller stops: STYLE.md rule 9).

use std::io;

use thiserror::Error;

use crate::types::{CommitLogOffset, QueueOffset, RaftIndex};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("I/O error while {doing}: {source}")]
    Io {
        doing: String,
        #[source]
        source: io::Error,
    },
    /// Bytes on disk fail their checks. They are never served.
    #[error("corrupt data at CommitLog position {position}: {reason}")]
    Corrupt { position: CommitLogOffset, reason: String },
    /// The CommitLog was found damaged while this replica ran (a check failed on bytes its own
    /// index pointed to) and it was quarantined: it does not open again until repaired.
    #[error(
        "this replica's CommitLog is quarantined: {reason}. Its synced data is damaged, so it \
         must not vote or lead (it could vote away entries it acknowledged). To repair it from \
         its peers: move this data directory aside (keep it for diagnosis), start the replica \
         again on an empty one, and run `rocketraft cluster repair-replica` (README, \
         \"Repairing a quarantined replica\"). The marker is {marker}"
    )]
    Quarantined { reason: String, marker: String },
    /// A file other than the CommitLog is damaged.
    #[error("corrupt {what}: {reason}")]
    CorruptFile { what: String, reason: String },
    /// An index before the first or after the last entry.
    #[error("raft index {index} is outside the log [{first}, {last}]")]
    IndexOutOfRange { index: RaftIndex, first: RaftIndex, last: RaftIndex },
    /// A CommitLog position that was purged by retention.
    #[error("CommitLog position {position} was purged (the log now starts at {first})")]
    Purged { position: CommitLogOffset, first: CommitLogOffset },
    /// A CommitLog position at or past the end of what was written.
    #[error("CommitLog position {position} is past the end {end}")]
    PastEnd { position: CommitLogOffset, end: CommitLogOffset },
    /// Entries must follow the last one without a gap.
    #[error("cannot append raft index {got}: the next index is {expected}")]
    NotContiguous { expected: RaftIndex, got: RaftIndex },
    #[error("entry of {bytes} bytes exceeds the limit of {max_bytes} bytes")]
    EntryTooLarge { bytes: usize, max_bytes: usize },
    #[error("invalid entry payload: {reason}")]
    BadPayload { reason: String },
    /// Writes are refused above the disk-usage limit (`disk_max_used_ratio`).
    #[error("disk is {used_percent:.1}% full (limit {limit_percent:.1}%): writes are refused until retention frees space")]
    DiskFull { used_percent: f64, limit_percent: f64 },
    #[error("queue offset {offset} is not in [{min}, {max})")]
    QueueOffsetOutOfRange { offset: QueueOffset, min: QueueOffset, max: QueueOffset },
    #[error("ConsumeQueue {topic}/{queue_id} expects offset {expected}, got {got}")]
    QueueGap { topic: String, queue_id: i32, expected: QueueOffset, got: QueueOffset },
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A sync of the CommitLog failed earlier. The kernel may have dropped the unsynced pages
    /// and a later sync would then succeed without them, so nothing written since the last
    /// durable point can be trusted: the log takes no more writes and reports nothing more
    /// durable. The replica must stop; recovery at restart re-reads what is really on disk.
    #[error("an earlier sync of the CommitLog failed ({reason}): it takes no more writes; restart the replica")]
    SyncFailed { reason: String },
    /// A committed record dispatch cannot index (`admit::check_record` fails). The leader checks
    /// every record before proposing it, so this is a bug, not bad input: the replica stops.
    #[error("committed record at CommitLog position {position} cannot be indexed: {reason}")]
    Unindexable { position: CommitLogOffset, reason: String },
    /// A topic name that cannot be a ConsumeQueue directory.
    #[error("topic {topic:?} cannot name a ConsumeQueue directory: {reason}")]
    BadQueueName { topic: String, reason: String },
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Attaches what was being done to an io::Error.
pub(crate) trait IoContext<T> {
    fn doing(self, what: impl FnOnce() -> String) -> StoreResult<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn doing(self, what: impl FnOnce() -> String) -> StoreResult<T> {
        self.map_err(|source| StoreError::Io { doing: what(), source })
    }
}

impl StoreError {
    /// True when the error came from the disk refusing a write or a sync: the process must
    /// not continue as if the data were durable.
    pub fn is_fatal_io(&self) -> bool {
        matches!(self, StoreError::Io { .. })
    }
}
