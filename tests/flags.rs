//! `duokv-server`'s flags, checked at start (issue 16): every flag that
//! would make a replica misbehave (drop every client, redial itself
//! forever, ignore a flag it was given, clamp a value silently) is refused
//! with exit code 2 and a message that names the flag and what it takes,
//! before anything is bound, opened or created: the data dir and the event
//! log do not exist after a refusal. A port already taken fails before the
//! data dir is touched too. And what a new store says at start.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::Output;

use common::{ServerProcess, free_port, run_with_deadline, server_command};

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

/// Runs the server with `args` (and `--listen 127.0.0.1:0` unless they
/// name one), asserts it refused them with exit code 2 before creating
/// anything, and that its message says each of `says`.
fn assert_refused(args: &[&str], says: &[&str]) {
    let dir = tempfile::tempdir().expect("a temporary dir");
    let mut all = args.to_vec();
    if !args.contains(&"--listen") {
        all.extend(["--listen", "127.0.0.1:0"]);
    }
    let out = run_in(dir.path(), &all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    for said in says {
        assert!(stderr.contains(said), "{args:?}: no `{said}` in:\n{stderr}");
    }
    assert!(
        !dir.path().join("data").exists() && !dir.path().join("events.csv").exists(),
        "{args:?} created files before it was refused"
    );
}

#[test]
fn zero_or_absurd_durations_are_refused_with_the_range() {
    for flag in ["--idle-timeout", "--frame-timeout", "--drain-timeout"] {
        for value in ["0s", "0ms", "500us", "25h", "100000000s"] {
            assert_refused(&[flag, value], &[flag, "1ms to 24h"]);
        }
    }
    let replica = "127.0.0.1:1";
    for value in ["0s", "25h"] {
        assert_refused(
            &[
                "--role",
                "master",
                "--replica",
                replica,
                "--sync-timeout",
                value,
            ],
            &["--sync-timeout", "1ms to 24h"],
        );
        assert_refused(
            &[
                "--role",
                "slave",
                "--master-addr",
                replica,
                "--probe-interval",
                value,
            ],
            &["--probe-interval", "1ms to 24h"],
        );
    }
}

#[test]
fn numbers_out_of_their_range_are_refused_not_clamped() {
    for ratio in ["7", "-1", "1.01", "NaN"] {
        assert_refused(
            &["--compact-dead-ratio", ratio],
            &["--compact-dead-ratio", "0.0 to 1.0"],
        );
    }
    assert_refused(&["--fsync", "every:0"], &["--fsync every:0", "MS >= 1"]);
    assert_refused(
        &["--max-connections", "0"],
        &["--max-connections", "1 to 1000000"],
    );
    for bytes in ["0", "63", "33554433"] {
        assert_refused(
            &["--max-frame-bytes", bytes],
            &["--max-frame-bytes", "64 to 33554432"],
        );
    }
}

/// What argh refuses (not a number, an unknown word) exits 2 as well.
#[test]
fn flags_that_do_not_parse_exit_with_the_usage_code() {
    assert_refused(&["--max-connections", "many"], &["--max-connections"]);
    assert_refused(
        &["--fsync", "sometimes"],
        &["--fsync", "always, every:MS or never"],
    );
    assert_refused(&["--idle-timeout", "soon"], &["--idle-timeout"]);
    assert_refused(
        &["--role", "leader"],
        &["--role", "standalone, master or slave"],
    );
}

#[test]
fn peer_addresses_need_a_host_and_a_port() {
    for (addr, says) in [
        ("notanaddr", "has no port"),
        ("slave:", "has no port"),
        ("slave:0", "port `0`"),
        ("slave:99999", "port `99999`"),
        ("127.0.0.1:0", "port 0"),
        ("10.0.0.300:7070", "not an IPv4 address"),
        ("::1", "[::1]:7070"),
    ] {
        assert_refused(
            &["--role", "master", "--replica", addr],
            &["--replica", says, "HOST:PORT"],
        );
        assert_refused(
            &["--role", "slave", "--master-addr", addr],
            &["--master-addr", says, "HOST:PORT"],
        );
    }
}

/// A node told to replicate to, or follow, its own listen address would
/// dial itself forever: the same port on the same IP, on `localhost`, or
/// on `0.0.0.0` (which dials this machine), or any loopback address when
/// it listens on every interface.
#[test]
fn a_node_is_not_its_own_peer() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let every = format!("0.0.0.0:{port}");
    for (listen, peer) in [
        (&listen, format!("127.0.0.1:{port}")),
        (&listen, format!("localhost:{port}")),
        (&listen, format!("0.0.0.0:{port}")),
        (&every, format!("127.0.0.1:{port}")),
    ] {
        assert_refused(
            &["--listen", listen, "--role", "master", "--replica", &peer],
            &["--replica", "own --listen address", "the slave's address"],
        );
        assert_refused(
            &[
                "--listen",
                listen,
                "--role",
                "slave",
                "--master-addr",
                &peer,
            ],
            &[
                "--master-addr",
                "own --listen address",
                "the master's address",
            ],
        );
    }
}

#[test]
fn a_flag_of_another_role_is_refused() {
    let peer = "127.0.0.1:1";
    let master_flags: [&[&str]; 5] = [
        &["--replica", peer],
        &["--replication", "async"],
        &["--sync-timeout", "1s"],
        &["--sync-fallback", "async"],
        &["--forward", "durable"],
    ];
    let slave_flags: [&[&str]; 3] = [
        &["--master-addr", peer],
        &["--on-divergence", "resync"],
        &["--probe-interval", "10ms"],
    ];
    for flag in master_flags {
        assert_refused(flag, &[flag[0], "--role master", "standalone"]);
        let mut slave = vec!["--role", "slave", "--master-addr", peer];
        slave.extend(flag);
        assert_refused(
            &slave,
            &[flag[0], "--role master", "this node is --role slave"],
        );
    }
    for flag in slave_flags {
        assert_refused(flag, &[flag[0], "--role slave", "standalone"]);
        let mut master = vec!["--role", "master", "--replica", peer];
        master.extend(flag);
        assert_refused(
            &master,
            &[flag[0], "--role slave", "this node is --role master"],
        );
    }
}

/// Every problem is said at once, not one per attempt.
#[test]
fn every_problem_is_named_at_once() {
    assert_refused(
        &[
            "--idle-timeout",
            "0s",
            "--max-connections",
            "0",
            "--probe-interval",
            "1ms",
        ],
        &["--idle-timeout", "--max-connections", "--probe-interval"],
    );
}

#[test]
fn a_data_dir_that_is_a_file_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("a temporary dir");
    let file = dir.path().join("file");
    std::fs::write(&file, "not a store").expect("write a file");
    for data in [file.clone(), file.join("store")] {
        let out = run_with_deadline(server_command().args([
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data.display().to_string(),
        ]));
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--data-dir") && stderr.contains("is a file, not a directory"),
            "{stderr}"
        );
    }
    assert_eq!(std::fs::read(&file).expect("read"), b"not a store");
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
