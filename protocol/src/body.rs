//! JSON bodies (reference §2.4-§2.6, §1.6): route data, cluster info, heartbeats, broker
//! registration, consumer lists, queue locks, topic lists and KV tables.
//!
//! Writing: fields are declared in alphabetical order of their JSON names and nulls are
//! omitted, as fastjson writes them. [`JsonStyle::Fastjson`] writes maps whose keys are
//! integers with unquoted keys (`{0:"addr"}`), which clients older than 4.9.4 and every
//! GET_BROKER_CLUSTER_INFO reader expect; [`JsonStyle::Standard`] writes plain JSON. The choice
//! is driven by the key's type, so a topic named "123" stays quoted.
//!
//! Reading accepts both forms: bare integer keys are quoted before parsing.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::code::version;
use crate::error::{ProtocolError, Result};

/// How integer-keyed maps are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonStyle {
    /// `{"0":"addr"}`: standard JSON.
    Standard,
    /// `{0:"addr"}`: fastjson's default for `Map<Long, String>`.
    Fastjson,
}

impl JsonStyle {
    /// The style a NameServer uses for a GET_ROUTEINFO_BY_TOPIC answer (reference §1.6 #2):
    /// standard JSON for clients at V4_9_4 or later, or that ask for it.
    pub fn for_route_request(client_version: i32, accept_standard_json_only: bool) -> JsonStyle {
        if client_version >= version::V4_9_4 || accept_standard_json_only {
            JsonStyle::Standard
        } else {
            JsonStyle::Fastjson
        }
    }
}

/// Serializes `value` as JSON in `style`.
pub fn to_json<T: Serialize>(value: &T, style: JsonStyle) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let result = match style {
        JsonStyle::Standard => serde_json::to_writer(&mut out, value),
        JsonStyle::Fastjson => {
            let mut ser =
                serde_json::Serializer::with_formatter(&mut out, FastjsonFormatter::default());
            value.serialize(&mut ser)
        }
    };
    // Our body types only hold strings, integers, booleans, sequences and maps with string or
    // integer keys: serde_json cannot fail on them, and writing to a Vec cannot fail.
    debug_assert!(result.is_ok(), "JSON body serialization failed: {result:?}");
    out
}

/// Parses a JSON body in either style.
pub fn from_json<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T> {
    let text = std::str::from_utf8(bytes).map_err(|_| ProtocolError::InvalidUtf8 { what })?;
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(first) => {
            let quoted = quote_bare_integer_keys(text);
            if quoted == text {
                return Err(ProtocolError::json(what, first));
            }
            serde_json::from_str(&quoted).map_err(|e| ProtocolError::json(what, e))
        }
    }
}

/// Rewrites `{0:"a",-1:"b"}` as `{"0":"a","-1":"b"}`, leaving string contents alone.
fn quote_bare_integer_keys(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    let mut in_string = false;
    let mut copied = 0;
    while i < b.len() {
        let c = b[i];
        if in_string {
            match c {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'{' | b',' => {
                let mut j = i + 1;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                let start = j;
                if j < b.len() && b[j] == b'-' {
                    j += 1;
                }
                let digits = j;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                let end = j;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                if end > digits && j < b.len() && b[j] == b':' {
                    out.push_str(&text[copied..start]);
                    out.push('"');
                    out.push_str(&text[start..end]);
                    out.push('"');
                    copied = end;
                    i = end;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    out
}

/// A serde_json formatter that leaves integer map keys unquoted. serde_json writes an integer
/// key as begin_string, write_<int>, end_string and a string key as begin_string, fragments,
/// end_string; deferring the opening quote of a key until we see which one tells them apart.
#[derive(Default)]
struct FastjsonFormatter {
    in_key: bool,
    quote_pending: bool,
    bare_number: bool,
}

impl FastjsonFormatter {
    fn flush_quote<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        if self.quote_pending {
            self.quote_pending = false;
            w.write_all(b"\"")?;
        }
        Ok(())
    }

    fn key_number<W: ?Sized + io::Write>(&mut self, w: &mut W, text: &str) -> io::Result<()> {
        if self.in_key && self.quote_pending {
            self.quote_pending = false;
            self.bare_number = true;
        }
        w.write_all(text.as_bytes())
    }
}

macro_rules! key_numbers {
    ($($method:ident: $ty:ty),*) => {
        $(fn $method<W: ?Sized + io::Write>(&mut self, w: &mut W, value: $ty) -> io::Result<()> {
            self.key_number(w, &value.to_string())
        })*
    };
}

impl serde_json::ser::Formatter for FastjsonFormatter {
    key_numbers!(write_i8: i8, write_i16: i16, write_i32: i32, write_i64: i64,
                 write_u8: u8, write_u16: u16, write_u32: u32, write_u64: u64);

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.in_key = true;
        if first {
            Ok(())
        } else {
            w.write_all(b",")
        }
    }

    fn end_object_key<W: ?Sized + io::Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.in_key = false;
        Ok(())
    }

    fn begin_string<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        if self.in_key {
            self.quote_pending = true;
            Ok(())
        } else {
            w.write_all(b"\"")
        }
    }

    fn end_string<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        if self.bare_number {
            self.bare_number = false;
            return Ok(());
        }
        self.flush_quote(w)?;
        w.write_all(b"\"")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        s: &str,
    ) -> io::Result<()> {
        self.flush_quote(w)?;
        w.write_all(s.as_bytes())
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        escape: serde_json::ser::CharEscape,
    ) -> io::Result<()> {
        self.flush_quote(w)?;
        serde_json::ser::CompactFormatter.write_char_escape(w, escape)
    }
}

/// Helpers every body type has.
pub trait JsonBody: Serialize + DeserializeOwned {
    /// A name for error messages.
    const WHAT: &'static str;

    fn to_json(&self, style: JsonStyle) -> Vec<u8> {
        to_json(self, style)
    }

    fn from_json(bytes: &[u8]) -> Result<Self> {
        from_json(bytes, Self::WHAT)
    }
}

macro_rules! json_bodies {
    ($($ty:ident => $what:literal,)*) => { $(impl JsonBody for $ty { const WHAT: &'static str = $what; })* };
}

#[cfg(test)]
use proptest_derive::Arbitrary;

/// Test strategies for the outer collections of nested bodies: a few elements each, so that
/// round-trip cases stay small (the default of up to 100 per level multiplies).
#[cfg(test)]
mod few {
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    pub fn vec<T: Arbitrary + 'static>() -> impl Strategy<Value = Vec<T>> {
        proptest::collection::vec(any::<T>(), 0..4)
    }

    /// Floats that survive a JSON round trip exactly.
    pub fn quarters() -> impl Strategy<Value = f64> {
        (0u32..1_000_000).prop_map(|n| f64::from(n) / 4.0)
    }

    pub fn map<K: Arbitrary + Ord + 'static, V: Arbitrary + 'static>(
    ) -> impl Strategy<Value = BTreeMap<K, V>> {
        proptest::collection::btree_map(any::<K>(), any::<V>(), 0..4)
    }
}

// ---------------------------------------------------------------------------------------------
// Routes and clusters

/// GET_ROUTEINFO_BY_TOPIC body (`TopicRouteData`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct TopicRouteData {
    #[serde(default)]
    #[cfg_attr(test, proptest(strategy = "few::vec()"))]
    pub broker_datas: Vec<BrokerData>,
    #[serde(default)]
    #[cfg_attr(test, proptest(strategy = "few::map()"))]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    #[serde(default)]
    #[cfg_attr(test, proptest(strategy = "few::vec()"))]
    pub queue_datas: Vec<QueueData>,
}

/// One broker group (a master and its slaves) in a route or cluster table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct BrokerData {
    /// brokerId -> address; id 0 is the master.
    #[serde(default)]
    pub broker_addrs: BTreeMap<i64, String>,
    pub broker_name: String,
    #[serde(default)]
    pub cluster: String,
    /// 5.x: whether a slave may act as master for reads (never here: Raft elects a master).
    #[serde(default)]
    pub enable_acting_master: bool,
    /// 5.x: the group's zone, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
}

impl BrokerData {
    /// The master's address (brokerId 0), if the group has one.
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&0).map(String::as_str)
    }
}

/// A topic's queues on one broker group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct QueueData {
    pub broker_name: String,
    pub perm: i32,
    pub read_queue_nums: i32,
    /// Written as `topicSysFlag`; the pre-4.9 name `topicSynFlag` is accepted too.
    #[serde(default, alias = "topicSynFlag")]
    pub topic_sys_flag: i32,
    pub write_queue_nums: i32,
}

/// GET_BROKER_CLUSTER_INFO body (`ClusterInfo`); always written in [`JsonStyle::Fastjson`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    #[serde(default)]
    #[cfg_attr(test, proptest(strategy = "few::map()"))]
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    #[serde(default)]
    #[cfg_attr(test, proptest(strategy = "few::map()"))]
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

// ---------------------------------------------------------------------------------------------
// Broker registration

/// REGISTER_BROKER body (uncompressed form).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct RegisterBrokerBody {
    #[serde(default)]
    pub filter_server_list: Vec<String>,
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
}

impl RegisterBrokerBody {
    /// The `bodyCrc32` header value for an encoded body (CRC32 masked to 31 bits).
    pub fn crc32(encoded: &[u8]) -> i32 {
        (crc32fast::hash(encoded) & 0x7FFF_FFFF) as i32
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct TopicConfigSerializeWrapper {
    #[serde(default)]
    pub data_version: DataVersion,
    /// 5.x (`TopicConfigAndMappingSerializeWrapper`): static-topic mappings, none here.
    #[serde(default)]
    pub mapping_data_version: DataVersion,
    #[serde(default)]
    #[cfg_attr(test, proptest(strategy = "few::map()"))]
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    #[serde(default)]
    #[cfg_attr(test, proptest(value = "BTreeMap::new()"))]
    pub topic_queue_mapping_detail_map: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    #[cfg_attr(test, proptest(value = "BTreeMap::new()"))]
    pub topic_queue_mapping_info_map: BTreeMap<String, serde_json::Value>,
}

/// A broker's metadata version: a registration with an unchanged version changes nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct DataVersion {
    #[serde(default)]
    pub counter: i64,
    /// 5.x's controller state version (0: none).
    #[serde(default)]
    pub state_version: i64,
    #[serde(default)]
    pub timestamp: i64,
}

impl JsonBody for DataVersion {
    const WHAT: &'static str = "DataVersion";
}

/// A topic's configuration on a broker (`TopicConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct TopicConfig {
    /// 5.x topic attributes (written `{}` when none, as 5.x brokers do).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub order: bool,
    pub perm: i32,
    pub read_queue_nums: i32,
    #[serde(default = "default_topic_filter_type")]
    pub topic_filter_type: String,
    pub topic_name: String,
    #[serde(default)]
    pub topic_sys_flag: i32,
    pub write_queue_nums: i32,
}

fn default_topic_filter_type() -> String {
    "SINGLE_TAG".to_owned()
}

impl TopicConfig {
    /// A readable and writable topic with `queues` read and write queues.
    pub fn new(topic_name: impl Into<String>, queues: i32) -> Self {
        TopicConfig {
            attributes: BTreeMap::new(),
            order: false,
            perm: crate::code::perm::READ | crate::code::perm::WRITE,
            read_queue_nums: queues,
            topic_filter_type: default_topic_filter_type(),
            topic_name: topic_name.into(),
            topic_sys_flag: 0,
            write_queue_nums: queues,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client heartbeats

/// HEART_BEAT body (`HeartbeatData`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatData {
    #[serde(rename = "clientID")]
    pub client_id: String,
    #[serde(default)]
    #[cfg_attr(test, proptest(strategy = "few::vec()"))]
    pub consumer_data_set: Vec<ConsumerData>,
    #[serde(default)]
    #[cfg_attr(test, proptest(strategy = "few::vec()"))]
    pub producer_data_set: Vec<ProducerData>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct ConsumerData {
    pub consume_from_where: ConsumeFromWhere,
    pub consume_type: ConsumeType,
    pub group_name: String,
    pub message_model: MessageModel,
    #[serde(default)]
    #[cfg_attr(test, proptest(strategy = "few::vec()"))]
    pub subscription_data_set: Vec<SubscriptionData>,
    #[serde(default)]
    pub unit_mode: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct ProducerData {
    pub group_name: String,
}

/// One topic subscription of a consumer group (`SubscriptionData`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionData {
    #[serde(default)]
    pub class_filter_mode: bool,
    /// Java hashes of the tags.
    #[serde(default)]
    pub code_set: BTreeSet<i32>,
    #[serde(default = "default_expression_type")]
    pub expression_type: String,
    /// The expression as written: `*`, `TagA || TagB`, or SQL92.
    pub sub_string: String,
    /// Read from a number or, as rocketmq-client-cpp writes it, a string of one.
    #[serde(default, deserialize_with = "number_or_text")]
    pub sub_version: i64,
    #[serde(default)]
    pub tags_set: BTreeSet<String>,
    pub topic: String,
}

/// An `i64` written as a JSON number or as a string holding one.
fn number_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(i64),
        Text(String),
    }
    match Either::deserialize(d)? {
        Either::Number(n) => Ok(n),
        Either::Text(t) => t.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// Enums that Java clients write by name and rocketmq-client-cpp by ordinal: read both. A value
/// neither knows reads as `$fallback` (an `Unknown` variant), or is refused when it is `None`.
macro_rules! enum_by_name_or_ordinal {
    ($ty:ident { $($name:literal = $ordinal:literal => $variant:ident,)* } else $fallback:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Either {
                    Ordinal(i64),
                    Name(String),
                }
                let fallback: Option<$ty> = $fallback;
                let unknown = |v: String| {
                    fallback.ok_or_else(|| {
                        serde::de::Error::custom(format!("unknown {} {v:?}", stringify!($ty)))
                    })
                };
                match Either::deserialize(d)? {
                    $(Either::Ordinal($ordinal) => Ok($ty::$variant),)*
                    $(Either::Name(n) if n == $name => Ok($ty::$variant),)*
                    Either::Ordinal(o) => unknown(o.to_string()),
                    Either::Name(n) => unknown(n),
                }
            }
        }
    };
}

enum_by_name_or_ordinal!(ConsumeFromWhere {
    "CONSUME_FROM_LAST_OFFSET" = 0 => ConsumeFromLastOffset,
    "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST" = 1 => ConsumeFromLastOffsetAndFromMinWhenBootFirst,
    "CONSUME_FROM_MIN_OFFSET" = 2 => ConsumeFromMinOffset,
    "CONSUME_FROM_MAX_OFFSET" = 3 => ConsumeFromMaxOffset,
    "CONSUME_FROM_FIRST_OFFSET" = 4 => ConsumeFromFirstOffset,
    "CONSUME_FROM_TIMESTAMP" = 5 => ConsumeFromTimestamp,
} else Some(ConsumeFromWhere::Unknown));

enum_by_name_or_ordinal!(ConsumeType {
    "CONSUME_ACTIVELY" = 0 => ConsumeActively,
    "CONSUME_PASSIVELY" = 1 => ConsumePassively,
} else Some(ConsumeType::Unknown));

enum_by_name_or_ordinal!(MessageModel {
    "BROADCASTING" = 0 => Broadcasting,
    "CLUSTERING" = 1 => Clustering,
} else None);

fn default_expression_type() -> String {
    "TAG".to_owned()
}

/// The subscription expression that matches every tag.
pub const SUB_ALL: &str = "*";

impl SubscriptionData {
    /// Builds a TAG subscription as `FilterAPI.buildSubscriptionData` does: `*` or empty means
    /// every tag; otherwise split on `||`, trim, and keep each tag and its Java hash.
    pub fn tag(topic: impl Into<String>, expression: &str, sub_version: i64) -> Self {
        let expression = expression.trim();
        let mut tags_set = BTreeSet::new();
        let mut code_set = BTreeSet::new();
        let sub_string = if expression.is_empty() || expression == SUB_ALL {
            SUB_ALL.to_owned()
        } else {
            for tag in expression.split("||").map(str::trim).filter(|t| !t.is_empty()) {
                code_set.insert(crate::message::java_string_hash(tag));
                tags_set.insert(tag.to_owned());
            }
            expression.to_owned()
        };
        SubscriptionData {
            class_filter_mode: false,
            code_set,
            expression_type: default_expression_type(),
            sub_string,
            sub_version,
            tags_set,
            topic: topic.into(),
        }
    }

    /// Whether this subscription takes every tag.
    /// A SQL92 subscription (`MessageSelector.bySql`): the broker evaluates `expression`
    /// over each message's properties; no tags are kept (the client filters nothing itself).
    pub fn sql92(topic: impl Into<String>, expression: &str, sub_version: i64) -> Self {
        SubscriptionData {
            class_filter_mode: false,
            code_set: BTreeSet::new(),
            expression_type: "SQL92".to_owned(),
            sub_string: expression.trim().to_owned(),
            sub_version,
            tags_set: BTreeSet::new(),
            topic: topic.into(),
        }
    }

    /// Whether this is a SQL92 subscription.
    pub fn is_sql92(&self) -> bool {
        self.expression_type.eq_ignore_ascii_case("SQL92")
    }

    pub fn matches_all(&self) -> bool {
        self.sub_string == SUB_ALL || self.tags_set.is_empty()
    }
}

/// `ConsumeFromWhere`, read by name or Java ordinal; unknown values from newer clients read as
/// `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConsumeFromWhere {
    ConsumeFromLastOffset,
    ConsumeFromFirstOffset,
    ConsumeFromTimestamp,
    ConsumeFromLastOffsetAndFromMinWhenBootFirst,
    ConsumeFromMinOffset,
    ConsumeFromMaxOffset,
    Unknown,
}

/// `ConsumeType`: pull (actively) or push (passively); read by name or Java ordinal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConsumeType {
    ConsumeActively,
    ConsumePassively,
    Unknown,
}

/// `MessageModel`, read by name or Java ordinal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageModel {
    Clustering,
    Broadcasting,
}

// ---------------------------------------------------------------------------------------------
// Consumer lists, queue locks, lists and tables

/// GET_CONSUMER_LIST_BY_GROUP response body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct ConsumerListBody {
    #[serde(default)]
    pub consumer_id_list: Vec<String>,
}

/// A message queue: one queue of a topic on one broker group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct MessageQueue {
    pub broker_name: String,
    pub queue_id: i32,
    pub topic: String,
}

/// CHECK_CLIENT_CONFIG request body (`CheckClientRequestBody`): a consumer asks whether the
/// broker can serve its subscription before it starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct CheckClientRequestBody {
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub subscription_data: Option<SubscriptionData>,
}

/// LOCK_BATCH_MQ and UNLOCK_BATCH_MQ request body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct LockBatchRequestBody {
    pub client_id: String,
    pub consumer_group: String,
    #[serde(default)]
    pub mq_set: BTreeSet<MessageQueue>,
    #[serde(default)]
    pub only_this_broker: bool,
}

/// LOCK_BATCH_MQ response body: the queues now locked by the requester.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct LockBatchResponseBody {
    #[serde(default, rename = "lockOKMQSet")]
    pub lock_ok_mq_set: BTreeSet<MessageQueue>,
}

/// GET_ALL_TOPIC_LIST_FROM_NAMESERVER and GET_TOPICS_BY_CLUSTER response body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct TopicList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
    #[serde(default)]
    pub topic_list: BTreeSet<String>,
}

// ---------------------------------------------------------------------------------------------
// Subscription groups

/// A consumer group's configuration on a broker (`SubscriptionGroupConfig`): the
/// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (200) request body. Missing fields take RocketMQ's
/// defaults: enabled, broadcast allowed, 1 retry queue, 16 retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupConfig {
    /// 5.x group attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub broker_id: i64,
    #[serde(default = "yes")]
    pub consume_broadcast_enable: bool,
    #[serde(default = "yes")]
    pub consume_enable: bool,
    #[serde(default = "yes")]
    pub consume_from_min_enable: bool,
    /// 5.x.
    #[serde(default)]
    pub consume_message_orderly: bool,
    /// 5.x. Default 15.
    #[serde(default = "fifteen")]
    pub consume_timeout_minute: i32,
    pub group_name: String,
    /// 5.x: how retries are spaced. The broker's delay levels decide here; written as
    /// RocketMQ's default (`CUSTOMIZED`, no table of its own).
    #[serde(default)]
    pub group_retry_policy: GroupRetryPolicy,
    /// 5.x.
    #[serde(default)]
    pub group_sys_flag: i32,
    #[serde(default = "yes")]
    pub notify_consumer_ids_changed_enable: bool,
    #[serde(default = "sixteen")]
    pub retry_max_times: i32,
    #[serde(default = "one")]
    pub retry_queue_nums: i32,
    #[serde(default = "one_i64")]
    pub which_broker_when_consume_slowly: i64,
}

/// 5.x `GroupRetryPolicy`: its type only (the tables it may carry are left out, as null).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct GroupRetryPolicy {
    #[serde(rename = "type", default = "customized")]
    pub kind: String,
}

impl Default for GroupRetryPolicy {
    fn default() -> Self {
        GroupRetryPolicy { kind: customized() }
    }
}

fn customized() -> String {
    "CUSTOMIZED".to_owned()
}

fn fifteen() -> i32 {
    15
}

fn yes() -> bool {
    true
}
fn one() -> i32 {
    1
}
fn one_i64() -> i64 {
    1
}
fn sixteen() -> i32 {
    16
}

impl SubscriptionGroupConfig {
    /// A group with RocketMQ's defaults.
    pub fn new(group_name: impl Into<String>) -> Self {
        SubscriptionGroupConfig {
            attributes: BTreeMap::new(),
            broker_id: 0,
            consume_broadcast_enable: true,
            consume_enable: true,
            consume_from_min_enable: true,
            consume_message_orderly: false,
            consume_timeout_minute: 15,
            group_name: group_name.into(),
            group_retry_policy: GroupRetryPolicy::default(),
            group_sys_flag: 0,
            notify_consumer_ids_changed_enable: true,
            retry_max_times: 16,
            retry_queue_nums: 1,
            which_broker_when_consume_slowly: 1,
        }
    }
}

/// GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201) response body (`SubscriptionGroupWrapper`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionGroupWrapper {
    #[serde(default)]
    pub data_version: DataVersion,
    /// 5.x: topics a group may not consume (none here).
    #[serde(default)]
    #[cfg_attr(test, proptest(value = "BTreeMap::new()"))]
    pub forbidden_table: BTreeMap<String, BTreeMap<String, i32>>,
    #[serde(default)]
    #[cfg_attr(test, proptest(strategy = "few::map()"))]
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
}

// ---------------------------------------------------------------------------------------------
// Statistics keyed by message queue (reference §1.6 #4)
//
// fastjson writes a `Map<MessageQueue, _>` with the queue object itself as the key:
// `{"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{...}}}`. That is not JSON, so
// these bodies are written by hand and read after [`stringify_object_keys`] turns each object
// key into a string key.

/// A queue's offsets in GET_TOPIC_STATS_INFO (`TopicOffset`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct TopicOffset {
    #[serde(default)]
    pub last_update_timestamp: i64,
    #[serde(default)]
    pub max_offset: i64,
    #[serde(default)]
    pub min_offset: i64,
}

/// GET_TOPIC_STATS_INFO (202) response body (`TopicStatsTable`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct TopicStatsTable {
    #[cfg_attr(test, proptest(strategy = "few::map()"))]
    pub offset_table: BTreeMap<MessageQueue, TopicOffset>,
}

/// A group's progress on one queue in GET_CONSUME_STATS (`OffsetWrapper`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct OffsetWrapper {
    #[serde(default)]
    pub broker_offset: i64,
    #[serde(default)]
    pub consumer_offset: i64,
    /// Store time of the last consumed message; 0 when nothing was consumed.
    #[serde(default)]
    pub last_timestamp: i64,
    /// 5.x: where the group's pulls have reached (here its committed offset: pulls are not
    /// tracked apart from commits).
    #[serde(default)]
    pub pull_offset: i64,
}

/// GET_CONSUME_STATS (208) response body (`ConsumeStats`).
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct ConsumeStats {
    #[cfg_attr(test, proptest(strategy = "few::quarters()"))]
    pub consume_tps: f64,
    #[cfg_attr(test, proptest(strategy = "few::map()"))]
    pub offset_table: BTreeMap<MessageQueue, OffsetWrapper>,
}

pub(crate) fn write_queue_keyed<V: Serialize>(
    out: &mut Vec<u8>,
    entries: &BTreeMap<MessageQueue, V>,
) {
    out.push(b'{');
    for (i, (q, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Plain structs of strings and integers: serde_json cannot fail on them.
        let _ = serde_json::to_writer(&mut *out, q);
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, v);
    }
    out.push(b'}');
}

pub(crate) fn read_queue_keyed<V>(
    table: BTreeMap<String, V>,
    what: &'static str,
) -> Result<BTreeMap<MessageQueue, V>> {
    table
        .into_iter()
        .map(|(k, v)| {
            let q = serde_json::from_str(&k).map_err(|e| ProtocolError::json(what, e))?;
            Ok((q, v))
        })
        .collect()
}

/// Parses a body whose maps may have object keys (fastjson) or string keys.
pub fn from_object_keyed_json<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T> {
    let text = std::str::from_utf8(bytes).map_err(|_| ProtocolError::InvalidUtf8 { what })?;
    let text = stringify_object_keys(text).ok_or(ProtocolError::InvalidJson {
        what,
        reason: "unbalanced braces or an unterminated string".into(),
    })?;
    serde_json::from_str(&text).map_err(|e| ProtocolError::json(what, e))
}

impl TopicStatsTable {
    /// The body as fastjson writes it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = b"{\"offsetTable\":".to_vec();
        write_queue_keyed(&mut out, &self.offset_table);
        // 5.x's put rate of the topic: not measured per topic here.
        out.extend_from_slice(b",\"topicPutTps\":0.0}");
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            #[serde(default)]
            offset_table: BTreeMap<String, TopicOffset>,
        }
        let raw: Raw = from_object_keyed_json(bytes, "TopicStatsTable")?;
        Ok(TopicStatsTable { offset_table: read_queue_keyed(raw.offset_table, "TopicStatsTable")? })
    }
}

impl ConsumeStats {
    /// The body as fastjson writes it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = b"{\"consumeTps\":".to_vec();
        let _ = serde_json::to_writer(&mut out, &self.consume_tps);
        out.extend_from_slice(b",\"offsetTable\":");
        write_queue_keyed(&mut out, &self.offset_table);
        out.push(b'}');
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            #[serde(default)]
            consume_tps: f64,
            #[serde(default)]
            offset_table: BTreeMap<String, OffsetWrapper>,
        }
        let raw: Raw = from_object_keyed_json(bytes, "ConsumeStats")?;
        Ok(ConsumeStats {
            consume_tps: raw.consume_tps,
            offset_table: read_queue_keyed(raw.offset_table, "ConsumeStats")?,
        })
    }
}

/// Rewrites every object used as a map key as a JSON string holding that object's text:
/// `{{"a":1}:2}` becomes `{"{\"a\":1}":2}`. `None` if braces do not balance or a string does
/// not end.
fn stringify_object_keys(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 64);
    // One entry per open `{` or `[`: true for objects.
    let mut stack: Vec<bool> = Vec::new();
    let mut expect_key = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'"' => {
                let end = string_end(bytes, i)?;
                out.push_str(&text[i..end]);
                expect_key = false;
                i = end;
                continue;
            }
            b'{' if expect_key => {
                let end = value_end(bytes, i)?;
                let key = serde_json::to_string(&text[i..end]).ok()?;
                out.push_str(&key);
                expect_key = false;
                i = end;
                continue;
            }
            b'{' | b'[' => {
                stack.push(b == b'{');
                expect_key = b == b'{';
            }
            b'}' | b']' => {
                stack.pop()?;
                expect_key = false;
            }
            b',' => expect_key = stack.last() == Some(&true),
            b if b.is_ascii_whitespace() => {}
            _ => expect_key = false,
        }
        out.push(b as char);
        i += 1;
    }
    stack.is_empty().then_some(out)
}

/// The index just past the string that opens at `start`.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The index just past the object or array that opens at `start`.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i = string_end(bytes, i)?;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// GET_KVLIST_BY_NAMESPACE response body and the REGISTER_BROKER response body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
pub struct KvTable {
    #[serde(default)]
    pub table: BTreeMap<String, String>,
}

/// GET_ALL_DELAY_OFFSET (45) response body (`DelayOffsetSerializeWrapper`): per delay level
/// (1-based), the first offset of its queue in `SCHEDULE_TOPIC_XXXX` not yet delivered.
/// `timerOffsetTable` is RocketRaft's own: the same per timer queue of `rmq_sys_wheel_timer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct DelayOffsets {
    #[serde(default)]
    pub offset_table: BTreeMap<i32, i64>,
    #[serde(default)]
    pub timer_offset_table: BTreeMap<i32, i64>,
}

/// One unresolved transaction half message (GET_UNRESOLVED_HALVES, RocketRaft's own).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct UnresolvedHalf {
    /// Its offset in `RMQ_SYS_TRANS_HALF_TOPIC` queue 0 (the producer's tranStateTableOffset).
    pub half_offset: i64,
    pub commit_log_offset: i64,
    /// Its real topic and queue.
    pub topic: String,
    pub queue_id: i32,
    pub producer_group: String,
    /// Its UNIQ_KEY (the transaction id).
    pub msg_id: String,
    pub store_timestamp: i64,
    /// Check-backs sent so far.
    pub check_times: u32,
}

/// The answer to GET_UNRESOLVED_HALVES: oldest first; `more` when the limit cut the list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct UnresolvedHalves {
    #[serde(default)]
    #[cfg_attr(test, proptest(strategy = "few::vec()"))]
    pub halves: Vec<UnresolvedHalf>,
    #[serde(default)]
    pub more: bool,
}

json_bodies! {
    DelayOffsets => "DelayOffsetSerializeWrapper",
    UnresolvedHalves => "UnresolvedHalves",
    TopicRouteData => "TopicRouteData",
    ClusterInfo => "ClusterInfo",
    RegisterBrokerBody => "RegisterBrokerBody",
    HeartbeatData => "HeartbeatData",
    ConsumerListBody => "consumer id list",
    LockBatchRequestBody => "LockBatchRequestBody",
    CheckClientRequestBody => "CheckClientRequestBody",
    LockBatchResponseBody => "LockBatchResponseBody",
    TopicList => "TopicList",
    KvTable => "KVTable",
    TopicConfigSerializeWrapper => "TopicConfigSerializeWrapper",
    SubscriptionGroupConfig => "SubscriptionGroupConfig",
    SubscriptionGroupWrapper => "SubscriptionGroupWrapper",
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A consumer heartbeat as rocketmq-client-cpp 1.2.x writes it: enums as Java ordinals,
    /// `subVersion` as a string, empty lists left out.
    #[test]
    fn a_cpp_clients_heartbeat_reads_like_a_java_ones() {
        let text = br#"{"clientID":"127.0.0.1@22800","consumerDataSet":[{"consumeFromWhere":4,"consumeType":1,"groupName":"CID","messageModel":0,"subscriptionDataSet":[{"codeSet":[],"subString":"*","subVersion":"1796333404720","tagsSet":[],"topic":"CppT"}]}]}"#;
        let hb = HeartbeatData::from_json(text).unwrap();
        let c = &hb.consumer_data_set[0];
        assert_eq!(c.consume_from_where, ConsumeFromWhere::ConsumeFromFirstOffset);
        assert_eq!(c.consume_type, ConsumeType::ConsumePassively);
        assert_eq!(c.message_model, MessageModel::Broadcasting);
        assert_eq!(c.subscription_data_set[0].sub_version, 1_796_333_404_720);
        assert_eq!(c.subscription_data_set[0].expression_type, "TAG");
        assert!(hb.producer_data_set.is_empty());
        let java = br#"{"clientID":"c","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_TIMESTAMP","consumeType":"CONSUME_POP","groupName":"G","messageModel":"CLUSTERING","subscriptionDataSet":[]}]}"#;
        let c = &HeartbeatData::from_json(java).unwrap().consumer_data_set[0];
        assert_eq!(c.consume_from_where, ConsumeFromWhere::ConsumeFromTimestamp);
        assert_eq!(c.consume_type, ConsumeType::Unknown, "5.x's pop consumers");
        let bad = br#"{"clientID":"c","consumerDataSet":[{"consumeFromWhere":0,"consumeType":0,"groupName":"G","messageModel":7}]}"#;
        assert!(HeartbeatData::from_json(bad).is_err(), "no message model 7");
    }

    #[test]
    fn queue_keyed_tables_read_fastjson_text() {
        let text = br#"{"offsetTable":{{"brokerName":"b","queueId":2,"topic":"t"}:{"lastUpdateTimestamp":0,"maxOffset":7,"minOffset":1} , {"brokerName":"b}","queueId":0,"topic":"t"}:{"maxOffset":3}}}"#;
        let t = TopicStatsTable::decode(text).unwrap();
        let q = |name: &str, id| MessageQueue {
            broker_name: name.into(),
            queue_id: id,
            topic: "t".into(),
        };
        let want: BTreeMap<_, _> = [
            (q("b", 2), TopicOffset { last_update_timestamp: 0, max_offset: 7, min_offset: 1 }),
            (q("b}", 0), TopicOffset { max_offset: 3, ..Default::default() }),
        ]
        .into();
        assert_eq!(t.offset_table, want);
        let written = String::from_utf8(
            TopicStatsTable {
                offset_table: t
                    .offset_table
                    .clone()
                    .into_iter()
                    .filter(|(q, _)| q.queue_id == 2)
                    .collect(),
            }
            .encode(),
        )
        .unwrap();
        assert_eq!(
            written,
            r#"{"offsetTable":{{"brokerName":"b","queueId":2,"topic":"t"}:{"lastUpdateTimestamp":0,"maxOffset":7,"minOffset":1}},"topicPutTps":0.0}"#
        );
        for bad in [
            &br#"{"offsetTable":{{"brokerName":"b"}"#[..],
            b"{\"consumeTps\":\"x",
            b"}",
            b"{\"offsetTable\":{{}:{}}}",
        ] {
            assert!(ConsumeStats::decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    proptest! {
        #[test]
        fn topic_stats_round_trip(v in any::<TopicStatsTable>()) {
            prop_assert_eq!(TopicStatsTable::decode(&v.encode()).unwrap(), v);
        }

        #[test]
        fn consume_stats_round_trip(v in any::<ConsumeStats>()) {
            prop_assert_eq!(ConsumeStats::decode(&v.encode()).unwrap(), v);
        }

        #[test]
        fn object_keyed_decoding_never_panics(text in ".{0,64}") {
            let _ = ConsumeStats::decode(text.as_bytes());
            let _ = TopicStatsTable::decode(text.as_bytes());
        }
    }

    #[test]
    fn a_bare_subscription_group_takes_rocketmq_defaults() {
        let g = SubscriptionGroupConfig::from_json(br#"{"groupName":"G"}"#).unwrap();
        assert_eq!(g, SubscriptionGroupConfig::new("G"));
        assert_eq!((g.retry_queue_nums, g.retry_max_times), (1, 16));
        assert!(SubscriptionGroupConfig::from_json(br#"{"retryMaxTimes":3}"#).is_err());
    }

    #[test]
    fn only_integer_keys_lose_their_quotes() {
        let mut m: BTreeMap<i64, BTreeMap<String, i32>> = BTreeMap::new();
        m.insert(-3, [("123".to_owned(), 1), ("a\"b".to_owned(), 2)].into());
        m.insert(0, BTreeMap::new());
        let text = String::from_utf8(to_json(&m, JsonStyle::Fastjson)).unwrap();
        assert_eq!(text, r#"{-3:{"123":1,"a\"b":2},0:{}}"#);
        let std = String::from_utf8(to_json(&m, JsonStyle::Standard)).unwrap();
        assert_eq!(std, r#"{"-3":{"123":1,"a\"b":2},"0":{}}"#);
        let empty_key: BTreeMap<String, i32> = [(String::new(), 1)].into();
        assert_eq!(to_json(&empty_key, JsonStyle::Fastjson), br#"{"":1}"#);
    }

    #[test]
    fn bare_keys_are_quoted_but_strings_are_left_alone() {
        let s = r#"{0:"a{1:b}", 12 : [1,2],"x,-3:":{-3:"\",4:"}}"#;
        assert_eq!(
            quote_bare_integer_keys(s),
            r#"{"0":"a{1:b}", "12" : [1,2],"x,-3:":{"-3":"\",4:"}}"#
        );
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert!(matches!(
            TopicRouteData::from_json(b"{0:"),
            Err(ProtocolError::InvalidJson { .. })
        ));
        assert!(matches!(
            TopicRouteData::from_json(&[0xC3, 0x28]),
            Err(ProtocolError::InvalidUtf8 { .. })
        ));
        assert!(HeartbeatData::from_json(br#"{"clientID":5}"#).is_err());
    }

    #[test]
    fn subscription_expressions_follow_filter_api() {
        let s = SubscriptionData::tag("T", " TagA ||TagB|| ", 1);
        assert_eq!(s.tags_set.iter().collect::<Vec<_>>(), vec!["TagA", "TagB"]);
        assert!(s.code_set.contains(&2_598_919));
        assert!(!s.matches_all());
        assert!(SubscriptionData::tag("T", "*", 1).matches_all());
        assert_eq!(SubscriptionData::tag("T", "", 1).sub_string, "*");
    }

    #[test]
    fn route_style_follows_the_client_version() {
        assert_eq!(JsonStyle::for_route_request(400, false), JsonStyle::Fastjson);
        assert_eq!(JsonStyle::for_route_request(400, true), JsonStyle::Standard);
        assert_eq!(JsonStyle::for_route_request(401, false), JsonStyle::Standard);
    }

    fn round_trips<T: JsonBody + PartialEq + std::fmt::Debug>(v: &T) {
        for style in [JsonStyle::Standard, JsonStyle::Fastjson] {
            let bytes = v.to_json(style);
            assert_eq!(&T::from_json(&bytes).unwrap(), v, "{}", String::from_utf8_lossy(&bytes));
        }
    }

    macro_rules! body_round_trips {
        ($($test:ident: $ty:ty,)*) => {
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(48))]
                $(#[test] fn $test(v in any::<$ty>()) { round_trips(&v); })*
            }
        };
    }

    body_round_trips! {
        route: TopicRouteData,
        cluster: ClusterInfo,
        register: RegisterBrokerBody,
        data_version: DataVersion,
        heartbeat: HeartbeatData,
        consumer_list: ConsumerListBody,
        lock_request: LockBatchRequestBody,
        lock_response: LockBatchResponseBody,
        topic_list: TopicList,
        kv_table: KvTable,
        topic_configs: TopicConfigSerializeWrapper,
        group_config: SubscriptionGroupConfig,
        group_configs: SubscriptionGroupWrapper,
        unresolved_halves: UnresolvedHalves,
    }
}
