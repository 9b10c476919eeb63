//! The master's check-back service and the listing of unresolved halves (see the parent
//! module for the rules).

use std::sync::Arc;
use std::time::Duration;

use rocketraft_protocol::body::UnresolvedHalf;
use rocketraft_protocol::headers::CheckTransactionStateRequestHeader;
use rocketraft_protocol::message::{
    body_crc, offset_msg_id, property, rewrite_properties, MessageRecord, RecordView,
};
use rocketraft_protocol::names::{TRANS_CHECK_MAX_TIME_TOPIC, TRANS_HALF_TOPIC};
use rocketraft_protocol::sysflag::message as msgflag;
use rocketraft_protocol::{request_code, RemotingCommand};
use rocketraft_raft::state_machine::FORGET_HALVES_MAX;
use rocketraft_raft::{MetaCommand, MetaStore, QueueRead, ReadLimits};
use rocketraft_store::io::Storage;
use rocketraft_store::QueueOffset;

use super::{discarded, real_place, state_is_current};
use crate::schedule::moved_record;
use crate::server::{group_now_ms, Inner};

/// Half messages one check round looks at past the resolved prefix, at most.
pub const CHECK_SCAN_MAX: u64 = 10_000;
/// Resolved half messages one round passes over (and forgets), at most: a round keeps up with
/// 33,000 transactions/s at the default 30 s interval.
const FORGET_SCAN_MAX: u64 = 1_000_000;
/// Halves whose marks one `ForgetHalves` drops (at most `FORGET_HALVES_MAX`).
const FORGET_CHUNK: u64 = 1_024;
const _: () = assert!(FORGET_CHUNK <= FORGET_HALVES_MAX);

/// The check-back service: a round every `transaction_check_interval_ms` while master.
pub(crate) async fn run<S: Storage + Clone, M: MetaStore>(
    inner: Arc<Inner<S, M>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let every = Duration::from_millis(inner.config.transaction_check_interval_ms.max(100));
    // The simulation's planted bug: (term, where the half queue ended when it began).
    #[cfg(madsim)]
    let mut term_start = (0u64, 0u64);
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(every) => {}
        }
        if !inner.replica.is_master() || !state_is_current(&inner).await {
            continue;
        }
        #[cfg(madsim)]
        let floor = if inner.config.sim_bug_tx_scan_from_term_start {
            let term = inner.replica.term();
            if term_start.0 != term {
                let end = inner.replica.queue_bounds(TRANS_HALF_TOPIC, 0).map_or(0, |b| b.1 .0);
                term_start = (term, end);
            }
            term_start.1
        } else {
            0
        };
        match check_round(
            &inner,
            #[cfg(madsim)]
            floor,
        )
        .await
        {
            Ok(round) if round.checked + round.discarded > 0 => tracing::info!(
                checked = round.checked,
                discarded = round.discarded,
                unresolved = round.unresolved,
                "transaction check round"
            ),
            Ok(_) => {}
            Err(e) => tracing::info!(error = %e, "transaction check round stopped"),
        }
    }
}

/// What a check round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CheckRound {
    /// Check-backs sent.
    pub checked: usize,
    /// Half messages discarded after too many checks.
    pub discarded: usize,
    /// Unresolved half messages seen.
    pub unresolved: usize,
}

/// The half message at `offset`, read alone (most halves are resolved by then, and a
/// resolved one is never read). `None` if it cannot be read now (gone, or the queues are busy
/// with a snapshot: the caller looks again later).
fn read_half<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    offset: u64,
) -> Result<Option<Vec<u8>>, String> {
    let one = ReadLimits { messages_max: 1, bytes_max: 1, scan_per_message: 1 };
    // Every tag code is at most i64::MAX: this takes the record whatever its tags.
    let read = inner
        .replica
        .read_due(TRANS_HALF_TOPIC, 0, QueueOffset(offset), one, i64::MAX)
        .map_err(|e| e.to_string())?;
    Ok(match read {
        QueueRead::Found { body, .. } => Some(body),
        _ => None,
    })
}

/// One round over the half queue: past the resolved prefix (forgotten), at most
/// [`CHECK_SCAN_MAX`] halves; it yields to other tasks as it goes (a round must not hold a
/// runtime worker).
pub(crate) async fn check_round<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    #[cfg(madsim)] floor: u64,
) -> Result<CheckRound, String> {
    let meta = inner.replica.metadata();
    let kept_from = meta.halves_from().map_err(|e| e.to_string())?;
    let Some((min, max)) = inner.replica.queue_bounds(TRANS_HALF_TOPIC, 0) else {
        return Ok(CheckRound::default());
    };
    let start = kept_from.max(min.0);
    if kept_from < min.0 {
        // Retention removed half messages before they were resolved (older than the log is
        // kept): nothing can resolve them any more.
        tracing::warn!(from = kept_from, to = min.0, "half messages were removed by retention");
    }
    // The resolved prefix (marks only, no record read): its marks can be forgotten. Most
    // halves are resolved within milliseconds, so this is where a busy queue's round goes.
    let mut resolved_to = start;
    let prefix_end = max.0.min(start.saturating_add(FORGET_SCAN_MAX));
    while resolved_to < prefix_end
        && meta.half_mark(resolved_to).map_err(|e| e.to_string())?.is_some()
    {
        resolved_to += 1;
        if resolved_to % 256 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let mut checks = Vec::new();
    let mut round = CheckRound::default();
    let now = group_now_ms(inner);
    let first = resolved_to;
    #[cfg(madsim)]
    let first = first.max(floor); // the planted bug: halves before the floor are never checked
    for offset in first..max.0.min(first.saturating_add(CHECK_SCAN_MAX)) {
        if offset % 256 == 0 {
            tokio::task::yield_now().await;
        }
        if meta.half_mark(offset).map_err(|e| e.to_string())?.is_some() {
            continue;
        }
        round.unresolved += 1;
        let Some(raw) = read_half(inner, offset)? else { break };
        let half = RecordView::decode(&raw).map_err(|e| e.to_string())?;
        if !due_for_check(inner, &half, now) {
            continue;
        }
        let count = meta.half_checks(offset).map_err(|e| e.to_string())?;
        if count >= inner.config.transaction_check_max {
            if discard(inner, &half, count, now).await? {
                round.discarded += 1;
            }
            continue;
        }
        if send_check(inner, &half, count + 1) {
            checks.push((offset, count + 1));
            round.checked += 1;
        } else {
            tracing::debug!(half = offset, "no producer of the half's group is connected");
        }
    }
    if !checks.is_empty() {
        let command = MetaCommand::HalfChecks { checks };
        inner.replica.propose_metadata(vec![command]).await.map_err(|e| e.to_string())?;
    }
    // In short ranges: applying one deletes its marks one by one, and must not hold the
    // state machine long.
    let mut from = kept_from;
    while from < resolved_to {
        let below = resolved_to.min(from + FORGET_CHUNK);
        let command = MetaCommand::ForgetHalves { from, below };
        inner.replica.propose_metadata(vec![command]).await.map_err(|e| e.to_string())?;
        from = below;
    }
    Ok(round)
}

/// The unresolved half messages (oldest first), of `topic` and/or `group` if given, at most
/// `max`; whether there were more. Reads what this replica applied; looks at most at
/// [`CHECK_SCAN_MAX`] halves, as a check round does.
pub(crate) fn unresolved<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    topic: Option<&str>,
    group: Option<&str>,
    max: usize,
) -> Result<(Vec<UnresolvedHalf>, bool), String> {
    let meta = inner.replica.metadata();
    let Some((min, end)) = inner.replica.queue_bounds(TRANS_HALF_TOPIC, 0) else {
        return Ok((Vec::new(), false));
    };
    let start = meta.halves_from().map_err(|e| e.to_string())?.max(min.0);
    let mut out = Vec::new();
    for offset in start..end.0.min(start.saturating_add(CHECK_SCAN_MAX)) {
        if meta.half_mark(offset).map_err(|e| e.to_string())?.is_some() {
            continue;
        }
        let Some(raw) = read_half(inner, offset)? else { break };
        let half = RecordView::decode(&raw).map_err(|e| e.to_string())?;
        let Some((real_topic, queue_id)) = real_place(&half) else { continue };
        let half_group = half.property(property::PGROUP).unwrap_or("");
        if topic.is_some_and(|t| t != real_topic) || group.is_some_and(|g| g != half_group) {
            continue;
        }
        if out.len() == max {
            return Ok((out, true));
        }
        out.push(UnresolvedHalf {
            half_offset: half.queue_offset,
            commit_log_offset: half.physical_offset,
            topic: real_topic.to_owned(),
            queue_id,
            producer_group: half_group.to_owned(),
            msg_id: half.property(property::UNIQ_KEY).unwrap_or("").to_owned(),
            store_timestamp: half.store_timestamp,
            check_times: meta.half_checks(offset).map_err(|e| e.to_string())?,
        });
    }
    Ok((out, false))
}

/// Whether `half` is old enough to be checked back.
fn due_for_check<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    half: &RecordView<'_>,
    now: i64,
) -> bool {
    let immunity_ms = half
        .property(property::CHECK_IMMUNITY_TIME_IN_SECONDS)
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(inner.config.transaction_timeout_ms, |s| s.saturating_mul(1000));
    now.saturating_sub(half.store_timestamp) >= immunity_ms.min(i64::MAX as u64) as i64
}

/// Moves `half` to the discard topic; false if it was resolved meanwhile.
async fn discard<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    half: &RecordView<'_>,
    checks: u32,
    now: i64,
) -> Result<bool, String> {
    let offset = half.queue_offset as u64;
    let Some(_held) = inner.resolving.hold(offset) else { return Ok(false) };
    if inner.replica.metadata().half_outcome(offset).map_err(|e| e.to_string())?.is_some() {
        return Ok(false);
    }
    ensure_discard_topic(inner).await?;
    let record = moved_record(half, discarded(half, checks), now, inner.config.advertised_addr)?;
    inner.replica.propose(vec![record]).await.map_err(|e| e.to_string())?;
    tracing::warn!(
        half = offset,
        group = half.property(property::PGROUP).unwrap_or(""),
        checks,
        "a transaction half message was never resolved: moved to {TRANS_CHECK_MAX_TIME_TOPIC}"
    );
    Ok(true)
}

/// Registers the discard topic (one queue, as RocketMQ creates it), so tools can read it.
async fn ensure_discard_topic<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
) -> Result<(), String> {
    let meta = inner.replica.metadata();
    if meta.topic(TRANS_CHECK_MAX_TIME_TOPIC).map_err(|e| e.to_string())?.is_some() {
        return Ok(());
    }
    let topic = crate::processor::single_queue_topic(TRANS_CHECK_MAX_TIME_TOPIC.to_owned());
    let command = MetaCommand::PutTopic(topic);
    inner.replica.propose_metadata(vec![command]).await.map_err(|e| e.to_string())?;
    inner.register_now.notify_one();
    Ok(())
}

/// Sends CHECK_TRANSACTION_STATE for `half` to a connected producer of its group (RocketMQ
/// sends it oneway; the answer is an END_TRANSACTION). False if none is connected.
fn send_check<S: Storage + Clone, M: MetaStore>(
    inner: &Inner<S, M>,
    half: &RecordView<'_>,
    check_times: u32,
) -> bool {
    let Some(group) = half.property(property::PGROUP) else { return false };
    let Some(conn) = crate::server::lock(&inner.clients).producer_connection(group) else {
        return false;
    };
    let Some((topic, queue_id)) = real_place(half) else { return false };
    let offset_id = offset_msg_id(inner.config.advertised_addr, half.physical_offset);
    let uniq = half.property(property::UNIQ_KEY).map(str::to_owned);
    let times = check_times.to_string();
    // The producer sees the message as sent: its real topic and queue, and how often it was
    // checked; the half's offsets, which its answer names.
    let body = MessageRecord {
        body_crc: body_crc(half.body),
        queue_id,
        flag: half.flag,
        queue_offset: half.queue_offset,
        physical_offset: half.physical_offset,
        sys_flag: msgflag::reset_transaction_value(half.sys_flag, msgflag::TRANSACTION_PREPARED),
        born_timestamp: half.born_timestamp,
        born_host: half.born_host,
        store_timestamp: half.store_timestamp,
        store_host: half.store_host,
        reconsume_times: half.reconsume_times,
        prepared_transaction_offset: 0,
        body: bytes::Bytes::copy_from_slice(half.body),
        topic: topic.to_owned(),
        properties: rewrite_properties(
            half.properties,
            &[property::REAL_TOPIC, property::REAL_QID],
            &[(property::TRANSACTION_CHECK_TIMES, times.as_str())],
        ),
    }
    .encode();
    let Ok(body) = body else { return false };
    let header = CheckTransactionStateRequestHeader {
        tran_state_table_offset: half.queue_offset,
        commit_log_offset: half.physical_offset,
        msg_id: uniq.clone().or_else(|| Some(offset_id.clone())),
        transaction_id: uniq,
        offset_msg_id: Some(offset_id),
    };
    let cmd = RemotingCommand::request(request_code::CHECK_TRANSACTION_STATE, &header)
        .with_body(body)
        .into_oneway();
    inner.connections.send(conn, &cmd)
}
