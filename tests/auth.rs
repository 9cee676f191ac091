//! Access control: `--auth-token-file` on both replicas.
//!
//! Every test runs real `duokv-server` processes sharing (or not) a token
//! file, and checks what a peer without the token, with a wrong one, or
//! with broken handshake fields gets: a typed refusal, logged with its
//! address, and not one byte of data.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use common::{
    Pair, ServerProcess, client_builder, poll, raw_connect, run_with_deadline, token_file,
};
use duokv::auth::AuthToken;
use duokv::{Client, Error};

/// Status 6 and 7 of the handshake reply (PROTOCOL.md section 2).
const STATUS_MALFORMED: u8 = 6;
const STATUS_UNAUTHORIZED: u8 = 7;

fn client_with(addr: &str, token: &str) -> duokv::Result<Client> {
    client_builder(addr)
        .auth_token(AuthToken::new(token.as_bytes().to_vec()).expect("a valid token"))
        .connect()
}

fn info_value(client: &mut Client, name: &str) -> Option<String> {
    client
        .info()
        .expect("info")
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

fn args(path: &Path) -> [String; 2] {
    ["--auth-token-file".into(), path.display().to_string()]
}

#[test]
fn a_pair_sharing_a_token_replicates_and_refuses_everyone_else() {
    let (_dir, path) = token_file("correct horse battery staple");
    let [flag, file] = args(&path);
    let pair = Pair::start(&[&flag, &file], &[&flag, &file]);

    // The master's stream presented the token: a sync write is acknowledged
    // by the slave, and the slave serves it.
    let mut master = client_with(&pair.master.addr(), "correct horse battery staple")
        .expect("the token opens the master");
    poll("the master's link to come up", || {
        (info_value(&mut master, "link").as_deref() == Some("up")).then_some(())
    });
    let receipt = master.put("k", "v").expect("a sync write through the link");
    assert!(receipt.server.replicated_ns > 0, "{receipt:?}");
    let mut slave = client_with(&pair.slave.addr(), "correct horse battery staple")
        .expect("the token opens the slave");
    assert_eq!(slave.read("k").expect("read"), Some(b"v".to_vec()));

    // No token, a wrong one, a prefix of the right one: all refused, typed.
    for addr in [pair.master.addr(), pair.slave.addr()] {
        match client_builder(&addr).connect() {
            Err(Error::Unauthorized { addr: refused }) => assert_eq!(refused, addr),
            other => panic!("no token on {addr}: {other:?}"),
        }
        for wrong in ["correct horse battery stapler", "correct horse"] {
            assert!(
                matches!(client_with(&addr, wrong), Err(Error::Unauthorized { .. })),
                "token {wrong:?} on {addr}"
            );
        }
    }

    // Each refusal is logged with the peer's address, and the token never.
    poll("the refusals in the master's log", || {
        let log = pair.master.log();
        (log.contains("127.0.0.1:")
            && log.contains("refused: no auth token")
            && log.contains("refused: wrong auth token"))
        .then_some(())
    });
    for log in [pair.master.log(), pair.slave.log()] {
        assert!(!log.contains("battery"), "a log shows the token:\n{log}");
    }
}

#[test]
fn a_master_with_another_token_never_gets_its_stream_in() {
    let (_slave_dir, slave_token) = token_file("the slave's secret");
    let (_master_dir, master_token) = token_file("the master's guess");
    let [flag, slave_file] = args(&slave_token);
    let [_, master_file] = args(&master_token);
    let pair = Pair::start(
        &[&flag, &master_file, "--sync-timeout", "300ms"],
        &[&flag, &slave_file],
    );
    let mut master = client_with(&pair.master.addr(), "the master's guess").expect("master");
    poll("the master to record the slave's refusal", || {
        info_value(&mut master, "link_last_error")
            .filter(|e| e.contains("unauthorized"))
            .map(|_| ())
    });
    assert_eq!(info_value(&mut master, "link").as_deref(), Some("down"));
    match master.put("k", "v") {
        Err(Error::ReplicaUnavailable { .. }) => {}
        other => panic!("a sync write with no slave: {other:?}"),
    }
    poll("the slave to log the refused stream", || {
        pair.slave
            .log()
            .contains("refused: wrong auth token (role Replica)")
            .then_some(())
    });
    let mut slave = client_with(&pair.slave.addr(), "the slave's secret").expect("slave");
    assert_eq!(slave.read("k").expect("read"), None, "nothing got through");
}

#[test]
fn broken_handshake_fields_get_their_own_status() {
    let (_dir, path) = token_file("t0ken");
    let [flag, file] = args(&path);
    let server = ServerProcess::start(&[&flag, &file]);
    let handshake = |extra: &[u8]| {
        let mut bytes = b"DUKV\x00\x01\x01\x00".to_vec();
        bytes.extend_from_slice(&u16::try_from(extra.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(extra);
        let mut stream = raw_connect(&server.addr());
        stream.write_all(&bytes).expect("send the handshake");
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).expect("read until closed");
        reply
    };
    // A token field whose length runs past the end of `extra`.
    let reply = handshake(&[2, 0, 9, b't']);
    assert_eq!(reply.len(), 10, "{reply:?}");
    assert_eq!(reply[6], STATUS_MALFORMED);
    // The right token, by hand: accepted (the server keeps the connection).
    let mut stream = raw_connect(&server.addr());
    stream
        .write_all(b"DUKV\x00\x01\x01\x00\x00\x08\x02\x00\x05t0ken")
        .expect("send");
    let mut reply = [0u8; 10];
    stream.read_exact(&mut reply).expect("the reply");
    assert_eq!(reply[6], 0, "{reply:?}");
    // An unknown field and no token: refused as unauthorized.
    let reply = handshake(&[9, 0, 1, 0]);
    assert_eq!(reply[6], STATUS_UNAUTHORIZED, "{reply:?}");
    assert!(server.log().contains("malformed handshake field"));
}

#[test]
fn a_server_with_an_unusable_token_file_does_not_start() {
    let dir = tempfile::tempdir().expect("a temporary dir");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").expect("write");
    for (path, says) in [
        (empty, "the auth token is empty"),
        (dir.path().join("missing"), "No such file"),
    ] {
        let out = run_with_deadline(Command::new(env!("CARGO_BIN_EXE_duokv-server")).args([
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &dir.path().join("data").display().to_string(),
            "--auth-token-file",
            &path.display().to_string(),
        ]));
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{stderr}");
    }
}
