//! [`Metrics`]: what the server counts as it happens, for its Prometheus
//! endpoint (`--metrics-listen`): request latencies by operation, the
//! log's `fdatasync` latency, refused handshakes by reason, sync writes
//! that timed out or went on without the slave, and the replication
//! link's sessions and resyncs.
//!
//! Everything else a scrape shows (the role, the seqs, the lag, the
//! store's bytes) is read from the node as it is at the scrape (see
//! [`scrape`](super::scrape)), so nothing but these counts is kept twice.
//!
//! The cost on the request path: a latency is one
//! [`Histogram::observe`] (four atomic adds, no lock: tikv's histograms
//! keep a hot and a cold shard instead) and two clock reads; the
//! per-operation histograms are looked up once, here, not by label at
//! each request.
//!
//! A leaf module: it names the replication's totals and the store's ops,
//! nothing of the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use duokv_protocol::HandshakeStatus;
use duokv_storage::{LogSyncObserver, WriteOp};
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};

use crate::replication::LinkTotals;

/// Request latency buckets, in seconds: 25 µs to 10 s (a sync write
/// waits at most `--sync-timeout`, 2 s by default).
const REQUEST_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `fdatasync` latency buckets, in seconds: 10 µs (tmpfs, a fast NVMe
/// drive's cache) to 2.5 s (a disk in trouble).
const SYNC_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The `op` label of a write, in the order of [`Metrics::writes`].
const WRITE_OPS: [&str; 4] = ["create", "update", "put", "delete"];

/// The `reason` label of every handshake refusal, as the status the peer
/// is told (in snake case); every one is shown from the start, at 0.
const REFUSALS: [(HandshakeStatus, &str); 10] = [
    (HandshakeStatus::BadMagic, "bad_magic"),
    (HandshakeStatus::UnsupportedVersion, "unsupported_version"),
    (HandshakeStatus::UnsupportedRole, "unsupported_role"),
    (HandshakeStatus::Busy, "busy"),
    (HandshakeStatus::ShuttingDown, "shutting_down"),
    (HandshakeStatus::Malformed, "malformed"),
    (HandshakeStatus::Unauthorized, "unauthorized"),
    (HandshakeStatus::Diverged, "diverged"),
    (HandshakeStatus::Fenced, "fenced"),
    (HandshakeStatus::TlsRequired, "tls_required"),
];

/// A read, as its latency is labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadKind {
    /// A plain read: answered at once with what is visible.
    Plain,
    /// A read after a write token: may wait for that write to be visible.
    After,
    /// A read under a staleness bound (and no token): may wait for a
    /// probe's proof.
    Fresh,
}

impl ReadKind {
    /// The `op` label, in the order of [`Metrics::reads`].
    const LABELS: [&'static str; 3] = ["read", "read_after", "read_fresh"];

    fn index(self) -> usize {
        match self {
            ReadKind::Plain => 0,
            ReadKind::After => 1,
            ReadKind::Fresh => 2,
        }
    }
}

/// A write's latency being timed: from the moment its request was read
/// to the moment its reply (receipt or error) went to the socket.
#[derive(Debug)]
pub(crate) struct WriteTimer {
    histogram: Histogram,
    started: Instant,
}

impl WriteTimer {
    /// Records the time since the request was read.
    pub(crate) fn observe(self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

/// What the server counts as it happens.
#[derive(Debug)]
pub(crate) struct Metrics {
    write_latency: HistogramVec,
    /// `write_latency` by op, in [`WRITE_OPS`] order.
    writes: [Histogram; 4],
    read_latency: HistogramVec,
    /// `read_latency` by kind, in [`ReadKind::LABELS`] order.
    reads: [Histogram; 3],
    log_syncs: Histogram,
    refusals: IntCounterVec,
    sync_timeouts: IntCounter,
    sync_fallback_writes: IntCounter,
    /// The replication's sessions and resyncs over every replicator this
    /// process runs.
    link_totals: Arc<LinkTotals>,
    /// Where the endpoint serves them, if anywhere (`--metrics-listen`).
    endpoint: Option<SocketAddr>,
}

impl Metrics {
    /// Every count at zero, to be served at `endpoint`, if anywhere.
    pub(crate) fn new(endpoint: Option<SocketAddr>) -> Metrics {
        let histogram = |name: &str, help: &str, buckets: &[f64], labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            HistogramVec::new(opts, labels).expect("valid histogram options")
        };
        let write_latency = histogram(
            "duokv_write_duration_seconds",
            "Time from a write request read to its reply sent (durable here, and acknowledged \
             by the slave in sync modes), by op; writes a master or standalone node staged",
            REQUEST_BUCKETS,
            &["op"],
        );
        let read_latency = histogram(
            "duokv_read_duration_seconds",
            "Time from a read request read to its reply sent, by op: read (plain), read_after \
             (waits for a write token to be visible), read_fresh (waits for a staleness proof)",
            REQUEST_BUCKETS,
            &["op"],
        );
        let log_syncs = Histogram::with_opts(
            HistogramOpts::new(
                "duokv_fdatasync_duration_seconds",
                "Time each fdatasync of the store's log took (group commits, the every:MS \
                 background sync, the sync before a segment is closed)",
            )
            .buckets(SYNC_BUCKETS.to_vec()),
        )
        .expect("valid histogram options");
        let counter = |name: &str, help: &str| {
            IntCounter::with_opts(Opts::new(name, help)).expect("valid counter options")
        };
        let refusals = IntCounterVec::new(
            Opts::new(
                "duokv_handshakes_refused_total",
                "Handshakes this node refused, by the status the peer was told",
            ),
            &["reason"],
        )
        .expect("valid counter options");
        for (_, reason) in REFUSALS {
            refusals.with_label_values(&[reason]);
        }
        Metrics {
            writes: WRITE_OPS.map(|op| write_latency.with_label_values(&[op])),
            write_latency,
            reads: ReadKind::LABELS.map(|op| read_latency.with_label_values(&[op])),
            read_latency,
            log_syncs,
            refusals,
            sync_timeouts: counter(
                "duokv_sync_timeouts_total",
                "Sync writes answered ReplicaUnavailable: no ack from the slave within \
                 --sync-timeout",
            ),
            sync_fallback_writes: counter(
                "duokv_sync_fallback_writes_total",
                "Sync writes acknowledged without the slave's ack (--sync-fallback async)",
            ),
            link_totals: Arc::new(LinkTotals::default()),
            endpoint,
        }
    }

    /// Where the endpoint serves the metrics (with the port the OS chose
    /// for port 0), if anywhere.
    pub(crate) fn endpoint(&self) -> Option<SocketAddr> {
        self.endpoint
    }

    /// Times a write from `started` (when its request was read).
    pub(crate) fn write_timer(&self, op: &WriteOp<'_>, started: Instant) -> WriteTimer {
        let index = match op {
            WriteOp::Create { .. } => 0,
            WriteOp::Update { .. } => 1,
            WriteOp::Put { .. } => 2,
            WriteOp::Delete { .. } => 3,
        };
        WriteTimer {
            histogram: self.writes[index].clone(),
            started,
        }
    }

    /// A read of `kind` whose request was read at `started` was answered.
    pub(crate) fn read_answered(&self, kind: ReadKind, started: Instant) {
        self.reads[kind.index()].observe(started.elapsed().as_secs_f64());
    }

    /// The store's log-sync observer: feeds the `fdatasync` histogram.
    pub(crate) fn log_sync_observer(&self) -> LogSyncObserver {
        let histogram = self.log_syncs.clone();
        Arc::new(move |took: Duration| histogram.observe(took.as_secs_f64()))
    }

    /// A handshake was refused with `status`.
    pub(crate) fn refused(&self, status: HandshakeStatus) {
        let reason = REFUSALS
            .iter()
            .find(|(known, _)| *known == status)
            .map_or("other", |(_, reason)| reason);
        self.refusals.with_label_values(&[reason]).inc();
    }

    /// A sync write got no ack within `--sync-timeout`.
    pub(crate) fn sync_timed_out(&self) {
        self.sync_timeouts.inc();
    }

    /// A sync write was acknowledged without the slave.
    pub(crate) fn sync_fell_back(&self) {
        self.sync_fallback_writes.inc();
    }

    /// The totals every replicator of this process counts into.
    pub(crate) fn link_totals(&self) -> &Arc<LinkTotals> {
        &self.link_totals
    }

    /// The counted families, as a scrape shows them: each family's series
    /// in the order of their labels, so that scrapes read alike.
    pub(crate) fn families(&self) -> Vec<MetricFamily> {
        let mut families: Vec<MetricFamily> = [
            self.write_latency.collect(),
            self.read_latency.collect(),
            self.log_syncs.collect(),
            self.refusals.collect(),
            self.sync_timeouts.collect(),
            self.sync_fallback_writes.collect(),
        ]
        .into_iter()
        .flatten()
        .collect();
        for family in &mut families {
            family.mut_metric().sort_by(|a, b| {
                let values = |m: &prometheus::proto::Metric| {
                    m.get_label()
                        .iter()
                        .map(|pair| pair.value().to_string())
                        .collect::<Vec<_>>()
                };
                values(a).cmp(&values(b))
            });
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family<'a>(families: &'a [MetricFamily], name: &str) -> &'a MetricFamily {
        families
            .iter()
            .find(|f| f.name() == name)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn a_write_is_timed_under_its_op() {
        let metrics = Metrics::new(None);
        let op = WriteOp::Delete { key: b"k" };
        metrics.write_timer(&op, Instant::now()).observe();
        let families = metrics.families();
        let writes = family(&families, "duokv_write_duration_seconds");
        let delete = writes
            .get_metric()
            .iter()
            .find(|m| m.get_label()[0].value() == "delete")
            .expect("a delete series");
        assert_eq!(delete.get_histogram().get_sample_count(), 1);
        assert_eq!(writes.get_metric().len(), WRITE_OPS.len());
    }

    #[test]
    fn every_refusal_reason_is_shown_from_the_start() {
        let metrics = Metrics::new(None);
        metrics.refused(HandshakeStatus::Unauthorized);
        metrics.refused(HandshakeStatus::Unknown(42));
        let families = metrics.families();
        let refused = family(&families, "duokv_handshakes_refused_total");
        let count = |reason: &str| {
            refused
                .get_metric()
                .iter()
                .find(|m| m.get_label()[0].value() == reason)
                .map(|m| m.get_counter().get_value() as u64)
        };
        assert_eq!(count("unauthorized"), Some(1));
        assert_eq!(count("busy"), Some(0));
        assert_eq!(count("other"), Some(1));
    }
}
