//! [`Store`]: the public face of the engine.
//!
//! A store is three parts over one shared state (the `shared` module: its
//! directory, options, index and history): its write path (the
//! `group_commit` module), its compaction (the `compaction` module), and
//! the reads served here from the index. This module holds them together
//! and owns the threads that drive them.
//!
//! Locks, and the order they are taken in (never the reverse):
//! `compacting` → `flush_gate` → `writer` → `committed` → `keydir`.
//! - `compacting` (the compactor's) lets one compaction or snapshot
//!   install run at a time.
//! - `writer` (a mutex of the group commit) serialises appends: sequence
//!   numbers, the buffer, the active segment.
//! - `committed` (a gated store's `COMMITTED` file) serialises changes of
//!   the publish limit, so the file ends with the limit the index has.
//! - `keydir` (a read-write lock of the shared state) is what readers see.
//!   Under `Sync::Always` a record enters it only once it is durable.
//! - `flush_gate` is held by a group-commit leader from its write to its
//!   publish, and by compaction while it picks its inputs, so compaction
//!   never misses a record that is written but not yet published.
//!
//! # Gated visibility
//!
//! A slave's master forwards each batch before its own `fdatasync`, so the
//! slave may durably hold writes its master then loses. In a store opened
//! with [`Options::gate_visibility`] a record written to the log is
//! synced and acknowledged as in any store, but reaches readers only once
//! [`Store::publish_through`] has raised the **publish limit** to its
//! sequence number (the master has declared it durable). Until then it is
//! **held** in the index, out of every reader's sight ([`Store::get`],
//! [`Store::last_seq`], [`Store::records_since`], [`Store::snapshot`],
//! [`Store::stats`]); [`Store::applied_seq`] says where the log ends,
//! held records included. Held records are published oldest first. The
//! limit is kept in the `COMMITTED` file (the `committed` module), so a
//! restarted store holds again what it held; compaction leaves the
//! segments of held records alone (the `compaction` module).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use log::error;

use crate::committed::{self, Committed, Stored};
use crate::compaction::{Compactor, Step};
use crate::error::{Error, Result};
use crate::format::RecordKind;
use crate::group_commit::{Expect, GroupCommit, Write};
use crate::history::History;
use crate::iter::{RecordsSince, Snapshot, SnapshotEntry, TimedRecords};
use crate::options::{Options, Sync};
use crate::record::Record;
use crate::recovery::{self, Recovered};
use crate::repair::TailCut;
use crate::shared::Shared;

pub use crate::group_commit::{DurableObserver, ObservePoint, WriteObserver};
#[doc(no_inline)]
pub use crate::record::Op;

/// A write, for [`Store::write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp<'a> {
    /// Sets `key` to `value`, whether it exists or not.
    Put {
        /// The key.
        key: &'a [u8],
        /// The new value.
        value: &'a [u8],
    },
    /// Sets `key` to `value` only if `key` is absent, else
    /// [`Error::AlreadyExists`].
    Create {
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
    },
    /// Sets `key` to `value` only if `key` is present, else
    /// [`Error::NotFound`].
    Update {
        /// The key.
        key: &'a [u8],
        /// The new value.
        value: &'a [u8],
    },
    /// Deletes `key` if present, else [`Error::NotFound`].
    Delete {
        /// The key.
        key: &'a [u8],
    },
}

impl WriteOp<'_> {
    /// The key the write is about.
    pub fn key(&self) -> &[u8] {
        match self {
            WriteOp::Put { key, .. }
            | WriteOp::Create { key, .. }
            | WriteOp::Update { key, .. }
            | WriteOp::Delete { key } => key,
        }
    }
}

/// Figures about a store, from [`Store::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Keys that hold a value.
    pub live_keys: u64,
    /// Bytes of the records those keys point to.
    pub live_bytes: u64,
    /// Bytes of records no key points to: overwritten, deleted, tombstones.
    pub dead_bytes: u64,
    /// Segment files in the directory.
    pub segment_files: u64,
    /// The newest sequence number readers can see.
    pub last_seq: u64,
    /// The newest sequence number in the log: `last_seq`, or above it in a
    /// gated store holding records ([`Store::applied_seq`]).
    pub applied_seq: u64,
    /// Compactions run since the store was opened.
    pub compactions: u64,
    /// Group-commit syncs since the store was opened (`Sync::Always`):
    /// writes divided by syncs is the mean batch size.
    pub syncs: u64,
}

impl<'a> From<WriteOp<'a>> for Write<'a> {
    fn from(op: WriteOp<'a>) -> Self {
        let (expect, kind, key, value) = match op {
            WriteOp::Put { key, value } => (Expect::Anything, RecordKind::Put, key, value),
            WriteOp::Create { key, value } => (Expect::Absent, RecordKind::Put, key, value),
            WriteOp::Update { key, value } => (Expect::Present, RecordKind::Put, key, value),
            WriteOp::Delete { key } => (Expect::Present, RecordKind::Delete, key, &[][..]),
        };
        Write {
            expect,
            kind,
            key,
            value,
        }
    }
}

/// A replica-local key-value store on an append-only, CRC-checked log.
///
/// `Store` is `Send + Sync`: share it between threads with an `Arc`. Every
/// method blocks. See the [crate docs](crate) for the design.
#[derive(Debug)]
pub struct Store {
    inner: Arc<Inner>,
    background: Option<Background>,
    /// Lead group-commit rounds no blocked writer is there to lead: two,
    /// so that one can start the next round while the other calls the
    /// completions of the last.
    committers: Vec<Background>,
}

#[derive(Debug)]
struct Background {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

/// The state behind a `Store`, also held by its background threads.
#[derive(Debug)]
struct Inner {
    shared: Shared,
    commit: GroupCommit,
    compactor: Compactor,
    /// What recovery cut off the newest segment on open, if anything.
    tail_cut: Option<TailCut>,
    /// Held for the life of the store: the directory's `flock`.
    _lock: File,
}

impl Store {
    /// Opens the store in `dir`, creating the directory if needed, and
    /// rebuilds the index from the log.
    ///
    /// Fails with [`Error::Locked`] if another `Store` has `dir` open,
    /// [`Error::Corrupt`] if the log is damaged anywhere but its torn tail,
    /// and [`Error::UnsupportedVersion`] if it was written by another format.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        let created = !dir.exists();
        fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
        if created && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            // The directory's own entry says the store exists.
            crate::segment::sync_dir(parent, options.faults())?;
        }
        let lock_path = dir.join("LOCK");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io("open", &lock_path, e))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(Error::Locked { dir }),
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", &lock_path, e)),
        }
        let durable = options.sync_policy() != Sync::Never;
        let stored = match options.visibility_gated() {
            true => Some(committed::read(&dir)?),
            false => None,
        };
        let mut recovered = recovery::recover(
            &dir,
            options.segment_size_limit(),
            durable,
            stored.map_or(u64::MAX, Stored::limit),
            options.faults(),
        )?;
        let committed = match stored {
            Some(stored) => Some(open_committed(&dir, stored, &mut recovered, &options)?),
            None => None,
        };
        let history = crate::history::load_or_create(&dir, options.faults())?;
        let (compaction_wanted, compaction_requests) = crossbeam_channel::bounded(1);
        let (commit_wanted, commit_requests) = crossbeam_channel::bounded(1);
        let keydir = recovered.keydir;
        let log_sync = options.log_sync().clone();
        let inner = Arc::new(Inner {
            shared: Shared::new(dir, options, keydir, history, committed, compaction_wanted),
            commit: GroupCommit::new(
                recovered.active,
                recovered.active_len,
                recovered.last_seq,
                commit_wanted,
                log_sync,
            ),
            compactor: Compactor::default(),
            tail_cut: recovered.cut,
            _lock: lock_file,
        });
        let background = Background::start(&inner, compaction_requests)?;
        let committers = (0..2)
            .map(|_| Background::start_committer(&inner, commit_requests.clone()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Store {
            inner,
            background: Some(background),
            committers,
        })
    }

    /// What recovery cut off the end of the log when this store opened,
    /// if anything: a final batch that a crash left damaged before it was
    /// synced. Also logged as a warning.
    pub fn tail_cut(&self) -> Option<&TailCut> {
        self.inner.tail_cut.as_ref()
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.shared.options
    }

    /// The value of `key`, or `None` if it has none.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        Ok(self.get_with_seq(key)?.map(|(_, value)| value))
    }

    /// The value of `key` with the sequence number of the write that set it.
    pub fn get_with_seq(&self, key: impl AsRef<[u8]>) -> Result<Option<(u64, Vec<u8>)>> {
        let key = key.as_ref();
        let (segment, location) = {
            let keydir = self.inner.shared.read_keydir();
            let Some(location) = keydir.entries.get(key).copied() else {
                return Ok(None);
            };
            let segment = keydir.segment_of(&location).ok_or_else(|| {
                Error::corrupt(
                    &self.inner.shared.dir,
                    location.offset,
                    "index points to a missing segment",
                )
            })?;
            (segment, location)
        };
        let record = segment.read_record(location.offset, location.len)?;
        if record.key() != key
            || record.header.seq != location.seq
            || record.header.kind != RecordKind::Put
        {
            return Err(Error::corrupt(
                &segment.path,
                location.offset,
                "record differs from the index",
            ));
        }
        Ok(Some((location.seq, record.into_value())))
    }

    /// Whether `key` holds a value.
    pub fn contains(&self, key: impl AsRef<[u8]>) -> bool {
        self.inner
            .shared
            .read_keydir()
            .entries
            .contains_key(key.as_ref())
    }

    /// Sets `key` to `value` and returns the write's sequence number.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<u64> {
        self.write(WriteOp::Put {
            key: key.as_ref(),
            value: value.as_ref(),
        })
    }

    /// Sets `key` to `value` if `key` is absent, else fails with
    /// [`Error::AlreadyExists`] and writes nothing.
    pub fn create(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<u64> {
        self.write(WriteOp::Create {
            key: key.as_ref(),
            value: value.as_ref(),
        })
    }

    /// Sets `key` to `value` if `key` is present, else fails with
    /// [`Error::NotFound`] and writes nothing.
    pub fn update(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<u64> {
        self.write(WriteOp::Update {
            key: key.as_ref(),
            value: value.as_ref(),
        })
    }

    /// Deletes `key`. Returns whether it was present; deleting an absent
    /// key writes nothing.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        match self.write(WriteOp::Delete { key: key.as_ref() }) {
            Ok(_) => Ok(true),
            Err(Error::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Performs one write and returns its sequence number (the write's ID).
    /// The check a `Create`, `Update` or `Delete` makes and its write are
    /// one atomic step against every other writer.
    pub fn write(&self, op: WriteOp<'_>) -> Result<u64> {
        self.inner
            .commit
            .append(&self.inner.shared, None, op.into())
    }

    /// Performs one write like [`write`](Self::write) without waiting for
    /// it: returns once the write is staged, and calls `done` with its
    /// sequence number once it is durable (as the sync policy says) and
    /// visible to readers (or held, in a gated store), or with the error
    /// that failed it. `done` runs on
    /// whichever thread commits the write (this one, another writer's, or
    /// the store's committer thread): keep it short and never call back into
    /// the store's write path from it. Writes are numbered in the order
    /// their calls stage them, whichever way they were made.
    ///
    /// A server uses it to answer a client from the thread that made the
    /// write durable, rather than wake the client's own thread for it.
    pub fn write_then(&self, op: WriteOp<'_>, done: impl FnOnce(Result<u64>) + Send + 'static) {
        self.inner
            .commit
            .append_then(&self.inner.shared, op.into(), Box::new(done));
    }

    /// Writes a record whose sequence number a master gave: a slave applies
    /// the master's stream with it. `seq` must be the store's last plus one
    /// (its [`applied_seq`](Self::applied_seq)), else [`Error::OutOfOrder`]
    /// and nothing is written. In a gated store the record is held until
    /// the publish limit reaches it ([`publish_through`](Self::publish_through)).
    pub fn apply(&self, seq: u64, op: &Op) -> Result<()> {
        let (kind, key, value) = op.parts();
        let write = Write {
            expect: Expect::Anything,
            kind,
            key,
            value,
        };
        self.inner
            .commit
            .append(&self.inner.shared, Some(seq), write)
            .map(|_| ())
    }

    /// Applies a run of a master's records, oldest first, with one commit:
    /// under `Sync::Always` one `fdatasync` for the whole run, so a slave
    /// keeps up with a master whose writers share syncs. The first record
    /// must follow the store's last, each the one before; else
    /// [`Error::OutOfOrder`] and nothing is written.
    pub fn apply_batch(&self, records: &[Record]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.inner.commit.apply_batch(&self.inner.shared, records)
    }

    /// Replaces the whole contents of the store with a master's snapshot:
    /// `entries` (oldest write first, each at or below `seq`) become the
    /// only live keys and `seq` the last sequence number. A slave performs
    /// a full resync with it.
    ///
    /// Crash-safe: the entries are written to a new compacted segment that,
    /// once renamed into place, replaces every older segment; a crash before
    /// that leaves the old contents whole. Writes wait while it runs; reads
    /// see the old contents until the switch.
    ///
    /// The store then belongs to the snapshot's history: `history_id`
    /// becomes its [`history_id`](Self::history_id), saved only once the
    /// contents are committed.
    pub fn install_snapshot(
        &self,
        seq: u64,
        history_id: u64,
        entries: impl IntoIterator<Item = Result<SnapshotEntry>>,
    ) -> Result<()> {
        let history = History::new(history_id);
        self.inner.compactor.install_snapshot(
            &self.inner.shared,
            &self.inner.commit,
            seq,
            history.clone(),
            &mut entries.into_iter(),
        )?;
        // Already the store's in memory, since the contents switched.
        self.inner.shared.save_history(&history)
    }

    /// Takes a master's `history` (its ID and ancestors) before applying
    /// its log from where this store's ends. Allowed when this store's log
    /// is a prefix of that history's: the store is empty, of the same
    /// history, or of an ancestor that ended at or after this store's
    /// [`applied_seq`](Self::applied_seq), seeing through forks that wrote
    /// nothing (see [`History::has_prefix_of`]). Anything else would
    /// splice two histories: [`Error::OtherHistory`], and only
    /// [`install_snapshot`](Self::install_snapshot) replaces the contents.
    pub fn adopt_history(&self, history: &History) -> Result<()> {
        // Where the log ends, held records included: they are what a
        // master's log must continue.
        let last_seq = self.applied_seq();
        let own = self.history_id();
        if last_seq != 0 && !history.has_prefix_of(&self.history(), last_seq) {
            return Err(Error::OtherHistory {
                own,
                last_seq,
                theirs: history.id,
            });
        }
        if *self.inner.shared.history() == *history {
            return Ok(());
        }
        self.inner.shared.set_history(history.clone())
    }

    /// Starts a new history that continues this one: the current ID
    /// becomes an ancestor that ended at the last sequence number, made
    /// durable first, and a fresh ID is drawn and saved. A master calls it
    /// each time it starts, before it takes writes, so that a slave holding
    /// writes this store lost in a crash (see [`observe_writes`]) is told
    /// apart from one holding a prefix of its log. Returns the new history.
    ///
    /// [`observe_writes`]: Self::observe_writes
    pub fn fork_history(&self) -> Result<History> {
        // No leader between its write and its publish, no writer staging:
        // every written record is published, and `last_seq` is final.
        let commit = &self.inner.commit;
        let _gate = commit.hold_gate();
        let writer = commit.lock_writer();
        commit.sync_active(&writer)?;
        let last_seq = self.last_seq();
        let forked = self.inner.shared.history().fork(last_seq);
        self.inner.shared.set_history(forked.clone())?;
        drop(writer);
        Ok(forked)
    }

    /// The history this store's log belongs to: its ID and the histories
    /// it continues (see [`fork_history`](Self::fork_history)).
    pub fn history(&self) -> History {
        self.inner.shared.history().clone()
    }

    /// The ID of the history this store's log belongs to: drawn at random
    /// when the store was created, drawn anew by
    /// [`fork_history`](Self::fork_history), taken from the master by
    /// [`adopt_history`](Self::adopt_history) or a snapshot install. Two
    /// stores with the same ID hold one history (one was filled from the
    /// other).
    pub fn history_id(&self) -> u64 {
        self.inner.shared.history().id
    }

    /// Calls `observer` with every run of records this store writes to its
    /// log, oldest first. With [`ObservePoint::Written`], once the `pwrite`
    /// has succeeded and **before** the `fdatasync`: a master forwards them
    /// to its slave from there, so that the slave's sync runs alongside its
    /// own; such a record may still be lost if the host crashes before the
    /// sync (no caller is told it is durable until it is). With
    /// [`ObservePoint::Durable`], once the sync has succeeded. Records whose
    /// write or sync failed are never given after the failure (a failed
    /// write's sequence numbers are handed out again).
    ///
    /// Runs with the group-commit gate held (under `Sync::Always`) or the
    /// writer's lock (otherwise), so runs arrive in sequence order: keep it
    /// short, and never call back into the store's write path. One observer
    /// per store; a second call returns `false` and changes nothing.
    pub fn observe_writes(&self, at: ObservePoint, observer: WriteObserver) -> bool {
        self.inner.commit.set_observer(at, observer)
    }

    /// Calls `observer` with the store's newest durable sequence number
    /// each time it moves (see [`durable_seq`](Self::durable_seq)): a
    /// master passes it on to its slave, which shows a write only once its
    /// master has made it durable. Called from whichever thread synced
    /// (a group-commit leader, the background sync of `Sync::Every`), so
    /// values may arrive out of order from two threads: keep the largest,
    /// keep it short, and never call back into the store's write path. One
    /// durable observer per store; a second call returns `false` and
    /// changes nothing.
    pub fn observe_durable(&self, observer: DurableObserver) -> bool {
        self.inner.commit.set_durable_observer(observer)
    }

    /// Removes the write observer and the durable observer: once it
    /// returns neither is called again, and new ones may be set. A node
    /// that stops being a master calls it.
    pub fn stop_observing(&self) {
        self.inner.commit.clear_observers();
    }

    /// The last sequence number handed to a write, whether its record is
    /// written yet or not: once writers stop, what every write under way
    /// will have reached when it is durable.
    pub fn handed_out_seq(&self) -> u64 {
        self.inner.commit.handed_out_seq()
    }

    /// Lowers a gated store's publish limit to what it applied, if it is
    /// above, so that every record written from now on is held until
    /// [`publish_through`](Self::publish_through) reaches it: a master
    /// that becomes a slave calls it, once its own writes are done, after
    /// which it shows only what its new master says is durable. Nothing
    /// visible becomes hidden, and records held stay held. A lowered limit
    /// is synced to the `COMMITTED` file before it returns, which it
    /// returns. Fails with
    /// [`Error::NotGated`] on a store opened without
    /// [`Options::gate_visibility`](crate::Options::gate_visibility).
    pub fn hold_from_now(&self) -> Result<u64> {
        let shared = &self.inner.shared;
        let Some(committed) = &shared.committed else {
            return Err(Error::NotGated);
        };
        let mut file = committed.lock();
        let limit = {
            let mut keydir = shared.write_keydir();
            // Never above what is applied, never above what it was (held
            // records stay held).
            keydir.limit = keydir.limit.min(keydir.applied_seq());
            keydir.limit
        };
        if limit != file.limit() {
            file.store(limit, true)?;
        }
        Ok(limit)
    }

    /// The newest sequence number known durable: every record up to it is
    /// synced. Under `Sync::Always` that is every record readers see; under
    /// `Sync::Every`, what the last periodic (or explicit) sync covered;
    /// under `Sync::Never`, which promises nothing, every record written.
    /// On open, the log's last record (what recovery found on disk).
    pub fn durable_seq(&self) -> u64 {
        self.inner.commit.durable_seq()
    }

    /// The newest sequence number readers can see; it survives restarts
    /// (0 for a new store). In a gated store, records above it may be in
    /// the log, held: see [`applied_seq`](Self::applied_seq).
    pub fn last_seq(&self) -> u64 {
        self.inner.shared.read_keydir().published_seq
    }

    /// The newest sequence number written to the log and visible or held:
    /// where the log ends, and where a master's stream continues it. Equal
    /// to [`last_seq`](Self::last_seq) in an ungated store.
    pub fn applied_seq(&self) -> u64 {
        self.inner.shared.read_keydir().applied_seq()
    }

    /// The publish limit of a gated store: records above it are held. It
    /// survives restarts (the `COMMITTED` file). `u64::MAX` in an ungated
    /// store.
    pub fn publish_limit(&self) -> u64 {
        self.inner.shared.read_keydir().limit
    }

    /// Raises the publish limit of a gated store to `seq` (a lower value
    /// changes nothing): the master has declared its log durable through
    /// `seq`. Every held record at or below the limit becomes visible,
    /// oldest first, and records applied later at or below it are visible
    /// once durable, as in an ungated store. Returns the newest sequence
    /// number readers can see ([`last_seq`](Self::last_seq)).
    ///
    /// The limit is written to the `COMMITTED` file without a sync: a
    /// crash may leave an older limit there, which only holds back more
    /// records after a restart, never shows one the master lost. A failed
    /// write is an [`Error::Io`]; the records are visible all the same.
    /// In an ungated store it does nothing but return `last_seq`.
    pub fn publish_through(&self, seq: u64) -> Result<u64> {
        let shared = &self.inner.shared;
        let Some(committed) = &shared.committed else {
            return Ok(self.last_seq());
        };
        let mut file = committed.lock();
        let last_seq = {
            let mut keydir = shared.write_keydir();
            keydir.raise_limit(seq);
            shared.compact_if_due(&keydir);
            keydir.published_seq
        };
        if seq > file.limit() {
            file.store(seq, false)?;
        }
        Ok(last_seq)
    }

    /// The records with a sequence number above `since`, oldest first, as
    /// the log holds them now. Replication catch-up reads this.
    ///
    /// Fails with [`Error::Compacted`] when compaction may have dropped
    /// some of them (send a [`snapshot`](Self::snapshot) instead), and with
    /// [`Error::UnknownSeq`] when `since` is newer than the store's last.
    pub fn records_since(&self, since: u64) -> Result<RecordsSince> {
        let keydir = self.inner.shared.read_keydir();
        if since > keydir.published_seq {
            return Err(Error::UnknownSeq {
                since,
                last_seq: keydir.published_seq,
            });
        }
        if since < keydir.horizon {
            return Err(Error::Compacted {
                since,
                horizon: keydir.horizon,
            });
        }
        let segments = keydir
            .segments
            .values()
            .filter(|slot| slot.last_seq > since)
            .map(|slot| (slot.segment.clone(), slot.end))
            .collect();
        Ok(RecordsSince::new(since, keydir.published_seq, segments))
    }

    /// The records with a sequence number above `since` through
    /// [`applied_seq`](Self::applied_seq), **held records included**, each
    /// with the wall-clock time its batch was written (`None` for records
    /// of segments that keep no time: format versions 1 and 2, compacted
    /// segments). What a node saves before a resync replaces writes its
    /// new master's history does not hold.
    ///
    /// Unlike [`records_since`](Self::records_since) it does not fail when
    /// compaction may have dropped some of them: it yields what the log
    /// still holds, and [`TimedRecords::compacted_through`] says which
    /// range may be incomplete. Fails with [`Error::UnknownSeq`] when
    /// `since` is newer than the log's end.
    pub fn records_with_times_since(&self, since: u64) -> Result<TimedRecords> {
        let keydir = self.inner.shared.read_keydir();
        let until = keydir.applied_seq();
        if since > until {
            return Err(Error::UnknownSeq {
                since,
                last_seq: until,
            });
        }
        // Held records are in no slot's figures: their segment is read up
        // to the end of the newest of them.
        let mut held_ends: BTreeMap<u64, u64> = BTreeMap::new();
        for held in &keydir.held {
            let end = held.location.offset + u64::from(held.location.len);
            let slot_end = held_ends.entry(held.location.segment).or_insert(0);
            *slot_end = (*slot_end).max(end);
        }
        let segments = keydir
            .segments
            .iter()
            .filter(|(id, slot)| slot.last_seq > since || held_ends.contains_key(id))
            .map(|(id, slot)| {
                let end = held_ends.get(id).map_or(slot.end, |&e| e.max(slot.end));
                (slot.segment.clone(), end)
            })
            .collect();
        let compacted_through = (since < keydir.horizon).then_some(keydir.horizon);
        let records = RecordsSince::new(since, until, segments);
        Ok(TimedRecords::new(records, compacted_through))
    }

    /// Every live key with its value and sequence number, oldest write
    /// first, as of [`Snapshot::seq`]. A full resync sends it.
    pub fn snapshot(&self) -> Snapshot {
        let keydir = self.inner.shared.read_keydir();
        let mut entries: Vec<_> = keydir
            .entries
            .iter()
            .filter_map(|(key, location)| {
                Some((key.clone(), *location, keydir.segment_of(location)?))
            })
            .collect();
        entries.sort_unstable_by_key(|(_, location, _)| location.seq);
        Snapshot::new(keydir.published_seq, entries)
    }

    /// Figures about the store now.
    pub fn stats(&self) -> Stats {
        let keydir = self.inner.shared.read_keydir();
        Stats {
            live_keys: keydir.entries.len() as u64,
            live_bytes: keydir.live_bytes,
            dead_bytes: keydir.dead_bytes(),
            segment_files: keydir.segments.len() as u64,
            last_seq: keydir.published_seq,
            applied_seq: keydir.applied_seq(),
            compactions: self.inner.compactor.count(),
            syncs: self.inner.commit.syncs(),
        }
    }

    /// Rewrites the live records of every segment but a fresh active one
    /// into one compacted segment and deletes the old ones. Reads and
    /// writes go on meanwhile. See the crate docs for the crash-safe order.
    pub fn compact(&self) -> Result<()> {
        self.inner.compact(None)
    }

    /// Runs a compaction that stops right after `step`, leaving the files
    /// as a crash there would. For crash tests only: drop the store after.
    #[doc(hidden)]
    pub fn compact_and_stop_after(&self, step: Step) -> Result<()> {
        self.inner.compact(Some(step))
    }

    /// Forces everything written so far to disk, whatever the sync policy.
    /// A failure poisons the store, as every failed sync does.
    pub fn sync(&self) -> Result<()> {
        self.inner.commit.sync()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        for committer in std::mem::take(&mut self.committers) {
            drop(committer.stop);
            if committer.thread.join().is_err() {
                error!("a committer thread of the store panicked");
            }
        }
        if let Some(background) = self.background.take() {
            drop(background.stop);
            if background.thread.join().is_err() {
                error!("the store's background thread panicked");
            }
        }
        if self.inner.shared.options.sync_policy() != Sync::Always
            && !self.inner.commit.is_poisoned()
            && let Err(e) = self.sync()
        {
            error!("final sync on close: {e}");
        }
    }
}

/// Opens a gated store's `COMMITTED` file, found as `stored` (created with
/// the recovered last seq if missing), and sets the recovered index's
/// publish limit from it: never below the newest compacted segment's
/// horizon, since what a compaction or a snapshot wrote was shown already.
fn open_committed(
    dir: &Path,
    stored: Stored,
    recovered: &mut Recovered,
    options: &Options,
) -> Result<Committed> {
    let committed = Committed::open(dir, stored, recovered.last_seq, options.faults())?;
    let keydir = &mut recovered.keydir;
    keydir.limit = committed.lock().limit().max(keydir.horizon);
    Ok(committed)
}

impl Background {
    /// Starts the thread that leads group-commit rounds for
    /// [`Store::write_then`] writers when none of them waits to lead. On
    /// stop it commits what is still staged, so every completion is called.
    fn start_committer(inner: &Arc<Inner>, requests: Receiver<()>) -> Result<Background> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let inner = inner.clone();
        let thread = std::thread::Builder::new()
            .name("duokv-commit".into())
            .spawn(move || {
                loop {
                    crossbeam_channel::select! {
                        recv(stopped) -> _ => break,
                        recv(requests) -> _ => inner.commit.flush_round(&inner.shared),
                    }
                }
                while requests.try_recv().is_ok() {
                    inner.commit.flush_round(&inner.shared);
                }
            })
            .map_err(|e| Error::io("start the committer thread for", &PathBuf::from("store"), e))?;
        Ok(Background { stop, thread })
    }

    /// Starts the thread that syncs under `Sync::Every` and compacts when
    /// asked.
    fn start(inner: &Arc<Inner>, compaction_requests: Receiver<()>) -> Result<Background> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let ticks = match inner.shared.options.sync_policy() {
            Sync::Every(period) => crossbeam_channel::tick(period.max(Duration::from_millis(1))),
            Sync::Always | Sync::Never => crossbeam_channel::never(),
        };
        let inner = inner.clone();
        let thread = std::thread::Builder::new()
            .name("duokv-storage".into())
            .spawn(move || {
                loop {
                    crossbeam_channel::select! {
                        recv(stopped) -> _ => return,
                        // A failed sync poisons the store: nothing more to do.
                        recv(ticks) -> _ => { let _ = inner.commit.sync(); }
                        recv(compaction_requests) -> _ => {
                            if let Err(e) = inner.compact(None) {
                                error!("compaction of {} failed: {e}", inner.shared.dir.display());
                            }
                        }
                    }
                }
            })
            .map_err(|e| {
                Error::io(
                    "start the background thread for",
                    &PathBuf::from("store"),
                    e,
                )
            })?;
        Ok(Background { stop, thread })
    }
}

impl Inner {
    /// Runs one compaction; with `stop_after`, stops right after that step.
    fn compact(&self, stop_after: Option<Step>) -> Result<()> {
        self.compactor
            .compact(&self.shared, &self.commit, stop_after)
    }
}
