//! The stored message record (reference §3.1): the same bytes are written to the CommitLog,
//! returned in PULL / QUERY_MESSAGE / VIEW_MESSAGE_BY_ID bodies and sent with
//! CHECK_TRANSACTION_STATE. Also the batch body of SEND_BATCH_MESSAGE (§3.7), the properties
//! string (§3.4), Java's `String.hashCode()` and the two message id formats (§3.6).
//!
//! Invariants: [`RecordView::decode`] checks every length against the record's TOTALSIZE and
//! the buffer, so a record either decodes whole or is a typed error; `encode` then `decode` is
//! the identity; the IPv6 sysFlag bits always agree with the hosts.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

use crate::command::Reader;
use crate::error::{ProtocolError, Result};
use crate::sysflag;

/// MAGICCODE of a V1 record (1-byte topic length).
pub const MAGIC_V1: u32 = 0xDAA3_20A7;
/// MAGICCODE of a V2 record (2-byte topic length; topics longer than 127 bytes).
pub const MAGIC_V2: u32 = 0xDAA3_20AB;
/// MAGICCODE of the blank filler at the end of a RocketMQ CommitLog file.
pub const MAGIC_BLANK: u32 = 0xCBD4_3194;
/// Longest topic a V1 record can hold.
pub const TOPIC_V1_MAX_BYTES: usize = 127;
/// RocketMQ's `maxMessageSize` default: the largest message body a broker accepts.
pub const MESSAGE_MAX_BYTES_DEFAULT: usize = 4 * 1024 * 1024;
/// Longest properties string (its length field is a signed 16-bit integer).
pub const PROPERTIES_MAX_BYTES: usize = i16::MAX as usize;

/// Byte position of QUEUEOFFSET in every record.
pub const QUEUE_OFFSET_POS: usize = 20;
/// Byte position of PHYSICALOFFSET in every record.
pub const PHYSICAL_OFFSET_POS: usize = 28;
/// Byte position of SYSFLAG in every record.
pub const SYS_FLAG_POS: usize = 36;
/// Byte position of BORNHOST in every record (STORETIMESTAMP follows it).
const BORN_HOST_POS: usize = 48;
/// The smallest possible record: IPv4 hosts, empty body, topic and properties.
pub const RECORD_MIN_BYTES: usize = 84 + 4 + 1 + 2;
/// The most a record adds to its body: the fixed fields with IPv6 hosts (2 x 12 bytes more),
/// a V2 topic (2-byte length) of the longest name [`crate::names`] accepts, and the longest
/// properties string.
pub const RECORD_OVERHEAD_MAX_BYTES: usize = RECORD_MIN_BYTES + 24 + 1 + 255 + PROPERTIES_MAX_BYTES;

/// The largest record a message of at most `body_max_bytes` can make. The broker refuses a body
/// over its `message_max_bytes` and a record over this, so the two limits agree: every body a
/// client may send fits a record the log takes.
pub const fn record_max_bytes(body_max_bytes: usize) -> usize {
    body_max_bytes.saturating_add(RECORD_OVERHEAD_MAX_BYTES)
}

/// Property keys (`MessageConst.java`).
pub mod property {
    pub const TAGS: &str = "TAGS";
    pub const KEYS: &str = "KEYS";
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    pub const WAIT: &str = "WAIT";
    pub const DELAY: &str = "DELAY";
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    pub const REAL_QID: &str = "REAL_QID";
    pub const TRAN_MSG: &str = "TRAN_MSG";
    pub const PGROUP: &str = "PGROUP";
    pub const MIN_OFFSET: &str = "MIN_OFFSET";
    pub const MAX_OFFSET: &str = "MAX_OFFSET";
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    pub const CONSUME_START_TIME: &str = "CONSUME_START_TIME";
    pub const TRAN_PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";
    pub const TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
    pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
    pub const MSG_REGION: &str = "MSG_REGION";
    pub const TRACE_ON: &str = "TRACE_ON";
    /// Set by the broker on every message sent: its cluster (a replier finds the cluster's
    /// reply topic by it).
    pub const CLUSTER: &str = "CLUSTER";
    /// Request-reply: the request's id, copied onto its reply.
    pub const CORRELATION_ID: &str = "CORRELATION_ID";
    /// Request-reply: the client id of the producer waiting for the reply.
    pub const REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
    /// Request-reply: how long the requester waits, in ms.
    pub const TTL: &str = "TTL";
    /// Request-reply: when the requester got the reply (ms since the epoch; set on receipt).
    pub const ARRIVE_TIME: &str = "ARRIVE_TIME";
    /// Request-reply: when the broker pushed the reply (ms since the epoch).
    pub const PUSH_REPLY_TIME: &str = "PUSH_REPLY_TIME";
    /// Request-reply: [`REPLY_MESSAGE_TYPE`] marks a reply, which producers send with
    /// SEND_REPLY_MESSAGE.
    pub const MSG_TYPE: &str = "MSG_TYPE";
    /// The value of [`MSG_TYPE`] on a reply (RocketMQ's `REPLY_MESSAGE_FLAG`).
    pub const REPLY_MESSAGE_TYPE: &str = "reply";
    pub const SHARDING_KEY: &str = "__SHARDINGKEY";
    /// 5.x timer messages: the absolute delivery time (ms since the epoch).
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    /// 5.x timer messages: a delay in seconds from the send.
    pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
    /// 5.x timer messages: a delay in milliseconds from the send.
    pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
    /// When a parked message (delay level or timer) is due to move on, ms since the epoch: set
    /// by the broker on every record it parks, and the parked record's ConsumeQueue tag code.
    pub const TIMER_OUT_MS: &str = "TIMER_OUT_MS";
    /// RocketRaft's own: on a record the broker moved out of a parked queue (delay level,
    /// timer), `<topic>:<queue id>:<queue offset>` of the parked record. Applying it records
    /// that queue's progress in the same Raft entry as the moved copy, so a new leader goes on
    /// exactly where the old one stopped. Clients may not set it.
    pub const MOVED_FROM: &str = "RR_MOVED_FROM";
    /// Separates the keys inside KEYS.
    pub const KEY_SEPARATOR: char = ' ';
    /// Between a property's name and value.
    pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
    /// Between properties.
    pub const PROPERTY_SEPARATOR: char = '\u{2}';
}

/// A record decoded without copying: strings and body borrow from the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub total_size: usize,
    pub magic: u32,
    pub body_crc: u32,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: &'a [u8],
    pub topic: &'a str,
    pub properties: &'a str,
}

/// An owned record: what a producer's message becomes once the broker stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub body_crc: u32,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: Bytes,
    pub topic: String,
    pub properties: String,
}

/// An empty IPv4 record (hosts `0.0.0.0:0`, every number 0): set the fields that matter.
impl Default for MessageRecord {
    fn default() -> Self {
        let nowhere = SocketAddr::from(([0, 0, 0, 0], 0));
        MessageRecord {
            body_crc: body_crc(&[]),
            queue_id: 0,
            flag: 0,
            queue_offset: 0,
            physical_offset: 0,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: nowhere,
            store_timestamp: 0,
            store_host: nowhere,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Bytes::new(),
            topic: String::new(),
            properties: String::new(),
        }
    }
}

fn host_bytes(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => 8,
        SocketAddr::V6(_) => 20,
    }
}

fn put_host(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&i32::from(addr.port()).to_be_bytes());
}

fn read_host(r: &mut Reader<'_>, v6: bool) -> Result<SocketAddr> {
    let ip = if v6 {
        let mut o = [0u8; 16];
        o.copy_from_slice(r.bytes(16)?);
        IpAddr::V6(Ipv6Addr::from(o))
    } else {
        let mut o = [0u8; 4];
        o.copy_from_slice(r.bytes(4)?);
        IpAddr::V4(Ipv4Addr::from(o))
    };
    // Java writes the port as an int32; only the low 16 bits are meaningful.
    let port = r.i32()? as u16;
    Ok(SocketAddr::new(ip, port))
}

/// CRC32 of a body as RocketMQ stores it (`UtilAll.crc32`: masked to 31 bits).
pub fn body_crc(body: &[u8]) -> u32 {
    crc32fast::hash(body) & 0x7FFF_FFFF
}

impl MessageRecord {
    /// The sysFlag with its IPv6 bits made to agree with the hosts.
    pub fn normalized_sys_flag(&self) -> i32 {
        let mut f =
            self.sys_flag & !(sysflag::message::BORNHOST_V6 | sysflag::message::STOREHOST_V6);
        if self.born_host.is_ipv6() {
            f |= sysflag::message::BORNHOST_V6;
        }
        if self.store_host.is_ipv6() {
            f |= sysflag::message::STOREHOST_V6;
        }
        f
    }

    /// The encoded size of this record.
    pub fn encoded_len(&self) -> usize {
        let topic_len_bytes = if self.topic.len() > TOPIC_V1_MAX_BYTES { 2 } else { 1 };
        84 - 16
            + host_bytes(&self.born_host)
            + host_bytes(&self.store_host)
            + 4
            + self.body.len()
            + topic_len_bytes
            + self.topic.len()
            + 2
            + self.properties.len()
    }

    /// Appends the record to `out`. The magic is V1 unless the topic needs V2.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        if self.topic.len() > i16::MAX as usize {
            return Err(ProtocolError::OutOfRange {
                what: "record topic",
                reason: format!("{} bytes exceed the 2-byte topic length", self.topic.len()),
            });
        }
        if self.properties.len() > PROPERTIES_MAX_BYTES {
            return Err(ProtocolError::OutOfRange {
                what: "record properties",
                reason: format!("{} bytes exceed {PROPERTIES_MAX_BYTES}", self.properties.len()),
            });
        }
        let total = self.encoded_len();
        let total_i32 = i32::try_from(total).map_err(|_| ProtocolError::OutOfRange {
            what: "record",
            reason: format!("{total} bytes exceed a 32-bit size"),
        })?;
        let v2 = self.topic.len() > TOPIC_V1_MAX_BYTES;
        out.reserve(total);
        out.extend_from_slice(&total_i32.to_be_bytes());
        out.extend_from_slice(&(if v2 { MAGIC_V2 } else { MAGIC_V1 }).to_be_bytes());
        out.extend_from_slice(&self.body_crc.to_be_bytes());
        out.extend_from_slice(&self.queue_id.to_be_bytes());
        out.extend_from_slice(&self.flag.to_be_bytes());
        out.extend_from_slice(&self.queue_offset.to_be_bytes());
        out.extend_from_slice(&self.physical_offset.to_be_bytes());
        out.extend_from_slice(&self.normalized_sys_flag().to_be_bytes());
        out.extend_from_slice(&self.born_timestamp.to_be_bytes());
        put_host(out, &self.born_host);
        out.extend_from_slice(&self.store_timestamp.to_be_bytes());
        put_host(out, &self.store_host);
        out.extend_from_slice(&self.reconsume_times.to_be_bytes());
        out.extend_from_slice(&self.prepared_transaction_offset.to_be_bytes());
        out.extend_from_slice(&(self.body.len() as i32).to_be_bytes());
        out.extend_from_slice(&self.body);
        if v2 {
            out.extend_from_slice(&(self.topic.len() as i16).to_be_bytes());
        } else {
            out.push(self.topic.len() as u8);
        }
        out.extend_from_slice(self.topic.as_bytes());
        out.extend_from_slice(&(self.properties.len() as i16).to_be_bytes());
        out.extend_from_slice(self.properties.as_bytes());
        Ok(())
    }

    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Decodes the record at the start of `buf`.
    pub fn decode(buf: &[u8]) -> Result<MessageRecord> {
        RecordView::decode(buf).map(|v| v.to_owned_record())
    }

    /// The value of one property.
    pub fn property(&self, key: &str) -> Option<&str> {
        find_property(&self.properties, key)
    }

    /// The offset message id of this record (store host + physical offset).
    pub fn offset_msg_id(&self) -> String {
        offset_msg_id(self.store_host, self.physical_offset)
    }
}

impl<'a> RecordView<'a> {
    /// Decodes the record at the start of `buf`; `buf` may hold more after it.
    pub fn decode(buf: &'a [u8]) -> Result<RecordView<'a>> {
        let mut r = Reader::new(buf, "message record");
        let total = r.i32()?;
        let total_size = usize::try_from(total).ok().filter(|t| *t >= RECORD_MIN_BYTES).ok_or(
            ProtocolError::InvalidLength { what: "record TOTALSIZE", length: total.into() },
        )?;
        if total_size > buf.len() {
            return Err(ProtocolError::Truncated {
                what: "message record",
                offset: 0,
                needed_bytes: total_size,
                available_bytes: buf.len(),
            });
        }
        let mut r = Reader::new(&buf[..total_size], "message record");
        r.i32()?;
        let magic = r.u32()?;
        if magic != MAGIC_V1 && magic != MAGIC_V2 {
            return Err(ProtocolError::BadMagic { what: "message record", magic });
        }
        let body_crc = r.u32()?;
        let queue_id = r.i32()?;
        let flag = r.i32()?;
        let queue_offset = r.i64()?;
        let physical_offset = r.i64()?;
        let sys_flag = r.i32()?;
        let born_timestamp = r.i64()?;
        let born_host = read_host(&mut r, sys_flag & sysflag::message::BORNHOST_V6 != 0)?;
        let store_timestamp = r.i64()?;
        let store_host = read_host(&mut r, sys_flag & sysflag::message::STOREHOST_V6 != 0)?;
        let reconsume_times = r.i32()?;
        let prepared_transaction_offset = r.i64()?;
        let body_len = r.len_i32("record body")?;
        let body = r.bytes(body_len)?;
        let topic_len = if magic == MAGIC_V2 {
            let n = r.i16()?;
            usize::try_from(n).map_err(|_| ProtocolError::InvalidLength {
                what: "record topic",
                length: n.into(),
            })?
        } else {
            usize::from(r.u8()?)
        };
        let topic = std::str::from_utf8(r.bytes(topic_len)?)
            .map_err(|_| ProtocolError::InvalidUtf8 { what: "record topic" })?;
        let props_len = r.i16()?;
        let props_len = usize::try_from(props_len).map_err(|_| ProtocolError::InvalidLength {
            what: "record properties",
            length: props_len.into(),
        })?;
        let properties = std::str::from_utf8(r.bytes(props_len)?)
            .map_err(|_| ProtocolError::InvalidUtf8 { what: "record properties" })?;
        if !r.is_empty() {
            return Err(ProtocolError::InvalidLength {
                what: "record TOTALSIZE (fields end before it)",
                length: total.into(),
            });
        }
        Ok(RecordView {
            total_size,
            magic,
            body_crc,
            queue_id,
            flag,
            queue_offset,
            physical_offset,
            sys_flag,
            born_timestamp,
            born_host,
            store_timestamp,
            store_host,
            reconsume_times,
            prepared_transaction_offset,
            body,
            topic,
            properties,
        })
    }

    /// Checks the stored BODYCRC against the body.
    pub fn verify_body_crc(&self) -> Result<()> {
        let computed = body_crc(self.body);
        if computed != self.body_crc {
            return Err(ProtocolError::CrcMismatch {
                what: "record body",
                stored: self.body_crc,
                computed,
            });
        }
        Ok(())
    }

    pub fn property(&self, key: &str) -> Option<&'a str> {
        find_property(self.properties, key)
    }

    pub fn to_owned_record(&self) -> MessageRecord {
        MessageRecord {
            body_crc: self.body_crc,
            queue_id: self.queue_id,
            flag: self.flag,
            queue_offset: self.queue_offset,
            physical_offset: self.physical_offset,
            sys_flag: self.sys_flag,
            born_timestamp: self.born_timestamp,
            born_host: self.born_host,
            store_timestamp: self.store_timestamp,
            store_host: self.store_host,
            reconsume_times: self.reconsume_times,
            prepared_transaction_offset: self.prepared_transaction_offset,
            body: Bytes::copy_from_slice(self.body),
            topic: self.topic.to_owned(),
            properties: self.properties.to_owned(),
        }
    }
}

/// Decodes records back to back until `buf` ends (a PULL or QUERY_MESSAGE body).
pub fn decode_records(buf: &[u8]) -> Result<Vec<RecordView<'_>>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let view = RecordView::decode(&buf[at..])?;
        at += view.total_size;
        out.push(view);
    }
    Ok(out)
}

/// Overwrites QUEUEOFFSET of the encoded record at the start of `record`.
pub fn patch_queue_offset(record: &mut [u8], queue_offset: i64) {
    record[QUEUE_OFFSET_POS..QUEUE_OFFSET_POS + 8].copy_from_slice(&queue_offset.to_be_bytes());
}

/// Overwrites PHYSICALOFFSET of the encoded record at the start of `record`.
pub fn patch_physical_offset(record: &mut [u8], physical_offset: i64) {
    record[PHYSICAL_OFFSET_POS..PHYSICAL_OFFSET_POS + 8]
        .copy_from_slice(&physical_offset.to_be_bytes());
}

/// Overwrites STORETIMESTAMP of the encoded record at the start of `record`.
pub fn patch_store_timestamp(record: &mut [u8], store_timestamp: i64) {
    let sys_flag = i32::from_be_bytes([
        record[SYS_FLAG_POS],
        record[SYS_FLAG_POS + 1],
        record[SYS_FLAG_POS + 2],
        record[SYS_FLAG_POS + 3],
    ]);
    let born_host_bytes = if sys_flag & sysflag::message::BORNHOST_V6 != 0 { 20 } else { 8 };
    let at = BORN_HOST_POS + born_host_bytes;
    record[at..at + 8].copy_from_slice(&store_timestamp.to_be_bytes());
}

// ---------------------------------------------------------------------------------------------
// Batch body (SEND_BATCH_MESSAGE)

/// One message inside a SEND_BATCH_MESSAGE body (reference §3.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchMessage {
    pub flag: i32,
    pub body: Bytes,
    pub properties: String,
}

/// Encodes `[TOTALSIZE][MAGIC=0][BODYCRC=0][FLAG][BODYLEN][BODY][PROPLEN int16][PROPS]` for
/// each message, back to back.
pub fn encode_batch(messages: &[BatchMessage]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for m in messages {
        if m.properties.len() > PROPERTIES_MAX_BYTES {
            return Err(ProtocolError::OutOfRange {
                what: "batch message properties",
                reason: format!("{} bytes exceed {PROPERTIES_MAX_BYTES}", m.properties.len()),
            });
        }
        let total = 4 + 4 + 4 + 4 + 4 + m.body.len() + 2 + m.properties.len();
        let total = i32::try_from(total).map_err(|_| ProtocolError::OutOfRange {
            what: "batch message",
            reason: format!("{total} bytes exceed a 32-bit size"),
        })?;
        out.extend_from_slice(&total.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&m.flag.to_be_bytes());
        out.extend_from_slice(&(m.body.len() as i32).to_be_bytes());
        out.extend_from_slice(&m.body);
        out.extend_from_slice(&(m.properties.len() as i16).to_be_bytes());
        out.extend_from_slice(m.properties.as_bytes());
    }
    Ok(out)
}

/// Decodes a SEND_BATCH_MESSAGE body. Each inner TOTALSIZE must match its fields exactly.
pub fn decode_batch(buf: &[u8]) -> Result<Vec<BatchMessage>> {
    let mut out = Vec::new();
    let mut r = Reader::new(buf, "batch body");
    while !r.is_empty() {
        let start = r.position();
        let total = r.len_i32("batch message TOTALSIZE")?;
        r.i32()?; // magic, unused
        r.i32()?; // body crc, unused
        let flag = r.i32()?;
        let body_len = r.len_i32("batch message body")?;
        let body = Bytes::copy_from_slice(r.bytes(body_len)?);
        let props_len = r.i16()?;
        let props_len = usize::try_from(props_len).map_err(|_| ProtocolError::InvalidLength {
            what: "batch message properties",
            length: props_len.into(),
        })?;
        let properties = std::str::from_utf8(r.bytes(props_len)?)
            .map_err(|_| ProtocolError::InvalidUtf8 { what: "batch message properties" })?
            .to_owned();
        if r.position() - start != total {
            return Err(ProtocolError::InvalidLength {
                what: "batch message TOTALSIZE",
                length: total as i64,
            });
        }
        out.push(BatchMessage { flag, body, properties });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Properties

/// Parses `k\u1v\u2k\u1v...`; a segment without a separator, or with an empty key or value,
/// is skipped (as Java's parser does). A trailing separator (3.x clients) is tolerated.
pub fn parse_properties(s: &str) -> BTreeMap<String, String> {
    property_pairs(s).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

fn property_pairs(s: &str) -> impl Iterator<Item = (&str, &str)> {
    s.split(property::PROPERTY_SEPARATOR).filter_map(|seg| {
        let (k, v) = seg.split_once(property::NAME_VALUE_SEPARATOR)?;
        (!k.is_empty() && !v.is_empty()).then_some((k, v))
    })
}

/// One property's value, without allocating.
pub fn find_property<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    property_pairs(s).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// `s` without the properties named in `remove`, then `set` (each replacing a property of
/// that name): the properties of a message the broker moves or copies. Order is kept.
pub fn rewrite_properties(s: &str, remove: &[&str], set: &[(&str, &str)]) -> String {
    let kept = property_pairs(s)
        .filter(|(k, _)| !remove.contains(k) && !set.iter().any(|(name, _)| name == k));
    properties_to_string(kept.chain(set.iter().copied()))
}

/// `s` with `key` set to `value`: unchanged when it already says so, appended when it has no
/// such property (no copy of the rest), rewritten otherwise. An empty `value` removes it.
pub fn set_property(mut s: String, key: &str, value: &str) -> String {
    match find_property(&s, key) {
        Some(v) if v == value => s,
        None if !value.is_empty() => {
            if !s.is_empty() && !s.ends_with(property::PROPERTY_SEPARATOR) {
                s.push(property::PROPERTY_SEPARATOR);
            }
            s.push_str(key);
            s.push(property::NAME_VALUE_SEPARATOR);
            s.push_str(value);
            s
        }
        _ => rewrite_properties(&s, &[key], &[(key, value)]),
    }
}

/// Writes properties with no trailing separator (4.9.x form); empty values are left out.
pub fn properties_to_string<'a>(props: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in props {
        if k.is_empty() || v.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(property::PROPERTY_SEPARATOR);
        }
        out.push_str(k);
        out.push(property::NAME_VALUE_SEPARATOR);
        out.push_str(v);
    }
    out
}

/// The keys of a KEYS property (space separated; empty tokens dropped).
pub fn split_keys(keys: &str) -> impl Iterator<Item = &str> {
    keys.split(property::KEY_SEPARATOR).filter(|k| !k.is_empty())
}

// ---------------------------------------------------------------------------------------------
// Java hashing

/// Java's `String.hashCode()`: `h = 31*h + c` over UTF-16 code units, wrapping at 32 bits.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The ConsumeQueue tags code of a TAGS value: its Java hash, 0 when there is no tag.
pub fn tags_code(tags: Option<&str>) -> i64 {
    match tags {
        Some(t) if !t.is_empty() => i64::from(java_string_hash(t)),
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// Message ids

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xF)] as char);
    }
}

fn parse_hex(id: &str) -> Result<Vec<u8>> {
    let bad = || ProtocolError::InvalidMessageId { id: id.to_owned(), reason: "not hexadecimal" };
    if !id.len().is_multiple_of(2) {
        return Err(bad());
    }
    id.as_bytes()
        .chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16).ok_or_else(bad)?;
            let lo = (pair[1] as char).to_digit(16).ok_or_else(bad)?;
            Ok((hi * 16 + lo) as u8)
        })
        .collect()
}

/// The offset message id: store host IP + port (int32) + CommitLog offset (int64), upper-case
/// hex; 32 characters for IPv4, 56 for IPv6.
pub fn offset_msg_id(store_host: SocketAddr, physical_offset: i64) -> String {
    let mut raw = Vec::with_capacity(28);
    put_host(&mut raw, &store_host);
    raw.extend_from_slice(&physical_offset.to_be_bytes());
    let mut out = String::with_capacity(raw.len() * 2);
    push_hex(&mut out, &raw);
    out
}

/// Decodes an offset message id into its store host and CommitLog offset.
pub fn decode_offset_msg_id(id: &str) -> Result<(SocketAddr, i64)> {
    let v6 = match id.len() {
        32 => false,
        56 => true,
        _ => {
            return Err(ProtocolError::InvalidMessageId {
                id: id.to_owned(),
                reason: "an offset message id has 32 (IPv4) or 56 (IPv6) hex characters",
            })
        }
    };
    let raw = parse_hex(id)?;
    let mut r = Reader::new(&raw, "offset message id");
    let host = read_host(&mut r, v6)?;
    Ok((host, r.i64()?))
}

/// Makes client message ids (UNIQ_KEY, reference §3.6): client IP + pid (int16) + a per-client
/// hash (int32) + milliseconds since the start of the current month (int32) + a counter
/// (int16). It reads no clock: the caller passes the time.
#[derive(Debug, Clone)]
pub struct UniqKeyGenerator {
    prefix: String,
    counter: u16,
}

impl UniqKeyGenerator {
    pub fn new(client_ip: IpAddr, pid: u32, client_hash: i32) -> Self {
        let mut raw = Vec::with_capacity(22);
        match client_ip {
            IpAddr::V4(ip) => raw.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => raw.extend_from_slice(&ip.octets()),
        }
        raw.extend_from_slice(&(pid as i16).to_be_bytes());
        raw.extend_from_slice(&client_hash.to_be_bytes());
        let mut prefix = String::with_capacity(raw.len() * 2);
        push_hex(&mut prefix, &raw);
        UniqKeyGenerator { prefix, counter: 0 }
    }

    /// The next id, for a message created at `now_ms` (Unix milliseconds).
    pub fn next_id(&mut self, now_ms: i64) -> String {
        let since_month = now_ms - start_of_month_ms(now_ms);
        let mut out = String::with_capacity(self.prefix.len() + 12);
        out.push_str(&self.prefix);
        push_hex(&mut out, &(since_month as i32).to_be_bytes());
        push_hex(&mut out, &self.counter.to_be_bytes());
        self.counter = self.counter.wrapping_add(1);
        out
    }
}

/// Unix milliseconds at 00:00 UTC on the first day of the month holding `ms`.
pub fn start_of_month_ms(ms: i64) -> i64 {
    const DAY_MS: i64 = 86_400_000;
    let (y, m, _) = civil_from_days(ms.div_euclid(DAY_MS));
    days_from_civil(y, m, 1) * DAY_MS
}

// Howard Hinnant's proleptic Gregorian calendar conversions.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(topic: &str, born: SocketAddr, store: SocketAddr) -> MessageRecord {
        let body = Bytes::from_static(b"hello");
        MessageRecord {
            body_crc: body_crc(&body),
            queue_id: 3,
            flag: 7,
            queue_offset: 42,
            physical_offset: 4096,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            born_host: born,
            store_timestamp: 1_700_000_000_123,
            store_host: store,
            reconsume_times: 1,
            prepared_transaction_offset: 0,
            body,
            topic: topic.to_owned(),
            properties: properties_to_string([("TAGS", "TagA"), ("KEYS", "k1 k2")]),
        }
    }

    fn v4(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Field offsets of §3.1 for IPv4 hosts, checked byte by byte.
    #[test]
    fn rewritten_properties_drop_and_replace_in_place() {
        let s =
            properties_to_string([("DELAY", "3"), ("KEYS", "k"), ("REAL_TOPIC", "T"), ("A", "1")]);
        let out = rewrite_properties(&s, &["DELAY"], &[("A", "2"), ("NEW", "x")]);
        assert_eq!(
            out,
            properties_to_string([("KEYS", "k"), ("REAL_TOPIC", "T"), ("A", "2"), ("NEW", "x")])
        );
        assert_eq!(rewrite_properties("", &[], &[]), "");
    }

    #[test]
    fn a_set_property_is_appended_kept_or_replaced() {
        let s = properties_to_string([("KEYS", "k"), ("CLUSTER", "C")]);
        assert_eq!(set_property(s.clone(), "CLUSTER", "C"), s);
        assert_eq!(
            set_property(s.clone(), "CLUSTER", "D"),
            properties_to_string([("KEYS", "k"), ("CLUSTER", "D")])
        );
        assert_eq!(
            set_property(s.clone(), "A", "1"),
            properties_to_string([("KEYS", "k"), ("CLUSTER", "C"), ("A", "1")])
        );
        assert_eq!(set_property(String::new(), "A", "1"), properties_to_string([("A", "1")]));
        // A 3.x client's trailing separator is not doubled.
        let trailing = "KEYS\u{1}k\u{2}".to_owned();
        assert_eq!(find_property(&set_property(trailing, "A", "1"), "A"), Some("1"));
        assert_eq!(set_property(s, "CLUSTER", ""), properties_to_string([("KEYS", "k")]));
    }

    #[test]
    fn record_fields_sit_at_the_reference_offsets() {
        let rec = sample("TopicTest", v4("10.0.0.1:1234"), v4("10.0.0.2:10911"));
        let b = rec.encode().unwrap();
        let be32 = |at: usize| i32::from_be_bytes(b[at..at + 4].try_into().unwrap());
        let be64 = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().unwrap());
        assert_eq!(be32(0) as usize, b.len());
        assert_eq!(be32(4) as u32, MAGIC_V1);
        assert_eq!(be32(8) as u32, body_crc(b"hello"));
        assert_eq!(be32(12), 3);
        assert_eq!(be32(16), 7);
        assert_eq!(be64(20), 42);
        assert_eq!(be64(28), 4096);
        assert_eq!(be32(36), 0);
        assert_eq!(be64(40), 1_700_000_000_000);
        assert_eq!(&b[48..52], &[10, 0, 0, 1]);
        assert_eq!(be32(52), 1234);
        assert_eq!(be64(56), 1_700_000_000_123);
        assert_eq!(&b[64..68], &[10, 0, 0, 2]);
        assert_eq!(be32(68), 10911);
        assert_eq!(be32(72), 1);
        assert_eq!(be64(76), 0);
        assert_eq!(be32(84), 5);
        assert_eq!(&b[88..93], b"hello");
        assert_eq!(b[93], 9);
        assert_eq!(&b[94..103], b"TopicTest");
        let props = "TAGS\u{1}TagA\u{2}KEYS\u{1}k1 k2";
        assert_eq!(i16::from_be_bytes([b[103], b[104]]) as usize, props.len());
        assert_eq!(&b[105..], props.as_bytes());
    }

    #[test]
    fn ipv6_hosts_set_the_flags_and_shift_the_fields() {
        let rec = sample("T", "[::1]:5".parse().unwrap(), "[fe80::2]:10911".parse().unwrap());
        let b = rec.encode().unwrap();
        let view = RecordView::decode(&b).unwrap();
        assert_eq!(view.sys_flag & 0x30, 0x30);
        assert_eq!(view.total_size, b.len());
        assert_eq!(view.store_timestamp, 1_700_000_000_123);
        assert_eq!(b.len(), rec.encoded_len());
        let mut patched = b.clone();
        patch_store_timestamp(&mut patched, 99);
        patch_queue_offset(&mut patched, 7);
        patch_physical_offset(&mut patched, 8);
        let view = RecordView::decode(&patched).unwrap();
        assert_eq!((view.store_timestamp, view.queue_offset, view.physical_offset), (99, 7, 8));
    }

    #[test]
    fn long_topics_use_the_v2_magic() {
        let topic = "t".repeat(200);
        let rec = sample(&topic, v4("1.2.3.4:5"), v4("1.2.3.4:6"));
        let b = rec.encode().unwrap();
        assert_eq!(u32::from_be_bytes(b[4..8].try_into().unwrap()), MAGIC_V2);
        assert_eq!(MessageRecord::decode(&b).unwrap(), rec);
    }

    #[test]
    fn every_truncation_and_a_corrupt_body_are_caught() {
        let rec = sample("T", v4("1.2.3.4:5"), v4("1.2.3.4:6"));
        let b = rec.encode().unwrap();
        for cut in 0..b.len() {
            assert!(RecordView::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = b.clone();
        bad[90] ^= 0xFF;
        let view = RecordView::decode(&bad).unwrap();
        assert!(matches!(view.verify_body_crc(), Err(ProtocolError::CrcMismatch { .. })));
        let mut bad_magic = b.clone();
        bad_magic[4] = 0;
        assert!(matches!(RecordView::decode(&bad_magic), Err(ProtocolError::BadMagic { .. })));
        // TOTALSIZE larger than the fields: refused rather than read as garbage.
        let mut padded = b.clone();
        padded.push(0);
        let len = padded.len() as i32;
        padded[0..4].copy_from_slice(&len.to_be_bytes());
        assert!(RecordView::decode(&padded).is_err());
    }

    #[test]
    fn records_back_to_back() {
        let a = sample("A", v4("1.2.3.4:5"), v4("1.2.3.4:6"));
        let b = sample("B", "[::1]:5".parse().unwrap(), v4("1.2.3.4:6"));
        let mut buf = a.encode().unwrap();
        buf.extend(b.encode().unwrap());
        let views = decode_records(&buf).unwrap();
        assert_eq!(views.iter().map(|v| v.topic).collect::<Vec<_>>(), vec!["A", "B"]);
    }

    #[test]
    fn properties_follow_java_rules() {
        let p = parse_properties("TAGS\u{1}TAG\u{2}WAIT\u{1}true\u{2}KEYS\u{1}ffff\u{2}");
        assert_eq!(p.get("KEYS").map(String::as_str), Some("ffff"));
        assert_eq!(p.len(), 3);
        assert!(parse_properties("x\u{2}\u{1}v\u{2}k\u{1}").is_empty());
        assert_eq!(find_property("A\u{1}1\u{2}B\u{1}2", "B"), Some("2"));
        assert_eq!(
            properties_to_string([("A", "1"), ("E", ""), ("B", "2")]),
            "A\u{1}1\u{2}B\u{1}2"
        );
        assert_eq!(split_keys(" k1  k2 ").collect::<Vec<_>>(), vec!["k1", "k2"]);
    }

    #[test]
    fn java_hash_code_matches_java() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("TagA"), 2_598_919); // the codeSet value of reference §2.4
        assert_eq!(java_string_hash("hello"), 99_162_322);
        // overflow wraps; "polygenelubricants".hashCode() == Integer.MIN_VALUE
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        // UTF-16 units, not bytes or chars: U+1F600 is a surrogate pair (0xD83D 0xDE00)
        assert_eq!(java_string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
        assert_eq!(tags_code(None), 0);
        assert_eq!(tags_code(Some("")), 0);
    }

    #[test]
    fn offset_msg_ids_match_the_reference_example() {
        // 0A02DFA5 00002A9F 0000000163E60ADB from reference §1.2
        let (host, off) = decode_offset_msg_id("0A02DFA500002A9F0000000163E60ADB").unwrap();
        assert_eq!(host, v4("10.2.223.165:10911"));
        assert_eq!(off, 0x0000_0001_63E6_0ADB);
        assert_eq!(offset_msg_id(host, off), "0A02DFA500002A9F0000000163E60ADB");
        let v6: SocketAddr = "[fe80::1]:10911".parse().unwrap();
        let id = offset_msg_id(v6, 77);
        assert_eq!(id.len(), 56);
        assert_eq!(decode_offset_msg_id(&id).unwrap(), (v6, 77));
        assert!(decode_offset_msg_id("XYZ").is_err());
        assert!(decode_offset_msg_id("0A02DFA500002A9F0000000163E60ADG").is_err());
    }

    #[test]
    fn uniq_keys_are_32_hex_chars_and_count_up() {
        let mut g = UniqKeyGenerator::new("10.0.0.5".parse().unwrap(), 1234, 0x1122_3344);
        // 2026-11-22T06:00:00Z; the month started 2026-11-01T00:00:00Z (1793491200000).
        let now = 1_795_327_200_000;
        assert_eq!(start_of_month_ms(now), 1_793_491_200_000);
        let a = g.next_id(now);
        let b = g.next_id(now);
        assert_eq!(a.len(), 32);
        assert_eq!(&a[..20], "0A00000504D211223344");
        assert_eq!(&a[20..28], format!("{:08X}", now - 1_793_491_200_000));
        assert_eq!((&a[28..], &b[28..]), ("0000", "0001"));
    }

    #[test]
    fn calendar_round_trips() {
        for days in [-800_000i64, -1, 0, 1, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, p)| SocketAddr::from((Ipv6Addr::from(ip), p))),
        ]
    }

    prop_compose! {
        fn arb_record()(
            fixed in any::<(u32, i32, i32, i64, i64, i64, i64, i32, i64)>(),
            sys_flag in any::<i32>(),
            born in arb_addr(), store in arb_addr(),
            body in proptest::collection::vec(any::<u8>(), 0..300),
            topic in "[a-zA-Z0-9%_-]{0,300}",
            props in proptest::collection::btree_map("[A-Z_]{1,8}", "[ -~]{1,20}", 0..5),
        ) -> MessageRecord {
            let (crc, queue_id, flag, qo, po, born_ts, store_ts, reconsume, pto) = fixed;
            let mut rec = MessageRecord {
                body_crc: crc, queue_id, flag, queue_offset: qo, physical_offset: po,
                sys_flag, born_timestamp: born_ts, born_host: born, store_timestamp: store_ts,
                store_host: store, reconsume_times: reconsume, prepared_transaction_offset: pto,
                body: body.into(), topic,
                properties: properties_to_string(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            };
            rec.sys_flag = rec.normalized_sys_flag();
            rec
        }
    }

    proptest! {
        #[test]
        fn record_round_trips(rec in arb_record()) {
            let b = rec.encode().unwrap();
            prop_assert_eq!(b.len(), rec.encoded_len());
            prop_assert_eq!(MessageRecord::decode(&b).unwrap(), rec);
        }

        #[test]
        fn batch_round_trips(msgs in proptest::collection::vec(
            (any::<i32>(), proptest::collection::vec(any::<u8>(), 0..100), "[ -~]{0,40}")
                .prop_map(|(flag, body, properties)| BatchMessage { flag, body: body.into(), properties }),
            0..6)) {
            let b = encode_batch(&msgs).unwrap();
            prop_assert_eq!(decode_batch(&b).unwrap(), msgs);
        }

        #[test]
        fn decoders_never_panic_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = RecordView::decode(&bytes);
            let _ = decode_records(&bytes);
            let _ = decode_batch(&bytes);
        }

        #[test]
        fn properties_round_trip(props in proptest::collection::btree_map("[A-Za-z_]{1,8}", "[ -~]{1,20}", 0..6)) {
            let s = properties_to_string(props.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            prop_assert_eq!(parse_properties(&s), props);
        }
    }
}
