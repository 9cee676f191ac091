//! Throughput and recovery figures for `duokv-storage`, printed as a table.
//!
//! Run with `cargo bench -p duokv-storage`. It measures, on the disk that
//! holds the system temp directory (set `TMPDIR` to measure another):
//! - put throughput with `Sync::Never`, one writer;
//! - put throughput with `Sync::Always`, 1 writer and 32 writers (group
//!   commit shares one `fdatasync` between writers that wait together);
//! - get throughput, 1 and 2 reader threads;
//! - open (recovery) time of a log of 1 million records with 100-byte values.
//!
//! `DUOKV_BENCH_SECONDS` sets how long each timed phase runs (default 3);
//! `DUOKV_BENCH_ONLY=recovery` measures recovery alone, `=group` group commit
//! alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use duokv_storage::{Options, Store, Sync};

const VALUE_LEN: usize = 100;

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let seconds: f64 = std::env::var("DUOKV_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let phase = Duration::from_secs_f64(seconds);
    let value = vec![b'v'; VALUE_LEN];
    println!("duokv-storage benchmark: {VALUE_LEN}-byte values, {seconds} s per phase");
    println!("temp dir: {}", std::env::temp_dir().display());
    println!("{:<44} {:>14} {:>12}", "phase", "ops/s", "mean");

    match std::env::var("DUOKV_BENCH_ONLY").as_deref() {
        Ok("recovery") => recovery(&value),
        Ok("group") => {
            let one = put_throughput(Sync::Always, 1, phase, &value);
            report("put, Sync::Always, 1 writer", one);
            let many = put_throughput(Sync::Always, 32, phase, &value);
            report("put, Sync::Always, 32 writers", many);
            println!(
                "{:<44} {:>14.1}x",
                "group commit gain (32 writers / 1 writer)",
                many.0 / one.0
            );
        }
        _ => {
            writes_and_reads(phase, &value);
            recovery(&value);
        }
    }
}

fn writes_and_reads(phase: Duration, value: &[u8]) {
    let never = put_throughput(Sync::Never, 1, phase, value);
    report("put, Sync::Never, 1 writer", never);
    let always_1 = put_throughput(Sync::Always, 1, phase, value);
    report("put, Sync::Always, 1 writer", always_1);
    let always_32 = put_throughput(Sync::Always, 32, phase, value);
    report("put, Sync::Always, 32 writers", always_32);
    println!(
        "{:<44} {:>14.1}x",
        "group commit gain (32 writers / 1 writer)",
        always_32.0 / always_1.0
    );

    let (_dir, store, keys) = filled_store(100_000, value);
    report(
        "get, 1 reader, 100k keys",
        get_throughput(&store, keys, 1, phase),
    );
    report(
        "get, 2 readers, 100k keys",
        get_throughput(&store, keys, 2, phase),
    );
}

fn recovery(value: &[u8]) {
    let records = 1_000_000;
    let (dir, store, _) = filled_store(records, value);
    let log_bytes = store.stats().live_bytes;
    drop(store);
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let started = Instant::now();
            let store = Store::open(dir.path(), Options::default()).expect("reopen");
            let took = started.elapsed();
            assert_eq!(store.stats().live_keys, records);
            took
        })
        .collect();
    times.sort();
    println!(
        "{:<44} {:>14} {:>9.1} ms   (median of 5; min {:.1} ms; {} MiB of log)",
        "open (recovery), 1M records",
        "",
        times[2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        log_bytes >> 20
    );
}

thread_local! {
    /// Writes per fdatasync of the last put phase that synced.
    static BATCH: std::cell::Cell<Option<f64>> = const { std::cell::Cell::new(None) };
}

/// (ops per second, mean seconds per op as one caller sees it)
fn report(name: &str, (ops_per_sec, mean): (f64, f64)) {
    let batch = BATCH.with(|batch| batch.take());
    let batch = batch
        .map(|b| format!("   ({b:.1} writes per fdatasync)"))
        .unwrap_or_default();
    println!(
        "{name:<44} {ops_per_sec:>14.0} {:>9.1} µs{batch}",
        mean * 1e6
    );
}

fn put_throughput(sync: Sync, writers: usize, phase: Duration, value: &[u8]) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(Store::open(dir.path(), Options::default().sync(sync)).expect("open"));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (store, stop, done, value) =
                (store.clone(), stop.clone(), done.clone(), value.to_vec());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    store
                        .put(format!("w{w}-k{}", i % 10_000), &value)
                        .expect("put");
                    i += 1;
                }
                done.fetch_add(i, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(phase);
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("writer thread");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ops = done.load(Ordering::Relaxed) as f64;
    let syncs = store.stats().syncs;
    if syncs > 0 {
        BATCH.with(|batch| batch.set(Some(ops / syncs as f64)));
    }
    (ops / elapsed, elapsed * writers as f64 / ops)
}

fn filled_store(records: u64, value: &[u8]) -> (tempfile::TempDir, Store, u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), Options::default().sync(Sync::Never)).expect("open");
    for i in 0..records {
        store.put(format!("key-{i:010}"), value).expect("put");
    }
    store.sync().expect("sync");
    (dir, store, records)
}

fn get_throughput(store: &Store, keys: u64, readers: usize, phase: Duration) -> (f64, f64) {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for r in 0..readers {
            let (stop, done) = (&stop, &done);
            scope.spawn(move || {
                let mut i = r as u64 * 7919;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("key-{:010}", i % keys);
                    assert!(store.get(&key).expect("get").is_some());
                    i = i.wrapping_add(104_729);
                    n += 1;
                }
                done.fetch_add(n, Ordering::Relaxed);
            });
        }
        std::thread::sleep(phase);
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = started.elapsed().as_secs_f64();
    let ops = done.load(Ordering::Relaxed) as f64;
    (ops / elapsed, elapsed * readers as f64 / ops)
}
