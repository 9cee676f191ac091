//! [`ReplicaSet`]: a client of a master and its slave together.
//!
//! Writes always go to the master. Reads go where [`ReadFrom`] says: the
//! master (always up to date), the slave (local to it, possibly stale in
//! async mode), or either in turn. If the replica taken for the master
//! answers a write with `NotMaster`, the set follows the address it names
//! (after a switchover it names the set's slave: the two swap) and retries
//! the write there; a master that answers `SwitchingOver` (handing its role
//! over) is retried after a short pause, for up to [`SWITCH_PATIENCE`].
//! Neither reply means anything was written, so a retry cannot apply the
//! write twice. A session's tokens stay valid across a switchover: the new
//! master's history continues the old one.
//!
//! A set keeps a [`Session`]: each write's token is kept, and a
//! [`session_read`](ReplicaSet::session_read) sends the newest token as
//! `after` (with the session's staleness bound, if any, and its short
//! wait) to the replica [`ReadFrom`] picks. When the slave cannot meet
//! those conditions in time, or cannot be reached, the read goes to the
//! master, which always can, and the answer says so: read-your-writes and
//! monotonic reads with the slave serving every read it can. A plain
//! [`read`](ReplicaSet::read) asks for nothing and falls back to nothing.

use crate::client::{Client, WriteReceipt};
use crate::error::{Error, Result};
use crate::session::Session;

/// Which replica serves reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadFrom {
    /// Every read from the master.
    #[default]
    Master,
    /// Every read from the slave.
    Slave,
    /// Master and slave in turn.
    Either,
}

/// One of the two replicas of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Replica {
    /// The master (as the set last knew it: it follows `NotMaster`).
    Master,
    /// The slave.
    Slave,
}

/// The answer to a [`ReplicaSet::session_read`]: the value, and who gave
/// it.
#[derive(Debug)]
pub struct SessionRead {
    /// The value, or `None` if the key has none.
    pub value: Option<Vec<u8>>,
    /// The seq of the write that set the value; 0 if the key has none.
    pub seq: u64,
    /// The replica that answered.
    pub answered_by: Replica,
    /// Why the slave did not answer, when the read was meant for it and
    /// the master answered instead: its refusal
    /// ([`Error::NotYetVisible`], [`Error::UnknownHistory`],
    /// [`Error::TooStale`]) or why it could not be reached.
    pub fell_back: Option<Error>,
}

/// A master and a slave, used as one store.
///
/// ```no_run
/// use std::time::Duration;
/// use duokv::replica_set::{ReadFrom, Replica, ReplicaSet};
/// use duokv::Session;
///
/// # fn main() -> Result<(), duokv::Error> {
/// let mut set = ReplicaSet::new("10.0.0.1:7070", "10.0.0.2:7070")
///     .read_from(ReadFrom::Slave)
///     .with_session(Session::new().max_staleness(Duration::from_millis(5)));
/// let receipt = set.put("k", "v")?; // on the master
/// let value = set.read("k")?; // on the slave, maybe without the put
/// let read = set.session_read("k")?; // on the slave once it has the put
/// assert_eq!(read.value, Some(b"v".to_vec()));
/// if read.answered_by == Replica::Master {
///     println!("the slave could not: {:?}", read.fell_back);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct ReplicaSet {
    master: Client,
    slave: Client,
    read_from: ReadFrom,
    slave_next: bool,
    session: Session,
}

impl ReplicaSet {
    /// A set of the master at `master` and the slave at `slave`; each is
    /// dialled on its first use.
    pub fn new(master: impl Into<String>, slave: impl Into<String>) -> Self {
        ReplicaSet::from_clients(
            Client::builder(master).build(),
            Client::builder(slave).build(),
        )
    }

    /// A set of two clients built beforehand, to set their timeouts (a
    /// slave that accepts connections but does not answer costs a session
    /// read the slave client's read timeout, plus the wait, before it
    /// falls back to the master), an auth token, or TLS
    /// ([`ClientBuilder::tls`](crate::ClientBuilder::tls): a redirect to
    /// another address keeps it).
    pub fn from_clients(master: Client, slave: Client) -> Self {
        ReplicaSet {
            master,
            slave,
            read_from: ReadFrom::Master,
            slave_next: true,
            session: Session::new(),
        }
    }

    /// Sets where reads go.
    pub fn read_from(mut self, read_from: ReadFrom) -> Self {
        self.read_from = read_from;
        self
    }

    /// Replaces the set's session (by default [`Session::new`]): to start
    /// from another's tokens, bound staleness, or set the wait.
    pub fn with_session(mut self, session: Session) -> Self {
        self.session = session;
        self
    }

    /// The set's session: the newest token it has written or read.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The set's session, to [`reset`](Session::reset) it or observe a
    /// token written elsewhere.
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// The client of the master.
    pub fn master(&mut self) -> &mut Client {
        &mut self.master
    }

    /// The client of the slave.
    pub fn slave(&mut self) -> &mut Client {
        &mut self.slave
    }

    /// The value of `key` from the replica [`ReadFrom`] picks, as it is
    /// there: on the slave it may miss recent writes, the set's own too.
    pub fn read(&mut self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        match self.pick() {
            Replica::Slave => self.slave.read(key),
            Replica::Master => self.master.read(key),
        }
    }

    /// The value of `key` under the set's session: from the replica
    /// [`ReadFrom`] picks once it shows every write the session has made
    /// or seen (and, with a staleness bound, proves its data fresh
    /// enough), waiting up to the session's wait; else from the master.
    ///
    /// The master answers in the slave's place when the slave refuses
    /// ([`Error::NotYetVisible`], [`Error::UnknownHistory`],
    /// [`Error::TooStale`]) or cannot be reached (it is down, busy,
    /// shutting down, or times out); [`SessionRead::fell_back`] says why.
    /// Other failures of the slave, and any failure of the master, are
    /// the read's error.
    ///
    /// ```
    /// # let server = duokv::doctest::server();
    /// use duokv::replica_set::{ReadFrom, Replica, ReplicaSet};
    ///
    /// // A slave address where nothing listens: the master answers.
    /// let mut set = ReplicaSet::new(server.addr(), "127.0.0.1:1").read_from(ReadFrom::Slave);
    /// set.put("k", "v")?;
    /// let read = set.session_read("k")?;
    /// assert_eq!(read.value, Some(b"v".to_vec()));
    /// assert_eq!(read.answered_by, Replica::Master);
    /// assert!(matches!(read.fell_back, Some(duokv::Error::Connect { .. })));
    /// # Ok::<(), duokv::Error>(())
    /// ```
    pub fn session_read(&mut self, key: impl AsRef<[u8]>) -> Result<SessionRead> {
        let key = key.as_ref();
        let fell_back = match self.pick() {
            Replica::Master => None,
            Replica::Slave => match self.session.read(&mut self.slave, key) {
                Ok(outcome) => {
                    return Ok(SessionRead {
                        value: outcome.value,
                        seq: outcome.seq,
                        answered_by: Replica::Slave,
                        fell_back: None,
                    });
                }
                Err(error) if slave_cannot_answer(&error) => {
                    log::debug!(
                        "{} cannot answer a session read ({error}); reading the master {}",
                        self.slave.addr(),
                        self.master.addr()
                    );
                    Some(error)
                }
                Err(error) => return Err(error),
            },
        };
        let outcome = self.session.read(&mut self.master, key)?;
        Ok(SessionRead {
            value: outcome.value,
            seq: outcome.seq,
            answered_by: Replica::Master,
            fell_back,
        })
    }

    /// The replica the next read goes to.
    fn pick(&mut self) -> Replica {
        let slave = match self.read_from {
            ReadFrom::Master => false,
            ReadFrom::Slave => true,
            ReadFrom::Either => {
                self.slave_next = !self.slave_next;
                !self.slave_next
            }
        };
        if slave {
            Replica::Slave
        } else {
            Replica::Master
        }
    }

    /// [`Client::create`] on the master.
    pub fn create(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<WriteReceipt> {
        self.on_master(|master| master.create(key.as_ref(), value.as_ref()))
    }

    /// [`Client::update`] on the master.
    pub fn update(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<WriteReceipt> {
        self.on_master(|master| master.update(key.as_ref(), value.as_ref()))
    }

    /// [`Client::put`] on the master.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<WriteReceipt> {
        self.on_master(|master| master.put(key.as_ref(), value.as_ref()))
    }

    /// [`Client::delete`] on the master.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) -> Result<WriteReceipt> {
        self.on_master(|master| master.delete(key.as_ref()))
    }

    /// Runs a write on the master, following one `NotMaster` redirect,
    /// and keeps its token in the session.
    fn on_master(
        &mut self,
        write: impl Fn(&mut Client) -> Result<WriteReceipt>,
    ) -> Result<WriteReceipt> {
        let outcome = self.on_master_once(write);
        self.session.wrote(outcome)
    }

    /// Runs a write on the master, following `NotMaster` redirects (a
    /// few) and retrying `SwitchingOver` (a master handing its role over
    /// takes no writes for a moment) with a short, growing pause, for up
    /// to [`SWITCH_PATIENCE`]. Neither reply means anything was written,
    /// so a retry cannot apply the write twice.
    fn on_master_once(
        &mut self,
        write: impl Fn(&mut Client) -> Result<WriteReceipt>,
    ) -> Result<WriteReceipt> {
        let deadline = std::time::Instant::now() + SWITCH_PATIENCE;
        let mut pause = std::time::Duration::from_millis(2);
        let mut redirects = 0;
        loop {
            match write(&mut self.master) {
                Err(Error::NotMaster { master }) if redirects < MAX_REDIRECTS => {
                    redirects += 1;
                    self.follow(master);
                }
                Err(Error::SwitchingOver { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(100));
                }
                outcome => return outcome,
            }
        }
    }

    /// Makes the server at `master` the set's master. When it is the set's
    /// slave (the two swapped roles), the old master becomes the slave.
    fn follow(&mut self, master: String) {
        log::info!(
            "{} is not the master; following it to {master}",
            self.master.addr()
        );
        if master == self.slave.addr() {
            std::mem::swap(&mut self.master, &mut self.slave);
        } else {
            self.master = self.master.to_addr(master);
        }
    }
}

/// How long a write through the set retries a master that is switching
/// over.
pub const SWITCH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Redirects a write follows at most.
const MAX_REDIRECTS: usize = 3;

/// Whether the slave's `error` sends a session read to the master: a
/// refusal the master cannot give (it shows every write, and its data is
/// the newest), or a slave that is not there to ask. Anything else (a bad
/// request, a refused auth token, a server fault) would fail on the master
/// too, or is a fault to report, not to hide.
fn slave_cannot_answer(error: &Error) -> bool {
    matches!(
        error,
        Error::NotYetVisible { .. }
            | Error::UnknownHistory { .. }
            | Error::TooStale { .. }
            | Error::Connect { .. }
            | Error::Timeout { .. }
            | Error::Io(_)
            | Error::Protocol(_)
            | Error::Busy
            | Error::ShuttingDown
    )
}
