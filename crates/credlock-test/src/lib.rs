//! A test kit for code built on credlock: add it as a dev-dependency (`credlock-test`).
//!
//! - [`ManualClock`]: time that moves only when told, so expiry needs no sleeping.
//! - [`FakeServer`]: a token server that rotates refresh tokens and applies a [`ReusePolicy`]
//!   to a reused one, with scripted failures, latency and counters.
//! - [`FakeTransport`]: the fake server in memory, as a [`credlock::Transport`].
//! - [`HttpServer`]: the same fake server over real HTTP on 127.0.0.1, for several processes.
//! - Login endpoints on both: discovery (`/.well-known/openid-configuration`), the device
//!   flow (RFC 8628) and the authorization code with PKCE S256, where a [`ScriptedUser`]
//!   approves, denies or never answers ([`FakeServerBuilder::user`], [`FakeServer::set_user`]);
//!   [`FakeServer::open_browser`] is the browser of [`credlock::Login::browser`]. A consumer
//!   tests "log in on first use" with [`credlock::Login`] and its own code, without a network.
//! - `strategies` (feature `proptest`): proptest strategies for sessions and token responses,
//!   hostile ones included, and an example of a consumer's property test.
//! - The lock mode and the filesystem kind are forced on the store itself:
//!   [`credlock::Store::with_lock_mode`], [`credlock::Store::with_filesystem_kind`].
//!
//! credlock's own tests use this kit. Add it as a dev-dependency beside `credlock`:
//!
//! ```toml
//! [dev-dependencies]
//! credlock-test = { version = "0.1", features = ["proptest"] }  # `proptest`: the strategies
//! ```
//!
//! It uses only credlock's public API and its hidden `credlock::internal` module (no semver
//! promise): keep the two crates at the same version.
//!
//! # Examples
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use credlock_test::{FakeServer, FakeTransport, ManualClock, ReusePolicy};
//!
//! let clock = ManualClock::starting_now();
//! let server = FakeServer::builder().policy(ReusePolicy::RevokeGrant).clock(clock.clone()).build();
//! let dir = tempfile::tempdir()?;
//! let store = credlock::Store::new(dir.path().join("session.json"))
//!     .with_clock(clock.clone())
//!     .with_transport(Arc::new(FakeTransport::new(server.clone())));
//! store.save(&server.seed_session("http://127.0.0.1/token")?)?;
//!
//! clock.advance(Duration::from_secs(3600));          // the access token expires
//! let token = store.access_token()?;
//! assert!(token.refreshed());
//! assert_eq!(server.counters().refreshes_ok, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

mod clock;
mod http_server;
mod server;
#[cfg(feature = "proptest")]
#[cfg_attr(docsrs, doc(cfg(feature = "proptest")))]
pub mod strategies;

pub use clock::ManualClock;
pub use http_server::HttpServer;
pub use server::{
    Counters, Failure, FakeServer, FakeServerBuilder, FakeTransport, ReusePolicy, ScriptedUser,
    TEST_CLIENT_ID,
};
