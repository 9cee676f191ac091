//! Master/slave replication.
//!
//! The master keeps **one persistent TCP connection** to the slave: it dials
//! the slave's client port, says it is the replication stream in the
//! handshake (with its history and the histories it continues), and the
//! slave answers with `Hello` carrying its last applied sequence number. The
//! master then sends every later write of its log, in sequence order, as
//! `Append` frames, each batch as soon as it is written and while the
//! master's own `fdatasync` runs; the slave applies them to its store with
//! the master's sequence numbers and acknowledges with cumulative `Ack`s
//! ("everything up to seq N is applied and durable"). It shows them to its
//! readers only once the master's `Commit` says they are durable there
//! too (the commit index), and proves how stale its data can be from the
//! answers to its `Probe`s (`PROTOCOL.md` 7.9).
//!
//! - [`master`]: the [`Replicator`] a master runs: the link, catch-up from
//!   the log, full resync by snapshot, and the wait for acks of sync mode.
//! - [`slave`]: what a slave does with the stream.
//! - `delay`: which writes a delayed slave (`--apply-delay`) may show
//!   yet (a leaf `slave` uses).
//! - `discarded`: saving the writes a full resync would discard before it
//!   runs (a leaf `slave` calls).
//! - `freshness`: what a slave can prove about how stale it is, from its
//!   probes and its own clock (a leaf).
//! - `mode`: [`ReplicationMode`] and [`Forward`], how a master is told to
//!   replicate.
//! - `wire`: what both sides put on the stream (the op conversions, the
//!   handshake's history, the replication frame). With `mode`, a leaf:
//!   `master` and `slave` import these two and nothing of each other, and
//!   this module only declares and re-exports, so no import goes round.
//!
//! **Sync mode**: a client's write is answered only once it is durable on
//! the master and the slave's ack covers it (in `sync-visible` mode, once
//! the slave's `Visible` does) (or `--sync-timeout` passes:
//! `ReplicaUnavailable`; the write is durable on the master and reaches the
//! slave when it is back). Writers share the link: their writes are
//! pipelined and one ack releases many. **Async mode**: a write is answered
//! once it is durable on the master; the replication thread forwards it in
//! the background (usually before the answer: it left with the batch).
//!
//! **Catch-up**: the log is the backlog. Writes made while the slave is away
//! are not queued in memory; when it reconnects, the master streams them
//! from its log (`records_since`). If compaction already dropped some, it
//! sends a full snapshot of every live key first (as Redis does a full
//! rather than a partial resync), then streams on.

mod delay;
mod discarded;
mod freshness;
pub mod master;
mod mode;
pub mod slave;
mod wire;

pub use master::{
    AckOutcome, Admission, HandoverError, LinkTotals, MasterIdentity, MasterSettings, Replaced,
    Replicator,
};
pub use mode::{Forward, ReplicationMode};
pub use slave::{SlaveSettings, SlaveState};
pub use wire::master_history;
