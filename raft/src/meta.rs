//! The metadata store: Raft's vote, committed and purged ids, the state machine's applied
//! state, and the replicated metadata (topics, subscription groups, consumer offsets).
//!
//! A small key-value trait ([`MetaStore`]) with two backends: [`SledMeta`] (on disk, for real
//! nodes) and [`MemMeta`] (in memory, for the simulation: sled starts OS threads, which madsim
//! forbids). Both pass [`conformance::run`]. Three kinds of write:
//! - `write`: atomic, and durable when it returns (the vote, purges, snapshots);
//! - `write_lazy`: visible at once, durable with the next `write` or `sync`; writes reach the
//!   disk in order, so a crash keeps a prefix of the lazy operations (what apply changes);
//! - `put_deferred`: a position of which only the newest value matters (the committed and
//!   applied ids): kept in memory, and written by the next `sync` or `write` after every lazy
//!   operation made before it, so a durable position never runs ahead of what it covers.
//!
//! A send's round writes nothing here at all (its entries change no metadata; the positions
//! are deferred); the replica syncs once a second, and everything newer is rebuilt from the log
//! at start. The trait knows nothing of sled or files (STYLE.md rule 4).

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
    /// The newest value: deferred and lazy writes included.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError>;
    /// Applies `ops` in order, all or nothing, durably. Earlier lazy and deferred writes become
    /// durable first (`ops` win over a deferred value of the same key).
    fn write(&self, ops: Vec<MetaOp>) -> Result<(), MetaError>;
    /// Applies `ops` in order, visibly at once; durable with the next [`MetaStore::write`] or
    /// [`MetaStore::sync`]. Not atomic: a crash before then keeps a prefix of the lazy
    /// operations, in the order they were made.
    fn write_lazy(&self, ops: Vec<MetaOp>) -> Result<(), MetaError>;
    /// Sets `key` to `value` where only the newest value matters: visible at once, written to
    /// the store by the next [`MetaStore::sync`] or [`MetaStore::write`] (after every lazy
    /// operation made before that call), lost in a crash before then. No I/O of its own.
    fn put_deferred(&self, key: &[u8], value: Vec<u8>) -> Result<(), MetaError>;
    /// Makes every lazy and deferred write durable. Blocking I/O: call it off the async
    /// workers.
    fn sync(&self) -> Result<(), MetaError>;
    /// Every key starting with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<KvPairs, MetaError>;
}

/// In-memory metadata, shared by clones (so a simulated node's "disk" survives its restart).
/// Lazy and deferred writes are kept apart until a durable write or a sync, so that
/// [`MemMeta::power_loss`] can drop them as a power loss drops what sled had not flushed.
#[derive(Debug, Clone, Default)]
pub struct MemMeta {
    inner: Arc<Mutex<MemInner>>,
}

#[derive(Debug, Default)]
struct MemInner {
    /// What readers see: durable state plus every lazy and deferred write.
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    /// What survives a power loss.
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Lazy operations not yet durable, oldest first.
    pending: Vec<MetaOp>,
    /// Deferred values not yet written.
    deferred: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemMeta {
    pub fn new() -> Self {
        Self::default()
    }

    /// A power loss: keeps the durable state and the first `keep(n)` of the `n` lazy
    /// operations not yet durable (sled keeps a prefix), drops the rest and every deferred
    /// value not yet written.
    pub fn power_loss(&self, keep: impl FnOnce(usize) -> usize) {
        let mut inner = lock(&self.inner);
        let pending = std::mem::take(&mut inner.pending);
        let kept = keep(pending.len()).min(pending.len());
        apply_ops(&mut inner.durable, pending.into_iter().take(kept));
        inner.deferred.clear();
        inner.map = inner.durable.clone();
    }

    /// Deletes everything, durable or not: a machine whose data directory was lost.
    pub fn wipe(&self) {
        *lock(&self.inner) = MemInner::default();
    }

    /// Lazy operations not yet durable.
    pub fn pending_ops(&self) -> usize {
        lock(&self.inner).pending.len()
    }

    /// Lazy writes not yet durable of keys that start with `prefix`.
    pub fn pending_puts(&self, prefix: &[u8]) -> usize {
        let inner = lock(&self.inner);
        inner
            .pending
            .iter()
            .filter(|op| matches!(op, MetaOp::Put(k, _) if k.starts_with(prefix)))
            .count()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn apply_ops(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, ops: impl IntoIterator<Item = MetaOp>) {
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
    /// The lazy operations, then the deferred values (written after them, as sled does).
    fn make_durable(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        apply_ops(&mut self.durable, pending);
        let deferred = std::mem::take(&mut self.deferred);
        self.durable.extend(deferred);
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
        inner.pending.extend(ops);
        Ok(())
    }

    fn put_deferred(&self, key: &[u8], value: Vec<u8>) -> Result<(), MetaError> {
        let mut inner = lock(&self.inner);
        inner.map.insert(key.to_vec(), value.clone());
        inner.deferred.insert(key.to_vec(), value);
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

/// Metadata in sled: `write` is one atomic batch and a flush; `write_lazy` inserts one key at a
/// time and flushes nothing (sled's log keeps the order); deferred values wait in memory for
/// the next sync.
///
/// Lazy writes are not sled batches on purpose: every batch seals sled's I/O buffer and
/// writes it out on one of its I/O threads, which measured at six buffer writes (`pwrite` +
/// `sync_file_range`) and ~40 % of a dev cluster's CPU per message for one synchronous
/// sender, while single inserts only fill the buffer.
#[derive(Debug, Clone)]
pub struct SledMeta {
    db: sled::Db,
    deferred: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
}

impl SledMeta {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: impl AsRef<std::path::Path>) -> Result<Self, MetaError> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .open()
            .map_err(|e| MetaError::Io(e.to_string()))?;
        Ok(SledMeta { db, deferred: Arc::default() })
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), MetaError> {
        self.db.insert(key, value).map(|_| ()).map_err(|e| MetaError::Io(e.to_string()))
    }

    /// Writes the deferred values into sled (not durably). The caller holds their lock.
    fn write_deferred(&self, deferred: &mut BTreeMap<Vec<u8>, Vec<u8>>) -> Result<(), MetaError> {
        while let Some((k, v)) = deferred.pop_first() {
            if let Err(e) = self.insert(&k, &v) {
                deferred.insert(k, v);
                return Err(e);
            }
        }
        Ok(())
    }
}

impl MetaStore for SledMeta {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError> {
        if let Some(v) = lock(&self.deferred).get(key) {
            return Ok(Some(v.clone()));
        }
        self.db.get(key).map(|v| v.map(|v| v.to_vec())).map_err(|e| MetaError::Io(e.to_string()))
    }

    fn write(&self, ops: Vec<MetaOp>) -> Result<(), MetaError> {
        {
            let mut deferred = lock(&self.deferred);
            self.write_deferred(&mut deferred)?;
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
        }
        self.db.flush().map(|_| ()).map_err(|e| MetaError::Io(e.to_string()))
    }

    fn write_lazy(&self, ops: Vec<MetaOp>) -> Result<(), MetaError> {
        let io = |e: sled::Error| MetaError::Io(e.to_string());
        for op in ops {
            match op {
                MetaOp::Put(k, v) => self.insert(&k, &v)?,
                MetaOp::Delete(k) => {
                    self.db.remove(k).map_err(io)?;
                }
                MetaOp::DeletePrefix(p) => {
                    for kv in self.db.scan_prefix(&p) {
                        let (k, _) = kv.map_err(io)?;
                        self.db.remove(k).map_err(io)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn put_deferred(&self, key: &[u8], value: Vec<u8>) -> Result<(), MetaError> {
        lock(&self.deferred).insert(key.to_vec(), value);
        Ok(())
    }

    fn sync(&self) -> Result<(), MetaError> {
        // The lock is held while the values go into sled (memory only), not for the flush.
        self.write_deferred(&mut lock(&self.deferred))?;
        self.db.flush().map(|_| ()).map_err(|e| MetaError::Io(e.to_string()))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<KvPairs, MetaError> {
        let deferred: KvPairs = lock(&self.deferred)
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut found: BTreeMap<Vec<u8>, Vec<u8>> = self
            .db
            .scan_prefix(prefix)
            .map(|kv| {
                kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(|e| MetaError::Io(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        found.extend(deferred);
        Ok(found.into_iter().collect())
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
        // Deferred values are visible at once, to gets and scans; a durable write of the same
        // key wins over them.
        m.put_deferred(b"p/applied", b"1".to_vec()).unwrap();
        m.put_deferred(b"p/applied", b"2".to_vec()).unwrap();
        m.put_deferred(b"p/committed", b"3".to_vec()).unwrap();
        assert_eq!(m.get(b"p/applied").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(
            m.scan_prefix(b"p/").unwrap(),
            vec![(b"p/applied".to_vec(), b"2".to_vec()), (b"p/committed".to_vec(), b"3".to_vec())]
        );
        m.write(vec![MetaOp::Put(b"p/committed".to_vec(), b"4".to_vec())]).unwrap();
        assert_eq!(m.get(b"p/committed").unwrap().as_deref(), Some(&b"4"[..]));
        assert_eq!(m.get(b"p/applied").unwrap().as_deref(), Some(&b"2"[..]));
        m.put_deferred(b"p/applied", b"5".to_vec()).unwrap();
        m.sync().unwrap();
        assert_eq!(m.get(b"p/applied").unwrap().as_deref(), Some(&b"5"[..]));
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn mem_meta_conforms() {
            run(&MemMeta::new());
        }

        /// A power loss keeps durable writes and a prefix of the lazy operations, as sled does,
        /// and no deferred value that was not synced.
        #[test]
        fn mem_meta_loses_a_suffix_of_its_lazy_writes_on_power_loss() {
            let m = MemMeta::new();
            m.write(vec![MetaOp::Put(b"d".to_vec(), b"durable".to_vec())]).unwrap();
            for i in 0..2u8 {
                m.write_lazy(vec![
                    MetaOp::Put(b"n".to_vec(), vec![2 * i]),
                    MetaOp::Put(b"n".to_vec(), vec![2 * i + 1]),
                ])
                .unwrap();
            }
            m.put_deferred(b"applied", vec![7]).unwrap();
            assert_eq!(m.pending_ops(), 4);
            m.power_loss(|n| n / 2 + 1);
            assert_eq!(m.get(b"n").unwrap(), Some(vec![2]), "a prefix of the operations");
            assert_eq!(m.get(b"applied").unwrap(), None, "a deferred value never synced");
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
            m.put_deferred(b"applied", vec![8]).unwrap();
            m.write(vec![MetaOp::Put(b"z".to_vec(), vec![1])]).unwrap();
            m.power_loss(|_| 0);
            assert_eq!(m.get(b"applied").unwrap(), Some(vec![8]), "and deferred ones");
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
            assert_eq!(m.get(b"p/applied").unwrap().as_deref(), Some(&b"5"[..]));
            m.put_deferred(b"p/applied", b"6".to_vec()).unwrap();
            drop(m);
            let m = SledMeta::open(dir.path()).unwrap();
            assert_eq!(
                m.get(b"p/applied").unwrap().as_deref(),
                Some(&b"5"[..]),
                "a deferred value is written by a sync, not before"
            );
        }
    }
}
