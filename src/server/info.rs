//! The reply to `Info`: what a node says about itself, as name and value
//! pairs (`duokv info` prints them). The store's figures, then the role's:
//! a master's link to its slave (mode, link, acked seq, lag, resyncs), or
//! a slave's master and whether its stream is up.
//!
//! Its own module because the list grows with every figure an operator
//! asks for, and none of it is about serving a connection.

use std::sync::atomic::Ordering;

use super::node::Node;
use super::shared::Shared;
use crate::replication::{Replicator, SlaveState};

/// A fact: its name and its value.
type Fact = (String, String);

/// The server's facts for an `Info` request.
pub(crate) fn facts(shared: &Shared) -> Vec<Fact> {
    let stats = shared.store.stats();
    let node = shared.node();
    let role = match &*node {
        Node::Standalone => "standalone",
        Node::Master(_) => "master",
        Node::Slave { .. } => "slave",
    };
    let mut facts: Vec<Fact> = [
        ("role", role.to_string()),
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        ("last_seq", stats.last_seq.to_string()),
        ("live_keys", stats.live_keys.to_string()),
        ("live_bytes", stats.live_bytes.to_string()),
        ("dead_bytes", stats.dead_bytes.to_string()),
        ("segment_files", stats.segment_files.to_string()),
        ("compactions", stats.compactions.to_string()),
        ("fsyncs", stats.syncs.to_string()),
        (
            "connections",
            shared.connections.load(Ordering::SeqCst).to_string(),
        ),
        ("fsync", format!("{:?}", shared.config.fsync).to_lowercase()),
        ("history_id", format!("{:016x}", shared.store.history_id())),
        ("term", term(shared, &node).to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect();
    if let Some(addr) = shared.metrics.endpoint() {
        facts.push(("metrics_addr".to_string(), addr.to_string()));
    }
    if let Some(tls) = &shared.config.tls {
        let (cert, ca) = tls.expiry();
        let unix = |at: Option<std::time::SystemTime>| {
            at.and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or("unknown".to_string(), |d| d.as_secs().to_string())
        };
        facts.push(("tls".to_string(), "on".to_string()));
        facts.push(("tls_cert_expires_unix".to_string(), unix(cert)));
        facts.push(("tls_ca_expires_unix".to_string(), unix(ca)));
    }
    match &*node {
        Node::Standalone => {}
        Node::Master(replicator) => master_facts(replicator, stats.last_seq, &mut facts),
        Node::Slave { state, master_addr } => slave_facts(shared, state, master_addr, &mut facts),
    }
    facts
}

/// The term the node leads, or, as a slave, the newest it follows (which
/// a master of a higher term raises as it is admitted).
fn term(shared: &Shared, node: &Node) -> u64 {
    match node {
        Node::Slave { state, .. } => state.term().max(shared.term()),
        Node::Standalone | Node::Master(_) => shared.term(),
    }
}

/// A master's facts about its link to the slave; `last_seq` is its own.
fn master_facts(replicator: &Replicator, last_seq: u64, facts: &mut Vec<Fact>) {
    let status = replicator.status();
    let mut fact = |name: &str, value: String| facts.push((name.to_string(), value));
    fact("replication", status.mode.to_string());
    fact("forward", replicator.settings().forward.to_string());
    fact("replica", status.replica.clone());
    fact("link", if status.up { "up" } else { "down" }.to_string());
    fact("durable_seq", status.durable_seq.to_string());
    fact("slave_acked_seq", status.acked_seq.to_string());
    fact("slave_visible_seq", status.visible_seq.to_string());
    fact("commit_notices", status.commit_notices.to_string());
    fact(
        "lag_records",
        last_seq.saturating_sub(status.acked_seq).to_string(),
    );
    fact("lag_ms", format!("{:.3}", status.lag.as_secs_f64() * 1e3));
    fact("link_connects", status.connects.to_string());
    fact("partial_resyncs", status.partial_resyncs.to_string());
    fact("full_resyncs", status.full_resyncs.to_string());
    fact("sync_fallback_active", status.fallback_active.to_string());
    fact("link_backoff_ms", status.backoff.as_millis().to_string());
    if let Some(error) = status.last_error {
        fact("link_last_error", error);
    }
}

/// A slave's facts: its master, whether the master's stream is up, and
/// what its readers see: `applied_seq` (the last write applied and durable
/// here), `visible_seq` (the last one readers see: the master has said it
/// is durable there), `master_durable_seq` (the newest durable seq the
/// master has named), `staleness_bound_ms` (how stale the data can be
/// proven at most, now; `none` before the first answered probe),
/// `probe_interval_ms`, `apply_delay_ms` and `reads_waiting` (reads waiting for a write or
/// a proof).
fn slave_facts(shared: &Shared, state: &SlaveState, master_addr: &str, facts: &mut Vec<Fact>) {
    facts.push(("master".to_string(), master_addr.to_string()));
    let applied = shared.store.applied_seq();
    let visible = super::read::visible_seq(&shared.store);
    facts.push(("applied_seq".to_string(), applied.to_string()));
    facts.push(("visible_seq".to_string(), visible.to_string()));
    let durable = state.master_durable_seq();
    facts.push(("master_durable_seq".to_string(), durable.to_string()));
    let bound = state.staleness_bound().map_or("none".to_string(), |b| {
        format!("{:.3}", b.as_secs_f64() * 1e3)
    });
    facts.push(("staleness_bound_ms".to_string(), bound));
    let interval = state.probe_interval().as_secs_f64() * 1e3;
    facts.push(("probe_interval_ms".to_string(), format!("{interval:.3}")));
    let delay = state.apply_delay().as_secs_f64() * 1e3;
    facts.push(("apply_delay_ms".to_string(), format!("{delay:.3}")));
    let waiting = state.reads_waiting();
    facts.push(("reads_waiting".to_string(), waiting.to_string()));
    let link = if state.connected() { "up" } else { "down" };
    facts.push(("link".to_string(), link.to_string()));
    if let Some(refusal) = state.last_refusal() {
        facts.push(("link_last_error".to_string(), refusal));
    }
}
