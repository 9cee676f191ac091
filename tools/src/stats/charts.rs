//! The SVG charts of `duokv stats`, drawn with `plotters`' SVG backend.
//!
//! Numbers in a table hide how a run went; these show it:
//!
//! - `latency.svg` (per run): latency of each write over the run;
//! - `staleness.svg` (per run): the staleness measures of each write, one
//!   series each, and the slave's applied-to-visible gap;
//! - `cdf.svg` (per run): the cumulative distribution of that run's
//!   latency and staleness (two clocks, clamped at zero);
//! - `visibility.svg` (per run that read at fixed delays, `--probe-read
//!   at:...`): t-visibility, P(a read t after the commit sees the write)
//!   against t on a log axis, with the Wilson intervals as error bars; it
//!   takes a predicted curve too, drawn beside the measured one
//!   ([`visibility_chart`]);
//! - `cdf-A-vs-B.svg` (with two runs or more): the same distributions, one
//!   curve per run, written once, beside the run directories (in the first
//!   one's parent: `duokv-demo/cdf-sync-vs-async.svg`), named after the
//!   runs it compares ([`comparison_path`]).
//!
//! Latency spans a long tail (most writes under 2 ms, a few at 30), so its
//! CDF has a logarithmic x axis; staleness, often exactly 0 in sync mode,
//! has a linear one with a margin left of 0, so that a vertical line at 0
//! is not hidden on the y axis. Tick labels carry no trailing zeros
//! (`10`, `0.25`).
//!
//! A write without a value (failed, or its data is missing) is a gap in the
//! per-write lines, never a point drawn at zero.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::compute::{Measure, RunSummary};
use super::report::{fixed3, run_label};
use super::visibility::VisibilityPoint;
use crate::error::{Error, Result};

/// The name of the per-write latency chart.
pub const LATENCY_SVG: &str = "latency.svg";
/// The name of the per-write staleness chart.
pub const STALENESS_SVG: &str = "staleness.svg";
/// The name of the per-run CDF chart.
pub const CDF_SVG: &str = "cdf.svg";
/// The name of the per-run t-visibility chart.
pub const VISIBILITY_SVG: &str = "visibility.svg";

/// Series colours (the Tableau 10 palette, distinct in print and on screen).
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];
/// The size of every chart, in pixels.
const SIZE: (u32, u32) = (1000, 600);
/// The least distance between two x tick labels of the t-visibility chart.
const MIN_LABEL_GAP_PX: i32 = 40;
/// The font of titles and labels.
const FONT: &str = "sans-serif";

/// Writes `latency.svg`, `staleness.svg`, `cdf.svg` and, for a run with
/// t-visibility reads, `visibility.svg` into each run's directory and,
/// with two runs or more, the comparison of their CDFs at
/// [`comparison_path`]; returns the paths written, in that order.
pub fn write_all(runs: &[RunSummary]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for run in runs {
        let latency = run.dir.join(LATENCY_SVG);
        latency_chart(run, &latency)?;
        written.push(latency);
        let staleness = run.dir.join(STALENESS_SVG);
        staleness_chart(run, &staleness)?;
        written.push(staleness);
        let cdf = run.dir.join(CDF_SVG);
        cdf_chart(std::slice::from_ref(run), &cdf)?;
        written.push(cdf);
        if let Some(points) = &run.visibility {
            let path = run.dir.join(VISIBILITY_SVG);
            let title = format!("t-visibility, {}", run_label(run));
            let curves = run.prediction.as_ref().map(|p| p.curves());
            let named: Vec<(&str, &[(f64, f64)])> = curves
                .iter()
                .flat_map(|(independent, joint)| {
                    [
                        ("predicted, phases independent (WARS)", &independent[..]),
                        ("predicted, whole writes (joint)", &joint[..]),
                    ]
                })
                .collect();
            visibility_chart(&title, points, &named, &path)?;
            written.push(path);
        }
    }
    if let Some(path) = comparison_path(runs) {
        cdf_chart(runs, &path)?;
        written.push(path);
    }
    Ok(written)
}

/// Where the CDF comparison of `runs` goes: beside the first run's
/// directory, named `cdf-A-vs-B.svg` after the runs' directory names (up to
/// three; `cdf-compare-N-runs.svg` past that). `None` for a single run.
pub fn comparison_path(runs: &[RunSummary]) -> Option<PathBuf> {
    let first = runs.first().filter(|_| runs.len() >= 2)?;
    let name = |run: &RunSummary| {
        run.dir.file_name().map_or_else(
            || "run".to_string(),
            |n| {
                n.to_string_lossy()
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect()
            },
        )
    };
    let file = if runs.len() <= 3 {
        let names: Vec<String> = runs.iter().map(name).collect();
        format!("cdf-{}.svg", names.join("-vs-"))
    } else {
        format!("cdf-compare-{}-runs.svg", runs.len())
    };
    let parent = first
        .dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Some(parent.join(file))
}

/// A tick label: at most 3 decimals, without trailing zeros (`10`,
/// `0.25`, `-1.5`), never `-0`.
pub(crate) fn tick(value: f64) -> String {
    let text = fixed3(value);
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    if text == "-0" { "0".into() } else { text }
}

/// A drawing failure as this crate's error about `path`.
fn failed(path: &Path) -> impl Fn(DrawingAreaErrorKind<io::Error>) -> Error + '_ {
    move |e| Error::File {
        path: path.to_path_buf(),
        source: io::Error::other(format!("cannot draw the chart: {e}")),
    }
}

/// The per-write latency chart of one run.
pub fn latency_chart(run: &RunSummary, path: &Path) -> Result<()> {
    let title = format!("latency per write, {}", run_label(run));
    per_write_chart(run, path, &title, &[Measure::Latency])
}

/// The per-write staleness chart of one run, one series per measure.
pub fn staleness_chart(run: &RunSummary, path: &Path) -> Result<()> {
    let title = format!("staleness per write, {}", run_label(run));
    per_write_chart(
        run,
        path,
        &title,
        &[
            Measure::StalenessRaw,
            Measure::StalenessSeed,
            Measure::StalenessMaster,
            Measure::StalenessReader,
            Measure::NoticeGap,
        ],
    )
}

/// The stretches of consecutive writes that have a value, as (write, ms).
fn segments(values: &[Option<f64>]) -> Vec<Vec<(f64, f64)>> {
    let mut segments = Vec::new();
    let mut current = Vec::new();
    for (i, value) in values.iter().enumerate() {
        match value {
            Some(v) => current.push((i as f64, *v)),
            None if !current.is_empty() => segments.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        segments.push(current);
    }
    segments
}

/// A range covering `values` and zero, never empty, with `headroom` (a
/// fraction of the span) above the largest value, for the legend.
fn value_range(values: impl Iterator<Item = f64>, headroom: f64) -> Range<f64> {
    let (lo, hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let lo = if lo < 0.0 { lo - span * 0.05 } else { lo };
    lo..hi + span * headroom
}

fn per_write_chart(run: &RunSummary, path: &Path, title: &str, measures: &[Measure]) -> Result<()> {
    let err = failed(path);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let series: Vec<(Measure, Vec<Option<f64>>)> =
        measures.iter().map(|&m| (m, run.values(m))).collect();
    // Room above the lines for the legend, a row per series.
    let headroom = 0.08 + 0.08 * series.len() as f64;
    let y = value_range(
        series.iter().flat_map(|(_, v)| v.iter().flatten().copied()),
        headroom,
    );
    let x = 0.0..(run.samples.len().max(2) - 1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("write (index in the run)")
        .y_desc("milliseconds")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| tick(*y))
        .draw()
        .map_err(&err)?;
    for (i, (measure, values)) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let present = values.iter().flatten().count();
        let label = format!(
            "{} ({present} of {})",
            measure.label(),
            super::plural(values.len() as u64, "write")
        );
        let mut labelled = false;
        for segment in segments(values) {
            let drawn = chart
                .draw_series(LineSeries::new(segment, colour.stroke_width(2)).point_size(2))
                .map_err(&err)?;
            if !labelled {
                labelled = true;
                drawn.label(label.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
            }
        }
    }
    legend(&mut chart, &err)?;
    root.present().map_err(&err)?;
    Ok(())
}

/// Draws the legend box of a chart that has labelled series, in its upper
/// right corner; the perf report's charts use it too.
pub(crate) fn legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    err: &impl Fn(DrawingAreaErrorKind<DB::ErrorType>) -> Error,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    legend_at(chart, SeriesLabelPosition::UpperRight, err)
}

/// Draws the legend box of a chart that has labelled series at `position`.
pub(crate) fn legend_at<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
    err: &impl Fn(DrawingAreaErrorKind<DB::ErrorType>) -> Error,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()
        .map_err(err)
}

/// Where a delay (ms) sits on the t-visibility chart's log axis: itself,
/// or `zero_at` for 0, which a log axis cannot show.
fn delay_x(delay_ms: f64, zero_at: f64) -> f64 {
    if delay_ms > 0.0 { delay_ms } else { zero_at }
}

/// The t-visibility chart: P(seen) against the delay after the commit, on
/// a log x axis where delay 0 is drawn a decade left of the smallest
/// non-zero delay and labelled `0`; each measured point (delays without
/// on-time reads have none) with its Wilson interval as an error bar,
/// joined by a line; and each `predicted` curve, named, of `(delay_ms, p)`
/// as a dashed line, with a legend telling them apart. The x ticks are the
/// measured delays themselves.
pub fn visibility_chart(
    title: &str,
    measured: &[VisibilityPoint],
    predicted: &[(&str, &[(f64, f64)])],
    path: &Path,
) -> Result<()> {
    let err = failed(path);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let delays = || {
        measured.iter().map(|p| p.delay_ms).chain(
            predicted
                .iter()
                .flat_map(|(_, curve)| curve.iter().map(|&(d, _)| d)),
        )
    };
    let smallest = delays().filter(|&d| d > 0.0).fold(f64::INFINITY, f64::min);
    let zero_at = if smallest.is_finite() {
        smallest / 10.0
    } else {
        0.001
    };
    let largest = delays()
        .map(|d| delay_x(d, zero_at))
        .fold(zero_at, f64::max);
    let x = (zero_at / 2.0..(largest * 2.0).max(zero_at * 10.0)).log_scale();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(15)
        .x_label_area_size(55)
        .y_label_area_size(60)
        .build_cartesian_2d(x, 0.0..1.0)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_labels(0)
        // A log axis still labels one key point: the ticks below are ours.
        .x_label_formatter(&|_| String::new())
        .disable_x_mesh()
        .x_desc("delay after the commit, ms (log scale)")
        .y_desc("P(a read of the slave sees the write)")
        .y_label_formatter(&|y| tick(*y))
        .draw()
        .map_err(&err)?;

    // The x ticks: one per measured delay, a grid line and its label;
    // a label too close to the one before it (delays crowded around a
    // step) is left out.
    let grid = RGBColor(220, 220, 220);
    let mut ticks: Vec<f64> = measured.iter().map(|p| p.delay_ms).collect();
    ticks.dedup();
    let mut last_label: Option<i32> = None;
    for &delay in &ticks {
        let x = delay_x(delay, zero_at);
        chart
            .draw_series(LineSeries::new([(x, 0.0), (x, 1.0)], grid.stroke_width(1)))
            .map_err(&err)?;
        let (px, py) = chart.backend_coord(&(x, 0.0));
        if last_label.is_some_and(|last| px - last < MIN_LABEL_GAP_PX) {
            continue;
        }
        last_label = Some(px);
        let label = if delay > 0.0 { tick(delay) } else { "0".into() };
        root.draw(&PathElement::new(
            vec![(px, py), (px, py + 5)],
            BLACK.stroke_width(1),
        ))
        .map_err(&err)?;
        let style = (FONT, 13)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(label, (px, py + 8), style))
            .map_err(&err)?;
    }

    let colour = PALETTE[0];
    let shown: Vec<&VisibilityPoint> = measured.iter().filter(|p| p.p_seen.is_some()).collect();
    let line: Vec<(f64, f64)> = shown
        .iter()
        .filter_map(|p| Some((delay_x(p.delay_ms, zero_at), p.p_seen?)))
        .collect();
    let reads: usize = shown.iter().map(|p| p.reads).sum();
    let drawn = chart
        .draw_series(LineSeries::new(line.clone(), colour.stroke_width(2)))
        .map_err(&err)?;
    if !predicted.is_empty() {
        drawn
            .label(format!("measured ({reads} reads, 95% Wilson intervals)"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    // The error bars, drawn by hand (plotters' ErrorBar is behind a
    // feature): a vertical line from low to high with caps 8 px wide.
    for point in &shown {
        let (Some(low), Some(high)) = (point.ci_low, point.ci_high) else {
            continue;
        };
        let x = delay_x(point.delay_ms, zero_at);
        let (px, top) = chart.backend_coord(&(x, high));
        let (_, bottom) = chart.backend_coord(&(x, low));
        for segment in [
            vec![(px, top), (px, bottom)],
            vec![(px - 4, top), (px + 4, top)],
            vec![(px - 4, bottom), (px + 4, bottom)],
        ] {
            root.draw(&PathElement::new(segment, colour.stroke_width(1)))
                .map_err(&err)?;
        }
    }
    chart
        .draw_series(
            line.iter()
                .map(|&point| Circle::new(point, 4, colour.filled())),
        )
        .map_err(&err)?;

    for (i, &(name, curve)) in predicted.iter().enumerate() {
        let colour = PALETTE[(i + 1) % PALETTE.len()];
        let curve: Vec<(f64, f64)> = curve
            .iter()
            .map(|&(d, p)| (delay_x(d, zero_at), p))
            .collect();
        chart
            .draw_series(DashedLineSeries::new(curve, 6, 4, colour.stroke_width(2)))
            .map_err(&err)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    if !predicted.is_empty() {
        legend_at(&mut chart, SeriesLabelPosition::LowerRight, &err)?;
    }
    root.present().map_err(&err)?;
    Ok(())
}

/// The empirical CDF of `values` as a step line: (value, fraction ≤ it).
fn cdf_points(values: &[f64]) -> Vec<(f64, f64)> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    let mut points = Vec::with_capacity(2 * sorted.len());
    for (i, v) in sorted.iter().enumerate() {
        points.push((*v, i as f64 / n));
        points.push((*v, (i + 1) as f64 / n));
    }
    points
}

/// The CDF chart of `runs`: latency on the left (log x axis), staleness
/// (two clocks, clamped at zero) on the right, a curve per run.
pub fn cdf_chart(runs: &[RunSummary], path: &Path) -> Result<()> {
    let err = failed(path);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let title = if runs.len() == 1 {
        format!("cumulative distribution, {}", run_label(&runs[0]))
    } else {
        "cumulative distribution, runs compared".to_string()
    };
    let root = root.titled(&title, (FONT, 22)).map_err(&err)?;
    let panels = root.split_evenly((1, 2));
    for (panel, measure) in panels
        .iter()
        .zip([Measure::Latency, Measure::StalenessSeed])
    {
        cdf_panel(panel, runs, measure, &err)?;
    }
    root.present().map_err(&err)?;
    Ok(())
}

fn cdf_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    runs: &[RunSummary],
    measure: Measure,
    err: &impl Fn(DrawingAreaErrorKind<io::Error>) -> Error,
) -> Result<()> {
    let curves: Vec<(String, Vec<f64>)> = runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let label = if runs.len() > 1 {
                format!("#{} {}", i + 1, run_label(run))
            } else {
                run_label(run)
            };
            (label, run.values(measure).into_iter().flatten().collect())
        })
        .collect();
    let values = || curves.iter().flat_map(|(_, v)| v.iter().copied());
    let positive = values().all(|v| v > 0.0) && values().next().is_some();
    if measure == Measure::Latency && positive {
        let (lo, hi) = values().fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        // A decade's margin either way would waste the panel: a fifth.
        let x = (lo / 1.25..hi * 1.25).log_scale();
        let mut chart = cdf_axes(area, measure, x, "milliseconds (log scale)", err)?;
        return cdf_curves(&mut chart, &curves, err);
    }
    let x = cdf_range(values());
    let mut chart = cdf_axes(area, measure, x, "milliseconds", err)?;
    cdf_curves(&mut chart, &curves, err)
}

/// A range for a CDF's linear x axis: the values' span with a margin on
/// both sides, so a curve at the smallest value (all zeros: a vertical
/// line) stands clear of the y axis.
fn cdf_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return -0.05..1.0;
    }
    let span = if hi > lo { hi - lo } else { hi.abs().max(1.0) };
    lo - span * 0.05..hi + span * 0.05
}

/// The axes and mesh of one CDF panel.
fn cdf_axes<'a, 'b, X>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    measure: Measure,
    x: X,
    x_desc: &str,
    err: &impl Fn(DrawingAreaErrorKind<io::Error>) -> Error,
) -> Result<ChartContext<'a, SVGBackend<'b>, Cartesian2d<X::CoordDescType, RangedCoordf64>>>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(measure.label(), (FONT, 18))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(x, 0.0..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("fraction of writes")
        .x_label_formatter(&|x| tick(*x))
        .y_label_formatter(&|y| tick(*y))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

/// A step line per run, and the legend.
fn cdf_curves<'a, 'b: 'a, X>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, RangedCoordf64>>,
    curves: &[(String, Vec<f64>)],
    err: &impl Fn(DrawingAreaErrorKind<io::Error>) -> Error,
) -> Result<()>
where
    X: Ranged<ValueType = f64>,
{
    for (i, (label, values)) in curves.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(cdf_points(values), colour.stroke_width(2)))
            .map_err(err)?
            .label(format!("{label} (n = {})", values.len()))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::tests::{assert_svg, write_run_dir};
    use crate::stats::{load, summarize};

    #[test]
    fn segments_break_at_gaps() {
        let values = [Some(1.0), Some(2.0), None, None, Some(5.0), None];
        assert_eq!(
            segments(&values),
            vec![vec![(0.0, 1.0), (1.0, 2.0)], vec![(4.0, 5.0)]]
        );
        assert!(segments(&[None, None]).is_empty());
    }

    #[test]
    fn the_cdf_is_a_step_line_to_one() {
        let points = cdf_points(&[3.0, 1.0]);
        assert_eq!(points, vec![(1.0, 0.0), (1.0, 0.5), (3.0, 0.5), (3.0, 1.0)]);
        assert!(cdf_points(&[]).is_empty());
    }

    #[test]
    fn ranges_include_zero_and_are_never_empty() {
        let r = value_range([2.0, 4.0].into_iter(), 0.5);
        assert_eq!(r, 0.0..6.0);
        let r = value_range([-1.0].into_iter(), 0.1);
        assert!(r.start < -1.0 && r.end > 0.0);
        let r = value_range(std::iter::empty(), 0.1);
        assert!(r.end > r.start);
    }

    #[test]
    fn charts_are_svg_with_titles_and_labels_even_without_data() {
        let dir = tempfile::tempdir().unwrap();
        write_run_dir(dir.path(), "async", 6, 0);
        std::fs::remove_file(dir.path().join(crate::run_dir::SLAVE_EVENTS)).unwrap();
        let run = summarize(&load(dir.path()).unwrap());
        let written = write_all(std::slice::from_ref(&run)).unwrap();
        assert_eq!(written.len(), 3);
        for path in &written {
            assert_svg(path);
        }
        let staleness = std::fs::read_to_string(dir.path().join(STALENESS_SVG)).unwrap();
        assert!(staleness.contains("staleness per write"));
        assert!(staleness.contains("milliseconds"));
        let latency = std::fs::read_to_string(dir.path().join(LATENCY_SVG)).unwrap();
        assert!(latency.contains("latency (6 of 6 writes)"));
    }

    /// The SVG's texts (titles, axis labels, ticks, legends), in order.
    fn texts(path: &Path) -> Vec<String> {
        let svg = std::fs::read_to_string(path).unwrap();
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                t.split_once('>')
                    .and_then(|(_, rest)| rest.split_once("</text>"))
            })
            .map(|(text, _)| text.trim().to_string())
            .collect()
    }

    #[test]
    fn ticks_have_no_trailing_zeros() {
        assert_eq!(tick(10.0), "10");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(-0.0001), "0");
        assert_eq!(tick(1.5), "1.5");
    }

    #[test]
    fn the_comparison_is_written_once_beside_the_runs() {
        let dir = tempfile::tempdir().unwrap();
        let (sync, asynchronous) = (dir.path().join("sync"), dir.path().join("async"));
        for (dir, mode) in [(&sync, "sync"), (&asynchronous, "async")] {
            std::fs::create_dir(dir).unwrap();
            write_run_dir(dir, mode, 6, 6);
        }
        let runs = [
            summarize(&load(&sync).unwrap()),
            summarize(&load(&asynchronous).unwrap()),
        ];
        let written = write_all(&runs).unwrap();
        let comparison = dir.path().join("cdf-sync-vs-async.svg");
        assert_eq!(written.last(), Some(&comparison));
        assert_eq!(written.len(), 7);
        let compared = texts(&comparison);
        assert_eq!(compared[0], "cumulative distribution, runs compared");
        assert!(
            compared.contains(&"milliseconds (log scale)".to_string()),
            "{compared:?}"
        );
        assert!(
            compared.iter().any(|t| t.starts_with("#2 async (n = ")),
            "{compared:?}"
        );
        // One run's own CDF, titled by its mode once ("sync", not "sync (sync)").
        let own = texts(&sync.join(CDF_SVG));
        assert_eq!(own[0], "cumulative distribution, sync");
        assert!(!own.iter().any(|t| t.contains("async")), "{own:?}");
        for path in &written {
            assert_svg(path);
            let ticks = texts(path);
            assert!(
                !ticks
                    .iter()
                    .any(|t| t.ends_with(".000") || t.ends_with(".0")),
                "{}: {ticks:?}",
                path.display()
            );
        }
    }

    #[test]
    fn the_visibility_chart_labels_zero_and_draws_a_predicted_curve_when_given() {
        use crate::run_dir::VisibilityRow;
        use crate::stats::visibility::points;
        let rows: Vec<VisibilityRow> = (0..30u64)
            .map(|write| {
                let delay_ns = [0, 100_000, 10_000_000][(write % 3) as usize];
                VisibilityRow {
                    write,
                    delay_ns,
                    offset_ns: delay_ns + 1_000,
                    read_ns: 50_000,
                    saw_write: delay_ns > 0 || write % 2 == 0,
                    late: false,
                }
            })
            .collect();
        let measured = points(&rows);
        let dir = tempfile::tempdir().unwrap();

        let alone = dir.path().join("alone.svg");
        visibility_chart("t-visibility, async", &measured, &[], &alone).unwrap();
        assert_svg(&alone);
        let labels = texts(&alone);
        assert_eq!(labels[0], "t-visibility, async");
        for tick in ["0", "0.1", "10"] {
            assert!(labels.contains(&tick.to_string()), "{tick}: {labels:?}");
        }
        assert!(!labels.iter().any(|t| t == "predicted"), "{labels:?}");

        let both = dir.path().join("both.svg");
        let predicted = [(0.0, 0.4), (0.1, 0.8), (1.0, 0.99), (10.0, 1.0)];
        visibility_chart(
            "t-visibility, async",
            &measured,
            &[("predicted", &predicted[..])],
            &both,
        )
        .unwrap();
        assert_svg(&both);
        let labels = texts(&both);
        assert!(labels.contains(&"predicted".to_string()), "{labels:?}");
        assert!(
            labels.iter().any(|t| t.starts_with("measured (30 reads")),
            "{labels:?}"
        );

        // Nothing but zero delays, or nothing at all, still draws.
        let zero = dir.path().join("zero.svg");
        visibility_chart("zero", &measured[..1], &[], &zero).unwrap();
        assert_svg(&zero);
        let empty = dir.path().join("empty.svg");
        visibility_chart("empty", &[], &[], &empty).unwrap();
        assert_svg(&empty);
    }

    #[test]
    fn write_all_draws_visibility_for_runs_that_read_at_delays() {
        use crate::run_dir::{VisibilityRow, save_visibility_rows};
        let dir = tempfile::tempdir().unwrap();
        write_run_dir(dir.path(), "async", 6, 6);
        let rows: Vec<VisibilityRow> = (0..6)
            .map(|write| VisibilityRow {
                write,
                delay_ns: write % 2 * 1_000_000,
                offset_ns: write % 2 * 1_000_000 + 500,
                read_ns: 40_000,
                saw_write: true,
                late: false,
            })
            .collect();
        save_visibility_rows(dir.path(), &rows).unwrap();
        let run = summarize(&load(dir.path()).unwrap());
        let written = write_all(std::slice::from_ref(&run)).unwrap();
        assert_eq!(written.len(), 4);
        assert_eq!(written[3], dir.path().join(VISIBILITY_SVG));
        assert_svg(&written[3]);
    }

    #[test]
    fn a_cdf_at_zero_stands_clear_of_the_y_axis() {
        let range = cdf_range([0.0, 0.0, 0.0].into_iter());
        assert!(range.start < 0.0 && range.end > 0.0, "{range:?}");
        let range = cdf_range([1.0, 3.0].into_iter());
        assert!(range.start < 1.0 && range.end > 3.0, "{range:?}");
    }
}
