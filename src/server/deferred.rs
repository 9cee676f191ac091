//! Writes answered by the thread that made them durable.
//!
//! A connection thread that waits for its write's group commit sleeps and
//! is woken for every write: on a loaded server that is a context switch
//! per write, on top of the one for reading the request. Instead, the
//! connection thread stages the write with
//! [`Store::write_then`](duokv_storage::Store::write_then) and goes back to
//! its socket; whichever thread commits the batch (a writer leading it, or
//! the store's committer thread) sends the reply.
//!
//! That thread must never block on a client, or one client that stops
//! reading would stall every commit. So the reply is sent with
//! `MSG_DONTWAIT`; whatever does not fit in the socket's buffer at once is
//! left to a short-lived thread of its own, which writes it with the
//! connection's usual write timeout. A connection has at most one deferred
//! reply outstanding: before it handles its next request, or sends any
//! other reply, or ends, its thread waits for that one to be sent, so
//! replies keep their order and memory stays bounded.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use duokv_protocol::{Frame, Response, WriteReceipt};
use duokv_storage::WriteOp;
use log::debug;

use super::metrics::WriteTimer;
use super::reply;
use super::shared::Shared;
use crate::clock::now_ns;
use crate::event_log::EventKind;
use crate::replication::{AckOutcome, Replicator};
use crate::transport::Transport;

/// One connection's deferred reply, if any is outstanding.
#[derive(Debug)]
pub(crate) struct DeferredReplies {
    stream: Transport,
    peer: String,
    /// Whether receipts carry the history id (the client asked for write
    /// tokens in its handshake; older clients would refuse the bytes).
    tokens: bool,
    state: Mutex<ReplyState>,
    sent: Condvar,
}

/// Whether a reply is outstanding, and whether the connection's thread
/// waits for it: a condvar's notify is a system call even when no one
/// waits, and the reply's sender would pay it on every write. The write's
/// latency is timed until its reply is sent.
#[derive(Debug, Default)]
struct ReplyState {
    outstanding: bool,
    waited_for: bool,
    timer: Option<WriteTimer>,
}

impl DeferredReplies {
    /// Whether the client asked for tokens in its handshake: its replies
    /// carry history ids and read points.
    pub(crate) fn tokens(&self) -> bool {
        self.tokens
    }

    /// For the connection on `stream` (a clone of it is kept to send on);
    /// `tokens` as the client's handshake asked.
    pub(crate) fn new(
        stream: &Transport,
        peer: &str,
        tokens: bool,
    ) -> std::io::Result<Arc<DeferredReplies>> {
        Ok(Arc::new(DeferredReplies {
            stream: stream.try_clone()?,
            peer: peer.to_string(),
            tokens,
            state: Mutex::new(ReplyState::default()),
            sent: Condvar::new(),
        }))
    }

    /// Waits until no deferred reply is outstanding.
    pub(crate) fn wait_idle(&self) {
        let mut state = self.lock();
        while state.outstanding {
            state.waited_for = true;
            state = self.sent.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Stages the write of `request_id`, received at `received` (the wall
    /// clock's time for the receipt, the monotonic one for the latency),
    /// and returns at once; its reply is sent once the write is durable
    /// (and, on a sync master, acknowledged by the slave). Call
    /// [`wait_idle`](Self::wait_idle) first. A master's store hands the
    /// write to the replicator itself, once written.
    pub(crate) fn write(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        request_id: u64,
        received: (u64, Instant),
        op: WriteOp<'_>,
    ) {
        let (received_ns, started) = received;
        let timer = shared.metrics.write_timer(&op, started);
        {
            let mut state = self.lock();
            state.outstanding = true;
            state.timer = Some(timer);
        }
        let replies = self.clone();
        let done_shared = shared.clone();
        // The key is only for the event log: no copy without one.
        let key = match &shared.events {
            Some(_) => op.key().to_vec(),
            None => Vec::new(),
        };
        write_then(
            shared,
            received_ns,
            op,
            Box::new(move |outcome| match outcome {
                Ok(receipt) => replies.send_receipt(&done_shared, request_id, receipt, &key),
                Err(reply) => replies.send(Frame::response(request_id, reply)),
            }),
        );
    }

    /// Sends a write's receipt, stamped and recorded as replied just before.
    fn send_receipt(
        self: Arc<Self>,
        shared: &Shared,
        request_id: u64,
        mut receipt: WriteReceipt,
        key: &[u8],
    ) {
        if self.tokens {
            // The history a running master writes under never changes: it
            // forks a new one only when it starts.
            receipt.history = shared.store.history_id();
        }
        receipt.replied_ns = now_ns();
        if let Some(events) = &shared.events {
            events.record_at(EventKind::Replied, receipt.seq, key, receipt.replied_ns);
        }
        self.send(Frame::response(request_id, reply::written(receipt)));
    }

    /// Sends `reply` without blocking this thread, hands what is left to a
    /// thread of its own if the socket is full, and marks the reply sent.
    fn send(self: Arc<Self>, reply: Frame) {
        let mut bytes = match reply.to_bytes() {
            Ok(bytes) => bytes,
            Err(e) => {
                debug!("{}: cannot encode a reply: {e}", self.peer);
                return self.done();
            }
        };
        match self.stream.send_without_waiting(&bytes) {
            Ok(left) if left > 0 || self.stream.has_pending() => {
                bytes.drain(..bytes.len() - left);
                return self.send_in_background(bytes);
            }
            Ok(_) => {}
            Err(e) => debug!("{}: cannot send a reply: {e}", self.peer),
        }
        self.done();
    }

    /// The slow path: a client that is not reading its replies gets the
    /// rest from a thread of its own, under the connection's write timeout.
    fn send_in_background(self: Arc<Self>, rest: Vec<u8>) {
        let replies = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("reply {}", self.peer))
            .spawn(move || {
                if let Err(e) = replies.stream.send_rest(&rest) {
                    debug!("{}: cannot send a reply: {e}", replies.peer);
                }
                replies.done();
            });
        if let Err(e) = spawned {
            debug!("{}: no thread to send a reply: {e}", self.peer);
            let _ = self.stream.shutdown(std::net::Shutdown::Both);
            self.done();
        }
    }

    fn done(&self) {
        let mut state = self.lock();
        state.outstanding = false;
        let timer = state.timer.take();
        if std::mem::take(&mut state.waited_for) {
            self.sent.notify_all();
        }
        drop(state);
        if let Some(timer) = timer {
            timer.observe();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReplyState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What is told how a write ended: its receipt (not yet stamped as
/// replied), or the error to answer. Called by the thread that made the
/// write durable, or that saw the slave's ack: it must not block.
pub(crate) type WriteDone = Box<dyn FnOnce(Result<WriteReceipt, Response>) + Send>;

/// Stages `op`, received at `received_ns`, and returns at once; `done` is
/// told how it ended once it is durable (and, on a sync master,
/// acknowledged by the slave, or timed out). The one write path of every
/// protocol the server speaks.
pub(crate) fn write_then(shared: &Arc<Shared>, received_ns: u64, op: WriteOp<'_>, done: WriteDone) {
    let done_shared = shared.clone();
    let key = match &shared.events {
        Some(_) => op.key().to_vec(),
        None => Vec::new(),
    };
    shared.store.write_then(op, move |outcome| match outcome {
        Ok(seq) => durable(&done_shared, seq, received_ns, &key, done),
        Err(e) => done(Err(reply::storage_error(&e))),
    });
}

/// A write durable on this node: recorded, and reported now, or on a sync
/// master once the slave's ack (or the sync timeout) says how it went.
fn durable(shared: &Arc<Shared>, seq: u64, received_ns: u64, key: &[u8], done: WriteDone) {
    let applied_ns = now_ns();
    if let Some(events) = &shared.events {
        events.record_at(EventKind::Received, seq, key, received_ns);
        events.record_at(EventKind::Applied, seq, key, applied_ns);
    }
    let receipt = WriteReceipt {
        seq,
        received_ns,
        applied_ns,
        replicated_ns: 0,
        replied_ns: 0,
        history: 0,
    };
    let node = shared.node();
    let replicator = match node.replicator() {
        Some(replicator) if replicator.mode().is_sync() => replicator,
        // A standalone node or an async master answers now.
        _ => return done(Ok(receipt)),
    };
    let acked_shared = shared.clone();
    replicator.when_acked(
        seq,
        Box::new(move |outcome| {
            let replicated_ns = match outcome {
                AckOutcome::Acked { at_ns } => at_ns,
                AckOutcome::Degraded => {
                    acked_shared.metrics.sync_fell_back();
                    0
                }
                AckOutcome::TimedOut => {
                    acked_shared.metrics.sync_timed_out();
                    let node = acked_shared.node();
                    let master = node.replicator().map(Replicator::settings);
                    return done(Err(reply::replica_unavailable(seq, master)));
                }
            };
            done(Ok(WriteReceipt {
                replicated_ns,
                ..receipt
            }));
        }),
    );
}

/// Waits, when dropped, until the connection's deferred reply is sent: a
/// connection thread never ends with its reply still on the way.
#[derive(Debug)]
pub(crate) struct SentOnDrop(pub(crate) Arc<DeferredReplies>);

impl Drop for SentOnDrop {
    fn drop(&mut self) {
        self.0.wait_idle();
    }
}
