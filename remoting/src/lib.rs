//! RocketMQ remoting over TCP, on `protocol`'s pure codec: the server every RocketRaft server
//! runs on (the broker and the NameServer), and the client side (multiplexed connections) the
//! SDK and the broker's registration with the NameServers use.
//!
//! ```text
//! accept loop --(connection limit)--> per connection:
//!   reader: 64 KiB reads -> FrameDecoder (frame limit, checked from the length prefix) ->
//!           a request task per frame (in-flight limit; beyond it SYSTEM_BUSY), or one at a
//!           time in arrival order (`ordered`); pauses while the answers queued for the
//!           connection pass `queued_response_bytes_max`; closes after `idle_timeout_ms`
//!           without a frame or an answer
//!   writer: answers encoded by their tasks, queued, written together (one syscall per batch
//!           of up to 64 KiB), also requests the server sends (notifications)
//! ```

pub mod acl;
pub mod client;
pub mod http;
pub mod router;
pub mod server;
pub mod throttle;
pub mod tls;

pub use client::{CallError, InboundHandler, Remoting, RemotingConfig};
pub use router::{Answer, Guard, Processor, Router};
pub use server::{ConnId, Connections, Handler, Peer, Server, ServerCallError, ServerConfig};
