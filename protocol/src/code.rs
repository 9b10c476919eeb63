//! Request codes, response codes, language codes, serialization types and flag bits of the
//! RocketMQ 4.x remoting protocol (reference §1.2, §2.1, §2.7). Codes are `i32` on the wire
//! (JSON headers) and `i16` in the ROCKETMQ binary header.

macro_rules! codes {
    ($(#[$doc:meta])* $module:ident, $name_fn:ident { $($(#[$cdoc:meta])* $name:ident = $value:expr,)* }) => {
        $(#[$doc])*
        pub mod $module {
            $($(#[$cdoc])* pub const $name: i32 = $value;)*

            /// The RocketMQ name of a code, for logs and error remarks.
            pub fn $name_fn(code: i32) -> Option<&'static str> {
                match code {
                    $($name => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    /// Request codes (`RequestCode.java`, 4.9.8 numbering; unchanged in 5.x).
    request_code, name {
        SEND_MESSAGE = 10,
        PULL_MESSAGE = 11,
        QUERY_MESSAGE = 12,
        QUERY_BROKER_OFFSET = 13,
        QUERY_CONSUMER_OFFSET = 14,
        UPDATE_CONSUMER_OFFSET = 15,
        UPDATE_AND_CREATE_TOPIC = 17,
        GET_ALL_TOPIC_CONFIG = 21,
        GET_TOPIC_CONFIG_LIST = 22,
        GET_TOPIC_NAME_LIST = 23,
        UPDATE_BROKER_CONFIG = 25,
        GET_BROKER_CONFIG = 26,
        TRIGGER_DELETE_FILES = 27,
        GET_BROKER_RUNTIME_INFO = 28,
        SEARCH_OFFSET_BY_TIMESTAMP = 29,
        GET_MAX_OFFSET = 30,
        GET_MIN_OFFSET = 31,
        GET_EARLIEST_MSG_STORETIME = 32,
        VIEW_MESSAGE_BY_ID = 33,
        HEART_BEAT = 34,
        UNREGISTER_CLIENT = 35,
        CONSUMER_SEND_MSG_BACK = 36,
        END_TRANSACTION = 37,
        GET_CONSUMER_LIST_BY_GROUP = 38,
        CHECK_TRANSACTION_STATE = 39,
        NOTIFY_CONSUMER_IDS_CHANGED = 40,
        LOCK_BATCH_MQ = 41,
        UNLOCK_BATCH_MQ = 42,
        GET_ALL_CONSUMER_OFFSET = 43,
        GET_ALL_DELAY_OFFSET = 45,
        CHECK_CLIENT_CONFIG = 46,
        PUT_KV_CONFIG = 100,
        GET_KV_CONFIG = 101,
        DELETE_KV_CONFIG = 102,
        REGISTER_BROKER = 103,
        UNREGISTER_BROKER = 104,
        GET_ROUTEINFO_BY_TOPIC = 105,
        GET_BROKER_CLUSTER_INFO = 106,
        UPDATE_AND_CREATE_SUBSCRIPTIONGROUP = 200,
        GET_ALL_SUBSCRIPTIONGROUP_CONFIG = 201,
        GET_TOPIC_STATS_INFO = 202,
        GET_CONSUMER_CONNECTION_LIST = 203,
        GET_PRODUCER_CONNECTION_LIST = 204,
        WIPE_WRITE_PERM_OF_BROKER = 205,
        GET_ALL_TOPIC_LIST_FROM_NAMESERVER = 206,
        DELETE_SUBSCRIPTIONGROUP = 207,
        GET_CONSUME_STATS = 208,
        DELETE_TOPIC_IN_BROKER = 215,
        DELETE_TOPIC_IN_NAMESRV = 216,
        REGISTER_TOPIC_IN_NAMESRV = 217,
        GET_KVLIST_BY_NAMESPACE = 219,
        INVOKE_BROKER_TO_RESET_OFFSET = 222,
        GET_TOPICS_BY_CLUSTER = 224,
        QUERY_TOPIC_CONSUME_BY_WHO = 300,
        QUERY_CONSUME_TIME_SPAN = 303,
        GET_SYSTEM_TOPIC_LIST_FROM_NS = 304,
        GET_SYSTEM_TOPIC_LIST_FROM_BROKER = 305,
        GET_CONSUMER_RUNNING_INFO = 307,
        SEND_MESSAGE_V2 = 310,
        GET_NAMESRV_CONFIG = 319,
        UPDATE_NAMESRV_CONFIG = 318,
        SEND_BATCH_MESSAGE = 320,
        QUERY_DATA_VERSION = 322,
        /// Request-reply (4.6+): a consumer's reply to a request message.
        SEND_REPLY_MESSAGE = 324,
        SEND_REPLY_MESSAGE_V2 = 325,
        /// Request-reply: the broker hands a reply to the requesting producer.
        PUSH_REPLY_MESSAGE_TO_CLIENT = 326,
        ADD_WRITE_PERM_OF_BROKER = 327,
        /// 5.x only.
        GET_TOPIC_CONFIG = 351,
        GET_SUBSCRIPTIONGROUP_CONFIG = 352,
        /// RocketRaft's own (no RocketMQ client sends it): the unresolved transaction half
        /// messages of a broker group, header
        /// [`crate::headers::UnresolvedHalvesRequestHeader`], body
        /// [`crate::body::UnresolvedHalves`].
        GET_UNRESOLVED_HALVES = 13_001,
        /// RocketRaft's own: the group's leader hands leadership to another voter, header
        /// [`crate::headers::TransferLeaderRequestHeader`], answered with
        /// [`crate::headers::TransferLeaderResponseHeader`] once a leader of a newer term is
        /// known (SYSTEM_ERROR with the reason otherwise).
        RAFT_TRANSFER_LEADER = 13_002,
        /// RocketRaft's own: the group's leader adds a replica, header
        /// [`crate::headers::ChangeReplicaRequestHeader`] (node and addr); answered once it is a
        /// voter, with [`crate::headers::MembersResponseHeader`].
        RAFT_ADD_REPLICA = 13_003,
        /// RocketRaft's own: the group's leader removes a replica (never itself), header
        /// [`crate::headers::ChangeReplicaRequestHeader`] (node); answered with
        /// [`crate::headers::MembersResponseHeader`].
        RAFT_REMOVE_REPLICA = 13_004,
    }
}

codes! {
    /// Response codes (`RemotingSysResponseCode.java` and `ResponseCode.java`, 4.x meanings).
    response_code, name {
        SUCCESS = 0,
        SYSTEM_ERROR = 1,
        SYSTEM_BUSY = 2,
        REQUEST_CODE_NOT_SUPPORTED = 3,
        TRANSACTION_FAILED = 4,
        FLUSH_DISK_TIMEOUT = 10,
        SLAVE_NOT_AVAILABLE = 11,
        FLUSH_SLAVE_TIMEOUT = 12,
        MESSAGE_ILLEGAL = 13,
        SERVICE_NOT_AVAILABLE = 14,
        VERSION_NOT_SUPPORTED = 15,
        NO_PERMISSION = 16,
        TOPIC_NOT_EXIST = 17,
        TOPIC_EXIST_ALREADY = 18,
        PULL_NOT_FOUND = 19,
        PULL_RETRY_IMMEDIATELY = 20,
        PULL_OFFSET_MOVED = 21,
        QUERY_NOT_FOUND = 22,
        SUBSCRIPTION_PARSE_FAILED = 23,
        SUBSCRIPTION_NOT_EXIST = 24,
        SUBSCRIPTION_NOT_LATEST = 25,
        SUBSCRIPTION_GROUP_NOT_EXIST = 26,
        FILTER_DATA_NOT_EXIST = 27,
        FILTER_DATA_NOT_LATEST = 28,
        /// 5.x; 4.x brokers answer SYSTEM_ERROR where 5.x answers this.
        INVALID_PARAMETER = 29,
        TRANSACTION_SHOULD_COMMIT = 200,
        TRANSACTION_SHOULD_ROLLBACK = 201,
        TRANSACTION_STATE_UNKNOW = 202,
        TRANSACTION_STATE_GROUP_WRONG = 203,
        NO_BUYER_ID = 204,
        NOT_IN_CURRENT_UNIT = 205,
        CONSUMER_NOT_ONLINE = 206,
        CONSUME_MSG_TIMEOUT = 207,
        NO_MESSAGE = 208,
        FLOW_CONTROL = 215,
    }
}

/// `MQVersion.Version` ordinals that servers branch on.
pub mod version {
    /// V3_4_9: brokers honour `maxReconsumeTimes` from this client version on.
    pub const V3_4_9: i32 = 121;
    /// V4_9_4: NameServers answer routes in standard JSON to clients at or above this.
    pub const V4_9_4: i32 = 401;
    /// V4_9_8, the last 4.x release: what RocketRaft reports in every command it sends.
    pub const V4_9_8: i32 = 409;
    /// The version RocketRaft puts in every request and response (must be >= 401, reference §1.2).
    pub const CURRENT: i32 = V4_9_8;
}

/// Bits of the header's `flag` field.
pub mod flag {
    /// Set on responses (`1 << RPC_TYPE`).
    pub const RESPONSE: i32 = 1;
    /// Set on oneway requests (`1 << RPC_ONEWAY`).
    pub const ONEWAY: i32 = 2;
}

/// `LanguageCode`: serialized by name in JSON headers and as a byte in ROCKETMQ headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LanguageCode {
    Java,
    Cpp,
    Dotnet,
    Python,
    Delphi,
    Erlang,
    Ruby,
    Other,
    Http,
    Go,
    Php,
    Oms,
    Rust,
}

impl LanguageCode {
    const ALL: [LanguageCode; 13] = [
        LanguageCode::Java,
        LanguageCode::Cpp,
        LanguageCode::Dotnet,
        LanguageCode::Python,
        LanguageCode::Delphi,
        LanguageCode::Erlang,
        LanguageCode::Ruby,
        LanguageCode::Other,
        LanguageCode::Http,
        LanguageCode::Go,
        LanguageCode::Php,
        LanguageCode::Oms,
        LanguageCode::Rust,
    ];

    /// The byte used by the ROCKETMQ binary header.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The enum name used by JSON headers.
    pub fn name(self) -> &'static str {
        match self {
            LanguageCode::Java => "JAVA",
            LanguageCode::Cpp => "CPP",
            LanguageCode::Dotnet => "DOTNET",
            LanguageCode::Python => "PYTHON",
            LanguageCode::Delphi => "DELPHI",
            LanguageCode::Erlang => "ERLANG",
            LanguageCode::Ruby => "RUBY",
            LanguageCode::Other => "OTHER",
            LanguageCode::Http => "HTTP",
            LanguageCode::Go => "GO",
            LanguageCode::Php => "PHP",
            LanguageCode::Oms => "OMS",
            LanguageCode::Rust => "RUST",
        }
    }

    /// Reads a byte; unknown bytes are tolerated as `Other` (peers never depend on it).
    pub fn from_code(code: u8) -> LanguageCode {
        Self::ALL.get(usize::from(code)).copied().unwrap_or(LanguageCode::Other)
    }

    /// Reads a name; unknown names are tolerated as `Other`, as fastjson tolerates them.
    pub fn from_name(name: &str) -> LanguageCode {
        Self::ALL.iter().copied().find(|l| l.name() == name).unwrap_or(LanguageCode::Other)
    }
}

/// How a frame's header is serialized: the high byte of the frame's header-length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SerializeType {
    /// fastjson-compatible JSON (the default of every RocketMQ client).
    #[default]
    Json,
    /// The compact ROCKETMQ binary form (reference §1.3).
    RocketMq,
}

impl SerializeType {
    pub fn code(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        }
    }

    pub fn from_code(code: u8) -> crate::Result<SerializeType> {
        match code {
            0 => Ok(SerializeType::Json),
            1 => Ok(SerializeType::RocketMq),
            other => Err(crate::ProtocolError::UnknownSerializeType(other)),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SerializeType::Json => "JSON",
            SerializeType::RocketMq => "ROCKETMQ",
        }
    }
}

/// Topic and queue permission bits (`PermName.java`).
pub mod perm {
    pub const PRIORITY: i32 = 8;
    pub const READ: i32 = 4;
    pub const WRITE: i32 = 2;
    pub const INHERIT: i32 = 1;

    pub fn is_readable(perm: i32) -> bool {
        perm & READ != 0
    }
    pub fn is_writeable(perm: i32) -> bool {
        perm & WRITE != 0
    }
    pub fn is_inherited(perm: i32) -> bool {
        perm & INHERIT != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_codes_round_trip_and_tolerate_unknowns() {
        for l in LanguageCode::ALL {
            assert_eq!(LanguageCode::from_code(l.code()), l);
            assert_eq!(LanguageCode::from_name(l.name()), l);
        }
        assert_eq!(LanguageCode::Rust.code(), 12);
        assert_eq!(LanguageCode::Go.code(), 9);
        assert_eq!(LanguageCode::from_code(200), LanguageCode::Other);
        assert_eq!(LanguageCode::from_name("COBOL"), LanguageCode::Other);
    }

    #[test]
    fn code_names_are_the_rocketmq_names() {
        assert_eq!(request_code::name(310), Some("SEND_MESSAGE_V2"));
        assert_eq!(response_code::name(21), Some("PULL_OFFSET_MOVED"));
        assert_eq!(request_code::name(99_999), None);
    }
}
