//! The read contracts of a slave (`PROTOCOL.md` 5.2, 7.9), against the real
//! `duokv-server`: a slave shows a write only once its master said it is
//! durable there, keeps that across a restart, never shows a write its
//! master lost in a power cut, and proves its staleness from probes.
//!
//! The wire-level tests play the master themselves (a [`FakeMaster`]-like
//! stream with commit notices), so every step is decided by the test, not
//! by timing.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    DEADLINE, KIND_ACK, KIND_APPEND, KIND_HELLO, Pair, STATUS_OK, ServerProcess, info_value,
    key_value_body, poll, read_raw_frame,
};
use duokv::{Client, Error};

/// `Commit`, master to slave.
const KIND_COMMIT: u8 = 0x47;
/// `Probe`, slave to master.
const KIND_PROBE: u8 = 0x48;
/// `Visible`, slave to master.
const KIND_VISIBLE: u8 = 0x49;
/// The history the fake master claims.
const HISTORY: u64 = 0x5eed_0000_0000_0001;

fn fact_u64(client: &mut Client, name: &str) -> u64 {
    let value = info_value(client, name);
    value
        .parse()
        .unwrap_or_else(|_| panic!("`{name}` is not a number: {value:?}"))
}

/// A slave following the master at `master_addr`, alone.
fn lone_slave(master_addr: &str) -> ServerProcess {
    ServerProcess::start(&["--role", "slave", "--master-addr", master_addr])
}

/// A master's replication stream to a slave that offers commit notices
/// (stream field 6, bit 0), or not.
struct Stream {
    stream: TcpStream,
    /// The slave's `Hello`: its last applied seq.
    slave_last_seq: u64,
    /// Whether the slave took commit notices up (reply field 2).
    notices: bool,
}

impl Stream {
    fn open(addr: &str, offer_notices: bool) -> Stream {
        let mut extra = vec![1, 0, 8];
        extra.extend_from_slice(&HISTORY.to_be_bytes());
        if offer_notices {
            extra.extend_from_slice(&[6, 0, 4, 0, 0, 0, 1]);
        }
        let mut handshake = b"DUKV".to_vec();
        handshake.extend_from_slice(&1u16.to_be_bytes());
        handshake.extend_from_slice(&[2, 0]);
        handshake.extend_from_slice(&(extra.len() as u16).to_be_bytes());
        handshake.extend_from_slice(&extra);
        let mut stream = common::raw_connect(addr);
        stream.write_all(&handshake).expect("send the handshake");
        let (status, features) = read_acceptance(&mut stream);
        assert_eq!(status, STATUS_OK);
        let notices = features & 1 == 1;
        let (kind, _, body) = read_raw_frame(&mut stream).expect("the slave's hello");
        assert_eq!(kind, KIND_HELLO);
        Stream {
            stream,
            slave_last_seq: u64::from_be_bytes(body[..8].try_into().unwrap()),
            notices,
        }
    }

    fn send(&mut self, kind: u8, seq: u64, body: &[u8]) {
        self.stream
            .write_all(&common::frame_bytes(kind, seq, body))
            .expect("send a frame");
    }

    fn append_put(&mut self, seq: u64, key: &str, value: &str) {
        let mut body = seq.to_be_bytes().to_vec();
        body.push(1);
        body.extend_from_slice(&key_value_body(key.as_bytes(), value.as_bytes()));
        self.send(KIND_APPEND, seq, &body);
    }

    fn commit(&mut self, seq: u64, probe: u64) {
        let body = [seq, probe].map(u64::to_be_bytes).concat();
        self.send(KIND_COMMIT, seq, &body);
    }

    /// Reads the slave's acks until one covers `seq` (a batch may be
    /// applied, and acknowledged, in parts).
    fn acked_through(&mut self, seq: u64) {
        while self.expect(KIND_ACK) < seq {}
    }

    /// The slave's next frame of `kind` and its seq (or probe id), skipping
    /// probes unless asked for.
    fn expect(&mut self, kind: u8) -> u64 {
        loop {
            let (got, _, body) = read_raw_frame(&mut self.stream).expect("a frame from the slave");
            let value = u64::from_be_bytes(body[..8].try_into().unwrap());
            if got == kind {
                return value;
            }
            assert_eq!(got, KIND_PROBE, "unexpected frame kind {got:#x}");
        }
    }
}

/// A handshake reply's status and the stream features it names (reply
/// field 2; 0 if none).
fn read_acceptance(stream: &mut TcpStream) -> (u8, u32) {
    let mut fixed = [0u8; 10];
    stream.read_exact(&mut fixed).expect("read the reply");
    let mut extra = vec![0u8; usize::from(u16::from_be_bytes([fixed[8], fixed[9]]))];
    stream
        .read_exact(&mut extra)
        .expect("read the reply's extra");
    let mut features = 0;
    let mut at = 0;
    while at + 3 <= extra.len() {
        let len = usize::from(u16::from_be_bytes([extra[at + 1], extra[at + 2]]));
        if extra[at] == 2 && len == 4 {
            features = u32::from_be_bytes(extra[at + 3..at + 7].try_into().unwrap());
        }
        at += 3 + len;
    }
    (fixed[6], features)
}

/// A write applied on the slave stays hidden from its readers, and from
/// reads after its token, until the master's `Commit` covers it; the slave
/// acknowledges it at once (it is durable there) and answers the commit
/// with `Visible`. It stays hidden across a restart of the slave, and a
/// commit notice to the restarted slave shows it.
#[test]
fn a_slave_shows_a_write_only_once_a_commit_notice_covers_it() {
    let master_port = common::free_port();
    let mut slave = lone_slave(&format!("127.0.0.1:{master_port}"));
    let mut stream = Stream::open(&slave.addr(), true);
    assert!(stream.notices);
    assert_eq!(stream.slave_last_seq, 0);
    stream.append_put(1, "k", "one");
    stream.commit(1, 0);
    assert_eq!(stream.expect(KIND_ACK), 1);
    assert_eq!(stream.expect(KIND_VISIBLE), 1);

    stream.append_put(2, "k", "two");
    stream.append_put(3, "other", "three");
    stream.acked_through(3);
    let mut client = slave.client();
    assert_eq!(fact_u64(&mut client, "applied_seq"), 3);
    assert_eq!(fact_u64(&mut client, "visible_seq"), 1);
    assert_eq!(client.read("k").unwrap(), Some(b"one".to_vec()));
    assert_eq!(client.read("other").unwrap(), None);
    let token = duokv::Token {
        history: HISTORY,
        seq: 2,
    };
    match client.read_after("k", token, Duration::ZERO) {
        Err(Error::NotYetVisible { visible_seq, .. }) => assert_eq!(visible_seq, 1),
        other => panic!("a read after a held write: {other:?}"),
    }

    // Held across a restart: the slave does not know whether its master
    // kept seqs 2 and 3.
    drop(stream);
    slave.sigkill();
    slave.restart();
    let mut client = slave.client();
    assert_eq!(fact_u64(&mut client, "applied_seq"), 3);
    assert_eq!(fact_u64(&mut client, "visible_seq"), 1);
    assert_eq!(client.read("k").unwrap(), Some(b"one".to_vec()));

    let mut stream = Stream::open(&slave.addr(), true);
    assert_eq!(stream.slave_last_seq, 3, "the hello names what it holds");
    stream.commit(2, 0);
    assert_eq!(stream.expect(KIND_VISIBLE), 2);
    assert_eq!(client.read("k").unwrap(), Some(b"two".to_vec()));
    assert_eq!(client.read("other").unwrap(), None, "seq 3 still held");
    // A commit ahead of what the slave holds covers later appends at once.
    stream.commit(5, 0);
    assert_eq!(stream.expect(KIND_VISIBLE), 3);
    stream.append_put(4, "k", "four");
    assert_eq!(stream.expect(KIND_ACK), 4);
    assert_eq!(stream.expect(KIND_VISIBLE), 4);
    assert_eq!(client.read("k").unwrap(), Some(b"four".to_vec()));
    assert_eq!(fact_u64(&mut client, "master_durable_seq"), 5);
}

/// A master of an earlier build offers no commit notices: the slave shows
/// each batch once applied, as before, and sends no probes.
#[test]
fn a_master_without_commit_notices_gets_the_old_behaviour() {
    let master_port = common::free_port();
    let slave = lone_slave(&format!("127.0.0.1:{master_port}"));
    let mut stream = Stream::open(&slave.addr(), false);
    stream.append_put(1, "k", "one");
    stream.append_put(2, "k", "two");
    // Only acks come: a probe or `Visible` would fail this.
    let (kind, _, body) = read_raw_frame(&mut stream.stream).expect("an ack");
    assert_eq!(kind, KIND_ACK);
    let mut acked = u64::from_be_bytes(body[..8].try_into().unwrap());
    if acked < 2 {
        let (kind, _, body) = read_raw_frame(&mut stream.stream).expect("an ack");
        assert_eq!(kind, KIND_ACK);
        acked = u64::from_be_bytes(body[..8].try_into().unwrap());
    }
    assert_eq!(acked, 2);
    let mut client = slave.client();
    assert_eq!(fact_u64(&mut client, "visible_seq"), 2);
    assert_eq!(client.read("k").unwrap(), Some(b"two".to_vec()));
    assert_eq!(info_value(&mut client, "staleness_bound_ms"), "none");
    stream
        .stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert!(
        read_raw_frame(&mut stream.stream).is_none(),
        "no probe to a master that does not answer them"
    );
}

/// The slave probes its master: answering a probe with a commit the slave
/// shows gives it a staleness bound, which grows while nothing answers.
#[test]
fn answered_probes_give_the_slave_a_staleness_bound() {
    let master_port = common::free_port();
    let slave = lone_slave(&format!("127.0.0.1:{master_port}"));
    let mut client = slave.client();
    assert_eq!(info_value(&mut client, "staleness_bound_ms"), "none");
    let mut stream = Stream::open(&slave.addr(), true);
    let probe = stream.expect(KIND_PROBE);
    assert!(probe > 0);
    stream.commit(0, probe);
    let bound = poll("a staleness bound", || {
        info_value(&mut client, "staleness_bound_ms")
            .parse::<f64>()
            .ok()
    });
    assert!(bound < 10_000.0, "{bound} ms");
    // Nothing answers any more: the bound only grows.
    let before = info_value(&mut client, "staleness_bound_ms")
        .parse::<f64>()
        .unwrap();
    let later = poll("the bound to grow", || {
        let now: f64 = info_value(&mut client, "staleness_bound_ms").parse().ok()?;
        (now > before + 20.0).then_some(now)
    });
    assert!(later > before);
}

/// The power cut the issue describes: the master's batch is written and
/// forwarded, then its sync is lost (the segment cut back to its last
/// synced length, as the power going off would) and the master hangs until
/// it is killed. The slave applied and acknowledged the batch, but a reader
/// on the slave never sees it: not while the master hangs, not after the
/// slave restarts, not after the master comes back (with a new history,
/// without the write) and the slave is resynced.
#[test]
fn a_slave_never_shows_a_write_its_master_lost_in_a_power_cut() {
    let trigger_dir = tempfile::tempdir().unwrap();
    let trigger = trigger_dir.path().join("cut");
    let trigger_arg = trigger.display().to_string();
    let mut pair = Pair::start(
        &[
            "--replication",
            "async",
            "--test-power-cut-when",
            &trigger_arg,
        ],
        &[],
    );
    pair.wait_link_up();
    let mut master = pair.master.client();
    let before = master
        .put("k", "acknowledged")
        .expect("a write before the cut");
    let mut slave = pair.slave.client();
    let token = before.token().unwrap();
    assert_eq!(
        slave.read_after("k", token, DEADLINE).unwrap(),
        Some(b"acknowledged".to_vec())
    );

    std::fs::write(&trigger, b"").unwrap();
    let master_addr = pair.master.addr();
    let lost = thread::spawn(move || {
        let mut client = common::client_builder(&master_addr)
            .read_timeout(Duration::from_secs(3))
            .connect()
            .expect("connect to the master");
        client.put("k", "lost in the power cut")
    });
    poll("the slave to apply the batch the master is losing", || {
        (fact_u64(&mut slave, "applied_seq") > before.seq).then_some(())
    });
    let watch_until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < watch_until {
        assert_eq!(
            slave.read("k").unwrap(),
            Some(b"acknowledged".to_vec()),
            "a reader on the slave sees only what the master made durable"
        );
    }
    assert_eq!(fact_u64(&mut slave, "visible_seq"), before.seq);
    assert!(
        lost.join().unwrap().is_err(),
        "the lost write is never acknowledged"
    );

    pair.master.sigkill();
    pair.master.wait_exit(DEADLINE);
    pair.slave.sigkill();
    pair.slave.restart();
    let mut slave = pair.slave.client();
    assert_eq!(slave.read("k").unwrap(), Some(b"acknowledged".to_vec()));

    std::fs::remove_file(&trigger).unwrap();
    pair.master.restart();
    let mut master = pair.master.client();
    assert_eq!(
        master.read("k").unwrap(),
        Some(b"acknowledged".to_vec()),
        "the master lost the unsynced write"
    );
    let after = master
        .put("k", "after the cut")
        .expect("a write after the cut");
    let token = after.token().unwrap();
    let value = poll("the slave to follow the restarted master", || {
        match slave.read_after("k", token, Duration::from_millis(200)) {
            Ok(value) => Some(value),
            Err(Error::NotYetVisible { .. } | Error::UnknownHistory { .. }) => {
                assert_eq!(slave.read("k").unwrap(), Some(b"acknowledged".to_vec()));
                None
            }
            Err(e) => panic!("read on the slave: {e}"),
        }
    });
    assert_eq!(value, Some(b"after the cut".to_vec()));
    assert_eq!(
        fact_u64(&mut master, "full_resyncs"),
        1,
        "the slave held a write of the old history past the new one's start"
    );
}

/// On a real pair, a read on the slave with a staleness bound is served
/// once the slave can prove the bound (it probes its master at once when
/// it needs a fresher proof), and returns a value at least as new as every
/// write acknowledged longer than the bound before the read began. With
/// its master frozen (SIGSTOP: the socket stays open, nothing answers) the
/// proof ages: the read waits out its wait and is refused with `TooStale`
/// and the bound it could prove; once the master runs again it is served.
/// With the master gone, the refusal says so.
#[test]
fn bounded_reads_on_a_slave_are_served_within_the_bound_and_refused_past_it() {
    let mut pair = Pair::start(&["--replication", "async"], &[]);
    pair.wait_link_up();
    let mut master = pair.master.client();
    let mut slave = pair.slave.client();
    let bound = Duration::from_millis(1);
    for i in 0..20 {
        let value = format!("v{i}");
        master.put("k", &value).expect("write");
        let acked = Instant::now();
        loop {
            let began = Instant::now();
            let got = slave
                .read_fresh("k", bound, DEADLINE)
                .expect("a 1 ms bound is provable on loopback");
            if began.duration_since(acked) > bound {
                assert_eq!(got, Some(value.clone().into_bytes()), "read {i}");
                break;
            }
        }
    }
    let proven: f64 = info_value(&mut slave, "staleness_bound_ms")
        .parse()
        .expect("a bound in ms");
    assert!(proven < 1_000.0, "{proven} ms");

    pair.master.signal("SIGSTOP");
    let wait = Duration::from_millis(100);
    let (bound_us, took) = poll("a bounded read to be refused", || {
        let began = Instant::now();
        match slave.read_when(
            "k",
            &duokv::ReadWhen::new()
                .max_staleness(Duration::from_millis(30))
                .wait(wait),
        ) {
            Ok(_) => None,
            Err(Error::TooStale { bound_us, .. }) => Some((bound_us, began.elapsed())),
            Err(e) => panic!("a bounded read on the slave: {e}"),
        }
    });
    assert!(bound_us >= 30_000 && bound_us != u64::MAX, "{bound_us} us");
    assert!(took >= wait, "refused after its wait, not before: {took:?}");
    pair.master.signal("SIGCONT");
    poll("a bounded read to be served again", || {
        slave
            .read_fresh("k", Duration::from_millis(30), Duration::from_millis(100))
            .ok()
    });

    pair.master.sigkill();
    pair.master.wait_exit(DEADLINE);
    let message = poll("the refusal to say the master is gone", || {
        match slave.read_fresh("k", Duration::from_millis(30), Duration::ZERO) {
            Err(Error::TooStale { message, .. }) if message.contains("not connected") => {
                Some(message)
            }
            _ => None,
        }
    });
    assert!(message.contains("read the master"), "{message}");
}
