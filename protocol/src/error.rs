//! The one error type of the codec. Every decoder in this crate returns it for bad bytes:
//! nothing here panics on input from the network or the disk, and nothing allocates more than
//! the input it was given.

use thiserror::Error;

/// Why bytes could not be decoded, or a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// The frame (length prefix included) is larger than the configured limit.
    #[error("frame of {frame_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    FrameTooLarge { frame_bytes: u64, max_bytes: usize },
    /// The length prefix cannot even hold the 4-byte header-length field.
    #[error("frame length {length} is smaller than the 4-byte header-length field")]
    FrameTooSmall { length: i64 },
    /// The header length is larger than what the frame holds after it.
    #[error("bad header length {header_bytes}: the frame has only {available_bytes} bytes left")]
    BadHeaderLength { header_bytes: usize, available_bytes: usize },
    /// The serialization type byte is neither JSON (0) nor ROCKETMQ (1).
    #[error("unknown header serialization type {0}")]
    UnknownSerializeType(u8),
    /// The header does not fit in the 24 bits the frame gives it.
    #[error("header of {header_bytes} bytes does not fit in a frame's 24-bit header length")]
    HeaderTooLarge { header_bytes: usize },
    /// A request or response code that the ROCKETMQ binary header cannot carry (it is 16 bits).
    #[error("code {code} does not fit in the ROCKETMQ binary header's 16-bit code field")]
    CodeOutOfRange { code: i32 },
    /// A binary structure ended before a field it announces.
    #[error(
        "{what} truncated: needs {needed_bytes} bytes at offset {offset}, has {available_bytes}"
    )]
    Truncated { what: &'static str, offset: usize, needed_bytes: usize, available_bytes: usize },
    /// A length field holds a negative or otherwise impossible value.
    #[error("{what} has an invalid length {length}")]
    InvalidLength { what: &'static str, length: i64 },
    /// Text that must be UTF-8 is not.
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 { what: &'static str },
    /// JSON that does not parse or does not have the expected shape.
    #[error("invalid JSON in {what}: {reason}")]
    InvalidJson { what: &'static str, reason: String },
    /// A header field the request needs is absent.
    #[error("the custom field {field} is null")]
    MissingField { field: &'static str },
    /// A header field is present but cannot be parsed as its type.
    #[error("header field {field} has an invalid value {value:?}: expected {expected}")]
    InvalidField { field: &'static str, value: String, expected: &'static str },
    /// A magic code that is not one of the known record layouts.
    #[error("{what}: unknown magic code {magic:#010x}")]
    BadMagic { what: &'static str, magic: u32 },
    /// A checksum mismatch.
    #[error("{what}: crc mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    CrcMismatch { what: &'static str, stored: u32, computed: u32 },
    /// A value is out of the range the format allows (e.g. a topic longer than its length field).
    #[error("{what}: {reason}")]
    OutOfRange { what: &'static str, reason: String },
    /// A message id string that is not one of the known id layouts.
    #[error("invalid message id {id:?}: {reason}")]
    InvalidMessageId { id: String, reason: &'static str },
}

/// Shorthand for results of this crate.
pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;

impl ProtocolError {
    pub(crate) fn json(what: &'static str, err: impl std::fmt::Display) -> Self {
        ProtocolError::InvalidJson { what, reason: err.to_string() }
    }
}
