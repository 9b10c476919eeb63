//! What `mqadmin` and the RocketMQ dashboard ask a broker about its clients and topics: the
//! broker's configuration, a topic's configuration, who is connected for a group, which groups
//! consume a topic, how far behind a group is in time, and the system topics. Read-only; each
//! answers from this replica's state (the master's is current; a follower's may lag, as a
//! RocketMQ slave's does).

use rocketraft_protocol::admin::{
    properties_text, ConsumerConnection, GroupList, ProducerConnection, QueryConsumeTimeSpanBody,
    QueueTimeSpan,
};
use rocketraft_protocol::body::{JsonBody, JsonStyle, MessageQueue, TopicConfig, TopicList};
use rocketraft_protocol::headers::*;
use rocketraft_protocol::names;
use rocketraft_protocol::{request_code as rc, response_code, RemotingCommand};
use rocketraft_raft::MetaStore;
use rocketraft_store::io::Storage;
use rocketraft_store::QueueOffset;

use crate::register::topic_config;
use crate::server::{group_now_ms, lock, Inner};

use super::*;

/// Read-only admin calls about configuration, clients and consumption.
pub(crate) struct InspectProcessor<S: Storage + Clone, M: MetaStore>(pub(crate) Arc<Inner<S, M>>);

impl<S: Storage + Clone, M: MetaStore> InspectProcessor<S, M> {
    pub(crate) const CODES: &'static [i32] = &[
        rc::GET_BROKER_CONFIG,
        rc::GET_TOPIC_CONFIG,
        rc::GET_CONSUMER_CONNECTION_LIST,
        rc::GET_PRODUCER_CONNECTION_LIST,
        rc::QUERY_TOPIC_CONSUME_BY_WHO,
        rc::QUERY_CONSUME_TIME_SPAN,
        rc::GET_SYSTEM_TOPIC_LIST_FROM_BROKER,
        rc::GET_CONSUMER_RUNNING_INFO,
    ];
}

impl<S: Storage + Clone, M: MetaStore> Processor for InspectProcessor<S, M> {
    fn process(&self, req: RemotingCommand, _peer: Peer) -> Answer<'_> {
        Box::pin(async move {
            let (req, inner) = (&req, &*self.0);
            match req.code {
                rc::GET_BROKER_CONFIG => Ok(broker_config(req, inner)),
                rc::GET_TOPIC_CONFIG => topic_config_of(req, inner),
                rc::GET_CONSUMER_CONNECTION_LIST => consumer_connections(req, inner),
                rc::GET_PRODUCER_CONNECTION_LIST => producer_connections(req, inner),
                rc::QUERY_TOPIC_CONSUME_BY_WHO => consumed_by(req, inner),
                rc::QUERY_CONSUME_TIME_SPAN => consume_time_span(req, inner),
                rc::GET_SYSTEM_TOPIC_LIST_FROM_BROKER => Ok(system_topics(req, inner)),
                rc::GET_CONSUMER_RUNNING_INFO => running_info(req, inner).await,
                _ => Err(unsupported(req)),
            }
            .unwrap_or_else(|e| e)
        })
    }
}

fn ok(req: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(req, response_code::SUCCESS, None)
}

/// GET_BROKER_CONFIG: the settings as sorted `key=value` lines; the `version` header is the
/// data version of this replica's metadata (RocketMQ's is its configuration's).
fn broker_config<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> RemotingCommand {
    let mut props = inner.config.properties();
    // Who this replica is now: RocketMQ's role names, so tools show master and slaves.
    let master = is_leader(inner);
    props.insert("brokerId".into(), if master { "0" } else { "1" }.into());
    props.insert("brokerRole".into(), if master { "SYNC_MASTER" } else { "SLAVE" }.into());
    let version =
        String::from_utf8(data_version(inner).to_json(JsonStyle::Standard)).unwrap_or_default();
    ok(req)
        .with_header(&GetBrokerConfigResponseHeader { version })
        .with_body(properties_text(&props).into_bytes())
}

/// GET_TOPIC_CONFIG (5.x): the topic's `TopicConfig`; no static-topic mapping exists here,
/// so `lo` adds nothing.
fn topic_config_of<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: GetTopicConfigRequestHeader = header(req)?;
    let Some(t) = inner.replica.metadata().topic(&h.topic).map_err(system_error(req))? else {
        return Err(reply(
            req,
            response_code::TOPIC_NOT_EXIST,
            format!("No topic in this broker. topic: {}", h.topic),
        ));
    };
    let config: TopicConfig = topic_config(t);
    Ok(ok(req).with_body(rocketraft_protocol::body::to_json(&config, JsonStyle::Standard)))
}

fn consumer_connections<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: GetConsumerConnectionListRequestHeader = header(req)?;
    let Some((connections, kind, subscriptions)) =
        lock(&inner.clients).consumer_connections_of(&h.consumer_group)
    else {
        return Err(reply(
            req,
            response_code::CONSUMER_NOT_ONLINE,
            format!("the consumer group[{}] not online", h.consumer_group),
        ));
    };
    let body = ConsumerConnection {
        connection_set: connections.into_iter().collect(),
        consume_from_where: Some(kind.consume_from_where),
        consume_type: Some(kind.consume_type),
        message_model: Some(kind.message_model),
        subscription_table: subscriptions,
    };
    Ok(ok(req).with_body(body.to_json(JsonStyle::Standard)))
}

fn producer_connections<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: GetProducerConnectionListRequestHeader = header(req)?;
    let Some(connections) = lock(&inner.clients).producer_connections_of(&h.producer_group) else {
        return Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            format!("the producer group[{}] not exist", h.producer_group),
        ));
    };
    let body = ProducerConnection { connection_set: connections.into_iter().collect() };
    Ok(ok(req).with_body(body.to_json(JsonStyle::Standard)))
}

/// QUERY_TOPIC_CONSUME_BY_WHO: the groups online with a subscription to the topic, and the
/// groups with a committed offset on it (online or not), as RocketMQ unites them.
fn consumed_by<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: TopicRequestHeader = header(req)?;
    let mut group_list = lock(&inner.clients).groups_consuming(&h.topic);
    group_list.extend(inner.replica.metadata().offset_groups(&h.topic).map_err(system_error(req))?);
    Ok(ok(req).with_body(GroupList { group_list }.to_json(JsonStyle::Standard)))
}

/// QUERY_CONSUME_TIME_SPAN: per queue of the topic, the store times of its first and last
/// messages and of the last one the group consumed, and how long ago the first message the
/// group has not consumed was stored.
fn consume_time_span<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: QueryConsumeTimeSpanRequestHeader = header(req)?;
    let Some(t) = inner.replica.metadata().topic(&h.topic).map_err(system_error(req))? else {
        return Err(reply(
            req,
            response_code::TOPIC_NOT_EXIST,
            format!("topic[{}] not exist", h.topic),
        ));
    };
    let replica = &inner.replica;
    let now = group_now_ms(inner);
    let mut spans = Vec::new();
    for queue_id in 0..t.write_queue_nums {
        let at = |offset: u64| replica.store_time_at(&h.topic, queue_id, QueueOffset(offset));
        let (min_offset, max_offset) =
            replica.queue_bounds(&h.topic, queue_id).map_or((0, 0), |(min, max)| (min.0, max.0));
        let min_time = replica
            .earliest_store_time(&h.topic, queue_id)
            .map_err(system_error(req))?
            .unwrap_or(0);
        let max_time = match max_offset.checked_sub(1) {
            Some(last) if last >= min_offset => at(last).map_err(system_error(req))?,
            _ => 0,
        };
        let consumed = replica
            .metadata()
            .consumer_offset(&h.group, &h.topic, queue_id)
            .map_err(system_error(req))?;
        let consume_time = match consumed.and_then(|c| c.checked_sub(1)) {
            Some(last) if last >= min_offset => at(last).map_err(system_error(req))?,
            _ => min_time,
        };
        let next = consumed.unwrap_or(min_offset).max(min_offset);
        let delay = if next < max_offset {
            let stored = at(next).map_err(system_error(req))?;
            if stored > 0 {
                (now - stored).max(0)
            } else {
                0
            }
        } else {
            0
        };
        let queue = MessageQueue {
            broker_name: inner.config.broker_name.clone(),
            queue_id,
            topic: h.topic.clone(),
        };
        spans.push(QueueTimeSpan::new(queue, min_time, max_time, consume_time, delay));
    }
    let body = QueryConsumeTimeSpanBody { consume_time_span_set: spans };
    Ok(ok(req).with_body(body.to_json(JsonStyle::Standard)))
}

/// How long the broker waits for a consumer's answer to a call it forwards (RocketMQ's 10 s).
pub(crate) const CONSUMER_CALL_TIMEOUT_MS: u64 = 10_000;

/// GET_CONSUMER_RUNNING_INFO: forwarded to the consumer (the same code, fields and body, on the
/// connection it registered on); the consumer's answer goes back as it is.
async fn running_info<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> Result<RemotingCommand, RemotingCommand> {
    let h: GetConsumerRunningInfoRequestHeader = header(req)?;
    let not_online = || {
        reply(
            req,
            response_code::SYSTEM_ERROR,
            format!("The Consumer <{}> <{}> not online", h.consumer_group, h.client_id),
        )
    };
    let Some(conn) = lock(&inner.clients).consumer_conn(&h.consumer_group, &h.client_id) else {
        return Err(not_online());
    };
    let mut forward = RemotingCommand::request_without_header(rc::GET_CONSUMER_RUNNING_INFO);
    forward.ext_fields = req.ext_fields.clone();
    forward.body = req.body.clone();
    match inner.connections.call(conn, forward, CONSUMER_CALL_TIMEOUT_MS).await {
        Ok(mut answer) => {
            answer.opaque = req.opaque;
            Ok(answer)
        }
        Err(rocketraft_remoting::ServerCallError::NotConnected) => Err(not_online()),
        Err(e @ rocketraft_remoting::ServerCallError::Timeout(_)) => Err(reply(
            req,
            response_code::CONSUME_MSG_TIMEOUT,
            format!("consumer <{}> <{}> Timeout: {e}", h.consumer_group, h.client_id),
        )),
        Err(e) => Err(reply(
            req,
            response_code::SYSTEM_ERROR,
            format!("invoke consumer <{}> <{}> Exception: {e}", h.consumer_group, h.client_id),
        )),
    }
}

/// GET_SYSTEM_TOPIC_LIST_FROM_BROKER: the topics the broker keeps for itself.
fn system_topics<S: Storage + Clone, M: MetaStore>(
    req: &RemotingCommand,
    inner: &Inner<S, M>,
) -> RemotingCommand {
    let topic_list = std::iter::once(names::AUTO_CREATE_TOPIC)
        .chain(names::SEND_FORBIDDEN_TOPICS)
        .map(str::to_owned)
        .chain(std::iter::once(names::reply_topic(&inner.config.cluster_name)))
        .collect();
    ok(req).with_body(TopicList { broker_addr: None, topic_list }.to_json(JsonStyle::Standard))
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use rocketraft_protocol::admin::parse_properties;
    use rocketraft_protocol::body::{
        ConsumeFromWhere, ConsumeType, ConsumerData, HeartbeatData, MessageModel, ProducerData,
        SubscriptionData,
    };

    use super::super::clients::ClientsProcessor;
    use super::super::offsets::OffsetsProcessor;
    use super::super::testing::{request, OneReplica};
    use super::*;

    fn heartbeat(client: &str) -> RemotingCommand {
        let data = HeartbeatData {
            client_id: client.into(),
            consumer_data_set: vec![ConsumerData {
                consume_from_where: ConsumeFromWhere::ConsumeFromFirstOffset,
                consume_type: ConsumeType::ConsumePassively,
                group_name: "CG".into(),
                message_model: MessageModel::Clustering,
                subscription_data_set: vec![SubscriptionData::tag("T", "*", 1)],
                unit_mode: false,
            }],
            producer_data_set: vec![ProducerData { group_name: "PG".into() }],
        };
        RemotingCommand::request_without_header(rc::HEART_BEAT)
            .with_body(data.to_json(JsonStyle::Standard))
    }

    fn body_text(answer: &RemotingCommand) -> String {
        assert_eq!(answer.code, response_code::SUCCESS, "{:?}", answer.remark);
        String::from_utf8(answer.body.to_vec()).unwrap()
    }

    /// Each answer parsed as the Java admin client reads it: the field names and shapes of
    /// RocketMQ's classes (fastjson writes fields alphabetically and omits nulls).
    #[tokio::test]
    async fn admin_calls_answer_in_the_shapes_rocketmqs_admin_client_reads() {
        let r = OneReplica::start().await;
        r.topic("T").await;
        for _ in 0..3 {
            r.send("T", "a", "k", "x").await;
        }
        let p = InspectProcessor(r.inner.clone());
        let clients = ClientsProcessor(r.inner.clone());

        let config =
            r.call(&p, RemotingCommand::request_without_header(rc::GET_BROKER_CONFIG)).await;
        let props = parse_properties(&body_text(&config));
        assert_eq!(props["brokerName"], r.inner.config.broker_name);
        assert_eq!(props["brokerRole"], "SYNC_MASTER");
        assert_eq!(props["maxMessageSize"], "4194304");
        let version: GetBrokerConfigResponseHeader = config.decode_header().unwrap();
        assert!(version.version.contains("\"counter\""), "{}", version.version);

        let topic = |name: &str| {
            request(
                rc::GET_TOPIC_CONFIG,
                GetTopicConfigRequestHeader { topic: name.into(), lo: Some(true) },
            )
        };
        let text = body_text(&r.call(&p, topic("T")).await);
        assert!(
            text.starts_with(r#"{"attributes":{},"order":false,"perm":6,"readQueueNums":"#),
            "{text}"
        );
        assert!(text.contains(r#""topicFilterType":"SINGLE_TAG","topicName":"T""#), "{text}");
        assert_eq!(r.call(&p, topic("Nope")).await.code, response_code::TOPIC_NOT_EXIST);

        let consumers = || {
            request(
                rc::GET_CONSUMER_CONNECTION_LIST,
                GetConsumerConnectionListRequestHeader { consumer_group: "CG".into() },
            )
        };
        let none = r.call(&p, consumers()).await;
        assert_eq!(none.code, response_code::CONSUMER_NOT_ONLINE);
        assert_eq!(none.remark.as_deref(), Some("the consumer group[CG] not online"));
        let producers = request(
            rc::GET_PRODUCER_CONNECTION_LIST,
            GetProducerConnectionListRequestHeader { producer_group: "PG".into() },
        );
        assert_eq!(r.call(&p, producers.clone()).await.code, response_code::SYSTEM_ERROR);

        assert_eq!(r.call(&clients, heartbeat("c1")).await.code, response_code::SUCCESS);
        let text = body_text(&r.call(&p, consumers()).await);
        assert!(text.contains(r#""clientId":"c1""#), "{text}");
        assert!(text.contains(r#""consumeType":"CONSUME_PASSIVELY""#), "{text}");
        assert!(text.contains(r#""messageModel":"CLUSTERING""#), "{text}");
        assert!(text.contains(r#""consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET""#), "{text}");
        assert!(text.contains(r#""subscriptionTable":{"T":{"classFilterMode":false"#), "{text}");
        let parsed = ConsumerConnection::from_json(text.as_bytes()).unwrap();
        assert_eq!(parsed.connection_set.len(), 1);
        let text = body_text(&r.call(&p, producers).await);
        assert!(text.starts_with(r#"{"connectionSet":[{"clientAddr":"#), "{text}");

        let who = request(rc::QUERY_TOPIC_CONSUME_BY_WHO, TopicRequestHeader { topic: "T".into() });
        assert_eq!(body_text(&r.call(&p, who.clone()).await), r#"{"groupList":["CG"]}"#);
        // A group with an offset on the topic counts even offline.
        let offsets = OffsetsProcessor(r.inner.clone());
        r.group("Offline").await;
        let commit = UpdateConsumerOffsetRequestHeader {
            consumer_group: "Offline".into(),
            topic: "T".into(),
            commit_offset: 2,
            ..Default::default()
        };
        assert_eq!(r.call(&offsets, request(rc::UPDATE_CONSUMER_OFFSET, commit)).await.code, 0);
        assert_eq!(body_text(&r.call(&p, who).await), r#"{"groupList":["CG","Offline"]}"#);

        let span = |group: &str| {
            request(
                rc::QUERY_CONSUME_TIME_SPAN,
                QueryConsumeTimeSpanRequestHeader { topic: "T".into(), group: group.into() },
            )
        };
        let body = QueryConsumeTimeSpanBody::from_json(
            body_text(&r.call(&p, span("Offline")).await).as_bytes(),
        )
        .unwrap();
        let spans = body.consume_time_span_set;
        assert_eq!(
            spans.len() as i32,
            r.inner.replica.metadata().topic("T").unwrap().unwrap().write_queue_nums
        );
        let q0 = &spans[0];
        assert!(q0.min_time_stamp > 0 && q0.min_time_stamp <= q0.max_time_stamp, "{q0:?}");
        assert!(q0.consume_time_stamp >= q0.min_time_stamp, "{q0:?}");
        assert!(q0.delay_time >= 0, "one message not consumed: {q0:?}");
        assert_eq!(spans[1].max_time_stamp, 0, "an empty queue has no times");
        let missing = span("G");
        let mut missing_topic = missing.clone();
        missing_topic.set_ext_field("topic", "Nope");
        assert_eq!(r.call(&p, missing_topic).await.code, response_code::TOPIC_NOT_EXIST);

        let system = r
            .call(
                &p,
                RemotingCommand::request_without_header(rc::GET_SYSTEM_TOPIC_LIST_FROM_BROKER),
            )
            .await;
        let list = TopicList::from_json(&system.body).unwrap();
        assert!(
            list.topic_list.contains("TBW102") && list.topic_list.contains("SCHEDULE_TOPIC_XXXX")
        );
        drop((p, clients, offsets));
        r.stop().await;
    }
}
