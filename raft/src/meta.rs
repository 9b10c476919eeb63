//! The metadata store: Raft's vote, committed and purged ids, the state machine's applied
//! state, and the replicated metadata (topics, subscription groups, consumer offsets).
//!
//! A small key-value trait ([`MetaStore`]) with two backends: [`SledMeta`] (on disk, for real
//! nodes) and [`MemMeta`] (in memory, for the simulation: sled starts OS threads, which madsim
//! forbids). Both pass [`conformance::run`]. A `write` is atomic and durable when it returns.
//! The trait knows nothing of sled or files (STYLE.md rule 4).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::error::MetaError;

/// One change in an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// Deletes every key starting with the prefix.
    DeletePrefix(Vec<u8>),
}

/// Keys and values, in key order.
pub type KvPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// An ordered key-value store with atomic, durable batches.
pub trait MetaStore: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError>;
    /// Applies `ops` in order, all or nothing, durably.
    fn write(&self, ops: Vec<MetaOp>) -> Result<(), MetaError>;
    /// Every key starting with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<KvPairs, MetaError>;
}

/// In-memory metadata, shared by clones (so a simulated node's "disk" survives its restart).
#[derive(Debug, Clone, Default)]
pub struct MemMeta {
    map: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
}

impl MemMeta {
    pub fn new() -> Self {
        Self::default()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MetaStore for MemMeta {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError> {
        Ok(lock(&self.map).get(key).cloned())
    }

    fn write(&self, ops: Vec<MetaOp>) -> Result<(), MetaError> {
        let mut map = lock(&self.map);
        for op in ops {
            match op {
                MetaOp::Put(k, v) => {
                    map.insert(k, v);
                }
                MetaOp::Delete(k) => {
                    map.remove(&k);
                }
                MetaOp::DeletePrefix(p) => map.retain(|k, _| !k.starts_with(&p)),
            }
        }
        Ok(())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<KvPairs, MetaError> {
        Ok(lock(&self.map)
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// Metadata in sled, flushed on every write.
#[derive(Debug, Clone)]
pub struct SledMeta {
    db: sled::Db,
}

impl SledMeta {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: impl AsRef<std::path::Path>) -> Result<Self, MetaError> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .open()
            .map_err(|e| MetaError::Io(e.to_string()))?;
        Ok(SledMeta { db })
    }
}

impl MetaStore for SledMeta {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError> {
        self.db.get(key).map(|v| v.map(|v| v.to_vec())).map_err(|e| MetaError::Io(e.to_string()))
    }

    fn write(&self, ops: Vec<MetaOp>) -> Result<(), MetaError> {
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                MetaOp::Put(k, v) => batch.insert(k, v),
                MetaOp::Delete(k) => batch.remove(k),
                MetaOp::DeletePrefix(p) => {
                    for kv in self.db.scan_prefix(&p) {
                        let (k, _) = kv.map_err(|e| MetaError::Io(e.to_string()))?;
                        batch.remove(k);
                    }
                }
            }
        }
        self.db.apply_batch(batch).map_err(|e| MetaError::Io(e.to_string()))?;
        self.db.flush().map_err(|e| MetaError::Io(e.to_string()))?;
        Ok(())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<KvPairs, MetaError> {
        self.db
            .scan_prefix(prefix)
            .map(|kv| {
                kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(|e| MetaError::Io(e.to_string()))
            })
            .collect()
    }
}

/// One suite for every [`MetaStore`]; call it with an empty store.
pub mod conformance {
    use super::*;

    pub fn run<M: MetaStore>(m: &M) {
        assert_eq!(m.get(b"missing").unwrap(), None);
        m.write(vec![
            MetaOp::Put(b"a/1".to_vec(), b"x".to_vec()),
            MetaOp::Put(b"a/2".to_vec(), b"y".to_vec()),
        ])
        .unwrap();
        assert_eq!(m.get(b"a/1").unwrap().as_deref(), Some(&b"x"[..]));
        // Later ops in a batch see earlier ones.
        m.write(vec![
            MetaOp::Put(b"b".to_vec(), b"1".to_vec()),
            MetaOp::Put(b"b".to_vec(), b"2".to_vec()),
        ])
        .unwrap();
        assert_eq!(m.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
        m.write(vec![
            MetaOp::Put(b"a/3".to_vec(), b"z".to_vec()),
            MetaOp::Put(b"a0".to_vec(), b"not a/".to_vec()),
        ])
        .unwrap();
        let keys: Vec<_> = m.scan_prefix(b"a/").unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            vec![b"a/1".to_vec(), b"a/2".to_vec(), b"a/3".to_vec()],
            "prefix scan in key order"
        );
        m.write(vec![
            MetaOp::DeletePrefix(b"a/".to_vec()),
            MetaOp::Put(b"a/9".to_vec(), b"new".to_vec()),
        ])
        .unwrap();
        assert_eq!(m.scan_prefix(b"a/").unwrap(), vec![(b"a/9".to_vec(), b"new".to_vec())]);
        assert!(m.get(b"a0").unwrap().is_some(), "a prefix delete keeps other keys");
        m.write(vec![MetaOp::Delete(b"b".to_vec()), MetaOp::Delete(b"never".to_vec())]).unwrap();
        assert_eq!(m.get(b"b").unwrap(), None);
        assert!(m.scan_prefix(b"zzz").unwrap().is_empty());
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn mem_meta_conforms() {
            run(&MemMeta::new());
        }

        #[test]
        fn sled_meta_conforms_and_survives_reopen() {
            let dir = tempfile::tempdir().unwrap();
            {
                let m = SledMeta::open(dir.path()).unwrap();
                run(&m);
            }
            let m = SledMeta::open(dir.path()).unwrap();
            assert_eq!(m.get(b"a/9").unwrap().as_deref(), Some(&b"new"[..]));
        }
    }
}
