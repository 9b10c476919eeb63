//! The embedded client SDK: producers (sync, async, oneway; round-robin and hash queue
//! selection; fast failover retry), push and pull consumers, admin calls. Depends on
//! `rocketraft-protocol` only.
//!
//! Built by issue "Client SDK"; this crate is the place reserved for it in the workspace.
