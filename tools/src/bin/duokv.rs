//! `duokv`: the command line of duokv.
//!
//! CRUD from the shell (`duokv put KEY VALUE`), a clock probe (`duokv ping`),
//! the server's facts (`duokv info`), a replica (`duokv server`, the same
//! flags and code as `duokv-server`), the assignment's workload (`duokv bench`,
//! `duokv stats`, `duokv demo`), a load generator (`duokv load`), role
//! changes under load (`duokv bench-failover`) and the
//! replay of a slave's discarded writes (`duokv replay-discarded`). Each
//! subcommand but `server` and `repair` prints its result on stdout and
//! exits 0, or prints one line `error: ...` on stderr and exits with the
//! code of its kind of failure ([`Exit`]: 1 not found, 2 usage, 3 refused
//! by the server, 4 unknown outcome, 5 cannot connect, 6 other failure, 130
//! interrupted), listed in `duokv --help` and the README.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use argh::FromArgs;
use std::time::Duration;

use duokv::auth::{AuthToken, TOKEN_FILE_ENV};
use duokv::duration::parse_duration;
use duokv::tls::ClientTls;
use duokv::{Client, ReadWhen, ReplicationMode, Token, WriteReceipt};
use duokv_tools::bench::{BenchConfig, ProbeRead};
use duokv_tools::demo::DemoConfig;
use duokv_tools::error::Exit;
use duokv_tools::failover_bench::{FailoverConfig, PairSource};
use duokv_tools::load::{LoadConfig, ReadConditions};
use duokv_tools::stats::StatsArgs;

/// The duokv command-line client.
#[derive(FromArgs)]
#[argh(
    note = "-h is --help. On failure a command prints one line `error: ...` on stderr and \
            exits with the code of what happened (`duokv repair` has its own: see its help).",
    error_code(1, "not found: the key does not exist"),
    error_code(2, "usage: bad flags or arguments; nothing was sent"),
    error_code(
        3,
        "refused by the server, nothing written: not the master, key exists, too stale, \
         not yet visible, unknown history, too large, busy, switching over, bad auth token"
    ),
    error_code(
        4,
        "unknown outcome: sent but no clear answer (a sync write durable on the master \
         only, no reply in time, a broken connection): read before writing again"
    ),
    error_code(5, "cannot connect to the server; nothing was sent"),
    error_code(
        6,
        "other failure: a file, a run that failed (e.g. most of a load's operations)"
    ),
    error_code(130, "interrupted by Ctrl-C")
)]
struct Args {
    /// file holding the servers' shared auth token (servers started with
    /// --auth-token-file); default: $DUOKV_AUTH_TOKEN_FILE, else none; may
    /// also follow the subcommand
    #[argh(option)]
    auth_token_file: Option<PathBuf>,

    /// connect through TLS, trusting this certificate authority (PEM; the
    /// servers' --tls-ca); may also follow the subcommand
    #[argh(option)]
    tls_ca: Option<PathBuf>,

    /// this client's certificate (PEM), for servers that require one
    /// (--tls-client-auth); with --tls-key
    #[argh(option)]
    tls_cert: Option<PathBuf>,

    /// the private key of --tls-cert (PEM)
    #[argh(option)]
    tls_key: Option<PathBuf>,

    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Get(Get),
    Create(Create),
    Update(Update),
    Put(Put),
    Delete(Delete),
    Ping(Ping),
    Info(Info),
    Load(Load),
    BenchFailover(BenchFailover),
    Bench(Bench),
    Stats(Stats),
    Certs(Certs),
    PerfReport(PerfReport),
    Demo(Demo),
    Server(ServerCommand),
    Repair(Repair),
    Failover(Failover),
    Promote(Promote),
    ReplayDiscarded(ReplayDiscarded),
}

/// Swap the roles of a running pair, safely: the master at --master stops
/// taking writes, waits until its slave shows its last write (else rolls
/// back: nothing changes), hands the role over (a new term, a history
/// continuing the old one) and follows the new master. Prints the new
/// master and how long writes stopped.
#[derive(FromArgs)]
#[argh(subcommand, name = "failover")]
struct Failover {
    /// the master's address
    #[argh(option)]
    master: String,
    /// how long the master waits for its slave before it rolls back
    /// (default 5s)
    #[argh(
        option,
        default = "Duration::from_secs(5)",
        from_str_fn(parse_duration)
    )]
    timeout: Duration,
}

/// Make the slave at --addr a master at once, when its master is gone: it
/// shows every write it holds and takes writes in a new term; the old
/// master, when it comes back, steps down and follows it, and writes it
/// holds that the new master never got are saved to a file in its data
/// dir before its resync.
#[derive(FromArgs)]
#[argh(subcommand, name = "promote")]
struct Promote {
    /// the slave's address
    #[argh(option)]
    addr: String,
    /// the replica the new master replicates to (default: the old master)
    #[argh(option)]
    replica: Option<String>,
    /// the new master's replication: sync, sync-visible or async (default
    /// async: its old master is gone, and a sync master would refuse
    /// writes until it is back)
    #[argh(option, default = "ReplicationMode::Async")]
    replication: ReplicationMode,
    /// promote even while the master is connected (it is then fenced by the
    /// new term)
    #[argh(switch)]
    force: bool,
}

/// Send the writes of a discarded-writes file (saved by a slave before a
/// full resync replaced them: discarded-HISTORY-FIRST-LAST-TIME.csv in its
/// data directory) to the master at --addr as ordinary puts and deletes,
/// oldest first, printing each. Never automatic: the master may have newer
/// writes to the same keys. Check first with --dry-run.
#[derive(FromArgs)]
#[argh(subcommand, name = "replay-discarded")]
struct ReplayDiscarded {
    /// the discarded-writes file
    #[argh(positional)]
    file: PathBuf,
    /// the master's address
    #[argh(option)]
    addr: String,
    /// print what would be sent; connect to nothing
    #[argh(switch)]
    dry_run: bool,
}

/// Check a stopped replica's data directory for damage that recovery
/// refuses to guess about, and report each damaged region: file, offset,
/// the seqs around it, and what cutting there would drop. A dry run unless
/// --fix is given; exits 1 when it finds damage and did not fix it, 6 when
/// it cannot check (the replica runs, the directory is unreadable). Like
/// redis-check-aof --fix.
#[derive(FromArgs)]
#[argh(subcommand, name = "repair")]
struct Repair {
    /// the replica's --data-dir (the replica must be stopped)
    #[argh(positional)]
    data_dir: PathBuf,
    /// cut each damaged segment at its first damage, after copying every
    /// byte it cuts into --backup-dir
    #[argh(switch)]
    fix: bool,
    /// where --fix copies what it cuts (default: DATA_DIR.repair-UNIXTIME,
    /// beside the data directory; never overwritten)
    #[argh(option)]
    backup_dir: Option<PathBuf>,
}

/// Run a replica, as duokv-server does: `duokv server --help` lists its
/// flags.
///
/// `main` hands `duokv server ...` to the replica's own parser before this
/// one runs, so that its flags are the replica's; this entry puts it in the
/// help.
#[derive(FromArgs)]
#[argh(subcommand, name = "server")]
struct ServerCommand {
    /// the replica's flags (--data-dir DIR, --listen ADDR, --role ...)
    #[argh(positional, greedy)]
    flags: Vec<String>,
}

/// Print the value of KEY (read from the replica at --addr).
#[derive(FromArgs)]
#[argh(subcommand, name = "get")]
struct Get {
    /// the key
    #[argh(positional)]
    key: String,
    /// server address (default 127.0.0.1:7070)
    #[argh(option, default = "default_addr()")]
    addr: String,
    /// read as of this write or later: a token HISTORY_HEX:SEQ as `put`
    /// prints it; a replica that has not got that write waits for it (see
    /// --wait), then fails with "not yet visible" (read the master)
    #[argh(option)]
    after: Option<Token>,
    /// answer only if the replica can prove its data at most this old,
    /// e.g. 5ms (1us to about 71m; a master always can); a replica that
    /// cannot within --wait fails with "too stale" (read the master)
    #[argh(option, from_str_fn(parse_duration))]
    max_staleness: Option<Duration>,
    /// with --after or --max-staleness, how long the replica may wait for
    /// them, e.g. 100ms or 2s; 0 answers at once; the server caps it at
    /// 60 s and at its --idle-timeout (default 1s)
    #[argh(
        option,
        default = "Duration::from_secs(1)",
        from_str_fn(parse_duration)
    )]
    wait: Duration,
}

/// Insert KEY with VALUE; fails if KEY exists.
/// The value is the second argument, or the bytes of --value-file.
#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
struct Create {
    /// the key
    #[argh(positional)]
    key: String,
    /// the value (or give --value-file)
    #[argh(positional)]
    value: Option<String>,
    /// read the value from this file, byte for byte, or from stdin with
    /// `-` (for values too large for a command line)
    #[argh(option)]
    value_file: Option<PathBuf>,
    /// server address (default 127.0.0.1:7070)
    #[argh(option, default = "default_addr()")]
    addr: String,
}

/// Replace the value of an existing KEY; fails if KEY is missing.
/// The value is the second argument, or the bytes of --value-file.
#[derive(FromArgs)]
#[argh(subcommand, name = "update")]
struct Update {
    /// the key
    #[argh(positional)]
    key: String,
    /// the new value (or give --value-file)
    #[argh(positional)]
    value: Option<String>,
    /// read the value from this file, byte for byte, or from stdin with
    /// `-` (for values too large for a command line)
    #[argh(option)]
    value_file: Option<PathBuf>,
    /// server address (default 127.0.0.1:7070)
    #[argh(option, default = "default_addr()")]
    addr: String,
}

/// Set KEY to VALUE whether it exists or not.
/// The value is the second argument, or the bytes of --value-file.
#[derive(FromArgs)]
#[argh(subcommand, name = "put")]
struct Put {
    /// the key
    #[argh(positional)]
    key: String,
    /// the value (or give --value-file)
    #[argh(positional)]
    value: Option<String>,
    /// read the value from this file, byte for byte, or from stdin with
    /// `-` (for values too large for a command line)
    #[argh(option)]
    value_file: Option<PathBuf>,
    /// server address (default 127.0.0.1:7070)
    #[argh(option, default = "default_addr()")]
    addr: String,
}

/// Delete KEY; fails if KEY is missing.
#[derive(FromArgs)]
#[argh(subcommand, name = "delete")]
struct Delete {
    /// the key
    #[argh(positional)]
    key: String,
    /// server address (default 127.0.0.1:7070)
    #[argh(option, default = "default_addr()")]
    addr: String,
}

/// Measure the round trip to a server and its clock's offset from ours.
#[derive(FromArgs)]
#[argh(subcommand, name = "ping")]
struct Ping {
    /// server address (default 127.0.0.1:7070)
    #[argh(option, default = "default_addr()")]
    addr: String,
}

/// Print a server's role, last sequence number and store figures.
#[derive(FromArgs)]
#[argh(subcommand, name = "info")]
struct Info {
    /// server address (default 127.0.0.1:7070)
    #[argh(option, default = "default_addr()")]
    addr: String,
}

/// Closed-loop load against one duokv or Redis server: throughput and
/// latency percentiles.
#[derive(FromArgs)]
#[argh(subcommand, name = "load")]
struct Load {
    /// server address (default 127.0.0.1:7070; Redis listens on 6379)
    #[argh(option, default = "default_addr()")]
    addr: String,
    /// the server to load: duokv (default), or redis for a side-by-side
    /// benchmark (writes are SET, reads GET, same keys and values)
    #[argh(option, default = "duokv_tools::load::Target::Duokv")]
    target: duokv_tools::load::Target,
    /// with --target redis: follow each SET with WAIT 1 <ms> on the same
    /// connection, so a write counts only once a replica has it; its latency
    /// covers both, and no replica within <ms> is an error (0: no limit)
    #[argh(option, arg_name = "ms")]
    redis_wait_ms: Option<u32>,
    /// concurrent clients, each with one request in flight (default 16)
    #[argh(option, default = "16")]
    clients: usize,
    /// how long to run, e.g. 10s (default 10s)
    #[argh(
        option,
        default = "Duration::from_secs(10)",
        from_str_fn(parse_duration)
    )]
    duration: Duration,
    /// share of operations that are writes (put, or SET on Redis), 0.0 to
    /// 1.0 (default 1.0)
    #[argh(option, default = "1.0")]
    writes: f64,
    /// number of distinct keys (default 10000)
    #[argh(option, default = "10000")]
    keys: u64,
    /// bytes per written value (default 100)
    #[argh(option, default = "100")]
    value_size: usize,
    /// send the reads to this server instead (e.g. the slave, while --addr
    /// is the master)
    #[argh(option)]
    read_addr: Option<String>,
    /// more clients that only read, beside the --clients that follow
    /// --writes (default 0)
    #[argh(option, default = "0")]
    readers: usize,
    /// each read is of the client's own last write, after its token (read
    /// your writes); the report says how many were answered at once, after
    /// waiting, or refused
    #[argh(switch)]
    read_after: bool,
    /// each read asks for data at most this old, e.g. 5ms; the report says
    /// how many were answered at once, after waiting, or refused
    #[argh(option, from_str_fn(parse_duration))]
    read_max_staleness: Option<Duration>,
    /// how long the replica may wait for a read's conditions, e.g. 20ms
    /// (default 1s; the server caps it at its --idle-timeout)
    #[argh(
        option,
        default = "Duration::from_secs(1)",
        from_str_fn(parse_duration)
    )]
    read_wait: Duration,
    /// sample the read server's staleness_bound_ms (a slave's info) this
    /// often during the run, e.g. 10ms, and report its p50/p99
    #[argh(option, from_str_fn(parse_duration))]
    sample_every: Option<Duration>,
    /// print the report as JSON
    #[argh(switch)]
    json: bool,
}

/// Measure role changes under write load: start a master and a slave (or
/// use --master and --slave), run --clients closed-loop writers that follow
/// NotMaster and retry SwitchingOver, and swap the roles --switchovers
/// times (duokv failover), then kill the master with SIGKILL and promote
/// the slave --promotions times. Reports per change the server's write
/// window and the longest gap between acknowledged writes the clients saw,
/// and checks on the final master that no acknowledged write was lost.
#[derive(FromArgs)]
#[argh(subcommand, name = "bench-failover")]
struct BenchFailover {
    /// planned switchovers, alternating the master (default 20)
    #[argh(option, default = "20")]
    switchovers: usize,
    /// promotions after a SIGKILL of the master, each followed by a restart
    /// of the killed node (default 0; only with a pair this tool starts)
    #[argh(option, default = "0")]
    promotions: usize,
    /// concurrent writers, each with one write in flight (default 64)
    #[argh(option, default = "64")]
    clients: usize,
    /// the started master's replication, and the promoted masters': sync
    /// (default), sync-visible or async
    #[argh(option, default = "ReplicationMode::Sync")]
    replication: ReplicationMode,
    /// steady load before each role change and after the last, e.g. 1s
    /// (default 1s)
    #[argh(
        option,
        default = "Duration::from_secs(1)",
        from_str_fn(parse_duration)
    )]
    interval: Duration,
    /// how long a master waits for its slave in a switchover before it
    /// rolls back (default 5s)
    #[argh(
        option,
        default = "Duration::from_secs(5)",
        from_str_fn(parse_duration)
    )]
    timeout: Duration,
    /// keys per writer (default 64)
    #[argh(option, default = "64")]
    keys_per_client: u64,
    /// bytes per value, at least 24 (default 100)
    #[argh(option, default = "100")]
    value_size: usize,
    /// a writer's pause before its second retry of a write, doubling from
    /// there (default 1ms)
    #[argh(
        option,
        default = "Duration::from_millis(1)",
        from_str_fn(parse_duration)
    )]
    retry_pause: Duration,
    /// a writer's longest pause between retries (default 8ms)
    #[argh(
        option,
        default = "Duration::from_millis(8)",
        from_str_fn(parse_duration)
    )]
    retry_pause_max: Duration,
    /// the started servers' --fsync policy: always (default), every:MS or
    /// never
    #[argh(option, default = "String::from(\"always\")")]
    fsync: String,
    /// where the started servers' logs go (default: a temporary directory,
    /// removed at the end)
    #[argh(option)]
    logs: Option<PathBuf>,
    /// a running master's address, instead of starting a pair (with
    /// --slave)
    #[argh(option)]
    master: Option<String>,
    /// a running slave's address (with --master)
    #[argh(option)]
    slave: Option<String>,
    /// print the report as JSON
    #[argh(switch)]
    json: bool,
}

/// Run the assignment's latency/staleness workload against a master and a
/// slave:
/// --count updates to one key every --interval, logged per write to
/// OUT/client.csv with OUT/run.json.
#[derive(FromArgs)]
#[argh(subcommand, name = "bench")]
struct Bench {
    /// the master's address (default 127.0.0.1:7070)
    #[argh(option, default = "default_addr()")]
    master: String,
    /// the slave's address (default 127.0.0.1:7071)
    #[argh(option, default = "String::from(\"127.0.0.1:7071\")")]
    slave: String,
    /// updates to issue (default 100)
    #[argh(option, default = "100")]
    count: u64,
    /// time between update starts, e.g. 1s or 20ms (default 1s)
    #[argh(
        option,
        default = "Duration::from_secs(1)",
        from_str_fn(parse_duration)
    )]
    interval: Duration,
    /// the key to update (default bench)
    #[argh(option, default = "String::from(\"bench\")")]
    key: String,
    /// the run directory to write (default ./duokv-run)
    #[argh(option, default = "PathBuf::from(\"duokv-run\")")]
    out: PathBuf,
    /// the master's --event-log file, to copy into the run directory
    #[argh(option)]
    master_events: Option<PathBuf>,
    /// the slave's --event-log file, to copy into the run directory
    #[argh(option)]
    slave_events: Option<PathBuf>,
    /// how long the reader probe waits for a write to show on the slave
    /// (default 5s); with --probe-read after or fresh:D, the wait its read
    /// asks the slave for (capped by the slave's --idle-timeout)
    #[argh(
        option,
        default = "Duration::from_secs(5)",
        from_str_fn(parse_duration)
    )]
    probe_patience: Duration,
    /// how the reader probe reads the slave after each commit: poll (plain
    /// reads until the write shows; default), after (one read after the
    /// write's token) or fresh:D (one read at most D stale, e.g. fresh:5ms),
    /// which two write OUT/probe.csv (whether each read had to wait, how
    /// long it took, whether it was refused); or at:D1,D2,... (one plain
    /// read of write i at D[i mod k] after its commit, e.g. at:0,100us,1ms;
    /// `at` alone is
    /// at:0,50us,100us,200us,500us,1ms,2ms,5ms,10ms), which writes
    /// OUT/visibility.csv: whether a read t after the commit saw the write
    /// (use a short --interval, e.g. 5ms, for many reads per delay)
    #[argh(option, default = "ProbeRead::Poll")]
    probe_read: ProbeRead,
    /// where the reader probe reads instead of the slave (e.g. the master,
    /// to compare)
    #[argh(option)]
    probe_addr: Option<String>,
    /// where this client runs, for the run's metadata (default local)
    #[argh(option, default = "String::from(\"local\")")]
    client_host: String,
}

/// Report latency and staleness of one or more bench runs (min, max, mean,
/// std dev, percentiles), side by side, and write SVG charts into each run
/// directory.
#[derive(FromArgs)]
#[argh(subcommand, name = "stats")]
struct Stats {
    /// run directories written by `duokv bench` or `duokv demo`
    #[argh(positional)]
    dirs: Vec<PathBuf>,
    /// print a machine-readable JSON summary instead of the report
    #[argh(switch)]
    json: bool,
    /// do not write charts
    #[argh(switch)]
    no_charts: bool,
}

/// Make a fresh certificate authority and a certificate per node, for
/// `duokv server --tls-cert NODE.pem --tls-key NODE-key.pem --tls-ca ca.pem`
/// and `duokv --tls-ca ca.pem`. Keys get mode 600; existing files are never
/// overwritten.
#[derive(FromArgs)]
#[argh(subcommand, name = "certs")]
struct Certs {
    /// the directory to write (created if missing; must not hold an
    /// authority already)
    #[argh(option)]
    out: PathBuf,
    /// a node: FILE=NAME[,NAME...], the names (DNS names or IP addresses)
    /// its certificate is for, e.g. master=10.0.1.5,master.internal;
    /// repeatable (a client certificate is a node too)
    #[argh(option)]
    node: Vec<String>,
    /// days the certificates are valid (default 365)
    #[argh(option, default = "365")]
    days: u32,
}

/// Write the duokv-vs-Redis comparison of a bench/compare.sh run directory:
/// DIR/README.md (medians, ratios, the targets) and DIR/chart.svg.
#[derive(FromArgs)]
#[argh(subcommand, name = "perf-report")]
struct PerfReport {
    /// the directory bench/compare.sh wrote (raw/*.json, floor.json, ...)
    #[argh(positional)]
    dir: PathBuf,
}

/// Run the whole job locally with nothing set up: a master and a slave on
/// free loopback ports, the workload in sync and then async mode, and the
/// stats report with charts.
#[derive(FromArgs)]
#[argh(subcommand, name = "demo")]
struct Demo {
    /// updates per mode (default 100, as the assignment asks)
    #[argh(option, default = "100")]
    count: u64,
    /// time between update starts, e.g. 1s or 20ms (default 1s)
    #[argh(
        option,
        default = "Duration::from_secs(1)",
        from_str_fn(parse_duration)
    )]
    interval: Duration,
    /// where the run directories go (default ./duokv-demo)
    #[argh(option, default = "PathBuf::from(\"duokv-demo\")")]
    out: PathBuf,
    /// the servers' --fsync policy: always (default), every:MS or never
    #[argh(option, default = "String::from(\"always\")")]
    fsync: String,
    /// run the pair with TLS on: a fresh certificate authority and
    /// certificate for the run, for the bench and the replication stream
    #[argh(switch)]
    tls: bool,
}

fn default_addr() -> String {
    "127.0.0.1:7070".to_string()
}

/// `ok seq=SEQ token=HISTORY_HEX:SEQ latency=F.FFFms`; without `token=`
/// from a server too old to send one.
fn receipt_line(receipt: &WriteReceipt) -> String {
    let token = receipt
        .token()
        .map(|token| format!(" token={token}"))
        .unwrap_or_default();
    format!(
        "ok seq={}{token} latency={:.3}ms",
        receipt.seq,
        receipt.latency.as_secs_f64() * 1e3
    )
}

/// The token from `--auth-token-file`, else from the file
/// `$DUOKV_AUTH_TOKEN_FILE` names, else none. A file that cannot be used is
/// a usage error that names where it came from.
fn auth_token(flag: Option<PathBuf>) -> duokv_tools::Result<Option<AuthToken>> {
    let (path, from) = match (flag, std::env::var_os(TOKEN_FILE_ENV)) {
        (Some(path), _) => (path, "--auth-token-file".to_string()),
        (None, Some(path)) => (PathBuf::from(path), format!("${TOKEN_FILE_ENV}")),
        (None, None) => return Ok(None),
    };
    AuthToken::from_file(&path)
        .map(Some)
        .map_err(|e| duokv_tools::Error::Usage {
            message: format!(
                "bad auth token file from {from}: {}",
                duokv::error::chain(&e)
            ),
        })
}

/// The value of `put`, `create` or `update`: the positional VALUE, or the
/// bytes of `--value-file` (`-`: stdin); exactly one of them.
fn value(positional: Option<String>, file: Option<PathBuf>) -> duokv_tools::Result<Vec<u8>> {
    let usage = |message: &str| duokv_tools::Error::Usage {
        message: message.into(),
    };
    match (positional, file) {
        (Some(value), None) => Ok(value.into_bytes()),
        (None, Some(path)) if path == Path::new("-") => {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes).map_err(|source| {
                duokv_tools::Error::File {
                    path: "stdin".into(),
                    source,
                }
            })?;
            Ok(bytes)
        }
        (None, Some(path)) => {
            std::fs::read(&path).map_err(|source| duokv_tools::Error::File { path, source })
        }
        (Some(_), Some(_)) => Err(usage("give the value or --value-file, not both")),
        (None, None) => Err(usage(
            "no value: give VALUE or --value-file PATH (- for stdin)",
        )),
    }
}

/// The TLS of `--tls-ca` (and `--tls-cert` with `--tls-key`), if given; a
/// file that cannot be used is a usage error.
fn client_tls(args: &Args) -> duokv_tools::Result<Option<ClientTls>> {
    let usage = |message: String| duokv_tools::Error::Usage { message };
    let identity = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        (None, None) => None,
        _ => return Err(usage("give --tls-cert and --tls-key together".into())),
    };
    match &args.tls_ca {
        None if identity.is_some() => Err(usage(
            "--tls-cert needs --tls-ca (the authority that signed the servers')".into(),
        )),
        None => Ok(None),
        Some(ca) => ClientTls::new(ca, identity)
            .map(Some)
            .map_err(|e| usage(format!("TLS: {}", duokv::error::chain(&e)))),
    }
}

fn run(
    command: Command,
    token: Option<AuthToken>,
    tls: Option<ClientTls>,
) -> duokv_tools::Result<String> {
    let builder = |addr: String| {
        Client::builder(addr)
            .auth_token(token.clone())
            .tls(tls.clone())
    };
    let connect = |addr: String| builder(addr).connect();
    Ok(match command {
        Command::Get(c) => {
            let when = ReadWhen::new()
                .after(c.after)
                .max_staleness(c.max_staleness)
                .wait(c.wait);
            // Dialled by the read, after it checked the bound it sends.
            let mut client = builder(c.addr).build();
            match client.read_when(&c.key, &when)?.value {
                Some(value) => String::from_utf8_lossy(&value).into_owned(),
                None => return Err(duokv::Error::NotFound.into()),
            }
        }
        Command::Create(c) => {
            let value = value(c.value, c.value_file)?;
            receipt_line(&connect(c.addr)?.create(&c.key, value)?)
        }
        Command::Update(c) => {
            let value = value(c.value, c.value_file)?;
            receipt_line(&connect(c.addr)?.update(&c.key, value)?)
        }
        Command::Put(c) => {
            let value = value(c.value, c.value_file)?;
            receipt_line(&connect(c.addr)?.put(&c.key, value)?)
        }
        Command::Delete(c) => receipt_line(&connect(c.addr)?.delete(&c.key)?),
        Command::Ping(c) => {
            let pong = connect(c.addr.clone())?.ping()?;
            format!(
                "pong from {}: round trip {:.3}ms, server clock offset {:+.3}ms ± {:.3}ms",
                c.addr,
                pong.round_trip.as_secs_f64() * 1e3,
                pong.offset_ns() as f64 / 1e6,
                pong.error_bound().as_secs_f64() * 1e3
            )
        }
        Command::Load(c) => {
            let json = c.json;
            let report = duokv_tools::load::run(LoadConfig {
                addr: c.addr,
                target: c.target.with_redis_wait(c.redis_wait_ms)?,
                clients: c.clients,
                duration: c.duration,
                write_ratio: c.writes,
                keys: c.keys,
                value_size: c.value_size,
                auth_token: token.clone(),
                tls: tls.clone(),
                read_addr: c.read_addr,
                readers: c.readers,
                read_when: ReadConditions {
                    after: c.read_after,
                    max_staleness: c.read_max_staleness,
                    wait: c.read_wait,
                },
                sample_every: c.sample_every,
            })?;
            let text = if json {
                report.to_json()
            } else {
                report.to_text().trim_end().to_string()
            };
            if let Some(failure) = report.failure() {
                // The report still goes out: it says what was measured.
                println!("{text}");
                return Err(failure);
            }
            text
        }
        Command::BenchFailover(c) => {
            let stop = stop_flag();
            let mut config = FailoverConfig::new()?;
            duokv_tools::demo::check_fsync(&c.fsync)?;
            config.pair = match (c.master, c.slave) {
                (None, None) => PairSource::Spawn {
                    server_bin: std::env::current_exe()?,
                    server_args: vec!["server".into()],
                    fsync: c.fsync,
                    logs: c.logs,
                },
                (Some(master), Some(slave)) => PairSource::Running { master, slave },
                _ => {
                    return Err(duokv_tools::Error::Usage {
                        message: "give both --master and --slave, or neither".into(),
                    });
                }
            };
            config.mode = c.replication;
            config.clients = c.clients;
            config.switchovers = c.switchovers;
            config.promotions = c.promotions;
            config.interval = c.interval;
            config.timeout = c.timeout;
            config.keys_per_client = c.keys_per_client;
            config.value_size = c.value_size;
            config.retry_pause = c.retry_pause;
            config.retry_pause_max = c.retry_pause_max;
            config.auth_token = token.clone();
            config.tls = tls.clone();
            let report = duokv_tools::failover_bench::run(&config, &stop)?;
            if c.json {
                report.to_json()
            } else {
                report.to_text().trim_end().to_string()
            }
        }
        Command::Bench(c) => {
            let stop = stop_flag();
            let mut config = BenchConfig::new(c.master, c.slave, c.out);
            config.count = c.count;
            config.interval = c.interval;
            config.key = c.key;
            config.master_events = c.master_events;
            config.slave_events = c.slave_events;
            config.client_host = c.client_host;
            config.probe_patience = c.probe_patience;
            config.probe_read = c.probe_read;
            config.probe_addr = c.probe_addr;
            config.auth_token = token.clone();
            config.tls = tls.clone();
            let outcome = duokv_tools::bench::run(&config, &stop)?;
            let failed = outcome.rows.iter().filter(|r| r.error.is_some()).count();
            let text = format!(
                "{} ({failed} failed), {} replication; wrote {}",
                plural(outcome.rows.len(), "write"),
                outcome.meta.mode,
                outcome.dir.display()
            );
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                println!("{text}");
                return Err(duokv_tools::Error::Interrupted);
            }
            text
        }
        Command::Stats(c) => duokv_tools::stats::run(&StatsArgs {
            dirs: c.dirs,
            json: c.json,
            charts: !c.no_charts,
        })?,
        Command::PerfReport(c) => duokv_tools::perf_report::run(&c.dir)?,
        Command::Certs(c) => {
            let subjects = c
                .node
                .iter()
                .map(|node| {
                    let (file, names) = node.split_once('=').unwrap_or((node, node));
                    let names: Vec<String> = names.split(',').map(str::to_string).collect();
                    let valid = !file.is_empty()
                        && !file.contains('/')
                        && names.iter().all(|n| !n.is_empty());
                    valid
                        .then(|| duokv_tools::certs::Subject {
                            file: file.to_string(),
                            names,
                        })
                        .ok_or_else(|| duokv_tools::Error::Usage {
                            message: format!("--node {node}: use FILE=NAME[,NAME...]"),
                        })
                })
                .collect::<duokv_tools::Result<Vec<_>>>()?;
            if subjects.is_empty() {
                return Err(duokv_tools::Error::Usage {
                    message: "give at least one --node FILE=NAME[,NAME...]".into(),
                });
            }
            let (ca, issued) = duokv_tools::certs::make(&c.out, &subjects, c.days)?;
            let mut lines = vec![format!("authority {}", ca.display())];
            lines.extend(
                issued
                    .iter()
                    .map(|i| format!("{} {}", i.cert.display(), i.key.display())),
            );
            lines.join("\n")
        }
        Command::ReplayDiscarded(c) => {
            duokv_tools::replay::run(&c.file, &c.addr, c.dry_run, builder, |line| {
                println!("{line}");
            })?
        }
        Command::Demo(c) => {
            let stop = stop_flag();
            let mut config = DemoConfig::new(c.out)?;
            config.count = c.count;
            config.interval = c.interval;
            config.fsync = c.fsync;
            config.tls = c.tls;
            // Refused before anything starts.
            config.check()?;
            let dirs = duokv_tools::demo::run(&config, &stop)?;
            let interrupted = stop.load(std::sync::atomic::Ordering::SeqCst);
            if interrupted && dirs.is_empty() {
                return Err(duokv_tools::Error::Interrupted);
            }
            let report = stats_report(dirs)?;
            if interrupted {
                // What was measured before Ctrl-C, then the reason.
                println!("{report}");
                return Err(duokv_tools::Error::Interrupted);
            }
            report
        }
        Command::Server(_) | Command::Repair(_) => {
            unreachable!("main runs `duokv server` and `duokv repair` itself")
        }
        Command::Failover(c) => facts_lines(connect(c.master)?.failover(c.timeout)?),
        Command::Promote(c) => {
            facts_lines(connect(c.addr)?.promote(c.replica.as_deref(), c.replication, c.force)?)
        }
        Command::Info(c) => connect(c.addr)?
            .info()?
            .into_iter()
            .map(|(name, value)| format!("{name}: {value}"))
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

/// `1 write`, `2 writes`.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Facts, one `name: value` line each.
fn facts_lines(facts: Vec<(String, String)>) -> String {
    facts
        .into_iter()
        .map(|(name, value)| format!("{name}: {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A flag raised by Ctrl-C (SIGINT) or SIGTERM, so long runs stop cleanly.
fn stop_flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            eprintln!("warning: cannot catch signal {signal}: {e}");
        }
    }
    stop
}

/// The stats report of the given run directories, with their charts.
fn stats_report(dirs: Vec<PathBuf>) -> duokv_tools::Result<String> {
    duokv_tools::stats::run(&StatsArgs {
        dirs,
        json: false,
        charts: true,
    })
}

/// `duokv repair`: the report on stdout; exit 0 when the store is whole or
/// was fixed, 1 when a dry run found damage, 6 when it cannot be checked
/// (the `duokv` codes: 2 for bad flags).
fn repair(args: &Repair) -> ExitCode {
    use duokv::storage::repair;
    let outcome = if args.fix {
        let backup = args.backup_dir.clone().unwrap_or_else(|| {
            let now = duokv::clock::now_ns() / 1_000_000_000;
            let mut name = args.data_dir.clone().into_os_string();
            name.push(format!(".repair-{now}"));
            PathBuf::from(name)
        });
        repair::fix(&args.data_dir, &backup)
    } else {
        repair::scan(&args.data_dir)
    };
    let report = match outcome {
        Ok(report) => report,
        Err(e @ duokv::storage::Error::Locked { .. }) => {
            eprintln!("error: {e}: stop the replica that uses it first");
            return ExitCode::from(Exit::Failed.code());
        }
        Err(e) => {
            eprintln!("error: {}", duokv::error::chain(&e));
            return ExitCode::from(Exit::Failed.code());
        }
    };
    print!("{report}");
    match (report.damaged.is_empty(), args.fix) {
        (true, _) => {
            println!("no damage: the store opens as it is");
            ExitCode::SUCCESS
        }
        (false, true) => {
            println!("fixed: the store opens with every record before each cut");
            ExitCode::SUCCESS
        }
        (false, false) => {
            println!(
                "dry run, nothing changed: run `duokv repair {} --fix` to cut, keeping a \
                 backup of what it cuts",
                args.data_dir.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// `duokv server FLAGS`: the replica of [`duokv::cli`], logging at `info`
/// unless `RUST_LOG` says otherwise, as `duokv-server` does.
fn serve(flags: &[String]) -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let flags: Vec<&str> = flags
        .iter()
        .map(|flag| {
            if flag == "-h" {
                "--help"
            } else {
                flag.as_str()
            }
        })
        .collect();
    match duokv::cli::ServerArgs::from_args(&["duokv server"], &flags) {
        Ok(args) => duokv::cli::run(args),
        Err(early) if early.status.is_ok() => {
            println!("{}", early.output);
            ExitCode::SUCCESS
        }
        Err(early) => {
            eprintln!("{}", early.output);
            ExitCode::from(Exit::Usage.code())
        }
    }
}

/// The command line as argh should see it: `-h` is `--help`, and
/// `--auth-token-file FILE` after the subcommand moves before it (it is the
/// client's flag, whichever side of the subcommand it is typed on). Nothing
/// after `--` changes.
fn normalize(args: &[String]) -> Vec<String> {
    let mut front = Vec::new();
    let mut rest = Vec::new();
    let mut options_ended = false;
    let mut iter = args.iter().enumerate().peekable();
    while let Some((i, arg)) = iter.next() {
        if options_ended {
            rest.push(arg.clone());
            continue;
        }
        match arg.as_str() {
            "--" => {
                options_ended = true;
                rest.push(arg.clone());
            }
            "-h" => rest.push("--help".into()),
            "--auth-token-file" | "--tls-ca" | "--tls-cert" | "--tls-key" if i > 0 => {
                front.push(arg.clone());
                if let Some((_, file)) = iter.next() {
                    front.push(file.clone());
                }
            }
            _ => rest.push(arg.clone()),
        }
    }
    front.extend(rest);
    front
}

/// Parses the command line; on `--help` prints it and exits 0, on bad flags
/// prints argh's message and exits 2.
fn parse_args(argv: &[String]) -> Result<Args, ExitCode> {
    let name = argv.first().map_or("duokv", |arg0| {
        Path::new(arg0)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("duokv")
    });
    let args = normalize(argv.get(1..).unwrap_or_default());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Args::from_args(&[name], &args).map_err(|early| match early.status {
        Ok(()) => {
            println!("{}", early.output);
            ExitCode::SUCCESS
        }
        Err(()) => {
            eprintln!(
                "error: {}\nRun {name} --help for more information.",
                early.output.trim_end()
            );
            ExitCode::from(Exit::Usage.code())
        }
    })
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("server") {
        return serve(&argv[2..]);
    }
    let args = match parse_args(&argv) {
        Ok(args) => args,
        Err(code) => return code,
    };
    if let Command::Server(server) = &args.command {
        if args.auth_token_file.is_some() {
            eprintln!(
                "error: a replica takes its token after `server`: \
                 duokv server --auth-token-file FILE ..."
            );
            return ExitCode::from(Exit::Usage.code());
        }
        return serve(&server.flags);
    }
    if let Command::Repair(c) = &args.command {
        return repair(c);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let access = client_tls(&args).and_then(|tls| Ok((auth_token(args.auth_token_file)?, tls)));
    match access.and_then(|(token, tls)| run(args.command, token, tls)) {
        Ok(output) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`duokv get k | head -0`) is not worth a panic.
            let _ = writeln!(stdout, "{output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", duokv::error::chain(&e));
            ExitCode::from(e.exit().code())
        }
    }
}
