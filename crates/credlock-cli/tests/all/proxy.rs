//! Proxies from the environment: a loopback endpoint is never reached through one (the
//! refresh token would travel in clear to a proxy that resolves `localhost` elsewhere). The
//! environment is process-global, so each case runs the CLI in a child process. (An explicit
//! proxy set on the transport's builder is in the library's `tests/all/proxy.rs`.)

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use credlock::Store;
use credlock_test::{FakeServer, HttpServer};

use crate::common::tls::expired_session_for;
use crate::common::{credlock, finish};

/// A "proxy" that records whether anything connected to it, and answers nothing useful.
struct Tripwire {
    port: u16,
    touched: Arc<AtomicBool>,
}

fn tripwire() -> Tripwire {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let touched = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&touched);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            flag.store(true, Ordering::SeqCst);
            drop(conn); // closes: a request sent here fails
        }
    });
    Tripwire { port, touched }
}

#[test]
fn a_loopback_endpoint_never_goes_through_a_proxy_from_the_environment() {
    for host in ["127.0.0.1", "localhost"] {
        let proxy = tripwire();
        let fake = FakeServer::builder().build();
        let http = HttpServer::start(Arc::clone(&fake)).expect("server");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("session.json");
        let endpoint = format!("http://{host}:{}/token", http.port());
        let session = fake
            .seed_session(&endpoint)
            .expect("seed")
            .with_expires_at(std::time::SystemTime::now());
        Store::new(&path).save(&session).expect("save");

        let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
        let mut cmd = credlock(&path, &["token"]);
        for var in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            cmd.env(var, &proxy_url);
        }
        cmd.env_remove("NO_PROXY").env_remove("no_proxy");
        let child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let out = finish(child, Duration::from_secs(60));
        assert!(
            !proxy.touched.load(Ordering::SeqCst),
            "{host}: the request went to the proxy"
        );
        assert!(
            out.status.success(),
            "{host}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(fake.counters().refreshes_ok, 1, "{host}");
    }
}

/// `credlock token` for a session at `endpoint`, with every proxy variable pointing at a
/// tripwire and `no_proxy` set to `no_proxy` (or unset); whether the tripwire was touched.
fn proxied(endpoint: &str, no_proxy: Option<&str>) -> bool {
    let proxy = tripwire();
    let fake = FakeServer::builder().build();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let session = fake
        .seed_session(endpoint)
        .expect("seed")
        .with_expires_at(std::time::SystemTime::now());
    Store::new(&path).save(&session).expect("save");
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let mut cmd = credlock(&path, &["token"]);
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env(var, &proxy_url);
    }
    cmd.env_remove("NO_PROXY").env_remove("no_proxy");
    if let Some(list) = no_proxy {
        cmd.env("NO_PROXY", list);
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let out = finish(child, Duration::from_secs(60));
    assert!(!out.status.success(), "nothing answers at {endpoint}");
    proxy.touched.load(Ordering::SeqCst)
}

#[test]
fn a_remote_endpoint_goes_through_the_proxy_unless_no_proxy_names_it() {
    let endpoint = "https://credlock-proxy-test.invalid/token";
    assert!(
        proxied(endpoint, None),
        "the proxy is used (the tripwire works)"
    );
    assert!(
        proxied(endpoint, Some("other.example")),
        "a list without the host"
    );
    for list in [
        "example.org, .invalid:443",
        "credlock-proxy-test.invalid",
        "*.INVALID",
        "*",
    ] {
        assert!(!proxied(endpoint, Some(list)), "NO_PROXY={list}");
    }
}

/// This machine's address on a non-loopback interface (a loopback endpoint is never proxied,
/// so the endpoint that must stay untouched has to live elsewhere). Connecting a UDP socket
/// sends nothing; it only picks the source address of the route.
fn non_loopback_address() -> std::net::IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp bind");
    socket
        .connect("198.51.100.1:9")
        .expect("this test needs a non-loopback interface with a route");
    let ip = socket.local_addr().expect("local addr").ip();
    assert!(!ip.is_loopback(), "{ip}");
    ip
}

/// A SOCKS proxy in the environment (which credlock does not speak) is refused as a
/// configuration error (exit 5) before anything is sent: neither the endpoint, reachable
/// directly, nor the proxy hears a byte, and the session is untouched.
/// Failure table: a SOCKS, `https://` or unparsable proxy in `https_proxy` / `http_proxy` / `all_proxy`
#[test]
fn a_socks_proxy_from_the_environment_is_a_configuration_error_and_nothing_goes_direct() {
    let ip = non_loopback_address();
    for (var, scheme) in [
        ("https_proxy", "socks5h"),
        ("HTTPS_PROXY", "socks5"),
        ("all_proxy", "socks4"),
        ("ALL_PROXY", "socks4a"),
        ("https_proxy", "https"),
        ("https_proxy", "socks5h://[broken"),
    ] {
        let endpoint = TcpListener::bind((ip, 0)).expect("bind the endpoint");
        let endpoint_port = endpoint.local_addr().expect("addr").port();
        let touched = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&touched);
        std::thread::spawn(move || {
            for conn in endpoint.incoming() {
                flag.store(true, Ordering::SeqCst);
                drop(conn);
            }
        });
        let proxy = tripwire();
        let url = format!("https://{ip}:{endpoint_port}/token");
        let (_dir, path, before) = expired_session_for(&url);
        let proxy_url = if scheme.contains("://") {
            scheme.to_owned()
        } else {
            format!("{scheme}://127.0.0.1:{}", proxy.port)
        };
        let mut cmd = credlock(&path, &["token", "--json"]);
        for v in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
            "NO_PROXY",
            "no_proxy",
        ] {
            cmd.env_remove(v);
        }
        cmd.env(var, &proxy_url);
        let child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let out = finish(child, Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{var}={proxy_url}: {stderr}");
        // Windows's environment names are case-insensitive: `HTTPS_PROXY` is read as
        // `https_proxy` there.
        let named = if cfg!(windows) {
            stderr.to_lowercase().contains(&var.to_lowercase())
        } else {
            stderr.contains(var)
        };
        assert!(named, "names the variable: {stderr}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(json["error"]["configuration"], true, "{json}");
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !touched.load(Ordering::SeqCst),
            "{var}={proxy_url}: the request went direct"
        );
        assert!(!proxy.touched.load(Ordering::SeqCst), "{var}={proxy_url}");
        assert_eq!(std::fs::read(&path).expect("read"), before);
    }
}
