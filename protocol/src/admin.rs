//! Bodies of the admin calls `mqadmin` and the RocketMQ dashboard make (reference §2.4):
//! who is connected, who consumes a topic, how far behind a group is in time, offsets reset
//! by time, and configuration as Java properties text.
//!
//! Written as fastjson writes the 5.x classes: fields in alphabetical order, nulls omitted,
//! enums by name, maps keyed by a `MessageQueue` with the queue object as the key. Read back
//! leniently (absent fields take RocketMQ's defaults), so our own tools parse what a RocketMQ
//! broker answers too.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::body::{
    from_object_keyed_json, read_queue_keyed, write_queue_keyed, ConsumeFromWhere, ConsumeType,
    JsonBody, MessageModel, MessageQueue, SubscriptionData,
};
use crate::error::Result;

/// One client connection (`Connection`): in consumer and producer connection lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// `ip:port` of the client's end of the connection.
    #[serde(default)]
    pub client_addr: String,
    #[serde(default)]
    pub client_id: String,
    /// `LanguageCode` by name (`JAVA`, `RUST`...).
    #[serde(default)]
    pub language: String,
    /// The client's `MQVersion` ordinal.
    #[serde(default)]
    pub version: i32,
}

/// GET_CONSUMER_CONNECTION_LIST (203) response body (`ConsumerConnection`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerConnection {
    #[serde(default)]
    pub connection_set: BTreeSet<Connection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consume_from_where: Option<ConsumeFromWhere>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consume_type: Option<ConsumeType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_model: Option<MessageModel>,
    /// topic -> the subscription the group's members registered.
    #[serde(default)]
    pub subscription_table: BTreeMap<String, SubscriptionData>,
}

/// GET_PRODUCER_CONNECTION_LIST (204) response body (`ProducerConnection`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerConnection {
    #[serde(default)]
    pub connection_set: BTreeSet<Connection>,
}

/// QUERY_TOPIC_CONSUME_BY_WHO (300) response body (`GroupList`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupList {
    #[serde(default)]
    pub group_list: BTreeSet<String>,
}

/// One queue's time span for a group (`QueueTimeSpan`). Times are store times in Unix
/// milliseconds; the `*Str` fields are Java's computed getters, written as
/// `yyyy-MM-dd#HH:mm:ss:SSS` (UTC here) and ignored when read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueTimeSpan {
    /// Store time of the last message the group consumed (the queue's first when none).
    #[serde(default)]
    pub consume_time_stamp: i64,
    #[serde(default, skip_deserializing)]
    pub consume_time_stamp_str: String,
    /// How long ago the first message the group has not consumed was stored; 0 when caught up.
    #[serde(default)]
    pub delay_time: i64,
    /// Store time of the queue's last message.
    #[serde(default)]
    pub max_time_stamp: i64,
    #[serde(default, skip_deserializing)]
    pub max_time_stamp_str: String,
    pub message_queue: MessageQueue,
    /// Store time of the queue's first message.
    #[serde(default)]
    pub min_time_stamp: i64,
    #[serde(default, skip_deserializing)]
    pub min_time_stamp_str: String,
}

impl QueueTimeSpan {
    /// A span with its text fields written from the times.
    pub fn new(
        message_queue: MessageQueue,
        min_time_stamp: i64,
        max_time_stamp: i64,
        consume_time_stamp: i64,
        delay_time: i64,
    ) -> Self {
        QueueTimeSpan {
            consume_time_stamp,
            consume_time_stamp_str: java_time_text(consume_time_stamp),
            delay_time,
            max_time_stamp,
            max_time_stamp_str: java_time_text(max_time_stamp),
            message_queue,
            min_time_stamp,
            min_time_stamp_str: java_time_text(min_time_stamp),
        }
    }
}

/// QUERY_CONSUME_TIME_SPAN (303) response body (`QueryConsumeTimeSpanBody`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryConsumeTimeSpanBody {
    #[serde(default)]
    pub consume_time_span_set: Vec<QueueTimeSpan>,
}

impl JsonBody for ConsumerConnection {
    const WHAT: &'static str = "ConsumerConnection";
}
impl JsonBody for ProducerConnection {
    const WHAT: &'static str = "ProducerConnection";
}
impl JsonBody for GroupList {
    const WHAT: &'static str = "GroupList";
}
impl JsonBody for QueryConsumeTimeSpanBody {
    const WHAT: &'static str = "QueryConsumeTimeSpanBody";
}

/// INVOKE_BROKER_TO_RESET_OFFSET (222) response body (`ResetOffsetBody`): each queue's new
/// offset, keyed by the queue object as fastjson writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResetOffsetBody {
    pub offset_table: BTreeMap<MessageQueue, i64>,
}

impl ResetOffsetBody {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = b"{\"offsetTable\":".to_vec();
        write_queue_keyed(&mut out, &self.offset_table);
        out.push(b'}');
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            #[serde(default)]
            offset_table: BTreeMap<String, i64>,
        }
        let raw: Raw = from_object_keyed_json(bytes, "ResetOffsetBody")?;
        Ok(ResetOffsetBody { offset_table: read_queue_keyed(raw.offset_table, "ResetOffsetBody")? })
    }
}

/// A consumer's view of one of its queues in [`ConsumerRunningInfo`] (`ProcessQueueInfo`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProcessQueueInfo {
    pub cached_msg_count: i32,
    pub cached_msg_max_offset: i64,
    pub cached_msg_min_offset: i64,
    #[serde(rename = "cachedMsgSizeInMiB")]
    pub cached_msg_size_in_mib: i32,
    pub commit_offset: i64,
    /// Given up (RocketMQ's spelling).
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

/// A consumer's rates for one topic in [`ConsumerRunningInfo`] (`ConsumeStatus`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumeStatus {
    #[serde(rename = "consumeFailedMsgs")]
    pub consume_failed_msgs: i64,
    #[serde(rename = "consumeFailedTPS")]
    pub consume_failed_tps: f64,
    #[serde(rename = "consumeOKTPS")]
    pub consume_ok_tps: f64,
    #[serde(rename = "consumeRT")]
    pub consume_rt: f64,
    #[serde(rename = "pullRT")]
    pub pull_rt: f64,
    #[serde(rename = "pullTPS")]
    pub pull_tps: f64,
}

/// GET_CONSUMER_RUNNING_INFO (307) response body (`ConsumerRunningInfo`): what a consumer
/// says of itself, forwarded by the broker to the admin tool. `mqTable` is keyed by queue
/// objects as fastjson writes them; the 5.x pop table and user info are written empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumerRunningInfo {
    /// `PROP_*` keys (name server, consume type, thread pool size, start time...) and the
    /// consumer's settings.
    pub properties: BTreeMap<String, String>,
    pub subscription_set: Vec<SubscriptionData>,
    pub mq_table: BTreeMap<MessageQueue, ProcessQueueInfo>,
    pub status_table: BTreeMap<String, ConsumeStatus>,
}

impl ConsumerRunningInfo {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = b"{\"mqPopTable\":{},\"mqTable\":".to_vec();
        write_queue_keyed(&mut out, &self.mq_table);
        // Maps of strings and plain structs: serde_json cannot fail on them.
        out.extend_from_slice(b",\"properties\":");
        let _ = serde_json::to_writer(&mut out, &self.properties);
        out.extend_from_slice(b",\"statusTable\":");
        let _ = serde_json::to_writer(&mut out, &self.status_table);
        out.extend_from_slice(b",\"subscriptionSet\":");
        let _ = serde_json::to_writer(&mut out, &self.subscription_set);
        out.extend_from_slice(b",\"userConsumerInfo\":{}}");
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            #[serde(default)]
            properties: BTreeMap<String, String>,
            #[serde(default)]
            subscription_set: Vec<SubscriptionData>,
            #[serde(default)]
            mq_table: BTreeMap<String, ProcessQueueInfo>,
            #[serde(default)]
            status_table: BTreeMap<String, ConsumeStatus>,
        }
        let raw: Raw = from_object_keyed_json(bytes, "ConsumerRunningInfo")?;
        Ok(ConsumerRunningInfo {
            properties: raw.properties,
            subscription_set: raw.subscription_set,
            mq_table: read_queue_keyed(raw.mq_table, "ConsumerRunningInfo")?,
            status_table: raw.status_table,
        })
    }
}

/// A configuration as RocketMQ answers GET_BROKER_CONFIG and GET_NAMESRV_CONFIG: one
/// `key=value` line per entry, sorted by key, unescaped (`MixAll.properties2String`).
pub fn properties_text(entries: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (k, v) in entries {
        out.push_str(k);
        out.push('=');
        out.push_str(v);
        out.push('\n');
    }
    out
}

/// Reads such text back (what Java's `Properties.load` makes of it, for the lines RocketMQ
/// writes): blank lines and `#`/`!` comments skipped, the key up to the first `=` or `:`,
/// surrounding blanks trimmed. A line without a separator is a key with an empty value.
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .map(|l| match l.find(['=', ':']) {
            Some(i) => (l[..i].trim().to_owned(), l[i + 1..].trim().to_owned()),
            None => (l.to_owned(), String::new()),
        })
        .collect()
}

/// Unix milliseconds as RocketMQ's `UtilAll.timeMillisToHumanString3` pattern
/// `yyyy-MM-dd#HH:mm:ss:SSS`, in UTC.
pub fn java_time_text(ms: i64) -> String {
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) =
        (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    format!("{y:04}-{m:02}-{d:02}#{h:02}:{min:02}:{s:02}:{milli:03}")
}

/// The day count since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm); the inverse of [`civil_from_days`].
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(id: i32) -> MessageQueue {
        MessageQueue { broker_name: "b".into(), queue_id: id, topic: "T".into() }
    }

    #[test]
    fn a_consumer_connection_is_written_as_fastjson_writes_the_5x_class() {
        let body = ConsumerConnection {
            connection_set: [Connection {
                client_addr: "127.0.0.1:5000".into(),
                client_id: "c1".into(),
                language: "JAVA".into(),
                version: 413,
            }]
            .into(),
            consume_from_where: Some(ConsumeFromWhere::ConsumeFromFirstOffset),
            consume_type: Some(ConsumeType::ConsumePassively),
            message_model: Some(MessageModel::Clustering),
            subscription_table: BTreeMap::new(),
        };
        let text = String::from_utf8(body.to_json(crate::JsonStyle::Standard)).unwrap();
        assert_eq!(
            text,
            r#"{"connectionSet":[{"clientAddr":"127.0.0.1:5000","clientId":"c1","language":"JAVA","version":413}],"consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","subscriptionTable":{}}"#
        );
        assert_eq!(ConsumerConnection::from_json(text.as_bytes()).unwrap(), body);
    }

    #[test]
    fn a_time_span_carries_javas_computed_text_fields() {
        let span = QueueTimeSpan::new(q(0), 0, 1_700_000_000_123, -1, 5);
        let text = String::from_utf8(
            QueryConsumeTimeSpanBody { consume_time_span_set: vec![span.clone()] }
                .to_json(crate::JsonStyle::Standard),
        )
        .unwrap();
        assert!(text.contains(r#""maxTimeStampStr":"2023-11-14#22:13:20:123""#), "{text}");
        assert!(text.contains(r#""minTimeStampStr":"1970-01-01#00:00:00:000""#), "{text}");
        assert!(text.contains(r#""consumeTimeStampStr":"1969-12-31#23:59:59:999""#), "{text}");
        let back = QueryConsumeTimeSpanBody::from_json(text.as_bytes()).unwrap();
        assert_eq!(back.consume_time_span_set[0].max_time_stamp, 1_700_000_000_123);
        assert_eq!(back.consume_time_span_set[0].message_queue, q(0));
    }

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(20_790), (2026, 12, 3));
        for days in [-800_000, -1, 0, 59, 60, 11_016, 20_790, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn reset_offsets_are_keyed_by_queue_objects_both_ways() {
        let body = ResetOffsetBody { offset_table: [(q(0), 7), (q(1), 0)].into() };
        let text = body.encode();
        assert!(
            text.starts_with(br#"{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:7"#)
        );
        assert_eq!(ResetOffsetBody::decode(&text).unwrap(), body);
    }

    #[test]
    fn running_info_is_written_with_queue_object_keys_and_reads_back() {
        let info = ConsumerRunningInfo {
            properties: [("PROP_CONSUME_TYPE".to_owned(), "CONSUME_PASSIVELY".to_owned())].into(),
            subscription_set: vec![SubscriptionData::tag("T", "*", 1)],
            mq_table: [(
                q(0),
                ProcessQueueInfo { commit_offset: 7, locked: true, ..Default::default() },
            )]
            .into(),
            status_table: [("T".to_owned(), ConsumeStatus { pull_tps: 1.5, ..Default::default() })]
                .into(),
        };
        let text = String::from_utf8(info.encode()).unwrap();
        assert!(text.starts_with(r#"{"mqPopTable":{},"mqTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{"cachedMsgCount":0"#), "{text}");
        assert!(
            text.contains(r#""cachedMsgSizeInMiB":0,"commitOffset":7,"droped":false"#),
            "{text}"
        );
        assert!(text.contains(r#""pullTPS":1.5"#), "{text}");
        assert!(text.ends_with(r#","userConsumerInfo":{}}"#), "{text}");
        assert_eq!(ConsumerRunningInfo::decode(text.as_bytes()).unwrap(), info);
    }

    #[test]
    fn properties_text_is_sorted_lines_and_reads_back() {
        let entries: BTreeMap<String, String> =
            [("b".to_owned(), "x=y".to_owned()), ("a".to_owned(), String::new())].into();
        let text = properties_text(&entries);
        assert_eq!(text, "a=\nb=x=y\n");
        assert_eq!(parse_properties(&text), entries);
        assert_eq!(parse_properties("# c\n\n k : v \nflag\n")["k"], "v");
        assert_eq!(parse_properties("flag\n")["flag"], "");
    }
}
