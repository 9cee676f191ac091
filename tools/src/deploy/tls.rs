//! The deployment's TLS: by default a fresh certificate authority and a
//! certificate per host for every deployment, made on the deployer's
//! machine; or the operator's own files (`--tls-dir`); or none (`--no-tls`).
//!
//! A fresh authority lives in a temporary directory on the deployer's
//! machine and its key never leaves it: the directory, key included, is
//! deleted when the deployment ends. Each host gets the authority's
//! certificate and its own certificate and key, which it uses both as a
//! server (for the bench client and, on the slave, for the master's
//! replication stream) and as a client (the master presents it to its
//! slave, the bench client to both):
//!
//! ```text
//! REMOTE_DIR/tls/          mode 700
//!   ca.pem                 the authority's certificate, mode 644
//!   HOST.pem               this host's certificate (master or slave), mode 644
//!   HOST-key.pem           its key, mode 600
//! ```
//!
//! A fresh authority issues each host's certificate for the address the
//! other host and the bench client dial it by (its private address, a DNS
//! name or an IP address) and for the address the deployer SSHes to when
//! that is another one (so that `duokv --tls-ca ca.pem info --addr` works
//! from wherever the operator reaches the host). With `--client-on local`
//! it also issues `client.pem` for the bench on the deployer's machine.
//!
//! `--tls-dir DIR` takes the same file names from `DIR`: `ca.pem`,
//! `master.pem`, `master-key.pem`, `slave.pem`, `slave-key.pem`, and with
//! `--client-on local` `client.pem` and `client-key.pem`: what
//! `duokv certs --out DIR --node master=... --node slave=... --node client=client`
//! writes. They are loaded before any host is touched.

use std::path::{Path, PathBuf};

use duokv::tls::{ClientTls, ServerTls, TlsFiles};

use super::hosts::{Host, Hosts};
use super::remote::{Remote, quote};
use crate::certs::{self, Issued, Subject};
use crate::error::{Error, Result};

/// How long a fresh authority's certificates are valid: longer than any
/// deployment, short enough that a copy left behind soon opens nothing.
const DAYS: u32 = 7;

/// The authority's certificate, in a local directory and on every host.
const CA_FILE: &str = "ca.pem";

/// The file stem of the bench client's certificate with `--client-on local`.
const CLIENT: &str = "client";

/// Where a deployment's TLS files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// A fresh authority and certificates for every deployment (the
    /// default).
    Fresh,
    /// The operator's files in this directory (`--tls-dir`), named as the
    /// [module docs](self) say.
    Dir(PathBuf),
    /// No TLS: both servers and the bench in clear (`--no-tls`, for
    /// comparisons).
    Off,
}

impl std::fmt::Display for TlsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsSource::Fresh => write!(f, "a fresh authority for this deployment"),
            TlsSource::Dir(dir) => write!(f, "the certificates in {}", dir.display()),
            TlsSource::Off => write!(f, "off"),
        }
    }
}

/// The deployment's TLS files on the deployer's machine.
pub(super) struct LocalTls {
    /// A fresh authority's directory, deleted with its key when dropped.
    _temp: Option<tempfile::TempDir>,
    source: TlsSource,
    ca: PathBuf,
    master: Issued,
    slave: Issued,
    /// The bench's certificate when it runs on the deployer's machine.
    client: Option<Issued>,
}

impl LocalTls {
    /// Makes or finds the files `source` says, with a client certificate
    /// when `local_client`; `None` for [`TlsSource::Off`].
    pub(super) fn new(
        source: &TlsSource,
        hosts: &Hosts,
        local_client: bool,
    ) -> Result<Option<LocalTls>> {
        match source {
            TlsSource::Off => Ok(None),
            TlsSource::Fresh => LocalTls::fresh(hosts, local_client).map(Some),
            TlsSource::Dir(dir) => LocalTls::from_dir(dir, local_client).map(Some),
        }
    }

    fn fresh(hosts: &Hosts, local_client: bool) -> Result<LocalTls> {
        let temp = tempfile::Builder::new()
            .prefix("duokv-deploy-tls-")
            .tempdir()?;
        let mut subjects = vec![subject(&hosts.master), subject(&hosts.slave)];
        if local_client {
            subjects.push(Subject {
                file: CLIENT.into(),
                names: vec![CLIENT.into()],
            });
        }
        let (ca, mut issued) = certs::make(temp.path(), &subjects, DAYS)?;
        let client = local_client.then(|| issued.pop().expect("the client's"));
        let slave = issued.pop().expect("the slave's");
        let master = issued.pop().expect("the master's");
        Ok(LocalTls {
            _temp: Some(temp),
            source: TlsSource::Fresh,
            ca,
            master,
            slave,
            client,
        })
    }

    /// Finds the files in `dir` and loads them, so that a missing or
    /// broken one is refused before any host is touched.
    fn from_dir(dir: &Path, local_client: bool) -> Result<LocalTls> {
        let issued = |stem: &str| Issued {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}-key.pem")),
        };
        let local = LocalTls {
            _temp: None,
            source: TlsSource::Dir(dir.to_path_buf()),
            ca: dir.join(CA_FILE),
            master: issued("master"),
            slave: issued("slave"),
            client: local_client.then(|| issued(CLIENT)),
        };
        let mut files = vec![&local.ca];
        for each in [
            Some(&local.master),
            Some(&local.slave),
            local.client.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            files.extend([&each.cert, &each.key]);
        }
        let missing: Vec<String> = files
            .into_iter()
            .filter(|path| !path.is_file())
            .map(|path| path.display().to_string())
            .collect();
        if !missing.is_empty() {
            return Err(Error::Usage {
                message: format!(
                    "--tls-dir {}: missing {} (it must hold ca.pem, master.pem, master-key.pem, \
                     slave.pem, slave-key.pem{}; see ec2/README.md, \"TLS\")",
                    dir.display(),
                    missing.join(", "),
                    if local_client {
                        " and, for --client-on local, client.pem and client-key.pem"
                    } else {
                        ""
                    }
                ),
            });
        }
        for host in [&local.master, &local.slave] {
            ServerTls::load(TlsFiles {
                cert: host.cert.clone(),
                key: host.key.clone(),
                ca: local.ca.clone(),
                client_auth: true,
            })
            .map_err(|e| Error::BadFile {
                path: host.cert.clone(),
                reason: duokv::error::chain(&e),
            })?;
        }
        local.client_tls()?;
        Ok(local)
    }

    /// Step 2: uploads each host's files into `REMOTE_DIR/tls` (mode 700),
    /// keys with mode 600.
    pub(super) fn share(&self, master: &Remote, slave: &Remote) -> Result<()> {
        let name = "2. upload";
        for (remote, issued) in [(master, &self.master), (slave, &self.slave)] {
            let host = remote.host();
            let at = RemoteTls::on(host);
            remote.run(name, &format!("mkdir -p -m 700 {}", quote(&at.dir)))?;
            remote.upload(name, &self.ca, &at.ca, 0o644)?;
            remote.upload(name, &issued.cert, &at.cert, 0o644)?;
            remote.upload(name, &issued.key, &at.key, 0o600)?;
            let what = match &self.source {
                TlsSource::Dir(dir) => format!("TLS: certificates from {}", dir.display()),
                _ => "TLS: a new authority and certificates".to_string(),
            };
            super::step(host, name, &format!("{what}, keys mode 600"));
        }
        Ok(())
    }

    /// The bench's TLS on the deployer's machine.
    pub(super) fn client_tls(&self) -> Result<ClientTls> {
        let identity = self
            .client
            .as_ref()
            .map(|c| (c.cert.as_path(), c.key.as_path()));
        ClientTls::new(&self.ca, identity).map_err(|e| Error::BadFile {
            path: self.ca.clone(),
            reason: duokv::error::chain(&e),
        })
    }

    /// Where the files came from, for the run's metadata.
    pub(super) fn source(&self) -> &TlsSource {
        &self.source
    }
}

/// The certificate of `host`: for its private address, and for the address
/// the deployer SSHes to when that is another one.
fn subject(host: &Host) -> Subject {
    let mut names = vec![bare(&host.private_addr)];
    let ssh = bare(&host.ssh_addr);
    if !names.contains(&ssh) {
        names.push(ssh);
    }
    Subject {
        file: host.name.to_string(),
        names,
    }
}

/// An address without IPv6 brackets.
fn bare(addr: &str) -> String {
    addr.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// The deployment's TLS files on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RemoteTls {
    dir: String,
    ca: String,
    cert: String,
    key: String,
}

impl RemoteTls {
    /// The files on `host`.
    pub(super) fn on(host: &Host) -> RemoteTls {
        let dir = format!("{}/tls", host.remote_dir);
        RemoteTls {
            ca: format!("{dir}/{CA_FILE}"),
            cert: format!("{dir}/{}.pem", host.name),
            key: format!("{dir}/{}-key.pem", host.name),
            dir,
        }
    }

    /// The flags of `duokv server` (before `--tls-client-auth`, which only
    /// the slave gets).
    pub(super) fn server_flags(&self) -> String {
        format!(
            "--tls-cert {} --tls-key {} --tls-ca {}",
            quote(&self.cert),
            quote(&self.key),
            quote(&self.ca)
        )
    }

    /// The flags of a `duokv` client on this host: the authority, and the
    /// host's certificate as the client's (the slave requires one).
    pub(super) fn client_flags(&self) -> String {
        format!(
            "--tls-ca {} --tls-cert {} --tls-key {}",
            quote(&self.ca),
            quote(&self.cert),
            quote(&self.key)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &'static str, ssh: &str, private: &str) -> Host {
        Host {
            name,
            ssh_addr: ssh.into(),
            private_addr: private.into(),
            port: 7070,
            remote_dir: "/w".into(),
        }
    }

    #[test]
    fn a_certificate_is_for_the_private_address_and_the_ssh_one() {
        let on_ec2 = subject(&host("master", "203.0.113.10", "10.0.1.10"));
        assert_eq!(on_ec2.file, "master");
        assert_eq!(on_ec2.names, ["10.0.1.10", "203.0.113.10"]);
        let same = subject(&host("slave", "[fd00::3]", "fd00::3"));
        assert_eq!(same.names, ["fd00::3"]);
    }

    #[test]
    fn hosts_read_their_own_files() {
        let at = RemoteTls::on(&host("slave", "b", "b"));
        assert_eq!(
            at.server_flags(),
            "--tls-cert '/w/tls/slave.pem' --tls-key '/w/tls/slave-key.pem' --tls-ca '/w/tls/ca.pem'"
        );
        assert!(
            at.client_flags()
                .starts_with("--tls-ca '/w/tls/ca.pem' --tls-cert")
        );
    }
}
