//! How a server is configured: [`ServerConfig`] and the [`RoleConfig`] in
//! it, as the `duokv-server` flags fill them in.
//!
//! A leaf module: everything in the server reads the config, and the config
//! names nothing of the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use duokv_storage::{CompactionPolicy, Sync};

use crate::auth::AuthToken;
use crate::replication::MasterSettings;

/// How a server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The address to listen on for clients.
    pub listen: SocketAddr,
    /// The directory of the store.
    pub data_dir: PathBuf,
    /// The store's durability policy.
    pub fsync: Sync,
    /// Connections served at once; more get `Busy` and are closed.
    pub max_connections: usize,
    /// The largest request frame read, in bytes (at most the protocol's
    /// `MAX_FRAME_LEN`); a larger one gets `TooLarge` from its length
    /// prefix alone. With `max_connections`, it bounds the memory clients
    /// can make the server hold.
    pub max_frame_len: u32,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A frame that has begun must be whole within this, or the
    /// connection is closed.
    pub frame_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Standalone, master or slave.
    pub role: RoleConfig,
    /// Where to log every write's events, if anywhere.
    pub event_log: Option<PathBuf>,
    /// When the store compacts on its own.
    pub compaction: CompactionPolicy,
    /// The shared secret every peer (client or master) must present in its
    /// handshake, if any; a master also sends it to its slave.
    pub auth_token: Option<AuthToken>,
    /// Where to serve the metrics over HTTP (`GET /metrics`, in the
    /// Prometheus text format), if anywhere; the endpoint has no
    /// authentication.
    pub metrics_listen: Option<SocketAddr>,
    /// Where to serve RESP (Redis's protocol) too, if anywhere: the same
    /// store, replication, limits, token and TLS.
    pub resp_listen: Option<SocketAddr>,
    /// TLS, if the server speaks it: then its client port takes TLS
    /// connections only, and a master's stream to its slave is TLS too
    /// (see [`tls`](crate::tls)).
    pub tls: Option<std::sync::Arc<crate::tls::ServerTls>>,
    /// For tests: once this file exists, the store's next data sync loses
    /// what it would have made durable, as a power cut would, and never
    /// returns (the hidden `--test-power-cut-when` flag).
    pub test_power_cut_when: Option<PathBuf>,
}

/// What part a server plays.
#[derive(Debug, Clone, Default)]
pub enum RoleConfig {
    /// A single node: takes reads and writes, replicates nothing.
    #[default]
    Standalone,
    /// Takes writes and replicates them to a slave.
    Master(MasterSettings),
    /// Applies a master's stream; serves reads, answers writes with
    /// `NotMaster`.
    Slave {
        /// The master's client address, sent to clients that write here.
        master_addr: String,
        /// Its own settings: divergence, probes, apply delay.
        settings: crate::replication::SlaveSettings,
    },
}

impl ServerConfig {
    /// A config for a standalone server on `listen` with its data in
    /// `data_dir`, and the defaults for everything else.
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            listen,
            data_dir: data_dir.into(),
            fsync: Sync::Always,
            max_connections: 1024,
            max_frame_len: duokv_protocol::MAX_FRAME_LEN,
            idle_timeout: Duration::from_secs(300),
            frame_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(5),
            role: RoleConfig::Standalone,
            event_log: None,
            compaction: CompactionPolicy::default(),
            auth_token: None,
            tls: None,
            resp_listen: None,
            metrics_listen: None,
            test_power_cut_when: None,
        }
    }
}

impl RoleConfig {
    /// The role in a log line.
    pub(crate) fn describe(&self) -> String {
        match self {
            RoleConfig::Standalone => "a standalone node".to_string(),
            RoleConfig::Master(settings) => format!(
                "master replicating {} to slave {}, forwarding writes once {}",
                settings.mode, settings.replica, settings.forward
            ),
            RoleConfig::Slave { master_addr, .. } => format!("slave of master {master_addr}"),
        }
    }
}
