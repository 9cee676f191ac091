//! The two hosts a deployment runs on, from `ec2/hosts.env` (`KEY=VALUE`
//! lines, `#` comments, no shell expansion but a leading `~/`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One host as the deployer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// `master` or `slave`, for messages.
    pub name: &'static str,
    /// The address the deployer SSHes to.
    pub ssh_addr: String,
    /// The address the replicas and the client use for this host.
    pub private_addr: String,
    /// The duokv port on this host.
    pub port: u16,
    /// The working directory on this host: binaries, data, run directories.
    pub remote_dir: String,
}

impl Host {
    /// `private_addr:port`, the address of this host's replica.
    pub fn service_addr(&self) -> String {
        if self.private_addr.contains(':') {
            format!("[{}]:{}", self.private_addr, self.port)
        } else {
            format!("{}:{}", self.private_addr, self.port)
        }
    }
}

/// Everything about the two hosts and how to reach them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosts {
    /// The master's host.
    pub master: Host,
    /// The slave's host.
    pub slave: Host,
    /// The SSH user on both.
    pub user: String,
    /// The private key file.
    pub key_file: PathBuf,
    /// The SSH port on both.
    pub ssh_port: u16,
    /// The known_hosts file host keys are checked against.
    pub known_hosts: PathBuf,
}

/// The keys a hosts file may set, each with what it means.
pub const KEYS: [(&str, &str); 13] = [
    ("MASTER_SSH", "address the deployer SSHes to for the master"),
    (
        "MASTER_PRIVATE",
        "address the slave and the client use for the master",
    ),
    ("SLAVE_SSH", "address the deployer SSHes to for the slave"),
    (
        "SLAVE_PRIVATE",
        "address the master and the client use for the slave",
    ),
    ("SSH_USER", "the SSH user on both hosts"),
    ("SSH_KEY", "the private key file"),
    ("SSH_PORT", "the SSH port on both hosts (default 22)"),
    ("MASTER_PORT", "duokv port of the master (default 7070)"),
    ("SLAVE_PORT", "duokv port of the slave (default 7070)"),
    ("REMOTE_DIR", "working directory on both hosts"),
    (
        "MASTER_REMOTE_DIR",
        "working directory on the master (default REMOTE_DIR)",
    ),
    (
        "SLAVE_REMOTE_DIR",
        "working directory on the slave (default REMOTE_DIR)",
    ),
    (
        "KNOWN_HOSTS",
        "known_hosts file (default ~/.ssh/known_hosts)",
    ),
];

/// Parses `KEY=VALUE` lines. Unknown keys are an error, so a typo does not
/// go unnoticed.
pub fn parse_env(text: &str, origin: &Path) -> Result<HashMap<String, String>> {
    let mut values = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line
            .split_once(" #")
            .map_or(line, |(before, _)| before)
            .trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: String| Error::BadFile {
            path: origin.to_path_buf(),
            reason: format!("line {}: {reason}", number + 1),
        };
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| bad(format!("`{line}` is not KEY=VALUE")))?;
        let key = key.trim();
        if !KEYS.iter().any(|(known, _)| *known == key) {
            return Err(bad(format!("unknown key `{key}`")));
        }
        let value = value.trim().trim_matches('"').to_string();
        values.insert(key.to_string(), value);
    }
    Ok(values)
}

/// Expands a leading `~/` to `$HOME/`.
pub fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

impl Hosts {
    /// Builds the hosts from parsed values (a hosts file, overridden by
    /// flags); `origin` names where they came from, for errors.
    pub fn from_values(values: &HashMap<String, String>, origin: &Path) -> Result<Hosts> {
        let get = |key: &str| values.get(key).filter(|v| !v.is_empty()).cloned();
        let need = |key: &str| {
            get(key).ok_or_else(|| Error::BadFile {
                path: origin.to_path_buf(),
                reason: format!(
                    "{key} is not set ({})",
                    KEYS.iter().find(|(k, _)| *k == key).map_or("", |(_, d)| d)
                ),
            })
        };
        let port = |key: &str, default: u16| -> Result<u16> {
            match get(key) {
                None => Ok(default),
                Some(text) => text.parse().map_err(|_| Error::BadFile {
                    path: origin.to_path_buf(),
                    reason: format!("{key}={text} is not a port"),
                }),
            }
        };
        let master_ssh = need("MASTER_SSH")?;
        let slave_ssh = need("SLAVE_SSH")?;
        let remote_dir = |key: &str| get(key).map_or_else(|| need("REMOTE_DIR"), Ok);
        Ok(Hosts {
            master: Host {
                name: "master",
                private_addr: get("MASTER_PRIVATE").unwrap_or_else(|| master_ssh.clone()),
                ssh_addr: master_ssh,
                port: port("MASTER_PORT", 7070)?,
                remote_dir: remote_dir("MASTER_REMOTE_DIR")?,
            },
            slave: Host {
                name: "slave",
                private_addr: get("SLAVE_PRIVATE").unwrap_or_else(|| slave_ssh.clone()),
                ssh_addr: slave_ssh,
                port: port("SLAVE_PORT", 7070)?,
                remote_dir: remote_dir("SLAVE_REMOTE_DIR")?,
            },
            user: need("SSH_USER")?,
            key_file: expand_home(&need("SSH_KEY")?),
            ssh_port: port("SSH_PORT", 22)?,
            known_hosts: expand_home(
                &get("KNOWN_HOSTS").unwrap_or_else(|| "~/.ssh/known_hosts".into()),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_parses_with_comments_and_defaults() {
        let text = "# two hosts\nMASTER_SSH=203.0.113.10\nMASTER_PRIVATE=10.0.1.10  # inside the VPC\n\
                    SLAVE_SSH=203.0.113.11\nSSH_USER=ubuntu\nSSH_KEY=/keys/duokv.pem\nREMOTE_DIR=/home/ubuntu/duokv\n";
        let values = parse_env(text, Path::new("hosts.env")).unwrap();
        let hosts = Hosts::from_values(&values, Path::new("hosts.env")).unwrap();
        assert_eq!(hosts.master.service_addr(), "10.0.1.10:7070");
        assert_eq!(hosts.slave.private_addr, "203.0.113.11");
        assert_eq!(hosts.ssh_port, 22);
        assert_eq!(hosts.key_file, PathBuf::from("/keys/duokv.pem"));
    }

    #[test]
    fn typos_and_missing_keys_are_errors() {
        let err = parse_env("MASTR_SSH=x\n", Path::new("h")).unwrap_err();
        assert!(err.to_string().contains("unknown key `MASTR_SSH`"), "{err}");
        let values =
            parse_env("MASTER_SSH=a\nSLAVE_SSH=b\nREMOTE_DIR=/w\n", Path::new("h")).unwrap();
        let err = Hosts::from_values(&values, Path::new("h")).unwrap_err();
        assert!(err.to_string().contains("SSH_USER is not set"), "{err}");
    }
}
