//! The ACL file: RocketMQ's `plain_acl.yml` in TOML, with the same keys in snake case.
//!
//! ```toml
//! # Addresses that need no signature at all (RocketMQ's globalWhiteRemoteAddresses).
//! global_white_remote_addresses = ["10.10.103.*"]
//!
//! [[accounts]]
//! access_key = "RocketMQ"        # at least 7 characters, as RocketMQ requires
//! secret_key = "12345678"
//! white_remote_address = ""      # requests from here pass unchecked; "" matches nothing
//! admin = false                  # admin calls (topic/group changes, offset resets)
//! default_topic_perm = "DENY"    # DENY, PUB, SUB or PUB|SUB; default DENY
//! default_group_perm = "SUB"     # default DENY
//! topic_perms = ["topicA=DENY", "topicB=PUB|SUB", "topicC=SUB"]
//! group_perms = ["groupA=DENY", "groupB=PUB|SUB", "groupC=SUB"]
//! ```
//!
//! Every mistake is an error naming the account and the entry (an unknown key, a duplicate
//! access key, a short key, a malformed address or permission): a file with one is refused
//! whole, at start and on reload alike.

use std::collections::HashMap;

use serde::Deserialize;

use super::address::AddressPattern;
use super::resources::Perm;
use super::{Account, Acl, AclError};

/// RocketMQ refuses keys of 6 characters or fewer ("length should longer than 6").
pub const KEY_MIN_CHARS: usize = 7;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    global_white_remote_addresses: Vec<String>,
    #[serde(default)]
    accounts: Vec<AccountToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountToml {
    access_key: String,
    secret_key: String,
    #[serde(default)]
    white_remote_address: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    default_topic_perm: Option<String>,
    #[serde(default)]
    default_group_perm: Option<String>,
    #[serde(default)]
    topic_perms: Vec<String>,
    #[serde(default)]
    group_perms: Vec<String>,
}

fn invalid(msg: String) -> AclError {
    AclError::Invalid(msg)
}

fn perm(text: Option<&str>, what: &str) -> Result<Perm, AclError> {
    match text {
        None => Ok(Perm::Deny),
        Some(t) => Perm::parse(t)
            .ok_or_else(|| invalid(format!("{what}: {t:?} is not DENY, PUB, SUB or PUB|SUB"))),
    }
}

fn perms(entries: &[String], what: &str) -> Result<HashMap<String, Perm>, AclError> {
    let mut out = HashMap::new();
    for e in entries {
        let Some((name, p)) = e.split_once('=') else {
            return Err(invalid(format!("{what}: {e:?} is not name=PERM")));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(invalid(format!("{what}: {e:?} names nothing")));
        }
        if out.insert(name.to_owned(), perm(Some(p), what)?).is_some() {
            return Err(invalid(format!("{what}: {name:?} is listed twice")));
        }
    }
    Ok(out)
}

fn pattern(text: &str, what: &str) -> Result<AddressPattern, AclError> {
    AddressPattern::parse(text)
        .ok_or_else(|| invalid(format!("{what}: {text:?} is not an address pattern")))
}

/// Parses and checks the file's text.
pub fn parse(text: &str) -> Result<Acl, AclError> {
    let file: FileToml = toml::from_str(text)?;
    let global_white = file
        .global_white_remote_addresses
        .iter()
        .map(|p| pattern(p, "global_white_remote_addresses"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut accounts = HashMap::new();
    for a in file.accounts {
        let who = format!("account {:?}", a.access_key);
        for (name, key) in [("access_key", &a.access_key), ("secret_key", &a.secret_key)] {
            if key.chars().count() < KEY_MIN_CHARS {
                return Err(invalid(format!(
                    "{who}: {name} must be at least {KEY_MIN_CHARS} characters"
                )));
            }
        }
        let account = Account {
            secret_key: a.secret_key,
            white: pattern(&a.white_remote_address, &format!("{who} white_remote_address"))?,
            admin: a.admin,
            default_topic: perm(
                a.default_topic_perm.as_deref(),
                &format!("{who} default_topic_perm"),
            )?,
            default_group: perm(
                a.default_group_perm.as_deref(),
                &format!("{who} default_group_perm"),
            )?,
            topics: perms(&a.topic_perms, &format!("{who} topic_perms"))?,
            groups: perms(&a.group_perms, &format!("{who} group_perms"))?,
        };
        if accounts.insert(a.access_key.clone(), account).is_some() {
            return Err(invalid(format!("{who} is listed twice")));
        }
    }
    Ok(Acl { global_white, accounts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let text = r#"
            global_white_remote_addresses = ["10.10.103.*"]
            [[accounts]]
            access_key = "RocketMQ"
            secret_key = "12345678"
            default_group_perm = "SUB"
            topic_perms = ["topicA=DENY", "topicB=PUB|SUB", "topicC=SUB"]
            group_perms = ["groupA=DENY"]
            [[accounts]]
            access_key = "rocketmq2"
            secret_key = "12345678"
            white_remote_address = "192.168.1.*"
            admin = true
        "#;
        let acl = parse(text).unwrap();
        assert_eq!(acl.accounts.len(), 2);
        let a = &acl.accounts["RocketMQ"];
        assert_eq!((a.default_topic, a.default_group), (Perm::Deny, Perm::Sub));
        assert_eq!(a.topics["topicB"], Perm::PubSub);
        assert!(acl.accounts["rocketmq2"].admin);
    }

    #[test]
    fn each_mistake_is_refused_with_its_place() {
        let account = |extra: &str| {
            format!("[[accounts]]\naccess_key = \"RocketMQ\"\nsecret_key = \"12345678\"\n{extra}")
        };
        let cases = [
            (account("colour = 1"), "unknown field"),
            (account("default_topic_perm = \"ALL\""), "default_topic_perm"),
            (account("topic_perms = [\"t\"]"), "is not name=PERM"),
            (account("topic_perms = [\"t=PUB\", \"t=SUB\"]"), "listed twice"),
            (account("white_remote_address = \"1.2.3\""), "white_remote_address"),
            (format!("{}{}", account(""), account("")), "is listed twice"),
            (
                "[[accounts]]\naccess_key = \"short\"\nsecret_key = \"12345678\"".into(),
                "at least 7",
            ),
            ("global_white_remote_addresses = [\"x\"]".into(), "global_white"),
        ];
        for (text, needle) in cases {
            let e = parse(&text).err().unwrap_or_else(|| panic!("{text} parsed")).to_string();
            assert!(e.contains(needle), "{e:?} should mention {needle:?}");
        }
    }
}
