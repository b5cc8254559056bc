//! TLS in ureq's connector chain with credlock's own rustls configuration (roots, client
//! identity), where ureq's `RustlsConnector` would take its configuration from `TlsConfig`,
//! which can neither add roots to the platform's nor report a bad identity before a request.
//!
//! Built on `ureq::unversioned::transport`, which ureq does not cover by semver: a ureq update
//! that changes it breaks the build here, not behaviour.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::tls::{BuiltTls, TlsSettings};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout,
    TcpConnector, Transport, TransportAdapter,
};

/// How environment variables are read (`std::env::var_os`, or a map in tests).
pub(super) type Env = Box<dyn Fn(&str) -> Option<OsString> + Send + Sync>;

/// The TLS configuration of a transport, shared by its agents: read when the transport is
/// built ([`TransportBuilder::build`](super::TransportBuilder::build)), or at its first https
/// connection ([`UreqTransport::new`](super::UreqTransport::new)), so that a transport used
/// only for loopback http never reads the trust store. A lazy read that fails is tried again
/// at the next https connection: a bundle being rewritten by a package update must not
/// refuse every request of a long-lived process until it restarts.
pub(super) struct SharedTls {
    cell: OnceLock<BuiltTls>,
    failed: Mutex<Option<String>>,
    lazy: Option<(TlsSettings, Env)>,
}

impl SharedTls {
    pub(super) fn ready(built: BuiltTls) -> SharedTls {
        SharedTls {
            cell: OnceLock::from(built),
            failed: Mutex::new(None),
            lazy: None,
        }
    }

    pub(super) fn lazy(settings: TlsSettings, env: Env) -> SharedTls {
        SharedTls {
            cell: OnceLock::new(),
            failed: Mutex::new(None),
            lazy: Some((settings, env)),
        }
    }

    /// The configuration, built now if it was not; or why it cannot be.
    pub(super) fn get(&self) -> Result<&BuiltTls, String> {
        self.try_get().map_err(|e| {
            format!(
                "the HTTP transport could not be set up, so nothing was sent: {}",
                e.with_causes()
            )
        })
    }

    /// [`SharedTls::get`] with the typed error ([`Error::TransportSetup`] for files that
    /// cannot be used).
    pub(super) fn try_get(&self) -> Result<&BuiltTls, crate::error::Error> {
        if let Some(built) = self.cell.get() {
            return Ok(built);
        }
        let Some((settings, env)) = &self.lazy else {
            return Err(crate::error::Error::TransportSetup {
                path: None,
                reason: "the HTTP transport has no TLS configuration".to_owned(),
            });
        };
        match super::tls::build(settings, &|name| env(name)) {
            Ok(built) => Ok(self.cell.get_or_init(|| built)),
            Err(e) => {
                let why = format!(
                    "the HTTP transport could not be set up, so nothing was sent: {}",
                    e.with_causes()
                );
                *self.failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
                Err(e)
            }
        }
    }

    /// Where the roots came from, if they were read yet; else why they could not be.
    pub(super) fn describe(&self) -> String {
        if let Some(built) = self.cell.get() {
            return built.source.clone();
        }
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| "not read yet (at the first https request)".to_owned())
    }
}

/// Why an https connection could not even start: the TLS configuration is unusable.
#[derive(Debug)]
pub(super) struct Unusable(pub(super) String);

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unusable {}

/// Wraps an `https` connection made earlier in the chain in TLS.
pub(super) struct TlsConnector {
    tls: Arc<SharedTls>,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector").finish_non_exhaustive()
    }
}

/// ureq's chain without SOCKS: a CONNECT proxy if the agent has one, TCP, then TLS.
pub(super) fn connector(tls: Arc<SharedTls>) -> impl Connector {
    ().chain(ConnectProxyConnector::default())
        .chain(TcpConnector::default())
        .chain(TlsConnector { tls })
}

impl<In: Transport> Connector<In> for TlsConnector {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details
            .uri
            .authority()
            .map(|a| a.host().trim_start_matches('[').trim_end_matches(']'))
            .unwrap_or("");
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| ureq::Error::Tls("the host is not a valid DNS name or IP address"))?;
        let config = self
            .tls
            .get()
            .map_err(|why| ureq::Error::Other(Box::new(Unusable(why))))?;
        let mut conn =
            ClientConnection::new(Arc::clone(&config.config), name).map_err(ureq::Error::Rustls)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)?;
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(TlsTransport {
            buffers,
            stream: StreamOwned { conn, sock },
        })))
    }
}

/// An HTTP/1.1 connection inside TLS.
pub(super) struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport")
            .field("chained", &self.stream.sock.inner())
            .finish()
    }
}

impl TlsTransport {
    /// The TLS alert behind a failed write or read, if the server sent one, else `e`. With
    /// TLS 1.3 a server that refuses the client's certificate (or its absence) does so after
    /// the client's handshake is done: the request's write then fails with a broken pipe or
    /// a reset while the server's alert, which says why, waits unread.
    fn alert_or(&mut self, e: std::io::Error) -> ureq::Error {
        if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
            return e.into();
        }
        let StreamOwned { conn, sock } = &mut self.stream;
        if conn.wants_read()
            && conn.read_tls(sock).is_ok_and(|n| n > 0)
            && let Err(tls) = conn.process_new_packets()
        {
            return ureq::Error::Rustls(tls);
        }
        e.into()
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        if let Err(e) = self.stream.write_all(output) {
            return Err(self.alert_or(e));
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = match self.stream.read(input) {
            Ok(n) => n,
            Err(e) => return Err(self.alert_or(e)),
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}
