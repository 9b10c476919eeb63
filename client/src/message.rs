//! Messages as the SDK user sees them: [`Message`] to send (topic, tags, keys, user
//! properties, body) and [`MessageExt`] as received (plus the broker's ids and offsets).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use rocketraft_protocol::body::MessageQueue;
use rocketraft_protocol::message::{parse_properties, property, RecordView};

use crate::error::{ClientError, Result};

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub body: Bytes,
    /// User flag (an int the broker stores and returns as is).
    pub flag: i32,
    /// Properties, including TAGS and KEYS; user keys must not use the reserved names.
    pub properties: BTreeMap<String, String>,
}

impl Message {
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Message { topic: topic.into(), body: body.into(), flag: 0, properties: BTreeMap::new() }
    }

    /// Sets the tag (one per message; consumers filter on it).
    pub fn with_tags(mut self, tags: impl Into<String>) -> Self {
        self.properties.insert(property::TAGS.to_owned(), tags.into());
        self
    }

    /// Sets the keys (space-separated in RocketMQ; each is indexed for lookup by key).
    pub fn with_keys<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let joined: Vec<String> = keys.into_iter().map(|k| k.as_ref().to_owned()).collect();
        self.properties.insert(property::KEYS.to_owned(), joined.join(" "));
        self
    }

    /// Sets a user property.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// Delays delivery by RocketMQ delay level `level` (1 to 18 by default: 1s 5s 10s 30s 1m
    /// 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h; the broker's `message_delay_level`; above
    /// the last means the last). The message is stored at once and becomes visible when due.
    pub fn with_delay_level(mut self, level: u32) -> Self {
        self.properties.insert(property::DELAY.to_owned(), level.to_string());
        self
    }

    /// Delivers the message at `deliver_at_ms` (ms since the Unix epoch; RocketMQ 5's timer
    /// messages, at most `timer_max_delay_sec` ahead, 3 days by default, else the broker
    /// refuses it; a time already past delivers at once).
    pub fn with_deliver_time_ms(mut self, deliver_at_ms: i64) -> Self {
        self.properties.insert(property::TIMER_DELIVER_MS.to_owned(), deliver_at_ms.to_string());
        self
    }

    /// Delivers the message `delay` after the broker stores it (a RocketMQ 5 timer, to the
    /// millisecond; the same limit as [`Message::with_deliver_time_ms`]).
    pub fn with_delay(mut self, delay: std::time::Duration) -> Self {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.properties.insert(property::TIMER_DELAY_MS.to_owned(), ms.to_string());
        self
    }

    /// The reply to `request` (a request message a consumer received), with `body`: to the
    /// reply topic of the cluster that stored the request, carrying its correlation id, its
    /// requester and its TTL (RocketMQ's `MessageUtil.createReplyMessage`). Send it with any
    /// producer ([`crate::Producer::reply`] does both); the broker pushes it to the requester.
    pub fn reply_to(request: &MessageExt, body: impl Into<Bytes>) -> Result<Message> {
        let Some(cluster) = request.property(property::CLUSTER) else {
            return Err(ClientError::InvalidArgument(format!(
                "create reply message fail, requestMessage error, property[{}] is null.",
                property::CLUSTER
            )));
        };
        let mut reply = Message::new(rocketraft_protocol::names::reply_topic(cluster), body);
        reply.properties.insert(property::MSG_TYPE.into(), property::REPLY_MESSAGE_TYPE.into());
        for key in [property::CORRELATION_ID, property::REPLY_TO_CLIENT] {
            let Some(v) = request.property(key) else {
                return Err(ClientError::InvalidArgument(format!(
                    "not a request message: property[{key}] is null"
                )));
            };
            reply.properties.insert(key.into(), v.into());
        }
        if let Some(ttl) = request.property(property::TTL) {
            reply.properties.insert(property::TTL.into(), ttl.into());
        }
        Ok(reply)
    }

    /// Whether this is a reply (sent with SEND_REPLY_MESSAGE).
    pub fn is_reply(&self) -> bool {
        is_reply(&self.properties)
    }

    pub fn tags(&self) -> Option<&str> {
        self.properties.get(property::TAGS).map(String::as_str)
    }

    pub fn keys(&self) -> Option<&str> {
        self.properties.get(property::KEYS).map(String::as_str)
    }

    /// Checks what the broker would refuse, so the caller gets a clear error instead.
    pub(crate) fn validate(&self, max_bytes: usize) -> Result<()> {
        // The broker's rule (one definition in `protocol::names`): 1-127 characters of
        // [%|a-zA-Z0-9_-], or a valid group's %RETRY%/%DLQ% topic.
        rocketraft_protocol::names::check_topic(&self.topic)
            .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
        if self.body.is_empty() {
            return Err(ClientError::InvalidArgument("the message body is empty".into()));
        }
        if self.body.len() > max_bytes {
            return Err(ClientError::MessageTooLarge { bytes: self.body.len(), max_bytes });
        }
        if self.properties.contains_key(property::MOVED_FROM) {
            return Err(ClientError::InvalidArgument(format!(
                "property {} is the broker's own",
                property::MOVED_FROM
            )));
        }
        for (k, v) in &self.properties {
            let bad = |s: &str| s.contains(['\u{1}', '\u{2}']);
            if k.is_empty() || bad(k) || bad(v) {
                return Err(ClientError::InvalidArgument(format!(
                    "property {k:?}: names are not empty and neither names nor values hold \\u0001 or \\u0002"
                )));
            }
        }
        Ok(())
    }
}

fn is_reply(properties: &BTreeMap<String, String>) -> bool {
    properties.get(property::MSG_TYPE).is_some_and(|t| t == property::REPLY_MESSAGE_TYPE)
}

/// A message as consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageExt {
    /// The topic the user sent to (a retried message's original topic).
    pub topic: String,
    pub body: Bytes,
    pub flag: i32,
    pub properties: BTreeMap<String, String>,
    /// The queue it was read from.
    pub queue: MessageQueue,
    pub queue_offset: i64,
    /// Its position in the broker group's CommitLog.
    pub commit_log_offset: i64,
    pub born_timestamp_ms: i64,
    pub born_host: SocketAddr,
    pub store_timestamp_ms: i64,
    pub store_host: SocketAddr,
    /// How many times it was handed to a listener before this time (0 on first delivery).
    pub reconsume_times: i32,
    pub sys_flag: i32,
}

/// The most bytes compressed bodies may inflate to, per message and per pull (a bound against
/// zip bombs: a pull of 32 messages cannot allocate 32 times this).
pub const INFLATED_MAX_BYTES: u64 = 64 << 20;

/// `body` inflated, when `sys_flag` says it is zlib-compressed (COMPRESSED, with the zlib type
/// or, from 4.x producers, no type) and it inflates to at most `limit` bytes. `None` for bodies
/// that are not compressed, use LZ4 or ZSTD (4.9.x producers can choose them), or do not
/// inflate: those are delivered as they came, with COMPRESSED left in `sys_flag`.
pub(crate) fn inflate(body: &[u8], sys_flag: i32, limit: u64) -> Option<Vec<u8>> {
    use rocketraft_protocol::sysflag::message as flag;
    let kind = sys_flag & flag::COMPRESSION_TYPE_MASK;
    if sys_flag & flag::COMPRESSED == 0 || !(kind == 0 || kind == flag::COMPRESSION_ZLIB) {
        return None;
    }
    let limit = limit.min(INFLATED_MAX_BYTES);
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit as usize));
    let inflated = std::io::Read::read_to_end(
        &mut std::io::Read::take(flate2::read::ZlibDecoder::new(body), limit + 1),
        &mut out,
    );
    match inflated {
        Ok(n) if (n as u64) <= limit => Some(out),
        _ => {
            tracing::warn!(
                bytes = body.len(),
                "a compressed body did not inflate: delivered as it came"
            );
            None
        }
    }
}

/// The record's body as the producer meant it ([`inflate`]d when it can be), and whether it
/// was inflated. `src`, when given, is the buffer `r` was decoded from: a body delivered as
/// stored is then a view of it, not a copy.
fn body_of(r: &RecordView<'_>, src: Option<&Bytes>, budget: &mut u64) -> (Bytes, bool) {
    match inflate(r.body, r.sys_flag, *budget) {
        Some(out) => {
            *budget -= out.len() as u64;
            (Bytes::from(out), true)
        }
        None => match src {
            Some(src) => (src.slice_ref(r.body), false),
            None => (Bytes::copy_from_slice(r.body), false),
        },
    }
}

impl MessageExt {
    pub(crate) fn from_record(r: &RecordView<'_>, broker_name: &str) -> Self {
        let mut budget = INFLATED_MAX_BYTES;
        Self::from_record_within(r, None, broker_name, &mut budget)
    }

    /// As `from_record`, inflating at most `budget` bytes (what is left of a pull's). With
    /// `src`, the buffer `r` was decoded from, the body is a view of `src` (no copy): it keeps
    /// that buffer alive while the message lives.
    pub(crate) fn from_record_within(
        r: &RecordView<'_>,
        src: Option<&Bytes>,
        broker_name: &str,
        budget: &mut u64,
    ) -> Self {
        let properties = parse_properties(r.properties);
        let topic =
            properties.get(property::RETRY_TOPIC).cloned().unwrap_or_else(|| r.topic.to_owned());
        let (body, inflated) = body_of(r, src, budget);
        let mut m = MessageExt {
            queue: MessageQueue {
                broker_name: broker_name.to_owned(),
                queue_id: r.queue_id,
                topic: r.topic.to_owned(),
            },
            topic,
            body,
            flag: r.flag,
            properties,
            queue_offset: r.queue_offset,
            commit_log_offset: r.physical_offset,
            born_timestamp_ms: r.born_timestamp,
            born_host: r.born_host,
            store_timestamp_ms: r.store_timestamp,
            store_host: r.store_host,
            reconsume_times: r.reconsume_times,
            sys_flag: r.sys_flag,
        };
        if inflated {
            // The body is no longer compressed: the flag must not say it is.
            m.sys_flag &= !rocketraft_protocol::sysflag::message::COMPRESSED;
        }
        m
    }

    pub fn tags(&self) -> Option<&str> {
        self.properties.get(property::TAGS).map(String::as_str)
    }

    pub fn keys(&self) -> Option<&str> {
        self.properties.get(property::KEYS).map(String::as_str)
    }

    /// Whether this is a reply to a request (as [`crate::Producer::request`] returns them).
    pub fn is_reply(&self) -> bool {
        is_reply(&self.properties)
    }

    /// The producer's message id (UNIQ_KEY), if it set one.
    pub fn msg_id(&self) -> Option<&str> {
        self.properties.get(property::UNIQ_KEY).map(String::as_str)
    }

    /// The broker's id for this record: store host and CommitLog position.
    pub fn offset_msg_id(&self) -> String {
        rocketraft_protocol::message::offset_msg_id(self.store_host, self.commit_log_offset)
    }

    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(body: &[u8], sys_flag: i32) -> Vec<u8> {
        rocketraft_protocol::message::MessageRecord {
            body: Bytes::copy_from_slice(body),
            sys_flag,
            topic: "T".into(),
            properties: String::new(),
            born_host: "127.0.0.1:1".parse().unwrap(),
            store_host: "127.0.0.1:2".parse().unwrap(),
            ..Default::default()
        }
        .encode()
        .unwrap()
    }

    #[test]
    fn zlib_bodies_from_java_producers_are_inflated() {
        use rocketraft_protocol::sysflag::message as flag;
        use std::io::Write;
        let text = "a body a Java producer compressed ".repeat(200);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(5));
        z.write_all(text.as_bytes()).unwrap();
        let zipped = z.finish().unwrap();
        for kind in [0, flag::COMPRESSION_ZLIB] {
            let raw = record(&zipped, flag::COMPRESSED | kind);
            let m = MessageExt::from_record(&RecordView::decode(&raw).unwrap(), "b");
            assert_eq!(m.body, text.as_bytes(), "kind {kind:#x}");
            assert_eq!(m.sys_flag & flag::COMPRESSED, 0, "the flag follows the body");
        }
        // LZ4 is not inflated here, and garbage that claims zlib is delivered as stored.
        for (body, kind) in [(&zipped[..], flag::COMPRESSION_LZ4), (&b"not zlib"[..], 0)] {
            let raw = record(body, flag::COMPRESSED | kind);
            let m = MessageExt::from_record(&RecordView::decode(&raw).unwrap(), "b");
            assert_eq!(&m.body[..], body);
            assert_ne!(m.sys_flag & flag::COMPRESSED, 0);
        }
    }

    #[test]
    fn bad_messages_are_refused_with_the_reason() {
        let ok = Message::new("T", "x").with_tags("A").with_keys(["k1", "k2"]);
        assert!(ok.validate(10).is_ok());
        assert_eq!(ok.keys(), Some("k1 k2"));
        assert!(matches!(
            Message::new("T", vec![0u8; 11]).validate(10),
            Err(ClientError::MessageTooLarge { bytes: 11, max_bytes: 10 })
        ));
        for bad in [
            Message::new("", "x"),
            Message::new("a b", "x"),
            Message::new("T", ""),
            Message::new("T", "x").with_property("k", "a\u{1}b"),
            Message::new("t".repeat(128), "x"),
        ] {
            assert!(matches!(bad.validate(10), Err(ClientError::InvalidArgument(_))), "{bad:?}");
        }
    }
}
