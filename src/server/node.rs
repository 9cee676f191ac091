//! What a node is: standalone, a master with its replicator, or a slave
//! with its replication state, as one [`Node`].
//!
//! One enum rather than a role beside two options that must agree with
//! it: code that needs the replicator or the slave's state matches the
//! variant, and a combination that cannot happen cannot be written.

use std::sync::Arc;

use duokv_protocol::NodeRole;
use duokv_storage::Store;

use super::config::{RoleConfig, ServerConfig};
use crate::event_log::EventSink;
use crate::replication::{Replicator, SlaveState};

/// The node's role, with the state that role runs on.
///
/// Set once when the server starts. The coming promotion of a slave and
/// switchover will replace it while the server runs: every reader asks
/// [`Shared`](super::shared::Shared) for the node when it needs it and
/// keeps no copy of the role, so the node can then move behind a lock (or
/// a swappable pointer) without changing what they do with it.
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
    /// The node `config.role` asks for. A master's replicator starts at
    /// once: it becomes `store`'s write observer and dials its slave.
    pub(crate) fn start(
        config: &ServerConfig,
        store: &Arc<Store>,
        events: Option<&EventSink>,
    ) -> crate::Result<Node> {
        Ok(match &config.role {
            RoleConfig::Standalone => Node::Standalone,
            RoleConfig::Master(settings) => Node::Master(Replicator::start(
                settings.clone(),
                config.auth_token.clone(),
                store.clone(),
                events.cloned(),
                config.listen.to_string(),
            )?),
            RoleConfig::Slave {
                master_addr,
                on_divergence,
                probe_interval,
            } => Node::Slave {
                state: Box::new(SlaveState::new(
                    master_addr,
                    *on_divergence,
                    *probe_interval,
                )),
                master_addr: master_addr.clone(),
            },
        })
    }

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
