//! RocketMQ's storage model: the CommitLog (memmap2 segments of framed entries, the Raft log of
//! a broker group), ConsumeQueue (20-byte entries per topic queue), IndexFile (lookup by key),
//! recovery, flush and retention. Sync code: it knows nothing of Raft or sockets.
//!
//! Built by issue "Store"; this crate is the place reserved for it in the workspace.
