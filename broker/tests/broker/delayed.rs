//! Delayed delivery and retries over real TCP (issue 17), on a three-replica group whose delay
//! levels are shortened by configuration.
//!
//! ```text
//!   DELAY 1, 2, 3 and a 3 s timer -> nothing in T before its time, each within 1 s after it,
//!   once, with its keys and UNIQ_KEY; a timer past the limit refused (MESSAGE_ILLEGAL)
//!   send M -> send it back 17 times -> the first copy arrives in %RETRY%CG after its delay,
//!   the 17th send-back lands in %DLQ%CG with M's topic, keys and body
//! ```

use super::*;
use rocketraft_protocol::message::RecordView;
use rocketraft_protocol::names::SCHEDULE_TOPIC;
use rocketraft_protocol::schedule::DelayLevels;

fn with_levels(levels: &'static str) -> impl Fn(&mut BrokerConfig) {
    move |b| b.delay_levels = DelayLevels::parse(levels).unwrap()
}

/// A send to queue 0 of `topic` with these properties.
fn send_with(topic: &str, body: &str, props: &[(&str, &str)]) -> RemotingCommand {
    let cmd = send(topic, 0, "a", body);
    let mut h: SendMessageRequestHeaderV2 = cmd.decode_header().unwrap();
    h.i = Some(properties_to_string(props.iter().copied()));
    cmd.with_header(&h)
}

/// An owned record pulled from a queue.
struct Pulled {
    body: Vec<u8>,
    properties: BTreeMap<String, String>,
    queue_offset: i64,
    physical_offset: i64,
    reconsume_times: i32,
}

fn owned(r: &RecordView<'_>) -> Pulled {
    Pulled {
        body: r.body.to_vec(),
        properties: rocketraft_protocol::message::parse_properties(r.properties),
        queue_offset: r.queue_offset,
        physical_offset: r.physical_offset,
        reconsume_times: r.reconsume_times,
    }
}

/// Whatever `topic`/`queue` holds from `from` now.
async fn pull_now(c: &mut Conn, topic: &str, queue: i32, from: i64) -> Vec<Pulled> {
    let r = c.call(pull(topic, queue, from, None, 0)).await;
    if r.code != response_code::SUCCESS {
        return Vec::new();
    }
    decode_records(&r.body).unwrap().iter().map(owned).collect()
}

/// Pulls `topic`/`queue` from `from` until something arrives (or `wait` passes).
async fn pull_within(
    c: &mut Conn,
    topic: &str,
    queue: i32,
    from: i64,
    wait: Duration,
) -> Vec<Pulled> {
    let deadline = Instant::now() + wait;
    loop {
        let got = pull_now(c, topic, queue, from).await;
        if !got.is_empty() || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_and_timer_messages_arrive_after_their_time_and_not_before() {
    let group = start_group_configured(vec![], false, |_| {}, with_levels("1s 2s 3s")).await;
    let leader = leader(&group).await;
    let mut c = with_topic(&group, leader, "T").await;

    let sent_at = Instant::now();
    let mut expected = BTreeMap::new();
    for (level, body) in [("3", "d3"), ("1", "d1"), ("2", "d2")] {
        let props = [("TAGS", "a"), ("KEYS", body), ("UNIQ_KEY", body), ("DELAY", level)];
        let r = c.call(send_with("T", body, &props)).await;
        assert_eq!(r.code, response_code::SUCCESS, "{:?}", r.remark);
        expected.insert(body.to_owned(), level.parse::<u64>().unwrap() * 1_000);
    }
    let r = c.call(send_with("T", "t3", &[("KEYS", "t3"), ("TIMER_DELAY_SEC", "3")])).await;
    assert_eq!(r.code, response_code::SUCCESS, "{:?}", r.remark);
    expected.insert("t3".into(), 3_000);
    let sent_done = Instant::now();

    let too_late = c.call(send_with("T", "x", &[("TIMER_DELAY_SEC", "300000")])).await;
    assert_eq!(too_late.code, response_code::MESSAGE_ILLEGAL);
    assert!(too_late.remark.unwrap().starts_with("timer message illegal"));

    // Watch T: every message once, in due order, none before its time.
    let mut seen = BTreeMap::new();
    let mut next = 0;
    while seen.len() < expected.len() && sent_at.elapsed() < Duration::from_secs(10) {
        for m in pull_now(&mut c, "T", 0, next).await {
            assert_eq!(m.queue_offset, next, "offsets stay dense");
            next += 1;
            let body = String::from_utf8(m.body.clone()).unwrap();
            assert!(seen.insert(body.clone(), (Instant::now(), m)).is_none(), "{body} twice");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.len(), expected.len(), "arrived: {:?}", seen.keys().collect::<Vec<_>>());
    for (body, (at, m)) in &seen {
        let due = Duration::from_millis(expected[body]);
        assert!(*at >= sent_at + due, "{body} arrived {:?} early", sent_at + due - *at);
        assert!(
            *at <= sent_done + due + Duration::from_secs(1),
            "{body} arrived {:?} after its time",
            *at - (sent_done + due)
        );
        assert_eq!(m.properties["KEYS"], *body);
        assert_eq!(m.properties["REAL_TOPIC"], "T");
        assert!(!m.properties.contains_key("DELAY") && !m.properties.contains_key("TIMER_OUT_MS"));
    }
    assert_eq!(seen["d2"].1.properties["UNIQ_KEY"], "d2");
    // Nothing more comes: each was moved once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(pull_now(&mut c, "T", 0, next).await.is_empty());
    stop_group(group).await;
}

/// A consumer's first heartbeat creates its group CG (retryMaxTimes 16) and CG's retry topic:
/// once the leader has applied it.
async fn consumer_group_cg(group: &BTreeMap<u64, Replica>, leader: u64, c: &mut Conn) {
    assert_eq!(c.call(heartbeat("c1")).await.code, response_code::SUCCESS);
    for _ in 0..100 {
        if group[&leader].node.state_machine.group("CG").unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn send_back(offset: i64, group: &str, delay_level: i32) -> RemotingCommand {
    RemotingCommand::request(
        request_code::CONSUMER_SEND_MSG_BACK,
        &ConsumerSendMsgBackRequestHeader {
            offset,
            group: group.into(),
            delay_level,
            origin_msg_id: None,
            origin_topic: Some("T".into()),
            unit_mode: Some(false),
            max_reconsume_times: None,
            broker_name: None,
        },
    )
}

/// A message sent back for retry is admitted like a send: a leader whose disk is at its usage
/// limit refuses it (SERVICE_NOT_AVAILABLE, "disk is full"; the consumer retries it later), and
/// takes it again once space frees. (Before, only sends were checked: a consumer sending
/// back in a loop could fill the disk until an append failed and Raft stopped.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_a_message_sent_back() {
    let group =
        start_group_configured(vec![], false, |c| c.retention_check_ms = 50, with_levels("1s"))
            .await;
    let leader = leader(&group).await;
    let mut c = with_topic(&group, leader, "T").await;
    consumer_group_cg(&group, leader, &mut c).await;
    let sent = c.call(send_with("T", "M", &[("TAGS", "a")])).await;
    let id = sent.decode_header::<SendMessageResponseHeader>().unwrap().msg_id;
    let (_, offset) = decode_offset_msg_id(&id).unwrap();

    group[&leader].disk.set_volume_bytes(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let r = c.call(send_back(offset, "CG", 0)).await;
        if r.code != response_code::SUCCESS {
            break r;
        }
        assert!(Instant::now() < deadline, "sent back messages still taken on a full disk");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refused.code, response_code::SERVICE_NOT_AVAILABLE, "{:?}", refused.remark);
    assert!(refused.remark.unwrap().contains("disk is full"));

    group[&leader].disk.set_volume_bytes(1 << 40);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.call(send_back(offset, "CG", 0)).await.code != response_code::SUCCESS {
        assert!(Instant::now() < deadline, "sent back messages still refused with room");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_group(group).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_back_seventeen_times_lands_in_the_dead_letter_topic() {
    let group = start_group_configured(vec![], false, |_| {}, with_levels("1s 1s 1s")).await;
    let leader = leader(&group).await;
    let mut c = with_topic(&group, leader, "T").await;
    consumer_group_cg(&group, leader, &mut c).await;

    let sent =
        c.call(send_with("T", "M", &[("TAGS", "a"), ("KEYS", "k1"), ("UNIQ_KEY", "U1")])).await;
    let id = sent.decode_header::<SendMessageResponseHeader>().unwrap().msg_id;
    let (_, offset) = decode_offset_msg_id(&id).unwrap();

    let nowhere = c.call(send_back(1 << 40, "CG", 0)).await;
    assert_eq!(nowhere.code, response_code::SYSTEM_ERROR);
    assert!(nowhere.remark.unwrap().starts_with("look message by offset failed"));
    let stranger = c.call(send_back(offset, "nobody", 0)).await;
    assert_eq!(stranger.code, response_code::SUBSCRIPTION_GROUP_NOT_EXIST);

    // The first send-back: the copy comes back through %RETRY%CG after its delay (level 3).
    let backed_at = Instant::now();
    assert_eq!(c.call(send_back(offset, "CG", 0)).await.code, response_code::SUCCESS);
    let retry = rocketraft_broker::retry_topic("CG");
    let first = pull_within(&mut c, &retry, 0, 0, Duration::from_secs(5)).await;
    assert!(backed_at.elapsed() >= Duration::from_secs(1), "the retry came early");
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].body.as_slice(), first[0].reconsume_times), (b"M".as_slice(), 1));
    assert_eq!(first[0].properties["RETRY_TOPIC"], "T");
    assert_eq!(first[0].properties["ORIGIN_MESSAGE_ID"], id);
    assert_eq!(first[0].properties["KEYS"], "k1");

    // Sends-back 2 to 16, each of the copy the one before made (found where it is parked,
    // level 3's queue), then the 17th: the copy that was consumed 16 times.
    let mut latest = first[0].physical_offset;
    for n in 1..=16 {
        assert_eq!(c.call(send_back(latest, "CG", 0)).await.code, response_code::SUCCESS, "#{n}");
        if n == 16 {
            break;
        }
        let parked = pull_within(&mut c, SCHEDULE_TOPIC, 2, n, Duration::from_secs(5)).await;
        assert_eq!(parked[0].reconsume_times, n as i32 + 1);
        latest = parked[0].physical_offset;
    }
    let dead = pull_within(&mut c, "%DLQ%CG", 0, 0, Duration::from_secs(5)).await;
    assert_eq!(dead.len(), 1, "one dead letter");
    let d = &dead[0];
    assert_eq!((d.body.as_slice(), d.reconsume_times), (b"M".as_slice(), 17));
    assert_eq!(d.properties["RETRY_TOPIC"], "T");
    assert_eq!(d.properties["KEYS"], "k1");
    assert_eq!(d.properties["UNIQ_KEY"], "U1");
    assert!(!d.properties.contains_key("DELAY"));
    stop_group(group).await;
}

/// A real RocketMQ client (ali-ons from npm): its push consumer fails a message twice; ali-ons
/// sends it back each time (CONSUMER_SEND_MSG_BACK) and gets it again through its group's retry
/// topic, no sooner than the retry's delay level (level 3 here: 2 s), then consumes it; a
/// message it sends with delay level 1 (1 s) arrives after its delay. Needs Node.js and
/// `npm ci --prefix interop`.
#[cfg(not(madsim))] // runs node, a real process
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ali_ons_retries_through_the_broker_and_receives_delayed_messages_late() {
    use rocketraft_namesrv::{NameServer, NamesrvConfig};
    let ns =
        NameServer::start(NamesrvConfig { listen: "127.0.0.1:0".into(), ..Default::default() })
            .await
            .unwrap();
    // As ali_ons_sends_consumes_and_finds_by_key: slow elections, nothing here tests failover.
    let group = start_group_configured(
        vec![ns.local_addr().to_string()],
        true,
        |c| {
            c.timing.election_timeout_min_ms = 2_500;
            c.timing.election_timeout_max_ms = 4_000;
        },
        with_levels("1s 2s 2s"),
    )
    .await;
    let leader = leader(&group).await;
    let mut c = with_topic(&group, leader, "InteropRetry").await;
    // The group's retry topic exists (and is routed) before ali-ons subscribes to it, so it
    // need not wait for its 30 s route poll.
    let retry = rocketraft_broker::retry_topic("CG_interop_retry");
    assert_eq!(c.call(create_topic(&retry)).await.code, response_code::SUCCESS);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ns.registry().route(&retry).is_none() || ns.registry().route("InteropRetry").is_none() {
        assert!(Instant::now() < deadline, "topics never routed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let args = [ns.local_addr().to_string(), "InteropRetry".into(), "CG_interop_retry".into()];
    let result = tokio::task::spawn_blocking(move || {
        rocketraft_tests::interop::run_node("ons_retry.js", &args)
    })
    .await
    .unwrap();
    let deliveries = result["deliveries"].as_array().unwrap();
    let times: Vec<i64> =
        deliveries.iter().map(|d| d["reconsumeTimes"].as_i64().unwrap()).collect();
    assert_eq!(times, [0, 1, 2], "{result}");
    let at: Vec<i64> = deliveries.iter().map(|d| d["atMs"].as_i64().unwrap()).collect();
    for pair in at.windows(2) {
        assert!(pair[1] - pair[0] >= 2_000, "a retry came before its 2 s delay: {result}");
        assert!(pair[1] - pair[0] <= 4_500, "a retry came late: {result}");
    }
    let delayed = result["delayedAfterMs"].as_i64().unwrap();
    assert!((1_000..=2_500).contains(&delayed), "delay level 1 (1 s): {result}");
    stop_group(group).await;
    ns.shutdown();
}
