//! Byte-exact fixtures written from `shared/reference/rocketmq-protocol.md`: what Java
//! RocketMQ 4.9.x puts on the wire must be what we write, and what we read.

use rocketraft_protocol::body::*;
use rocketraft_protocol::code::{request_code, response_code, LanguageCode, SerializeType};
use rocketraft_protocol::frame::{encode_frame_to_vec, FrameDecoder};
use rocketraft_protocol::headers::*;
use rocketraft_protocol::RemotingCommand;

/// Frames `header` (JSON) with no body, as Java's `RemotingCommand.encode` does.
fn json_frame(header: &str) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&(4 + header.len() as u32).to_be_bytes());
    f.extend_from_slice(&(header.len() as u32).to_be_bytes());
    f.extend_from_slice(header.as_bytes());
    f
}

mod send_v2 {
    //! Reference §1.2: the SEND_MESSAGE_V2 request and its response.
    use super::*;

    pub const REQUEST: &str = r#"{"code":310,"extFields":{"a":"PG","b":"TopicTest","c":"TBW102","d":"4","e":"0","f":"0","g":"1491978653614","h":"0","i":"TAGS\u0001TagA\u0002WAIT\u0001true","j":"0","k":"false","m":"false","n":"broker-a","bname":"broker-a"},"flag":0,"language":"JAVA","opaque":3,"serializeTypeCurrentRPC":"JSON","version":409}"#;
    pub const RESPONSE: &str = r#"{"code":0,"extFields":{"msgId":"0A02DFA500002A9F0000000163E60ADB","queueId":"0","queueOffset":"37","MSG_REGION":"DefaultRegion","TRACE_ON":"true"},"flag":1,"language":"JAVA","opaque":3,"serializeTypeCurrentRPC":"JSON","version":409}"#;

    fn header() -> SendMessageRequestHeaderV2 {
        SendMessageRequestHeaderV2 {
            a: "PG".into(),
            b: "TopicTest".into(),
            c: "TBW102".into(),
            d: 4,
            e: 0,
            f: 0,
            g: 1_491_978_653_614,
            h: 0,
            i: Some("TAGS\u{1}TagA\u{2}WAIT\u{1}true".into()),
            j: Some(0),
            k: Some(false),
            l: None,
            m: Some(false),
            n: Some("broker-a".into()),
            broker_name: Some("broker-a".into()),
        }
    }

    #[test]
    fn request_is_written_byte_for_byte() {
        let mut cmd = RemotingCommand::request(request_code::SEND_MESSAGE_V2, &header());
        cmd.language = LanguageCode::Java;
        cmd.opaque = 3;
        assert_eq!(String::from_utf8(cmd.encode_json_header()).unwrap(), REQUEST);
        assert_eq!(encode_frame_to_vec(&cmd).unwrap(), json_frame(REQUEST));
    }

    #[test]
    fn request_is_read_into_both_header_forms() {
        let mut buf = bytes::BytesMut::from(&json_frame(REQUEST)[..]);
        let cmd = FrameDecoder::default().decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        assert_eq!((cmd.code, cmd.opaque, cmd.version), (310, 3, 409));
        assert!(!cmd.is_response() && !cmd.is_oneway());
        let v2: SendMessageRequestHeaderV2 = cmd.decode_header().unwrap();
        assert_eq!(v2, header());
        let v1 = SendMessageRequestHeader::from(v2);
        assert_eq!(v1.producer_group, "PG");
        assert_eq!(v1.default_topic_queue_nums, 4);
        assert_eq!(v1.born_timestamp, 1_491_978_653_614);
        assert_eq!(v1.broker_name.as_deref(), Some("broker-a"));
    }

    #[test]
    fn response_is_written_byte_for_byte() {
        let mut request = RemotingCommand::request(request_code::SEND_MESSAGE_V2, &header());
        request.opaque = 3;
        let mut resp = RemotingCommand::response_to(&request, response_code::SUCCESS, None)
            .with_header(&SendMessageResponseHeader {
                msg_id: "0A02DFA500002A9F0000000163E60ADB".into(),
                queue_id: 0,
                queue_offset: 37,
                transaction_id: None,
                msg_region: Some("DefaultRegion".into()),
                trace_on: Some(true),
            });
        resp.language = LanguageCode::Java;
        assert_eq!(String::from_utf8(resp.encode_json_header()).unwrap(), RESPONSE);
        let back = RemotingCommand::decode_json_header(RESPONSE.as_bytes()).unwrap();
        assert!(back.is_response());
        assert_eq!(back.decode_header::<SendMessageResponseHeader>().unwrap().queue_offset, 37);
    }

    #[test]
    fn oneway_flag_is_bit_one() {
        let cmd =
            RemotingCommand::request(request_code::UPDATE_CONSUMER_OFFSET, &header()).into_oneway();
        assert!(String::from_utf8(cmd.encode_json_header()).unwrap().contains(r#""flag":2"#));
    }
}

mod rocketmq_header {
    //! Reference §1.3: the ROCKETMQ binary header, assembled by hand from the table.
    use super::*;

    fn expected() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&105i16.to_be_bytes()); // code GET_ROUTEINFO_BY_TOPIC
        b.push(0); // language JAVA
        b.extend_from_slice(&409i16.to_be_bytes()); // version
        b.extend_from_slice(&3i32.to_be_bytes()); // opaque
        b.extend_from_slice(&0i32.to_be_bytes()); // flag
        b.extend_from_slice(&2i32.to_be_bytes()); // remark length
        b.extend_from_slice(b"hi");
        let mut ext = Vec::new();
        ext.extend_from_slice(&5i16.to_be_bytes());
        ext.extend_from_slice(b"topic");
        ext.extend_from_slice(&9i32.to_be_bytes());
        ext.extend_from_slice(b"TopicTest");
        b.extend_from_slice(&(ext.len() as i32).to_be_bytes());
        b.extend_from_slice(&ext);
        b
    }

    fn command() -> RemotingCommand {
        let mut cmd = RemotingCommand::request(
            request_code::GET_ROUTEINFO_BY_TOPIC,
            &GetRouteInfoRequestHeader {
                topic: "TopicTest".into(),
                accept_standard_json_only: None,
            },
        );
        cmd.language = LanguageCode::Java;
        cmd.opaque = 3;
        cmd.remark = Some("hi".into());
        cmd.serialize_type = SerializeType::RocketMq;
        cmd
    }

    #[test]
    fn written_byte_for_byte_and_read_back() {
        assert_eq!(command().encode_binary_header().unwrap(), expected());
        assert_eq!(RemotingCommand::decode_binary_header(&expected()).unwrap(), command());
    }

    #[test]
    fn frame_marks_the_serialization_in_the_high_byte() {
        let frame = encode_frame_to_vec(&command()).unwrap();
        let mark = u32::from_be_bytes(frame[4..8].try_into().unwrap());
        assert_eq!(mark >> 24, 1);
        assert_eq!((mark & 0xFF_FFFF) as usize, expected().len());
        assert_eq!(&frame[8..], &expected()[..]);
        let resp = RemotingCommand::response_to(&command(), 0, None);
        assert_eq!(resp.serialize_type, SerializeType::RocketMq, "a response uses its request's");
    }
}

mod route {
    //! Reference §2.5: TopicRouteData in the old-client (fastjson) and standard forms.
    use super::*;

    const OLD: &str = r#"{"brokerDatas":[{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"},"brokerName":"broker-a","cluster":"DefaultCluster"}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#;

    fn route() -> TopicRouteData {
        TopicRouteData {
            broker_datas: vec![BrokerData {
                broker_addrs: [(0, "10.0.0.1:10911".into()), (1, "10.0.0.2:10911".into())].into(),
                broker_name: "broker-a".into(),
                cluster: "DefaultCluster".into(),
                ..Default::default()
            }],
            filter_server_table: Default::default(),
            order_topic_conf: None,
            queue_datas: vec![QueueData {
                broker_name: "broker-a".into(),
                perm: 6,
                read_queue_nums: 4,
                topic_sys_flag: 0,
                write_queue_nums: 4,
            }],
        }
    }

    /// What we write: 4.x's route with 5.x's `enableActingMaster` (a strict 5.x reader
    /// requires it; 4.x readers ignore it).
    fn written() -> String {
        OLD.replace(
            r#""cluster":"DefaultCluster"}"#,
            r#""cluster":"DefaultCluster","enableActingMaster":false}"#,
        )
    }

    #[test]
    fn both_forms_written_byte_for_byte() {
        let standard = OLD.replace("{0:", r#"{"0":"#).replace(",1:", r#","1":"#);
        let written_standard = written().replace("{0:", r#"{"0":"#).replace(",1:", r#","1":"#);
        assert_eq!(String::from_utf8(route().to_json(JsonStyle::Fastjson)).unwrap(), written());
        assert_eq!(
            String::from_utf8(route().to_json(JsonStyle::Standard)).unwrap(),
            written_standard
        );
        assert_eq!(TopicRouteData::from_json(OLD.as_bytes()).unwrap(), route());
        assert_eq!(TopicRouteData::from_json(standard.as_bytes()).unwrap(), route());
        assert_eq!(route().broker_datas[0].master_addr(), Some("10.0.0.1:10911"));
    }

    #[test]
    fn legacy_topic_syn_flag_is_read() {
        let legacy = OLD.replace("topicSysFlag\":0", "topicSynFlag\":5");
        assert_eq!(
            TopicRouteData::from_json(legacy.as_bytes()).unwrap().queue_datas[0].topic_sys_flag,
            5
        );
    }

    #[test]
    fn cluster_info_uses_unquoted_keys() {
        let info = ClusterInfo {
            broker_addr_table: [("broker-a".to_owned(), route().broker_datas[0].clone())].into(),
            cluster_addr_table: [("DefaultCluster".to_owned(), ["broker-a".to_owned()].into())]
                .into(),
        };
        let text = String::from_utf8(info.to_json(JsonStyle::Fastjson)).unwrap();
        assert_eq!(
            text,
            r#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}},"clusterAddrTable":{"DefaultCluster":["broker-a"]}}"#
        );
        assert_eq!(ClusterInfo::from_json(text.as_bytes()).unwrap(), info);
    }
}

mod bodies {
    //! Reference §2.4 (HEART_BEAT) and §2.6 (REGISTER_BROKER) bodies.
    use super::*;

    const HEARTBEAT: &str = r#"{"clientID":"10.0.0.5@12345#8812","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY","groupName":"cg1","messageModel":"CLUSTERING","subscriptionDataSet":[{"classFilterMode":false,"codeSet":[2598919],"expressionType":"TAG","subString":"TagA","subVersion":1700000000000,"tagsSet":["TagA"],"topic":"T1"},{"classFilterMode":false,"codeSet":[],"expressionType":"TAG","subString":"*","subVersion":1700000000000,"tagsSet":[],"topic":"%RETRY%cg1"}],"unitMode":false}],"producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"}]}"#;

    #[test]
    fn heartbeat_reads_and_writes_back_identically() {
        let hb = HeartbeatData::from_json(HEARTBEAT.as_bytes()).unwrap();
        assert_eq!(hb.client_id, "10.0.0.5@12345#8812");
        let c = &hb.consumer_data_set[0];
        assert_eq!(c.message_model, MessageModel::Clustering);
        assert_eq!(c.consume_type, ConsumeType::ConsumePassively);
        assert_eq!(
            c.subscription_data_set[0],
            SubscriptionData::tag("T1", "TagA", 1_700_000_000_000)
        );
        assert_eq!(String::from_utf8(hb.to_json(JsonStyle::Standard)).unwrap(), HEARTBEAT);
    }

    #[test]
    fn heartbeat_tolerates_newer_enum_values_and_fields() {
        let newer = HEARTBEAT
            .replace("CONSUME_PASSIVELY", "CONSUME_POP")
            .replace(r#""unitMode":false"#, r#""unitMode":false,"heartbeatFingerprint":7"#);
        let hb = HeartbeatData::from_json(newer.as_bytes()).unwrap();
        assert_eq!(hb.consumer_data_set[0].consume_type, ConsumeType::Unknown);
    }

    const REGISTER: &str = r#"{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"counter":3,"timestamp":1700000000000},"topicConfigTable":{"T1":{"order":false,"perm":6,"readQueueNums":4,"topicFilterType":"SINGLE_TAG","topicName":"T1","topicSysFlag":0,"writeQueueNums":4}}}}"#;

    /// The same body as a 5.x broker writes it (`TopicConfigAndMappingSerializeWrapper`,
    /// `stateVersion`, topic `attributes`): what we write.
    const REGISTER_5X: &str = r#"{"filterServerList":[],"topicConfigSerializeWrapper":{"dataVersion":{"counter":3,"stateVersion":0,"timestamp":1700000000000},"mappingDataVersion":{"counter":0,"stateVersion":0,"timestamp":0},"topicConfigTable":{"T1":{"attributes":{},"order":false,"perm":6,"readQueueNums":4,"topicFilterType":"SINGLE_TAG","topicName":"T1","topicSysFlag":0,"writeQueueNums":4}},"topicQueueMappingDetailMap":{},"topicQueueMappingInfoMap":{}}}"#;

    #[test]
    fn register_broker_body_reads_both_forms_and_writes_the_5x_one() {
        let body = RegisterBrokerBody::from_json(REGISTER.as_bytes()).unwrap();
        let wrapper = &body.topic_config_serialize_wrapper;
        assert_eq!(
            wrapper.data_version,
            DataVersion { counter: 3, timestamp: 1_700_000_000_000, ..Default::default() }
        );
        assert_eq!(wrapper.topic_config_table["T1"], TopicConfig::new("T1", 4));
        assert_eq!(String::from_utf8(body.to_json(JsonStyle::Standard)).unwrap(), REGISTER_5X);
        assert_eq!(RegisterBrokerBody::from_json(REGISTER_5X.as_bytes()).unwrap(), body);
        // bodyCrc32 is CRC32 masked to 31 bits
        assert_eq!(
            RegisterBrokerBody::crc32(REGISTER.as_bytes()),
            (crc32fast::hash(REGISTER.as_bytes()) & 0x7FFF_FFFF) as i32
        );
    }

    #[test]
    fn lock_bodies_use_java_names() {
        let mq = MessageQueue { broker_name: "b".into(), queue_id: 2, topic: "t".into() };
        let resp = LockBatchResponseBody { lock_ok_mq_set: [mq].into() };
        assert_eq!(
            String::from_utf8(resp.to_json(JsonStyle::Standard)).unwrap(),
            r#"{"lockOKMQSet":[{"brokerName":"b","queueId":2,"topic":"t"}]}"#
        );
    }
}
