//! The remoting server: connections, limits, and a [`Handler`] that answers requests.
//!
//! Limits, each answered as a RocketMQ client expects:
//! - `connections_max`: a connection beyond it is closed at once (logged);
//! - `requests_in_flight_max` per connection: a request beyond it is answered SYSTEM_BUSY with
//!   RocketMQ's remark "[OVERLOAD]system busy, start flow control for a while" (not handled);
//! - `queued_response_bytes_max` per connection: while the answers queued and not yet written
//!   pass it (a peer that does not read them), the connection's reader stops reading, so the
//!   peer's further requests wait in TCP buffers instead of in memory here; a request task
//!   holds its in-flight permit until its answer is queued, so what a connection holds is
//!   bounded by this plus `requests_in_flight_max` answers being built;
//! - `frame_max_bytes`: a frame whose length prefix says more closes the connection before any
//!   of it is buffered; a malformed frame closes it too;
//! - `idle_timeout_ms`: a connection with nothing read or written for that long, and no request
//!   running, is closed (RocketMQ's `serverChannelMaxIdleTimeSeconds`, 120 s).
//!
//! Responses a client sends go to the server-initiated request waiting for them
//! ([`Connections::call`]), or are dropped if none waits (a late answer). At a stop every
//! connection closes at once, requests in flight or not (as if the process died), so clients
//! fail over instead of waiting for held requests.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rocketraft_protocol::frame::{encode_frame_with_limit, FrameDecoder};
use rocketraft_protocol::{response_code, RemotingCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::tls::Accepted;
use tokio::sync::{mpsc, watch, Notify, Semaphore};

/// A connection's read buffer: room for a window of small requests per read syscall.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Queued answers are written together up to about this many bytes per syscall.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// RocketMQ's remark for a request refused by flow control.
pub const OVERLOAD_REMARK: &str = "[OVERLOAD]system busy, start flow control for a while";

/// Server settings. Defaults follow RocketMQ's where it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Connections beyond this are closed at once. Default 4,096.
    pub connections_max: usize,
    /// Connections from one IP address beyond this are closed at once, so one host cannot take
    /// every connection. Default 1,024 (a RocketMQ client keeps one connection per broker
    /// and NameServer per client instance).
    pub connections_per_ip_max: usize,
    /// Requests running at once on one connection. Default 4,096.
    pub requests_in_flight_max: usize,
    /// Bytes of answers queued for one connection and not yet written before its reader
    /// pauses. Default 16 MiB (one largest frame).
    pub queued_response_bytes_max: usize,
    /// A connection idle this long is closed. Default 120,000 ms; 0 never closes one.
    pub idle_timeout_ms: u64,
    /// The largest frame read or written. Default 16 MiB (RocketMQ's `frameMaxLength`).
    pub frame_max_bytes: usize,
    /// Requests of one connection are handled one at a time, in order (the NameServer), rather
    /// than concurrently (the broker: a held pull must not block the sends behind it).
    pub ordered: bool,
    /// TLS on this port, in its mode (`crate::tls`). Default none: plain connections only.
    pub tls: Option<crate::tls::ServerTls>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            connections_max: 4096,
            connections_per_ip_max: CONNECTIONS_PER_IP_MAX_DEFAULT,
            requests_in_flight_max: 4096,
            queued_response_bytes_max: rocketraft_protocol::FRAME_MAX_BYTES_DEFAULT,
            idle_timeout_ms: 120_000,
            frame_max_bytes: rocketraft_protocol::FRAME_MAX_BYTES_DEFAULT,
            ordered: false,
            tls: None,
        }
    }
}

/// Connections are numbered from 1 in the order they were accepted.
pub type ConnId = u64;

/// Who sent a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    pub conn: ConnId,
}

/// Answers requests.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request; `None` sends nothing (a oneway request).
    fn handle(
        &self,
        req: RemotingCommand,
        peer: Peer,
    ) -> impl Future<Output = Option<RemotingCommand>> + Send;

    /// A connection closed (its requests still running end on their own; their answers are
    /// dropped).
    fn closed(&self, _peer: Peer) {}
}

/// One connection's side of the writer: its queue and the bytes in it.
struct Outbox {
    tx: mpsc::UnboundedSender<Bytes>,
    queued: Arc<AtomicUsize>,
    /// Signalled when the writer drains the queue below the bound.
    drained: Arc<Notify>,
    queued_max: usize,
    frame_max_bytes: usize,
}

impl Outbox {
    /// Encodes and queues `cmd`; false if it cannot be framed or the connection is gone.
    fn push(&self, cmd: &RemotingCommand) -> bool {
        let mut out = BytesMut::new();
        if let Err(e) = encode_frame_with_limit(cmd, &mut out, self.frame_max_bytes) {
            tracing::warn!(code = cmd.code, error = %e, "answer not sent");
            return false;
        }
        self.queued.fetch_add(out.len(), Ordering::SeqCst);
        let len = out.len();
        if self.tx.send(out.freeze()).is_err() {
            self.queued.fetch_sub(len, Ordering::SeqCst);
            return false;
        }
        true
    }
}

/// Why a request the server sent a client got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerCallError {
    #[error("the connection is not open (or its queue is full)")]
    NotConnected,
    #[error("no answer within {0} ms")]
    Timeout(u64),
    #[error("the connection closed before the answer")]
    Closed,
}

/// Answers awaited from clients, by (connection, opaque).
type Waiting = HashMap<(ConnId, i32), tokio::sync::oneshot::Sender<RemotingCommand>>;

/// The server's open connections, for requests the server sends them (notifications, and
/// calls that wait for the client's answer). Made before the server, so a handler can hold it.
#[derive(Clone, Default)]
pub struct Connections {
    open: Arc<Mutex<HashMap<ConnId, Arc<Outbox>>>>,
    waiting: Arc<Mutex<Waiting>>,
    next_opaque: Arc<std::sync::atomic::AtomicI32>,
}

impl Connections {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ConnId, Arc<Outbox>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `cmd` (a request the server sends) on connection `conn`; false if it is not
    /// open or its queue is past its bound (a notification is best effort).
    pub fn send(&self, conn: ConnId, cmd: &RemotingCommand) -> bool {
        let Some(outbox) = self.lock().get(&conn).cloned() else { return false };
        outbox.queued.load(Ordering::SeqCst) < outbox.queued_max && outbox.push(cmd)
    }

    /// Sends `cmd` (a request) on connection `conn` and waits up to `timeout_ms` for the
    /// client's answer (RocketMQ's broker-to-client calls, e.g. GET_CONSUMER_RUNNING_INFO).
    /// The request gets an opaque of the server's own numbering.
    pub async fn call(
        &self,
        conn: ConnId,
        mut cmd: RemotingCommand,
        timeout_ms: u64,
    ) -> Result<RemotingCommand, ServerCallError> {
        // Opaques from 1 up, wrapping within the positive range.
        let opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed).rem_euclid(i32::MAX) + 1;
        cmd.opaque = opaque;
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock_waiting(&self.waiting).insert((conn, opaque), tx);
        if !self.send(conn, &cmd) {
            lock_waiting(&self.waiting).remove(&(conn, opaque));
            return Err(ServerCallError::NotConnected);
        }
        match tokio::time::timeout(Duration::from_millis(timeout_ms), rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(ServerCallError::Closed),
            Err(_) => {
                lock_waiting(&self.waiting).remove(&(conn, opaque));
                Err(ServerCallError::Timeout(timeout_ms))
            }
        }
    }

    /// A response arrived on `conn`: hands it to the call waiting for it, if any.
    fn answered(&self, conn: ConnId, resp: RemotingCommand) {
        if let Some(tx) = lock_waiting(&self.waiting).remove(&(conn, resp.opaque)) {
            let _ = tx.send(resp);
        }
    }

    /// `conn` closed: the calls waiting on it end (their senders are dropped).
    fn forget(&self, conn: ConnId) {
        lock_waiting(&self.waiting).retain(|(c, _), _| *c != conn);
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes queued for `conn` and not yet written.
    pub fn queued_bytes(&self, conn: ConnId) -> Option<usize> {
        self.lock().get(&conn).map(|o| o.queued.load(Ordering::SeqCst))
    }
}

fn lock_waiting(m: &Mutex<Waiting>) -> MutexGuard<'_, Waiting> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Server {
    /// Serves `handler` on `listener` until [`Server::shutdown`].
    pub fn start<H: Handler>(
        listener: TcpListener,
        config: ServerConfig,
        handler: Arc<H>,
        connections: Connections,
    ) -> std::io::Result<Server> {
        let addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            config,
            handler,
            connections,
            open: AtomicUsize::new(0),
            open_per_ip: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
        });
        let accept = tokio::spawn(accept_loop(listener, shared, stop_rx));
        Ok(Server { addr, stop, accept: Mutex::new(Some(accept)) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops: the listener and every connection close at once.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// A receiver that turns true at the stop, for tasks that live with the server.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Stops and waits until the listener is closed (its port can be bound again).
    pub async fn shutdown_and_wait(&self) {
        self.shutdown();
        let accept = self.accept.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = accept {
            let _ = task.await;
        }
    }

    /// Waits until every task holding a stop signal (connections, their requests, and any
    /// [`Server::stop_signal`] taken) has ended, up to `wait`; false if some still run.
    pub async fn wait_stopped(&self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.stop.closed()).await.is_ok()
    }
}

struct Shared<H> {
    config: ServerConfig,
    handler: Arc<H>,
    connections: Connections,
    open: AtomicUsize,
    /// Open connections per peer IP address (an address with none has no entry).
    open_per_ip: Mutex<HashMap<IpAddr, usize>>,
    next_conn: AtomicU64,
}

/// The default of [`ServerConfig::connections_per_ip_max`].
pub const CONNECTIONS_PER_IP_MAX_DEFAULT: usize = 1_024;

impl<H> Shared<H> {
    /// Counts a new connection from `ip`, unless that address is at its limit.
    fn admit(&self, ip: IpAddr) -> bool {
        let mut open = self.open_per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.config.connections_per_ip_max {
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, ip: IpAddr) {
        let mut open = self.open_per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

async fn accept_loop<H: Handler>(
    listener: TcpListener,
    shared: Arc<Shared<H>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            r = listener.accept() => r,
        };
        let (stream, addr) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: keep serving the connections open.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Small answers must not wait for the peer's delayed ACK (Nagle).
        let _ = stream.set_nodelay(true);
        if shared.open.fetch_add(1, Ordering::SeqCst) >= shared.config.connections_max {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(peer = %addr, max = shared.config.connections_max, "too many connections: closing a new one");
            continue;
        }
        if !shared.admit(addr.ip()) {
            shared.open.fetch_sub(1, Ordering::SeqCst);
            let max = shared.config.connections_per_ip_max;
            tracing::warn!(peer = %addr, max, "too many connections from one address: closing a new one");
            continue;
        }
        let peer = Peer { addr, conn: shared.next_conn.fetch_add(1, Ordering::Relaxed) };
        let (shared, stop) = (shared.clone(), stop.clone());
        tokio::spawn(async move {
            match &shared.config.tls {
                None => serve(stream, peer, &shared, stop).await,
                Some(tls) => {
                    // A stop does not wait for handshakes in progress.
                    let mut stopping = stop.clone();
                    let accepted = tokio::select! {
                        biased;
                        _ = stopping.wait_for(|s| *s) => None,
                        a = tls.accept(stream) => Some(a),
                    };
                    match accepted {
                        None => {}
                        Some(Ok(Accepted::Plain(s))) => serve(s, peer, &shared, stop).await,
                        Some(Ok(Accepted::Tls(s))) => serve(s, peer, &shared, stop).await,
                        Some(Err(e)) => {
                            tracing::debug!(peer = %addr, error = %e, "closed a connection: TLS")
                        }
                    }
                }
            }
            shared.release(addr.ip());
            shared.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Serves one connection until the peer closes it, sends a malformed frame, stays idle, or
/// the server stops.
async fn serve<H: Handler, S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static>(
    stream: S,
    peer: Peer,
    shared: &Arc<Shared<H>>,
    mut stop: watch::Receiver<bool>,
) {
    let config = &shared.config;
    let (mut rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let outbox = Arc::new(Outbox {
        tx,
        queued: Arc::new(AtomicUsize::new(0)),
        drained: Arc::new(Notify::new()),
        queued_max: config.queued_response_bytes_max,
        frame_max_bytes: config.frame_max_bytes,
    });
    shared.connections.lock().insert(peer.conn, outbox.clone());
    let max = config.requests_in_flight_max.max(1);
    let in_flight = Arc::new(Semaphore::new(max));
    // Nanoseconds since `epoch` of the last write, for the idle check.
    #[allow(clippy::disallowed_methods)]
    let epoch = tokio::time::Instant::now();
    let last_write = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_loop(
        wr,
        rx,
        (outbox.queued.clone(), outbox.drained.clone(), outbox.queued_max),
        (in_flight.clone(), max),
        (epoch, last_write.clone()),
    ));
    let mut decoder = FrameDecoder::new(config.frame_max_bytes);
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let idle = (config.idle_timeout_ms > 0).then(|| Duration::from_millis(config.idle_timeout_ms));
    'read: loop {
        loop {
            // A peer that does not read its answers: take none of its requests until they
            // drain (checked before each frame: one read may hold thousands).
            while outbox.queued.load(Ordering::SeqCst) >= config.queued_response_bytes_max {
                let drained = outbox.drained.notified();
                tokio::pin!(drained);
                drained.as_mut().enable();
                if outbox.queued.load(Ordering::SeqCst) < config.queued_response_bytes_max {
                    break;
                }
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => break 'read,
                    _ = &mut drained => {}
                }
            }
            let cmd = match decoder.decode(&mut buf) {
                Ok(Some(cmd)) => cmd,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(peer = %peer.addr, error = %e, "malformed frame: closing the connection");
                    break 'read;
                }
            };
            if cmd.is_response() {
                shared.connections.answered(peer.conn, cmd);
                continue;
            }
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                if !cmd.is_oneway() {
                    outbox.push(&RemotingCommand::response_to(
                        &cmd,
                        response_code::SYSTEM_BUSY,
                        Some(OVERLOAD_REMARK.into()),
                    ));
                }
                continue;
            };
            let handler = shared.handler.clone();
            if config.ordered {
                let resp = tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => break 'read,
                    r = handler.handle(cmd, peer) => r,
                };
                if let Some(resp) = resp {
                    outbox.push(&resp);
                }
                drop(permit);
                continue;
            }
            let (outbox, mut stop) = (outbox.clone(), stop.clone());
            tokio::spawn(async move {
                // A stop ends the request too (a held request would otherwise keep what it
                // holds until it timed out).
                let resp = tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => None,
                    r = handler.handle(cmd, peer) => r,
                };
                if let Some(resp) = resp {
                    outbox.push(&resp);
                }
                drop(permit);
            });
        }
        if buf.capacity() - buf.len() < READ_BUFFER_BYTES / 4 {
            buf.reserve(READ_BUFFER_BYTES);
        }
        let read = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break 'read,
            r = read_or_idle(&mut rd, &mut buf, idle, &in_flight, max, epoch, &last_write) => r,
        };
        match read {
            Some(n) if n > 0 => {}
            Some(_) => break,
            None => {
                tracing::debug!(peer = %peer.addr, "idle: closing the connection");
                break;
            }
        }
    }
    drop(outbox);
    shared.connections.lock().remove(&peer.conn);
    shared.connections.forget(peer.conn);
    // Told before the requests still running end (a held pull may run on for seconds): the
    // peer is gone now.
    shared.handler.closed(peer);
    if *stop.borrow() {
        writer.abort();
    }
    let _ = writer.await;
}

/// Reads into `buf`: `Some(bytes read)` (0 at the end of the stream or on an error), or `None`
/// once the connection has been idle for `idle` (nothing read or written, no request running).
async fn read_or_idle<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    idle: Option<Duration>,
    in_flight: &Semaphore,
    max: usize,
    epoch: tokio::time::Instant,
    last_write: &AtomicU64,
) -> Option<usize> {
    let Some(idle) = idle else {
        return Some(rd.read_buf(buf).await.unwrap_or(0));
    };
    let read = rd.read_buf(buf);
    tokio::pin!(read);
    let mut since = epoch.elapsed();
    loop {
        let wait = idle.saturating_sub(epoch.elapsed().saturating_sub(since));
        tokio::select! {
            biased;
            r = &mut read => return Some(r.unwrap_or(0)),
            _ = tokio::time::sleep(wait.max(Duration::from_millis(1))) => {}
        }
        let wrote = Duration::from_nanos(last_write.load(Ordering::Relaxed));
        since = since.max(wrote);
        if in_flight.available_permits() < max {
            since = epoch.elapsed();
        }
        if epoch.elapsed().saturating_sub(since) >= idle {
            return None;
        }
    }
}

/// Writes what the connection's tasks queue: a lone answer at once, answers that become ready
/// together (one Raft round's) in one syscall.
async fn write_loop<W: tokio::io::AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    // The outbox's counter and signal, not the outbox: it holds a sender, and the queue ends
    // when the last sender goes.
    (queued, drained, queued_max): (Arc<AtomicUsize>, Arc<Notify>, usize),
    (handling, max): (Arc<Semaphore>, usize),
    (epoch, last_write): (tokio::time::Instant, Arc<AtomicU64>),
) {
    let mut batch = BytesMut::with_capacity(WRITE_BATCH_BYTES);
    while let Some(first) = rx.recv().await {
        // While other requests of this connection are being handled, let the tasks holding
        // them queue their answers, then write them all at once.
        if handling.available_permits() < max {
            tokio::task::yield_now().await;
        }
        let mut bytes = first.len();
        let written = match rx.try_recv() {
            Err(_) => wr.write_all(&first).await,
            Ok(second) => {
                batch.clear();
                batch.extend_from_slice(&first);
                batch.extend_from_slice(&second);
                bytes += second.len();
                while batch.len() < WRITE_BATCH_BYTES {
                    let Ok(next) = rx.try_recv() else { break };
                    bytes += next.len();
                    batch.extend_from_slice(&next);
                }
                wr.write_all(&batch).await
            }
        };
        // madsim's TCP sends on flush only; real tokio's flush is a no-op.
        if written.is_err() || wr.flush().await.is_err() {
            return;
        }
        last_write.store(epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let before = queued.fetch_sub(bytes, Ordering::SeqCst);
        if before >= queued_max && before - bytes < queued_max {
            drained.notify_waiters();
        }
        if batch.capacity() > 4 * WRITE_BATCH_BYTES {
            batch = BytesMut::with_capacity(WRITE_BATCH_BYTES);
        }
    }
}
