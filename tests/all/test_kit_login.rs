//! The test kit's login endpoints: discovery, the device flow and the browser flow with PKCE
//! against `FakeServer`, its person replaced by a `ScriptedUser`, in memory and over the
//! loopback HTTP server. The real login code (`credlock::Login`) runs against them.

use std::sync::Arc;
use std::time::Duration;

use credlock::transport::{FormRequest, Transport};
use credlock::{ClientAuth, DeviceCode, Endpoints, Error, Login, Prompt, Secret, UreqTransport};
use credlock_test::{FakeServer, FakeTransport, HttpServer, ManualClock, ScriptedUser};

const ISSUER: &str = "https://id.example.test";

/// A login at the in-memory server, discovered from its issuer, on a manual clock (polls
/// take no time).
fn in_memory(user: ScriptedUser) -> (Arc<FakeServer>, Login) {
    let clock = ManualClock::starting_now();
    let server = FakeServer::builder()
        .clock(clock.clone())
        .user(user)
        .build();
    let transport: Arc<dyn Transport> = Arc::new(FakeTransport::new(server.clone()));
    let endpoints = Endpoints::discover(ISSUER, transport.as_ref()).expect("discovery");
    let login = Login::new(endpoints, credlock_test::TEST_CLIENT_ID, ClientAuth::None)
        .unwrap()
        .with_scopes(["openid"])
        .with_transport(transport)
        .with_clock(clock);
    (server, login)
}

fn device(login: &Login) -> (Result<credlock::Session, Error>, Vec<DeviceCode>) {
    let mut shown = Vec::new();
    let result = login.device(&mut |code| shown.push(code.clone()));
    (result, shown)
}

#[test]
fn discovery_names_the_kit_endpoints_under_the_issuer() {
    let (_, login) = in_memory(ScriptedUser::approves());
    let e = login.endpoints();
    assert_eq!(e.issuer(), Some(ISSUER));
    assert_eq!(e.token(), format!("{ISSUER}/token"));
    assert_eq!(
        e.authorization(),
        Some(format!("{ISSUER}/authorize").as_str())
    );
    assert_eq!(
        e.device_authorization(),
        Some(format!("{ISSUER}/device_authorization").as_str())
    );
    assert_eq!(e.revocation(), Some(format!("{ISSUER}/revoke").as_str()));
    // The kit advertises offline_access, so the login asks for it.
    assert_eq!(login.scope().as_deref(), Some("openid offline_access"));
}

#[test]
fn an_approving_user_gives_the_device_flow_a_token_after_pending_and_slow_down_polls() {
    let (server, login) = in_memory(
        ScriptedUser::approves()
            .asking_to_slow_down()
            .after_polls(2),
    );
    let (result, shown) = device(&login);
    let session = result.expect("approved");
    assert_eq!(shown.len(), 1);
    assert!(shown[0].user_code.starts_with("WDJB-"), "{:?}", shown[0]);
    assert_eq!(shown[0].verification_uri, format!("{ISSUER}/device"));
    assert!(server.is_access_token_valid(session.access_token().secret()));
    assert!(server.is_live(session.refresh_token().secret()));
    let c = server.counters();
    assert_eq!((c.device_authorizations, c.logins), (1, 1));
    // Logins are not refreshes.
    assert_eq!(c.refresh_requests, 0);
}

#[test]
fn a_denying_user_ends_the_device_flow_in_login_denied() {
    let (server, login) = in_memory(ScriptedUser::denies().after_polls(1));
    let (result, _) = device(&login);
    assert!(
        matches!(result, Err(Error::LoginDenied { .. })),
        "{result:?}"
    );
    assert_eq!(server.counters().logins, 0);
}

#[test]
fn a_user_who_never_answers_lets_the_device_code_expire() {
    let (server, login) = in_memory(ScriptedUser::never_answers());
    let login = login.with_deadline(Duration::from_secs(3600));
    let (result, _) = device(&login);
    assert!(
        matches!(result, Err(Error::LoginExpired { .. })),
        "{result:?}"
    );
    assert_eq!(server.counters().logins, 0);
}

#[test]
fn the_user_can_change_their_mind_at_run_time() {
    let (server, login) = in_memory(ScriptedUser::denies());
    server.set_user(ScriptedUser::approves());
    let (result, _) = device(&login);
    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn an_approving_user_gives_the_browser_flow_a_token_over_loopback_http() {
    let server = FakeServer::builder().build();
    let http = HttpServer::start(server.clone()).unwrap();
    let transport = UreqTransport::new();
    let endpoints = Endpoints::discover(&http.issuer(), &transport).expect("discovery");
    let login = Login::new(endpoints, credlock_test::TEST_CLIENT_ID, ClientAuth::None)
        .unwrap()
        .with_scopes(["openid"])
        .with_deadline(Duration::from_secs(30));
    let browser = server.clone();
    let mut told = Vec::new();
    let session = credlock_within(move || {
        let s = login.browser(&|url| browser.open_browser(url), &mut |url| {
            told.push(url.to_owned());
        });
        (s, told)
    });
    let (session, told) = session;
    let session = session.expect("approved");
    assert!(told[0].starts_with(&format!("{}/authorize?", http.issuer())));
    assert!(server.is_access_token_valid(session.access_token().secret()));
    // The id_token carries the login's nonce (the login checks it) and a subject.
    assert!(session.id_token().is_some());
    assert_eq!(server.counters().logins, 1);
    assert_eq!(server.counters().pkce_failures, 0);
}

fn credlock_within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    crate::common::within(Duration::from_secs(60), f)
}

#[test]
fn a_denying_user_ends_the_browser_flow_in_login_denied() {
    let (server, login) = in_memory(ScriptedUser::denies());
    let browser = server.clone();
    let result =
        credlock_within(move || login.browser(&|url| browser.open_browser(url), &mut |_| {}));
    assert!(
        matches!(result, Err(Error::LoginDenied { .. })),
        "{result:?}"
    );
}

#[test]
fn a_user_who_never_answers_leaves_the_browser_flow_to_expire() {
    let (server, login) = in_memory(ScriptedUser::never_answers());
    let login = login.with_deadline(Duration::from_millis(500));
    let browser = server.clone();
    let result =
        credlock_within(move || login.browser(&|url| browser.open_browser(url), &mut |_| {}));
    assert!(
        matches!(result, Err(Error::LoginExpired { .. })),
        "{result:?}"
    );
}

/// RFC 7636 §4.6: the code is bound to the challenge; a verifier that does not hash to it is
/// refused (and burns the code), the right one is accepted.
#[test]
fn a_code_exchanged_with_the_wrong_pkce_verifier_is_refused() {
    let server = FakeServer::builder().build();
    let transport = FakeTransport::new(server.clone());
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    // RFC 7636 Appendix B's pair.
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let code_for = |challenge: &str| {
        let url = format!(
            "{ISSUER}/authorize?response_type=code&client_id={}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback&state=s&code_challenge={challenge}&code_challenge_method=S256",
            credlock_test::TEST_CLIENT_ID
        );
        let peek = transport.peek(&url, Duration::from_secs(1)).unwrap();
        assert_eq!(peek.status, 302);
        let location = peek.location.unwrap();
        assert!(
            location.starts_with("http://127.0.0.1:9/callback?code="),
            "{location}"
        );
        assert!(location.ends_with("&state=s"), "{location}");
        location["http://127.0.0.1:9/callback?code=".len()..location.len() - "&state=s".len()]
            .to_owned()
    };
    let exchange = |code: &str, verifier: &str| {
        let mut request =
            FormRequest::refresh(&server.seed_session(&format!("{ISSUER}/token")).unwrap());
        request.form.clear();
        for (k, v) in [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", "http://127.0.0.1:9/callback"),
            ("code_verifier", verifier),
            ("client_id", credlock_test::TEST_CLIENT_ID),
        ] {
            request.form.push((k, Secret::new(v)));
        }
        transport.post_form(&request).unwrap()
    };
    let code = code_for(challenge);
    let refused = exchange(&code, "not-the-verifier-of-this-challenge-at-all-xxxxx");
    assert_eq!(refused.status, 400);
    assert!(String::from_utf8_lossy(&refused.body).contains("invalid_grant"));
    assert_eq!(server.counters().pkce_failures, 1);
    // The code was burnt by the failed attempt.
    assert_eq!(exchange(&code, verifier).status, 400);
    let fresh = code_for(challenge);
    let accepted = exchange(&fresh, verifier);
    assert_eq!(
        accepted.status,
        200,
        "{}",
        String::from_utf8_lossy(&accepted.body)
    );
    assert_eq!(server.counters().logins, 1);
}

/// Log in on first use, in one call: an empty store logs in (the device code is shown once)
/// and stores the session; the next call uses it without a login.
#[test]
fn access_token_or_login_logs_in_on_first_use_and_then_uses_the_stored_session() {
    let (server, login) = in_memory(ScriptedUser::approves().after_polls(1));
    let dir = tempfile::tempdir().unwrap();
    let store = credlock::Store::new(dir.path().join("session.json"));
    let mut prompts = 0;
    let first = store
        .access_token_or_login(&login, &mut |prompt| {
            assert!(matches!(prompt, Prompt::DeviceCode(_)), "{prompt:?}");
            prompts += 1;
        })
        .expect("logged in");
    assert!(server.is_access_token_valid(first.secret()));
    assert_eq!(prompts, 1);
    let second = store
        .access_token_or_login(&login, &mut |_| panic!("no second login"))
        .expect("stored session");
    assert_eq!(second.secret(), first.secret());
    assert_eq!(server.counters().logins, 1);
    assert_eq!(
        store.load().unwrap().unwrap().access_token().secret(),
        first.secret()
    );
}

#[test]
fn access_token_or_login_with_a_denying_user_fails_and_stores_nothing() {
    let (_, login) = in_memory(ScriptedUser::denies());
    let dir = tempfile::tempdir().unwrap();
    let store = credlock::Store::new(dir.path().join("session.json"));
    let err = store
        .access_token_or_login(&login, &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, Error::LoginDenied { .. }), "{err:?}");
    assert!(store.load().unwrap().is_none());
}

/// The browser flow through `Login::run`: the login knows its browser (the kit's scripted
/// one) and tells the URL through the prompt.
#[test]
fn access_token_or_login_runs_the_browser_flow_it_is_given() {
    let (server, login) = in_memory(ScriptedUser::approves());
    let browser = server.clone();
    let login = login
        .with_flow(credlock::Flow::Browser)
        .with_browser(move |url| browser.open_browser(url))
        .with_deadline(Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.json");
    let (token, urls) = credlock_within(move || {
        let mut urls = Vec::new();
        let token = credlock::Store::new(path).access_token_or_login(&login, &mut |p| {
            if let Prompt::Url(u) = p {
                urls.push(u.to_owned());
            }
        });
        (token, urls)
    });
    let token = token.expect("logged in");
    assert!(server.is_access_token_valid(token.secret()));
    assert_eq!(urls.len(), 1);
    assert!(
        urls[0].starts_with(&format!("{ISSUER}/authorize?")),
        "{}",
        urls[0]
    );
}

/// `AsyncStore` logs in and imports on the blocking pool, as its other calls run.
#[test]
fn the_async_store_logs_in_on_first_use_and_imports() {
    let (server, login) = in_memory(ScriptedUser::approves());
    let dir = tempfile::tempdir().unwrap();
    let store = credlock::AsyncStore::new(credlock::Store::new(dir.path().join("a.json")));
    let other = credlock::AsyncStore::new(credlock::Store::new(dir.path().join("b.json")));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let seeded = server.seed();
    let client = credlock::Client::new(
        format!("{ISSUER}/token"),
        credlock_test::TEST_CLIENT_ID,
        ClientAuth::None,
    )
    .unwrap();
    let (first, second, imported, denied) = runtime.block_on(async {
        let first = store.access_token_or_login(login.clone(), |_| {}).await;
        let second = store
            .access_token_or_login(login.clone(), |_| panic!("no second login"))
            .await;
        let imported = other
            .import_json(
                client.clone(),
                br#"{"access_token":"at-imported","token_type":"Bearer","expires_in":60,"refresh_token":"rt-imported"}"#.to_vec(),
            )
            .await;
        let again = other.import_token_response(client, seeded).await;
        server.set_user(ScriptedUser::denies());
        let fresh = credlock::AsyncStore::new(credlock::Store::new(dir.path().join("c.json")));
        let denied = fresh
            .login_with(login.deadline(), move || login.device(&mut |_| {}))
            .await;
        (first, second, imported.and(again), denied)
    });
    let first = first.expect("logged in");
    assert!(server.is_access_token_valid(first.secret()));
    assert_eq!(second.unwrap().secret(), first.secret());
    assert_eq!(server.counters().logins, 1);
    let imported = imported.expect("imported");
    assert!(server.is_live(imported.refresh_token().secret()));
    assert_eq!(
        credlock::Store::new(dir.path().join("b.json"))
            .load()
            .unwrap()
            .unwrap()
            .refresh_token()
            .secret(),
        imported.refresh_token().secret()
    );
    assert!(
        matches!(denied, Err(Error::LoginDenied { .. })),
        "{denied:?}"
    );
}

/// RFC 8628 §3.5 on the server's side: a device code polled after its lifetime (by the
/// server's clock) is answered `expired_token`, and is gone after that.
#[test]
fn a_device_code_polled_after_it_expired_is_answered_expired_token() {
    let clock = ManualClock::starting_now();
    let server = FakeServer::builder()
        .clock(clock.clone())
        .user(ScriptedUser::never_answers())
        .build();
    let transport = FakeTransport::new(server.clone());
    let post = |url: &str, fields: &[(&'static str, &str)]| {
        let mut request =
            FormRequest::refresh(&server.seed_session(&format!("{ISSUER}/token")).unwrap());
        request.url = url.to_owned();
        request.form.clear();
        for (k, v) in fields {
            request.form.push((k, Secret::new(*v)));
        }
        let response = transport.post_form(&request).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        (response.status, body)
    };
    let client_id = credlock_test::TEST_CLIENT_ID;
    let (status, authorization) = post(
        &format!("{ISSUER}/device_authorization"),
        &[("client_id", client_id)],
    );
    assert_eq!(status, 200);
    assert_eq!(authorization["interval"], 1);
    let device_code = authorization["device_code"].as_str().unwrap().to_owned();
    let poll = || {
        post(
            &format!("{ISSUER}/token"),
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", &device_code),
                ("client_id", client_id),
            ],
        )
    };
    assert_eq!(poll().1["error"], "authorization_pending");
    clock.advance(Duration::from_secs(
        authorization["expires_in"].as_u64().unwrap() + 1,
    ));
    assert_eq!(poll().1["error"], "expired_token");
    assert_eq!(poll().1["error"], "invalid_grant");
}

/// An `error=` that comes back through the browser's redirect is not authenticated (anyone
/// who can read the `state` can send it to the loopback port): it ends this login, but the
/// callers that waited for it run their own rather than inherit the refusal. A refusal the
/// token endpoint states (the device flow's `access_denied`) still ends them.
#[test]
fn a_denial_through_the_redirect_does_not_end_the_callers_waiting_for_the_login() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.json");
    let run = |user: ScriptedUser, browser_flow: bool| {
        let (_server, login) = in_memory(user);
        let (p1, p2) = (path.clone(), path.clone());
        credlock_within(move || {
            let holder = std::thread::spawn(move || {
                credlock::Store::new(&p1).login_with(Duration::from_secs(20), || {
                    std::thread::sleep(Duration::from_millis(400));
                    if browser_flow {
                        // Another local user who read the `state` sends the refusal.
                        login.browser(&|url| forge_denial(url), &mut |_| {})
                    } else {
                        login.device(&mut |_| {})
                    }
                })
            });
            std::thread::sleep(Duration::from_millis(100));
            let waiter = credlock::Store::new(&p2).login_with(Duration::from_secs(20), || {
                Err(Error::LoginAborted {
                    reason: "the waiter's own login".into(),
                })
            });
            (holder.join().unwrap(), waiter)
        })
    };
    let (held, waited) = run(ScriptedUser::never_answers(), true);
    assert!(matches!(held, Err(Error::LoginDenied { .. })), "{held:?}");
    assert!(
        matches!(waited, Err(Error::LoginAborted { ref reason }) if reason == "the waiter's own login"),
        "{waited:?}"
    );
    let (held, waited) = run(ScriptedUser::denies(), false);
    assert!(matches!(held, Err(Error::LoginDenied { .. })), "{held:?}");
    assert!(
        matches!(waited, Err(Error::LoginDenied { .. })),
        "{waited:?}"
    );
}

/// Sends `error=access_denied` with the authorization URL's `state` to its loopback
/// redirect URI, as anyone who can read the URL could.
fn forge_denial(url: &str) -> std::io::Result<()> {
    let param = |name: &str| {
        url.split(['?', '&'])
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .map(|v| v.replace("%3A", ":").replace("%2F", "/"))
            .unwrap_or_else(|| panic!("no {name} in {url}"))
    };
    let (state, redirect_uri) = (param("state"), param("redirect_uri"));
    let port: u16 = redirect_uri
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/callback")
        .parse()
        .unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "GET /callback?state={state}&error=access_denied HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .unwrap();
        let _ = s.read_to_end(&mut Vec::new());
    });
    Ok(())
}
