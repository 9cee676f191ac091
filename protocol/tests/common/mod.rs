//! Sample messages shared by the integration tests: at least one frame of
//! every kind (replication kinds included, with both op kinds and empty
//! keys and values) and one error response of every error code, so that a
//! test that walks them covers the whole protocol.

#![allow(dead_code)] // each test binary uses a different part of this module

use duokv_protocol::{
    ErrorCode, Frame, Kind, MaxStaleness, ModeCode, ReadAfter, ReadPoint, ReplicatedOp,
    Replication, Request, Response, WriteReceipt,
};

/// Every error code this version knows, plus unknown ones.
pub fn all_error_codes() -> Vec<ErrorCode> {
    vec![
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::NotMaster {
            master: "127.0.0.1:7000".to_string(),
        },
        ErrorCode::NotMaster {
            master: String::new(),
        },
        ErrorCode::ReplicaUnavailable,
        ErrorCode::TooLarge,
        ErrorCode::BadRequest,
        ErrorCode::Busy,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
        ErrorCode::NotYetVisible { visible_seq: 41 },
        ErrorCode::UnknownHistory,
        ErrorCode::TooStale { bound_us: 1_234 },
        ErrorCode::TooStale { bound_us: u64::MAX },
        ErrorCode::Unknown(0),
        ErrorCode::SwitchingOver,
        ErrorCode::NotChanged,
        ErrorCode::Unknown(15),
        ErrorCode::Unknown(u16::MAX),
    ]
}

/// Frames of every kind, with varied request ids.
pub fn sample_frames() -> Vec<Frame> {
    let mut frames = vec![
        Frame::request(
            1,
            Request::Create {
                key: b"k1".to_vec(),
                value: b"v1".to_vec(),
            },
        ),
        Frame::request(
            2,
            Request::Read {
                key: b"k1".to_vec(),
                after: None,
                fresh: None,
            },
        ),
        Frame::request(
            3,
            Request::Read {
                key: Vec::new(),
                after: None,
                fresh: None,
            },
        ),
        Frame::request(
            3,
            Request::Read {
                key: b"k1".to_vec(),
                after: Some(ReadAfter {
                    history: 0x9ba3_ab20_c67f_0fc0,
                    seq: 42,
                    wait_ms: 100,
                }),
                fresh: None,
            },
        ),
        Frame::request(
            3,
            Request::Read {
                key: b"k1".to_vec(),
                after: Some(ReadAfter {
                    history: 7,
                    seq: 9,
                    wait_ms: 0,
                }),
                fresh: Some(MaxStaleness {
                    max_staleness_us: 5_000,
                    wait_ms: 100,
                }),
            },
        ),
        Frame::request(
            4,
            Request::Update {
                key: b"k1".to_vec(),
                value: vec![0, 255, 7],
            },
        ),
        Frame::request(
            5,
            Request::Delete {
                key: b"k1".to_vec(),
            },
        ),
        Frame::request(
            6,
            Request::Put {
                key: vec![0xFF; 300],
                value: Vec::new(),
            },
        ),
        Frame::request(u64::MAX, Request::Ping),
        Frame::request(5, Request::Failover { timeout_ms: 5_000 }),
        Frame::request(
            6,
            Request::Promote {
                replica: "10.0.0.1:7070".to_string(),
                mode: ModeCode::Async,
                force: false,
            },
        ),
        Frame::request(
            7,
            Request::Promote {
                replica: String::new(),
                mode: ModeCode::Sync,
                force: true,
            },
        ),
        Frame::request(0, Request::Info),
        Frame::response(
            2,
            Response::Value {
                value: Some(b"v1".to_vec()),
                seq: 17,
                at: None,
            },
        ),
        Frame::response(
            2,
            Response::Value {
                value: Some(Vec::new()),
                seq: 18,
                at: Some(ReadPoint {
                    history: 0x9ba3_ab20_c67f_0fc0,
                    visible_seq: 20,
                }),
            },
        ),
        Frame::response(
            3,
            Response::Value {
                value: None,
                seq: 0,
                at: None,
            },
        ),
        Frame::response(
            3,
            Response::Value {
                value: None,
                seq: 0,
                at: Some(ReadPoint {
                    history: 1,
                    visible_seq: 0,
                }),
            },
        ),
        Frame::response(
            1,
            Response::Written(WriteReceipt {
                seq: 17,
                received_ns: 1_700_000_000_000_000_000,
                applied_ns: 1_700_000_000_000_100_000,
                replicated_ns: 0,
                replied_ns: 1_700_000_000_000_200_000,
                history: 0,
            }),
        ),
        Frame::response(
            1,
            Response::Written(WriteReceipt {
                seq: 17,
                received_ns: 1,
                applied_ns: 2,
                replicated_ns: 3,
                replied_ns: 4,
                history: 0x9ba3_ab20_c67f_0fc0,
            }),
        ),
        Frame::response(
            u64::MAX,
            Response::Pong {
                received_ns: 1,
                sent_ns: u64::MAX,
            },
        ),
        Frame::response(0, Response::Info(Vec::new())),
        Frame::response(
            0,
            Response::Info(vec![
                ("role".to_string(), "master".to_string()),
                ("last_seq".to_string(), "17".to_string()),
                ("note".to_string(), "héllo ✓".to_string()),
                (String::new(), String::new()),
            ]),
        ),
    ];
    for (i, code) in all_error_codes().into_iter().enumerate() {
        frames.push(Frame::response(
            100 + i as u64,
            Response::error(code, format!("failure number {i}")),
        ));
    }
    frames.push(Frame::response(
        99,
        Response::error(ErrorCode::Internal, ""),
    ));
    frames.extend(replication_frames());
    frames
}

/// A replication frame with the conventional request id (the seq, or 0).
pub fn replication_frame(message: Replication) -> Frame {
    Frame::replication(message.seq().unwrap_or(0), message)
}

/// Every replication message, with both op kinds, empty and non-empty keys
/// and values, and extreme numbers.
pub fn replication_messages() -> Vec<Replication> {
    vec![
        Replication::Hello {
            last_seq: 0,
            replication_id: 0,
        },
        Replication::Hello {
            last_seq: 41,
            replication_id: 0x0123_4567_89AB_CDEF,
        },
        Replication::Append {
            seq: 42,
            op: ReplicatedOp::Put {
                key: b"k1".to_vec(),
                value: b"v1".to_vec(),
            },
        },
        Replication::Append {
            seq: 43,
            op: ReplicatedOp::Put {
                key: Vec::new(),
                value: Vec::new(),
            },
        },
        Replication::Append {
            seq: 44,
            op: ReplicatedOp::Delete {
                key: b"k1".to_vec(),
            },
        },
        Replication::Append {
            seq: u64::MAX,
            op: ReplicatedOp::Delete { key: Vec::new() },
        },
        Replication::Ack { seq: 0 },
        Replication::Ack { seq: 44 },
        Replication::SnapshotBegin {
            seq: 44,
            replication_id: u64::MAX,
            entries: 2,
        },
        Replication::SnapshotEntry {
            seq: 42,
            key: b"k1".to_vec(),
            value: vec![0, 255, 7],
        },
        Replication::SnapshotEntry {
            seq: 1,
            key: Vec::new(),
            value: Vec::new(),
        },
        Replication::SnapshotEnd { seq: 44 },
        Replication::ResyncRequest {
            reason: "gap: expected seq 45, got 47".to_string(),
        },
        Replication::ResyncRequest {
            reason: "héllo ✓".to_string(),
        },
        Replication::ResyncRequest {
            reason: String::new(),
        },
        Replication::Commit { seq: 45, probe: 0 },
        Replication::Commit {
            seq: 46,
            probe: u64::MAX,
        },
        Replication::Probe { id: 1 },
        Replication::Visible { seq: 45 },
        Replication::Handover {
            seq: 45,
            term: 2,
            mode: ModeCode::SyncVisible,
            sync_timeout_ms: 2_000,
        },
        Replication::TookOver {
            seq: 45,
            history: 0x9ba3_ab20_c67f_0fc0,
        },
        Replication::TookOver {
            seq: 45,
            history: 0,
        },
    ]
}

/// [`replication_messages`] in frames with the conventional request ids,
/// plus one with an arbitrary id (receivers ignore it).
pub fn replication_frames() -> Vec<Frame> {
    let mut frames: Vec<Frame> = replication_messages()
        .into_iter()
        .map(replication_frame)
        .collect();
    frames.push(Frame::replication(u64::MAX, Replication::Ack { seq: 3 }));
    frames
}

/// Asserts that `frames` holds every kind this version knows.
pub fn assert_covers_every_kind(frames: &[Frame]) {
    for kind in Kind::ALL {
        assert!(
            frames.iter().any(|f| f.kind() == kind),
            "no sample frame of kind {kind:?}"
        );
    }
}
