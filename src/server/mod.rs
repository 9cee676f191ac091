//! The duokv server: a blocking TCP listener with one thread per connection.
//!
//! [`Server::bind`] binds the listener and opens the store; [`Server::run`]
//! accepts connections until [`ShutdownHandle::shutdown`] is called (the
//! binary calls it on SIGINT or SIGTERM), then stops accepting, lets
//! in-flight requests finish within [`ServerConfig::drain_timeout`], and
//! closes the store.
//!
//! Limits that protect the server's memory and threads are all in
//! [`ServerConfig`], each a `duokv-server` flag: `max_connections` (a
//! connection over it gets a `Busy` handshake reply and is closed; one
//! thread and about 30 KiB each), `max_frame_len` (checked from the length
//! prefix before any buffer is allocated; the buffer then grows only as
//! bytes arrive), `idle_timeout` (a connection that sends nothing for that
//! long is dropped) and `frame_timeout` (a handshake or frame that has begun
//! must be whole within it).
//!
//! # Layout
//!
//! - this file: [`Server`], the accept loop, the connection cap and the
//!   drain on shutdown.
//! - `config`: [`ServerConfig`] and [`RoleConfig`].
//! - `node`: `Node`, the node's role as one enum (standalone, a master with
//!   its replicator, a slave with its stream state), from which the wire's
//!   `NodeRole` is read.
//! - `roles`: role changes while the server runs (the starting role, a
//!   switchover, a promotion, a replaced master stepping down), and the
//!   `ROLE` file they keep.
//! - `shared`: `Shared`, what every connection thread shares (the config,
//!   the node, the store, the shutdown state, the counts).
//! - `handler`: `Handler`, one connection from its handshake to its end:
//!   the token, the role's dispatch, and each request's dispatch.
//! - `connection`: `Connection`, the framing under the handler: the
//!   handshake and frames read within the deadlines, frames written.
//! - `deadline`: the idle and frame deadlines of a connection's reads.
//! - `command`: `Command`, what a request asks for (a write with its store
//!   op, a read, a ping, `Info`).
//! - `reply`: every reply a client gets, with the error codes.
//! - `deferred`: a write's reply, sent by the thread that commits it (or,
//!   in sync mode, by the one that sees the slave's ack); the one write
//!   path of both protocols.
//! - `resp`, `resp_commands`: the RESP port (`--resp-listen`), Redis's
//!   protocol on the same store, replication and limits.
//! - `info`: the facts of the `Info` reply.
//! - `metrics`: `Metrics`, what is counted as it happens for the
//!   Prometheus endpoint (latencies, refusals, sync timeouts, resyncs).
//! - `scrape`: the text of a scrape: the node's figures read now, and
//!   the counts.
//! - `metrics_http`: the `/metrics` listener (`--metrics-listen`).
//! - `read`: reads, plain or under conditions (after a write token, under
//!   a staleness bound), which may wait; what "visible" means.
//! - `shutdown`: the shutdown flag and the registry of open connections.
//!
//! No module imports one that imports it back: `config`, `command`,
//! `deadline`, `metrics`, `reply` and `shutdown` import nothing of the
//! server; `node` and `shared` only those; `handler` and `metrics_http`
//! sit on top, and this file uses them.

mod command;
mod config;
mod connection;
mod deadline;
mod deferred;
mod handler;
mod info;
mod metrics;
mod metrics_http;
mod node;
mod read;
mod reply;
mod resp;
mod resp_commands;
mod roles;
mod scrape;
mod shared;
mod shutdown;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use duokv_storage::{Options, Store};

use crate::event_log::EventLog;
use log::{error, info, warn};

pub use config::{RoleConfig, ServerConfig};
use metrics::Metrics;
use metrics_http::{MetricsEndpoint, MetricsListener};
use node::Node;
use shared::Shared;
use shutdown::Shutdown;
pub use shutdown::ShutdownHandle;

/// Refusals of connections over the limit that may run at once; past it a
/// connection is closed without a word, so a flood costs no more threads.
const MAX_REFUSING: usize = 64;

/// The pause after a failed `accept` (no file descriptors left, say):
/// from 5 ms doubling to 1 s while failures go on, as Go's `net/http` does,
/// and one warning per pause rather than one per failure.
#[derive(Debug, Default)]
struct AcceptBackoff {
    pause: Duration,
    failures: u64,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    fn wait(&mut self, error: &std::io::Error) {
        self.failures += 1;
        self.pause = (self.pause * 2).clamp(Self::FIRST, Self::MAX);
        warn!(
            "accept failed ({} in a row): {error}; next try in {:?} (raise `ulimit -n` or lower \
             --max-connections if it says too many open files)",
            self.failures, self.pause
        );
        std::thread::sleep(self.pause);
    }

    fn reset(&mut self) {
        if self.failures > 0 {
            info!("accepting again after {} failed accepts", self.failures);
        }
        *self = AcceptBackoff::default();
    }
}

/// A bound server, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    /// The RESP port's listener, if the config asks for one.
    resp_listener: Option<TcpListener>,
    /// Makes the connection cap's check and count one step across the two
    /// accept loops.
    accepting: Arc<Mutex<()>>,
    shared: Arc<Shared>,
    /// The `/metrics` endpoint, if the config asks for one: stopped
    /// before the store is closed.
    metrics: Option<MetricsEndpoint>,
    /// Closed last, once every event is recorded.
    event_log: Option<EventLog>,
}

impl Server {
    /// Binds `config.listen` (and `config.metrics_listen`, if set), then
    /// opens the store in `config.data_dir`.
    ///
    /// The listeners come first so that a port already taken fails before
    /// the data dir is touched: a mistyped port leaves no store behind.
    /// Connections that arrive while the store opens wait in the backlog.
    pub fn bind(config: ServerConfig) -> crate::Result<Server> {
        let listener = TcpListener::bind(config.listen).map_err(|e| crate::Error::Bind {
            addr: config.listen,
            source: e,
        })?;
        let local = listener.local_addr().map_err(crate::Error::Io)?;
        let resp_listener = config
            .resp_listen
            .map(|addr| TcpListener::bind(addr).map_err(|e| crate::Error::Bind { addr, source: e }))
            .transpose()?;
        let metrics_listener = config
            .metrics_listen
            .map(MetricsListener::bind)
            .transpose()?;
        let metrics = Metrics::new(metrics_listener.as_ref().map(MetricsListener::local_addr));
        // Every node's store is gated, since any node may become a slave
        // while it runs: a slave shows a write only once its master has
        // said it is durable there (`PROTOCOL.md` 7.9); a master or
        // standalone node shows everything (its limit is the top).
        let mut options = Options::default()
            .sync(config.fsync)
            .compaction(Some(config.compaction))
            .gate_visibility(true)
            .on_log_sync(metrics.log_sync_observer());
        if let Some(trigger) = &config.test_power_cut_when {
            let cut = crate::power_cut::PowerCut::when_exists(trigger.clone());
            options = options.fault_injector(Arc::new(cut));
        }
        let record = crate::role_record::load(&config.data_dir)?;
        let (role, term) = roles::starting_role(&config.role, record);
        let store = Arc::new(Store::open(&config.data_dir, options)?);
        let event_log = config
            .event_log
            .as_ref()
            .map(EventLog::create)
            .transpose()?;
        let events = event_log.as_ref().map(EventLog::sink);
        info!(
            "listening on {local} as {}{}, data in {}, fsync {:?}, at most {} connections, {}, {}",
            role.describe(),
            if term > 0 {
                format!(" in term {term}")
            } else {
                String::new()
            },
            config.data_dir.display(),
            config.fsync,
            config.max_connections,
            if config.auth_token.is_some() {
                "auth token required"
            } else {
                "no auth token"
            },
            match &config.tls {
                Some(tls) if tls.files().client_auth => "TLS only, client certificates required",
                Some(_) => "TLS only",
                None => "no TLS",
            }
        );
        let shared = Arc::new(Shared::new(
            config,
            Node::Standalone,
            term,
            events,
            store,
            Shutdown::new(local),
            metrics,
        ));
        roles::start(&shared, &role, term)?;
        let metrics = metrics_listener
            .map(|listener| listener.serve(Arc::downgrade(&shared)))
            .transpose()?;
        if let Some(resp) = &resp_listener {
            info!(
                "RESP (Redis's protocol) on {}",
                resp.local_addr().map_err(crate::Error::Io)?
            );
        }
        Ok(Server {
            listener,
            resp_listener,
            accepting: Arc::default(),
            shared,
            metrics,
            event_log,
        })
    }

    /// The address the server listens on (with the port the OS chose, when
    /// the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.shutdown.listen_addr()
    }

    /// A handle that stops the server from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shared.shutdown.handle()
    }

    /// The address of the RESP port, if it has one.
    pub fn resp_addr(&self) -> Option<SocketAddr> {
        self.resp_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// Serves connections until shutdown, then drains and closes the store.
    pub fn run(mut self) -> crate::Result<()> {
        let mut handlers = Vec::new();
        let resp_addr = self.resp_addr();
        let resp_loop = match self.resp_listener.take() {
            None => None,
            Some(listener) => {
                let (shared, accepting) = (self.shared.clone(), self.accepting.clone());
                Some(
                    std::thread::Builder::new()
                        .name("resp-accept".into())
                        .spawn(move || accept_loop(&listener, &shared, &accepting, Port::Resp))
                        .map_err(crate::Error::Io)?,
                )
            }
        };
        let mut accept_backoff = AcceptBackoff::default();
        for incoming in self.listener.incoming() {
            if self.shared.shutdown.is_requested() {
                break;
            }
            let stream = match incoming {
                Ok(stream) => {
                    accept_backoff.reset();
                    stream
                }
                Err(e) => {
                    // Running out of file descriptors must not end the
                    // server, nor spin it: the connection waiting in the
                    // backlog fails every accept until a descriptor frees.
                    accept_backoff.wait(&e);
                    continue;
                }
            };
            handlers.retain(|h: &std::thread::JoinHandle<()>| !h.is_finished());
            if let Some(handler) =
                start_connection(&self.shared, &self.accepting, stream, Port::Native)
            {
                handlers.push(handler);
            }
        }
        drop(self.listener);
        if let (Some(accepting), Some(addr)) = (resp_loop, resp_addr) {
            shutdown::wake(addr);
            if let Ok(resp_handlers) = accepting.join() {
                handlers.extend(resp_handlers);
            }
        }
        // No scrape may hold the shared state when the store is closed.
        drop(self.metrics);
        info!("shutting down: no new connections; draining requests in flight");
        self.shared.shutdown.close_idle_connections();
        if let Node::Slave { state, .. } = &*self.shared.node() {
            // Reads waiting for a write answer now, with what is visible.
            state.wake_reads();
        }
        let deadline = Instant::now() + self.shared.config.drain_timeout;
        for handler in handlers {
            while !handler.is_finished() && Instant::now() < deadline {
                self.shared.shutdown.wait_for_change(deadline);
            }
            if handler.is_finished() {
                let _ = handler.join();
            }
        }
        match Arc::try_unwrap(self.shared) {
            Ok(shared) => {
                drop(shared);
                info!("store closed, bye");
            }
            Err(shared) => warn!(
                "{} connections still busy after the drain timeout; exiting with the store open \
                 (what they acknowledged is durable as --fsync promised)",
                shared.connections.load(Ordering::SeqCst)
            ),
        }
        drop(self.event_log);
        Ok(())
    }
}

/// Accepts connections on `listener` (the RESP port's) until shutdown;
/// returns the threads of those still served, for the drain.
fn accept_loop(
    listener: &TcpListener,
    shared: &Arc<Shared>,
    accepting: &Mutex<()>,
    port: Port,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut handlers = Vec::new();
    let mut backoff = AcceptBackoff::default();
    for incoming in listener.incoming() {
        if shared.shutdown.is_requested() {
            break;
        }
        match incoming {
            Ok(stream) => {
                backoff.reset();
                handlers.retain(|h: &std::thread::JoinHandle<()>| !h.is_finished());
                handlers.extend(start_connection(shared, accepting, stream, port));
            }
            Err(e) => backoff.wait(&e),
        }
    }
    handlers
}

/// The two ports a server listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    /// duokv's own protocol (`--listen`).
    Native,
    /// RESP (`--resp-listen`).
    Resp,
}

/// Hands a new connection to its own thread to be served as `port` speaks, or
/// turns it away when the server is at `max_connections` (counting both
/// ports' connections). `accepting` makes the check and the count one
/// step across the accept loops.
fn start_connection(
    shared: &Arc<Shared>,
    accepting: &Mutex<()>,
    stream: TcpStream,
    port: Port,
) -> Option<std::thread::JoinHandle<()>> {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown peer".to_string(), |a| a.to_string());
    let shared = shared.clone();
    let over_limit = {
        let _one_at_a_time = accepting.lock().unwrap_or_else(|p| p.into_inner());
        let over_limit = shared.connections.load(Ordering::SeqCst) >= shared.config.max_connections;
        if over_limit && shared.refusing.load(Ordering::SeqCst) >= MAX_REFUSING {
            warn!(
                "{peer}: over the connection limit while {MAX_REFUSING} refusals are under way; closed"
            );
            return None;
        }
        shared.counter(over_limit).fetch_add(1, Ordering::SeqCst);
        over_limit
    };
    let counted = shared.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("conn {peer}"))
        .spawn(move || {
            match (port, over_limit) {
                (Port::Native, false) => handler::serve(&shared, stream, &peer),
                (Port::Native, true) => handler::refuse_busy(&shared, stream, &peer),
                (Port::Resp, false) => resp::serve(&shared, stream, &peer),
                (Port::Resp, true) => resp::refuse_busy(&shared, stream, &peer),
            }
            shared.counter(over_limit).fetch_sub(1, Ordering::SeqCst);
            shared.shutdown.notify_change();
        });
    match spawned {
        Ok(handle) => Some(handle),
        Err(e) => {
            counted.counter(over_limit).fetch_sub(1, Ordering::SeqCst);
            error!("cannot start a thread for a connection: {e}");
            None
        }
    }
}
