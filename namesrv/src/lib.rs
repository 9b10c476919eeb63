//! The NameServer: a route registry that brokers register with every 30 s and that evicts a
//! broker silent for 120 s (scanned every 10 s) or whose connection closed.
//!
//! Built by issue "NameServer"; this crate is the place reserved for it in the workspace.
