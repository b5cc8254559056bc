//! Hostile or broken token endpoints over real HTTP (ureq): every answer gets the right error
//! class, in bounded time and memory, and the stored session is kept byte for byte. The only
//! deletion is compare-and-delete after a genuine `invalid_grant`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use credlock::{Error, Store, UreqTransport};
use credlock_test::FakeServer;

/// A loopback server that answers every connection with `reply`, on a thread; stops on drop.
struct Scripted {
    port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the accept loop
    }
}

fn serve(
    reply: impl Fn(&mut TcpStream, &std::sync::atomic::AtomicBool) + Send + Sync + 'static,
) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let reply = Arc::new(reply);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop2.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            let Ok(mut conn) = conn else { continue };
            let (reply, stop3) = (Arc::clone(&reply), Arc::clone(&stop2));
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
                let mut buf = [0u8; 8192];
                let _ = conn.read(&mut buf); // the request (small); its content does not matter
                reply(&mut conn, &stop3);
            });
        }
    });
    Scripted { port, stop }
}

fn respond(
    status: &str,
    headers: &[&str],
    body: &[u8],
) -> impl Fn(&mut TcpStream, &std::sync::atomic::AtomicBool) + Send + Sync + 'static {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    move |conn, _| {
        let _ = conn.write_all(&bytes);
    }
}

struct Outcome {
    error: Error,
    elapsed: Duration,
    unchanged: bool,
    exists: bool,
}

/// An expired session pointing at `port`, refreshed through real ureq with short timeouts.
fn refresh_against(port: u16) -> Outcome {
    let fake = FakeServer::builder().build();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let session = fake
        .seed_session(&format!("http://127.0.0.1:{port}/token"))
        .expect("seed")
        .with_expires_at(std::time::SystemTime::now());
    Store::new(&path).save(&session).expect("save");
    let before = std::fs::read(&path).expect("read");
    let store = Store::new(&path).with_transport(Arc::new(UreqTransport::with_timeouts(
        Duration::from_secs(2),
        Duration::from_secs(4),
    )));
    let start = Instant::now();
    let error = store.access_token().expect_err("must fail");
    Outcome {
        error,
        elapsed: start.elapsed(),
        unchanged: std::fs::read(&path).ok().as_deref() == Some(&before[..]),
        exists: path.exists(),
    }
}

fn assert_kept(o: &Outcome, what: &str) {
    assert!(
        o.unchanged,
        "{what}: the session must be kept byte for byte ({:?})",
        o.error
    );
    assert!(
        o.elapsed < Duration::from_secs(10),
        "{what}: took {:?}",
        o.elapsed
    );
}

/// Failure table: 408, 425, 429, 5xx
#[test]
fn server_errors_and_rate_limits_are_transient() {
    for (status, headers) in [
        ("500 Internal Server Error", vec![]),
        ("502 Bad Gateway", vec!["Content-Type: text/html"]),
        ("503 Service Unavailable", vec!["Retry-After: 120"]),
        ("429 Too Many Requests", vec!["Retry-After: 7"]),
    ] {
        let server = serve(respond(status, &headers, b"<html>busy</html>"));
        let o = refresh_against(server.port);
        assert!(
            o.error.is_transient() && !o.error.needs_login(),
            "{status}: {:?}",
            o.error
        );
        if status.starts_with("503") {
            assert!(
                matches!(&o.error, Error::Unavailable { retry_after: Some(r), .. } if *r == Duration::from_secs(120)),
                "{:?}",
                o.error
            );
        }
        assert_kept(&o, status);
    }
}

#[test]
fn retry_after_as_an_http_date_is_a_wait_from_now() {
    let at = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(90));
    let header = format!("Retry-After: {at}");
    let server = serve(respond("429 Too Many Requests", &[header.as_str()], b""));
    let o = refresh_against(server.port);
    let Error::Unavailable {
        retry_after: Some(wait),
        ..
    } = &o.error
    else {
        panic!("{:?}", o.error);
    };
    assert!(
        (Duration::from_secs(80)..=Duration::from_secs(90)).contains(wait),
        "{wait:?}"
    );
    assert!(o.error.to_string().contains("try again in"), "{}", o.error);
    assert_kept(&o, "429 with a date");
}

/// Failure table: 2xx not JSON, or JSON with neither `access_token` nor `refresh_token`
#[test]
fn unusable_success_bodies_and_redirects_are_invalid_responses() {
    let cases: Vec<(&str, Vec<&str>, Vec<u8>)> = vec![
        (
            "200 OK",
            vec!["Content-Type: text/html"],
            b"<html>login page</html>".to_vec(),
        ),
        (
            "200 OK",
            vec!["Content-Type: application/json"],
            b"{not json".to_vec(),
        ),
        (
            "200 OK",
            vec!["Content-Type: application/json"],
            br#"{"token_type":"Bearer","expires_in":60}"#.to_vec(),
        ),
        (
            "200 OK",
            vec!["Content-Type: application/json"],
            br#"{"access_token":{"a":1},"token_type":"Bearer"}"#.to_vec(),
        ),
        (
            "200 OK",
            vec!["Content-Type: application/json"],
            br#"{"error":"invalid_grant"}"#.to_vec(),
        ),
        (
            "302 Found",
            vec!["Location: https://evil.example/steal"],
            Vec::new(),
        ),
    ];
    for (status, headers, body) in cases {
        let server = serve(respond(status, &headers, &body));
        let o = refresh_against(server.port);
        assert!(
            matches!(o.error, Error::InvalidResponse { .. }),
            "{status} {:?}: {:?}",
            String::from_utf8_lossy(&body),
            o.error
        );
        assert!(!o.error.needs_login());
        assert_kept(&o, status);
    }
}

/// An answer over the limit is cut off unread: it says nothing about the grant, so it is a
/// failure that may pass (as a connection dropped mid-body), and the session is kept.
///
/// Failure table: body > 256 KiB, cut off at the limit unread
#[test]
fn a_ten_megabyte_body_is_cut_off_not_read() {
    let body = vec![b'a'; 10 * 1024 * 1024];
    let server = serve(respond(
        "200 OK",
        &["Content-Type: application/json"],
        &body,
    ));
    let o = refresh_against(server.port);
    assert!(
        matches!(o.error, Error::Unavailable { .. }) && o.error.is_transient(),
        "{:?}",
        o.error
    );
    assert!(o.error.to_string().contains("exceeds"), "{}", o.error);
    assert_kept(&o, "10 MB body");
}

/// Failure table: connection refused, DNS, TLS (untrusted certificate, client certificate refused), timeout
#[test]
fn a_body_that_trickles_forever_times_out() {
    let server = serve(|conn, stop| {
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n{");
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            if conn.write_all(b" ").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let o = refresh_against(server.port);
    assert!(o.error.is_transient(), "{:?}", o.error);
    assert!(
        o.elapsed >= Duration::from_secs(3),
        "the global timeout, not an early give-up: {:?}",
        o.elapsed
    );
    assert_kept(&o, "trickle");
}

/// Failure table: connection refused, DNS, TLS (untrusted certificate, client certificate refused), timeout
#[test]
fn a_refused_connection_is_transient() {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let o = refresh_against(port);
    assert!(o.error.is_transient(), "{:?}", o.error);
    assert_kept(&o, "connection refused");
}

#[test]
fn invalid_client_is_a_configuration_error_and_keeps_the_session() {
    let server = serve(respond(
        "401 Unauthorized",
        &[
            "Content-Type: application/json",
            "WWW-Authenticate: Basic realm=\"x\"",
        ],
        br#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
    ));
    let o = refresh_against(server.port);
    assert!(
        matches!(o.error, Error::Rejected { status: 401, .. })
            && o.error.is_configuration()
            && !o.error.needs_login(),
        "{:?}",
        o.error
    );
    assert_kept(&o, "401 invalid_client");
}

#[test]
fn invalid_grant_sent_as_text_plain_is_still_invalid_grant_and_the_only_deletion() {
    let server = serve(respond(
        "400 Bad Request",
        &["Content-Type: text/plain"],
        br#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#,
    ));
    let o = refresh_against(server.port);
    assert!(
        matches!(o.error, Error::SessionExpired { deleted: true, .. }),
        "{:?}",
        o.error
    );
    assert!(
        !o.exists,
        "compare-and-delete removed the session whose token was refused"
    );
}

/// A body the server sends instead of its normal answer, after it has rotated the token.
type Quirk = fn(serde_json::Map<String, serde_json::Value>) -> Vec<u8>;

fn with(
    mut map: serde_json::Map<String, serde_json::Value>,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> Vec<u8> {
    edit(&mut map);
    serde_json::to_vec(&map).expect("json")
}

/// The 2xx bodies real servers send that a strict parser refuses. Every one of them has
/// already consumed the refresh token that was sent.
fn quirks() -> Vec<(&'static str, Quirk)> {
    vec![
        ("no token_type", |m| {
            with(m, |m| drop(m.remove("token_type")))
        }),
        ("token_type lowercase", |m| {
            with(m, |m| drop(m.insert("token_type".into(), "bearer".into())))
        }),
        ("token_type a number", |m| {
            with(m, |m| drop(m.insert("token_type".into(), 1.into())))
        }),
        ("scope as an array", |m| {
            with(m, |m| {
                drop(m.insert(
                    "scope".into(),
                    serde_json::json!(["openid", "offline_access"]),
                ))
            })
        }),
        ("scope an object", |m| {
            with(m, |m| {
                drop(m.insert("scope".into(), serde_json::json!({"a": 1})))
            })
        }),
        ("expires_in \"3600\"", |m| {
            with(m, |m| drop(m.insert("expires_in".into(), "3600".into())))
        }),
        ("expires_in \"3600.0\"", |m| {
            with(m, |m| drop(m.insert("expires_in".into(), "3600.0".into())))
        }),
        ("expires_in 3599.7", |m| {
            with(m, |m| drop(m.insert("expires_in".into(), 3599.7.into())))
        }),
        ("expires_in negative", |m| {
            with(m, |m| drop(m.insert("expires_in".into(), (-5).into())))
        }),
        ("expires_in absurd", |m| {
            with(m, |m| drop(m.insert("expires_in".into(), 1e300.into())))
        }),
        ("expires_in \"soon\"", |m| {
            with(m, |m| drop(m.insert("expires_in".into(), "soon".into())))
        }),
        ("expires_in an array", |m| {
            with(m, |m| {
                drop(m.insert("expires_in".into(), serde_json::json!([1])))
            })
        }),
        ("expires_in null", |m| {
            with(m, |m| {
                drop(m.insert("expires_in".into(), serde_json::Value::Null))
            })
        }),
        ("a byte-order mark first", |m| {
            let mut b = "\u{feff}".as_bytes().to_vec();
            b.extend(with(m, |_| ()));
            b
        }),
        ("no access_token", |m| {
            with(m, |m| drop(m.remove("access_token")))
        }),
        ("access_token empty", |m| {
            with(m, |m| drop(m.insert("access_token".into(), "".into())))
        }),
        ("access_token an object", |m| {
            with(m, |m| {
                drop(m.insert("access_token".into(), serde_json::json!({"v": 1})))
            })
        }),
        ("only a refresh_token", |m| {
            let rt = m.get("refresh_token").cloned().expect("rt");
            serde_json::to_vec(&serde_json::json!({"refresh_token": rt})).expect("json")
        }),
    ]
}

/// Failure table: 2xx with an `access_token` and sloppy fields (no or odd `token_type`, `scope` as an array, `expires_in` as a string or float)
#[test]
fn a_quirky_success_never_loses_the_rotated_refresh_token() {
    use credlock_test::{HttpServer, ReusePolicy};
    for (what, quirk) in quirks() {
        let fake = FakeServer::builder()
            .policy(ReusePolicy::RevokeGrant)
            .build();
        let http = HttpServer::start(Arc::clone(&fake)).expect("server");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("session.json");
        let seeded = fake
            .seed_session(&http.token_endpoint())
            .expect("seed")
            .with_expires_at(std::time::SystemTime::now());
        let store = Store::new(&path).with_transport(Arc::new(UreqTransport::with_timeouts(
            Duration::from_secs(2),
            Duration::from_secs(4),
        )));
        store.save(&seeded).expect("save");
        fake.reshape_next_success(quirk);

        let first = store.access_token();
        if let Err(e) = &first {
            assert!(
                !e.needs_login() && !matches!(e, Error::SessionExpired { .. }),
                "{what}: {e:?}"
            );
        }
        let stored = store.load().expect("load").expect("the session is kept");
        assert!(
            fake.is_live(stored.refresh_token().secret()),
            "{what}: the stored refresh token must be the rotated one ({first:?})"
        );

        // The next call must refresh with the rotated token and the grant must live on.
        store
            .save(&stored.with_expires_at(std::time::SystemTime::now()))
            .expect("expire");
        let next = store.access_token();
        assert!(next.is_ok(), "{what}: the next call failed: {next:?}");
        assert_eq!(fake.counters().grants_revoked, 0, "{what}");
        assert_eq!(fake.counters().reuse_detected, 0, "{what}");
        assert_eq!(fake.counters().refreshes_ok, 2, "{what}");
    }
}
