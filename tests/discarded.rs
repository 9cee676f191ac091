//! End-to-end tests of the discarded-writes file (issue 15, item 2): a node
//! that joins a master whose history does not hold some of its writes saves
//! them before the full resync replaces them, or refuses the stream when it
//! cannot.
//!
//! The scene, with real `duokv-server` processes: an async pair takes
//! writes; the slave goes down; the master acknowledges more writes, then
//! is killed; the slave's data directory is promoted by hand (restarted as
//! master) and the old master's restarted as its slave. The old master
//! holds acknowledged writes the new master's history does not.

mod common;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::{DEADLINE, Pair, ServerProcess, discarded_files, info_value, last_seq, poll};
use duokv::Client;
use duokv::discarded_writes::{self, SavedWrite};
use duokv::storage::Op;

/// The wall clock now, in UNIX nanoseconds.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_nanos() as u64
}

/// Starts a server on `addr` (a port another server just left) with its
/// store in `data_dir`, retrying while the port is not free again.
fn start_at(addr: &str, data_dir: &Path, args: &[&str]) -> ServerProcess {
    let addr: SocketAddr = addr.parse().expect("a socket address");
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let deadline = Instant::now() + DEADLINE;
    loop {
        match ServerProcess::try_start_at(addr, data_dir, &args) {
            Ok(server) => return server,
            Err(log) => assert!(Instant::now() < deadline, "no start on {addr}:\n{log}"),
        }
    }
}

/// What the scene leaves: the new master (the promoted slave), the new
/// slave (the old master), the pair whose directories they use, and the
/// writes only the old master holds with the clock readings around them.
struct Promoted {
    new_master: ServerProcess,
    new_slave: ServerProcess,
    _pair: Pair,
    before_ns: u64,
    after_ns: u64,
}

/// Plays the scene (see the crate docs) up to the restart of both nodes
/// in their new roles; `prepare` runs on the old master's data directory
/// before it restarts as a slave.
fn promote_after_losing_writes(prepare: impl FnOnce(&Path)) -> Promoted {
    let mut pair = Pair::start(&["--replication", "async"], &[]);
    pair.wait_link_up();
    let mut master = pair.master.client();
    for i in 0..5 {
        master.put(format!("k{i}"), "replicated").expect("put");
    }
    let mut slave = pair.slave.client();
    poll("the slave to hold seq 5", || {
        (last_seq(&mut slave) == 5).then_some(())
    });
    drop(slave);
    pair.slave.sigterm();
    assert!(pair.slave.wait_exit(DEADLINE).success());

    // Acknowledged by the async master, never replicated.
    let before_ns = now_ns();
    master
        .put("extra:a", "only on the old master")
        .expect("put");
    master
        .put("extra,\n\"b\"", [0u8, 255, 44, 10])
        .expect("put");
    master.delete("k0").expect("delete");
    let after_ns = now_ns();
    assert_eq!(last_seq(&mut master), 8);
    drop(master);
    pair.master.sigkill();
    pair.master.wait_exit(DEADLINE);

    prepare(pair.master.data_dir());
    let (old_master_addr, old_slave_addr) = (pair.master.addr(), pair.slave.addr());
    let new_slave = start_at(
        &old_master_addr,
        pair.master.data_dir(),
        &["--role", "slave", "--master-addr", &old_slave_addr],
    );
    let new_master = start_at(
        &old_slave_addr,
        pair.slave.data_dir(),
        &[
            "--role",
            "master",
            "--replica",
            &old_master_addr,
            "--replication",
            "async",
        ],
    );
    Promoted {
        new_master,
        new_slave,
        _pair: pair,
        before_ns,
        after_ns,
    }
}

/// Polls until both nodes have the same history and last seq, and the
/// slave reads `key` as the master does.
fn wait_converged(master: &ServerProcess, slave: &ServerProcess) {
    let (mut m, mut s) = (master.client(), slave.client());
    poll("the new slave to be resynced from the new master", || {
        let same = info_value(&mut m, "history_id") == info_value(&mut s, "history_id")
            && last_seq(&mut m) == last_seq(&mut s);
        same.then_some(())
    });
}

fn assert_extra_rows(rows: &[SavedWrite], promoted: &Promoted) {
    assert_eq!(rows.len(), 3, "{rows:?}");
    let seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![6, 7, 8]);
    assert_eq!(
        rows[0].op,
        Op::Put {
            key: b"extra:a".to_vec(),
            value: b"only on the old master".to_vec()
        }
    );
    assert_eq!(
        rows[1].op,
        Op::Put {
            key: b"extra,\n\"b\"".to_vec(),
            value: vec![0, 255, 44, 10]
        }
    );
    assert_eq!(
        rows[2].op,
        Op::Delete {
            key: b"k0".to_vec()
        }
    );
    for row in rows {
        let ns = row
            .written_ns
            .unwrap_or_else(|| panic!("seq {} has no time", row.seq));
        assert!(
            (promoted.before_ns..=promoted.after_ns).contains(&ns),
            "seq {}: {} <= {ns} <= {}",
            row.seq,
            promoted.before_ns,
            promoted.after_ns
        );
    }
}

/// The writes the old master acknowledged while its slave was down are
/// saved, with their seqs, keys, values and write times, in its data
/// directory before the resync from the promoted slave replaces them; the
/// log names the file; the two converge on the new master's data.
#[test]
fn an_old_master_saves_the_writes_its_promoted_slave_lacks() {
    let promoted = promote_after_losing_writes(|_| {});
    let (master, slave) = (&promoted.new_master, &promoted.new_slave);
    wait_converged(master, slave);
    let files = discarded_files(slave.data_dir());
    assert_eq!(files.len(), 1, "{files:?}\n{}", slave.log());
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.contains("-6-8-"), "{name}");
    let rows = discarded_writes::read(&files[0]).expect("read the discarded-writes file");
    assert_extra_rows(&rows, &promoted);
    // The master is named by the address it dialled from.
    let log = slave.log();
    let history = info_value(&mut master.client(), "history_id");
    let saved = format!(
        "3 writes after seq 5, which master 127.0.0.1:{{port}}'s history {history} does not \
         hold, were saved to {} before the resync replaces them",
        files[0].display()
    );
    let (head, tail) = saved.split_once("{port}").unwrap();
    assert!(
        log.lines().any(|line| line.contains(head)
            && line.split_once(head).is_some_and(|(_, rest)| rest
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .starts_with(tail))),
        "no {saved:?} in\n{log}"
    );

    // The new master's data, on both: the extra writes are gone.
    let (mut m, mut s): (Client, Client) = (master.client(), slave.client());
    assert_eq!(last_seq(&mut m), 5);
    for client in [&mut m, &mut s] {
        assert_eq!(
            client.read("k0").unwrap().as_deref(),
            Some(&b"replicated"[..])
        );
        assert_eq!(client.read("extra:a").unwrap(), None);
    }
    // New writes flow to the new slave; the file stays.
    m.put("after", "promotion").expect("put");
    poll("the new write on the new slave", || {
        s.read("after").ok()?.is_some().then_some(())
    });
    assert_eq!(discarded_files(slave.data_dir()), files);
}

/// When the file cannot be written (a directory stands where its temporary
/// file goes: as root, permission bits would not stop the write), the old
/// master refuses the stream and keeps its writes; once the obstacle is
/// gone, the master's next attempt saves them and resyncs.
#[test]
fn a_slave_that_cannot_save_the_writes_refuses_the_stream() {
    let promoted = promote_after_losing_writes(|data_dir| {
        fs::create_dir(data_dir.join(discarded_writes::TEMP_NAME)).expect("block the temp file");
    });
    let (master, slave) = (&promoted.new_master, &promoted.new_slave);
    poll("the slave to refuse the stream", || {
        slave
            .log()
            .contains("cannot save them before a resync")
            .then_some(())
    });
    let mut s = slave.client();
    assert_eq!(last_seq(&mut s), 8, "the writes are kept");
    assert!(discarded_files(slave.data_dir()).is_empty());
    let log = slave.log();
    assert!(log.contains(discarded_writes::TEMP_NAME), "{log}");
    assert!(
        info_value(&mut s, "history_id") != info_value(&mut master.client(), "history_id"),
        "no resync happened"
    );

    fs::remove_dir(slave.data_dir().join(discarded_writes::TEMP_NAME)).expect("unblock");
    wait_converged(master, slave);
    let files = discarded_files(slave.data_dir());
    assert_eq!(files.len(), 1, "{files:?}");
    let rows = discarded_writes::read(&files[0]).expect("read the file");
    assert_extra_rows(&rows, &promoted);
}

/// With `--on-divergence resync`, a slave whose master was replaced by one
/// of an unrelated history (restarted on an empty data directory) saves
/// its whole log, every seq from 1, before the resync replaces it; a
/// slave that refuses such a master (the default) saves nothing.
#[test]
fn an_unrelated_history_resync_saves_the_whole_log() {
    let mut pair = Pair::start(&["--replication", "async"], &["--on-divergence", "resync"]);
    pair.wait_link_up();
    let mut master = pair.master.client();
    let before_ns = now_ns();
    for i in 0..4 {
        master.put(format!("old{i}"), "first history").expect("put");
    }
    master.delete("old0").expect("delete");
    let mut slave = pair.slave.client();
    poll("the slave to hold seq 5", || {
        (last_seq(&mut slave) == 5).then_some(())
    });
    drop((master, slave));
    pair.slave.sigterm();
    assert!(pair.slave.wait_exit(DEADLINE).success());
    pair.master.sigkill();
    pair.master.wait_exit(DEADLINE);
    let data = pair.master.data_dir().to_path_buf();
    fs::remove_dir_all(&data).expect("wipe the master's data dir");
    fs::create_dir_all(&data).expect("recreate it empty");
    pair.master.restart();
    pair.master
        .client()
        .put("new", "second history")
        .expect("put");
    pair.slave.restart();
    wait_converged(&pair.master, &pair.slave);

    let files = discarded_files(pair.slave.data_dir());
    assert_eq!(files.len(), 1, "{files:?}\n{}", pair.slave.log());
    assert!(files[0].to_string_lossy().contains("-1-5-"), "{files:?}");
    let rows = discarded_writes::read(&files[0]).expect("read the file");
    let seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    assert_eq!(
        rows[4].op,
        Op::Delete {
            key: b"old0".to_vec()
        }
    );
    // The slave applied them: its own clock, when it did.
    assert!(rows.iter().all(|r| {
        r.written_ns
            .is_some_and(|ns| (before_ns..=now_ns()).contains(&ns))
    }));
    let mut slave = pair.slave.client();
    assert_eq!(slave.read("old1").unwrap(), None);
    assert!(
        pair.slave.log().contains("5 writes after seq 0"),
        "{}",
        pair.slave.log()
    );
}
