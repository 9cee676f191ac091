//! A connection's bytes, in clear or through TLS, shared by the threads
//! that use one connection.
//!
//! A duokv connection is read by one thread and written by others: the
//! server's connection thread reads requests while the thread that commits
//! a write sends its reply; a master's link sends appends while its
//! acknowledgement reader reads. A plain socket allows that as is. A TLS
//! connection is one state machine for both directions, so
//! [`Transport`] keeps it under a mutex that is held only to turn bytes
//! into records and back, never while waiting on the socket:
//!
//! - a reader waits on the socket without it, then takes it to decrypt
//!   what arrived;
//! - a writer takes it to encrypt, and sends the records under a second
//!   lock, the send lock, which keeps them in order (TLS numbers its
//!   records implicitly). Sending may wait for the peer to read (the
//!   socket's write timeout bounds it) without holding up a reader's
//!   decryption: on a master's link, the acknowledgements keep coming in
//!   while a batch of appends goes out.
//!
//! The lock order is always send, then session.
//!
//! A `Transport` is a cheap handle (clones share the connection), and it
//! and `&Transport` are `Read` and `Write`, as `TcpStream` is; it has the
//! socket options a `TcpStream` has (timeouts, `TCP_NODELAY`, shutdown),
//! so code written for a `TcpStream` takes one as it is.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::pki_types::ServerName;
use socket2::SockRef;

/// The first byte of a TLS handshake record: a plaintext duokv handshake
/// never starts with it.
pub const TLS_HANDSHAKE_BYTE: u8 = 0x16;

/// One connection's socket, with its TLS session when it has one; clones
/// share them.
#[derive(Debug, Clone)]
pub struct Transport(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    socket: TcpStream,
    tls: Option<Mutex<rustls::Connection>>,
    /// The send lock, with the records taken from the session but not yet
    /// written to the socket (a send that would have blocked left them).
    unsent: Mutex<Vec<u8>>,
}

impl Transport {
    /// A connection in clear.
    pub fn plain(socket: TcpStream) -> Transport {
        Transport(Arc::new(Inner {
            socket,
            tls: None,
            unsent: Mutex::new(Vec::new()),
        }))
    }

    /// Another handle on the same connection (as `TcpStream::try_clone`,
    /// which it stands in for; it cannot fail).
    pub fn try_clone(&self) -> io::Result<Transport> {
        Ok(self.clone())
    }

    /// Sets the socket's read timeout.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.0.socket.set_read_timeout(timeout)
    }

    /// Sets the socket's write timeout.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.0.socket.set_write_timeout(timeout)
    }

    /// Sets `TCP_NODELAY`.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.0.socket.set_nodelay(nodelay)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.socket.peer_addr()
    }

    /// The server's side of a TLS connection on `socket`; the handshake
    /// runs with the first read.
    pub fn tls_server(socket: TcpStream, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let mut session = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        // A reply (up to a value's 16 MiB) is encrypted whole: the
        // connection has one in flight at most.
        session.set_buffer_limit(None);
        Ok(Transport(Arc::new(Inner {
            socket,
            tls: Some(Mutex::new(session.into())),
            unsent: Mutex::new(Vec::new()),
        })))
    }

    /// The client's side of a TLS connection on `socket` to the server
    /// named `name` (its certificate must be for that name).
    pub fn tls_client(
        socket: TcpStream,
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<Self> {
        let mut session = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
        session.set_buffer_limit(None);
        Ok(Transport(Arc::new(Inner {
            socket,
            tls: Some(Mutex::new(session.into())),
            unsent: Mutex::new(Vec::new()),
        })))
    }

    /// The socket, for its options.
    pub fn socket(&self) -> &TcpStream {
        &self.0.socket
    }

    /// The certificate the peer presented in the TLS handshake (its leaf),
    /// if any.
    pub fn peer_certificate(&self) -> Option<rustls::pki_types::CertificateDer<'static>> {
        let session = self.session()?;
        session.peer_certificates()?.first().cloned()
    }

    /// Whether the connection is through TLS.
    pub fn is_tls(&self) -> bool {
        self.0.tls.is_some()
    }

    fn session(&self) -> Option<MutexGuard<'_, rustls::Connection>> {
        self.0
            .tls
            .as_ref()
            .map(|tls| tls.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn unsent(&self) -> MutexGuard<'_, Vec<u8>> {
        self.0.unsent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes every record the session has to send, after those already
    /// taken (`unsent`, under the send lock the caller holds).
    fn take_records(&self, unsent: &mut Vec<u8>) -> io::Result<()> {
        if let Some(mut session) = self.session() {
            while session.wants_write() {
                session.write_tls(unsent)?;
            }
        }
        Ok(())
    }

    /// Sends every record the session has, waiting for the socket as its
    /// write timeout allows.
    fn flush_records(&self) -> io::Result<()> {
        let mut unsent = self.unsent();
        self.take_records(&mut unsent)?;
        if unsent.is_empty() {
            return Ok(());
        }
        let written = (&self.0.socket).write_all(&unsent);
        unsent.clear();
        written
    }

    /// Runs the TLS handshake to its end (nothing in clear), so that a
    /// refused certificate is reported here, as the handshake's error.
    pub fn handshake(&self) -> io::Result<()> {
        loop {
            self.flush_records()?;
            match self.session() {
                None => return Ok(()),
                Some(session) if !session.is_handshaking() => return Ok(()),
                Some(_) => {}
            }
            if self.receive()? == 0 {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the peer closed the connection during the TLS handshake",
                ));
            }
        }
    }

    /// Reads what the socket has (waiting for it without the lock) and
    /// gives it to the TLS session; returns how many bytes came (0: the
    /// peer closed). Anything the session has to answer (a handshake
    /// message, an alert) is sent.
    fn receive(&self) -> io::Result<usize> {
        let mut buf = [0u8; 16 * 1024];
        let n = (&self.0.socket).read(&mut buf)?;
        let Some(mut session) = self.session() else {
            return Ok(n);
        };
        if n == 0 {
            // The peer's end: let the session know, so that its reader
            // reports the end (or an end without close_notify).
            let _ = session.read_tls(&mut io::empty());
            return Ok(0);
        }
        let mut fed = &buf[..n];
        let mut failed = None;
        while !fed.is_empty() {
            session.read_tls(&mut fed)?;
            if let Err(e) = session.process_new_packets() {
                failed = Some(e);
                break;
            }
        }
        let answer = session.wants_write();
        drop(session);
        // What the session has to answer (a handshake message, a key
        // update, the alert of a failure) goes out in order with the rest.
        if answer {
            let flushed = self.flush_records();
            if failed.is_none() {
                flushed?;
            }
        }
        match failed {
            Some(e) => Err(io::Error::new(ErrorKind::InvalidData, e)),
            None => Ok(n),
        }
    }

    /// Sends what it can of `bytes` without waiting for the peer to read:
    /// returns how many of them need [`send_rest`](Self::send_rest). In
    /// clear, the bytes the socket's buffer did not take; through TLS,
    /// every byte is taken into the session, and the records that did not
    /// fit wait there (0 is returned with [`has_pending`](Self::has_pending)
    /// true).
    pub fn send_without_waiting(&self, bytes: &[u8]) -> io::Result<usize> {
        let Some(mut session) = self.session() else {
            let sent = send_what_fits(&self.0.socket, bytes)?;
            return Ok(bytes.len() - sent);
        };
        session.writer().write_all(bytes)?;
        drop(session);
        // Another thread sending holds the send lock, and sends these
        // records too, or leaves them to the reply thread.
        let Ok(mut unsent) = self.0.unsent.try_lock() else {
            return Ok(0);
        };
        self.take_records(&mut unsent)?;
        let sent = send_what_fits(&self.0.socket, &unsent)?;
        unsent.drain(..sent);
        Ok(0)
    }

    /// Whether TLS records wait to be sent.
    pub fn has_pending(&self) -> bool {
        self.is_tls()
            && (self
                .0
                .unsent
                .try_lock()
                .map_or(true, |unsent| !unsent.is_empty())
                || self.session().is_some_and(|session| session.wants_write()))
    }

    /// Sends what [`send_without_waiting`](Self::send_without_waiting)
    /// left (`rest`, and the records waiting), waiting for the peer as the
    /// socket's write timeout allows.
    pub fn send_rest(&self, rest: &[u8]) -> io::Result<()> {
        if let Some(mut session) = self.session() {
            session.writer().write_all(rest)?;
            drop(session);
            return self.flush_records();
        }
        (&self.0.socket).write_all(rest)
    }

    /// Shuts the socket down (`how`, as `TcpStream::shutdown`); a TLS
    /// peer is told first when the writing side closes, if the socket
    /// takes the alert at once.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if how != Shutdown::Read
            && let Some(mut session) = self.0.tls.as_ref().and_then(|tls| tls.try_lock().ok())
        {
            session.send_close_notify();
            let mut socket = NonBlocking(SockRef::from(&self.0.socket));
            let _ = session.write_tls(&mut socket);
        }
        self.0.socket.shutdown(how)
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        (&*self).write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for &Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.tls.is_none() {
            return (&self.0.socket).read(buf);
        }
        loop {
            {
                let mut session = self.session().expect("a TLS transport");
                match session.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    // The peer closed without close_notify: between frames
                    // that is an end like any other (a frame cut short is
                    // caught by the framing).
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
            }
            if self.receive()? == 0 {
                return Ok(0);
            }
        }
    }
}

impl Write for &Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self.session() {
            None => (&self.0.socket).write_all(buf),
            Some(mut session) => {
                session.writer().write_all(buf)?;
                drop(session);
                self.flush_records()
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends as much of `bytes` as the socket's buffer takes now
/// (`MSG_DONTWAIT`); returns how many it took.
fn send_what_fits(socket: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut socket = NonBlocking(SockRef::from(socket));
    let mut at = 0;
    while at < bytes.len() {
        match socket.write(&bytes[at..]) {
            Ok(n) => at += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(at)
}

/// A socket written with `MSG_DONTWAIT`: a full buffer is `WouldBlock`.
struct NonBlocking<'a>(SockRef<'a>);

impl Write for NonBlocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match self.0.send_with_flags(buf, libc::MSG_DONTWAIT) {
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                outcome => return outcome,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
