//! Requests a client controls cannot take the group down (issue 14). Each test sends what once
//! stopped every replica, over real TCP, and then checks the group: every replica running, all
//! at the same applied index, and sends and pulls still working.
//!
//! ```text
//!   send m0 -> half messages -> send m1: offsets 0, 1; the half committed: offset 3
//!   4 MiB body twice: stored and replicated; 4 MiB + 1 refused
//!   hostile names at heartbeat, admin, offsets, send: refused, nothing created
//!   a full disk: sends refused (SERVICE_NOT_AVAILABLE) before proposing; space frees: go on
//! ```

use super::*;
use rocketraft_protocol::message::MESSAGE_MAX_BYTES_DEFAULT;
use rocketraft_protocol::sysflag::message as msgflag;
use rocketraft_store::io::Storage;

/// Every replica runs (no fatal error) and has applied its whole log at one index.
async fn assert_healthy(group: &BTreeMap<u64, Replica>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let states: Vec<_> = group
            .values()
            .map(|r| {
                let m = r.node.raft.metrics().borrow().clone();
                (m.running_state.is_ok(), m.last_log_index, m.last_applied.map(|l| l.index))
            })
            .collect();
        for (id, r) in group {
            assert_eq!(r.node.fatal_error(), None, "replica {id} stopped on a fatal error");
        }
        let first = states[0];
        let same = states.iter().all(|s| s.0 && s.1 == first.1 && s.2 == first.1 && *s == first);
        if same {
            return;
        }
        assert!(Instant::now() < deadline, "replicas not healthy and level: {states:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn with_sys_flag(cmd: RemotingCommand, sys_flag: i32, extra: &[(&str, &str)]) -> RemotingCommand {
    let mut h: SendMessageRequestHeaderV2 = cmd.decode_header().unwrap();
    h.f = sys_flag;
    let mut props = rocketraft_protocol::message::parse_properties(h.i.as_deref().unwrap_or(""));
    for (k, v) in extra {
        props.insert((*k).to_owned(), (*v).to_owned());
    }
    h.i = Some(properties_to_string(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
    cmd.with_header(&h)
}

fn queue_offset_of(resp: &RemotingCommand) -> i64 {
    assert_eq!(resp.code, response_code::SUCCESS, "{:?}", resp.remark);
    resp.decode_header::<SendMessageResponseHeader>().unwrap().queue_offset
}

/// A TransactionMQProducer's half message between two normal sends: once, the half took queue
/// offset 1 without being dispatched, the next send's offset 2 was refused by the queue, and
/// apply failed on every replica. Now a half waits in the half topic and takes no offset of
/// its real queue; commit and rollback bits on a send are refused; the half committed later
/// takes the next offset then, and every replica applies all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_message_between_sends_leaves_the_group_healthy() {
    let group = start_group().await;
    let leader = leader(&group).await;
    let mut c = with_topic(&group, leader, "Tx").await;

    tracing::info!("--- m0, half messages, m1 on queue 0");
    assert_eq!(queue_offset_of(&c.call(send("Tx", 0, "A", "m0")).await), 0);
    let mut halves = Vec::new();
    for (flag, props) in [
        (msgflag::TRANSACTION_PREPARED, vec![("TRAN_MSG", "true"), ("PGROUP", "PG")]),
        (0, vec![("TRAN_MSG", "true"), ("PGROUP", "PG")]),
    ] {
        let half = c.call(with_sys_flag(send("Tx", 0, "A", "half"), flag, &props)).await;
        assert_eq!(half.code, response_code::SUCCESS, "{flag}: {:?}", half.remark);
        halves.push(half.decode_header::<SendMessageResponseHeader>().unwrap());
    }
    // Their offsets are the half queue's.
    assert_eq!(halves.iter().map(|h| h.queue_offset).collect::<Vec<_>>(), [0, 1]);
    for flag in [msgflag::TRANSACTION_COMMIT, msgflag::TRANSACTION_ROLLBACK] {
        let bad = c.call(with_sys_flag(send("Tx", 0, "A", "bad"), flag, &[])).await;
        assert_eq!(bad.code, response_code::MESSAGE_ILLEGAL, "{flag}: {:?}", bad.remark);
    }
    assert_eq!(queue_offset_of(&c.call(send("Tx", 0, "A", "m1")).await), 1);
    assert_healthy(&group).await;

    assert_eq!(queue_offset_of(&c.call(send("Tx", 0, "A", "m2")).await), 2);
    tracing::info!("--- the first half committed, the second rolled back");
    for (h, how) in halves.iter().zip([msgflag::TRANSACTION_COMMIT, msgflag::TRANSACTION_ROLLBACK])
    {
        let (_, position) = decode_offset_msg_id(&h.msg_id).unwrap();
        let end = EndTransactionRequestHeader {
            producer_group: "PG".into(),
            tran_state_table_offset: h.queue_offset,
            commit_log_offset: position,
            commit_or_rollback: how,
            from_transaction_check: Some(false),
            msg_id: String::new(),
            transaction_id: None,
        };
        let answer = c.call(RemotingCommand::request(request_code::END_TRANSACTION, &end)).await;
        assert_eq!(answer.code, response_code::SUCCESS, "{:?}", answer.remark);
    }
    assert_healthy(&group).await; // and every replica applied all of it
    tracing::info!("--- a follower serves m0..m2 and the committed half, dense");
    let follower = (0..3).find(|id| *id != leader).unwrap();
    let mut f = Conn::connect(group[&follower].broker.local_addr()).await;
    let got = f.call(pull("Tx", 0, 0, None, 0)).await;
    assert_eq!(got.code, response_code::SUCCESS);
    let records = decode_records(&got.body).unwrap();
    let bodies: Vec<Vec<u8>> = records.iter().map(|r| r.body.to_vec()).collect();
    assert_eq!(bodies, [&b"m0"[..], b"m1", b"m2", b"half"].map(|b| b.to_vec()).to_vec());
    let offsets: Vec<i64> = records.iter().map(|r| r.queue_offset).collect();
    assert_eq!(offsets, [0, 1, 2, 3]);
    assert_eq!(msgflag::transaction_value(records[3].sys_flag), msgflag::TRANSACTION_COMMIT);
    stop_group(group).await;
}

/// A body of exactly RocketMQ's maxMessageSize (4 MiB, which clients allow) once passed the
/// body check but not the CommitLog's record limit, and the append error stopped Raft on the
/// leader, then on the next. Now the record limit follows from the body limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bodies_of_the_largest_size_are_stored_and_replicated() {
    let group = start_group_advertising(Vec::new(), false, |c| {
        c.commit_log.segment_size_bytes = 16 << 20;
    })
    .await;
    let leader = leader(&group).await;
    let mut c = with_topic(&group, leader, "Big").await;
    // `send` keys a message by its body: a small body, then the large one in its place.
    let big = |n: usize| send("Big", 0, "A", "key").with_body(vec![b'b'; n]);
    for i in 0..2 {
        assert_eq!(queue_offset_of(&c.call(big(MESSAGE_MAX_BYTES_DEFAULT)).await), i);
    }
    let over = c.call(big(MESSAGE_MAX_BYTES_DEFAULT + 1)).await;
    assert_eq!(over.code, response_code::MESSAGE_ILLEGAL, "{:?}", over.remark);
    assert_eq!(queue_offset_of(&c.call(send("Big", 0, "A", "small")).await), 2);
    assert_healthy(&group).await;
    let follower = (0..3).find(|id| *id != leader).unwrap();
    let mut f = Conn::connect(group[&follower].broker.local_addr()).await;
    let got = f.call(pull("Big", 0, 1, None, 0)).await;
    assert_eq!(got.code, response_code::SUCCESS);
    assert_eq!(decode_records(&got.body).unwrap()[0].body.len(), MESSAGE_MAX_BYTES_DEFAULT);
    // 256 KiB per pull response, at least one record: 32 of these would not fit a frame.
    let got = f.call(pull("Big", 0, 0, None, 0)).await;
    assert_eq!(decode_records(&got.body).unwrap().len(), 1, "one 4 MiB record per response");
    let h: PullMessageResponseHeader = got.decode_header().unwrap();
    assert_eq!(h.next_begin_offset, 1);
    stop_group(group).await;
}

/// A log whose segments are smaller than the body limit: a send that cannot fit one entry is
/// refused before it is proposed (once, the append error was fatal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_larger_than_a_segment_is_refused_not_fatal() {
    let group = start_group().await; // 1 MiB segments
    let leader = leader(&group).await;
    let mut c = with_topic(&group, leader, "Seg").await;
    let resp = c.call(send("Seg", 0, "A", "key").with_body(vec![b's'; 2 << 20])).await;
    assert_eq!(resp.code, response_code::MESSAGE_ILLEGAL, "{:?}", resp.remark);
    assert_eq!(queue_offset_of(&c.call(send("Seg", 0, "A", "fits")).await), 0);
    assert_healthy(&group).await;
    stop_group(group).await;
}

/// Names with `/`, `..`, spaces or too many characters are refused at every entry point with
/// RocketMQ's remark; none becomes a topic, a group or a directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_refused_at_every_entry_point() {
    use rocketraft_protocol::body::*;
    let group = start_group().await;
    let leader = leader(&group).await;
    let mut c = with_topic(&group, leader, "T").await;
    let hostile = ["../../escape", "a/b", "x y", "", &"g".repeat(300)];

    for name in hostile {
        tracing::info!(name, "--- heartbeat, group creation, offsets, topic creation, send");
        let mut hb = heartbeat("client-1");
        let mut data = HeartbeatData::from_json(&hb.body).unwrap();
        let mut good = data.consumer_data_set[0].clone();
        good.group_name = "Good".into();
        data.consumer_data_set[0].group_name = name.to_owned();
        data.consumer_data_set.push(good);
        hb = hb.with_body(data.to_json(JsonStyle::Standard));
        let r = c.call(hb).await;
        assert_eq!(r.code, response_code::SYSTEM_ERROR, "heartbeat {name:?}");
        assert!(r.remark.unwrap().contains("group"), "{name:?}");

        let g = SubscriptionGroupConfig::from_json(br#"{"groupName":"x"}"#).unwrap();
        let g = SubscriptionGroupConfig { group_name: name.to_owned(), ..g };
        let cmd = RemotingCommand::request_without_header(
            request_code::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
        )
        .with_body(g.to_json(JsonStyle::Standard));
        assert_eq!(c.call(cmd).await.code, response_code::SYSTEM_ERROR, "group {name:?}");

        let offset = RemotingCommand::request(
            request_code::UPDATE_CONSUMER_OFFSET,
            &UpdateConsumerOffsetRequestHeader {
                consumer_group: name.to_owned(),
                topic: "T".into(),
                queue_id: 0,
                commit_offset: 1,
                broker_name: None,
            },
        );
        assert_eq!(c.call(offset).await.code, response_code::SYSTEM_ERROR, "offset {name:?}");

        let topic = c.call(create_topic(name)).await;
        assert_eq!(topic.code, response_code::SYSTEM_ERROR, "topic {name:?}");
        let sent = c.call(send(name, 0, "A", "x")).await;
        assert_eq!(sent.code, response_code::SYSTEM_ERROR, "send {name:?}");
    }
    let system = c.call(send("RMQ_SYS_TRANS_HALF_TOPIC", 0, "A", "x")).await;
    assert_eq!(system.code, response_code::NO_PERMISSION);

    tracing::info!("--- nothing of them was created, the valid group of the heartbeat was");
    let sm = &group[&leader].node.state_machine;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sm.topic("%RETRY%Good").unwrap().is_none() {
        assert!(Instant::now() < deadline, "the heartbeat's valid group was not registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for name in hostile {
        assert_eq!(sm.topic(&format!("%RETRY%{name}")).unwrap(), None);
        assert_eq!(sm.group(name).unwrap(), None);
    }
    assert_eq!(queue_offset_of(&c.call(send("T", 0, "A", "still")).await), 0);
    assert_healthy(&group).await;
    stop_group(group).await;
}

/// A producer faster than retention's periodic check meets the disk's usage limit before the
/// disk runs out. Retention measures the disk at start and then only an hour later here; the
/// CommitLog counts what it takes after each measurement, refuses new sends once that reaches
/// the room the measurement left below the limit, and has the disk measured again a quarter of
/// the way there, so what else fills the disk meanwhile (here a file as large as half the room, made
/// just after the measurement) counts too. (Before, refusals waited for the next periodic
/// check, and a fast producer filled the disk first: a replica whose append then fails stops.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_meet_the_disk_limit_between_retention_checks() {
    const CAP: u64 = 48 << 20;
    let group = start_group_advertising(Vec::new(), false, |c| {
        c.retention_check_ms = 3_600_000;
        c.retention.capacity_bytes = Some(CAP);
        c.dispatch.consume_queue.entries_per_file = 10_000;
        c.dispatch.index.slot_count = 10_000;
        c.dispatch.index.index_max = 40_000;
    })
    .await;
    let leader = leader(&group).await;
    let mut c = with_topic(&group, leader, "Fast").await;
    let disk = &group[&leader].disk;
    let at_start = disk.occupied_bytes().unwrap();
    assert!(at_start < CAP / 2, "the files at start take {at_start} of {CAP} bytes");
    let room = (CAP as f64 * 0.9) as u64 - at_start;
    disk.create("someone-elses-file", room / 2).unwrap();

    let body = bytes::Bytes::from(vec![b'x'; 64 << 10]);
    let mut accepted = 0u64;
    let refused = loop {
        let mut req = send("Fast", 0, "A", "k");
        req.body = body.clone();
        let r = c.call(req).await;
        if r.code != response_code::SUCCESS {
            break r;
        }
        accepted += 1;
        assert!(accepted * (64 << 10) < 2 * CAP, "sends still accepted after {accepted}");
    };
    assert_eq!(refused.code, response_code::SERVICE_NOT_AVAILABLE, "{:?}", refused.remark);
    assert!(refused.remark.as_deref().unwrap().contains("disk is full"), "{:?}", refused.remark);
    for (id, r) in &group {
        let used = r.disk.occupied_bytes().unwrap();
        assert!(used <= CAP, "replica {id}'s files take {used} bytes of a {CAP}-byte disk");
    }
    // Refused near the limit, not long before it: the sends took at least half the room the
    // other file left them (the rest went to files made whole: segments, queues, indexes).
    assert!(
        accepted * (64 << 10) > room / 4,
        "refused after {accepted} sends, {} bytes of room left to them",
        room / 2
    );
    assert_healthy(&group).await;
    stop_group(group).await;
}

/// A disk above `disk_max_used_ratio` stops nothing. Followers whose disks are full still take
/// what the leader replicates (once, the CommitLog refused the append itself, which was fatal to
/// Raft on each replica in turn); a leader whose disk is full refuses new sends with RocketMQ's
/// "disk is full" answer (SERVICE_NOT_AVAILABLE, which producers retry elsewhere) before they
/// are proposed. Once space frees, sends go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_sends_and_stops_nothing() {
    let group = start_group_advertising(Vec::new(), false, |c| c.retention_check_ms = 50).await;
    let leader = leader(&group).await;
    let mut c = with_topic(&group, leader, "Full").await;
    assert_eq!(queue_offset_of(&c.call(send("Full", 0, "A", "before")).await), 0);

    tracing::info!("--- the followers' disks are full: they still take the leader's entries");
    for (id, r) in &group {
        if *id != leader {
            r.disk.set_volume_bytes(1);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while group
        .iter()
        .any(|(id, r)| *id != leader && r.node.log.lock().unwrap().admit_new_writes(0).is_ok())
    {
        assert!(Instant::now() < deadline, "retention never saw the followers' disks full");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 1..=3 {
        let r = tokio::time::timeout(Duration::from_secs(10), c.call(send("Full", 0, "A", "f")))
            .await
            .expect("committed within 10 s: full followers must keep taking entries");
        assert_eq!(queue_offset_of(&r), i);
    }
    assert_healthy(&group).await;

    tracing::info!("--- the leader's disk is full too: new sends are refused");
    group[&leader].disk.set_volume_bytes(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let r = c.call(send("Full", 0, "A", "while full")).await;
        if r.code != response_code::SUCCESS {
            break r;
        }
        assert!(Instant::now() < deadline, "sends still accepted on a full disk");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refused.code, response_code::SERVICE_NOT_AVAILABLE, "{:?}", refused.remark);
    assert!(refused.remark.unwrap().contains("disk is full"));
    assert_healthy(&group).await;

    tracing::info!("--- space frees: sends go on where they stopped");
    for r in group.values() {
        r.disk.set_volume_bytes(1 << 40);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let accepted = loop {
        let r = c.call(send("Full", 0, "A", "after")).await;
        if r.code == response_code::SUCCESS {
            break r;
        }
        assert!(Instant::now() < deadline, "sends still refused: {:?}", r.remark);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let last = queue_offset_of(&accepted);
    assert_healthy(&group).await;
    let got = c.call(pull("Full", 0, 0, None, 0)).await;
    let offsets: Vec<i64> =
        decode_records(&got.body).unwrap().iter().map(|r| r.queue_offset).collect();
    assert_eq!(offsets, (0..=last).collect::<Vec<_>>(), "dense, nothing given twice");
    stop_group(group).await;
}

/// Each queue maps a file on every replica, and a process may map only so many: topic
/// creation stops at `queues_max` (8,192) instead of a mapping failing inside apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_creation_stops_at_the_queue_limit() {
    let group = start_group().await;
    let leader = leader(&group).await;
    let mut c = with_topic(&group, leader, "T").await;
    let wide = |name: &str| {
        let mut cmd = create_topic(name);
        let mut h: CreateTopicRequestHeader = cmd.decode_header().unwrap();
        (h.read_queue_nums, h.write_queue_nums) = (1024, 1024);
        cmd = cmd.with_header(&h);
        cmd
    };
    let mut created = 0;
    let refused = loop {
        let r = c.call(wide(&format!("Wide{created}"))).await;
        if r.code != response_code::SUCCESS {
            break r;
        }
        created += 1;
        assert!(created <= 8, "more than 8,192 queues created");
    };
    assert_eq!(refused.code, response_code::SYSTEM_ERROR);
    assert!(refused.remark.unwrap().contains("queues_max"));
    assert!(created >= 7, "TBW102 and T leave room for 7 topics of 1,024: {created}");
    // Replacing a topic counts its own queues once.
    assert_eq!(c.call(wide("Wide0")).await.code, response_code::SUCCESS);
    stop_group(group).await;
}
