//! A copy of an [`Error`], for the tasks that shared one refresh and for callers that log an
//! error and return it.

use super::Error;

/// A copy of the error, for the tasks that shared one refresh ([`crate::AsyncStore`]) and for
/// callers that log an error and return it. An OS error is copied as its kind, its raw code
/// when it has one, and its message.
impl Clone for Error {
    fn clone(&self) -> Error {
        match self {
            Error::NoSession { path } => Error::NoSession { path: path.clone() },
            Error::Corrupt { path, reason } => Error::Corrupt {
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::UnsupportedVersion {
                path,
                found,
                supported,
            } => Error::UnsupportedVersion {
                path: path.clone(),
                found: *found,
                supported: *supported,
            },
            Error::NotASessionFile { path, reason } => Error::NotASessionFile {
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::Io {
                action,
                path,
                source,
            } => Error::Io {
                action,
                path: path.clone(),
                source: copy_io_error(source),
            },
            Error::LockTimeout { lock_path, waited } => Error::LockTimeout {
                lock_path: lock_path.clone(),
                waited: *waited,
            },
            Error::SessionExpired {
                path,
                deleted,
                unexplained,
            } => Error::SessionExpired {
                path: path.clone(),
                deleted: *deleted,
                unexplained: *unexplained,
            },
            Error::Rejected {
                path,
                status,
                oauth,
            } => Error::Rejected {
                path: path.clone(),
                status: *status,
                oauth: oauth.clone(),
            },
            Error::Unavailable {
                path,
                reason,
                retry_after,
            } => Error::Unavailable {
                path: path.clone(),
                reason: reason.clone(),
                retry_after: *retry_after,
            },
            Error::InvalidResponse { path, reason } => Error::InvalidResponse {
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::IncompleteRefresh {
                path,
                reason,
                save_error,
            } => Error::IncompleteRefresh {
                path: path.clone(),
                reason: reason.clone(),
                save_error: save_error.clone(),
            },
            Error::InsecureEndpoint { url } => Error::InsecureEndpoint { url: url.clone() },
            Error::InvalidEndpoint { url, reason } => Error::InvalidEndpoint {
                url: url.clone(),
                reason: reason.clone(),
            },
            Error::InvalidTokenResponse { reason } => Error::InvalidTokenResponse {
                reason: reason.clone(),
            },
            Error::MissingRefreshToken => Error::MissingRefreshToken,
            Error::MissingClientSecret { path, variable } => Error::MissingClientSecret {
                path: path.clone(),
                variable: variable.clone(),
            },
            Error::NoRevocationEndpoint { path } => {
                Error::NoRevocationEndpoint { path: path.clone() }
            }
            Error::RevocationUnavailable { path, reason } => Error::RevocationUnavailable {
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::RevocationRefused {
                path,
                status,
                oauth,
                public_client,
            } => Error::RevocationRefused {
                path: path.clone(),
                status: *status,
                oauth: oauth.clone(),
                public_client: *public_client,
            },
            Error::NotSaved { session, source } => Error::NotSaved {
                session: session.clone(),
                source: source.clone(),
            },
            Error::LeaseLost { lease_path } => Error::LeaseLost {
                lease_path: lease_path.clone(),
            },
            Error::StoreUnavailable { location, reason } => Error::StoreUnavailable {
                location: location.clone(),
                reason: reason.clone(),
            },
            Error::StoreRefused { location, reason } => Error::StoreRefused {
                location: location.clone(),
                reason: reason.clone(),
            },
            Error::InvalidStoreUrl { reason } => Error::InvalidStoreUrl {
                reason: reason.clone(),
            },
            Error::TransportSetup { path, reason } => Error::TransportSetup {
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::LoginDenied {
                description,
                via_redirect,
            } => Error::LoginDenied {
                via_redirect: *via_redirect,
                description: description.clone(),
            },
            Error::LoginExpired { what } => Error::LoginExpired { what: what.clone() },
            Error::LoginStateMismatch => Error::LoginStateMismatch,
            Error::LoginRefused {
                endpoint,
                status,
                oauth,
            } => Error::LoginRefused {
                endpoint: endpoint.clone(),
                status: *status,
                oauth: oauth.clone(),
            },
            Error::LoginUnavailable { endpoint, reason } => Error::LoginUnavailable {
                endpoint: endpoint.clone(),
                reason: reason.clone(),
            },
            Error::LoginInvalidResponse { endpoint, reason } => Error::LoginInvalidResponse {
                endpoint: endpoint.clone(),
                reason: reason.clone(),
            },
            Error::LoginRequestRejected {
                endpoint,
                status,
                redirect_uri,
            } => Error::LoginRequestRejected {
                endpoint: endpoint.clone(),
                status: *status,
                redirect_uri: redirect_uri.clone(),
            },
            Error::LoginUnsupported { issuer, reason } => Error::LoginUnsupported {
                issuer: issuer.clone(),
                reason: reason.clone(),
            },
            Error::LoginAborted { reason } => Error::LoginAborted {
                reason: reason.clone(),
            },
            Error::Keychain {
                path,
                key_id,
                problem,
                detail,
            } => Error::Keychain {
                path: path.clone(),
                key_id: key_id.clone(),
                problem: *problem,
                detail: detail.clone(),
            },
            Error::Undecryptable { path, key_id } => Error::Undecryptable {
                path: path.clone(),
                key_id: key_id.clone(),
            },
            Error::UnsupportedProtection { path, scheme } => Error::UnsupportedProtection {
                path: path.clone(),
                scheme: scheme.clone(),
            },
            Error::ProtectionRefused { path, reason } => Error::ProtectionRefused {
                path: path.clone(),
                reason: reason.clone(),
            },
        }
    }
}

fn copy_io_error(e: &std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}
