//! The fake token server over real HTTP on 127.0.0.1.

use std::io::Read;
use std::sync::Arc;
use std::thread::JoinHandle;

use credlock::internal::form_urldecode;
use credlock::transport::HttpResponse;

use super::server::{AtAuthorization, FakeServer};

/// A [`FakeServer`] listening on `127.0.0.1` on a free port, one thread per request.
/// Dropping it stops the listener.
///
/// Routes: `POST /token`, `POST /revoke` (RFC 7009), `GET /introspect?token=…`, which
/// answers `{"active":true|false}` for a refresh token, and `GET /resource`, a protected
/// API ([`HttpServer::resource_url`]): 200 for an `Authorization: Bearer` token
/// [`FakeServer::is_access_token_valid`] accepts, else 401 (RFC 6750 `invalid_token`).
///
/// The login endpoints, for testing a login without a network: `GET
/// /.well-known/openid-configuration` (the issuer is [`HttpServer::issuer`]), `POST
/// /device_authorization` (RFC 8628), `GET /authorize` (the authorization code with PKCE
/// S256: the [`crate::ScriptedUser`]'s answer as a 302 to the loopback
/// `redirect_uri`, or a login page it never leaves), and the device and code grants at
/// `POST /token`. A browser login's `open` is [`FakeServer::open_browser`].
#[must_use = "dropping the server stops it"]
pub struct HttpServer {
    server: Arc<tiny_http::Server>,
    port: u16,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl HttpServer {
    /// Starts serving `fake` on a free loopback port.
    ///
    /// # Errors
    /// The bind error, if the loopback interface cannot be bound.
    pub fn start(fake: Arc<FakeServer>) -> std::io::Result<HttpServer> {
        let server = tiny_http::Server::http("127.0.0.1:0").map_err(std::io::Error::other)?;
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .ok_or_else(|| std::io::Error::other("not an IP listener"))?;
        let server = Arc::new(server);
        let listener = Arc::clone(&server);
        let thread = std::thread::spawn(move || {
            let issuer = format!("http://127.0.0.1:{port}");
            for request in listener.incoming_requests() {
                let fake = Arc::clone(&fake);
                let issuer = issuer.clone();
                std::thread::spawn(move || serve(&fake, &issuer, request));
            }
        });
        Ok(HttpServer {
            server,
            port,
            thread: Some(thread),
        })
    }

    /// The port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`: the issuer whose discovery document names the login
    /// endpoints (for [`credlock::Endpoints::discover`]).
    #[must_use]
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT/token`.
    #[must_use]
    pub fn token_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// `http://127.0.0.1:PORT/resource`: an API that accepts the access tokens the fake
    /// server considers valid now (by its clock) and answers 401 to any other.
    #[must_use]
    pub fn resource_url(&self) -> String {
        format!("http://127.0.0.1:{}/resource", self.port)
    }

    /// `http://127.0.0.1:PORT/revoke`.
    #[must_use]
    pub fn revocation_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/revoke", self.port)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const MAX_REQUEST_BODY: u64 = 64 * 1024;

fn serve(fake: &FakeServer, issuer: &str, mut request: tiny_http::Request) {
    let mut body = Vec::new();
    let read = request
        .as_reader()
        .take(MAX_REQUEST_BODY)
        .read_to_end(&mut body);
    let url = request.url().to_owned();
    let authorization = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_owned());
    let form = parse_form(&String::from_utf8_lossy(&body));
    let login_grant = form.iter().any(|(k, v)| {
        k == "grant_type" && (v == "authorization_code" || v.ends_with(":device_code"))
    });
    let mut location = None;
    let response = match (request.method(), url.split('?').next().unwrap_or("")) {
        _ if read.is_err() => plain(400, "unreadable body"),
        (tiny_http::Method::Post, "/token") if login_grant => {
            fake.handle_token(&form, authorization.as_deref())
        }
        (tiny_http::Method::Post, "/device_authorization") => {
            fake.handle_device_authorization(issuer, &form, authorization.as_deref())
        }
        (tiny_http::Method::Get, "/.well-known/openid-configuration") => {
            plain(200, &fake.discovery_document(issuer).to_string())
        }
        (tiny_http::Method::Get, "/authorize") => {
            match fake.authorize(url.split_once('?').map_or("", |(_, q)| q)) {
                AtAuthorization::Redirect(to) => {
                    location = Some(to);
                    plain(302, "")
                }
                AtAuthorization::Page(status, text) => plain(status, &text),
            }
        }
        (tiny_http::Method::Get, "/device") => plain(200, "<html>Enter the code</html>"),
        (tiny_http::Method::Post, "/token") => {
            if fake.pop_transport_failure().is_some() {
                // No response at all: drop the connection, as a crashed proxy would.
                return;
            }
            fake.handle_token(&form, authorization.as_deref())
        }
        (tiny_http::Method::Post, "/revoke") => fake.handle_revoke(&form, authorization.as_deref()),
        (tiny_http::Method::Get, "/introspect") => {
            let query = parse_form(url.split_once('?').map_or("", |(_, q)| q));
            let token = query
                .iter()
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.as_str());
            let active = token.is_some_and(|t| fake.is_live(t));
            HttpResponse::new(200, format!("{{\"active\":{active}}}"))
        }
        (tiny_http::Method::Get, "/resource") => {
            let token = authorization
                .as_deref()
                .and_then(|h| h.strip_prefix("Bearer "));
            if token.is_some_and(|t| fake.is_access_token_valid(t)) {
                plain(200, r#"{"ok":true}"#)
            } else {
                plain(401, r#"{"error":"invalid_token"}"#)
            }
        }
        _ => plain(404, "not found"),
    };
    if !fake.latency().is_zero() {
        std::thread::sleep(fake.latency());
    }
    let mut reply = tiny_http::Response::from_data(response.body).with_status_code(response.status);
    if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]) {
        reply.add_header(h);
    }
    if let Some(to) = location
        && let Ok(h) = tiny_http::Header::from_bytes(&b"Location"[..], to.as_bytes())
    {
        reply.add_header(h);
    }
    if let Some(ra) = response.retry_after
        && let Ok(h) = tiny_http::Header::from_bytes(&b"Retry-After"[..], ra.as_bytes())
    {
        reply.add_header(h);
    }
    let _ = request.respond(reply);
}

fn plain(status: u16, text: &str) -> HttpResponse {
    HttpResponse::new(status, text)
}

fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((form_urldecode(k)?, form_urldecode(v)?))
        })
        .collect()
}
