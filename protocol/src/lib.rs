//! The duokv wire format.
//!
//! duokv is a replicated key-value store: a master takes writes and streams
//! them to a slave. This crate is the language its nodes and clients speak:
//! a binary, length-prefixed protocol with one byte order everywhere
//! (big-endian, network order) and never a `usize` on the wire. The byte-by-
//! byte description, with diagrams, is `protocol/PROTOCOL.md`.
//!
//! It is a pure library: no sockets, no threads, no global state. It encodes
//! into `Vec<u8>`, decodes from `&[u8]`, and offers blocking helpers over any
//! [`std::io::Read`] or [`std::io::Write`]. The server, the client and the
//! replication code in the root crate bring their own connections.
//!
//! # A connection from the top
//!
//! 1. The connecting side sends a [`Handshake`] ([`MAGIC`], [`VERSION`], its
//!    [`Role`]); the server answers with a [`HandshakeReply`] (its version, a
//!    [`HandshakeStatus`], its [`NodeRole`]). A wrong magic or version is a
//!    typed [`HandshakeError`], so the server can say why before it closes.
//! 2. Then both sides exchange [`Frame`]s: `length u32 | kind u8 |
//!    request_id u64 | body`. A client sends [`Request`]s; the server answers
//!    each with a [`Response`] carrying the same request id.
//! 3. Replication uses the same handshake and frames with other messages:
//!    the master dials its slave with [`Role::Replica`], the slave sends a
//!    [`Replication::Hello`] saying where it stands, and the master answers
//!    with a stream of [`Replication::Append`]s (or a snapshot first), which
//!    the slave acknowledges with cumulative [`Replication::Ack`]s. See
//!    [`replication`] for the whole exchange.
//!
//! # Decoding without trusting the peer
//!
//! Decoding is done in two steps, after mini-redis. [`Frame::check`] looks at
//! a buffer without allocating and returns the length of the frame at its
//! start, or [`FrameError::Incomplete`] when more bytes are needed (which is
//! not a fault), or a real error ([`FrameError::TooLarge`],
//! [`FrameError::UnknownKind`], [`FrameError::Malformed`]) when the bytes can
//! never be a frame. [`Frame::parse`] then builds the frame. The length prefix
//! is checked against [`MAX_FRAME_LEN`] before anything is allocated, every
//! inner length is checked against the bytes left and its own cap, and no
//! input makes decoding panic (a property test feeds it arbitrary bytes).
//!
//! For blocking streams, [`read_frame`] returns `Ok(None)` on a clean end of
//! stream between frames and [`Error::UnexpectedEof`] inside one;
//! [`write_frame`] writes a frame in one `write_all`.
//!
//! # Layout
//!
//! - [`handshake`]: [`Handshake`], [`HandshakeReply`] and their enums, with
//!   [`MAGIC`].
//! - [`frame`]: the [`Frame`] and its [`Message`], [`Frame::check`] /
//!   [`Frame::parse`] / [`Frame::encode`], [`read_frame`] and [`write_frame`].
//! - [`message`]: the bodies of a client connection: [`Request`],
//!   [`Response`], [`WriteReceipt`], [`ErrorCode`], and the [`Kind`] byte
//!   with its three ranges.
//! - [`replication`]: the bodies of the replication stream: [`Replication`]
//!   and the [`ReplicatedOp`] an append carries.
//! - [`resp`]: the other protocol of the server's `--resp-listen` port,
//!   RESP (Redis's), as a server reads it: [`resp::check_request`] and
//!   [`resp::parse_request`] under [`RespLimits`], and [`RespReply`] to
//!   answer. Only the framing; the commands are the server's.
//! - [`error`]: [`FrameError`], [`HandshakeError`] and the I/O-level
//!   [`Error`]; for RESP, [`RespRequestError`] and [`RespProtocolError`].
//! - `codec` (private): the bounds-checked big-endian reader and writers every
//!   other module goes through.
//!
//! Everything public is re-exported at the crate root, except the two RESP
//! functions, which read best with their module's name
//! (`resp::parse_request`) beside the native [`Request`].
//!
//! # Example
//!
//! Encode a request frame, decode it back from the bytes, and do the same
//! through `Read`/`Write`:
//!
//! ```
//! use duokv_protocol::{Frame, FrameError, Request, read_frame, write_frame};
//!
//! # fn main() -> Result<(), duokv_protocol::Error> {
//! let frame = Frame::request(
//!     42,
//!     Request::Put { key: b"greeting".to_vec(), value: b"hello".to_vec() },
//! );
//!
//! // Into a byte buffer and back, in two steps.
//! let mut buf = Vec::new();
//! frame.encode(&mut buf)?;
//! let len = Frame::check(&buf)?;
//! assert_eq!(len, buf.len());
//! assert_eq!(Frame::parse(&buf[..len])?, frame);
//!
//! // A prefix of a frame is not an error, only incomplete.
//! assert_eq!(Frame::check(&buf[..len - 1]), Err(FrameError::Incomplete));
//!
//! // Through a blocking writer and reader.
//! let mut wire = Vec::new();
//! write_frame(&mut wire, &frame)?;
//! let mut reader = &wire[..];
//! assert_eq!(read_frame(&mut reader)?, Some(frame));
//! assert_eq!(read_frame(&mut reader)?, None); // clean end of stream
//! # Ok(())
//! # }
//! ```

mod codec;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod handshake_fields;
pub mod message;
pub mod replication;
pub mod resp;

pub use error::{Error, FrameError, HandshakeError, Limit, RespProtocolError, RespRequestError};
pub use frame::{Frame, Message, read_frame, read_frame_within, write_frame};
pub use handshake::{
    Handshake, HandshakeReply, HandshakeStatus, MAGIC, MAX_REASON_LEN, NodeRole, Role,
};
pub use handshake_fields::{
    HandshakeFields, HistoryAncestor, MAX_AUTH_TOKEN_LEN, MAX_HISTORY_ANCESTORS,
    MAX_MASTER_ADDR_LEN, StreamFields,
};
pub use message::{
    ErrorCode, Kind, MaxStaleness, ModeCode, ReadAfter, ReadPoint, Request, Response, WriteReceipt,
};
pub use replication::{FEATURE_COMMIT_NOTICES, ReplicatedOp, Replication};
pub use resp::{RespLimits, RespReply, RespVersion};

/// The protocol version spoken by this crate, sent in every handshake.
pub const VERSION: u16 = 1;

/// The largest key, in bytes (64 KiB). The storage crate has the same
/// number; the two crates do not depend on each other.
pub const MAX_KEY_LEN: u32 = 64 * 1024;

/// The largest value, in bytes (16 MiB). The storage crate has the same
/// number.
pub const MAX_VALUE_LEN: u32 = 16 * 1024 * 1024;

/// The largest frame `length` (the bytes after the length prefix: kind,
/// request id and body), 32 MiB. It is comfortably above the largest
/// message (a [`MAX_KEY_LEN`] key and a [`MAX_VALUE_LEN`] value with their
/// prefixes, the 9-byte header and, for a [`Replication::Append`], a seq and
/// an op byte: about 16.07 MiB), and is checked before a buffer is allocated
/// for a frame.
pub const MAX_FRAME_LEN: u32 = 32 * 1024 * 1024;

// The cap must leave room for the largest request and the largest append
// (header, seq, op byte, key, value); checked at compile time.
const _: () = assert!(MAX_FRAME_LEN as u64 > 9 + 4 + MAX_KEY_LEN as u64 + 4 + MAX_VALUE_LEN as u64);
const _: () =
    assert!(MAX_FRAME_LEN as u64 > 9 + 8 + 1 + 4 + MAX_KEY_LEN as u64 + 4 + MAX_VALUE_LEN as u64);
