//! What a client's request asks of the server, sorted the way the handler
//! dispatches it: a [`Command::Write`] (with the store op it makes) is
//! staged and answered by the thread that commits it; a read, a ping or
//! `Info` is answered at once by the connection's thread.
//!
//! A leaf module: it knows the request and the store's op, nothing of the
//! server.

use std::time::Duration;

use duokv_protocol::{MaxStaleness, ModeCode, ReadAfter, Request};
use duokv_storage::WriteOp;

/// A request, as the handler dispatches it.
#[derive(Debug)]
pub(crate) enum Command<'r> {
    /// Create, update, put or delete: the op to stage in the store.
    Write(WriteOp<'r>),
    /// Read the value of a key.
    Read(&'r [u8]),
    /// Read the value of a key under conditions: once a write is visible
    /// (`after`), once the data is provably fresh enough (`fresh`).
    ReadWhen {
        /// The key.
        key: &'r [u8],
        /// The write that must be visible first.
        after: Option<ReadAfter>,
        /// The staleness the data may have at most.
        fresh: Option<MaxStaleness>,
    },
    /// Answer with the times the ping was received and answered.
    Ping,
    /// A planned switchover, asked of a master.
    Failover {
        /// How long the master waits for its slave.
        timeout: Duration,
    },
    /// A promotion, asked of a slave.
    Promote {
        /// The replica the new master replicates to; empty for the old
        /// master.
        replica: &'r str,
        /// The new master's replication.
        mode: ModeCode,
        /// Even while the master is connected.
        force: bool,
    },
    /// Answer with the server's facts.
    Info,
}

impl<'r> Command<'r> {
    /// What `request` asks for; borrows its key and value.
    pub(crate) fn of(request: &'r Request) -> Self {
        match request {
            Request::Create { key, value } => Command::Write(WriteOp::Create { key, value }),
            Request::Update { key, value } => Command::Write(WriteOp::Update { key, value }),
            Request::Put { key, value } => Command::Write(WriteOp::Put { key, value }),
            Request::Delete { key } => Command::Write(WriteOp::Delete { key }),
            Request::Read {
                key,
                after: None,
                fresh: None,
            } => Command::Read(key),
            Request::Read { key, after, fresh } => Command::ReadWhen {
                key,
                after: *after,
                fresh: *fresh,
            },
            Request::Ping => Command::Ping,
            Request::Failover { timeout_ms } => Command::Failover {
                timeout: Duration::from_millis(u64::from(*timeout_ms)),
            },
            Request::Promote {
                replica,
                mode,
                force,
            } => Command::Promote {
                replica,
                mode: *mode,
                force: *force,
            },
            Request::Info => Command::Info,
        }
    }
}
