//! A read under conditions (`after` a write, or a staleness bound), asked
//! so that the client knows whether the replica had to wait.
//!
//! The server answers a conditional read with a value or a refusal, and
//! says nothing of whether it waited first. The bench's reader probe and
//! `duokv load` want to know, so they ask in two steps: first without a
//! wait (an answer means the condition held when the read arrived), then,
//! only if that was refused as not yet visible or too stale, again with
//! the read's wait. That is exact, and costs a read that had to wait one
//! extra round trip, which its measured time includes. A product-side
//! flag in the reply (or a counter in `info`) would let one ask do.

use std::time::{Duration, Instant};

use duokv::{Client, ReadWhen};

use crate::run_dir::ProbeOutcome;

/// How a conditional read ended, the value it got, and how long it took
/// from the first ask to the final answer.
#[derive(Debug)]
pub struct Asked {
    /// At once, after waiting, refused (and why) or failed.
    pub outcome: ProbeOutcome,
    /// The value read, when answered.
    pub value: Option<Vec<u8>>,
    /// The client's monotonic time from the first ask to the answer.
    pub elapsed: Duration,
    /// The error, when the read failed (not when it was refused).
    pub error: Option<duokv::Error>,
}

/// Reads `key` under `when`: first without a wait, then, if refused as not
/// yet visible or too stale and `when` allows a wait, with it.
pub fn read(client: &mut Client, key: &str, when: &ReadWhen) -> Asked {
    let started = Instant::now();
    let at_once = ReadWhen {
        wait: Duration::ZERO,
        ..*when
    };
    let first = client.read_when(key, &at_once);
    let (outcome, result) = match first {
        Ok(read) => (ProbeOutcome::AtOnce, Ok(read.value)),
        Err(e @ (duokv::Error::NotYetVisible { .. } | duokv::Error::TooStale { .. }))
            if when.wait.is_zero() =>
        {
            (refusal(&e), Err(e))
        }
        Err(duokv::Error::NotYetVisible { .. } | duokv::Error::TooStale { .. }) => {
            match client.read_when(key, when) {
                Ok(read) => (ProbeOutcome::Waited, Ok(read.value)),
                Err(e) => (refusal(&e), Err(e)),
            }
        }
        Err(e) => (refusal(&e), Err(e)),
    };
    let elapsed = started.elapsed();
    match result {
        Ok(value) => Asked {
            outcome,
            value,
            elapsed,
            error: None,
        },
        Err(e) => Asked {
            outcome,
            value: None,
            elapsed,
            error: (outcome == ProbeOutcome::Failed).then_some(e),
        },
    }
}

/// The outcome a failed conditional read stands for: a refusal by code,
/// anything else a failure.
pub fn refusal(error: &duokv::Error) -> ProbeOutcome {
    match error {
        duokv::Error::NotYetVisible { .. } => ProbeOutcome::NotYetVisible,
        duokv::Error::TooStale { .. } => ProbeOutcome::TooStale,
        duokv::Error::UnknownHistory { .. } => ProbeOutcome::UnknownHistory,
        _ => ProbeOutcome::Failed,
    }
}
