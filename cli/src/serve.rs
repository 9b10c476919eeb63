//! The production processes: `rocketraft namesrv` and `rocketraft broker --config FILE` (one
//! replica of a broker group, configured by a TOML file; see `broker.example.toml` and
//! `deploy/`).

use std::path::{Path, PathBuf};

use rocketraft_broker::config::BrokerFile;
use rocketraft_remoting::http::HttpServer;
use tokio::net::TcpListener;

use crate::replica::{Replica, ReplicaError};

/// Why a broker replica did not start: each names the problem and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "cannot read the broker config {path}: {source}; pass --config with the path of a \
         broker.toml (broker.example.toml in the repository lists every key)"
    )]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    BadConfig { path: PathBuf, message: String },
    #[error("cannot listen on {addr} ({what}): {source}; {}", bind_hint(source.kind(), what))]
    Port {
        addr: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Replica(#[from] ReplicaError),
    #[error("[tls]: {0}")]
    Tls(#[from] rocketraft_remoting::tls::TlsError),
}

/// What to do about a failed bind, by its cause; `setting` names where the address comes from.
pub fn bind_hint(kind: std::io::ErrorKind, setting: &str) -> String {
    use std::io::ErrorKind as K;
    match kind {
        K::AddrInUse => format!("is another process using it? Stop it or change {setting}"),
        K::AddrNotAvailable => {
            format!("that address is not on this machine: check {setting} (is this the right machine's config?)")
        }
        K::PermissionDenied => {
            format!("ports below 1024 need privileges: choose another in {setting}")
        }
        _ => format!("check {setting}"),
    }
}

/// A parsed broker config file and where its relative paths start.
pub struct BrokerSetup {
    pub file: BrokerFile,
    /// The Raft replica's settings, derived from `file` and checked.
    pub node: rocketraft_raft::NodeConfig,
    /// `store_dir`, resolved against the config file's directory when relative.
    pub store_dir: PathBuf,
}

impl BrokerSetup {
    /// Reads and checks the config file at `path`.
    pub fn load(path: &Path) -> Result<BrokerSetup, ServeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ServeError::ReadConfig { path: path.to_owned(), source })?;
        // toml's messages span lines (a snippet with a caret): keep the first sentence.
        let bad = |e: rocketraft_broker::config::ConfigError| ServeError::BadConfig {
            path: path.to_owned(),
            message: one_line(&e.to_string()),
        };
        let mut file = BrokerFile::parse(&text).map_err(bad)?;
        let node = file.node_config().map_err(bad)?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(acl) = &file.acl.file {
            file.acl.file = Some(base.join(acl));
        }
        for f in [&mut file.tls.cert_file, &mut file.tls.key_file, &mut file.tls.ca_file] {
            if let Some(p) = f.as_mut() {
                *p = base.join(&*p);
            }
        }
        let store_dir = if file.store_dir.is_absolute() {
            file.store_dir.clone()
        } else {
            base.join(&file.store_dir)
        };
        Ok(BrokerSetup { file, node, store_dir })
    }

    /// Binds the Raft, client and metrics ports and starts the replica; answers it with its
    /// metrics endpoint.
    pub async fn start(&self) -> Result<(Replica, HttpServer), ServeError> {
        let mut node = self.node.clone();
        let mut broker_config = self.file.broker_config();
        let t = &self.file.tls;
        if let (Some(cert), Some(key), Some(ca)) = (&t.cert_file, &t.key_file, &t.ca_file) {
            use rocketraft_remoting::tls::{ClientTls, Pem, ServerTls, TlsMode};
            let pem = Pem::read(cert, key, Some(ca))?;
            let ca_pem = pem.ca.clone().unwrap_or_default();
            let peers = ClientTls::new(&ca_pem, Some((&pem.cert, &pem.key)))?;
            node.tls = Some(rocketraft_raft::network::RaftTls {
                server: ServerTls::new(&pem, TlsMode::Enforcing)?,
                client: peers,
            });
            if t.client_mode != TlsMode::Disabled {
                let clients = Pem { ca: None, ..pem.clone() };
                broker_config.tls = Some(ServerTls::new(&clients, t.client_mode)?);
            }
            if t.namesrv {
                broker_config.namesrv_tls = Some(ClientTls::new(&ca_pem, None)?);
            }
        }
        let raft_addr = self.file.raft_addr().expect("checked when the file was loaded");
        let raft = TcpListener::bind(&raft_addr).await.map_err(|source| ServeError::Port {
            addr: raft_addr.clone(),
            what: "[raft] addr (or this node's entry in [raft] peers)",
            source,
        })?;
        let listen = broker_config.listen.clone();
        let clients = TcpListener::bind(&listen).await.map_err(|source| ServeError::Port {
            addr: listen.clone(),
            what: "`listen`",
            source,
        })?;
        let metrics_listen = &self.file.metrics_listen;
        let metrics = TcpListener::bind(metrics_listen).await.map_err(|source| {
            ServeError::Port { addr: metrics_listen.clone(), what: "`metrics_listen`", source }
        })?;
        let replica = Replica::start(node, broker_config, &self.store_dir, raft, clients).await?;
        let hub = rocketraft_metrics::Hub::new();
        let f = &self.file;
        let labels =
            crate::metrics::replica_labels(&f.cluster_name, &f.broker_name, f.raft.node_id);
        hub.add(labels, &replica.broker.metrics());
        let metrics = crate::metrics::serve(metrics, hub).map_err(|source| ServeError::Port {
            addr: metrics_listen.clone(),
            what: "`metrics_listen`",
            source,
        })?;
        Ok((replica, metrics))
    }
}

/// The first line of a possibly multi-line message, with a line/column hint kept.
pub fn one_line(message: &str) -> String {
    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default().to_owned();
    // toml: "TOML parse error at line 3, column 1" then the snippet, then the reason.
    match lines.next_back() {
        Some(last) if first.starts_with("invalid broker config: TOML parse error") => {
            format!("{first}: {last}")
        }
        _ => first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_are_one_line_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let e = BrokerSetup::load(&missing).err().unwrap().to_string();
        assert!(e.starts_with("cannot read the broker config") && e.contains("--config"), "{e}");
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "advertised_addr = \"10.0.0.1:10911\"\n[raft]\nnode_id = 0\npeers = { \"0\" = \"a:1\" }\nflsh = 1\n").unwrap();
        let e = BrokerSetup::load(&bad).err().unwrap().to_string();
        assert!(!e.contains('\n') && e.contains("bad.toml") && e.contains("flsh"), "{e}");
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "advertised_addr = \"10.0.0.1:10911\"\nstore_dir = \"s\"\n[raft]\nnode_id = 0\npeers = { \"0\" = \"a:1\" }\n").unwrap();
        let setup = BrokerSetup::load(&good).unwrap();
        assert_eq!(setup.store_dir, dir.path().join("s"), "relative to the config file");
    }

    /// The loopback demo (README "TLS and ACL on one machine"): three replicas of one group,
    /// ACL and TLS on, its own accounts file with an admin the replicas register as.
    #[test]
    fn the_loopback_example_is_one_consistent_group() {
        let files = [
            include_str!("../../deploy/loopback/broker-0.toml"),
            include_str!("../../deploy/loopback/broker-1.toml"),
            include_str!("../../deploy/loopback/broker-2.toml"),
        ];
        let acl =
            rocketraft_remoting::acl::Acl::parse(include_str!("../../deploy/loopback/acl.toml"))
                .unwrap();
        for (i, text) in files.iter().enumerate() {
            let f = BrokerFile::parse(text).unwrap();
            assert_eq!(f.node_config().unwrap().id, i as u64);
            assert!(acl.is_admin(&f.broker_config().credentials.unwrap()));
            assert_eq!(f.tls.client_mode, rocketraft_remoting::tls::TlsMode::Enforcing);
        }
    }

    /// The shipped 3-machine group: the files parse and describe one group (same cluster,
    /// group and peers; ids 0, 1, 2; each advertising its own machine; own directories).
    #[test]
    fn the_deploy_example_is_one_consistent_group() {
        let files = [
            include_str!("../../deploy/broker-a-0.toml"),
            include_str!("../../deploy/broker-a-1.toml"),
            include_str!("../../deploy/broker-a-2.toml"),
        ];
        let parsed: Vec<BrokerFile> = files.iter().map(|t| BrokerFile::parse(t).unwrap()).collect();
        let first = &parsed[0];
        for (i, f) in parsed.iter().enumerate() {
            let node = f.node_config().unwrap();
            assert_eq!(node.id, i as u64);
            assert_eq!(
                (&f.cluster_name, &f.broker_name),
                (&first.cluster_name, &first.broker_name)
            );
            assert_eq!(f.raft.peers, first.raft.peers);
            assert_eq!(f.namesrv_addrs.len(), 3);
            let raft_host = node.peers[&node.id].split(':').next().unwrap().to_owned();
            assert_eq!(f.advertised_addr.ip().to_string(), raft_host, "replica {i}: one machine");
            assert!(f.store_dir.ends_with(format!("broker-a-{i}")));
            assert_eq!(f.acl, first.acl, "replica {i}: one ACL");
            assert_eq!(f.tls, first.tls, "replica {i}: one TLS setup");
            assert!(f.tls.cert_file.is_some() && f.tls.namesrv, "replica {i}: TLS on");
        }
        // ACL is on, and the replicas register with an admin account of the shipped file.
        let acl = rocketraft_remoting::acl::Acl::parse(include_str!("../../deploy/acl.toml"))
            .expect("deploy/acl.toml parses");
        let creds = first.broker_config().credentials.expect("registrations are signed");
        assert!(first.acl.file.is_some() && acl.is_admin(&creds));
    }
}
