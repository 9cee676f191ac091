//! The fuzzing campaign of the log record decoder and of recovery: arbitrary
//! bytes and mutated records never make decoding panic or allocate past a
//! record's limits, a mutated record never decodes to a different record
//! unless its checksums still hold, and `Store::open` over a segment full of
//! garbage returns an error or a store, never a panic.
//!
//! `DUOKV_FUZZ_CASES=N` runs each property N times (default 1,000; the
//! recovery property a hundredth of that, since each case writes and opens a
//! store). The long form recorded in `results/faults/README.md`:
//! `DUOKV_FUZZ_CASES=10000000 cargo test --release -p duokv-storage --test fuzz`.

use duokv_storage::format::{
    self, BatchHeader, MAX_KEY_LEN, MAX_RECORD_LEN, MAX_VALUE_LEN, RECORD_HEADER_LEN, RecordHeader,
    RecordKind, SEGMENT_HEADER_LEN, SegmentHeader, SegmentKind,
};
use duokv_storage::{Options, Store};
use proptest::prelude::*;

/// Cases per property: 1,000, or `DUOKV_FUZZ_CASES`.
fn cases() -> u32 {
    std::env::var("DUOKV_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

/// One valid encoded record.
fn record() -> impl Strategy<Value = (u64, RecordKind, Vec<u8>, Vec<u8>)> {
    (
        any::<u64>(),
        prop_oneof![Just(RecordKind::Put), Just(RecordKind::Delete)],
        prop::collection::vec(any::<u8>(), 0..48),
        prop::collection::vec(any::<u8>(), 0..96),
    )
        .prop_map(|(seq, kind, key, value)| {
            let value = if kind == RecordKind::Delete {
                Vec::new()
            } else {
                value
            };
            (seq, kind, key, value)
        })
}

/// What a mutation does to an encoded record.
#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Truncate {
        to: usize,
    },
    Append {
        bytes: Vec<u8>,
    },
    /// Rewrite a length field (key or value) and re-seal the header CRC,
    /// as a bug or an attacker with the CRC could.
    Lengths {
        key_len: u32,
        value_len: u32,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        any::<usize>().prop_map(|to| Mutation::Truncate { to }),
        prop::collection::vec(any::<u8>(), 1..64).prop_map(|bytes| Mutation::Append { bytes }),
        (any::<u32>(), any::<u32>())
            .prop_map(|(key_len, value_len)| Mutation::Lengths { key_len, value_len }),
    ]
}

fn apply(buf: &mut Vec<u8>, mutation: &Mutation) {
    match mutation {
        Mutation::Flip { at, bit } => {
            let at = at % buf.len();
            buf[at] ^= 1 << bit;
        }
        Mutation::Set { at, byte } => {
            let at = at % buf.len();
            buf[at] = *byte;
        }
        Mutation::Truncate { to } => buf.truncate(to % (buf.len() + 1)),
        Mutation::Append { bytes } => buf.extend_from_slice(bytes),
        Mutation::Lengths { .. } if buf.len() < RECORD_HEADER_LEN => {}
        Mutation::Lengths { key_len, value_len } => {
            buf[17..21].copy_from_slice(&key_len.to_le_bytes());
            buf[21..25].copy_from_slice(&value_len.to_le_bytes());
            let crc = crc(&buf[4..25]);
            buf[25..29].copy_from_slice(&crc.to_le_bytes());
        }
    }
}

/// CRC-32 (IEEE), bit by bit: the test's own, to re-seal headers.
fn crc(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Decodes `buf` every way the crate offers and checks what a success says.
fn decode_everything(buf: &[u8]) {
    if let Ok(header) = RecordHeader::decode(buf) {
        assert!(header.key_len as usize <= MAX_KEY_LEN);
        assert!(header.value_len as usize <= MAX_VALUE_LEN);
        assert!(header.len as usize <= MAX_RECORD_LEN);
        assert_eq!(
            header.len as usize,
            RECORD_HEADER_LEN + header.key_len as usize + header.value_len as usize
        );
    }
    if let Ok(record) = format::decode_record(buf) {
        assert_eq!(record.key.len(), record.header.key_len as usize);
        assert_eq!(record.value.len(), record.header.value_len as usize);
        assert!(record.header.len as usize <= buf.len());
    }
    let _ = SegmentHeader::decode(buf);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Arbitrary bytes are refused or decoded within the limits.
    #[test]
    fn arbitrary_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_everything(&buf);
    }

    /// A mutated record is refused, or it decodes to a record whose
    /// checksums hold: never to garbage that slipped past them.
    #[test]
    fn mutated_records_never_panic_nor_pass_as_other_records(
        (seq, kind, key, value) in record(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut buf = Vec::new();
        format::encode_record(&mut buf, seq, kind, &key, &value);
        let original = buf.clone();
        for m in &mutations {
            if !buf.is_empty() {
                apply(&mut buf, m);
            }
        }
        decode_everything(&buf);
        if let Ok(decoded) = format::decode_record(&buf) {
            let len = decoded.header.len as usize;
            let stored = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
            prop_assert_eq!(stored, crc(&buf[4..len]), "a decoded record's CRC holds");
            if len <= original.len() && buf[..len] != original[..len] {
                // Different bytes that still check out can only come from a
                // mutation that re-sealed both CRCs; ours re-seals only the
                // header one, so the record CRC must have caught it.
                prop_assert!(false, "a mutated record passed its checks: {:?}", mutations);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases((cases() / 100).max(10)))]

    /// Recovery over a segment whose records are followed by, or replaced
    /// with, garbage opens a store or fails with an error; it never panics.
    /// When it opens, the records before the damage are all there.
    #[test]
    fn recovery_over_garbage_never_panics(
        good in 0usize..6,
        garbage in prop::collection::vec(any::<u8>(), 0..512),
        flip in any::<Option<(usize, u8)>>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let header = SegmentHeader { kind: SegmentKind::Log, id: 2, horizon: 0 };
        let mut bytes = header.encode().to_vec();
        for i in 0..good {
            // One batch per record, as a lone writer's group commit makes.
            let mut record = Vec::new();
            format::encode_record(&mut record, i as u64 + 1, RecordKind::Put, format!("k{i}").as_bytes(), b"value");
            let batch = BatchHeader { count: 1, len: record.len() as u64, first_seq: i as u64 + 1, written_ns: Some(1 + i as u64) };
            bytes.extend_from_slice(&batch.encode());
            bytes.extend_from_slice(&record);
        }
        let good_end = bytes.len();
        bytes.extend_from_slice(&garbage);
        if let Some((at, bit)) = flip {
            let at = SEGMENT_HEADER_LEN + at % (bytes.len() - SEGMENT_HEADER_LEN).max(1);
            if at < bytes.len() {
                bytes[at] ^= 1 << (bit % 8);
            }
        }
        std::fs::write(dir.path().join("00000000000000000002.seg"), &bytes).unwrap();
        if let Ok(store) = Store::open(dir.path(), Options::default()) {
            let intact = flip.is_none_or(|(at, _)| SEGMENT_HEADER_LEN + at % (bytes.len() - SEGMENT_HEADER_LEN).max(1) >= good_end);
            if intact {
                for i in 0..good {
                    prop_assert_eq!(store.get(format!("k{i}")).unwrap(), Some(b"value".to_vec()));
                }
            }
        }
    }
}
