//! `duokv-deploy`: runs the assignment's latency/staleness workload on two SSH
//! hosts (two EC2 instances): pushes the binaries, starts a slave and a
//! master, runs `duokv bench`, brings the logs home and prints the report.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use argh::FromArgs;
use duokv::ReplicationMode;
use duokv::duration::parse_duration;
use duokv_tools::deploy::hosts::{self, Hosts};
use duokv_tools::deploy::tls::TlsSource;
use duokv_tools::deploy::{ClientOn, DeployConfig};
use duokv_tools::stats::StatsArgs;

/// Run the assignment's workload (N updates to one key, one every INTERVAL) on two
/// pre-provisioned SSH hosts, a master and a slave, and report latency and
/// staleness. Hosts come from a KEY=VALUE file (see ec2/hosts.env.example);
/// the flags below override its values.
#[derive(FromArgs)]
struct Args {
    /// the hosts file (default ec2/hosts.env)
    #[argh(option, default = "PathBuf::from(\"ec2/hosts.env\")")]
    hosts: PathBuf,
    /// MASTER_SSH: the address to SSH to for the master
    #[argh(option)]
    master_ssh: Option<String>,
    /// MASTER_PRIVATE: the master's address for the slave and the client
    #[argh(option)]
    master_private: Option<String>,
    /// SLAVE_SSH: the address to SSH to for the slave
    #[argh(option)]
    slave_ssh: Option<String>,
    /// SLAVE_PRIVATE: the slave's address for the master and the client
    #[argh(option)]
    slave_private: Option<String>,
    /// SSH_USER on both hosts
    #[argh(option)]
    user: Option<String>,
    /// SSH_KEY: the private key file
    #[argh(option)]
    key: Option<String>,
    /// SSH_PORT on both hosts
    #[argh(option)]
    ssh_port: Option<String>,
    /// REMOTE_DIR: the working directory on both hosts
    #[argh(option)]
    remote_dir: Option<String>,
    /// MASTER_REMOTE_DIR: the working directory on the master
    #[argh(option)]
    master_remote_dir: Option<String>,
    /// SLAVE_REMOTE_DIR: the working directory on the slave
    #[argh(option)]
    slave_remote_dir: Option<String>,
    /// KNOWN_HOSTS: the file host keys are checked against
    #[argh(option)]
    known_hosts: Option<String>,
    /// sync, async or both (default both)
    #[argh(option, default = "String::from(\"both\")")]
    mode: String,
    /// updates per run (default 100)
    #[argh(option, default = "100")]
    count: u64,
    /// time between update starts, e.g. 1s or 50ms (default 1s)
    #[argh(
        option,
        default = "Duration::from_secs(1)",
        from_str_fn(parse_duration)
    )]
    interval: Duration,
    /// where the client runs: master (default), slave or local
    #[argh(option, default = "ClientOn::Master")]
    client_on: ClientOn,
    /// the local directory the runs are fetched into (default results/ec2)
    #[argh(option, default = "PathBuf::from(\"results/ec2\")")]
    out: PathBuf,
    /// add unknown host keys to the known_hosts file instead of refusing
    #[argh(switch)]
    accept_new_host_keys: bool,
    /// the directory with the built duokv, which the hosts run as client
    /// and, as `duokv server`, as replicas (default: the
    /// directory of this binary)
    #[argh(option)]
    bin_dir: Option<PathBuf>,
    /// the servers' --fsync policy (default always)
    #[argh(option, default = "String::from(\"always\")")]
    fsync: String,
    /// run both servers and the bench in clear, without TLS (for
    /// comparisons); by default every deployment gets a fresh certificate
    /// authority and a certificate per host
    #[argh(switch)]
    no_tls: bool,
    /// use the certificates in DIR instead of a fresh authority: ca.pem,
    /// master.pem, master-key.pem, slave.pem, slave-key.pem (and
    /// client.pem, client-key.pem with --client-on local), each host's
    /// certificate for its private address (see ec2/README.md, "TLS")
    #[argh(option)]
    tls_dir: Option<PathBuf>,
}

fn config(args: Args) -> duokv_tools::Result<DeployConfig> {
    let hosts_file = args.hosts.exists();
    let mut values = if hosts_file {
        let text =
            std::fs::read_to_string(&args.hosts).map_err(|source| duokv_tools::Error::File {
                path: args.hosts.clone(),
                source,
            })?;
        hosts::parse_env(&text, &args.hosts)?
    } else {
        HashMap::new()
    };
    for (key, value) in [
        ("MASTER_SSH", args.master_ssh),
        ("MASTER_PRIVATE", args.master_private),
        ("SLAVE_SSH", args.slave_ssh),
        ("SLAVE_PRIVATE", args.slave_private),
        ("SSH_USER", args.user),
        ("SSH_KEY", args.key),
        ("SSH_PORT", args.ssh_port),
        ("REMOTE_DIR", args.remote_dir),
        ("MASTER_REMOTE_DIR", args.master_remote_dir),
        ("SLAVE_REMOTE_DIR", args.slave_remote_dir),
        ("KNOWN_HOSTS", args.known_hosts),
    ] {
        if let Some(value) = value {
            values.insert(key.to_string(), value);
        }
    }
    let modes = match args.mode.as_str() {
        "sync" => vec![ReplicationMode::Sync],
        "async" => vec![ReplicationMode::Async],
        "both" => vec![ReplicationMode::Sync, ReplicationMode::Async],
        other => {
            return Err(duokv_tools::Error::Usage {
                message: format!("--mode {other}: use sync, async or both"),
            });
        }
    };
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default(),
    };
    duokv_tools::demo::check_fsync(&args.fsync)?;
    let tls = match (args.no_tls, args.tls_dir) {
        (false, None) => TlsSource::Fresh,
        (false, Some(dir)) => TlsSource::Dir(dir),
        (true, None) => TlsSource::Off,
        (true, Some(_)) => {
            return Err(duokv_tools::Error::Usage {
                message: "give --no-tls or --tls-dir, not both".into(),
            });
        }
    };
    let hosts = Hosts::from_values(&values, &args.hosts).map_err(|e| {
        if hosts_file {
            return e;
        }
        // Without the file, say which file and which keys are wanted.
        duokv_tools::Error::Usage {
            message: format!(
                "no hosts file at {path}: copy ec2/hosts.env.example to {path} and fill in \
                 MASTER_SSH, SLAVE_SSH, SSH_USER, SSH_KEY and REMOTE_DIR (see ec2/README.md), \
                 give another file with --hosts, or set each with its flag \
                 (--master-ssh, --slave-ssh, --user, --key, --remote-dir); first missing: {e}",
                path = args.hosts.display()
            ),
        }
    })?;
    Ok(DeployConfig {
        hosts,
        modes,
        count: args.count,
        interval: args.interval,
        client_on: args.client_on,
        out: args.out,
        accept_new_host_keys: args.accept_new_host_keys,
        bin_dir,
        fsync: args.fsync,
        tls,
    })
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args: Args = argh::from_env();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            eprintln!("warning: cannot catch signal {signal}: {e}");
        }
    }
    let outcome = config(args).and_then(|config| {
        let dirs = duokv_tools::deploy::run(&config, &stop)?;
        eprintln!("7. stats");
        duokv_tools::stats::run(&StatsArgs {
            dirs,
            json: false,
            charts: true,
        })
    });
    match outcome {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", duokv::error::chain(&e));
            ExitCode::from(e.exit().code())
        }
    }
}
