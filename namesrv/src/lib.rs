//! The NameServer: a route registry that brokers register with every 30 s and that evicts a
//! broker silent for 120 s (scanned every 10 s) or whose connection closed. NameServers never
//! talk to each other; brokers register with each.
//!
//! - [`registry`]: the decisions (register, evict, build routes) as plain functions over the
//!   route table, tested without sockets or clocks.
//! - [`server`]: the remoting server around it (RocketMQ frames over TCP).

pub mod registry;
pub mod server;

pub use registry::{Registered, Registration, Registry, BROKER_EXPIRY_MS_DEFAULT};
pub use server::{NameServer, NamesrvConfig, NAMESRV_PORT_DEFAULT};
