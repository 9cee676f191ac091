//! End-to-end tests of the `duokv` command line against a real replica
//! (`duokv server`): what each subcommand prints on stdout or stderr and the
//! exit code it returns, an unreachable server, the auth token, and the
//! `--help` of the client and of `duokv server`.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};

use common::{Pair, ServerProcess, free_port, run_with_deadline, token_file};

/// Runs `duokv ARGS...` to completion.
fn duokv(args: &[&str]) -> Output {
    run_with_deadline(Command::new(env!("CARGO_BIN_EXE_duokv")).args(args))
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

/// Asserts success with exactly `expected` on stdout and nothing on stderr.
fn assert_prints(output: &Output, expected: &str) {
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(output), expected, "{output:?}");
    assert_eq!(stderr(output), "", "{output:?}");
}

/// Asserts failure with exactly `error: MESSAGE` on stderr and nothing on
/// stdout.
fn assert_fails_with(output: &Output, message: &str) {
    assert!(!output.status.success(), "{output:?}");
    assert_eq!(stderr(output), format!("error: {message}\n"), "{output:?}");
    assert_eq!(stdout(output), "", "{output:?}");
}

/// Asserts success and a receipt line
/// `ok seq=SEQ token=HISTORY_HEX:SEQ latency=F.FFFms`; returns the token.
fn assert_receipt(output: &Output, seq: u64) -> String {
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stderr(output), "", "{output:?}");
    let text = stdout(output);
    let (token, latency) = text
        .strip_prefix(&format!("ok seq={seq} token="))
        .and_then(|rest| rest.strip_suffix("ms\n"))
        .and_then(|rest| rest.split_once(" latency="))
        .unwrap_or_else(|| panic!("not a receipt line for seq {seq}: {text:?}"));
    let (history, token_seq) = token
        .split_once(':')
        .unwrap_or_else(|| panic!("token in {text:?}"));
    assert_eq!(history.len(), 16, "{text:?}");
    assert!(history.bytes().all(|b| b.is_ascii_hexdigit()), "{text:?}");
    assert_eq!(token_seq, seq.to_string(), "{text:?}");
    let ms: f64 = latency
        .parse()
        .unwrap_or_else(|_| panic!("latency in {text:?}"));
    assert!(ms >= 0.0, "{text:?}");
    token.to_string()
}

/// `put`, `get`, `create`, `update` and `delete` print a receipt line or the
/// value and exit 0; a create on an existing key, an update, delete or get
/// of a missing one print one `error: ...` line on stderr and exit non-zero;
/// and the server holds what the commands wrote.
#[test]
fn crud_subcommands_print_results_and_exit_codes() {
    let server = ServerProcess::start(&[]);
    let addr = server.addr();
    let addr = addr.as_str();

    assert_receipt(&duokv(&["put", "k", "v", "--addr", addr]), 1);
    assert_prints(&duokv(&["get", "k", "--addr", addr]), "v\n");
    assert_fails_with(
        &duokv(&["create", "k", "other", "--addr", addr]),
        "key already exists",
    );
    assert_receipt(&duokv(&["create", "k2", "v2", "--addr", addr]), 2);
    assert_fails_with(
        &duokv(&["update", "missing", "x", "--addr", addr]),
        "key not found",
    );
    assert_receipt(&duokv(&["update", "k", "v-new", "--addr", addr]), 3);
    assert_fails_with(
        &duokv(&["delete", "missing", "--addr", addr]),
        "key not found",
    );
    assert_receipt(&duokv(&["delete", "k2", "--addr", addr]), 4);
    assert_fails_with(&duokv(&["get", "k2", "--addr", addr]), "key not found");
    assert_receipt(
        &duokv(&["put", "spaced key", "hello world", "--addr", addr]),
        5,
    );
    assert_prints(
        &duokv(&["get", "spaced key", "--addr", addr]),
        "hello world\n",
    );

    let mut client = server.client();
    assert_eq!(client.read("k").unwrap(), Some(b"v-new".to_vec()));
    assert_eq!(client.read("k2").unwrap(), None);
}

/// `ping` prints `pong from ADDR...` and `info` prints `name: value` lines
/// including `role: standalone` and the `last_seq`.
#[test]
fn ping_and_info_describe_the_server() {
    let server = ServerProcess::start(&[]);
    let addr = server.addr();
    server.client().put("k", "v").unwrap();

    let ping = duokv(&["ping", "--addr", &addr]);
    assert!(ping.status.success(), "{ping:?}");
    let text = stdout(&ping);
    assert!(text.starts_with(&format!("pong from {addr}")), "{text:?}");
    assert_eq!(text.lines().count(), 1, "{text:?}");

    let info = duokv(&["info", "--addr", &addr]);
    assert!(info.status.success(), "{info:?}");
    let text = stdout(&info);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"role: standalone"), "{text:?}");
    assert!(lines.contains(&"last_seq: 1"), "{text:?}");
    for line in &lines {
        assert!(
            line.split_once(": ").is_some(),
            "not `name: value`: {line:?}"
        );
    }
}

/// Every subcommand against a port with nothing listening prints
/// `error: cannot connect to ADDR...` and exits non-zero.
#[test]
fn unreachable_server_is_an_error() {
    let addr = format!("127.0.0.1:{}", free_port());
    let commands: [&[&str]; 7] = [
        &["get", "k"],
        &["create", "k", "v"],
        &["update", "k", "v"],
        &["put", "k", "v"],
        &["delete", "k"],
        &["ping"],
        &["info"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.extend(["--addr", &addr]);
        let output = duokv(&args);
        assert!(!output.status.success(), "{args:?}: {output:?}");
        assert!(
            stderr(&output).starts_with(&format!("error: cannot connect to {addr}")),
            "{args:?}: {output:?}"
        );
        assert_eq!(stdout(&output), "", "{args:?}");
    }
}

/// `duokv server --help` and `duokv --help` exit 0 and name every flag and
/// subcommand; each client subcommand's help names `--addr`.
#[test]
fn help_names_every_flag_and_subcommand() {
    let output = duokv(&["server", "--help"]);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    for flag in [
        "--listen",
        "--data-dir",
        "--fsync",
        "--max-connections",
        "--idle-timeout",
        "--drain-timeout",
    ] {
        assert!(
            text.contains(flag),
            "duokv server --help does not mention {flag}:\n{text}"
        );
    }

    let output = duokv(&["--help"]);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    assert!(
        text.lines()
            .any(|line| line.trim_start().starts_with("server ")),
        "duokv --help does not list server:\n{text}"
    );
    let subcommands = [
        "get",
        "create",
        "update",
        "put",
        "delete",
        "ping",
        "info",
        "replay-discarded",
    ];
    for subcommand in subcommands {
        assert!(
            text.lines()
                .any(|line| line.trim_start().starts_with(&format!("{subcommand} "))),
            "duokv --help does not list {subcommand}:\n{text}"
        );
        let output = duokv(&[subcommand, "--help"]);
        assert!(output.status.success(), "{output:?}");
        assert!(
            stdout(&output).contains("--addr"),
            "duokv {subcommand} --help: {output:?}"
        );
    }
}

#[test]
fn the_cli_reads_the_token_from_a_flag_or_the_environment() {
    let (_dir, path) = token_file("cli-token");
    let file = path.display().to_string();
    let server = ServerProcess::start(&["--auth-token-file", &file]);
    let duokv = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_duokv"));
        command.env_remove("DUOKV_AUTH_TOKEN_FILE");
        command
    };
    let out = run_with_deadline(duokv().args([
        "--auth-token-file",
        &file,
        "put",
        "k",
        "v",
        "--addr",
        &server.addr(),
    ]));
    assert!(out.status.success(), "{out:?}");
    let out = run_with_deadline(duokv().env("DUOKV_AUTH_TOKEN_FILE", &path).args([
        "get",
        "k",
        "--addr",
        &server.addr(),
    ]));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v");
    let out = run_with_deadline(duokv().args(["get", "k", "--addr", &server.addr()]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused the auth token"), "{stderr}");
}

/// Damage in synced data (a flipped byte in the fourth of six writes): the
/// replica refuses to start and names `duokv repair`; the dry run reports
/// the damage, exits 1 and changes nothing; `--fix` cuts at the damaged
/// batch, keeping the cut bytes in the backup directory byte for byte; the
/// replica then starts and serves the three writes before the damage, and
/// while it runs the repair tool leaves its store alone.
#[test]
fn repair_reports_then_cuts_damage_in_synced_data() {
    let dir = tempfile::tempdir().expect("a temporary dir");
    let data = dir.path().join("data");
    let segment = common::write_keys_then_stop(&data, 6);
    let original = std::fs::read(&segment).expect("read the segment");
    let at = original
        .windows(4)
        .position(|w| w == b"key4")
        .expect("the fourth key in the log");
    let mut damaged = original.clone();
    damaged[at] ^= 0xff;
    std::fs::write(&segment, &damaged).expect("damage the segment");

    let data_arg = data.display().to_string();
    let refused = duokv(&["server", "--listen", "127.0.0.1:0", "--data-dir", &data_arg]);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        stderr(&refused).contains(&format!("duokv repair {data_arg}")),
        "{refused:?}"
    );

    let dry = duokv(&["repair", &data_arg]);
    assert_eq!(dry.status.code(), Some(1), "{dry:?}");
    let report = stdout(&dry);
    assert!(report.contains("1 damaged"), "{report}");
    assert!(report.contains("dry run, nothing changed"), "{report}");
    assert_eq!(std::fs::read(&segment).expect("read"), damaged);

    let backup = dir.path().join("backup");
    let fixed = duokv(&[
        "repair",
        &data_arg,
        "--fix",
        "--backup-dir",
        &backup.display().to_string(),
    ]);
    assert!(fixed.status.success(), "{fixed:?}");
    let kept = std::fs::read(&segment).expect("read the cut segment");
    assert!(kept.len() < at, "cut at the damaged batch: {fixed:?}");
    let cut: Vec<_> = std::fs::read_dir(&backup)
        .expect("the backup dir")
        .map(|entry| std::fs::read(entry.expect("an entry").path()).expect("read"))
        .collect();
    assert_eq!(cut, vec![damaged[kept.len()..].to_vec()], "the backup");

    let server = ServerProcess::start_in(&data, &[]);
    let mut client = server.client();
    for i in 1..=3 {
        let value = client.read(format!("key{i}")).expect("read");
        assert_eq!(value, Some(format!("value{i}").into_bytes()));
    }
    assert_eq!(client.read("key4").expect("read"), None);
    drop(client);
    // A running replica's store is not the repair tool's to touch.
    let busy = duokv(&["repair", &data_arg]);
    assert_eq!(busy.status.code(), Some(6), "{busy:?}");
    assert!(stderr(&busy).contains("stop the replica"), "{busy:?}");
    drop(server);
    assert!(stdout(&duokv(&["repair", &data_arg])).contains("no damage"));
}

/// `put` on the master prints the write's token; `get --after` with it on
/// the slave prints the value, and with a token of another history fails
/// with "unknown history" at once.
#[test]
fn get_after_a_put_token_reads_the_write_on_the_slave() {
    let pair = Pair::start(&["--replication", "async"], &[]);
    pair.wait_link_up();
    let (master, slave) = (pair.master.addr(), pair.slave.addr());
    let token = assert_receipt(&duokv(&["put", "k", "v", "--addr", &master]), 1);
    assert_prints(
        &duokv(&[
            "get", "k", "--after", &token, "--wait", "5s", "--addr", &slave,
        ]),
        "v\n",
    );
    let output = duokv(&[
        "get",
        "k",
        "--after",
        "123456789abcdef0:1",
        "--wait",
        "100ms",
        "--addr",
        &slave,
    ]);
    assert!(!output.status.success(), "{output:?}");
    assert!(
        stderr(&output).starts_with("error: unknown history: "),
        "{output:?}"
    );
    let output = duokv(&["get", "k", "--after", "not-a-token", "--addr", &slave]);
    assert!(!output.status.success(), "{output:?}");
}

/// `get --max-staleness` on a standalone server (whose data is the newest
/// there is) prints the value at once; a bound the wire cannot carry fails
/// before anything is sent, even with no server to send it to.
#[test]
fn get_with_max_staleness_answers_on_a_standalone_server() {
    let server = ServerProcess::start(&[]);
    let addr = server.addr();
    assert_receipt(&duokv(&["put", "k", "v", "--addr", &addr]), 1);
    let started = std::time::Instant::now();
    assert_prints(
        &duokv(&[
            "get",
            "k",
            "--max-staleness",
            "5ms",
            "--wait",
            "5s",
            "--addr",
            &addr,
        ]),
        "v\n",
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "the standalone server waited: {:?}",
        started.elapsed()
    );
    let nobody = format!("127.0.0.1:{}", free_port());
    let output = duokv(&["get", "k", "--max-staleness", "0ms", "--addr", &nobody]);
    assert!(!output.status.success(), "{output:?}");
    assert!(
        stderr(&output).starts_with("error: bad request: a max staleness of 0ns is out of range"),
        "{output:?}"
    );
}

/// `duokv replay-discarded FILE --addr MASTER`: a dry run prints what it
/// would send and changes nothing; the real run sends each saved write,
/// oldest first, as an ordinary write (new seqs), any bytes intact, and
/// skips a delete of a key the master does not hold. A file that is not a
/// discarded-writes file is refused before anything is sent.
#[test]
fn replay_discarded_sends_the_saved_writes_as_ordinary_writes() {
    use duokv::discarded_writes;
    use duokv::storage::{Op, Record};

    let server = ServerProcess::start(&[]);
    let addr = server.addr();
    assert_receipt(&duokv(&["put", "kept", "before", "--addr", &addr]), 1);
    let dir = tempfile::tempdir().unwrap();
    let records = [
        (
            6,
            Op::Put {
                key: b"a".to_vec(),
                value: b"one".to_vec(),
            },
        ),
        (
            7,
            Op::Put {
                key: b"b,\n".to_vec(),
                value: vec![0, 255],
            },
        ),
        (
            8,
            Op::Delete {
                key: b"kept".to_vec(),
            },
        ),
        (
            9,
            Op::Delete {
                key: b"never".to_vec(),
            },
        ),
    ];
    let rows = records.iter().map(|(seq, op)| {
        Ok((
            Record {
                seq: *seq,
                op: op.clone(),
            },
            Some(1_000 + seq),
        ))
    });
    let name = discarded_writes::file_name(0xabc, 6, 9, 0);
    let file = discarded_writes::save(dir.path(), &name, rows)
        .unwrap()
        .path;
    let file = file.to_str().unwrap();

    let dry = duokv(&["replay-discarded", file, "--addr", &addr, "--dry-run"]);
    assert_prints(
        &dry,
        &format!(
            "would put a (3 bytes), was seq 6\n\
             would put 0x622c0a (2 bytes), was seq 7\n\
             would delete kept, was seq 8\n\
             would delete never, was seq 9\n\
             dry run: 4 writes of {file} would be sent to {addr}; nothing sent\n"
        ),
    );
    let mut client = server.client();
    assert_eq!(client.read("a").unwrap(), None);

    let real = duokv(&["replay-discarded", file, "--addr", &addr]);
    assert_prints(
        &real,
        &format!(
            "put a (3 bytes), was seq 6: ok, seq 2 on {addr}\n\
             put 0x622c0a (2 bytes), was seq 7: ok, seq 3 on {addr}\n\
             delete kept, was seq 8: ok, seq 4 on {addr}\n\
             delete never, was seq 9: skipped, {addr} does not hold the key\n\
             replayed 3 writes of {file} on {addr} (1 deletes skipped)\n"
        ),
    );
    assert_eq!(client.read("a").unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(client.read(b"b,\n").unwrap(), Some(vec![0, 255]));
    assert_eq!(client.read("kept").unwrap(), None);

    let bad = dir.path().join("not-discarded.csv");
    std::fs::write(&bad, "seq,op,key,value\n").unwrap();
    let output = duokv(&["replay-discarded", bad.to_str().unwrap(), "--addr", &addr]);
    assert!(!output.status.success(), "{output:?}");
    assert!(stderr(&output).contains("the header is not"), "{output:?}");
    assert_eq!(stdout(&output), "");
}

/// The exit code of a finished `duokv` run.
fn code(output: &Output) -> i32 {
    output
        .status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {output:?}"))
}

/// Each kind of outcome has its own exit code, as `duokv --help` lists
/// them: 1 not found, 2 usage, 3 refused by the server, 4 unknown outcome
/// (a sync write its slave did not confirm; a connection that broke after
/// the request went out), 5 cannot connect, 6 another failure.
#[test]
fn exit_codes_tell_the_outcomes_apart() {
    let pair = Pair::start(&["--replication", "sync", "--sync-timeout", "200ms"], &[]);
    pair.wait_link_up();
    let (master, slave) = (pair.master.addr(), pair.slave.addr());
    assert_receipt(&duokv(&["put", "k", "v", "--addr", &master]), 1);

    let missing = duokv(&["get", "nope", "--addr", &master]);
    assert_eq!(code(&missing), 1, "{missing:?}");
    let bad_flag = duokv(&["get", "k", "--adr", &master]);
    assert_eq!(code(&bad_flag), 2, "{bad_flag:?}");
    assert!(stderr(&bad_flag).starts_with("error: "), "{bad_flag:?}");
    let exists = duokv(&["create", "k", "v", "--addr", &master]);
    assert_eq!(code(&exists), 3, "{exists:?}");
    let not_master = duokv(&["put", "k", "v", "--addr", &slave]);
    assert_eq!(code(&not_master), 3, "{not_master:?}");
    assert!(
        stderr(&not_master).starts_with(&format!("error: not the master: send writes to {master}")),
        "{not_master:?}"
    );
    let nobody = format!("127.0.0.1:{}", free_port());
    let unreachable = duokv(&["put", "k", "v", "--addr", &nobody]);
    assert_eq!(code(&unreachable), 5, "{unreachable:?}");
    let no_run = duokv(&["stats", "/nonexistent/run"]);
    assert_eq!(code(&no_run), 6, "{no_run:?}");
    assert_fails_with(
        &no_run,
        "/nonexistent/run: no such directory: give a run directory of `duokv bench` or `duokv demo`",
    );

    // A listener that takes the connection and closes it unanswered.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = listener.local_addr().unwrap().to_string();
    let closer = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0; 16];
        let _ = std::io::Read::read(&mut stream, &mut buf);
    });
    let broken = duokv(&["put", "k", "v", "--addr", &silent]);
    closer.join().unwrap();
    assert_eq!(code(&broken), 4, "{broken:?}");

    // The slave gone, a sync write is durable on the master only.
    let mut pair = pair;
    pair.slave.sigkill();
    let unconfirmed = duokv(&["put", "k", "v2", "--addr", &master]);
    assert_eq!(code(&unconfirmed), 4, "{unconfirmed:?}");
    assert!(
        stderr(&unconfirmed).starts_with("error: replica unavailable"),
        "{unconfirmed:?}"
    );
    let help = stdout(&duokv(&["--help"]));
    for line in [
        "  1 not found",
        "  2 usage",
        "  3 refused by the server",
        "  4 unknown outcome",
        "  5 cannot connect",
        "  6 other failure",
        "  130 interrupted by Ctrl-C",
    ] {
        assert!(help.contains(line), "{line:?} not in duokv --help:\n{help}");
    }
}

/// `-h` is `--help`, for the client and for `duokv server`; the client's
/// `--auth-token-file` may follow the subcommand; a bad token file names
/// where it came from; `duokv stats` without a directory says what to give.
#[test]
fn help_token_and_stats_messages() {
    for args in [&["-h"][..], &["put", "-h"], &["server", "-h"]] {
        let output = duokv(args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        assert!(
            stdout(&output).starts_with("Usage: "),
            "{args:?}: {output:?}"
        );
    }

    let (_dir, path) = token_file("cli-token-after");
    let file = path.display().to_string();
    let server = ServerProcess::start(&["--auth-token-file", &file]);
    let addr = server.addr();
    let out = run_with_deadline(
        Command::new(env!("CARGO_BIN_EXE_duokv"))
            .env_remove("DUOKV_AUTH_TOKEN_FILE")
            .args(["put", "a", "b", "--addr", &addr, "--auth-token-file", &file]),
    );
    assert_receipt(&out, 1);

    let out = run_with_deadline(
        Command::new(env!("CARGO_BIN_EXE_duokv"))
            .env("DUOKV_AUTH_TOKEN_FILE", "/nonexistent/token")
            .args(["get", "a", "--addr", &addr]),
    );
    assert_eq!(code(&out), 2, "{out:?}");
    assert!(
        stderr(&out).starts_with(
            "error: bad auth token file from $DUOKV_AUTH_TOKEN_FILE: cannot use /nonexistent/token"
        ),
        "{out:?}"
    );

    let out = duokv(&["stats"]);
    assert_eq!(code(&out), 2, "{out:?}");
    assert!(
        stderr(&out).starts_with("error: no run directory given: duokv stats DIR..."),
        "{out:?}"
    );
}

/// A 1 MiB value, too large for a command line, goes in with
/// `--value-file` (a file, or `-` for stdin) and comes back byte for byte.
#[test]
fn values_from_a_file_or_stdin() {
    let server = ServerProcess::start(&[]);
    let addr = server.addr();
    let dir = tempfile::tempdir().unwrap();
    let value: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let file = dir.path().join("value.bin");
    std::fs::write(&file, &value).unwrap();
    let file = file.display().to_string();

    assert_receipt(
        &duokv(&["put", "big", "--value-file", &file, "--addr", &addr]),
        1,
    );
    assert_eq!(server.client().read("big").unwrap(), Some(value.clone()));
    assert_receipt(
        &duokv(&["create", "big2", "--value-file", &file, "--addr", &addr]),
        2,
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_duokv"))
        .args(["update", "big", "--value-file", "-", "--addr", &addr])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reversed: Vec<u8> = value.iter().rev().copied().collect();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &reversed).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_receipt(&out, 3);
    assert_eq!(server.client().read("big").unwrap(), Some(reversed));

    let both = duokv(&["put", "k", "v", "--value-file", &file, "--addr", &addr]);
    assert_eq!(code(&both), 2, "{both:?}");
    let neither = duokv(&["put", "k", "--addr", &addr]);
    assert_eq!(code(&neither), 2, "{neither:?}");
}

/// Flags out of range are refused before anything runs, naming the flag
/// and what it takes; a load whose every operation fails (writes sent to a
/// slave) prints its report, then fails with the first error.
#[test]
fn numeric_flags_are_checked_and_a_failed_load_fails() {
    let nobody = format!("127.0.0.1:{}", free_port());
    let refused: [(&[&str], &str); 9] = [
        (&["load", "--clients", "0"], "--clients 0: give at least 1"),
        (
            &["load", "--writes", "2"],
            "--writes 2: give a share of the operations from 0.0 to 1.0",
        ),
        (&["load", "--writes", "-0.5"], "--writes -0.5: give a share"),
        (&["load", "--keys", "0"], "--keys 0: give at least 1"),
        (
            &["load", "--duration", "0s"],
            "--duration 0: give a time above 0",
        ),
        (
            &["bench", "--count", "0"],
            "--count 0: give at least 1 update",
        ),
        (
            &["bench", "--interval", "0s"],
            "--interval 0: give a time above 0",
        ),
        (
            &["demo", "--count", "0"],
            "--count 0: give at least 1 update",
        ),
        (
            &["demo", "--fsync", "sometimes"],
            "--fsync sometimes: use always, never or every:MS",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (args, message) in refused {
        let mut args = args.to_vec();
        match args[0] {
            "load" => args.extend(["--addr", &nobody]),
            "bench" => args.extend(["--master", &nobody, "--slave", &nobody]),
            _ => {}
        }
        let out_dir = dir.path().join("out").display().to_string();
        if args[0] != "load" {
            args.extend(["--out", &out_dir]);
        }
        let output = duokv(&args);
        assert_eq!(code(&output), 2, "{args:?}: {output:?}");
        assert!(
            stderr(&output).starts_with(&format!("error: {message}")),
            "{args:?}: {output:?}"
        );
        assert!(!dir.path().join("out").exists(), "{args:?} started a run");
    }

    let pair = Pair::start(&["--replication", "async"], &[]);
    pair.wait_link_up();
    let output = duokv(&[
        "load",
        "--addr",
        &pair.slave.addr(),
        "--clients",
        "2",
        "--duration",
        "200ms",
    ]);
    assert_eq!(code(&output), 6, "{output:?}");
    assert!(
        stdout(&output).contains("throughput: 0 ops/s"),
        "{output:?}"
    );
    let error = stderr(&output);
    assert!(
        error.contains("operations failed; the first: not the master: send writes to"),
        "{output:?}"
    );
}

/// A run directory holds one run: `duokv bench --out` on a directory that
/// holds a previous run is refused (exit 2, naming it) and left as it was.
#[test]
fn bench_refuses_a_run_directory_that_holds_a_run() {
    let pair = Pair::start(&["--replication", "async"], &[]);
    pair.wait_link_up();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let out_arg = out.display().to_string();
    let (master, slave) = (pair.master.addr(), pair.slave.addr());
    let bench = |count: &str| {
        duokv(&[
            "bench",
            "--master",
            &master,
            "--slave",
            &slave,
            "--count",
            count,
            "--interval",
            "10ms",
            "--out",
            &out_arg,
        ])
    };
    let first = bench("2");
    assert!(first.status.success(), "{first:?}");
    assert!(
        stdout(&first).starts_with("2 writes (0 failed), async replication"),
        "{first:?}"
    );
    let client_csv = std::fs::read(out.join("client.csv")).unwrap();
    let again = bench("1");
    assert_eq!(code(&again), 2, "{again:?}");
    assert!(
        stderr(&again).starts_with(&format!("error: {out_arg} already holds a run (run.json)")),
        "{again:?}"
    );
    assert_eq!(std::fs::read(out.join("client.csv")).unwrap(), client_csv);
}

/// Ctrl-C (SIGINT) during `duokv demo` stops it: the report of what was
/// measured on stdout, `error: interrupted by Ctrl-C`, exit 130, and no
/// replica left running.
#[test]
fn ctrl_c_ends_the_demo_with_130() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_duokv"))
        .args([
            "demo",
            "--count",
            "1000",
            "--interval",
            "10ms",
            "--fsync",
            "never",
        ])
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    // Interrupt once the workload has committed writes.
    common::poll("the demo's first writes", || {
        std::fs::read_to_string(&err_path)
            .ok()
            .filter(|text| text.contains("write 100/1000"))
    });
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let deadline = std::time::Instant::now() + common::DEADLINE * 3;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not stop on SIGINT");
        }
        std::thread::sleep(common::POLL);
    };
    let mut report = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut report).unwrap();
    let errors = std::fs::read_to_string(&err_path).unwrap();
    assert_eq!(status.code(), Some(130), "{errors}");
    assert!(
        errors.ends_with("error: interrupted by Ctrl-C\n"),
        "{errors}"
    );
    assert!(report.contains("latency"), "{report}");
    // Both replicas stopped gracefully: their logs say so.
    let log = std::fs::read_to_string(out.join("sync/master.log")).unwrap();
    assert!(!log.is_empty());
}

/// `duokv certs` makes an authority and a certificate per node; a pair
/// started with them speaks TLS only, the CLI reaches it with `--tls-ca`
/// (before or after the subcommand) and is refused in clear (exit 5); and
/// `duokv demo --tls` runs the workload through TLS.
#[test]
fn certs_make_a_tls_pair_the_cli_and_the_demo_reach() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let made = duokv(&[
        "certs",
        "--out",
        &certs.display().to_string(),
        "--node",
        "master=127.0.0.1",
        "--node",
        "slave=127.0.0.1,localhost",
    ]);
    assert!(made.status.success(), "{made:?}");
    let file = |name: &str| certs.join(name).display().to_string();
    let flags = |node: &str| {
        vec![
            "--tls-cert".to_string(),
            file(&format!("{node}.pem")),
            "--tls-key".to_string(),
            file(&format!("{node}-key.pem")),
            "--tls-ca".to_string(),
            file("ca.pem"),
        ]
    };
    let (master, slave) = (flags("master"), flags("slave"));
    let pair = Pair::start(
        &master.iter().map(String::as_str).collect::<Vec<_>>(),
        &slave.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let ca = file("ca.pem");
    let addr = pair.master.addr();
    assert_receipt(
        &duokv(&["--tls-ca", &ca, "put", "k", "v", "--addr", &addr]),
        1,
    );
    let slave_addr = pair.slave.addr();
    let read = || duokv(&["get", "k", "--addr", &slave_addr, "--tls-ca", &ca]);
    common::poll("the slave to show the write through TLS", || {
        read().status.success().then_some(())
    });
    assert_prints(&read(), "v\n");
    let in_clear = duokv(&["get", "k", "--addr", &addr]);
    assert_eq!(code(&in_clear), 5, "{in_clear:?}");
    assert!(
        stderr(&in_clear).contains("speaks TLS only"),
        "{in_clear:?}"
    );
    // A second authority in the same place is refused, not overwritten.
    let again = duokv(&[
        "certs",
        "--out",
        &certs.display().to_string(),
        "--node",
        "x=a",
    ]);
    assert_eq!(code(&again), 2, "{again:?}");
    assert!(stderr(&again).contains("already exists"), "{again:?}");

    let out = dir.path().join("demo");
    let demo = duokv(&[
        "demo",
        "--tls",
        "--count",
        "3",
        "--interval",
        "10ms",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(demo.status.success(), "{demo:?}");
    let log = std::fs::read_to_string(out.join("sync").join("master.log")).unwrap();
    assert!(log.contains("TLS only"), "{log}");
    assert!(log.contains("up (TLS)"), "{log}");
}
