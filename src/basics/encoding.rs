//! Encodings credlock needs and implements itself: form-urlencoding (RFC 6749 appendix B),
//! base64 (RFC 4648), and JSON errors described without quoting the input.

/// `application/x-www-form-urlencoded` encoding of one name or value.
#[must_use]
pub fn form_urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
    out
}

/// The inverse of [`form_urlencode`]; `None` for a malformed escape or non-UTF-8 result.
#[must_use]
pub fn form_urldecode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Standard base64 with padding (RFC 4648 §4).
#[must_use]
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What a base64 decoder does with a byte outside both alphabets and the padding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strays {
    /// Refuses the input (`None`): a JWT's parts are base64url and nothing else.
    Refuse,
    /// Passes over it: text that may quote a secret in base64, split or wrapped.
    Skip,
}

/// Standard or URL-safe base64 (either alphabet, padding ignored). With [`Strays::Refuse`],
/// `None` for any other byte or a lone trailing character (fewer than 8 bits).
pub(crate) fn base64_decode(input: &str, strays: Strays) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for byte in input.trim_end_matches('=').bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ if strays == Strays::Skip => continue,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).ok()?);
        }
    }
    (strays == Strays::Skip || bits < 6).then_some(out)
}

/// A serde_json error described without quoting the input: serde's own messages can contain
/// a fragment of the document (`invalid type: string "…"`), which may be a token.
#[must_use]
pub fn describe_json_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "valid JSON of the wrong shape",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn basic_credentials_are_form_urlencoded_first() {
        assert_eq!(
            form_urlencode("p@ss:w/rd+%&=?"),
            "p%40ss%3Aw%2Frd%2B%25%26%3D%3F"
        );
        assert_eq!(
            form_urldecode("p%40ss%3Aw%2Frd%2B%25%26%3D%3F").as_deref(),
            Some("p@ss:w/rd+%&=?")
        );
        assert_eq!(form_urldecode("a+b").as_deref(), Some("a b"));
        assert_eq!(form_urldecode("%4"), None);
    }
}
