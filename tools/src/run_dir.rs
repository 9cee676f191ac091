//! The files of one measured run, as `duokv bench` writes them and
//! `duokv stats` reads them.
//!
//! ```text
//! DIR/
//!   run.json            RunMeta: parameters, hosts, mode, version, commit,
//!                       clock-offset probes before and after the run
//!   client.csv          one ClientRow per write, header first
//!   master-events.csv   the master's --event-log (see event_log)
//!   slave-events.csv    the slave's --event-log
//!   probe.csv           one ProbeRow per write the reader probe read with
//!                       a condition (`duokv bench --probe-read after` or
//!                       `fresh:D`); absent for the default polling probe
//!   visibility.csv      one VisibilityRow per write the reader probe read
//!                       at a fixed delay after its commit (`duokv bench
//!                       --probe-read at:D1,D2,...`): t-visibility, the
//!                       chance that a read t after the commit sees it
//! ```
//!
//! Every timestamp is UNIX nanoseconds on the clock of the machine that
//! took it; durations are nanoseconds from a monotonic clock.
//!
//! A run directory holds one run. [`create`] refuses a directory that
//! already holds a run's results (`run.json`, `client.csv`, `probe.csv` or
//! `visibility.csv`):
//! mixing a new run with the old one's event logs, probe rows or charts
//! would report the old run's events against the new run's writes. Event
//! logs alone are allowed, since whoever runs the replicas (`duokv demo`,
//! the deployer) points their `--event-log` into the directory before the
//! bench starts.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The name of the parameters file.
pub const RUN_JSON: &str = "run.json";
/// The name of the client's per-write file.
pub const CLIENT_CSV: &str = "client.csv";
/// The name of the master's event log in a run directory.
pub const MASTER_EVENTS: &str = "master-events.csv";
/// The name of the slave's event log in a run directory.
pub const SLAVE_EVENTS: &str = "slave-events.csv";
/// The name of the reader probe's per-write file.
pub const PROBE_CSV: &str = "probe.csv";
/// The header of `probe.csv`.
pub const PROBE_HEADER: &str = "write,outcome,read_ns,saw_write";
/// The name of the reader probe's file of reads at fixed delays.
pub const VISIBILITY_CSV: &str = "visibility.csv";
/// The header of `visibility.csv`.
pub const VISIBILITY_HEADER: &str = "write,delay_ns,offset_ns,read_ns,saw_write,late";
/// The header of `client.csv`.
pub const CLIENT_HEADER: &str =
    "write,write_id,value,start_unix_ns,commit_unix_ns,latency_ns,visible_unix_ns,error";

/// The files that make a directory hold a run's results.
const RESULTS: [&str; 4] = [RUN_JSON, CLIENT_CSV, PROBE_CSV, VISIBILITY_CSV];

/// Refuses `dir` if it holds a previous run's results ([`Error::Usage`],
/// naming the file found); a directory that does not exist is fresh.
pub fn check_fresh(dir: &Path) -> Result<()> {
    for name in RESULTS {
        let path = dir.join(name);
        let exists = path.try_exists().map_err(|source| Error::File {
            path: path.clone(),
            source,
        })?;
        if exists {
            return Err(Error::Usage {
                message: format!(
                    "{} already holds a run ({name}): give a new directory, or remove or \
                     rename that one (a run directory holds one run; its old event logs and \
                     charts would be mixed with the new run's)",
                    dir.display()
                ),
            });
        }
    }
    Ok(())
}

/// Creates the run directory `dir` (and its parents), refusing one that
/// holds a previous run's results (see [`check_fresh`]).
pub fn create(dir: &Path) -> Result<()> {
    check_fresh(dir)?;
    fs::create_dir_all(dir).map_err(|source| Error::File {
        path: dir.to_path_buf(),
        source,
    })
}

/// One NTP-style estimate of a replica's clock against the client's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClockProbe {
    /// The replica's clock minus the client's, in nanoseconds.
    pub offset_ns: i64,
    /// The true offset is within this of `offset_ns` (half the round trip).
    pub error_bound_ns: u64,
    /// The round trip of the probe kept (the fastest of several).
    pub rtt_ns: u64,
    /// The client's clock when the probe was taken.
    pub at_unix_ns: u64,
}

/// The clock probes of one replica, before and after the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClockOffsets {
    /// Taken before the first write.
    pub before: ClockProbe,
    /// Taken after the last write.
    pub after: ClockProbe,
}

/// `run.json`: what was run, where, and with which build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// `sync` or `async`.
    pub mode: String,
    /// Writes issued.
    pub count: u64,
    /// Time between write starts, nanoseconds.
    pub interval_ns: u64,
    /// The key every write updates.
    pub key: String,
    /// The master's address as the client dialled it.
    pub master: String,
    /// The slave's address as the client dialled it.
    pub slave: String,
    /// Where the client ran (`local`, a host name, ...).
    pub client_host: String,
    /// The duokv version.
    pub duokv_version: String,
    /// The git commit of the build, when known.
    pub git_commit: Option<String>,
    /// Client clock at the first write's scheduled start.
    pub started_unix_ns: u64,
    /// Client clock after the last write.
    pub finished_unix_ns: u64,
    /// The master's clock against the client's.
    pub master_clock: Option<ClockOffsets>,
    /// The slave's clock against the client's.
    pub slave_clock: Option<ClockOffsets>,
    /// Free-form facts (e.g. the deployer's host checks).
    #[serde(default)]
    pub notes: Vec<(String, String)>,
    /// How the reader probe read the slave: `poll` (plain reads until the
    /// write shows), `after` (one read after the write's token),
    /// `fresh:D` (one read under a staleness bound D) or `at:D1,D2,...`
    /// (one plain read at a fixed delay after the commit, the delays
    /// taken in turn: the list is recorded here in full); `None` in runs
    /// from before the choice, which polled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_read: Option<String>,
}

impl RunMeta {
    /// Reads `DIR/run.json`.
    pub fn load(dir: &Path) -> Result<RunMeta> {
        let path = dir.join(RUN_JSON);
        let text = fs::read_to_string(&path).map_err(|source| Error::File {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| Error::BadFile {
            path,
            reason: e.to_string(),
        })
    }

    /// Writes `DIR/run.json`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(RUN_JSON);
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::BadFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        fs::write(&path, text + "\n").map_err(|source| Error::File { path, source })
    }
}

/// One row of `client.csv`: one write as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRow {
    /// The write's index in the run, from 0.
    pub write: u64,
    /// The write's ID (its seq from the receipt); 0 if it failed.
    pub write_id: u64,
    /// The value written, naming the write (`w-17`).
    pub value: String,
    /// Client clock when the write was sent.
    pub start_unix_ns: u64,
    /// Client clock when the reply arrived (the commit); 0 if it failed.
    pub commit_unix_ns: u64,
    /// Start to commit on the monotonic clock; 0 if it failed.
    pub latency_ns: u64,
    /// Client clock when a reader first saw the value on the slave; `None`
    /// if it never did within the probe's patience.
    pub visible_unix_ns: Option<u64>,
    /// Why the write failed, if it did.
    pub error: Option<String>,
}

impl ClientRow {
    /// The row as a CSV line (no newline). The error, if any, is quoted.
    pub fn to_csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{}",
            self.write,
            self.write_id,
            self.value,
            self.start_unix_ns,
            self.commit_unix_ns,
            self.latency_ns,
            self.visible_unix_ns
                .map(|v| v.to_string())
                .unwrap_or_default(),
            self.error
                .as_ref()
                .map(|e| format!("\"{}\"", e.replace('"', "'")))
                .unwrap_or_default()
        )
    }

    /// Parses a line written by [`to_csv`](Self::to_csv).
    pub fn from_csv(line: &str) -> Option<ClientRow> {
        let mut fields = line.splitn(8, ',');
        let mut next = || fields.next();
        let number = |text: Option<&str>| text?.parse::<u64>().ok();
        let write = number(next())?;
        let write_id = number(next())?;
        let value = next()?.to_string();
        let start_unix_ns = number(next())?;
        let commit_unix_ns = number(next())?;
        let latency_ns = number(next())?;
        let visible = next()?;
        let visible_unix_ns = if visible.is_empty() {
            None
        } else {
            Some(visible.parse().ok()?)
        };
        let error = next()
            .filter(|e| !e.is_empty())
            .map(|e| e.trim_matches('"').to_string());
        Some(ClientRow {
            write,
            write_id,
            value,
            start_unix_ns,
            commit_unix_ns,
            latency_ns,
            visible_unix_ns,
            error,
        })
    }
}

/// How the reader probe's conditional read of one write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeOutcome {
    /// Answered when asked without a wait: the condition held on arrival.
    AtOnce,
    /// Refused when asked without a wait, answered when asked again with
    /// one: the read had to wait for the write or for a proof.
    Waited,
    /// Refused after the wait: the write was still not visible.
    NotYetVisible,
    /// Refused after the wait: the staleness bound could not be proven.
    TooStale,
    /// Refused: the slave does not continue the token's history.
    UnknownHistory,
    /// The read failed otherwise (connection lost, ...).
    Failed,
}

impl ProbeOutcome {
    /// Every outcome, in report order.
    pub const ALL: [ProbeOutcome; 6] = [
        ProbeOutcome::AtOnce,
        ProbeOutcome::Waited,
        ProbeOutcome::NotYetVisible,
        ProbeOutcome::TooStale,
        ProbeOutcome::UnknownHistory,
        ProbeOutcome::Failed,
    ];

    /// The name in `probe.csv`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeOutcome::AtOnce => "at_once",
            ProbeOutcome::Waited => "waited",
            ProbeOutcome::NotYetVisible => "not_yet_visible",
            ProbeOutcome::TooStale => "too_stale",
            ProbeOutcome::UnknownHistory => "unknown_history",
            ProbeOutcome::Failed => "failed",
        }
    }

    /// Whether the slave answered with a value.
    pub fn answered(self) -> bool {
        matches!(self, ProbeOutcome::AtOnce | ProbeOutcome::Waited)
    }

    /// Whether the slave refused the read under its condition.
    pub fn refused(self) -> bool {
        matches!(
            self,
            ProbeOutcome::NotYetVisible | ProbeOutcome::TooStale | ProbeOutcome::UnknownHistory
        )
    }
}

impl std::str::FromStr for ProbeOutcome {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<ProbeOutcome, String> {
        ProbeOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == name)
            .ok_or_else(|| format!("unknown probe outcome `{name}`"))
    }
}

/// One row of `probe.csv`: the reader probe's conditional read of one
/// write on the slave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeRow {
    /// The write's index in the run (the `write` of its `client.csv` row).
    pub write: u64,
    /// How the read ended.
    pub outcome: ProbeOutcome,
    /// From the first ask to the final answer, on the client's monotonic
    /// clock: one round trip when answered at once, two and the slave's
    /// wait otherwise.
    pub read_ns: u64,
    /// Whether the value read was this write's or a later one's.
    pub saw_write: bool,
}

impl ProbeRow {
    /// The row as a CSV line (no newline).
    pub fn to_csv(&self) -> String {
        format!(
            "{},{},{},{}",
            self.write,
            self.outcome.as_str(),
            self.read_ns,
            u8::from(self.saw_write)
        )
    }

    /// Parses a line written by [`to_csv`](Self::to_csv).
    pub fn from_csv(line: &str) -> Option<ProbeRow> {
        let mut fields = line.split(',');
        let row = ProbeRow {
            write: fields.next()?.parse().ok()?,
            outcome: fields.next()?.parse().ok()?,
            read_ns: fields.next()?.parse().ok()?,
            saw_write: match fields.next()? {
                "1" => true,
                "0" => false,
                _ => return None,
            },
        };
        fields.next().is_none().then_some(row)
    }
}

/// Writes `DIR/probe.csv`.
pub fn save_probe_rows(dir: &Path, rows: &[ProbeRow]) -> Result<()> {
    save_rows(
        &dir.join(PROBE_CSV),
        PROBE_HEADER,
        rows.iter().map(ProbeRow::to_csv),
    )
}

/// Reads `DIR/probe.csv`; `None` if the run has none (a polling probe, or a
/// run from before the probe could read with conditions).
pub fn load_probe_rows(dir: &Path) -> Result<Option<Vec<ProbeRow>>> {
    load_optional_rows(&dir.join(PROBE_CSV), "a probe row", ProbeRow::from_csv)
}

/// One row of `visibility.csv`: the reader probe's plain read of one write
/// on the slave at a fixed delay after the write's commit
/// (`--probe-read at:...`).
///
/// The commit is when the client got the write's reply; every time here is
/// on the client's monotonic clock, so no clock sync is involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisibilityRow {
    /// The write's index in the run (the `write` of its `client.csv` row).
    pub write: u64,
    /// The delay after the commit the read was scheduled at.
    pub delay_ns: u64,
    /// When the read was actually sent, after the commit: `delay_ns` plus
    /// however late the probe was.
    pub offset_ns: u64,
    /// The read's round trip.
    pub read_ns: u64,
    /// Whether the value read was this write's or a later one's.
    pub saw_write: bool,
    /// Whether the read was sent too late to count for its delay (see
    /// [`VisibilityRow::is_late`]); the statistics leave it out.
    pub late: bool,
}

impl VisibilityRow {
    /// Whether a read scheduled at `delay_ns` and sent at `offset_ns` after
    /// the commit is late: more than 50 µs or a tenth of the delay,
    /// whichever is larger, after its time.
    pub fn is_late(delay_ns: u64, offset_ns: u64) -> bool {
        offset_ns > delay_ns.saturating_add((delay_ns / 10).max(50_000))
    }

    /// The row as a CSV line (no newline).
    pub fn to_csv(&self) -> String {
        format!(
            "{},{},{},{},{},{}",
            self.write,
            self.delay_ns,
            self.offset_ns,
            self.read_ns,
            u8::from(self.saw_write),
            u8::from(self.late)
        )
    }

    /// Parses a line written by [`to_csv`](Self::to_csv).
    pub fn from_csv(line: &str) -> Option<VisibilityRow> {
        let fields: Vec<&str> = line.split(',').collect();
        let [write, delay_ns, offset_ns, read_ns, saw_write, late] = fields[..] else {
            return None;
        };
        let flag = |text: &str| match text {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        };
        Some(VisibilityRow {
            write: write.parse().ok()?,
            delay_ns: delay_ns.parse().ok()?,
            offset_ns: offset_ns.parse().ok()?,
            read_ns: read_ns.parse().ok()?,
            saw_write: flag(saw_write)?,
            late: flag(late)?,
        })
    }
}

/// Writes `DIR/visibility.csv`.
pub fn save_visibility_rows(dir: &Path, rows: &[VisibilityRow]) -> Result<()> {
    save_rows(
        &dir.join(VISIBILITY_CSV),
        VISIBILITY_HEADER,
        rows.iter().map(VisibilityRow::to_csv),
    )
}

/// Reads `DIR/visibility.csv`; `None` if the run has none (its probe did
/// not read at fixed delays).
pub fn load_visibility_rows(dir: &Path) -> Result<Option<Vec<VisibilityRow>>> {
    load_optional_rows(
        &dir.join(VISIBILITY_CSV),
        "a visibility row",
        VisibilityRow::from_csv,
    )
}

/// Writes `header` and one line per row to `path`.
fn save_rows(path: &Path, header: &str, lines: impl Iterator<Item = String>) -> Result<()> {
    let mut text = String::from(header);
    text.push('\n');
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    fs::write(path, text).map_err(|source| Error::File {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads the rows after the header of the file at `path` with `parse`;
/// `None` if there is no such file. A line `parse` refuses is an error
/// naming it as not `what`.
fn load_optional_rows<T>(
    path: &Path,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<Vec<T>>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::File {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut rows = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if number == 0 || line.trim().is_empty() {
            continue;
        }
        rows.push(parse(line).ok_or_else(|| Error::BadFile {
            path: path.to_path_buf(),
            reason: format!("line {} is not {what}: {line}", number + 1),
        })?);
    }
    Ok(Some(rows))
}

/// Writes `DIR/client.csv`.
pub fn save_client_rows(dir: &Path, rows: &[ClientRow]) -> Result<()> {
    let path = dir.join(CLIENT_CSV);
    let mut text = String::from(CLIENT_HEADER);
    text.push('\n');
    for row in rows {
        text.push_str(&row.to_csv());
        text.push('\n');
    }
    let mut file = fs::File::create(&path).map_err(|source| Error::File {
        path: path.clone(),
        source,
    })?;
    file.write_all(text.as_bytes())
        .map_err(|source| Error::File { path, source })
}

/// Reads `DIR/client.csv`.
pub fn load_client_rows(dir: &Path) -> Result<Vec<ClientRow>> {
    let path = dir.join(CLIENT_CSV);
    let file = fs::File::open(&path).map_err(|source| Error::File {
        path: path.clone(),
        source,
    })?;
    let mut rows = Vec::new();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| Error::File {
            path: path.clone(),
            source,
        })?;
        if number == 0 || line.trim().is_empty() {
            continue;
        }
        rows.push(ClientRow::from_csv(&line).ok_or_else(|| Error::BadFile {
            path: path.clone(),
            reason: format!("line {} is not a client row: {line}", number + 1),
        })?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_directory_holds_one_run() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("a/run");
        create(&run).unwrap();
        // Event logs, as a harness leaves them before the bench: still fresh.
        fs::write(run.join(MASTER_EVENTS), "").unwrap();
        create(&run).unwrap();
        fs::write(run.join(CLIENT_CSV), CLIENT_HEADER).unwrap();
        let refused = create(&run).unwrap_err().to_string();
        assert!(
            refused.contains("already holds a run (client.csv)"),
            "{refused}"
        );
    }

    #[test]
    fn client_rows_round_trip() {
        let row = ClientRow {
            write: 3,
            write_id: 17,
            value: "w-3".into(),
            start_unix_ns: 10,
            commit_unix_ns: 20,
            latency_ns: 10,
            visible_unix_ns: Some(25),
            error: None,
        };
        assert_eq!(ClientRow::from_csv(&row.to_csv()), Some(row.clone()));
        let failed = ClientRow {
            write_id: 0,
            commit_unix_ns: 0,
            latency_ns: 0,
            visible_unix_ns: None,
            error: Some("replica unavailable: slave, gone".into()),
            ..row
        };
        assert_eq!(ClientRow::from_csv(&failed.to_csv()), Some(failed));
    }

    #[test]
    fn probe_rows_round_trip_and_refuse_garbage() {
        for outcome in ProbeOutcome::ALL {
            let row = ProbeRow {
                write: 7,
                outcome,
                read_ns: 81_234,
                saw_write: outcome.answered(),
            };
            assert_eq!(ProbeRow::from_csv(&row.to_csv()), Some(row));
        }
        assert_eq!(ProbeRow::from_csv("7,waited,100,2"), None);
        assert_eq!(ProbeRow::from_csv("7,later,100,1"), None);
        assert_eq!(ProbeRow::from_csv("7,waited,100,1,x"), None);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_probe_rows(dir.path()).unwrap(), None);
        let rows = [ProbeRow {
            write: 0,
            outcome: ProbeOutcome::TooStale,
            read_ns: 5,
            saw_write: false,
        }];
        save_probe_rows(dir.path(), &rows).unwrap();
        assert_eq!(load_probe_rows(dir.path()).unwrap(), Some(rows.to_vec()));
    }

    #[test]
    fn visibility_rows_round_trip_and_refuse_garbage() {
        let row = VisibilityRow {
            write: 12,
            delay_ns: 500_000,
            offset_ns: 512_345,
            read_ns: 61_002,
            saw_write: true,
            late: false,
        };
        assert_eq!(row.to_csv(), "12,500000,512345,61002,1,0");
        assert_eq!(VisibilityRow::from_csv(&row.to_csv()), Some(row));
        let late = VisibilityRow {
            saw_write: false,
            late: true,
            ..row
        };
        assert_eq!(VisibilityRow::from_csv(&late.to_csv()), Some(late));
        for garbage in ["12,500000,512345,61002,1", "12,500000,512345,61002,1,0,x"] {
            assert_eq!(VisibilityRow::from_csv(garbage), None, "{garbage}");
        }
        assert_eq!(VisibilityRow::from_csv("12,500000,512345,61002,2,0"), None);
        assert_eq!(VisibilityRow::from_csv("-1,500000,512345,61002,1,0"), None);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_visibility_rows(dir.path()).unwrap(), None);
        save_visibility_rows(dir.path(), &[row, late]).unwrap();
        let text = fs::read_to_string(dir.path().join(VISIBILITY_CSV)).unwrap();
        assert!(
            text.starts_with(&format!("{VISIBILITY_HEADER}\n")),
            "{text}"
        );
        assert_eq!(
            load_visibility_rows(dir.path()).unwrap(),
            Some(vec![row, late])
        );
        // A directory with a visibility.csv holds a run.
        assert!(check_fresh(dir.path()).is_err());
    }

    #[test]
    fn a_read_is_late_past_50us_or_a_tenth_of_its_delay() {
        // Delay 0: up to 50 us is on time.
        assert!(!VisibilityRow::is_late(0, 50_000));
        assert!(VisibilityRow::is_late(0, 50_001));
        // 200 us: the 50 us floor still rules.
        assert!(!VisibilityRow::is_late(200_000, 250_000));
        assert!(VisibilityRow::is_late(200_000, 250_001));
        // 10 ms: a tenth, 1 ms.
        assert!(!VisibilityRow::is_late(10_000_000, 11_000_000));
        assert!(VisibilityRow::is_late(10_000_000, 11_000_001));
    }
}
