//! Where the login goes: the endpoints, read from the issuer's metadata or given explicitly.

use std::time::SystemTime;

use serde_json::Value;

use crate::basics::secret::display_url;
use crate::error::Error;
use crate::wire::endpoint::require_secure_endpoint;
use crate::wire::http::Transport;
use crate::wire::http_answer::{self, Endpoint, Meaning};

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

    /// Reads the issuer's metadata: the OpenID configuration (`<issuer>/.well-known/openid-configuration`),
    /// else RFC 8414's `/.well-known/oauth-authorization-server` inserted before the
    /// issuer's path (RFC 8414 §3.1); for an issuer with a path, then the OpenID form inserted
    /// the same way (RFC 8414 §5), and the OAuth form appended to the path, where servers
    /// mounted under a path serve it (django-oauth-toolkit at `/o`). A URL "has no document"
    /// on HTTP 404, 405 or any other 4xx, or a body that is not a JSON object.
    ///
    /// Takes the token, authorization, device authorization and revocation endpoints and the
    /// advertised scopes. When the first document found lacks one of the last three, the
    /// documents of the other kind are read too and fill the gaps (django-oauth-toolkit lists
    /// `revocation_endpoint` in its OAuth document only); a failure to read those costs
    /// nothing but the gap. Every document's `issuer` must equal `issuer` (trailing slash
    /// aside; RFC 8414 §3.3), so that one server cannot pose as another.
    ///
    /// # Errors
    /// - [`Error::LoginUnavailable`]: network error, 408, 425, 429 or 5xx (transient).
    /// - [`Error::LoginUnsupported`]: no document exists (the error lists every URL tried),
    ///   the `issuer` differs, or it names no token endpoint.
    /// - [`Error::InvalidEndpoint`], [`Error::InsecureEndpoint`]: the issuer or an endpoint
    ///   it lists is unusable.
    pub fn discover(issuer: &str, transport: &dyn Transport) -> Result<Endpoints, Error> {
        require_secure_endpoint(issuer)?;
        let candidates = metadata_urls(issuer);
        let mut tried = Vec::new();
        let mut found: Option<(Kind, Endpoints)> = None;
        for (kind, url) in candidates {
            match &mut found {
                None => {
                    if let Some(doc) = fetch(&url, transport)? {
                        found = Some((kind, Endpoints::from_metadata(issuer, &doc)?));
                    } else {
                        tried.push(url);
                    }
                }
                Some((first, endpoints)) => {
                    if *first == kind || endpoints.is_complete() {
                        continue;
                    }
                    // Only gaps to fill: an unreadable or foreign document leaves them open.
                    if let Ok(Some(doc)) = fetch(&url, transport)
                        && let Ok(more) = Endpoints::from_metadata(issuer, &doc)
                    {
                        endpoints.fill_from(more);
                    }
                }
            }
        }
        match found {
            Some((_, endpoints)) => Ok(endpoints),
            None => Err(Error::LoginUnsupported {
                issuer: display_url(issuer),
                reason: format!(
                    "no OpenID or OAuth metadata found (tried {})",
                    tried
                        .iter()
                        .map(|u| display_url(u))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    /// Whether every endpoint a document can add is known.
    fn is_complete(&self) -> bool {
        self.authorization.is_some()
            && self.device_authorization.is_some()
            && self.revocation.is_some()
    }

    /// Takes from `other` (the issuer's other document) what this one lacks.
    fn fill_from(&mut self, other: Endpoints) {
        self.authorization = self.authorization.take().or(other.authorization);
        self.device_authorization = self
            .device_authorization
            .take()
            .or(other.device_authorization);
        self.revocation = self.revocation.take().or(other.revocation);
        self.scopes_supported = self.scopes_supported.take().or(other.scopes_supported);
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

/// Which kind of metadata document a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OpenId,
    OAuth,
}

/// The metadata URLs of `issuer`, in the order they are tried, without repeats.
fn metadata_urls(issuer: &str) -> Vec<(Kind, String)> {
    const OPENID: &str = "/.well-known/openid-configuration";
    const OAUTH: &str = "/.well-known/oauth-authorization-server";
    let base = issuer.trim_end_matches('/');
    let (scheme_host, path) = split_path(base);
    let mut urls: Vec<(Kind, String)> = Vec::new();
    for (kind, url) in [
        (Kind::OpenId, format!("{base}{OPENID}")),
        (Kind::OAuth, format!("{scheme_host}{OAUTH}{path}")),
        (Kind::OpenId, format!("{scheme_host}{OPENID}{path}")),
        (Kind::OAuth, format!("{base}{OAUTH}")),
    ] {
        if !urls.iter().any(|(_, u)| *u == url) {
            urls.push((kind, url));
        }
    }
    urls
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
    let response =
        transport
            .get(url)
            .map_err(|e| match http_answer::transport_meaning(&e, &[]) {
                Ok(reason) => Error::LoginUnavailable {
                    endpoint: endpoint.clone(),
                    reason,
                },
                Err(setup) => setup,
            })?;
    match http_answer::interpret(Endpoint::Discovery, &response, SystemTime::now(), &[]) {
        Meaning::Success => match serde_json::from_slice::<Value>(&response.body) {
            Ok(Value::Object(map)) => Ok(Some(map)),
            _ => Ok(None),
        },
        Meaning::Unavailable { reason, .. } => Err(Error::LoginUnavailable { endpoint, reason }),
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
    fn discovery_finds_the_metadata_appended_to_an_issuer_with_a_path() {
        // django-oauth-toolkit mounted at /o serves /o/.well-known/oauth-authorization-server.
        let issuer = "https://id.example/o";
        let body = doc("").replace(
            r#""issuer":"https://id.example""#,
            r#""issuer":"https://id.example/o""#,
        );
        let t = Scripted::new()
            .get(404, "")
            .get(404, "")
            .get(404, "")
            .get(200, &body);
        let e = Endpoints::discover(issuer, &t).unwrap();
        assert_eq!(e.token(), "https://id.example/token");
        assert_eq!(
            t.urls(),
            [
                "https://id.example/o/.well-known/openid-configuration",
                "https://id.example/.well-known/oauth-authorization-server/o",
                "https://id.example/.well-known/openid-configuration/o",
                "https://id.example/o/.well-known/oauth-authorization-server",
            ]
        );
    }

    #[test]
    fn discovery_that_finds_nothing_names_every_url_it_tried() {
        let t = Scripted::new()
            .get(404, "")
            .get(404, "")
            .get(404, "")
            .get(404, "");
        let e = Endpoints::discover("https://id.example/o", &t).unwrap_err();
        let text = e.to_string();
        for url in t.urls() {
            assert!(text.contains(&url), "{url} not in: {text}");
        }
        assert_eq!(t.urls().len(), 4);
        // Without a path, the inserted and appended forms are the same two URLs.
        let t = Scripted::new().get(404, "").get(404, "");
        assert!(Endpoints::discover(ISSUER, &t).is_err());
        assert_eq!(t.urls().len(), 2);
    }

    #[test]
    fn endpoints_missing_from_the_openid_document_are_taken_from_the_oauth_one() {
        let issuer = "https://id.example/o";
        let oidc = format!(
            r#"{{"issuer":"{issuer}","token_endpoint":"{issuer}/token/","authorization_endpoint":"{issuer}/authorize/"}}"#
        );
        let oauth = format!(
            r#"{{"issuer":"{issuer}","token_endpoint":"{issuer}/token/","revocation_endpoint":"{issuer}/revoke_token/","device_authorization_endpoint":"{issuer}/device-authorization/"}}"#
        );
        let t = Scripted::new()
            .get(200, &oidc)
            .get(404, "")
            .get(200, &oauth);
        let e = Endpoints::discover(issuer, &t).unwrap();
        assert_eq!(e.authorization(), Some("https://id.example/o/authorize/"));
        assert_eq!(e.revocation(), Some("https://id.example/o/revoke_token/"));
        assert_eq!(
            e.device_authorization(),
            Some("https://id.example/o/device-authorization/")
        );
        // The OpenID form inserted before the path is of the kind already read: skipped.
        assert_eq!(
            t.urls(),
            [
                "https://id.example/o/.well-known/openid-configuration",
                "https://id.example/.well-known/oauth-authorization-server/o",
                "https://id.example/o/.well-known/oauth-authorization-server",
            ]
        );
        // A complete first document costs no further request.
        let t = Scripted::new().get(200, &doc(""));
        Endpoints::discover(ISSUER, &t).unwrap();
        assert_eq!(t.urls().len(), 1);
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
