//! The remoting server's limits over real TCP: what a RocketMQ client sees, and what the
//! server holds, when a peer misbehaves. (The simulation runs the same server over madsim's
//! TCP; these need the real one.)
#![cfg(not(madsim))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rocketraft_protocol::frame::{encode_frame, FrameDecoder};
use rocketraft_protocol::{response_code, RemotingCommand};
use rocketraft_remoting::server::OVERLOAD_REMARK;
use rocketraft_remoting::{Connections, Handler, Peer, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Answers every request with a body of `answer_bytes`, after `delay`; counts the requests.
struct Echo {
    answer_bytes: usize,
    delay: Duration,
    handled: AtomicUsize,
}

impl Handler for Echo {
    async fn handle(&self, req: RemotingCommand, _peer: Peer) -> Option<RemotingCommand> {
        self.handled.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let body = vec![7u8; self.answer_bytes];
        (!req.is_oneway()).then(|| {
            RemotingCommand::response_to(&req, response_code::SUCCESS, None).with_body(body)
        })
    }
}

async fn start(config: ServerConfig, echo: Echo) -> (Server, Arc<Echo>, Connections) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo = Arc::new(echo);
    let connections = Connections::new();
    let server = Server::start(listener, config, echo.clone(), connections.clone()).unwrap();
    (server, echo, connections)
}

fn request(opaque: i32) -> BytesMut {
    let mut out = BytesMut::new();
    let cmd = RemotingCommand::request_without_header(11).with_opaque(opaque);
    encode_frame(&cmd, &mut out).unwrap();
    out
}

/// Reads frames until `n` arrived or `wait` passed.
async fn read_frames(stream: &mut TcpStream, n: usize, wait: Duration) -> Vec<RemotingCommand> {
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        while got.len() < n {
            while let Some(cmd) = decoder.decode(&mut buf).unwrap() {
                got.push(cmd);
            }
            if got.len() >= n || stream.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                break;
            }
        }
    })
    .await;
    got
}

/// A client that sends requests and never reads the answers cannot make the server hold more
/// than the configured bytes for it (plus the answers being built): the server stops reading
/// its requests. Once it reads, every answer arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_cannot_grow_the_server_past_its_bound() {
    const BOUND: usize = 1 << 20;
    const ANSWER: usize = 64 * 1024;
    const IN_FLIGHT: usize = 64;
    // 3,000 answers of 64 KiB: 192 MiB, were the server to build and keep them all.
    const REQUESTS: usize = 3_000;
    let config = ServerConfig {
        queued_response_bytes_max: BOUND,
        requests_in_flight_max: IN_FLIGHT,
        ..Default::default()
    };
    let echo = Echo { answer_bytes: ANSWER, delay: Duration::ZERO, handled: AtomicUsize::new(0) };
    let (server, echo, connections) = start(config, echo).await;
    let stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let (rd, mut wr) = stream.into_split();
    // Requests go out from a task (the server stops reading them, so the writes block).
    let sender = tokio::spawn(async move {
        for i in 0..REQUESTS {
            wr.write_all(&request(i as i32)).await.unwrap();
        }
        wr.flush().await.unwrap();
        wr
    });
    let mut most = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        most = most.max(connections.queued_bytes(1).unwrap_or(0));
    }
    let handled = echo.handled.load(Ordering::SeqCst);
    // What the kernel buffers on both sides absorb comes on top of what the server queues.
    assert!(handled < REQUESTS, "the server stopped taking requests ({handled} handled)");
    let answer_frame = ANSWER + 64;
    assert!(most >= BOUND, "the queue reached its bound ({most} bytes): the test is live");
    assert!(
        most <= BOUND + IN_FLIGHT * answer_frame + answer_frame,
        "queued {most} bytes, bound {BOUND} + {IN_FLIGHT} answers being built"
    );
    // Reading now: every answer arrives, none lost, none refused.
    let mut stream = rd.reunite(sender.await.unwrap()).unwrap();
    let got = read_frames(&mut stream, REQUESTS, Duration::from_secs(30)).await;
    // Each request is answered: with its answer, or SYSTEM_BUSY beyond the in-flight limit.
    assert_eq!(got.len(), REQUESTS);
    let answered = got.iter().filter(|c| c.code == response_code::SUCCESS).count();
    assert_eq!(answered, echo.handled.load(Ordering::SeqCst));
    assert!(got.iter().all(|c| c.code == response_code::SUCCESS && c.body.len() == ANSWER
        || c.code == response_code::SYSTEM_BUSY));
    server.shutdown();
}

/// A frame whose length prefix is over the limit closes the connection at once: the server
/// does not wait for (or buffer) the body it announces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_limit_closes_the_connection_without_buffering_it() {
    let config = ServerConfig { frame_max_bytes: 1 << 20, ..Default::default() };
    let echo = Echo { answer_bytes: 0, delay: Duration::ZERO, handled: AtomicUsize::new(0) };
    let (server, echo, connections) = start(config, echo).await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    // A good request first: the connection works.
    stream.write_all(&request(1)).await.unwrap();
    assert_eq!(read_frames(&mut stream, 1, Duration::from_secs(5)).await.len(), 1);
    // Then 100 MiB announced, 4 KiB sent.
    stream.write_all(&(100u32 << 20).to_be_bytes()).await.unwrap();
    stream.write_all(&[0u8; 4096]).await.unwrap();
    let mut rest = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(matches!(end, Ok(Ok(0))), "closed by the server: {end:?}");
    assert_eq!(echo.handled.load(Ordering::SeqCst), 1);
    assert!(connections.is_empty(), "nothing is kept for it");
    server.shutdown();
}

/// Requests beyond the in-flight limit are answered SYSTEM_BUSY with RocketMQ's remark (not
/// handled); a oneway request gets no answer; a request the server sends reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_oneway_and_server_requests_answer_as_rocketmq_does() {
    let config = ServerConfig { requests_in_flight_max: 2, ..Default::default() };
    let echo =
        Echo { answer_bytes: 1, delay: Duration::from_millis(300), handled: AtomicUsize::new(0) };
    let (server, echo, connections) = start(config, echo).await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let mut burst = BytesMut::new();
    for i in 0..5 {
        burst.extend_from_slice(&request(i));
    }
    stream.write_all(&burst).await.unwrap();
    let got = read_frames(&mut stream, 5, Duration::from_secs(5)).await;
    let busy: Vec<_> = got.iter().filter(|c| c.code == response_code::SYSTEM_BUSY).collect();
    assert_eq!(busy.len(), 3, "{got:?}");
    assert!(busy.iter().all(|c| c.remark.as_deref() == Some(OVERLOAD_REMARK)));
    assert_eq!(echo.handled.load(Ordering::SeqCst), 2);
    // Oneway: handled, not answered.
    let mut oneway = BytesMut::new();
    let cmd = RemotingCommand::request_without_header(11).with_opaque(9).into_oneway();
    encode_frame(&cmd, &mut oneway).unwrap();
    stream.write_all(&oneway).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(echo.handled.load(Ordering::SeqCst), 3);
    // A request from the server.
    let notify = RemotingCommand::request_without_header(40).into_oneway();
    assert!(connections.send(1, &notify));
    let got = read_frames(&mut stream, 1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "only the server's request: the oneway got no answer");
    assert_eq!(got[0].code, 40);
    server.shutdown();
}

/// A request the server sends a client and waits on (RocketMQ's broker-to-client calls): the
/// client's answer comes back to the caller; a client that does not answer times the call
/// out; a closed connection ends the calls waiting on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_client_gets_its_answer_a_timeout_or_the_close() {
    let echo = Echo { answer_bytes: 1, delay: Duration::ZERO, handled: AtomicUsize::new(0) };
    let (server, _echo, connections) = start(ServerConfig::default(), echo).await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    // Make sure the server has registered the connection.
    stream.write_all(&request(1)).await.unwrap();
    assert_eq!(read_frames(&mut stream, 1, Duration::from_secs(5)).await.len(), 1);

    let conns = connections.clone();
    let call = tokio::spawn(async move {
        conns
            .call(1, RemotingCommand::request_without_header(307).with_body(b"ask".to_vec()), 5_000)
            .await
    });
    let asked = read_frames(&mut stream, 1, Duration::from_secs(5)).await;
    assert_eq!(asked[0].code, 307);
    assert_eq!(&asked[0].body[..], b"ask");
    // A stray answer first (no one waits for it), then the real one.
    let mut out = BytesMut::new();
    let stray = RemotingCommand::response_to(&asked[0], 5, None).with_opaque(asked[0].opaque + 100);
    encode_frame(&stray, &mut out).unwrap();
    let answer =
        RemotingCommand::response_to(&asked[0], response_code::SUCCESS, Some("fine".into()))
            .with_body(b"info".to_vec());
    encode_frame(&answer, &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    let got = call.await.unwrap().unwrap();
    assert_eq!((got.code, got.remark.as_deref(), &got.body[..]), (0, Some("fine"), &b"info"[..]));

    let silent = connections.call(1, RemotingCommand::request_without_header(307), 200).await;
    assert_eq!(silent.unwrap_err(), rocketraft_remoting::ServerCallError::Timeout(200));
    let nobody = connections.call(99, RemotingCommand::request_without_header(307), 200).await;
    assert_eq!(nobody.unwrap_err(), rocketraft_remoting::ServerCallError::NotConnected);

    let conns = connections.clone();
    let call = tokio::spawn(async move {
        conns.call(1, RemotingCommand::request_without_header(307), 10_000).await
    });
    // The unanswered request of the timed-out call, then this one: once it arrived the call
    // waits, and closing the connection must end it.
    let pending = read_frames(&mut stream, 2, Duration::from_secs(5)).await;
    assert_eq!(pending.len(), 2, "{pending:?}");
    drop(stream);
    let closed = tokio::time::timeout(Duration::from_secs(5), call).await.unwrap().unwrap();
    assert_eq!(closed.unwrap_err(), rocketraft_remoting::ServerCallError::Closed);
    server.shutdown();
}

/// One address may hold at most `connections_per_ip_max` connections: the next is closed at
/// once (as one over `connections_max` is), and a slot freed by a close is taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_from_one_address_beyond_its_limit_are_closed() {
    let config = ServerConfig { connections_per_ip_max: 3, ..Default::default() };
    let echo = Echo { answer_bytes: 0, delay: Duration::ZERO, handled: AtomicUsize::new(0) };
    let (server, _echo, _connections) = start(config, echo).await;
    let answered = |mut s: TcpStream, opaque: i32| async move {
        // A closed connection may refuse the write or answer it with the end of the stream.
        if s.write_all(&request(opaque)).await.is_err() {
            return (false, s);
        }
        let got = read_frames(&mut s, 1, Duration::from_secs(5)).await;
        (got.len() == 1, s)
    };
    let mut open = Vec::new();
    for i in 0..3 {
        let s = TcpStream::connect(server.local_addr()).await.unwrap();
        let (ok, s) = answered(s, i).await;
        assert!(ok, "connection {i} of 3 is served");
        open.push(s);
    }
    let fourth = TcpStream::connect(server.local_addr()).await.unwrap();
    let (ok, _) = answered(fourth, 9).await;
    assert!(!ok, "a fourth connection from the same address is closed");

    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = TcpStream::connect(server.local_addr()).await.unwrap();
    let (ok, _) = answered(again, 10).await;
    assert!(ok, "the freed slot is taken again");
    server.shutdown();
}
