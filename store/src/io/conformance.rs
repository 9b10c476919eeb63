//! One suite for every [`Storage`] implementation (STYLE.md rule 3). Call [`run`] with a
//! fresh, empty storage; it panics with the name of the first property that fails.

use std::io::ErrorKind;

use super::{read_all, Storage, StorageFile};

/// Runs every check against `storage`, which must start empty.
pub fn run<S: Storage>(storage: &S) {
    files_start_zeroed_and_keep_their_capacity(storage);
    writes_are_read_back(storage);
    out_of_range_is_an_error(storage);
    create_refuses_existing_and_open_refuses_missing(storage);
    listing_is_sorted_and_shows_directories(storage);
    remove_is_idempotent(storage);
    remove_dir_all_takes_the_subtree(storage);
    sync_accepts_any_in_range_span(storage);
    handles_share_one_file(storage);
    log_files_are_files_too(storage);
    disk_usage_is_sane(storage);
}

fn files_start_zeroed_and_keep_their_capacity<S: Storage>(s: &S) {
    let f = s.create("zero/f", 4096).unwrap();
    assert_eq!(f.capacity(), 4096);
    assert!(read_all(&*f).unwrap().iter().all(|b| *b == 0), "new file reads as zeros");
    assert_eq!(s.open("zero/f").unwrap().capacity(), 4096, "open reports the capacity");
}

fn writes_are_read_back<S: Storage>(s: &S) {
    let f = s.create("rw", 100).unwrap();
    f.write_at(10, b"hello").unwrap();
    f.write_at(12, b"LL").unwrap();
    let mut buf = [0u8; 7];
    f.read_at(9, &mut buf).unwrap();
    assert_eq!(&buf, b"\0heLLo\0", "overlapping writes: the last one wins");
    f.write_at(95, b"12345").unwrap();
    let mut end = [0u8; 5];
    f.read_at(95, &mut end).unwrap();
    assert_eq!(&end, b"12345", "a write may end exactly at the capacity");
    assert_eq!(in_place(&*f, 9, 7).unwrap(), b"\0heLLo\0", "read in place sees the writes");
    assert_eq!(in_place(&*f, 95, 5).unwrap(), b"12345");
    assert_eq!(in_place(&*f, 100, 0).unwrap(), b"", "an empty range at the end");
}

/// The bytes `read_in_place` lends, copied out.
fn in_place<F: StorageFile + ?Sized>(f: &F, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut seen = None;
    f.read_in_place(offset, len, &mut |b| seen = Some(b.to_vec()))?;
    Ok(seen.expect("read_in_place calls back once it succeeds"))
}

fn out_of_range_is_an_error<S: Storage>(s: &S) {
    let f = s.create("range", 8).unwrap();
    assert!(f.write_at(6, b"abc").is_err(), "write past the end");
    assert!(f.write_at(u64::MAX, b"a").is_err(), "offset overflow");
    assert!(f.read_at(7, &mut [0u8; 2]).is_err(), "read past the end");
    assert!(in_place(&*f, 7, 2).is_err(), "read in place past the end");
    assert!(in_place(&*f, u64::MAX, 1).is_err(), "read in place at an overflowing offset");
    assert!(f.sync_range(4, 5).is_err(), "sync past the end");
}

fn create_refuses_existing_and_open_refuses_missing<S: Storage>(s: &S) {
    s.create("dup", 8).unwrap();
    assert_eq!(s.create("dup", 8).unwrap_err().kind(), ErrorKind::AlreadyExists);
    assert_eq!(s.open("missing").unwrap_err().kind(), ErrorKind::NotFound);
}

fn listing_is_sorted_and_shows_directories<S: Storage>(s: &S) {
    s.create("list/b", 8).unwrap();
    s.create("list/a", 8).unwrap();
    s.create("list/sub/c", 8).unwrap();
    assert_eq!(s.list("list").unwrap(), vec!["a", "b", "sub"]);
    assert_eq!(s.list("list/sub").unwrap(), vec!["c"]);
    assert!(s.list("nothing/here").unwrap().is_empty(), "a missing directory lists empty");
}

fn remove_is_idempotent<S: Storage>(s: &S) {
    s.create("gone", 8).unwrap();
    s.remove("gone").unwrap();
    s.remove("gone").unwrap();
    assert_eq!(s.open("gone").unwrap_err().kind(), ErrorKind::NotFound);
}

fn remove_dir_all_takes_the_subtree<S: Storage>(s: &S) {
    s.create("tree/x/1", 8).unwrap();
    s.create("tree/x/y/2", 8).unwrap();
    s.create("tree/keep", 8).unwrap();
    s.remove_dir_all("tree/x").unwrap();
    assert_eq!(s.list("tree").unwrap(), vec!["keep"]);
    s.remove_dir_all("tree/x").unwrap();
}

fn sync_accepts_any_in_range_span<S: Storage>(s: &S) {
    let f = s.create("sync", 64).unwrap();
    f.write_at(0, &[7u8; 64]).unwrap();
    f.sync_range(0, 0).unwrap();
    f.sync_range(3, 17).unwrap();
    f.sync_range(0, 64).unwrap();
    assert!(read_all(&*f).unwrap().iter().all(|b| *b == 7));
}

fn handles_share_one_file<S: Storage>(s: &S) {
    let a = s.create("shared", 8).unwrap();
    let b = s.open("shared").unwrap();
    a.write_at(0, b"x").unwrap();
    let mut buf = [0u8; 1];
    b.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"x", "a second handle sees the first one's writes");
}

fn disk_usage_is_sane<S: Storage>(s: &S) {
    let u = s.disk_usage().unwrap();
    assert!(u.total_bytes > 0 && u.available_bytes <= u.total_bytes);
    assert!((0.0..=1.0).contains(&u.used_ratio()));
    let before = s.occupied_bytes().unwrap();
    let f = s.create("occupied/file", 64 << 10).unwrap();
    f.write_at(60 << 10, b"x").unwrap();
    assert!(s.occupied_bytes().unwrap() > before, "a written file occupies space");
    assert!(s.modified_ms("sync").unwrap() >= 0);
}

/// A log file keeps the whole contract, and handles of either kind see each other's writes.
fn log_files_are_files_too<S: Storage>(s: &S) {
    let f = s.create_log("log/seg", 8192).unwrap();
    assert_eq!(f.capacity(), 8192);
    assert!(read_all(&*f).unwrap().iter().all(|b| *b == 0), "a new log file reads as zeros");
    f.write_at(0, b"entry-1").unwrap();
    f.write_at(7, b"entry-2").unwrap();
    f.sync_range(0, 14).unwrap();
    let mut buf = [0u8; 14];
    f.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"entry-1entry-2");
    assert!(f.write_at(8190, b"abc").is_err(), "a log write past the end");
    assert!(f.sync_range(8000, 200).is_err(), "a log sync past the end");
    let plain = s.open("log/seg").unwrap();
    plain.read_at(0, &mut buf).unwrap();
    assert_eq!(&buf, b"entry-1entry-2", "a plain handle sees the log handle's writes");
    let again = s.open_log("log/seg").unwrap();
    again.write_at(14, b"entry-3").unwrap();
    let mut more = [0u8; 7];
    f.read_at(14, &mut more).unwrap();
    assert_eq!(&more, b"entry-3", "log handles share the file");
    assert_eq!(in_place(&*f, 0, 21).unwrap(), b"entry-1entry-2entry-3", "a log file in place");
    plain.read_at(14, &mut more).unwrap();
    assert_eq!(&more, b"entry-3");
    assert_eq!(s.create_log("log/seg", 8).unwrap_err().kind(), ErrorKind::AlreadyExists);
    assert_eq!(s.open_log("log/missing").unwrap_err().kind(), ErrorKind::NotFound);
}

#[cfg(test)]
mod tests {
    #[test]
    fn mmap_storage_conforms() {
        let dir = tempfile::tempdir().unwrap();
        super::run(&super::super::mmap::MmapStorage::new(dir.path()).unwrap());
    }

    #[test]
    fn sim_storage_conforms() {
        super::run(&super::super::sim::SimStorage::new());
    }
}
