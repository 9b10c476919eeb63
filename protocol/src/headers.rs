//! The typed custom headers of the requests and responses RocketRaft serves and sends
//! (reference §2.1-§2.2; Java class names kept so they can be looked up). Field order is the
//! order keys are written.

use crate::command_header;

command_header! {
    /// SEND_MESSAGE (10) request. `bname` is the 4.9.x `RpcRequestHeader` base field.
    pub struct SendMessageRequestHeader {
        pub producer_group: String => "producerGroup",
        pub topic: String => "topic",
        pub default_topic: String => "defaultTopic",
        pub default_topic_queue_nums: i32 => "defaultTopicQueueNums",
        pub queue_id: i32 => "queueId",
        pub sys_flag: i32 => "sysFlag",
        pub born_timestamp: i64 => "bornTimestamp",
        pub flag: i32 => "flag",
        pub properties: Option<String> => "properties",
        pub reconsume_times: Option<i32> => "reconsumeTimes",
        pub unit_mode: Option<bool> => "unitMode",
        pub batch: Option<bool> => "batch",
        pub max_reconsume_times: Option<i32> => "maxReconsumeTimes",
        pub broker_name: Option<String> => "bname",
    }
}

command_header! {
    /// SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320) request: the V1 fields under
    /// one-letter keys (reference §2.2).
    pub struct SendMessageRequestHeaderV2 {
        pub a: String => "a",
        pub b: String => "b",
        pub c: String => "c",
        pub d: i32 => "d",
        pub e: i32 => "e",
        pub f: i32 => "f",
        pub g: i64 => "g",
        pub h: i32 => "h",
        pub i: Option<String> => "i",
        pub j: Option<i32> => "j",
        pub k: Option<bool> => "k",
        pub l: Option<i32> => "l",
        pub m: Option<bool> => "m",
        pub n: Option<String> => "n",
        pub broker_name: Option<String> => "bname",
    }
}

impl From<SendMessageRequestHeaderV2> for SendMessageRequestHeader {
    fn from(v2: SendMessageRequestHeaderV2) -> Self {
        SendMessageRequestHeader {
            producer_group: v2.a,
            topic: v2.b,
            default_topic: v2.c,
            default_topic_queue_nums: v2.d,
            queue_id: v2.e,
            sys_flag: v2.f,
            born_timestamp: v2.g,
            flag: v2.h,
            properties: v2.i,
            reconsume_times: v2.j,
            unit_mode: v2.k,
            batch: v2.m,
            max_reconsume_times: v2.l,
            // `n` is the 4.9 V2 name of the broker; `bname` the base field. Either will do.
            broker_name: v2.broker_name.or(v2.n),
        }
    }
}

impl From<SendMessageRequestHeader> for SendMessageRequestHeaderV2 {
    fn from(v1: SendMessageRequestHeader) -> Self {
        SendMessageRequestHeaderV2 {
            a: v1.producer_group,
            b: v1.topic,
            c: v1.default_topic,
            d: v1.default_topic_queue_nums,
            e: v1.queue_id,
            f: v1.sys_flag,
            g: v1.born_timestamp,
            h: v1.flag,
            i: v1.properties,
            j: v1.reconsume_times,
            k: v1.unit_mode,
            l: v1.max_reconsume_times,
            m: v1.batch,
            n: v1.broker_name.clone(),
            broker_name: v1.broker_name,
        }
    }
}

command_header! {
    /// Response to SEND_MESSAGE(_V2) and SEND_BATCH_MESSAGE. Java clients read `MSG_REGION`
    /// and `TRACE_ON` from every send response (reference §1.5): always set them.
    pub struct SendMessageResponseHeader {
        pub msg_id: String => "msgId",
        pub queue_id: i32 => "queueId",
        pub queue_offset: i64 => "queueOffset",
        pub transaction_id: Option<String> => "transactionId",
        pub msg_region: Option<String> => "MSG_REGION",
        pub trace_on: Option<bool> => "TRACE_ON",
    }
}

command_header! {
    /// PULL_MESSAGE (11) request; `sys_flag` bits are in [`crate::sysflag::pull`].
    pub struct PullMessageRequestHeader {
        pub consumer_group: String => "consumerGroup",
        pub topic: String => "topic",
        pub queue_id: i32 => "queueId",
        pub queue_offset: i64 => "queueOffset",
        pub max_msg_nums: i32 => "maxMsgNums",
        pub sys_flag: i32 => "sysFlag",
        pub commit_offset: i64 => "commitOffset",
        pub suspend_timeout_millis: i64 => "suspendTimeoutMillis",
        pub subscription: Option<String> => "subscription",
        pub sub_version: i64 => "subVersion",
        pub expression_type: Option<String> => "expressionType",
        pub broker_name: Option<String> => "bname",
    }
}

command_header! {
    /// PULL_MESSAGE response; the body is the raw records back to back.
    pub struct PullMessageResponseHeader {
        pub suggest_which_broker_id: i64 => "suggestWhichBrokerId",
        pub next_begin_offset: i64 => "nextBeginOffset",
        pub min_offset: i64 => "minOffset",
        pub max_offset: i64 => "maxOffset",
    }
}

command_header! {
    /// QUERY_CONSUMER_OFFSET (14) request. `setZeroIfNotFound` (5.x; absent means true): false
    /// asks for QUERY_NOT_FOUND rather than 0 when the group has no offset, so the consumer's
    /// own starting point (CONSUME_FROM_*) applies even to a queue that still starts at 0.
    pub struct QueryConsumerOffsetRequestHeader {
        pub consumer_group: String => "consumerGroup",
        pub topic: String => "topic",
        pub queue_id: i32 => "queueId",
        pub set_zero_if_not_found: Option<bool> => "setZeroIfNotFound",
        pub broker_name: Option<String> => "bname",
    }
}

command_header! {
    /// Response header carrying one `offset` (QUERY_CONSUMER_OFFSET, GET_MAX_OFFSET,
    /// GET_MIN_OFFSET, SEARCH_OFFSET_BY_TIMESTAMP).
    pub struct OffsetResponseHeader {
        pub offset: i64 => "offset",
    }
}

command_header! {
    /// UPDATE_CONSUMER_OFFSET (15) request (oneway from Java clients).
    pub struct UpdateConsumerOffsetRequestHeader {
        pub consumer_group: String => "consumerGroup",
        pub topic: String => "topic",
        pub queue_id: i32 => "queueId",
        pub commit_offset: i64 => "commitOffset",
        pub broker_name: Option<String> => "bname",
    }
}

command_header! {
    /// GET_CONSUMER_LIST_BY_GROUP (38) request.
    pub struct GetConsumerListByGroupRequestHeader {
        pub consumer_group: String => "consumerGroup",
        pub broker_name: Option<String> => "bname",
    }
}

command_header! {
    /// UNREGISTER_CLIENT (35) request.
    pub struct UnregisterClientRequestHeader {
        pub client_id: String => "clientID",
        pub producer_group: Option<String> => "producerGroup",
        pub consumer_group: Option<String> => "consumerGroup",
    }
}

command_header! {
    /// GET_ROUTEINFO_BY_TOPIC (105) request.
    pub struct GetRouteInfoRequestHeader {
        pub topic: String => "topic",
        pub accept_standard_json_only: Option<bool> => "acceptStandardJsonOnly",
    }
}

command_header! {
    /// REGISTER_BROKER (103) request; `body_crc32` is CRC32 & 0x7FFFFFFF of the body, 0 for
    /// unchecked.
    pub struct RegisterBrokerRequestHeader {
        pub broker_name: String => "brokerName",
        pub broker_addr: String => "brokerAddr",
        pub cluster_name: String => "clusterName",
        pub ha_server_addr: String => "haServerAddr",
        pub broker_id: i64 => "brokerId",
        pub compressed: Option<bool> => "compressed",
        pub body_crc32: Option<i32> => "bodyCrc32",
        /// RocketRaft's own: the Raft term the replica registers in (a RocketMQ NameServer
        /// ignores it). Ours refuses a master registration that would replace a live master
        /// at another address unless its term is newer.
        pub raft_term: Option<i64> => "raftTerm",
        /// RocketRaft's own: the node id of the leader of that term (openraft orders leaders
        /// by (term, node id), and one term may see two in turn): a master registration at
        /// the live master's term replaces it if its leader id is the higher.
        pub raft_leader: Option<i64> => "raftLeader",
    }
}

command_header! {
    /// REGISTER_BROKER response: a slave learns its master's address.
    pub struct RegisterBrokerResponseHeader {
        pub ha_server_addr: Option<String> => "haServerAddr",
        pub master_addr: Option<String> => "masterAddr",
    }
}

command_header! {
    /// UNREGISTER_BROKER (104) request.
    pub struct UnregisterBrokerRequestHeader {
        pub broker_name: String => "brokerName",
        pub broker_addr: String => "brokerAddr",
        pub cluster_name: String => "clusterName",
        pub broker_id: i64 => "brokerId",
    }
}

command_header! {
    /// QUERY_DATA_VERSION (322) request; the body is the broker's DataVersion JSON.
    pub struct QueryDataVersionRequestHeader {
        pub broker_name: String => "brokerName",
        pub broker_addr: String => "brokerAddr",
        pub cluster_name: String => "clusterName",
        pub broker_id: i64 => "brokerId",
    }
}

command_header! {
    /// QUERY_DATA_VERSION response.
    pub struct QueryDataVersionResponseHeader {
        pub changed: bool => "changed",
    }
}

command_header! {
    /// UPDATE_AND_CREATE_TOPIC (17) request.
    pub struct CreateTopicRequestHeader {
        pub topic: String => "topic",
        pub default_topic: String => "defaultTopic",
        pub read_queue_nums: i32 => "readQueueNums",
        pub write_queue_nums: i32 => "writeQueueNums",
        pub perm: i32 => "perm",
        pub topic_filter_type: String => "topicFilterType",
        pub topic_sys_flag: Option<i32> => "topicSysFlag",
        pub order: Option<bool> => "order",
    }
}

command_header! {
    /// GET_MAX_OFFSET (30), GET_MIN_OFFSET (31) and GET_EARLIEST_MSG_STORETIME (32) request.
    pub struct TopicQueueRequestHeader {
        pub topic: String => "topic",
        pub queue_id: i32 => "queueId",
        pub broker_name: Option<String> => "bname",
    }
}

command_header! {
    /// GET_EARLIEST_MSG_STORETIME response.
    pub struct GetEarliestMsgStoretimeResponseHeader {
        pub timestamp: i64 => "timestamp",
    }
}

command_header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP (29) request.
    pub struct SearchOffsetRequestHeader {
        pub topic: String => "topic",
        pub queue_id: i32 => "queueId",
        pub timestamp: i64 => "timestamp",
        pub broker_name: Option<String> => "bname",
    }
}

command_header! {
    /// QUERY_MESSAGE (12) request; an extra extField `_UNIQUE_KEY_QUERY=true` asks for a
    /// UNIQ_KEY lookup (see [`UNIQUE_KEY_QUERY`]).
    pub struct QueryMessageRequestHeader {
        pub topic: String => "topic",
        pub key: String => "key",
        pub max_num: i32 => "maxNum",
        pub begin_timestamp: i64 => "beginTimestamp",
        pub end_timestamp: i64 => "endTimestamp",
    }
}

/// The extField that marks a QUERY_MESSAGE as a lookup by UNIQ_KEY.
pub const UNIQUE_KEY_QUERY: &str = "_UNIQUE_KEY_QUERY";

command_header! {
    /// QUERY_MESSAGE response.
    pub struct QueryMessageResponseHeader {
        pub index_last_update_timestamp: i64 => "indexLastUpdateTimestamp",
        pub index_last_update_phyoffset: i64 => "indexLastUpdatePhyoffset",
    }
}

command_header! {
    /// VIEW_MESSAGE_BY_ID (33) request: the CommitLog offset decoded from an offset msgId.
    pub struct ViewMessageRequestHeader {
        pub offset: i64 => "offset",
    }
}

command_header! {
    /// END_TRANSACTION (37) request; `commit_or_rollback` is 0 (unknown), 8 (commit) or
    /// 12 (rollback), see [`crate::sysflag::message`].
    pub struct EndTransactionRequestHeader {
        pub producer_group: String => "producerGroup",
        pub tran_state_table_offset: i64 => "tranStateTableOffset",
        pub commit_log_offset: i64 => "commitLogOffset",
        pub commit_or_rollback: i32 => "commitOrRollback",
        pub from_transaction_check: Option<bool> => "fromTransactionCheck",
        pub msg_id: String => "msgId",
        pub transaction_id: Option<String> => "transactionId",
    }
}

command_header! {
    /// GET_UNRESOLVED_HALVES (RocketRaft's own): the half messages no END_TRANSACTION has
    /// resolved yet, of one real topic or producer group (either filter optional), at most
    /// `max` of them (default 1,000).
    pub struct UnresolvedHalvesRequestHeader {
        pub topic: Option<String> => "topic",
        pub producer_group: Option<String> => "producerGroup",
        pub max: Option<i32> => "max",
    }
}

command_header! {
    /// RAFT_TRANSFER_LEADER (RocketRaft's own), sent to the group's leader: hand leadership to
    /// Raft node `to` within `timeoutMillis` (default 3,000).
    pub struct TransferLeaderRequestHeader {
        pub to: i64 => "to",
        pub timeout_millis: Option<i64> => "timeoutMillis",
    }
}

command_header! {
    /// RAFT_ADD_REPLICA and RAFT_REMOVE_REPLICA (RocketRaft's own), sent to the group's leader:
    /// Raft node `node` (its Raft address `addr` to add it), within `timeoutMillis`.
    pub struct ChangeReplicaRequestHeader {
        pub node: i64 => "node",
        pub addr: Option<String> => "addr",
        pub timeout_millis: Option<i64> => "timeoutMillis",
    }
}

command_header! {
    /// The group's members after a membership change: Raft node ids, comma-separated.
    pub struct MembersResponseHeader {
        pub voters: String => "voters",
        pub learners: String => "learners",
    }
}

command_header! {
    /// RAFT_TRANSFER_LEADER response: who leads once it is done (the target, or rarely
    /// another voter whose election timer fired first), and in which term.
    pub struct TransferLeaderResponseHeader {
        pub leader: i64 => "leader",
        pub term: i64 => "term",
    }
}

command_header! {
    /// CHECK_TRANSACTION_STATE (39) request, broker to producer; the body is the half message.
    pub struct CheckTransactionStateRequestHeader {
        pub tran_state_table_offset: i64 => "tranStateTableOffset",
        pub commit_log_offset: i64 => "commitLogOffset",
        pub msg_id: Option<String> => "msgId",
        pub transaction_id: Option<String> => "transactionId",
        pub offset_msg_id: Option<String> => "offsetMsgId",
    }
}

command_header! {
    /// CONSUMER_SEND_MSG_BACK (36) request: `offset` is the failed message's CommitLog offset;
    /// `delay_level` 0 lets the broker choose, < 0 sends straight to the DLQ.
    pub struct ConsumerSendMsgBackRequestHeader {
        pub offset: i64 => "offset",
        pub group: String => "group",
        pub delay_level: i32 => "delayLevel",
        pub origin_msg_id: Option<String> => "originMsgId",
        pub origin_topic: Option<String> => "originTopic",
        pub unit_mode: Option<bool> => "unitMode",
        pub max_reconsume_times: Option<i32> => "maxReconsumeTimes",
        pub broker_name: Option<String> => "bname",
    }
}

command_header! {
    /// NOTIFY_CONSUMER_IDS_CHANGED (40), broker to consumer, oneway.
    pub struct NotifyConsumerIdsChangedRequestHeader {
        pub consumer_group: String => "consumerGroup",
    }
}

command_header! {
    /// DELETE_TOPIC_IN_BROKER (215), DELETE_TOPIC_IN_NAMESRV (216) and GET_TOPIC_STATS_INFO
    /// (202) request.
    pub struct TopicRequestHeader {
        pub topic: String => "topic",
    }
}

command_header! {
    /// GET_TOPICS_BY_CLUSTER (224) request.
    pub struct GetTopicsByClusterRequestHeader {
        pub cluster: String => "cluster",
    }
}

command_header! {
    /// PUT_KV_CONFIG (100) request.
    pub struct PutKvConfigRequestHeader {
        pub namespace: String => "namespace",
        pub key: String => "key",
        pub value: String => "value",
    }
}

command_header! {
    /// GET_KV_CONFIG (101) and DELETE_KV_CONFIG (102) request.
    pub struct KvConfigKeyRequestHeader {
        pub namespace: String => "namespace",
        pub key: String => "key",
    }
}

command_header! {
    /// GET_KV_CONFIG response.
    pub struct GetKvConfigResponseHeader {
        pub value: Option<String> => "value",
    }
}

command_header! {
    /// GET_KVLIST_BY_NAMESPACE (219) request.
    pub struct GetKvListByNamespaceRequestHeader {
        pub namespace: String => "namespace",
    }
}

command_header! {
    /// GET_CONSUME_STATS (208) request; without `topic`, every topic of the group.
    pub struct GetConsumeStatsRequestHeader {
        pub consumer_group: String => "consumerGroup",
        pub topic: Option<String> => "topic",
    }
}

command_header! {
    /// DELETE_SUBSCRIPTIONGROUP (207) request.
    pub struct DeleteSubscriptionGroupRequestHeader {
        pub group_name: String => "groupName",
    }
}

command_header! {
    /// GET_CONSUMER_CONNECTION_LIST (203) and GET_CONSUMER_RUNNING_INFO's group request.
    pub struct GetConsumerConnectionListRequestHeader {
        pub consumer_group: String => "consumerGroup",
    }
}

command_header! {
    /// GET_CONSUMER_RUNNING_INFO (307): from an admin tool to a broker, and forwarded as it is
    /// from the broker to the consumer.
    pub struct GetConsumerRunningInfoRequestHeader {
        pub consumer_group: String => "consumerGroup",
        pub client_id: String => "clientId",
        pub jstack_enable: Option<bool> => "jstackEnable",
    }
}

command_header! {
    /// GET_PRODUCER_CONNECTION_LIST (204) request.
    pub struct GetProducerConnectionListRequestHeader {
        pub producer_group: String => "producerGroup",
    }
}

command_header! {
    /// GET_BROKER_CONFIG (26) response: the configuration's data version as JSON.
    pub struct GetBrokerConfigResponseHeader {
        pub version: String => "version",
    }
}

command_header! {
    /// GET_TOPIC_CONFIG (351) request; `lo` asks for static-topic mappings (none here).
    pub struct GetTopicConfigRequestHeader {
        pub topic: String => "topic",
        pub lo: Option<bool> => "lo",
    }
}

command_header! {
    /// QUERY_CONSUME_TIME_SPAN (303) request.
    pub struct QueryConsumeTimeSpanRequestHeader {
        pub topic: String => "topic",
        pub group: String => "group",
    }
}

command_header! {
    /// INVOKE_BROKER_TO_RESET_OFFSET (222) request (`ResetOffsetRequestHeader`). `queueId` -1
    /// (or absent, as 4.x sends it) means every queue; `offset` (5.x; -1 or absent: none) is
    /// a queue's exact target; otherwise `timestamp` picks the first message stored at or
    /// after it, -1 the queue's end. `isForce` is read and, as in 5.x, not needed: the broker
    /// moves the offsets itself.
    pub struct ResetOffsetRequestHeader {
        pub topic: String => "topic",
        pub group: String => "group",
        pub queue_id: Option<i32> => "queueId",
        pub offset: Option<i64> => "offset",
        pub timestamp: i64 => "timestamp",
        pub is_force: Option<bool> => "isForce",
    }
}

command_header! {
    /// WIPE_WRITE_PERM_OF_BROKER (205) and ADD_WRITE_PERM_OF_BROKER (327) request.
    pub struct WritePermOfBrokerRequestHeader {
        pub broker_name: String => "brokerName",
    }
}

command_header! {
    /// WIPE_WRITE_PERM_OF_BROKER (205) response.
    pub struct WipeWritePermOfBrokerResponseHeader {
        pub wipe_topic_count: i32 => "wipeTopicCount",
    }
}

command_header! {
    /// ADD_WRITE_PERM_OF_BROKER (327) response.
    pub struct AddWritePermOfBrokerResponseHeader {
        pub add_topic_count: i32 => "addTopicCount",
    }
}

command_header! {
    /// PUSH_REPLY_MESSAGE_TO_CLIENT (326): a reply, from the broker to the producer that sent
    /// the request (`ReplyMessageRequestHeader`). The send's fields as the replier sent them,
    /// plus where and when the broker took the reply. Java clients require every field but
    /// `properties` and `reconsumeTimes`.
    pub struct ReplyMessageRequestHeader {
        pub producer_group: String => "producerGroup",
        pub topic: String => "topic",
        pub default_topic: String => "defaultTopic",
        pub default_topic_queue_nums: i32 => "defaultTopicQueueNums",
        pub queue_id: i32 => "queueId",
        pub sys_flag: i32 => "sysFlag",
        pub born_timestamp: i64 => "bornTimestamp",
        pub flag: i32 => "flag",
        pub properties: Option<String> => "properties",
        pub reconsume_times: Option<i32> => "reconsumeTimes",
        pub unit_mode: Option<bool> => "unitMode",
        /// The replier's address, `host:port` (RocketMQ's brokers write `/host:port`).
        pub born_host: String => "bornHost",
        pub store_host: String => "storeHost",
        pub store_timestamp: i64 => "storeTimestamp",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::SerializeType;
    use crate::frame::{decode_payload, encode_frame_to_vec};
    use crate::header::CommandHeader;
    use crate::RemotingCommand;
    use proptest::prelude::*;

    /// Header -> frame (JSON and ROCKETMQ) -> decoded command -> header is the identity.
    fn round_trips<H: CommandHeader + PartialEq + std::fmt::Debug>(h: &H) {
        for st in [SerializeType::Json, SerializeType::RocketMq] {
            let mut cmd = RemotingCommand::request(10, h).with_opaque(5);
            cmd.serialize_type = st;
            let frame = encode_frame_to_vec(&cmd).unwrap();
            let back = decode_payload(bytes::Bytes::from(frame[4..].to_vec())).unwrap();
            assert_eq!(back.serialize_type, st);
            assert_eq!(&back.decode_header::<H>().unwrap(), h);
        }
    }

    macro_rules! round_trip_tests {
        ($($test:ident: $ty:ty,)*) => {
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(64))]
                $(#[test] fn $test(h in any::<$ty>()) { round_trips(&h); })*
            }
        };
    }

    round_trip_tests! {
        send_v1: SendMessageRequestHeader,
        send_v2: SendMessageRequestHeaderV2,
        send_response: SendMessageResponseHeader,
        pull: PullMessageRequestHeader,
        pull_response: PullMessageResponseHeader,
        query_offset: QueryConsumerOffsetRequestHeader,
        offset_response: OffsetResponseHeader,
        update_offset: UpdateConsumerOffsetRequestHeader,
        consumer_list: GetConsumerListByGroupRequestHeader,
        unregister_client: UnregisterClientRequestHeader,
        route: GetRouteInfoRequestHeader,
        register_broker: RegisterBrokerRequestHeader,
        register_broker_response: RegisterBrokerResponseHeader,
        unregister_broker: UnregisterBrokerRequestHeader,
        data_version: QueryDataVersionRequestHeader,
        data_version_response: QueryDataVersionResponseHeader,
        create_topic: CreateTopicRequestHeader,
        topic_queue: TopicQueueRequestHeader,
        earliest_response: GetEarliestMsgStoretimeResponseHeader,
        search_offset: SearchOffsetRequestHeader,
        query_message: QueryMessageRequestHeader,
        query_message_response: QueryMessageResponseHeader,
        view_message: ViewMessageRequestHeader,
        end_transaction: EndTransactionRequestHeader,
        check_transaction: CheckTransactionStateRequestHeader,
        unresolved_halves: UnresolvedHalvesRequestHeader,
        transfer_leader: TransferLeaderRequestHeader,
        transfer_leader_response: TransferLeaderResponseHeader,
        change_replica: ChangeReplicaRequestHeader,
        members_response: MembersResponseHeader,
        send_back: ConsumerSendMsgBackRequestHeader,
        notify_ids: NotifyConsumerIdsChangedRequestHeader,
        topic_only: TopicRequestHeader,
        topics_by_cluster: GetTopicsByClusterRequestHeader,
        put_kv: PutKvConfigRequestHeader,
        kv_key: KvConfigKeyRequestHeader,
        kv_response: GetKvConfigResponseHeader,
        kv_list: GetKvListByNamespaceRequestHeader,
        consume_stats: GetConsumeStatsRequestHeader,
        delete_group: DeleteSubscriptionGroupRequestHeader,
        consumer_connections: GetConsumerConnectionListRequestHeader,
        producer_connections: GetProducerConnectionListRequestHeader,
        running_info: GetConsumerRunningInfoRequestHeader,
        broker_config_response: GetBrokerConfigResponseHeader,
        topic_config: GetTopicConfigRequestHeader,
        consume_time_span: QueryConsumeTimeSpanRequestHeader,
        reset_offset: ResetOffsetRequestHeader,
        write_perm: WritePermOfBrokerRequestHeader,
        wipe_write_perm_response: WipeWritePermOfBrokerResponseHeader,
        add_write_perm_response: AddWritePermOfBrokerResponseHeader,
    }

    proptest! {
        #[test]
        fn v1_and_v2_convert_both_ways(v1 in any::<SendMessageRequestHeader>()) {
            let v2 = SendMessageRequestHeaderV2::from(v1.clone());
            prop_assert_eq!(SendMessageRequestHeader::from(v2), v1);
        }
    }
}
