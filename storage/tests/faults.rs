//! Faults injected under the store through its `FaultInjector` seam: a
//! failing `fsync` poisons the store (never retried and reported as done),
//! a full disk fails the writes of the batch it hits without damaging
//! anything acknowledged, and writing resumes once there is room.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use duokv_storage::{Error, FaultInjector, Options, Store, Sync};

/// Fails syncs and/or appends while the switches are on; counts calls.
#[derive(Debug, Default)]
struct Switches {
    fail_syncs: AtomicBool,
    disk_full: AtomicBool,
    syncs: AtomicUsize,
}

impl FaultInjector for Switches {
    fn before_append(&self, _file: &Path, _len: usize) -> io::Result<()> {
        if self.disk_full.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        Ok(())
    }

    fn before_sync(&self, _file: &Path) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        if self.fail_syncs.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fsync failure"));
        }
        Ok(())
    }
}

fn open(dir: &Path, sync: Sync, faults: &Arc<Switches>) -> Store {
    Store::open(
        dir,
        Options::default().sync(sync).fault_injector(faults.clone()),
    )
    .expect("open")
}

/// The seqs in the log, in order.
fn log_seqs(store: &Store) -> Vec<u64> {
    store
        .records_since(0)
        .expect("records")
        .map(|r| r.expect("record").seq)
        .collect()
}

/// A failed fsync fails its write, poisons the store for every later write
/// (no retry that could report lost data as durable), leaves reads of
/// acknowledged data working, and a reopen finds every acknowledged write.
#[test]
fn a_failed_fsync_poisons_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Switches::default());
    let store = open(dir.path(), Sync::Always, &faults);
    for i in 0..20 {
        store.put(format!("k{i}"), format!("v{i}")).unwrap();
    }
    faults.fail_syncs.store(true, Ordering::SeqCst);
    let failed = store.put("lost?", "x");
    assert!(
        matches!(&failed, Err(Error::Io { action: "sync", .. })),
        "{failed:?}"
    );
    faults.fail_syncs.store(false, Ordering::SeqCst);
    let syncs_before = faults.syncs.load(Ordering::SeqCst);
    for attempt in 0..3 {
        let refused = store.put(format!("after{attempt}"), "y");
        assert!(matches!(refused, Err(Error::Poisoned)), "{refused:?}");
    }
    assert_eq!(
        faults.syncs.load(Ordering::SeqCst),
        syncs_before,
        "a poisoned store must not sync again"
    );
    assert_eq!(store.get("k7").unwrap(), Some(b"v7".to_vec()));
    assert_eq!(
        store.get("lost?").unwrap(),
        None,
        "never visible: never durable"
    );
    drop(store);

    let store = open(dir.path(), Sync::Always, &faults);
    for i in 0..20 {
        assert_eq!(
            store.get(format!("k{i}")).unwrap(),
            Some(format!("v{i}").into_bytes())
        );
    }
    // The failed write may or may not have reached the disk; either way the
    // log is whole and takes new writes.
    let next = store.put("again", "z").unwrap();
    assert_eq!(log_seqs(&store), (1..=next).collect::<Vec<_>>());
}

/// A full disk fails the write with an I/O error that says so, does not
/// poison the store, gives the sequence number back, damages nothing
/// acknowledged, and writes work again once there is room; the log reopens
/// cleanly. Under each sync policy.
#[test]
fn a_full_disk_fails_writes_until_there_is_room() {
    for sync in [Sync::Always, Sync::Never] {
        let dir = tempfile::tempdir().unwrap();
        let faults = Arc::new(Switches::default());
        let store = open(dir.path(), sync, &faults);
        let mut model = BTreeMap::new();
        for i in 0..10u32 {
            store.put(format!("k{i}"), i.to_be_bytes()).unwrap();
            model.insert(format!("k{i}"), i.to_be_bytes().to_vec());
        }
        faults.disk_full.store(true, Ordering::SeqCst);
        for _ in 0..3 {
            let failed = store.put("k1", "overwrite that must not land");
            match failed {
                Err(Error::Io { source, .. }) => {
                    assert_eq!(source.kind(), io::ErrorKind::StorageFull)
                }
                other => panic!("{sync:?}: expected a full-disk error, got {other:?}"),
            }
        }
        assert_eq!(store.last_seq(), 10, "{sync:?}: failed writes take no seq");
        assert_eq!(store.get("k1").unwrap(), Some(1u32.to_be_bytes().to_vec()));
        faults.disk_full.store(false, Ordering::SeqCst);
        assert_eq!(store.put("k1", "after").unwrap(), 11, "{sync:?}");
        model.insert("k1".into(), b"after".to_vec());
        drop(store);

        let store = open(dir.path(), sync, &faults);
        assert_eq!(
            log_seqs(&store),
            (1..=11).collect::<Vec<_>>(),
            "{sync:?}: no gap, no stray record"
        );
        for (key, value) in &model {
            assert_eq!(
                store.get(key).unwrap().as_ref(),
                Some(value),
                "{sync:?}: {key}"
            );
        }
    }
}

/// Under group commit, a full disk fails every writer of the batch it hits
/// and none of the writes after it; the log has no gap.
#[test]
fn a_full_disk_fails_one_batch_of_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Switches::default());
    let store = Arc::new(open(dir.path(), Sync::Always, &faults));
    let writers = 8;
    let start = Arc::new(Barrier::new(writers + 1));
    faults.disk_full.store(true, Ordering::SeqCst);
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (store, start) = (store.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                store.put(format!("w{w}"), "v").is_err()
            })
        })
        .collect();
    start.wait();
    let failures = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|failed| *failed)
        .count();
    assert_eq!(failures, writers, "every write against a full disk fails");
    faults.disk_full.store(false, Ordering::SeqCst);
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || store.put(format!("w{w}"), "v").unwrap())
        })
        .collect();
    let mut seqs: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=writers as u64).collect::<Vec<_>>());
    assert_eq!(log_seqs(&store), seqs);
}

/// Records every metadata sync, in order, by path.
#[derive(Debug, Default)]
struct MetadataSyncs(std::sync::Mutex<Vec<std::path::PathBuf>>);

impl FaultInjector for MetadataSyncs {
    fn before_metadata_sync(&self, path: &Path) -> io::Result<()> {
        self.0.lock().unwrap().push(path.to_path_buf());
        Ok(())
    }
}

impl MetadataSyncs {
    fn take(&self) -> Vec<std::path::PathBuf> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// The files that say what a store is (`HISTORY`, the header of a new
/// segment) are written to a temporary file, synced, renamed and the
/// directory synced before they are used, under every sync policy, even
/// `Sync::Never`: a power cut soon after creating a store must never leave
/// a `HISTORY` with no bytes or a segment without its header.
#[test]
fn files_that_identify_the_store_are_synced_under_every_policy() {
    for sync in [Sync::Never, Sync::Always] {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("store");
        let faults = Arc::new(MetadataSyncs::default());
        let options = Options::default()
            .sync(sync)
            .segment_size(256)
            .compaction(None)
            .fault_injector(faults.clone());
        let store = Store::open(&dir, options.clone()).unwrap();
        let synced = faults.take();
        let first = dir.join("00000000000000000002.seg.tmp");
        let history = dir.join("HISTORY.tmp");
        let position = |path: &Path| synced.iter().position(|p| p == path);
        assert_eq!(
            position(parent.path()),
            Some(0),
            "{sync:?}: a new store's directory entry is synced first: {synced:?}"
        );
        let (Some(segment_at), Some(history_at)) = (position(&first), position(&history)) else {
            panic!("{sync:?}: the first segment's header and HISTORY must be synced: {synced:?}");
        };
        // Each file sync is followed by a sync of the directory (after the
        // rename).
        for at in [segment_at, history_at] {
            assert_eq!(synced.get(at + 1), Some(&dir), "{sync:?}: {synced:?}");
        }
        assert!(!dir.join("HISTORY.tmp").exists());
        assert!(!first.exists());
        let id = store.history_id();

        // Rolling to a new segment syncs its header and the directory too.
        for i in 0..20 {
            store
                .put(format!("key{i}"), "a value of some bytes")
                .unwrap();
        }
        let synced = faults.take();
        let second = dir.join("00000000000000000004.seg.tmp");
        let at = synced
            .iter()
            .position(|p| *p == second)
            .unwrap_or_else(|| panic!("{sync:?}: the rolled-to segment: {synced:?}"));
        assert_eq!(synced.get(at + 1), Some(&dir), "{sync:?}: {synced:?}");

        // A new history (fork) is saved the same way.
        let forked = store.fork_history().unwrap();
        let synced = faults.take();
        assert_eq!(synced, vec![history.clone(), dir.clone()], "{sync:?}");
        drop(store);
        let store = Store::open(&dir, options).unwrap();
        assert_eq!(store.history_id(), forked.id);
        assert_ne!(forked.id, id);
        assert_eq!(store.last_seq(), 20);
    }
}
