//! A linearizability checker for the history of one key, after Wing and
//! Gong, with Lowe's memoisation: the fault suite records what concurrent
//! clients saw (when each operation was invoked, when it returned, what it
//! returned) and asks whether some order of the operations, each placed
//! between its invocation and its return, explains every result on a single
//! copy of the key.
//!
//! The key is a register that may be absent. An operation whose outcome is
//! unknown (it timed out, the connection broke) may have taken effect at any
//! moment after its invocation, or never: the checker may leave it out.
//!
//! It lives beside the fault suite that uses it (`tests/faults.rs`), not in
//! the product. Its first test, `a_completed_write_is_seen`, is the
//! example.

use std::collections::{BTreeSet, HashSet};

/// The value of the key: absent, or bytes.
pub type State = Option<Vec<u8>>;

/// An operation on the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set the value only if the key is absent.
    Create(Vec<u8>),
    /// Set the value only if the key is present.
    Update(Vec<u8>),
    /// Set the value.
    Put(Vec<u8>),
    /// Remove the key if present.
    Delete,
    /// Read the value.
    Read,
}

/// What an operation returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A write succeeded.
    Ok,
    /// A read returned this value.
    Value(State),
    /// The key was absent (update, delete).
    NotFound,
    /// The key was present (create).
    AlreadyExists,
    /// Unknown: the operation may or may not have taken effect.
    Unknown,
}

/// One operation as a client saw it. Times are on one clock shared by all
/// clients; an operation whose outcome is unknown never returned, whatever
/// `ret` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The operation.
    pub op: Op,
    /// What it returned.
    pub outcome: Outcome,
    /// When it was invoked.
    pub invoke: u64,
    /// When it returned.
    pub ret: u64,
}

impl Event {
    fn required(&self) -> bool {
        self.outcome != Outcome::Unknown
    }

    fn returned(&self) -> u64 {
        if self.required() { self.ret } else { u64::MAX }
    }

    /// The state after this event at a point where the state is `state`, or
    /// `None` if the event's outcome is impossible there.
    fn apply(&self, state: &State) -> Option<State> {
        let present = state.is_some();
        match (&self.op, &self.outcome) {
            (Op::Read, Outcome::Value(value)) => (value == state).then(|| state.clone()),
            (Op::Create(v), Outcome::Ok) if !present => Some(Some(v.clone())),
            (Op::Create(_), Outcome::AlreadyExists) if present => Some(state.clone()),
            (Op::Update(v), Outcome::Ok) if present => Some(Some(v.clone())),
            (Op::Update(_), Outcome::NotFound) if !present => Some(state.clone()),
            (Op::Put(v), Outcome::Ok) => Some(Some(v.clone())),
            (Op::Delete, Outcome::Ok) if present => Some(None),
            (Op::Delete, Outcome::NotFound) if !present => Some(state.clone()),
            // Taken effect with whatever result the state gave it.
            (Op::Create(v), Outcome::Unknown) => Some(if present {
                state.clone()
            } else {
                Some(v.clone())
            }),
            (Op::Update(v), Outcome::Unknown) => Some(if present { Some(v.clone()) } else { None }),
            (Op::Put(v), Outcome::Unknown) => Some(Some(v.clone())),
            (Op::Delete, Outcome::Unknown) => Some(None),
            _ => None,
        }
    }
}

/// One level of the depth-first search.
struct Frame {
    candidates: Vec<usize>,
    next: usize,
    /// The event linearized to reach this level, the state before it and
    /// the frontier before it.
    applied: Option<(usize, State, usize)>,
}

/// Whether `history` (of one key, starting from `initial`) is linearizable.
/// An unknown-outcome read is ignored; the error names how far the longest
/// explanation got.
///
/// The search looks only at a window: events are sorted by invocation, and
/// the next event to place must be invoked before the earliest return among
/// those not yet placed, so each step reads the unplaced events up to that
/// point only. A search state is remembered as the events not yet placed
/// below the furthest one placed, with the key's value: a history of tens of
/// thousands of operations with a handful of clients is checked in seconds.
pub fn check(history: &[Event], initial: State) -> Result<(), String> {
    let mut events: Vec<&Event> = history
        .iter()
        .filter(|e| !(e.op == Op::Read && e.outcome == Outcome::Unknown))
        .collect();
    events.sort_by_key(|e| e.invoke);
    let n = events.len();
    let mut open: BTreeSet<usize> = (0..n).collect();
    let mut frontier = 0;
    let mut required_left = events.iter().filter(|e| e.required()).count();
    let mut state = initial;
    let mut seen: HashSet<(usize, Vec<usize>, State)> = HashSet::new();
    let mut best = 0;
    let mut stack = vec![Frame {
        candidates: candidates(&events, &open),
        next: 0,
        applied: None,
    }];
    while required_left > 0 {
        let Some(top) = stack.last_mut() else {
            return Err(format!(
                "not linearizable: no order explains more than {best} of {n} operations"
            ));
        };
        if top.next < top.candidates.len() {
            let index = top.candidates[top.next];
            top.next += 1;
            let Some(after) = events[index].apply(&state) else {
                continue;
            };
            open.remove(&index);
            let new_frontier = frontier.max(index + 1);
            let holes: Vec<usize> = open.range(..new_frontier).copied().collect();
            if !seen.insert((new_frontier, holes, after.clone())) {
                open.insert(index);
                continue;
            }
            if events[index].required() {
                required_left -= 1;
            }
            let before = std::mem::replace(&mut state, after);
            let old_frontier = std::mem::replace(&mut frontier, new_frontier);
            best = best.max(stack.len());
            stack.push(Frame {
                candidates: candidates(&events, &open),
                next: 0,
                applied: Some((index, before, old_frontier)),
            });
        } else {
            let frame = stack.pop().expect("the top frame");
            if let Some((index, before, old_frontier)) = frame.applied {
                open.insert(index);
                if events[index].required() {
                    required_left += 1;
                }
                state = before;
                frontier = old_frontier;
            }
        }
    }
    Ok(())
}

/// The events that may come next: not yet placed, and invoked before the
/// earliest return among the events not yet placed. `events` is sorted by
/// invocation and every event returns after it is invoked, so the scan stops
/// at the first unplaced event invoked after the earliest return so far.
fn candidates(events: &[&Event], open: &BTreeSet<usize>) -> Vec<usize> {
    let mut earliest_return = u64::MAX;
    let mut window = Vec::new();
    for &i in open {
        if events[i].invoke > earliest_return {
            break;
        }
        earliest_return = earliest_return.min(events[i].returned());
        window.push(i);
    }
    window.retain(|&i| events[i].invoke <= earliest_return);
    window
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(op: Op, outcome: Outcome, invoke: u64, ret: u64) -> Event {
        Event {
            op,
            outcome,
            invoke,
            ret,
        }
    }

    fn v(text: &str) -> Vec<u8> {
        text.as_bytes().to_vec()
    }

    /// The module's example: a read that sees a completed write is
    /// linearizable; one that misses it is not.
    #[test]
    fn a_completed_write_is_seen() {
        let history = vec![
            Event {
                op: Op::Put(b"1".to_vec()),
                outcome: Outcome::Ok,
                invoke: 0,
                ret: 10,
            },
            Event {
                op: Op::Read,
                outcome: Outcome::Value(Some(b"1".to_vec())),
                invoke: 20,
                ret: 30,
            },
        ];
        assert!(check(&history, None).is_ok());

        // A read that misses a write completed before it began is not linearizable.
        let stale = vec![
            Event {
                op: Op::Put(b"1".to_vec()),
                outcome: Outcome::Ok,
                invoke: 0,
                ret: 10,
            },
            Event {
                op: Op::Read,
                outcome: Outcome::Value(None),
                invoke: 20,
                ret: 30,
            },
        ];
        assert!(check(&stale, None).is_err());
    }

    #[test]
    fn a_sequential_history_is_linearizable() {
        let h = vec![
            ev(Op::Create(v("a")), Outcome::Ok, 0, 1),
            ev(Op::Create(v("b")), Outcome::AlreadyExists, 2, 3),
            ev(Op::Update(v("c")), Outcome::Ok, 4, 5),
            ev(Op::Read, Outcome::Value(Some(v("c"))), 6, 7),
            ev(Op::Delete, Outcome::Ok, 8, 9),
            ev(Op::Delete, Outcome::NotFound, 10, 11),
            ev(Op::Update(v("d")), Outcome::NotFound, 12, 13),
            ev(Op::Read, Outcome::Value(None), 14, 15),
        ];
        assert_eq!(check(&h, None), Ok(()));
    }

    #[test]
    fn results_that_contradict_the_order_are_caught() {
        // A stale read after a completed write.
        let stale = vec![
            ev(Op::Put(v("a")), Outcome::Ok, 0, 1),
            ev(Op::Put(v("b")), Outcome::Ok, 2, 3),
            ev(Op::Read, Outcome::Value(Some(v("a"))), 4, 5),
        ];
        assert!(check(&stale, None).is_err());
        // Two successful creates with no delete between.
        let twice = vec![
            ev(Op::Create(v("a")), Outcome::Ok, 0, 1),
            ev(Op::Create(v("b")), Outcome::Ok, 2, 3),
        ];
        assert!(check(&twice, None).is_err());
        // NotFound for a key that is there.
        let missing = vec![
            ev(Op::Put(v("a")), Outcome::Ok, 0, 1),
            ev(Op::Delete, Outcome::NotFound, 2, 3),
        ];
        assert!(check(&missing, None).is_err());
        // A value nobody wrote.
        let invented = vec![ev(Op::Read, Outcome::Value(Some(v("z"))), 0, 1)];
        assert!(check(&invented, None).is_err());
    }

    #[test]
    fn overlapping_operations_may_take_either_order() {
        for seen in [None, Some(v("a"))] {
            let h = vec![
                ev(Op::Put(v("a")), Outcome::Ok, 0, 10),
                ev(Op::Read, Outcome::Value(seen.clone()), 5, 6),
            ];
            assert_eq!(check(&h, None), Ok(()), "read saw {seen:?}");
        }
        // But once the read saw the new value, a later read cannot see the
        // old one.
        let h = vec![
            ev(Op::Put(v("a")), Outcome::Ok, 0, 10),
            ev(Op::Read, Outcome::Value(Some(v("a"))), 1, 2),
            ev(Op::Read, Outcome::Value(None), 3, 4),
        ];
        assert!(check(&h, None).is_err());
    }

    #[test]
    fn an_unknown_write_may_or_may_not_have_happened() {
        for seen in [None, Some(v("a"))] {
            let h = vec![
                ev(Op::Put(v("a")), Outcome::Unknown, 0, 1),
                ev(Op::Read, Outcome::Value(seen.clone()), 5, 6),
            ];
            assert_eq!(check(&h, None), Ok(()), "read saw {seen:?}");
        }
        // It may take effect late, but not before it was invoked.
        let early = vec![
            ev(Op::Read, Outcome::Value(Some(v("a"))), 0, 1),
            ev(Op::Put(v("a")), Outcome::Unknown, 5, 6),
        ];
        assert!(check(&early, None).is_err());
        // An unknown write took effect after a later one completed.
        let late = vec![
            ev(Op::Put(v("a")), Outcome::Unknown, 0, 1),
            ev(Op::Put(v("b")), Outcome::Ok, 2, 3),
            ev(Op::Read, Outcome::Value(Some(v("a"))), 4, 5),
        ];
        assert_eq!(check(&late, None), Ok(()));
    }

    #[test]
    fn long_concurrent_histories_are_checked_quickly() {
        // Eight writers, each writing its own values, with reads of the last
        // completed value: linearizable, and 4,000 events deep.
        let mut h = Vec::new();
        let mut t = 0;
        for round in 0..500u64 {
            for w in 0..7u64 {
                h.push(ev(
                    Op::Put(format!("{round}-{w}").into_bytes()),
                    Outcome::Ok,
                    t,
                    t + 20,
                ));
                t += 1;
            }
            t += 30;
            h.push(ev(
                Op::Read,
                Outcome::Value(Some(format!("{round}-6").into_bytes())),
                t,
                t + 1,
            ));
            t += 2;
        }
        // The reads pin the order of the last writer only when its write
        // could be last: the writes of a round overlap, so any of them could
        // be; the checker must find the one order that works.
        assert_eq!(check(&h, None), Ok(()));
        // One stale read deep in the history is still caught.
        let last_round = format!("{}-6", 498).into_bytes();
        h.push(ev(
            Op::Read,
            Outcome::Value(Some(last_round)),
            t + 10,
            t + 11,
        ));
        assert!(
            check(&h, None).is_err(),
            "a read of the previous round's value after the last round"
        );
    }
}
