//! The slave's side of replication: applying the master's stream.
//!
//! The master connects to the slave's client port with the replica role.
//! The slave says where its store ends (`Hello`), then applies what comes:
//! runs of `Append`s, each run with one commit (one `fdatasync` under
//! `--fsync always`), acknowledged by one cumulative `Ack`; or a full
//! snapshot, which replaces its contents. A write that does not follow the
//! last one (a gap, a divergence) is never skipped: the slave stops
//! applying, logs why, and asks for a full resync.
//!
//! One stream at a time: a new connection from the master replaces the old
//! one, which is cut.

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::sync::Mutex;

use duokv_protocol::{self as protocol, Frame, Message, ReplicatedOp, Replication};
use duokv_storage::{self as storage, History, Kinship, Record, SnapshotEntry, Store};
use log::{error, info, warn};

use super::wire;
use crate::clock::now_ns;
use crate::event_log::{EventKind, EventSink};

/// Appends applied with one commit at most.
const MAX_BATCH: usize = 4096;

/// What a slave does when its master's history is not its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDivergence {
    /// Take a full snapshot from the master, replacing its contents (logged).
    #[default]
    Resync,
    /// Refuse the stream and keep its contents until an operator decides.
    Refuse,
}

impl std::str::FromStr for OnDivergence {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "resync" => Ok(OnDivergence::Resync),
            "refuse" => Ok(OnDivergence::Refuse),
            _ => Err(format!("`{text}`: use resync or refuse")),
        }
    }
}

/// The slave's replication state: which stream is current, and the policy
/// for a divergent master.
#[derive(Debug, Default)]
pub struct SlaveState {
    current: Mutex<Option<(u64, TcpStream)>>,
    next_id: Mutex<u64>,
    on_divergence: OnDivergence,
}

impl SlaveState {
    /// A slave that treats a divergent master as `on_divergence` says.
    pub fn new(on_divergence: OnDivergence) -> Self {
        SlaveState {
            on_divergence,
            ..SlaveState::default()
        }
    }

    /// Makes `stream` the current one and cuts the previous stream.
    fn take_over(&self, stream: &TcpStream, peer: &str) -> std::io::Result<u64> {
        let id = {
            let mut next = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            *next
        };
        let clone = stream.try_clone()?;
        let old = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace((id, clone));
        if let Some((_, old)) = old {
            info!("replication stream from {peer} replaces the previous one");
            let _ = old.shutdown(Shutdown::Both);
        }
        Ok(id)
    }

    fn release(&self, id: u64) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current
            .as_ref()
            .is_some_and(|(current_id, _)| *current_id == id)
        {
            *current = None;
        }
    }

    /// Whether a master is connected now.
    pub fn connected(&self) -> bool {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

/// Serves a replication stream from the master until it ends.
/// `master_history` is the history the master's handshake carried (an ID
/// of 0 if none).
pub fn serve_stream<R: Read>(
    store: &Store,
    state: &SlaveState,
    events: Option<&EventSink>,
    (stream, reader): (&TcpStream, &mut BufReader<R>),
    peer: &str,
    master_history: &History,
) {
    let id = match state.take_over(stream, peer) {
        Ok(id) => id,
        Err(e) => {
            warn!("{peer}: cannot take the replication stream: {e}");
            return;
        }
    };
    info!(
        "replication stream from master {peer}; this store holds writes up to seq {}",
        store.last_seq()
    );
    if !join_history(store, state.on_divergence, master_history, peer) {
        state.release(id);
        return;
    }
    if let Err(e) = apply_stream(store, events, stream, reader, peer) {
        warn!(
            "replication stream from {peer} ended: {}",
            crate::error::chain(&e)
        );
    } else {
        info!("replication stream from {peer} closed");
    }
    state.release(id);
}

/// Checks the master's history against this store's before anything is
/// applied, and returns whether to go on with the stream:
/// - a store whose log is a prefix of the master's (empty, of the same
///   history, or of an ancestor that ended at or after this store's last
///   write: the master restarted) takes the master's history and is caught
///   up from where it ends;
/// - a store of an ancestor that goes past the fork point holds writes the
///   master lost in a crash before its own sync (never acknowledged to a
///   client): it keeps its ID, so the master sees another history in its
///   `Hello` and replaces the contents by a full resync;
/// - a store of an unrelated history (a master restarted on an empty
///   directory) resyncs fully or refuses, as `--on-divergence` says.
fn join_history(store: &Store, policy: OnDivergence, master_history: &History, peer: &str) -> bool {
    let own = store.history_id();
    let last_seq = store.last_seq();
    let theirs = master_history.id;
    if theirs == 0 || theirs == own {
        return true;
    }
    let adopt = || match store.adopt_history(master_history) {
        Ok(()) => true,
        Err(e) => {
            error!("cannot take master {peer}'s history: {e}");
            false
        }
    };
    if last_seq == 0 {
        return adopt();
    }
    match master_history.kinship(own) {
        Kinship::Current => return true,
        Kinship::Ancestor { last_seq: end } if last_seq <= end => {
            info!(
                "master {peer} continues this store's history {own:016x} (up to seq {end}) as \
                 {theirs:016x}; going on from seq {last_seq}"
            );
            return adopt();
        }
        Kinship::Ancestor { last_seq: end } => {
            warn!(
                "this store holds {} writes after seq {end}, where master {peer}'s history \
                 {own:016x} ended: the master lost them in a crash before they were durable \
                 there (no client was told they were written); they will be replaced by a full \
                 resync",
                last_seq - end
            );
            return true;
        }
        Kinship::Unrelated => {}
    }
    match policy {
        OnDivergence::Resync => {
            warn!(
                "master {peer} has another history ({theirs:016x}) than this store \
                 ({own:016x}, writes up to seq {last_seq}): it will be replaced by a full resync"
            );
            true
        }
        OnDivergence::Refuse => {
            error!(
                "master {peer} has another history ({theirs:016x}) than this store \
                 ({own:016x}, writes up to seq {last_seq}): refusing its stream (--on-divergence \
                 refuse); keep this data or restart with --on-divergence resync"
            );
            false
        }
    }
}

/// Says where this store ends, then applies the master's frames until the
/// stream ends (`Ok`) or fails.
fn apply_stream<R: Read>(
    store: &Store,
    events: Option<&EventSink>,
    stream: &TcpStream,
    reader: &mut BufReader<R>,
    peer: &str,
) -> crate::Result<()> {
    // The stream may be idle as long as the master takes no writes.
    stream.set_read_timeout(None)?;
    let mut applier = Applier {
        store,
        events,
        writer: stream,
        reader,
        peer,
        halted: false,
        pending: None,
    };
    applier.send(Replication::Hello {
        last_seq: store.last_seq(),
        replication_id: store.history_id(),
    })?;
    while let Some(frame) = applier.next_frame()? {
        match frame.message {
            Message::Replication(Replication::Append { seq, op }) => {
                let batch = applier.read_batch(seq, op)?;
                applier.apply(&batch)?;
            }
            Message::Replication(Replication::SnapshotBegin {
                seq,
                entries,
                replication_id,
            }) => applier.install_snapshot(seq, entries, replication_id)?,
            other => {
                warn!(
                    "replication stream from {peer}: unexpected frame of kind {:?}",
                    other.kind()
                );
                return Ok(());
            }
        }
    }
    Ok(())
}

/// One stream's frames being applied to the store.
struct Applier<'a, R> {
    store: &'a Store,
    events: Option<&'a EventSink>,
    writer: &'a TcpStream,
    reader: &'a mut BufReader<R>,
    peer: &'a str,
    /// A write did not follow the last one: nothing is applied until the
    /// full resync asked for arrives.
    halted: bool,
    /// A frame read while taking a batch, which is not part of it.
    pending: Option<Frame>,
}

impl<R: Read> Applier<'_, R> {
    /// The next frame; `None` when the master closed the stream.
    fn next_frame(&mut self) -> crate::Result<Option<Frame>> {
        match self.pending.take() {
            Some(frame) => Ok(Some(frame)),
            None => Ok(protocol::read_frame(self.reader)?),
        }
    }

    /// The `Append` of `seq` and every `Append` already buffered after it,
    /// to apply with one commit.
    fn read_batch(&mut self, seq: u64, op: ReplicatedOp) -> crate::Result<Vec<Record>> {
        let mut batch = vec![record(seq, op, self.events)];
        while batch.len() < MAX_BATCH && Frame::check(self.reader.buffer()).is_ok() {
            let Some(next) = protocol::read_frame(self.reader)? else {
                break;
            };
            match next.message {
                Message::Replication(Replication::Append { seq, op }) => {
                    batch.push(record(seq, op, self.events))
                }
                _ => {
                    self.pending = Some(next);
                    break;
                }
            }
        }
        Ok(batch)
    }

    /// Applies `batch` with one commit and acknowledges it; a batch that
    /// does not follow the store's last write halts the stream and asks
    /// for a full resync instead.
    fn apply(&mut self, batch: &[Record]) -> crate::Result<()> {
        if self.halted {
            return Ok(());
        }
        match self.store.apply_batch(batch) {
            Ok(()) => {
                let last = batch.last().map_or(0, |r| r.seq);
                if let Some(events) = self.events {
                    let at_ns = now_ns();
                    for record in batch {
                        events.record_at(EventKind::Applied, record.seq, record.op.key(), at_ns);
                    }
                }
                self.send(Replication::Ack { seq: last })
            }
            Err(storage::Error::OutOfOrder { expected, got }) => {
                let reason = format!("expected seq {expected}, the master sent {got}");
                error!(
                    "replication from {}: {reason}; not applying it, asking for a full \
                     resync (nothing is applied until it arrives)",
                    self.peer
                );
                self.send(Replication::ResyncRequest { reason })?;
                self.halted = true;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces the store's contents by the snapshot that follows, and
    /// acknowledges it.
    fn install_snapshot(
        &mut self,
        seq: u64,
        entries: u64,
        replication_id: u64,
    ) -> crate::Result<()> {
        let peer = self.peer;
        info!("full resync from {peer}: {entries} keys as of seq {seq}");
        let incoming = SnapshotFrames {
            reader: &mut *self.reader,
            peer,
            done: false,
        };
        self.store.install_snapshot(seq, replication_id, incoming)?;
        self.halted = false;
        self.send(Replication::Ack { seq })
    }

    fn send(&mut self, message: Replication) -> crate::Result<()> {
        send(&mut self.writer, message)
    }
}

/// The storage record for an `Append`, logging its arrival.
fn record(seq: u64, op: ReplicatedOp, events: Option<&EventSink>) -> Record {
    let op = wire::from_wire(op);
    if let Some(events) = events {
        events.record(EventKind::Received, seq, op.key());
    }
    Record { seq, op }
}

fn send(writer: &mut &TcpStream, message: Replication) -> crate::Result<()> {
    let seq = match &message {
        Replication::Ack { seq } => *seq,
        _ => 0,
    };
    protocol::write_frame(writer, &wire::frame(seq, message))?;
    writer.flush()?;
    Ok(())
}

/// The entries of a snapshot as they arrive, up to its `SnapshotEnd`.
struct SnapshotFrames<'a, R> {
    reader: &'a mut BufReader<R>,
    peer: &'a str,
    done: bool,
}

impl<R: Read> Iterator for SnapshotFrames<'_, R> {
    type Item = storage::Result<SnapshotEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let failed = |source| {
            Some(Err(storage::Error::Io {
                action: "receive a snapshot from",
                path: PathBuf::from(self.peer),
                source,
            }))
        };
        match protocol::read_frame(self.reader) {
            Ok(Some(Frame {
                message: Message::Replication(Replication::SnapshotEntry { seq, key, value }),
                ..
            })) => Some(Ok(SnapshotEntry { seq, key, value })),
            Ok(Some(Frame {
                message: Message::Replication(Replication::SnapshotEnd { .. }),
                ..
            })) => {
                self.done = true;
                None
            }
            Ok(Some(frame)) => {
                self.done = true;
                failed(std::io::Error::other(format!(
                    "unexpected {:?} inside a snapshot",
                    frame.kind()
                )))
            }
            Ok(None) => {
                self.done = true;
                failed(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the stream ended inside a snapshot",
                ))
            }
            Err(e) => {
                self.done = true;
                failed(std::io::Error::other(e.to_string()))
            }
        }
    }
}
