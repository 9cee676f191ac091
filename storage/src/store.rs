//! [`Store`]: the public face of the engine.
//!
//! Locks, and the order they are taken in (never the reverse):
//! `compacting` → `flush_gate` → `writer` → `keydir`.
//! - `writer` (a mutex) serialises appends: sequence numbers, the buffer,
//!   the active segment.
//! - `keydir` (a read-write lock) is what readers see. Under
//!   `Sync::Always` a record enters it only once it is durable.
//! - `flush_gate` is held by a group-commit leader from its write to its
//!   publish, and by compaction while it picks its inputs, so compaction
//!   never misses a record that is written but not yet published.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use log::{debug, error, warn};

use crate::error::{Error, Result};
use crate::format::{RecordKind, SEGMENT_HEADER_LEN, SegmentHeader, SegmentKind};
use crate::history::History;
use crate::iter::{RecordsSince, Snapshot, SnapshotEntry};
use crate::keydir::{Keydir, SegmentSlot};
use crate::lock::lock;
use crate::options::{Options, Sync};
#[doc(no_inline)]
pub use crate::record::Op;
use crate::record::{Record, check_limits};
use crate::recovery;
use crate::segment::{self, Segment};
use crate::writer::{Batch, Completion, Finished, Writer, Written};

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

/// Called with each run of records the store writes, at the point its
/// [`ObservePoint`] says: see [`Store::observe_writes`].
pub type WriteObserver = Box<dyn Fn(Vec<Record>) + Send + std::marker::Sync>;

/// When a [`WriteObserver`] is given a run of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObservePoint {
    /// Once the `pwrite` has succeeded, before the `fdatasync`: whatever
    /// the observer starts runs alongside the sync, and a record it is
    /// given may still be lost if the host crashes before the sync.
    Written,
    /// Once the records are durable (synced, under `Sync::Always`), before
    /// they are visible to readers.
    Durable,
}

/// Where a store keeps its [`WriteObserver`], if it has one.
struct ObserverSlot(OnceLock<(ObservePoint, WriteObserver)>);

impl std::fmt::Debug for ObserverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.get() {
            Some((at, _)) => write!(f, "ObserverSlot({at:?})"),
            None => f.write_str("ObserverSlot(empty)"),
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
    /// Compactions run since the store was opened.
    pub compactions: u64,
    /// Group-commit syncs since the store was opened (`Sync::Always`):
    /// writes divided by syncs is the mean batch size.
    pub syncs: u64,
}

/// What must be true of a key before a write goes ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Anything,
    Absent,
    Present,
}

/// One write on its way in: what it expects of its key, and the record it
/// writes.
#[derive(Debug, Clone, Copy)]
struct Write<'a> {
    expect: Expect,
    kind: RecordKind,
    key: &'a [u8],
    value: &'a [u8],
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

/// The shared state behind a `Store`, also held by its background thread.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) options: Options,
    pub(crate) keydir: RwLock<Keydir>,
    pub(crate) writer: Mutex<Writer>,
    pub(crate) flush_gate: Mutex<()>,
    pub(crate) compacting: Mutex<()>,
    pub(crate) compactions: AtomicU64,
    /// The history (see the `history` module).
    pub(crate) history: Mutex<History>,
    /// Told of every run of records once written (`observe_writes`).
    observer: ObserverSlot,
    syncs: AtomicU64,
    poisoned: AtomicBool,
    compaction_wanted: Sender<()>,
    /// Asks the committer thread to lead a group-commit round.
    commit_wanted: Sender<()>,
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
        fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
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
        let recovered = recovery::recover(
            &dir,
            options.segment_size_limit(),
            durable,
            options.faults(),
        )?;
        let history = crate::history::load_or_create(&dir, durable)?;
        let (compaction_wanted, compaction_requests) = crossbeam_channel::bounded(1);
        let (commit_wanted, commit_requests) = crossbeam_channel::bounded(1);
        let inner = Arc::new(Inner {
            history: Mutex::new(history),
            observer: ObserverSlot(OnceLock::new()),
            dir,
            options,
            keydir: RwLock::new(recovered.keydir),
            writer: Mutex::new(Writer::new(
                recovered.active,
                recovered.active_len,
                recovered.last_seq,
            )),
            flush_gate: Mutex::new(()),
            compacting: Mutex::new(()),
            compactions: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            compaction_wanted,
            commit_wanted,
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

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// The value of `key`, or `None` if it has none.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        Ok(self.get_with_seq(key)?.map(|(_, value)| value))
    }

    /// The value of `key` with the sequence number of the write that set it.
    pub fn get_with_seq(&self, key: impl AsRef<[u8]>) -> Result<Option<(u64, Vec<u8>)>> {
        let key = key.as_ref();
        let (segment, location) = {
            let keydir = self.inner.read_keydir();
            let Some(location) = keydir.entries.get(key).copied() else {
                return Ok(None);
            };
            let segment = keydir.segment_of(&location).ok_or_else(|| {
                Error::corrupt(
                    &self.inner.dir,
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
        self.inner.read_keydir().entries.contains_key(key.as_ref())
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
        self.inner.append(None, op.into())
    }

    /// Performs one write like [`write`](Self::write) without waiting for
    /// it: returns once the write is staged, and calls `done` with its
    /// sequence number once it is durable (as the sync policy says) and
    /// visible to readers, or with the error that failed it. `done` runs on
    /// whichever thread commits the write (this one, another writer's, or
    /// the store's committer thread): keep it short and never call back into
    /// the store's write path from it. Writes are numbered in the order
    /// their calls stage them, whichever way they were made.
    ///
    /// A server uses it to answer a client from the thread that made the
    /// write durable, rather than wake the client's own thread for it.
    pub fn write_then(&self, op: WriteOp<'_>, done: impl FnOnce(Result<u64>) + Send + 'static) {
        self.inner.append_then(op.into(), Box::new(done));
    }

    /// Writes a record whose sequence number a master gave: a slave applies
    /// the master's stream with it. `seq` must be the store's last plus one,
    /// else [`Error::OutOfOrder`] and nothing is written.
    pub fn apply(&self, seq: u64, op: &Op) -> Result<()> {
        let (kind, key, value) = op.parts();
        let write = Write {
            expect: Expect::Anything,
            kind,
            key,
            value,
        };
        self.inner.append(Some(seq), write).map(|_| ())
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
        self.inner.apply_batch(records)
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
        self.inner
            .install_snapshot(seq, history.clone(), &mut entries.into_iter())?;
        // Already the store's in memory, since the contents switched.
        self.inner.save_history(&history)
    }

    /// Takes a master's `history` (its ID and ancestors) before applying
    /// its log from where this store's ends. Allowed when this store's log
    /// is a prefix of that history's: the store is empty, of the same
    /// history, or of an ancestor that ended at or after this store's last
    /// sequence number (see [`History::has_prefix`]). Anything else would
    /// splice two histories: [`Error::OtherHistory`], and only
    /// [`install_snapshot`](Self::install_snapshot) replaces the contents.
    pub fn adopt_history(&self, history: &History) -> Result<()> {
        let last_seq = self.last_seq();
        let own = self.history_id();
        if last_seq != 0 && !history.has_prefix(own, last_seq) {
            return Err(Error::OtherHistory {
                own,
                last_seq,
                theirs: history.id,
            });
        }
        if *lock(&self.inner.history) == *history {
            return Ok(());
        }
        self.inner.set_history(history.clone())
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
        let _gate = lock(&self.inner.flush_gate);
        let writer = lock(&self.inner.writer);
        writer
            .active
            .sync_data()
            .inspect_err(|e| self.inner.poison(e))?;
        let last_seq = self.last_seq();
        let forked = lock(&self.inner.history).fork(last_seq);
        self.inner.set_history(forked.clone())?;
        drop(writer);
        Ok(forked)
    }

    /// The history this store's log belongs to: its ID and the histories
    /// it continues (see [`fork_history`](Self::fork_history)).
    pub fn history(&self) -> History {
        lock(&self.inner.history).clone()
    }

    /// The ID of the history this store's log belongs to: drawn at random
    /// when the store was created, drawn anew by
    /// [`fork_history`](Self::fork_history), taken from the master by
    /// [`adopt_history`](Self::adopt_history) or a snapshot install. Two
    /// stores with the same ID hold one history (one was filled from the
    /// other).
    pub fn history_id(&self) -> u64 {
        lock(&self.inner.history).id
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
        self.inner.observer.0.set((at, observer)).is_ok()
    }

    /// The newest sequence number readers can see; it survives restarts
    /// (0 for a new store).
    pub fn last_seq(&self) -> u64 {
        self.inner.read_keydir().published_seq
    }

    /// The records with a sequence number above `since`, oldest first, as
    /// the log holds them now. Replication catch-up reads this.
    ///
    /// Fails with [`Error::Compacted`] when compaction may have dropped
    /// some of them (send a [`snapshot`](Self::snapshot) instead), and with
    /// [`Error::UnknownSeq`] when `since` is newer than the store's last.
    pub fn records_since(&self, since: u64) -> Result<RecordsSince> {
        let keydir = self.inner.read_keydir();
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

    /// Every live key with its value and sequence number, oldest write
    /// first, as of [`Snapshot::seq`]. A full resync sends it.
    pub fn snapshot(&self) -> Snapshot {
        let keydir = self.inner.read_keydir();
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
        let keydir = self.inner.read_keydir();
        Stats {
            live_keys: keydir.entries.len() as u64,
            live_bytes: keydir.live_bytes,
            dead_bytes: keydir.dead_bytes(),
            segment_files: keydir.segments.len() as u64,
            last_seq: keydir.published_seq,
            compactions: self.inner.compactions.load(Ordering::Relaxed),
            syncs: self.inner.syncs.load(Ordering::Relaxed),
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
    pub fn compact_and_stop_after(&self, step: crate::compaction::Step) -> Result<()> {
        self.inner.compact(Some(step))
    }

    /// Forces everything written so far to disk, whatever the sync policy.
    /// A failure poisons the store, as every failed sync does.
    pub fn sync(&self) -> Result<()> {
        let active = lock(&self.inner.writer).active.clone();
        active.sync_data().inspect_err(|e| self.inner.poison(e))
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
        if self.inner.options.sync_policy() != Sync::Always
            && !self.inner.poisoned.load(Ordering::SeqCst)
            && let Err(e) = self.sync()
        {
            error!("final sync on close: {e}");
        }
    }
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
                        recv(requests) -> _ => inner.flush_round(),
                    }
                }
                while requests.try_recv().is_ok() {
                    inner.flush_round();
                }
            })
            .map_err(|e| Error::io("start the committer thread for", &PathBuf::from("store"), e))?;
        Ok(Background { stop, thread })
    }

    /// Starts the thread that syncs under `Sync::Every` and compacts when
    /// asked.
    fn start(inner: &Arc<Inner>, compaction_requests: Receiver<()>) -> Result<Background> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let ticks = match inner.options.sync_policy() {
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
                        recv(ticks) -> _ => inner.background_sync(),
                        recv(compaction_requests) -> _ => {
                            if let Err(e) = inner.compact(None) {
                                error!("compaction of {} failed: {e}", inner.dir.display());
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
    pub(crate) fn read_keydir(&self) -> RwLockReadGuard<'_, Keydir> {
        self.keydir
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn write_keydir(&self) -> RwLockWriteGuard<'_, Keydir> {
        self.keydir
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Saves `history` (durably unless the policy is `Sync::Never`) and
    /// makes it the store's.
    fn set_history(&self, history: History) -> Result<()> {
        self.save_history(&history)?;
        *lock(&self.history) = history;
        Ok(())
    }

    /// Writes `history` to the `HISTORY` file, durably unless the policy is
    /// `Sync::Never`.
    fn save_history(&self, history: &History) -> Result<()> {
        let durable = self.options.sync_policy() != Sync::Never;
        crate::history::save(&self.dir, history, durable)
    }

    /// The buffered records, for the observer, if there is one.
    fn records_to_observe(&self, writer: &Writer) -> Option<Vec<Record>> {
        self.observer.0.get().map(|_| writer.buffered_records())
    }

    /// Gives records to the observer if it wants them at `point`; else
    /// hands them back, for a later point.
    fn observe(&self, point: ObservePoint, records: Option<Vec<Record>>) -> Option<Vec<Record>> {
        match (self.observer.0.get(), records) {
            (Some((at, observer)), Some(records)) if *at == point => {
                if !records.is_empty() {
                    observer(records);
                }
                None
            }
            (_, records) => records,
        }
    }

    fn poison(&self, cause: &Error) {
        if !self.poisoned.swap(true, Ordering::SeqCst) {
            error!("{cause}: the store now refuses writes until it is reopened");
        }
    }

    fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    /// Refuses a write over the limits or to a poisoned store, before it
    /// takes the writer's lock.
    fn admit(&self, write: &Write<'_>) -> Result<()> {
        check_limits(write.key, write.value)?;
        if self.is_poisoned() {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// Checks what `write` expects of its key against the newest write to
    /// it, staged or visible: `None` if the write may go ahead, else the
    /// refusal, with the batch of the write it rests on if that write is
    /// not durable yet.
    fn refusal(&self, writer: &Writer, write: &Write<'_>) -> Option<(Error, Option<Arc<Batch>>)> {
        if write.expect == Expect::Anything {
            return None;
        }
        let (present, pending) = match writer.unpublished_state(write.key) {
            Some((present, batch)) => (present, Some(batch)),
            None => (self.read_keydir().entries.contains_key(write.key), None),
        };
        let refusal = match (write.expect, present) {
            (Expect::Absent, true) => Error::AlreadyExists,
            (Expect::Present, false) => Error::NotFound,
            _ => return None,
        };
        Some((refusal, pending))
    }

    /// Answers `write` with `refusal`. A refusal resting on a write that is
    /// not durable yet, nor visible to readers (`pending`), is answered only
    /// once it is, or a reader could see a state the refusal contradicts. If
    /// that write fails, the refusal was wrong: decide again. Call it with
    /// the writer's lock released.
    fn refuse(
        &self,
        seq: Option<u64>,
        write: Write<'_>,
        refusal: Error,
        pending: Option<Arc<Batch>>,
    ) -> Result<u64> {
        let Some(batch) = pending else {
            return Err(refusal);
        };
        match batch.wait(|| self.flush_round()) {
            Ok(()) => Err(refusal),
            Err(_) => self.append(seq, write),
        }
    }

    /// The write path shared by local writes (`seq` is `None`: the next
    /// number) and applied ones (`seq` given by the master).
    fn append(&self, seq: Option<u64>, write: Write<'_>) -> Result<u64> {
        self.admit(&write)?;
        let mut writer = lock(&self.writer);
        if let Some((refusal, pending)) = self.refusal(&writer, &write) {
            drop(writer);
            return self.refuse(seq, write, refusal, pending);
        }
        let expected = writer.last_seq + 1;
        let seq = match seq {
            Some(given) if given != expected => {
                return Err(Error::OutOfOrder {
                    expected,
                    got: given,
                });
            }
            Some(given) => given,
            None => expected,
        };
        writer.stage(seq, write.kind, write.key, write.value);
        self.commit(writer)?;
        Ok(seq)
    }

    /// Applies a run of a master's records with one commit (one sync under
    /// `Sync::Always`). Nothing is written unless every record is in limits
    /// and their sequence numbers follow the store's last one by one.
    pub(crate) fn apply_batch(&self, records: &[Record]) -> Result<()> {
        for record in records {
            let (_, key, value) = record.op.parts();
            check_limits(key, value)?;
        }
        if self.is_poisoned() {
            return Err(Error::Poisoned);
        }
        let mut writer = lock(&self.writer);
        for (i, record) in records.iter().enumerate() {
            let expected = writer.last_seq + 1 + i as u64;
            if record.seq != expected {
                return Err(Error::OutOfOrder {
                    expected,
                    got: record.seq,
                });
            }
        }
        for record in records {
            let (kind, key, value) = record.op.parts();
            writer.stage(record.seq, kind, key, value);
        }
        self.commit(writer)
    }

    /// Makes what is staged in the writer durable as its policy says, and
    /// visible: at once under `Sync::Never` and `Sync::Every`, through a
    /// group-commit batch under `Sync::Always`.
    fn commit(&self, mut writer: MutexGuard<'_, Writer>) -> Result<()> {
        if self.options.sync_policy() != Sync::Always {
            let records = self.records_to_observe(&writer);
            let written = writer.write_buffer()?;
            // No sync here: written is as durable as this policy makes it.
            let records = self.observe(ObservePoint::Written, records);
            self.observe(ObservePoint::Durable, records);
            self.publish(written);
            if writer.offset >= self.options.segment_size_limit() {
                self.roll_logged(&mut writer);
            }
            return Ok(());
        }
        let batch = writer.batch.clone();
        batch.blocked.fetch_add(1, Ordering::SeqCst);
        let lead = !writer.flushing;
        writer.flushing = true;
        drop(writer);
        if lead {
            self.flush_round();
        }
        batch.wait(|| self.flush_round())
    }

    /// The write path of [`Store::write_then`]: stages the record and
    /// returns; `done` is called once the record is durable and visible.
    /// If no leader is running this thread leads one round itself (so a
    /// lone writer pays no hand-over), and the committer thread leads the
    /// rounds that follow while only `write_then` writers are waiting.
    fn append_then(&self, write: Write<'_>, done: Completion) {
        if let Err(e) = self.admit(&write) {
            return done(Err(e));
        }
        let mut writer = lock(&self.writer);
        if let Some((refusal, pending)) = self.refusal(&writer, &write) {
            drop(writer);
            // A refusal resting on a write not yet durable blocks for it,
            // as in `append`: rare enough to block for.
            return done(self.refuse(None, write, refusal, pending));
        }
        let seq = writer.last_seq + 1;
        writer.stage(seq, write.kind, write.key, write.value);
        if self.options.sync_policy() != Sync::Always {
            let outcome = self.commit(writer).map(|()| seq);
            return done(outcome);
        }
        writer.batch.on_done(seq, done);
        let lead = !writer.flushing;
        writer.flushing = true;
        drop(writer);
        if lead {
            self.flush_round();
        }
    }

    /// One group-commit round under `Sync::Always`: write the buffer, sync
    /// once, publish, wake the batch, hand the lead on, and only then, with
    /// the next round free to start on another thread, call the batch's
    /// completions.
    fn flush_round(&self) {
        let (finished, committer_leads) = self.flush_round_gated();
        self.wake_committer(committer_leads);
        finished.complete();
    }

    /// The part of [`flush_round`](Self::flush_round) one thread at a time
    /// does: returns the batch's completions and whether the committer
    /// must lead next.
    fn flush_round_gated(&self) -> (Finished, bool) {
        let _gate = lock(&self.flush_gate);
        let mut writer = lock(&self.writer);
        let batch = std::mem::replace(&mut writer.batch, Arc::new(Batch::default()));
        if self.is_poisoned() {
            writer.discard_buffer();
            let committer_leads = writer.hand_off();
            drop(writer);
            return (batch.finish(Err(Error::Poisoned)), committer_leads);
        }
        let records = self.records_to_observe(&writer);
        let written = match writer.write_buffer() {
            Ok(written) => written,
            Err(e) => {
                let committer_leads = writer.hand_off();
                drop(writer);
                return (batch.finish(Err(e)), committer_leads);
            }
        };
        let segment = writer.active.clone();
        writer.in_flight = written;
        writer.in_flight_batch = Some(batch.clone());
        drop(writer);
        // Written, not yet synced: an observer that wants them now (a
        // master's replication) starts on them while this thread syncs.
        let records = self.observe(ObservePoint::Written, records);

        let synced = segment.sync_data();
        self.syncs.fetch_add(1, Ordering::Relaxed);
        if synced.is_ok() {
            self.observe(ObservePoint::Durable, records);
        }

        let mut writer = lock(&self.writer);
        let written = std::mem::take(&mut writer.in_flight);
        writer.in_flight_batch = None;
        match &synced {
            Ok(()) => {
                self.publish(written);
                // Roll only once the segment is synced: recovery accepts a
                // torn tail in the newest segment alone.
                if writer.offset >= self.options.segment_size_limit() {
                    self.roll_logged(&mut writer);
                }
            }
            Err(e) => self.poison(e),
        }
        drop(writer);
        // Wake the batch before handing the lead on: its writers, back at
        // once with their next write, join the next batch before it starts,
        // so batches stay large instead of alternating half and half.
        let finished = batch.finish(synced);
        let committer_leads = lock(&self.writer).hand_off();
        (finished, committer_leads)
    }

    /// Asks the committer thread to lead the next round, when `needed`.
    fn wake_committer(&self, needed: bool) {
        if needed {
            // A full channel means the committer is asked already.
            let _ = self.commit_wanted.try_send(());
        }
    }

    /// Makes written records visible to readers, in order, and asks for a
    /// compaction when the policy says so.
    fn publish(&self, written: Vec<Written>) {
        if written.is_empty() {
            return;
        }
        let mut keydir = self.write_keydir();
        for record in written {
            keydir.publish(&record.key, record.kind, record.location);
        }
        if let Some(policy) = self.options.compaction_policy() {
            let dead = keydir.dead_bytes();
            if dead >= policy.min_dead_bytes
                && dead as f64 >= policy.dead_ratio * keydir.total_bytes() as f64
            {
                // A full channel means a compaction is already asked for.
                let _ = self.compaction_wanted.try_send(());
            }
        }
    }

    /// Closes the active segment and starts the next; on failure the store
    /// keeps appending to the current one and tries again later.
    fn roll_logged(&self, writer: &mut Writer) {
        if let Err(e) = self.roll(writer) {
            warn!("cannot start a new segment, appending to the current one: {e}");
        }
    }

    /// Starts a new active segment. The old one is synced first, whatever
    /// the policy: recovery accepts a torn tail only in the newest segment,
    /// so a closed segment must be whole on disk before a newer one exists.
    pub(crate) fn roll(&self, writer: &mut Writer) -> Result<()> {
        let policy = self.options.sync_policy();
        if let Err(e) = writer.active.sync_data() {
            // A failed sync is never retried: the store stops writing.
            self.poison(&e);
            return Err(e);
        }
        let id = segment::next_log_id(writer.active.id);
        let header = SegmentHeader {
            kind: SegmentKind::Log,
            id,
            horizon: 0,
        };
        let path = self.dir.join(segment::file_name(id));
        let segment = Arc::new(Segment::create(
            &self.dir,
            path,
            header,
            policy != Sync::Never,
            self.options.faults(),
        )?);
        debug!("rolled to segment {}", segment.path.display());
        self.write_keydir()
            .segments
            .insert(id, SegmentSlot::empty(segment.clone()));
        writer.active = segment;
        writer.offset = SEGMENT_HEADER_LEN as u64;
        Ok(())
    }

    /// Under `Sync::Every`: one periodic sync of the active segment.
    fn background_sync(&self) {
        let active = lock(&self.writer).active.clone();
        if let Err(e) = active.sync_data() {
            self.poison(&e);
        }
    }
}
