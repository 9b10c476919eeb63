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
        drop(log);
        // Without a checkpoint covering it, recovery checks it and ends the log before it.
        storage.remove("commitlog/checkpoint").unwrap();
        let (log, report) = CommitLog::open(storage, config()).unwrap();
        assert_eq!(log.end().next_index, RaftIndex(12));
        assert!(report.cut_reason.unwrap().contains("crc"));
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
