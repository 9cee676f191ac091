//! End-to-end tests of master/slave replication: two real `duokv-server`
//! processes (see `common::Pair`) on ports chosen at run time, with their
//! stores in temporary directories, spoken to through [`duokv::Client`] and
//! [`ReplicaSet`].
//!
//! What they hold replication to: a sync write is on the slave when it is
//! acknowledged; an async slave converges; a slave that crashes, or a master
//! that restarts, is caught up from the log (a partial resync) without
//! losing an acknowledged write; a slave whose records were compacted away
//! gets a full resync; a sync write without its slave fails in time (or goes
//! on, with `--sync-fallback async`); a slave turns writes away to its
//! master; the event logs tell each write's story; and a [`ReplicaSet`]
//! reads where it is told. Nothing here sleeps to synchronise: every wait
//! is a poll with a deadline (see `common`), and every child process is
//! killed when its guard drops.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    DEADLINE, FakeMaster, Pair, ServerProcess, info_value, info_value_opt, last_seq, poll,
};
use duokv::client::WriteReceipt;
use duokv::replica_set::{ReadFrom, ReplicaSet};
use duokv::{Client, Error};

/// What a key should read as on both replicas (`None`: deleted).
type Expected = BTreeMap<String, Option<String>>;

/// A numeric `info` fact.
fn fact_u64(client: &mut Client, name: &str) -> u64 {
    let value = info_value(client, name);
    value
        .parse()
        .unwrap_or_else(|_| panic!("`{name}` is not a number: {value:?}"))
}

/// Polls until the slave holds everything the master has: the master's
/// `slave_acked_seq` is its `last_seq`, `lag_records` is 0, and the slave's
/// own `last_seq` is the same.
fn wait_converged(pair: &Pair) {
    let mut master = pair.master.client();
    let mut slave = pair.slave.client();
    poll("the slave to catch up with the master", || {
        let master_seq = last_seq(&mut master);
        let converged = fact_u64(&mut master, "slave_acked_seq") == master_seq
            && fact_u64(&mut master, "lag_records") == 0
            && last_seq(&mut slave) == master_seq;
        converged.then_some(())
    });
}

/// Reads every key of `expected` from `server`.
fn dump(server: &ServerProcess, expected: &Expected) -> Expected {
    let mut client = server.client();
    expected
        .keys()
        .map(|key| {
            let value = client.read(key).expect("read for the dump");
            let value = value.map(|v| String::from_utf8(v).expect("UTF-8 value"));
            (key.clone(), value)
        })
        .collect()
}

/// Asserts that both replicas hold the `before` (1) and `during` (2) writes
/// of the tests that take the slave away between the two.
fn assert_before_and_during(pair: &Pair) {
    let expected: Expected = [("before", "1"), ("during", "2")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Some(v.to_string())))
        .collect();
    assert_identical(pair, &expected);
}

/// Asserts that both replicas hold exactly `expected` for its keys.
fn assert_identical(pair: &Pair, expected: &Expected) {
    let on_master = dump(&pair.master, expected);
    let on_slave = dump(&pair.slave, expected);
    assert_eq!(&on_master, expected, "the master's contents");
    assert_eq!(&on_slave, expected, "the slave's contents");
}

/// Asserts that `key` reads as `value` on `client` once the write of
/// `receipt` is visible there: on a slave, a write is shown once the
/// master's commit notice covers it, which may come just after the reply
/// to a sync write (`PROTOCOL.md` 7.9).
fn assert_reads_after(client: &mut Client, receipt: &WriteReceipt, key: &str, value: Option<&str>) {
    let token = receipt.token().expect("a write token");
    let got = client
        .read_after(key, token, DEADLINE)
        .unwrap_or_else(|e| panic!("read {key} after {token}: {e}"));
    assert_eq!(
        got.as_deref(),
        value.map(str::as_bytes),
        "key {key} on {} after {token}",
        client.addr()
    );
}

/// Asserts that `key` reads as `value` on `client`.
fn assert_reads(client: &mut Client, key: &str, value: Option<&str>) {
    let got = client
        .read(key)
        .unwrap_or_else(|e| panic!("read {key}: {e}"));
    assert_eq!(
        got.as_deref(),
        value.map(str::as_bytes),
        "key {key} on {}",
        client.addr()
    );
}

/// A thread writing through the master until told to stop, counting its
/// acknowledged writes as it goes.
struct Writer {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    handle: thread::JoinHandle<WriterOutcome>,
}

/// What a [`Writer`] did.
struct WriterOutcome {
    /// The last acknowledged state of every key it wrote.
    expected: Expected,
    /// Every acknowledged write, `(key, value)`, in order.
    acked: Vec<(String, String)>,
    /// The error that stopped it, if one did.
    error: Option<Error>,
}

impl Writer {
    /// Starts writing to `addr`: puts of `keys` distinct keys in turn (every
    /// seventh write a delete of a key that exists), or, with `keys` 0, a
    /// put of a new key each time. It stops at the first error.
    fn start(addr: String, keys: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let (thread_stop, thread_done) = (stop.clone(), done.clone());
        let handle = thread::spawn(move || {
            let mut client = common::client_builder(&addr).build();
            let mut outcome = WriterOutcome {
                expected: Expected::new(),
                acked: Vec::new(),
                error: None,
            };
            for i in 0u64.. {
                if thread_stop.load(Ordering::SeqCst) {
                    break;
                }
                let key = if keys == 0 {
                    format!("w{i}")
                } else {
                    format!("w{}", i % keys)
                };
                let value = format!("v{i}");
                let exists = matches!(outcome.expected.get(&key), Some(Some(_)));
                let (result, new) = if i % 7 == 6 && exists {
                    (client.delete(&key), None)
                } else {
                    (client.put(&key, &value), Some(value))
                };
                match result {
                    Ok(_) => {
                        if let Some(value) = &new {
                            outcome.acked.push((key.clone(), value.clone()));
                        }
                        outcome.expected.insert(key, new);
                        thread_done.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        outcome.error = Some(e);
                        break;
                    }
                }
            }
            outcome
        });
        Writer { stop, done, handle }
    }

    /// How many writes were acknowledged so far.
    fn done(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }

    /// Polls until `more` writes past `from` are acknowledged.
    fn wait_for(&self, what: &str, from: u64, more: u64) {
        poll(what, || (self.done() >= from + more).then_some(()));
    }

    /// Stops the writer (if it has not stopped on an error) and returns
    /// what it did.
    fn finish(self) -> WriterOutcome {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("the writer thread panicked")
    }
}

/// `--replication sync-visible`: every acknowledged put, update and
/// delete through the master is already readable from the slave, and its
/// receipt says when the slave said so (`replicated_ns`, before
/// `replied_ns`).
#[test]
fn sync_visible_writes_are_on_the_slave_when_acknowledged() {
    let pair = Pair::start(
        &["--fsync", "never", "--replication", "sync-visible"],
        &["--fsync", "never"],
    );
    pair.wait_link_up();
    let mut master = pair.master.client();
    let mut slave = pair.slave.client();
    assert_eq!(info_value(&mut master, "replication"), "sync-visible");
    assert_eq!(info_value(&mut master, "commit_notices"), "true");

    for i in 0..50u64 {
        let key = format!("k{}", i % 10);
        let value = format!("v{i}");
        let (receipt, expected) = match i / 10 {
            0 => (master.create(&key, &value), Some(value)),
            1 => (master.update(&key, &value), Some(value)),
            3 => (master.delete(&key), None),
            _ => (master.put(&key, &value), Some(value)),
        };
        let receipt = receipt.unwrap_or_else(|e| panic!("write {i}: {e}"));
        assert_eq!(receipt.seq, i + 1, "{receipt:?}");
        let server = &receipt.server;
        // The write is forwarded while the master syncs it: the ack may
        // come before or after the master's own sync, never after the reply.
        assert!(
            server.replicated_ns != 0
                && server.replicated_ns <= server.replied_ns
                && server.applied_ns <= server.replied_ns,
            "a sync receipt names the slave's ack, before the reply: {receipt:?}"
        );
        assert_reads(&mut slave, &key, expected.as_deref());
    }
    assert_eq!(last_seq(&mut slave), 50);
    assert_eq!(fact_u64(&mut master, "slave_acked_seq"), 50);
    assert_eq!(fact_u64(&mut master, "slave_visible_seq"), 50);
    assert_eq!(fact_u64(&mut master, "full_resyncs"), 0);
}

/// Plain sync replication: every acknowledged write is durable on both
/// replicas (the slave's ack covers it when the reply comes), and readable
/// on the slave with its token, which waits for the master's commit
/// notice if it has not arrived yet.
#[test]
fn sync_writes_are_durable_on_both_when_acknowledged() {
    let pair = Pair::start(&[], &[]);
    pair.wait_link_up();
    let mut master = pair.master.client();
    let mut slave = pair.slave.client();
    for i in 0..30u64 {
        let key = format!("k{}", i % 10);
        let receipt = master.put(&key, format!("v{i}")).expect("sync write");
        assert!(
            fact_u64(&mut master, "slave_acked_seq") >= receipt.seq,
            "the slave's ack covers a sync write when it is answered"
        );
        assert!(fact_u64(&mut slave, "applied_seq") >= receipt.seq);
        assert_reads_after(&mut slave, &receipt, &key, Some(&format!("v{i}")));
    }
}

/// `--forward durable`: the master hands a write to the slave only once it
/// is synced (the store's own tests prove that order); sync writes are
/// still acknowledged and on the slave, and `info` says which point the
/// master forwards at. A default master forwards once written; a bad value
/// is refused before the server starts.
#[test]
fn forward_durable_still_replicates_every_sync_write() {
    let pair = Pair::start(&["--forward", "durable"], &[]);
    pair.wait_link_up();
    let mut master = pair.master.client();
    let mut slave = pair.slave.client();
    assert_eq!(info_value(&mut master, "forward"), "durable");
    for i in 0..30u64 {
        let key = format!("d{}", i % 7);
        let receipt = master.put(&key, format!("v{i}")).expect("sync write");
        assert_ne!(receipt.server.replicated_ns, 0, "{receipt:?}");
        assert_reads_after(&mut slave, &receipt, &key, Some(&format!("v{i}")));
    }
    assert_eq!(last_seq(&mut slave), 30);

    let default = Pair::start(&[], &[]);
    default.wait_link_up();
    assert_eq!(
        info_value(&mut default.master.client(), "forward"),
        "written"
    );

    let dir = tempfile::tempdir().expect("a temporary dir");
    let out = common::run_with_deadline(
        std::process::Command::new(env!("CARGO_BIN_EXE_duokv-server")).args([
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &dir.path().display().to_string(),
            "--role",
            "master",
            "--replica",
            "127.0.0.1:1",
            "--forward",
            "soon",
        ]),
    );
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("use written or durable"), "{stderr}");
}

/// Async replication: 200 writes are acknowledged without waiting for the
/// slave (no `replicated_ns`), and the slave converges: every key reads the
/// same on both, and the master's `info` shows no lag left.
#[test]
fn async_slave_converges() {
    let pair = Pair::start(
        &["--replication", "async", "--fsync", "never"],
        &["--fsync", "never"],
    );
    pair.wait_link_up();
    let mut master = pair.master.client();
    assert_eq!(info_value(&mut master, "replication"), "async");

    let mut expected = Expected::new();
    for i in 0..200u64 {
        let key = format!("a{}", i % 60);
        let receipt = if i % 9 == 8 && matches!(expected.get(&key), Some(Some(_))) {
            expected.insert(key.clone(), None);
            master.delete(&key)
        } else {
            let value = format!("v{i}");
            expected.insert(key.clone(), Some(value.clone()));
            master.put(&key, &value)
        };
        let receipt = receipt.unwrap_or_else(|e| panic!("write {i}: {e}"));
        assert_eq!(receipt.server.replicated_ns, 0, "{receipt:?}");
    }

    poll("lag_records to reach 0", || {
        (fact_u64(&mut master, "lag_records") == 0).then_some(())
    });
    wait_converged(&pair);
    assert_eq!(
        fact_u64(&mut master, "slave_acked_seq"),
        last_seq(&mut master)
    );
    assert_eq!(last_seq(&mut master), 200);
    let lag_ms: f64 = info_value(&mut master, "lag_ms")
        .parse()
        .expect("lag_ms is a number");
    assert_eq!(lag_ms, 0.0, "nothing is waiting for the slave any more");
    assert_identical(&pair, &expected);
}

/// A slave killed (SIGKILL) in the middle of an async workload does not
/// stop the master's writes; restarted on the same store and port, it is
/// caught up by streaming the master's log (a partial resync, no full one),
/// and both replicas end with the same contents.
#[test]
fn killed_slave_catches_up_by_streaming() {
    let mut pair = Pair::start(
        &["--replication", "async", "--fsync", "never"],
        &["--fsync", "never"],
    );
    pair.wait_link_up();
    let mut master = pair.master.client();
    let writer = Writer::start(pair.master.addr(), 40);

    writer.wait_for("writes before the kill", 0, 100);
    pair.slave.sigkill();
    pair.slave.wait_exit(DEADLINE);
    poll("the master to see the link down", || {
        (info_value(&mut master, "link") == "down").then_some(())
    });
    writer.wait_for("writes while the slave is down", writer.done(), 100);
    pair.slave.restart();
    writer.wait_for("writes after the restart", writer.done(), 50);
    let outcome = writer.finish();
    assert!(
        outcome.error.is_none(),
        "a write failed: {:?}",
        outcome.error
    );

    wait_converged(&pair);
    assert!(
        fact_u64(&mut master, "partial_resyncs") >= 1,
        "{:?}",
        master.info()
    );
    assert_eq!(fact_u64(&mut master, "full_resyncs"), 0);
    assert!(fact_u64(&mut master, "link_connects") >= 2);
    assert_identical(&pair, &outcome.expected);
}

/// Restarts the master of a sync pair while a writer is writing through it
/// (SIGKILL under `--fsync always`, or SIGTERM), and checks that the slave
/// resumes from the new master without a full resync, that no acknowledged
/// write is lost on either replica, and that new writes replicate.
fn master_restart(kill: bool) {
    let fsync = if kill { "always" } else { "never" };
    let mut pair = Pair::start(&["--fsync", fsync], &["--fsync", fsync]);
    pair.wait_link_up();
    let writer = Writer::start(pair.master.addr(), 0);
    writer.wait_for("writes before the restart", 0, 60);
    if kill {
        pair.master.sigkill();
    } else {
        pair.master.sigterm();
    }
    let status = pair.master.wait_exit(DEADLINE);
    if !kill {
        assert!(status.success(), "SIGTERM exit: {status}");
    }
    let outcome = writer.finish();
    assert!(
        outcome.error.is_some(),
        "the writer stops at the first write the stopped master cannot take"
    );
    assert!(outcome.acked.len() >= 60);
    let old_history = info_value(&mut pair.slave.client(), "history_id");
    pair.master.restart();

    let mut master = pair.master.client();
    poll("the new master's link to the slave", || {
        (info_value(&mut master, "link") == "up").then_some(())
    });
    wait_converged(&pair);
    let mut slave = pair.slave.client();
    assert_eq!(info_value(&mut slave, "link"), "up", "the slave resumed");
    for (key, value) in &outcome.acked {
        assert_reads(&mut master, key, Some(value));
        assert_reads(&mut slave, key, Some(value));
    }
    assert_eq!(
        fact_u64(&mut master, "full_resyncs"),
        0,
        "{:?}",
        master.info()
    );
    let new_history = info_value(&mut master, "history_id");
    assert_ne!(
        new_history, old_history,
        "a restarted master forks its history"
    );
    assert_eq!(
        info_value(&mut slave, "history_id"),
        new_history,
        "the slave, a prefix of the old history, follows the new one"
    );

    for i in 0..10 {
        let (key, value) = (format!("after{i}"), format!("v{i}"));
        let receipt = master.put(&key, &value).expect("write after the restart");
        assert_ne!(receipt.server.replicated_ns, 0, "{receipt:?}");
        assert_reads_after(&mut slave, &receipt, &key, Some(&value));
    }
    assert_eq!(fact_u64(&mut master, "full_resyncs"), 0);
}

/// A master stopped gracefully (SIGTERM) and restarted: the slave resumes
/// without a full resync, nothing acknowledged is lost, new writes
/// replicate.
#[test]
fn master_restart_after_sigterm() {
    master_restart(false);
}

/// A master killed (SIGKILL, `--fsync always`) and restarted: the slave
/// resumes without a full resync, nothing acknowledged is lost, new writes
/// replicate.
#[test]
fn master_restart_after_sigkill() {
    master_restart(true);
}

/// A slave that was away while compaction dropped the records it needs
/// gets a full resync (a snapshot): the master counts it, and afterwards
/// both replicas hold the same keys (a key deleted meanwhile is gone from
/// the slave too) and the same `last_seq`.
#[test]
fn full_resync_after_compaction() {
    let mut pair = Pair::start(
        &[
            "--replication",
            "async",
            "--fsync",
            "never",
            "--compact-min-dead-bytes",
            "1",
            "--compact-dead-ratio",
            "0.01",
        ],
        &["--fsync", "never"],
    );
    pair.wait_link_up();
    let mut master = pair.master.client();
    let mut expected = Expected::new();
    for i in 0..20 {
        let (key, value) = (format!("f{i}"), format!("first{i}"));
        master.put(&key, &value).expect("initial put");
        expected.insert(key, Some(value));
    }
    wait_converged(&pair);
    let slave_seq = last_seq(&mut pair.slave.client());

    pair.slave.sigterm();
    assert!(pair.slave.wait_exit(DEADLINE).success());
    for round in 0..40 {
        for i in 0..5 {
            let (key, value) = (format!("f{i}"), format!("round{round}"));
            master.put(&key, &value).expect("overwrite");
            expected.insert(key, Some(value));
        }
    }
    master.delete("f5").expect("delete");
    expected.insert("f5".into(), None);
    poll(
        "the master to compact (--compact-min-dead-bytes 1 --compact-dead-ratio 0.01)",
        || (fact_u64(&mut master, "compactions") >= 1).then_some(()),
    );

    pair.slave.restart();
    poll("a full resync", || {
        (fact_u64(&mut master, "full_resyncs") >= 1).then_some(())
    });
    wait_converged(&pair);
    let mut slave = pair.slave.client();
    assert!(last_seq(&mut slave) > slave_seq);
    assert_eq!(last_seq(&mut slave), last_seq(&mut master));
    assert_identical(&pair, &expected);

    master
        .put("after", "resync")
        .expect("write after the resync");
    poll("the write after the resync on the slave", || {
        (slave.read("after").expect("read") == Some(b"resync".to_vec())).then_some(())
    });
}

/// With its slave killed, a sync master fails a write with
/// `ReplicaUnavailable` once `--sync-timeout` (500 ms) has passed, not
/// before and not much after; the write is durable on the master anyway,
/// and reaches the slave when it is back.
#[test]
fn sync_write_without_the_slave_times_out() {
    let mut pair = Pair::start(
        &["--sync-timeout", "500ms", "--fsync", "never"],
        &["--fsync", "never"],
    );
    pair.wait_link_up();
    let mut master = pair.master.client();
    master.put("before", "1").expect("put with the slave up");

    pair.slave.sigkill();
    pair.slave.wait_exit(DEADLINE);
    let started = Instant::now();
    let result = master.put("during", "2");
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(Error::ReplicaUnavailable { .. })),
        "{result:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(450),
        "failed after {elapsed:?}, before the sync timeout"
    );
    assert!(
        elapsed < Duration::from_millis(500) + Duration::from_millis(1500),
        "failed after {elapsed:?}, long past the sync timeout"
    );
    assert_reads(&mut master, "during", Some("2"));
    assert_eq!(info_value(&mut master, "sync_fallback_active"), "false");

    pair.slave.restart();
    wait_converged(&pair);
    assert_before_and_during(&pair);
}

/// With `--sync-fallback async`, a sync master whose slave is down goes on
/// acknowledging writes (without a `replicated_ns`) and says so in `info`;
/// the restarted slave catches up and sync replication is restored.
#[test]
fn sync_fallback_async_keeps_writing() {
    let mut pair = Pair::start(
        &[
            "--sync-timeout",
            "500ms",
            "--sync-fallback",
            "async",
            "--fsync",
            "never",
        ],
        &["--fsync", "never"],
    );
    pair.wait_link_up();
    let mut master = pair.master.client();
    let mut expected = Expected::new();
    master.put("before", "1").expect("put with the slave up");
    expected.insert("before".into(), Some("1".into()));

    pair.slave.sigkill();
    pair.slave.wait_exit(DEADLINE);
    poll("the master to see the link down", || {
        (info_value(&mut master, "link") == "down").then_some(())
    });
    for i in 0..20 {
        let (key, value) = (format!("d{i}"), format!("v{i}"));
        let receipt = master
            .put(&key, &value)
            .unwrap_or_else(|e| panic!("write {i} with the slave down: {e}"));
        assert_eq!(receipt.server.replicated_ns, 0, "{receipt:?}");
        expected.insert(key, Some(value));
    }
    assert_eq!(info_value(&mut master, "sync_fallback_active"), "true");

    pair.slave.restart();
    wait_converged(&pair);
    assert_identical(&pair, &expected);
    poll("sync replication to be restored", || {
        (info_value(&mut master, "sync_fallback_active") == "false").then_some(())
    });
    let receipt = master.put("after", "x").expect("write after the catch-up");
    assert_ne!(receipt.server.replicated_ns, 0, "{receipt:?}");
    assert_reads(&mut pair.slave.client(), "after", Some("x"));
}

/// A slave answers a write with `NotMaster` naming its master's address
/// and writes nothing; a [`ReplicaSet`] given the slave as its master
/// follows the redirect, and the write lands on the master and the slave.
/// The `info` facts name each one's role and peer.
#[test]
fn slave_redirects_writes_to_the_master() {
    let pair = Pair::start(&["--fsync", "never"], &["--fsync", "never"]);
    pair.wait_link_up();
    let mut slave = pair.slave.client();
    let mut master = pair.master.client();

    assert_eq!(info_value(&mut slave, "role"), "slave");
    assert_eq!(info_value(&mut slave, "master"), pair.master.addr());
    assert_eq!(info_value(&mut slave, "link"), "up");
    assert_eq!(info_value(&mut master, "role"), "master");
    assert_eq!(info_value(&mut master, "replica"), pair.slave.addr());
    assert_eq!(info_value(&mut master, "replication"), "sync");

    match slave.put("k", "v") {
        Err(Error::NotMaster { master }) => assert_eq!(master, pair.master.addr()),
        other => panic!("a write to the slave: {other:?}"),
    }
    assert_reads(&mut slave, "k", None);
    assert_eq!(last_seq(&mut master), 0, "nothing was written");

    let mut set = ReplicaSet::new(pair.slave.addr(), pair.slave.addr());
    let receipt = set.put("k", "v").expect("put through the set");
    assert_eq!(receipt.seq, 1);
    assert_eq!(set.master().addr(), pair.master.addr());
    assert_reads(&mut master, "k", Some("v"));
    assert_reads_after(&mut slave, &receipt, "k", Some("v"));
    let receipt = set
        .update("k", "v2")
        .expect("update, now on the master directly");
    assert_reads_after(&mut slave, &receipt, "k", Some("v2"));
}

/// One parsed event log: per seq, per event name, the timestamps.
type Events = BTreeMap<u64, HashMap<String, Vec<(String, u64)>>>;

/// Reads an event log, checking its header and the shape of every line.
fn read_events(path: &Path) -> Events {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read the event log {}: {e}", path.display()));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("event,seq,key,unix_ns"), "{path:?}");
    let mut events = Events::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 4, "line {line:?} of {path:?}");
        let seq = fields[1].parse().expect("seq is a number");
        let at = fields[3].parse().expect("unix_ns is a number");
        events
            .entry(seq)
            .or_default()
            .entry(fields[0].to_string())
            .or_default()
            .push((fields[2].to_string(), at));
    }
    events
}

/// Checks that every write of `keys` (seq to key) has each of `kinds` once,
/// with its key, and nothing else is in the log; and that each pair of
/// `before` holds for every write: the first event at or before the second.
fn check_events(
    who: &str,
    events: &Events,
    keys: &BTreeMap<u64, String>,
    kinds: &[&str],
    before: &[(&str, &str)],
) {
    assert_eq!(
        events.keys().collect::<Vec<_>>(),
        keys.keys().collect::<Vec<_>>(),
        "{who}: the seqs in the event log"
    );
    for (seq, key) in keys {
        let of_seq = &events[seq];
        let mut names: Vec<&str> = of_seq.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut wanted = kinds.to_vec();
        wanted.sort_unstable();
        assert_eq!(names, wanted, "{who}: the events of seq {seq}");
        let at = |kind: &str| {
            let logged = &of_seq[kind];
            assert_eq!(logged.len(), 1, "{who}: seq {seq} {kind}: {logged:?}");
            assert_eq!(&logged[0].0, key, "{who}: the key of seq {seq} {kind}");
            logged[0].1
        };
        for (first, second) in before {
            assert!(
                at(first) <= at(second),
                "{who}: seq {seq}: {first} at {} after {second} at {}",
                at(first),
                at(second)
            );
        }
    }
}

/// After 30 sync writes and a clean SIGTERM of both, the master's event log
/// has every write with `received, applied, forwarded, acked, replied` and
/// the slave's with `received, applied, visible`, each once, in the order that
/// replication guarantees, under the `event,seq,key,unix_ns` header.
#[test]
fn event_logs_trace_every_write() {
    let mut pair = Pair::start(&["--fsync", "never"], &["--fsync", "never"]);
    pair.wait_link_up();
    let mut master = pair.master.client();
    let mut keys = BTreeMap::new();
    for i in 0..30u64 {
        let key = format!("ev-{}", i % 10);
        let receipt = if i >= 20 && i % 2 == 1 {
            master.delete(&key)
        } else {
            master.put(&key, format!("v{i}"))
        };
        let receipt = receipt.unwrap_or_else(|e| panic!("write {i}: {e}"));
        keys.insert(receipt.seq, key);
    }
    drop(master);
    // The last commit notice may follow the last reply.
    let mut slave = pair.slave.client();
    poll("the slave to show every write", || {
        (fact_u64(&mut slave, "visible_seq") == 30).then_some(())
    });
    drop(slave);

    pair.master.sigterm();
    assert!(pair.master.wait_exit(DEADLINE).success());
    pair.slave.sigterm();
    assert!(pair.slave.wait_exit(DEADLINE).success());

    // A write is forwarded once written, while the master syncs it: it may
    // be forwarded, even acked, before it is applied (durable) here.
    check_events(
        "master",
        &read_events(&pair.master_events()),
        &keys,
        &["received", "applied", "forwarded", "acked", "replied"],
        &[
            ("received", "applied"),
            ("received", "forwarded"),
            ("forwarded", "acked"),
            ("applied", "replied"),
            ("acked", "replied"),
        ],
    );
    check_events(
        "slave",
        &read_events(&pair.slave_events()),
        &keys,
        &["received", "applied", "visible"],
        &[("received", "applied"), ("applied", "visible")],
    );
}

/// A [`ReplicaSet`] reads from the slave with `ReadFrom::Slave` (it still
/// reads with the master killed) and from both in turn with
/// `ReadFrom::Either` (with the master killed, every other read fails).
#[test]
fn replica_set_reads_from_slave_or_either() {
    let mut pair = Pair::start(
        &["--fsync", "never", "--replication", "sync-visible"],
        &["--fsync", "never"],
    );
    pair.wait_link_up();
    let mut from_slave =
        ReplicaSet::new(pair.master.addr(), pair.slave.addr()).read_from(ReadFrom::Slave);
    let mut from_either =
        ReplicaSet::new(pair.master.addr(), pair.slave.addr()).read_from(ReadFrom::Either);
    for i in 0..10 {
        from_slave
            .put(format!("r{i}"), format!("v{i}"))
            .expect("put through the set");
    }
    for i in 0..10 {
        let want = Some(format!("v{i}").into_bytes());
        assert_eq!(from_slave.read(format!("r{i}")).unwrap(), want);
        assert_eq!(from_either.read(format!("r{i}")).unwrap(), want);
    }
    assert_eq!(from_slave.read("absent").unwrap(), None);

    pair.master.sigkill();
    pair.master.wait_exit(DEADLINE);
    for i in 0..10 {
        assert_eq!(
            from_slave
                .read(format!("r{i}"))
                .expect("read from the slave"),
            Some(format!("v{i}").into_bytes())
        );
    }
    let outcomes: Vec<bool> = (0..10)
        .map(|i| match from_either.read(format!("r{i}")) {
            Ok(value) => {
                assert_eq!(value, Some(format!("v{i}").into_bytes()));
                true
            }
            Err(_) => false,
        })
        .collect();
    assert!(
        outcomes.windows(2).all(|w| w[0] != w[1]) && outcomes.iter().filter(|ok| **ok).count() == 5,
        "reads alternate between the slave (served) and the dead master: {outcomes:?}"
    );
}

/// A master forwards writes before its own `fdatasync`, so a crash of its
/// host can leave the slave with writes the master lost (none of them
/// acknowledged). That state is made here directly: both replicas stopped,
/// three more records applied to the slave's store, the master restarted
/// on its own log (it forks a new history after seq 10) and given five new
/// writes, seqs 11 to 15, while the slave is down. Streaming the slave
/// "from seq 14" would keep the three lost writes and miss three new ones;
/// instead it is told apart by its history and fully resynced.
#[test]
fn a_slave_holding_writes_the_master_lost_is_resynced() {
    let mut pair = Pair::start(&["--replication", "async"], &[]);
    pair.wait_link_up();
    let mut master = pair.master.client();
    for i in 0..10 {
        master.put(format!("k{i}"), "acknowledged").expect("put");
    }
    wait_converged(&pair);
    drop(master);
    for server in [&mut pair.slave, &mut pair.master] {
        server.sigterm();
        assert!(server.wait_exit(DEADLINE).success());
    }
    {
        let slave =
            duokv_storage::Store::open(pair.slave.data_dir(), duokv_storage::Options::default())
                .expect("open the stopped slave's store");
        assert_eq!(slave.last_seq(), 10);
        for i in 0..3u64 {
            let op = duokv_storage::Op::Put {
                key: format!("lost{i}").into_bytes(),
                value: b"never acknowledged".to_vec(),
            };
            slave
                .apply(11 + i, &op)
                .expect("apply a write the master lost");
        }
    }
    pair.master.restart();
    let mut master = pair.master.client();
    for i in 0..5 {
        master
            .put(format!("new{i}"), "after the crash")
            .expect("put");
    }
    assert_eq!(last_seq(&mut master), 15);
    pair.slave.restart();
    poll("the slave to be resynced", || {
        let mut slave = pair.slave.client();
        (last_seq(&mut slave) == 15 && slave.read("new4").ok()?.is_some()).then_some(())
    });
    let mut slave = pair.slave.client();
    for i in 0..3 {
        assert_reads(&mut slave, &format!("lost{i}"), None);
    }
    for i in 0..5 {
        assert_reads(&mut slave, &format!("new{i}"), Some("after the crash"));
    }
    for i in 0..10 {
        assert_reads(&mut slave, &format!("k{i}"), Some("acknowledged"));
    }
    assert!(fact_u64(&mut master, "full_resyncs") >= 1);
    assert!(
        pair.slave.log().contains("master lost in a crash"),
        "{}",
        pair.slave.log()
    );
    assert_eq!(
        info_value(&mut slave, "history_id"),
        info_value(&mut master, "history_id")
    );
}

/// Starts a pair, replicates ten keys, then replaces the master by one on
/// an empty data directory (a new history) that takes fifteen writes while
/// the slave is down, and restarts the slave. Returns the pair.
fn diverge(slave_args: &[&str]) -> Pair {
    let mut pair = Pair::start(&["--replication", "async", "--fsync", "never"], slave_args);
    pair.wait_link_up();
    let mut master = pair.master.client();
    for i in 0..10 {
        master
            .put(format!("old{i}"), "from the first master")
            .expect("put");
    }
    wait_converged(&pair);
    drop(master);
    pair.slave.sigterm();
    assert!(pair.slave.wait_exit(DEADLINE).success());
    pair.master.sigkill();
    let data = pair.master.data_dir().to_path_buf();
    fs::remove_dir_all(&data).expect("wipe the master's data dir");
    fs::create_dir_all(&data).expect("recreate it empty");
    pair.master.restart();
    let mut master = pair.master.client();
    for i in 0..15 {
        master
            .put(format!("new{i}"), "from the new master")
            .expect("put");
    }
    // The new master's seqs (1..=15) pass the slave's (10): streaming "from
    // seq 11" would splice two histories.
    assert_eq!(last_seq(&mut master), 15);
    pair.slave.restart();
    pair
}

/// With `--on-divergence resync`, asked for by name, a master restarted
/// on an empty data dir (a new history) replaces the slave's data: the
/// slave is fully resynced (its old keys go) instead of having the new
/// master's writes spliced onto its own, and it logs what it discarded.
#[test]
fn a_new_master_history_replaces_the_slave_only_when_asked() {
    let pair = diverge(&["--on-divergence", "resync"]);
    let mut master = pair.master.client();
    poll("the slave to take the new master's history", || {
        let mut slave = pair.slave.client();
        (last_seq(&mut slave) == 15 && slave.read("old3").ok()?.is_none()).then_some(())
    });
    assert!(fact_u64(&mut master, "full_resyncs") >= 1);
    let mut slave = pair.slave.client();
    for i in 0..15 {
        assert_reads(&mut slave, &format!("new{i}"), Some("from the new master"));
    }
    for i in 0..10 {
        assert_reads(&mut slave, &format!("old{i}"), None);
    }
    assert_eq!(
        info_value(&mut slave, "history_id"),
        info_value(&mut master, "history_id"),
        "the slave now follows the new history"
    );
    let log = pair.slave.log();
    assert!(
        log.contains("--on-divergence resync discards this store's 10 keys of history")
            && log.contains("(writes up to seq 10)"),
        "{log}"
    );
}

/// By default a slave holding data refuses a master whose history does
/// not continue its own: it keeps its data, says why in its log, and tells
/// the master, which shows the reason in `info` (`link_last_error`), backs
/// off, and logs the refusal once however often it dials again.
#[test]
fn a_slave_refuses_a_divergent_master_by_default() {
    let pair = diverge(&[]);
    let mut master = pair.master.client();
    let error = poll("the master to show the slave's refusal", || {
        let backoff = fact_u64(&mut master, "link_backoff_ms");
        let error = info_value_opt(&mut master, "link_last_error")?;
        // 400 ms: the fourth refusal in a row at least.
        (backoff >= 400).then_some(error)
    });
    assert!(
        error.contains("refused the stream (diverged)") && error.contains("holds 10 keys"),
        "{error}"
    );
    assert_eq!(info_value(&mut master, "link"), "down");
    assert_eq!(
        pair.master
            .log()
            .matches("refused the stream (diverged)")
            .count(),
        1,
        "logged once per change: {}",
        pair.master.log()
    );
    let slave_log = pair.slave.log();
    assert!(
        slave_log.contains("following it would erase them"),
        "{slave_log}"
    );
    let mut slave = pair.slave.client();
    assert_eq!(
        last_seq(&mut slave),
        10,
        "nothing applied from the new history"
    );
    for i in 0..10 {
        assert_reads(
            &mut slave,
            &format!("old{i}"),
            Some("from the first master"),
        );
    }
    assert_reads(&mut slave, "new0", None);
    assert!(info_value(&mut slave, "link_last_error").contains("would erase"));
}

/// Issue 13's typo: a master started on an empty (mistyped) data dir,
/// with no writes at all, while its slave holds 23. The slave keeps every
/// key; a new empty slave still joins that master.
#[test]
fn a_master_on_an_empty_data_dir_cannot_erase_the_slave() {
    let mut pair = Pair::start(&["--fsync", "never"], &["--fsync", "never"]);
    pair.wait_link_up();
    let mut master = pair.master.client();
    for i in 0..23 {
        master.put(format!("k{i}"), "kept").expect("put");
    }
    wait_converged(&pair);
    drop(master);
    pair.master.sigkill();
    let data = pair.master.data_dir().to_path_buf();
    fs::remove_dir_all(&data).expect("wipe the master's data dir");
    fs::create_dir_all(&data).expect("recreate it empty");
    pair.master.restart();
    let mut master = pair.master.client();
    let error = poll("the master to be refused", || {
        info_value_opt(&mut master, "link_last_error")
    });
    assert!(error.contains("(diverged)"), "{error}");
    let mut slave = pair.slave.client();
    assert_eq!(last_seq(&mut slave), 23);
    for i in 0..23 {
        assert_reads(&mut slave, &format!("k{i}"), Some("kept"));
    }
    assert_eq!(fact_u64(&mut master, "full_resyncs"), 0);
}

/// Sends `signal` (`STOP`, `CONT`) to a server; after `STOP`, waits until
/// every thread of it is stopped (the signal is delivered asynchronously).
fn signal(server: &ServerProcess, signal: &str) {
    if signal == "STOP" {
        common::sigstop_and_wait(server);
    } else {
        server.signal(&format!("SIG{signal}"));
    }
}

/// A stalled slave (SIGSTOP: its socket stays open, nothing is read or
/// acknowledged): a sync write gets `ReplicaUnavailable` within the sync
/// timeout plus a margin, and stays durable on the master; after SIGCONT
/// the slave catches up and the replicas are identical.
#[test]
fn a_stalled_slave_holds_sync_writes_no_longer_than_the_timeout() {
    let pair = Pair::start(
        &["--sync-timeout", "500ms", "--fsync", "never"],
        &["--fsync", "never"],
    );
    pair.wait_link_up();
    let mut master = pair.master.client();
    master
        .put("before", "1")
        .expect("put with the slave running");
    signal(&pair.slave, "STOP");
    let started = Instant::now();
    let result = master.put("during", "2");
    let elapsed = started.elapsed();
    signal(&pair.slave, "CONT");
    assert!(
        matches!(result, Err(Error::ReplicaUnavailable { .. })),
        "{result:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_millis(2000),
        "failed after {elapsed:?}; the sync timeout is 500 ms"
    );
    assert_reads(&mut master, "during", Some("2"));
    wait_converged(&pair);
    assert_before_and_during(&pair);
}

/// In async mode a stalled slave holds nothing up: writes go on at the
/// master's pace while it is stopped, and it catches up after SIGCONT.
#[test]
fn a_stalled_slave_does_not_hold_up_async_writes() {
    let pair = Pair::start(
        &["--replication", "async", "--fsync", "never"],
        &["--fsync", "never"],
    );
    pair.wait_link_up();
    let mut master = pair.master.client();
    signal(&pair.slave, "STOP");
    let mut expected = Expected::new();
    let started = Instant::now();
    for i in 0..300 {
        let (key, value) = (format!("s{}", i % 50), format!("v{i}"));
        master
            .put(&key, &value)
            .expect("async write while the slave is stopped");
        expected.insert(key, Some(value));
    }
    let elapsed = started.elapsed();
    signal(&pair.slave, "CONT");
    assert!(
        elapsed < Duration::from_secs(5),
        "300 async writes took {elapsed:?}"
    );
    wait_converged(&pair);
    assert_identical(&pair, &expected);
}

/// A slave of a master that is never there (its port is closed), for the
/// tests that speak raw bytes as its master.
fn lone_slave(args: &[&str]) -> ServerProcess {
    let master = format!("127.0.0.1:{}", common::free_port());
    let mut all = vec![
        "--role",
        "slave",
        "--master-addr",
        &master,
        "--fsync",
        "never",
    ];
    all.extend_from_slice(args);
    ServerProcess::start(&all)
}

/// Issue 13, item 3: a slave trusts no stream. A handshake without a
/// history id, or with id 0, is refused (`Malformed`, with a reason); a
/// snapshot that announces history 0 or another history than the
/// handshake, repeats a key, is out of seq order, holds an entry above its
/// own seq, or ends at another seq than it began, is refused with a
/// `ResyncRequest` naming the fault, and the stream closes: the slave's
/// data is unchanged. A well-formed snapshot is still installed.
#[test]
fn a_slave_refuses_malformed_streams_and_snapshots() {
    const HISTORY: u64 = 0x1234_5678;
    let slave = lone_slave(&[]);
    let mut fake = FakeMaster::connect(&slave.addr(), HISTORY);
    assert_eq!(fake.hello, (0, HISTORY), "an empty slave takes the history");
    for seq in 1..=3 {
        fake.append_put(seq, &format!("k{seq}"), "before");
    }
    fake.wait_ack(3);
    drop(fake);

    for history in [None, Some(0)] {
        let mut stream = common::raw_connect(&slave.addr());
        stream
            .write_all(&common::replica_handshake_bytes(history))
            .expect("send the handshake");
        let (reply, reason) = common::read_reply(&mut stream);
        assert_eq!(reply.status, common::STATUS_MALFORMED, "{history:?}");
        assert!(reason.unwrap_or_default().contains("history id"));
    }

    type Snapshot = fn(&mut FakeMaster);
    let bad: [(&str, Snapshot); 6] = [
        ("history 0", |f| {
            f.snapshot_begin(10, 0, 1);
            f.snapshot_entry(1, "a", "x");
            f.snapshot_end(10);
        }),
        ("another history", |f| {
            f.snapshot_begin(10, HISTORY + 1, 1);
            f.snapshot_entry(1, "a", "x");
            f.snapshot_end(10);
        }),
        ("repeats a key", |f| {
            f.snapshot_begin(10, HISTORY, 2);
            f.snapshot_entry(1, "a", "x");
            f.snapshot_entry(2, "a", "y");
            f.snapshot_end(10);
        }),
        ("out of seq order", |f| {
            f.snapshot_begin(10, HISTORY, 2);
            f.snapshot_entry(2, "a", "x");
            f.snapshot_entry(1, "b", "y");
            f.snapshot_end(10);
        }),
        ("entry above the snapshot's seq", |f| {
            f.snapshot_begin(10, HISTORY, 1);
            f.snapshot_entry(11, "a", "x");
            f.snapshot_end(10);
        }),
        ("end seq differs", |f| {
            f.snapshot_begin(10, HISTORY, 1);
            f.snapshot_entry(1, "a", "x");
            f.snapshot_end(9);
        }),
    ];
    for (what, send) in bad {
        let mut fake = FakeMaster::connect(&slave.addr(), HISTORY);
        send(&mut fake);
        let (kind, _, body) = fake.reply().unwrap_or_else(|| panic!("{what}: no reply"));
        assert_eq!(kind, common::KIND_RESYNC_REQUEST, "{what}");
        let reason = String::from_utf8_lossy(&body[4..]).into_owned();
        assert!(reason.starts_with("malformed snapshot"), "{what}: {reason}");
        assert!(
            common::read_raw_frame(&mut fake.stream).is_none(),
            "{what}: the slave closes the stream"
        );
        let mut client = slave.client();
        assert_eq!(last_seq(&mut client), 3, "{what}: nothing installed");
        for seq in 1..=3 {
            assert_reads(&mut client, &format!("k{seq}"), Some("before"));
        }
        assert_reads(&mut client, "a", None);
    }

    let mut fake = FakeMaster::connect(&slave.addr(), HISTORY);
    fake.snapshot_begin(10, HISTORY, 2);
    fake.snapshot_entry(4, "a", "x");
    fake.snapshot_entry(9, "b", "y");
    fake.snapshot_end(10);
    fake.wait_ack(10);
    let mut client = slave.client();
    assert_eq!(last_seq(&mut client), 10);
    assert_reads(&mut client, "a", Some("x"));
    assert_reads(&mut client, "k1", None);
}

/// Issue 13, item 2: a session that fails after the handshake (here a fake
/// slave that answers, says hello and hangs up) is followed by a wait that
/// doubles, as a failed dial is; `info` shows the wait and the reason.
/// Without it the master dialled again at once, hundreds of times a second.
#[test]
fn a_master_backs_off_after_sessions_that_fail() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake slave");
    let slave_addr = listener.local_addr().expect("local_addr").to_string();
    let sessions = Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    {
        let sessions = sessions.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut fixed = [0u8; 10];
                if stream.read_exact(&mut fixed).is_err() {
                    continue;
                }
                let mut extra = vec![0u8; usize::from(u16::from_be_bytes([fixed[8], fixed[9]]))];
                if stream.read_exact(&mut extra).is_err() {
                    continue;
                }
                let mut reply = b"DUKV".to_vec();
                reply.extend_from_slice(&[0, 1, 0, 3, 0, 0]);
                reply.extend_from_slice(&common::frame_bytes(common::KIND_HELLO, 0, &[0; 16]));
                let _ = stream.write_all(&reply);
                sessions.lock().unwrap().push(Instant::now());
                // Dropped: the session ends right after its handshake.
            }
        });
    }
    let master = ServerProcess::start(&["--role", "master", "--replica", &slave_addr]);
    let times = poll("six sessions", || {
        let times = sessions.lock().unwrap().clone();
        (times.len() >= 6).then_some(times)
    });
    let spread = times[5] - times[0];
    // 50 + 100 + 200 + 400 + 800 ms of waits between the first and sixth.
    assert!(
        spread >= Duration::from_millis(1000),
        "six sessions within {spread:?}: no back-off"
    );
    let mut client = master.client();
    // Between two sessions (the link is up, and shows no wait, during one).
    let (backoff, error) = poll("the wait in info", || {
        let backoff = fact_u64(&mut client, "link_backoff_ms");
        let error = common::info_value_opt(&mut client, "link_last_error")?;
        (backoff > 0).then_some((backoff, error))
    });
    assert!(backoff <= 2000, "{backoff}");
    assert!(
        error.contains("the slave closed the stream")
            || error.contains("the slave's stream failed"),
        "{error}"
    );
}

/// Issue 13, item 4: a second master pointed at a slave that follows a
/// first one is refused (`Fenced`: it is not the slave's --master-addr,
/// and, from a master that does not say its address, its history does not
/// continue the followed one); the slave keeps following the first, holds
/// only its data, and the second's sync writes fail instead of being
/// acknowledged.
#[test]
fn a_second_master_is_fenced_off() {
    let pair = Pair::start(&["--fsync", "never"], &["--fsync", "never"]);
    pair.wait_link_up();
    let mut first = pair.master.client();
    first.put("from", "the first").expect("put");
    wait_converged(&pair);
    let second = ServerProcess::start(&[
        "--role",
        "master",
        "--replica",
        &pair.slave.addr(),
        "--sync-timeout",
        "300ms",
        "--fsync",
        "never",
    ]);
    let mut second_client = second.client();
    let error = poll("the second master to be refused", || {
        let backoff = fact_u64(&mut second_client, "link_backoff_ms");
        let error = common::info_value_opt(&mut second_client, "link_last_error")?;
        (backoff >= 400).then_some(error)
    });
    assert!(
        error.contains("(fenced)") && error.contains(&pair.master.addr()),
        "{error}"
    );
    let refused = second_client.put("from", "the second");
    assert!(
        matches!(refused, Err(Error::ReplicaUnavailable { .. })),
        "{refused:?}"
    );

    // A master that does not say its address, of another history.
    let mut stream = common::raw_connect(&pair.slave.addr());
    stream
        .write_all(&common::replica_handshake_bytes(Some(0xdead_beef)))
        .expect("send the handshake");
    let (reply, reason) = common::read_reply(&mut stream);
    assert_eq!(reply.status, common::STATUS_FENCED, "{reason:?}");

    for i in 0..20 {
        first
            .put(format!("k{i}"), "first")
            .expect("sync put via the first");
    }
    wait_converged(&pair);
    assert_eq!(info_value(&mut first, "link"), "up");
    assert_eq!(fact_u64(&mut first, "link_connects"), 1);
    assert_eq!(fact_u64(&mut first, "full_resyncs"), 0);
    let mut slave = pair.slave.client();
    assert_reads(&mut slave, "from", Some("the first"));
    assert_eq!(
        info_value(&mut slave, "history_id"),
        info_value(&mut first, "history_id")
    );
}

/// Read-your-writes on a slave that is behind: a write made while the
/// slave was down, read on the slave (restarted, its master frozen by
/// SIGSTOP so it cannot catch up) after that write's token. With no wait,
/// and with a short one, the slave says `NotYetVisible` with a visible seq
/// below the token's; a read that waits, and is seen waiting in `info`, is
/// answered with the value once the master resumes and the slave applies
/// the write: never with the old value or none.
#[test]
fn a_read_after_a_token_waits_for_the_write_on_a_slave_behind() {
    let mut pair = Pair::start(
        &["--replication", "async", "--fsync", "never"],
        &["--fsync", "never"],
    );
    pair.wait_link_up();
    let mut master = client_with_tokens(&pair.master.addr());
    master.put("k", "old").expect("put with the slave up");
    let mut slave = pair.slave.client();
    poll("the slave to apply seq 1", || {
        (last_seq(&mut slave) == 1).then_some(())
    });
    drop(slave);
    pair.slave.sigterm();
    pair.slave.wait_exit(DEADLINE);
    let receipt = master
        .put("k", "new")
        .expect("async put with the slave down");
    let token = receipt.token().expect("the master sends tokens");
    assert_eq!(token.seq, 2);
    signal(&pair.master, "STOP");
    pair.slave.restart();
    let mut slave = pair.slave.client();
    assert_eq!(fact_u64(&mut slave, "visible_seq"), 1);
    assert_eq!(fact_u64(&mut slave, "applied_seq"), 1);

    let result = slave.read_after("k", token, Duration::ZERO);
    assert!(
        matches!(result, Err(Error::NotYetVisible { visible_seq: 1, .. })),
        "{result:?}"
    );
    let started = Instant::now();
    let result = slave.read_after("k", token, Duration::from_millis(300));
    let waited = started.elapsed();
    assert!(
        matches!(result, Err(Error::NotYetVisible { visible_seq: 1, .. })),
        "{result:?}"
    );
    assert!(
        waited >= Duration::from_millis(290),
        "answered after {waited:?}"
    );

    let slave_addr = pair.slave.addr();
    let reader = thread::spawn(move || {
        let mut slave = common::client_builder(&slave_addr).build();
        slave.read_after("k", token, Duration::from_secs(30))
    });
    let mut watcher = pair.slave.client();
    poll("the read to wait on the slave", || {
        (fact_u64(&mut watcher, "reads_waiting") == 1).then_some(())
    });
    signal(&pair.master, "CONT");
    let value = reader.join().expect("the reading thread");
    assert_eq!(
        value.expect("the read after the token"),
        Some(b"new".to_vec())
    );
    assert!(fact_u64(&mut watcher, "visible_seq") >= 2);
    assert_eq!(fact_u64(&mut watcher, "reads_waiting"), 0);
}

/// A token of a history the slave does not continue (not its own, not an
/// ancestor) is refused with `UnknownHistory` once the read's wait is over
/// (the slave waits, in case it is its master's next history), by a master
/// at once; a token the slave does continue reads as usual.
#[test]
fn a_read_after_a_token_of_another_history_is_unknown_history() {
    let pair = Pair::start(&["--fsync", "never"], &["--fsync", "never"]);
    pair.wait_link_up();
    let mut master = client_with_tokens(&pair.master.addr());
    let token = master
        .put("k", "v")
        .expect("sync put")
        .token()
        .expect("the master sends tokens");
    let mut slave = pair.slave.client();
    assert_eq!(
        slave
            .read_after("k", token, Duration::ZERO)
            .expect("a token the slave continues"),
        Some(b"v".to_vec())
    );
    let stranger = duokv::Token {
        history: token.history ^ 0x5555_5555_5555_5555,
        seq: 1,
    };
    let started = Instant::now();
    let wait = Duration::from_millis(300);
    let result = slave.read_after("k", stranger, wait);
    assert!(
        matches!(result, Err(Error::UnknownHistory { .. })),
        "{result:?}"
    );
    let waited = started.elapsed();
    assert!(waited >= wait && waited < DEADLINE, "waited {waited:?}");
    let result = master.read_after("k", stranger, Duration::ZERO);
    assert!(
        matches!(result, Err(Error::UnknownHistory { .. })),
        "{result:?}"
    );
}

/// A master restarts (a new history) while its slave is frozen; a token
/// of a write to the new master, read on the slave as soon as it runs
/// again, waits for the slave to follow the new history and returns the
/// write, rather than `UnknownHistory`.
#[test]
fn a_token_of_a_restarted_masters_new_history_waits_on_the_slave() {
    let mut pair = Pair::start(&["--replication", "async"], &[]);
    pair.wait_link_up();
    let before = pair.master.client().put("k", "old").expect("a write");
    let mut slave = pair.slave.client();
    assert!(
        slave
            .read_after("k", before.token().unwrap(), DEADLINE)
            .is_ok()
    );
    pair.master.sigkill();
    pair.slave.signal("SIGSTOP");
    pair.master.restart();
    // A restarted master takes writes once it has heard from its slave's
    // side (it may have been replaced meanwhile): here, once its dial to
    // the frozen slave times out; until then it answers SwitchingOver.
    let mut master = pair.master.client();
    let after = poll("the restarted master to take a write", || {
        match master.put("k", "new") {
            Ok(receipt) => Some(receipt),
            Err(Error::SwitchingOver { .. }) => None,
            Err(e) => panic!("a write to the restarted master: {e}"),
        }
    });
    let token = after.token().unwrap();
    assert_ne!(
        token.history,
        before.token().unwrap().history,
        "a new history"
    );
    let slave_addr = pair.slave.addr();
    let reader = std::thread::spawn(move || {
        let mut slave = client_with_tokens(&slave_addr);
        slave.read_after("k", token, DEADLINE)
    });
    pair.slave.signal("SIGCONT");
    let got = reader.join().expect("the reader thread");
    assert_eq!(
        got.expect("the read after the new token"),
        Some(b"new".to_vec())
    );
}

/// A client of `addr` (it asks for write tokens, as every client does).
fn client_with_tokens(addr: &str) -> Client {
    common::client_builder(addr).connect().expect("connect")
}
