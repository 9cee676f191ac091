//! Big-endian primitives shared by the frame header and the message bodies:
//! the writers that append fields to a `Vec<u8>`, and [`Reader`], a cursor
//! over one frame's bytes that checks every length before it slices.
//!
//! This module exists so that there is exactly one place where bytes are
//! turned into numbers and slices. Every read goes through [`Reader::take`],
//! which never indexes past its slice, so no input can make decoding panic;
//! and every length prefix is compared with its cap and with the bytes left
//! in the frame *before* anything is allocated for it.

use byteorder::{ByteOrder, NetworkEndian};

use crate::error::{FrameError, Limit};

/// Appends one byte.
pub(crate) fn put_u8(dst: &mut Vec<u8>, v: u8) {
    dst.push(v);
}

/// Appends a big-endian u16.
pub(crate) fn put_u16(dst: &mut Vec<u8>, v: u16) {
    let mut b = [0; 2];
    NetworkEndian::write_u16(&mut b, v);
    dst.extend_from_slice(&b);
}

/// Appends a big-endian u32.
pub(crate) fn put_u32(dst: &mut Vec<u8>, v: u32) {
    let mut b = [0; 4];
    NetworkEndian::write_u32(&mut b, v);
    dst.extend_from_slice(&b);
}

/// Appends a big-endian u64.
pub(crate) fn put_u64(dst: &mut Vec<u8>, v: u64) {
    let mut b = [0; 8];
    NetworkEndian::write_u64(&mut b, v);
    dst.extend_from_slice(&b);
}

/// Appends `bytes` behind a u32 length prefix, refusing a length above
/// `limit` (or one that does not fit a u32 at all).
pub(crate) fn put_bytes(
    dst: &mut Vec<u8>,
    bytes: &[u8],
    limit: Option<(Limit, u32)>,
) -> Result<(), FrameError> {
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let (which, max) = limit.unwrap_or((Limit::Frame, crate::MAX_FRAME_LEN));
    if len > u64::from(max) {
        return Err(FrameError::TooLarge {
            limit: which,
            len,
            max: u64::from(max),
        });
    }
    // `len <= max <= u32::MAX`, so the conversion cannot fail; fall back to a
    // typed error rather than a panic all the same.
    let len32 = u32::try_from(len).map_err(|_| FrameError::TooLarge {
        limit: which,
        len,
        max: u64::from(max),
    })?;
    put_u32(dst, len32);
    dst.extend_from_slice(bytes);
    Ok(())
}

/// Appends a UTF-8 string behind a u32 length prefix. Strings have no cap of
/// their own: the frame's cap bounds them.
pub(crate) fn put_str(dst: &mut Vec<u8>, s: &str) -> Result<(), FrameError> {
    put_bytes(dst, s.as_bytes(), None)
}

/// A bounds-checked cursor over the bytes of one frame.
///
/// Offsets in the errors it returns are counted from the first byte of the
/// frame, so that [`FrameError::Malformed`] says where the fault is.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` within the frame.
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, whose first byte sits at offset `base` in the frame.
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    /// The number of bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The current position within the reader's slice.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// A [`FrameError::Malformed`] at the current position.
    pub(crate) fn malformed(&self, reason: &'static str) -> FrameError {
        self.malformed_at(self.pos, reason)
    }

    /// A [`FrameError::Malformed`] at `pos`, a position within the reader's
    /// slice (as returned by [`Reader::position`]).
    pub(crate) fn malformed_at(&self, pos: usize, reason: &'static str) -> FrameError {
        let offset = self.base.saturating_add(pos);
        FrameError::Malformed {
            offset: u64::try_from(offset).unwrap_or(u64::MAX),
            reason,
        }
    }

    /// The next `n` bytes, or `Malformed` if the frame ends first.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.buf.get(self.pos..end)) {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => Err(self.malformed("field runs past the end of the frame")),
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(NetworkEndian::read_u16(self.take(2)?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(NetworkEndian::read_u32(self.take(4)?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(NetworkEndian::read_u64(self.take(8)?))
    }

    /// A u32-length-prefixed byte string, borrowed from the frame.
    ///
    /// The declared length is checked against `limit` first (a typed
    /// [`FrameError::TooLarge`]), then against the bytes left in the frame
    /// (`Malformed`), so nothing is ever sized by an unchecked number.
    pub(crate) fn bytes(&mut self, limit: Option<(Limit, u32)>) -> Result<&'a [u8], FrameError> {
        let len = self.u32()?;
        if let Some((which, max)) = limit
            && len > max
        {
            return Err(FrameError::TooLarge {
                limit: which,
                len: u64::from(len),
                max: u64::from(max),
            });
        }
        let len = usize::try_from(len).map_err(|_| self.malformed("length does not fit memory"))?;
        self.take(len)
    }

    /// A u32-length-prefixed UTF-8 string.
    pub(crate) fn string(&mut self) -> Result<String, FrameError> {
        let start = self.pos;
        let bytes = self.bytes(None)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(self.malformed_at(start, "string is not valid utf-8")),
        }
    }

    /// Succeeds only if every byte was consumed: trailing bytes after a body
    /// are a fault, not padding.
    pub(crate) fn finish(self) -> Result<(), FrameError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(self.malformed("trailing bytes after the body"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_are_big_endian() {
        let mut v = Vec::new();
        put_u8(&mut v, 0xAB);
        put_u16(&mut v, 0x0102);
        put_u32(&mut v, 0x0304_0506);
        put_u64(&mut v, 0x0708_090A_0B0C_0D0E);
        assert_eq!(v, [0xAB, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
        let mut r = Reader::new(&v, 0);
        assert_eq!(r.u8().unwrap(), 0xAB);
        assert_eq!(r.u16().unwrap(), 0x0102);
        assert_eq!(r.u32().unwrap(), 0x0304_0506);
        assert_eq!(r.u64().unwrap(), 0x0708_090A_0B0C_0D0E);
        r.finish().unwrap();
    }

    #[test]
    fn short_reads_are_malformed_with_offset() {
        let mut r = Reader::new(&[0, 0, 0], 13);
        assert_eq!(
            r.u32(),
            Err(FrameError::Malformed {
                offset: 13,
                reason: "field runs past the end of the frame"
            })
        );
    }

    #[test]
    fn length_checked_against_limit_before_remaining() {
        // Declares 5 bytes with a limit of 4: TooLarge even though only 0 follow.
        let buf = [0, 0, 0, 5];
        let mut r = Reader::new(&buf, 0);
        assert_eq!(
            r.bytes(Some((Limit::Key, 4))),
            Err(FrameError::TooLarge {
                limit: Limit::Key,
                len: 5,
                max: 4
            })
        );
        // Within the limit but past the end of the frame: Malformed.
        let mut r = Reader::new(&buf, 0);
        assert!(matches!(
            r.bytes(Some((Limit::Key, 8))),
            Err(FrameError::Malformed { offset: 4, .. })
        ));
        // A huge declared length with no limit: Malformed, no allocation.
        let buf = [0xFF, 0xFF, 0xFF, 0xFF, 1];
        let mut r = Reader::new(&buf, 0);
        assert!(matches!(r.bytes(None), Err(FrameError::Malformed { .. })));
    }

    #[test]
    fn strings_must_be_utf8() {
        let mut v = Vec::new();
        put_bytes(&mut v, &[0xFF, 0xFE], None).unwrap();
        let mut r = Reader::new(&v, 20);
        assert_eq!(
            r.string(),
            Err(FrameError::Malformed {
                offset: 20,
                reason: "string is not valid utf-8"
            })
        );
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let buf = [1, 2];
        let mut r = Reader::new(&buf, 0);
        r.u8().unwrap();
        assert!(matches!(
            r.finish(),
            Err(FrameError::Malformed { offset: 1, .. })
        ));
    }

    #[test]
    fn put_bytes_refuses_above_limit() {
        let mut v = Vec::new();
        assert_eq!(
            put_bytes(&mut v, &[0; 5], Some((Limit::Value, 4))),
            Err(FrameError::TooLarge {
                limit: Limit::Value,
                len: 5,
                max: 4
            })
        );
        assert!(v.is_empty());
    }
}
