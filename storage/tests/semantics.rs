//! What a [`Store`] promises its callers, checked through the public API
//! only: the rules of create/update/delete/put, size limits, sequence
//! numbers, persistence across a clean close, atomicity between concurrent
//! writers, group commit, compaction alongside readers and writers, the
//! replication hooks (`apply`, `records_since`, `snapshot`) and `stats`.
//!
//! Every store here is closed cleanly; crashes, torn tails and damaged
//! files are the business of `recovery.rs`. No test sleeps to wait for
//! another thread: threads meet at barriers and joins, and the one
//! background event (automatic compaction) is polled with a deadline.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::path::Path;
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use duokv_storage::format::RECORD_HEADER_LEN;
use duokv_storage::{
    CompactionPolicy, Error, Field, MAX_KEY_LEN, MAX_VALUE_LEN, Op, Options, Record, SnapshotEntry,
    Store, Sync, WriteOp,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Key → (sequence number of the write that set it, value): what a store
/// should hold.
type Model = BTreeMap<Vec<u8>, (u64, Vec<u8>)>;

/// The three durability policies, for tests that must hold under each.
const POLICIES: [Sync; 3] = [
    Sync::Always,
    Sync::Every(Duration::from_millis(10)),
    Sync::Never,
];

fn init_logging() {
    let _ = env_logger::builder().is_test(true).try_init();
}

fn open(dir: &Path, options: Options) -> Store {
    Store::open(dir, options).expect("open the store")
}

/// The total size of the files in `dir`.
fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("list the store directory")
        .map(|entry| {
            entry
                .expect("read a directory entry")
                .metadata()
                .unwrap()
                .len()
        })
        .sum()
}

/// The store's contents read through [`Store::snapshot`], after checking
/// the snapshot's own promises: taken at `last_seq`, every key once, oldest
/// write first. Call it only while no one writes.
fn contents(store: &Store) -> Model {
    let snapshot = store.snapshot();
    assert_eq!(snapshot.seq(), store.last_seq(), "snapshot seq");
    let mut model = Model::new();
    let mut previous = 0;
    for entry in snapshot {
        let SnapshotEntry { seq, key, value } = entry.expect("read a snapshot entry");
        assert!(
            seq > previous,
            "snapshot not in seq order: {seq} after {previous}"
        );
        previous = seq;
        assert!(
            model.insert(key.clone(), (seq, value)).is_none(),
            "snapshot yields {key:?} twice"
        );
    }
    model
}

/// Every record `records_since(since)` yields.
fn records(store: &Store, since: u64) -> Vec<Record> {
    store
        .records_since(since)
        .expect("records_since")
        .collect::<Result<_, _>>()
        .expect("read a record")
}

fn put_op(key: &[u8], value: &[u8]) -> Op {
    Op::Put {
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

fn delete_op(key: &[u8]) -> Op {
    Op::Delete { key: key.to_vec() }
}

fn record(seq: u64, op: Op) -> Record {
    Record { seq, op }
}

fn assert_too_large<T: Debug>(result: Result<T, Error>, field: Field, len: usize, max: usize) {
    match result {
        Err(Error::TooLarge {
            field: f,
            len: l,
            max: m,
        }) if f == field && l == len && m == max => {}
        other => panic!("expected TooLarge {{ {field:?}, {len}, {max} }}, got {other:?}"),
    }
}

/// A small deterministic generator (xorshift64), so the threaded tests
/// need no extra dependency and replay the same way.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

// ---------------------------------------------------------------------------
// 1. CRUD

/// Create, update, delete and put follow their preconditions; a refused
/// write consumes no sequence number and leaves no record; successful writes
/// are numbered 1, 2, 3, … and `get_with_seq` names the write that set the
/// value; an empty key and an empty value are ordinary.
#[test]
fn crud_follows_preconditions_and_numbers_writes_consecutively() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    assert_eq!(store.last_seq(), 0);

    assert_eq!(store.create(b"a", b"1").unwrap(), 1);
    assert!(matches!(
        store.create(b"a", b"2"),
        Err(Error::AlreadyExists)
    ));
    let create = WriteOp::Create {
        key: b"a",
        value: b"3",
    };
    assert!(matches!(store.write(create), Err(Error::AlreadyExists)));
    assert_eq!(store.get_with_seq(b"a").unwrap(), Some((1, b"1".to_vec())));
    assert_eq!(store.last_seq(), 1);

    assert!(matches!(store.update(b"b", b"1"), Err(Error::NotFound)));
    assert!(!store.delete(b"b").unwrap());
    assert!(matches!(
        store.write(WriteOp::Delete { key: b"b" }),
        Err(Error::NotFound)
    ));
    assert_eq!(store.last_seq(), 1);
    assert!(!store.contains(b"b"));
    assert_eq!(store.get(b"b").unwrap(), None);

    assert_eq!(store.put(b"b", b"first").unwrap(), 2);
    assert_eq!(store.put(b"b", b"second").unwrap(), 3);
    assert_eq!(
        store.get_with_seq(b"b").unwrap(),
        Some((3, b"second".to_vec()))
    );
    assert_eq!(store.update(b"a", b"updated").unwrap(), 4);
    assert_eq!(
        store.get_with_seq(b"a").unwrap(),
        Some((4, b"updated".to_vec()))
    );
    let update = WriteOp::Update {
        key: b"a",
        value: b"again",
    };
    assert_eq!(store.write(update).unwrap(), 5);
    let put = WriteOp::Put {
        key: b"c",
        value: b"c",
    };
    assert_eq!(store.write(put).unwrap(), 6);

    assert!(store.delete(b"a").unwrap());
    assert_eq!(store.last_seq(), 7);
    assert_eq!(store.get(b"a").unwrap(), None);
    assert_eq!(store.get_with_seq(b"a").unwrap(), None);
    assert!(!store.contains(b"a"));
    assert!(!store.delete(b"a").unwrap());
    assert!(matches!(store.update(b"a", b"x"), Err(Error::NotFound)));
    assert_eq!(store.last_seq(), 7);
    assert_eq!(store.write(WriteOp::Delete { key: b"c" }).unwrap(), 8);
    assert_eq!(store.create(b"a", b"reborn").unwrap(), 9);

    // An empty value is a value, not an absence.
    assert_eq!(store.put(b"empty", b"").unwrap(), 10);
    assert_eq!(
        store.get_with_seq(b"empty").unwrap(),
        Some((10, Vec::new()))
    );
    assert!(store.contains(b"empty"));
    assert!(matches!(
        store.create(b"empty", b"x"),
        Err(Error::AlreadyExists)
    ));
    // The empty key is a key.
    assert_eq!(store.create(b"", b"nameless").unwrap(), 11);
    assert_eq!(
        store.get_with_seq(b"").unwrap(),
        Some((11, b"nameless".to_vec()))
    );
    assert_eq!(store.update(b"", b"still").unwrap(), 12);
    assert!(store.delete(b"").unwrap());
    assert_eq!(store.get(b"").unwrap(), None);
    assert_eq!(store.last_seq(), 13);

    // The log holds the thirteen successful writes and nothing else.
    let expected = vec![
        record(1, put_op(b"a", b"1")),
        record(2, put_op(b"b", b"first")),
        record(3, put_op(b"b", b"second")),
        record(4, put_op(b"a", b"updated")),
        record(5, put_op(b"a", b"again")),
        record(6, put_op(b"c", b"c")),
        record(7, delete_op(b"a")),
        record(8, delete_op(b"c")),
        record(9, put_op(b"a", b"reborn")),
        record(10, put_op(b"empty", b"")),
        record(11, put_op(b"", b"nameless")),
        record(12, put_op(b"", b"still")),
        record(13, delete_op(b"")),
    ];
    assert_eq!(records(&store, 0), expected);

    let before = contents(&store);
    assert_eq!(
        before.keys().cloned().collect::<Vec<_>>(),
        vec![b"a".to_vec(), b"b".to_vec(), b"empty".to_vec()]
    );
    drop(store);
    let store = open(dir.path(), Options::default());
    assert_eq!(contents(&store), before);
    assert_eq!(store.last_seq(), 13);
    assert_eq!(store.get(b"empty").unwrap(), Some(Vec::new()));
    assert_eq!(store.get(b"").unwrap(), None);
    assert_eq!(store.put(b"z", b"z").unwrap(), 14);
}

// ---------------------------------------------------------------------------
// 2. Limits

/// A key of exactly `MAX_KEY_LEN` and a value of exactly `MAX_VALUE_LEN`
/// are stored and read back, also after reopening; one byte more is refused
/// with `TooLarge` naming the field, by every kind of write, and nothing is
/// written: `last_seq`, the log and the directory's size stay as they were.
#[test]
fn size_limits_are_inclusive_and_oversize_writes_leave_no_trace() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());

    let max_key: Vec<u8> = (0..MAX_KEY_LEN).map(|i| (i % 251) as u8).collect();
    let mut other_max_key = max_key.clone();
    other_max_key[0] ^= 0xff;
    let max_value: Vec<u8> = (0..MAX_VALUE_LEN).map(|i| (i % 253) as u8).collect();
    assert_eq!(store.put(&max_key, b"k").unwrap(), 1);
    assert_eq!(store.create(b"v", &max_value).unwrap(), 2);
    assert_eq!(store.put(&other_max_key, &max_value).unwrap(), 3);
    assert_eq!(store.get(&max_key).unwrap(), Some(b"k".to_vec()));
    assert!(store.get(b"v").unwrap() == Some(max_value.clone()));
    assert!(store.get(&other_max_key).unwrap() == Some(max_value.clone()));

    let last_seq = store.last_seq();
    let size = dir_size(dir.path());
    let long_key = vec![7u8; MAX_KEY_LEN + 1];
    let long_value = vec![9u8; MAX_VALUE_LEN + 1];
    let (k, klen, kmax) = (Field::Key, MAX_KEY_LEN + 1, MAX_KEY_LEN);
    assert_too_large(store.put(&long_key, b"x"), k, klen, kmax);
    assert_too_large(store.create(&long_key, b"x"), k, klen, kmax);
    assert_too_large(store.update(&long_key, b"x"), k, klen, kmax);
    assert_too_large(store.delete(&long_key), k, klen, kmax);
    let delete = WriteOp::Delete { key: &long_key };
    assert_too_large(store.write(delete), k, klen, kmax);
    let apply = store.apply(last_seq + 1, &put_op(&long_key, b"x"));
    assert_too_large(apply, k, klen, kmax);
    let (v, vlen, vmax) = (Field::Value, MAX_VALUE_LEN + 1, MAX_VALUE_LEN);
    assert_too_large(store.put(b"v", &long_value), v, vlen, vmax);
    assert_too_large(store.create(b"new", &long_value), v, vlen, vmax);
    assert_too_large(store.update(b"v", &long_value), v, vlen, vmax);
    let apply = store.apply(last_seq + 1, &put_op(b"v", &long_value));
    assert_too_large(apply, v, vlen, vmax);

    assert_eq!(store.last_seq(), last_seq);
    assert_eq!(dir_size(dir.path()), size);
    assert_eq!(records(&store, 0).len(), 3);
    assert!(store.get(b"v").unwrap() == Some(max_value.clone()));
    assert!(!store.contains(b"new"));
    // The refused apply took no sequence number either.
    store.apply(last_seq + 1, &put_op(b"after", b"ok")).unwrap();

    drop(store);
    let store = open(dir.path(), Options::default());
    assert_eq!(store.last_seq(), last_seq + 1);
    assert_eq!(store.get(&max_key).unwrap(), Some(b"k".to_vec()));
    assert!(store.get(b"v").unwrap() == Some(max_value.clone()));
    assert!(store.get(&other_max_key).unwrap() == Some(max_value));
    assert_eq!(store.get(b"after").unwrap(), Some(b"ok".to_vec()));
}

// ---------------------------------------------------------------------------
// 3. Reopen

/// Under each sync policy, every acknowledged put and delete and `last_seq`
/// (even when the newest record is a tombstone) survive a clean close, over
/// several segments, and numbering goes on from there.
#[test]
fn reopen_keeps_writes_deletes_and_last_seq_under_every_sync_policy() {
    init_logging();
    for policy in POLICIES {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default().sync(policy).segment_size(4096);
        let mut model = Model::new();
        let mut last = 0;
        {
            let store = open(dir.path(), options.clone());
            for i in 0..600u64 {
                let key = format!("key-{}", i % 40).into_bytes();
                if i % 7 == 3 {
                    let present = model.remove(&key).is_some();
                    assert_eq!(store.delete(&key).unwrap(), present, "{policy:?}");
                    last += u64::from(present);
                } else {
                    let value = format!("value-{i}-{policy:?}").into_bytes();
                    let seq = store.put(&key, &value).unwrap();
                    assert_eq!(seq, last + 1, "{policy:?}");
                    last = seq;
                    model.insert(key, (seq, value));
                }
            }
            let newest = model.keys().next().unwrap().clone();
            assert!(store.delete(&newest).unwrap());
            model.remove(&newest);
            last += 1;
            assert_eq!(store.last_seq(), last);
            assert!(store.stats().segment_files > 2, "{policy:?}: one segment");
        }
        let store = open(dir.path(), options.clone());
        assert_eq!(store.last_seq(), last, "{policy:?}");
        assert_eq!(contents(&store), model, "{policy:?}");
        assert_eq!(store.stats().live_keys, model.len() as u64);
        assert_eq!(store.put(b"after", b"reopen").unwrap(), last + 1);
        model.insert(b"after".to_vec(), (last + 1, b"reopen".to_vec()));
        drop(store);
        let store = open(dir.path(), options);
        assert_eq!(store.last_seq(), last + 1, "{policy:?}");
        assert_eq!(contents(&store), model, "{policy:?}");
    }
}

// ---------------------------------------------------------------------------
// 4. Atomicity between writers

const RACERS: usize = 8;
const RACE_KEYS: usize = 200;

fn race_key(k: usize) -> Vec<u8> {
    format!("race-{k:03}").into_bytes()
}

/// The order a racer visits the keys in: half go up, half come down, so
/// they meet on every key.
fn race_order(thread: usize) -> impl Iterator<Item = usize> {
    (0..RACE_KEYS).map(move |i| {
        if thread.is_multiple_of(2) {
            i
        } else {
            RACE_KEYS - 1 - i
        }
    })
}

/// Eight threads `create` the same 200 keys at once, under group commit and
/// without it: each key is created exactly once, holds its creator's value
/// with its seq, every loser sees `AlreadyExists`, and the 200 successes
/// are numbered 1..=200.
#[test]
fn concurrent_creates_of_a_key_succeed_exactly_once() {
    init_logging();
    for policy in [Sync::Always, Sync::Never] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), Options::default().sync(policy));
        let barrier = Barrier::new(RACERS);
        let wins: Vec<Vec<(usize, u64)>> = thread::scope(|s| {
            let handles: Vec<_> = (0..RACERS)
                .map(|t| {
                    let (store, barrier) = (&store, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let mut wins = Vec::new();
                        for k in race_order(t) {
                            match store.create(race_key(k), format!("thread-{t}")) {
                                Ok(seq) => wins.push((k, seq)),
                                Err(Error::AlreadyExists) => {}
                                Err(e) => panic!("create {k} by thread {t}: {e}"),
                            }
                        }
                        wins
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });

        let mut winners = HashMap::new();
        let mut seqs = Vec::new();
        for (t, wins) in wins.iter().enumerate() {
            for &(k, seq) in wins {
                let earlier = winners.insert(k, (t, seq));
                assert!(earlier.is_none(), "{policy:?}: key {k} created twice");
                seqs.push(seq);
            }
        }
        assert_eq!(winners.len(), RACE_KEYS, "{policy:?}");
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=RACE_KEYS as u64).collect::<Vec<_>>());
        for (k, (t, seq)) in winners {
            let expected = Some((seq, format!("thread-{t}").into_bytes()));
            assert_eq!(store.get_with_seq(race_key(k)).unwrap(), expected);
        }
        assert_eq!(store.last_seq(), RACE_KEYS as u64);
        assert_eq!(records(&store, 0).len(), RACE_KEYS);
    }
}

/// Eight threads race `update`s against `write(Delete)`s on the same 200
/// keys, under group commit and without it: each key is deleted exactly
/// once, no update succeeds after that delete (the check and the write are
/// one step), and the log holds for each key its updates then one delete.
#[test]
fn concurrent_updates_and_deletes_never_resurrect_a_key() {
    init_logging();
    for policy in [Sync::Always, Sync::Never] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), Options::default().sync(policy));
        for k in 0..RACE_KEYS {
            store.put(race_key(k), b"initial").unwrap();
        }
        let barrier = Barrier::new(RACERS);
        type Outcomes = (Vec<(usize, u64)>, Vec<(usize, u64)>);
        let outcomes: Vec<Outcomes> = thread::scope(|s| {
            let handles: Vec<_> = (0..RACERS)
                .map(|t| {
                    let (store, barrier) = (&store, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let (mut updates, mut deletes) = (Vec::new(), Vec::new());
                        for k in race_order(t) {
                            let key = race_key(k);
                            for _ in 0..2 {
                                match store.update(&key, format!("thread-{t}")) {
                                    Ok(seq) => updates.push((k, seq)),
                                    Err(Error::NotFound) => {}
                                    Err(e) => panic!("update {k} by thread {t}: {e}"),
                                }
                            }
                            match store.write(WriteOp::Delete { key: &key }) {
                                Ok(seq) => deletes.push((k, seq)),
                                Err(Error::NotFound) => {}
                                Err(e) => panic!("delete {k} by thread {t}: {e}"),
                            }
                        }
                        (updates, deletes)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });

        let mut deleted_at = HashMap::new();
        let mut seqs: Vec<u64> = (1..=RACE_KEYS as u64).collect();
        for (_, deletes) in &outcomes {
            for &(k, seq) in deletes {
                let twice = deleted_at.insert(k, seq);
                assert!(twice.is_none(), "{policy:?}: key {k} deleted twice");
                seqs.push(seq);
            }
        }
        assert_eq!(deleted_at.len(), RACE_KEYS, "{policy:?}");
        let mut updates = 0;
        for (thread_updates, _) in &outcomes {
            for &(k, seq) in thread_updates {
                assert!(
                    seq < deleted_at[&k],
                    "{policy:?}: update of {k} at {seq} after its delete at {}",
                    deleted_at[&k]
                );
                seqs.push(seq);
                updates += 1;
            }
        }
        seqs.sort_unstable();
        let last = (2 * RACE_KEYS + updates) as u64;
        assert_eq!(seqs, (1..=last).collect::<Vec<_>>(), "{policy:?}");
        assert_eq!(store.last_seq(), last);
        assert_eq!(store.stats().live_keys, 0);

        let mut per_key: HashMap<Vec<u8>, Vec<bool>> = HashMap::new();
        for r in records(&store, RACE_KEYS as u64) {
            let is_delete = matches!(r.op, Op::Delete { .. });
            per_key
                .entry(r.op.key().to_vec())
                .or_default()
                .push(is_delete);
        }
        assert_eq!(per_key.len(), RACE_KEYS);
        for (key, ops) in per_key {
            let deletes = ops.iter().filter(|&&d| d).count();
            assert_eq!(deletes, 1, "{key:?}");
            assert_eq!(ops.last(), Some(&true), "{key:?}: written after delete");
        }
    }
}

// ---------------------------------------------------------------------------
// 5. Group commit

/// 32 threads × 200 puts under `Sync::Always` (group commit): all are
/// acknowledged, with distinct seqs that are exactly 1..=6400, and every
/// value is read back with its seq, before and after reopening.
#[test]
fn group_commit_acknowledges_every_writer_with_a_distinct_seq() {
    init_logging();
    const THREADS: usize = 32;
    const PUTS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default().sync(Sync::Always));
    let barrier = Barrier::new(THREADS);
    let written: Vec<(Vec<u8>, u64, Vec<u8>)> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (store, barrier) = (&store, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    (0..PUTS)
                        .map(|i| {
                            let key = format!("t{t:02}-{i:03}").into_bytes();
                            let value = format!("value of {t}/{i}").into_bytes();
                            let seq = store.put(&key, &value).expect("put");
                            (key, seq, value)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });

    let mut seqs: Vec<u64> = written.iter().map(|(_, seq, _)| *seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=(THREADS * PUTS) as u64).collect::<Vec<_>>());
    let expected: Model = written
        .into_iter()
        .map(|(key, seq, value)| (key, (seq, value)))
        .collect();
    for (key, (seq, value)) in &expected {
        assert_eq!(
            store.get_with_seq(key).unwrap(),
            Some((*seq, value.clone()))
        );
    }
    assert_eq!(store.last_seq(), (THREADS * PUTS) as u64);
    drop(store);
    let store = open(dir.path(), Options::default());
    assert_eq!(store.last_seq(), (THREADS * PUTS) as u64);
    assert_eq!(contents(&store), expected);
}

// ---------------------------------------------------------------------------
// 6. Compaction

/// Random puts, deletes and gets on thread `t`'s own keys, checked against
/// a model, for at least `min_ops` ops and until `compactions` reaches 3.
/// Returns the model.
fn churn(store: &Store, t: usize, min_ops: usize, compactions: &AtomicUsize) -> Model {
    let mut rng = Rng::new(t as u64 + 1);
    let mut model = Model::new();
    let mut op = 0;
    while op < min_ops || compactions.load(Ordering::SeqCst) < 3 {
        let key = format!("t{t}-k{:02}", rng.below(64)).into_bytes();
        match rng.below(10) {
            0..=4 => {
                let pad = "x".repeat(rng.below(200) as usize);
                let value = format!("{t}/{op}/{pad}").into_bytes();
                let seq = store.put(&key, &value).expect("put");
                model.insert(key, (seq, value));
            }
            5 | 6 => {
                let present = model.remove(&key).is_some();
                let deleted = store.delete(&key).expect("delete");
                assert_eq!(deleted, present, "thread {t} op {op}: delete {key:?}");
            }
            _ => {
                let got = store.get_with_seq(&key).expect("get");
                assert_eq!(got.as_ref(), model.get(&key), "thread {t} op {op}");
            }
        }
        op += 1;
    }
    model
}

/// Four threads put, delete and get their own keys (checking every read
/// against a model) while the main thread compacts again and again: no read
/// is wrong, the store ends equal to the union of the models, and a final
/// compaction leaves no dead bytes and a smaller directory.
#[test]
fn compaction_runs_while_threads_read_and_write() {
    init_logging();
    const THREADS: usize = 4;
    const OPS: usize = 3000;
    for policy in [Sync::Never, Sync::Always] {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default()
            .sync(policy)
            .segment_size(32 * 1024)
            .compaction(None);
        let store = open(dir.path(), options);
        let compactions = AtomicUsize::new(0);
        let barrier = Barrier::new(THREADS + 1);
        let models: Vec<Model> = thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (store, barrier, compactions) = (&store, &barrier, &compactions);
                    s.spawn(move || {
                        barrier.wait();
                        churn(store, t, OPS, compactions)
                    })
                })
                .collect();
            barrier.wait();
            while !handles.iter().all(|h| h.is_finished()) {
                store.compact().expect("compact");
                compactions.fetch_add(1, Ordering::SeqCst);
            }
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let done = compactions.load(Ordering::SeqCst) as u64;
        assert!(done >= 3, "{policy:?}: only {done} compactions");
        assert_eq!(store.stats().compactions, done, "{policy:?}");

        let mut union: Model = models.into_iter().flatten().collect();
        assert_eq!(contents(&store), union, "{policy:?}");
        assert_eq!(store.stats().live_keys, union.len() as u64);

        // Make sure there is something dead, then compact once more.
        for (key, (seq, value)) in union.iter_mut() {
            value.extend_from_slice(b"+final");
            *seq = store.put(key, &value).unwrap();
        }
        let before = store.stats();
        let size_before = dir_size(dir.path());
        assert!(before.dead_bytes > 0, "{policy:?}: {before:?}");
        store.compact().unwrap();
        let after = store.stats();
        assert!(
            after.dead_bytes < before.dead_bytes,
            "{before:?} → {after:?}"
        );
        assert_eq!(after.dead_bytes, 0, "{policy:?}: {after:?}");
        assert_eq!(after.live_bytes, before.live_bytes);
        assert_eq!(after.compactions, done + 1);
        let size_after = dir_size(dir.path());
        assert!(size_after < size_before, "{size_before} → {size_after}");
        assert_eq!(contents(&store), union, "{policy:?}");
    }
}

/// With a small compaction policy, compaction runs on its own once enough
/// of the log is dead (polled with a deadline), and loses nothing.
#[test]
fn automatic_compaction_triggers_on_dead_bytes() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let policy = CompactionPolicy {
        min_dead_bytes: 16 * 1024,
        dead_ratio: 0.5,
    };
    let options = Options::default()
        .sync(Sync::Never)
        .segment_size(8 * 1024)
        .compaction(Some(policy));
    let store = open(dir.path(), options);
    assert_eq!(store.stats().compactions, 0);
    let mut model = Model::new();
    for round in 0..200 {
        for k in 0..10 {
            let key = format!("key-{k}").into_bytes();
            let value = format!("round {round} of key {k}, with some padding").into_bytes();
            let seq = store.put(&key, &value).unwrap();
            model.insert(key, (seq, value));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.stats().compactions == 0 {
        assert!(
            Instant::now() < deadline,
            "no automatic compaction: {:?}",
            store.stats()
        );
        thread::yield_now();
    }
    assert_eq!(contents(&store), model);
    assert!(
        store.stats().dead_bytes < 16 * 1024 * 10,
        "{:?}",
        store.stats()
    );
}

/// A compacted store reopens: same contents, `last_seq` and horizon, and
/// writing goes on with the next seq.
#[test]
fn reopen_after_compaction_keeps_contents_last_seq_and_horizon() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    store.put(b"a", b"1").unwrap();
    store.put(b"b", b"2").unwrap();
    store.put(b"c", b"3").unwrap();
    store.put(b"a", b"4").unwrap();
    assert!(store.delete(b"b").unwrap());
    store.compact().unwrap();
    let before = contents(&store);
    let horizon = match store.records_since(0) {
        Err(Error::Compacted { since: 0, horizon }) => horizon,
        other => panic!("expected Compacted, got {other:?}"),
    };
    assert_eq!(horizon, 5);
    drop(store);

    let store = Store::open(dir.path(), Options::default())
        .unwrap_or_else(|e| panic!("reopening a compacted store: {e}"));
    assert_eq!(contents(&store), before);
    assert_eq!(store.last_seq(), 5);
    assert!(matches!(
        store.records_since(0),
        Err(Error::Compacted {
            since: 0,
            horizon: 5
        })
    ));
    assert_eq!(records(&store, horizon), Vec::new());
    assert_eq!(store.put(b"d", b"5").unwrap(), 6);
}

// ---------------------------------------------------------------------------
// 7. Property test against a model

#[derive(Debug, Clone)]
enum Action {
    Put(u8, Vec<u8>),
    Create(u8, Vec<u8>),
    Update(u8, Vec<u8>),
    Delete(u8),
    WriteDelete(u8),
    Get(u8),
    Reopen,
    Compact,
}

fn action() -> impl Strategy<Value = Action> {
    let key = || 0u8..8;
    let value = || proptest::collection::vec(any::<u8>(), 0..24);
    prop_oneof![
        4 => (key(), value()).prop_map(|(k, v)| Action::Put(k, v)),
        2 => (key(), value()).prop_map(|(k, v)| Action::Create(k, v)),
        2 => (key(), value()).prop_map(|(k, v)| Action::Update(k, v)),
        2 => key().prop_map(Action::Delete),
        1 => key().prop_map(Action::WriteDelete),
        3 => key().prop_map(Action::Get),
        1 => Just(Action::Reopen),
        1 => Just(Action::Compact),
    ]
}

fn sync_policy() -> impl Strategy<Value = Sync> {
    prop_oneof![
        6 => Just(Sync::Never),
        1 => Just(Sync::Always),
        1 => Just(Sync::Every(Duration::from_millis(5))),
    ]
}

/// What an action returned, comparable with what the model predicts.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Seq(u64),
    Deleted(bool),
    AlreadyExists,
    NotFound,
    Value(Option<(u64, Vec<u8>)>),
    LastSeq(u64),
}

fn outcome(result: Result<u64, Error>) -> Outcome {
    match result {
        Ok(seq) => Outcome::Seq(seq),
        Err(Error::AlreadyExists) => Outcome::AlreadyExists,
        Err(Error::NotFound) => Outcome::NotFound,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// Runs `actions` against a store and a model, comparing every outcome and
/// then the whole contents.
fn check_against_model(policy: Sync, actions: &[Action]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default()
        .sync(policy)
        .segment_size(256)
        .compaction(None);
    let mut store = open(dir.path(), options.clone());
    let mut model = Model::new();
    let mut last = 0;
    for (i, action) in actions.iter().enumerate() {
        let key_of = |k: &u8| format!("key-{k}").into_bytes();
        // A successful write in the model: the next seq.
        let mut write = |model: &mut Model, key: Vec<u8>, value: Option<&Vec<u8>>| {
            last += 1;
            match value {
                Some(value) => model.insert(key, (last, value.clone())),
                None => model.remove(&key),
            };
            Outcome::Seq(last)
        };
        let (expected, actual) = match action {
            Action::Put(k, v) => (
                write(&mut model, key_of(k), Some(v)),
                outcome(store.put(key_of(k), v)),
            ),
            Action::Create(k, v) => (
                if model.contains_key(&key_of(k)) {
                    Outcome::AlreadyExists
                } else {
                    write(&mut model, key_of(k), Some(v))
                },
                outcome(store.create(key_of(k), v)),
            ),
            Action::Update(k, v) => (
                if model.contains_key(&key_of(k)) {
                    write(&mut model, key_of(k), Some(v))
                } else {
                    Outcome::NotFound
                },
                outcome(store.update(key_of(k), v)),
            ),
            Action::Delete(k) => {
                let present = model.contains_key(&key_of(k));
                if present {
                    write(&mut model, key_of(k), None);
                }
                (
                    Outcome::Deleted(present),
                    Outcome::Deleted(store.delete(key_of(k)).expect("delete")),
                )
            }
            Action::WriteDelete(k) => (
                if model.contains_key(&key_of(k)) {
                    write(&mut model, key_of(k), None)
                } else {
                    Outcome::NotFound
                },
                outcome(store.write(WriteOp::Delete { key: &key_of(k) })),
            ),
            Action::Get(k) => {
                let got = store.get_with_seq(key_of(k)).expect("get");
                prop_assert_eq!(store.contains(key_of(k)), got.is_some());
                (
                    Outcome::Value(model.get(&key_of(k)).cloned()),
                    Outcome::Value(got),
                )
            }
            Action::Reopen => {
                drop(store);
                store = Store::open(dir.path(), options.clone())
                    .map_err(|e| TestCaseError::fail(format!("reopen: {e}")))?;
                (Outcome::LastSeq(last), Outcome::LastSeq(store.last_seq()))
            }
            Action::Compact => {
                store.compact().expect("compact");
                (Outcome::LastSeq(last), Outcome::LastSeq(store.last_seq()))
            }
        };
        prop_assert_eq!(actual, expected, "action {} of {:?}", i, actions);
    }
    prop_assert_eq!(store.last_seq(), last);
    prop_assert_eq!(contents(&store), model.clone());
    drop(store);
    let store = Store::open(dir.path(), options)
        .map_err(|e| TestCaseError::fail(format!("final reopen: {e}")))?;
    prop_assert_eq!(store.last_seq(), last);
    prop_assert_eq!(contents(&store), model);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        max_shrink_iters: 512,
        ..ProptestConfig::default()
    })]

    /// Random sequences of puts, creates, updates, deletes, gets, reopens
    /// and compactions over eight keys and 256-byte segments, under a
    /// generated sync policy, behave exactly like a `HashMap` with a seq
    /// counter: same outcomes, same values and seqs, same final contents.
    #[test]
    fn random_operations_match_a_model(
        policy in sync_policy(),
        actions in proptest::collection::vec(action(), 1..50),
    ) {
        init_logging();
        check_against_model(policy, &actions)?;
    }
}

// ---------------------------------------------------------------------------
// 8. apply

/// `apply` takes exactly the next seq: 1 and 2 on a fresh store, a gap or a
/// repeat is `OutOfOrder` with the expected and given numbers and writes
/// nothing, and the applied `last_seq` survives reopening.
#[test]
fn apply_accepts_only_the_next_seq() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    store.apply(1, &put_op(b"a", b"1")).unwrap();
    store.apply(2, &delete_op(b"a")).unwrap();
    assert_eq!(store.last_seq(), 2);
    assert_eq!(store.get(b"a").unwrap(), None);

    let size = dir_size(dir.path());
    for (seq, op) in [
        (4, put_op(b"gap", b"x")),
        (2, put_op(b"repeat", b"x")),
        (1, delete_op(b"a")),
        (0, put_op(b"zero", b"x")),
    ] {
        match store.apply(seq, &op) {
            Err(Error::OutOfOrder { expected: 3, got }) if got == seq => {}
            other => panic!("apply({seq}): expected OutOfOrder {{ 3, {seq} }}, got {other:?}"),
        }
    }
    assert_eq!(store.last_seq(), 2);
    assert_eq!(dir_size(dir.path()), size);
    let expected = vec![record(1, put_op(b"a", b"1")), record(2, delete_op(b"a"))];
    assert_eq!(records(&store, 0), expected);
    assert!(!store.contains(b"gap") && !store.contains(b"repeat"));

    store.apply(3, &put_op(b"b", b"3")).unwrap();
    drop(store);
    let store = open(dir.path(), Options::default());
    assert_eq!(store.last_seq(), 3);
    assert!(matches!(
        store.apply(3, &put_op(b"b", b"again")),
        Err(Error::OutOfOrder {
            expected: 4,
            got: 3
        })
    ));
    store.apply(4, &put_op(b"c", b"4")).unwrap();
    assert_eq!(store.get_with_seq(b"b").unwrap(), Some((3, b"3".to_vec())));
    assert_eq!(store.get_with_seq(b"c").unwrap(), Some((4, b"4".to_vec())));
    // A local write follows the applied ones.
    assert_eq!(store.put(b"d", b"5").unwrap(), 5);
}

/// A replica that applies a source's `records_since` stream (a full copy,
/// then an increment) ends equal to the source: same keys, values, seqs,
/// `last_seq` and log, also after reopening.
#[test]
fn applying_a_stream_reproduces_the_source() {
    init_logging();
    let source_dir = tempfile::tempdir().unwrap();
    let replica_dir = tempfile::tempdir().unwrap();
    let options = Options::default().sync(Sync::Never).segment_size(1024);
    let source = open(source_dir.path(), options.clone());
    let replica = open(replica_dir.path(), options.clone());
    let mut rng = Rng::new(42);
    let mut churn = |n: usize| {
        for i in 0..n {
            let key = format!("k{}", rng.below(30)).into_bytes();
            match rng.below(4) {
                0 => {
                    source.delete(&key).unwrap();
                }
                1 => {
                    let _ = source.create(&key, format!("created {i}"));
                }
                _ => {
                    source.put(&key, format!("put {i}")).unwrap();
                }
            }
        }
    };
    let copy = |since: u64| {
        let stream = source.records_since(since).unwrap();
        for r in stream {
            let r = r.unwrap();
            replica.apply(r.seq, &r.op).unwrap();
        }
    };

    churn(300);
    copy(0);
    assert_eq!(replica.last_seq(), source.last_seq());
    assert_eq!(contents(&replica), contents(&source));
    assert_eq!(records(&replica, 0), records(&source, 0));

    churn(100);
    copy(replica.last_seq());
    assert_eq!(replica.last_seq(), source.last_seq());
    let expected = contents(&source);
    assert!(expected.len() > 5, "too few live keys to compare");
    assert_eq!(contents(&replica), expected);
    assert_eq!(records(&replica, 0), records(&source, 0));

    drop(replica);
    let replica = open(replica_dir.path(), options);
    assert_eq!(replica.last_seq(), source.last_seq());
    assert_eq!(contents(&replica), expected);
}

// ---------------------------------------------------------------------------
// 9. records_since and snapshot

/// `records_since(n)` yields exactly the records above `n`, in order, puts
/// and deletes alike, across segments and as of its creation;
/// `records_since(last_seq)` is empty and `records_since(last_seq + 1)` is
/// `UnknownSeq`; after a compaction, reading from below the horizon is
/// `Compacted` while reading from the horizon works, and an iterator made
/// before the compaction still reads everything.
#[test]
fn records_since_yields_the_log_above_a_seq() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default().segment_size(128);
    let store = open(dir.path(), options);
    store.put(b"a", b"1").unwrap();
    store.put(b"b", b"2").unwrap();
    assert!(store.delete(b"a").unwrap());
    store.put(b"c", b"4").unwrap();
    store.update(b"b", b"5").unwrap();
    let log = [
        record(1, put_op(b"a", b"1")),
        record(2, put_op(b"b", b"2")),
        record(3, delete_op(b"a")),
        record(4, put_op(b"c", b"4")),
        record(5, put_op(b"b", b"5")),
    ];
    assert!(store.stats().segment_files > 1, "the log fits one segment");
    for since in 0..=5 {
        assert_eq!(
            records(&store, since),
            log[since as usize..],
            "since {since}"
        );
    }
    match store.records_since(6) {
        Err(Error::UnknownSeq {
            since: 6,
            last_seq: 5,
        }) => {}
        other => panic!("expected UnknownSeq, got {other:?}"),
    }

    // Made now, read after more writes: only what was there.
    let mut early = store.records_since(0).unwrap();
    assert_eq!(early.until(), 5);
    assert_eq!(early.next().unwrap().unwrap(), log[0]);
    store.put(b"d", b"6").unwrap();
    let rest: Vec<Record> = early.map(Result::unwrap).collect();
    assert_eq!(rest, log[1..]);

    // Made before a compaction, read after it: still everything.
    let before_compaction = store.records_since(0).unwrap();
    store.compact().unwrap();
    let all: Vec<Record> = before_compaction.map(Result::unwrap).collect();
    assert_eq!(all.len(), 6);
    assert_eq!(all[..5], log[..]);

    let horizon = match store.records_since(0) {
        Err(Error::Compacted { since: 0, horizon }) => horizon,
        other => panic!("expected Compacted, got {other:?}"),
    };
    assert_eq!(horizon, 6);
    assert!(matches!(
        store.records_since(horizon - 1),
        Err(Error::Compacted { .. })
    ));
    assert_eq!(records(&store, horizon), Vec::new());
    store.put(b"e", b"7").unwrap();
    assert!(store.delete(b"c").unwrap());
    assert_eq!(
        records(&store, horizon),
        vec![record(7, put_op(b"e", b"7")), record(8, delete_op(b"c"))]
    );
}

/// `snapshot()` yields every live key once with its value and seq, oldest
/// write first, with `seq()` equal to `last_seq`; it shows the store as of
/// its creation even when keys are overwritten and compacted afterwards.
#[test]
fn snapshot_yields_every_live_key_once_in_seq_order() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default().segment_size(256));
    store.put(b"a", b"1").unwrap();
    store.put(b"b", b"2").unwrap();
    store.put(b"c", b"3").unwrap();
    store.put(b"a", b"4").unwrap();
    assert!(store.delete(b"b").unwrap());
    store.put(b"d", b"6").unwrap();
    let expected = vec![
        SnapshotEntry {
            seq: 3,
            key: b"c".to_vec(),
            value: b"3".to_vec(),
        },
        SnapshotEntry {
            seq: 4,
            key: b"a".to_vec(),
            value: b"4".to_vec(),
        },
        SnapshotEntry {
            seq: 6,
            key: b"d".to_vec(),
            value: b"6".to_vec(),
        },
    ];
    let snapshot = store.snapshot();
    assert_eq!(snapshot.seq(), 6);
    assert_eq!(snapshot.size_hint(), (3, Some(3)));
    let got: Vec<SnapshotEntry> = snapshot.map(Result::unwrap).collect();
    assert_eq!(got, expected);

    let old = store.snapshot();
    store.put(b"c", b"changed").unwrap();
    assert!(store.delete(b"d").unwrap());
    store.compact().unwrap();
    assert_eq!(old.seq(), 6);
    let got: Vec<SnapshotEntry> = old.map(Result::unwrap).collect();
    assert_eq!(got, expected);

    let now = store.snapshot();
    assert_eq!(now.seq(), 8);
    let got: Vec<SnapshotEntry> = now.map(Result::unwrap).collect();
    assert_eq!(
        got,
        vec![
            SnapshotEntry {
                seq: 4,
                key: b"a".to_vec(),
                value: b"4".to_vec(),
            },
            SnapshotEntry {
                seq: 7,
                key: b"c".to_vec(),
                value: b"changed".to_vec(),
            },
        ]
    );
}

// ---------------------------------------------------------------------------
// 10. stats

/// The length of the record of a put of `key` and `value` (of a delete when
/// `value` is empty).
fn record_len(key: &[u8], value: &[u8]) -> u64 {
    (RECORD_HEADER_LEN + key.len() + value.len()) as u64
}

/// `stats()` follows the writes: a put adds live bytes, an overwrite turns
/// the old record's bytes dead, a delete turns the value's bytes and its
/// tombstone's dead, a compaction clears the dead bytes; the figures
/// survive reopening.
#[test]
fn stats_track_live_and_dead_bytes() {
    init_logging();
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default().sync(Sync::Never).compaction(None);
    let store = open(dir.path(), options.clone());
    let stats = store.stats();
    assert_eq!(
        (stats.live_keys, stats.live_bytes, stats.dead_bytes),
        (0, 0, 0)
    );
    assert_eq!((stats.last_seq, stats.compactions), (0, 0));

    store.put(b"a", b"xxx").unwrap();
    store.put(b"bb", b"y").unwrap();
    let s = store.stats();
    let (a1, b1) = (record_len(b"a", b"xxx"), record_len(b"bb", b"y"));
    assert_eq!((s.live_keys, s.live_bytes, s.dead_bytes), (2, a1 + b1, 0));
    assert_eq!(s.last_seq, 2);

    store.put(b"a", b"zzzzzz").unwrap();
    let s = store.stats();
    let a2 = record_len(b"a", b"zzzzzz");
    assert_eq!((s.live_keys, s.live_bytes, s.dead_bytes), (2, a2 + b1, a1));

    assert!(store.delete(b"bb").unwrap());
    let s = store.stats();
    let tombstone = record_len(b"bb", b"");
    assert_eq!(
        (s.live_keys, s.live_bytes, s.dead_bytes),
        (1, a2, a1 + b1 + tombstone)
    );
    // Refused writes change nothing.
    assert!(!store.delete(b"bb").unwrap());
    assert!(store.create(b"a", b"no").is_err());
    assert_eq!(store.stats(), s);

    drop(store);
    let store = open(dir.path(), options);
    let reopened = store.stats();
    assert_eq!(
        (
            reopened.live_keys,
            reopened.live_bytes,
            reopened.dead_bytes,
            reopened.last_seq
        ),
        (1, a2, a1 + b1 + tombstone, 4)
    );

    store.compact().unwrap();
    let s = store.stats();
    assert_eq!((s.live_keys, s.live_bytes, s.dead_bytes), (1, a2, 0));
    assert_eq!((s.last_seq, s.compactions), (4, 1));
    assert_eq!(store.get(b"a").unwrap(), Some(b"zzzzzz".to_vec()));
}

/// `apply_batch` writes a run of a master's records at once, refuses a run
/// that does not follow the last seq (writing none of it), and survives a
/// reopen.
#[test]
fn apply_batch_writes_runs_and_refuses_gaps() {
    for policy in POLICIES {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), Options::default().sync(policy));
        let run: Vec<Record> = (1..=50)
            .map(|seq| {
                record(
                    seq,
                    put_op(format!("k{}", seq % 7).as_bytes(), &seq.to_be_bytes()),
                )
            })
            .chain([record(51, delete_op(b"k0"))])
            .collect();
        store.apply_batch(&run[..20]).unwrap();
        assert_eq!(store.last_seq(), 20);
        let gap = store.apply_batch(&run[21..30]);
        assert!(
            matches!(
                gap,
                Err(Error::OutOfOrder {
                    expected: 21,
                    got: 22
                })
            ),
            "{gap:?}"
        );
        let mut broken = run[20..25].to_vec();
        broken[3].seq = 99;
        assert!(matches!(
            store.apply_batch(&broken),
            Err(Error::OutOfOrder {
                expected: 24,
                got: 99
            })
        ));
        assert_eq!(store.last_seq(), 20, "a refused run writes nothing");
        store.apply_batch(&run[20..]).unwrap();
        assert_eq!(records(&store, 0), run);
        drop(store);
        let store = open(dir.path(), Options::default().sync(policy));
        assert_eq!(records(&store, 0), run, "after reopen under {policy:?}");
        assert_eq!(store.get(b"k0").unwrap(), None);
        assert_eq!(
            store.get(b"k1").unwrap(),
            Some(50u64.to_be_bytes().to_vec())
        );
    }
}

/// `install_snapshot` replaces every key with the snapshot's, sets the last
/// seq to the snapshot's, keeps both across a reopen, and later writes and
/// applies continue from it.
#[test]
fn install_snapshot_replaces_the_contents() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = open(source_dir.path(), Options::default().sync(Sync::Never));
    for i in 0..40u32 {
        source.put(format!("s{}", i % 9), i.to_be_bytes()).unwrap();
    }
    source.delete(b"s3").unwrap();
    let expected = contents(&source);

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default().segment_size(512));
    for i in 0..100u32 {
        store
            .put(format!("old{}", i % 13), i.to_be_bytes())
            .unwrap();
    }
    let snapshot = source.snapshot();
    let seq = snapshot.seq();
    let own_history = store.history_id();
    store
        .install_snapshot(seq, source.history_id(), snapshot)
        .unwrap();
    assert_ne!(own_history, source.history_id());
    assert_eq!(
        store.history_id(),
        source.history_id(),
        "takes the master's history"
    );
    assert_eq!(contents(&store), expected);
    assert_eq!(store.last_seq(), seq);
    assert_eq!(store.get(b"old1").unwrap(), None);
    assert!(store.stats().segment_files <= 2, "old segments removed");
    assert!(matches!(
        store.records_since(seq - 1),
        Err(Error::Compacted { .. })
    ));

    store.apply(seq + 1, &put_op(b"after", b"1")).unwrap();
    drop(store);
    let store = open(dir.path(), Options::default());
    assert_eq!(
        store.history_id(),
        source.history_id(),
        "the history survives a reopen"
    );
    let mut after = expected.clone();
    after.insert(b"after".to_vec(), (seq + 1, b"1".to_vec()));
    assert_eq!(contents(&store), after);
    assert_eq!(store.last_seq(), seq + 1);
    assert_eq!(store.put(b"next", b"2").unwrap(), seq + 2);

    // A snapshot whose entries are out of order is refused and the store
    // keeps what it had.
    let bad = vec![
        Ok(SnapshotEntry {
            seq: 5,
            key: b"a".to_vec(),
            value: b"1".to_vec(),
        }),
        Ok(SnapshotEntry {
            seq: 4,
            key: b"b".to_vec(),
            value: b"2".to_vec(),
        }),
    ];
    let history = store.history_id();
    assert!(store.install_snapshot(9, 77, bad).is_err());
    assert_eq!(
        store.history_id(),
        history,
        "a failed install keeps the history"
    );
    assert_eq!(store.get(b"next").unwrap(), Some(b"2".to_vec()));
    drop(store);
    let store = open(dir.path(), Options::default());
    assert_eq!(store.get(b"next").unwrap(), Some(b"2".to_vec()));
}

/// `write_then` from many threads, mixed with blocking writes, under each
/// policy: every completion is called once, with its own seq; the seqs of
/// all writes are 1..=N without a gap; a completion's write is readable
/// when it runs; everything is there after a reopen.
#[test]
fn write_then_completes_every_write_once_in_one_sequence() {
    use std::sync::mpsc;
    for policy in POLICIES {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(open(dir.path(), Options::default().sync(policy)));
        const THREADS: usize = 8;
        const WRITES: usize = 300;
        let (done_tx, done_rx) = mpsc::channel::<(String, u64)>();
        let barrier = Barrier::new(THREADS);
        let blocking_seqs: Vec<u64> = thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (store, done_tx, barrier) = (store.clone(), done_tx.clone(), &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let mut blocking = Vec::new();
                        for i in 0..WRITES {
                            let key = format!("t{t}-{i}");
                            if i % 3 == 0 {
                                let seq = store
                                    .write(WriteOp::Put {
                                        key: key.as_bytes(),
                                        value: b"b",
                                    })
                                    .unwrap();
                                blocking.push(seq);
                            } else {
                                let (tx, reader) = (done_tx.clone(), store.clone());
                                let k = key.clone();
                                store.write_then(
                                    WriteOp::Put {
                                        key: key.as_bytes(),
                                        value: b"d",
                                    },
                                    move |seq| {
                                        let seq = seq.unwrap();
                                        // Durable and visible when told.
                                        assert_eq!(
                                            reader.get(k.as_bytes()).unwrap().as_deref(),
                                            Some(&b"d"[..])
                                        );
                                        tx.send((k, seq)).unwrap();
                                    },
                                );
                            }
                        }
                        blocking
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        drop(done_tx);
        let deferred: Vec<(String, u64)> = done_rx.iter().collect();
        let expected_deferred = THREADS * (WRITES - WRITES.div_ceil(3));
        assert_eq!(deferred.len(), expected_deferred, "{policy:?}");
        let mut seqs: Vec<u64> = deferred
            .iter()
            .map(|(_, s)| *s)
            .chain(blocking_seqs)
            .collect();
        seqs.sort_unstable();
        let n = (THREADS * WRITES) as u64;
        assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "{policy:?}: seqs");
        drop(store);
        let store = open(dir.path(), Options::default().sync(policy));
        assert_eq!(store.stats().live_keys, n, "{policy:?}");
        for (key, _) in &deferred {
            assert_eq!(
                store.get(key.as_bytes()).unwrap().as_deref(),
                Some(&b"d"[..])
            );
        }
    }
}

/// `write_then`'s create, update and delete follow the same rules as
/// `write`'s, and say so through the completion.
#[test]
fn write_then_keeps_the_crud_rules() {
    use std::sync::mpsc;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    let (tx, rx) = mpsc::channel();
    let told = |tx: &mpsc::Sender<Result<u64, Error>>| {
        let tx = tx.clone();
        move |outcome| tx.send(outcome).unwrap()
    };
    store.write_then(
        WriteOp::Create {
            key: b"k",
            value: b"1",
        },
        told(&tx),
    );
    assert_eq!(rx.recv().unwrap().unwrap(), 1);
    store.write_then(
        WriteOp::Create {
            key: b"k",
            value: b"2",
        },
        told(&tx),
    );
    assert!(matches!(rx.recv().unwrap(), Err(Error::AlreadyExists)));
    store.write_then(
        WriteOp::Update {
            key: b"absent",
            value: b"2",
        },
        told(&tx),
    );
    assert!(matches!(rx.recv().unwrap(), Err(Error::NotFound)));
    store.write_then(WriteOp::Delete { key: b"k" }, told(&tx));
    assert_eq!(rx.recv().unwrap().unwrap(), 2);
    store.write_then(
        WriteOp::Put {
            key: b"k",
            value: &vec![0; MAX_VALUE_LEN + 1],
        },
        told(&tx),
    );
    assert!(matches!(rx.recv().unwrap(), Err(Error::TooLarge { .. })));
    assert_eq!(store.last_seq(), 2);
}
