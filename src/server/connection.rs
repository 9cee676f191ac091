//! One client connection: the handshake, then requests and their replies
//! until the client hangs up, sends garbage, goes idle, or the server stops.
//!
//! Nothing a peer sends can make this code panic: every decoding error is a
//! value, answered with an error frame (`BadRequest` or `TooLarge`) before
//! the connection is closed, and the server and its other connections
//! carry on.

use std::io::{self, BufRead, BufReader, ErrorKind, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::now_ns;

use duokv_protocol::{
    self as protocol, ErrorCode, Frame, Handshake, HandshakeReply, HandshakeStatus, Message,
    Request, Response, Role,
};
use duokv_storage::WriteOp;
use log::{debug, info, warn};

use super::deadline::DeadlineStream;
use super::deferred::{DeferredReplies, SentOnDrop};
use super::node::Node;
use super::reply;
use super::shared::Shared;
use crate::event_log::EventKind;
use crate::replication;

/// How long a refused connection is given to send its handshake, so that
/// the `Busy` reply is read rather than lost to a reset.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Tells a connection over the limit that the server is busy, and closes it.
pub(crate) fn refuse_busy(shared: &Shared, stream: TcpStream, peer: &str) {
    warn!(
        "{peer}: refused, already serving {} connections",
        shared.config.max_connections
    );
    let _ = stream.set_read_timeout(Some(REFUSAL_TIMEOUT));
    let mut reader = BufReader::new(&stream);
    // Read the handshake first: closing a socket with unread bytes sends a
    // reset, which can destroy the reply before the client reads it.
    let _ = Handshake::read_from(&mut reader);
    let _ = HandshakeReply::new(HandshakeStatus::Busy, shared.node.role()).write_to(&mut &stream);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Serves one connection to its end.
pub(crate) fn serve(shared: &Arc<Shared>, stream: TcpStream, peer: &str) {
    debug!("{peer}: connected");
    let _registration = match shared.shutdown.register(&stream) {
        Ok(registration) => registration,
        Err(e) => {
            warn!("{peer}: cannot register the connection ({e}); closed");
            return;
        }
    };
    if let Err(e) = stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(Some(shared.config.idle_timeout)))
        // A client that stops reading its replies must not hold a thread
        // forever either.
        .and_then(|()| stream.set_write_timeout(Some(shared.config.idle_timeout)))
    {
        warn!("{peer}: cannot set socket options: {e}");
        return;
    }
    let mut reader = BufReader::with_capacity(
        8 * 1024,
        DeadlineStream::new(&stream, shared.config.idle_timeout),
    );
    let mut writer = &stream;

    reader.get_ref().start_frame(shared.config.frame_timeout);
    let handshake = Handshake::read_from(&mut reader);
    reader.get_ref().end_frame();
    let handshake = match handshake.and_then(|handshake| {
        let fields = handshake.fields()?;
        Ok((handshake.role, fields))
    }) {
        Ok(handshake) => handshake,
        Err(protocol::Error::Handshake(e)) => {
            warn!("{peer}: bad handshake: {e}");
            if let Some(status) = e.status() {
                let _ = HandshakeReply::new(status, shared.node.role()).write_to(&mut writer);
            }
            return;
        }
        Err(e) => {
            debug!("{peer}: gone during the handshake: {e}");
            return;
        }
    };
    let (role, fields) = handshake;
    if let Some(token) = &shared.config.auth_token
        && !token.admits(fields.auth_token.as_deref())
    {
        warn!(
            "{peer}: refused: {} auth token (role {role:?})",
            if fields.auth_token.is_some() {
                "wrong"
            } else {
                "no"
            }
        );
        let _ = HandshakeReply::new(HandshakeStatus::Unauthorized, shared.node.role())
            .write_to(&mut writer);
        return;
    }
    match role {
        Role::Client => {
            if HandshakeReply::new(HandshakeStatus::Ok, shared.node.role())
                .write_to(&mut writer)
                .is_err()
            {
                return;
            }
        }
        Role::Replica if matches!(shared.node, Node::Slave { .. }) => {
            if HandshakeReply::new(HandshakeStatus::Ok, shared.node.role())
                .write_to(&mut writer)
                .is_ok()
                && let Node::Slave { state: slave, .. } = &shared.node
            {
                // The stream may be idle as long as the master takes no writes.
                reader.get_ref().wait_forever();
                replication::slave::serve_stream(
                    &shared.store,
                    slave,
                    shared.events.as_ref(),
                    (&stream, &mut reader),
                    peer,
                    &replication::master_history(&fields),
                );
            }
            return;
        }
        _ => {
            warn!(
                "{peer}: refused: role {role:?} is not served by a {:?} node",
                shared.node.role()
            );
            let _ = HandshakeReply::new(HandshakeStatus::UnsupportedRole, shared.node.role())
                .write_to(&mut writer);
            return;
        }
    }

    let deferred = match DeferredReplies::new(&stream, peer) {
        Ok(deferred) => deferred,
        Err(e) => {
            warn!("{peer}: cannot clone the socket ({e}); closed");
            return;
        }
    };
    let _sent = SentOnDrop(deferred.clone());
    let is_slave = matches!(shared.node, Node::Slave { .. });
    loop {
        // Wait for a frame's first bytes as long as the idle timeout allows;
        // from there the whole frame must arrive within the frame timeout.
        match reader.fill_buf() {
            Ok([]) => {
                debug!("{peer}: closed the connection");
                return;
            }
            Ok(_) => reader.get_ref().start_frame(shared.config.frame_timeout),
            Err(e) if is_timeout(&e) => {
                info!("{peer}: idle for {:?}, closing", shared.config.idle_timeout);
                return;
            }
            Err(e) => {
                debug!("{peer}: connection ended: {e}");
                return;
            }
        }
        let frame = protocol::read_frame_within(&mut reader, shared.config.max_frame_len);
        reader.get_ref().end_frame();
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                debug!("{peer}: closed the connection");
                return;
            }
            Err(protocol::Error::Frame(e)) => {
                warn!("{peer}: bad frame, closing: {e}");
                let _ = protocol::write_frame(&mut writer, &reply::bad_frame(&e));
                return;
            }
            Err(protocol::Error::Io(e)) if is_timeout(&e) => {
                info!(
                    "{peer}: a frame took over {:?} to arrive, closing",
                    shared.config.frame_timeout
                );
                return;
            }
            Err(e) => {
                debug!("{peer}: connection ended: {e}");
                return;
            }
        };
        let received_ns = now_ns();
        // Replies keep their order: the previous write's goes out first.
        deferred.wait_idle();
        // A master's (or a standalone node's) writes are answered by the
        // thread that commits them (see `deferred`); a slave refuses them
        // below, from this thread.
        if !is_slave
            && let Message::Request(request) = &frame.message
            && let Some(op) = write_op(request)
        {
            deferred.write(shared, frame.request_id, received_ns, op);
            continue;
        }
        let (response, key) = match frame.message {
            Message::Request(request) => {
                let key = request.key().map(<[u8]>::to_vec);
                (handle(shared, request, received_ns), key)
            }
            Message::Response(_) | Message::Replication(_) => {
                warn!("{peer}: sent a frame that is not a request, closing");
                let reply = Frame::response(frame.request_id, reply::not_a_request());
                let _ = protocol::write_frame(&mut writer, &reply);
                return;
            }
        };
        let response = reply::stamped(response);
        if let (Some(events), Response::Written(receipt), Some(key)) =
            (&shared.events, &response, &key)
        {
            events.record_at(EventKind::Replied, receipt.seq, key, receipt.replied_ns);
        }
        let reply = Frame::response(frame.request_id, response);
        if let Err(e) =
            protocol::write_frame(&mut writer, &reply).and_then(|()| Ok(writer.flush()?))
        {
            debug!("{peer}: cannot send a reply: {e}");
            return;
        }
        if shared.shutdown.is_requested() {
            debug!("{peer}: closing for shutdown after the reply");
            return;
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Answers a request this thread can answer at once: a read, a ping, an
/// `Info`, or a write sent to a slave (refused with `NotMaster`). A
/// master's writes go through [`DeferredReplies::write`] instead.
fn handle(shared: &Shared, request: Request, received_ns: u64) -> Response {
    match &request {
        Request::Read { key } => reply::value(shared.store.get_with_seq(key)),
        Request::Ping => reply::pong(received_ns),
        Request::Info => reply::info(super::info::facts(shared)),
        Request::Create { .. }
        | Request::Update { .. }
        | Request::Put { .. }
        | Request::Delete { .. } => match &shared.node {
            Node::Slave { master_addr, .. } => reply::not_master(master_addr),
            Node::Standalone | Node::Master(_) => Response::error(
                ErrorCode::Internal,
                "a write reached the wrong path on this server (a bug); nothing was written",
            ),
        },
    }
}

/// A write request's store operation; `None` for reads, pings and `Info`.
fn write_op(request: &Request) -> Option<WriteOp<'_>> {
    match request {
        Request::Create { key, value } => Some(WriteOp::Create { key, value }),
        Request::Update { key, value } => Some(WriteOp::Update { key, value }),
        Request::Put { key, value } => Some(WriteOp::Put { key, value }),
        Request::Delete { key } => Some(WriteOp::Delete { key }),
        Request::Read { .. } | Request::Ping | Request::Info => None,
    }
}
