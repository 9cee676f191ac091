//! `duokv perf-report DIR`: duokv and Redis side by side, from the raw runs
//! that `bench/compare.sh` leaves in `DIR`.
//!
//! The script measures four systems, each a master and a replica on this
//! machine with every write fsynced before it is acknowledged:
//!
//! | system | writes acknowledged after |
//! |---|---|
//! | `duokv-sync` | the master's and the slave's `fdatasync` |
//! | `redis-wait` | the master's AOF fsync, then `WAIT 1 1000`: the replica *received* it (not fsynced) |
//! | `duokv-async` | the master's `fdatasync`; the slave follows |
//! | `redis-async` | the master's AOF fsync; the replica follows |
//!
//! and compares them in pairs, `duokv-sync` with `redis-wait` and
//! `duokv-async` with `redis-async`, over a matrix of cells (a workload and a
//! number of clients), each cell run several times. Noise between runs is
//! large on a shared two-core machine, so every figure here is a **median
//! over the repetitions** of a cell, taken per figure (the median
//! throughput, the median p50, the median p99), and every run is listed too.
//!
//! Files read, in `DIR`:
//!
//! - `raw/<system>-<workload>-c<clients>-r<rep>.json`: one `duokv load
//!   --json` report per run; `<workload>` is `writes` (writes only) or
//!   `mixed` (90 % reads, 10 % writes);
//! - `floor.json`: what one `fdatasync` and one loopback round trip cost on
//!   this machine (`fdatasync_us`, `round_trip_us`, in microseconds);
//! - `cpu.csv` (optional): per run, the CPU seconds (user + system) of the
//!   load generator, the master and the replica, and the run's wall time;
//! - `machine.txt`, `commit.txt`: the machine and the commit measured;
//! - `notes.md` (optional): hand-written observations, appended verbatim.
//!
//! Files written: `README.md` (the returned markdown) and `chart.svg`.
//!
//! Latency is the writes' latency in the writes-only workload. In the mixed
//! workload the report has the reads' and the writes' percentiles apart:
//! the load generator reports them separately and percentiles of the two
//! kinds together cannot be recovered from their summaries.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The name of the markdown report written into the directory.
pub const README_MD: &str = "README.md";
/// The name of the chart written into the directory.
pub const CHART_SVG: &str = "chart.svg";
/// The directory of the raw reports, inside the run directory.
pub const RAW_DIR: &str = "raw";
/// The physical floor measured by the script.
pub const FLOOR_JSON: &str = "floor.json";
/// CPU time of the load generator and the servers per run (optional).
pub const CPU_CSV: &str = "cpu.csv";
/// Optional hand-written observations, appended to the report.
pub const NOTES_MD: &str = "notes.md";

/// The systems, in the order of the tables and the chart.
pub const SYSTEMS: [&str; 4] = ["duokv-sync", "redis-wait", "duokv-async", "redis-async"];
/// The compared pairs: (duokv, its Redis counterpart).
pub const PAIRS: [(&str, &str); 2] = [("duokv-sync", "redis-wait"), ("duokv-async", "redis-async")];
/// The target of the 1-client sync latency: p50 at most this times the floor.
pub const FLOOR_FACTOR: f64 = 1.3;

/// A workload of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    /// Writes only (`--writes 1.0`).
    Writes,
    /// 90 % reads, 10 % writes (`--writes 0.1`).
    Mixed,
}

impl Workload {
    /// The workload's name in the raw files' names.
    pub fn key(self) -> &'static str {
        match self {
            Workload::Writes => "writes",
            Workload::Mixed => "mixed",
        }
    }

    /// A title for tables and charts.
    pub fn label(self) -> &'static str {
        match self {
            Workload::Writes => "writes only",
            Workload::Mixed => "90 % reads, 10 % writes",
        }
    }

    /// The share of writes `duokv load --writes` ran it with.
    pub fn write_ratio(self) -> f64 {
        match self {
            Workload::Writes => 1.0,
            Workload::Mixed => 0.1,
        }
    }

    fn from_key(key: &str) -> Option<Workload> {
        [Workload::Writes, Workload::Mixed]
            .into_iter()
            .find(|w| w.key() == key)
    }
}

/// One run: one raw report.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// One of [`SYSTEMS`].
    pub system: String,
    /// The workload.
    pub workload: Workload,
    /// Closed-loop clients.
    pub clients: usize,
    /// The repetition, from 1.
    pub rep: u32,
    /// Successful operations per second.
    pub ops_per_sec: f64,
    /// Failed operations.
    pub errors: u64,
    /// The writes' latency.
    pub writes: Latency,
    /// The reads' latency.
    pub reads: Latency,
    /// CPU use during the run, if `cpu.csv` has it.
    pub cpu: Option<Cpu>,
}

/// CPU use during a run, in CPU seconds per second of the run: 1.0 is one
/// core busy all the time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cpu {
    /// The load generator (`duokv load`).
    pub load: f64,
    /// The master.
    pub master: f64,
    /// The replica.
    pub replica: f64,
}

impl Cpu {
    /// All three together.
    pub fn total(&self) -> f64 {
        self.load + self.master + self.replica
    }
}

/// The latency figures of one kind of operation that the report uses, in
/// microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Latency {
    /// Operations measured.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
}

/// The medians over the repetitions of one system in one cell.
#[derive(Debug, Clone, PartialEq)]
pub struct CellResult {
    /// The system.
    pub system: String,
    /// The workload.
    pub workload: Workload,
    /// Closed-loop clients.
    pub clients: usize,
    /// Repetitions measured.
    pub reps: usize,
    /// Median throughput, operations per second.
    pub ops_per_sec: f64,
    /// Median of the writes' p50, µs.
    pub write_p50_us: f64,
    /// Median of the writes' p99, µs.
    pub write_p99_us: f64,
    /// Median of the reads' p50, µs (`None` without reads).
    pub read_p50_us: Option<f64>,
    /// Median of the reads' p99, µs (`None` without reads).
    pub read_p99_us: Option<f64>,
    /// Failed operations, summed over the repetitions.
    pub errors: u64,
    /// Medians of each part's CPU use over the repetitions that have it.
    pub cpu: Option<Cpu>,
    /// Median over the repetitions of the master's CPU time per operation,
    /// µs.
    pub master_cpu_us_per_op: Option<f64>,
}

/// The physical floor of a replicated, fsynced write on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Floor {
    /// Median time of appending ~150 bytes and calling `fdatasync`, µs.
    pub fdatasync_us: f64,
    /// Median loopback round trip, µs.
    pub round_trip_us: f64,
}

impl Floor {
    /// One `fdatasync` plus two round trips (client to master, master to
    /// slave), µs: what a sync write cannot beat if the master's and the
    /// slave's syncs overlapped perfectly.
    pub fn floor_us(&self) -> f64 {
        self.fdatasync_us + 2.0 * self.round_trip_us
    }
}

/// Whether a target was met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The measured figures meet it.
    Met,
    /// They do not.
    Missed,
    /// A figure it needs was not measured.
    NotMeasured,
}

impl Outcome {
    fn of(met: bool) -> Outcome {
        if met { Outcome::Met } else { Outcome::Missed }
    }

    /// `met`, `missed` or `not measured`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Met => "met",
            Outcome::Missed => "missed",
            Outcome::NotMeasured => "not measured",
        }
    }
}

/// A performance target and how the run fared.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// What the target asks.
    pub goal: &'static str,
    /// Whether it was met.
    pub outcome: Outcome,
    /// The numbers it was decided on.
    pub detail: String,
}

/// Everything the report shows.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Every run, in file-name order.
    pub runs: Vec<Run>,
    /// The medians per cell and system, in table order.
    pub cells: Vec<CellResult>,
    /// The physical floor, if `floor.json` was there.
    pub floor: Option<Floor>,
    /// `machine.txt`, if there.
    pub machine: Option<String>,
    /// `commit.txt`, if there.
    pub commit: Option<String>,
    /// `notes.md`, if there.
    pub notes: Option<String>,
}

/// The parts of a `duokv load --json` report the comparison reads.
#[derive(Deserialize)]
struct RawReport {
    ops_per_sec: f64,
    errors: u64,
    writes: Latency,
    reads: Latency,
    config: RawConfig,
}

#[derive(Deserialize)]
struct RawConfig {
    clients: usize,
    write_ratio: f64,
    #[serde(default)]
    target: Option<serde_json::Value>,
}

/// Reads the run directory, writes `README.md` and `chart.svg` into it and
/// returns the markdown.
pub fn run(dir: &Path) -> Result<String> {
    let comparison = load(dir)?;
    chart(&comparison, &dir.join(CHART_SVG))?;
    let text = markdown(&comparison);
    let readme = dir.join(README_MD);
    std::fs::write(&readme, &text).map_err(|source| Error::File {
        path: readme,
        source,
    })?;
    Ok(text)
}

/// Reads the raw reports and the side files of a run directory.
pub fn load(dir: &Path) -> Result<Comparison> {
    let paths = raw_reports(dir)?;
    let mut runs = paths
        .iter()
        .map(|path| read_run(path))
        .collect::<Result<Vec<_>>>()?;
    if let Some(text) = read_optional(&dir.join(CPU_CSV))? {
        let cpu = parse_cpu(&text).map_err(|reason| Error::BadFile {
            path: dir.join(CPU_CSV),
            reason,
        })?;
        for run in &mut runs {
            run.cpu = cpu
                .get(&(run.system.clone(), run.workload, run.clients, run.rep))
                .copied();
        }
    }
    if runs.is_empty() {
        return Err(Error::BadFile {
            path: dir.join(RAW_DIR),
            reason: "no raw reports (*.json)".into(),
        });
    }
    let floor = match read_optional(&dir.join(FLOOR_JSON))? {
        Some(text) => Some(
            serde_json::from_str::<Floor>(&text).map_err(|e| Error::BadFile {
                path: dir.join(FLOOR_JSON),
                reason: e.to_string(),
            })?,
        ),
        None => None,
    };
    Ok(Comparison {
        cells: cells(&runs),
        runs,
        floor,
        machine: read_optional(&dir.join("machine.txt"))?,
        commit: read_optional(&dir.join("commit.txt"))?.map(|c| c.trim().to_string()),
        notes: read_optional(&dir.join(NOTES_MD))?,
    })
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::File {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// `(system, workload, clients, rep)` from `<system>-<workload>-c<clients>-r<rep>.json`.
fn parse_name(name: &str) -> Option<(String, Workload, usize, u32)> {
    let stem = name.strip_suffix(".json")?;
    let (rest, rep) = stem.rsplit_once("-r")?;
    let (rest, clients) = rest.rsplit_once("-c")?;
    let (system, workload) = rest.rsplit_once('-')?;
    Some((
        system.to_string(),
        Workload::from_key(workload)?,
        clients.parse().ok()?,
        rep.parse().ok()?,
    ))
}

fn read_run(path: &Path) -> Result<Run> {
    let bad = |reason: String| Error::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let (system, workload, clients, rep) = parse_name(name)
        .ok_or_else(|| bad("not named <system>-<writes|mixed>-c<clients>-r<rep>.json".into()))?;
    if !SYSTEMS.contains(&system.as_str()) {
        return Err(bad(format!(
            "unknown system {system:?} (expected one of {SYSTEMS:?})"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|source| Error::File {
        path: path.to_path_buf(),
        source,
    })?;
    let report: RawReport = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if report.config.clients != clients {
        return Err(bad(format!(
            "ran {} clients, the name says {clients}",
            report.config.clients
        )));
    }
    if (report.config.write_ratio - workload.write_ratio()).abs() > 1e-9 {
        return Err(bad(format!(
            "ran with --writes {}, {} means {}",
            report.config.write_ratio,
            workload.key(),
            workload.write_ratio()
        )));
    }
    if let Some(target) = &report.config.target {
        check_target(&system, target).map_err(bad)?;
    }
    Ok(Run {
        system,
        workload,
        clients,
        rep,
        ops_per_sec: report.ops_per_sec,
        errors: report.errors,
        writes: report.writes,
        reads: report.reads,
        cpu: None,
    })
}

/// A run's identity: system, workload, clients, repetition.
type RunKey = (String, Workload, usize, u32);

/// `cpu.csv`: a header, then
/// `system,workload,clients,rep,seconds,load_cpu_s,master_cpu_s,replica_cpu_s`.
fn parse_cpu(text: &str) -> Result<BTreeMap<RunKey, Cpu>, String> {
    const HEADER: &str =
        "system,workload,clients,rep,seconds,load_cpu_s,master_cpu_s,replica_cpu_s";
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some(HEADER) {
        return Err(format!("the first line is not {HEADER}"));
    }
    let mut rows = BTreeMap::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = || format!("line {}: {line:?}", i + 2);
        let fields: Vec<&str> = line.trim().split(',').collect();
        let [system, workload, clients, rep, numbers @ ..] = fields.as_slice() else {
            return Err(bad());
        };
        let numbers: Vec<f64> = numbers
            .iter()
            .map(|n| n.parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        let [seconds, load, master, replica] = numbers.as_slice() else {
            return Err(bad());
        };
        if *seconds <= 0.0 {
            return Err(bad());
        }
        let key = (
            system.to_string(),
            Workload::from_key(workload).ok_or_else(bad)?,
            clients.parse().map_err(|_| bad())?,
            rep.parse().map_err(|_| bad())?,
        );
        let cpu = Cpu {
            load: load / seconds,
            master: master / seconds,
            replica: replica / seconds,
        };
        rows.insert(key, cpu);
    }
    Ok(rows)
}

/// Whether the `config.target` of a report (`{"kind": "redis", "wait_ms":
/// 1000}`) is what the system's name says: duokv for `duokv-*`, Redis with
/// `WAIT` for `redis-wait`, Redis without it for `redis-async`.
fn check_target(system: &str, target: &serde_json::Value) -> Result<(), String> {
    let kind = target["kind"].as_str().unwrap_or("");
    let waits = !target["wait_ms"].is_null();
    let expected = match system {
        "redis-wait" => kind == "redis" && waits,
        "redis-async" => kind == "redis" && !waits,
        _ => kind == "duokv",
    };
    if expected {
        Ok(())
    } else {
        Err(format!("{system} measured with target {target}"))
    }
}

/// The median of `values` (the mean of the middle two for an even count),
/// `None` for none.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut sorted: Vec<f64> = values.into_iter().collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// The medians per (workload, clients, system), in the order of the tables:
/// workload, then clients, then [`SYSTEMS`].
pub fn cells(runs: &[Run]) -> Vec<CellResult> {
    let rank = |system: &str| {
        SYSTEMS
            .iter()
            .position(|s| *s == system)
            .unwrap_or(usize::MAX)
    };
    let mut groups: BTreeMap<(Workload, usize, usize), Vec<&Run>> = BTreeMap::new();
    for run in runs {
        groups
            .entry((run.workload, run.clients, rank(&run.system)))
            .or_default()
            .push(run);
    }
    groups
        .into_values()
        .map(|group| {
            let first = group[0];
            let reads: Vec<&Latency> = group
                .iter()
                .map(|r| &r.reads)
                .filter(|l| l.count > 0)
                .collect();
            CellResult {
                system: first.system.clone(),
                workload: first.workload,
                clients: first.clients,
                reps: group.len(),
                ops_per_sec: median(group.iter().map(|r| r.ops_per_sec)).unwrap_or(0.0),
                write_p50_us: median(group.iter().map(|r| r.writes.p50_us)).unwrap_or(0.0),
                write_p99_us: median(group.iter().map(|r| r.writes.p99_us)).unwrap_or(0.0),
                read_p50_us: median(reads.iter().map(|l| l.p50_us)),
                read_p99_us: median(reads.iter().map(|l| l.p99_us)),
                errors: group.iter().map(|r| r.errors).sum(),
                cpu: cell_cpu(&group),
                master_cpu_us_per_op: median(
                    group
                        .iter()
                        .filter(|r| r.ops_per_sec > 0.0)
                        .filter_map(|r| r.cpu.map(|c| c.master / r.ops_per_sec * 1e6)),
                ),
            }
        })
        .collect()
}

/// The medians of each part's CPU use over the runs that have it.
fn cell_cpu(group: &[&Run]) -> Option<Cpu> {
    let cpus: Vec<Cpu> = group.iter().filter_map(|r| r.cpu).collect();
    Some(Cpu {
        load: median(cpus.iter().map(|c| c.load))?,
        master: median(cpus.iter().map(|c| c.master))?,
        replica: median(cpus.iter().map(|c| c.replica))?,
    })
}

impl Comparison {
    /// The medians of `system` in a cell, if measured.
    pub fn cell(&self, workload: Workload, clients: usize, system: &str) -> Option<&CellResult> {
        self.cells
            .iter()
            .find(|c| c.workload == workload && c.clients == clients && c.system == system)
    }

    /// The client counts measured in `workload`, ascending.
    pub fn clients(&self, workload: Workload) -> Vec<usize> {
        let mut clients: Vec<usize> = self
            .cells
            .iter()
            .filter(|c| c.workload == workload)
            .map(|c| c.clients)
            .collect();
        clients.dedup();
        clients
    }

    /// The workloads measured, writes only first.
    pub fn workloads(&self) -> Vec<Workload> {
        let mut workloads: Vec<Workload> = self.cells.iter().map(|c| c.workload).collect();
        workloads.dedup();
        workloads
    }

    /// The three targets, checked against the medians.
    pub fn targets(&self) -> Vec<Target> {
        let writes64 = |system| self.cell(Workload::Writes, 64, system);
        let async_target = match (writes64("duokv-async"), writes64("redis-async")) {
            (Some(d), Some(r)) => Target {
                goal: "async, fsync always, 64 clients, writes only: duokv-async throughput ≥ redis-async",
                outcome: Outcome::of(d.ops_per_sec >= r.ops_per_sec),
                detail: format!(
                    "{} vs {} ops/s ({})",
                    thousands(d.ops_per_sec),
                    thousands(r.ops_per_sec),
                    ratio(d.ops_per_sec, r.ops_per_sec)
                ),
            },
            _ => not_measured(
                "async, fsync always, 64 clients, writes only: duokv-async throughput ≥ redis-async",
            ),
        };
        let sync_target = match (writes64("duokv-sync"), writes64("redis-wait")) {
            (Some(d), Some(r)) => Target {
                goal: "sync, 64 clients, writes only: duokv-sync throughput ≥ redis-wait and p99 ≤ redis-wait",
                outcome: Outcome::of(
                    d.ops_per_sec >= r.ops_per_sec && d.write_p99_us <= r.write_p99_us,
                ),
                detail: format!(
                    "throughput {} vs {} ops/s ({}, {}); p99 {} vs {} µs ({}, {})",
                    thousands(d.ops_per_sec),
                    thousands(r.ops_per_sec),
                    ratio(d.ops_per_sec, r.ops_per_sec),
                    Outcome::of(d.ops_per_sec >= r.ops_per_sec).label(),
                    thousands(d.write_p99_us),
                    thousands(r.write_p99_us),
                    ratio(d.write_p99_us, r.write_p99_us),
                    Outcome::of(d.write_p99_us <= r.write_p99_us).label(),
                ),
            },
            _ => not_measured(
                "sync, 64 clients, writes only: duokv-sync throughput ≥ redis-wait and p99 ≤ redis-wait",
            ),
        };
        let floor_goal = "1 client, writes only: duokv-sync p50 ≤ 1.3 × floor (one fdatasync + two loopback round trips)";
        let floor_target = match (self.cell(Workload::Writes, 1, "duokv-sync"), self.floor) {
            (Some(d), Some(floor)) => {
                let limit = FLOOR_FACTOR * floor.floor_us();
                Target {
                    goal: floor_goal,
                    outcome: Outcome::of(d.write_p50_us <= limit),
                    detail: format!(
                        "p50 {} µs vs limit {} µs (floor {} µs = fdatasync {} µs + 2 × round trip {} µs; p50 is {:.2}x the floor)",
                        fixed1(d.write_p50_us),
                        fixed1(limit),
                        fixed1(floor.floor_us()),
                        fixed1(floor.fdatasync_us),
                        fixed1(floor.round_trip_us),
                        d.write_p50_us / floor.floor_us()
                    ),
                }
            }
            _ => not_measured(floor_goal),
        };
        vec![async_target, sync_target, floor_target]
    }
}

fn not_measured(goal: &'static str) -> Target {
    Target {
        goal,
        outcome: Outcome::NotMeasured,
        detail: "a figure it needs is not in the run directory".into(),
    }
}

/// `value` rounded to an integer, with thousands separators: `12,345`.
fn thousands(value: f64) -> String {
    let rounded = value.round();
    let digits = format!("{:.0}", rounded.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// `value` to one decimal, with thousands separators: `1,234.5`.
fn fixed1(value: f64) -> String {
    let text = format!("{value:.1}");
    let (whole, decimal) = text.split_once('.').unwrap_or((&text, "0"));
    match whole.parse::<f64>() {
        Ok(whole_value) if whole_value.abs() >= 1000.0 => {
            let sign = if whole.starts_with('-') { "-" } else { "" };
            format!("{sign}{}.{decimal}", thousands(whole_value.abs()))
        }
        _ => text,
    }
}

/// `a / b` as `1.23x`, or `–` if `b` is not positive.
fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "–".into()
    }
}

fn opt_us(value: Option<f64>) -> String {
    value.map_or("–".into(), thousands)
}

fn opt_ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => ratio(a, b),
        _ => "–".into(),
    }
}

/// The markdown report.
pub fn markdown(c: &Comparison) -> String {
    let mut out = String::new();
    let reps = c.cells.iter().map(|cell| cell.reps).max().unwrap_or(0);
    let _ = writeln!(out, "# duokv and Redis side by side\n");
    let _ = writeln!(
        out,
        "Generated by `duokv perf-report` from the raw runs of `bench/compare.sh`; every \
         figure below was measured, none is estimated. Each system is a master and a \
         replica on this one machine (loopback, same disk, same cores), every write \
         fsynced on the master before it is acknowledged. Each cell (a workload and a \
         number of closed-loop clients) is `duokv load` against the master for the same \
         duration, 100-byte values over 10,000 keys, repeated {reps} times; the figures \
         are **medians over the repetitions**, each taken on its own (median \
         throughput, median p50, median p99). Ratios are duokv / Redis: above 1 is more \
         throughput for duokv, below 1 is lower latency for duokv.\n"
    );
    let _ = writeln!(out, "![throughput and p99 per cell]({CHART_SVG})\n");

    out.push_str("## Systems\n\n");
    out.push_str(
        "| system | servers | a write is acknowledged after |\n|---|---|---|\n\
         | `duokv-sync` | `duokv-server` master + slave, `--fsync always`, `--replication sync` | the master's `fdatasync` and the slave's `fdatasync` (the slave acks after its sync) |\n\
         | `redis-wait` | `redis-server` master + replica, `--appendonly yes --appendfsync always --save ''`; each write `SET` then `WAIT 1 1000` | the master's AOF fsync, then the replica's acknowledgement that it *received* the write: **`WAIT` does not wait for the replica's fsync**, so this is a weaker guarantee than `duokv-sync`'s; a `WAIT` that reports no replica within 1 s counts as an error |\n\
         | `duokv-async` | as `duokv-sync`, `--replication async` | the master's `fdatasync`; the slave follows |\n\
         | `redis-async` | the same Redis pair, plain `SET` | the master's AOF fsync; the replica follows |\n\n",
    );
    out.push_str(
        "Pairs: `duokv-sync` with `redis-wait`, `duokv-async` with `redis-async`. The \
         two Redis systems are one Redis master + replica, measured with and without \
         `WAIT`. Reads are `GET` on Redis and reads on the duokv master.\n\n",
    );

    out.push_str("## Targets\n\n");
    for target in c.targets() {
        let mark = match target.outcome {
            Outcome::Met => "**met**",
            Outcome::Missed => "**missed**",
            Outcome::NotMeasured => "**not measured**",
        };
        let _ = writeln!(
            out,
            "- {mark}. {}. Measured: {}.",
            capitalise(target.goal),
            target.detail
        );
    }
    out.push('\n');

    if let Some(floor) = c.floor {
        out.push_str("## The physical floor\n\n");
        let _ = writeln!(
            out,
            "Measured by the script on this machine with no load, before the runs and \
             again right before each repetition of the 1-client writes cell (this disk's \
             `fdatasync` time drifts over minutes), as the median over those probes: \
             appending ~150 bytes to a file in the servers' data directory and calling \
             `fdatasync` takes **{} µs** (each probe the median of 200); a loopback round \
             trip takes **{} µs** (see `{FLOOR_JSON}` for how, and every probe). A sync \
             write needs at least one `fdatasync` and two round trips (client → master, \
             master → slave): **{} µs**.\n",
            fixed1(floor.fdatasync_us),
            fixed1(floor.round_trip_us),
            fixed1(floor.floor_us())
        );
    }

    for workload in c.workloads() {
        let _ = writeln!(out, "## {}\n", capitalise(workload.label()));
        workload_table(&mut out, c, workload);
    }

    if c.cells.iter().any(|cell| cell.cpu.is_some()) {
        cpu_table(&mut out, c);
    }

    out.push_str("## Every run\n\n<details><summary>");
    let _ = write!(out, "{} runs, in file order", c.runs.len());
    out.push_str("</summary>\n\n| system | workload | clients | rep | ops/s | write p50 µs | write p99 µs | read p50 µs | read p99 µs | errors |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for run in &c.runs {
        let reads = (run.reads.count > 0).then_some(run.reads);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run.system,
            run.workload.key(),
            run.clients,
            run.rep,
            thousands(run.ops_per_sec),
            thousands(run.writes.p50_us),
            thousands(run.writes.p99_us),
            opt_us(reads.map(|r| r.p50_us)),
            opt_us(reads.map(|r| r.p99_us)),
            run.errors
        );
    }
    out.push_str("\n</details>\n\n");

    out.push_str("## Machine and commit\n\n");
    if let Some(commit) = &c.commit {
        let _ = writeln!(out, "Commit: `{commit}` ([commit.txt](commit.txt)).\n");
    }
    if let Some(machine) = &c.machine {
        let _ = writeln!(out, "```\n{}\n```\n", machine.trim_end());
    }

    out.push_str(
        "## How to rerun\n\n\
         ```sh\n\
         bench/compare.sh results/perf 5 3    # OUT_DIR, seconds per run, repetitions\n\
         duokv perf-report results/perf       # this README and chart.svg from raw/\n\
         ```\n\n\
         `bench/compare.sh` installs Debian's `redis-server` if it is missing, starts \
         every server itself on free loopback ports with its data in a temporary \
         directory, and stops them at the end. Raw reports: [raw/](raw/), one \
         `duokv load --json` report per run.\n",
    );

    if let Some(notes) = &c.notes {
        out.push('\n');
        out.push_str(notes.trim_end());
        out.push('\n');
    }
    out
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn cpu_table(out: &mut String, c: &Comparison) {
    let _ = writeln!(
        out,
        "## CPU\n\n\
         CPU time (user + system) per second of run, so 1.00 is one core busy all \
         the time; the cores this machine has are in `machine.txt`. The load \
         generator's is its own, the servers' come from `/proc/<pid>/stat` before \
         and after each run ([{CPU_CSV}]({CPU_CSV})). Medians over the repetitions; \
         the last column is the master's CPU time per operation.\n\n\
         | workload | clients | system | load generator | master | replica | total | master µs per op |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for cell in &c.cells {
        let Some(cpu) = cell.cpu else { continue };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            cell.workload.key(),
            cell.clients,
            cell.system,
            cpu.load,
            cpu.master,
            cpu.replica,
            cpu.total(),
            cell.master_cpu_us_per_op.map_or("–".into(), fixed1),
        );
    }
    out.push('\n');
}

fn workload_table(out: &mut String, c: &Comparison, workload: Workload) {
    let mixed = workload == Workload::Mixed;
    if mixed {
        out.push_str(
            "Reads and writes have their own percentiles (the load generator summarises \
             them apart). Latencies in µs.\n\n\
             | clients | system | ops/s | read p50 | read p99 | write p50 | write p99 | errors | ratio ops/s | ratio read p99 | ratio write p99 |\n\
             |---|---|---|---|---|---|---|---|---|---|---|\n",
        );
    } else {
        out.push_str(
            "Latency of the writes, in µs.\n\n\
             | clients | system | ops/s | p50 | p99 | errors | ratio ops/s | ratio p50 | ratio p99 |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        );
    }
    for clients in c.clients(workload) {
        for (duokv, redis) in PAIRS {
            let d = c.cell(workload, clients, duokv);
            let r = c.cell(workload, clients, redis);
            for (cell, other) in [(d, r), (r, None)] {
                let Some(cell) = cell else { continue };
                let versus = |f: fn(&CellResult) -> Option<f64>| match other {
                    Some(o) => opt_ratio(f(cell), f(o)),
                    None => String::new(),
                };
                let ops = versus(|x| Some(x.ops_per_sec));
                if mixed {
                    let _ = writeln!(
                        out,
                        "| {clients} | {} | {} | {} | {} | {} | {} | {} | {ops} | {} | {} |",
                        cell.system,
                        thousands(cell.ops_per_sec),
                        opt_us(cell.read_p50_us),
                        opt_us(cell.read_p99_us),
                        thousands(cell.write_p50_us),
                        thousands(cell.write_p99_us),
                        cell.errors,
                        versus(|x| x.read_p99_us),
                        versus(|x| Some(x.write_p99_us)),
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "| {clients} | {} | {} | {} | {} | {} | {ops} | {} | {} |",
                        cell.system,
                        thousands(cell.ops_per_sec),
                        thousands(cell.write_p50_us),
                        thousands(cell.write_p99_us),
                        cell.errors,
                        versus(|x| Some(x.write_p50_us)),
                        versus(|x| Some(x.write_p99_us)),
                    );
                }
            }
        }
    }
    out.push('\n');
}

/// Series colours: duokv in blues, Redis in reds; the sync pair dark, the
/// async pair light (Tableau 20).
const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(174, 199, 232),
    RGBColor(255, 152, 150),
];
/// The size of the chart, in pixels.
const SIZE: (u32, u32) = (1100, 900);
/// The font of titles and labels.
const FONT: &str = "sans-serif";

/// A drawing failure as this crate's error about `path`.
fn failed(path: &Path) -> impl Fn(DrawingAreaErrorKind<io::Error>) -> Error + '_ {
    move |e| Error::File {
        path: path.to_path_buf(),
        source: io::Error::other(format!("cannot draw the chart: {e}")),
    }
}

/// The chart: throughput per cell for the four systems (top) and the
/// writes' p99 per cell (bottom), grouped bars on log scales.
pub fn chart(c: &Comparison, path: &Path) -> Result<()> {
    let err = failed(path);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let root = root
        .titled(
            "duokv vs Redis, master + replica, fsync always (medians over repetitions)",
            (FONT, 22),
        )
        .map_err(&err)?;
    let cells: Vec<(Workload, usize)> = c
        .workloads()
        .into_iter()
        .flat_map(|w| c.clients(w).into_iter().map(move |n| (w, n)))
        .collect();
    let panels = root.split_evenly((2, 1));
    panel(
        &panels[0],
        c,
        &cells,
        "throughput",
        "operations per second (log scale)",
        |cell| Some(cell.ops_per_sec),
        &err,
    )?;
    panel(
        &panels[1],
        c,
        &cells,
        "p99 latency of writes",
        "microseconds (log scale)",
        |cell| Some(cell.write_p99_us),
        &err,
    )?;
    root.present().map_err(&err)?;
    Ok(())
}

/// The bar of system `s` (of 4) in cell `i`: its x range.
fn bar_x(i: usize, s: usize) -> Range<f64> {
    let width = 0.8 / SYSTEMS.len() as f64;
    let start = i as f64 - 0.4 + s as f64 * width;
    start + 0.01..start + width - 0.01
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    c: &Comparison,
    cells: &[(Workload, usize)],
    title: &str,
    y_desc: &str,
    value: fn(&CellResult) -> Option<f64>,
    err: &impl Fn(DrawingAreaErrorKind<io::Error>) -> Error,
) -> Result<()> {
    let labels: Vec<String> = cells
        .iter()
        .map(|(w, n)| match n {
            1 => format!("{}, 1 client", w.key()),
            n => format!("{}, {n} clients", w.key()),
        })
        .collect();
    let values: Vec<Vec<Option<f64>>> = SYSTEMS
        .iter()
        .map(|system| {
            cells
                .iter()
                .map(|&(w, n)| c.cell(w, n, system).and_then(value).filter(|v| *v > 0.0))
                .collect()
        })
        .collect();
    let present = || values.iter().flatten().flatten().copied();
    let hi = present().fold(0.0f64, f64::max);
    let lo = present().fold(f64::INFINITY, f64::min);
    let x = -0.5..(cells.len().max(1) as f64 - 0.5);
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(title, (FONT, 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(80);
    let x_labels = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    // Log scale: 1 and 64 clients differ by an order of magnitude or more.
    // The decade above the tallest bar is room for the legend.
    let (lo, hi) = if hi > 0.0 {
        (lo / 2.0, hi * 10.0)
    } else {
        (1.0, 10.0)
    };
    let chart = builder
        .build_cartesian_2d(x, (lo..hi).log_scale())
        .map_err(err)?;
    draw_bars(chart, lo, &values, cells.len(), &x_labels, y_desc, err)
}

/// Draws the mesh, a bar per system and cell from `base` up, and the legend.
fn draw_bars<'a, Y>(
    mut chart: ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    base: f64,
    values: &[Vec<Option<f64>>],
    cells: usize,
    x_labels: &dyn Fn(&f64) -> String,
    y_desc: &str,
    err: &impl Fn(DrawingAreaErrorKind<io::Error>) -> Error,
) -> Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(cells.max(1))
        .x_label_formatter(x_labels)
        .y_desc(y_desc)
        .y_label_formatter(&|y| thousands(*y))
        .draw()
        .map_err(err)?;
    for (s, system) in SYSTEMS.iter().enumerate() {
        let colour = COLOURS[s];
        let bars = values[s].iter().enumerate().filter_map(|(i, v)| {
            v.map(|v| {
                let x = bar_x(i, s);
                Rectangle::new([(x.start, base), (x.end, v)], colour.filled())
            })
        });
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(*system)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], colour.filled()));
    }
    crate::stats::charts::legend_at(&mut chart, SeriesLabelPosition::UpperLeft, err)
}

/// The `*.json` files of `DIR/raw`, sorted by name.
fn raw_reports(dir: &Path) -> Result<Vec<PathBuf>> {
    let raw = dir.join(RAW_DIR);
    let failed = |source| Error::File {
        path: raw.clone(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(&raw).map_err(failed)? {
        let path = entry.map_err(failed)?.path();
        if path.extension().is_some_and(|e| e == "json") {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw report as `duokv load --json` writes it (extra fields included,
    /// as the real one has them).
    fn report(system: &str, clients: usize, writes: f64, ops: f64, p50: f64, p99: f64) -> String {
        let target = match system {
            "redis-wait" => serde_json::json!({"kind": "redis", "wait_ms": 1000}),
            "redis-async" => serde_json::json!({"kind": "redis", "wait_ms": null}),
            _ => serde_json::json!({"kind": "duokv"}),
        };
        let reads = if writes < 1.0 {
            serde_json::json!({"count": 900, "p50_us": p50 / 2.0, "p90_us": p99 / 4.0,
                "p99_us": p99 / 2.0, "p999_us": p99, "max_us": p99, "mean_us": p50 / 2.0})
        } else {
            serde_json::json!({"count": 0, "p50_us": 0.0, "p90_us": 0.0, "p99_us": 0.0,
                "p999_us": 0.0, "max_us": 0.0, "mean_us": 0.0})
        };
        serde_json::json!({
            "config": {"addr": "127.0.0.1:1", "clients": clients,
                "duration": {"secs": 5, "nanos": 0}, "write_ratio": writes,
                "keys": 10000, "value_size": 100, "target": target},
            "elapsed": {"secs": 5, "nanos": 1000},
            "ops": (ops * 5.0) as u64, "errors": 0, "first_error": null,
            "writes": {"count": 100, "p50_us": p50, "p90_us": p99 / 2.0, "p99_us": p99,
                "p999_us": p99 * 2.0, "max_us": p99 * 3.0, "mean_us": p50},
            "reads": reads,
            "ops_per_sec": ops,
        })
        .to_string()
    }

    fn write(dir: &Path, system: &str, workload: Workload, clients: usize, rep: u32, json: &str) {
        let raw = dir.join(RAW_DIR);
        std::fs::create_dir_all(&raw).unwrap();
        let name = format!("{system}-{}-c{clients}-r{rep}.json", workload.key());
        std::fs::write(raw.join(name), json).unwrap();
    }

    /// Writes-only cells at 1 and 64 clients for the four systems, three
    /// repetitions each (throughput `base`, `3 base`, `2 base`: median
    /// `2 base`), a mixed cell at 64 clients, and the side files.
    fn fixture(dir: &Path) {
        let systems = [
            ("duokv-sync", 10_000.0, 900.0),
            ("redis-wait", 8_000.0, 1_200.0),
            ("duokv-async", 20_000.0, 700.0),
            ("redis-async", 25_000.0, 500.0),
        ];
        for (system, ops, p99) in systems {
            for (rep, scale) in [(1, 1.0), (2, 3.0), (3, 2.0)] {
                for clients in [1, 64] {
                    let c = clients as f64;
                    let json = report(
                        system,
                        clients,
                        1.0,
                        ops * scale * c / 64.0,
                        200.0 * scale,
                        p99 * scale,
                    );
                    write(dir, system, Workload::Writes, clients, rep, &json);
                }
                let json = report(
                    system,
                    64,
                    0.1,
                    ops * 4.0 * scale,
                    100.0 * scale,
                    p99 * scale,
                );
                write(dir, system, Workload::Mixed, 64, rep, &json);
            }
        }
        std::fs::write(
            dir.join(FLOOR_JSON),
            r#"{"fdatasync_us": 200.0, "round_trip_us": 25.0, "floor_us": 250.0, "method": "test"}"#,
        )
        .unwrap();
        let mut cpu = String::from(
            "system,workload,clients,rep,seconds,load_cpu_s,master_cpu_s,replica_cpu_s\n",
        );
        for (rep, master) in [(1, 5.0), (2, 4.0), (3, 4.5)] {
            cpu += &format!("duokv-async,writes,64,{rep},5.0,2.5,{master},0.5\n");
        }
        std::fs::write(dir.join(CPU_CSV), cpu).unwrap();
        std::fs::write(dir.join("machine.txt"), "cpus: 2\n").unwrap();
        std::fs::write(dir.join("commit.txt"), "abc123\n").unwrap();
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median([7.0]), Some(7.0));
        assert_eq!(median(std::iter::empty()), None);
    }

    #[test]
    fn file_names_parse_and_systems_may_hold_hyphens() {
        assert_eq!(
            parse_name("duokv-sync-writes-c64-r3.json"),
            Some(("duokv-sync".into(), Workload::Writes, 64, 3))
        );
        assert_eq!(
            parse_name("redis-async-mixed-c1-r10.json"),
            Some(("redis-async".into(), Workload::Mixed, 1, 10))
        );
        assert_eq!(parse_name("duokv-sync-reads-c1-r1.json"), None);
        assert_eq!(parse_name("duokv-sync-writes-c1.json"), None);
    }

    #[test]
    fn cells_hold_medians_over_the_repetitions() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let c = load(dir.path()).unwrap();
        assert_eq!(c.runs.len(), 4 * 3 * 3);
        assert_eq!(c.cells.len(), 4 * 3);
        assert_eq!(c.workloads(), vec![Workload::Writes, Workload::Mixed]);
        assert_eq!(c.clients(Workload::Writes), vec![1, 64]);
        let d = c.cell(Workload::Writes, 64, "duokv-sync").unwrap();
        assert_eq!(d.reps, 3);
        assert!(close(d.ops_per_sec, 20_000.0));
        assert!(close(d.write_p50_us, 400.0));
        assert!(close(d.write_p99_us, 1_800.0));
        assert_eq!(d.read_p50_us, None);
        let m = c.cell(Workload::Mixed, 64, "redis-async").unwrap();
        assert!(close(m.ops_per_sec, 200_000.0));
        assert!(close(m.read_p50_us.unwrap(), 100.0));
        assert!(close(m.read_p99_us.unwrap(), 500.0));
        // Table order: workload, clients, then the systems' order.
        let order: Vec<&str> = c.cells[..4].iter().map(|c| c.system.as_str()).collect();
        assert_eq!(order, SYSTEMS);
        assert_eq!(c.floor.unwrap().floor_us(), 250.0);
        // CPU: medians per part; per op from each run's own throughput.
        let cpu = c.cell(Workload::Writes, 64, "duokv-async").unwrap();
        assert_eq!(
            cpu.cpu,
            Some(Cpu {
                load: 0.5,
                master: 0.9,
                replica: 0.1
            })
        );
        // runs: 1.0 / 20,000, 0.8 / 60,000, 0.9 / 40,000 ops/s → 50, 13.3, 22.5 µs
        assert!(close(cpu.master_cpu_us_per_op.unwrap(), 22.5));
        assert_eq!(
            c.cell(Workload::Writes, 1, "duokv-async").unwrap().cpu,
            None
        );
        assert_eq!(c.commit.as_deref(), Some("abc123"));
    }

    #[test]
    fn targets_are_checked_with_their_numbers() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let targets = load(dir.path()).unwrap().targets();
        // async: 40,000 vs 50,000 ops/s.
        assert_eq!(targets[0].outcome, Outcome::Missed);
        assert!(
            targets[0].detail.contains("40,000 vs 50,000 ops/s (0.80x)"),
            "{}",
            targets[0].detail
        );
        // sync: 20,000 vs 16,000 ops/s, p99 1,800 vs 2,400 µs.
        assert_eq!(targets[1].outcome, Outcome::Met);
        assert!(targets[1].detail.contains("1.25x"), "{}", targets[1].detail);
        assert!(
            targets[1].detail.contains("1,800 vs 2,400 µs (0.75x, met)"),
            "{}",
            targets[1].detail
        );
        // floor: p50 400 µs vs 1.3 × 250 = 325 µs.
        assert_eq!(targets[2].outcome, Outcome::Missed);
        assert!(
            targets[2].detail.contains("p50 400.0 µs vs limit 325.0 µs"),
            "{}",
            targets[2].detail
        );
    }

    #[test]
    fn a_missing_cell_or_floor_is_not_measured_not_a_guess() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        std::fs::remove_file(dir.path().join(FLOOR_JSON)).unwrap();
        for rep in 1..=3 {
            let name = format!("redis-async-writes-c64-r{rep}.json");
            std::fs::remove_file(dir.path().join(RAW_DIR).join(name)).unwrap();
        }
        let c = load(dir.path()).unwrap();
        let targets = c.targets();
        assert_eq!(targets[0].outcome, Outcome::NotMeasured);
        assert_eq!(targets[1].outcome, Outcome::Met);
        assert_eq!(targets[2].outcome, Outcome::NotMeasured);
        let text = markdown(&c);
        assert!(!text.contains("physical floor"));
    }

    #[test]
    fn run_writes_the_readme_and_an_svg_chart() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        std::fs::write(dir.path().join(NOTES_MD), "## Observations\n\nthe CPU\n").unwrap();
        let text = run(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(README_MD)).unwrap(),
            text
        );
        assert!(
            text.contains("| 64 | duokv-sync | 20,000 | 400 | 1,800 | 0 | 1.25x | 1.00x | 0.75x |"),
            "{text}"
        );
        assert!(
            text.contains("| 64 | redis-wait | 16,000 | 400 | 2,400 | 0 |  |  |  |"),
            "{text}"
        );
        assert!(text.contains("| 64 | duokv-async | 160,000 | 100 | 700 | 200 | 1,400 | 0 | 0.80x | 1.40x | 1.40x |"), "{text}");
        assert!(text.contains("**missed**. Async, fsync always"), "{text}");
        assert!(text.contains("WAIT` does not wait for the replica's fsync"));
        assert!(text.contains("abc123"));
        assert!(
            text.contains("| writes | 64 | duokv-async | 0.50 | 0.90 | 0.10 | 1.50 | 22.5 |"),
            "{text}"
        );
        assert!(text.ends_with("## Observations\n\nthe CPU\n"));
        let svg = std::fs::read_to_string(dir.path().join(CHART_SVG)).unwrap();
        let body = svg.trim_start();
        let body = body
            .strip_prefix("<?xml")
            .map_or(body, |rest| rest.split_once("?>").unwrap().1.trim_start());
        assert!(body.starts_with("<svg"), "{}", &body[..40]);
        assert!(body.trim_end().ends_with("</svg>"));
        for label in [
            "throughput",
            "p99 latency of writes",
            "duokv-sync",
            "redis-async",
            "writes, 64 clients",
        ] {
            assert!(svg.contains(label), "no {label:?} in the chart");
        }
    }

    #[test]
    fn a_report_that_contradicts_its_name_is_refused() {
        // (file's system, workload, clients; the report's system, clients, --writes)
        let cases = [
            ("duokv-sync", Workload::Writes, 16, "duokv-sync", 64, 1.0),
            ("duokv-sync", Workload::Mixed, 16, "duokv-sync", 16, 1.0),
            ("redis-wait", Workload::Writes, 16, "duokv-sync", 16, 1.0),
            ("redis-wait", Workload::Writes, 16, "redis-async", 16, 1.0),
            ("redis-async", Workload::Writes, 16, "redis-wait", 16, 1.0),
            ("memcached", Workload::Writes, 16, "duokv-sync", 16, 1.0),
        ];
        for (system, workload, clients, measured, ran, writes) in cases {
            let dir = tempfile::tempdir().unwrap();
            let json = report(measured, ran, writes, 1.0, 1.0, 1.0);
            write(dir.path(), system, workload, clients, 1, &json);
            let result = load(dir.path());
            assert!(
                matches!(result, Err(Error::BadFile { .. })),
                "{system} {measured}: {result:?}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(RAW_DIR)).unwrap();
        assert!(matches!(load(dir.path()), Err(Error::BadFile { .. })));
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        std::fs::write(dir.path().join(CPU_CSV), "system,workload\n").unwrap();
        assert!(matches!(load(dir.path()), Err(Error::BadFile { .. })));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.5), "1,000");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(thousands(-1234.0), "-1,234");
        assert_eq!(fixed1(1885.24), "1,885.2");
        assert_eq!(fixed1(-1234.56), "-1,234.6");
        assert_eq!(fixed1(999.94), "999.9");
        assert_eq!(ratio(1.0, 0.0), "–");
        assert_eq!(ratio(3.0, 2.0), "1.50x");
    }
}
