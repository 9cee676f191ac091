//! The schedule of a delayed slave (`--apply-delay`): which writes have
//! waited long enough to be shown.
//!
//! A delayed slave applies, syncs and acknowledges each batch at once, but
//! shows it to readers only once the delay has passed since it arrived
//! (MySQL's `SOURCE_DELAY`, PostgreSQL's `recovery_min_apply_delay`). The
//! [`DelaySchedule`] remembers, per batch, its last seq and the instant it
//! may be shown; [`DelaySchedule::ripen`] says how far the writes whose
//! time has come reach. It is a leaf: the slave's applier and its timer
//! thread share one under their lock.
//!
//! Memory is bounded: past [`MAX_PENDING`] batches, each two neighbours
//! are merged into the later one (its seq, its instant). That can only
//! show a write later than its delay, never earlier; a slave that holds a
//! day of writes at 50,000 batches a second keeps 4,096 entries and shows
//! each within 1/2,048 of the delay of its due time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The most batches remembered before neighbours are merged.
pub const MAX_PENDING: usize = 4096;

/// The batches a delayed slave holds, oldest first.
#[derive(Debug)]
pub struct DelaySchedule {
    delay: Duration,
    /// `(last seq of the batch, instant it may be shown)`, seqs and
    /// instants ascending.
    pending: VecDeque<(u64, Instant)>,
    /// The newest seq whose instant has passed.
    ripe: u64,
}

impl DelaySchedule {
    /// An empty schedule whose writes wait `delay`, with every write up to
    /// `ripe` already free to be shown.
    pub fn new(delay: Duration, ripe: u64) -> DelaySchedule {
        DelaySchedule {
            delay,
            pending: VecDeque::new(),
            ripe,
        }
    }

    /// Writes up to `seq` arrived at `now`: they may be shown from
    /// `now + delay` on. A seq not above the newest one scheduled (or
    /// ripe) changes nothing.
    pub fn arrived(&mut self, seq: u64, now: Instant) {
        let newest = self.pending.back().map_or(self.ripe, |&(seq, _)| seq);
        if seq <= newest {
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.thin();
        }
        self.pending.push_back((seq, now + self.delay));
    }

    /// Merges each two neighbours into the later one, halving the list.
    fn thin(&mut self) {
        let kept: VecDeque<(u64, Instant)> = self
            .pending
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == 1 || *i + 1 == self.pending.len())
            .map(|(_, entry)| *entry)
            .collect();
        self.pending = kept;
    }

    /// The newest seq whose instant has come by `now` (everything
    /// scheduled before it too).
    pub fn ripen(&mut self, now: Instant) -> u64 {
        while let Some(&(seq, due)) = self.pending.front()
            && due <= now
        {
            self.pending.pop_front();
            self.ripe = self.ripe.max(seq);
        }
        self.ripe
    }

    /// When the next scheduled write may be shown; `None` if none waits.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.front().map(|&(_, due)| due)
    }

    /// Frees every write up to `seq` at once (a handover, a full resync
    /// that replaced the store): the delay no longer applies to them.
    pub fn release_through(&mut self, seq: u64) {
        while let Some(&(pending, _)) = self.pending.front()
            && pending <= seq
        {
            self.pending.pop_front();
        }
        self.ripe = self.ripe.max(seq);
    }

    /// How many batches wait.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: Duration = Duration::from_millis(250);

    #[test]
    fn a_write_ripens_exactly_at_its_delay() {
        let t0 = Instant::now();
        let mut schedule = DelaySchedule::new(DELAY, 0);
        schedule.arrived(3, t0);
        schedule.arrived(5, t0 + Duration::from_millis(100));
        assert_eq!(schedule.next_due(), Some(t0 + DELAY));
        assert_eq!(schedule.ripen(t0 + DELAY - Duration::from_nanos(1)), 0);
        assert_eq!(schedule.ripen(t0 + DELAY), 3);
        assert_eq!(schedule.ripen(t0 + Duration::from_millis(349)), 3);
        assert_eq!(schedule.ripen(t0 + Duration::from_millis(350)), 5);
        assert_eq!(schedule.next_due(), None);
        assert_eq!(schedule.waiting(), 0);
    }

    #[test]
    fn old_or_repeated_seqs_are_not_scheduled_again() {
        let t0 = Instant::now();
        let mut schedule = DelaySchedule::new(DELAY, 10);
        schedule.arrived(7, t0);
        schedule.arrived(10, t0);
        assert_eq!(schedule.waiting(), 0);
        schedule.arrived(12, t0);
        schedule.arrived(12, t0 + Duration::from_millis(1));
        assert_eq!(schedule.waiting(), 1);
        assert_eq!(schedule.ripen(t0), 10, "the ripe mark stays where it was");
    }

    #[test]
    fn release_frees_writes_before_their_time() {
        let t0 = Instant::now();
        let mut schedule = DelaySchedule::new(DELAY, 0);
        for seq in 1..=4 {
            schedule.arrived(seq, t0);
        }
        schedule.release_through(3);
        assert_eq!(schedule.ripen(t0), 3);
        assert_eq!(schedule.waiting(), 1);
        assert_eq!(schedule.ripen(t0 + DELAY), 4);
    }

    #[test]
    fn a_full_schedule_shows_writes_late_never_early() {
        let t0 = Instant::now();
        let mut schedule = DelaySchedule::new(DELAY, 0);
        let arrivals: Vec<(u64, Instant)> = (1..=3 * MAX_PENDING as u64)
            .map(|seq| (seq, t0 + Duration::from_micros(seq)))
            .collect();
        for &(seq, at) in &arrivals {
            schedule.arrived(seq, at);
            assert!(schedule.waiting() <= MAX_PENDING);
        }
        // At each arrival's own due instant, nothing later than it is
        // ripe (never early), and the last write is kept exactly.
        let mut last_ripe = 0;
        for &(seq, at) in &arrivals {
            let ripe = schedule.ripen(at + DELAY);
            assert!(ripe <= seq, "seq {ripe} shown before its time (at {seq}'s)");
            assert!(ripe >= last_ripe);
            last_ripe = ripe;
        }
        assert_eq!(last_ripe, 3 * MAX_PENDING as u64);
    }
}
