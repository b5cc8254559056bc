//! `credlock git-credential get|store|erase`: a git credential helper
//! (`credential.https://HOST.helper = !credlock --profile X git-credential --host HOST`), per
//! gitcredentials(7).
//!
//! The helper answers only the hosts or URL prefixes it is given, over https, and nothing
//! without them: a helper configured for every host (`credential.helper`) would otherwise
//! hand the token to any server a user clones from, and let any server's 401 force a refresh.

use std::time::UNIX_EPOCH;

use crate::obtain;
use crate::{Failure, Global, Outcome};

/// Arguments of `credlock git-credential`.
#[derive(Debug, Clone, clap::Args)]
pub struct GitCredentialArgs {
    /// The operation git asks for: get, store or erase (others are ignored, as the protocol
    /// requires).
    pub operation: String,
    /// The username to answer when git does not name one (GitLab wants `oauth2`; GitHub and
    /// most servers accept any).
    #[arg(long, default_value = "oauth2")]
    pub username: String,
    /// Answer for this host (`git.example.com`, or `host:port`), over https only; repeatable.
    /// Without --host or --url-prefix the helper answers no host.
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Answer for URLs under this prefix (`https://git.example.com/team/`, whole path segments;
    /// a path with `..`, `..;`, `%`, `\` or `//` gets nothing); repeatable. A prefix with a
    /// path needs git's `credential.useHttpPath=true`, or git sends no path and the prefix
    /// matches nothing.
    // Checked in `run`, not by clap, whose error would echo a password in the URL.
    #[arg(long = "url-prefix", value_name = "URL")]
    pub url_prefixes: Vec<String>,
}

/// One host (and path prefix) the helper answers for, over https.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Lower case, with its port unless it is 443.
    host: String,
    /// Without leading or trailing `/`; empty for the whole host.
    path: String,
}

impl Scope {
    fn parse_host(text: &str) -> Result<Scope, String> {
        Ok(Scope {
            host: normal_host(text).ok_or_else(|| {
                "--host wants a host name, with a port if not 443 (git.example.com, \
                 git.example.com:8443); for a URL use --url-prefix"
                    .to_owned()
            })?,
            path: String::new(),
        })
    }

    fn parse_url_prefix(text: &str) -> Result<Scope, String> {
        let bad = || {
            "--url-prefix wants an https URL without user information, query or fragment \
             (https://git.example.com/team/)"
                .to_owned()
        };
        let rest = text
            .get(..8)
            .filter(|s| s.eq_ignore_ascii_case("https://"))
            .map(|_| &text[8..])
            .ok_or_else(bad)?;
        if rest.contains(['?', '#']) {
            return Err(bad());
        }
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        Ok(Scope {
            host: normal_host(host).ok_or_else(bad)?,
            path: path.trim_matches('/').to_owned(),
        })
    }

    /// Whether an https request for `host` (as git sends it, `name[:port]`) and `path` (sent
    /// only with `credential.useHttpPath`) is in this scope.
    fn covers(&self, host: &str, path: Option<&str>) -> bool {
        if normal_host(host).as_deref() != Some(self.host.as_str()) {
            return false;
        }
        if self.path.is_empty() {
            return true;
        }
        let Some(path) = path.map(|p| p.trim_start_matches('/')) else {
            return false;
        };
        // `team/../other` starts with `team/` but names another place once resolved, and so
        // do the spellings servers normalise before resolving: Tomcat and Spring drop a
        // `;params` suffix (`..;`), decode `%2e`, treat `\` as `/`, and some collapse `//`.
        if path.contains(['%', '\\']) {
            return false;
        }
        let inner = path.strip_suffix('/').unwrap_or(path);
        if inner.split('/').any(|segment| {
            matches!(segment, "" | "." | "..")
                || segment.starts_with("..;")
                || segment.starts_with(".;")
        }) {
            return false;
        }
        path == self.path
            || path
                .strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// `host[:port]` in lower case, without a default `:443`; `None` for anything that is not a
/// bare host (a scheme, user information, a path, an empty name or port).
fn normal_host(text: &str) -> Option<String> {
    let text = text.trim().to_ascii_lowercase();
    if text.is_empty() || text.contains(['/', '@', '?', '#', ' ']) {
        return None;
    }
    let (name, port) = if text.starts_with('[') {
        let end = text.find(']')?;
        let rest = &text[end + 1..];
        let port = if rest.is_empty() {
            None
        } else {
            Some(rest.strip_prefix(':')?)
        };
        (&text[..=end], port)
    } else {
        match text.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (text.as_str(), None),
        }
    };
    if name.is_empty() || name == "[]" {
        return None;
    }
    match port {
        None | Some("443") => Some(name.to_owned()),
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(format!("{name}:{p}"))
        }
        Some(_) => None,
    }
}

/// One credential request: the `key=value` lines git writes, up to a blank line.
struct Request {
    protocol: Option<String>,
    host: Option<String>,
    path: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl Request {
    fn parse(text: &str) -> Request {
        let mut r = Request {
            protocol: None,
            host: None,
            path: None,
            username: None,
            password: None,
        };
        for line in text.lines().take_while(|l| !l.is_empty()) {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let slot = match key {
                "protocol" => &mut r.protocol,
                "host" => &mut r.host,
                "path" => &mut r.path,
                "username" => &mut r.username,
                "password" => &mut r.password,
                _ => continue,
            };
            *slot = Some(value.to_owned());
        }
        r
    }

    /// Whether the helper was told to answer for this request: https, and a named host or
    /// URL prefix. A request without a protocol or host is in no scope.
    fn in_scope(&self, scopes: &[Scope]) -> bool {
        let (Some("https"), Some(host)) = (self.protocol.as_deref(), self.host.as_deref()) else {
            return false;
        };
        scopes
            .iter()
            .any(|scope| scope.covers(host, self.path.as_deref()))
    }
}

/// `credlock git-credential OPERATION`
pub fn run(g: &Global, args: &GitCredentialArgs) -> Outcome {
    let scopes = args
        .hosts
        .iter()
        .map(|h| Scope::parse_host(h))
        .chain(args.url_prefixes.iter().map(|u| Scope::parse_url_prefix(u)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::Usage)?;
    let request = Request::parse(&obtain::read_stdin("the credential request")?);
    let answered = matches!(args.operation.as_str(), "get" | "erase");
    if answered && scopes.is_empty() {
        eprintln!(
            "credlock: git-credential answers no host until told which: add --host HOST (or \
             --url-prefix https://HOST/PATH/) to the helper command"
        );
        return Ok(0);
    }
    if answered && !request.in_scope(&scopes) {
        if g.verbose {
            eprintln!(
                "credlock: not answering for {}://{} (not a --host or --url-prefix of this helper)",
                request.protocol.as_deref().unwrap_or("?"),
                request.host.as_deref().unwrap_or_default()
            );
        }
        return Ok(0);
    }
    match args.operation.as_str() {
        "get" => get(g, args, &request),
        "erase" => erase(g, &request),
        // `store` after a successful use: the session is credlock's, nothing to keep.
        _ => Ok(0),
    }
}

fn get(g: &Global, args: &GitCredentialArgs, request: &Request) -> Outcome {
    let got = obtain::token(g, None)?;
    let username = request.username.as_deref().unwrap_or(&args.username);
    outln!("username={username}")?;
    outln!("password={}", got.token.secret())?;
    if let Some(expiry) = got.expires_at {
        // git drops a credential past this time instead of sending it (git 2.41+).
        let secs = expiry.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        outln!("password_expiry_utc={secs}")?;
    }
    Ok(0)
}

/// git says the password was rejected (401): refresh, unless the store no longer holds that
/// token (another process already refreshed, or it was never credlock's).
fn erase(g: &Global, request: &Request) -> Outcome {
    let Some(rejected) = request.password.as_deref().filter(|p| !p.is_empty()) else {
        return Ok(0);
    };
    if obtain::override_active() {
        return Ok(0);
    }
    g.store().access_token_after_rejection(rejected)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_keys_before_the_blank_line_count() {
        let r = Request::parse("protocol=https\nhost=h:8443\nwwwauth[]=Basic\n\npassword=late\n");
        assert_eq!(r.protocol.as_deref(), Some("https"));
        assert_eq!(r.host.as_deref(), Some("h:8443"));
        assert_eq!(r.password, None);
    }

    #[test]
    fn hosts_are_compared_in_lower_case_with_443_as_the_default_port() {
        let host = |t: &str| Scope::parse_host(t).map(|s| s.host);
        assert_eq!(host("Git.Example.com").as_deref(), Ok("git.example.com"));
        assert_eq!(
            host("git.example.com:443").as_deref(),
            Ok("git.example.com")
        );
        assert_eq!(host("127.0.0.1:8443").as_deref(), Ok("127.0.0.1:8443"));
        assert_eq!(host("[::1]:8443").as_deref(), Ok("[::1]:8443"));
        assert_eq!(host("[::1]").as_deref(), Ok("[::1]"));
        for bad in ["", "h:", "h:x", "::1", "https://h", "u@h", "h/p", ":443"] {
            assert!(host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_request_without_protocol_or_host_is_in_no_scope() {
        let scopes = [Scope::parse_host("git.example.com").expect("host")];
        let req = |t: &str| Request::parse(t).in_scope(&scopes);
        assert!(req("protocol=https\nhost=git.example.com\n"));
        assert!(!req("host=git.example.com\n"));
        assert!(!req("protocol=https\n"));
        assert!(!req("protocol=HTTPS\nhost=git.example.com\n"));
    }

    #[test]
    fn a_url_prefix_covers_whole_path_segments_and_no_dot_segments() {
        let prefix = [Scope::parse_url_prefix("https://git.example.com/team/").expect("url")];
        let under = |path: &str| {
            Request::parse(&format!(
                "protocol=https\nhost=git.example.com\npath={path}\n"
            ))
            .in_scope(&prefix)
        };
        assert!(under("team/app.git"));
        assert!(under("team"));
        assert!(!under("team/../other/app.git"));
        assert!(!under("team/./app.git"));
        assert!(!under("teams/app.git"));
    }

    #[test]
    fn a_url_prefix_covers_no_path_a_server_could_normalise_out_of_it() {
        // Tomcat and Spring drop `;params` and decode `%2e` before resolving dot segments,
        // so each of these can name a repository outside `team/`.
        let prefix = [Scope::parse_url_prefix("https://git.example.com/team/").expect("url")];
        let under = |path: &str| {
            Request::parse(&format!(
                "protocol=https\nhost=git.example.com\npath={path}\n"
            ))
            .in_scope(&prefix)
        };
        assert!(under("team/app.git/"));
        for path in [
            "team/..;/other/app.git",
            "team/.;/app.git",
            "team/..;jsessionid=1/other/app.git",
            "team/%2e%2e/other/app.git",
            "team/%2E%2E/other/app.git",
            "team/app%2egit",
            "team/..\\other/app.git",
            "team//app.git",
            "team/app.git//x",
        ] {
            assert!(!under(path), "{path} is answered");
        }
    }
}
