//! `duokv-server`: one duokv replica.
//!
//! Serves the duokv protocol on `--listen` with its store in `--data-dir`,
//! as a standalone node, a master (`--role master --replica HOST:PORT`) or a
//! slave (`--role slave --master-addr HOST:PORT`).
//! SIGINT or SIGTERM stops it gracefully: no new connections, requests in
//! flight finish, the store is closed, exit code 0. The flags and what they
//! do are [`duokv::cli`]'s, shared with the toolbox's `duokv server`; flags
//! that make no replica, whether argh or [`duokv::cli::run`] refuses them,
//! exit with code 2, as `duokv server`'s do.

use std::process::ExitCode;

use argh::FromArgs;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut argv = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(arg) => argv.push(arg),
            Err(arg) => {
                eprintln!(
                    "`{}` is not UTF-8: argh reads only UTF-8 flags",
                    arg.display()
                );
                return ExitCode::from(2);
            }
        }
    }
    let flags: Vec<&str> = argv.iter().map(String::as_str).collect();
    match duokv::cli::ServerArgs::from_args(&["duokv-server"], &flags) {
        Ok(args) => duokv::cli::run(args),
        Err(early) if early.status.is_ok() => {
            println!("{}", early.output);
            ExitCode::SUCCESS
        }
        Err(early) => {
            eprintln!(
                "{}\nRun duokv-server --help for more information.",
                early.output
            );
            ExitCode::from(2)
        }
    }
}
