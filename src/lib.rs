//! duokv: a replicated key-value store with a master and a slave.
//!
//! This crate holds the server, the [`Client`] and the binaries
//! (`duokv-server`, `duokv`); it is built on two pure libraries, re-exported
//! here: [`storage`], the replica-local store, and [`protocol`], the wire
//! format.
//!
//! # Layout
//!
//! - [`bench`](mod@bench): the seed's test client behind `duokv bench`.
//! - [`client`]: [`Client`], CRUD as methods over one connection.
//! - [`linearizability`]: a Wing–Gong–Lowe checker of recorded histories,
//!   for the fault suite.
//! - [`load`]: the load generator behind `duokv load`.
//! - [`perf_report`]: `duokv perf-report`, duokv and Redis side by side from
//!   the raw runs of `bench/compare.sh`, as a README and a chart.
//! - [`replica_set`]: [`ReplicaSet`](replica_set::ReplicaSet), a master and a
//!   slave used as one store: writes to the master, reads by choice.
//! - [`resp`]: [`RespClient`](resp::RespClient), a minimal blocking Redis
//!   (RESP2) client, so that `duokv load` can drive Redis too.
//! - [`replication`]: the master's [`Replicator`](replication::Replicator)
//!   and the slave's stream handling.
//! - [`run_dir`]: the files of a measured run (`run.json`, `client.csv`,
//!   the event logs), shared by `duokv bench` and `duokv stats`.
//! - [`server`]: [`Server`], one thread per connection over blocking
//!   `std::net`, with a connection cap and a graceful shutdown.
//! - [`stats`]: `duokv stats`, latency and staleness of run directories as
//!   a report, JSON and SVG charts.
//! - [`clock`]: wall-clock timestamps in UNIX nanoseconds.
//! - [`event_log`]: the per-write event log of `--event-log`.
//! - [`demo`]: `duokv demo`, master and slave as child processes and the
//!   workload in both modes.
//! - [`deploy`]: `duokv-deploy`, the seed's workload on two SSH hosts.
//! - [`duration`]: parsing `500ms`-style durations for the command lines.
//! - [`error`]: [`Error`], one variant per server error code plus the local
//!   failures.
//! - [`storage`]: the `duokv-storage` crate (an append-only log with an
//!   in-memory index).
//! - [`protocol`]: the `duokv-protocol` crate (frames and messages).
//! - `src/bin/duokv-server.rs` and `src/bin/duokv.rs`: the binaries.
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
pub mod bench;
pub mod client;
pub mod clock;
pub mod demo;
pub mod deploy;
#[doc(hidden)]
pub mod doctest;
pub mod duration;
pub mod error;
pub mod event_log;
pub mod linearizability;
pub mod load;
pub mod perf_report;
pub mod replica_set;
pub mod replication;
pub mod resp;
pub mod run_dir;
pub mod server;
pub mod stats;

pub use client::{Client, ClientBuilder, Pong, WriteReceipt};
pub use duokv_protocol as protocol;
pub use duokv_storage as storage;
pub use error::{Error, Result};
pub use server::{RoleConfig, Server, ServerConfig, ShutdownHandle};
