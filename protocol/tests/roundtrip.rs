//! Every message kind, every error code, the handshake and its reply go
//! through encode -> decode and come back equal, both through byte buffers
//! (`encode` / `check` / `parse`) and through `Write` / `Read`.

mod common;

use std::io::Cursor;

use duokv_protocol::{
    Error, ErrorCode, Frame, Handshake, HandshakeReply, HandshakeStatus, MAGIC, NodeRole, Request,
    Response, Role, VERSION, read_frame, write_frame,
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
