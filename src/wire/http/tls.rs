//! Which server certificates the transport trusts, and the client identity it shows: the
//! rustls configuration, built once when the transport is built.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::Error;

/// The root certificates a [`UreqTransport`](super::UreqTransport) starts from, before any
/// [`extra_ca_file`](super::TransportBuilder::extra_ca_file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Roots {
    /// The operating system's trust store, so that a root CA installed by a corporate network
    /// (for TLS interception) is trusted as by the browser:
    ///
    /// - **Linux and other Unix**: the OpenSSL store files found by `openssl-probe`
    ///   (`/etc/ssl/certs/ca-certificates.crt`, `/etc/pki/tls/certs/ca-bundle.crt`, … and the
    ///   `certs` directories beside them), verified by webpki;
    /// - **macOS**: Security.framework (the keychains, with their trust settings);
    /// - **Windows**: the CryptoAPI certificate stores (`CertGetCertificateChain`).
    ///
    /// When `SSL_CERT_FILE` (a PEM bundle) or `SSL_CERT_DIR` (directories of PEM files,
    /// separated as in `PATH`) is set, the certificates they name are trusted **instead of**
    /// the operating system's store, on every platform, as curl and OpenSSL do; credlock
    /// reads them itself. Each must be a regular file of at most 16 MiB holding a
    /// certificate (a FIFO or a device is refused unread; files without one are skipped in
    /// a directory); an empty `SSL_CERT_FILE` is an error, empty `SSL_CERT_DIR` entries are
    /// skipped. Where the platform verifier cannot be built (a Linux container without CA
    /// files), the bundled roots are used instead ([`Roots::Bundled`]).
    ///
    /// The default.
    #[default]
    Platform,
    /// Mozilla's root certificates, compiled in (`webpki-roots`): the same everywhere, blind
    /// to roots installed on the machine. `SSL_CERT_FILE` and `SSL_CERT_DIR` are ignored.
    Bundled,
    /// No root at all: only the certificates given with
    /// [`extra_ca_file`](super::TransportBuilder::extra_ca_file) are trusted (at least one is
    /// needed). `SSL_CERT_FILE` and `SSL_CERT_DIR` are ignored.
    ExtraOnly,
}

/// Certificates with the file each came from.
type Named = Vec<(PathBuf, CertificateDer<'static>)>;

/// What the transport trusts and shows, as read from files when it is built.
#[derive(Debug, Clone, Default)]
pub(super) struct TlsSettings {
    pub(super) roots: Roots,
    pub(super) extra_ca_files: Vec<PathBuf>,
    pub(super) identity: Option<(PathBuf, PathBuf)>,
}

/// The rustls configuration, and where its roots came from (for `Debug`).
pub(super) struct BuiltTls {
    pub(super) config: Arc<rustls::ClientConfig>,
    pub(super) source: String,
}

/// The rustls configuration for `settings`, reading `SSL_CERT_FILE` and `SSL_CERT_DIR`
/// through `env`.
pub(super) fn build(
    settings: &TlsSettings,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<BuiltTls, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut extras = Vec::new();
    for path in &settings.extra_ca_files {
        for cert in certificates_in_file(path)? {
            // Checked here for every `Roots`: the bundled roots would drop an unusable one
            // silently, and the platform's verifier would refuse it, so that the platform's
            // store were swapped for the bundled roots without a word.
            rustls::RootCertStore::empty()
                .add(cert.clone())
                .map_err(|e| {
                    setup(
                        Some(path),
                        &format!("a certificate is not usable as a root ({e})"),
                    )
                })?;
            extras.push(cert);
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(None, &format!("rustls refused its defaults ({e})")))?;
    let (builder, source) = match settings.roots {
        Roots::Platform => match certificates_from_env(env)? {
            Some((named, certs)) => {
                let source = format!("{named} (instead of the platform's store)");
                (
                    builder.with_root_certificates(store(certs, extras)?),
                    source,
                )
            }
            None => match platform_verifier(&extras, &provider) {
                Ok(verifier) => (
                    builder
                        .dangerous() // not dangerous: the OS verifies, see `platform_verifier`
                        .with_custom_certificate_verifier(verifier),
                    "the platform's trust store".to_owned(),
                ),
                Err(why) => {
                    let mut roots = bundled();
                    roots.add_parsable_certificates(extras);
                    let source = format!("bundled webpki roots (platform store unusable: {why})");
                    (builder.with_root_certificates(roots), source)
                }
            },
        },
        Roots::Bundled => {
            let mut roots = bundled();
            roots.add_parsable_certificates(extras);
            (
                builder.with_root_certificates(roots),
                "bundled webpki roots".to_owned(),
            )
        }
        Roots::ExtraOnly => {
            if extras.is_empty() {
                return Err(setup(
                    None,
                    "no root certificate: Roots::ExtraOnly needs an extra_ca_file",
                ));
            }
            (
                builder.with_root_certificates(store(Vec::new(), extras)?),
                "the extra CA files only".to_owned(),
            )
        }
    };
    let config = match &settings.identity {
        None => builder.with_no_client_auth(),
        Some((chain_path, key_path)) => {
            let chain = certificates_in_file(chain_path)?;
            let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
                setup(
                    Some(key_path),
                    &format!("no usable PEM private key in it ({})", pem_reason(&e)),
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                setup(
                    Some(key_path),
                    &format!(
                        "the private key does not go with the certificate in {} ({e})",
                        chain_path.display()
                    ),
                )
            })?
        }
    };
    Ok(BuiltTls {
        config: Arc::new(config),
        source,
    })
}

/// The platform's verifier with `extras` added. It is first built without them, so that a
/// platform whose own store is unusable falls back to the bundled roots rather than to the
/// extras alone.
fn platform_verifier(
    extras: &[CertificateDer<'static>],
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<rustls_platform_verifier::Verifier>, String> {
    let plain =
        rustls_platform_verifier::Verifier::new(Arc::clone(provider)).map_err(|e| e.to_string())?;
    if extras.is_empty() {
        return Ok(Arc::new(plain));
    }
    #[cfg(not(target_os = "android"))]
    {
        rustls_platform_verifier::Verifier::new_with_extra_roots(
            extras.iter().cloned(),
            Arc::clone(provider),
        )
        .map(Arc::new)
        .map_err(|e| e.to_string())
    }
    #[cfg(target_os = "android")]
    {
        Err("extra roots are not supported by Android's verifier".to_owned())
    }
}

fn bundled() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// A root store of `certs` and `extras`; a certificate webpki cannot use as a trust anchor
/// is an error naming it.
fn store(
    certs: Named,
    extras: Vec<CertificateDer<'static>>,
) -> Result<rustls::RootCertStore, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for (path, cert) in certs {
        roots.add(cert).map_err(|e| {
            setup(
                Some(&path),
                &format!("a certificate is not usable as a root ({e})"),
            )
        })?;
    }
    for cert in extras {
        roots
            .add(cert)
            .map_err(|e| setup(None, &format!("an extra CA is not usable as a root ({e})")))?;
    }
    Ok(roots)
}

/// `SSL_CERT_FILE` (one PEM bundle) and `SSL_CERT_DIR` (directories of PEM files, separated
/// as `PATH` is; empty entries skipped), if either is set: which were set, and their
/// certificates.
fn certificates_from_env(
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Option<(String, Named)>, Error> {
    let file = env("SSL_CERT_FILE").map(PathBuf::from);
    if file.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
        // OpenSSL finds no certificate in "", and the platform's loader on Linux would take
        // it for a file too: say so rather than pick roots silently.
        return Err(setup(
            None,
            "SSL_CERT_FILE is set but empty; unset it, or name a PEM file of root certificates",
        ));
    }
    let dirs: Vec<PathBuf> = env("SSL_CERT_DIR")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if file.is_none() && dirs.is_empty() {
        return Ok(None);
    }
    let mut certs = Vec::new();
    let mut named = Vec::new();
    if let Some(file) = file {
        named.push(format!("SSL_CERT_FILE={}", file.display()));
        for cert in certificates_in_file(&file)? {
            certs.push((file.clone(), cert));
        }
    }
    for dir in &dirs {
        named.push(format!("SSL_CERT_DIR entry {}", dir.display()));
        let before = certs.len();
        certs.extend(certificates_in_dir(dir)?);
        if certs.len() == before {
            return Err(setup(
                Some(dir),
                "SSL_CERT_DIR names it, but no file in it holds a PEM certificate",
            ));
        }
    }
    Ok(Some((named.join(", "), certs)))
}

/// Every certificate in the regular files (symbolic links followed) of `dir`; files that
/// hold none (CRLs, READMEs) are skipped, as OpenSSL does.
fn certificates_in_dir(dir: &Path) -> Result<Named, Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        setup(
            Some(dir),
            &format!("SSL_CERT_DIR names it, but it cannot be listed ({e})"),
        )
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        // An unreadable or certificate-free file in a shared directory is skipped: the
        // directory as a whole must still hold a certificate (checked by the caller).
        if let Ok(certs) = certificates_in_file(&path) {
            out.extend(certs.into_iter().map(|c| (path.clone(), c)));
        }
    }
    Ok(out)
}

/// The largest certificate file read: a full public bundle is about 250 KiB.
const MAX_CERT_FILE: u64 = 16 * 1024 * 1024;

/// The PEM certificates in `path`: one or many, other PEM sections ignored; none, or a
/// malformed one, is an error naming the file.
pub(super) fn certificates_in_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = read_certificate_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            setup(
                Some(path),
                &format!("it is not valid PEM ({})", pem_reason(&e)),
            )
        })?;
    if certs.is_empty() {
        return Err(setup(
            Some(path),
            "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

/// The bytes of a regular file of at most [`MAX_CERT_FILE`]. Anything else is refused
/// before it is read: a FIFO would block the process for as long as nobody writes to it (a
/// refresh waiting there holds the lock), and `/dev/zero` never ends.
fn read_certificate_file(path: &Path) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let unreadable = |e: std::io::Error| setup(Some(path), &format!("it cannot be read ({e})"));
    let not_a_file = || {
        setup(
            Some(path),
            "it is not a regular file (a pipe, a device or a directory); name a PEM file",
        )
    };
    if !std::fs::metadata(path).map_err(unreadable)?.is_file() {
        return Err(not_a_file());
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // Should it have become a FIFO since: opening one without a writer must not block.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        rustix::fs::OFlags::NONBLOCK.bits().cast_signed(),
    );
    let file = options.open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(not_a_file());
    }
    if meta.len() > MAX_CERT_FILE {
        return Err(setup(
            Some(path),
            &format!(
                "it is larger than {} MiB, which no file of certificates is",
                MAX_CERT_FILE >> 20
            ),
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CERT_FILE)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    Ok(bytes)
}

/// A PEM error without quoting the file (it may be a private key).
fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as Pem;
    match e {
        Pem::NoItemsFound => "nothing found".to_owned(),
        Pem::Io(io) => io.to_string(),
        Pem::MissingSectionEnd { .. } => "a section has no END line".to_owned(),
        Pem::IllegalSectionStart { .. } => "a BEGIN line is malformed".to_owned(),
        Pem::Base64Decode(_) => "a section is not valid base64".to_owned(),
        _ => "unreadable".to_owned(),
    }
}

fn setup(path: Option<&Path>, reason: &str) -> Error {
    Error::TransportSetup {
        path: path.map(Path::to_path_buf),
        reason: reason.to_owned(),
    }
}
