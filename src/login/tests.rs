//! The login's error paths, with a scripted transport and a clock that does not sleep.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::test_transport::Scripted;
use super::*;

pub(super) const ISSUER: &str = "https://id.example";
pub(super) const TOKENS: &str = r#"{"access_token":"at-1","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-1","id_token":"h.p.s"}"#;
pub(super) const DEVICE: &str = r#"{"device_code":"dc-secret-1","user_code":"ABCD-EFGH","verification_uri":"https://id.example/device","verification_uri_complete":"https://id.example/device?user_code=ABCD-EFGH","expires_in":60,"interval":2}"#;

#[derive(Debug)]
pub(super) struct TestClock {
    now: Mutex<SystemTime>,
    sleeps: Mutex<Vec<Duration>>,
}

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap()
    }
    fn sleep(&self, d: Duration) {
        *self.now.lock().unwrap() += d;
        self.sleeps.lock().unwrap().push(d);
    }
}

pub(super) fn clock() -> Arc<TestClock> {
    Arc::new(TestClock {
        now: Mutex::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        sleeps: Mutex::new(Vec::new()),
    })
}

pub(super) fn metadata() -> String {
    format!(
        r#"{{"issuer":"{ISSUER}","token_endpoint":"{ISSUER}/token","authorization_endpoint":"{ISSUER}/auth","device_authorization_endpoint":"{ISSUER}/device/auth","revocation_endpoint":"{ISSUER}/revoke","scopes_supported":["openid","offline_access"]}}"#
    )
}

/// A login whose transport answers the discovery, then `posts` in order.
pub(super) fn login(posts: &[(u16, &str)]) -> (Login, Arc<Scripted>, Arc<TestClock>) {
    let mut t = Scripted::new().get(200, &metadata());
    for (status, body) in posts {
        t = t.post(*status, body);
    }
    let t = Arc::new(t);
    let endpoints = Endpoints::discover(ISSUER, t.as_ref()).unwrap();
    let c = clock();
    let login = Login::new(endpoints, "cli", ClientAuth::None)
        .unwrap()
        .with_scopes(["openid"])
        .with_transport(t.clone())
        .with_clock(c.clone());
    (login, t, c)
}

fn pending() -> (u16, &'static str) {
    (400, r#"{"error":"authorization_pending"}"#)
}

fn device(login: &Login) -> Result<Session, Error> {
    login.device(&mut |_| {})
}

#[test]
fn the_device_flow_shows_the_code_polls_and_keeps_the_id_token() {
    let (login, t, c) = login(&[(200, DEVICE), pending(), (200, TOKENS)]);
    let mut shown = Vec::new();
    let session = login.device(&mut |code| shown.push(code.clone())).unwrap();
    assert_eq!(shown[0].user_code, "ABCD-EFGH");
    assert_eq!(
        shown[0].verification_uri_complete.as_deref(),
        Some("https://id.example/device?user_code=ABCD-EFGH")
    );
    assert_eq!(session.id_token(), Some("h.p.s"));
    assert_eq!(
        session.client().revocation_endpoint(),
        Some("https://id.example/revoke")
    );
    assert_eq!(
        session.client().token_endpoint(),
        "https://id.example/token"
    );
    let auth = t.form(1);
    assert!(
        auth.contains(&("scope".into(), "openid offline_access".into())),
        "{auth:?}"
    );
    let poll = t.form(2);
    assert_eq!(
        poll[0],
        (
            "grant_type".into(),
            "urn:ietf:params:oauth:grant-type:device_code".into()
        )
    );
    assert_eq!(poll[1], ("device_code".into(), "dc-secret-1".into()));
    assert_eq!(*c.sleeps.lock().unwrap(), [Duration::from_secs(2); 2]);
}

#[test]
fn slow_down_adds_five_seconds_to_this_and_every_later_poll() {
    let (login, _, c) = login(&[
        (200, DEVICE),
        (400, r#"{"error":"slow_down"}"#),
        pending(),
        (200, TOKENS),
    ]);
    device(&login).unwrap();
    let secs: Vec<u64> = c
        .sleeps
        .lock()
        .unwrap()
        .iter()
        .map(Duration::as_secs)
        .collect();
    assert_eq!(secs, [2, 7, 7]);
}

#[test]
fn access_denied_and_expired_token_end_the_polling_with_typed_errors() {
    let (login_d, _, _) = login(&[
        (200, DEVICE),
        pending(),
        (
            400,
            r#"{"error":"access_denied","error_description":"user said no"}"#,
        ),
    ]);
    let e = device(&login_d).unwrap_err();
    assert!(
        matches!(e, Error::LoginDenied { .. }) && e.needs_login(),
        "{e}"
    );
    assert!(e.to_string().contains("user said no"), "{e}");
    let (login_e, _, _) = login(&[(200, DEVICE), (400, r#"{"error":"expired_token"}"#)]);
    let e = device(&login_e).unwrap_err();
    assert!(
        matches!(e, Error::LoginExpired { .. }) && e.needs_login(),
        "{e}"
    );
}

#[test]
fn the_device_code_lifetime_and_the_deadline_stop_the_polling() {
    // expires_in 60, interval 2: 29 polls at most (the one at 60 s could not be answered
    // in time), then expired without another request.
    let mut posts = vec![(200, DEVICE)];
    posts.extend(std::iter::repeat_n(pending(), 29));
    let (l, t, c) = login(&posts);
    let e = device(&l).unwrap_err();
    assert!(e.to_string().contains("device code expired"), "{e}");
    assert_eq!(t.posts_sent(), 30);
    assert!(c.now() <= SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_060));
    let (l, t, _) = login(&[(200, DEVICE), pending(), pending()]);
    let e = device(&l.with_deadline(Duration::from_secs(5))).unwrap_err();
    assert!(matches!(e, Error::LoginExpired { .. }), "{e}");
    assert!(e.to_string().contains("deadline of 5 s"), "{e}");
    assert_eq!(t.posts_sent(), 3);
}

#[test]
fn refusals_are_classified_as_configuration_or_login() {
    let (l, _, _) = login(&[(401, r#"{"error":"invalid_client"}"#)]);
    let e = device(&l).unwrap_err();
    assert!(
        matches!(e, Error::LoginRefused { status: 401, .. }) && e.is_configuration(),
        "{e}"
    );
    let (l, _, _) = login(&[(400, r#"{"error":"invalid_scope"}"#)]);
    assert!(device(&l).unwrap_err().is_configuration());
    let (l, _, _) = login(&[(200, DEVICE), (400, r#"{"error":"invalid_grant"}"#)]);
    let e = device(&l).unwrap_err();
    assert!(e.needs_login() && !e.is_configuration(), "{e}");
    let (l, _, _) = login(&[
        (200, DEVICE),
        (200, r#"{"access_token":"a","token_type":"Bearer"}"#),
    ]);
    assert!(matches!(device(&l), Err(Error::MissingRefreshToken)));
}

#[test]
fn unavailable_and_unusable_answers_are_typed_and_polls_retry_three_times() {
    let (l, _, _) = login(&[(503, "")]);
    let e = device(&l).unwrap_err();
    assert!(
        matches!(e, Error::LoginUnavailable { .. }) && e.is_transient(),
        "{e}"
    );
    let (l, _, _) = login(&[(200, "<html>")]);
    assert!(matches!(
        device(&l),
        Err(Error::LoginInvalidResponse { .. })
    ));
    let (l, _, _) = login(&[(200, r#"{"device_code":"d"}"#)]);
    assert!(matches!(
        device(&l),
        Err(Error::LoginInvalidResponse { .. })
    ));
    let (l, _, _) = login(&[(302, "")]);
    assert!(matches!(
        device(&l),
        Err(Error::LoginInvalidResponse { .. })
    ));
    // Three transient poll failures are ridden out; a fourth in a row ends the login.
    let (l, _, _) = login(&[
        (200, DEVICE),
        (502, ""),
        (500, ""),
        (503, ""),
        (200, TOKENS),
    ]);
    device(&l).unwrap();
    let (l, _, _) = login(&[(200, DEVICE), (502, ""), (500, ""), (503, ""), (504, "")]);
    assert!(device(&l).unwrap_err().is_transient());
    let t = Arc::new(Scripted::new().post_fails());
    let l = Login::new(
        Endpoints::new("https://id.example/token")
            .unwrap()
            .with_device_authorization("https://id.example/d")
            .unwrap(),
        "cli",
        ClientAuth::None,
    )
    .unwrap()
    .with_transport(t);
    assert!(matches!(device(&l), Err(Error::LoginUnavailable { .. })));
}

/// A login request that got no answer to read is a passing failure whatever the transport
/// says, as for a refresh, a revocation or discovery; an oversized answer included (it was
/// cut at the limit, unread, like a connection dropped mid-body).
#[test]
fn a_login_request_that_got_no_answer_is_transient_whatever_the_transport_error() {
    use crate::wire::http::TransportError;
    for e in [
        TransportError::Connect("refused".into()),
        TransportError::Tls("unknown issuer".into()),
        TransportError::Timeout("slow".into()),
        TransportError::TooLarge(65_536),
        TransportError::Other("reset".into()),
    ] {
        let what = format!("{e:?}");
        let l = Login::new(
            Endpoints::new("https://id.example/token")
                .unwrap()
                .with_device_authorization("https://id.example/d")
                .unwrap(),
            "cli",
            ClientAuth::None,
        )
        .unwrap()
        .with_transport(Arc::new(Scripted::new().post_fails_with(e)));
        let error = device(&l).unwrap_err();
        assert!(
            matches!(error, Error::LoginUnavailable { .. }) && error.is_transient(),
            "{what}: {error:?}"
        );
    }
}

/// 408 Request Timeout and 425 Too Early invite the same request again: a login treats them
/// as it treats a 429 or a 5xx (and as a refresh always has), never as a refusal.
#[test]
fn a_408_or_425_during_a_login_is_transient_like_a_429() {
    for status in [408, 425] {
        let (l, _, _) = login(&[(status, "")]);
        let e = device(&l).unwrap_err();
        assert!(
            matches!(e, Error::LoginUnavailable { .. }) && e.is_transient(),
            "HTTP {status}: {e}"
        );
        let t = Scripted::new().get(status, "");
        let e = Endpoints::discover(ISSUER, &t).unwrap_err();
        assert!(
            matches!(e, Error::LoginUnavailable { .. }) && e.is_transient(),
            "HTTP {status} at discovery: {e}"
        );
        assert_eq!(
            t.urls().len(),
            1,
            "HTTP {status}: no other metadata URL is tried"
        );
    }
    // Device polling rides them out as it does a 5xx.
    let (l, _, _) = login(&[(200, DEVICE), (408, ""), (425, ""), (200, TOKENS)]);
    device(&l).unwrap();
}

#[test]
fn flows_without_their_endpoint_are_unsupported() {
    let bare = Login::new(
        Endpoints::new("https://id.example/token").unwrap(),
        "cli",
        ClientAuth::None,
    )
    .unwrap()
    .with_transport(Arc::new(Scripted::new()));
    let e = device(&bare).unwrap_err();
    assert!(
        matches!(e, Error::LoginUnsupported { .. }) && e.is_configuration(),
        "{e}"
    );
    // With neither endpoint known, neither error may send the user to the other flow.
    assert!(
        e.to_string().contains("no device authorization endpoint"),
        "{e}"
    );
    assert!(!e.to_string().contains("use the"), "{e}");
    let e = bare
        .paste(&mut std::io::Cursor::new(b"code\n".to_vec()), &mut |_| {})
        .unwrap_err();
    assert!(matches!(e, Error::LoginUnsupported { .. }), "{e}");
    assert!(e.to_string().contains("no authorization endpoint"), "{e}");
    assert!(!e.to_string().contains("use the"), "{e}");
    // With the other one known, the error names that flow.
    let device_only = Login::new(
        Endpoints::new("https://id.example/token")
            .unwrap()
            .with_device_authorization("https://id.example/device")
            .unwrap(),
        "cli",
        ClientAuth::None,
    )
    .unwrap()
    .with_transport(Arc::new(Scripted::new()));
    let e = device_only
        .paste(&mut std::io::Cursor::new(b"code\n".to_vec()), &mut |_| {})
        .unwrap_err();
    assert!(e.to_string().contains("use the device flow"), "{e}");
}

#[test]
fn a_confidential_client_names_itself_in_the_device_authorization_body_too() {
    // RFC 8628 §3.1 allows client_id beside client_secret_basic, and django-oauth-toolkit
    // refuses the request without it ("Missing client_id parameter.").
    let t = Arc::new(
        Scripted::new()
            .get(200, &metadata())
            .post(200, DEVICE)
            .post(200, TOKENS),
    );
    let endpoints = Endpoints::discover(ISSUER, t.as_ref()).unwrap();
    let secret = crate::Secret::new("s3cret-value");
    let login = Login::new(endpoints, "cli", ClientAuth::Basic { secret })
        .unwrap()
        .with_transport(t.clone())
        .with_clock(clock());
    device(&login).unwrap();
    let auth = t.form(1);
    assert!(
        auth.contains(&("client_id".into(), "cli".into())),
        "{auth:?}"
    );
    assert!(!auth.iter().any(|(k, _)| k == "client_secret"), "{auth:?}");
}

#[test]
fn invalid_request_from_a_login_endpoint_is_a_configuration_error() {
    let (l, _, _) = login(&[(
        400,
        r#"{"error":"invalid_request","error_description":"Missing client_id parameter."}"#,
    )]);
    let e = device(&l).unwrap_err();
    assert!(e.is_configuration() && !e.needs_login(), "{e}");
    assert!(
        e.to_string().contains("check the client's configuration"),
        "{e}"
    );
}

/// The value of `name` in `url`'s query.
fn query_value(url: &str, name: &str) -> Option<String> {
    url.split_once('?')?.1.split('&').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k == name).then(|| crate::basics::encoding::form_urldecode(v).unwrap_or_default())
    })
}

/// A browser login whose transport answers the peek at the authorization URL with `peek`;
/// the deadline is one second. Returns the result and whether the browser was opened.
fn browser_after_peek(
    peek: impl Fn(&str) -> Result<crate::wire::http::Peek, crate::wire::http::TransportError>
    + Send
    + Sync
    + 'static,
) -> (Result<Session, Error>, bool, Arc<Scripted>, Duration) {
    let t = Arc::new(Scripted::new().get(200, &metadata()).peek_with(peek));
    let endpoints = Endpoints::discover(ISSUER, t.as_ref()).unwrap();
    let login = Login::new(endpoints, "cli", ClientAuth::None)
        .unwrap()
        .with_scopes(["openid"])
        .with_deadline(Duration::from_secs(1))
        .with_transport(t.clone());
    let opened = std::sync::atomic::AtomicBool::new(false);
    let started = std::time::Instant::now();
    let result = login.browser(
        &|_| {
            opened.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        },
        &mut |_| {},
    );
    (result, opened.into_inner(), t, started.elapsed())
}

#[test]
fn an_authorization_request_refused_with_an_error_page_fails_before_the_browser_opens() {
    let (result, opened, t, took) =
        browser_after_peek(|_| Ok(crate::wire::http::Peek::new(400, None)));
    let e = result.unwrap_err();
    assert!(!opened, "the browser is not opened");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(e.kind(), "login_request_rejected", "{e}");
    assert!(e.is_configuration(), "{e}");
    let text = e.to_string();
    for cause in [
        "client id",
        "redirect URI",
        "--port",
        "scope",
        "http://127.0.0.1:",
    ] {
        assert!(text.contains(cause), "{cause} not in: {text}");
    }
    let peeked = t.peeked();
    assert_eq!(peeked.len(), 1);
    assert!(peeked[0].0.starts_with("https://id.example/auth?"));
    assert!(peeked[0].1 <= Duration::from_secs(5), "a short timeout");
}

#[test]
fn an_error_redirected_to_the_loopback_fails_before_the_browser_opens() {
    let (result, opened, _, _) = browser_after_peek(|url| {
        let back = format!(
            "{}?error=invalid_request&error_description=nonce+required&state={}",
            query_value(url, "redirect_uri").unwrap(),
            query_value(url, "state").unwrap()
        );
        Ok(crate::wire::http::Peek::new(302, Some(back)))
    });
    let e = result.unwrap_err();
    assert!(!opened);
    assert_eq!(e.kind(), "login_refused", "{e}");
    assert!(e.to_string().contains("nonce required"), "{e}");
    assert!(e.is_configuration(), "{e}");
}

#[test]
fn a_login_page_a_redirect_to_one_or_a_failed_peek_lets_the_browser_open() {
    type PeekFn = fn(&str) -> Result<crate::wire::http::Peek, crate::wire::http::TransportError>;
    let cases: [(&str, PeekFn); 5] = [
        ("a login page", |_| {
            Ok(crate::wire::http::Peek::new(200, None))
        }),
        ("a redirect to the login page", |_| {
            Ok(crate::wire::http::Peek::new(
                303,
                Some("/interaction/abc".to_owned()),
            ))
        }),
        ("an HTTP authentication prompt", |_| {
            Ok(crate::wire::http::Peek::new(401, None))
        }),
        ("a bot filter", |_| {
            Ok(crate::wire::http::Peek::new(403, None))
        }),
        ("no answer", |_| {
            Err(crate::wire::http::TransportError::Timeout("slow".into()))
        }),
    ];
    for (what, peek) in cases {
        let (result, opened, _, _) = browser_after_peek(peek);
        assert!(opened, "{what}: the browser is opened");
        assert_eq!(result.unwrap_err().kind(), "login_expired", "{what}");
    }
}

#[test]
fn a_deadline_too_far_to_add_to_the_clock_means_no_deadline_rather_than_a_panic() {
    let (l, _, _) = login(&[(200, DEVICE), pending(), (200, TOKENS)]);
    device(&l.with_deadline(Duration::MAX)).unwrap();
    let bare = Login::new(
        Endpoints::new("https://id.example/token").unwrap(),
        "cli",
        ClientAuth::None,
    )
    .unwrap()
    .with_deadline(Duration::MAX)
    .with_transport(Arc::new(Scripted::new()));
    let e = bare.browser(&|_| Ok(()), &mut |_| {}).unwrap_err();
    assert!(matches!(e, Error::LoginUnsupported { .. }), "{e}");
}

/// Answers the device authorization, then never answers in time: each poll takes a minute.
#[derive(Debug)]
struct StallingPolls {
    posts: std::sync::atomic::AtomicUsize,
}

impl crate::wire::http::Transport for StallingPolls {
    fn post_form(
        &self,
        _: &crate::wire::form::FormRequest,
    ) -> Result<crate::wire::http::HttpResponse, crate::wire::http::TransportError> {
        if self.posts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            return Ok(crate::wire::http::HttpResponse::new(
                200,
                DEVICE.replace(r#""interval":2"#, r#""interval":1"#),
            ));
        }
        std::thread::sleep(Duration::from_secs(60));
        Ok(crate::wire::http::HttpResponse::new(
            400,
            r#"{"error":"authorization_pending"}"#,
        ))
    }
}

/// The deadline bounds each request, not only the pauses between them.
#[test]
fn a_poll_the_server_never_answers_ends_at_the_login_deadline() {
    let login = Login::new(
        Endpoints::new("https://id.example/token")
            .unwrap()
            .with_device_authorization("https://id.example/device")
            .unwrap(),
        "cli",
        ClientAuth::None,
    )
    .unwrap()
    .with_deadline(Duration::from_secs(3))
    .with_transport(Arc::new(StallingPolls {
        posts: std::sync::atomic::AtomicUsize::new(0),
    }));
    let started = std::time::Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(login.device(&mut |_| {}));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the 3 s login still runs after 20 s");
    let took = started.elapsed();
    let e = r.unwrap_err();
    assert!(matches!(e, Error::LoginExpired { .. }), "{e}");
    assert!(took < Duration::from_secs(10), "a 3 s login took {took:?}");
}

/// Only a 400 without a redirect is a refused authorization request: one that carries a
/// `Location` sends the browser on, so the browser opens.
#[test]
fn a_400_with_a_location_lets_the_browser_open() {
    let (result, opened, _, _) = browser_after_peek(|_| {
        Ok(crate::wire::http::Peek::new(
            400,
            Some("https://id.example/login".to_owned()),
        ))
    });
    assert!(opened, "the browser is opened: {result:?}");
}
