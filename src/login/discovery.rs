//! Where the login goes: the endpoints, read from the issuer's metadata or given explicitly.

use serde_json::Value;

use crate::endpoint::{display_url, require_secure_endpoint};
use crate::error::Error;
use crate::http::Transport;

/// The endpoints of an authorization server that a login uses.
///
/// Read from the issuer's metadata with [`Endpoints::discover`], or built with
/// [`Endpoints::new`] and the `with_*` setters. Every endpoint is checked like a token
/// endpoint: an absolute `https` URL (plain `http` only to a loopback host), no user info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    issuer: Option<String>,
    token: String,
    authorization: Option<String>,
    device_authorization: Option<String>,
    revocation: Option<String>,
    scopes_supported: Option<Vec<String>>,
}

impl Endpoints {
    /// Explicit endpoints: the token endpoint, nothing else yet.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`], [`Error::InsecureEndpoint`].
    pub fn new(token_endpoint: impl Into<String>) -> Result<Endpoints, Error> {
        let token = token_endpoint.into();
        require_secure_endpoint(&token)?;
        Ok(Endpoints {
            issuer: None,
            token,
            authorization: None,
            device_authorization: None,
            revocation: None,
            scopes_supported: None,
        })
    }

    /// The authorization endpoint (browser and paste flows).
    ///
    /// # Errors
    /// As [`Endpoints::new`].
    pub fn with_authorization(mut self, url: impl Into<String>) -> Result<Endpoints, Error> {
        self.authorization = Some(checked(url.into())?);
        Ok(self)
    }

    /// The device authorization endpoint (RFC 8628 device flow).
    ///
    /// # Errors
    /// As [`Endpoints::new`].
    pub fn with_device_authorization(mut self, url: impl Into<String>) -> Result<Endpoints, Error> {
        self.device_authorization = Some(checked(url.into())?);
        Ok(self)
    }

    /// The revocation endpoint (RFC 7009), stored in the session for `logout --revoke`.
    ///
    /// # Errors
    /// As [`Endpoints::new`].
    pub fn with_revocation(mut self, url: impl Into<String>) -> Result<Endpoints, Error> {
        self.revocation = Some(checked(url.into())?);
        Ok(self)
    }

    /// Reads `<issuer>/.well-known/openid-configuration`, and if that is not found (HTTP
    /// 404 or 405, or not a JSON object), RFC 8414's `/.well-known/oauth-authorization-server`
    /// (inserted before the issuer's path, as RFC 8414 §3.1 says). Takes the token,
    /// authorization, device authorization and revocation endpoints and the advertised
    /// scopes. The document's `issuer` must equal `issuer` (trailing slash aside; RFC 8414
    /// §3.3), so that one server cannot pose as another.
    ///
    /// # Errors
    /// - [`Error::LoginUnavailable`]: network error, 429 or 5xx (transient).
    /// - [`Error::LoginUnsupported`]: neither document exists, the `issuer` differs, or it
    ///   names no token endpoint.
    /// - [`Error::InvalidEndpoint`], [`Error::InsecureEndpoint`]: the issuer or an endpoint
    ///   it lists is unusable.
    pub fn discover(issuer: &str, transport: &dyn Transport) -> Result<Endpoints, Error> {
        require_secure_endpoint(issuer)?;
        let base = issuer.trim_end_matches('/');
        let oidc = format!("{base}/.well-known/openid-configuration");
        let (scheme_host, path) = split_path(base);
        let rfc8414 = format!("{scheme_host}/.well-known/oauth-authorization-server{path}");
        let mut last = None;
        for url in [oidc, rfc8414] {
            match fetch(&url, transport)? {
                Some(doc) => return Endpoints::from_metadata(issuer, &doc),
                None => last = Some(url),
            }
        }
        Err(Error::LoginUnsupported {
            issuer: display_url(issuer),
            reason: format!(
                "no OpenID or OAuth metadata found (last tried {})",
                display_url(&last.unwrap_or_default())
            ),
        })
    }

    fn from_metadata(
        issuer: &str,
        doc: &serde_json::Map<String, Value>,
    ) -> Result<Endpoints, Error> {
        let unsupported = |reason: String| Error::LoginUnsupported {
            issuer: display_url(issuer),
            reason,
        };
        let named = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
        if named.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(unsupported(format!(
                "the metadata names another issuer ({})",
                display_url(named)
            )));
        }
        let url = |key: &str| doc.get(key).and_then(Value::as_str).map(str::to_owned);
        let token = url("token_endpoint")
            .ok_or_else(|| unsupported("the metadata names no token_endpoint".to_owned()))?;
        let mut endpoints = Endpoints::new(token)?;
        endpoints.issuer = Some(issuer.to_owned());
        if let Some(u) = url("authorization_endpoint") {
            endpoints = endpoints.with_authorization(u)?;
        }
        if let Some(u) = url("device_authorization_endpoint") {
            endpoints = endpoints.with_device_authorization(u)?;
        }
        if let Some(u) = url("revocation_endpoint") {
            endpoints = endpoints.with_revocation(u)?;
        }
        endpoints.scopes_supported =
            doc.get("scopes_supported")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                });
        Ok(endpoints)
    }

    /// The issuer, when discovered.
    #[must_use]
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The token endpoint.
    #[must_use]
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The authorization endpoint, if known.
    #[must_use]
    pub fn authorization(&self) -> Option<&str> {
        self.authorization.as_deref()
    }

    /// The device authorization endpoint, if known.
    #[must_use]
    pub fn device_authorization(&self) -> Option<&str> {
        self.device_authorization.as_deref()
    }

    /// The revocation endpoint, if known.
    #[must_use]
    pub fn revocation(&self) -> Option<&str> {
        self.revocation.as_deref()
    }

    /// Whether the server advertises `scope` (`None`: it did not say, or was not asked).
    #[must_use]
    pub fn advertises_scope(&self, scope: &str) -> Option<bool> {
        self.scopes_supported
            .as_ref()
            .map(|s| s.iter().any(|x| x == scope))
    }

    /// What to name in errors: the issuer, else the token endpoint.
    pub(crate) fn name(&self) -> String {
        display_url(self.issuer.as_deref().unwrap_or(&self.token))
    }
}

fn checked(url: String) -> Result<String, Error> {
    require_secure_endpoint(&url)?;
    Ok(url)
}

/// `https://host/path` → (`https://host`, `/path`).
fn split_path(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => url.split_at(after_scheme + i),
        None => (url, ""),
    }
}

/// The metadata document at `url`; `None` when there is none there.
fn fetch(
    url: &str,
    transport: &dyn Transport,
) -> Result<Option<serde_json::Map<String, Value>>, Error> {
    let endpoint = display_url(url);
    let response = transport.get(url).map_err(|e| {
        e.as_setup_error()
            .unwrap_or_else(|| Error::LoginUnavailable {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            })
    })?;
    match response.status {
        200..=299 => match serde_json::from_slice::<Value>(&response.body) {
            Ok(Value::Object(map)) => Ok(Some(map)),
            _ => Ok(None),
        },
        429 | 500..=599 => Err(Error::LoginUnavailable {
            endpoint,
            reason: format!("HTTP {}", response.status),
        }),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::login::test_transport::Scripted;

    const ISSUER: &str = "https://id.example";

    fn doc(extra: &str) -> String {
        format!(
            r#"{{"issuer":"{ISSUER}","token_endpoint":"{ISSUER}/token","authorization_endpoint":"{ISSUER}/auth",
            "device_authorization_endpoint":"{ISSUER}/device/auth","revocation_endpoint":"{ISSUER}/revoke",
            "scopes_supported":["openid","offline_access"]{extra}}}"#
        )
    }

    #[test]
    fn discovery_reads_the_openid_configuration() {
        let t = Scripted::new().get(200, &doc(""));
        let e = Endpoints::discover(ISSUER, &t).unwrap();
        assert_eq!(e.token(), "https://id.example/token");
        assert_eq!(e.authorization(), Some("https://id.example/auth"));
        assert_eq!(
            e.device_authorization(),
            Some("https://id.example/device/auth")
        );
        assert_eq!(e.revocation(), Some("https://id.example/revoke"));
        assert_eq!(e.advertises_scope("offline_access"), Some(true));
        assert_eq!(
            t.urls(),
            ["https://id.example/.well-known/openid-configuration"]
        );
    }

    #[test]
    fn discovery_falls_back_to_rfc_8414_inserted_before_the_path() {
        let issuer = "https://id.example/tenant";
        let body = doc("").replace(
            r#""issuer":"https://id.example""#,
            r#""issuer":"https://id.example/tenant""#,
        );
        let t = Scripted::new().get(404, "not found").get(200, &body);
        let e = Endpoints::discover(issuer, &t).unwrap();
        assert_eq!(e.issuer(), Some(issuer));
        assert_eq!(
            t.urls(),
            [
                "https://id.example/tenant/.well-known/openid-configuration",
                "https://id.example/.well-known/oauth-authorization-server/tenant"
            ]
        );
    }

    #[test]
    fn discovery_errors_are_typed() {
        let none = Scripted::new().get(404, "").get(404, "");
        assert!(matches!(
            Endpoints::discover(ISSUER, &none),
            Err(Error::LoginUnsupported { .. })
        ));
        let down = Scripted::new().get(503, "");
        let e = Endpoints::discover(ISSUER, &down).unwrap_err();
        assert!(
            matches!(e, Error::LoginUnavailable { .. }) && e.is_transient(),
            "{e}"
        );
        let offline = Scripted::new().get_fails();
        assert!(
            Endpoints::discover(ISSUER, &offline)
                .unwrap_err()
                .is_transient()
        );
        let other = Scripted::new().get(200, &doc("").replace(ISSUER, "https://evil.example"));
        let e = Endpoints::discover(ISSUER, &other).unwrap_err();
        assert!(e.to_string().contains("another issuer"), "{e}");
        assert!(e.is_configuration());
        let insecure = Scripted::new().get(
            200,
            &doc("").replace(
                r#""https://id.example/token""#,
                r#""http://id.example/token""#,
            ),
        );
        assert!(matches!(
            Endpoints::discover(ISSUER, &insecure),
            Err(Error::InsecureEndpoint { .. })
        ));
        assert!(matches!(
            Endpoints::discover("http://remote.example", &Scripted::new()),
            Err(Error::InsecureEndpoint { .. })
        ));
    }
}
