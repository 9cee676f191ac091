//! What a scrape of `/metrics` shows: the node's figures as they are now
//! (its role, term and history, its seqs, its replication lag, its link,
//! its connections, its store) and what [`Metrics`](super::metrics::Metrics)
//! counted, in the Prometheus text format, version 0.0.4 (the classic one
//! that every Prometheus server scrapes and `promtool check metrics` lints).
//!
//! The figures are read at each scrape rather than kept twice, and the
//! role among them: a switchover or a promotion changes what a node
//! reports from its next scrape on. A figure that only one role has
//! (a master's lag, a slave's staleness bound) is absent on the others,
//! so that a query never reads a stale one. README's "Metrics" lists them
//! all with what each means.

use std::sync::atomic::Ordering;

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};

use super::node::Node;
use super::shared::Shared;
use crate::replication::{Replicator, SlaveState};

/// The `Content-Type` of [`render`]'s text.
pub(crate) const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// The node's metrics now, as Prometheus text.
pub(crate) fn render(shared: &Shared) -> String {
    let mut families = Families::default();
    node_figures(shared, &mut families);
    let mut all = families.0;
    all.extend(shared.metrics.families());
    let mut text = Vec::new();
    // Encoding into memory fails only on a family without metrics, which
    // neither the hand-built nor the counted ones are.
    if let Err(e) = TextEncoder::new().encode(&all, &mut text) {
        log::warn!("cannot encode the metrics: {e}");
    }
    String::from_utf8(text).unwrap_or_default()
}

/// The figures read from the node, its store and its role.
fn node_figures(shared: &Shared, out: &mut Families) {
    let node = shared.node();
    let stats = shared.store.stats();
    out.info(
        "duokv_build_info",
        "Always 1; the version of duokv-server",
        &[("version", env!("CARGO_PKG_VERSION"))],
    );
    let role = match &*node {
        Node::Standalone => "standalone",
        Node::Master(_) => "master",
        Node::Slave { .. } => "slave",
    };
    out.gauges(
        "duokv_role",
        "1 for the role this node plays now (standalone, master or slave), 0 for the others",
        ["standalone", "master", "slave"]
            .iter()
            .map(|r| (vec![("role", *r)], f64::from(u8::from(*r == role))))
            .collect(),
    );
    let term = match &*node {
        Node::Slave { state, .. } => state.term().max(shared.term()),
        Node::Standalone | Node::Master(_) => shared.term(),
    };
    out.gauge(
        "duokv_term",
        "The term this node leads (a master) or follows (a slave): the epoch, raised by every \
         switchover and promotion; 0 before the first",
        term as f64,
    );
    let history = format!("{:016x}", shared.store.history_id());
    out.info(
        "duokv_history_info",
        "Always 1; the id of the history this store's data continues (a master forks a new one \
         each time it starts)",
        &[("history_id", &history)],
    );
    out.gauge(
        "duokv_last_seq",
        "The newest sequence number readers can see on this node",
        stats.last_seq as f64,
    );
    out.gauge(
        "duokv_durable_seq",
        "The newest sequence number durable on this node's disk",
        shared.store.durable_seq() as f64,
    );
    match &*node {
        Node::Standalone => {}
        Node::Master(replicator) => master_figures(replicator, stats.last_seq, out),
        Node::Slave { state, .. } => slave_figures(shared, state, out),
    }
    let totals = shared.metrics.link_totals();
    out.counter(
        "duokv_replication_connects_total",
        "Sessions this node began, as a master, to its slave",
        totals.connects() as f64,
    );
    out.counter(
        "duokv_partial_resyncs_total",
        "Catch-ups of the slave from this master's log after a (re)connect that had writes \
         to send",
        totals.partial_resyncs() as f64,
    );
    out.counter(
        "duokv_full_resyncs_total",
        "Full resyncs of the slave by snapshot (its history diverged, or the log it needed \
         was compacted away)",
        totals.full_resyncs() as f64,
    );
    out.gauge(
        "duokv_connections",
        "Connections being served now (clients, and a master's stream on a slave)",
        shared.connections.load(Ordering::SeqCst) as f64,
    );
    out.gauge(
        "duokv_max_connections",
        "Connections served at once at most (--max-connections); more are refused Busy",
        shared.config.max_connections as f64,
    );
    out.gauge(
        "duokv_store_live_keys",
        "Keys that hold a value",
        stats.live_keys as f64,
    );
    out.gauge(
        "duokv_store_live_bytes",
        "Bytes of the log's records that keys point to",
        stats.live_bytes as f64,
    );
    out.gauge(
        "duokv_store_dead_bytes",
        "Bytes of the log's records no key points to (overwritten, deleted), which \
         compaction reclaims",
        stats.dead_bytes as f64,
    );
    out.gauge(
        "duokv_store_segment_files",
        "Segment files of the log",
        stats.segment_files as f64,
    );
    out.counter(
        "duokv_compactions_total",
        "Compactions of the log since the store was opened",
        stats.compactions as f64,
    );
    if let Some(tls) = &shared.config.tls {
        let unix = |at: Option<std::time::SystemTime>| {
            at.and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64())
        };
        let (cert, ca) = tls.expiry();
        let series: Vec<(Vec<(&str, &str)>, f64)> = [("cert", unix(cert)), ("ca", unix(ca))]
            .into_iter()
            .filter_map(|(which, at)| Some((vec![("certificate", which)], at?)))
            .collect();
        if !series.is_empty() {
            out.gauges(
                "duokv_tls_certificate_expiry_timestamp_seconds",
                "When the TLS certificate this node presents (cert) and the authority it \
                 trusts (ca) expire, in UNIX seconds, as last loaded (SIGHUP reloads)",
                series,
            );
        }
    }
}

/// A master's figures about its slave: `last_seq` is its own.
fn master_figures(replicator: &Replicator, last_seq: u64, out: &mut Families) {
    let status = replicator.status();
    out.gauge(
        "duokv_replication_link_up",
        "1 while the replication stream between this node and its peer is connected",
        f64::from(u8::from(status.up)),
    );
    out.gauge(
        "duokv_slave_acked_seq",
        "Master: every write up to this seq is applied and durable on the slave",
        status.acked_seq as f64,
    );
    out.gauge(
        "duokv_slave_visible_seq",
        "Master: every write up to this seq is visible to readers on the slave",
        status.visible_seq as f64,
    );
    out.gauge(
        "duokv_replication_lag_records",
        "Master: writes the slave has not acknowledged (last_seq - slave_acked_seq)",
        last_seq.saturating_sub(status.acked_seq) as f64,
    );
    out.gauge(
        "duokv_replication_lag_seconds",
        "Master: how long the oldest write the slave has not acknowledged has waited; 0 when \
         it has them all, an idle master included",
        status.lag.as_secs_f64(),
    );
    out.gauge(
        "duokv_sync_fallback_active",
        "Master: 1 while sync writes are acknowledged without the slave (--sync-fallback async)",
        f64::from(u8::from(status.fallback_active)),
    );
}

/// A slave's figures: what it applied and shows, what it knows of its
/// master, and the staleness it can prove.
fn slave_figures(shared: &Shared, state: &SlaveState, out: &mut Families) {
    out.gauge(
        "duokv_replication_link_up",
        "1 while the replication stream between this node and its peer is connected",
        f64::from(u8::from(state.connected())),
    );
    out.gauge(
        "duokv_applied_seq",
        "Slave: the newest write applied and durable here",
        shared.store.applied_seq() as f64,
    );
    out.gauge(
        "duokv_visible_seq",
        "Slave: the newest write readers see here (its master said it is durable there)",
        super::read::visible_seq(&shared.store) as f64,
    );
    out.gauge(
        "duokv_master_durable_seq",
        "Slave: the newest durable seq the master has named",
        state.master_durable_seq() as f64,
    );
    if let Some(bound) = state.staleness_bound() {
        out.gauge(
            "duokv_staleness_bound_seconds",
            "Slave: how stale the data here can be at most, proven now by the master's answer \
             to a probe (absent before the first answer); it keeps growing while the master \
             is unreachable, and stays small while an idle master answers",
            bound.as_secs_f64(),
        );
    }
    out.gauge(
        "duokv_reads_waiting",
        "Slave: reads waiting for a write token to be visible or for a staleness proof",
        state.reads_waiting() as f64,
    );
}

/// Families built from values read at the scrape.
#[derive(Default)]
struct Families(Vec<MetricFamily>);

impl Families {
    /// A gauge without labels.
    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.gauges(name, help, vec![(Vec::new(), value)]);
    }

    /// A gauge with one series per label set.
    fn gauges(&mut self, name: &str, help: &str, series: Vec<(Vec<(&str, &str)>, f64)>) {
        let metrics = series
            .into_iter()
            .map(|(labels, value)| {
                let mut gauge = Gauge::default();
                gauge.set_value(value);
                let mut metric = Metric::from_gauge(gauge);
                metric.set_label(label_pairs(&labels));
                metric
            })
            .collect();
        self.push(name, help, MetricType::GAUGE, metrics);
    }

    /// An info gauge: always 1, its facts in its labels.
    fn info(&mut self, name: &str, help: &str, labels: &[(&str, &str)]) {
        self.gauges(name, help, vec![(labels.to_vec(), 1.0)]);
    }

    /// A counter without labels.
    fn counter(&mut self, name: &str, help: &str, value: f64) {
        let mut counter = Counter::default();
        counter.set_value(value);
        let mut metric = Metric::default();
        metric.set_counter(counter);
        self.push(name, help, MetricType::COUNTER, vec![metric]);
    }

    fn push(&mut self, name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) {
        let mut family = MetricFamily::default();
        family.set_name(name.to_string());
        family.set_help(help.to_string());
        family.set_field_type(kind);
        family.set_metric(metrics);
        self.0.push(family);
    }
}

fn label_pairs(labels: &[(&str, &str)]) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name(name.to_string());
            pair.set_value(value.to_string());
            pair
        })
        .collect()
}
