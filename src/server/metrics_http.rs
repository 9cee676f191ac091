//! The `/metrics` endpoint (`--metrics-listen ADDR`): `GET /metrics`
//! answered with [`scrape::render`](super::scrape::render)'s text, over
//! HTTP/1.1 with `Connection: close`, one short-lived thread per scrape.
//!
//! Why not an HTTP crate: the blocking ones (tiny_http 0.12) read a
//! request's header lines without a bound, set no read timeout and start
//! a thread for every connection without a cap, which would make the
//! metrics port the one unbounded door of a server that bounds and times
//! out every other peer. What is left to write is the socket loop, which
//! mirrors the server's own; the request head is parsed by `httparse`.
//!
//! Bounds: a request head of at most [`MAX_HEAD`] bytes, whole within
//! [`TIMEOUT`] (the reply must be sent within it too); at most
//! [`MAX_SCRAPES`] scrapes at once, past which a connection is closed
//! unanswered. The endpoint has no authentication: it is off by default,
//! and best bound to loopback or a monitoring network (README, "Security").
//!
//! The thread holds the server's shared state only weakly, and only during
//! a scrape, so it never keeps the store open; the server stops it and
//! waits for it before it closes the store.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::scrape;
use super::shared::Shared;

/// The largest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// How long a scrape's request may take to arrive, and its reply to leave.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Scrapes served at once; more connections are closed at once.
const MAX_SCRAPES: usize = 4;

/// The metrics listener, bound and not yet serving.
#[derive(Debug)]
pub(crate) struct MetricsListener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl MetricsListener {
    /// Binds `addr`; fails as the server's own listener does.
    pub(crate) fn bind(addr: SocketAddr) -> crate::Result<MetricsListener> {
        let listener =
            TcpListener::bind(addr).map_err(|source| crate::Error::Bind { addr, source })?;
        let addr = listener.local_addr().map_err(crate::Error::Io)?;
        if !addr.ip().is_loopback() {
            warn!(
                "serving metrics on {addr}, not loopback: /metrics has no authentication, so \
                 anyone who can reach this port reads this node's figures"
            );
        }
        Ok(MetricsListener { listener, addr })
    }

    /// The bound address (with the port the OS chose for port 0).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves scrapes of `shared`'s metrics on a thread of its own until
    /// the returned endpoint is stopped or dropped.
    pub(crate) fn serve(self, shared: Weak<Shared>) -> crate::Result<MetricsEndpoint> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let addr = self.addr;
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || accept_loop(&self.listener, &shared, &stopping))
            .map_err(crate::Error::Io)?;
        info!("serving metrics on http://{addr}/metrics");
        Ok(MetricsEndpoint {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

/// The running endpoint; stopped, and its thread joined, when dropped.
#[derive(Debug)]
pub(crate) struct MetricsEndpoint {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for MetricsEndpoint {
    /// Stops accepting, and waits for the scrapes under way (each bounded
    /// by [`TIMEOUT`]).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // `accept` blocks; a connection of our own wakes it to see the flag.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        if let Err(e) = TcpStream::connect_timeout(&wake, Duration::from_secs(1)) {
            debug!("waking the metrics listener at {wake}: {e}");
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts scrapes until `stop`; waits for those under way before it
/// returns.
fn accept_loop(listener: &TcpListener, shared: &Weak<Shared>, stop: &AtomicBool) {
    let busy = Arc::new(AtomicUsize::new(0));
    let mut scrapes: Vec<JoinHandle<()>> = Vec::new();
    for incoming in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match incoming {
            Ok(stream) => stream,
            Err(e) => {
                // Out of file descriptors, say: the server's own accept
                // loop backs off and warns; this one just must not spin.
                debug!("metrics: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        scrapes.retain(|scrape| !scrape.is_finished());
        if busy.load(Ordering::SeqCst) >= MAX_SCRAPES {
            debug!("metrics: {MAX_SCRAPES} scrapes under way; a connection closed unanswered");
            continue;
        }
        busy.fetch_add(1, Ordering::SeqCst);
        let (shared, done) = (shared.clone(), busy.clone());
        let spawned = std::thread::Builder::new()
            .name("metrics scrape".into())
            .spawn(move || {
                answer(stream, &shared);
                done.fetch_sub(1, Ordering::SeqCst);
            });
        match spawned {
            Ok(scrape) => scrapes.push(scrape),
            Err(e) => {
                busy.fetch_sub(1, Ordering::SeqCst);
                warn!("metrics: no thread for a scrape: {e}");
            }
        }
    }
    for scrape in scrapes {
        let _ = scrape.join();
    }
}

/// What a request asks for, as far as this endpoint cares.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    /// `GET /metrics` (or `HEAD`, which gets the headers only).
    Metrics { head_only: bool },
    /// Another path.
    NotFound,
    /// Another method.
    NotAllowed,
}

/// Why no request was read.
#[derive(Debug, PartialEq, Eq)]
enum BadRequest {
    /// The head is not HTTP/1.x.
    Malformed,
    /// The head passed [`MAX_HEAD`] bytes.
    TooLarge,
    /// The peer closed, or was too slow: nothing to answer.
    Gone,
}

/// Reads one request from `stream` and answers it.
fn answer(mut stream: TcpStream, shared: &Weak<Shared>) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown peer".to_string(), |a| a.to_string());
    if let Err(e) = stream.set_write_timeout(Some(TIMEOUT)) {
        debug!("metrics: {peer}: {e}");
        return;
    }
    let response = match read_request(&mut stream) {
        Ok(Request::Metrics { head_only }) => match shared.upgrade() {
            Some(shared) => {
                let body = scrape::render(&shared);
                drop(shared);
                response("200 OK", scrape::CONTENT_TYPE, body.as_bytes(), head_only)
            }
            None => response(
                "503 Service Unavailable",
                "text/plain",
                b"stopping\n",
                false,
            ),
        },
        Ok(Request::NotFound) => response(
            "404 Not Found",
            "text/plain",
            b"not found: the metrics are at /metrics\n",
            false,
        ),
        Ok(Request::NotAllowed) => response(
            "405 Method Not Allowed\r\nAllow: GET, HEAD",
            "text/plain",
            b"method not allowed\n",
            false,
        ),
        Err(BadRequest::Malformed) => {
            response("400 Bad Request", "text/plain", b"bad request\n", false)
        }
        Err(BadRequest::TooLarge) => response(
            "431 Request Header Fields Too Large",
            "text/plain",
            b"request head too large\n",
            false,
        ),
        Err(BadRequest::Gone) => return,
    };
    if let Err(e) = stream.write_all(&response) {
        debug!("metrics: {peer}: cannot send the reply: {e}");
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Reads a request head within [`TIMEOUT`] and [`MAX_HEAD`] bytes.
fn read_request(stream: &mut TcpStream) -> Result<Request, BadRequest> {
    let deadline = Instant::now() + TIMEOUT;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(request) = parse(&head)? {
            return Ok(request);
        }
        if head.len() >= MAX_HEAD {
            return Err(BadRequest::TooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(BadRequest::Gone);
        }
        let want = chunk.len().min(MAX_HEAD - head.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) | Err(_) => return Err(BadRequest::Gone),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The request in `head`, once it is whole.
fn parse(head: &[u8]) -> Result<Option<Request>, BadRequest> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(_)) => {
            let path = request.path.unwrap_or_default();
            let path = path.split_once('?').map_or(path, |(path, _)| path);
            Ok(Some(match (request.method.unwrap_or_default(), path) {
                ("GET", "/metrics") => Request::Metrics { head_only: false },
                ("HEAD", "/metrics") => Request::Metrics { head_only: true },
                ("GET" | "HEAD", _) => Request::NotFound,
                _ => Request::NotAllowed,
            }))
        }
        Err(httparse::Error::TooManyHeaders) => Err(BadRequest::TooLarge),
        Err(_) => Err(BadRequest::Malformed),
    }
}

/// An HTTP/1.1 response that closes the connection.
fn response(status: &str, content_type: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    let mut bytes = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        bytes.extend_from_slice(body);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_or_head_of_metrics_is_served() {
        let parsed = |head: &str| parse(head.as_bytes());
        assert_eq!(
            parsed("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Some(Request::Metrics { head_only: false }))
        );
        assert_eq!(
            parsed("GET /metrics?name[]=up HTTP/1.0\r\n\r\n"),
            Ok(Some(Request::Metrics { head_only: false }))
        );
        assert_eq!(
            parsed("HEAD /metrics HTTP/1.1\r\n\r\n"),
            Ok(Some(Request::Metrics { head_only: true }))
        );
        assert_eq!(
            parsed("GET / HTTP/1.1\r\n\r\n"),
            Ok(Some(Request::NotFound))
        );
        assert_eq!(
            parsed("POST /metrics HTTP/1.1\r\n\r\n"),
            Ok(Some(Request::NotAllowed))
        );
        assert_eq!(parsed("GET /metrics HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert_eq!(parsed("\x16\x03\x01 tls"), Err(BadRequest::Malformed));
    }

    #[test]
    fn a_head_only_reply_has_the_body_length_and_no_body() {
        let reply = response("200 OK", "text/plain", b"abc", true);
        let text = String::from_utf8(reply).unwrap();
        assert!(text.contains("Content-Length: 3\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }
}
