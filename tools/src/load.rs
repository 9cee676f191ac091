//! The load generator behind `duokv load`: closed-loop clients against one
//! server, with throughput and latency percentiles.
//!
//! Each of `clients` threads holds its own connection and issues one
//! request at a time, as fast as the replies come (a closed loop), choosing
//! a write with probability `write_ratio` and a read otherwise, over keys
//! `key-0 .. key-(keys-1)`. Latencies go into an HDR histogram per thread
//! (3 significant digits, so percentiles are exact to 0.1%), merged at the
//! end; no sample list grows with the run.
//!
//! The server is duokv or, for a side-by-side benchmark, Redis (the
//! [`Target`]). Both share the loop, the keys, the values and the mix; only
//! the call per operation differs: a duokv write is a `put` through a
//! [`Client`], a Redis write a `SET` through a [`RespClient`], optionally
//! followed by `WAIT 1 <ms>` so that it counts only once a replica has it,
//! as a duokv write does under synchronous replication.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::error::{Error, Result};
use crate::resp::RespClient;
use duokv::Client;
use duokv::auth::AuthToken;

/// Which kind of server a load run drives.
///
/// In JSON it is an object named by `kind`: `{"kind": "duokv"}` or
/// `{"kind": "redis", "wait_ms": 100}` (`null` without `WAIT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    /// A duokv server, through [`Client`]: writes are `put`s, reads `read`s.
    Duokv,
    /// A Redis server, through [`RespClient`]: writes are `SET`, reads
    /// `GET`.
    Redis {
        /// With `Some(ms)`, each `SET` is followed by `WAIT 1 ms` on the same
        /// connection; the write is one operation whose latency covers both
        /// round trips, and a `WAIT` that reports no replica is an error
        /// ([`Error::NoReplicaAck`]). `Some(0)` waits without limit,
        /// as in Redis, up to the client's 30 s read timeout.
        #[serde(rename = "wait_ms")]
        wait: Option<u32>,
    },
}

impl Target {
    /// The target with `--redis-wait-ms` applied: `wait` goes to a Redis
    /// target; with a duokv target it is an error ([`Error::Usage`]).
    pub fn with_redis_wait(self, wait: Option<u32>) -> Result<Target> {
        match (self, wait) {
            (Target::Duokv, None) => Ok(Target::Duokv),
            (Target::Duokv, Some(_)) => Err(Error::Usage {
                message: "--redis-wait-ms needs --target redis".into(),
            }),
            (Target::Redis { .. }, wait) => Ok(Target::Redis { wait }),
        }
    }
}

/// `duokv`, `redis`, or `redis, SET then WAIT 1 <ms>`.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Duokv => f.write_str("duokv"),
            Target::Redis { wait: None } => f.write_str("redis"),
            Target::Redis { wait: Some(ms) } => write!(f, "redis, SET then WAIT 1 {ms}"),
        }
    }
}

/// Parses `duokv` or `redis` (a Redis target without `WAIT`).
impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "duokv" => Ok(Target::Duokv),
            "redis" => Ok(Target::Redis { wait: None }),
            other => Err(format!("unknown target `{other}`: use duokv or redis")),
        }
    }
}

/// What load to generate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadConfig {
    /// The server's address.
    pub addr: String,
    /// Which kind of server it is.
    pub target: Target,
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
    /// The server's shared secret, if it wants one (duokv only). Never
    /// written to a report.
    #[serde(skip)]
    pub auth_token: Option<AuthToken>,
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
            "{} clients, {:.0}% writes, {} keys, {}-byte values, {:.1} s against {} ({})\n\
             throughput: {:.0} ops/s ({} ops, {} errors)\n",
            c.clients,
            c.write_ratio * 100.0,
            c.keys,
            c.value_size,
            self.elapsed.as_secs_f64(),
            c.addr,
            c.target,
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

/// One client thread's connection: the only part of the loop that knows
/// the target.
enum Connection {
    Duokv(Client),
    Redis {
        client: RespClient,
        wait: Option<u32>,
    },
}

impl Connection {
    /// Connects; a Redis connection is also pinged, so that a server that
    /// is not Redis (or wants a password) fails the run at the start rather
    /// than every operation of it.
    fn open(config: &LoadConfig) -> Result<Connection> {
        Ok(match config.target {
            Target::Duokv => Connection::Duokv(
                Client::builder(config.addr.clone())
                    .auth_token(config.auth_token.clone())
                    .connect()?,
            ),
            Target::Redis { wait } => {
                let mut client = RespClient::connect(config.addr.clone())?;
                client.ping()?;
                Connection::Redis { client, wait }
            }
        })
    }

    fn write(&mut self, key: &str, value: &[u8]) -> Result<()> {
        match self {
            Connection::Duokv(client) => Ok(client.put(key, value).map(|_| ())?),
            Connection::Redis { client, wait } => {
                client.set(key, value)?;
                match *wait {
                    Some(ms) if client.wait(1, u64::from(ms))? < 1 => {
                        Err(Error::NoReplicaAck { ms })
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    fn read(&mut self, key: &str) -> Result<()> {
        match self {
            Connection::Duokv(client) => Ok(client.read(key).map(|_| ())?),
            Connection::Redis { client, .. } => Ok(client.get(key).map(|_| ())?),
        }
    }
}

/// Runs the load and reports. Fails only if a client cannot connect at the
/// start; errors during the run are counted.
pub fn run(config: LoadConfig) -> Result<LoadReport> {
    let clients = config.clients.max(1);
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(Connection::open(&config)?);
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
        let tally = thread.join().map_err(|_| Error::Failed {
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

fn client_loop(mut client: Connection, config: &LoadConfig, seed: u64, stop: &AtomicBool) -> Tally {
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
            client.write(&key, &value)
        } else {
            client.read(&key)
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
                    .get_or_insert_with(|| duokv::error::chain(&e));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_flags_parse_and_combine() {
        let redis = "redis".parse::<Target>().unwrap();
        assert_eq!(
            redis.with_redis_wait(Some(100)).unwrap(),
            Target::Redis { wait: Some(100) }
        );
        assert_eq!(
            "duokv"
                .parse::<Target>()
                .unwrap()
                .with_redis_wait(None)
                .unwrap(),
            Target::Duokv
        );
        assert!(matches!(
            Target::Duokv.with_redis_wait(Some(5)),
            Err(Error::Usage { .. })
        ));
        assert!("memcached".parse::<Target>().is_err());
    }

    #[test]
    fn target_names_itself_in_json_and_text() {
        let json = |t: Target| serde_json::to_value(t).unwrap();
        assert_eq!(json(Target::Duokv), serde_json::json!({"kind": "duokv"}));
        assert_eq!(
            json(Target::Redis { wait: Some(100) }),
            serde_json::json!({"kind": "redis", "wait_ms": 100})
        );
        assert_eq!(
            Target::Redis { wait: Some(100) }.to_string(),
            "redis, SET then WAIT 1 100"
        );
    }
}
