//! `duokv-storage`: the replica-local store of duokv.
//!
//! Each duokv replica keeps its data in one [`Store`]: a Bitcask-like engine
//! with an append-only log of CRC-checked records on disk and an in-memory
//! index (key → where its newest record lies) that is rebuilt from the log
//! when the store opens. Reads are served from the files with positional
//! reads; writes append.
//!
//! The crate is a pure library: it knows nothing of sockets or CLIs.
//!
//! # From the top
//!
//! ```
//! use duokv_storage::{Error, Options, Store};
//!
//! # fn main() -> Result<(), Error> {
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path(), Options::default())?;
//!
//! let seq = store.create(b"user:1", b"ada")?; // insert only if absent
//! assert_eq!(seq, 1); // every write gets the next sequence number: its ID
//! assert!(matches!(store.create(b"user:1", b"bob"), Err(Error::AlreadyExists)));
//!
//! store.update(b"user:1", b"ada lovelace")?; // only if present
//! store.put(b"user:2", b"grace")?; // upsert
//! assert_eq!(store.get(b"user:1")?, Some(b"ada lovelace".to_vec()));
//! assert!(store.delete(b"user:2")?);
//! assert_eq!(store.last_seq(), 4);
//!
//! // Reopening rebuilds the index from the log.
//! drop(store);
//! let store = Store::open(dir.path(), Options::default())?;
//! assert_eq!(store.get(b"user:1")?, Some(b"ada lovelace".to_vec()));
//! assert_eq!(store.get(b"user:2")?, None);
//! assert_eq!(store.last_seq(), 4);
//! # Ok(())
//! # }
//! ```
//!
//! # Replication support
//!
//! A master's writes get consecutive sequence numbers. A slave writes the
//! master's records with [`Store::apply`] or, a run at a time with one
//! sync, [`Store::apply_batch`]; both refuse a sequence number that does not
//! follow the last one. Catch-up reads [`Store::records_since`]; when
//! compaction has already dropped what is needed, [`Store::snapshot`] gives
//! every live key instead, and the slave replaces its contents with it
//! through [`Store::install_snapshot`].
//!
//! A master forwards each batch before its own sync, so a slave may hold
//! writes its master then loses in a power cut. A slave that must show
//! only what its master has declared durable opens its store with
//! [`Options::gate_visibility`]: applied records are written and synced at
//! once but **held** from readers until [`Store::publish_through`] raises
//! the publish limit to them (the master's commit index).
//! [`Store::applied_seq`] says where the log ends, held records included.
//!
//! ```
//! use duokv_storage::{Op, Options, Record, Store};
//!
//! # fn main() -> Result<(), duokv_storage::Error> {
//! let dir = tempfile::tempdir().unwrap();
//! let slave = Store::open(dir.path(), Options::default().gate_visibility(true))?;
//! let op = Op::Put { key: b"user:1".to_vec(), value: b"ada".to_vec() };
//! slave.apply_batch(&[Record { seq: 1, op }])?; // written and synced
//! assert_eq!(slave.get(b"user:1")?, None); // but held
//! assert_eq!((slave.last_seq(), slave.applied_seq()), (0, 1));
//!
//! // The master says its log is durable through seq 1.
//! assert_eq!(slave.publish_through(1)?, 1);
//! assert_eq!(slave.get(b"user:1")?, Some(b"ada".to_vec()));
//! # Ok(())
//! # }
//! ```
//!
//! # Durability
//!
//! Chosen with [`Sync`] in [`Options`]; see the [`options`] module for what
//! an acknowledged write survives under each policy. Under the default,
//! [`Sync::Always`], a write returns only once its record is `fdatasync`ed,
//! and writers that wait at the same time share one sync (group commit).
//! [`Store::write_then`] stages a write and returns at once instead: its
//! callback runs, with the write's sequence number, on the thread that
//! made it durable (a writer leading the round, or one of the store's two
//! committer threads, which lead rounds no waiting writer is there to
//! lead). A server answers clients from it rather than wake a thread per
//! write.
//! Creating, renaming or removing a file also syncs the directory. A failed
//! sync poisons the store: it refuses writes ([`Error::Poisoned`]) rather
//! than retry and pretend.
//!
//! # Layout
//!
//! From the public face down; no module imports one that imports it back.
//!
//! - [`store`]: [`Store`], its public methods and the threads that drive
//!   it (the background thread, the committer threads).
//! - `group_commit`: the write path: the writer, the batches and the
//!   leader of group commit, observers, poisoning.
//! - `compaction`: rewriting live records and installing a snapshot, in a
//!   crash-safe order.
//! - `recovery`: rebuilding the index on open, cutting a torn final batch.
//! - [`repair`]: the offline repair of damage recovery refuses
//!   ([`repair::scan`], [`repair::fix`]), and [`TailCut`].
//! - `shared`: what every part of a store reads: its directory, options,
//!   index (behind its lock) and history.
//! - [`iter`]: [`RecordsSince`] and [`Snapshot`], reading the log back out.
//! - `keydir`: the in-memory index, the records it holds back from readers
//!   in a gated store, and the table of open segments.
//! - `committed`: a gated store's `COMMITTED` file, its publish limit.
//! - `segment`: segment files, their names, reading records back.
//! - `tail`: [`TailCut`] and the rule that decides what of the newest
//!   segment recovery may cut, shared by recovery and the repair report.
//! - [`history`]: [`History`], the history ID and its ancestors in the
//!   `HISTORY` file.
//! - [`options`]: [`Options`], [`Sync`], [`CompactionPolicy`].
//! - [`record`]: [`Op`] and [`Record`], a write as it is stored and
//!   replicated, and the limits on its key and value.
//! - [`format`](mod@format): the bytes of segment headers and records
//!   (`FORMAT.md` draws them).
//! - [`fault`]: the [`FaultInjector`] seam that fault tests fail appends
//!   and syncs through.
//! - [`error`]: [`Error`], the one error type.
//! - `lock`: taking a mutex whatever a panicking thread left behind.
//!
//! # Files
//!
//! A store's directory holds `LOCK` (held with `flock` while open, so a
//! second open fails with [`Error::Locked`]), `HISTORY` (the store's history
//! ID, [`Store::history_id`]), in a store whose visibility is gated
//! `COMMITTED` (the publish limit, [`Store::publish_limit`]), and segment
//! files named by a twenty-digit id,
//! `00000000000000000002.seg`. Log segments have even ids; a compacted
//! segment has an odd id and replaces every segment below it.

#![forbid(unsafe_code)]

mod committed;
mod compaction;
pub mod error;
pub mod fault;
pub mod format;
mod group_commit;
pub mod history;
pub mod iter;
mod keydir;
mod lock;
pub mod options;
pub mod record;
mod recovery;
pub mod repair;
mod segment;
mod shared;
pub mod store;
mod tail;

#[doc(hidden)]
pub use compaction::Step as CompactionStep;
pub use error::{Error, Field, Result};
pub use fault::FaultInjector;
pub use format::{MAX_KEY_LEN, MAX_VALUE_LEN};
pub use history::{Ancestor, History, Kinship};
pub use iter::{RecordsSince, Snapshot, SnapshotEntry, TimedRecords};
pub use options::{CompactionPolicy, LogSyncObserver, Options, Sync};
pub use record::{Op, Record};
pub use repair::TailCut;
pub use store::{DurableObserver, ObservePoint, Stats, Store, WriteObserver, WriteOp};
