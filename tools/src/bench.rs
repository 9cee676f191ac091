//! The test client behind `duokv bench`: the seed's workload of N updates
//! to one key at a fixed interval, with every timestamp needed to compute
//! latency and staleness afterwards.
//!
//! - **Schedule**: fixed-rate. Write `i` starts at `t0 + i * interval` on the
//!   monotonic clock, so a slow write does not shift the ones after it (if a
//!   write overruns its slot the next one starts at once).
//! - **Per write**: its ID (the seq from the receipt), the client's start and
//!   commit timestamps (wall clock, UNIX ns), the latency (monotonic), and
//!   the error if it failed. Each value names its write: `w-17`.
//! - **Clocks**: before and after the run, each replica's clock is compared
//!   with the client's by NTP-style probes over `Ping`: of 16 probes the one
//!   with the smallest round trip is kept; offset `((t2-t1)+(t3-t4))/2`,
//!   error bound RTT/2.
//! - **Reader probe**: a second thread, with its own connection to the
//!   slave, polls the slave after each commit until it returns that write's
//!   value (or a later one): the visibility delay, on the client's clock
//!   alone, as Bermbach and Tai measured S3.
//!
//! It writes `client.csv` and `run.json` into the run directory (see
//! [`run_dir`](mod@crate::run_dir)); the replicas' event logs are gathered by
//! path when given, or by whoever ran the replicas (`duokv demo`, the
//! deployer).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, Result};
use crate::run_dir::{self, ClientRow, ClockOffsets, ClockProbe, RunMeta};
use duokv::Client;
use duokv::auth::AuthToken;
use duokv::clock::now_ns;

/// Pings per clock estimate; the fastest is kept.
const CLOCK_PROBES: usize = 16;

/// What `duokv bench` runs.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The master's client address.
    pub master: String,
    /// The slave's client address.
    pub slave: String,
    /// Updates to issue.
    pub count: u64,
    /// Time between update starts.
    pub interval: Duration,
    /// The key every update writes.
    pub key: String,
    /// The run directory to write.
    pub out: PathBuf,
    /// Where the client runs, for the metadata.
    pub client_host: String,
    /// How long the reader probe waits for a write to show on the slave.
    pub probe_patience: Duration,
    /// The master's event log, to copy into the run directory when done.
    pub master_events: Option<PathBuf>,
    /// The slave's event log, likewise.
    pub slave_events: Option<PathBuf>,
    /// Show a progress bar (on a terminal) or lines.
    pub progress: bool,
    /// The servers' shared secret, if they want one.
    pub auth_token: Option<AuthToken>,
}

impl BenchConfig {
    /// The seed's workload (100 updates, 1 s apart, key `bench`) between
    /// `master` and `slave`, written to `out`.
    pub fn new(
        master: impl Into<String>,
        slave: impl Into<String>,
        out: impl Into<PathBuf>,
    ) -> Self {
        BenchConfig {
            master: master.into(),
            slave: slave.into(),
            count: 100,
            interval: Duration::from_secs(1),
            key: "bench".into(),
            out: out.into(),
            client_host: "local".into(),
            probe_patience: Duration::from_secs(5),
            master_events: None,
            slave_events: None,
            progress: true,
            auth_token: None,
        }
    }
}

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct BenchOutcome {
    /// The run directory.
    pub dir: PathBuf,
    /// The metadata written to `run.json`.
    pub meta: RunMeta,
    /// One row per write.
    pub rows: Vec<ClientRow>,
}

/// Runs the workload; `stop` ends it early (Ctrl-C), keeping what was
/// measured.
pub fn run(config: &BenchConfig, stop: &AtomicBool) -> Result<BenchOutcome> {
    std::fs::create_dir_all(&config.out).map_err(|source| Error::File {
        path: config.out.clone(),
        source,
    })?;
    let mut master = Client::builder(config.master.clone())
        .read_timeout(Duration::from_secs(30))
        .auth_token(config.auth_token.clone())
        .connect()?;
    let mut slave = Client::builder(config.slave.clone())
        .read_timeout(Duration::from_secs(30))
        .auth_token(config.auth_token.clone())
        .connect()?;
    let mode = info_fact(&mut master, "replication").unwrap_or_else(|| "none".into());

    let master_before = probe_clock(&mut master)?;
    let slave_before = probe_clock(&mut slave)?;

    let (probe_tx, probe_rx) = crossbeam_channel::unbounded();
    let prober = start_reader_probe(config, probe_rx)?;
    let progress = Progress::new(config.count, config.progress);

    let t0 = Instant::now() + Duration::from_millis(10);
    let started_unix_ns = now_ns() + 10_000_000;
    let mut rows = Vec::with_capacity(config.count as usize);
    for i in 0..config.count {
        if stop.load(Ordering::SeqCst) {
            progress.note("stopped early");
            break;
        }
        let interval_ns = u64::try_from(config.interval.as_nanos()).unwrap_or(u64::MAX);
        let slot = t0 + Duration::from_nanos(interval_ns.saturating_mul(i));
        // The workload's own schedule: wait for this write's start time.
        let now = Instant::now();
        if slot > now {
            std::thread::sleep(slot - now);
        }
        let value = format!("w-{i}");
        let start_unix_ns = now_ns();
        let row = match master.put(&config.key, &value) {
            Ok(receipt) => {
                let _ = probe_tx.send((i, receipt.committed_ns));
                ClientRow {
                    write: i,
                    write_id: receipt.seq,
                    value,
                    start_unix_ns: receipt.started_ns,
                    commit_unix_ns: receipt.committed_ns,
                    latency_ns: u64::try_from(receipt.latency.as_nanos()).unwrap_or(u64::MAX),
                    visible_unix_ns: None,
                    error: None,
                }
            }
            Err(e) => ClientRow {
                write: i,
                write_id: 0,
                value,
                start_unix_ns,
                commit_unix_ns: 0,
                latency_ns: 0,
                visible_unix_ns: None,
                error: Some(duokv::error::chain(&e)),
            },
        };
        progress.advance(&row);
        rows.push(row);
    }
    drop(probe_tx);
    let visible = prober.join().map_err(|_| Error::Failed {
        message: "the reader probe panicked".into(),
    })?;
    for (i, at) in visible {
        if let Some(row) = rows.get_mut(i as usize) {
            row.visible_unix_ns = Some(at);
        }
    }
    progress.finish();
    let finished_unix_ns = now_ns();

    // What was measured is saved first: a replica that died during the run
    // must not cost the rows of the others.
    run_dir::save_client_rows(&config.out, &rows)?;
    let mut notes = Vec::new();
    let mut probe_after =
        |client: &mut Client, before: ClockProbe, name: &str| match probe_clock(client) {
            Ok(probe) => probe,
            Err(e) => {
                notes.push((
                    format!("{name} clock after the run"),
                    format!(
                        "not measured ({}); the offset before the run is used",
                        duokv::error::chain(&e)
                    ),
                ));
                before
            }
        };
    let master_after = probe_after(&mut master, master_before, "master");
    let slave_after = probe_after(&mut slave, slave_before, "slave");
    let meta = RunMeta {
        mode,
        count: config.count,
        interval_ns: u64::try_from(config.interval.as_nanos()).unwrap_or(u64::MAX),
        key: config.key.clone(),
        master: config.master.clone(),
        slave: config.slave.clone(),
        client_host: config.client_host.clone(),
        duokv_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: option_env!("DUOKV_GIT_COMMIT").map(str::to_string),
        started_unix_ns,
        finished_unix_ns,
        master_clock: Some(ClockOffsets {
            before: master_before,
            after: master_after,
        }),
        slave_clock: Some(ClockOffsets {
            before: slave_before,
            after: slave_after,
        }),
        notes,
    };
    meta.save(&config.out)?;
    let last_seq = rows.iter().map(|r| r.write_id).max().unwrap_or(0);
    if let Some(path) = &config.master_events {
        gather_events(path, &config.out.join(run_dir::MASTER_EVENTS), last_seq)?;
    }
    if let Some(path) = &config.slave_events {
        gather_events(path, &config.out.join(run_dir::SLAVE_EVENTS), last_seq)?;
    }
    Ok(BenchOutcome {
        dir: config.out.clone(),
        meta,
        rows,
    })
}

/// One fact from a server's `info`.
fn info_fact(client: &mut Client, name: &str) -> Option<String> {
    client
        .info()
        .ok()?
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

/// Estimates a server's clock offset: of 16 pings, the one
/// with the smallest round trip.
pub fn probe_clock(client: &mut Client) -> Result<ClockProbe> {
    let mut best: Option<duokv::Pong> = None;
    for _ in 0..CLOCK_PROBES {
        let pong = client.ping()?;
        if best.is_none_or(|b| pong.round_trip < b.round_trip) {
            best = Some(pong);
        }
    }
    let best = best.expect("at least one probe");
    Ok(ClockProbe {
        offset_ns: best.offset_ns(),
        error_bound_ns: u64::try_from(best.error_bound().as_nanos()).unwrap_or(u64::MAX),
        rtt_ns: u64::try_from(best.round_trip.as_nanos()).unwrap_or(u64::MAX),
        at_unix_ns: best.received_ns,
    })
}

/// The reader probe: for each committed write `(index, commit)`, polls the
/// slave until it holds that write's value or a later one. Returns when the
/// channel closes, with `(index, visible_unix_ns)` of the writes it saw.
fn start_reader_probe(
    config: &BenchConfig,
    commits: Receiver<(u64, u64)>,
) -> Result<JoinHandle<Vec<(u64, u64)>>> {
    let mut client = Client::builder(config.slave.clone())
        .read_timeout(Duration::from_secs(5))
        .auth_token(config.auth_token.clone())
        .connect()?;
    let key = config.key.clone();
    let patience = config.probe_patience;
    let thread = std::thread::Builder::new()
        .name("reader-probe".into())
        .spawn(move || {
            let mut seen = Vec::new();
            let mut reachable = true;
            for (index, _commit) in commits {
                let deadline = Instant::now() + patience;
                while reachable && Instant::now() < deadline {
                    match client.read(&key) {
                        Ok(Some(value)) if write_index(&value).is_some_and(|v| v >= index) => {
                            seen.push((index, now_ns()));
                            break;
                        }
                        // Not there yet: re-poll at once, the delay being
                        // measured is often well under a millisecond.
                        Ok(_) => {}
                        // The slave is gone: later writes cannot show there
                        // either; stop waiting instead of timing out on each.
                        Err(_) => reachable = false,
                    }
                }
            }
            seen
        })?;
    Ok(thread)
}

/// The write index a bench value names (`w-17` is 17).
fn write_index(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value)
        .ok()?
        .strip_prefix("w-")?
        .parse()
        .ok()
}

/// Copies a replica's event log into the run directory once it holds the
/// events of the run's last write (it is flushed in the background).
fn gather_events(from: &Path, to: &Path, last_seq: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(from).map_err(|source| Error::File {
            path: from.to_path_buf(),
            source,
        })?;
        let complete = last_seq == 0
            || text.lines().any(|line| {
                line.split(',').nth(1).and_then(|s| s.parse::<u64>().ok()) >= Some(last_seq)
            });
        if complete || Instant::now() >= deadline {
            return std::fs::write(to, text).map_err(|source| Error::File {
                path: to.to_path_buf(),
                source,
            });
        }
        // Polling a file another process flushes every 100 ms.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Progress: a bar with ETA on a terminal, a line every tenth of the run
/// otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    count: u64,
    lines: bool,
}

impl Progress {
    fn new(count: u64, enabled: bool) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let bar = (enabled && terminal).then(|| {
            let style =
                ProgressStyle::with_template("{bar:40} {pos}/{len} writes, eta {eta} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
            ProgressBar::new(count).with_style(style)
        });
        Progress {
            bar,
            count,
            lines: enabled && !terminal,
        }
    }

    fn advance(&self, row: &ClientRow) {
        if let Some(bar) = &self.bar {
            bar.set_message(match &row.error {
                None => format!(
                    "last: id {} in {:.3} ms",
                    row.write_id,
                    row.latency_ns as f64 / 1e6
                ),
                Some(e) => format!("last: failed: {e}"),
            });
            bar.inc(1);
        } else if self.lines {
            let done = row.write + 1;
            let step = (self.count / 10).max(1);
            if done.is_multiple_of(step) || done == self.count || row.error.is_some() {
                match &row.error {
                    None => eprintln!(
                        "write {done}/{}: id {} in {:.3} ms",
                        self.count,
                        row.write_id,
                        row.latency_ns as f64 / 1e6
                    ),
                    Some(e) => eprintln!("write {done}/{}: failed: {e}", self.count),
                }
            }
        }
    }

    fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_name_their_write() {
        assert_eq!(write_index(b"w-17"), Some(17));
        assert_eq!(write_index(b"x-17"), None);
        assert_eq!(write_index(b"w-"), None);
    }
}
