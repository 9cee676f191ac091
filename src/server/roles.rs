//! Role changes while the server runs (`PROTOCOL.md` 7.10): the role a
//! node starts in, a planned switchover ([`failover`], on the master), a
//! promotion of a slave whose master is gone ([`promote`]), the slave's side
//! of a switchover ([`take_over`]), and a master that learns it was
//! replaced stepping down ([`step_down`]).
//!
//! Every change runs under [`Shared::role_change`], in this order:
//! - **to master**: the store shows everything it applied, forks a new
//!   history that continues the old one through its last write, records
//!   the term and role (`ROLE`), and only then starts the replicator and
//!   installs the node; writes arrive after the history is new;
//! - **to slave**: the replicator stops (no write is under way: the master
//!   was fenced, or learned it was replaced), the store holds every record
//!   from now on until its new master says it is durable, the term and role
//!   are recorded, and the slave node is installed.
//!
//! Terms only grow. A master leads the term it was promoted in (0 for one
//! that never was); a slave follows the highest term it admitted. The
//! `ROLE` file keeps both across restarts, so a node restarted with its old
//! flags (a stale master) comes back in the role the last change gave it;
//! only flags that make it a slave win over a record that says master.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use duokv_protocol::{ErrorCode, ModeCode, Response};
use log::{error, info, warn};

use super::config::RoleConfig;
use super::node::Node;
use super::shared::Shared;
use crate::replication::slave::Handover;
use crate::replication::{
    Forward, HandoverError, MasterIdentity, MasterSettings, Replaced, ReplicationMode, Replicator,
    SlaveSettings, SlaveState,
};
use crate::role_record::{self, RecordedRole, RoleRecord};

/// A fact of a role change's answer: its name and value.
pub(crate) type Fact = (String, String);

/// Why a role change was refused or failed, for the client's error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChangeError {
    /// The node is not in the role the change starts from.
    WrongRole(String),
    /// The change did not happen: nothing changed.
    RolledBack(String),
    /// The change may or may not have happened (the other node did not
    /// answer); the message says how it resolves.
    Unknown(String),
    /// The node could not complete its side.
    Failed(String),
}

impl ChangeError {
    /// The client's error reply.
    pub(crate) fn reply(&self) -> Response {
        let code = match self {
            ChangeError::WrongRole(_) | ChangeError::RolledBack(_) => ErrorCode::NotChanged,
            ChangeError::Unknown(_) | ChangeError::Failed(_) => ErrorCode::Internal,
        };
        Response::error(code, self.to_string())
    }
}

impl std::fmt::Display for ChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChangeError::WrongRole(why)
            | ChangeError::RolledBack(why)
            | ChangeError::Unknown(why)
            | ChangeError::Failed(why) => f.write_str(why),
        }
    }
}

/// The role a node starts in, with its term. Without a `ROLE` file, the
/// flags'. With one, the safer of the two: the role its last role change
/// recorded, unless the flags make it a slave where the record says
/// master (a slave takes no writes, and refuses a master of another
/// history); either way the recorded term, and a log line when the two
/// differ.
pub(crate) fn starting_role(flags: &RoleConfig, record: Option<RoleRecord>) -> (RoleConfig, u64) {
    let Some(record) = record else {
        return (flags.clone(), 0);
    };
    if matches!(flags, RoleConfig::Slave { .. })
        && matches!(record.role, RecordedRole::Master { .. })
    {
        warn!(
            "the flags make this node a {}; its last role change (the ROLE file in its data \
             dir) made it the master of term {}: it starts as the slave the flags say, the \
             safe choice, and follows a master of that term or a later one",
            flags.describe(),
            record.term
        );
        return (flags.clone(), record.term);
    }
    let recorded = match record.role {
        RecordedRole::Master {
            replica,
            mode,
            sync_timeout,
        } => {
            let mut settings = match flags {
                RoleConfig::Master(settings) => settings.clone(),
                _ => master_settings(replica.clone(), mode, sync_timeout),
            };
            settings.replica = replica;
            settings.mode = mode;
            settings.sync_timeout = sync_timeout;
            RoleConfig::Master(settings)
        }
        RecordedRole::Slave { master } => RoleConfig::Slave {
            master_addr: master,
            settings: slave_settings(flags),
        },
    };
    if recorded.describe() != flags.describe() {
        warn!(
            "the flags say {}, but a role change made this node {} in term {} (its data dir's \
             ROLE file): it starts as the latter; `duokv promote` or `duokv failover` change it",
            flags.describe(),
            recorded.describe(),
            record.term
        );
    }
    (recorded, record.term)
}

/// Installs the node's starting `role` in `term`.
pub(crate) fn start(shared: &Arc<Shared>, role: &RoleConfig, term: u64) -> crate::Result<()> {
    let _change = shared.role_change();
    match role {
        RoleConfig::Standalone => {
            shared.store.publish_through(u64::MAX)?;
            fork_history(shared)?;
            shared.replace_node(Node::Standalone);
        }
        RoleConfig::Master(settings) => {
            become_master(shared, settings.clone(), term, false)?;
        }
        RoleConfig::Slave { master_addr, .. } => {
            install_slave(shared, master_addr, term)?;
        }
    }
    Ok(())
}

/// A planned switchover, asked of this master: fence, wait until the
/// slave shows every write, hand the role over, follow the new master.
/// Returns the facts of what happened.
pub(crate) fn failover(shared: &Arc<Shared>, timeout: Duration) -> Result<Vec<Fact>, ChangeError> {
    let _change = shared.role_change();
    let node = shared.node();
    let Node::Master(replicator) = &*node else {
        return Err(ChangeError::WrongRole(
            "this node is not a master: ask the master for a switchover".to_string(),
        ));
    };
    let status = replicator.status();
    let new_master = status.replica.clone();
    if !status.up || !status.commit_notices {
        return Err(ChangeError::RolledBack(format!(
            "the slave {new_master} is not connected{}: nothing changed",
            if status.up {
                " with commit notices (an older build)"
            } else {
                ""
            }
        )));
    }
    let started = Instant::now();
    let deadline = started + timeout;
    let seq = replicator.fence();
    info!("switchover to {new_master}: fenced at seq {seq}; waiting for the slave to show it");
    let shows = replicator.wait_visible(seq, deadline);
    if shows < seq {
        replicator.unfence();
        return Err(ChangeError::RolledBack(format!(
            "the slave {new_master} showed seq {shows} of {seq} after {timeout:?}: rolled back, \
             this node takes writes again; nothing changed (a slave with --apply-delay shows \
             writes only after its delay: give a timeout above it)"
        )));
    }
    let term = shared.term().max(replicator.term()) + 1;
    let mode = mode_code(replicator.mode());
    match replicator.hand_over(seq, term, mode, deadline) {
        Ok(history) => {
            let window = started.elapsed();
            drop(node);
            install_slave(shared, &new_master, term).map_err(|e| {
                ChangeError::Failed(format!(
                    "{new_master} took over, but this node could not become its slave: {}",
                    crate::error::chain(&e)
                ))
            })?;
            info!(
                "switchover done: {new_master} is the master of term {term} from seq {seq} \
                 (history {history:016x}); this node follows it; writes stopped for {:.3} ms",
                window.as_secs_f64() * 1e3
            );
            Ok(facts(&[
                ("new_master", new_master),
                ("term", term.to_string()),
                ("seq", seq.to_string()),
                ("history_id", format!("{history:016x}")),
                (
                    "write_window_ms",
                    format!("{:.3}", window.as_secs_f64() * 1e3),
                ),
            ]))
        }
        Err(HandoverError::Refused { shows }) => {
            replicator.unfence();
            Err(ChangeError::RolledBack(format!(
                "the slave {new_master} refused to take over (it shows seq {shows}, not {seq}): \
                 rolled back, this node takes writes again"
            )))
        }
        Err(HandoverError::Unknown(why)) => Err(ChangeError::Unknown(format!(
            "the slave {new_master} did not answer the handover ({why}): it may or may not be \
             the master now; this node takes no writes until it knows (it steps down if the \
             slave took over, and takes writes again once the slave accepts its stream)"
        ))),
    }
}

/// Makes this slave the master of the handover's term (the slave's side
/// of a switchover), replicating to the master it followed. Returns the
/// new history id.
pub(crate) fn take_over(shared: &Arc<Shared>, handover: &Handover) -> Result<u64, String> {
    let _change = shared.role_change();
    let node = shared.node();
    let Node::Slave { state, .. } = &*node else {
        return Err("this node is not a slave".to_string());
    };
    if handover.term <= shared.term().max(state.term()) {
        return Err(format!(
            "term {} is not above this slave's term {}",
            handover.term,
            state.term()
        ));
    }
    let mut settings = master_settings(
        state.master_addr().to_string(),
        mode_from_code(handover.mode),
        handover.sync_timeout,
    );
    keep_flags(shared, &mut settings);
    become_master(shared, settings, handover.term, true).map_err(|e| crate::error::chain(&e))
}

/// Promotes this slave at once (its master is gone): it shows everything
/// it applied and becomes the master of a term above any it knew,
/// replicating to `replica` (its old master when empty) with `mode`.
/// Refused while its master is connected unless `force`.
pub(crate) fn promote(
    shared: &Arc<Shared>,
    replica: &str,
    mode: ModeCode,
    force: bool,
) -> Result<Vec<Fact>, ChangeError> {
    let started = Instant::now();
    let _change = shared.role_change();
    let node = shared.node();
    let Node::Slave { state, .. } = &*node else {
        return Err(ChangeError::WrongRole(
            "this node is not a slave: only a slave is promoted".to_string(),
        ));
    };
    if state.connected() && !force {
        return Err(ChangeError::RolledBack(format!(
            "the master {} is connected: use `duokv failover` for a planned switchover, or \
             promote with force (the old master is then fenced by the new term)",
            state.master_addr()
        )));
    }
    let replica = if replica.is_empty() {
        state.master_addr().to_string()
    } else {
        replica.to_string()
    };
    let term = shared.term().max(state.term()) + 1;
    if !state.close(STREAM_PATIENCE) {
        state.admit_again();
        return Err(ChangeError::Failed(
            "the master's stream did not end in time: not promoted".to_string(),
        ));
    }
    let applied = shared.store.applied_seq();
    let shown = shared.store.last_seq();
    let mut settings = master_settings(replica.clone(), mode_from_code(mode), SYNC_TIMEOUT);
    keep_flags(shared, &mut settings);
    let history = become_master(shared, settings, term, true).map_err(|e| {
        state.admit_again();
        ChangeError::Failed(crate::error::chain(&e))
    })?;
    let took = started.elapsed();
    warn!(
        "promoted to master of term {term} at seq {applied} (history {history:016x}), \
         replicating to {replica}; {} held writes were shown",
        applied - shown
    );
    Ok(facts(&[
        ("term", term.to_string()),
        ("seq", applied.to_string()),
        ("history_id", format!("{history:016x}")),
        ("replica", replica),
        ("shown_on_promotion", (applied - shown).to_string()),
        ("promote_ms", format!("{:.3}", took.as_secs_f64() * 1e3)),
    ]))
}

/// A master's stream was refused by a node of a higher term: this node
/// steps down and follows that term's master.
pub(crate) fn step_down(shared: &Arc<Shared>, replaced: &Replaced) {
    let _change = shared.role_change();
    if replaced.term <= shared.term() || !matches!(&*shared.node(), Node::Master(_)) {
        return;
    }
    match install_slave(shared, &replaced.master, replaced.term) {
        Ok(()) => warn!(
            "stepped down: this node follows {}, master of term {}",
            replaced.master, replaced.term
        ),
        Err(e) => error!(
            "cannot step down to follow {}: {}",
            replaced.master,
            crate::error::chain(&e)
        ),
    }
}

/// The callback a master's replicator calls when it learns it was
/// replaced: steps down on a thread of its own (never the replicator's,
/// which stepping down stops).
fn on_replaced(shared: Weak<Shared>) -> Box<dyn Fn(Replaced) + Send + Sync> {
    Box::new(move |replaced| {
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("step-down".into())
            .spawn(move || {
                if let Some(shared) = shared.upgrade() {
                    step_down(&shared, &replaced);
                }
            });
        if let Err(e) = spawned {
            error!("cannot start the thread that steps down: {e}");
        }
    })
}

/// Makes this node a master of `term` with `settings`, recording it when
/// `record` (a role change, not a start from the flags). Returns the new
/// history id.
fn become_master(
    shared: &Arc<Shared>,
    settings: MasterSettings,
    term: u64,
    record: bool,
) -> crate::Result<u64> {
    shared.store.publish_through(u64::MAX)?;
    let history = fork_history(shared)?;
    if record {
        role_record::save(
            &shared.config.data_dir,
            &RoleRecord::master(term, &settings),
        )?;
    }
    shared.raise_term(term);
    let identity = MasterIdentity {
        auth_token: shared.config.auth_token.clone(),
        listen_addr: shared.config.listen.to_string(),
        term,
        on_replaced: Some(on_replaced(Arc::downgrade(shared))),
        tls: shared.config.tls.clone(),
    };
    let replicator = Replicator::start(
        settings,
        identity,
        shared.store.clone(),
        shared.events.clone(),
        shared.metrics.link_totals().clone(),
    )?;
    let old = shared.replace_node(Node::Master(replicator));
    if let Node::Slave { state, .. } = &*old {
        state.wake_reads();
    }
    Ok(history)
}

/// Makes this node a slave of `master` in `term`, and records it.
fn install_slave(shared: &Arc<Shared>, master: &str, term: u64) -> crate::Result<()> {
    let current = shared.node();
    if let Node::Master(replicator) = &*current {
        replicator.stop();
    }
    drop(current);
    shared.store.hold_from_now()?;
    let changed = term > 0 && term > shared.term();
    if changed {
        role_record::save(&shared.config.data_dir, &RoleRecord::slave(term, master))?;
    }
    shared.raise_term(term);
    let settings = slave_settings(&shared.config.role);
    let state = SlaveState::new(master, settings, shared.term());
    shared.replace_node(Node::Slave {
        state: Box::new(state),
        master_addr: master.to_string(),
    });
    Ok(())
}

/// Starts a new history continuing this store's, logged.
fn fork_history(shared: &Shared) -> crate::Result<u64> {
    // A node that takes writes starts a new history each time it starts
    // or is promoted: a slave that holds writes this store lost (sent
    // before they were synced here) is then told apart.
    let forked = shared.store.fork_history()?;
    match forked.ancestors.first() {
        Some(from) if from.last_seq > 0 => info!(
            "history {:016x} continues {:016x} after seq {}",
            forked.id, from.id, from.last_seq
        ),
        _ => info!(
            "new history {:016x}: the store holds no writes yet",
            forked.id
        ),
    }
    Ok(forked.id)
}

/// How long a promotion waits for the stream it cuts to end.
const STREAM_PATIENCE: Duration = Duration::from_secs(5);

/// A promoted master's sync timeout when nothing says otherwise.
const SYNC_TIMEOUT: Duration = Duration::from_secs(2);

fn master_settings(
    replica: String,
    mode: ReplicationMode,
    sync_timeout: Duration,
) -> MasterSettings {
    MasterSettings {
        replica,
        mode,
        sync_timeout,
        fallback_async: false,
        forward: Forward::Written,
    }
}

/// Keeps the master flags this node was started with (fallback, forward)
/// in the settings of a master it becomes.
fn keep_flags(shared: &Shared, settings: &mut MasterSettings) {
    if let RoleConfig::Master(flags) = &shared.config.role {
        settings.fallback_async = flags.fallback_async;
        settings.forward = flags.forward;
    }
}

/// The slave flags of `role`, or their defaults.
fn slave_settings(role: &RoleConfig) -> SlaveSettings {
    match role {
        RoleConfig::Slave { settings, .. } => *settings,
        RoleConfig::Standalone | RoleConfig::Master(_) => SlaveSettings::default(),
    }
}

fn mode_code(mode: ReplicationMode) -> ModeCode {
    match mode {
        ReplicationMode::Sync => ModeCode::Sync,
        ReplicationMode::SyncVisible => ModeCode::SyncVisible,
        ReplicationMode::Async => ModeCode::Async,
    }
}

/// The replication mode of a wire code.
pub(crate) fn mode_from_code(code: ModeCode) -> ReplicationMode {
    match code {
        ModeCode::Sync => ReplicationMode::Sync,
        ModeCode::SyncVisible => ReplicationMode::SyncVisible,
        ModeCode::Async => ReplicationMode::Async,
    }
}

fn facts(pairs: &[(&str, String)]) -> Vec<Fact> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect()
}
