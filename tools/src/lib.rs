//! duokv-tools: the toolbox around duokv, to run, measure and understand a
//! master and a slave.
//!
//! The product, the `duokv` crate, is the server, replication and the
//! [`Client`](duokv::Client). Everything here measures or drives it, and
//! keeps its heavier dependencies (charts, statistics, SSH and OpenSSL) out
//! of the product's build, as redb keeps its benchmarks in a crate of their
//! own.
//!
//! # Layout
//!
//! - [`bench`](mod@bench): the assignment's test client behind `duokv bench`: one
//!   update a second to one key, each write's start and commit timestamps,
//!   the replicas' clocks probed before and after.
//! - [`certs`]: `duokv certs`, a fresh certificate authority and a
//!   certificate per host, for servers and clients that speak TLS.
//! - [`conditional`]: a read under conditions (after a write, under a
//!   staleness bound), asked so that the client knows whether the replica
//!   had to wait; the bench's probe and the load generator use it.
//! - [`run_dir`]: the files of a measured run (`run.json`, `client.csv`,
//!   the event logs), shared by `duokv bench`, `duokv stats` and the
//!   deployer.
//! - [`stats`]: `duokv stats`, latency and staleness of run directories as
//!   a report, JSON and SVG charts.
//! - [`demo`]: `duokv demo`, a master and a slave as child processes (this
//!   very executable as `duokv server`) and the workload in both modes.
//! - [`failover_bench`]: `duokv bench-failover`, writes across planned
//!   switchovers and promotions: how long they stop, as the server and as
//!   the clients see it, and whether an acknowledged write is lost.
//! - [`load`]: the load generator behind `duokv load`, for duokv or Redis.
//! - [`replay`]: `duokv replay-discarded`, a slave's discarded-writes file
//!   sent to a master as ordinary writes.
//! - [`resp`]: [`RespClient`](resp::RespClient), a minimal blocking Redis
//!   (RESP2) client, so that `duokv load` can drive Redis too.
//! - [`perf_report`]: `duokv perf-report`, duokv and Redis side by side from
//!   the raw runs of `bench/compare.sh`, as a README and a chart.
//! - `deploy` (with the `deploy` feature, which links OpenSSL):
//!   `duokv-deploy`, the assignment's workload on two SSH hosts.
//! - [`error`]: [`Error`], what the tools report.
//! - `src/bin/duokv.rs` (the command line: CRUD, `server`, `demo`, `bench`,
//!   `stats`, `load`, `perf-report`) and `src/bin/duokv-deploy.rs` (with the
//!   `deploy` feature).
//!
//! # Example
//!
//! A short closed-loop load against a replica, as `duokv load` runs it
//! (here a throwaway standalone server on a free loopback port):
//!
//! ```
//! use std::time::Duration;
//! use duokv_tools::load::{self, LoadConfig};
//!
//! # fn main() -> duokv_tools::Result<()> {
//! # let server = duokv::doctest::server();
//! let report = load::run(LoadConfig {
//!     write_ratio: 0.5,
//!     keys: 100,
//!     value_size: 16,
//!     ..LoadConfig::new(server.addr(), 2, Duration::from_millis(200))
//! })?;
//! assert!(report.ops > 0);
//! println!("{}", report.to_text());
//! # Ok(())
//! # }
//! ```

pub mod bench;
pub mod certs;
pub mod conditional;
pub mod demo;
#[cfg(feature = "deploy")]
pub mod deploy;
pub mod error;
pub mod failover_bench;
pub mod load;
pub mod perf_report;
pub mod replay;
pub mod resp;
pub mod run_dir;
pub mod stats;

pub use error::{Error, Result};
