//! `duokv bench-failover` end to end: the real binary starts its own pair
//! (or drives one started here), swaps the roles under write load, and
//! reports; each test checks the report's structure, that the roles really
//! alternated, that the clients saw both sides of each change, and that no
//! acknowledged write was lost.
//!
//! The runs are small (4 clients, 2 switchovers, 200 ms of load between
//! changes): a check that the tool measures what it says, not a
//! measurement (see `results/switchover/`).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::Command;

use serde_json::Value;

use common::{Pair, run_with_deadline};

/// Runs `duokv bench-failover ARGS --json`, which must succeed, and parses
/// its report.
fn bench_failover(args: &[&str]) -> Value {
    let output = run_with_deadline(
        Command::new(env!("CARGO_BIN_EXE_duokv"))
            .arg("bench-failover")
            .args(args)
            .arg("--json"),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "duokv bench-failover {args:?} failed: {}\nstdout:\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("bench-failover --json printed no JSON ({e}):\n{stdout}"))
}

fn number(value: &Value, what: &str) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {value}"))
}

/// The checks every run shares: `switchovers` changes, each a success that
/// alternated the master, with a server window and a client gap; writes
/// acknowledged on `clients * 64` keys; none lost.
fn assert_switchovers(report: &Value, switchovers: usize, clients: u64) {
    let list = report["switchovers"].as_array().expect("a switchover list");
    assert_eq!(list.len(), switchovers, "{report:#}");
    for (i, s) in list.iter().enumerate() {
        assert!(s["error"].is_null(), "switchover {i} failed: {report:#}");
        assert_ne!(s["from"], s["to"], "{report:#}");
        if i > 0 {
            assert_eq!(
                s["from"],
                list[i - 1]["to"],
                "the master alternates: {report:#}"
            );
        }
        let window = number(&s["write_window_ms"], "write_window_ms");
        let gap = number(&s["client_gap_ms"], "client_gap_ms");
        // The clients' gap spans writes acknowledged by two masters: the
        // new one cannot acknowledge before the old one stopped.
        assert!(window > 0.0 && gap > 0.0, "switchover {i}: {report:#}");
        // Every writer was writing when the fence went up: at least one
        // write had to be retried.
        assert!(
            s["retried_writes"].as_u64() >= Some(1),
            "switchover {i}: {report:#}"
        );
    }
    let window = &report["write_window"];
    assert_eq!(window["count"], switchovers, "{report:#}");
    assert!(
        number(&window["p50_ms"], "p50") <= number(&window["max_ms"], "max"),
        "{report:#}"
    );
    assert_eq!(report["switchover_gap"]["count"], switchovers, "{report:#}");
    let attempts = &report["attempts"];
    assert!(attempts["acknowledged"].as_u64() > Some(0), "{report:#}");
    assert_eq!(attempts["other"], 0, "{report:#}");
    let verification = &report["verification"];
    assert_eq!(verification["keys_checked"], clients * 64, "{report:#}");
    assert_eq!(verification["lost"], 0, "{report:#}");
    assert_eq!(
        verification["master"],
        list.last().expect("a switchover")["to"],
        "the final master is the last switchover's: {report:#}"
    );
}

#[test]
fn switchovers_of_a_pair_it_starts_lose_nothing() {
    let report = bench_failover(&[
        "--switchovers",
        "2",
        "--clients",
        "4",
        "--interval",
        "200ms",
        "--fsync",
        "never",
    ]);
    assert_eq!(report["config"]["pair"], "spawned", "{report:#}");
    assert_eq!(report["config"]["mode"], "sync", "{report:#}");
    assert_switchovers(&report, 2, 4);
    assert!(report["promotions"].as_array().is_some_and(Vec::is_empty));
}

#[test]
fn switchovers_of_a_running_pair_lose_nothing() {
    let pair = Pair::start(
        &["--replication", "async", "--fsync", "never"],
        &["--fsync", "never"],
    );
    pair.wait_link_up();
    let (master, slave) = (pair.master.addr(), pair.slave.addr());
    let report = bench_failover(&[
        "--master",
        &master,
        "--slave",
        &slave,
        "--switchovers",
        "2",
        "--clients",
        "4",
        "--interval",
        "200ms",
    ]);
    assert_eq!(report["config"]["pair"], "running", "{report:#}");
    assert_switchovers(&report, 2, 4);
    assert_eq!(report["switchovers"][0]["from"], master.as_str());
    assert_eq!(report["switchovers"][0]["to"], slave.as_str());
}

/// A sync promotion: the killed master is restarted at once (a sync master
/// acknowledges nothing without its slave), and no acknowledged write may
/// be lost.
#[test]
fn a_sync_promotion_after_a_kill_loses_nothing() {
    let report = bench_failover(&[
        "--switchovers",
        "0",
        "--promotions",
        "1",
        "--clients",
        "4",
        "--interval",
        "200ms",
        "--fsync",
        "never",
    ]);
    let promotions = report["promotions"].as_array().expect("a promotion list");
    assert_eq!(promotions.len(), 1, "{report:#}");
    let p = &promotions[0];
    assert!(p["error"].is_null(), "{report:#}");
    assert_ne!(p["killed"], p["promoted"], "{report:#}");
    assert_eq!(p["restarted_before_first_write"], true, "{report:#}");
    let to_first = number(&p["to_first_write_ms"], "to_first_write_ms");
    let promote_ms = number(&p["promote_ms"], "promote_ms");
    assert!(promote_ms > 0.0 && to_first > 0.0, "{report:#}");
    assert!(
        number(&p["client_gap_ms"], "client_gap_ms") > to_first,
        "the gap starts before the kill, the figure at the promote call: {report:#}"
    );
    assert_eq!(report["promote_to_first_write"]["count"], 1, "{report:#}");
    assert_eq!(
        report["verification"]["master"], p["promoted"],
        "{report:#}"
    );
    assert_eq!(report["verification"]["lost"], 0, "{report:#}");
    assert!(
        report["attempts"]["connection"].as_u64() > Some(0),
        "{report:#}"
    );
}

#[test]
fn promotions_need_a_pair_it_starts() {
    let output = run_with_deadline(Command::new(env!("CARGO_BIN_EXE_duokv")).args([
        "bench-failover",
        "--master",
        "127.0.0.1:1",
        "--slave",
        "127.0.0.1:2",
        "--promotions",
        "1",
    ]));
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: --promotions kill the master"),
        "{stderr}"
    );
}
