//! Errors of the Raft layer.

use thiserror::Error;

/// A value could not be encoded or decoded with bincode.
#[derive(Debug, Clone, Error)]
#[error("bincode: {0}")]
pub struct CodecError(pub String);

/// Errors of the metadata store.
#[derive(Debug, Error)]
pub enum MetaError {
    #[error("metadata store I/O: {0}")]
    Io(String),
    #[error("corrupt metadata under key {key:?}: {reason}")]
    Corrupt { key: String, reason: String },
}

impl From<CodecError> for MetaError {
    fn from(e: CodecError) -> Self {
        MetaError::Corrupt { key: String::new(), reason: e.0 }
    }
}

/// The leader's log replaces entries this replica has already applied: its group lost entries
/// that had been committed (async flush and a power loss of a majority; never in sync flush,
/// where a committed entry is on a majority's disks). The replica's queues and metadata include
/// what those entries changed and openraft never applies an index twice, so it cannot follow
/// the new log: it stops, and stays stopped, rather than serve state no other replica has.
#[derive(Debug, Clone, Error)]
#[error(
    "the leader's log replaces entries from index {since} on, and this replica applied up to \
     {applied}: its group lost committed entries (async flush and a power loss of a majority, \
     or a replica whose data was lost taken for a member), and this replica's queues and \
     metadata still hold what they changed. It stops rather than serve state its group no \
     longer has. Rebuild it from a peer: `rocketraft cluster remove-replica`, empty its data \
     directory, start it and `rocketraft cluster add-replica` (README, \"Replacing a machine\")"
)]
pub struct AppliedEntriesLost {
    pub since: u64,
    pub applied: u64,
}
