//! The shared auth token: read from a file, sent in the handshake, checked
//! by the server in constant time.
//!
//! Both replicas (and every client, when the servers ask for it) read the
//! same secret from a file given with `--auth-token-file`. The token only
//! proves that the peer knows it: it travels in clear (no TLS), so it
//! protects against a stranger who can reach the port, not against one who
//! can read the traffic (README, "Security model").

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use duokv_protocol::MAX_AUTH_TOKEN_LEN;
use log::warn;
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// The environment variable the `duokv` CLI reads a token file's path from
/// when `--auth-token-file` is not given.
pub const TOKEN_FILE_ENV: &str = "DUOKV_AUTH_TOKEN_FILE";

/// A shared secret. Its `Debug` shows its length only.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken(Vec<u8>);

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthToken(<{} bytes>)", self.0.len())
    }
}

impl AuthToken {
    /// A token from its bytes: 1 to 1024 of them.
    pub fn new(bytes: impl Into<Vec<u8>>) -> std::result::Result<Self, String> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err("the auth token is empty".to_string());
        }
        if bytes.len() > MAX_AUTH_TOKEN_LEN {
            return Err(format!(
                "the auth token is {} bytes, more than {MAX_AUTH_TOKEN_LEN}",
                bytes.len()
            ));
        }
        Ok(AuthToken(bytes))
    }

    /// The token in the file at `path`, without trailing whitespace (the
    /// newline an editor or `echo` adds). Warns when the file can be read by
    /// others than its owner.
    pub fn from_file(path: &Path) -> Result<Self> {
        let file_error = |source| Error::File {
            path: path.to_path_buf(),
            source,
        };
        let metadata = std::fs::metadata(path).map_err(file_error)?;
        if metadata.permissions().mode() & 0o077 != 0 {
            warn!(
                "{}: the auth token file can be read by others than its owner \
                 (mode {:o}); chmod 600 it",
                path.display(),
                metadata.permissions().mode() & 0o777
            );
        }
        let mut bytes = std::fs::read(path).map_err(file_error)?;
        let kept = bytes.trim_ascii_end().len();
        bytes.truncate(kept);
        AuthToken::new(bytes).map_err(|reason| Error::BadFile {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// The token's bytes, to send in a handshake.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether `presented` is this token. The comparison takes the same time
    /// wherever the first differing byte is; only a length mismatch returns
    /// early, and the length is not secret.
    pub fn admits(&self, presented: Option<&[u8]>) -> bool {
        presented.is_some_and(|presented| bool::from(self.0.as_slice().ct_eq(presented)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_only_the_same_bytes() {
        let token = AuthToken::new(b"s3cret".to_vec()).unwrap();
        assert!(token.admits(Some(b"s3cret")));
        assert!(!token.admits(Some(b"s3creT")));
        assert!(!token.admits(Some(b"s3cre")));
        assert!(!token.admits(Some(b"s3crett")));
        assert!(!token.admits(None));
    }

    #[test]
    fn file_loses_its_trailing_newline_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abc \n").unwrap();
        assert_eq!(AuthToken::from_file(&path).unwrap().as_bytes(), b"abc");
        std::fs::write(&path, "\n").unwrap();
        let e = AuthToken::from_file(&path).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        std::fs::write(&path, vec![b'a'; 1025]).unwrap();
        assert!(AuthToken::from_file(&path).is_err());
        assert!(matches!(
            AuthToken::from_file(&dir.path().join("missing")),
            Err(Error::File { .. })
        ));
    }

    #[test]
    fn debug_hides_the_token() {
        let token = AuthToken::new(b"hunter2".to_vec()).unwrap();
        assert_eq!(format!("{token:?}"), "AuthToken(<7 bytes>)");
    }
}
