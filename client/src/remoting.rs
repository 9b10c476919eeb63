//! The SDK's connections: the shared client side of `rocketraft-remoting` (one multiplexed
//! connection per address, opaque matching, timeouts, reconnection), its errors read as
//! [`ClientError`]s.

pub use rocketraft_remoting::client::{CallError, InboundHandler, Remoting, RemotingConfig};

use crate::error::ClientError;

impl From<CallError> for ClientError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Timeout { addr, what, timeout_ms } => {
                ClientError::Timeout { addr, what, timeout_ms }
            }
            CallError::Connect { addr, source } => ClientError::Connect { addr, source },
            CallError::ConnectionClosed { addr, what } => {
                ClientError::ConnectionClosed { addr, what }
            }
            CallError::Protocol { addr, source } => ClientError::Protocol { addr, source },
            CallError::Overloaded { what, max } => ClientError::Overloaded { what, max },
            CallError::Shutdown => ClientError::Shutdown,
        }
    }
}
