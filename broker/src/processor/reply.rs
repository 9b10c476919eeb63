//! Request-reply (RocketMQ 4.6+): SEND_REPLY_MESSAGE(_V2), a consumer's reply to a request
//! message, which the master pushes to the producer waiting for it (PUSH_REPLY_MESSAGE_TO_CLIENT
//! on the connection that producer sent its heartbeats on) and, with `store_reply_message`,
//! also stores in the cluster's reply topic through Raft.
//!
//! Rules (RocketMQ's `ReplyMessageProcessor`):
//! - the reply is checked as a send is (names, sizes, topic, queue) before anything happens;
//! - the answer's code says whether the push reached the requester: SUCCESS once it answered
//!   SUCCESS, SYSTEM_ERROR with RocketMQ's remark when the reply names no requester, the
//!   requester is not connected to this master, or it did not answer within 10 s;
//! - the stored copy, when stored, gives the answer its msgId and queue offset; a failed store
//!   is logged and leaves them "0" and 0 (the reply reached the requester: that is what the
//!   replier waits for).

use std::net::SocketAddr;

use rocketraft_protocol::headers::{ReplyMessageRequestHeader, SendMessageRequestHeader};
use rocketraft_protocol::message::{find_property, property, set_property};
use rocketraft_protocol::names;
use rocketraft_protocol::{request_code as rc, response_code, RemotingCommand};
use rocketraft_raft::types::TopicMeta;
use rocketraft_raft::MetaStore;
use rocketraft_remoting::ServerCallError;
use rocketraft_store::io::Storage;

use super::inspect::CONSUMER_CALL_TIMEOUT_MS;
use super::send::{commit, prepare, send_header, send_ok};
use super::*;
use crate::server::{group_now_ms, lock, Inner};

/// SEND_REPLY_MESSAGE and SEND_REPLY_MESSAGE_V2.
pub(crate) struct ReplyProcessor<S: Storage + Clone, M: MetaStore>(pub(crate) Arc<Inner<S, M>>);

impl<S: Storage + Clone, M: MetaStore> ReplyProcessor<S, M> {
    pub(crate) const CODES: &'static [i32] = &[rc::SEND_REPLY_MESSAGE, rc::SEND_REPLY_MESSAGE_V2];
}

impl<S: Storage + Clone, M: MetaStore> Processor for ReplyProcessor<S, M> {
    fn process(&self, req: RemotingCommand, peer: Peer) -> Answer<'_> {
        Box::pin(async move {
            let (req, inner) = (&req, &*self.0);
            send_reply(req, peer.addr, inner).await.unwrap_or_else(|e| e)
        })
    }
}

/// The cluster's reply topic as RocketMQ's brokers keep it: one queue, readable and writable.
/// `None` when the cluster's name makes no valid topic name (the config refuses such names).
pub(crate) fn reply_topic_meta(cluster: &str) -> Option<TopicMeta> {
    let name = names::reply_topic(cluster);
    names::check_topic(&name).ok()?;
    Some(single_queue_topic(name))
}

async fn send_reply<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    peer: SocketAddr,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h = send_header(req)?;
    if !master_ready(inner).await {
        return Err(not_master(req, inner));
    }
    if h.topic == names::reply_topic(&inner.config.cluster_name) {
        // Registration creates it on a new master; a reply that comes first creates it too.
        super::send_back::system_topic(req, inner, &h.topic).await?;
    }
    let prepared = prepare(req, peer, inner, h.clone()).await?;
    let queue_id = prepared.queue_id;
    let pushed = push(req, peer, inner, &h).await;
    let mut answer = match &pushed {
        Ok(()) => send_ok(req, inner, "0".into(), queue_id, 0),
        Err(remark) => reply(req, response_code::SYSTEM_ERROR, remark.clone()),
    };
    if inner.config.store_reply_message {
        match commit(req, inner, prepared).await {
            Ok(stored) if pushed.is_ok() => answer = stored,
            Ok(_) => {}
            Err(refused) => tracing::warn!(
                topic = %h.topic,
                code = refused.code,
                remark = refused.remark.as_deref().unwrap_or(""),
                "a reply was not stored"
            ),
        }
    }
    Ok(answer)
}

/// Pushes the reply to the producer its REPLY_TO_CLIENT names; `Err` holds RocketMQ's remark.
async fn push<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    peer: SocketAddr,
    inner: &Inner<S, M>,
    h: &SendMessageRequestHeader,
) -> Result<(), String> {
    let props = h.properties.clone().unwrap_or_default();
    let Some(requester) = find_property(&props, property::REPLY_TO_CLIENT).map(str::to_owned)
    else {
        tracing::warn!("a reply without {}: nobody to push it to", property::REPLY_TO_CLIENT);
        return Err(format!("reply message properties[{}] is null", property::REPLY_TO_CLIENT));
    };
    let not_found = || format!("push reply message fail, channel of <{requester}> not found.");
    let Some(conn) = lock(&inner.clients).producer_conn_of_client(&requester) else {
        tracing::warn!(%requester, "a reply for a producer not connected to this master");
        return Err(not_found());
    };
    let now = group_now_ms(inner);
    let header = ReplyMessageRequestHeader {
        producer_group: h.producer_group.clone(),
        topic: h.topic.clone(),
        default_topic: h.default_topic.clone(),
        default_topic_queue_nums: h.default_topic_queue_nums,
        queue_id: h.queue_id,
        sys_flag: h.sys_flag,
        born_timestamp: h.born_timestamp,
        flag: h.flag,
        properties: Some(set_property(props, property::PUSH_REPLY_TIME, &now.to_string())),
        reconsume_times: h.reconsume_times,
        unit_mode: Some(h.unit_mode.unwrap_or(false)),
        born_host: peer.to_string(),
        store_host: inner.config.advertised_addr.to_string(),
        store_timestamp: now,
    };
    let push = RemotingCommand::request(rc::PUSH_REPLY_MESSAGE_TO_CLIENT, &header)
        .with_body(req.body.clone());
    let failed = || format!("push reply message to {requester}fail.");
    match inner.connections.call(conn, push, CONSUMER_CALL_TIMEOUT_MS).await {
        Ok(answer) if answer.code == response_code::SUCCESS => Ok(()),
        Ok(answer) => {
            tracing::warn!(%requester, code = answer.code, remark = answer.remark.as_deref().unwrap_or(""), "the requester refused a reply");
            Err(failed())
        }
        Err(ServerCallError::NotConnected) => Err(not_found()),
        Err(e) => {
            tracing::warn!(%requester, error = %e, "a reply did not reach its requester");
            Err(failed())
        }
    }
}
