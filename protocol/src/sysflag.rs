//! Flag bits carried in headers and records (reference §2.3, §3.3).

/// PULL_MESSAGE `sysFlag` bits (`PullSysFlag.java`).
pub mod pull {
    /// Store the header's `commitOffset` for the group (piggybacked offset commit).
    pub const COMMIT_OFFSET: i32 = 0x1;
    /// Long polling: hold the request when there is no new message.
    pub const SUSPEND: i32 = 0x2;
    /// The header carries the subscription expression.
    pub const SUBSCRIPTION: i32 = 0x4;
    /// Legacy class filter.
    pub const CLASS_FILTER: i32 = 0x8;
    /// Lite pull consumer.
    pub const LITE_PULL_MESSAGE: i32 = 0x10;

    pub fn build(commit_offset: bool, suspend: bool, subscription: bool) -> i32 {
        let mut flag = 0;
        if commit_offset {
            flag |= COMMIT_OFFSET;
        }
        if suspend {
            flag |= SUSPEND;
        }
        if subscription {
            flag |= SUBSCRIPTION;
        }
        flag
    }
}

/// Message `sysFlag` bits (`MessageSysFlag.java`).
pub mod message {
    pub const COMPRESSED: i32 = 0x1;
    pub const MULTI_TAGS: i32 = 0x2;
    /// The two transaction bits.
    pub const TRANSACTION_MASK: i32 = 0xC;
    pub const TRANSACTION_NOT_TYPE: i32 = 0x0;
    pub const TRANSACTION_PREPARED: i32 = 0x4;
    pub const TRANSACTION_COMMIT: i32 = 0x8;
    pub const TRANSACTION_ROLLBACK: i32 = 0xC;
    pub const BORNHOST_V6: i32 = 0x10;
    pub const STOREHOST_V6: i32 = 0x20;
    pub const NEED_UNWRAP: i32 = 0x40;
    pub const INNER_BATCH: i32 = 0x80;
    /// Bits 8-10: how a COMPRESSED body is compressed. 0 means zlib (clients before 4.9.x).
    pub const COMPRESSION_TYPE_MASK: i32 = 0x700;
    pub const COMPRESSION_LZ4: i32 = 0x100;
    pub const COMPRESSION_ZSTD: i32 = 0x200;
    pub const COMPRESSION_ZLIB: i32 = 0x300;

    pub fn transaction_value(sys_flag: i32) -> i32 {
        sys_flag & TRANSACTION_MASK
    }

    pub fn reset_transaction_value(sys_flag: i32, value: i32) -> i32 {
        (sys_flag & !TRANSACTION_MASK) | (value & TRANSACTION_MASK)
    }
}
