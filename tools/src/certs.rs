//! `duokv certs`: a fresh certificate authority and a certificate per host,
//! for servers started with `--tls-cert`, `--tls-key` and `--tls-ca`.
//!
//! One authority per deployment (the deployer makes one each time, the
//! demo one per run): every certificate it signs is trusted by the others,
//! and nothing else is. Each host's certificate is for the names given
//! (DNS names or IP addresses: what `--replica`, `--master-addr` and the
//! clients dial), and serves both as the host's server certificate and as
//! its client certificate (a master presents it to its slave). Keys are
//! written with mode 600. Existing files are never overwritten: a new
//! authority would leave every certificate of the old one untrusted.
//!
//! ```text
//! DIR/
//!   ca.pem, ca-key.pem      the authority (keep ca-key.pem off the hosts)
//!   NAME.pem, NAME-key.pem  per host or client
//! ```

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use time::OffsetDateTime;

use crate::error::{Error, Result};

/// One certificate to issue: its file name and the names it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The files' stem: `NAME.pem` and `NAME-key.pem`.
    pub file: String,
    /// DNS names or IP addresses.
    pub names: Vec<String>,
}

/// The files of an issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its key (PEM, mode 600).
    pub key: PathBuf,
}

/// Makes a new authority in `dir` (created if missing) and a certificate
/// for each of `subjects`, valid from now for `days`. Returns the
/// authority's certificate and the issued files, in order.
pub fn make(dir: &Path, subjects: &[Subject], days: u32) -> Result<(PathBuf, Vec<Issued>)> {
    let failed = |reason: String| Error::BadFile {
        path: dir.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|source| Error::File {
        path: dir.to_path_buf(),
        source,
    })?;
    let (not_before, not_after) = validity(days);
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| failed(format!("cannot make the authority: {e}")))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(DnType::CommonName, "duokv certificate authority");
    (params.not_before, params.not_after) = (not_before, not_after);
    let key = KeyPair::generate().map_err(|e| failed(format!("cannot make a key: {e}")))?;
    let ca_key_pem = key.serialize_pem();
    let authority = CertifiedIssuer::self_signed(params, key)
        .map_err(|e| failed(format!("cannot sign the authority: {e}")))?;
    let ca = dir.join("ca.pem");
    write_new(&ca, authority.pem().as_bytes(), 0o644)?;
    write_new(&dir.join("ca-key.pem"), ca_key_pem.as_bytes(), 0o600)?;
    let mut issued = Vec::new();
    for subject in subjects {
        let mut params = CertificateParams::new(subject.names.clone())
            .map_err(|e| failed(format!("{}: {e}", subject.file)))?;
        params
            .distinguished_name
            .push(DnType::CommonName, subject.file.clone());
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        (params.not_before, params.not_after) = (not_before, not_after);
        let key = KeyPair::generate().map_err(|e| failed(format!("cannot make a key: {e}")))?;
        let cert = params
            .signed_by(&key, &authority)
            .map_err(|e| failed(format!("cannot sign {}: {e}", subject.file)))?;
        let files = Issued {
            cert: dir.join(format!("{}.pem", subject.file)),
            key: dir.join(format!("{}-key.pem", subject.file)),
        };
        write_new(&files.cert, cert.pem().as_bytes(), 0o644)?;
        write_new(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
        issued.push(files);
    }
    Ok((ca, issued))
}

/// From an hour ago (clocks differ a little) to `days` from now.
fn validity(days: u32) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (
        now - time::Duration::hours(1),
        now + time::Duration::days(i64::from(days)),
    )
}

/// Writes `bytes` to `path`, which must not exist, with `mode`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let file_error = |source| Error::File {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Usage {
                    message: format!(
                        "{} already exists: give a new directory (a new authority would leave \
                         the old one's certificates untrusted)",
                        path.display()
                    ),
                }
            } else {
                file_error(e)
            }
        })?;
    file.write_all(bytes).map_err(file_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_authority_and_its_certificates_load_and_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let subjects = [Subject {
            file: "node".into(),
            names: vec!["127.0.0.1".into(), "node.internal".into()],
        }];
        let (ca, issued) = make(dir.path(), &subjects, 30).unwrap();
        let files = duokv::tls::TlsFiles {
            cert: issued[0].cert.clone(),
            key: issued[0].key.clone(),
            ca: ca.clone(),
            client_auth: true,
        };
        let tls = duokv::tls::ServerTls::load(files).expect("the files make a server's TLS");
        let (expires, _) = tls.expiry();
        let left = expires
            .unwrap()
            .duration_since(std::time::SystemTime::now())
            .unwrap();
        assert!(left.as_secs() > 29 * 86_400 && left.as_secs() <= 30 * 86_400);
        duokv::tls::ClientTls::new(&ca, Some((&issued[0].cert, &issued[0].key))).unwrap();
        for key in [&issued[0].key, &dir.path().join("ca-key.pem")] {
            let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        match make(dir.path(), &subjects, 30) {
            Err(Error::Usage { message }) => assert!(message.contains("already exists")),
            other => panic!("overwrote an authority: {other:?}"),
        }
    }
}
