//! Admission: the one place where a send is checked before anything of it is proposed to Raft.
//!
//! Whatever reaches the Raft log must apply on every replica, so everything a client controls
//! is checked here, once, on the leader: names (`names::check_topic`), system topics clients may
//! not write, transaction bits (a half message is stored in the half topic, `transaction::half`;
//! commit and rollback bits are the broker's own), body, properties, record and entry sizes, and whether
//! the disk takes new writes. The records this step builds pass `admit::check_record`, the check
//! dispatch relies on (a property test below holds the two together), and fit one log entry.
//!
//! Every refusal is a RocketMQ response code with RocketMQ's remark, so stock clients react as
//! they do against RocketMQ (retry elsewhere, or report the error to the application).

use std::net::SocketAddr;

use bytes::Bytes;
use rocketraft_protocol::headers::SendMessageRequestHeader;
use rocketraft_protocol::message::{
    body_crc, decode_batch, property, record_max_bytes, MessageRecord, PROPERTIES_MAX_BYTES,
};
use rocketraft_protocol::names;
use rocketraft_protocol::sysflag::message as msgflag;
use rocketraft_protocol::{request_code as rc, response_code};

use crate::schedule::{park, ParkRules};
use rocketraft_store::StoreError;

/// A send refused: the response code and remark to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: i32,
    pub remark: String,
}

impl Refusal {
    fn new(code: i32, remark: impl Into<String>) -> Self {
        Refusal { code, remark: remark.into() }
    }
}

/// The limits a send is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    /// The largest body (a batch's whole body). RocketMQ's `maxMessageSize`.
    pub body_max_bytes: usize,
    /// The largest payload one log entry holds (`CommitLog::entry_payload_max_bytes`).
    pub entry_payload_max_bytes: usize,
}

impl SendLimits {
    /// The most bytes of records one send may make: what the body limit allows a record to be
    /// ([`record_max_bytes`]), and never more than one entry.
    pub fn records_max_bytes(&self) -> usize {
        record_max_bytes(self.body_max_bytes).min(self.entry_payload_max_bytes)
    }
}

/// What the broker stamps on each record it stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub born_host: SocketAddr,
    pub store_host: SocketAddr,
    pub store_timestamp_ms: i64,
}

/// Whether a send is a transaction half message (RocketMQ decides by the `TRAN_MSG` property;
/// its producers also set the PREPARED bit). Commit and rollback bits are refused: only
/// END_TRANSACTION resolves a half message.
fn is_half(sys_flag: i32, properties: &str) -> Result<bool, Refusal> {
    let tran = msgflag::transaction_value(sys_flag);
    if tran == msgflag::TRANSACTION_COMMIT || tran == msgflag::TRANSACTION_ROLLBACK {
        return Err(Refusal::new(
            response_code::MESSAGE_ILLEGAL,
            "a transaction is committed or rolled back by END_TRANSACTION, not by a send",
        ));
    }
    Ok(tran == msgflag::TRANSACTION_PREPARED
        || rocketraft_protocol::message::find_property(properties, property::TRAN_MSG)
            .is_some_and(|v| v.eq_ignore_ascii_case("true")))
}

fn transactions_forbidden(store_host: SocketAddr) -> Refusal {
    // RocketMQ's answer when its broker rejects transaction messages.
    Refusal::new(
        response_code::NO_PERMISSION,
        format!("the broker[{store_host}] sending transaction message is forbidden"),
    )
}

/// Checks what can be checked from the header alone, before the topic is looked up (so a bad
/// name never reaches auto-creation): the topic's name, system topics, transaction bits
/// (`reject_transactions`: RocketMQ's `rejectTransactionMessage`).
pub fn check_header(
    h: &SendMessageRequestHeader,
    store_host: SocketAddr,
    reject_transactions: bool,
) -> Result<(), Refusal> {
    names::check_topic(&h.topic)
        .map_err(|e| Refusal::new(response_code::SYSTEM_ERROR, e.to_string()))?;
    if names::send_forbidden(&h.topic) {
        return Err(Refusal::new(
            response_code::NO_PERMISSION,
            format!("Sending message to topic[{}] is forbidden.", h.topic),
        ));
    }
    if is_half(h.sys_flag, h.properties.as_deref().unwrap_or(""))? && reject_transactions {
        return Err(transactions_forbidden(store_host));
    }
    Ok(())
}

/// Builds the records of a send (one, or each message of a batch) for `queue_id`, checking
/// sizes and each message's own properties. The records' queue offsets are assigned later by
/// the proposer.
/// A message that asks for a delay level or a timer is parked (`schedule::park`); a
/// transaction half message waits in the half topic (`transaction::half`), never parked.
pub fn encode_records(
    code: i32,
    h: &SendMessageRequestHeader,
    body: &[u8],
    queue_id: i32,
    stamp: Stamp,
    limits: SendLimits,
    rules: ParkRules<'_>,
) -> Result<Vec<Vec<u8>>, Refusal> {
    let illegal = |remark: String| Refusal::new(response_code::MESSAGE_ILLEGAL, remark);
    if queue_id < 0 {
        return Err(Refusal::new(
            response_code::SYSTEM_ERROR,
            format!("request queueId[{queue_id}] is illegal"),
        ));
    }
    if body.len() > limits.body_max_bytes {
        return Err(illegal(format!(
            "the message body size over max value, MAX: {}",
            limits.body_max_bytes
        )));
    }
    let header_props = h.properties.clone().unwrap_or_default();
    // (flag, body, properties) of each message: one, or every message of a batch, which gets
    // the batch's properties appended to its own (RocketMQ's rule).
    let batch = code == rc::SEND_BATCH_MESSAGE;
    let items: Vec<(i32, Bytes, String)> = if batch {
        let batch = decode_batch(body).map_err(|e| illegal(e.to_string()))?;
        if batch.is_empty() {
            return Err(illegal("the batch is empty".into()));
        }
        batch
            .into_iter()
            .map(|m| {
                let props = match (m.properties.is_empty(), header_props.is_empty()) {
                    (_, true) => m.properties,
                    (true, false) => header_props.clone(),
                    (false, false) => {
                        format!("{}{}{header_props}", m.properties, property::PROPERTY_SEPARATOR)
                    }
                };
                (m.flag, m.body, props)
            })
            .collect()
    } else {
        vec![(h.flag, Bytes::copy_from_slice(body), header_props)]
    };
    let records_max = limits.records_max_bytes();
    let mut total = 0usize;
    let mut records = Vec::with_capacity(items.len());
    for (flag, body, properties) in items {
        if properties.len() > PROPERTIES_MAX_BYTES {
            return Err(illegal(format!(
                "the message properties size over max value, MAX: {PROPERTIES_MAX_BYTES}"
            )));
        }
        let half = is_half(h.sys_flag, &properties)?;
        if half && batch {
            return Err(illegal("a batch may not hold transactional messages".into()));
        }
        let parked = if half {
            Some(crate::transaction::half(&h.topic, queue_id, &properties, &h.producer_group)?)
        } else {
            park(&h.topic, queue_id, &properties, stamp.store_timestamp_ms, rules, batch)?
        };
        let (topic, queue_id, properties) = match parked {
            Some(to) => (to.topic, to.queue_id, to.properties),
            None => (h.topic.clone(), queue_id, properties),
        };
        let record = MessageRecord {
            body_crc: body_crc(&body),
            queue_id,
            flag,
            // The host bits follow the hosts, which the broker sets; a half message is stored
            // as a plain record of the half topic (RocketMQ resets its transaction bits).
            sys_flag: msgflag::reset_transaction_value(
                h.sys_flag & !(msgflag::BORNHOST_V6 | msgflag::STOREHOST_V6),
                msgflag::TRANSACTION_NOT_TYPE,
            ),
            born_timestamp: h.born_timestamp,
            born_host: stamp.born_host,
            store_timestamp: stamp.store_timestamp_ms,
            store_host: stamp.store_host,
            reconsume_times: h.reconsume_times.unwrap_or(0),
            body,
            topic,
            properties,
            ..Default::default()
        };
        let encoded = record.encode().map_err(|e| illegal(e.to_string()))?;
        total = total.saturating_add(encoded.len());
        if total > records_max {
            return Err(illegal(format!(
                "the message is {total} bytes or more once stored, over the limit of \
                 {records_max} bytes (a body of at most {} bytes with its properties)",
                limits.body_max_bytes
            )));
        }
        records.push(encoded);
    }
    Ok(records)
}

/// The answer to a send the store does not admit (RocketMQ's SERVICE_NOT_AVAILABLE, which
/// producers retry on another broker): the disk is above its usage limit, or an earlier sync
/// failed and the replica is stopping.
pub fn store_refuses(e: &StoreError) -> Refusal {
    let reason = match e {
        StoreError::DiskFull { .. } => format!("the broker's disk is full ({e})"),
        other => format!("message store has been shut down ({other})"),
    };
    Refusal::new(
        response_code::SERVICE_NOT_AVAILABLE,
        format!(
            "service not available now. It may be caused by one of the following reasons: \
             {reason}, messages are put to the slave, message store has been shut down, etc."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rocketraft_protocol::message::{encode_batch, properties_to_string, BatchMessage};
    use rocketraft_store::admit::{check_record, takes_queue_offset};
    use rocketraft_store::io::sim::SimStorage;
    use rocketraft_store::{
        CommitLog, CommitLogConfig, DispatchConfig, Dispatcher, EntryKind, LogEntry, RaftIndex,
    };

    fn host() -> SocketAddr {
        "127.0.0.1:10911".parse().unwrap()
    }

    fn stamp() -> Stamp {
        Stamp {
            born_host: "[::1]:5000".parse().unwrap(),
            store_host: host(),
            store_timestamp_ms: 1,
        }
    }

    fn rules() -> ParkRules<'static> {
        static LEVELS: std::sync::OnceLock<rocketraft_protocol::schedule::DelayLevels> =
            std::sync::OnceLock::new();
        ParkRules { levels: LEVELS.get_or_init(Default::default), timer_max_delay_sec: 60 }
    }

    const LIMITS: SendLimits = SendLimits {
        body_max_bytes: rocketraft_protocol::message::MESSAGE_MAX_BYTES_DEFAULT,
        entry_payload_max_bytes: (64 << 20) - 44,
    };

    fn header(topic: &str, sys_flag: i32, props: &str) -> SendMessageRequestHeader {
        SendMessageRequestHeader {
            producer_group: "PG".into(),
            topic: topic.into(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 4,
            queue_id: 0,
            sys_flag,
            born_timestamp: 0,
            flag: 0,
            properties: Some(props.into()),
            reconsume_times: None,
            unit_mode: None,
            batch: None,
            max_reconsume_times: None,
            broker_name: None,
        }
    }

    #[test]
    fn half_messages_wait_in_the_half_topic_and_transaction_bits_are_checked() {
        let tran = properties_to_string([("TRAN_MSG", "true"), ("DELAY", "3"), ("KEYS", "k")]);
        // Accepted, unless the broker rejects transactions; commit/rollback bits never.
        for (flag, props) in
            [(msgflag::TRANSACTION_PREPARED, ""), (0, tran.as_str()), (0x4 | 0x1, tran.as_str())]
        {
            assert_eq!(check_header(&header("T", flag, props), host(), false), Ok(()));
            let e = check_header(&header("T", flag, props), host(), true).unwrap_err();
            assert_eq!(e.code, response_code::NO_PERMISSION, "{flag} {props:?}");
            assert!(e.remark.contains("sending transaction message is forbidden"), "{e:?}");
        }
        for flag in [msgflag::TRANSACTION_COMMIT, msgflag::TRANSACTION_ROLLBACK] {
            let e = check_header(&header("T", flag, ""), host(), false).unwrap_err();
            assert_eq!(e.code, response_code::MESSAGE_ILLEGAL, "{flag}");
        }
        // A half: the half topic's queue 0, its real place in properties, DELAY dropped, no
        // transaction bits, the producer group recorded.
        let h = header("T", msgflag::TRANSACTION_PREPARED, &tran);
        let records =
            encode_records(rc::SEND_MESSAGE, &h, b"x", 3, stamp(), LIMITS, rules()).unwrap();
        let view = rocketraft_protocol::message::RecordView::decode(&records[0]).unwrap();
        assert_eq!((view.topic, view.queue_id), (names::TRANS_HALF_TOPIC, 0));
        assert_eq!(msgflag::transaction_value(view.sys_flag), msgflag::TRANSACTION_NOT_TYPE);
        assert_eq!(view.property(property::REAL_TOPIC), Some("T"));
        assert_eq!(view.property(property::REAL_QID), Some("3"));
        assert_eq!(view.property(property::PGROUP), Some("PG"));
        assert_eq!(view.property(property::DELAY), None);
        assert_eq!(view.property(property::KEYS), Some("k"));
        // A batch message carrying TRAN_MSG in its own properties.
        let body = encode_batch(&[BatchMessage {
            flag: 0,
            body: Bytes::from_static(b"x"),
            properties: tran.clone(),
        }])
        .unwrap();
        let h = header("T", 0, "");
        let e = encode_records(rc::SEND_BATCH_MESSAGE, &h, &body, 0, stamp(), LIMITS, rules())
            .unwrap_err();
        assert_eq!(e.code, response_code::MESSAGE_ILLEGAL);
        // The broker's own progress property is refused on a half too.
        let forged = properties_to_string([("TRAN_MSG", "true"), ("RR_MOVED_FROM", "X:0:1")]);
        let h = header("T", 0, &forged);
        let e =
            encode_records(rc::SEND_MESSAGE, &h, b"x", 0, stamp(), LIMITS, rules()).unwrap_err();
        assert_eq!(e.code, response_code::MESSAGE_ILLEGAL);
    }

    #[test]
    fn a_body_at_the_limit_fits_and_one_byte_more_does_not() {
        let h = header("T", 0, &properties_to_string([("KEYS", "k")]));
        let body = vec![7u8; LIMITS.body_max_bytes];
        let records =
            encode_records(rc::SEND_MESSAGE, &h, &body, 0, stamp(), LIMITS, rules()).unwrap();
        assert!(records[0].len() > LIMITS.body_max_bytes);
        let over = vec![7u8; LIMITS.body_max_bytes + 1];
        let e =
            encode_records(rc::SEND_MESSAGE, &h, &over, 0, stamp(), LIMITS, rules()).unwrap_err();
        assert_eq!(e.code, response_code::MESSAGE_ILLEGAL);
        // A small log: one entry holds less than the body limit.
        let small = SendLimits { entry_payload_max_bytes: 1 << 20, ..LIMITS };
        let e =
            encode_records(rc::SEND_MESSAGE, &h, &body, 0, stamp(), small, rules()).unwrap_err();
        assert_eq!(e.code, response_code::MESSAGE_ILLEGAL, "{e:?}");
    }

    #[test]
    fn names_and_system_topics_are_checked_before_anything_else() {
        for bad in ["../x", "", "a/b", &"t".repeat(128)] {
            let e = check_header(&header(bad, 0, ""), host(), false).unwrap_err();
            assert_eq!(e.code, response_code::SYSTEM_ERROR, "{bad:?}");
        }
        let e = check_header(&header(names::TRANS_HALF_TOPIC, 0, ""), host(), false).unwrap_err();
        assert_eq!(e.code, response_code::NO_PERMISSION);
    }

    /// Byte strings, short ones and ones around the size limits.
    fn blob(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 0..64),
            1 => (0..=max).prop_map(|n| vec![b'x'; n]),
        ]
    }

    /// Names: valid ones and hostile ones.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[A-Za-z0-9%|_-]{1,20}",
            1 => "\\PC{0,12}",
            1 => Just("../../etc".to_owned()),
            1 => Just("%RETRY%g".to_owned()),
            1 => (120usize..140).prop_map(|n| "t".repeat(n)),
        ]
    }

    fn props() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => proptest::collection::vec(("[A-Z_]{1,8}", "\\PC{0,12}"), 0..4)
                .prop_map(|kv| properties_to_string(kv.iter().map(|(k, v)| (k.as_str(), v.as_str())))),
            1 => "\\PC{0,40}",
            1 => (32_700usize..32_800).prop_map(|n| "p".repeat(n)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Any send admission accepts, dispatch indexes: the records pass dispatch's own check
        /// and, with queue offsets assigned as the proposer assigns them, go into the queues.
        #[test]
        fn whatever_admission_accepts_dispatch_indexes(
            sends in proptest::collection::vec(
                (name(), any::<i32>(), props(), blob(1 << 16), 0i32..8, prop::bool::ANY),
                1..6,
            ),
        ) {
            let limits = SendLimits { body_max_bytes: 1 << 16, entry_payload_max_bytes: 1 << 20 };
            let storage = SimStorage::new();
            let config = CommitLogConfig { segment_size_bytes: (1 << 20) + 44, ..Default::default() };
            let (mut log, _) = CommitLog::open(storage.clone(), config).unwrap();
            let mut dispatcher = Dispatcher::open(storage, DispatchConfig::default(), &log).unwrap();
            let mut next = std::collections::HashMap::<(String, i32), i64>::new();
            for (i, (topic, sys_flag, props, body, queue_id, batch)) in sends.into_iter().enumerate() {
                let h = header(&topic, sys_flag, &props);
                let (code, body) = if batch {
                    let m = BatchMessage { flag: 1, body: Bytes::from(body), properties: props.clone() };
                    (rc::SEND_BATCH_MESSAGE, encode_batch(&[m.clone(), m]).unwrap_or_default())
                } else {
                    (rc::SEND_MESSAGE, body)
                };
                let records = check_header(&h, host(), false)
                    .and_then(|()| encode_records(code, &h, &body, queue_id, stamp(), limits, rules()));
                let Ok(mut records) = records else { continue };
                let mut payload = Vec::new();
                for r in &mut records {
                    let view = rocketraft_protocol::message::RecordView::decode(r).unwrap();
                    prop_assert_eq!(check_record(&view), Ok(()));
                    let offset = if takes_queue_offset(view.sys_flag) {
                        let n = next.entry((view.topic.to_owned(), view.queue_id)).or_default();
                        *n += 1;
                        *n - 1
                    } else {
                        0
                    };
                    rocketraft_protocol::message::patch_queue_offset(r, offset);
                    payload.extend_from_slice(r);
                }
                prop_assert!(payload.len() <= limits.entry_payload_max_bytes);
                let entry = LogEntry {
                    index: RaftIndex(i as u64 + 1),
                    term: 1,
                    leader: 0,
                    kind: EntryKind::Messages,
                    payload: Bytes::from(payload),
                };
                log.append(std::slice::from_ref(&entry)).unwrap();
                let position = log.entry_meta(entry.index).unwrap().position;
                let stored = log.entries(entry.index..RaftIndex(entry.index.0 + 1)).unwrap().remove(0);
                prop_assert!(dispatcher.dispatch(position, &stored).is_ok());
            }
        }
    }
}
