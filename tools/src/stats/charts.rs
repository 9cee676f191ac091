//! The SVG charts of `duokv stats`, drawn with `plotters`' SVG backend.
//!
//! Numbers in a table hide how a run went; these show it:
//!
//! - `latency.svg` (per run): latency of each write over the run;
//! - `staleness.svg` (per run): the staleness measures of each write, one
//!   series each, and the slave's applied-to-visible gap;
//! - `cdf.svg`: the cumulative distribution of latency and of staleness
//!   (two clocks, as the assignment defines it), one curve per run given.
//!   The same comparison is written into *every* run directory given, so a
//!   directory holds a chart comparing it with the runs it was analysed
//!   with (re-running `duokv stats` on one directory alone redraws it with
//!   that run only).
//!
//! A write without a value (failed, or its data is missing) is a gap in the
//! per-write lines, never a point drawn at zero.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::compute::{Measure, RunSummary};
use super::report::{fixed3, run_label};
use crate::error::{Error, Result};

/// The name of the per-write latency chart.
pub const LATENCY_SVG: &str = "latency.svg";
/// The name of the per-write staleness chart.
pub const STALENESS_SVG: &str = "staleness.svg";
/// The name of the CDF chart.
pub const CDF_SVG: &str = "cdf.svg";

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
/// The font of titles and labels.
const FONT: &str = "sans-serif";

/// Writes `latency.svg` and `staleness.svg` into each run's directory and
/// `cdf.svg` (comparing all of `runs`) into each as well; returns the paths
/// written, in that order per run.
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
        cdf_chart(runs, &cdf)?;
        written.push(cdf);
    }
    Ok(written)
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
        .y_label_formatter(&|y| fixed3(*y))
        .draw()
        .map_err(&err)?;
    for (i, (measure, values)) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let present = values.iter().flatten().count();
        let label = format!("{} ({present} of {} writes)", measure.label(), values.len());
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

/// The CDF chart comparing `runs`: latency on the left, staleness (two
/// clocks, seed) on the right, a curve per run.
pub fn cdf_chart(runs: &[RunSummary], path: &Path) -> Result<()> {
    let err = failed(path);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let root = root
        .titled("cumulative distribution per run", (FONT, 22))
        .map_err(&err)?;
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
    let x = value_range(curves.iter().flat_map(|(_, v)| v.iter().copied()), 0.05);
    let mut chart = ChartBuilder::on(area)
        .caption(measure.label(), (FONT, 18))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(x, 0.0..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("milliseconds")
        .y_desc("fraction of writes")
        .x_label_formatter(&|x| fixed3(*x))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .draw()
        .map_err(err)?;
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
}
