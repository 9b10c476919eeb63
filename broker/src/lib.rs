//! The broker: remoting server and processors (send, pull with long polling, offsets,
//! heartbeats, admin), the client manager, and the Raft role that decides master or slave.
//!
//! Built by issue "Broker"; this crate is the place reserved for it in the workspace.
