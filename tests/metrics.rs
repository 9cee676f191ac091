//! The `/metrics` endpoint (`--metrics-listen`) of real `duokv-server`
//! processes: what a master and its slave report and how it moves with
//! writes, reads, refusals and sync timeouts; the text passes Prometheus's
//! own lint (`promtool check metrics`); and a real Prometheus server
//! scrapes it and answers queries on it. Both tools come with Debian's
//! `prometheus` package, which `.ci/run` installs; without them, here, the
//! parts that need them are skipped (under CI they fail).

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{DEADLINE, Pair, ServerProcess, info_value, poll};

/// Where `server` serves its metrics, from its log (it was started with
/// `--metrics-listen 127.0.0.1:0`).
fn metrics_addr(server: &ServerProcess) -> String {
    poll("the server to log its metrics address", || {
        let log = server.log();
        let (_, rest) = log.split_once("serving metrics on http://")?;
        let (addr, _) = rest.split_once("/metrics")?;
        Some(addr.to_string())
    })
}

/// `GET path` over HTTP/1.1 from `addr`: the status code and the body.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read the reply");
    let (head, body) = reply.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}

/// One scrape of `/metrics`: the text, and each sample's value by its
/// series (`name{labels}` as written).
struct Scrape {
    text: String,
    samples: HashMap<String, f64>,
}

impl Scrape {
    fn of(addr: &str) -> Scrape {
        let (status, text) = http_get(addr, "/metrics");
        assert_eq!(status, 200, "{text}");
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("a sample line");
                (series.to_string(), value.parse().expect("a number"))
            })
            .collect();
        Scrape { text, samples }
    }

    /// The value of `series`; panics, with the scrape, if it is absent.
    fn value(&self, series: &str) -> f64 {
        self.get(series)
            .unwrap_or_else(|| panic!("no {series} in:\n{}", self.text))
    }

    fn get(&self, series: &str) -> Option<f64> {
        self.samples.get(series).copied()
    }
}

/// Whether `tool` runs here; if not, `what` is skipped.
fn have(tool: &str, what: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        common::skip(what, &format!("{tool} (Debian's prometheus package)"));
    }
    found
}

/// Runs `promtool check metrics` on `text`; panics with its complaints.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let output = child.wait_with_output().expect("promtool's output");
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

const METRICS: [&str; 2] = ["--metrics-listen", "127.0.0.1:0"];

#[test]
fn a_pair_reports_roles_seqs_lag_and_latencies() {
    let pair = Pair::start(&METRICS, &METRICS);
    pair.wait_link_up();
    let (master_addr, slave_addr) = (metrics_addr(&pair.master), metrics_addr(&pair.slave));
    let mut master = pair.master.client();
    assert_eq!(info_value(&mut master, "metrics_addr"), master_addr);

    let before = Scrape::of(&master_addr);
    assert_eq!(before.value(r#"duokv_role{role="master"}"#), 1.0);
    assert_eq!(before.value(r#"duokv_role{role="slave"}"#), 0.0);
    assert_eq!(before.value("duokv_replication_link_up"), 1.0);
    assert_eq!(before.value("duokv_replication_connects_total"), 1.0);
    let slave = Scrape::of(&slave_addr);
    assert_eq!(slave.value(r#"duokv_role{role="slave"}"#), 1.0);
    assert!(slave.get("duokv_replication_lag_seconds").is_none());
    assert!(before.get("duokv_staleness_bound_seconds").is_none());

    let writes = 20u64;
    for i in 0..writes {
        master.put(format!("k{i}"), "v").expect("put");
    }
    master.delete("k0").expect("delete");
    let last = writes + 1;
    let mut slave_client = pair.slave.client();
    slave_client.read("k1").expect("read on the slave");
    slave_client
        .read_fresh("k1", Duration::from_secs(1), Duration::from_secs(1))
        .expect("a read under a staleness bound");

    let after = Scrape::of(&master_addr);
    assert_eq!(after.value("duokv_last_seq"), last as f64);
    // Sync replication: each write was answered once the slave acked it.
    assert_eq!(after.value("duokv_slave_acked_seq"), last as f64);
    assert_eq!(after.value("duokv_replication_lag_records"), 0.0);
    assert_eq!(
        after.value(r#"duokv_write_duration_seconds_count{op="put"}"#),
        writes as f64
    );
    assert_eq!(
        after.value(r#"duokv_write_duration_seconds_count{op="delete"}"#),
        1.0
    );
    assert!(after.value(r#"duokv_write_duration_seconds_sum{op="put"}"#) > 0.0);
    assert!(after.value("duokv_fdatasync_duration_seconds_count") >= 1.0);
    assert_eq!(after.value("duokv_store_live_keys"), (writes - 1) as f64);
    assert!(after.value("duokv_store_dead_bytes") > 0.0);

    // An idle master: nothing is lagging, and the slave's proof of its
    // staleness stays fresh (it does not grow with the time since the
    // last write, as "now - last replayed write" would).
    let idle = Instant::now();
    let slave = poll("the slave to apply every write", || {
        let scrape = Scrape::of(&slave_addr);
        (scrape.value("duokv_applied_seq") == last as f64).then_some(scrape)
    });
    assert_eq!(slave.value("duokv_visible_seq"), last as f64);
    for op in ["read", "read_fresh"] {
        let series = format!(r#"duokv_read_duration_seconds_count{{op="{op}"}}"#);
        assert_eq!(slave.value(&series), 1.0, "{op}");
    }
    std::thread::sleep(Duration::from_millis(600)); // idle, on purpose
    let slave = Scrape::of(&slave_addr);
    let bound = slave.value("duokv_staleness_bound_seconds");
    assert!(
        bound < idle.elapsed().as_secs_f64() / 2.0,
        "the staleness bound {bound}s grew with the master's idleness"
    );
    assert_eq!(
        Scrape::of(&master_addr).value("duokv_replication_lag_seconds"),
        0.0
    );

    if have("promtool", "promtool check metrics on a pair's scrapes") {
        promtool_check(&Scrape::of(&master_addr).text);
        promtool_check(&slave.text);
    }
}

#[test]
fn refused_handshakes_are_counted_by_reason() {
    let (_dir, token) = common::token_file("metrics-secret");
    let token = token.display().to_string();
    let server = ServerProcess::start(&["--auth-token-file", &token, METRICS[0], METRICS[1]]);
    let addr = metrics_addr(&server);
    let refused = |reason: &str| {
        Scrape::of(&addr).value(&format!(
            r#"duokv_handshakes_refused_total{{reason="{reason}"}}"#
        ))
    };
    // (The readiness probe of `start` may have been refused already.)
    for (handshake, reason) in [
        (common::handshake_bytes(1), "unauthorized"),
        (common::handshake_bytes(99), "unsupported_version"),
    ] {
        let before = refused(reason);
        let mut stream = common::raw_connect(&server.addr());
        stream.write_all(&handshake).expect("send the handshake");
        let _ = common::read_until_closed(&mut stream);
        assert_eq!(refused(reason), before + 1.0, "{reason}");
    }
    assert_eq!(refused("busy"), 0.0);
}

#[test]
fn sync_timeouts_are_counted() {
    let pair = Pair::start(&["--sync-timeout", "200ms", METRICS[0], METRICS[1]], &[]);
    pair.wait_link_up();
    let addr = metrics_addr(&pair.master);
    pair.slave.signal("SIGSTOP");
    let mut master = pair.master.client();
    let outcome = master.put("k", "v");
    pair.slave.signal("SIGCONT");
    assert!(outcome.is_err(), "a write acked by a stopped slave");
    let scrape = Scrape::of(&addr);
    assert_eq!(scrape.value("duokv_sync_timeouts_total"), 1.0);
    assert_eq!(scrape.value("duokv_sync_fallback_writes_total"), 0.0);
    // The write is durable on the master, and not acknowledged.
    assert_eq!(
        scrape.value(r#"duokv_write_duration_seconds_count{op="put"}"#),
        1.0
    );
    assert!(scrape.value("duokv_replication_lag_records") <= 1.0);
}

#[test]
fn only_get_of_metrics_is_served() {
    let server = ServerProcess::start(&METRICS);
    let addr = metrics_addr(&server);
    assert_eq!(http_get(&addr, "/").0, 404);
    assert_eq!(http_get(&addr, "/metrics?debug=1").0, 200);
    let scrape = Scrape::of(&addr);
    assert_eq!(scrape.value(r#"duokv_role{role="standalone"}"#), 1.0);
    assert!(scrape.get("duokv_replication_link_up").is_none());
    // A request head that never ends is cut off, and the endpoint serves on.
    let mut stream = TcpStream::connect(&addr).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let endless = format!("GET /metrics HTTP/1.1\r\nX-Pad: {}", "a".repeat(16 * 1024));
    let _ = stream.write_all(endless.as_bytes());
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply:?}");
    assert_eq!(http_get(&addr, "/metrics").0, 200);
}

/// A real Prometheus server scrapes a master's endpoint; its query API
/// then answers with the master's role and seqs.
#[test]
fn a_prometheus_server_scrapes_the_endpoint() {
    if !have("prometheus", "a Prometheus server scraping /metrics") {
        return;
    }
    let server = ServerProcess::start(&METRICS);
    let target = metrics_addr(&server);
    let mut client = server.client();
    for i in 0..3 {
        client.put(format!("k{i}"), "v").expect("put");
    }
    let dir = tempfile::tempdir().expect("a directory for Prometheus");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 200ms\n  scrape_timeout: 200ms\n\
             scrape_configs:\n  - job_name: duokv\n    static_configs:\n      \
             - targets: ['{target}']\n"
        ),
    )
    .expect("write the config");
    let (prometheus, api) = start_prometheus(&config, &dir.path().join("data"));
    let answer = poll_query(&api, "duokv_last_seq", "\"3\"]");
    assert!(
        answer.contains(&format!("\"instance\":\"{target}\"")),
        "{answer}"
    );
    poll_query(&api, r#"duokv_role{role="standalone"}"#, "\"1\"]");
    poll_query(&api, "up", "\"1\"]");
    drop(prometheus);
}

/// Starts Prometheus with `config` and its data in `data` on a free
/// loopback port; returns it (killed when dropped) and its address.
fn start_prometheus(config: &Path, data: &Path) -> (common::Background, String) {
    let api = format!("127.0.0.1:{}", common::free_port());
    let prometheus = common::Background::spawn(Command::new("prometheus").args([
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", data.display()),
        format!("--web.listen-address={api}"),
    ]));
    (prometheus, api)
}

/// Queries Prometheus at `api` for `query` until its answer holds
/// `expected` (a sample's value, as the API writes it), or the deadline.
fn poll_query(api: &str, query: &str, expected: &str) -> String {
    let path = format!("/api/v1/query?query={}", url_encode(query));
    let deadline = Instant::now() + 3 * DEADLINE;
    loop {
        let answer = TcpStream::connect(api)
            .ok()
            .map(|_| http_get(api, &path))
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| body);
        if let Some(body) = &answer
            && body.contains("\"status\":\"success\"")
            && body.contains(expected)
        {
            return body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never answered {query} with {expected}: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `text` percent-encoded for a query string.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
