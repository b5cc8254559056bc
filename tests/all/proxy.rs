//! An explicit proxy set on the transport's builder, which tunnels https with `CONNECT`.
//! (Proxies from the environment, read by the `credlock` binary, are in
//! `crates/credlock-cli/tests/all/proxy.rs`.)

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use credlock::Error;
use credlock::transport::UreqTransport;

use crate::common::tls::{Pki, TlsServer, expired_session_for, refresh_with};
/// An HTTP proxy that answers `CONNECT` by tunnelling to `upstream` whatever the target, and
/// records each request head it saw. Stopped when dropped.
struct ConnectProxy {
    port: u16,
    heads: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ConnectProxy {
    fn start(upstream: u16) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopping) = (Arc::clone(&heads), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut client) = conn else { continue };
                let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match client.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let is_connect = head.starts_with("CONNECT ");
                seen.lock().expect("heads").push(head);
                if !is_connect {
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                if client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .is_err()
                {
                    continue;
                }
                let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let (mut client, mut server) = (client, server);
                let up = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut s2);
                    let _ = s2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut server, &mut client);
                let _ = client.shutdown(std::net::Shutdown::Both);
                let _ = up.join();
            }
        });
        ConnectProxy {
            port,
            heads,
            stop,
            thread: Some(thread),
        }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("heads").clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn an_explicit_proxy_tunnels_https_with_its_credentials_unless_no_proxy_names_the_host() {
    let pki = Pki::new();
    let server = TlsServer::start(pki.server_config(false));
    let proxy = ConnectProxy::start(server.port);
    // A name only the proxy "resolves": every CONNECT goes to the local server.
    let endpoint = "https://token.test/token";
    let proxy_url = format!("http://me:s3cret-proxy-pw@127.0.0.1:{}", proxy.port);

    let (_dir, path, _) = expired_session_for(endpoint);
    let transport = UreqTransport::builder()
        .extra_ca_file(pki.path("ca.pem"))
        .proxy(&proxy_url)
        .no_proxy("corp.example")
        .build()
        .expect("transport");
    assert!(
        !format!("{transport:?}").contains("s3cret"),
        "{transport:?}"
    );
    assert_eq!(
        refresh_with(&path, transport).expect("refresh through the proxy"),
        "at-over-tls"
    );
    let heads = proxy.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].starts_with("CONNECT token.test:443 "), "{heads:?}");
    assert!(
        heads[0].contains("Proxy-Authorization: Basic "),
        "{heads:?}"
    );
    assert_eq!(server.requests(), 1);

    // The same host in the no-proxy list goes direct (and `token.test` resolves nowhere).
    let (_dir, path, before) = expired_session_for(endpoint);
    let direct = UreqTransport::builder()
        .extra_ca_file(pki.path("ca.pem"))
        .proxy(&proxy_url)
        .no_proxy("example.com, .test")
        .build()
        .expect("transport");
    let e = refresh_with(&path, direct).expect_err("token.test resolved");
    assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    assert!(!e.to_string().contains("s3cret"), "{e}");
    assert_eq!(
        proxy.heads().len(),
        1,
        "the no-proxy host went through the proxy"
    );
    assert_eq!(std::fs::read(&path).expect("read"), before);
}
