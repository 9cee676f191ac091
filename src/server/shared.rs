//! [`Shared`]: what every connection thread of a server shares.
//!
//! Its own module, and a leaf of the server's: the accept loop, the
//! connection handlers, the deferred replies and `info` all read it, and it
//! names none of them, so none of them is imported back.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use duokv_storage::Store;

use super::config::ServerConfig;
use super::metrics::Metrics;
use super::node::Node;
use super::shutdown::Shutdown;
use crate::event_log::EventSink;

/// What every connection thread shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    /// Standalone, master or slave, with what the role runs on; a role
    /// change replaces it (see [`roles`](super::roles)). A reader takes
    /// the current one with [`node`](Self::node) and keeps no copy of the
    /// role beyond its request. Declared before `store`: a master's
    /// replicator has a thread that holds the store and must stop first.
    node: RwLock<Arc<Node>>,
    /// The term this node leads (a master) or follows (a slave): 0 until
    /// a role change; only grows.
    term: AtomicU64,
    /// Held through a role change: one at a time.
    role_change: Mutex<()>,
    pub(crate) events: Option<EventSink>,
    pub(crate) store: Arc<Store>,
    pub(crate) shutdown: Shutdown,
    /// Connections being served.
    pub(crate) connections: AtomicUsize,
    /// Connections over the limit being told `Busy`.
    pub(crate) refusing: AtomicUsize,
    /// What is counted for the metrics as it happens.
    pub(crate) metrics: Metrics,
}

impl Shared {
    /// What is shared by the connections of a server of `config`, whose
    /// role starts as `node` in `term`, counting into `metrics`.
    pub(crate) fn new(
        config: ServerConfig,
        node: Node,
        term: u64,
        events: Option<EventSink>,
        store: Arc<Store>,
        shutdown: Shutdown,
        metrics: Metrics,
    ) -> Shared {
        Shared {
            config,
            node: RwLock::new(Arc::new(node)),
            term: AtomicU64::new(term),
            role_change: Mutex::new(()),
            events,
            store,
            shutdown,
            connections: AtomicUsize::new(0),
            refusing: AtomicUsize::new(0),
            metrics,
        }
    }

    /// The node's role now, and what it runs on.
    pub(crate) fn node(&self) -> Arc<Node> {
        self.node.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes `node` the node's role; returns the one it replaces. Call it
    /// under [`role_change`](Self::role_change).
    pub(crate) fn replace_node(&self, node: Node) -> Arc<Node> {
        let mut current = self.node.write().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *current, Arc::new(node))
    }

    /// The term this node leads or follows.
    pub(crate) fn term(&self) -> u64 {
        self.term.load(Ordering::SeqCst)
    }

    /// Moves to `term` (never back).
    pub(crate) fn raise_term(&self, term: u64) {
        self.term.fetch_max(term, Ordering::SeqCst);
    }

    /// Held for the whole of a role change.
    pub(crate) fn role_change(&self) -> MutexGuard<'_, ()> {
        self.role_change.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The count a connection is in: refused ones apart from served ones.
    pub(crate) fn counter(&self, refused: bool) -> &AtomicUsize {
        if refused {
            &self.refusing
        } else {
            &self.connections
        }
    }
}
