//! The client manager's requests: heartbeats (which also create a group's retry topic and
//! subscription group on first contact), unregistering, a group's member list, queue locks.

use rocketraft_protocol::body::{
    ConsumerListBody, HeartbeatData, JsonBody, JsonStyle, LockBatchRequestBody,
    LockBatchResponseBody,
};
use rocketraft_protocol::code::perm;
use rocketraft_protocol::headers::*;
use rocketraft_protocol::names::retry_topic;
use rocketraft_protocol::{request_code as rc, response_code, RemotingCommand};
use rocketraft_raft::types::{GroupMeta, TopicMeta};
use rocketraft_raft::{MetaCommand, MetaStore};
use rocketraft_store::io::Storage;

use crate::clients::{ConnId, LOCK_EXPIRY_MS_DEFAULT};
use crate::server::{lock, notify_changed, now_ms, Inner};

use super::send::queues_left;
use super::*;

pub(crate) fn heartbeat<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    conn: ConnId,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let mut data = HeartbeatData::from_json(&req.body).map_err(system_error(req))?;
    // A group's name becomes its retry topic (a ConsumeQueue directory). One client process
    // sends one heartbeat for all its groups: the valid ones are registered, the others are
    // left out and named in the answer (SYSTEM_ERROR, which clients log).
    let mut refused: Option<RemotingCommand> = None;
    data.consumer_data_set.retain(|c| {
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
    let changed = lock(&inner.clients).heartbeat(conn, &data, now_ms(inner));
    notify_changed(inner, changed);
    if is_leader(inner) {
        // As RocketMQ's defaults (autoCreateSubscriptionGroup): each consumer group gets its
        // subscription group and its retry topic (1 queue, read-write) on first contact.
        // At most HEARTBEAT_GROUPS_CREATED_MAX groups per heartbeat (the rest on the next one),
        // so one Raft entry stays small; none past the group's queue limit.
        let mut commands = Vec::new();
        let mut room = queues_left(inner);
        for c in data.consumer_data_set.iter().take(HEARTBEAT_GROUPS_CREATED_MAX) {
            let retry = retry_topic(&c.group_name);
            if matches!(inner.replica.metadata().topic(&retry), Ok(None)) && room > 0 {
                room -= 1;
                commands.push(MetaCommand::PutTopic(TopicMeta {
                    name: retry,
                    read_queue_nums: 1,
                    write_queue_nums: 1,
                    perm: perm::READ | perm::WRITE,
                    topic_sys_flag: 0,
                    order: false,
                    filter_type: "SINGLE_TAG".into(),
                }));
            }
            if matches!(inner.replica.metadata().group(&c.group_name), Ok(None)) {
                commands.push(MetaCommand::PutGroup(GroupMeta {
                    name: c.group_name.clone(),
                    consume_enable: true,
                    consume_broadcast_enable: true,
                    retry_queue_nums: 1,
                    retry_max_times: 16,
                }));
            }
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

pub(crate) fn queue_locks<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let body = LockBatchRequestBody::from_json(&req.body).map_err(system_error(req))?;
    let mut clients = lock(&inner.clients);
    if req.code == rc::UNLOCK_BATCH_MQ {
        clients.unlock(&body.consumer_group, &body.client_id, &body.mq_set);
        return Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None));
    }
    let held = clients.lock(
        &body.consumer_group,
        &body.client_id,
        &body.mq_set,
        now_ms(inner),
        LOCK_EXPIRY_MS_DEFAULT,
    );
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_body(LockBatchResponseBody { lock_ok_mq_set: held }.to_json(JsonStyle::Standard)))
}
