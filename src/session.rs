//! [`Session`]: read your own writes, and never read back in time, across
//! the master and the slave, without handling tokens.
//!
//! A session keeps one [`Token`]: the newest write it has made or seen.
//! Every read it makes asks the replica to show that write first
//! ([`ReadWhen::after`]), so a read on the slave right after a write on the
//! master waits for the write instead of answering without it, and a read
//! on the slave after a read on the master never shows an older value.
//! After each write the session keeps the write's token; after each read,
//! `(history, seq)` of the value read, or `(history, visible_seq)` when the
//! key was absent, so that a delete it saw is never undone by a later read
//! (see [`ReadOutcome::token`]).
//!
//! A session can also bound the staleness of every read
//! ([`Session::max_staleness`]). It talks through any [`Client`] it is
//! given; a [`ReplicaSet`](crate::replica_set::ReplicaSet) keeps one and
//! reads the master when the slave cannot meet its conditions in time.
//!
//! # Which token is newer
//!
//! Two tokens of one history are ordered by seq. A token of another
//! history is the newer observation: a replica that answers a read after
//! a token continues its history, so what it answers is of that history
//! or a later one (a master that restarts forks a new history that
//! continues the old one up to the last write it still holds). The
//! session then keeps the new history with **the higher of the two
//! seqs**: the new history holds the kept write at its own seq (if the
//! master kept it), so a read after `(new, max)` still shows it, even on a
//! slave that has just joined the new history and is catching up.
//! Keeping the new token's lower seq alone would let such a slave answer
//! without the session's own write. If the master lost the kept write in
//! a crash (never acknowledged to a sync pair), no replica will show it;
//! the higher seq then only makes the next read wait for the new
//! history to reach it. Keeping the old history instead would make every
//! later read fail with [`Error::UnknownHistory`]; [`Session::reset`]
//! starts over.
//!
//! [`Error::UnknownHistory`]: crate::Error::UnknownHistory

use std::time::Duration;

use crate::client::{Client, ReadOutcome, ReadWhen, WriteReceipt};
use crate::error::Result;
use crate::token::Token;

/// How long a session lets a replica wait for its conditions, unless told
/// otherwise ([`Session::wait`]).
pub const DEFAULT_WAIT: Duration = Duration::from_millis(50);

/// Read-your-writes and monotonic reads over one or more [`Client`]s:
/// the newest token seen, sent as `after` with every read.
///
/// ```
/// # let server = duokv::doctest::server();
/// use duokv::{Client, Session};
///
/// let mut master = Client::connect(server.addr())?;
/// let mut session = Session::new();
/// session.put(&mut master, "k", "v")?;
/// // On a slave this read would wait (up to the session's wait) for the put.
/// let read = session.read(&mut master, "k")?;
/// assert_eq!(read.value, Some(b"v".to_vec()));
/// assert_eq!(session.token().map(|t| t.seq), Some(1));
/// # Ok::<(), duokv::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    token: Option<Token>,
    max_staleness: Option<Duration>,
    wait: Duration,
}

impl Default for Session {
    fn default() -> Session {
        Session {
            token: None,
            max_staleness: None,
            wait: DEFAULT_WAIT,
        }
    }
}

impl Session {
    /// A session that has seen nothing yet, with no staleness bound and a
    /// wait of [`DEFAULT_WAIT`].
    pub fn new() -> Session {
        Session::default()
    }

    /// Bounds the staleness of every read (`None`: no bound); from 1 us to
    /// `u32::MAX` us, or reads fail with
    /// [`Error::BadRequest`](crate::Error::BadRequest) (see [`ReadWhen`]).
    pub fn max_staleness(mut self, max_staleness: impl Into<Option<Duration>>) -> Session {
        self.max_staleness = max_staleness.into();
        self
    }

    /// How long a replica may wait for a read's conditions (default
    /// [`DEFAULT_WAIT`]); the reply's read timeout is extended by it.
    pub fn wait(mut self, wait: Duration) -> Session {
        self.wait = wait;
        self
    }

    /// The newest write this session has made or seen, if any.
    pub fn token(&self) -> Option<Token> {
        self.token
    }

    /// The conditions of this session's next read.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let token: duokv::Token = "9ba3ab20c67f0fc0:42".parse()?;
    /// let mut session = duokv::Session::new().wait(Duration::from_millis(10));
    /// session.observe(token);
    /// let when = session.conditions();
    /// assert_eq!((when.after, when.wait), (Some(token), Duration::from_millis(10)));
    /// # Ok::<(), duokv::ParseTokenError>(())
    /// ```
    pub fn conditions(&self) -> ReadWhen {
        ReadWhen::new()
            .after(self.token)
            .max_staleness(self.max_staleness)
            .wait(self.wait)
    }

    /// Keeps `token` if it is newer than the one kept: a higher seq of the
    /// same history; of another history, that history with the higher of
    /// the two seqs (see the module's docs for why).
    ///
    /// ```
    /// let mut session = duokv::Session::new();
    /// session.observe("aa:5".parse()?);
    /// session.observe("aa:3".parse()?);
    /// assert_eq!(session.token(), Some("aa:5".parse()?)); // not back in time
    /// session.observe("bb:2".parse()?);
    /// assert_eq!(session.token(), Some("bb:5".parse()?)); // a new history, seq kept
    /// session.observe("bb:7".parse()?);
    /// assert_eq!(session.token(), Some("bb:7".parse()?));
    /// # Ok::<(), duokv::ParseTokenError>(())
    /// ```
    pub fn observe(&mut self, token: Token) {
        self.token = Some(match self.token {
            Some(kept) if kept.history == token.history => {
                if token.seq > kept.seq {
                    token
                } else {
                    kept
                }
            }
            Some(kept) => {
                log::debug!("session: history {token} follows {kept}");
                Token {
                    history: token.history,
                    seq: token.seq.max(kept.seq),
                }
            }
            None => token,
        });
    }

    /// Forgets the token: the next read asks for no write first. For a
    /// session whose write was lost (every replica answers
    /// [`Error::UnknownHistory`](crate::Error::UnknownHistory)).
    pub fn reset(&mut self) {
        self.token = None;
    }

    /// Reads `key` through `client` under this session's conditions and
    /// keeps the token of what it read.
    ///
    /// Fails as [`Client::read_when`] does: [`Error::NotYetVisible`],
    /// [`Error::UnknownHistory`] or [`Error::TooStale`] when the replica
    /// cannot meet the conditions in time (read the master instead; a
    /// [`ReplicaSet`](crate::replica_set::ReplicaSet) does so itself).
    ///
    /// [`Error::NotYetVisible`]: crate::Error::NotYetVisible
    /// [`Error::UnknownHistory`]: crate::Error::UnknownHistory
    /// [`Error::TooStale`]: crate::Error::TooStale
    pub fn read(&mut self, client: &mut Client, key: impl AsRef<[u8]>) -> Result<ReadOutcome> {
        let outcome = client.read_when(key, &self.conditions())?;
        if let Some(token) = outcome.token() {
            self.observe(token);
        }
        Ok(outcome)
    }

    /// [`Client::create`] through `client`, keeping the write's token.
    pub fn create(
        &mut self,
        client: &mut Client,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<WriteReceipt> {
        self.wrote(client.create(key, value))
    }

    /// [`Client::update`] through `client`, keeping the write's token.
    pub fn update(
        &mut self,
        client: &mut Client,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<WriteReceipt> {
        self.wrote(client.update(key, value))
    }

    /// [`Client::put`] through `client`, keeping the write's token.
    pub fn put(
        &mut self,
        client: &mut Client,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<WriteReceipt> {
        self.wrote(client.put(key, value))
    }

    /// [`Client::delete`] through `client`, keeping the write's token.
    pub fn delete(&mut self, client: &mut Client, key: impl AsRef<[u8]>) -> Result<WriteReceipt> {
        self.wrote(client.delete(key))
    }

    /// Keeps the token of a write that succeeded, and passes it on.
    pub(crate) fn wrote(&mut self, write: Result<WriteReceipt>) -> Result<WriteReceipt> {
        if let Ok(Some(token)) = write.as_ref().map(WriteReceipt::token) {
            self.observe(token);
        }
        write
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(history: u64, seq: u64) -> Token {
        Token { history, seq }
    }

    #[test]
    fn a_session_keeps_the_highest_seq_of_a_history() {
        let mut session = Session::new();
        assert_eq!(session.token(), None);
        for seq in [3, 7, 5, 7, 1] {
            session.observe(token(1, seq));
        }
        assert_eq!(session.token(), Some(token(1, 7)));
    }

    #[test]
    fn another_history_takes_over_without_lowering_the_seq() {
        let mut session = Session::new();
        session.observe(token(1, 100));
        // A restarted master's history, read at a key written long ago:
        // the session's own write (seq 100) must still be asked for.
        session.observe(token(2, 1));
        assert_eq!(session.token(), Some(token(2, 100)));
        session.observe(token(2, 90));
        assert_eq!(session.token(), Some(token(2, 100)));
        session.observe(token(3, 120));
        assert_eq!(session.token(), Some(token(3, 120)));
        session.reset();
        assert_eq!(session.token(), None);
    }

    #[test]
    fn the_conditions_carry_the_token_bound_and_wait() {
        let mut session = Session::new().max_staleness(Duration::from_millis(5));
        assert_eq!(
            session.conditions(),
            ReadWhen::new()
                .max_staleness(Duration::from_millis(5))
                .wait(DEFAULT_WAIT)
        );
        session.observe(token(4, 2));
        assert_eq!(session.conditions().after, Some(token(4, 2)));
    }
}
