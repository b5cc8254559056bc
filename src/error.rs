//! Every way credlock can fail, and what the caller should do about it.

use std::path::PathBuf;
use std::time::Duration;

use crate::oauth::OAuthError;
use crate::session::Session;

/// An error from the store or the refresh protocol.
///
/// Each variant names the file it concerns. [`Error::needs_login`] tells "ask the user to log
/// in again" from "try again later" ([`Error::is_transient`]). No variant's `Debug` or
/// `Display` contains a token or a secret.
#[derive(Debug, thiserror::Error)]
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
    #[error("could not {action} {}: {source}", path.display())]
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
    #[error("could not lock {} within {:.1} s: another process is refreshing or hung. If no credlock process is running, the OS lock is gone and this is a bug; the lock file itself never needs deleting", lock_path.display(), waited.as_secs_f64())]
    LockTimeout {
        /// The sidecar lock file.
        lock_path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },

    /// The token endpoint refused the refresh token (`invalid_grant`) and no newer session
    /// appeared: the grant is gone. The session was deleted only if the file still held the
    /// very refresh token that failed.
    #[error("the session in {} has expired or was revoked (invalid_grant); log in again{}", path.display(), if *deleted { " (the stale session was removed)" } else { "" })]
    SessionExpired {
        /// The session file.
        path: PathBuf,
        /// Whether the stale session was deleted.
        deleted: bool,
    },

    /// The token endpoint rejected the request for another reason (another OAuth error, or
    /// another 4xx). The stored session was kept: the cause may be a misconfiguration.
    #[error("the token endpoint rejected the refresh of {} with HTTP {status}{}; log in again (the stored session was kept)", path.display(), oauth.as_ref().map(|o| format!(" {o}")).unwrap_or_default())]
    Rejected {
        /// The session file.
        path: PathBuf,
        /// The HTTP status.
        status: u16,
        /// The RFC 6749 §5.2 error, if the body held one.
        oauth: Option<OAuthError>,
    },

    /// The token endpoint could not be reached or is overloaded (network error, timeout, 429,
    /// 5xx). The stored session was kept; try again later.
    #[error("could not refresh {}: {reason}; try again later (the stored session was kept)", path.display())]
    Unavailable {
        /// The session file.
        path: PathBuf,
        /// What happened.
        reason: String,
        /// The `Retry-After` header, if the server sent one.
        retry_after: Option<String>,
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

    /// The endpoint is plain HTTP to a host that is not loopback.
    #[error(
        "refusing to send credentials to {url}: the endpoint must use https (plain http is allowed for loopback hosts only)"
    )]
    InsecureEndpoint {
        /// The endpoint.
        url: String,
    },

    /// A token response without a refresh token cannot start a session.
    #[error(
        "the token response has no refresh_token; credlock needs one to keep the session alive (request the offline_access scope or enable refresh tokens for the client)"
    )]
    MissingRefreshToken,

    /// The refresh succeeded but the new session could not be saved. The old file is
    /// untouched; the new session is here, so the caller can still use its access token.
    /// The server has already rotated the refresh token, so the stored one is now stale.
    #[error("refreshed the session but could not save it: {source}")]
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
    #[error("lost the lease {} before the refresh was done (this process was paused or slowed past the lease's time-to-live, and another process may have taken over): nothing further was sent or saved; try again", lease_path.display())]
    LeaseLost {
        /// The lease file.
        lease_path: PathBuf,
    },
}

impl Error {
    /// Whether the user must log in again: no session, the grant is gone, or the server
    /// rejected the client. Retrying will not help.
    #[must_use]
    pub fn needs_login(&self) -> bool {
        matches!(
            self,
            Error::NoSession { .. }
                | Error::SessionExpired { .. }
                | Error::Rejected { .. }
                | Error::MissingRefreshToken
        )
    }

    /// Whether trying again later may succeed: the server is unavailable, or another process
    /// held the lock too long, or took the lease over.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Unavailable { .. } | Error::LockTimeout { .. } | Error::LeaseLost { .. }
        )
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}
