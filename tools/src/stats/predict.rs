//! Predicted t-visibility: the chance that a read of the slave issued `t`
//! after a write's commit sees that write, predicted WARS-style from the
//! delays of the write's phases, and the same from whole writes.
//!
//! Bailis et al., *Probabilistically Bounded Staleness for Practical
//! Partial Quorums* (VLDB 2012), predict the staleness of a Dynamo-style
//! store by Monte Carlo over independently measured delay distributions of
//! its message phases, W (write to replica), A (ack), R (read request) and
//! S (read response): the WARS model. This module is duokv's version,
//! built from a run directory's event logs, so that the report can set a
//! predicted curve beside the measured one and say where they part.
//!
//! # The model
//!
//! All times are moved onto the client's clock. A write commits at `C`
//! (the client has the master's reply) and becomes visible on the slave at
//! `V` (its `visible` event: the slave shows a write once its master's
//! commit notice covers it). Its visibility delay is `D = V - C`, negative
//! when the slave showed it before the client heard of the commit (sync
//! mode). A reader that sends its read `t` after the commit reaches the
//! slave `R` later (the read's one-way request hop), and sees the write iff
//! `t + R >= D`. The response hop (WARS' S) does not matter: the slave
//! chose the value when the request reached it.
//!
//! `D` is the sum of five phases, each measured per write, with `Rm` the
//! master's `received` event of the write (its anchor on the master):
//!
//! | phase                               | events                                 | clock                      |
//! |-------------------------------------|----------------------------------------|----------------------------|
//! | [`Phase::MasterForward`]  `+`       | master `received` to `forwarded`       | master                     |
//! | [`Phase::ForwardHop`]     `+`       | master `forwarded` to slave `received` | master and slave, corrected |
//! | [`Phase::SlaveShow`]      `+`       | slave `received` to `visible`          | slave                      |
//! | [`Phase::MasterReply`]    `-`       | master `received` to `replied`         | master                     |
//! | [`Phase::ReplyHop`]       `-`       | master `replied` to client commit      | master and client, corrected |
//!
//! so `D = p1 + p2 + p3 - p4 - p5`: from the anchor to visible on the
//! slave, minus from the anchor to the commit on the client. A slave log
//! without `visible` events (a build from before commit notices) ends the
//! third phase at its `applied` events, as [`compute`](super::compute) does.
//!
//! The reader's hop `R` is half a read's round trip: of the reads the
//! caller measured (`read_rtt_ns` of [`phases`], e.g. the probe reads
//! answered at once), or else of the slave's clock probes in `run.json`
//! (the fastest of several round trips, two samples: optimistic, so the
//! prediction leans late); see [`ReadHopSource`].
//!
//! # Two predictions
//!
//! [`predict`] draws `samples` visibility delays two ways, each against an
//! independently drawn `R`, and reports, per delay `t`, the fraction of
//! draws with `D - R <= t`:
//!
//! - **independent** (WARS): every phase drawn on its own from its
//!   empirical distribution (resampled with replacement). This is what the
//!   paper does, and what one could do with phases measured separately.
//! - **joint**: whole writes drawn, so each `D` is one a write really had.
//!   This is the empirical distribution of `D`, no model.
//!
//! The gap between them is the error of the independence assumption, and
//! in duokv the phases are not independent. On an async master the forward
//! and the reply come from the same committer, so a slow master delays both
//! `p1` and `p4` and they cancel in a real write but not in independent
//! draws, which spread `D` out. On a sync master the reply waits for the
//! slave's ack, so `p4` holds the whole trip to the slave and back and is
//! tied to `p2` and `p3`. [`largest_gap`] says where a predicted curve and
//! a measured one differ most.
//!
//! # Clocks
//!
//! The hop phases compare two machines' clocks, corrected with the probes
//! in `run.json` ([`to_client_ns`]). The master's offset error enters `p2`
//! and `p5` alike and cancels in `D`; what remains is the slave's error,
//! plus the change of the master's error over the run (the probes before
//! and after err independently) for independent draws that take `p2` and
//! `p5` from different writes. So every drawn `D`, in either prediction,
//! is within [`Phases::clock_bound_ns`] (the slave's bound plus twice the
//! master's) of the truth, and the curves may be shifted along `t` by as
//! much. A single hop phase's summary is within the two bounds' sum.

use std::collections::HashMap;
use std::time::Duration;

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use statrs::statistics::{Data, OrderStatistics, Statistics};

use super::Run;
use super::compute::{bound_ns, to_client_ns};
use crate::run_dir::VisibilityRow;
use duokv::event_log::{EventKind, EventRow};

/// Monte Carlo draws per curve unless the caller says otherwise: the
/// fractions are then within about 0.005 of their limit (three standard
/// errors at worst, `3 * sqrt(0.25 / 100_000)`).
pub const DEFAULT_SAMPLES: usize = 100_000;

/// Nanoseconds per millisecond, for the conversions.
const NS_PER_MS: f64 = 1_000_000.0;

/// One of the five phases whose sum is a write's visibility delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The master's `received` to its `forwarded`, on its clock.
    MasterForward,
    /// The master's `forwarded` to the slave's `received`, corrected.
    ForwardHop,
    /// The slave's `received` to its `visible` (or `applied`), on its clock.
    SlaveShow,
    /// The master's `received` to its `replied`, on its clock (subtracted).
    MasterReply,
    /// The master's `replied` to the client's commit, corrected
    /// (subtracted).
    ReplyHop,
}

impl Phase {
    /// Every phase, in the order of the sum.
    pub const ALL: [Phase; 5] = [
        Phase::MasterForward,
        Phase::ForwardHop,
        Phase::SlaveShow,
        Phase::MasterReply,
        Phase::ReplyHop,
    ];

    /// Its name in the report.
    pub fn label(self) -> &'static str {
        match self {
            Phase::MasterForward => "master: received to forwarded",
            Phase::ForwardHop => "hop: master forwarded to slave received",
            Phase::SlaveShow => "slave: received to visible",
            Phase::MasterReply => "master: received to replied (-)",
            Phase::ReplyHop => "hop: master replied to client commit (-)",
        }
    }

    /// `1` for a phase added into the visibility delay, `-1` for one
    /// subtracted.
    pub fn sign(self) -> i64 {
        match self {
            Phase::MasterForward | Phase::ForwardHop | Phase::SlaveShow => 1,
            Phase::MasterReply | Phase::ReplyHop => -1,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The phases of one write, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WritePhases {
    seq: u64,
    ns: [i64; 5],
}

impl WritePhases {
    /// The write's ID.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The length of `phase`; a corrected hop may be negative.
    pub fn ns(&self, phase: Phase) -> i64 {
        self.ns[phase.index()]
    }

    /// The write's visibility delay `D`: visible on the slave minus the
    /// commit, the signed sum of its phases.
    pub fn visibility_ns(&self) -> i64 {
        Phase::ALL.iter().map(|&p| p.sign() * self.ns(p)).sum()
    }
}

/// Where the reader's request hops `R` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadHopSource {
    /// Half of each read round trip the caller gave.
    ReadRoundTrips,
    /// Half of the slave's two clock probes' round trips (each the fastest
    /// of several): optimistic, so the predicted visibility is low.
    ClockProbes,
    /// Neither was there: `R` is taken as 0, the read reaching the slave
    /// at once, so the predicted visibility is a lower bound.
    Assumed,
}

impl ReadHopSource {
    /// A sentence for the report.
    pub fn describe(self) -> &'static str {
        match self {
            ReadHopSource::ReadRoundTrips => "half of each measured read round trip",
            ReadHopSource::ClockProbes => {
                "half of the slave's clock probes' round trips (the fastest of several: \
                 optimistic, the predicted visibility leans low)"
            }
            ReadHopSource::Assumed => {
                "taken as 0 (no read round trips, no slave clock probes): the predicted \
                 visibility is a lower bound"
            }
        }
    }
}

/// A run's per-write phases and the reader's hops: what [`predict`] draws
/// from. Made by [`phases`]; never empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Phases {
    writes: Vec<WritePhases>,
    read_hop_ns: Vec<u64>,
    read_hop_source: ReadHopSource,
    slave_event: EventKind,
    skipped: usize,
    clock_bound_ns: Option<u64>,
}

impl Phases {
    /// The committed writes whose every phase was measured, in
    /// `client.csv` order.
    pub fn writes(&self) -> &[WritePhases] {
        &self.writes
    }

    /// The reader's request hops `R`, nanoseconds.
    pub fn read_hop_ns(&self) -> &[u64] {
        &self.read_hop_ns
    }

    /// Where [`read_hop_ns`](Phases::read_hop_ns) came from.
    pub fn read_hop_source(&self) -> ReadHopSource {
        self.read_hop_source
    }

    /// The slave event [`Phase::SlaveShow`] ends at: `Visible`, or
    /// `Applied` for a log without `visible` events.
    pub fn slave_event(&self) -> EventKind {
        self.slave_event
    }

    /// Committed writes left out because one of their events is absent.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Every visibility delay drawn from these phases is within this of the
    /// truth: the slave's probe bound plus twice the master's (see the
    /// module docs); `None` when a replica has no clock probes, and its
    /// clock was taken as the client's.
    pub fn clock_bound_ns(&self) -> Option<u64> {
        self.clock_bound_ns
    }
}

/// The earliest event of `kind` per seq in a log (seq 0, a write without
/// its ID, is left out).
fn first_events(events: &[EventRow], kind: EventKind) -> HashMap<u64, u64> {
    let mut first = HashMap::new();
    for row in events {
        if row.kind == kind && row.seq != 0 {
            first
                .entry(row.seq)
                .and_modify(|t: &mut u64| *t = (*t).min(row.unix_ns))
                .or_insert(row.unix_ns);
        }
    }
    first
}

/// Nanoseconds between two instants, saturated into an `i64` (292 years).
fn span(from: i128, to: i128) -> i64 {
    i64::try_from(to - from).unwrap_or(if to > from { i64::MAX } else { i64::MIN })
}

/// Measures every committed write's phases in `run`, and the reader's hops
/// from `read_rtt_ns` (read round trips, nanoseconds; may be empty).
///
/// A write is left out ([`Phases::skipped`]) unless the master logged its
/// `received` (with its seq, as builds since the deferred replies do),
/// `forwarded` and `replied`, and the slave its `received` and `visible`
/// (or `applied`, in a slave log without any `visible` event).
///
/// `None` when there is nothing to predict from: `master-events.csv` or
/// `slave-events.csv` is absent, or no committed write has all five events.
pub fn phases(run: &Run, read_rtt_ns: &[u64]) -> Option<Phases> {
    let master = run.master_events.as_deref()?;
    let slave = run.slave_events.as_deref()?;
    let received = first_events(master, EventKind::Received);
    let forwarded = first_events(master, EventKind::Forwarded);
    let replied = first_events(master, EventKind::Replied);
    let slave_received = first_events(slave, EventKind::Received);
    let visible = first_events(slave, EventKind::Visible);
    let (shown, slave_event) = if visible.is_empty() {
        (first_events(slave, EventKind::Applied), EventKind::Applied)
    } else {
        (visible, EventKind::Visible)
    };
    let master_clock = run.meta.master_clock.as_ref();
    let slave_clock = run.meta.slave_clock.as_ref();

    let mut writes = Vec::new();
    let mut skipped = 0;
    for row in run.client.iter().filter(|r| r.error.is_none()) {
        let seq = row.write_id;
        let events = (
            received.get(&seq),
            forwarded.get(&seq),
            replied.get(&seq),
            slave_received.get(&seq),
            shown.get(&seq),
        );
        let (Some(&rm), Some(&fw), Some(&rp), Some(&sr), Some(&sv)) = events else {
            skipped += 1;
            continue;
        };
        let [rm, fw, rp, sr, sv] = [rm, fw, rp, sr, sv].map(i128::from);
        let mut ns = [0; 5];
        ns[Phase::MasterForward.index()] = span(rm, fw);
        ns[Phase::ForwardHop.index()] = span(
            to_client_ns(master_clock, fw as u64),
            to_client_ns(slave_clock, sr as u64),
        );
        ns[Phase::SlaveShow.index()] = span(sr, sv);
        ns[Phase::MasterReply.index()] = span(rm, rp);
        ns[Phase::ReplyHop.index()] = span(
            to_client_ns(master_clock, rp as u64),
            i128::from(row.commit_unix_ns),
        );
        writes.push(WritePhases { seq, ns });
    }
    if writes.is_empty() {
        return None;
    }

    let (read_hop_ns, read_hop_source) = if !read_rtt_ns.is_empty() {
        let hops = read_rtt_ns.iter().map(|rtt| rtt / 2).collect();
        (hops, ReadHopSource::ReadRoundTrips)
    } else if let Some(clock) = slave_clock {
        let hops = vec![clock.before.rtt_ns / 2, clock.after.rtt_ns / 2];
        (hops, ReadHopSource::ClockProbes)
    } else {
        (vec![0], ReadHopSource::Assumed)
    };
    let clock_bound_ns = match (master_clock, slave_clock) {
        (Some(m), Some(s)) => Some(bound_ns(s).saturating_add(bound_ns(m).saturating_mul(2))),
        _ => None,
    };
    Some(Phases {
        writes,
        read_hop_ns,
        read_hop_source,
        slave_event,
        skipped,
        clock_bound_ns,
    })
}

/// The distribution of one phase (or of `R`, or of the per-write `D`)
/// over a run, milliseconds, for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseSummary {
    /// What it is (a [`Phase::label`], or the reader's hop, or the
    /// visibility delay).
    pub name: &'static str,
    /// How many values.
    pub count: usize,
    /// The median (R-8, as [`compute`](super::compute)'s summaries).
    pub p50_ms: f64,
    /// The 99th percentile.
    pub p99_ms: f64,
    /// The mean.
    pub mean_ms: f64,
}

impl PhaseSummary {
    /// The summary of `values_ns` (not empty).
    fn of(name: &'static str, values_ns: impl Iterator<Item = f64>) -> PhaseSummary {
        let values: Vec<f64> = values_ns.map(|ns| ns / NS_PER_MS).collect();
        let mean_ms = values.iter().mean();
        let count = values.len();
        let mut data = Data::new(values);
        PhaseSummary {
            name,
            count,
            p50_ms: data.quantile(0.50),
            p99_ms: data.quantile(0.99),
            mean_ms,
        }
    }
}

/// The label of the reader's hop in [`Prediction::phases`].
pub const READ_HOP_LABEL: &str = "reader: request hop (half a round trip)";
/// The label of the per-write visibility delay in [`Prediction::phases`].
pub const VISIBILITY_LABEL: &str = "visibility: slave visible minus commit (per write)";
/// [`Phase::SlaveShow`]'s label for a slave log without `visible` events.
const SLAVE_APPLIED_LABEL: &str = "slave: received to applied (no visible events)";

/// The predicted t-visibility curves of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The delays `t` after the commit, milliseconds.
    pub delays_ms: Vec<f64>,
    /// Per delay, the predicted share of reads that see the write, phases
    /// drawn independently (WARS).
    pub independent: Vec<f64>,
    /// Per delay, the same with whole writes drawn (no independence
    /// assumption).
    pub joint: Vec<f64>,
    /// The five phases (in [`Phase::ALL`]'s order), the reader's hop and
    /// the per-write visibility delay.
    pub phases: Vec<PhaseSummary>,
    /// Monte Carlo draws per curve.
    pub samples: usize,
    /// The RNG's seed (ChaCha8): the same seed and phases give the same
    /// curves.
    pub seed: u64,
    /// The curves may be shifted along `t` by up to this (clock sync,
    /// milliseconds; see [`Phases::clock_bound_ns`]); `None` when a
    /// replica had no clock probes.
    pub clock_bound_ms: Option<f64>,
    /// Where the reader's hops came from.
    pub read_hop: ReadHopSource,
    /// Committed writes the phases were measured on.
    pub writes: usize,
    /// Committed writes left out for an absent event.
    pub skipped: usize,
}

/// Predicts, for each of `delays`, the share of reads of the slave issued
/// that long after a commit that see the write: [`DEFAULT_SAMPLES`] is a
/// good `samples` (0 is taken as 1); `seed` seeds a ChaCha8 generator, so
/// the result is reproducible. See the module docs for the model.
pub fn predict(phases: &Phases, delays: &[Duration], samples: usize, seed: u64) -> Prediction {
    let samples = samples.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let writes = &phases.writes;
    let hops = &phases.read_hop_ns;
    let read_hop = |rng: &mut ChaCha8Rng| hops[rng.random_range(0..hops.len())] as i64;

    // D - R per draw: the read sees the write iff D - R <= t.
    let mut independent: Vec<i64> = (0..samples)
        .map(|_| {
            let d: i64 = Phase::ALL
                .iter()
                .map(|&p| p.sign() * writes[rng.random_range(0..writes.len())].ns(p))
                .sum();
            d - read_hop(&mut rng)
        })
        .collect();
    let mut joint: Vec<i64> = (0..samples)
        .map(|_| {
            let d = writes[rng.random_range(0..writes.len())].visibility_ns();
            d - read_hop(&mut rng)
        })
        .collect();
    independent.sort_unstable();
    joint.sort_unstable();
    let share = |sorted: &[i64], t: &Duration| {
        let t = i64::try_from(t.as_nanos()).unwrap_or(i64::MAX);
        sorted.partition_point(|&x| x <= t) as f64 / sorted.len() as f64
    };

    let slave_label = match phases.slave_event {
        EventKind::Visible => Phase::SlaveShow.label(),
        _ => SLAVE_APPLIED_LABEL,
    };
    let mut summaries: Vec<PhaseSummary> = Phase::ALL
        .iter()
        .map(|&p| {
            let name = if p == Phase::SlaveShow {
                slave_label
            } else {
                p.label()
            };
            PhaseSummary::of(name, writes.iter().map(|w| w.ns(p) as f64))
        })
        .collect();
    summaries.push(PhaseSummary::of(
        READ_HOP_LABEL,
        hops.iter().map(|&h| h as f64),
    ));
    summaries.push(PhaseSummary::of(
        VISIBILITY_LABEL,
        writes.iter().map(|w| w.visibility_ns() as f64),
    ));

    Prediction {
        delays_ms: delays.iter().map(|t| t.as_secs_f64() * 1e3).collect(),
        independent: delays.iter().map(|t| share(&independent, t)).collect(),
        joint: delays.iter().map(|t| share(&joint, t)).collect(),
        phases: summaries,
        samples,
        seed,
        clock_bound_ms: phases.clock_bound_ns.map(|b| b as f64 / NS_PER_MS),
        read_hop: phases.read_hop_source,
        writes: writes.len(),
        skipped: phases.skipped,
    }
}

/// Which of a [`Prediction`]'s curves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// [`Prediction::independent`], the WARS prediction.
    Independent,
    /// [`Prediction::joint`], whole writes.
    Joint,
}

/// Where a predicted curve and a measured one differ most.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Gap {
    /// The delay, milliseconds.
    pub delay_ms: f64,
    /// The predicted share there.
    pub predicted: f64,
    /// The measured share there.
    pub measured: f64,
}

impl Gap {
    /// Predicted minus measured: positive where the prediction is
    /// optimistic.
    pub fn difference(&self) -> f64 {
        self.predicted - self.measured
    }
}

/// The measured point where `model`'s curve differs most from `measured`
/// (`(delay_ms, share)` pairs, any order). The curve is interpolated
/// linearly between its delays; measured points outside them are not
/// compared. `None` when no point can be compared.
pub fn largest_gap(pred: &Prediction, model: Model, measured: &[(f64, f64)]) -> Option<Gap> {
    let curve = match model {
        Model::Independent => &pred.independent,
        Model::Joint => &pred.joint,
    };
    let mut points: Vec<(f64, f64)> = pred
        .delays_ms
        .iter()
        .copied()
        .zip(curve.iter().copied())
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let at = |t: f64| -> Option<f64> {
        let i = points.partition_point(|&(d, _)| d < t);
        match (points.get(i), i.checked_sub(1)) {
            (Some(&(d, p)), _) if d == t => Some(p),
            (Some(&(d1, p1)), Some(j)) => {
                let (d0, p0) = points[j];
                Some(p0 + (p1 - p0) * (t - d0) / (d1 - d0))
            }
            _ => None,
        }
    };
    measured
        .iter()
        .filter_map(|&(delay_ms, share)| {
            at(delay_ms).map(|predicted| Gap {
                delay_ms,
                predicted,
                measured: share,
            })
        })
        .max_by(|a, b| a.difference().abs().total_cmp(&b.difference().abs()))
}

/// The seed of the report's predictions: fixed, so `duokv stats` gives the
/// same curves for the same run every time.
pub const REPORT_SEED: u64 = 17;

/// A predicted curve for the chart: `(delay_ms, share)` points.
pub type Curve = Vec<(f64, f64)>;

/// Points of the chart's predicted curves, on a log grid of delays.
const CURVE_POINTS: usize = 64;

/// What `duokv stats` reports of a run that read at fixed delays: the
/// prediction at the measured delays, for the table, and on a fine grid,
/// for the chart, and where each model differs most from the measurement.
///
/// A read scheduled at `t` leaves a little later (the probe's own wake-up,
/// tens of microseconds), which matters on a curve that rises within
/// tens of microseconds. So the prediction compared with a measured point
/// is the mean of the predicted shares at each of its reads' own send
/// times, not the share at `t`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunPrediction {
    /// At the delays the probe read at: per delay, the mean predicted
    /// share at the send times of its on-time reads.
    pub at_measured: Prediction,
    /// On a log grid from a tenth of the smallest non-zero measured delay
    /// to twice the largest, and 0.
    pub curve: Prediction,
    /// Where the independent (WARS) prediction differs most from the
    /// measured shares.
    pub gap_independent: Option<Gap>,
    /// Where the joint one does.
    pub gap_joint: Option<Gap>,
}

impl RunPrediction {
    /// The prediction for `run`, whose probe made the reads `rows`
    /// (their round trips give the reader's hop), which found the shares
    /// `measured` (`(delay_ms, share)` per delay with on-time reads);
    /// `None` when the event logs do not give the phases.
    pub fn of(run: &Run, rows: &[VisibilityRow], measured: &[(f64, f64)]) -> Option<RunPrediction> {
        let read_rtt: Vec<u64> = rows.iter().map(|row| row.read_ns).collect();
        let phases = phases(run, &read_rtt)?;
        let delays: Vec<Duration> = measured
            .iter()
            .map(|&(ms, _)| Duration::from_secs_f64(ms.max(0.0) / 1e3))
            .collect();
        let at_measured = at_send_times(&phases, rows, &delays);
        let curve = predict(&phases, &log_grid(&delays), DEFAULT_SAMPLES, REPORT_SEED);
        Some(RunPrediction {
            gap_independent: largest_gap(&at_measured, Model::Independent, measured),
            gap_joint: largest_gap(&at_measured, Model::Joint, measured),
            at_measured,
            curve,
        })
    }

    /// The chart's curves, `(delay_ms, share)`: independent, then joint.
    pub fn curves(&self) -> (Curve, Curve) {
        let points = |shares: &[f64]| {
            self.curve
                .delays_ms
                .iter()
                .copied()
                .zip(shares.iter().copied())
                .collect()
        };
        (points(&self.curve.independent), points(&self.curve.joint))
    }
}

/// The prediction at each of `delays`, as the mean of the predicted shares
/// at the send times of the on-time reads of `rows` scheduled there.
fn at_send_times(phases: &Phases, rows: &[VisibilityRow], delays: &[Duration]) -> Prediction {
    let on_time: Vec<&VisibilityRow> = rows.iter().filter(|row| !row.late).collect();
    let sent: Vec<Duration> = on_time
        .iter()
        .map(|row| Duration::from_nanos(row.offset_ns))
        .collect();
    let per_read = predict(phases, &sent, DEFAULT_SAMPLES, REPORT_SEED);
    let mean_at = |shares: &[f64], delay: &Duration| {
        let of_delay: Vec<f64> = on_time
            .iter()
            .zip(shares)
            .filter(|(row, _)| u128::from(row.delay_ns) == delay.as_nanos())
            .map(|(_, &share)| share)
            .collect();
        of_delay.iter().sum::<f64>() / of_delay.len().max(1) as f64
    };
    Prediction {
        delays_ms: delays.iter().map(|t| t.as_secs_f64() * 1e3).collect(),
        independent: delays
            .iter()
            .map(|d| mean_at(&per_read.independent, d))
            .collect(),
        joint: delays.iter().map(|d| mean_at(&per_read.joint, d)).collect(),
        ..per_read
    }
}

/// 0 and [`CURVE_POINTS`] delays evenly spaced on a log scale from a tenth
/// of the smallest non-zero delay of `delays` (1 us without one) to twice
/// the largest.
fn log_grid(delays: &[Duration]) -> Vec<Duration> {
    let nonzero = || {
        delays
            .iter()
            .filter(|d| !d.is_zero())
            .map(Duration::as_secs_f64)
    };
    let low = nonzero().fold(f64::INFINITY, f64::min);
    let low = if low.is_finite() { low / 10.0 } else { 1e-6 };
    let high = (nonzero().fold(0.0, f64::max) * 2.0).max(low * 10.0);
    let step = (high / low).ln() / (CURVE_POINTS - 1) as f64;
    std::iter::once(Duration::ZERO)
        .chain((0..CURVE_POINTS).map(|i| Duration::from_secs_f64(low * (step * i as f64).exp())))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::run_dir::ClientRow;
    use crate::stats::tests::{client_row, event, meta, probes};

    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;
    const SECOND: u64 = 1_000_000_000;
    /// An arbitrary client-clock epoch for the fixtures.
    const T0: u64 = 1_700_000_000 * SECOND;
    /// The Monte Carlo tests' tolerance on a share at [`DEFAULT_SAMPLES`]
    /// draws: over six standard errors (at most 0.0016 each).
    const TOLERANCE: f64 = 0.01;

    /// A run with the given rows and events, without clock probes.
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

    /// Phases built by hand, milliseconds, in [`Phase::ALL`]'s order.
    fn fixture(writes: &[[f64; 5]], read_hops_ms: &[f64]) -> Phases {
        let ns = |ms: f64| (ms * NS_PER_MS).round() as i64;
        Phases {
            writes: writes
                .iter()
                .zip(1..)
                .map(|(w, seq)| WritePhases { seq, ns: w.map(ns) })
                .collect(),
            read_hop_ns: read_hops_ms.iter().map(|&ms| ns(ms) as u64).collect(),
            read_hop_source: ReadHopSource::ReadRoundTrips,
            slave_event: EventKind::Visible,
            skipped: 0,
            clock_bound_ns: Some(0),
        }
    }

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    fn assert_close(got: &[f64], want: &[f64], tolerance: f64) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tolerance, "at {i}: {got:?} vs {want:?}");
        }
    }

    /// Two writes on a master 3 ms behind the client and a slave 500 ms
    /// ahead (no drift); a third without its slave `visible` event is
    /// skipped, and a failed one is not counted at all.
    #[test]
    fn phases_are_measured_per_write_on_corrected_clocks() {
        let (m_off, s_off) = (-3 * MS as i64, 500 * MS as i64);
        let on_master = |client_ns: u64| client_ns.wrapping_add_signed(m_off);
        let on_slave = |client_ns: u64| client_ns.wrapping_add_signed(s_off);
        let mut rows = Vec::new();
        let (mut master, mut slave) = (Vec::new(), Vec::new());
        // (received, forwarded, replied, slave received, visible, commit),
        // in microseconds after the write's start, on the client's clock.
        let timings = [
            (100, 150, 400, 350, 900, 500),
            (100, 700, 300, 900, 1_000, 450),
            (100, 150, 400, 350, 0, 500),
        ];
        for (i, &(rm, fw, rp, sr, sv, c)) in timings.iter().enumerate() {
            let (seq, start) = (i as u64 + 1, T0 + i as u64 * SECOND);
            rows.push(client_row(i as u64, seq, start, start + c * US, None));
            master.push(event("received", seq, on_master(start + rm * US)));
            master.push(event("forwarded", seq, on_master(start + fw * US)));
            master.push(event("replied", seq, on_master(start + rp * US)));
            slave.push(event("received", seq, on_slave(start + sr * US)));
            if sv > 0 {
                slave.push(event("applied", seq, on_slave(start + sv * US - 50 * US)));
                slave.push(event("visible", seq, on_slave(start + sv * US)));
            }
        }
        rows.push(client_row(3, 0, T0 + 3 * SECOND, 0, Some("gone")));
        let mut r = run(rows, master, slave);
        let end = T0 + 4 * SECOND;
        r.meta.master_clock = Some(probes(m_off, 20 * US, T0, m_off, 30 * US, end));
        r.meta.slave_clock = Some(probes(s_off, 40 * US, T0, s_off, 10 * US, end));

        let p = phases(&r, &[]).unwrap();
        let per_write: Vec<(u64, [i64; 5], i64)> = p
            .writes()
            .iter()
            .map(|w| (w.seq(), Phase::ALL.map(|ph| w.ns(ph)), w.visibility_ns()))
            .collect();
        // Write 1: 150-100, 350-150, 900-350, 400-100, 500-400; D = 900-500.
        // Write 2: the slave showed it after the commit on a reply that
        // left before the forward: 600, 200, 100, 200, 150; D = 550.
        let us = |v: i64| v * US as i64;
        assert_eq!(
            per_write,
            vec![
                (1, [50, 200, 550, 300, 100].map(us), us(400)),
                (2, [600, 200, 100, 200, 150].map(us), us(550)),
            ]
        );
        assert_eq!(p.skipped(), 1);
        assert_eq!(p.slave_event(), EventKind::Visible);
        // The slave's 40 µs plus twice the master's 30 µs.
        assert_eq!(p.clock_bound_ns(), Some(100 * US));
        // No read round trips: half of the slave probes' (2 x bound).
        assert_eq!(p.read_hop_source(), ReadHopSource::ClockProbes);
        assert_eq!(p.read_hop_ns(), &[40 * US, 10 * US]);

        let p = phases(&r, &[300 * US, 501]).unwrap();
        assert_eq!(p.read_hop_source(), ReadHopSource::ReadRoundTrips);
        assert_eq!(p.read_hop_ns(), &[150 * US, 250]);

        r.meta.slave_clock = None;
        let p = phases(&r, &[]).unwrap();
        assert_eq!(p.read_hop_source(), ReadHopSource::Assumed);
        assert_eq!(p.read_hop_ns(), &[0]);
        assert_eq!(p.clock_bound_ns(), None);
    }

    /// A slave log from before commit notices has no `visible` events: the
    /// slave's phase ends at `applied`.
    #[test]
    fn older_slave_logs_end_at_the_apply_event() {
        let rows = vec![client_row(0, 1, T0, T0 + 2 * MS, None)];
        let master = vec![
            event("received", 1, T0 + MS / 10),
            event("forwarded", 1, T0 + MS / 5),
            event("replied", 1, T0 + MS),
        ];
        let slave = vec![
            event("received", 1, T0 + MS / 2),
            event("applied", 1, T0 + 3 * MS),
        ];
        let p = phases(&run(rows, master, slave), &[]).unwrap();
        assert_eq!(p.slave_event(), EventKind::Applied);
        let w = p.writes()[0];
        assert_eq!(w.ns(Phase::SlaveShow), (3 * MS - MS / 2) as i64);
        assert_eq!(w.visibility_ns(), MS as i64);
        let pred = predict(&p, &[], 10, 1);
        assert_eq!(pred.phases[2].name, SLAVE_APPLIED_LABEL);
    }

    #[test]
    fn nothing_to_predict_from_is_none() {
        let rows = || vec![client_row(0, 1, T0, T0 + 2 * MS, None)];
        let master = || {
            vec![
                event("received", 1, T0),
                event("forwarded", 1, T0 + 1),
                event("replied", 1, T0 + 2),
            ]
        };
        let slave = || vec![event("received", 1, T0 + 3), event("visible", 1, T0 + 4)];
        assert!(phases(&run(rows(), master(), slave()), &[]).is_some());
        let mut r = run(rows(), master(), slave());
        r.master_events = None;
        assert!(phases(&r, &[]).is_none());
        let mut r = run(rows(), master(), slave());
        r.slave_events = None;
        assert!(phases(&r, &[]).is_none());
        // A master log whose `received` events have no seq (older builds).
        let mut old = master();
        old[0].seq = 0;
        assert!(phases(&run(rows(), old, slave()), &[]).is_none());
        assert!(phases(&run(rows(), master(), vec![]), &[]).is_none());
    }

    /// Every phase constant: every draw is the same `D - R`, so the curve
    /// steps from 0 to 1 exactly there, in both models.
    #[test]
    fn constant_phases_step_at_d_minus_r() {
        // D = 1 + 2 + 3 - 0.5 - 0.25 = 5.25 ms; R = 1.5 ms; D - R = 3.75 ms.
        let p = fixture(&[[1.0, 2.0, 3.0, 0.5, 0.25]], &[1.5]);
        let step = Duration::from_micros(3_750);
        let just_before = step - Duration::from_nanos(1);
        let delays = [Duration::ZERO, just_before, step, Duration::from_secs(1)];
        let pred = predict(&p, &delays, 1_000, 7);
        assert_eq!(pred.independent, [0.0, 0.0, 1.0, 1.0]);
        assert_eq!(pred.joint, [0.0, 0.0, 1.0, 1.0]);
        assert_eq!(pred.delays_ms, [0.0, 3.749999, 3.75, 1000.0]);
        assert_eq!((pred.samples, pred.seed, pred.writes), (1_000, 7, 1));
    }

    /// A measured point is compared with the mean prediction at its reads'
    /// own send times: reads scheduled at 3.7 ms, half of them sent after
    /// the 3.75 ms step, are predicted to see the write half the time; late
    /// reads play no part.
    #[test]
    fn the_prediction_of_a_point_is_at_its_reads_send_times() {
        let p = fixture(&[[1.0, 2.0, 3.0, 0.5, 0.25]], &[1.5]);
        let row = |write: u64, offset_ns: u64, late: bool| VisibilityRow {
            write,
            delay_ns: 3_700_000,
            offset_ns,
            read_ns: 3_000_000,
            saw_write: false,
            late,
        };
        let rows = [
            row(0, 3_700_000, false),
            row(1, 3_760_000, false),
            row(2, 3_710_000, false),
            row(3, 3_800_000, false),
            row(4, 9_000_000, true),
        ];
        let at = at_send_times(&p, &rows, &[Duration::from_micros(3_700)]);
        assert_eq!(at.independent, [0.5]);
        assert_eq!(at.joint, [0.5]);
        assert_eq!(at.delays_ms, [3.7]);
    }

    /// Two writes, each phase taking two values, and two read hops.
    ///
    /// Independent: p1 in {1, 3}, p2 in {2, 4}, the rest 1, so
    /// D = p1 + p2 - 1 is 2, 4, 6 with chances 1/4, 1/2, 1/4; R in {0, 1}
    /// makes D - R 1, 2, 3, 4, 5, 6 with 1/8, 1/8, 1/4, 1/4, 1/8, 1/8.
    /// Joint: D is 2 or 6, so D - R is 1, 2, 5, 6 with 1/4 each.
    #[test]
    fn two_valued_phases_match_the_convolution() {
        let p = fixture(
            &[[1.0, 2.0, 1.0, 1.0, 1.0], [3.0, 4.0, 1.0, 1.0, 1.0]],
            &[0.0, 1.0],
        );
        let delays = ms(&[0, 1, 2, 3, 4, 5, 6, 7]);
        let pred = predict(&p, &delays, DEFAULT_SAMPLES, 17);
        let independent = [0.0, 0.125, 0.25, 0.5, 0.75, 0.875, 1.0, 1.0];
        let joint = [0.0, 0.25, 0.5, 0.5, 0.5, 0.75, 1.0, 1.0];
        assert_close(&pred.independent, &independent, TOLERANCE);
        assert_close(&pred.joint, &joint, TOLERANCE);
        // The phase summaries, from the writes themselves.
        let names: Vec<_> = pred.phases.iter().map(|s| s.name).collect();
        assert_eq!(names[..5], Phase::ALL.map(Phase::label));
        assert_eq!(names[5..], [READ_HOP_LABEL, VISIBILITY_LABEL]);
        let visibility = &pred.phases[6];
        assert_eq!((visibility.count, visibility.mean_ms), (2, 4.0));
        assert_eq!(pred.phases[0].p50_ms, 2.0);
        assert_eq!(pred.phases[5].mean_ms, 0.5);
    }

    #[test]
    fn a_seed_gives_the_same_curves_and_another_seed_close_ones() {
        let p = fixture(
            &[
                [1.0, 2.0, 1.0, 1.0, 1.0],
                [3.0, 4.0, 1.5, 2.0, 0.5],
                [0.5, 0.3, 2.0, 0.5, 0.2],
            ],
            &[0.0, 0.4, 1.0],
        );
        let delays: Vec<Duration> = (0..40).map(|i| Duration::from_micros(i * 250)).collect();
        let a = predict(&p, &delays, DEFAULT_SAMPLES, 1);
        assert_eq!(a, predict(&p, &delays, DEFAULT_SAMPLES, 1));
        let b = predict(&p, &delays, DEFAULT_SAMPLES, 2);
        assert_ne!(a.independent, b.independent);
        assert_close(&a.independent, &b.independent, TOLERANCE);
        assert_close(&a.joint, &b.joint, TOLERANCE);
    }

    /// An async master that is sometimes slow delays the forward and the
    /// reply alike (p1 and p4 move together): every real write has
    /// D = p1 - p4 + 1 = 0.5 ms. Independent draws pair a fast forward
    /// with a slow reply and back: D is -3.5, 0.5 or 4.5 ms with 1/4, 1/2,
    /// 1/4, so WARS says a quarter of reads at once see the write (none
    /// do) and a quarter at 1 ms do not (all do).
    #[test]
    fn correlated_phases_show_the_independence_error() {
        let p = fixture(
            &[[1.0, 1.0, 1.0, 1.5, 1.0], [5.0, 1.0, 1.0, 5.5, 1.0]],
            &[0.0],
        );
        let delays = ms(&[0, 1, 4, 5]);
        let pred = predict(&p, &delays, DEFAULT_SAMPLES, 3);
        assert_eq!(pred.joint, [0.0, 1.0, 1.0, 1.0]);
        assert_close(&pred.independent, &[0.25, 0.75, 0.75, 1.0], TOLERANCE);
        let measured: Vec<(f64, f64)> = delays
            .iter()
            .zip(&pred.joint)
            .map(|(t, &share)| (t.as_secs_f64() * 1e3, share))
            .collect();
        let gap = largest_gap(&pred, Model::Independent, &measured).unwrap();
        assert!(gap.delay_ms == 0.0 || gap.delay_ms == 1.0, "{gap:?}");
        assert!(
            (gap.difference().abs() - 0.25).abs() <= TOLERANCE,
            "{gap:?}"
        );
        let none = largest_gap(&pred, Model::Joint, &measured).unwrap();
        assert_eq!(none.difference(), 0.0);
    }

    #[test]
    fn largest_gap_interpolates_and_skips_points_outside_the_curve() {
        let pred = Prediction {
            delays_ms: vec![2.0, 0.0, 1.0],
            independent: vec![1.0, 0.0, 0.5],
            joint: vec![1.0, 0.0, 0.5],
            phases: vec![],
            samples: 1,
            seed: 0,
            clock_bound_ms: None,
            read_hop: ReadHopSource::Assumed,
            writes: 1,
            skipped: 0,
        };
        let measured = [(1.5, 1.0), (0.0, 0.0), (1.0, 0.7), (5.0, 0.0), (-1.0, 1.0)];
        let gap = largest_gap(&pred, Model::Independent, &measured).unwrap();
        // 1.5 ms: 0.75 against 1.0 is the widest compared; 5 and -1 are off
        // the curve.
        assert_eq!(
            gap,
            Gap {
                delay_ms: 1.5,
                predicted: 0.75,
                measured: 1.0
            }
        );
        assert_eq!(gap.difference(), -0.25);
        assert_eq!(largest_gap(&pred, Model::Joint, &[]), None);
        assert_eq!(largest_gap(&pred, Model::Joint, &[(3.0, 1.0)]), None);
    }

    /// On the committed two-host runs, each write's D is its slave
    /// `visible` (here `applied`: the logs predate commit notices) on the
    /// client's clock minus its commit, to within the drift.
    #[test]
    fn committed_runs_sum_to_their_visibility_delay() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../results/two-hosts");
        for mode in ["sync", "async"] {
            let r = crate::stats::load(root.join(mode)).unwrap();
            let p = phases(&r, &[]).unwrap();
            assert_eq!(p.writes().len() + p.skipped(), 100, "{mode}");
            let slave = r.slave_events.as_deref().unwrap();
            let shown = first_events(slave, EventKind::Applied);
            for w in p.writes() {
                let row = r.client.iter().find(|c| c.write_id == w.seq()).unwrap();
                let v = to_client_ns(r.meta.slave_clock.as_ref(), shown[&w.seq()]);
                let want = v - i128::from(row.commit_unix_ns);
                let got = i128::from(w.visibility_ns());
                assert!((got - want).abs() <= 10, "{mode} {}: {got} {want}", w.seq());
            }
            let delays: Vec<Duration> = (0..=20).map(|i| Duration::from_micros(i * 100)).collect();
            let pred = predict(&p, &delays, 10_000, 1);
            assert_eq!(pred.independent.last(), Some(&1.0), "{mode}");
        }
    }
}
