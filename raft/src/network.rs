//! The Raft RPC transport: TCP between the replicas of a group, on their own port (40911 by
//! default), written against the `tokio` (madsim-tokio) API so the same code runs in the
//! simulation.
//!
//! Wire format: each message is `u32 length (big-endian) | bincode 2 payload`. A request is an
//! [`Envelope`] naming the group and the target node, so a misdirected connection is refused
//! instead of fed into the wrong Raft. Frames over [`RPC_FRAME_MAX_BYTES`] and payloads that do
//! not decode close the connection with a logged error; the node keeps running.
//!
//! A client keeps one connection per peer and reuses it; a failed or timed-out call drops it
//! and the next call reconnects, and so does a call after the connection sat unused for half
//! the server's idle timeout (the server may be closing it). Every call is bounded by
//! openraft's RPC timeout.
//!
//! The server follows the remoting server's rules ([`ServeLimits`]): at most
//! `connections_max` connections (beyond, closed at once), a connection with no frame for
//! `idle_timeout_ms` is closed, a frame's length is checked against `frame_max_bytes` before
//! any of it is read, and its payload buffer grows with the bytes that arrive past 1 MiB, not
//! with the length a peer claims. Reads go through a 64 KiB buffer (a small frame costs one read
//! syscall, not two); each frame, length and payload, is written with one syscall. A
//! connection carries one request at a time (openraft awaits each RPC to a peer before the
//! next), so there is nothing more to coalesce.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::budget::ReplicationBudget;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use rocketraft_remoting::tls::{Accepted, ClientTls, ServerTls};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::error::CodecError;
use crate::types::{decode_untrusted, encode_into, NodeId, TypeConfig};

/// The default Raft port (DESIGN.md §7).
pub const RAFT_PORT_DEFAULT: u16 = 40911;
/// The largest RPC frame accepted (append batches and snapshot chunks stay well below).
pub const RPC_FRAME_MAX_BYTES: usize = 64 << 20;
/// The largest entry payload that crosses in one AppendEntries frame (1 MiB of the frame is
/// left to the envelope and the entry's own fields). Proposals are never larger; the broker's
/// config refuses a `message_max_bytes` whose record would be.
pub const ENTRY_PAYLOAD_REPLICABLE_MAX_BYTES: usize = RPC_FRAME_MAX_BYTES - (1 << 20);
/// Connect timeout when openraft's RPC option does not bound it tighter.
const CONNECT_TIMEOUT_MS_MAX: u64 = 1_000;
/// A connection's read buffer, as the remoting server's.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// A frame's payload buffer is allocated up to this before its bytes arrive.
const PAYLOAD_PREALLOCATED_MAX_BYTES: usize = 1 << 20;

/// The Raft server's limits. A group's replicas need two connections per peer (one each
/// way); the defaults leave room for restarts and probes, not for floods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Connections beyond this are closed at once. Default 256.
    pub connections_max: usize,
    /// A connection with no frame for this long is closed. Default 120,000 ms (the remoting
    /// server's); a leader's heartbeats keep its connections busy.
    pub idle_timeout_ms: u64,
    /// The largest frame accepted. Default [`RPC_FRAME_MAX_BYTES`]; never above it.
    pub frame_max_bytes: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            connections_max: 256,
            idle_timeout_ms: 120_000,
            frame_max_bytes: RPC_FRAME_MAX_BYTES,
        }
    }
}

/// A client reuses a connection unused for at most this long (half the server's default idle
/// timeout): an older one may be closing at the server, and a vote sent on it would be lost.
const CLIENT_REUSE_MS_MAX: u64 = 60_000;

/// A request with its address: group and target node.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub group: String,
    pub to: NodeId,
    pub body: RpcRequest,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RpcRequest {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// The leader hands leadership over (see `crate::transfer`): the target stands for
    /// election now. After the first three, so frames of those decode as before.
    TimeoutNow(TimeoutNow),
    /// Which incarnation of its data directory the target runs on (see
    /// `MetaCommand::SetReplica`): asked before the group records it.
    Identity,
    /// `inner`, for the target's data directory of `incarnation` only: a replica whose data
    /// was wiped (or another machine under its id) refuses it, so it neither votes nor counts
    /// toward a commit until it is added again. Sent once the group recorded the target's.
    Checked {
        incarnation: u64,
        inner: CheckedRequest,
    },
    /// Whether the target belongs to a group already (it holds a membership): asked by a
    /// replica with empty data that would bootstrap its group, so that one whose data was
    /// wiped joins no group of its own while its old one goes on. After the others, so
    /// frames of those decode as before.
    Founded,
}

/// What a [`RpcRequest::Checked`] carries: the requests a replica serves, without another
/// check. Not recursive, so a frame of checks nested ten thousand deep cannot exhaust the
/// stack while it decodes (bincode has no depth limit). Its variants are [`RpcRequest`]'s first
/// four, in the same order, so each encodes as it does there.
#[derive(Debug, Serialize, Deserialize)]
pub enum CheckedRequest {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    TimeoutNow(TimeoutNow),
}

impl CheckedRequest {
    /// `request` to send checked, or back as it was if it is not one to check (`Err`).
    fn wrap(request: RpcRequest) -> Result<Self, RpcRequest> {
        match request {
            RpcRequest::Append(r) => Ok(CheckedRequest::Append(r)),
            RpcRequest::Vote(r) => Ok(CheckedRequest::Vote(r)),
            RpcRequest::Snapshot(r) => Ok(CheckedRequest::Snapshot(r)),
            RpcRequest::TimeoutNow(r) => Ok(CheckedRequest::TimeoutNow(r)),
            other => Err(other),
        }
    }

    fn unwrap(self) -> RpcRequest {
        match self {
            CheckedRequest::Append(r) => RpcRequest::Append(r),
            CheckedRequest::Vote(r) => RpcRequest::Vote(r),
            CheckedRequest::Snapshot(r) => RpcRequest::Snapshot(r),
            CheckedRequest::TimeoutNow(r) => RpcRequest::TimeoutNow(r),
        }
    }
}

/// What a leader tells the replica it hands leadership to: its term and the last log index the
/// target must hold, so a target that is not caught up (or a leader that was already replaced)
/// does not start an election it cannot win.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutNow {
    pub term: u64,
    pub from: NodeId,
    pub last_log_index: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// The envelope named another group or node.
    Misdirected {
        reason: String,
    },
    /// The target stands for election (`Ok`), or why it does not.
    TimeoutNow(Result<(), String>),
    /// The target's incarnation (`None`: it keeps none).
    Identity(Option<u64>),
    /// Whether the target belongs to a group already.
    Founded(bool),
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes exceeds the {1}-byte limit")]
    TooLarge(usize, usize),
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// An AppendEntries the replica's [`AppendGuard`] refused.
    #[error("AppendEntries refused: {0}")]
    Refused(String),
}

async fn write_frame<T: Serialize, W: AsyncWriteExt + Unpin>(
    w: &mut W,
    value: &T,
) -> Result<(), FrameError> {
    // Encoded straight after room for the length: one copy of the entries' bytes.
    let mut frame = vec![0u8; 4];
    encode_into(value, &mut frame)?;
    let len = frame.len() - 4;
    if len > RPC_FRAME_MAX_BYTES {
        return Err(FrameError::TooLarge(len, RPC_FRAME_MAX_BYTES));
    }
    frame[..4].copy_from_slice(&(len as u32).to_be_bytes());
    w.write_all(&frame).await?;
    // madsim's TCP sends only on flush; real tokio's flush is a no-op.
    w.flush().await?;
    Ok(())
}

async fn read_frame<T: serde::de::DeserializeOwned, R: AsyncReadExt + Unpin>(
    r: &mut R,
    frame_max_bytes: usize,
) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    let limit = frame_max_bytes.min(RPC_FRAME_MAX_BYTES);
    if len > limit {
        return Err(FrameError::TooLarge(len, limit));
    }
    // Up to 1 MiB at once (an append batch, usually), grown beyond as bytes arrive: a peer
    // that claims 64 MiB and sends 10 bytes holds 1 MiB, not 64.
    let mut payload = Vec::with_capacity(len.min(PAYLOAD_PREALLOCATED_MAX_BYTES));
    let read = r.take(len as u64).read_to_end(&mut payload).await?;
    if read < len {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    Ok(decode_untrusted::<T, RPC_FRAME_MAX_BYTES>(&payload)?)
}

/// Looks at each AppendEntries before openraft does. `Err(why)` refuses it: the connection is
/// closed unanswered and the guard's owner stops the replica (see `node::applied_entries_guard`:
/// a leader whose log differs from entries this replica already applied).
pub type AppendGuard =
    Arc<dyn Fn(&AppendEntriesRequest<TypeConfig>) -> Result<(), String> + Send + Sync>;

/// Serves Raft RPCs for `raft` on `listener` until `stop` changes (or its sender is dropped)
/// or the listener fails. Every connection task ends with it, so a stopped node's old
/// connections cannot keep feeding a dead Raft while a restarted one listens on the port.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    group: String,
    id: NodeId,
    stop: tokio::sync::watch::Receiver<bool>,
    guard: Option<AppendGuard>,
    tls: Option<ServerTls>,
    incarnation: Option<u64>,
) {
    let limits = ServeLimits::default();
    serve_with(listener, raft, group, id, stop, limits, guard, tls, incarnation).await
}

/// [`serve`] with other limits. With `tls` (mutual: see [`RaftTls`]), a connection is served
/// only once its peer presented a certificate the cluster's CA signed. `incarnation` is this
/// replica's data directory's (see [`RpcRequest::Checked`]).
#[allow(clippy::too_many_arguments)]
pub async fn serve_with(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    group: String,
    id: NodeId,
    stop: tokio::sync::watch::Receiver<bool>,
    limits: ServeLimits,
    guard: Option<AppendGuard>,
    tls: Option<ServerTls>,
    incarnation: Option<u64>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut stop_accept = stop.clone();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop_accept.changed() => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "Raft listener failed");
                return;
            }
        };
        if open.load(Ordering::Relaxed) >= limits.connections_max {
            tracing::warn!(%peer, "a Raft connection over the limit of {} closed", limits.connections_max);
            drop(stream);
            continue;
        }
        // Replies are small and latency-bound: no Nagle delay behind the peer's delayed ACK.
        let _ = stream.set_nodelay(true);
        let (raft, group, mut stop, guard, tls) =
            (raft.clone(), group.clone(), stop.clone(), guard.clone(), tls.clone());
        let held = OpenConnection::new(&open);
        tokio::spawn(async move {
            let _held = held;
            let serving = async {
                match tls {
                    None => {
                        serve_connection(stream, raft, &group, id, incarnation, limits, guard).await
                    }
                    Some(tls) => match tls.accept(stream).await {
                        Ok(Accepted::Tls(s)) => {
                            serve_connection(s, raft, &group, id, incarnation, limits, guard).await
                        }
                        // The Raft port's TLS is enforcing: never here.
                        Ok(Accepted::Plain(_)) => Ok(()),
                        // A scanner, a plain client, a peer of another CA (it retries every
                        // heartbeat): not worth a warning each.
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "a Raft connection failed TLS");
                            Ok(())
                        }
                    },
                }
            };
            let result = tokio::select! {
                biased;
                _ = stop.changed() => Ok(()),
                r = serving => r,
            };
            if let Err(e) = result {
                match e {
                    FrameError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
                    FrameError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                        tracing::debug!(%peer, "closing an idle Raft connection")
                    }
                    e => tracing::warn!(%peer, error = %e, "closing a Raft connection"),
                }
            }
        });
    }
}

/// Counts a connection as open while it lives.
struct OpenConnection(Arc<AtomicUsize>);

impl OpenConnection {
    fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(open.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    raft: Raft<TypeConfig>,
    group: &str,
    id: NodeId,
    incarnation: Option<u64>,
    limits: ServeLimits,
    guard: Option<AppendGuard>,
) -> Result<(), FrameError> {
    let mut stream = BufReader::with_capacity(READ_BUFFER_BYTES, stream);
    let idle = Duration::from_millis(limits.idle_timeout_ms);
    loop {
        let next = read_frame::<Envelope, _>(&mut stream, limits.frame_max_bytes);
        let envelope = if limits.idle_timeout_ms == 0 {
            next.await?
        } else {
            match tokio::time::timeout(idle, next).await {
                Ok(frame) => frame?,
                Err(_) => return Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
            }
        };
        let response = if envelope.group != group || envelope.to != id {
            RpcResponse::Misdirected {
                reason: format!(
                    "this is node {id} of group {group:?}, not node {} of group {:?}",
                    envelope.to, envelope.group
                ),
            }
        } else {
            let body = match envelope.body {
                RpcRequest::Checked { incarnation: expected, inner } => {
                    if incarnation != Some(expected) {
                        let mine = incarnation.map_or("none".to_owned(), |i| i.to_string());
                        let reason = format!(
                            "node {id} of group {group:?} runs on data of incarnation {mine}, \
                             not {expected}, which the group knows: its data was wiped or it \
                             is another machine; remove it from the group and add it again"
                        );
                        refused_as_other(group, id, &reason);
                        Err(reason)
                    } else {
                        Ok(inner.unwrap())
                    }
                }
                body => Ok(body),
            };
            match body {
                Err(reason) => RpcResponse::Misdirected { reason },
                Ok(RpcRequest::Append(req)) => {
                    if let Some(Err(why)) = guard.as_ref().map(|g| g(&req)) {
                        return Err(FrameError::Refused(why));
                    }
                    RpcResponse::Append(raft.append_entries(req).await)
                }
                Ok(RpcRequest::Vote(req)) => RpcResponse::Vote(raft.vote(req).await),
                Ok(RpcRequest::Snapshot(req)) => {
                    RpcResponse::Snapshot(raft.install_snapshot(req).await)
                }
                Ok(RpcRequest::TimeoutNow(req)) => {
                    RpcResponse::TimeoutNow(stand_for_election(&raft, id, req).await)
                }
                Ok(RpcRequest::Identity) => RpcResponse::Identity(incarnation),
                Ok(RpcRequest::Founded) => RpcResponse::Founded(
                    raft.metrics().borrow().membership_config.membership().nodes().next().is_some(),
                ),
                // Never: a checked request carries none (see `CheckedRequest`).
                Ok(RpcRequest::Checked { .. }) => RpcResponse::Misdirected {
                    reason: "a checked request inside a checked one".into(),
                },
            }
        };
        write_frame(stream.get_mut(), &response).await?;
    }
}

/// Says that this replica refuses its group's calls for running on other data than the group
/// recorded: the operator must act (remove and add it). Each refused call answers the caller
/// with the reason, and the callers' peer health reports it (once, then every 30 s).
fn refused_as_other(group: &str, id: NodeId, reason: &str) {
    tracing::debug!(group = %group, id, "{reason}");
}

/// A leader asks this replica to take over: it stands for election at once if it still
/// follows that leader in that term, is a voter, and holds the leader's log as of the request
/// (then the leader's vote, and its log check, go its way).
async fn stand_for_election(
    raft: &Raft<TypeConfig>,
    id: NodeId,
    req: TimeoutNow,
) -> Result<(), String> {
    let (term, leader, voter, last) = {
        let m = raft.metrics();
        let m = m.borrow();
        let voter = m.membership_config.membership().voter_ids().any(|v| v == id);
        (m.current_term, m.current_leader, voter, m.last_log_index.unwrap_or(0))
    };
    if term != req.term || leader != Some(req.from) {
        return Err(format!(
            "node {id} is in term {term} with leader {leader:?}, not term {} led by {}",
            req.term, req.from
        ));
    }
    if !voter {
        return Err(format!("node {id} is not a voter"));
    }
    if last < req.last_log_index {
        return Err(format!(
            "node {id} holds the log to {last}, not to the leader's {}",
            req.last_log_index
        ));
    }
    tracing::info!(term, from = req.from, "the leader hands over: standing for election");
    raft.trigger().elect().await.map_err(|e| e.to_string())
}

/// Faults injected into this node's outgoing Raft RPCs: the simulation's seam for message
/// loss and duplication (madsim's TCP never drops or duplicates). Probabilities per mille,
/// drawn from the runtime's RNG (seeded under madsim). Default: none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageFaults {
    /// The request is not sent; the caller sees a network error (as after a lost packet).
    pub drop_per_mille: u32,
    /// The request is delivered twice; the caller gets the second answer.
    pub duplicate_per_mille: u32,
}

impl MessageFaults {
    fn roll(per_mille: u32) -> bool {
        use openraft::AsyncRuntime;
        use rand::Rng;
        per_mille > 0 && crate::runtime::MadRuntime::thread_rng().gen_range(0..1000) < per_mille
    }
}

/// A Raft connection's byte stream: plain TCP or TLS over it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection to a peer, read through a buffer.
type Conn = BufReader<Box<dyn Io>>;

/// Mutual TLS on the Raft port: every replica presents a certificate the cluster's CA signed
/// and accepts only peers that do, so nothing without the cluster's key can send AppendEntries,
/// votes or snapshots (nor read what replicas send each other).
#[derive(Debug, Clone)]
pub struct RaftTls {
    /// What this replica's Raft port presents and whom it lets in (a client CA: mutual).
    pub server: ServerTls,
    /// What it trusts and presents when it calls its peers.
    pub client: ClientTls,
}

/// A peer whose every call fails is reported once it has failed this long (a staggered start,
/// a restart or a short partition stays quiet)...
pub const PEER_FAILING_REPORT_MS: u64 = 5_000;
/// ...and again this often while it goes on failing.
pub const PEER_FAILING_REPEAT_MS: u64 = 30_000;

/// Which peers' calls have been failing, and since when: what the operator reads instead of
/// openraft's error per failed heartbeat (openraft's own logs are off by default).
#[derive(Debug, Default)]
struct PeerHealth {
    failing: Mutex<BTreeMap<NodeId, Failing>>,
}

#[derive(Debug, Clone, Copy)]
struct Failing {
    since: tokio::time::Instant,
    reported: Option<tokio::time::Instant>,
}

impl PeerHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, Failing>> {
        self.failing.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn succeeded(&self, group: &str, peer: NodeId, addr: &str) {
        let Some(f) = self.lock().remove(&peer) else { return };
        if f.reported.is_some() {
            let after_s = f.since.elapsed().as_secs();
            tracing::info!(group = %group, peer, addr = %addr, after_s, "a Raft peer answers again");
        }
    }

    fn failed(&self, group: &str, peer: NodeId, addr: &str, error: &str) {
        #[allow(clippy::disallowed_methods)] // the runtime's clock, virtual under madsim
        let now = tokio::time::Instant::now();
        let mut failing = self.lock();
        let f = failing.entry(peer).or_insert(Failing { since: now, reported: None });
        let for_ms = now.duration_since(f.since).as_millis() as u64;
        let due = f
            .reported
            .is_none_or(|r| now.duration_since(r) >= Duration::from_millis(PEER_FAILING_REPEAT_MS));
        if for_ms >= PEER_FAILING_REPORT_MS && due {
            f.reported = Some(now);
            let for_s = for_ms / 1000;
            tracing::warn!(
                group = %group,
                peer,
                addr = %addr,
                for_s,
                error = %error,
                "Raft calls to a peer keep failing"
            );
        }
    }
}

/// Makes one [`PeerClient`] per target.
#[derive(Debug, Clone)]
pub struct Network {
    group: String,
    faults: MessageFaults,
    budget: Arc<ReplicationBudget>,
    tls: Option<ClientTls>,
    health: Arc<PeerHealth>,
    known: Option<Incarnations>,
}

/// The incarnation the group recorded for a replica (see [`RpcRequest::Checked`]): the state
/// machine's table, read on every call.
#[derive(Clone)]
pub struct Incarnations(pub Arc<dyn Fn(NodeId) -> Option<u64> + Send + Sync>);

impl std::fmt::Debug for Incarnations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Incarnations")
    }
}

impl Network {
    /// `budget` is the log reader's (see [`crate::budget`]): appends with entries that time
    /// out shrink it, quick ones grow it back.
    pub fn new(
        group: impl Into<String>,
        faults: MessageFaults,
        budget: Arc<ReplicationBudget>,
    ) -> Self {
        Network {
            group: group.into(),
            faults,
            budget,
            tls: None,
            health: Arc::default(),
            known: None,
        }
    }

    /// Calls each peer whose incarnation `known` names as that incarnation only.
    pub fn with_incarnations(mut self, known: Incarnations) -> Self {
        self.known = Some(known);
        self
    }

    /// Calls peers over TLS with this identity.
    pub fn with_tls(mut self, tls: Option<ClientTls>) -> Self {
        self.tls = tls;
        self
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            group: self.group.clone(),
            target,
            addr: node.addr.clone(),
            conn: Mutex::new(None),
            tls: self.tls.clone(),
            faults: self.faults,
            budget: self.budget.clone(),
            health: self.health.clone(),
            known: self.known.clone(),
        }
    }
}

/// The connection to one peer.
pub struct PeerClient {
    group: String,
    target: NodeId,
    addr: String,
    // madsim's TcpStream is not Sync and openraft needs a Sync network: only touched through
    // `&mut self`, so `Mutex::get_mut` never blocks. With the time it was last used.
    conn: Mutex<Option<(Conn, tokio::time::Instant)>>,
    tls: Option<ClientTls>,
    faults: MessageFaults,
    budget: Arc<ReplicationBudget>,
    health: Arc<PeerHealth>,
    known: Option<Incarnations>,
}

/// Times one AppendEntries with entries for the budget: answered (how fast), or timed out,
/// which includes openraft dropping the call at its own timeout (this guard's drop).
struct Timed<'a> {
    budget: &'a ReplicationBudget,
    started: tokio::time::Instant,
    limit: Duration,
    done: bool,
}

impl Timed<'_> {
    fn answered(mut self) {
        self.done = true;
        self.budget.answered(self.started.elapsed(), self.limit);
    }

    fn forget(mut self) {
        self.done = true;
    }
}

impl Drop for Timed<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.budget.timed_out();
        }
    }
}

type CallError = RPCError<NodeId, BasicNode, RaftError<NodeId>>;

impl PeerClient {
    async fn call(
        &mut self,
        body: RpcRequest,
        timeout: Duration,
    ) -> Result<RpcResponse, (bool, String)> {
        let result = self.call_once(body, timeout).await;
        // A peer that answers for another node or group, or whose Raft refuses, is failing too.
        let failure = match &result {
            Ok(RpcResponse::Misdirected { reason }) => Some(format!("misdirected: {reason}")),
            Ok(RpcResponse::Append(Err(e)) | RpcResponse::Vote(Err(e))) => Some(e.to_string()),
            Ok(RpcResponse::Snapshot(Err(e))) => Some(e.to_string()),
            Ok(RpcResponse::TimeoutNow(Err(e))) => Some(e.clone()),
            Ok(_) => None,
            Err((_, e)) => Some(e.clone()),
        };
        match failure {
            None => self.health.succeeded(&self.group, self.target, &self.addr),
            Some(e) => self.health.failed(&self.group, self.target, &self.addr, &e),
        }
        result
    }

    async fn call_once(
        &mut self,
        body: RpcRequest,
        timeout: Duration,
    ) -> Result<RpcResponse, (bool, String)> {
        if MessageFaults::roll(self.faults.drop_per_mille) {
            return Err((false, format!("RPC to {} dropped (simulated)", self.addr)));
        }
        let expected = self.known.as_ref().and_then(|k| (k.0)(self.target));
        let body = match expected {
            Some(incarnation) => match CheckedRequest::wrap(body) {
                Ok(inner) => RpcRequest::Checked { incarnation, inner },
                Err(body) => body,
            },
            None => body,
        };
        let envelope = Envelope { group: self.group.clone(), to: self.target, body };
        if MessageFaults::roll(self.faults.duplicate_per_mille) {
            // The first copy's answer is discarded: the peer handles the request twice.
            let _ = self.exchange(&envelope, timeout).await;
        }
        self.exchange(&envelope, timeout).await
    }

    async fn exchange(
        &mut self,
        envelope: &Envelope,
        timeout: Duration,
    ) -> Result<RpcResponse, (bool, String)> {
        let slot = self.conn.get_mut().unwrap_or_else(|p| p.into_inner());
        let reusable = slot
            .take()
            .filter(|(_, used)| used.elapsed() < Duration::from_millis(CLIENT_REUSE_MS_MAX));
        let stream = match reusable {
            Some((s, _)) => s,
            None => {
                let connect_ms = (timeout.as_millis() as u64).min(CONNECT_TIMEOUT_MS_MAX);
                match tokio::time::timeout(
                    Duration::from_millis(connect_ms),
                    TcpStream::connect(&self.addr),
                )
                .await
                {
                    Ok(Ok(s)) => {
                        let _ = s.set_nodelay(true);
                        let io: Box<dyn Io> = match &self.tls {
                            None => Box::new(s),
                            Some(tls) => match tls.connect(&self.addr, s).await {
                                Ok(s) => Box::new(s),
                                Err(e) => return Err((true, format!("TLS to {}: {e}", self.addr))),
                            },
                        };
                        BufReader::with_capacity(READ_BUFFER_BYTES, io)
                    }
                    Ok(Err(e)) => return Err((true, format!("connect to {}: {e}", self.addr))),
                    Err(_) => return Err((true, format!("connect to {} timed out", self.addr))),
                }
            }
        };
        let mut stream = stream;
        let exchange = async {
            write_frame(stream.get_mut(), envelope).await?;
            read_frame::<RpcResponse, _>(&mut stream, RPC_FRAME_MAX_BYTES).await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(resp)) => {
                // Only a connection that completed an exchange is reused.
                // The runtime's clock (virtual under madsim).
                #[allow(clippy::disallowed_methods)]
                let now = tokio::time::Instant::now();
                *self.conn.get_mut().unwrap_or_else(|p| p.into_inner()) = Some((stream, now));
                Ok(resp)
            }
            Ok(Err(e)) => Err((false, e.to_string())),
            Err(_) => Err((false, format!("RPC to {} timed out after {timeout:?}", self.addr))),
        }
    }
}

impl PeerClient {
    /// The incarnation of the peer's data directory (see [`RpcRequest::Identity`]).
    pub async fn identity(&mut self, timeout: Duration) -> Result<Option<u64>, String> {
        match self.call(RpcRequest::Identity, timeout).await {
            Ok(RpcResponse::Identity(incarnation)) => Ok(incarnation),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err((_, e)) => Err(e),
        }
    }

    /// Whether the peer belongs to a group already (see [`RpcRequest::Founded`]).
    pub async fn founded(&mut self, timeout: Duration) -> Result<bool, String> {
        match self.call(RpcRequest::Founded, timeout).await {
            Ok(RpcResponse::Founded(founded)) => Ok(founded),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err((_, e)) => Err(e),
        }
    }

    /// Asks the peer to stand for election now (see [`TimeoutNow`]).
    pub async fn timeout_now(&mut self, req: TimeoutNow, timeout: Duration) -> Result<(), String> {
        match self.call(RpcRequest::TimeoutNow(req), timeout).await {
            Ok(RpcResponse::TimeoutNow(answer)) => answer,
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err((_, e)) => Err(e),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

fn transport_error<E: std::error::Error>(
    unreachable: bool,
    msg: String,
) -> RPCError<NodeId, BasicNode, E> {
    let err = TransportError(msg);
    if unreachable {
        RPCError::Unreachable(Unreachable::new(&err))
    } else {
        RPCError::Network(NetworkError::new(&err))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, CallError> {
        let limit = option.hard_ttl();
        let budget = self.budget.clone();
        // The runtime's clock (virtual under madsim).
        #[allow(clippy::disallowed_methods)]
        let timed = (!rpc.entries.is_empty()).then(|| Timed {
            budget: &budget,
            started: tokio::time::Instant::now(),
            limit,
            done: false,
        });
        let answer = self.call(RpcRequest::Append(rpc), limit).await;
        if let Some(t) = timed {
            match &answer {
                Ok(_) => t.answered(),
                // Our own timeout (openraft's drops the call: the guard's drop).
                Err(_) if t.started.elapsed() >= limit => drop(t),
                // A refused connection or a closed one says nothing of the size.
                Err(_) => t.forget(),
            }
        }
        match answer {
            Ok(RpcResponse::Append(Ok(r))) => Ok(r),
            Ok(RpcResponse::Append(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(other) => Err(transport_error(false, format!("unexpected answer {other:?}"))),
            Err((unreachable, msg)) => Err(transport_error(unreachable, msg)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self.call(RpcRequest::Snapshot(rpc), option.hard_ttl()).await {
            Ok(RpcResponse::Snapshot(Ok(r))) => Ok(r),
            Ok(RpcResponse::Snapshot(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(other) => Err(transport_error(false, format!("unexpected answer {other:?}"))),
            Err((unreachable, msg)) => Err(transport_error(unreachable, msg)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, CallError> {
        match self.call(RpcRequest::Vote(rpc), option.hard_ttl()).await {
            Ok(RpcResponse::Vote(Ok(r))) => Ok(r),
            Ok(RpcResponse::Vote(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(other) => Err(transport_error(false, format!("unexpected answer {other:?}"))),
            Err((unreachable, msg)) => Err(transport_error(unreachable, msg)),
        }
    }
}
