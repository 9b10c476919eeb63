//! Store tests through the public API, one module per theme.

mod support {
    use bytes::Bytes;
    use rocketraft_store::{EntryKind, LogEntry, RaftIndex};

    /// (index, term, payload length, payload crc): what a failure prints instead of payloads.
    pub fn digest(entries: &[LogEntry]) -> Vec<(u64, u64, usize, u32)> {
        entries
            .iter()
            .map(|e| (e.index.0, e.term, e.payload.len(), crc32fast::hash(&e.payload)))
            .collect()
    }

    /// An entry whose payload is derived from its index and a salt, so a check can tell
    /// which write it came from.
    pub fn entry(index: u64, term: u64, len: usize, salt: u8) -> LogEntry {
        let payload: Vec<u8> =
            (0..len).map(|i| (index as u8).wrapping_mul(31) ^ (i as u8) ^ salt).collect();
        LogEntry {
            index: RaftIndex(index),
            term,
            leader: term % 3,
            kind: EntryKind::Metadata,
            payload: Bytes::from(payload),
        }
    }
}

mod commitlog_model {
    //! Random operation sequences against a `Vec` model: the log must give the same answers.
    //!
    //! ```text
    //!   ops: append k | truncate after i | purge through i | flush | reopen | power loss
    //!   after each: start/end/last, every entry's bytes, and entries(range) match the model
    //! ```
    use proptest::prelude::*;
    use rocketraft_store::io::sim::{RandomPowerLoss, SimStorage};
    use rocketraft_store::{CommitLog, CommitLogConfig, LogEntry, RaftIndex};

    use super::support::{digest, entry};

    #[derive(Debug, Clone)]
    enum Op {
        Append { count: usize, len: usize },
        TruncateAfter(usize),
        PurgeThrough(usize),
        Flush,
        Reopen,
        PowerLoss(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (1usize..6, 0usize..900).prop_map(|(count, len)| Op::Append { count, len }),
            1 => any::<usize>().prop_map(Op::TruncateAfter),
            1 => any::<usize>().prop_map(Op::PurgeThrough),
            2 => Just(Op::Flush),
            1 => Just(Op::Reopen),
            1 => any::<u64>().prop_map(Op::PowerLoss),
        ]
    }

    fn config() -> CommitLogConfig {
        CommitLogConfig { segment_size_bytes: 4096, checkpoint_every_entries: 7 }
    }

    struct Model {
        start: u64,
        entries: Vec<LogEntry>,
        term: u64,
        /// Logs replaced by a truncation since the last flush: until a flush makes the
        /// truncation durable, a power loss may bring one of them back (nothing in them
        /// was acknowledged).
        replaced: Vec<Vec<LogEntry>>,
    }

    impl Model {
        fn next_index(&self) -> u64 {
            self.start + self.entries.len() as u64
        }
    }

    fn check(log: &CommitLog<SimStorage>, model: &Model) {
        assert_eq!(log.start().next_index, RaftIndex(model.start), "start");
        assert_eq!(log.end().next_index, RaftIndex(model.next_index()), "end");
        assert_eq!(log.last().map(|m| m.index), model.entries.last().map(|e| e.index), "last");
        let all = log.entries(RaftIndex(model.start)..RaftIndex(model.next_index())).unwrap();
        assert_eq!(digest(&all), digest(&model.entries), "all entries");
        assert!(all == model.entries, "entries equal in every byte");
        if model.entries.len() > 2 {
            let mid = model.start + model.entries.len() as u64 / 2;
            let some = log.entries(RaftIndex(mid)..RaftIndex(mid + 1)).unwrap();
            assert_eq!(some[0], model.entries[(mid - model.start) as usize]);
        }
        assert!(log
            .entries(RaftIndex(model.next_index())..RaftIndex(model.next_index() + 1))
            .is_err());
    }

    fn run(ops: Vec<Op>) {
        let storage = SimStorage::new();
        let (mut log, _) = CommitLog::open(storage.clone(), config()).unwrap();
        let mut model = Model { start: 0, entries: Vec::new(), term: 1, replaced: Vec::new() };
        let mut salt = 0u8;
        for op in ops {
            match op {
                Op::Append { count, len } => {
                    salt = salt.wrapping_add(1);
                    let batch: Vec<LogEntry> = (0..count as u64)
                        .map(|i| entry(model.next_index() + i, model.term, len, salt))
                        .collect();
                    log.append(&batch).unwrap();
                    model.entries.extend(batch);
                }
                Op::TruncateAfter(k) => {
                    if model.entries.is_empty() {
                        continue;
                    }
                    let keep = k % (model.entries.len() + 1);
                    let index = (keep > 0).then(|| RaftIndex(model.start + keep as u64 - 1));
                    log.truncate_after(index).unwrap();
                    model.replaced.push(model.entries.clone());
                    model.entries.truncate(keep);
                    model.term += 1;
                }
                Op::PurgeThrough(k) => {
                    if model.entries.is_empty() {
                        continue;
                    }
                    let through = model.start + (k % model.entries.len()) as u64;
                    let new_start = log.purge_through(RaftIndex(through)).unwrap().next_index.0;
                    assert!(new_start >= model.start && new_start <= through + 1, "purge bounds");
                    let purged = (new_start - model.start) as usize;
                    model.entries.drain(..purged);
                    for old in &mut model.replaced {
                        old.drain(..purged.min(old.len()));
                    }
                    model.start = new_start;
                }
                Op::Flush => {
                    let durable = log.flush().unwrap();
                    assert_eq!(durable, log.end(), "a flush makes everything durable");
                    model.replaced.clear();
                }
                Op::Reopen => {
                    // A process crash: the page cache (our sim's current bytes) survives.
                    drop(log);
                    log = CommitLog::open(storage.clone(), config()).unwrap().0;
                }
                Op::PowerLoss(seed) => {
                    let durable = log.flushed().next_index.0;
                    drop(log);
                    storage.power_loss(&mut RandomPowerLoss::new(seed));
                    log = CommitLog::open(storage.clone(), config()).unwrap().0;
                    let got = log.end().next_index.0;
                    assert!(got >= durable, "lost durable entries: had {durable}, recovered {got}");
                    let recovered = log.entries(RaftIndex(model.start)..RaftIndex(got)).unwrap();
                    let is_prefix = |of: &Vec<LogEntry>| {
                        recovered.len() <= of.len() && recovered[..] == of[..recovered.len()]
                    };
                    assert!(
                        is_prefix(&model.entries) || model.replaced.iter().any(is_prefix),
                        "recovered {:?}, a prefix of neither the log {:?} nor a log replaced since the last flush",
                        digest(&recovered),
                        digest(&model.entries)
                    );
                    model.entries = recovered;
                    model.replaced.clear();
                    model.term += 1;
                }
            }
            check(&log, &model);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn log_matches_a_simple_model(ops in proptest::collection::vec(op(), 1..60)) {
            run(ops);
        }
    }
}

mod crash {
    //! A torn last entry, cut at every byte, recovers to the longest valid prefix; a flipped
    //! byte anywhere is caught on read and on recovery.
    use rocketraft_store::io::sim::{PowerLossPlan, SimStorage};
    use rocketraft_store::io::Storage;
    use rocketraft_store::{CommitLog, CommitLogConfig, RaftIndex, StoreError};

    use super::support::entry;

    fn config() -> CommitLogConfig {
        CommitLogConfig { segment_size_bytes: 64 * 1024, checkpoint_every_entries: 1_000_000 }
    }

    /// Keeps the first `cut` bytes of the one unsynced write to the segment, nothing else.
    struct TearSegmentWrite {
        cut: usize,
    }

    impl PowerLossPlan for TearSegmentWrite {
        fn keep(&mut self, path: &str, pending: &[usize]) -> (usize, Option<usize>) {
            if path.ends_with(".idx") || pending.is_empty() {
                (0, None)
            } else {
                (0, Some(self.cut))
            }
        }
    }

    #[test]
    fn torn_last_entry_cut_at_every_byte() {
        let last_len = entry(10, 1, 300, 7).stored_len();
        for cut in 0..=last_len {
            let storage = SimStorage::new();
            let (mut log, _) = CommitLog::open(storage.clone(), config()).unwrap();
            let first: Vec<_> = (0..10).map(|i| entry(i, 1, 100 + i as usize, 1)).collect();
            log.append(&first).unwrap();
            log.flush().unwrap();
            log.append(&[entry(10, 1, 300, 7)]).unwrap();
            drop(log);
            storage.power_loss(&mut TearSegmentWrite { cut });
            let (log, report) = CommitLog::open(storage.clone(), config()).unwrap();
            let expected = if cut == last_len { 11 } else { 10 };
            assert_eq!(log.end().next_index, RaftIndex(expected), "cut at {cut} of {last_len}");
            assert_eq!(
                log.entries(RaftIndex(0)..RaftIndex(expected)).unwrap().len(),
                expected as usize
            );
            if cut > 0 && cut < last_len {
                assert!(report.cut_reason.is_some(), "cut at {cut}: the torn tail is reported");
            }
        }
    }

    /// The counters operators read (GET_BROKER_RUNTIME_INFO): appends, entries, flush jobs
    /// and the file range syncs they ran. One flush covers every append before it and syncs
    /// one range (the entry bytes of one segment).
    #[test]
    fn io_counts_show_one_flush_for_appends_grouped_before_it() {
        let (mut log, _) = CommitLog::open(SimStorage::new(), config()).unwrap();
        for i in 0..3 {
            log.append(&[entry(2 * i, 1, 100, 1), entry(2 * i + 1, 1, 100, 2)]).unwrap();
        }
        log.flush().unwrap();
        let io = log.io_counts();
        assert_eq!((io.appends, io.entries, io.flush_jobs), (3, 6, 1));
        assert_eq!(io.file_syncs, 1, "the entry bytes only: slots are synced with checkpoints");
        log.flush().unwrap();
        assert_eq!(log.io_counts().flush_jobs, 1, "nothing new: no sync");
    }

    #[test]
    fn a_flipped_byte_is_never_served() {
        let storage = SimStorage::new();
        let (mut log, _) = CommitLog::open(storage.clone(), config()).unwrap();
        log.append(&(0..20).map(|i| entry(i, 1, 200, 3)).collect::<Vec<_>>()).unwrap();
        log.flush().unwrap();
        let victim = log.entry_meta(RaftIndex(12)).unwrap();
        let seg = storage.open("commitlog/00000000000000000000").unwrap();
        let at = victim.position.0 + 100;
        let mut b = [0u8; 1];
        rocketraft_store::io::StorageFile::read_at(&*seg, at, &mut b).unwrap();
        rocketraft_store::io::StorageFile::write_at(&*seg, at, &[b[0] ^ 0x10]).unwrap();
        rocketraft_store::io::StorageFile::sync_range(&*seg, at, 1).unwrap();
        let err = log.entries(RaftIndex(10)..RaftIndex(15)).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(log.entries(RaftIndex(0)..RaftIndex(12)).is_ok(), "entries before it still read");
        assert!(log.damage().is_some_and(|d| d.contains("crc")), "{:?}", log.damage());
        drop(log);
        // The read quarantined the log; an operator's repair would remove the marker.
        let err = CommitLog::open(storage.clone(), config()).err().expect("quarantined");
        assert!(matches!(err, StoreError::Quarantined { .. }), "{err}");
        storage.remove(rocketraft_store::commitlog::DAMAGE_MARKER).unwrap();
        // Without a checkpoint covering it, recovery checks it and ends the log before it.
        storage.remove("commitlog/checkpoint").unwrap();
        let (log, report) = CommitLog::open(storage, config()).unwrap();
        assert_eq!(log.end().next_index, RaftIndex(12));
        assert!(report.cut_reason.unwrap().contains("crc"));
    }

    /// Damage below the checkpoint (entries it says were synced) is not a torn tail: the log
    /// refuses to open and removes nothing. Once, recovery cut the log there, deleted the
    /// later segments, and the replica went on voting without entries it had acknowledged.
    #[test]
    fn damage_below_the_checkpoint_refuses_to_open_and_removes_nothing() {
        let storage = SimStorage::new();
        let config = CommitLogConfig { segment_size_bytes: 4096, checkpoint_every_entries: 5 };
        let (mut log, _) = CommitLog::open(storage.clone(), config.clone()).unwrap();
        for i in 0..40 {
            log.append(&[entry(i, 1, 200, 3)]).unwrap();
            log.flush().unwrap();
        }
        let checkpointed = log.entry_meta(RaftIndex(39)).unwrap();
        drop(log);
        let files = storage.list("commitlog").unwrap();
        // The checkpoint's own last entry is damaged: recovery scans from the start.
        let seg_base = checkpointed.position.0 - checkpointed.position.0 % 4096;
        let seg = storage.open(&format!("commitlog/{seg_base:020}")).unwrap();
        let at = checkpointed.position.0 - seg_base + 40;
        let mut b = [0u8; 1];
        rocketraft_store::io::StorageFile::read_at(&*seg, at, &mut b).unwrap();
        rocketraft_store::io::StorageFile::write_at(&*seg, at, &[b[0] ^ 0x10]).unwrap();
        rocketraft_store::io::StorageFile::sync_range(&*seg, at, 1).unwrap();
        let err = CommitLog::open(storage.clone(), config.clone()).err().expect("refused");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("synced data is damaged"), "{err}");
        assert_eq!(storage.list("commitlog").unwrap(), files, "no file removed");
    }

    #[test]
    fn an_append_past_the_end_restarts_the_log_there() {
        let storage = SimStorage::new();
        let (mut log, _) = CommitLog::open(storage.clone(), config()).unwrap();
        log.append(&[entry(5, 1, 10, 0), entry(6, 1, 10, 0)]).unwrap();
        assert!(log.append(&[entry(4, 1, 10, 0)]).is_err(), "nothing before the end");
        log.flush().unwrap();
        let reopened = |s: &SimStorage| CommitLog::open(s.clone(), config()).unwrap().0;
        let log2 = reopened(&storage);
        assert_eq!((log2.start().next_index, log2.end().next_index), (RaftIndex(5), RaftIndex(7)));
        // A gap restarts the log at the new index; positions and the chain continue.
        let end = log.end();
        log.append(&[entry(9, 2, 10, 0)]).unwrap();
        assert_eq!(log.start().next_index, RaftIndex(9));
        assert_eq!(log.entry_meta(RaftIndex(9)).unwrap().position, end.position);
        assert!(log.entries(RaftIndex(5)..RaftIndex(7)).is_err(), "the old entries left the log");
        log.flush().unwrap();
        drop(log);
        let log = reopened(&storage);
        assert_eq!((log.start().next_index, log.end().next_index), (RaftIndex(9), RaftIndex(10)));
    }

    #[test]
    fn a_log_restarted_mid_segment_rolls_an_entry_that_does_not_fit() {
        // A follower that installs a snapshot restarts its log at the snapshot's cut, in the
        // middle of a segment it has no file for. An entry larger than the rest of that segment
        // once went there anyway, past the file's end (swarm seed 1098); it must go to the next
        // segment, as on any other log.
        let (mut leader, _) = CommitLog::open(SimStorage::new(), config()).unwrap();
        leader.append(&(0..4).map(|i| entry(i, 1, 12_000, 1)).collect::<Vec<_>>()).unwrap();
        let cut = leader.end();
        let seg_size = config().segment_size_bytes;
        let left = seg_size - cut.position.0 % seg_size;
        assert!(left < 30_000, "the cut is near the segment's end ({left} bytes left)");
        let storage = SimStorage::new();
        let (mut follower, _) = CommitLog::open(storage.clone(), config()).unwrap();
        follower.reset(cut).unwrap();
        follower.append(&[entry(4, 1, 30_000, 1), entry(5, 1, 10, 1)]).unwrap();
        let at = follower.entry_meta(RaftIndex(4)).unwrap().position.0;
        assert_eq!(at % seg_size, 0, "the entry starts the next segment");
        follower.flush().unwrap();
        drop(follower);
        let (log, _) = CommitLog::open(storage, config()).unwrap();
        assert_eq!((log.start().next_index, log.end().next_index), (RaftIndex(4), RaftIndex(6)));
        assert_eq!(log.entries(RaftIndex(4)..RaftIndex(6)).unwrap().len(), 2);
    }

    #[test]
    fn a_cut_before_an_entry_that_opened_a_segment_is_where_the_one_before_ends() {
        // Entry 4 did not fit the rest of the first segment: it begins the second, after a
        // filler. A snapshot taken after entry 3 cuts where entry 3 ends (swarm seed 1325: the
        // cut was where entry 4 begins, and a follower copying the history up to it, entries
        // only, stopped short of it and refused the snapshot).
        let (mut leader, _) = CommitLog::open(SimStorage::new(), config()).unwrap();
        leader.append(&(0..4).map(|i| entry(i, 1, 12_000, 1)).collect::<Vec<_>>()).unwrap();
        let after_3 = leader.end();
        leader.append(&[entry(4, 1, 30_000, 1)]).unwrap();
        let cut = leader.cut_before(RaftIndex(4)).unwrap();
        assert_eq!(cut, after_3);
        assert_ne!(cut.position, leader.entry_meta(RaftIndex(4)).unwrap().position);
        let mut read = |pos: u64, buf: &mut [u8]| {
            leader
                .read_span(rocketraft_store::CommitLogOffset(pos), buf)
                .map_err(std::io::Error::other)
        };
        let (mut follower, _) = CommitLog::open(SimStorage::new(), config()).unwrap();
        follower.reset(leader.start()).unwrap();
        assert_eq!(follower.copy_in(cut, &mut read).unwrap(), 4);
        follower.append(&[entry(4, 1, 30_000, 1)]).unwrap();
        assert_eq!(
            follower.entry_meta(RaftIndex(4)).unwrap().position,
            leader.entry_meta(RaftIndex(4)).unwrap().position,
            "the follower places the next entry where the leader did"
        );
    }

    #[test]
    fn history_copied_from_a_peer_is_byte_identical_and_checked() {
        // A leader with entries over several segments (fillers at their ends) and its start
        // purged; a follower copies from where the leader's log starts up to a cut.
        let storage = SimStorage::new();
        let (mut leader, _) = CommitLog::open(storage.clone(), config()).unwrap();
        leader
            .append(
                &(0..300)
                    .map(|i| entry(i, 1, 700 + (i as usize * 37) % 900, 2))
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        leader.flush().unwrap();
        leader.purge_through(RaftIndex(60)).unwrap();
        let from = leader.start();
        assert!(from.next_index > RaftIndex(0), "the leader's start was purged");
        let to = leader.cut_before(RaftIndex(280)).unwrap();
        let mut read = |pos: u64, buf: &mut [u8]| {
            leader
                .read_span(rocketraft_store::CommitLogOffset(pos), buf)
                .map_err(std::io::Error::other)
        };
        let (mut follower, _) = CommitLog::open(SimStorage::new(), config()).unwrap();
        follower.reset(from).unwrap();
        let copied = follower.copy_in(to, &mut read).unwrap();
        assert_eq!(copied, 280 - from.next_index.0);
        assert_eq!(follower.end(), to);
        assert!(
            follower.bytes_between(from.position, to.position).unwrap()
                == leader.bytes_between(from.position, to.position).unwrap(),
            "the copy is byte-identical"
        );
        // The follower's log goes on from the cut like the leader's.
        follower.append(&[entry(280, 1, 700 + (280 * 37) % 900, 2)]).unwrap();
        assert_eq!(follower.end(), leader.cut_before(RaftIndex(281)).unwrap());

        // A damaged byte in the history, or history that does not reach the cut, is refused.
        let mut damaged = |pos: u64, buf: &mut [u8]| {
            leader
                .read_span(rocketraft_store::CommitLogOffset(pos), buf)
                .map_err(std::io::Error::other)?;
            if pos <= from.position.0 + 5000 && from.position.0 + 5000 < pos + buf.len() as u64 {
                buf[(from.position.0 + 5000 - pos) as usize] ^= 1;
            }
            Ok(())
        };
        let (mut f2, _) = CommitLog::open(SimStorage::new(), config()).unwrap();
        f2.reset(from).unwrap();
        assert!(f2.copy_in(to, &mut damaged).is_err(), "a flipped byte is caught");
        let (mut f3, _) = CommitLog::open(SimStorage::new(), config()).unwrap();
        f3.reset(leader.cut_before(RaftIndex(100)).unwrap()).unwrap();
        let short = leader.cut_before(RaftIndex(200)).unwrap();
        let err = f3.copy_in(short, &mut |pos, buf| {
            leader
                .read_span(rocketraft_store::CommitLogOffset(pos), buf)
                .map_err(std::io::Error::other)?;
            // Reads past entry 150's end return zeros: the history stops short of the cut.
            let stop = leader.cut_before(RaftIndex(150)).unwrap().position.0;
            for (i, b) in buf.iter_mut().enumerate() {
                if pos + i as u64 >= stop {
                    *b = 0;
                }
            }
            Ok(())
        });
        assert!(err.is_err(), "history that stops short of the cut is refused");
    }

    #[test]
    fn a_pinned_entry_keeps_its_segment_through_purges() {
        let storage = SimStorage::new();
        let (mut log, _) = CommitLog::open(storage, config()).unwrap();
        log.append(&(0..300).map(|i| entry(i, 1, 1000, 3)).collect::<Vec<_>>()).unwrap();
        let pin = log.pin_from(RaftIndex(100));
        log.purge_through(RaftIndex(250)).unwrap();
        assert!(log.start().next_index <= RaftIndex(100), "the pinned entry stayed");
        assert!(log.start().next_index > RaftIndex(0), "segments before it went");
        log.unpin(pin);
        log.purge_through(RaftIndex(250)).unwrap();
        assert!(log.start().next_index > RaftIndex(100), "once unpinned it goes");
    }

    #[test]
    fn truncated_entries_never_come_back() {
        // Entries 5..10 are truncated and 5' (a different term) appended in their place: no
        // crash or reopen may resurrect the old 6..10 behind it, even though their bytes
        // are still in the segment.
        let storage = SimStorage::new();
        let (mut log, _) = CommitLog::open(storage.clone(), config()).unwrap();
        log.append(&(0..10).map(|i| entry(i, 1, 64, 1)).collect::<Vec<_>>()).unwrap();
        log.flush().unwrap();
        log.truncate_after(Some(RaftIndex(4))).unwrap();
        log.append(&[entry(5, 2, 64, 1)]).unwrap();
        log.flush().unwrap();
        drop(log);
        let (log, _) = CommitLog::open(storage, config()).unwrap();
        assert_eq!(log.end().next_index, RaftIndex(6));
        assert_eq!(log.last().unwrap().term, 2);
    }
}

mod messages {
    //! Helpers that build entries of RocketMQ records, assigning queue offsets as a leader does.
    use std::collections::HashMap;

    use bytes::Bytes;
    use rocketraft_protocol::message::{body_crc, properties_to_string, MessageRecord};
    use rocketraft_store::{EntryKind, LogEntry, RaftIndex};

    #[derive(Default)]
    pub struct Leader {
        next_offset: HashMap<(String, i32), i64>,
        pub next_index: u64,
    }

    impl Leader {
        /// One entry holding `count` records for `topic` spread over 4 queues.
        pub fn entry(&mut self, topic: &str, count: usize, store_ts: i64) -> LogEntry {
            let mut payload = Vec::new();
            for i in 0..count {
                let queue_id = ((self.next_index as usize + i) % 4) as i32;
                let slot = self.next_offset.entry((topic.to_owned(), queue_id)).or_default();
                let body = Bytes::from(format!("{topic}-{}-{i}", self.next_index));
                let n = self.next_index;
                let tag = if i % 2 == 0 { "TagA" } else { "TagB" };
                let keys = format!("order-{n}-{i} shared");
                let uniq = format!("UNIQ{n:08}{i:04}");
                let rec = MessageRecord {
                    body_crc: body_crc(&body),
                    queue_id,
                    flag: 0,
                    queue_offset: *slot,
                    physical_offset: 0,
                    sys_flag: 0,
                    born_timestamp: store_ts - 5,
                    born_host: "10.0.0.9:5555".parse().unwrap(),
                    store_timestamp: store_ts,
                    store_host: "10.0.0.1:10911".parse().unwrap(),
                    reconsume_times: 0,
                    prepared_transaction_offset: 0,
                    body,
                    topic: topic.to_owned(),
                    properties: properties_to_string([
                        ("TAGS", tag),
                        ("KEYS", keys.as_str()),
                        ("UNIQ_KEY", uniq.as_str()),
                    ]),
                };
                *slot += 1;
                rec.encode_into(&mut payload).unwrap();
            }
            let e = LogEntry {
                index: RaftIndex(self.next_index),
                term: 1,
                leader: 0,
                kind: EntryKind::Messages,
                payload: Bytes::from(payload),
            };
            self.next_index += 1;
            e
        }
    }
}

mod dispatch {
    //! Committed entries become ConsumeQueue and IndexFile entries that find the records; the
    //! derived files are a pure function of the log.
    use rocketraft_protocol::message::{java_string_hash, RecordView};
    use rocketraft_store::io::sim::{RandomPowerLoss, SimStorage};
    use rocketraft_store::io::{Storage, StorageFile};
    use rocketraft_store::*;

    use super::messages::Leader;

    fn configs() -> (CommitLogConfig, DispatchConfig) {
        (
            CommitLogConfig { segment_size_bytes: 16 * 1024, checkpoint_every_entries: 5 },
            DispatchConfig {
                consume_queue: ConsumeQueueConfig { entries_per_file: 16 },
                index: IndexConfig { slot_count: 64, index_max: 50 },
            },
        )
    }

    /// Appends and dispatches `entries` entries of 3 records each; flushes the log.
    fn fill(
        log: &mut CommitLog<SimStorage>,
        d: &mut Dispatcher<SimStorage>,
        leader: &mut Leader,
        entries: usize,
    ) {
        for _ in 0..entries {
            let e = leader.entry("T", 3, 1_700_000_000_000 + leader.next_index as i64 * 1000);
            log.append(std::slice::from_ref(&e)).unwrap();
            let pos = log.last().unwrap().position;
            d.dispatch(pos, &e).unwrap();
        }
        log.flush().unwrap();
    }

    fn derived_files(s: &SimStorage) -> Vec<(String, Vec<u8>)> {
        s.snapshot()
            .into_iter()
            .filter(|(p, _)| p.starts_with("consumequeue/") || p.starts_with("index/"))
            .collect()
    }

    /// Re-dispatches every committed entry from the dispatcher's resume point.
    fn catch_up(log: &CommitLog<SimStorage>, d: &mut Dispatcher<SimStorage>) {
        let from = d.next().next_index;
        for e in log.entries(from..log.end().next_index).unwrap() {
            let pos = log.entry_meta(e.index).unwrap().position;
            d.dispatch(pos, &e).unwrap();
        }
    }

    /// A parked record's queue entry holds its due time, and a moved copy names where it came
    /// from (what the state machine records as that queue's progress).
    #[test]
    fn parked_records_queue_their_due_time_and_moved_copies_their_origin() {
        use rocketraft_protocol::message::{properties_to_string, MessageRecord};
        let (lc, dc) = configs();
        let s = SimStorage::new();
        let (mut log, _) = CommitLog::open(s.clone(), lc).unwrap();
        let mut d = Dispatcher::open(s.clone(), dc, &log).unwrap();
        let record = |topic: &str, queue_id: i32, props: &[(&str, &str)]| MessageRecord {
            topic: topic.into(),
            queue_id,
            properties: properties_to_string(props.iter().copied()),
            ..Default::default()
        };
        let mut payload = Vec::new();
        record("SCHEDULE_TOPIC_XXXX", 2, &[("TIMER_OUT_MS", "1700000010000"), ("TAGS", "a")])
            .encode_into(&mut payload)
            .unwrap();
        record("T", 0, &[("TAGS", "a"), ("RR_MOVED_FROM", "SCHEDULE_TOPIC_XXXX:2:41")])
            .encode_into(&mut payload)
            .unwrap();
        let e = LogEntry {
            index: RaftIndex(1),
            term: 1,
            leader: 0,
            kind: EntryKind::Messages,
            payload: payload.into(),
        };
        log.append(std::slice::from_ref(&e)).unwrap();
        let arrivals = d.dispatch(log.last().unwrap().position, &e).unwrap();
        let parked = d.queue("SCHEDULE_TOPIC_XXXX", 2).unwrap().range(QueueOffset(0), 1).unwrap();
        assert_eq!(parked[0].tags_code, 1_700_000_010_000, "the due time, not the tag's hash");
        let moved = d.queue("T", 0).unwrap().range(QueueOffset(0), 1).unwrap();
        assert_eq!(moved[0].tags_code, i64::from(java_string_hash("a")));
        assert_eq!(arrivals[0].moved_from, None);
        let from = arrivals[1].moved_from.clone().unwrap();
        assert_eq!(
            (from.topic.as_str(), from.queue_id, from.queue_offset),
            ("SCHEDULE_TOPIC_XXXX", 2, QueueOffset(41))
        );
        assert_eq!(from.to_string(), "SCHEDULE_TOPIC_XXXX:2:41");
        // Dispatched again (after a crash that lost the caller's record of it): the queues
        // are left as they are, and the moved copy is still reported.
        let again = d.dispatch(log.last().unwrap().position, &e).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].moved_from, Some(from));
        assert_eq!(d.queue("T", 0).unwrap().max_offset(), QueueOffset(1));
        for bad in ["", "T:1", "T:x:1", ":1:2", "T:1:-2"] {
            assert_eq!(QueuePlace::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn queues_and_index_find_every_record() {
        let (lc, dc) = configs();
        let s = SimStorage::new();
        let (mut log, _) = CommitLog::open(s.clone(), lc).unwrap();
        let mut d = Dispatcher::open(s.clone(), dc, &log).unwrap();
        let mut leader = Leader::default();
        fill(&mut log, &mut d, &mut leader, 40);
        let mut total = 0;
        for q in 0..4 {
            let cq = d.queue("T", q).unwrap();
            let entries = cq.range(cq.min_offset(), 1000).unwrap();
            total += entries.len();
            let wanted: Vec<_> = entries.iter().map(|e| (e.position, e.size)).collect();
            let records = log.read_records(&wanted).unwrap();
            for (i, (raw, e)) in records.iter().zip(&entries).enumerate() {
                let r = RecordView::decode(raw).unwrap();
                assert_eq!((r.topic, r.queue_id, r.queue_offset), ("T", q, i as i64));
                assert_eq!(
                    r.physical_offset as u64, e.position.0,
                    "PHYSICALOFFSET is the real position"
                );
                assert_eq!(e.tags_code, i64::from(java_string_hash(r.property("TAGS").unwrap())));
            }
            let mut body = Vec::new();
            log.read_queue_records_into(&entries, &mut body).unwrap();
            assert_eq!(body, records.concat(), "a pull's body is the records back to back");
        }
        assert_eq!(total, 120);
        let hits = d.index().query("T", "order-7-2", 0, i64::MAX, 10).unwrap();
        let r = log.read_records(&[(hits[0], 0)]).err();
        assert!(r.is_some(), "a wrong size is refused, never served");
        let cq = d.queue("T", (7 + 2) % 4).unwrap();
        let e = cq
            .range(cq.min_offset(), 1000)
            .unwrap()
            .into_iter()
            .find(|e| e.position == hits[0])
            .unwrap();
        let rec = log.read_records(&[(hits[0], e.size)]).unwrap();
        assert_eq!(RecordView::decode(&rec[0]).unwrap().property("KEYS"), Some("order-7-2 shared"));
        let shared = d.index().query("T", "shared", 0, i64::MAX, 1000).unwrap();
        assert_eq!(shared.len(), 120, "every record has the key 'shared'");
        let uniq = d.index().query("T", "UNIQ000000070002", 0, i64::MAX, 10).unwrap();
        assert_eq!(uniq, vec![hits[0]]);
        // SEARCH_OFFSET_BY_TIMESTAMP: entry n is stored at base + n s.
        let q0 = d.queue("T", 0).unwrap();
        let at = q0
            .search_by_timestamp(1_700_000_020_000, |e| {
                let raw = log.read_records(&[(e.position, e.size)])?;
                Ok(RecordView::decode(&raw[0]).unwrap().store_timestamp)
            })
            .unwrap();
        let first = q0.get(at).unwrap().unwrap();
        let raw = log.read_records(&[(first.position, first.size)]).unwrap();
        assert!(RecordView::decode(&raw[0]).unwrap().store_timestamp >= 1_700_000_020_000);
    }

    /// A pull checks each record over its own bytes against its queue entry's crc: a byte
    /// flipped where decoding cannot see it (a timestamp), or a wrong crc in the queue, is
    /// refused; the records around it still read.
    #[test]
    fn a_flipped_record_byte_or_queue_crc_is_never_served() {
        let (lc, dc) = configs();
        let s = SimStorage::new();
        let (mut log, _) = CommitLog::open(s.clone(), lc.clone()).unwrap();
        let mut d = Dispatcher::open(s.clone(), dc, &log).unwrap();
        fill(&mut log, &mut d, &mut Leader::default(), 10);
        let cq = d.queue("T", 0).unwrap();
        let entries = cq.range(cq.min_offset(), 1000).unwrap();
        let (good, victim) = (entries[0], entries[1]);
        let read = |e: CqEntry| log.read_queue_records_into(&[e], &mut Vec::new());
        assert!(read(victim).is_ok());
        let wrong = CqEntry { crc: victim.crc ^ 1, ..victim };
        assert!(matches!(read(wrong), Err(StoreError::Corrupt { .. })), "a wrong queue crc");
        // STORETIMESTAMP's last byte (record bytes 56..64 with IPv4 hosts).
        let at = victim.position.0 + 63;
        let base = at - at % lc.segment_size_bytes;
        let seg = s.open(&format!("commitlog/{base:020}")).unwrap();
        let mut b = [0u8; 1];
        seg.read_at(at - base, &mut b).unwrap();
        seg.write_at(at - base, &[b[0] ^ 0x01]).unwrap();
        let flipped = log.read_records(&[(victim.position, victim.size)]).unwrap_err();
        assert!(
            matches!(flipped, StoreError::Corrupt { .. }),
            "the entry's crc sees it: {flipped}"
        );
        let err = read(victim).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(read(good).is_ok(), "another record still reads");
        let mut body = Vec::new();
        assert!(log.read_queue_records_into(&entries, &mut body).is_err(), "nor in a batch");
    }

    /// ConsumeQueues of the 20-byte format (a checkpoint without a format) are rebuilt from
    /// the log on open, to the files a fresh dispatch writes.
    #[test]
    fn queues_of_the_older_format_are_rebuilt_on_open() {
        let (lc, dc) = configs();
        let s = SimStorage::new();
        let (mut log, _) = CommitLog::open(s.clone(), lc).unwrap();
        let mut d = Dispatcher::open(s.clone(), dc.clone(), &log).unwrap();
        fill(&mut log, &mut d, &mut Leader::default(), 30);
        d.flush().unwrap();
        let built = derived_files(&s);
        drop(d);
        // What the older version leaves: 20-byte entries in files of 20 x entries_per_file
        // bytes, and a 16-byte checkpoint.
        s.remove_dir_all("consumequeue").unwrap();
        let old = s.create("consumequeue/T/0/00000000000000000000", 16 * 20).unwrap();
        old.write_at(0, &[7; 20]).unwrap();
        let (mut checkpoint, saved) = checkpoint::RecordFile::open(&s, "checkpoint").unwrap();
        checkpoint.write(&saved.unwrap()[..16]).unwrap();
        let mut d = Dispatcher::open(s.clone(), dc, &log).unwrap();
        assert_eq!(d.next().next_index, RaftIndex(0), "dispatch starts over at the log's start");
        assert!(d.queue("T", 0).is_none(), "the old files are gone");
        catch_up(&log, &mut d);
        d.flush().unwrap();
        assert!(derived_files(&s) == built, "rebuilt files differ");
    }

    #[test]
    fn rebuilding_from_the_log_gives_identical_files() {
        let (lc, dc) = configs();
        let s = SimStorage::new();
        let (mut log, _) = CommitLog::open(s.clone(), lc).unwrap();
        let mut d = Dispatcher::open(s.clone(), dc.clone(), &log).unwrap();
        fill(&mut log, &mut d, &mut Leader::default(), 60);
        d.flush().unwrap();
        let built = derived_files(&s);
        assert!(built.len() > 10, "several queue and index files");
        drop(d);
        for dir in ["consumequeue", "index"] {
            s.remove_dir_all(dir).unwrap();
        }
        s.remove("checkpoint").unwrap();
        let mut d = Dispatcher::open(s.clone(), dc, &log).unwrap();
        assert_eq!(d.next().next_index, RaftIndex(0));
        catch_up(&log, &mut d);
        d.flush().unwrap();
        assert!(derived_files(&s) == built, "rebuilt files differ");
    }

    /// Async flush's power loss: the queues and their checkpoint are durable further than the
    /// log (it lost its unsynced tail). Reopened, the dispatcher forgets what it recorded for
    /// the lost entries, so the entries written in their place (same queue offsets) dispatch.
    #[test]
    fn queues_ahead_of_a_log_that_lost_its_tail_are_cut_back() {
        let (lc, dc) = configs();
        let s = SimStorage::new();
        let (mut log, _) = CommitLog::open(s.clone(), lc).unwrap();
        let mut d = Dispatcher::open(s.clone(), dc.clone(), &log).unwrap();
        fill(&mut log, &mut d, &mut Leader::default(), 20);
        d.flush().unwrap();
        drop(d);
        log.truncate_after(Some(RaftIndex(9))).unwrap();
        let mut d = Dispatcher::open(s.clone(), dc, &log).unwrap();
        assert!(d.next().next_index <= RaftIndex(10), "resumes at or before the log's end");
        catch_up(&log, &mut d);
        // A new leader's entries 10..19 reuse the queue offsets of the lost ones.
        let mut leader = Leader::default();
        for _ in 0..10 {
            leader.entry("T", 3, 0);
        }
        fill(&mut log, &mut d, &mut leader, 10);
        let total: u64 = (0..4).map(|q| d.queue("T", q).unwrap().max_offset().0).sum();
        assert_eq!(total, 60, "20 entries of 3 records");
    }

    /// Dispatch 20 entries and flush, dispatch `extra` more without flushing; with
    /// `power_loss`, cut the power then and repair by re-dispatch. Returns the derived files.
    fn run_with_crash(extra: usize, power_loss: Option<u64>) -> Vec<(String, Vec<u8>)> {
        let (lc, dc) = configs();
        let s = SimStorage::new();
        let (mut log, _) = CommitLog::open(s.clone(), lc.clone()).unwrap();
        let mut d = Dispatcher::open(s.clone(), dc.clone(), &log).unwrap();
        let mut leader = Leader::default();
        fill(&mut log, &mut d, &mut leader, 20);
        d.flush().unwrap();
        fill(&mut log, &mut d, &mut leader, extra);
        if let Some(seed) = power_loss {
            drop((log, d));
            s.power_loss(&mut RandomPowerLoss::new(seed));
            let (reopened, _) = CommitLog::open(s.clone(), lc).unwrap();
            log = reopened;
            assert_eq!(
                log.end().next_index,
                RaftIndex(20 + extra as u64),
                "the log itself was flushed"
            );
            d = Dispatcher::open(s.clone(), dc, &log).unwrap();
            assert!(d.next().next_index <= RaftIndex(20), "resumes at or before the checkpoint");
            catch_up(&log, &mut d);
        }
        d.flush().unwrap();
        derived_files(&s)
    }

    /// A power loss before the dispatch flush keeps a random part of the unsynced writes to
    /// queues and indexes (torn ones included); re-dispatch repairs them to exactly the files
    /// of an uninterrupted run. `extra` 1 leaves the last index file half written; 25 rolls
    /// it several times.
    #[test]
    fn a_crash_before_the_dispatch_flush_is_repaired_by_redispatch() {
        for extra in [1, 25] {
            let reference = run_with_crash(extra, None);
            for seed in 1..300 {
                assert!(
                    run_with_crash(extra, Some(seed)) == reference,
                    "extra {extra}, seed {seed}: repaired files differ from an uninterrupted run"
                );
            }
        }
    }
}

mod retention {
    //! Old segments go, with the queue entries and index files that pointed into them; a full
    //! disk refuses appends.
    use rocketraft_store::io::sim::SimStorage;
    use rocketraft_store::retention::{apply, DiskState};
    use rocketraft_store::*;

    use super::messages::Leader;

    #[test]
    fn expired_segments_are_purged_with_their_queue_entries() {
        let s = SimStorage::new();
        let lc = CommitLogConfig { segment_size_bytes: 8 * 1024, checkpoint_every_entries: 100 };
        let dc = DispatchConfig {
            consume_queue: ConsumeQueueConfig { entries_per_file: 8 },
            index: IndexConfig { slot_count: 64, index_max: 40 },
        };
        let (mut log, _) = CommitLog::open(s.clone(), lc).unwrap();
        let mut d = Dispatcher::open(s.clone(), dc, &log).unwrap();
        let mut leader = Leader::default();
        let hour = 3_600_000i64;
        for i in 0..60 {
            s.set_now_ms(i * hour); // entry i is written at hour i
            let e = leader.entry("T", 4, i * hour);
            log.append(std::slice::from_ref(&e)).unwrap();
            d.dispatch(log.last().unwrap().position, &e).unwrap();
        }
        log.flush().unwrap();
        let segments = log.segment_files().len();
        assert!(segments >= 4, "{segments} segments");
        let cfg = RetentionConfig::default();
        // At hour 100, segments last written before hour 28 have expired.
        let report = apply(&mut log, &mut d, 100 * hour, RaftIndex(60), &cfg).unwrap();
        assert!(report.segments_deleted > 0);
        assert_eq!(report.disk, DiskState::Ok);
        let start = log.start();
        assert!(start.next_index > RaftIndex(0));
        for q in 0..4 {
            let cq = d.queue("T", q).unwrap();
            let first = cq.get(cq.min_offset()).unwrap().unwrap();
            assert!(first.position >= start.position, "queue {q} points into the purged log");
            assert!(cq.get(QueueOffset(0)).unwrap().is_none());
        }
        assert!(matches!(log.read_raw(CommitLogOffset(100), 10), Err(StoreError::Purged { .. })));
        // Nothing may go past the purge limit, however old.
        let before = log.start();
        apply(&mut log, &mut d, 10_000 * hour, before.next_index, &cfg).unwrap();
        assert_eq!(log.start(), before);
    }

    #[test]
    fn a_full_disk_refuses_new_writes_until_space_frees_but_appends_go_on() {
        let s = SimStorage::new();
        let (mut log, _) = CommitLog::open(
            s.clone(),
            CommitLogConfig { segment_size_bytes: 8192, checkpoint_every_entries: 100 },
        )
        .unwrap();
        let mut d = Dispatcher::open(s.clone(), DispatchConfig::default(), &log).unwrap();
        let mut leader = Leader::default();
        log.append(&[leader.entry("T", 1, 0)]).unwrap();
        assert!(log.admit_new_writes(0).is_ok());
        s.set_volume_bytes(9000); // the files already take more than 90% of it
        let report = apply(&mut log, &mut d, 0, RaftIndex(0), &RetentionConfig::default()).unwrap();
        assert!(matches!(report.disk, DiskState::Full { .. }));
        let err = log.admit_new_writes(0).unwrap_err();
        assert!(matches!(err, StoreError::DiskFull { .. }), "{err}");
        assert!(err.to_string().contains("writes are refused"));
        // An entry already proposed (or committed by a majority) is still appended: refusing it
        // would stop Raft on this replica.
        log.append(&[leader.entry("T", 1, 0)]).unwrap();
        s.set_volume_bytes(1 << 30);
        apply(&mut log, &mut d, 0, RaftIndex(0), &RetentionConfig::default()).unwrap();
        assert!(log.admit_new_writes(0).is_ok());
    }
}

mod kill {
    //! A real process appends in sync mode on real files (mmap) and prints each index it has
    //! seen become durable; the test kills it with SIGKILL mid-write, reopens the store, and
    //! finds every entry that was reported durable, byte for byte.
    //!
    //! ```text
    //!   parent ──spawn──> child: loop { append 1..5 entries (1-60 KiB); flush; print "durable N" }
    //!   parent: read lines ... SIGKILL ... drain the pipe ... reopen ... check 0..=N
    //! ```
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    use bytes::Bytes;
    use rocketraft_store::io::mmap::MmapStorage;
    use rocketraft_store::{CommitLog, CommitLogConfig, EntryKind, LogEntry, RaftIndex};

    const CHILD_DIR_ENV: &str = "ROCKETRAFT_KILL_TEST_DIR";

    fn config() -> CommitLogConfig {
        CommitLogConfig { segment_size_bytes: 1 << 20, checkpoint_every_entries: 50 }
    }

    fn payload(index: u64) -> Bytes {
        let len = 1024 + (index * 7919 % (60 * 1024)) as usize;
        Bytes::from((0..len).map(|i| (index as usize * 7 + i) as u8).collect::<Vec<u8>>())
    }

    pub(super) fn entry(index: u64) -> LogEntry {
        LogEntry {
            index: RaftIndex(index),
            term: 1,
            leader: 0,
            kind: EntryKind::Metadata,
            payload: payload(index),
        }
    }

    /// The child: only does anything when the parent runs it with the directory set.
    #[test]
    #[ignore = "run by sigkill_mid_write_loses_nothing_reported_durable as its child process"]
    fn child_writer() {
        let Ok(dir) = std::env::var(CHILD_DIR_ENV) else { return };
        let (mut log, _) = CommitLog::open(MmapStorage::new(dir).unwrap(), config()).unwrap();
        let mut next = log.end().next_index.0;
        loop {
            let batch: Vec<_> = (next..next + 1 + next % 5).map(entry).collect();
            log.append(&batch).unwrap();
            next += batch.len() as u64;
            let durable = log.flush().unwrap();
            println!("durable {}", durable.next_index.0 - 1);
        }
    }

    #[test]
    fn sigkill_mid_write_loses_nothing_reported_durable() {
        for round in 0..3u64 {
            let dir = tempfile::tempdir().unwrap();
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "kill::child_writer",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_DIR_ENV, dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let mut reported = None;
            let wanted = 20 + round * 150;
            for line in lines.by_ref() {
                if let Some(n) = line.unwrap().strip_prefix("durable ") {
                    let n: u64 = n.parse().unwrap();
                    reported = Some(n);
                    if n >= wanted {
                        break;
                    }
                }
            }
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            // Lines written before the kill are still in the pipe: they were reported too.
            for line in lines.map_while(Result::ok) {
                if let Some(n) = line.strip_prefix("durable ") {
                    reported = Some(n.parse().unwrap());
                }
            }
            let reported = reported.expect("the child reported progress");
            let (log, report) =
                CommitLog::open(MmapStorage::new(dir.path()).unwrap(), config()).unwrap();
            let end = log.end().next_index.0;
            assert!(
                end > reported,
                "round {round}: reported {reported} durable, recovered only up to {end}"
            );
            for e in log.entries(RaftIndex(0)..RaftIndex(end)).unwrap() {
                assert_eq!(
                    e.payload,
                    payload(e.index.0),
                    "round {round}: entry {} differs",
                    e.index
                );
            }
            eprintln!("round {round}: reported {reported}, recovered {end} entries; {report:?}");
        }
    }
}

mod disk_full {
    //! A write the disk refuses is an error, and what was durable before stays readable.
    use rocketraft_store::io::sim::{DropAllUnsynced, SimStorage};
    use rocketraft_store::{CommitLog, CommitLogConfig, RaftIndex, StoreError};

    use super::support::entry;

    #[test]
    fn refused_writes_lose_nothing_acknowledged() {
        let s = SimStorage::new();
        let cfg = CommitLogConfig { segment_size_bytes: 4096, checkpoint_every_entries: 3 };
        let (mut log, _) = CommitLog::open(s.clone(), cfg.clone()).unwrap();
        log.append(&(0..10).map(|i| entry(i, 1, 300, 0)).collect::<Vec<_>>()).unwrap();
        log.flush().unwrap();
        s.set_disk_full(true);
        let err = log.append(&[entry(10, 1, 300, 0)]).unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }) && err.is_fatal_io(), "{err}");
        assert_eq!(log.end().next_index, RaftIndex(10), "a refused append changes nothing");
        drop(log);
        s.set_disk_full(false);
        s.power_loss(&mut DropAllUnsynced);
        let (log, _) = CommitLog::open(s, cfg).unwrap();
        assert_eq!(log.end().next_index, RaftIndex(10));
        assert_eq!(log.entries(RaftIndex(0)..RaftIndex(10)).unwrap().len(), 10);
    }
}

mod reset {
    //! A follower that installs a snapshot restarts its log and its queues at the snapshot's
    //! cut, and the positions it writes from there match the leader's.
    use rocketraft_store::io::sim::SimStorage;
    use rocketraft_store::*;

    use super::messages::Leader;

    #[test]
    fn a_reset_log_continues_at_the_leaders_positions() {
        let cfg = CommitLogConfig { segment_size_bytes: 8192, checkpoint_every_entries: 10 };
        let leader_disk = SimStorage::new();
        let (mut leader_log, _) = CommitLog::open(leader_disk.clone(), cfg.clone()).unwrap();
        let mut leader = Leader::default();
        let entries: Vec<_> = (0..30).map(|i| leader.entry("T", 2, i)).collect();
        leader_log.append(&entries).unwrap();
        // The snapshot covers 0..=19; the follower gets its cut and then entries 20..
        let cut = leader_log.cut_before(RaftIndex(20)).unwrap();
        let follower_disk = SimStorage::new();
        let (mut f_log, _) = CommitLog::open(follower_disk.clone(), cfg.clone()).unwrap();
        let mut d =
            Dispatcher::open(follower_disk.clone(), DispatchConfig::default(), &f_log).unwrap();
        f_log.reset(cut).unwrap();
        d.reset(cut).unwrap();
        f_log.append(&entries[20..]).unwrap();
        for i in 20..30 {
            let (a, b) = (
                leader_log.entry_meta(RaftIndex(i)).unwrap(),
                f_log.entry_meta(RaftIndex(i)).unwrap(),
            );
            assert_eq!((a.position, a.crc), (b.position, b.crc), "entry {i}");
            d.dispatch(b.position, &entries[i as usize]).unwrap();
        }
        let q = d.queue("T", 0).unwrap();
        assert!(q.min_offset() > QueueOffset(0), "the queue starts where the snapshot left it");
        // Reopening keeps the reset start.
        drop(f_log);
        let (f_log, _) = CommitLog::open(follower_disk, cfg).unwrap();
        assert_eq!(f_log.start(), cut);
        assert_eq!(f_log.end().next_index, RaftIndex(30));
    }
}

/// Damage found while the replica runs, on real files: a byte of a synced segment flipped
/// under a live log (bit rot, a bad sector) is caught by the read that meets it, the log
/// notes the damage and writes its marker, and it does not open again. A read at a position a
/// client named (a msgId's offset) that fails its check is not damage.
mod damage {
    use std::io::{Read, Seek, SeekFrom, Write};

    use rocketraft_store::commitlog::DAMAGE_MARKER;
    use rocketraft_store::io::mmap::MmapStorage;
    use rocketraft_store::{CommitLog, CommitLogConfig, CommitLogOffset, RaftIndex, StoreError};

    // Entries of 1-60 KiB: the first eight lie in the first 1 MiB segment.
    use super::kill::entry;

    #[test]
    fn a_damaged_entry_found_by_a_read_quarantines_the_log_on_real_files() {
        let dir = tempfile::tempdir().unwrap();
        let config = CommitLogConfig { segment_size_bytes: 1 << 20, checkpoint_every_entries: 8 };
        let storage = MmapStorage::new(dir.path()).unwrap();
        let (mut log, _) = CommitLog::open(storage.clone(), config.clone()).unwrap();
        for i in 0..30 {
            log.append(&[entry(i)]).unwrap();
            log.flush().unwrap();
        }
        assert!(log.checkpoint().unwrap(), "the checkpoint lagged the last flushes");
        assert_eq!(log.checkpointed().next_index, RaftIndex(30));
        // A client's position that is no record: an error, not damage.
        assert!(log.read_records(&[(CommitLogOffset(3), 50)]).is_err());
        assert_eq!(log.damage(), None);
        // A bit flips in entry 7's payload on disk (through the file, not the log).
        let victim = log.entry_meta(RaftIndex(7)).unwrap();
        let path = dir.path().join("commitlog").join(format!("{:020}", 0));
        let mut file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let at = victim.position.0 + 300;
        let mut b = [0u8; 1];
        file.seek(SeekFrom::Start(at)).unwrap();
        file.read_exact(&mut b).unwrap();
        file.seek(SeekFrom::Start(at)).unwrap();
        file.write_all(&[b[0] ^ 0x04]).unwrap();
        file.sync_all().unwrap();
        drop(file);
        assert_eq!(log.damage(), None, "nothing read it yet");
        let err = log.entries(RaftIndex(5)..RaftIndex(10)).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "never served: {err}");
        assert!(log.damage().is_some(), "the read noted the damage");
        assert!(dir.path().join(DAMAGE_MARKER).exists(), "and wrote the marker");
        drop(log);
        let err = CommitLog::open(storage, config).err().expect("the log stays quarantined");
        assert!(matches!(err, StoreError::Quarantined { .. }), "{err}");
        assert!(err.to_string().contains("must not vote or lead"), "{err}");
    }
}
