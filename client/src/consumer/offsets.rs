//! Broadcasting consumers keep their offsets in a local file, as RocketMQ's
//! `LocalFileOffsetStore` does: every member reads every queue, so the broker's per-group
//! offset cannot describe any one of them.
//!
//! The file is JSON, written to a temporary file, synced, and renamed over the old one, so a
//! crash leaves either the old table or the new one. A file that does not parse is an error
//! naming the file (never silently reset to zero).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rocketraft_protocol::body::MessageQueue;
use serde::{Deserialize, Serialize};

use crate::error::{ClientError, Result};

/// The file's name inside the consumer's offset directory.
pub const OFFSET_FILE_NAME: &str = "offsets.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct OffsetFile {
    offsets: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    queue: MessageQueue,
    offset: i64,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io { path: path.display().to_string(), source }
}

/// Reads the table; a missing file is an empty table.
pub(crate) fn load(dir: &Path) -> Result<BTreeMap<MessageQueue, i64>> {
    let path = dir.join(OFFSET_FILE_NAME);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let file: OffsetFile = serde_json::from_slice(&text).map_err(|e| ClientError::Io {
        path: path.display().to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not an offset file ({e}); move it away to start over"),
        ),
    })?;
    Ok(file.offsets.into_iter().map(|e| (e.queue, e.offset)).collect())
}

/// Writes the table atomically (temporary file, fsync, rename).
pub(crate) fn store(dir: &Path, table: &BTreeMap<MessageQueue, i64>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let path = dir.join(OFFSET_FILE_NAME);
    let tmp: PathBuf = dir.join(format!("{OFFSET_FILE_NAME}.tmp"));
    let file = OffsetFile {
        offsets: table.iter().map(|(q, &o)| Entry { queue: q.clone(), offset: o }).collect(),
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(|e| ClientError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(&bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty(), "no file yet");
        let mq = |q| MessageQueue { broker_name: "b".into(), queue_id: q, topic: "T".into() };
        let table: BTreeMap<_, _> = [(mq(0), 5), (mq(3), 17)].into();
        store(dir.path(), &table).unwrap();
        assert_eq!(load(dir.path()).unwrap(), table);
        std::fs::write(dir.path().join(OFFSET_FILE_NAME), b"{not json").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains(OFFSET_FILE_NAME) && err.contains("move it away"), "{err}");
    }
}
