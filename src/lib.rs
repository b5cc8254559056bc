//! # credlock
//!
//! One OAuth session on disk, and a valid access token for every process that shares it.
//!
//! A CLI, an IDE plugin and a few scripts often share one stored session: an access token and
//! a **rotating** refresh token. When the access token expires they all refresh at once; the
//! server rotates the refresh token for the first and answers `invalid_grant` to the others.
//! Servers such as Auth0, Okta, Ory Hydra and node-oidc-provider treat the reuse of a rotated
//! refresh token as theft and revoke the whole grant: one duplicate refresh logs everybody out.
//!
//! credlock prevents the duplicate instead of recovering from it:
//!
//! - **Lock first.** A refresh takes an exclusive advisory lock on a sidecar `<file>.lock`,
//!   re-reads the store under the lock, and refreshes only if the session is still stale.
//!   Processes that wait adopt the winner's session as soon as it is saved. With working locks
//!   there is exactly one refresh request per expiry, however many processes ask.
//! - **Atomic, durable writes.** Temp file (0600) in the same directory, write, `fsync`,
//!   rename over the target, `fsync` the directory. Readers take no lock and never see a torn
//!   file on a local disk; a read that does not parse is retried before it is called corrupt.
//! - **A safe `invalid_grant` fallback** for filesystems where locks do not reach other
//!   machines (NFS without a lock manager, SMB, FUSE): re-read the store for a sibling's newer
//!   session before giving up, and delete nothing unless the store still holds the very
//!   refresh token that failed (compare-and-delete).
//!
//! ## Example
//! ```no_run
//! use credlock::{Client, ClientAuth, Secret, Store};
//!
//! let store = Store::new("/home/me/.config/my-cli/session.json");
//!
//! // After a login done elsewhere (device flow, browser redirect), store the session once
//! // (or build the response with `TokenResponse::builder`, or convert oauth2-rs's):
//! let client = Client::new(
//!     "https://auth.example.com/oauth/token",
//!     "my-cli",
//!     ClientAuth::Basic { secret: Secret::new("client-secret") },
//! )?;
//! store.import_json(client, br#"{"access_token":"at-1","token_type":"Bearer",
//!     "expires_in":3600,"refresh_token":"rt-1"}"#)?;
//!
//! // Before every API call, in any number of processes:
//! let token = store.access_token()?;
//! let header = format!("Authorization: Bearer {}", token.secret());
//! # let _ = header;
//! # Ok::<(), credlock::Error>(())
//! ```
//!
//! ## Errors
//! Every fallible call returns [`Error`]. [`Error::needs_login`] means "ask the user to log in
//! again"; [`Error::is_transient`] means "try again later". A network error, a 408, 425, 429
//! or a 5xx never deletes credentials; a corrupt file is reported and never deleted or overwritten.
//!
//! ## Security
//! The session file and the lock file are created mode 0600 and their directory 0700.
//! Tokens and secrets are [`Secret`]s: their `Debug` is redacted and they have no `Display`;
//! no error, event or panic message contains one. Credentials are sent only over HTTPS, or
//! plain HTTP to a loopback host. Symbolic links at the session path are refused.
//!
//! ## Platforms
//! Linux is tested in full. Windows: the test suite runs under Wine in CI (readers share
//! read, write and delete so a replace is never blocked; a rename over a file another handle
//! holds is retried for up to 2 s); the file's protection comes from its directory's ACL
//! (`%APPDATA%` is the user's own), not from mode bits; only its time-to-live breaks a lease.
//! macOS: `F_FULLFSYNC` for durable saves, type-checked for an Apple target but never run.
//! MSRV: Rust 1.88, checked in CI. `docs/platforms.md` says what is tested, what is only
//! compiled, and what is neither.
//!
//! ## Async
//! [`Store`]'s methods **block**: a file read on the hot path; when a refresh is due, the
//! wait for the lock and the lease and the HTTP request. In async programs use `AsyncStore`
//! (feature `tokio`), which runs them on tokio's blocking pool and shares one refresh in
//! flight among the tasks of a process.
//!
//! ## TLS roots and proxies
//! The default transport trusts the operating system's certificate store (so a corporate
//! network's intercepting root CA is trusted as in the browser), or `SSL_CERT_FILE` /
//! `SSL_CERT_DIR` instead of it when they are set, and Mozilla's bundled roots where no store
//! can be read. Proxies come from `https_proxy` / `http_proxy` / `all_proxy` with `NO_PROXY`,
//! as in curl; a loopback endpoint never goes through one. `UreqTransport::builder()` (in
//! [`transport`]) chooses otherwise: extra CA files, a client certificate for mutual TLS, an
//! explicit proxy, timeouts; hand the result to [`Store::with_transport`].
//!
//! ## Seeing what it does
//! [`Store::on_event`] hears every [`Event`]. With the feature `tracing`, the lock wait, the
//! lease, the refresh and the save are also spans (with their outcome and duration) and every
//! event a tracing event, under the target `credlock`, never with a secret
//! (`docs/tracing.md`).
//!
//! ## Machines that share no disk
//! With the feature `redis`, a session can live on a Redis or Valkey server instead of a
//! file (`Store::redis`, and `Fleet` for one session per user or tenant): the same protocol,
//! with a guard key renewed by a heartbeat and Lua scripts for the compare-and-swap save and
//! the compare-and-delete (`docs/fleet.md`).
//!
//! ## Network filesystems
//! Advisory locks on NFS without a lock manager (`nolock`, `local_lock=`), SMB and most FUSE
//! filesystems do not exclude other machines. credlock detects those ([`filesystem`]) and, in
//! the default [`LockMode::Auto`], adds a lease file that works across machines
//! ([`LockPlan`], `docs/filesystems.md`), and says so once ([`Event::LeaseInForce`], routine:
//! the lease is a full guard). Only an advisory lock forced there, or no locks at all, is
//! degraded ([`Event::LocksUnavailable`], a warning).
//!
//! ## Limitations
//! - The lease relies on clocks agreeing within its time-to-live (120 s by default) and on a
//!   holder not being paused longer than that. Network filesystems that `statfs` does not
//!   reveal (all of them on Windows) get the advisory lock alone unless forced.
//! - A process killed after the server rotated the token but before the save loses that
//!   rotation; the next refresh then uses a consumed token. A server-side reuse grace period
//!   closes this window.
//!
//! The design, its invariants and a table of every failure are in `docs/design.md`.
#![forbid(unsafe_code)]
// docs.rs builds with `--cfg docsrs` (Cargo.toml): feature badges on the gated items.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

// The layers, lowest first, one group a level (a blank line between groups, so rustfmt keeps
// the order); each imports only the levels above it in this list. `api/module-graph` checks
// it (its LAYERS is this list), that a layer imports a sibling on its level only where its
// SIBLINGS allows (`protection` reads the session file's format from `file`, `redis` takes its
// TLS from `wire`), and that no two files import each other.
mod basics;

mod session;

mod error;

mod trace;

mod file;
mod protection;
#[cfg(feature = "redis")]
mod redis;
mod wire;

pub mod login;

mod store;

pub use basics::clock::{Clock, SystemClock};
pub use basics::secret::Secret;
pub use error::Error;
pub use file::filesystem;
pub use file::filesystem::FsKind;
pub use login::{DeviceCode, Endpoints, Flow, Login, Prompt};
pub use protection::{DEFAULT_KEYCHAIN_TIMEOUT, FileProtection, KeychainProblem, Protection};
pub use session::claims::UnverifiedClaims;
pub use session::model::{
    Client, ClientAuth, ClientCredentials, SESSION_FORMAT_VERSION, SecretMethod, Session,
};
pub use session::oauth_error::{OAuthError, OAuthErrorCode};
pub use session::token_response::{ResponseError, TokenResponse, TokenResponseBuilder};
pub use store::access_token::AccessToken;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use store::async_store::AsyncStore;
pub use store::location::{
    DEFAULT_PROFILE, LocationError, MAX_PROFILE_NAME_LEN, config_dir, default_session_path,
    session_path_in, validate_profile_name,
};
pub use store::lock_plan::{Guards, LockPlan};
pub use store::options::{
    DEFAULT_LEASE_TTL, DEFAULT_LOCK_TIMEOUT, DEFAULT_MARGIN, DEFAULT_POLL_SCHEDULE, LockMode,
    NETWORK_POLL_SCHEDULE,
};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use store::{Fleet, Persistence};
pub use store::{LoggedIn, LoggedOut, Protected, Revocation, Store};
pub use trace::event::Event;
pub use wire::http::{Transport, TransportError, UreqTransport};

/// The HTTP seam, for a [`Transport`] of one's own: the request it is handed and the
/// response it returns.
pub mod transport {
    pub use crate::wire::form::FormRequest;
    pub use crate::wire::http::{
        HttpResponse, Peek, Roots, Transport, TransportBuilder, TransportError, UreqTransport,
    };
}

/// For credlock's own CLI (`credlock-cli`), test kit (`credlock-test`) and fuzz targets: **no
/// semver promise**. Anything here may change or go in any release (rustls's `internal`).
#[doc(hidden)]
pub mod internal {
    pub use crate::basics::clock::rfc3339;
    pub use crate::basics::encoding::{
        base64, describe_json_error, form_urldecode, form_urlencode,
    };
    pub use crate::file::atomic::{read_private_file, write_private_file};
    pub use crate::file::filesystem::kind::classify_f_type;
    pub use crate::file::filesystem::mountinfo::{MountInfo, mount_of};
    pub use crate::file::lease::{Holder, LeaseRecord, release_held_leases};
    pub use crate::protection::envelope::{open_with_key, seal_with_key};
    pub use crate::protection::keys::remember_key_for_tests;
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub use crate::redis::{RedisUrl, Reply, ReplyFailure, read_reply};
}

/// The README's Rust examples, compiled and run as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
