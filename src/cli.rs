//! The command line of one replica: the flags of `duokv-server`, which the
//! toolbox's `duokv server` takes too, and [`run`], which turns them into a
//! [`ServerConfig`] and serves until a signal stops it.
//!
//! It lives in the library, not in a binary, so that both binaries run the
//! very same replica: `duokv-server` for deployments, and `duokv server` so
//! that `duokv demo` needs no binary but its own.
//!
//! ```no_run
//! use argh::FromArgs;
//! use std::process::ExitCode;
//!
//! fn main() -> ExitCode {
//!     let flags = ["--data-dir", "/tmp/duokv-example", "--listen", "127.0.0.1:7070"];
//!     match duokv::cli::ServerArgs::from_args(&["duokv-server"], &flags) {
//!         Ok(args) => duokv::cli::run(args),
//!         Err(early) => {
//!             eprintln!("{}", early.output);
//!             ExitCode::from(2)
//!         }
//!     }
//! }
//! ```

mod checks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;
use duokv_storage::{CompactionPolicy, Sync};
use log::error;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::auth::AuthToken;
use crate::duration::parse_duration;
use crate::replication::slave::OnDivergence;
use crate::replication::{Forward, MasterSettings, ReplicationMode, SlaveSettings};
use crate::{RoleConfig, Server, ServerConfig};

/// Run one duokv replica: a key-value server with its data on disk.
#[derive(FromArgs, Debug)]
pub struct ServerArgs {
    /// address to listen on for clients (default 127.0.0.1:7070: loopback
    /// only; name another address to serve other hosts, with
    /// --auth-token-file)
    #[argh(option, default = "\"127.0.0.1:7070\".parse().unwrap()")]
    listen: SocketAddr,

    /// file holding a shared secret (1 to 1024 bytes; a trailing newline is
    /// dropped): every client and the master's replication stream must
    /// present it in the handshake, and a master sends it to its slave.
    /// Give both replicas the same file
    #[argh(option)]
    auth_token_file: Option<PathBuf>,

    /// this server's TLS certificate chain (PEM, leaf first); with
    /// --tls-key and --tls-ca the client port speaks TLS only, for clients
    /// and the replication stream (a master checks its slave's certificate
    /// against the host in --replica). SIGHUP reloads the three files
    #[argh(option)]
    tls_cert: Option<PathBuf>,

    /// the private key of --tls-cert (PEM)
    #[argh(option)]
    tls_key: Option<PathBuf>,

    /// the certificate authority this server trusts (PEM): for client
    /// certificates, and for its slave's as a master
    #[argh(option)]
    tls_ca: Option<PathBuf>,

    /// require a certificate signed by --tls-ca from every client and
    /// master (mutual TLS)
    #[argh(switch)]
    tls_client_auth: bool,

    /// directory of the store (created if missing; a file there is refused)
    #[argh(option)]
    data_dir: PathBuf,

    /// when writes reach the disk: always (each write is fdatasync'ed before
    /// it is acknowledged; default), every:MS (synced in the background every
    /// MS milliseconds, 1 to 86400000) or never (left to the OS)
    #[argh(option, default = "Sync::Always", from_str_fn(parse_fsync))]
    fsync: Sync,

    /// connections served at once, 1 to 1000000; more get a Busy reply
    /// (default 1024)
    #[argh(option, default = "1024")]
    max_connections: usize,

    /// the largest request frame read, in bytes, 64 to 33554432 (default
    /// and most 33554432, 32 MiB: a 16 MiB value with room to spare); larger
    /// ones are refused TooLarge from their length prefix. Client memory is
    /// bounded by about --max-connections x this
    #[argh(option, default = "duokv_protocol::MAX_FRAME_LEN")]
    max_frame_bytes: u32,

    /// close a connection that sends nothing (or half a frame) for this long,
    /// 1ms to 24h, e.g. 30s or 500ms (default 300s)
    #[argh(
        option,
        default = "Duration::from_secs(300)",
        from_str_fn(parse_duration)
    )]
    idle_timeout: Duration,

    /// close a connection whose frame, once begun, is not whole within this
    /// (a peer dripping bytes to hold a thread), 1ms to 24h, e.g. 10s
    /// (default 60s)
    #[argh(
        option,
        default = "Duration::from_secs(60)",
        from_str_fn(parse_duration)
    )]
    frame_timeout: Duration,

    /// how long shutdown waits for requests in flight, 1ms to 24h (default
    /// 5s)
    #[argh(
        option,
        default = "Duration::from_secs(5)",
        from_str_fn(parse_duration)
    )]
    drain_timeout: Duration,

    /// standalone (default), master (takes writes, replicates them to
    /// --replica) or slave (applies its master's stream, serves reads,
    /// answers writes with NotMaster)
    #[argh(option, default = "String::from(\"standalone\")")]
    role: String,

    /// master only: the slave's address, HOST:PORT (not this node's own
    /// --listen; a host name is resolved when the master dials)
    #[argh(option)]
    replica: Option<String>,

    /// master only: sync (a write is answered once durable on both;
    /// default), sync-visible (once also visible to readers on the slave,
    /// like PostgreSQL's remote_apply) or async (once durable on the master)
    #[argh(option)]
    replication: Option<ReplicationMode>,

    /// master, sync mode: how long a write waits for the slave before it
    /// fails with ReplicaUnavailable, 1ms to 24h (default 2s)
    #[argh(option, from_str_fn(parse_duration))]
    sync_timeout: Option<Duration>,

    /// master, sync mode: what to do while the slave is away: none (writes
    /// fail with ReplicaUnavailable after --sync-timeout; default) or async
    /// (writes are acknowledged without the slave, logged loudly)
    #[argh(option)]
    sync_fallback: Option<String>,

    /// master only: when a write goes to the slave: written (default; as
    /// soon as it is in the master's log, so both replicas sync it at once:
    /// a sync write costs one fdatasync and two round trips, and after a
    /// crash of the master's host the slave may have served a write that is
    /// then taken away, never acknowledged) or durable (once synced on the
    /// master: the slave never holds a write the master could lose; a sync
    /// write pays both syncs one after the other)
    #[argh(option)]
    forward: Option<Forward>,

    /// slave only: the master's client address, HOST:PORT (not this node's
    /// own --listen), sent to clients that write to the slave; the only
    /// master this slave follows (a master announcing another listen address
    /// is refused)
    #[argh(option)]
    master_addr: Option<String>,

    /// slave only: what to do when this store holds data and the master's
    /// history does not continue it (a master started on an empty or
    /// mistyped data dir): refuse (default: keep the data, refuse the
    /// master's stream and tell it why) or resync (discard this store's
    /// data for a full copy of the master's, logging what was discarded)
    #[argh(option)]
    on_divergence: Option<OnDivergence>,

    /// slave only: how often the slave asks its master "how far are you
    /// durable?" to prove how stale its data is, for reads with a
    /// staleness bound and `info`, 1ms to 24h (default 5ms); a read that
    /// needs a fresher proof asks at once
    #[argh(option, from_str_fn(parse_duration))]
    probe_interval: Option<Duration>,

    /// slave only: a delayed slave: apply, sync and acknowledge each write
    /// at once, but show it to readers only this long after it arrived
    /// (like MySQL's SOURCE_DELAY), 0 to 24h (default 0); a copy that has
    /// not yet seen an operator's mistake. Sync writes are acknowledged on
    /// its sync; sync-visible ones and switchovers wait for the delay
    #[argh(option, from_str_fn(parse_duration))]
    apply_delay: Option<Duration>,

    /// compact the log once its dead bytes (overwritten, deleted) pass this
    /// many (default 67108864, 64 MiB) and --compact-dead-ratio
    #[argh(option, default = "64 * 1024 * 1024")]
    compact_min_dead_bytes: u64,

    /// compact the log once its dead bytes pass this share of it, 0.0 to 1.0,
    /// and --compact-min-dead-bytes (default 0.5)
    #[argh(option, default = "0.5")]
    compact_dead_ratio: f64,

    /// for tests: run this server's clock off by MS milliseconds
    #[argh(option, default = "0", hidden_help)]
    clock_offset_ms: i64,

    /// for tests: once FILE exists, the next data sync loses what it would
    /// have made durable (a power cut) and never returns
    #[argh(option, hidden_help)]
    test_power_cut_when: Option<PathBuf>,

    /// write one CSV line per write event (received, applied, visible, forwarded,
    /// acked, replied) to this file
    #[argh(option)]
    event_log: Option<PathBuf>,

    /// serve metrics over HTTP on this address, HOST:PORT (default: off):
    /// GET /metrics in the Prometheus text format (role, term, seqs,
    /// replication lag, resyncs, latency histograms, store bytes). It has
    /// no authentication: bind it to loopback or a monitoring network
    #[argh(option)]
    metrics_listen: Option<SocketAddr>,

    /// serve RESP, Redis's protocol, on this address too, HOST:PORT
    /// (default: off): redis-cli, redis-benchmark and Redis client
    /// libraries work against it, with the same store, replication, limits,
    /// auth token (AUTH) and TLS
    #[argh(option)]
    resp_listen: Option<SocketAddr>,
}

/// `--sync-timeout` when not given.
const SYNC_TIMEOUT: Duration = Duration::from_secs(2);

/// The role the flags make, once [`checks`] found nothing wrong with any
/// flag; else every problem found, each naming its flag.
fn checked_role(args: &ServerArgs) -> Result<RoleConfig, Vec<String>> {
    let mut problems = checks::problems(args);
    match role(args) {
        Ok(role) if problems.is_empty() => Ok(role),
        Ok(_) => Err(problems),
        Err(problem) => {
            problems.insert(0, problem);
            Err(problems)
        }
    }
}

/// The role from the flags, with the defaults their help states, or why
/// they do not make one.
fn role(args: &ServerArgs) -> Result<RoleConfig, String> {
    let fallback_async = match args.sync_fallback.as_deref() {
        None | Some("none") => false,
        Some("async") => true,
        Some(other) => return Err(format!("--sync-fallback `{other}`: use none or async")),
    };
    match args.role.as_str() {
        "standalone" => Ok(RoleConfig::Standalone),
        "master" => {
            let replica = args
                .replica
                .clone()
                .ok_or("--role master needs --replica HOST:PORT")?;
            Ok(RoleConfig::Master(MasterSettings {
                replica,
                mode: args.replication.unwrap_or(ReplicationMode::Sync),
                sync_timeout: args.sync_timeout.unwrap_or(SYNC_TIMEOUT),
                fallback_async,
                forward: args.forward.unwrap_or(Forward::Written),
            }))
        }
        "slave" => {
            let master_addr = args
                .master_addr
                .clone()
                .ok_or("--role slave needs --master-addr HOST:PORT")?;
            Ok(RoleConfig::Slave {
                master_addr,
                settings: SlaveSettings {
                    on_divergence: args.on_divergence.unwrap_or(OnDivergence::Refuse),
                    probe_interval: args
                        .probe_interval
                        .unwrap_or(crate::replication::slave::DEFAULT_PROBE_INTERVAL),
                    apply_delay: args.apply_delay.unwrap_or(Duration::ZERO),
                },
            })
        }
        other => Err(format!("--role `{other}`: use standalone, master or slave")),
    }
}

/// Parses `--fsync`: `always`, `never` or `every:MS`; the start-up checks bound
/// the period. Public so that the tools that start replicas refuse what a
/// replica would before they start any.
pub fn parse_fsync(text: &str) -> Result<Sync, String> {
    match text {
        "always" => Ok(Sync::Always),
        "never" => Ok(Sync::Never),
        _ => match text.strip_prefix("every:") {
            Some(ms) => ms
                .parse::<u64>()
                .map(|ms| Sync::Every(Duration::from_millis(ms)))
                .map_err(|_| format!("`{ms}` is not a number of milliseconds")),
            None => Err(format!("`{text}`: use always, every:MS or never")),
        },
    }
}

/// Raises the open-files soft limit (up to the hard one) to cover
/// `--max-connections`, as Go programs do at start, and warns when even the
/// hard limit is too low. Each connection takes two descriptors (its socket,
/// and the clone shutdown uses), the store and the listener a few more. Past
/// the limit the server does not fail: it closes the connections it cannot
/// register.
fn ensure_enough_files(max_connections: usize) {
    let need = 2 * max_connections as u64 + 64;
    match rlimit::increase_nofile_limit(need) {
        Ok(limit) if limit < need => log::warn!(
            "--max-connections {max_connections} needs about {need} open files and the hard \
             limit is {limit}: raise it (`ulimit -Hn`, LimitNOFILE=) or lower \
             --max-connections (past the limit, new connections are closed at once)"
        ),
        Ok(_) => {}
        Err(e) => log::warn!("cannot read or raise the open-files limit: {e}"),
    }
}

/// The TLS files the flags name: none, or all three.
fn tls_files(args: &ServerArgs) -> Result<Option<crate::tls::TlsFiles>, String> {
    match (&args.tls_cert, &args.tls_key, &args.tls_ca) {
        (None, None, None) if args.tls_client_auth => {
            Err("--tls-client-auth needs --tls-cert, --tls-key and --tls-ca".into())
        }
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), Some(ca)) => Ok(Some(crate::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
            client_auth: args.tls_client_auth,
        })),
        _ => Err("TLS needs all of --tls-cert, --tls-key and --tls-ca".into()),
    }
}

/// Reloads the TLS files on each SIGHUP: certificates expire, and a
/// renewed one is taken without a restart (connections made from then on
/// use it). A file that fails keeps the old ones in use, and says why.
fn reload_on_sighup(tls: std::sync::Arc<crate::tls::ServerTls>) {
    match Signals::new([signal_hook::consts::SIGHUP]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                for _ in signals.forever() {
                    match tls.reload() {
                        Ok(()) => log::info!("SIGHUP: TLS certificate and key reloaded"),
                        Err(e) => error!(
                            "SIGHUP: TLS files not reloaded, the old ones stay in use: {}",
                            crate::error::chain(&e)
                        ),
                    }
                }
            });
        }
        Err(e) => error!("cannot listen for SIGHUP, TLS files will not reload: {e}"),
    }
}

/// Runs a replica as the flags say, until SIGINT or SIGTERM stops it
/// gracefully; the exit code is 0 after a clean stop, 2 for flags that make
/// no replica (refused before anything is bound, opened or created, with
/// every problem logged), 1 when the server cannot start or fails. Logs
/// through `log`: the caller sets up the logger.
pub fn run(args: ServerArgs) -> ExitCode {
    let role = match checked_role(&args) {
        Ok(role) => role,
        Err(problems) => {
            for problem in problems {
                error!("{problem}");
            }
            return ExitCode::from(2);
        }
    };
    if args.clock_offset_ms != 0 {
        crate::clock::shift(args.clock_offset_ms.saturating_mul(1_000_000));
        log::warn!(
            "this server's clock runs {} ms off the system's (--clock-offset-ms)",
            args.clock_offset_ms
        );
    }
    let mut config = ServerConfig::new(args.listen, args.data_dir.clone());
    config.fsync = args.fsync;
    config.max_connections = args.max_connections;
    config.max_frame_len = args.max_frame_bytes;
    config.idle_timeout = args.idle_timeout;
    config.frame_timeout = args.frame_timeout;
    config.drain_timeout = args.drain_timeout;
    config.event_log = args.event_log.clone();
    config.metrics_listen = args.metrics_listen;
    config.resp_listen = args.resp_listen;
    config.test_power_cut_when = args.test_power_cut_when.clone();
    config.compaction = CompactionPolicy {
        min_dead_bytes: args.compact_min_dead_bytes,
        dead_ratio: args.compact_dead_ratio,
    };
    if let Some(path) = &args.auth_token_file {
        match AuthToken::from_file(path) {
            Ok(token) => config.auth_token = Some(token),
            Err(e) => {
                error!("--auth-token-file: {}", crate::error::chain(&e));
                return ExitCode::from(2);
            }
        }
    } else if !args.listen.ip().is_loopback() {
        log::warn!(
            "listening on {} with no --auth-token-file: anyone who can reach this port \
             can read and write every key, and can pose as this node's master",
            args.listen
        );
    }
    match tls_files(&args) {
        Ok(None) => {}
        Ok(Some(files)) => match crate::tls::ServerTls::load(files) {
            Ok(tls) => config.tls = Some(std::sync::Arc::new(tls)),
            Err(e) => {
                error!("TLS: {}", crate::error::chain(&e));
                return ExitCode::from(2);
            }
        },
        Err(problem) => {
            error!("{problem}");
            return ExitCode::from(2);
        }
    }
    ensure_enough_files(config.max_connections);
    config.role = role;
    let tls = config.tls.clone();

    let server = match Server::bind(config) {
        Ok(server) => server,
        Err(e) => {
            error!("{}", crate::error::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let stop = server.shutdown_handle();
    match Signals::new([SIGINT, SIGTERM]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    log::info!("signal {signal} received");
                    stop.shutdown();
                }
            });
        }
        Err(e) => error!("cannot listen for signals, Ctrl-C will not stop gracefully: {e}"),
    }
    if let Some(tls) = tls {
        reload_on_sighup(tls);
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{}", crate::error::chain(&e));
            ExitCode::FAILURE
        }
    }
}
