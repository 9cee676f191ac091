//! Reading a connection with two timeouts: how long it may stay silent
//! between frames (the idle timeout), and how long one frame may take to
//! arrive once it has begun (the frame timeout). A per-read timeout alone
//! lets a peer that sends one byte just before each timeout hold half a
//! frame, and a thread, forever.

use std::cell::Cell;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use crate::transport::Transport;

/// A `Read` over a connection whose every read waits at most until the current
/// deadline (or the idle timeout when there is none).
#[derive(Debug)]
pub(crate) struct DeadlineStream<'a> {
    stream: &'a Transport,
    /// `None`: reads may block for ever (a replication stream).
    idle: Cell<Option<Duration>>,
    deadline: Cell<Option<Instant>>,
    /// The socket's read timeout as last set, to skip the `setsockopt`
    /// when a read between frames would set the same one again.
    set: Cell<Option<Option<Duration>>>,
}

impl<'a> DeadlineStream<'a> {
    pub(crate) fn new(stream: &'a Transport, idle: Duration) -> Self {
        DeadlineStream {
            stream,
            idle: Cell::new(Some(idle)),
            deadline: Cell::new(None),
            set: Cell::new(None),
        }
    }

    /// From now on a frame must be whole within `within`.
    pub(crate) fn start_frame(&self, within: Duration) {
        self.deadline.set(Some(Instant::now() + within));
    }

    /// Back to waiting between frames.
    pub(crate) fn end_frame(&self) {
        self.deadline.set(None);
    }

    /// Reads block without a limit from now on.
    pub(crate) fn wait_forever(&self) {
        self.idle.set(None);
        self.deadline.set(None);
    }
}

impl Read for DeadlineStream<'_> {
    /// Reads within the deadlines. A read interrupted by a signal (a
    /// process stopped and continued: SIGSTOP, SIGCONT) is retried, with
    /// the deadlines checked again, rather than taken for a broken
    /// connection.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.read_once(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                outcome => return outcome,
            }
        }
    }
}

impl DeadlineStream<'_> {
    /// One read, with the socket's timeout set from the deadlines.
    fn read_once(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let timeout = match self.deadline.get() {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "frame not complete in time",
                    ));
                }
                Some(self.idle.get().map_or(left, |idle| idle.min(left)))
            }
            None => self.idle.get(),
        };
        if self.set.get() != Some(timeout) {
            self.stream.set_read_timeout(timeout)?;
            self.set.set(Some(timeout));
        }
        let mut stream = self.stream;
        stream.read(buf)
    }
}
