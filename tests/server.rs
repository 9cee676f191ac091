//! End-to-end tests of `duokv-server`: the real binary as a child process on
//! a port chosen at run time, spoken to through [`duokv::Client`] and, where
//! the client is too well behaved to send it, through raw bytes laid out as
//! in `protocol/PROTOCOL.md`.
//!
//! What they hold the server to: the CRUD rules and write receipts, the key
//! and value caps, persistence across SIGTERM and SIGKILL, atomic and
//! gap-free sequence numbers under concurrent clients, surviving bad input,
//! the connection cap, the idle timeout, a graceful shutdown, and a client
//! that re-dials after a restart. Nothing here sleeps to synchronise: every
//! wait is a poll with a deadline (see `common`).

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    CODE_BAD_REQUEST, CODE_TOO_LARGE, DEADLINE, KIND_PONG, KIND_PUT, KIND_READ, STATUS_BAD_MAGIC,
    STATUS_UNSUPPORTED_VERSION, ServerProcess, client_builder, frame_bytes, handshake_bytes,
    info_value, key_value_body, last_seq, parse_error_frame, parse_reply, poll, raw_connect,
    raw_session, read_raw_frame, read_until_closed,
};
use duokv::protocol::{self, FrameError, Limit, NodeRole};
use duokv::{Client, Error, WriteReceipt};

const MAX_KEY_LEN: usize = 64 * 1024;
const MAX_VALUE_LEN: usize = 16 * 1024 * 1024;

/// Checks the timestamps of one receipt: the client's, the server's, and the
/// two against each other (client and server share this host's clock).
fn check_receipt(receipt: &WriteReceipt) {
    let server = &receipt.server;
    assert_eq!(server.seq, receipt.seq, "{receipt:?}");
    assert!(receipt.started_ns <= receipt.committed_ns, "{receipt:?}");
    assert!(server.received_ns <= server.applied_ns, "{receipt:?}");
    assert!(server.applied_ns <= server.replied_ns, "{receipt:?}");
    assert_eq!(
        server.replicated_ns, 0,
        "a standalone server replicates nothing: {receipt:?}"
    );
    assert!(receipt.started_ns <= server.received_ns, "{receipt:?}");
    assert!(server.replied_ns <= receipt.committed_ns, "{receipt:?}");
}

/// Asserts that `key` reads back as `expected` without printing megabytes
/// when it does not.
fn assert_value(client: &mut Client, key: &[u8], expected: Option<&[u8]>) {
    let got = client.read(key).expect("read");
    let summary = |v: Option<&[u8]>| v.map(|v| format!("{} bytes", v.len()));
    assert!(
        got.as_deref() == expected,
        "key of {} bytes: got {:?}, expected {:?}",
        key.len(),
        summary(got.as_deref()),
        summary(expected)
    );
}

/// Asserts that a fresh client is served: a write, a read and a ping.
fn assert_served(server: &ServerProcess) {
    let mut client = server.client();
    client.put("probe", "alive").expect("put after bad input");
    assert_eq!(client.read("probe").expect("read"), Some(b"alive".to_vec()));
    client.ping().expect("ping");
}

/// Create, read, update, put and delete follow their rules over the wire;
/// failed writes consume no sequence number, so the receipts of successful
/// ones count 1, 2, 3...; and every receipt's timestamps are in order.
#[test]
fn crud_rules_and_receipts() {
    let server = ServerProcess::start(&[]);
    let mut client = server.client();
    assert_eq!(client.server_role(), Some(NodeRole::Standalone));

    assert_eq!(client.read("k").unwrap(), None);
    let mut receipts = vec![client.create("k", "v1").unwrap()];
    assert!(matches!(
        client.create("k", "other"),
        Err(Error::AlreadyExists)
    ));
    assert!(matches!(
        client.update("missing", "x"),
        Err(Error::NotFound)
    ));
    assert!(matches!(client.delete("missing"), Err(Error::NotFound)));
    assert_eq!(client.read("missing").unwrap(), None);
    assert_eq!(
        client.read_with_seq("k").unwrap(),
        Some((1, b"v1".to_vec()))
    );
    assert_eq!(
        client.read("k").unwrap(),
        Some(b"v1".to_vec()),
        "a failed create changed nothing"
    );

    receipts.push(client.update("k", "v2").unwrap());
    assert_eq!(
        client.read_with_seq("k").unwrap(),
        Some((2, b"v2".to_vec()))
    );
    receipts.push(client.put("k", "v3").unwrap());
    receipts.push(client.put("fresh", "").unwrap());
    assert_eq!(
        client.read("fresh").unwrap(),
        Some(Vec::new()),
        "an empty value is not absence"
    );
    receipts.push(client.delete("k").unwrap());
    assert_eq!(client.read("k").unwrap(), None);
    assert!(matches!(client.update("k", "x"), Err(Error::NotFound)));
    receipts.push(client.create("k", "again").unwrap());
    assert_eq!(
        client.read_with_seq("k").unwrap(),
        Some((6, b"again".to_vec()))
    );

    let seqs: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
    for receipt in &receipts {
        check_receipt(receipt);
    }
    for pair in receipts.windows(2) {
        assert!(
            pair[0].server.replied_ns <= pair[1].server.received_ns,
            "{pair:?}"
        );
    }
    assert_eq!(last_seq(&mut client), 6);
    assert_eq!(info_value(&mut client, "role"), "standalone");
}

/// Whether `result` is a refusal for size: the server's `TooLarge`, or the
/// protocol crate refusing to encode the request (`limit`) before sending.
fn is_too_large(result: &duokv::Result<WriteReceipt>, limit: Limit) -> bool {
    match result {
        Err(Error::TooLarge { .. }) => true,
        Err(Error::Protocol(protocol::Error::Frame(FrameError::TooLarge { limit: l, .. }))) => {
            *l == limit
        }
        _ => false,
    }
}

/// Sends a `Put` of `key` and `value` as raw bytes, past the client's own
/// checks, and asserts that the server answers with one `TooLarge` error
/// frame (request id 0, since it could not decode the request) and closes.
fn assert_server_refuses_put(server: &ServerProcess, key: &[u8], value: &[u8]) {
    let mut stream = raw_session(&server.addr());
    let frame = frame_bytes(KIND_PUT, 7, &key_value_body(key, value));
    stream.write_all(&frame).expect("send the oversized frame");
    let error = parse_error_frame(&read_until_closed(&mut stream));
    assert_eq!(error.code, CODE_TOO_LARGE, "{error:?}");
    assert_eq!(error.request_id, 0, "{error:?}");
    assert!(!error.message.is_empty(), "{error:?}");
}

/// A key of exactly 64 KiB and a value of exactly 16 MiB round-trip; one
/// byte more is refused, whether by the client before sending or (sent as
/// raw bytes) by the server, and nothing is stored.
#[test]
fn size_limits() {
    let server = ServerProcess::start(&["--fsync", "never"]);
    let mut client = server.client();

    let max_key = vec![b'k'; MAX_KEY_LEN];
    client.put(&max_key, "small").unwrap();
    assert_value(&mut client, &max_key, Some(b"small"));
    let max_value: Vec<u8> = (0..MAX_VALUE_LEN).map(|i| (i % 251) as u8).collect();
    client.put("big", &max_value).unwrap();
    assert_value(&mut client, b"big", Some(&max_value));
    client.put(&max_key, &max_value).unwrap();
    assert_value(&mut client, &max_key, Some(&max_value));
    let seq_before = last_seq(&mut client);

    let too_big = vec![7u8; MAX_VALUE_LEN + 1];
    let result = client.put("big", &too_big);
    assert!(is_too_large(&result, Limit::Value), "{result:?}");
    let result = client.create("absent", &too_big);
    assert!(is_too_large(&result, Limit::Value), "{result:?}");
    let long_key = vec![b'k'; MAX_KEY_LEN + 1];
    let result = client.put(&long_key, "v");
    assert!(is_too_large(&result, Limit::Key), "{result:?}");

    assert_server_refuses_put(&server, &long_key, b"v");
    assert_server_refuses_put(&server, b"big", &too_big);

    let mut client = server.client();
    assert_value(&mut client, b"big", Some(&max_value));
    assert_value(&mut client, b"absent", None);
    assert_eq!(
        last_seq(&mut client),
        seq_before,
        "a refused write consumed a seq"
    );
}

/// `--max-frame-bytes` lowers the frame cap: a value that fits is stored,
/// one that makes the frame a byte too long gets `TooLarge` from the Client
/// (the server's answer, read before the connection closes) and from raw
/// bytes alike, and takes no seq.
#[test]
fn max_frame_bytes_caps_requests_below_the_protocol_limit() {
    let server = ServerProcess::start(&["--fsync", "never", "--max-frame-bytes", "4096"]);
    let mut client = server.client();
    // A put frame's length: 9 header + 4 + key + 4 + value bytes.
    let fits = vec![b'v'; 4096 - 9 - 4 - 1 - 4];
    client.put("k", &fits).unwrap();
    let seq = last_seq(&mut client);
    let over = vec![b'v'; fits.len() + 1];
    let result = client.put("k", &over);
    assert!(matches!(result, Err(Error::TooLarge { .. })), "{result:?}");
    assert_server_refuses_put(&server, b"k", &over);
    let mut client = server.client();
    assert_value(&mut client, b"k", Some(&fits));
    assert_eq!(last_seq(&mut client), seq, "a refused write took a seq");
}

/// An oversized value is reported as [`Error::TooLarge`], the variant
/// documented for "the key or value is over the limit", whichever side
/// notices, and the connection stays usable.
#[test]
fn oversized_value_is_error_too_large() {
    let server = ServerProcess::start(&["--fsync", "never"]);
    let mut client = server.client();
    let result = client.put("k", vec![0u8; MAX_VALUE_LEN + 1]);
    assert!(matches!(result, Err(Error::TooLarge { .. })), "{result:?}");
    let result = client.put(vec![b'k'; MAX_KEY_LEN + 1], "v");
    assert!(matches!(result, Err(Error::TooLarge { .. })), "{result:?}");
    client.put("k", "v").unwrap();
}

/// Writes 200 keys (with some updates and deletes), SIGTERMs the server,
/// which exits 0, restarts it on the same directory and finds every write.
#[test]
fn sigterm_exits_zero_and_restart_keeps_every_write() {
    let mut server = ServerProcess::start(&[]);
    let mut client = server.client();
    let mut model = HashMap::new();
    let mut writes = 0;
    for i in 0..200 {
        let key = format!("key-{i}");
        client.create(&key, format!("value-{i}")).unwrap();
        model.insert(key.clone(), format!("value-{i}"));
        writes += 1;
        if i % 10 == 0 {
            client.update(&key, format!("updated-{i}")).unwrap();
            model.insert(key.clone(), format!("updated-{i}"));
            writes += 1;
        }
        if i % 7 == 0 {
            client.delete(&key).unwrap();
            model.remove(&key);
            writes += 1;
        }
    }
    drop(client);

    server.sigterm();
    let status = server.wait_exit(DEADLINE);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    server.restart();

    let mut client = server.client();
    for i in 0..200 {
        let key = format!("key-{i}");
        let expected = model.get(&key).map(|v| v.as_bytes());
        assert_eq!(client.read(&key).unwrap().as_deref(), expected, "{key}");
    }
    assert_eq!(last_seq(&mut client), writes);
}

/// With `--fsync always` (the default), SIGKILL in the middle of a stream of
/// writes loses none that was acknowledged; a new server on the same
/// directory (and another port) has them all.
#[test]
fn sigkill_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start_in(dir.path(), &[]);
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let addr = server.addr();
        let acked = acked.clone();
        thread::spawn(move || {
            let mut client = client_builder(&addr).connect().unwrap();
            for i in 0..1_000_000u64 {
                match client.put(format!("key-{i}"), format!("value-{i}")) {
                    Ok(receipt) => {
                        assert_eq!(receipt.seq, i + 1);
                        acked.store(i + 1, Ordering::SeqCst);
                    }
                    Err(_) => return,
                }
            }
        })
    };
    poll("200 acknowledged writes", || {
        (acked.load(Ordering::SeqCst) >= 200).then_some(())
    });
    server.sigkill();
    server.wait_exit(DEADLINE);
    writer.join().expect("writer thread");
    drop(server);

    let acked = acked.load(Ordering::SeqCst);
    let server = ServerProcess::start_in(dir.path(), &[]);
    let mut client = server.client();
    for i in 0..acked {
        let value = client.read(format!("key-{i}")).unwrap();
        assert_eq!(
            value,
            Some(format!("value-{i}").into_bytes()),
            "acknowledged key-{i} lost"
        );
    }
    // The write in flight at the kill may or may not have made it.
    let in_flight = client.read(format!("key-{acked}")).unwrap();
    assert!(in_flight.is_none() || in_flight == Some(format!("value-{acked}").into_bytes()));
    let last = last_seq(&mut client);
    assert!(
        last == acked || last == acked + 1,
        "last_seq {last}, acknowledged {acked}"
    );
}

/// A write operation of the random workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Update,
    Put,
    Delete,
}

/// An acknowledged write: its seq and what it did.
#[derive(Debug, Clone)]
struct Ack {
    seq: u64,
    op: Op,
    key: usize,
    value: Vec<u8>,
}

/// A read that found a value, and the seq the server said set it.
#[derive(Debug, Clone)]
struct Observed {
    key: usize,
    seq: u64,
    value: Vec<u8>,
}

/// xorshift64*: a small seeded generator, so a failing run can be replayed.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

fn key_name(key: usize) -> String {
    format!("key-{key:02}")
}

/// One client's share of the random workload.
fn random_client(
    addr: &str,
    id: usize,
    seed: u64,
    ops: usize,
    keys: usize,
) -> (Vec<Ack>, Vec<Observed>) {
    let mut rng = XorShift(seed);
    let mut client = client_builder(addr).connect().unwrap();
    let (mut acks, mut reads) = (Vec::new(), Vec::new());
    for i in 0..ops {
        let key = rng.below(keys);
        let name = key_name(key);
        let value = format!("c{id}-op{i}").into_bytes();
        let (op, result) = match rng.below(5) {
            0 => (Op::Create, client.create(&name, &value)),
            1 => (Op::Update, client.update(&name, &value)),
            2 => (Op::Put, client.put(&name, &value)),
            3 => (Op::Delete, client.delete(&name)),
            _ => {
                if let Some((seq, value)) = client.read_with_seq(&name).unwrap() {
                    reads.push(Observed { key, seq, value });
                }
                continue;
            }
        };
        match (op, result) {
            (_, Ok(receipt)) => {
                let value = if op == Op::Delete { Vec::new() } else { value };
                acks.push(Ack {
                    seq: receipt.seq,
                    op,
                    key,
                    value,
                });
            }
            (Op::Create, Err(Error::AlreadyExists)) => {}
            (Op::Update | Op::Delete, Err(Error::NotFound)) => {}
            (op, Err(e)) => panic!("client {id}: {op:?} {name}: {}", duokv::error::chain(&e)),
        }
    }
    (acks, reads)
}

/// 16 clients run 1000 random operations each on 50 shared keys. The
/// acknowledged writes' seqs are exactly 1..=N; replayed in seq order they
/// obey the CRUD rules (so seq order is the order they took effect) and give
/// the final contents; and every read saw the value of the write its seq
/// names.
#[test]
fn concurrent_clients_get_gap_free_atomic_writes() {
    const CLIENTS: usize = 16;
    const OPS: usize = 1000;
    const KEYS: usize = 50;
    const SEED: u64 = 0x9E37_79B9_7F4A_7C15;
    let server = ServerProcess::start(&["--fsync", "never"]);
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let handles: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let addr = server.addr();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                random_client(
                    &addr,
                    id,
                    SEED ^ (id as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03),
                    OPS,
                    KEYS,
                )
            })
        })
        .collect();
    let (mut acks, mut reads) = (Vec::new(), Vec::new());
    for handle in handles {
        let (a, r) = handle
            .join()
            .unwrap_or_else(|_| panic!("client thread failed (seed {SEED:#x})"));
        acks.extend(a);
        reads.extend(r);
    }

    acks.sort_by_key(|a| a.seq);
    let seqs: Vec<u64> = acks.iter().map(|a| a.seq).collect();
    let unique: HashSet<u64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), seqs.len(), "a seq was acknowledged twice");
    let n = acks.len() as u64;
    assert!(
        seqs.iter().copied().eq(1..=n),
        "acknowledged seqs are not exactly 1..={n}"
    );
    assert!(
        n > 1000,
        "the workload wrote too little to mean anything: {n}"
    );

    // Replayed in seq order, each acknowledged write must have been legal
    // at its place: a create on an absent key, an update or delete on a
    // present one.
    let mut model: HashMap<usize, (u64, Vec<u8>)> = HashMap::new();
    for ack in &acks {
        let entry = (ack.seq, ack.value.clone());
        let legal = match ack.op {
            Op::Create => model.insert(ack.key, entry).is_none(),
            Op::Update => model.insert(ack.key, entry).is_some(),
            Op::Put => {
                model.insert(ack.key, entry);
                true
            }
            Op::Delete => model.remove(&ack.key).is_some(),
        };
        assert!(
            legal,
            "{ack:?} is illegal after the writes with smaller seqs (seed {SEED:#x})"
        );
    }

    let by_seq: HashMap<u64, &Ack> = acks.iter().map(|a| (a.seq, a)).collect();
    for read in &reads {
        let ack = by_seq.get(&read.seq).unwrap_or_else(|| {
            panic!(
                "a read saw seq {} that no write was given: {read:?}",
                read.seq
            )
        });
        assert!(
            ack.key == read.key && ack.op != Op::Delete && ack.value == read.value,
            "read {read:?} does not match the write with its seq: {ack:?}"
        );
    }

    let mut client = server.client();
    for key in 0..KEYS {
        let got = client.read_with_seq(key_name(key)).unwrap();
        assert_eq!(got, model.get(&key).cloned(), "{}", key_name(key));
    }
    assert_eq!(last_seq(&mut client), n);
}

/// Bytes that are not a handshake (an HTTP request) get a `BadMagic`
/// handshake reply, or none, and the connection is closed; the server goes
/// on serving.
#[test]
fn garbage_instead_of_handshake_is_closed() {
    let server = ServerProcess::start(&[]);
    let mut stream = raw_connect(&server.addr());
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let reply = read_until_closed(&mut stream);
    if !reply.is_empty() {
        let reply = parse_reply(&reply);
        assert_eq!(reply.status, STATUS_BAD_MAGIC, "{reply:?}");
        assert_eq!(reply.version, 1, "{reply:?}");
    }
    assert_served(&server);
}

/// A frame whose length prefix is 4 GiB - 1 is answered, from the prefix
/// alone, by one `TooLarge` error frame with request id 0, and closed.
#[test]
fn huge_length_prefix_gets_too_large_and_close() {
    let server = ServerProcess::start(&[]);
    let mut stream = raw_session(&server.addr());
    stream.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let error = parse_error_frame(&read_until_closed(&mut stream));
    assert_eq!(error.code, CODE_TOO_LARGE, "{error:?}");
    assert_eq!(error.request_id, 0, "{error:?}");
    assert_served(&server);
}

/// A frame of an unknown kind (0x40, reserved for replication) and a
/// response frame sent as a request are each answered with one `BadRequest`
/// error frame, and the connection is closed.
#[test]
fn unknown_or_response_kind_gets_bad_request_and_close() {
    let server = ServerProcess::start(&[]);
    for (what, kind, body) in [
        ("unknown kind", 0x40, Vec::new()),
        ("response kind", KIND_PONG, [0u8; 16].to_vec()),
    ] {
        let mut stream = raw_session(&server.addr());
        stream.write_all(&frame_bytes(kind, 9, &body)).unwrap();
        let error = parse_error_frame(&read_until_closed(&mut stream));
        assert_eq!(error.code, CODE_BAD_REQUEST, "{what}: {error:?}");
    }
    assert_served(&server);
}

/// A client that hangs up in the middle of a frame costs the server nothing:
/// its other clients are served and the connection's handler ends.
#[test]
fn hang_up_inside_a_frame_is_survived() {
    let server = ServerProcess::start(&[]);
    let mut bystander = server.client();
    let frame = frame_bytes(KIND_PUT, 1, &key_value_body(b"half", b"a value cut short"));
    let mut stream = raw_session(&server.addr());
    stream.write_all(&frame[..frame.len() / 2]).unwrap();
    drop(stream);

    bystander.ping().unwrap();
    assert_served(&server);
    // Only the bystander is left: the half frame's handler has ended.
    poll("the half-frame connection to end", || {
        (info_value(&mut bystander, "connections") == "1").then_some(())
    });
    assert_eq!(bystander.read("half").unwrap(), None);
}

/// A handshake with protocol version 2 gets an `UnsupportedVersion` reply
/// that names version 1, and the connection is closed.
#[test]
fn wrong_version_gets_unsupported_version_and_close() {
    let server = ServerProcess::start(&[]);
    let mut stream = raw_connect(&server.addr());
    stream.write_all(&handshake_bytes(2)).unwrap();
    let reply = parse_reply(&read_until_closed(&mut stream));
    assert_eq!(reply.status, STATUS_UNSUPPORTED_VERSION, "{reply:?}");
    assert_eq!(reply.version, 1, "{reply:?}");
    assert_eq!(reply.node_role, 1, "standalone: {reply:?}");
    assert_served(&server);
}

/// With `--idle-timeout 1s`, the server closes by itself a connection that
/// stopped half-way through a frame, one that never sent its handshake, and
/// one idle after its handshake, each after about a second and not before.
#[test]
fn idle_timeout_closes_silent_connections() {
    let server = ServerProcess::start(&["--idle-timeout", "1s"]);
    let frame = frame_bytes(KIND_PUT, 1, &key_value_body(b"k", b"v"));
    let mut half_frame = raw_session(&server.addr());
    let mut no_handshake = raw_connect(&server.addr());
    let mut idle = raw_session(&server.addr());
    let started = Instant::now();
    half_frame.write_all(&frame[..frame.len() / 2]).unwrap();

    for (what, stream) in [
        ("half a frame", &mut half_frame),
        ("no handshake", &mut no_handshake),
        ("idle", &mut idle),
    ] {
        assert_eq!(
            read_until_closed(stream),
            Vec::<u8>::new(),
            "{what}: no reply expected"
        );
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(500),
            "{what}: closed after {waited:?}, before the idle timeout"
        );
    }
    assert_served(&server);
}

/// With `--max-connections 8`, eight clients are served, twelve more are
/// refused with `Busy` while the eight carry on, and once one of the eight
/// leaves a new client is served in its place, and the cap holds again.
#[test]
fn connection_cap_refuses_with_busy() {
    let server = ServerProcess::start(&["--max-connections", "8"]);
    let addr = server.addr();
    // The start-up probe's connection may still be counted for a moment, so
    // each of the eight retries while the server says `Busy`.
    let connect_when_free = || {
        poll("a free connection slot", || {
            match client_builder(&addr).connect() {
                Ok(client) => Some(client),
                Err(Error::Busy) => None,
                Err(e) => panic!("connect: {}", duokv::error::chain(&e)),
            }
        })
    };
    let mut clients: Vec<Client> = (0..8).map(|_| connect_when_free()).collect();
    for client in &mut clients {
        client.ping().unwrap();
    }

    for attempt in 0..12 {
        let result = client_builder(&addr).connect();
        assert!(
            matches!(result, Err(Error::Busy)),
            "attempt {attempt}: {result:?}"
        );
    }
    for (i, client) in clients.iter_mut().enumerate() {
        client.ping().unwrap();
        client.put(format!("k{i}"), "v").unwrap();
    }

    drop(clients.pop());
    let mut newcomer = connect_when_free();
    newcomer.put("newcomer", "in").unwrap();
    assert_eq!(newcomer.read("k0").unwrap(), Some(b"v".to_vec()));
    let result = client_builder(&addr).connect();
    assert!(
        matches!(result, Err(Error::Busy)),
        "the cap after churn: {result:?}"
    );
}

/// SIGTERM with a client connected and idle: the server closes the idle
/// connection at once instead of waiting out its 30 s drain timeout, exits
/// 0, and is gone (a new connection fails with `Error::Connect`).
#[test]
fn sigterm_with_idle_client_exits_promptly() {
    let mut server = ServerProcess::start(&["--drain-timeout", "30s"]);
    let mut client = server.client();
    client.put("k", "v").unwrap();

    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );

    let result = client_builder(&server.addr()).connect();
    assert!(matches!(result, Err(Error::Connect { .. })), "{result:?}");
    assert!(client.ping().is_err(), "the old connection still answers");
}

/// A client whose server restarts on the same port fails at most its first
/// call (on the dead connection, so that write is not applied), then
/// re-dials and is served, with the data from before the restart.
#[test]
fn client_redials_after_server_restart() {
    let mut server = ServerProcess::start(&[]);
    let mut client = server.client();
    client.put("before", "1").unwrap();

    server.sigterm();
    assert_eq!(server.wait_exit(DEADLINE).code(), Some(0));
    server.restart();

    let first = client.put("after", "2");
    assert_eq!(
        client.read("before").unwrap(),
        Some(b"1".to_vec()),
        "second call after restart"
    );
    let after = client.read("after").unwrap();
    match first {
        Ok(receipt) => {
            assert_eq!(receipt.seq, 2);
            assert_eq!(after, Some(b"2".to_vec()));
        }
        Err(_) => assert_eq!(
            after, None,
            "a write that failed on the dead connection was applied"
        ),
    }
}

/// A client that pipelines requests and then stops reading its replies
/// "sends nothing" for longer than `--idle-timeout 1s`, so the server must
/// close it rather than stay blocked writing to it forever.
#[test]
fn idle_timeout_closes_a_client_that_stops_reading() {
    let server = ServerProcess::start(&["--idle-timeout", "1s", "--fsync", "never"]);
    let mut bystander = server.client();
    bystander.put("big", vec![1u8; 4 << 20]).unwrap();
    let mut stream = raw_session(&server.addr());
    let mut body = 3u32.to_be_bytes().to_vec();
    body.extend_from_slice(b"big");
    for id in 1..=32 {
        stream
            .write_all(&frame_bytes(KIND_READ, id, &body))
            .unwrap();
    }
    // 128 MiB of replies are due and none is read: the server's writes
    // block once the socket buffers are full.
    poll(
        "the server to close the connection that stopped reading",
        || (info_value(&mut bystander, "connections") == "1").then_some(()),
    );
    drop(stream);
}

/// A peer that drips a frame one byte at a time, each byte well inside the
/// idle timeout, is closed once the frame has taken longer than
/// `--frame-timeout`, and the server carries on.
#[test]
fn frame_timeout_closes_a_dripping_connection() {
    let server = ServerProcess::start(&["--idle-timeout", "5s", "--frame-timeout", "1s"]);
    let frame = frame_bytes(KIND_PUT, 1, &key_value_body(b"k", &[7u8; 64]));
    let mut drip = raw_session(&server.addr());
    let started = Instant::now();
    let mut closed_after = None;
    for byte in &frame {
        if drip.write_all(std::slice::from_ref(byte)).is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        // The drip's own pace: the peer under test sends a byte every
        // 250 ms, inside the 5 s idle timeout.
        std::thread::sleep(Duration::from_millis(250));
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let closed_after = closed_after.unwrap_or_else(|| {
        assert_eq!(
            read_until_closed(&mut drip),
            Vec::<u8>::new(),
            "no reply expected"
        );
        started.elapsed()
    });
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(5),
        "closed after {closed_after:?}; the frame timeout is 1 s, the idle timeout 5 s"
    );
    assert_served(&server);
}

/// `duokv-server --help` exits 0 and names the flags an operator needs
/// first (the toolbox's `duokv server --help`, the same parser, is tested
/// beside the `duokv` command line).
#[test]
fn help_names_every_flag() {
    let output = common::run_with_deadline(
        std::process::Command::new(env!("CARGO_BIN_EXE_duokv-server")).arg("--help"),
    );
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--data-dir",
        "--fsync",
        "--role",
        "--replica",
        "--master-addr",
        "--max-connections",
        "--idle-timeout",
        "--drain-timeout",
        "--auth-token-file",
    ] {
        assert!(
            text.contains(flag),
            "duokv-server --help does not mention {flag}:\n{text}"
        );
    }
}

/// A power cut that tore the last, unsynced batch (issue 13, scenario 4),
/// as a power-cut test saw it: the file system kept a later part of the
/// batch and not an earlier part, zeros where the batch began and then
/// intact records of the same batch. Concurrent writers make a final batch
/// of several records (group commit); for every split point from the
/// batch's start to its last record, the replica starts, says what it cut
/// (offset, bytes), and holds exactly the writes of the earlier batches.
/// Before batch framing, the intact record after the zeros made this a
/// refusal to start ("corrupt log").
#[test]
fn a_torn_final_batch_is_cut_and_the_replica_starts() {
    let dir = tempfile::tempdir().expect("a temporary dir");
    let data = dir.path().join("data");
    let mut server = ServerProcess::start_in(&data, &[]);
    let (segment, batch) = poll("a final batch of several records", || {
        let writers: Vec<_> = (0..8)
            .map(|writer| {
                let mut client = server.client();
                thread::spawn(move || {
                    for i in 0..4 {
                        client.put(format!("w{writer}-{i}"), "v").expect("put");
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("a writer");
        }
        let segment = common::newest_segment(&data);
        let bytes = std::fs::read(&segment).expect("read the segment");
        let at = bytes.windows(4).rposition(|w| w == b"DKVB")?;
        let count = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        (count >= 3).then_some((segment, at))
    });
    server.sigterm();
    assert!(server.wait_exit(DEADLINE).success());
    drop(server);

    let synced = std::fs::read(&segment).expect("read the segment");
    let first_seq = u64::from_le_bytes(synced[batch + 16..batch + 24].try_into().unwrap());
    // Where the batch's last record begins: its 29-byte header precedes a
    // `w` key, and no record is shorter than 31 bytes.
    let last_record = synced.len() - 31;
    for split in (batch + 1..=last_record).step_by(5) {
        let mut torn = synced.clone();
        torn[batch..split].fill(0);
        std::fs::write(&segment, &torn).expect("tear the last batch");
        let server = ServerProcess::start_in(&data, &[]);
        let mut client = server.client();
        assert_eq!(last_seq(&mut client), first_seq - 1, "split {split}");
        let log = server.log();
        let cut = format!(
            "cutting off an unsynced tail at offset {batch} ({} bytes",
            synced.len() - batch
        );
        assert!(log.contains(&cut), "split {split}: {log}");
        drop(client);
        drop(server);
        // The next split starts from the synced bytes again.
        std::fs::write(&segment, &synced).expect("restore");
    }
}

/// An older client's bytes still get today's answers: a handshake without
/// the tokens flag, a `Put` answered with the 40-byte `Written` (no
/// history at its end, which such a client would refuse as trailing
/// bytes), and a `Read` body that ends at the key answered with the
/// `Value`, byte for byte.
#[test]
fn an_older_clients_raw_frames_get_todays_answers() {
    let server = ServerProcess::start(&[]);
    let mut stream = raw_session(&server.addr());
    stream
        .write_all(&frame_bytes(KIND_PUT, 1, &key_value_body(b"k", b"v")))
        .expect("send the put");
    let (kind, id, body) = read_raw_frame(&mut stream).expect("the put's reply");
    assert_eq!((kind, id, body.len()), (0x81, 1, 40), "{body:02x?}");
    assert_eq!(body[..8], 1u64.to_be_bytes());
    stream
        .write_all(&frame_bytes(KIND_READ, 2, &[0, 0, 0, 1, b'k']))
        .expect("send the read");
    let (kind, id, body) = read_raw_frame(&mut stream).expect("the read's reply");
    // seq 1 | present 1 | value_len 1 | "v"
    let expected = [0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, b'v'];
    assert_eq!((kind, id, &body[..]), (0x80, 2, &expected[..]));
}

/// A client that sets the tokens flag gets the history id after the
/// receipt: the `history_id` of `info`.
#[test]
fn a_client_that_asks_for_tokens_gets_the_history_in_written() {
    let server = ServerProcess::start(&[]);
    let mut client = client_builder(&server.addr()).connect().expect("connect");
    let history = info_value(&mut client, "history_id");
    let token = client.put("k", "v").expect("put").token().expect("a token");
    assert_eq!(token.to_string(), format!("{history}:1"));
    assert_eq!(token.to_string().parse::<duokv::Token>(), Ok(token));
}

/// A `Read` whose extension this server does not know, or a malformed
/// `after`, is `BadRequest` (and the connection closes), never ignored.
#[test]
fn a_read_with_a_bad_extension_is_a_bad_request() {
    let server = ServerProcess::start(&[]);
    let unknown: &[u8] = &[9, 0, 0];
    let short_after: &[u8] = &[1, 0, 20, 0, 0, 0];
    for extension in [unknown, short_after] {
        let mut stream = raw_session(&server.addr());
        let mut body = vec![0, 0, 0, 1, b'k'];
        body.extend_from_slice(extension);
        stream
            .write_all(&frame_bytes(KIND_READ, 3, &body))
            .expect("send the read");
        let error = parse_error_frame(&read_until_closed(&mut stream));
        assert_eq!(error.code, CODE_BAD_REQUEST, "{error:?}");
    }
    let mut client = server.client();
    assert_eq!(client.read("k").expect("the server carries on"), None);
}
