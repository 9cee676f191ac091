//! Every reply the server sends a client, built in one place: the answer
//! to each request, the error replies with their codes, and the timestamp
//! a reply gets just before it leaves.
//!
//! A leaf module: the connection handler and the deferred replies (which
//! answer writes from the thread that commits them) both take their
//! replies from here, and it imports neither.

use std::time::Duration;

use duokv_protocol::{ErrorCode, Frame, FrameError, ReadAfter, Response, WriteReceipt};
use duokv_storage as storage;
use log::warn;

use crate::clock::now_ns;
use crate::replication::{Admission, MasterSettings};

/// The answer to a read: the value and the seq of the write that made it,
/// or no value (and seq 0) for a key that is not there.
pub(crate) fn value(found: storage::Result<Option<(u64, Vec<u8>)>>) -> Response {
    match found {
        Ok(Some((seq, value))) => Response::Value {
            value: Some(value),
            seq,
            at: None,
        },
        Ok(None) => Response::Value {
            value: None,
            seq: 0,
            at: None,
        },
        Err(e) => storage_error(&e),
    }
}

/// The answer to a ping received at `received_ns`; [`stamped`] sets the
/// time it is sent.
pub(crate) fn pong(received_ns: u64) -> Response {
    Response::Pong {
        received_ns,
        sent_ns: 0,
    }
}

/// The answer to `Info`: the server's facts, by name.
pub(crate) fn info(facts: Vec<(String, String)>) -> Response {
    Response::Info(facts)
}

/// The answer to a write: its receipt.
pub(crate) fn written(receipt: WriteReceipt) -> Response {
    Response::Written(receipt)
}

/// Sets the last timestamp of a reply just before it is sent.
pub(crate) fn stamped(mut response: Response) -> Response {
    match &mut response {
        Response::Written(receipt) => receipt.replied_ns = now_ns(),
        Response::Pong { sent_ns, .. } => *sent_ns = now_ns(),
        _ => {}
    }
    response
}

/// The answer to a write a master cannot take now: it is starting (and
/// has not yet heard whether it was replaced), handing its role over, or
/// stepping down. Retryable; a `NotMaster` follows once the new master is
/// known.
pub(crate) fn switching_over(admission: Admission) -> Response {
    let why = match admission {
        Admission::Starting => {
            "this master is starting and has not heard from its slave's side yet"
        }
        Admission::Fenced => "this master is handing its role over to its slave",
        Admission::Replaced | Admission::Open => "this master was replaced and is stepping down",
    };
    Response::error(
        ErrorCode::SwitchingOver,
        format!("{why}; retry in a moment (a NotMaster names the new master once it is known)"),
    )
}

/// The answer to a write sent to a slave: where the master is.
pub(crate) fn not_master(master_addr: &str) -> Response {
    Response::error(
        ErrorCode::NotMaster {
            master: master_addr.to_string(),
        },
        format!("this replica is a slave; send writes to the master at {master_addr}"),
    )
}

/// The answer to a read whose `after` write is not visible here within
/// `waited`: this node's visible seq, so the client can read the master.
pub(crate) fn not_yet_visible(visible_seq: u64, after: ReadAfter, waited: Duration) -> Response {
    Response::error(
        ErrorCode::NotYetVisible { visible_seq },
        format!(
            "write {:016x}:{} is not visible on this replica after {waited:?}: it is at seq \
             {visible_seq}; read the master, or retry",
            after.history, after.seq
        ),
    )
}

/// The answer to a read whose staleness bound `max` could not be proven
/// within `waited`: the bound this node could prove, if any, and why.
pub(crate) fn too_stale(
    bound: Option<Duration>,
    max: Duration,
    waited: Duration,
    connected: bool,
) -> Response {
    let bound_us = bound.map_or(u64::MAX, |b| {
        u64::try_from(b.as_micros()).unwrap_or(u64::MAX)
    });
    let proven = match bound {
        Some(bound) => format!("it can prove {bound:?}"),
        None => "it can prove no bound: it has not heard from its master".to_string(),
    };
    let link = if connected {
        ""
    } else {
        " (its master is not connected)"
    };
    Response::error(
        ErrorCode::TooStale { bound_us },
        format!(
            "this replica cannot prove its data at most {max:?} old after {waited:?}: \
             {proven}{link}; read the master, or retry"
        ),
    )
}

/// The answer to a read whose `after` write this node's history cannot
/// hold (`own` is its history id), saying `why`.
pub(crate) fn unknown_history(after: ReadAfter, own: u64, why: &str) -> Response {
    Response::error(
        ErrorCode::UnknownHistory,
        format!(
            "write {:016x}:{} is of an unknown history on this replica (history {own:016x}): \
             {why}; read the master",
            after.history, after.seq
        ),
    )
}

/// The answer to a sync write the slave did not confirm in time; `master`
/// names the slave and the timeout (none when the node no longer has a
/// replicator).
pub(crate) fn replica_unavailable(seq: u64, master: Option<&MasterSettings>) -> Response {
    let (replica, sync_timeout) = master.map_or(("", Duration::ZERO), |m| {
        (m.replica.as_str(), m.sync_timeout)
    });
    Response::error(
        ErrorCode::ReplicaUnavailable,
        format!(
            "write {seq} is durable on the master, but slave {replica} did not confirm it \
             within {sync_timeout:?}; it reaches the slave when the slave is back"
        ),
    )
}

/// The reply to bytes that are not a frame, sent before the connection is
/// closed. Its request id is 0: a frame that could not be read has none.
pub(crate) fn bad_frame(error: &FrameError) -> Frame {
    let code = ErrorCode::for_frame_error(error);
    Frame::response(0, Response::error(code, error.to_string()))
}

/// The answer to a frame from a client that is not a request.
pub(crate) fn not_a_request() -> Response {
    Response::error(ErrorCode::BadRequest, "a client may only send requests")
}

/// The wire error for a store error: a code the client can act on, and the
/// store's message.
pub(crate) fn storage_error(error: &storage::Error) -> Response {
    // With its causes: "cannot append to …: No space left on device" says
    // what to do; "cannot append to …" alone does not.
    let message = crate::error::chain(error);
    let code = match error {
        storage::Error::NotFound => ErrorCode::NotFound,
        storage::Error::AlreadyExists => ErrorCode::AlreadyExists,
        storage::Error::TooLarge { .. } => ErrorCode::TooLarge,
        _ => {
            warn!("request failed in the store: {message}");
            ErrorCode::Internal
        }
    };
    Response::error(code, message)
}
