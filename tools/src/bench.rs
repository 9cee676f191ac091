//! The test client behind `duokv bench`: the assignment's workload of N updates
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
//!   slave, reads the slave after each commit ([`ProbeRead`]). By default it
//!   polls until the slave returns that write's value (or a later one): the
//!   visibility delay, on the client's clock alone, as Bermbach and Tai
//!   measured S3. With `after` it instead reads once after the write's
//!   token, and with `fresh:D` once under a staleness bound D, the way a
//!   client of the read contracts does (`PROTOCOL.md` 5.2), and records
//!   per write whether the read had to wait, how long it took and whether
//!   it was refused (`probe.csv`).
//! - **t-visibility** (`--probe-read at:D1,D2,...`, Bailis et al.,
//!   *Probabilistically Bounded Staleness*): "if I read the slave t after a
//!   write committed, how likely is it that I miss the write?" Write `i`
//!   is read once, with a plain read, at delay `D[i mod k]` after its
//!   commit, the instant the writer got the reply on the monotonic clock.
//!   The probe keeps the pending reads in deadline order (a long delay of
//!   one write must not hold up a short one of the next), sleeps until
//!   about 100 µs before a read's time and spins the rest, so the read
//!   leaves within microseconds of it. Each read records its actual
//!   offset after the commit, its round trip and whether it saw the write
//!   (or a later one); a read the probe could only send too late (the one
//!   connection was busy with another read) is kept but marked `late`, and
//!   the statistics leave it out (`visibility.csv`). Reads at several
//!   delays need many writes: a short `--interval` (e.g. 5ms) gives them.
//!
//! It writes `client.csv`, `run.json` and, for a conditional probe,
//! `probe.csv`, for reads at fixed delays `visibility.csv`, into the run
//! directory (see
//! [`run_dir`](mod@crate::run_dir)); the replicas' event logs are gathered by
//! path when given, or by whoever ran the replicas (`duokv demo`, the
//! deployer).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use indicatif::{ProgressBar, ProgressStyle};

use crate::conditional;
use crate::error::{Error, Result};
use crate::run_dir::{
    self, ClientRow, ClockOffsets, ClockProbe, ProbeOutcome, ProbeRow, RunMeta, VisibilityRow,
};
use duokv::auth::AuthToken;
use duokv::clock::now_ns;
use duokv::duration::parse_duration;
use duokv::event_log::csv_key;
use duokv::tls::ClientTls;
use duokv::{Client, ReadWhen, Token};

/// Pings per clock estimate; the fastest is kept.
const CLOCK_PROBES: usize = 16;

/// The delays of `--probe-read at` without a list, in microseconds: from
/// at once to 10 ms, about three steps a decade.
pub const DEFAULT_VISIBILITY_DELAYS_US: [u64; 9] =
    [0, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000];

/// How long before a read's time the probe stops sleeping and spins: a
/// sleep can overrun by tens of microseconds, a spin on the clock cannot.
const SPIN: Duration = Duration::from_micros(100);

/// How the reader probe reads the slave after each commit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ProbeRead {
    /// Plain reads, one after the other, until the write's value (or a
    /// later one) shows, up to the probe's patience: when a reader that
    /// knows nothing of tokens first sees the write.
    #[default]
    Poll,
    /// One read with `after` = the write's token: the slave answers once
    /// the write is visible there (read your writes).
    After,
    /// One read with `max_staleness` = this bound: the slave answers once
    /// it can prove its data at most that old, which need not hold the
    /// write (`saw_write` says whether it did).
    Fresh(Duration),
    /// One plain read of write `i` at delay `delays[i mod k]` after its
    /// commit (never empty): t-visibility, `visibility.csv`.
    At(Vec<Duration>),
}

impl ProbeRead {
    /// `at` without a list: [`DEFAULT_VISIBILITY_DELAYS_US`].
    pub fn at_default() -> ProbeRead {
        ProbeRead::At(
            DEFAULT_VISIBILITY_DELAYS_US
                .iter()
                .map(|&us| Duration::from_micros(us))
                .collect(),
        )
    }

    /// The conditions of the read of write `token`, with `wait`; `None` for
    /// the probes that read plainly (`poll`, `at`).
    pub fn conditions(&self, token: Option<Token>, wait: Duration) -> Option<ReadWhen> {
        match self {
            ProbeRead::Poll | ProbeRead::At(_) => None,
            ProbeRead::After => Some(ReadWhen::new().after(token).wait(wait)),
            ProbeRead::Fresh(max) => Some(ReadWhen::new().max_staleness(*max).wait(wait)),
        }
    }
}

/// `poll`, `after`, `fresh:5ms` or `at:0,50us,1ms`, as `--probe-read`
/// takes it (`at` is printed with its list in full).
impl fmt::Display for ProbeRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeRead::Poll => f.write_str("poll"),
            ProbeRead::After => f.write_str("after"),
            ProbeRead::Fresh(max) => write!(f, "fresh:{}", duration_text(*max)),
            ProbeRead::At(delays) => {
                let list: Vec<String> = delays.iter().map(|d| duration_text(*d)).collect();
                write!(f, "at:{}", list.join(","))
            }
        }
    }
}

impl FromStr for ProbeRead {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<ProbeRead, String> {
        match text {
            "poll" => Ok(ProbeRead::Poll),
            "after" => Ok(ProbeRead::After),
            "at" => Ok(ProbeRead::at_default()),
            _ if text.starts_with("at:") => parse_delays(&text[3..]).map(ProbeRead::At),
            _ => match text.strip_prefix("fresh:") {
                Some(bound) => {
                    let max = parse_duration(bound)?;
                    if max < Duration::from_micros(1) {
                        return Err(format!("a staleness bound of {bound} is under 1us"));
                    }
                    Ok(ProbeRead::Fresh(max))
                }
                None => Err(format!(
                    "unknown probe read `{text}`: use poll, after, fresh:DURATION (e.g. \
                     fresh:5ms) or at:D1,D2,... (e.g. at:0,100us,1ms)"
                )),
            },
        }
    }
}

/// The delays of `at:D1,D2,...`: at least one, each a duration
/// (`0` is at once).
fn parse_delays(list: &str) -> std::result::Result<Vec<Duration>, String> {
    if list.trim().is_empty() {
        return Err("`at:` without delays: give some, e.g. at:0,100us,1ms, or `at` alone".into());
    }
    list.split(',')
        .map(|item| {
            if item.trim().is_empty() {
                Err(format!("an empty delay in `at:{list}`"))
            } else {
                parse_duration(item)
            }
        })
        .collect()
}

/// A duration as the shortest text `parse_duration` reads back: `5ms`,
/// `250us`, `1s`.
fn duration_text(d: Duration) -> String {
    let (ns, us) = (d.as_nanos(), d.as_micros());
    if ns == 0 {
        "0".into()
    } else if !ns.is_multiple_of(1_000) {
        format!("{ns}ns")
    } else if us.is_multiple_of(1_000_000) {
        format!("{}s", us / 1_000_000)
    } else if us.is_multiple_of(1_000) {
        format!("{}ms", us / 1_000)
    } else {
        format!("{us}us")
    }
}

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
    /// How long the reader probe waits for a write to show on the slave;
    /// with a conditional [`ProbeRead`], the wait its read asks for (the
    /// server caps it at its idle timeout).
    pub probe_patience: Duration,
    /// How the reader probe reads.
    pub probe_read: ProbeRead,
    /// Where the reader probe reads; `None` for the slave. The master, to
    /// compare a read there with one on the slave.
    pub probe_addr: Option<String>,
    /// The master's event log, to copy into the run directory when done.
    pub master_events: Option<PathBuf>,
    /// The slave's event log, likewise.
    pub slave_events: Option<PathBuf>,
    /// Show a progress bar (on a terminal) or lines.
    pub progress: bool,
    /// The servers' shared secret, if they want one.
    pub auth_token: Option<AuthToken>,
    /// TLS, for servers that speak it.
    pub tls: Option<ClientTls>,
}

impl BenchConfig {
    /// The assignment's workload (100 updates, 1 s apart, key `bench`) between
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
            probe_read: ProbeRead::Poll,
            probe_addr: None,
            master_events: None,
            slave_events: None,
            progress: true,
            auth_token: None,
            tls: None,
        }
    }
}

impl BenchConfig {
    /// Refuses settings that cannot be run as asked ([`Error::Usage`]).
    pub fn check(&self) -> Result<()> {
        check_workload(self.count, self.interval)?;
        if self.probe_patience.is_zero() {
            return Err(Error::Usage {
                message: "--probe-patience 0: give a time above 0, e.g. 5s".into(),
            });
        }
        Ok(())
    }
}

/// Refuses a workload of no writes or no time between them
/// ([`Error::Usage`]); `duokv demo` checks its flags with it too.
pub fn check_workload(count: u64, interval: Duration) -> Result<()> {
    if count == 0 {
        return Err(Error::Usage {
            message: "--count 0: give at least 1 update".into(),
        });
    }
    if interval.is_zero() {
        return Err(Error::Usage {
            message: "--interval 0: give a time above 0, e.g. 1s or 20ms".into(),
        });
    }
    Ok(())
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
    config.check()?;
    run_dir::create(&config.out)?;
    let mut master = Client::builder(config.master.clone())
        .read_timeout(Duration::from_secs(30))
        .auth_token(config.auth_token.clone())
        .tls(config.tls.clone())
        .connect()?;
    let mut slave = Client::builder(config.slave.clone())
        .read_timeout(Duration::from_secs(30))
        .auth_token(config.auth_token.clone())
        .tls(config.tls.clone())
        .connect()?;
    let mode = info_fact(&mut master, "replication").unwrap_or_else(|| "none".into());

    let master_before = probe_clock(&mut master)?;
    let slave_before = probe_clock(&mut slave)?;

    let (probe_tx, probe_rx) = crossbeam_channel::unbounded();
    let in_flight = Arc::new(AtomicBool::new(false));
    let prober = start_reader_probe(config, probe_rx, &in_flight)?;
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
        in_flight.store(true, Ordering::Release);
        let put = master.put(&config.key, &value);
        // The commit on the monotonic clock, for reads at a delay after it.
        let replied = Instant::now();
        let row = match put {
            Ok(receipt) => {
                let _ = probe_tx.send(Committed {
                    index: i,
                    token: receipt.token(),
                    replied,
                });
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
        in_flight.store(false, Ordering::Release);
        progress.advance(&row);
        rows.push(row);
    }
    drop(probe_tx);
    let probed = prober.join().map_err(|_| Error::Failed {
        message: "the reader probe panicked".into(),
    })?;
    for (i, at) in probed.visible {
        if let Some(row) = rows.get_mut(i as usize) {
            row.visible_unix_ns = Some(at);
        }
    }
    progress.finish();
    let finished_unix_ns = now_ns();

    // What was measured is saved first: a replica that died during the run
    // must not cost the rows of the others.
    run_dir::save_client_rows(&config.out, &rows)?;
    match config.probe_read {
        ProbeRead::Poll => {}
        ProbeRead::At(_) => run_dir::save_visibility_rows(&config.out, &probed.at_delays)?,
        ProbeRead::After | ProbeRead::Fresh(_) => {
            run_dir::save_probe_rows(&config.out, &probed.reads)?;
        }
    }
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
        probe_read: Some(config.probe_read.to_string()),
    };
    meta.save(&config.out)?;
    let last_seq = rows.iter().map(|r| r.write_id).max().unwrap_or(0);
    let key = csv_key(config.key.as_bytes());
    if let Some(path) = &config.master_events {
        let to = config.out.join(run_dir::MASTER_EVENTS);
        gather_events(path, &to, (&key, last_seq), &["replied"])?;
    }
    if let Some(path) = &config.slave_events {
        let to = config.out.join(run_dir::SLAVE_EVENTS);
        gather_events(path, &to, (&key, last_seq), &["visible", "applied"])?;
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

/// A write the reader probe is to look for.
struct Committed {
    /// Its index in the run.
    index: u64,
    /// Its token; `None` from a server too old to send one.
    token: Option<Token>,
    /// When the writer got its reply, on the monotonic clock.
    replied: Instant,
}

/// What the reader probe found.
#[derive(Default)]
struct Probed {
    /// `(index, unix_ns)`: when the probe first saw each write it saw.
    visible: Vec<(u64, u64)>,
    /// One row per conditional read (none for the polling probe).
    reads: Vec<ProbeRow>,
    /// One row per read at a fixed delay (`at` only).
    at_delays: Vec<VisibilityRow>,
}

/// The reader probe: for each committed write, reads the slave (or
/// `probe_addr`) as `probe_read` says. Returns when the channel closes.
/// `in_flight` is true while the writer waits for a write's reply (the
/// `at` probe watches it).
fn start_reader_probe(
    config: &BenchConfig,
    commits: Receiver<Committed>,
    in_flight: &Arc<AtomicBool>,
) -> Result<JoinHandle<Probed>> {
    let addr = config.probe_addr.clone().unwrap_or(config.slave.clone());
    let mut client = Client::builder(addr)
        .read_timeout(Duration::from_secs(5))
        .auth_token(config.auth_token.clone())
        .tls(config.tls.clone())
        .connect()?;
    let key = config.key.clone();
    let patience = config.probe_patience;
    let read = config.probe_read.clone();
    let in_flight = Arc::clone(in_flight);
    let thread = std::thread::Builder::new()
        .name("reader-probe".into())
        .spawn(move || {
            if let ProbeRead::At(delays) = &read {
                return Probed {
                    at_delays: read_at_delays(&mut client, &key, delays, &commits, &in_flight),
                    ..Probed::default()
                };
            }
            let mut probed = Probed::default();
            let mut reachable = true;
            for committed in commits {
                if !reachable {
                    continue;
                }
                let index = committed.index;
                match read.conditions(committed.token, patience) {
                    None => match poll_until_seen(&mut client, &key, index, patience) {
                        Some(at) => probed.visible.push((index, at)),
                        None => reachable = client_alive(&mut client),
                    },
                    Some(when) => {
                        let row = read_once(&mut client, &key, index, &when);
                        if row.saw_write {
                            probed.visible.push((index, now_ns()));
                        }
                        reachable = row.outcome != ProbeOutcome::Failed;
                        probed.reads.push(row);
                    }
                }
            }
            probed
        })?;
    Ok(thread)
}

/// A read the t-visibility probe is to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Scheduled {
    /// When: the commit plus the delay (first, so reads order by it).
    due: Instant,
    /// The write's index.
    index: u64,
    /// The delay after the commit.
    delay: Duration,
    /// The commit.
    replied: Instant,
}

/// The t-visibility probe: reads write `i` once, plainly, at
/// `delays[i mod k]` after its commit, the pending reads in deadline order;
/// returns a row per read when the channel has closed and every read is
/// made, in write order. A read that fails has no row; it ends the probe
/// if the server is gone (it cannot show later writes either).
///
/// Waking from a blocked receive takes tens of microseconds, as long as
/// the shortest delays, so while the writer has a write on the wire
/// (`in_flight`) the probe polls the channel instead of blocking on it,
/// yielding the core between polls: it learns of the commit within
/// microseconds.
fn read_at_delays(
    client: &mut Client,
    key: &str,
    delays: &[Duration],
    commits: &Receiver<Committed>,
    in_flight: &AtomicBool,
) -> Vec<VisibilityRow> {
    let mut rows = Vec::new();
    let mut pending: BinaryHeap<Reverse<Scheduled>> = BinaryHeap::new();
    let schedule = |pending: &mut BinaryHeap<Reverse<Scheduled>>, committed: Committed| {
        let delay = delays[(committed.index % delays.len() as u64) as usize];
        pending.push(Reverse(Scheduled {
            due: committed.replied + delay,
            index: committed.index,
            delay,
            replied: committed.replied,
        }));
    };
    let mut open = true;
    loop {
        while let Ok(committed) = commits.try_recv() {
            schedule(&mut pending, committed);
        }
        let now = Instant::now();
        let next = pending.peek().map(|&Reverse(next)| next);
        match next {
            Some(next) if next.due <= now => {
                pending.pop();
                if let Some(row) = read_at(client, key, &next) {
                    rows.push(row);
                } else if !client_alive(client) {
                    break;
                }
                continue;
            }
            // The last stretch before a read: spin on the clock, precise
            // to microseconds.
            Some(next) if next.due <= now + SPIN => {
                std::hint::spin_loop();
                continue;
            }
            _ if open && in_flight.load(Ordering::Acquire) => {
                std::hint::spin_loop();
                continue;
            }
            _ => {}
        }
        // Nothing due soon and no write on the wire: block until shortly
        // before the next read's time (the measurement's schedule, not
        // synchronisation), or until a commit comes.
        let wake = next.map(|next| next.due - SPIN);
        if !open {
            match wake {
                Some(wake) => std::thread::sleep(wake.saturating_duration_since(now)),
                None => break,
            }
            continue;
        }
        let received = match wake {
            Some(wake) => commits.recv_timeout(wake.saturating_duration_since(now)),
            None => commits.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(committed) => schedule(&mut pending, committed),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
    }
    rows.sort_by_key(|r| r.write);
    rows
}

/// One plain read for `scheduled`, sent now; `None` if it failed.
fn read_at(client: &mut Client, key: &str, scheduled: &Scheduled) -> Option<VisibilityRow> {
    let sent = Instant::now();
    let value = client.read(key).ok()?;
    let read_ns = duration_ns(sent.elapsed());
    let delay_ns = duration_ns(scheduled.delay);
    let offset_ns = duration_ns(sent.saturating_duration_since(scheduled.replied));
    Some(VisibilityRow {
        write: scheduled.index,
        delay_ns,
        offset_ns,
        read_ns,
        saw_write: value
            .as_deref()
            .and_then(write_index)
            .is_some_and(|v| v >= scheduled.index),
        late: VisibilityRow::is_late(delay_ns, offset_ns),
    })
}

/// A duration in nanoseconds, saturated at `u64::MAX`.
fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Polls `key` until it holds write `index`'s value or a later one, up to
/// `patience`; the client's clock when it did.
fn poll_until_seen(client: &mut Client, key: &str, index: u64, patience: Duration) -> Option<u64> {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        match client.read(key) {
            Ok(Some(value)) if write_index(&value).is_some_and(|v| v >= index) => {
                return Some(now_ns());
            }
            // Not there yet: re-poll at once, the delay being measured is
            // often well under a millisecond.
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Whether the probe's server still answers: a slave that is gone cannot
/// show later writes either, so the probe stops waiting instead of timing
/// out on each.
fn client_alive(client: &mut Client) -> bool {
    client.ping().is_ok()
}

/// Reads write `index` once under `when`, asked at once and then with the
/// wait if refused (see [`conditional`](crate::conditional)).
fn read_once(client: &mut Client, key: &str, index: u64, when: &ReadWhen) -> ProbeRow {
    let asked = conditional::read(client, key, when);
    ProbeRow {
        write: index,
        outcome: asked.outcome,
        read_ns: u64::try_from(asked.elapsed.as_nanos()).unwrap_or(u64::MAX),
        saw_write: asked
            .value
            .as_deref()
            .and_then(write_index)
            .is_some_and(|v| v >= index),
    }
}

/// The write index a bench value names (`w-17` is 17).
fn write_index(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value)
        .ok()?
        .strip_prefix("w-")?
        .parse()
        .ok()
}

/// Copies the run's lines of a replica's event log into the run directory
/// (the header and the events of the run's key: a `duokv load` beside the
/// bench writes millions of others), once it holds the last event of the
/// run's last write (it is flushed in the background): the first of
/// `last_kinds` the log has any line of for the key (a slave from before
/// commit notices logs no `visible`), at the last seq or above. A line
/// still being written (no newline yet) is left out. Gives up after 5 s and
/// copies what there is: a replica that died has no more.
fn gather_events(
    from: &Path,
    to: &Path,
    (key, last_seq): (&str, u64),
    last_kinds: &[&str],
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(from).map_err(|source| Error::File {
            path: from.to_path_buf(),
            source,
        })?;
        let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
        let mut kept = String::new();
        // (kind, seq) of the key's events.
        let mut events = Vec::new();
        for (i, line) in whole.lines().enumerate() {
            let fields: Vec<&str> = line.splitn(4, ',').collect();
            if i == 0 {
                kept.push_str(line);
                kept.push('\n');
            } else if let [kind, seq, line_key, _] = fields[..]
                && line_key == key
            {
                kept.push_str(line);
                kept.push('\n');
                events.push((kind, seq.parse::<u64>().unwrap_or(0)));
            }
        }
        let last_kind = last_kinds
            .iter()
            .find(|kind| events.iter().any(|(k, _)| k == *kind));
        let complete = last_seq == 0
            || last_kind
                .is_some_and(|kind| events.iter().any(|&(k, seq)| k == *kind && seq >= last_seq));
        if complete || Instant::now() >= deadline {
            return std::fs::write(to, kept).map_err(|source| Error::File {
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

    /// A log with another tool's writes beside the run's (a `duokv load`)
    /// and a line still being written: only the header and the run key's
    /// whole lines are copied, once the last write's event is there.
    #[test]
    fn gathering_keeps_the_run_keys_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("log.csv"), dir.path().join("run.csv"));
        std::fs::write(
            &from,
            "event,seq,key,unix_ns\n\
             received,1,bench,10\n\
             received,2,load-7,11\n\
             replied,1,bench,12\n\
             replied,2,load-7,13\n\
             received,3,bench,14\n\
             replied,3,bench,15\n\
             replied,4,ben",
        )
        .unwrap();
        gather_events(&from, &to, ("bench", 3), &["replied"]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&to).unwrap(),
            "event,seq,key,unix_ns\n\
             received,1,bench,10\n\
             replied,1,bench,12\n\
             received,3,bench,14\n\
             replied,3,bench,15\n"
        );
    }

    #[test]
    fn values_name_their_write() {
        assert_eq!(write_index(b"w-17"), Some(17));
        assert_eq!(write_index(b"x-17"), None);
        assert_eq!(write_index(b"w-"), None);
    }

    #[test]
    fn probe_reads_parse_and_print_back() {
        for text in ["poll", "after", "fresh:5ms", "fresh:250us", "fresh:1s"] {
            let read: ProbeRead = text.parse().unwrap();
            assert_eq!(read.to_string(), text);
        }
        assert_eq!(
            "fresh:5ms".parse::<ProbeRead>(),
            Ok(ProbeRead::Fresh(Duration::from_millis(5)))
        );
        assert!("fresh:0ms".parse::<ProbeRead>().is_err());
        assert!("fresh:".parse::<ProbeRead>().is_err());
        assert!("later".parse::<ProbeRead>().is_err());
        assert_eq!(
            ProbeRead::At(vec![]).conditions(Some(token_for_at()), Duration::ZERO),
            None
        );
        let token = Token { history: 9, seq: 4 };
        let wait = Duration::from_millis(20);
        assert_eq!(ProbeRead::Poll.conditions(Some(token), wait), None);
        let after = ProbeRead::After.conditions(Some(token), wait).unwrap();
        assert_eq!(
            (after.after, after.max_staleness, after.wait),
            (Some(token), None, wait)
        );
        let fresh = ProbeRead::Fresh(Duration::from_millis(5))
            .conditions(Some(token), wait)
            .unwrap();
        assert_eq!(fresh.after, None);
        assert_eq!(fresh.max_staleness, Some(Duration::from_millis(5)));
    }

    fn token_for_at() -> Token {
        Token { history: 1, seq: 1 }
    }

    #[test]
    fn delays_parse_print_back_and_refuse_garbage() {
        let at: ProbeRead = "at:0,50us,1ms,2.5ms,1s,750ns".parse().unwrap();
        let us = Duration::from_micros;
        assert_eq!(
            at,
            ProbeRead::At(vec![
                Duration::ZERO,
                us(50),
                us(1_000),
                us(2_500),
                us(1_000_000),
                Duration::from_nanos(750)
            ])
        );
        assert_eq!(at.to_string(), "at:0,50us,1ms,2500us,1s,750ns");
        assert_eq!(at.to_string().parse::<ProbeRead>(), Ok(at));
        // `at` alone is the default list, printed in full for run.json.
        let default: ProbeRead = "at".parse().unwrap();
        assert_eq!(
            default.to_string(),
            "at:0,50us,100us,200us,500us,1ms,2ms,5ms,10ms"
        );
        for garbage in ["at:", "at:1ms,", "at:,1ms", "at:soon", "at:1ms,-2ms", "at0"] {
            assert!(garbage.parse::<ProbeRead>().is_err(), "{garbage}");
        }
    }
}
