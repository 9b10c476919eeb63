//! RocketMQ's storage model for RocketRaft: the CommitLog (segments of framed Raft entries
//! whose payloads are RocketMQ message records), ConsumeQueue (24-byte entries per topic
//! queue), IndexFile (lookup by key), recovery, flush and retention.
//!
//! Sync code that knows nothing of Raft or sockets: every file goes through the [`io::Storage`]
//! seam (mmap in production, an in-memory simulated disk with power loss in the simulation).
//! The Raft layer drives it: it appends entries, runs flush jobs (group commit) and reports
//! durability to openraft, and feeds committed entries to [`dispatch`].

pub mod admit;
pub mod checkpoint;
pub mod commitlog;
pub mod consumequeue;
pub mod dispatch;
pub mod entry;
pub mod error;
pub mod flush;
pub mod indexfile;
pub mod io;
pub mod retention;
pub mod types;

pub use commitlog::{CommitLog, CommitLogConfig, FlushJob, IoCounts, LogCut, RecoveryReport};
pub use consumequeue::{ConsumeQueue, ConsumeQueueConfig, CqEntry};
pub use dispatch::{Arrival, DispatchConfig, Dispatcher, QueuePlace};
pub use entry::{EntryKind, EntryMeta, LogEntry};
pub use error::{StoreError, StoreResult};
pub use flush::{sync_log, FlushMode, GroupCommit};
pub use indexfile::{IndexConfig, IndexService};
pub use retention::RetentionConfig;
pub use types::{CommitLogOffset, QueueOffset, RaftIndex};
