//! TLS (rustls, ring) for every port we serve: the client ports of brokers and NameServers, in
//! RocketMQ's three modes, and the Raft port, where it is mutual (both sides present a
//! certificate signed by the cluster's CA).
//!
//! - [`TlsMode`]: RocketMQ's `tls.server.mode`. `Permissive` tells a TLS connection from a
//!   plain one by its first byte (0x16, a ClientHello, as RocketMQ's `HandshakeHandler` does),
//!   so TLS and plain clients share a port; `Enforcing` closes a connection that does not open
//!   with a handshake; `Disabled` never speaks TLS.
//! - [`ServerTls`]: a certificate chain and key from PEM files; with a client CA, a client
//!   must present a certificate it signed.
//! - [`ClientTls`]: the CA a client trusts, and optionally its own certificate (mutual TLS).
//!   The server's name is the host of the address dialled (an IP address or a DNS name): the
//!   certificate must name it.
//! - [`throwaway`]: a CA made on the spot and a certificate it signs, for `rocketraft dev
//!   --tls` and the tests. Never for production: its key lives in memory and in the dev dir.
//!
//! A handshake must finish within [`HANDSHAKE_TIMEOUT_MS`]; a connection that fails one is
//! closed and counted against nothing else.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

/// How long a TLS handshake may take before the connection is closed.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// The first byte of a TLS record carrying a handshake (a ClientHello).
#[cfg(not(madsim))]
const HANDSHAKE_RECORD: u8 = 0x16;

/// Why TLS settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {what}")]
    Pem { path: String, what: String },
    #[error("TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS settings: {0}")]
    Invalid(String),
}

/// RocketMQ's `tls.server.mode` for a client port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connections only.
    Disabled,
    /// TLS and plain connections on one port (RocketMQ's default).
    #[default]
    Permissive,
    /// TLS connections only.
    Enforcing,
}

impl std::str::FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "disabled" => Ok(TlsMode::Disabled),
            "permissive" => Ok(TlsMode::Permissive),
            "enforcing" => Ok(TlsMode::Enforcing),
            other => Err(format!("{other:?}: use disabled, permissive or enforcing")),
        }
    }
}

/// ring, not aws-lc-rs: it builds without cmake or nasm. rustls marks it deprecated for lacking
/// post-quantum key exchange; the classical suites it offers are what RocketMQ's TLS offers.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

fn certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut pem.as_bytes()).collect();
    let certs = certs.map_err(|e| TlsError::Pem { path: what.into(), what: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: what.into(), what: "no CERTIFICATE in it".into() });
    }
    Ok(certs)
}

fn key(pem: &str, what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| TlsError::Pem { path: what.into(), what: e.to_string() })?
        .ok_or_else(|| TlsError::Pem { path: what.into(), what: "no PRIVATE KEY in it".into() })
}

fn roots(ca_pem: &str, what: &str) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca_pem, what)? {
        roots.add(c)?;
    }
    Ok(roots)
}

/// PEM text of a certificate chain, its key, and (for mutual TLS) a CA.
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
    pub ca: Option<String>,
}

impl Pem {
    /// Reads the files (the CA is optional).
    pub fn read(cert: &Path, key: &Path, ca: Option<&Path>) -> Result<Pem, TlsError> {
        Ok(Pem { cert: read(cert)?, key: read(key)?, ca: ca.map(read).transpose()? })
    }
}

/// A server's TLS: what a port presents, and whom it lets in.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: tokio_rustls::TlsAcceptor,
    mode: TlsMode,
    mutual: bool,
}

/// Two settings are the same when they are the same object (certificates are not compared).
impl PartialEq for ServerTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(self.acceptor.config(), other.acceptor.config()) && self.mode == other.mode
    }
}

impl Eq for ServerTls {}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("mode", &self.mode).field("mutual", &self.mutual).finish()
    }
}

/// A connection as accepted: TLS, or plain (a permissive port).
pub enum Accepted {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl ServerTls {
    /// A server presenting `pem.cert`; with `pem.ca`, clients must present a certificate it
    /// signed (mutual TLS).
    pub fn new(pem: &Pem, mode: TlsMode) -> Result<ServerTls, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match &pem.ca {
            Some(ca) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(ca, "the client CA")?),
                    provider(),
                )
                .build()
                .map_err(|e| TlsError::Invalid(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(certs(&pem.cert, "the certificate")?, key(&pem.key, "the key")?)?;
        Ok(ServerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            mode,
            mutual: pem.ca.is_some(),
        })
    }

    pub fn mode(&self) -> TlsMode {
        self.mode
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.mutual
    }

    /// The simulation has no TLS: madsim's streams can neither peek nor be shared across
    /// tasks as rustls needs, and the simulated cluster never configures it.
    #[cfg(madsim)]
    pub async fn accept(&self, _tcp: TcpStream) -> io::Result<Accepted> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "TLS is not simulated"))
    }

    /// Takes a new connection as the mode says: a handshake (within
    /// [`HANDSHAKE_TIMEOUT_MS`]) when it opens with one, plain otherwise if permitted. An
    /// error means the connection must be closed.
    #[cfg(not(madsim))]
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<Accepted> {
        let tls = match self.mode {
            TlsMode::Disabled => false,
            TlsMode::Enforcing => true,
            TlsMode::Permissive => first_byte(&tcp).await? == HANDSHAKE_RECORD,
        };
        if !tls {
            return Ok(Accepted::Plain(tcp));
        }
        if self.mode == TlsMode::Enforcing && first_byte(&tcp).await? != HANDSHAKE_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "a plain connection to a port that requires TLS",
            ));
        }
        let handshake = self.acceptor.accept(tcp);
        match tokio::time::timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), handshake).await {
            Ok(stream) => Ok(Accepted::Tls(Box::new(stream?))),
            Err(_) => {
                Err(io::Error::new(io::ErrorKind::TimedOut, "the TLS handshake took too long"))
            }
        }
    }
}

/// The connection's first byte, without taking it (waits at most the handshake timeout).
#[cfg(not(madsim))]
async fn first_byte(tcp: &TcpStream) -> io::Result<u8> {
    let mut b = [0u8; 1];
    let peek = async {
        let n = tcp.peek(&mut b).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before a byte"));
        }
        Ok(b[0])
    };
    tokio::time::timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), peek)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "nothing sent"))?
}

/// A client's TLS: the CA it trusts and, for mutual TLS, its own certificate.
#[derive(Clone)]
pub struct ClientTls {
    connector: tokio_rustls::TlsConnector,
}

/// Two settings are the same when they are the same object (certificates are not compared).
impl PartialEq for ClientTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(self.connector.config(), other.connector.config())
    }
}

impl Eq for ClientTls {}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// Trusts the CA in `ca_pem`; presents `identity` (certificate chain and key PEM) when
    /// given.
    pub fn new(ca_pem: &str, identity: Option<(&str, &str)>) -> Result<ClientTls, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots(ca_pem, "the CA")?);
        let config = match identity {
            Some((cert, k)) => builder
                .with_client_auth_cert(certs(cert, "the certificate")?, key(k, "the key")?)?,
            None => builder.with_no_client_auth(),
        };
        Ok(ClientTls { connector: tokio_rustls::TlsConnector::from(Arc::new(config)) })
    }

    /// Reads the CA file.
    pub fn from_ca_file(ca: &Path) -> Result<ClientTls, TlsError> {
        ClientTls::new(&read(ca)?, None)
    }

    /// Opens TLS on `tcp`, connected to `addr` (host:port): the server's certificate must
    /// name the host.
    pub async fn connect(
        &self,
        addr: &str,
        tcp: TcpStream,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let host = match addr.rsplit_once(':') {
            Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
            None => addr,
        };
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
        let handshake = self.connector.connect(name, tcp);
        tokio::time::timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), handshake).await.map_err(
            |_| io::Error::new(io::ErrorKind::TimedOut, "the TLS handshake took too long"),
        )?
    }
}

/// A CA made on the spot, and a certificate and key it signed.
pub struct Throwaway {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Throwaway {
    /// The server or mutual-TLS settings it makes.
    pub fn pem(&self, mutual: bool) -> Pem {
        Pem {
            cert: self.cert_pem.clone(),
            key: self.key_pem.clone(),
            ca: mutual.then(|| self.ca_pem.clone()),
        }
    }
}

/// A throwaway CA and a certificate it signs for `names` (DNS names or IP addresses), good for
/// both ends of a connection. For `rocketraft dev --tls` and tests only.
pub fn throwaway(names: &[&str]) -> Result<Throwaway, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let bad = |e: rcgen::Error| TlsError::Invalid(e.to_string());
    let ca_key = KeyPair::generate().map_err(bad)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "RocketRaft throwaway CA");
    let ca_cert = ca.self_signed(&ca_key).map_err(bad)?;
    let key = KeyPair::generate().map_err(bad)?;
    let mut leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .map_err(bad)?;
    leaf.distinguished_name.push(DnType::CommonName, "RocketRaft node");
    leaf.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).map_err(bad)?;
    Ok(Throwaway { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}
