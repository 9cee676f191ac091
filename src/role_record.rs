//! The `ROLE` file: what a role change (a switchover, a promotion, a
//! master that learned it was replaced) made this node, and in which term.
//! It outlives the process: on restart it wins over the flags, so a node
//! restarted with the flags it had before the change (a stale master)
//! never takes writes again as if nothing happened. Only a role change
//! writes it; a node that never changed role has none, and its flags rule.
//!
//! Text, one `name value` per line:
//!
//! ```text
//! term 3
//! role master
//! replica 10.0.0.2:7070
//! replication async
//! sync-timeout-ms 2000
//! ```
//!
//! or, for a slave, `role slave` and `master HOST:PORT`. Written to
//! `ROLE.tmp`, synced, renamed over `ROLE`, and the directory synced, as
//! the storage crate writes `HISTORY`.
//!
//! A leaf module: it knows the replication settings and nothing of the
//! server.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::replication::{MasterSettings, ReplicationMode};

/// The file's name in the data dir.
const FILE: &str = "ROLE";

/// What a role change made this node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RoleRecord {
    /// The term it leads or follows.
    pub(crate) term: u64,
    /// The role.
    pub(crate) role: RecordedRole,
}

/// The role a [`RoleRecord`] names.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RecordedRole {
    /// A master replicating as these settings say (the others default).
    Master {
        /// The slave's address.
        replica: String,
        /// Sync, sync-visible or async.
        mode: ReplicationMode,
        /// How long a sync write waits for the slave.
        sync_timeout: Duration,
    },
    /// A slave of the master at this address.
    Slave {
        /// The master's client address.
        master: String,
    },
}

impl RoleRecord {
    /// The record of a master of `term` with `settings`.
    pub(crate) fn master(term: u64, settings: &MasterSettings) -> RoleRecord {
        RoleRecord {
            term,
            role: RecordedRole::Master {
                replica: settings.replica.clone(),
                mode: settings.mode,
                sync_timeout: settings.sync_timeout,
            },
        }
    }

    /// The record of a slave of `master` in `term`.
    pub(crate) fn slave(term: u64, master: &str) -> RoleRecord {
        RoleRecord {
            term,
            role: RecordedRole::Slave {
                master: master.to_string(),
            },
        }
    }

    /// The file's text.
    fn to_text(&self) -> String {
        let mut text = format!("term {}\n", self.term);
        match &self.role {
            RecordedRole::Master {
                replica,
                mode,
                sync_timeout,
            } => {
                text.push_str(&format!(
                    "role master\nreplica {replica}\nreplication {mode}\nsync-timeout-ms {}\n",
                    sync_timeout.as_millis()
                ));
            }
            RecordedRole::Slave { master } => {
                text.push_str(&format!("role slave\nmaster {master}\n"));
            }
        }
        text
    }

    /// Reads a record from the file's text; the error says what is wrong.
    fn from_text(text: &str) -> Result<RoleRecord, String> {
        let mut fields = std::collections::HashMap::new();
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let (name, value) = line
                .split_once(' ')
                .ok_or_else(|| format!("line `{line}` is not `name value`"))?;
            fields.insert(name, value.trim());
        }
        let get = |name: &str| {
            fields
                .get(name)
                .copied()
                .ok_or_else(|| format!("no `{name}` line"))
        };
        let term = get("term")?
            .parse()
            .map_err(|_| "`term` is not a number".to_string())?;
        let role = match get("role")? {
            "master" => RecordedRole::Master {
                replica: get("replica")?.to_string(),
                mode: get("replication")?.parse()?,
                sync_timeout: Duration::from_millis(
                    get("sync-timeout-ms")?
                        .parse()
                        .map_err(|_| "`sync-timeout-ms` is not a number".to_string())?,
                ),
            },
            "slave" => RecordedRole::Slave {
                master: get("master")?.to_string(),
            },
            other => return Err(format!("role `{other}` is neither master nor slave")),
        };
        Ok(RoleRecord { term, role })
    }
}

/// The record in `dir`, if a role change wrote one.
pub(crate) fn load(dir: &Path) -> crate::Result<Option<RoleRecord>> {
    let path = dir.join(FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(crate::Error::File { path, source }),
    };
    RoleRecord::from_text(&text)
        .map(Some)
        .map_err(|reason| crate::Error::BadFile { path, reason })
}

/// Writes `record` to `dir` durably: a crash leaves the old file or the
/// new one, whole.
pub(crate) fn save(dir: &Path, record: &RoleRecord) -> crate::Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    let failed = |source| crate::Error::File {
        path: dir.join(FILE),
        source,
    };
    let mut file = File::create(&tmp).map_err(failed)?;
    file.write_all(record.to_text().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(failed)?;
    fs::rename(&tmp, dir.join(FILE)).map_err(failed)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(failed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_roles_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let master = RoleRecord {
            term: 3,
            role: RecordedRole::Master {
                replica: "10.0.0.2:7070".into(),
                mode: ReplicationMode::Async,
                sync_timeout: Duration::from_millis(1500),
            },
        };
        save(dir.path(), &master).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(master));
        let slave = RoleRecord::slave(4, "10.0.0.1:7070");
        save(dir.path(), &slave).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(slave));
    }

    #[test]
    fn a_damaged_file_is_refused_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), "term x\nrole slave\nmaster a:1\n").unwrap();
        let error = load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("`term` is not a number"), "{error}");
        fs::write(dir.path().join(FILE), "term 1\nrole boss\n").unwrap();
        let error = load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("neither master nor slave"), "{error}");
    }
}
