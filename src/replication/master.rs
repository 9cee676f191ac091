//! The master's side of replication: [`Replicator`].
//!
//! Threads:
//! - the **sender** owns the link: it dials the slave, catches the slave up
//!   from the log, then forwards live writes in sequence order as they come
//!   through a crossbeam channel. After any failed session (a dial that
//!   fails, a refusal, a stream that breaks) it waits before dialling
//!   again, twice as long each time up to [`MAX_BACKOFF`], back to the
//!   shortest wait after a session that stayed up [`STABLE_SESSION`]; the
//!   wait and the reason are in `info` (`link_backoff_ms`,
//!   `link_last_error`), and the reason is logged once per change;
//! - per connection, an **ack reader** takes the slave's cumulative acks and
//!   completes the sync writes they cover: it sends their replies itself
//!   (see [`Replicator::when_acked`]), so no client thread sleeps on an ack;
//! - the **timeout** thread ends the sync writes whose ack has not come
//!   within `--sync-timeout`.
//!
//! Writes reach the sender from the store itself: the replicator is the
//! store's [write observer](duokv_storage::Store::observe_writes), given
//! each group-commit batch once it is written and **before** the master's
//! `fdatasync`, so the slave's sync runs alongside the master's instead of
//! after it (`--forward durable` gives it the batch once synced instead).
//! A write is still acknowledged only once durable on the master (and, in
//! sync mode, on the slave). Should the master's host crash before
//! its sync, the slave may hold writes the master lost: the master forks a
//! new history each time it starts (see `duokv_storage::history`), so such
//! a slave is told apart and resynced, never continued.
//!
//! **Commit notices** (`PROTOCOL.md` 7.9), when the slave takes them up in
//! the handshake: the store tells the replicator each time its durable seq
//! moves, and the sender passes it on as `Commit`, after the appends it
//! covers; it answers each of the slave's `Probe`s with a `Commit` naming
//! the probe and the durable seq read once the probe has arrived. The
//! slave shows a write only once a `Commit` covers it, so it never shows a
//! write this master could still lose, and it proves its staleness bound
//! from the probes' answers. It reports what it shows with `Visible`, on
//! which `--replication sync-visible` writes wait.
//!
//! Nothing blocks on the link: a batch only goes on a bounded channel.
//! While the slave is away, or if the channel overflows, queued writes are
//! dropped and the log, which has them all, is read instead when the link
//! is back.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufReader, BufWriter, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use duokv_protocol::{
    self as protocol, FEATURE_COMMIT_NOTICES, Frame, Handshake, HandshakeFields, HandshakeReply,
    HandshakeStatus, Message, ModeCode, NodeRole, ReplicatedOp, Replication, Role, StreamFields,
};
use duokv_storage::{self as storage, ObservePoint, Store};
use log::{debug, error, info, warn};

use super::mode::{Forward, ReplicationMode};
use super::wire;
use crate::auth::AuthToken;
use crate::clock::now_ns;
use crate::event_log::{EventKind, EventSink};
use crate::tls::ServerTls;
use crate::transport::Transport;

/// Batches queued for the sender before it falls back to reading the log.
const QUEUE_CAPACITY: usize = 16_384;
/// Submission times kept for the lag figure.
const LAG_SAMPLES: usize = 100_000;
/// How long a hole in the sequence may wait for its write before the sender
/// reads it from the log instead.
const GAP_PATIENCE: Duration = Duration::from_millis(500);
/// The longest wait between two sessions, after failed ones.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// The first wait after a failed session.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// A session that stayed up this long resets the backoff.
const STABLE_SESSION: Duration = Duration::from_secs(5);

/// How a master replicates.
#[derive(Debug, Clone)]
pub struct MasterSettings {
    /// The slave's client address (`host:port`).
    pub replica: String,
    /// Sync or async.
    pub mode: ReplicationMode,
    /// How long a sync write waits for the slave's ack.
    pub sync_timeout: Duration,
    /// In sync mode, answer writes without the slave while it is away
    /// (logged loudly) instead of failing them with `ReplicaUnavailable`.
    pub fallback_async: bool,
    /// When a write goes to the slave: once written (default) or once
    /// durable on the master.
    pub forward: Forward,
}

/// How a sync write's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The slave's ack covered the write; the master's clock when it came.
    Acked {
        /// UNIX nanoseconds.
        at_ns: u64,
    },
    /// The slave is away and `--sync-fallback async` let the write go on.
    Degraded,
    /// No ack within the sync timeout.
    TimedOut,
}

/// A snapshot of the link's state for `info`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkStatus {
    /// The slave's address.
    pub replica: String,
    /// Sync or async.
    pub mode: ReplicationMode,
    /// Whether the stream to the slave is connected.
    pub up: bool,
    /// Every write up to this seq is applied on the slave.
    pub acked_seq: u64,
    /// Every write up to this seq is visible to readers on the slave.
    pub visible_seq: u64,
    /// Every write up to this seq is durable on this master.
    pub durable_seq: u64,
    /// Whether the slave takes commit notices (the session's handshake).
    pub commit_notices: bool,
    /// How long the oldest write the slave has not acknowledged has waited.
    pub lag: Duration,
    /// Successful connections to the slave.
    pub connects: u64,
    /// Catch-ups from the log after a (re)connect that had writes to send.
    pub partial_resyncs: u64,
    /// Full resyncs by snapshot.
    pub full_resyncs: u64,
    /// Whether sync writes currently go on without the slave.
    pub fallback_active: bool,
    /// Why the link last went down, or the slave last refused it, if it
    /// did.
    pub last_error: Option<String>,
    /// How long the sender waits before it dials again (zero while up).
    pub backoff: Duration,
}

/// A node's replication counts over the life of its process, for its
/// metrics: every replicator the node runs (a switchover or a promotion
/// starts a new one) adds to the same totals, so that they never go back
/// as [`LinkStatus`]'s per-replicator counts do.
#[derive(Debug, Default)]
pub struct LinkTotals {
    connects: AtomicU64,
    partial_resyncs: AtomicU64,
    full_resyncs: AtomicU64,
}

impl LinkTotals {
    /// Sessions to a slave that began.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// Catch-ups from the log that had writes to send.
    pub fn partial_resyncs(&self) -> u64 {
        self.partial_resyncs.load(Ordering::Relaxed)
    }

    /// Full resyncs by snapshot.
    pub fn full_resyncs(&self) -> u64 {
        self.full_resyncs.load(Ordering::Relaxed)
    }
}

/// A write for the sender.
#[derive(Debug)]
struct OutgoingWrite {
    seq: u64,
    op: ReplicatedOp,
}

/// What the sender is given to send.
#[derive(Debug)]
enum Outgoing {
    /// A run of written records.
    Writes(Vec<OutgoingWrite>),
    /// The store is durable through this seq.
    Durable(u64),
    /// The slave's probe of this id, to answer.
    Probe(u64),
    /// A switchover's `Handover`, to send after the appends queued before.
    Handover(Replication),
}

/// State the writers, the sender and the ack reader share.
#[derive(Debug)]
struct Link {
    settings: MasterSettings,
    /// Who this master is: its token, address and term, and whom to tell
    /// when it learns it was replaced.
    identity: MasterIdentity,
    /// Whether writes may go ahead: `true` once the master has heard from
    /// its slave's side once (a session, or a failed dial), `false` again
    /// while a switchover fences it. Writers hold it shared while they
    /// stage their write, so fencing waits for them.
    admission: RwLock<Admission>,
    /// Wakes writers waiting for the first contact, and a switchover
    /// waiting for the slave.
    changed: Condvar,
    store: Arc<Store>,
    events: Option<EventSink>,
    /// The process's counts, which this link adds to.
    totals: Arc<LinkTotals>,
    state: Mutex<LinkState>,
    /// Where the store's batches go to the sender; taken on stop, which
    /// ends the sender's wait.
    queue: Mutex<Option<Sender<Outgoing>>>,
    /// Wakes the timeout thread to stop.
    timer: Condvar,
    stop: AtomicBool,
    overflowed: AtomicBool,
}

#[derive(Debug, Default)]
struct LinkState {
    /// The slave's answer to a handover: the seq and its new history (0
    /// for a refusal).
    took_over: Option<(u64, u64)>,
    /// A handover was sent and never answered: the slave may or may not
    /// have taken over. The next session tells: a slave that accepts this
    /// master's stream did not (the fence is lifted then); one that took
    /// over refuses it as a master of a lower term (it steps down).
    handover_unanswered: bool,
    up: bool,
    acked_seq: u64,
    acked_at_ns: u64,
    /// What the slave shows (its `Visible`; its acks when it takes no
    /// commit notices, since it then shows what it applied).
    visible_seq: u64,
    visible_at_ns: u64,
    /// Whether this session's slave takes commit notices.
    notices: bool,
    submitted: VecDeque<(u64, Instant)>,
    connects: u64,
    partial_resyncs: u64,
    full_resyncs: u64,
    fallback_active: bool,
    resync_requested: bool,
    last_error: Option<String>,
    /// The wait before the next dial, while the link is down.
    backoff: Duration,
    /// Forwarded and not yet acknowledged, for the `acked` events.
    unacked_keys: VecDeque<(u64, Vec<u8>)>,
    /// The connected stream, to cut it on stop.
    stream: Option<Transport>,
    /// Sync writes waiting for the slave's ack, by seq: an ack completes
    /// exactly those it covers, the timeout thread those whose time is up.
    awaiting: BTreeMap<u64, Awaiting>,
}

/// Who a master is to its slave, and whom it tells when it learns, from a
/// slave's refusal, that another master replaced it.
pub struct MasterIdentity {
    /// Sent in the handshake, for a slave that wants one.
    pub auth_token: Option<AuthToken>,
    /// The address this master listens on for clients, sent in the
    /// handshake so that a slave can refuse a master it does not follow.
    pub listen_addr: String,
    /// The term this master leads (handshake field 5): a slave that
    /// follows a higher one refuses it.
    pub term: u64,
    /// Told, once, that a node of a higher term refused this master's
    /// stream: the master must step down. Called on the replicator's own
    /// thread: hand the work to another thread.
    pub on_replaced: Option<Box<dyn Fn(Replaced) + Send + Sync>>,
    /// TLS, if this master speaks it: its stream to the slave is then a
    /// TLS connection, the slave's certificate checked against the host of
    /// the slave's address, and this master's own presented.
    pub tls: Option<Arc<ServerTls>>,
}

impl std::fmt::Debug for MasterIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterIdentity")
            .field("listen_addr", &self.listen_addr)
            .field("term", &self.term)
            .finish_non_exhaustive()
    }
}

/// What a master learns when a node of a higher term refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    /// The term that replaced this master's.
    pub term: u64,
    /// The master of that term, as the refusing node named it.
    pub master: String,
}

/// Whether a write may go ahead on a master: [`Replicator::admit_write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Admission {
    /// Not yet: the master has not heard from its slave's side since it
    /// started (it may have been replaced while it was down).
    #[default]
    Starting,
    /// Writes go ahead.
    Open,
    /// A switchover is under way: writes are refused, to retry.
    Fenced,
    /// A node of a higher term refused this master: it is stepping down.
    Replaced,
}

/// Why a handover did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandoverError {
    /// The slave answered that it does not show exactly the seq: nothing
    /// changed there.
    Refused {
        /// What the slave shows.
        shows: u64,
    },
    /// No answer came: the slave may or may not have taken over.
    Unknown(String),
}

/// What a sync write is told once its wait for the slave ends.
pub type AckCompletion = Box<dyn FnOnce(AckOutcome) + Send>;

/// A sync write waiting for the slave's ack.
struct Awaiting {
    deadline: Instant,
    done: AckCompletion,
}

impl std::fmt::Debug for Awaiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Awaiting")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl LinkState {
    /// The newest seq a sync write of `mode` may be answered at, and when
    /// the slave said so.
    fn covered(&self, mode: ReplicationMode) -> (u64, u64) {
        match mode {
            ReplicationMode::SyncVisible => (self.visible_seq, self.visible_at_ns),
            ReplicationMode::Sync | ReplicationMode::Async => (self.acked_seq, self.acked_at_ns),
        }
    }

    /// Takes the waiting writes the slave's ack (or, in `sync-visible`
    /// mode, its `Visible`) covers, to complete once the lock is released.
    fn take_covered(&mut self, mode: ReplicationMode) -> Vec<AckCompletion> {
        let (covered, _) = self.covered(mode);
        let later = self.awaiting.split_off(&(covered + 1));
        Self::completions(std::mem::replace(&mut self.awaiting, later))
    }

    /// Takes every waiting write, to complete once the lock is released.
    fn take_all(&mut self) -> Vec<AckCompletion> {
        Self::completions(std::mem::take(&mut self.awaiting))
    }

    fn completions(waits: BTreeMap<u64, Awaiting>) -> Vec<AckCompletion> {
        waits.into_values().map(|waiting| waiting.done).collect()
    }

    /// Turns the sync fallback on (logged once) for writes going on
    /// without the slave.
    fn fall_back(&mut self, replica: &str) {
        if !self.fallback_active {
            self.fallback_active = true;
            error!(
                "SYNC REPLICATION DEGRADED TO ASYNC: slave {replica} is away; writes are acknowledged \
                 without it (--sync-fallback async) until it catches up"
            );
        }
    }
}

/// Completes `writes` with `outcome`; call without the link's lock.
fn complete(writes: Vec<AckCompletion>, outcome: AckOutcome) {
    for done in writes {
        done(outcome);
    }
}

/// The master's replication: one link to one slave.
#[derive(Debug)]
pub struct Replicator {
    link: Arc<Link>,
    /// The sender, and the timeout thread that ends the sync waits that
    /// pass their timeout; taken by [`stop`](Replicator::stop).
    threads: Mutex<Vec<(&'static str, JoinHandle<()>)>>,
}

impl Replicator {
    /// Starts the sender, which dials the slave at once and keeps dialling
    /// while it is away, presenting `auth_token` and `listen_addr` (this
    /// master's client address) in each handshake, and becomes `store`'s
    /// write observer; counts its sessions and resyncs in `totals` too.
    /// Fails if the store has an observer already.
    pub fn start(
        settings: MasterSettings,
        identity: MasterIdentity,
        store: Arc<Store>,
        events: Option<EventSink>,
        totals: Arc<LinkTotals>,
    ) -> crate::Result<Replicator> {
        let (queue, receiver) = crossbeam_channel::bounded(QUEUE_CAPACITY);
        let link = Arc::new(Link {
            settings,
            identity,
            admission: RwLock::new(Admission::Starting),
            changed: Condvar::new(),
            store,
            events,
            totals,
            state: Mutex::new(LinkState::default()),
            queue: Mutex::new(Some(queue)),
            timer: Condvar::new(),
            stop: AtomicBool::new(false),
            overflowed: AtomicBool::new(false),
        });
        // A weak link: the store must not keep its own replicator alive.
        let observer_link = Arc::downgrade(&link);
        let at = match link.settings.forward {
            Forward::Written => ObservePoint::Written,
            Forward::Durable => ObservePoint::Durable,
        };
        let observing = link.store.observe_writes(
            at,
            Box::new(move |records| {
                if let Some(link) = observer_link.upgrade() {
                    link.submit(records);
                }
            }),
        );
        if !observing {
            return Err(std::io::Error::other("the store already has a write observer").into());
        }
        let durable_link = Arc::downgrade(&link);
        let watching = link.store.observe_durable(Box::new(move |seq| {
            if let Some(link) = durable_link.upgrade() {
                link.enqueue(Outgoing::Durable(seq));
            }
        }));
        if !watching {
            return Err(std::io::Error::other("the store already has a durable observer").into());
        }
        let replicator = Replicator {
            link,
            threads: Mutex::new(Vec::new()),
        };
        let thread_link = replicator.link.clone();
        let sender = std::thread::Builder::new()
            .name("replication".into())
            .spawn(move || run_sender(&thread_link, &receiver))?;
        replicator.threads().push(("replication", sender));
        let timer_link = replicator.link.clone();
        let timer = std::thread::Builder::new()
            .name("replication-timeout".into())
            .spawn(move || run_timer(&timer_link))?;
        replicator.threads().push(("replication timeout", timer));
        Ok(replicator)
    }

    fn threads(&self) -> MutexGuard<'_, Vec<(&'static str, JoinHandle<()>)>> {
        self.threads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The term this master leads.
    pub fn term(&self) -> u64 {
        self.link.identity.term
    }

    /// Whether a write may go ahead now, waiting up to `patience` while
    /// the master starts. A write that goes ahead is staged while the
    /// returned guard lives: a switchover's fence waits for it.
    pub fn admit_write(&self, patience: Duration) -> (Admission, RwLockReadGuard<'_, Admission>) {
        let deadline = Instant::now() + patience;
        loop {
            let admission = self.link.admission();
            if *admission != Admission::Starting || Instant::now() >= deadline {
                return (*admission, admission);
            }
            drop(admission);
            drop(self.link.wait_changed(self.link.lock(), deadline));
        }
    }

    /// Fences the master for a switchover: writes not yet staged are
    /// refused from now on; returns once every write that went ahead is
    /// staged, with the last seq handed out (what the slave must show).
    pub fn fence(&self) -> u64 {
        *self
            .link
            .admission
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Admission::Fenced;
        self.link.store.handed_out_seq()
    }

    /// Lifts the fence of a switchover that rolled back.
    pub fn unfence(&self) {
        let mut admission = self
            .link
            .admission
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if *admission == Admission::Fenced {
            *admission = Admission::Open;
        }
    }

    /// Waits until the slave shows every write up to `seq` (and this
    /// master has made them durable), or `deadline`; returns what the
    /// slave shows.
    pub fn wait_visible(&self, seq: u64, deadline: Instant) -> u64 {
        let mut state = self.link.lock();
        loop {
            let durable = self.link.store.durable_seq() >= seq;
            if (state.visible_seq >= seq && durable) || Instant::now() >= deadline {
                return state.visible_seq;
            }
            state = self.link.wait_changed(state, deadline);
        }
    }

    /// Waits until the slave has acknowledged every write up to `seq`
    /// (applied and durable there), or `deadline`; returns what it has
    /// acknowledged.
    pub fn wait_acked(&self, seq: u64, deadline: Instant) -> u64 {
        let mut state = self.link.lock();
        loop {
            if state.acked_seq >= seq || Instant::now() >= deadline {
                return state.acked_seq;
            }
            state = self.link.wait_changed(state, deadline);
        }
    }

    /// Asks the slave, which shows every write up to `seq`, to become the
    /// master of `term` with `mode` (a `Handover`), and waits for its
    /// answer until `deadline`. Returns the new master's history id.
    pub fn hand_over(
        &self,
        seq: u64,
        term: u64,
        mode: ModeCode,
        deadline: Instant,
    ) -> Result<u64, HandoverError> {
        self.link.lock().took_over = None;
        let sync_timeout_ms =
            u32::try_from(self.link.settings.sync_timeout.as_millis()).unwrap_or(u32::MAX);
        self.link.enqueue(Outgoing::Handover(Replication::Handover {
            seq,
            term,
            mode,
            sync_timeout_ms,
        }));
        let mut state = self.link.lock();
        loop {
            match state.took_over {
                Some((_, history)) if history != 0 => return Ok(history),
                Some((shows, _)) => return Err(HandoverError::Refused { shows }),
                None => {}
            }
            if Instant::now() >= deadline {
                state.handover_unanswered = true;
                return Err(HandoverError::Unknown(
                    "no answer from the slave in time".to_string(),
                ));
            }
            state = self.link.wait_changed(state, deadline);
        }
    }

    /// Stops the sender and the timeout thread, closes the link, ends the
    /// sync waits still open (`TimedOut`) and stops observing the store,
    /// whose next master may observe it. Idempotent; called on drop too.
    /// Never call it on one of the replicator's own threads.
    pub fn stop(&self) {
        self.link.stop.store(true, Ordering::SeqCst);
        drop(
            self.link
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        {
            let state = self.link.lock();
            if let Some(stream) = &state.stream {
                let _ = stream.shutdown(Shutdown::Both);
            }
            // Under the lock: the timeout thread checks `stop` under it too,
            // so it is either about to see the flag or already waiting.
            self.link.timer.notify_all();
            self.link.changed.notify_all();
        }
        for (name, thread) in std::mem::take(&mut *self.threads()) {
            if thread.join().is_err() {
                error!("the {name} thread panicked");
            }
            if name == "replication timeout" {
                let left = self.link.lock().take_all();
                complete(left, AckOutcome::TimedOut);
            }
        }
        self.link.store.stop_observing();
    }

    /// The replication mode.
    pub fn mode(&self) -> ReplicationMode {
        self.link.settings.mode
    }

    /// The settings it was started with.
    pub(crate) fn settings(&self) -> &MasterSettings {
        &self.link.settings
    }

    /// Calls `done` once the slave's ack covers `seq` (at once if it
    /// already does), or once the sync timeout has passed without it. With
    /// `--sync-fallback async`, a slave that is away, or late past the
    /// timeout, gives [`AckOutcome::Degraded`] instead (logged loudly).
    /// `done` runs on the thread that learns the outcome: keep it short.
    pub fn when_acked(&self, seq: u64, done: AckCompletion) {
        let settings = &self.link.settings;
        let mut state = self.link.lock();
        let (covered, at_ns) = state.covered(settings.mode);
        if covered >= seq {
            drop(state);
            return done(AckOutcome::Acked { at_ns });
        }
        if settings.fallback_async && !state.up {
            state.fall_back(&settings.replica);
            drop(state);
            return done(AckOutcome::Degraded);
        }
        // No need to wake the timeout thread: it never sleeps longer than
        // one sync timeout, so it looks again before this deadline.
        let deadline = Instant::now() + settings.sync_timeout;
        state.awaiting.insert(seq, Awaiting { deadline, done });
    }

    /// The link's state now.
    pub fn status(&self) -> LinkStatus {
        let state = self.link.lock();
        LinkStatus {
            replica: self.link.settings.replica.clone(),
            mode: self.link.settings.mode,
            up: state.up,
            acked_seq: state.acked_seq,
            visible_seq: state.visible_seq,
            durable_seq: self.link.store.durable_seq(),
            commit_notices: state.notices,
            lag: state
                .submitted
                .front()
                .map_or(Duration::ZERO, |(_, at)| at.elapsed()),
            connects: state.connects,
            partial_resyncs: state.partial_resyncs,
            full_resyncs: state.full_resyncs,
            fallback_active: state.fallback_active,
            last_error: state.last_error.clone(),
            backoff: state.backoff,
        }
    }
}

impl Drop for Replicator {
    /// Stops the sender and closes the link.
    fn drop(&mut self) {
        self.stop();
    }
}

impl Link {
    fn lock(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleeps on `changed` with `state`'s lock released, until woken,
    /// `deadline`, or 20 ms at most (the store's durable seq moves without
    /// waking anyone here: it is looked at again then).
    fn wait_changed<'a>(
        &self,
        state: MutexGuard<'a, LinkState>,
        deadline: Instant,
    ) -> MutexGuard<'a, LinkState> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.changed
            .wait_timeout(state, left.min(Duration::from_millis(20)))
            .unwrap_or_else(|p| p.into_inner())
            .0
    }

    fn admission(&self) -> RwLockReadGuard<'_, Admission> {
        self.admission.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The first contact with the slave's side (a session, or a failed
    /// dial that did not say this master was replaced): writes may go.
    fn contacted(&self) {
        let mut admission = self.admission.write().unwrap_or_else(|p| p.into_inner());
        if *admission == Admission::Starting {
            *admission = Admission::Open;
            drop(admission);
            let _guard = self.lock();
            self.changed.notify_all();
        }
    }

    /// A node of a higher term refused this master: writes stop for good,
    /// and whoever started it is told, once.
    fn replaced(&self, replaced: Replaced) {
        let mut admission = self.admission.write().unwrap_or_else(|p| p.into_inner());
        if *admission == Admission::Replaced {
            return;
        }
        *admission = Admission::Replaced;
        drop(admission);
        error!(
            "the slave's side says this master was replaced: term {} (ours is {}) is led by {}; \
             this node stops taking writes and steps down",
            replaced.term, self.identity.term, replaced.master
        );
        self.changed.notify_all();
        if let Some(tell) = &self.identity.on_replaced {
            tell(replaced);
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Hands a run of written records to the sender (the store's observer).
    /// Never blocks.
    fn submit(&self, records: Vec<storage::Record>) {
        let now = Instant::now();
        {
            let mut state = self.lock();
            for record in &records {
                if state.submitted.len() < LAG_SAMPLES {
                    state.submitted.push_back((record.seq, now));
                }
            }
        }
        let batch = records
            .into_iter()
            .map(|record| OutgoingWrite {
                seq: record.seq,
                op: wire::to_wire(record.op),
            })
            .collect();
        self.enqueue(Outgoing::Writes(batch));
    }

    /// Hands `item` to the sender. Never blocks: on a full queue the
    /// sender is told to catch up from the log instead (and to send the
    /// durable seq then).
    fn enqueue(&self, item: Outgoing) {
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let Some(queue) = queue.as_ref() else { return };
        match queue.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if !self.overflowed.swap(true, Ordering::SeqCst) {
                    warn!("replication queue full; the slave will be caught up from the log");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// The slave's ack covers every write up to `seq`.
    fn on_ack(&self, seq: u64) {
        let at_ns = now_ns();
        let mut state = self.lock();
        if seq > state.acked_seq {
            state.acked_seq = seq;
            state.acked_at_ns = at_ns;
        }
        if !state.notices && seq > state.visible_seq {
            // A slave without commit notices shows what it applied.
            state.visible_seq = seq;
            state.visible_at_ns = at_ns;
        }
        while state.submitted.front().is_some_and(|(s, _)| *s <= seq) {
            state.submitted.pop_front();
        }
        while let Some((s, _)) = state.unacked_keys.front()
            && *s <= seq
        {
            let (s, key) = state.unacked_keys.pop_front().expect("front exists");
            if let Some(events) = &self.events {
                events.record_at(EventKind::Acked, s, &key, at_ns);
            }
        }
        if state.fallback_active && state.submitted.is_empty() {
            state.fallback_active = false;
            info!(
                "slave {} caught up: sync replication restored",
                self.settings.replica
            );
        }
        let covered = state.take_covered(self.settings.mode);
        drop(state);
        self.changed.notify_all();
        complete(covered, AckOutcome::Acked { at_ns });
    }

    /// The slave shows every write up to `seq` to its readers.
    fn on_visible(&self, seq: u64) {
        let at_ns = now_ns();
        let mut state = self.lock();
        if seq > state.visible_seq {
            state.visible_seq = seq;
            state.visible_at_ns = at_ns;
        }
        let covered = state.take_covered(self.settings.mode);
        drop(state);
        self.changed.notify_all();
        complete(covered, AckOutcome::Acked { at_ns });
    }

    /// The slave answered a handover.
    fn on_took_over(&self, seq: u64, history: u64) {
        self.lock().took_over = Some((seq, history));
        self.changed.notify_all();
    }

    /// A session to the slave began on `stream`; the slave holds writes up
    /// to `slave_last_seq`, of this history or not. The sync writes that
    /// covers are complete.
    fn set_up(&self, stream: Transport, slave_last_seq: u64, same_history: bool, notices: bool) {
        let mut state = self.lock();
        state.up = true;
        state.backoff = Duration::ZERO;
        state.connects += 1;
        self.totals.connects.fetch_add(1, Ordering::Relaxed);
        state.stream = Some(stream);
        state.notices = notices;
        let unanswered = std::mem::take(&mut state.handover_unanswered);
        if same_history && slave_last_seq <= self.store.last_seq() {
            state.acked_seq = slave_last_seq;
            if !notices {
                state.visible_seq = slave_last_seq;
            }
        }
        let covered = state.take_covered(self.settings.mode);
        let (_, at_ns) = state.covered(self.settings.mode);
        drop(state);
        if unanswered {
            self.unfence_after_unanswered_handover();
        }
        complete(covered, AckOutcome::Acked { at_ns });
    }

    /// The slave accepted this master's stream after a handover it never
    /// answered: it did not take over, so the fence is lifted. Called
    /// without the state's lock (a writer holds the admission while it
    /// stages, and may take the state's lock meanwhile).
    fn unfence_after_unanswered_handover(&self) {
        let mut admission = self.admission.write().unwrap_or_else(|p| p.into_inner());
        if *admission == Admission::Fenced {
            *admission = Admission::Open;
            warn!(
                "the slave {} accepted this master's stream again: it did not take over the \
                 unanswered handover; writes resume here",
                self.settings.replica
            );
        }
    }

    /// The session ended (or never began) for `why`; the sender waits
    /// `backoff` before it dials again. Logged when the link was up, or
    /// when the reason is not the last one (a refusing slave is dialled
    /// again and again: said once, until something changes).
    fn set_down(&self, why: String, backoff: Duration) {
        let mut state = self.lock();
        let replica = &self.settings.replica;
        let retry = backoff.as_millis();
        if state.up {
            warn!("replication link to {replica} down: {why}; dialling again in {retry} ms");
        } else if state.last_error.as_deref() != Some(why.as_str()) {
            warn!("replication to slave {replica} failed: {why}; retrying, the next in {retry} ms");
        } else {
            debug!("replication to slave {replica} failed again: {why}");
        }
        state.up = false;
        state.stream = None;
        state.unacked_keys.clear();
        state.last_error = Some(why);
        state.backoff = backoff;
        if self.settings.fallback_async && !state.awaiting.is_empty() {
            state.fall_back(&self.settings.replica);
            let waiting = state.take_all();
            drop(state);
            complete(waiting, AckOutcome::Degraded);
        }
    }
}

/// The timeout thread: ends each sync wait whose sync timeout has passed,
/// with `TimedOut` (or `Degraded` under `--sync-fallback async`). Waits are
/// registered in seq order with one timeout, so the first is the earliest,
/// and a new one never needs an earlier wake-up than the thread has
/// planned: with nothing to wait for it sleeps one sync timeout, so
/// registering a wait costs no wake-up.
fn run_timer(link: &Link) {
    let idle = link.settings.sync_timeout.max(Duration::from_millis(10));
    let mut state = link.lock();
    while !link.stopping() {
        let now = Instant::now();
        let first = state
            .awaiting
            .first_key_value()
            .map(|(&seq, first)| (seq, first.deadline));
        let sleep = match first {
            None => idle,
            Some((_, deadline)) if deadline > now => deadline - now,
            Some(_) => Duration::ZERO,
        };
        if !sleep.is_zero() {
            state = link
                .timer
                .wait_timeout(state, sleep)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            continue;
        }
        let Some(expired) = first.and_then(|(seq, _)| state.awaiting.remove(&seq)) else {
            continue;
        };
        let outcome = if link.settings.fallback_async {
            state.fall_back(&link.settings.replica);
            AckOutcome::Degraded
        } else {
            AckOutcome::TimedOut
        };
        drop(state);
        (expired.done)(outcome);
        state = link.lock();
    }
}

/// The sender thread: connect, serve the session, wait out the backoff,
/// repeat until stopped.
fn run_sender(link: &Arc<Link>, queue: &Receiver<Outgoing>) {
    let mut backoff = MIN_BACKOFF;
    while !link.stopping() {
        let opened = Session::open(link);
        if *link.admission() == Admission::Replaced {
            // Stepping down: whoever started this master stops it.
            return;
        }
        link.contacted();
        let why = match opened {
            Ok(session) => {
                let began = Instant::now();
                let why = session.run(link, queue);
                if began.elapsed() >= STABLE_SESSION {
                    backoff = MIN_BACKOFF;
                }
                why
            }
            Err(e) => crate::error::chain(&e),
        };
        if link.stopping() {
            return;
        }
        link.set_down(why, backoff);
        // Wait out the backoff, dropping queued writes: the log holds them
        // for the catch-up.
        let deadline = Instant::now() + backoff;
        while !link.stopping() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Err(RecvTimeoutError::Disconnected) = queue.recv_timeout(left) {
                return;
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection to the slave.
struct Session {
    writer: BufWriter<Transport>,
    reader: BufReader<Transport>,
    slave_last_seq: u64,
    /// Whether the slave's log is a prefix of this history.
    same_history: bool,
    /// Whether the slave takes commit notices.
    notices: bool,
}

impl Session {
    /// Dials the slave and reads its `Hello`.
    fn open(link: &Link) -> crate::Result<Session> {
        let addr = &link.settings.replica;
        let stream = dial(addr, link.identity.tls.as_deref())?;
        let mut writer = BufWriter::with_capacity(256 * 1024, stream.try_clone()?);
        let mut reader = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
        let (history, notices) = handshake(link, writer.get_mut(), &mut reader)?;
        let (last_seq, replication_id) = read_hello(&mut reader)?;
        let same_history = replication_id == history;
        if !same_history {
            warn!(
                "slave {addr} holds another history (id {replication_id:016x}, up to seq {last_seq}; \
                 ours is {history:016x}): it gets a full resync"
            );
        }
        // The ack reader blocks without a timeout: the link may be idle for
        // as long as there are no writes; stop cuts it with a shutdown.
        stream.set_read_timeout(None)?;
        link.set_up(stream, last_seq, same_history, notices);
        info!(
            "replication link to slave {addr} up{}; the slave holds writes up to seq \
             {last_seq}; commit notices {}",
            if link.identity.tls.is_some() {
                " (TLS)"
            } else {
                ""
            },
            if notices { "on" } else { "off: an older slave" }
        );
        Ok(Session {
            writer,
            reader,
            slave_last_seq: last_seq,
            same_history,
            notices,
        })
    }

    /// Catches the slave up, then forwards live writes until the link or
    /// the master stops. Returns why it ended.
    fn run(self, link: &Arc<Link>, queue: &Receiver<Outgoing>) -> String {
        let Session {
            mut writer,
            reader,
            slave_last_seq,
            same_history,
            notices,
        } = self;
        let broken = Arc::new(AtomicBool::new(false));
        let acks = {
            let (link, broken) = (link.clone(), broken.clone());
            std::thread::Builder::new()
                .name("replication-acks".into())
                .spawn(move || read_acks(&link, reader, &broken))
        };
        let acks = match acks {
            Ok(acks) => acks,
            Err(e) => return format!("cannot start the ack reader: {e}"),
        };
        let sending = Sending {
            link,
            queue,
            notices,
            commit_sent: 0,
        };
        let result = sending.forward(&mut writer, slave_last_seq, same_history, &broken);
        let _ = writer.get_ref().shutdown(Shutdown::Both);
        let ended = acks.join().ok().flatten();
        // What the slave said (a resync request, a close) explains a
        // failed write better than the write's own error.
        match (ended, result) {
            (Some(why), _) => why,
            (None, Err(e)) => crate::error::chain(&e),
            (None, Ok(())) => "the stream ended".to_string(),
        }
    }
}

/// Connects to the slave at `addr`, with the handshake's read timeout;
/// through TLS when `tls` is given (the handshake done, so that a refused
/// certificate is reported here).
fn dial(addr: &str, tls: Option<&ServerTls>) -> crate::Result<Transport> {
    let connect_error = |source| crate::Error::Connect {
        addr: addr.to_string(),
        source,
    };
    let target = addr
        .to_socket_addrs()
        .map_err(connect_error)?
        .next()
        .ok_or_else(|| connect_error(std::io::Error::other("address resolved to nothing")))?;
    let stream =
        TcpStream::connect_timeout(&target, Duration::from_secs(2)).map_err(connect_error)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let Some(tls) = tls else {
        return Ok(Transport::plain(stream));
    };
    let name = crate::tls::server_name(addr).map_err(|reason| crate::Error::Tls {
        addr: addr.to_string(),
        reason,
    })?;
    let transport = Transport::tls_client(stream, tls.connect_config(), name)?;
    transport.handshake().map_err(|e| crate::Error::Tls {
        addr: addr.to_string(),
        reason: crate::tls::explain(&e),
    })?;
    // The link's writes may wait for the slave as long as it needs.
    transport.set_write_timeout(None)?;
    Ok(transport)
}

/// Says this is the replication stream, with the master's history, the
/// auth token and the features it offers, and checks that a slave
/// accepted it. Returns the history ID sent and whether the slave takes
/// commit notices.
fn handshake(
    link: &Link,
    stream: &mut Transport,
    reader: &mut BufReader<Transport>,
) -> crate::Result<(u64, bool)> {
    let addr = &link.settings.replica;
    // A replica stream's handshake carries the master's history ID, so
    // that an empty slave can join it (see PROTOCOL.md).
    let (history, history_ancestors) = wire::history_fields(&link.store.history());
    let fields = HandshakeFields {
        history_id: Some(history),
        history_ancestors,
        auth_token: link
            .identity
            .auth_token
            .as_ref()
            .map(|t| t.as_bytes().to_vec()),
    };
    let stream_fields = StreamFields {
        master_addr: Some(link.identity.listen_addr.clone()),
        features: FEATURE_COMMIT_NOTICES,
        term: link.identity.term,
    };
    let mut hello =
        Handshake::with_fields(Role::Replica, &fields).map_err(protocol::Error::from)?;
    hello
        .extra
        .extend(stream_fields.encode().map_err(protocol::Error::from)?);
    hello.write_to(stream)?;
    let reply = HandshakeReply::read_from(reader)?;
    if let Some(term) = reply.term().filter(|&term| term > link.identity.term) {
        let master = reply.master().unwrap_or_else(|| addr.clone());
        link.replaced(Replaced { term, master });
    }
    if reply.status != HandshakeStatus::Ok {
        let status = format!("{:?}", reply.status).to_lowercase();
        return Err(crate::Error::Refused {
            reason: match reply.reason() {
                Some(why) => format!("slave {addr} refused the stream ({status}): {why}"),
                None => format!("slave {addr} refused the stream ({status})"),
            },
        });
    }
    if reply.node_role != NodeRole::Slave {
        return Err(crate::Error::Refused {
            reason: format!("{addr} is a {:?}, not a slave", reply.node_role).to_lowercase(),
        });
    }
    Ok((history, reply.features() & FEATURE_COMMIT_NOTICES != 0))
}

/// The slave's `Hello`: the last seq it holds, and its history ID.
fn read_hello(reader: &mut BufReader<Transport>) -> crate::Result<(u64, u64)> {
    match protocol::read_frame(reader)? {
        Some(Frame {
            message:
                Message::Replication(Replication::Hello {
                    last_seq,
                    replication_id,
                }),
            ..
        }) => Ok((last_seq, replication_id)),
        _ => Err(crate::Error::UnexpectedReply {
            expected: "the slave's hello",
        }),
    }
}

/// The ack reader: cumulative acks and resync requests from the slave.
/// Returns what the slave said or did to end the session, if anything.
fn read_acks(link: &Link, mut reader: BufReader<Transport>, broken: &AtomicBool) -> Option<String> {
    let why = loop {
        match protocol::read_frame(&mut reader) {
            Ok(Some(Frame {
                message: Message::Replication(Replication::Ack { seq }),
                ..
            })) => link.on_ack(seq),
            Ok(Some(Frame {
                message: Message::Replication(Replication::Visible { seq }),
                ..
            })) => link.on_visible(seq),
            Ok(Some(Frame {
                message: Message::Replication(Replication::Probe { id }),
                ..
            })) => link.enqueue(Outgoing::Probe(id)),
            Ok(Some(Frame {
                message: Message::Replication(Replication::TookOver { seq, history }),
                ..
            })) => link.on_took_over(seq, history),
            Ok(Some(Frame {
                message: Message::Replication(Replication::ResyncRequest { reason }),
                ..
            })) => {
                warn!(
                    "slave {} asks for a full resync: {reason}",
                    link.settings.replica
                );
                link.lock().resync_requested = true;
                break Some(format!("the slave asked for a full resync: {reason}"));
            }
            Ok(Some(frame)) => {
                warn!("unexpected frame of kind {:?} from the slave", frame.kind());
                break Some(format!(
                    "unexpected {:?} frame from the slave",
                    frame.kind()
                ));
            }
            Ok(None) => break Some("the slave closed the stream".to_string()),
            Err(_) if link.stopping() => break None,
            Err(e) => {
                debug!("reading acks: {e}");
                break Some(format!("the slave's stream failed: {e}"));
            }
        }
    };
    broken.store(true, Ordering::SeqCst);
    if let Some(stream) = &link.lock().stream {
        let _ = stream.shutdown(Shutdown::Both);
    }
    why
}

/// What one turn of the sender took from its queue besides writes.
#[derive(Debug, Default)]
struct Round {
    /// The newest durable seq the store reported.
    durable: Option<u64>,
    /// The slave's probes to answer.
    probes: Vec<u64>,
    /// A switchover's handover to send.
    handover: Option<Replication>,
}

/// The sending half of a session: catch-up, then the live stream, with
/// commit notices when the slave takes them.
struct Sending<'a> {
    link: &'a Link,
    queue: &'a Receiver<Outgoing>,
    notices: bool,
    /// The durable seq the last `Commit` named.
    commit_sent: u64,
}

impl Sending<'_> {
    /// Catches the slave up, then forwards what the queue brings until the
    /// link or the master stops.
    fn forward(
        mut self,
        writer: &mut BufWriter<Transport>,
        slave_last_seq: u64,
        same_history: bool,
        broken: &AtomicBool,
    ) -> crate::Result<()> {
        let link = self.link;
        let resync = std::mem::take(&mut link.lock().resync_requested);
        let mut next = if resync || !same_history {
            self.send_snapshot(writer)?
        } else {
            self.catch_up(writer, slave_last_seq)?
        };
        self.send_commit(writer, link.store.durable_seq(), 0)?;
        writer.flush()?;
        let mut waiting: BTreeMap<u64, ReplicatedOp> = BTreeMap::new();
        let mut gap_since: Option<Instant> = None;
        loop {
            if link.stopping() || broken.load(Ordering::SeqCst) {
                return Ok(());
            }
            if link.overflowed.swap(false, Ordering::SeqCst) {
                while self.queue.try_recv().is_ok() {}
                waiting.clear();
                next = self.catch_up_live(writer, next - 1)?;
                self.send_commit(writer, link.store.durable_seq(), 0)?;
                continue;
            }
            let Some(Round {
                durable,
                probes,
                handover,
            }) = self.take_queued(&mut waiting, next)
            else {
                return Ok(());
            };
            let mut sent = false;
            while let Some(op) = waiting.remove(&next) {
                send_append(link, writer, next, op)?;
                next += 1;
                sent = true;
            }
            if let Some(seq) = durable {
                sent |= self.send_commit(writer, seq, 0)?;
            }
            for id in probes {
                // Read after the probe arrived: see `PROTOCOL.md` 7.9.
                sent |= self.send_commit(writer, link.store.durable_seq(), id)?;
            }
            if let Some(message) = handover {
                let seq = message.seq().unwrap_or(0);
                protocol::write_frame(writer, &wire::frame(seq, message))?;
                sent = true;
            }
            if sent {
                writer.flush()?;
            }
            if waiting.is_empty() {
                gap_since = None;
            } else if gap_since.get_or_insert_with(Instant::now).elapsed() > GAP_PATIENCE {
                // A write never came through the queue: the log has it.
                debug!("seq {next} missing from the queue; reading the log");
                next = self.catch_up_live(writer, next - 1)?;
                waiting.retain(|&seq, _| seq >= next);
                gap_since = None;
            }
        }
    }

    /// Waits up to 50 ms for the queue, then takes what it holds: writes
    /// from `next` on go to `waiting` (to send in seq order), the rest
    /// into the round returned. `None` when the queue is closed (stop).
    fn take_queued(&self, waiting: &mut BTreeMap<u64, ReplicatedOp>, next: u64) -> Option<Round> {
        let mut round = Round::default();
        let first = match self.queue.recv_timeout(Duration::from_millis(50)) {
            Ok(first) => first,
            Err(RecvTimeoutError::Timeout) => return Some(round),
            Err(RecvTimeoutError::Disconnected) => return None,
        };
        for item in std::iter::once(first).chain(self.queue.try_iter()) {
            match item {
                Outgoing::Writes(writes) => {
                    for write in writes.into_iter().filter(|w| w.seq >= next) {
                        waiting.insert(write.seq, write.op);
                    }
                }
                Outgoing::Durable(seq) => round.durable = round.durable.max(Some(seq)),
                Outgoing::Probe(id) => round.probes.push(id),
                Outgoing::Handover(message) => round.handover = Some(message),
            }
        }
        Some(round)
    }

    /// Writes a `Commit` of `seq` answering `probe` (0: none) into the
    /// buffer, if the slave takes them and it says something new: a probe
    /// is always answered, a plain notice only when the seq moved. Returns
    /// whether it wrote one.
    fn send_commit(
        &mut self,
        writer: &mut BufWriter<Transport>,
        seq: u64,
        probe: u64,
    ) -> crate::Result<bool> {
        if !self.notices || (probe == 0 && seq <= self.commit_sent) {
            return Ok(false);
        }
        self.commit_sent = self.commit_sent.max(seq);
        let commit = Replication::Commit { seq, probe };
        protocol::write_frame(writer, &wire::frame(seq, commit))?;
        Ok(true)
    }

    /// [`catch_up`](Self::catch_up) in the middle of a session, from
    /// `since`, the last seq sent. Records are sent before they are durable
    /// (and visible to the log's readers), so the log may not have reached
    /// `since` yet: then there is nothing to read, and the records still to
    /// come arrive as usual.
    fn catch_up_live(
        &mut self,
        writer: &mut BufWriter<Transport>,
        since: u64,
    ) -> crate::Result<u64> {
        if since > self.link.store.last_seq() {
            return Ok(since + 1);
        }
        self.catch_up(writer, since)
    }

    /// Sends every record after `since` from the log, or a snapshot if the
    /// log no longer has them all (or never had them: a slave ahead of the
    /// master holds writes the master lost). Returns the next seq to send.
    fn catch_up(&mut self, writer: &mut BufWriter<Transport>, since: u64) -> crate::Result<u64> {
        let link = self.link;
        let records = match link.store.records_since(since) {
            Ok(records) => records,
            Err(e @ (storage::Error::Compacted { .. } | storage::Error::UnknownSeq { .. })) => {
                info!("slave {} needs a full resync: {e}", link.settings.replica);
                return self.send_snapshot(writer);
            }
            Err(e) => return Err(e.into()),
        };
        let until = records.until();
        let mut count = 0u64;
        for record in records {
            let record = record?;
            send_append(link, writer, record.seq, wire::to_wire(record.op))?;
            count += 1;
        }
        writer.flush()?;
        if count > 0 {
            link.lock().partial_resyncs += 1;
            link.totals.partial_resyncs.fetch_add(1, Ordering::Relaxed);
            info!(
                "caught slave {} up from the log: {count} writes, seq {} to {until}",
                link.settings.replica,
                since + 1
            );
        }
        Ok(until.max(since) + 1)
    }

    /// Sends a full snapshot. Returns the next seq to send.
    ///
    /// The store is synced once the snapshot is taken, before it is sent:
    /// under `--fsync every` its newest records may not be durable yet,
    /// and the slave shows a snapshot's contents at once.
    fn send_snapshot(&mut self, writer: &mut BufWriter<Transport>) -> crate::Result<u64> {
        let link = self.link;
        let snapshot = link.store.snapshot();
        link.store.sync()?;
        let seq = snapshot.seq();
        let entries = snapshot.size_hint().0 as u64;
        info!(
            "sending slave {} a full snapshot: {entries} keys as of seq {seq}",
            link.settings.replica
        );
        let begin = Replication::SnapshotBegin {
            seq,
            replication_id: link.store.history_id(),
            entries,
        };
        protocol::write_frame(writer, &wire::frame(seq, begin))?;
        for entry in snapshot {
            let entry = entry?;
            let frame = Replication::SnapshotEntry {
                seq: entry.seq,
                key: entry.key,
                value: entry.value,
            };
            protocol::write_frame(writer, &wire::frame(entry.seq, frame))?;
        }
        protocol::write_frame(writer, &wire::frame(seq, Replication::SnapshotEnd { seq }))?;
        writer.flush()?;
        link.lock().full_resyncs += 1;
        link.totals.full_resyncs.fetch_add(1, Ordering::Relaxed);
        Ok(seq + 1)
    }
}

/// Writes one `Append` into the buffer (flushed by the caller).
fn send_append(
    link: &Link,
    writer: &mut BufWriter<Transport>,
    seq: u64,
    op: ReplicatedOp,
) -> crate::Result<()> {
    let key = link.events.as_ref().map(|_| op.key().to_vec());
    protocol::write_frame(writer, &wire::frame(seq, Replication::Append { seq, op }))?;
    if let (Some(events), Some(key)) = (&link.events, key) {
        events.record(EventKind::Forwarded, seq, &key);
        let mut state = link.lock();
        if state.unacked_keys.len() < LAG_SAMPLES {
            state.unacked_keys.push_back((seq, key));
        }
    }
    Ok(())
}
