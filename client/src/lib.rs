//! The embedded client SDK of RocketRaft, speaking RocketMQ 4.x's remoting protocol (so it
//! works against Apache RocketMQ brokers too): producers (sync, async, oneway, batch; round
//! robin, sharding-key and custom queue selection; fast failover retry), push consumers
//! (clustering and broadcasting, concurrent and orderly listeners), a pull consumer, and the
//! admin calls the `rocketraft` command needs. Depends on `rocketraft-protocol` only and runs
//! under madsim as well as tokio. Maps whose iteration order affects what happens are
//! BTreeMaps: std's HashMap seeds its order per thread, which would make two simulated runs of
//! one seed in one thread differ.

pub mod admin;
mod clock;
pub mod consumer;
mod core;
pub mod error;
pub mod message;
pub mod producer;
pub mod remoting;
pub mod request;
pub mod route;
pub mod select;
pub mod transaction;

pub use crate::core::ClientConfig;
pub use admin::{Admin, ParkedQueue};
pub use consumer::{
    ConsumeFrom, ConsumeResult, MessageListener, PullConsumer, PullConsumerConfig, PushConsumer,
    PushConsumerConfig, QueueChange, QueueListener, Selector,
};
pub use error::{ClientError, Result};
pub use message::{Message, MessageExt};
pub use producer::{Producer, ProducerConfig, SendHandle, SendResult, SendStatus};
pub use rocketraft_protocol::acl::Credentials;
pub use rocketraft_protocol::body::{MessageModel, MessageQueue};
pub use rocketraft_remoting::tls::ClientTls;
pub use select::Allocation;
pub use transaction::{
    TransactionListener, TransactionProducer, TransactionSendResult, TransactionState,
};

/// Locks a mutex whose data stays consistent even if a holder panicked (every critical
/// section here is a few map operations), so a panicking listener cannot poison the client.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
