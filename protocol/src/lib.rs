//! RocketMQ 4.x remoting protocol as a pure codec: frames, headers in both serializations,
//! request and response codes, typed custom headers, JSON bodies, and the stored message
//! record with its ids and properties.
//!
//! This crate does no I/O and has no async: sockets wrap it elsewhere (STYLE.md rule 1).
//! Every decoder takes arbitrary bytes and answers with a value or a [`ProtocolError`]; none
//! panics or allocates beyond its input (fuzzed by `fuzz/`, property-tested here).

pub mod acl;
pub mod admin;
pub mod body;
pub mod code;
pub mod command;
pub mod error;
pub mod ext_fields;
pub mod frame;
pub mod header;
pub mod headers;
pub mod message;
pub mod names;
pub mod register;
pub mod schedule;
pub mod sysflag;

pub use body::{JsonBody, JsonStyle};
pub use code::{request_code, response_code, LanguageCode, SerializeType};
pub use command::RemotingCommand;
pub use error::{ProtocolError, Result};
pub use ext_fields::ExtFields;
pub use frame::{FrameDecoder, FRAME_MAX_BYTES_DEFAULT};
pub use header::CommandHeader;
