//! What a node is: standalone, a master with its replicator, or a slave
//! with its replication state, as one [`Node`].
//!
//! One enum rather than a role beside two options that must agree with
//! it: code that needs the replicator or the slave's state matches the
//! variant, and a combination that cannot happen cannot be written.

use duokv_protocol::NodeRole;

use crate::replication::{Replicator, SlaveState};

/// The node's role, with the state that role runs on.
///
/// Set when the server starts and replaced by a role change (a switchover,
/// a promotion, a master stepping down: see [`roles`](super::roles)):
/// every reader asks [`Shared::node`](super::shared::Shared::node) for the
/// node when it needs it and keeps it no longer than its request.
#[derive(Debug)]
pub(crate) enum Node {
    /// Takes reads and writes, replicates nothing.
    Standalone,
    /// Takes writes and replicates them to its slave.
    Master(Replicator),
    /// Applies its master's stream; serves reads, refuses writes.
    Slave {
        /// Which stream from the master is current, and what to do with a
        /// master of another history, and what it can prove of its
        /// staleness (boxed: it is by far the largest variant).
        state: Box<SlaveState>,
        /// The master's client address, sent to clients that write here.
        master_addr: String,
    },
}

impl Node {
    /// The role as the wire says it (in handshake replies and `Info`).
    pub(crate) fn role(&self) -> NodeRole {
        match self {
            Node::Standalone => NodeRole::Standalone,
            Node::Master(_) => NodeRole::Master,
            Node::Slave { .. } => NodeRole::Slave,
        }
    }

    /// A master's replicator.
    pub(crate) fn replicator(&self) -> Option<&Replicator> {
        match self {
            Node::Master(replicator) => Some(replicator),
            Node::Standalone | Node::Slave { .. } => None,
        }
    }
}
