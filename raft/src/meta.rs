//! The metadata store: Raft's vote, committed and purged ids, the state machine's applied
//! state, and the replicated metadata (topics, subscription groups, consumer offsets).
//!
//! A small key-value trait ([`MetaStore`]) with two backends: [`SledMeta`] (on disk, for real
//! nodes) and [`MemMeta`] (in memory, for the simulation: sled starts OS threads, which madsim
//! forbids). Both pass [`conformance::run`]. A `write` is atomic and durable when it returns; a
//! `write_lazy` is atomic and visible at once, and durable with the next `write` or `sync`
//! (writes reach the disk in order: a crash keeps a prefix of the lazy ones). What is rebuilt
//! from the log at start (the committed and applied ids, and what apply wrote with them) is
//! written lazily, so a send waits for no metadata flush. The trait knows nothing of sled or
//! files (STYLE.md rule 4).

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
    /// Applies `ops` in order, all or nothing, durably (earlier lazy writes become durable
    /// first).
    fn write(&self, ops: Vec<MetaOp>) -> Result<(), MetaError>;
    /// Applies `ops` in order, all or nothing, visibly at once; durable with the next
    /// [`MetaStore::write`] or [`MetaStore::sync`]. A crash before then keeps a prefix of the
    /// lazy writes.
    fn write_lazy(&self, ops: Vec<MetaOp>) -> Result<(), MetaError>;
    /// Makes every lazy write durable. Blocking I/O: call it off the async workers.
    fn sync(&self) -> Result<(), MetaError>;
    /// Every key starting with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<KvPairs, MetaError>;
}

/// In-memory metadata, shared by clones (so a simulated node's "disk" survives its restart).
/// Lazy writes are kept apart until a durable write or a sync, so that
/// [`MemMeta::power_loss`] can drop them as a power loss drops what sled had not flushed.
#[derive(Debug, Clone, Default)]
pub struct MemMeta {
    inner: Arc<Mutex<MemInner>>,
}

#[derive(Debug, Default)]
struct MemInner {
    /// What readers see: durable state plus every lazy batch.
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    /// What survives a power loss.
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Lazy batches not yet durable, oldest first.
    pending: Vec<Vec<MetaOp>>,
}

impl MemMeta {
    pub fn new() -> Self {
        Self::default()
    }

    /// A power loss: keeps the durable state and the first `keep(n)` of the `n` lazy batches
    /// not yet durable (sled keeps a prefix), drops the rest.
    pub fn power_loss(&self, keep: impl FnOnce(usize) -> usize) {
        let mut inner = lock(&self.inner);
        let pending = std::mem::take(&mut inner.pending);
        let kept = keep(pending.len()).min(pending.len());
        for batch in pending.into_iter().take(kept) {
            apply_ops(&mut inner.durable, batch);
        }
        inner.map = inner.durable.clone();
    }

    /// Lazy batches not yet durable.
    pub fn pending_batches(&self) -> usize {
        lock(&self.inner).pending.len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn apply_ops(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, ops: Vec<MetaOp>) {
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
}

impl MemInner {
    fn make_durable(&mut self) {
        for batch in std::mem::take(&mut self.pending) {
            apply_ops(&mut self.durable, batch);
        }
    }
}

impl MetaStore for MemMeta {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError> {
        Ok(lock(&self.inner).map.get(key).cloned())
    }

    fn write(&self, ops: Vec<MetaOp>) -> Result<(), MetaError> {
        let mut inner = lock(&self.inner);
        inner.make_durable();
        apply_ops(&mut inner.map, ops.clone());
        apply_ops(&mut inner.durable, ops);
        Ok(())
    }

    fn write_lazy(&self, ops: Vec<MetaOp>) -> Result<(), MetaError> {
        let mut inner = lock(&self.inner);
        apply_ops(&mut inner.map, ops.clone());
        inner.pending.push(ops);
        Ok(())
    }

    fn sync(&self) -> Result<(), MetaError> {
        lock(&self.inner).make_durable();
        Ok(())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<KvPairs, MetaError> {
        Ok(lock(&self.inner)
            .map
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// Metadata in sled: `write` flushes, `write_lazy` does not (sled's log keeps the order).
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
        self.write_lazy(ops)?;
        self.sync()
    }

    fn write_lazy(&self, ops: Vec<MetaOp>) -> Result<(), MetaError> {
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
        self.db.apply_batch(batch).map_err(|e| MetaError::Io(e.to_string()))
    }

    fn sync(&self) -> Result<(), MetaError> {
        self.db.flush().map(|_| ()).map_err(|e| MetaError::Io(e.to_string()))
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
        // Lazy writes are visible at once, in order with the durable ones.
        m.write_lazy(vec![MetaOp::Put(b"l/1".to_vec(), b"1".to_vec())]).unwrap();
        m.write_lazy(vec![MetaOp::Put(b"l/1".to_vec(), b"2".to_vec())]).unwrap();
        assert_eq!(m.get(b"l/1").unwrap().as_deref(), Some(&b"2"[..]));
        m.write(vec![MetaOp::Put(b"l/2".to_vec(), b"d".to_vec())]).unwrap();
        m.write_lazy(vec![MetaOp::DeletePrefix(b"l/".to_vec())]).unwrap();
        assert!(m.scan_prefix(b"l/").unwrap().is_empty());
        m.sync().unwrap();
        assert!(m.scan_prefix(b"l/").unwrap().is_empty());
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn mem_meta_conforms() {
            run(&MemMeta::new());
        }

        /// A power loss keeps durable writes and a prefix of the lazy ones, as sled does.
        #[test]
        fn mem_meta_loses_a_suffix_of_its_lazy_writes_on_power_loss() {
            let m = MemMeta::new();
            m.write(vec![MetaOp::Put(b"d".to_vec(), b"durable".to_vec())]).unwrap();
            for i in 0..4u8 {
                m.write_lazy(vec![MetaOp::Put(b"n".to_vec(), vec![i])]).unwrap();
            }
            assert_eq!(m.pending_batches(), 4);
            m.power_loss(|n| n / 2);
            assert_eq!(m.get(b"n").unwrap(), Some(vec![1]), "the first two lazy writes");
            assert_eq!(m.get(b"d").unwrap().as_deref(), Some(&b"durable"[..]));
            m.write_lazy(vec![MetaOp::Put(b"n".to_vec(), vec![9])]).unwrap();
            m.sync().unwrap();
            m.power_loss(|_| 0);
            assert_eq!(m.get(b"n").unwrap(), Some(vec![9]), "synced");
            m.write_lazy(vec![MetaOp::Put(b"x".to_vec(), vec![1])]).unwrap();
            m.write(vec![MetaOp::Put(b"y".to_vec(), vec![1])]).unwrap();
            m.power_loss(|_| 0);
            assert!(
                m.get(b"x").unwrap().is_some(),
                "a durable write makes earlier lazy ones durable"
            );
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
