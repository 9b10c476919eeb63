//! openraft wiring: the store's CommitLog as `RaftLogStorage`, the state machine that
//! dispatches committed entries to ConsumeQueue/IndexFile and metadata, the Raft RPC transport
//! and the madsim-capable `AsyncRuntime`.
//!
//! Built by issue "Raft"; this crate is the place reserved for it in the workspace.
