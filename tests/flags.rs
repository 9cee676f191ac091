//! How `duokv-server` starts: a port already taken fails the start before
//! the data dir is touched, and what a new store says.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::Output;

use common::{ServerProcess, run_with_deadline, server_command};

/// Runs the server with `args` after `--data-dir` and `--event-log` paths
/// under `dir` that do not exist yet, to completion.
fn run_in(dir: &Path, args: &[&str]) -> Output {
    let data = dir.join("data");
    let events = dir.join("events.csv");
    run_with_deadline(server_command().args(args).args([
        "--data-dir",
        &data.display().to_string(),
        "--event-log",
        &events.display().to_string(),
    ]))
}

/// A port already taken fails the start before the data dir is created
/// (the listener is bound first), so a mistyped port leaves no store.
#[test]
fn a_busy_port_fails_before_the_data_dir_is_created() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("local_addr").to_string();
    let dir = tempfile::tempdir().expect("a temporary dir");
    let out = run_in(dir.path(), &["--listen", &addr]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&addr), "{stderr}");
    assert!(
        !dir.path().join("data").exists(),
        "the data dir was created"
    );
    assert!(
        !dir.path().join("events.csv").exists(),
        "the event log was created"
    );
}

/// A new store starts a new history, said as such (not as continuing
/// another "after seq 0"); a store with writes continues its history
/// after its last write.
#[test]
fn a_new_store_says_new_history() {
    let mut server = ServerProcess::start(&[]);
    let log = server.log();
    assert!(log.contains("new history"), "{log}");
    assert!(!log.contains("after seq 0"), "{log}");
    server.client().put("k", "v").expect("put");
    server.sigterm();
    server.restart();
    let log = server.log();
    assert!(log.contains("after seq 1"), "{log}");
}
