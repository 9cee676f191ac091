//! duokv: a replicated key-value store with a master and a slave.
//!
//! This crate is the product: the server, replication, the [`Client`] and
//! the `duokv-server` binary. It is built on two pure libraries, re-exported
//! here: [`storage`], the replica-local store, and [`protocol`], the wire
//! format. The measuring tools (the `duokv` command line, the seed's
//! workload, stats and charts, the load generator, the deployer) are the
//! `duokv-tools` crate beside it, so that a program using [`Client`]
//! compiles nothing that plots, talks SSH or speaks to Redis.
//!
//! # Layout
//!
//! - [`client`]: [`Client`], CRUD as methods over one connection, and its
//!   [`ClientBuilder`]; reads under conditions ([`ReadWhen`]).
//! - [`session`]: [`Session`], read-your-writes and monotonic reads across
//!   replicas: the newest token seen, sent with every read.
//! - [`replica_set`]: [`ReplicaSet`](replica_set::ReplicaSet), a master and
//!   a slave used as one store: writes to the master, reads by choice,
//!   session reads that fall back to the master.
//! - `server` (private): [`Server`], one thread per connection over blocking
//!   `std::net`, with a connection cap and a graceful shutdown; configured
//!   by [`ServerConfig`] and [`RoleConfig`].
//! - `replication` (private): the master's replicator and the slave's stream
//!   handling; its settings are [`MasterSettings`], [`ReplicationMode`],
//!   [`Forward`] and [`OnDivergence`].
//! - [`token`]: [`Token`], a write's history id and seq, which a read on
//!   the slave can wait for (`Client::read_after`).
//! - [`cli`]: the replica's command line, shared by `duokv-server` and the
//!   toolbox's `duokv server`.
//! - [`auth`]: [`AuthToken`](auth::AuthToken), the shared secret of
//!   `--auth-token-file`.
//! - [`event_log`]: the per-write event log of `--event-log`, its writer
//!   and its reader.
//! - `role_record` (private): the `ROLE` file, the last role change (a
//!   switchover, a promotion, a step-down) kept across restarts.
//! - `power_cut` (private): the hidden `--test-power-cut-when` fault, a
//!   power cut at the store's next sync, for tests.
//! - [`discarded_writes`]: the discarded-writes file, the writes a slave
//!   saves before a full resync replaces them, its writer and its reader.
//! - [`tls`]: TLS settings, from PEM files: [`ServerTls`](tls::ServerTls)
//!   for a server (reloadable), [`ClientTls`](tls::ClientTls) for a client.
//! - [`transport`]: [`Transport`](transport::Transport), a connection's
//!   bytes in clear or through TLS, shared by the threads of one connection.
//! - [`clock`]: wall-clock timestamps in UNIX nanoseconds.
//! - [`duration`]: parsing `500ms`-style durations for command lines.
//! - [`error`]: [`Error`], one variant per server error code plus the local
//!   failures.
//! - [`storage`]: the `duokv-storage` crate (an append-only log with an
//!   in-memory index).
//! - [`protocol`]: the `duokv-protocol` crate (frames and messages).
//! - `src/bin/duokv-server.rs`: the replica's binary.
//!
//! # Example
//!
//! A server on a port the OS picks, and a client doing CRUD against it:
//!
//! ```
//! use duokv::{Client, Error, Server, ServerConfig};
//!
//! # fn main() -> Result<(), Error> {
//! let dir = tempfile::tempdir()?;
//! let server = Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.path()))?;
//! let addr = server.local_addr();
//! let stop = server.shutdown_handle();
//! let running = std::thread::spawn(move || server.run());
//!
//! let mut client = Client::connect(addr.to_string())?;
//! let receipt = client.create("greeting", "hello")?;
//! assert_eq!(receipt.seq, 1); // the write's ID
//! assert_eq!(client.read("greeting")?, Some(b"hello".to_vec()));
//! client.update("greeting", "hello again")?;
//! client.delete("greeting")?;
//! assert!(matches!(client.delete("greeting"), Err(Error::NotFound)));
//!
//! stop.shutdown();
//! running.join().unwrap()?;
//! # Ok(())
//! # }
//! ```

pub mod auth;
pub mod cli;
pub mod client;
pub mod clock;
pub mod discarded_writes;
#[doc(hidden)]
pub mod doctest;
pub mod duration;
pub mod error;
pub mod event_log;
mod power_cut;
pub mod replica_set;
mod replication;
mod role_record;
mod server;
pub mod session;
pub mod tls;
pub mod token;
pub mod transport;

pub use client::{Client, ClientBuilder, Pong, ReadOutcome, ReadWhen, WriteReceipt};
pub use duokv_protocol as protocol;
pub use duokv_storage as storage;
pub use error::{Error, Result};
pub use replication::slave::OnDivergence;
pub use replication::{Forward, MasterSettings, ReplicationMode};
pub use server::{RoleConfig, Server, ServerConfig, ShutdownHandle};
pub use session::Session;
pub use token::{ParseTokenError, Token};
