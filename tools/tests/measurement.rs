//! End-to-end tests of the measurement tools: `duokv demo`, `duokv bench`
//! and `duokv stats` run as the real binaries against real `duokv-server`
//! processes on loopback ports chosen at run time, with every file in a
//! temporary directory.
//!
//! What they hold the tools to: the demo leaves, for each mode, a run
//! directory in the documented format (see `src/run_dir.rs`) with one row
//! and one apply event per write, charts that are well-formed SVG, and a
//! report of every measure; a slave that dies in the middle of a bench does
//! not stop the bench, and the report counts what the slave missed instead
//! of crashing; and the NTP-style clock probes find a known skew
//! (`duokv-server --clock-offset-ms`), which the stats then correct away.
//!
//! Nothing here sleeps to synchronise: every wait is a poll with a deadline
//! (see `common`), and every child process is killed when its guard drops.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::{Background, Pair, ServerProcess, last_seq, poll, run_with_deadline};
use duokv_tools::bench::probe_clock;
use serde_json::Value;

/// The `duokv` binary.
const DUOKV: &str = env!("CARGO_BIN_EXE_duokv");

/// The header `client.csv` must start with (`src/run_dir.rs`).
const CLIENT_HEADER: &str =
    "write,write_id,value,start_unix_ns,commit_unix_ns,latency_ns,visible_unix_ns,error";

/// The header of an event log (`src/event_log.rs`).
const EVENTS_HEADER: &str = "event,seq,key,unix_ns";

/// The report's row labels, one per measure, as the brief names them (each
/// is the start of the label in the report).
const MEASURES: [&str; 5] = [
    "latency",
    "staleness, two clocks (raw)",
    "staleness, two clocks (clamped at 0)",
    "staleness, master clock",
    "staleness, reader",
];

/// The charts `duokv stats` writes into every run directory.
const CHARTS: [&str; 3] = ["latency.svg", "staleness.svg", "cdf.svg"];

/// Slack for scheduling on top of a clock probe's error bound.
const SCHEDULING_NS: u64 = 1_000_000;

/// Runs `duokv ARGS...` to completion within the common deadline.
fn duokv(args: &[&str]) -> Output {
    run_with_deadline(Command::new(DUOKV).args(args))
}

/// Asserts that `output` is a success and returns its stdout.
fn success(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

/// A path as a command-line argument.
fn arg(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// One row of `client.csv`, parsed here by hand so the test checks the
/// documented format and not only the crate's own parser.
#[derive(Debug)]
struct Row {
    write: u64,
    write_id: u64,
    value: String,
    start_ns: u64,
    commit_ns: u64,
    latency_ns: u64,
    visible_ns: Option<u64>,
    error: String,
}

/// Reads `DIR/client.csv`: the exact header, then one row per line.
fn client_rows(dir: &Path) -> Vec<Row> {
    let path = dir.join("client.csv");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(CLIENT_HEADER), "{}", path.display());
    lines
        .map(|line| {
            let fields: Vec<&str> = line.splitn(8, ',').collect();
            assert_eq!(fields.len(), 8, "{}: {line}", path.display());
            let number = |i: usize| -> u64 {
                fields[i]
                    .parse()
                    .unwrap_or_else(|_| panic!("field {i} of {line:?} is not a number"))
            };
            Row {
                write: number(0),
                write_id: number(1),
                value: fields[2].to_string(),
                start_ns: number(3),
                commit_ns: number(4),
                latency_ns: number(5),
                visible_ns: (!fields[6].is_empty()).then(|| number(6)),
                error: fields[7].to_string(),
            }
        })
        .collect()
}

/// The seqs of the `applied` events in an event log, in file order.
fn applied_seqs(path: &Path) -> Vec<u64> {
    event_seqs(path, "applied")
}

/// The seqs of the `kind` events in an event log, in file order.
fn event_seqs(path: &Path, kind: &str) -> Vec<u64> {
    events(path, kind).into_iter().map(|(seq, _)| seq).collect()
}

/// The `(seq, unix_ns)` of the `applied` events in an event log, in file
/// order; the header must be the documented one.
fn applied_events(path: &Path) -> Vec<(u64, u64)> {
    events(path, "applied")
}

/// The `(seq, unix_ns)` of the `kind` events in an event log, in file
/// order; the header must be the documented one.
fn events(path: &Path, kind: &str) -> Vec<(u64, u64)> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        !text.is_empty(),
        "{} is empty: not even its header reached the disk",
        path.display()
    );
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(EVENTS_HEADER), "{}", path.display());
    lines
        .filter(|line| line.starts_with(&format!("{kind},")))
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 4, "{}: {line}", path.display());
            let number = |i: usize| -> u64 {
                fields[i]
                    .parse()
                    .unwrap_or_else(|_| panic!("field {i} of {line:?} is not a number"))
            };
            (number(1), number(3))
        })
        .collect()
}

/// Reads `DIR/run.json`.
fn run_json(dir: &Path) -> Value {
    let path = dir.join("run.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

/// An integer field of a JSON document, by JSON pointer.
fn json_i64(doc: &Value, pointer: &str) -> i64 {
    doc.pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no integer at {pointer} in {doc:#}"))
}

/// The lines of the report's section about the run in `dir`: from its
/// `run DIR` line to the next run, the comparison or the chart list.
fn run_section<'a>(report: &'a str, dir: &Path) -> Vec<&'a str> {
    let header = format!("run {}", dir.display());
    let mut lines = report.lines().skip_while(|line| *line != header);
    assert!(
        lines.next().is_some(),
        "no `{header}` in the report:\n{report}"
    );
    lines
        .take_while(|line| {
            !line.starts_with("run ")
                && !line.starts_with("comparison")
                && !line.starts_with("charts")
        })
        .collect()
}

/// The `(count, missing)` columns of the table row for the measure whose
/// label starts with `label`, in a run's section of the report.
fn table_row(section: &[&str], label: &str) -> (usize, usize) {
    section
        .iter()
        .filter_map(|line| line.strip_prefix(label))
        .find_map(|rest| {
            // The label is padded to a column; the sparkline rows that also
            // start with the label do not have two numbers next.
            let rest = rest.split_once("  ").map_or(rest, |(_, r)| r);
            let mut numbers = rest.split_whitespace().map(|f| f.parse::<usize>().ok());
            Some((numbers.next()??, numbers.next()??))
        })
        .unwrap_or_else(|| panic!("no table row for `{label}`:\n{}", section.join("\n")))
}

/// Checks that `text` is a well-formed SVG document, to the extent a test
/// needs: after an optional `<?xml ...?>` declaration (and comments or a
/// doctype) comes exactly one root element, `<svg ...>`, inside which every
/// start tag is closed by a matching end tag (or closes itself), with
/// nothing but white space around the root. Text, attribute values (which
/// may hold `>` inside quotes), comments, processing instructions and CDATA
/// sections are skipped.
fn check_svg(text: &str) -> Result<(), String> {
    let mut stack: Vec<&str> = Vec::new();
    let mut root: Option<&str> = None;
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        if stack.is_empty() && !rest[..open].trim().is_empty() {
            return Err(format!("text outside the root: {:?}", &rest[..open]));
        }
        rest = &rest[open..];
        let skip = |rest: &mut &str, start: &str, end: &str| -> Result<bool, String> {
            let Some(inner) = rest.strip_prefix(start) else {
                return Ok(false);
            };
            let close = inner
                .find(end)
                .ok_or_else(|| format!("`{start}` is never closed by `{end}`"))?;
            *rest = &inner[close + end.len()..];
            Ok(true)
        };
        if skip(&mut rest, "<?", "?>")? || skip(&mut rest, "<!--", "-->")? {
            continue;
        }
        if rest.starts_with("<![CDATA[") {
            if stack.is_empty() {
                return Err("CDATA outside the root".into());
            }
            skip(&mut rest, "<![CDATA[", "]]>")?;
            continue;
        }
        if rest.starts_with("<!") {
            if root.is_some() {
                return Err("a declaration after the root element".into());
            }
            skip(&mut rest, "<!", ">")?;
            continue;
        }
        // A tag: it ends at the first `>` outside a quoted attribute value.
        let mut quote = None;
        let end = rest
            .char_indices()
            .find(|&(_, c)| match quote {
                Some(q) if c == q => {
                    quote = None;
                    false
                }
                Some(_) => false,
                None if c == '"' || c == '\'' => {
                    quote = Some(c);
                    false
                }
                None => c == '>',
            })
            .map(|(i, _)| i)
            .ok_or_else(|| format!("unterminated tag: {:.40}", rest))?;
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let name = name.trim();
            match stack.pop() {
                Some(open) if open == name => {}
                Some(open) => return Err(format!("</{name}> closes <{open}>")),
                None => return Err(format!("</{name}> closes nothing")),
            }
            continue;
        }
        let name = tag
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or_default();
        if name.is_empty() {
            return Err(format!("a tag without a name: <{tag}>"));
        }
        if stack.is_empty() {
            if let Some(first) = root {
                return Err(format!("a second root element <{name}> after <{first}>"));
            }
            root = Some(name);
        }
        if !tag.ends_with('/') {
            stack.push(name);
        }
    }
    if !rest.trim().is_empty() {
        return Err(format!("text after the last tag: {rest:?}"));
    }
    if let Some(open) = stack.last() {
        return Err(format!("<{open}> is never closed"));
    }
    match root {
        Some("svg") => Ok(()),
        Some(other) => Err(format!("the root element is <{other}>, not <svg>")),
        None => Err("no root element".into()),
    }
}

/// Asserts that the file at `path` passes [`check_svg`].
fn assert_svg(path: &Path) {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if let Err(why) = check_svg(&text) {
        panic!("{} is not well-formed SVG: {why}", path.display());
    }
}

/// The SVG check of these tests accepts what a chart looks like and rejects
/// unbalanced tags, a wrong or second root, and stray text, so that a
/// broken chart cannot pass the demo test.
#[test]
fn the_svg_check_tells_well_formed_from_broken() {
    let good = r#"<?xml version="1.0" encoding="utf-8"?>
<!-- a chart -->
<svg width="10" height="10" xmlns="http://www.w3.org/2000/svg">
  <g font="a>b"><text x="1">p &lt; 5 ms</text><rect x="0"/></g>
  <![CDATA[ <not a tag> ]]>
</svg>
"#;
    assert_eq!(check_svg(good), Ok(()));
    for bad in [
        "",
        "<svg>",
        "<svg></g>",
        "<svg><g></svg>",
        "<svg></svg><svg></svg>",
        "<html></html>",
        "<svg></svg> trailing",
        "leading <svg></svg>",
        "<svg><g x=\"1></g></svg>",
        "<svg><!-- never closed </svg>",
    ] {
        assert!(check_svg(bad).is_err(), "accepted {bad:?}");
    }
}

/// `duokv demo --count 20 --interval 20ms` runs both modes and exits 0,
/// leaving in each mode's directory a `client.csv` of 20 successful writes
/// with IDs 1 to 20, event logs with an apply event on the master and
/// exactly one on the slave for each of them, a `run.json` of the right
/// mode, and three well-formed SVG charts; its report has every measure for
/// both runs and lists the charts; and `duokv stats --json` on the two
/// directories prints a document with both runs.
#[test]
fn demo_measures_both_modes_end_to_end() {
    const COUNT: u64 = 20;
    let out = tempfile::tempdir().expect("create a temporary dir");
    let demo = Background::spawn(Command::new(DUOKV).args([
        "demo",
        "--count",
        &COUNT.to_string(),
        "--interval",
        "20ms",
        "--out",
        arg(out.path()),
    ]));
    // Two pairs of servers started and stopped, and 2 x 20 writes 20 ms
    // apart: a few seconds, with room for a loaded machine.
    let report = success(&demo.wait(Duration::from_secs(45)));

    let ids: Vec<u64> = (1..=COUNT).collect();
    let mut dirs = Vec::new();
    for mode in ["sync", "async"] {
        let dir = out.path().join(mode);

        let rows = client_rows(&dir);
        assert_eq!(rows.len(), COUNT as usize, "{mode}: {rows:#?}");
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.error, "", "{mode}: write {i} failed: {row:?}");
            assert_eq!(row.write, i as u64, "{mode}: {row:?}");
            assert_eq!(row.value, format!("w-{i}"), "{mode}: {row:?}");
            assert!(
                row.commit_ns >= row.start_ns && row.latency_ns > 0,
                "{mode}: {row:?}"
            );
        }
        let write_ids: Vec<u64> = rows.iter().map(|r| r.write_id).collect();
        assert_eq!(write_ids, ids, "{mode}: the write IDs");

        let on_master: BTreeSet<u64> = applied_seqs(&dir.join("master-events.csv"))
            .into_iter()
            .collect();
        assert!(
            ids.iter().all(|id| on_master.contains(id)),
            "{mode}: the master applied {on_master:?}"
        );
        let mut on_slave = applied_seqs(&dir.join("slave-events.csv"));
        on_slave.sort_unstable();
        assert_eq!(on_slave, ids, "{mode}: the slave's apply events");

        assert_eq!(run_json(&dir)["mode"], mode, "{mode}: run.json");

        for chart in CHARTS {
            let path = dir.join(chart);
            assert_svg(&path);
            assert!(
                report
                    .lines()
                    .any(|l| l.trim() == path.display().to_string()),
                "the report does not list {}:\n{report}",
                path.display()
            );
        }

        let section = run_section(&report, &dir);
        assert!(
            section
                .iter()
                .any(|l| l.contains(&format!("mode      {mode},"))),
            "{mode}: {section:#?}"
        );
        for label in MEASURES {
            let (count, missing) = table_row(&section, label);
            assert_eq!(
                (count, missing),
                (COUNT as usize, 0),
                "{mode}: `{label}` (count, missing):\n{report}"
            );
        }
        dirs.push(dir);
    }

    let json = success(&duokv(&["stats", arg(&dirs[0]), arg(&dirs[1]), "--json"]));
    let doc: Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("stats --json: {e}\n{json}"));
    let runs = doc["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("no runs: {doc:#}"));
    assert_eq!(runs.len(), 2, "{doc:#}");
    assert_eq!(runs[0]["meta"]["mode"], "sync", "{doc:#}");
    assert_eq!(runs[1]["meta"]["mode"], "async", "{doc:#}");
    for run in runs {
        assert_eq!(run["latency"]["count"], COUNT, "{run:#}");
    }
}

/// A slave SIGKILLed halfway through an async bench, and not restarted,
/// does not stop the bench: every write still commits on the master and the
/// bench exits 0. `duokv stats` on the run then exits 0 and says how many
/// writes have no apply event on the slave, in the table's `missing` column
/// and in a note, consistently with the gathered slave log.
///
/// The run is short (8 writes, killed after 4) because the bench's reader
/// probe waits its full patience, 5 s, for every write the dead slave will
/// never show, one after the other (see the reply of this test's author).
#[test]
fn a_slave_killed_halfway_is_reported_missing() {
    const COUNT: u64 = 8;
    const KILL_AT: u64 = COUNT / 2;
    let mut pair = Pair::start(
        &["--fsync", "never", "--replication", "async"],
        &["--fsync", "never"],
    );
    pair.wait_link_up();
    let out = tempfile::tempdir().expect("create a temporary dir");
    let (master_log, slave_log) = (pair.master_events(), pair.slave_events());
    let bench = Background::spawn(Command::new(DUOKV).args([
        "bench",
        "--master",
        &pair.master.addr(),
        "--slave",
        &pair.slave.addr(),
        "--count",
        &COUNT.to_string(),
        "--interval",
        "100ms",
        "--out",
        arg(out.path()),
        "--master-events",
        arg(&master_log),
        "--slave-events",
        arg(&slave_log),
    ]));

    let mut slave = pair.slave.client();
    poll("the slave to apply half of the bench's writes", || {
        (last_seq(&mut slave) >= KILL_AT).then_some(())
    });
    pair.slave.sigkill();
    let on_master_at_kill = last_seq(&mut pair.master.client());
    assert!(
        on_master_at_kill < COUNT,
        "the bench was over before the slave was killed ({on_master_at_kill} writes)"
    );

    // Every write left once the slave is gone costs the reader probe its
    // patience (5 s), and gathering the slave's log waits 5 s for events
    // that never come.
    let timeout = Duration::from_secs(5 * (COUNT - KILL_AT) + 5 + 20);
    let summary = success(&bench.wait(timeout));
    assert!(
        summary.starts_with(&format!("{COUNT} writes (0 failed), async replication")),
        "{summary}"
    );

    let rows = client_rows(out.path());
    assert_eq!(rows.len(), COUNT as usize, "{rows:#?}");
    assert!(rows.iter().all(|r| r.error.is_empty()), "{rows:#?}");
    let ids: Vec<u64> = rows.iter().map(|r| r.write_id).collect();
    assert_eq!(ids, (1..=COUNT).collect::<Vec<_>>());
    let last = rows.last().expect("rows");
    assert_eq!(last.visible_ns, None, "the dead slave showed {last:?}");

    let slave_log = out.path().join("slave-events.csv");
    let on_slave: BTreeSet<u64> = applied_seqs(&slave_log).into_iter().collect();
    let missing = ids.iter().filter(|id| !on_slave.contains(id)).count();
    assert!(missing > 0, "the slave's log has every write: {on_slave:?}");
    // The two-clock staleness ends when the slave showed a write to its
    // readers: a write it applied but had not shown when it died is
    // missing there too.
    let shown: BTreeSet<u64> = event_seqs(&slave_log, "visible").into_iter().collect();
    assert!(shown.is_subset(&on_slave), "{shown:?} vs {on_slave:?}");
    let not_shown = ids.iter().filter(|id| !shown.contains(id)).count();

    let report = success(&duokv(&["stats", arg(out.path())]));
    let section = run_section(&report, out.path());
    for label in [
        "staleness, two clocks (raw)",
        "staleness, two clocks (clamped",
    ] {
        let (count, absent) = table_row(&section, label);
        assert_eq!(
            (count, absent),
            (COUNT as usize - not_shown, not_shown),
            "`{label}` (count, missing):\n{report}"
        );
    }
    assert!(
        report.contains("ends at the slave's `visible` events"),
        "{report}"
    );
    let note = format!(
        "{missing} of {COUNT} committed writes have no apply event on the slave: \
         the slave missed them"
    );
    assert!(report.contains(&note), "no note `{note}`:\n{report}");
}

/// An event log reaches the disk within its documented period ("flushes
/// at least every 100 ms", `src/event_log.rs`) even while events keep
/// coming closer together than that, as they do in any bench with an
/// interval under 100 ms: the first write's apply event must be in the file
/// while a writer is still putting a value every 20 ms. A replica that is
/// SIGKILLed loses at most the last 100 ms of its log, not all of it.
#[test]
fn event_logs_reach_the_disk_under_a_steady_stream_of_writes() {
    let logs = tempfile::tempdir().expect("create a temporary dir");
    let log = logs.path().join("events.csv");
    let server = ServerProcess::start(&["--fsync", "never", "--event-log", arg(&log)]);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = thread::spawn({
        let (addr, stop) = (server.addr(), stop.clone());
        move || {
            let mut client = common::client_builder(&addr).build();
            let mut done = 0u64;
            // Until told to stop, or until the server is gone (the test
            // failed and its guard killed it).
            while !stop.load(Ordering::SeqCst) && client.put("k", format!("v{done}")).is_ok() {
                done += 1;
                // The workload's pace, not a synchronisation: events 20 ms
                // apart, closer than the log's flush period.
                thread::sleep(Duration::from_millis(20));
            }
            done
        }
    });
    poll(
        "the first write's apply event to reach the event log on disk",
        || {
            let text = fs::read_to_string(&log).unwrap_or_default();
            text.lines()
                .any(|line| line.starts_with("applied,1,"))
                .then_some(())
        },
    );
    stop.store(true, Ordering::SeqCst);
    let done = writer.join().expect("the writer thread panicked");
    assert!(done >= 1, "no write was acknowledged");
}

/// Asserts that a clock probe's offset is `expected_ns` within its error
/// bound and [`SCHEDULING_NS`].
fn assert_offset(what: &str, offset_ns: i64, bound_ns: u64, expected_ns: i64) {
    let off_by = offset_ns.abs_diff(expected_ns);
    assert!(
        off_by <= bound_ns + SCHEDULING_NS,
        "{what}: offset {offset_ns} ns is {off_by} ns from {expected_ns} ns, \
         beyond the bound {bound_ns} ns + {SCHEDULING_NS} ns"
    );
}

/// The clock probe finds a server's known skew: a standalone server run
/// 1500 ms ahead (`--clock-offset-ms 1500`) is measured at +1500 ms, and a
/// normal one at 0, each within the probe's error bound (half its round
/// trip) plus 1 ms for scheduling.
#[test]
fn clock_probes_find_a_known_offset() {
    let shifted = ServerProcess::start(&["--fsync", "never", "--clock-offset-ms", "1500"]);
    let normal = ServerProcess::start(&["--fsync", "never"]);
    for (server, expected_ns) in [(&shifted, 1_500_000_000), (&normal, 0)] {
        let probe = probe_clock(&mut server.client())
            .unwrap_or_else(|e| panic!("probe {}: {}", server.addr(), duokv::error::chain(&e)));
        assert!(probe.rtt_ns > 0, "{probe:?}");
        assert_eq!(probe.error_bound_ns, probe.rtt_ns / 2, "{probe:?}");
        assert_offset(
            &format!("{} {probe:?}", server.addr()),
            probe.offset_ns,
            probe.error_bound_ns,
            expected_ns,
        );
    }
}

/// `duokv bench` against a sync pair whose slave runs 700 ms behind
/// (`--clock-offset-ms -700`) records that offset in `run.json`, before
/// and after the run, and `duokv stats` corrects it away: the two-clock
/// staleness is a few milliseconds, not hundreds. Since a max of the two
/// replicas' times hides a slave that seems early, each write's slave apply
/// time is also checked directly: corrected by the recorded offset it falls
/// inside the write's request (a sync write is applied on the slave before
/// it commits), where uncorrected it would be 700 ms before it.
#[test]
fn bench_and_stats_correct_a_skewed_slave_clock() {
    const SKEW_NS: i64 = -700_000_000;
    const COUNT: usize = 10;
    let pair = Pair::start(
        &["--fsync", "never"],
        &["--fsync", "never", "--clock-offset-ms", "-700"],
    );
    pair.wait_link_up();
    let out = tempfile::tempdir().expect("create a temporary dir");
    success(&duokv(&[
        "bench",
        "--master",
        &pair.master.addr(),
        "--slave",
        &pair.slave.addr(),
        "--count",
        &COUNT.to_string(),
        "--interval",
        "10ms",
        "--out",
        arg(out.path()),
        "--master-events",
        arg(&pair.master_events()),
        "--slave-events",
        arg(&pair.slave_events()),
    ]));

    let meta = run_json(out.path());
    assert_eq!(meta["mode"], "sync", "{meta:#}");
    for probe in ["before", "after"] {
        let at = |replica: &str, field: &str| {
            json_i64(&meta, &format!("/{replica}_clock/{probe}/{field}"))
        };
        let bound = |replica: &str| u64::try_from(at(replica, "error_bound_ns")).expect("bound");
        assert_offset(
            &format!("slave, {probe}"),
            at("slave", "offset_ns"),
            bound("slave"),
            SKEW_NS,
        );
        assert_offset(
            &format!("master, {probe}"),
            at("master", "offset_ns"),
            bound("master"),
            0,
        );
    }

    // Each write's slave apply time, moved onto the client's clock.
    let offset = json_i64(&meta, "/slave_clock/before/offset_ns");
    let bound = json_i64(&meta, "/slave_clock/before/error_bound_ns")
        .max(json_i64(&meta, "/slave_clock/after/error_bound_ns"));
    let slack = i128::from(bound) + i128::from(SCHEDULING_NS);
    let applied = applied_events(&out.path().join("slave-events.csv"));
    let rows = client_rows(out.path());
    assert_eq!(rows.len(), COUNT, "{rows:#?}");
    for row in &rows {
        assert_eq!(row.error, "", "{row:?}");
        let &(_, at) = applied
            .iter()
            .find(|(seq, _)| *seq == row.write_id)
            .unwrap_or_else(|| panic!("no apply event on the slave for {row:?}"));
        let corrected = i128::from(at) - i128::from(offset);
        let (start, commit) = (i128::from(row.start_ns), i128::from(row.commit_ns));
        assert!(
            start - slack <= corrected && corrected <= commit + slack,
            "write {}: applied on the slave at {corrected} (client clock), \
             outside its request {start}..{commit} ± {slack} ns",
            row.write_id
        );
    }

    let json = success(&duokv(&["stats", arg(out.path()), "--json", "--no-charts"]));
    let doc: Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("stats --json: {e}\n{json}"));
    let raw = &doc["runs"][0]["staleness_two_clocks_raw"];
    assert_eq!(raw["count"], COUNT, "{raw:#}");
    assert_eq!(raw["missing"], 0, "{raw:#}");
    let mean = raw["mean"]
        .as_f64()
        .unwrap_or_else(|| panic!("no mean: {raw:#}"));
    assert!(mean.abs() < 50.0, "corrected two-clock staleness {raw:#}");
}

/// Reads `DIR/probe.csv` by hand: the exact header, then `(write, outcome,
/// read_ns, saw_write)` per line.
fn probe_rows(dir: &Path) -> Vec<(u64, String, u64, bool)> {
    let path = dir.join("probe.csv");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("write,outcome,read_ns,saw_write"),
        "{}",
        path.display()
    );
    lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 4, "{}: {line}", path.display());
            let number = |i: usize| -> u64 {
                fields[i]
                    .parse()
                    .unwrap_or_else(|_| panic!("field {i} of {line:?} is not a number"))
            };
            assert!(matches!(fields[3], "0" | "1"), "{line}");
            (
                number(0),
                fields[1].to_string(),
                number(2),
                fields[3] == "1",
            )
        })
        .collect()
}

/// `duokv bench` with each `--probe-read` against an async pair, and
/// `duokv stats` on the runs:
///
/// - `after`: one read per write after its token; every read is answered
///   (at once or after waiting) and holds its write, and the stats share
///   them out and measure the slave's applied-to-visible gap for every
///   write;
/// - `fresh:1us`: a bound no slave can prove (its proof is at least a
///   probe's round trip old), so every read is refused as too stale after
///   its wait, and said so;
/// - `after` on the master (`--probe-addr`): a master shows what it
///   acknowledged, so every read is answered at once;
/// - `poll` (the default): no `probe.csv`, as before.
#[test]
fn bench_probe_reads_with_conditions_and_stats_share_them_out() {
    const COUNT: usize = 20;
    let pair = Pair::start(
        &["--fsync", "never", "--replication", "async"],
        &["--fsync", "never"],
    );
    pair.wait_link_up();
    let root = tempfile::tempdir().expect("create a temporary dir");
    let bench = |name: &str, count: usize, extra: &[&str]| {
        let out = root.path().join(name);
        let mut args = vec![
            "bench".to_string(),
            "--master".into(),
            pair.master.addr(),
            "--slave".into(),
            pair.slave.addr(),
            "--count".into(),
            count.to_string(),
            "--interval".into(),
            "5ms".into(),
            "--out".into(),
            arg(&out).into(),
            "--master-events".into(),
            arg(&pair.master_events()).into(),
            "--slave-events".into(),
            arg(&pair.slave_events()).into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        success(&duokv(&args));
        out
    };

    let after = bench("after", COUNT, &["--probe-read", "after"]);
    assert_eq!(run_json(&after)["probe_read"], "after");
    let rows = probe_rows(&after);
    assert_eq!(rows.len(), COUNT, "{rows:?}");
    for (i, (write, outcome, read_ns, saw)) in rows.iter().enumerate() {
        assert_eq!(*write, i as u64);
        assert!(matches!(outcome.as_str(), "at_once" | "waited"), "{rows:?}");
        assert!(*saw && *read_ns > 0, "{rows:?}");
    }
    let client = client_rows(&after);
    assert!(client.iter().all(|r| r.visible_ns.is_some()), "{client:#?}");
    let at_once = rows.iter().filter(|r| r.1 == "at_once").count();

    let report = success(&duokv(&["stats", arg(&after), "--no-charts"]));
    let expected = format!("reader probe, --probe-read after: {COUNT} reads");
    assert!(report.contains(&expected), "no `{expected}`:\n{report}");
    let json = success(&duokv(&["stats", arg(&after), "--json", "--no-charts"]));
    let doc: Value = serde_json::from_str(&json).expect("stats --json");
    let run = &doc["runs"][0];
    assert_eq!(run["slave_event"], "visible", "{run:#}");
    assert_eq!(run["probe"]["reads"], COUNT, "{run:#}");
    assert_eq!(run["probe"]["at_once_time"]["count"], at_once, "{run:#}");
    assert_eq!(run["probe"]["refused_share"], 0.0, "{run:#}");
    let gap = &run["slave_applied_to_visible"];
    assert_eq!(gap["count"], COUNT, "{gap:#}");
    assert!(gap["min"].as_f64() >= Some(0.0), "{gap:#}");

    let fresh = bench(
        "fresh",
        4,
        &["--probe-read", "fresh:1us", "--probe-patience", "20ms"],
    );
    let rows = probe_rows(&fresh);
    assert_eq!(rows.len(), 4, "{rows:?}");
    for (_, outcome, read_ns, saw) in &rows {
        assert_eq!(outcome, "too_stale", "{rows:?}");
        assert!(!saw && *read_ns >= 20_000_000, "{rows:?}");
    }
    let report = success(&duokv(&["stats", arg(&fresh), "--no-charts"]));
    assert!(
        report.contains("refused 4 (100.0%)") && report.contains("0 not yet visible, 4 too stale"),
        "{report}"
    );

    let master = bench(
        "master",
        5,
        &["--probe-read", "after", "--probe-addr", &pair.master.addr()],
    );
    let rows = probe_rows(&master);
    assert!(
        rows.len() == 5 && rows.iter().all(|r| r.1 == "at_once" && r.3),
        "{rows:?}"
    );

    let poll = bench("poll", 3, &[]);
    assert!(!poll.join("probe.csv").exists());
    assert_eq!(run_json(&poll)["probe_read"], "poll");
    let report = success(&duokv(&["stats", arg(&poll), "--no-charts"]));
    assert!(!report.contains("reader probe,"), "{report}");
}

/// `duokv bench --probe-read at:0,10ms` against an async pair: one plain
/// read of each write at 0 or 10 ms after its commit, alternately, in
/// `visibility.csv`, and `duokv stats` reports P(seen) per delay.
///
/// At 10 ms every on-time read sees its write: on loopback the slave shows
/// an async write (applied, then shown on the master's commit notice)
/// within a millisecond or so. Late reads (the probe's one connection
/// busy, or the machine loaded) are left out of the figures, not failed.
#[test]
fn bench_reads_at_fixed_delays_and_stats_reports_t_visibility() {
    const COUNT: u64 = 40;
    let pair = Pair::start(
        &["--fsync", "never", "--replication", "async"],
        &["--fsync", "never"],
    );
    pair.wait_link_up();
    let root = tempfile::tempdir().expect("create a temporary dir");
    let out = root.path().join("at");
    let count = COUNT.to_string();
    success(&duokv(&[
        "bench",
        "--master",
        &pair.master.addr(),
        "--slave",
        &pair.slave.addr(),
        "--count",
        &count,
        "--interval",
        "5ms",
        "--probe-read",
        "at:0,10ms",
        "--master-events",
        arg(&pair.master_events()),
        "--slave-events",
        arg(&pair.slave_events()),
        "--out",
        arg(&out),
    ]));
    assert_eq!(run_json(&out)["probe_read"], "at:0,10ms");
    assert!(!out.join("probe.csv").exists());

    let path = out.join("visibility.csv");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("write,delay_ns,offset_ns,read_ns,saw_write,late")
    );
    let mut late = [0u64; 2];
    let mut rows = 0;
    for (i, line) in lines.enumerate() {
        let fields: Vec<u64> = line
            .split(',')
            .map(|f| f.parse().unwrap_or_else(|_| panic!("{line}")))
            .collect();
        let [write, delay_ns, offset_ns, read_ns, saw, is_late] = fields[..] else {
            panic!("not six fields: {line}");
        };
        assert_eq!(write, i as u64, "{text}");
        let slot = (write % 2) as usize;
        assert_eq!(delay_ns, [0, 10_000_000][slot], "{line}");
        assert!(offset_ns >= delay_ns && read_ns > 0, "{line}");
        assert!(saw <= 1 && is_late <= 1, "{line}");
        // `late` is exactly the documented rule.
        let past = offset_ns > delay_ns + (delay_ns / 10).max(50_000);
        assert_eq!(is_late == 1, past, "{line}");
        late[slot] += is_late;
        rows += 1;
    }
    assert_eq!(rows, COUNT, "{text}");

    let json = success(&duokv(&["stats", arg(&out), "--json"]));
    let doc: Value = serde_json::from_str(&json).expect("stats --json");
    let points = doc["runs"][0]["visibility"]
        .as_array()
        .unwrap_or_else(|| panic!("no visibility: {doc:#}"));
    assert_eq!(points.len(), 2, "{points:#?}");
    let number = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("{v}"));
    let reads: u64 = points.iter().map(|p| number(&p["reads"])).sum();
    assert_eq!(reads, COUNT - late[0] - late[1], "{points:#?}");
    for (slot, point) in points.iter().enumerate() {
        assert_eq!(point["delay_ms"], [0.0, 10.0][slot], "{points:#?}");
        assert_eq!(number(&point["late"]), late[slot], "{points:#?}");
    }
    let ten = &points[1];
    assert!(
        number(&ten["reads"]) > 0,
        "every read at 10 ms late: {ten:#}"
    );
    assert_eq!(ten["p_seen"], 1.0, "{ten:#}");
    assert_eq!(ten["ci_high"], 1.0, "{ten:#}");
    assert!(out.join("visibility.svg").is_file());
    assert_svg(&out.join("visibility.svg"));
    let report = success(&duokv(&["stats", arg(&out), "--no-charts"]));
    assert!(report.contains("t-visibility (visibility.csv)"), "{report}");

    // The prediction from the event logs' phases, beside the measurement:
    // a share per measured delay in each model, rising with the delay,
    // and its curves drawn on the chart.
    let prediction = &doc["runs"][0]["prediction"];
    let shares = |model: &str| -> Vec<f64> {
        prediction["at_measured"][model]
            .as_array()
            .unwrap_or_else(|| panic!("no {model} prediction: {doc:#}"))
            .iter()
            .map(|v| v.as_f64().expect("a share"))
            .collect()
    };
    for model in ["independent", "joint"] {
        let shares = shares(model);
        assert_eq!(shares.len(), 2, "{prediction:#}");
        assert!(shares.iter().all(|p| (0.0..=1.0).contains(p)), "{shares:?}");
        assert!(shares[0] <= shares[1], "{model}: {shares:?}");
    }
    assert_eq!(
        number(&prediction["at_measured"]["writes"]),
        COUNT,
        "{prediction:#}"
    );
    assert!(
        report.contains("predicted t-visibility: 100000 draws"),
        "{report}"
    );
    let chart = fs::read_to_string(out.join("visibility.svg")).expect("the chart");
    assert!(
        chart.contains("predicted, phases independent (WARS)"),
        "{chart}"
    );
}
