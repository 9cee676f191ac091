//! The typed contents of a handshake's `extra` bytes: the master's history
//! id on a replication stream, and the shared auth token.
//!
//! ```text
//! extra = field*          each field:  tag u8 | len u16 | value (len bytes)
//!
//! tag 1  history id   len 8        u64 big-endian, the master's history
//! tag 2  auth token   len 1..=1024 the shared secret, as read from the file
//! tag 3  ancestors    len 16 * n   1 <= n <= 256 entries, newest first,
//!                                  each id u64 | last seq u64, big-endian:
//!                                  the histories the master's continues
//! tag 4  master addr  len 1..=255  UTF-8, the address the master listens
//!                                  on for clients (`host:port`)
//! ```
//!
//! Tags 1 to 3 are [`HandshakeFields`]; tag 4, which only a master's
//! replication stream carries, is [`StreamFields`], decoded from the same
//! bytes (each skips the other's tags as unknown).
//!
//! Fields may come in any order. A tag this version does not know is
//! skipped (a later version may add fields without breaking this one); a
//! known tag twice, a known tag with the wrong length, or a field that runs
//! past the end of `extra` is [`HandshakeError::MalformedExtra`], which a
//! server answers with [`HandshakeStatus::Malformed`](crate::HandshakeStatus::Malformed).

use byteorder::{ByteOrder, NetworkEndian};

use crate::codec::{put_u8, put_u16};
use crate::error::HandshakeError;

/// The longest auth token, in bytes.
pub const MAX_AUTH_TOKEN_LEN: usize = 1024;

/// The most history ancestors a handshake carries.
pub const MAX_HISTORY_ANCESTORS: usize = 256;

const TAG_HISTORY_ID: u8 = 1;
const TAG_AUTH_TOKEN: u8 = 2;
const TAG_ANCESTORS: u8 = 3;
const TAG_MASTER_ADDR: u8 = 4;
const TAG_TERM: u8 = 5;
const TAG_FEATURES: u8 = 6;

/// The longest master address, in bytes.
pub const MAX_MASTER_ADDR_LEN: usize = 255;

/// Bytes of one ancestor entry.
const ANCESTOR_LEN: usize = 16;

/// A history the master's current one continues (`PROTOCOL.md` 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HistoryAncestor {
    /// The ancestor's history id.
    pub id: u64,
    /// The last sequence number written under it.
    pub last_seq: u64,
}

/// Bytes of a field before its value.
const FIELD_HEADER_LEN: usize = 3;

/// What a [`Handshake`](crate::Handshake)'s `extra` bytes say.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct HandshakeFields {
    /// On a replication stream: the id of the master's history, so that the
    /// slave can tell a new history from its own (`PROTOCOL.md` 7.1).
    pub history_id: Option<u64>,
    /// On a replication stream: the histories the master's continues,
    /// newest first, so that a slave of one of them can tell whether its
    /// log is a prefix of the master's. Empty when there are none.
    pub history_ancestors: Vec<HistoryAncestor>,
    /// The shared secret, when the server asks for one (`--auth-token-file`).
    pub auth_token: Option<Vec<u8>>,
}

/// Never prints the token itself, so that a `{:?}` in a log line cannot
/// leak it.
impl std::fmt::Debug for HandshakeFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeFields")
            .field("history_id", &self.history_id)
            .field("history_ancestors", &self.history_ancestors)
            .field(
                "auth_token",
                &self
                    .auth_token
                    .as_ref()
                    .map(|token| format!("<{} bytes>", token.len())),
            )
            .finish()
    }
}

impl HandshakeFields {
    /// The `extra` bytes for these fields. Fails if the token is empty or
    /// longer than [`MAX_AUTH_TOKEN_LEN`], or if there are more than
    /// [`MAX_HISTORY_ANCESTORS`] ancestors.
    pub fn encode(&self) -> Result<Vec<u8>, HandshakeError> {
        let mut extra = Vec::new();
        if let Some(id) = self.history_id {
            put_field(&mut extra, TAG_HISTORY_ID, &id.to_be_bytes());
        }
        if !self.history_ancestors.is_empty() {
            check_ancestors_len(self.history_ancestors.len() * ANCESTOR_LEN, 0)?;
            let mut value = Vec::with_capacity(self.history_ancestors.len() * ANCESTOR_LEN);
            for ancestor in &self.history_ancestors {
                value.extend_from_slice(&ancestor.id.to_be_bytes());
                value.extend_from_slice(&ancestor.last_seq.to_be_bytes());
            }
            put_field(&mut extra, TAG_ANCESTORS, &value);
        }
        if let Some(token) = &self.auth_token {
            check_token_len(token.len(), 0)?;
            put_field(&mut extra, TAG_AUTH_TOKEN, token);
        }
        Ok(extra)
    }

    /// The fields in `extra`; unknown tags are skipped.
    pub fn decode(extra: &[u8]) -> Result<Self, HandshakeError> {
        let mut fields = HandshakeFields::default();
        for field in Fields::new(extra) {
            let Field { at, tag, value } = field?;
            let len = value.len();
            let malformed = |reason| HandshakeError::MalformedExtra { offset: at, reason };
            match tag {
                TAG_HISTORY_ID => {
                    let bytes = <[u8; 8]>::try_from(value)
                        .map_err(|_| malformed("history id is not 8 bytes"))?;
                    if fields
                        .history_id
                        .replace(u64::from_be_bytes(bytes))
                        .is_some()
                    {
                        return Err(malformed("history id given twice"));
                    }
                }
                TAG_ANCESTORS => {
                    check_ancestors_len(len, at)?;
                    if !fields.history_ancestors.is_empty() {
                        return Err(malformed("ancestors given twice"));
                    }
                    fields.history_ancestors = value
                        .chunks_exact(ANCESTOR_LEN)
                        .map(|entry| HistoryAncestor {
                            id: NetworkEndian::read_u64(&entry[..8]),
                            last_seq: NetworkEndian::read_u64(&entry[8..]),
                        })
                        .collect();
                }
                TAG_AUTH_TOKEN => {
                    check_token_len(len, at)?;
                    if fields.auth_token.replace(value.to_vec()).is_some() {
                        return Err(malformed("auth token given twice"));
                    }
                }
                _ => {}
            }
        }
        Ok(fields)
    }
}

/// The fields only a master's replication stream carries, in the same
/// `extra` bytes as [`HandshakeFields`] (which skips them as unknown, as
/// this type skips its tags): whom the slave is talking to, so that it can
/// refuse a master it was not told to follow (`PROTOCOL.md` 7.1, 7.8).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct StreamFields {
    /// Tag 4: the address the master listens on for clients (`host:port`),
    /// as its `--listen` says.
    pub master_addr: Option<String>,
    /// Tag 6: the stream features the master offers, a u32 of bits (see
    /// [`FEATURE_COMMIT_NOTICES`](crate::FEATURE_COMMIT_NOTICES)); 0 (and
    /// no field) for none. Unknown bits are ignored.
    pub features: u32,
    /// Tag 5: the master's term, a u64 that only grows from one master to
    /// the next (`PROTOCOL.md` 7.8); 0 (and no field) for a master that
    /// was never promoted, and for older masters.
    pub term: u64,
}

impl StreamFields {
    /// The `extra` bytes for these fields, to append to a
    /// [`HandshakeFields::encode`]'s. Fails if the address is empty or
    /// longer than [`MAX_MASTER_ADDR_LEN`].
    pub fn encode(&self) -> Result<Vec<u8>, HandshakeError> {
        let mut extra = Vec::new();
        if let Some(addr) = &self.master_addr {
            check_master_addr_len(addr.len(), 0)?;
            put_field(&mut extra, TAG_MASTER_ADDR, addr.as_bytes());
        }
        if self.features != 0 {
            put_field(&mut extra, TAG_FEATURES, &self.features.to_be_bytes());
        }
        if self.term != 0 {
            put_field(&mut extra, TAG_TERM, &self.term.to_be_bytes());
        }
        Ok(extra)
    }

    /// The stream fields in `extra`; other tags are skipped. A tag 4 twice,
    /// empty, too long or not UTF-8, or a tag 6 that is not 4 bytes, is
    /// [`HandshakeError::MalformedExtra`], as is a field that runs past
    /// the end.
    pub fn decode(extra: &[u8]) -> Result<Self, HandshakeError> {
        let mut fields = StreamFields::default();
        for field in Fields::new(extra) {
            let Field { at, tag, value } = field?;
            let len = value.len();
            let malformed = |reason| HandshakeError::MalformedExtra { offset: at, reason };
            if tag == TAG_MASTER_ADDR {
                check_master_addr_len(len, at)?;
                let addr = String::from_utf8(value.to_vec())
                    .map_err(|_| malformed("master address is not utf-8"))?;
                if fields.master_addr.replace(addr).is_some() {
                    return Err(malformed("master address given twice"));
                }
            } else if tag == TAG_FEATURES {
                fields.features =
                    features(value).ok_or_else(|| malformed("features are not 4 bytes"))?;
            } else if tag == TAG_TERM {
                let bytes: [u8; 8] = value
                    .try_into()
                    .map_err(|_| malformed("term is not 8 bytes"))?;
                fields.term = u64::from_be_bytes(bytes);
            }
        }
        Ok(fields)
    }
}

/// A features field's value: a big-endian u32, or `None` if it is not
/// 4 bytes.
pub(crate) fn features(value: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = value.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// One tag-length-value field of `extra`, at byte offset `at`.
pub(crate) struct Field<'a> {
    pub(crate) at: usize,
    pub(crate) tag: u8,
    pub(crate) value: &'a [u8],
}

/// The fields of `extra` in order, each checked to lie within it; the first
/// that does not is [`HandshakeError::MalformedExtra`] and ends the walk.
/// Both field types and the handshake reply read `extra` through this,
/// each keeping its own tags.
pub(crate) struct Fields<'a> {
    extra: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(extra: &'a [u8]) -> Self {
        Fields { extra, at: 0 }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, HandshakeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let at = self.at;
        if at >= self.extra.len() {
            return None;
        }
        let malformed = |reason| HandshakeError::MalformedExtra { offset: at, reason };
        // A malformed field ends the walk: nothing after it can be framed.
        self.at = self.extra.len();
        let Some(header) = self.extra.get(at..at + FIELD_HEADER_LEN) else {
            return Some(Err(malformed("field header runs past the end")));
        };
        let len = usize::from(NetworkEndian::read_u16(&header[1..]));
        let end = at + FIELD_HEADER_LEN + len;
        let Some(value) = self.extra.get(at + FIELD_HEADER_LEN..end) else {
            return Some(Err(malformed("field value runs past the end")));
        };
        self.at = end;
        Some(Ok(Field {
            at,
            tag: header[0],
            value,
        }))
    }
}

fn check_master_addr_len(len: usize, offset: usize) -> Result<(), HandshakeError> {
    if (1..=MAX_MASTER_ADDR_LEN).contains(&len) {
        Ok(())
    } else {
        Err(HandshakeError::MalformedExtra {
            offset,
            reason: "master address is empty or longer than 255 bytes",
        })
    }
}

pub(crate) fn put_field(dst: &mut Vec<u8>, tag: u8, value: &[u8]) {
    put_u8(dst, tag);
    // Values are at most MAX_AUTH_TOKEN_LEN bytes, far below u16::MAX.
    put_u16(dst, value.len() as u16);
    dst.extend_from_slice(value);
}

fn check_ancestors_len(len: usize, offset: usize) -> Result<(), HandshakeError> {
    if len > 0 && len.is_multiple_of(ANCESTOR_LEN) && len <= MAX_HISTORY_ANCESTORS * ANCESTOR_LEN {
        Ok(())
    } else {
        Err(HandshakeError::MalformedExtra {
            offset,
            reason: "ancestors are not 1 to 256 entries of 16 bytes",
        })
    }
}

fn check_token_len(len: usize, offset: usize) -> Result<(), HandshakeError> {
    if (1..=MAX_AUTH_TOKEN_LEN).contains(&len) {
        Ok(())
    } else {
        Err(HandshakeError::MalformedExtra {
            offset,
            reason: "auth token is empty or longer than 1024 bytes",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_bytes_are_exact() {
        let fields = HandshakeFields {
            history_id: Some(0x0102_0304_0506_0708),
            history_ancestors: Vec::new(),
            auth_token: Some(b"ab".to_vec()),
        };
        let extra = fields.encode().unwrap();
        assert_eq!(
            extra,
            [1, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 2, 0, 2, b'a', b'b']
        );
        assert_eq!(HandshakeFields::decode(&extra), Ok(fields));
        assert_eq!(HandshakeFields::default().encode(), Ok(Vec::new()));
        assert_eq!(HandshakeFields::decode(&[]), Ok(HandshakeFields::default()));
    }

    #[test]
    fn ancestors_bytes_are_exact() {
        let fields = HandshakeFields {
            history_id: Some(9),
            history_ancestors: vec![
                HistoryAncestor {
                    id: 7,
                    last_seq: 300,
                },
                HistoryAncestor { id: 5, last_seq: 2 },
            ],
            auth_token: None,
        };
        let extra = fields.encode().unwrap();
        let mut expected = vec![1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 9, 3, 0, 32];
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 1, 44]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(extra, expected);
        assert_eq!(HandshakeFields::decode(&extra), Ok(fields));
    }

    #[test]
    fn broken_ancestors_are_malformed() {
        for extra in [
            vec![3, 0, 0],                                                       // empty
            [vec![3, 0, 15], vec![0; 15]].concat(), // not a whole entry
            [vec![3, 0, 16], vec![0; 16], vec![3, 0, 16], vec![0; 16]].concat(), // twice
        ] {
            assert!(
                matches!(
                    HandshakeFields::decode(&extra),
                    Err(HandshakeError::MalformedExtra { .. })
                ),
                "{extra:?}"
            );
        }
        let too_many = HandshakeFields {
            history_ancestors: vec![
                HistoryAncestor { id: 1, last_seq: 1 };
                MAX_HISTORY_ANCESTORS + 1
            ],
            ..HandshakeFields::default()
        };
        assert!(too_many.encode().is_err());
    }

    #[test]
    fn stream_fields_share_the_extra_bytes() {
        let stream = StreamFields {
            master_addr: Some("1.2.3.4:5".into()),
            features: crate::FEATURE_COMMIT_NOTICES,
            term: 7,
        };
        let mut extra = HandshakeFields {
            history_id: Some(9),
            ..HandshakeFields::default()
        }
        .encode()
        .unwrap();
        let tail = stream.encode().unwrap();
        assert_eq!(tail[..3], [4, 0, 9]);
        extra.extend_from_slice(&tail);
        assert_eq!(StreamFields::decode(&extra), Ok(stream));
        assert_eq!(HandshakeFields::decode(&extra).unwrap().history_id, Some(9));
        for broken in [
            vec![4, 0, 0],
            vec![4, 0, 1, 0xff],
            vec![4, 0, 1, b'a', 4, 0, 1, b'b'],
        ] {
            assert!(StreamFields::decode(&broken).is_err(), "{broken:?}");
        }
    }

    #[test]
    fn unknown_tags_are_skipped() {
        let extra = [9, 0, 3, 1, 2, 3, 2, 0, 1, b'x'];
        assert_eq!(
            HandshakeFields::decode(&extra),
            Ok(HandshakeFields {
                history_id: None,
                history_ancestors: Vec::new(),
                auth_token: Some(b"x".to_vec()),
            })
        );
    }

    #[test]
    fn broken_fields_are_malformed_with_their_offset() {
        let cases: [(&[u8], usize); 6] = [
            (&[1, 0], 0),                         // header cut
            (&[2, 0, 5, b'a'], 0),                // value cut
            (&[1, 0, 4, 0, 0, 0, 1], 0),          // history id of 4 bytes
            (&[2, 0, 0], 0),                      // empty token
            (&[2, 0, 1, b'a', 2, 0, 1, b'b'], 4), // token twice
            (&[9, 0, 0, 1, 0, 1, 0], 3),          // bad field after a good one
        ];
        for (extra, offset) in cases {
            match HandshakeFields::decode(extra) {
                Err(HandshakeError::MalformedExtra { offset: at, .. }) => {
                    assert_eq!(at, offset, "{extra:?}")
                }
                other => panic!("{extra:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn oversized_tokens_are_refused_both_ways() {
        let fields = HandshakeFields {
            history_id: None,
            history_ancestors: Vec::new(),
            auth_token: Some(vec![b'a'; MAX_AUTH_TOKEN_LEN + 1]),
        };
        assert!(fields.encode().is_err());
        let mut extra = vec![2];
        extra.extend_from_slice(&((MAX_AUTH_TOKEN_LEN + 1) as u16).to_be_bytes());
        extra.resize(extra.len() + MAX_AUTH_TOKEN_LEN + 1, b'a');
        assert!(HandshakeFields::decode(&extra).is_err());
    }

    #[test]
    fn debug_never_shows_the_token() {
        let fields = HandshakeFields {
            history_id: None,
            history_ancestors: Vec::new(),
            auth_token: Some(b"hunter2".to_vec()),
        };
        let shown = format!("{fields:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<7 bytes>"), "{shown}");
    }
}
