//! The send processor: SEND_MESSAGE (V1, V2, batch) on the master, through the replica's
//! proposer, and RocketMQ's topic auto-creation from TBW102.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use rocketraft_protocol::code::perm;
use rocketraft_protocol::headers::*;
use rocketraft_protocol::message::offset_msg_id;
use rocketraft_protocol::message::{property, rewrite_properties, set_property};
use rocketraft_protocol::names::{dlq_topic, AUTO_CREATE_TOPIC, DLQ_PREFIX, RETRY_PREFIX};
use rocketraft_protocol::{request_code as rc, response_code, RemotingCommand};
use rocketraft_raft::types::TopicMeta;
use rocketraft_raft::{MetaCommand, MetaStore, ProposeError};
use rocketraft_store::io::Storage;

use crate::admission::{self, Refusal, SendLimits, Stamp};
use crate::schedule::ParkRules;

use super::send_back::{retry_budget, system_topic};
use crate::server::{group_now_ms, Inner};

use super::*;

/// SEND_MESSAGE, SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE.
pub(crate) struct SendProcessor<S: Storage + Clone, M: MetaStore>(pub(crate) Arc<Inner<S, M>>);

impl<S: Storage + Clone, M: MetaStore> SendProcessor<S, M> {
    pub(crate) const CODES: &'static [i32] =
        &[rc::SEND_MESSAGE, rc::SEND_MESSAGE_V2, rc::SEND_BATCH_MESSAGE];
}

impl<S: Storage + Clone, M: MetaStore> Processor for SendProcessor<S, M> {
    fn process(&self, req: RemotingCommand, peer: Peer) -> Answer<'_> {
        Box::pin(async move {
            let (req, inner) = (&req, &*self.0);
            send(req, peer.addr, inner).await.unwrap_or_else(|e| e)
        })
    }
}

/// TBW102 as RocketMQ's brokers create it: 8 queues, readable, writable, inheritable.
pub(crate) fn template_topic() -> TopicMeta {
    TopicMeta {
        name: AUTO_CREATE_TOPIC.to_owned(),
        read_queue_nums: 8,
        write_queue_nums: 8,
        perm: perm::READ | perm::WRITE | perm::INHERIT,
        topic_sys_flag: 0,
        order: false,
        filter_type: "SINGLE_TAG".to_owned(),
    }
}

/// RocketMQ's auto-creation: a send to an unknown topic whose default topic is TBW102 creates
/// it with the smaller of the producer's and TBW102's queue counts and TBW102's permissions
/// (minus inheritance). Refused with TOPIC_NOT_EXIST when disabled or for other templates.
pub(crate) async fn auto_create<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
    h: &SendMessageRequestHeader,
) -> Result<TopicMeta, RemotingCommand> {
    let not_exist = || {
        reply(
            req,
            response_code::TOPIC_NOT_EXIST,
            format!("topic[{}] not exist, apply first please!", h.topic),
        )
    };
    // A group's dead-letter topic is created on its first use whatever the setting, as
    // RocketMQ's send-back does: consumers send there after the last retry.
    let dead_letter = h.topic.starts_with(DLQ_PREFIX);
    if !(inner.config.auto_create_topic || dead_letter) || h.default_topic != AUTO_CREATE_TOPIC {
        return Err(not_exist());
    }
    // The master creates TBW102 on its first registration round; before that (or with no
    // NameServers configured) its defaults apply.
    let template = match inner.replica.metadata().topic(AUTO_CREATE_TOPIC) {
        Ok(t) => t.unwrap_or_else(template_topic),
        Err(e) => return Err(reply(req, response_code::SYSTEM_ERROR, e.to_string())),
    };
    if !perm::is_inherited(template.perm) || !rocketraft_protocol::names::valid_topic_name(&h.topic)
    {
        return Err(not_exist());
    }
    let queues = h.default_topic_queue_nums.clamp(1, template.write_queue_nums.max(1));
    check_queue_room(req, inner, &h.topic, queues)?;
    let meta = TopicMeta {
        name: h.topic.clone(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        perm: template.perm & !perm::INHERIT,
        topic_sys_flag: 0,
        order: false,
        filter_type: template.filter_type,
    };
    propose_metadata(req, inner, vec![MetaCommand::PutTopic(meta.clone())]).await?;
    tracing::info!(topic = %meta.name, queues, "topic auto-created from {AUTO_CREATE_TOPIC}");
    inner.register_now.notify_one();
    Ok(meta)
}

/// The header of a send (SEND_MESSAGE, SEND_REPLY_MESSAGE) or of its V2 form
/// (SEND_MESSAGE_V2, SEND_BATCH_MESSAGE, SEND_REPLY_MESSAGE_V2), as the V1 fields.
pub(crate) fn send_header(
    req: &RemotingCommand,
) -> Result<SendMessageRequestHeader, RemotingCommand> {
    match req.code {
        rc::SEND_MESSAGE_V2 | rc::SEND_BATCH_MESSAGE | rc::SEND_REPLY_MESSAGE_V2 => {
            Ok(header::<SendMessageRequestHeaderV2>(req)?.into())
        }
        _ => header(req),
    }
}

pub(crate) async fn send<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    peer: SocketAddr,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let mut h = send_header(req)?;
    if !master_ready(inner).await {
        return Err(not_master(req, inner));
    }
    // RocketMQ's brokers (4.6+) stamp their cluster on every message: a replier to a request
    // message finds the cluster's reply topic by it.
    h.properties = Some(set_property(
        h.properties.take().unwrap_or_default(),
        property::CLUSTER,
        &inner.config.cluster_name,
    ));
    let prepared = prepare(req, peer, inner, h).await?;
    #[cfg(madsim)]
    if inner.config.sim_bug_ack_before_commit {
        // The bug: answer SEND_OK now and propose in the background, a little later (so a
        // leader killed while sends flow always has acknowledged sends it never proposed,
        // whatever the schedule).
        let replica = inner.replica.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let _ = replica.propose(prepared.records).await;
        });
        return Ok(send_ok(req, inner, String::new(), prepared.queue_id, -1));
    }
    commit(req, inner, prepared).await
}

/// A send checked and encoded, ready to propose.
pub(crate) struct Prepared {
    pub(crate) queue_id: i32,
    pub(crate) records: Vec<Vec<u8>>,
    /// For the metrics: the topic and when admission began.
    pub(crate) topic: String,
    pub(crate) admitted: tokio::time::Instant,
}

/// Everything before a send's proposal: admission, a retried message's dead letters, the topic
/// (auto-created if allowed), its permission, the queue, the disk's room, and the records.
pub(crate) async fn prepare<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    peer: SocketAddr,
    inner: &Inner<S, M>,
    mut h: SendMessageRequestHeader,
) -> Result<Prepared, RemotingCommand> {
    #[allow(clippy::disallowed_methods)] // the runtime's clock, virtual under madsim
    let admitted = tokio::time::Instant::now();
    let refused = |r: Refusal| reply(req, r.code, r.remark);
    admission::check_header(
        &h,
        inner.config.advertised_addr,
        inner.config.reject_transaction_message,
    )
    .map_err(refused)?;
    retried_to_dead_letters(req, inner, &mut h).await?;
    let topic = match topic_of(req, inner, &h.topic) {
        Err(e) if e.code == response_code::TOPIC_NOT_EXIST => auto_create(req, inner, &h).await?,
        other => other?,
    };
    if !perm::is_writeable(topic.perm) {
        return Err(reply(
            req,
            response_code::NO_PERMISSION,
            format!("the topic[{}] sending message is forbidden", h.topic),
        ));
    }
    let queues = topic.write_queue_nums.max(1);
    let queue_id = if h.queue_id < 0 {
        (inner.next_queue.fetch_add(1, Ordering::Relaxed) % queues as u64) as i32
    } else if h.queue_id >= queues {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            format!(
                "request queueId[{}] is illegal, topic:[{}] topicConfig.writeQueueNums:[{}]",
                h.queue_id, h.topic, queues
            ),
        ));
    } else {
        h.queue_id
    };
    // What the record will take: its body, topic and properties and its fixed fields (the
    // broker's own properties, such as the message id, included). A batch's body holds its
    // messages' own fields already.
    let properties = h.properties.as_ref().map_or(0, String::len);
    let about = req.body.len() + h.topic.len() + properties + RECORD_FIXED_BYTES_ABOUT;
    let entry_payload_max_bytes = admit(inner, req, about)?;
    let limits =
        SendLimits { body_max_bytes: inner.config.message_max_bytes, entry_payload_max_bytes };
    let stamp = Stamp {
        born_host: peer,
        store_host: inner.config.advertised_addr,
        store_timestamp_ms: group_now_ms(inner),
    };
    let rules = ParkRules {
        levels: &inner.config.delay_levels,
        timer_max_delay_sec: inner.config.timer_max_delay_sec,
    };
    let records =
        admission::encode_records(req.code, &h, &req.body, queue_id, stamp, limits, rules)
            .map_err(refused)?;
    Ok(Prepared { queue_id, records, topic: h.topic, admitted })
}

/// A record's fixed fields with IPv6 hosts (about 110 bytes) and the properties the broker
/// adds, rounded up: what admission adds to a send's body, topic and properties.
const RECORD_FIXED_BYTES_ABOUT: usize = 192;

/// Proposes a prepared send and answers SEND_OK once it committed and applied.
pub(crate) async fn commit<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
    prepared: Prepared,
) -> Result<RemotingCommand, RemotingCommand> {
    let bytes: usize = prepared.records.iter().map(Vec::len).sum();
    match inner.replica.propose(prepared.records).await {
        Ok(placed) => {
            let latency = prepared.admitted.elapsed();
            inner.stats.sent(&prepared.topic, placed.len() as u64, bytes as u64, latency);
            let msg_id = placed
                .iter()
                .map(|p| offset_msg_id(inner.config.advertised_addr, p.position.0 as i64))
                .collect::<Vec<_>>()
                .join(",");
            let offset = placed[0].queue_offset.0 as i64;
            Ok(send_ok(req, inner, msg_id, prepared.queue_id, offset))
        }
        Err(ProposeError::NotLeader { .. }) => Err(not_master(req, inner)),
        Err(ProposeError::Overloaded) => Err(reply(
            req,
            response_code::SYSTEM_BUSY,
            "[OVERLOAD]system busy, start flow control for a while",
        )),
        Err(ProposeError::Invalid(why)) => Err(reply(req, response_code::MESSAGE_ILLEGAL, why)),
        Err(e) => Err(reply(req, response_code::SYSTEM_ERROR, e.to_string())),
    }
}

/// SUCCESS with RocketMQ's send response header.
pub(crate) fn send_ok<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
    msg_id: String,
    queue_id: i32,
    queue_offset: i64,
) -> RemotingCommand {
    RemotingCommand::response_to(req, response_code::SUCCESS, None).with_header(
        &SendMessageResponseHeader {
            msg_id,
            queue_id,
            queue_offset,
            transaction_id: None,
            msg_region: Some(inner.config.region_id.clone()),
            trace_on: Some(inner.config.trace_on),
        },
    )
}

/// RocketMQ's rule for a client that re-sends a failed message to `%RETRY%<group>` itself (its
/// CONSUMER_SEND_MSG_BACK failed): once the message was consumed as often as the group allows,
/// it goes to `%DLQ%<group>` instead (created on first use), undelayed.
async fn retried_to_dead_letters<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
    h: &mut SendMessageRequestHeader,
) -> Result<(), RemotingCommand> {
    let Some(group) = h.topic.strip_prefix(RETRY_PREFIX) else { return Ok(()) };
    let meta = inner.replica.metadata().group(group).map_err(system_error(req))?;
    if h.reconsume_times.unwrap_or(0) < retry_budget(req, h.max_reconsume_times, meta.as_ref()) {
        return Ok(());
    }
    let dlq = dlq_topic(group);
    system_topic(req, inner, &dlq).await?;
    let props = h.properties.as_deref().unwrap_or("");
    h.properties = Some(rewrite_properties(props, &[property::DELAY], &[]));
    h.topic = dlq;
    h.queue_id = 0;
    Ok(())
}

/// The queues all topics hold together (each counted by its larger queue count).
pub(crate) fn queues_held<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    except: Option<&str>,
) -> usize {
    inner
        .replica
        .metadata()
        .topics()
        .unwrap_or_default()
        .iter()
        .filter(|t| Some(t.name.as_str()) != except)
        .map(|t| t.read_queue_nums.max(t.write_queue_nums).max(0) as usize)
        .sum()
}

/// How many more queues the group may create.
pub(crate) fn queues_left<S: Storage + Clone, M: MetaStore>(inner: &Inner<S, M>) -> usize {
    inner.config.queues_max.saturating_sub(queues_held(inner, None))
}

/// Whether `group` is a subscription group, or one being created.
pub(crate) fn known_group<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    group: &str,
) -> bool {
    matches!(inner.replica.metadata().group(group), Ok(Some(_)))
        || crate::server::lock(&inner.groups_creating).contains(group)
}

/// Subscription groups being created, counted against `groups_max` until this is dropped (once
/// their proposal was applied, or failed).
pub(crate) struct GroupsReserved {
    set: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    names: Vec<String>,
}

impl GroupsReserved {
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }
}

impl Drop for GroupsReserved {
    fn drop(&mut self) {
        let mut set = crate::server::lock(&self.set);
        for n in &self.names {
            set.remove(n);
        }
    }
}

/// Reserves room under `groups_max` for the groups of `missing` (absent from the metadata) that
/// fit, in order; one being created already is left out. Checked and reserved at once, so
/// concurrent creations cannot pass the limit together.
pub(crate) fn reserve_groups<'a, S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    missing: impl IntoIterator<Item = &'a str>,
) -> GroupsReserved {
    let mut names = Vec::new();
    let mut set = crate::server::lock(&inner.groups_creating);
    let held = inner.replica.metadata().group_count().saturating_add(set.len());
    let mut room = inner.config.groups_max.saturating_sub(held);
    for name in missing {
        if set.contains(name) {
            continue;
        }
        if room == 0 {
            tracing::debug!(group = %name, "a subscription group not created: groups_max reached");
            break;
        }
        room -= 1;
        set.insert(name.to_owned());
        names.push(name.to_owned());
    }
    drop(set);
    GroupsReserved { set: inner.groups_creating.clone(), names }
}

/// Refuses a topic of `queues` queues (replacing `topic`'s own) past `queues_max`.
pub(crate) fn check_queue_room<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
    topic: &str,
    queues: i32,
) -> Result<(), RemotingCommand> {
    let held = queues_held(inner, Some(topic));
    if held + queues.max(0) as usize > inner.config.queues_max {
        return Err(limited(
            inner,
            req,
            response_code::SYSTEM_ERROR,
            format!(
                "topic[{topic}] needs {queues} queues and the group holds {held} of its \
                 queues_max {}: delete topics or raise queues_max",
                inner.config.queues_max
            ),
        ));
    }
    Ok(())
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use rocketraft_protocol::headers::SendMessageResponseHeader;

    use rocketraft_store::QueueOffset;

    use super::super::testing::{send_request, OneReplica, TestInner};
    use super::*;

    #[tokio::test]
    async fn sends_take_consecutive_offsets_and_refuse_unknown_or_bad_topics() {
        let r = OneReplica::start().await;
        let unknown = r.send("T", "a", "k", "x").await;
        assert_eq!(unknown.code, response_code::TOPIC_NOT_EXIST, "{:?}", unknown.remark);

        r.topic("T").await;
        for expected in 0..3 {
            let answer = r.send("T", "a", "k", "x").await;
            assert_eq!(answer.code, response_code::SUCCESS, "{:?}", answer.remark);
            let h: SendMessageResponseHeader = answer.decode_header().unwrap();
            assert_eq!((h.queue_id, h.queue_offset), (0, expected));
            assert!(!h.msg_id.is_empty());
        }

        let bad = SendProcessor(r.inner.clone());
        let answer = r.call(&bad, send_request("bad topic", "a", "k", "x")).await;
        assert_eq!(answer.code, response_code::SYSTEM_ERROR);
        let mut headerless = send_request("T", "a", "k", "x");
        headerless.ext_fields = None;
        let answer = r.call(&bad, headerless).await;
        assert_ne!(answer.code, response_code::SUCCESS);
        drop(bad);
        r.stop().await;
    }

    /// A replica whose clock is an hour behind the newest store timestamp in its log (it
    /// restarted after its machine's clock was stepped back, or takes over from a leader
    /// whose clock was ahead) stamps from there on, never before it.
    #[tokio::test]
    async fn a_replica_whose_clock_is_behind_its_log_stamps_after_the_newest_stamp() {
        let r = OneReplica::start().await;
        r.topic("T").await;
        let answer = r.send("T", "a", "k", "x").await;
        assert_eq!(answer.code, response_code::SUCCESS, "{:?}", answer.remark);
        let stamp = |inner: &TestInner, offset| {
            inner.replica.store_time_at("T", 0, QueueOffset(offset)).unwrap()
        };
        let first = stamp(&r.inner, 0);
        assert!(first >= 1_700_000_000_000, "{first}");

        let behind = r.with_clock(1_700_000_000_000 - 3_600_000);
        let answer = r.call(&SendProcessor(behind.clone()), send_request("T", "a", "k", "y")).await;
        assert_eq!(answer.code, response_code::SUCCESS, "{:?}", answer.remark);
        let second = stamp(&behind, 1);
        assert!(second >= first, "stamped {second}, an earlier time than {first} before it");
        assert!(second - first < 60_000, "stamped {second}, far after {first}");
        // Operators see how far its clock was moved in the runtime info.
        let stats = crate::processor::stats::StatsProcessor(behind.clone());
        let info = RemotingCommand::request_without_header(rc::GET_BROKER_RUNTIME_INFO);
        let info = r.call(&stats, info).await;
        use rocketraft_protocol::body::{JsonBody, KvTable};
        let table = KvTable::from_json(&info.body).unwrap().table;
        let ahead: i64 = table["clockAheadMs"].parse().unwrap();
        assert!(ahead >= 3_600_000, "{ahead}");
        drop((stats, behind));
        r.stop().await;
    }
}
