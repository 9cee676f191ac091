//! Wall-clock timestamps: UNIX time in nanoseconds, as every duokv log and
//! receipt carries them.

use std::time::{SystemTime, UNIX_EPOCH};

/// This machine's wall clock now, in UNIX nanoseconds (0 before 1970).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
