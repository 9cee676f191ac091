//! What a slave can prove about how stale its data is, from its own clock
//! alone (`PROTOCOL.md` 7.9).
//!
//! The slave sends its master `Probe { id }` frames and keeps the instant
//! it sent each, taken **before** the frame leaves. The master answers
//! each with `Commit { seq: N, probe: id }`, reading its durable seq `N`
//! after the probe arrived. So at some moment after the probe was sent,
//! every write the master had made durable was at or below `N`; a fortiori
//! at the moment `t0` the probe was sent. Once the slave shows every write
//! up to `N`, its data holds everything the master had made durable at
//! `t0`: at local time `t` it is at most `t - t0` stale. Only the slave's
//! monotonic clock is read; the master's clock, and any offset between the
//! two, play no part. The price is one round trip: a probe answered `r`
//! after it was sent proves `r` at best.
//!
//! [`Freshness`] keeps the probes in flight, the answers whose `N` is not
//! yet shown, and `fresh_since`: the newest `t0` whose `N` is shown. A
//! slave that loses its master keeps `fresh_since` (it is still true), so
//! its bound grows with time and bounded reads are refused, as they must.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Probes in flight kept at most; older ones are forgotten (their answers
/// then prove nothing, which is safe).
const MAX_IN_FLIGHT: usize = 1024;

/// Answers kept at most while their seq is not yet shown (a delayed slave
/// holds a delay's worth of them). Past it, each two neighbours are merged
/// into the later one: its proof needs a later seq shown, so it is proven
/// later, never wrongly.
const MAX_PENDING: usize = 4096;

/// A slave's probes and what their answers prove.
#[derive(Debug, Default)]
pub(crate) struct Freshness {
    book: Mutex<Book>,
    /// Wakes the prober: a read wants a fresher proof, or the stream ends.
    turn: Condvar,
}

#[derive(Debug, Default)]
struct Book {
    next_id: u64,
    /// Probes sent and not yet answered: id and send instant, oldest first.
    in_flight: VecDeque<(u64, Instant)>,
    /// Answers whose seq is not yet shown: send instant and seq, oldest
    /// first (the master answers in order, so seqs never decrease).
    pending: VecDeque<(Instant, u64)>,
    /// The send instant of the newest probe whose answer is shown.
    fresh_since: Option<Instant>,
    /// The master's newest durable seq heard of (any `Commit`).
    master_durable: u64,
    /// A read asked for a probe before the next periodic one.
    wanted: bool,
    /// When the last probe was sent.
    last_sent: Option<Instant>,
    /// The prober of the current stream is to stop.
    stopping: bool,
}

impl Freshness {
    fn lock(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The send instant of the newest probe whose answer this slave shows:
    /// its data holds every write the master had made durable then.
    /// `None` until a probe is answered.
    pub(crate) fn fresh_since(&self) -> Option<Instant> {
        self.lock().fresh_since
    }

    /// The staleness the slave can prove now, if any.
    pub(crate) fn bound(&self) -> Option<Duration> {
        self.fresh_since().map(|since| since.elapsed())
    }

    /// The master's newest durable seq this slave has heard of.
    pub(crate) fn master_durable(&self) -> u64 {
        self.lock().master_durable
    }

    /// Probes sent and not yet answered.
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.lock().in_flight.len()
    }

    /// Asks the prober for a probe now.
    pub(crate) fn want_probe(&self) {
        let mut book = self.lock();
        if !book.wanted {
            book.wanted = true;
            self.turn.notify_all();
        }
    }

    /// Begins a stream's prober: clears what an earlier one left.
    pub(crate) fn start(&self) {
        let mut book = self.lock();
        book.stopping = false;
        book.in_flight.clear();
        book.pending.clear();
    }

    /// Ends the stream's prober.
    pub(crate) fn stop(&self) {
        self.lock().stopping = true;
        self.turn.notify_all();
    }

    /// Waits until a probe is due: `interval` after the last one, or at
    /// once when a read wants one (at most one per `min_gap`). Returns the
    /// id of the probe to send, its send instant recorded, or `None` when
    /// the prober is to stop.
    pub(crate) fn next_probe(&self, interval: Duration, min_gap: Duration) -> Option<u64> {
        let mut book = self.lock();
        loop {
            if book.stopping {
                return None;
            }
            let now = Instant::now();
            let since_last = book.last_sent.map_or(Duration::MAX, |at| now - at);
            if since_last >= interval || (book.wanted && since_last >= min_gap) {
                break;
            }
            let sleep = if book.wanted {
                min_gap - since_last
            } else {
                interval - since_last
            };
            book = self
                .turn
                .wait_timeout(book, sleep)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        book.wanted = false;
        book.next_id += 1;
        let id = book.next_id;
        let now = Instant::now();
        book.last_sent = Some(now);
        if book.in_flight.len() >= MAX_IN_FLIGHT {
            book.in_flight.pop_front();
        }
        book.in_flight.push_back((id, now));
        Some(id)
    }

    /// The master said it is durable through `seq`, answering `probe` (0
    /// for none); the slave shows writes up to `visible`. Returns whether
    /// `fresh_since` moved.
    pub(crate) fn on_commit(&self, seq: u64, probe: u64, visible: u64) -> bool {
        let mut book = self.lock();
        book.master_durable = book.master_durable.max(seq);
        if probe != 0 {
            // Answers come in order: earlier probes are answered or lost.
            while let Some(&(id, sent)) = book.in_flight.front()
                && id <= probe
            {
                book.in_flight.pop_front();
                if id == probe {
                    if book.pending.len() >= MAX_PENDING {
                        thin(&mut book.pending);
                    }
                    book.pending.push_back((sent, seq));
                }
            }
        }
        settle(&mut book, visible)
    }

    /// The slave now shows writes up to `visible`. Returns whether
    /// `fresh_since` moved.
    pub(crate) fn on_visible(&self, visible: u64) -> bool {
        settle(&mut self.lock(), visible)
    }

    /// The store's contents were replaced (a full resync): nothing proven
    /// before holds for them.
    pub(crate) fn forget(&self) {
        let mut book = self.lock();
        book.fresh_since = None;
        book.pending.clear();
    }
}

/// Merges each two neighbouring answers into the later one, halving the
/// list and keeping the newest.
fn thin(pending: &mut VecDeque<(Instant, u64)>) {
    let last = pending.len().saturating_sub(1);
    let kept = pending
        .iter()
        .enumerate()
        .filter(|&(i, _)| i % 2 == 1 || i == last)
        .map(|(_, &answer)| answer)
        .collect();
    *pending = kept;
}

/// Moves `fresh_since` to the newest answer whose seq is shown.
fn settle(book: &mut Book, visible: u64) -> bool {
    let mut moved = false;
    while let Some(&(sent, seq)) = book.pending.front()
        && seq <= visible
    {
        book.pending.pop_front();
        if book.fresh_since.is_none_or(|since| sent > since) {
            book.fresh_since = Some(sent);
            moved = true;
        }
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_proves_freshness_only_once_its_seq_is_shown() {
        let freshness = Freshness::default();
        freshness.start();
        let id = freshness
            .next_probe(Duration::ZERO, Duration::ZERO)
            .unwrap();
        assert_eq!(freshness.fresh_since(), None);
        assert!(!freshness.on_commit(10, id, 9));
        assert_eq!(freshness.fresh_since(), None);
        assert_eq!(freshness.master_durable(), 10);
        assert!(freshness.on_visible(10));
        assert!(freshness.fresh_since().is_some());
    }

    #[test]
    fn a_later_probe_supersedes_the_unanswered_ones_before_it() {
        let freshness = Freshness::default();
        freshness.start();
        let first = freshness
            .next_probe(Duration::ZERO, Duration::ZERO)
            .unwrap();
        let second = freshness
            .next_probe(Duration::ZERO, Duration::ZERO)
            .unwrap();
        assert_eq!(freshness.in_flight(), 2);
        freshness.on_commit(5, second, 5);
        assert_eq!(freshness.in_flight(), 0);
        let since = freshness.fresh_since().unwrap();
        // A late answer to the first probe proves nothing newer.
        freshness.on_commit(5, first, 5);
        assert_eq!(freshness.fresh_since(), Some(since));
    }

    #[test]
    fn a_commit_without_a_probe_proves_nothing() {
        let freshness = Freshness::default();
        freshness.start();
        assert!(!freshness.on_commit(100, 0, 100));
        assert_eq!(freshness.fresh_since(), None);
    }

    #[test]
    fn a_stopped_prober_sends_nothing() {
        let freshness = Freshness::default();
        freshness.start();
        freshness.stop();
        assert_eq!(freshness.next_probe(Duration::ZERO, Duration::ZERO), None);
    }

    #[test]
    fn forgetting_drops_the_proof() {
        let freshness = Freshness::default();
        freshness.start();
        let id = freshness
            .next_probe(Duration::ZERO, Duration::ZERO)
            .unwrap();
        freshness.on_commit(1, id, 1);
        assert!(freshness.fresh_since().is_some());
        freshness.forget();
        assert_eq!(freshness.bound(), None);
    }

    #[test]
    fn answers_held_back_are_bounded_and_prove_nothing_early() {
        let freshness = Freshness::default();
        freshness.start();
        let mut answered = Vec::new();
        for seq in 1..=(3 * MAX_PENDING as u64) {
            let id = freshness
                .next_probe(Duration::ZERO, Duration::ZERO)
                .unwrap();
            let sent = freshness.lock().in_flight.back().unwrap().1;
            freshness.on_commit(seq, id, 0);
            answered.push((sent, seq));
            assert!(freshness.lock().pending.len() <= MAX_PENDING);
        }
        // Shown up to each seq in turn, the proof is never newer than
        // that seq's own probe, and the last one is kept exactly.
        for &(sent, seq) in &answered {
            freshness.on_visible(seq);
            if let Some(since) = freshness.fresh_since() {
                assert!(since <= sent, "seq {seq} proved a later probe");
            }
        }
        assert_eq!(freshness.fresh_since(), Some(answered.last().unwrap().0));
    }
}
