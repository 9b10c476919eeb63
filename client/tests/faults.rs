//! The client against peers that misbehave: garbage answers, connections closed mid-request,
//! silence, answers out of order, requests the peer starts. Each ends in a typed error or a
//! retry within the timeout, never a hang or a panic. The peers are fake servers on loopback
//! TCP speaking (or failing to speak) the RocketMQ frame format.

#![allow(clippy::disallowed_methods)] // tests read the clock to check timeouts

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rocketraft_client::remoting::{CallError, InboundHandler, Remoting, RemotingConfig};
use rocketraft_client::{
    ClientError, Message, MessageQueue, Producer, ProducerConfig, PullConsumer, PullConsumerConfig,
};
use rocketraft_protocol::body::{BrokerData, JsonBody, JsonStyle, QueueData, TopicRouteData};
use rocketraft_protocol::frame::{encode_frame, FrameDecoder};
use rocketraft_protocol::headers::{OffsetResponseHeader, PullMessageResponseHeader};
use rocketraft_protocol::{request_code, response_code, RemotingCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the fake peer does with a request.
enum Act {
    Reply(RemotingCommand),
    Raw(Vec<u8>),
    Close,
    Ignore,
}

/// A fake peer: each accepted connection reads frames and does what `act` says.
async fn fake<F>(act: F) -> SocketAddr
where
    F: Fn(&RemotingCommand) -> Act + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let act = Arc::new(act);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let act = act.clone();
            tokio::spawn(async move { serve(stream, &*act).await });
        }
    });
    addr
}

async fn serve(mut stream: TcpStream, act: &(dyn Fn(&RemotingCommand) -> Act + Send + Sync)) {
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::new();
    loop {
        while let Ok(Some(req)) = decoder.decode(&mut buf) {
            match act(&req) {
                Act::Reply(resp) => {
                    let mut out = BytesMut::new();
                    encode_frame(&resp, &mut out).unwrap();
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                }
                Act::Raw(bytes) => {
                    let _ = stream.write_all(&bytes).await;
                }
                Act::Close => return,
                Act::Ignore => {}
            }
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn ok(req: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(req, response_code::SUCCESS, None).with_body(req.body.clone())
}

fn ping(body: &str) -> RemotingCommand {
    RemotingCommand::request_without_header(request_code::GET_BROKER_RUNTIME_INFO)
        .with_body(body.to_owned().into_bytes())
}

#[tokio::test]
async fn a_garbage_answer_is_a_protocol_error_at_once() {
    // A length prefix of 2 cannot even hold the header length.
    let addr = fake(|_| Act::Raw(vec![0, 0, 0, 2, 0xff, 0xff])).await;
    let r = Remoting::new(RemotingConfig::default(), None);
    let t0 = Instant::now();
    let err = r.call(&addr.to_string(), ping("x"), 5_000).await.unwrap_err();
    assert!(matches!(err, CallError::Protocol { .. }), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(1), "not the timeout: {:?}", t0.elapsed());
}

#[tokio::test]
async fn a_connection_closed_mid_request_fails_the_call_and_the_next_call_reconnects() {
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let addr = fake(move |req| {
        let mut n = c.lock().unwrap();
        *n += 1;
        if *n == 1 {
            Act::Close
        } else {
            Act::Reply(ok(req))
        }
    })
    .await;
    let r = Remoting::new(RemotingConfig::default(), None);
    let err = r.call(&addr.to_string(), ping("first"), 5_000).await.unwrap_err();
    assert!(matches!(err, CallError::ConnectionClosed { .. }), "{err}");
    let resp = r.call(&addr.to_string(), ping("second"), 5_000).await.unwrap();
    assert_eq!(&resp.body[..], b"second", "a new connection answers");
}

#[tokio::test]
async fn silence_is_a_timeout_and_the_late_answer_is_dropped() {
    let addr = fake(|_| Act::Ignore).await;
    let r = Remoting::new(RemotingConfig::default(), None);
    let t0 = Instant::now();
    let err = r.call(&addr.to_string(), ping("x"), 300).await.unwrap_err();
    assert!(matches!(err, CallError::Timeout { timeout_ms: 300, .. }), "{err}");
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(2), "{waited:?}");
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let r = Remoting::new(RemotingConfig::default(), None);
    let err = r.call(&free.to_string(), ping("x"), 2_000).await.unwrap_err();
    assert!(matches!(err, CallError::Connect { .. }), "{err}");
}

#[tokio::test]
async fn answers_out_of_order_reach_their_own_callers() {
    // The peer holds every request until it has 20, then answers them last to first.
    let held: Arc<Mutex<Vec<RemotingCommand>>> = Arc::default();
    let h = held.clone();
    let addr = fake(move |req| {
        let mut held = h.lock().unwrap();
        held.push(req.clone());
        if held.len() < 20 {
            return Act::Ignore;
        }
        let mut out = BytesMut::new();
        for r in held.iter().rev() {
            encode_frame(&ok(r), &mut out).unwrap();
        }
        Act::Raw(out.to_vec())
    })
    .await;
    let r = Remoting::new(RemotingConfig::default(), None);
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let (r, a) = (r.clone(), addr.to_string());
            tokio::spawn(async move { (i, r.call(&a, ping(&format!("call-{i}")), 5_000).await) })
        })
        .collect();
    for c in calls {
        let (i, resp) = c.await.unwrap();
        assert_eq!(resp.unwrap().body, format!("call-{i}").into_bytes());
    }
}

#[tokio::test]
async fn requests_from_the_peer_reach_the_handler_or_get_not_supported() {
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler: InboundHandler = Arc::new(move |_, req| {
        seen_tx.send(req.code).unwrap();
        None
    });
    let r = Remoting::new(RemotingConfig::default(), Some(handler));
    r.connect(&addr.to_string()).await.unwrap();
    let (mut peer, _) = listener.accept().await.unwrap();
    let mut out = BytesMut::new();
    let notify = RemotingCommand::request_without_header(request_code::NOTIFY_CONSUMER_IDS_CHANGED)
        .with_opaque(7)
        .into_oneway();
    let unknown = RemotingCommand::request_without_header(999).with_opaque(8);
    encode_frame(&notify, &mut out).unwrap();
    encode_frame(&unknown, &mut out).unwrap();
    peer.write_all(&out).await.unwrap();
    assert_eq!(seen_rx.recv().await, Some(request_code::NOTIFY_CONSUMER_IDS_CHANGED));
    assert_eq!(seen_rx.recv().await, Some(999));
    // Only the non-oneway request is answered.
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::new();
    let answer = loop {
        if let Some(c) = decoder.decode(&mut buf).unwrap() {
            break c;
        }
        peer.read_buf(&mut buf).await.unwrap();
    };
    assert_eq!((answer.opaque, answer.code), (8, response_code::REQUEST_CODE_NOT_SUPPORTED));
    assert!(answer.is_response());
}

/// A GET_ROUTEINFO_BY_TOPIC answer: topic on group "b" (2 read/write queues), whose replicas
/// are `addrs` (brokerId -> address).
fn route_answer(req: &RemotingCommand, addrs: BTreeMap<i64, String>, queues: i32) -> Act {
    let route = TopicRouteData {
        broker_datas: vec![BrokerData {
            broker_addrs: addrs,
            broker_name: "b".into(),
            cluster: "C".into(),
            ..Default::default()
        }],
        queue_datas: vec![QueueData {
            broker_name: "b".into(),
            perm: 6,
            read_queue_nums: queues,
            topic_sys_flag: 0,
            write_queue_nums: queues,
        }],
        ..Default::default()
    };
    Act::Reply(
        RemotingCommand::response_to(req, response_code::SUCCESS, None)
            .with_body(route.to_json(JsonStyle::Standard)),
    )
}

/// A fake NameServer and broker in one: routes `T` to itself, then answers sends as `send`
/// says.
async fn fake_cluster<F>(send: F) -> SocketAddr
where
    F: Fn(&RemotingCommand) -> Act + Send + Sync + 'static,
{
    let me: Arc<Mutex<String>> = Arc::default();
    let m = me.clone();
    let addr = fake(move |req| match req.code {
        request_code::GET_ROUTEINFO_BY_TOPIC => {
            route_answer(req, [(0, m.lock().unwrap().clone())].into(), 2)
        }
        request_code::SEND_MESSAGE_V2 => send(req),
        _ => Act::Reply(ok(req)),
    })
    .await;
    *me.lock().unwrap() = addr.to_string();
    addr
}

#[tokio::test]
async fn a_broker_answering_garbage_to_sends_is_retried_then_reported() {
    let sends = Arc::new(Mutex::new(0));
    let s = sends.clone();
    let addr = fake_cluster(move |_| {
        *s.lock().unwrap() += 1;
        Act::Raw(b"\x00\x00\x00\x08\x00\x00\x00\x64garbage!".to_vec())
    })
    .await;
    let producer = Producer::start(ProducerConfig::new(&addr.to_string())).await.unwrap();
    let err = producer.send(Message::new("T", "x")).await.unwrap_err();
    match &err {
        ClientError::SendFailed { attempts: 3, last, .. } => {
            assert!(matches!(**last, ClientError::Protocol { .. }), "{last}")
        }
        other => panic!("expected three failed attempts, got {other}"),
    }
    assert_eq!(*sends.lock().unwrap(), 3, "1 + 2 retries");
    producer.shutdown().await;
}

#[tokio::test]
async fn a_broker_that_never_answers_fails_the_send_by_its_timeout() {
    let addr = fake_cluster(|_| Act::Ignore).await;
    let mut config = ProducerConfig::new(&addr.to_string());
    config.send_timeout_ms = 500;
    let producer = Producer::start(config).await.unwrap();
    let t0 = Instant::now();
    let err = producer.send(Message::new("T", "x")).await.unwrap_err();
    let waited = t0.elapsed();
    assert!(waited < Duration::from_secs(2), "the whole send is bounded: {waited:?}");
    let ClientError::SendFailed { last, .. } = &err else { panic!("{err}") };
    assert!(matches!(**last, ClientError::Timeout { .. }), "{last}");
    producer.shutdown().await;
}

#[tokio::test]
async fn a_refused_send_with_a_final_code_is_not_retried() {
    let sends = Arc::new(Mutex::new(0));
    let s = sends.clone();
    let addr = fake_cluster(move |req| {
        *s.lock().unwrap() += 1;
        Act::Reply(RemotingCommand::response_to(
            req,
            response_code::MESSAGE_ILLEGAL,
            Some("bad message".into()),
        ))
    })
    .await;
    let producer = Producer::start(ProducerConfig::new(&addr.to_string())).await.unwrap();
    let err = producer.send(Message::new("T", "x")).await.unwrap_err();
    assert_eq!(err.code(), Some(response_code::MESSAGE_ILLEGAL), "{err}");
    assert_eq!(*sends.lock().unwrap(), 1);
    producer.shutdown().await;
}

#[tokio::test]
async fn bad_settings_and_unknown_topics_are_clear_errors() {
    assert!(matches!(
        Producer::start(ProducerConfig::new("")).await,
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(matches!(
        Producer::start(ProducerConfig::new("localhost")).await,
        Err(ClientError::InvalidArgument(m)) if m.contains("host:port")
    ));
    // A NameServer that knows no topic (not even the template TBW102).
    let addr = fake(|req| {
        Act::Reply(RemotingCommand::response_to(req, response_code::TOPIC_NOT_EXIST, None))
    })
    .await;
    let producer = Producer::start(ProducerConfig::new(&addr.to_string())).await.unwrap();
    let err = producer.send(Message::new("Nope", "x")).await.unwrap_err();
    assert!(matches!(err, ClientError::NoRoute { .. }), "{err}");
    assert!(err.to_string().contains("topic create"), "says how to fix it: {err}");
    producer.shutdown().await;
}

/// A follower reset to a snapshot may say a queue starts later than it does on the leader.
/// While the group has no master, such an OFFSET_MOVED must not move the consumer (that
/// would skip messages the leader still has).
#[tokio::test]
async fn a_followers_offset_moved_does_not_skip_messages() {
    let me: Arc<Mutex<String>> = Arc::default();
    let m = me.clone();
    let addr = fake(move |req| match req.code {
        // Only a follower (brokerId 1): the master is being elected.
        request_code::GET_ROUTEINFO_BY_TOPIC => {
            route_answer(req, [(1, m.lock().unwrap().clone())].into(), 1)
        }
        request_code::QUERY_CONSUMER_OFFSET => Act::Reply(
            RemotingCommand::response_to(req, response_code::SUCCESS, None)
                .with_header(&OffsetResponseHeader { offset: 5 }),
        ),
        request_code::PULL_MESSAGE => Act::Reply(
            RemotingCommand::response_to(req, response_code::PULL_OFFSET_MOVED, None).with_header(
                &PullMessageResponseHeader {
                    suggest_which_broker_id: 0,
                    next_begin_offset: 100,
                    min_offset: 100,
                    max_offset: 120,
                },
            ),
        ),
        _ => Act::Reply(ok(req)),
    })
    .await;
    *me.lock().unwrap() = addr.to_string();
    let consumer =
        PullConsumer::start(PullConsumerConfig::new(&addr.to_string(), "G")).await.unwrap();
    let mq = MessageQueue { broker_name: "b".into(), queue_id: 0, topic: "T".into() };
    consumer.assign([mq.clone()]);
    let _ = consumer.poll(300).await;
    assert_eq!(consumer.position(&mq), Some(5), "still at the committed offset");
    consumer.shutdown().await;
}
