//! The checks of `duokv-server`'s flags that argh cannot make: ranges,
//! flags that belong to another role, peer addresses, the data dir.
//!
//! Each problem is a message that names its flag and says what it takes,
//! and [`problems`] finds them all at once, before the server binds, opens
//! or creates anything: a flag that would make a replica misbehave (drop
//! every client, redial itself forever, ignore what it was told) stops it
//! at start instead, with exit code 2.
//!
//! Peer addresses are checked for their form, HOST:PORT, and never
//! resolved: a machine may start before its DNS answers, and the master
//! redials its slave until it does. A host name is only checked to be one;
//! an IP address must parse; `localhost` counts as this machine.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use duokv_storage::Sync;

use super::ServerArgs;

/// The longest of every duration flag: beyond it a timeout is a typo
/// (`--idle-timeout 300000`, seconds meant as milliseconds), and a deadline
/// that far off may not even be representable.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// The shortest of every duration flag: zero would close every connection
/// at once, fail every sync write, or spin.
const MIN_DURATION: Duration = Duration::from_millis(1);

/// The most `--max-connections`: one thread each, so far past what one
/// host runs.
const MAX_CONNECTIONS: usize = 1_000_000;

/// The least `--max-frame-bytes`: room for a handshake and a small request.
const MIN_FRAME_BYTES: u32 = 64;

/// Every problem with the flags' values, each naming its flag; empty when
/// the flags make a replica (the role's own flags, `--replica` and
/// `--master-addr` present as the role needs them, are `role`'s to check).
pub(super) fn problems(args: &ServerArgs) -> Vec<String> {
    let mut problems = Vec::new();
    problems.extend(role_flags(args));
    for (flag, duration) in [
        ("--idle-timeout", Some(args.idle_timeout)),
        ("--frame-timeout", Some(args.frame_timeout)),
        ("--drain-timeout", Some(args.drain_timeout)),
        ("--sync-timeout", args.sync_timeout),
        ("--probe-interval", args.probe_interval),
    ] {
        if let Some(duration) = duration {
            problems.extend(duration_in_range(flag, duration).err());
        }
    }
    if let Some(delay) = args.apply_delay
        && delay > MAX_DURATION
    {
        problems.push(format!(
            "--apply-delay {delay:?} is out of range: use 0 (no delay) to 24h (e.g. 250ms, 1h)"
        ));
    }
    problems.extend(fsync(args.fsync).err());
    if !(1..=MAX_CONNECTIONS).contains(&args.max_connections) {
        problems.push(format!(
            "--max-connections {} is out of range: use 1 to {MAX_CONNECTIONS}",
            args.max_connections
        ));
    }
    if !(MIN_FRAME_BYTES..=duokv_protocol::MAX_FRAME_LEN).contains(&args.max_frame_bytes) {
        problems.push(format!(
            "--max-frame-bytes {} is out of range: use {MIN_FRAME_BYTES} to {} (32 MiB)",
            args.max_frame_bytes,
            duokv_protocol::MAX_FRAME_LEN
        ));
    }
    // `contains` is false for NaN too.
    if !(0.0..=1.0).contains(&args.compact_dead_ratio) {
        problems.push(format!(
            "--compact-dead-ratio {} is out of range: use 0.0 to 1.0 (a share of the log)",
            args.compact_dead_ratio
        ));
    }
    for (flag, addr, whose) in [
        ("--replica", &args.replica, "the slave's"),
        ("--master-addr", &args.master_addr, "the master's"),
    ] {
        if let Some(addr) = addr {
            problems.extend(peer(flag, addr, whose, args.listen).err());
        }
    }
    for (flag, addr) in [
        ("--resp-listen", args.resp_listen),
        ("--metrics-listen", args.metrics_listen),
    ] {
        if addr.is_some_and(|addr| addr == args.listen && addr.port() != 0) {
            problems.push(format!(
                "{flag} {} is --listen's address: give the two ports apart",
                args.listen
            ));
        }
    }
    problems.extend(data_dir(&args.data_dir).err());
    problems
}

/// The flags given that the node's `--role` does not use: a master's on
/// a slave or a standalone node, a slave's on a master or a standalone
/// node. Nothing when `--role` names no role (`role` says so).
fn role_flags(args: &ServerArgs) -> Vec<String> {
    let master_flags = [
        ("--replica", args.replica.is_some()),
        ("--replication", args.replication.is_some()),
        ("--sync-timeout", args.sync_timeout.is_some()),
        ("--sync-fallback", args.sync_fallback.is_some()),
        ("--forward", args.forward.is_some()),
    ];
    let slave_flags = [
        ("--master-addr", args.master_addr.is_some()),
        ("--on-divergence", args.on_divergence.is_some()),
        ("--probe-interval", args.probe_interval.is_some()),
        ("--apply-delay", args.apply_delay.is_some()),
    ];
    let this_node = match args.role.as_str() {
        "standalone" => "standalone (--role standalone, the default)",
        "master" => "--role master",
        "slave" => "--role slave",
        _ => return Vec::new(),
    };
    let mut problems = Vec::new();
    for (flags, role) in [(&master_flags[..], "master"), (&slave_flags[..], "slave")] {
        if args.role == role {
            continue;
        }
        for (flag, _) in flags.iter().filter(|(_, given)| *given) {
            problems.push(format!(
                "{flag} is for --role {role} only, and this node is {this_node}: drop it{}",
                if args.role == "standalone" {
                    format!(" or add --role {role}")
                } else {
                    String::new()
                }
            ));
        }
    }
    problems
}

/// `duration` given to `flag`, refused outside [`MIN_DURATION`] to
/// [`MAX_DURATION`].
fn duration_in_range(flag: &str, duration: Duration) -> Result<(), String> {
    if (MIN_DURATION..=MAX_DURATION).contains(&duration) {
        Ok(())
    } else {
        Err(format!(
            "{flag} {duration:?} is out of range: use 1ms to 24h (e.g. 500ms, 30s, 5m)"
        ))
    }
}

/// `--fsync every:MS` with MS from 1 to a day's worth.
fn fsync(sync: Sync) -> Result<(), String> {
    match sync {
        Sync::Every(period) if !(MIN_DURATION..=MAX_DURATION).contains(&period) => Err(format!(
            "--fsync every:{} is out of range: every:MS needs MS >= 1 (and at most {}, a \
             day)",
            period.as_millis(),
            MAX_DURATION.as_millis()
        )),
        _ => Ok(()),
    }
}

/// A peer's address as `--replica` or `--master-addr` gives it: its form
/// checked, the host not resolved.
#[derive(Debug, PartialEq, Eq)]
enum Peer {
    /// An IP address and port.
    Ip(SocketAddr),
    /// A host name, resolved when dialled, and a port.
    Name(String, u16),
}

/// Refuses `addr`, given to `flag` for `whose` address, when it is not
/// HOST:PORT or when it is this node's own `listen` address.
fn peer(flag: &str, addr: &str, whose: &str, listen: SocketAddr) -> Result<(), String> {
    let peer = parse_peer(addr).map_err(|why| {
        format!("{flag} `{addr}` {why}: use HOST:PORT, {whose} address, e.g. 10.0.0.2:7070")
    })?;
    if is_own(&peer, listen) {
        return Err(format!(
            "{flag} {addr} is this node's own --listen address ({listen}): name {whose} \
             address, or this node would dial itself forever"
        ));
    }
    Ok(())
}

/// Reads HOST:PORT (an IPv6 host in brackets), or says what is wrong with
/// it.
fn parse_peer(addr: &str) -> Result<Peer, String> {
    if let Ok(ip) = addr.parse::<SocketAddr>() {
        return match ip.port() {
            0 => Err("has port 0, which cannot be dialled".to_string()),
            _ => Ok(Peer::Ip(ip)),
        };
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err("has no port".to_string());
    };
    if host.starts_with('[') || host.contains(':') {
        return Err("is not an IPv6 address and port (they read [::1]:7070)".to_string());
    }
    let port = match port.parse::<u16>() {
        _ if port.is_empty() => return Err("has no port".to_string()),
        Ok(port) if port > 0 => port,
        _ => return Err(format!("has port `{port}`: a port is 1 to 65535")),
    };
    if host.is_empty() {
        return Err("has no host".to_string());
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("has host `{host}`, not an IPv4 address"));
    }
    if !is_host_name(host) {
        return Err(format!("has host `{host}`, not a host name"));
    }
    Ok(Peer::Name(host.to_string(), port))
}

/// Whether `host` is a DNS name: dot-separated labels of 1 to 63 letters,
/// digits, `-` and `_`, not starting or ending with `-`; 253 bytes at most.
fn is_host_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Whether dialling `peer` reaches this node's listener on `listen`: the
/// same port, and the same IP, or an IP of this machine when the node
/// listens on every interface (`0.0.0.0`, `::`), or `0.0.0.0` itself
/// (which dials this machine). A name other than `localhost` is taken to
/// be another host: it is not resolved.
fn is_own(peer: &Peer, listen: SocketAddr) -> bool {
    let every_interface = |ip: IpAddr| {
        listen.ip().is_unspecified() && (listen.is_ipv6() || ip.is_ipv4()) && is_local(ip)
    };
    match peer {
        _ if listen.port() == 0 => false,
        Peer::Ip(addr) => {
            addr.port() == listen.port()
                && (addr.ip() == listen.ip()
                    || addr.ip().is_unspecified()
                    || every_interface(addr.ip()))
        }
        Peer::Name(host, port) => {
            *port == listen.port()
                && host.eq_ignore_ascii_case("localhost")
                && (listen.ip().is_loopback() || listen.ip().is_unspecified())
        }
    }
}

/// Whether `ip` is one of this machine's addresses: loopback, or one a
/// socket can be bound to (the kernel refuses another host's).
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || UdpSocket::bind((ip, 0)).is_ok()
}

/// Refuses a `--data-dir` that is a file, or under one: the store could
/// not be created there, and the error would say only "File exists" or
/// "Not a directory". A path that does not exist yet is fine (the store
/// creates it); one that cannot be read is left to the store to report.
fn data_dir(dir: &Path) -> Result<(), String> {
    if dir.as_os_str().is_empty() {
        return Err("--data-dir is empty: name the store's directory".to_string());
    }
    for part in dir.ancestors().filter(|part| !part.as_os_str().is_empty()) {
        match std::fs::metadata(part) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) if part == dir => {
                return Err(format!(
                    "--data-dir {} is a file, not a directory: name the store's directory",
                    dir.display()
                ));
            }
            Ok(_) => {
                return Err(format!(
                    "--data-dir {}: {} is a file, not a directory",
                    dir.display(),
                    part.display()
                ));
            }
            Err(_) => continue,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_need_a_host_and_a_port() {
        let name = |host: &str, port| Ok(Peer::Name(host.to_string(), port));
        assert_eq!(
            parse_peer("10.0.0.2:7070"),
            Ok(Peer::Ip("10.0.0.2:7070".parse().unwrap()))
        );
        assert_eq!(
            parse_peer("[::1]:7070"),
            Ok(Peer::Ip("[::1]:7070".parse().unwrap()))
        );
        assert_eq!(
            parse_peer("db-2.example.com:7070"),
            name("db-2.example.com", 7070)
        );
        assert_eq!(parse_peer("localhost:1"), name("localhost", 1));
        for (addr, says) in [
            ("notanaddr", "has no port"),
            ("host:", "has no port"),
            (":7070", "has no host"),
            ("host:0", "port `0`"),
            ("127.0.0.1:0", "port 0"),
            ("host:70000", "port `70000`"),
            ("host:http", "port `http`"),
            ("::1", "IPv6"),
            ("[::1]", "IPv6"),
            ("::1:7070", "IPv6"),
            ("10.0.0.300:7070", "not an IPv4 address"),
            ("two words:7070", "not a host name"),
            ("-host:7070", "not a host name"),
            ("a..b:7070", "not a host name"),
        ] {
            let why = parse_peer(addr).expect_err(addr);
            assert!(why.contains(says), "{addr}: {why}");
        }
    }

    #[test]
    fn a_peer_on_the_listen_port_of_this_machine_is_this_node() {
        let listen = |addr: &str| addr.parse::<SocketAddr>().unwrap();
        let own = |addr: &str, on: &str| is_own(&parse_peer(addr).unwrap(), listen(on));
        assert!(own("127.0.0.1:7070", "127.0.0.1:7070"));
        assert!(own("0.0.0.0:7070", "127.0.0.1:7070"));
        assert!(own("127.0.0.1:7070", "0.0.0.0:7070"));
        assert!(own("[::1]:7070", "[::]:7070"));
        assert!(own("localhost:7070", "127.0.0.1:7070"));
        assert!(own("LocalHost:7070", "0.0.0.0:7070"));
        assert!(!own("127.0.0.1:7071", "127.0.0.1:7070"));
        assert!(!own("10.0.0.2:7070", "10.0.0.1:7070"));
        // 192.0.2.0/24 is for documentation: no machine has it.
        assert!(!own("192.0.2.1:7070", "0.0.0.0:7070"));
        assert!(!own("db-2:7070", "0.0.0.0:7070"));
        assert!(!own("127.0.0.1:7070", "127.0.0.1:0"));
    }

    #[test]
    fn durations_run_from_a_millisecond_to_a_day() {
        assert!(duration_in_range("--idle-timeout", Duration::from_millis(1)).is_ok());
        assert!(duration_in_range("--idle-timeout", MAX_DURATION).is_ok());
        let zero = duration_in_range("--idle-timeout", Duration::ZERO).unwrap_err();
        assert!(zero.starts_with("--idle-timeout 0ns"), "{zero}");
        assert!(duration_in_range("--idle-timeout", MAX_DURATION * 2).is_err());
        assert!(
            fsync(Sync::Every(Duration::ZERO))
                .unwrap_err()
                .contains("MS >= 1")
        );
        assert!(fsync(Sync::Every(Duration::from_millis(1))).is_ok());
        assert!(fsync(Sync::Always).is_ok());
    }

    #[test]
    fn a_data_dir_is_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(data_dir(dir.path()).is_ok());
        assert!(data_dir(&dir.path().join("new/deeper")).is_ok());
        assert!(data_dir(Path::new("relative/new")).is_ok());
        let refused = data_dir(&file).unwrap_err();
        assert!(refused.contains("is a file"), "{refused}");
        let under = data_dir(&file.join("store")).unwrap_err();
        assert!(
            under.contains(&format!("{} is a file", file.display())),
            "{under}"
        );
        assert!(data_dir(Path::new("")).is_err());
    }
}
