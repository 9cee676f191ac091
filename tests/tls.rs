//! TLS between the real binaries: a client through TLS, the replication
//! stream through TLS, mutual TLS, and every refusal (a client in clear on
//! a TLS port, a TLS client on a port in clear, a wrong authority, a wrong
//! name, an expired certificate, a missing client certificate) said in
//! words on both sides; an independent client (`openssl s_client`); and a
//! relay between the peers that sees no key, value or token in clear.
//!
//! Certificates are made per test with rcgen, in a temporary directory.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;

use common::pki::Pki;
use common::{DEADLINE, Pair, ServerProcess, poll, skip, token_file};
use duokv::tls::ClientTls;
use duokv::{Client, Error};

fn arg(path: &Path) -> String {
    path.display().to_string()
}

/// The server flags for `cert` and `key`, trusting `ca`.
fn tls_flags(ca: &Path, (cert, key): &(PathBuf, PathBuf)) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        arg(cert),
        "--tls-key".into(),
        arg(key),
        "--tls-ca".into(),
        arg(ca),
    ]
}

fn start(args: &[String]) -> ServerProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ServerProcess::start(&args)
}

fn tls_client(addr: &str, tls: ClientTls) -> Result<Client, Error> {
    common::client_builder(addr).tls(tls).connect()
}

fn tls_error(outcome: Result<Client, Error>) -> String {
    match outcome {
        Err(Error::Tls { reason, .. }) => reason,
        Err(other) => panic!("not a TLS error: {other:?}"),
        Ok(_) => panic!("connected"),
    }
}

/// Polls the server's log until it has said `what`.
fn wait_log(server: &ServerProcess, what: &str) -> String {
    poll(&format!("the server to log {what:?}"), || {
        let log = server.log();
        log.contains(what).then_some(log)
    })
}

#[test]
fn a_client_through_tls_reads_and_writes_and_one_in_clear_is_told_to_use_tls() {
    let pki = Pki::new("duokv");
    let server = start(&tls_flags(
        &pki.ca(),
        &pki.issue("server", &["127.0.0.1"], false),
    ));
    let tls = ClientTls::new(&pki.ca(), None).unwrap();
    let mut client = tls_client(&server.addr(), tls).expect("a TLS client");
    client.put("greeting", "hello").unwrap();
    assert_eq!(
        client.read("greeting").unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    // A value past TLS's 16 KiB record, and past the default buffer.
    let big = vec![7u8; 3 * 1024 * 1024];
    client.put("big", &big).unwrap();
    assert_eq!(client.read("big").unwrap(), Some(big));

    let plain = common::client_builder(&server.addr()).connect();
    match plain {
        Err(e @ Error::TlsRequired { .. }) => {
            assert!(e.to_string().contains("--tls-ca"), "{e}")
        }
        other => panic!("a client in clear on a TLS port: {other:?}"),
    }
    let log = wait_log(&server, "a client in clear on a TLS port; refused");
    assert!(
        log.contains("127.0.0.1:"),
        "the peer's address is logged:\n{log}"
    );
}

#[test]
fn a_tls_client_on_a_port_in_clear_is_told_so() {
    let pki = Pki::new("duokv");
    let server = ServerProcess::start(&[]);
    let tls = ClientTls::new(&pki.ca(), None).unwrap();
    let reason = tls_error(tls_client(&server.addr(), tls));
    assert!(
        reason.contains("does not speak TLS on this port"),
        "{reason}"
    );
    wait_log(&server, "a TLS client on a port in clear");
}

#[test]
fn a_wrong_authority_a_wrong_name_and_an_expired_certificate_are_refused_in_words() {
    let pki = Pki::new("duokv");
    let other = Pki::new("another");
    let server = start(&tls_flags(
        &pki.ca(),
        &pki.issue("server", &["127.0.0.1"], false),
    ));
    let reason = tls_error(tls_client(
        &server.addr(),
        ClientTls::new(&other.ca(), None).unwrap(),
    ));
    assert!(
        reason.contains("not signed by the trusted authority"),
        "{reason}"
    );
    let log = wait_log(&server, "TLS handshake failed");
    assert!(
        log.contains("the peer refused this side's certificate"),
        "{log}"
    );

    let named = start(&tls_flags(
        &pki.ca(),
        &pki.issue("named", &["duokv.invalid"], false),
    ));
    let reason = tls_error(tls_client(
        &named.addr(),
        ClientTls::new(&pki.ca(), None).unwrap(),
    ));
    assert!(reason.contains("not for the name"), "{reason}");
    let log = wait_log(&named, "TLS handshake failed");
    assert!(log.contains("is it for the name the peer dialled"), "{log}");

    let expired = start(&tls_flags(
        &pki.ca(),
        &pki.issue("old", &["127.0.0.1"], true),
    ));
    let reason = tls_error(tls_client(
        &expired.addr(),
        ClientTls::new(&pki.ca(), None).unwrap(),
    ));
    assert!(reason.contains("has expired"), "{reason}");
    let log = wait_log(&expired, "TLS handshake failed");
    assert!(log.contains("it has expired"), "{log}");
}

#[test]
fn mutual_tls_requires_a_client_certificate_from_the_authority() {
    let pki = Pki::new("duokv");
    let mut flags = tls_flags(&pki.ca(), &pki.issue("server", &["127.0.0.1"], false));
    flags.push("--tls-client-auth".into());
    let server = start(&flags);
    let reason = tls_error(tls_client(
        &server.addr(),
        ClientTls::new(&pki.ca(), None).unwrap(),
    ));
    assert!(reason.contains("client certificate"), "{reason}");
    wait_log(&server, "presented no certificate");

    let (cert, key) = pki.issue("client", &["client.duokv"], false);
    let tls = ClientTls::new(&pki.ca(), Some((&cert, &key))).unwrap();
    let mut client = tls_client(&server.addr(), tls).expect("a client with a certificate");
    client.put("k", "v").unwrap();

    // One from another authority is refused.
    let other = Pki::new("another");
    let (cert, key) = other.issue("stranger", &["stranger.duokv"], false);
    let tls = ClientTls::new(&pki.ca(), Some((&cert, &key))).unwrap();
    assert!(tls_client(&server.addr(), tls).is_err());
}

#[test]
fn bad_tls_files_and_flags_are_refused_at_start() {
    let pki = Pki::new("duokv");
    let (cert, key) = pki.issue("server", &["127.0.0.1"], false);
    let dir = tempfile::tempdir().unwrap();
    let data = arg(dir.path());
    for (args, says) in [
        (
            vec!["--tls-cert".to_string(), arg(&cert)],
            "TLS needs all of --tls-cert, --tls-key and --tls-ca",
        ),
        (
            vec!["--tls-client-auth".to_string()],
            "--tls-client-auth needs --tls-cert",
        ),
        (
            // A key in place of the certificate.
            tls_flags(&pki.ca(), &(key.clone(), key.clone())),
            "holds no certificate",
        ),
    ] {
        let output = common::run_with_deadline(
            common::server_command()
                .args(["--listen", "127.0.0.1:0", "--data-dir", &data])
                .args(&args),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// A relay from a port of its own to `to`, keeping every byte that
/// crosses it, both ways.
struct Relay {
    addr: String,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    fn to(to: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { return };
                let Ok(outbound) = TcpStream::connect(&to) else {
                    continue;
                };
                for (mut from, mut into) in [
                    (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                    (outbound, inbound),
                ] {
                    let kept = kept.clone();
                    thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || into.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            kept.lock().unwrap().extend_from_slice(&buf[..n]);
                        }
                        let _ = into.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        Relay { addr, seen }
    }

    fn saw(&self, needle: &[u8]) -> bool {
        let seen = self.seen.lock().unwrap();
        seen.windows(needle.len()).any(|w| w == needle)
    }

    fn bytes(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

#[test]
fn a_tls_pair_replicates_and_no_key_value_or_token_crosses_in_clear() {
    let pki = Pki::new("duokv");
    let (_token_dir, token) = token_file("s3cret-token-of-the-pair");
    let mut master_flags = tls_flags(&pki.ca(), &pki.issue("master", &["127.0.0.1"], false));
    let mut slave_flags = tls_flags(&pki.ca(), &pki.issue("slave", &["127.0.0.1"], false));
    for flags in [&mut master_flags, &mut slave_flags] {
        flags.extend(["--auth-token-file".to_string(), arg(&token)]);
    }
    slave_flags.push("--tls-client-auth".into());
    // The master replicates through a relay too, which sees the stream.
    let dir = tempfile::tempdir().unwrap();
    let (master_port, slave_port) = common::free_port_pair();
    let master_addr = SocketAddr::from(([127, 0, 0, 1], master_port));
    let slave_addr = SocketAddr::from(([127, 0, 0, 1], slave_port));
    let stream_relay = Relay::to(slave_addr.to_string());
    slave_flags
        .extend(["--role", "slave", "--master-addr", &master_addr.to_string()].map(String::from));
    master_flags.extend(["--role", "master", "--replica", &stream_relay.addr].map(String::from));
    let pair = HandPair {
        slave: ServerProcess::try_start_at(slave_addr, dir.path().join("s"), &slave_flags)
            .expect("the slave starts"),
        master: ServerProcess::try_start_at(master_addr, dir.path().join("m"), &master_flags)
            .expect("the master starts"),
    };
    let auth = duokv::auth::AuthToken::from_file(&token).unwrap();
    let client_tls = ClientTls::new(&pki.ca(), None).unwrap();
    // A client without a certificate is refused by the slave, in words.
    let refused = common::client_builder(&pair.slave.addr())
        .tls(client_tls.clone())
        .auth_token(auth.clone())
        .connect();
    assert!(tls_error(refused).contains("requires a client certificate"));
    let relay = Relay::to(pair.master.addr());
    let mut master = common::client_builder(&relay.addr)
        .tls(client_tls.clone())
        .auth_token(auth.clone())
        .connect()
        .expect("a TLS client through the relay");
    let receipt = master.put("secret-key-1234", "secret-value-5678").unwrap();
    // The slave requires client certificates.
    let (cert, key) = pki.issue("reader", &["reader.duokv"], false);
    let mut slave = common::client_builder(&pair.slave.addr())
        .tls(ClientTls::new(&pki.ca(), Some((&cert, &key))).unwrap())
        .auth_token(auth)
        .connect()
        .expect("a TLS client of the slave");
    poll("the slave to show the write", || {
        (slave.read("secret-key-1234").unwrap().as_deref() == Some(&b"secret-value-5678"[..]))
            .then_some(())
    });
    assert!(receipt.seq > 0);
    for relay in [&relay, &stream_relay] {
        assert!(relay.bytes() > 1000, "the relay saw the connection");
        for secret in [
            &b"secret-key-1234"[..],
            b"secret-value-5678",
            b"s3cret-token",
        ] {
            let secret_text = String::from_utf8_lossy(secret);
            assert!(!relay.saw(secret), "{secret_text:?} crossed in clear");
        }
    }
    // The replication stream is TLS too: the slave speaks TLS only and
    // requires client certificates, so the write reached it through a TLS
    // stream on which the master presented its own.
    let log = pair.slave.log();
    assert!(log.contains("replication stream from master"), "{log}");
}

/// A master and a slave started by hand (a relay between them).
struct HandPair {
    master: ServerProcess,
    slave: ServerProcess,
}

#[test]
fn openssl_s_client_negotiates_tls_1_3_and_verifies_the_chain() {
    if Command::new("openssl").arg("version").output().is_err() {
        return skip(
            "openssl_s_client_negotiates_tls_1_3",
            "openssl (Debian's openssl)",
        );
    }
    let pki = Pki::new("duokv");
    let server = start(&tls_flags(
        &pki.ca(),
        &pki.issue("server", &["127.0.0.1"], false),
    ));
    let s_client = |extra: &[&str]| {
        let mut command = Command::new("timeout");
        command
            .args([&DEADLINE.as_secs().to_string(), "openssl", "s_client"])
            .args(["-connect", &server.addr(), "-CAfile", &arg(&pki.ca())])
            .args(["-verify_return_error", "-verify_ip", "127.0.0.1"])
            .args(extra)
            .stdin(std::process::Stdio::null());
        let output = command.output().expect("run openssl s_client");
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr)
    };
    let out = s_client(&[]);
    assert!(out.contains("TLSv1.3"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    let out = s_client(&["-tls1_2"]);
    assert!(out.contains("TLSv1.2"), "{out}");
    // Older versions are not spoken: no cipher was agreed.
    let out = s_client(&["-tls1_1"]);
    assert!(out.contains("Cipher is (NONE)"), "{out}");
}

#[test]
fn sighup_reloads_the_certificate_and_info_shows_its_expiry() {
    let pki = Pki::new("duokv");
    let (cert, key) = pki.issue("server", &["127.0.0.1"], false);
    let mut flags = tls_flags(&pki.ca(), &(cert.clone(), key.clone()));
    flags.extend(["--metrics-listen".to_string(), "127.0.0.1:0".to_string()]);
    let server = start(&flags);
    let tls = ClientTls::new(&pki.ca(), None).unwrap();
    let mut client = tls_client(&server.addr(), tls.clone()).unwrap();
    let facts = client.info().unwrap();
    let fact = |name: &str| {
        facts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} in {facts:?}"))
    };
    assert_eq!(fact("tls"), "on");
    let expires: u64 = fact("tls_cert_expires_unix").parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(expires > now, "{expires} is not in the future");
    // /metrics says the same, for an alert before it comes.
    let scrape = http_get(&fact("metrics_addr"), "/metrics");
    let series =
        format!("duokv_tls_certificate_expiry_timestamp_seconds{{certificate=\"cert\"}} {expires}");
    assert!(scrape.contains(&series), "{series} not in:\n{scrape}");
    assert!(
        scrape.contains("duokv_tls_certificate_expiry_timestamp_seconds{certificate=\"ca\"}"),
        "{scrape}"
    );

    // Renewed by another authority's certificate: after SIGHUP, new
    // connections get it (the old authority's clients are refused).
    let renewed = Pki::new("renewal");
    let (new_cert, new_key) = renewed.issue("server", &["127.0.0.1"], false);
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    server.signal("SIGHUP");
    wait_log(&server, "TLS certificate and key reloaded");
    let new_tls = ClientTls::new(&renewed.ca(), None).unwrap();
    tls_client(&server.addr(), new_tls).expect("a client of the renewed certificate");
    assert!(tls_client(&server.addr(), tls).is_err());
    // The connection made before goes on.
    client.put("k", "v").unwrap();

    // A broken file keeps the certificate in use, and says why.
    std::fs::write(&cert, "not a certificate").unwrap();
    server.signal("SIGHUP");
    wait_log(&server, "TLS files not reloaded, the old ones stay in use");
}

#[test]
fn a_slave_refuses_a_master_whose_certificate_is_not_for_its_master_addr() {
    let pki = Pki::new("duokv");
    // Signed by the right authority, but for another host.
    let master_flags = tls_flags(
        &pki.ca(),
        &pki.issue("master", &["elsewhere.invalid"], false),
    );
    let mut slave_flags = tls_flags(&pki.ca(), &pki.issue("slave", &["127.0.0.1"], false));
    slave_flags.push("--tls-client-auth".into());
    let pair = Pair::start(
        &master_flags.iter().map(String::as_str).collect::<Vec<_>>(),
        &slave_flags.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let says = "the master's TLS certificate says otherwise";
    let log = wait_log(&pair.slave, says);
    assert!(log.contains("is not for 127.0.0.1"), "{log}");
    wait_log(&pair.master, says);
}

/// The body of an HTTP `GET` of `path` at `addr` (the metrics endpoint).
fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn a_replica_set_reads_and_writes_a_tls_pair() {
    let pki = Pki::new("duokv");
    let master_flags = pki.server_flags("master");
    let slave_flags = pki.server_flags("slave");
    let pair = Pair::start(
        &master_flags.iter().map(String::as_str).collect::<Vec<_>>(),
        &slave_flags.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let client = |addr: String| common::client_builder(&addr).tls(pki.client()).build();
    let mut set = duokv::replica_set::ReplicaSet::from_clients(
        client(pair.master.addr()),
        client(pair.slave.addr()),
    )
    .read_from(duokv::replica_set::ReadFrom::Slave);
    set.put("k", "v").expect("a write through TLS");
    let read = set.session_read("k").expect("a session read through TLS");
    assert_eq!(read.value.as_deref(), Some(&b"v"[..]));
}

#[test]
fn a_tls_server_at_its_connection_limit_closes_the_next_one_and_says_why() {
    let pki = Pki::new("duokv");
    let mut flags = pki.server_flags("server");
    flags.extend(["--max-connections".to_string(), "1".to_string()]);
    let server = start(&flags);
    // The start-up probe's connection may still hold the one slot.
    let mut first = poll("the first client to be served", || {
        tls_client(&server.addr(), pki.client()).ok()
    });
    first.put("k", "v").unwrap();
    let reason = tls_error(tls_client(&server.addr(), pki.client()));
    assert!(reason.contains("connection limit"), "{reason}");
    wait_log(&server, "refused, already serving 1 connections");
    first.put("k", "w").expect("the first client carries on");
}

#[test]
fn garbage_that_looks_like_tls_is_refused_and_the_server_carries_on() {
    let pki = Pki::new("duokv");
    let tls_server = start(&pki.server_flags("server"));
    let plain_server = ServerProcess::start(&[]);
    let mut rng = fastrand::Rng::with_seed(18);
    for server in [&tls_server, &plain_server] {
        for _ in 0..20 {
            let mut garbage = vec![0x16];
            garbage.extend((0..rng.usize(1..600)).map(|_| rng.u8(..)));
            let mut stream = TcpStream::connect(server.addr()).unwrap();
            stream.set_read_timeout(Some(DEADLINE)).unwrap();
            let _ = stream.write_all(&garbage);
            let mut reply = Vec::new();
            // Closed, with an alert at most: never a hang.
            let _ = stream.read_to_end(&mut reply);
            assert!(reply.len() < 64, "{} bytes answered", reply.len());
        }
    }
    let mut client = tls_client(&tls_server.addr(), pki.client()).unwrap();
    client.put("k", "v").expect("the TLS server carries on");
    plain_server
        .client()
        .put("k", "v")
        .expect("the plain server carries on");
}
