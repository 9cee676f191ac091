//! `duokv demo`: the whole job on one machine with nothing set up.
//!
//! For each replication mode (sync, then async) it starts a slave and a
//! master as child processes on free loopback ports, with their stores in a
//! temporary directory and their event logs in the run directory; runs the
//! seed's workload with [`bench`](mod@crate::bench); stops both servers
//! gracefully (so their event logs are complete); and finally prints the
//! `stats` report of both runs with the paths of the charts. The run
//! directories stay under `--out` (`./duokv-demo/sync`, `./duokv-demo/async`).

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::bench::{self, BenchConfig};
use crate::error::{Error, Result};
use crate::run_dir;
use duokv::Client;
use duokv::ReplicationMode;

/// How long a server may take to come up or to stop.
const PATIENCE: Duration = Duration::from_secs(15);

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
}

impl DemoConfig {
    /// The seed's workload in both modes, its replicas run by the running
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
        })
    }
}

/// Runs the demo; returns the run directories, in mode order.
pub fn run(config: &DemoConfig, stop: &AtomicBool) -> Result<Vec<PathBuf>> {
    let data = tempfile::Builder::new()
        .prefix("duokv-demo-data-")
        .tempdir()?;
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
        let mut pair = Pair::start(config, *mode, &dir, &data.path().join(mode.to_string()))?;
        let mut bench = BenchConfig::new(pair.master_addr.clone(), pair.slave_addr.clone(), &dir);
        bench.count = config.count;
        bench.interval = config.interval;
        bench.client_host = "local (demo)".into();
        let outcome = bench::run(&bench, stop);
        pair.stop();
        let outcome = outcome?;
        let failed = outcome.rows.iter().filter(|r| r.error.is_some()).count();
        eprintln!("   {} writes, {failed} failed", outcome.rows.len());
        dirs.push(dir);
    }
    Ok(dirs)
}

/// A master and a slave running as child processes.
struct Pair {
    master: Server,
    slave: Server,
    master_addr: String,
    slave_addr: String,
}

impl Pair {
    fn start(config: &DemoConfig, mode: ReplicationMode, dir: &Path, data: &Path) -> Result<Pair> {
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
            )?;
            let mut pair = Pair {
                master,
                slave,
                master_addr,
                slave_addr,
            };
            match pair.wait_ready() {
                Ok(()) => return Ok(pair),
                Err(e) => {
                    warn!("the servers did not come up: {e}; trying other ports");
                    pair.stop();
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or(Error::Failed {
            message: "servers did not start".into(),
        }))
    }

    /// Polls until both answer and the master's link to the slave is up.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            for server in [&mut self.master, &mut self.slave] {
                if let Some(status) = server.child.try_wait()? {
                    return Err(Error::Failed {
                        message: format!(
                            "the {} exited at start ({status}); see {}",
                            server.name,
                            server.log.display()
                        ),
                    });
                }
            }
            let link_up = Client::builder(self.master_addr.clone())
                .connect_timeout(Duration::from_millis(500))
                .connect()
                .and_then(|mut c| c.info())
                .is_ok_and(|facts| facts.iter().any(|(n, v)| n == "link" && v == "up"));
            let slave_up = Client::builder(self.slave_addr.clone())
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
                return Err(Error::Duokv(duokv::Error::Timeout {
                    addr: self.master_addr.clone(),
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

/// One child replica (`duokv server`); killed if dropped while running.
struct Server {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Server {
    fn spawn(config: &DemoConfig, name: &'static str, dir: &Path, args: &[&str]) -> Result<Server> {
        let log = dir.join(format!("{name}.log"));
        let stderr = File::create(&log).map_err(|source| Error::File {
            path: log.clone(),
            source,
        })?;
        let child = Command::new(&config.server_bin)
            .args(&config.server_args)
            .args(args)
            .args(["--fsync", &config.fsync])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
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
