//! The kill storm: eight clients write through a sync master with
//! `--fsync always` while the master (in one test) or the slave (in the
//! other) is SIGKILLed and restarted again and again at random moments.
//! Afterwards every write a client saw acknowledged is on both replicas,
//! and the two replicas hold identical contents.
//!
//! CI runs a short storm (3 kills); `DUOKV_KILLS=100` runs the long form.

mod common;
mod linearizability;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::pki::Pki;
use common::{Pair, last_seq, poll};
use duokv::Client;
use duokv::tls::ClientTls;

const WRITERS: usize = 8;

/// Kills per storm: 3, or `DUOKV_KILLS`.
fn kills() -> usize {
    std::env::var("DUOKV_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3)
}

/// What the writers saw: for every key they tried, whether the write was
/// acknowledged. Each key is written once, with its own name as the value.
type Outcomes = Arc<Mutex<BTreeMap<String, bool>>>;

fn start_writers(
    addr: &str,
    stop: &Arc<AtomicBool>,
    outcomes: &Outcomes,
    tls: Option<&ClientTls>,
) -> Vec<thread::JoinHandle<()>> {
    (0..WRITERS)
        .map(|w| {
            let (addr, stop, outcomes) = (addr.to_string(), stop.clone(), outcomes.clone());
            let tls = tls.cloned();
            thread::spawn(move || {
                let mut client = Client::builder(addr)
                    .tls(tls)
                    .connect_timeout(Duration::from_millis(500))
                    .read_timeout(Duration::from_secs(5))
                    .build();
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let key = format!("w{w}-{n}");
                    n += 1;
                    // An error (master down, replica unavailable, timeout)
                    // is an unknown outcome: the write may have landed.
                    let acked = client.put(&key, &key).is_ok();
                    outcomes.lock().unwrap().insert(key, acked);
                    if !acked {
                        // Let the master come back rather than spin on
                        // refused connections; the pace is the workload's.
                        thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        })
        .collect()
}

/// A sync master and its slave, both syncing every write, linked;
/// through TLS with `pki`'s certificates when given.
fn sync_pair(pki: Option<&Pki>) -> Pair {
    let mut master_args: Vec<String> = ["--replication", "sync", "--sync-timeout", "1s"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut slave_args = Vec::new();
    for args in [&mut master_args, &mut slave_args] {
        args.extend(["--fsync".to_string(), "always".to_string()]);
    }
    if let Some(pki) = pki {
        master_args.extend(pki.server_flags("master"));
        slave_args.extend(pki.server_flags("slave"));
    }
    let mut pair = Pair::start(
        &master_args.iter().map(String::as_str).collect::<Vec<_>>(),
        &slave_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    if let Some(pki) = pki {
        pair.master.use_tls(pki.client());
        pair.slave.use_tls(pki.client());
    }
    pair.wait_link_up();
    pair
}

/// SIGKILLs the master (or the slave) at a random moment 100 to 400 ms
/// apart, `kills()` times, restarting it and waiting for the link each
/// time; `after_each` runs after every restart with the kill's number.
fn kill_repeatedly(pair: &mut Pair, victim: &str, seed: u64, mut after_each: impl FnMut(usize)) {
    let mut rng = fastrand::Rng::with_seed(seed ^ kills() as u64);
    for kill in 0..kills() {
        // The fault schedule: a random moment 100 to 400 ms into the work.
        thread::sleep(Duration::from_millis(rng.u64(100..400)));
        let server = if victim == "master" {
            &mut pair.master
        } else {
            &mut pair.slave
        };
        server.sigkill();
        server.restart();
        pair.wait_link_up();
        after_each(kill);
    }
}

/// Runs the storm against `victim` ("master" or "slave") and checks the
/// outcome; through TLS with `pki`'s certificates when given.
fn storm(victim: &str, pki: Option<&Pki>) {
    let mut pair = sync_pair(pki);
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Outcomes = Arc::default();
    let client_tls = pki.map(Pki::client);
    let writers = start_writers(&pair.master.addr(), &stop, &outcomes, client_tls.as_ref());
    kill_repeatedly(&mut pair, victim, 0x9E37_79B9_7F4A_7C15, |kill| {
        let acked = outcomes.lock().unwrap().values().filter(|a| **a).count();
        eprintln!(
            "kill {} of the {victim}: {acked} writes acknowledged so far",
            kill + 1
        );
    });
    // Some acknowledged writes after the last restart, then stop.
    let before = outcomes.lock().unwrap().len();
    poll("writes after the last restart", || {
        (outcomes.lock().unwrap().len() > before + 50).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().expect("writer thread");
    }

    let mut master = pair.master.client();
    let mut slave = pair.slave.client();
    poll("the slave to catch up", || {
        let seq = last_seq(&mut master);
        (last_seq(&mut slave) == seq).then_some(())
    });
    let outcomes = outcomes.lock().unwrap();
    let (mut acked, mut unknown_landed) = (0, 0);
    for (key, was_acked) in outcomes.iter() {
        let on_master = master.read(key).expect("read the master");
        let on_slave = slave.read(key).expect("read the slave");
        assert_eq!(on_master, on_slave, "{key}: the replicas differ");
        if *was_acked {
            acked += 1;
            assert_eq!(
                on_master.as_deref(),
                Some(key.as_bytes()),
                "{key}: acknowledged, then lost"
            );
        } else if on_master.is_some() {
            unknown_landed += 1;
        }
    }
    eprintln!(
        "{victim} storm: {} kills, {} writes tried, {acked} acknowledged (all on both replicas), \
         {unknown_landed} of the unacknowledged landed",
        kills(),
        outcomes.len()
    );
    assert!(acked > 0, "no write was acknowledged");
}

/// The master is SIGKILLed and restarted repeatedly under sync writes.
#[test]
fn master_kill_storm_loses_no_acknowledged_write() {
    storm("master", None);
}

/// The slave is SIGKILLed and restarted repeatedly under sync writes.
#[test]
fn slave_kill_storm_loses_no_acknowledged_write() {
    storm("slave", None);
}

/// The master storm with every connection through TLS: the writers', and
/// the replication stream, which is set up again after every restart.
#[test]
fn master_kill_storm_over_tls_loses_no_acknowledged_write() {
    storm("master", Some(&Pki::new("storm")));
}

/// Eight clients create, read, update, put and delete four keys on the
/// master through a kill storm of the master; each key's history (invoke
/// and return times on one clock, results, unknown outcomes for errors) is
/// checked for linearizability. A read of a write that a crash could take
/// away, or a lost acknowledged write, would make it fail.
#[test]
fn histories_stay_linearizable_through_a_master_kill_storm() {
    use linearizability::{Event, Op, Outcome, check};
    use std::time::Instant;

    const KEYS: u64 = 4;
    let mut pair = sync_pair(None);
    let epoch = Instant::now();
    let now = move || u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let stop = Arc::new(AtomicBool::new(false));
    let histories: Arc<Mutex<BTreeMap<u64, Vec<Event>>>> = Arc::default();
    let clients: Vec<_> = (0..WRITERS as u64)
        .map(|c| {
            let (addr, stop, histories) = (pair.master.addr(), stop.clone(), histories.clone());
            thread::spawn(move || {
                let mut client = Client::builder(addr)
                    .connect_timeout(Duration::from_millis(500))
                    .read_timeout(Duration::from_secs(5))
                    .build();
                let mut rng = fastrand::Rng::with_seed(0xD1B5_4A32_D192_ED03 ^ (c + 1));
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let key = rng.u64(..KEYS);
                    let name = format!("lin{key}");
                    let value = format!("{c}-{n}").into_bytes();
                    n += 1;
                    let invoke = now();
                    let (op, result) = match rng.u8(..5) {
                        0 => (
                            Op::Create(value.clone()),
                            client.create(&name, &value).map(|_| None),
                        ),
                        1 => (
                            Op::Update(value.clone()),
                            client.update(&name, &value).map(|_| None),
                        ),
                        2 => (
                            Op::Put(value.clone()),
                            client.put(&name, &value).map(|_| None),
                        ),
                        3 => (Op::Delete, client.delete(&name).map(|_| None)),
                        _ => (Op::Read, client.read(&name).map(Some)),
                    };
                    let ret = now();
                    let outcome = match result {
                        Ok(Some(value)) => Outcome::Value(value),
                        Ok(None) => Outcome::Ok,
                        Err(duokv::Error::NotFound) => Outcome::NotFound,
                        Err(duokv::Error::AlreadyExists) => Outcome::AlreadyExists,
                        Err(_) => Outcome::Unknown,
                    };
                    let unknown = outcome == Outcome::Unknown;
                    histories
                        .lock()
                        .unwrap()
                        .entry(key)
                        .or_default()
                        .push(Event {
                            op,
                            outcome,
                            invoke,
                            ret,
                        });
                    if unknown {
                        // Let the master come back; the pace is the workload's.
                        thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        })
        .collect();
    kill_repeatedly(&mut pair, "master", 0xA076_1D64_78BD_642F, |_| {});
    let before: usize = histories.lock().unwrap().values().map(Vec::len).sum();
    poll("operations after the last restart", || {
        let total: usize = histories.lock().unwrap().values().map(Vec::len).sum();
        (total > before + 100).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().expect("client thread");
    }
    let histories = histories.lock().unwrap();
    let mut total = 0;
    for (key, history) in histories.iter() {
        total += history.len();
        let unknown = history
            .iter()
            .filter(|e| e.outcome == Outcome::Unknown)
            .count();
        let checked = Instant::now();
        let verdict = check(history, None);
        eprintln!(
            "key lin{key}: {} operations ({unknown} unknown outcomes) checked in {:?}: {verdict:?}",
            history.len(),
            checked.elapsed()
        );
        assert_eq!(verdict, Ok(()), "key lin{key} is not linearizable");
    }
    eprintln!(
        "{} kills of the master, {total} operations on {KEYS} keys, all linearizable",
        kills()
    );
}

/// A small filesystem mounted for one test, unmounted when dropped.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    /// Mounts a tmpfs of `size` (e.g. "4m"); `None` when this machine cannot
    /// (not root), which CI must be.
    fn mount(size: &str) -> Option<SmallFs> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            common::skip("the disk-full test", "a tmpfs mount (root)");
            return None;
        }
        Some(SmallFs { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// The master's data on a 4 MiB filesystem that fills up: writes fail with
/// a clear error naming the full disk, nothing acknowledged is damaged,
/// writes work again once space is freed, and the log opens cleanly after a
/// restart with every acknowledged write.
#[test]
fn a_full_disk_fails_writes_clearly_and_recovers() {
    let Some(fs) = SmallFs::mount("4m") else {
        return;
    };
    let data = fs.path().join("data");
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![0u8; 1 << 20]).expect("filler");
    let mut server = common::ServerProcess::start_in(&data, &["--fsync", "always"]);
    let mut client = server.client();
    let value = vec![b'v'; 16 * 1024];
    let mut acked = Vec::new();
    let full = loop {
        let key = format!("k{}", acked.len());
        match client.put(&key, &value) {
            Ok(_) => acked.push(key),
            Err(e) => break e,
        }
        assert!(acked.len() < 1000, "4 MiB never filled up");
    };
    let message = full.to_string();
    assert!(
        message.contains("No space left") || message.contains("space"),
        "unclear error: {message}"
    );
    // Still refused while full; reads of acknowledged data still work.
    assert!(client.put("more", &value).is_err());
    assert_eq!(
        client.read(&acked[0]).expect("read").as_deref(),
        Some(&value[..])
    );

    std::fs::remove_file(&filler).expect("free space");
    client
        .put("after", "space")
        .expect("a write once space is freed");
    acked.push("after".into());

    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    server.restart();
    let mut client = server.client();
    for key in &acked {
        assert!(
            client.read(key).expect("read after restart").is_some(),
            "{key} lost"
        );
    }
    eprintln!(
        "{} writes acknowledged before the disk was full; all survived a restart",
        acked.len() - 1
    );
}
