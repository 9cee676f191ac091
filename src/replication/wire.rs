//! What master and slave both put on, or take off, the replication stream:
//! the op conversions each way, the handshake's history fields, and the
//! replication frame.
//!
//! A leaf module: [`master`](super::master) and [`slave`](super::slave)
//! share these without importing each other or the module that declares
//! them.

/// A store op as the replication stream carries it.
pub(crate) fn to_wire(op: duokv_storage::Op) -> duokv_protocol::ReplicatedOp {
    match op {
        duokv_storage::Op::Put { key, value } => duokv_protocol::ReplicatedOp::Put { key, value },
        duokv_storage::Op::Delete { key } => duokv_protocol::ReplicatedOp::Delete { key },
    }
}

/// A streamed op as the store writes it.
pub(crate) fn from_wire(op: duokv_protocol::ReplicatedOp) -> duokv_storage::Op {
    match op {
        duokv_protocol::ReplicatedOp::Put { key, value } => duokv_storage::Op::Put { key, value },
        duokv_protocol::ReplicatedOp::Delete { key } => duokv_storage::Op::Delete { key },
    }
}

/// The handshake fields that tell a slave the master's history: its ID and
/// the ancestors it continues.
pub(crate) fn history_fields(
    history: &duokv_storage::History,
) -> (u64, Vec<duokv_protocol::HistoryAncestor>) {
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
pub(crate) fn frame(id: u64, message: duokv_protocol::Replication) -> duokv_protocol::Frame {
    duokv_protocol::Frame {
        request_id: id,
        message: duokv_protocol::Message::Replication(message),
    }
}
