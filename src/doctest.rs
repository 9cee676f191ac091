//! A throwaway server for the documentation's runnable examples: a
//! standalone `Server` on a free loopback port with its store in a temporary
//! directory, stopped and removed when dropped. Not part of the API.

use std::thread::JoinHandle;

use crate::{Result, Server, ServerConfig, ShutdownHandle};

/// A running example server.
#[derive(Debug)]
pub struct DocServer {
    addr: String,
    stop: ShutdownHandle,
    thread: Option<JoinHandle<Result<()>>>,
    _dir: tempfile::TempDir,
}

/// Starts an example server; panics if it cannot (examples only).
pub fn server() -> DocServer {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let listen = "127.0.0.1:0".parse().expect("a loopback address");
    let server = Server::bind(ServerConfig::new(listen, dir.path())).expect("an example server");
    let addr = server.local_addr().to_string();
    let stop = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.run());
    DocServer {
        addr,
        stop,
        thread: Some(thread),
        _dir: dir,
    }
}

impl DocServer {
    /// The server's address.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }
}

impl Drop for DocServer {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
