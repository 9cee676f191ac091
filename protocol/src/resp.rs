//! RESP, the Redis protocol, as a server reads it: requests in, replies out,
//! so that `redis-cli`, `redis-benchmark` and `redis-py` can talk to duokv's
//! `--resp-listen` port.
//!
//! This module is only the framing. Which commands exist and what they do is
//! the server's business; here a request is its arguments, command name
//! first, as bytes. Like the rest of the crate it knows nothing of sockets.
//!
//! # Why not the load generator's parser
//!
//! `tools/src/resp.rs` parses *replies* for a client: five value types,
//! nesting, and limits chosen once for all. A server reads *requests*,
//! which come in two shapes, and must enforce its own limits:
//!
//! - an array of bulk strings, what every client library sends:
//!   `*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`;
//! - an inline command, one line not starting with `*`, split on spaces
//!   with Redis's quoting rules (`sdssplitargs`): what `telnet` users type
//!   and what `redis-benchmark`'s `PING_INLINE` sends (`PING\r\n`). A bare
//!   `\n` ends the line too.
//!
//! and its limits ([`RespLimits`]) come from the server's flags.
//!
//! # Check, then parse
//!
//! As for the native frames ([`Frame::check`](crate::Frame::check)),
//! decoding is two steps. [`check_request`] walks the first request in a
//! buffer without allocating and returns its length in bytes, or
//! [`RespRequestError::Incomplete`] when more bytes are needed (not a fault),
//! or [`RespRequestError::Invalid`] with a [`RespProtocolError`] when the
//! bytes can never be a request within the limits. [`parse_request`] then
//! builds the arguments. The two share one walker, so they always agree.
//!
//! A request with no arguments (an empty or blank inline line, `*0\r\n`,
//! `*-1\r\n`) parses to an empty vector and its length: Redis skips those,
//! and so should the server.
//!
//! Nothing is allocated for a length before the bytes it announces have
//! arrived; a length over its limit is refused from the length line alone;
//! no input makes either function panic (a property test feeds them ten
//! million random inputs, see `results/faults/README.md`).
//!
//! The walk starts from the beginning of the request on every call, so a
//! server that calls [`check_request`] after each read of a request with
//! many arguments does work proportional to the arguments so far on each
//! call; [`RespLimits::max_request_len`] bounds it.
//!
//! # Replies
//!
//! [`RespReply`] is a RESP2 reply and [`RespReply::encode`] its bytes. An
//! array of bulk strings is also exactly how a client encodes a request, so
//! tests can build requests with it.
//!
//! # Example
//!
//! ```
//! use duokv_protocol::resp::{self, RespLimits, RespReply, RespRequestError};
//!
//! # fn main() -> Result<(), RespRequestError> {
//! let limits = RespLimits::default();
//! // Two pipelined requests: an array and an inline command.
//! let buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n";
//!
//! let (args, len) = resp::parse_request(buf, &limits)?;
//! assert_eq!(args, [b"GET".to_vec(), b"k".to_vec()]);
//! assert_eq!(len, 20);
//! let (args, len) = resp::parse_request(&buf[20..], &limits)?;
//! assert_eq!((args, len), (vec![b"PING".to_vec()], 6));
//!
//! // A prefix is not an error, only incomplete.
//! assert_eq!(resp::check_request(&buf[..19], &limits), Err(RespRequestError::Incomplete));
//!
//! assert_eq!(RespReply::Bulk(b"v".to_vec()).to_bytes(), b"$1\r\nv\r\n");
//! # Ok(())
//! # }
//! ```

pub use crate::error::{RespProtocolError, RespRequestError};

/// The limits a server puts on the requests of a connection.
///
/// The defaults suit a server started with the default
/// `--max-frame-bytes`; a server passes its own cap as
/// [`max_bulk_len`](Self::max_bulk_len). A request over any of them is
/// [`RespRequestError::Invalid`], decided before its bytes are buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RespLimits {
    /// The most arguments in one request, command name included. Default
    /// 1024 × 1024, the cap Redis had for a multibulk count.
    pub max_args: usize,
    /// The longest argument of an array request, in bytes. Default
    /// [`MAX_FRAME_LEN`](crate::MAX_FRAME_LEN) (32 MiB), the default of the
    /// server's `--max-frame-bytes`, which it passes here.
    pub max_bulk_len: usize,
    /// The longest inline command, in bytes, line ending excluded. Default
    /// 64 KiB, Redis's `PROTO_INLINE_MAX_SIZE`.
    pub max_inline_len: usize,
    /// The longest request, in bytes, framing included. Default 64 MiB:
    /// room for a bulk string at the default cap and the rest of a command.
    pub max_request_len: usize,
}

impl RespLimits {
    /// The default limits, as a constant.
    pub const DEFAULT: RespLimits = RespLimits {
        max_args: 1024 * 1024,
        max_bulk_len: crate::MAX_FRAME_LEN as usize,
        max_inline_len: 64 * 1024,
        max_request_len: 2 * crate::MAX_FRAME_LEN as usize,
    };
}

impl Default for RespLimits {
    fn default() -> Self {
        RespLimits::DEFAULT
    }
}

/// Walks the first request in `buf` without allocating and returns its
/// length in bytes, so the caller knows how far to advance.
///
/// Returns [`RespRequestError::Incomplete`] when `buf` holds only the start
/// of a request (an empty `buf` included), and [`RespRequestError::Invalid`]
/// as soon as the bytes so far can never be a request within `limits`.
/// Agrees with [`parse_request`]: one succeeds exactly when the other does,
/// with the same length.
pub fn check_request(buf: &[u8], limits: &RespLimits) -> Result<usize, RespRequestError> {
    walk(buf, limits, &mut Discard).map(|(len, _)| len)
}

/// Parses the first request in `buf`: its arguments, command name first,
/// and its length in bytes. Bytes after it are left alone.
///
/// An empty request (a blank inline line, `*0\r\n`, `*-1\r\n`) is an empty
/// vector: skip it. Errors are those of [`check_request`], which this calls
/// first, so nothing is allocated unless the whole request is there.
pub fn parse_request(
    buf: &[u8],
    limits: &RespLimits,
) -> Result<(Vec<Vec<u8>>, usize), RespRequestError> {
    let (len, count) = walk(buf, limits, &mut Discard)?;
    let request = buf.get(..len).ok_or(RespRequestError::Incomplete)?;
    // `count` is backed by bytes that have arrived: every argument takes at
    // least one of them.
    let mut args = Collect(Vec::with_capacity(count));
    walk(request, limits, &mut args)?;
    Ok((args.0, len))
}

/// The RESP version a connection speaks: 2 unless it said `HELLO 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RespVersion {
    /// RESP2: nulls are `$-1`/`*-1`, maps are flat arrays.
    #[default]
    Resp2,
    /// RESP3: nulls are `_`, maps are `%`.
    Resp3,
}

/// One reply, in RESP2 or RESP3 (the types both have, plus RESP3's map,
/// which RESP2 sends as a flat array).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RespReply {
    /// `+OK\r\n`: a status line. A `\r` or `\n` in it is sent as a space,
    /// as Redis does, so a reply can never break the framing.
    Simple(String),
    /// `-ERR message\r\n`: an error, its code (`ERR`, `WRONGTYPE`...)
    /// included. `\r` and `\n` are sent as spaces, as for
    /// [`Simple`](Self::Simple).
    Error(String),
    /// `:42\r\n`: a signed 64-bit integer.
    Integer(i64),
    /// `$5\r\nhello\r\n`: binary-safe bytes.
    Bulk(Vec<u8>),
    /// `$-1\r\n`: the null bulk string (a `GET` of a missing key).
    Null,
    /// `*-1\r\n`: the null array.
    NullArray,
    /// `*2\r\n...`: replies in order.
    Array(Vec<RespReply>),
    /// `%1\r\n...` in RESP3: key and value pairs (`HELLO`'s reply); in
    /// RESP2, an array of the keys and values in turn.
    Map(Vec<(RespReply, RespReply)>),
}

impl RespReply {
    /// Appends the reply's RESP2 bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_as(RespVersion::Resp2, out);
    }

    /// Appends the reply's bytes in `version` to `out`: RESP3 has its own
    /// null (`_\r\n`) and map (`%`); the rest is the same in both.
    pub fn encode_as(&self, version: RespVersion, out: &mut Vec<u8>) {
        match self {
            RespReply::Null | RespReply::NullArray if version == RespVersion::Resp3 => {
                out.extend_from_slice(b"_\r\n")
            }
            RespReply::Map(pairs) => {
                let (prefix, count) = match version {
                    RespVersion::Resp2 => (b'*', pairs.len() * 2),
                    RespVersion::Resp3 => (b'%', pairs.len()),
                };
                put_header(out, prefix, &count.to_string());
                for (key, value) in pairs {
                    key.encode_as(version, out);
                    value.encode_as(version, out);
                }
            }
            RespReply::Array(items) => {
                put_header(out, b'*', &items.len().to_string());
                for item in items {
                    item.encode_as(version, out);
                }
            }
            other => other.encode_resp2_scalar(out),
        }
    }

    /// The types RESP2 and RESP3 write alike (and RESP2's nulls).
    fn encode_resp2_scalar(&self, out: &mut Vec<u8>) {
        match self {
            RespReply::Simple(s) => put_line(out, b'+', s),
            RespReply::Error(s) => put_line(out, b'-', s),
            RespReply::Integer(n) => put_header(out, b':', &n.to_string()),
            RespReply::Bulk(bytes) => {
                put_header(out, b'$', &bytes.len().to_string());
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
            RespReply::Null => out.extend_from_slice(b"$-1\r\n"),
            RespReply::NullArray => out.extend_from_slice(b"*-1\r\n"),
            RespReply::Array(_) | RespReply::Map(_) => self.encode_as(RespVersion::Resp2, out),
        }
    }

    /// The reply's RESP2 bytes as a new buffer; see [`RespReply::encode`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Appends `prefix`, `text` and `\r\n`.
fn put_header(out: &mut Vec<u8>, prefix: u8, text: &str) {
    out.push(prefix);
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends a status or error line with its line breaks made spaces.
fn put_line(out: &mut Vec<u8>, prefix: u8, text: &str) {
    out.push(prefix);
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// Where the walker puts the arguments it finds: nowhere for
/// [`check_request`], into vectors for [`parse_request`].
trait Sink {
    /// A new argument starts.
    fn begin(&mut self);
    /// Bytes of the current argument.
    fn extend(&mut self, bytes: &[u8]);
}

/// The sink of [`check_request`]: allocates nothing.
struct Discard;

impl Sink for Discard {
    fn begin(&mut self) {}
    fn extend(&mut self, _: &[u8]) {}
}

/// The sink of [`parse_request`].
struct Collect(Vec<Vec<u8>>);

impl Sink for Collect {
    fn begin(&mut self) {
        self.0.push(Vec::new());
    }
    fn extend(&mut self, bytes: &[u8]) {
        if let Some(arg) = self.0.last_mut() {
            arg.extend_from_slice(bytes);
        }
    }
}

/// The longest length line after its `*` or `$`: a `-` and the 19 digits
/// of `i64::MAX`.
const MAX_NUMBER_LEN: usize = 20;

/// Walks the first request: its length and argument count.
fn walk(
    buf: &[u8],
    limits: &RespLimits,
    sink: &mut impl Sink,
) -> Result<(usize, usize), RespRequestError> {
    match buf.first() {
        None => Err(RespRequestError::Incomplete),
        Some(b'*') => walk_array(buf, limits, sink),
        Some(_) => walk_inline(buf, limits, sink),
    }
}

/// Reads bytes of one request, refusing any at or past
/// [`RespLimits::max_request_len`]: a request that needs that byte is too
/// long, whatever it holds.
struct Cursor<'a> {
    buf: &'a [u8],
    max_len: usize,
}

impl Cursor<'_> {
    fn byte(&self, at: usize) -> Result<u8, RespRequestError> {
        if at >= self.max_len {
            return Err(RespProtocolError::RequestTooLong { max: self.max_len }.into());
        }
        self.buf
            .get(at)
            .copied()
            .ok_or(RespRequestError::Incomplete)
    }

    /// Expects `\r\n` at `at`.
    fn crlf(&self, at: usize) -> Result<(), RespRequestError> {
        for (i, want) in [b'\r', b'\n'].into_iter().enumerate() {
            if self.byte(at.saturating_add(i))? != want {
                return Err(RespProtocolError::MissingCrlf { offset: at }.into());
            }
        }
        Ok(())
    }

    /// Reads the decimal number that starts at `at` and ends with `\r\n`:
    /// the number and the offset after the `\n`. A byte that cannot be part
    /// of such a line is `bad` at once.
    fn number(&self, at: usize, bad: RespProtocolError) -> Result<(i64, usize), RespRequestError> {
        let mut end = at;
        loop {
            let b = self.byte(end)?;
            if b == b'\r' {
                break;
            }
            let fits = end - at < MAX_NUMBER_LEN;
            if !fits || !(b.is_ascii_digit() || (b == b'-' && end == at)) {
                return Err(bad.into());
            }
            end += 1;
        }
        let n = self
            .buf
            .get(at..end)
            .and_then(parse_decimal)
            .ok_or(RespRequestError::Invalid(bad))?;
        self.crlf(end)?;
        Ok((n, end + 2))
    }
}

/// Parses a decimal `i64` as Redis's `string2ll` does: an optional `-`,
/// then digits with no leading zero (`0` alone is zero; `-0` is refused).
fn parse_decimal(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    match digits {
        [b'0'] if !negative => return Some(0),
        [b'1'..=b'9', ..] => {}
        _ => return None,
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        // Down to i64::MIN, whose magnitude is one above i64::MAX.
        (value <= i64::MAX as u64 + 1).then(|| 0i64.wrapping_sub_unsigned(value))
    } else {
        i64::try_from(value).ok()
    }
}

/// `*N\r\n` then N bulk strings `$L\r\n<L bytes>\r\n`.
fn walk_array(
    buf: &[u8],
    limits: &RespLimits,
    sink: &mut impl Sink,
) -> Result<(usize, usize), RespRequestError> {
    let cur = Cursor {
        buf,
        max_len: limits.max_request_len,
    };
    let (count, mut pos) = cur.number(1, RespProtocolError::BadArrayLength)?;
    if count == -1 || count == 0 {
        return Ok((pos, 0));
    }
    let count = u64::try_from(count).map_err(|_| RespProtocolError::BadArrayLength)?;
    let args = usize::try_from(count)
        .ok()
        .filter(|&n| n <= limits.max_args)
        .ok_or(RespProtocolError::TooManyArgs {
            count,
            max: limits.max_args,
        })?;
    for _ in 0..args {
        let first = cur.byte(pos)?;
        if first != b'$' {
            return Err(RespProtocolError::ExpectedBulk { got: first }.into());
        }
        let (len, start) = cur.number(pos + 1, RespProtocolError::BadBulkLength)?;
        let len = u64::try_from(len).map_err(|_| RespProtocolError::BadBulkLength)?;
        let too_long = RespProtocolError::BulkTooLong {
            len,
            max: limits.max_bulk_len,
        };
        let len = usize::try_from(len)
            .ok()
            .filter(|&n| n <= limits.max_bulk_len)
            .ok_or(too_long)?;
        let end = start.checked_add(len);
        let next = end
            .and_then(|end| end.checked_add(2))
            .filter(|&next| next <= limits.max_request_len)
            .ok_or(RespProtocolError::RequestTooLong {
                max: limits.max_request_len,
            })?;
        let end = next - 2;
        cur.crlf(end)?;
        sink.begin();
        sink.extend(buf.get(start..end).unwrap_or_default());
        pos = next;
    }
    Ok((pos, args))
}

/// One line not starting with `*`, split as `sdssplitargs` does.
fn walk_inline(
    buf: &[u8],
    limits: &RespLimits,
    sink: &mut impl Sink,
) -> Result<(usize, usize), RespRequestError> {
    // A line of `max_inline_len` bytes may be followed by `\r\n`.
    let window = buf
        .get(..limits.max_inline_len.saturating_add(2))
        .unwrap_or(buf);
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        let seen = window.len() - usize::from(window.last() == Some(&b'\r'));
        if seen > limits.max_inline_len {
            return Err(RespProtocolError::InlineTooLong {
                max: limits.max_inline_len,
            }
            .into());
        }
        if buf.len() >= limits.max_request_len {
            return Err(RespProtocolError::RequestTooLong {
                max: limits.max_request_len,
            }
            .into());
        }
        return Err(RespRequestError::Incomplete);
    };
    let end = if newline > 0 && window.get(newline - 1) == Some(&b'\r') {
        newline - 1
    } else {
        newline
    };
    if end > limits.max_inline_len {
        return Err(RespProtocolError::InlineTooLong {
            max: limits.max_inline_len,
        }
        .into());
    }
    let len = newline + 1;
    if len > limits.max_request_len {
        return Err(RespProtocolError::RequestTooLong {
            max: limits.max_request_len,
        }
        .into());
    }
    let count = split_args(window.get(..end).unwrap_or_default(), limits, sink)?;
    Ok((len, count))
}

/// `isspace` in the C locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The value of a hex digit.
fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Splits an inline line into arguments as Redis's `sdssplitargs` does, and
/// returns how many there are.
///
/// Arguments are separated by blanks. `"..."` quotes with the escapes
/// `\xHH`, `\n`, `\r`, `\t`, `\b`, `\a` (any other escaped byte is itself);
/// `'...'` quotes with only `\'`. A quote may start in the middle of an
/// argument (`a"b c"` is `ab c`), but a closing quote must be followed by a
/// blank or the end of the line. Being a C function, `sdssplitargs` stops
/// at the first NUL byte, and so does this.
fn split_args(
    line: &[u8],
    limits: &RespLimits,
    sink: &mut impl Sink,
) -> Result<usize, RespRequestError> {
    let line = line
        .iter()
        .position(|&b| b == 0)
        .and_then(|nul| line.get(..nul))
        .unwrap_or(line);
    // The byte at `i`, 0 past the end: the C string's terminator.
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut count = 0;
    let mut p = 0;
    loop {
        while p < line.len() && is_space(at(p)) {
            p += 1;
        }
        if p >= line.len() {
            return Ok(count);
        }
        if count == limits.max_args {
            return Err(RespProtocolError::TooManyArgs {
                count: u64::try_from(count).map_or(u64::MAX, |n| n.saturating_add(1)),
                max: limits.max_args,
            }
            .into());
        }
        count += 1;
        sink.begin();
        let (mut in_double, mut in_single) = (false, false);
        loop {
            let c = at(p);
            let mut done = false;
            if in_double {
                match (c, at(p + 1)) {
                    (b'\\', b'x')
                        if hex_value(at(p + 2)).is_some() && hex_value(at(p + 3)).is_some() =>
                    {
                        let high = hex_value(at(p + 2)).unwrap_or(0);
                        let low = hex_value(at(p + 3)).unwrap_or(0);
                        sink.extend(&[high * 16 + low]);
                        p += 3;
                    }
                    (b'\\', next) if next != 0 => {
                        p += 1;
                        let byte = match next {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        };
                        sink.extend(&[byte]);
                    }
                    (b'"', next) => {
                        if next != 0 && !is_space(next) {
                            return Err(RespProtocolError::UnbalancedQuotes.into());
                        }
                        done = true;
                    }
                    (0, _) => return Err(RespProtocolError::UnbalancedQuotes.into()),
                    _ => sink.extend(&[c]),
                }
            } else if in_single {
                match (c, at(p + 1)) {
                    (b'\\', b'\'') => {
                        p += 1;
                        sink.extend(b"'");
                    }
                    (b'\'', next) => {
                        if next != 0 && !is_space(next) {
                            return Err(RespProtocolError::UnbalancedQuotes.into());
                        }
                        done = true;
                    }
                    (0, _) => return Err(RespProtocolError::UnbalancedQuotes.into()),
                    _ => sink.extend(&[c]),
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => sink.extend(&[c]),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
            if done {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn resp3_has_its_own_null_and_map_and_resp2_flattens_the_map() {
        let hello = RespReply::Map(vec![
            (RespReply::Bulk(b"proto".to_vec()), RespReply::Integer(3)),
            (RespReply::Bulk(b"name".to_vec()), RespReply::Null),
        ]);
        let mut three = Vec::new();
        hello.encode_as(RespVersion::Resp3, &mut three);
        assert_eq!(three, b"%2\r\n$5\r\nproto\r\n:3\r\n$4\r\nname\r\n_\r\n");
        assert_eq!(
            hello.to_bytes(),
            b"*4\r\n$5\r\nproto\r\n:3\r\n$4\r\nname\r\n$-1\r\n"
        );
        let mut null = Vec::new();
        RespReply::NullArray.encode_as(RespVersion::Resp3, &mut null);
        assert_eq!(null, b"_\r\n");
    }
    use super::*;

    fn limits() -> RespLimits {
        RespLimits::default()
    }

    fn parse(buf: &[u8]) -> Result<(Vec<Vec<u8>>, usize), RespRequestError> {
        parse_with(buf, &limits())
    }

    /// Parses with `limits`, checking that [`check_request`] agrees.
    fn parse_with(
        buf: &[u8],
        limits: &RespLimits,
    ) -> Result<(Vec<Vec<u8>>, usize), RespRequestError> {
        let parsed = parse_request(buf, limits);
        assert_eq!(
            check_request(buf, limits),
            parsed.as_ref().map(|(_, len)| *len).map_err(Clone::clone),
            "check and parse disagree on {:?}",
            buf.escape_ascii().to_string()
        );
        parsed
    }

    fn args(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    fn invalid(e: RespProtocolError) -> Result<(Vec<Vec<u8>>, usize), RespRequestError> {
        Err(RespRequestError::Invalid(e))
    }

    const GET: &[u8] = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";

    #[test]
    fn arrays_of_bulk_strings() {
        assert_eq!(parse(GET), Ok((args(&["GET", "k"]), GET.len())));
        let set = b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\na\r\nb\r\n";
        assert_eq!(
            parse(set),
            Ok((vec![b"SET".to_vec(), vec![], b"a\r\nb".to_vec()], set.len()))
        );
        let binary = b"*1\r\n$3\r\n\x00\xff*\r\n";
        assert_eq!(parse(binary), Ok((vec![b"\x00\xff*".to_vec()], 13)));
    }

    #[test]
    fn empty_arrays_are_empty_requests() {
        assert_eq!(parse(b"*0\r\n"), Ok((vec![], 4)));
        assert_eq!(parse(b"*-1\r\nPING\r\n"), Ok((vec![], 5)));
    }

    #[test]
    fn inline_commands() {
        assert_eq!(parse(b"PING\r\n"), Ok((args(&["PING"]), 6)));
        assert_eq!(parse(b"PING\n"), Ok((args(&["PING"]), 5)));
        assert_eq!(
            parse(b"  SET \t k   v \r\n"),
            Ok((args(&["SET", "k", "v"]), 16))
        );
        // A `\r` inside the line is a blank; `\v` and `\f` only before
        // an argument: inside or after one they are part of it, as in
        // sdssplitargs.
        assert_eq!(parse(b"a\rb\n"), Ok((args(&["a", "b"]), 4)));
        assert_eq!(parse(b"\x0ba\x0cb\x0b\n"), Ok((args(&["a\x0cb\x0b"]), 6)));
        // Lines that start like another RESP type are inline too.
        assert_eq!(parse(b"$3\r\n"), Ok((args(&["$3"]), 4)));
    }

    #[test]
    fn blank_inline_lines_are_empty_requests() {
        assert_eq!(parse(b"\r\n"), Ok((vec![], 2)));
        assert_eq!(parse(b"\n"), Ok((vec![], 1)));
        assert_eq!(parse(b"  \t \r\nPING\r\n"), Ok((vec![], 6)));
    }

    #[test]
    fn inline_quotes_and_escapes() {
        assert_eq!(
            parse(b"SET \"a key\" 'a value'\r\n"),
            Ok((args(&["SET", "a key", "a value"]), 23))
        );
        assert_eq!(
            parse(br#"SET "\x41\x7a\x00\xFF" "\n\r\t\b\a\"\\\q\x4""#),
            Err(RespRequestError::Incomplete)
        );
        let line = b"SET \"\\x41\\x7a\\x00\\xFF\" \"\\n\\r\\t\\b\\a\\\"\\\\\\q\\x4\"\n";
        assert_eq!(
            parse(line),
            Ok((
                vec![
                    b"SET".to_vec(),
                    b"Az\x00\xff".to_vec(),
                    b"\n\r\t\x08\x07\"\\qx4".to_vec()
                ],
                line.len()
            ))
        );
        // In single quotes only \' is an escape.
        assert_eq!(
            parse(b"'it\\'s' '\\x41\\n'\n"),
            Ok((vec![b"it's".to_vec(), b"\\x41\\n".to_vec()], 17))
        );
        // Empty quotes are an empty argument; a quote may open mid-word.
        assert_eq!(
            parse(b"a \"\" b\"c d\" ''\n"),
            Ok((vec![b"a".to_vec(), vec![], b"bc d".to_vec(), vec![]], 15))
        );
        // sdssplitargs stops at a NUL byte, as a C function does.
        assert_eq!(parse(b"GET k\x00 junk\n"), Ok((args(&["GET", "k"]), 12)));
    }

    #[test]
    fn unbalanced_quotes() {
        for line in [
            &b"GET \"k\n"[..],
            b"GET 'k\r\n",
            b"GET \"k\"x\n",
            b"GET 'k'x\n",
            b"GET \"k\\\"\n",
            b"GET \"k\x00\"\n",
        ] {
            assert_eq!(
                parse(line),
                invalid(RespProtocolError::UnbalancedQuotes),
                "{}",
                line.escape_ascii()
            );
        }
        // A closing quote may be followed by any blank.
        assert_eq!(parse(b"\"a\"\x0bb\n"), Ok((args(&["a", "b"]), 6)));
    }

    #[test]
    fn every_prefix_is_incomplete_then_the_whole_parses() {
        let requests: [&[u8]; 5] = [
            GET,
            b"*0\r\n",
            b"*3\r\n$3\r\nSET\r\n$10\r\n0123456789\r\n$0\r\n\r\n",
            b"SET \"a b\" 'c'\r\n",
            b"PING\n",
        ];
        for request in requests {
            for cut in 0..request.len() {
                assert_eq!(
                    parse(&request[..cut]),
                    Err(RespRequestError::Incomplete),
                    "{} cut at {cut}",
                    request.escape_ascii()
                );
            }
            assert_eq!(parse(request).map(|(_, len)| len), Ok(request.len()));
        }
    }

    #[test]
    fn pipelined_requests_parse_one_at_a_time() {
        let mut buf = Vec::new();
        buf.extend_from_slice(GET);
        buf.extend_from_slice(b"PING\r\n");
        buf.extend_from_slice(b"*0\r\n");
        buf.extend_from_slice(b"\n");
        buf.extend_from_slice(b"*1\r\n$4\r\nINFO\r\n");
        buf.extend_from_slice(b"*1\r\n$3\r\nGE"); // the next read brings the rest
        let mut rest = &buf[..];
        let mut seen = Vec::new();
        loop {
            match parse(rest) {
                Ok((args, len)) => {
                    seen.push((args, len));
                    rest = &rest[len..];
                }
                Err(RespRequestError::Incomplete) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(
            seen,
            [
                (args(&["GET", "k"]), 20),
                (args(&["PING"]), 6),
                (vec![], 4),
                (vec![], 1),
                (args(&["INFO"]), 14),
            ]
        );
        assert_eq!(rest, b"*1\r\n$3\r\nGE");
    }

    #[test]
    fn bad_array_lengths() {
        for buf in [
            &b"*\r\n"[..],
            b"*-2\r\n",
            b"*-0\r\n",
            b"*01\r\n",
            b"*+1\r\n",
            b"* 1\r\n",
            b"*1-\r\n",
            b"*x",
            b"*9223372036854775808\r\n",
            b"*123456789012345678901",
        ] {
            assert_eq!(
                parse(buf),
                invalid(RespProtocolError::BadArrayLength),
                "{}",
                buf.escape_ascii()
            );
        }
        // Twenty characters are the most a count can take: still waiting.
        assert_eq!(
            parse(b"*-922337203685477580"),
            Err(RespRequestError::Incomplete)
        );
    }

    #[test]
    fn bad_bulk_lengths() {
        for buf in [
            &b"*1\r\n$\r\n"[..],
            b"*1\r\n$-1\r\n",
            b"*1\r\n$-5\r\n",
            b"*1\r\n$03\r\n",
            b"*1\r\n$3x",
            b"*1\r\n$99999999999999999999\r\n",
        ] {
            assert_eq!(
                parse(buf),
                invalid(RespProtocolError::BadBulkLength),
                "{}",
                buf.escape_ascii()
            );
        }
    }

    #[test]
    fn elements_must_be_bulk_strings() {
        assert_eq!(
            parse(b"*2\r\n$3\r\nGET\r\n:1\r\n"),
            invalid(RespProtocolError::ExpectedBulk { got: b':' })
        );
        assert_eq!(
            parse(b"*1\r\n*1\r\n$1\r\na\r\n"),
            invalid(RespProtocolError::ExpectedBulk { got: b'*' })
        );
    }

    #[test]
    fn missing_crlf() {
        // After a length line's `\r`, and after a bulk string's bytes.
        assert_eq!(
            parse(b"*1\rx"),
            invalid(RespProtocolError::MissingCrlf { offset: 2 })
        );
        assert_eq!(
            parse(b"*1\r\n$3\r\nGETxx"),
            invalid(RespProtocolError::MissingCrlf { offset: 11 })
        );
        assert_eq!(
            parse(b"*1\r\n$3\r\nGET\rx"),
            invalid(RespProtocolError::MissingCrlf { offset: 11 })
        );
        assert_eq!(
            parse(b"*1\r\n$3\r\nGET\r"),
            Err(RespRequestError::Incomplete)
        );
    }

    #[test]
    fn too_many_args_at_and_past_the_limit() {
        let limits = RespLimits {
            max_args: 2,
            ..limits()
        };
        assert_eq!(parse_with(GET, &limits).map(|(_, len)| len), Ok(20));
        assert_eq!(
            parse_with(b"*3\r\n", &limits),
            invalid(RespProtocolError::TooManyArgs { count: 3, max: 2 })
        );
        assert_eq!(
            parse_with(b"*9223372036854775807\r\n", &limits),
            invalid(RespProtocolError::TooManyArgs {
                count: i64::MAX as u64,
                max: 2
            })
        );
        assert_eq!(parse_with(b"a b\n", &limits), Ok((args(&["a", "b"]), 4)));
        assert_eq!(
            parse_with(b"a b c\n", &limits),
            invalid(RespProtocolError::TooManyArgs { count: 3, max: 2 })
        );
    }

    #[test]
    fn bulk_too_long_at_and_past_the_limit() {
        let limits = RespLimits {
            max_bulk_len: 3,
            ..limits()
        };
        assert_eq!(parse_with(GET, &limits).map(|(_, len)| len), Ok(20));
        // Refused from the length line, before the bytes arrive.
        assert_eq!(
            parse_with(b"*1\r\n$4\r\n", &limits),
            invalid(RespProtocolError::BulkTooLong { len: 4, max: 3 })
        );
        assert_eq!(
            parse(b"*1\r\n$9223372036854775807\r\n"),
            invalid(RespProtocolError::BulkTooLong {
                len: i64::MAX as u64,
                max: RespLimits::DEFAULT.max_bulk_len,
            })
        );
    }

    #[test]
    fn inline_too_long_at_and_past_the_limit() {
        let limits = RespLimits {
            max_inline_len: 4,
            ..limits()
        };
        for line in [&b"PING\r\n"[..], b"PING\n", b"PI G\n"] {
            assert_eq!(
                parse_with(line, &limits).map(|(_, len)| len),
                Ok(line.len())
            );
        }
        // Waiting for the `\n` of a line at the limit...
        assert_eq!(
            parse_with(b"PING\r", &limits),
            Err(RespRequestError::Incomplete)
        );
        // ...but not for that of one past it.
        for buf in [&b"PINGS"[..], b"PINGS\r", b"PINGS\r\n", b"PING\r\r\n"] {
            assert_eq!(
                parse_with(buf, &limits),
                invalid(RespProtocolError::InlineTooLong { max: 4 }),
                "{}",
                buf.escape_ascii()
            );
        }
    }

    #[test]
    fn request_too_long_at_and_past_the_limit() {
        let at = RespLimits {
            max_request_len: GET.len(),
            ..limits()
        };
        assert_eq!(parse_with(GET, &at).map(|(_, len)| len), Ok(GET.len()));
        let under = RespLimits {
            max_request_len: GET.len() - 1,
            ..limits()
        };
        // Refused from the last bulk length, before its bytes arrive.
        assert_eq!(
            parse_with(&GET[..17], &under),
            invalid(RespProtocolError::RequestTooLong { max: 19 })
        );
        let tiny = RespLimits {
            max_request_len: 5,
            ..limits()
        };
        assert_eq!(
            parse_with(b"*1\r\n$", &tiny),
            invalid(RespProtocolError::RequestTooLong { max: 5 })
        );
        assert_eq!(parse_with(b"PING\n", &tiny).map(|(_, len)| len), Ok(5));
        assert_eq!(
            parse_with(b"PINGS", &tiny),
            invalid(RespProtocolError::RequestTooLong { max: 5 })
        );
        assert_eq!(
            parse_with(b"PING\r\n", &tiny),
            invalid(RespProtocolError::RequestTooLong { max: 5 })
        );
    }

    #[test]
    fn nothing_is_incomplete() {
        assert_eq!(parse(b""), Err(RespRequestError::Incomplete));
    }

    #[test]
    fn decimal_numbers_follow_string2ll() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"-1"), Some(-1));
        assert_eq!(parse_decimal(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_decimal(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"00",
            b"+1",
            b"1 ",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_decimal(bad), None, "{}", bad.escape_ascii());
        }
    }

    #[test]
    fn reply_encodings_byte_for_byte() {
        let cases: [(RespReply, &[u8]); 10] = [
            (RespReply::Simple("OK".into()), b"+OK\r\n"),
            (RespReply::Error("ERR x".into()), b"-ERR x\r\n"),
            (RespReply::Error("ERR a\r\nb".into()), b"-ERR a  b\r\n"),
            (RespReply::Integer(1), b":1\r\n"),
            (RespReply::Integer(i64::MIN), b":-9223372036854775808\r\n"),
            (RespReply::Bulk(b"a\r\n".to_vec()), b"$3\r\na\r\n\r\n"),
            (RespReply::Bulk(vec![]), b"$0\r\n\r\n"),
            (RespReply::Null, b"$-1\r\n"),
            (RespReply::NullArray, b"*-1\r\n"),
            (
                RespReply::Array(vec![RespReply::Bulk(b"a".to_vec()), RespReply::Integer(3)]),
                b"*2\r\n$1\r\na\r\n:3\r\n",
            ),
        ];
        for (reply, bytes) in cases {
            assert_eq!(reply.to_bytes(), bytes, "{reply:?}");
        }
        assert_eq!(RespReply::Array(vec![]).to_bytes(), b"*0\r\n");
        let mut out = b"+OK\r\n".to_vec();
        RespReply::Integer(-7).encode(&mut out);
        assert_eq!(out, b"+OK\r\n:-7\r\n");
    }

    #[test]
    fn protocol_errors_reply_in_redis_words() {
        let cases = [
            (
                RespProtocolError::BadArrayLength,
                "-ERR Protocol error: invalid multibulk length\r\n",
            ),
            (
                RespProtocolError::BadBulkLength,
                "-ERR Protocol error: invalid bulk length\r\n",
            ),
            (
                RespProtocolError::UnbalancedQuotes,
                "-ERR Protocol error: unbalanced quotes in request\r\n",
            ),
            (
                RespProtocolError::ExpectedBulk { got: b':' },
                "-ERR Protocol error: expected '$', got ':'\r\n",
            ),
            (
                RespProtocolError::ExpectedBulk { got: b'\n' },
                "-ERR Protocol error: expected '$', got '\\n'\r\n",
            ),
            (
                RespProtocolError::InlineTooLong { max: 65536 },
                "-ERR Protocol error: too big inline request, the limit is 65536 bytes\r\n",
            ),
            (
                RespProtocolError::BulkTooLong { len: 9, max: 8 },
                "-ERR Protocol error: invalid bulk length 9, the limit is 8 bytes\r\n",
            ),
            (
                RespProtocolError::TooManyArgs { count: 9, max: 8 },
                "-ERR Protocol error: invalid multibulk length 9, the limit is 8 arguments\r\n",
            ),
            (
                RespProtocolError::MissingCrlf { offset: 11 },
                "-ERR Protocol error: expected '\\r\\n' at byte 11\r\n",
            ),
            (
                RespProtocolError::RequestTooLong { max: 5 },
                "-ERR Protocol error: too big request, the limit is 5 bytes\r\n",
            ),
        ];
        for (e, wire) in cases {
            assert_eq!(e.to_reply().to_bytes(), wire.as_bytes());
        }
    }

    #[test]
    fn a_request_is_an_array_of_bulk_replies() {
        let request = RespReply::Array(vec![
            RespReply::Bulk(b"GET".to_vec()),
            RespReply::Bulk(b"k".to_vec()),
        ]);
        assert_eq!(request.to_bytes(), GET);
    }
}
