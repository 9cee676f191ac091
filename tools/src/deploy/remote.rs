//! One SSH connection to one host, through the `ssh2` crate: connecting
//! with the host key checked against `known_hosts`, running commands,
//! copying files both ways over SFTP.
//!
//! Every failure says which host and which step, and each way of failing to
//! connect has its own message: key file missing, host unreachable, host key
//! unknown or changed, authentication refused.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ssh2::{CheckResult, KnownHostFileKind, OpenFlags, OpenType, Session};

use super::hosts::{Host, Hosts};
use crate::error::{Error, Result};

/// What a remote command printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    /// The exit status (-1 if the channel closed without one).
    pub status: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// An authenticated SSH session to one host.
pub struct Remote {
    host: Host,
    session: Session,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("host", &self.host).finish()
    }
}

/// The error for `host` at `step`.
pub fn failure(host: &Host, step: &str, message: impl Into<String>) -> Error {
    Error::Deploy {
        host: format!("{} ({})", host.name, host.ssh_addr),
        step: step.to_string(),
        message: message.into(),
    }
}

impl Remote {
    /// Connects and authenticates, checking the host key against
    /// `hosts.known_hosts`; an unknown key is added only when
    /// `accept_new_host_keys`.
    pub fn connect(host: &Host, hosts: &Hosts, accept_new_host_keys: bool) -> Result<Remote> {
        let step = "connect";
        if !hosts.key_file.is_file() {
            return Err(failure(
                host,
                step,
                format!("ssh key file {} not found", hosts.key_file.display()),
            ));
        }
        let target = (host.ssh_addr.as_str(), hosts.ssh_port)
            .to_socket_addrs()
            .map_err(|e| failure(host, step, format!("cannot resolve {}: {e}", host.ssh_addr)))?
            .next()
            .ok_or_else(|| {
                failure(
                    host,
                    step,
                    format!("{} resolves to no address", host.ssh_addr),
                )
            })?;
        let tcp = TcpStream::connect_timeout(&target, Duration::from_secs(5)).map_err(|e| {
            let why = match e.kind() {
                ErrorKind::ConnectionRefused => "connection refused (is sshd running?)".to_string(),
                ErrorKind::TimedOut | ErrorKind::WouldBlock => "no answer within 5 s".to_string(),
                _ => e.to_string(),
            };
            failure(host, step, format!("host unreachable at {target}: {why}"))
        })?;
        let mut session =
            Session::new().map_err(|e| failure(host, step, format!("cannot start ssh: {e}")))?;
        session.set_tcp_stream(tcp);
        session.set_timeout(30_000);
        session
            .handshake()
            .map_err(|e| failure(host, step, format!("ssh handshake failed: {e}")))?;
        check_host_key(&session, host, hosts, accept_new_host_keys)?;
        session
            .userauth_pubkey_file(&hosts.user, None, &hosts.key_file, None)
            .map_err(|e| {
                failure(
                    host,
                    step,
                    format!(
                        "authentication refused for user {} with key {}: {}",
                        hosts.user,
                        hosts.key_file.display(),
                        e.message()
                    ),
                )
            })?;
        if !session.authenticated() {
            return Err(failure(
                host,
                step,
                format!("authentication refused for user {}", hosts.user),
            ));
        }
        Ok(Remote {
            host: host.clone(),
            session,
        })
    }

    /// The host this session is connected to.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Runs `command` with `sh -c` semantics and collects its output.
    pub fn exec(&self, step: &str, command: &str) -> Result<Output> {
        self.exec_interruptible(step, command, None)
    }

    /// Like [`exec`](Self::exec), but gives up (and says so) once `stop` is
    /// raised, checking it every 200 ms.
    pub fn exec_interruptible(
        &self,
        step: &str,
        command: &str,
        stop: Option<&AtomicBool>,
    ) -> Result<Output> {
        let err = |e: ssh2::Error| failure(&self.host, step, format!("`{}`: {e}", short(command)));
        let mut channel = self.session.channel_session().map_err(err)?;
        channel.exec(command).map_err(err)?;
        let mut stdout = Vec::new();
        let mut buf = [0u8; 8192];
        if stop.is_some() {
            self.session.set_timeout(200);
        }
        let read = loop {
            match channel.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => stdout.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock)
                        && stop.is_some() =>
                {
                    if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                        break Err(failure(&self.host, step, "interrupted"));
                    }
                }
                Err(e) => {
                    break Err(failure(
                        &self.host,
                        step,
                        format!("reading `{}`: {e}", short(command)),
                    ));
                }
            }
        };
        self.session.set_timeout(30_000);
        read?;
        let mut stderr = String::new();
        let _ = channel.stderr().read_to_string(&mut stderr);
        channel.wait_close().map_err(err)?;
        let status = channel.exit_status().unwrap_or(-1);
        Ok(Output {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr,
        })
    }

    /// Runs `command` and returns its standard output, or fails with its
    /// standard error when it exits non-zero.
    pub fn run(&self, step: &str, command: &str) -> Result<String> {
        let output = self.exec(step, command)?;
        if output.status != 0 {
            let detail = if output.stderr.trim().is_empty() {
                output.stdout.trim()
            } else {
                output.stderr.trim()
            };
            return Err(failure(
                &self.host,
                step,
                format!(
                    "`{}` exited with {}: {}",
                    short(command),
                    output.status,
                    tail(detail, 10)
                ),
            ));
        }
        Ok(output.stdout)
    }

    /// Copies a local file to `remote` over SFTP (through a temporary name,
    /// then a rename), with permissions `mode`. The temporary file is made
    /// anew with `mode` (a leftover of an interrupted upload is removed
    /// first), so a key is never readable by others, not even while it is
    /// being written.
    pub fn upload(&self, step: &str, local: &Path, remote: &str, mode: u32) -> Result<()> {
        let err = |e: ssh2::Error| failure(&self.host, step, format!("sftp to {remote}: {e}"));
        let bytes = std::fs::read(local).map_err(|source| Error::File {
            path: local.to_path_buf(),
            source,
        })?;
        let sftp = self.session.sftp().map_err(err)?;
        let temp = format!("{remote}.upload");
        // Missing is the usual case, not an error.
        let _ = sftp.unlink(Path::new(&temp));
        let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE;
        let mode = mode & 0o777;
        let mut file = sftp
            .open_mode(Path::new(&temp), flags, mode as i32, OpenType::File)
            .map_err(err)?;
        file.write_all(&bytes)
            .map_err(|e| failure(&self.host, step, format!("writing {temp}: {e}")))?;
        drop(file);
        self.run(
            step,
            &format!(
                "chmod {mode:o} {} && mv -f {} {}",
                quote(&temp),
                quote(&temp),
                quote(remote)
            ),
        )?;
        Ok(())
    }

    /// Copies `remote` to a local file over SFTP.
    pub fn download(&self, step: &str, remote: &str, local: &Path) -> Result<()> {
        let err = |e: ssh2::Error| failure(&self.host, step, format!("sftp from {remote}: {e}"));
        let sftp = self.session.sftp().map_err(err)?;
        let mut file = sftp.open(Path::new(remote)).map_err(err)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| failure(&self.host, step, format!("reading {remote}: {e}")))?;
        std::fs::write(local, bytes).map_err(|source| Error::File {
            path: local.to_path_buf(),
            source,
        })
    }
}

/// Checks the server's host key against the known_hosts file.
fn check_host_key(session: &Session, host: &Host, hosts: &Hosts, accept_new: bool) -> Result<()> {
    let step = "connect";
    let (key, key_type) = session
        .host_key()
        .ok_or_else(|| failure(host, step, "the server sent no host key"))?;
    let mut known = session
        .known_hosts()
        .map_err(|e| failure(host, step, format!("known_hosts: {e}")))?;
    if hosts.known_hosts.exists() {
        known
            .read_file(&hosts.known_hosts, KnownHostFileKind::OpenSSH)
            .map_err(|e| {
                failure(
                    host,
                    step,
                    format!("cannot read {}: {e}", hosts.known_hosts.display()),
                )
            })?;
    }
    match known.check_port(&host.ssh_addr, hosts.ssh_port, key) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => Err(failure(
            host,
            step,
            format!(
                "HOST KEY MISMATCH: {}'s key differs from the one in {}; refusing to connect (the host was \
                 replaced, or someone is in the middle)",
                host.ssh_addr,
                hosts.known_hosts.display()
            ),
        )),
        CheckResult::NotFound | CheckResult::Failure if accept_new => {
            let name = if hosts.ssh_port == 22 {
                host.ssh_addr.clone()
            } else {
                format!("[{}]:{}", host.ssh_addr, hosts.ssh_port)
            };
            known
                .add(&name, key, "added by duokv-deploy", key_type.into())
                .map_err(|e| failure(host, step, format!("cannot add the host key: {e}")))?;
            if let Some(parent) = hosts.known_hosts.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            known
                .write_file(&hosts.known_hosts, KnownHostFileKind::OpenSSH)
                .map_err(|e| {
                    failure(
                        host,
                        step,
                        format!("cannot write {}: {e}", hosts.known_hosts.display()),
                    )
                })?;
            log::warn!(
                "{}: host key unknown; added it to {} (--accept-new-host-keys)",
                host.ssh_addr,
                hosts.known_hosts.display()
            );
            Ok(())
        }
        CheckResult::NotFound | CheckResult::Failure => Err(failure(
            host,
            step,
            format!(
                "host key unknown: {} is not in {}; check its fingerprint and add it (ssh-keyscan -p {} {} >> {}), \
                 or pass --accept-new-host-keys",
                host.ssh_addr,
                hosts.known_hosts.display(),
                hosts.ssh_port,
                host.ssh_addr,
                hosts.known_hosts.display()
            ),
        )),
    }
}

/// A string quoted for a POSIX shell.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The first line of a command, shortened for messages.
fn short(command: &str) -> String {
    let first = command.lines().next().unwrap_or("");
    if first.chars().count() > 80 {
        format!("{}...", first.chars().take(77).collect::<String>())
    } else {
        first.to_string()
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
