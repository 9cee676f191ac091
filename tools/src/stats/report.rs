//! What `duokv stats` prints: the terminal report and the JSON document.
//!
//! The report is for reading in a terminal next to the assignment's
//! questions, so every run starts with what was run (mode, writes, hosts,
//! build), then how far the clocks were apart, then one table row per
//! measure (then the reader probe's conditional reads and the t-visibility
//! table, for runs that have them), then in words what was missing, then a
//! sparkline per measure to
//! show how the values moved over the run. Several runs end with a
//! side-by-side comparison. The JSON carries the same numbers for scripts.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use super::compute::{ClockEstimate, Measure, ProbeSummary, RunSummary, Summary};
use super::predict::RunPrediction;
use super::visibility::{CONFIDENCE, VisibilityPoint};
use crate::error::{Error, Result};
use crate::run_dir::ProbeOutcome;

/// The characters of a sparkline, lowest to highest.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// A sparkline's character where a stretch of writes has no value.
const NO_VALUE: char = '·';
/// The widest a sparkline gets; longer runs are bucketed.
const SPARK_WIDTH: usize = 50;
/// The width of the measure column.
const LABEL: usize = 38;

/// The terminal report of `runs`, then the comparison (two runs or more),
/// then the charts written.
pub fn text(runs: &[RunSummary], charts: &[PathBuf]) -> String {
    let mut out = String::new();
    for (i, run) in runs.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        run_report(&mut out, run);
    }
    if runs.len() >= 2 {
        out.push('\n');
        comparison(&mut out, runs);
    }
    if !charts.is_empty() {
        out.push_str("\ncharts\n");
        for path in charts {
            let _ = writeln!(out, "  {}", path.display());
        }
    }
    out
}

/// The JSON document: `{"runs": [RunSummary...], "charts": [path...]}`,
/// pretty-printed, with a final newline.
pub fn json(runs: &[RunSummary], charts: &[PathBuf]) -> Result<String> {
    #[derive(Serialize)]
    struct Document<'a> {
        runs: &'a [RunSummary],
        charts: &'a [PathBuf],
    }
    serde_json::to_string_pretty(&Document { runs, charts })
        .map(|text| text + "\n")
        .map_err(|e| Error::BadFile {
            path: runs.first().map_or_else(PathBuf::new, |r| r.dir.clone()),
            reason: format!("cannot write the JSON summary: {e}"),
        })
}

/// A number with 3 decimals, without the `-0.000` of a tiny negative value.
pub fn fixed3(value: f64) -> String {
    let text = format!("{value:.3}");
    if text == "-0.000" {
        "0.000".into()
    } else {
        text
    }
}

/// [`fixed3`] with a sign always (`+0.000` for zero).
fn signed3(value: f64) -> String {
    let text = fixed3(value);
    if text.starts_with('-') {
        text
    } else {
        format!("+{text}")
    }
}

/// A number of milliseconds, 3 decimals, or `-` when absent.
fn ms(value: Option<f64>, width: usize) -> String {
    match value {
        Some(v) => format!("{:>width$}", fixed3(v)),
        None => format!("{:>width$}", "-"),
    }
}

/// Nanoseconds as milliseconds, 3 decimals.
fn ns_as_ms(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1e6)
}

fn run_report(out: &mut String, run: &RunSummary) {
    let meta = &run.meta;
    let _ = writeln!(out, "run {}", run.dir.display());
    let _ = writeln!(
        out,
        "  mode      {}, {}, one every {} ms, key {:?}",
        meta.mode,
        super::plural(meta.count, "write"),
        ns_as_ms(meta.interval_ns),
        meta.key
    );
    let _ = writeln!(out, "  master    {}", meta.master);
    let _ = writeln!(out, "  slave     {}", meta.slave);
    let _ = writeln!(out, "  client    {}", meta.client_host);
    let _ = writeln!(
        out,
        "  build     duokv {}, commit {}",
        meta.duokv_version,
        meta.git_commit.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(
        out,
        "  writes    {} in client.csv, {} committed, {} failed",
        run.writes, run.committed, run.failed
    );
    if meta.finished_unix_ns > meta.started_unix_ns {
        let _ = writeln!(
            out,
            "  duration  {:.3} s",
            (meta.finished_unix_ns - meta.started_unix_ns) as f64 / 1e9
        );
    }
    for (key, value) in &meta.notes {
        let _ = writeln!(out, "  {key:<9} {value}");
    }

    let _ = writeln!(
        out,
        "\nclocks (replica minus client; replica times are corrected by the offset \
         interpolated between the probes)"
    );
    clock_line(out, "master", run.clocks.master.as_ref());
    clock_line(out, "slave", run.clocks.slave.as_ref());

    out.push('\n');
    table(out, run);
    let _ = writeln!(
        out,
        "(two-clock staleness ends at the slave's `{}` events)",
        run.slave_event
    );
    if let Some(probe) = &run.probe {
        out.push('\n');
        probe_report(out, probe, meta.probe_read.as_deref().unwrap_or("unknown"));
    }
    if let Some(points) = &run.visibility {
        out.push('\n');
        visibility_report(out, points, run.prediction.as_ref());
    }
    if let Some(prediction) = &run.prediction {
        out.push('\n');
        prediction_report(out, prediction);
    }

    if !run.notes.is_empty() {
        out.push_str("\nnotes\n");
        for note in &run.notes {
            let _ = writeln!(out, "  - {note}");
        }
    }

    let _ = writeln!(
        out,
        "\nper write, writes 0 to {} ({} lowest, {} highest, {NO_VALUE} no value)",
        run.samples.len().saturating_sub(1),
        BARS[0],
        BARS[7]
    );
    for measure in Measure::ALL {
        let summary = run.measure(measure);
        let range = match (summary.min, summary.max) {
            (Some(lo), Some(hi)) => format!("  {} .. {} ms", fixed3(lo), fixed3(hi)),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<LABEL$}  {}{range}",
            measure.label(),
            sparkline(&run.values(measure), SPARK_WIDTH)
        );
    }
}

fn clock_line(out: &mut String, replica: &str, clock: Option<&ClockEstimate>) {
    let Some(c) = clock else {
        let _ = writeln!(
            out,
            "  {replica:<9} not probed: its clock is taken as the client's, bound unknown"
        );
        return;
    };
    let drift = c
        .drift_ppm
        .map_or_else(|| "unknown".to_string(), |d| format!("{d:+.3} ppm"));
    let _ = writeln!(
        out,
        "  {replica:<9} before {} ms ± {:.3}, after {} ms ± {:.3}, drift {drift}",
        signed3(c.offset_before),
        c.bound_before,
        signed3(c.offset_after),
        c.bound_after
    );
}

fn table(out: &mut String, run: &RunSummary) {
    const W: usize = 9;
    let _ = writeln!(
        out,
        "{:<LABEL$} {:>6} {:>7} {:>W$} {:>W$} {:>W$} {:>W$} {:>W$} {:>W$} {:>W$}  bound",
        "measure (ms)", "count", "missing", "min", "max", "mean", "std dev", "p50", "p90", "p99",
    );
    for measure in Measure::ALL {
        let s: &Summary = run.measure(measure);
        let bound = match (measure, s.error_bound) {
            (_, Some(b)) => format!("± {b:.3}"),
            (Measure::StalenessRaw | Measure::StalenessSeed, None) => "unknown".into(),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<LABEL$} {:>6} {:>7} {} {} {} {} {} {} {}  {bound}",
            measure.label(),
            s.count,
            s.missing,
            ms(s.min, W),
            ms(s.max, W),
            ms(s.mean, W),
            ms(s.std_dev, W),
            ms(s.p50, W),
            ms(s.p90, W),
            ms(s.p99, W),
        );
    }
}

/// A count and its share of `total`, as `12 (6.0%)`.
fn share(count: usize, total: usize) -> String {
    let percent = if total == 0 {
        0.0
    } else {
        count as f64 * 100.0 / total as f64
    };
    format!("{count} ({percent:.1}%)")
}

/// The reader probe's conditional reads: how they ended, and their times.
fn probe_report(out: &mut String, probe: &ProbeSummary, read: &str) {
    const W: usize = 9;
    let n = probe.reads;
    let count = |outcome| {
        probe
            .outcomes
            .iter()
            .find(|(o, _)| *o == outcome)
            .map_or(0, |(_, c)| *c)
    };
    let refused: usize = probe
        .outcomes
        .iter()
        .filter(|(o, _)| o.refused())
        .map(|(_, c)| c)
        .sum();
    let _ = writeln!(
        out,
        "reader probe, --probe-read {read}: {n} reads (asked at once, then with a wait if refused)"
    );
    let _ = writeln!(
        out,
        "  answered at once {}, after waiting {}, refused {}, failed {}; {} saw the write",
        share(count(ProbeOutcome::AtOnce), n),
        share(count(ProbeOutcome::Waited), n),
        share(refused, n),
        count(ProbeOutcome::Failed),
        share(probe.saw_write, n)
    );
    if refused > 0 {
        let _ = writeln!(
            out,
            "  refused: {} not yet visible, {} too stale, {} unknown history",
            count(ProbeOutcome::NotYetVisible),
            count(ProbeOutcome::TooStale),
            count(ProbeOutcome::UnknownHistory)
        );
    }
    let _ = writeln!(
        out,
        "  {:<24} {:>6} {:>W$} {:>W$} {:>W$} {:>W$}",
        "read time (ms)", "count", "min", "p50", "p99", "max"
    );
    for (label, s) in [
        ("all reads", &probe.read_time),
        ("answered at once", &probe.at_once_time),
        ("answered after waiting", &probe.waited_time),
        ("refused", &probe.refused_time),
    ] {
        let _ = writeln!(
            out,
            "  {label:<24} {:>6} {} {} {} {}",
            s.count,
            ms(s.min, W),
            ms(s.p50, W),
            ms(s.p99, W),
            ms(s.max, W)
        );
    }
}

/// t-visibility: per delay after the commit, how many reads saw the write,
/// with the Wilson interval, the late reads left out, and the predicted
/// shares when there are.
fn visibility_report(
    out: &mut String,
    points: &[VisibilityPoint],
    prediction: Option<&RunPrediction>,
) {
    let _ = writeln!(
        out,
        "t-visibility (visibility.csv): P(a read of the slave t after the commit sees \
         the write), {:.0}% Wilson interval{}",
        CONFIDENCE * 100.0,
        if prediction.is_some() {
            "; predicted by the phases drawn independently (WARS) and by whole writes (joint)"
        } else {
            ""
        }
    );
    let predicted_head = if prediction.is_some() {
        format!(" {:>8} {:>8}", "WARS", "joint")
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "  {:>10} {:>6} {:>6} {:>8} {:>8} {:>8} {:>14}{predicted_head}",
        "t (ms)", "reads", "saw", "P(seen)", "low", "high", "late, left out"
    );
    let p = |value: Option<f64>| value.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
    for (i, point) in points.iter().enumerate() {
        let predicted = prediction.map_or_else(String::new, |pred| {
            let at = &pred.at_measured;
            let share = |curve: &[f64]| p(curve.get(i).copied());
            format!(" {:>8} {:>8}", share(&at.independent), share(&at.joint))
        });
        let _ = writeln!(
            out,
            "  {:>10} {:>6} {:>6} {:>8} {:>8} {:>8} {:>14}{predicted}",
            fixed3(point.delay_ms),
            point.reads,
            point.saw,
            p(point.p_seen),
            p(point.ci_low),
            p(point.ci_high),
            point.late,
        );
    }
}

/// The phases behind the predicted t-visibility, and where each model
/// parts from the measurement.
fn prediction_report(out: &mut String, prediction: &RunPrediction) {
    let at = &prediction.at_measured;
    let _ = writeln!(
        out,
        "predicted t-visibility: {} draws (ChaCha8, seed {}) over {} writes' phases ({} left \
         out for a missing event); reader's hop: {}; clock error bound {}",
        at.samples,
        at.seed,
        at.writes,
        at.skipped,
        at.read_hop.describe(),
        at.clock_bound_ms.map_or_else(
            || "unknown (no clock probes)".to_string(),
            |b| format!("±{b:.3} ms")
        ),
    );
    let _ = writeln!(
        out,
        "  {:<56} {:>6} {:>9} {:>9} {:>9}",
        "phase (ms)", "n", "p50", "p99", "mean"
    );
    for phase in &at.phases {
        let _ = writeln!(
            out,
            "  {:<56} {:>6} {:>9} {:>9} {:>9}",
            phase.name,
            phase.count,
            fixed3(phase.p50_ms),
            fixed3(phase.p99_ms),
            fixed3(phase.mean_ms)
        );
    }
    for (model, gap) in [
        ("WARS (phases independent)", prediction.gap_independent),
        ("joint (whole writes)", prediction.gap_joint),
    ] {
        let Some(gap) = gap else { continue };
        let _ = writeln!(
            out,
            "  {model}: differs most from the measurement at t = {} ms: predicted {:.4}, \
             measured {:.4} ({:+.4})",
            fixed3(gap.delay_ms),
            gap.predicted,
            gap.measured,
            gap.difference()
        );
    }
    let _ = writeln!(
        out,
        "  (where joint is closer than WARS, the gap is the phases' correlation that \
         independent draws ignore; where both miss, the reader's hop and the clock bound \
         are the suspects)"
    );
}

/// How a run is named in the comparison and the CDF chart: its mode and
/// its directory's name.
pub fn run_label(run: &RunSummary) -> String {
    let name = run
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| run.dir.display().to_string());
    // A run directory named after its mode (`duokv demo`'s) says it once.
    if name == run.meta.mode {
        name
    } else {
        format!("{} ({name})", run.meta.mode)
    }
}

fn comparison(out: &mut String, runs: &[RunSummary]) {
    const W: usize = 9;
    const GROUP: usize = 3 * W + 2;
    let _ = write!(out, "{:<LABEL$}", "comparison (ms)");
    for (i, run) in runs.iter().enumerate() {
        let mut head = format!("#{} {}", i + 1, run_label(run));
        if head.chars().count() > GROUP {
            head = head.chars().take(GROUP).collect();
        }
        let _ = write!(out, "   {head:>GROUP$}");
    }
    out.push('\n');
    let _ = write!(out, "{:<LABEL$}", "");
    for _ in runs {
        let _ = write!(out, "   {:>W$} {:>W$} {:>W$}", "mean", "p50", "p99");
    }
    out.push('\n');
    for measure in Measure::ALL {
        let _ = write!(out, "{:<LABEL$}", measure.label());
        for run in runs {
            let s = run.measure(measure);
            let _ = write!(
                out,
                "   {} {} {}",
                ms(s.mean, W),
                ms(s.p50, W),
                ms(s.p99, W)
            );
        }
        out.push('\n');
    }
    for (i, run) in runs.iter().enumerate() {
        let _ = writeln!(out, "  #{} {}", i + 1, run.dir.display());
    }
}

/// A sparkline of `values` at most `width` characters wide: one character
/// per value, or per bucket of consecutive values (the bucket's largest,
/// so spikes show) when there are more. The scale runs from the smallest
/// value to the largest; a bucket with no value is `·`.
pub fn sparkline(values: &[Option<f64>], width: usize) -> String {
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let per = values.len().div_ceil(width);
    let buckets: Vec<Option<f64>> = values
        .chunks(per)
        .map(|chunk| chunk.iter().flatten().copied().reduce(f64::max))
        .collect();
    let present = buckets.iter().flatten().copied();
    let lo = present.clone().reduce(f64::min);
    let hi = present.reduce(f64::max);
    buckets
        .iter()
        .map(|bucket| match (bucket, lo, hi) {
            (Some(v), Some(lo), Some(hi)) if hi > lo => {
                let level = ((v - lo) / (hi - lo) * 7.0).round() as usize;
                BARS[level.min(7)]
            }
            (Some(_), _, _) => BARS[0],
            (None, _, _) => NO_VALUE,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Run;
    use crate::stats::compute::summarize;
    use crate::stats::tests::{client_row, event, meta};

    #[test]
    fn numbers_have_no_negative_zero() {
        assert_eq!(fixed3(-0.0001), "0.000");
        assert_eq!(fixed3(-0.0006), "-0.001");
        assert_eq!(signed3(-0.0001), "+0.000");
        assert_eq!(signed3(1.5), "+1.500");
        assert_eq!(ms(Some(-0.0001), 7), "  0.000");
        assert_eq!(ms(None, 3), "  -");
    }

    #[test]
    fn sparklines_scale_bucket_and_show_gaps() {
        assert_eq!(sparkline(&[], 10), "");
        assert_eq!(
            sparkline(&[Some(0.0), Some(7.0), None, Some(3.5)], 10),
            "▁█·▅"
        );
        assert_eq!(sparkline(&[Some(2.0), Some(2.0)], 10), "▁▁");
        // Six values in three buckets of two, each its largest.
        let six = [Some(0.0), Some(1.0), None, None, Some(4.0), Some(2.0)];
        assert_eq!(sparkline(&six, 3), "▁·█");
    }

    fn fixture() -> RunSummary {
        const MS: u64 = 1_000_000;
        let rows = (0..4)
            .map(|i| client_row(i, i + 1, i * 1000 * MS, i * 1000 * MS + 2 * MS, None))
            .collect();
        let mut master = Vec::new();
        let mut slave = Vec::new();
        for i in 0..4 {
            let commit = i * 1000 * MS + 2 * MS;
            master.push(event("applied", i + 1, commit - MS));
            master.push(event("replied", i + 1, commit));
            if i < 2 {
                master.push(event("acked", i + 1, commit + MS));
                slave.push(event("applied", i + 1, commit + (i + 1) * MS));
            }
        }
        summarize(&Run {
            dir: PathBuf::from("results/async-1"),
            meta: meta("async", 4),
            client: rows,
            master_events: Some(master),
            slave_events: Some(slave),
            probe: None,
            visibility: None,
        })
    }

    #[test]
    fn the_report_has_a_row_per_measure_and_explains_what_is_missing() {
        let run = fixture();
        let text = text(
            std::slice::from_ref(&run),
            &[PathBuf::from("x/latency.svg")],
        );
        let row = |label: &str| {
            text.lines()
                .find(|l| l.starts_with(label))
                .unwrap_or_else(|| panic!("no {label} row:\n{text}"))
                .to_string()
        };
        let latency = row("latency  ");
        let fields: Vec<&str> = latency[LABEL..].split_whitespace().collect();
        assert_eq!(fields[..3], ["4", "0", "2.000"], "{latency}");
        let seed = row(Measure::StalenessSeed.label());
        let fields: Vec<&str> = seed[LABEL..].split_whitespace().collect();
        // count, missing, min, max, mean: values 1 and 2 ms, 2 writes missing.
        assert_eq!(fields[..5], ["2", "2", "1.000", "2.000", "1.500"], "{seed}");
        assert!(seed.ends_with("unknown"), "{seed}");
        assert!(text.contains(
            "  - 2 of 4 committed writes have no apply event on the slave: the slave missed them"
        ));
        assert!(text.contains("not probed"));
        assert!(text.ends_with("charts\n  x/latency.svg\n"), "{text}");
        assert!(!text.contains("comparison"));
        // The columns line up with the header.
        let header = row("measure (ms)");
        assert_eq!(
            header.find("p99").unwrap() + 3,
            latency.find("  -").unwrap()
        );
    }

    #[test]
    fn the_comparison_has_a_column_group_per_run() {
        let first = fixture();
        let mut second = fixture();
        second.meta.mode = "sync".into();
        second.dir = PathBuf::from("results/sync-1");
        let text = text(&[first, second], &[]);
        let comparison = &text[text.find("comparison (ms)").unwrap()..];
        assert!(comparison.contains("#1 async (async-1)"), "{comparison}");
        assert!(comparison.contains("#2 sync (sync-1)"), "{comparison}");
        let latency = comparison
            .lines()
            .find(|l| l.starts_with("latency"))
            .unwrap();
        assert_eq!(latency.split_whitespace().count(), 1 + 2 * 3, "{latency}");
    }

    #[test]
    fn the_report_shares_out_the_probe_reads() {
        use crate::run_dir::ProbeRow;
        let mut run = fixture();
        run.meta.probe_read = Some("after".into());
        let rows: Vec<ProbeRow> = (0..4)
            .map(|write| ProbeRow {
                write,
                outcome: if write == 3 {
                    ProbeOutcome::NotYetVisible
                } else if write == 2 {
                    ProbeOutcome::Waited
                } else {
                    ProbeOutcome::AtOnce
                },
                read_ns: (write + 1) * 1_000_000,
                saw_write: write != 3,
            })
            .collect();
        run.probe = Some(crate::stats::compute::ProbeSummary::of(&rows));
        let text = text(std::slice::from_ref(&run), &[]);
        assert!(
            text.contains("reader probe, --probe-read after: 4 reads"),
            "{text}"
        );
        assert!(
            text.contains(
                "answered at once 2 (50.0%), after waiting 1 (25.0%), refused 1 (25.0%), \
                 failed 0; 3 (75.0%) saw the write"
            ),
            "{text}"
        );
        assert!(
            text.contains("refused: 1 not yet visible, 0 too stale"),
            "{text}"
        );
        let waited = text
            .lines()
            .find(|l| l.trim_start().starts_with("answered after waiting "))
            .unwrap();
        let fields: Vec<&str> = waited.split_whitespace().collect();
        assert_eq!(
            fields[3..],
            ["1", "3.000", "3.000", "3.000", "3.000"],
            "{waited}"
        );
        assert!(
            text.contains("ends at the slave's `applied` events"),
            "{text}"
        );
        let doc: serde_json::Value = serde_json::from_str(&json(&[run], &[]).unwrap()).unwrap();
        assert_eq!(doc["runs"][0]["probe"]["waited_share"], 0.25);
        assert_eq!(doc["runs"][0]["slave_event"], "applied");
    }

    #[test]
    fn the_report_and_json_carry_t_visibility() {
        use crate::run_dir::VisibilityRow;
        let mut rows = Vec::new();
        for write in 0..24u64 {
            let delay_ns = if write % 2 == 0 { 0 } else { 10_000_000 };
            rows.push(VisibilityRow {
                write,
                delay_ns,
                offset_ns: delay_ns + 2_000,
                read_ns: 70_000,
                // At 0, 7 of the first 10 seen; at 10 ms, all.
                saw_write: delay_ns > 0 || write < 14,
                // Two reads at 0 were late.
                late: write >= 20 && delay_ns == 0,
            });
        }
        let mut run = fixture();
        run.visibility = Some(crate::stats::visibility::points(&rows));
        let text = text(std::slice::from_ref(&run), &[]);
        assert!(
            text.contains("t-visibility (visibility.csv): P(a read of the slave t after"),
            "{text}"
        );
        let line = |t: &str| {
            text.lines()
                .find(|l| l.split_whitespace().next() == Some(t))
                .unwrap_or_else(|| panic!("no row for {t}:\n{text}"))
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            line("0.000"),
            ["0.000", "10", "7", "0.7000", "0.3968", "0.8922", "2"]
        );
        assert_eq!(line("10.000")[1..4], ["12", "12", "1.0000"]);
        let doc: serde_json::Value = serde_json::from_str(&json(&[run], &[]).unwrap()).unwrap();
        let points = doc["runs"][0]["visibility"].as_array().unwrap();
        assert_eq!(points.len(), 2);
        assert_eq!(points[0]["delay_ms"], 0.0);
        assert_eq!(points[0]["reads"], 10);
        assert_eq!(points[0]["saw"], 7);
        assert_eq!(points[0]["p_seen"], 0.7);
        assert_eq!(points[0]["late"], 2);
        assert!(points[0]["ci_low"].as_f64().unwrap() > 0.39);
        assert_eq!(points[1]["delay_ms"], 10.0);
        assert_eq!(points[1]["ci_high"], 1.0);
    }

    #[test]
    fn json_has_every_measure_and_no_samples() {
        let run = fixture();
        let doc: serde_json::Value = serde_json::from_str(&json(&[run], &[]).unwrap()).unwrap();
        let run = &doc["runs"][0];
        for measure in Measure::ALL {
            assert!(run[measure.key()].is_object(), "{}", measure.key());
        }
        assert_eq!(run["staleness_two_clocks_seed"]["mean"], 1.5);
        assert!(run.get("samples").is_none());
        assert_eq!(run["meta"]["mode"], "async");
    }
}
