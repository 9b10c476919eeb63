//! The client's errors: what went wrong, where, and whether trying again could help.

use rocketraft_protocol::{response_code, ProtocolError};

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The peer did not answer within the call's timeout.
    #[error("{addr} did not answer {what} within {timeout_ms} ms")]
    Timeout { addr: String, what: &'static str, timeout_ms: u64 },
    /// No connection could be opened.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The connection closed (or broke) before the answer came.
    #[error("the connection to {addr} closed before {what} was answered")]
    ConnectionClosed { addr: String, what: &'static str },
    /// The peer sent bytes that are not the RocketMQ protocol.
    #[error("{addr} sent a malformed answer: {source}")]
    Protocol {
        addr: String,
        #[source]
        source: ProtocolError,
    },
    /// The broker or NameServer answered with an error code.
    #[error("{addr} answered {} ({code}): {remark}", response_code::name(*code).unwrap_or("unknown code"))]
    Broker { addr: String, code: i32, remark: String },
    /// No NameServer knows the topic, and auto-creation through the template topic is not
    /// possible either.
    #[error("no route to topic {topic}: {reason}")]
    NoRoute { topic: String, reason: String },
    /// Every attempt failed; `last` is the last attempt's error.
    #[error("send to {topic} failed after {attempts} attempts: {last}")]
    SendFailed { topic: String, attempts: u32, last: Box<ClientError> },
    /// A request was sent but no reply came within its timeout.
    #[error("the request {correlation_id} to {topic} was sent, but no reply came within {timeout_ms} ms")]
    NoReply { topic: String, correlation_id: String, timeout_ms: u64 },
    /// The message (or batch) is larger than the broker accepts.
    #[error("message of {bytes} bytes is larger than the {max_bytes}-byte limit")]
    MessageTooLarge { bytes: usize, max_bytes: usize },
    /// The caller passed something unusable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A bounded table or queue is full.
    #[error("too many {what} in flight (at most {max})")]
    Overloaded { what: &'static str, max: usize },
    /// The producer or consumer was shut down.
    #[error("the client is shut down")]
    Shutdown,
    /// A local file (broadcasting offsets) could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    /// The response code, when a broker or NameServer answered with one.
    pub fn code(&self) -> Option<i32> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether a producer should try another broker (RocketMQ's `retryResponseCodes` plus
    /// every transport failure).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Broker { code, .. } => matches!(
                *code,
                response_code::TOPIC_NOT_EXIST
                    | response_code::SERVICE_NOT_AVAILABLE
                    | response_code::SYSTEM_ERROR
                    | response_code::SYSTEM_BUSY
                    | response_code::NO_PERMISSION
                    | response_code::NO_BUYER_ID
                    | response_code::NOT_IN_CURRENT_UNIT
            ),
            ClientError::Timeout { .. }
            | ClientError::Connect { .. }
            | ClientError::ConnectionClosed { .. }
            | ClientError::Protocol { .. } => true,
            _ => false,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
