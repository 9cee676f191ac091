//! `duokv demo`: the whole job on one machine with nothing set up.
//!
//! For each replication mode (sync, then async) it starts a slave and a
//! master as child processes on free loopback ports, with their stores in a
//! temporary directory and their event logs in the run directory; runs the
//! assignment's workload (100 updates, one a second, to one key) with [`bench`](mod@crate::bench); stops both servers
//! gracefully (so their event logs are complete); and finally prints the
//! `stats` report of both runs with the paths of the charts. The run
//! directories stay under `--out` (`./duokv-demo/sync`, `./duokv-demo/async`).

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::bench::{self, BenchConfig};
use crate::certs::Subject;
use crate::error::{Error, Result};
use crate::run_dir;
use duokv::Client;
use duokv::ReplicationMode;
use duokv::tls::ClientTls;

/// How long a server may take to come up or to stop.
const PATIENCE: Duration = Duration::from_secs(15);

/// How many lines of a replica's log an error about it shows.
const LOG_TAIL: usize = 10;

/// Refuses an `--fsync` policy the replicas would refuse, before any is
/// started: `always`, `never` or `every:MS` (MS a whole number of
/// milliseconds), as `duokv server --fsync` parses it.
pub fn check_fsync(text: &str) -> Result<()> {
    duokv::cli::parse_fsync(text)
        .map(|_| ())
        .map_err(|_| Error::Usage {
            message: format!("--fsync {text}: use always, never or every:MS (e.g. every:100)"),
        })
}

/// The last `lines` lines of the file at `path`, each indented, or a note
/// that it cannot be read.
fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            if tail.is_empty() {
                "  (empty)".into()
            } else {
                tail.iter()
                    .map(|line| format!("  {line}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        Err(e) => format!("  (cannot read it: {e})"),
    }
}

/// What `duokv demo` runs.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Updates per run.
    pub count: u64,
    /// Time between update starts.
    pub interval: Duration,
    /// Where the run directories go.
    pub out: PathBuf,
    /// The modes to run, in order.
    pub modes: Vec<ReplicationMode>,
    /// The program that runs a replica: the `duokv` executable itself.
    pub server_bin: PathBuf,
    /// The arguments before the replica's flags: `server`, so that each
    /// replica is `duokv server --listen ... --data-dir ...`.
    pub server_args: Vec<String>,
    /// The servers' `--fsync` policy.
    pub fsync: String,
    /// Run the pair with TLS on: a fresh authority and certificate, made
    /// for the run with [`certs`](crate::certs), for clients and the
    /// replication stream.
    pub tls: bool,
}

impl DemoConfig {
    /// Refuses settings that cannot be run as asked ([`Error::Usage`]).
    pub fn check(&self) -> Result<()> {
        bench::check_workload(self.count, self.interval)?;
        check_fsync(&self.fsync)
    }

    /// The assignment's workload (100 updates, one a second, to one key)
    /// in both modes, its replicas run by the running
    /// executable as `duokv server` (so `duokv demo` needs no binary but its
    /// own; call this from the `duokv` binary, or set `server_bin` and
    /// `server_args`).
    pub fn new(out: impl Into<PathBuf>) -> Result<Self> {
        Ok(DemoConfig {
            count: 100,
            interval: Duration::from_secs(1),
            out: out.into(),
            modes: vec![ReplicationMode::Sync, ReplicationMode::Async],
            server_bin: std::env::current_exe()?,
            server_args: vec!["server".into()],
            fsync: "always".into(),
            tls: false,
        })
    }
}

/// Runs the demo; returns the run directories, in mode order.
pub fn run(config: &DemoConfig, stop: &AtomicBool) -> Result<Vec<PathBuf>> {
    config.check()?;
    let data = tempfile::Builder::new()
        .prefix("duokv-demo-data-")
        .tempdir()?;
    let tls = if config.tls {
        Some(DemoTls::make(&data.path().join("tls"))?)
    } else {
        None
    };
    let mut dirs = Vec::new();
    for mode in &config.modes {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let dir = config.out.join(mode.to_string());
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| Error::File {
                path: dir.clone(),
                source,
            })?;
        }
        std::fs::create_dir_all(&dir).map_err(|source| Error::File {
            path: dir.clone(),
            source,
        })?;
        eprintln!(
            "== {mode} replication: {} updates, {:?} apart; run directory {}",
            config.count,
            config.interval,
            dir.display()
        );
        let data = data.path().join(mode.to_string());
        let mut pair = Pair::start(config, *mode, (&dir, &data), tls.as_ref())?;
        let mut bench = BenchConfig::new(pair.master_addr.clone(), pair.slave_addr.clone(), &dir);
        bench.tls = tls.as_ref().map(|tls| tls.client.clone());
        bench.count = config.count;
        bench.interval = config.interval;
        bench.client_host = "local (demo)".into();
        let outcome = bench::run(&bench, stop);
        pair.stop();
        let outcome = outcome?;
        let failed = outcome.rows.iter().filter(|r| r.error.is_some()).count();
        let writes = outcome.rows.len();
        let noun = if writes == 1 { "write" } else { "writes" };
        eprintln!("   {writes} {noun}, {failed} failed");
        dirs.push(dir);
    }
    Ok(dirs)
}

/// The TLS of a demo: one certificate for 127.0.0.1, which both
/// replicas present, and the client's trust in its authority.
struct DemoTls {
    server_flags: Vec<String>,
    client: ClientTls,
}

impl DemoTls {
    fn make(dir: &Path) -> Result<DemoTls> {
        let node = Subject {
            file: "replica".into(),
            names: vec!["127.0.0.1".into()],
        };
        let (ca, issued) = crate::certs::make(dir, &[node], 1)?;
        let client = ClientTls::new(&ca, None).map_err(|e| Error::Failed {
            message: format!("the demo's TLS: {}", duokv::error::chain(&e)),
        })?;
        let path = |p: &Path| p.display().to_string();
        Ok(DemoTls {
            server_flags: vec![
                "--tls-cert".into(),
                path(&issued[0].cert),
                "--tls-key".into(),
                path(&issued[0].key),
                "--tls-ca".into(),
                path(&ca),
            ],
            client,
        })
    }
}

/// A master and a slave running as child processes.
struct Pair {
    master: Server,
    slave: Server,
    master_addr: String,
    slave_addr: String,
    /// The client side of the pair's TLS, if it speaks it.
    tls: Option<ClientTls>,
}

impl Pair {
    fn start(
        config: &DemoConfig,
        mode: ReplicationMode,
        (dir, data): (&Path, &Path),
        tls: Option<&DemoTls>,
    ) -> Result<Pair> {
        let tls_flags: Vec<&str> = tls
            .map(|tls| tls.server_flags.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let mut last_error = None;
        // A free port can be taken between the probe and the bind: retry.
        for _ in 0..3 {
            let (master_addr, slave_addr) = (free_addr()?, free_addr()?);
            let slave = Server::spawn(
                config,
                "slave",
                dir,
                &[
                    "--listen",
                    &slave_addr,
                    "--data-dir",
                    &data.join("slave").display().to_string(),
                    "--role",
                    "slave",
                    "--master-addr",
                    &master_addr,
                    "--event-log",
                    &dir.join(run_dir::SLAVE_EVENTS).display().to_string(),
                ],
                &tls_flags,
            )?;
            let master = Server::spawn(
                config,
                "master",
                dir,
                &[
                    "--listen",
                    &master_addr,
                    "--data-dir",
                    &data.join("master").display().to_string(),
                    "--role",
                    "master",
                    "--replica",
                    &slave_addr,
                    "--replication",
                    &mode.to_string(),
                    "--event-log",
                    &dir.join(run_dir::MASTER_EVENTS).display().to_string(),
                ],
                &tls_flags,
            )?;
            let mut pair = Pair {
                master,
                slave,
                master_addr,
                slave_addr,
                tls: tls.map(|tls| tls.client.clone()),
            };
            match pair.wait_ready() {
                Ok(()) => return Ok(pair),
                Err(Start::PortTaken(e)) => {
                    warn!("the servers did not come up: {e}; trying other ports");
                    pair.stop();
                    last_error = Some(e);
                }
                Err(Start::Failed(e)) => {
                    pair.stop();
                    return Err(e);
                }
            }
        }
        Err(last_error.unwrap_or(Error::Failed {
            message: "servers did not start".into(),
        }))
    }

    /// Polls until both answer and the master's link to the slave is up.
    /// A replica that exits at start fails it with the end of its log;
    /// only one that could not listen on its port is worth other ports.
    fn wait_ready(&mut self) -> std::result::Result<(), Start> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            for server in [&mut self.master, &mut self.slave] {
                let exited = server
                    .child
                    .try_wait()
                    .map_err(|e| Start::Failed(e.into()))?;
                if let Some(status) = exited {
                    let tail = log_tail(&server.log, LOG_TAIL);
                    let error = Error::Failed {
                        message: format!(
                            "the {} exited at start ({status}); the end of {}:\n{tail}",
                            server.name,
                            server.log.display()
                        ),
                    };
                    // The server's error for a port it cannot bind.
                    return Err(if tail.contains("cannot listen on") {
                        Start::PortTaken(error)
                    } else {
                        Start::Failed(error)
                    });
                }
            }
            let link_up = Client::builder(self.master_addr.clone())
                .tls(self.tls.clone())
                .connect_timeout(Duration::from_millis(500))
                .connect()
                .and_then(|mut c| c.info())
                .is_ok_and(|facts| facts.iter().any(|(n, v)| n == "link" && v == "up"));
            let slave_up = Client::builder(self.slave_addr.clone())
                .tls(self.tls.clone())
                .connect_timeout(Duration::from_millis(500))
                .connect()
                .and_then(|mut c| c.ping())
                .is_ok();
            if link_up && slave_up {
                info!(
                    "master {} and slave {} are up",
                    self.master_addr, self.slave_addr
                );
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Start::Failed(Error::Failed {
                    message: format!(
                        "the master {} and slave {} did not link up within {PATIENCE:?}; \
                         the end of {}:\n{}",
                        self.master_addr,
                        self.slave_addr,
                        self.master.log.display(),
                        log_tail(&self.master.log, LOG_TAIL)
                    ),
                }));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the master, then the slave, each gracefully.
    fn stop(&mut self) {
        self.master.stop();
        self.slave.stop();
    }
}

/// Why a pair did not start.
enum Start {
    /// A replica could not listen on its port (taken since it was probed
    /// free): other ports may do.
    PortTaken(Error),
    /// Anything else: other ports would not help.
    Failed(Error),
}

/// One child replica (`duokv server`); killed if dropped while running.
struct Server {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Server {
    fn spawn(
        config: &DemoConfig,
        name: &'static str,
        dir: &Path,
        args: &[&str],
        extra: &[&str],
    ) -> Result<Server> {
        let log = dir.join(format!("{name}.log"));
        let stderr = File::create(&log).map_err(|source| Error::File {
            path: log.clone(),
            source,
        })?;
        let child = Command::new(&config.server_bin)
            .args(&config.server_args)
            .args(args)
            .args(extra)
            .args(["--fsync", &config.fsync])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            // A process group of its own: Ctrl-C in the terminal stops the
            // demo, which then stops its replicas in order, rather than
            // killing the replicas under the running workload.
            .process_group(0)
            .spawn()
            .map_err(|source| Error::File {
                path: config.server_bin.clone(),
                source,
            })?;
        Ok(Server { name, child, log })
    }

    /// SIGTERM, then wait; SIGKILL only if it does not exit in time.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SIGTERM, the replica's graceful stop (its event log is flushed on
        // the way out), sent directly: a minimal system has no kill(1).
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let terminated = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_ok();
        let deadline = Instant::now() + PATIENCE;
        while terminated && Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        warn!("the {} did not stop on SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A loopback address with a port that was free a moment ago.
pub(crate) fn free_addr() -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policies_are_checked_as_the_server_parses_them() {
        for ok in ["always", "never", "every:100", "every:0"] {
            check_fsync(ok).unwrap();
        }
        for bad in ["sometimes", "every:", "every:1s", "ALWAYS", ""] {
            let e = check_fsync(bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--fsync {bad}: use always")), "{e}");
        }
    }

    /// A replica that exits at start for another reason than its port fails
    /// the demo at once, with the end of its log, and no other ports.
    #[test]
    fn a_replica_that_exits_at_start_shows_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = DemoConfig::new(dir.path().join("out")).unwrap();
        config.count = 1;
        config.interval = Duration::from_millis(10);
        config.modes = vec![ReplicationMode::Sync];
        config.server_bin = "/bin/sh".into();
        // `sh -c SCRIPT NAME ARGS...`: the replica's flags land in $@.
        config.server_args = vec![
            "-c".into(),
            "echo 'error: the data directory is damaged' >&2; exit 3".into(),
            "replica".into(),
        ];
        let started = Instant::now();
        let e = run(&config, &AtomicBool::new(false))
            .unwrap_err()
            .to_string();
        assert!(e.contains("exited at start"), "{e}");
        assert!(e.contains("  error: the data directory is damaged"), "{e}");
        assert!(started.elapsed() < PATIENCE, "{e}");
    }
}
