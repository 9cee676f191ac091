//! Framing: how one message is delimited on a byte stream, and the two-step
//! decoder that finds it there.
//!
//! Every message after the handshake travels in a frame:
//!
//! ```text
//! length u32 | kind u8 | request_id u64 | body (length - 9 bytes)
//! ```
//!
//! `length` counts everything after itself. Decoding follows mini-redis:
//! [`Frame::check`] looks at a buffer without allocating and says whether a
//! whole frame is there ([`FrameError::Incomplete`] if not, a real error if
//! the bytes can never be a frame); [`Frame::parse`] then builds the
//! [`Frame`]. A server that reads into its own buffer calls the two in a
//! loop; a blocking caller uses [`read_frame`] and [`write_frame`] instead.
//!
//! The length prefix is compared with [`MAX_FRAME_LEN`] as soon as its four
//! bytes are there, before anything is allocated for the frame, so a peer
//! cannot make us reserve memory by declaring a huge frame.

use std::io::{self, Read, Write};

use byteorder::{ByteOrder, NetworkEndian};

use crate::MAX_FRAME_LEN;
use crate::codec::{Reader, put_u8, put_u32, put_u64};
use crate::error::{Error, FrameError, Limit};
use crate::message::{Kind, Request, Response};
use crate::replication::Replication;

/// Bytes of the length prefix.
const PREFIX_LEN: usize = 4;
/// Bytes counted by `length` before the body: kind (1) and request id (8).
const HEADER_LEN: u32 = 9;
/// How much [`read_frame`] reserves before the first body bytes arrive.
const FIRST_CHUNK: usize = 64 * 1024;
/// Bytes from the start of a frame to the start of its body.
const BODY_OFFSET: usize = PREFIX_LEN + HEADER_LEN as usize;

/// What a frame carries: a request or a response on a client connection, or
/// a message of the replication stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message {
    /// A client's request.
    Request(Request),
    /// A server's response.
    Response(Response),
    /// A message between a master and its slave, on the connection the
    /// master opened with [`Role::Replica`](crate::Role::Replica).
    Replication(Replication),
}

impl Message {
    /// The kind byte of this message's frame.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Request(r) => r.kind(),
            Message::Response(r) => r.kind(),
            Message::Replication(r) => r.kind(),
        }
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Self {
        Message::Request(r)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Self {
        Message::Response(r)
    }
}

impl From<Replication> for Message {
    fn from(r: Replication) -> Self {
        Message::Replication(r)
    }
}

/// One message with the request id that ties a response to its request.
///
/// A client picks the ids (a counter starting at 1 does); the server copies
/// the id of each request into the frame of its response, so a client may
/// have several requests in flight on one connection and must match
/// responses by id. Id 0 is left to the server: it marks an error frame
/// about input that could not be decoded (see `PROTOCOL.md`, "Bad input").
///
/// Replication frames are not matched by id: their sender puts the
/// message's sequence number there, or 0 (see [`Replication::seq`]), and
/// their receiver ignores it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The id chosen by the client and echoed by the server; informational
    /// only on the replication stream.
    pub request_id: u64,
    /// The request, response or replication message.
    pub message: Message,
}

impl Frame {
    /// A frame carrying a request.
    pub fn request(request_id: u64, request: Request) -> Self {
        Frame {
            request_id,
            message: Message::Request(request),
        }
    }

    /// A frame carrying a response.
    pub fn response(request_id: u64, response: Response) -> Self {
        Frame {
            request_id,
            message: Message::Response(response),
        }
    }

    /// A frame carrying a replication message. By convention `request_id` is
    /// `replication.seq().unwrap_or(0)`; receivers ignore it.
    pub fn replication(request_id: u64, replication: Replication) -> Self {
        Frame {
            request_id,
            message: Message::Replication(replication),
        }
    }

    /// The kind byte of this frame.
    pub fn kind(&self) -> Kind {
        self.message.kind()
    }

    /// Checks whether `buf` starts with a whole frame, without allocating,
    /// and returns that frame's length in bytes (length prefix included) so
    /// the caller knows how far to advance.
    ///
    /// Errors are reported as soon as the bytes that prove them are there:
    /// a length above [`MAX_FRAME_LEN`] as soon as the 4-byte prefix is
    /// ([`FrameError::TooLarge`]), an unknown kind as soon as the 5th byte
    /// is ([`FrameError::UnknownKind`]). Otherwise a short buffer gives
    /// [`FrameError::Incomplete`]. The body is not examined: that is
    /// [`Frame::parse`]'s job, and since the length is known a malformed body
    /// never loses the stream's framing.
    pub fn check(buf: &[u8]) -> Result<usize, FrameError> {
        let Some(prefix) = buf.get(..PREFIX_LEN) else {
            return Err(FrameError::Incomplete);
        };
        let len = NetworkEndian::read_u32(prefix);
        check_len(len, MAX_FRAME_LEN)?;
        if let Some(&kind) = buf.get(PREFIX_LEN) {
            Kind::from_u8(kind).ok_or(FrameError::UnknownKind(kind))?;
        }
        // `len <= MAX_FRAME_LEN`, far below `usize::MAX` on any target that
        // can hold such a buffer.
        let total = usize::try_from(len)
            .ok()
            .and_then(|len| len.checked_add(PREFIX_LEN))
            .ok_or(FrameError::TooLarge {
                limit: Limit::Frame,
                len: u64::from(len),
                max: u64::from(MAX_FRAME_LEN),
            })?;
        if buf.len() < total {
            return Err(FrameError::Incomplete);
        }
        Ok(total)
    }

    /// Decodes the frame at the start of `buf`; bytes after it are left
    /// alone (use the length from [`Frame::check`] to advance past it).
    ///
    /// Every length inside the body is checked against the bytes left in the
    /// frame and against its cap (a key above [`MAX_KEY_LEN`](crate::MAX_KEY_LEN)
    /// is [`FrameError::TooLarge`]); strings must be UTF-8; bytes left over
    /// after the body are [`FrameError::Malformed`]. No input makes this
    /// panic, and nothing is allocated for a length the frame's bytes do not
    /// back.
    pub fn parse(buf: &[u8]) -> Result<Frame, FrameError> {
        let total = Frame::check(buf)?;
        let frame = buf.get(..total).ok_or(FrameError::Incomplete)?;
        let mut header = Reader::new(frame.get(PREFIX_LEN..).unwrap_or_default(), PREFIX_LEN);
        let kind_byte = header.u8()?;
        let kind = Kind::from_u8(kind_byte).ok_or(FrameError::UnknownKind(kind_byte))?;
        let request_id = header.u64()?;

        let mut body = Reader::new(frame.get(BODY_OFFSET..).unwrap_or_default(), BODY_OFFSET);
        let message = if kind.is_request() {
            Request::decode_body(kind, &mut body)?.map(Message::Request)
        } else if kind.is_replication() {
            Replication::decode_body(kind, &mut body)?.map(Message::Replication)
        } else {
            Response::decode_body(kind, &mut body)?.map(Message::Response)
        };
        // Every known kind is in exactly one of the three ranges, so `None`
        // cannot happen; report it as an unknown kind rather than panic.
        let message = message.ok_or(FrameError::UnknownKind(kind_byte))?;
        body.finish()?;
        Ok(Frame {
            request_id,
            message,
        })
    }

    /// Appends the encoded frame to `dst`.
    ///
    /// Fails with [`FrameError::TooLarge`] if a key, a value or the whole
    /// frame is above its cap, so a sender learns of it before the peer
    /// does. On error `dst` is left as it was.
    pub fn encode(&self, dst: &mut Vec<u8>) -> Result<(), FrameError> {
        let start = dst.len();
        let result = self.encode_into(dst, start);
        if result.is_err() {
            dst.truncate(start);
        }
        result
    }

    fn encode_into(&self, dst: &mut Vec<u8>, start: usize) -> Result<(), FrameError> {
        put_u32(dst, 0); // patched below, once the body's length is known
        put_u8(dst, self.kind().as_u8());
        put_u64(dst, self.request_id);
        match &self.message {
            Message::Request(r) => r.encode_body(dst)?,
            Message::Response(r) => r.encode_body(dst)?,
            Message::Replication(r) => r.encode_body(dst)?,
        }
        let written = dst.len() - start - PREFIX_LEN;
        let len = u32::try_from(written)
            .ok()
            .filter(|&len| len <= MAX_FRAME_LEN)
            .ok_or(FrameError::TooLarge {
                limit: Limit::Frame,
                len: u64::try_from(written).unwrap_or(u64::MAX),
                max: u64::from(MAX_FRAME_LEN),
            })?;
        NetworkEndian::write_u32(&mut dst[start..start + PREFIX_LEN], len);
        Ok(())
    }

    /// The encoded frame as a new buffer; see [`Frame::encode`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, FrameError> {
        let mut dst = Vec::new();
        self.encode(&mut dst)?;
        Ok(dst)
    }
}

/// Checks a declared frame length against the header size and the cap.
fn check_len(len: u32, max: u32) -> Result<(), FrameError> {
    if len > max {
        return Err(FrameError::TooLarge {
            limit: Limit::Frame,
            len: u64::from(len),
            max: u64::from(max),
        });
    }
    if len < HEADER_LEN {
        return Err(FrameError::Malformed {
            offset: 0,
            reason: "length is shorter than the frame header",
        });
    }
    Ok(())
}

/// Reads one frame from a blocking reader.
///
/// Returns `Ok(None)` on a clean end of stream (the peer closed between
/// frames) and [`Error::UnexpectedEof`] if the stream ends inside a frame.
/// The length prefix is checked against [`MAX_FRAME_LEN`] before anything is
/// allocated, and the buffer then grows only as bytes actually arrive (and
/// never past the declared length), so a peer that declares a large frame
/// and sends nothing costs at most 64 KiB.
///
/// Meant for blocking streams; on a non-blocking one, where a read may stop
/// half-way, buffer the bytes yourself and use [`Frame::check`] and
/// [`Frame::parse`].
pub fn read_frame<R: Read + ?Sized>(reader: &mut R) -> Result<Option<Frame>, Error> {
    read_frame_within(reader, MAX_FRAME_LEN)
}

/// [`read_frame`] with a lower cap on the length prefix: a frame whose
/// length is above `max_len` (or above [`MAX_FRAME_LEN`], whichever is
/// lower) is [`FrameError::TooLarge`] with that cap as its `max`, decided
/// from the prefix alone. For a server that wants less memory per
/// connection than the protocol allows.
pub fn read_frame_within<R: Read + ?Sized>(
    reader: &mut R,
    max_len: u32,
) -> Result<Option<Frame>, Error> {
    let mut prefix = [0u8; PREFIX_LEN];
    let got = read_full(reader, &mut prefix)?;
    if got == 0 {
        return Ok(None);
    }
    if got < PREFIX_LEN {
        return Err(Error::UnexpectedEof {
            read: got as u64,
            expected: PREFIX_LEN as u64,
        });
    }
    let len = NetworkEndian::read_u32(&prefix);
    check_len(len, max_len.min(MAX_FRAME_LEN))?;

    let buf = read_rest(reader, prefix, len)?;
    Ok(Some(Frame::parse(&buf)?))
}

/// Reads the `len` bytes that follow a frame's length `prefix` and returns
/// the whole frame (prefix included). The buffer's capacity follows the bytes
/// that arrived (at most double, after the first 64 KiB) and never exceeds
/// the frame.
fn read_rest<R: Read + ?Sized>(
    reader: &mut R,
    prefix: [u8; PREFIX_LEN],
    len: u32,
) -> Result<Vec<u8>, Error> {
    let total = PREFIX_LEN + len as usize;
    let mut buf = Vec::with_capacity(total.min(FIRST_CHUNK));
    buf.extend_from_slice(&prefix);
    while buf.len() < total {
        // Grow geometrically as bytes arrive, but reserve exactly, so the
        // buffer never holds more than the declared frame.
        let want = (total - buf.len()).min(buf.len().max(FIRST_CHUNK));
        buf.reserve_exact(want);
        let got = Read::take(&mut *reader, want as u64).read_to_end(&mut buf)?;
        if got < want {
            return Err(Error::UnexpectedEof {
                read: buf.len() as u64,
                expected: total as u64,
            });
        }
    }
    Ok(buf)
}

/// Encodes `frame` and writes it with a single `write_all`.
///
/// Does not flush: over a `TcpStream` the single write is enough; over a
/// `BufWriter`, flush when you want the bytes to leave.
pub fn write_frame<W: Write + ?Sized>(writer: &mut W, frame: &Frame) -> Result<(), Error> {
    let buf = frame.to_bytes()?;
    writer.write_all(&buf)?;
    Ok(())
}

/// Fills `buf` from `reader` until it is full or the stream ends; returns
/// how many bytes were read. Retries on `Interrupted`.
pub(crate) fn read_full<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(id: u64) -> Frame {
        Frame::request(id, Request::Ping)
    }

    #[test]
    fn ping_bytes_are_exact() {
        let bytes = ping(0x0102_0304_0506_0708).to_bytes().unwrap();
        assert_eq!(bytes, [0, 0, 0, 9, 0x06, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(Frame::check(&bytes), Ok(13));
        assert_eq!(Frame::parse(&bytes), Ok(ping(0x0102_0304_0506_0708)));
    }

    #[test]
    fn a_lower_cap_refuses_from_the_prefix_and_never_raises_the_protocol_one() {
        let put = Frame::request(
            1,
            Request::Put {
                key: b"k".to_vec(),
                value: vec![0; 100],
            },
        );
        let bytes = put.to_bytes().unwrap();
        let len = bytes.len() as u32 - 4;
        assert_eq!(
            read_frame_within(&mut &bytes[..], len).unwrap(),
            Some(put.clone())
        );
        match read_frame_within(&mut &bytes[..4], len - 1) {
            Err(Error::Frame(FrameError::TooLarge { len: l, max, .. })) => {
                assert_eq!((l, max), (u64::from(len), u64::from(len - 1)))
            }
            other => panic!("{other:?}"),
        }
        let huge = (MAX_FRAME_LEN + 1).to_be_bytes();
        match read_frame_within(&mut &huge[..], u32::MAX) {
            Err(Error::Frame(FrameError::TooLarge { max, .. })) => {
                assert_eq!(max, u64::from(MAX_FRAME_LEN))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn read_request_bytes_are_exact() {
        let f = Frame::request(
            7,
            Request::Read {
                key: b"ab".to_vec(),
                after: None,
                fresh: None,
            },
        );
        let bytes = f.to_bytes().unwrap();
        assert_eq!(
            bytes,
            [
                0, 0, 0, 15, 0x02, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 2, b'a', b'b'
            ]
        );
    }

    #[test]
    fn check_reports_the_first_frame_of_many() {
        let mut buf = ping(1).to_bytes().unwrap();
        ping(2).encode(&mut buf).unwrap();
        assert_eq!(Frame::check(&buf), Ok(13));
        assert_eq!(Frame::parse(&buf), Ok(ping(1)));
        assert_eq!(Frame::parse(&buf[13..]), Ok(ping(2)));
    }

    #[test]
    fn length_below_header_is_malformed() {
        let buf = [0, 0, 0, 8, 0x06, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            Frame::check(&buf),
            Err(FrameError::Malformed { offset: 0, .. })
        ));
    }

    #[test]
    fn unknown_kind_is_reported_early() {
        assert_eq!(
            Frame::check(&[0, 0, 0, 9, 0x4C]),
            Err(FrameError::UnknownKind(0x4C))
        );
        assert_eq!(
            Frame::check(&[0, 0, 0, 9, 0x00]),
            Err(FrameError::UnknownKind(0))
        );
    }

    #[test]
    fn trailing_body_bytes_are_malformed() {
        // A ping whose length claims one body byte.
        let buf = [0, 0, 0, 10, 0x06, 0, 0, 0, 0, 0, 0, 0, 1, 0xEE];
        assert_eq!(Frame::check(&buf), Ok(14));
        assert_eq!(
            Frame::parse(&buf),
            Err(FrameError::Malformed {
                offset: 13,
                reason: "trailing bytes after the body"
            })
        );
    }

    #[test]
    fn encode_error_leaves_dst_untouched() {
        let mut dst = vec![1, 2, 3];
        let f = Frame::request(
            1,
            Request::Read {
                key: vec![0; crate::MAX_KEY_LEN as usize + 1],
                after: None,
                fresh: None,
            },
        );
        assert!(matches!(
            f.encode(&mut dst),
            Err(FrameError::TooLarge {
                limit: Limit::Key,
                ..
            })
        ));
        assert_eq!(dst, [1, 2, 3]);
    }

    #[test]
    fn read_rest_never_reserves_past_the_frame() {
        for len in [9u32, 1000, 64 * 1024, 64 * 1024 + 1, 300_000, 1 << 20] {
            let body = vec![0x5A; len as usize];
            // Reads of odd sizes, so the chunks do not line up with the frame.
            let mut reader = io::BufReader::with_capacity(1237, &body[..]);
            let buf = read_rest(&mut reader, len.to_be_bytes(), len).unwrap();
            assert_eq!(buf.len(), 4 + len as usize);
            assert_eq!(buf.capacity(), buf.len(), "len {len}");
        }
        // A peer that declares 1 MiB and sends 10 bytes.
        let mut reader = &[0u8; 10][..];
        match read_rest(&mut reader, (1u32 << 20).to_be_bytes(), 1 << 20) {
            Err(Error::UnexpectedEof { read: 14, expected }) => {
                assert_eq!(expected, 4 + (1 << 20));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn read_full_retries_interrupted() {
        struct Flaky(u8);
        impl Read for Flaky {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.0 += 1;
                if self.0 % 2 == 1 {
                    Err(io::ErrorKind::Interrupted.into())
                } else {
                    buf[0] = self.0;
                    Ok(1)
                }
            }
        }
        let mut buf = [0; 3];
        assert_eq!(read_full(&mut Flaky(0), &mut buf).unwrap(), 3);
        assert_eq!(buf, [2, 4, 6]);
    }
}
