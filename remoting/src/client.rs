//! The client side: one multiplexed TCP connection per peer address, requests matched to
//! responses by `opaque`, per-call timeouts, oneway sends, requests the peer starts
//! (NOTIFY_CONSUMER_IDS_CHANGED, CHECK_TRANSACTION_STATE) handed to a callback, and reconnection
//! on the next call after a connection broke.
//!
//! Invariants:
//! - every call ends by its timeout at the latest: answered, timed out, or failed with the
//!   reason its connection closed (a malformed frame closes the connection and fails every call
//!   waiting on it with [`CallError::Protocol`]);
//! - at most `pending_max` calls wait on one connection and `write_queue_max` frames wait to be
//!   written; beyond that a call fails with [`CallError::Overloaded`] rather than queueing;
//! - a broken connection leaves the pool at once, so the next call reconnects.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rocketraft_protocol::acl::Credentials;

use crate::tls::ClientTls;
use rocketraft_protocol::frame::{encode_frame_with_limit, FrameDecoder};
use rocketraft_protocol::{
    request_code, response_code, ProtocolError, RemotingCommand, FRAME_MAX_BYTES_DEFAULT,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The peer did not answer within the call's timeout.
    #[error("{addr} did not answer {what} within {timeout_ms} ms")]
    Timeout { addr: String, what: &'static str, timeout_ms: u64 },
    /// No connection could be opened.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The connection closed (or broke) before the answer came.
    #[error("the connection to {addr} closed before {what} was answered")]
    ConnectionClosed { addr: String, what: &'static str },
    /// The peer sent bytes that are not the RocketMQ protocol.
    #[error("{addr} sent a malformed answer: {source}")]
    Protocol {
        addr: String,
        #[source]
        source: ProtocolError,
    },
    /// A bounded table or queue is full.
    #[error("too many {what} in flight (at most {max})")]
    Overloaded { what: &'static str, max: usize },
    /// The pool was shut down.
    #[error("the connections are shut down")]
    Shutdown,
}

type Result<T> = std::result::Result<T, CallError>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct RemotingConfig {
    /// How long opening a connection may take. Default 3,000 ms.
    pub connect_timeout_ms: u64,
    /// Calls waiting for an answer on one connection. Default 65,536.
    pub pending_max: usize,
    /// Frames waiting to be written on one connection. Default 4,096.
    pub write_queue_max: usize,
    /// The largest frame read or written. Default 16 MiB (RocketMQ's).
    pub frame_max_bytes: usize,
    /// When set, every request is signed with these keys as RocketMQ's `AclClientRPCHook`
    /// signs them (for servers with ACL on). Default none.
    pub credentials: Option<Credentials>,
    /// When set, every connection is TLS, checked against this CA. Default none (plain).
    pub tls: Option<ClientTls>,
}

/// A connection's byte stream.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Default for RemotingConfig {
    fn default() -> Self {
        RemotingConfig {
            connect_timeout_ms: 3_000,
            pending_max: 65_536,
            write_queue_max: 4_096,
            frame_max_bytes: FRAME_MAX_BYTES_DEFAULT,
            credentials: None,
            tls: None,
        }
    }
}

/// Handles a request a peer sent us: returns the response to write back (ignored for oneway
/// requests). Runs on the connection's reader task, so it must not block.
pub type InboundHandler =
    Arc<dyn Fn(&str, &RemotingCommand) -> Option<RemotingCommand> + Send + Sync>;

/// Why a connection closed; calls waiting on it fail with the matching error.
#[derive(Debug, Clone)]
enum CloseReason {
    Closed,
    Malformed(ProtocolError),
}

type Waiter = oneshot::Sender<std::result::Result<RemotingCommand, CloseReason>>;

struct Connection {
    addr: String,
    peer: SocketAddr,
    writes: mpsc::Sender<RemotingCommand>,
    pending: Mutex<BTreeMap<i32, Waiter>>,
    /// Turns true once; both socket tasks end on it, which closes the socket.
    closed: watch::Sender<bool>,
}

impl Connection {
    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    fn close(&self, reason: CloseReason) {
        self.closed.send_replace(true);
        let waiting: Vec<Waiter> =
            std::mem::take(&mut *lock(&self.pending)).into_values().collect();
        for w in waiting {
            let _ = w.send(Err(reason.clone()));
        }
    }
}

struct Inner {
    config: RemotingConfig,
    conns: Mutex<BTreeMap<String, Arc<Connection>>>,
    /// One lock per address, so two calls to a new address open one connection while other
    /// addresses are not held up by a slow connect.
    connecting: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    next_opaque: AtomicI32,
    handler: Option<InboundHandler>,
    local_ip: Mutex<Option<IpAddr>>,
    shut: AtomicBool,
}

/// A pool of connections, one per address; cheap to clone.
#[derive(Clone)]
pub struct Remoting {
    inner: Arc<Inner>,
}

impl Remoting {
    /// A pool whose connections hand requests from peers to `handler` (or answer them
    /// REQUEST_CODE_NOT_SUPPORTED without one).
    pub fn new(config: RemotingConfig, handler: Option<InboundHandler>) -> Self {
        Remoting {
            inner: Arc::new(Inner {
                config,
                conns: Mutex::new(BTreeMap::new()),
                connecting: Mutex::new(BTreeMap::new()),
                next_opaque: AtomicI32::new(1),
                handler,
                local_ip: Mutex::new(None),
                shut: AtomicBool::new(false),
            }),
        }
    }

    /// The local IP address of the first connection made (what peers see as this client).
    pub fn local_ip(&self) -> Option<IpAddr> {
        *lock(&self.inner.local_ip)
    }

    /// `request` signed, if the pool has credentials.
    fn signed(&self, mut request: RemotingCommand) -> RemotingCommand {
        if let Some(c) = &self.inner.config.credentials {
            c.sign(&mut request);
        }
        request
    }

    /// Sends `request` to `addr` and waits at most `timeout_ms` for its response.
    pub async fn call(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout_ms: u64,
    ) -> Result<RemotingCommand> {
        let request = self.signed(request);
        let what = request_code::name(request.code).unwrap_or("the request");
        let deadline = Duration::from_millis(timeout_ms);
        let attempt = async {
            let conn = self.connection(addr).await?;
            let opaque = self.inner.next_opaque.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            {
                let mut pending = lock(&conn.pending);
                if conn.is_closed() {
                    return Err(CallError::ConnectionClosed { addr: addr.to_owned(), what });
                }
                if pending.len() >= self.inner.config.pending_max {
                    return Err(CallError::Overloaded {
                        what: "requests waiting on one connection",
                        max: self.inner.config.pending_max,
                    });
                }
                pending.insert(opaque, tx);
            }
            let guard = PendingGuard { conn: &conn, opaque };
            if conn.writes.try_send(request.with_opaque(opaque)).is_err() {
                return Err(CallError::Overloaded {
                    what: "frames waiting to be written on one connection",
                    max: self.inner.config.write_queue_max,
                });
            }
            let answer = rx.await;
            drop(guard);
            match answer {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(CloseReason::Malformed(e))) => {
                    Err(CallError::Protocol { addr: conn.peer.to_string(), source: e })
                }
                Ok(Err(CloseReason::Closed)) | Err(_) => {
                    Err(CallError::ConnectionClosed { addr: addr.to_owned(), what })
                }
            }
        };
        match tokio::time::timeout(deadline, attempt).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout { addr: addr.to_owned(), what, timeout_ms }),
        }
    }

    /// Sends `request` oneway: no response is expected. Returns once it is queued for writing.
    pub async fn call_oneway(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout_ms: u64,
    ) -> Result<()> {
        let request = self.signed(request);
        let what = request_code::name(request.code).unwrap_or("the request");
        let send = async {
            let conn = self.connection(addr).await?;
            let opaque = self.inner.next_opaque.fetch_add(1, Ordering::Relaxed);
            conn.writes.try_send(request.with_opaque(opaque).into_oneway()).map_err(|_| {
                CallError::Overloaded {
                    what: "frames waiting to be written on one connection",
                    max: self.inner.config.write_queue_max,
                }
            })
        };
        match tokio::time::timeout(Duration::from_millis(timeout_ms), send).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout { addr: addr.to_owned(), what, timeout_ms }),
        }
    }

    /// Opens (or reuses) the connection to `addr`.
    pub async fn connect(&self, addr: &str) -> Result<()> {
        self.connection(addr).await.map(|_| ())
    }

    /// Closes every connection; later calls fail with [`CallError::Shutdown`].
    pub fn shutdown(&self) {
        let conns: Vec<_> = {
            let mut conns = lock(&self.inner.conns);
            self.inner.shut.store(true, Ordering::SeqCst);
            std::mem::take(&mut *conns).into_values().collect()
        };
        for c in conns {
            c.close(CloseReason::Closed);
        }
    }

    async fn connection(&self, addr: &str) -> Result<Arc<Connection>> {
        if self.inner.shut.load(Ordering::SeqCst) {
            return Err(CallError::Shutdown);
        }
        if let Some(c) = self.live(addr) {
            return Ok(c);
        }
        let slot = lock(&self.inner.connecting).entry(addr.to_owned()).or_default().clone();
        let _one_at_a_time = slot.lock().await;
        if let Some(c) = self.live(addr) {
            return Ok(c);
        }
        let connect = TcpStream::connect(addr);
        let stream = tokio::time::timeout(
            Duration::from_millis(self.inner.config.connect_timeout_ms),
            connect,
        )
        .await
        .map_err(|_| CallError::Connect {
            addr: addr.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} ms", self.inner.config.connect_timeout_ms),
            ),
        })?
        .map_err(|source| CallError::Connect { addr: addr.to_owned(), source })?;
        let _ = stream.set_nodelay(true);
        let peer = stream
            .peer_addr()
            .map_err(|source| CallError::Connect { addr: addr.to_owned(), source })?;
        if let Ok(local) = stream.local_addr() {
            lock(&self.inner.local_ip).get_or_insert(local.ip());
        }
        let stream = match &self.inner.config.tls {
            None => Stream::Plain(stream),
            Some(tls) => Stream::Tls(Box::new(
                tls.connect(addr, stream)
                    .await
                    .map_err(|source| CallError::Connect { addr: addr.to_owned(), source })?,
            )),
        };
        let (writes, queue) = mpsc::channel(self.inner.config.write_queue_max);
        let conn = Arc::new(Connection {
            addr: addr.to_owned(),
            peer,
            writes,
            pending: Mutex::new(BTreeMap::new()),
            closed: watch::channel(false).0,
        });
        {
            let mut conns = lock(&self.inner.conns);
            // A shutdown that ran while this connect was on its way must not leave it open.
            if self.inner.shut.load(Ordering::SeqCst) {
                return Err(CallError::Shutdown);
            }
            conns.insert(addr.to_owned(), conn.clone());
        }
        lock(&self.inner.connecting).remove(addr);
        let frame_max = self.inner.config.frame_max_bytes;
        match stream {
            Stream::Plain(stream) => {
                let (read, write) = tokio::io::split(stream);
                tokio::spawn(write_loop(write, queue, conn.clone(), frame_max));
                tokio::spawn(read_loop(read, conn.clone(), Arc::downgrade(&self.inner)));
            }
            Stream::Tls(stream) => {
                let (read, write) = tokio::io::split(stream);
                tokio::spawn(write_loop(write, queue, conn.clone(), frame_max));
                tokio::spawn(read_loop(read, conn.clone(), Arc::downgrade(&self.inner)));
            }
        }
        Ok(conn)
    }

    fn live(&self, addr: &str) -> Option<Arc<Connection>> {
        lock(&self.inner.conns).get(addr).filter(|c| !c.is_closed()).cloned()
    }
}

/// Removes a call's pending entry however the call ends (answered, timed out, cancelled).
struct PendingGuard<'a> {
    conn: &'a Connection,
    opaque: i32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.conn.pending).remove(&self.opaque);
    }
}

async fn write_loop<S: tokio::io::AsyncWrite>(
    mut write: tokio::io::WriteHalf<S>,
    mut queue: mpsc::Receiver<RemotingCommand>,
    conn: Arc<Connection>,
    frame_max_bytes: usize,
) {
    let mut buf = BytesMut::new();
    let mut closed = conn.closed.subscribe();
    loop {
        let cmd = tokio::select! {
            biased;
            _ = closed.wait_for(|c| *c) => break,
            c = queue.recv() => match c {
                Some(c) => c,
                None => break,
            },
        };
        buf.clear();
        if let Err(e) = encode_frame_with_limit(&cmd, &mut buf, frame_max_bytes) {
            // Our own request is too large: fail that call alone.
            tracing::warn!(addr = %conn.addr, error = %e, "request not sent");
            if let Some(w) = lock(&conn.pending).remove(&cmd.opaque) {
                let _ = w.send(Err(CloseReason::Malformed(e)));
            }
            continue;
        }
        // Batch whatever else is queued into the same write. With other calls in flight, first
        // let the tasks woken with this one queue theirs (the answers of one Raft round release
        // a window's worth of sends); a lone call goes out at once.
        if lock(&conn.pending).len() > 1 {
            tokio::task::yield_now().await;
        }
        while buf.len() < 64 * 1024 {
            match queue.try_recv() {
                Ok(next) => {
                    if let Err(e) = encode_frame_with_limit(&next, &mut buf, frame_max_bytes) {
                        tracing::warn!(addr = %conn.addr, error = %e, "request not sent");
                        if let Some(w) = lock(&conn.pending).remove(&next.opaque) {
                            let _ = w.send(Err(CloseReason::Malformed(e)));
                        }
                    }
                }
                Err(_) => break,
            }
        }
        // madsim's TCP sends on flush only; real tokio's flush is a no-op.
        if write.write_all(&buf).await.is_err() || write.flush().await.is_err() {
            conn.close(CloseReason::Closed);
            break;
        }
    }
    let _ = write.shutdown().await;
}

async fn read_loop<S: tokio::io::AsyncRead>(
    mut read: tokio::io::ReadHalf<S>,
    conn: Arc<Connection>,
    pool: std::sync::Weak<Inner>,
) {
    let frame_max = pool.upgrade().map_or(FRAME_MAX_BYTES_DEFAULT, |p| p.config.frame_max_bytes);
    let mut decoder = FrameDecoder::new(frame_max);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let reason = 'read: loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(cmd)) => dispatch(cmd, &conn, &pool),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(addr = %conn.addr, error = %e, "malformed frame: closing the connection");
                    break 'read CloseReason::Malformed(e);
                }
            }
        }
        let mut closed = conn.closed.subscribe();
        let read = tokio::select! {
            biased;
            _ = closed.wait_for(|c| *c) => break CloseReason::Closed,
            r = read.read_buf(&mut buf) => r,
        };
        match read {
            Ok(0) | Err(_) => break CloseReason::Closed,
            Ok(_) => {}
        }
    };
    conn.close(reason);
    if let Some(pool) = pool.upgrade() {
        let mut conns = lock(&pool.conns);
        if conns.get(&conn.addr).is_some_and(|c| Arc::ptr_eq(c, &conn)) {
            conns.remove(&conn.addr);
        }
    }
}

fn dispatch(cmd: RemotingCommand, conn: &Connection, pool: &std::sync::Weak<Inner>) {
    if cmd.is_response() {
        match lock(&conn.pending).remove(&cmd.opaque) {
            Some(w) => {
                let _ = w.send(Ok(cmd));
            }
            None => {
                tracing::debug!(addr = %conn.addr, opaque = cmd.opaque, "late or unknown response dropped")
            }
        }
        return;
    }
    let handler = pool.upgrade().and_then(|p| p.handler.clone());
    let resp = match handler {
        Some(h) => h(&conn.addr, &cmd),
        None => None,
    };
    let resp = resp.unwrap_or_else(|| {
        RemotingCommand::response_to(
            &cmd,
            response_code::REQUEST_CODE_NOT_SUPPORTED,
            Some(format!(" request type {} not supported", cmd.code)),
        )
    });
    if !cmd.is_oneway() && conn.writes.try_send(resp).is_err() {
        tracing::debug!(addr = %conn.addr, "response to the peer's request dropped: write queue full");
    }
}
