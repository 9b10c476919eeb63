//! The client manager's requests: heartbeats (which also create a group's retry topic and
//! subscription group on first contact), unregistering, a group's member list, queue locks.

use std::collections::BTreeSet;
use std::time::Duration;

use rocketraft_protocol::body::{
    CheckClientRequestBody, ConsumerListBody, HeartbeatData, JsonBody, JsonStyle,
    LockBatchRequestBody, LockBatchResponseBody,
};
use rocketraft_protocol::headers::*;
use rocketraft_protocol::names::retry_topic;
use rocketraft_protocol::{request_code as rc, response_code, RemotingCommand};
use rocketraft_raft::types::GroupMeta;
use rocketraft_raft::{MetaCommand, MetaStore};
use rocketraft_store::io::Storage;

use crate::clients::{ClientInfo, LOCK_EXPIRY_MS_DEFAULT};
use crate::server::{lock, notify_changed, now_ms, Inner};

use super::send::{known_group, queues_left, reserve_groups};
use super::*;

/// The client manager: heartbeats, unregistering, members, queue locks; a closed connection ends the clients registered on it.
pub(crate) struct ClientsProcessor<S: Storage + Clone, M: MetaStore>(pub(crate) Arc<Inner<S, M>>);

impl<S: Storage + Clone, M: MetaStore> ClientsProcessor<S, M> {
    pub(crate) const CODES: &'static [i32] = &[
        rc::HEART_BEAT,
        rc::UNREGISTER_CLIENT,
        rc::GET_CONSUMER_LIST_BY_GROUP,
        rc::LOCK_BATCH_MQ,
        rc::UNLOCK_BATCH_MQ,
        rc::CHECK_CLIENT_CONFIG,
    ];
}

impl<S: Storage + Clone, M: MetaStore> Processor for ClientsProcessor<S, M> {
    fn process(&self, req: RemotingCommand, peer: Peer) -> Answer<'_> {
        Box::pin(async move {
            let (req, inner) = (&req, &*self.0);
            match req.code {
                rc::HEART_BEAT => heartbeat(req, peer, inner),
                rc::UNREGISTER_CLIENT => unregister_client(req, inner),
                rc::GET_CONSUMER_LIST_BY_GROUP => consumer_list(req, inner),
                rc::LOCK_BATCH_MQ | rc::UNLOCK_BATCH_MQ => queue_locks(req, inner).await,
                rc::CHECK_CLIENT_CONFIG => check_client_config(req, inner),
                _ => Err(unsupported(req)),
            }
            .unwrap_or_else(|e| e)
        })
    }

    fn closed(&self, peer: Peer) {
        let changed = lock(&self.0.clients).connection_closed(peer.conn);
        notify_changed(&self.0, changed);
    }
}

/// CHECK_CLIENT_CONFIG: whether this broker can filter by the consumer's subscription (a
/// SQL92 one needs `enable_property_filter` and must parse). Java push consumers ask before
/// they start.
fn check_client_config<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let body = CheckClientRequestBody::from_json(&req.body).map_err(system_error(req))?;
    if let Some(sub) = &body.subscription_data {
        crate::filter::Filter::compile(
            &sub.topic,
            Some(&sub.expression_type),
            &sub.sub_string,
            sub.sub_version,
            inner.config.enable_property_filter,
        )
        .map_err(|r| reply(req, r.code, r.remark))?;
    }
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None))
}

pub(crate) fn heartbeat<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    peer: Peer,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let mut data = HeartbeatData::from_json(&req.body).map_err(system_error(req))?;
    let groups = data.consumer_data_set.len() + data.producer_data_set.len();
    if groups > HEARTBEAT_GROUPS_MAX {
        return Err(limited(
            inner,
            req,
            response_code::SYSTEM_ERROR,
            format!(
                "the heartbeat names {groups} groups, more than the {HEARTBEAT_GROUPS_MAX} one \
                 client may register"
            ),
        ));
    }
    // A group's name becomes its retry topic (a ConsumeQueue directory). One client process
    // sends one heartbeat for all its groups: the valid ones are registered, the others are
    // left out and named in the answer (SYSTEM_ERROR, which clients log).
    let mut refused: Option<RemotingCommand> = None;
    data.consumer_data_set.retain(|c| {
        if c.subscription_data_set.len() > SUBSCRIPTIONS_MAX {
            let why = format!(
                "consumer group {} subscribes to {} topics, more than the {SUBSCRIPTIONS_MAX} \
                 allowed",
                c.group_name,
                c.subscription_data_set.len()
            );
            refused.get_or_insert(limited(inner, req, response_code::SYSTEM_ERROR, why));
            return false;
        }
        let names = std::iter::once(check_names(req, None, Some(&c.group_name)))
            .chain(c.subscription_data_set.iter().map(|s| check_names(req, Some(&s.topic), None)));
        match names.collect::<Result<Vec<()>, RemotingCommand>>() {
            Ok(_) => true,
            Err(e) => {
                refused.get_or_insert(e);
                false
            }
        }
    });
    data.producer_data_set.retain(|p| match check_names(req, None, Some(&p.group_name)) {
        Ok(()) => true,
        Err(e) => {
            refused.get_or_insert(e);
            false
        }
    });
    // RocketMQ takes a subscription it cannot filter by and logs it; pulls with it are then
    // refused (SUBSCRIPTION_PARSE_FAILED) with the reason.
    for c in &data.consumer_data_set {
        for sub in c.subscription_data_set.iter().filter(|s| s.is_sql92()) {
            if let Err(e) = crate::filter::sql92::parse(&sub.sub_string) {
                tracing::warn!(group = %c.group_name, topic = %sub.topic, expression = %sub.sub_string, error = %e, "a consumer registered a SQL92 subscription that does not parse");
            }
        }
    }
    let info = ClientInfo {
        addr: peer.addr.to_string(),
        language: req.language.name().to_owned(),
        version: req.version,
    };
    let changed = {
        let mut clients = lock(&inner.clients);
        // Past clients_max the client's registrations are refreshed; new ones are left out and
        // named in the answer (its other groups keep working).
        let mut room = inner.config.clients_max.saturating_sub(clients.registrations());
        let mut past_limit = Vec::new();
        // Only a nearly full table needs to tell refreshes from new registrations.
        let named = data.consumer_data_set.len() + data.producer_data_set.len();
        let held =
            if room >= named { Default::default() } else { clients.held_by(&data.client_id) };
        let mut fits = |group: &str, consumer: bool| {
            if held.contains(&(consumer, group.to_owned())) {
                true
            } else if room > 0 {
                room -= 1;
                true
            } else {
                past_limit.push(group.to_owned());
                false
            }
        };
        data.consumer_data_set.retain(|c| fits(&c.group_name, true));
        data.producer_data_set.retain(|p| fits(&p.group_name, false));
        if !past_limit.is_empty() {
            let why = format!(
                "the broker holds its clients_max of {} client registrations: {} not registered",
                inner.config.clients_max,
                past_limit.join(", ")
            );
            refused.get_or_insert(limited(inner, req, response_code::SYSTEM_ERROR, why));
        }
        clients.heartbeat_from(peer.conn, info, &data, now_ms(inner))
    };
    notify_changed(inner, changed);
    if is_leader(inner) {
        // As RocketMQ's defaults (autoCreateSubscriptionGroup): each consumer group gets its
        // subscription group and its retry topic (1 queue, read-write) on first contact.
        // At most HEARTBEAT_GROUPS_CREATED_MAX groups per heartbeat (the rest on the next one),
        // so one Raft entry stays small; none past the group's queue limit, and no group past
        // groups_max (its consumers' commits get SUBSCRIPTION_GROUP_NOT_EXIST until an
        // operator makes room).
        let consumers = &data.consumer_data_set
            [..data.consumer_data_set.len().min(HEARTBEAT_GROUPS_CREATED_MAX)];
        let missing = consumers
            .iter()
            .map(|c| c.group_name.as_str())
            .filter(|g| matches!(inner.replica.metadata().group(g), Ok(None)));
        let reserved = reserve_groups(inner, missing);
        let mut commands = Vec::new();
        let mut room = queues_left(inner);
        for c in consumers {
            let retry = retry_topic(&c.group_name);
            if !known_group(inner, &c.group_name) {
                continue;
            }
            if matches!(inner.replica.metadata().topic(&retry), Ok(None)) && room > 0 {
                room -= 1;
                commands.push(MetaCommand::PutTopic(single_queue_topic(retry)));
            }
        }
        for name in reserved.names() {
            commands.push(MetaCommand::PutGroup(GroupMeta {
                name: name.clone(),
                consume_enable: true,
                consume_broadcast_enable: true,
                retry_queue_nums: 1,
                retry_max_times: 16,
            }));
        }
        if !commands.is_empty() {
            let (replica, register_now) = (inner.replica.clone(), inner.register_now.clone());
            tokio::spawn(async move {
                match replica.propose_metadata(commands).await {
                    Ok(()) => register_now.notify_one(),
                    Err(e) => {
                        tracing::debug!(error = %e, "retry topic not created (the next heartbeat tries again)")
                    }
                }
                // Applied (so counted as held) or not created: no longer in flight.
                drop(reserved);
            });
        }
    }
    if let Some(refused) = refused {
        return Err(refused);
    }
    // The response's version (409) is what Java clients record as the broker's version.
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None))
}

/// The most consumer groups one heartbeat creates (retry topic and subscription group).
pub(crate) const HEARTBEAT_GROUPS_CREATED_MAX: usize = 64;
/// The most groups (consumer and producer) one heartbeat may name: one client process, its
/// consumers and producers.
pub(crate) const HEARTBEAT_GROUPS_MAX: usize = 1_024;
/// The most topics one consumer group's member may subscribe to.
pub(crate) const SUBSCRIPTIONS_MAX: usize = 1_024;

pub(crate) fn unregister_client<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: UnregisterClientRequestHeader = header(req)?;
    let changed = lock(&inner.clients).unregister(
        &h.client_id,
        h.producer_group.as_deref(),
        h.consumer_group.as_deref(),
    );
    notify_changed(inner, changed);
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None))
}

pub(crate) fn consumer_list<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: GetConsumerListByGroupRequestHeader = header(req)?;
    let ids = lock(&inner.clients).consumer_ids(&h.consumer_group);
    if ids.is_empty() {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            format!("no consumer for this group, {}", h.consumer_group),
        ));
    }
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_body(ConsumerListBody { consumer_id_list: ids }.to_json(JsonStyle::Standard)))
}

/// LOCK_BATCH_MQ and UNLOCK_BATCH_MQ. Only the master grants locks, once a quorum confirms it
/// leads: a follower (or a cut-off leader) answers that the client holds none (each replica
/// keeps its own table). A lock that changes owner is replicated before it is granted
/// (`SetLockOwner`), and a new master starts from the replicated owners
/// (`ClientManager::honour_locks`): a consumer that took a queue from the old master keeps
/// it, and nobody else gets it while it may still be consuming. Renewals are not
/// replicated. Unlocks are taken anywhere.
pub(crate) async fn queue_locks<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let body = LockBatchRequestBody::from_json(&req.body).map_err(system_error(req))?;
    let answer = |held| {
        RemotingCommand::response_to(req, response_code::SUCCESS, None)
            .with_body(LockBatchResponseBody { lock_ok_mq_set: held }.to_json(JsonStyle::Standard))
    };
    if req.code == rc::UNLOCK_BATCH_MQ {
        lock(&inner.clients).unlock(&body.consumer_group, &body.client_id, &body.mq_set);
        return Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None));
    }
    // A leader cut off from its group may still think it leads (openraft 0.9 has no
    // check-quorum): a lock, even a renewal, is granted only once a quorum confirms this
    // replica leads. So a holder's last renewal precedes the next master's election, and
    // that master honours the lock for longer than the holder trusts it (60 s against 30 s).
    let confirmed = master_ready(inner).await
        && inner.replica.confirmed_master(Duration::from_millis(MASTER_CATCH_UP_MS)).await;
    if !confirmed {
        return Ok(answer(BTreeSet::new()));
    }
    // Only a known group's locks, on queues that exist (the lock table and its replicated
    // owners grow only with what exists); others are answered as not locked.
    if body.mq_set.len() > inner.config.queues_max {
        return Err(limited(
            inner,
            req,
            response_code::SYSTEM_ERROR,
            format!("{} queues asked for, more than the broker's queues_max", body.mq_set.len()),
        ));
    }
    if !known_group(inner, &body.consumer_group) {
        return Ok(answer(BTreeSet::new()));
    }
    let mut body = body;
    let mut topics = std::collections::BTreeMap::new();
    body.mq_set.retain(|q| {
        if q.broker_name != inner.config.broker_name {
            return false;
        }
        let queues = *topics.entry(q.topic.clone()).or_insert_with(|| {
            match inner.replica.metadata().topic(&q.topic) {
                Ok(Some(t)) => t.read_queue_nums.max(t.write_queue_nums),
                _ => 0,
            }
        });
        (0..queues).contains(&q.queue_id)
    });
    let term = inner.replica.term();
    let locked = {
        let mut clients = lock(&inner.clients);
        if !clients.honours_locks_of(term) {
            let owners = inner.replica.metadata().lock_owners().map_err(system_error(req))?;
            clients.honour_locks(term, owners, now_ms(inner));
        }
        clients.lock(
            &body.consumer_group,
            &body.client_id,
            &body.mq_set,
            now_ms(inner),
            LOCK_EXPIRY_MS_DEFAULT,
        )
    };
    if locked.taken.is_empty() {
        return Ok(answer(locked.held));
    }
    let command = MetaCommand::SetLockOwner {
        group: body.consumer_group.clone(),
        owner: body.client_id.clone(),
        queues: locked.taken.iter().cloned().collect(),
    };
    if let Err(e) = inner.replica.propose_metadata(vec![command]).await {
        // Not granted after all: a master that cannot replicate the new owner must not hand
        // the queue over (the next master would not know of it).
        tracing::debug!(group = %body.consumer_group, error = %e, "a lock's new owner was not replicated");
        lock(&inner.clients).unlock(&body.consumer_group, &body.client_id, &locked.taken);
        let held = locked.held.difference(&locked.taken).cloned().collect();
        return Ok(answer(held));
    }
    Ok(answer(locked.held))
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use rocketraft_protocol::body::*;

    use super::super::testing::{request, OneReplica, PEER};
    use super::*;

    fn heartbeat(client: &str) -> RemotingCommand {
        let consumer = ConsumerData {
            consume_from_where: ConsumeFromWhere::ConsumeFromFirstOffset,
            consume_type: ConsumeType::ConsumePassively,
            group_name: "CG".into(),
            message_model: MessageModel::Clustering,
            subscription_data_set: vec![SubscriptionData::tag("T", "*", 1)],
            unit_mode: false,
        };
        let data = HeartbeatData {
            client_id: client.into(),
            consumer_data_set: vec![consumer],
            producer_data_set: vec![],
        };
        RemotingCommand::request_without_header(rc::HEART_BEAT)
            .with_body(data.to_json(JsonStyle::Standard))
    }

    #[tokio::test]
    async fn a_heartbeat_registers_a_member_until_its_connection_closes() {
        let r = OneReplica::start().await;
        r.topic("T").await;
        let p = ClientsProcessor(r.inner.clone());
        assert_eq!(r.call(&p, heartbeat("c1")).await.code, response_code::SUCCESS);
        let members = || {
            let h = GetConsumerListByGroupRequestHeader {
                consumer_group: "CG".into(),
                ..Default::default()
            };
            request(rc::GET_CONSUMER_LIST_BY_GROUP, h)
        };
        let answer = r.call(&p, members()).await;
        assert_eq!(ConsumerListBody::from_json(&answer.body).unwrap().consumer_id_list, ["c1"]);

        // The first heartbeat of a group also creates its retry topic (in the background).
        let mut waited = 0;
        while r.inner.replica.metadata().topic(&retry_topic("CG")).unwrap().is_none() {
            assert!(waited < 100, "no retry topic 5 s after the first heartbeat");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            waited += 1;
        }

        let q = MessageQueue { broker_name: "broker-a".into(), queue_id: 0, topic: "T".into() };
        let lock = LockBatchRequestBody {
            client_id: "c1".into(),
            consumer_group: "CG".into(),
            mq_set: [q.clone()].into(),
            only_this_broker: false,
        };
        let answer = r
            .call(
                &p,
                RemotingCommand::request_without_header(rc::LOCK_BATCH_MQ)
                    .with_body(lock.to_json(JsonStyle::Standard)),
            )
            .await;
        assert_eq!(
            LockBatchResponseBody::from_json(&answer.body).unwrap().lock_ok_mq_set,
            [q].into()
        );

        Processor::closed(&p, PEER);
        let answer = r.call(&p, members()).await;
        assert_ne!(
            answer.code,
            response_code::SUCCESS,
            "no member is left once its connection closed"
        );
        drop(p);
        r.stop().await;
    }

    fn heartbeat_of(client: &str, groups: &[&str], topics: usize) -> RemotingCommand {
        let consumers = groups.iter().map(|g| ConsumerData {
            consume_from_where: ConsumeFromWhere::ConsumeFromFirstOffset,
            consume_type: ConsumeType::ConsumePassively,
            group_name: g.to_string(),
            message_model: MessageModel::Clustering,
            subscription_data_set: (0..topics)
                .map(|i| SubscriptionData::tag(format!("T{i}"), "*", 1))
                .collect(),
            unit_mode: false,
        });
        let data = HeartbeatData {
            client_id: client.into(),
            consumer_data_set: consumers.collect(),
            producer_data_set: vec![],
        };
        RemotingCommand::request_without_header(rc::HEART_BEAT)
            .with_body(data.to_json(JsonStyle::Standard))
    }

    fn lock_request(group: &str, queues: &[(&str, &str, i32)]) -> RemotingCommand {
        let lock = LockBatchRequestBody {
            client_id: "c1".into(),
            consumer_group: group.into(),
            mq_set: queues
                .iter()
                .map(|(b, t, q)| MessageQueue {
                    broker_name: b.to_string(),
                    queue_id: *q,
                    topic: t.to_string(),
                })
                .collect(),
            only_this_broker: false,
        };
        RemotingCommand::request_without_header(rc::LOCK_BATCH_MQ)
            .with_body(lock.to_json(JsonStyle::Standard))
    }

    /// Client registrations stop at clients_max (a client's own are refreshed, new ones past
    /// it are named in the answer), a heartbeat names at most HEARTBEAT_GROUPS_MAX groups and
    /// a member SUBSCRIPTIONS_MAX topics, heartbeats create no group past groups_max (and a
    /// group not created takes no offsets), and locks are granted only to known groups on
    /// this broker's queues that exist.
    #[tokio::test]
    async fn client_tables_and_locks_stay_within_their_limits() {
        let r = OneReplica::start_with(|c| {
            c.clients_max = 4;
            c.groups_max = 2;
        })
        .await;
        r.topic("T0").await;
        let p = ClientsProcessor(r.inner.clone());
        let registrations = || lock(&r.inner.clients).registrations();

        let first = r.call(&p, heartbeat_of("c1", &["G1", "G2", "G3"], 1)).await;
        assert_eq!(first.code, response_code::SUCCESS, "{:?}", first.remark);
        let past = r.call(&p, heartbeat_of("c2", &["G1", "G4"], 1)).await;
        assert_eq!(past.code, response_code::SYSTEM_ERROR);
        let remark = past.remark.unwrap();
        assert!(remark.contains("clients_max of 4") && remark.contains("G4 not registered"));
        assert_eq!(registrations(), 4, "c2 joined G1; G4 was left out");
        let refresh = r.call(&p, heartbeat_of("c1", &["G1", "G2", "G3"], 1)).await;
        assert_eq!(refresh.code, response_code::SUCCESS, "a full table still refreshes");

        let many: Vec<String> = (0..=HEARTBEAT_GROUPS_MAX).map(|i| format!("M{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let refused = r.call(&p, heartbeat_of("c9", &many, 1)).await;
        assert_eq!(refused.code, response_code::SYSTEM_ERROR);
        assert!(refused.remark.unwrap().contains("groups, more than the 1024"));
        let refused = r.call(&p, heartbeat_of("c1", &["G1"], SUBSCRIPTIONS_MAX + 1)).await;
        assert!(refused.remark.unwrap().contains("more than the 1024 allowed"));

        // G1 and G2 were created from the first heartbeat (groups_max 2); G3 never is.
        let mut waited = 0;
        while r.inner.replica.metadata().group_count() < 2 {
            assert!(waited < 100, "no groups 5 s after the heartbeats");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            waited += 1;
        }
        let again = r.call(&p, heartbeat_of("c1", &["G1", "G2", "G3"], 1)).await;
        assert_eq!(again.code, response_code::SUCCESS);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let groups: Vec<String> =
            r.inner.replica.metadata().groups().unwrap().into_iter().map(|g| g.name).collect();
        assert_eq!(groups, ["G1", "G2"]);
        let commit = |group: &str| {
            let h = UpdateConsumerOffsetRequestHeader {
                consumer_group: group.into(),
                topic: "T0".into(),
                commit_offset: 0,
                ..Default::default()
            };
            super::super::testing::request(rc::UPDATE_CONSUMER_OFFSET, h)
        };
        let offsets = super::super::offsets::OffsetsProcessor(r.inner.clone());
        assert_eq!(r.call(&offsets, commit("G1")).await.code, response_code::SUCCESS);
        let refused = r.call(&offsets, commit("G3")).await;
        assert_eq!(refused.code, response_code::SUBSCRIPTION_GROUP_NOT_EXIST);

        // Locks: a known group, this broker's existing queues only.
        let held = |c: RemotingCommand| {
            LockBatchResponseBody::from_json(&c.body)
                .unwrap()
                .lock_ok_mq_set
                .into_iter()
                .map(|q| (q.topic, q.queue_id))
                .collect::<Vec<_>>()
        };
        let asked = [
            ("broker-a", "T0", 0),
            ("broker-a", "T0", 99),
            ("broker-a", "Nope", 0),
            ("broker-z", "T0", 1),
        ];
        assert_eq!(held(r.call(&p, lock_request("G1", &asked)).await), [("T0".into(), 0)]);
        assert!(held(r.call(&p, lock_request("Stranger", &asked)).await).is_empty());
        drop((p, offsets));
        r.stop().await;
    }
}
