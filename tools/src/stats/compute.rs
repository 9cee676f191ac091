//! The arithmetic of `duokv stats`: from a loaded [`Run`] to one
//! [`WriteSample`] per write and one [`Summary`] per measure.
//!
//! It lives apart from the report and the charts so the numbers can be
//! checked on hand-computed fixtures without any formatting in the way.
//!
//! # The measures
//!
//! Every figure is in milliseconds. A write that failed (its `client.csv` row
//! has an `error`) is counted in [`RunSummary::failed`] and takes no part in
//! any measure; for the writes that committed, a measure whose data is
//! absent (no apply event on the slave, no `visible` time, ...) counts the
//! write in [`Summary::missing`] and never averages a stand-in value.
//!
//! - **latency**: commit minus start on the client's monotonic clock
//!   (`latency_ns`).
//! - **staleness, two clocks**: as the assignment defines it, the time the
//!   *last* replica applied the write minus the commit time. On the master
//!   that is its `applied` event (durable there, which is also when its
//!   readers see it); on the slave, its `visible` event: a slave applies a
//!   write at once but shows it to readers only once its master's commit
//!   notice says the write is durable there (`PROTOCOL.md` 7.9), and until
//!   then a reader of the slave is as stale as if it had not applied it.
//!   A slave log without any `visible` event (from a build before commit
//!   notices) is measured to its `applied` events, as it was then
//!   ([`RunSummary::slave_event`] says which). The times are on the
//!   replicas' clocks, the commit on the client's; each is moved onto the
//!   client's clock with the offset measured by the clock probes in
//!   `run.json` (see [`to_client_ns`]). Reported *raw* (negative when the
//!   last replica applied the write before the client saw the commit, as in
//!   sync mode) and as the assignment defines it (*clamped at zero*; its JSON key
//!   keeps the old name `staleness_two_clocks_seed`).
//! - **slave, applied to visible**: the slave's `visible` event minus its
//!   `applied` event for the same write, both on the slave's clock: what
//!   the commit notice adds to staleness. Absent for logs without `visible`
//!   events.
//! - **staleness, master clock**: the master's `replied` to its `acked`
//!   event for the same write, both on the master's clock, like PostgreSQL's
//!   `replay_lag`: an upper bound on the slave's lag that needs no clock
//!   synchronisation. Negative in sync mode, where the ack comes before the
//!   reply.
//! - **staleness, reader**: when the bench's reader probe first saw the
//!   value on the slave minus the commit, both on the client's clock. With
//!   the polling probe (the default) that is the first plain read that
//!   returned it; with a conditional probe (`--probe-read after`) the
//!   answer of its one read, when that read returned the write.
//!
//! A run whose probe read with conditions also has a `probe.csv`, summed
//! up in a [`ProbeSummary`]: the share of reads answered at once, after
//! waiting, or refused, and how long they took.
//!
//! # Error bounds
//!
//! A replica's corrected time is within the replica's probe bound (the
//! larger of its before and after bounds) of the truth. The two-clock
//! staleness takes the larger of two corrected times, and `max` moves by at
//! most the larger of its arguments' errors, so its bound is the larger of
//! the two replicas' bounds; clamping at zero does not widen it. That is
//! tighter than the sum of the bounds, which is also correct but counts an
//! error that only one of the two times can contribute to the result. The
//! bound holds for each value and so also for the min, max, mean and
//! percentiles (not for the standard deviation).
//!
//! # Statistics
//!
//! `statrs` computes them: the standard deviation is the sample one (n - 1),
//! and the percentiles use its `quantile`, the median-unbiased estimator
//! (R-8, interpolated between order statistics).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;
use statrs::statistics::{Data, Max, Min, OrderStatistics, Statistics};

use super::Run;
use super::predict::RunPrediction;
use super::visibility::{self, VisibilityPoint};
use crate::run_dir::{ClockOffsets, ProbeOutcome, ProbeRow, RunMeta};
use duokv::event_log::{EventKind, EventRow};

/// Nanoseconds per millisecond, for the conversions.
const NS_PER_MS: f64 = 1_000_000.0;

/// One of the figures `duokv stats` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Measure {
    /// Commit minus start of a write.
    Latency,
    /// Last replica applied minus commit, clocks corrected; may be negative.
    StalenessRaw,
    /// [`StalenessRaw`](Measure::StalenessRaw) clamped at zero: the
    /// assignment's definition.
    StalenessSeed,
    /// The master's `replied` to `acked` for the write, on its clock alone.
    StalenessMaster,
    /// Visible to a reader on the slave minus commit, on the client's clock.
    StalenessReader,
    /// The slave's `visible` minus its `applied` event for the write, on
    /// its clock: the commit notice's share of the staleness.
    NoticeGap,
}

impl Measure {
    /// Every measure, in report order.
    pub const ALL: [Measure; 6] = [
        Measure::Latency,
        Measure::StalenessRaw,
        Measure::StalenessSeed,
        Measure::StalenessMaster,
        Measure::StalenessReader,
        Measure::NoticeGap,
    ];

    /// The row label in the report and the series name in the charts.
    pub fn label(self) -> &'static str {
        match self {
            Measure::Latency => "latency",
            Measure::StalenessRaw => "staleness, two clocks (raw)",
            Measure::StalenessSeed => "staleness, two clocks (clamped at 0)",
            Measure::StalenessMaster => "staleness, master clock (reply to ack)",
            Measure::StalenessReader => "staleness, reader (commit to visible)",
            Measure::NoticeGap => "slave: applied to visible (notice)",
        }
    }

    /// The field name in the JSON summary.
    pub fn key(self) -> &'static str {
        match self {
            Measure::Latency => "latency",
            Measure::StalenessRaw => "staleness_two_clocks_raw",
            Measure::StalenessSeed => "staleness_two_clocks_seed",
            Measure::StalenessMaster => "staleness_master_clock",
            Measure::StalenessReader => "staleness_reader",
            Measure::NoticeGap => "slave_applied_to_visible",
        }
    }
}

/// The statistics of one measure over a run, in milliseconds.
///
/// The figures are `None` when there is nothing to compute them from
/// (`count` is 0, or below 2 for the standard deviation), which the JSON
/// shows as `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Committed writes with a value for this measure.
    pub count: usize,
    /// Committed writes without one (the data was absent); not in any figure.
    pub missing: usize,
    /// The smallest value.
    pub min: Option<f64>,
    /// The largest value.
    pub max: Option<f64>,
    /// The arithmetic mean.
    pub mean: Option<f64>,
    /// The sample standard deviation (n - 1).
    pub std_dev: Option<f64>,
    /// The median.
    pub p50: Option<f64>,
    /// The 90th percentile.
    pub p90: Option<f64>,
    /// The 99th percentile.
    pub p99: Option<f64>,
    /// Every value is within this of the truth (clock-sync error), for the
    /// two-clock measures whose replicas were probed; `None` otherwise.
    pub error_bound: Option<f64>,
}

impl Summary {
    /// The statistics of `values`, with `missing` writes that had none.
    pub fn of(values: &[f64], missing: usize, error_bound: Option<f64>) -> Summary {
        let count = values.len();
        let present = |x: f64| (count > 0 && x.is_finite()).then_some(x);
        let mut data = Data::new(values.to_vec());
        Summary {
            count,
            missing,
            min: present(data.min()),
            max: present(data.max()),
            mean: present(values.iter().mean()),
            std_dev: if count >= 2 {
                present(values.iter().std_dev())
            } else {
                None
            },
            p50: present(data.quantile(0.50)),
            p90: present(data.quantile(0.90)),
            p99: present(data.quantile(0.99)),
            error_bound,
        }
    }
}

/// What one write measured, per measure (milliseconds); `None` where the
/// data is absent or the write failed.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct WriteSample {
    /// The write's index in the run.
    pub write: u64,
    /// The write's ID (its seq); 0 if it failed.
    pub write_id: u64,
    /// Whether the write failed.
    pub failed: bool,
    /// See [`Measure::Latency`].
    pub latency: Option<f64>,
    /// See [`Measure::StalenessRaw`].
    pub staleness_raw: Option<f64>,
    /// See [`Measure::StalenessSeed`].
    pub staleness_seed: Option<f64>,
    /// See [`Measure::StalenessMaster`].
    pub staleness_master: Option<f64>,
    /// See [`Measure::StalenessReader`].
    pub staleness_reader: Option<f64>,
    /// See [`Measure::NoticeGap`].
    pub notice_gap: Option<f64>,
}

impl WriteSample {
    /// This write's value for `measure`.
    pub fn value(&self, measure: Measure) -> Option<f64> {
        match measure {
            Measure::Latency => self.latency,
            Measure::StalenessRaw => self.staleness_raw,
            Measure::StalenessSeed => self.staleness_seed,
            Measure::StalenessMaster => self.staleness_master,
            Measure::StalenessReader => self.staleness_reader,
            Measure::NoticeGap => self.notice_gap,
        }
    }
}

/// One replica's clock against the client's, as `run.json` measured it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClockEstimate {
    /// Replica minus client before the run, milliseconds.
    pub offset_before: f64,
    /// Its error bound, milliseconds.
    pub bound_before: f64,
    /// Replica minus client after the run, milliseconds.
    pub offset_after: f64,
    /// Its error bound, milliseconds.
    pub bound_after: f64,
    /// How fast the offset moved between the probes, in parts per million
    /// (microseconds per second); `None` if the probes were taken at the
    /// same instant.
    pub drift_ppm: Option<f64>,
    /// The bound used for corrected times: the larger of the two.
    pub bound: f64,
}

impl ClockEstimate {
    /// The estimate from a replica's probes.
    pub fn new(offsets: &ClockOffsets) -> ClockEstimate {
        let (before, after) = (&offsets.before, &offsets.after);
        let span = after.at_unix_ns as f64 - before.at_unix_ns as f64;
        ClockEstimate {
            offset_before: before.offset_ns as f64 / NS_PER_MS,
            bound_before: before.error_bound_ns as f64 / NS_PER_MS,
            offset_after: after.offset_ns as f64 / NS_PER_MS,
            bound_after: after.error_bound_ns as f64 / NS_PER_MS,
            drift_ppm: (span > 0.0)
                .then(|| (after.offset_ns as f64 - before.offset_ns as f64) / span * 1e6),
            bound: bound_ns(offsets) as f64 / NS_PER_MS,
        }
    }
}

/// The two replicas' clock estimates; `None` for a replica without probes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Clocks {
    /// The master's.
    pub master: Option<ClockEstimate>,
    /// The slave's.
    pub slave: Option<ClockEstimate>,
}

/// Everything `duokv stats` says about one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// The run directory.
    pub dir: PathBuf,
    /// Its `run.json`.
    pub meta: RunMeta,
    /// Rows in `client.csv`.
    pub writes: usize,
    /// Writes that committed.
    pub committed: usize,
    /// Writes that failed.
    pub failed: usize,
    /// The first failure's message, if any.
    pub first_error: Option<String>,
    /// The clock estimates used to correct the replicas' times.
    pub clocks: Clocks,
    /// See [`Measure::Latency`].
    pub latency: Summary,
    /// See [`Measure::StalenessRaw`].
    pub staleness_two_clocks_raw: Summary,
    /// See [`Measure::StalenessSeed`].
    pub staleness_two_clocks_seed: Summary,
    /// See [`Measure::StalenessMaster`].
    pub staleness_master_clock: Summary,
    /// See [`Measure::StalenessReader`].
    pub staleness_reader: Summary,
    /// See [`Measure::NoticeGap`].
    pub slave_applied_to_visible: Summary,
    /// The slave's event the two-clock staleness ends at: `visible`, or
    /// `applied` for a log without `visible` events (an older build).
    pub slave_event: &'static str,
    /// The reader probe's conditional reads (`probe.csv`), if it made any.
    pub probe: Option<ProbeSummary>,
    /// t-visibility, one point per delay (`visibility.csv`), if the probe
    /// read at fixed delays; see [`visibility`].
    pub visibility: Option<Vec<VisibilityPoint>>,
    /// t-visibility predicted from the event logs' phases, beside the
    /// measured one (for runs with `visibility`, when the logs give the
    /// phases); see [`predict`](super::predict).
    pub prediction: Option<RunPrediction>,
    /// What is missing or unusual, one sentence each (for the report).
    pub notes: Vec<String>,
    /// The per-write values behind the summaries, in write order (for the
    /// sparklines and charts; not in the JSON).
    #[serde(skip)]
    pub samples: Vec<WriteSample>,
}

impl RunSummary {
    /// The summary of `measure`.
    pub fn measure(&self, measure: Measure) -> &Summary {
        match measure {
            Measure::Latency => &self.latency,
            Measure::StalenessRaw => &self.staleness_two_clocks_raw,
            Measure::StalenessSeed => &self.staleness_two_clocks_seed,
            Measure::StalenessMaster => &self.staleness_master_clock,
            Measure::StalenessReader => &self.staleness_reader,
            Measure::NoticeGap => &self.slave_applied_to_visible,
        }
    }

    /// The per-write values of `measure`, `None` where absent.
    pub fn values(&self, measure: Measure) -> Vec<Option<f64>> {
        self.samples.iter().map(|s| s.value(measure)).collect()
    }
}

/// The reader probe's conditional reads of a run (`probe.csv`): how many
/// the slave answered at once, after waiting, or refused, and how long
/// they took (milliseconds, on the client's monotonic clock).
///
/// "At once" and "after waiting" are as the probe asked (see
/// [`ProbeOutcome`]): first without a wait, then, if refused, with one; a
/// waited read's time includes the first ask's round trip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeSummary {
    /// Reads made (one per write the probe read).
    pub reads: usize,
    /// How many ended each way, in [`ProbeOutcome::ALL`]'s order.
    pub outcomes: Vec<(ProbeOutcome, usize)>,
    /// Share of reads answered at once, 0 to 1.
    pub at_once_share: f64,
    /// Share of reads that had to wait and were then answered.
    pub waited_share: f64,
    /// Share of reads the slave refused (not yet visible, too stale,
    /// unknown history).
    pub refused_share: f64,
    /// Reads whose value was the write's or a later one's.
    pub saw_write: usize,
    /// The time of every read.
    pub read_time: Summary,
    /// The time of the reads answered at once.
    pub at_once_time: Summary,
    /// The time of the reads answered after waiting: the wait.
    pub waited_time: Summary,
    /// The time of the refused reads.
    pub refused_time: Summary,
}

impl ProbeSummary {
    /// The summary of a run's probe rows.
    pub fn of(rows: &[ProbeRow]) -> ProbeSummary {
        let reads = rows.len();
        let count =
            |keep: &dyn Fn(ProbeOutcome) -> bool| rows.iter().filter(|r| keep(r.outcome)).count();
        let share = |n: usize| {
            if reads == 0 {
                0.0
            } else {
                n as f64 / reads as f64
            }
        };
        let times = |keep: &dyn Fn(ProbeOutcome) -> bool| {
            let values: Vec<f64> = rows
                .iter()
                .filter(|r| keep(r.outcome))
                .map(|r| r.read_ns as f64 / NS_PER_MS)
                .collect();
            Summary::of(&values, 0, None)
        };
        ProbeSummary {
            reads,
            outcomes: ProbeOutcome::ALL
                .into_iter()
                .map(|o| (o, count(&|x| x == o)))
                .collect(),
            at_once_share: share(count(&|o| o == ProbeOutcome::AtOnce)),
            waited_share: share(count(&|o| o == ProbeOutcome::Waited)),
            refused_share: share(count(&ProbeOutcome::refused)),
            saw_write: rows.iter().filter(|r| r.saw_write).count(),
            read_time: times(&|_| true),
            at_once_time: times(&|o| o == ProbeOutcome::AtOnce),
            waited_time: times(&|o| o == ProbeOutcome::Waited),
            refused_time: times(&ProbeOutcome::refused),
        }
    }
}

/// The replica's clock minus the client's at client time `client_ns`,
/// interpolated linearly between the before and after probes (the drift),
/// and held at the nearest probe outside them.
pub fn offset_at(offsets: &ClockOffsets, client_ns: i128) -> i128 {
    let (before, after) = (&offsets.before, &offsets.after);
    let (a1, a2) = (i128::from(before.at_unix_ns), i128::from(after.at_unix_ns));
    let (o1, o2) = (i128::from(before.offset_ns), i128::from(after.offset_ns));
    if a2 <= a1 {
        return o1;
    }
    let t = client_ns.clamp(a1, a2);
    o1 + (o2 - o1) * (t - a1) / (a2 - a1)
}

/// A replica's timestamp moved onto the client's clock: `t - offset(c)`,
/// where `c` is that same instant on the client's clock.
///
/// The offset is interpolated by client time, which is what is being
/// computed, so this solves `c = t - offset(c)`: between the probes,
/// `offset(c) = o1 + k (c - a1)` with `k = (o2 - o1) / (a2 - a1)`, so
/// `c = (t - o1 + k a1) / (1 + k)`; before the first probe (replica time
/// `a1 + o1`) it is `t - o1`, after the last (`a2 + o2`) `t - o2`.
///
/// Without probes the replica's clock is taken as the client's.
pub fn to_client_ns(offsets: Option<&ClockOffsets>, replica_ns: u64) -> i128 {
    let t = i128::from(replica_ns);
    let Some(offsets) = offsets else {
        return t;
    };
    let (before, after) = (&offsets.before, &offsets.after);
    let (a1, a2) = (i128::from(before.at_unix_ns), i128::from(after.at_unix_ns));
    let (o1, o2) = (i128::from(before.offset_ns), i128::from(after.offset_ns));
    let (span, moved) = (a2 - a1, o2 - o1);
    // A clock that ran backwards faster than time passed cannot be
    // interpolated; keep the first probe.
    if span <= 0 || span + moved <= 0 || t <= a1 + o1 {
        return t - o1;
    }
    if t >= a2 + o2 {
        return t - o2;
    }
    ((t - o1) * span + moved * a1) / (span + moved)
}

/// The error bound of a replica's corrected times: the larger of its two
/// probes' bounds (interpolating between them cannot do worse).
pub fn bound_ns(offsets: &ClockOffsets) -> u64 {
    offsets
        .before
        .error_bound_ns
        .max(offsets.after.error_bound_ns)
}

/// The earliest `event` of each seq in a log.
fn first_events(events: Option<&[EventRow]>, kind: EventKind) -> HashMap<u64, u64> {
    let mut first = HashMap::new();
    for row in events.unwrap_or_default() {
        if row.kind == kind && row.seq != 0 {
            first
                .entry(row.seq)
                .and_modify(|t: &mut u64| *t = (*t).min(row.unix_ns))
                .or_insert(row.unix_ns);
        }
    }
    first
}

/// The difference `a - b` of two nanosecond instants, in milliseconds.
fn ms(a: i128, b: i128) -> f64 {
    (a - b) as f64 / NS_PER_MS
}

/// Counts of committed writes lacking each piece of data.
#[derive(Default)]
struct Absent {
    master_applied: usize,
    slave_applied: usize,
    slave_visible: usize,
    notice_gap: usize,
    replied: usize,
    acked: usize,
    visible: usize,
    two_clocks: usize,
    master_clock: usize,
}

/// Computes every measure of `run`. Never fails: what is absent is counted
/// and explained in [`RunSummary::notes`].
pub fn summarize(run: &Run) -> RunSummary {
    let meta = &run.meta;
    let master_events = run.master_events.as_deref();
    let slave_events = run.slave_events.as_deref();
    let master_applied = first_events(master_events, EventKind::Applied);
    let slave_applied = first_events(slave_events, EventKind::Applied);
    let slave_visible = first_events(slave_events, EventKind::Visible);
    // A log with `visible` events is from a slave that shows writes on its
    // master's notice: staleness ends there. Older logs have none.
    let by_visible = !slave_visible.is_empty();
    let slave_shown = if by_visible {
        &slave_visible
    } else {
        &slave_applied
    };
    let replied = first_events(master_events, EventKind::Replied);
    let acked = first_events(master_events, EventKind::Acked);
    let master_clock = meta.master_clock.as_ref();
    let slave_clock = meta.slave_clock.as_ref();

    let mut samples = Vec::with_capacity(run.client.len());
    let mut absent = Absent::default();
    let mut failed = 0;
    let mut first_error = None;
    for row in &run.client {
        let mut sample = WriteSample {
            write: row.write,
            write_id: row.write_id,
            ..WriteSample::default()
        };
        if let Some(error) = &row.error {
            failed += 1;
            first_error.get_or_insert_with(|| error.clone());
            sample.failed = true;
            samples.push(sample);
            continue;
        }
        let commit = i128::from(row.commit_unix_ns);
        sample.latency = Some(row.latency_ns as f64 / NS_PER_MS);

        let on_master = master_applied.get(&row.write_id);
        let applied_on_slave = slave_applied.get(&row.write_id);
        let visible_on_slave = slave_visible.get(&row.write_id);
        absent.master_applied += usize::from(on_master.is_none());
        absent.slave_applied += usize::from(applied_on_slave.is_none());
        absent.slave_visible += usize::from(visible_on_slave.is_none());
        match (applied_on_slave, visible_on_slave) {
            (Some(&applied), Some(&visible)) => {
                sample.notice_gap = Some(ms(i128::from(visible), i128::from(applied)));
            }
            _ => absent.notice_gap += 1,
        }
        let on_slave = slave_shown.get(&row.write_id);
        if let (Some(&m), Some(&s)) = (on_master, on_slave) {
            let last = to_client_ns(master_clock, m).max(to_client_ns(slave_clock, s));
            let raw = ms(last, commit);
            sample.staleness_raw = Some(raw);
            sample.staleness_seed = Some(raw.max(0.0));
        } else {
            absent.two_clocks += 1;
        }

        let reply = replied.get(&row.write_id);
        let ack = acked.get(&row.write_id);
        absent.replied += usize::from(reply.is_none());
        absent.acked += usize::from(ack.is_none());
        match (reply, ack) {
            (Some(&r), Some(&a)) => {
                sample.staleness_master = Some(ms(i128::from(a), i128::from(r)));
            }
            _ => absent.master_clock += 1,
        }

        match row.visible_unix_ns {
            Some(v) => sample.staleness_reader = Some(ms(i128::from(v), commit)),
            None => absent.visible += 1,
        }
        samples.push(sample);
    }

    let committed = run.client.len() - failed;
    let bound = match (master_clock, slave_clock) {
        (Some(m), Some(s)) => Some(bound_ns(m).max(bound_ns(s)) as f64 / NS_PER_MS),
        _ => None,
    };
    let summary = |measure: Measure, missing: usize, bound: Option<f64>| {
        let values: Vec<f64> = samples.iter().filter_map(|s| s.value(measure)).collect();
        Summary::of(&values, missing, bound)
    };
    let latency = summary(Measure::Latency, 0, None);
    let raw = summary(Measure::StalenessRaw, absent.two_clocks, bound);
    let seed = summary(Measure::StalenessSeed, absent.two_clocks, bound);
    let master = summary(Measure::StalenessMaster, absent.master_clock, None);
    let reader = summary(Measure::StalenessReader, absent.visible, None);
    let notice_gap = summary(Measure::NoticeGap, absent.notice_gap, None);

    let mut notes = notes(
        run,
        committed,
        failed,
        by_visible,
        &absent,
        &samples,
        &first_error,
    );
    let visibility_points = run.visibility.as_deref().map(visibility::points);
    let prediction = run.visibility.as_deref().and_then(|rows| {
        let measured = visibility_points.as_deref().map(measured_shares)?;
        RunPrediction::of(run, rows, &measured)
    });
    if run.visibility.is_some() && prediction.is_none() {
        notes.push(
            "no predicted t-visibility: it needs both event logs with every phase of some \
             committed write (give duokv bench --master-events and --slave-events)"
                .to_string(),
        );
    }
    RunSummary {
        dir: run.dir.clone(),
        meta: meta.clone(),
        writes: run.client.len(),
        committed,
        failed,
        first_error,
        clocks: Clocks {
            master: master_clock.map(ClockEstimate::new),
            slave: slave_clock.map(ClockEstimate::new),
        },
        latency,
        staleness_two_clocks_raw: raw,
        staleness_two_clocks_seed: seed,
        staleness_master_clock: master,
        staleness_reader: reader,
        slave_applied_to_visible: notice_gap,
        slave_event: if by_visible { "visible" } else { "applied" },
        probe: run.probe.as_deref().map(ProbeSummary::of),
        visibility: visibility_points,
        prediction,
        notes,
        samples,
    }
}

/// The measured `(delay_ms, share)` of each delay with on-time reads.
fn measured_shares(points: &[VisibilityPoint]) -> Vec<(f64, f64)> {
    points
        .iter()
        .filter_map(|p| Some((p.delay_ms, p.p_seen?)))
        .collect()
}

/// The report's sentences about what is missing or unusual.
fn notes(
    run: &Run,
    committed: usize,
    failed: usize,
    by_visible: bool,
    absent: &Absent,
    samples: &[WriteSample],
    first_error: &Option<String>,
) -> Vec<String> {
    use crate::run_dir::{MASTER_EVENTS, SLAVE_EVENTS};
    let mut notes = Vec::new();
    let of = |n: usize| {
        format!(
            "{n} of {}",
            super::plural(committed as u64, "committed write")
        )
    };
    if failed > 0 {
        notes.push(format!(
            "{failed} of {} failed and are in no measure (first error: {})",
            super::plural(run.client.len() as u64, "write"),
            first_error.as_deref().unwrap_or("unknown")
        ));
    }
    if (run.client.len() as u64) < run.meta.count {
        notes.push(format!(
            "client.csv has {} but the run was to issue {}",
            super::plural(run.client.len() as u64, "row"),
            super::plural(run.meta.count, "write")
        ));
    }
    if run.master_events.is_none() {
        notes.push(format!(
            "no {MASTER_EVENTS}: the two-clock and master-clock staleness cannot be measured"
        ));
    } else {
        if absent.master_applied > 0 {
            notes.push(format!(
                "{} have no apply event on the master",
                of(absent.master_applied)
            ));
        }
        if absent.replied > 0 {
            notes.push(format!(
                "{} have no reply event on the master",
                of(absent.replied)
            ));
        }
        if absent.acked > 0 {
            notes.push(format!(
                "{} have no ack event on the master: the slave never confirmed them",
                of(absent.acked)
            ));
        }
    }
    if run.slave_events.is_none() {
        notes.push(format!(
            "no {SLAVE_EVENTS}: the two-clock staleness cannot be measured"
        ));
    } else {
        if absent.slave_applied > 0 {
            notes.push(format!(
                "{} have no apply event on the slave: the slave missed them",
                of(absent.slave_applied)
            ));
        }
        if !by_visible {
            notes.push(format!(
                "{SLAVE_EVENTS} has no visible events (a slave from before commit \
                 notices): staleness ends at the slave's apply events, and the \
                 applied-to-visible gap is not measured"
            ));
        } else if absent.slave_visible > absent.slave_applied {
            notes.push(format!(
                "{} were applied on the slave but have no visible event: its readers \
                 never saw them while it logged",
                of(absent.slave_visible - absent.slave_applied)
            ));
        }
    }
    if absent.visible > 0 && run.visibility.is_none() {
        notes.push(format!(
            "{} were never seen by the reader on the slave",
            of(absent.visible)
        ));
    }
    if let Some(rows) = &run.visibility {
        // The reader read each write once, at a fixed delay: it does not
        // say when a write became visible, only whether it was by then.
        let late = rows.iter().filter(|r| r.late).count();
        if late > 0 {
            notes.push(format!(
                "{} of {} at fixed delays were sent late (past 50 us or a tenth of their \
                 delay) and are left out of the t-visibility figures",
                late,
                super::plural(rows.len() as u64, "read")
            ));
        }
    }
    for (replica, clock) in [
        ("master", &run.meta.master_clock),
        ("slave", &run.meta.slave_clock),
    ] {
        if clock.is_none() {
            notes.push(format!(
                "no clock probes for the {replica}: its clock is taken as the client's, \
                 the two-clock staleness has no error bound"
            ));
        }
    }
    let negative = samples
        .iter()
        .filter(|s| s.staleness_raw.is_some_and(|v| v < 0.0))
        .count();
    if negative > 0 {
        notes.push(format!(
            "{} were applied by the last replica before the client saw the commit \
             (raw staleness < 0, counted as 0 in the clamped figure)",
            of(negative)
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_dir::{ClientRow, ClockProbe};
    use crate::stats::tests::{client_row, event, meta, probes};

    const MS: u64 = 1_000_000;
    const SECOND: u64 = 1_000_000_000;
    /// An arbitrary client-clock epoch for the fixtures.
    const T0: u64 = 1_700_000_000 * SECOND;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// A run with the given rows and events, offsets zero unless set.
    fn run(rows: Vec<ClientRow>, master: Vec<EventRow>, slave: Vec<EventRow>) -> Run {
        Run {
            dir: PathBuf::from("fixture"),
            meta: meta("async", rows.len() as u64),
            client: rows,
            master_events: Some(master),
            slave_events: Some(slave),
            probe: None,
            visibility: None,
        }
    }

    #[test]
    fn reads_at_delays_without_event_logs_say_why_nothing_is_predicted() {
        use crate::run_dir::VisibilityRow;
        let mut run = run(Vec::new(), Vec::new(), Vec::new());
        run.master_events = None;
        run.visibility = Some(vec![VisibilityRow {
            write: 0,
            delay_ns: 0,
            offset_ns: 10_000,
            read_ns: 50_000,
            saw_write: true,
            late: false,
        }]);
        let summary = summarize(&run);
        assert!(summary.visibility.is_some());
        assert_eq!(summary.prediction, None);
        assert!(
            summary
                .notes
                .iter()
                .any(|n| n.starts_with("no predicted t-visibility")),
            "{:?}",
            summary.notes
        );
    }

    #[test]
    fn summary_of_hand_computed_values() {
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0, 10.0], 2, None);
        assert_eq!((s.count, s.missing), (5, 2));
        assert_eq!(s.min, Some(1.0));
        assert_eq!(s.max, Some(10.0));
        assert_eq!(s.mean, Some(4.0));
        // Squared deviations 9 + 4 + 1 + 0 + 36 = 50, over n - 1 = 4.
        assert!(close(s.std_dev.unwrap(), 12.5f64.sqrt()));
        assert_eq!(s.p50, Some(3.0));
        // h = (5 + 1/3) * 0.9 + 1/3 = 5.13..., beyond the 5th value.
        assert_eq!(s.p90, Some(10.0));
        assert_eq!(s.p99, Some(10.0));
    }

    #[test]
    fn summary_of_nothing_or_one_value() {
        let empty = Summary::of(&[], 7, Some(0.1));
        assert_eq!((empty.count, empty.missing), (0, 7));
        assert_eq!(
            (empty.min, empty.max, empty.mean, empty.std_dev, empty.p50),
            (None, None, None, None, None)
        );
        let one = Summary::of(&[2.5], 0, None);
        assert_eq!(
            (one.min, one.mean, one.p99),
            (Some(2.5), Some(2.5), Some(2.5))
        );
        assert_eq!(one.std_dev, None);
    }

    /// The assignment's example: start 0, commit 2, first replica 2,
    /// second 5: staleness 3 (here in milliseconds). The second replica,
    /// the slave, applied the write at 4.5 and showed it at 5.
    #[test]
    fn the_seed_example() {
        let mut rows = vec![client_row(0, 1, T0, T0 + 2 * MS, None)];
        rows[0].visible_unix_ns = Some(T0 + 5 * MS);
        let mut r = run(
            rows,
            vec![
                event("applied", 1, T0 + 2 * MS),
                event("replied", 1, T0 + 2 * MS),
                event("acked", 1, T0 + 5 * MS),
            ],
            vec![
                event("applied", 1, T0 + 4 * MS + MS / 2),
                event("visible", 1, T0 + 5 * MS),
            ],
        );
        let zero = probes(0, 0, T0, 0, 0, T0 + SECOND);
        r.meta.master_clock = Some(zero);
        r.meta.slave_clock = Some(zero);
        let s = summarize(&r);
        assert_eq!(s.samples[0].latency, Some(2.0));
        assert_eq!(s.samples[0].staleness_raw, Some(3.0));
        assert_eq!(s.samples[0].staleness_seed, Some(3.0));
        assert_eq!(s.samples[0].staleness_master, Some(3.0));
        assert_eq!(s.samples[0].staleness_reader, Some(3.0));
        assert_eq!(s.staleness_two_clocks_seed.mean, Some(3.0));
        assert_eq!(s.staleness_two_clocks_seed.error_bound, Some(0.0));
        assert_eq!(s.samples[0].notice_gap, Some(0.5));
        assert_eq!(s.slave_event, "visible");
        assert!(s.notes.is_empty(), "{:?}", s.notes);
    }

    /// A slave applies a write before the client has its commit but shows
    /// it only on its master's notice: staleness ends at `visible`, and the
    /// gap is the notice's cost. A write applied but never shown is
    /// missing from the staleness, and said so.
    #[test]
    fn staleness_ends_when_the_slave_shows_the_write() {
        let rows = vec![
            client_row(0, 1, T0, T0 + 2 * MS, None),
            client_row(1, 2, T0 + SECOND, T0 + SECOND + 2 * MS, None),
            client_row(2, 3, T0 + 2 * SECOND, T0 + 2 * SECOND + 2 * MS, None),
        ];
        let master = (1..=3)
            .map(|seq| event("applied", seq, T0 + (seq - 1) * SECOND + MS))
            .collect();
        let slave = vec![
            event("applied", 1, T0 + MS + MS / 2),
            event("visible", 1, T0 + 3 * MS),
            event("applied", 2, T0 + SECOND + MS),
            event("visible", 2, T0 + SECOND + 2 * MS + MS / 4),
            event("applied", 3, T0 + 2 * SECOND + MS),
        ];
        let s = summarize(&run(rows, master, slave));
        assert_eq!(s.slave_event, "visible");
        assert_eq!(s.samples[0].staleness_raw, Some(1.0));
        assert_eq!(s.samples[1].staleness_raw, Some(0.25));
        assert_eq!(s.samples[2].staleness_raw, None);
        assert_eq!(s.samples[0].notice_gap, Some(1.5));
        assert_eq!(s.samples[1].notice_gap, Some(1.25));
        let gap = &s.slave_applied_to_visible;
        assert_eq!((gap.count, gap.missing, gap.max), (2, 1, Some(1.5)));
        assert_eq!(s.staleness_two_clocks_raw.missing, 1);
        assert!(
            s.notes.iter().any(|n| n
                == "1 of 3 committed writes were applied on the slave but have no visible \
                    event: its readers never saw them while it logged"),
            "{:?}",
            s.notes
        );
    }

    /// A slave log from before commit notices has no `visible` event: the
    /// staleness ends at its apply events, as it did, and the gap is not
    /// measured rather than taken as zero.
    #[test]
    fn older_slave_logs_are_measured_to_their_apply_events() {
        let rows = vec![client_row(0, 1, T0, T0 + 2 * MS, None)];
        let r = run(
            rows,
            vec![event("applied", 1, T0 + MS)],
            vec![event("applied", 1, T0 + 4 * MS)],
        );
        let s = summarize(&r);
        assert_eq!(s.slave_event, "applied");
        assert_eq!(s.samples[0].staleness_raw, Some(2.0));
        let gap = &s.slave_applied_to_visible;
        assert_eq!((gap.count, gap.missing, gap.mean), (0, 1, None));
        assert!(
            s.notes
                .iter()
                .any(|n| n.starts_with("slave-events.csv has no visible events")),
            "{:?}",
            s.notes
        );
    }

    #[test]
    fn probe_reads_are_shared_out_by_outcome() {
        let row = |write, outcome, read_us: u64, saw_write| ProbeRow {
            write,
            outcome,
            read_ns: read_us * 1_000,
            saw_write,
        };
        let rows = [
            row(0, ProbeOutcome::AtOnce, 100, true),
            row(1, ProbeOutcome::AtOnce, 300, true),
            row(2, ProbeOutcome::Waited, 1_000, true),
            row(3, ProbeOutcome::TooStale, 20_000, false),
            row(4, ProbeOutcome::AtOnce, 200, false),
        ];
        let p = ProbeSummary::of(&rows);
        assert_eq!(p.reads, 5);
        assert!(close(p.at_once_share, 0.6));
        assert!(close(p.waited_share, 0.2));
        assert!(close(p.refused_share, 0.2));
        assert_eq!(p.saw_write, 3);
        assert_eq!(p.at_once_time.count, 3);
        assert_eq!(p.at_once_time.p50, Some(0.2));
        assert_eq!(p.waited_time.max, Some(1.0));
        assert_eq!(p.refused_time.max, Some(20.0));
        assert_eq!(p.read_time.count, 5);
        assert!(p.outcomes.contains(&(ProbeOutcome::TooStale, 1)));
        assert!(p.outcomes.contains(&(ProbeOutcome::NotYetVisible, 0)));
        let none = ProbeSummary::of(&[]);
        assert_eq!((none.reads, none.waited_share), (0, 0.0));
    }

    /// Sync mode: the slave applied (and acked) before the client saw the
    /// commit, so the raw figure is negative and the seed figure is 0.
    #[test]
    fn negative_raw_staleness_is_clamped_for_the_seed_figure() {
        let rows = vec![
            client_row(0, 1, T0, T0 + 4 * MS, None),
            client_row(1, 2, T0 + SECOND, T0 + SECOND + 4 * MS, None),
        ];
        let r = run(
            rows,
            vec![
                event("applied", 1, T0 + MS),
                event("acked", 1, T0 + 2 * MS),
                event("replied", 1, T0 + 3 * MS),
                event("applied", 2, T0 + SECOND + MS),
                event("acked", 2, T0 + SECOND + 3 * MS),
                event("replied", 2, T0 + SECOND + 3 * MS),
            ],
            vec![
                event("applied", 1, T0 + 2 * MS),
                event("applied", 2, T0 + SECOND + 6 * MS),
            ],
        );
        let s = summarize(&r);
        assert_eq!(s.samples[0].staleness_raw, Some(-2.0));
        assert_eq!(s.samples[0].staleness_seed, Some(0.0));
        assert_eq!(s.samples[0].staleness_master, Some(-1.0));
        assert_eq!(s.samples[1].staleness_raw, Some(2.0));
        assert_eq!(s.staleness_two_clocks_raw.mean, Some(0.0));
        assert_eq!(s.staleness_two_clocks_seed.mean, Some(1.0));
        assert_eq!(s.staleness_two_clocks_raw.min, Some(-2.0));
        assert!(
            s.notes
                .iter()
                .any(|n| n.starts_with("1 of 2 committed") && n.contains("raw staleness < 0"))
        );
    }

    #[test]
    fn drift_is_interpolated_between_the_probes() {
        let offsets = ClockOffsets {
            before: ClockProbe {
                offset_ns: 1_000,
                error_bound_ns: 50,
                rtt_ns: 100,
                at_unix_ns: 10_000,
            },
            after: ClockProbe {
                offset_ns: 3_000,
                error_bound_ns: 80,
                rtt_ns: 160,
                at_unix_ns: 20_000,
            },
        };
        assert_eq!(offset_at(&offsets, 10_000), 1_000);
        assert_eq!(offset_at(&offsets, 15_000), 2_000);
        assert_eq!(offset_at(&offsets, 17_500), 2_500);
        assert_eq!(offset_at(&offsets, 20_000), 3_000);
        // Held, not extrapolated, outside the probes.
        assert_eq!(offset_at(&offsets, 0), 1_000);
        assert_eq!(offset_at(&offsets, 99_000), 3_000);
        assert_eq!(bound_ns(&offsets), 80);
        // Client time 15_000 is replica time 17_000 (offset 2_000 there).
        assert_eq!(to_client_ns(Some(&offsets), 17_000), 15_000);
        assert_eq!(
            to_client_ns(Some(&offsets), 12_000),
            10_000 + 1_000 * 10 / 12
        );
        assert_eq!(to_client_ns(Some(&offsets), 11_000), 10_000);
        assert_eq!(to_client_ns(Some(&offsets), 5_000), 4_000);
        assert_eq!(to_client_ns(Some(&offsets), 23_000), 20_000);
        assert_eq!(to_client_ns(Some(&offsets), 30_000), 27_000);
        assert_eq!(to_client_ns(None, 17_000), 17_000);
        let estimate = ClockEstimate::new(&offsets);
        // 2 µs over 10 µs is 200_000 ppm.
        assert!(close(estimate.drift_ppm.unwrap(), 200_000.0));
        assert!(close(estimate.bound, 80.0 / NS_PER_MS));
    }

    /// The slave's clock runs 1 s ahead of the client's (and drifts by 1 ms
    /// over the run); its probes estimate that within their bound. The
    /// corrected staleness must land within the bound of the truth.
    #[test]
    fn a_shifted_slave_clock_is_corrected_within_the_bound() {
        let count = 10;
        let true_offset = |client_ns: u64| -> u64 {
            // +1 s, growing linearly to +1.001 s over 10 s.
            SECOND + (client_ns - T0) / 10_000
        };
        let mut rows = Vec::new();
        let mut master = Vec::new();
        let mut slave = Vec::new();
        let mut truth = Vec::new();
        for i in 0..count {
            let start = T0 + i * SECOND;
            let commit = start + 2 * MS;
            rows.push(client_row(i, i + 1, start, commit, None));
            master.push(event("applied", i + 1, start + MS));
            let slave_applied = commit + 3 * MS + i * 100_000;
            truth.push((slave_applied - commit) as f64 / NS_PER_MS);
            slave.push(event(
                "applied",
                i + 1,
                slave_applied + true_offset(slave_applied),
            ));
        }
        let mut r = run(rows, master, slave);
        // The probes err by 40 µs and 70 µs, within their 50 and 90 µs bounds.
        let (before_at, after_at) = (T0, T0 + count * SECOND);
        r.meta.slave_clock = Some(probes(
            (true_offset(before_at) + 40_000) as i64,
            50_000,
            before_at,
            (true_offset(after_at) - 70_000) as i64,
            90_000,
            after_at,
        ));
        r.meta.master_clock = Some(probes(0, 10_000, before_at, 0, 10_000, after_at));
        let s = summarize(&r);
        let bound = s.staleness_two_clocks_raw.error_bound.unwrap();
        assert!(close(bound, 0.090));
        for (sample, truth) in s.samples.iter().zip(&truth) {
            let measured = sample.staleness_raw.unwrap();
            assert!(
                (measured - truth).abs() <= bound,
                "write {}: {measured} vs {truth} ± {bound}",
                sample.write
            );
        }
        // Uncorrected, the figures would be a second off.
        assert!(s.staleness_two_clocks_raw.max.unwrap() < 10.0);
        let slave = s.clocks.slave.as_ref().unwrap();
        assert!(close(slave.offset_before, 1_000.040));
        assert!(close(slave.bound, 0.090));
    }

    /// Async mode, the slave killed halfway: its events stop.
    #[test]
    fn missing_applies_are_counted_not_averaged() {
        let mut rows = Vec::new();
        let mut master = Vec::new();
        let mut slave = Vec::new();
        for i in 0..10u64 {
            let start = T0 + i * SECOND;
            let commit = start + MS;
            let visible = (i < 5).then_some(commit + (i + 1) * MS);
            let mut row = client_row(i, i + 1, start, commit, None);
            row.visible_unix_ns = visible;
            rows.push(row);
            master.push(event("applied", i + 1, start + MS / 2));
            master.push(event("replied", i + 1, commit));
            if i < 5 {
                master.push(event("acked", i + 1, commit + 2 * MS));
                slave.push(event("applied", i + 1, commit + (i + 1) * MS));
            }
        }
        let s = summarize(&run(rows, master, slave));
        let seed = &s.staleness_two_clocks_seed;
        assert_eq!((seed.count, seed.missing), (5, 5));
        // (1 + 2 + 3 + 4 + 5) / 5, over the present values only.
        assert_eq!(seed.mean, Some(3.0));
        assert_eq!(s.staleness_reader.mean, Some(3.0));
        assert_eq!(s.staleness_reader.missing, 5);
        assert_eq!(s.staleness_master_clock.missing, 5);
        assert_eq!(s.latency.missing, 0);
        assert_eq!(s.latency.count, 10);
        assert!(
            s.notes.contains(
                &"5 of 10 committed writes have no apply event on the slave: the slave missed them"
                    .to_string()
            )
        );
        assert!(s.samples[7].staleness_seed.is_none());
    }

    #[test]
    fn failures_and_absent_logs_are_reported() {
        let rows = vec![
            client_row(0, 1, T0, T0 + MS, None),
            client_row(1, 0, T0 + SECOND, 0, Some("replica unavailable: gone")),
        ];
        let mut r = run(rows, vec![], vec![]);
        r.slave_events = None;
        r.master_events = None;
        let s = summarize(&r);
        assert_eq!((s.committed, s.failed), (1, 1));
        assert_eq!(s.latency.count, 1);
        assert_eq!(s.staleness_two_clocks_raw.missing, 1);
        assert!(s.samples[1].failed);
        assert!(
            s.notes
                .iter()
                .any(|n| n.contains("first error: replica unavailable"))
        );
        assert!(s.notes.iter().any(|n| n.starts_with("no slave-events.csv")));
        assert!(
            s.notes
                .iter()
                .any(|n| n.starts_with("no master-events.csv"))
        );
    }
}
