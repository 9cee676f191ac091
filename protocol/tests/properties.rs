//! Property tests: decoding arbitrary bytes never panics, mutated frames are
//! either decoded or refused with an error, and arbitrary messages (requests,
//! responses and replication messages) survive an encode -> decode round
//! trip.
//!
//! These double as the fuzzing campaign of the frame and replication-stream
//! decoders: `DUOKV_FUZZ_CASES=N` runs every property N times instead of
//! 512, e.g. the long form recorded in `results/faults/README.md`:
//! `DUOKV_FUZZ_CASES=10000000 cargo test --release -p duokv-protocol --test properties -- never_panic`.

mod common;

use duokv_protocol::{
    Error, ErrorCode, Frame, FrameError, Handshake, HandshakeReply, HandshakeStatus, Kind,
    MaxStaleness, ModeCode, NodeRole, ReadAfter, ReadPoint, ReplicatedOp, Replication, Request,
    Response, Role, WriteReceipt, read_frame, write_frame,
};
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (bytes(64), bytes(256)).prop_map(|(key, value)| Request::Create { key, value }),
        (
            bytes(64),
            prop::option::of(
                any::<(u64, u64, u32)>().prop_map(|(history, seq, wait_ms)| {
                    ReadAfter {
                        history,
                        seq,
                        wait_ms,
                    }
                })
            ),
            prop::option::of(any::<(u32, u32)>().prop_map(|(max_staleness_us, wait_ms)| {
                MaxStaleness {
                    max_staleness_us,
                    wait_ms,
                }
            }))
        )
            .prop_map(|(key, after, fresh)| Request::Read { key, after, fresh }),
        (bytes(64), bytes(256)).prop_map(|(key, value)| Request::Update { key, value }),
        bytes(64).prop_map(|key| Request::Delete { key }),
        (bytes(64), bytes(256)).prop_map(|(key, value)| Request::Put { key, value }),
        Just(Request::Ping),
        Just(Request::Info),
        any::<u32>().prop_map(|timeout_ms| Request::Failover { timeout_ms }),
        (any::<String>(), mode(), any::<bool>()).prop_map(|(replica, mode, force)| {
            Request::Promote {
                replica,
                mode,
                force,
            }
        }),
    ]
}

fn mode() -> impl Strategy<Value = ModeCode> {
    prop_oneof![
        Just(ModeCode::Sync),
        Just(ModeCode::SyncVisible),
        Just(ModeCode::Async),
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::NotFound),
        Just(ErrorCode::AlreadyExists),
        any::<String>().prop_map(|master| ErrorCode::NotMaster { master }),
        Just(ErrorCode::ReplicaUnavailable),
        Just(ErrorCode::TooLarge),
        Just(ErrorCode::BadRequest),
        Just(ErrorCode::Busy),
        Just(ErrorCode::ShuttingDown),
        Just(ErrorCode::Internal),
        any::<u64>().prop_map(|visible_seq| ErrorCode::NotYetVisible { visible_seq }),
        Just(ErrorCode::UnknownHistory),
        Just(ErrorCode::SwitchingOver),
        Just(ErrorCode::NotChanged),
        any::<u64>().prop_map(|bound_us| ErrorCode::TooStale { bound_us }),
        // Only numbers this version does not know stay `Unknown`.
        any::<u16>()
            .prop_filter("a known code", |n| !(1..=14).contains(n))
            .prop_map(ErrorCode::Unknown),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (
            prop::option::of(bytes(256)),
            any::<u64>(),
            prop::option::of(any::<(u64, u64)>().prop_map(|(history, visible_seq)| {
                ReadPoint {
                    history,
                    visible_seq,
                }
            }))
        )
            .prop_map(|(value, seq, at)| Response::Value { value, seq, at }),
        any::<[u64; 6]>().prop_map(
            |[
                seq,
                received_ns,
                applied_ns,
                replicated_ns,
                replied_ns,
                history,
            ]| {
                Response::Written(WriteReceipt {
                    seq,
                    received_ns,
                    applied_ns,
                    replicated_ns,
                    replied_ns,
                    history,
                })
            }
        ),
        (any::<u64>(), any::<u64>()).prop_map(|(received_ns, sent_ns)| Response::Pong {
            received_ns,
            sent_ns
        }),
        prop::collection::vec((any::<String>(), any::<String>()), 0..8).prop_map(Response::Info),
        (error_code(), any::<String>())
            .prop_map(|(code, message)| Response::Error { code, message }),
    ]
}

fn replicated_op() -> impl Strategy<Value = ReplicatedOp> {
    prop_oneof![
        (bytes(64), bytes(256)).prop_map(|(key, value)| ReplicatedOp::Put { key, value }),
        bytes(64).prop_map(|key| ReplicatedOp::Delete { key }),
    ]
}

fn replication() -> impl Strategy<Value = Replication> {
    prop_oneof![
        (any::<u64>(), any::<u64>()).prop_map(|(last_seq, replication_id)| {
            Replication::Hello {
                last_seq,
                replication_id,
            }
        }),
        (any::<u64>(), replicated_op()).prop_map(|(seq, op)| Replication::Append { seq, op }),
        any::<u64>().prop_map(|seq| Replication::Ack { seq }),
        any::<[u64; 3]>().prop_map(|[seq, replication_id, entries]| {
            Replication::SnapshotBegin {
                seq,
                replication_id,
                entries,
            }
        }),
        (any::<u64>(), bytes(64), bytes(256))
            .prop_map(|(seq, key, value)| Replication::SnapshotEntry { seq, key, value }),
        any::<u64>().prop_map(|seq| Replication::SnapshotEnd { seq }),
        any::<String>().prop_map(|reason| Replication::ResyncRequest { reason }),
        any::<(u64, u64)>().prop_map(|(seq, probe)| Replication::Commit { seq, probe }),
        any::<u64>().prop_map(|id| Replication::Probe { id }),
        any::<u64>().prop_map(|seq| Replication::Visible { seq }),
        (any::<(u64, u64, u32)>(), mode()).prop_map(|((seq, term, sync_timeout_ms), mode)| {
            Replication::Handover {
                seq,
                term,
                mode,
                sync_timeout_ms,
            }
        }),
        any::<(u64, u64)>().prop_map(|(seq, history)| Replication::TookOver { seq, history }),
    ]
}

/// A replication frame, with the conventional request id or an arbitrary one
/// (receivers ignore it, so both must round-trip).
fn replication_frame() -> impl Strategy<Value = Frame> {
    (replication(), prop::option::of(any::<u64>())).prop_map(|(r, id)| {
        let id = id.unwrap_or_else(|| r.seq().unwrap_or(0));
        Frame::replication(id, r)
    })
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (any::<u64>(), request()).prop_map(|(id, r)| Frame::request(id, r)),
        (any::<u64>(), response()).prop_map(|(id, r)| Frame::response(id, r)),
        replication_frame(),
    ]
}

/// Runs every decoder over `buf` and checks that they agree with each other.
/// Panics (failing the property) only if they disagree; a decoder that
/// panics itself fails the property too.
fn decode_everything(buf: &[u8]) {
    let checked = Frame::check(buf);
    let parsed = Frame::parse(buf);
    let read = read_frame(&mut &buf[..]);
    match &checked {
        Ok(n) => {
            assert!(*n <= buf.len() && *n >= 13);
            assert_ne!(parsed, Err(FrameError::Incomplete));
            // Parsing only the frame gives the same answer as with trailing bytes.
            assert_eq!(Frame::parse(&buf[..*n]), parsed);
        }
        Err(e) => assert_eq!(&parsed, &Err(e.clone())),
    }
    match (&parsed, read) {
        (Ok(frame), Ok(Some(from_reader))) => assert_eq!(frame, &from_reader),
        (Ok(frame), other) => panic!("parse gave {frame:?}, the reader {other:?}"),
        (Err(FrameError::Incomplete), Ok(None)) => assert!(buf.is_empty()),
        (Err(FrameError::Incomplete), Err(Error::UnexpectedEof { .. })) => {}
        // The reader reads the whole frame before looking at its kind.
        (Err(FrameError::UnknownKind(_)), Err(Error::UnexpectedEof { .. })) => {}
        (Err(e), Err(Error::Frame(from_reader))) => assert_eq!(e, &from_reader),
        (Err(e), other) => panic!("parse gave {e:?}, the reader {other:?}"),
    }
    // Whatever decodes re-encodes and decodes to the same frame.
    if let Ok(frame) = parsed {
        let again = frame.to_bytes().expect("a decoded frame re-encodes");
        assert_eq!(Frame::parse(&again), Ok(frame));
    }
    let _ = Handshake::decode(buf);
    let _ = HandshakeReply::decode(buf);
    let _ = Handshake::read_from(&mut &buf[..]);
    let _ = HandshakeReply::read_from(&mut &buf[..]);
}

/// Cases per property: 512, or `DUOKV_FUZZ_CASES`.
fn cases() -> u32 {
    std::env::var("DUOKV_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_bytes_never_panic(buf in bytes(512)) {
        decode_everything(&buf);
    }

    #[test]
    fn arbitrary_bytes_behind_a_valid_header_never_panic(
        kind in any::<u8>(),
        id in any::<u64>(),
        body in bytes(512),
        declared_extra in 0u32..16,
    ) {
        // A plausible length and kind, so the body decoders are reached.
        let mut buf = (9 + body.len() as u32 + declared_extra).to_be_bytes().to_vec();
        buf.push(kind);
        buf.extend_from_slice(&id.to_be_bytes());
        buf.extend_from_slice(&body);
        decode_everything(&buf);
    }

    #[test]
    fn arbitrary_bodies_behind_a_replication_kind_never_panic(
        kind in 0x40u8..=0x47,
        id in any::<u64>(),
        body in bytes(64),
    ) {
        // Short bodies, so that the fixed-width fields, the op byte and the
        // length prefixes are hit often. 0x47 is the first unknown one.
        let mut buf = (9 + body.len() as u32).to_be_bytes().to_vec();
        buf.push(kind);
        buf.extend_from_slice(&id.to_be_bytes());
        buf.extend_from_slice(&body);
        decode_everything(&buf);
        match Frame::parse(&buf) {
            Ok(frame) => prop_assert!(frame.kind().is_replication()),
            Err(FrameError::UnknownKind(k)) => prop_assert_eq!(k, 0x47),
            Err(FrameError::Malformed { .. } | FrameError::TooLarge { .. }) => {}
            Err(FrameError::Incomplete) => prop_assert!(false, "a whole frame is incomplete"),
        }
    }

    #[test]
    fn mutated_frames_never_panic(
        frame in frame(),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in prop::option::of(any::<usize>()),
        insert in prop::option::of((any::<usize>(), bytes(8))),
    ) {
        let mut buf = frame.to_bytes().unwrap();
        for (at, byte) in flips {
            let at = at % buf.len();
            buf[at] = byte;
        }
        if let Some((at, extra)) = insert {
            let at = at % (buf.len() + 1);
            buf.splice(at..at, extra);
        }
        if let Some(cut) = cut {
            buf.truncate(cut % (buf.len() + 1));
        }
        decode_everything(&buf);
    }

    #[test]
    fn frames_round_trip(frame in frame()) {
        let bytes = frame.to_bytes().unwrap();
        prop_assert_eq!(Frame::check(&bytes), Ok(bytes.len()));
        prop_assert_eq!(Frame::parse(&bytes), Ok(frame.clone()));
        let mut wire = Vec::new();
        write_frame(&mut wire, &frame).unwrap();
        prop_assert_eq!(&wire, &bytes);
        let mut reader = &wire[..];
        prop_assert_eq!(read_frame(&mut reader).unwrap(), Some(frame));
        prop_assert!(read_frame(&mut reader).unwrap().is_none());
    }

    #[test]
    fn streams_of_frames_round_trip(frames in prop::collection::vec(frame(), 0..8)) {
        let mut wire = Vec::new();
        for f in &frames {
            write_frame(&mut wire, f).unwrap();
        }
        let mut reader = &wire[..];
        for f in &frames {
            let got = read_frame(&mut reader).unwrap();
            prop_assert_eq!(got.as_ref(), Some(f));
        }
        prop_assert!(read_frame(&mut reader).unwrap().is_none());
    }

    #[test]
    fn replication_frames_round_trip(frame in replication_frame()) {
        prop_assert!(frame.kind().is_replication());
        prop_assert!(Kind::from_u8(frame.kind().as_u8()).is_some());
        let bytes = frame.to_bytes().unwrap();
        prop_assert_eq!(Frame::parse(&bytes), Ok(frame.clone()));
        let mut reader = &bytes[..];
        prop_assert_eq!(read_frame(&mut reader).unwrap(), Some(frame));
        prop_assert!(read_frame(&mut reader).unwrap().is_none());
    }

    #[test]
    fn mutated_replication_frames_never_panic(
        frame in replication_frame(),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let mut buf = frame.to_bytes().unwrap();
        for (at, byte) in flips {
            let at = at % buf.len();
            buf[at] = byte;
        }
        decode_everything(&buf);
    }

    #[test]
    fn every_prefix_of_a_frame_is_incomplete(frame in frame(), cut in any::<usize>()) {
        let bytes = frame.to_bytes().unwrap();
        let cut = cut % bytes.len();
        prop_assert_eq!(Frame::check(&bytes[..cut]), Err(FrameError::Incomplete));
    }

    #[test]
    fn handshakes_round_trip(
        role in any::<u8>(),
        flags in any::<u8>(),
        extra in bytes(64),
        status in any::<u8>(),
        node_role in any::<u8>(),
        version in any::<u16>(),
    ) {
        let h = Handshake { role: Role::from_u8(role), flags, extra: extra.clone() };
        let mut buf = Vec::new();
        h.encode(&mut buf).unwrap();
        prop_assert_eq!(Handshake::decode(&buf), Ok((h.clone(), buf.len())));
        prop_assert_eq!(Handshake::read_from(&mut &buf[..]).unwrap(), h);

        let reply = HandshakeReply {
            version,
            status: HandshakeStatus::from_u8(status),
            node_role: NodeRole::from_u8(node_role),
            extra,
        };
        let mut buf = Vec::new();
        reply.encode(&mut buf).unwrap();
        prop_assert_eq!(HandshakeReply::decode(&buf), Ok((reply.clone(), buf.len())));
        prop_assert_eq!(HandshakeReply::read_from(&mut &buf[..]).unwrap(), reply);
    }
}

#[test]
fn the_sample_frames_also_survive_every_single_byte_mutation() {
    // Exhaustive over position and a few byte values, as a deterministic
    // complement to the random mutations above.
    for frame in common::sample_frames() {
        let bytes = frame.to_bytes().unwrap();
        for at in 0..bytes.len() {
            for byte in [0x00, 0x01, 0x7F, 0x80, 0xFF] {
                let mut buf = bytes.clone();
                buf[at] = byte;
                decode_everything(&buf);
            }
        }
    }
}
