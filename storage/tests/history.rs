//! What a master's replication rests on: the write observer (every record,
//! in order, once written and before its sync; never a record whose write
//! failed) and histories (forks, ancestors, which logs may be continued).

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use duokv_storage::{
    Ancestor, Error, FaultInjector, History, ObservePoint, Op, Options, Record, Store, Sync,
};

/// Records the newest seq the observer had seen at each sync; fails
/// appends while `disk_full` is on.
#[derive(Debug, Default)]
struct Watch {
    observed_max: AtomicU64,
    seen_at_syncs: Mutex<Vec<u64>>,
    disk_full: AtomicBool,
}

impl FaultInjector for Watch {
    fn before_append(&self, _file: &Path, _len: usize) -> io::Result<()> {
        if self.disk_full.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        Ok(())
    }

    fn before_sync(&self, _file: &Path) -> io::Result<()> {
        let seen = self.observed_max.load(Ordering::SeqCst);
        self.seen_at_syncs.lock().unwrap().push(seen);
        Ok(())
    }
}

/// A store whose observer (at `at`) keeps every record it is given,
/// checking that each run follows the last without a gap.
fn observed_store_at(
    dir: &Path,
    sync: Sync,
    at: ObservePoint,
) -> (Store, Arc<Watch>, Arc<Mutex<Vec<Record>>>) {
    let watch = Arc::new(Watch::default());
    let store = Store::open(
        dir,
        Options::default().sync(sync).fault_injector(watch.clone()),
    )
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::<Record>::new()));
    let (observer_seen, observer_watch) = (seen.clone(), watch.clone());
    assert!(store.observe_writes(
        at,
        Box::new(move |records| {
            let mut seen = observer_seen.lock().unwrap();
            for record in records {
                let expected = seen.last().map_or(1, |r| r.seq + 1);
                assert_eq!(record.seq, expected, "runs arrive in order, without gaps");
                observer_watch
                    .observed_max
                    .store(record.seq, Ordering::SeqCst);
                seen.push(record);
            }
        })
    ));
    assert!(
        !store.observe_writes(ObservePoint::Durable, Box::new(|_| {})),
        "one observer per store"
    );
    (store, watch, seen)
}

fn observed_store(dir: &Path, sync: Sync) -> (Store, Arc<Watch>, Arc<Mutex<Vec<Record>>>) {
    observed_store_at(dir, sync, ObservePoint::Written)
}

fn log(store: &Store) -> Vec<Record> {
    store
        .records_since(0)
        .unwrap()
        .map(|record| record.unwrap())
        .collect()
}

/// One writer: each write's record reached the observer before the sync
/// that made it durable; the observer saw exactly the log.
#[test]
fn a_write_is_observed_before_its_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (store, watch, seen) = observed_store(dir.path(), Sync::Always);
    for i in 0..50u32 {
        let seq = store.put(format!("k{}", i % 7), i.to_be_bytes()).unwrap();
        let at_last_sync = *watch.seen_at_syncs.lock().unwrap().last().unwrap();
        assert!(
            at_last_sync >= seq,
            "write {seq} was synced before it was observed ({at_last_sync})"
        );
    }
    store.delete("k3").unwrap();
    assert_eq!(*seen.lock().unwrap(), log(&store));
    assert_eq!(
        seen.lock().unwrap().last().unwrap().op,
        Op::Delete {
            key: b"k3".to_vec()
        }
    );
}

/// Observed at `Durable`, a write reaches the observer only after the sync
/// that makes it durable: no sync ever saw its seq observed already.
#[test]
fn a_durable_observer_sees_a_write_after_its_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (store, watch, seen) = observed_store_at(dir.path(), Sync::Always, ObservePoint::Durable);
    for i in 0..50u32 {
        let seq = store.put(format!("k{}", i % 7), i.to_be_bytes()).unwrap();
        let at_last_sync = *watch.seen_at_syncs.lock().unwrap().last().unwrap();
        assert!(
            at_last_sync < seq,
            "write {seq} was observed before its sync ({at_last_sync})"
        );
        assert_eq!(
            seen.lock().unwrap().last().unwrap().seq,
            seq,
            "observed by now"
        );
    }
    assert_eq!(*seen.lock().unwrap(), log(&store));
}

/// Many writers, blocking and `write_then`, under every policy: the
/// observer sees every record once, in order, the same as the log.
#[test]
fn concurrent_writes_are_all_observed_in_order() {
    for sync in [
        Sync::Always,
        Sync::Never,
        Sync::Every(std::time::Duration::from_millis(5)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (store, _watch, seen) = observed_store(dir.path(), sync);
        let store = Arc::new(store);
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..200u32 {
                        let key = format!("t{t}-{}", i % 10);
                        if i % 2 == 0 {
                            store.put(&key, i.to_be_bytes()).unwrap();
                        } else {
                            let (done, wait) = crossbeam_channel::bounded(1);
                            store.write_then(
                                duokv_storage::WriteOp::Put {
                                    key: key.as_bytes(),
                                    value: b"then",
                                },
                                move |outcome| done.send(outcome).unwrap(),
                            );
                            wait.recv().unwrap().unwrap();
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(seen.lock().unwrap().len(), 800, "{sync:?}");
        assert_eq!(*seen.lock().unwrap(), log(&store), "{sync:?}");
    }
}

/// A write that fails (a full disk) is never observed; its seq is handed
/// out again, and the write that gets it is observed once.
#[test]
fn a_failed_write_is_never_observed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, watch, seen) = observed_store(dir.path(), Sync::Always);
    assert_eq!(store.put("a", "1").unwrap(), 1);
    watch.disk_full.store(true, Ordering::SeqCst);
    assert!(store.put("b", "lost").is_err());
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the failed write was observed"
    );
    watch.disk_full.store(false, Ordering::SeqCst);
    assert_eq!(store.put("c", "3").unwrap(), 2);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1],
        Record {
            seq: 2,
            op: Op::Put {
                key: b"c".to_vec(),
                value: b"3".to_vec()
            }
        }
    );
}

/// A fork makes the old ID an ancestor that ended at the last seq, draws a
/// new one, and survives a reopen; writes go on under the new ID.
#[test]
fn forks_are_kept_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let first = store.history();
    assert!(first.ancestors.is_empty());
    store.put("a", "1").unwrap();
    store.put("b", "2").unwrap();
    let second = store.fork_history().unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(
        second.ancestors,
        vec![Ancestor {
            id: first.id,
            last_seq: 2
        }]
    );
    assert_eq!(store.history_id(), second.id);
    store.put("c", "3").unwrap();
    drop(store);
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.history(), second);
    let third = store.fork_history().unwrap();
    assert_eq!(third.ancestors.len(), 2);
    assert_eq!(
        third.ancestors[0],
        Ancestor {
            id: second.id,
            last_seq: 3
        }
    );
    assert_eq!(third.ancestors[1], second.ancestors[0]);
    assert_eq!(store.put("d", "4").unwrap(), 4);
}

/// `adopt_history` takes a history only when this log is a prefix of it.
#[test]
fn a_history_is_adopted_only_by_a_prefix_of_it() {
    let master_dir = tempfile::tempdir().unwrap();
    let master = Store::open(master_dir.path(), Options::default()).unwrap();
    let old = master.history();
    for i in 0..5u32 {
        master.put(format!("k{i}"), i.to_be_bytes()).unwrap();
    }
    let forked = master.fork_history().unwrap();

    // An empty store takes any history.
    let empty_dir = tempfile::tempdir().unwrap();
    let empty = Store::open(empty_dir.path(), Options::default()).unwrap();
    empty.adopt_history(&forked).unwrap();
    assert_eq!(empty.history(), forked);

    // A store of the old history up to the fork point continues it.
    let prefix_dir = tempfile::tempdir().unwrap();
    let prefix = Store::open(prefix_dir.path(), Options::default()).unwrap();
    prefix.adopt_history(&old).unwrap();
    for record in log(&master).into_iter().take(5) {
        prefix.apply(record.seq, &record.op).unwrap();
    }
    prefix.adopt_history(&forked).unwrap();
    assert_eq!(prefix.history(), forked);
    drop(prefix);
    let prefix = Store::open(prefix_dir.path(), Options::default()).unwrap();
    assert_eq!(prefix.history(), forked, "kept across a reopen");

    // One that went past the fork holds writes the master may not have.
    let ahead_dir = tempfile::tempdir().unwrap();
    let ahead = Store::open(ahead_dir.path(), Options::default()).unwrap();
    ahead.adopt_history(&old).unwrap();
    for record in log(&master) {
        ahead.apply(record.seq, &record.op).unwrap();
    }
    ahead
        .apply(
            6,
            &Op::Put {
                key: b"lost".to_vec(),
                value: b"x".to_vec(),
            },
        )
        .unwrap();
    match ahead.adopt_history(&forked) {
        Err(Error::OtherHistory {
            own,
            last_seq: 6,
            theirs,
        }) => {
            assert_eq!((own, theirs), (old.id, forked.id));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ahead.history(), old, "a refusal changes nothing");

    // A store of an unrelated history is refused too.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Store::open(other_dir.path(), Options::default()).unwrap();
    other.put("x", "1").unwrap();
    assert!(matches!(
        other.adopt_history(&forked),
        Err(Error::OtherHistory { .. })
    ));
    assert!(matches!(
        other.adopt_history(&History::new(other.history_id())),
        Ok(())
    ));
}
