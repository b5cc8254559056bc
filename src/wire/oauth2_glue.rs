//! A [`TokenResponse`] from oauth2-rs's token response (feature `oauth2`): for a program that
//! logs in with the `oauth2` crate and keeps the session with credlock.

use std::time::{Duration, SystemTime};

use oauth2::{ExtraTokenFields, StandardTokenResponse, TokenResponse as _, TokenType};
use serde_json::Value;

use crate::basics::secret::Secret;
use crate::session::token_response::TokenResponse;

#[cfg_attr(docsrs, doc(cfg(feature = "oauth2")))]
impl TokenResponse {
    /// The token response oauth2-rs received at `received_at`, as credlock's, for
    /// [`crate::Store::import_token_response`] (the `From` conversions take `received_at` to
    /// be now).
    ///
    /// oauth2-rs keeps `expires_in` as the server sent it, counted from when the response
    /// arrived, while credlock counts it from when the session is made (see
    /// [`crate::Session::from_token_response`]). So the lifetime is shortened by the time
    /// elapsed since `received_at` (whole seconds, rounded down; never below zero, and
    /// unchanged for a `received_at` in the future): a response kept for a while before it
    /// is converted does not give its access token a longer life than the server granted.
    ///
    /// The token type is kept as oauth2-rs spells it, except that its `bearer` becomes
    /// `Bearer` (compare with [`TokenResponse::is_bearer`] in any case); the scopes are
    /// joined with spaces; the extra fields (an OpenID Connect `id_token`, say) are kept
    /// with the session. Values are taken as oauth2-rs parsed them, except as
    /// [`TokenResponse::builder`] takes them: an empty refresh token counts as none, and a
    /// lifetime above ten years as five minutes.
    ///
    /// # Examples
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use oauth2::basic::{BasicTokenResponse, BasicTokenType};
    /// use oauth2::{AccessToken, EmptyExtraTokenFields, RefreshToken};
    ///
    /// let mut theirs = BasicTokenResponse::new(
    ///     AccessToken::new("at-1".into()),
    ///     BasicTokenType::Bearer,
    ///     EmptyExtraTokenFields {},
    /// );
    /// theirs.set_expires_in(Some(&Duration::from_secs(3600)));
    /// theirs.set_refresh_token(Some(RefreshToken::new("rt-1".into())));
    /// // The response arrived ten minutes ago: 50 minutes are left.
    /// let received_at = SystemTime::now() - Duration::from_secs(600);
    /// let ours = credlock::TokenResponse::from_oauth2(&theirs, received_at);
    /// assert!((3_000 - 2..=3_000).contains(&ours.expires_in().expect("an expiry")));
    /// assert_eq!(ours.refresh_token().map(|t| t.secret()), Some("rt-1"));
    /// ```
    #[must_use]
    pub fn from_oauth2<EF: ExtraTokenFields, TT: TokenType>(
        response: &StandardTokenResponse<EF, TT>,
        received_at: SystemTime,
    ) -> TokenResponse {
        from_oauth2_at(response, received_at, SystemTime::now())
    }
}

/// oauth2-rs's response received at `received_at`, converted at `now`.
fn from_oauth2_at<EF: ExtraTokenFields, TT: TokenType>(
    response: &StandardTokenResponse<EF, TT>,
    received_at: SystemTime,
    now: SystemTime,
) -> TokenResponse {
    let mut builder = TokenResponse::builder(Secret::new(response.access_token().secret()));
    if let Some(refresh_token) = response.refresh_token() {
        builder = builder.refresh_token(Secret::new(refresh_token.secret()));
    }
    if let Some(expires_in) = response.expires_in() {
        let elapsed = now.duration_since(received_at).unwrap_or(Duration::ZERO);
        builder = builder.expires_in(expires_in.saturating_sub(elapsed));
    }
    if let Some(scopes) = response.scopes() {
        let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        builder = builder.scope(scopes.join(" "));
    }
    if let Ok(Value::String(token_type)) = serde_json::to_value(response.token_type()) {
        builder = builder.token_type(if token_type.eq_ignore_ascii_case("bearer") {
            "Bearer".to_owned()
        } else {
            token_type
        });
    }
    // Extra fields are whatever `EF` serialises to; a flattened struct gives an object.
    if let Ok(Value::Object(extra)) = serde_json::to_value(response.extra_fields()) {
        for (name, value) in extra {
            builder = builder.extra(name, value);
        }
    }
    builder.build()
}

/// oauth2-rs's response, taken to have arrived now (see [`TokenResponse::from_oauth2`]).
#[cfg_attr(docsrs, doc(cfg(feature = "oauth2")))]
impl<EF: ExtraTokenFields, TT: TokenType> From<&StandardTokenResponse<EF, TT>> for TokenResponse {
    fn from(response: &StandardTokenResponse<EF, TT>) -> TokenResponse {
        TokenResponse::from_oauth2(response, SystemTime::now())
    }
}

/// oauth2-rs's response, taken to have arrived now (see [`TokenResponse::from_oauth2`]).
#[cfg_attr(docsrs, doc(cfg(feature = "oauth2")))]
impl<EF: ExtraTokenFields, TT: TokenType> From<StandardTokenResponse<EF, TT>> for TokenResponse {
    fn from(response: StandardTokenResponse<EF, TT>) -> TokenResponse {
        TokenResponse::from_oauth2(&response, SystemTime::now())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use oauth2::basic::{BasicTokenResponse, BasicTokenType};
    use oauth2::{AccessToken, EmptyExtraTokenFields, RefreshToken, Scope, StandardTokenResponse};
    use serde::{Deserialize, Serialize};

    use super::from_oauth2_at;
    use crate::session::token_response::TokenResponse;

    fn theirs(expires_in: Option<u64>) -> BasicTokenResponse {
        let mut r = BasicTokenResponse::new(
            AccessToken::new("access-zz".into()),
            BasicTokenType::Bearer,
            EmptyExtraTokenFields {},
        );
        r.set_expires_in(expires_in.map(Duration::from_secs).as_ref());
        r.set_refresh_token(Some(RefreshToken::new("refresh-zz".into())));
        r.set_scopes(Some(vec![
            Scope::new("openid".into()),
            Scope::new("offline_access".into()),
        ]));
        r
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn expires_in_counts_from_the_arrival_not_from_the_conversion() {
        let r = theirs(Some(3600));
        let received = at(1_000_000);
        let cases = [
            (at(1_000_000), Some(3600)),
            (at(1_000_600), Some(3000)),
            (received + Duration::from_millis(1_500), Some(3598)),
            (at(1_010_000), Some(0)),
            (at(999_000), Some(3600)),
        ];
        for (now, want) in cases {
            assert_eq!(
                from_oauth2_at(&r, received, now).expires_in(),
                want,
                "{now:?}"
            );
        }
        assert_eq!(
            from_oauth2_at(&theirs(None), received, at(1_000_600)).expires_in(),
            None
        );
    }

    #[test]
    fn tokens_scope_and_type_are_kept() {
        let ours = from_oauth2_at(&theirs(Some(60)), at(0), at(0));
        assert_eq!(ours.access_token().secret(), "access-zz");
        assert_eq!(ours.refresh_token().map(|t| t.secret()), Some("refresh-zz"));
        assert_eq!(ours.scope(), Some("openid offline_access"));
        assert_eq!(ours.token_type(), "Bearer");
        let mut dpop = theirs(None);
        dpop.set_token_type(BasicTokenType::Extension("DPoP".into()));
        dpop.set_refresh_token(None);
        dpop.set_scopes(None);
        let ours = TokenResponse::from(dpop);
        assert_eq!(
            (ours.token_type(), ours.refresh_token(), ours.scope()),
            ("DPoP", None, None)
        );
    }

    #[test]
    fn extra_fields_such_as_an_id_token_are_kept() {
        #[derive(Debug, Serialize, Deserialize)]
        struct IdTokenFields {
            id_token: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            nonce_hint: Option<String>,
        }
        impl oauth2::ExtraTokenFields for IdTokenFields {}
        let r = StandardTokenResponse::new(
            AccessToken::new("a".into()),
            BasicTokenType::Bearer,
            IdTokenFields {
                id_token: "idtok-zz".into(),
                nonce_hint: None,
            },
        );
        let ours = TokenResponse::from(&r);
        assert_eq!(ours.id_token(), Some("idtok-zz"));
        assert_eq!(ours.extra().len(), 1);
    }

    #[test]
    fn debug_of_the_converted_response_shows_no_token() {
        let ours = TokenResponse::from_oauth2(&theirs(Some(60)), SystemTime::now());
        let text = format!("{ours:?}");
        for needle in ["access-zz", "refresh-zz"] {
            assert!(!text.contains(needle), "{needle} leaked in {text}");
        }
    }
}
