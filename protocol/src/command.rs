//! `RemotingCommand`: one request or response of the remoting protocol, and the two header
//! serializations (JSON with fastjson conventions, and the ROCKETMQ binary form, reference
//! §1.2-§1.3). Framing lives in [`crate::frame`].
//!
//! Invariants: a response carries its request's `opaque` and serialization type; the JSON
//! header is written with fastjson's alphabetical key order and no nulls; decoding accepts any
//! key order, ignores unknown keys and never panics.

use bytes::Bytes;
use serde::Deserialize;

use crate::code::{flag, version, LanguageCode, SerializeType};
use crate::error::{ProtocolError, Result};
use crate::ext_fields::ExtFields;
use crate::header::CommandHeader;

/// The language RocketRaft reports in the commands it writes.
pub const LOCAL_LANGUAGE: LanguageCode = LanguageCode::Rust;

/// One request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotingCommand {
    /// Request code, or response code in a response.
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    /// Request id; a response echoes its request's.
    pub opaque: i32,
    /// Bit 0: response; bit 1: oneway request.
    pub flag: i32,
    /// Error text of a response.
    pub remark: Option<String>,
    /// The custom header; `None` writes no `extFields` key at all (e.g. HEART_BEAT).
    pub ext_fields: Option<ExtFields>,
    /// How the header is (or was) serialized.
    pub serialize_type: SerializeType,
    pub body: Bytes,
}

impl RemotingCommand {
    /// A request with a typed custom header.
    pub fn request<H: CommandHeader>(code: i32, header: &H) -> Self {
        let mut cmd = Self::bare(code, 0);
        cmd.ext_fields = Some(header.to_ext_fields());
        cmd
    }

    /// A request without a custom header.
    pub fn request_without_header(code: i32) -> Self {
        Self::bare(code, 0)
    }

    /// The response to `request` with `code` and an optional remark: same opaque, same
    /// serialization (reference §1.3).
    pub fn response_to(request: &RemotingCommand, code: i32, remark: Option<String>) -> Self {
        let mut cmd = Self::bare(code, flag::RESPONSE);
        cmd.opaque = request.opaque;
        cmd.serialize_type = request.serialize_type;
        cmd.remark = remark;
        cmd
    }

    fn bare(code: i32, flag: i32) -> Self {
        RemotingCommand {
            code,
            language: LOCAL_LANGUAGE,
            version: version::CURRENT,
            opaque: 0,
            flag,
            remark: None,
            ext_fields: None,
            serialize_type: SerializeType::Json,
            body: Bytes::new(),
        }
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn with_opaque(mut self, opaque: i32) -> Self {
        self.opaque = opaque;
        self
    }

    /// Replaces the custom header with `header`'s fields.
    pub fn with_header<H: CommandHeader>(mut self, header: &H) -> Self {
        self.ext_fields = Some(header.to_ext_fields());
        self
    }

    /// Marks a request as oneway: the peer sends no response.
    pub fn into_oneway(mut self) -> Self {
        self.flag |= flag::ONEWAY;
        self
    }

    pub fn is_response(&self) -> bool {
        self.flag & flag::RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & flag::ONEWAY != 0
    }

    /// Decodes the custom header as `H`; a command without extFields reads as an empty map.
    pub fn decode_header<H: CommandHeader>(&self) -> Result<H> {
        match &self.ext_fields {
            Some(fields) => H::from_ext_fields(fields),
            None => H::from_ext_fields(&ExtFields::new()),
        }
    }

    /// One extField, for the few that live outside typed headers (e.g. `_UNIQUE_KEY_QUERY`).
    pub fn ext_field(&self, key: &str) -> Option<&str> {
        self.ext_fields.as_ref().and_then(|f| f.get(key))
    }

    /// Sets one extField, creating the map if needed.
    pub fn set_ext_field(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) {
        self.ext_fields.get_or_insert_with(ExtFields::new).insert(key, value);
    }

    /// Serializes the header in this command's serialization type.
    pub fn encode_header(&self) -> Result<Vec<u8>> {
        match self.serialize_type {
            SerializeType::Json => Ok(self.encode_json_header()),
            SerializeType::RocketMq => self.encode_binary_header(),
        }
    }

    /// Decodes a header of type `serialize_type`; the body is left empty.
    pub fn decode_header_bytes(serialize_type: SerializeType, header: &[u8]) -> Result<Self> {
        match serialize_type {
            SerializeType::Json => Self::decode_json_header(header),
            SerializeType::RocketMq => Self::decode_binary_header(header),
        }
    }

    /// fastjson-compatible JSON: keys in alphabetical order, nulls omitted, enums by name,
    /// extFields values as strings.
    pub fn encode_json_header(&self) -> Vec<u8> {
        let mut out = String::with_capacity(256);
        self.write_json_header(&mut out);
        out.into_bytes()
    }

    /// Writes the JSON header to `out` (a frame buffer, without an intermediate string).
    pub fn write_json_header(&self, out: &mut impl std::fmt::Write) {
        // Writing to a String or a BytesMut cannot fail.
        let _ = self.try_write_json_header(out);
    }

    fn try_write_json_header(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        write!(out, "{{\"code\":{}", self.code)?;
        if let Some(fields) = &self.ext_fields {
            out.write_str(",\"extFields\":{")?;
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.write_char(',')?;
                }
                push_json_string(out, k);
                out.write_char(':')?;
                push_json_string(out, v);
            }
            out.write_char('}')?;
        }
        write!(out, ",\"flag\":{},\"language\":", self.flag)?;
        push_json_string(out, self.language.name());
        write!(out, ",\"opaque\":{}", self.opaque)?;
        if let Some(remark) = &self.remark {
            out.write_str(",\"remark\":")?;
            push_json_string(out, remark);
        }
        out.write_str(",\"serializeTypeCurrentRPC\":")?;
        push_json_string(out, self.serialize_type.name());
        write!(out, ",\"version\":{}}}", self.version)
    }

    /// Reads a JSON header in any key order; unknown keys are ignored, missing ones default
    /// as in Java (`language` JAVA, the rest 0 / absent). Only `code` is required.
    pub fn decode_json_header(header: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        struct JsonHeader {
            code: Option<i32>,
            #[serde(default)]
            language: Option<LanguageField>,
            #[serde(default)]
            version: Option<i32>,
            #[serde(default)]
            opaque: Option<i32>,
            #[serde(default)]
            flag: Option<i32>,
            #[serde(default)]
            remark: Option<String>,
            #[serde(default, rename = "extFields")]
            ext_fields: Option<ExtFields>,
        }
        let text = std::str::from_utf8(header)
            .map_err(|_| ProtocolError::InvalidUtf8 { what: "JSON header" })?;
        let parsed: JsonHeader =
            serde_json::from_str(text).map_err(|e| ProtocolError::json("command header", e))?;
        let code = parsed.code.ok_or(ProtocolError::MissingField { field: "code" })?;
        Ok(RemotingCommand {
            code,
            language: parsed.language.map_or(LanguageCode::Java, |l| l.0),
            version: parsed.version.unwrap_or(0),
            opaque: parsed.opaque.unwrap_or(0),
            flag: parsed.flag.unwrap_or(0),
            remark: parsed.remark,
            ext_fields: parsed.ext_fields,
            serialize_type: SerializeType::Json,
            body: Bytes::new(),
        })
    }

    /// The ROCKETMQ binary header (reference §1.3): 21 fixed bytes, then remark and extFields.
    pub fn encode_binary_header(&self) -> Result<Vec<u8>> {
        let code = i16::try_from(self.code)
            .map_err(|_| ProtocolError::CodeOutOfRange { code: self.code })?;
        // The version field is 16 bits too; versions are small ordinals, clamp defensively.
        let version = i16::try_from(self.version).unwrap_or(i16::MAX);
        let remark = self.remark.as_deref().unwrap_or("").as_bytes();
        let mut ext = Vec::new();
        if let Some(fields) = &self.ext_fields {
            for (k, v) in fields.iter() {
                let key_len = i16::try_from(k.len()).map_err(|_| ProtocolError::OutOfRange {
                    what: "extFields key",
                    reason: format!("{} bytes exceed the 16-bit key length", k.len()),
                })?;
                ext.extend_from_slice(&key_len.to_be_bytes());
                ext.extend_from_slice(k.as_bytes());
                ext.extend_from_slice(&len_i32(v.len(), "extFields value")?.to_be_bytes());
                ext.extend_from_slice(v.as_bytes());
            }
        }
        let mut out = Vec::with_capacity(21 + remark.len() + ext.len());
        out.extend_from_slice(&code.to_be_bytes());
        out.push(self.language.code());
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&self.opaque.to_be_bytes());
        out.extend_from_slice(&self.flag.to_be_bytes());
        out.extend_from_slice(&len_i32(remark.len(), "remark")?.to_be_bytes());
        out.extend_from_slice(remark);
        out.extend_from_slice(&len_i32(ext.len(), "extFields")?.to_be_bytes());
        out.extend_from_slice(&ext);
        Ok(out)
    }

    /// Reads a ROCKETMQ binary header; every length is checked against what is there.
    pub fn decode_binary_header(header: &[u8]) -> Result<Self> {
        let mut r = Reader::new(header, "ROCKETMQ header");
        let code = i32::from(r.i16()?);
        let language = LanguageCode::from_code(r.u8()?);
        let version = i32::from(r.i16()?);
        let opaque = r.i32()?;
        let flag = r.i32()?;
        let remark_len = r.len_i32("remark")?;
        let remark = match remark_len {
            0 => None,
            n => Some(r.utf8(n, "remark")?),
        };
        let ext_len = r.len_i32("extFields")?;
        let ext_fields = if ext_len == 0 {
            None
        } else {
            let mut er = Reader::new(r.bytes(ext_len)?, "ROCKETMQ extFields");
            let mut fields = ExtFields::new();
            while !er.is_empty() {
                let key_len = er.i16()?;
                let key_len =
                    usize::try_from(key_len).map_err(|_| ProtocolError::InvalidLength {
                        what: "extFields key",
                        length: i64::from(key_len),
                    })?;
                let key = er.utf8(key_len, "extFields key")?;
                let val_len = er.len_i32("extFields value")?;
                let value = er.utf8(val_len, "extFields value")?;
                fields.insert(key, value);
            }
            Some(fields)
        };
        Ok(RemotingCommand {
            code,
            language,
            version,
            opaque,
            flag,
            remark,
            ext_fields,
            serialize_type: SerializeType::RocketMq,
            body: Bytes::new(),
        })
    }
}

fn len_i32(len: usize, what: &'static str) -> Result<i32> {
    i32::try_from(len).map_err(|_| ProtocolError::OutOfRange {
        what,
        reason: format!("{len} bytes exceed a 32-bit length"),
    })
}

/// `language` may be a name (JSON from every client) or, from lenient writers, a number.
struct LanguageField(LanguageCode);

impl<'de> Deserialize<'de> for LanguageField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct LanguageVisitor;
        impl serde::de::Visitor<'_> for LanguageVisitor {
            type Value = LanguageField;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a language name or code")
            }
            fn visit_str<E>(self, name: &str) -> std::result::Result<LanguageField, E> {
                Ok(LanguageField(LanguageCode::from_name(name)))
            }
            fn visit_u64<E: serde::de::Error>(
                self,
                code: u64,
            ) -> std::result::Result<LanguageField, E> {
                let code = u8::try_from(code)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(code), &self))?;
                Ok(LanguageField(LanguageCode::from_code(code)))
            }
        }
        d.deserialize_any(LanguageVisitor)
    }
}

/// Writes `s` as a JSON string literal, escaped as serde_json escapes it: `"` and `\` with a
/// backslash, backspace, form feed, newline, carriage return and tab in their short forms, and
/// the other control characters as `\u00XX`.
pub(crate) fn push_json_string(out: &mut impl std::fmt::Write, s: &str) {
    // Writing to a String or a BytesMut cannot fail.
    let _ = try_push_json_string(out, s);
}

fn try_push_json_string(out: &mut impl std::fmt::Write, s: &str) -> std::fmt::Result {
    out.write_char('"')?;
    let mut plain_from = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0C => "\\f",
            0x00..=0x1F => "",
            _ => continue,
        };
        out.write_str(&s[plain_from..i])?;
        if short.is_empty() {
            write!(out, "\\u{:04x}", b)?;
        } else {
            out.write_str(short)?;
        }
        plain_from = i + 1;
    }
    out.write_str(&s[plain_from..])?;
    out.write_char('"')
}

/// A bounds-checked big-endian reader over a byte slice.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(ProtocolError::Truncated {
                what: self.what,
                offset: self.pos,
                needed_bytes: n,
                available_bytes: self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn i16(&mut self) -> Result<i16> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    pub(crate) fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(crate) fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// An int32 length that must be non-negative.
    pub(crate) fn len_i32(&mut self, what: &'static str) -> Result<usize> {
        let n = self.i32()?;
        usize::try_from(n).map_err(|_| ProtocolError::InvalidLength { what, length: i64::from(n) })
    }

    pub(crate) fn utf8(&mut self, n: usize, what: &'static str) -> Result<String> {
        let raw = self.bytes(n)?;
        String::from_utf8(raw.to_vec()).map_err(|_| ProtocolError::InvalidUtf8 { what })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RemotingCommand {
        let mut cmd = RemotingCommand::request_without_header(105).with_opaque(7);
        cmd.set_ext_field("topic", "T\u{1}é");
        cmd.remark = Some("r\"x".into());
        cmd
    }

    #[test]
    fn json_strings_are_escaped_as_serde_json_escapes_them() {
        let mut every_ascii: String = (0u8..0x80).map(char::from).collect();
        every_ascii.push_str("é\u{2028}\u{1F600}");
        for s in ["", "plain", "a\"b\\c", every_ascii.as_str()] {
            let mut out = String::new();
            push_json_string(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
    }

    proptest::proptest! {
        #[test]
        fn any_string_is_escaped_as_serde_json_escapes_it(s in ".*") {
            let mut out = String::new();
            push_json_string(&mut out, &s);
            proptest::prop_assert_eq!(out, serde_json::to_string(&s).unwrap());
        }

        #[test]
        fn any_ext_fields_survive_both_header_forms(
            entries in proptest::collection::vec(("[a-zA-Z\"\\\\\u{0}-\u{1f}é]{0,8}", ".{0,12}"), 0..12)
        ) {
            let mut cmd = RemotingCommand::request_without_header(10);
            let fields: ExtFields = entries.iter().map(|(k, v)| (k, v)).collect();
            cmd.ext_fields = Some(fields.clone());
            let json = RemotingCommand::decode_json_header(&cmd.encode_json_header()).unwrap();
            proptest::prop_assert_eq!(json.ext_fields.as_ref(), Some(&fields));
            let binary = RemotingCommand::decode_binary_header(&cmd.encode_binary_header().unwrap()).unwrap();
            proptest::prop_assert_eq!(binary.ext_fields.unwrap_or_default(), fields);
        }
    }

    #[test]
    fn json_header_round_trips() {
        let cmd = sample();
        let back = RemotingCommand::decode_json_header(&cmd.encode_json_header()).unwrap();
        assert_eq!(back, cmd);
    }

    #[test]
    fn binary_header_round_trips() {
        let mut cmd = sample();
        cmd.serialize_type = SerializeType::RocketMq;
        let back =
            RemotingCommand::decode_binary_header(&cmd.encode_binary_header().unwrap()).unwrap();
        assert_eq!(back, cmd);
    }

    #[test]
    fn json_header_tolerates_missing_and_unknown_keys() {
        let cmd = RemotingCommand::decode_json_header(
            br#"{"code":34,"unknown":{"deep":[1,2]},"language":"GO","opaque":9}"#,
        )
        .unwrap();
        assert_eq!(cmd.code, 34);
        assert_eq!(cmd.language, LanguageCode::Go);
        assert_eq!(cmd.opaque, 9);
        assert_eq!(cmd.flag, 0);
        assert_eq!(cmd.ext_fields, None);
    }

    #[test]
    fn json_header_errors_are_typed() {
        assert!(matches!(
            RemotingCommand::decode_json_header(br#"{"opaque":1}"#),
            Err(ProtocolError::MissingField { field: "code" })
        ));
        assert!(matches!(
            RemotingCommand::decode_json_header(b"{\"code\":"),
            Err(ProtocolError::InvalidJson { .. })
        ));
        assert!(matches!(
            RemotingCommand::decode_json_header(&[0xff, 0xfe]),
            Err(ProtocolError::InvalidUtf8 { .. })
        ));
    }

    #[test]
    fn binary_header_rejects_lengths_past_the_end() {
        let mut cmd = sample();
        cmd.serialize_type = SerializeType::RocketMq;
        let bytes = cmd.encode_binary_header().unwrap();
        for cut in 0..bytes.len() {
            assert!(RemotingCommand::decode_binary_header(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut negative = bytes.clone();
        negative[13..17].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            RemotingCommand::decode_binary_header(&negative),
            Err(ProtocolError::InvalidLength { what: "remark", .. })
        ));
    }

    #[test]
    fn codes_over_16_bits_cannot_use_the_binary_header() {
        let mut cmd = RemotingCommand::request_without_header(200_050);
        cmd.serialize_type = SerializeType::RocketMq;
        assert_eq!(
            cmd.encode_binary_header(),
            Err(ProtocolError::CodeOutOfRange { code: 200_050 })
        );
    }
}
