//! A connection's bytes: [`Connection`] reads the handshake and the frames
//! under the idle and frame deadlines, and writes frames and handshake
//! replies.
//!
//! Framing apart from what the frames mean, as mini-redis keeps its
//! `Connection` apart from its `Handler`: the handler
//! ([`handler`](super::handler)) decides what to answer and when to close;
//! this module only knows how bytes become frames and back, and tells a
//! clean end between frames (`Ok(None)`) from an idle peer, a peer too slow
//! to finish a frame, bytes that are not a frame, and a broken socket.

use std::io::{self, BufRead, BufReader, ErrorKind, Write};
use std::time::Duration;

use duokv_protocol::{
    self as protocol, Frame, FrameError, Handshake, HandshakeFields, HandshakeReply,
    HandshakeStatus, NodeRole, Role, StreamFields,
};

use super::config::ServerConfig;
use super::deadline::DeadlineStream;
use crate::transport::Transport;

/// Why no frame could be read; the connection is to close.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Nothing arrived within the idle timeout.
    Idle,
    /// A frame began but was not whole within the frame timeout.
    TooSlow,
    /// The bytes are not a frame (too large, of an unknown kind,
    /// malformed); the peer is owed an error reply.
    Bad(FrameError),
    /// The socket failed, or the peer left inside a frame.
    Broken(Box<dyn std::error::Error + Send + Sync>),
}

/// One peer's socket, read through a buffer with the server's deadlines.
#[derive(Debug)]
pub(crate) struct Connection<'a> {
    stream: &'a Transport,
    reader: BufReader<DeadlineStream<'a>>,
    frame_timeout: Duration,
    max_frame_len: u32,
}

impl<'a> Connection<'a> {
    /// Serves `stream` with `config`'s limits: no Nagle delay, and the
    /// idle timeout on reads and writes.
    pub(crate) fn new(stream: &'a Transport, config: &ServerConfig) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(config.idle_timeout))?;
        // A client that stops reading its replies must not hold a thread
        // forever either.
        stream.set_write_timeout(Some(config.idle_timeout))?;
        let reader =
            BufReader::with_capacity(8 * 1024, DeadlineStream::new(stream, config.idle_timeout));
        Ok(Connection {
            stream,
            reader,
            frame_timeout: config.frame_timeout,
            max_frame_len: config.max_frame_len,
        })
    }

    /// The connection (to send replies from another thread on a clone of
    /// it).
    pub(crate) fn stream(&self) -> &'a Transport {
        self.stream
    }

    /// Reads the peer's handshake, which must be whole within the frame
    /// timeout: who it is, and its fields.
    pub(crate) fn read_handshake(
        &mut self,
    ) -> Result<(Role, HandshakeFields, StreamFields, u8), protocol::Error> {
        self.reader.get_ref().start_frame(self.frame_timeout);
        let handshake = Handshake::read_from(&mut self.reader);
        self.reader.get_ref().end_frame();
        let handshake = handshake?;
        Ok((
            handshake.role,
            handshake.fields()?,
            handshake.stream_fields()?,
            handshake.flags,
        ))
    }

    /// Refuses the handshake with `status`, saying why in the reply.
    pub(crate) fn write_handshake_refusal(
        &mut self,
        status: HandshakeStatus,
        node_role: NodeRole,
        reason: &str,
    ) -> Result<(), protocol::Error> {
        HandshakeReply::with_reason(status, node_role, reason).write_to(&mut self.stream)
    }

    /// Accepts a replication stream, saying what this node is and which
    /// of the stream features the master offered it takes up.
    pub(crate) fn write_stream_acceptance(
        &mut self,
        node_role: NodeRole,
        features: u32,
    ) -> Result<(), protocol::Error> {
        HandshakeReply::with_features(node_role, features).write_to(&mut self.stream)
    }

    /// Answers the handshake with `reply`.
    pub(crate) fn write_handshake(
        &mut self,
        reply: &HandshakeReply,
    ) -> Result<(), protocol::Error> {
        reply.write_to(&mut self.stream)
    }

    /// Answers the handshake with `status`, saying what this node is.
    pub(crate) fn write_handshake_reply(
        &mut self,
        status: HandshakeStatus,
        node_role: NodeRole,
    ) -> Result<(), protocol::Error> {
        HandshakeReply::new(status, node_role).write_to(&mut self.stream)
    }

    /// The next frame, `Ok(None)` if the peer closed the connection. Waits
    /// for the frame's first bytes as long as the idle timeout allows; from
    /// there the whole frame must arrive within the frame timeout, and be
    /// no longer than the server's frame limit.
    pub(crate) fn read_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        match self.reader.fill_buf() {
            Ok([]) => return Ok(None),
            Ok(_) => self.reader.get_ref().start_frame(self.frame_timeout),
            Err(e) if is_timeout(&e) => return Err(ReadError::Idle),
            Err(e) => return Err(ReadError::Broken(e.into())),
        }
        let frame = protocol::read_frame_within(&mut self.reader, self.max_frame_len);
        self.reader.get_ref().end_frame();
        frame.map_err(|e| match e {
            protocol::Error::Frame(e) => ReadError::Bad(e),
            protocol::Error::Io(e) if is_timeout(&e) => ReadError::TooSlow,
            e => ReadError::Broken(e.into()),
        })
    }

    /// Sends `frame` at once.
    pub(crate) fn write_frame(&mut self, frame: &Frame) -> Result<(), protocol::Error> {
        protocol::write_frame(&mut self.stream, frame)?;
        self.stream.flush()?;
        Ok(())
    }

    /// The socket and its reader (with whatever the peer sent after its
    /// handshake) for a replication stream, whose reads from now on wait
    /// without a limit: the stream may be idle as long as the master takes
    /// no writes.
    pub(crate) fn into_replication(self) -> (&'a Transport, BufReader<DeadlineStream<'a>>) {
        self.reader.get_ref().wait_forever();
        (self.stream, self.reader)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}
