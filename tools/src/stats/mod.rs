//! `duokv stats`: latency and staleness of measured runs, as a terminal
//! report, a JSON document and SVG charts.
//!
//! `duokv bench` leaves a run directory behind (see [`run_dir`]); this module
//! reads it back and answers the assignment's questions: the minimum,
//! maximum and average latency and staleness of the test client's writes,
//! with the clock-sync error that comes with comparing two machines' clocks.
//! It is apart from the bench so that a run measured on EC2 can be analysed
//! anywhere, again and again, from its raw files.
//!
//! The work is in three steps, one file each, and two files for
//! t-visibility, the chance that a read of the slave a given time after the
//! commit sees the write:
//!
//! - [`compute`]: per-write values and per-measure [`Summary`]s (what each
//!   measure means, how clocks are corrected and how missing data is
//!   counted is documented there);
//! - [`report`]: the terminal report and the JSON document;
//! - [`charts`]: `latency.svg`, `staleness.svg` and `cdf.svg` per run,
//!   and the CDFs of several runs compared beside them; `visibility.svg`
//!   for a run that read at fixed delays;
//! - [`visibility`]: t-visibility measured, from `visibility.csv` (`duokv
//!   bench --probe-read at:...`): P(seen) per delay with its Wilson
//!   interval;
//! - [`predict`]: t-visibility predicted from the event logs' per-write
//!   phases by a seeded Monte Carlo (WARS, Bailis et al.), beside the
//!   measured curve.
//!
//! # Example
//!
//! ```no_run
//! use duokv_tools::stats::{self, StatsArgs};
//!
//! # fn main() -> duokv_tools::Result<()> {
//! let args = StatsArgs {
//!     dirs: vec!["results/sync".into(), "results/async".into()],
//!     json: false,
//!     charts: true,
//! };
//! print!("{}", stats::run(&args)?);
//!
//! // Or the numbers of one run, for other code:
//! let summary = stats::summarize(&stats::load("results/sync")?);
//! println!("mean latency {:?} ms", summary.latency.mean);
//! # Ok(())
//! # }
//! ```
//!
//! [`run_dir`]: crate::run_dir

pub mod charts;
pub mod compute;
pub mod predict;
pub mod report;
pub mod visibility;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::run_dir::{self, ClientRow, ProbeRow, RunMeta, VisibilityRow};
use duokv::event_log::{self, EventRow};

pub use compute::{Measure, RunSummary, Summary, WriteSample, summarize};

/// What `duokv stats` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsArgs {
    /// The run directories, in the order to report and compare them.
    pub dirs: Vec<PathBuf>,
    /// Return the JSON document instead of the terminal report.
    pub json: bool,
    /// Write the SVG charts into the run directories.
    pub charts: bool,
}

/// One run directory, as read from disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Where it was read from.
    pub dir: PathBuf,
    /// `run.json`.
    pub meta: RunMeta,
    /// `client.csv`, one row per write.
    pub client: Vec<ClientRow>,
    /// `master-events.csv`; `None` if the file is not there.
    pub master_events: Option<Vec<EventRow>>,
    /// `slave-events.csv`; `None` if the file is not there.
    pub slave_events: Option<Vec<EventRow>>,
    /// `probe.csv`; `None` if the file is not there (a polling probe).
    pub probe: Option<Vec<ProbeRow>>,
    /// `visibility.csv`; `None` if the file is not there (the probe did
    /// not read at fixed delays).
    pub visibility: Option<Vec<VisibilityRow>>,
}

/// Reads a run directory. `run.json` and `client.csv` must be there; an
/// absent event log is `None` (what needs it is reported missing), while
/// one that is there but unreadable is an error.
pub fn load(dir: impl AsRef<Path>) -> Result<Run> {
    let dir = dir.as_ref();
    let not_a_run = |reason: &str| Error::BadFile {
        path: dir.to_path_buf(),
        reason: format!("{reason}: give a run directory of `duokv bench` or `duokv demo`"),
    };
    match (dir.is_dir(), dir.join(run_dir::RUN_JSON).is_file()) {
        (false, _) if dir.exists() => return Err(not_a_run("not a directory")),
        (false, _) => return Err(not_a_run("no such directory")),
        (true, false) => return Err(not_a_run("not a run directory (no run.json)")),
        (true, true) => {}
    }
    let events = |name: &str| -> Result<Option<Vec<EventRow>>> {
        let path = dir.join(name);
        match path.try_exists() {
            Ok(true) => event_log::read(&path).map(Some).map_err(Error::from),
            Ok(false) => Ok(None),
            Err(source) => Err(Error::File { path, source }),
        }
    };
    Ok(Run {
        dir: dir.to_path_buf(),
        meta: RunMeta::load(dir)?,
        client: run_dir::load_client_rows(dir)?,
        master_events: events(run_dir::MASTER_EVENTS)?,
        slave_events: events(run_dir::SLAVE_EVENTS)?,
        probe: run_dir::load_probe_rows(dir)?,
        visibility: run_dir::load_visibility_rows(dir)?,
    })
}

/// Loads and summarises every directory of `args`, writes the charts when
/// asked, and returns the text to print: the terminal report (with a
/// comparison table when there are several runs) or, with `json`, the JSON
/// document; either ends with the paths of the charts written.
///
/// The per-run charts go into each run's directory; with two runs or more
/// the comparison of their CDFs goes beside them, once (see [`charts`]).
pub fn run(args: &StatsArgs) -> Result<String> {
    if args.dirs.is_empty() {
        return Err(Error::Usage {
            message: "no run directory given: duokv stats DIR... (the --out of `duokv bench`, \
                      or duokv-demo/sync and duokv-demo/async)"
                .into(),
        });
    }
    let summaries = args
        .dirs
        .iter()
        .map(|dir| load(dir).map(|run| summarize(&run)))
        .collect::<Result<Vec<_>>>()?;
    let written = if args.charts {
        charts::write_all(&summaries)?
    } else {
        Vec::new()
    };
    if args.json {
        report::json(&summaries, &written)
    } else {
        Ok(report::text(&summaries, &written))
    }
}

/// `1 write`, `2 writes`: a count with its noun, plural unless one.
pub(crate) fn plural(n: impl Into<u64>, noun: &str) -> String {
    match n.into() {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Fixture builders shared by the stats tests, and the end-to-end test.

    use super::*;
    use crate::run_dir::{ClockOffsets, ClockProbe};
    use duokv::event_log::{EventKind, EventLog};

    /// A `run.json` for `count` writes a second apart, without probes.
    pub(crate) fn meta(mode: &str, count: u64) -> RunMeta {
        RunMeta {
            mode: mode.into(),
            count,
            interval_ns: 1_000_000_000,
            key: "bench".into(),
            master: "127.0.0.1:7000".into(),
            slave: "127.0.0.1:7001".into(),
            client_host: "local".into(),
            duokv_version: "0.1.0".into(),
            git_commit: Some("abc1234".into()),
            started_unix_ns: 0,
            finished_unix_ns: 0,
            master_clock: None,
            slave_clock: None,
            notes: vec![],
            probe_read: None,
        }
    }

    /// Probes before and after: (offset, bound, client time) each.
    pub(crate) fn probes(o1: i64, b1: u64, at1: u64, o2: i64, b2: u64, at2: u64) -> ClockOffsets {
        let probe = |offset_ns, error_bound_ns, at_unix_ns| ClockProbe {
            offset_ns,
            error_bound_ns,
            rtt_ns: 2 * error_bound_ns,
            at_unix_ns,
        };
        ClockOffsets {
            before: probe(o1, b1, at1),
            after: probe(o2, b2, at2),
        }
    }

    /// A client row; `error` makes it a failed write.
    pub(crate) fn client_row(
        write: u64,
        write_id: u64,
        start: u64,
        commit: u64,
        error: Option<&str>,
    ) -> ClientRow {
        ClientRow {
            write,
            write_id,
            value: format!("w-{write}"),
            start_unix_ns: start,
            commit_unix_ns: commit,
            latency_ns: commit.saturating_sub(start),
            visible_unix_ns: None,
            error: error.map(str::to_string),
        }
    }

    /// An event log row for the key `bench`.
    pub(crate) fn event(name: &str, seq: u64, unix_ns: u64) -> EventRow {
        EventRow {
            kind: name.parse().expect("an event name"),
            seq,
            key: "bench".into(),
            unix_ns,
        }
    }

    /// Writes a run directory of `count` writes in `mode`, the event logs
    /// through [`EventLog`] as the servers write them (the slave shows each
    /// write 0.2 ms after applying it). The slave's events stop after
    /// `slave_writes` writes.
    pub(crate) fn write_run_dir(dir: &Path, mode: &str, count: u64, slave_writes: u64) {
        const MS: u64 = 1_000_000;
        let t0 = 1_700_000_000_000_000_000u64;
        let mut meta = meta(mode, count);
        meta.started_unix_ns = t0;
        meta.finished_unix_ns = t0 + count * 1_000 * MS;
        meta.master_clock = Some(probes(0, 20_000, t0, 0, 30_000, meta.finished_unix_ns));
        meta.slave_clock = Some(probes(
            500 * MS as i64,
            40_000,
            t0,
            500 * MS as i64,
            50_000,
            meta.finished_unix_ns,
        ));
        meta.save(dir).unwrap();

        let master = EventLog::create(dir.join(run_dir::MASTER_EVENTS)).unwrap();
        let slave = EventLog::create(dir.join(run_dir::SLAVE_EVENTS)).unwrap();
        let (m, s) = (master.sink(), slave.sink());
        let sync = mode == "sync";
        let mut rows = Vec::new();
        for i in 0..count {
            let seq = i + 1;
            let start = t0 + i * 1_000 * MS;
            let jitter = (i * 37 % 11) * MS / 10;
            let commit = start + MS + jitter;
            let slave_at = if sync {
                commit - MS / 2
            } else {
                commit + 2 * MS + jitter
            };
            m.record_at(EventKind::Received, 0, b"bench", start + MS / 10);
            m.record_at(EventKind::Applied, seq, b"bench", start + MS / 5);
            m.record_at(EventKind::Forwarded, seq, b"bench", start + MS / 4);
            let mut row = client_row(i, seq, start, commit, None);
            if i < slave_writes {
                s.record_at(
                    EventKind::Received,
                    seq,
                    b"bench",
                    slave_at - MS / 10 + 500 * MS,
                );
                s.record_at(EventKind::Applied, seq, b"bench", slave_at + 500 * MS);
                s.record_at(
                    EventKind::Visible,
                    seq,
                    b"bench",
                    slave_at + MS / 5 + 500 * MS,
                );
                m.record_at(EventKind::Acked, seq, b"bench", slave_at + MS / 5);
                row.visible_unix_ns = Some(slave_at.max(commit) + MS);
            }
            m.record_at(EventKind::Replied, seq, b"bench", commit - MS / 10);
            rows.push(row);
        }
        drop((m, s, master, slave));
        run_dir::save_client_rows(dir, &rows).unwrap();
    }

    /// The root element of an SVG file is `<svg ...>` and it is closed, with
    /// nothing after it.
    pub(crate) fn assert_svg(path: &Path) {
        let text = std::fs::read_to_string(path).unwrap();
        let body = text.trim();
        let body = body
            .strip_prefix("<?xml")
            .map_or(body, |rest| rest.split_once("?>").unwrap().1.trim_start());
        assert!(
            body.starts_with("<svg"),
            "{}: {}",
            path.display(),
            &body[..40]
        );
        assert!(body.ends_with("</svg>"), "{} is not closed", path.display());
        assert_eq!(body.matches("<svg").count(), 1, "{}", path.display());
        assert!(body.contains("<text"), "{} has no labels", path.display());
    }

    #[test]
    fn run_reports_every_measure_and_writes_the_charts() {
        let dir = tempfile::tempdir().unwrap();
        write_run_dir(dir.path(), "async", 20, 12);
        let args = StatsArgs {
            dirs: vec![dir.path().to_path_buf()],
            json: false,
            charts: true,
        };
        let text = run(&args).unwrap();
        for measure in Measure::ALL {
            assert!(
                text.lines().any(|l| l.starts_with(measure.label())),
                "no row for {}:\n{text}",
                measure.label()
            );
        }
        assert!(text.contains(
            "8 of 20 committed writes have no apply event on the slave: the slave missed them"
        ));
        assert!(text.contains("mode      async"), "{text}");
        for name in ["latency.svg", "staleness.svg", "cdf.svg"] {
            let path = dir.path().join(name);
            assert_svg(&path);
            assert!(text.contains(&path.display().to_string()), "{text}");
        }
        // The slave's clock is half a second ahead; corrected, the
        // staleness is a few milliseconds.
        let summary = summarize(&load(dir.path()).unwrap());
        let seed = &summary.staleness_two_clocks_seed;
        assert_eq!((seed.count, seed.missing), (12, 8));
        assert!(seed.max.unwrap() < 5.0, "{seed:?}");
    }

    #[test]
    fn run_compares_runs_and_speaks_json() {
        let root = tempfile::tempdir().unwrap();
        let (sync, asynchronous) = (root.path().join("sync"), root.path().join("async"));
        std::fs::create_dir(&sync).unwrap();
        std::fs::create_dir(&asynchronous).unwrap();
        write_run_dir(&sync, "sync", 10, 10);
        write_run_dir(&asynchronous, "async", 10, 10);
        std::fs::remove_file(asynchronous.join(run_dir::MASTER_EVENTS)).unwrap();
        let mut args = StatsArgs {
            dirs: vec![sync.clone(), asynchronous.clone()],
            json: false,
            charts: false,
        };
        let text = run(&args).unwrap();
        assert!(text.contains("comparison"), "{text}");
        assert!(text.contains("no master-events.csv"), "{text}");
        assert!(!sync.join("cdf.svg").exists());

        args.json = true;
        args.charts = true;
        let json: serde_json::Value = serde_json::from_str(&run(&args).unwrap()).unwrap();
        let runs = json["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0]["meta"]["mode"], "sync");
        for measure in Measure::ALL {
            assert!(runs[0][measure.key()]["mean"].is_f64(), "{}", measure.key());
        }
        assert_eq!(runs[1]["staleness_master_clock"]["missing"], 10);
        assert!(runs[1]["staleness_master_clock"]["mean"].is_null());
        assert_eq!(json["charts"].as_array().unwrap().len(), 7);
        assert_svg(&asynchronous.join("cdf.svg"));
        assert_svg(&root.path().join("cdf-sync-vs-async.svg"));
    }

    #[test]
    fn a_missing_run_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let args = StatsArgs {
            dirs: vec![dir.path().join("nope")],
            json: false,
            charts: true,
        };
        let missing = run(&args).unwrap_err().to_string();
        assert!(
            missing.ends_with(
                "nope: no such directory: give a run directory of `duokv bench` or `duokv demo`"
            ),
            "{missing}"
        );
        let args = StatsArgs {
            dirs: vec![dir.path().to_path_buf()],
            ..args
        };
        let empty = run(&args).unwrap_err().to_string();
        assert!(
            empty.contains("not a run directory (no run.json)"),
            "{empty}"
        );
        let args = StatsArgs {
            dirs: vec![],
            ..args
        };
        assert!(matches!(run(&args), Err(Error::Usage { .. })));
    }
}
