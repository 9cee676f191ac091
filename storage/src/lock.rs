//! Taking the store's locks without giving up on a panic elsewhere.
//!
//! A leaf module: every part of the store locks through it, and it imports
//! none of them.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, going on if a thread panicked while holding it: the
/// state under our mutexes stays consistent at every unlock point.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
