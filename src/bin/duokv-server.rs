//! `duokv-server`: one duokv replica.
//!
//! Serves the duokv protocol on `--listen` with its store in `--data-dir`,
//! as a standalone node, a master (`--role master --replica HOST:PORT`) or a
//! slave (`--role slave --master-addr HOST:PORT`).
//! SIGINT or SIGTERM stops it gracefully: no new connections, requests in
//! flight finish, the store is closed, exit code 0. The flags and what they
//! do are [`duokv::cli`]'s, shared with the toolbox's `duokv server`.

use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    duokv::cli::run(argh::from_env())
}
