//! The slave's side of replication: applying the master's stream.
//!
//! The master connects to the slave's client port with the replica role.
//! The slave says where its store ends (`Hello`), then applies what comes:
//! runs of `Append`s, each run with one commit (one `fdatasync` under
//! `--fsync always`), acknowledged by one cumulative `Ack`; or a full
//! snapshot, which replaces its contents. A write that does not follow the
//! last one (a gap, a divergence) is never skipped: the slave stops
//! applying, logs why, and asks for a full resync.
//!
//! Before it answers the handshake the slave decides whether to follow
//! this master at all ([`SlaveState::admit`]), in this order, and refuses
//! with a status and a reason the master logs (`PROTOCOL.md` 7.1, 7.8):
//! 1. a stream without a history id, or with id 0: `Malformed`;
//! 2. a master that names an address other than `--master-addr`: `Fenced`;
//! 3. while a stream is connected, a master whose history does not
//!    continue the one this store follows (a second master): `Fenced`;
//! 4. a store holding data and a master whose history does not continue it
//!    (no common ancestor, e.g. a master started on an empty or mistyped
//!    data directory): `Diverged`, unless `--on-divergence resync` asks
//!    for the data to be replaced (the slave logs what it discards).
//!
//! One stream at a time: a new connection from the master that continues
//! this store's history (it restarted) replaces the old one, which is cut.
//!
//! A snapshot is checked as it arrives and installed only once whole and
//! valid: a bad one ([`SnapshotFault`]) installs nothing.
//!
//! **Commit notices** (`PROTOCOL.md` 7.9), when both sides announce them
//! in the handshake: the slave writes and syncs each batch at once and
//! acknowledges it as before, but shows it to readers only once the
//! master's `Commit` says it is durable there (the store holds it until
//! then: `Store::publish_through`). It answers with `Visible`, and a
//! prober thread sends `Probe`s every `--probe-interval` (and at once when
//! a bounded read needs a fresher proof): see [`freshness`](super::freshness).
//! With an older master the slave shows each batch once applied.
//!
//! **A delayed slave** (`--apply-delay D`) still applies, syncs and
//! acknowledges each batch at once, but shows it only once `D` has passed
//! since it arrived, and a commit covers it: a timer thread per stream
//! shows what has waited long enough (see [`delay`](super::delay)). Its
//! `Visible`s, and so `sync-visible` writes, come `D` later; `sync` writes
//! are acknowledged on its sync as before. Its staleness proofs wait for
//! the writes to show, so its bound is never below `D`. A full resync and
//! a handover show at once what they cover.

use std::collections::{HashSet, VecDeque};
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use duokv_protocol::{
    self as protocol, FEATURE_COMMIT_NOTICES, Frame, HandshakeStatus, Message, ReplicatedOp,
    Replication,
};
use duokv_storage::{self as storage, History, Kinship, Record, SnapshotEntry, Store};
use log::{debug, error, info, warn};

use super::delay::DelaySchedule;
use super::freshness::Freshness;
use super::wire;
use crate::clock::now_ns;
use crate::event_log::{EventKind, EventSink};
use crate::transport::Transport;

/// Appends applied with one commit at most.
const MAX_BATCH: usize = 4096;
/// The shortest time between two probes a read asks for.
const MIN_PROBE_GAP: Duration = Duration::from_micros(200);
/// How often a slave probes its master when no read asks, by default.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(5);

/// What a slave holding data does when its master's history does not
/// continue its own. Refusing is the default: replacing the data must be
/// asked for by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDivergence {
    /// Take a full snapshot from the master, replacing its contents; the
    /// slave logs what it discards (keys, history id, last seq).
    Resync,
    /// Refuse the stream (handshake status `Diverged`, with the reason) and
    /// keep its contents until an operator decides.
    #[default]
    Refuse,
}

impl std::str::FromStr for OnDivergence {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "resync" => Ok(OnDivergence::Resync),
            "refuse" => Ok(OnDivergence::Refuse),
            _ => Err(format!("`{text}`: use resync or refuse")),
        }
    }
}

/// The slave's replication state: which stream is current, whom it
/// follows, and the policy for a divergent master.
#[derive(Debug, Default)]
pub struct SlaveState {
    current: Mutex<Option<(u64, TcpStream)>>,
    next_id: Mutex<u64>,
    on_divergence: OnDivergence,
    /// The master it was told to follow (`--master-addr`).
    master_addr: String,
    /// The last refusal, logged once until it changes, and shown by `info`.
    last_refusal: Mutex<Option<String>>,
    /// Wakes reads waiting for a write to be applied.
    applied: AppliedSignal,
    /// What the slave can prove about its staleness.
    freshness: Freshness,
    /// How often the prober probes when no read asks.
    probe_interval: Duration,
    /// How long each write waits, once applied, before it is shown
    /// (`--apply-delay`; zero for none).
    apply_delay: Duration,
    /// The term it follows: masters of a lower one are refused.
    term: AtomicU64,
    /// The node is leaving the slave's role: no stream is admitted any
    /// more.
    closed: std::sync::atomic::AtomicBool,
}

/// What a read that waits for a write (`Read` with `after`) sleeps on: the
/// applier signals it after each batch or snapshot it applies.
///
/// The count of waiting reads is under the mutex, and a read counts itself
/// before it checks what is applied, so the applier, which takes the mutex
/// after it applied, either sees it counted (and wakes it) or the read sees
/// the batch. The applier notifies only when someone waits: a stream
/// without such reads pays an uncontended lock per batch, no system call.
#[derive(Debug, Default)]
struct AppliedSignal {
    waiting: Mutex<usize>,
    changed: Condvar,
}

/// What a master says about itself in its replication handshake.
#[derive(Debug, Clone)]
pub struct MasterClaim {
    /// Its history: id (0 if it gave none) and ancestors.
    pub history: History,
    /// The address it listens on for clients, if it said (handshake field
    /// tag 4; older masters do not).
    pub addr: Option<String>,
    /// The stream features it offers (handshake field tag 6).
    pub features: u32,
    /// Its term (handshake field tag 5; 0 from older masters).
    pub term: u64,
}

/// Why a slave refuses a master's stream, before anything is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The handshake lacks what a stream needs (a history id other than 0).
    Malformed(String),
    /// The master's history does not continue this store's data.
    Diverged(String),
    /// The slave follows another master, or this is not the master it was
    /// told to follow.
    Fenced(String),
    /// The master's term is below the one this slave follows: another
    /// master replaced it. The refusal names that term and its master, so
    /// the stale master learns to step down.
    Stale {
        /// Why, for both logs.
        reason: String,
        /// The term this slave follows.
        term: u64,
        /// The master of that term.
        master: String,
    },
}

impl Refusal {
    /// The handshake status that carries it.
    pub fn status(&self) -> HandshakeStatus {
        match self {
            Refusal::Malformed(_) => HandshakeStatus::Malformed,
            Refusal::Diverged(_) => HandshakeStatus::Diverged,
            Refusal::Fenced(_) | Refusal::Stale { .. } => HandshakeStatus::Fenced,
        }
    }

    /// The reason, lowercase, for both sides' logs.
    pub fn reason(&self) -> &str {
        match self {
            Refusal::Malformed(why)
            | Refusal::Diverged(why)
            | Refusal::Fenced(why)
            | Refusal::Stale { reason: why, .. } => why,
        }
    }
}

/// A stream the slave admitted: it is the current one until released.
#[derive(Debug)]
pub struct Admitted {
    id: u64,
    history_id: u64,
    features: u32,
}

impl Admitted {
    /// The stream features both sides use: those the master offered that
    /// this slave knows. The handshake reply names them.
    pub fn features(&self) -> u32 {
        self.features
    }
}

/// A slave's own settings (its flags), beside whom it follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaveSettings {
    /// What to do when the master's history is not this store's.
    pub on_divergence: OnDivergence,
    /// How often to probe the master for the staleness bound when no read
    /// asks (`PROTOCOL.md` 7.9).
    pub probe_interval: Duration,
    /// How long each write waits, once applied, before readers see it
    /// (`--apply-delay`; zero for none).
    pub apply_delay: Duration,
}

impl Default for SlaveSettings {
    fn default() -> Self {
        SlaveSettings {
            on_divergence: OnDivergence::default(),
            probe_interval: DEFAULT_PROBE_INTERVAL,
            apply_delay: Duration::ZERO,
        }
    }
}

impl SlaveState {
    /// A slave of the master at `master_addr` with `settings` (a probe
    /// interval of at least 1 ms), following `term`.
    pub fn new(master_addr: &str, settings: SlaveSettings, term: u64) -> Self {
        SlaveState {
            on_divergence: settings.on_divergence,
            master_addr: master_addr.to_string(),
            probe_interval: settings.probe_interval.max(Duration::from_millis(1)),
            apply_delay: settings.apply_delay,
            term: AtomicU64::new(term),
            ..SlaveState::default()
        }
    }

    /// How long each write waits, once applied, before it is shown (zero
    /// for a slave without `--apply-delay`).
    pub fn apply_delay(&self) -> Duration {
        self.apply_delay
    }

    /// The term this slave follows.
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::SeqCst)
    }

    /// The master's address it follows.
    pub fn master_addr(&self) -> &str {
        &self.master_addr
    }

    /// No stream is admitted from now on; the current one goes on.
    pub fn stop_admitting(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Admits streams again: a promotion that failed leaves the node the
    /// slave it was.
    pub fn admit_again(&self) {
        self.closed.store(false, Ordering::SeqCst);
    }

    /// Stops following: no stream is admitted from now on, the current
    /// one is cut, and this returns once it has ended (so that nothing is
    /// applied after), or after `patience`. Returns whether it ended.
    pub fn close(&self, patience: Duration) -> bool {
        self.stop_admitting();
        if let Some((_, stream)) = &*self.current.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let deadline = Instant::now() + patience;
        while self.connected() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Decides whether to follow the master that sent `claim` on `stream`
    /// (see the module docs for the checks and their order) and, if so,
    /// makes `stream` the current one, cutting the previous stream. Called
    /// before the handshake is answered: a refusal is the reply's status.
    /// A refusal is logged once until it changes.
    pub fn admit(
        &self,
        store: &Store,
        stream: &TcpStream,
        peer: &str,
        claim: &MasterClaim,
    ) -> Result<Admitted, Refusal> {
        // Under the lock: two masters dialling at once are decided one
        // after the other, the second seeing the first as connected.
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.load(Ordering::SeqCst) {
            return Err(Refusal::Fenced(
                "this node is leaving the slave's role (a switchover or a promotion)".into(),
            ));
        }
        let decided = self
            .fence(store, current.is_some(), claim)
            .and_then(|()| join_history(store, self.on_divergence, &claim.history, peer));
        if let Err(refusal) = decided {
            self.note_refusal(peer, &refusal);
            return Err(refusal);
        }
        self.follow_term(store, claim.term);
        *self.last_refusal.lock().unwrap_or_else(|p| p.into_inner()) = None;
        // The store may follow a new history now: reads waiting for a
        // token of it can look again.
        self.wake_reads();
        let clone = stream
            .try_clone()
            .map_err(|e| Refusal::Malformed(format!("the slave cannot take the stream: {e}")))?;
        let id = {
            let mut next = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            *next
        };
        if let Some((_, old)) = current.replace((id, clone)) {
            info!("replication stream from {peer} replaces the previous one");
            let _ = old.shutdown(Shutdown::Both);
        }
        Ok(Admitted {
            id,
            history_id: claim.history.id,
            features: claim.features & FEATURE_COMMIT_NOTICES,
        })
    }

    /// Checks 1 to 3 of the module docs: a history id, the master's
    /// address, one master at a time.
    ///
    /// The seam for a later switchover: a master that does not continue
    /// the followed history is refused while another is connected. A
    /// deliberate move to a new master will carry a term (an epoch that
    /// only increases, `PROTOCOL.md` 7.8) in the handshake; a claim with a
    /// higher term than the one this slave follows will pass here.
    fn fence(&self, store: &Store, connected: bool, claim: &MasterClaim) -> Result<(), Refusal> {
        let theirs = claim.history.id;
        if theirs == 0 {
            return Err(Refusal::Malformed(
                "a replication handshake must carry a history id other than 0".into(),
            ));
        }
        if let Some(addr) = &claim.addr
            && !same_address(&self.master_addr, addr)
        {
            return Err(Refusal::Fenced(format!(
                "this slave follows the master at {} (--master-addr), not one listening on {addr}",
                self.master_addr
            )));
        }
        let followed = self.term();
        if claim.term < followed {
            return Err(Refusal::Stale {
                reason: format!(
                    "this slave follows term {followed}, led by {}; a master of term {} was \
                     replaced",
                    self.master_addr, claim.term
                ),
                term: followed,
                master: self.master_addr.clone(),
            });
        }
        if claim.term > followed {
            // A newer master: it takes the slave over, whatever streams.
            return Ok(());
        }
        let own = store.history_id();
        let related = claim
            .history
            .kinship_of(&store.history(), store.applied_seq());
        if connected && own != 0 && matches!(related, Kinship::Unrelated) {
            return Err(Refusal::Fenced(format!(
                "this slave follows another master now (history {own:016x}); history \
                 {theirs:016x} does not continue it"
            )));
        }
        Ok(())
    }

    /// Follows `term` from now on, if it is newer, and records it in the
    /// data dir (the `ROLE` file): a restart keeps refusing older masters.
    fn follow_term(&self, store: &Store, term: u64) {
        if self.term.fetch_max(term, Ordering::SeqCst) >= term {
            return;
        }
        info!(
            "following the master at {} in term {term} from now on",
            self.master_addr
        );
        let record = crate::role_record::RoleRecord::slave(term, &self.master_addr);
        if let Err(e) = crate::role_record::save(store.dir(), &record) {
            error!(
                "cannot record term {term} in {}: {}; a restart would forget it",
                store.dir().display(),
                crate::error::chain(&e)
            );
        }
    }

    /// Logs a refusal once until it changes (a refused master redials).
    fn note_refusal(&self, peer: &str, refusal: &Refusal) {
        let mut last = self.last_refusal.lock().unwrap_or_else(|p| p.into_inner());
        let why = refusal.reason();
        if last.as_deref() != Some(why) {
            error!("refused the replication stream from {peer}: {why}");
            *last = Some(why.to_string());
        } else {
            debug!("refused the replication stream from {peer} again: {why}");
        }
    }

    /// Why the last master was refused, until one is admitted.
    pub fn last_refusal(&self) -> Option<String> {
        self.last_refusal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn release(&self, id: u64) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current
            .as_ref()
            .is_some_and(|(current_id, _)| *current_id == id)
        {
            *current = None;
        }
    }

    /// Waits until `reached` says yes, checking it after every batch or
    /// snapshot applied, or until `deadline`. Holds no lock while it
    /// sleeps, and wakes for nothing else but [`wake_reads`](Self::wake_reads).
    pub(crate) fn wait_applied(&self, reached: impl Fn() -> bool, deadline: Instant) {
        let signal = &self.applied;
        let mut waiting = signal.waiting.lock().unwrap_or_else(|p| p.into_inner());
        *waiting += 1;
        loop {
            let now = Instant::now();
            if reached() || now >= deadline {
                break;
            }
            waiting = signal
                .changed
                .wait_timeout(waiting, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        *waiting -= 1;
    }

    /// Wakes the reads waiting in [`wait_applied`](Self::wait_applied), to
    /// check again: after something was applied, or at shutdown.
    pub(crate) fn wake_reads(&self) {
        let waiting = self
            .applied
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *waiting > 0 {
            self.applied.changed.notify_all();
        }
    }

    /// How many reads wait for a write to be applied, for `info`.
    pub(crate) fn reads_waiting(&self) -> usize {
        *self
            .applied
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The send instant of the newest probe whose answer this slave shows
    /// (see [`freshness`](super::freshness)): its data holds every write
    /// the master had made durable then. `None` until one is answered.
    pub(crate) fn fresh_since(&self) -> Option<Instant> {
        self.freshness.fresh_since()
    }

    /// The staleness this slave can prove now, if any.
    pub fn staleness_bound(&self) -> Option<Duration> {
        self.freshness.bound()
    }

    /// The master's newest durable seq this slave has heard of.
    pub fn master_durable_seq(&self) -> u64 {
        self.freshness.master_durable()
    }

    /// Asks for a probe now: a read needs a fresher proof than the last.
    pub(crate) fn want_probe(&self) {
        self.freshness.want_probe();
    }

    /// How often the slave probes its master when no read asks.
    pub fn probe_interval(&self) -> Duration {
        self.probe_interval
    }

    /// Whether a master is connected now.
    pub fn connected(&self) -> bool {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

/// Serves an [admitted](SlaveState::admit) replication stream from the
/// master until it ends. With commit notices, a prober thread sends the
/// stream's probes meanwhile.
pub fn serve_stream<R: Read>(
    store: &Store,
    state: &SlaveState,
    events: Option<&EventSink>,
    (stream, reader): (&Transport, &mut BufReader<R>),
    peer: &str,
    admitted: Admitted,
    take_over: &TakeOver<'_>,
) {
    let id = admitted.id;
    let notices = admitted.features & FEATURE_COMMIT_NOTICES != 0;
    info!(
        "replication stream from master {peer}; this store holds writes up to seq {} (visible \
         up to {}); commit notices {}",
        store.applied_seq(),
        store.last_seq(),
        if notices {
            "on"
        } else {
            "off: an older master"
        }
    );
    let writer = StreamWriter {
        stream,
        one_at_a_time: Mutex::new(()),
    };
    let gate = Gate::new(store, state, events, &writer, notices);
    let applier = Applier {
        store,
        state,
        events,
        writer: &writer,
        reader,
        peer,
        master_history: admitted.history_id,
        notices,
        halted: false,
        pending: None,
        commits: Vec::new(),
        gate: &gate,
        take_over,
    };
    let said_hello = say_hello(store, &writer);
    let ended = std::thread::scope(|scope| {
        said_hello?;
        // Only after the `Hello`, which must be the stream's first frame.
        if notices {
            state.freshness.start();
            let prober = std::thread::Builder::new()
                .name("replication-probe".into())
                .spawn_scoped(scope, || run_prober(state, &writer));
            if let Err(e) = prober {
                warn!("cannot start the prober: {e}; reads with a staleness bound will be refused");
            }
        }
        if gate.delayed() {
            std::thread::Builder::new()
                .name("replication-delay".into())
                .spawn_scoped(scope, || gate.run_timer())?;
        }
        let ended = apply_stream(applier);
        state.freshness.stop();
        // The prober or the timer may be writing: cut the stream so a
        // blocked write returns, before the scope joins them.
        let _ = stream.shutdown(Shutdown::Both);
        gate.stop();
        ended
    });
    match ended {
        Err(e) => warn!(
            "replication stream from {peer} ended: {}",
            crate::error::chain(&e)
        ),
        Ok(()) => info!("replication stream from {peer} closed"),
    }
    // Bounded reads waiting for a proof learn that none will come.
    state.wake_reads();
    state.release(id);
}

/// Says where this store ends (`Hello`), the stream's first frame; the
/// stream may then be idle as long as the master takes no writes.
fn say_hello(store: &Store, writer: &StreamWriter<'_>) -> crate::Result<()> {
    writer.stream.set_read_timeout(None)?;
    writer.send(Replication::Hello {
        last_seq: store.applied_seq(),
        replication_id: store.history_id(),
    })
}

/// The prober: a `Probe` each time one is due, until the stream ends.
fn run_prober(state: &SlaveState, writer: &StreamWriter<'_>) {
    while let Some(id) = state
        .freshness
        .next_probe(state.probe_interval, MIN_PROBE_GAP)
    {
        if let Err(e) = writer.send(Replication::Probe { id }) {
            debug!("probe {id} not sent: {e}");
            return;
        }
    }
}

/// Gives up a stream admitted but never served (its handshake reply could
/// not be sent).
pub fn release(state: &SlaveState, admitted: Admitted) {
    state.release(admitted.id);
}

/// Whether `announced`, the address a master says it listens on, is the
/// master at `configured` (`--master-addr`). A master listening on every
/// interface (`0.0.0.0`, `::`) is judged by its port; a configured name is
/// resolved. When either cannot be read as an address, only the same text
/// matches.
fn same_address(configured: &str, announced: &str) -> bool {
    if configured == announced {
        return true;
    }
    let Ok(announced) = announced.parse::<SocketAddr>() else {
        return false;
    };
    let Ok(resolved) = configured.to_socket_addrs() else {
        return false;
    };
    resolved.into_iter().any(|candidate| {
        candidate.port() == announced.port()
            && (announced.ip().is_unspecified() || candidate.ip() == announced.ip())
    })
}

/// Check 4 of the module docs: the master's history against this
/// store's, before anything is applied:
/// - a store whose log is a prefix of the master's (empty, of the same
///   history, or of an ancestor that ended at or after this store's last
///   write: the master restarted) takes the master's history and is caught
///   up from where it ends;
/// - a store of an ancestor that goes past the fork point holds writes the
///   master lost in a crash before its own sync (never acknowledged to a
///   client): it keeps its ID, so the master sees another history in its
///   `Hello` and replaces the contents by a full resync;
/// - a store of an unrelated history (a master started on an empty or
///   mistyped directory) is refused, or, with `--on-divergence resync`,
///   fully resynced, logging what it discards.
fn join_history(
    store: &Store,
    policy: OnDivergence,
    master_history: &History,
    peer: &str,
) -> Result<(), Refusal> {
    let own = store.history_id();
    let last_seq = store.applied_seq();
    let theirs = master_history.id;
    if theirs == own {
        return Ok(());
    }
    let adopt = || {
        store.adopt_history(master_history).map_err(|e| {
            Refusal::Malformed(format!("the slave cannot take history {theirs:016x}: {e}"))
        })
    };
    if last_seq == 0 {
        return adopt();
    }
    super::discarded::save_before_resync(
        store,
        policy == OnDivergence::Resync,
        master_history,
        peer,
    )
    .map_err(|e| Refusal::Diverged(e.reason()))?;
    // Seeing through a fork that wrote nothing: a master restarted (or a
    // node promoted) forks a history before it writes.
    match master_history.kinship_of(&store.history(), last_seq) {
        Kinship::Current => return adopt(),
        Kinship::Ancestor { last_seq: end } if last_seq <= end => {
            info!(
                "master {peer} continues this store's history {own:016x} (up to seq {end}) as \
                 {theirs:016x}; going on from seq {last_seq}"
            );
            return adopt();
        }
        Kinship::Ancestor { last_seq: end } => {
            warn!(
                "this store holds {} writes after seq {end}, where master {peer}'s history \
                 left this store's ({own:016x}): writes that master lost in a crash before they \
                 were durable there (never acknowledged), or, after a promotion, writes it never \
                 received (possibly acknowledged in async mode); they were saved (see above) and \
                 are replaced by a full resync",
                last_seq - end
            );
            return Ok(());
        }
        Kinship::Unrelated => {}
    }
    let keys = store.stats().live_keys;
    match policy {
        OnDivergence::Resync => {
            warn!(
                "master {peer} has another history ({theirs:016x}) than this store: \
                 --on-divergence resync discards this store's {keys} keys of history \
                 {own:016x} (writes up to seq {last_seq}) for a full resync"
            );
            Ok(())
        }
        OnDivergence::Refuse => Err(Refusal::Diverged(format!(
            "the slave holds {keys} keys of history {own:016x} (writes up to seq {last_seq}), \
             which master history {theirs:016x} does not continue; following it would erase \
             them; check the master's --data-dir, or restart the slave with --on-divergence \
             resync to replace its data"
        ))),
    }
}

/// Applies the master's frames, after the slave's `Hello`, until the
/// stream ends (`Ok`) or fails.
fn apply_stream<R: Read>(mut applier: Applier<'_, R>) -> crate::Result<()> {
    let peer = applier.peer;
    while let Some(frame) = applier.next_frame()? {
        match frame.message {
            Message::Replication(Replication::Append { seq, op }) => {
                let arrived = Instant::now();
                let batch = applier.read_batch(seq, op)?;
                applier.apply(&batch, arrived)?;
                applier.take_commits()?;
            }
            Message::Replication(Replication::Commit { seq, probe }) if applier.notices => {
                applier.commits.push((seq, probe));
                applier.take_commits()?;
            }
            Message::Replication(Replication::Handover {
                seq,
                term,
                mode,
                sync_timeout_ms,
            }) => {
                let handover = Handover {
                    seq,
                    term,
                    mode,
                    sync_timeout: Duration::from_millis(u64::from(sync_timeout_ms)),
                };
                if applier.hand_over(&handover)? {
                    return Ok(());
                }
            }
            Message::Replication(Replication::SnapshotBegin {
                seq,
                entries,
                replication_id,
            }) => {
                if !applier.install_snapshot(seq, entries, replication_id)? {
                    return Ok(());
                }
            }
            other => {
                warn!(
                    "replication stream from {peer}: unexpected frame of kind {:?}",
                    other.kind()
                );
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The slave's half of the stream's socket, shared by the applier (acks,
/// `Visible`) and the prober (`Probe`): one frame at a time.
struct StreamWriter<'a> {
    stream: &'a Transport,
    one_at_a_time: Mutex<()>,
}

impl StreamWriter<'_> {
    fn send(&self, message: Replication) -> crate::Result<()> {
        let _turn = self.one_at_a_time.lock().unwrap_or_else(|p| p.into_inner());
        let seq = message.seq().unwrap_or(0);
        let mut stream = self.stream;
        protocol::write_frame(&mut stream, &wire::frame(seq, message))?;
        stream.flush()?;
        Ok(())
    }
}

/// The one place that shows a stream's applied writes to readers: it
/// publishes them in the store, logs their `visible` events, wakes the
/// reads waiting and tells the master (`Visible`, for its `remote_apply`
/// writes). The applier calls it after each batch and commit; a delayed
/// slave's timer thread calls it when writes have waited long enough.
struct Gate<'a> {
    store: &'a Store,
    state: &'a SlaveState,
    events: Option<&'a EventSink>,
    writer: &'a StreamWriter<'a>,
    /// Both sides use commit notices: a write is shown once a `Commit`
    /// covers it, not once applied.
    notices: bool,
    book: Mutex<GateBook>,
    /// Wakes the timer: a batch was scheduled, or the stream ended.
    changed: Condvar,
}

struct GateBook {
    /// The newest seq shown to readers, as last told to the master.
    shown: u64,
    /// Applied writes not yet shown, for their `visible` events (only
    /// with an event log).
    held_keys: VecDeque<(u64, Vec<u8>)>,
    /// How far writes may be shown as far as the master is concerned: its
    /// newest `Commit` (with notices), or the last write applied.
    limit: u64,
    /// The highest limit given to the store so far.
    published: u64,
    /// A delayed slave's batches waiting for their time.
    schedule: Option<DelaySchedule>,
    /// The stream ended: the timer stops.
    stopped: bool,
}

impl<'a> Gate<'a> {
    fn new(
        store: &'a Store,
        state: &'a SlaveState,
        events: Option<&'a EventSink>,
        writer: &'a StreamWriter<'a>,
        notices: bool,
    ) -> Gate<'a> {
        let shown = store.last_seq();
        let schedule = (!state.apply_delay.is_zero()).then(|| {
            let mut schedule = DelaySchedule::new(state.apply_delay, shown);
            // Writes held across a restart wait a whole delay again: when
            // they arrived is not known.
            schedule.arrived(store.applied_seq(), Instant::now());
            schedule
        });
        Gate {
            store,
            state,
            events,
            writer,
            notices,
            book: Mutex::new(GateBook {
                shown,
                held_keys: VecDeque::new(),
                limit: shown,
                published: shown,
                schedule,
                stopped: false,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateBook> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether writes wait `--apply-delay` (and a timer shows them).
    fn delayed(&self) -> bool {
        !self.state.apply_delay.is_zero()
    }

    /// `batch` is applied, having arrived at `arrived`; publishes what may
    /// be shown now, and returns how far readers see.
    fn applied(&self, batch: &[Record], arrived: Instant) -> crate::Result<u64> {
        let Some(last) = batch.last().map(|r| r.seq) else {
            return Ok(self.store.last_seq());
        };
        let mut book = self.lock();
        if self.events.is_some() {
            book.held_keys
                .extend(batch.iter().map(|r| (r.seq, r.op.key().to_vec())));
        }
        if !self.notices {
            book.limit = book.limit.max(last);
        }
        if let Some(schedule) = &mut book.schedule {
            schedule.arrived(last, arrived);
            self.changed.notify_all();
        }
        self.publish(&mut book)
    }

    /// The master's `Commit` says writes up to `seq` are durable there;
    /// publishes what may be shown now, and returns how far readers see.
    fn committed(&self, seq: u64) -> crate::Result<u64> {
        let mut book = self.lock();
        book.limit = book.limit.max(seq);
        self.publish(&mut book)
    }

    /// Gives the store the newest limit allowed now: the master's, and
    /// for a delayed slave no later than its ripe writes. Returns how far
    /// readers see.
    fn publish(&self, book: &mut GateBook) -> crate::Result<u64> {
        let allowed = match &mut book.schedule {
            Some(schedule) => book.limit.min(schedule.ripen(Instant::now())),
            None => book.limit,
        };
        if allowed > book.published {
            book.published = allowed;
            return Ok(self.store.publish_through(allowed)?);
        }
        Ok(self.store.last_seq())
    }

    /// Readers now see writes up to `visible`: logs them, wakes the reads
    /// waiting, and tells the master.
    fn show(&self, visible: u64) -> crate::Result<()> {
        let mut book = self.lock();
        self.show_locked(&mut book, visible)
    }

    fn show_locked(&self, book: &mut GateBook, visible: u64) -> crate::Result<()> {
        if visible <= book.shown {
            return Ok(());
        }
        book.shown = visible;
        if let Some(events) = self.events {
            let at_ns = now_ns();
            while let Some((seq, _)) = book.held_keys.front()
                && *seq <= visible
            {
                let (seq, key) = book.held_keys.pop_front().expect("front exists");
                events.record_at(EventKind::Visible, seq, &key, at_ns);
            }
        }
        self.state.freshness.on_visible(visible);
        self.state.wake_reads();
        if self.notices {
            self.writer.send(Replication::Visible { seq: visible })?;
        }
        Ok(())
    }

    /// A full resync replaced the store's contents with a snapshot as of
    /// `seq`: everything up to it is shown at once.
    fn replaced(&self, seq: u64) {
        let mut book = self.lock();
        book.held_keys.clear();
        book.shown = 0;
        book.limit = book.limit.max(seq);
        book.published = self.store.last_seq();
        if let Some(schedule) = &mut book.schedule {
            schedule.release_through(seq);
        }
    }

    /// A delayed slave's timer: shows each batch once its time has come
    /// (and a commit covers it), until the stream ends. A failure (the
    /// store's, the socket's) cuts the stream, which ends the applier too.
    fn run_timer(&self) {
        let mut book = self.lock();
        loop {
            if book.stopped {
                return;
            }
            let now = Instant::now();
            let due = book.schedule.as_ref().and_then(DelaySchedule::next_due);
            match due {
                Some(due) if due <= now => {
                    let shown = self
                        .publish(&mut book)
                        .and_then(|visible| self.show_locked(&mut book, visible));
                    if let Err(e) = shown {
                        warn!(
                            "the delayed slave could not show the writes due: {}; closing the \
                             stream",
                            crate::error::chain(&e)
                        );
                        let _ = self.writer.stream.shutdown(Shutdown::Both);
                        return;
                    }
                }
                Some(due) => {
                    book = self
                        .changed
                        .wait_timeout(book, due - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                None => {
                    book = self.changed.wait(book).unwrap_or_else(|p| p.into_inner());
                }
            }
        }
    }

    /// Stops the timer (the stream ended).
    fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }
}

/// One stream's frames being applied to the store.
struct Applier<'a, R> {
    store: &'a Store,
    /// Whose waiting reads to wake after each batch.
    state: &'a SlaveState,
    events: Option<&'a EventSink>,
    writer: &'a StreamWriter<'a>,
    reader: &'a mut BufReader<R>,
    peer: &'a str,
    /// The history id the master's handshake carried, which its snapshots
    /// must carry too.
    master_history: u64,
    /// Both sides use commit notices: a write is shown once a `Commit`
    /// covers it, not once applied.
    notices: bool,
    /// A write did not follow the last one: nothing is applied until the
    /// full resync asked for arrives.
    halted: bool,
    /// A frame read while taking a batch, which is not part of it.
    pending: Option<Frame>,
    /// `Commit`s read while taking a batch, to take once it is applied.
    commits: Vec<(u64, u64)>,
    /// What shows the applied writes to readers.
    gate: &'a Gate<'a>,
    /// Makes this node the master, in a switchover.
    take_over: &'a TakeOver<'a>,
}

/// A master's request that this slave take its role over (`PROTOCOL.md`
/// 7.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handover {
    /// The master's last write: this slave must show exactly this far.
    pub seq: u64,
    /// The new term.
    pub term: u64,
    /// How the new master is to replicate.
    pub mode: duokv_protocol::ModeCode,
    /// Its sync timeout.
    pub sync_timeout: Duration,
}

/// Makes this node the master of a handover; returns its new history id,
/// or why it could not. Given by the server, which owns the node's role.
pub type TakeOver<'a> = dyn Fn(&Handover) -> Result<u64, String> + 'a;

impl<R: Read> Applier<'_, R> {
    /// The next frame; `None` when the master closed the stream.
    fn next_frame(&mut self) -> crate::Result<Option<Frame>> {
        match self.pending.take() {
            Some(frame) => Ok(Some(frame)),
            None => Ok(protocol::read_frame(self.reader)?),
        }
    }

    /// The `Append` of `seq` and every `Append` already buffered after it,
    /// to apply with one commit. `Commit`s among them are kept for after
    /// the batch, so that they do not cut it short.
    fn read_batch(&mut self, seq: u64, op: ReplicatedOp) -> crate::Result<Vec<Record>> {
        let mut batch = vec![record(seq, op, self.events)];
        while batch.len() < MAX_BATCH && Frame::check(self.reader.buffer()).is_ok() {
            let Some(next) = protocol::read_frame(self.reader)? else {
                break;
            };
            match next.message {
                Message::Replication(Replication::Append { seq, op }) => {
                    batch.push(record(seq, op, self.events))
                }
                Message::Replication(Replication::Commit { seq, probe }) if self.notices => {
                    self.commits.push((seq, probe));
                }
                _ => {
                    self.pending = Some(next);
                    break;
                }
            }
        }
        Ok(batch)
    }

    /// Applies `batch` with one commit and acknowledges it; a batch that
    /// does not follow the store's last write halts the stream and asks
    /// for a full resync instead. Without commit notices the batch is
    /// shown at once (a delayed slave's, once it has waited since
    /// `arrived`).
    fn apply(&mut self, batch: &[Record], arrived: Instant) -> crate::Result<()> {
        if self.halted {
            return Ok(());
        }
        match self.store.apply_batch(batch) {
            Ok(()) => {
                let last = batch.last().map_or(0, |r| r.seq);
                if let Some(events) = self.events {
                    let at_ns = now_ns();
                    for record in batch {
                        events.record_at(EventKind::Applied, record.seq, record.op.key(), at_ns);
                    }
                }
                // Without commit notices (or a delay) the batch is shown
                // before it is acknowledged, as before them.
                let visible = self.gate.applied(batch, arrived)?;
                self.writer.send(Replication::Ack { seq: last })?;
                self.gate.show(visible)
            }
            Err(storage::Error::OutOfOrder { expected, got }) => {
                let reason = format!("expected seq {expected}, the master sent {got}");
                error!(
                    "replication from {}: {reason}; not applying it, asking for a full \
                     resync (nothing is applied until it arrives)",
                    self.peer
                );
                self.writer.send(Replication::ResyncRequest { reason })?;
                self.halted = true;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes the `Commit`s read so far: shows what the newest covers (one
    /// publish, however many came), and what their probes' answers prove.
    fn take_commits(&mut self) -> crate::Result<()> {
        let commits = std::mem::take(&mut self.commits);
        let Some(newest) = commits.iter().map(|&(seq, _)| seq).max() else {
            return Ok(());
        };
        let visible = self.gate.committed(newest)?;
        let mut proven = false;
        for (seq, probe) in commits {
            proven |= self.state.freshness.on_commit(seq, probe, visible);
        }
        if proven {
            self.state.wake_reads();
        }
        self.gate.show(visible)
    }

    /// Takes the master's role over if this slave shows exactly its last
    /// write, and answers `TookOver` either way. Returns whether the stream
    /// ends (this node is the master now).
    fn hand_over(&mut self, handover: &Handover) -> crate::Result<bool> {
        let (applied, shown) = (self.store.applied_seq(), self.store.last_seq());
        let outcome = if applied == handover.seq && shown == handover.seq && !self.halted {
            (self.take_over)(handover)
        } else {
            Err(format!(
                "this slave applied seq {applied} and shows {shown}, not the master's {}",
                handover.seq
            ))
        };
        match outcome {
            Ok(history) => {
                info!(
                    "took the master's role over from {} at seq {} in term {} (history \
                     {history:016x})",
                    self.peer, handover.seq, handover.term
                );
                self.writer.send(Replication::TookOver {
                    seq: handover.seq,
                    history,
                })?;
                Ok(true)
            }
            Err(why) => {
                warn!("refused to take over from {}: {why}", self.peer);
                self.writer.send(Replication::TookOver {
                    seq: shown,
                    history: 0,
                })?;
                Ok(false)
            }
        }
    }

    /// Replaces the store's contents by the snapshot that follows, and
    /// acknowledges it; returns whether the stream goes on. A malformed
    /// snapshot ([`SnapshotFault`]) installs nothing: the slave asks for a
    /// resync, naming the fault, and closes the stream (`false`).
    fn install_snapshot(
        &mut self,
        seq: u64,
        entries: u64,
        replication_id: u64,
    ) -> crate::Result<bool> {
        let peer = self.peer;
        let refused = if replication_id == 0 {
            Some(SnapshotFault::NoHistory)
        } else if replication_id != self.master_history {
            Some(SnapshotFault::OtherHistory {
                snapshot: replication_id,
                handshake: self.master_history,
            })
        } else {
            None
        };
        if let Some(fault) = refused {
            return self.refuse_snapshot(&fault);
        }
        info!("full resync from {peer}: {entries} keys as of seq {seq}");
        let mut incoming = SnapshotFrames {
            reader: &mut *self.reader,
            peer,
            seq,
            last_entry_seq: 0,
            keys: HashSet::new(),
            fault: None,
            done: false,
        };
        let installed = self
            .store
            .install_snapshot(seq, replication_id, &mut incoming);
        if let Some(fault) = incoming.fault.take() {
            return self.refuse_snapshot(&fault);
        }
        installed?;
        self.state.freshness.forget();
        self.gate.replaced(seq);
        self.halted = false;
        self.writer.send(Replication::Ack { seq })?;
        self.gate.show(self.store.last_seq())?;
        Ok(true)
    }

    /// Says why a snapshot was not installed (a `ResyncRequest`), and ends
    /// the stream.
    fn refuse_snapshot(&mut self, fault: &SnapshotFault) -> crate::Result<bool> {
        error!(
            "refused a malformed snapshot from {}: {fault}; nothing of it was installed, \
             closing the stream",
            self.peer
        );
        self.writer.send(Replication::ResyncRequest {
            reason: format!("malformed snapshot: {fault}"),
        })?;
        Ok(false)
    }
}

/// The storage record for an `Append`, logging its arrival.
fn record(seq: u64, op: ReplicatedOp, events: Option<&EventSink>) -> Record {
    let op = wire::from_wire(op);
    if let Some(events) = events {
        events.record(EventKind::Received, seq, op.key());
    }
    Record { seq, op }
}

/// What makes a snapshot malformed (`PROTOCOL.md` 7.1): the slave installs
/// nothing of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotFault {
    /// `SnapshotBegin` carries history 0.
    NoHistory,
    /// `SnapshotBegin` carries another history than the handshake did.
    OtherHistory {
        /// The snapshot's.
        snapshot: u64,
        /// The handshake's.
        handshake: u64,
    },
    /// An entry's seq is not above the previous entry's (entries come in
    /// increasing order of sequence number), or is 0.
    OutOfOrder {
        /// The previous entry's seq.
        previous: u64,
        /// This entry's.
        seq: u64,
    },
    /// A key comes twice.
    RepeatedKey {
        /// The entry's seq.
        seq: u64,
    },
    /// An entry's seq is above the snapshot's own.
    AfterSnapshot {
        /// The entry's seq.
        seq: u64,
        /// The snapshot's.
        snapshot: u64,
    },
    /// `SnapshotEnd` names another seq than `SnapshotBegin`.
    EndMismatch {
        /// `SnapshotBegin`'s.
        begin: u64,
        /// `SnapshotEnd`'s.
        end: u64,
    },
    /// Another kind of frame came before `SnapshotEnd`.
    Unexpected {
        /// The frame's kind.
        kind: String,
    },
}

impl std::fmt::Display for SnapshotFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotFault::NoHistory => write!(f, "it announces history 0"),
            SnapshotFault::OtherHistory {
                snapshot,
                handshake,
            } => write!(
                f,
                "it announces history {snapshot:016x}, the handshake said {handshake:016x}"
            ),
            SnapshotFault::OutOfOrder { previous, seq } => write!(
                f,
                "entry of seq {seq} after one of seq {previous} (entries come in increasing seq order)"
            ),
            SnapshotFault::RepeatedKey { seq } => {
                write!(f, "the entry of seq {seq} repeats a key")
            }
            SnapshotFault::AfterSnapshot { seq, snapshot } => write!(
                f,
                "an entry of seq {seq} in a snapshot as of seq {snapshot}"
            ),
            SnapshotFault::EndMismatch { begin, end } => {
                write!(f, "it began as of seq {begin} and ended as of seq {end}")
            }
            SnapshotFault::Unexpected { kind } => write!(f, "a {kind} frame inside it"),
        }
    }
}

/// The entries of a snapshot as they arrive, up to its `SnapshotEnd`,
/// checked one by one: the first fault ends the iteration with an error
/// (so the store installs nothing) and is kept in `fault`.
struct SnapshotFrames<'a, R> {
    reader: &'a mut BufReader<R>,
    peer: &'a str,
    /// `SnapshotBegin`'s seq.
    seq: u64,
    last_entry_seq: u64,
    keys: HashSet<Vec<u8>>,
    fault: Option<SnapshotFault>,
    done: bool,
}

impl<R: Read> SnapshotFrames<'_, R> {
    /// The fault that ends the snapshot, as the store's error.
    fn fail(&mut self, fault: SnapshotFault) -> Option<storage::Result<SnapshotEntry>> {
        let error = self.io_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            fault.to_string(),
        ));
        self.fault = Some(fault);
        error
    }

    fn io_error(&mut self, source: std::io::Error) -> Option<storage::Result<SnapshotEntry>> {
        self.done = true;
        Some(Err(storage::Error::Io {
            action: "receive a snapshot from",
            path: PathBuf::from(self.peer),
            source,
        }))
    }

    /// Checks one entry against the snapshot and the entries before it.
    fn check(&mut self, entry: &SnapshotEntry) -> Result<(), SnapshotFault> {
        if entry.seq <= self.last_entry_seq || entry.seq == 0 {
            return Err(SnapshotFault::OutOfOrder {
                previous: self.last_entry_seq,
                seq: entry.seq,
            });
        }
        if entry.seq > self.seq {
            return Err(SnapshotFault::AfterSnapshot {
                seq: entry.seq,
                snapshot: self.seq,
            });
        }
        if !self.keys.insert(entry.key.clone()) {
            return Err(SnapshotFault::RepeatedKey { seq: entry.seq });
        }
        self.last_entry_seq = entry.seq;
        Ok(())
    }
}

impl<R: Read> Iterator for SnapshotFrames<'_, R> {
    type Item = storage::Result<SnapshotEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match protocol::read_frame(self.reader) {
            Ok(Some(Frame {
                message: Message::Replication(Replication::SnapshotEntry { seq, key, value }),
                ..
            })) => {
                let entry = SnapshotEntry { seq, key, value };
                match self.check(&entry) {
                    Ok(()) => Some(Ok(entry)),
                    Err(fault) => self.fail(fault),
                }
            }
            Ok(Some(Frame {
                message: Message::Replication(Replication::SnapshotEnd { seq }),
                ..
            })) => {
                if seq != self.seq {
                    return self.fail(SnapshotFault::EndMismatch {
                        begin: self.seq,
                        end: seq,
                    });
                }
                self.done = true;
                None
            }
            Ok(Some(frame)) => self.fail(SnapshotFault::Unexpected {
                kind: format!("{:?}", frame.kind()),
            }),
            Ok(None) => self.io_error(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the stream ended inside a snapshot",
            )),
            Err(e) => self.io_error(std::io::Error::other(e.to_string())),
        }
    }
}
