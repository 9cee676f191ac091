//! The choices a master's replication is started with: sync or async
//! ([`ReplicationMode`]), and when a write goes to the slave ([`Forward`]).
//!
//! A leaf module, so that [`master`](super::master) and the command line
//! can name them without importing each other.

/// When a master forwards a write to its slave (`--forward`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Forward {
    /// As soon as it is in the master's log, while the master syncs it: the
    /// two syncs overlap, and a sync write costs about one `fdatasync` and
    /// two round trips. After a crash of the master's host the slave may
    /// have served a write the master lost (never acknowledged), which the
    /// resync then takes away.
    #[default]
    Written,
    /// Once it is durable on the master: the slave never holds a write the
    /// master could lose, and a sync write pays the two syncs one after the
    /// other.
    Durable,
}

impl std::str::FromStr for Forward {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "written" => Ok(Forward::Written),
            "durable" => Ok(Forward::Durable),
            _ => Err(format!("`{text}`: use written or durable")),
        }
    }
}

impl std::fmt::Display for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Forward::Written => "written",
            Forward::Durable => "durable",
        })
    }
}

/// How a master replicates its writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationMode {
    /// The client's reply waits for the slave's acknowledgement: the write
    /// is durable on both. It becomes visible on the slave a commit notice
    /// later (read it there with its token to be sure to see it).
    Sync,
    /// The client's reply also waits until the write is visible to readers
    /// on the slave (PostgreSQL's `remote_apply`): a read on the slave
    /// right after the reply sees it, at the price of the commit notice's
    /// trip.
    SyncVisible,
    /// The client's reply is sent once the master applied the write.
    Async,
}

impl ReplicationMode {
    /// Whether a write's reply waits for the slave.
    pub fn is_sync(self) -> bool {
        matches!(self, ReplicationMode::Sync | ReplicationMode::SyncVisible)
    }
}

impl std::str::FromStr for ReplicationMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "sync" => Ok(ReplicationMode::Sync),
            "sync-visible" => Ok(ReplicationMode::SyncVisible),
            "async" => Ok(ReplicationMode::Async),
            _ => Err(format!("`{text}`: use sync, sync-visible or async")),
        }
    }
}

impl std::fmt::Display for ReplicationMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReplicationMode::Sync => "sync",
            ReplicationMode::SyncVisible => "sync-visible",
            ReplicationMode::Async => "async",
        })
    }
}
