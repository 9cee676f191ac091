//! t-visibility: "if I read the slave t after a write committed, how likely
//! is it that I see the write?" (Bailis et al., *Probabilistically Bounded
//! Staleness*), from the reads of `visibility.csv` (`duokv bench
//! --probe-read at:D1,D2,...`).
//!
//! Per delay t, of the `n` reads sent on time (a read marked `late` was
//! sent too long after its delay to say anything about it, and is counted
//! apart), `k` saw the write or a later one: `P(seen) = k / n`, with its
//! 95% Wilson score interval. Wilson's rather than the normal
//! approximation's `p ± z sqrt(p(1-p)/n)` because the interesting
//! probabilities sit at 0 and 1, where that one collapses to a width of
//! zero and can leave `[0, 1]`; Wilson's stays inside and keeps a width
//! (Brown, Cai and DasGupta, *Interval Estimation for a Binomial
//! Proportion*, 2001). `z` is the standard normal's 97.5% quantile, from
//! `statrs`.
//!
//! It lives apart from [`compute`](super::compute) because it reads its
//! own file and answers its own question; the chart is
//! [`visibility_chart`](super::charts::visibility_chart).

use std::collections::BTreeMap;

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

use crate::run_dir::VisibilityRow;

/// The confidence of the intervals.
pub const CONFIDENCE: f64 = 0.95;

/// What the reads at one delay after the commit found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VisibilityPoint {
    /// The delay after the commit, milliseconds.
    pub delay_ms: f64,
    /// Reads sent on time at this delay: the sample.
    pub reads: usize,
    /// Of those, the reads that saw the write (or a later one).
    pub saw: usize,
    /// `saw / reads`; `None` without reads.
    pub p_seen: Option<f64>,
    /// The lower end of the 95% Wilson score interval of `p_seen`.
    pub ci_low: Option<f64>,
    /// Its upper end.
    pub ci_high: Option<f64>,
    /// Reads sent too late for this delay, left out of the figures.
    pub late: usize,
}

/// The Wilson score interval of `saw` successes in `reads` trials at
/// `confidence` (e.g. 0.95); `None` without trials.
pub fn wilson(saw: usize, reads: usize, confidence: f64) -> Option<(f64, f64)> {
    if reads == 0 {
        return None;
    }
    let z = Normal::standard().inverse_cdf(1.0 - (1.0 - confidence) / 2.0);
    let (n, p) = (reads as f64, saw as f64 / reads as f64);
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = z / denominator * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // At k = 0 the lower end is 0 exactly, at k = n the upper end 1 (the
    // centre and the half width are then equal); rounding misses by an ulp.
    let low = if saw == 0 { 0.0 } else { centre - half };
    let high = if saw == reads { 1.0 } else { centre + half };
    Some((low.max(0.0), high.min(1.0)))
}

/// One point per delay found in `rows`, by increasing delay.
pub fn points(rows: &[VisibilityRow]) -> Vec<VisibilityPoint> {
    // Per delay: (on-time reads, of which saw, late reads).
    let mut by_delay: BTreeMap<u64, (usize, usize, usize)> = BTreeMap::new();
    for row in rows {
        let entry = by_delay.entry(row.delay_ns).or_default();
        if row.late {
            entry.2 += 1;
        } else {
            entry.0 += 1;
            entry.1 += usize::from(row.saw_write);
        }
    }
    by_delay
        .into_iter()
        .map(|(delay_ns, (reads, saw, late))| {
            let interval = wilson(saw, reads, CONFIDENCE);
            VisibilityPoint {
                delay_ms: delay_ns as f64 / 1e6,
                reads,
                saw,
                p_seen: (reads > 0).then(|| saw as f64 / reads as f64),
                ci_low: interval.map(|(low, _)| low),
                ci_high: interval.map(|(_, high)| high),
                late,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-5
    }

    /// A row at `delay_us`, seen or not, late or not.
    fn row(write: u64, delay_us: u64, saw_write: bool, late: bool) -> VisibilityRow {
        VisibilityRow {
            write,
            delay_ns: delay_us * 1_000,
            offset_ns: delay_us * 1_000 + if late { 1_000_000 } else { 3_000 },
            read_ns: 80_000,
            saw_write,
            late,
        }
    }

    #[test]
    fn wilson_of_hand_computed_cases() {
        // n = 10, k = 7: p = 0.7, z = 1.959964, z^2/n = 0.384146;
        // centre (0.7 + 0.192073) / 1.384146 = 0.644493,
        // half 1.415994 * sqrt(0.021 + 0.009604) = 0.247715.
        let (low, high) = wilson(7, 10, 0.95).unwrap();
        assert!(close(low, 0.39678) && close(high, 0.89221), "{low} {high}");
        // k = 0 of 20: from 0 exactly to z^2 / (n + z^2) = 0.161125.
        let (low, high) = wilson(0, 20, 0.95).unwrap();
        assert_eq!(low, 0.0);
        assert!(close(high, 0.161125), "{high}");
        // k = n = 20: the mirror image, up to 1 exactly.
        let (low, high) = wilson(20, 20, 0.95).unwrap();
        assert!(close(low, 0.838875), "{low}");
        assert_eq!(high, 1.0);
        // Nothing measured, nothing to say.
        assert_eq!(wilson(0, 0, 0.95), None);
        // A wider confidence, a wider interval.
        let (low99, high99) = wilson(7, 10, 0.99).unwrap();
        assert!(low99 < 0.39678 && high99 > 0.89221);
    }

    #[test]
    fn points_per_delay_leave_late_reads_out() {
        let mut rows = Vec::new();
        // 10 ms: 10 on time, 7 seen, and 2 late ones (one seen) left out.
        for i in 0..10 {
            rows.push(row(2 * i + 1, 10_000, i < 7, false));
        }
        rows.push(row(21, 10_000, true, true));
        rows.push(row(23, 10_000, false, true));
        // 0: 4 on time, none seen.
        for i in 0..4 {
            rows.push(row(2 * i, 0, false, false));
        }
        // 50 us: only late reads.
        rows.push(row(40, 50, true, true));
        let points = points(&rows);
        let delays: Vec<f64> = points.iter().map(|p| p.delay_ms).collect();
        assert_eq!(delays, [0.0, 0.05, 10.0]);

        let zero = &points[0];
        assert_eq!((zero.reads, zero.saw, zero.late), (4, 0, 0));
        assert_eq!(zero.p_seen, Some(0.0));
        assert_eq!(zero.ci_low, Some(0.0));

        let only_late = &points[1];
        assert_eq!((only_late.reads, only_late.saw, only_late.late), (0, 0, 1));
        assert_eq!(
            (only_late.p_seen, only_late.ci_low, only_late.ci_high),
            (None, None, None)
        );

        let ten = &points[2];
        assert_eq!((ten.reads, ten.saw, ten.late), (10, 7, 2));
        assert_eq!(ten.p_seen, Some(0.7));
        assert!(close(ten.ci_low.unwrap(), 0.39678), "{ten:?}");
        assert!(close(ten.ci_high.unwrap(), 0.89221), "{ten:?}");
        assert!(super::points(&[]).is_empty());
    }

    #[test]
    fn every_read_seen_is_one_with_an_interval_below_it() {
        let rows: Vec<VisibilityRow> = (0..20).map(|i| row(i, 1_000, true, false)).collect();
        let point = &points(&rows)[0];
        assert_eq!(point.p_seen, Some(1.0));
        assert_eq!(point.ci_high, Some(1.0));
        assert!(close(point.ci_low.unwrap(), 0.838875), "{point:?}");
    }
}
