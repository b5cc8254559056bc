//! What the caller should do about an error: log in again, fix the configuration, or try
//! again later; and its stable kind.

use std::path::PathBuf;

use super::Error;
use super::rejection::{login_rejects_configuration, rejects_client};

impl Error {
    /// Whether the user must log in again: no session, or the grant is gone (or the server
    /// refused the refresh for a reason a new grant may fix). Retrying will not help.
    /// Configuration errors are not in this class: see [`Error::is_configuration`].
    #[must_use]
    pub fn needs_login(&self) -> bool {
        match self {
            Error::NoSession { .. }
            | Error::SessionExpired { .. }
            | Error::LoginDenied { .. }
            | Error::LoginExpired { .. } => true,
            Error::Rejected { status, oauth, .. } => !rejects_client(*status, oauth.as_ref()),
            Error::LoginRefused { status, oauth, .. } => {
                !login_rejects_configuration(*status, oauth.as_ref())
            }
            _ => false,
        }
    }

    /// Whether the client's configuration is wrong, so that neither a new login nor a retry
    /// will help: the server rejects the client (`invalid_client`, `unauthorized_client`,
    /// `unsupported_grant_type`, HTTP 401), a token response carries no refresh token, the
    /// variable with a client-credentials session's secret is not set, an
    /// endpoint is insecure or malformed, the HTTP transport's files or proxy are unusable, or
    /// the OS keychain of a protected store does not give its key (unlock it, or unprotect
    /// the store where it does: a new login would not help).
    #[must_use]
    pub fn is_configuration(&self) -> bool {
        match self {
            Error::MissingRefreshToken
            | Error::MissingClientSecret { .. }
            | Error::InsecureEndpoint { .. }
            | Error::InvalidEndpoint { .. }
            | Error::TransportSetup { .. }
            | Error::LoginUnsupported { .. }
            | Error::LoginRequestRejected { .. }
            | Error::Keychain { .. }
            | Error::ProtectionRefused { .. }
            | Error::StoreRefused { .. }
            | Error::InvalidStoreUrl { .. } => true,
            Error::Rejected { status, oauth, .. } => rejects_client(*status, oauth.as_ref()),
            Error::LoginRefused { status, oauth, .. } => {
                login_rejects_configuration(*status, oauth.as_ref())
            }
            _ => false,
        }
    }

    /// Whether trying again later may succeed: the server is unavailable, another process
    /// held the lock too long, or a refresh came back incomplete and its new refresh token
    /// was saved.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Unavailable { .. }
                | Error::LockTimeout { .. }
                | Error::RevocationUnavailable { .. }
                | Error::LeaseLost { .. }
                | Error::StoreUnavailable { .. }
                | Error::LoginUnavailable { .. }
                | Error::IncompleteRefresh {
                    save_error: None,
                    ..
                }
        )
    }

    /// A stable, machine-readable name for the kind of error, in snake case
    /// (`"session_expired"`, `"unavailable"`, …): for scripts and JSON output.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NoSession { .. } => "no_session",
            Error::Corrupt { .. } => "corrupt",
            Error::UnsupportedVersion { .. } => "unsupported_version",
            Error::NotASessionFile { .. } => "not_a_session_file",
            Error::Io { .. } => "io",
            Error::LockTimeout { .. } => "lock_timeout",
            Error::SessionExpired { .. } => "session_expired",
            Error::Rejected { .. } => "rejected",
            Error::Unavailable { .. } => "unavailable",
            Error::InvalidResponse { .. } => "invalid_response",
            Error::IncompleteRefresh { .. } => "incomplete_refresh",
            Error::InsecureEndpoint { .. } => "insecure_endpoint",
            Error::InvalidEndpoint { .. } => "invalid_endpoint",
            Error::InvalidTokenResponse { .. } => "invalid_token_response",
            Error::MissingRefreshToken => "missing_refresh_token",
            Error::MissingClientSecret { .. } => "missing_client_secret",
            Error::NoRevocationEndpoint { .. } => "no_revocation_endpoint",
            Error::RevocationUnavailable { .. } => "revocation_unavailable",
            Error::RevocationRefused { .. } => "revocation_refused",
            Error::NotSaved { .. } => "not_saved",
            Error::LeaseLost { .. } => "lease_lost",
            Error::StoreUnavailable { .. } => "store_unavailable",
            Error::StoreRefused { .. } => "store_refused",
            Error::InvalidStoreUrl { .. } => "invalid_store_url",
            Error::TransportSetup { .. } => "transport_setup",
            Error::LoginDenied { .. } => "login_denied",
            Error::LoginExpired { .. } => "login_expired",
            Error::LoginStateMismatch => "login_state_mismatch",
            Error::LoginRefused { .. } => "login_refused",
            Error::LoginRequestRejected { .. } => "login_request_rejected",
            Error::LoginUnavailable { .. } => "login_unavailable",
            Error::LoginInvalidResponse { .. } => "login_invalid_response",
            Error::LoginUnsupported { .. } => "login_unsupported",
            Error::LoginAborted { .. } => "login_aborted",
            Error::Keychain { .. } => "keychain",
            Error::Undecryptable { .. } => "undecryptable",
            Error::UnsupportedProtection { .. } => "unsupported_protection",
            Error::ProtectionRefused { .. } => "protection_refused",
        }
    }

    /// The error and each of its causes on one line, separated by `: `, for a terminal or a log
    /// that does not print [`std::error::Error::source`] itself (`Display` leaves the causes
    /// out, as error-chain printers such as anyhow's expect).
    ///
    /// # Examples
    /// ```
    /// let e = credlock::Error::Io {
    ///     action: "write",
    ///     path: "/home/me/.config/my-cli/session.json".into(),
    ///     source: std::io::Error::other("no space left on device"),
    /// };
    /// assert_eq!(e.to_string(), "could not write /home/me/.config/my-cli/session.json");
    /// assert_eq!(
    ///     e.with_causes(),
    ///     "could not write /home/me/.config/my-cli/session.json: no space left on device"
    /// );
    /// ```
    #[must_use]
    pub fn with_causes(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
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
