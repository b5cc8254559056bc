//! Where credentials may be sent: endpoint URLs checked before any request, and the
//! constructors of [`Client`] that check them.

use crate::basics::secret::display_url;
use crate::error::Error;
use crate::session::model::{Client, ClientAuth};

/// Checks an endpoint before any credential is sent to it: an absolute `http` or `https` URL
/// with a host and no user information (no literal `@` at all), and plain `http` only to a
/// loopback host
/// (`localhost`, `127.0.0.0/8`, `[::1]`).
///
/// # Errors
/// [`Error::InvalidEndpoint`] for a URL that does not parse or is not usable as an endpoint;
/// [`Error::InsecureEndpoint`] for plain http to another host.
pub(crate) fn require_secure_endpoint(url: &str) -> Result<(), Error> {
    let invalid = |reason: &str| Error::InvalidEndpoint {
        url: display_url(url),
        reason: reason.to_owned(),
    };
    let uri = url
        .parse::<ureq::http::Uri>()
        .map_err(|e| invalid(&format!("not a valid URL ({e})")))?;
    let authority = uri
        .authority()
        .ok_or_else(|| invalid("not a valid URL (not absolute)"))?;
    // Any literal `@` is refused, not only one in the parsed authority: an unencoded `?`, `#`
    // or `/` in a password ends the authority early for the parser (`https://u:123?pw@idp/t`
    // would be host `u`, port 123), and no endpoint needs a literal `@` (`%40` in a path or
    // query is still accepted).
    if url.contains('@') {
        return Err(invalid(
            "credentials in the URL are not supported (configure the client secret instead; \
             write an @ in a path or query as %40)",
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid("not a valid URL (no host)"));
    }
    if authority.as_str().contains(':') && !host.contains(':') && uri.port_u16().is_none() {
        return Err(invalid("not a valid URL (bad port)"));
    }
    match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("https") => Ok(()),
        Some("http") => {
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err(Error::InsecureEndpoint {
                    url: display_url(url),
                })
            }
        }
        _ => Err(invalid(
            "not a valid URL for a token endpoint (the scheme must be https)",
        )),
    }
}

impl Client {
    /// A client that refreshes at `token_endpoint` as `client_id`, authenticating with `auth`.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] when the endpoint is not an absolute URL with a host (or
    /// carries user information); [`Error::InsecureEndpoint`] when it is not `https://`,
    /// unless its host is a loopback address (`localhost`, `127.0.0.0/8`, `[::1]`).
    ///
    /// # Examples
    /// ```
    /// use credlock::{Client, ClientAuth};
    /// let client = Client::new("https://auth.example.com/oauth/token", "my-cli", ClientAuth::None)?;
    /// assert_eq!(client.client_id(), "my-cli");
    /// assert!(Client::new("http://auth.example.com/token", "my-cli", ClientAuth::None).is_err());
    /// # Ok::<(), credlock::Error>(())
    /// ```
    pub fn new(
        token_endpoint: impl Into<String>,
        client_id: impl Into<String>,
        auth: ClientAuth,
    ) -> Result<Client, Error> {
        let token_endpoint = token_endpoint.into();
        require_secure_endpoint(&token_endpoint)?;
        Ok(Client {
            token_endpoint,
            client_id: client_id.into(),
            auth,
            revocation_endpoint: None,
        })
    }

    /// The same client with an RFC 7009 revocation endpoint, used by `logout --revoke`.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`], [`Error::InsecureEndpoint`] under the same rules as the
    /// token endpoint.
    pub fn with_revocation_endpoint(mut self, url: impl Into<String>) -> Result<Client, Error> {
        let url = url.into();
        require_secure_endpoint(&url)?;
        self.revocation_endpoint = Some(url);
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_accepted() {
        for ok in [
            "https://as.example/t",
            "http://127.0.0.1:8080/t",
            "http://localhost/t",
            "http://[::1]:9/t",
            "http://127.5.6.7/t",
        ] {
            assert!(require_secure_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://as.example/t",
            "http://localhost.evil.com/t",
            "http://127.0.0.1@evil.com/t",
            "ftp://x",
            "https://",
            "http://10.0.0.1/t",
            "https://auth example.com/token",
            "https:///token",
            "auth.example.com/token",
            "https://u:pw@as.example/t",
            "https://as.example:port/t",
            "",
        ] {
            assert!(require_secure_endpoint(bad).is_err(), "{bad}");
        }
        let e = require_secure_endpoint("https://").unwrap_err();
        assert!(matches!(e, Error::InvalidEndpoint { .. }), "{e}");
        assert!(!e.to_string().contains("must use https"), "{e}");
        let e = require_secure_endpoint("http://u:pw@127.0.0.1/t").unwrap_err();
        assert!(!e.to_string().contains("pw"), "{e}");
        for with_password in [
            "https://u:123?SECRET@as.example/t",
            "https://u:123#SECRET@as.example/t",
            "https://u:12/SECRET@as.example/t",
        ] {
            let e = require_secure_endpoint(with_password).unwrap_err();
            assert!(e.to_string().contains("credentials"), "{e}");
            assert!(!e.to_string().contains("SECRET"), "{e}");
        }
    }
}
