//! What RESP commands do on duokv: one connection's [`Session`] (its
//! authentication, its last write) and the command table.
//!
//! | command | on duokv |
//! |---|---|
//! | `GET k` | a read, served by the replica that receives it |
//! | `SET k v [NX\|XX]` | a put (`NX`: create, `XX`: update; not met: nil) |
//! | `DEL k...`, `EXISTS k...` | deletes and reads; the count |
//! | `MGET k...`, `MSET k v...` | reads; puts, one after the other (not atomic) |
//! | `DUOKV.TOKEN` | the token of this connection's last write, `HISTORY_HEX:SEQ` (nil before one) |
//! | `DUOKV.GET k AFTER token [WAIT ms]` | a read once that write is visible here (read your writes on the slave); `-NOTYETVISIBLE` after the wait |
//! | `WAIT n timeout` | 1 once the slave has acknowledged this connection's last write, else 0 after `timeout` ms (0: wait on) |
//! | `PING`, `ECHO`, `SELECT 0`, `CLIENT SETNAME/SETINFO/GETNAME/ID`, `QUIT` | as Redis |
//! | `AUTH [default] token`, `HELLO [2\|3 [AUTH default token] [SETNAME n]]` | the server's auth token; RESP2, or RESP3 after `HELLO 3` (its null and map; the other types are the same) |
//! | `INFO [section]` | `# Server` and `# Replication` in Redis's field names |
//! | `COMMAND`, `COMMAND DOCS/COUNT/INFO`, `CONFIG GET` | enough for redis-cli and redis-benchmark |
//!
//! A write on the slave is `-READONLY`, as on a Redis replica. `EX`, `PX`
//! and the other expiry options are refused: duokv has no expiry. Any other
//! command is `-ERR unknown command`, and the connection goes on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use duokv_protocol::{ErrorCode, RespReply, RespVersion, Response};
use duokv_storage::WriteOp;

use super::deferred;
use super::node::Node;
use super::shared::Shared;
use crate::clock::now_ns;
use crate::replication::Admission;

/// Whether the connection goes on after a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Read the next request.
    Continue,
    /// Send the reply, then close (`QUIT`, a bad request).
    Close,
}

/// One RESP connection's state.
pub(crate) struct Session {
    shared: Arc<Shared>,
    peer: String,
    /// Whether the connection presented the auth token (or none is needed).
    authenticated: bool,
    /// The seq of this connection's last write, for `WAIT`.
    last_write: u64,
    name: Option<Vec<u8>>,
    /// RESP2, or RESP3 after `HELLO 3`.
    version: RespVersion,
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, peer: &str) -> Session {
        let authenticated = shared.config.auth_token.is_none();
        Session {
            shared,
            peer: peer.to_string(),
            authenticated,
            last_write: 0,
            name: None,
            version: RespVersion::Resp2,
        }
    }

    /// The RESP version replies are encoded in.
    pub(crate) fn version(&self) -> RespVersion {
        self.version
    }

    /// Whether the server is stopping (the connection closes after its
    /// replies).
    pub(crate) fn shutting_down(&self) -> bool {
        self.shared.shutdown.is_requested()
    }

    /// Runs one command (`args[0]` is its name).
    pub(crate) fn run(&mut self, args: &[Vec<u8>]) -> (RespReply, Flow) {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        let args = &args[1..];
        if !self.authenticated && !matches!(name.as_str(), "AUTH" | "HELLO" | "QUIT") {
            return (
                RespReply::Error("NOAUTH Authentication required.".into()),
                Flow::Continue,
            );
        }
        let reply = match name.as_str() {
            "QUIT" => return (ok(), Flow::Close),
            "PING" => match args {
                [] => RespReply::Simple("PONG".into()),
                [message] => RespReply::Bulk(message.clone()),
                _ => wrong_args("ping"),
            },
            "ECHO" => match args {
                [message] => RespReply::Bulk(message.clone()),
                _ => wrong_args("echo"),
            },
            "AUTH" => self.auth(args),
            "HELLO" => self.hello(args),
            "SELECT" => match args {
                [db] if db.as_slice() == b"0" => ok(),
                [_] => RespReply::Error("ERR DB index is out of range".into()),
                _ => wrong_args("select"),
            },
            "CLIENT" => self.client(args),
            "GET" => match args {
                [key] => self.get(key),
                _ => wrong_args("get"),
            },
            "MGET" if !args.is_empty() => {
                RespReply::Array(args.iter().map(|key| self.get(key)).collect())
            }
            "EXISTS" if !args.is_empty() => {
                let present = args
                    .iter()
                    .filter(|key| matches!(self.get(key), RespReply::Bulk(_)))
                    .count();
                RespReply::Integer(present as i64)
            }
            "SET" => self.set(args),
            "MSET" if !args.is_empty() && args.len().is_multiple_of(2) => {
                for pair in args.chunks(2) {
                    let reply = self.write(WriteOp::Put {
                        key: &pair[0],
                        value: &pair[1],
                    });
                    if let Err(error) = reply {
                        return (error, Flow::Continue);
                    }
                }
                ok()
            }
            "DEL" if !args.is_empty() => {
                let mut deleted = 0;
                for key in args {
                    match self.write(WriteOp::Delete { key }) {
                        Ok(true) => deleted += 1,
                        Ok(false) => {}
                        Err(error) => return (error, Flow::Continue),
                    }
                }
                RespReply::Integer(deleted)
            }
            "WAIT" => self.wait(args),
            "DUOKV.TOKEN" => self.token(),
            "DUOKV.GET" => self.get_after(args),
            "INFO" => RespReply::Bulk(self.info().into_bytes()),
            "COMMAND" => command(args),
            "CONFIG" => config(args),
            "MGET" | "EXISTS" | "MSET" | "DEL" => wrong_args(&name.to_ascii_lowercase()),
            _ => RespReply::Error(format!(
                "ERR unknown command '{}', with args beginning with: {}",
                String::from_utf8_lossy(&name.as_bytes()[..name.len().min(128)]),
                args.iter()
                    .take(3)
                    .map(|a| format!("'{}' ", String::from_utf8_lossy(a)))
                    .collect::<String>()
            )),
        };
        (reply, Flow::Continue)
    }

    fn auth(&mut self, args: &[Vec<u8>]) -> RespReply {
        let token = match args {
            [token] => token,
            [user, token] if user.as_slice() == b"default" => token,
            [_, _] => return wrong_pass(),
            _ => return wrong_args("auth"),
        };
        match &self.shared.config.auth_token {
            None => RespReply::Error(
                "ERR AUTH <password> called without any password configured for the default \
                 user. Are you sure your configuration is correct?"
                    .into(),
            ),
            Some(expected) if expected.admits(Some(token)) => {
                self.authenticated = true;
                ok()
            }
            Some(_) => {
                log::warn!("{}: RESP AUTH with a wrong token; refused", self.peer);
                wrong_pass()
            }
        }
    }

    fn hello(&mut self, args: &[Vec<u8>]) -> RespReply {
        let mut rest = args;
        let mut version = self.version;
        if let [asked, more @ ..] = rest {
            version = match asked.as_slice() {
                b"2" => RespVersion::Resp2,
                b"3" => RespVersion::Resp3,
                _ => return RespReply::Error("NOPROTO unsupported protocol version".into()),
            };
            rest = more;
        }
        while let [option, more @ ..] = rest {
            match (option.to_ascii_uppercase().as_slice(), more) {
                (b"AUTH", [user, token, tail @ ..]) => {
                    let reply = self.auth(&[user.clone(), token.clone()]);
                    if matches!(reply, RespReply::Error(_)) {
                        return reply;
                    }
                    rest = tail;
                }
                (b"SETNAME", [name, tail @ ..]) => {
                    self.name = Some(name.clone());
                    rest = tail;
                }
                _ => return RespReply::Error("ERR Syntax error in HELLO option".into()),
            }
        }
        if !self.authenticated {
            return RespReply::Error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise \
                 the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the \
                 client and select the RESP protocol version at the same time"
                    .into(),
            );
        }
        self.version = version;
        let role = match &*self.shared.node() {
            Node::Slave { .. } => "replica",
            _ => "master",
        };
        let field = |name: &str, value: RespReply| (RespReply::Bulk(name.into()), value);
        let proto = match version {
            RespVersion::Resp2 => 2,
            RespVersion::Resp3 => 3,
        };
        RespReply::Map(vec![
            field("server", RespReply::Bulk(b"redis".to_vec())),
            field(
                "version",
                RespReply::Bulk(format!("7.0.0-duokv-{}", env!("CARGO_PKG_VERSION")).into()),
            ),
            field("proto", RespReply::Integer(proto)),
            field("id", RespReply::Integer(0)),
            field("mode", RespReply::Bulk(b"standalone".to_vec())),
            field("role", RespReply::Bulk(role.into())),
            field("modules", RespReply::Array(Vec::new())),
        ])
    }

    fn client(&mut self, args: &[Vec<u8>]) -> RespReply {
        let Some(sub) = args.first() else {
            return wrong_args("client");
        };
        match (sub.to_ascii_uppercase().as_slice(), &args[1..]) {
            (b"SETNAME", [name]) => {
                self.name = Some(name.clone());
                ok()
            }
            (b"SETINFO", [_, _]) => ok(),
            (b"GETNAME", []) => self.name.clone().map_or(RespReply::Null, RespReply::Bulk),
            (b"ID", []) => RespReply::Integer(0),
            _ => RespReply::Error(format!(
                "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                String::from_utf8_lossy(sub)
            )),
        }
    }

    /// A read, served by this replica.
    fn get(&self, key: &[u8]) -> RespReply {
        match super::read::answer(&self.shared, key, None, None, false) {
            Response::Value { value: Some(v), .. } => RespReply::Bulk(v),
            Response::Value { value: None, .. } => RespReply::Null,
            other => error_reply(&other),
        }
    }

    fn set(&mut self, args: &[Vec<u8>]) -> RespReply {
        let [key, value, options @ ..] = args else {
            return wrong_args("set");
        };
        let mut condition = None;
        for option in options {
            match option.to_ascii_uppercase().as_slice() {
                b"NX" if condition.is_none() => condition = Some(true),
                b"XX" if condition.is_none() => condition = Some(false),
                b"EX" | b"PX" | b"EXAT" | b"PXAT" | b"KEEPTTL" => {
                    return RespReply::Error(
                        "ERR duokv has no expiry: SET's EX, PX, EXAT, PXAT and KEEPTTL are not \
                         supported"
                            .into(),
                    );
                }
                b"GET" => {
                    return RespReply::Error("ERR duokv does not support SET ... GET".into());
                }
                _ => return RespReply::Error("ERR syntax error".into()),
            }
        }
        let op = match condition {
            None => WriteOp::Put { key, value },
            Some(true) => WriteOp::Create { key, value },
            Some(false) => WriteOp::Update { key, value },
        };
        match self.write(op) {
            Ok(true) => ok(),
            // NX on a key that exists, XX on one that does not.
            Ok(false) => RespReply::Null,
            Err(error) => error,
        }
    }

    /// Writes `op` on this master and waits for its outcome (durable here,
    /// and acknowledged by a sync slave): `Ok(true)` written, `Ok(false)`
    /// not, as the op's condition says (the key exists for a create, is
    /// absent for an update or a delete).
    fn write(&mut self, op: WriteOp<'_>) -> Result<bool, RespReply> {
        let shared = &self.shared;
        let node = shared.node();
        match &*node {
            Node::Slave { .. } => {
                return Err(RespReply::Error(
                    "READONLY You can't write against a read only replica.".into(),
                ));
            }
            Node::Master(replicator) => {
                let patience = replicator.settings().sync_timeout;
                let (admission, _staging) = replicator.admit_write(patience);
                if admission != Admission::Open {
                    return Err(error_reply(&super::reply::switching_over(admission)));
                }
            }
            Node::Standalone => {}
        }
        drop(node);
        let (done, outcome) = crossbeam_channel::bounded(1);
        let timer = shared.metrics.write_timer(&op, Instant::now());
        deferred::write_then(
            shared,
            now_ns(),
            op,
            Box::new(move |result| {
                let _ = done.send(result);
            }),
        );
        let outcome = outcome.recv().map_err(|_| {
            RespReply::Error("ERR the write's outcome was lost: the server is stopping".into())
        })?;
        timer.observe();
        match outcome {
            Ok(receipt) => {
                self.last_write = receipt.seq;
                Ok(true)
            }
            Err(Response::Error {
                code: ErrorCode::AlreadyExists | ErrorCode::NotFound,
                ..
            }) => Ok(false),
            Err(other) => Err(error_reply(&other)),
        }
    }

    /// `DUOKV.TOKEN`: the read-contract token of this connection's last
    /// write, for `DUOKV.GET ... AFTER` on the slave or for the native
    /// client.
    fn token(&self) -> RespReply {
        if self.last_write == 0 {
            return RespReply::Null;
        }
        let token = crate::Token {
            history: self.shared.store.history_id(),
            seq: self.last_write,
        };
        RespReply::Bulk(token.to_string().into_bytes())
    }

    /// `DUOKV.GET key AFTER token [WAIT ms]`: a read that waits until the
    /// token's write is visible on this replica (up to `ms`, default 0).
    fn get_after(&self, args: &[Vec<u8>]) -> RespReply {
        let (key, token, wait) = match args {
            [key, after, token] if after.eq_ignore_ascii_case(b"AFTER") => {
                (key, token, b"0".as_slice())
            }
            [key, after, token, wait_word, wait]
                if after.eq_ignore_ascii_case(b"AFTER")
                    && wait_word.eq_ignore_ascii_case(b"WAIT") =>
            {
                (key, token, wait.as_slice())
            }
            _ => return wrong_args("duokv.get"),
        };
        let Ok(token) = String::from_utf8_lossy(token).parse::<crate::Token>() else {
            return RespReply::Error("ERR not a duokv token: use HISTORY_HEX:SEQ".into());
        };
        let Some(wait_ms) = std::str::from_utf8(wait)
            .ok()
            .and_then(|w| w.parse::<u32>().ok())
        else {
            return RespReply::Error("ERR WAIT is not an integer or out of range".into());
        };
        let after = duokv_protocol::ReadAfter {
            history: token.history,
            seq: token.seq,
            wait_ms,
        };
        match super::read::answer(&self.shared, key, Some(after), None, false) {
            Response::Value { value: Some(v), .. } => RespReply::Bulk(v),
            Response::Value { value: None, .. } => RespReply::Null,
            Response::Error {
                code: ErrorCode::NotYetVisible { visible_seq },
                ..
            } => RespReply::Error(format!(
                "NOTYETVISIBLE the write is not visible on this replica yet (it shows seq \
                 {visible_seq}): read the master, or wait longer"
            )),
            other => error_reply(&other),
        }
    }

    /// `WAIT numreplicas timeout`: 1 once the slave has acknowledged this
    /// connection's last write, else 0 when `timeout` ms pass (0: wait
    /// until it does, as Redis does).
    fn wait(&self, args: &[Vec<u8>]) -> RespReply {
        let [_replicas, timeout] = args else {
            return wrong_args("wait");
        };
        let Some(timeout_ms) = std::str::from_utf8(timeout)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
        else {
            return RespReply::Error("ERR timeout is not an integer or out of range".into());
        };
        let node = self.shared.node();
        let Node::Master(replicator) = &*node else {
            return RespReply::Integer(0);
        };
        let wait = if timeout_ms == 0 {
            // Redis waits for ever; a connection here waits at most its
            // idle timeout.
            self.shared.config.idle_timeout
        } else {
            Duration::from_millis(timeout_ms)
        };
        let acked = replicator.wait_acked(self.last_write, Instant::now() + wait);
        RespReply::Integer(i64::from(acked >= self.last_write))
    }

    /// `INFO`: the server and replication sections in Redis's field names.
    fn info(&self) -> String {
        let facts = super::info::facts(&self.shared);
        let fact = |name: &str| {
            facts
                .iter()
                .find(|(n, _)| n == name)
                .map_or("", |(_, v)| v.as_str())
        };
        let mut text = format!(
            "# Server\r\nredis_version:7.0.0\r\nduokv_version:{}\r\nredis_mode:standalone\r\n\
             tcp_port:{}\r\n\r\n# Replication\r\n",
            env!("CARGO_PKG_VERSION"),
            self.shared.config.listen.port()
        );
        match &*self.shared.node() {
            Node::Slave { master_addr, .. } => {
                let (host, port) = master_addr.rsplit_once(':').unwrap_or((master_addr, "0"));
                text.push_str(&format!(
                    "role:slave\r\nmaster_host:{host}\r\nmaster_port:{port}\r\n\
                     master_link_status:{}\r\nslave_repl_offset:{}\r\nslave_read_only:1\r\n\
                     connected_slaves:0\r\nmaster_repl_offset:{}\r\n",
                    fact("link"),
                    fact("applied_seq"),
                    fact("visible_seq"),
                ));
            }
            Node::Master(replicator) => {
                let status = replicator.status();
                let (host, port) = status
                    .replica
                    .rsplit_once(':')
                    .unwrap_or((status.replica.as_str(), "0"));
                let state = if status.up { "online" } else { "wait_bgsave" };
                text.push_str(&format!(
                    "role:master\r\nconnected_slaves:{}\r\nslave0:ip={host},port={port},\
                     state={state},offset={},lag={}\r\nmaster_repl_offset:{}\r\n\
                     duokv_slave_lag_ms:{}\r\n",
                    u8::from(status.up),
                    status.acked_seq,
                    fact("lag_ms"),
                    fact("last_seq"),
                    fact("lag_ms"),
                ));
            }
            Node::Standalone => text.push_str(&format!(
                "role:master\r\nconnected_slaves:0\r\nmaster_repl_offset:{}\r\n",
                fact("last_seq")
            )),
        }
        text
    }
}

fn ok() -> RespReply {
    RespReply::Simple("OK".into())
}

fn wrong_args(command: &str) -> RespReply {
    RespReply::Error(format!(
        "ERR wrong number of arguments for '{command}' command"
    ))
}

fn wrong_pass() -> RespReply {
    RespReply::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
}

/// A duokv error reply in RESP: Redis's prefix where there is one.
fn error_reply(response: &Response) -> RespReply {
    let Response::Error { code, message } = response else {
        return RespReply::Error("ERR unexpected reply".into());
    };
    let prefix = match code {
        ErrorCode::NotMaster { .. } => "READONLY",
        ErrorCode::Busy => "BUSY",
        ErrorCode::ReplicaUnavailable => "NOREPLICAS",
        ErrorCode::SwitchingOver => "TRYAGAIN",
        _ => "ERR",
    };
    RespReply::Error(format!("{prefix} {message}"))
}

/// `COMMAND` and its subcommands: no command table (clients work without
/// one), a count of 0.
fn command(args: &[Vec<u8>]) -> RespReply {
    match args.first().map(|a| a.to_ascii_uppercase()) {
        Some(sub) if sub.as_slice() == b"COUNT" => RespReply::Integer(0),
        _ => RespReply::Array(Vec::new()),
    }
}

/// `CONFIG GET name...`: what redis-benchmark asks (`save`, `appendonly`)
/// as duokv's equivalents; anything else is absent. Other subcommands are
/// refused.
fn config(args: &[Vec<u8>]) -> RespReply {
    let [sub, names @ ..] = args else {
        return wrong_args("config");
    };
    if !sub.eq_ignore_ascii_case(b"GET") {
        return RespReply::Error("ERR duokv only answers CONFIG GET".into());
    }
    let mut pairs = Vec::new();
    for name in names {
        let value: &[u8] = match name.to_ascii_lowercase().as_slice() {
            b"save" => b"",
            b"appendonly" => b"yes",
            b"databases" => b"1",
            _ => continue,
        };
        pairs.push(RespReply::Bulk(name.clone()));
        pairs.push(RespReply::Bulk(value.to_vec()));
    }
    RespReply::Array(pairs)
}
