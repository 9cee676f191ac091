//! The load generator behind `duokv load`: closed-loop clients against one
//! server, with throughput and latency percentiles.
//!
//! Each of `clients` threads holds its own [`Client`] and issues one request
//! at a time, as fast as the replies come (a closed loop), choosing a write
//! (`put`) with probability `write_ratio` and a read otherwise, over keys
//! `key-0 .. key-(keys-1)`. Latencies go into an HDR histogram per thread
//! (3 significant digits, so percentiles are exact to 0.1%), merged at the
//! end; no sample list grows with the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::{Client, Error, Result};

/// What load to generate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadConfig {
    /// The server's address.
    pub addr: String,
    /// Closed-loop client threads.
    pub clients: usize,
    /// How long to run.
    pub duration: Duration,
    /// Share of operations that are writes, from 0.0 to 1.0.
    pub write_ratio: f64,
    /// Number of distinct keys.
    pub keys: u64,
    /// Bytes per written value.
    pub value_size: usize,
}

/// Latency figures of one kind of operation, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LatencySummary {
    /// Operations measured.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Slowest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl LatencySummary {
    fn of(histogram: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1e3;
        LatencySummary {
            count: histogram.len(),
            p50_us: us(histogram.value_at_quantile(0.50)),
            p90_us: us(histogram.value_at_quantile(0.90)),
            p99_us: us(histogram.value_at_quantile(0.99)),
            p999_us: us(histogram.value_at_quantile(0.999)),
            max_us: us(histogram.max()),
            mean_us: histogram.mean() / 1e3,
        }
    }
}

/// What a load run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    /// The run's settings.
    pub config: LoadConfig,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Successful operations.
    pub ops: u64,
    /// Failed operations (each counted, the run goes on).
    pub errors: u64,
    /// The first error seen, if any.
    pub first_error: Option<String>,
    /// Writes.
    pub writes: LatencySummary,
    /// Reads.
    pub reads: LatencySummary,
}

impl LoadReport {
    /// Successful operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// The report as a JSON document, throughput included.
    pub fn to_json(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        value["ops_per_sec"] = serde_json::json!(self.ops_per_sec());
        serde_json::to_string_pretty(&value).unwrap_or_default()
    }

    /// A few lines for a terminal.
    pub fn to_text(&self) -> String {
        let c = &self.config;
        let mut text = format!(
            "{} clients, {:.0}% writes, {} keys, {}-byte values, {:.1} s against {}\n\
             throughput: {:.0} ops/s ({} ops, {} errors)\n",
            c.clients,
            c.write_ratio * 100.0,
            c.keys,
            c.value_size,
            self.elapsed.as_secs_f64(),
            c.addr,
            self.ops_per_sec(),
            self.ops,
            self.errors
        );
        for (name, s) in [("writes", &self.writes), ("reads", &self.reads)] {
            if s.count > 0 {
                text += &format!(
                    "{name:<6} latency µs: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}  ({} ops)\n",
                    s.p50_us, s.p90_us, s.p99_us, s.p999_us, s.max_us, s.mean_us, s.count
                );
            }
        }
        if let Some(error) = &self.first_error {
            text += &format!("first error: {error}\n");
        }
        text
    }
}

/// One thread's tallies.
struct Tally {
    writes: Histogram<u64>,
    reads: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

fn histogram() -> Histogram<u64> {
    // 1 ns .. 100 s at 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// Runs the load and reports. Fails only if a client cannot connect at the
/// start; errors during the run are counted.
pub fn run(config: LoadConfig) -> Result<LoadReport> {
    let clients = config.clients.max(1);
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(Client::connect(config.addr.clone())?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let (config, stop) = (config.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("load-{i}"))
                .spawn(move || client_loop(client, &config, i as u64, &stop))
        })
        .collect::<std::io::Result<_>>()?;
    std::thread::sleep(config.duration);
    stop.store(true, Ordering::Relaxed);
    let mut writes = histogram();
    let mut reads = histogram();
    let (mut errors, mut first_error) = (0, None);
    for thread in threads {
        let tally = thread.join().map_err(|_| Error::Internal {
            message: "a load thread panicked".into(),
        })?;
        writes.add(&tally.writes).expect("same histogram bounds");
        reads.add(&tally.reads).expect("same histogram bounds");
        errors += tally.errors;
        first_error = first_error.or(tally.first_error);
    }
    let elapsed = started.elapsed();
    Ok(LoadReport {
        ops: writes.len() + reads.len(),
        errors,
        first_error,
        writes: LatencySummary::of(&writes),
        reads: LatencySummary::of(&reads),
        elapsed,
        config,
    })
}

fn client_loop(mut client: Client, config: &LoadConfig, seed: u64, stop: &AtomicBool) -> Tally {
    let mut tally = Tally {
        writes: histogram(),
        reads: histogram(),
        errors: 0,
        first_error: None,
    };
    let mut rng = XorShift::new(seed);
    let value = vec![b'x'; config.value_size];
    let keys = config.keys.max(1);
    let write_threshold = (config.write_ratio.clamp(0.0, 1.0) * u32::MAX as f64) as u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("key-{}", rng.next() % keys);
        let is_write = (rng.next() & u64::from(u32::MAX)) < write_threshold;
        let started = Instant::now();
        let outcome = if is_write {
            client.put(&key, &value).map(|_| ())
        } else {
            client.read(&key).map(|_| ())
        };
        let nanos = u64::try_from(started.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        match outcome {
            Ok(()) if is_write => tally.writes.saturating_record(nanos),
            Ok(()) => tally.reads.saturating_record(nanos),
            Err(e) => {
                tally.errors += 1;
                tally
                    .first_error
                    .get_or_insert_with(|| crate::error::chain(&e));
            }
        }
    }
    tally
}

/// A small, fast, seeded generator: enough to spread keys, not for secrets.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}
