//! A checker of session guarantees: read-your-writes, monotonic reads and
//! bounded staleness, over what concurrent sessions saw while a master and
//! its slave were killed, stopped and cut off (`tests/session_faults.rs`).
//!
//! Each session's history is its operations in the order it made them,
//! each with its invocation and return instants on one clock (the tests run
//! on one machine: `duokv::clock::now_ns`, the clock the servers stamp
//! their event logs with). Beside the histories the checker takes the
//! master's **durable writes**: `(seq, key, applied_ns)` from the `applied`
//! rows of the master's event logs (every incarnation's) and from the
//! receipts of acknowledged writes, which carry the same stamp.
//!
//! # Premises
//!
//! - The master runs `--fsync always`: `applied` means durable, and a
//!   durable write survives a restart. Its `applied` stamp is taken after
//!   the write is durable and published to readers (`storage`'s
//!   `group_commit.rs`: sync, publish, then the completion stamps it), so
//!   `applied_ns` is an **upper bound** of the moment the write became
//!   durable, and of the moment it became visible on the master. (It is
//!   not a lower bound: the master's commit notice can leave before the
//!   stamp is taken, so a slave may show a write a little before its
//!   `applied_ns`. The checker never uses it as a lower bound.)
//! - Every written value is unique (a session's id and a counter), so a
//!   value read names the write that made it.
//! - A read returns only durable writes: a master publishes a write once
//!   its sync returned, a slave shows one once its master said it durable
//!   (`PROTOCOL.md` 7.9). A restarted master forks a new history that
//!   continues its durable log, and numbers its next writes from there; a
//!   seq it reuses belonged to a write that was never durable, so never
//!   read. Hence **a seq, once read, names one write in every later
//!   history**, and the checker compares seqs across histories. It checks
//!   that premise too (rule [`Rule::WriteIdentity`]): one `(key, seq)` is
//!   never read with two values, a value never with two seqs, an
//!   acknowledged write never with another seq than its receipt's.
//!
//! # The rules
//!
//! A read **observes** either `Value { seq, value }` or `Absent`. An
//! absent answer was read at some visible seq of the replica at or above
//! the seq of the token the read carried (`after`: the replica waited for
//! it before reading) and at or below the read point's `visible`, when the
//! answer carried one: the replica takes that after reading the key, so a
//! write published in between is counted in it though the read did not
//! see it (`src/server/read.rs`). The checker uses `visible` only as that
//! upper bound, `after` only as the lower one. An
//! acknowledged put is an observation `Value` of its own; an acknowledged
//! delete, `Deleted { seq }`. Observation `N` is **older** than `P` of the
//! same key when:
//!
//! | `P`               | `N = Value { s2 }`                    | `N = Absent { visible }`                        |
//! |-------------------|----------------------------------------|-------------------------------------------------|
//! | `Value { s1, v1 }`| `s2 < s1`, or `s2 == s1` with another value | `visible <= s1`, or no delete of the key with a seq in `(s1, visible]` (or of unknown outcome) explains it |
//! | `Deleted { s1 }`  | `s2 <= s1`                            | never                                           |
//! | `Absent` after `a1` | `s2 <= a1` (the key was absent at a point at or after `a1`, so a value older was deleted by then) | never |
//!
//! - **Read-your-writes** ([`Rule::ReadYourWrites`]): no read of a session
//!   observes something older than the session's last acknowledged write
//!   to that key.
//! - **Monotonic reads** ([`Rule::MonotonicReads`]): no read of a session
//!   observes something older than any earlier read of that key by the
//!   session. It is enough to compare with the highest value seq and the
//!   highest absent visible seq read so far (the table is monotone in both).
//! - **Bounded staleness** ([`Rule::BoundedStaleness`]): a read with bound
//!   `B`, invoked at `inv` and answered at `ret`, returns a value current
//!   on the master at some moment of `[inv - B, ret]`. From 7.9: the slave
//!   answered only if, with `t0` the send instant of a probe whose answer
//!   it shows, `t_after - t0 <= B`, where `t_after` is taken after reading
//!   the value, so after the request arrived, after `inv`. So
//!   `t0 >= inv - B`, and its data held every write durable on the master
//!   at `t0`. The checker flags, with `cut = inv - B - CLOCK_SLACK_NS`:
//!   - a write `w` to the key with `applied_ns(w) <= cut` (so durable by
//!     `t0`) and `seq(w)` above the value's seq; for an absent answer, a
//!     newest such `w` that no delete (acknowledged with a seq at or above
//!     `seq(w)` and at or below the visible seq, or of unknown outcome
//!     invoked before `ret`) explains;
//!   - a visible seq (when the answer carried it) below the seq of any
//!     write, of any key, with `applied_ns <= cut`.
//!
//!   The other end, that the returned write was durable by `ret`, is the
//!   slave's commit gate; `applied_ns` cannot check it (see above), so the
//!   checker checks the weaker "read after its write was invoked" for
//!   every read (rule [`Rule::WriteIdentity`]). A master's answer is held
//!   to a bound of 0: it publishes a write before stamping it `applied`.
//!
//! `CLOCK_SLACK_NS` covers the slave measuring `t_after - t0` on its
//! monotonic clock while `inv` and `applied_ns` are wall-clock readings:
//! NTP slews the two apart by at most 500 ppm, 25 us over a 50 ms bound.
//!
//! Refused reads (`NotYetVisible`, `TooStale`, `UnknownHistory`, a replica
//! that could not be reached) are never violations; they are counted.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

/// Slack for the slave's monotonic clock against the wall clock (see the
/// module's docs).
pub const CLOCK_SLACK_NS: u64 = 200_000;

/// Which replica answered, or refused, a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Replica {
    /// The master.
    Master,
    /// The slave.
    Slave,
}

/// Why a read was not answered with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// The session's write is not visible on the replica in time.
    NotYetVisible,
    /// The replica could not prove the staleness bound in time.
    TooStale,
    /// The replica does not continue the session token's history.
    UnknownHistory,
    /// The replica could not be reached, or did not answer in time.
    Unreachable,
}

impl Refusal {
    /// The refusal an error of a read stands for.
    pub fn of(error: &duokv::Error) -> Refusal {
        match error {
            duokv::Error::NotYetVisible { .. } => Refusal::NotYetVisible,
            duokv::Error::TooStale { .. } => Refusal::TooStale,
            duokv::Error::UnknownHistory { .. } => Refusal::UnknownHistory,
            _ => Refusal::Unreachable,
        }
    }
}

/// What a successful read observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A value, and the seq of the write that set it.
    Value {
        /// The write's seq.
        seq: u64,
        /// The value.
        value: Vec<u8>,
    },
    /// No value; with the replica's visible seq when the answer said.
    Absent {
        /// The replica's newest visible seq when it read the key.
        visible: Option<u64>,
    },
}

/// How a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Acknowledged, with its receipt's seq and `applied_ns`.
    Acked {
        /// The write's seq.
        seq: u64,
        /// When the master stamped it durable.
        applied_ns: u64,
    },
    /// Refused for certain (e.g. a delete of an absent key): no effect.
    Failed,
    /// Unknown (an error on the way): it may or may not have taken effect.
    Unknown,
}

/// One read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// Who answered, or (for a refusal) who refused.
    pub replica: Replica,
    /// The staleness bound the read asked for, if any.
    pub bound: Option<Duration>,
    /// The seq of the token the read carried as `after`, if any: the
    /// replica waited until it showed that seq before reading.
    pub after: Option<u64>,
    /// When the slave refused and the master answered instead: why.
    pub fell_back: Option<Refusal>,
    /// What it observed, or why it was refused.
    pub outcome: Result<Seen, Refusal>,
}

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A put (`Some(value)`) or a delete (`None`).
    Write {
        /// The value written; `None` for a delete.
        value: Option<Vec<u8>>,
        /// How it ended.
        outcome: WriteOutcome,
    },
    /// A read.
    Read(Read),
}

/// One operation of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The key.
    pub key: String,
    /// When it was invoked (UNIX ns).
    pub invoke_ns: u64,
    /// When it returned (UNIX ns).
    pub return_ns: u64,
    /// What it did.
    pub action: Action,
}

/// A write the master made durable: an `applied` row of its event log, or
/// an acknowledged write's receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durable {
    /// The write's seq.
    pub seq: u64,
    /// Its key.
    pub key: String,
    /// When the master stamped it durable (UNIX ns).
    pub applied_ns: u64,
}

/// The guarantee a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// A read observed something older than the session's own write.
    ReadYourWrites,
    /// A read observed something older than an earlier read.
    MonotonicReads,
    /// A read returned a value not current on the master within its bound.
    BoundedStaleness,
    /// A value, seq or key does not name one write (see the module docs).
    WriteIdentity,
}

/// One broken guarantee: the session, the index of its operation, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule broken.
    pub rule: Rule,
    /// The session's index.
    pub session: usize,
    /// The operation's index in the session's history.
    pub op: usize,
    /// What was seen against what was due.
    pub detail: String,
}

/// What the checker found, with the counts that show what was exercised.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Operations checked.
    pub ops: usize,
    /// Writes, and how many were acknowledged.
    pub writes: usize,
    /// Acknowledged writes.
    pub acked: usize,
    /// Reads answered, by the replica that answered.
    pub answered: BTreeMap<Replica, usize>,
    /// Reads answered by the master after the slave refused.
    pub fell_back: usize,
    /// Refusals, of a read or of the slave before a fallback, by kind.
    pub refusals: BTreeMap<Refusal, usize>,
    /// Reads with a bound the slave answered: the ones the staleness rule
    /// is about.
    pub bounded_on_slave: usize,
    /// Reads with a bound answered by anyone.
    pub bounded_answered: usize,
    /// Durable writes known (event logs and receipts).
    pub durable: usize,
    /// Every violation found.
    pub violations: Vec<Violation>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |replica| self.answered.get(&replica).copied().unwrap_or(0);
        let refusals: Vec<String> = self
            .refusals
            .iter()
            .map(|(kind, n)| format!("{kind:?} {n}"))
            .collect();
        write!(
            f,
            "{} ops ({} writes, {} acked; {} durable known), reads answered: master {} \
             (fell back {}), slave {}; bounded answered {} (slave {}); refusals: [{}]; \
             violations: {}",
            self.ops,
            self.writes,
            self.acked,
            self.durable,
            count(Replica::Master),
            self.fell_back,
            count(Replica::Slave),
            self.bounded_answered,
            self.bounded_on_slave,
            refusals.join(", "),
            self.violations.len()
        )
    }
}

/// An observation that later reads of a session must not go behind.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Floor {
    /// The key held `value`, set by write `seq`.
    Value { seq: u64, value: Vec<u8> },
    /// The key was deleted by write `seq` (an acknowledged delete).
    Deleted { seq: u64 },
    /// The key was absent at a visible seq of at least `at_least`.
    Absent { at_least: u64 },
}

/// What a session has established for one key.
#[derive(Debug, Default)]
struct KeyFloors {
    /// Its last acknowledged write.
    written: Option<Floor>,
    /// The highest value seq it read, with the value.
    read_value: Option<(u64, Vec<u8>)>,
    /// The highest seq at or after which it read the key absent.
    read_absent: Option<u64>,
}

/// Every delete of the histories, to explain absent reads.
#[derive(Debug, Default)]
struct Deletes {
    /// Acknowledged deletes' seqs, by key.
    acked: HashMap<String, Vec<u64>>,
    /// Invocation instants of deletes of unknown outcome, by key.
    unknown: HashMap<String, Vec<u64>>,
}

impl Deletes {
    fn of(sessions: &[Vec<Op>]) -> Deletes {
        let mut deletes = Deletes::default();
        for op in sessions.iter().flatten() {
            if let Action::Write {
                value: None,
                outcome,
            } = &op.action
            {
                match outcome {
                    WriteOutcome::Acked { seq, .. } => {
                        deletes.acked.entry(op.key.clone()).or_default().push(*seq)
                    }
                    WriteOutcome::Unknown => deletes
                        .unknown
                        .entry(op.key.clone())
                        .or_default()
                        .push(op.invoke_ns),
                    WriteOutcome::Failed => {}
                }
            }
        }
        deletes
    }

    /// Whether a delete of `key` can have made it absent after write
    /// `since` (exclusive when `strict`) and by visible seq `visible`, for
    /// a read that returned at `ret`.
    fn explain(&self, key: &str, since: u64, strict: bool, visible: Option<u64>, ret: u64) -> bool {
        let acked = self.acked.get(key).into_iter().flatten().any(|&seq| {
            (seq > since || (!strict && seq == since)) && visible.is_none_or(|v| seq <= v)
        });
        let unknown = self
            .unknown
            .get(key)
            .into_iter()
            .flatten()
            .any(|&invoked| invoked < ret);
        acked || unknown
    }
}

/// Why `seen` is older than `floor`, if it is (the table of the module's
/// docs).
fn older(floor: &Floor, seen: &Seen, key: &str, ret: u64, deletes: &Deletes) -> Option<String> {
    match (floor, seen) {
        (Floor::Value { seq: s1, value: v1 }, Seen::Value { seq: s2, value: v2 }) => {
            if s2 < s1 {
                Some(format!("seq {s2} is below {s1}"))
            } else if s2 == s1 && v2 != v1 {
                Some(format!(
                    "seq {s2} with value {:?}, not {:?}",
                    text(v2),
                    text(v1)
                ))
            } else {
                None
            }
        }
        (Floor::Value { seq: s1, .. }, Seen::Absent { visible }) => {
            if visible.is_some_and(|v| v <= *s1) {
                Some(format!(
                    "absent at visible seq {}, which includes the put {s1}",
                    visible.unwrap_or(0)
                ))
            } else if !deletes.explain(key, *s1, true, *visible, ret) {
                Some(format!(
                    "absent, but no delete after seq {s1} (visible {visible:?}) explains it"
                ))
            } else {
                None
            }
        }
        (Floor::Deleted { seq: s1 }, Seen::Value { seq: s2, .. }) => {
            (s2 <= s1).then(|| format!("value of seq {s2}, deleted at seq {s1}"))
        }
        (Floor::Absent { at_least: v1 }, Seen::Value { seq: s2, .. }) => (s2 <= v1).then(|| {
            format!("value of seq {s2}, but the key was absent at a visible seq of {v1} or more")
        }),
        (Floor::Deleted { .. } | Floor::Absent { .. }, Seen::Absent { .. }) => None,
    }
}

/// A value for messages.
fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

/// The master's durable writes, arranged to ask "what was durable by
/// instant `t`".
#[derive(Debug, Default)]
struct DurableIndex {
    /// By key: `(applied_ns, highest seq of the key applied by then)`,
    /// sorted by time.
    by_key: HashMap<String, Vec<(u64, u64)>>,
    /// Every key: `(applied_ns, highest seq applied by then)`.
    all: Vec<(u64, u64)>,
}

impl DurableIndex {
    fn new(durable: &BTreeMap<u64, Durable>) -> DurableIndex {
        let prefix_max = |mut rows: Vec<(u64, u64)>| {
            rows.sort_unstable();
            let mut max = 0;
            for row in &mut rows {
                max = max.max(row.1);
                row.1 = max;
            }
            rows
        };
        let mut by_key: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
        for write in durable.values() {
            by_key
                .entry(write.key.clone())
                .or_default()
                .push((write.applied_ns, write.seq));
        }
        DurableIndex {
            by_key: by_key
                .into_iter()
                .map(|(key, rows)| (key, prefix_max(rows)))
                .collect(),
            all: prefix_max(durable.values().map(|w| (w.applied_ns, w.seq)).collect()),
        }
    }

    /// The highest seq in `rows` applied at or before `cut`.
    fn newest(rows: &[(u64, u64)], cut: u64) -> Option<u64> {
        let n = rows.partition_point(|&(at, _)| at <= cut);
        n.checked_sub(1).map(|i| rows[i].1)
    }

    fn newest_of_key(&self, key: &str, cut: u64) -> Option<u64> {
        self.by_key
            .get(key)
            .and_then(|rows| DurableIndex::newest(rows, cut))
    }

    fn newest_of_all(&self, cut: u64) -> Option<u64> {
        DurableIndex::newest(&self.all, cut)
    }
}

/// Checks the histories of `sessions` (each in its session's order)
/// against the master's `durable` writes.
pub fn check(sessions: &[Vec<Op>], durable: &[Durable]) -> Report {
    let mut report = Report::default();
    let deletes = Deletes::of(sessions);

    // The writes, by value: which session and op wrote it.
    let mut writers: HashMap<&[u8], (usize, usize)> = HashMap::new();
    // Every (key, seq) named, with its value (None: a delete).
    let mut named: HashMap<(&str, u64), Option<&[u8]>> = HashMap::new();
    // The durable writes by seq, from the receipts and the event logs.
    let mut by_seq: BTreeMap<u64, Durable> = BTreeMap::new();
    for write in durable {
        add_durable(
            &mut report,
            &mut by_seq,
            write.clone(),
            usize::MAX,
            usize::MAX,
        );
    }
    for (s, history) in sessions.iter().enumerate() {
        for (i, op) in history.iter().enumerate() {
            let Action::Write { value, outcome } = &op.action else {
                continue;
            };
            if let Some(value) = value
                && writers.insert(value.as_slice(), (s, i)).is_some()
            {
                violate(
                    &mut report,
                    Rule::WriteIdentity,
                    s,
                    i,
                    format!("the value {:?} is written twice", text(value)),
                );
            }
            if let WriteOutcome::Acked { seq, applied_ns } = *outcome {
                named.insert((&op.key, seq), value.as_deref());
                let write = Durable {
                    seq,
                    key: op.key.clone(),
                    applied_ns,
                };
                add_durable(&mut report, &mut by_seq, write, s, i);
            }
        }
    }
    report.durable = by_seq.len();
    let index = DurableIndex::new(&by_seq);

    for (s, history) in sessions.iter().enumerate() {
        let mut floors: HashMap<&str, KeyFloors> = HashMap::new();
        for (i, op) in history.iter().enumerate() {
            report.ops += 1;
            let floor = floors.entry(&op.key).or_default();
            let read = match &op.action {
                Action::Write { value, outcome } => {
                    report.writes += 1;
                    if let WriteOutcome::Acked { seq, .. } = *outcome {
                        report.acked += 1;
                        floor.written = Some(match value {
                            Some(value) => Floor::Value {
                                seq,
                                value: value.clone(),
                            },
                            None => Floor::Deleted { seq },
                        });
                    }
                    continue;
                }
                Action::Read(read) => read,
            };
            if let Some(refusal) = read.fell_back {
                report.fell_back += 1;
                *report.refusals.entry(refusal).or_default() += 1;
            }
            let seen = match &read.outcome {
                Ok(seen) => seen,
                Err(refusal) => {
                    *report.refusals.entry(*refusal).or_default() += 1;
                    continue;
                }
            };
            *report.answered.entry(read.replica).or_default() += 1;
            if read.bound.is_some() {
                report.bounded_answered += 1;
                if read.replica == Replica::Slave {
                    report.bounded_on_slave += 1;
                }
            }
            let ret = op.return_ns;

            // Which write the value names.
            if let Seen::Value { seq, value } = seen {
                match writers.get(value.as_slice()) {
                    None => violate(
                        &mut report,
                        Rule::WriteIdentity,
                        s,
                        i,
                        format!("{}: {:?} was never written", op.key, text(value)),
                    ),
                    Some(&(ws, wi)) => {
                        let write = &sessions[ws][wi];
                        if write.key != op.key {
                            violate(
                                &mut report,
                                Rule::WriteIdentity,
                                s,
                                i,
                                format!(
                                    "{}: {:?} was written to {}",
                                    op.key,
                                    text(value),
                                    write.key
                                ),
                            );
                        }
                        if write.invoke_ns >= ret {
                            violate(
                                &mut report,
                                Rule::WriteIdentity,
                                s,
                                i,
                                format!(
                                    "{}: {:?} read {} ns before its write was invoked",
                                    op.key,
                                    text(value),
                                    write.invoke_ns - ret
                                ),
                            );
                        }
                    }
                }
                match named.insert((&op.key, *seq), Some(value)) {
                    Some(earlier) if earlier != Some(value.as_slice()) => violate(
                        &mut report,
                        Rule::WriteIdentity,
                        s,
                        i,
                        format!(
                            "{} seq {seq} read as {:?}, named {:?} before",
                            op.key,
                            text(value),
                            earlier.map(text)
                        ),
                    ),
                    _ => {}
                }
            }

            // Read-your-writes.
            if let Some(written) = &floor.written
                && let Some(why) = older(written, seen, &op.key, ret, &deletes)
            {
                violate(
                    &mut report,
                    Rule::ReadYourWrites,
                    s,
                    i,
                    format!("{} after the session's {written:?}: {why}", op.key),
                );
            }
            // Monotonic reads.
            let earlier = [
                floor
                    .read_value
                    .clone()
                    .map(|(seq, value)| Floor::Value { seq, value }),
                floor.read_absent.map(|at_least| Floor::Absent { at_least }),
            ];
            for earlier in earlier.iter().flatten() {
                if let Some(why) = older(earlier, seen, &op.key, ret, &deletes) {
                    violate(
                        &mut report,
                        Rule::MonotonicReads,
                        s,
                        i,
                        format!("{} after the session read {earlier:?}: {why}", op.key),
                    );
                }
            }
            match seen {
                Seen::Value { seq, value } => {
                    if floor.read_value.as_ref().is_none_or(|(max, _)| seq > max) {
                        floor.read_value = Some((*seq, value.clone()));
                    }
                }
                Seen::Absent { .. } => floor.read_absent = floor.read_absent.max(read.after),
            }

            // Bounded staleness; a master's answer is bound 0.
            let bound = match read.replica {
                Replica::Master => Some(Duration::ZERO),
                Replica::Slave => read.bound,
            };
            if let Some(bound) = bound {
                let bound_ns = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
                let cut = op
                    .invoke_ns
                    .saturating_sub(bound_ns)
                    .saturating_sub(CLOCK_SLACK_NS);
                if let Some(why) = stale(&index, &deletes, &op.key, seen, cut, ret) {
                    violate(
                        &mut report,
                        Rule::BoundedStaleness,
                        s,
                        i,
                        format!(
                            "{} on the {:?} with bound {bound:?}: {why}",
                            op.key, read.replica
                        ),
                    );
                }
            }
        }
    }
    report
}

/// Records a violation of `rule` by operation `op` of `session`.
fn violate(report: &mut Report, rule: Rule, session: usize, op: usize, detail: String) {
    report.violations.push(Violation {
        rule,
        session,
        op,
        detail,
    });
}

/// Adds one durable write to those known by seq; a seq durable for two
/// keys breaks write identity (`session` and `op` name who said so; both
/// `usize::MAX` for the event log).
fn add_durable(
    report: &mut Report,
    by_seq: &mut BTreeMap<u64, Durable>,
    write: Durable,
    session: usize,
    op: usize,
) {
    match by_seq.get_mut(&write.seq) {
        Some(known) if known.key != write.key => violate(
            report,
            Rule::WriteIdentity,
            session,
            op,
            format!(
                "seq {} is durable for key {} and for key {}",
                write.seq, known.key, write.key
            ),
        ),
        Some(known) => known.applied_ns = known.applied_ns.min(write.applied_ns),
        None => {
            by_seq.insert(write.seq, write);
        }
    }
}

/// Why `seen` is older than what the master had made durable by `cut`, if
/// it is.
fn stale(
    index: &DurableIndex,
    deletes: &Deletes,
    key: &str,
    seen: &Seen,
    cut: u64,
    ret: u64,
) -> Option<String> {
    if let Seen::Absent {
        visible: Some(visible),
    } = seen
        && let Some(newest) = index.newest_of_all(cut)
        && newest > *visible
    {
        return Some(format!(
            "visible seq {visible}, but seq {newest} was durable before the bound's start"
        ));
    }
    let newest = index.newest_of_key(key, cut)?;
    match seen {
        Seen::Value { seq, .. } if *seq < newest => Some(format!(
            "seq {seq}, but seq {newest} of the key was durable before the bound's start"
        )),
        Seen::Absent { visible } if !deletes.explain(key, newest, false, *visible, ret) => {
            Some(format!(
                "absent, but seq {newest} of the key was durable before the bound's start \
                 and no delete explains it"
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn put(key: &str, value: &str, at: u64, seq: u64) -> Op {
        Op {
            key: key.into(),
            invoke_ns: at,
            return_ns: at + MS,
            action: Action::Write {
                value: Some(value.into()),
                outcome: WriteOutcome::Acked {
                    seq,
                    applied_ns: at + MS / 2,
                },
            },
        }
    }

    fn delete(key: &str, at: u64, outcome: WriteOutcome) -> Op {
        Op {
            key: key.into(),
            invoke_ns: at,
            return_ns: at + MS,
            action: Action::Write {
                value: None,
                outcome,
            },
        }
    }

    fn read(key: &str, at: u64, replica: Replica, bound_ms: Option<u64>, seen: Seen) -> Op {
        Op {
            key: key.into(),
            invoke_ns: at,
            return_ns: at + MS,
            action: Action::Read(Read {
                replica,
                bound: bound_ms.map(Duration::from_millis),
                after: None,
                fell_back: None,
                outcome: Ok(seen),
            }),
        }
    }

    fn value(seq: u64, value: &str) -> Seen {
        Seen::Value {
            seq,
            value: value.into(),
        }
    }

    fn absent(visible: Option<u64>) -> Seen {
        Seen::Absent { visible }
    }

    fn rules(report: &Report) -> Vec<Rule> {
        report.violations.iter().map(|v| v.rule).collect()
    }

    /// The example: one session writes, reads it on the slave, then a
    /// newer write of another session, within a bound: all as it should be.
    #[test]
    fn a_correct_history_passes() {
        let a = vec![
            put("k", "a1", 0, 1),
            read("k", 10 * MS, Replica::Slave, None, value(1, "a1")),
            read("k", 30 * MS, Replica::Slave, Some(5), value(2, "b1")),
            read("k", 40 * MS, Replica::Master, None, value(2, "b1")),
        ];
        let b = vec![
            read("k", 15 * MS, Replica::Slave, Some(50), value(1, "a1")),
            put("k", "b1", 20 * MS, 2),
        ];
        let report = check(&[a, b], &[]);
        assert_eq!(report.violations, vec![], "{report}");
        assert_eq!(report.ops, 6);
        assert_eq!(report.acked, 2);
        assert_eq!(report.bounded_on_slave, 2);
        assert_eq!(report.answered[&Replica::Slave], 3);
    }

    #[test]
    fn reading_the_value_before_ones_own_write_breaks_read_your_writes() {
        let a = vec![
            put("k", "a1", 0, 1),
            put("k", "a2", 2 * MS, 2),
            read("k", 10 * MS, Replica::Slave, None, value(1, "a1")),
        ];
        assert_eq!(rules(&check(&[a], &[])), vec![Rule::ReadYourWrites]);
    }

    #[test]
    fn reading_absent_after_ones_own_put_breaks_read_your_writes_unless_deleted() {
        let a = vec![
            put("k", "a1", 0, 1),
            read("k", 10 * MS, Replica::Slave, None, absent(Some(1))),
            read("k", 20 * MS, Replica::Slave, None, absent(None)),
        ];
        assert_eq!(
            rules(&check(std::slice::from_ref(&a), &[])),
            vec![Rule::ReadYourWrites, Rule::ReadYourWrites]
        );
        // Another session's delete at seq 2 explains the second, not the
        // first (visible 1 includes the put).
        let b = vec![delete(
            "k",
            5 * MS,
            WriteOutcome::Acked {
                seq: 2,
                applied_ns: 5 * MS,
            },
        )];
        assert_eq!(rules(&check(&[a, b], &[])), vec![Rule::ReadYourWrites]);
    }

    #[test]
    fn a_value_after_ones_own_delete_must_be_newer() {
        let acked = WriteOutcome::Acked {
            seq: 2,
            applied_ns: 3 * MS,
        };
        let a = vec![
            put("k", "a1", 0, 1),
            delete("k", 2 * MS, acked),
            read("k", 10 * MS, Replica::Slave, None, value(1, "a1")),
            read("k", 12 * MS, Replica::Slave, None, absent(Some(2))),
        ];
        assert_eq!(rules(&check(&[a], &[])), vec![Rule::ReadYourWrites]);
    }

    #[test]
    fn a_read_going_back_breaks_monotonic_reads() {
        let a = vec![
            read("k", 10 * MS, Replica::Master, None, value(2, "b2")),
            read("k", 20 * MS, Replica::Slave, None, value(1, "b1")),
        ];
        let b = vec![put("k", "b1", 0, 1), put("k", "b2", 2 * MS, 2)];
        assert_eq!(rules(&check(&[a, b], &[])), vec![Rule::MonotonicReads]);
    }

    #[test]
    fn a_value_older_than_an_absent_read_breaks_monotonic_reads() {
        let acked = WriteOutcome::Acked {
            seq: 2,
            applied_ns: 3 * MS,
        };
        let mut absent_after_2 = read("k", 10 * MS, Replica::Slave, None, absent(Some(2)));
        let a = vec![
            absent_after_2.clone(),
            read("k", 20 * MS, Replica::Slave, None, value(1, "b1")),
        ];
        let b = vec![put("k", "b1", 0, 1), delete("k", 2 * MS, acked)];
        // The read point's visible seq is only an upper bound: the key may
        // have been read before the put, and seq 1 is no step back.
        assert_eq!(rules(&check(&[a, b.clone()], &[])), vec![]);
        // A read that waited for seq 2 read the key at 2 or later.
        if let Action::Read(read) = &mut absent_after_2.action {
            read.after = Some(2);
        }
        let a = vec![
            absent_after_2,
            read("k", 20 * MS, Replica::Slave, None, value(1, "b1")),
        ];
        assert_eq!(rules(&check(&[a, b], &[])), vec![Rule::MonotonicReads]);
    }

    #[test]
    fn a_value_read_a_bound_after_a_newer_write_was_durable_is_stale() {
        let b = vec![put("k", "b1", 0, 1), put("k", "b2", 10 * MS, 2)];
        // b2 is durable at 10.5 ms; a 5 ms read at 20 ms must show it.
        let fresh_enough = read("k", 14 * MS, Replica::Slave, Some(5), value(1, "b1"));
        let too_old = read("k", 20 * MS, Replica::Slave, Some(5), value(1, "b1"));
        let report = check(&[vec![fresh_enough], b.clone()], &[]);
        assert_eq!(report.violations, vec![], "{report}");
        let report = check(&[vec![too_old], b], &[]);
        assert_eq!(rules(&report), vec![Rule::BoundedStaleness], "{report}");
    }

    #[test]
    fn the_event_log_shows_writes_no_receipt_did() {
        // The second write's reply was lost (the master died), but the
        // master's event log says it was durable at 10 ms.
        let unknown = Op {
            action: Action::Write {
                value: Some("b2".into()),
                outcome: WriteOutcome::Unknown,
            },
            ..put("k", "b2", 9 * MS, 0)
        };
        let b = vec![put("k", "b1", 0, 1), unknown];
        let a = vec![read("k", 30 * MS, Replica::Slave, Some(5), value(1, "b1"))];
        let log = [Durable {
            seq: 2,
            key: "k".into(),
            applied_ns: 10 * MS,
        }];
        assert_eq!(rules(&check(&[a.clone(), b.clone()], &[])), vec![]);
        assert_eq!(rules(&check(&[a, b], &log)), vec![Rule::BoundedStaleness]);
    }

    #[test]
    fn a_visible_seq_behind_the_bound_is_stale_whatever_the_key() {
        let b = vec![put("other", "b1", 0, 1)];
        let a = vec![read("k", 20 * MS, Replica::Slave, Some(5), absent(Some(0)))];
        assert_eq!(rules(&check(&[a, b], &[])), vec![Rule::BoundedStaleness]);
    }

    #[test]
    fn a_master_answer_is_held_to_bound_zero() {
        let b = vec![put("k", "b1", 0, 1), put("k", "b2", 10 * MS, 2)];
        let a = vec![read("k", 11 * MS, Replica::Master, None, value(1, "b1"))];
        assert_eq!(rules(&check(&[a, b], &[])), vec![Rule::BoundedStaleness]);
    }

    #[test]
    fn refusals_are_counted_not_violations() {
        let refused = |at, replica, refusal| Op {
            key: "k".into(),
            invoke_ns: at,
            return_ns: at + MS,
            action: Action::Read(Read {
                replica,
                bound: Some(Duration::from_millis(5)),
                after: None,
                fell_back: None,
                outcome: Err(refusal),
            }),
        };
        let mut fell_back = read("k", 30 * MS, Replica::Master, None, value(1, "a1"));
        if let Action::Read(read) = &mut fell_back.action {
            read.fell_back = Some(Refusal::NotYetVisible);
        }
        let a = vec![
            put("k", "a1", 0, 1),
            refused(10 * MS, Replica::Slave, Refusal::TooStale),
            refused(20 * MS, Replica::Slave, Refusal::UnknownHistory),
            fell_back,
        ];
        let report = check(&[a], &[]);
        assert_eq!(report.violations, vec![]);
        assert_eq!(report.fell_back, 1);
        assert_eq!(report.refusals.values().sum::<usize>(), 3);
    }

    #[test]
    fn a_seq_naming_two_values_or_a_value_never_written_breaks_identity() {
        let b = vec![put("k", "b1", 0, 1)];
        let reused = vec![read("k", 10 * MS, Replica::Slave, None, value(1, "zz"))];
        let report = check(&[reused, b.clone()], &[]);
        // "zz" was never written, and seq 1 is b1's.
        assert_eq!(
            rules(&report),
            vec![Rule::WriteIdentity, Rule::WriteIdentity]
        );
        let early = vec![read("k", 0, Replica::Slave, None, value(1, "b1"))];
        let mut late = b;
        late[0].invoke_ns = 5 * MS;
        assert_eq!(
            rules(&check(&[early, late], &[])),
            vec![Rule::WriteIdentity]
        );
    }
}
