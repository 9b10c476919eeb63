//! One broker replica on real files: the CommitLog and queues on memory-mapped segments
//! (`MmapStorage`), metadata in sled, the Raft node and the remoting server.
//!
//! Layout under the replica's data directory: the store's files (`commitlog/`,
//! `consumequeue/`, `index/`, `checkpoint`), `meta/` (sled) and `replica.id` (whose directory
//! this is: cluster, group, node id; a replica refuses another's directory).

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
    #[error(
        "data directory {path} belongs to {found}, not {wanted}: point the config's store_dir at \
         this replica's own directory (each replica needs its own)"
    )]
    OtherReplica { path: PathBuf, found: String, wanted: String },
    #[error("broker port: {0}")]
    Listen(std::io::Error),
    #[error("{0}")]
    Acl(#[from] rocketraft_remoting::acl::AclError),
}

/// The file in a replica's data directory naming whose it is.
pub const IDENTITY_FILE: &str = "replica.id";

/// Refuses a data directory written by another replica (another cluster, group or node id):
/// its log would be taken for this replica's. A directory without the file (new, or from an
/// older version) is claimed by writing it.
pub fn claim_data_dir(dir: &Path, identity: &str) -> Result<(), ReplicaError> {
    let io = |source| ReplicaError::DataDir { path: dir.to_owned(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = dir.join(IDENTITY_FILE);
    match std::fs::read_to_string(&file) {
        Ok(found) if found.trim() == identity => Ok(()),
        Ok(found) => Err(ReplicaError::OtherReplica {
            path: dir.to_owned(),
            found: found.trim().to_owned(),
            wanted: identity.to_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
            std::fs::write(&tmp, format!("{identity}\n")).map_err(io)?;
            std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
            std::fs::rename(&tmp, &file).map_err(io)
        }
        Err(e) => Err(io(e)),
    }
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
        let identity = format!(
            "cluster {} group {} node {}",
            broker_config.cluster_name, node_config.group, node_config.id
        );
        if let Some(file) = &broker_config.acl_file {
            // Read before anything starts, so that a bad file stops the start as itself.
            rocketraft_remoting::acl::Acl::read(file)?;
        }
        claim_data_dir(data_dir, &identity)?;
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

    /// Waits until the replica's Raft stops on a fatal error (a disk that refused a write, an
    /// entry that could not be applied) and answers it. Never returns while the replica runs.
    pub async fn stopped_on_fatal(&self) -> String {
        self.node.stopped_on_fatal().await
    }

    /// Waits until the replica is removed from its group (`rocketraft cluster remove-replica`).
    /// Never returns while it is a member.
    pub async fn removed(&self) {
        self.node.removed().await
    }

    /// Stops serving clients and unregisters from the NameServers, then stops the Raft node
    /// (a last flush; its files stay). A leader first hands leadership to the replica furthest
    /// along (at most [`HAND_OVER_MS`]), so its group does not wait out an election timeout;
    /// writes sent meanwhile wait, then are retried by clients at the new leader.
    pub async fn shutdown(self) {
        if self.node.fatal_error().is_none() {
            match self.node.hand_over(std::time::Duration::from_millis(HAND_OVER_MS)).await {
                Some(Ok(done)) => {
                    tracing::info!(
                        leader = done.leader,
                        term = done.term,
                        "handed leadership over before stopping"
                    )
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "could not hand leadership over before stopping: the group elects a leader after its election timeout")
                }
                None => {}
            }
        }
        self.broker.shutdown_and_unregister().await;
        self.node.shutdown().await;
    }
}

/// How long a stopping leader tries to hand leadership over.
pub const HAND_OVER_MS: u64 = 3_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_is_refused_to_another_replica() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r");
        claim_data_dir(&path, "cluster C group broker-a node 0").unwrap();
        claim_data_dir(&path, "cluster C group broker-a node 0").unwrap();
        let e = claim_data_dir(&path, "cluster C group broker-b node 0").unwrap_err().to_string();
        assert!(e.contains("belongs to cluster C group broker-a node 0"), "{e}");
        assert!(e.contains("not cluster C group broker-b node 0"), "{e}");
    }
}
