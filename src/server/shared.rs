//! [`Shared`]: what every connection thread of a server shares.
//!
//! Its own module, and a leaf of the server's: the accept loop, the
//! connection handlers, the deferred replies and `info` all read it, and it
//! names none of them, so none of them is imported back.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use duokv_storage::Store;

use super::config::ServerConfig;
use super::node::Node;
use super::shutdown::Shutdown;
use crate::event_log::EventSink;

/// What every connection thread shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    /// Standalone, master or slave, with what the role runs on. Declared
    /// before `store`: a master's replicator has a thread that holds the
    /// store and must stop first.
    pub(crate) node: Node,
    pub(crate) events: Option<EventSink>,
    pub(crate) store: Arc<Store>,
    pub(crate) shutdown: Shutdown,
    /// Connections being served.
    pub(crate) connections: AtomicUsize,
    /// Connections over the limit being told `Busy`.
    pub(crate) refusing: AtomicUsize,
}

impl Shared {
    /// The count a connection is in: refused ones apart from served ones.
    pub(crate) fn counter(&self, refused: bool) -> &AtomicUsize {
        if refused {
            &self.refusing
        } else {
            &self.connections
        }
    }
}
