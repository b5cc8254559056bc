//! The Redis (and Valkey) side of a store kept on a server: its URL, its connections, and the
//! session's keys with the scripts that change them. The refresh protocol stays in
//! `crate::store`; this layer offers it what the file offers: a read, a fenced guard, a save
//! that is a compare-and-swap, and a compare-and-delete.
//!
//! Layer 5 of 7 in the order `api/module-graph` checks (feature `redis`): it may import
//! `basics`, `session`, `error` and `trace`, and from `wire`, a sibling on its level, the HTTP
//! transport's TLS configuration (`rediss://` trusts what the transport trusts); not `file` or
//! `protection`.
//!
//! One session named NAME lives in two keys of one hash slot (the `{…}` hash tag), so that
//! its scripts run on one node of a Redis Cluster:
//! - `{credlock:NAME}:session`, a hash: `data` (the session's bytes, as a file would hold
//!   them) and `rt` (the SHA-256 of its refresh token, what compare-and-swap and
//!   compare-and-delete compare);
//! - `{credlock:NAME}:guard`, the guard: a random token set with `SET NX PX`, renewed by a
//!   heartbeat while held, removed by its owner only (a script compares the token).
//!
//! - `url.rs`: the URL and its password (never shown);
//! - `conn.rs`: one RESP2 connection with a deadline per command, over TCP or TLS (`rediss://`, with the
//!   roots the HTTP transport trusts);
//! - `guard.rs`: the guard, its heartbeat and its fence.
//!
//! A small client of our own rather than the `redis` crate: the store sends seven commands,
//! and the crate's blocking API would bring a connection manager, a URL parser and a
//! dependency tree for them.

mod conn;
mod guard;
mod url;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::Error;
use conn::{Conn, Failure, Value};
pub(crate) use guard::{Guard, acquire};
pub(crate) use url::valid_key;
// For the fuzz targets, through `credlock::internal`.
pub use conn::{Failure as ReplyFailure, Value as Reply, read_reply};
pub use url::RedisUrl;

/// How long one command may take in all (connect, send, answer, a retry) before the server counts as
/// unreachable. Far below the guard's time-to-live, so a heartbeat that times out once still
/// renews in time.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle connections kept per server.
const POOL_SIZE: usize = 8;

/// A server and its connections, shared by the stores of all its sessions.
#[derive(Debug)]
pub(crate) struct Server {
    url: RedisUrl,
    timeout: Duration,
    idle: Mutex<Vec<Conn>>,
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

impl Server {
    pub(crate) fn new(url: RedisUrl) -> Arc<Server> {
        Arc::new(Server {
            url,
            timeout: COMMAND_TIMEOUT,
            idle: Mutex::new(Vec::new()),
            tls: OnceLock::new(),
        })
    }

    pub(crate) fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// For `rediss://`: the HTTP transport's TLS configuration (the same roots), built once.
    fn tls(&self) -> Result<Option<Arc<rustls::ClientConfig>>, Failure> {
        if !self.url.tls {
            return Ok(None);
        }
        let built = self
            .tls
            .get_or_init(|| crate::wire::http::default_tls_config().map_err(|e| e.to_string()));
        built.clone().map(Some).map_err(Failure::Refused)
    }

    /// Runs `args` on a pooled connection (a new one if none is idle). A connection that
    /// failed is dropped, never reused. A read that fails on a reused connection (one the
    /// server closed while it was idle: a restart, an idle timeout) is tried once more on a
    /// new one; a write is not, since it may have run before the connection broke. One
    /// deadline bounds it all (connecting, the command, the retry).
    fn call(&self, args: &[&[u8]]) -> Result<Value, Failure> {
        let deadline = Instant::now() + self.timeout;
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let reused = idle.is_some();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.connect(deadline)?,
        };
        let mut answered = conn.call(args, deadline);
        let read_only = matches!(args.first(), Some(&(b"GET" | b"HGET" | b"INFO" | b"PING")));
        if reused && read_only && matches!(answered, Err(Failure::Unreachable(_))) {
            conn = self.connect(deadline)?;
            answered = conn.call(args, deadline);
        }
        match answered {
            Err(Failure::Unreachable(reason)) => {
                // The other idle connections likely went the same way (a restart): new ones.
                self.idle
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clear();
                Err(Failure::Unreachable(reason))
            }
            answered => {
                let mut idle = self
                    .idle
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if idle.len() < POOL_SIZE {
                    idle.push(conn);
                }
                answered
            }
        }
    }

    fn connect(&self, deadline: Instant) -> Result<Conn, Failure> {
        Conn::open(&self.url, self.tls()?.as_ref(), deadline)
    }

    /// An error for a failed command that concerns no one session.
    fn error(&self, failure: Failure) -> Error {
        to_error(self.url.location(None), failure)
    }

    /// `INFO persistence`, as `(field, value)` pairs.
    pub(crate) fn persistence(&self) -> Result<Vec<(String, String)>, Error> {
        match self
            .call(&[b"INFO", b"persistence"])
            .map_err(|f| self.error(f))?
        {
            Value::Bytes(text) => Ok(String::from_utf8_lossy(&text)
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
                .collect()),
            _ => Err(self.error(Failure::Refused("INFO answered no text".to_owned()))),
        }
    }
}

/// The scripts. KEYS[1] is the session hash, KEYS[2] the guard.
mod scripts {
    /// ARGV: token, data, rt. Saves only while the guard holds `token`.
    pub(super) const SAVE_GUARDED: &str = "\
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'rt', ARGV[3])
return 1";
    /// ARGV: token, expected rt, data, new rt. Saves only over the session whose refresh
    /// token was sent: whoever holds the guard now, a newer session is never replaced.
    /// 1 saved; 0 the session changed under our guard; -1 the guard is lost and the session
    /// changed.
    pub(super) const SAVE_REPLACING: &str = "\
if redis.call('HGET', KEYS[1], 'rt') == ARGV[2] then
  redis.call('HSET', KEYS[1], 'data', ARGV[3], 'rt', ARGV[4])
  return 1
end
if redis.call('GET', KEYS[2]) == ARGV[1] then return 0 end
return -1";
    /// ARGV: token. Deletes only while the guard holds `token`: 1 deleted, 0 nothing
    /// stored, -1 the guard is lost.
    pub(super) const DELETE_GUARDED: &str = "\
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
return redis.call('DEL', KEYS[1])";
    /// ARGV: rt. Deletes only the session that holds this refresh token.
    pub(super) const DELETE_IF_HOLDS: &str = "\
if redis.call('HGET', KEYS[1], 'rt') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";
    /// KEYS[1] the guard; ARGV: token, ttl ms. Renews only our own guard.
    pub(super) const RENEW: &str = "\
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0";
    /// The fence. KEYS[1] the session, KEYS[2] the guard, KEYS[3] a key that never exists;
    /// ARGV: token, ttl ms. 1 if the guard holds `token`, renewed to its full TTL; else 0.
    /// It also runs every write the refresh that follows will need, harmlessly (the
    /// session's `rt` rewritten with its own value, a delete of nothing), so that an ACL
    /// lacking one of them refuses here, before the refresh token is sent.
    pub(super) const FENCE: &str = "\
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local rt = redis.call('HGET', KEYS[1], 'rt')
if rt then redis.call('HSET', KEYS[1], 'rt', rt) end
redis.call('DEL', KEYS[3])
return 1";
    /// KEYS[1] the guard; ARGV: token. Removes only our own guard.
    pub(super) const RELEASE: &str = "\
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";
}

/// What a guarded write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    Done,
    /// The guard is no longer ours (and, for a compare-and-swap, the session changed).
    GuardLost,
    /// The session changed while the guard was ours: a writer that takes no guard.
    Changed,
}

/// One session's keys on one server.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    server: Arc<Server>,
    name: String,
    session_key: String,
    guard_key: String,
    /// Never written: the fence deletes it to prove the user may delete.
    probe_key: String,
}

impl Entry {
    pub(crate) fn new(server: Arc<Server>, name: &str) -> Entry {
        Entry {
            session_key: format!("{{credlock:{name}}}:session"),
            guard_key: format!("{{credlock:{name}}}:guard"),
            probe_key: format!("{{credlock:{name}}}:fence-probe"),
            name: name.to_owned(),
            server,
        }
    }

    /// The URL naming this session, without the password.
    pub(crate) fn location(&self) -> String {
        self.server.url.location(Some(&self.name))
    }

    /// Where the guard is, for messages.
    pub(crate) fn guard_location(&self) -> String {
        format!(
            "{} (guard {})",
            self.server.url.location(None),
            self.guard_key
        )
    }

    /// An error for a failed command.
    pub(crate) fn error(&self, failure: Failure) -> Error {
        to_error(self.location(), failure)
    }

    /// The stored session's bytes.
    pub(crate) fn read(&self) -> Result<Option<Vec<u8>>, Error> {
        match self
            .server
            .call(&[b"HGET", self.session_key.as_bytes(), b"data"])
            .map_err(|f| self.error(f))?
        {
            Value::Bytes(b) => Ok(Some(b)),
            _ => Ok(None),
        }
    }

    pub(crate) fn eval(&self, script: &str, keys: &[&str], argv: &[&[u8]]) -> Result<i64, Error> {
        let numkeys = keys.len().to_string();
        let mut args: Vec<&[u8]> = vec![b"EVAL", script.as_bytes(), numkeys.as_bytes()];
        args.extend(keys.iter().map(|k| k.as_bytes()));
        args.extend_from_slice(argv);
        match self.server.call(&args).map_err(|f| self.error(f))? {
            Value::Int(n) => Ok(n),
            other => Err(self.error(Failure::Refused(format!(
                "a script answered {other:?} instead of a number"
            )))),
        }
    }

    pub(crate) fn keys(&self) -> [&str; 2] {
        [&self.session_key, &self.guard_key]
    }

    /// Deletes the session only if it holds the refresh token whose fingerprint is `rt`.
    pub(crate) fn delete_if_holds(&self, rt: &str) -> Result<bool, Error> {
        Ok(self.eval(scripts::DELETE_IF_HOLDS, &self.keys(), &[rt.as_bytes()])? == 1)
    }
}

/// The error for a failed command on the store at `location`.
fn to_error(location: String, failure: Failure) -> Error {
    match failure {
        Failure::Unreachable(reason) => Error::StoreUnavailable { location, reason },
        Failure::Refused(reason) => Error::StoreRefused { location, reason },
    }
}

/// Why the guard was not taken.
#[derive(Debug)]
pub(crate) enum GuardFailure {
    Timeout(Duration),
    Error(Error),
}

/// The fingerprint of a refresh token the scripts compare: its SHA-256, in hex (the token
/// itself never reaches the server outside the session's bytes).
pub(crate) fn fingerprint(refresh_token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, refresh_token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Redis Cluster hashes only what is inside the first `{…}`: both keys of a session
    /// carry the same tag, so its scripts touch one slot.
    #[test]
    fn the_keys_of_one_session_share_one_hash_tag() {
        let url = RedisUrl::parse("redis://127.0.0.1:1/0").expect("url");
        let entry = Entry::new(Server::new(url), "tenant:7");
        let tag = |k: &str| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_owned();
        assert_eq!(tag(&entry.session_key), "{credlock:tenant:7}");
        assert_eq!(tag(&entry.guard_key), tag(&entry.session_key));
    }

    #[test]
    fn a_fingerprint_is_the_sha256_of_the_refresh_token_in_hex() {
        assert_eq!(
            fingerprint("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
