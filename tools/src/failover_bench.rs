//! `duokv bench-failover`: how long writes stop when the roles of a pair
//! change, as the server and as its clients see it, and whether any
//! acknowledged write is lost.
//!
//! The run starts a master and a slave as child processes (this very
//! executable as `duokv server`, as [`demo`](mod@crate::demo) does: runtime
//! ports on 127.0.0.1, stores in a temporary directory), or uses a running
//! pair. `clients` threads write in a closed loop, each to keys of its own
//! (`c<client>-<n>`), each value starting with the client's write counter.
//! A client follows the roles as an application would: a `NotMaster` sends
//! it to the master it names, a refused connection to the other node, and
//! a `SwitchingOver`, a `ReplicaUnavailable` or a broken connection makes
//! it retry the same write; the first retry goes at once, the next after
//! `retry_pause`, doubling up to `retry_pause_max`. So it keeps writing
//! across every role change, and the figures include that policy's pauses.
//!
//! Meanwhile the run changes roles, `interval` of steady load before each:
//!
//! - `switchovers` planned switchovers ([`Client::failover`]), alternating
//!   the master. Each reports the server's `write_window_ms` (from the
//!   fence to the slave's takeover) and the gap the clients saw: from the
//!   last write acknowledged by the old master to the first acknowledged
//!   by the new one, across all clients. Writes are told apart by the
//!   history id of their receipt, since every new master starts a history
//!   of its own.
//! - `promotions` (spawned pairs only): the master is killed with SIGKILL,
//!   the slave is promoted ([`Client::promote`], in the pair's replication
//!   mode) once it has seen its link drop, and the killed node is started
//!   again (it finds the new term and follows). The figure is the time from
//!   the promote call to the first write acknowledged by the new master. A
//!   sync master needs its slave to acknowledge anything, so in sync mode
//!   the killed node is restarted as soon as the promotion returns and the
//!   figure includes its restart; in async mode it is restarted after the
//!   first acknowledged write.
//!
//! At the end the writers stop and every key is read on the final master:
//! each must hold its last acknowledged value or a later one of the same
//! client. A key that does not is a lost acknowledged write. A planned
//! switchover must lose none in either mode; a promotion after a crash must
//! lose none in sync mode, and may in async mode (writes the master had
//! acknowledged before they reached the slave).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::error::{Error, Result};
use duokv::auth::AuthToken;
use duokv::tls::ClientTls;
use duokv::{Client, ReplicationMode};

/// How long a server may take to come up, to stop, or a pair to heal.
const PATIENCE: Duration = Duration::from_secs(30);

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(5);

/// Where the pair comes from.
#[derive(Debug, Clone)]
pub enum PairSource {
    /// Start a master and a slave as child processes.
    Spawn {
        /// The program that runs a replica: the `duokv` executable itself.
        server_bin: PathBuf,
        /// The arguments before the replica's flags: `server`.
        server_args: Vec<String>,
        /// The servers' `--fsync` policy.
        fsync: String,
        /// Where the servers' logs go; `None`: a temporary directory.
        logs: Option<PathBuf>,
    },
    /// A running pair: the master's and the slave's addresses.
    Running {
        /// The master's address.
        master: String,
        /// The slave's address.
        slave: String,
    },
}

/// What `duokv bench-failover` runs.
#[derive(Debug, Clone)]
pub struct FailoverConfig {
    /// The pair.
    pub pair: PairSource,
    /// The spawned master's replication mode, and the promoted masters'.
    pub mode: ReplicationMode,
    /// Closed-loop writer threads.
    pub clients: usize,
    /// Planned switchovers, alternating the master.
    pub switchovers: usize,
    /// Promotions after a SIGKILL of the master (spawned pairs only).
    pub promotions: usize,
    /// Steady load before each role change, and after the last.
    pub interval: Duration,
    /// How long a master waits for its slave in a switchover.
    pub timeout: Duration,
    /// Keys per client.
    pub keys_per_client: u64,
    /// Bytes per value.
    pub value_size: usize,
    /// A writer's first pause before a retry.
    pub retry_pause: Duration,
    /// A writer's longest pause before a retry.
    pub retry_pause_max: Duration,
    /// The servers' shared secret, if they want one. Never reported.
    pub auth_token: Option<AuthToken>,
    /// TLS, for a running pair that speaks it.
    pub tls: Option<ClientTls>,
}

impl FailoverConfig {
    /// 64 clients over a sync pair this executable starts as `duokv
    /// server` (so call this from the `duokv` binary, or set `pair`), 20
    /// switchovers a second apart, no promotion, 64 keys a client, 100-byte
    /// values, retries after 1 ms doubling up to 8 ms.
    pub fn new() -> Result<FailoverConfig> {
        Ok(FailoverConfig {
            pair: PairSource::Spawn {
                server_bin: std::env::current_exe()?,
                server_args: vec!["server".into()],
                fsync: "always".into(),
                logs: None,
            },
            mode: ReplicationMode::Sync,
            clients: 64,
            switchovers: 20,
            promotions: 0,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            keys_per_client: 64,
            value_size: 100,
            retry_pause: Duration::from_millis(1),
            retry_pause_max: Duration::from_millis(8),
            auth_token: None,
            tls: None,
        })
    }

    /// Refuses settings that cannot be run ([`Error::Usage`]).
    pub fn check(&self) -> Result<()> {
        let usage = |message: &str| {
            Err(Error::Usage {
                message: message.into(),
            })
        };
        if self.clients == 0 {
            return usage("no clients: give --clients above 0");
        }
        if self.keys_per_client == 0 {
            return usage("--keys-per-client must be above 0");
        }
        if self.promotions > 0 && matches!(self.pair, PairSource::Running { .. }) {
            return usage(
                "--promotions kill the master with SIGKILL and restart it: only for a pair this \
                 tool starts (drop --master and --slave)",
            );
        }
        if self.interval.is_zero() {
            return usage("--interval 0: give a time above 0, e.g. 1s");
        }
        if self.timeout.is_zero() {
            return usage("--timeout 0: give a time above 0, e.g. 5s");
        }
        if self.value_size < 24 {
            return usage("--value-size must be at least 24 bytes (the write counter)");
        }
        Ok(())
    }
}

/// Figures of a few samples, in ms: nearest-rank percentiles.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spread {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: Option<f64>,
    /// 99th percentile (the largest below 100 samples).
    pub p99_ms: Option<f64>,
    /// Largest.
    pub max_ms: Option<f64>,
}

impl Spread {
    /// The spread of `samples`, ms; `None`s are left out.
    pub fn of(samples: impl IntoIterator<Item = Option<f64>>) -> Spread {
        let mut sorted: Vec<f64> = samples.into_iter().flatten().collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let rank =
            |q: f64| (n > 0).then(|| sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1]);
        Spread {
            count: n,
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: sorted.last().copied(),
        }
    }
}

/// One planned switchover.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Switchover {
    /// The old master.
    pub from: String,
    /// The new master.
    pub to: String,
    /// When the failover call started, ms from the run's start.
    pub at_ms: f64,
    /// How long the failover call took, as the caller saw it.
    pub call_ms: f64,
    /// The server's `write_window_ms`: fence to the slave's takeover.
    pub write_window_ms: Option<f64>,
    /// The clients' gap: the last write acknowledged by the old master to
    /// the first acknowledged by the new one; `None` if either is missing.
    pub client_gap_ms: Option<f64>,
    /// Writes acknowledged by the new master that needed a retry.
    pub retried_writes: u64,
    /// The error, if the switchover failed (the pair is then as it was).
    pub error: Option<String>,
}

/// One promotion after a SIGKILL of the master.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Promotion {
    /// The killed master.
    pub killed: String,
    /// The promoted slave.
    pub promoted: String,
    /// When the master was killed, ms from the run's start.
    pub killed_at_ms: f64,
    /// From the kill to the slave's `link: down`.
    pub detect_ms: f64,
    /// How long the promote call took, as the caller saw it.
    pub call_ms: f64,
    /// The server's `promote_ms`.
    pub promote_ms: Option<f64>,
    /// From the promote call's start to the first write acknowledged by the
    /// new master.
    pub to_first_write_ms: Option<f64>,
    /// The clients' gap: the last write acknowledged by the killed master
    /// to the first acknowledged by the new one.
    pub client_gap_ms: Option<f64>,
    /// Whether the killed node was restarted before the first write (sync
    /// mode: the figure includes its restart).
    pub restarted_before_first_write: bool,
    /// The error, if the promotion failed.
    pub error: Option<String>,
}

/// How the writers' attempts ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Attempts {
    /// Writes acknowledged.
    pub acknowledged: u64,
    /// Acknowledged writes that needed at least one retry.
    pub retried_writes: u64,
    /// Refused with `SwitchingOver`.
    pub switching_over: u64,
    /// Refused with `NotMaster` (the writer then followed it).
    pub not_master: u64,
    /// Failed with `ReplicaUnavailable`.
    pub replica_unavailable: u64,
    /// Failed to connect, or the connection broke or timed out.
    pub connection: u64,
    /// Any other failure.
    pub other: u64,
    /// The first other failure.
    pub first_other: Option<String>,
}

impl Attempts {
    fn add(&mut self, o: &Attempts) {
        self.acknowledged += o.acknowledged;
        self.retried_writes += o.retried_writes;
        self.switching_over += o.switching_over;
        self.not_master += o.not_master;
        self.replica_unavailable += o.replica_unavailable;
        self.connection += o.connection;
        self.other += o.other;
        if self.first_other.is_none() {
            self.first_other.clone_from(&o.first_other);
        }
    }

    /// Retried writes as a share of the acknowledged, 0 to 1.
    pub fn retried_share(&self) -> f64 {
        if self.acknowledged == 0 {
            0.0
        } else {
            self.retried_writes as f64 / self.acknowledged as f64
        }
    }
}

/// What the final master holds of the acknowledged writes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    /// The node read.
    pub master: String,
    /// Keys with an acknowledged write.
    pub keys_checked: u64,
    /// Keys whose last acknowledged write (and every later one) is missing.
    pub lost: u64,
    /// A few of them: key, acknowledged counter, counter found.
    pub examples: Vec<(String, u64, Option<u64>)>,
}

/// The settings a report repeats (the token left out).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReportedConfig {
    /// `spawned` or `running`.
    pub pair: String,
    /// The replication mode.
    pub mode: String,
    /// The servers' `--fsync`, for a spawned pair.
    pub fsync: Option<String>,
    /// Writer threads.
    pub clients: usize,
    /// Switchovers asked.
    pub switchovers: usize,
    /// Promotions asked.
    pub promotions: usize,
    /// Steady load before each change, ms.
    pub interval_ms: f64,
    /// The failover timeout, ms.
    pub timeout_ms: f64,
    /// Keys per client.
    pub keys_per_client: u64,
    /// Bytes per value.
    pub value_size: usize,
    /// First and longest pause before a retry, ms.
    pub retry_pause_ms: (f64, f64),
}

/// What a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailoverReport {
    /// The settings.
    pub config: ReportedConfig,
    /// Wall time of the run, s.
    pub elapsed_s: f64,
    /// Each switchover.
    pub switchovers: Vec<Switchover>,
    /// Each promotion.
    pub promotions: Vec<Promotion>,
    /// The server's write window over the switchovers.
    pub write_window: Spread,
    /// The clients' gap over the switchovers.
    pub switchover_gap: Spread,
    /// Promote call to first acknowledged write.
    pub promote_to_first_write: Spread,
    /// The server's `promote_ms`.
    pub promote_ms: Spread,
    /// The clients' gap over the promotions (last write on the killed
    /// master to the first on the new one).
    pub promotion_gap: Spread,
    /// The writers' attempts.
    pub attempts: Attempts,
    /// The check on the final master.
    pub verification: Verification,
}

impl FailoverReport {
    /// The report as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Tables for a terminal.
    pub fn to_text(&self) -> String {
        let c = &self.config;
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        let mut text = format!(
            "{} pair, {} replication{}, {} clients, {} keys each, {}-byte values, {:.1} s\n",
            c.pair,
            c.mode,
            c.fsync
                .as_ref()
                .map(|f| format!(", --fsync {f}"))
                .unwrap_or_default(),
            c.clients,
            c.keys_per_client,
            c.value_size,
            self.elapsed_s
        );
        if !self.switchovers.is_empty() {
            text += "switchover  from -> to                                window ms  client gap ms  retried  call ms\n";
            for (i, s) in self.switchovers.iter().enumerate() {
                text += &format!(
                    "{:>10}  {:<40}  {:>9}  {:>13}  {:>7}  {:>7.3}{}\n",
                    i + 1,
                    format!("{} -> {}", s.from, s.to),
                    ms(s.write_window_ms),
                    ms(s.client_gap_ms),
                    s.retried_writes,
                    s.call_ms,
                    s.error
                        .as_ref()
                        .map(|e| format!("  FAILED: {e}"))
                        .unwrap_or_default()
                );
            }
            for (name, s) in [
                ("server write window", &self.write_window),
                ("client gap", &self.switchover_gap),
            ] {
                text += &format!(
                    "{name}: p50 {} ms  p99 {} ms  max {} ms  ({} switchovers)\n",
                    ms(s.p50_ms),
                    ms(s.p99_ms),
                    ms(s.max_ms),
                    s.count
                );
            }
        }
        if !self.promotions.is_empty() {
            text += "promotion  killed -> promoted                          detect ms  promote_ms  to first write ms  client gap ms\n";
            for (i, p) in self.promotions.iter().enumerate() {
                text += &format!(
                    "{:>9}  {:<40}  {:>9.3}  {:>10}  {:>17}  {:>13}{}\n",
                    i + 1,
                    format!("{} -> {}", p.killed, p.promoted),
                    p.detect_ms,
                    ms(p.promote_ms),
                    ms(p.to_first_write_ms),
                    ms(p.client_gap_ms),
                    p.error
                        .as_ref()
                        .map(|e| format!("  FAILED: {e}"))
                        .unwrap_or_default()
                );
            }
            for (name, s) in [
                ("promote call to first write", &self.promote_to_first_write),
                ("server promote_ms", &self.promote_ms),
                ("client gap", &self.promotion_gap),
            ] {
                text += &format!(
                    "{name}: p50 {} ms  p99 {} ms  max {} ms  ({} promotions)\n",
                    ms(s.p50_ms),
                    ms(s.p99_ms),
                    ms(s.max_ms),
                    s.count
                );
            }
        }
        let a = &self.attempts;
        text += &format!(
            "writes: {} acknowledged, {} needed a retry ({:.4}%); failed attempts: {} switching \
             over, {} not master, {} replica unavailable, {} connection, {} other\n",
            a.acknowledged,
            a.retried_writes,
            a.retried_share() * 100.0,
            a.switching_over,
            a.not_master,
            a.replica_unavailable,
            a.connection,
            a.other
        );
        if let Some(e) = &a.first_other {
            text += &format!("first other failure: {e}\n");
        }
        let v = &self.verification;
        text += &format!(
            "acknowledged writes lost: {} (of {} keys read on the final master {})\n",
            v.lost, v.keys_checked, v.master
        );
        for (key, acked, found) in &v.examples {
            text += &format!(
                "  {key}: acknowledged #{acked}, found {}\n",
                found.map_or("nothing".to_string(), |f| format!("#{f}"))
            );
        }
        text
    }
}

/// Runs the benchmark; `stop` (Ctrl-C) ends it early, with the report so
/// far.
pub fn run(config: &FailoverConfig, stop: &AtomicBool) -> Result<FailoverReport> {
    config.check()?;
    let mut pair = Pair::open(config)?;
    let outcome = measure(config, &mut pair, stop);
    pair.stop();
    outcome
}

fn measure(config: &FailoverConfig, pair: &mut Pair, stop: &AtomicBool) -> Result<FailoverReport> {
    let started = Instant::now();
    let shared = Arc::new(Shared {
        started,
        stop: AtomicBool::new(false),
        first_ack: Mutex::new(HashMap::new()),
    });
    let addrs = [pair.nodes[0].addr.clone(), pair.nodes[1].addr.clone()];
    let threads: Vec<_> = (0..config.clients)
        .map(|id| {
            let (config, shared, addrs) = (config.clone(), shared.clone(), addrs.clone());
            std::thread::Builder::new()
                .name(format!("writer-{id}"))
                .spawn(move || writer(id, &config, &addrs, &shared))
        })
        .collect::<std::io::Result<_>>()?;
    let mut switchovers = Vec::new();
    let mut promotions = Vec::new();
    let mut history = pair.history(pair.master)?;
    let mut changes = Ok(());
    for _ in 0..config.switchovers {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let result = pause(config.interval, stop)
            .and_then(|()| switchover(config, pair, &shared, &mut history));
        match result {
            Ok(s) => switchovers.push(s),
            Err(e) => {
                changes = Err(e);
                break;
            }
        }
    }
    for _ in 0..config.promotions {
        if changes.is_err() || stop.load(Ordering::SeqCst) {
            break;
        }
        let result = pause(config.interval, stop)
            .and_then(|()| promotion(config, pair, &shared, &mut history));
        match result {
            Ok(p) => promotions.push(p),
            Err(e) => changes = Err(e),
        }
    }
    if changes.is_ok() {
        changes = pause(config.interval, stop);
    }
    shared.stop.store(true, Ordering::SeqCst);
    let mut spans: HashMap<u64, Span> = HashMap::new();
    let mut attempts = Attempts::default();
    let mut acked: Vec<(String, u64)> = Vec::new();
    for thread in threads {
        let tally = thread.join().map_err(|_| Error::Failed {
            message: "a writer thread panicked".into(),
        })?;
        for (history, span) in tally.spans {
            spans
                .entry(history)
                .and_modify(|merged| merged.merge(&span))
                .or_insert(span);
        }
        attempts.add(&tally.attempts);
        acked.extend(tally.acked);
    }
    let elapsed = started.elapsed();
    changes?;
    let verification = verify(config, pair, &acked)?;
    fill_in(&mut switchovers, &mut promotions, &spans);
    let switchovers: Vec<Switchover> = switchovers.into_iter().map(|(s, _)| s).collect();
    let promotions: Vec<Promotion> = promotions.into_iter().map(|(p, _)| p).collect();
    Ok(FailoverReport {
        config: reported(config),
        elapsed_s: elapsed.as_secs_f64(),
        write_window: Spread::of(switchovers.iter().map(|s| s.write_window_ms)),
        switchover_gap: Spread::of(switchovers.iter().map(|s| s.client_gap_ms)),
        promote_to_first_write: Spread::of(promotions.iter().map(|p| p.to_first_write_ms)),
        promote_ms: Spread::of(promotions.iter().map(|p| p.promote_ms)),
        promotion_gap: Spread::of(promotions.iter().map(|p| p.client_gap_ms)),
        switchovers,
        promotions,
        attempts,
        verification,
    })
}

/// The histories on both sides of a role change (the old master's, and
/// the new one's if it took over), and when the change was asked, from the
/// run's start.
#[derive(Debug, Clone, Copy)]
struct Histories {
    old: u64,
    new: Option<u64>,
    asked: Duration,
}

/// Steady load for `interval`, unless stopped: the pace of the run, not a
/// synchronisation.
fn pause(interval: Duration, stop: &AtomicBool) -> Result<()> {
    let until = Instant::now() + interval;
    while Instant::now() < until {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        std::thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
    }
    Ok(())
}

/// One planned switchover of the pair's master, waiting first for the pair
/// to be whole and then for the new master's first acknowledged write.
fn switchover(
    config: &FailoverConfig,
    pair: &mut Pair,
    shared: &Shared,
    history: &mut u64,
) -> Result<(Switchover, Histories)> {
    pair.wait_whole()?;
    let (from, to) = (pair.master, 1 - pair.master);
    let mut client = pair.client(from);
    let at = shared.started.elapsed();
    let called = Instant::now();
    let outcome = client.failover(config.timeout);
    let call = called.elapsed();
    let mut switchover = Switchover {
        from: pair.nodes[from].addr.clone(),
        to: pair.nodes[to].addr.clone(),
        at_ms: ms(at),
        call_ms: ms(call),
        write_window_ms: None,
        client_gap_ms: None,
        retried_writes: 0,
        error: None,
    };
    let histories = match outcome {
        Ok(facts) => {
            switchover.write_window_ms =
                fact(&facts, "write_window_ms").and_then(|v| v.parse().ok());
            let new = fact(&facts, "history_id").and_then(|v| u64::from_str_radix(v, 16).ok());
            let histories = Histories {
                old: *history,
                new,
                asked: at,
            };
            pair.master = to;
            if let Some(new) = new {
                *history = new;
                shared.wait_first_ack(new)?;
            }
            info!(
                "switchover to {}: window {} ms",
                switchover.to,
                switchover.write_window_ms.unwrap_or(f64::NAN)
            );
            histories
        }
        Err(e) => {
            warn!("switchover from {} failed: {e}", switchover.from);
            switchover.error = Some(duokv::error::chain(&e));
            Histories {
                old: *history,
                new: None,
                asked: at,
            }
        }
    };
    Ok((switchover, histories))
}

/// One promotion: SIGKILL the master, wait for the slave to see its link
/// drop, promote it, restart the killed node (before the first write in
/// sync mode, after it in async mode).
fn promotion(
    config: &FailoverConfig,
    pair: &mut Pair,
    shared: &Shared,
    history: &mut u64,
) -> Result<(Promotion, Histories)> {
    pair.wait_whole()?;
    let (killed, promoted) = (pair.master, 1 - pair.master);
    let killed_at = shared.started.elapsed();
    let kill = Instant::now();
    pair.nodes[killed].kill()?;
    let mut client = pair.client(promoted);
    poll("the slave to see its master gone", || {
        client
            .info()
            .ok()
            .filter(|facts| fact(facts, "link") == Some("down"))
    })?;
    let detect = kill.elapsed();
    let restart_first = config.mode != ReplicationMode::Async;
    let replica = pair.nodes[killed].addr.clone();
    let called = Instant::now();
    let call_at = shared.started.elapsed();
    let outcome = client.promote(Some(&replica), config.mode, false);
    let call = called.elapsed();
    let mut promotion = Promotion {
        killed: pair.nodes[killed].addr.clone(),
        promoted: pair.nodes[promoted].addr.clone(),
        killed_at_ms: ms(killed_at),
        detect_ms: ms(detect),
        call_ms: ms(call),
        promote_ms: None,
        to_first_write_ms: None,
        client_gap_ms: None,
        restarted_before_first_write: restart_first,
        error: None,
    };
    let histories = match outcome {
        Ok(facts) => {
            promotion.promote_ms = fact(&facts, "promote_ms").and_then(|v| v.parse().ok());
            let new = fact(&facts, "history_id").and_then(|v| u64::from_str_radix(v, 16).ok());
            pair.master = promoted;
            if restart_first {
                pair.nodes[killed].start(&pair.spawn)?;
            }
            if let Some(new) = new {
                shared.wait_first_ack(new)?;
            }
            if !restart_first {
                pair.nodes[killed].start(&pair.spawn)?;
            }
            let histories = Histories {
                old: *history,
                new,
                asked: call_at,
            };
            if let Some(new) = new {
                *history = new;
            }
            histories
        }
        Err(e) => {
            // The old master stays dead and the slave a slave: the run
            // cannot go on.
            return Err(Error::Failed {
                message: format!(
                    "promoting {} failed: {}",
                    promotion.promoted,
                    duokv::error::chain(&e)
                ),
            });
        }
    };
    Ok((promotion, histories))
}

/// Computes the client-side figures from the writers' spans.
fn fill_in(
    switchovers: &mut [(Switchover, Histories)],
    promotions: &mut [(Promotion, Histories)],
    spans: &HashMap<u64, Span>,
) {
    let gap = |h: &Histories| {
        let old = spans.get(&h.old)?;
        let new = spans.get(&h.new?)?;
        Some(ms(new.first) - ms(old.last))
    };
    for (s, h) in switchovers.iter_mut() {
        s.client_gap_ms = gap(h);
        s.retried_writes = h
            .new
            .and_then(|new| spans.get(&new))
            .map_or(0, |span| span.retried);
    }
    for (p, h) in promotions.iter_mut() {
        p.client_gap_ms = gap(h);
        p.to_first_write_ms = h
            .new
            .and_then(|new| spans.get(&new))
            .map(|span| ms(span.first) - ms(h.asked));
    }
}

/// Reads every acknowledged key on the final master.
fn verify(config: &FailoverConfig, pair: &Pair, acked: &[(String, u64)]) -> Result<Verification> {
    let master = pair.nodes[pair.master].addr.clone();
    let mut client = Client::builder(master.clone())
        .auth_token(config.auth_token.clone())
        .tls(config.tls.clone())
        .connect()?;
    let role = client.info()?;
    if fact(&role, "role") != Some("master") {
        return Err(Error::Failed {
            message: format!(
                "{master} should be the master at the end, and is {}",
                fact(&role, "role").unwrap_or("unknown")
            ),
        });
    }
    let mut verification = Verification {
        master,
        keys_checked: acked.len() as u64,
        lost: 0,
        examples: Vec::new(),
    };
    for (key, counter) in acked {
        let found = client.read(key)?.as_deref().and_then(counter_of);
        if found.is_none_or(|found| found < *counter) {
            verification.lost += 1;
            if verification.examples.len() < 10 {
                verification.examples.push((key.clone(), *counter, found));
            }
        }
    }
    Ok(verification)
}

fn reported(config: &FailoverConfig) -> ReportedConfig {
    let (pair, fsync) = match &config.pair {
        PairSource::Spawn { fsync, .. } => ("spawned", Some(fsync.clone())),
        PairSource::Running { .. } => ("running", None),
    };
    ReportedConfig {
        pair: pair.into(),
        mode: config.mode.to_string(),
        fsync,
        clients: config.clients,
        switchovers: config.switchovers,
        promotions: config.promotions,
        interval_ms: ms(config.interval),
        timeout_ms: ms(config.timeout),
        keys_per_client: config.keys_per_client,
        value_size: config.value_size,
        retry_pause_ms: (ms(config.retry_pause), ms(config.retry_pause_max)),
    }
}

/// What the writers share with the run.
struct Shared {
    /// Every time is measured from here.
    started: Instant,
    /// Raised when the writers are to stop.
    stop: AtomicBool,
    /// The first acknowledged write of each history, as soon as a writer
    /// sees it, for the run to wait on.
    first_ack: Mutex<HashMap<u64, Duration>>,
}

impl Shared {
    fn saw(&self, history: u64, at: Duration) {
        let mut first = self.first_ack.lock().unwrap_or_else(|e| e.into_inner());
        let entry = first.entry(history).or_insert(at);
        *entry = (*entry).min(at);
    }

    fn wait_first_ack(&self, history: u64) -> Result<()> {
        poll("the new master's first acknowledged write", || {
            let first = self.first_ack.lock().unwrap_or_else(|e| e.into_inner());
            first.contains_key(&history).then_some(())
        })
    }
}

/// The acknowledged writes of one history as one writer saw them.
#[derive(Debug, Clone, Copy)]
struct Span {
    first: Duration,
    last: Duration,
    retried: u64,
}

impl Span {
    fn merge(&mut self, other: &Span) {
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        self.retried += other.retried;
    }
}

/// What one writer brings back.
struct Tally {
    spans: HashMap<u64, Span>,
    attempts: Attempts,
    /// Each key's last acknowledged counter.
    acked: Vec<(String, u64)>,
}

/// One closed-loop writer: its keys are `c<id>-<n>`, its values start with
/// its write counter.
fn writer(id: usize, config: &FailoverConfig, addrs: &[String; 2], shared: &Shared) -> Tally {
    let connect = |addr: &str| {
        Client::builder(addr)
            .auth_token(config.auth_token.clone())
            .tls(config.tls.clone())
            .connect_timeout(Duration::from_secs(1))
            .read_timeout(Duration::from_secs(10))
            .build()
    };
    let mut at = 0;
    let mut client = connect(&addrs[at]);
    let mut spans: HashMap<u64, Span> = HashMap::new();
    let mut attempts = Attempts::default();
    let mut last_acked: Vec<Option<u64>> = vec![None; config.keys_per_client as usize];
    let mut counter: u64 = 0;
    'writes: while !shared.stop.load(Ordering::Relaxed) {
        counter += 1;
        let slot = counter % config.keys_per_client;
        let key = format!("c{id}-{slot}");
        let value = value_of(counter, config.value_size);
        let mut pause = Duration::ZERO;
        let mut retried = false;
        let history = loop {
            match client.put(&key, &value) {
                Ok(receipt) => break receipt.server.history,
                Err(e) => {
                    if shared.stop.load(Ordering::Relaxed) {
                        break 'writes;
                    }
                    retried = true;
                    let mut follow = None;
                    match &e {
                        duokv::Error::SwitchingOver { .. } => attempts.switching_over += 1,
                        duokv::Error::NotMaster { master } => {
                            attempts.not_master += 1;
                            follow = Some(if master.is_empty() {
                                addrs[1 - at].clone()
                            } else {
                                master.clone()
                            });
                        }
                        duokv::Error::ReplicaUnavailable { .. } => {
                            attempts.replica_unavailable += 1;
                        }
                        duokv::Error::Connect { .. } => {
                            attempts.connection += 1;
                            // Gone: the other node may be the master now.
                            follow = Some(addrs[1 - at].clone());
                        }
                        duokv::Error::Protocol(_)
                        | duokv::Error::Timeout { .. }
                        | duokv::Error::Io(_)
                        | duokv::Error::ShuttingDown
                        | duokv::Error::Busy => attempts.connection += 1,
                        other => {
                            attempts.other += 1;
                            attempts
                                .first_other
                                .get_or_insert_with(|| duokv::error::chain(other));
                        }
                    }
                    if let Some(addr) = follow {
                        at = addrs.iter().position(|a| *a == addr).unwrap_or(1 - at);
                        client = connect(&addr);
                    }
                    // A first NotMaster is followed at once; anything else
                    // waits, longer each time.
                    std::thread::sleep(pause);
                    pause = (pause * 2).clamp(config.retry_pause, config.retry_pause_max);
                }
            }
        };
        let now = shared.started.elapsed();
        attempts.acknowledged += 1;
        last_acked[slot as usize] = Some(counter);
        let span = spans.entry(history).or_insert_with(|| {
            shared.saw(history, now);
            Span {
                first: now,
                last: now,
                retried: 0,
            }
        });
        span.last = now;
        if retried {
            span.retried += 1;
            attempts.retried_writes += 1;
        }
    }
    Tally {
        spans,
        attempts,
        acked: last_acked
            .into_iter()
            .enumerate()
            .filter_map(|(slot, counter)| counter.map(|c| (format!("c{id}-{slot}"), c)))
            .collect(),
    }
}

/// A value of `size` bytes that starts with `counter` and a colon.
fn value_of(counter: u64, size: usize) -> Vec<u8> {
    let mut value = format!("{counter}:").into_bytes();
    value.resize(size.max(value.len()), b'x');
    value
}

/// The counter a value starts with.
fn counter_of(value: &[u8]) -> Option<u64> {
    let end = value.iter().position(|&b| b == b':')?;
    std::str::from_utf8(&value[..end]).ok()?.parse().ok()
}

fn fact<'a>(facts: &'a [(String, String)], name: &str) -> Option<&'a str> {
    facts
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Calls `check` every [`POLL`] until it returns `Some`, or fails naming
/// `what` after [`PATIENCE`].
fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(Error::Failed {
                message: format!("gave up after {PATIENCE:?} waiting for {what}"),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// The two nodes and which is the master.
struct Pair {
    nodes: [Node; 2],
    master: usize,
    /// How to start a node; `None` for a running pair.
    spawn: Option<Spawn>,
    auth_token: Option<AuthToken>,
    tls: Option<ClientTls>,
    /// The spawned nodes' data and, without `logs`, their logs.
    _dir: Option<tempfile::TempDir>,
}

/// How a node is started.
struct Spawn {
    server_bin: PathBuf,
    server_args: Vec<String>,
}

impl Pair {
    fn open(config: &FailoverConfig) -> Result<Pair> {
        let (server_bin, server_args, fsync, logs) = match &config.pair {
            PairSource::Running { master, slave } => {
                let mut pair = Pair {
                    nodes: [Node::running(master), Node::running(slave)],
                    master: 0,
                    spawn: None,
                    auth_token: config.auth_token.clone(),
                    tls: config.tls.clone(),
                    _dir: None,
                };
                pair.wait_whole()?;
                return Ok(pair);
            }
            PairSource::Spawn {
                server_bin,
                server_args,
                fsync,
                logs,
            } => (server_bin, server_args, fsync, logs),
        };
        let dir = tempfile::Builder::new()
            .prefix("duokv-failover-")
            .tempdir()?;
        let logs = logs.clone().unwrap_or_else(|| dir.path().to_path_buf());
        std::fs::create_dir_all(&logs).map_err(|source| Error::File {
            path: logs.clone(),
            source,
        })?;
        let mut last_error = None;
        // A free port can be taken between the probe and the bind: retry.
        for attempt in 0..3 {
            let (a, b) = (crate::demo::free_addr()?, crate::demo::free_addr()?);
            let node = |name: &str, addr: &str, role: Vec<&str>| {
                let data = dir.path().join(format!("{attempt}-{name}"));
                let mut args: Vec<String> = vec![
                    "--listen".into(),
                    addr.into(),
                    "--data-dir".into(),
                    data.display().to_string(),
                    "--fsync".into(),
                    fsync.clone(),
                ];
                args.extend(role.into_iter().map(String::from));
                Node {
                    addr: addr.to_string(),
                    args,
                    log: logs.join(format!("{name}.log")),
                    child: None,
                }
            };
            let mode = config.mode.to_string();
            let mut pair = Pair {
                nodes: [
                    node(
                        "a",
                        &a,
                        vec!["--role", "master", "--replica", &b, "--replication", &mode],
                    ),
                    node("b", &b, vec!["--role", "slave", "--master-addr", &a]),
                ],
                master: 0,
                spawn: Some(Spawn {
                    server_bin: server_bin.clone(),
                    server_args: server_args.clone(),
                }),
                auth_token: config.auth_token.clone(),
                tls: config.tls.clone(),
                _dir: None,
            };
            let started = pair.nodes[1]
                .start(&pair.spawn)
                .and_then(|()| pair.nodes[0].start(&pair.spawn))
                .and_then(|()| pair.wait_whole());
            match started {
                Ok(()) => {
                    pair._dir = Some(dir);
                    return Ok(pair);
                }
                Err(e) => {
                    warn!("the pair did not come up: {e}; trying other ports");
                    pair.stop();
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or(Error::Failed {
            message: "the pair did not start".into(),
        }))
    }

    fn client(&self, node: usize) -> Client {
        Client::builder(self.nodes[node].addr.clone())
            .auth_token(self.auth_token.clone())
            .tls(self.tls.clone())
            .connect_timeout(Duration::from_secs(1))
            .read_timeout(Duration::from_secs(10))
            .build()
    }

    /// The master's history id.
    fn history(&self, node: usize) -> Result<u64> {
        let facts = self.client(node).info()?;
        fact(&facts, "history_id")
            .and_then(|v| u64::from_str_radix(v, 16).ok())
            .ok_or_else(|| Error::Failed {
                message: format!("{} reports no history_id", self.nodes[node].addr),
            })
    }

    /// Polls until the master is a master whose slave is connected with
    /// commit notices (what a switchover needs), and the slave answers.
    fn wait_whole(&mut self) -> Result<()> {
        let mut master = self.client(self.master);
        let mut slave = self.client(1 - self.master);
        let what = format!(
            "master {} to see its slave {} connected",
            self.nodes[self.master].addr,
            self.nodes[1 - self.master].addr
        );
        let nodes = &mut self.nodes;
        poll(&what, || {
            for node in nodes.iter_mut() {
                if let Some(status) = node.exited() {
                    return Some(Err(Error::Failed {
                        message: format!(
                            "{} exited ({status}); see {}",
                            node.addr,
                            node.log.display()
                        ),
                    }));
                }
            }
            let facts = master.info().ok()?;
            let whole = fact(&facts, "role") == Some("master")
                && fact(&facts, "link") == Some("up")
                && fact(&facts, "commit_notices") == Some("true");
            (whole && slave.ping().is_ok()).then_some(Ok(()))
        })?
    }

    /// Stops both nodes gracefully (spawned pairs only).
    fn stop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
    }
}

/// One node of the pair; a spawned one is killed if dropped running.
struct Node {
    addr: String,
    /// Its flags after `server`, for (re)starts.
    args: Vec<String>,
    /// Its stderr, appended to across restarts.
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn running(addr: &str) -> Node {
        Node {
            addr: addr.to_string(),
            args: Vec::new(),
            log: PathBuf::new(),
            child: None,
        }
    }

    fn start(&mut self, spawn: &Option<Spawn>) -> Result<()> {
        let Some(spawn) = spawn else {
            return Err(Error::Usage {
                message: "cannot start a node of a running pair".into(),
            });
        };
        let stderr = open_log(&self.log)?;
        let child = Command::new(&spawn.server_bin)
            .args(&spawn.server_args)
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|source| Error::File {
                path: spawn.server_bin.clone(),
                source,
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// Its exit status, if it was spawned and exited.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGKILL, and reap it.
    fn kill(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Err(Error::Usage {
                message: format!("{} is not a node this tool started", self.addr),
            });
        };
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// SIGTERM, then wait; SIGKILL only if it does not exit in time.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let terminated = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_ok();
        let deadline = Instant::now() + PATIENCE;
        while terminated && Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(POLL);
        }
        warn!("{} did not stop on SIGTERM; killing it", self.addr);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| Error::File {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_counter() {
        let value = value_of(12345, 100);
        assert_eq!(value.len(), 100);
        assert_eq!(counter_of(&value), Some(12345));
        assert_eq!(counter_of(b"no counter"), None);
        assert_eq!(counter_of(&value_of(u64::MAX, 24)), Some(u64::MAX));
    }

    #[test]
    fn spreads_use_nearest_ranks() {
        let spread = Spread::of((1..=10).map(|v| Some(f64::from(v))).chain([None]));
        assert_eq!(spread.count, 10);
        assert_eq!(spread.p50_ms, Some(5.0));
        assert_eq!(spread.p99_ms, Some(10.0));
        assert_eq!(spread.max_ms, Some(10.0));
        assert_eq!(Spread::of([]).p50_ms, None);
    }

    #[test]
    fn gaps_run_from_the_old_history_to_the_new() {
        let span = |first, last| Span {
            first: Duration::from_millis(first),
            last: Duration::from_millis(last),
            retried: 3,
        };
        let spans = HashMap::from([(1, span(0, 1000)), (2, span(1004, 2000))]);
        let switchover = Switchover {
            from: "a".into(),
            to: "b".into(),
            at_ms: 999.0,
            call_ms: 5.0,
            write_window_ms: Some(2.0),
            client_gap_ms: None,
            retried_writes: 0,
            error: None,
        };
        let mut switchovers = [(
            switchover,
            Histories {
                old: 1,
                new: Some(2),
                asked: Duration::from_millis(999),
            },
        )];
        fill_in(&mut switchovers, &mut [], &spans);
        let (s, _) = &switchovers[0];
        assert_eq!(s.client_gap_ms, Some(4.0));
        assert_eq!(s.retried_writes, 3);
    }
}
