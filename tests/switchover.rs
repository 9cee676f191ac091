//! Role changes with real `duokv-server` processes, under load (issue 15):
//! a planned switchover (`failover`) in sync and in async mode, its
//! rollback when the slave cannot catch up, the promotion of a slave whose
//! master was SIGKILLed, a stale master restarted with its old flags, and
//! ten switchovers back and forth followed by kill storms.
//!
//! Every test ends on the same two checks: no write a client saw
//! acknowledged is lost, and the two replicas hold the same contents. The
//! writers behave as an application would ([`Router`]): a `SwitchingOver`
//! reply is retried and a `NotMaster` one followed to the master it names
//! (neither wrote anything); anything else (a timeout, a broken connection,
//! `ReplicaUnavailable`) is an unknown outcome: the write may or may not
//! have landed.
//!
//! A role change swaps the pair's roles, so after one `pair.master` is the
//! slave: each test keeps its own notion of which node leads.
//!
//! Sizes, chosen to keep the file under about 90 s on two cores with debug
//! binaries: 64 sync writers and 16 async ones around one switchover; 8
//! writers through ten switchovers and two storms of 5 kills each.

mod common;
mod linearizability;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{DEADLINE, Pair, ServerProcess, discarded_files, info_value, last_seq, poll};
use duokv::discarded_writes;
use duokv::storage::Op as StoredOp;
use duokv::{Client, Error, ReplicationMode};
use linearizability::{Event, Op, Outcome, check};

/// How long a [`Router`] keeps retrying one operation (refused
/// connections, `SwitchingOver`, redirects) before it calls the outcome
/// unknown.
const PATIENCE: Duration = Duration::from_secs(5);

/// The master flags of every pair here: a short sync timeout, so that a
/// write the slave cannot confirm fails fast (as an unknown outcome).
fn master_flags(mode: &'static str) -> [&'static str; 4] {
    ["--replication", mode, "--sync-timeout", "1s"]
}

/// A client with short timeouts, dialling on its first call.
fn dial(addr: &str) -> Client {
    Client::builder(addr)
        .connect_timeout(Duration::from_millis(500))
        .read_timeout(PATIENCE)
        .write_timeout(PATIENCE)
        .build()
}

/// What an operation sent through a [`Router`] came to.
enum Reply<T> {
    /// The server answered: done (`Ok`), or refused for a reason that
    /// says the operation changed nothing (`NotFound`, `AlreadyExists`).
    Known(duokv::Result<T>),
    /// It may or may not have taken effect.
    Unknown,
}

/// A client of a pair that finds the master by itself: it follows
/// `NotMaster` to the master named, retries `SwitchingOver`, and tries the
/// other node when one refuses connections, for up to [`PATIENCE`].
struct Router {
    client: Client,
    nodes: [String; 2],
    /// Set when the workload stops: retries end at once.
    stop: Arc<AtomicBool>,
}

impl Router {
    fn new(nodes: [String; 2], stop: Arc<AtomicBool>) -> Router {
        Router {
            client: dial(&nodes[0]),
            nodes,
            stop,
        }
    }

    /// The node the router talks to now.
    fn addr(&self) -> String {
        self.client.addr().to_string()
    }

    /// Sends `op` to the master.
    fn send<T>(&mut self, mut op: impl FnMut(&mut Client) -> duokv::Result<T>) -> Reply<T> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let error = match op(&mut self.client) {
                Ok(value) => return Reply::Known(Ok(value)),
                Err(e @ (Error::NotFound | Error::AlreadyExists)) => return Reply::Known(Err(e)),
                Err(e) => e,
            };
            // Only refusals that wrote nothing are retried.
            let retry = match &error {
                Error::NotMaster { master } => {
                    self.client = dial(master);
                    true
                }
                Error::SwitchingOver { .. } => {
                    thread::sleep(Duration::from_millis(2));
                    true
                }
                Error::Connect { .. } => {
                    let other = if self.client.addr() == self.nodes[0] {
                        &self.nodes[1]
                    } else {
                        &self.nodes[0]
                    };
                    self.client = dial(other);
                    thread::sleep(Duration::from_millis(5));
                    true
                }
                _ => false,
            };
            if !retry || Instant::now() >= deadline || self.stop.load(Ordering::SeqCst) {
                return Reply::Unknown;
            }
        }
    }

    /// Reads `key` on the node the router talks to, and returns the value
    /// only if that node was the master of one term before and after the
    /// read: such a read took effect while it led, so it is linearizable;
    /// any other read (on a slave, or across a role change) is dropped.
    /// Returns the read's invocation and return times on `now`'s clock too.
    fn master_read(
        &mut self,
        key: &str,
        now: &impl Fn() -> u64,
    ) -> Option<(Option<Vec<u8>>, u64, u64)> {
        let before = role_and_term(&mut self.client)?;
        if before.0 != "master" {
            // Nothing to learn here; the next write finds the master.
            return None;
        }
        let invoke = now();
        let value = self.client.read(key).ok()?;
        let ret = now();
        (role_and_term(&mut self.client)? == before).then_some((value, invoke, ret))
    }
}

/// The node's role and term, from `info`.
fn role_and_term(client: &mut Client) -> Option<(String, String)> {
    let info = client.info().ok()?;
    let find = |name: &str| info.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    Some((find("role")?, find("term")?))
}

/// One write a writer tried: a key written once, with its value.
#[derive(Debug, Clone)]
struct Tried {
    key: String,
    value: String,
    /// The node that acknowledged it; `None` for an unknown outcome.
    acked_by: Option<String>,
}

/// Writers and hot-key clients running against a pair until
/// [`Load::finish`].
struct Load {
    stop: Arc<AtomicBool>,
    tried: Arc<Mutex<Vec<Tried>>>,
    hot: Arc<Mutex<Vec<Event>>>,
    threads: Vec<JoinHandle<()>>,
}

/// The one key the hot clients share, for the linearizability check.
const HOT_KEY: &str = "hot";

impl Load {
    /// Starts `writers` threads that each write keys of their own, once
    /// each, and `hot_clients` that create, update, put, delete and read
    /// [`HOT_KEY`], all through [`Router`]s starting at `nodes[0]`.
    fn start(nodes: [String; 2], writers: usize, hot_clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tried: Arc<Mutex<Vec<Tried>>> = Arc::default();
        let hot: Arc<Mutex<Vec<Event>>> = Arc::default();
        let epoch = Instant::now();
        let mut threads = Vec::new();
        for w in 0..writers {
            let (nodes, stop, tried) = (nodes.clone(), stop.clone(), tried.clone());
            threads.push(thread::spawn(move || {
                let mut router = Router::new(nodes, stop.clone());
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let (key, value) = (format!("w{w}-{n}"), format!("value {w}:{n}"));
                    n += 1;
                    let reply = router.send(|c| c.put(&key, &value));
                    let acked = matches!(reply, Reply::Known(Ok(_)));
                    let acked_by = acked.then(|| router.addr());
                    tried.lock().unwrap().push(Tried {
                        key,
                        value,
                        acked_by,
                    });
                    if !acked {
                        // Let the pair settle; the pace is the workload's.
                        thread::sleep(Duration::from_millis(20));
                    }
                }
            }));
        }
        for c in 0..hot_clients as u64 {
            let (nodes, stop, hot) = (nodes.clone(), stop.clone(), hot.clone());
            threads.push(thread::spawn(move || {
                let now = move || u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let mut router = Router::new(nodes, stop.clone());
                let mut rng = fastrand::Rng::with_seed(0x5EED_0F53_17C4 ^ (c + 1));
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let value = format!("{c}-{n}").into_bytes();
                    n += 1;
                    let event = match rng.u8(..5) {
                        0..=3 => {
                            let (op, invoke) = (rng.u8(..4), now());
                            let (op, reply) = match op {
                                0 => (
                                    Op::Create(value.clone()),
                                    router.send(|k| k.create(HOT_KEY, &value)),
                                ),
                                1 => (
                                    Op::Update(value.clone()),
                                    router.send(|k| k.update(HOT_KEY, &value)),
                                ),
                                2 => (
                                    Op::Put(value.clone()),
                                    router.send(|k| k.put(HOT_KEY, &value)),
                                ),
                                _ => (Op::Delete, router.send(|k| k.delete(HOT_KEY))),
                            };
                            let outcome = match reply {
                                Reply::Known(Ok(_)) => Outcome::Ok,
                                Reply::Known(Err(Error::NotFound)) => Outcome::NotFound,
                                Reply::Known(Err(_)) => Outcome::AlreadyExists,
                                Reply::Unknown => Outcome::Unknown,
                            };
                            Event {
                                op,
                                outcome,
                                invoke,
                                ret: now(),
                            }
                        }
                        _ => match router.master_read(HOT_KEY, &now) {
                            Some((value, invoke, ret)) => Event {
                                op: Op::Read,
                                outcome: Outcome::Value(value),
                                invoke,
                                ret,
                            },
                            None => continue,
                        },
                    };
                    hot.lock().unwrap().push(event);
                }
            }));
        }
        Load {
            stop,
            tried,
            hot,
            threads,
        }
    }

    /// Writes acknowledged so far.
    fn acked(&self) -> usize {
        let tried = self.tried.lock().unwrap();
        tried.iter().filter(|t| t.acked_by.is_some()).count()
    }

    /// Polls until `more` writes than now are acknowledged.
    fn wait_more_acked(&self, more: usize) {
        let target = self.acked() + more;
        poll(&format!("{target} acknowledged writes"), || {
            (self.acked() >= target).then_some(())
        });
    }

    /// Stops the clients and returns what they saw.
    fn finish(self) -> (Vec<Tried>, Vec<Event>) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().expect("a client thread");
        }
        let tried = std::mem::take(&mut *self.tried.lock().unwrap());
        let hot = std::mem::take(&mut *self.hot.lock().unwrap());
        (tried, hot)
    }
}

/// What [`check_no_loss`] counted.
#[derive(Debug, Default)]
struct Tally {
    tried: usize,
    acked: usize,
    unknown: usize,
    unknown_landed: usize,
}

/// Asserts that every acknowledged write is on `master` and `slave` with
/// its value, and that both hold the same value for every key tried.
fn check_no_loss(tried: &[Tried], master: &ServerProcess, slave: &ServerProcess) -> Tally {
    let (mut m, mut s) = (master.client(), slave.client());
    let mut tally = Tally {
        tried: tried.len(),
        ..Tally::default()
    };
    for write in tried {
        let on_master = m.read(&write.key).expect("read the master");
        let on_slave = s.read(&write.key).expect("read the slave");
        assert_eq!(on_master, on_slave, "{}: the replicas differ", write.key);
        if let Some(node) = &write.acked_by {
            tally.acked += 1;
            assert_eq!(
                on_master.as_deref(),
                Some(write.value.as_bytes()),
                "{}: acknowledged by {node}, then lost",
                write.key
            );
        } else {
            tally.unknown += 1;
            if on_master.is_some() {
                tally.unknown_landed += 1;
            }
        }
    }
    assert!(tally.acked > 0, "no write was acknowledged");
    tally
}

/// The value of fact `name` in a role change's answer.
fn fact(facts: &[(String, String)], name: &str) -> String {
    facts
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no `{name}` in the facts: {facts:?}"))
}

/// Polls until `slave` follows `master` in `term` and the master's link
/// to it is up: the roles have settled, whatever the load.
fn wait_roles(master: &ServerProcess, slave: &ServerProcess, term: u64) {
    let (mut m, mut s) = (master.client(), slave.client());
    let term = term.to_string();
    poll("the roles to settle", || {
        let settled = info_value(&mut m, "role") == "master"
            && info_value(&mut s, "role") == "slave"
            && info_value(&mut s, "master") == master.addr()
            && info_value(&mut m, "term") == term
            && info_value(&mut s, "term") == term
            && info_value(&mut m, "link") == "up";
        settled.then_some(())
    });
}

/// [`wait_roles`], then polls until both replicas have the same history,
/// last seq and number of keys. Only once the writes have stopped.
fn wait_converged(master: &ServerProcess, slave: &ServerProcess, term: u64) {
    wait_roles(master, slave, term);
    let (mut m, mut s) = (master.client(), slave.client());
    let figures =
        |c: &mut Client| ["history_id", "last_seq", "live_keys"].map(|n| info_value(c, n));
    poll("the replicas to converge", || {
        (figures(&mut m) == figures(&mut s)).then_some(())
    });
}

/// The leader and the follower of `pair`: its first master when `first`
/// leads.
fn roles(pair: &mut Pair, first: bool) -> (&mut ServerProcess, &mut ServerProcess) {
    if first {
        (&mut pair.master, &mut pair.slave)
    } else {
        (&mut pair.slave, &mut pair.master)
    }
}

/// One planned switchover under `writers` writers and 4 hot-key clients in
/// `mode`; see the tests that call it.
fn switchover_under_load(mode: &'static str, writers: usize) {
    let started = Instant::now();
    let pair = Pair::start(&master_flags(mode), &[]);
    pair.wait_link_up();
    let (a, b) = (pair.master.addr(), pair.slave.addr());
    let load = Load::start([a.clone(), b.clone()], writers, 4);
    load.wait_more_acked(2_000);

    let facts = pair
        .master
        .client()
        .failover(Duration::from_secs(5))
        .expect("the switchover");
    assert_eq!(fact(&facts, "new_master"), b, "{facts:?}");
    assert_eq!(fact(&facts, "term"), "1", "{facts:?}");
    let window: f64 = fact(&facts, "write_window_ms").parse().expect("a number");
    assert!(window > 0.0 && window < 5_000.0, "write window {window} ms");
    let switched_at = load.acked();
    // The writers find the new master and go on there.
    load.wait_more_acked(2_000);
    let (tried, hot) = load.finish();

    let (new_master, new_slave) = (&pair.slave, &pair.master);
    wait_converged(new_master, new_slave, 1);
    let mut m = new_master.client();
    let mut s = new_slave.client();
    assert_eq!(info_value(&mut s, "role"), "slave");
    assert_eq!(info_value(&mut m, "history_id"), fact(&facts, "history_id"));
    // Caught up from the log, never by a snapshot, and nothing discarded.
    assert_eq!(info_value(&mut m, "full_resyncs"), "0");
    let partial = info_value(&mut m, "partial_resyncs");
    for node in [new_master, new_slave] {
        assert_eq!(discarded_files(node.data_dir()), Vec::<PathBuf>::new());
    }
    let on_new_master = tried
        .iter()
        .filter(|t| t.acked_by.as_deref() == Some(b.as_str()))
        .count();
    assert!(on_new_master > 0, "no write acknowledged by the new master");
    let tally = check_no_loss(&tried, new_master, new_slave);
    // The hot key is the same on both, and its history linearizable.
    assert_eq!(
        m.read(HOT_KEY).expect("read"),
        s.read(HOT_KEY).expect("read")
    );
    let unknown = hot.iter().filter(|e| e.outcome == Outcome::Unknown).count();
    let reads = hot.iter().filter(|e| e.op == Op::Read).count();
    assert!(reads > 0, "no hot-key read was confirmed on a master");
    let checked = Instant::now();
    assert_eq!(check(&hot, None), Ok(()), "the hot key is not linearizable");
    eprintln!(
        "{mode} switchover, {writers} writers: write window {window:.3} ms (facts {facts:?}); \
         {} writes tried, {} acknowledged ({switched_at} before the switch, {on_new_master} by \
         the new master), 0 lost, {} unknown ({} of them landed); new master's partial_resyncs \
         {partial}, full_resyncs 0; hot key: {} operations ({reads} confirmed reads, {unknown} \
         unknown) linearizable (checked in {:?}); {:?} in all",
        tally.tried,
        tally.acked,
        tally.unknown,
        tally.unknown_landed,
        hot.len(),
        checked.elapsed(),
        started.elapsed()
    );
}

/// A planned switchover in sync mode with 64 writers and 4 clients of one
/// hot key: nothing acknowledged is lost, the old master follows the new
/// one without a full resync, both hold the same contents, and the hot
/// key's history is linearizable across the switch.
#[test]
fn a_sync_switchover_under_load_loses_nothing() {
    switchover_under_load("sync", 64);
}

/// The same in async mode with 16 writers: the switchover waits until the
/// slave shows every write, so even async acknowledgements survive it.
#[test]
fn an_async_switchover_under_load_loses_nothing() {
    switchover_under_load("async", 16);
}

/// A switchover whose slave is stalled (SIGSTOP) and cannot show the
/// master's last writes in time rolls back: `NotChanged`, the
/// master takes writes again at once, roles, terms and histories are as
/// they were, and once the slave runs again the pair replicates and can
/// switch over.
#[test]
fn a_switchover_to_a_stalled_slave_rolls_back() {
    let pair = Pair::start(&master_flags("async"), &[]);
    pair.wait_link_up();
    let (mut m, mut s) = (pair.master.client(), pair.slave.client());
    for i in 0..5 {
        m.put(format!("before-{i}"), "replicated").expect("put");
    }
    poll("the slave to show seq 5", || {
        (last_seq(&mut s) == 5).then_some(())
    });
    let identity = |c: &mut Client| ["role", "term", "history_id"].map(|name| info_value(c, name));
    let (master_before, slave_before) = (identity(&mut m), identity(&mut s));

    pair.slave.signal("SIGSTOP");
    // Acknowledged by the async master; the stalled slave cannot show them.
    for i in 0..3 {
        m.put(format!("stalled-{i}"), "unreplicated").expect("put");
    }
    let asked = Instant::now();
    let refused = m.failover(Duration::from_millis(300));
    let took = asked.elapsed();
    assert!(
        matches!(refused, Err(Error::NotChanged { .. })),
        "{refused:?}"
    );
    assert!(took >= Duration::from_millis(300), "gave up after {took:?}");
    m.put("after-rollback", "taken")
        .expect("a write after the rollback");
    assert_eq!(identity(&mut m), master_before);

    pair.slave.signal("SIGCONT");
    // A new connection: the server drops those that were idle across the
    // stop (see `an_idle_connection_survives_a_stop_and_continue`).
    let mut s = pair.slave.client();
    poll("the slave to catch up", || {
        (last_seq(&mut s) == last_seq(&mut m)).then_some(())
    });
    assert_eq!(identity(&mut s), slave_before);
    for key in ["stalled-0", "stalled-2", "after-rollback"] {
        assert!(
            s.read(key).expect("read").is_some(),
            "{key} not on the slave"
        );
    }
    // The pair works as before: it can switch over now.
    let facts = m.failover(Duration::from_secs(5)).expect("a switchover");
    assert_eq!(fact(&facts, "new_master"), pair.slave.addr());
    wait_converged(&pair.slave, &pair.master, 1);
    eprintln!("rollback after {took:?} (timeout 300 ms); then a switchover: {facts:?}");
}

/// Writes to `addr` from another thread until stopped, without following
/// redirects: what a client of a node that may believe it is the master
/// is told. Every write is of a key of its own (`probe-N`).
struct Prober {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Probed>>,
}

/// One answer a [`Prober`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Probed {
    /// Acknowledged: the node took the write as a master.
    Acked(String),
    SwitchingOver,
    NotMaster(String),
    /// No connection (the node is down).
    Down,
    Other(String),
}

impl Prober {
    fn start(addr: String) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut client = dial(&addr);
            let mut answers = Vec::new();
            let mut n = 0u64;
            while !flag.load(Ordering::SeqCst) {
                let key = format!("probe-{n}");
                n += 1;
                let answer = match client.put(&key, "from a prober") {
                    Ok(_) => Probed::Acked(key),
                    Err(Error::SwitchingOver { .. }) => Probed::SwitchingOver,
                    Err(Error::NotMaster { master }) => Probed::NotMaster(master),
                    Err(Error::Connect { .. }) => Probed::Down,
                    Err(e) => Probed::Other(duokv::error::chain(&e)),
                };
                answers.push(answer);
                // A pace, not a synchronisation.
                thread::sleep(Duration::from_millis(2));
            }
            answers
        });
        Prober { stop, thread }
    }

    fn finish(self) -> Vec<Probed> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the prober")
    }
}

/// Asserts what a restarted stale master told its prober: never an
/// acknowledgement; `SwitchingOver` while it learns it was replaced, then
/// only `NotMaster` naming `new_master`. Returns the counts seen.
fn assert_refused_then_redirected(answers: &[Probed], new_master: &str) -> (usize, usize) {
    let acked: Vec<&Probed> = answers
        .iter()
        .filter(|a| matches!(a, Probed::Acked(_)))
        .collect();
    assert!(acked.is_empty(), "a stale master acknowledged {acked:?}");
    let served: Vec<&Probed> = answers.iter().filter(|a| **a != Probed::Down).collect();
    let first_redirect = served
        .iter()
        .position(|a| matches!(a, Probed::NotMaster(_)))
        .unwrap_or_else(|| panic!("never redirected: {served:?}"));
    for answer in &served[..first_redirect] {
        assert_eq!(
            **answer,
            Probed::SwitchingOver,
            "before the redirect: {served:?}"
        );
    }
    for answer in &served[first_redirect..] {
        assert_eq!(
            **answer,
            Probed::NotMaster(new_master.to_string()),
            "after the first redirect: {served:?}"
        );
    }
    (first_redirect, served.len() - first_redirect)
}

/// Sync mode: the master is SIGKILLed under load; every write it
/// acknowledged is on the slave, which is promoted (async, as its old
/// master is gone) and takes writes at once; the old master restarted
/// with its old flags learns it was replaced, steps down, follows and
/// converges. Whatever it held beyond the promoted node's history was
/// never acknowledged.
#[test]
fn a_promotion_after_the_sync_master_is_killed_loses_nothing() {
    let mut pair = Pair::start(&master_flags("sync"), &[]);
    pair.wait_link_up();
    let (a, b) = (pair.master.addr(), pair.slave.addr());
    let load = Load::start([a.clone(), b.clone()], 8, 0);
    load.wait_more_acked(300);
    pair.master.sigkill();
    pair.master.wait_exit(DEADLINE);
    let (tried, _) = load.finish();

    let mut promoted = pair.slave.client();
    // Refused while the slave still sees its master's stream.
    let (facts, asked) = poll("the promotion", || {
        let asked = Instant::now();
        match promoted.promote(None, ReplicationMode::Async, false) {
            Ok(facts) => Some((facts, asked)),
            Err(Error::NotChanged { .. }) => None,
            Err(e) => panic!("promote: {}", duokv::error::chain(&e)),
        }
    });
    let promote_took = asked.elapsed();
    assert_eq!(fact(&facts, "term"), "1", "{facts:?}");
    assert_eq!(fact(&facts, "replica"), a, "{facts:?}");
    // Every acknowledged write is there, before the old master is back.
    for write in tried.iter().filter(|t| t.acked_by.is_some()) {
        assert_eq!(
            promoted.read(&write.key).expect("read").as_deref(),
            Some(write.value.as_bytes()),
            "{}: acknowledged by the killed master, missing on the promoted slave",
            write.key
        );
    }
    let first_write = loop {
        match promoted.put("after-promotion", "taken") {
            Ok(_) => break asked.elapsed(),
            Err(Error::SwitchingOver { .. }) => thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!(
                "the promoted node refused a write: {}",
                duokv::error::chain(&e)
            ),
        }
    };
    assert_eq!(info_value(&mut promoted, "role"), "master");

    // The old master, restarted with its old flags, steps down.
    pair.master.restart();
    wait_converged(&pair.slave, &pair.master, 1);
    let tally = check_no_loss(&tried, &pair.slave, &pair.master);
    let mut old = pair.master.client();
    assert_eq!(
        old.read("after-promotion").expect("read").as_deref(),
        Some(&b"taken"[..])
    );
    // What the old master held beyond the promoted history was never
    // acknowledged (saved in a discarded-writes file, if anything).
    let acked: BTreeMap<&str, &str> = tried
        .iter()
        .filter(|t| t.acked_by.is_some())
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect();
    let mut discarded = 0;
    for file in discarded_files(pair.master.data_dir()) {
        for row in discarded_writes::read(&file).expect("read a discarded-writes file") {
            let StoredOp::Put { key, .. } = &row.op else {
                panic!("a delete discarded: {row:?}");
            };
            let key = String::from_utf8_lossy(key).into_owned();
            assert!(
                !acked.contains_key(key.as_str()),
                "acknowledged, then discarded: {row:?}"
            );
            discarded += 1;
        }
    }
    eprintln!(
        "sync promotion: {} writes tried, {} acknowledged, 0 lost, {} unknown ({} landed); \
         promote took {promote_took:?} (facts {facts:?}); first acknowledged write {first_write:?} \
         after the promote was asked; {discarded} unacknowledged writes discarded on the old master",
        tally.tried, tally.acked, tally.unknown, tally.unknown_landed
    );
}

/// Async mode: the master acknowledges N writes its slave (down) never
/// receives, and is SIGKILLed; the slave, back and promoted, takes writes. The old
/// master, restarted with its old flags, never acknowledges a write as a
/// master (its clients are told `SwitchingOver`, then `NotMaster`), steps
/// down, saves exactly those N writes in a discarded-writes file, and
/// converges on the new master's contents.
#[test]
fn an_old_async_master_steps_down_and_saves_what_it_alone_held() {
    const N: usize = 20;
    let mut pair = Pair::start(&master_flags("async"), &[]);
    pair.wait_link_up();
    let (a, b) = (pair.master.addr(), pair.slave.addr());
    let (mut m, mut s) = (pair.master.client(), pair.slave.client());
    for i in 0..10 {
        m.put(format!("base-{i}"), format!("base value {i}"))
            .expect("put");
    }
    poll("the slave to show seq 10", || {
        (last_seq(&mut s) == 10).then_some(())
    });
    // Down, not stalled: a stopped slave would find the writes in its
    // socket's buffer once continued, and show them on its promotion.
    drop(s);
    pair.slave.sigkill();
    pair.slave.wait_exit(DEADLINE);
    let lost: Vec<(u64, String, String)> = (0..N)
        .map(|i| {
            let (key, value) = (
                format!("only-on-a-{i}"),
                format!("held by the old master {i}"),
            );
            let receipt = m.put(&key, &value).expect("an async write");
            (receipt.seq, key, value)
        })
        .collect();
    drop(m);
    pair.master.sigkill();
    pair.master.wait_exit(DEADLINE);
    pair.slave.restart();

    let mut s = pair.slave.client();
    let facts = poll("the promotion", || {
        match s.promote(None, ReplicationMode::Async, false) {
            Ok(facts) => Some(facts),
            Err(Error::NotChanged { .. }) => None,
            Err(e) => panic!("promote: {}", duokv::error::chain(&e)),
        }
    });
    assert_eq!(fact(&facts, "seq"), "10", "{facts:?}");
    let history = fact(&facts, "history_id");
    for i in 0..5 {
        s.put(format!("on-b-{i}"), "after the promotion")
            .expect("a write on the promoted node");
    }

    let prober = Prober::start(a.clone());
    pair.master.restart();
    let mut old = pair.master.client();
    poll("the old master to step down", || {
        (info_value(&mut old, "role") == "slave").then_some(())
    });
    wait_converged(&pair.slave, &pair.master, 1);
    let answers = prober.finish();
    let (refused, redirected) = assert_refused_then_redirected(&answers, &b);
    assert!(redirected > 0);
    assert_eq!(
        info_value(&mut s, "history_id"),
        history,
        "the new master's history changed"
    );

    // Exactly the N writes, with their seqs, keys and values.
    let files = discarded_files(pair.master.data_dir());
    assert_eq!(files.len(), 1, "{files:?}");
    let rows = discarded_writes::read(&files[0]).expect("read the discarded-writes file");
    let saved: Vec<(u64, String, String)> = rows
        .iter()
        .map(|row| match &row.op {
            StoredOp::Put { key, value } => (
                row.seq,
                String::from_utf8_lossy(key).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ),
            other => panic!("not a put: {other:?}"),
        })
        .collect();
    assert_eq!(saved, lost);

    // Converged on the new master's contents: the N writes are gone from
    // both, the prober's keys were never written anywhere.
    let mut old = pair.master.client();
    for client in [&mut s, &mut old] {
        for (_, key, _) in &lost {
            assert_eq!(client.read(key).expect("read"), None, "{key}");
        }
        for i in 0..10 {
            assert!(client.read(format!("base-{i}")).expect("read").is_some());
        }
        for i in 0..5 {
            assert!(client.read(format!("on-b-{i}")).expect("read").is_some());
        }
        for (n, _) in answers.iter().enumerate() {
            assert_eq!(client.read(format!("probe-{n}")).expect("read"), None);
        }
    }
    eprintln!(
        "async promotion: {N} acknowledged writes held only by the old master, all {N} saved \
         in {} (seqs {}..={}); the restarted old master answered {refused} SwitchingOver then \
         {redirected} NotMaster ({} probes while down), acknowledged none",
        files[0].display(),
        lost[0].0,
        lost[N - 1].0,
        answers.iter().filter(|a| **a == Probed::Down).count()
    );
}

/// A stale master whose `ROLE` file says it leads: after a switchover
/// A -> B, B is SIGKILLed and A promoted (term 2); B is restarted with its
/// old flags (a slave's) while its `ROLE` file says it led term 1: the
/// flags win (a slave is the safe direction), and it says so. It cannot
/// make A follow it: A stays the master of term 2, same history, taking
/// writes; B's clients are refused or redirected, never acknowledged; B
/// follows A in term 2 and converges.
#[test]
fn a_stale_master_cannot_take_its_slave_back() {
    let mut pair = Pair::start(&master_flags("sync"), &[]);
    pair.wait_link_up();
    let (a, b) = (pair.master.addr(), pair.slave.addr());
    let facts = pair
        .master
        .client()
        .failover(Duration::from_secs(5))
        .expect("A -> B");
    assert_eq!(fact(&facts, "term"), "1");
    wait_converged(&pair.slave, &pair.master, 1);
    let mut on_b = pair.slave.client();
    for i in 0..10 {
        on_b.put(format!("term1-{i}"), "written by B")
            .expect("put on B");
    }
    drop(on_b);
    pair.slave.sigkill();
    pair.slave.wait_exit(DEADLINE);

    let mut on_a = pair.master.client();
    let facts = poll("A's promotion", || {
        match on_a.promote(None, ReplicationMode::Async, false) {
            Ok(facts) => Some(facts),
            Err(Error::NotChanged { .. }) => None,
            Err(e) => panic!("promote: {}", duokv::error::chain(&e)),
        }
    });
    assert_eq!(fact(&facts, "term"), "2", "{facts:?}");
    assert_eq!(fact(&facts, "replica"), b, "{facts:?}");
    let identity = |c: &mut Client| ["role", "term", "history_id"].map(|n| info_value(c, n));
    let a_before = identity(&mut on_a);
    assert_eq!(a_before[..2], ["master".to_string(), "2".to_string()]);

    let prober = Prober::start(b.clone());
    pair.slave.restart();
    // While B comes back and learns, A keeps leading and taking writes.
    let mut written = 0;
    let mut b_client = pair.slave.client();
    poll("B to step down", || {
        on_a.put(format!("term2-{written}"), "written by A")
            .expect("a write on A");
        written += 1;
        assert_eq!(identity(&mut on_a), a_before, "A's state changed");
        (info_value(&mut b_client, "role") == "slave").then_some(())
    });
    wait_converged(&pair.master, &pair.slave, 2);
    let answers = prober.finish();
    let (refused, redirected) = assert_refused_then_redirected(&answers, &a);
    assert_eq!(identity(&mut on_a), a_before);
    assert!(
        pair.slave.log().contains("ROLE"),
        "B did not say how its flags and its ROLE file differ"
    );
    for client in [&mut on_a, &mut b_client] {
        for i in 0..10 {
            assert!(client.read(format!("term1-{i}")).expect("read").is_some());
        }
        for i in 0..written {
            assert!(client.read(format!("term2-{i}")).expect("read").is_some());
        }
        for (n, _) in answers.iter().enumerate() {
            assert_eq!(client.read(format!("probe-{n}")).expect("read"), None);
        }
    }
    eprintln!(
        "stale master of term 1 against a master of term 2: {refused} SwitchingOver, \
         {redirected} NotMaster, 0 acknowledged; A took {written} writes meanwhile"
    );
}

/// Ten switchovers back and forth under 8 writers, then a storm of 5
/// SIGKILLs of whichever node is master and 5 of whichever is slave (each
/// restarted with its original flags: the `ROLE` file keeps its role):
/// nothing acknowledged is lost, the replicas are identical at the end.
#[test]
fn ten_switchovers_then_kill_storms_lose_nothing() {
    const SWITCHOVERS: u64 = 10;
    const KILLS: usize = 5;
    let started = Instant::now();
    let mut pair = Pair::start(&master_flags("sync"), &[]);
    pair.wait_link_up();
    let nodes = [pair.master.addr(), pair.slave.addr()];
    let load = Load::start(nodes.clone(), 8, 0);
    let mut first_leads = true;
    let mut windows = Vec::new();
    for term in 1..=SWITCHOVERS {
        load.wait_more_acked(200);
        let (leader, follower) = roles(&mut pair, first_leads);
        let facts = leader
            .client()
            .failover(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("switchover {term}: {}", duokv::error::chain(&e)));
        assert_eq!(fact(&facts, "new_master"), follower.addr(), "{facts:?}");
        assert_eq!(fact(&facts, "term"), term.to_string(), "{facts:?}");
        windows.push(
            fact(&facts, "write_window_ms")
                .parse::<f64>()
                .expect("a number"),
        );
        first_leads = !first_leads;
        let (leader, follower) = roles(&mut pair, first_leads);
        wait_roles(leader, follower, term);
    }
    load.wait_more_acked(50);

    let mut rng = fastrand::Rng::with_seed(0x0005_11C4_0FE2);
    let mut storm_seconds = Vec::new();
    for victim_leads in [true, false] {
        let storm = Instant::now();
        for _ in 0..KILLS {
            // The fault schedule: a random moment 100 to 300 ms into the work.
            thread::sleep(Duration::from_millis(rng.u64(100..300)));
            let (leader, follower) = roles(&mut pair, first_leads);
            let victim = if victim_leads { leader } else { follower };
            victim.sigkill();
            victim.restart();
            let (leader, follower) = roles(&mut pair, first_leads);
            wait_roles(leader, follower, SWITCHOVERS);
            load.wait_more_acked(30);
        }
        storm_seconds.push(storm.elapsed().as_secs_f64());
    }
    let (tried, _) = load.finish();
    let (leader, follower) = roles(&mut pair, first_leads);
    wait_converged(leader, follower, SWITCHOVERS);
    let tally = check_no_loss(&tried, leader, follower);
    windows.sort_by(f64::total_cmp);
    eprintln!(
        "{SWITCHOVERS} switchovers (write windows ms: min {:.3}, median {:.3}, max {:.3}), then \
         {KILLS} master kills ({:.1} s) and {KILLS} slave kills ({:.1} s): {} writes tried, {} \
         acknowledged, 0 lost, {} unknown ({} landed); {:?} in all",
        windows[0],
        windows[windows.len() / 2],
        windows[windows.len() - 1],
        storm_seconds[0],
        storm_seconds[1],
        tally.tried,
        tally.acked,
        tally.unknown,
        tally.unknown_landed,
        started.elapsed()
    );
}

/// A node stopped (SIGSTOP) and continued (SIGCONT) keeps its clients'
/// idle connections: a stop is a pause, not a failure.
#[test]
fn an_idle_connection_survives_a_stop_and_continue() {
    let server = ServerProcess::start(&[]);
    let mut client = server.client();
    client.put("k", "v").expect("put");
    // The scene, not a synchronisation: the connection idles, then the
    // server pauses for a moment.
    thread::sleep(Duration::from_millis(50));
    server.signal("SIGSTOP");
    thread::sleep(Duration::from_millis(50));
    server.signal("SIGCONT");
    let read = client.read("k");
    assert!(
        matches!(read.as_ref().map(|v| v.as_deref()), Ok(Some(b"v"))),
        "a read on the connection opened before the pause: {read:?}"
    );
}

/// A switchover whose `Handover` never reached the slave (it was stalled,
/// then died and came back as the slave it was) ends as the failover's
/// answer says it does: the master takes writes again once the slave
/// accepts its stream, i.e. once it knows the slave did not take over.
#[test]
fn a_master_whose_handover_was_lost_takes_writes_again() {
    let mut pair = Pair::start(&master_flags("async"), &[]);
    pair.wait_link_up();
    let mut m = pair.master.client();
    m.put("k", "v").expect("put");
    let mut s = pair.slave.client();
    poll("the slave to show seq 1", || {
        (last_seq(&mut s) == 1).then_some(())
    });
    drop(s);
    pair.slave.signal("SIGSTOP");
    // The slave shows every write: the `Handover` goes out at once, and
    // no answer comes.
    let answer = m.failover(Duration::from_millis(300));
    assert!(matches!(answer, Err(Error::Internal { .. })), "{answer:?}");
    // The stalled slave dies with the `Handover` unread, and comes back.
    pair.slave.sigkill();
    pair.slave.restart();
    pair.wait_link_up();
    let mut s = pair.slave.client();
    assert_eq!(info_value(&mut s, "role"), "slave");
    assert_eq!(info_value(&mut s, "term"), "0");
    let mut m = pair.master.client();
    assert_eq!(info_value(&mut m, "role"), "master");
    let mut last = None;
    let taken = (0..200).any(|_| {
        let put = m.put("after", "the slave came back");
        let ok = put.is_ok();
        last = Some(put);
        // A pace between attempts, not a synchronisation.
        thread::sleep(Duration::from_millis(20));
        ok
    });
    assert!(taken, "the master never took a write again: {last:?}");
}

/// A session keeps its guarantees across a switchover: tokens taken from
/// the old master before it are honoured by both nodes after it (the new
/// master's history continues the old one), and a `ReplicaSet` follows the
/// `NotMaster` of the old master to the new one, swapping its two clients.
#[test]
fn a_session_keeps_its_guarantees_across_a_switchover() {
    use duokv::replica_set::{ReadFrom, Replica, ReplicaSet};
    let pair = Pair::start(&master_flags("async"), &[]);
    pair.wait_link_up();
    let (a, b) = (pair.master.addr(), pair.slave.addr());
    let mut set = ReplicaSet::new(a.clone(), b.clone())
        .read_from(ReadFrom::Slave)
        .with_session(duokv::Session::new().wait(DEADLINE));
    let before = set.put("k", "before").expect("a write on A");
    let token = before.token().expect("a token");
    let facts = Client::connect(a.clone())
        .expect("connect to A")
        .failover(Duration::from_secs(5))
        .expect("A -> B");
    assert_eq!(fact(&facts, "new_master"), b);
    for addr in [&a, &b] {
        let mut client = Client::connect(addr.clone()).expect("connect");
        let read = client
            .read_after("k", token, DEADLINE)
            .unwrap_or_else(|e| panic!("a token of the old history on {addr}: {e}"));
        assert_eq!(read, Some(b"before".to_vec()), "on {addr}");
    }
    // The set still takes A for the master: A's NotMaster swaps them.
    let after = set.put("k", "after").expect("a write through the set");
    assert_eq!(set.master().addr(), b);
    assert_eq!(set.slave().addr(), a);
    assert_ne!(after.token().unwrap().history, token.history);
    // A session read on the slave (now A) waits for the set's own write.
    let read = set.session_read("k").expect("a session read");
    assert_eq!(read.value, Some(b"after".to_vec()));
    assert_eq!(read.answered_by, Replica::Slave, "{read:?}");
}
