//! Every message kind (requests, responses and the replication stream),
//! every error code, the handshake and its reply go through encode -> decode
//! and come back equal, both through byte buffers (`encode` / `check` /
//! `parse`) and through `Write` / `Read`.

mod common;

use std::io::Cursor;

use duokv_protocol::{
    Error, ErrorCode, Frame, Handshake, HandshakeReply, HandshakeStatus, Kind, MAGIC, MAX_KEY_LEN,
    MAX_VALUE_LEN, Message, NodeRole, ReplicatedOp, Replication, Request, Response, Role, VERSION,
    read_frame, write_frame,
};

#[test]
fn samples_cover_every_kind_and_code() {
    let frames = common::sample_frames();
    common::assert_covers_every_kind(&frames);
    for code in common::all_error_codes() {
        assert!(frames.iter().any(|f| matches!(
            &f.message,
            duokv_protocol::Message::Response(Response::Error { code: c, .. }) if *c == code
        )));
    }
}

#[test]
fn every_frame_round_trips_through_a_buffer() {
    for frame in common::sample_frames() {
        let bytes = frame.to_bytes().unwrap();
        assert_eq!(Frame::check(&bytes), Ok(bytes.len()), "{frame:?}");
        assert_eq!(Frame::parse(&bytes).as_ref(), Ok(&frame));
        // The length prefix counts everything after itself.
        let declared = u32::from_be_bytes(bytes[..4].try_into().unwrap());
        assert_eq!(declared as usize, bytes.len() - 4);
        assert_eq!(bytes[4], frame.kind().as_u8());
        assert_eq!(bytes[5..13], frame.request_id.to_be_bytes());
    }
}

#[test]
fn every_frame_round_trips_through_read_and_write() {
    let frames = common::sample_frames();
    let mut wire = Vec::new();
    for frame in &frames {
        write_frame(&mut wire, frame).unwrap();
    }
    let mut reader = Cursor::new(wire);
    for frame in &frames {
        assert_eq!(read_frame(&mut reader).unwrap().as_ref(), Some(frame));
    }
    assert!(read_frame(&mut reader).unwrap().is_none());
    assert!(read_frame(&mut reader).unwrap().is_none());
}

#[test]
fn back_to_back_frames_in_one_buffer_decode_in_order() {
    let frames = common::sample_frames();
    let mut buf = Vec::new();
    for frame in &frames {
        frame.encode(&mut buf).unwrap();
    }
    let mut rest = &buf[..];
    for frame in &frames {
        let n = Frame::check(rest).unwrap();
        assert_eq!(&Frame::parse(&rest[..n]).unwrap(), frame);
        rest = &rest[n..];
    }
    assert!(rest.is_empty());
}

#[test]
fn every_error_code_round_trips_with_its_number() {
    for code in common::all_error_codes() {
        let frame = Frame::response(9, Response::error(code.clone(), "why"));
        let bytes = frame.to_bytes().unwrap();
        assert_eq!(bytes[13..15], code.as_u16().to_be_bytes());
        match Frame::parse(&bytes).unwrap().message {
            duokv_protocol::Message::Response(Response::Error {
                code: back,
                message,
            }) => {
                assert_eq!(back, code);
                assert_eq!(message, "why");
            }
            other => panic!("decoded {other:?}"),
        }
    }
}

#[test]
fn not_master_address_is_a_structured_field() {
    let frame = Frame::response(
        3,
        Response::error(
            ErrorCode::NotMaster {
                master: "10.1.2.3:7000".to_string(),
            },
            "writes go to the master",
        ),
    );
    let decoded = Frame::parse(&frame.to_bytes().unwrap()).unwrap();
    let duokv_protocol::Message::Response(Response::Error {
        code: ErrorCode::NotMaster { master },
        ..
    }) = decoded.message
    else {
        panic!("not a NotMaster error: {decoded:?}");
    };
    assert_eq!(master, "10.1.2.3:7000");
}

#[test]
fn unknown_error_code_with_details_decodes_as_unknown() {
    // A newer server's code 40 with a detail string this version skips.
    let mut body = Vec::new();
    body.extend_from_slice(&40u16.to_be_bytes());
    body.extend_from_slice(&3u32.to_be_bytes());
    body.extend_from_slice(b"new");
    body.extend_from_slice(&5u32.to_be_bytes());
    body.extend_from_slice(b"extra");
    let mut buf = Vec::new();
    buf.extend_from_slice(&(9 + body.len() as u32).to_be_bytes());
    buf.push(0x84);
    buf.extend_from_slice(&8u64.to_be_bytes());
    buf.extend_from_slice(&body);
    assert_eq!(
        Frame::parse(&buf),
        Ok(Frame::response(
            8,
            Response::Error {
                code: ErrorCode::Unknown(40),
                message: "new".to_string()
            }
        ))
    );
}

fn handshakes() -> Vec<Handshake> {
    vec![
        Handshake::new(Role::Client),
        Handshake::new(Role::Replica),
        Handshake {
            role: Role::Unknown(200),
            flags: 0xA5,
            extra: b"token".to_vec(),
        },
        Handshake {
            role: Role::Client,
            flags: 0,
            extra: vec![7; u16::MAX as usize],
        },
    ]
}

fn replies() -> Vec<HandshakeReply> {
    let statuses = [
        HandshakeStatus::Ok,
        HandshakeStatus::BadMagic,
        HandshakeStatus::UnsupportedVersion,
        HandshakeStatus::UnsupportedRole,
        HandshakeStatus::Busy,
        HandshakeStatus::ShuttingDown,
        HandshakeStatus::Unknown(99),
    ];
    let roles = [
        NodeRole::Standalone,
        NodeRole::Master,
        NodeRole::Slave,
        NodeRole::Unknown(42),
    ];
    let mut replies = Vec::new();
    for status in statuses {
        for role in roles {
            replies.push(HandshakeReply::new(status, role));
        }
    }
    replies.push(HandshakeReply {
        version: 9,
        status: HandshakeStatus::UnsupportedVersion,
        node_role: NodeRole::Master,
        extra: b"later".to_vec(),
    });
    replies
}

#[test]
fn handshakes_round_trip_through_buffers_and_streams() {
    for h in handshakes() {
        let mut buf = Vec::new();
        h.encode(&mut buf).unwrap();
        assert_eq!(buf[..4], MAGIC);
        assert_eq!(buf[4..6], VERSION.to_be_bytes());
        assert_eq!(Handshake::decode(&buf), Ok((h.clone(), buf.len())));

        let mut wire = Vec::new();
        h.write_to(&mut wire).unwrap();
        assert_eq!(wire, buf);
        // Followed by a frame, which must be left unread.
        write_frame(&mut wire, &Frame::request(1, Request::Ping)).unwrap();
        let mut reader = Cursor::new(wire);
        assert_eq!(Handshake::read_from(&mut reader).unwrap(), h);
        assert_eq!(
            read_frame(&mut reader).unwrap(),
            Some(Frame::request(1, Request::Ping))
        );
    }
}

#[test]
fn replies_round_trip_through_buffers_and_streams() {
    for reply in replies() {
        let mut buf = Vec::new();
        reply.encode(&mut buf).unwrap();
        assert_eq!(HandshakeReply::decode(&buf), Ok((reply.clone(), buf.len())));
        let mut wire = Vec::new();
        reply.write_to(&mut wire).unwrap();
        assert_eq!(wire, buf);
        assert_eq!(HandshakeReply::read_from(&mut &wire[..]).unwrap(), reply);
    }
}

#[test]
fn wrong_magic_and_version_are_typed_errors_from_streams() {
    let err = Handshake::read_from(&mut &b"GET / HTTP/1.1\r\n"[..]).unwrap_err();
    assert!(
        matches!(err, Error::Handshake(duokv_protocol::HandshakeError::BadMagic(m)) if &m == b"GET "),
        "{err:?}"
    );
    let mut bytes = Vec::new();
    Handshake::new(Role::Client).encode(&mut bytes).unwrap();
    bytes[4..6].copy_from_slice(&2u16.to_be_bytes());
    let err = Handshake::read_from(&mut &bytes[..]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Handshake(duokv_protocol::HandshakeError::UnsupportedVersion(2))
        ),
        "{err:?}"
    );
    let err = HandshakeReply::read_from(&mut &b"XXXX\x00\x01\x00\x01\x00\x00"[..]).unwrap_err();
    assert!(matches!(
        err,
        Error::Handshake(duokv_protocol::HandshakeError::BadMagic(_))
    ));
}

#[test]
fn replication_samples_cover_every_replication_kind_and_both_ops() {
    let messages = common::replication_messages();
    for kind in Kind::ALL.into_iter().filter(|k| k.is_replication()) {
        assert!(
            messages.iter().any(|m| m.kind() == kind),
            "no sample replication message of kind {kind:?}"
        );
    }
    assert_eq!(Kind::ALL.iter().filter(|k| k.is_replication()).count(), 12);
    assert!(messages.iter().any(|m| matches!(
        m,
        Replication::Append {
            op: ReplicatedOp::Put { .. },
            ..
        }
    )));
    assert!(messages.iter().any(|m| matches!(
        m,
        Replication::Append {
            op: ReplicatedOp::Delete { .. },
            ..
        }
    )));
}

#[test]
fn every_replication_frame_round_trips_through_buffers_and_streams() {
    for frame in common::replication_frames() {
        assert!(frame.kind().is_replication(), "{frame:?}");
        assert!(!frame.kind().is_request() && !frame.kind().is_response());
        let bytes = frame.to_bytes().unwrap();
        assert_eq!(Frame::check(&bytes), Ok(bytes.len()), "{frame:?}");
        assert_eq!(Frame::parse(&bytes).as_ref(), Ok(&frame));
        assert_eq!(bytes[4], frame.kind().as_u8());
        assert_eq!(bytes[5..13], frame.request_id.to_be_bytes());

        let mut wire = Vec::new();
        write_frame(&mut wire, &frame).unwrap();
        assert_eq!(wire, bytes);
        let mut reader = Cursor::new(wire);
        assert_eq!(read_frame(&mut reader).unwrap().as_ref(), Some(&frame));
        assert!(read_frame(&mut reader).unwrap().is_none());
    }
}

#[test]
fn a_replication_stream_follows_a_replica_handshake() {
    // What the master writes on its connection to the slave, and what the
    // slave writes back, each decoded in order from one stream.
    let mut master = Vec::new();
    Handshake::new(Role::Replica).write_to(&mut master).unwrap();
    let from_master = [
        Replication::SnapshotBegin {
            seq: 2,
            replication_id: 77,
            entries: 1,
        },
        Replication::SnapshotEntry {
            seq: 2,
            key: b"a".to_vec(),
            value: b"1".to_vec(),
        },
        Replication::SnapshotEnd { seq: 2 },
        Replication::Append {
            seq: 3,
            op: ReplicatedOp::Put {
                key: b"b".to_vec(),
                value: b"2".to_vec(),
            },
        },
        Replication::Append {
            seq: 4,
            op: ReplicatedOp::Delete { key: b"a".to_vec() },
        },
    ];
    for m in &from_master {
        write_frame(&mut master, &common::replication_frame(m.clone())).unwrap();
    }
    let mut slave = Vec::new();
    HandshakeReply::new(HandshakeStatus::Ok, NodeRole::Slave)
        .write_to(&mut slave)
        .unwrap();
    let from_slave = [
        Replication::Hello {
            last_seq: 0,
            replication_id: 0,
        },
        Replication::Ack { seq: 2 },
        Replication::Ack { seq: 4 },
    ];
    for m in &from_slave {
        write_frame(&mut slave, &common::replication_frame(m.clone())).unwrap();
    }

    let mut reader = Cursor::new(master);
    assert_eq!(
        Handshake::read_from(&mut reader).unwrap().role,
        Role::Replica
    );
    for m in &from_master {
        let frame = read_frame(&mut reader).unwrap().unwrap();
        assert_eq!(frame.request_id, m.seq().unwrap());
        assert_eq!(frame.message, Message::Replication(m.clone()));
    }
    assert!(read_frame(&mut reader).unwrap().is_none());

    let mut reader = Cursor::new(slave);
    assert_eq!(
        HandshakeReply::read_from(&mut reader).unwrap().node_role,
        NodeRole::Slave
    );
    for m in &from_slave {
        let frame = read_frame(&mut reader).unwrap().unwrap();
        assert_eq!(frame.message, Message::from(m.clone()));
    }
    assert!(read_frame(&mut reader).unwrap().is_none());
}

/// The bytes of a frame: the header fields, then the body pieces.
fn wire(kind: u8, request_id: u64, body: &[&[u8]]) -> Vec<u8> {
    let body = body.concat();
    let mut buf = (9 + body.len() as u32).to_be_bytes().to_vec();
    buf.push(kind);
    buf.extend_from_slice(&request_id.to_be_bytes());
    buf.extend_from_slice(&body);
    buf
}

#[test]
fn replication_bodies_are_laid_out_as_documented() {
    // One case per diagram of PROTOCOL.md, "Replication stream".
    let cases: Vec<(Replication, Vec<u8>)> = vec![
        (
            Replication::Hello {
                last_seq: 7,
                replication_id: 0xAABB,
            },
            wire(0x40, 0, &[&7u64.to_be_bytes(), &0xAABBu64.to_be_bytes()]),
        ),
        (
            Replication::Append {
                seq: 8,
                op: ReplicatedOp::Put {
                    key: b"ab".to_vec(),
                    value: b"xyz".to_vec(),
                },
            },
            wire(
                0x41,
                8,
                &[
                    &8u64.to_be_bytes(),
                    &[1],
                    &[0, 0, 0, 2],
                    b"ab",
                    &[0, 0, 0, 3],
                    b"xyz",
                ],
            ),
        ),
        (
            Replication::Append {
                seq: 9,
                op: ReplicatedOp::Delete {
                    key: b"ab".to_vec(),
                },
            },
            wire(0x41, 9, &[&9u64.to_be_bytes(), &[2], &[0, 0, 0, 2], b"ab"]),
        ),
        (
            Replication::Ack { seq: 9 },
            wire(0x42, 9, &[&9u64.to_be_bytes()]),
        ),
        (
            Replication::SnapshotBegin {
                seq: 9,
                replication_id: 5,
                entries: 1,
            },
            wire(
                0x43,
                9,
                &[
                    &9u64.to_be_bytes(),
                    &5u64.to_be_bytes(),
                    &1u64.to_be_bytes(),
                ],
            ),
        ),
        (
            Replication::SnapshotEntry {
                seq: 8,
                key: b"ab".to_vec(),
                value: b"xyz".to_vec(),
            },
            wire(
                0x44,
                8,
                &[
                    &8u64.to_be_bytes(),
                    &[0, 0, 0, 2],
                    b"ab",
                    &[0, 0, 0, 3],
                    b"xyz",
                ],
            ),
        ),
        (
            Replication::SnapshotEnd { seq: 9 },
            wire(0x45, 9, &[&9u64.to_be_bytes()]),
        ),
        (
            Replication::ResyncRequest {
                reason: "gap".to_string(),
            },
            wire(0x46, 0, &[&[0, 0, 0, 3], b"gap"]),
        ),
    ];
    for (message, bytes) in cases {
        let frame = common::replication_frame(message);
        assert_eq!(frame.to_bytes().unwrap(), bytes, "{frame:?}");
        assert_eq!(Frame::parse(&bytes), Ok(frame));
    }
    // The smallest append: an empty key deleted at seq 1, 13 body bytes.
    assert_eq!(
        common::replication_frame(Replication::Append {
            seq: 1,
            op: ReplicatedOp::Delete { key: Vec::new() },
        })
        .to_bytes()
        .unwrap(),
        [
            0, 0, 0, 22, 0x41, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0
        ]
    );
}

#[test]
fn the_request_id_of_a_replication_frame_is_carried_but_not_interpreted() {
    for id in [0, 1, 44, u64::MAX] {
        let frame = Frame::replication(id, Replication::Ack { seq: 44 });
        let back = Frame::parse(&frame.to_bytes().unwrap()).unwrap();
        assert_eq!(back.request_id, id);
        assert_eq!(
            back.message,
            Message::Replication(Replication::Ack { seq: 44 })
        );
    }
}

#[test]
fn largest_key_and_value_round_trip_in_append_and_snapshot_entry() {
    let key = vec![1; MAX_KEY_LEN as usize];
    let value = vec![2; MAX_VALUE_LEN as usize];
    let messages = [
        Replication::Append {
            seq: 1,
            op: ReplicatedOp::Put {
                key: key.clone(),
                value: value.clone(),
            },
        },
        Replication::Append {
            seq: 2,
            op: ReplicatedOp::Delete { key: key.clone() },
        },
        Replication::SnapshotEntry {
            seq: 3,
            key: key.clone(),
            value: value.clone(),
        },
    ];
    let mut wire = Vec::new();
    for m in &messages {
        let frame = common::replication_frame(m.clone());
        let bytes = frame.to_bytes().unwrap();
        assert_eq!(Frame::check(&bytes), Ok(bytes.len()));
        assert_eq!(Frame::parse(&bytes).as_ref(), Ok(&frame));
        write_frame(&mut wire, &frame).unwrap();
    }
    let mut reader = Cursor::new(wire);
    for m in &messages {
        let frame = read_frame(&mut reader).unwrap().unwrap();
        assert_eq!(frame.message, Message::Replication(m.clone()));
    }
    assert!(read_frame(&mut reader).unwrap().is_none());
}

#[test]
fn the_replication_examples_of_protocol_md_are_exact() {
    // Section 7.3: deleting key `a` as write 5.
    let append = common::replication_frame(Replication::Append {
        seq: 5,
        op: ReplicatedOp::Delete { key: b"a".to_vec() },
    });
    assert_eq!(
        append.to_bytes().unwrap(),
        [
            0x00, 0x00, 0x00, 0x17, 0x41, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x02, 0x00, 0x00, 0x00, 0x01, 0x61
        ]
    );
    // Section 7.4: the ack of write 5.
    let ack = common::replication_frame(Replication::Ack { seq: 5 });
    assert_eq!(
        ack.to_bytes().unwrap(),
        [
            0x00, 0x00, 0x00, 0x11, 0x42, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05
        ]
    );
    // Section 7.9: a commit notice through write 5, and probe 1.
    let commit = common::replication_frame(Replication::Commit { seq: 5, probe: 0 });
    let mut expected = vec![0x00, 0x00, 0x00, 0x19, 0x47];
    expected.extend_from_slice(&5u64.to_be_bytes());
    expected.extend_from_slice(&5u64.to_be_bytes());
    expected.extend_from_slice(&0u64.to_be_bytes());
    assert_eq!(commit.to_bytes().unwrap(), expected);
    let probe = common::replication_frame(Replication::Probe { id: 1 });
    let mut expected = vec![0x00, 0x00, 0x00, 0x11, 0x48];
    expected.extend_from_slice(&0u64.to_be_bytes());
    expected.extend_from_slice(&1u64.to_be_bytes());
    assert_eq!(probe.to_bytes().unwrap(), expected);
}

#[test]
fn the_max_staleness_example_of_protocol_md_is_exact() {
    // Section 5.2: at most 5 ms stale, waiting up to 50 ms, after key `k`.
    let read = Frame::request(
        1,
        Request::Read {
            key: b"k".to_vec(),
            after: None,
            fresh: Some(duokv_protocol::MaxStaleness {
                max_staleness_us: 5_000,
                wait_ms: 50,
            }),
        },
    );
    let bytes = read.to_bytes().unwrap();
    assert_eq!(
        bytes[bytes.len() - 11..],
        [
            0x02, 0x00, 0x08, 0x00, 0x00, 0x13, 0x88, 0x00, 0x00, 0x00, 0x32
        ]
    );
}
