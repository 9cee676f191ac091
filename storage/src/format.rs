//! The bytes on disk: segment headers and log records.
//!
//! Everything here is a pure function over byte slices, so the layout can be
//! tested without files. `FORMAT.md` beside `Cargo.toml` draws the same
//! layout as byte diagrams; the two must agree.
//!
//! One byte order is used everywhere: little-endian, through
//! [`byteorder::LittleEndian`]. No `usize` is ever written.

use byteorder::{ByteOrder, LittleEndian};

/// The first eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"DUOKVLOG";

/// The on-disk format version this crate writes. Version 2 frames the
/// records of a log segment in batches, each behind a [`BatchHeader`];
/// version 3 adds to that header the wall-clock time the batch was
/// written.
pub const FORMAT_VERSION: u32 = 3;

/// The oldest format version this crate still reads: version 1, whose
/// log segments hold records back to back, with no batch headers.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// Bytes in a batch header as this crate writes it (format version 3).
pub const BATCH_HEADER_LEN: usize = 40;

/// Bytes in a batch header of format version 2, which has no write time.
pub const BATCH_HEADER_LEN_V2: usize = 32;

/// The first four bytes of every batch header.
pub const BATCH_MAGIC: [u8; 4] = *b"DKVB";

/// Bytes in a segment header.
pub const SEGMENT_HEADER_LEN: usize = 40;

/// Bytes in a record's fixed header, before the key.
pub const RECORD_HEADER_LEN: usize = 29;

/// The longest key the store accepts, in bytes (64 KiB).
pub const MAX_KEY_LEN: usize = 64 * 1024;

/// The longest value the store accepts, in bytes (16 MiB).
pub const MAX_VALUE_LEN: usize = 16 * 1024 * 1024;

/// The longest record that can exist: header, largest key, largest value.
pub const MAX_RECORD_LEN: usize = RECORD_HEADER_LEN + MAX_KEY_LEN + MAX_VALUE_LEN;

/// What a segment file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    /// Written by the store's writers, record by record, in sequence order.
    Log,
    /// Written by compaction: the live records of every older segment.
    Compacted,
}

impl SegmentKind {
    fn to_u32(self) -> u32 {
        match self {
            SegmentKind::Log => 0,
            SegmentKind::Compacted => 1,
        }
    }

    fn from_u32(value: u32) -> Option<SegmentKind> {
        match value {
            0 => Some(SegmentKind::Log),
            1 => Some(SegmentKind::Compacted),
            _ => None,
        }
    }
}

/// The decoded header of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// How the segment was written.
    pub kind: SegmentKind,
    /// The segment's id, which is also in its file name.
    pub id: u64,
    /// For a compacted segment, the highest sequence number among the
    /// segments it replaced: records at or below it may have been dropped.
    /// Zero for a log segment.
    pub horizon: u64,
}

/// Why a segment header could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderProblem {
    /// Fewer bytes than a header.
    Short,
    /// The magic bytes are wrong: not a duokv segment.
    BadMagic,
    /// The header checksum does not match.
    BadChecksum,
    /// Written by a format version this build does not know.
    UnknownVersion(u32),
    /// The kind field holds an unknown value.
    UnknownKind(u32),
}

impl SegmentHeader {
    /// Encodes the header into its 40 bytes, as [`FORMAT_VERSION`].
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        self.encode_version(FORMAT_VERSION)
    }

    /// Encodes the header as format `version` says (tests write older
    /// segments with it).
    pub fn encode_version(&self, version: u32) -> [u8; SEGMENT_HEADER_LEN] {
        let mut buf = [0u8; SEGMENT_HEADER_LEN];
        buf[0..8].copy_from_slice(&SEGMENT_MAGIC);
        LittleEndian::write_u32(&mut buf[8..12], version);
        LittleEndian::write_u32(&mut buf[12..16], self.kind.to_u32());
        LittleEndian::write_u64(&mut buf[16..24], self.id);
        LittleEndian::write_u64(&mut buf[24..32], self.horizon);
        // bytes 32..36 are reserved and stay zero
        let crc = crc32fast::hash(&buf[0..36]);
        LittleEndian::write_u32(&mut buf[36..40], crc);
        buf
    }

    /// Decodes a header from the first bytes of a segment file, of any
    /// version this crate reads.
    pub fn decode(buf: &[u8]) -> Result<SegmentHeader, HeaderProblem> {
        Self::decode_versioned(buf).map(|(header, _)| header)
    }

    /// Decodes a header and says which format version wrote it: between
    /// [`OLDEST_FORMAT_VERSION`] and [`FORMAT_VERSION`].
    pub fn decode_versioned(buf: &[u8]) -> Result<(SegmentHeader, u32), HeaderProblem> {
        if buf.len() < SEGMENT_HEADER_LEN {
            return Err(HeaderProblem::Short);
        }
        if buf[0..8] != SEGMENT_MAGIC {
            return Err(HeaderProblem::BadMagic);
        }
        let stored_crc = LittleEndian::read_u32(&buf[36..40]);
        if crc32fast::hash(&buf[0..36]) != stored_crc {
            return Err(HeaderProblem::BadChecksum);
        }
        let version = LittleEndian::read_u32(&buf[8..12]);
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(HeaderProblem::UnknownVersion(version));
        }
        let raw_kind = LittleEndian::read_u32(&buf[12..16]);
        let kind = SegmentKind::from_u32(raw_kind).ok_or(HeaderProblem::UnknownKind(raw_kind))?;
        let header = SegmentHeader {
            kind,
            id: LittleEndian::read_u64(&buf[16..24]),
            horizon: LittleEndian::read_u64(&buf[24..32]),
        };
        Ok((header, version))
    }
}

/// The header written before the records of one batch (one `pwrite`) in a
/// log segment of format version 2 or 3. It tells recovery where the batch
/// begins and ends, so that any damage inside the newest batch, which may
/// not have been synced, can be told from damage in synced data; from
/// version 3 on it also says when the batch was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Records in the batch (at least one).
    pub count: u32,
    /// Bytes of records after the header.
    pub len: u64,
    /// The sequence number of the batch's first record; the others follow
    /// one by one.
    pub first_seq: u64,
    /// The wall-clock time the batch was written, in nanoseconds since the
    /// UNIX epoch: taken by the group-commit leader just before its
    /// `pwrite` (on a slave, when it applies the batch). `None` in a
    /// version 2 header, and when the clock read before the epoch (stored
    /// as 0).
    pub written_ns: Option<u64>,
}

/// Why a batch header, or a batch, could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchProblem {
    /// Fewer bytes than the header, or than the records it announces.
    Short,
    /// The magic bytes are wrong: no batch starts here.
    BadMagic,
    /// The header checksum does not match.
    BadChecksum,
    /// The checksum matches but the fields are impossible.
    BadHeader,
    /// The records do not fill the batch as its header says (their count,
    /// lengths or sequence numbers).
    Disagrees,
}

impl BatchProblem {
    /// A lowercase phrase for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            BatchProblem::Short => "batch cut short",
            BatchProblem::BadMagic => "no batch header where a batch should start",
            BatchProblem::BadChecksum => "batch header checksum mismatch",
            BatchProblem::BadHeader => "batch header fields out of range",
            BatchProblem::Disagrees => "batch records disagree with its header",
        }
    }
}

impl BatchHeader {
    /// The length of a batch header in a segment of format `version`
    /// (2 or 3; a version 1 segment has no batch headers).
    pub fn len_for(version: u32) -> usize {
        if version >= 3 {
            BATCH_HEADER_LEN
        } else {
            BATCH_HEADER_LEN_V2
        }
    }

    /// Encodes the header into its 40 bytes, as [`FORMAT_VERSION`].
    pub fn encode(&self) -> [u8; BATCH_HEADER_LEN] {
        let mut buf = [0u8; BATCH_HEADER_LEN];
        self.encode_into(&mut buf);
        buf
    }

    /// Encodes the header into the first 40 bytes of `buf`, as
    /// [`FORMAT_VERSION`].
    pub fn encode_into(&self, buf: &mut [u8]) {
        self.encode_version_into(FORMAT_VERSION, buf);
    }

    /// Encodes the header as format `version` (2 or 3) lays it out into
    /// the first [`len_for(version)`](Self::len_for) bytes of `buf`; tests
    /// write older segments with it. Version 2 has no room for the time.
    pub fn encode_version_into(&self, version: u32, buf: &mut [u8]) {
        let len = Self::len_for(version);
        let buf = &mut buf[..len];
        buf[0..4].copy_from_slice(&BATCH_MAGIC);
        LittleEndian::write_u32(&mut buf[4..8], self.count);
        LittleEndian::write_u64(&mut buf[8..16], self.len);
        LittleEndian::write_u64(&mut buf[16..24], self.first_seq);
        let reserved = if len == BATCH_HEADER_LEN {
            LittleEndian::write_u64(&mut buf[24..32], self.written_ns.unwrap_or(0));
            32
        } else {
            24
        };
        buf[reserved..reserved + 4].fill(0);
        let crc = crc32fast::hash(&buf[0..len - 4]);
        LittleEndian::write_u32(&mut buf[len - 4..len], crc);
    }

    /// Decodes and checks a header of [`FORMAT_VERSION`] from the start of
    /// `buf`.
    pub fn decode(buf: &[u8]) -> Result<BatchHeader, BatchProblem> {
        Self::decode_version(FORMAT_VERSION, buf)
    }

    /// Decodes and checks a header laid out as format `version` (2 or 3)
    /// from the start of `buf`. A header that passes has a non-zero count
    /// and a length that can hold that many records.
    pub fn decode_version(version: u32, buf: &[u8]) -> Result<BatchHeader, BatchProblem> {
        let header_len = Self::len_for(version);
        if buf.len() < header_len {
            return Err(BatchProblem::Short);
        }
        if buf[0..4] != BATCH_MAGIC {
            return Err(BatchProblem::BadMagic);
        }
        let crc_at = header_len - 4;
        if crc32fast::hash(&buf[0..crc_at]) != LittleEndian::read_u32(&buf[crc_at..header_len]) {
            return Err(BatchProblem::BadChecksum);
        }
        let written_ns = (header_len == BATCH_HEADER_LEN)
            .then(|| LittleEndian::read_u64(&buf[24..32]))
            .filter(|&ns| ns != 0);
        let header = BatchHeader {
            count: LittleEndian::read_u32(&buf[4..8]),
            len: LittleEndian::read_u64(&buf[8..16]),
            first_seq: LittleEndian::read_u64(&buf[16..24]),
            written_ns,
        };
        let fits = header.len >= u64::from(header.count) * RECORD_HEADER_LEN as u64
            && header.len <= u64::from(header.count) * MAX_RECORD_LEN as u64;
        let reserved_zero = buf[crc_at - 4..crc_at] == [0; 4];
        if header.count == 0 || !fits || !reserved_zero || header.first_seq == 0 {
            return Err(BatchProblem::BadHeader);
        }
        Ok(header)
    }

    /// The sequence number of the batch's last record.
    pub fn last_seq(&self) -> u64 {
        self.first_seq + u64::from(self.count) - 1
    }
}

/// The wall-clock time now in nanoseconds since the UNIX epoch, as a batch
/// header stores it: `None` if the clock reads before the epoch (or past
/// the year 2554).
pub fn now_ns() -> Option<u64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_nanos()).ok())
        .filter(|&ns| ns != 0)
}

/// What a record does to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// The key now holds the record's value.
    Put,
    /// The key is deleted (a tombstone); the record has no value.
    Delete,
}

impl RecordKind {
    fn to_u8(self) -> u8 {
        match self {
            RecordKind::Put => 1,
            RecordKind::Delete => 2,
        }
    }

    fn from_u8(value: u8) -> Option<RecordKind> {
        match value {
            1 => Some(RecordKind::Put),
            2 => Some(RecordKind::Delete),
            _ => None,
        }
    }
}

/// The fixed header of a record, checked by its own CRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// The record's total length in bytes, header included.
    pub len: u32,
    /// The write's sequence number.
    pub seq: u64,
    /// Put or delete.
    pub kind: RecordKind,
    /// Bytes of key that follow the header.
    pub key_len: u32,
    /// Bytes of value that follow the key.
    pub value_len: u32,
}

/// Why a record could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordProblem {
    /// Fewer bytes than the record needs.
    Short,
    /// The header's own checksum does not match, so none of its sizes can
    /// be trusted.
    BadHeaderChecksum,
    /// The header checksum matches but its fields are impossible (unknown
    /// kind, lengths that disagree or pass the limits).
    BadHeader,
    /// The checksum over the whole record does not match.
    BadChecksum,
}

impl RecordProblem {
    /// A lowercase phrase for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            RecordProblem::Short => "record cut short",
            RecordProblem::BadHeaderChecksum => "record header checksum mismatch",
            RecordProblem::BadHeader => "record header fields out of range",
            RecordProblem::BadChecksum => "record checksum mismatch",
        }
    }
}

impl RecordHeader {
    /// Decodes and validates a fixed header. The sizes it returns are
    /// trustworthy: the header CRC matched, the lengths agree with each
    /// other and are within [`MAX_KEY_LEN`] and [`MAX_VALUE_LEN`].
    pub fn decode(buf: &[u8]) -> Result<RecordHeader, RecordProblem> {
        if buf.len() < RECORD_HEADER_LEN {
            return Err(RecordProblem::Short);
        }
        let stored_header_crc = LittleEndian::read_u32(&buf[25..29]);
        if crc32fast::hash(&buf[4..25]) != stored_header_crc {
            return Err(RecordProblem::BadHeaderChecksum);
        }
        let len = LittleEndian::read_u32(&buf[4..8]);
        let seq = LittleEndian::read_u64(&buf[8..16]);
        let kind = RecordKind::from_u8(buf[16]).ok_or(RecordProblem::BadHeader)?;
        let key_len = LittleEndian::read_u32(&buf[17..21]);
        let value_len = LittleEndian::read_u32(&buf[21..25]);
        let sizes_ok = key_len as usize <= MAX_KEY_LEN
            && value_len as usize <= MAX_VALUE_LEN
            && (kind == RecordKind::Put || value_len == 0)
            && u64::from(len)
                == RECORD_HEADER_LEN as u64 + u64::from(key_len) + u64::from(value_len);
        if !sizes_ok {
            return Err(RecordProblem::BadHeader);
        }
        Ok(RecordHeader {
            len,
            seq,
            kind,
            key_len,
            value_len,
        })
    }
}

/// Appends one encoded record to `out` and returns its length.
///
/// The caller has checked the key and value against the limits.
pub fn encode_record(
    out: &mut Vec<u8>,
    seq: u64,
    kind: RecordKind,
    key: &[u8],
    value: &[u8],
) -> u32 {
    debug_assert!(key.len() <= MAX_KEY_LEN && value.len() <= MAX_VALUE_LEN);
    debug_assert!(kind == RecordKind::Put || value.is_empty());
    let len = RECORD_HEADER_LEN + key.len() + value.len();
    let start = out.len();
    out.resize(start + RECORD_HEADER_LEN, 0);
    {
        let header = &mut out[start..];
        LittleEndian::write_u32(&mut header[4..8], len as u32);
        LittleEndian::write_u64(&mut header[8..16], seq);
        header[16] = kind.to_u8();
        LittleEndian::write_u32(&mut header[17..21], key.len() as u32);
        LittleEndian::write_u32(&mut header[21..25], value.len() as u32);
        let header_crc = crc32fast::hash(&header[4..25]);
        LittleEndian::write_u32(&mut header[25..29], header_crc);
    }
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let crc = crc32fast::hash(&out[start + 4..]);
    LittleEndian::write_u32(&mut out[start..start + 4], crc);
    len as u32
}

/// A record decoded from a buffer, borrowing its key and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The validated fixed header.
    pub header: RecordHeader,
    /// The key bytes.
    pub key: &'a [u8],
    /// The value bytes (empty for a delete).
    pub value: &'a [u8],
}

/// Decodes and fully checks the record at the start of `buf`.
pub fn decode_record(buf: &[u8]) -> Result<RecordRef<'_>, RecordProblem> {
    let header = RecordHeader::decode(buf)?;
    let len = header.len as usize;
    if buf.len() < len {
        return Err(RecordProblem::Short);
    }
    let stored_crc = LittleEndian::read_u32(&buf[0..4]);
    if crc32fast::hash(&buf[4..len]) != stored_crc {
        return Err(RecordProblem::BadChecksum);
    }
    let key_end = RECORD_HEADER_LEN + header.key_len as usize;
    Ok(RecordRef {
        header,
        key: &buf[RECORD_HEADER_LEN..key_end],
        value: &buf[key_end..len],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let mut buf = Vec::new();
        let len = encode_record(&mut buf, 42, RecordKind::Put, b"key", b"value");
        assert_eq!(len as usize, buf.len());
        assert_eq!(buf.len(), RECORD_HEADER_LEN + 8);
        let record = decode_record(&buf).unwrap();
        assert_eq!(record.header.seq, 42);
        assert_eq!(record.header.kind, RecordKind::Put);
        assert_eq!(record.key, b"key");
        assert_eq!(record.value, b"value");
    }

    #[test]
    fn tombstone_round_trips() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 7, RecordKind::Delete, b"gone", b"");
        let record = decode_record(&buf).unwrap();
        assert_eq!(record.header.kind, RecordKind::Delete);
        assert_eq!(record.key, b"gone");
        assert!(record.value.is_empty());
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 3, RecordKind::Put, b"k", b"v");
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut damaged = buf.clone();
                damaged[byte] ^= 1 << bit;
                assert!(
                    decode_record(&damaged).is_err(),
                    "flip at byte {byte} bit {bit} undetected"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_short() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 3, RecordKind::Put, b"key", b"value");
        for cut in 0..buf.len() {
            assert_eq!(
                decode_record(&buf[..cut]),
                Err(RecordProblem::Short),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn impossible_lengths_are_rejected_even_with_a_matching_header_crc() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, RecordKind::Put, b"k", b"v");
        // Claim a 4 GiB value and re-seal the header CRC: the sizes must
        // still be refused, never trusted.
        LittleEndian::write_u32(&mut buf[21..25], u32::MAX);
        let crc = crc32fast::hash(&buf[4..25]);
        LittleEndian::write_u32(&mut buf[25..29], crc);
        assert_eq!(RecordHeader::decode(&buf), Err(RecordProblem::BadHeader));
    }

    #[test]
    fn segment_header_round_trips_and_checks() {
        let header = SegmentHeader {
            kind: SegmentKind::Compacted,
            id: 9,
            horizon: 1234,
        };
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        assert_eq!(
            SegmentHeader::decode(&bytes[..39]),
            Err(HeaderProblem::Short)
        );
        let mut bad = bytes;
        bad[0] = b'X';
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderProblem::BadMagic));
        let mut bad = bytes;
        bad[20] ^= 1;
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderProblem::BadChecksum));
        let future = header.encode_version(FORMAT_VERSION + 1);
        assert_eq!(
            SegmentHeader::decode(&future),
            Err(HeaderProblem::UnknownVersion(FORMAT_VERSION + 1))
        );
        let old = header.encode_version(1);
        assert_eq!(SegmentHeader::decode_versioned(&old), Ok((header, 1)));
    }

    #[test]
    fn batch_header_round_trips_and_checks() {
        let header = BatchHeader {
            count: 3,
            len: 3 * 40,
            first_seq: 17,
            written_ns: Some(1_700_000_000_123_456_789),
        };
        let bytes = header.encode();
        assert_eq!(&bytes[0..4], b"DKVB");
        assert_eq!(&bytes[24..32], &1_700_000_000_123_456_789u64.to_le_bytes());
        assert_eq!(BatchHeader::decode(&bytes), Ok(header));
        assert_eq!(header.last_seq(), 19);
        assert_eq!(BatchHeader::decode(&bytes[..39]), Err(BatchProblem::Short));
        assert_eq!(
            BatchHeader::decode(&[0; BATCH_HEADER_LEN]),
            Err(BatchProblem::BadMagic)
        );
        for byte in 4..BATCH_HEADER_LEN {
            let mut bad = bytes;
            bad[byte] ^= 0x10;
            assert_eq!(
                BatchHeader::decode(&bad),
                Err(BatchProblem::BadChecksum),
                "byte {byte}"
            );
        }
        let empty = BatchHeader {
            count: 0,
            len: 0,
            first_seq: 1,
            written_ns: None,
        }
        .encode();
        assert_eq!(BatchHeader::decode(&empty), Err(BatchProblem::BadHeader));
    }

    #[test]
    fn version_2_batch_headers_read_without_a_time() {
        let header = BatchHeader {
            count: 1,
            len: 31,
            first_seq: 5,
            written_ns: Some(99),
        };
        let mut bytes = [0u8; BATCH_HEADER_LEN_V2];
        header.encode_version_into(2, &mut bytes);
        let read = BatchHeader::decode_version(2, &bytes).unwrap();
        assert_eq!(
            read,
            BatchHeader {
                written_ns: None,
                ..header
            }
        );
        // A version 2 header is not a version 3 one, nor the reverse.
        assert!(BatchHeader::decode_version(3, &bytes).is_err());
        assert!(BatchHeader::decode_version(2, &header.encode()).is_err());
        // A time of 0 means none.
        let untimed = BatchHeader {
            written_ns: None,
            ..header
        }
        .encode();
        assert_eq!(&untimed[24..32], &[0; 8]);
        assert_eq!(BatchHeader::decode(&untimed).unwrap().written_ns, None);
    }
}
