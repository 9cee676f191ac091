//! `duokv::Error`: what the client and the server report.
//!
//! A failure the server reported has its own variant per error code, so a
//! caller can match on it (`Error::NotFound`, `Error::NotMaster { .. }`);
//! local failures (I/O, timeouts, a store that cannot open) have theirs.

use std::fmt;
use std::io;
use std::net::SocketAddr;

/// A specialised `Result` for duokv.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to or running a duokv server.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The key does not exist (update, delete).
    NotFound,
    /// The key already exists (create).
    AlreadyExists,
    /// This replica does not take writes; send them to `master`.
    NotMaster {
        /// The master's client address, as the replica knows it.
        master: String,
    },
    /// The write is durable on the master but the slave did not confirm it
    /// in time.
    ReplicaUnavailable {
        /// The server's explanation.
        message: String,
    },
    /// The key or value is over the server's limit; nothing was written.
    TooLarge {
        /// The server's explanation.
        message: String,
    },
    /// The server could not understand the request.
    BadRequest {
        /// The server's explanation.
        message: String,
    },
    /// The server is at its connection limit.
    Busy,
    /// The server is shutting down.
    ShuttingDown,
    /// The server failed to perform the request.
    Internal {
        /// The server's explanation.
        message: String,
    },
    /// A read's `after` write is not visible on the replica yet, and did
    /// not become so within the read's wait: read the master, or retry.
    NotYetVisible {
        /// The newest sequence number the replica could show (below the
        /// token's).
        visible_seq: u64,
        /// The server's explanation.
        message: String,
    },
    /// A read's `after` write belongs to a history the replica does not
    /// continue: waiting cannot help; read the master.
    UnknownHistory {
        /// The server's explanation.
        message: String,
    },
    /// The master is handing its role over (a planned switchover) and
    /// takes no writes for a moment: retry; the new master is named by the
    /// `NotMaster` that follows.
    SwitchingOver {
        /// The server's explanation.
        message: String,
    },
    /// A role change (a switchover, a promotion) did not happen: the node
    /// is not in the role it starts from, or it rolled back; nothing
    /// changed.
    NotChanged {
        /// The server's explanation.
        message: String,
    },
    /// A read's staleness bound could not be proven on the replica within
    /// the read's wait: read the master, or retry.
    TooStale {
        /// The staleness the replica could prove, in microseconds;
        /// `u64::MAX` if none (it has no master, or has not heard from it).
        bound_us: u64,
        /// The server's explanation.
        message: String,
    },
    /// The server answered with an error code this client does not know.
    UnknownCode {
        /// The code.
        code: u16,
        /// The server's explanation.
        message: String,
    },
    /// The server wants the shared auth token, and the one sent (if any)
    /// is not it.
    Unauthorized {
        /// The server.
        addr: String,
    },
    /// The server speaks TLS only, and this client connected in clear.
    TlsRequired {
        /// The server.
        addr: String,
    },
    /// A TLS connection could not be made: a certificate refused on
    /// either side, a name that does not match, a peer that does not speak
    /// TLS. The reason says which.
    Tls {
        /// The peer.
        addr: String,
        /// What went wrong, and which side to fix.
        reason: String,
    },
    /// The server refused the handshake.
    Refused {
        /// Why, as the handshake status says.
        reason: String,
    },
    /// The server's reply made no sense for the request (a bug, or not a
    /// duokv server).
    UnexpectedReply {
        /// What was expected.
        expected: &'static str,
    },
    /// No reply came within the read timeout.
    Timeout {
        /// The server's address.
        addr: String,
    },
    /// Connecting to the server failed.
    Connect {
        /// The server's address.
        addr: String,
        /// The operating system's error.
        source: io::Error,
    },
    /// The server could not listen on its address.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        source: io::Error,
    },
    /// The connection broke or the bytes on it were not the protocol.
    Protocol(duokv_protocol::Error),
    /// A file could not be created, read or written.
    File {
        /// The file.
        path: std::path::PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A file's contents are not what they should be.
    BadFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Another I/O failure.
    Io(io::Error),
    /// The store failed.
    Storage(duokv_storage::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => write!(f, "key not found"),
            Error::AlreadyExists => write!(f, "key already exists"),
            Error::NotMaster { master } => write!(f, "not the master: send writes to {master}"),
            Error::ReplicaUnavailable { message } => write!(f, "replica unavailable: {message}"),
            Error::TooLarge { message } => write!(f, "too large: {message}"),
            Error::BadRequest { message } => write!(f, "bad request: {message}"),
            Error::Busy => write!(f, "server busy: too many connections"),
            Error::ShuttingDown => write!(f, "server shutting down"),
            Error::Internal { message } => write!(f, "server error: {message}"),
            Error::NotYetVisible { message, .. } => write!(f, "not yet visible: {message}"),
            Error::UnknownHistory { message } => write!(f, "unknown history: {message}"),
            Error::TooStale { message, .. } => write!(f, "too stale: {message}"),
            Error::SwitchingOver { message } => write!(f, "switching over: {message}"),
            Error::NotChanged { message } => write!(f, "not changed: {message}"),
            Error::UnknownCode { code, message } => write!(f, "server error {code}: {message}"),
            Error::Unauthorized { addr } => write!(
                f,
                "{addr} refused the auth token: give the servers' token file \
                 (--auth-token-file or DUOKV_AUTH_TOKEN_FILE)"
            ),
            Error::TlsRequired { addr } => write!(
                f,
                "{addr} speaks TLS only: give the client the servers' certificate authority \
                 (--tls-ca FILE)"
            ),
            Error::Tls { addr, reason } => write!(f, "no TLS connection to {addr}: {reason}"),
            Error::Refused { reason } => write!(f, "connection refused by the server: {reason}"),
            Error::UnexpectedReply { expected } => {
                write!(f, "unexpected reply from the server: expected {expected}")
            }
            Error::Timeout { addr } => write!(f, "no reply from {addr} in time"),
            Error::Connect { addr, .. } => write!(f, "cannot connect to {addr}"),
            Error::Bind { addr, .. } => write!(f, "cannot listen on {addr}"),
            Error::Protocol(_) => write!(f, "connection failed"),
            Error::File { path, .. } => write!(f, "cannot use {}", path.display()),
            Error::BadFile { path, reason } => write!(f, "{}: {reason}", path.display()),
            Error::Io(_) => write!(f, "i/o error"),
            Error::Storage(_) => write!(f, "store error"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. }
            | Error::Bind { source, .. }
            | Error::File { source, .. }
            | Error::Io(source) => Some(source),
            Error::Protocol(e) => Some(e),
            Error::Storage(e) => Some(e),
            _ => None,
        }
    }
}

impl From<duokv_storage::Error> for Error {
    fn from(e: duokv_storage::Error) -> Self {
        Error::Storage(e)
    }
}

impl From<duokv_protocol::Error> for Error {
    fn from(e: duokv_protocol::Error) -> Self {
        Error::Protocol(e)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl Error {
    /// The error for a server's error reply.
    pub(crate) fn from_reply(code: duokv_protocol::ErrorCode, message: String) -> Error {
        use duokv_protocol::ErrorCode as Code;
        match code {
            Code::NotFound => Error::NotFound,
            Code::AlreadyExists => Error::AlreadyExists,
            Code::NotMaster { master } => Error::NotMaster { master },
            Code::ReplicaUnavailable => Error::ReplicaUnavailable { message },
            Code::TooLarge => Error::TooLarge { message },
            Code::BadRequest => Error::BadRequest { message },
            Code::Busy => Error::Busy,
            Code::ShuttingDown => Error::ShuttingDown,
            Code::Internal => Error::Internal { message },
            Code::NotYetVisible { visible_seq } => Error::NotYetVisible {
                visible_seq,
                message,
            },
            Code::UnknownHistory => Error::UnknownHistory { message },
            Code::TooStale { bound_us } => Error::TooStale { bound_us, message },
            Code::SwitchingOver => Error::SwitchingOver { message },
            Code::NotChanged => Error::NotChanged { message },
            Code::Unknown(code) => Error::UnknownCode { code, message },
        }
    }
}

/// An error and its sources, joined with `: `, for one-line reports.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
