//! A seam for fault injection: tests make the store's appends and syncs fail
//! as a full disk or a failing device would, and check what the store does
//! (PostgreSQL's "fsyncgate": a failed `fsync` must never be retried and
//! reported as success).
//!
//! The hooks run right before the real system call; an `Err` they return is
//! what that call returns. A store opened without an injector pays one
//! branch per call.
//!
//! ```
//! use std::io;
//! use std::path::Path;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use duokv_storage::{Error, FaultInjector, Options, Store};
//!
//! #[derive(Debug, Default)]
//! struct FailingSyncs(AtomicBool);
//!
//! impl FaultInjector for FailingSyncs {
//!     fn before_sync(&self, _file: &Path) -> io::Result<()> {
//!         if self.0.load(Ordering::SeqCst) {
//!             return Err(io::Error::other("injected fsync failure"));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Error> {
//! let dir = tempfile::tempdir().unwrap();
//! let faults = Arc::new(FailingSyncs::default());
//! let store = Store::open(dir.path(), Options::default().fault_injector(faults.clone()))?;
//! store.put("a", "1")?;
//! faults.0.store(true, Ordering::SeqCst);
//! assert!(matches!(store.put("b", "2"), Err(Error::Io { .. })));
//! assert!(matches!(store.put("c", "3"), Err(Error::Poisoned))); // never retried
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// Hooks run before the store's appends and syncs.
pub trait FaultInjector: Send + Sync + fmt::Debug {
    /// Before `len` bytes are appended to `file`.
    fn before_append(&self, file: &Path, len: usize) -> io::Result<()> {
        let _ = (file, len);
        Ok(())
    }

    /// Before `file` (a segment) is `fdatasync`ed.
    fn before_sync(&self, file: &Path) -> io::Result<()> {
        let _ = file;
        Ok(())
    }

    /// Before `path` is `fsync`ed because it says what the store is: a
    /// `HISTORY.tmp` about to be renamed into place, a new segment's
    /// `.seg.tmp` holding only its header, or the store's directory after
    /// a file was created, renamed or removed in it. These syncs happen
    /// under every [`Sync`](crate::Sync) policy.
    fn before_metadata_sync(&self, path: &Path) -> io::Result<()> {
        let _ = path;
        Ok(())
    }
}

/// An optional injector, as the store carries it.
#[derive(Clone, Default)]
pub(crate) struct Faults(Option<Arc<dyn FaultInjector>>);

impl Faults {
    pub(crate) fn new(injector: Arc<dyn FaultInjector>) -> Self {
        Faults(Some(injector))
    }

    pub(crate) fn before_append(&self, file: &Path, len: usize) -> io::Result<()> {
        self.0
            .as_ref()
            .map_or(Ok(()), |f| f.before_append(file, len))
    }

    pub(crate) fn before_sync(&self, file: &Path) -> io::Result<()> {
        self.0.as_ref().map_or(Ok(()), |f| f.before_sync(file))
    }

    pub(crate) fn before_metadata_sync(&self, path: &Path) -> io::Result<()> {
        self.0
            .as_ref()
            .map_or(Ok(()), |f| f.before_metadata_sync(path))
    }
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(injector) => write!(f, "Faults({injector:?})"),
            None => f.write_str("Faults(none)"),
        }
    }
}

impl PartialEq for Faults {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}
