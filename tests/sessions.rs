//! End-to-end tests of sessions ([`Session`], [`ReplicaSet::session_read`])
//! and bounded reads ([`Client::read_fresh`]) against real `duokv-server`
//! processes (see `common`) on ports chosen at run time, with their stores
//! in temporary directories.
//!
//! What they hold a session to: it reads its own writes (and deletes) on
//! the slave of an async pair, never the value before; its reads never go
//! back in time as they alternate between master and slave while a writer
//! runs; and a replica set answers from the master, and says why, when the
//! slave is down, stopped, of another history, or cannot prove a staleness
//! bound. A bounded read on a master answers at once; a slave without its
//! master refuses it with no bound once its wait has passed. Nothing here
//! sleeps to synchronise: every wait is a poll with a deadline.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{DEADLINE, Pair, ServerProcess, client_builder, free_port, poll};
use duokv::replica_set::{ReadFrom, Replica, ReplicaSet};
use duokv::{Client, Error, Session};

/// A wait long enough that a slave of a running async pair always shows a
/// write within it: a session read that falls back instead fails the test.
const PATIENT: Duration = Duration::from_secs(5);

/// A master and a slave in async mode: a write is acknowledged before the
/// slave has it, so a slave read right after a write is the case a session
/// must get right. The master does not sync; the slave runs with
/// `slave_args` (by default it syncs every write, which keeps it behind).
fn async_pair(slave_args: &[&str]) -> Pair {
    let pair = Pair::start(&["--replication", "async", "--fsync", "never"], slave_args);
    pair.wait_link_up();
    pair
}

/// A set reading the slave of `pair` under a session with `wait`.
fn slave_reading_set(pair: &Pair, wait: Duration) -> ReplicaSet {
    ReplicaSet::from_clients(
        client_builder(&pair.master.addr()).build(),
        client_builder(&pair.slave.addr()).build(),
    )
    .read_from(ReadFrom::Slave)
    .with_session(Session::new().wait(wait))
}

/// Read-your-writes on an async slave: over 200 rounds of a write through
/// the set (on the master) then a session read on the slave, the slave
/// answers every read, and with the value just written, never the one
/// before; a delete is read back as absent, on the slave too.
#[test]
fn a_session_reads_its_own_writes_on_an_async_slave() {
    let pair = async_pair(&[]);
    let mut set = slave_reading_set(&pair, PATIENT);
    for i in 0..200 {
        let value = format!("v{i}");
        let receipt = set.put("k", &value).expect("put through the set");
        assert_eq!(set.session().token(), receipt.token());
        let read = set.session_read("k").expect("session read");
        assert_eq!(read.answered_by, Replica::Slave, "round {i}: {read:?}");
        assert!(read.fell_back.is_none(), "round {i}: {read:?}");
        assert_eq!(read.value, Some(value.into_bytes()), "round {i}");
        assert_eq!(read.seq, receipt.seq, "round {i}");
    }
    set.delete("k").expect("delete through the set");
    let read = set.session_read("k").expect("session read after a delete");
    assert_eq!(read.value, None);
    assert_eq!(read.answered_by, Replica::Slave, "{read:?}");
}

/// Monotonic reads: one session reads a key alternately from the master
/// and from the slave, through two plain clients, while another client
/// keeps writing it; the seqs it reads never go backwards, though the
/// slave is behind the master (a read on the slave waits for what the
/// session saw on the master).
#[test]
fn session_reads_never_go_back_across_master_and_slave() {
    // A slave that syncs nothing either keeps up with a writer that never
    // pauses (no read waits long), and is still behind by a write or so.
    let pair = async_pair(&["--fsync", "never"]);
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written) = (Arc::clone(&stop), Arc::clone(&written));
        let mut master = pair.master.client();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let receipt = master.put("m", "x").expect("the writer's put");
                written.store(receipt.seq, Ordering::Relaxed);
            }
        })
    };
    poll("the writer to start", || {
        (written.load(Ordering::Relaxed) > 0).then_some(())
    });
    let mut master = pair.master.client();
    let mut slave = pair.slave.client();
    let mut session = Session::new().wait(PATIENT);
    let mut seqs = Vec::new();
    for i in 0..300 {
        let replica = if i % 2 == 0 { &mut master } else { &mut slave };
        let read = session.read(replica, "m").expect("session read");
        assert!(read.value.is_some(), "read {i}: {read:?}");
        seqs.push(read.seq);
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("the writer");
    let backwards: Vec<_> = seqs.windows(2).filter(|w| w[1] < w[0]).collect();
    assert!(backwards.is_empty(), "reads went back: {backwards:?}");
    assert!(
        seqs.last() > seqs.first(),
        "the key changed while it was read: {seqs:?}"
    );
}

/// A set whose slave is not there (nothing listens on its port) answers
/// every session read from the master, saying it could not connect.
#[test]
fn a_session_read_falls_back_to_the_master_when_the_slave_is_down() {
    let master = ServerProcess::start(&["--fsync", "never"]);
    let dead = format!("127.0.0.1:{}", free_port());
    let mut set = ReplicaSet::new(master.addr(), dead).read_from(ReadFrom::Slave);
    for i in 0..3 {
        set.put("k", format!("v{i}")).expect("put on the master");
        let read = set.session_read("k").expect("session read");
        assert_eq!(read.value, Some(format!("v{i}").into_bytes()));
        assert_eq!(read.answered_by, Replica::Master);
        assert!(
            matches!(read.fell_back, Some(Error::Connect { .. })),
            "{read:?}"
        );
    }
}

/// A stopped slave (SIGSTOP: it accepts nothing, answers nothing) costs a
/// session read its client's read timeout, then the master answers, saying
/// the slave timed out; once resumed, the slave answers again.
#[test]
fn a_session_read_falls_back_to_the_master_when_the_slave_is_stopped() {
    let pair = async_pair(&[]);
    let quick = Duration::from_millis(300);
    let mut set = ReplicaSet::from_clients(
        client_builder(&pair.master.addr()).build(),
        Client::builder(pair.slave.addr())
            .connect_timeout(quick)
            .read_timeout(quick)
            .write_timeout(quick)
            .build(),
    )
    .read_from(ReadFrom::Slave)
    .with_session(Session::new().wait(Duration::from_millis(50)));
    set.put("k", "before").expect("put");
    poll("the slave to answer a session read", || {
        let read = set.session_read("k").expect("session read");
        (read.answered_by == Replica::Slave).then_some(())
    });

    stop(&pair.slave);
    set.put("k", "during")
        .expect("async put with the slave stopped");
    let started = Instant::now();
    let read = set.session_read("k");
    let took = started.elapsed();
    pair.slave.signal("SIGCONT");
    let read = read.expect("session read with the slave stopped");
    assert_eq!(read.answered_by, Replica::Master, "{read:?}");
    assert!(
        matches!(read.fell_back, Some(Error::Timeout { .. })),
        "{read:?}"
    );
    assert_eq!(read.value, Some(b"during".to_vec()));
    assert!(took < Duration::from_secs(3), "fell back after {took:?}");

    let read = poll("the resumed slave to answer a session read", || {
        let read = set.session_read("k").expect("session read");
        (read.answered_by == Replica::Slave).then_some(read)
    });
    assert_eq!(read.value, Some(b"during".to_vec()));
}

/// A bounded read on a master answers at once, whatever its wait: a
/// master's data is the newest there is. So does a set's session read
/// with a bound, from the master.
#[test]
fn a_bounded_read_on_a_master_answers_at_once() {
    let pair = async_pair(&[]);
    let mut master = pair.master.client();
    master.put("k", "v").expect("put");
    let started = Instant::now();
    let value = master
        .read_fresh("k", Duration::from_micros(1), PATIENT)
        .expect("bounded read on the master");
    assert_eq!(value, Some(b"v".to_vec()));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered after {:?}",
        started.elapsed()
    );
    let mut set = ReplicaSet::new(pair.master.addr(), pair.slave.addr())
        .with_session(Session::new().max_staleness(Duration::from_millis(5)));
    let read = set.session_read("k").expect("bounded session read");
    assert_eq!(read.value, Some(b"v".to_vec()));
    assert_eq!(read.answered_by, Replica::Master);
    assert!(read.fell_back.is_none(), "{read:?}");
}

/// A slave that has never heard from a master cannot prove any bound: a
/// bounded read waits out its wait, then is refused with `TooStale` and a
/// bound of `u64::MAX`; a set whose session has a bound then reads the
/// master, saying so. Its session token, of the master's history, is
/// `UnknownHistory` to that slave, and the master answers again.
#[test]
fn a_slave_without_a_master_refuses_bounded_reads_and_the_set_reads_the_master() {
    let master = ServerProcess::start(&["--fsync", "never"]);
    let absent = format!("127.0.0.1:{}", free_port());
    let lone = ServerProcess::start(&["--role", "slave", "--master-addr", &absent]);
    let mut slave = lone.client();
    let wait = Duration::from_millis(300);
    let started = Instant::now();
    let result = slave.read_fresh("k", Duration::from_millis(5), wait);
    let waited = started.elapsed();
    assert!(
        matches!(
            result,
            Err(Error::TooStale {
                bound_us: u64::MAX,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(
        waited >= wait - Duration::from_millis(10) && waited < DEADLINE,
        "refused after {waited:?}"
    );

    let mut set = ReplicaSet::new(master.addr(), lone.addr())
        .read_from(ReadFrom::Slave)
        .with_session(
            Session::new()
                .max_staleness(Duration::from_millis(5))
                .wait(Duration::from_millis(50)),
        );
    let read = set.session_read("k").expect("bounded session read");
    assert_eq!((&read.value, read.answered_by), (&None, Replica::Master));
    assert!(
        matches!(
            read.fell_back,
            Some(Error::TooStale {
                bound_us: u64::MAX,
                ..
            })
        ),
        "{read:?}"
    );
    set.put("k", "v").expect("put on the master");
    let read = set.session_read("k").expect("session read after a put");
    assert_eq!(read.value, Some(b"v".to_vec()));
    assert_eq!(read.answered_by, Replica::Master);
    assert!(
        matches!(read.fell_back, Some(Error::UnknownHistory { .. })),
        "{read:?}"
    );
}

/// Stops `server` with SIGSTOP and waits until every thread of it is
/// stopped (the signal is delivered asynchronously).
fn stop(server: &ServerProcess) {
    common::sigstop_and_wait(server);
}
