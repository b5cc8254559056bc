//! A string that must never be printed: tokens and client secrets; and a URL as it may be
//! printed, without the password its user information may hold.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret string: an access token, a refresh token or a client secret.
///
/// Its `Debug` prints `Secret([redacted])` and it has no `Display`, so a secret cannot reach a
/// log line, an error message or a panic by accident. Read the value with [`Secret::secret`]
/// where it is really needed (an `Authorization` header, a request body).
///
/// Equality compares the values; it is what the refresh protocol uses to tell a rotated refresh
/// token from the one that failed.
///
/// `Secret` implements `Serialize` (the session file needs the value): a struct of yours that
/// holds one and is serialised, to a log for instance, carries the value. The memory is not
/// zeroed on drop.
///
/// # Examples
/// ```
/// let token = credlock::Secret::new("s3cr3t");
/// assert_eq!(format!("{token:?}"), "Secret([redacted])");
/// assert_eq!(token.secret(), "s3cr3t");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value. Every call site is a place where the secret leaves its wrapper.
    #[must_use]
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// What stands in for a server's text that quotes a secret the request carried, wherever it
/// would be shown (an OAuth error's description, in brackets its code, a transport error's
/// message): one wording everywhere, so that a user sees that something was withheld, and why.
pub(crate) const ECHO_WITHHELD: &str = "details withheld: they quote a secret that was sent";

/// Recognises an echo of secrets a request carried, in the text of a response.
///
/// A server may quote what it received in `error_description` or even in `error`, and not
/// always verbatim: form- or percent-encoded (either case of hex digits), inside the base64 of
/// a Basic header, as base64url or hex, with JSON `\u` or HTML escapes, case-folded, split by
/// invisible characters, or cut short. The guard decodes the text every way it knows, then
/// looks for any run of [`EchoGuard::RUN`] characters of any secret (or of its encodings);
/// a secret shorter than that must appear whole. A false alarm only costs a description.
#[derive(Default)]
pub(crate) struct EchoGuard {
    runs: std::collections::HashSet<String>,
    short: Vec<String>,
}

impl std::fmt::Debug for EchoGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EchoGuard([redacted])")
    }
}

impl EchoGuard {
    /// The length of a run of a secret that counts as an echo.
    pub(crate) const RUN: usize = 8;

    /// A guard for `secrets` (empty ones are ignored).
    pub(crate) fn new(secrets: &[&str]) -> EchoGuard {
        let mut guard = EchoGuard::default();
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            for form in encodings(secret) {
                for form in [normalise(&form), squeeze(&normalise(&form))] {
                    let chars: Vec<char> = form.chars().collect();
                    if chars.is_empty() {
                        continue;
                    }
                    if chars.len() < Self::RUN {
                        guard.short.push(form);
                    } else {
                        guard
                            .runs
                            .extend(chars.windows(Self::RUN).map(|w| w.iter().collect()));
                    }
                }
            }
        }
        guard
    }

    /// Whether `text`, decoded any way the guard knows, contains a run of a secret.
    pub(crate) fn echoes(&self, text: &str) -> bool {
        if self.runs.is_empty() && self.short.is_empty() {
            return false;
        }
        decodings(text).iter().any(|t| {
            let t = normalise(t);
            [squeeze(&t), t].iter().any(|t| self.contains_run(t))
        })
    }

    fn contains_run(&self, text: &str) -> bool {
        if self.short.iter().any(|s| text.contains(s.as_str())) {
            return true;
        }
        let chars: Vec<char> = text.chars().collect();
        let mut window = String::new();
        chars.windows(Self::RUN).any(|w| {
            window.clear();
            window.extend(w);
            self.runs.contains(&window)
        })
    }
}

/// The forms a secret may take on the wire or in a server's echo of it.
fn encodings(secret: &str) -> Vec<String> {
    let form = crate::basics::encoding::form_urlencode(secret);
    let b64 = crate::basics::encoding::base64(secret.as_bytes());
    vec![
        secret.to_owned(),
        form.replace('+', "%20"),
        form,
        b64.replace('+', "-").replace('/', "_"),
        b64,
        secret.bytes().map(|b| format!("{b:02x}")).collect(),
    ]
}

/// Lowercase, for case-folded echoes and either case of hex escapes.
fn normalise(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// Only the ASCII letters, digits and punctuation: what is left when a server splits an echo
/// with spaces, control or zero-width characters.
fn squeeze(s: &str) -> String {
    s.chars().filter(char::is_ascii_graphic).collect()
}

/// Upper bound on the decoded variants of one text, so a crafted body cannot make this slow.
const MAX_DECODINGS: usize = 64;

/// `text` and what it decodes to: percent (with `+` kept or as a space), JSON `\u`, HTML
/// entities, three rounds deep; then base64 (both alphabets, every alignment) and hex runs of
/// each of those.
fn decodings(text: &str) -> Vec<String> {
    let mut all = vec![text.to_owned()];
    let mut frontier = vec![text.to_owned()];
    for _ in 0..3 {
        let mut next = Vec::new();
        for t in &frontier {
            for d in [
                percent_decode(t, false),
                percent_decode(t, true),
                json_unescape(t),
                html_unescape(t),
            ] {
                if all.len() + next.len() < MAX_DECODINGS && !all.contains(&d) && !next.contains(&d)
                {
                    next.push(d);
                }
            }
        }
        all.extend(next.iter().cloned());
        frontier = next;
    }
    let mut binary = Vec::new();
    for t in &all {
        binary.extend(base64_runs(t));
        binary.extend(hex_runs(t));
    }
    all.extend(binary);
    all
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `\uXXXX`, `\/`, `\\` and `\"` as JSON writes them, found inside already-decoded text.
fn json_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let code = after
            .strip_prefix(['u', 'U'])
            .and_then(|h| h.get(..4))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32);
        if let Some(c) = code {
            out.push(c);
            rest = &after[5..];
        } else if let Some(c) = after
            .chars()
            .next()
            .filter(|c| matches!(c, '/' | '\\' | '"'))
        {
            out.push(c);
            rest = &after[1..];
        } else {
            out.push('\\');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// `&#NN;`, `&#xHH;` and the named entities a server would use on URL characters.
fn html_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let entity = after.find(';').filter(|&end| end <= 10).and_then(|end| {
            let name = &after[..end];
            let c = if let Some(hex) = name
                .strip_prefix(['#'])
                .and_then(|n| n.strip_prefix(['x', 'X']))
            {
                u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
            } else if let Some(dec) = name.strip_prefix('#') {
                dec.parse::<u32>().ok().and_then(char::from_u32)
            } else {
                match name.to_ascii_lowercase().as_str() {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    "plus" => Some('+'),
                    "sol" => Some('/'),
                    "equals" => Some('='),
                    "percnt" => Some('%'),
                    _ => None,
                }
            };
            c.map(|c| (c, end))
        });
        if let Some((c, end)) = entity {
            out.push(c);
            rest = &after[end + 1..];
        } else {
            out.push('&');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Every run of base64 characters (either alphabet) of at least six, decoded at each of the
/// four alignments, as lossy UTF-8.
fn base64_runs(s: &str) -> Vec<String> {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '-' | '_');
    let mut out = Vec::new();
    for run in s.split(|c: char| !is_b64(c)).filter(|r| r.len() >= 6) {
        for skip in 0..4 {
            if let Some(part) = run.get(skip..) {
                out.push(String::from_utf8_lossy(&base64_decode(part)).into_owned());
            }
        }
    }
    out
}

/// Standard or URL-safe base64, padding and stray characters skipped.
pub(crate) fn base64_decode(s: &str) -> Vec<u8> {
    crate::basics::encoding::base64_decode(s, crate::basics::encoding::Strays::Skip)
        .unwrap_or_default()
}

/// Every run of hex digits of at least eight, decoded at both alignments, as lossy UTF-8.
fn hex_runs(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    for run in s
        .split(|c: char| !c.is_ascii_hexdigit())
        .filter(|r| r.len() >= 8)
    {
        for skip in 0..2 {
            let bytes: Vec<u8> = run.as_bytes()[skip..]
                .chunks_exact(2)
                .filter_map(|p| std::str::from_utf8(p).ok())
                .filter_map(|p| u8::from_str_radix(p, 16).ok())
                .collect();
            out.push(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    out
}

/// A URL (an endpoint, an issuer, a proxy) as shown in an error or a log: at most 200
/// characters, without user information (which may hold a password).
///
/// Everything before the URL's **last** `@` after the scheme counts as user information,
/// even where it holds a `?`, `#` or `/`: a password typed unencoded may hold any of them
/// (`https://user:pa?ss@idp/token`), and when in doubt, redact. A query with an `@`
/// (`?login_hint=a@b`) is hidden with it, which costs a less helpful message, never a
/// secret. Only the scheme, if one is recognisable before it, is kept (also for malformed
/// URLs such as `https:/me:pw@host` or no scheme at all).
pub(crate) fn display_url(url: &str) -> String {
    let shown = match url.rfind('@') {
        Some(at) => {
            let kept = url
                .find("://")
                .map(|i| i + 3)
                .or_else(|| url.find(':').map(|i| i + 1))
                .filter(|&end| end <= at)
                .unwrap_or(0);
            format!("{}[redacted]@{}", &url[..kept], &url[at + 1..])
        }
        None => url.to_owned(),
    };
    shown.chars().take(200).collect()
}

#[cfg(test)]
mod tests;
