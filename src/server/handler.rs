//! One peer's connection, served by a [`Handler`]: the handshake and its
//! token, then what the peer's role asks for: a client's requests and
//! their replies until it hangs up, sends garbage, goes idle, or the server
//! stops; or, on a slave, the master's replication stream.
//!
//! The handler decides; it leaves the bytes to [`Connection`], what a
//! request asks for to [`Command`], the replies' contents to [`reply`], and
//! a write's reply to the thread that commits it
//! ([`deferred`](super::deferred)).
//!
//! Nothing a peer sends can make this code panic: every decoding error is a
//! value, answered with an error frame (`BadRequest` or `TooLarge`) before
//! the connection is closed, and the server and its other connections
//! carry on.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use duokv_protocol::{
    self as protocol, Frame, Handshake, HandshakeFields, HandshakeReply, HandshakeStatus, Message,
    NodeRole, Response, Role, StreamFields,
};
use log::{debug, info, warn};

use super::command::Command;
use super::connection::{Connection, ReadError};
use super::deferred::{DeferredReplies, SentOnDrop};
use super::metrics::ReadKind;
use super::node::Node;
use super::reply;
use super::shared::Shared;
use crate::clock::now_ns;
use crate::replication::slave::{Handover, MasterClaim, Refusal};
use crate::replication::{self, Admission, Replaced, SlaveState};
use crate::transport::{TLS_HANDSHAKE_BYTE, Transport};

/// How long a refused connection is given to send its handshake, so that
/// the `Busy` reply is read rather than lost to a reset.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Tells a connection over the limit that the server is busy, and closes it.
pub(crate) fn refuse_busy(shared: &Shared, stream: TcpStream, peer: &str) {
    warn!(
        "{peer}: refused, already serving {} connections",
        shared.config.max_connections
    );
    shared.metrics.refused(HandshakeStatus::Busy);
    if shared.config.tls.is_some() {
        // A TLS client cannot read a reply in clear; it sees the close.
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    }
    let _ = stream.set_read_timeout(Some(REFUSAL_TIMEOUT));
    let mut reader = BufReader::new(&stream);
    // Read the handshake first: closing a socket with unread bytes sends a
    // reset, which can destroy the reply before the client reads it.
    let _ = Handshake::read_from(&mut reader);
    let _ = HandshakeReply::new(HandshakeStatus::Busy, shared.node().role()).write_to(&mut &stream);
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
    let Some(transport) = transport_for(shared, stream, peer, Protocol::Native) else {
        return;
    };
    let connection = match Connection::new(&transport, &shared.config) {
        Ok(connection) => connection,
        Err(e) => {
            warn!("{peer}: cannot set socket options: {e}");
            return;
        }
    };
    Handler {
        shared,
        peer,
        connection,
    }
    .run();
}

/// The protocol a port speaks, for the refusal of a client in clear on a
/// TLS port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// duokv's own: a `TlsRequired` handshake reply.
    Native,
    /// RESP: an `-ERR` reply.
    Resp,
}

/// The connection's transport: in clear, or TLS once its handshake is
/// done, as the server speaks. A peer that speaks the other is told so
/// (a client in clear on a TLS port gets, in clear, a `TlsRequired` reply
/// or a RESP error) and logged with its address; `None` then, or when the
/// peer left.
pub(crate) fn transport_for(
    shared: &Shared,
    stream: TcpStream,
    peer: &str,
    protocol: Protocol,
) -> Option<Transport> {
    // The first byte tells the two apart: a TLS record starts with 0x16,
    // a duokv handshake with its magic. It must come as soon as a
    // handshake must.
    let config = &shared.config;
    let _ = stream.set_read_timeout(Some(config.frame_timeout.min(config.idle_timeout)));
    let mut first = [0u8; 1];
    let speaks_tls = match stream.peek(&mut first) {
        Ok(1) => first[0] == TLS_HANDSHAKE_BYTE,
        Ok(_) => return None,
        Err(e) => {
            debug!("{peer}: nothing sent ({e}); closed");
            return None;
        }
    };
    match (&shared.config.tls, speaks_tls) {
        (None, false) => Some(Transport::plain(stream)),
        (None, true) => {
            warn!(
                "{peer}: a TLS client on a port in clear (this server has no --tls-cert); closed"
            );
            // A fatal `protocol_version` alert, so that the client's TLS
            // library says the handshake was refused rather than garbled.
            let _ = (&stream).write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]);
            let _ = stream.shutdown(std::net::Shutdown::Write);
            None
        }
        (Some(_), false) => {
            warn!("{peer}: a client in clear on a TLS port; refused");
            shared.metrics.refused(HandshakeStatus::TlsRequired);
            match protocol {
                Protocol::Native => {
                    let mut reader = BufReader::new(&stream);
                    let _ = Handshake::read_from(&mut reader);
                    let reply = HandshakeReply::with_reason(
                        HandshakeStatus::TlsRequired,
                        shared.node().role(),
                        "this server speaks TLS only: connect with TLS (duokv --tls-ca FILE)",
                    );
                    let _ = reply.write_to(&mut &stream);
                }
                Protocol::Resp => {
                    let _ = (&stream).read(&mut [0u8; 4096]);
                    let _ = (&stream).write_all(
                        b"-ERR this server speaks TLS only: connect with TLS \
                          (redis-cli --tls --cacert FILE)\r\n",
                    );
                }
            }
            let _ = stream.shutdown(std::net::Shutdown::Write);
            None
        }
        (Some(tls), true) => {
            let transport = match Transport::tls_server(stream, tls.accept_config()) {
                Ok(transport) => transport,
                Err(e) => {
                    warn!("{peer}: cannot start TLS: {e}");
                    return None;
                }
            };
            match transport.handshake() {
                Ok(()) => Some(transport),
                Err(e) => {
                    warn!("{peer}: TLS handshake failed: {}", crate::tls::explain(&e));
                    None
                }
            }
        }
    }
}

/// One connection being served, from its handshake to its end.
struct Handler<'a> {
    shared: &'a Arc<Shared>,
    peer: &'a str,
    connection: Connection<'a>,
}

impl<'a> Handler<'a> {
    /// The handshake, then what the peer's role asks for, if this node
    /// serves it.
    fn run(mut self) {
        let Some((role, fields, stream_fields, flags)) = self.handshake() else {
            return;
        };
        if role == Role::Client {
            return self.serve_client(flags & Handshake::FLAG_TOKENS != 0);
        }
        if role == Role::Replica {
            self.step_down_for(&stream_fields);
        }
        let node = self.shared.node();
        match (role, &*node) {
            (Role::Replica, Node::Slave { state, .. }) => {
                self.serve_replication(state, &fields, stream_fields)
            }
            (Role::Replica, Node::Master(replicator)) if stream_fields.term < replicator.term() => {
                self.refuse_stale_master(replicator.term(), &stream_fields)
            }
            (role, _) => self.refuse_role(role),
        }
    }

    /// A master's stream of a term above this master's: another node was
    /// promoted, so this one steps down to follow it before the stream is
    /// served.
    fn step_down_for(&self, stream_fields: &StreamFields) {
        let node = self.shared.node();
        let Node::Master(replicator) = &*node else {
            return;
        };
        if stream_fields.term <= replicator.term() {
            return;
        }
        let master = stream_fields
            .master_addr
            .clone()
            .unwrap_or_else(|| replicator.settings().replica.clone());
        drop(node);
        let replaced = Replaced {
            term: stream_fields.term,
            master,
        };
        warn!(
            "{}: the master of term {} dialled this master of a lower term: stepping down",
            self.peer, replaced.term
        );
        super::roles::step_down(self.shared, &replaced);
    }

    /// Tells a master of a term below this master's that it was replaced,
    /// and by whom, so that it steps down.
    fn refuse_stale_master(mut self, term: u64, stream_fields: &StreamFields) {
        let reason = format!(
            "this node is the master of term {term}; a master of term {} was replaced",
            stream_fields.term
        );
        warn!("{}: refused a stale master: {reason}", self.peer);
        self.shared.metrics.refused(HandshakeStatus::Fenced);
        let listen = self.shared.config.listen.to_string();
        let _ = self
            .connection
            .write_handshake(&HandshakeReply::stale_master(
                HandshakeStatus::Fenced,
                NodeRole::Master,
                &reason,
                term,
                &listen,
            ));
    }

    /// Reads the peer's handshake and checks its token. `None` when the
    /// connection is to close (the peer told why, if it can be).
    fn handshake(&mut self) -> Option<(Role, HandshakeFields, StreamFields, u8)> {
        let peer = self.peer;
        match self.connection.read_handshake() {
            Ok((role, fields, stream_fields, flags)) => {
                self.admits(role, &fields)
                    .then_some((role, fields, stream_fields, flags))
            }
            Err(protocol::Error::Handshake(e)) => {
                warn!("{peer}: bad handshake: {e}");
                if let Some(status) = e.status() {
                    self.shared.metrics.refused(status);
                    let _ = self.answer_handshake(status);
                }
                None
            }
            Err(e) => {
                debug!("{peer}: gone during the handshake: {e}");
                None
            }
        }
    }

    /// Whether the peer presented the server's auth token (if it asks for
    /// one); a peer without it is told `Unauthorized`.
    fn admits(&mut self, role: Role, fields: &HandshakeFields) -> bool {
        let Some(token) = &self.shared.config.auth_token else {
            return true;
        };
        if token.admits(fields.auth_token.as_deref()) {
            return true;
        }
        warn!(
            "{}: refused: {} auth token (role {role:?})",
            self.peer,
            if fields.auth_token.is_some() {
                "wrong"
            } else {
                "no"
            }
        );
        self.shared.metrics.refused(HandshakeStatus::Unauthorized);
        let _ = self.answer_handshake(HandshakeStatus::Unauthorized);
        false
    }

    /// Answers the handshake with `status` and this node's role.
    fn answer_handshake(&mut self, status: HandshakeStatus) -> Result<(), protocol::Error> {
        let role = self.shared.node().role();
        self.connection.write_handshake_reply(status, role)
    }

    /// Tells a peer whose role this node does not serve (a master's stream
    /// to anything but a slave, an unknown role) so, and closes.
    fn refuse_role(mut self, role: Role) {
        warn!(
            "{}: refused: role {role:?} is not served by a {:?} node",
            self.peer,
            self.shared.node().role()
        );
        self.shared
            .metrics
            .refused(HandshakeStatus::UnsupportedRole);
        let _ = self.answer_handshake(HandshakeStatus::UnsupportedRole);
    }

    /// A slave's stream from its master, applied until it ends, if the
    /// slave follows this master (see [`SlaveState::admit`]); if not, the
    /// handshake is refused with the status and reason the slave gave.
    fn serve_replication(
        mut self,
        state: &SlaveState,
        fields: &HandshakeFields,
        stream_fields: StreamFields,
    ) {
        let claim = MasterClaim {
            history: replication::master_history(fields),
            addr: stream_fields.master_addr,
            features: stream_fields.features,
            term: stream_fields.term,
        };
        // Through TLS, a master that presents a certificate (every
        // duokv master does; with --tls-client-auth it must) is the one
        // --master-addr names only if the certificate is for that host.
        if let Some(leaf) = self.connection.stream().peer_certificate()
            && let Err(why) = crate::tls::certificate_is_for(&leaf, state.master_addr())
        {
            let why = format!(
                "this slave follows {}, and the master's TLS certificate says otherwise: {why}",
                state.master_addr()
            );
            warn!("{}: replication stream refused: {why}", self.peer);
            return self.refuse_stream(&Refusal::Fenced(why));
        }
        let admitted = match state.admit(
            &self.shared.store,
            self.connection.stream().socket(),
            self.peer,
            &claim,
        ) {
            Ok(admitted) => admitted,
            Err(refusal) => return self.refuse_stream(&refusal),
        };
        let role = self.shared.node().role();
        let features = admitted.features();
        if self
            .connection
            .write_stream_acceptance(role, features)
            .is_err()
        {
            replication::slave::release(state, admitted);
            return;
        }
        let shared = self.shared;
        let take_over = |handover: &Handover| {
            // Nothing is admitted after the handover: this node is leaving
            // the slave's role on this very stream.
            state.stop_admitting();
            let took_over = super::roles::take_over(shared, handover);
            if took_over.is_err() {
                state.admit_again();
            }
            took_over
        };
        let (stream, mut reader) = self.connection.into_replication();
        replication::slave::serve_stream(
            &shared.store,
            state,
            shared.events.as_ref(),
            (stream, &mut reader),
            self.peer,
            admitted,
            &take_over,
        );
    }

    /// Tells a master whose stream this slave does not take why, with the
    /// status that carries the refusal (a stale master also learns the
    /// term and master that replaced it).
    fn refuse_stream(mut self, refusal: &Refusal) {
        self.shared.metrics.refused(refusal.status());
        let _ = match refusal {
            Refusal::Stale {
                reason,
                term,
                master,
            } => self
                .connection
                .write_handshake(&HandshakeReply::stale_master(
                    HandshakeStatus::Fenced,
                    NodeRole::Slave,
                    reason,
                    *term,
                    master,
                )),
            refusal => {
                let role = self.shared.node().role();
                self.connection
                    .write_handshake_refusal(refusal.status(), role, refusal.reason())
            }
        };
    }

    /// A client's requests, answered until the connection is to close;
    /// with `tokens` (the handshake's flag) its write receipts carry the
    /// history id.
    fn serve_client(mut self, tokens: bool) {
        if self.answer_handshake(HandshakeStatus::Ok).is_err() {
            return;
        }
        let deferred = match DeferredReplies::new(self.connection.stream(), self.peer, tokens) {
            Ok(deferred) => deferred,
            Err(e) => {
                warn!("{}: cannot clone the socket ({e}); closed", self.peer);
                return;
            }
        };
        let _sent = SentOnDrop(deferred.clone());
        while let Some(frame) = self.next_frame() {
            if self.dispatch(frame, &deferred).is_break() {
                return;
            }
        }
    }

    /// The client's next frame; `None` when the connection is to close,
    /// said why in the log (and to the client, for bytes that are not a
    /// frame).
    fn next_frame(&mut self) -> Option<Frame> {
        let (peer, config) = (self.peer, &self.shared.config);
        match self.connection.read_frame() {
            Ok(Some(frame)) => return Some(frame),
            Ok(None) => debug!("{peer}: closed the connection"),
            Err(ReadError::Idle) => info!("{peer}: idle for {:?}, closing", config.idle_timeout),
            Err(ReadError::TooSlow) => info!(
                "{peer}: a frame took over {:?} to arrive, closing",
                config.frame_timeout
            ),
            Err(ReadError::Bad(e)) => {
                warn!("{peer}: bad frame, closing: {e}");
                let _ = self.connection.write_frame(&reply::bad_frame(&e));
            }
            Err(ReadError::Broken(e)) => debug!("{peer}: connection ended: {e}"),
        }
        None
    }

    /// Answers one frame. A write on a master (or a standalone node) is
    /// staged, and answered by the thread that commits it (see
    /// [`deferred`](super::deferred)); anything else is answered here.
    /// Breaks when the connection is to close.
    fn dispatch(&mut self, frame: Frame, deferred: &Arc<DeferredReplies>) -> ControlFlow<()> {
        let received_ns = now_ns();
        let started = Instant::now();
        // Replies keep their order: the previous write's goes out first.
        deferred.wait_idle();
        let Message::Request(request) = frame.message else {
            warn!("{}: sent a frame that is not a request, closing", self.peer);
            let reply = Frame::response(frame.request_id, reply::not_a_request());
            let _ = self.connection.write_frame(&reply);
            return ControlFlow::Break(());
        };
        let shared = self.shared;
        let response = match Command::of(&request) {
            Command::Write(op) => {
                let node = shared.node();
                match &*node {
                    Node::Slave { master_addr, .. } => reply::not_master(master_addr),
                    Node::Standalone => {
                        deferred.write(shared, frame.request_id, (received_ns, started), op);
                        return ControlFlow::Continue(());
                    }
                    Node::Master(replicator) => {
                        let patience = replicator.settings().sync_timeout;
                        let (admission, _staging) = replicator.admit_write(patience);
                        if admission != Admission::Open {
                            reply::switching_over(admission)
                        } else {
                            deferred.write(shared, frame.request_id, (received_ns, started), op);
                            return ControlFlow::Continue(());
                        }
                    }
                }
            }
            Command::Failover { timeout } => match super::roles::failover(shared, timeout) {
                Ok(facts) => reply::info(facts),
                Err(error) => error.reply(),
            },
            Command::Promote {
                replica,
                mode,
                force,
            } => match super::roles::promote(shared, replica, mode, force) {
                Ok(facts) => reply::info(facts),
                Err(error) => error.reply(),
            },
            Command::Read(key) => {
                let response = super::read::answer(shared, key, None, None, deferred.tokens());
                return self.answer_read(frame.request_id, response, ReadKind::Plain, started);
            }
            Command::ReadWhen { key, after, fresh } => {
                let kind = match after {
                    Some(_) => ReadKind::After,
                    None => ReadKind::Fresh,
                };
                let response = super::read::answer(shared, key, after, fresh, deferred.tokens());
                return self.answer_read(frame.request_id, response, kind, started);
            }
            Command::Ping => reply::pong(received_ns),
            Command::Info => reply::info(super::info::facts(shared)),
        };
        self.answer(frame.request_id, response)
    }

    /// Sends the answer to a read of `kind` whose request was read at
    /// `started`, and records how long it took.
    fn answer_read(
        &mut self,
        request_id: u64,
        response: Response,
        kind: ReadKind,
        started: Instant,
    ) -> ControlFlow<()> {
        let flow = self.answer(request_id, response);
        self.shared.metrics.read_answered(kind, started);
        flow
    }

    /// Sends the answer to `request_id` now. Breaks when the connection is
    /// to close: the answer could not be sent, or the server is stopping.
    fn answer(&mut self, request_id: u64, response: Response) -> ControlFlow<()> {
        let reply = Frame::response(request_id, reply::stamped(response));
        if let Err(e) = self.connection.write_frame(&reply) {
            debug!("{}: cannot send a reply: {e}", self.peer);
            return ControlFlow::Break(());
        }
        if self.shared.shutdown.is_requested() {
            debug!("{}: closing for shutdown after the reply", self.peer);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}
