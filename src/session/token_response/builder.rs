//! A [`TokenResponse`] built from its fields, for a token response that did not arrive as
//! JSON (another OAuth library's, a test's), and the accessors of the fields the parser keeps.

use std::time::Duration;

use serde_json::{Map, Value};

use super::TokenResponse;
use crate::basics::secret::Secret;

/// Builds a [`TokenResponse`] field by field; start with [`TokenResponse::builder`].
///
/// Its `Debug`, like the response's, shows no token: only the names of the extra fields.
#[derive(Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct TokenResponseBuilder {
    response: TokenResponse,
}

impl std::fmt::Debug for TokenResponseBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TokenResponseBuilder")
            .field(&self.response)
            .finish()
    }
}

impl TokenResponse {
    /// A builder for a response carrying `access_token`: a token response from another
    /// source than JSON (another OAuth library, a test), to store with
    /// [`crate::Store::import_token_response`].
    ///
    /// The values are taken as given, except that an empty refresh token counts as none and
    /// an absurd lifetime as five minutes (as [`TokenResponse::from_json`] reads them). The token type defaults to `Bearer`.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use credlock::{Secret, TokenResponse};
    ///
    /// let response = TokenResponse::builder(Secret::new("at-1"))
    ///     .refresh_token(Secret::new("rt-1"))
    ///     .expires_in(Duration::from_secs(3600))
    ///     .scope("openid email")
    ///     .id_token("eyJhbGciOi.eyJzdWIiOi.c2ln")
    ///     .build();
    /// assert_eq!(response.access_token().secret(), "at-1");
    /// assert_eq!(response.expires_in(), Some(3600));
    /// assert_eq!(response.scope(), Some("openid email"));
    /// assert_eq!(response.token_type(), "Bearer");
    /// assert!(!format!("{response:?}").contains("at-1"));
    /// ```
    pub fn builder(access_token: Secret) -> TokenResponseBuilder {
        TokenResponseBuilder {
            response: TokenResponse {
                access_token,
                token_type: "Bearer".to_owned(),
                expires_in: None,
                refresh_token: None,
                scope: None,
                extra: Map::new(),
            },
        }
    }

    /// The granted scope (space-separated), if the response names one. A response without
    /// one keeps the previous scope on a refresh (RFC 6749 §5.1).
    #[must_use]
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The OpenID Connect ID token, if the response carries one, as sent: credlock does not
    /// validate it (see [`crate::Session::id_token`]).
    #[must_use]
    pub fn id_token(&self) -> Option<&str> {
        self.extra.get("id_token").and_then(Value::as_str)
    }

    /// The fields credlock does not model (`id_token`, vendor fields): they are stored with
    /// the session, in [`crate::Session::extra`].
    #[must_use]
    pub fn extra(&self) -> &Map<String, Value> {
        &self.extra
    }
}

impl TokenResponseBuilder {
    /// The refresh token. Without one (or with an empty one), the response can refresh a
    /// session but not start one ([`crate::Error::MissingRefreshToken`]).
    pub fn refresh_token(mut self, refresh_token: Secret) -> TokenResponseBuilder {
        self.response.refresh_token = (!refresh_token.secret().is_empty()).then_some(refresh_token);
        self
    }

    /// The access token's lifetime from when the response arrived, in whole seconds (a
    /// fraction is dropped, as [`TokenResponse::from_json`] drops it). Defaults to none: the
    /// token is used until an API rejects it. A lifetime above ten years is taken as the
    /// parser takes one: unusable, so five minutes (a server quirk passed on by another
    /// library must not make a token live for ever).
    pub fn expires_in(mut self, expires_in: Duration) -> TokenResponseBuilder {
        let secs = expires_in.as_secs();
        self.response.expires_in = Some(if secs > super::MAX_EXPIRES_IN_SECS {
            super::UNKNOWN_EXPIRES_IN_SECS
        } else {
            secs
        });
        self
    }

    /// The granted scope, space-separated. Defaults to none.
    pub fn scope(mut self, scope: impl Into<String>) -> TokenResponseBuilder {
        self.response.scope = Some(scope.into());
        self
    }

    /// The token type, kept as given (compare it with [`TokenResponse::is_bearer`]). Defaults
    /// to `Bearer`; an empty or blank one is taken as `Bearer` too.
    pub fn token_type(mut self, token_type: impl Into<String>) -> TokenResponseBuilder {
        let token_type = token_type.into();
        if !token_type.trim().is_empty() {
            self.response.token_type = token_type;
        }
        self
    }

    /// The OpenID Connect ID token, kept in the extra fields as `id_token`.
    pub fn id_token(self, id_token: impl Into<String>) -> TokenResponseBuilder {
        self.extra("id_token", Value::String(id_token.into()))
    }

    /// Another field credlock does not model (a vendor field), kept with the session. The
    /// names of the modelled fields (`access_token`, `refresh_token`, `expires_in`, `scope`,
    /// `token_type`) are ignored here: set those with their own methods.
    pub fn extra(mut self, name: impl Into<String>, value: Value) -> TokenResponseBuilder {
        let name = name.into();
        if !MODELLED.contains(&name.as_str()) {
            self.response.extra.insert(name, value);
        }
        self
    }

    /// The response.
    #[must_use]
    pub fn build(self) -> TokenResponse {
        self.response
    }
}

/// The fields [`TokenResponse`] has members for: never duplicated among the extra fields,
/// whose values would otherwise shadow them in [`TokenResponse::to_json`].
const MODELLED: [&str; 5] = [
    "access_token",
    "refresh_token",
    "expires_in",
    "scope",
    "token_type",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_response_reads_back_as_the_parser_would_read_its_json() {
        let built = TokenResponse::builder(Secret::new("at-1"))
            .refresh_token(Secret::new("rt-1"))
            .expires_in(Duration::from_millis(3_599_900))
            .scope("openid email")
            .token_type("DPoP")
            .id_token("id-1")
            .extra("x-vendor", Value::from(7))
            .extra("access_token", Value::from("shadow"))
            .build();
        assert_eq!(built.expires_in(), Some(3599));
        assert_eq!(built.id_token(), Some("id-1"));
        assert_eq!(built.extra().len(), 2, "id_token and x-vendor only");
        assert!(!built.is_bearer());
        let parsed = TokenResponse::from_json(&built.to_json()).expect("its own JSON parses");
        assert_eq!(parsed, built);
    }

    #[test]
    fn defaults_are_bearer_and_no_refresh_token_expiry_or_scope() {
        let r = TokenResponse::builder(Secret::new("at"))
            .refresh_token(Secret::new(""))
            .token_type("  ")
            .build();
        assert_eq!(r.token_type(), "Bearer");
        assert_eq!(r.refresh_token(), None);
        assert_eq!(
            (r.expires_in(), r.scope(), r.id_token()),
            (None, None, None)
        );
    }

    #[test]
    fn debug_of_the_builder_and_the_response_shows_no_token() {
        let builder = TokenResponse::builder(Secret::new("access-zz"))
            .refresh_token(Secret::new("refresh-zz"))
            .id_token("idtok-zz");
        let text = format!("{builder:?} {:?}", builder.clone().build());
        for needle in ["access-zz", "refresh-zz", "idtok-zz"] {
            assert!(!text.contains(needle), "{needle} leaked in {text}");
        }
        assert!(text.contains("id_token"), "{text}");
    }

    #[test]
    fn an_absurd_lifetime_is_taken_as_the_parser_takes_it() {
        let twenty_years = Duration::from_secs(20 * 365 * 24 * 3600);
        for lifetime in [twenty_years, Duration::MAX] {
            let built = TokenResponse::builder(Secret::new("at"))
                .expires_in(lifetime)
                .build();
            let parsed = TokenResponse::from_json(&built.to_json()).expect("its own JSON parses");
            assert_eq!(built.expires_in(), parsed.expires_in(), "{lifetime:?}");
            assert_eq!(built.expires_in(), Some(300), "{lifetime:?}");
        }
    }
}
