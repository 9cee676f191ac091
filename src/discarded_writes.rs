//! The discarded-writes file: the writes a node held that its new master's
//! history does not, saved as CSV before a full resync replaces them.
//!
//! A master forwards each batch to its slave before its own `fdatasync`,
//! and in async mode a slave may be behind when its master is lost. So when
//! a node joins another as its slave, it may hold writes past the point
//! where the other's history left its own (the old master, after a crash or
//! a promotion of its slave), or a history the other does not continue at
//! all (`--on-divergence resync`). The resync replaces them; in async mode
//! clients may have been told they were written. Before that, the slave
//! writes them here (`replication::discarded` decides when), and an
//! operator can replay them on the new master with `duokv replay-discarded`
//! (never automatic: they may conflict with what the new master took since).
//!
//! # The file
//!
//! In the data directory, named
//! `discarded-<history>-<first>-<last>-<utc>.csv`: the history the writes
//! belong to (16 hex digits), the first and last seq of the range saved,
//! and when it was saved (`20261202T081243Z`). A file is never overwritten:
//! a range already saved (a file of the same history, first and last) is
//! not saved again, since a history's log never changes below its end.
//!
//! One header line, [`HEADER`], then one row per record, oldest first:
//!
//! ```text
//! seq,op,key_hex,value_hex,written_ns
//! 101,put,757365723a31,616461,1796199013794949852
//! 102,delete,757365723a32,,1796199013795119187
//! 103,put,6b,,
//! ```
//!
//! - `seq`: the write's sequence number in its history, decimal;
//! - `op`: `put` or `delete`;
//! - `key_hex`, `value_hex`: the bytes, lowercase hex, two digits a byte
//!   (keys and values may hold any bytes, commas and newlines included);
//!   `value_hex` is empty for a delete (and for a put of an empty value);
//! - `written_ns`: when the node wrote the record's batch, nanoseconds since
//!   the UNIX epoch (UTC) by its own clock; empty when its log does not say
//!   (a segment of format version 1 or 2, or a compacted one).
//!
//! # Durability
//!
//! The rows go to `discarded.csv.tmp` in the same directory, which is
//! synced (`fsync`), then linked to the final name (a link never replaces
//! an existing file), unlinked, and the directory synced: the resync
//! deletes the originals right after, so the copy must be on disk first.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use duokv_storage::{Op, Record};

/// The header line of a discarded-writes file: its columns, and by their
/// names how keys and values are written (hex).
pub const HEADER: &str = "seq,op,key_hex,value_hex,written_ns";

/// The name a file has while it is written; removed once it is linked to
/// its final name.
pub const TEMP_NAME: &str = "discarded.csv.tmp";

/// One row of a discarded-writes file: a write as the node held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedWrite {
    /// The write's sequence number in the history it was discarded from.
    pub seq: u64,
    /// What the write did.
    pub op: Op,
    /// When the node wrote it, in UNIX nanoseconds, if its log says.
    pub written_ns: Option<u64>,
}

/// A file written by [`save`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// Where it is.
    pub path: PathBuf,
    /// How many rows it holds.
    pub rows: u64,
}

/// What went wrong writing or reading a discarded-writes file.
#[derive(Debug)]
#[non_exhaustive]
pub enum DiscardedError {
    /// A file operation failed.
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Reading the writes out of the store failed.
    Store(duokv_storage::Error),
    /// A line of a file is not a row of this format.
    Malformed {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for DiscardedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscardedError::Io { action, path, .. } => {
                write!(f, "cannot {action} {}", path.display())
            }
            DiscardedError::Store(_) => write!(f, "cannot read the writes from the store"),
            DiscardedError::Malformed { path, line, reason } => {
                write!(f, "{} line {line}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for DiscardedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DiscardedError::Io { source, .. } => Some(source),
            DiscardedError::Store(source) => Some(source),
            DiscardedError::Malformed { .. } => None,
        }
    }
}

impl From<duokv_storage::Error> for DiscardedError {
    fn from(e: duokv_storage::Error) -> Self {
        DiscardedError::Store(e)
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> DiscardedError {
    let path = path.to_path_buf();
    move |source| DiscardedError::Io {
        action,
        path,
        source,
    }
}

/// The file name of the range `first..=last` of history `history_id`,
/// saved at `saved_ns` (UNIX nanoseconds).
pub fn file_name(history_id: u64, first: u64, last: u64, saved_ns: u64) -> String {
    format!(
        "discarded-{history_id:016x}-{first}-{last}-{}.csv",
        utc_stamp(saved_ns / 1_000_000_000)
    )
}

/// A file in `dir` that already holds the range `first..=last` of history
/// `history_id`, if there is one.
pub fn already_saved(
    dir: &Path,
    history_id: u64,
    first: u64,
    last: u64,
) -> Result<Option<PathBuf>, DiscardedError> {
    let prefix = format!("discarded-{history_id:016x}-{first}-{last}-");
    for entry in fs::read_dir(dir).map_err(io_error("list", dir))? {
        let entry = entry.map_err(io_error("list", dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".csv") {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

/// Writes `records` to the new file `dir/name`, durably (see the module
/// docs), and returns it. Fails, leaving no file of that name, if a record
/// cannot be read, a write or sync fails, or `name` exists already.
pub fn save(
    dir: &Path,
    name: &str,
    records: impl IntoIterator<Item = duokv_storage::Result<(Record, Option<u64>)>>,
) -> Result<Saved, DiscardedError> {
    let temp = dir.join(TEMP_NAME);
    match fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("remove", &temp)(e)),
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(io_error("create", &temp))?;
    let rows = write_rows(&file, &temp, records).inspect_err(|_| {
        let _ = fs::remove_file(&temp);
    })?;
    let path = dir.join(name);
    // A hard link, unlike a rename, never replaces an existing file.
    let linked = fs::hard_link(&temp, &path).map_err(io_error("create", &path));
    let _ = fs::remove_file(&temp);
    linked?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync directory", dir))?;
    Ok(Saved { path, rows })
}

/// Writes the header and one row per record to `file` and syncs it;
/// returns the rows written.
fn write_rows(
    file: &File,
    path: &Path,
    records: impl IntoIterator<Item = duokv_storage::Result<(Record, Option<u64>)>>,
) -> Result<u64, DiscardedError> {
    let mut out = BufWriter::new(file);
    let mut rows = 0u64;
    writeln!(out, "{HEADER}").map_err(io_error("write", path))?;
    for item in records {
        let (record, written_ns) = item?;
        out.write_all(row(&record, written_ns).as_bytes())
            .map_err(io_error("write", path))?;
        rows += 1;
    }
    out.flush().map_err(io_error("write", path))?;
    file.sync_all().map_err(io_error("sync", path))?;
    Ok(rows)
}

/// One record as a row, newline included.
pub fn row(record: &Record, written_ns: Option<u64>) -> String {
    let (op, key, value): (&str, &[u8], &[u8]) = match &record.op {
        Op::Put { key, value } => ("put", key, value),
        Op::Delete { key } => ("delete", key, &[]),
    };
    let time = written_ns.map(|ns| ns.to_string()).unwrap_or_default();
    format!("{},{op},{},{},{time}\n", record.seq, hex(key), hex(value))
}

/// Reads every row of the file at `path`, checking its header.
pub fn read(path: &Path) -> Result<Vec<SavedWrite>, DiscardedError> {
    let file = File::open(path).map_err(io_error("open", path))?;
    let malformed = |line: usize, reason: String| DiscardedError::Malformed {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut writes = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_error("read", path))?;
        if i == 0 {
            if line != HEADER {
                return Err(malformed(1, format!("the header is not {HEADER:?}")));
            }
            continue;
        }
        writes.push(parse_row(&line).map_err(|reason| malformed(i + 1, reason))?);
    }
    if writes.is_empty() && fs::metadata(path).map_or(0, |m| m.len()) == 0 {
        return Err(malformed(1, "the file is empty".to_string()));
    }
    Ok(writes)
}

/// Parses one row (without its newline).
pub fn parse_row(line: &str) -> Result<SavedWrite, String> {
    let fields: Vec<&str> = line.split(',').collect();
    let [seq, op, key, value, time] = fields[..] else {
        return Err(format!("{} fields, not 5", fields.len()));
    };
    let seq = seq.parse().map_err(|_| format!("bad seq {seq:?}"))?;
    let key = unhex(key).ok_or_else(|| format!("bad key_hex {key:?}"))?;
    let value = unhex(value).ok_or_else(|| format!("bad value_hex {value:?}"))?;
    let op = match op {
        "put" => Op::Put { key, value },
        "delete" if value.is_empty() => Op::Delete { key },
        "delete" => return Err("a delete with a value".to_string()),
        other => return Err(format!("unknown op {other:?}")),
    };
    let written_ns = match time {
        "" => None,
        ns => Some(ns.parse().map_err(|_| format!("bad written_ns {ns:?}"))?),
    };
    Ok(SavedWrite {
        seq,
        op,
        written_ns,
    })
}

/// Lowercase hex, two digits a byte.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// The bytes of `text`, hex two digits a byte (either case); `None` if it
/// is not.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// UNIX seconds as a compact UTC time, `20261202T081243Z`.
fn utc_stamp(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(seq: u64, key: &[u8], value: &[u8]) -> Record {
        Record {
            seq,
            op: Op::Put {
                key: key.to_vec(),
                value: value.to_vec(),
            },
        }
    }

    #[test]
    fn rows_round_trip_any_bytes() {
        let records = [
            (
                put(7, b"a,b\n\"c\"", &[0, 255, 10, 44]),
                Some(1_796_199_013_794_949_852),
            ),
            (
                Record {
                    seq: 8,
                    op: Op::Delete { key: vec![0xff] },
                },
                None,
            ),
            (put(9, b"k", b""), Some(1)),
        ];
        for (record, ns) in &records {
            let line = row(record, *ns);
            assert!(
                line.ends_with('\n') && line.matches(',').count() == 4,
                "{line}"
            );
            let parsed = parse_row(line.trim_end()).unwrap();
            assert_eq!(
                (parsed.seq, &parsed.op, parsed.written_ns),
                (record.seq, &record.op, *ns)
            );
        }
        assert_eq!(row(&records[1].0, None), "8,delete,ff,,\n");
    }

    #[test]
    fn bad_rows_are_refused() {
        for line in [
            "",
            "1,put,6b",
            "x,put,6b,76,",
            "1,get,6b,76,",
            "1,put,6,76,",
            "1,delete,6b,76,",
            "1,put,6b,76,soon",
        ] {
            assert!(parse_row(line).is_err(), "{line:?}");
        }
    }

    #[test]
    fn names_say_history_range_and_utc_time() {
        // 2026-12-02T08:12:43Z
        let ns = 1_796_199_163 * 1_000_000_000;
        assert_eq!(
            file_name(0x9f3c51e2a07b44d1, 101, 105, ns),
            "discarded-9f3c51e2a07b44d1-101-105-20261202T081243Z.csv"
        );
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
    }

    #[test]
    fn save_writes_then_reads_back_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let records = vec![(put(3, b"k", b"v"), Some(42)), (put(4, b"k2", b"v2"), None)];
        let name = file_name(1, 3, 4, 0);
        let saved = save(dir.path(), &name, records.clone().into_iter().map(Ok)).unwrap();
        assert_eq!(saved.rows, 2);
        let text = fs::read_to_string(&saved.path).unwrap();
        assert_eq!(
            text,
            format!("{HEADER}\n3,put,6b,76,42\n4,put,6b32,7632,\n")
        );
        let read = read(&saved.path).unwrap();
        assert_eq!(read[0].written_ns, Some(42));
        assert_eq!(read[1].op, records[1].0.op);
        assert_eq!(
            already_saved(dir.path(), 1, 3, 4).unwrap(),
            Some(saved.path.clone())
        );
        assert_eq!(already_saved(dir.path(), 1, 3, 5).unwrap(), None);
        assert!(!dir.path().join(TEMP_NAME).exists());
        // The same name again: refused, the first file untouched.
        assert!(save(dir.path(), &name, std::iter::empty()).is_err());
        assert_eq!(fs::read_to_string(&saved.path).unwrap(), text);
    }

    #[test]
    fn a_failed_read_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let failing = vec![
            Ok((put(1, b"k", b"v"), None)),
            Err(duokv_storage::Error::Poisoned),
        ];
        let name = file_name(1, 1, 2, 0);
        assert!(matches!(
            save(dir.path(), &name, failing),
            Err(DiscardedError::Store(_))
        ));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
