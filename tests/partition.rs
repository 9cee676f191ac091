//! A network partition between master and slave: each runs in its own
//! network namespace (two hosts made by `tests/two-hosts.sh`), and the
//! slave's link is taken down and brought back. Sync writes fail with
//! `ReplicaUnavailable` within the sync timeout plus a margin; async writes
//! go on; after healing, the slave catches up and the replicas are
//! identical.
//!
//! Needs root and iproute2; under CI (`CI` set) a missing one is a failure,
//! elsewhere the tests skip and say why.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use duokv::{Client, Error};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/two-hosts.sh");
const SERVER: &str = env!("CARGO_BIN_EXE_duokv-server");
const DEADLINE: Duration = Duration::from_secs(20);

fn can_run() -> bool {
    common::can_make_two_hosts("the partition tests")
}

/// Two namespace hosts running a master (host a) and a slave (host b);
/// everything is stopped and removed when dropped.
struct Partitionable {
    dir: tempfile::TempDir,
    net: String,
    servers: Vec<Child>,
}

impl Partitionable {
    fn start(master_args: &[&str]) -> Partitionable {
        let dir = tempfile::tempdir().expect("temp dir");
        let up = Command::new("bash")
            .arg(SCRIPT)
            .arg("up")
            .arg(dir.path())
            .output()
            .expect("two-hosts.sh");
        let net = std::fs::read_to_string(dir.path().join("net"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let mut hosts = Partitionable {
            dir,
            net,
            servers: Vec::new(),
        };
        assert!(
            up.status.success(),
            "two-hosts.sh up: {}",
            String::from_utf8_lossy(&up.stderr)
        );
        let (master, slave) = (hosts.master_addr(), hosts.slave_addr());
        let data = hosts.dir.path().to_path_buf();
        hosts.spawn(
            "b",
            &[
                "--listen",
                &slave,
                "--role",
                "slave",
                "--master-addr",
                &master,
                "--fsync",
                "never",
            ],
            &data.join("slave"),
        );
        let mut args = vec![
            "--listen",
            &master,
            "--role",
            "master",
            "--replica",
            &slave,
            "--fsync",
            "never",
        ];
        args.extend_from_slice(master_args);
        hosts.spawn("a", &args, &data.join("master"));
        hosts.poll("the replication link to come up", |h| {
            let facts = h.client(&h.master_addr()).ok()?.info().ok()?;
            facts
                .iter()
                .any(|(n, v)| n == "link" && v == "up")
                .then_some(())
        });
        hosts
    }

    fn master_addr(&self) -> String {
        format!("10.231.{}.2:7070", self.net)
    }

    fn slave_addr(&self) -> String {
        format!("10.231.{}.3:7070", self.net)
    }

    fn spawn(&mut self, host: &str, args: &[&str], data: &Path) {
        let log =
            std::fs::File::create(self.dir.path().join(format!("server-{host}.log"))).expect("log");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &format!("duokv-{}-{host}", self.net),
                SERVER,
            ])
            .args(args)
            .arg("--data-dir")
            .arg(data)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start duokv-server in its namespace");
        self.servers.push(child);
    }

    fn client(&self, addr: &str) -> duokv::Result<Client> {
        Client::builder(addr.to_string())
            .connect_timeout(Duration::from_secs(1))
            .read_timeout(Duration::from_secs(5))
            .connect()
    }

    /// Takes the slave host's link down (`false`) or up (`true`).
    fn slave_link(&self, up: bool) {
        let ns = format!("duokv-{}-b", self.net);
        let veth = format!("dkv{}bp", self.net);
        let state = if up { "up" } else { "down" };
        let status = Command::new("ip")
            .args(["netns", "exec", &ns, "ip", "link", "set", &veth, state])
            .status()
            .expect("ip link set");
        assert!(status.success(), "ip link set {veth} {state}");
    }

    fn poll<T>(&self, what: &str, mut check: impl FnMut(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(value) = check(self) {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every key in `expected`, read from both replicas, once they agree.
    fn wait_identical(&self, expected: &BTreeMap<String, String>) {
        self.poll("the replicas to be identical", |h| {
            let mut master = h.client(&h.master_addr()).ok()?;
            let mut slave = h.client(&h.slave_addr()).ok()?;
            for (key, value) in expected {
                let want = Some(value.as_bytes().to_vec());
                if master.read(key).ok()? != want || slave.read(key).ok()? != want {
                    return None;
                }
            }
            Some(())
        });
    }
}

impl Drop for Partitionable {
    fn drop(&mut self) {
        for child in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("bash")
            .arg(SCRIPT)
            .arg("down")
            .arg(self.dir.path())
            .status();
    }
}

/// Sync mode across a cut link: writes fail with `ReplicaUnavailable` within
/// the 500 ms sync timeout plus a margin, stay durable on the master, and
/// reach the slave once the link is back.
#[test]
fn a_partition_fails_sync_writes_in_time_and_heals() {
    if !can_run() {
        return;
    }
    let hosts = Partitionable::start(&["--replication", "sync", "--sync-timeout", "500ms"]);
    let mut master = hosts.client(&hosts.master_addr()).expect("client");
    let mut expected = BTreeMap::new();
    for i in 0..10 {
        master
            .put(format!("k{i}"), "before")
            .expect("sync write before the cut");
        expected.insert(format!("k{i}"), "before".to_string());
    }
    hosts.slave_link(false);
    for i in 0..3 {
        let started = Instant::now();
        let result = master.put(format!("cut{i}"), "during");
        let elapsed = started.elapsed();
        assert!(
            matches!(result, Err(Error::ReplicaUnavailable { .. })),
            "{result:?}"
        );
        assert!(
            elapsed >= Duration::from_millis(450) && elapsed < Duration::from_millis(2000),
            "failed after {elapsed:?}; the sync timeout is 500 ms"
        );
        expected.insert(format!("cut{i}"), "during".to_string());
    }
    assert_eq!(
        master.read("cut2").expect("read").as_deref(),
        Some(&b"during"[..])
    );
    hosts.slave_link(true);
    hosts.wait_identical(&expected);
    master
        .put("after", "healed")
        .expect("a sync write once healed");
}

/// Async mode across a cut link: writes go on at the master's pace; once the
/// link is back the slave catches up and the replicas are identical.
#[test]
fn a_partition_does_not_stop_async_writes_and_heals() {
    if !can_run() {
        return;
    }
    let hosts = Partitionable::start(&["--replication", "async"]);
    let mut master = hosts.client(&hosts.master_addr()).expect("client");
    hosts.slave_link(false);
    let mut expected = BTreeMap::new();
    let started = Instant::now();
    for i in 0..200 {
        let (key, value) = (format!("a{}", i % 40), format!("v{i}"));
        master
            .put(&key, &value)
            .expect("async write across the partition");
        expected.insert(key, value);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "async writes were held up"
    );
    hosts.slave_link(true);
    hosts.wait_identical(&expected);
}
