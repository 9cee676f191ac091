//! TLS settings: the certificates a server presents and the authority a
//! client trusts, read from PEM files into rustls configurations.
//!
//! duokv speaks TLS with [rustls](https://docs.rs/rustls) and its `ring`
//! provider (no OpenSSL): TLS 1.3 and 1.2, rustls' default cipher suites.
//! A server given `--tls-cert`, `--tls-key` and `--tls-ca` speaks only TLS
//! on its client port: clients, and the master's replication stream (the
//! master is the TLS client of its slave and checks the slave's
//! certificate against the name in `--replica`). With `--tls-client-auth`
//! it also requires every client to present a certificate signed by
//! `--tls-ca` (mutual TLS); the master presents its own.
//!
//! [`ServerTls`] holds what a server needs (and reloads it: certificates
//! expire); [`ClientTls`] what a client needs. Both check their files when
//! made, so that a bad file is refused at start with its path, not at the
//! first connection. How bytes cross a TLS connection is
//! [`transport`](crate::transport)'s.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;

/// Why TLS files could not be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read, or holds no PEM item of the kind needed.
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The files were read but rustls refused them together (a key that
    /// does not match its certificate, an authority that is not one).
    Config {
        /// Which files.
        what: String,
        /// rustls' reason.
        source: rustls::Error,
    },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::File { path, reason } => write!(f, "{}: {reason}", path.display()),
            TlsError::Config { what, .. } => write!(f, "cannot use {what}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::File { .. } => None,
            TlsError::Config { source, .. } => Some(source),
        }
    }
}

/// The cryptography every configuration uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |reason: String| TlsError::File {
        path: path.to_path_buf(),
        reason,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(format!("not a PEM certificate file: {e}")))?;
    if certificates.is_empty() {
        return Err(file_error(
            "holds no certificate (a PEM `BEGIN CERTIFICATE` block)".into(),
        ));
    }
    Ok(certificates)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        path: path.to_path_buf(),
        reason: format!("holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
    })
}

fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(path)? {
        roots.add(certificate).map_err(|source| TlsError::Config {
            what: format!("{} as a certificate authority", path.display()),
            source,
        })?;
    }
    Ok(roots)
}

/// When the first certificate of `chain` (the leaf) expires, from its
/// `notAfter`; `None` if it cannot be parsed.
fn expiry(chain: &[CertificateDer<'_>]) -> Option<SystemTime> {
    let leaf = chain.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let seconds = parsed.validity().not_after.timestamp();
    u64::try_from(seconds)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// A server's TLS files: its certificate chain, its private key, and the
/// authority it trusts (for client certificates and for its own slave's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, PEM, leaf first (`--tls-cert`).
    pub cert: PathBuf,
    /// Its private key, PEM (`--tls-key`).
    pub key: PathBuf,
    /// The certificate authority, PEM (`--tls-ca`).
    pub ca: PathBuf,
    /// Require a certificate from every client (`--tls-client-auth`).
    pub client_auth: bool,
}

/// What a server holds for TLS: the configuration for the connections it
/// accepts and the one for those it makes (a master to its slave), both
/// from [`TlsFiles`], replaced as a whole by [`reload`](Self::reload).
#[derive(Debug)]
pub struct ServerTls {
    files: TlsFiles,
    loaded: RwLock<Loaded>,
}

#[derive(Debug, Clone)]
struct Loaded {
    accept: Arc<rustls::ServerConfig>,
    connect: Arc<rustls::ClientConfig>,
    expires: Option<SystemTime>,
    ca_expires: Option<SystemTime>,
}

impl ServerTls {
    /// Reads and checks `files`.
    pub fn load(files: TlsFiles) -> Result<ServerTls, TlsError> {
        let loaded = Loaded::read(&files)?;
        Ok(ServerTls {
            files,
            loaded: RwLock::new(loaded),
        })
    }

    /// Reads the files again and uses them for every connection from now
    /// on; on a failure keeps the ones in use and says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = Loaded::read(&self.files)?;
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(())
    }

    fn loaded(&self) -> Loaded {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The configuration for a connection this server accepts.
    pub fn accept_config(&self) -> Arc<rustls::ServerConfig> {
        self.loaded().accept
    }

    /// The configuration for a connection this server makes (a master's
    /// stream to its slave): the same authority, its own certificate.
    pub fn connect_config(&self) -> Arc<rustls::ClientConfig> {
        self.loaded().connect
    }

    /// The files it reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// When its certificate expires, and the authority's.
    pub fn expiry(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        let loaded = self.loaded();
        (loaded.expires, loaded.ca_expires)
    }
}

impl Loaded {
    fn read(files: &TlsFiles) -> Result<Loaded, TlsError> {
        let chain = read_certificates(&files.cert)?;
        let key = read_key(&files.key)?;
        let ca_chain = read_certificates(&files.ca)?;
        let roots = Arc::new(read_roots(&files.ca)?);
        let what = || {
            format!(
                "certificate {} with key {} and authority {}",
                files.cert.display(),
                files.key.display(),
                files.ca.display()
            )
        };
        let config_error = |source| TlsError::Config {
            what: what(),
            source,
        };
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
        let verifier = if files.client_auth {
            verifier.build()
        } else {
            verifier.allow_unauthenticated().build()
        }
        .map_err(|e| config_error(rustls::Error::General(e.to_string())))?;
        let accept = builder
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(config_error)?;
        let connect = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain.clone(), key)
            .map_err(config_error)?;
        Ok(Loaded {
            accept: Arc::new(accept),
            connect: Arc::new(connect),
            expires: expiry(&chain),
            ca_expires: expiry(&ca_chain),
        })
    }
}

/// What a client needs for TLS: the authority it trusts, and its own
/// certificate and key for a server that requires them.
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

impl ClientTls {
    /// Trusts the authority in `ca` (PEM); presents the certificate and
    /// key of `identity` (PEM files) when given.
    pub fn new(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<ClientTls, TlsError> {
        let roots = Arc::new(read_roots(ca)?);
        let what = || format!("authority {}", ca.display());
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Config {
                what: what(),
                source,
            })?
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(read_certificates(cert)?, read_key(key)?)
                .map_err(|source| TlsError::Config {
                    what: format!("certificate {} with key {}", cert.display(), key.display()),
                    source,
                })?,
        };
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }

    /// The rustls configuration.
    pub fn config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }
}

/// The TLS name of the server at `addr` (`HOST:PORT`): its certificate
/// must be for `HOST`, a DNS name or an IP address.
pub fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("`{host}` is not a name a certificate can be for: {e}"))
}

/// What went wrong in a TLS handshake, in words that say which side to
/// fix: `error` as the handshake returned it.
pub fn explain(error: &io::Error) -> String {
    use rustls::{AlertDescription, CertificateError, Error as Tls};
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<Tls>()) else {
        return match error.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => {
                "the peer closed the connection during the TLS handshake (is it at its \
                 connection limit? does it speak TLS on this port?)"
                    .to_string()
            }
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                "the TLS handshake did not finish in time".to_string()
            }
            _ => error.to_string(),
        };
    };
    let certificate = |e: &CertificateError| match e {
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            "the peer's certificate is not signed by the trusted authority (--tls-ca)".to_string()
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "the peer's certificate is not for the name it was reached by (its subject \
             alternative names do not include that host)"
                .to_string()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the peer's certificate has expired".to_string()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the peer's certificate is not valid yet (check the clocks)".to_string()
        }
        other => format!("the peer's certificate was refused: {other:?}"),
    };
    match tls {
        Tls::InvalidCertificate(e) => certificate(e),
        Tls::NoCertificatesPresented => {
            "the peer presented no certificate, and one is required (--tls-client-auth): \
             give the client --tls-cert and --tls-key"
                .to_string()
        }
        Tls::AlertReceived(alert) => match alert {
            AlertDescription::ProtocolVersion => {
                "the peer does not speak TLS on this port (a port in clear: drop --tls-ca, \
                 or give the server --tls-cert)"
                    .to_string()
            }
            AlertDescription::UnknownCA => "the peer refused this side's certificate: it is \
                                            not signed by the authority the peer trusts"
                .to_string(),
            AlertDescription::BadCertificate => {
                "the peer refused this side's certificate (bad_certificate: is it for the \
                 name the peer dialled?)"
                    .to_string()
            }
            AlertDescription::CertificateExpired => {
                "the peer refused this side's certificate: it has expired".to_string()
            }
            AlertDescription::CertificateRequired => {
                "the peer requires a client certificate (--tls-cert and --tls-key)".to_string()
            }
            other => format!("the peer ended the TLS handshake: {other:?}"),
        },
        Tls::InvalidMessage(_) => "the peer's bytes are not TLS (does it speak TLS on this \
                                   port?)"
            .to_string(),
        other => other.to_string(),
    }
}

/// Whether the certificate `leaf` is for the host of `addr` (`HOST:PORT`):
/// a slave's check that the master on a stream is the one `--master-addr`
/// names, beyond its certificate being signed by the authority.
pub fn certificate_is_for(leaf: &CertificateDer<'_>, addr: &str) -> Result<(), String> {
    let name = server_name(addr)?;
    let cert = webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| format!("the certificate cannot be parsed: {e}"))?;
    cert.verify_is_valid_for_subject_name(&name)
        .map_err(|_| format!("the certificate is not for {}", name.to_str()))
}
