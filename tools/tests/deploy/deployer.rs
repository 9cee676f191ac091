//! The deploy tests proper, built with the `deploy` feature.

use std::path::{Path, PathBuf};

use super::common;
use duokv_tools::certs::{self, Subject};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/two-hosts.sh");
const DEPLOY: &str = env!("CARGO_BIN_EXE_duokv-deploy");

/// Whether the machine can run these tests; under CI it must.
fn can_run() -> bool {
    common::can_make_two_hosts("the deploy tests")
}

/// Two SSH hosts, torn down when dropped, even after a failed assertion.
struct TwoHosts {
    dir: tempfile::TempDir,
}

impl TwoHosts {
    fn up() -> TwoHosts {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = Command::new("bash")
            .arg(SCRIPT)
            .arg("up")
            .arg(dir.path())
            .output()
            .expect("run two-hosts.sh");
        let hosts = TwoHosts { dir };
        assert!(
            output.status.success(),
            "two-hosts.sh up failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        hosts
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The `TMPDIR` of the deployer's runs.
    fn temp_dir(&self) -> PathBuf {
        self.path().join("deployer-tmp")
    }

    fn hosts_env(&self) -> PathBuf {
        self.path().join("hosts.env")
    }

    fn namespaces(&self) -> Vec<String> {
        let net = std::fs::read_to_string(self.path().join("net")).expect("net file");
        let net = net.trim();
        vec![format!("duokv-{net}-a"), format!("duokv-{net}-b")]
    }

    /// The names of the processes running in the two namespaces.
    fn processes(&self) -> Vec<String> {
        let mut names = Vec::new();
        for ns in self.namespaces() {
            let pids = Command::new("ip")
                .args(["netns", "pids", &ns])
                .output()
                .expect("ip netns pids");
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
                    names.push(comm.trim().to_string());
                }
            }
        }
        names
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(SCRIPT)
            .arg("down")
            .arg(self.dir.path())
            .status();
    }
}

/// Runs `duokv-deploy` with the binaries of this build.
fn deploy(hosts: &TwoHosts, extra: &[&str]) -> Output {
    deploy_to(hosts, "two-hosts", extra)
}

/// [`deploy`] into the local run directory `out/NAME`.
fn deploy_to(hosts: &TwoHosts, name: &str, extra: &[&str]) -> Output {
    let bin_dir = Path::new(DEPLOY).parent().expect("bin dir");
    let out = hosts.path().join("out").join(name);
    // The deployer's own temporary files (the fresh authority among them),
    // to check it leaves none behind.
    let temp = hosts.temp_dir();
    std::fs::create_dir_all(&temp).expect("the deployer's TMPDIR");
    Command::new(DEPLOY)
        .env("TMPDIR", &temp)
        .arg("--hosts")
        .arg(hosts.hosts_env())
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--out")
        .arg(&out)
        .args(extra)
        .output()
        .expect("run duokv-deploy")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The seed's workload, shortened, runs on two SSH hosts in both modes,
/// through TLS with a fresh authority: every write has its client row and
/// both replicas' apply events, both servers spoke TLS only (the slave
/// requiring client certificates) with the link over TLS, the keys on the
/// hosts have mode 600 and the authority's key is on neither, the report is
/// printed, and no duokv process is left on the hosts. Then the operator's
/// own certificates (`--tls-dir`) and a run in clear (`--no-tls`).
#[test]
fn deploys_to_two_ssh_hosts_in_both_modes() {
    if !can_run() {
        return;
    }
    let hosts = TwoHosts::up();
    let output = deploy(
        &hosts,
        &["--mode", "both", "--count", "20", "--interval", "50ms"],
    );
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "deploy failed:\n{stderr}\n{stdout}"
    );
    for step in [
        "1. preflight",
        "2. upload",
        "3. start",
        "4. bench",
        "5. stop",
        "6. fetch",
        "7. stats",
    ] {
        assert!(stderr.contains(step), "step {step} not printed:\n{stderr}");
    }
    assert_eq!(
        stderr
            .matches("TLS: a new authority and certificates, keys mode 600")
            .count(),
        2,
        "the TLS step on both hosts:\n{stderr}"
    );
    check_host_files(&hosts);
    // The authority (its key with it) was made in a temporary directory,
    // gone with the deployment.
    let left: Vec<_> = std::fs::read_dir(hosts.temp_dir())
        .expect("the deployer's TMPDIR")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "the deployer left {left:?}");
    for mode in ["sync", "async"] {
        let dir = hosts.path().join("out").join("two-hosts").join(mode);
        let client = std::fs::read_to_string(dir.join("client.csv")).expect("client.csv");
        let ids: Vec<u64> = client
            .lines()
            .skip(1)
            .map(|line| {
                line.split(',')
                    .nth(1)
                    .expect("write_id")
                    .parse()
                    .expect("a number")
            })
            .collect();
        assert_eq!(ids, (1..=20).collect::<Vec<_>>(), "{mode}: client rows");
        for (log, role) in [
            ("master-events.csv", "master"),
            ("slave-events.csv", "slave"),
        ] {
            let events = std::fs::read_to_string(dir.join(log))
                .unwrap_or_else(|e| panic!("{mode} {log}: {e}"));
            for id in 1..=20u64 {
                assert!(
                    events.lines().any(|l| l.starts_with("applied,")
                        && l.split(',').nth(1) == Some(&id.to_string())),
                    "{mode}: the {role} has no apply event for write {id}"
                );
            }
        }
        let meta = std::fs::read_to_string(dir.join("run.json")).expect("run.json");
        assert!(meta.contains(&format!("\"mode\": \"{mode}\"")), "{meta}");
        assert!(
            meta.contains("master glibc"),
            "preflight facts recorded: {meta}"
        );
        assert!(dir.join("latency.svg").exists() && dir.join("cdf.svg").exists());
        assert!(
            meta.contains("a fresh authority for this deployment"),
            "the TLS source recorded: {meta}"
        );
        // Both servers ran behind the deployment's auth token and spoke TLS
        // only; the slave took only clients (the master among them) with a
        // certificate of the deployment's authority.
        let master_log = server_log(&dir, "master.log");
        let slave_log = server_log(&dir, "slave.log");
        for log in [&master_log, &slave_log] {
            assert!(log.contains("auth token required"), "{mode}:\n{log}");
        }
        assert!(
            master_log.contains("TLS only") && !master_log.contains("client certificates required"),
            "{mode}:\n{master_log}"
        );
        assert!(
            master_log.contains("up (TLS)"),
            "{mode}: the replication link over TLS:\n{master_log}"
        );
        assert!(
            slave_log.contains("TLS only, client certificates required"),
            "{mode}:\n{slave_log}"
        );
    }
    assert!(
        stdout.contains("staleness, two clocks"),
        "report:\n{stdout}"
    );
    let left: Vec<_> = hosts
        .processes()
        .into_iter()
        .filter(|name| name.starts_with("duokv"))
        .collect();
    assert!(
        left.is_empty(),
        "duokv processes left on the hosts: {left:?}"
    );
    // The same run directory again is refused before any host is touched:
    // a run directory holds one run.
    let reused = deploy(
        &hosts,
        &["--mode", "async", "--count", "3", "--interval", "20ms"],
    );
    assert_eq!(reused.status.code(), Some(2), "{}", text(&reused.stderr));
    assert!(
        text(&reused.stderr).contains("already holds a run (run.json)"),
        "{}",
        text(&reused.stderr)
    );
    // A second run, into a new directory, finds the binaries in place; it
    // brings its own certificates, named as `--tls-dir` wants them.
    let own = hosts.path().join("own-tls");
    let values = std::fs::read_to_string(hosts.hosts_env()).expect("hosts.env");
    let private = |key: &str| {
        values
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .expect("a private address")
            .to_string()
    };
    let subject = |file: &str, name: String| Subject {
        file: file.into(),
        names: vec![name],
    };
    certs::make(
        &own,
        &[
            subject("master", private("MASTER_PRIVATE=")),
            subject("slave", private("SLAVE_PRIVATE=")),
        ],
        1,
    )
    .expect("the operator's certificates");
    let again = deploy_to(
        &hosts,
        "two-hosts-again",
        &[
            "--mode",
            "async",
            "--count",
            "3",
            "--interval",
            "20ms",
            "--tls-dir",
            own.to_str().expect("utf-8 path"),
        ],
    );
    let again_err = text(&again.stderr);
    assert!(again.status.success(), "{again_err}");
    assert!(
        again_err.contains("skipped, checksum matches"),
        "{again_err}"
    );
    assert!(
        again_err.contains(&format!(
            "TLS: certificates from {}, keys mode 600",
            own.display()
        )),
        "{again_err}"
    );
    let dir = hosts.path().join("out/two-hosts-again/async");
    assert!(server_log(&dir, "slave.log").contains("TLS only, client certificates required"));
    check_host_files(&hosts);
    // And one in clear, for comparisons.
    let clear = deploy_to(
        &hosts,
        "two-hosts-clear",
        &[
            "--mode",
            "async",
            "--count",
            "3",
            "--interval",
            "20ms",
            "--no-tls",
        ],
    );
    let clear_err = text(&clear.stderr);
    assert!(clear.status.success(), "{clear_err}");
    assert!(!clear_err.contains("TLS:"), "{clear_err}");
    let dir = hosts.path().join("out/two-hosts-clear/async");
    for log in ["master.log", "slave.log"] {
        let log = server_log(&dir, log);
        assert!(log.contains("no TLS"), "{log}");
    }
    let meta = std::fs::read_to_string(dir.join("run.json")).expect("run.json");
    assert!(meta.contains("\"off\""), "the TLS source recorded: {meta}");
}

/// A fetched server log.
fn server_log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("{}/{name}: {e}", dir.display()))
}

/// On both hosts: the TLS directory has mode 700, each host's key and the
/// auth token mode 600, and no file anywhere in the working directory is
/// the authority's key.
fn check_host_files(hosts: &TwoHosts) {
    for (host, name) in [("a", "master"), ("b", "slave")] {
        let work = hosts.path().join(format!("host-{host}/work"));
        for (path, wanted) in [
            (work.join("tls"), 0o700),
            (work.join(format!("tls/{name}-key.pem")), 0o600),
            (work.join("auth-token"), 0o600),
            (work.join(format!("tls/{name}.pem")), 0o644),
            (work.join("tls/ca.pem"), 0o644),
        ] {
            let mode = std::fs::metadata(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, wanted, "{}: mode {mode:o}", path.display());
        }
        let mut stack = vec![work];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    assert!(
                        !path.ends_with("ca-key.pem"),
                        "the authority's key on the {name}: {}",
                        path.display()
                    );
                }
            }
        }
    }
}

/// A key the hosts do not accept is refused at the first host with its own
/// message and a non-zero exit, before anything is started.
#[test]
fn a_wrong_key_is_refused_clearly() {
    if !can_run() {
        return;
    }
    let hosts = TwoHosts::up();
    let other = hosts.path().join("other_key");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .expect("ssh-keygen");
    assert!(keygen.success());
    let output = deploy(
        &hosts,
        &["--key", other.to_str().expect("utf-8 path"), "--count", "2"],
    );
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "a wrong key must fail:\n{stderr}");
    assert!(
        stderr.contains("master") && stderr.contains("authentication refused"),
        "{stderr}"
    );
    let missing = deploy(&hosts, &["--key", "/nonexistent/key", "--count", "2"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("ssh key file /nonexistent/key not found"),
        "{}",
        text(&missing.stderr)
    );
}

/// A host whose sshd is stopped is reported unreachable, naming it, with a
/// non-zero exit; and nothing is left running on the other host.
#[test]
fn a_host_without_sshd_is_reported_unreachable() {
    if !can_run() {
        return;
    }
    let hosts = TwoHosts::up();
    let stopped = Command::new("bash")
        .arg(SCRIPT)
        .args(["stop-sshd"])
        .arg(hosts.path())
        .arg("b")
        .status()
        .expect("stop sshd");
    assert!(stopped.success());
    let output = deploy(&hosts, &["--count", "2"]);
    let stderr = text(&output.stderr);
    assert!(
        !output.status.success(),
        "an unreachable host must fail:\n{stderr}"
    );
    assert!(
        stderr.contains("slave") && stderr.contains("host unreachable"),
        "{stderr}"
    );
    let left: Vec<_> = hosts
        .processes()
        .into_iter()
        .filter(|name| name.starts_with("duokv"))
        .collect();
    assert!(left.is_empty(), "duokv processes left: {left:?}");
}

/// Without a hosts file, the deployer says which file it looked for, what
/// to put in it and which flags stand in for it; nothing is contacted.
#[test]
fn a_missing_hosts_file_says_what_is_needed() {
    let dir = tempfile::tempdir().expect("a temporary dir");
    let missing = dir.path().join("hosts.env");
    let output = Command::new(DEPLOY)
        .arg("--hosts")
        .arg(&missing)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .expect("run duokv-deploy");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: no hosts file at {}: copy ec2/hosts.env.example",
            missing.display()
        )),
        "{stderr}"
    );
    for needed in [
        "MASTER_SSH",
        "SLAVE_SSH",
        "SSH_USER",
        "SSH_KEY",
        "REMOTE_DIR",
        "--master-ssh",
    ] {
        assert!(stderr.contains(needed), "{needed} not in {stderr}");
    }
}

/// A `--tls-dir` without the files it must hold is refused, naming them,
/// before any host is contacted; `--no-tls` with `--tls-dir` is refused too.
#[test]
fn a_tls_dir_without_its_files_is_refused_before_any_host() {
    let dir = tempfile::tempdir().expect("a temporary dir");
    let hosts = dir.path().join("hosts.env");
    // TEST-NET addresses: nothing answers there.
    std::fs::write(
        &hosts,
        "MASTER_SSH=192.0.2.1\nSLAVE_SSH=192.0.2.2\nSSH_USER=nobody\nSSH_KEY=/nonexistent/key\nREMOTE_DIR=/tmp/duokv\n",
    )
    .expect("hosts.env");
    let tls = dir.path().join("tls");
    certs::make(
        &tls,
        &[Subject {
            file: "master".into(),
            names: vec!["192.0.2.1".into()],
        }],
        1,
    )
    .expect("an authority and the master's certificate only");
    let run = |extra: &[&str]| {
        Command::new(DEPLOY)
            .arg("--hosts")
            .arg(&hosts)
            .arg("--out")
            .arg(dir.path().join("out"))
            .args(extra)
            .output()
            .expect("run duokv-deploy")
    };
    let tls_dir = tls.to_str().expect("utf-8 path");
    let output = run(&["--tls-dir", tls_dir]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("slave.pem") && stderr.contains("slave-key.pem"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&format!("{tls_dir}/master.pem")),
        "{stderr}"
    );
    assert!(!stderr.contains("1. preflight"), "{stderr}");
    let output = run(&["--tls-dir", tls_dir, "--no-tls"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("--no-tls or --tls-dir, not both"),
        "{}",
        text(&output.stderr)
    );
}
