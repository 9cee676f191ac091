//! What a write is once it is stored and replicated: [`Op`], and the
//! [`Record`] that numbers it, with the limits its key and value must keep.
//!
//! A leaf module: the store, its writer, its readers and compaction all
//! speak these types, and it imports none of them.

use crate::error::{Error, Field, Result};
use crate::format::{MAX_KEY_LEN, MAX_VALUE_LEN, RecordKind};

/// A write as it is stored and replicated: what a record does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The key now holds the value.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// The key is deleted.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
}

impl Op {
    /// The key the op writes.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }

    /// The record kind, key and value of the op.
    pub(crate) fn parts(&self) -> (RecordKind, &[u8], &[u8]) {
        match self {
            Op::Put { key, value } => (RecordKind::Put, key, value),
            Op::Delete { key } => (RecordKind::Delete, key, &[]),
        }
    }
}

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The write's sequence number.
    pub seq: u64,
    /// What the write did.
    pub op: Op,
}

/// Refuses a key or value over the limits, before anything is written.
pub(crate) fn check_limits(key: &[u8], value: &[u8]) -> Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::TooLarge {
            field: Field::Key,
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(Error::TooLarge {
            field: Field::Value,
            len: value.len(),
            max: MAX_VALUE_LEN,
        });
    }
    Ok(())
}
