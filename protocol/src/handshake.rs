//! The handshake: the first bytes each side sends on a new connection, so
//! that a server knows at once whether its peer speaks duokv, which version,
//! and in which role (a client, or the master's replication stream).
//!
//! ```text
//! client -> server   Handshake       magic | version u16 | role u8 | flags u8 | extra_len u16 | extra
//! server -> client   HandshakeReply  magic | version u16 | status u8 | node_role u8 | extra_len u16 | extra
//! ```
//!
//! The magic and the version come first and are checked first: a peer that
//! is not duokv, or a newer one, is refused with a typed
//! [`HandshakeError`] before anything else is read, and the server answers
//! with a [`HandshakeReply`] whose status says why, then closes. The reply's
//! layout is frozen across versions for the same reason: whatever version
//! a client speaks, it can read why it was refused.
//!
//! Enumerations that a later version may extend ([`Role`], [`NodeRole`],
//! [`HandshakeStatus`]) decode unknown bytes to an `Unknown` variant rather
//! than failing, and leave the decision to the caller.

use std::io::{Read, Write};

use byteorder::{ByteOrder, NetworkEndian};

use crate::VERSION;
use crate::codec::{put_u8, put_u16};
use crate::error::{Error, HandshakeError};
use crate::frame::read_full;
use crate::handshake_fields::{self, HandshakeFields, StreamFields};

/// The four bytes every handshake and handshake reply starts with.
pub const MAGIC: [u8; 4] = *b"DUKV";

/// Bytes of a handshake (or reply) before its `extra` bytes.
const FIXED_LEN: usize = 10;

/// Who is connecting, as announced in the [`Handshake`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// 1: a client that sends requests and reads responses.
    Client,
    /// 2: the master opening the replication stream to a slave.
    Replica,
    /// A role byte this version does not know; a server refuses it with
    /// [`HandshakeStatus::UnsupportedRole`].
    Unknown(u8),
}

impl Role {
    /// The byte on the wire.
    pub fn as_u8(self) -> u8 {
        match self {
            Role::Client => 1,
            Role::Replica => 2,
            Role::Unknown(b) => b,
        }
    }

    /// The role for a byte; unknown bytes become [`Role::Unknown`].
    pub fn from_u8(byte: u8) -> Self {
        match byte {
            1 => Role::Client,
            2 => Role::Replica,
            b => Role::Unknown(b),
        }
    }
}

/// What a server is, as stated in its [`HandshakeReply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeRole {
    /// 1: a server with no replication configured.
    Standalone,
    /// 2: the master: takes writes and streams them to its slave.
    Master,
    /// 3: the slave: serves reads, refuses client writes with
    /// [`ErrorCode::NotMaster`](crate::ErrorCode::NotMaster).
    Slave,
    /// A node-role byte this version does not know.
    Unknown(u8),
}

impl NodeRole {
    /// The byte on the wire.
    pub fn as_u8(self) -> u8 {
        match self {
            NodeRole::Standalone => 1,
            NodeRole::Master => 2,
            NodeRole::Slave => 3,
            NodeRole::Unknown(b) => b,
        }
    }

    /// The node role for a byte; unknown bytes become [`NodeRole::Unknown`].
    pub fn from_u8(byte: u8) -> Self {
        match byte {
            1 => NodeRole::Standalone,
            2 => NodeRole::Master,
            3 => NodeRole::Slave,
            b => NodeRole::Unknown(b),
        }
    }
}

/// Whether the server accepted the connection, in its [`HandshakeReply`].
/// Every status but [`HandshakeStatus::Ok`] is followed by the server
/// closing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeStatus {
    /// 0: accepted; frames may follow.
    Ok,
    /// 1: the client's magic was wrong.
    BadMagic,
    /// 2: the server does not speak the client's version; the reply's
    /// `version` says which one it speaks.
    UnsupportedVersion,
    /// 3: the server does not accept this role (an unknown role, or a
    /// replication stream sent to a node that is not a slave).
    UnsupportedRole,
    /// 4: the server is at its connection limit.
    Busy,
    /// 5: the server is shutting down.
    ShuttingDown,
    /// 6: the handshake's `extra` bytes break the field format
    /// ([`HandshakeFields`]).
    Malformed,
    /// 7: the server wants the shared auth token and the handshake did not
    /// carry it, or carried another one.
    Unauthorized,
    /// 8: a slave holding data refuses a master whose history does not
    /// continue its own (no common ancestor): following it would erase
    /// that data. The reply's reason ([`HandshakeReply::reason`]) says
    /// which histories met.
    Diverged,
    /// 9: a slave refuses a second master while it follows another one, or
    /// a master that is not the one it was told to follow (`--master-addr`).
    /// The reply's reason says which.
    Fenced,
    /// 10: the server speaks TLS only on this port, and the handshake came
    /// in clear; sent in clear, with a reason saying so, before the
    /// connection is closed.
    TlsRequired,
    /// A status byte this version does not know (treat it as a refusal).
    Unknown(u8),
}

impl HandshakeStatus {
    /// The byte on the wire.
    pub fn as_u8(self) -> u8 {
        match self {
            HandshakeStatus::Ok => 0,
            HandshakeStatus::BadMagic => 1,
            HandshakeStatus::UnsupportedVersion => 2,
            HandshakeStatus::UnsupportedRole => 3,
            HandshakeStatus::Busy => 4,
            HandshakeStatus::ShuttingDown => 5,
            HandshakeStatus::Malformed => 6,
            HandshakeStatus::Unauthorized => 7,
            HandshakeStatus::Diverged => 8,
            HandshakeStatus::Fenced => 9,
            HandshakeStatus::TlsRequired => 10,
            HandshakeStatus::Unknown(b) => b,
        }
    }

    /// The status for a byte; unknown bytes become
    /// [`HandshakeStatus::Unknown`].
    pub fn from_u8(byte: u8) -> Self {
        match byte {
            0 => HandshakeStatus::Ok,
            1 => HandshakeStatus::BadMagic,
            2 => HandshakeStatus::UnsupportedVersion,
            3 => HandshakeStatus::UnsupportedRole,
            4 => HandshakeStatus::Busy,
            5 => HandshakeStatus::ShuttingDown,
            6 => HandshakeStatus::Malformed,
            7 => HandshakeStatus::Unauthorized,
            8 => HandshakeStatus::Diverged,
            9 => HandshakeStatus::Fenced,
            10 => HandshakeStatus::TlsRequired,
            b => HandshakeStatus::Unknown(b),
        }
    }
}

/// The longest reason a refusal carries, in bytes.
pub const MAX_REASON_LEN: usize = 1024;

/// Reply field tag of a refusal's reason (UTF-8).
const REPLY_TAG_REASON: u8 = 1;
/// Reply field tag of the stream features a slave takes up (u32).
const REPLY_TAG_FEATURES: u8 = 2;
/// Reply field tag of the term a refusing node follows or leads (u64).
const REPLY_TAG_TERM: u8 = 3;
/// Reply field tag of the address of the master a refusing node knows
/// (itself, when it is one), UTF-8.
const REPLY_TAG_MASTER: u8 = 4;

/// The first message a connecting peer sends.
///
/// The protocol version is not a field: encoding always writes [`VERSION`]
/// and decoding refuses any other with
/// [`HandshakeError::UnsupportedVersion`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Handshake {
    /// Who is connecting.
    pub role: Role,
    /// Feature bits: [`Handshake::FLAG_TOKENS`]; receivers ignore bits
    /// they do not know.
    pub flags: u8,
    /// At most `u16::MAX` bytes of tagged fields: the auth token, and on a
    /// replica stream the master's history id. Build and read them with
    /// [`Handshake::with_fields`] and [`Handshake::fields`].
    pub extra: Vec<u8>,
}

/// Shows the length of `extra`, not its bytes: they may hold the auth token.
impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("role", &self.role)
            .field("flags", &self.flags)
            .field("extra", &format_args!("<{} bytes>", self.extra.len()))
            .finish()
    }
}

impl Handshake {
    /// Flag bit 0: the client wants write tokens, that is, the history id
    /// at the end of each `Written` reply (`PROTOCOL.md` 6.2). A server
    /// sends it only to clients that set this bit, so an older client,
    /// which expects a 40-byte body, is not sent bytes it would refuse.
    pub const FLAG_TOKENS: u8 = 0x01;

    /// A handshake for `role` with no flags and no extra bytes.
    pub fn new(role: Role) -> Self {
        Handshake {
            role,
            flags: 0,
            extra: Vec::new(),
        }
    }

    /// A handshake for `role` whose `extra` bytes carry `fields`.
    pub fn with_fields(role: Role, fields: &HandshakeFields) -> Result<Self, HandshakeError> {
        Ok(Handshake {
            role,
            flags: 0,
            extra: fields.encode()?,
        })
    }

    /// The fields in the `extra` bytes, or
    /// [`HandshakeError::MalformedExtra`].
    pub fn fields(&self) -> Result<HandshakeFields, HandshakeError> {
        HandshakeFields::decode(&self.extra)
    }

    /// The replication stream's own fields in the `extra` bytes (the
    /// master's address), or [`HandshakeError::MalformedExtra`].
    pub fn stream_fields(&self) -> Result<StreamFields, HandshakeError> {
        StreamFields::decode(&self.extra)
    }

    /// Appends the encoded handshake to `dst`. Fails only if `extra` is
    /// longer than `u16::MAX`, in which case `dst` is left as it was.
    pub fn encode(&self, dst: &mut Vec<u8>) -> Result<(), HandshakeError> {
        let extra_len = extra_len(&self.extra)?;
        dst.extend_from_slice(&MAGIC);
        put_u16(dst, VERSION);
        put_u8(dst, self.role.as_u8());
        put_u8(dst, self.flags);
        put_u16(dst, extra_len);
        dst.extend_from_slice(&self.extra);
        Ok(())
    }

    /// Decodes the handshake at the start of `buf` and returns it with the
    /// number of bytes it took.
    ///
    /// The magic is checked as soon as its 4 bytes are there and the version
    /// as soon as its 2 are, so a wrong peer is refused without waiting for
    /// more; otherwise a short buffer gives [`HandshakeError::Incomplete`].
    pub fn decode(buf: &[u8]) -> Result<(Self, usize), HandshakeError> {
        check_magic(buf)?;
        let version = buf.get(4..6).ok_or(HandshakeError::Incomplete)?;
        check_version(NetworkEndian::read_u16(version))?;
        let (fixed, extra) = split_fixed(buf)?;
        let handshake = Handshake {
            role: Role::from_u8(fixed[6]),
            flags: fixed[7],
            extra: extra.to_vec(),
        };
        Ok((handshake, FIXED_LEN + extra.len()))
    }

    /// Reads a handshake from a blocking reader, checking the magic and the
    /// version as soon as they arrive (so nothing more is read from a peer
    /// that is not duokv or speaks another version). An end of stream at
    /// any point, even before the first byte, is [`Error::UnexpectedEof`].
    pub fn read_from<R: Read + ?Sized>(reader: &mut R) -> Result<Self, Error> {
        let mut fixed = [0u8; FIXED_LEN];
        read_exactly(reader, &mut fixed[..4], 0)?;
        check_magic(&fixed)?;
        read_exactly(reader, &mut fixed[4..6], 4)?;
        check_version(NetworkEndian::read_u16(&fixed[4..6]))?;
        read_exactly(reader, &mut fixed[6..], 6)?;
        let extra = read_extra(reader, &fixed)?;
        Ok(Handshake {
            role: Role::from_u8(fixed[6]),
            flags: fixed[7],
            extra,
        })
    }

    /// Encodes the handshake and writes it with a single `write_all` (no
    /// flush).
    pub fn write_to<W: Write + ?Sized>(&self, writer: &mut W) -> Result<(), Error> {
        let mut buf = Vec::with_capacity(FIXED_LEN + self.extra.len());
        self.encode(&mut buf)?;
        writer.write_all(&buf)?;
        Ok(())
    }
}

/// The server's answer to a [`Handshake`].
///
/// Unlike the handshake, decoding a reply accepts any version: the reply's
/// layout is frozen so that a client can always read the server's version
/// and its status. Check `status` (and `version`) before sending frames.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HandshakeReply {
    /// The protocol version the server speaks.
    pub version: u16,
    /// Whether the connection was accepted.
    pub status: HandshakeStatus,
    /// What the server is (standalone, master or slave).
    pub node_role: NodeRole,
    /// Tagged fields, as in a handshake's `extra` (tag, `u16` length,
    /// value): tag 1 is a refusal's reason ([`HandshakeReply::reason`]);
    /// unknown tags are skipped. Empty on acceptance. At most `u16::MAX`
    /// bytes.
    pub extra: Vec<u8>,
}

impl HandshakeReply {
    /// A reply in this crate's [`VERSION`] with no extra bytes.
    pub fn new(status: HandshakeStatus, node_role: NodeRole) -> Self {
        HandshakeReply {
            version: VERSION,
            status,
            node_role,
            extra: Vec::new(),
        }
    }

    /// A refusal with `status` that says why in `reason` (reply field tag
    /// 1), for the peer's log. A reason longer than
    /// [`MAX_REASON_LEN`] bytes is cut at a character boundary.
    pub fn with_reason(status: HandshakeStatus, node_role: NodeRole, reason: &str) -> Self {
        let mut end = reason.len().min(MAX_REASON_LEN);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let value = &reason.as_bytes()[..end];
        let mut extra = Vec::with_capacity(3 + value.len());
        // At most MAX_REASON_LEN bytes, below u16::MAX.
        handshake_fields::put_field(&mut extra, REPLY_TAG_REASON, value);
        HandshakeReply {
            extra,
            ..HandshakeReply::new(status, node_role)
        }
    }

    /// A refusal of a replication stream from a stale master: this node
    /// follows (or, as a master, leads) `term`, whose master is at
    /// `master`. The refused master, of a lower term, learns that it was
    /// replaced and by whom (reply fields 3 and 4, beside the reason).
    pub fn stale_master(
        status: HandshakeStatus,
        node_role: NodeRole,
        reason: &str,
        term: u64,
        master: &str,
    ) -> Self {
        let mut reply = HandshakeReply::with_reason(status, node_role, reason);
        handshake_fields::put_field(&mut reply.extra, REPLY_TAG_TERM, &term.to_be_bytes());
        let master = &master.as_bytes()[..master.len().min(crate::MAX_MASTER_ADDR_LEN)];
        handshake_fields::put_field(&mut reply.extra, REPLY_TAG_MASTER, master);
        reply
    }

    /// The term a refusing node named (reply field 3), if any.
    pub fn term(&self) -> Option<u64> {
        self.field(REPLY_TAG_TERM)
            .and_then(|value| <[u8; 8]>::try_from(value).ok())
            .map(u64::from_be_bytes)
    }

    /// The master a refusing node named (reply field 4), if any.
    pub fn master(&self) -> Option<String> {
        self.field(REPLY_TAG_MASTER)
            .and_then(|value| String::from_utf8(value.to_vec()).ok())
    }

    /// The value of reply field `tag`, if present and the fields decode.
    fn field(&self, tag: u8) -> Option<&[u8]> {
        handshake_fields::Fields::new(&self.extra)
            .map_while(Result::ok)
            .find(|field| field.tag == tag)
            .map(|field| field.value)
    }

    /// An acceptance of a replication stream by a slave that takes up
    /// `features` of those the master offered (reply field tag 2, a
    /// big-endian u32; see [`StreamFields::features`]).
    pub fn with_features(node_role: NodeRole, features: u32) -> Self {
        let mut extra = Vec::with_capacity(7);
        handshake_fields::put_field(&mut extra, REPLY_TAG_FEATURES, &features.to_be_bytes());
        HandshakeReply {
            extra,
            ..HandshakeReply::new(HandshakeStatus::Ok, node_role)
        }
    }

    /// The stream features the slave takes up (reply field tag 2); 0 if
    /// it named none (an older slave), or if the field does not decode.
    pub fn features(&self) -> u32 {
        handshake_fields::Fields::new(&self.extra)
            .map_while(Result::ok)
            .filter(|field| field.tag == REPLY_TAG_FEATURES)
            .find_map(|field| handshake_fields::features(field.value))
            .unwrap_or(0)
    }

    /// The refusal's reason (reply field tag 1), if the server gave one
    /// that decodes; a reply whose `extra` breaks the field format, or
    /// whose reason is not UTF-8, has none.
    pub fn reason(&self) -> Option<String> {
        let mut reason = None;
        for field in handshake_fields::Fields::new(&self.extra) {
            let field = field.ok()?;
            if field.tag == REPLY_TAG_REASON {
                reason = Some(String::from_utf8(field.value.to_vec()).ok()?);
            }
        }
        reason
    }

    /// Appends the encoded reply to `dst`. Fails only if `extra` is longer
    /// than `u16::MAX`, in which case `dst` is left as it was.
    pub fn encode(&self, dst: &mut Vec<u8>) -> Result<(), HandshakeError> {
        let extra_len = extra_len(&self.extra)?;
        dst.extend_from_slice(&MAGIC);
        put_u16(dst, self.version);
        put_u8(dst, self.status.as_u8());
        put_u8(dst, self.node_role.as_u8());
        put_u16(dst, extra_len);
        dst.extend_from_slice(&self.extra);
        Ok(())
    }

    /// Decodes the reply at the start of `buf` and returns it with the
    /// number of bytes it took. A wrong magic is
    /// [`HandshakeError::BadMagic`]; a short buffer is
    /// [`HandshakeError::Incomplete`].
    pub fn decode(buf: &[u8]) -> Result<(Self, usize), HandshakeError> {
        check_magic(buf)?;
        let (fixed, extra) = split_fixed(buf)?;
        let reply = HandshakeReply {
            version: NetworkEndian::read_u16(&fixed[4..6]),
            status: HandshakeStatus::from_u8(fixed[6]),
            node_role: NodeRole::from_u8(fixed[7]),
            extra: extra.to_vec(),
        };
        Ok((reply, FIXED_LEN + extra.len()))
    }

    /// Reads a reply from a blocking reader. An end of stream at any point
    /// is [`Error::UnexpectedEof`].
    pub fn read_from<R: Read + ?Sized>(reader: &mut R) -> Result<Self, Error> {
        let mut fixed = [0u8; FIXED_LEN];
        read_exactly(reader, &mut fixed[..4], 0)?;
        check_magic(&fixed)?;
        read_exactly(reader, &mut fixed[4..], 4)?;
        let extra = read_extra(reader, &fixed)?;
        Ok(HandshakeReply {
            version: NetworkEndian::read_u16(&fixed[4..6]),
            status: HandshakeStatus::from_u8(fixed[6]),
            node_role: NodeRole::from_u8(fixed[7]),
            extra,
        })
    }

    /// Encodes the reply and writes it with a single `write_all` (no flush).
    pub fn write_to<W: Write + ?Sized>(&self, writer: &mut W) -> Result<(), Error> {
        let mut buf = Vec::with_capacity(FIXED_LEN + self.extra.len());
        self.encode(&mut buf)?;
        writer.write_all(&buf)?;
        Ok(())
    }
}

/// `BadMagic` if the first 4 bytes are there and wrong, `Incomplete` if
/// they are not all there (yet) but those present match.
fn check_magic(buf: &[u8]) -> Result<(), HandshakeError> {
    let n = buf.len().min(MAGIC.len());
    if buf[..n] != MAGIC[..n] {
        let mut found = [0u8; 4];
        found[..n].copy_from_slice(&buf[..n]);
        return Err(HandshakeError::BadMagic(found));
    }
    if n < MAGIC.len() {
        return Err(HandshakeError::Incomplete);
    }
    Ok(())
}

fn check_version(version: u16) -> Result<(), HandshakeError> {
    if version == VERSION {
        Ok(())
    } else {
        Err(HandshakeError::UnsupportedVersion(version))
    }
}

/// Splits `buf` into the fixed part and the `extra` bytes it announces.
fn split_fixed(buf: &[u8]) -> Result<(&[u8], &[u8]), HandshakeError> {
    let fixed = buf.get(..FIXED_LEN).ok_or(HandshakeError::Incomplete)?;
    let extra_len = usize::from(NetworkEndian::read_u16(&fixed[8..10]));
    let extra = buf
        .get(FIXED_LEN..FIXED_LEN + extra_len)
        .ok_or(HandshakeError::Incomplete)?;
    Ok((fixed, extra))
}

fn extra_len(extra: &[u8]) -> Result<u16, HandshakeError> {
    u16::try_from(extra.len()).map_err(|_| HandshakeError::TooLarge {
        len: u64::try_from(extra.len()).unwrap_or(u64::MAX),
        max: u64::from(u16::MAX),
    })
}

/// Reads the `extra` bytes announced by `fixed` (at most 64 KiB - 1).
fn read_extra<R: Read + ?Sized>(reader: &mut R, fixed: &[u8; FIXED_LEN]) -> Result<Vec<u8>, Error> {
    let len = usize::from(NetworkEndian::read_u16(&fixed[8..10]));
    let mut extra = vec![0u8; len];
    read_exactly(reader, &mut extra, FIXED_LEN)?;
    Ok(extra)
}

/// Fills `buf`, or fails with [`Error::UnexpectedEof`]; `before` is how many
/// bytes of the message were read earlier (for the error's counts).
fn read_exactly<R: Read + ?Sized>(
    reader: &mut R,
    buf: &mut [u8],
    before: usize,
) -> Result<(), Error> {
    let got = read_full(reader, buf)?;
    if got < buf.len() {
        return Err(Error::UnexpectedEof {
            read: (before + got) as u64,
            expected: (before + buf.len()) as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_bytes_are_exact() {
        let mut buf = Vec::new();
        Handshake::new(Role::Client).encode(&mut buf).unwrap();
        assert_eq!(buf, [b'D', b'U', b'K', b'V', 0, 1, 1, 0, 0, 0]);
        let mut buf = Vec::new();
        HandshakeReply::new(HandshakeStatus::Ok, NodeRole::Master)
            .encode(&mut buf)
            .unwrap();
        assert_eq!(buf, [b'D', b'U', b'K', b'V', 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn bad_magic_is_seen_from_the_first_wrong_byte() {
        assert_eq!(
            Handshake::decode(b"G"),
            Err(HandshakeError::BadMagic([b'G', 0, 0, 0]))
        );
        assert_eq!(
            Handshake::decode(b"GET / HTTP/1.1"),
            Err(HandshakeError::BadMagic(*b"GET "))
        );
        assert_eq!(Handshake::decode(b"DU"), Err(HandshakeError::Incomplete));
    }

    #[test]
    fn other_versions_are_refused_before_the_rest_arrives() {
        assert_eq!(
            Handshake::decode(b"DUKV\x00\x02"),
            Err(HandshakeError::UnsupportedVersion(2))
        );
        assert_eq!(
            Handshake::decode(b"DUKV\x00\x00"),
            Err(HandshakeError::UnsupportedVersion(0))
        );
    }

    #[test]
    fn reply_accepts_other_versions() {
        let mut reply = HandshakeReply::new(HandshakeStatus::UnsupportedVersion, NodeRole::Slave);
        reply.version = 7;
        let mut buf = Vec::new();
        reply.encode(&mut buf).unwrap();
        assert_eq!(HandshakeReply::decode(&buf), Ok((reply, 10)));
    }

    #[test]
    fn unknown_enum_bytes_are_kept() {
        for b in 0..=u8::MAX {
            assert_eq!(Role::from_u8(b).as_u8(), b);
            assert_eq!(NodeRole::from_u8(b).as_u8(), b);
            assert_eq!(HandshakeStatus::from_u8(b).as_u8(), b);
        }
        assert_eq!(Role::from_u8(3), Role::Unknown(3));
    }

    #[test]
    fn a_refusal_carries_its_reason() {
        let reply = HandshakeReply::with_reason(
            HandshakeStatus::Diverged,
            NodeRole::Slave,
            "another history",
        );
        let mut bytes = Vec::new();
        reply.encode(&mut bytes).unwrap();
        let mut expected = b"DUKV".to_vec();
        expected.extend_from_slice(&[0, 1, 8, 3, 0, 18, 1, 0, 15]);
        expected.extend_from_slice(b"another history");
        assert_eq!(bytes, expected);
        let (decoded, len) = HandshakeReply::decode(&bytes).unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(decoded.reason().as_deref(), Some("another history"));
        assert_eq!(
            HandshakeReply::new(HandshakeStatus::Ok, NodeRole::Slave).reason(),
            None
        );
        let long = "é".repeat(MAX_REASON_LEN);
        let cut = HandshakeReply::with_reason(HandshakeStatus::Fenced, NodeRole::Slave, &long);
        assert_eq!(cut.reason().unwrap().len(), MAX_REASON_LEN);
        let broken = HandshakeReply {
            extra: vec![1, 0, 9, b'x'],
            ..HandshakeReply::new(HandshakeStatus::Fenced, NodeRole::Slave)
        };
        assert_eq!(broken.reason(), None);
    }

    #[test]
    fn oversized_extra_is_refused_on_encode() {
        let mut h = Handshake::new(Role::Replica);
        h.extra = vec![0; 70_000];
        let mut buf = vec![9];
        assert_eq!(
            h.encode(&mut buf),
            Err(HandshakeError::TooLarge {
                len: 70_000,
                max: 65_535
            })
        );
        assert_eq!(buf, [9]);
    }
}
