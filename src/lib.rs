//! duokv: a replicated key-value store with a master and a slave.
//!
//! The root crate will hold the server, replication, the `Client` and the
//! binaries. Today it re-exports the two libraries it is built on.
//!
//! # Layout
//!
//! - [`storage`]: the replica-local store, an append-only log with an
//!   in-memory index (the `duokv-storage` crate).
//! - [`protocol`]: the wire format (the `duokv-protocol` crate).
//!
//! # Example
//!
//! ```
//! use duokv::storage::{Options, Store};
//!
//! # fn main() -> Result<(), duokv::storage::Error> {
//! let dir = std::env::temp_dir().join(format!("duokv-doc-root-{}", std::process::id()));
//! let store = Store::open(&dir, Options::default())?;
//! store.put(b"greeting", b"hello")?;
//! assert_eq!(store.get(b"greeting")?, Some(b"hello".to_vec()));
//! # drop(store);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```

pub use duokv_protocol as protocol;
pub use duokv_storage as storage;
