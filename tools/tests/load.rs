//! `duokv load` end to end: the real binary against a real master/slave
//! pair, and against real `redis-server`s when one is installed, so that the
//! side-by-side benchmark is known to measure something on both targets.
//!
//! Each run is short (1 s) and small (4 clients): a smoke test that the
//! loop, the report and both clients work, not a measurement. Without
//! `redis-server` on the PATH the Redis tests say so and pass.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use duokv_tools::resp::{RespClient, RespValue};
use serde_json::Value;
use tempfile::TempDir;

use common::{Pair, free_port, poll, run_with_deadline};

/// The flags every smoke run shares, as the CI job runs them.
const SMOKE: [&str; 7] = [
    "--clients",
    "4",
    "--duration",
    "1s",
    "--writes",
    "0.5",
    "--json",
];

/// Runs `duokv load ARGS`, which must succeed, and parses its JSON report.
fn load(args: &[&str]) -> Value {
    load_exiting(args, 0)
}

/// Runs `duokv load ARGS`, which must exit with `code` (6: most operations
/// failed, the report still printed), and parses its JSON report.
fn load_exiting(args: &[&str], code: i32) -> Value {
    let output = run_with_deadline(
        Command::new(env!("CARGO_BIN_EXE_duokv"))
            .arg("load")
            .args(args),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(code),
        "duokv load {args:?}: {}\nstdout:\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("duokv load --json printed no JSON ({e}):\n{stdout}"))
}

/// The report of a healthy run against `kind`: a few hundred operations,
/// none failed, writes and reads both measured, percentiles in order.
fn assert_healthy(report: &Value, kind: &str) {
    let number = |path: &[&str]| {
        path.iter()
            .fold(report, |v, key| &v[key])
            .as_f64()
            .unwrap_or_else(|| panic!("no number at {path:?} in {report:#}"))
    };
    assert_eq!(report["config"]["target"]["kind"], kind, "{report:#}");
    assert!(number(&["ops"]) > 100.0, "too few operations: {report:#}");
    assert_eq!(number(&["errors"]), 0.0, "{report:#}");
    for side in ["writes", "reads"] {
        assert!(number(&[side, "count"]) > 0.0, "no {side}: {report:#}");
        assert!(
            number(&[side, "p50_us"]) <= number(&[side, "p99_us"]),
            "{side}: p50 above p99: {report:#}"
        );
    }
    assert_eq!(
        number(&["writes", "count"]) + number(&["reads", "count"]),
        number(&["ops"]),
        "{report:#}"
    );
}

#[test]
fn load_drives_a_duokv_pair() {
    let pair = Pair::start(
        &["--replication", "sync", "--fsync", "never"],
        &["--fsync", "never"],
    );
    pair.wait_link_up();
    let master = pair.master.addr();
    let mut args = vec!["--addr", &master];
    args.extend(SMOKE);
    assert_healthy(&load(&args), "duokv");
}

#[test]
fn load_drives_redis() {
    let Some(redis) = RedisServer::start_if_installed(&[]) else {
        return;
    };
    let addr = redis.addr();
    let mut args = vec!["--target", "redis", "--addr", &addr];
    args.extend(SMOKE);
    assert_healthy(&load(&args), "redis");

    // With WAIT and no replica, every write is refused, and counted so; the
    // run fails (exit 6), its report printed all the same.
    let report = load_exiting(
        &[
            "--target",
            "redis",
            "--addr",
            &addr,
            "--redis-wait-ms",
            "5",
            "--clients",
            "2",
            "--duration",
            "200ms",
            "--writes",
            "1.0",
            "--json",
        ],
        6,
    );
    assert_eq!(report["config"]["target"]["wait_ms"], 5, "{report:#}");
    assert_eq!(report["writes"]["count"], 0, "{report:#}");
    assert!(report["errors"].as_u64() > Some(0), "{report:#}");
    let first_error = report["first_error"].as_str().unwrap_or_default();
    assert!(
        first_error.contains("replica did not acknowledge within 5 ms"),
        "{report:#}"
    );
}

/// The comparison the flag exists for: Redis with a replica, each `SET`
/// followed by `WAIT 1`, like a duokv master in sync mode.
#[test]
fn load_drives_redis_with_wait_for_a_replica() {
    let Some(master) = RedisServer::start_if_installed(&["--repl-diskless-sync-delay", "0"]) else {
        return;
    };
    let port = master.addr.port().to_string();
    let replica = RedisServer::start(&["--replicaof", "127.0.0.1", &port]);
    let mut client = RespClient::connect(master.addr()).expect("connect to the redis master");
    poll("the redis replica to come online", || {
        let info = client.command(&[b"INFO", b"replication"]).ok()?;
        let RespValue::Bulk(Some(text)) = info else {
            return None;
        };
        let text = String::from_utf8_lossy(&text);
        (text.contains("connected_slaves:1") && text.contains("state=online")).then_some(())
    });
    let addr = master.addr();
    let mut args = vec!["--target", "redis", "--redis-wait-ms", "1000"];
    args.extend(["--addr", &addr]);
    args.extend(SMOKE);
    let report = load(&args);
    assert_eq!(report["config"]["target"]["wait_ms"], 1000, "{report:#}");
    assert_healthy(&report, "redis");
    drop(replica);
}

/// A number at a JSON pointer of a report.
fn number(report: &Value, pointer: &str) -> u64 {
    report
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no count at {pointer} in {report:#}"))
}

/// Read your writes on the slave: each client writes to the master and
/// reads its own last write on the slave after its token. Every such read
/// is answered, at once or after waiting, none refused, none failed; the
/// counts add up to the reads.
#[test]
fn load_reads_its_own_writes_on_the_slave() {
    let pair = Pair::start(
        &["--replication", "async", "--fsync", "never"],
        &["--fsync", "never"],
    );
    pair.wait_link_up();
    let (master, slave) = (pair.master.addr(), pair.slave.addr());
    let report = load(&[
        "--addr",
        &master,
        "--read-addr",
        &slave,
        "--read-after",
        "--read-wait",
        "1s",
        "--clients",
        "4",
        "--duration",
        "1s",
        "--writes",
        "0.5",
        "--keys",
        "100",
        "--json",
    ]);
    assert_eq!(report["config"]["read_addr"], slave.as_str(), "{report:#}");
    assert_eq!(report["errors"], 0, "{report:#}");
    let o = |name: &str| number(&report, &format!("/read_outcomes/{name}"));
    let answered = o("at_once/count") + o("waited/count");
    assert!(o("conditional") > 100, "{report:#}");
    assert_eq!(answered, o("conditional"), "{report:#}");
    assert_eq!(
        (
            o("not_yet_visible"),
            o("too_stale"),
            o("unknown_history"),
            o("failed")
        ),
        (0, 0, 0, 0),
        "{report:#}"
    );
    // At most one plain read per client, before its first write.
    assert!(o("plain") <= 4, "{report:#}");
    assert_eq!(
        number(&report, "/reads/count"),
        answered + o("plain"),
        "{report:#}"
    );
}

/// Bounded staleness on the slave under write load on the master, from
/// clients that only read, with the slave's proven bound sampled: a bound
/// of 1 us is never provable (a proof is at least a probe's round trip
/// old), so every read is refused as too stale and none is an op; a bound
/// of 10 s is always provable, so none is refused. The samples are the
/// slave's `staleness_bound_ms`: there, and above zero.
#[test]
fn load_reads_under_a_staleness_bound_and_samples_the_bound() {
    let pair = Pair::start(
        &["--replication", "async", "--fsync", "never"],
        &["--fsync", "never"],
    );
    pair.wait_link_up();
    let (master, slave) = (pair.master.addr(), pair.slave.addr());
    let bounded = |bound: &str| {
        load(&[
            "--addr",
            &master,
            "--clients",
            "2",
            "--writes",
            "1.0",
            "--readers",
            "2",
            "--read-addr",
            &slave,
            "--read-max-staleness",
            bound,
            "--read-wait",
            "5ms",
            "--sample-every",
            "10ms",
            "--duration",
            "1s",
            "--json",
        ])
    };

    let never = bounded("1us");
    let o = |report: &Value, name: &str| number(report, &format!("/read_outcomes/{name}"));
    assert!(o(&never, "too_stale") > 10, "{never:#}");
    assert_eq!(
        o(&never, "too_stale"),
        o(&never, "conditional"),
        "{never:#}"
    );
    assert_eq!(
        o(&never, "refused/count"),
        o(&never, "too_stale"),
        "{never:#}"
    );
    assert_eq!(number(&never, "/reads/count"), 0, "{never:#}");
    assert!(number(&never, "/writes/count") > 10, "{never:#}");
    assert_eq!(number(&never, "/errors"), 0, "{never:#}");
    let samples = number(&never, "/staleness_bound/samples");
    assert!(samples > 10, "{never:#}");
    let p50 = never["staleness_bound"]["p50_ms"].as_f64().unwrap_or(0.0);
    assert!(p50 > 0.0, "{never:#}");

    let always = bounded("10s");
    assert!(o(&always, "conditional") > 10, "{always:#}");
    assert_eq!(
        o(&always, "at_once/count") + o(&always, "waited/count"),
        o(&always, "conditional"),
        "{always:#}"
    );
    assert_eq!(o(&always, "refused/count"), 0, "{always:#}");
}

/// Settings that cannot be run as asked are refused before any load.
#[test]
fn load_refuses_read_conditions_it_cannot_honour() {
    let cases: [(&[&str], &str); 3] = [
        (
            &["--target", "redis", "--read-after", "--writes", "0.5"],
            "need --target duokv",
        ),
        (&["--read-after", "--writes", "0"], "give --writes above 0"),
        (
            &["--read-after", "--writes", "0.5", "--readers", "2"],
            "--readers only read",
        ),
    ];
    for (args, message) in cases {
        // No server: the check comes before any connection.
        let output = run_with_deadline(
            Command::new(env!("CARGO_BIN_EXE_duokv"))
                .args(["load", "--addr", "127.0.0.1:1"])
                .args(args),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} ran");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

/// A `redis-server` child on a free loopback port, with no persistence and
/// its files in a temporary directory; killed and reaped when dropped, its
/// log printed if the test panicked.
struct RedisServer {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl RedisServer {
    /// Starts one, or says why not and returns `None` if `redis-server` is
    /// not on the PATH.
    fn start_if_installed(args: &[&str]) -> Option<RedisServer> {
        let found = Command::new("which")
            .arg("redis-server")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !found {
            common::skip("the redis part of this test", "redis-server on the PATH");
            return None;
        }
        Some(RedisServer::start(args))
    }

    /// Starts one with extra `args`; a port taken between its choice and
    /// the bind makes the server exit, and another port is tried.
    fn start(args: &[&str]) -> RedisServer {
        let mut failures = String::new();
        for attempt in 1..=5 {
            let dir = tempfile::tempdir().expect("create a temporary dir for redis");
            let port = free_port();
            let log = File::create(dir.path().join("redis.log")).expect("create the redis log");
            let child = Command::new("redis-server")
                .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
                .arg("--port")
                .arg(port.to_string())
                .arg("--dir")
                .arg(dir.path())
                .args(args)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log file"))
                .stderr(log)
                .spawn()
                .expect("spawn redis-server");
            let mut server = RedisServer {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                dir,
            };
            if server.wait_ready() {
                return server;
            }
            failures.push_str(&format!("attempt {attempt}:\n{}\n", server.log()));
        }
        panic!("redis-server did not start:\n{failures}");
    }

    fn addr(&self) -> String {
        self.addr.to_string()
    }

    fn log(&self) -> String {
        read_log(self.dir.path())
    }

    /// Polls until the server answers a `PING` (true) or exits (false).
    fn wait_ready(&mut self) -> bool {
        poll("redis-server to answer PING", || {
            if self.child.try_wait().expect("try_wait").is_some() {
                return Some(false);
            }
            let ping = RespClient::connect(self.addr()).and_then(|mut c| c.ping());
            // The answer must come from our process, not one that took the
            // port while ours failed to bind.
            (ping.is_ok() && self.child.try_wait().expect("try_wait").is_none()).then_some(true)
        })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- redis-server log ({}) ---\n{}", self.addr, self.log());
        }
    }
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default()
}
