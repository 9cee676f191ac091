//! `duokv`: the command-line client of duokv.
//!
//! CRUD from the shell (`duokv put KEY VALUE`), a clock probe (`duokv ping`)
//! the server's facts (`duokv info`) and a load generator (`duokv load`). Each subcommand prints its result
//! on stdout and exits 0, or prints one line `error: ...` on stderr and exits
//! non-zero.

use std::io::Write;
use std::process::ExitCode;

use argh::FromArgs;
use std::time::Duration;

use duokv::duration::parse_duration;
use duokv::load::LoadConfig;
use duokv::{Client, WriteReceipt};

/// The duokv command-line client.
#[derive(FromArgs)]
struct Args {
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
}

/// Insert KEY with VALUE; fails if KEY exists.
#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
struct Create {
    /// the key
    #[argh(positional)]
    key: String,
    /// the value
    #[argh(positional)]
    value: String,
    /// server address (default 127.0.0.1:7070)
    #[argh(option, default = "default_addr()")]
    addr: String,
}

/// Replace the value of an existing KEY; fails if KEY is missing.
#[derive(FromArgs)]
#[argh(subcommand, name = "update")]
struct Update {
    /// the key
    #[argh(positional)]
    key: String,
    /// the new value
    #[argh(positional)]
    value: String,
    /// server address (default 127.0.0.1:7070)
    #[argh(option, default = "default_addr()")]
    addr: String,
}

/// Set KEY to VALUE whether it exists or not.
#[derive(FromArgs)]
#[argh(subcommand, name = "put")]
struct Put {
    /// the key
    #[argh(positional)]
    key: String,
    /// the value
    #[argh(positional)]
    value: String,
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

/// Closed-loop load against one server: throughput and latency percentiles.
#[derive(FromArgs)]
#[argh(subcommand, name = "load")]
struct Load {
    /// server address (default 127.0.0.1:7070)
    #[argh(option, default = "default_addr()")]
    addr: String,
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
    /// share of operations that are writes (puts), 0.0 to 1.0 (default 1.0)
    #[argh(option, default = "1.0")]
    writes: f64,
    /// number of distinct keys (default 10000)
    #[argh(option, default = "10000")]
    keys: u64,
    /// bytes per written value (default 100)
    #[argh(option, default = "100")]
    value_size: usize,
}

fn default_addr() -> String {
    "127.0.0.1:7070".to_string()
}

fn receipt_line(receipt: &WriteReceipt) -> String {
    format!(
        "ok seq={} latency={:.3}ms",
        receipt.seq,
        receipt.latency.as_secs_f64() * 1e3
    )
}

fn run(command: Command) -> duokv::Result<String> {
    Ok(match command {
        Command::Get(c) => match Client::connect(c.addr)?.read(&c.key)? {
            Some(value) => String::from_utf8_lossy(&value).into_owned(),
            None => return Err(duokv::Error::NotFound),
        },
        Command::Create(c) => receipt_line(&Client::connect(c.addr)?.create(&c.key, &c.value)?),
        Command::Update(c) => receipt_line(&Client::connect(c.addr)?.update(&c.key, &c.value)?),
        Command::Put(c) => receipt_line(&Client::connect(c.addr)?.put(&c.key, &c.value)?),
        Command::Delete(c) => receipt_line(&Client::connect(c.addr)?.delete(&c.key)?),
        Command::Ping(c) => {
            let pong = Client::connect(c.addr.clone())?.ping()?;
            format!(
                "pong from {}: round trip {:.3}ms, server clock offset {:+.3}ms ± {:.3}ms",
                c.addr,
                pong.round_trip.as_secs_f64() * 1e3,
                pong.offset_ns() as f64 / 1e6,
                pong.error_bound().as_secs_f64() * 1e3
            )
        }
        Command::Load(c) => duokv::load::run(LoadConfig {
            addr: c.addr,
            clients: c.clients,
            duration: c.duration,
            write_ratio: c.writes,
            keys: c.keys,
            value_size: c.value_size,
        })?
        .to_text()
        .trim_end()
        .to_string(),
        Command::Info(c) => Client::connect(c.addr)?
            .info()?
            .into_iter()
            .map(|(name, value)| format!("{name}: {value}"))
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args: Args = argh::from_env();
    match run(args.command) {
        Ok(output) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`duokv get k | head -0`) is not worth a panic.
            let _ = writeln!(stdout, "{output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", duokv::error::chain(&e));
            ExitCode::FAILURE
        }
    }
}
