//! RocketMQ 4.x ACL request signatures, as `AclClientRPCHook` signs requests and
//! `PlainAccessValidator` checks them (reference: "ACL 1.0").
//!
//! A signed request carries three extra header fields: `AccessKey`, optionally `SecurityToken`,
//! and `Signature` = Base64(HmacSHA1(secret key, text)), where the text is the values of every
//! other header field, ordered by their keys as Java's `TreeMap<String, _>` orders them
//! (UTF-16 code units), concatenated as UTF-8, followed by the body bytes. The keys themselves
//! are not signed. `Signature` and `_UNIQUE_KEY_QUERY` (a flag the admin tool adds after
//! signing) are left out. Client and server build the text with the one function here, so
//! they cannot drift apart.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::{ExtFields, RemotingCommand};

/// The header field naming the account.
pub const ACCESS_KEY: &str = "AccessKey";
/// The header field carrying the signature.
pub const SIGNATURE: &str = "Signature";
/// The header field of an optional session token (signed like any other field).
pub const SECURITY_TOKEN: &str = "SecurityToken";
/// RocketMQ's `MixAll.UNIQUE_MSG_QUERY_FLAG`: never part of the signed text.
pub const UNIQUE_KEY_QUERY: &str = "_UNIQUE_KEY_QUERY";

type HmacSha1 = Hmac<Sha1>;

/// An account's keys, as a client holds them to sign its requests.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub security_token: Option<String>,
}

impl Credentials {
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<String>) -> Self {
        Credentials {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            security_token: None,
        }
    }

    /// Adds `AccessKey`, `SecurityToken` (if any) and `Signature` to `cmd`'s header, signing
    /// every other field and the body. Sign last: a field changed afterwards breaks it.
    pub fn sign(&self, cmd: &mut RemotingCommand) {
        let fields = cmd.ext_fields.get_or_insert_with(ExtFields::new);
        fields.remove(SIGNATURE);
        fields.insert(ACCESS_KEY, &self.access_key);
        if let Some(token) = &self.security_token {
            fields.insert(SECURITY_TOKEN, token);
        }
        let tag = mac(&self.secret_key, fields, &cmd.body).finalize().into_bytes();
        // Written straight into the header's text: no intermediate string.
        let text =
            base64::display::Base64Display::new(&tag, &base64::engine::general_purpose::STANDARD);
        fields.insert_display(SIGNATURE, text);
    }
}

/// The secret key never reaches a log.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("security_token", &self.security_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The MAC over `fields` (all but the unsigned ones) and `body`, keyed by `secret_key`.
fn mac(secret_key: &str, fields: &ExtFields, body: &[u8]) -> HmacSha1 {
    let mut signed: Vec<(&str, &str)> =
        fields.iter().filter(|(k, _)| *k != SIGNATURE && *k != UNIQUE_KEY_QUERY).collect();
    // Java compares strings by UTF-16 code units; for keys outside the BMP that differs from
    // comparing UTF-8 bytes (or chars), so compare as Java does.
    signed.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    // HMAC accepts a key of any length.
    let mut mac = HmacSha1::new_from_slice(secret_key.as_bytes()).expect("HMAC takes any key");
    for (_, value) in signed {
        mac.update(value.as_bytes());
    }
    mac.update(body);
    mac
}

/// The signature of a request whose header is `fields` and whose body is `body`.
pub fn signature(secret_key: &str, fields: &ExtFields, body: &[u8]) -> String {
    let tag = mac(secret_key, fields, body).finalize().into_bytes();
    base64::engine::general_purpose::STANDARD.encode(tag)
}

/// Whether `cmd` carries a `Signature` made with `secret_key` over its header and body
/// (compared in constant time).
pub fn verify(secret_key: &str, cmd: &RemotingCommand) -> bool {
    let Some(fields) = &cmd.ext_fields else { return false };
    let Some(claimed) = fields.get(SIGNATURE) else { return false };
    // A SHA-1 tag is 20 bytes; a longer claim fails to decode into the buffer, and fails.
    let mut tag = [0u8; 32];
    let Ok(len) = base64::engine::general_purpose::STANDARD.decode_slice(claimed, &mut tag) else {
        return false;
    };
    mac(secret_key, fields, &cmd.body).verify_slice(&tag[..len]).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_code;

    fn request() -> RemotingCommand {
        let mut cmd = RemotingCommand::request_without_header(request_code::SEND_MESSAGE_V2);
        let mut f = ExtFields::new();
        f.insert("b", "TopicTest");
        f.insert("a", "PG");
        f.insert("c", "TBW102");
        cmd.ext_fields = Some(f);
        cmd.with_body(&b"hello"[..])
    }

    /// The expected value was computed independently (Python's `hmac` and `base64` over
    /// "PG" "TopicTest" "TBW102" "RocketMQ" ordered by key: "AccessKey" < "a" < "b" < "c",
    /// then the body).
    #[test]
    fn a_signature_matches_rocketmqs_construction() {
        let mut cmd = request();
        Credentials::new("RocketMQ", "12345678").sign(&mut cmd);
        assert_eq!(cmd.ext_field(ACCESS_KEY), Some("RocketMQ"));
        assert_eq!(cmd.ext_field(SIGNATURE), Some("sfW1k0fY0HYPOizXVKtDofOhDQ4="));
        assert!(verify("12345678", &cmd));
    }

    #[test]
    fn a_changed_field_body_or_key_breaks_the_signature() {
        let mut cmd = request();
        Credentials::new("RocketMQ", "12345678").sign(&mut cmd);
        assert!(!verify("12345679", &cmd), "another secret");

        let mut changed = cmd.clone();
        changed.set_ext_field("b", "OtherTopic");
        assert!(!verify("12345678", &changed), "a changed field");

        let mut added = cmd.clone();
        added.set_ext_field("d", "x");
        assert!(!verify("12345678", &added), "an added field");

        let tampered = cmd.clone().with_body(&b"hellp"[..]);
        assert!(!verify("12345678", &tampered), "a changed body");

        let mut unique = cmd.clone();
        unique.set_ext_field(UNIQUE_KEY_QUERY, "true");
        assert!(verify("12345678", &unique), "the unique-key flag is never signed");

        let mut garbage = cmd.clone();
        garbage.set_ext_field(SIGNATURE, "not base64!");
        assert!(!verify("12345678", &garbage));
        assert!(!verify("12345678", &request()), "unsigned");
    }

    #[test]
    fn a_security_token_is_signed_and_signing_twice_gives_one_signature() {
        let mut creds = Credentials::new("RocketMQ", "12345678");
        creds.security_token = Some("token".into());
        let mut cmd = request();
        creds.sign(&mut cmd);
        let first = cmd.ext_field(SIGNATURE).map(str::to_owned);
        creds.sign(&mut cmd);
        assert_eq!(cmd.ext_field(SIGNATURE).map(str::to_owned), first);
        assert!(verify("12345678", &cmd));
        cmd.set_ext_field(SECURITY_TOKEN, "other");
        assert!(!verify("12345678", &cmd));
        assert!(!format!("{creds:?}").contains("12345678"), "the secret never prints");
    }
}
