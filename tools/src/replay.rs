//! `duokv replay-discarded`: re-applying a discarded-writes file to a
//! master, as ordinary writes.
//!
//! A slave that joins a master whose history does not hold some of its
//! writes saves them to a discarded-writes file before the full resync
//! replaces them ([`duokv::discarded_writes`]). Whether they should be
//! written again is the operator's call (the new master may have taken
//! newer writes to the same keys since): this tool never runs on its own.
//! It sends each saved write, oldest first, as a `put` or a `delete` (a
//! delete of a key the master does not hold is reported and skipped),
//! printing one line per write; `--dry-run` prints what it would send and
//! connects to nothing. The writes get the master's next sequence
//! numbers, not their old ones.

use std::path::Path;

use duokv::discarded_writes::{self, SavedWrite};
use duokv::event_log::csv_key;
use duokv::storage::Op;
use duokv::{ClientBuilder, Error as DuokvError};

use crate::error::{Error, Result};

/// Replays the writes of `file` on the master at `addr` (or, with
/// `dry_run`, only says what it would send), printing one line per write
/// through `say`; returns the summary line. `client` makes the builder of
/// a client of an address (with the servers' token and TLS).
pub fn run(
    file: &Path,
    addr: &str,
    dry_run: bool,
    client: impl FnOnce(String) -> ClientBuilder,
    mut say: impl FnMut(&str),
) -> Result<String> {
    let writes = discarded_writes::read(file).map_err(|e| Error::BadFile {
        path: file.to_path_buf(),
        reason: duokv::error::chain(&e),
    })?;
    let mut client = if dry_run {
        None
    } else {
        Some(client(addr.to_string()).connect()?)
    };
    let (mut sent, mut skipped) = (0u64, 0u64);
    for write in &writes {
        let what = describe(write);
        let Some(client) = client.as_mut() else {
            say(&format!("would {what}"));
            continue;
        };
        let outcome = match &write.op {
            Op::Put { key, value } => client.put(key, value),
            Op::Delete { key } => client.delete(key),
        };
        match outcome {
            Ok(receipt) => {
                sent += 1;
                say(&format!("{what}: ok, seq {} on {addr}", receipt.seq));
            }
            Err(DuokvError::NotFound) => {
                skipped += 1;
                say(&format!("{what}: skipped, {addr} does not hold the key"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(if dry_run {
        format!(
            "dry run: {} writes of {} would be sent to {addr}; nothing sent",
            writes.len(),
            file.display()
        )
    } else {
        format!(
            "replayed {sent} writes of {} on {addr} ({skipped} deletes skipped)",
            file.display()
        )
    })
}

/// `put KEY (N bytes), was seq S`: keys as the event log prints them
/// (plain printable ASCII as is, else `0x` hex).
fn describe(write: &SavedWrite) -> String {
    match &write.op {
        Op::Put { key, value } => format!(
            "put {} ({} bytes), was seq {}",
            csv_key(key),
            value.len(),
            write.seq
        ),
        Op::Delete { key } => format!("delete {}, was seq {}", csv_key(key), write.seq),
    }
}
