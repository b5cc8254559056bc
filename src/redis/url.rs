//! `redis://[user:password@]host:port[/db][?key=NAME]` (and `rediss://`): parsed once; the
//! password is kept out of every `Debug`, `Display` and error.

use crate::basics::secret::Secret;
use crate::error::Error;

/// The default port of `redis-server`.
const DEFAULT_PORT: u16 = 6379;

/// A session key may not hold a brace (it would break the `{…}` hash tag that keeps one
/// session's keys in one cluster slot), whitespace or a control character.
pub(crate) fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 200
        && key
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '{' && c != '}')
}

/// A parsed Redis URL.
#[derive(Clone)]
pub struct RedisUrl {
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) db: u32,
    pub(crate) user: Option<String>,
    password: Option<Secret>,
    pub(crate) key: Option<String>,
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.location(self.key.as_deref()))
    }
}

impl RedisUrl {
    /// Parses `url`; without a password in it, `REDISCLI_AUTH` (as `redis-cli` reads it)
    /// gives one. Errors never quote the URL (it may carry a password).
    pub fn parse(url: &str) -> Result<RedisUrl, Error> {
        let bad = |reason: &str| Error::InvalidStoreUrl {
            reason: reason.to_owned(),
        };
        // A scheme is read whatever its case; Valkey's are Redis's.
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("it does not start with redis:// or rediss://"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "redis" | "valkey" => false,
            "rediss" | "valkeys" => true,
            _ => return Err(bad("it does not start with redis:// or rediss://")),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, p),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (u, p) = match info.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (info, None),
                };
                let user = percent_decode(u)
                    .ok_or_else(|| bad("the user name is not valid percent-encoding"))?;
                let password = match p {
                    Some(p) => Some(
                        percent_decode(p)
                            .ok_or_else(|| bad("the password is not valid percent-encoding"))?,
                    ),
                    None => None,
                };
                (
                    (!user.is_empty()).then_some(user),
                    password.filter(|p| !p.is_empty()),
                )
            }
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address without its closing bracket"))?;
            (h.to_owned(), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (hostport.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("it names no host"));
        }
        let port = match port {
            None | Some("") => DEFAULT_PORT,
            Some(p) => p.parse().map_err(|_| bad("the port is not a number"))?,
        };
        let db = match path.trim_end_matches('/') {
            "" => 0,
            d => d
                .parse()
                .map_err(|_| bad("the path is not a database number"))?,
        };
        let mut key = None;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("key", v)) => {
                    let v = percent_decode(v)
                        .ok_or_else(|| bad("the key is not valid percent-encoding"))?;
                    if !valid_key(&v) {
                        return Err(bad(
                            "the key is empty, longer than 200 bytes, or holds a brace, a space or a control character",
                        ));
                    }
                    key = Some(v);
                }
                _ => return Err(bad("the only query parameter understood is key=NAME")),
            }
        }
        let password = password.or_else(|| {
            std::env::var("REDISCLI_AUTH")
                .ok()
                .filter(|p| !p.is_empty())
        });
        Ok(RedisUrl {
            tls,
            host,
            port,
            db,
            user,
            password: password.map(Secret::new),
            key,
        })
    }

    /// The password, for `AUTH` only.
    pub fn password(&self) -> Option<&str> {
        self.password.as_ref().map(Secret::secret)
    }

    /// The URL without its password, naming `key`: what messages and events show.
    pub fn location(&self, key: Option<&str>) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let user = self
            .user
            .as_ref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let key = key.map(|k| format!("?key={k}")).unwrap_or_default();
        format!("{scheme}://{user}{host}:{}/{}{key}", self.port, self.db)
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_of_the_url_is_read_and_the_location_shows_no_password() {
        let u = RedisUrl::parse("redis://app:s%40cret-pw@127.0.0.1:7000/3?key=tenant-1").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.db), ("127.0.0.1", 7000, 3));
        assert_eq!(u.user.as_deref(), Some("app"));
        assert_eq!(u.password(), Some("s@cret-pw"));
        assert_eq!(u.key.as_deref(), Some("tenant-1"));
        let shown = format!("{u:?} {}", u.location(Some("k")));
        assert!(!shown.contains("cret"), "{shown}");
        assert_eq!(u.location(None), "redis://app@127.0.0.1:7000/3");
        let u = RedisUrl::parse("rediss://:pw@[::1]/").unwrap();
        assert!(u.tls);
        assert_eq!((u.host.as_str(), u.port, u.db), ("::1", 6379, 0));
        assert_eq!(u.user, None);
        for (url, tls) in [
            ("REDIS://h", false),
            ("valkey://h", false),
            ("ValKeyS://h", true),
        ] {
            assert_eq!(RedisUrl::parse(url).expect(url).tls, tls, "{url}");
        }
    }

    #[test]
    fn a_bad_url_is_refused_without_being_quoted() {
        for bad in [
            "http://h",
            "redis://:pw-zz@/0",
            "redis://:pw-zz@h:port",
            "redis://:pw-zz@h/x",
            "redis://:pw-zz@h?key={a}",
            "redis://:pw-zz@h?key=",
            "redis://:pw-zz@h?db=1",
        ] {
            let e = RedisUrl::parse(bad).expect_err(bad);
            assert!(matches!(e, Error::InvalidStoreUrl { .. }), "{e:?}");
            assert!(!format!("{e} {e:?}").contains("pw-zz"), "{e}");
        }
    }
}
