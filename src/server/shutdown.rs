//! Stopping the server: a flag every thread sees, a way to wake the accept
//! loop, and the registry of open connections so that idle ones can be
//! closed while busy ones finish their request.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown as SocketShutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use log::{debug, info};

/// The server's shutdown state, shared by every thread.
#[derive(Debug)]
pub(crate) struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    listen: SocketAddr,
    requested: AtomicBool,
    next_id: AtomicU64,
    /// A clone of every open connection's socket, to unblock its reads.
    open: Mutex<HashMap<u64, TcpStream>>,
    changed: Condvar,
}

/// Stops a running [`Server`](crate::server::Server) from any thread.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    inner: Arc<Inner>,
}

/// Connects to `listen` once, so that an accept loop blocked on it wakes
/// up and sees the shutdown flag (loopback for the unspecified address).
pub(crate) fn wake(listen: SocketAddr) {
    let mut wake = listen;
    if wake.ip().is_unspecified() {
        wake.set_ip(match wake {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    if let Err(e) = TcpStream::connect_timeout(&wake, Duration::from_secs(1)) {
        debug!("waking the accept loop at {wake}: {e}");
    }
}

impl ShutdownHandle {
    /// Asks the server to stop: it stops accepting at once, lets requests
    /// in flight finish, closes its store, and `run` returns.
    pub fn shutdown(&self) {
        if self.inner.requested.swap(true, Ordering::SeqCst) {
            return;
        }
        info!("shutdown requested");
        // `accept` blocks; one connection of our own wakes it up to see the
        // flag.
        wake(self.inner.listen);
    }

    /// Whether shutdown was asked for.
    pub fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }
}

impl Shutdown {
    pub(crate) fn new(listen: SocketAddr) -> Self {
        Shutdown {
            inner: Arc::new(Inner {
                listen,
                requested: AtomicBool::new(false),
                next_id: AtomicU64::new(0),
                open: Mutex::new(HashMap::new()),
                changed: Condvar::new(),
            }),
        }
    }

    pub(crate) fn handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            inner: self.inner.clone(),
        }
    }

    pub(crate) fn listen_addr(&self) -> SocketAddr {
        self.inner.listen
    }

    pub(crate) fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// Registers an open connection; the guard removes it when dropped.
    pub(crate) fn register(&self, stream: &TcpStream) -> std::io::Result<Registration> {
        let clone = stream.try_clone()?;
        let id = self.inner.next_id.fetch_add(1, Ordering::SeqCst);
        let mut open = self.inner.open.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_requested() {
            // Shutdown began before this connection was registered: close
            // its reading side now, as `close_idle_connections` would have.
            let _ = clone.shutdown(SocketShutdown::Read);
        }
        open.insert(id, clone);
        Ok(Registration {
            inner: self.inner.clone(),
            id,
        })
    }

    /// Closes the reading side of every open connection: a handler blocked
    /// waiting for a request sees the end of the stream and exits, while a
    /// handler busy with a request finishes it and sends its reply first.
    pub(crate) fn close_idle_connections(&self) {
        let open = self.inner.open.lock().unwrap_or_else(|p| p.into_inner());
        for stream in open.values() {
            let _ = stream.shutdown(SocketShutdown::Read);
        }
    }

    /// Wakes [`wait_for_change`](Self::wait_for_change).
    pub(crate) fn notify_change(&self) {
        let _open = self.inner.open.lock().unwrap_or_else(|p| p.into_inner());
        self.inner.changed.notify_all();
    }

    /// Waits until a connection ends or `deadline` passes.
    pub(crate) fn wait_for_change(&self, deadline: Instant) {
        let open = self.inner.open.lock().unwrap_or_else(|p| p.into_inner());
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = self
            .inner
            .changed
            .wait_timeout(open, left.min(Duration::from_millis(100)));
    }
}

/// An open connection's place in the registry.
#[derive(Debug)]
pub(crate) struct Registration {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut open = self.inner.open.lock().unwrap_or_else(|p| p.into_inner());
        open.remove(&self.id);
    }
}
