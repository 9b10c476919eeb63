//! Store benchmarks (criterion): CommitLog append throughput for 1 KiB message records in
//! sync mode with group commit and in async mode, ConsumeQueue lookups, and reads of records
//! by CommitLog position. Real files (mmap) in a temporary directory.
//!
//! `cargo bench -p rocketraft-store`; figures and the machine's raw disk bandwidth are in
//! BENCHMARKS.md.

// Benchmarks measure real time on real threads; they never run under madsim.
#![allow(clippy::disallowed_methods)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rocketraft_protocol::message::{body_crc, properties_to_string, MessageRecord};
use rocketraft_store::io::mmap::MmapStorage;
use rocketraft_store::*;

const RECORD_BODY_BYTES: usize = 1024;

fn record(queue_offset: i64) -> Vec<u8> {
    let body = Bytes::from(vec![b'x'; RECORD_BODY_BYTES]);
    MessageRecord {
        body_crc: body_crc(&body),
        queue_offset,
        born_timestamp: 1_700_000_000_000,
        store_timestamp: 1_700_000_000_001,
        body,
        topic: "BenchTopic".into(),
        properties: properties_to_string([
            ("TAGS", "TagA"),
            ("UNIQ_KEY", "0A00000904D2112233440000"),
        ]),
        ..Default::default()
    }
    .encode()
    .unwrap()
}

fn entry(index: u64) -> LogEntry {
    LogEntry {
        index: RaftIndex(index),
        term: 1,
        leader: 0,
        kind: EntryKind::Messages,
        payload: Bytes::from(record(index as i64)),
    }
}

fn open_log(dir: &tempfile::TempDir) -> CommitLog<MmapStorage> {
    let config = CommitLogConfig { segment_size_bytes: 256 << 20, ..Default::default() };
    CommitLog::open(MmapStorage::new(dir.path()).unwrap(), config).unwrap().0
}

/// Sync mode: appends go on while a flusher thread syncs in a loop; an iteration is done when
/// its last entry is durable. One sync covers every append made while the previous one ran.
fn append_sync_group_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("commitlog_append_sync_group_commit");
    g.throughput(Throughput::Bytes(record(0).len() as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function("1KiB_record", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().unwrap();
            let log = Arc::new(Mutex::new(open_log(&dir)));
            let gc = Arc::new(GroupCommit::<()>::default());
            let stop = Arc::new(AtomicBool::new(false));
            let flusher = {
                let (log, gc, stop) = (log.clone(), gc.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        gc.flush_once(&log).unwrap();
                    }
                })
            };
            let entries: Vec<_> = (0..iters).map(entry).collect();
            let start = std::time::Instant::now();
            for e in &entries {
                log.lock().unwrap().append(std::slice::from_ref(e)).unwrap();
            }
            while log.lock().unwrap().flushed().next_index.0 < iters {
                std::thread::yield_now();
            }
            let elapsed = start.elapsed();
            stop.store(true, Ordering::Relaxed);
            flusher.join().unwrap();
            elapsed
        })
    });
    g.finish();
}

/// Async mode: appends are done when written; the 500 ms flush runs apart from them.
fn append_async(c: &mut Criterion) {
    let mut g = c.benchmark_group("commitlog_append_async");
    g.throughput(Throughput::Bytes(record(0).len() as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function("1KiB_record", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().unwrap();
            let mut log = open_log(&dir);
            let entries: Vec<_> = (0..iters).map(entry).collect();
            let start = std::time::Instant::now();
            for e in &entries {
                log.append(std::slice::from_ref(e)).unwrap();
            }
            start.elapsed()
        })
    });
    g.finish();
}

/// ConsumeQueue lookups (32 entries, as a pull batch) and reads of records by position.
fn lookups(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let storage = MmapStorage::new(dir.path()).unwrap();
    let (mut log, _) = CommitLog::open(
        storage.clone(),
        CommitLogConfig { segment_size_bytes: 256 << 20, ..Default::default() },
    )
    .unwrap();
    let mut d = Dispatcher::open(storage, DispatchConfig::default(), &log).unwrap();
    const N: u64 = 100_000;
    for i in 0..N {
        let e = entry(i);
        log.append(std::slice::from_ref(&e)).unwrap();
        d.dispatch(log.last().unwrap().position, &e).unwrap();
    }
    log.flush().unwrap();
    let q = d.queue("BenchTopic", 0).unwrap();
    let mut g = c.benchmark_group("lookups");
    let mut x = 12345u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % (N - 32)
    };
    g.bench_function("consumequeue_range_32", |b| {
        b.iter_batched(&mut next, |o| q.range(QueueOffset(o), 32).unwrap(), BatchSize::SmallInput)
    });
    let entries = q.range(QueueOffset(0), N as usize).unwrap();
    g.throughput(Throughput::Bytes(u64::from(entries[0].size)));
    g.bench_function("read_record_by_position", |b| {
        b.iter_batched(
            &mut next,
            |o| {
                let e = entries[o as usize];
                log.read_records(&[(e.position, e.size)]).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, append_sync_group_commit, append_async, lookups);
criterion_main!(benches);
