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
//! ("everything up to seq N is applied and durable").
//!
//! - [`master`]: the [`Replicator`] a master runs: the link, catch-up from
//!   the log, full resync by snapshot, and the wait for acks of sync mode.
//! - [`slave`]: what a slave does with the stream.
//!
//! **Sync mode**: a client's write is answered only once it is durable on
//! the master and the slave's ack covers it (or `--sync-timeout` passes:
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

pub mod master;
pub mod slave;

pub use master::{AckOutcome, MasterSettings, Replicator};

pub use slave::SlaveState;

/// A store op as the replication stream carries it.
fn to_wire(op: duokv_storage::Op) -> duokv_protocol::ReplicatedOp {
    match op {
        duokv_storage::Op::Put { key, value } => duokv_protocol::ReplicatedOp::Put { key, value },
        duokv_storage::Op::Delete { key } => duokv_protocol::ReplicatedOp::Delete { key },
    }
}

/// A streamed op as the store writes it.
fn from_wire(op: duokv_protocol::ReplicatedOp) -> duokv_storage::Op {
    match op {
        duokv_protocol::ReplicatedOp::Put { key, value } => duokv_storage::Op::Put { key, value },
        duokv_protocol::ReplicatedOp::Delete { key } => duokv_storage::Op::Delete { key },
    }
}

/// The handshake fields that tell a slave the master's history: its ID and
/// the ancestors it continues.
fn history_fields(history: &duokv_storage::History) -> (u64, Vec<duokv_protocol::HistoryAncestor>) {
    let ancestors = history
        .ancestors
        .iter()
        .map(|ancestor| duokv_protocol::HistoryAncestor {
            id: ancestor.id,
            last_seq: ancestor.last_seq,
        })
        .collect();
    (history.id, ancestors)
}

/// The master's history as its replication handshake gave it (an ID of 0
/// when it gave none).
pub fn master_history(fields: &duokv_protocol::HandshakeFields) -> duokv_storage::History {
    duokv_storage::History {
        id: fields.history_id.unwrap_or(0),
        ancestors: fields
            .history_ancestors
            .iter()
            .map(|ancestor| duokv_storage::Ancestor {
                id: ancestor.id,
                last_seq: ancestor.last_seq,
            })
            .collect(),
    }
}

/// A replication frame. Its request id carries the seq it is about (or 0):
/// receivers do not match on it, but it reads well in a capture.
fn frame(id: u64, message: duokv_protocol::Replication) -> duokv_protocol::Frame {
    duokv_protocol::Frame {
        request_id: id,
        message: duokv_protocol::Message::Replication(message),
    }
}

/// When a master forwards a write to its slave (`--forward`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Forward {
    /// As soon as it is in the master's log, while the master syncs it: the
    /// two syncs overlap, and a sync write costs about one `fdatasync` and
    /// two round trips. After a crash of the master's host the slave may
    /// have served a write the master lost (never acknowledged), which the
    /// resync then takes away.
    #[default]
    Written,
    /// Once it is durable on the master: the slave never holds a write the
    /// master could lose, and a sync write pays the two syncs one after the
    /// other.
    Durable,
}

impl std::str::FromStr for Forward {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "written" => Ok(Forward::Written),
            "durable" => Ok(Forward::Durable),
            _ => Err(format!("`{text}`: use written or durable")),
        }
    }
}

impl std::fmt::Display for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Forward::Written => "written",
            Forward::Durable => "durable",
        })
    }
}

/// How a master replicates its writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationMode {
    /// The client's reply waits for the slave's acknowledgement.
    Sync,
    /// The client's reply is sent once the master applied the write.
    Async,
}

impl std::str::FromStr for ReplicationMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "sync" => Ok(ReplicationMode::Sync),
            "async" => Ok(ReplicationMode::Async),
            _ => Err(format!("`{text}`: use sync or async")),
        }
    }
}

impl std::fmt::Display for ReplicationMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReplicationMode::Sync => "sync",
            ReplicationMode::Async => "async",
        })
    }
}
