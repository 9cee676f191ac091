//! The errors of this crate, written by hand so that each one says exactly
//! what went wrong and where.
//!
//! There are three layers, from the innermost out:
//!
//! - [`FrameError`]: the bytes of a frame (or a frame about to be encoded)
//!   break the format. [`FrameError::Incomplete`] is the odd one out: it is
//!   not a fault, it only means "read more bytes and try again".
//! - [`HandshakeError`]: the same for the handshake and its reply, with the
//!   two typed refusals a server needs ([`HandshakeError::BadMagic`] and
//!   [`HandshakeError::UnsupportedVersion`]).
//! - [`Error`]: what the blocking helpers ([`read_frame`](crate::read_frame),
//!   [`write_frame`](crate::write_frame), [`Handshake::read_from`](crate::Handshake::read_from)...)
//!   return: one of the two above, an I/O error, or a peer that hung up in
//!   the middle of a message.
//!
//! The RESP port has errors of its own, apart from the three layers above
//! because they describe another protocol: [`RespRequestError`] (need more
//! bytes, or invalid) and the reason a request is invalid,
//! [`RespProtocolError`], whose words follow Redis's own "Protocol error"
//! replies so that Redis clients show what they are used to.
//!
//! Following the Rust API guidelines, `Display` messages are lowercase, carry
//! no trailing period, and do not repeat the text of their `source()`.

use std::fmt;
use std::io;

/// Which size limit a [`FrameError::TooLarge`] refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// The frame's length prefix, capped by [`MAX_FRAME_LEN`](crate::MAX_FRAME_LEN).
    Frame,
    /// A key, capped by [`MAX_KEY_LEN`](crate::MAX_KEY_LEN).
    Key,
    /// A value, capped by [`MAX_VALUE_LEN`](crate::MAX_VALUE_LEN).
    Value,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Frame => "frame",
            Limit::Key => "key",
            Limit::Value => "value",
        })
    }
}

/// Why a frame could not be decoded (or encoded).
///
/// Returned by [`Frame::check`](crate::Frame::check),
/// [`Frame::parse`](crate::Frame::parse) and
/// [`Frame::encode`](crate::Frame::encode). Every variant but
/// [`Incomplete`](FrameError::Incomplete) means the bytes can never become a
/// valid frame: a server answers with an error frame and closes the
/// connection (see `PROTOCOL.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The buffer holds the start of a frame but not all of it yet: read more
    /// bytes and call again. This is not a fault.
    Incomplete,
    /// A length is above its cap. For [`Limit::Frame`] this is detected from
    /// the 4-byte length prefix alone, before any buffer is allocated.
    TooLarge {
        /// Which limit was exceeded.
        limit: Limit,
        /// The length that was declared (or, when encoding, found).
        len: u64,
        /// The largest length allowed.
        max: u64,
    },
    /// The kind byte names no message this version knows, including the
    /// reserved ranges (see [`Kind`](crate::Kind)).
    UnknownKind(u8),
    /// The frame is well delimited but its contents break the format.
    Malformed {
        /// Byte offset of the offending field from the first byte of the
        /// frame (the first byte of its length prefix).
        offset: u64,
        /// What is wrong, in a few lowercase words.
        reason: &'static str,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Incomplete => f.write_str("frame is incomplete"),
            FrameError::TooLarge { limit, len, max } => {
                write!(f, "{limit} of {len} bytes exceeds the limit of {max} bytes")
            }
            FrameError::UnknownKind(kind) => write!(f, "unknown frame kind {kind:#04x}"),
            FrameError::Malformed { offset, reason } => {
                write!(f, "malformed frame at byte {offset}: {reason}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Why a [`Handshake`](crate::Handshake) or
/// [`HandshakeReply`](crate::HandshakeReply) could not be decoded (or
/// encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The buffer holds the start of a handshake but not all of it yet: read
    /// more bytes and call again. This is not a fault.
    Incomplete,
    /// The first four bytes are not [`MAGIC`](crate::MAGIC): the peer does
    /// not speak duokv at all. The server replies with
    /// [`HandshakeStatus::BadMagic`](crate::HandshakeStatus::BadMagic) and
    /// closes.
    BadMagic([u8; 4]),
    /// The peer speaks a protocol version this crate does not. The server
    /// replies with
    /// [`HandshakeStatus::UnsupportedVersion`](crate::HandshakeStatus::UnsupportedVersion)
    /// and closes.
    UnsupportedVersion(u16),
    /// When encoding: the `extra` bytes do not fit their u16 length prefix.
    TooLarge {
        /// The length of the `extra` bytes.
        len: u64,
        /// The largest length allowed (`u16::MAX`).
        max: u64,
    },
    /// The `extra` bytes break the field format
    /// ([`HandshakeFields`](crate::HandshakeFields)). The server replies
    /// with [`HandshakeStatus::Malformed`](crate::HandshakeStatus::Malformed)
    /// and closes.
    MalformedExtra {
        /// Where in `extra` the broken field starts.
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl HandshakeError {
    /// The status a server should put in its
    /// [`HandshakeReply`](crate::HandshakeReply) before closing, if this error
    /// has one ([`BadMagic`](HandshakeError::BadMagic) and
    /// [`UnsupportedVersion`](HandshakeError::UnsupportedVersion) do).
    pub fn status(&self) -> Option<crate::HandshakeStatus> {
        match self {
            HandshakeError::BadMagic(_) => Some(crate::HandshakeStatus::BadMagic),
            HandshakeError::UnsupportedVersion(_) => {
                Some(crate::HandshakeStatus::UnsupportedVersion)
            }
            HandshakeError::MalformedExtra { .. } => Some(crate::HandshakeStatus::Malformed),
            HandshakeError::Incomplete | HandshakeError::TooLarge { .. } => None,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Incomplete => f.write_str("handshake is incomplete"),
            HandshakeError::BadMagic(magic) => {
                write!(f, "bad magic {magic:02x?}, the peer does not speak duokv")
            }
            HandshakeError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "unsupported protocol version {v} (this side speaks {})",
                    crate::VERSION
                )
            }
            HandshakeError::TooLarge { len, max } => {
                write!(
                    f,
                    "handshake extra of {len} bytes exceeds the limit of {max} bytes"
                )
            }
            HandshakeError::MalformedExtra { offset, reason } => {
                write!(
                    f,
                    "malformed handshake field at byte {offset} of extra: {reason}"
                )
            }
        }
    }
}

impl std::error::Error for HandshakeError {}

/// The error of the blocking helpers that read from or write to a stream.
#[derive(Debug)]
pub enum Error {
    /// Reading or writing the underlying stream failed.
    Io(io::Error),
    /// A frame broke the format (never [`FrameError::Incomplete`] here: the
    /// blocking helpers read until a frame is whole or the stream ends).
    Frame(FrameError),
    /// A handshake or handshake reply broke the format (never
    /// [`HandshakeError::Incomplete`] here).
    Handshake(HandshakeError),
    /// The stream ended in the middle of a message: the peer hung up or the
    /// connection broke. (A clean end between frames is not an error:
    /// [`read_frame`](crate::read_frame) returns `Ok(None)`.)
    UnexpectedEof {
        /// How many bytes of the message had arrived.
        read: u64,
        /// How many bytes the message needed, as far as was known when the
        /// stream ended (at least this many).
        expected: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(_) => f.write_str("i/o error on the connection"),
            Error::Frame(_) => f.write_str("invalid frame"),
            Error::Handshake(_) => f.write_str("invalid handshake"),
            Error::UnexpectedEof { read, expected } => write!(
                f,
                "connection closed after {read} of {expected} bytes of a message"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Frame(e) => Some(e),
            Error::Handshake(e) => Some(e),
            Error::UnexpectedEof { .. } => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<FrameError> for Error {
    fn from(e: FrameError) -> Self {
        Error::Frame(e)
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Error::Handshake(e)
    }
}

/// Why [`resp::check_request`](crate::resp::check_request) or
/// [`resp::parse_request`](crate::resp::parse_request) returned no request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespRequestError {
    /// The buffer holds the start of a request but not all of it yet: read
    /// more bytes and call again. This is not a fault.
    Incomplete,
    /// The bytes can never become a request within the server's limits. A
    /// server answers with [`RespProtocolError::to_reply`] and closes the
    /// connection, as Redis does.
    Invalid(RespProtocolError),
}

impl fmt::Display for RespRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespRequestError::Incomplete => f.write_str("incomplete RESP request"),
            RespRequestError::Invalid(_) => f.write_str("invalid RESP request"),
        }
    }
}

impl std::error::Error for RespRequestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RespRequestError::Incomplete => None,
            RespRequestError::Invalid(e) => Some(e),
        }
    }
}

impl From<RespProtocolError> for RespRequestError {
    fn from(e: RespProtocolError) -> Self {
        RespRequestError::Invalid(e)
    }
}

/// Why bytes can never be a RESP request (see `PROTOCOL.md`, section 12).
///
/// Each reason is decided as soon as the bytes that prove it have arrived,
/// and from a declared length alone when a length is over its limit, so a
/// server never waits for (or buffers) bytes it will refuse. `Display`
/// gives Redis's words where Redis has some (`invalid multibulk length`,
/// `invalid bulk length`, `too big inline request`, `unbalanced quotes in
/// request`, `expected '$', got 'x'`), followed by the limit when one was
/// broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespProtocolError {
    /// The count line of an array (`*N\r\n`) is not a decimal integer
    /// (an optional `-`, then digits without a leading zero, within an
    /// `i64`), or is below -1.
    BadArrayLength,
    /// More arguments than
    /// [`RespLimits::max_args`](crate::RespLimits::max_args).
    TooManyArgs {
        /// The count an array declared; for an inline command, the first
        /// count over the limit.
        count: u64,
        /// The limit.
        max: usize,
    },
    /// An element of a request array is not a bulk string: its first byte
    /// is not `$`.
    ExpectedBulk {
        /// The byte found instead.
        got: u8,
    },
    /// The length line of a bulk string (`$N\r\n`) is not a decimal
    /// integer, or is negative (a null bulk string is no argument).
    BadBulkLength,
    /// A bulk string longer than
    /// [`RespLimits::max_bulk_len`](crate::RespLimits::max_bulk_len),
    /// refused from its length line before its bytes arrive.
    BulkTooLong {
        /// The length declared.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A length line's `\r` or a bulk string's bytes are not followed by
    /// `\r\n`.
    MissingCrlf {
        /// Offset of the byte that should be `\r` (or of the `\r` not
        /// followed by `\n`) from the start of the request.
        offset: usize,
    },
    /// An inline command longer than
    /// [`RespLimits::max_inline_len`](crate::RespLimits::max_inline_len),
    /// line ending excluded.
    InlineTooLong {
        /// The limit.
        max: usize,
    },
    /// An inline command with a quote that is not closed, or a closing
    /// quote followed by something other than a space or the end of the line.
    UnbalancedQuotes,
    /// A request longer than
    /// [`RespLimits::max_request_len`](crate::RespLimits::max_request_len),
    /// refused as soon as a length or the bytes so far prove it.
    RequestTooLong {
        /// The limit.
        max: usize,
    },
}

impl RespProtocolError {
    /// The error reply a server sends before it closes the connection:
    /// `-ERR Protocol error: ...`, as Redis words it.
    pub fn to_reply(&self) -> crate::RespReply {
        crate::RespReply::Error(format!("ERR Protocol error: {self}"))
    }
}

impl fmt::Display for RespProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespProtocolError::BadArrayLength => f.write_str("invalid multibulk length"),
            RespProtocolError::TooManyArgs { count, max } => write!(
                f,
                "invalid multibulk length {count}, the limit is {max} arguments"
            ),
            RespProtocolError::ExpectedBulk { got } => {
                write!(f, "expected '$', got '{}'", got.escape_ascii())
            }
            RespProtocolError::BadBulkLength => f.write_str("invalid bulk length"),
            RespProtocolError::BulkTooLong { len, max } => {
                write!(f, "invalid bulk length {len}, the limit is {max} bytes")
            }
            RespProtocolError::MissingCrlf { offset } => {
                write!(f, "expected '\\r\\n' at byte {offset}")
            }
            RespProtocolError::InlineTooLong { max } => {
                write!(f, "too big inline request, the limit is {max} bytes")
            }
            RespProtocolError::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            RespProtocolError::RequestTooLong { max } => {
                write!(f, "too big request, the limit is {max} bytes")
            }
        }
    }
}

impl std::error::Error for RespProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn display_is_lowercase_without_trailing_period() {
        let errors: Vec<Box<dyn std::error::Error>> = vec![
            Box::new(FrameError::Incomplete),
            Box::new(FrameError::TooLarge {
                limit: Limit::Key,
                len: 70_000,
                max: 65_536,
            }),
            Box::new(FrameError::UnknownKind(0x40)),
            Box::new(FrameError::Malformed {
                offset: 13,
                reason: "trailing bytes after the body",
            }),
            Box::new(HandshakeError::Incomplete),
            Box::new(HandshakeError::BadMagic(*b"GET ")),
            Box::new(HandshakeError::UnsupportedVersion(9)),
            Box::new(HandshakeError::TooLarge {
                len: 70_000,
                max: 65_535,
            }),
            Box::new(Error::Io(io::Error::other("boom"))),
            Box::new(Error::Frame(FrameError::UnknownKind(0))),
            Box::new(Error::Handshake(HandshakeError::UnsupportedVersion(2))),
            Box::new(Error::UnexpectedEof {
                read: 3,
                expected: 4,
            }),
            Box::new(RespRequestError::Incomplete),
            Box::new(RespRequestError::Invalid(
                RespProtocolError::UnbalancedQuotes,
            )),
            Box::new(RespProtocolError::BadArrayLength),
            Box::new(RespProtocolError::TooManyArgs { count: 9, max: 8 }),
            Box::new(RespProtocolError::ExpectedBulk { got: b'G' }),
            Box::new(RespProtocolError::BadBulkLength),
            Box::new(RespProtocolError::BulkTooLong { len: 9, max: 8 }),
            Box::new(RespProtocolError::MissingCrlf { offset: 3 }),
            Box::new(RespProtocolError::InlineTooLong { max: 8 }),
            Box::new(RespProtocolError::RequestTooLong { max: 8 }),
        ];
        for e in errors {
            let text = e.to_string();
            let first = text.chars().next().unwrap();
            assert!(!first.is_uppercase(), "{text:?}");
            assert!(!text.ends_with('.'), "{text:?}");
        }
    }

    #[test]
    fn source_is_the_wrapped_error_and_not_repeated() {
        let e = Error::from(io::Error::other("disk on fire"));
        assert_eq!(e.source().unwrap().to_string(), "disk on fire");
        assert!(!e.to_string().contains("disk on fire"));

        let e = Error::from(FrameError::UnknownKind(0x41));
        assert_eq!(e.source().unwrap().to_string(), "unknown frame kind 0x41");
        assert!(!e.to_string().contains("0x41"));

        let e = Error::from(HandshakeError::BadMagic(*b"HTTP"));
        assert!(e.source().is_some());
        assert!(
            Error::UnexpectedEof {
                read: 1,
                expected: 4
            }
            .source()
            .is_none()
        );
    }

    #[test]
    fn too_large_names_the_limit() {
        let e = FrameError::TooLarge {
            limit: Limit::Frame,
            len: u64::from(u32::MAX),
            max: 33_554_432,
        };
        assert_eq!(
            e.to_string(),
            "frame of 4294967295 bytes exceeds the limit of 33554432 bytes"
        );
    }

    #[test]
    fn handshake_errors_map_to_reply_statuses() {
        use crate::HandshakeStatus;
        assert_eq!(
            HandshakeError::BadMagic(*b"abcd").status(),
            Some(HandshakeStatus::BadMagic)
        );
        assert_eq!(
            HandshakeError::UnsupportedVersion(7).status(),
            Some(HandshakeStatus::UnsupportedVersion)
        );
        assert_eq!(HandshakeError::Incomplete.status(), None);
    }
}
