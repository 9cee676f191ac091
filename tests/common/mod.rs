//! What the integration tests share: a real `duokv-server` child process on
//! a port chosen at run time, and the raw-bytes tools for talking to it
//! below the [`Client`].
//!
//! Every wait here is a poll with a deadline ([`DEADLINE`], checked every
//! [`POLL`]), never a fixed sleep: a test waits exactly as long as the server
//! needs and fails loudly when it needs too long. Every child process is
//! owned by a guard that kills and reaps it when dropped, so a failing test
//! leaves no server behind; a failing test also prints the server's log.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use duokv::Client;
use tempfile::TempDir;

pub mod pki;

/// How long any awaited event may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How often a poll looks again.
pub const POLL: Duration = Duration::from_millis(10);

/// How many fresh ports [`ServerProcess::start`] tries before giving up.
const START_ATTEMPTS: usize = 5;

/// The command that runs a replica: `duokv-server` in the product's tests,
/// `duokv server` (the same code, through the toolbox's binary) in the
/// toolbox's, which include this module too.
pub fn server_command() -> Command {
    match (
        option_env!("CARGO_BIN_EXE_duokv-server"),
        option_env!("CARGO_BIN_EXE_duokv"),
    ) {
        (Some(server), _) => Command::new(server),
        (None, Some(duokv)) => {
            let mut command = Command::new(duokv);
            command.arg("server");
            command
        }
        (None, None) => panic!("this test crate builds neither duokv-server nor duokv"),
    }
}

/// Says that `what` (a test, or part of one) did not run because this
/// machine lacks what it `needs`, where a user sees it: straight to the
/// terminal's stderr, past the test harness's capture of a passing test's
/// output, as a line that starts `SKIPPED`. Under CI (`CI` set), whose
/// `.ci/run` installs everything these tests need, it fails the test
/// instead: a skip there means CI lost a requirement.
pub fn skip(what: &str, needs: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run {what}, which needs {needs}"
    );
    let line = format!("SKIPPED {what}: needs {needs}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Whether this machine can make the two SSH hosts of `tests/two-hosts.sh`
/// (root, for network namespaces; iproute2; OpenSSH's sshd); if not, `what`
/// is [`skip`]ped, naming what is missing.
pub fn can_make_two_hosts(what: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let ip = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    let sshd = Path::new("/usr/sbin/sshd").exists();
    let missing: Vec<&str> = [
        (root, "root (for network namespaces)"),
        (ip, "iproute2"),
        (sshd, "OpenSSH's sshd"),
    ]
    .into_iter()
    .filter_map(|(present, name)| (!present).then_some(name))
    .collect();
    if !missing.is_empty() {
        skip(what, &missing.join(", "));
    }
    missing.is_empty()
}

/// Starts a standalone replica on `data_dir`, writes `keyN` = `valueN` for
/// N in 1..=`count` (one batch each: one client, one write at a time),
/// stops it gracefully, and returns the newest segment of its log.
pub fn write_keys_then_stop(data_dir: &Path, count: usize) -> PathBuf {
    let mut server = ServerProcess::start_in(data_dir, &[]);
    let mut client = server.client();
    for i in 1..=count {
        client
            .put(format!("key{i}"), format!("value{i}"))
            .expect("put");
    }
    drop(client);
    server.sigterm();
    assert!(server.wait_exit(DEADLINE).success(), "{}", server.log());
    newest_segment(data_dir)
}

/// The newest segment of the log in `data_dir` (the highest id).
pub fn newest_segment(data_dir: &Path) -> PathBuf {
    std::fs::read_dir(data_dir)
        .expect("the data dir")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "seg"))
        .max()
        .expect("a segment")
}

/// A token file with `token` in a fresh directory, mode 600.
pub fn token_file(token: &str) -> (TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("a temporary dir");
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{token}\n")).expect("write the token file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    (dir, path)
}

/// A port on 127.0.0.1 that was free a moment ago: bound to port 0, read
/// back, released.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// Calls `check` every [`POLL`] until it returns `Some`, or panics with
/// `what` once [`DEADLINE`] has passed.
pub fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        thread::sleep(POLL);
    }
}

/// A client with a read timeout of [`DEADLINE`], so that a server that never
/// answers fails the test instead of hanging it.
pub fn client_builder(addr: &str) -> duokv::ClientBuilder {
    Client::builder(addr)
        .connect_timeout(DEADLINE)
        .read_timeout(DEADLINE)
        .write_timeout(DEADLINE)
}

/// One `duokv-server` child process, killed and reaped when dropped.
///
/// The data directory is a fresh temporary one ([`ServerProcess::start`]) or
/// one the test owns ([`ServerProcess::start_in`]); it outlives the process,
/// so [`ServerProcess::restart`] can open the same store on the same port.
/// The server's stdout and stderr go to a log file that is printed if the
/// test panics.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Set once the child has been reaped.
    exit: Option<ExitStatus>,
    addr: SocketAddr,
    data_dir: PathBuf,
    args: Vec<String>,
    /// The data directory when this guard created it.
    _owned_dir: Option<TempDir>,
    log_dir: TempDir,
    /// What [`client`](Self::client) connects with, for a server that
    /// speaks TLS.
    tls: Option<duokv::tls::ClientTls>,
}

impl ServerProcess {
    /// Starts a server with a fresh temporary data directory on a free
    /// port, with extra command-line `args` such as `["--fsync", "never"]`.
    pub fn start(args: &[&str]) -> ServerProcess {
        let dir = tempfile::tempdir().expect("create a temporary data dir");
        let mut server = ServerProcess::start_in(dir.path(), args);
        server._owned_dir = Some(dir);
        server
    }

    /// Starts a server on a free port with its store in `data_dir`, which
    /// the caller keeps alive.
    ///
    /// A port can be taken by someone else between [`free_port`] and the
    /// server's bind; when the server exits before it answers, another port
    /// is tried.
    pub fn start_in(data_dir: impl AsRef<Path>, args: &[&str]) -> ServerProcess {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut failures = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let log_dir = tempfile::tempdir().expect("create a temporary log dir");
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let mut server = ServerProcess {
                child: spawn_server(addr, data_dir.as_ref(), &args, log_dir.path()),
                exit: None,
                addr,
                data_dir: data_dir.as_ref().to_path_buf(),
                args: args.clone(),
                _owned_dir: None,
                log_dir,
                tls: None,
            };
            if server.wait_ready() {
                return server;
            }
            failures.push_str(&format!("attempt {attempt} on {addr}:\n{}\n", server.log()));
        }
        panic!("duokv-server did not start in {START_ATTEMPTS} attempts:\n{failures}");
    }

    /// Starts a server on `addr`, chosen beforehand by the caller, with its
    /// store in `data_dir`. Fails with the server's log if the process exits
    /// before it is ready (the port was taken meanwhile, say); the caller
    /// picks new ports and tries again.
    pub fn try_start_at(
        addr: SocketAddr,
        data_dir: impl AsRef<Path>,
        args: &[String],
    ) -> Result<ServerProcess, String> {
        let log_dir = tempfile::tempdir().expect("create a temporary log dir");
        let mut server = ServerProcess {
            child: spawn_server(addr, data_dir.as_ref(), args, log_dir.path()),
            exit: None,
            addr,
            data_dir: data_dir.as_ref().to_path_buf(),
            args: args.to_vec(),
            _owned_dir: None,
            log_dir,
            tls: None,
        };
        if server.wait_ready() {
            Ok(server)
        } else {
            Err(server.log())
        }
    }

    /// The address clients dial, `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Connects [`client`](Self::client) through TLS with `tls` from now
    /// on (the server speaks TLS only).
    pub fn use_tls(&mut self, tls: duokv::tls::ClientTls) {
        self.tls = Some(tls);
    }

    /// A connected client with [`client_builder`]'s timeouts (through
    /// TLS after [`use_tls`](Self::use_tls)).
    pub fn client(&self) -> Client {
        client_builder(&self.addr())
            .tls(self.tls.clone())
            .connect()
            .unwrap_or_else(|e| panic!("connect to {}: {}", self.addr, duokv::error::chain(&e)))
    }

    /// Everything the server has logged so far (over all its restarts).
    pub fn log(&self) -> String {
        read_log(self.log_dir.path())
    }

    /// Sends SIGTERM, the graceful stop.
    pub fn sigterm(&self) {
        self.signal("SIGTERM");
    }

    /// Sends the signal named `name` (`SIGTERM`, `SIGSTOP`, `SIGCONT`).
    pub fn signal(&self, name: &str) {
        let signal: nix::sys::signal::Signal = name.parse().expect("a signal's name");
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, signal)
            .unwrap_or_else(|e| panic!("kill -{name} {pid} failed: {e}"));
    }

    /// Sends SIGKILL, a crash as far as the server can tell.
    pub fn sigkill(&mut self) {
        self.child.kill().expect("kill -KILL the server");
    }

    /// Waits up to `timeout` for the server to exit and returns its status;
    /// panics, with the server's log, if it is still running by then.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "duokv-server still running {timeout:?} after being asked to stop; log:\n{}",
                self.log()
            );
            thread::sleep(POLL);
        }
    }

    /// Starts the server again, on the same address and data directory and
    /// with the same arguments, once the previous process has exited. The
    /// port is the same, so a bind that fails (the port was briefly taken)
    /// is retried until [`DEADLINE`].
    pub fn restart(&mut self) {
        self.wait_exit(DEADLINE);
        let deadline = Instant::now() + DEADLINE;
        loop {
            self.child = spawn_server(self.addr, &self.data_dir, &self.args, self.log_dir.path());
            self.exit = None;
            if self.wait_ready() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "duokv-server did not restart on {}; log:\n{}",
                self.addr,
                self.log()
            );
            thread::sleep(POLL);
        }
    }

    /// The exit status, if the child has exited (reaping it).
    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("try_wait on the server");
        }
        self.exit
    }

    /// Polls until a client is served a ping (true) or the child exits
    /// (false); panics after [`DEADLINE`].
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if self.try_exit().is_some() {
                return false;
            }
            let served = Client::builder(self.addr())
                .connect_timeout(Duration::from_secs(1))
                .read_timeout(Duration::from_secs(5))
                .connect()
                .and_then(|mut client| client.ping());
            // A server that wants an auth token answers too, with a refusal,
            // and so does one that speaks TLS only.
            let answered = matches!(
                served,
                Ok(_) | Err(duokv::Error::Unauthorized { .. } | duokv::Error::TlsRequired { .. })
            );
            // The process that answered must be ours, not a stranger that
            // took the port while ours failed to bind.
            if answered && self.try_exit().is_none() {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "duokv-server on {} not ready after {DEADLINE:?}; log:\n{}",
                self.addr,
                self.log()
            );
            thread::sleep(POLL);
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("--- duokv-server log ({}) ---\n{}", self.addr, self.log());
        }
    }
}

fn spawn_server(addr: SocketAddr, data_dir: &Path, args: &[String], log_dir: &Path) -> Child {
    let log = File::options()
        .create(true)
        .append(true)
        .open(log_dir.join("server.log"))
        .expect("open the server log");
    server_command()
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log file"))
        .stderr(log)
        .spawn()
        .expect("spawn duokv-server")
}

fn read_log(log_dir: &Path) -> String {
    std::fs::read_to_string(log_dir.join("server.log")).unwrap_or_default()
}

/// Two ports on 127.0.0.1 that were free a moment ago, and distinct: both
/// are bound at once before being released.
pub fn free_port_pair() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    (
        a.local_addr().expect("local_addr").port(),
        b.local_addr().expect("local_addr").port(),
    )
}

/// A master and its slave, two `duokv-server` processes that know each
/// other's address from the start.
///
/// Both ports are picked before either process starts, since each needs the
/// other's: the slave runs with `--role slave --master-addr MASTER` and
/// starts first, the master with `--role master --replica SLAVE`. Their
/// stores and event logs (`--event-log`) live in one temporary directory
/// that outlives restarts and is removed after both processes are killed.
#[derive(Debug)]
pub struct Pair {
    /// The master (declared first: dropped, so killed, before the directory
    /// goes).
    pub master: ServerProcess,
    /// The slave.
    pub slave: ServerProcess,
    dir: TempDir,
}

impl Pair {
    /// Starts a pair; `master_args` and `slave_args` are added to each
    /// one's role flags (e.g. `["--replication", "async"]`).
    pub fn start(master_args: &[&str], slave_args: &[&str]) -> Pair {
        let mut failures = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let dir = tempfile::tempdir().expect("create a temporary dir for the pair");
            let (master_port, slave_port) = free_port_pair();
            let master_addr = SocketAddr::from(([127, 0, 0, 1], master_port));
            let slave_addr = SocketAddr::from(([127, 0, 0, 1], slave_port));
            let with = |fixed: [String; 6], extra: &[&str]| -> Vec<String> {
                fixed
                    .into_iter()
                    .chain(extra.iter().map(|a| a.to_string()))
                    .collect()
            };
            let slave_args = with(
                [
                    "--role".into(),
                    "slave".into(),
                    "--master-addr".into(),
                    master_addr.to_string(),
                    "--event-log".into(),
                    dir.path().join(SLAVE_EVENTS).display().to_string(),
                ],
                slave_args,
            );
            let master_args = with(
                [
                    "--role".into(),
                    "master".into(),
                    "--replica".into(),
                    slave_addr.to_string(),
                    "--event-log".into(),
                    dir.path().join(MASTER_EVENTS).display().to_string(),
                ],
                master_args,
            );
            let slave = match ServerProcess::try_start_at(
                slave_addr,
                dir.path().join("slave"),
                &slave_args,
            ) {
                Ok(slave) => slave,
                Err(log) => {
                    failures.push_str(&format!("attempt {attempt}, slave:\n{log}\n"));
                    continue;
                }
            };
            match ServerProcess::try_start_at(master_addr, dir.path().join("master"), &master_args)
            {
                Ok(master) => return Pair { master, slave, dir },
                Err(log) => failures.push_str(&format!("attempt {attempt}, master:\n{log}\n")),
            }
        }
        panic!("the master/slave pair did not start in {START_ATTEMPTS} attempts:\n{failures}");
    }

    /// The master's event log.
    pub fn master_events(&self) -> PathBuf {
        self.dir.path().join(MASTER_EVENTS)
    }

    /// The slave's event log.
    pub fn slave_events(&self) -> PathBuf {
        self.dir.path().join(SLAVE_EVENTS)
    }

    /// Polls until the master reports its link to the slave up.
    pub fn wait_link_up(&self) {
        let mut master = self.master.client();
        poll("the master's link to the slave to come up", || {
            (info_value(&mut master, "link") == "up").then_some(())
        });
    }
}

/// The rows of the event log at `path` so far. Unlike
/// [`duokv::event_log::read`], a torn last line (one with no newline) is
/// left out rather than refused: a SIGKILLed server may have written part
/// of one, since its buffered writer can flush in the middle of a line,
/// and a torn line can even parse (a timestamp cut short). A missing file
/// has no rows (a server killed before its log was created).
pub fn read_events_so_far(path: &Path) -> Vec<duokv::event_log::EventRow> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    let mut rows = Vec::new();
    for (number, line) in whole.lines().enumerate() {
        if (number == 0 && line == duokv::event_log::HEADER) || line.trim().is_empty() {
            continue;
        }
        let row = duokv::event_log::EventRow::from_csv(line).unwrap_or_else(|| {
            panic!(
                "{}: line {} is not an event: {line}",
                path.display(),
                number + 1
            )
        });
        rows.push(row);
    }
    rows
}

/// The master's event log, in the pair's directory.
const MASTER_EVENTS: &str = "master-events.csv";
/// The slave's event log, in the pair's directory.
const SLAVE_EVENTS: &str = "slave-events.csv";

/// The value of `name` in the server's `info` reply.
pub fn info_value(client: &mut Client, name: &str) -> String {
    let info = client.info().expect("info");
    info.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no `{name}` in info: {info:?}"))
}

/// The value of `name` in the server's `info` reply, if it has one.
pub fn info_value_opt(client: &mut Client, name: &str) -> Option<String> {
    let info = client.info().expect("info");
    info.into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

/// The server's `last_seq`, from `info`.
pub fn last_seq(client: &mut Client) -> u64 {
    info_value(client, "last_seq")
        .parse()
        .expect("last_seq is a number")
}

/// Runs `command` to completion with a [`DEADLINE`], capturing its output;
/// kills it and panics if it runs longer.
pub fn run_with_deadline(command: &mut Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the command");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout pipe")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr pipe")));
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} still running after {DEADLINE:?}");
        }
        thread::sleep(POLL);
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

// ---------------------------------------------------------------------------
// Raw bytes, laid out as in `protocol/PROTOCOL.md`, written here by hand so
// that the tests check the document and not only the protocol crate.

/// Handshake reply status 0, `Ok`.
pub const STATUS_OK: u8 = 0;
/// Handshake reply status 1, `BadMagic`.
pub const STATUS_BAD_MAGIC: u8 = 1;
/// Handshake reply status 2, `UnsupportedVersion`.
pub const STATUS_UNSUPPORTED_VERSION: u8 = 2;

/// Frame kind 0x02, `Read`.
pub const KIND_READ: u8 = 0x02;
/// Frame kind 0x05, `Put`.
pub const KIND_PUT: u8 = 0x05;
/// Frame kind 0x82, the `Pong` response.
pub const KIND_PONG: u8 = 0x82;
/// Frame kind 0x84, the `Error` response.
pub const KIND_ERROR: u8 = 0x84;

/// Error code 5, `TooLarge`.
pub const CODE_TOO_LARGE: u16 = 5;
/// Error code 6, `BadRequest`.
pub const CODE_BAD_REQUEST: u16 = 6;

/// A client handshake (section 1) speaking `version`, with no extra bytes.
pub fn handshake_bytes(version: u16) -> Vec<u8> {
    let mut bytes = b"DUKV".to_vec();
    bytes.extend_from_slice(&version.to_be_bytes());
    bytes.extend_from_slice(&[1, 0, 0, 0]); // role client, flags, extra_len
    bytes
}

/// A frame (section 3): `length u32 | kind u8 | request_id u64 | body`.
pub fn frame_bytes(kind: u8, request_id: u64, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(9 + body.len()).expect("frame fits a u32 length");
    let mut bytes = Vec::with_capacity(13 + body.len());
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.push(kind);
    bytes.extend_from_slice(&request_id.to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

/// A key-and-value body (section 5.1), with no check of the caps.
pub fn key_value_body(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(8 + key.len() + value.len());
    for field in [key, value] {
        let len = u32::try_from(field.len()).expect("field fits a u32 length");
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(field);
    }
    body
}

/// A TCP connection with [`DEADLINE`] as its read and write timeouts.
pub fn raw_connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("set_read_timeout");
    stream
        .set_write_timeout(Some(DEADLINE))
        .expect("set_write_timeout");
    stream
}

/// A handshake reply (section 2), decoded by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawReply {
    /// The version the server speaks.
    pub version: u16,
    /// The status byte.
    pub status: u8,
    /// The node-role byte.
    pub node_role: u8,
}

/// Parses a handshake reply with no extra bytes, which must be all of
/// `bytes`.
pub fn parse_reply(bytes: &[u8]) -> RawReply {
    assert_eq!(
        bytes.len(),
        10,
        "a handshake reply is 10 bytes: {bytes:02x?}"
    );
    assert_eq!(&bytes[..4], b"DUKV", "reply magic: {bytes:02x?}");
    assert_eq!(&bytes[8..10], &[0, 0], "reply extra_len: {bytes:02x?}");
    RawReply {
        version: u16::from_be_bytes([bytes[4], bytes[5]]),
        status: bytes[6],
        node_role: bytes[7],
    }
}

/// A raw connection past a successful handshake.
pub fn raw_session(addr: &str) -> TcpStream {
    let mut stream = raw_connect(addr);
    stream
        .write_all(&handshake_bytes(1))
        .expect("send the handshake");
    let mut reply = [0u8; 10];
    stream
        .read_exact(&mut reply)
        .expect("read the handshake reply");
    let reply = parse_reply(&reply);
    assert_eq!(reply.status, STATUS_OK, "handshake refused: {reply:?}");
    stream
}

/// Reads until the server closes the connection (end of stream or a reset)
/// and returns what arrived; panics if it is still open after [`DEADLINE`].
pub fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let deadline = Instant::now() + DEADLINE;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return bytes,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the server kept the connection open for {DEADLINE:?}; got {bytes:02x?}")
            }
            // A reset or an abort: closed, by the server.
            Err(_) => return bytes,
        }
        assert!(
            Instant::now() < deadline,
            "the server kept the connection open for {DEADLINE:?}"
        );
    }
}

/// An `Error` response frame (section 6.5), decoded by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawError {
    /// The frame's request id.
    pub request_id: u64,
    /// The error code.
    pub code: u16,
    /// The message.
    pub message: String,
}

/// Parses one `Error` frame, which must be all of `bytes`.
pub fn parse_error_frame(bytes: &[u8]) -> RawError {
    let take = |at: usize, n: usize| -> &[u8] {
        bytes
            .get(at..at + n)
            .unwrap_or_else(|| panic!("error frame too short for {n} bytes at {at}: {bytes:02x?}"))
    };
    let u32_at = |at: usize| u32::from_be_bytes(take(at, 4).try_into().unwrap()) as usize;
    let len = u32_at(0);
    assert_eq!(
        4 + len,
        bytes.len(),
        "frame length prefix vs bytes received"
    );
    assert_eq!(take(4, 1)[0], KIND_ERROR, "kind of the frame: {bytes:02x?}");
    let request_id = u64::from_be_bytes(take(5, 8).try_into().unwrap());
    let code = u16::from_be_bytes(take(13, 2).try_into().unwrap());
    let msg_len = u32_at(15);
    let message = String::from_utf8(take(19, msg_len).to_vec()).expect("message is UTF-8");
    let detail_len = u32_at(19 + msg_len);
    assert_eq!(
        19 + msg_len + 4 + detail_len,
        bytes.len(),
        "body must be consumed exactly"
    );
    RawError {
        request_id,
        code,
        message,
    }
}

/// A command running in the background with its stdout and stderr
/// captured, for a test that has work to do while it runs; killed and
/// reaped if dropped before it finished (a failing test leaves no child
/// behind).
#[derive(Debug)]
pub struct Background {
    child: Child,
    /// The command line, for messages.
    what: String,
    stdout: Option<thread::JoinHandle<Vec<u8>>>,
    stderr: Option<thread::JoinHandle<Vec<u8>>>,
}

impl Background {
    /// Starts `command` with stdin closed and its output piped.
    pub fn spawn(command: &mut Command) -> Background {
        let what = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let drain = |mut pipe: Box<dyn Read + Send>| {
            thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let stdout = drain(Box::new(child.stdout.take().expect("stdout pipe")));
        let stderr = drain(Box::new(child.stderr.take().expect("stderr pipe")));
        Background {
            child,
            what,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// Whether the command is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits up to `timeout` for the command to exit and returns its
    /// output; kills it and panics, with what it printed, if it runs
    /// longer.
    pub fn wait(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let output = self.collect(ExitStatus::default());
                panic!(
                    "{} still running after {timeout:?}; stdout:\n{}\nstderr:\n{}",
                    self.what,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            thread::sleep(POLL);
        };
        self.collect(status)
    }

    /// The output gathered by the drain threads, once the child is gone.
    fn collect(&mut self, status: ExitStatus) -> Output {
        let join = |handle: Option<thread::JoinHandle<Vec<u8>>>| {
            handle
                .map(|h| h.join().expect("pipe reader"))
                .unwrap_or_default()
        };
        Output {
            status,
            stdout: join(self.stdout.take()),
            stderr: join(self.stderr.take()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Handshake status 6, `Malformed`.
pub const STATUS_MALFORMED: u8 = 6;
/// Handshake status 8, `Diverged`.
pub const STATUS_DIVERGED: u8 = 8;
/// Handshake status 9, `Fenced`.
pub const STATUS_FENCED: u8 = 9;

/// Replication kinds (section 7).
pub const KIND_HELLO: u8 = 0x40;
/// `Append`.
pub const KIND_APPEND: u8 = 0x41;
/// `Ack`.
pub const KIND_ACK: u8 = 0x42;
/// `SnapshotBegin`.
pub const KIND_SNAPSHOT_BEGIN: u8 = 0x43;
/// `SnapshotEntry`.
pub const KIND_SNAPSHOT_ENTRY: u8 = 0x44;
/// `SnapshotEnd`.
pub const KIND_SNAPSHOT_END: u8 = 0x45;
/// `ResyncRequest`.
pub const KIND_RESYNC_REQUEST: u8 = 0x46;

/// A master's replication handshake (role 2) whose `extra` carries
/// `history_id` (field tag 1) if given, and nothing else.
pub fn replica_handshake_bytes(history_id: Option<u64>) -> Vec<u8> {
    let mut extra = Vec::new();
    if let Some(id) = history_id {
        extra.extend_from_slice(&[1, 0, 8]);
        extra.extend_from_slice(&id.to_be_bytes());
    }
    let mut bytes = b"DUKV".to_vec();
    bytes.extend_from_slice(&1u16.to_be_bytes());
    bytes.extend_from_slice(&[2, 0]); // role replica, flags
    bytes.extend_from_slice(&(extra.len() as u16).to_be_bytes());
    bytes.extend_from_slice(&extra);
    bytes
}

/// Reads a handshake reply with its extra bytes; returns it and the
/// reason a refusal carries (reply field tag 1), if any.
pub fn read_reply(stream: &mut TcpStream) -> (RawReply, Option<String>) {
    let mut fixed = [0u8; 10];
    stream
        .read_exact(&mut fixed)
        .expect("read the handshake reply");
    let mut extra = vec![0u8; usize::from(u16::from_be_bytes([fixed[8], fixed[9]]))];
    stream
        .read_exact(&mut extra)
        .expect("read the reply's extra");
    let mut reason = None;
    let mut at = 0;
    while at + 3 <= extra.len() {
        let len = usize::from(u16::from_be_bytes([extra[at + 1], extra[at + 2]]));
        let value = &extra[at + 3..(at + 3 + len).min(extra.len())];
        if extra[at] == 1 {
            reason = Some(String::from_utf8_lossy(value).into_owned());
        }
        at += 3 + len;
    }
    fixed[8..10].copy_from_slice(&[0, 0]);
    (parse_reply(&fixed), reason)
}

/// Reads one frame: its kind, request id and body; `None` at a clean end
/// of stream (or a reset).
pub fn read_raw_frame(stream: &mut TcpStream) -> Option<(u8, u64, Vec<u8>)> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut rest = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut rest).ok()?;
    let request_id = u64::from_be_bytes(rest[1..9].try_into().unwrap());
    Some((rest[0], request_id, rest[9..].to_vec()))
}

/// A fake master's stream to a slave, past its handshake and `Hello`.
/// Frames are gathered and sent together by [`FakeMaster::flush`], so that
/// a slave that refuses early has read them all (no reset on its close).
pub struct FakeMaster {
    /// The connection.
    pub stream: TcpStream,
    /// Frames not sent yet.
    out: Vec<u8>,
    /// The slave's `Hello`: its last seq and history id.
    pub hello: (u64, u64),
}

impl FakeMaster {
    /// Dials the slave at `addr` as a master of `history_id`, expects it
    /// accepted, and reads the slave's `Hello`.
    pub fn connect(addr: &str, history_id: u64) -> FakeMaster {
        let mut stream = raw_connect(addr);
        stream
            .write_all(&replica_handshake_bytes(Some(history_id)))
            .expect("send the handshake");
        let (reply, reason) = read_reply(&mut stream);
        assert_eq!(reply.status, STATUS_OK, "refused: {reason:?}");
        let (kind, _, body) = read_raw_frame(&mut stream).expect("the slave's hello");
        assert_eq!(kind, KIND_HELLO);
        let hello = (
            u64::from_be_bytes(body[..8].try_into().unwrap()),
            u64::from_be_bytes(body[8..16].try_into().unwrap()),
        );
        FakeMaster {
            stream,
            out: Vec::new(),
            hello,
        }
    }

    /// Queues one replication frame of `kind` with `body`.
    pub fn send(&mut self, kind: u8, seq: u64, body: &[u8]) {
        self.out.extend_from_slice(&frame_bytes(kind, seq, body));
    }

    /// Sends the queued frames in one write; a slave that closed meanwhile
    /// is not an error here (what it said is read next).
    pub fn flush(&mut self) {
        let _ = self.stream.write_all(&std::mem::take(&mut self.out));
    }

    /// Sends the queued frames and reads the slave's next frame.
    pub fn reply(&mut self) -> Option<(u8, u64, Vec<u8>)> {
        self.flush();
        read_raw_frame(&mut self.stream)
    }

    /// Sends `Append { seq, put key = value }`.
    pub fn append_put(&mut self, seq: u64, key: &str, value: &str) {
        let mut body = seq.to_be_bytes().to_vec();
        body.push(1);
        body.extend_from_slice(&key_value_body(key.as_bytes(), value.as_bytes()));
        self.send(KIND_APPEND, seq, &body);
    }

    /// Sends `SnapshotBegin { seq, replication_id, entries }`.
    pub fn snapshot_begin(&mut self, seq: u64, replication_id: u64, entries: u64) {
        let body = [seq, replication_id, entries]
            .map(u64::to_be_bytes)
            .concat();
        self.send(KIND_SNAPSHOT_BEGIN, seq, &body);
    }

    /// Sends `SnapshotEntry { seq, key, value }`.
    pub fn snapshot_entry(&mut self, seq: u64, key: &str, value: &str) {
        let mut body = seq.to_be_bytes().to_vec();
        body.extend_from_slice(&key_value_body(key.as_bytes(), value.as_bytes()));
        self.send(KIND_SNAPSHOT_ENTRY, seq, &body);
    }

    /// Sends `SnapshotEnd { seq }`.
    pub fn snapshot_end(&mut self, seq: u64) {
        self.send(KIND_SNAPSHOT_END, seq, &seq.to_be_bytes());
    }

    /// Reads frames until an `Ack` of `seq` or more comes; panics on
    /// anything else.
    pub fn wait_ack(&mut self, seq: u64) {
        self.flush();
        loop {
            let (kind, _, body) = read_raw_frame(&mut self.stream).expect("an ack");
            assert_eq!(kind, KIND_ACK, "expected an ack, got kind {kind:#x}");
            if u64::from_be_bytes(body[..8].try_into().unwrap()) >= seq {
                return;
            }
        }
    }
}

/// The discarded-writes files (`discarded-*.csv`) in a data dir, sorted.
pub fn discarded_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list the data dir")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("discarded-") && name.ends_with(".csv")
        })
        .collect();
    files.sort();
    files
}

/// Stops `server` with SIGSTOP and waits until every thread of it is
/// stopped (the signal is delivered asynchronously).
pub fn sigstop_and_wait(server: &ServerProcess) {
    server.signal("SIGSTOP");
    let tasks = format!("/proc/{}/task", server.pid());
    poll("the server's threads to stop", || {
        let all_stopped = std::fs::read_dir(&tasks).ok()?.all(|task| {
            task.ok()
                .and_then(|t| std::fs::read_to_string(t.path().join("stat")).ok())
                .and_then(|stat| {
                    // The state follows the parenthesised command name.
                    let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
                    Some(state == 'T' || state == 't')
                })
                .unwrap_or(false)
        });
        all_stopped.then_some(())
    });
}
