//! Gated visibility: a slave's store writes its master's records at once
//! but shows them only once the master has declared them durable
//! (`Options::gate_visibility`, `Store::publish_through`). Held records
//! must stay invisible to every reader, be published in order, survive a
//! restart as held (the `COMMITTED` file), survive compaction, and be
//! dropped by a snapshot install. An ungated store must not change.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use duokv_storage::{Ancestor, Error, History, Op, Options, Record, SnapshotEntry, Store, Sync};

/// Every log message of this test binary, as "LEVEL message".
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}", record.level(), record.args());
        LOGGED.lock().unwrap().push(line);
    }

    fn flush(&self) {}
}

/// Captures log messages from here on (once per test binary).
fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        log::set_logger(&Capture).expect("no other logger");
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// The messages logged so far that mention `text`.
fn logged_about(text: &str) -> Vec<String> {
    LOGGED
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains(text))
        .cloned()
        .collect()
}

fn gated_options() -> Options {
    Options::default().gate_visibility(true).compaction(None)
}

fn open(dir: &Path, options: Options) -> Store {
    Store::open(dir, options).expect("open the store")
}

fn key(i: u64) -> Vec<u8> {
    format!("k{i}").into_bytes()
}

fn value(seq: u64) -> Vec<u8> {
    format!("value of write {seq}").into_bytes()
}

/// Record `seq`: a put of `value(seq)` to `key(seq % keys)`.
fn put(seq: u64, keys: u64) -> Record {
    Record {
        seq,
        op: Op::Put {
            key: key(seq % keys),
            value: value(seq),
        },
    }
}

/// Puts `seqs` (to `keys` distinct keys) as one batch.
fn apply(store: &Store, seqs: std::ops::RangeInclusive<u64>, keys: u64) {
    let records: Vec<Record> = seqs.map(|seq| put(seq, keys)).collect();
    store.apply_batch(&records).expect("apply a batch");
}

/// The seqs `records_since(since)` yields.
fn seqs_since(store: &Store, since: u64) -> Vec<u64> {
    store
        .records_since(since)
        .expect("records_since")
        .map(|record| record.expect("read a record").seq)
        .collect()
}

/// The seqs of the store's snapshot, oldest write first.
fn snapshot_seqs(store: &Store) -> Vec<u64> {
    store
        .snapshot()
        .map(|entry| entry.expect("read an entry").seq)
        .collect()
}

/// What `key(0..keys)` should hold once writes `1..=through` of
/// `put(_, keys)` are visible.
fn model(through: u64, keys: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    (1..=through)
        .map(|seq| (key(seq % keys), value(seq)))
        .collect()
}

/// Asserts the store shows exactly `model(through, keys)`.
fn assert_shows(store: &Store, through: u64, keys: u64) {
    let expected = model(through, keys);
    for i in 0..keys {
        assert_eq!(
            store.get(key(i)).unwrap(),
            expected.get(&key(i)).cloned(),
            "key {i} with writes through {through} visible"
        );
    }
    assert_eq!(store.last_seq(), through);
}

#[test]
fn held_records_are_invisible_until_published_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), gated_options());
    // Writes 5 and 6 overwrite keys 1 and 2: 4 keys.
    apply(&store, 1..=6, 4);

    assert_eq!(store.last_seq(), 0);
    assert_eq!(store.applied_seq(), 6);
    assert_eq!(store.publish_limit(), 0);
    assert_eq!(store.get(key(1)).unwrap(), None);
    assert!(!store.contains(key(1)));
    assert!(snapshot_seqs(&store).is_empty());
    assert_eq!(store.snapshot().seq(), 0);
    assert!(seqs_since(&store, 0).is_empty());
    assert!(matches!(
        store.records_since(1),
        Err(Error::UnknownSeq {
            since: 1,
            last_seq: 0
        })
    ));
    let stats = store.stats();
    assert_eq!((stats.last_seq, stats.applied_seq), (0, 6));
    assert_eq!((stats.live_keys, stats.live_bytes), (0, 0));

    // The limit in the middle of the batch shows exactly its prefix.
    assert_eq!(store.publish_through(4).unwrap(), 4);
    assert_shows(&store, 4, 4);
    assert_eq!(store.get(key(1)).unwrap(), Some(value(1)), "5 still held");
    assert_eq!(seqs_since(&store, 0), [1, 2, 3, 4]);
    assert_eq!(seqs_since(&store, 2), [3, 4]);
    assert_eq!(snapshot_seqs(&store), [1, 2, 3, 4]);
    let stats = store.stats();
    assert_eq!(
        (stats.last_seq, stats.applied_seq, stats.live_keys),
        (4, 6, 4)
    );

    // A lower limit is a no-op.
    assert_eq!(store.publish_through(2).unwrap(), 4);
    assert_eq!(store.publish_limit(), 4);
    assert_eq!(store.last_seq(), 4);

    assert_eq!(store.publish_through(6).unwrap(), 6);
    assert_shows(&store, 6, 4);
    assert_eq!(seqs_since(&store, 0), [1, 2, 3, 4, 5, 6]);
    assert_eq!(snapshot_seqs(&store), [3, 4, 5, 6]);
    assert_eq!(store.applied_seq(), 6);
}

#[test]
fn records_at_or_below_a_limit_set_ahead_are_visible_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), gated_options());
    assert_eq!(store.publish_through(10).unwrap(), 0);
    assert_eq!(store.publish_limit(), 10);

    apply(&store, 1..=3, 100);
    assert_shows(&store, 3, 100);
    store.apply(4, &put(4, 100).op).unwrap();
    assert_shows(&store, 4, 100);

    // A batch across the limit: its prefix is visible, the rest held.
    apply(&store, 5..=12, 100);
    assert_shows(&store, 10, 100);
    assert_eq!(store.applied_seq(), 12);
    assert_eq!(store.get(key(11)).unwrap(), None);
}

#[test]
fn a_reopened_store_holds_what_is_above_its_persisted_limit() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments, so the held records and the limit's batch span
    // several of them.
    let options = gated_options().segment_size(300);
    let store = open(dir.path(), options.clone());
    for first in (1..=30).step_by(3) {
        apply(&store, first..=first + 2, 7);
    }
    assert_eq!(store.publish_through(17).unwrap(), 17);
    drop(store);

    let store = open(dir.path(), options.clone());
    assert_eq!(store.publish_limit(), 17);
    assert_eq!(store.applied_seq(), 30);
    assert_shows(&store, 17, 7);
    assert_eq!(seqs_since(&store, 10), (11..=17).collect::<Vec<_>>());
    assert!(store.stats().segment_files > 3);

    // Applying continues after the held records; publishing goes on.
    apply(&store, 31..=32, 7);
    assert_eq!(store.publish_through(25).unwrap(), 25);
    assert_shows(&store, 25, 7);
    assert_eq!(seqs_since(&store, 20), (21..=25).collect::<Vec<_>>());
    drop(store);

    let store = open(dir.path(), options);
    assert_eq!(store.publish_limit(), 25);
    assert_eq!(store.applied_seq(), 32);
    assert_shows(&store, 25, 7);
    assert_eq!(store.publish_through(32).unwrap(), 32);
    assert_shows(&store, 32, 7);
    assert_eq!(seqs_since(&store, 0), (1..=32).collect::<Vec<_>>());
}

/// A gated store with writes 1..=6 applied, published through 2 and then
/// 5: slot 0 holds limit 2 (generation 2), slot 1 limit 5 (generation 3).
fn store_published_twice(dir: &Path) {
    let store = open(dir, gated_options());
    apply(&store, 1..=6, 100);
    store.publish_through(2).unwrap();
    store.publish_through(5).unwrap();
}

/// Flips a bit in slot `slot` (0 or 1) of the directory's `COMMITTED`.
fn damage_slot(dir: &Path, slot: usize) {
    let path = dir.join("COMMITTED");
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 48, "two 24-byte slots");
    bytes[slot * 24 + 14] ^= 0x01; // inside the limit
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn committed_takes_the_newest_valid_slot() {
    let dir = tempfile::tempdir().unwrap();
    store_published_twice(dir.path());
    let store = open(dir.path(), gated_options());
    assert_eq!(store.publish_limit(), 5);
    assert_shows(&store, 5, 100);
    drop(store);

    // The newest slot torn: the older limit, more held.
    let dir = tempfile::tempdir().unwrap();
    store_published_twice(dir.path());
    damage_slot(dir.path(), 1);
    let store = open(dir.path(), gated_options());
    assert_eq!(store.publish_limit(), 2);
    assert_shows(&store, 2, 100);
    assert_eq!(store.applied_seq(), 6);
    // The next update goes to the damaged slot and wins again.
    assert_eq!(store.publish_through(4).unwrap(), 4);
    drop(store);
    let store = open(dir.path(), gated_options());
    assert_eq!(store.publish_limit(), 4);
    drop(store);

    // The older slot damaged: the newest still counts.
    let dir = tempfile::tempdir().unwrap();
    store_published_twice(dir.path());
    damage_slot(dir.path(), 0);
    let store = open(dir.path(), gated_options());
    assert_eq!(store.publish_limit(), 5);
    assert_shows(&store, 5, 100);
}

#[test]
fn committed_with_both_slots_damaged_holds_every_log_record() {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    store_published_twice(dir.path());
    damage_slot(dir.path(), 0);
    damage_slot(dir.path(), 1);
    let store = open(dir.path(), gated_options());
    assert_eq!(store.publish_limit(), 0);
    assert_eq!(store.last_seq(), 0);
    assert_eq!(store.applied_seq(), 6);
    assert_eq!(store.get(key(1)).unwrap(), None);
    let committed = dir.path().join("COMMITTED").display().to_string();
    let warnings: Vec<_> = logged_about(&committed)
        .into_iter()
        .filter(|line| line.starts_with("WARN"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");

    assert_eq!(store.publish_through(6).unwrap(), 6);
    assert_shows(&store, 6, 100);
    drop(store);
    let store = open(dir.path(), gated_options());
    assert_eq!(store.publish_limit(), 6);
}

#[test]
fn gating_an_existing_store_shows_all_it_holds_and_creates_committed() {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Options::default());
    apply(&store, 1..=3, 100);
    drop(store);
    let committed = dir.path().join("COMMITTED");
    assert!(!committed.exists(), "an ungated store writes no COMMITTED");

    let store = open(dir.path(), gated_options());
    assert!(committed.exists());
    assert_eq!(std::fs::metadata(&committed).unwrap().len(), 48);
    assert_eq!(store.publish_limit(), 3);
    assert_shows(&store, 3, 100);
    let created = logged_about(&committed.display().to_string());
    assert!(
        created.iter().any(|line| line.starts_with("INFO")),
        "{created:?}"
    );

    apply(&store, 4..=4, 100);
    assert_eq!((store.last_seq(), store.applied_seq()), (3, 4));
    drop(store);
    let store = open(dir.path(), gated_options());
    assert_eq!((store.last_seq(), store.applied_seq()), (3, 4));
}

#[test]
fn compaction_keeps_held_records_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let options = gated_options().segment_size(400);
    let store = open(dir.path(), options.clone());
    // Eight keys, overwritten again and again: plenty of dead records.
    for first in (1..=60).step_by(4) {
        apply(&store, first..=first + 3, 8);
    }
    store.publish_through(20).unwrap();
    let before = store.stats();
    assert!(before.segment_files >= 6, "{before:?}");

    store.compact().unwrap();
    let after = store.stats();
    assert_eq!(after.compactions, 1);
    assert!(after.dead_bytes < before.dead_bytes, "{before:?} {after:?}");
    assert_shows(&store, 20, 8);
    assert_eq!(store.applied_seq(), 60);

    assert_eq!(store.publish_through(60).unwrap(), 60);
    assert_shows(&store, 60, 8);
    assert_eq!(seqs_since(&store, 40), (41..=60).collect::<Vec<_>>());
    drop(store);
    let store = open(dir.path(), options);
    assert_shows(&store, 60, 8);
    assert_eq!(store.applied_seq(), 60);
}

#[test]
fn compaction_right_below_held_records_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = gated_options().segment_size(1 << 20);
    let store = open(dir.path(), options.clone());
    apply(&store, 1..=8, 2);
    store.publish_through(8).unwrap();
    store.compact().unwrap(); // a compacted segment, then the active one
    assert_eq!(store.stats().compactions, 1);

    // Held records in the segment right after the compacted one: its id
    // is the one a new output would take.
    apply(&store, 9..=12, 2);
    store.compact().unwrap();
    assert_eq!(store.stats().compactions, 1);
    assert_shows(&store, 8, 2);
    store.publish_through(12).unwrap();
    assert_shows(&store, 12, 2);

    // Nothing held: compaction runs again.
    store.compact().unwrap();
    assert_eq!(store.stats().compactions, 2);
    drop(store);
    let store = open(dir.path(), options);
    assert_shows(&store, 12, 2);
}

#[test]
fn install_snapshot_drops_held_records_and_sets_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), gated_options());
    // A limit above the snapshot's seq must come down to it.
    store.publish_through(100).unwrap();
    apply(&store, 1..=5, 100);
    store.publish_through(3).unwrap();
    assert_eq!(store.publish_limit(), 100);

    let entries = [(2, b"a"), (7, b"b")].map(|(seq, k)| {
        Ok(SnapshotEntry {
            seq,
            key: k.to_vec(),
            value: value(seq),
        })
    });
    store.install_snapshot(8, 0x5eed, entries).unwrap();
    assert_eq!(store.publish_limit(), 8);
    assert_eq!((store.last_seq(), store.applied_seq()), (8, 8));
    assert_eq!(store.get(b"b").unwrap(), Some(value(7)));
    assert_eq!(store.get(key(1)).unwrap(), None);

    apply(&store, 9..=10, 100);
    assert_eq!((store.last_seq(), store.applied_seq()), (8, 10));
    assert_eq!(store.get(key(9)).unwrap(), None);
    drop(store);

    let store = open(dir.path(), gated_options());
    assert_eq!(store.publish_limit(), 8);
    assert_eq!((store.last_seq(), store.applied_seq()), (8, 10));
    assert_eq!(store.get(b"a").unwrap(), Some(value(2)));
    assert_eq!(store.publish_through(10).unwrap(), 10);
    assert_eq!(store.get(key(10)).unwrap(), Some(value(10)));
}

#[test]
fn adopt_history_counts_held_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), gated_options());
    apply(&store, 1..=5, 100);
    store.publish_through(2).unwrap();
    let own = store.history_id();
    let forked_at = |last_seq| History {
        id: own ^ 1,
        ancestors: vec![Ancestor { id: own, last_seq }],
    };
    // The master forked at 3: this log holds 4 and 5 beyond it.
    assert!(matches!(
        store.adopt_history(&forked_at(3)),
        Err(Error::OtherHistory { last_seq: 5, .. })
    ));
    store.adopt_history(&forked_at(5)).unwrap();
    assert_eq!(store.history_id(), own ^ 1);
}

#[test]
fn an_ungated_store_shows_everything_and_writes_no_committed() {
    for sync in [Sync::Always, Sync::Never] {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default().sync(sync);
        assert!(!options.visibility_gated());
        let store = open(dir.path(), options.clone());
        apply(&store, 1..=4, 100);
        store.apply(5, &put(5, 100).op).unwrap();
        assert_shows(&store, 5, 100);
        assert_eq!(store.applied_seq(), 5);
        assert_eq!(store.stats().applied_seq, 5);
        assert_eq!(store.publish_limit(), u64::MAX);
        assert_eq!(store.publish_through(2).unwrap(), 5);
        assert_eq!(store.publish_through(50).unwrap(), 5);
        assert_eq!(seqs_since(&store, 0), [1, 2, 3, 4, 5]);
        drop(store);
        let store = open(dir.path(), options);
        assert_eq!((store.last_seq(), store.applied_seq()), (5, 5));
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|name| name == "COMMITTED"), "{names:?}");
    }
}

/// `records_with_times_since` reads to the end of the log, held records
/// included, across segments, each with the time it was applied; after a
/// reopen (held again) it yields the same; and a `since` below a
/// compaction's horizon yields what compaction kept and says so.
#[test]
fn records_with_times_include_held_records_and_their_times() {
    let dir = tempfile::tempdir().unwrap();
    let options = gated_options().segment_size(400);
    let store = open(dir.path(), options.clone());
    let before = now_ns();
    for first in (1..=40).step_by(4) {
        apply(&store, first..=first + 3, 8);
    }
    let after = now_ns();
    store.publish_through(20).unwrap();
    assert!(store.stats().segment_files >= 3);
    let timed = |store: &Store, since: u64| -> Vec<(u64, Option<u64>)> {
        let records = store.records_with_times_since(since).unwrap();
        assert_eq!(records.until(), 40);
        records
            .map(|r| r.map(|(record, ns)| (record.seq, ns)).unwrap())
            .collect()
    };
    let read = timed(&store, 10);
    assert_eq!(
        read.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        (11..=40).collect::<Vec<_>>()
    );
    for (seq, ns) in &read {
        let ns = ns.unwrap_or_else(|| panic!("seq {seq} has no time"));
        assert!(
            (before..=after).contains(&ns),
            "seq {seq}: {before} <= {ns} <= {after}"
        );
    }
    // A batch's records share its time; later batches are not earlier.
    assert_eq!(read[2].1, read[3].1, "seqs 13 and 14 are one batch");
    assert!(read.windows(2).all(|w| w[0].1 <= w[1].1));
    assert_eq!(
        seqs_since(&store, 10).last(),
        Some(&20),
        "records_since stops at the visible"
    );
    assert!(matches!(
        store.records_with_times_since(41),
        Err(Error::UnknownSeq {
            since: 41,
            last_seq: 40
        })
    ));
    drop(store);
    let store = open(dir.path(), options);
    assert_eq!(store.applied_seq(), 40);
    assert_eq!(timed(&store, 10), read, "the same after a reopen");

    // Compaction copies the visible records of the old segments into one
    // that keeps no times, and drops the overwritten ones.
    store.compact().unwrap();
    let records = store.records_with_times_since(0).unwrap();
    let horizon = records.compacted_through().expect("compacted");
    assert!(horizon > 0 && horizon <= 20, "{horizon}");
    let read: Vec<(u64, Option<u64>)> = records
        .map(|r| r.map(|(r, ns)| (r.seq, ns)).unwrap())
        .collect();
    assert!(
        read.iter()
            .filter(|(seq, _)| *seq <= horizon)
            .all(|(_, ns)| ns.is_none()),
        "{read:?}"
    );
    assert!(
        read.iter()
            .filter(|(seq, _)| *seq > horizon)
            .all(|(_, ns)| ns.is_some()),
        "{read:?}"
    );
    assert_eq!(read.last().map(|(seq, _)| *seq), Some(40));
    assert!(
        store
            .records_with_times_since(horizon)
            .unwrap()
            .compacted_through()
            .is_none()
    );
}

/// The wall-clock time now, in nanoseconds since the UNIX epoch.
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}
