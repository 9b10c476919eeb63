//! Topic and consumer/producer group names: RocketMQ's rules (`TopicValidator`,
//! `Validators.checkGroup`) and the system topics a group owns. One definition, used by the
//! broker at every entry point (send, heartbeat, admin, offsets), by the store to map a topic
//! to a directory, and by the SDK and the `rocketraft` command before they send.
//!
//! Invariant: a name these checks accept is 1 to 255 bytes of `[A-Za-z0-9%|_-]`. It holds no
//! `/`, no `.` and no NUL, so as one path component it cannot leave the directory it is
//! joined to, and it fits one file name (255 bytes on every filesystem we run on).

/// The characters RocketMQ allows in topic and group names, as its remarks spell them.
pub const NAME_PATTERN: &str = "^[%|a-zA-Z0-9_-]+$";
/// Longest topic a client may name (RocketMQ's `TOPIC_MAX_LENGTH`; a V1 record's limit).
pub const TOPIC_MAX_BYTES: usize = 127;
/// Longest group name. RocketMQ allows 255; we keep the group's `%RETRY%` topic within one
/// file name (255 bytes), so 255 - 7.
pub const GROUP_MAX_BYTES: usize = 255 - RETRY_PREFIX.len();
/// A consumer group's retry topic is this prefix and the group (`%RETRY%<group>`).
pub const RETRY_PREFIX: &str = "%RETRY%";
/// A consumer group's dead-letter topic is this prefix and the group (`%DLQ%<group>`).
pub const DLQ_PREFIX: &str = "%DLQ%";
/// The template topic of auto-creation (RocketMQ's `AUTO_CREATE_TOPIC_KEY_TOPIC`).
pub const AUTO_CREATE_TOPIC: &str = "TBW102";
/// Where delayed messages wait (RocketMQ's `RMQ_SYS_SCHEDULE_TOPIC`).
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
/// Where 5.x timer messages wait (RocketMQ's `rmq_sys_wheel_timer`).
pub const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";
/// Where transaction half messages wait.
pub const TRANS_HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// Where the done-marks of transaction half messages go.
pub const TRANS_OP_HALF_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
/// Where a half message goes once it was checked back `transactionCheckMax` times without an
/// answer (discarded, kept for inspection).
pub const TRANS_CHECK_MAX_TIME_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";

/// Topics the broker writes itself: a client may not send to them (RocketMQ's
/// `TopicValidator.NOT_ALLOWED_SEND_TOPIC_SET`).
pub const SEND_FORBIDDEN_TOPICS: [&str; 5] = [
    SCHEDULE_TOPIC,
    TIMER_TOPIC,
    TRANS_HALF_TOPIC,
    TRANS_OP_HALF_TOPIC,
    TRANS_CHECK_MAX_TIME_TOPIC,
];

/// Why a name was refused. The texts follow RocketMQ's remarks, so a user who searches for one
/// finds RocketMQ's documentation of the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("The specified {what} is blank.")]
    Blank { what: &'static str },
    #[error(
        "The specified {what}[{shown}] contains illegal characters, allowing only {NAME_PATTERN}"
    )]
    IllegalCharacters { what: &'static str, shown: String },
    #[error("The specified {what} is longer than {what} max length {max_bytes} ({bytes} bytes).")]
    TooLong { what: &'static str, bytes: usize, max_bytes: usize },
}

fn check(what: &'static str, name: &str, max_bytes: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Blank { what });
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"%|-_".contains(&b)) {
        // The name came from the network: show a bounded, printable form of it.
        let shown: String = name.chars().take(64).flat_map(char::escape_debug).collect();
        return Err(NameError::IllegalCharacters { what, shown });
    }
    if name.len() > max_bytes {
        return Err(NameError::TooLong { what, bytes: name.len(), max_bytes });
    }
    Ok(())
}

/// Checks a topic name: 1 to 127 characters of `[A-Za-z0-9%|_-]`, or a group's retry or
/// dead-letter topic (the prefix and a valid group name, up to 255).
pub fn check_topic(topic: &str) -> Result<(), NameError> {
    for prefix in [RETRY_PREFIX, DLQ_PREFIX] {
        if let Some(group) = topic.strip_prefix(prefix) {
            if topic.len() > TOPIC_MAX_BYTES {
                return check_group(group).map_err(|e| match e {
                    NameError::TooLong { .. } => NameError::TooLong {
                        what: "topic",
                        bytes: topic.len(),
                        max_bytes: prefix.len() + GROUP_MAX_BYTES,
                    },
                    other => other,
                });
            }
        }
    }
    check("topic", topic, TOPIC_MAX_BYTES)
}

/// Whether `topic` passes [`check_topic`].
pub fn valid_topic_name(topic: &str) -> bool {
    check_topic(topic).is_ok()
}

/// Checks a consumer or producer group name: 1 to 248 characters of `[A-Za-z0-9%|_-]`.
pub fn check_group(group: &str) -> Result<(), NameError> {
    check("group", group, GROUP_MAX_BYTES)
}

/// The retry topic of a consumer group.
pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_PREFIX}{group}")
}

/// The dead-letter topic of a consumer group.
pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_PREFIX}{group}")
}

/// The end of a cluster's reply topic, `<cluster>_REPLY_TOPIC` (RocketMQ's
/// `REPLY_TOPIC_POSTFIX` after an underscore).
pub const REPLY_TOPIC_SUFFIX: &str = "_REPLY_TOPIC";

/// The topic replies to request messages go to in `cluster`: every broker group of the
/// cluster keeps it, with one queue (RocketMQ's `MixAll.getReplyTopic`).
pub fn reply_topic(cluster: &str) -> String {
    format!("{cluster}{REPLY_TOPIC_SUFFIX}")
}

/// Whether clients are refused sends to `topic` (the broker's own system topics).
pub fn send_forbidden(topic: &str) -> bool {
    SEND_FORBIDDEN_TOPICS.contains(&topic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rocketmq_names_pass_and_hostile_ones_do_not() {
        for ok in ["TopicTest", "a", "%RETRY%cg", "%DLQ%cg", "a|b", "x-y_z", "TBW102"] {
            assert_eq!(check_topic(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "blank"),
            ("../etc", "illegal"),
            ("a/b", "illegal"),
            (".", "illegal"),
            ("a b", "illegal"),
            ("a\0b", "illegal"),
            ("tópico", "illegal"),
        ] {
            let e = check_topic(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let long = "t".repeat(TOPIC_MAX_BYTES + 1);
        assert!(matches!(check_topic(&long), Err(NameError::TooLong { max_bytes: 127, .. })));
        assert_eq!(check_group(&"g".repeat(GROUP_MAX_BYTES)), Ok(()));
        assert!(check_group(&"g".repeat(GROUP_MAX_BYTES + 1)).is_err());
        assert!(check_group("%RETRY%../../x").is_err());
    }

    #[test]
    fn every_valid_groups_system_topics_are_valid_topics() {
        let longest = "g".repeat(GROUP_MAX_BYTES);
        assert_eq!(retry_topic(&longest).len(), 255);
        assert_eq!(check_topic(&retry_topic(&longest)), Ok(()));
        assert_eq!(check_topic(&dlq_topic(&longest)), Ok(()));
        // A long name is only allowed as a valid group's retry/DLQ topic.
        let e = check_topic(&format!("%RETRY%{}", "/".repeat(200))).unwrap_err();
        assert!(matches!(e, NameError::IllegalCharacters { .. }), "{e}");
        assert!(check_topic(&format!("%RETRY%{}", "g".repeat(GROUP_MAX_BYTES + 1))).is_err());
    }

    #[test]
    fn the_remark_shows_a_bounded_printable_name() {
        let e = check_topic(&format!("\n{}", "x".repeat(10_000))).unwrap_err().to_string();
        assert!(e.len() < 300 && !e.contains('\n'), "{e}");
    }

    proptest! {
        /// Whatever the bytes, an accepted name is one path component that stays put.
        #[test]
        fn an_accepted_name_is_one_safe_path_component(name in "\\PC{0,300}") {
            if check_topic(&name).is_ok() || check_group(&name).is_ok() {
                prop_assert!(!name.is_empty() && name.len() <= 255);
                prop_assert!(!name.contains('/') && !name.contains('.') && !name.contains('\0'));
                let p = std::path::Path::new("/data").join(&name);
                prop_assert_eq!(p.parent(), Some(std::path::Path::new("/data")));
            }
        }
    }
}
