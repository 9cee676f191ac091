//! The deployer behind `duokv-deploy`: the assignment's workload (updates to one key at a
//! fixed interval) on two real
//! hosts (two EC2 instances, or any two SSH hosts).
//!
//! Steps, each printed as it runs, each failure naming host and step:
//! 1. **preflight** on each host: connect and authenticate (host key checked
//!    against `known_hosts`), CPU architecture and glibc version against the
//!    local build, free disk, the duokv port free, the clock's sync state
//!    (`chronyc`, else `timedatectl`; recorded in the run's metadata);
//! 2. **upload** `duokv` (the client, the bench and, as `duokv server`, the
//!    replica: one binary) over SFTP, verified by SHA-256,
//!    skipped when the checksum already matches, a fresh random auth
//!    token (mode 600) that both servers and the bench client present, and
//!    TLS files ([`tls`]: by default a fresh authority, whose key stays on
//!    the deployer's machine, and a certificate per host, keys mode 600);
//! 3. **start** the slave (TLS only, client certificates required), then
//!    the master (TLS only; it presents its certificate to the slave)
//!    (`setsid nohup`, pid file, logs in the run directory), and wait until
//!    both answer and the master's link is up; on failure, the last lines
//!    of the remote log;
//! 4. **bench**: `duokv bench` where `--client-on` says, event logs on,
//!    through TLS with the certificate of the host it runs on;
//! 5. **stop** both servers (SIGTERM, wait, SIGKILL only if needed), remove
//!    their data directories: the hosts keep only the binaries and the run
//!    directory;
//! 6. **fetch** the client's files, both event logs and both server logs;
//! 7. **stats** on the fetched runs, printed.
//!
//! Ctrl-C (or SIGTERM) during a run stops the remote servers before the
//! deployer exits.

pub mod hosts;
pub mod remote;
pub mod tls;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hosts::{Host, Hosts};
use remote::{Remote, failure, quote, tail};
use tls::{LocalTls, RemoteTls, TlsSource};

use crate::error::{Error, Result};
use crate::run_dir::{self, RunMeta};
use duokv::ReplicationMode;
use duokv::auth::AuthToken;

/// Where `duokv bench` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientOn {
    /// On the master's host.
    Master,
    /// On the slave's host.
    Slave,
    /// On the machine running the deployer (it must reach both private
    /// addresses).
    Local,
}

impl std::str::FromStr for ClientOn {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "master" => Ok(ClientOn::Master),
            "slave" => Ok(ClientOn::Slave),
            "local" => Ok(ClientOn::Local),
            _ => Err(format!("`{text}`: use master, slave or local")),
        }
    }
}

/// A deployment to run.
#[derive(Debug, Clone)]
pub struct DeployConfig {
    /// The hosts.
    pub hosts: Hosts,
    /// The replication modes to run, one run each.
    pub modes: Vec<ReplicationMode>,
    /// Updates per run.
    pub count: u64,
    /// Time between update starts.
    pub interval: Duration,
    /// Where the client runs.
    pub client_on: ClientOn,
    /// The local directory the runs are fetched into (`<out>/<mode>`).
    pub out: PathBuf,
    /// Add unknown host keys to known_hosts instead of refusing.
    pub accept_new_host_keys: bool,
    /// The directory holding the built `duokv`.
    pub bin_dir: PathBuf,
    /// The servers' `--fsync` policy.
    pub fsync: String,
    /// Where the deployment's TLS files come from.
    pub tls: TlsSource,
}

/// A connected host with its preflight findings.
struct Side {
    remote: Remote,
    facts: Vec<(String, String)>,
}

/// Runs the deployment; returns the local run directories.
pub fn run(config: &DeployConfig, stop: &AtomicBool) -> Result<Vec<PathBuf>> {
    // Refused before any host is touched: a run directory holds one run.
    for mode in &config.modes {
        crate::run_dir::check_fresh(&config.out.join(mode.to_string()))?;
    }
    // Made (or found and loaded) before any host is touched, too.
    let local_tls = LocalTls::new(
        &config.tls,
        &config.hosts,
        config.client_on == ClientOn::Local,
    )?;
    let local_glibc = local_glibc();
    let mut sides = Vec::new();
    for host in [&config.hosts.master, &config.hosts.slave] {
        step(host, "1. preflight", "connecting");
        let remote = Remote::connect(host, &config.hosts, config.accept_new_host_keys)?;
        let facts = preflight(&remote, local_glibc)?;
        sides.push(Side { remote, facts });
    }
    let slave = sides.pop().expect("two sides");
    let master = sides.pop().expect("two sides");

    for side in [&master, &slave] {
        upload(&side.remote, config)?;
    }
    let token = share_auth_token(&[&master.remote, &slave.remote])?;
    if let Some(tls) = &local_tls {
        tls.share(&master.remote, &slave.remote)?;
    }

    let run_name = config
        .out
        .file_name()
        .map_or_else(|| "run".to_string(), |n| n.to_string_lossy().into_owned());
    let mut dirs = Vec::new();
    for mode in &config.modes {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let paths = RunPaths::new(&config.hosts, &run_name, *mode, local_tls.is_some());
        let local = config.out.join(mode.to_string());
        std::fs::create_dir_all(&local).map_err(|source| Error::File {
            path: local.clone(),
            source,
        })?;
        let outcome = run_mode(
            config,
            *mode,
            (&master, &slave),
            (&token, local_tls.as_ref()),
            &paths,
            &local,
            stop,
        );
        // Whatever happened, leave no server running.
        let stopped = stop_servers(&master.remote, &slave.remote, &paths);
        outcome?;
        stopped?;
        fetch(config, &master.remote, &slave.remote, &paths, &local)?;
        let mut meta = RunMeta::load(&local)?;
        for (side, name) in [(&master, "master"), (&slave, "slave")] {
            meta.notes.extend(
                side.facts
                    .iter()
                    .map(|(k, v)| (format!("{name} {k}"), v.clone())),
            );
        }
        meta.notes.push((
            "tls".into(),
            local_tls
                .as_ref()
                .map_or(TlsSource::Off, |t| t.source().clone())
                .to_string(),
        ));
        meta.save(&local)?;
        dirs.push(local);
    }
    if stop.load(Ordering::SeqCst) {
        return Err(Error::Failed {
            message: "interrupted; the remote servers were stopped".into(),
        });
    }
    Ok(dirs)
}

/// Prints one step.
fn step(host: &Host, name: &str, what: &str) {
    eprintln!("[{} {}] {name}: {what}", host.name, host.ssh_addr);
}

/// The remote paths of one run, on both hosts.
struct RunPaths {
    master: HostPaths,
    slave: HostPaths,
}

/// The remote paths of one run on one host.
struct HostPaths {
    bin: String,
    /// The shared auth token's file.
    token: String,
    /// The host's TLS files, unless the deployment runs in clear.
    tls: Option<RemoteTls>,
    run: String,
    data: String,
}

impl RunPaths {
    fn new(hosts: &Hosts, run_name: &str, mode: ReplicationMode, tls: bool) -> RunPaths {
        let on = |host: &Host| HostPaths {
            bin: format!("{}/bin", host.remote_dir),
            token: auth_token_path(host),
            tls: tls.then(|| RemoteTls::on(host)),
            run: format!("{}/runs/{run_name}/{mode}", host.remote_dir),
            data: format!("{}/data/{run_name}-{mode}-{}", host.remote_dir, host.name),
        };
        RunPaths {
            master: on(&hosts.master),
            slave: on(&hosts.slave),
        }
    }
}

impl HostPaths {
    /// ` --tls-cert ... --tls-ca ...` and then `extra` for `duokv server`,
    /// or nothing in clear.
    fn server_tls_flags(&self, extra: &str) -> String {
        self.tls
            .as_ref()
            .map_or_else(String::new, |t| format!(" {}{extra}", t.server_flags()))
    }

    /// ` --tls-ca ... --tls-cert ... --tls-key ...` for a `duokv` client on
    /// this host, or nothing in clear.
    fn client_tls_flags(&self) -> String {
        self.tls
            .as_ref()
            .map_or_else(String::new, |t| format!(" {}", t.client_flags()))
    }
}

/// Step 1 on one host; returns the facts to record.
fn preflight(remote: &Remote, local_glibc: Option<(u32, u32)>) -> Result<Vec<(String, String)>> {
    let host = remote.host();
    let name = "1. preflight";
    let arch = remote.run(name, "uname -m")?.trim().to_string();
    if arch != std::env::consts::ARCH {
        return Err(failure(
            host,
            name,
            format!(
                "the host is {arch} but the binaries are built for {}",
                std::env::consts::ARCH
            ),
        ));
    }
    let glibc_line = remote.run(name, "ldd --version 2>&1 | head -n 1")?;
    let glibc = parse_glibc(&glibc_line);
    if let (Some(remote_version), Some(local_version)) = (glibc, local_glibc)
        && remote_version < local_version
    {
        return Err(failure(
            host,
            name,
            format!(
                "glibc {}.{} on the host is older than {}.{}, which the binaries were built against; use a newer AMI",
                remote_version.0, remote_version.1, local_version.0, local_version.1
            ),
        ));
    }
    let dir = quote(&host.remote_dir);
    remote.run(name, &format!("mkdir -p {dir}/bin {dir}/runs {dir}/data"))?;
    let free_kib: u64 = remote
        .run(name, &format!("df -Pk {dir} | awk 'NR==2 {{print $4}}'"))?
        .trim()
        .parse()
        .unwrap_or(0);
    if free_kib < 200 * 1024 {
        return Err(failure(
            host,
            name,
            format!("only {} MiB free in {}", free_kib / 1024, host.remote_dir),
        ));
    }
    let listening = remote.exec(
        name,
        &format!("ss -Htln 'sport = :{}' 2>/dev/null", host.port),
    )?;
    if !listening.stdout.trim().is_empty() {
        return Err(failure(
            host,
            name,
            format!("port {} is already in use", host.port),
        ));
    }
    let clock = remote
        .exec(
            name,
            "(chronyc tracking 2>/dev/null | grep -E '^(Reference ID|System time|Last offset|RMS offset|Leap status)') \
             || (timedatectl show 2>/dev/null | grep -E '^(NTP|NTPSynchronized)=') || echo 'no chronyc or timedatectl'",
        )?
        .stdout
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    let glibc_text = glibc.map_or_else(|| "unknown".to_string(), |(a, b)| format!("{a}.{b}"));
    step(
        host,
        name,
        &format!(
            "ok: {arch}, glibc {glibc_text}, {} MiB free, port {} free; clock: {clock}",
            free_kib / 1024,
            host.port
        ),
    );
    Ok(vec![
        ("arch".into(), arch),
        ("glibc".into(), glibc_text),
        ("clock".into(), clock),
        ("free_mib".into(), (free_kib / 1024).to_string()),
    ])
}

/// The glibc version of the machine running the deployer.
fn local_glibc() -> Option<(u32, u32)> {
    let output = Command::new("ldd").arg("--version").output().ok()?;
    parse_glibc(String::from_utf8_lossy(&output.stdout).lines().next()?)
}

/// `ldd (Debian GLIBC 2.36-9+deb12u4) 2.36` -> (2, 36).
fn parse_glibc(line: &str) -> Option<(u32, u32)> {
    let version = line.split_whitespace().last()?;
    let (major, minor) = version.split_once('.')?;
    let minor: String = minor.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Step 2 on one host.
fn upload(remote: &Remote, config: &DeployConfig) -> Result<()> {
    let name = "2. upload";
    for binary in ["duokv"] {
        let local = config.bin_dir.join(binary);
        let local_sum = sha256(&local)?;
        let target = format!("{}/bin/{binary}", remote.host().remote_dir);
        let remote_sum = |remote: &Remote| -> Result<String> {
            let output = remote.exec(name, &format!("sha256sum {} 2>/dev/null", quote(&target)))?;
            Ok(output
                .stdout
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string())
        };
        if remote_sum(remote)? == local_sum {
            step(
                remote.host(),
                name,
                &format!("{binary}: skipped, checksum matches"),
            );
            continue;
        }
        remote.upload(name, &local, &target, 0o755)?;
        if remote_sum(remote)? != local_sum {
            return Err(failure(
                remote.host(),
                name,
                format!("{binary}: checksum differs after the upload"),
            ));
        }
        step(
            remote.host(),
            name,
            &format!("{binary}: uploaded and verified ({})", &local_sum[..12]),
        );
    }
    Ok(())
}

/// Where a host keeps the deployment's auth token.
fn auth_token_path(host: &Host) -> String {
    format!("{}/auth-token", host.remote_dir)
}

/// Step 2, last part: makes a new random token for this deployment (32
/// bytes from the OS, in hex) and uploads it to every host, readable by its
/// owner only. Each deployment gets its own, so a token that leaked from
/// an earlier run opens nothing.
fn share_auth_token(remotes: &[&Remote]) -> Result<AuthToken> {
    let mut random = [0u8; 32];
    let urandom = Path::new("/dev/urandom");
    std::fs::File::open(urandom)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut random))
        .map_err(|source| Error::File {
            path: urandom.to_path_buf(),
            source,
        })?;
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    // NamedTempFile creates its file with mode 600.
    let mut local = tempfile::NamedTempFile::new()?;
    std::io::Write::write_all(&mut local, hex.as_bytes())?;
    for remote in remotes {
        let target = auth_token_path(remote.host());
        remote.upload("2. upload", local.path(), &target, 0o600)?;
        step(
            remote.host(),
            "2. upload",
            "auth token: a new one, mode 600",
        );
    }
    AuthToken::new(hex.into_bytes()).map_err(|message| Error::Failed { message })
}

/// The SHA-256 of a local file, by `sha256sum`.
fn sha256(path: &Path) -> Result<String> {
    let output = Command::new("sha256sum")
        .arg(path)
        .output()
        .map_err(|source| Error::File {
            path: path.to_path_buf(),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    match text.split_whitespace().next() {
        Some(sum) if output.status.success() && sum.len() == 64 => Ok(sum.to_string()),
        _ => Err(Error::BadFile {
            path: path.to_path_buf(),
            reason: "cannot compute its sha256 (is it built?)".into(),
        }),
    }
}

/// Steps 3 and 4 for one mode.
fn run_mode(
    config: &DeployConfig,
    mode: ReplicationMode,
    (master, slave): (&Side, &Side),
    (token, local_tls): (&AuthToken, Option<&LocalTls>),
    paths: &RunPaths,
    local: &Path,
    stop: &AtomicBool,
) -> Result<()> {
    let (m, s) = (&config.hosts.master, &config.hosts.slave);
    eprintln!(
        "== {mode} replication: {} updates every {:?}",
        config.count, config.interval
    );
    for (side, at) in [(master, &paths.master), (slave, &paths.slave)] {
        side.remote.run(
            "3. start",
            &format!("rm -rf {} && mkdir -p {}", quote(&at.data), quote(&at.run)),
        )?;
    }
    // Only the master, holding a certificate of this deployment's
    // authority, may replicate to the slave; clients must present one too.
    let slave_args = format!(
        "--listen {} --data-dir {} --role slave --master-addr {} --event-log {}/{} --fsync {} --auth-token-file {}{}",
        quote(&s.service_addr()),
        quote(&paths.slave.data),
        quote(&m.service_addr()),
        paths.slave.run,
        run_dir::SLAVE_EVENTS,
        quote(&config.fsync),
        quote(&paths.slave.token),
        paths.slave.server_tls_flags(" --tls-client-auth")
    );
    start_server(&slave.remote, &paths.slave, &slave_args, "slave")?;
    let master_args = format!(
        "--listen {} --data-dir {} --role master --replica {} --replication {mode} --event-log {}/{} --fsync {} --auth-token-file {}{}",
        quote(&m.service_addr()),
        quote(&paths.master.data),
        quote(&s.service_addr()),
        paths.master.run,
        run_dir::MASTER_EVENTS,
        quote(&config.fsync),
        quote(&paths.master.token),
        paths.master.server_tls_flags("")
    );
    start_server(&master.remote, &paths.master, &master_args, "master")?;
    wait_until_linked(master, slave, paths)?;
    step(m, "3. start", "slave and master up, replication link up");

    let interval = format!("{}ms", config.interval.as_secs_f64() * 1e3);
    match config.client_on {
        ClientOn::Master | ClientOn::Slave => {
            let (side, at) = if config.client_on == ClientOn::Master {
                (master, &paths.master)
            } else {
                (slave, &paths.slave)
            };
            step(
                side.remote.host(),
                "4. bench",
                &format!("{} updates, {interval} apart", config.count),
            );
            let command = format!(
                "{}/duokv --auth-token-file {}{} bench --master {} --slave {} --count {} --interval {interval} --out {} --client-host {}",
                at.bin,
                quote(&at.token),
                at.client_tls_flags(),
                quote(&m.service_addr()),
                quote(&s.service_addr()),
                config.count,
                quote(&at.run),
                side.remote.host().name
            );
            let output = side
                .remote
                .exec_interruptible("4. bench", &command, Some(stop))?;
            if output.status != 0 {
                return Err(failure(
                    side.remote.host(),
                    "4. bench",
                    tail(&output.stderr, 10),
                ));
            }
            step(side.remote.host(), "4. bench", output.stdout.trim());
        }
        ClientOn::Local => {
            eprintln!(
                "[local] 4. bench: {} updates, {interval} apart",
                config.count
            );
            let mut bench =
                crate::bench::BenchConfig::new(m.service_addr(), s.service_addr(), local);
            bench.count = config.count;
            bench.interval = config.interval;
            bench.client_host = "local (deployer)".into();
            bench.auth_token = Some(token.clone());
            bench.tls = local_tls.map(LocalTls::client_tls).transpose()?;
            crate::bench::run(&bench, stop)?;
        }
    }
    Ok(())
}

/// Starts one replica (`duokv server`, the code of `duokv-server`) detached,
/// with a pid file and its log in the run directory.
fn start_server(remote: &Remote, at: &HostPaths, args: &str, name: &str) -> Result<()> {
    let command = format!(
        "cd {run} || exit 1; setsid nohup {server} server {args} > {run}/{name}.log 2>&1 < /dev/null & echo $! > {run}/{name}.pid",
        run = quote(&at.run),
        server = quote(&format!("{}/duokv", at.bin))
    );
    remote.run("3. start", &command)?;
    step(remote.host(), "3. start", &format!("{name} started"));
    Ok(())
}

/// Polls until the master reports its link to the slave up.
fn wait_until_linked(master: &Side, slave: &Side, paths: &RunPaths) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let info = format!(
        "{}/duokv --auth-token-file {}{} info --addr {}",
        paths.master.bin,
        quote(&paths.master.token),
        paths.master.client_tls_flags(),
        quote(&master.remote.host().service_addr())
    );
    loop {
        for (side, name, at) in [
            (master, "master", &paths.master),
            (slave, "slave", &paths.slave),
        ] {
            let alive = side.remote.exec(
                "3. start",
                &format!("kill -0 $(cat {}/{name}.pid) 2>/dev/null", quote(&at.run)),
            )?;
            if alive.status != 0 {
                let log = side.remote.exec(
                    "3. start",
                    &format!("tail -n 15 {}/{name}.log", quote(&at.run)),
                )?;
                return Err(failure(
                    side.remote.host(),
                    "3. start",
                    format!("{name} exited; its log ends:\n{}", log.stdout),
                ));
            }
        }
        let output = master.remote.exec("3. start", &info)?;
        if output.stdout.lines().any(|l| l.trim() == "link: up") {
            return Ok(());
        }
        if Instant::now() > deadline {
            let log = master.remote.exec(
                "3. start",
                &format!("tail -n 15 {}/master.log", quote(&paths.master.run)),
            )?;
            return Err(failure(
                master.remote.host(),
                "3. start",
                format!(
                    "the replication link did not come up in 20 s; the master's log ends:\n{}",
                    log.stdout
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Step 5: stops both servers and removes their data.
fn stop_servers(master: &Remote, slave: &Remote, paths: &RunPaths) -> Result<()> {
    let mut first_error = None;
    for (remote, name, at) in [
        (master, "master", &paths.master),
        (slave, "slave", &paths.slave),
    ] {
        let pid_file = format!("{}/{name}.pid", quote(&at.run));
        let script = format!(
            "if [ -f {pid_file} ]; then pid=$(cat {pid_file}); kill -TERM $pid 2>/dev/null; \
             for i in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done; \
             if kill -0 $pid 2>/dev/null; then kill -KILL $pid; echo killed; fi; rm -f {pid_file}; fi; rm -rf {data}",
            data = quote(&at.data)
        );
        match remote.run("5. stop", &script) {
            Ok(out) if out.contains("killed") => step(
                remote.host(),
                "5. stop",
                &format!("{name} did not stop on SIGTERM; killed"),
            ),
            Ok(_) => step(
                remote.host(),
                "5. stop",
                &format!("{name} stopped, data removed"),
            ),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Step 6: brings the run's files home.
fn fetch(
    config: &DeployConfig,
    master: &Remote,
    slave: &Remote,
    paths: &RunPaths,
    local: &Path,
) -> Result<()> {
    let name = "6. fetch";
    let (m, s) = (paths.master.run.as_str(), paths.slave.run.as_str());
    let mut files: Vec<(&Remote, &str, &str)> = vec![
        (master, m, run_dir::MASTER_EVENTS),
        (master, m, "master.log"),
        (slave, s, run_dir::SLAVE_EVENTS),
        (slave, s, "slave.log"),
    ];
    match config.client_on {
        ClientOn::Master => files.extend([
            (master, m, run_dir::CLIENT_CSV),
            (master, m, run_dir::RUN_JSON),
        ]),
        ClientOn::Slave => files.extend([
            (slave, s, run_dir::CLIENT_CSV),
            (slave, s, run_dir::RUN_JSON),
        ]),
        ClientOn::Local => {}
    }
    for (remote, dir, file) in files {
        remote.download(name, &format!("{dir}/{file}"), &local.join(file))?;
    }
    step(
        master.host(),
        name,
        &format!("fetched into {}", local.display()),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_versions_parse() {
        assert_eq!(
            parse_glibc("ldd (Debian GLIBC 2.36-9+deb12u4) 2.36"),
            Some((2, 36))
        );
        assert_eq!(
            parse_glibc("ldd (Ubuntu GLIBC 2.39-0ubuntu8.3) 2.39"),
            Some((2, 39))
        );
        assert_eq!(parse_glibc("musl libc"), None);
        assert!(Some((2, 36)) < Some((2, 39)));
    }

    #[test]
    fn client_placement_parses() {
        assert_eq!("slave".parse::<ClientOn>(), Ok(ClientOn::Slave));
        assert!("moon".parse::<ClientOn>().is_err());
    }
}
