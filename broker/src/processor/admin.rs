//! Topic and subscription-group administration, replicated through Raft: create, delete,
//! list (with the data version they were read at).

use rocketraft_protocol::body::{
    JsonBody, JsonStyle, SubscriptionGroupConfig, SubscriptionGroupWrapper,
    TopicConfigSerializeWrapper,
};
use rocketraft_protocol::headers::*;
use rocketraft_protocol::{response_code, RemotingCommand};
use rocketraft_raft::types::{GroupMeta, TopicMeta};
use rocketraft_raft::{MetaCommand, MetaStore};
use rocketraft_store::io::Storage;

use crate::register::topic_config;
use crate::server::Inner;

use super::send::check_queue_room;
use super::*;

/// Topic and subscription-group administration.
pub(crate) struct AdminProcessor<S: Storage + Clone, M: MetaStore>(pub(crate) Arc<Inner<S, M>>);

impl<S: Storage + Clone, M: MetaStore> AdminProcessor<S, M> {
    pub(crate) const CODES: &'static [i32] = &[
        rc::UPDATE_AND_CREATE_TOPIC,
        rc::DELETE_TOPIC_IN_BROKER,
        rc::GET_ALL_TOPIC_CONFIG,
        rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
        rc::GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
        rc::DELETE_SUBSCRIPTIONGROUP,
    ];
}

impl<S: Storage + Clone, M: MetaStore> Processor for AdminProcessor<S, M> {
    fn process(&self, req: RemotingCommand, _peer: Peer) -> Answer<'_> {
        Box::pin(async move {
            let (req, inner) = (&req, &*self.0);
            match req.code {
                rc::UPDATE_AND_CREATE_TOPIC => create_topic(req, inner).await,
                rc::DELETE_TOPIC_IN_BROKER => delete_topic(req, inner).await,
                rc::GET_ALL_TOPIC_CONFIG => all_topic_configs(req, inner),
                rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => create_group(req, inner).await,
                rc::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => all_group_configs(req, inner),
                rc::DELETE_SUBSCRIPTIONGROUP => delete_group(req, inner).await,
                _ => Err(unsupported(req)),
            }
            .unwrap_or_else(|e| e)
        })
    }
}

pub(crate) async fn create_topic<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: CreateTopicRequestHeader = header(req)?;
    check_names(req, Some(&h.topic), None)?;
    if !FILTER_TYPES.contains(&h.topic_filter_type.as_str()) {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            "topicFilterType must be SINGLE_TAG or MULTI_TAG",
        ));
    }
    if !(1..=1024).contains(&h.read_queue_nums) || !(1..=1024).contains(&h.write_queue_nums) {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            "queue counts must be between 1 and 1024",
        ));
    }
    check_queue_room(req, inner, &h.topic, h.read_queue_nums.max(h.write_queue_nums))?;
    let meta = TopicMeta {
        name: h.topic,
        read_queue_nums: h.read_queue_nums,
        write_queue_nums: h.write_queue_nums,
        perm: h.perm,
        topic_sys_flag: h.topic_sys_flag.unwrap_or(0),
        order: h.order.unwrap_or(false),
        filter_type: h.topic_filter_type,
    };
    let done = propose_metadata(req, inner, vec![MetaCommand::PutTopic(meta)]).await?;
    // Publish the new topic's queues to the NameServers now, not in 30 s.
    inner.register_now.notify_one();
    Ok(done)
}

/// DELETE_TOPIC_IN_BROKER: the topic stops being routed and accepting sends on every replica.
/// Its stored messages stay readable by offset until retention removes their files.
pub(crate) async fn delete_topic<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: TopicRequestHeader = header(req)?;
    check_names(req, Some(&h.topic), None)?;
    let command = MetaCommand::DeleteTopic { topic: h.topic };
    let done = propose_metadata(req, inner, vec![command]).await?;
    inner.register_now.notify_one();
    Ok(done)
}

pub(crate) fn all_topic_configs<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let data_version = data_version(inner);
    let topics = inner.replica.metadata().topics().map_err(system_error(req))?;
    let body = TopicConfigSerializeWrapper {
        data_version,
        topic_config_table: topics.into_iter().map(|t| (t.name.clone(), topic_config(t))).collect(),
        ..Default::default()
    };
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_body(body.to_json(JsonStyle::Standard)))
}

/// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: the body is a `SubscriptionGroupConfig`.
pub(crate) async fn create_group<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let g = SubscriptionGroupConfig::from_json(&req.body).map_err(system_error(req))?;
    check_names(req, None, Some(&g.group_name))?;
    if g.retry_queue_nums < 0 || g.retry_max_times < 0 {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            "a subscription group needs a name and non-negative retry settings",
        ));
    }
    let exists = inner.replica.metadata().group(&g.group_name).map_err(system_error(req))?;
    let reserved =
        super::send::reserve_groups(inner, exists.is_none().then_some(g.group_name.as_str()));
    if exists.is_none() && reserved.names().is_empty() {
        return Err(limited(
            inner,
            req,
            response_code::SYSTEM_ERROR,
            format!(
                "subscription group [{}] not created: the group holds its groups_max of {} \
                 subscription groups; delete some or raise groups_max",
                g.group_name, inner.config.groups_max
            ),
        ));
    }
    let meta = GroupMeta {
        name: g.group_name,
        consume_enable: g.consume_enable,
        consume_broadcast_enable: g.consume_broadcast_enable,
        retry_queue_nums: g.retry_queue_nums,
        retry_max_times: g.retry_max_times,
    };
    let answer = propose_metadata(req, inner, vec![MetaCommand::PutGroup(meta)]).await;
    drop(reserved);
    answer
}

pub(crate) fn all_group_configs<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let data_version = data_version(inner);
    let groups = inner.replica.metadata().groups().map_err(system_error(req))?;
    let table = groups
        .into_iter()
        .map(|g| {
            let mut c = SubscriptionGroupConfig::new(g.name.clone());
            c.consume_enable = g.consume_enable;
            c.consume_broadcast_enable = g.consume_broadcast_enable;
            c.retry_queue_nums = g.retry_queue_nums;
            c.retry_max_times = g.retry_max_times;
            (g.name, c)
        })
        .collect();
    let body = SubscriptionGroupWrapper {
        data_version,
        subscription_group_table: table,
        ..Default::default()
    };
    Ok(RemotingCommand::response_to(req, response_code::SUCCESS, None)
        .with_body(body.to_json(JsonStyle::Standard)))
}

/// DELETE_SUBSCRIPTIONGROUP: the group's configuration and all its committed offsets go.
pub(crate) async fn delete_group<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: DeleteSubscriptionGroupRequestHeader = header(req)?;
    check_names(req, None, Some(&h.group_name))?;
    propose_metadata(req, inner, vec![MetaCommand::DeleteGroup { group: h.group_name }]).await
}

/// RocketMQ's topic filter types (`TopicFilterType`).
pub(crate) const FILTER_TYPES: [&str; 2] = ["SINGLE_TAG", "MULTI_TAG"];

#[cfg(all(test, not(madsim)))]
mod tests {
    use rocketraft_protocol::body::{
        JsonBody, SubscriptionGroupWrapper, TopicConfigSerializeWrapper,
    };

    use super::super::testing::{request, OneReplica};
    use super::*;

    #[tokio::test]
    async fn topics_and_groups_are_created_listed_and_deleted() {
        let r = OneReplica::start().await;
        let p = AdminProcessor(r.inner.clone());
        r.topic("T").await;
        let topics = |answer: RemotingCommand| {
            assert_eq!(answer.code, response_code::SUCCESS);
            TopicConfigSerializeWrapper::from_json(&answer.body).unwrap().topic_config_table
        };
        let list = || RemotingCommand::request_without_header(rc::GET_ALL_TOPIC_CONFIG);
        let table = topics(r.call(&p, list()).await);
        assert_eq!((table["T"].read_queue_nums, table["T"].write_queue_nums), (4, 4));

        let delete = request(rc::DELETE_TOPIC_IN_BROKER, TopicRequestHeader { topic: "T".into() });
        assert_eq!(r.call(&p, delete).await.code, response_code::SUCCESS);
        assert!(!topics(r.call(&p, list()).await).contains_key("T"));

        let group = SubscriptionGroupConfig::new("CG");
        let create =
            RemotingCommand::request_without_header(rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
                .with_body(group.to_json(rocketraft_protocol::body::JsonStyle::Standard));
        assert_eq!(r.call(&p, create).await.code, response_code::SUCCESS);
        let groups = |answer: RemotingCommand| {
            SubscriptionGroupWrapper::from_json(&answer.body).unwrap().subscription_group_table
        };
        let list = || RemotingCommand::request_without_header(rc::GET_ALL_SUBSCRIPTIONGROUP_CONFIG);
        assert!(groups(r.call(&p, list()).await).contains_key("CG"));
        let delete = request(
            rc::DELETE_SUBSCRIPTIONGROUP,
            DeleteSubscriptionGroupRequestHeader { group_name: "CG".into() },
        );
        assert_eq!(r.call(&p, delete).await.code, response_code::SUCCESS);
        assert!(!groups(r.call(&p, list()).await).contains_key("CG"));

        let bad = request(rc::DELETE_TOPIC_IN_BROKER, TopicRequestHeader { topic: "a/b".into() });
        assert_eq!(r.call(&p, bad).await.code, response_code::SYSTEM_ERROR);
        drop(p);
        r.stop().await;
    }

    /// Subscription groups stop at groups_max (an existing one may still change), and a
    /// deleted topic takes its consumer offsets with it, so topic churn leaves nothing behind.
    #[tokio::test]
    async fn groups_stop_at_groups_max_and_a_deleted_topic_takes_its_offsets() {
        use rocketraft_raft::types::ConsumerOffset;
        let r = OneReplica::start_with(|c| c.groups_max = 2).await;
        let p = AdminProcessor(r.inner.clone());
        r.topic("T").await;
        r.topic("U").await;
        r.group("G1").await;
        r.group("G2").await;
        let create = |g: &str| {
            RemotingCommand::request_without_header(rc::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
                .with_body(
                    SubscriptionGroupConfig::new(g)
                        .to_json(rocketraft_protocol::body::JsonStyle::Standard),
                )
        };
        let refused = r.call(&p, create("G3")).await;
        assert_eq!(refused.code, response_code::SYSTEM_ERROR);
        assert!(refused.remark.unwrap().contains("groups_max of 2"));
        assert_eq!(r.call(&p, create("G2")).await.code, response_code::SUCCESS, "a change");
        assert_eq!(r.inner.replica.metadata().groups().unwrap().len(), 2);

        for (group, topic, queue_id) in [("G1", "T", 0), ("G2", "T", 1), ("G1", "U", 0)] {
            let offset =
                ConsumerOffset { group: group.into(), topic: topic.into(), queue_id, offset: 0 };
            assert!(r.inner.replica.commit_offset_and_wait(offset).await);
        }
        let delete = request(rc::DELETE_TOPIC_IN_BROKER, TopicRequestHeader { topic: "T".into() });
        assert_eq!(r.call(&p, delete).await.code, response_code::SUCCESS);
        let metadata = r.inner.replica.metadata();
        assert_eq!(metadata.offset_topics("G1").unwrap(), ["U".to_owned()].into());
        assert!(metadata.offset_topics("G2").unwrap().is_empty());
        drop(p);
        r.stop().await;
    }
}
