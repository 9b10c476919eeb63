//! Transactional messages: where a half message waits, how END_TRANSACTION resolves it, and
//! the master's check-back service.
//!
//! A half message (TRAN_MSG, or the PREPARED bit) is stored in `RMQ_SYS_TRANS_HALF_TOPIC`,
//! queue 0, with its real topic and queue in `REAL_TOPIC`/`REAL_QID` and its producer group
//! in `PGROUP`; it takes no offset of its real queue and no consumer sees it.
//!
//! Resolution is replicated, and always one Raft entry:
//! - a commit is the message stored in its real queue (commit bit set, offsets assigned then)
//!   with `RR_MOVED_FROM` naming the half; applying it marks the half committed;
//! - a rollback is a metadata command that marks the half rolled back;
//! - a half checked `transaction_check_max` times without an answer is copied to
//!   `TRANS_CHECK_MAX_TIME_TOPIC` the same way, which marks it discarded.
//!
//! So a failover can neither lose a commit nor repeat one: a new master reads the marks from
//! the replicated state, once every entry of its log is applied. On one master, a half is
//! resolved by one request at a time (`Resolving`); a second END_TRANSACTION for a resolved
//! half changes nothing.
//!
//! The check-back service (master only) scans the half queue every
//! `transaction_check_interval_ms` from the first half whose mark is kept: a half that is
//! unresolved and older than `transaction_timeout_ms` (or its `CHECK_IMMUNITY_TIME_IN_SECONDS`)
//! is sent to a connected producer of its group as CHECK_TRANSACTION_STATE, and its check count
//! (replicated, `MetaCommand::HalfChecks`) goes up; a half whose group has no producer connected
//! is not counted, and is checked once one connects. Marks before the first unresolved half
//! are dropped (`MetaCommand::ForgetHalves`): a half before that cut reads as resolved.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use rocketraft_protocol::message::{
    body_crc, find_property, property, rewrite_properties, MessageRecord, RecordView,
};
use rocketraft_protocol::names::{TRANS_CHECK_MAX_TIME_TOPIC, TRANS_HALF_TOPIC};
use rocketraft_protocol::response_code;
use rocketraft_protocol::sysflag::message as msgflag;
use rocketraft_raft::MetaStore;
use rocketraft_store::io::Storage;

use crate::admission::Refusal;
use crate::schedule::Destination;
use crate::server::Inner;

mod check;
pub(crate) use check::{run, unresolved};
pub use check::{CheckRound, CHECK_SCAN_MAX};

/// Properties a half message may not carry into its half-topic record: what would park it
/// (RocketMQ's producer clears DELAY; a timer makes no sense either) and the real place,
/// which the broker sets.
const NOT_ON_A_HALF: [&str; 7] = [
    property::DELAY,
    property::TIMER_DELIVER_MS,
    property::TIMER_DELAY_SEC,
    property::TIMER_DELAY_MS,
    property::TIMER_OUT_MS,
    property::REAL_TOPIC,
    property::REAL_QID,
];

/// Where a half message sent to `topic`/`queue_id` by `producer_group` waits.
pub fn half(
    topic: &str,
    queue_id: i32,
    properties: &str,
    producer_group: &str,
) -> Result<Destination, Refusal> {
    if find_property(properties, property::MOVED_FROM).is_some() {
        return Err(Refusal {
            code: response_code::MESSAGE_ILLEGAL,
            remark: format!("the property {} is the broker's own", property::MOVED_FROM),
        });
    }
    let qid = queue_id.to_string();
    let mut set = vec![(property::REAL_TOPIC, topic), (property::REAL_QID, qid.as_str())];
    if find_property(properties, property::PGROUP).is_none_or(str::is_empty) {
        set.push((property::PGROUP, producer_group));
    }
    Ok(Destination {
        topic: TRANS_HALF_TOPIC.to_owned(),
        queue_id: 0,
        properties: rewrite_properties(properties, &NOT_ON_A_HALF, &set),
    })
}

/// The half message's real topic and queue, if it has them.
pub fn real_place<'a>(half: &RecordView<'a>) -> Option<(&'a str, i32)> {
    let topic = half.property(property::REAL_TOPIC).filter(|t| !t.is_empty())?;
    let queue_id = half.property(property::REAL_QID)?.parse().ok().filter(|q: &i32| *q >= 0)?;
    Some((topic, queue_id))
}

/// `RR_MOVED_FROM` of a record that resolves the half at `half_offset`.
fn from_half(half_offset: i64) -> String {
    format!("{TRANS_HALF_TOPIC}:0:{half_offset}")
}

/// The committed message of `half`: its real topic and queue, the commit bit, keys, tags and
/// UNIQ_KEY kept, `REAL_TOPIC`/`REAL_QID` dropped, stamped now.
pub fn commit_record(
    half: &RecordView<'_>,
    now_ms: i64,
    store_host: SocketAddr,
) -> Result<Vec<u8>, String> {
    let (topic, queue_id) = real_place(half).ok_or("the half message has no real topic")?;
    let from = from_half(half.queue_offset);
    let remove = [property::REAL_TOPIC, property::REAL_QID, property::TRANSACTION_CHECK_TIMES];
    MessageRecord {
        body_crc: body_crc(half.body),
        queue_id,
        flag: half.flag,
        sys_flag: msgflag::reset_transaction_value(half.sys_flag, msgflag::TRANSACTION_COMMIT),
        born_timestamp: half.born_timestamp,
        born_host: half.born_host,
        store_timestamp: now_ms,
        store_host,
        reconsume_times: half.reconsume_times,
        prepared_transaction_offset: half.physical_offset,
        body: bytes::Bytes::copy_from_slice(half.body),
        topic: topic.to_owned(),
        properties: rewrite_properties(
            half.properties,
            &remove,
            &[(property::MOVED_FROM, from.as_str())],
        ),
        ..Default::default()
    }
    .encode()
    .map_err(|e| e.to_string())
}

/// Where the discarded copy of `half` goes (checked too often without an answer): the
/// discard topic, naming the half and how often it was checked.
pub(crate) fn discarded(half: &RecordView<'_>, checks: u32) -> Destination {
    let from = from_half(half.queue_offset);
    let checks = checks.to_string();
    Destination {
        topic: TRANS_CHECK_MAX_TIME_TOPIC.to_owned(),
        queue_id: 0,
        properties: rewrite_properties(
            half.properties,
            &[],
            &[
                (property::MOVED_FROM, from.as_str()),
                (property::TRANSACTION_CHECK_TIMES, checks.as_str()),
            ],
        ),
    }
}

/// The half messages a request (or the check service) is resolving now on this master.
#[derive(Debug, Default)]
pub(crate) struct Resolving(Mutex<HashSet<u64>>);

/// A half held by one resolution; released on drop.
pub(crate) struct Held<'a> {
    set: &'a Resolving,
    half: u64,
}

impl Resolving {
    /// Holds `half`, unless someone else is resolving it now.
    pub(crate) fn hold(&self, half: u64) -> Option<Held<'_>> {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Lazily: a `Held` made and dropped here would take the lock again, and release the
        // other holder's half.
        set.insert(half).then(|| Held { set: self, half })
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.set.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.half);
    }
}

/// Whether this replica is master with state that covers its whole log: a resolution must
/// see every earlier resolution, including one proposed in an earlier term and applied only
/// now (a leader that resumed its term after a restart counts as current before that).
pub(crate) async fn state_is_current<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
) -> bool {
    let catch_up_ms = crate::processor::MASTER_CATCH_UP_MS;
    if !inner.replica.master_ready(catch_up_ms).await {
        return false;
    }
    let term = inner.replica.term();
    if inner.current_term.load(Ordering::Acquire) == term {
        return true;
    }
    if !inner.replica.whole_log_applied(Duration::from_millis(catch_up_ms)).await {
        return false;
    }
    inner.current_term.store(term, Ordering::Release);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocketraft_protocol::message::parse_properties;

    #[test]
    fn a_half_keeps_its_real_place_and_group_and_loses_what_would_park_it() {
        let props = rocketraft_protocol::message::properties_to_string([
            ("TRAN_MSG", "true"),
            ("DELAY", "3"),
            ("TIMER_DELAY_SEC", "10"),
            ("REAL_TOPIC", "forged"),
            ("KEYS", "k"),
        ]);
        let d = half("T", 2, &props, "PG").unwrap();
        assert_eq!((d.topic.as_str(), d.queue_id), (TRANS_HALF_TOPIC, 0));
        let p = parse_properties(&d.properties);
        assert_eq!(p.get("REAL_TOPIC").map(String::as_str), Some("T"));
        assert_eq!(p.get("REAL_QID").map(String::as_str), Some("2"));
        assert_eq!(p.get("PGROUP").map(String::as_str), Some("PG"));
        assert_eq!(p.get("KEYS").map(String::as_str), Some("k"));
        assert!(!p.contains_key("DELAY") && !p.contains_key("TIMER_DELAY_SEC"));
        // The producer's own PGROUP stays (END_TRANSACTION is checked against it).
        let own = rocketraft_protocol::message::properties_to_string([("PGROUP", "Mine")]);
        let d = half("T", 0, &own, "PG").unwrap();
        assert_eq!(parse_properties(&d.properties).get("PGROUP").map(String::as_str), Some("Mine"));
    }

    #[test]
    fn a_half_is_held_by_one_resolution_at_a_time() {
        let resolving = Resolving::default();
        let first = resolving.hold(7).expect("free");
        // Refused while held, and the refusal leaves the first holder's hold in place.
        assert!(resolving.hold(7).is_none());
        assert!(resolving.hold(7).is_none());
        let other = resolving.hold(8).expect("another half is free");
        drop(first);
        assert!(resolving.hold(7).is_some(), "released on drop");
        drop(other);
    }

    #[test]
    fn a_commit_goes_to_the_real_queue_with_the_commit_bit_and_names_its_half() {
        let d = half("T", 1, "KEYS\u{1}k\u{2}UNIQ_KEY\u{1}U1\u{2}TAGS\u{1}a\u{2}", "PG").unwrap();
        let host: SocketAddr = "127.0.0.1:10911".parse().unwrap();
        let stored = MessageRecord {
            topic: d.topic,
            queue_id: 0,
            queue_offset: 7,
            physical_offset: 4096,
            properties: d.properties,
            body: bytes::Bytes::from_static(b"b"),
            body_crc: body_crc(b"b"),
            ..Default::default()
        }
        .encode()
        .unwrap();
        let view = RecordView::decode(&stored).unwrap();
        let raw = commit_record(&view, 5, host).unwrap();
        let c = RecordView::decode(&raw).unwrap();
        assert_eq!((c.topic, c.queue_id), ("T", 1));
        assert_eq!(msgflag::transaction_value(c.sys_flag), msgflag::TRANSACTION_COMMIT);
        assert_eq!(c.prepared_transaction_offset, 4096);
        let p = parse_properties(c.properties);
        assert_eq!(
            p.get("RR_MOVED_FROM").map(String::as_str),
            Some("RMQ_SYS_TRANS_HALF_TOPIC:0:7")
        );
        for (k, v) in [("KEYS", "k"), ("UNIQ_KEY", "U1"), ("TAGS", "a")] {
            assert_eq!(p.get(k).map(String::as_str), Some(v), "{k}");
        }
        assert!(!p.contains_key("REAL_TOPIC") && !p.contains_key("REAL_QID"));
    }
}
