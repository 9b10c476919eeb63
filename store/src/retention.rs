//! Retention: which old CommitLog segments to delete, and when to refuse writes.
//!
//! The decisions are plain functions ([`disk_state`], [`segments_to_delete`]) of the segment
//! list, the time, the disk usage and a purge limit; [`apply`] carries them out on a CommitLog
//! and the queues and indexes built from it. Rules (RocketMQ's `CleanCommitLogService`):
//! - a segment older than `file_reserved_hours` (last written) may go;
//! - at or above `disk_clean_ratio` used, the oldest segment goes even if it is young;
//! - at or above `disk_max_used_ratio`, new writes are refused with `DiskFull` until space
//!   frees (the leader checks `CommitLog::admit_new_writes` before it proposes; appends of
//!   entries already proposed go on). Between two measurements the CommitLog counts what it
//!   takes against what the last one left below the limit ([`DiskBudget`]), so a fast producer
//!   cannot fill the disk before the next check;
//! - never the segment being written, and never a segment holding an entry at or after the
//!   purge limit (the Raft layer passes the first index it still needs: not yet applied, or
//!   not yet covered by a snapshot).

use crate::commitlog::CommitLog;
use crate::dispatch::Dispatcher;
use crate::error::{IoContext, StoreError, StoreResult};
use crate::io::{DiskUsage, Storage};
use crate::types::RaftIndex;

/// Retention settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionConfig {
    /// Keep segments this long after their last write. Default 72 (RocketMQ's
    /// `fileReservedTime`).
    pub file_reserved_hours: u64,
    /// At or above this used fraction, delete the oldest segments early. Default 0.75
    /// (RocketMQ's `diskMaxUsedSpaceRatio`).
    pub disk_clean_ratio: f64,
    /// At or above this used fraction, refuse appends. Default 0.90.
    pub disk_max_used_ratio: f64,
    /// Reckon the disk as this many bytes, of which the store's files use what they occupy
    /// (and no more is available than the volume has): for a store sharing a volume with
    /// other data, or a test that fills a "disk" quickly. `None` (the default): the volume.
    pub capacity_bytes: Option<u64>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            file_reserved_hours: 72,
            disk_clean_ratio: 0.75,
            disk_max_used_ratio: 0.90,
            capacity_bytes: None,
        }
    }
}

impl RetentionConfig {
    /// Deletes segments by age alone and refuses writes only when the volume has no space
    /// left at all: for a store on a volume whose usage is not its to manage (a test or a dev
    /// cluster on a shared disk that others fill), where RocketMQ's ratios would refuse or
    /// delete for someone else's files.
    pub fn by_age_only() -> Self {
        RetentionConfig { disk_clean_ratio: 1.0, disk_max_used_ratio: 1.0, ..Default::default() }
    }
}

/// How full the disk is, against the configured ratios.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DiskState {
    Ok,
    /// Delete old segments early.
    CleanEarly,
    /// Refuse appends.
    Full {
        used_ratio: f64,
    },
}

pub fn disk_state(usage: DiskUsage, config: &RetentionConfig) -> DiskState {
    let used = usage.used_ratio();
    if used >= config.disk_max_used_ratio {
        DiskState::Full { used_ratio: used }
    } else if used >= config.disk_clean_ratio {
        DiskState::CleanEarly
    } else {
        DiskState::Ok
    }
}

/// One segment as retention sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The first raft index stored in it.
    pub first_index: RaftIndex,
    /// When it was last written, Unix milliseconds.
    pub modified_ms: i64,
}

/// How many of the oldest segments (`segments` is oldest first) may be deleted now.
pub fn segments_to_delete(
    segments: &[SegmentInfo],
    now_ms: i64,
    disk: DiskState,
    purge_limit: RaftIndex,
    config: &RetentionConfig,
) -> usize {
    let reserved_ms = (config.file_reserved_hours as i64).saturating_mul(3_600_000);
    let forced = !matches!(disk, DiskState::Ok);
    let mut n = 0;
    // Segment i may go if the next one starts at or before the purge limit (so every entry of
    // segment i is below it); the last segment always stays.
    while n + 1 < segments.len() && segments[n + 1].first_index <= purge_limit {
        let expired = segments[n].modified_ms.saturating_add(reserved_ms) <= now_ms;
        if !(expired || (forced && n == 0)) {
            break;
        }
        n += 1;
    }
    n
}

/// What one retention pass did.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionReport {
    pub segments_deleted: usize,
    pub disk: DiskState,
}

/// How full the store's disk is: the volume's usage, or the capacity cap's.
pub fn disk_usage<S: Storage>(storage: &S, config: &RetentionConfig) -> StoreResult<DiskUsage> {
    let volume = storage.disk_usage().doing(|| "measuring disk usage".into())?;
    let Some(capacity) = config.capacity_bytes else { return Ok(volume) };
    let occupied =
        storage.occupied_bytes().doing(|| "measuring the store's occupied bytes".into())?;
    Ok(DiskUsage::capped(capacity, occupied, volume))
}

/// What retention would do now (see [`plan`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// The disk's usage as measured, and its state against the ratios.
    pub usage: DiskUsage,
    pub disk: DiskState,
    /// Delete the segments through this raft index, if any.
    pub through: Option<RaftIndex>,
    /// Whether that deletes a segment before its time because the disk is full.
    pub early: bool,
    /// What the log had taken when the disk was measured ([`CommitLog::disk_measured`]).
    pub mark: DiskMark,
}

/// What retention would do now: the disk's usage and state, and the segments that may be
/// deleted.
pub fn plan<S: Storage>(
    log: &CommitLog<S>,
    now_ms: i64,
    purge_limit: RaftIndex,
    config: &RetentionConfig,
) -> StoreResult<Plan> {
    let mark = log.disk_mark();
    let usage = disk_usage(log.storage(), config)?;
    let disk = disk_state(usage, config);
    let mut segments = Vec::new();
    for ((path, _), first_index) in log.segment_files().into_iter().zip(log.segment_first_indexes())
    {
        let modified_ms =
            log.storage().modified_ms(&path).doing(|| format!("reading the age of {path}"))?;
        segments.push(SegmentInfo { first_index, modified_ms });
    }
    let n = segments_to_delete(&segments, now_ms, disk, purge_limit, config);
    let by_time = segments_to_delete(&segments, now_ms, DiskState::Ok, purge_limit, config);
    let through = (n > 0).then(|| RaftIndex(segments[n].first_index.0 - 1));
    Ok(Plan { usage, disk, through, early: n > by_time, mark })
}

/// What a CommitLog had taken by some moment: running totals of the bytes admitted (on the
/// leader, before proposing) and appended (on every replica, metadata entries too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskMark {
    admitted: u64,
    appended: u64,
}

/// How much a log may still take before its disk reaches `disk_max_used_ratio`, between two
/// measurements of the disk.
///
/// Retention measures the disk every `retention_check_ms` (10 s by default); a producer can
/// write gigabytes in that time, so a refusal that waited for the next measurement could come
/// after the disk ran out, and a replica whose append fails stops. The log therefore counts
/// what it takes after each measurement and refuses new writes once the count reaches what
/// that measurement left below the limit. The count is an estimate (the queues and indexes
/// grow with the log; preallocated files do not grow at all), so a quarter of the way through
/// the room left it asks for a new measurement ([`DiskBudget::measure_due`]): the estimate
/// only has to hold for a short while, and the measurement is the truth.
#[derive(Debug, Clone, Default)]
pub struct DiskBudget {
    taken: DiskMark,
    last: Option<Measured>,
}

#[derive(Debug, Clone, Copy)]
struct Measured {
    /// Bytes used, and used plus available (`DiskUsage::used_ratio`'s denominator).
    used: u64,
    room: u64,
    /// `disk_max_used_ratio`, and that many bytes of `room`.
    limit_ratio: f64,
    limit_bytes: u64,
    /// What the log had taken when the disk was measured.
    mark: DiskMark,
}

impl DiskBudget {
    /// What the log has taken so far, to pass to [`DiskBudget::measured`] with a measurement
    /// that starts now.
    pub fn mark(&self) -> DiskMark {
        self.taken
    }

    /// A new measurement of the disk, started when the log had taken `mark`. What the log took
    /// after `mark` still counts: the measurement may not have seen it.
    pub fn measured(&mut self, usage: DiskUsage, limit_ratio: f64, mark: DiskMark) {
        let used = usage.total_bytes.saturating_sub(usage.free_bytes);
        let room = used.saturating_add(usage.available_bytes);
        let limit_bytes = (room as f64 * limit_ratio) as u64;
        self.last = Some(Measured { used, room, limit_ratio, limit_bytes, mark });
    }

    /// Counts `bytes` appended to the log.
    pub fn appended(&mut self, bytes: u64) {
        self.taken.appended = self.taken.appended.saturating_add(bytes);
    }

    /// Admits a write of about `bytes`, or refuses it with `DiskFull` when the disk (as last
    /// measured, plus what the log took since) is at its limit or the write would take it past.
    pub fn admit(&mut self, bytes: u64) -> StoreResult<()> {
        if let Some(m) = self.last {
            let used = m.used.saturating_add(self.spent(&m));
            if used >= m.limit_bytes || used.saturating_add(bytes) > m.limit_bytes {
                return Err(StoreError::DiskFull {
                    used_percent: if m.room == 0 {
                        100.0
                    } else {
                        used as f64 * 100.0 / m.room as f64
                    },
                    limit_percent: m.limit_ratio * 100.0,
                });
            }
        }
        self.taken.admitted = self.taken.admitted.saturating_add(bytes);
        Ok(())
    }

    /// Whether the log has taken a quarter of what the last measurement left below the limit
    /// (or more): time to measure again. Measurements come closer together as the disk fills,
    /// so what the count misses (files created whole, other data on the volume) is seen soon.
    pub fn measure_due(&self) -> bool {
        self.last.is_some_and(|m| {
            let spent = self.spent(&m);
            spent > 0 && spent.saturating_mul(4) >= m.limit_bytes.saturating_sub(m.used)
        })
    }

    /// Bytes taken since the measurement: admitted ones cover proposals not yet appended,
    /// appended ones cover what was not admitted here (entries from a leader, metadata).
    fn spent(&self, m: &Measured) -> u64 {
        let admitted = self.taken.admitted.saturating_sub(m.mark.admitted);
        let appended = self.taken.appended.saturating_sub(m.mark.appended);
        admitted.max(appended)
    }
}

/// Runs one retention pass on a log without Raft: measures the disk (for
/// [`CommitLog::admit_new_writes`]), deletes what [`plan`] allows, and drops queue entries and
/// index files that pointed only into the deleted segments. (A Raft replica purges through
/// openraft instead, then calls `Dispatcher::purge_before`.)
pub fn apply<S: Storage + Clone>(
    log: &mut CommitLog<S>,
    dispatcher: &mut Dispatcher<S>,
    now_ms: i64,
    purge_limit: RaftIndex,
    config: &RetentionConfig,
) -> StoreResult<RetentionReport> {
    let plan = plan(log, now_ms, purge_limit, config)?;
    log.disk_measured(plan.usage, config.disk_max_used_ratio, plan.mark);
    let before = log.segment_files().len();
    if let Some(through) = plan.through {
        let start = log.purge_through(through)?;
        dispatcher.purge_before(start.position)?;
        tracing::info!(start = %start.position, "retention deleted old CommitLog segments");
    }
    Ok(RetentionReport { segments_deleted: before - log.segment_files().len(), disk: plan.disk })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn seg(first: u64, modified_h: i64) -> SegmentInfo {
        SegmentInfo { first_index: RaftIndex(first), modified_ms: modified_h * H }
    }

    #[test]
    fn expired_segments_go_up_to_the_purge_limit_and_never_the_last() {
        let cfg = RetentionConfig::default();
        let segs = [seg(0, 0), seg(10, 1), seg(20, 2), seg(30, 200)];
        // At 100 h the first three are past 72 h; the limit lets all of them go.
        assert_eq!(segments_to_delete(&segs, 100 * H, DiskState::Ok, RaftIndex(1000), &cfg), 3);
        // The purge limit 20: only segments wholly below index 20 may go.
        assert_eq!(segments_to_delete(&segs, 100 * H, DiskState::Ok, RaftIndex(20), &cfg), 2);
        assert_eq!(segments_to_delete(&segs, 100 * H, DiskState::Ok, RaftIndex(19), &cfg), 1);
        // 72 h after 1 h is 73 h: at 73 h the second one has just expired.
        assert_eq!(segments_to_delete(&segs, 73 * H - 1, DiskState::Ok, RaftIndex(1000), &cfg), 1);
        assert_eq!(segments_to_delete(&segs, 73 * H, DiskState::Ok, RaftIndex(1000), &cfg), 2);
        assert_eq!(
            segments_to_delete(&segs[3..], 1000 * H, DiskState::Ok, RaftIndex(1000), &cfg),
            0
        );
    }

    #[test]
    fn a_capacity_cap_counts_the_stores_files_against_it() {
        use crate::io::sim::SimStorage;
        let s = SimStorage::new();
        s.create("a", 600).unwrap();
        let capped = RetentionConfig { capacity_bytes: Some(1_000), ..Default::default() };
        let u = disk_usage(&s, &capped).unwrap();
        assert_eq!((u.total_bytes, u.available_bytes), (1_000, 400));
        assert_eq!(disk_state(u, &capped), DiskState::Ok);
        s.create("b", 300).unwrap();
        let u = disk_usage(&s, &capped).unwrap();
        assert!(matches!(disk_state(u, &capped), DiskState::Full { .. }), "{u:?}");
        // The volume's own room bounds what the cap leaves.
        s.set_volume_bytes(950);
        let u =
            disk_usage(&s, &RetentionConfig { capacity_bytes: Some(10_000), ..capped }).unwrap();
        assert_eq!(u.available_bytes, 50);
        assert!(disk_usage(&s, &RetentionConfig::default()).unwrap().used_ratio() > 0.9);
    }

    #[test]
    fn a_full_disk_deletes_the_oldest_early() {
        let cfg = RetentionConfig::default();
        let segs = [seg(0, 10), seg(10, 11), seg(20, 12)];
        assert_eq!(segments_to_delete(&segs, 12 * H, DiskState::Ok, RaftIndex(100), &cfg), 0);
        assert_eq!(
            segments_to_delete(&segs, 12 * H, DiskState::CleanEarly, RaftIndex(100), &cfg),
            1
        );
        assert_eq!(segments_to_delete(&segs, 12 * H, DiskState::CleanEarly, RaftIndex(5), &cfg), 0);
    }

    #[test]
    fn disk_states_follow_the_ratios() {
        // The state of a 100-byte disk with `used` bytes used.
        fn state(used: u64, cfg: &RetentionConfig) -> DiskState {
            let free = 100 - used;
            disk_state(DiskUsage { total_bytes: 100, free_bytes: free, available_bytes: free }, cfg)
        }
        let cfg = RetentionConfig::default();
        let at = |used: u64| state(used, &cfg);
        assert_eq!(at(74), DiskState::Ok);
        assert_eq!(at(75), DiskState::CleanEarly);
        assert!(matches!(at(90), DiskState::Full { .. }));
        // Root's reserve is neither used nor ours: 42 used, 49 available of 252 (a VM seen
        // with 161 reserved) is 46 % used, as df says, not 81 %.
        let reserved = DiskUsage { total_bytes: 252, free_bytes: 210, available_bytes: 49 };
        assert!((reserved.used_ratio() - 42.0 / 91.0).abs() < 1e-9);
        assert_eq!(disk_state(reserved, &cfg), DiskState::Ok);

        // By age only: a 99 % full volume neither refuses nor deletes early; a full one refuses.
        let cfg = RetentionConfig::by_age_only();
        assert_eq!(state(99, &cfg), DiskState::Ok);
        assert!(matches!(state(100, &cfg), DiskState::Full { .. }));
    }

    #[test]
    fn the_budget_refuses_before_the_next_measurement_and_asks_for_one_early() {
        // 1,000 bytes of room, 500 used, a 90% limit: 400 bytes to go.
        let usage = DiskUsage { total_bytes: 1_000, free_bytes: 500, available_bytes: 500 };
        let mut b = DiskBudget::default();
        assert!(b.admit(1 << 40).is_ok(), "nothing measured yet: nothing refused");
        b.measured(usage, 0.9, b.mark());
        assert!(b.admit(50).is_ok());
        assert!(!b.measure_due());
        b.appended(30); // admitted ones appended: still 50 taken, not 80
        assert!(!b.measure_due());
        assert!(b.admit(50).is_ok());
        assert!(b.measure_due(), "100 of 400 taken: measure again");
        assert!(b.admit(100).is_ok());
        // A write that would go past the limit is refused; a smaller one still fits.
        let err = b.admit(201).unwrap_err();
        assert!(matches!(err, StoreError::DiskFull { .. }), "{err}");
        assert!(b.admit(200).is_ok());
        // At the limit nothing more goes, however small.
        let err = b.admit(0).unwrap_err();
        let StoreError::DiskFull { used_percent, limit_percent } = err else { panic!("{err}") };
        assert_eq!((used_percent, limit_percent), (90.0, 90.0));
        // Appends count even when nothing was admitted here (entries from a leader).
        let mut f = DiskBudget::default();
        f.measured(usage, 0.9, f.mark());
        f.appended(400);
        assert!(f.admit(0).is_err());
    }

    #[test]
    fn a_new_measurement_counts_what_the_log_took_after_its_mark() {
        let usage = |used: u64| DiskUsage {
            total_bytes: 1_000,
            free_bytes: 1_000 - used,
            available_bytes: 1_000 - used,
        };
        let mut b = DiskBudget::default();
        b.measured(usage(0), 0.9, b.mark());
        b.admit(300).unwrap();
        // A measurement starts, 100 more bytes are written, then the measurement (which saw
        // the first 300 only) lands: the 100 still count.
        let mark = b.mark();
        b.admit(100).unwrap();
        b.measured(usage(300), 0.9, mark);
        assert!(b.admit(500).is_ok());
        assert!(b.admit(1).is_err(), "300 measured + 100 + 500 taken: at the limit");
        // Space freed: the next measurement admits writes again.
        b.measured(usage(100), 0.9, b.mark());
        assert!(b.admit(700).is_ok());
        assert!(b.admit(101).is_err());
    }
}
