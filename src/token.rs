//! [`Token`]: a write's identity across replicas, to read your own writes
//! on a slave.
//!
//! Every write reply carries one ([`WriteReceipt::token`]); a read that
//! gives it ([`Client::read_after`]) is answered only once that write is
//! visible on the replica read, or refused with an error that says to read
//! the master instead.
//!
//! [`WriteReceipt::token`]: crate::WriteReceipt::token
//! [`Client::read_after`]: crate::Client::read_after

use std::fmt;
use std::str::FromStr;

/// A write's token: the history id of the log it is in and its sequence
/// number there. Shown and parsed as `HISTORY_HEX:SEQ`, the history as 16
/// lowercase hex digits.
///
/// ```
/// let token: duokv::Token = "9ba3ab20c67f0fc0:42".parse()?;
/// assert_eq!(token.seq, 42);
/// assert_eq!(token.to_string(), "9ba3ab20c67f0fc0:42");
/// # Ok::<(), duokv::ParseTokenError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token {
    /// The history id of the master's log when it took the write.
    pub history: u64,
    /// The write's sequence number.
    pub seq: u64,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}:{}", self.history, self.seq)
    }
}

/// Why a text is not a [`Token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseTokenError {
    /// No `:` between the history and the sequence number.
    NoColon,
    /// The history is not 1 to 16 hex digits, or is 0.
    BadHistory,
    /// The sequence number is not a decimal u64.
    BadSeq,
}

impl fmt::Display for ParseTokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseTokenError::NoColon => "a token is HISTORY_HEX:SEQ, and this has no colon",
            ParseTokenError::BadHistory => "the history is not a non-zero hex u64",
            ParseTokenError::BadSeq => "the sequence number is not a decimal u64",
        })
    }
}

impl std::error::Error for ParseTokenError {}

impl FromStr for Token {
    type Err = ParseTokenError;

    fn from_str(text: &str) -> Result<Self, ParseTokenError> {
        let (history, seq) = text.split_once(':').ok_or(ParseTokenError::NoColon)?;
        let hex = !history.is_empty()
            && history.len() <= 16
            && history.bytes().all(|b| b.is_ascii_hexdigit());
        let history = u64::from_str_radix(history, 16)
            .ok()
            .filter(|&h| hex && h != 0)
            .ok_or(ParseTokenError::BadHistory)?;
        let seq = (!seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()))
            .then(|| seq.parse().ok())
            .flatten()
            .ok_or(ParseTokenError::BadSeq)?;
        Ok(Token { history, seq })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let token = Token {
            history: 0x0000_00ab_0000_0001,
            seq: 5,
        };
        assert_eq!(token.to_string(), "000000ab00000001:5");
        assert_eq!("000000ab00000001:5".parse(), Ok(token));
        assert_eq!(
            "AB00000001:5".parse::<Token>().map(|t| t.history),
            Ok(0xab_0000_0001)
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let cases = [
            ("9ba3ab20c67f0fc0", ParseTokenError::NoColon),
            (":5", ParseTokenError::BadHistory),
            ("0:5", ParseTokenError::BadHistory),
            ("+1:5", ParseTokenError::BadHistory),
            ("11112222333344445:5", ParseTokenError::BadHistory),
            ("xyz:5", ParseTokenError::BadHistory),
            ("ab:", ParseTokenError::BadSeq),
            ("ab:+5", ParseTokenError::BadSeq),
            ("ab:5:6", ParseTokenError::BadSeq),
            ("ab:99999999999999999999", ParseTokenError::BadSeq),
        ];
        for (text, error) in cases {
            assert_eq!(text.parse::<Token>(), Err(error), "{text}");
        }
    }
}
