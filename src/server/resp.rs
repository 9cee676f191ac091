//! The RESP port (`--resp-listen`): Redis's protocol, so that redis-cli,
//! redis-benchmark and every Redis client library work against duokv.
//!
//! The same server behind a second listener: the same store and
//! replication, the same connection cap, idle and frame timeouts, frame
//! size limit, auth token and TLS. Each connection is one thread, as on the
//! native port. Requests are framed by the protocol crate's server-side
//! parser ([`duokv_protocol::resp`]): check, then parse, bounded, never
//! trusting a length. Pipelined requests are answered in order, and the
//! replies of one read's worth of requests go out in one write.
//!
//! Commands map onto duokv's semantics ([`commands`](super::resp_commands)):
//! `SET` is a put (`NX` a create, `XX` an update), `DEL` deletes, a write on
//! the slave is `-READONLY`, and anything duokv does not do (expiry, other
//! databases) is refused with an error that says so, never a dropped
//! connection.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use duokv_protocol::{RespLimits, RespRequestError, resp};
use log::{debug, info, warn};

use super::handler::{Protocol, transport_for};
use super::resp_commands::{Flow, Session};
use super::shared::Shared;
use crate::transport::Transport;

/// The most bytes read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;

/// Serves one RESP connection to its end.
pub(crate) fn serve(shared: &Arc<Shared>, stream: TcpStream, peer: &str) {
    debug!("{peer}: connected to the RESP port");
    let _registration = match shared.shutdown.register(&stream) {
        Ok(registration) => registration,
        Err(e) => {
            warn!("{peer}: cannot register the connection ({e}); closed");
            return;
        }
    };
    let Some(transport) = transport_for(shared, stream, peer, Protocol::Resp) else {
        return;
    };
    let config = &shared.config;
    if let Err(e) = transport
        .set_nodelay(true)
        .and_then(|()| transport.set_write_timeout(Some(config.idle_timeout)))
    {
        warn!("{peer}: cannot set socket options: {e}");
        return;
    }
    let limits = RespLimits {
        max_bulk_len: config.max_frame_len as usize,
        max_request_len: config.max_frame_len as usize + 64 * 1024,
        ..RespLimits::default()
    };
    let mut connection = RespConnection {
        transport,
        buf: Vec::with_capacity(READ_CHUNK),
        limits,
        peer,
        idle: config.idle_timeout,
        frame: config.frame_timeout,
    };
    let mut session = Session::new(shared.clone(), peer);
    connection.run(&mut session);
}

/// Tells a RESP connection over the limit so, as Redis does, and closes it.
pub(crate) fn refuse_busy(shared: &Shared, stream: TcpStream, peer: &str) {
    warn!(
        "{peer}: RESP connection refused, already serving {} connections",
        shared.config.max_connections
    );
    if shared.config.tls.is_none() {
        let _ = (&stream).write_all(b"-ERR max number of clients reached\r\n");
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// One RESP connection's bytes.
struct RespConnection<'a> {
    transport: Transport,
    /// Bytes read and not yet parsed.
    buf: Vec<u8>,
    limits: RespLimits,
    peer: &'a str,
    idle: Duration,
    frame: Duration,
}

impl RespConnection<'_> {
    /// Reads requests and answers them until the peer leaves, sends
    /// garbage, goes idle, or asks to quit.
    fn run(&mut self, session: &mut Session) {
        let mut out = Vec::new();
        // When the first byte of a request still incomplete arrived.
        let mut begun: Option<Instant> = None;
        loop {
            // Every whole request in the buffer, answered in order.
            let mut flow = Flow::Continue;
            loop {
                match resp::parse_request(&self.buf, &self.limits) {
                    Ok((args, used)) => {
                        self.buf.drain(..used);
                        begun = None;
                        if args.is_empty() {
                            continue;
                        }
                        let (reply, next) = session.run(&args);
                        reply.encode_as(session.version(), &mut out);
                        flow = next;
                        if flow == Flow::Close {
                            break;
                        }
                    }
                    Err(RespRequestError::Incomplete) => break,
                    Err(RespRequestError::Invalid(why)) => {
                        warn!("{}: bad RESP request, closing: {why}", self.peer);
                        why.to_reply().encode(&mut out);
                        flow = Flow::Close;
                        break;
                    }
                }
            }
            if !out.is_empty() {
                if let Err(e) = (&self.transport).write_all(&out) {
                    debug!("{}: cannot send replies: {e}", self.peer);
                    return;
                }
                out.clear();
            }
            if flow == Flow::Close || session.shutting_down() {
                let _ = self.transport.shutdown(std::net::Shutdown::Both);
                return;
            }
            if !self.buf.is_empty() && begun.is_none() {
                begun = Some(Instant::now());
            }
            if !self.read_more(begun) {
                return;
            }
        }
    }

    /// Reads what comes within the deadline: the idle timeout between
    /// requests, the frame timeout once one has begun. Returns whether the
    /// connection goes on.
    fn read_more(&mut self, begun: Option<Instant>) -> bool {
        let timeout = match begun {
            Some(at) => {
                let left = (at + self.frame).saturating_duration_since(Instant::now());
                if left.is_zero() {
                    info!(
                        "{}: a RESP request took over {:?} to arrive, closing",
                        self.peer, self.frame
                    );
                    return false;
                }
                left.min(self.idle)
            }
            None => self.idle,
        };
        if self.transport.set_read_timeout(Some(timeout)).is_err() {
            return false;
        }
        let at = self.buf.len();
        self.buf.resize(at + READ_CHUNK, 0);
        let read = loop {
            match (&self.transport).read(&mut self.buf[at..]) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                outcome => break outcome,
            }
        };
        match read {
            Ok(0) => {
                self.buf.truncate(at);
                debug!("{}: closed the RESP connection", self.peer);
                false
            }
            Ok(n) => {
                self.buf.truncate(at + n);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                self.buf.truncate(at);
                if begun.is_some() {
                    info!(
                        "{}: a RESP request took over {:?} to arrive, closing",
                        self.peer, self.frame
                    );
                } else {
                    info!("{}: idle for {:?}, closing", self.peer, self.idle);
                }
                false
            }
            Err(e) => {
                self.buf.truncate(at);
                debug!("{}: RESP connection ended: {e}", self.peer);
                false
            }
        }
    }
}
