//! PKCE (RFC 7636) with S256, and the random values a login needs (`state`, the verifier).
//!
//! Randomness comes from the operating system through ring's `SystemRandom` (ring is already
//! built for ureq's rustls); a login never falls back to a weaker source: if the OS cannot
//! supply randomness the login fails.

use ring::rand::SecureRandom;

use crate::basics::secret::Secret;
use crate::error::Error;

/// A PKCE pair: the verifier stays here, the challenge goes into the authorization URL.
pub(crate) struct Pkce {
    pub(crate) verifier: Secret,
    pub(crate) challenge: String,
}

impl Pkce {
    /// A fresh pair: a 43-character verifier (32 random bytes, the RFC's recommendation) and
    /// its S256 challenge.
    pub(crate) fn new() -> Result<Pkce, Error> {
        let verifier = random_urlsafe(32)?;
        let challenge = challenge_s256(&verifier);
        Ok(Pkce {
            verifier: Secret::new(verifier),
            challenge,
        })
    }
}

/// `BASE64URL(SHA256(ASCII(verifier)))`, unpadded (RFC 7636 §4.2).
pub(crate) fn challenge_s256(verifier: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    base64url(digest.as_ref())
}

/// `bytes` random bytes from the OS, base64url without padding.
pub(crate) fn random_urlsafe(bytes: usize) -> Result<String, Error> {
    let mut buf = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| Error::LoginAborted {
            reason: "the operating system supplied no random bytes".to_owned(),
        })?;
    Ok(base64url(&buf))
}

/// Base64url (RFC 4648 §5) without padding.
pub(crate) fn base64url(bytes: &[u8]) -> String {
    crate::basics::encoding::base64(bytes)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_the_rfc_7636_appendix_b_example() {
        assert_eq!(
            challenge_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifiers_are_43_unreserved_characters_and_differ() {
        let a = Pkce::new().unwrap();
        let b = Pkce::new().unwrap();
        for p in [&a, &b] {
            let v = p.verifier.secret();
            assert_eq!(v.len(), 43, "{v}");
            assert!(
                v.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
                "{v}"
            );
            assert_eq!(p.challenge, challenge_s256(v));
        }
        assert_ne!(a.verifier.secret(), b.verifier.secret());
    }
}
