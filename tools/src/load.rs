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
//!
//! # Reads under the read contracts (duokv only)
//!
//! Reads can go to another server than writes (`read_addr`: the slave,
//! while the writes go to the master) and carry conditions
//! ([`ReadConditions`], `PROTOCOL.md` 5.2):
//!
//! - `after`: each client reads the key of its own last write, after that
//!   write's token (read your writes); a client's reads before its first
//!   write are plain;
//! - `max_staleness`: the replica answers only if it can prove its data at
//!   most that old.
//!
//! Each conditional read is asked at once and, if refused as not yet
//! visible or too stale, again with the wait (see
//! [`conditional`]), so the report can say per read
//! whether it was answered at once, after waiting, or refused
//! ([`ReadOutcomes`]). A refusal is an answer, not an error: it is counted
//! there, not in `errors` nor in `ops`. `readers` more clients may only
//! read, beside the `clients` that follow the mix; and the read server's
//! `staleness_bound_ms` can be sampled from its `info` during the run
//! ([`BoundSamples`]).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::conditional;
use crate::error::{Error, Result};
use crate::resp::RespClient;
use crate::run_dir::ProbeOutcome;
use duokv::auth::AuthToken;
use duokv::tls::ClientTls;
use duokv::{Client, ReadWhen, Token};

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
    /// TLS, for a server that speaks it (duokv only).
    #[serde(skip)]
    pub tls: Option<ClientTls>,
    /// Where reads go (e.g. the slave); `None` for `addr` (duokv only).
    pub read_addr: Option<String>,
    /// More clients that only read, beside the `clients` that follow
    /// `write_ratio`.
    pub readers: usize,
    /// The conditions every read carries (duokv only).
    pub read_when: ReadConditions,
    /// Sample the read server's `staleness_bound_ms` (a slave's `info`)
    /// this often during the run; `None`: not at all.
    pub sample_every: Option<Duration>,
}

impl LoadConfig {
    /// `clients` closed-loop clients against the duokv server at `addr`
    /// for `duration`, all writes, over 10 000 keys, 100-byte values, plain
    /// reads where they read; set the other fields to change that.
    pub fn new(addr: impl Into<String>, clients: usize, duration: Duration) -> LoadConfig {
        LoadConfig {
            addr: addr.into(),
            target: Target::Duokv,
            clients,
            duration,
            write_ratio: 1.0,
            keys: 10_000,
            value_size: 100,
            auth_token: None,
            tls: None,
            read_addr: None,
            readers: 0,
            read_when: ReadConditions::default(),
            sample_every: None,
        }
    }

    /// Refuses settings that cannot be run as asked ([`Error::Usage`]).
    pub fn check(&self) -> Result<()> {
        let usage = |message: &str| {
            Err(Error::Usage {
                message: message.into(),
            })
        };
        if self.clients == 0 {
            return usage(
                "--clients 0: give at least 1 (to only read, give --writes 0 or --readers)",
            );
        }
        if !(0.0..=1.0).contains(&self.write_ratio) {
            return Err(Error::Usage {
                message: format!(
                    "--writes {}: give a share of the operations from 0.0 to 1.0 (e.g. 0.5)",
                    self.write_ratio
                ),
            });
        }
        if self.keys == 0 {
            return usage("--keys 0: give at least 1");
        }
        if self.duration.is_zero() {
            return usage("--duration 0: give a time above 0, e.g. 10s");
        }
        if self.sample_every.is_some_and(|every| every.is_zero()) {
            return usage("--sample-every 0: give a time above 0, e.g. 10ms");
        }
        let contracts =
            self.read_addr.is_some() || !self.read_when.is_plain() || self.sample_every.is_some();
        if contracts && self.target != Target::Duokv {
            return usage(
                "--read-addr, --read-after, --read-max-staleness and --sample-every need --target duokv",
            );
        }
        if self.read_when.after && self.write_ratio <= 0.0 {
            return usage("--read-after reads each client's own last write: give --writes above 0");
        }
        if self.read_when.after && self.readers > 0 && self.read_when.max_staleness.is_none() {
            return usage(
                "--readers only read, so they have no write to read --read-after; \
                 give them --read-max-staleness, or drop --readers",
            );
        }
        Ok(())
    }
}

/// The conditions a load's reads carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ReadConditions {
    /// Read the client's own last write, after its token.
    pub after: bool,
    /// Answer only with data provably at most this old.
    pub max_staleness: Option<Duration>,
    /// How long the replica may wait for the conditions.
    pub wait: Duration,
}

impl ReadConditions {
    /// Whether reads carry no condition.
    pub fn is_plain(&self) -> bool {
        !self.after && self.max_staleness.is_none()
    }

    /// The conditions of a read after `token` (the client's last write),
    /// or `None` for a plain read: no condition applies (`after` alone,
    /// before the client's first write).
    fn when(&self, token: Option<Token>) -> Option<ReadWhen> {
        let after = if self.after { token } else { None };
        (after.is_some() || self.max_staleness.is_some()).then(|| {
            ReadWhen::new()
                .after(after)
                .max_staleness(self.max_staleness)
                .wait(self.wait)
        })
    }
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
    /// The figures of a histogram of nanoseconds.
    pub fn of(histogram: &Histogram<u64>) -> Self {
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
    /// Reads answered (with or without conditions).
    pub reads: LatencySummary,
    /// How the conditional reads ended; `None` when reads carry no
    /// condition.
    pub read_outcomes: Option<ReadOutcomes>,
    /// The read server's `staleness_bound_ms` as sampled; `None` unless
    /// asked for.
    pub staleness_bound: Option<BoundSamples>,
}

/// How a run's conditional reads ended: answered at once (the condition
/// held when the read arrived), answered after waiting, or refused; with
/// the latency of each kind.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReadOutcomes {
    /// Reads sent with a condition (answered, refused or failed).
    pub conditional: u64,
    /// Reads sent without one (with `after` alone, before a client's first
    /// write).
    pub plain: u64,
    /// Answered when asked without a wait.
    pub at_once: LatencySummary,
    /// Refused when asked at once, answered when asked with the wait; the
    /// latency covers both asks.
    pub waited: LatencySummary,
    /// Refused after the wait (or at once, for an unknown history).
    pub refused: LatencySummary,
    /// Refusals that were `NotYetVisible`.
    pub not_yet_visible: u64,
    /// Refusals that were `TooStale`.
    pub too_stale: u64,
    /// Refusals that were `UnknownHistory`.
    pub unknown_history: u64,
    /// Conditional reads that failed otherwise (also in `errors`).
    pub failed: u64,
}

impl ReadOutcomes {
    /// `part` as a share of the conditional reads, 0 to 1.
    pub fn share(&self, part: u64) -> f64 {
        if self.conditional == 0 {
            0.0
        } else {
            part as f64 / self.conditional as f64
        }
    }
}

/// The read server's `staleness_bound_ms`, sampled from its `info`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BoundSamples {
    /// How often it was sampled.
    pub every: Duration,
    /// Samples with a bound.
    pub samples: u64,
    /// Samples of `none` (no proof yet) or without the fact (not a slave),
    /// or whose `info` failed.
    pub without: u64,
    /// Median, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// Largest, ms.
    pub max_ms: Option<f64>,
}

impl BoundSamples {
    /// The figures of the bounds sampled (ms), with `without` samples that
    /// had none.
    fn of(every: Duration, bounds: &[f64], without: u64) -> BoundSamples {
        let mut sorted = bounds.to_vec();
        sorted.sort_by(f64::total_cmp);
        // Nearest rank, as the histograms' percentiles are.
        let rank = |q: f64| {
            let n = sorted.len();
            (n > 0).then(|| sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1])
        };
        BoundSamples {
            every,
            samples: sorted.len() as u64,
            without,
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: sorted.last().copied(),
        }
    }
}

impl LoadReport {
    /// Why the run counts as failed, if it does: more of its operations
    /// failed than succeeded (all of them, against a slave or a server that
    /// went away). The message says how many and what the first error was.
    pub fn failure(&self) -> Option<Error> {
        (self.errors > self.ops).then(|| Error::Failed {
            message: format!(
                "{} of {} operations failed; the first: {}",
                self.errors,
                self.errors + self.ops,
                self.first_error.as_deref().unwrap_or("unknown")
            ),
        })
    }

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
            "{} clients, {:.0}% writes, {} keys, {}-byte values, {:.1} s against {} ({})\n",
            c.clients,
            c.write_ratio * 100.0,
            c.keys,
            c.value_size,
            self.elapsed.as_secs_f64(),
            c.addr,
            c.target,
        );
        if c.readers > 0 || c.read_addr.is_some() || !c.read_when.is_plain() {
            let mut conditions = Vec::new();
            if c.read_when.after {
                conditions.push("after the client's last write".to_string());
            }
            if let Some(max) = c.read_when.max_staleness {
                conditions.push(format!("at most {max:?} stale"));
            }
            if !conditions.is_empty() {
                conditions.push(format!("waiting up to {:?}", c.read_when.wait));
            }
            text += &format!(
                "reads on {}{}{}\n",
                c.read_addr.as_deref().unwrap_or(&c.addr),
                if c.readers > 0 {
                    format!(", and by {} more clients that only read", c.readers)
                } else {
                    String::new()
                },
                if conditions.is_empty() {
                    String::new()
                } else {
                    format!(": {}", conditions.join(", "))
                }
            );
        }
        text += &format!(
            "throughput: {:.0} ops/s ({} ops, {} errors)\n",
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
        if let Some(o) = &self.read_outcomes {
            let share = |n: u64| format!("{n} ({:.1}%)", o.share(n) * 100.0);
            let refused = o.not_yet_visible + o.too_stale + o.unknown_history;
            text += &format!(
                "conditional reads: {}: answered at once {}, after waiting {}, refused {} \
                 ({} not yet visible, {} too stale, {} unknown history), failed {}; \
                 {} plain reads\n",
                o.conditional,
                share(o.at_once.count),
                share(o.waited.count),
                share(refused),
                o.not_yet_visible,
                o.too_stale,
                o.unknown_history,
                o.failed,
                o.plain
            );
            for (name, s) in [
                ("at once", &o.at_once),
                ("waited", &o.waited),
                ("refused", &o.refused),
            ] {
                if s.count > 0 {
                    text += &format!(
                        "  {name:<8} latency µs: p50 {:.1}  p99 {:.1}  max {:.1}  ({} reads)\n",
                        s.p50_us, s.p99_us, s.max_us, s.count
                    );
                }
            }
        }
        if let Some(b) = &self.staleness_bound {
            let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
            text += &format!(
                "staleness_bound_ms of {}, sampled every {:?}: p50 {}  p99 {}  max {}  \
                 ({} samples, {} without a bound)\n",
                c.read_addr.as_deref().unwrap_or(&c.addr),
                b.every,
                ms(b.p50_ms),
                ms(b.p99_ms),
                ms(b.max_ms),
                b.samples,
                b.without
            );
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
    /// Conditional reads, by how they ended.
    outcomes: Outcomes,
}

/// Conditional reads by how they ended: a latency histogram per kind.
struct Outcomes {
    plain: u64,
    at_once: Histogram<u64>,
    waited: Histogram<u64>,
    refused: Histogram<u64>,
    not_yet_visible: u64,
    too_stale: u64,
    unknown_history: u64,
    failed: u64,
}

impl Outcomes {
    fn new() -> Outcomes {
        Outcomes {
            plain: 0,
            at_once: histogram(),
            waited: histogram(),
            refused: histogram(),
            not_yet_visible: 0,
            too_stale: 0,
            unknown_history: 0,
            failed: 0,
        }
    }

    fn add(&mut self, other: &Outcomes) {
        self.plain += other.plain;
        self.at_once.add(&other.at_once).expect("same bounds");
        self.waited.add(&other.waited).expect("same bounds");
        self.refused.add(&other.refused).expect("same bounds");
        self.not_yet_visible += other.not_yet_visible;
        self.too_stale += other.too_stale;
        self.unknown_history += other.unknown_history;
        self.failed += other.failed;
    }

    fn record(&mut self, outcome: ProbeOutcome, nanos: u64) {
        match outcome {
            ProbeOutcome::AtOnce => self.at_once.saturating_record(nanos),
            ProbeOutcome::Waited => self.waited.saturating_record(nanos),
            ProbeOutcome::NotYetVisible => self.not_yet_visible += 1,
            ProbeOutcome::TooStale => self.too_stale += 1,
            ProbeOutcome::UnknownHistory => self.unknown_history += 1,
            ProbeOutcome::Failed => self.failed += 1,
        }
        if outcome.refused() {
            self.refused.saturating_record(nanos);
        }
    }

    fn summary(&self) -> ReadOutcomes {
        let refused = self.refused.len();
        ReadOutcomes {
            conditional: self.at_once.len() + self.waited.len() + refused + self.failed,
            plain: self.plain,
            at_once: LatencySummary::of(&self.at_once),
            waited: LatencySummary::of(&self.waited),
            refused: LatencySummary::of(&self.refused),
            not_yet_visible: self.not_yet_visible,
            too_stale: self.too_stale,
            unknown_history: self.unknown_history,
            failed: self.failed,
        }
    }
}

fn histogram() -> Histogram<u64> {
    // 1 ns .. 100 s at 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// One client thread's connection: the only part of the loop that knows
/// the target.
enum Connection {
    Duokv {
        /// Writes, and reads without `read_addr`.
        client: Client,
        /// Reads, with `read_addr` (boxed: a client is large, and most
        /// runs have none).
        reader: Option<Box<Client>>,
    },
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
            Target::Duokv => {
                let connect = |addr: &str| {
                    Client::builder(addr)
                        .auth_token(config.auth_token.clone())
                        .tls(config.tls.clone())
                        .connect()
                };
                Connection::Duokv {
                    client: connect(&config.addr)?,
                    reader: match config.read_addr.as_deref() {
                        Some(addr) => Some(Box::new(connect(addr)?)),
                        None => None,
                    },
                }
            }
            Target::Redis { wait } => {
                let mut client = RespClient::connect(config.addr.clone())?;
                client.ping()?;
                Connection::Redis { client, wait }
            }
        })
    }

    /// Writes `value` to `key`; the write's token, from duokv.
    fn write(&mut self, key: &str, value: &[u8]) -> Result<Option<Token>> {
        match self {
            Connection::Duokv { client, .. } => Ok(client.put(key, value)?.token()),
            Connection::Redis { client, wait } => {
                client.set(key, value)?;
                match *wait {
                    Some(ms) if client.wait(1, u64::from(ms))? < 1 => {
                        Err(Error::NoReplicaAck { ms })
                    }
                    _ => Ok(None),
                }
            }
        }
    }

    fn read(&mut self, key: &str) -> Result<()> {
        match self {
            Connection::Duokv { client, reader } => {
                let reader = reader.as_deref_mut().unwrap_or(client);
                Ok(reader.read(key).map(|_| ())?)
            }
            Connection::Redis { client, .. } => Ok(client.get(key).map(|_| ())?),
        }
    }

    /// Reads `key` under `when`, asked at once and then with the wait (see
    /// [`conditional`]); duokv only (the config is checked before).
    fn read_when(&mut self, key: &str, when: &ReadWhen) -> conditional::Asked {
        match self {
            Connection::Duokv { client, reader } => {
                conditional::read(reader.as_deref_mut().unwrap_or(client), key, when)
            }
            Connection::Redis { .. } => {
                unreachable!("LoadConfig::check refuses conditions for Redis")
            }
        }
    }
}

/// Runs the load and reports. Fails if the config cannot be run
/// ([`LoadConfig::check`]) or a client cannot connect at the start; errors
/// during the run are counted.
pub fn run(config: LoadConfig) -> Result<LoadReport> {
    config.check()?;
    let total = config.clients + config.readers;
    let mut connections = Vec::with_capacity(total);
    for _ in 0..total {
        connections.push(Connection::open(&config)?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = config
        .sample_every
        .map(|every| start_sampler(&config, every, stop.clone()))
        .transpose()?;
    let started = Instant::now();
    let threads: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let (mut config, stop) = (config.clone(), stop.clone());
            if i >= config.clients {
                // A reader: reads only.
                config.write_ratio = 0.0;
            }
            std::thread::Builder::new()
                .name(format!("load-{i}"))
                .spawn(move || client_loop(client, &config, i as u64, &stop))
        })
        .collect::<std::io::Result<_>>()?;
    std::thread::sleep(config.duration);
    stop.store(true, Ordering::Relaxed);
    let mut writes = histogram();
    let mut reads = histogram();
    let mut outcomes = Outcomes::new();
    let (mut errors, mut first_error) = (0, None);
    for thread in threads {
        let tally = thread.join().map_err(|_| Error::Failed {
            message: "a load thread panicked".into(),
        })?;
        writes.add(&tally.writes).expect("same histogram bounds");
        reads.add(&tally.reads).expect("same histogram bounds");
        outcomes.add(&tally.outcomes);
        errors += tally.errors;
        first_error = first_error.or(tally.first_error);
    }
    let elapsed = started.elapsed();
    let staleness_bound = match sampler {
        Some(thread) => Some(thread.join().map_err(|_| Error::Failed {
            message: "the info sampler panicked".into(),
        })?),
        None => None,
    };
    Ok(LoadReport {
        ops: writes.len() + reads.len(),
        errors,
        first_error,
        writes: LatencySummary::of(&writes),
        reads: LatencySummary::of(&reads),
        read_outcomes: (!config.read_when.is_plain()).then(|| outcomes.summary()),
        staleness_bound,
        elapsed,
        config,
    })
}

/// Samples the read server's `staleness_bound_ms` every `every` until
/// `stop`, on a connection of its own.
fn start_sampler(
    config: &LoadConfig,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<BoundSamples>> {
    let addr = config.read_addr.clone().unwrap_or(config.addr.clone());
    let mut client = Client::builder(addr)
        .auth_token(config.auth_token.clone())
        .tls(config.tls.clone())
        .connect()?;
    Ok(std::thread::Builder::new()
        .name("load-sampler".into())
        .spawn(move || {
            let (mut bounds, mut without) = (Vec::new(), 0);
            while !stop.load(Ordering::Relaxed) {
                let bound = client.info().ok().and_then(|facts| {
                    facts
                        .into_iter()
                        .find(|(name, _)| name == "staleness_bound_ms")
                        .and_then(|(_, value)| value.parse::<f64>().ok())
                });
                match bound {
                    Some(ms) => bounds.push(ms),
                    None => without += 1,
                }
                // The sampling pace, not a synchronisation.
                std::thread::sleep(every);
            }
            BoundSamples::of(every, &bounds, without)
        })?)
}

fn client_loop(mut client: Connection, config: &LoadConfig, seed: u64, stop: &AtomicBool) -> Tally {
    let mut tally = Tally {
        writes: histogram(),
        reads: histogram(),
        errors: 0,
        first_error: None,
        outcomes: Outcomes::new(),
    };
    let mut rng = XorShift::new(seed);
    let value = vec![b'x'; config.value_size];
    let keys = config.keys.max(1);
    let write_threshold = (config.write_ratio.clamp(0.0, 1.0) * u32::MAX as f64) as u64;
    // This client's last write: its key and token, for reads `after` it.
    let mut last_write: Option<(String, Option<Token>)> = None;
    while !stop.load(Ordering::Relaxed) {
        let mut key = format!("key-{}", rng.next() % keys);
        let is_write = (rng.next() & u64::from(u32::MAX)) < write_threshold;
        let when = if is_write {
            None
        } else {
            let token = last_write.as_ref().and_then(|(_, token)| *token);
            let when = config.read_when.when(token);
            if config.read_when.after
                && let Some((last, Some(_))) = &last_write
            {
                key.clone_from(last);
            }
            when
        };
        let started = Instant::now();
        let outcome = if is_write {
            client.write(&key, &value).map(|token| {
                last_write = Some((key.clone(), token));
            })
        } else if let Some(when) = &when {
            let asked = client.read_when(&key, when);
            let nanos = u64::try_from(asked.elapsed.as_nanos())
                .unwrap_or(u64::MAX)
                .max(1);
            tally.outcomes.record(asked.outcome, nanos);
            match asked.error {
                Some(e) => Err(e.into()),
                None if asked.outcome.answered() => Ok(()),
                // Refused: counted in the outcomes, neither an op nor an error.
                None => continue,
            }
        } else {
            if !config.read_when.is_plain() {
                tally.outcomes.plain += 1;
            }
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
