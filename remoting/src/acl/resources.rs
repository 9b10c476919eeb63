//! What a request needs: the topics and groups it touches with the permission each needs
//! (RocketMQ's `PlainAccessValidator.parse`), and whether it needs an admin account.
//!
//! A pure function of the request: no state, no I/O. Where RocketMQ reads a field we read the
//! same field. We check more than RocketMQ 4.9 in two places, both documented in the README:
//! queue locks (LOCK/UNLOCK_BATCH_MQ need SUB on the group and its topics) and the admin set
//! (every call that changes or deletes metadata or offsets, not only RocketMQ's five).

use std::borrow::Cow;

use rocketraft_protocol::body::{HeartbeatData, JsonBody, LockBatchRequestBody};
use rocketraft_protocol::names::RETRY_PREFIX;
use rocketraft_protocol::{request_code as rc, RemotingCommand};

/// A permission, as `plain_acl.yml` spells it: `DENY`, `PUB`, `SUB` or `PUB|SUB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Perm {
    Deny,
    Pub,
    Sub,
    PubSub,
}

impl Perm {
    pub fn parse(text: &str) -> Option<Perm> {
        match text.trim() {
            "DENY" => Some(Perm::Deny),
            "PUB" => Some(Perm::Pub),
            "SUB" => Some(Perm::Sub),
            "PUB|SUB" | "SUB|PUB" => Some(Perm::PubSub),
            _ => None,
        }
    }

    /// Whether holding `self` grants `needed` (`Pub` or `Sub`).
    pub fn grants(self, needed: Perm) -> bool {
        matches!(
            (self, needed),
            (Perm::Pub | Perm::PubSub, Perm::Pub) | (Perm::Sub | Perm::PubSub, Perm::Sub)
        )
    }
}

/// A topic or a consumer/producer group, borrowed from the request where it can be (a send's
/// check allocates nothing for it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource<'a> {
    Topic(Cow<'a, str>),
    Group(Cow<'a, str>),
}

impl<'a> Resource<'a> {
    /// A topic, except that a retry topic `%RETRY%g` stands for its group `g` (RocketMQ keys a
    /// group's permission by its retry topic).
    pub fn topic(name: &'a str) -> Resource<'a> {
        match name.strip_prefix(RETRY_PREFIX) {
            Some(group) => Resource::Group(Cow::Borrowed(group)),
            None => Resource::Topic(Cow::Borrowed(name)),
        }
    }

    /// As [`Resource::topic`], for a name the request's body held.
    pub fn owned_topic(name: &str) -> Resource<'static> {
        Resource::topic(name).into_owned()
    }

    pub fn into_owned(self) -> Resource<'static> {
        match self {
            Resource::Topic(t) => Resource::Topic(Cow::Owned(t.into_owned())),
            Resource::Group(g) => Resource::Group(Cow::Owned(g.into_owned())),
        }
    }
}

impl std::fmt::Display for Resource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Topic(t) => write!(f, "topic={t}"),
            Resource::Group(g) => write!(f, "group={g}"),
        }
    }
}

/// What one request needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs<'a> {
    pub admin: bool,
    pub resources: Vec<(Resource<'a>, Perm)>,
}

/// Broker codes that change or delete metadata, offsets or permissions: admin accounts only.
/// RocketMQ 4.9's five (17, 25, 200, 207, 215), the offset reset, and two reads that name no
/// topic yet reach any message: VIEW_MESSAGE_BY_ID (a CommitLog offset: any record, and the
/// log can be walked record by record) and our GET_UNRESOLVED_HALVES (every pending
/// transaction); and our Raft group administration (RAFT_TRANSFER_LEADER, RAFT_ADD_REPLICA,
/// RAFT_REMOVE_REPLICA).
pub const BROKER_ADMIN_CODES: &[i32] = &[
    rc::UPDATE_AND_CREATE_TOPIC,
    rc::UPDATE_BROKER_CONFIG,
    rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
    rc::DELETE_SUBSCRIPTIONGROUP,
    rc::DELETE_TOPIC_IN_BROKER,
    rc::INVOKE_BROKER_TO_RESET_OFFSET,
    rc::VIEW_MESSAGE_BY_ID,
    rc::GET_UNRESOLVED_HALVES,
    rc::RAFT_TRANSFER_LEADER,
    rc::RAFT_ADD_REPLICA,
    rc::RAFT_REMOVE_REPLICA,
];

/// Whether `code` needs an admin account on a broker (known from the code alone, before any
/// body is read).
pub fn broker_admin(code: i32) -> bool {
    BROKER_ADMIN_CODES.contains(&code)
}

/// NameServer codes that change what it serves: registrations, deletions, permissions, KV
/// config. Only these are checked on a NameServer (route lookups stay open, as in RocketMQ),
/// and they need an admin account: a broker registers with its cluster's credentials.
pub const NAMESRV_GUARDED_CODES: &[i32] = &[
    rc::REGISTER_BROKER,
    rc::UNREGISTER_BROKER,
    rc::REGISTER_TOPIC_IN_NAMESRV,
    rc::DELETE_TOPIC_IN_NAMESRV,
    rc::WIPE_WRITE_PERM_OF_BROKER,
    rc::ADD_WRITE_PERM_OF_BROKER,
    rc::PUT_KV_CONFIG,
    rc::DELETE_KV_CONFIG,
    rc::UPDATE_NAMESRV_CONFIG,
];

/// What `req` needs on a broker, or why that cannot be read from it (a body that is not the
/// JSON its code carries).
pub fn broker_needs(req: &RemotingCommand) -> Result<Needs<'_>, String> {
    let field = |k: &str| req.ext_field(k).unwrap_or_default();
    let group = |k: &str| Resource::Group(Cow::Borrowed(field(k)));
    let mut needs = Needs { admin: broker_admin(req.code), resources: Vec::new() };
    let r = &mut needs.resources;
    match req.code {
        rc::SEND_MESSAGE | rc::SEND_REPLY_MESSAGE => r.push(publish(field("topic"))),
        rc::SEND_MESSAGE_V2 | rc::SEND_BATCH_MESSAGE | rc::SEND_REPLY_MESSAGE_V2 => {
            r.push(publish(field("b")))
        }
        rc::CONSUMER_SEND_MSG_BACK => {
            // The record copied back is named by its CommitLog offset; the broker checks that it
            // is of `originTopic` (required with ACL on), which the account must read.
            r.push((group("group"), Perm::Sub));
            if !field("originTopic").is_empty() {
                r.push((Resource::topic(field("originTopic")), Perm::Sub));
            }
        }
        rc::PULL_MESSAGE => {
            r.push((Resource::topic(field("topic")), Perm::Sub));
            r.push((group("consumerGroup"), Perm::Sub));
        }
        rc::QUERY_MESSAGE => r.push((Resource::topic(field("topic")), Perm::Sub)),
        rc::HEART_BEAT => {
            let hb = HeartbeatData::from_json(&req.body).map_err(|e| e.to_string())?;
            for consumer in hb.consumer_data_set {
                r.push((Resource::Group(Cow::Owned(consumer.group_name)), Perm::Sub));
                for sub in &consumer.subscription_data_set {
                    r.push((Resource::owned_topic(&sub.topic), Perm::Sub));
                }
            }
        }
        rc::UNREGISTER_CLIENT if !field("consumerGroup").is_empty() => {
            r.push((group("consumerGroup"), Perm::Sub))
        }
        rc::GET_CONSUMER_LIST_BY_GROUP => r.push((group("consumerGroup"), Perm::Sub)),
        rc::UPDATE_CONSUMER_OFFSET | rc::QUERY_CONSUMER_OFFSET => {
            r.push((group("consumerGroup"), Perm::Sub));
            r.push((Resource::topic(field("topic")), Perm::Sub));
        }
        rc::LOCK_BATCH_MQ | rc::UNLOCK_BATCH_MQ => {
            let body = LockBatchRequestBody::from_json(&req.body).map_err(|e| e.to_string())?;
            for mq in &body.mq_set {
                r.push((Resource::owned_topic(&mq.topic), Perm::Sub));
            }
            r.push((Resource::Group(Cow::Owned(body.consumer_group)), Perm::Sub));
        }
        _ => {}
    }
    r.sort();
    r.dedup();
    Ok(needs)
}

/// A send to `topic`: PUB on it, or SUB on the group whose retry topic it is (a consumer
/// sending a message back through its producer).
fn publish(topic: &str) -> (Resource<'_>, Perm) {
    match Resource::topic(topic) {
        g @ Resource::Group(_) => (g, Perm::Sub),
        t => (t, Perm::Pub),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocketraft_protocol::ExtFields;

    fn req(code: i32, fields: &[(&str, &str)], body: &str) -> RemotingCommand {
        let mut cmd = RemotingCommand::request_without_header(code);
        let mut f = ExtFields::new();
        for (k, v) in fields {
            f.insert(k, v);
        }
        cmd.ext_fields = Some(f);
        cmd.with_body(body.as_bytes().to_vec())
    }

    /// What `cmd` needs, owned (the request is a temporary in these tests).
    fn needs(cmd: &RemotingCommand) -> Needs<'static> {
        let n = broker_needs(cmd).unwrap();
        let resources = n.resources.into_iter().map(|(r, p)| (r.into_owned(), p)).collect();
        Needs { admin: n.admin, resources }
    }

    fn topic(t: &str) -> Resource<'_> {
        Resource::Topic(t.into())
    }
    fn group(g: &str) -> Resource<'_> {
        Resource::Group(g.into())
    }

    #[test]
    fn sends_pulls_and_offsets_need_what_rocketmq_checks() {
        let n = needs(&req(rc::SEND_MESSAGE_V2, &[("a", "PG"), ("b", "T1")], ""));
        assert_eq!(n, Needs { admin: false, resources: vec![(topic("T1"), Perm::Pub)] });
        let n = needs(&req(rc::SEND_MESSAGE, &[("topic", "%RETRY%G1")], ""));
        assert_eq!(n.resources, vec![(group("G1"), Perm::Sub)], "a retry topic is its group");
        let n = needs(&req(rc::PULL_MESSAGE, &[("topic", "T1"), ("consumerGroup", "G1")], ""));
        assert_eq!(n.resources, vec![(topic("T1"), Perm::Sub), (group("G1"), Perm::Sub)]);
        let n =
            needs(&req(rc::CONSUMER_SEND_MSG_BACK, &[("group", "G1"), ("originTopic", "T9")], ""));
        assert_eq!(n.resources, vec![(topic("T9"), Perm::Sub), (group("G1"), Perm::Sub)]);
        let n = needs(&req(
            rc::UPDATE_CONSUMER_OFFSET,
            &[("consumerGroup", "G1"), ("topic", "T1")],
            "",
        ));
        assert_eq!(n.resources, vec![(topic("T1"), Perm::Sub), (group("G1"), Perm::Sub)]);
    }

    #[test]
    fn heartbeats_and_locks_need_their_groups_and_topics() {
        let hb = r#"{"clientID":"c","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"G1","messageModel":"CLUSTERING","subscriptionDataSet":[{"topic":"T1","subString":"*"},{"topic":"%RETRY%G1","subString":"*"}],"unitMode":false}],"producerDataSet":[{"groupName":"PG"}]}"#;
        let n = needs(&req(rc::HEART_BEAT, &[], hb));
        assert_eq!(n.resources, vec![(topic("T1"), Perm::Sub), (group("G1"), Perm::Sub)]);
        let lock = r#"{"clientId":"c","consumerGroup":"G1","mqSet":[{"brokerName":"b","queueId":0,"topic":"T2"}]}"#;
        let n = needs(&req(rc::LOCK_BATCH_MQ, &[], lock));
        assert_eq!(n.resources, vec![(topic("T2"), Perm::Sub), (group("G1"), Perm::Sub)]);
        assert!(broker_needs(&req(rc::HEART_BEAT, &[], "{not json")).is_err());
    }

    #[test]
    fn metadata_changes_need_an_admin() {
        for code in [
            rc::UPDATE_AND_CREATE_TOPIC,
            rc::DELETE_SUBSCRIPTIONGROUP,
            rc::VIEW_MESSAGE_BY_ID,
            rc::GET_UNRESOLVED_HALVES,
            rc::RAFT_TRANSFER_LEADER,
            rc::RAFT_ADD_REPLICA,
            rc::RAFT_REMOVE_REPLICA,
        ] {
            assert!(needs(&req(code, &[], "")).admin);
        }
        assert!(!needs(&req(rc::GET_BROKER_RUNTIME_INFO, &[], "")).admin);
    }

    #[test]
    fn perms_grant_what_they_name() {
        assert!(Perm::PubSub.grants(Perm::Pub) && Perm::PubSub.grants(Perm::Sub));
        assert!(Perm::Pub.grants(Perm::Pub) && !Perm::Pub.grants(Perm::Sub));
        assert!(!Perm::Deny.grants(Perm::Sub) && !Perm::Sub.grants(Perm::Pub));
        assert_eq!(Perm::parse("SUB|PUB"), Some(Perm::PubSub));
        assert_eq!(Perm::parse("ALL"), None);
    }
}
