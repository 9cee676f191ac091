//! Truncated input, oversized lengths and malformed bodies: what the decoder
//! says about bytes that are not (yet) a valid frame, for client and
//! replication kinds alike.

mod common;

use std::io::{self, Read};

use duokv_protocol::{
    Error, Frame, FrameError, Handshake, HandshakeError, HandshakeReply, HandshakeStatus, Kind,
    Limit, MAX_FRAME_LEN, MAX_KEY_LEN, MAX_VALUE_LEN, NodeRole, ReplicatedOp, Replication, Request,
    Response, Role, read_frame,
};

/// A reader that yields `bytes` and then fails loudly if read again, to prove
/// that the decoder stopped reading after them.
struct ThenFail<'a>(&'a [u8]);

impl Read for ThenFail<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::Error::other("read past the bytes the decoder needed"));
        }
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// A reader that hands out one byte per call, like a slow network.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match (self.0.split_first(), buf.is_empty()) {
            (Some((&b, rest)), false) => {
                buf[0] = b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

fn frame_bytes(kind: u8, request_id: u64, body: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    buf.extend_from_slice(&(9 + body.len() as u32).to_be_bytes());
    buf.push(kind);
    buf.extend_from_slice(&request_id.to_be_bytes());
    buf.extend_from_slice(body);
    buf
}

#[test]
fn every_truncation_is_incomplete_for_check_and_an_eof_error_for_the_reader() {
    for frame in common::sample_frames() {
        let bytes = frame.to_bytes().unwrap();
        for cut in 0..bytes.len() {
            let prefix = &bytes[..cut];
            assert_eq!(
                Frame::check(prefix),
                Err(FrameError::Incomplete),
                "{frame:?} cut at {cut}"
            );
            assert_eq!(Frame::parse(prefix), Err(FrameError::Incomplete));
            match read_frame(&mut &prefix[..]) {
                Ok(None) if cut == 0 => {}
                Err(Error::UnexpectedEof { read, expected }) if cut > 0 => {
                    assert_eq!(read, cut as u64);
                    assert!(expected > read);
                }
                other => panic!("{frame:?} cut at {cut}: {other:?}"),
            }
        }
        // And the whole frame, delivered a byte at a time, still arrives.
        assert_eq!(read_frame(&mut Trickle(&bytes)).unwrap(), Some(frame));
    }
}

#[test]
fn eof_error_counts_are_exact() {
    let bytes = Frame::request(
        1,
        Request::Read {
            key: b"abc".to_vec(),
            after: None,
            fresh: None,
        },
    )
    .to_bytes()
    .unwrap();
    assert_eq!(bytes.len(), 20);
    match read_frame(&mut &bytes[..2]) {
        Err(Error::UnexpectedEof {
            read: 2,
            expected: 4,
        }) => {}
        other => panic!("{other:?}"),
    }
    match read_frame(&mut &bytes[..15]) {
        Err(Error::UnexpectedEof {
            read: 15,
            expected: 20,
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_handshake_truncation_is_incomplete_or_an_eof_error() {
    let mut hs = Vec::new();
    Handshake {
        role: Role::Client,
        flags: 0,
        extra: b"abc".to_vec(),
    }
    .encode(&mut hs)
    .unwrap();
    let mut reply = Vec::new();
    HandshakeReply::new(HandshakeStatus::Ok, NodeRole::Slave)
        .encode(&mut reply)
        .unwrap();
    for cut in 0..hs.len() {
        assert_eq!(
            Handshake::decode(&hs[..cut]),
            Err(HandshakeError::Incomplete)
        );
        assert!(matches!(
            Handshake::read_from(&mut &hs[..cut]),
            Err(Error::UnexpectedEof { .. })
        ));
    }
    for cut in 0..reply.len() {
        assert_eq!(
            HandshakeReply::decode(&reply[..cut]),
            Err(HandshakeError::Incomplete)
        );
        assert!(matches!(
            HandshakeReply::read_from(&mut &reply[..cut]),
            Err(Error::UnexpectedEof { .. })
        ));
    }
}

#[test]
fn huge_length_prefixes_are_too_large_before_reading_on() {
    for len in [u32::MAX, u32::MAX - 1, MAX_FRAME_LEN + 1, 1 << 31] {
        let prefix = len.to_be_bytes();
        let expected = FrameError::TooLarge {
            limit: Limit::Frame,
            len: u64::from(len),
            max: u64::from(MAX_FRAME_LEN),
        };
        assert_eq!(Frame::check(&prefix), Err(expected.clone()));
        assert_eq!(Frame::parse(&prefix), Err(expected.clone()));
        // The reader must decide from the prefix alone: reading any further
        // byte would hit `ThenFail`'s error instead.
        match read_frame(&mut ThenFail(&prefix)) {
            Err(Error::Frame(e)) => assert_eq!(e, expected),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn the_cap_itself_is_allowed() {
    let prefix = MAX_FRAME_LEN.to_be_bytes();
    assert_eq!(Frame::check(&prefix), Err(FrameError::Incomplete));
    // A peer that declares the largest frame and hangs up early is an EOF
    // error, not an allocation of the declared size up front.
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(&[0x06; 10]);
    match read_frame(&mut &bytes[..]) {
        Err(Error::UnexpectedEof { read: 14, expected }) => {
            assert_eq!(expected, 4 + u64::from(MAX_FRAME_LEN));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn oversized_key_is_too_large_on_decode_and_encode() {
    let mut body = (MAX_KEY_LEN + 1).to_be_bytes().to_vec();
    body.extend(std::iter::repeat_n(b'k', MAX_KEY_LEN as usize + 1));
    let bytes = frame_bytes(0x02, 5, &body);
    assert_eq!(
        Frame::parse(&bytes),
        Err(FrameError::TooLarge {
            limit: Limit::Key,
            len: u64::from(MAX_KEY_LEN) + 1,
            max: u64::from(MAX_KEY_LEN),
        })
    );
    // Declaring an oversized key is enough; the bytes need not follow.
    let bytes = frame_bytes(0x02, 5, &u32::MAX.to_be_bytes());
    assert!(matches!(
        Frame::parse(&bytes),
        Err(FrameError::TooLarge {
            limit: Limit::Key,
            ..
        })
    ));
    let frame = Frame::request(
        5,
        Request::Read {
            key: vec![b'k'; MAX_KEY_LEN as usize + 1],
            after: None,
            fresh: None,
        },
    );
    assert!(matches!(
        frame.to_bytes(),
        Err(FrameError::TooLarge {
            limit: Limit::Key,
            ..
        })
    ));
}

#[test]
fn largest_key_and_value_round_trip_and_one_more_byte_does_not() {
    let frame = Frame::request(
        1,
        Request::Put {
            key: vec![1; MAX_KEY_LEN as usize],
            value: vec![2; MAX_VALUE_LEN as usize],
        },
    );
    let bytes = frame.to_bytes().unwrap();
    assert_eq!(Frame::parse(&bytes).unwrap(), frame);
    assert_eq!(read_frame(&mut &bytes[..]).unwrap(), Some(frame));

    let value = vec![2; MAX_VALUE_LEN as usize + 1];
    let frame = Frame::response(
        1,
        Response::Value {
            value: Some(value.clone()),
            seq: 1,
            at: None,
        },
    );
    let expected = FrameError::TooLarge {
        limit: Limit::Value,
        len: u64::from(MAX_VALUE_LEN) + 1,
        max: u64::from(MAX_VALUE_LEN),
    };
    assert_eq!(frame.to_bytes(), Err(expected.clone()));
    let mut body = 1u64.to_be_bytes().to_vec();
    body.push(1);
    body.extend_from_slice(&(MAX_VALUE_LEN + 1).to_be_bytes());
    body.extend_from_slice(&value);
    assert_eq!(Frame::parse(&frame_bytes(0x80, 1, &body)), Err(expected));
}

#[test]
fn a_frame_above_the_cap_is_refused_on_encode() {
    // Strings have no cap of their own, so an info reply can exceed the frame.
    let big = "x".repeat(MAX_FRAME_LEN as usize);
    let frame = Frame::response(1, Response::Info(vec![("a".into(), big)]));
    let mut dst = vec![0xAA];
    assert!(matches!(
        frame.encode(&mut dst),
        Err(FrameError::TooLarge {
            limit: Limit::Frame,
            ..
        })
    ));
    assert_eq!(dst, [0xAA]);
}

#[test]
fn unknown_and_reserved_kinds_are_refused() {
    for kind in [0x00, 0x0A, 0x3F, 0x4C, 0x55, 0x7F, 0x85, 0xFF] {
        let bytes = frame_bytes(kind, 1, &[]);
        assert_eq!(Frame::check(&bytes), Err(FrameError::UnknownKind(kind)));
        assert_eq!(Frame::parse(&bytes), Err(FrameError::UnknownKind(kind)));
        match read_frame(&mut &bytes[..]) {
            Err(Error::Frame(FrameError::UnknownKind(k))) => assert_eq!(k, kind),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn malformed_bodies_are_malformed() {
    let cases: Vec<(u8, Vec<u8>)> = vec![
        // Read whose key length runs past the frame.
        (0x02, vec![0, 0, 0, 9, b'a']),
        // Put with a key and no value.
        (0x05, vec![0, 0, 0, 1, b'k']),
        // Ping with a body.
        (0x06, vec![0]),
        // Written receipt one byte short.
        (0x81, vec![0; 39]),
        // Written receipt one byte long.
        (0x81, vec![0; 41]),
        // Error whose message is not UTF-8.
        (0x84, vec![0, 1, 0, 0, 0, 2, 0xC3, 0x28, 0, 0, 0, 0]),
        // NotMaster whose address is not UTF-8.
        (0x84, vec![0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0xFF]),
        // Error without its detail field.
        (0x84, vec![0, 1, 0, 0, 0, 0]),
        // Info pair with a name and no value.
        (0x83, vec![0, 0, 0, 1, 0, 0, 0, 1, b'n']),
        // Value with a bad presence byte.
        (0x80, vec![0, 0, 0, 0, 0, 0, 0, 1, 7]),
        // Hello with no replication id.
        (0x40, vec![0; 8]),
        // Append put whose value length runs past the frame.
        (
            0x41,
            vec![0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 5, b'v'],
        ),
        // Ack one byte long.
        (0x42, vec![0; 9]),
        // SnapshotEntry with a key and no value.
        (0x44, vec![0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, b'k']),
        // ResyncRequest whose reason is not UTF-8.
        (0x46, vec![0, 0, 0, 2, 0xC3, 0x28]),
    ];
    for (kind, body) in cases {
        let bytes = frame_bytes(kind, 1, &body);
        assert_eq!(Frame::check(&bytes), Ok(bytes.len()));
        match Frame::parse(&bytes) {
            Err(FrameError::Malformed { offset, .. }) => {
                assert!(offset >= 13 && offset <= bytes.len() as u64, "{offset}")
            }
            other => panic!("kind {kind:#x} body {body:?}: {other:?}"),
        }
        assert!(matches!(
            read_frame(&mut &bytes[..]),
            Err(Error::Frame(FrameError::Malformed { .. }))
        ));
    }
}

#[test]
fn a_length_shorter_than_the_header_is_malformed() {
    for len in 0u32..9 {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0x06; 9]);
        assert!(matches!(
            Frame::check(&bytes),
            Err(FrameError::Malformed { offset: 0, .. })
        ));
        assert!(matches!(
            read_frame(&mut ThenFail(&bytes[..4])),
            Err(Error::Frame(FrameError::Malformed { .. }))
        ));
    }
}

#[test]
fn io_errors_pass_through() {
    match read_frame(&mut ThenFail(&[])) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::Other),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_truncation_of_every_replication_kind() {
    let frames = common::replication_frames();
    for kind in Kind::ALL.into_iter().filter(|k| k.is_replication()) {
        assert!(frames.iter().any(|f| f.kind() == kind), "{kind:?}");
    }
    for frame in frames {
        let bytes = frame.to_bytes().unwrap();
        // Cut anywhere: not a frame yet (or, from a stream, a peer that hung
        // up inside one).
        for cut in 0..bytes.len() {
            let prefix = &bytes[..cut];
            assert_eq!(Frame::check(prefix), Err(FrameError::Incomplete));
            assert_eq!(Frame::parse(prefix), Err(FrameError::Incomplete));
            match read_frame(&mut &prefix[..]) {
                Ok(None) if cut == 0 => {}
                Err(Error::UnexpectedEof { read, .. }) if cut > 0 => {
                    assert_eq!(read, cut as u64)
                }
                other => panic!("{frame:?} cut at {cut}: {other:?}"),
            }
        }
        // The body cut anywhere, with a length prefix that agrees: a whole
        // frame whose body is missing a field, so malformed, at an offset
        // inside the frame.
        let body = &bytes[13..];
        for cut in 0..body.len() {
            let short = frame_bytes(bytes[4], frame.request_id, &body[..cut]);
            assert_eq!(Frame::check(&short), Ok(short.len()));
            match Frame::parse(&short) {
                Err(FrameError::Malformed { offset, reason }) => {
                    assert!(offset >= 13 && offset <= short.len() as u64, "{offset}");
                    assert_eq!(reason, "field runs past the end of the frame");
                }
                other => panic!("{frame:?} body cut at {cut}: {other:?}"),
            }
            assert!(matches!(
                read_frame(&mut &short[..]),
                Err(Error::Frame(FrameError::Malformed { .. }))
            ));
        }
    }
}

#[test]
fn trailing_bytes_after_a_replication_body_are_malformed() {
    for frame in common::replication_frames() {
        let bytes = frame.to_bytes().unwrap();
        let body_len = bytes.len() - 13;
        for extra in [&[0u8][..], &[0xFF; 8][..]] {
            let mut body = bytes[13..].to_vec();
            body.extend_from_slice(extra);
            let long = frame_bytes(bytes[4], frame.request_id, &body);
            assert_eq!(Frame::check(&long), Ok(long.len()));
            assert_eq!(
                Frame::parse(&long),
                Err(FrameError::Malformed {
                    offset: 13 + body_len as u64,
                    reason: "trailing bytes after the body",
                }),
                "{frame:?}"
            );
            assert!(matches!(
                read_frame(&mut &long[..]),
                Err(Error::Frame(FrameError::Malformed { .. }))
            ));
        }
    }
}

#[test]
fn an_unknown_op_byte_is_malformed() {
    for op in 0..=u8::MAX {
        if op == 1 || op == 2 {
            continue;
        }
        // seq, op, then an empty key and an empty value as a put would have.
        let mut body = 5u64.to_be_bytes().to_vec();
        body.push(op);
        body.extend_from_slice(&[0; 8]);
        let bytes = frame_bytes(0x41, 5, &body);
        assert_eq!(
            Frame::parse(&bytes),
            Err(FrameError::Malformed {
                offset: 21,
                reason: "op byte is neither 1 (put) nor 2 (delete)",
            }),
            "op {op}"
        );
        assert!(matches!(
            read_frame(&mut &bytes[..]),
            Err(Error::Frame(FrameError::Malformed { offset: 21, .. }))
        ));
    }
    // The same bytes with op 1 are a put of an empty key to an empty value.
    let mut body = 5u64.to_be_bytes().to_vec();
    body.push(1);
    body.extend_from_slice(&[0; 8]);
    assert_eq!(
        Frame::parse(&frame_bytes(0x41, 5, &body)),
        Ok(Frame::replication(
            5,
            Replication::Append {
                seq: 5,
                op: ReplicatedOp::Put {
                    key: Vec::new(),
                    value: Vec::new(),
                },
            }
        ))
    );
}

/// The body of an append (`op` 1 or 2) or, with `op` `None`, of a snapshot
/// entry, with the given declared lengths. A field within its cap is
/// followed by its bytes; an oversized one only if `with_bytes`, and the
/// body ends after it (the decoder must refuse it from its length alone).
fn keyed_body(op: Option<u8>, key_len: u32, value_len: u32, with_bytes: bool) -> Vec<u8> {
    let mut body = 9u64.to_be_bytes().to_vec();
    body.extend(op);
    body.extend_from_slice(&key_len.to_be_bytes());
    if key_len > MAX_KEY_LEN && !with_bytes {
        return body;
    }
    body.extend(std::iter::repeat_n(b'k', key_len as usize));
    if op != Some(2) {
        body.extend_from_slice(&value_len.to_be_bytes());
        if value_len <= MAX_VALUE_LEN || with_bytes {
            body.extend(std::iter::repeat_n(b'v', value_len as usize));
        }
    }
    body
}

#[test]
fn oversized_keys_and_values_in_replication_frames_are_too_large() {
    let key_err = |len: u32| FrameError::TooLarge {
        limit: Limit::Key,
        len: u64::from(len),
        max: u64::from(MAX_KEY_LEN),
    };
    let value_err = |len: u32| FrameError::TooLarge {
        limit: Limit::Value,
        len: u64::from(len),
        max: u64::from(MAX_VALUE_LEN),
    };
    // (kind, op byte) of every message with a key.
    let shapes = [(0x41, Some(1)), (0x41, Some(2)), (0x44, None)];
    for (kind, op) in shapes {
        for with_bytes in [true, false] {
            for key_len in [MAX_KEY_LEN + 1, u32::MAX] {
                if with_bytes && key_len == u32::MAX {
                    continue; // more than a frame holds
                }
                let bytes = frame_bytes(kind, 9, &keyed_body(op, key_len, 0, with_bytes));
                assert_eq!(
                    Frame::parse(&bytes),
                    Err(key_err(key_len)),
                    "{kind:#x} {op:?}"
                );
                match read_frame(&mut &bytes[..]) {
                    Err(Error::Frame(e)) => assert_eq!(e, key_err(key_len)),
                    other => panic!("{other:?}"),
                }
            }
            if op == Some(2) {
                continue; // a delete has no value
            }
            for value_len in [MAX_VALUE_LEN + 1, u32::MAX] {
                if with_bytes && value_len == u32::MAX {
                    continue;
                }
                let bytes = frame_bytes(kind, 9, &keyed_body(op, 1, value_len, with_bytes));
                assert_eq!(Frame::parse(&bytes), Err(value_err(value_len)));
            }
        }
    }

    // And the encoder refuses them before a byte goes out.
    let big_key = vec![b'k'; MAX_KEY_LEN as usize + 1];
    let big_value = vec![b'v'; MAX_VALUE_LEN as usize + 1];
    let cases = [
        (
            Replication::Append {
                seq: 1,
                op: ReplicatedOp::Put {
                    key: big_key.clone(),
                    value: Vec::new(),
                },
            },
            key_err(MAX_KEY_LEN + 1),
        ),
        (
            Replication::Append {
                seq: 1,
                op: ReplicatedOp::Delete {
                    key: big_key.clone(),
                },
            },
            key_err(MAX_KEY_LEN + 1),
        ),
        (
            Replication::Append {
                seq: 1,
                op: ReplicatedOp::Put {
                    key: Vec::new(),
                    value: big_value.clone(),
                },
            },
            value_err(MAX_VALUE_LEN + 1),
        ),
        (
            Replication::SnapshotEntry {
                seq: 1,
                key: big_key,
                value: Vec::new(),
            },
            key_err(MAX_KEY_LEN + 1),
        ),
        (
            Replication::SnapshotEntry {
                seq: 1,
                key: Vec::new(),
                value: big_value,
            },
            value_err(MAX_VALUE_LEN + 1),
        ),
    ];
    for (message, expected) in cases {
        let mut dst = vec![0xAA];
        assert_eq!(
            Frame::replication(1, message).encode(&mut dst),
            Err(expected)
        );
        assert_eq!(dst, [0xAA]);
    }
}

#[test]
fn the_largest_append_fits_the_frame_cap() {
    let frame = Frame::replication(
        1,
        Replication::Append {
            seq: 1,
            op: ReplicatedOp::Put {
                key: vec![1; MAX_KEY_LEN as usize],
                value: vec![2; MAX_VALUE_LEN as usize],
            },
        },
    );
    let bytes = frame.to_bytes().unwrap();
    // 9 header + 8 seq + 1 op + 4 + key + 4 + value, as in PROTOCOL.md.
    assert_eq!(bytes.len() - 4, 16_842_778);
    assert!(bytes.len() - 4 <= MAX_FRAME_LEN as usize);
}
