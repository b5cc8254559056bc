//! Sessions kept on a Redis (or Valkey) server: [`Store::redis`] for one, [`Fleet`] for many
//! (one per user or tenant) sharing one server and its connections.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Backend, Store};
use crate::error::Error;
use crate::redis::{Entry, RedisUrl, Server};

/// Many sessions on one Redis (or Valkey) server, one [`Store`] per key, sharing the server's
/// URL, credentials and connections. Cheap to clone.
///
/// Each session lives in keys of one cluster hash slot, `{credlock:KEY}:session` and
/// `{credlock:KEY}:guard`, and gets the file store's promise: one refresh per expiry across
/// every process and machine that uses it (see `docs/fleet.md`).
///
/// # Examples
/// ```no_run
/// let fleet = credlock::Fleet::redis("redis://:password@10.0.0.5:6379/0")?;
/// let token = fleet.store("tenant-42")?.access_token()?;
/// # Ok::<(), credlock::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Fleet {
    server: Arc<Server>,
}

impl Fleet {
    /// Sessions on the server of `url`, `redis://[user:password@]host:port[/db]` or
    /// `rediss://…`. Without a password in the URL, `REDISCLI_AUTH` gives it. Nothing is
    /// connected until a store needs it.
    ///
    /// # Errors
    /// [`Error::InvalidStoreUrl`] (the URL is never quoted: it may hold a password).
    pub fn redis(url: &str) -> Result<Fleet, Error> {
        Ok(Fleet {
            server: Server::new(RedisUrl::parse(url)?),
        })
    }

    /// The key the URL names (`?key=NAME`), if any.
    #[must_use]
    pub fn url_key(&self) -> Option<&str> {
        self.server.url().key.as_deref()
    }

    /// The store of the session named `key` (a user, a tenant, a profile).
    ///
    /// # Errors
    /// [`Error::InvalidStoreUrl`] if `key` is empty, longer than 200 bytes, or holds a brace,
    /// whitespace or a control character.
    pub fn store(&self, key: &str) -> Result<Store, Error> {
        if !crate::redis::valid_key(key) {
            return Err(Error::InvalidStoreUrl {
                reason: "the key is empty, longer than 200 bytes, or holds a brace, a space or a control character".to_owned(),
            });
        }
        let entry = Entry::new(Arc::clone(&self.server), key);
        let mut store = Store::new(PathBuf::from(entry.location()));
        let guard = PathBuf::from(entry.guard_location());
        store.lock_path = guard.clone();
        store.lease_path = guard;
        store.backend = Backend::Redis(entry);
        Ok(store)
    }

    /// Whether the server persists writes, from `INFO persistence`.
    /// Without persistence, a restart of the server
    /// loses every session (and logs every instance out).
    ///
    /// # Errors
    /// [`Error::StoreUnavailable`], [`Error::StoreRefused`].
    pub fn persistence(&self) -> Result<Persistence, Error> {
        let fields = self.server.persistence()?;
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        Ok(Persistence {
            aof: get("aof_enabled") == Some("1"),
            rdb_saves: get("rdb_saves").and_then(|n| n.parse().ok()).unwrap_or(0),
        })
    }
}

/// How a Redis server keeps what it is given ([`Fleet::persistence`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Persistence {
    /// The append-only file is on: with `appendfsync always`, every save survives a crash.
    pub aof: bool,
    /// RDB snapshots taken since the server started (`rdb_saves`): with snapshots only, a
    /// restart loses what was saved since the last one.
    pub rdb_saves: u64,
}

impl Store {
    /// The store of one session kept on a Redis (or Valkey) server:
    /// `redis://[user:password@]host:port[/db]?key=NAME` (or `rediss://`). Without a password
    /// in the URL, `REDISCLI_AUTH` gives it; it never appears in a message. For many sessions
    /// on one server, use [`Fleet`].
    ///
    /// # Errors
    /// [`Error::InvalidStoreUrl`], also when the URL names no key.
    pub fn redis(url: &str) -> Result<Store, Error> {
        let fleet = Fleet::redis(url)?;
        let key = fleet.url_key().ok_or_else(|| Error::InvalidStoreUrl {
            reason: "it names no session: add ?key=NAME".to_owned(),
        })?;
        fleet.store(key)
    }
}
