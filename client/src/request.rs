//! Request-reply (RocketMQ 4.6+): a producer sends a request message and waits for the reply a
//! consumer sends back ([`crate::Producer::request`], [`crate::Producer::reply`],
//! [`crate::Message::reply_to`]).
//!
//! How a reply finds its requester (RocketMQ's design):
//! - the request carries CORRELATION_ID (unique to it), REPLY_TO_CLIENT (the requester's client
//!   id) and TTL (how long it waits); the broker that stores it adds CLUSTER;
//! - the replier sends the reply to `<cluster>_REPLY_TOPIC` with SEND_REPLY_MESSAGE_V2; every
//!   broker group of the cluster keeps that topic;
//! - the master that takes the reply pushes it (PUSH_REPLY_MESSAGE_TO_CLIENT) on the connection
//!   the requester sent its heartbeats on, so the requester must be known to every master the
//!   reply may reach: before a request, it learns the reply topic's route and introduces itself
//!   to each master there it has not yet met (a new master after a failover too);
//! - the push is matched to the waiting request by its correlation id here; a reply that comes
//!   after its request gave up is acknowledged and dropped.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rocketraft_protocol::body::MessageQueue;
use rocketraft_protocol::headers::ReplyMessageRequestHeader;
use rocketraft_protocol::message::{parse_properties, property};
use rocketraft_protocol::{response_code, RemotingCommand};
use tokio::sync::oneshot;

use crate::clock;
use crate::error::{ClientError, Result};
use crate::lock;
use crate::message::{inflate, MessageExt, INFLATED_MAX_BYTES};

/// Default for [`crate::ProducerConfig::requests_max`].
pub const REQUESTS_MAX_DEFAULT: usize = 1_024;

/// The requests of one producer waiting for their replies, by correlation id.
pub(crate) struct Replies {
    waiting: Mutex<BTreeMap<String, oneshot::Sender<MessageExt>>>,
    max: usize,
}

/// One request's place in [`Replies`]; leaving it (reply, timeout, error, a dropped future)
/// frees the place.
pub(crate) struct Waiting {
    replies: Arc<Replies>,
    id: String,
    rx: oneshot::Receiver<MessageExt>,
}

impl Waiting {
    /// The reply, or `None` if the producer's connections went first.
    pub(crate) async fn reply(&mut self) -> Option<MessageExt> {
        (&mut self.rx).await.ok()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        lock(&self.replies.waiting).remove(&self.id);
    }
}

impl Replies {
    pub(crate) fn new(max: usize) -> Arc<Replies> {
        Arc::new(Replies { waiting: Mutex::new(BTreeMap::new()), max })
    }

    /// Takes a place for the reply to request `id`.
    pub(crate) fn wait(self: &Arc<Self>, id: &str) -> Result<Waiting> {
        let (tx, rx) = oneshot::channel();
        let mut waiting = lock(&self.waiting);
        if waiting.len() >= self.max {
            return Err(ClientError::Overloaded {
                what: "requests waiting for replies",
                max: self.max,
            });
        }
        waiting.insert(id.to_owned(), tx);
        Ok(Waiting { replies: self.clone(), id: id.to_owned(), rx })
    }

    /// The answer to a PUSH_REPLY_MESSAGE_TO_CLIENT from `addr`: the reply goes to its request
    /// (or is dropped when nobody waits for it any more); SYSTEM_ERROR for a push that is not
    /// a reply. Runs on the connection's reader task: it never blocks.
    pub(crate) fn deliver(&self, addr: &str, push: &RemotingCommand) -> RemotingCommand {
        let refused = |why: String| {
            tracing::warn!(%addr, "a reply push refused: {why}");
            RemotingCommand::response_to(push, response_code::SYSTEM_ERROR, Some(why))
        };
        let header = match push.decode_header::<ReplyMessageRequestHeader>() {
            Ok(h) => h,
            Err(e) => return refused(format!("process reply message fail: {e}")),
        };
        let msg = reply_message(header, &push.body);
        let Some(id) = msg.property(property::CORRELATION_ID).map(str::to_owned) else {
            return refused(format!("the reply has no {}", property::CORRELATION_ID));
        };
        match lock(&self.waiting).remove(&id) {
            Some(tx) => {
                let _ = tx.send(msg);
            }
            None => {
                tracing::debug!(%addr, correlation_id = %id, "a reply nobody waits for (any more)")
            }
        }
        RemotingCommand::response_to(push, response_code::SUCCESS, None)
    }
}

/// `host:port`, or RocketMQ's `/host:port`; 0.0.0.0:0 when unreadable.
fn host(s: &str) -> SocketAddr {
    s.trim_start_matches('/')
        .parse()
        .unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
}

/// A pushed reply as a message: the header's fields, the body inflated if it was compressed,
/// and ARRIVE_TIME (when it came) added, as Java's client does. It was not read from a queue:
/// its queue names the reply topic and queue with no group, and its offsets are 0.
fn reply_message(h: ReplyMessageRequestHeader, body: &Bytes) -> MessageExt {
    let mut properties = parse_properties(h.properties.as_deref().unwrap_or(""));
    properties.insert(property::ARRIVE_TIME.to_owned(), clock::now_ms().to_string());
    let (body, sys_flag) = match inflate(body, h.sys_flag, INFLATED_MAX_BYTES) {
        Some(out) => {
            (Bytes::from(out), h.sys_flag & !rocketraft_protocol::sysflag::message::COMPRESSED)
        }
        None => (body.clone(), h.sys_flag),
    };
    MessageExt {
        queue: MessageQueue {
            broker_name: String::new(),
            queue_id: h.queue_id,
            topic: h.topic.clone(),
        },
        topic: h.topic,
        body,
        flag: h.flag,
        properties,
        queue_offset: 0,
        commit_log_offset: 0,
        born_timestamp_ms: h.born_timestamp,
        born_host: host(&h.born_host),
        store_timestamp_ms: h.store_timestamp,
        store_host: host(&h.store_host),
        reconsume_times: h.reconsume_times.unwrap_or(0),
        sys_flag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocketraft_protocol::message::properties_to_string;
    use rocketraft_protocol::request_code;

    fn push(props: &[(&str, &str)], body: &[u8], sys_flag: i32) -> RemotingCommand {
        let h = ReplyMessageRequestHeader {
            producer_group: "PG".into(),
            topic: "DefaultCluster_REPLY_TOPIC".into(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 4,
            sys_flag,
            born_timestamp: 5,
            properties: Some(properties_to_string(props.iter().copied())),
            born_host: "/10.0.0.9:4000".into(),
            store_host: "10.0.0.1:10911".into(),
            store_timestamp: 7,
            ..Default::default()
        };
        let mut cmd = RemotingCommand::request(request_code::PUSH_REPLY_MESSAGE_TO_CLIENT, &h)
            .with_body(body.to_vec());
        cmd.opaque = 42;
        cmd
    }

    #[tokio::test]
    async fn a_push_reaches_the_request_waiting_for_it_and_no_other() {
        let replies = Replies::new(2);
        let mut a = replies.wait("a").unwrap();
        let _b = replies.wait("b").unwrap();
        assert!(matches!(replies.wait("c"), Err(ClientError::Overloaded { max: 2, .. })));

        let answer =
            replies.deliver("b1", &push(&[("CORRELATION_ID", "a"), ("K", "v")], b"yes", 0));
        assert_eq!((answer.code, answer.opaque), (response_code::SUCCESS, 42));
        assert!(answer.is_response());
        let got = a.reply().await.unwrap();
        assert_eq!(&got.body[..], b"yes");
        assert_eq!(got.property("K"), Some("v"));
        assert!(got.property(property::ARRIVE_TIME).is_some());
        assert_eq!(got.born_host, "10.0.0.9:4000".parse().unwrap(), "Java's /host:port is read");
        assert_eq!(got.store_host, "10.0.0.1:10911".parse().unwrap());
        assert_eq!((got.born_timestamp_ms, got.store_timestamp_ms), (5, 7));
        drop(a);
        assert!(replies.wait("c").is_ok(), "a request that ended frees its place");

        // Late, unknown or unreadable pushes: acknowledged or refused, never delivered.
        let late = replies.deliver("b1", &push(&[("CORRELATION_ID", "zzz")], b"late", 0));
        assert_eq!(late.code, response_code::SUCCESS);
        let anonymous = replies.deliver("b1", &push(&[("K", "v")], b"?", 0));
        assert_eq!(anonymous.code, response_code::SYSTEM_ERROR);
        let mut headerless = push(&[("CORRELATION_ID", "b")], b"?", 0);
        headerless.ext_fields = None;
        assert_eq!(replies.deliver("b1", &headerless).code, response_code::SYSTEM_ERROR);
    }

    #[tokio::test]
    async fn a_compressed_reply_is_inflated() {
        use rocketraft_protocol::sysflag::message as flag;
        let text = "a long reply ".repeat(1_000);
        let z = crate::producer::compress_body(text.as_bytes(), 0, 5).unwrap();
        let replies = Replies::new(1);
        let mut w = replies.wait("z").unwrap();
        let answer = replies.deliver("b1", &push(&[("CORRELATION_ID", "z")], &z, flag::COMPRESSED));
        assert_eq!(answer.code, response_code::SUCCESS);
        let got = w.reply().await.unwrap();
        assert_eq!(got.body, text.as_bytes());
        assert_eq!(got.sys_flag & flag::COMPRESSED, 0);
    }
}
