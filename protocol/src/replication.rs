//! The replication stream: the messages a master and its slave exchange on
//! the connection the master opens with [`Role::Replica`](crate::Role::Replica).
//!
//! The master dials the slave's client port and sends a handshake with role
//! 2; the slave answers with a handshake reply. From then on the two speak
//! [`Replication`] frames only (kinds [`Kind::REPLICATION`], `0x40..=0x7F`):
//!
//! ```text
//! master                                       slave
//!   | --- Handshake (role 2) ----------------->  |
//!   | <------------------------ HandshakeReply - |
//!   | <--------- Hello { last_seq, repl_id } --- |
//!   |                                            |
//!   | either, if the slave can catch up from the log:
//!   | --- Append { seq: last_seq + 1 } ------->  |
//!   | --- Append { seq: last_seq + 2 } ------->  |
//!   | <-------------------- Ack { seq } -------  |   cumulative
//!   |                                            |
//!   | or, if it cannot (too far behind, another history):
//!   | --- SnapshotBegin { seq: s, .. } ------->  |
//!   | --- SnapshotEntry (x entries) ---------->  |
//!   | --- SnapshotEnd { seq: s } ------------->  |
//!   | --- Append { seq: s + 1 } -------------->  |
//!   | <-------------------- Ack { seq } -------  |
//!   ...
//!   | <---------- ResyncRequest { reason } ----  |   at any time: the slave
//!   | --- SnapshotBegin ... ------------------>  |   cannot apply what it got
//! ```
//!
//! Why separate kinds and not requests on a client connection: the stream
//! runs the other way round from a client session (the *master* dials, the
//! *slave* mostly listens), its messages are not answered one by one (an
//! [`Ack`](Replication::Ack) covers every write up to its `seq`), and the
//! handshake role already tells the slave that these kinds will follow, so
//! no peer ever sees them unannounced.
//!
//! # Request ids
//!
//! Replication frames are not matched to one another, so their frame's
//! request id carries no meaning. By convention a sender puts the message's
//! [`seq`](Replication::seq) there ([`Append`](Replication::Append),
//! [`Ack`](Replication::Ack) and the `Snapshot*` messages) or 0
//! ([`Hello`](Replication::Hello), [`ResyncRequest`](Replication::ResyncRequest)),
//! which makes a hex dump of the stream easier to read; a receiver ignores
//! it.
//!
//! # Example
//!
//! The master sends a write; the slave decodes it and acknowledges it:
//!
//! ```
//! use duokv_protocol::{Frame, Message, ReplicatedOp, Replication, read_frame, write_frame};
//!
//! # fn main() -> Result<(), duokv_protocol::Error> {
//! let append = Replication::Append {
//!     seq: 7,
//!     op: ReplicatedOp::Put { key: b"k".to_vec(), value: b"v".to_vec() },
//! };
//! let mut wire = Vec::new();
//! write_frame(&mut wire, &Frame::replication(7, append))?;
//!
//! // On the slave.
//! let frame = read_frame(&mut &wire[..])?.expect("a frame");
//! let Message::Replication(Replication::Append { seq, op }) = frame.message else {
//!     panic!("expected an append");
//! };
//! assert_eq!((seq, op.key(), op.value()), (7, &b"k"[..], Some(&b"v"[..])));
//! let ack = Replication::Ack { seq };
//! let reply = Frame::replication(ack.seq().unwrap_or(0), ack);
//! assert_eq!(reply.to_bytes()?.len(), 4 + 9 + 8);
//! # Ok(())
//! # }
//! ```
//!
//! Bodies follow the same rules as every other frame (see
//! [`message`](crate::message)): keys are capped by
//! [`MAX_KEY_LEN`](crate::MAX_KEY_LEN), values by
//! [`MAX_VALUE_LEN`](crate::MAX_VALUE_LEN), both checked before anything is
//! copied; strings are UTF-8; bytes left after a body are malformed.

use crate::codec::{Reader, put_str, put_u8, put_u32, put_u64};
use crate::error::FrameError;
use crate::message::{Kind, ModeCode, key, put_key, put_value, value};

/// One write of the master's log, as carried by [`Replication::Append`].
///
/// On the wire: an op byte (1 = put, 2 = delete), the key (u32 length +
/// bytes, at most [`MAX_KEY_LEN`](crate::MAX_KEY_LEN)) and, for a put, the
/// value (u32 length + bytes, at most
/// [`MAX_VALUE_LEN`](crate::MAX_VALUE_LEN)). Any other op byte is malformed.
///
/// Create, update and put all reach the log as a `Put`: by the time a write
/// is replicated the master has already decided it succeeds, so the slave
/// only needs its effect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReplicatedOp {
    /// 1: set `key` to `value`.
    Put {
        /// The key, at most [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) bytes.
        key: Vec<u8>,
        /// The value, at most [`MAX_VALUE_LEN`](crate::MAX_VALUE_LEN) bytes.
        value: Vec<u8>,
    },
    /// 2: remove `key`.
    Delete {
        /// The key, at most [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) bytes.
        key: Vec<u8>,
    },
}

impl ReplicatedOp {
    /// The op byte of [`ReplicatedOp::Put`].
    const PUT: u8 = 1;
    /// The op byte of [`ReplicatedOp::Delete`].
    const DELETE: u8 = 2;

    /// The op byte on the wire: 1 for a put, 2 for a delete.
    pub fn as_u8(&self) -> u8 {
        match self {
            ReplicatedOp::Put { .. } => ReplicatedOp::PUT,
            ReplicatedOp::Delete { .. } => ReplicatedOp::DELETE,
        }
    }

    /// The key this write is about.
    pub fn key(&self) -> &[u8] {
        match self {
            ReplicatedOp::Put { key, .. } | ReplicatedOp::Delete { key } => key,
        }
    }

    /// The value a put sets; `None` for a delete.
    pub fn value(&self) -> Option<&[u8]> {
        match self {
            ReplicatedOp::Put { value, .. } => Some(value),
            ReplicatedOp::Delete { .. } => None,
        }
    }
}

/// A message of the replication stream, in either direction.
///
/// See the [module documentation](self) for the order in which they are
/// sent, and `PROTOCOL.md` ("Replication stream") for their bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Replication {
    /// `0x40`, slave to master, the first frame after the handshake: where
    /// the slave stands, so the master can choose between streaming
    /// [`Append`](Replication::Append)s and sending a snapshot.
    Hello {
        /// The newest sequence number the slave has applied (0 if none).
        last_seq: u64,
        /// The replication id of the master history the slave's data comes
        /// from, as last received in a
        /// [`SnapshotBegin`](Replication::SnapshotBegin); 0 if none yet. A
        /// master whose own id differs (say, it restarted on an empty data
        /// directory) must not stream from `last_seq + 1`.
        replication_id: u64,
    },
    /// `0x41`, master to slave: one write of the master's log. Appends are
    /// sent in sequence order without gaps.
    Append {
        /// The write's sequence number on the master.
        seq: u64,
        /// The write itself.
        op: ReplicatedOp,
    },
    /// `0x42`, slave to master: every write up to and including `seq` is
    /// applied and durable on the slave. Cumulative, so a slave may send one
    /// per batch of appends rather than one per append.
    Ack {
        /// The newest sequence number applied and durable on the slave.
        seq: u64,
    },
    /// `0x43`, master to slave: a full resync follows, replacing everything
    /// the slave holds: `entries` [`SnapshotEntry`](Replication::SnapshotEntry)
    /// frames, then a [`SnapshotEnd`](Replication::SnapshotEnd).
    SnapshotBegin {
        /// The snapshot holds the master's data as of this sequence number.
        seq: u64,
        /// The replication id of the master's history, which the slave keeps
        /// and sends back in its next [`Hello`](Replication::Hello). A master
        /// never uses 0.
        replication_id: u64,
        /// How many entries follow. Informational (for progress reports):
        /// the snapshot ends at [`SnapshotEnd`](Replication::SnapshotEnd),
        /// not after this many entries.
        entries: u64,
    },
    /// `0x44`, master to slave: one live key of the snapshot.
    SnapshotEntry {
        /// The sequence number of the write that set this value.
        seq: u64,
        /// The key, at most [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) bytes.
        key: Vec<u8>,
        /// The value, at most [`MAX_VALUE_LEN`](crate::MAX_VALUE_LEN) bytes.
        value: Vec<u8>,
    },
    /// `0x45`, master to slave: the snapshot is complete. Appends continue
    /// after it from `seq + 1`.
    SnapshotEnd {
        /// The snapshot's sequence number, as in its
        /// [`SnapshotBegin`](Replication::SnapshotBegin).
        seq: u64,
    },
    /// `0x46`, slave to master: the slave received something it cannot
    /// apply (a gap in the sequence numbers, a divergence) and asks for a
    /// full snapshot.
    ResyncRequest {
        /// Why, in lowercase words, for the master's log.
        reason: String,
    },
    /// `0x47`, master to slave, only on a stream whose handshake agreed on
    /// [`FEATURE_COMMIT_NOTICES`]: every write up to and including `seq` is
    /// durable on the master, so the slave may show it to readers (the
    /// commit index). Sent when the master's durable seq moves, and in
    /// answer to a [`Probe`](Replication::Probe). `seq` may be above the
    /// appends sent so far: it covers them as they arrive.
    Commit {
        /// The master's durable seq when it sent this.
        seq: u64,
        /// The id of the [`Probe`](Replication::Probe) this answers; 0 if
        /// it answers none. The master read `seq` after that probe
        /// arrived.
        probe: u64,
    },
    /// `0x48`, slave to master, only with [`FEATURE_COMMIT_NOTICES`]: asks
    /// for a [`Commit`](Replication::Commit) that names this `id`. The slave
    /// keeps the time it sent it: the answer proves that the master's
    /// durable state at that time is covered by the answer's `seq`, which
    /// is how the slave bounds its staleness without the master's clock.
    Probe {
        /// Chosen by the slave, increasing, never 0.
        id: u64,
    },
    /// `0x49`, slave to master, only with [`FEATURE_COMMIT_NOTICES`]: every
    /// write up to and including `seq` is visible to readers on the slave.
    /// Cumulative. A master whose sync writes wait for visibility
    /// (`remote_apply`) answers them on it.
    Visible {
        /// The slave's newest visible seq.
        seq: u64,
    },
    /// `0x4A`, master to slave, in a planned switchover (`PROTOCOL.md`
    /// 7.10): the master takes no more writes, and the slave, which shows
    /// every write up to `seq`, is to become the master of `term`,
    /// replicating to this master with `mode`.
    Handover {
        /// The master's last write; the slave must show exactly this far.
        seq: u64,
        /// The new master's term, above every term before.
        term: u64,
        /// How the new master replicates.
        mode: ModeCode,
        /// Its sync timeout, in milliseconds.
        sync_timeout_ms: u32,
    },
    /// `0x4B`, slave to master: the answer to `Handover`. With `history`
    /// other than 0 the slave is now the master of the handover's term,
    /// its new history continuing the old one through `seq`; with 0 it
    /// refused (it does not show exactly `seq`), and nothing changed.
    TookOver {
        /// The seq the slave shows.
        seq: u64,
        /// The new master's history id; 0 for a refusal.
        history: u64,
    },
}

/// Bit 0 of the stream's feature fields (`PROTOCOL.md` 7.9): the master
/// sends [`Replication::Commit`] and answers [`Replication::Probe`], and the
/// slave shows a write only once a `Commit` covers it and sends
/// [`Replication::Visible`]. Used only when both sides announce it.
pub const FEATURE_COMMIT_NOTICES: u32 = 1;

impl Replication {
    /// The kind byte of this message's frame.
    pub fn kind(&self) -> Kind {
        match self {
            Replication::Hello { .. } => Kind::Hello,
            Replication::Append { .. } => Kind::Append,
            Replication::Ack { .. } => Kind::Ack,
            Replication::SnapshotBegin { .. } => Kind::SnapshotBegin,
            Replication::SnapshotEntry { .. } => Kind::SnapshotEntry,
            Replication::SnapshotEnd { .. } => Kind::SnapshotEnd,
            Replication::ResyncRequest { .. } => Kind::ResyncRequest,
            Replication::Commit { .. } => Kind::Commit,
            Replication::Probe { .. } => Kind::Probe,
            Replication::Visible { .. } => Kind::Visible,
            Replication::Handover { .. } => Kind::Handover,
            Replication::TookOver { .. } => Kind::TookOver,
        }
    }

    /// The sequence number this message is about, for the messages that
    /// have one ([`Append`](Replication::Append), [`Ack`](Replication::Ack),
    /// the `Snapshot*` messages, [`Commit`](Replication::Commit) and
    /// [`Visible`](Replication::Visible)); `None` for
    /// [`Hello`](Replication::Hello),
    /// [`ResyncRequest`](Replication::ResyncRequest) and
    /// [`Probe`](Replication::Probe).
    ///
    /// By convention a sender puts `seq().unwrap_or(0)` in the frame's
    /// request id; a receiver ignores that id.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Replication::Append { seq, .. }
            | Replication::Ack { seq }
            | Replication::SnapshotBegin { seq, .. }
            | Replication::SnapshotEntry { seq, .. }
            | Replication::SnapshotEnd { seq }
            | Replication::Commit { seq, .. }
            | Replication::Visible { seq }
            | Replication::Handover { seq, .. }
            | Replication::TookOver { seq, .. } => Some(*seq),
            Replication::Hello { .. }
            | Replication::ResyncRequest { .. }
            | Replication::Probe { .. } => None,
        }
    }

    /// Appends the body (everything after the request id).
    pub(crate) fn encode_body(&self, dst: &mut Vec<u8>) -> Result<(), FrameError> {
        match self {
            Replication::Hello {
                last_seq,
                replication_id,
            } => {
                put_u64(dst, *last_seq);
                put_u64(dst, *replication_id);
            }
            Replication::Append { seq, op } => {
                put_u64(dst, *seq);
                put_u8(dst, op.as_u8());
                put_key(dst, op.key())?;
                if let Some(value) = op.value() {
                    put_value(dst, value)?;
                }
            }
            Replication::Ack { seq }
            | Replication::SnapshotEnd { seq }
            | Replication::Visible { seq }
            | Replication::Probe { id: seq } => put_u64(dst, *seq),
            Replication::Commit { seq, probe } => {
                put_u64(dst, *seq);
                put_u64(dst, *probe);
            }
            Replication::Handover {
                seq,
                term,
                mode,
                sync_timeout_ms,
            } => {
                put_u64(dst, *seq);
                put_u64(dst, *term);
                put_u8(dst, *mode as u8);
                put_u32(dst, *sync_timeout_ms);
            }
            Replication::TookOver { seq, history } => {
                put_u64(dst, *seq);
                put_u64(dst, *history);
            }
            Replication::SnapshotBegin {
                seq,
                replication_id,
                entries,
            } => {
                put_u64(dst, *seq);
                put_u64(dst, *replication_id);
                put_u64(dst, *entries);
            }
            Replication::SnapshotEntry { seq, key, value } => {
                put_u64(dst, *seq);
                put_key(dst, key)?;
                put_value(dst, value)?;
            }
            Replication::ResyncRequest { reason } => put_str(dst, reason)?,
        }
        Ok(())
    }

    /// Reads the body of a replication message of `kind`; `None` if `kind`
    /// is not a replication kind. Does not check for trailing bytes.
    pub(crate) fn decode_body(kind: Kind, r: &mut Reader<'_>) -> Result<Option<Self>, FrameError> {
        let message = match kind {
            Kind::Hello => Replication::Hello {
                last_seq: r.u64()?,
                replication_id: r.u64()?,
            },
            Kind::Append => {
                let seq = r.u64()?;
                let at = r.position();
                let op = match r.u8()? {
                    ReplicatedOp::PUT => ReplicatedOp::Put {
                        key: key(r)?,
                        value: value(r)?,
                    },
                    ReplicatedOp::DELETE => ReplicatedOp::Delete { key: key(r)? },
                    _ => {
                        return Err(r.malformed_at(at, "op byte is neither 1 (put) nor 2 (delete)"));
                    }
                };
                Replication::Append { seq, op }
            }
            Kind::Ack => Replication::Ack { seq: r.u64()? },
            Kind::SnapshotBegin => Replication::SnapshotBegin {
                seq: r.u64()?,
                replication_id: r.u64()?,
                entries: r.u64()?,
            },
            Kind::SnapshotEntry => Replication::SnapshotEntry {
                seq: r.u64()?,
                key: key(r)?,
                value: value(r)?,
            },
            Kind::SnapshotEnd => Replication::SnapshotEnd { seq: r.u64()? },
            Kind::ResyncRequest => Replication::ResyncRequest {
                reason: r.string()?,
            },
            Kind::Commit => Replication::Commit {
                seq: r.u64()?,
                probe: r.u64()?,
            },
            Kind::Probe => Replication::Probe { id: r.u64()? },
            Kind::Visible => Replication::Visible { seq: r.u64()? },
            Kind::Handover => Replication::Handover {
                seq: r.u64()?,
                term: r.u64()?,
                mode: ModeCode::read(r)?,
                sync_timeout_ms: r.u32()?,
            },
            Kind::TookOver => Replication::TookOver {
                seq: r.u64()?,
                history: r.u64()?,
            },
            Kind::Create
            | Kind::Read
            | Kind::Update
            | Kind::Delete
            | Kind::Put
            | Kind::Ping
            | Kind::Info
            | Kind::Failover
            | Kind::Promote
            | Kind::Value
            | Kind::Written
            | Kind::Pong
            | Kind::InfoReply
            | Kind::Error => return Ok(None),
        };
        Ok(Some(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Limit;

    fn decode(kind: Kind, body: &[u8]) -> Result<Option<Replication>, FrameError> {
        let mut r = Reader::new(body, 13);
        let message = Replication::decode_body(kind, &mut r)?;
        r.finish()?;
        Ok(message)
    }

    #[test]
    fn kinds_and_seqs() {
        let messages = [
            (
                Replication::Hello {
                    last_seq: 5,
                    replication_id: 9,
                },
                Kind::Hello,
                None,
            ),
            (
                Replication::Append {
                    seq: 6,
                    op: ReplicatedOp::Delete { key: vec![1] },
                },
                Kind::Append,
                Some(6),
            ),
            (Replication::Ack { seq: 7 }, Kind::Ack, Some(7)),
            (
                Replication::SnapshotBegin {
                    seq: 8,
                    replication_id: 1,
                    entries: 0,
                },
                Kind::SnapshotBegin,
                Some(8),
            ),
            (
                Replication::SnapshotEntry {
                    seq: 3,
                    key: vec![],
                    value: vec![],
                },
                Kind::SnapshotEntry,
                Some(3),
            ),
            (
                Replication::SnapshotEnd { seq: 8 },
                Kind::SnapshotEnd,
                Some(8),
            ),
            (
                Replication::ResyncRequest {
                    reason: "gap".into(),
                },
                Kind::ResyncRequest,
                None,
            ),
        ];
        for (message, kind, seq) in messages {
            assert_eq!(message.kind(), kind);
            assert!(kind.is_replication());
            assert_eq!(message.seq(), seq);
            let mut body = Vec::new();
            message.encode_body(&mut body).unwrap();
            assert_eq!(decode(kind, &body), Ok(Some(message)));
        }
    }

    #[test]
    fn op_accessors() {
        let put = ReplicatedOp::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        assert_eq!(
            (put.as_u8(), put.key(), put.value()),
            (1, &b"k"[..], Some(&b"v"[..]))
        );
        let delete = ReplicatedOp::Delete { key: b"k".to_vec() };
        assert_eq!(
            (delete.as_u8(), delete.key(), delete.value()),
            (2, &b"k"[..], None)
        );
    }

    #[test]
    fn op_byte_is_checked_with_its_offset() {
        for op in [0, 3, 0x80, 0xFF] {
            // seq 1, then the bad op byte at frame offset 13 + 8.
            let body = [0, 0, 0, 0, 0, 0, 0, 1, op, 0, 0, 0, 0];
            assert_eq!(
                decode(Kind::Append, &body),
                Err(FrameError::Malformed {
                    offset: 21,
                    reason: "op byte is neither 1 (put) nor 2 (delete)"
                })
            );
        }
    }

    #[test]
    fn a_delete_carries_no_value() {
        // A delete followed by what would be a put's value: trailing bytes.
        let body = [0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 1, b'k', 0, 0, 0, 0];
        assert_eq!(
            decode(Kind::Append, &body),
            Err(FrameError::Malformed {
                offset: 27,
                reason: "trailing bytes after the body"
            })
        );
    }

    #[test]
    fn caps_are_checked_before_copying() {
        // SnapshotEntry declaring a key one byte over the cap, nothing after.
        let mut body = vec![0; 8];
        body.extend_from_slice(&(crate::MAX_KEY_LEN + 1).to_be_bytes());
        assert!(matches!(
            decode(Kind::SnapshotEntry, &body),
            Err(FrameError::TooLarge {
                limit: Limit::Key,
                ..
            })
        ));
    }

    #[test]
    fn other_kinds_are_not_replication() {
        for kind in Kind::ALL {
            if !kind.is_replication() {
                assert_eq!(decode(kind, &[]), Ok(None), "{kind:?}");
            }
        }
    }
}
