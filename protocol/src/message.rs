//! What travels inside a frame on a client connection: the [`Request`]s a
//! client sends, the [`Response`]s a server returns, and the [`Kind`] byte
//! that tells every message apart (the replication stream's included).
//!
//! This module knows how to lay each body out and read it back; the frame
//! header around it (length, kind, request id) lives in [`frame`](crate::frame).
//! Keeping the two apart means adding a message touches only a body module
//! and the kind table: the replication messages (`0x40..=0x7F`) live in
//! [`replication`](crate::replication) and share this module's key and value
//! helpers.
//!
//! Keys, values and strings are all u32-length-prefixed. Keys are capped by
//! [`MAX_KEY_LEN`], values by [`MAX_VALUE_LEN`]; strings only by the frame cap.
//! The wire format allows an empty key: whether one is accepted is the
//! server's (storage's) decision, not the protocol's.

use std::fmt;
use std::ops::RangeInclusive;

use crate::codec::{Reader, put_bytes, put_str, put_u8, put_u16, put_u32, put_u64};
use crate::error::{FrameError, Limit};
use crate::{MAX_KEY_LEN, MAX_VALUE_LEN};

/// The kind byte of a frame: which message its body holds.
///
/// The byte space is split in three (see `PROTOCOL.md`):
/// [`Kind::REQUESTS`] for client requests, [`Kind::REPLICATION`] for the
/// replication stream between a master and its slave (both directions), and
/// [`Kind::RESPONSES`] for everything a server sends back to a client.
/// `0x00` is never valid, so a zeroed buffer is rejected at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// [`Request::Create`].
    Create = 0x01,
    /// [`Request::Read`].
    Read = 0x02,
    /// [`Request::Update`].
    Update = 0x03,
    /// [`Request::Delete`].
    Delete = 0x04,
    /// [`Request::Put`].
    Put = 0x05,
    /// [`Request::Ping`].
    Ping = 0x06,
    /// [`Request::Info`].
    Info = 0x07,
    /// [`Request::Failover`].
    Failover = 0x08,
    /// [`Request::Promote`].
    Promote = 0x09,
    /// [`Replication::Hello`](crate::Replication::Hello).
    Hello = 0x40,
    /// [`Replication::Append`](crate::Replication::Append).
    Append = 0x41,
    /// [`Replication::Ack`](crate::Replication::Ack).
    Ack = 0x42,
    /// [`Replication::SnapshotBegin`](crate::Replication::SnapshotBegin).
    SnapshotBegin = 0x43,
    /// [`Replication::SnapshotEntry`](crate::Replication::SnapshotEntry).
    SnapshotEntry = 0x44,
    /// [`Replication::SnapshotEnd`](crate::Replication::SnapshotEnd).
    SnapshotEnd = 0x45,
    /// [`Replication::ResyncRequest`](crate::Replication::ResyncRequest).
    ResyncRequest = 0x46,
    /// [`Replication::Commit`](crate::Replication::Commit).
    Commit = 0x47,
    /// [`Replication::Probe`](crate::Replication::Probe).
    Probe = 0x48,
    /// [`Replication::Visible`](crate::Replication::Visible).
    Visible = 0x49,
    /// [`Replication::Handover`](crate::Replication::Handover).
    Handover = 0x4A,
    /// [`Replication::TookOver`](crate::Replication::TookOver).
    TookOver = 0x4B,
    /// [`Response::Value`].
    Value = 0x80,
    /// [`Response::Written`].
    Written = 0x81,
    /// [`Response::Pong`].
    Pong = 0x82,
    /// [`Response::Info`].
    InfoReply = 0x83,
    /// [`Response::Error`].
    Error = 0x84,
}

impl Kind {
    /// Kind bytes of client requests.
    pub const REQUESTS: RangeInclusive<u8> = 0x01..=0x3F;
    /// Kind bytes of the replication stream (master to slave and back);
    /// `0x4C..=0x7F` are free for later replication messages.
    pub const REPLICATION: RangeInclusive<u8> = 0x40..=0x7F;
    /// Kind bytes of responses.
    pub const RESPONSES: RangeInclusive<u8> = 0x80..=0xFF;

    /// Every kind this version knows, in byte order.
    pub const ALL: [Kind; 26] = [
        Kind::Create,
        Kind::Read,
        Kind::Update,
        Kind::Delete,
        Kind::Put,
        Kind::Ping,
        Kind::Info,
        Kind::Failover,
        Kind::Promote,
        Kind::Hello,
        Kind::Append,
        Kind::Ack,
        Kind::SnapshotBegin,
        Kind::SnapshotEntry,
        Kind::SnapshotEnd,
        Kind::ResyncRequest,
        Kind::Commit,
        Kind::Probe,
        Kind::Visible,
        Kind::Handover,
        Kind::TookOver,
        Kind::Value,
        Kind::Written,
        Kind::Pong,
        Kind::InfoReply,
        Kind::Error,
    ];

    /// The byte on the wire.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The kind for a byte, or `None` if this version knows no such kind.
    pub fn from_u8(byte: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_u8() == byte)
    }

    /// Whether this kind is a client request.
    pub fn is_request(self) -> bool {
        Kind::REQUESTS.contains(&self.as_u8())
    }

    /// Whether this kind is a message of the replication stream.
    pub fn is_replication(self) -> bool {
        Kind::REPLICATION.contains(&self.as_u8())
    }

    /// Whether this kind is a response.
    pub fn is_response(self) -> bool {
        Kind::RESPONSES.contains(&self.as_u8())
    }
}

/// The optional condition of a [`Request::Read`]: answer once the write
/// `(history, seq)` (a write token) is visible on the replica, waiting up
/// to `wait_ms` for it.
///
/// On the wire it is the read extension of tag [`ReadAfter::TAG`] after
/// the key (`PROTOCOL.md` 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReadAfter {
    /// The history id the write was made under (never 0 from a server).
    pub history: u64,
    /// The write's sequence number.
    pub seq: u64,
    /// How long the replica may wait for the write, in milliseconds; the
    /// server caps it. 0 answers at once.
    pub wait_ms: u32,
}

impl ReadAfter {
    /// The tag of this extension after a `Read`'s key.
    pub const TAG: u8 = 1;
    /// The length of its value: history u64, seq u64, wait_ms u32.
    pub const LEN: u16 = 20;
}

/// Where a replica stood when it answered a read: its history and its
/// newest visible seq. A session keeps `(history, seq)` of the value read,
/// or `(history, visible_seq)` when the key was absent, as the token its
/// next read must be `after` (monotonic reads, deletes included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReadPoint {
    /// The replica's history id.
    pub history: u64,
    /// The newest seq visible on the replica just after it read the key:
    /// at least what the read could see (visible seqs only grow), possibly
    /// more, which only makes a token taken from it ask for more.
    pub visible_seq: u64,
}

/// The optional freshness condition of a [`Request::Read`]: answer only
/// if the replica can prove that its data is at most `max_staleness_us`
/// microseconds old (it holds every write the master had made durable
/// that long before the answer), waiting up to `wait_ms` for it.
///
/// On the wire it is the read extension of tag [`MaxStaleness::TAG`]
/// after the key (`PROTOCOL.md` 5.2). A replica that cannot prove the
/// bound in time answers [`ErrorCode::TooStale`] with the bound it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MaxStaleness {
    /// The oldest the data may be, in microseconds.
    pub max_staleness_us: u32,
    /// How long the replica may wait to prove it, in milliseconds; the
    /// server caps it. 0 answers at once.
    pub wait_ms: u32,
}

impl MaxStaleness {
    /// The tag of this extension after a `Read`'s key.
    pub const TAG: u8 = 2;
    /// The length of its value: max_staleness_us u32, wait_ms u32.
    pub const LEN: u16 = 8;
}

/// A client request. Its frame's request id is echoed by the response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Request {
    /// Insert `key` with `value`; fails with [`ErrorCode::AlreadyExists`] if
    /// the key is present. Answered by [`Response::Written`].
    Create {
        /// The key, at most [`MAX_KEY_LEN`] bytes.
        key: Vec<u8>,
        /// The value, at most [`MAX_VALUE_LEN`] bytes.
        value: Vec<u8>,
    },
    /// Look `key` up. Answered by [`Response::Value`] (absence is not an
    /// error), or, with `after`, by [`ErrorCode::NotYetVisible`] or
    /// [`ErrorCode::UnknownHistory`] when the replica cannot show that
    /// write yet or ever, or, with `fresh`, by [`ErrorCode::TooStale`]
    /// when it cannot prove its data fresh enough in time.
    Read {
        /// The key, at most [`MAX_KEY_LEN`] bytes.
        key: Vec<u8>,
        /// Answer only once this write is visible on the replica, waiting
        /// for it up to the given time. `None` is the plain read (and the
        /// body of older clients).
        after: Option<ReadAfter>,
        /// Answer only if the replica's data is provably this fresh.
        /// `None` asks for nothing (and is the body of older clients).
        fresh: Option<MaxStaleness>,
    },
    /// Replace the value of an existing `key`; fails with
    /// [`ErrorCode::NotFound`] if it is absent. Answered by
    /// [`Response::Written`].
    Update {
        /// The key, at most [`MAX_KEY_LEN`] bytes.
        key: Vec<u8>,
        /// The new value, at most [`MAX_VALUE_LEN`] bytes.
        value: Vec<u8>,
    },
    /// Remove `key`; fails with [`ErrorCode::NotFound`] if it is absent.
    /// Answered by [`Response::Written`].
    Delete {
        /// The key, at most [`MAX_KEY_LEN`] bytes.
        key: Vec<u8>,
    },
    /// Insert or replace (upsert). Answered by [`Response::Written`].
    Put {
        /// The key, at most [`MAX_KEY_LEN`] bytes.
        key: Vec<u8>,
        /// The value, at most [`MAX_VALUE_LEN`] bytes.
        value: Vec<u8>,
    },
    /// Ask for the server's clock. Answered by [`Response::Pong`]. The body
    /// is empty: the client keeps its own send and receive times.
    Ping,
    /// Ask for the server's state. Answered by [`Response::Info`].
    Info,
    /// Asks a master for a planned switchover (`PROTOCOL.md` 7.10): it
    /// stops taking writes, waits until its slave shows its last write,
    /// hands the role over and becomes the new master's slave. Answered by
    /// [`Response::Info`] with what happened (the new master, the term,
    /// the write window), or an error after a rollback.
    Failover {
        /// How long the master waits for its slave before it rolls back.
        timeout_ms: u32,
    },
    /// Asks a slave to become a master at once (its master is gone):
    /// `PROTOCOL.md` 7.10. Answered by [`Response::Info`].
    Promote {
        /// The replica the new master replicates to; empty for the master
        /// it followed.
        replica: String,
        /// The new master's replication: [`ModeCode`].
        mode: ModeCode,
        /// Promote even while its master is connected (two masters then
        /// run for a moment; the old one is fenced by the new term).
        force: bool,
    },
}

/// A replication mode on the wire: the byte of [`Request::Promote`] and
/// [`Replication::Handover`](crate::Replication::Handover).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ModeCode {
    /// 1: a write is answered once durable on both replicas.
    Sync = 1,
    /// 2: once also visible on the slave.
    SyncVisible = 2,
    /// 3: once durable on the master.
    Async = 3,
}

impl ModeCode {
    /// The mode of a byte; `None` for any other.
    pub fn from_u8(byte: u8) -> Option<ModeCode> {
        [ModeCode::Sync, ModeCode::SyncVisible, ModeCode::Async]
            .into_iter()
            .find(|mode| *mode as u8 == byte)
    }

    /// Reads a mode byte, refusing any other value as malformed.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<ModeCode, FrameError> {
        let at = r.position();
        let byte = r.u8()?;
        ModeCode::from_u8(byte).ok_or_else(|| r.malformed_at(at, "mode is not 1, 2 or 3"))
    }
}

impl Request {
    /// The kind byte of this request's frame.
    pub fn kind(&self) -> Kind {
        match self {
            Request::Create { .. } => Kind::Create,
            Request::Read { .. } => Kind::Read,
            Request::Update { .. } => Kind::Update,
            Request::Delete { .. } => Kind::Delete,
            Request::Put { .. } => Kind::Put,
            Request::Ping => Kind::Ping,
            Request::Info => Kind::Info,
            Request::Failover { .. } => Kind::Failover,
            Request::Promote { .. } => Kind::Promote,
        }
    }

    /// The key this request is about, if any.
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Request::Create { key, .. }
            | Request::Read { key, .. }
            | Request::Update { key, .. }
            | Request::Delete { key }
            | Request::Put { key, .. } => Some(key),
            Request::Ping | Request::Info | Request::Failover { .. } | Request::Promote { .. } => {
                None
            }
        }
    }

    /// Whether this request changes data (and so must go to the master).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::Create { .. }
                | Request::Update { .. }
                | Request::Delete { .. }
                | Request::Put { .. }
        )
    }

    /// Appends the body (everything after the request id).
    pub(crate) fn encode_body(&self, dst: &mut Vec<u8>) -> Result<(), FrameError> {
        match self {
            Request::Create { key, value }
            | Request::Update { key, value }
            | Request::Put { key, value } => {
                put_key(dst, key)?;
                put_value(dst, value)
            }
            Request::Read { key, after, fresh } => {
                put_key(dst, key)?;
                if let Some(after) = after {
                    put_u8(dst, ReadAfter::TAG);
                    put_u16(dst, ReadAfter::LEN);
                    put_u64(dst, after.history);
                    put_u64(dst, after.seq);
                    put_u32(dst, after.wait_ms);
                }
                if let Some(fresh) = fresh {
                    put_u8(dst, MaxStaleness::TAG);
                    put_u16(dst, MaxStaleness::LEN);
                    put_u32(dst, fresh.max_staleness_us);
                    put_u32(dst, fresh.wait_ms);
                }
                Ok(())
            }
            Request::Delete { key } => put_key(dst, key),
            Request::Ping | Request::Info => Ok(()),
            Request::Failover { timeout_ms } => {
                put_u32(dst, *timeout_ms);
                Ok(())
            }
            Request::Promote {
                replica,
                mode,
                force,
            } => {
                put_str(dst, replica)?;
                put_u8(dst, *mode as u8);
                put_u8(dst, u8::from(*force));
                Ok(())
            }
        }
    }

    /// Reads the body of a request of `kind`; `None` if `kind` is not a
    /// request. Does not check for trailing bytes.
    pub(crate) fn decode_body(kind: Kind, r: &mut Reader<'_>) -> Result<Option<Self>, FrameError> {
        let request = match kind {
            Kind::Create => Request::Create {
                key: key(r)?,
                value: value(r)?,
            },
            Kind::Read => {
                let key = key(r)?;
                let (after, fresh) = read_extensions(r)?;
                Request::Read { key, after, fresh }
            }
            Kind::Update => Request::Update {
                key: key(r)?,
                value: value(r)?,
            },
            Kind::Delete => Request::Delete { key: key(r)? },
            Kind::Put => Request::Put {
                key: key(r)?,
                value: value(r)?,
            },
            Kind::Ping => Request::Ping,
            Kind::Info => Request::Info,
            Kind::Failover => Request::Failover {
                timeout_ms: r.u32()?,
            },
            Kind::Promote => {
                let replica = r.string()?;
                let mode = ModeCode::read(r)?;
                let at = r.position();
                let force = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(r.malformed_at(at, "force is neither 0 nor 1")),
                };
                Request::Promote {
                    replica,
                    mode,
                    force,
                }
            }
            Kind::Value | Kind::Written | Kind::Pong | Kind::InfoReply | Kind::Error => {
                return Ok(None);
            }
            Kind::Hello
            | Kind::Append
            | Kind::Ack
            | Kind::SnapshotBegin
            | Kind::SnapshotEntry
            | Kind::SnapshotEnd
            | Kind::ResyncRequest
            | Kind::Commit
            | Kind::Probe
            | Kind::Visible
            | Kind::Handover
            | Kind::TookOver => return Ok(None),
        };
        Ok(Some(request))
    }
}

/// What the server says about a write it performed.
///
/// The history id and the sequence number are the write's identity (its
/// position in the master's log, and the log's); the timestamps let a client split its observed latency
/// into network time and the server's phases. All times are UNIX time in
/// nanoseconds from the server's wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct WriteReceipt {
    /// The sequence number the write was given.
    pub seq: u64,
    /// When the server finished reading the request.
    pub received_ns: u64,
    /// When the write was durable on the server's own disk.
    pub applied_ns: u64,
    /// When the slave acknowledged the write (synchronous replication), or 0
    /// when unknown or not waited for. A master forwards a write while it
    /// syncs it, so the ack may come before `applied_ns`.
    pub replicated_ns: u64,
    /// Just before the response was sent.
    pub replied_ns: u64,
    /// The history id of the log the write is in; 0 when the server did not
    /// send it (a client that did not set [`Handshake::FLAG_TOKENS`], or
    /// an older server). On the wire the body ends before it when 0.
    ///
    /// [`Handshake::FLAG_TOKENS`]: crate::Handshake::FLAG_TOKENS
    pub history: u64,
}

/// A server's answer to one [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Response {
    /// The answer to [`Request::Read`].
    Value {
        /// The value, or `None` if the key is absent.
        value: Option<Vec<u8>>,
        /// The sequence number of the record that was read; 0 when absent.
        seq: u64,
        /// Where the replica stood when it answered, for a client that
        /// asked for tokens in its handshake (flag bit 0); `None` for
        /// others, whose body ends after the value.
        at: Option<ReadPoint>,
    },
    /// The answer to a successful write (create, update, delete, put).
    Written(WriteReceipt),
    /// The answer to [`Request::Ping`]: the server's clock when it received
    /// the ping and when it sent this reply (UNIX nanoseconds). With the
    /// client's own send and receive times these are the four timestamps of
    /// NTP-style offset estimation: `offset = ((t2 - t1) + (t3 - t4)) / 2`.
    Pong {
        /// Server clock when the ping was read (t2).
        received_ns: u64,
        /// Server clock just before this reply was sent (t3).
        sent_ns: u64,
    },
    /// The answer to [`Request::Info`]: named facts about the server (role,
    /// last sequence number, ...), as `(name, value)` string pairs in the
    /// order the server chose. New names can be added without a new version.
    Info(Vec<(String, String)>),
    /// The request failed.
    Error {
        /// What kind of failure, with its structured details.
        code: ErrorCode,
        /// A human-readable explanation, lowercase, for logs.
        message: String,
    },
}

impl Response {
    /// The kind byte of this response's frame.
    pub fn kind(&self) -> Kind {
        match self {
            Response::Value { .. } => Kind::Value,
            Response::Written(_) => Kind::Written,
            Response::Pong { .. } => Kind::Pong,
            Response::Info(_) => Kind::InfoReply,
            Response::Error { .. } => Kind::Error,
        }
    }

    /// An error response with a message.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Response::Error {
            code,
            message: message.into(),
        }
    }

    /// Appends the body (everything after the request id).
    pub(crate) fn encode_body(&self, dst: &mut Vec<u8>) -> Result<(), FrameError> {
        match self {
            Response::Value { value, seq, at } => {
                put_u64(dst, *seq);
                match value {
                    None => put_u8(dst, 0),
                    Some(v) => {
                        put_u8(dst, 1);
                        put_value(dst, v)?;
                    }
                }
                if let Some(at) = at {
                    put_u64(dst, at.history);
                    put_u64(dst, at.visible_seq);
                }
            }
            Response::Written(receipt) => {
                put_u64(dst, receipt.seq);
                put_u64(dst, receipt.received_ns);
                put_u64(dst, receipt.applied_ns);
                put_u64(dst, receipt.replicated_ns);
                put_u64(dst, receipt.replied_ns);
                if receipt.history != 0 {
                    put_u64(dst, receipt.history);
                }
            }
            Response::Pong {
                received_ns,
                sent_ns,
            } => {
                put_u64(dst, *received_ns);
                put_u64(dst, *sent_ns);
            }
            Response::Info(pairs) => {
                let count = u32::try_from(pairs.len()).map_err(|_| FrameError::TooLarge {
                    limit: Limit::Frame,
                    len: u64::try_from(pairs.len()).unwrap_or(u64::MAX),
                    max: u64::from(crate::MAX_FRAME_LEN),
                })?;
                put_u32(dst, count);
                for (name, value) in pairs {
                    put_str(dst, name)?;
                    put_str(dst, value)?;
                }
            }
            Response::Error { code, message } => {
                put_u16(dst, code.as_u16());
                put_str(dst, message)?;
                match code {
                    ErrorCode::NotMaster { master } => put_str(dst, master)?,
                    ErrorCode::NotYetVisible {
                        visible_seq: detail,
                    }
                    | ErrorCode::TooStale { bound_us: detail } => {
                        put_u32(dst, 8);
                        put_u64(dst, *detail);
                    }
                    _ => put_u32(dst, 0),
                }
            }
        }
        Ok(())
    }

    /// Reads the body of a response of `kind`; `None` if `kind` is not a
    /// response. Does not check for trailing bytes.
    pub(crate) fn decode_body(kind: Kind, r: &mut Reader<'_>) -> Result<Option<Self>, FrameError> {
        let response = match kind {
            Kind::Value => {
                let seq = r.u64()?;
                let at = r.position();
                let value = match r.u8()? {
                    0 => None,
                    1 => Some(value(r)?),
                    _ => return Err(r.malformed_at(at, "presence byte is neither 0 nor 1")),
                };
                // Present only for clients that asked for tokens.
                let at = if r.remaining() > 0 {
                    Some(ReadPoint {
                        history: r.u64()?,
                        visible_seq: r.u64()?,
                    })
                } else {
                    None
                };
                Response::Value { value, seq, at }
            }
            Kind::Written => Response::Written(WriteReceipt {
                seq: r.u64()?,
                received_ns: r.u64()?,
                applied_ns: r.u64()?,
                replicated_ns: r.u64()?,
                replied_ns: r.u64()?,
                // Present only for clients that asked for tokens.
                history: if r.remaining() > 0 { r.u64()? } else { 0 },
            }),
            Kind::Pong => Response::Pong {
                received_ns: r.u64()?,
                sent_ns: r.u64()?,
            },
            Kind::InfoReply => decode_info(r)?,
            Kind::Error => decode_error(r)?,
            Kind::Create
            | Kind::Read
            | Kind::Update
            | Kind::Delete
            | Kind::Put
            | Kind::Ping
            | Kind::Info
            | Kind::Failover
            | Kind::Promote
            | Kind::Hello
            | Kind::Append
            | Kind::Ack
            | Kind::SnapshotBegin
            | Kind::SnapshotEntry
            | Kind::SnapshotEnd
            | Kind::ResyncRequest
            | Kind::Commit
            | Kind::Probe
            | Kind::Visible
            | Kind::Handover
            | Kind::TookOver => return Ok(None),
        };
        Ok(Some(response))
    }
}

/// The body of an `Info` reply: a count, then name and value strings.
fn decode_info(r: &mut Reader<'_>) -> Result<Response, FrameError> {
    let count = r.u32()?;
    // Each pair takes at least 8 bytes (two empty strings), so a
    // count the rest of the frame cannot hold is a lie: refuse it
    // before reserving anything for it.
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    if count > r.remaining() / 8 {
        return Err(r.malformed("info pair count exceeds the frame"));
    }
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        let name = r.string()?;
        let value = r.string()?;
        pairs.push((name, value));
    }
    Ok(Response::Info(pairs))
}

/// The body of an `Error` response: a code, a message, and the code's
/// detail field.
fn decode_error(r: &mut Reader<'_>) -> Result<Response, FrameError> {
    let number = r.u16()?;
    let message = r.string()?;
    let code = match number {
        ErrorCode::NOT_MASTER => ErrorCode::NotMaster {
            master: r.string()?,
        },
        ErrorCode::NOT_YET_VISIBLE => ErrorCode::NotYetVisible {
            visible_seq: u64_detail(r, "not-yet-visible detail under 8 bytes")?,
        },
        ErrorCode::TOO_STALE => ErrorCode::TooStale {
            bound_us: u64_detail(r, "too-stale detail under 8 bytes")?,
        },
        _ => {
            // Codes without details still carry the (empty)
            // detail field; a later version may fill it, so
            // its bytes are skipped, not refused.
            r.bytes(None)?;
            ErrorCode::from_plain_u16(number)
        }
    };
    Ok(Response::Error { code, message })
}

/// The first 8 bytes of an error's detail field, as a u64; a later
/// version may add more after them.
fn u64_detail(r: &mut Reader<'_>, short: &'static str) -> Result<u64, FrameError> {
    let at = r.position();
    let detail = r.bytes(None)?;
    let first = detail.get(..8).ok_or_else(|| r.malformed_at(at, short))?;
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(first);
    Ok(u64::from_be_bytes(bytes))
}

/// Why a request failed: the code of a [`Response::Error`], with the
/// structured details some codes carry.
///
/// On the wire a code is a u16 (see `PROTOCOL.md` for the table) followed by
/// a code-specific detail string; only [`ErrorCode::NotMaster`] fills it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 1: the key is absent (update, delete).
    NotFound,
    /// 2: the key is already present (create).
    AlreadyExists,
    /// 3: this node is not the master and cannot take writes; send them to
    /// `master` instead.
    NotMaster {
        /// The master's client address as `host:port`, or empty if this
        /// node does not know it.
        master: String,
    },
    /// 4: the write could not be replicated to the slave in time
    /// (synchronous replication); it may or may not have been applied.
    ReplicaUnavailable,
    /// 5: a key, value or frame is above its cap.
    TooLarge,
    /// 6: the request could not be decoded; the server closes the connection
    /// after sending this.
    BadRequest,
    /// 7: the server is at its connection or queue limit; try again later.
    Busy,
    /// 8: the server is shutting down and takes no new requests.
    ShuttingDown,
    /// 9: the server failed (I/O error, bug); see the message.
    Internal,
    /// 10: a read's `after` write is not visible on this replica (yet),
    /// and did not become so within the read's wait; read the master, or
    /// retry.
    NotYetVisible {
        /// The newest sequence number visible on the replica when it
        /// answered (below the token's).
        visible_seq: u64,
    },
    /// 11: a read's `after` write belongs to a history this replica does
    /// not continue (neither its own nor an ancestor, or an ancestor that
    /// ended before the write): waiting cannot help; read the master.
    UnknownHistory,
    /// 13: the master is handing its role over (a planned switchover):
    /// it takes no writes for a moment; retry, and follow the `NotMaster`
    /// that comes once the new master is known.
    SwitchingOver,
    /// 14: a role change (`Failover`, `Promote`) did not happen: the node
    /// is not in the role it starts from, or it rolled back; nothing
    /// changed, and the message says why.
    NotChanged,
    /// 12: a read's `fresh` bound could not be proven within the read's
    /// wait: the replica's data may be older than asked; read the master,
    /// or retry.
    TooStale {
        /// The staleness the replica could prove when it answered, in
        /// microseconds; `u64::MAX` if it can prove none (it has no
        /// master, or has not heard from it).
        bound_us: u64,
    },
    /// A code this version does not know, kept so that newer servers can add
    /// codes without breaking older clients. Encoding `Unknown(n)` where `n`
    /// is a known code sends `n` with an empty detail, which decodes as the
    /// named variant, except for [`ErrorCode::NotYetVisible`], whose detail
    /// must hold its seq (such a frame is malformed).
    Unknown(u16),
}

impl ErrorCode {
    /// The number of [`ErrorCode::NotMaster`], the one code with details.
    const NOT_MASTER: u16 = 3;
    /// The number of [`ErrorCode::NotYetVisible`], whose detail is a u64.
    const NOT_YET_VISIBLE: u16 = 10;
    /// The number of [`ErrorCode::TooStale`], whose detail is a u64.
    const TOO_STALE: u16 = 12;

    /// The number on the wire.
    pub fn as_u16(&self) -> u16 {
        match self {
            ErrorCode::NotFound => 1,
            ErrorCode::AlreadyExists => 2,
            ErrorCode::NotMaster { .. } => ErrorCode::NOT_MASTER,
            ErrorCode::ReplicaUnavailable => 4,
            ErrorCode::TooLarge => 5,
            ErrorCode::BadRequest => 6,
            ErrorCode::Busy => 7,
            ErrorCode::ShuttingDown => 8,
            ErrorCode::Internal => 9,
            ErrorCode::NotYetVisible { .. } => ErrorCode::NOT_YET_VISIBLE,
            ErrorCode::UnknownHistory => 11,
            ErrorCode::TooStale { .. } => ErrorCode::TOO_STALE,
            ErrorCode::SwitchingOver => 13,
            ErrorCode::NotChanged => 14,
            ErrorCode::Unknown(n) => *n,
        }
    }

    /// The code for a number whose detail field is empty.
    fn from_plain_u16(number: u16) -> Self {
        match number {
            1 => ErrorCode::NotFound,
            2 => ErrorCode::AlreadyExists,
            4 => ErrorCode::ReplicaUnavailable,
            5 => ErrorCode::TooLarge,
            6 => ErrorCode::BadRequest,
            7 => ErrorCode::Busy,
            8 => ErrorCode::ShuttingDown,
            9 => ErrorCode::Internal,
            11 => ErrorCode::UnknownHistory,
            13 => ErrorCode::SwitchingOver,
            14 => ErrorCode::NotChanged,
            n => ErrorCode::Unknown(n),
        }
    }

    /// The code a server should answer a frame that failed to decode with:
    /// [`ErrorCode::TooLarge`] for a size cap, [`ErrorCode::BadRequest`] for
    /// anything else.
    pub fn for_frame_error(error: &FrameError) -> Self {
        match error {
            FrameError::TooLarge { .. } => ErrorCode::TooLarge,
            FrameError::Incomplete | FrameError::UnknownKind(_) | FrameError::Malformed { .. } => {
                ErrorCode::BadRequest
            }
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::NotFound => f.write_str("not found"),
            ErrorCode::AlreadyExists => f.write_str("already exists"),
            ErrorCode::NotMaster { master } if master.is_empty() => {
                f.write_str("not the master (master unknown)")
            }
            ErrorCode::NotMaster { master } => write!(f, "not the master (master is {master})"),
            ErrorCode::ReplicaUnavailable => f.write_str("replica unavailable"),
            ErrorCode::TooLarge => f.write_str("too large"),
            ErrorCode::BadRequest => f.write_str("bad request"),
            ErrorCode::Busy => f.write_str("busy"),
            ErrorCode::ShuttingDown => f.write_str("shutting down"),
            ErrorCode::Internal => f.write_str("internal error"),
            ErrorCode::NotYetVisible { visible_seq } => {
                write!(f, "not yet visible (the replica is at seq {visible_seq})")
            }
            ErrorCode::UnknownHistory => f.write_str("unknown history"),
            ErrorCode::SwitchingOver => f.write_str("switching over"),
            ErrorCode::NotChanged => f.write_str("not changed"),
            ErrorCode::TooStale { bound_us: u64::MAX } => {
                f.write_str("too stale (the replica can prove no bound)")
            }
            ErrorCode::TooStale { bound_us } => {
                write!(f, "too stale (the replica can prove {bound_us} us)")
            }
            ErrorCode::Unknown(n) => write!(f, "unknown error code {n}"),
        }
    }
}

/// Reads the tagged extensions after a `Read`'s key (`PROTOCOL.md` 5.2):
/// none in an older client's body. Each is a tag u8, a length u16 and the
/// value. Unlike the handshake's fields an unknown tag is refused, not
/// skipped: it is a condition on the answer, and ignoring it would answer
/// something else than was asked.
fn read_extensions(r: &mut Reader<'_>) -> Result<ReadConditions, FrameError> {
    let (mut after, mut fresh) = (None, None);
    while r.remaining() > 0 {
        let at = r.position();
        let tag = r.u8()?;
        let len = r.u16()?;
        let (expected, wrong_len) = match tag {
            ReadAfter::TAG => (ReadAfter::LEN, "read extension `after` is not 20 bytes"),
            MaxStaleness::TAG => (
                MaxStaleness::LEN,
                "read extension `max_staleness` is not 8 bytes",
            ),
            _ => return Err(r.malformed_at(at, "unknown read extension tag")),
        };
        if len != expected {
            return Err(r.malformed_at(at, wrong_len));
        }
        let repeated = if tag == ReadAfter::TAG {
            after
                .replace(ReadAfter {
                    history: r.u64()?,
                    seq: r.u64()?,
                    wait_ms: r.u32()?,
                })
                .is_some()
        } else {
            fresh
                .replace(MaxStaleness {
                    max_staleness_us: r.u32()?,
                    wait_ms: r.u32()?,
                })
                .is_some()
        };
        if repeated {
            return Err(r.malformed_at(at, "read extension given twice"));
        }
    }
    Ok((after, fresh))
}

/// A read's optional conditions, as its extensions carry them.
type ReadConditions = (Option<ReadAfter>, Option<MaxStaleness>);

/// Appends a key behind its u32 length, refusing one above [`MAX_KEY_LEN`].
pub(crate) fn put_key(dst: &mut Vec<u8>, key: &[u8]) -> Result<(), FrameError> {
    put_bytes(dst, key, Some((Limit::Key, MAX_KEY_LEN)))
}

/// Appends a value behind its u32 length, refusing one above
/// [`MAX_VALUE_LEN`].
pub(crate) fn put_value(dst: &mut Vec<u8>, value: &[u8]) -> Result<(), FrameError> {
    put_bytes(dst, value, Some((Limit::Value, MAX_VALUE_LEN)))
}

/// Reads a u32-length-prefixed key, checking [`MAX_KEY_LEN`] before copying.
pub(crate) fn key(r: &mut Reader<'_>) -> Result<Vec<u8>, FrameError> {
    Ok(r.bytes(Some((Limit::Key, MAX_KEY_LEN)))?.to_vec())
}

/// Reads a u32-length-prefixed value, checking [`MAX_VALUE_LEN`] before
/// copying.
pub(crate) fn value(r: &mut Reader<'_>) -> Result<Vec<u8>, FrameError> {
    Ok(r.bytes(Some((Limit::Value, MAX_VALUE_LEN)))?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_in_their_ranges_and_unique() {
        let mut previous = 0;
        for kind in Kind::ALL {
            assert_eq!(Kind::from_u8(kind.as_u8()), Some(kind));
            let ranges = [kind.is_request(), kind.is_replication(), kind.is_response()];
            assert_eq!(ranges.iter().filter(|&&b| b).count(), 1, "{kind:?}");
            // In byte order, so no byte is listed twice.
            assert!(kind.as_u8() > previous, "{kind:?}");
            previous = kind.as_u8();
        }
        assert_eq!(Kind::from_u8(0), None);
        for byte in 0x4C..=0x7F {
            assert_eq!(Kind::from_u8(byte), None);
        }
    }

    #[test]
    fn error_code_numbers_are_stable() {
        let codes = [
            (ErrorCode::NotFound, 1),
            (ErrorCode::AlreadyExists, 2),
            (
                ErrorCode::NotMaster {
                    master: "m:1".into(),
                },
                3,
            ),
            (ErrorCode::ReplicaUnavailable, 4),
            (ErrorCode::TooLarge, 5),
            (ErrorCode::BadRequest, 6),
            (ErrorCode::Busy, 7),
            (ErrorCode::ShuttingDown, 8),
            (ErrorCode::Internal, 9),
            (ErrorCode::UnknownHistory, 11),
            (ErrorCode::SwitchingOver, 13),
            (ErrorCode::NotChanged, 14),
            (ErrorCode::Unknown(0), 0),
            (ErrorCode::Unknown(4242), 4242),
        ];
        for (code, number) in codes {
            assert_eq!(code.as_u16(), number, "{code:?}");
            if number != ErrorCode::NOT_MASTER {
                assert_eq!(ErrorCode::from_plain_u16(number), code);
            }
        }
        // The codes with a u64 detail.
        assert_eq!(ErrorCode::NotYetVisible { visible_seq: 1 }.as_u16(), 10);
        assert_eq!(ErrorCode::TooStale { bound_us: 1 }.as_u16(), 12);
    }

    #[test]
    fn request_accessors() {
        let put = Request::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        assert_eq!(put.key(), Some(&b"k"[..]));
        assert!(put.is_write());
        assert!(
            !Request::Read {
                key: vec![],
                after: None,
                fresh: None,
            }
            .is_write()
        );
        assert_eq!(Request::Ping.key(), None);
    }

    #[test]
    fn value_presence_byte_is_checked() {
        // seq 0, presence 2
        let body = [0, 0, 0, 0, 0, 0, 0, 0, 2];
        let mut r = Reader::new(&body, 13);
        assert_eq!(
            Response::decode_body(Kind::Value, &mut r),
            Err(FrameError::Malformed {
                offset: 21,
                reason: "presence byte is neither 0 nor 1"
            })
        );
    }

    /// A `Read` body: the key `k`, then `extension`.
    fn read_body(extension: &[u8]) -> Result<Option<Request>, FrameError> {
        let mut body = vec![0, 0, 0, 1, b'k'];
        body.extend_from_slice(extension);
        let mut r = Reader::new(&body, 13);
        Request::decode_body(Kind::Read, &mut r)
    }

    #[test]
    fn read_without_extension_is_the_plain_read() {
        assert_eq!(
            read_body(&[]),
            Ok(Some(Request::Read {
                key: b"k".to_vec(),
                after: None,
                fresh: None,
            }))
        );
    }

    #[test]
    fn read_after_extension_is_decoded() {
        let mut ext = vec![1, 0, 20];
        ext.extend_from_slice(&7u64.to_be_bytes());
        ext.extend_from_slice(&42u64.to_be_bytes());
        ext.extend_from_slice(&100u32.to_be_bytes());
        let after = ReadAfter {
            history: 7,
            seq: 42,
            wait_ms: 100,
        };
        assert_eq!(
            read_body(&ext),
            Ok(Some(Request::Read {
                key: b"k".to_vec(),
                after: Some(after),
                fresh: None,
            }))
        );
        let mut both = ext.clone();
        both.extend_from_slice(&[2, 0, 8, 0, 0, 0x13, 0x88, 0, 0, 0, 50]);
        assert_eq!(
            read_body(&both),
            Ok(Some(Request::Read {
                key: b"k".to_vec(),
                after: Some(after),
                fresh: Some(MaxStaleness {
                    max_staleness_us: 5_000,
                    wait_ms: 50,
                }),
            }))
        );
        let twice = [&ext[..], &ext[..]].concat();
        assert!(matches!(
            read_body(&twice),
            Err(FrameError::Malformed {
                reason: "read extension given twice",
                ..
            })
        ));
    }

    #[test]
    fn malformed_read_extensions_are_refused() {
        let cases: [(&[u8], &str); 4] = [
            (&[3, 0, 0], "unknown read extension tag"),
            (
                &[2, 0, 4, 0, 0, 0, 0],
                "read extension `max_staleness` is not 8 bytes",
            ),
            (
                &[1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0],
                "read extension `after` is not 20 bytes",
            ),
            (&[1, 0], "short"),
        ];
        for (ext, reason) in cases {
            match read_body(ext) {
                Err(FrameError::Malformed { reason: got, .. }) if reason == "short" => {
                    assert!(!got.is_empty())
                }
                Err(FrameError::Malformed { reason: got, .. }) => assert_eq!(got, reason),
                other => panic!("{ext:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn not_yet_visible_carries_the_visible_seq() {
        let response = Response::error(ErrorCode::NotYetVisible { visible_seq: 9 }, "behind");
        let mut body = Vec::new();
        response.encode_body(&mut body).unwrap();
        // code 10 | msg_len 6 | "behind" | detail_len 8 | 9
        let mut expected = vec![0, 10, 0, 0, 0, 6];
        expected.extend_from_slice(b"behind");
        expected.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(body, expected);
        let mut r = Reader::new(&body, 13);
        assert_eq!(
            Response::decode_body(Kind::Error, &mut r),
            Ok(Some(response))
        );
    }

    #[test]
    fn written_carries_the_history_only_when_known() {
        let mut receipt = WriteReceipt {
            seq: 5,
            ..WriteReceipt::default()
        };
        let mut body = Vec::new();
        Response::Written(receipt).encode_body(&mut body).unwrap();
        assert_eq!(body.len(), 40);
        receipt.history = 0xAB;
        body.clear();
        Response::Written(receipt).encode_body(&mut body).unwrap();
        assert_eq!(body.len(), 48);
        assert_eq!(body[40..], 0xABu64.to_be_bytes());
        let mut r = Reader::new(&body, 13);
        assert_eq!(
            Response::decode_body(Kind::Written, &mut r),
            Ok(Some(Response::Written(receipt)))
        );
    }

    #[test]
    fn info_count_is_bounded_by_the_frame() {
        let body = [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut r = Reader::new(&body, 13);
        assert!(matches!(
            Response::decode_body(Kind::InfoReply, &mut r),
            Err(FrameError::Malformed {
                reason: "info pair count exceeds the frame",
                ..
            })
        ));
    }

    #[test]
    fn frame_errors_map_to_codes() {
        assert_eq!(
            ErrorCode::for_frame_error(&FrameError::TooLarge {
                limit: Limit::Key,
                len: 1,
                max: 0
            }),
            ErrorCode::TooLarge
        );
        assert_eq!(
            ErrorCode::for_frame_error(&FrameError::UnknownKind(0x50)),
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn error_code_display() {
        assert_eq!(
            ErrorCode::NotMaster {
                master: "10.0.0.1:7000".into()
            }
            .to_string(),
            "not the master (master is 10.0.0.1:7000)"
        );
        assert_eq!(ErrorCode::Unknown(77).to_string(), "unknown error code 77");
    }
}
