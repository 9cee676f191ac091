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
    /// never became ready, or the operator interrupted it.
    Failed {
        /// What happened.
        message: String,
    },
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
