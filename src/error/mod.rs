//! Every way credlock can fail, and what the caller should do about it.
//!
//! Layer 3 of 7 in the order `api/module-graph` checks: it may import `basics` and
//! `session`, whose sessions, token responses and OAuth errors the errors carry.

mod copy_for_waiters;
mod keychain;
mod rejection;
#[cfg(test)]
mod tests;
mod what_to_do;

use std::path::PathBuf;
use std::time::Duration;

use crate::session::model::Session;
use crate::session::oauth_error::OAuthError;
use crate::session::token_response::ResponseError;
pub use keychain::KeychainProblem;
use rejection::{login_rejects_configuration, rejects_client};

/// How the lock that was not taken ends by itself: a guard on a Redis server, or the
/// advisory lock and the lease file.
fn lock_timeout_advice(lock_path: &std::path::Path) -> &'static str {
    let on_server = lock_path
        .to_str()
        .is_some_and(|p| p.starts_with("redis://") || p.starts_with("rediss://"));
    if on_server {
        "A guard on the server ends when its holder releases it or, if the holder died, when its time-to-live passes; never delete it while a refresh may be running"
    } else {
        "An OS lock ends with its holder; a lease file ends when its holder releases it or, if the holder died on another machine, when its time-to-live passes. Neither file ever needs deleting"
    }
}

/// An error from the store or the refresh protocol.
///
/// Each variant names the file it concerns. [`Error::needs_login`] tells "ask the user to log
/// in again" from "try again later" ([`Error::is_transient`]). No variant's `Debug` or
/// `Display` contains a token or a secret.
///
/// `Debug` is the message with its causes and the [`Error::kind`], as `Display` would print
/// them: `fn main() -> Result<(), credlock::Error>` prints an error's `Debug`, and it must
/// say what happened (a unit variant's bare name would not).
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// There is no session file: the user has not logged in, or logged out.
    #[error("no session is stored at {}; log in first", path.display())]
    NoSession {
        /// The session file.
        path: PathBuf,
    },

    /// The session file does not parse, even after re-reading it (a network filesystem can
    /// serve a torn read for a moment). The file was left untouched.
    #[error("the session file {} is corrupt ({reason}); it was left untouched: inspect or delete it, then log in again", path.display())]
    Corrupt {
        /// The session file.
        path: PathBuf,
        /// What is wrong, without quoting the content.
        reason: String,
    },

    /// The session file was written by a newer credlock. It was left untouched.
    #[error("the session file {} has format version {found}; this credlock understands up to {supported}, so it left the file untouched", path.display())]
    UnsupportedVersion {
        /// The session file.
        path: PathBuf,
        /// The version found.
        found: u64,
        /// The highest version this crate reads.
        supported: u32,
    },

    /// The path is not a regular file (a directory, a symbolic link, a device), or the file is
    /// implausibly large for a session. credlock refuses to read or replace it.
    #[error("{} is not a usable session file: {reason}", path.display())]
    NotASessionFile {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },

    /// A filesystem operation failed.
    #[error("could not {action} {}", path.display())]
    Io {
        /// What was being done, as a verb phrase ("write the session to").
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// Another process held the lock for the whole wait.
    #[error("could not lock {} within {:.1} s: another process held it all along (refreshing, logging in, or hung); try again later. {}", lock_path.display(), waited.as_secs_f64(), lock_timeout_advice(lock_path))]
    LockTimeout {
        /// The sidecar lock file.
        lock_path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },

    /// The token endpoint refused the refresh token (`invalid_grant`, or an HTTP 400 with an
    /// empty body) and no newer session appeared: the grant is gone. The session
    /// was deleted only if the file still held the very refresh token that failed.
    #[error("the session in {} has expired or was revoked ({}); log in again{}", path.display(), if *unexplained { "the token endpoint refused the refresh with HTTP 400 and gave no reason" } else { "invalid_grant" }, if *deleted { " (the stale session was removed)" } else { "" })]
    SessionExpired {
        /// The session file.
        path: PathBuf,
        /// Whether the stale session was deleted.
        deleted: bool,
        /// Whether the refusal was an HTTP 400 with an empty body, taken as
        /// `invalid_grant` (RFC 6749 §5.2 answers a refused grant with 400).
        unexplained: bool,
    },

    /// The token endpoint rejected the request for another reason (another OAuth error, or
    /// another 4xx). The stored session was kept. A rejected client (`invalid_client`,
    /// `unauthorized_client`, `unsupported_grant_type`, or any HTTP 401) is a configuration
    /// error ([`Error::is_configuration`]); anything else asks for a new login.
    #[error("the token endpoint rejected the refresh of {} with HTTP {status}{}; {} (the stored session was kept)", path.display(), oauth.as_ref().map(|o| format!(" {o}")).unwrap_or_default(), if rejects_client(*status, oauth.as_ref()) { "check the client's configuration (client id, secret, authentication method)" } else { "log in again" })]
    Rejected {
        /// The session file.
        path: PathBuf,
        /// The HTTP status.
        status: u16,
        /// The RFC 6749 §5.2 error, if the body held one.
        oauth: Option<OAuthError>,
    },

    /// The token endpoint could not be reached or is overloaded (network error, timeout, 408,
    /// 425, 429, 5xx). The stored session was kept; try again later.
    #[error("could not refresh {}: {reason}; try again {} (the stored session was kept)", path.display(), retry_after.map_or_else(|| "later".to_owned(), |d| format!("in {} s", d.as_secs())))]
    Unavailable {
        /// The session file.
        path: PathBuf,
        /// What happened.
        reason: String,
        /// How long the server asked to wait (`Retry-After`, in seconds or as an HTTP date),
        /// if it said.
        retry_after: Option<Duration>,
    },

    /// The token endpoint answered with something that is neither a token nor an OAuth
    /// error. The stored session was kept.
    #[error("the token endpoint sent an unusable response for {}: {reason} (the stored session was kept)", path.display())]
    InvalidResponse {
        /// The session file.
        path: PathBuf,
        /// What is wrong with the response, without quoting it.
        reason: String,
    },

    /// The token endpoint answered 2xx with a new refresh token but no usable access token.
    /// The server has rotated the refresh token, so the new one was saved at once, with the
    /// access token marked expired: the next call refreshes with it. Transient, unless the
    /// save failed (`save_error`), in which case the rotation is lost.
    #[error("the token endpoint sent a new refresh token for {} but no usable access token ({reason}); {}", path.display(), if save_error.is_none() { "the new refresh token was saved, try again" } else { "and the new refresh token could not be saved" })]
    IncompleteRefresh {
        /// The session file.
        path: PathBuf,
        /// What is wrong with the response, without quoting it.
        reason: String,
        /// Why the new refresh token could not be saved, if it could not.
        #[source]
        save_error: Option<Box<Error>>,
    },

    /// The endpoint is plain HTTP to a host that is not loopback.
    #[error(
        "refusing to send credentials to {url}: the endpoint must use https (plain http is allowed for loopback hosts only)"
    )]
    InsecureEndpoint {
        /// The endpoint (without any user information).
        url: String,
    },

    /// The endpoint is not a usable URL: it does not parse, is not absolute, has no host, or
    /// carries user information.
    #[error("the endpoint {url:?} is {reason}")]
    InvalidEndpoint {
        /// The endpoint as given (without any user information), at most 200 characters.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A token response without a refresh token cannot start a session.
    #[error(
        "the token response has no refresh_token; credlock needs one to keep the session alive (request the offline_access scope or enable refresh tokens for the client)"
    )]
    MissingRefreshToken,

    /// A client-credentials session ([`crate::ClientCredentials`]) needs a new access token,
    /// and the environment variable that should hold its client secret is not set (or is
    /// empty or not Unicode). Nothing was sent and the session was kept. The error names the
    /// variable, never a value.
    #[error(
        "the client secret of the client-credentials session in {} is read from the environment variable {variable}, which is not set (or is empty); set it in this process's environment (the session was kept)",
        path.display()
    )]
    MissingClientSecret {
        /// The session file (or store).
        path: PathBuf,
        /// The name of the environment variable.
        variable: String,
    },

    /// A token response handed to credlock to start a session (an import, such as
    /// [`crate::Store::import_json`]) is unusable: not a JSON object, or without a usable
    /// access token. Nothing was stored. `?` converts a [`ResponseError`] into this variant.
    #[error("the token response is unusable ({reason}); nothing was stored")]
    InvalidTokenResponse {
        /// What is wrong with it, without quoting it.
        reason: ResponseError,
    },

    /// A logout was asked to revoke the refresh token, but the session names no revocation
    /// endpoint. The session was kept; log out locally to delete it anyway.
    #[error("the session in {} names no revocation endpoint, so its refresh token cannot be revoked; the session was kept (log out without revoking to delete the local copy only)", path.display())]
    NoRevocationEndpoint {
        /// The session file.
        path: PathBuf,
    },

    /// The revocation endpoint could not be reached or is overloaded. The session was kept,
    /// and its refresh token is still live at the server; try again later.
    #[error("could not revoke the refresh token of {}: {reason}; the session was kept, try again later", path.display())]
    RevocationUnavailable {
        /// The session file.
        path: PathBuf,
        /// What happened.
        reason: String,
    },

    /// The revocation endpoint refused the request. The session was kept; log out without
    /// revoking to delete the local copy only.
    #[error("the revocation endpoint refused to revoke the refresh token of {} with HTTP {status}{}; the session was kept{}", path.display(), oauth.as_ref().map(|o| format!(" {o}")).unwrap_or_default(), if *public_client && *status == 401 { ". This server refuses revocation from public clients (it revokes only for clients that authenticate): log out without revoking (`logout` without `--revoke`) to delete the local copy; the refresh token then stays valid at the server until it expires" } else { " (log out without revoking to delete the local copy only)" })]
    RevocationRefused {
        /// The session file.
        path: PathBuf,
        /// The HTTP status.
        status: u16,
        /// The RFC 6749 §5.2 error, if the body held one.
        oauth: Option<OAuthError>,
        /// Whether the session's client is public (no client authentication). With HTTP
        /// 401, the server refuses revocation from public clients: RFC 7009 §2.1 lets it
        /// require authentication, and Glewlwyd does.
        public_client: bool,
    },

    /// A refresh (or a login, or an import) succeeded but the new session could not be
    /// saved. The old file is untouched; the new session is here, so the caller can still use
    /// its access token. After a refresh the server has already rotated the refresh token, so
    /// the stored one is now stale.
    #[error("got a new session but could not save it")]
    NotSaved {
        /// The new session, usable for this process.
        session: Box<Session>,
        /// Why it was not saved.
        #[source]
        source: Box<Error>,
    },

    /// This process held the lease for a refresh and lost it before it was done: it was
    /// paused or slowed past the lease's time-to-live, and another process may have broken
    /// the lease and taken over the refresh. Nothing was sent (nor, inside
    /// [`Error::NotSaved`], saved) after the loss was seen, so the two never overlap; the
    /// stored session was kept. Trying again adopts the other process's session.
    #[error("lost the lease {} before the refresh was done (this process was paused or slowed past the lease's time-to-live, and another process may have taken over): nothing further was sent, saved or deleted; try again", lease_path.display())]
    LeaseLost {
        /// The lease file.
        lease_path: PathBuf,
    },

    /// The Redis server that keeps the session could not be reached or did not answer in
    /// time. No refresh is sent without its guard, and nothing was deleted.
    #[error(
        "the session store {location} is unavailable ({reason}); no refresh is sent without it and nothing was deleted: try again later"
    )]
    StoreUnavailable {
        /// The store's URL, without its password.
        location: String,
        /// What went wrong, as the connection reported it.
        reason: String,
    },

    /// The Redis server refused a command: a wrong password or ACL user, a user without the
    /// permission the store needs (`GET`, `SET`, `HGET`, `EVAL`, `INFO`), a key of another
    /// type, `rediss://` where this build has no TLS. Nothing was sent to the token endpoint.
    #[error(
        "the session store {location} refused the request ({reason}); check the URL, the password (or REDISCLI_AUTH) and the user's ACL"
    )]
    StoreRefused {
        /// The store's URL, without its password.
        location: String,
        /// The server's answer (it never quotes a password).
        reason: String,
    },

    /// A store URL (`redis://…`) that does not parse. The URL is not quoted: it may hold a
    /// password.
    #[error(
        "the store URL is not usable: {reason}; the form is redis://[user:password@]host:port[/db]?key=NAME"
    )]
    InvalidStoreUrl {
        /// What is wrong with it.
        reason: String,
    },

    /// The HTTP transport could not be set up: an extra CA file, `SSL_CERT_FILE`, a directory
    /// of `SSL_CERT_DIR`, or a client certificate or key cannot be read or holds nothing
    /// usable, the key does not match the certificate, there is no root to trust, or an
    /// explicit proxy URL is unusable. Nothing was sent; the stored session is untouched.
    #[error("{}{reason}", path.as_ref().map(|p| format!("cannot use {} for the HTTP transport: ", p.display())).unwrap_or_else(|| "cannot set up the HTTP transport: ".to_owned()))]
    TransportSetup {
        /// The file concerned, if it is about one.
        path: Option<PathBuf>,
        /// What is wrong, without quoting the file or a proxy password.
        reason: String,
    },

    /// The user or the authorization server refused the login (`access_denied`: the user
    /// aborted on the device page or cancelled at consent). Nothing was stored.
    #[error("the login was refused{}; nothing was stored, log in again to retry", description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    LoginDenied {
        /// The server's `error_description`, if any (scrubbed, at most 200 characters).
        description: Option<String>,
        /// The refusal came back through the browser's redirect (loopback or pasted), which
        /// anyone who read the login's `state` can forge: it ends this login only, and is
        /// not passed on to the callers waiting for it ([`crate::Store::login_with`]).
        via_redirect: bool,
    },

    /// The login was not completed in time: the device code expired (`expired_token`) or
    /// the login's own deadline passed. Nothing was stored.
    #[error("the login was not completed in time ({what}); nothing was stored, log in again")]
    LoginExpired {
        /// What expired.
        what: String,
    },

    /// A pasted redirect URL carried a `state` other than the one this login sent: it does
    /// not answer this login (a stale tab, or a forged redirect). Nothing was exchanged or
    /// stored. (The browser flow answers such a redirect with an error page and keeps
    /// waiting for the right one.)
    #[error(
        "the pasted redirect carried the wrong state (not this login's request: a stale browser tab, or a forged redirect); nothing was stored"
    )]
    LoginStateMismatch,

    /// The authorization server refused a login request (the device authorization request,
    /// the code exchange, a device-code poll, or an error in the redirect). A rejected client
    /// or scope is a configuration error ([`Error::is_configuration`]); anything else asks for
    /// a new login.
    #[error("{endpoint} refused the login {}{}; {}", if *status == 302 { "in its redirect back to credlock:".to_owned() } else { format!("with HTTP {status}") }, oauth.as_ref().map(|o| format!(" {o}")).unwrap_or_default(), if login_rejects_configuration(*status, oauth.as_ref()) { "check the client's configuration (client id, secret, scopes, grant types)" } else { "log in again" })]
    LoginRefused {
        /// The endpoint (or `the authorization endpoint` for an error in the redirect).
        endpoint: String,
        /// The HTTP status (302 for an error in the redirect, which the message names as a
        /// redirect rather than a status).
        status: u16,
        /// The RFC 6749 §5.2 error, if the body held one.
        oauth: Option<OAuthError>,
    },

    /// The authorization endpoint refused the authorization request itself: asked without
    /// cookies, before the browser was opened, it answered HTTP 400 with a page of its own
    /// instead of a login page or a redirect (RFC 6749 §4.1.2.1: an unknown client or an
    /// unregistered redirect URI is shown to the user, never redirected back). The browser
    /// would never come back, so the login stops at once. Nothing was stored.
    #[error(
        "{endpoint} refused the authorization request itself (HTTP {status}, an error page rather than a login page), so the browser would never come back; check the client id, that the client's registered redirect URIs include {redirect_uri} exactly (a client registered with a fixed port needs it: --port, Login::with_port), and the scopes asked for"
    )]
    LoginRequestRejected {
        /// The authorization endpoint.
        endpoint: String,
        /// The HTTP status it answered.
        status: u16,
        /// The redirect URI the request named.
        redirect_uri: String,
    },

    /// An endpoint of the login could not be reached or is overloaded (network error,
    /// timeout, 408, 425, 429, 5xx). Try again later.
    #[error("could not log in at {endpoint}: {reason}; try again later")]
    LoginUnavailable {
        /// The endpoint.
        endpoint: String,
        /// What happened.
        reason: String,
    },

    /// An endpoint of the login answered something unusable (not JSON, the wrong shape, a
    /// redirect). An oversized answer, cut unread, is [`Error::LoginUnavailable`].
    #[error("{endpoint} sent an unusable response during the login: {reason}")]
    LoginInvalidResponse {
        /// The endpoint.
        endpoint: String,
        /// What is wrong with it, without quoting it.
        reason: String,
    },

    /// The issuer does not support what the login needs: no discovery document, no
    /// authorization or device authorization endpoint for the flow asked for.
    #[error("cannot log in with {issuer}: {reason}")]
    LoginUnsupported {
        /// The issuer (or the endpoint given).
        issuer: String,
        /// What is missing.
        reason: String,
    },

    /// The login could not continue on this machine: the loopback port could not be bound,
    /// the browser could not be started, standard input closed before a code was pasted.
    #[error("the login could not continue: {reason}")]
    LoginAborted {
        /// What happened.
        reason: String,
    },

    /// The session file is sealed with a key in the OS keychain (or is to be), and the
    /// keychain did not give or take the key: missing, locked, refusing, too slow, or the key
    /// is gone. The file was left as it was: never rewritten in the clear, never deleted.
    #[error("the OS keychain could not give key {key_id} of the session file {}: {} ({detail}); the file was left untouched: {}", path.display(), .problem.what(), .problem.advice())]
    Keychain {
        /// The session file.
        path: PathBuf,
        /// The key's id (`(new)` for a key being created).
        key_id: String,
        /// What went wrong.
        problem: KeychainProblem,
        /// The keychain's own words (never a secret).
        detail: String,
    },

    /// The sealed session file does not decrypt with its key from the keychain: the file was
    /// altered, or the keychain entry was replaced. The file was left untouched.
    #[error("the sealed session file {} does not decrypt with key {key_id} from the OS keychain (the file was altered, or the keychain entry under that id was replaced); the file was left untouched: restore the file or the keychain entry, or remove the file and log in again", path.display())]
    Undecryptable {
        /// The session file.
        path: PathBuf,
        /// The key's id.
        key_id: String,
    },

    /// The session file is sealed in a format version, scheme or key source this credlock does
    /// not know (a newer credlock wrote it). The file was left untouched.
    #[error("the session file {} is sealed as `{scheme}`, which this credlock cannot read; the file was left untouched: use the credlock that wrote it (or a newer one)", path.display())]
    UnsupportedProtection {
        /// The session file.
        path: PathBuf,
        /// The format or scheme named by the file's header.
        scheme: String,
    },

    /// A change of protection was refused, and nothing was changed: a per-machine keychain
    /// cannot protect a file that several machines share.
    #[error("credlock will not change the protection of {}: {reason}; nothing was changed", path.display())]
    ProtectionRefused {
        /// The session file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{}]", self.with_causes(), self.kind())
    }
}

/// `?` on [`crate::TokenResponse::from_json`] in a function returning [`Error`]: an unusable
/// token response, [`Error::InvalidTokenResponse`].
impl From<ResponseError> for Error {
    fn from(reason: ResponseError) -> Error {
        Error::InvalidTokenResponse { reason }
    }
}
