//! Who a session belongs to, as its ID token says, without verifying it: for display only.

use serde_json::{Map, Value};

/// The longest ID token whose claims are decoded: a JWT larger than this is not one a login
/// returned, and is not decoded at all.
const MAX_ID_TOKEN_BYTES: usize = 64 * 1024;

/// The longest claim value kept.
const MAX_CLAIM_BYTES: usize = 512;

/// The claims of a session's ID token that say which account it is, read **without verifying**
/// the token (its signature, `aud`, `exp` and `nonce` are not checked): fit to show a user
/// which account a profile is logged into, never to decide what that account may do.
///
/// Holds no secret (the token itself is not kept), so `Debug` shows every claim.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct UnverifiedClaims {
    /// `sub`: the account's identifier at the issuer.
    pub sub: Option<String>,
    /// `email`.
    pub email: Option<String>,
    /// `preferred_username`.
    pub preferred_username: Option<String>,
    /// `name`.
    pub name: Option<String>,
    /// `iss`: the issuer that says it signed the token.
    pub iss: Option<String>,
}

impl UnverifiedClaims {
    /// The name a user knows the account by: `email`, else `preferred_username`, else `sub`.
    #[must_use]
    pub fn account(&self) -> Option<&str> {
        self.email
            .as_deref()
            .or(self.preferred_username.as_deref())
            .or(self.sub.as_deref())
    }

    /// Decodes the payload of a compact JWS (`header.payload.signature`); `None` if `jwt` is
    /// not one, or its payload is not a JSON object, or it names none of the claims.
    pub(crate) fn decode(jwt: &str) -> Option<UnverifiedClaims> {
        if jwt.len() > MAX_ID_TOKEN_BYTES {
            return None;
        }
        let object = jwt_payload(jwt)?;
        // A claim is shown on terminals: one holding a control character (an escape sequence
        // that could rewrite the screen) or of unreasonable length is left out.
        let text = |name: &str| {
            object
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && s.len() <= MAX_CLAIM_BYTES)
                .filter(|s| !s.chars().any(char::is_control))
                .map(str::to_owned)
        };
        let claims = UnverifiedClaims {
            sub: text("sub"),
            email: text("email"),
            preferred_username: text("preferred_username"),
            name: text("name"),
            iss: text("iss"),
        };
        (claims != UnverifiedClaims::default()).then_some(claims)
    }
}

/// base64url without padding (RFC 7515 §2); padding and the standard alphabet are
/// tolerated. `None` on any other byte.
fn base64url_decode(input: &str) -> Option<Vec<u8>> {
    crate::basics::encoding::base64_decode(input, crate::basics::encoding::Strays::Refuse)
}

/// The payload of a compact JWS (`header.payload.signature`) as a JSON object, read without
/// checking its signature; `None` if `jwt` is not one. Its size is the caller's to bound:
/// the claims shown refuse a token over 64 KiB, the login's nonce check reads whatever the
/// token endpoint's body limit let through (large group claims can pass 64 KiB).
pub(crate) fn jwt_payload(jwt: &str) -> Option<Map<String, Value>> {
    let mut parts = jwt.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    serde_json::from_slice(&base64url_decode(payload)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(json: &str) -> String {
        crate::basics::encoding::base64(json.as_bytes())
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_")
    }

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.c2lnbmF0dXJl",
            encode(r#"{"alg":"RS256"}"#),
            encode(payload)
        )
    }

    #[test]
    fn the_account_claims_are_read_from_the_payload_without_a_signature_check() {
        let claims = UnverifiedClaims::decode(&jwt(
            r#"{"sub":"248289761001","email":"jane@example.com","iss":"https://id.example","aud":"x","exp":1}"#,
        ))
        .expect("claims");
        assert_eq!(claims.sub.as_deref(), Some("248289761001"));
        assert_eq!(claims.email.as_deref(), Some("jane@example.com"));
        assert_eq!(claims.iss.as_deref(), Some("https://id.example"));
        assert_eq!(claims.preferred_username, None);
        assert_eq!(claims.account(), Some("jane@example.com"));
    }

    #[test]
    fn the_account_falls_back_to_the_preferred_username_then_the_subject() {
        let named = UnverifiedClaims::decode(&jwt(r#"{"sub":"1","preferred_username":"jane"}"#));
        assert_eq!(named.unwrap().account(), Some("jane"));
        let bare = UnverifiedClaims::decode(&jwt(r#"{"sub":"1"}"#));
        assert_eq!(bare.unwrap().account(), Some("1"));
    }

    #[test]
    fn a_malformed_id_token_gives_no_claims_and_never_panics() {
        for bad in [
            String::new(),
            "not-a-jwt".to_owned(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            "e30.!!!.sig".to_owned(),
            format!("e30.{}.sig", encode("[1,2]")),
            format!("e30.{}.sig", encode("{\"sub\":")),
            format!("e30.{}.sig", encode(r#"{"sub":7,"aud":"x"}"#)),
            format!("e30.{}.sig", encode(r#"{"aud":"x"}"#)),
            "e30.A.sig".to_owned(),
            "e30.\u{e9}\u{e9}.sig".to_owned(),
            format!("e30.{}.sig", "A".repeat(MAX_ID_TOKEN_BYTES)),
        ] {
            assert_eq!(UnverifiedClaims::decode(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_claim_with_a_control_character_or_of_unreasonable_length_is_left_out() {
        let long = "x".repeat(MAX_CLAIM_BYTES + 1);
        let payload = serde_json::json!({
            "sub": "u-1",
            "email": "jane@example.com\u{1b}[2J",
            "name": long,
        });
        let claims = UnverifiedClaims::decode(&jwt(&payload.to_string())).expect("claims");
        assert_eq!(claims.sub.as_deref(), Some("u-1"));
        assert_eq!(claims.email, None);
        assert_eq!(claims.name, None);
    }

    #[test]
    fn base64url_decoding_matches_the_standard_alphabet_and_its_url_safe_twin() {
        assert_eq!(base64url_decode("aGk").unwrap(), b"hi");
        assert_eq!(base64url_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64url_decode("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(base64url_decode("+/8").unwrap(), [0xfb, 0xff]);
        assert_eq!(base64url_decode("").unwrap(), b"");
    }
}
