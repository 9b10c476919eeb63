//! One broker replica on real files: the CommitLog and queues on memory-mapped segments
//! (`MmapStorage`), metadata in sled, the Raft node and the remoting server.
//!
//! Layout under the replica's data directory: the store's files (`commitlog/`,
//! `consumequeue/`, `index/`, `checkpoint`) and `meta/` (sled).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocketraft_broker::{arrival_listener, Broker, BrokerConfig, PullWaiters};
use rocketraft_raft::{NodeConfig, RaftNode, SledMeta};
use rocketraft_store::io::mmap::MmapStorage;
use tokio::net::TcpListener;

/// Why a replica did not start.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata store in {path} (is another process using this data directory?): {reason}")]
    Meta { path: PathBuf, reason: String },
    #[error("{0}")]
    Raft(#[from] rocketraft_raft::node::StartError),
    #[error("broker port: {0}")]
    Listen(std::io::Error),
}

/// A running replica.
pub struct Replica {
    pub node: RaftNode<MmapStorage, SledMeta>,
    pub broker: Broker,
    pub data_dir: PathBuf,
}

impl Replica {
    /// Opens (or creates) the replica's files under `data_dir` and starts it: Raft on
    /// `raft_listener`, the remoting server on `broker_listener`.
    pub async fn start(
        node_config: NodeConfig,
        broker_config: BrokerConfig,
        data_dir: &Path,
        raft_listener: TcpListener,
        broker_listener: TcpListener,
    ) -> Result<Replica, ReplicaError> {
        let storage = MmapStorage::new(data_dir)
            .map_err(|source| ReplicaError::DataDir { path: data_dir.to_owned(), source })?;
        let meta_dir = data_dir.join("meta");
        let meta = SledMeta::open(&meta_dir)
            .map_err(|e| ReplicaError::Meta { path: meta_dir.clone(), reason: e.to_string() })?;
        let waiters = Arc::new(PullWaiters::default());
        let node = RaftNode::start(
            node_config,
            storage,
            meta,
            raft_listener,
            Some(arrival_listener(&waiters)),
        )
        .await?;
        let now_ms = rocketraft_raft::clock::now_ms();
        let broker = Broker::start_on(broker_listener, broker_config, &node, waiters, now_ms)
            .await
            .map_err(ReplicaError::Listen)?;
        Ok(Replica { node, broker, data_dir: data_dir.to_owned() })
    }

    /// Stops serving clients, then stops the Raft node (its files stay).
    pub async fn shutdown(self) {
        self.broker.shutdown();
        self.node.shutdown().await;
    }
}
