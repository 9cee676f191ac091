//! How a store is opened: durability, segment size, compaction.
//!
//! Durability is stated, not implied. What an acknowledged write survives:
//!
//! | policy | a write returns after | survives a process crash | survives a power cut |
//! |---|---|---|---|
//! | [`Sync::Always`] | its bytes are `fdatasync`ed | yes | yes |
//! | [`Sync::Every`]`(d)` | its bytes are handed to the OS | yes | all but the last `d` |
//! | [`Sync::Never`] | its bytes are handed to the OS | yes | whatever the OS flushed |

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::fault::{FaultInjector, Faults};

/// Told how long each `fdatasync` of the log took (see
/// [`Options::on_log_sync`]).
pub type LogSyncObserver = Arc<dyn Fn(Duration) + Send + std::marker::Sync>;

/// When the store forces its log to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sync {
    /// Every write returns only after its record is on disk (`sync_data`).
    /// Writers that wait at the same time share one sync (group commit).
    /// Reads never see a record before it is durable.
    #[default]
    Always,
    /// A background thread syncs the log at least this often.
    Every(Duration),
    /// The store never syncs the log; the OS writes it back when it likes.
    Never,
}

/// When compaction runs on its own.
///
/// It runs when the dead bytes (overwritten values, deleted keys,
/// tombstones) are at least `min_dead_bytes` *and* at least `dead_ratio` of
/// the log. [`Store::compact`](crate::Store::compact) runs it at any time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionPolicy {
    /// The least number of dead bytes worth a compaction.
    pub min_dead_bytes: u64,
    /// The least share of the log (0.0 to 1.0) that must be dead.
    pub dead_ratio: f64,
}

impl Default for CompactionPolicy {
    /// Compact when over half the log is dead and that is over 64 MiB.
    fn default() -> Self {
        CompactionPolicy {
            min_dead_bytes: 64 * 1024 * 1024,
            dead_ratio: 0.5,
        }
    }
}

/// Settings for [`Store::open`](crate::Store::open), built in the usual
/// builder style:
///
/// ```
/// use std::time::Duration;
/// use duokv_storage::{Options, Sync};
///
/// let options = Options::default()
///     .sync(Sync::Every(Duration::from_millis(100)))
///     .segment_size(8 << 20);
/// assert_eq!(options.sync_policy(), Sync::Every(Duration::from_millis(100)));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    sync: Sync,
    segment_size: u64,
    compaction: Option<CompactionPolicy>,
    gated: bool,
    faults: Faults,
    log_sync: LogSyncHook,
}

/// An optional [`LogSyncObserver`], as the options and the write path
/// carry it: compared by identity, like the fault injector.
#[derive(Clone, Default)]
pub(crate) struct LogSyncHook(Option<LogSyncObserver>);

impl LogSyncHook {
    /// Runs `sync`, timed for the observer if there is one (two clock
    /// reads; none without it).
    pub(crate) fn time<T>(&self, sync: impl FnOnce() -> T) -> T {
        let Some(observe) = &self.0 else {
            return sync();
        };
        let start = std::time::Instant::now();
        let synced = sync();
        observe(start.elapsed());
        synced
    }
}

impl fmt::Debug for LogSyncHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "LogSyncHook(set)",
            None => "LogSyncHook(none)",
        })
    }
}

impl PartialEq for LogSyncHook {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Default for Options {
    /// `Sync::Always`, 64 MiB segments, automatic compaction with the
    /// default policy, visibility not gated.
    fn default() -> Self {
        Options {
            sync: Sync::Always,
            segment_size: 64 * 1024 * 1024,
            compaction: Some(CompactionPolicy::default()),
            gated: false,
            faults: Faults::default(),
            log_sync: LogSyncHook::default(),
        }
    }
}

impl Options {
    /// Sets the durability policy.
    pub fn sync(mut self, sync: Sync) -> Self {
        self.sync = sync;
        self
    }

    /// Sets the size at which the active segment is closed and a new one
    /// started. A segment may pass it by one record.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes.max(1);
        self
    }

    /// Sets when compaction runs on its own; `None` leaves it to explicit
    /// [`Store::compact`](crate::Store::compact) calls.
    pub fn compaction(mut self, policy: Option<CompactionPolicy>) -> Self {
        self.compaction = policy;
        self
    }

    /// Gates what readers see behind a publish limit: a record is written
    /// (and synced, as the policy says) at once, but reaches readers only
    /// once [`Store::publish_through`](crate::Store::publish_through) has
    /// raised the limit to its sequence number. Until then it is *held*.
    /// A slave turns it on so that its readers see only what its master
    /// has declared durable. The limit is kept in the store's `COMMITTED`
    /// file (see `FORMAT.md`). Off by default: an ungated store shows
    /// every record once it is durable, and writes no such file.
    pub fn gate_visibility(mut self, on: bool) -> Self {
        self.gated = on;
        self
    }

    /// Makes appends and syncs go through `injector` first, for fault
    /// tests (see [`FaultInjector`]).
    pub fn fault_injector(mut self, injector: Arc<dyn FaultInjector>) -> Self {
        self.faults = Faults::new(injector);
        self
    }

    /// Calls `observer` with how long each `fdatasync` of the log took:
    /// a group commit's, the background sync's of [`Sync::Every`], an
    /// explicit [`Store::sync`](crate::Store::sync)'s, and the one before a
    /// segment is closed. A server feeds it to its latency histogram. It
    /// runs on the syncing thread, after the sync and before the writers
    /// it makes durable are answered: keep it to a few atomic operations.
    /// Without one, a sync is not timed at all.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use duokv_storage::{Options, Store};
    ///
    /// # fn main() -> duokv_storage::Result<()> {
    /// let syncs = Arc::new(AtomicU64::new(0));
    /// let counted = syncs.clone();
    /// let options = Options::default().on_log_sync(Arc::new(move |_took| {
    ///     counted.fetch_add(1, Ordering::Relaxed);
    /// }));
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), options)?;
    /// store.put("a", "1")?; // Sync::Always: one group commit, one fdatasync
    /// assert_eq!(syncs.load(Ordering::Relaxed), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_log_sync(mut self, observer: LogSyncObserver) -> Self {
        self.log_sync = LogSyncHook(Some(observer));
        self
    }

    /// The fault hooks.
    pub(crate) fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The log-sync observer, if any.
    pub(crate) fn log_sync(&self) -> &LogSyncHook {
        &self.log_sync
    }

    /// The durability policy.
    pub fn sync_policy(&self) -> Sync {
        self.sync
    }

    /// The segment roll-over size in bytes.
    pub fn segment_size_limit(&self) -> u64 {
        self.segment_size
    }

    /// Whether readers see a record only once the publish limit reaches it
    /// (see [`gate_visibility`](Self::gate_visibility)).
    pub fn visibility_gated(&self) -> bool {
        self.gated
    }

    /// The automatic compaction policy, if any.
    pub fn compaction_policy(&self) -> Option<CompactionPolicy> {
        self.compaction
    }
}
