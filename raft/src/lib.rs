//! openraft wiring for RocketRaft: each broker group replica's CommitLog is its Raft log
//! (DLedger style).
//!
//! - [`runtime`]: openraft's `AsyncRuntime` over madsim-tokio and madsim's RNG, so the same code
//!   runs on real tokio and deterministically in the simulation.
//! - [`types`]: the Raft type configuration, requests (message records, metadata commands) and
//!   their mapping to CommitLog entries.
//! - [`meta`]: the metadata store trait with sled and in-memory backends.
//! - [`log_store`]: `RaftLogStorage` on the CommitLog, with group commit.
//! - [`state_machine`]: apply (dispatch, metadata), snapshots, install.
//! - [`snapshot_data`]: a snapshot's bytes: its head, then the history of the log before it.
//! - [`network`]: the Raft RPC transport over TCP (length-prefixed bincode frames).
//! - [`budget`]: how many bytes of entries one AppendEntries carries.
//! - [`node`]: one replica: recovery, membership check, bootstrap, RPC server.
//! - [`proposer`]: the leader's send path: queue offsets in log order, sends batched.
//! - [`gate`] and [`transfer`]: leadership transfer, writes held while the target catches up.
//! - [`membership`]: adding and removing replicas of a running group.

// openraft's trait methods return its `StorageError` (over 200 bytes); our helpers share it.
#![allow(clippy::result_large_err)]

pub mod budget;
pub mod clock;
pub mod error;
pub mod gate;
pub mod local_ack;
pub mod log_store;
pub mod membership;
pub mod meta;
pub mod network;
pub mod node;
pub mod offsets;
pub mod proposer;
pub mod replica;
pub mod runtime;
pub mod snapshot_data;
pub mod state_machine;
pub mod stats;
pub mod transfer;
pub mod types;

pub use log_store::LogStore;
pub use membership::{Members, MembershipError};
pub use meta::{MemMeta, MetaStore, SledMeta};
pub use node::{
    await_current_leader, leads_with_current_state, NodeConfig, RaftNode, RaftTiming, StartError,
};
pub use proposer::{Placed, ProposeError, Proposer, ProposerConfig, Replication};
pub use replica::{LeaderWatch, QueueRead, ReadLimits, Replica, ReplicaConfig};
pub use state_machine::StateMachine;
pub use stats::RaftStats;
pub use transfer::{TransferError, Transferred};
pub use types::{HalfOutcome, MetaCommand, NodeId, Request, Response, TypeConfig};
