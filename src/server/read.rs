//! Reads that carry a write token (`Read` with `after`, `PROTOCOL.md`
//! 5.2): answered once the token's write is visible on this node, after
//! waiting for it up to the reader's deadline, or refused with a code the
//! client can act on: `NotYetVisible` (with this node's visible seq: read
//! the master instead) or `UnknownHistory` (waiting cannot help).
//!
//! What "visible" means is [`visible_seq`]'s alone. Today it is what the
//! store has applied; a later step makes it "durable on the master", and
//! only that function changes.
//!
//! A waiting read sleeps on the slave's applied signal (see
//! [`SlaveState::wait_applied`]) in its connection's own thread: no lock
//! is held, no thread is started, nothing spins.

use std::time::{Duration, Instant};

use duokv_protocol::{ReadAfter, Response};
use duokv_storage::{Kinship, Store};

use super::node::Node;
use super::reply;
use super::shared::Shared;
use crate::replication::SlaveState;

/// The longest a read waits for its write, whatever it asks: the server's
/// `--idle-timeout` caps it too, so a waiting read never holds a
/// connection longer than an idle one may stay open.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60);

/// The newest sequence number a read on this node can be sure to see:
/// today, the last one the store applied (on a slave, the last batch of
/// the master's stream it applied).
pub(crate) fn visible_seq(store: &Store) -> u64 {
    store.last_seq()
}

/// The answer to a read of `key` after the write `after`.
pub(crate) fn answer(shared: &Shared, key: &[u8], after: ReadAfter) -> Response {
    let store = &shared.store;
    if let Some(refusal) = unknown_history(store, after) {
        return refusal;
    }
    let wait = Duration::from_millis(u64::from(after.wait_ms))
        .min(MAX_WAIT)
        .min(shared.config.idle_timeout);
    if let Node::Slave { state, .. } = &shared.node {
        wait_visible(shared, state, after, Instant::now() + wait);
        // A full resync to another history may have come meanwhile.
        if let Some(refusal) = unknown_history(store, after) {
            return refusal;
        }
    }
    // On a master (or standalone node) a write it acknowledged is visible
    // already: nothing there wakes a waiting read, so it does not wait.
    let visible = visible_seq(store);
    if visible < after.seq {
        return reply::not_yet_visible(visible, after, wait);
    }
    reply::value(store.get_with_seq(key))
}

/// Sleeps until the write `after` is visible, the deadline passes, or the
/// server stops.
fn wait_visible(shared: &Shared, state: &SlaveState, after: ReadAfter, deadline: Instant) {
    state.wait_applied(
        || visible_seq(&shared.store) >= after.seq || shared.shutdown.is_requested(),
        deadline,
    );
}

/// The refusal of a token whose write this node's log cannot hold: one of
/// a history that is neither the store's nor one of its ancestors, or of
/// an ancestor that ended before the write (lost in the master's crash).
fn unknown_history(store: &Store, after: ReadAfter) -> Option<Response> {
    let history = store.history();
    match history.kinship(after.history) {
        Kinship::Current => None,
        Kinship::Ancestor { last_seq } if after.seq <= last_seq => None,
        Kinship::Ancestor { last_seq } => Some(reply::unknown_history(
            after,
            history.id,
            &format!("its history ended at seq {last_seq}, before the write"),
        )),
        Kinship::Unrelated => Some(reply::unknown_history(
            after,
            history.id,
            "this replica does not continue that history",
        )),
    }
}
