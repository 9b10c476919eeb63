//! Full disks, for real: a small tmpfs per replica where the machine lets the test mount one
//! (CI runs as root), otherwise the broker's `[store] capacity_bytes` cap over the real volume.
//! Each test says on its output which way it ran; none skips silently.
#![cfg(not(madsim))]
// Real processes and mounts in real time: wall-clock deadlines.
#![allow(clippy::disallowed_methods)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rocketraft_client::{Message, Producer, ProducerConfig};
use rocketraft_store::io::mmap::MmapStorage;
use rocketraft_store::io::{Storage, StorageFile};
use support::{consume_ids, leader_of, start_broker, wait_cluster, ProcGroup};

/// A tmpfs of a fixed size mounted for the test, unmounted (lazily) when dropped.
struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    fn mount(at: &Path, bytes: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs { at: at.to_owned() })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

fn is_root() -> bool {
    // SAFETY: a plain getter with no arguments.
    unsafe { libc::geteuid() == 0 }
}

/// A file written through its mapping on a disk with no room left gets an error from the write
/// (ENOSPC from the blocks taken ahead of it), never a SIGBUS that kills the process. Once, the
/// ConsumeQueue and IndexFile were sparse files whose pages found no block on a full disk.
#[test]
fn a_mapped_write_on_a_full_disk_is_an_error_not_a_sigbus() {
    let dir = tempfile::tempdir().unwrap();
    let disk = match Tmpfs::mount(&dir.path().join("disk"), 2 << 20) {
        Ok(disk) => disk,
        Err(why) => {
            assert!(!is_root(), "running as root, yet a 2 MiB tmpfs could not be mounted: {why}");
            eprintln!("NOT RUN: mounting a tmpfs needs root ({why})");
            return;
        }
    };
    eprintln!("runs on a 2 MiB tmpfs at {}", disk.at.display());
    let storage = MmapStorage::new(&disk.at).unwrap();
    let file = storage.create("consumequeue/T/0/00000000000000000000", 8 << 20).unwrap();
    let chunk = vec![7u8; 64 << 10];
    let mut written = 0u64;
    let error = loop {
        match file.write_at(written, &chunk) {
            Ok(()) => written += chunk.len() as u64,
            Err(e) => break e,
        }
        assert!(written < 8 << 20, "8 MiB written to a 2 MiB disk");
    };
    assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "{error}");
    assert!(written >= 1 << 20, "what fit was written: {written} bytes");
    let mut back = vec![0u8; chunk.len()];
    file.read_at(written - chunk.len() as u64, &mut back).unwrap();
    assert_eq!(back, chunk, "and reads back");
}

/// Bytes that do not compress (the SDK compresses bodies above 4 KiB).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

const DISK_BYTES: u64 = 48 << 20;
const BALLAST_BYTES: usize = 30 << 20;
const BODY_BYTES: usize = 16 << 10;

/// A three-replica group of processes, each on a small disk of its own: filled until the
/// master refuses sends (SERVICE_NOT_AVAILABLE, "disk is full"), with a follower SIGKILLed
/// halfway and restarted on its full disk; pulls go on while full; then space is freed (a
/// ballast file each disk carried is removed) and sends are accepted again. Every acknowledged
/// message is consumed at the end, and every replica is back and caught up.
#[test]
fn a_full_disk_refuses_sends_then_takes_them_again_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let roots: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("disk-{i}"))).collect();
    let mut disks = Vec::new();
    let mut cap = String::new();
    // ROCKETRAFT_TEST_NO_MOUNT=1 runs the fallback where a tmpfs could be mounted.
    let no_mount = std::env::var_os("ROCKETRAFT_TEST_NO_MOUNT").is_some();
    for root in &roots {
        std::fs::create_dir_all(root).unwrap();
    }
    for root in &roots {
        let mounted = if no_mount {
            Err("ROCKETRAFT_TEST_NO_MOUNT is set".to_owned())
        } else {
            Tmpfs::mount(root, DISK_BYTES)
        };
        match mounted {
            Ok(d) => disks.push(d),
            Err(why) => {
                disks.clear();
                cap = format!("capacity_bytes = {DISK_BYTES}\n");
                eprintln!("cannot mount a tmpfs ({why}): each replica's disk is a capacity cap");
                break;
            }
        }
    }
    if cap.is_empty() {
        eprintln!("each replica's disk is a {} MiB tmpfs", DISK_BYTES >> 20);
    }
    let store = format!(
        "segment_size_bytes = 1048576\nconsume_queue_entries_per_file = 10000\n\
         index_slot_count = 10000\nindex_max = 40000\ndisk_clean_ratio = 0.9\n\
         disk_max_used_ratio = 0.9\nretention_check_ms = 200\n{cap}\
         [server]\nmessage_max_bytes = 65536\n"
    );
    let ProcGroup { ns: _ns, namesrv, configs, mut brokers, leader } =
        ProcGroup::start_with_tls(dir.path(), |i| roots[i].clone(), &store, false);
    let store_dir = |i: usize| roots[i].join(format!("broker-a-{i}"));
    let ballast = |i: usize| store_dir(i).join("ballast");
    for i in 0..3 {
        let mb = noise(i as u64, 1 << 20);
        let mut bytes = Vec::with_capacity(BALLAST_BYTES);
        while bytes.len() < BALLAST_BYTES {
            bytes.extend_from_slice(&mb);
        }
        std::fs::write(ballast(i), bytes).unwrap();
    }
    let victim = (0..3).find(|i| *i != leader as usize).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let producer = rt.block_on(Producer::start(ProducerConfig::new(&namesrv))).unwrap();
    let send = |i: u64| {
        let msg = Message::new("Fill", noise(1_000 + i, BODY_BYTES)).with_keys([format!("k{i}")]);
        rt.block_on(producer.send(msg))
    };

    let mut acked = BTreeSet::new();
    let mut refused = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut i = 0u64;
    while refused.is_none() {
        assert!(Instant::now() < deadline, "no refusal after {} acknowledged sends", acked.len());
        assert!(i < 5_000, "no refusal after {i} sends of {BODY_BYTES} bytes");
        if i == 150 {
            let status = brokers[victim].signal("-KILL");
            assert!(!status.success());
            eprintln!("SIGKILLed broker-a-{victim} during the fill");
        }
        match send(i) {
            Ok(r) => {
                acked.insert(r.msg_id);
            }
            Err(e) if e.to_string().contains("disk is full") => refused = Some(e.to_string()),
            Err(e) => {
                let logs: Vec<String> = brokers.iter().map(|b| b.log_text()).collect();
                panic!("send {i} failed otherwise: {e}\n{}", logs.join("\n"))
            }
        }
        i += 1;
    }
    eprintln!("refused after {} acknowledged sends: {}", acked.len(), refused.unwrap());
    assert!(acked.len() > 150, "the disk filled only after the kill: {}", acked.len());

    // The killed follower restarts on its full disk, and catches up.
    brokers[victim] = start_broker(dir.path(), &configs, victim);
    let caught_up = |c: &[serde_json::Value]| {
        c.iter().filter(|r| r["role"] != "not registered").count() == 3
            && c.iter().all(|r| r["lagEntries"] == 0)
    };
    let view = wait_cluster(&namesrv, 60, caught_up);
    assert!(caught_up(&view), "all three caught up while full: {view:?}");
    let still = send(999_999);
    assert!(still.is_err(), "still full: {still:?}");

    // Pulls go on while the disk is full.
    let consume_all = |group: &str, want: &BTreeSet<String>| {
        rt.block_on(consume_ids(&namesrv, "Fill", group, want, 60))
    };
    let received = consume_all("while-full", &acked);
    assert!(acked.is_subset(&received), "while full, {} of {} read", received.len(), acked.len());

    free_space(&ballast);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match send(i) {
            Ok(r) => {
                acked.insert(r.msg_id);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "still refused with room: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for j in 1..=20 {
        let r = send(i + j).unwrap_or_else(|e| panic!("a send after space freed: {e}"));
        acked.insert(r.msg_id);
    }
    rt.block_on(producer.shutdown());

    let view = wait_cluster(&namesrv, 60, caught_up);
    assert!(caught_up(&view), "all three caught up after: {view:?}");
    assert!(leader_of(&view).is_some(), "a leader: {view:?}");
    let received = consume_all("after", &acked);
    let lost: Vec<&String> = acked.difference(&received).collect();
    assert!(lost.is_empty(), "{} acknowledged messages lost: {lost:?}", lost.len());

    for (i, b) in brokers.iter_mut().enumerate() {
        let status = b.signal("-TERM");
        assert!(status.success(), "broker-a-{i} stops cleanly: {status}\n{}", b.log_text());
    }
    drop(disks);
}

/// Frees the space: every disk's ballast file goes.
fn free_space(ballast: &impl Fn(usize) -> PathBuf) {
    for i in 0..3 {
        std::fs::remove_file(ballast(i)).unwrap();
    }
    eprintln!("freed the ballast on every disk");
}
