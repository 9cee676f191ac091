//! [`ReplicaSet`]: a client of a master and its slave together.
//!
//! Writes always go to the master. Reads go where [`ReadFrom`] says: the
//! master (always up to date), the slave (local to it, possibly stale in
//! async mode), or either in turn. If the replica taken for the master
//! answers a write with `NotMaster`, the set follows the address it names,
//! once, and retries the write there: a `NotMaster` reply means nothing was
//! written, so the retry cannot apply the write twice.

use crate::client::{Client, WriteReceipt};
use crate::error::{Error, Result};

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

/// A master and a slave, used as one store.
///
/// ```no_run
/// use duokv::replica_set::{ReadFrom, ReplicaSet};
///
/// # fn main() -> Result<(), duokv::Error> {
/// let mut set = ReplicaSet::new("10.0.0.1:7070", "10.0.0.2:7070").read_from(ReadFrom::Slave);
/// let receipt = set.put("k", "v")?; // on the master
/// let value = set.read("k")?; // on the slave
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct ReplicaSet {
    master: Client,
    slave: Client,
    read_from: ReadFrom,
    slave_next: bool,
}

impl ReplicaSet {
    /// A set of the master at `master` and the slave at `slave`; each is
    /// dialled on its first use.
    pub fn new(master: impl Into<String>, slave: impl Into<String>) -> Self {
        ReplicaSet {
            master: Client::builder(master).build(),
            slave: Client::builder(slave).build(),
            read_from: ReadFrom::Master,
            slave_next: true,
        }
    }

    /// Sets where reads go.
    pub fn read_from(mut self, read_from: ReadFrom) -> Self {
        self.read_from = read_from;
        self
    }

    /// The client of the master.
    pub fn master(&mut self) -> &mut Client {
        &mut self.master
    }

    /// The client of the slave.
    pub fn slave(&mut self) -> &mut Client {
        &mut self.slave
    }

    /// The value of `key` from the replica [`ReadFrom`] picks.
    pub fn read(&mut self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        let from_slave = match self.read_from {
            ReadFrom::Master => false,
            ReadFrom::Slave => true,
            ReadFrom::Either => {
                self.slave_next = !self.slave_next;
                !self.slave_next
            }
        };
        if from_slave {
            self.slave.read(key)
        } else {
            self.master.read(key)
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

    /// Runs a write on the master, following one `NotMaster` redirect.
    fn on_master(
        &mut self,
        write: impl Fn(&mut Client) -> Result<WriteReceipt>,
    ) -> Result<WriteReceipt> {
        match write(&mut self.master) {
            Err(Error::NotMaster { master }) => {
                log::info!(
                    "{} is not the master; following it to {master}",
                    self.master.addr()
                );
                self.master = Client::builder(master).build();
                write(&mut self.master)
            }
            outcome => outcome,
        }
    }
}
