//! Request-reply over real TCP (issue 19), in the shapes Java's `DefaultMQProducer.request()`
//! and `MessageUtil.createReplyMessage` produce and read.
//!
//! ```text
//!   requester: heartbeat as producer RPG -> sends a request (CORRELATION_ID, REPLY_TO_CLIENT,
//!   TTL); the stored request carries CLUSTER=DefaultCluster (what a replier needs)
//!   replier: SEND_REPLY_MESSAGE_V2 to DefaultCluster_REPLY_TOPIC -> the master pushes
//!   PUSH_REPLY_MESSAGE_TO_CLIENT to the requester (every field Java requires) -> the requester
//!   answers SUCCESS -> the replier gets SUCCESS with the stored copy's id and offset
//!   a reply for nobody connected, or naming nobody: SYSTEM_ERROR with RocketMQ's remarks
//! ```

use super::*;
use rocketraft_protocol::body::{HeartbeatData, JsonBody, JsonStyle, ProducerData};
use rocketraft_protocol::message::parse_properties;
use rocketraft_protocol::names::reply_topic;

const REPLY_TOPIC: &str = "DefaultCluster_REPLY_TOPIC";

fn producer_heartbeat(client: &str) -> RemotingCommand {
    let data = HeartbeatData {
        client_id: client.into(),
        consumer_data_set: vec![],
        producer_data_set: vec![ProducerData { group_name: "RPG".into() }],
    };
    RemotingCommand::request_without_header(request_code::HEART_BEAT)
        .with_body(data.to_json(JsonStyle::Standard))
}

/// A send of `body` to queue 0 of `topic` with these properties, under `code` (V2 header).
fn send_as(code: i32, topic: &str, body: &str, props: &[(&str, &str)]) -> RemotingCommand {
    let cmd = send(topic, 0, "a", body);
    let mut h: SendMessageRequestHeaderV2 = cmd.decode_header().unwrap();
    h.i = Some(properties_to_string(props.iter().copied()));
    let mut cmd = cmd.with_header(&h);
    cmd.code = code;
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_is_pushed_to_its_requester_and_stored() {
    assert_eq!(reply_topic("DefaultCluster"), REPLY_TOPIC);
    let group = start_group().await;
    let leader = leader(&group).await;
    let addr = group[&leader].broker.local_addr();
    let mut requester = with_topic(&group, leader, "T").await;
    assert_eq!(requester.call(producer_heartbeat("req@1")).await.code, response_code::SUCCESS);

    tracing::info!("--- the request is stored with the broker's cluster");
    let ask = [("CORRELATION_ID", "corr-1"), ("REPLY_TO_CLIENT", "req@1"), ("TTL", "3000")];
    let sent = requester.call(send_as(request_code::SEND_MESSAGE_V2, "T", "ask", &ask)).await;
    assert_eq!(sent.code, response_code::SUCCESS, "{:?}", sent.remark);
    let pulled = requester.call(pull("T", 0, 0, None, 0)).await;
    assert_eq!(pulled.code, response_code::SUCCESS, "{:?}", pulled.remark);
    let records = decode_records(&pulled.body).unwrap();
    let props = parse_properties(records[0].properties);
    assert_eq!(props.get("CLUSTER").map(String::as_str), Some("DefaultCluster"));
    assert_eq!(props.get("CORRELATION_ID").map(String::as_str), Some("corr-1"));

    tracing::info!("--- the reply reaches the requester, as Java's client reads it");
    let answer = [
        ("MSG_TYPE", "reply"),
        ("CORRELATION_ID", "corr-1"),
        ("REPLY_TO_CLIENT", "req@1"),
        ("TTL", "3000"),
    ];
    let mut replier = Conn::connect(addr).await;
    let replier_addr = replier.stream.local_addr().unwrap();
    let cmd = send_as(request_code::SEND_REPLY_MESSAGE_V2, REPLY_TOPIC, "answer", &answer);
    let replying = tokio::spawn(async move {
        let r = replier.call(cmd).await;
        (replier, r)
    });
    let push = requester.next_push(Duration::from_secs(5)).await.expect("the reply is pushed");
    assert_eq!(push.code, request_code::PUSH_REPLY_MESSAGE_TO_CLIENT);
    assert!(!push.is_oneway(), "the broker waits for the requester's answer");
    let fields = push.ext_fields.clone().unwrap();
    for required in [
        "producerGroup",
        "topic",
        "defaultTopic",
        "defaultTopicQueueNums",
        "queueId",
        "sysFlag",
        "bornTimestamp",
        "flag",
        "bornHost",
        "storeHost",
        "storeTimestamp",
    ] {
        assert!(fields.get(required).is_some(), "Java's client requires {required}");
    }
    let h: ReplyMessageRequestHeader = push.decode_header().unwrap();
    assert_eq!((h.topic.as_str(), h.producer_group.as_str()), (REPLY_TOPIC, "PG"));
    assert_eq!(h.born_host, replier_addr.to_string());
    assert_eq!(h.store_host, advertised(leader).to_string());
    assert!(h.store_timestamp > 0);
    let pushed_props = parse_properties(h.properties.as_deref().unwrap());
    assert_eq!(pushed_props["CORRELATION_ID"], "corr-1");
    assert_eq!(pushed_props["MSG_TYPE"], "reply");
    assert!(pushed_props["PUSH_REPLY_TIME"].parse::<i64>().unwrap() > 0);
    assert_eq!(&push.body[..], b"answer");
    requester.answer(RemotingCommand::response_to(&push, response_code::SUCCESS, None)).await;
    let (mut replier, replied) = replying.await.unwrap();
    assert_eq!(replied.code, response_code::SUCCESS, "{:?}", replied.remark);
    let rh: SendMessageResponseHeader = replied.decode_header().unwrap();
    assert_ne!(rh.msg_id, "0", "the stored copy's id");
    decode_offset_msg_id(&rh.msg_id).unwrap();
    assert_eq!((rh.queue_id, rh.queue_offset), (0, 0));
    let stored = replier.call(pull(REPLY_TOPIC, 0, 0, None, 0)).await;
    assert_eq!(stored.code, response_code::SUCCESS, "{:?}", stored.remark);
    assert_eq!(decode_records(&stored.body).unwrap()[0].body, b"answer");

    tracing::info!("--- replies nobody can take: RocketMQ's codes and remarks, still stored");
    let nobody = [("MSG_TYPE", "reply"), ("CORRELATION_ID", "c2"), ("REPLY_TO_CLIENT", "gone@1")];
    // SEND_REPLY_MESSAGE, with the V1 header (long keys).
    let v2 = send_as(request_code::SEND_REPLY_MESSAGE_V2, REPLY_TOPIC, "late", &nobody);
    let v1: SendMessageRequestHeader =
        v2.decode_header::<SendMessageRequestHeaderV2>().unwrap().into();
    let v1 = RemotingCommand::request(request_code::SEND_REPLY_MESSAGE, &v1).with_body(v2.body);
    let r = replier.call(v1).await;
    assert_eq!(r.code, response_code::SYSTEM_ERROR);
    assert_eq!(
        r.remark.as_deref(),
        Some("push reply message fail, channel of <gone@1> not found.")
    );
    let unnamed = [("MSG_TYPE", "reply"), ("CORRELATION_ID", "c3")];
    let r = replier
        .call(send_as(request_code::SEND_REPLY_MESSAGE_V2, REPLY_TOPIC, "x", &unnamed))
        .await;
    assert_eq!(r.code, response_code::SYSTEM_ERROR);
    assert_eq!(r.remark.as_deref(), Some("reply message properties[REPLY_TO_CLIENT] is null"));
    let stored = replier.call(pull(REPLY_TOPIC, 0, 1, None, 0)).await;
    assert_eq!(decode_records(&stored.body).unwrap().len(), 2, "RocketMQ stores them anyway");

    tracing::info!("--- a requester that refuses the push fails the reply");
    let replying = tokio::spawn(async move {
        let cmd = send_as(request_code::SEND_REPLY_MESSAGE_V2, REPLY_TOPIC, "again", &answer);
        replier.call(cmd).await
    });
    let push = requester.next_push(Duration::from_secs(5)).await.expect("pushed");
    requester
        .answer(RemotingCommand::response_to(&push, response_code::SYSTEM_ERROR, Some("no".into())))
        .await;
    let r = replying.await.unwrap();
    assert_eq!(r.code, response_code::SYSTEM_ERROR);
    assert_eq!(r.remark.as_deref(), Some("push reply message to req@1fail."));

    tracing::info!("--- a follower refuses replies as it refuses sends");
    let follower = (0..3).find(|id| *id != leader).unwrap();
    let mut to_follower = Conn::connect(group[&follower].broker.local_addr()).await;
    let r = to_follower
        .call(send_as(request_code::SEND_REPLY_MESSAGE_V2, REPLY_TOPIC, "x", &nobody))
        .await;
    assert_eq!(r.code, response_code::SERVICE_NOT_AVAILABLE);
    stop_group(group).await;
}
