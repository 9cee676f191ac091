//! [`RespClient`]: a minimal blocking Redis client, so that `duokv load` can
//! drive Redis with the very loop that drives duokv, for a side-by-side
//! benchmark.
//!
//! Why our own rather than a crate: the load generator needs three commands
//! (`SET`, `GET`, `WAIT`), and a fair comparison wants the same kind of
//! socket code on both sides: one blocking `std::net` connection per client
//! thread, `TCP_NODELAY`, one request in flight, read and write timeouts
//! (as [`Client`](duokv::Client) does for duokv).
//!
//! It speaks RESP2, the protocol of Redis 2 to 7 without `HELLO 3`: a
//! request is an array of bulk strings, `*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`, and
//! a reply is one [`RespValue`]. Framing is in two steps, as in mini-redis:
//! [`RespValue::check`] walks a buffer without allocating and says how long
//! the first reply is, or that more bytes are needed
//! ([`ParseError::Incomplete`], not a fault); [`RespValue::parse`] then
//! builds it. Any other [`ParseError`] means the bytes can never become a
//! reply.
//!
//! The parser never panics and never trusts a length: a bulk string is
//! capped at [`MAX_BULK_LEN`] (512 MiB, Redis's own `proto-max-bulk-len`),
//! an array at [`MAX_ARRAY_LEN`] elements, a simple line at
//! [`MAX_LINE_LEN`] bytes, nesting at [`MAX_DEPTH`] arrays, and a whole
//! reply at [`MAX_REPLY_LEN`] bytes; nothing is allocated for a length
//! before its bytes have arrived.
//!
//! Errors are [`RespError`]s: a read or write timeout is
//! [`RespError::Timeout`], a broken connection [`RespError::Broken`], an end
//! of stream inside a reply [`RespError::UnexpectedEof`], bytes that are not
//! RESP [`RespError::Invalid`] (with the [`ParseError`]), a Redis error reply
//! (`-ERR ...`) met by a convenience method [`RespError::ErrorReply`], and a
//! reply of the wrong type for the command [`RespError::UnexpectedReply`].

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// What `RespClient`'s calls return.
pub type Result<T, E = RespError> = std::result::Result<T, E>;

/// A failure talking to Redis.
#[derive(Debug)]
#[non_exhaustive]
pub enum RespError {
    /// Connecting failed.
    Connect {
        /// The server's address.
        addr: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// No reply came within the read timeout (or the request could not be
    /// written within the write timeout).
    Timeout {
        /// The server's address.
        addr: String,
    },
    /// The connection broke.
    Broken(io::Error),
    /// The server hung up inside a reply.
    UnexpectedEof {
        /// Bytes of the reply read.
        read: u64,
        /// Bytes needed at the least.
        expected: u64,
    },
    /// The bytes are not RESP.
    Invalid(ParseError),
    /// Redis answered with an error reply (`-ERR ...`), prefix included.
    ErrorReply {
        /// The reply's text.
        message: String,
    },
    /// The reply made no sense for the command.
    UnexpectedReply {
        /// What was expected.
        expected: &'static str,
    },
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::Connect { addr, .. } => write!(f, "cannot connect to {addr}"),
            RespError::Timeout { addr } => write!(f, "no reply from {addr} in time"),
            RespError::Broken(_) => write!(f, "connection failed"),
            RespError::UnexpectedEof { read, expected } => write!(
                f,
                "connection closed inside a reply ({read} bytes read, {expected} needed)"
            ),
            RespError::Invalid(_) => write!(f, "not a RESP reply"),
            RespError::ErrorReply { message } => write!(f, "error reply: {message}"),
            RespError::UnexpectedReply { expected } => {
                write!(f, "unexpected reply: expected {expected}")
            }
        }
    }
}

impl std::error::Error for RespError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RespError::Connect { source, .. } | RespError::Broken(source) => Some(source),
            RespError::Invalid(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for RespError {
    fn from(e: io::Error) -> Self {
        RespError::Broken(e)
    }
}

/// The longest bulk string accepted, in bytes: 512 MiB, as Redis's default
/// `proto-max-bulk-len`.
pub const MAX_BULK_LEN: usize = 512 * 1024 * 1024;

/// The most elements an array may announce. Replies to `SET`, `GET` and
/// `WAIT` have none; this leaves room for any reply a test might ask for.
pub const MAX_ARRAY_LEN: usize = 1024 * 1024;

/// The longest simple string, error or number line, in bytes, without its
/// `\r\n`.
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// How deeply arrays may nest, so that a hostile reply cannot exhaust the
/// stack of the recursive parser.
pub const MAX_DEPTH: usize = 32;

/// The most bytes one reply may take, arrays included: a bulk string at its
/// cap and room to spare. Past this, a reply still incomplete is refused.
pub const MAX_REPLY_LEN: usize = 2 * MAX_BULK_LEN;

/// How long [`RespClient::connect`] waits for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The default read and write timeout of a [`RespClient`].
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespValue {
    /// `+OK\r\n`: a status line. Bytes that are not UTF-8 are replaced
    /// with U+FFFD.
    Simple(String),
    /// `-ERR message\r\n`: an error reply, prefix included (`ERR`,
    /// `WRONGTYPE`...). Not UTF-8 is replaced as for [`Simple`](Self::Simple).
    Error(String),
    /// `:42\r\n`: a signed 64-bit integer.
    Integer(i64),
    /// `$5\r\nhello\r\n`: binary-safe bytes; `None` is the null bulk string
    /// `$-1\r\n` (a `GET` of a missing key).
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n...`: replies in order; `None` is the null array `*-1\r\n`.
    Array(Option<Vec<RespValue>>),
}

/// Why bytes are not (yet) a RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The buffer holds the start of a reply but not all of it: read more
    /// bytes and call again. Not a fault.
    Incomplete,
    /// The first byte of a value is not one of `+ - : $ *`.
    UnknownType {
        /// The byte.
        byte: u8,
    },
    /// A length or integer line is not an optional `-` and decimal digits
    /// that fit an `i64`.
    BadNumber,
    /// A bulk string or array length is negative but not the null `-1`.
    NegativeLength {
        /// The length announced.
        len: i64,
    },
    /// A length, a line or the whole reply is over its cap.
    TooLarge {
        /// What: `"bulk string"`, `"array"`, `"line"` or `"reply"`.
        what: &'static str,
        /// The cap it broke.
        max: usize,
    },
    /// A bulk string's bytes are not followed by `\r\n`.
    MissingCrlf,
    /// Arrays nest deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Incomplete => write!(f, "incomplete RESP reply"),
            ParseError::UnknownType { byte } => {
                write!(f, "unknown RESP type byte {byte:#04x}")?;
                if byte.is_ascii_graphic() {
                    write!(f, " ({:?})", char::from(*byte))?;
                }
                Ok(())
            }
            ParseError::BadNumber => write!(f, "RESP length or integer is not a decimal i64"),
            ParseError::NegativeLength { len } => write!(f, "negative RESP length {len}"),
            ParseError::TooLarge { what, max } => {
                write!(f, "RESP {what} over the cap of {max}")?;
                f.write_str(if *what == "array" {
                    " elements"
                } else {
                    " bytes"
                })
            }
            ParseError::MissingCrlf => write!(f, "RESP bulk string not ended by CRLF"),
            ParseError::TooDeep => write!(f, "RESP arrays nested deeper than {MAX_DEPTH}"),
        }
    }
}

impl std::error::Error for ParseError {}

type Parsed<T> = std::result::Result<T, ParseError>;

impl RespValue {
    /// The length in bytes of the first whole reply in `buf`, found without
    /// allocating; [`ParseError::Incomplete`] if `buf` ends before it does.
    ///
    /// ```
    /// use duokv_tools::resp::{ParseError, RespValue};
    ///
    /// assert_eq!(RespValue::check(b"+OK\r\n:1\r\n"), Ok(5));
    /// assert_eq!(RespValue::check(b"$5\r\nhel"), Err(ParseError::Incomplete));
    /// ```
    pub fn check(buf: &[u8]) -> Parsed<usize> {
        let mut cursor = Cursor { buf, pos: 0 };
        skip(&mut cursor, 0)?;
        Ok(cursor.pos)
    }

    /// The first whole reply in `buf` and its length in bytes;
    /// [`ParseError::Incomplete`] if `buf` ends before it does.
    ///
    /// ```
    /// use duokv_tools::resp::RespValue;
    ///
    /// let (value, len) = RespValue::parse(b"$5\r\nhello\r\n")?;
    /// assert_eq!(value, RespValue::Bulk(Some(b"hello".to_vec())));
    /// assert_eq!(len, 11);
    /// # Ok::<(), duokv_tools::resp::ParseError>(())
    /// ```
    pub fn parse(buf: &[u8]) -> Parsed<(RespValue, usize)> {
        // Check first, so that nothing is allocated for a reply that is
        // incomplete or broken.
        let len = RespValue::check(buf)?;
        let mut cursor = Cursor {
            buf: &buf[..len],
            pos: 0,
        };
        let value = build(&mut cursor, 0)?;
        Ok((value, len))
    }

    /// The value in RESP2 bytes, as a server would send it. Simple strings
    /// and errors are written as they are: one holding `\r` or `\n` does not
    /// parse back.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            RespValue::Simple(s) => line(out, b'+', s.as_bytes()),
            RespValue::Error(s) => line(out, b'-', s.as_bytes()),
            RespValue::Integer(n) => line(out, b':', n.to_string().as_bytes()),
            RespValue::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
            RespValue::Bulk(Some(bytes)) => bulk(out, bytes),
            RespValue::Array(None) => out.extend_from_slice(b"*-1\r\n"),
            RespValue::Array(Some(items)) => {
                line(out, b'*', items.len().to_string().as_bytes());
                for item in items {
                    item.encode_into(out);
                }
            }
        }
    }
}

/// A request in RESP2 bytes: an array of bulk strings, one per argument.
///
/// ```
/// assert_eq!(
///     duokv_tools::resp::encode_command(&[b"GET", b"k"]),
///     b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
/// );
/// ```
pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    line(&mut out, b'*', args.len().to_string().as_bytes());
    for arg in args {
        bulk(&mut out, arg);
    }
    out
}

fn line(out: &mut Vec<u8>, kind: u8, text: &[u8]) {
    out.push(kind);
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    line(out, b'$', bytes.len().to_string().as_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// A read position in a buffer; every step is checked, none can panic.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn byte(&mut self) -> Parsed<u8> {
        let byte = *self.rest().first().ok_or(ParseError::Incomplete)?;
        self.pos += 1;
        Ok(byte)
    }

    /// The bytes up to the next `\r\n`, which is consumed too.
    fn line(&mut self) -> Parsed<&'a [u8]> {
        let rest = self.rest();
        let window = &rest[..rest.len().min(MAX_LINE_LEN + 2)];
        match window.windows(2).position(|pair| pair == b"\r\n") {
            Some(end) => {
                self.pos += end + 2;
                Ok(&rest[..end])
            }
            None if window.len() == MAX_LINE_LEN + 2 => Err(ParseError::TooLarge {
                what: "line",
                max: MAX_LINE_LEN,
            }),
            None => Err(ParseError::Incomplete),
        }
    }

    /// A line holding `-?[0-9]+` that fits an `i64`.
    fn number(&mut self) -> Parsed<i64> {
        let line = self.line()?;
        let digits = line.strip_prefix(b"-").unwrap_or(line);
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::BadNumber);
        }
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(ParseError::BadNumber)
    }

    /// A bulk string or array length: `None` for the null `-1`, an error
    /// for other negatives and for lengths over `max`.
    fn length(&mut self, what: &'static str, max: usize) -> Parsed<Option<usize>> {
        match self.number()? {
            -1 => Ok(None),
            len if len < 0 => Err(ParseError::NegativeLength { len }),
            len => match usize::try_from(len) {
                Ok(len) if len <= max => Ok(Some(len)),
                _ => Err(ParseError::TooLarge { what, max }),
            },
        }
    }

    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Parsed<&'a [u8]> {
        let bytes = self.rest().get(..n).ok_or(ParseError::Incomplete)?;
        self.pos += n;
        Ok(bytes)
    }

    /// A bulk string's body and its `\r\n`.
    fn bulk_body(&mut self, len: usize) -> Parsed<&'a [u8]> {
        let body = self.take(len)?;
        if self.take(2)? != b"\r\n" {
            return Err(ParseError::MissingCrlf);
        }
        Ok(body)
    }
}

/// Walks one value without allocating.
fn skip(cursor: &mut Cursor<'_>, depth: usize) -> Parsed<()> {
    match cursor.byte()? {
        b'+' | b'-' => {
            cursor.line()?;
        }
        b':' => {
            cursor.number()?;
        }
        b'$' => {
            if let Some(len) = cursor.length("bulk string", MAX_BULK_LEN)? {
                cursor.bulk_body(len)?;
            }
        }
        b'*' => {
            if depth >= MAX_DEPTH {
                return Err(ParseError::TooDeep);
            }
            if let Some(len) = cursor.length("array", MAX_ARRAY_LEN)? {
                for _ in 0..len {
                    skip(cursor, depth + 1)?;
                }
            }
        }
        byte => return Err(ParseError::UnknownType { byte }),
    }
    Ok(())
}

/// Reads one value, allocating: called once [`skip`] has passed the same
/// bytes, though it checks everything again rather than trust that.
fn build(cursor: &mut Cursor<'_>, depth: usize) -> Parsed<RespValue> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    Ok(match cursor.byte()? {
        b'+' => RespValue::Simple(text(cursor.line()?)),
        b'-' => RespValue::Error(text(cursor.line()?)),
        b':' => RespValue::Integer(cursor.number()?),
        b'$' => match cursor.length("bulk string", MAX_BULK_LEN)? {
            None => RespValue::Bulk(None),
            Some(len) => RespValue::Bulk(Some(cursor.bulk_body(len)?.to_vec())),
        },
        b'*' => {
            if depth >= MAX_DEPTH {
                return Err(ParseError::TooDeep);
            }
            match cursor.length("array", MAX_ARRAY_LEN)? {
                None => RespValue::Array(None),
                Some(len) => {
                    // Every element takes at least 3 bytes, so the bytes
                    // left bound the allocation whatever `len` claims.
                    let mut items = Vec::with_capacity(len.min(cursor.rest().len() / 3));
                    for _ in 0..len {
                        items.push(build(cursor, depth + 1)?);
                    }
                    RespValue::Array(Some(items))
                }
            }
        }
        byte => return Err(ParseError::UnknownType { byte }),
    })
}

/// A blocking client of one Redis server, speaking RESP2 over one TCP
/// connection with `TCP_NODELAY`, one request at a time.
///
/// If the connection breaks, times out or carries something that is not
/// RESP, the call that saw it fails and the next call dials again, as
/// [`Client`](duokv::Client) does: a command is never sent twice behind the
/// caller's back.
///
/// ```no_run
/// use duokv_tools::resp::RespClient;
///
/// # fn main() -> Result<(), duokv_tools::resp::RespError> {
/// let mut redis = RespClient::connect("127.0.0.1:6379")?;
/// redis.set("greeting", "hello")?;
/// assert_eq!(redis.get("greeting")?, Some(b"hello".to_vec()));
/// let replicas = redis.wait(1, 100)?; // replicas that have the SET
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RespClient {
    addr: String,
    timeout: Duration,
    conn: Option<Connection>,
}

/// An open connection and the bytes read past the last reply.
#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RespClient {
    /// Connects to the Redis server at `addr` (`host:port`), waiting up to
    /// 5 s; replies are awaited up to 30 s (see
    /// [`set_timeout`](Self::set_timeout)).
    pub fn connect(addr: impl Into<String>) -> Result<RespClient> {
        let mut client = RespClient {
            addr: addr.into(),
            timeout: IO_TIMEOUT,
            conn: None,
        };
        client.conn = Some(client.dial()?);
        Ok(client)
    }

    /// The server's address, as given.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sets how long a reply is awaited and a send may block, now and
    /// after a reconnection.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.timeout = timeout;
        if let Some(conn) = &self.conn {
            conn.stream.set_read_timeout(Some(timeout))?;
            conn.stream.set_write_timeout(Some(timeout))?;
        }
        Ok(())
    }

    /// Sends one command, its arguments as bulk strings, and reads one
    /// reply. An error reply is a [`RespValue::Error`], not an `Err`: that
    /// is for the connection failing or the reply not being RESP.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), duokv_tools::resp::RespError> {
    /// # let mut redis = duokv_tools::resp::RespClient::connect("127.0.0.1:6379")?;
    /// use duokv_tools::resp::RespValue;
    ///
    /// let reply = redis.command(&[b"INCRBY", b"counter", b"5"])?;
    /// assert!(matches!(reply, RespValue::Integer(_)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn command(&mut self, args: &[&[u8]]) -> Result<RespValue> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(self.dial()?),
        };
        let result = exchange(conn, &encode_command(args), &self.addr);
        if result.is_err() {
            // The stream may hold half a reply: start afresh next time.
            self.conn = None;
        }
        result
    }

    /// `PING`: succeeds if the server answers `+PONG`.
    pub fn ping(&mut self) -> Result<()> {
        match self.command(&[b"PING"])? {
            RespValue::Simple(s) if s == "PONG" => Ok(()),
            reply => Err(unexpected(reply, "+PONG")),
        }
    }

    /// `SET key value`: succeeds if the server answers `+OK`.
    pub fn set(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        match self.command(&[b"SET", key.as_ref(), value.as_ref()])? {
            RespValue::Simple(s) if s == "OK" => Ok(()),
            reply => Err(unexpected(reply, "+OK")),
        }
    }

    /// `GET key`: the value, or `None` if the key is missing.
    pub fn get(&mut self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        match self.command(&[b"GET", key.as_ref()])? {
            RespValue::Bulk(value) => Ok(value),
            reply => Err(unexpected(reply, "a bulk string")),
        }
    }

    /// `WAIT numreplicas timeout_ms`: blocks until `numreplicas` replicas
    /// have every write this connection made, or `timeout_ms` has passed
    /// (`0` waits without limit, as in Redis, so only the client's read
    /// timeout ends it), and returns how many replicas have them.
    pub fn wait(&mut self, numreplicas: u32, timeout_ms: u64) -> Result<i64> {
        let (numreplicas, timeout_ms) = (numreplicas.to_string(), timeout_ms.to_string());
        match self.command(&[b"WAIT", numreplicas.as_bytes(), timeout_ms.as_bytes()])? {
            RespValue::Integer(n) => Ok(n),
            reply => Err(unexpected(reply, "an integer")),
        }
    }

    fn dial(&self) -> Result<Connection> {
        let addr = &self.addr;
        let connect_error = |source| RespError::Connect {
            addr: addr.clone(),
            source,
        };
        let mut last_error = None;
        for candidate in addr.to_socket_addrs().map_err(connect_error)? {
            match TcpStream::connect_timeout(&candidate, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_read_timeout(Some(self.timeout))?;
                    stream.set_write_timeout(Some(self.timeout))?;
                    return Ok(Connection {
                        stream,
                        buf: Vec::new(),
                    });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(connect_error(last_error.unwrap_or_else(|| {
            io::Error::new(ErrorKind::NotFound, "address resolved to nothing")
        })))
    }
}

/// Writes a request and reads one reply.
fn exchange(conn: &mut Connection, request: &[u8], addr: &str) -> Result<RespValue> {
    conn.stream
        .write_all(request)
        .map_err(|e| io_error(e, addr))?;
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        match RespValue::parse(&conn.buf) {
            Ok((value, len)) => {
                conn.buf.drain(..len);
                return Ok(value);
            }
            Err(ParseError::Incomplete) if conn.buf.len() >= MAX_REPLY_LEN => {
                return Err(invalid(ParseError::TooLarge {
                    what: "reply",
                    max: MAX_REPLY_LEN,
                }));
            }
            Err(ParseError::Incomplete) => {}
            Err(e) => return Err(invalid(e)),
        }
        match conn.stream.read(&mut chunk) {
            Ok(0) => {
                let read = conn.buf.len() as u64;
                return Err(RespError::UnexpectedEof {
                    read,
                    expected: read + 1,
                });
            }
            Ok(n) => conn.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(e, addr)),
        }
    }
}

/// A read or write timeout as [`RespError::Timeout`], anything else as a
/// broken connection.
fn io_error(e: io::Error, addr: &str) -> RespError {
    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
        RespError::Timeout {
            addr: addr.to_string(),
        }
    } else {
        RespError::Broken(e)
    }
}

/// Bytes that are not RESP.
fn invalid(e: ParseError) -> RespError {
    RespError::Invalid(e)
}

/// An error reply as [`RespError::ErrorReply`]; any other reply as
/// [`RespError::UnexpectedReply`].
fn unexpected(reply: RespValue, expected: &'static str) -> RespError {
    match reply {
        RespValue::Error(message) => RespError::ErrorReply { message },
        _ => RespError::UnexpectedReply { expected },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    fn parse_all(bytes: &[u8]) -> Parsed<RespValue> {
        let (value, len) = RespValue::parse(bytes)?;
        assert_eq!(len, bytes.len(), "{bytes:?}: trailing bytes");
        Ok(value)
    }

    fn bulk(bytes: &[u8]) -> RespValue {
        RespValue::Bulk(Some(bytes.to_vec()))
    }

    /// Replies of every type, as Redis sends them.
    fn samples() -> Vec<(&'static [u8], RespValue)> {
        vec![
            (b"+OK\r\n", RespValue::Simple("OK".into())),
            (b"+\r\n", RespValue::Simple(String::new())),
            (
                b"-ERR unknown command 'FOO'\r\n",
                RespValue::Error("ERR unknown command 'FOO'".into()),
            ),
            (b":0\r\n", RespValue::Integer(0)),
            (b":-17\r\n", RespValue::Integer(-17)),
            (b":9223372036854775807\r\n", RespValue::Integer(i64::MAX)),
            (b":-9223372036854775808\r\n", RespValue::Integer(i64::MIN)),
            (b"$5\r\nhello\r\n", bulk(b"hello")),
            (b"$0\r\n\r\n", bulk(b"")),
            (b"$4\r\na\r\nb\r\n", bulk(b"a\r\nb")),
            (b"$-1\r\n", RespValue::Bulk(None)),
            (b"*0\r\n", RespValue::Array(Some(vec![]))),
            (b"*-1\r\n", RespValue::Array(None)),
            (
                b"*3\r\n:1\r\n$-1\r\n*1\r\n+x\r\n",
                RespValue::Array(Some(vec![
                    RespValue::Integer(1),
                    RespValue::Bulk(None),
                    RespValue::Array(Some(vec![RespValue::Simple("x".into())])),
                ])),
            ),
        ]
    }

    #[test]
    fn resp_parses_every_type() {
        for (bytes, expected) in samples() {
            assert_eq!(parse_all(bytes), Ok(expected.clone()), "{bytes:?}");
            assert_eq!(expected.to_bytes(), bytes, "{expected:?}");
        }
    }

    #[test]
    fn resp_parse_takes_one_reply_and_leaves_the_rest() {
        assert_eq!(
            RespValue::parse(b"+OK\r\n:1\r\n"),
            Ok((RespValue::Simple("OK".into()), 5))
        );
    }

    #[test]
    fn resp_every_truncation_is_incomplete() {
        for (bytes, _) in samples() {
            for end in 0..bytes.len() {
                assert_eq!(
                    RespValue::check(&bytes[..end]),
                    Err(ParseError::Incomplete),
                    "{:?}",
                    &bytes[..end]
                );
                assert_eq!(RespValue::parse(&bytes[..end]), Err(ParseError::Incomplete));
            }
        }
    }

    #[test]
    fn resp_rejects_garbage() {
        let cases: &[(&[u8], ParseError)] = &[
            (
                b"HTTP/1.1 200 OK\r\n",
                ParseError::UnknownType { byte: b'H' },
            ),
            (b"DUKV\x00\x01", ParseError::UnknownType { byte: b'D' }),
            (b"%1\r\n", ParseError::UnknownType { byte: b'%' }),
            (b":\r\n", ParseError::BadNumber),
            (b":-\r\n", ParseError::BadNumber),
            (b":+5\r\n", ParseError::BadNumber),
            (b": 5\r\n", ParseError::BadNumber),
            (b":9223372036854775808\r\n", ParseError::BadNumber),
            (b"$abc\r\n", ParseError::BadNumber),
            (b"$-2\r\n", ParseError::NegativeLength { len: -2 }),
            (b"*-5\r\n", ParseError::NegativeLength { len: -5 }),
            (b"$3\r\nabcd\r\n", ParseError::MissingCrlf),
            (
                b"$536870913\r\n",
                ParseError::TooLarge {
                    what: "bulk string",
                    max: MAX_BULK_LEN,
                },
            ),
            (
                b"$9223372036854775807\r\n",
                ParseError::TooLarge {
                    what: "bulk string",
                    max: MAX_BULK_LEN,
                },
            ),
            (
                b"*1048577\r\n",
                ParseError::TooLarge {
                    what: "array",
                    max: MAX_ARRAY_LEN,
                },
            ),
            (b"*2\r\n:1\r\n?\r\n", ParseError::UnknownType { byte: b'?' }),
        ];
        for (bytes, expected) in cases {
            assert_eq!(RespValue::check(bytes).as_ref(), Err(expected), "{bytes:?}");
            assert_eq!(RespValue::parse(bytes).err().as_ref(), Some(expected));
        }
    }

    #[test]
    fn resp_caps_lines_and_nesting() {
        let mut long = vec![b'+'];
        long.extend(std::iter::repeat_n(b'a', MAX_LINE_LEN));
        assert_eq!(RespValue::check(&long), Err(ParseError::Incomplete));
        long.extend_from_slice(b"\r\n");
        assert_eq!(RespValue::check(&long), Ok(long.len()), "a line at the cap");
        long.insert(1, b'a');
        assert_eq!(
            RespValue::check(&long),
            Err(ParseError::TooLarge {
                what: "line",
                max: MAX_LINE_LEN
            })
        );

        let nested = |depth: usize| {
            let mut bytes = b"*1\r\n".repeat(depth);
            bytes.extend_from_slice(b":1\r\n");
            bytes
        };
        assert!(RespValue::parse(&nested(MAX_DEPTH)).is_ok());
        assert_eq!(
            RespValue::parse(&nested(MAX_DEPTH + 1)),
            Err(ParseError::TooDeep)
        );
        // Far deeper than any stack would survive, had the depth no cap.
        assert_eq!(
            RespValue::check(&nested(1_000_000)),
            Err(ParseError::TooDeep)
        );
    }

    #[test]
    fn resp_huge_announced_lengths_allocate_nothing() {
        // An array announcing a million elements, with two present.
        assert_eq!(
            RespValue::parse(b"*1048576\r\n:1\r\n:2\r\n"),
            Err(ParseError::Incomplete)
        );
        assert_eq!(
            RespValue::parse(b"$536870912\r\nabc"),
            Err(ParseError::Incomplete)
        );
    }

    /// A small seeded generator for the fuzz test below.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Random bytes, and valid replies with random bytes flipped, inserted
    /// or cut: the parser returns, never panics, agrees with `check`, and
    /// whatever it accepts survives an encode and a parse unchanged.
    #[test]
    fn resp_never_panics_on_arbitrary_bytes() {
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        let alphabet = b"+-:$*\r\n0123456789-x";
        let samples = samples();
        for round in 0..50_000 {
            let mut bytes: Vec<u8> = if round % 2 == 0 {
                let len = rng.below(40);
                (0..len)
                    .map(|_| {
                        if rng.next().is_multiple_of(4) {
                            rng.next() as u8
                        } else {
                            alphabet[rng.below(alphabet.len())]
                        }
                    })
                    .collect()
            } else {
                samples[rng.below(samples.len())].0.to_vec()
            };
            for _ in 0..rng.below(4) {
                let at = rng.below(bytes.len() + 1);
                match rng.next() % 3 {
                    0 if at < bytes.len() => bytes[at] = alphabet[rng.below(alphabet.len())],
                    1 => bytes.insert(at, rng.next() as u8),
                    _ => bytes.truncate(at),
                }
            }
            let checked = RespValue::check(&bytes);
            match RespValue::parse(&bytes) {
                Ok((value, len)) => {
                    assert_eq!(checked, Ok(len));
                    let encoded = value.to_bytes();
                    assert_eq!(
                        RespValue::parse(&encoded),
                        Ok((value, encoded.len())),
                        "{bytes:?}"
                    );
                }
                Err(e) => assert_eq!(checked, Err(e)),
            }
        }
    }

    /// A server on 127.0.0.1:0 that reads one request per entry of
    /// `replies`, hands the request bytes back through the join handle, and
    /// writes the reply one byte at a time.
    fn fake_server(replies: Vec<Vec<u8>>) -> (String, thread::JoinHandle<Vec<Vec<u8>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.set_nodelay(true).unwrap();
            let mut requests = Vec::new();
            for reply in replies {
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                // Read until a whole request array has arrived.
                while RespValue::check(&request).is_err() {
                    if stream.read(&mut byte).unwrap() == 0 {
                        return requests;
                    }
                    request.push(byte[0]);
                }
                requests.push(request);
                for b in reply {
                    // The client may hang up on a bad reply mid-way.
                    if stream.write_all(&[b]).is_err() {
                        return requests;
                    }
                }
            }
            requests
        });
        (addr, handle)
    }

    #[test]
    fn resp_client_speaks_to_a_server() {
        let (addr, server) = fake_server(vec![
            b"+PONG\r\n".to_vec(),
            b"+OK\r\n".to_vec(),
            b"$5\r\nvalue\r\n".to_vec(),
            b"$-1\r\n".to_vec(),
            b":1\r\n".to_vec(),
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n".to_vec(),
            b":7\r\n".to_vec(),
        ]);
        let mut client = RespClient::connect(addr).unwrap();
        client.ping().unwrap();
        client.set("k", "value").unwrap();
        assert_eq!(client.get("k").unwrap(), Some(b"value".to_vec()));
        assert_eq!(client.get("missing").unwrap(), None);
        assert_eq!(client.wait(1, 100).unwrap(), 1);
        match client.get("k") {
            Err(RespError::ErrorReply { message }) => assert!(message.starts_with("WRONGTYPE")),
            other => panic!("expected the error reply, got {other:?}"),
        }
        assert!(matches!(
            client.set("k", "v"),
            Err(RespError::UnexpectedReply { expected: "+OK" })
        ));
        drop(client);
        let requests = server.join().unwrap();
        let expected: Vec<Vec<u8>> = vec![
            encode_command(&[b"PING"]),
            encode_command(&[b"SET", b"k", b"value"]),
            encode_command(&[b"GET", b"k"]),
            encode_command(&[b"GET", b"missing"]),
            encode_command(&[b"WAIT", b"1", b"100"]),
            encode_command(&[b"GET", b"k"]),
            encode_command(&[b"SET", b"k", b"v"]),
        ];
        assert_eq!(requests, expected);
    }

    #[test]
    fn resp_client_reports_garbage_a_hang_up_and_a_timeout() {
        let (addr, server) = fake_server(vec![b"HTTP/1.1 400\r\n".to_vec()]);
        let mut client = RespClient::connect(addr).unwrap();
        let garbage = duokv::error::chain(&client.get("k").unwrap_err());
        assert!(
            garbage.contains("unknown RESP type byte 0x48 ('H')"),
            "{garbage}"
        );
        server.join().unwrap();

        // Half a reply, then the server hangs up.
        let (addr, server) = fake_server(vec![b"$5\r\nab".to_vec()]);
        let mut client = RespClient::connect(addr).unwrap();
        assert!(matches!(
            client.get("k"),
            Err(RespError::UnexpectedEof {
                read: 6,
                expected: 7
            })
        ));
        server.join().unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = RespClient::connect(listener.local_addr().unwrap().to_string()).unwrap();
        client.set_timeout(Duration::from_millis(50)).unwrap();
        assert!(matches!(client.ping(), Err(RespError::Timeout { .. })));
    }
}
