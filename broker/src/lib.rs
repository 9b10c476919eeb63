//! The broker: the remoting server and processors of a broker group replica, on top of its
//! Raft node (`rocketraft-raft`).
//!
//! ARCHITECTURE.md ("broker") has the map: processors per request family, the client
//! manager, registration with the NameServers, and delayed delivery (`schedule`).

pub mod admission;
pub mod broker_config;
pub mod clients;
pub mod config;
pub mod filter;
pub mod long_poll;
mod metrics;
mod processor;
pub mod rates;
pub mod register;
pub mod resets;
pub mod schedule;
pub mod server;
pub mod transaction;

use std::sync::Arc;

pub use broker_config::{BrokerConfig, BROKER_PORT_DEFAULT, METRICS_PORT_DEFAULT};
pub use long_poll::PullWaiters;
pub use rocketraft_protocol::names::{retry_topic, AUTO_CREATE_TOPIC, DLQ_PREFIX};
pub use server::Broker;

/// The arrival listener to start a replica's Raft node with, so its pulls wake on new
/// messages.
pub fn arrival_listener(
    waiters: &Arc<PullWaiters>,
) -> rocketraft_raft::state_machine::ArrivalListener {
    let waiters = waiters.clone();
    Arc::new(move |arrivals| waiters.arrived(arrivals))
}
