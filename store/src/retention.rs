//! Retention: which old CommitLog segments to delete, and when to refuse writes.
//!
//! The decisions are plain functions ([`disk_state`], [`segments_to_delete`]) of the segment
//! list, the time, the disk usage and a purge limit; [`apply`] carries them out on a CommitLog
//! and the queues and indexes built from it. Rules (RocketMQ's `CleanCommitLogService`):
//! - a segment older than `file_reserved_hours` (last written) may go;
//! - at or above `disk_clean_ratio` used, the oldest segment goes even if it is young;
//! - at or above `disk_max_used_ratio`, new writes are refused with `DiskFull` until space
//!   frees (the leader checks `CommitLog::admit_new_writes` before it proposes; appends of
//!   entries already proposed go on);
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

/// What retention would do now: the disk state, the last raft index of the segments that may
/// be deleted (delete through it), if any, and whether that deletes a segment before its time
/// because the disk is full.
pub fn plan<S: Storage>(
    log: &CommitLog<S>,
    now_ms: i64,
    purge_limit: RaftIndex,
    config: &RetentionConfig,
) -> StoreResult<(DiskState, Option<RaftIndex>, bool)> {
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
    Ok((disk, through, n > by_time))
}

/// The error appends get while the disk is above its limit, or `None` when they may go on.
pub fn refusal(disk: DiskState, config: &RetentionConfig) -> Option<StoreError> {
    match disk {
        DiskState::Full { used_ratio } => Some(StoreError::DiskFull {
            used_percent: used_ratio * 100.0,
            limit_percent: config.disk_max_used_ratio * 100.0,
        }),
        _ => None,
    }
}

/// Runs one retention pass on a log without Raft: refuses or re-allows writes by disk usage,
/// deletes what [`plan`] allows, and drops queue entries and index files that pointed only into
/// the deleted segments. (A Raft replica purges through openraft instead, then calls
/// `Dispatcher::purge_before`.)
pub fn apply<S: Storage + Clone>(
    log: &mut CommitLog<S>,
    dispatcher: &mut Dispatcher<S>,
    now_ms: i64,
    purge_limit: RaftIndex,
    config: &RetentionConfig,
) -> StoreResult<RetentionReport> {
    let (disk, through, _) = plan(log, now_ms, purge_limit, config)?;
    log.refuse_writes(refusal(disk, config));
    let before = log.segment_files().len();
    if let Some(through) = through {
        let start = log.purge_through(through)?;
        dispatcher.purge_before(start.position)?;
        tracing::info!(start = %start.position, "retention deleted old CommitLog segments");
    }
    Ok(RetentionReport { segments_deleted: before - log.segment_files().len(), disk })
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
}
