//! `credlock git-credential get|store|erase`: a git credential helper
//! (`credential.helper = !credlock --profile X git-credential`), per gitcredentials(7).

use std::time::UNIX_EPOCH;

use crate::obtain;
use crate::{Global, Outcome};

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
}

/// One credential request: the `key=value` lines git writes, up to a blank line.
struct Request {
    protocol: Option<String>,
    host: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl Request {
    fn parse(text: &str) -> Request {
        let mut r = Request {
            protocol: None,
            host: None,
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
                "username" => &mut r.username,
                "password" => &mut r.password,
                _ => continue,
            };
            *slot = Some(value.to_owned());
        }
        r
    }

    /// Plain http to anything but this machine would put the token on the wire in clear;
    /// credlock sends credentials only over https or to loopback (as the library does).
    fn is_cleartext_to_remote(&self) -> bool {
        let host = self.host.as_deref().unwrap_or_default();
        let host = match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        self.protocol.as_deref() == Some("http")
            && !matches!(host, "localhost" | "127.0.0.1" | "[::1]")
    }
}

/// `credlock git-credential OPERATION`
pub fn run(g: &Global, args: &GitCredentialArgs) -> Outcome {
    let request = Request::parse(&obtain::read_stdin("the credential request")?);
    match args.operation.as_str() {
        "get" => get(g, args, &request),
        "erase" => erase(g, &request),
        // `store` after a successful use: the session is credlock's, nothing to keep.
        _ => Ok(0),
    }
}

fn get(g: &Global, args: &GitCredentialArgs, request: &Request) -> Outcome {
    if request.is_cleartext_to_remote() {
        eprintln!(
            "credlock: not answering for http://{} (credentials go only over https or to loopback)",
            request.host.as_deref().unwrap_or_default()
        );
        return Ok(0);
    }
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
    fn cleartext_is_refused_except_to_loopback() {
        let req = |p: &str, h: &str| Request::parse(&format!("protocol={p}\nhost={h}\n"));
        assert!(req("http", "git.example.com").is_cleartext_to_remote());
        assert!(!req("http", "127.0.0.1:8080").is_cleartext_to_remote());
        assert!(!req("http", "localhost").is_cleartext_to_remote());
        assert!(!req("https", "git.example.com").is_cleartext_to_remote());
    }
}
