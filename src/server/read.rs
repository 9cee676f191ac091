//! Reads, plain or under conditions (`PROTOCOL.md` 5.2), and the read
//! point a session keeps.
//!
//! - `after` (a write token): answered once the token's write is visible
//!   on this node, after waiting for it up to the reader's deadline, or
//!   refused with a code the client can act on: `NotYetVisible` (with this
//!   node's visible seq: read the master instead) or `UnknownHistory` (the
//!   node does not continue the token's history, even after the wait: a
//!   slave waits for a restarted master's new history too).
//! - `fresh` (a staleness bound): answered once this node can prove that
//!   its data is at most that old, or refused with `TooStale` and the bound
//!   it could prove. A master's (or standalone node's) data is the newest
//!   there is: bound 0. A slave proves its bound from its probes (see
//!   [`SlaveState::fresh_since`]); a read that needs a fresher proof asks
//!   for a probe at once rather than wait for the next one.
//!
//! "Visible" is [`visible_seq`]'s alone: on a slave, what the master has
//! said is durable there and the slave has applied (the commit index).
//!
//! A waiting read sleeps on the slave's signal (see
//! [`SlaveState::wait_applied`]) in its connection's own thread: no lock is
//! held, no thread is started, nothing spins.

use std::time::{Duration, Instant};

use duokv_protocol::{MaxStaleness, ReadAfter, ReadPoint, Response};
use duokv_storage::{Kinship, Store};

use super::node::Node;
use super::reply;
use super::shared::Shared;

/// The longest a read waits, whatever it asks: the server's
/// `--idle-timeout` caps it too, so a waiting read never holds a
/// connection longer than an idle one may stay open.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60);

/// The newest sequence number a read on this node can be sure to see: the
/// store's newest visible one. On a slave that is what the master has said
/// is durable and the slave has applied; nothing above it is ever shown.
pub(crate) fn visible_seq(store: &Store) -> u64 {
    store.last_seq()
}

/// A read of `key`, with the conditions it carries; with `tokens` (the
/// client's handshake asked for them) the value carries the read point.
pub(crate) fn answer(
    shared: &Shared,
    key: &[u8],
    after: Option<ReadAfter>,
    fresh: Option<MaxStaleness>,
    tokens: bool,
) -> Response {
    let waits = [after.map(|a| a.wait_ms), fresh.map(|f| f.wait_ms)];
    let wait_ms = waits.into_iter().flatten().max().unwrap_or(0);
    let wait = Duration::from_millis(u64::from(wait_ms))
        .min(MAX_WAIT)
        .min(shared.config.idle_timeout);
    let deadline = Instant::now() + wait;
    if let Some(after) = after
        && let Some(refusal) = wait_for_write(shared, after, deadline, wait)
    {
        return refusal;
    }
    let value = match fresh {
        None => shared.store.get_with_seq(key),
        Some(fresh) => match read_fresh(shared, key, fresh, deadline, wait) {
            Ok(found) => found,
            Err(refusal) => return refusal,
        },
    };
    let mut response = reply::value(value);
    if tokens && let Response::Value { at, .. } = &mut response {
        // Read after the value: the visible seq covers whatever it saw.
        *at = Some(ReadPoint {
            history: shared.store.history_id(),
            visible_seq: visible_seq(&shared.store),
        });
    }
    response
}

/// Waits until the write `after` is visible; `None` once it is, else the
/// refusal to answer with.
fn wait_for_write(
    shared: &Shared,
    after: ReadAfter,
    deadline: Instant,
    wait: Duration,
) -> Option<Response> {
    let store = &shared.store;
    if let Node::Slave { state, .. } = &*shared.node() {
        // A token of a history the slave does not know may be of its
        // master's next one (the master restarted, and the slave has not
        // reconnected yet): it waits for that as for the write itself.
        state.wait_applied(
            || {
                (unknown_history(store, after).is_none() && visible_seq(store) >= after.seq)
                    || shared.shutdown.is_requested()
            },
            deadline,
        );
    }
    // Also after the wait: a full resync to another history may have come.
    if let Some(refusal) = unknown_history(store, after) {
        return Some(refusal);
    }
    // On a master (or standalone node) a write it acknowledged is visible
    // already: nothing there wakes a waiting read, so it does not wait.
    let visible = visible_seq(store);
    (visible < after.seq).then(|| reply::not_yet_visible(visible, after, wait))
}

/// What a read of the store found: the seq and value, or nothing.
type Found = duokv_storage::Result<Option<(u64, Vec<u8>)>>;

/// The value of `key` once this node can prove its data at most
/// `fresh.max_staleness_us` old, or the `TooStale` refusal at the
/// deadline.
///
/// The proof is taken before the value and measured after it: the slave's
/// data held everything the master had made durable at `since` when the
/// read began, so it did when it was read, and the value is at most
/// `since.elapsed()` old when it is answered.
fn read_fresh(
    shared: &Shared,
    key: &[u8],
    fresh: MaxStaleness,
    deadline: Instant,
    wait: Duration,
) -> Result<Found, Response> {
    let node = shared.node();
    let Node::Slave { state, .. } = &*node else {
        return Ok(shared.store.get_with_seq(key));
    };
    let max = Duration::from_micros(u64::from(fresh.max_staleness_us));
    let fresh_enough = || {
        state
            .fresh_since()
            .is_some_and(|since| since.elapsed() <= max)
    };
    loop {
        if let Some(since) = state.fresh_since() {
            let found = shared.store.get_with_seq(key);
            if since.elapsed() <= max {
                return Ok(found);
            }
        }
        if Instant::now() >= deadline || shared.shutdown.is_requested() {
            let bound = state.fresh_since().map(|since| since.elapsed());
            return Err(reply::too_stale(bound, max, wait, state.connected()));
        }
        state.want_probe();
        state.wait_applied(
            || fresh_enough() || shared.shutdown.is_requested(),
            deadline,
        );
    }
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
