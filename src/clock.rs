//! Wall-clock timestamps: UNIX time in nanoseconds, as every duokv log and
//! receipt carries them.
//!
//! A process can be told to run its clock off by a fixed amount
//! ([`shift`]), which `duokv-server --clock-offset-ms` uses so that the
//! clock-offset estimation of `duokv bench` can be tested against a known
//! skew on one machine.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Added to every timestamp of this process; 0 unless [`shift`] was called.
static SHIFT_NS: AtomicI64 = AtomicI64::new(0);

/// This process's wall clock now, in UNIX nanoseconds (0 before 1970).
pub fn now_ns() -> u64 {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    real.saturating_add_signed(SHIFT_NS.load(Ordering::Relaxed))
}

/// Runs this process's clock `ns` nanoseconds off the system's, for tests
/// of clock-offset estimation.
pub fn shift(ns: i64) {
    SHIFT_NS.store(ns, Ordering::Relaxed);
}
