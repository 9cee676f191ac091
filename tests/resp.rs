//! The RESP port (`--resp-listen`) against real Redis tools: redis-cli for
//! the commands, redis-benchmark for load, and raw bytes for pipelining and
//! inline commands. Each test starts real `duokv-server`s with a RESP port
//! chosen at run time.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use common::{DEADLINE, Pair, ServerProcess, free_port, poll, run_with_deadline, skip};

/// Whether the Redis tools are here (CI installs Debian's redis-tools).
fn have_redis_tools(test: &str) -> bool {
    let found = Command::new("redis-cli").arg("--version").output().is_ok();
    if !found {
        skip(test, "redis-cli and redis-benchmark (Debian's redis-tools)");
    }
    found
}

/// A RESP address on a free port, and the flag that serves it.
fn resp_port() -> (String, [String; 2]) {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port())).to_string();
    (addr.clone(), ["--resp-listen".to_string(), addr])
}

/// `redis-cli -h HOST -p PORT ARGS...`: its stdout, trimmed.
fn cli(addr: &str, args: &[&str]) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let output = run_with_deadline(
        Command::new("redis-cli")
            .args(["-h", host, "-p", port])
            .args(args),
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
        + &String::from_utf8_lossy(&output.stderr)
}

/// An async pair, linked, each with a RESP port: the pair and the two
/// RESP addresses (master's, slave's).
fn async_pair_with_resp() -> (Pair, String, String) {
    let (master_resp, master_flag) = resp_port();
    let (slave_resp, slave_flag) = resp_port();
    let mut master_args = vec!["--replication", "async"];
    master_args.extend(master_flag.iter().map(String::as_str));
    let slave_args: Vec<&str> = slave_flag.iter().map(String::as_str).collect();
    let pair = Pair::start(&master_args, &slave_args);
    pair.wait_link_up();
    (pair, master_resp, slave_resp)
}

fn start_with_resp(extra: &[&str]) -> (ServerProcess, String) {
    let (addr, flag) = resp_port();
    let mut args: Vec<&str> = flag.iter().map(String::as_str).collect();
    args.extend(extra);
    let server = ServerProcess::start(&args);
    (server, addr)
}

#[test]
fn redis_cli_runs_the_commands_against_a_standalone_server() {
    if !have_redis_tools("redis_cli_runs_the_commands") {
        return;
    }
    let (server, addr) = start_with_resp(&[]);
    assert_eq!(cli(&addr, &["PING"]), "PONG");
    assert_eq!(cli(&addr, &["SET", "greeting", "hello"]), "OK");
    assert_eq!(cli(&addr, &["GET", "greeting"]), "hello");
    assert_eq!(cli(&addr, &["SET", "greeting", "again", "NX"]), "");
    assert_eq!(cli(&addr, &["SET", "absent", "x", "XX"]), "");
    assert_eq!(cli(&addr, &["GET", "absent"]), "");
    assert_eq!(cli(&addr, &["EXISTS", "greeting", "absent"]), "1");
    assert_eq!(cli(&addr, &["MSET", "a", "1", "b", "2"]), "OK");
    assert_eq!(cli(&addr, &["MGET", "a", "b", "absent"]), "1\n2");
    assert_eq!(cli(&addr, &["DEL", "a", "b", "absent"]), "2");
    assert_eq!(cli(&addr, &["ECHO", "hi there"]), "hi there");
    let expiry = cli(&addr, &["SET", "k", "v", "EX", "10"]);
    assert!(expiry.contains("duokv has no expiry"), "{expiry}");
    let unknown = cli(&addr, &["FLUSHALL"]);
    assert!(unknown.contains("unknown command 'FLUSHALL'"), "{unknown}");
    let info = cli(&addr, &["INFO", "replication"]);
    assert!(info.contains("role:master"), "{info}");
    // What the native port sees is the same store.
    assert_eq!(
        server.client().read("greeting").unwrap().as_deref(),
        Some(&b"hello"[..])
    );
}

#[test]
fn a_pair_replicates_resp_writes_refuses_them_on_the_slave_and_waits() {
    if !have_redis_tools("a_pair_replicates_resp_writes") {
        return;
    }
    let (_pair, master_resp, slave_resp) = async_pair_with_resp();
    assert_eq!(cli(&master_resp, &["SET", "k", "v"]), "OK");
    poll("the slave to show the write", || {
        (cli(&slave_resp, &["GET", "k"]) == "v").then_some(())
    });
    let refused = cli(&slave_resp, &["SET", "k", "w"]);
    assert!(refused.contains("READONLY"), "{refused}");
    // WAIT counts the slave once it acknowledged this connection's write.
    let waited = cli(&master_resp, &["SET", "k2", "v2"]);
    assert_eq!(waited, "OK");
    let mut stream = TcpStream::connect(&master_resp).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
        .write_all(b"*3\r\n$3\r\nSET\r\n$2\r\nk3\r\n$2\r\nv3\r\n*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$4\r\n5000\r\n")
        .unwrap();
    assert_eq!(read_exactly(&mut stream, 9), b"+OK\r\n:1\r\n");
    let info = cli(&slave_resp, &["INFO", "replication"]);
    assert!(
        info.contains("role:slave") && info.contains("master_link_status:up"),
        "{info}"
    );
    let info = cli(&master_resp, &["INFO", "replication"]);
    assert!(info.contains("connected_slaves:1"), "{info}");
}

fn read_exactly(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    stream.read_exact(&mut bytes).unwrap();
    bytes
}

#[test]
fn pipelined_and_inline_requests_are_answered_in_order() {
    let (_server, addr) = start_with_resp(&[]);
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
        .write_all(
            b"PING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nFOO bar\r\n*1\r\n$4\r\nPING\r\n",
        )
        .unwrap();
    let expected: &[u8] =
        b"+PONG\r\n+OK\r\n$1\r\nv\r\n-ERR unknown command 'FOO', with args beginning with: 'bar' \r\n+PONG\r\n";
    assert_eq!(
        String::from_utf8_lossy(&read_exactly(&mut stream, expected.len())),
        String::from_utf8_lossy(expected)
    );
    // Garbage gets an error and the close; the server carries on.
    stream.write_all(b"*1\r\n$-5\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(
        rest.starts_with(b"-ERR "),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    let mut again = TcpStream::connect(&addr).unwrap();
    again.write_all(b"PING\r\n").unwrap();
    again.set_read_timeout(Some(DEADLINE)).unwrap();
    assert_eq!(read_exactly(&mut again, 7), b"+PONG\r\n");
}

#[test]
fn the_auth_token_is_asked_for_with_auth_and_hello() {
    if !have_redis_tools("the_auth_token_is_asked_for") {
        return;
    }
    let (_dir, token) = common::token_file("resp-secret");
    let token_arg = token.display().to_string();
    let (_server, addr) = start_with_resp(&["--auth-token-file", &token_arg]);
    let refused = cli(&addr, &["GET", "k"]);
    assert!(refused.contains("NOAUTH"), "{refused}");
    assert_eq!(
        cli(
            &addr,
            &["-a", "resp-secret", "--no-auth-warning", "SET", "k", "v"]
        ),
        "OK"
    );
    let wrong = cli(&addr, &["-a", "not-it", "--no-auth-warning", "GET", "k"]);
    assert!(
        wrong.contains("WRONGPASS") || wrong.contains("NOAUTH"),
        "{wrong}"
    );
    let hello = cli(&addr, &["HELLO", "2", "AUTH", "default", "resp-secret"]);
    assert!(hello.contains("proto"), "{hello}");
    let hello4 = cli(&addr, &["HELLO", "4"]);
    assert!(hello4.contains("NOPROTO"), "{hello4}");
}

#[test]
fn redis_benchmark_drives_a_pair() {
    if !have_redis_tools("redis_benchmark_drives_a_pair") {
        return;
    }
    let (master_resp, master_flag) = resp_port();
    let mut master_args = vec!["--replication", "sync", "--fsync", "never"];
    master_args.extend(master_flag.iter().map(String::as_str));
    let pair = Pair::start(&master_args, &["--fsync", "never"]);
    pair.wait_link_up();
    let (host, port) = master_resp.rsplit_once(':').unwrap();
    let output = run_with_deadline(Command::new("redis-benchmark").args([
        "-h",
        host,
        "-p",
        port,
        "-t",
        "set,get,ping",
        "-n",
        "2000",
        "-c",
        "8",
        "-q",
    ]));
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    for test in ["SET", "GET", "PING_INLINE"] {
        let line = text
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with(&format!("{test}:")))
            .unwrap_or_else(|| panic!("no {test} line:\n{text}"));
        assert!(line.contains("requests per second"), "{line}");
    }
    assert!(!text.contains("ERR"), "{text}");
    assert!(
        pair.master
            .client()
            .read("key:__rand_int__")
            .unwrap()
            .is_some()
    );
}

/// The read contracts through RESP: the connection's last write token
/// (`DUOKV.TOKEN`), and a read on the slave after it (`DUOKV.GET ... AFTER`),
/// which the native client's token reads too.
#[test]
fn a_write_token_reads_the_write_on_the_slave_through_resp() {
    let (pair, master_resp, slave_resp) = async_pair_with_resp();
    let mut master = TcpStream::connect(&master_resp).unwrap();
    master.set_read_timeout(Some(DEADLINE)).unwrap();
    master.write_all(b"DUOKV.TOKEN\r\n").unwrap();
    assert_eq!(read_exactly(&mut master, 5), b"$-1\r\n", "no write yet");
    master
        .write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n*1\r\n$11\r\nDUOKV.TOKEN\r\n")
        .unwrap();
    assert_eq!(read_exactly(&mut master, 5), b"+OK\r\n");
    let token = read_bulk(&mut master);
    let parsed: duokv::Token = token.parse().expect("a duokv token");
    assert!(parsed.seq > 0);
    let mut slave = TcpStream::connect(&slave_resp).unwrap();
    slave.set_read_timeout(Some(DEADLINE)).unwrap();
    let get = format!(
        "*6\r\n$9\r\nDUOKV.GET\r\n$1\r\nk\r\n$5\r\nAFTER\r\n${}\r\n{token}\r\n$4\r\nWAIT\r\n$4\r\n5000\r\n",
        token.len()
    );
    slave.write_all(get.as_bytes()).unwrap();
    assert_eq!(read_bulk(&mut slave), "v1");
    // The native client reads after the same token.
    let mut native = pair.slave.client();
    let read = native
        .read_when(
            "k",
            &duokv::ReadWhen::new().after(Some(parsed)).wait(DEADLINE),
        )
        .unwrap();
    assert_eq!(read.value.as_deref(), Some(&b"v1"[..]));
}

/// A bulk string reply's text.
fn read_bulk(stream: &mut TcpStream) -> String {
    let mut header = Vec::new();
    let mut byte = [0u8; 1];
    while !header.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).unwrap();
        header.push(byte[0]);
    }
    let header = String::from_utf8_lossy(&header);
    let len: usize = header
        .trim_start_matches('$')
        .trim_end()
        .parse()
        .unwrap_or_else(|_| panic!("not a bulk string: {header:?}"));
    let body = read_exactly(stream, len + 2);
    String::from_utf8_lossy(&body[..len]).into_owned()
}

/// A Python interpreter with redis-py: `$DUOKV_PYTHON` (CI's venv), else
/// `python3` if it has the module.
fn python_with_redis() -> Option<String> {
    let candidates = std::env::var("DUOKV_PYTHON")
        .ok()
        .into_iter()
        .chain(["python3".to_string()]);
    candidates.into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import redis"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn redis_py_does_crud_pipelines_and_wait_against_a_pair() {
    let Some(python) = python_with_redis() else {
        return skip(
            "redis_py_does_crud_pipelines_and_wait_against_a_pair",
            "redis-py (pip install redis; CI's venv has it)",
        );
    };
    let (_pair, master_resp, slave_resp) = async_pair_with_resp();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/resp_clients/redis_py.py"
    );
    let output = run_with_deadline(Command::new(&python).args([script, &master_resp, &slave_resp]));
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    for check in [
        "crud ok",
        "pipeline ok",
        "wait ok",
        "slave ok",
        "refusals ok",
    ] {
        assert!(text.contains(check), "{check} missing:\n{text}");
    }
}

/// After `HELLO 3` a connection gets RESP3's null and map (redis-py 8
/// asks for RESP3 by default); before it, RESP2's.
#[test]
fn hello_3_switches_the_connection_to_resp3() {
    let (_server, addr) = start_with_resp(&[]);
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(b"GET absent\r\n").unwrap();
    assert_eq!(read_exactly(&mut stream, 5), b"$-1\r\n");
    stream.write_all(b"HELLO 3\r\n").unwrap();
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"%7\r\n", "HELLO 3 answers a map of 7");
    // Skip the map's 14 items, then a RESP3 null.
    stream.write_all(b"GET absent\r\n").unwrap();
    let mut all = Vec::new();
    let mut byte = [0u8; 1];
    while !all.ends_with(b"\r\n_\r\n") {
        stream.read_exact(&mut byte).unwrap();
        all.push(byte[0]);
    }
    assert!(String::from_utf8_lossy(&all).contains("proto\r\n:3\r\n"));
}

/// With TLS the RESP port speaks TLS only: `redis-cli --tls --cacert`
/// works, a client in clear is told to use TLS.
#[test]
fn redis_cli_reaches_a_tls_resp_port() {
    if !have_redis_tools("redis_cli_reaches_a_tls_resp_port") {
        return;
    }
    let pki = common::pki::Pki::new("resp");
    let mut args = pki.server_flags("server");
    let (addr, flag) = resp_port();
    args.extend(flag);
    let server = ServerProcess::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let ca = pki.ca().display().to_string();
    let tls = ["--tls", "--cacert", ca.as_str()];
    assert_eq!(cli(&addr, &[&tls[..], &["SET", "k", "v"]].concat()), "OK");
    assert_eq!(cli(&addr, &[&tls[..], &["GET", "k"]].concat()), "v");
    let in_clear = cli(&addr, &["GET", "k"]);
    assert!(in_clear.contains("speaks TLS only"), "{in_clear}");
    let log = server.log();
    assert!(log.contains("a client in clear on a TLS port"), "{log}");
}
