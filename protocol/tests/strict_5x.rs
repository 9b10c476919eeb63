//! Every JSON body RocketRaft writes, read back by a strict reader of RocketMQ 5.x's classes
//! (develop, 2025; field lists with their defaults from the Java sources): a property whose
//! 5.x default is not null (a primitive, an initialised collection or object) is required; a
//! property whose default is null may be absent (fastjson omits nulls). Clients written
//! against 5.x's model with strict deserializers reject a body missing a required property.
//!
//! The mirrors below name only what they check: unknown properties are allowed (5.x clients
//! ignore them), missing required ones fail.

use std::collections::BTreeMap;

use rocketraft_protocol::admin::*;
use rocketraft_protocol::body::*;
use serde::Deserialize;

/// Each mirror is `camelCase` with no `#[serde(default)]` on a required property.
mod strict {
    use super::*;

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct BrokerData {
        pub broker_addrs: Option<BTreeMap<String, String>>,
        pub broker_name: Option<String>,
        pub cluster: Option<String>,
        pub enable_acting_master: bool,
        pub zone_name: Option<String>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct QueueData {
        pub broker_name: Option<String>,
        pub perm: i32,
        pub read_queue_nums: i32,
        pub topic_sys_flag: i32,
        pub write_queue_nums: i32,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct TopicRouteData {
        pub broker_datas: Vec<BrokerData>,
        pub filter_server_table: BTreeMap<String, Vec<String>>,
        pub order_topic_conf: Option<String>,
        pub queue_datas: Vec<QueueData>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct ClusterInfo {
        pub broker_addr_table: Option<BTreeMap<String, BrokerData>>,
        pub cluster_addr_table: Option<BTreeMap<String, Vec<String>>>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct DataVersion {
        pub counter: i64,
        pub state_version: i64,
        pub timestamp: i64,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct TopicConfig {
        pub attributes: BTreeMap<String, String>,
        pub order: bool,
        pub perm: i32,
        pub read_queue_nums: i32,
        pub topic_filter_type: String,
        pub topic_name: Option<String>,
        pub topic_sys_flag: i32,
        pub write_queue_nums: i32,
    }

    /// `TopicConfigAndMappingSerializeWrapper`, what GET_ALL_TOPIC_CONFIG answers in 5.x.
    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct TopicConfigWrapper {
        pub data_version: DataVersion,
        pub mapping_data_version: DataVersion,
        pub topic_config_table: BTreeMap<String, TopicConfig>,
        pub topic_queue_mapping_detail_map: BTreeMap<String, serde_json::Value>,
        pub topic_queue_mapping_info_map: BTreeMap<String, serde_json::Value>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct GroupRetryPolicy {
        #[serde(rename = "type")]
        pub kind: String,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct SubscriptionGroupConfig {
        pub attributes: BTreeMap<String, String>,
        pub broker_id: i64,
        pub consume_broadcast_enable: bool,
        pub consume_enable: bool,
        pub consume_from_min_enable: bool,
        pub consume_message_orderly: bool,
        pub consume_timeout_minute: i32,
        pub group_name: Option<String>,
        pub group_retry_policy: GroupRetryPolicy,
        pub group_sys_flag: i32,
        pub notify_consumer_ids_changed_enable: bool,
        pub retry_max_times: i32,
        pub retry_queue_nums: i32,
        pub which_broker_when_consume_slowly: i64,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct SubscriptionGroupWrapper {
        pub data_version: DataVersion,
        pub forbidden_table: BTreeMap<String, BTreeMap<String, i32>>,
        pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct TopicOffset {
        pub last_update_timestamp: i64,
        pub max_offset: i64,
        pub min_offset: i64,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct TopicStatsTable {
        pub offset_table: BTreeMap<String, TopicOffset>,
        pub topic_put_tps: f64,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct OffsetWrapper {
        pub broker_offset: i64,
        pub consumer_offset: i64,
        pub last_timestamp: i64,
        pub pull_offset: i64,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct ConsumeStats {
        pub consume_tps: f64,
        pub offset_table: BTreeMap<String, OffsetWrapper>,
    }

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    pub struct KvTable {
        pub table: BTreeMap<String, String>,
    }

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    pub struct LockBatchResponseBody {
        #[serde(rename = "lockOKMQSet")]
        pub lock_ok_mq_set: Vec<MessageQueue>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct MessageQueue {
        pub broker_name: Option<String>,
        pub queue_id: i32,
        pub topic: Option<String>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct TopicList {
        pub broker_addr: Option<String>,
        pub topic_list: Vec<String>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct ConsumerListBody {
        pub consumer_id_list: Option<Vec<String>>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct Connection {
        pub client_addr: Option<String>,
        pub client_id: Option<String>,
        pub language: Option<String>,
        pub version: i32,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct SubscriptionData {
        pub class_filter_mode: bool,
        pub code_set: Vec<i32>,
        pub expression_type: Option<String>,
        pub sub_string: Option<String>,
        pub sub_version: i64,
        pub tags_set: Vec<String>,
        pub topic: Option<String>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct ConsumerConnection {
        pub connection_set: Vec<Connection>,
        pub consume_from_where: Option<String>,
        pub consume_type: Option<String>,
        pub message_model: Option<String>,
        pub subscription_table: BTreeMap<String, SubscriptionData>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct ProducerConnection {
        pub connection_set: Vec<Connection>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct GroupList {
        pub group_list: Vec<String>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct QueueTimeSpan {
        pub consume_time_stamp: i64,
        pub delay_time: i64,
        pub max_time_stamp: i64,
        pub message_queue: Option<MessageQueue>,
        pub min_time_stamp: i64,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct QueryConsumeTimeSpanBody {
        pub consume_time_span_set: Vec<QueueTimeSpan>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct ResetOffsetBody {
        pub offset_table: BTreeMap<String, i64>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct ProcessQueueInfo {
        pub cached_msg_count: i32,
        pub cached_msg_max_offset: i64,
        pub cached_msg_min_offset: i64,
        #[serde(rename = "cachedMsgSizeInMiB")]
        pub cached_msg_size_in_mib: i32,
        pub commit_offset: i64,
        pub droped: bool,
        pub last_consume_timestamp: i64,
        pub last_lock_timestamp: i64,
        pub last_pull_timestamp: i64,
        pub locked: bool,
        pub transaction_msg_count: i32,
        pub transaction_msg_max_offset: i64,
        pub transaction_msg_min_offset: i64,
        pub try_unlock_times: i64,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    pub struct ConsumerRunningInfo {
        pub jstack: Option<String>,
        pub mq_pop_table: BTreeMap<String, serde_json::Value>,
        pub mq_table: BTreeMap<String, ProcessQueueInfo>,
        pub properties: BTreeMap<String, String>,
        pub status_table: BTreeMap<String, serde_json::Value>,
        pub subscription_set: Vec<SubscriptionData>,
        pub user_consumer_info: BTreeMap<String, String>,
    }
}

/// Reads `bytes` as a strict 5.x reader would, after fastjson's non-standard keys (bare
/// integers, queue objects) are made strings.
fn strict<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &'static str) -> T {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let read = if text.contains("{{") {
        from_object_keyed_json::<T>(text.as_bytes(), what)
    } else {
        from_json::<T>(text.as_bytes(), what)
    };
    read.unwrap_or_else(|e| panic!("a strict 5.x reader refuses our {what}: {e}\n{text}"))
}

fn queue(id: i32) -> rocketraft_protocol::body::MessageQueue {
    rocketraft_protocol::body::MessageQueue {
        broker_name: "broker-a".into(),
        queue_id: id,
        topic: "T".into(),
    }
}

fn broker_data() -> rocketraft_protocol::body::BrokerData {
    rocketraft_protocol::body::BrokerData {
        broker_addrs: [(0, "10.0.0.1:10911".to_owned())].into(),
        broker_name: "broker-a".into(),
        cluster: "DefaultCluster".into(),
        ..Default::default()
    }
}

#[test]
fn routes_and_cluster_info_in_both_json_forms() {
    let route = rocketraft_protocol::body::TopicRouteData {
        broker_datas: vec![broker_data()],
        queue_datas: vec![rocketraft_protocol::body::QueueData {
            broker_name: "broker-a".into(),
            perm: 6,
            read_queue_nums: 4,
            topic_sys_flag: 0,
            write_queue_nums: 4,
        }],
        ..Default::default()
    };
    for style in [JsonStyle::Standard, JsonStyle::Fastjson] {
        let r: strict::TopicRouteData = strict(&route.to_json(style), "TopicRouteData");
        assert!(!r.broker_datas[0].enable_acting_master);
        let info = rocketraft_protocol::body::ClusterInfo {
            broker_addr_table: [("broker-a".to_owned(), broker_data())].into(),
            cluster_addr_table: [("DefaultCluster".to_owned(), ["broker-a".to_owned()].into())]
                .into(),
        };
        let _: strict::ClusterInfo = strict(&info.to_json(style), "ClusterInfo");
    }
}

#[test]
fn topic_and_group_tables_and_configs() {
    let wrapper = rocketraft_protocol::body::TopicConfigSerializeWrapper {
        data_version: rocketraft_protocol::body::DataVersion { counter: 3, ..Default::default() },
        topic_config_table: [("T".to_owned(), rocketraft_protocol::body::TopicConfig::new("T", 4))]
            .into(),
        ..Default::default()
    };
    let t: strict::TopicConfigWrapper = strict(&wrapper.to_json(JsonStyle::Standard), "topics");
    assert_eq!(t.topic_config_table["T"].topic_filter_type, "SINGLE_TAG");
    let single = rocketraft_protocol::body::to_json(
        &rocketraft_protocol::body::TopicConfig::new("T", 4),
        JsonStyle::Standard,
    );
    let _: strict::TopicConfig = strict(&single, "TopicConfig");

    let groups = rocketraft_protocol::body::SubscriptionGroupWrapper {
        subscription_group_table: [(
            "G".to_owned(),
            rocketraft_protocol::body::SubscriptionGroupConfig::new("G"),
        )]
        .into(),
        ..Default::default()
    };
    let g: strict::SubscriptionGroupWrapper =
        strict(&groups.to_json(JsonStyle::Standard), "SubscriptionGroupWrapper");
    let config = &g.subscription_group_table["G"];
    assert_eq!(config.group_retry_policy.kind, "CUSTOMIZED");
    assert_eq!((config.retry_max_times, config.consume_timeout_minute), (16, 15));
}

#[test]
fn stats_lists_and_tables() {
    let stats = TopicStatsTable {
        offset_table: [(queue(0), TopicOffset { min_offset: 1, ..Default::default() })].into(),
    };
    let _: strict::TopicStatsTable = strict(&stats.encode(), "TopicStatsTable");
    let consume = ConsumeStats {
        consume_tps: 1.5,
        offset_table: [(queue(0), OffsetWrapper { consumer_offset: 3, ..Default::default() })]
            .into(),
    };
    let _: strict::ConsumeStats = strict(&consume.encode(), "ConsumeStats");
    let kv = KvTable { table: [("k".to_owned(), "v".to_owned())].into() };
    let _: strict::KvTable = strict(&kv.to_json(JsonStyle::Standard), "KVTable");
    let locks = LockBatchResponseBody { lock_ok_mq_set: [queue(1)].into() };
    let _: strict::LockBatchResponseBody =
        strict(&locks.to_json(JsonStyle::Standard), "LockBatchResponseBody");
    let list = TopicList { broker_addr: None, topic_list: ["T".to_owned()].into() };
    let _: strict::TopicList = strict(&list.to_json(JsonStyle::Standard), "TopicList");
    let ids = ConsumerListBody { consumer_id_list: vec!["c1".into()] };
    let _: strict::ConsumerListBody = strict(&ids.to_json(JsonStyle::Standard), "consumer ids");
    let version = rocketraft_protocol::body::DataVersion::default();
    let _: strict::DataVersion = strict(&version.to_json(JsonStyle::Standard), "DataVersion");
}

#[test]
fn admin_call_bodies() {
    let conn = Connection {
        client_addr: "10.0.0.5:5000".into(),
        client_id: "c1".into(),
        language: "JAVA".into(),
        version: 413,
    };
    let consumers = ConsumerConnection {
        connection_set: [conn.clone()].into(),
        consume_from_where: Some(ConsumeFromWhere::ConsumeFromLastOffset),
        consume_type: Some(ConsumeType::ConsumePassively),
        message_model: Some(MessageModel::Clustering),
        subscription_table: [("T".to_owned(), SubscriptionData::tag("T", "*", 1))].into(),
    };
    let _: strict::ConsumerConnection =
        strict(&consumers.to_json(JsonStyle::Standard), "ConsumerConnection");
    let producers = ProducerConnection { connection_set: [conn].into() };
    let _: strict::ProducerConnection =
        strict(&producers.to_json(JsonStyle::Standard), "ProducerConnection");
    let groups = GroupList { group_list: ["G".to_owned()].into() };
    let _: strict::GroupList = strict(&groups.to_json(JsonStyle::Standard), "GroupList");
    let spans = QueryConsumeTimeSpanBody {
        consume_time_span_set: vec![QueueTimeSpan::new(queue(0), 1, 2, 1, 0)],
    };
    let _: strict::QueryConsumeTimeSpanBody =
        strict(&spans.to_json(JsonStyle::Standard), "QueryConsumeTimeSpanBody");
    let reset = ResetOffsetBody { offset_table: [(queue(0), 5)].into() };
    let _: strict::ResetOffsetBody = strict(&reset.encode(), "ResetOffsetBody");
    let info = ConsumerRunningInfo {
        properties: [("PROP_CONSUME_TYPE".to_owned(), "CONSUME_PASSIVELY".to_owned())].into(),
        subscription_set: vec![SubscriptionData::tag("T", "*", 1)],
        mq_table: [(queue(0), ProcessQueueInfo::default())].into(),
        status_table: [("T".to_owned(), ConsumeStatus::default())].into(),
    };
    let _: strict::ConsumerRunningInfo = strict(&info.encode(), "ConsumerRunningInfo");
}

/// The reader is strict: a 4.x route (no `enableActingMaster`) and a 4.x DataVersion (no
/// `stateVersion`) are refused by it, so the tests above can fail.
#[test]
fn the_strict_reader_refuses_what_5x_requires_and_4x_omits() {
    let old = br#"{"brokerDatas":[{"brokerAddrs":{"0":"a:1"},"brokerName":"b","cluster":"c"}],"filterServerTable":{},"queueDatas":[]}"#;
    assert!(from_object_keyed_json::<strict::TopicRouteData>(old, "route").is_err());
    let old = br#"{"counter":1,"timestamp":2}"#;
    assert!(from_object_keyed_json::<strict::DataVersion>(old, "DataVersion").is_err());
}
