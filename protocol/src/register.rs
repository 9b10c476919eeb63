//! REGISTER_BROKER's body in RocketMQ's compressed form (`compressedRegister = true`, reference
//! §2.6), which brokers with many topics send so that a registration fits a frame.
//!
//! The form is a zlib stream (Java's `DeflaterOutputStream`) of length-prefixed parts, each
//! length a big-endian 32-bit integer:
//! - the data version as JSON;
//! - the topic count, then each topic as `TopicConfig.encode()` writes it: the name, read and
//!   write queue counts, perm and filter type separated by single spaces, and (5.x) a sixth
//!   field, the attributes as a JSON object;
//! - the filter server list as JSON;
//! - (5.x only) the static-topic mapping count, then each mapping as JSON. A 4.x stream ends
//!   before it.
//!
//! Unlike the rest of this crate, decoding inflates: the output can be far larger than the
//! input, so [`decode_compressed`] stops at the limits it is given (inflated bytes, topics)
//! and holds at most one part in memory beyond the topics it returns.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use crate::body::{DataVersion, RegisterBrokerBody, TopicConfig};
use crate::error::{ProtocolError, Result};

const WHAT: &str = "compressed registration body";

/// The longest part other than the topic list (the data version, one topic, the filter server
/// list, one mapping).
const PART_MAX_BYTES: usize = 1 << 20;

/// How much a compressed registration may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InflateLimits {
    /// The most bytes the stream may inflate to.
    pub inflated_bytes_max: usize,
    /// The most topics it may list.
    pub topics_max: usize,
}

/// Encodes `body` as a broker with `compressedRegister = true` sends it (the 4.x form: no
/// mapping part; the NameServer reads either).
pub fn encode_compressed(body: &RegisterBrokerBody) -> Vec<u8> {
    let wrapper = &body.topic_config_serialize_wrapper;
    let mut raw = Vec::new();
    put_part(&mut raw, &serde_json::to_vec(&wrapper.data_version).unwrap_or_default());
    raw.extend_from_slice(&(wrapper.topic_config_table.len() as i32).to_be_bytes());
    for t in wrapper.topic_config_table.values() {
        let attributes = serde_json::to_string(&t.attributes).unwrap_or_default();
        let line = format!(
            "{} {} {} {} {} {attributes}",
            t.topic_name, t.read_queue_nums, t.write_queue_nums, t.perm, t.topic_filter_type
        );
        put_part(&mut raw, line.as_bytes());
    }
    put_part(&mut raw, &serde_json::to_vec(&body.filter_server_list).unwrap_or_default());
    zlib(&raw)
}

/// A length-prefixed part.
fn put_part(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn zlib(raw: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = z.write_all(raw);
    z.finish().unwrap_or_default()
}

/// Decodes a compressed registration body within `limits`.
pub fn decode_compressed(data: &[u8], limits: InflateLimits) -> Result<RegisterBrokerBody> {
    let mut r = Inflated {
        // Buffered: parts are read a few bytes at a time.
        inner: std::io::BufReader::with_capacity(64 << 10, flate2::read::ZlibDecoder::new(data)),
        read: 0,
        max: limits.inflated_bytes_max,
    };
    let version = r.part("data version")?;
    let data_version: DataVersion = serde_json::from_slice(&version)
        .map_err(|e| ProtocolError::json("registration data version", e))?;
    let count = r.length("topic count")?;
    if count > limits.topics_max {
        return Err(ProtocolError::OutOfRange {
            what: WHAT,
            reason: format!("it lists {count} topics, more than the {} allowed", limits.topics_max),
        });
    }
    let mut topics = BTreeMap::new();
    for _ in 0..count {
        let t = parse_topic(&r.part("topic config")?)?;
        topics.insert(t.topic_name.clone(), t);
    }
    let filters = r.part("filter server list")?;
    let filter_server_list: Vec<String> = serde_json::from_slice(&filters)
        .map_err(|e| ProtocolError::json("registration filter server list", e))?;
    // 5.x goes on with static-topic mappings, which we do not serve: read past them, so that
    // a truncated or oversized stream is still refused.
    if let Some(mappings) = r.optional_length("mapping count")? {
        if mappings > limits.topics_max {
            return Err(ProtocolError::OutOfRange {
                what: WHAT,
                reason: format!(
                    "it maps {mappings} topics, more than the {} allowed",
                    limits.topics_max
                ),
            });
        }
        for _ in 0..mappings {
            r.part("topic queue mapping")?;
        }
    }
    let mut body = RegisterBrokerBody { filter_server_list, ..Default::default() };
    body.topic_config_serialize_wrapper.data_version = data_version;
    body.topic_config_serialize_wrapper.topic_config_table = topics;
    Ok(body)
}

/// `TopicConfig.encode()`'s form: `name read write perm filterType[ attributesJson]`.
fn parse_topic(bytes: &[u8]) -> Result<TopicConfig> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ProtocolError::InvalidUtf8 { what: "registration topic config" })?;
    // A line in an error is cut short: it can be a megabyte long.
    let shown: String = text.chars().take(200).collect();
    let bad = |reason: &str| ProtocolError::OutOfRange {
        what: WHAT,
        reason: format!("topic config {shown:?}: {reason}"),
    };
    let mut fields = text.splitn(6, ' ');
    let mut next = |name: &str| fields.next().ok_or_else(|| bad(&format!("no {name}")));
    let topic_name = next("topic name")?.to_owned();
    let number = |s: &str, name: &str| s.parse::<i32>().map_err(|_| bad(&format!("bad {name}")));
    let read_queue_nums = number(next("read queue count")?, "read queue count")?;
    let write_queue_nums = number(next("write queue count")?, "write queue count")?;
    let perm = number(next("perm")?, "perm")?;
    let topic_filter_type = next("filter type")?.to_owned();
    if topic_filter_type != "SINGLE_TAG" && topic_filter_type != "MULTI_TAG" {
        return Err(bad("unknown filter type"));
    }
    // As RocketMQ: attributes that do not parse (a space inside one) are dropped, not fatal.
    let attributes = fields
        .next()
        .and_then(|a| serde_json::from_str::<BTreeMap<String, String>>(a).ok())
        .unwrap_or_default();
    if topic_name.is_empty() {
        return Err(bad("empty topic name"));
    }
    Ok(TopicConfig {
        attributes,
        order: false,
        perm,
        read_queue_nums,
        topic_filter_type,
        topic_name,
        topic_sys_flag: 0,
        write_queue_nums,
    })
}

/// The inflated stream, counted against its limit.
struct Inflated<R> {
    inner: R,
    read: usize,
    max: usize,
}

impl<R: Read> Inflated<R> {
    /// Fills `buf`; `Ok(false)` if the stream ended before its first byte.
    fn fill(&mut self, buf: &mut [u8], what: &'static str) -> Result<bool> {
        let mut at = 0;
        while at < buf.len() {
            let n = match self.inner.read(&mut buf[at..]) {
                Ok(0) if at == 0 => return Ok(false),
                Ok(0) => {
                    return Err(ProtocolError::Truncated {
                        what,
                        offset: self.read,
                        needed_bytes: buf.len() - at,
                        available_bytes: 0,
                    })
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ProtocolError::OutOfRange {
                        what: WHAT,
                        reason: format!("not a zlib stream: {e}"),
                    })
                }
            };
            at += n;
            self.read += n;
            if self.read > self.max {
                return Err(ProtocolError::OutOfRange {
                    what: WHAT,
                    reason: format!("it inflates to more than {} bytes", self.max),
                });
            }
        }
        Ok(true)
    }

    fn optional_length(&mut self, what: &'static str) -> Result<Option<usize>> {
        let mut b = [0u8; 4];
        if !self.fill(&mut b, what)? {
            return Ok(None);
        }
        let n = i32::from_be_bytes(b);
        usize::try_from(n)
            .map(Some)
            .map_err(|_| ProtocolError::InvalidLength { what, length: n.into() })
    }

    fn length(&mut self, what: &'static str) -> Result<usize> {
        self.optional_length(what)?.ok_or(ProtocolError::Truncated {
            what,
            offset: self.read,
            needed_bytes: 4,
            available_bytes: 0,
        })
    }

    fn part(&mut self, what: &'static str) -> Result<Vec<u8>> {
        let n = self.length(what)?;
        if n > PART_MAX_BYTES {
            return Err(ProtocolError::InvalidLength { what, length: n as i64 });
        }
        let mut bytes = vec![0; n];
        if n > 0 && !self.fill(&mut bytes, what)? {
            return Err(ProtocolError::Truncated {
                what,
                offset: self.read,
                needed_bytes: n,
                available_bytes: 0,
            });
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: InflateLimits = InflateLimits { inflated_bytes_max: 1 << 20, topics_max: 100 };

    fn body(topics: usize) -> RegisterBrokerBody {
        let mut b = RegisterBrokerBody::default();
        let w = &mut b.topic_config_serialize_wrapper;
        w.data_version = DataVersion { counter: 7, state_version: 0, timestamp: 1_700_000_000_000 };
        for i in 0..topics {
            let mut t = TopicConfig::new(format!("T{i}"), 4);
            t.perm = 6;
            if i == 0 {
                t.attributes.insert("+message.type".into(), "FIFO".into());
            }
            w.topic_config_table.insert(t.topic_name.clone(), t);
        }
        b
    }

    /// A 4.x broker's stream, written here by hand as Java writes it (5 fields per topic, no
    /// mapping part).
    fn java_4x_stream() -> Vec<u8> {
        let mut raw = Vec::new();
        put_part(&mut raw, br#"{"counter":3,"timestamp":1700000000000}"#);
        raw.extend_from_slice(&2i32.to_be_bytes());
        put_part(&mut raw, b"TopicA 8 8 6 SINGLE_TAG");
        put_part(&mut raw, b"%RETRY%G 1 1 6 MULTI_TAG");
        put_part(&mut raw, b"[]");
        zlib(&raw)
    }

    /// A 5.x stream of no topics and `count` mappings, each `mapping` (none if it is empty).
    fn mappings_5x(count: i32, mapping: &[u8]) -> Vec<u8> {
        let mut raw = Vec::new();
        put_part(&mut raw, b"{}");
        raw.extend_from_slice(&0i32.to_be_bytes());
        put_part(&mut raw, b"[]");
        raw.extend_from_slice(&count.to_be_bytes());
        if !mapping.is_empty() {
            for _ in 0..count {
                put_part(&mut raw, mapping);
            }
        }
        raw
    }

    #[test]
    fn our_encoding_and_a_java_4x_stream_decode() {
        let b = body(3);
        let back = decode_compressed(&encode_compressed(&b), LIMITS).unwrap();
        assert_eq!(back, b);

        let back = decode_compressed(&java_4x_stream(), LIMITS).unwrap();
        let w = &back.topic_config_serialize_wrapper;
        assert_eq!(w.data_version.counter, 3);
        assert_eq!(w.topic_config_table.len(), 2);
        let a = &w.topic_config_table["TopicA"];
        assert_eq!((a.read_queue_nums, a.write_queue_nums, a.perm), (8, 8, 6));
        assert_eq!(w.topic_config_table["%RETRY%G"].topic_filter_type, "MULTI_TAG");
    }

    #[test]
    fn limits_and_damage_are_errors() {
        let many = encode_compressed(&body(101));
        let e = decode_compressed(&many, LIMITS).unwrap_err();
        assert!(e.to_string().contains("101 topics, more than the 100"), "{e}");

        let small = InflateLimits { inflated_bytes_max: 64, topics_max: 100 };
        let e = decode_compressed(&encode_compressed(&body(10)), small).unwrap_err();
        assert!(e.to_string().contains("inflates to more than 64 bytes"), "{e}");

        // A zlib bomb: a 5.x stream whose mapping part goes on for 20 MiB stops at the limit.
        let e = decode_compressed(&zlib(&mappings_5x(20, &vec![b' '; PART_MAX_BYTES])), LIMITS)
            .unwrap_err();
        assert!(e.to_string().contains("inflates to more than"), "{e}");
        // ...and a mapping count past the topic limit is refused before any is read.
        let e = decode_compressed(&zlib(&mappings_5x(1_000_000, b"")), LIMITS).unwrap_err();
        assert!(e.to_string().contains("maps 1000000 topics"), "{e}");

        let good = encode_compressed(&body(3));
        assert!(decode_compressed(&good[..good.len() / 2], LIMITS).is_err(), "truncated");
        assert!(decode_compressed(b"not zlib at all", LIMITS).is_err());
        for cut in 0..good.len() {
            let _ = decode_compressed(&good[..cut], LIMITS); // never panics
        }
    }

    #[test]
    fn a_bad_topic_line_is_an_error() {
        assert!(parse_topic(b"T 1 1 6").is_err());
        assert!(parse_topic(b"T x 1 6 SINGLE_TAG").is_err());
        assert!(parse_topic(b"T 1 1 6 OTHER").is_err());
        assert!(parse_topic(b" 1 1 6 SINGLE_TAG").is_err());
        let t = parse_topic(b"T 1 2 6 SINGLE_TAG {bad json").unwrap();
        assert!(t.attributes.is_empty(), "unparsable attributes are dropped, as RocketMQ");
    }
}
