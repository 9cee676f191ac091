//! Property tests of the RESP request parser (`duokv_protocol::resp`): no
//! input makes it panic, `check_request` and `parse_request` agree, a
//! prefix never decides differently from the whole, arbitrary arguments
//! survive being encoded (as an array, or as a quoted inline command) and
//! parsed back, and a request cut anywhere is incomplete.
//!
//! These double as the fuzzing campaign of the RESP parser:
//! `DUOKV_FUZZ_CASES=N` runs every property N times instead of 512, e.g. the
//! long form recorded in `results/faults/README.md`:
//! `DUOKV_FUZZ_CASES=10000000 cargo test --release -p duokv-protocol --test resp_properties -- never_panic`.

use duokv_protocol::resp::{self, RespLimits, RespReply, RespRequestError};
use proptest::prelude::*;

/// Cases per property: 512, or `DUOKV_FUZZ_CASES`.
fn cases() -> u32 {
    std::env::var("DUOKV_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(512)
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

/// Bytes drawn mostly from what RESP is made of, so that random input gets
/// past the first length line and into quotes and escapes often.
fn resp_ish(max: usize) -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        8 => prop::sample::select(b"*$\r\n-0123456789\"' \\xaF:+\t".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec(byte, 0..max)
}

/// Anything from tiny limits, which every input can reach, to the defaults.
fn limits() -> impl Strategy<Value = RespLimits> {
    prop_oneof![
        Just(RespLimits::default()),
        (0usize..12, 0usize..64, 0usize..64, 0usize..256).prop_map(
            |(max_args, max_bulk_len, max_inline_len, max_request_len)| RespLimits {
                max_args,
                max_bulk_len,
                max_inline_len,
                max_request_len,
            }
        ),
    ]
}

fn args() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(bytes(48), 1..8)
}

/// The arguments as a client library sends them: an array of bulk strings.
fn as_array(args: &[Vec<u8>]) -> Vec<u8> {
    RespReply::Array(args.iter().cloned().map(RespReply::Bulk).collect()).to_bytes()
}

/// The arguments as one inline line, each in double quotes, bytes that are
/// not plain printable ASCII as `\xHH`.
fn as_inline(args: &[Vec<u8>]) -> Vec<u8> {
    let mut line = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            line.push(b' ');
        }
        line.push(b'"');
        for &b in arg {
            if b.is_ascii_graphic() && b != b'"' && b != b'\\' || b == b' ' {
                line.push(b);
            } else {
                line.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            }
        }
        line.push(b'"');
    }
    line.extend_from_slice(b"\r\n");
    line
}

/// Runs both functions on `buf`; they must agree, and a parsed request must
/// fit its limits.
fn decode(buf: &[u8], limits: &RespLimits) -> Result<(Vec<Vec<u8>>, usize), RespRequestError> {
    let checked = resp::check_request(buf, limits);
    let parsed = resp::parse_request(buf, limits);
    assert_eq!(
        checked,
        parsed.as_ref().map(|(_, len)| *len).map_err(Clone::clone)
    );
    if let Ok((args, len)) = &parsed {
        assert!(*len > 0 && *len <= buf.len() && *len <= limits.max_request_len);
        assert!(args.len() <= limits.max_args);
    }
    parsed
}

/// What a prefix says must be what the whole says, or "incomplete".
fn prefixes_agree(buf: &[u8], limits: &RespLimits) {
    let whole = decode(buf, limits);
    for cut in 0..buf.len() {
        match decode(&buf[..cut], limits) {
            Err(RespRequestError::Incomplete) => {}
            Ok(found) => assert_eq!(Ok(found), whole, "cut at {cut}"),
            Err(RespRequestError::Invalid(e)) => assert!(
                matches!(whole, Err(RespRequestError::Invalid(_))),
                "cut at {cut} is {e:?}, the whole is {whole:?}"
            ),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_bytes_never_panic(buf in bytes(512), limits in limits()) {
        let _ = decode(&buf, &limits);
    }

    #[test]
    fn resp_like_bytes_never_panic(buf in resp_ish(256), limits in limits()) {
        let _ = decode(&buf, &limits);
    }

    #[test]
    fn arbitrary_bytes_behind_a_valid_start_never_panic(
        head in args(),
        cut in any::<prop::sample::Index>(),
        tail in resp_ish(64),
        limits in limits(),
    ) {
        // The start of a real array, then anything: reaches deep into it.
        let mut buf = as_array(&head);
        buf.truncate(cut.index(buf.len()));
        buf.extend_from_slice(&tail);
        let _ = decode(&buf, &limits);
    }

    #[test]
    fn a_prefix_never_decides_otherwise(buf in resp_ish(96), limits in limits()) {
        prefixes_agree(&buf, &limits);
    }

    #[test]
    fn arrays_round_trip(args in args(), after in bytes(16)) {
        let request = as_array(&args);
        let mut buf = request.clone();
        buf.extend_from_slice(&after);
        prop_assert_eq!(
            decode(&buf, &RespLimits::default()),
            Ok((args, request.len()))
        );
    }

    #[test]
    fn quoted_inline_commands_round_trip(args in args(), after in bytes(16)) {
        let request = as_inline(&args);
        let mut buf = request.clone();
        buf.extend_from_slice(&after);
        prop_assert_eq!(
            decode(&buf, &RespLimits::default()),
            Ok((args, request.len()))
        );
    }

    #[test]
    fn a_request_cut_anywhere_is_incomplete(
        args in args(),
        inline in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let request = if inline { as_inline(&args) } else { as_array(&args) };
        let cut = cut.index(request.len());
        prop_assert_eq!(
            decode(&request[..cut], &RespLimits::default()),
            Err(RespRequestError::Incomplete)
        );
    }
}
