//! [`Client`]: CRUD over one connection to a duokv server.
//!
//! A client holds one TCP connection and sends one request at a time. If the
//! connection breaks, the call that saw it fails, and the next call dials
//! again: a write is never sent twice behind the caller's back, since the
//! first may have been applied.
//!
//! Reads can carry conditions ([`ReadWhen`]): a write the replica must
//! show first (a [`Token`]), and how stale its data may be at most. Both
//! are how a slave is read safely; a [`Session`](crate::Session) sets them
//! for every read so that a caller need not.

use std::io::{BufReader, ErrorKind, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::auth::AuthToken;
use crate::clock::now_ns;
use crate::token::Token;

use duokv_protocol::{
    self as protocol, Frame, Handshake, HandshakeFields, HandshakeReply, HandshakeStatus,
    MaxStaleness, Message, NodeRole, ReadAfter, ReadPoint, Request, Response, Role,
};

use crate::error::{Error, Result};
use crate::tls::ClientTls;
use crate::transport::Transport;

/// What a write returned: its ID and when it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteReceipt {
    /// The write's sequence number: its ID, the same on every replica.
    pub seq: u64,
    /// The client's wall clock just before the request was sent (UNIX ns).
    pub started_ns: u64,
    /// The client's wall clock when the reply arrived: the commit (UNIX ns).
    pub committed_ns: u64,
    /// From start to commit, on the client's monotonic clock.
    pub latency: Duration,
    /// The server's timestamps for the write, and the history id of the
    /// log it is in.
    pub server: protocol::WriteReceipt,
}

impl WriteReceipt {
    /// The write's token, for [`Client::read_after`]; `None` from a server
    /// too old to send the history id.
    ///
    /// ```
    /// # let server = duokv::doctest::server();
    /// # let mut client = duokv::Client::connect(server.addr())?;
    /// let token = client.put("k", "v")?.token().expect("a server with tokens");
    /// assert_eq!(token.seq, 1);
    /// # Ok::<(), duokv::Error>(())
    /// ```
    pub fn token(&self) -> Option<Token> {
        (self.server.history != 0).then_some(Token {
            history: self.server.history,
            seq: self.seq,
        })
    }
}

/// The answer to a [`Client::ping`]: the four timestamps of an NTP-style
/// clock probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pong {
    /// Client clock when the ping was sent (t1, UNIX ns).
    pub sent_ns: u64,
    /// Server clock when it read the ping (t2).
    pub server_received_ns: u64,
    /// Server clock when it sent the reply (t3).
    pub server_sent_ns: u64,
    /// Client clock when the reply arrived (t4).
    pub received_ns: u64,
    /// The round trip on the client's monotonic clock.
    pub round_trip: Duration,
}

impl Pong {
    /// The server's clock minus the client's, estimated as
    /// `((t2 - t1) + (t3 - t4)) / 2`, in nanoseconds.
    pub fn offset_ns(&self) -> i64 {
        let t = |x: u64| i128::from(x);
        let offset = ((t(self.server_received_ns) - t(self.sent_ns))
            + (t(self.server_sent_ns) - t(self.received_ns)))
            / 2;
        i64::try_from(offset).unwrap_or(if offset < 0 { i64::MIN } else { i64::MAX })
    }

    /// How far the true offset can be from [`offset_ns`](Self::offset_ns):
    /// half the round trip.
    pub fn error_bound(&self) -> Duration {
        self.round_trip / 2
    }
}

/// The conditions of a read ([`Client::read_when`]), chained
/// builder-style from [`ReadWhen::new`], a plain read.
///
/// - `after`: answer once this write is visible on the replica (read your
///   writes), else [`Error::NotYetVisible`] or [`Error::UnknownHistory`].
/// - `max_staleness`: answer only if the replica can prove its data at
///   most this old (a master always can), else [`Error::TooStale`]. From
///   1 us to `u32::MAX` us (about 71 minutes), whole microseconds (the
///   rest is dropped); outside that range the read fails with
///   [`Error::BadRequest`] before anything is sent.
/// - `wait`: how long the replica may wait for either condition (whole
///   milliseconds; the server caps it at 60 s and at its idle timeout).
///
/// ```
/// use std::time::Duration;
/// use duokv::ReadWhen;
///
/// let when = ReadWhen::new()
///     .max_staleness(Duration::from_millis(5))
///     .wait(Duration::from_millis(50));
/// assert_eq!(when.after, None);
/// assert_eq!(when.max_staleness, Some(Duration::from_millis(5)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadWhen {
    /// The write the replica must show first, if any.
    pub after: Option<Token>,
    /// How old the replica's data may be at most, if bounded.
    pub max_staleness: Option<Duration>,
    /// How long the replica may wait for the conditions (0: not at all).
    pub wait: Duration,
}

impl ReadWhen {
    /// A plain read: no condition, no wait.
    pub fn new() -> ReadWhen {
        ReadWhen::default()
    }

    /// Answer once the write `token` is visible on the replica.
    pub fn after(mut self, token: impl Into<Option<Token>>) -> ReadWhen {
        self.after = token.into();
        self
    }

    /// Answer only with data provably at most `max_staleness` old.
    pub fn max_staleness(mut self, max_staleness: impl Into<Option<Duration>>) -> ReadWhen {
        self.max_staleness = max_staleness.into();
        self
    }

    /// Let the replica wait up to `wait` for the conditions.
    pub fn wait(mut self, wait: Duration) -> ReadWhen {
        self.wait = wait;
        self
    }

    /// The request for `key` under these conditions, or
    /// [`Error::BadRequest`] for a staleness bound the wire cannot carry.
    fn request(&self, key: &[u8]) -> Result<Request> {
        let wait_ms = u32::try_from(self.wait.as_millis()).unwrap_or(u32::MAX);
        let fresh = self
            .max_staleness
            .map(|max| {
                staleness_us(max).map(|max_staleness_us| MaxStaleness {
                    max_staleness_us,
                    wait_ms,
                })
            })
            .transpose()?;
        Ok(Request::Read {
            key: key.to_vec(),
            after: self.after.map(|token| ReadAfter {
                history: token.history,
                seq: token.seq,
                wait_ms,
            }),
            fresh,
        })
    }
}

/// A staleness bound in whole microseconds as the wire carries it (a u32),
/// or why it cannot be: under 1 us (only a master could ever prove it:
/// read the master) or over `u32::MAX` us.
fn staleness_us(max: Duration) -> Result<u32> {
    u32::try_from(max.as_micros())
        .ok()
        .filter(|&us| us >= 1)
        .ok_or_else(|| Error::BadRequest {
            message: format!(
                "a max staleness of {max:?} is out of range: give 1us to {:?}",
                Duration::from_micros(u64::from(u32::MAX))
            ),
        })
}

/// What a [`Client::read_when`] returned: the value, the seq of the write
/// that set it, and where the replica stood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The value, or `None` if the key has none.
    pub value: Option<Vec<u8>>,
    /// The seq of the write that set the value; 0 if the key has none.
    pub seq: u64,
    /// The replica's history, and its newest visible seq just after it
    /// read the key (an upper bound of what the read saw); `None` from a
    /// server too old to send them.
    pub at: Option<ReadPoint>,
}

impl ReadOutcome {
    /// The token a later read must be `after` not to go back in time:
    /// `(history, seq)` of the value read, or `(history, visible_seq)` when
    /// the key was absent, so that an observed delete is never undone;
    /// `None` without a read point.
    ///
    /// ```
    /// # let server = duokv::doctest::server();
    /// # let mut client = duokv::Client::connect(server.addr())?;
    /// client.put("a", "1")?;
    /// client.put("b", "2")?;
    /// let read = client.read_when("a", &duokv::ReadWhen::new())?;
    /// assert_eq!(read.token().map(|t| t.seq), Some(1));
    /// let absent = client.read_when("c", &duokv::ReadWhen::new())?;
    /// assert_eq!(absent.token().map(|t| t.seq), Some(2)); // all it saw
    /// # Ok::<(), duokv::Error>(())
    /// ```
    pub fn token(&self) -> Option<Token> {
        self.at.map(|at| Token {
            history: at.history,
            seq: if self.value.is_some() {
                self.seq
            } else {
                at.visible_seq
            },
        })
    }
}

/// Settings for a [`Client`], chained builder-style.
///
/// ```no_run
/// use std::time::Duration;
///
/// # fn main() -> Result<(), duokv::Error> {
/// let mut client = duokv::Client::builder("127.0.0.1:7070")
///     .connect_timeout(Duration::from_secs(1))
///     .read_timeout(Duration::from_secs(5))
///     .connect()?;
/// client.put("k", "v")?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    addr: String,
    connect_timeout: Duration,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    auth_token: Option<AuthToken>,
    tls: Option<ClientTls>,
}

impl ClientBuilder {
    /// Connects through TLS, trusting the authority and presenting the
    /// certificate `tls` holds (default: in clear). The server's
    /// certificate must be for the host of the client's address.
    pub fn tls(mut self, tls: impl Into<Option<ClientTls>>) -> Self {
        self.tls = tls.into();
        self
    }

    /// The shared secret to present, for servers started with
    /// `--auth-token-file` (default: none).
    pub fn auth_token(mut self, token: impl Into<Option<AuthToken>>) -> Self {
        self.auth_token = token.into();
        self
    }

    /// How long to wait for a connection (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for a reply (default 30 s).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }

    /// How long a send may block (default 30 s).
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = Some(timeout);
        self
    }

    /// Connects, or fails with the reason.
    pub fn connect(self) -> Result<Client> {
        let mut client = self.build();
        client.ensure_connected()?;
        Ok(client)
    }

    /// A client that dials on its first call.
    pub fn build(self) -> Client {
        Client {
            config: self,
            conn: None,
            next_request_id: 1,
        }
    }
}

/// An open connection.
#[derive(Debug)]
struct Connection {
    reader: BufReader<Transport>,
    writer: Transport,
    server_role: NodeRole,
}

/// A client of one duokv server, with CRUD as methods.
///
/// Keys and values are bytes: anything that is `AsRef<[u8]>`, such as
/// `&str`, `String`, `&[u8]` or `Vec<u8>`.
#[derive(Debug)]
pub struct Client {
    config: ClientBuilder,
    conn: Option<Connection>,
    next_request_id: u64,
}

impl Client {
    /// A client of `addr` with this client's settings (timeouts, auth
    /// token), not yet connected: how a redirect is followed.
    pub fn to_addr(&self, addr: impl Into<String>) -> Client {
        ClientBuilder {
            addr: addr.into(),
            ..self.config.clone()
        }
        .build()
    }

    /// Connects to the server at `addr` (`host:port`) with default timeouts.
    ///
    /// ```
    /// # let server = duokv::doctest::server();
    /// let mut client = duokv::Client::connect(server.addr())?;
    /// assert!(client.ping()?.round_trip.as_secs() < 5);
    /// # Ok::<(), duokv::Error>(())
    /// ```
    pub fn connect(addr: impl Into<String>) -> Result<Client> {
        Client::builder(addr).connect()
    }

    /// A builder for a client of `addr`, to set timeouts.
    pub fn builder(addr: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            addr: addr.into(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Some(Duration::from_secs(30)),
            write_timeout: Some(Duration::from_secs(30)),
            auth_token: None,
            tls: None,
        }
    }

    /// The server's address, as given.
    pub fn addr(&self) -> &str {
        &self.config.addr
    }

    /// The server's role, as its handshake said, once connected.
    pub fn server_role(&self) -> Option<NodeRole> {
        self.conn.as_ref().map(|c| c.server_role)
    }

    /// Inserts `key` with `value`; fails with [`Error::AlreadyExists`] if the
    /// key exists.
    ///
    /// ```
    /// # let server = duokv::doctest::server();
    /// # let mut client = duokv::Client::connect(server.addr())?;
    /// let receipt = client.create("user:1", "ada")?;
    /// assert_eq!(receipt.seq, 1); // the write's ID
    /// assert!(matches!(client.create("user:1", "bob"), Err(duokv::Error::AlreadyExists)));
    /// # Ok::<(), duokv::Error>(())
    /// ```
    pub fn create(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<WriteReceipt> {
        self.write(Request::Create {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
        })
    }

    /// The value of `key`, or `None` if it has none.
    ///
    /// ```
    /// # let server = duokv::doctest::server();
    /// # let mut client = duokv::Client::connect(server.addr())?;
    /// client.put("k", "v")?;
    /// assert_eq!(client.read("k")?, Some(b"v".to_vec()));
    /// assert_eq!(client.read("missing")?, None);
    /// # Ok::<(), duokv::Error>(())
    /// ```
    pub fn read(&mut self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        Ok(self.read_with_seq(key)?.map(|(_, value)| value))
    }

    /// The value of `key` with the sequence number of the write that set it.
    ///
    /// ```
    /// # let server = duokv::doctest::server();
    /// # let mut client = duokv::Client::connect(server.addr())?;
    /// let receipt = client.put("k", "v")?;
    /// assert_eq!(client.read_with_seq("k")?, Some((receipt.seq, b"v".to_vec())));
    /// # Ok::<(), duokv::Error>(())
    /// ```
    pub fn read_with_seq(&mut self, key: impl AsRef<[u8]>) -> Result<Option<(u64, Vec<u8>)>> {
        let outcome = self.read_when(key, &ReadWhen::new())?;
        Ok(outcome.value.map(|value| (outcome.seq, value)))
    }

    /// The value of `key` once the replica meets the conditions `when`
    /// (see [`ReadWhen`]), with the seq that set it and the replica's read
    /// point; the general read the others are made of.
    ///
    /// Fails with [`Error::NotYetVisible`] or [`Error::UnknownHistory`]
    /// when the replica cannot show `when.after` (in time, or ever), with
    /// [`Error::TooStale`] when it cannot prove `when.max_staleness` in
    /// time: read the master instead. Fails with [`Error::BadRequest`],
    /// before anything is sent, for a staleness bound under 1 us or over
    /// `u32::MAX` us. The reply's read timeout is extended by `when.wait`
    /// for this call.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let server = duokv::doctest::server();
    /// # let mut client = duokv::Client::connect(server.addr())?;
    /// use duokv::ReadWhen;
    ///
    /// let token = client.put("k", "v")?.token().expect("a server with tokens");
    /// let when = ReadWhen::new()
    ///     .after(token)
    ///     .max_staleness(Duration::from_millis(5))
    ///     .wait(Duration::from_millis(100));
    /// let read = client.read_when("k", &when)?;
    /// assert_eq!((read.value, read.seq), (Some(b"v".to_vec()), token.seq));
    /// assert_eq!(read.at.map(|at| at.visible_seq), Some(1));
    /// # Ok::<(), duokv::Error>(())
    /// ```
    pub fn read_when(&mut self, key: impl AsRef<[u8]>, when: &ReadWhen) -> Result<ReadOutcome> {
        let request = when.request(key.as_ref())?;
        let reply = if when.wait.is_zero() {
            self.call(request)
        } else {
            self.ensure_connected()?;
            let timeout = self
                .config
                .read_timeout
                .map(|t| t.saturating_add(when.wait));
            self.set_read_timeout(timeout)?;
            let reply = self.call(request);
            self.set_read_timeout(self.config.read_timeout)?;
            reply
        };
        match reply? {
            Response::Value { value, seq, at } => Ok(ReadOutcome { value, seq, at }),
            _ => Err(Error::UnexpectedReply {
                expected: "a value",
            }),
        }
    }

    /// The value of `key` as of the write `token` or later: the replica
    /// answers once that write is visible there, waiting up to `wait` for
    /// it (the server caps the wait at 60 s, and at its idle timeout). The
    /// way to read your own writes on a slave; [`read_when`](Self::read_when)
    /// with [`ReadWhen::after`].
    ///
    /// Fails with [`Error::NotYetVisible`] if the write is still not
    /// visible after the wait, with the replica's visible seq (read the
    /// master instead), and with [`Error::UnknownHistory`] if the replica
    /// does not continue the token's history after the wait. The
    /// reply's read timeout is extended by `wait` for this call.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let server = duokv::doctest::server();
    /// # let mut client = duokv::Client::connect(server.addr())?;
    /// let token = client.put("k", "v")?.token().expect("a server with tokens");
    /// let value = client.read_after("k", token, Duration::from_millis(100))?;
    /// assert_eq!(value, Some(b"v".to_vec()));
    /// # Ok::<(), duokv::Error>(())
    /// ```
    pub fn read_after(
        &mut self,
        key: impl AsRef<[u8]>,
        token: Token,
        wait: Duration,
    ) -> Result<Option<Vec<u8>>> {
        let when = ReadWhen::new().after(token).wait(wait);
        Ok(self.read_when(key, &when)?.value)
    }

    /// The value of `key` if the replica can prove its data at most
    /// `max_staleness` old, waiting up to `wait` for the proof; a master
    /// (or standalone server) always can, at once.
    /// [`read_when`](Self::read_when) with [`ReadWhen::max_staleness`].
    ///
    /// Fails with [`Error::TooStale`], with the bound the replica could
    /// prove (`u64::MAX` us: none, as on a slave without its master), when
    /// it cannot after the wait: read the master, or retry. Fails with
    /// [`Error::BadRequest`], before anything is sent, when
    /// `max_staleness` is under 1 us or over `u32::MAX` us.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let server = duokv::doctest::server();
    /// # let mut client = duokv::Client::connect(server.addr())?;
    /// client.put("k", "v")?;
    /// let value = client.read_fresh("k", Duration::from_millis(5), Duration::from_millis(50))?;
    /// assert_eq!(value, Some(b"v".to_vec()));
    /// let zero = client.read_fresh("k", Duration::ZERO, Duration::ZERO);
    /// assert!(matches!(zero, Err(duokv::Error::BadRequest { .. })));
    /// # Ok::<(), duokv::Error>(())
    /// ```
    pub fn read_fresh(
        &mut self,
        key: impl AsRef<[u8]>,
        max_staleness: Duration,
        wait: Duration,
    ) -> Result<Option<Vec<u8>>> {
        let when = ReadWhen::new().max_staleness(max_staleness).wait(wait);
        Ok(self.read_when(key, &when)?.value)
    }

    /// Sets the open connection's read timeout, if one is open.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        if let Some(conn) = &self.conn {
            conn.reader.get_ref().set_read_timeout(timeout)?;
        }
        Ok(())
    }

    /// Replaces the value of an existing `key`; fails with
    /// [`Error::NotFound`] if there is none.
    ///
    /// ```
    /// # let server = duokv::doctest::server();
    /// # let mut client = duokv::Client::connect(server.addr())?;
    /// assert!(matches!(client.update("k", "v"), Err(duokv::Error::NotFound)));
    /// client.create("k", "v1")?;
    /// client.update("k", "v2")?;
    /// assert_eq!(client.read("k")?, Some(b"v2".to_vec()));
    /// # Ok::<(), duokv::Error>(())
    /// ```
    pub fn update(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<WriteReceipt> {
        self.write(Request::Update {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
        })
    }

    /// Deletes `key`; fails with [`Error::NotFound`] if there is none.
    ///
    /// ```
    /// # let server = duokv::doctest::server();
    /// # let mut client = duokv::Client::connect(server.addr())?;
    /// client.put("k", "v")?;
    /// client.delete("k")?;
    /// assert_eq!(client.read("k")?, None);
    /// assert!(matches!(client.delete("k"), Err(duokv::Error::NotFound)));
    /// # Ok::<(), duokv::Error>(())
    /// ```
    pub fn delete(&mut self, key: impl AsRef<[u8]>) -> Result<WriteReceipt> {
        self.write(Request::Delete {
            key: key.as_ref().to_vec(),
        })
    }

    /// Sets `key` to `value` whether it exists or not.
    ///
    /// ```
    /// # let server = duokv::doctest::server();
    /// # let mut client = duokv::Client::connect(server.addr())?;
    /// let first = client.put("k", "v1")?;
    /// let second = client.put("k", "v2")?;
    /// assert_eq!(second.seq, first.seq + 1);
    /// assert!(second.started_ns <= second.committed_ns);
    /// # Ok::<(), duokv::Error>(())
    /// ```
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<WriteReceipt> {
        self.write(Request::Put {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
        })
    }

    /// Measures the round trip and reads the server's clock.
    ///
    /// ```
    /// # let server = duokv::doctest::server();
    /// # let mut client = duokv::Client::connect(server.addr())?;
    /// let pong = client.ping()?;
    /// // One machine, one clock: the offset is within its error bound.
    /// assert!(pong.offset_ns().unsigned_abs() as u128 <= pong.error_bound().as_nanos() + 1_000_000);
    /// # Ok::<(), duokv::Error>(())
    /// ```
    pub fn ping(&mut self) -> Result<Pong> {
        self.ensure_connected()?;
        let started = Instant::now();
        let sent_ns = now_ns();
        let reply = self.call(Request::Ping)?;
        let received_ns = now_ns();
        let round_trip = started.elapsed();
        match reply {
            Response::Pong {
                received_ns: server_received_ns,
                sent_ns: server_sent_ns,
            } => Ok(Pong {
                sent_ns,
                server_received_ns,
                server_sent_ns,
                received_ns,
                round_trip,
            }),
            _ => Err(Error::UnexpectedReply { expected: "a pong" }),
        }
    }

    /// The server's facts: role, last sequence number, store figures.
    ///
    /// ```
    /// # let server = duokv::doctest::server();
    /// # let mut client = duokv::Client::connect(server.addr())?;
    /// client.put("k", "v")?;
    /// let facts = client.info()?;
    /// assert!(facts.contains(&("last_seq".to_string(), "1".to_string())));
    /// # Ok::<(), duokv::Error>(())
    /// ```
    pub fn info(&mut self) -> Result<Vec<(String, String)>> {
        match self.call(Request::Info)? {
            Response::Info(pairs) => Ok(pairs),
            _ => Err(Error::UnexpectedReply { expected: "info" }),
        }
    }

    /// Asks this server, a master, for a planned switchover: it stops
    /// taking writes, waits up to `timeout` for its slave to show its last
    /// write, hands the role over, and becomes the new master's slave.
    /// Returns the facts of what happened (`new_master`, `term`, `seq`,
    /// `history_id`, `write_window_ms`). A slave that cannot catch up in
    /// time gives [`Error::NotChanged`]: rolled back, nothing
    /// changed. The reply's read timeout is extended by `timeout`.
    pub fn failover(&mut self, timeout: Duration) -> Result<Vec<(String, String)>> {
        let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        self.admin(Request::Failover { timeout_ms }, timeout)
    }

    /// Asks this server, a slave whose master is gone, to become a master
    /// at once, replicating to `replica` (its old master when `None`) in
    /// `mode`; `force` promotes it even while its master is connected.
    /// Returns the facts of what happened (`term`, `seq`, `history_id`,
    /// `replica`, `promote_ms`).
    pub fn promote(
        &mut self,
        replica: Option<&str>,
        mode: crate::ReplicationMode,
        force: bool,
    ) -> Result<Vec<(String, String)>> {
        let mode = match mode {
            crate::ReplicationMode::Sync => duokv_protocol::ModeCode::Sync,
            crate::ReplicationMode::SyncVisible => duokv_protocol::ModeCode::SyncVisible,
            crate::ReplicationMode::Async => duokv_protocol::ModeCode::Async,
        };
        let request = Request::Promote {
            replica: replica.unwrap_or_default().to_string(),
            mode,
            force,
        };
        self.admin(request, Duration::from_secs(10))
    }

    /// Sends a role change and reads its facts, with the read timeout
    /// extended by `patience`.
    fn admin(&mut self, request: Request, patience: Duration) -> Result<Vec<(String, String)>> {
        self.ensure_connected()?;
        self.set_read_timeout(self.config.read_timeout.map(|t| t.saturating_add(patience)))?;
        let reply = self.call(request);
        self.set_read_timeout(self.config.read_timeout)?;
        match reply? {
            Response::Info(pairs) => Ok(pairs),
            _ => Err(Error::UnexpectedReply {
                expected: "the facts of a role change",
            }),
        }
    }

    fn write(&mut self, request: Request) -> Result<WriteReceipt> {
        self.ensure_connected()?;
        let started = Instant::now();
        let started_ns = now_ns();
        let reply = self.call(request)?;
        let committed_ns = now_ns();
        let latency = started.elapsed();
        match reply {
            Response::Written(server) => Ok(WriteReceipt {
                seq: server.seq,
                started_ns,
                committed_ns,
                latency,
                server,
            }),
            _ => Err(Error::UnexpectedReply {
                expected: "a write receipt",
            }),
        }
    }

    /// Sends one request and reads its reply; an error reply becomes the
    /// matching [`Error`]. A broken connection is dropped, to be dialled
    /// again by the next call.
    fn call(&mut self, request: Request) -> Result<Response> {
        self.ensure_connected()?;
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let result = self.exchange(request_id, request);
        if matches!(
            result,
            Err(Error::Protocol(_)
                | Error::Io(_)
                | Error::Timeout { .. }
                | Error::UnexpectedReply { .. })
        ) {
            self.conn = None;
        }
        match result? {
            Response::Error { code, message } => Err(Error::from_reply(code, message)),
            response => Ok(response),
        }
    }

    fn exchange(&mut self, request_id: u64, request: Request) -> Result<Response> {
        // Encode before touching the connection: a key or value over the
        // limits is the caller's error, and the connection stays good.
        let bytes = Frame::request(request_id, request)
            .to_bytes()
            .map_err(|e| Error::TooLarge {
                message: e.to_string(),
            })?;
        let addr = self.config.addr.clone();
        let conn = self.conn.as_mut().ok_or(Error::UnexpectedReply {
            expected: "a connection",
        })?;
        conn.writer
            .write_all(&bytes)
            .map_err(|e| timeout_or(protocol::Error::Io(e), &addr))?;
        let frame = protocol::read_frame(&mut conn.reader).map_err(|e| timeout_or(e, &addr))?;
        let frame = frame.ok_or(Error::Protocol(protocol::Error::UnexpectedEof {
            read: 0,
            expected: 1,
        }))?;
        match frame.message {
            Message::Response(response) if frame.request_id == request_id => Ok(response),
            // An error frame with id 0 is the server closing on bad input.
            Message::Response(response @ Response::Error { .. }) if frame.request_id == 0 => {
                Ok(response)
            }
            _ => Err(Error::UnexpectedReply {
                expected: "the reply to the request sent",
            }),
        }
    }

    fn ensure_connected(&mut self) -> Result<()> {
        if self.conn.is_none() {
            self.conn = Some(self.dial()?);
        }
        Ok(())
    }

    fn dial(&self) -> Result<Connection> {
        let addr = &self.config.addr;
        let connect_error = |source| Error::Connect {
            addr: addr.clone(),
            source,
        };
        let mut last_error = None;
        let mut stream = None;
        for candidate in addr.to_socket_addrs().map_err(connect_error)? {
            match TcpStream::connect_timeout(&candidate, self.config.connect_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let stream = stream.ok_or_else(|| {
            connect_error(last_error.unwrap_or_else(|| {
                std::io::Error::new(ErrorKind::NotFound, "address resolved to nothing")
            }))
        })?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(self.config.read_timeout)?;
        stream.set_write_timeout(self.config.write_timeout)?;
        let stream = match &self.config.tls {
            None => Transport::plain(stream),
            Some(tls) => {
                let tls_error = |reason| Error::Tls {
                    addr: addr.clone(),
                    reason,
                };
                let name = crate::tls::server_name(addr).map_err(tls_error)?;
                let transport = Transport::tls_client(stream, tls.config(), name)?;
                transport
                    .handshake()
                    .map_err(|e| tls_error(crate::tls::explain(&e)))?;
                transport
            }
        };
        let mut writer = stream.clone();
        let mut reader = BufReader::new(stream);
        let fields = HandshakeFields {
            history_id: None,
            history_ancestors: Vec::new(),
            auth_token: self
                .config
                .auth_token
                .as_ref()
                .map(|t| t.as_bytes().to_vec()),
        };
        let mut handshake =
            Handshake::with_fields(Role::Client, &fields).map_err(protocol::Error::from)?;
        handshake.flags |= Handshake::FLAG_TOKENS;
        handshake
            .write_to(&mut writer)
            .map_err(|e| tls_or_timeout(e, addr))?;
        let reply = HandshakeReply::read_from(&mut reader).map_err(|e| tls_or_timeout(e, addr))?;
        match reply.status {
            HandshakeStatus::Ok => Ok(Connection {
                reader,
                writer,
                server_role: reply.node_role,
            }),
            HandshakeStatus::Busy => Err(Error::Busy),
            HandshakeStatus::ShuttingDown => Err(Error::ShuttingDown),
            HandshakeStatus::Unauthorized => Err(Error::Unauthorized { addr: addr.clone() }),
            HandshakeStatus::TlsRequired => Err(Error::TlsRequired { addr: addr.clone() }),
            other => Err(Error::Refused {
                reason: format!("{other:?}").to_lowercase(),
            }),
        }
    }
}

/// A TLS failure as [`Error::Tls`] (a server that checks client
/// certificates refuses one after the client's side of the TLS handshake
/// is done, so the refusal arrives with the first reply), a timeout as
/// [`Error::Timeout`], anything else as is.
fn tls_or_timeout(error: protocol::Error, addr: &str) -> Error {
    if let protocol::Error::Io(e) = &error
        && e.get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
    {
        return Error::Tls {
            addr: addr.to_string(),
            reason: crate::tls::explain(e),
        };
    }
    timeout_or(error, addr)
}

/// A read or write timeout as [`Error::Timeout`], anything else as is.
fn timeout_or(error: protocol::Error, addr: &str) -> Error {
    match &error {
        protocol::Error::Io(e)
            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
        {
            Error::Timeout {
                addr: addr.to_string(),
            }
        }
        _ => Error::Protocol(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness_bounds_outside_the_wire_range_are_refused() {
        assert_eq!(staleness_us(Duration::from_micros(1)).ok(), Some(1));
        assert_eq!(staleness_us(Duration::from_millis(5)).ok(), Some(5_000));
        assert_eq!(staleness_us(Duration::from_nanos(1_999)).ok(), Some(1));
        let max = Duration::from_micros(u64::from(u32::MAX));
        assert_eq!(staleness_us(max).ok(), Some(u32::MAX));
        for refused in [
            Duration::ZERO,
            Duration::from_nanos(999),
            max + Duration::from_micros(1),
        ] {
            assert!(
                matches!(staleness_us(refused), Err(Error::BadRequest { .. })),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn conditions_become_the_read_extensions() {
        let token = Token { history: 7, seq: 3 };
        let when = ReadWhen::new()
            .after(token)
            .max_staleness(Duration::from_millis(5))
            .wait(Duration::from_millis(40));
        assert_eq!(
            when.request(b"k").ok(),
            Some(Request::Read {
                key: b"k".to_vec(),
                after: Some(ReadAfter {
                    history: 7,
                    seq: 3,
                    wait_ms: 40
                }),
                fresh: Some(MaxStaleness {
                    max_staleness_us: 5_000,
                    wait_ms: 40
                }),
            })
        );
        assert_eq!(
            ReadWhen::new().request(b"k").ok(),
            Some(Request::Read {
                key: b"k".to_vec(),
                after: None,
                fresh: None
            })
        );
    }

    #[test]
    fn a_read_token_is_the_value_seq_or_all_the_replica_showed() {
        let at = Some(ReadPoint {
            history: 9,
            visible_seq: 20,
        });
        let found = ReadOutcome {
            value: Some(b"v".to_vec()),
            seq: 12,
            at,
        };
        assert_eq!(
            found.token(),
            Some(Token {
                history: 9,
                seq: 12
            })
        );
        let absent = ReadOutcome {
            value: None,
            seq: 0,
            at,
        };
        assert_eq!(
            absent.token(),
            Some(Token {
                history: 9,
                seq: 20
            })
        );
        let old_server = ReadOutcome { at: None, ..found };
        assert_eq!(old_server.token(), None);
    }
}
