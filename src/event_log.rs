//! The per-write event log (`--event-log FILE`): one CSV line per event in a
//! write's life on a replica, with the write's ID, its key, and the replica's
//! wall clock in UNIX nanoseconds.
//!
//! ```text
//! event,seq,key,unix_ns
//! received,0,bench,1764081234000000000
//! applied,17,bench,1764081234000180000
//! ```
//!
//! The master logs `received` (when the request was read; written once the
//! write has its seq, with that time), `applied` (durable on the master),
//! `forwarded` (written to the slave's socket), `acked` (the slave's
//! acknowledgement covering it arrived) and `replied`; the slave logs
//! `received` and `applied` (durable on the slave). A write is forwarded as
//! soon as it is written, while the master's sync runs, so `forwarded`, and
//! even `acked`, may come before the master's `applied`; `replied` comes
//! after `applied` (and, in sync mode, after `acked`). A key that is not plain printable ASCII (or holds a comma
//! or a quote) is written as `0x` and its bytes in hex.
//!
//! [`read`] parses a log back into [`EventRow`]s, so that the one file
//! format is defined here, beside its writer, for every reader (the
//! toolbox's stats among them).
//!
//! Logging never blocks a request on the disk: events go through a channel
//! to a writer thread, which buffers them and flushes at least every 100 ms
//! and when the log is dropped.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::error;

use crate::error::{Error, Result};

/// How often buffered events are written to the file at the latest.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The header line of an event log.
pub const HEADER: &str = "event,seq,key,unix_ns";

/// What happened to a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The replica read the write (a request, or a frame of the stream).
    Received,
    /// The write is durable in the replica's store.
    Applied,
    /// The master wrote it to the slave's socket.
    Forwarded,
    /// The slave's acknowledgement covering it reached the master.
    Acked,
    /// The master sent the client its reply.
    Replied,
    /// The write became visible to readers on the slave: the master had
    /// said it is durable there (a `Commit` covering it).
    Visible,
}

impl EventKind {
    /// The name in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Received => "received",
            EventKind::Applied => "applied",
            EventKind::Forwarded => "forwarded",
            EventKind::Acked => "acked",
            EventKind::Replied => "replied",
            EventKind::Visible => "visible",
        }
    }
}

impl std::str::FromStr for EventKind {
    type Err = String;

    /// The kind a log names, from [`EventKind::as_str`]'s names.
    fn from_str(name: &str) -> std::result::Result<EventKind, String> {
        [
            EventKind::Received,
            EventKind::Applied,
            EventKind::Forwarded,
            EventKind::Acked,
            EventKind::Replied,
            EventKind::Visible,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
        .ok_or_else(|| format!("unknown event `{name}`"))
    }
}

/// One line of an event log, as [`read`] parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// What happened.
    pub kind: EventKind,
    /// The write's ID.
    pub seq: u64,
    /// The key, as the log wrote it ([`csv_key`]).
    pub key: String,
    /// The replica's clock, in UNIX nanoseconds.
    pub unix_ns: u64,
}

impl EventRow {
    /// Parses one line of a log (not the header), or `None` if it is not an
    /// event line.
    pub fn from_csv(line: &str) -> Option<EventRow> {
        let mut fields = line.split(',');
        let row = EventRow {
            kind: fields.next()?.parse().ok()?,
            seq: fields.next()?.parse().ok()?,
            key: fields.next()?.to_string(),
            unix_ns: fields.next()?.parse().ok()?,
        };
        fields.next().is_none().then_some(row)
    }
}

/// Reads an event log back; a missing file is an error, and so is a line
/// that is not an event, with its number.
pub fn read(path: &Path) -> Result<Vec<EventRow>> {
    let file_error = |source| Error::File {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(file_error)?;
    let mut rows = Vec::new();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(file_error)?;
        if (number == 0 && line == HEADER) || line.trim().is_empty() {
            continue;
        }
        rows.push(EventRow::from_csv(&line).ok_or_else(|| Error::BadFile {
            path: path.to_path_buf(),
            reason: format!("line {} is not an event: {line}", number + 1),
        })?);
    }
    Ok(rows)
}

struct Event {
    kind: EventKind,
    seq: u64,
    key: Vec<u8>,
    at_ns: u64,
}

/// What the writer thread receives.
enum Message {
    Event(Event),
    /// Flush, close the file and stop.
    Close,
}

/// An open event log; dropping it flushes and closes the file.
#[derive(Debug)]
pub struct EventLog {
    sender: Sender<Message>,
    writer: Option<JoinHandle<()>>,
    path: PathBuf,
}

/// A handle that records events into an [`EventLog`] from any thread.
#[derive(Debug, Clone)]
pub struct EventSink {
    sender: Sender<Message>,
}

impl EventSink {
    /// Records one event, stamped now.
    pub fn record(&self, kind: EventKind, seq: u64, key: &[u8]) {
        self.record_at(kind, seq, key, crate::clock::now_ns());
    }

    /// Records one event with its own timestamp.
    pub fn record_at(&self, kind: EventKind, seq: u64, key: &[u8], at_ns: u64) {
        // A send fails only once the log is closed, at shutdown.
        let _ = self.sender.send(Message::Event(Event {
            kind,
            seq,
            key: key.to_vec(),
            at_ns,
        }));
    }
}

impl EventLog {
    /// Creates (truncates) the log at `path` and starts its writer thread.
    pub fn create(path: impl AsRef<Path>) -> Result<EventLog> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|source| Error::File {
            path: path.clone(),
            source,
        })?;
        let (sender, receiver) = crossbeam_channel::unbounded();
        let thread_path = path.clone();
        let writer = std::thread::Builder::new()
            .name("event-log".into())
            .spawn(move || write_events(file, &thread_path, &receiver))?;
        Ok(EventLog {
            sender,
            writer: Some(writer),
            path,
        })
    }

    /// A handle to record events with.
    pub fn sink(&self) -> EventSink {
        EventSink {
            sender: self.sender.clone(),
        }
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for EventLog {
    /// Flushes what was recorded and closes the file. Events recorded through
    /// sinks that outlive the log after this are dropped.
    fn drop(&mut self) {
        let _ = self.sender.send(Message::Close);
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            error!("the event log writer of {} panicked", self.path.display());
        }
    }
}

fn write_events(file: File, path: &Path, events: &Receiver<Message>) {
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    let write = |out: &mut BufWriter<File>, line: std::fmt::Arguments<'_>| {
        if let Err(e) = out.write_fmt(line) {
            error!("cannot write the event log {}: {e}", path.display());
        }
    };
    write(&mut out, format_args!("{HEADER}\n"));
    let flush = |out: &mut BufWriter<File>| {
        if let Err(e) = out.flush() {
            error!("cannot flush the event log {}: {e}", path.display());
        }
    };
    // Flush at least every FLUSH_EVERY, however steady the stream of events.
    let mut next_flush = Instant::now() + FLUSH_EVERY;
    loop {
        match events.recv_deadline(next_flush) {
            Ok(Message::Event(event)) => write(
                &mut out,
                format_args!(
                    "{},{},{},{}\n",
                    event.kind.as_str(),
                    event.seq,
                    csv_key(&event.key),
                    event.at_ns
                ),
            ),
            Err(RecvTimeoutError::Timeout) => {}
            Ok(Message::Close) | Err(RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next_flush {
            flush(&mut out);
            next_flush = Instant::now() + FLUSH_EVERY;
        }
    }
    if let Err(e) = out.flush().and_then(|()| out.get_ref().sync_data()) {
        error!("cannot flush the event log {}: {e}", path.display());
    }
}

/// A key as a CSV field: as is when plain printable ASCII, else `0x…` hex.
pub fn csv_key(key: &[u8]) -> String {
    let plain = !key.is_empty()
        && !key.starts_with(b"0x")
        && key
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b',' && b != b'"');
    if plain {
        String::from_utf8_lossy(key).into_owned()
    } else {
        let mut text = String::with_capacity(2 + key.len() * 2);
        text.push_str("0x");
        for byte in key {
            text.push_str(&format!("{byte:02x}"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_plain_or_hex() {
        assert_eq!(csv_key(b"bench"), "bench");
        assert_eq!(csv_key(b"a,b"), "0x612c62");
        assert_eq!(csv_key(b""), "0x");
        assert_eq!(csv_key(b"0x1"), "0x307831");
    }

    #[test]
    fn events_reach_the_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.csv");
        let log = EventLog::create(&path).unwrap();
        let sink = log.sink();
        sink.record_at(EventKind::Received, 0, b"k", 10);
        sink.record_at(EventKind::Applied, 1, b"k", 20);
        drop(sink);
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "event,seq,key,unix_ns\nreceived,0,k,10\napplied,1,k,20\n"
        );
        let rows = read(&path).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].kind, EventKind::Applied);
        assert_eq!(
            (rows[1].seq, rows[1].key.as_str(), rows[1].unix_ns),
            (1, "k", 20)
        );
    }

    #[test]
    fn a_line_that_is_not_an_event_is_refused_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.csv");
        std::fs::write(
            &path,
            "event,seq,key,unix_ns\napplied,1,k,20\nexploded,2,k,30\n",
        )
        .unwrap();
        let error = read(&path).unwrap_err();
        assert!(error.to_string().contains("line 3"), "{error}");
        assert!(matches!(
            read(&dir.path().join("missing")),
            Err(Error::File { .. })
        ));
    }
}
