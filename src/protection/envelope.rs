//! The sealed session file: a one-line text header that names the format version, the AEAD
//! scheme and the key, then the nonce and the ciphertext in base64, with the header bound to
//! the ciphertext as associated data.
//!
//! ```text
//! credlock-sealed/1 aes-256-gcm keyring:<key id>\n
//! base64(nonce (12 bytes) || ciphertext || tag (16 bytes))\n
//! ```
//!
//! Pure functions of their inputs (the key comes from the caller), so that the format can be
//! tested and fuzzed without a keychain.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// How a sealed file starts; a JSON session never does (it starts with `{`).
pub(crate) const MAGIC: &[u8] = b"credlock-sealed/";
/// The format version this crate writes and reads.
pub(crate) const VERSION: u64 = 1;
/// The one AEAD scheme so far.
pub(crate) const SCHEME: &str = "aes-256-gcm";
/// The one key source so far: a key in the OS keychain, named by its id.
pub(crate) const KEYRING_SOURCE: &str = "keyring";
/// The length of a key, in bytes.
pub(crate) const KEY_LEN: usize = 32;
/// The longest header line accepted (a key id is at most 64 characters).
const MAX_HEADER: usize = 128;

/// The parsed header of a sealed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    /// The key's id in the keychain.
    pub(crate) key_id: String,
}

/// Why the bytes of a sealed file could not be read (never their content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// A header or body that is not of this format: a torn read, or damage.
    Malformed(&'static str),
    /// A format version newer than this crate's.
    NewerVersion(u64),
    /// A scheme or key source this crate does not know (`scheme key-source`).
    UnknownScheme(String),
    /// The ciphertext, the tag or the header does not authenticate with the key.
    DoesNotDecrypt,
}

/// Whether `bytes` are a sealed file (by their first bytes; the rest may still be malformed).
pub(crate) fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Whether `id` is a usable key id: 1 to 64 characters of `[0-9a-z-]`.
pub(crate) fn valid_key_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-')
}

fn header_line(key_id: &str) -> String {
    format!(
        "{}{VERSION} {SCHEME} {KEYRING_SOURCE}:{key_id}\n",
        String::from_utf8_lossy(MAGIC)
    )
}

/// Splits a sealed file into its header line (with its newline, the associated data) and
/// body, and parses the header.
pub(crate) fn parse_header(bytes: &[u8]) -> Result<(Header, &[u8], &[u8]), Unreadable> {
    if !is_sealed(bytes) {
        return Err(Unreadable::Malformed(
            "it does not start with `credlock-sealed/`",
        ));
    }
    let end = bytes
        .iter()
        .take(MAX_HEADER)
        .position(|b| *b == b'\n')
        .ok_or(Unreadable::Malformed("its header line has no end"))?;
    let (line, body) = bytes.split_at(end + 1);
    let text = std::str::from_utf8(&line[MAGIC.len()..end])
        .map_err(|_| Unreadable::Malformed("its header is not text"))?;
    let mut words = text.split(' ');
    let version = words
        .next()
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or(Unreadable::Malformed("its header has no version"))?;
    if version > VERSION {
        return Err(Unreadable::NewerVersion(version));
    }
    if version == 0 {
        return Err(Unreadable::Malformed(
            "sealed format version 0 does not exist",
        ));
    }
    let (Some(scheme), Some(key), None) = (words.next(), words.next(), words.next()) else {
        return Err(Unreadable::Malformed(
            "its header is not `version scheme source:key`",
        ));
    };
    let (source, key_id) = key
        .split_once(':')
        .ok_or(Unreadable::Malformed("its header names no key"))?;
    if scheme != SCHEME || source != KEYRING_SOURCE {
        // Names from the file: only printable ASCII, and short, is quoted back.
        let shown = |s: &str| -> String {
            s.chars()
                .filter(char::is_ascii_graphic)
                .take(32)
                .collect::<String>()
        };
        return Err(Unreadable::UnknownScheme(format!(
            "{} {}",
            shown(scheme),
            shown(source)
        )));
    }
    if !valid_key_id(key_id) {
        return Err(Unreadable::Malformed(
            "its key id is not 1 to 64 of [0-9a-z-]",
        ));
    }
    Ok((
        Header {
            key_id: key_id.to_owned(),
        },
        line,
        body,
    ))
}

/// The AEAD key from its 32 bytes.
pub(crate) fn aead_key(bytes: &[u8; KEY_LEN]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("32 bytes is an AES-256 key"))
}

/// Seals `plaintext` (a session's JSON) with `key`, named `key_id` in the header, under a
/// fresh random nonce.
pub(crate) fn seal(key: &LessSafeKey, key_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, String> {
    debug_assert!(valid_key_id(key_id));
    let mut nonce = [0u8; NONCE_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| "the OS gave no random bytes for a nonce".to_owned())?;
    let header = header_line(key_id);
    let mut sealed = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(header.as_bytes()),
        &mut sealed,
    )
    .map_err(|_| "the session could not be encrypted".to_owned())?;
    let mut body = nonce.to_vec();
    body.extend_from_slice(&sealed);
    let mut out = header.into_bytes();
    out.extend_from_slice(crate::basics::encoding::base64(&body).as_bytes());
    out.push(b'\n');
    Ok(out)
}

/// Opens a sealed file with `key`: the plaintext, or why not.
pub(crate) fn open(key: &LessSafeKey, bytes: &[u8]) -> Result<Vec<u8>, Unreadable> {
    let (_, aad, body) = parse_header(bytes)?;
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    let mut raw = base64_decode(body).ok_or(Unreadable::Malformed("its body is not base64"))?;
    if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(Unreadable::Malformed("its body is too short"));
    }
    let mut ciphertext = raw.split_off(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(&raw)
        .map_err(|_| Unreadable::Malformed("its nonce is not 12 bytes"))?;
    let plaintext = key
        .open_in_place(nonce, Aad::from(aad), &mut ciphertext)
        .map_err(|_| Unreadable::DoesNotDecrypt)?;
    Ok(plaintext.to_vec())
}

/// Standard base64 with padding (RFC 4648 §4), strictly: no whitespace, padding only at the
/// end, unused bits zero; `None` for anything else.
fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    if !input.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let chunks = input.len() / 4;
    for (i, chunk) in input.chunks(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != chunks) {
            return None;
        }
        let mut n = 0u32;
        for c in &chunk[..4 - pad] {
            n = (n << 6) | value(*c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        // Canonical only: bits past the data must be zero, so that no two texts decode to
        // the same bytes (a changed character is never an unchanged file).
        if bytes[3 - pad..].iter().any(|b| *b != 0) {
            return None;
        }
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
pub(crate) fn base64_decode_for_tests(input: &[u8]) -> Option<Vec<u8>> {
    base64_decode(input)
}

/// Seals `plaintext` with the raw `key` under `key_id`: for the fuzz targets and tests.
#[doc(hidden)]
pub fn seal_with_key(
    key: &[u8; KEY_LEN],
    key_id: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, String> {
    if !valid_key_id(key_id) {
        return Err("a key id is 1 to 64 of [0-9a-z-]".to_owned());
    }
    seal(&aead_key(key), key_id, plaintext)
}

/// Opens a sealed file with the raw `key`: for the fuzz targets and tests. The error names
/// what was wrong, never the content.
#[doc(hidden)]
pub fn open_with_key(key: &[u8; KEY_LEN], bytes: &[u8]) -> Result<Vec<u8>, String> {
    open(&aead_key(key), bytes).map_err(|e| format!("{e:?}"))
}
