//! `duokv_tools::Error`: what the tools report.
//!
//! A failure of duokv itself (a client call, a server's error reply) stays
//! the product's [`duokv::Error`], wrapped in [`Error::Duokv`]; Redis's
//! replies and failures are [`Error::Redis`], never posing as duokv's; the
//! tools' own failures (files, a deployment step, bad flags) have theirs.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::resp::RespError;

/// A specialised `Result` for the tools.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong running a tool.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// duokv failed: a client call, or a server's error reply.
    Duokv(duokv::Error),
    /// Redis failed: a connection, an error reply, or a reply that makes no
    /// sense for the command.
    Redis(RespError),
    /// Redis's `WAIT` returned with no replica holding the write.
    NoReplicaAck {
        /// The `WAIT` timeout, in milliseconds.
        ms: u32,
    },
    /// A file could not be created, read or written.
    File {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A file's contents are not what they should be.
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A deployment step failed on a host.
    Deploy {
        /// Which host, with its address.
        host: String,
        /// Which step.
        step: String,
        /// What went wrong.
        message: String,
    },
    /// The flags ask for something that cannot be done.
    Usage {
        /// What, and what to do instead.
        message: String,
    },
    /// A run did not complete: a thread panicked, a child process exited or
    /// never became ready, or most of its operations failed.
    Failed {
        /// What happened.
        message: String,
    },
    /// The operator stopped the run with Ctrl-C (SIGINT) or SIGTERM; what
    /// was measured until then is kept.
    Interrupted,
    /// Another I/O failure.
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Duokv(e) => write!(f, "{e}"),
            Error::Redis(_) => write!(f, "redis"),
            Error::NoReplicaAck { ms } => {
                write!(f, "redis replica did not acknowledge within {ms} ms")
            }
            Error::File { path, .. } => write!(f, "cannot use {}", path.display()),
            Error::BadFile { path, reason } => write!(f, "{}: {reason}", path.display()),
            Error::Deploy {
                host,
                step,
                message,
            } => write!(f, "{host}: {step}: {message}"),
            Error::Usage { message } | Error::Failed { message } => write!(f, "{message}"),
            Error::Interrupted => write!(f, "interrupted by Ctrl-C"),
            Error::Io(_) => write!(f, "i/o error"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // duokv's error is shown in this one's place: its sources follow.
            Error::Duokv(e) => std::error::Error::source(e),
            Error::Redis(e) => Some(e),
            Error::File { source, .. } | Error::Io(source) => Some(source),
            _ => None,
        }
    }
}

/// What a failed command tells its caller, as the `duokv` command line's
/// exit code: one code per kind of outcome, so a script can tell "the key is
/// not there" from "the server said no" from "nobody knows whether the
/// write happened".
///
/// | code | kind | |
/// |---|---|---|
/// | 0 | ok | |
/// | 1 | [`NotFound`](Exit::NotFound) | the key does not exist |
/// | 2 | [`Usage`](Exit::Usage) | bad flags or arguments; nothing was sent |
/// | 3 | [`Refused`](Exit::Refused) | the server refused the request; nothing was written |
/// | 4 | [`UnknownOutcome`](Exit::UnknownOutcome) | sent, but no clear answer: the write may have happened |
/// | 5 | [`CannotConnect`](Exit::CannotConnect) | no connection to the server; nothing was sent |
/// | 6 | [`Failed`](Exit::Failed) | anything else: a file, a run that failed |
/// | 130 | [`Interrupted`](Exit::Interrupted) | stopped by Ctrl-C |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// The command did what it was asked.
    Ok = 0,
    /// The key does not exist (`get`, `update`, `delete`).
    NotFound = 1,
    /// The flags or arguments are wrong; nothing was sent.
    Usage = 2,
    /// The server refused the request and wrote nothing: not the master,
    /// the key exists, a read's condition does not hold (too stale, not yet
    /// visible, unknown history), too large, bad request, busy, shutting
    /// down, switching over, a wrong auth token. Retrying as the message
    /// says is safe.
    Refused = 3,
    /// The request was sent and no clear answer came back, so a write may
    /// or may not have happened: a sync write that the master made durable
    /// but its slave did not confirm in time (`ReplicaUnavailable`, or
    /// Redis's `WAIT` without a replica), no reply in time, a connection
    /// that broke, a server error or a reply this client does not know.
    /// Read the key before writing it again.
    UnknownOutcome = 4,
    /// No connection to the server could be made; nothing was sent.
    CannotConnect = 5,
    /// Anything else: a file that cannot be read or written, a run that
    /// failed (most of a load's operations, a replica that would not
    /// start), a deployment step.
    Failed = 6,
    /// Stopped by Ctrl-C (SIGINT) or SIGTERM: 128 + 2, as shells report it.
    Interrupted = 130,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The kind of a duokv failure.
    pub fn of_duokv(error: &duokv::Error) -> Exit {
        use duokv::Error as E;
        match error {
            E::NotFound => Exit::NotFound,
            E::AlreadyExists
            | E::NotMaster { .. }
            | E::TooLarge { .. }
            | E::BadRequest { .. }
            | E::Busy
            | E::ShuttingDown
            | E::NotYetVisible { .. }
            | E::UnknownHistory { .. }
            | E::SwitchingOver { .. }
            | E::NotChanged { .. }
            | E::TooStale { .. }
            | E::Unauthorized { .. }
            | E::Refused { .. } => Exit::Refused,
            E::ReplicaUnavailable { .. }
            | E::Internal { .. }
            | E::UnknownCode { .. }
            | E::UnexpectedReply { .. }
            | E::Timeout { .. }
            | E::Protocol(_) => Exit::UnknownOutcome,
            // No connection was made: nothing was sent.
            E::Connect { .. } | E::TlsRequired { .. } | E::Tls { .. } => Exit::CannotConnect,
            _ => Exit::Failed,
        }
    }
}

impl Error {
    /// The kind of this failure, for the command line's exit code.
    pub fn exit(&self) -> Exit {
        match self {
            Error::Duokv(e) => Exit::of_duokv(e),
            Error::NoReplicaAck { .. } => Exit::UnknownOutcome,
            Error::Usage { .. } => Exit::Usage,
            Error::Interrupted => Exit::Interrupted,
            Error::Redis(_)
            | Error::File { .. }
            | Error::BadFile { .. }
            | Error::Deploy { .. }
            | Error::Failed { .. }
            | Error::Io(_) => Exit::Failed,
        }
    }
}

impl From<duokv::Error> for Error {
    fn from(e: duokv::Error) -> Self {
        Error::Duokv(e)
    }
}

impl From<RespError> for Error {
    fn from(e: RespError) -> Self {
        Error::Redis(e)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_has_its_exit_code() {
        let duokv = |e: duokv::Error| Error::from(e).exit().code();
        assert_eq!(duokv(duokv::Error::NotFound), 1);
        assert_eq!(
            Error::Usage {
                message: "x".into()
            }
            .exit()
            .code(),
            2
        );
        assert_eq!(duokv(duokv::Error::NotMaster { master: "m".into() }), 3);
        assert_eq!(duokv(duokv::Error::AlreadyExists), 3);
        assert_eq!(
            duokv(duokv::Error::ReplicaUnavailable {
                message: "m".into()
            }),
            4
        );
        assert_eq!(duokv(duokv::Error::Timeout { addr: "a".into() }), 4);
        assert_eq!(
            duokv(duokv::Error::Connect {
                addr: "a".into(),
                source: io::Error::from(io::ErrorKind::ConnectionRefused),
            }),
            5
        );
        assert_eq!(Error::Io(io::Error::other("x")).exit().code(), 6);
        assert_eq!(Error::Interrupted.exit().code(), 130);
    }
}
