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
