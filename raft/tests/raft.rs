//! Raft layer tests, one module per theme.

mod storage_suite {
    //! openraft's own storage test suite against the CommitLog-backed log store and the state
    //! machine: once on the simulated disk with in-memory metadata (what the simulation uses),
    //! once on real files with sled (what a broker uses).
    use std::sync::{Arc, Mutex};

    use openraft::testing::{StoreBuilder, Suite};
    use openraft::StorageError;
    use rocketraft_raft::{LogStore, MemMeta, SledMeta, StateMachine, TypeConfig};
    use rocketraft_store::io::mmap::MmapStorage;
    use rocketraft_store::io::sim::SimStorage;
    use rocketraft_store::io::Storage;
    use rocketraft_store::{CommitLog, CommitLogConfig, DispatchConfig, Dispatcher, FlushMode};

    fn config() -> CommitLogConfig {
        CommitLogConfig {
            segment_size_bytes: 64 * 1024,
            checkpoint_every_entries: 4,
            ..Default::default()
        }
    }

    type Stores<S, M> = (LogStore<S, M>, StateMachine<S, M>);

    fn build<S: Storage + Clone, M: rocketraft_raft::MetaStore>(
        storage: S,
        meta: M,
    ) -> Stores<S, M> {
        let meta = Arc::new(meta);
        let (log, _) = CommitLog::open(storage.clone(), config()).unwrap();
        let dispatcher = Dispatcher::open(storage, DispatchConfig::default(), &log).unwrap();
        let log = Arc::new(Mutex::new(log));
        let ls = LogStore::new(log.clone(), meta.clone(), FlushMode::Sync);
        let sm = StateMachine::new(log, Arc::new(Mutex::new(dispatcher)), meta, None).unwrap();
        (ls, sm)
    }

    struct Sim;

    impl
        StoreBuilder<
            TypeConfig,
            LogStore<SimStorage, MemMeta>,
            StateMachine<SimStorage, MemMeta>,
            (),
        > for Sim
    {
        async fn build(
            &self,
        ) -> Result<
            ((), LogStore<SimStorage, MemMeta>, StateMachine<SimStorage, MemMeta>),
            StorageError<u64>,
        > {
            let (ls, sm) = build(SimStorage::new(), MemMeta::new());
            Ok(((), ls, sm))
        }
    }

    struct Real;

    impl
        StoreBuilder<
            TypeConfig,
            LogStore<MmapStorage, SledMeta>,
            StateMachine<MmapStorage, SledMeta>,
            tempfile::TempDir,
        > for Real
    {
        async fn build(
            &self,
        ) -> Result<
            (
                tempfile::TempDir,
                LogStore<MmapStorage, SledMeta>,
                StateMachine<MmapStorage, SledMeta>,
            ),
            StorageError<u64>,
        > {
            let dir = tempfile::tempdir().unwrap();
            let storage = MmapStorage::new(dir.path().join("data")).unwrap();
            let meta = SledMeta::open(dir.path().join("meta")).unwrap();
            let (ls, sm) = build(storage, meta);
            Ok((dir, ls, sm))
        }
    }

    #[test]
    fn openraft_suite_on_the_simulated_disk() {
        Suite::test_all(Sim).unwrap();
    }

    #[test]
    fn openraft_suite_on_real_files_and_sled() {
        Suite::test_all(Real).unwrap();
    }
}
