//! The paste flow: PKCE, the code exchange, and what a pasted redirect may carry.

use std::sync::{Arc, Mutex};

use super::*;
use crate::login::test_transport;
use crate::login::tests::{TOKENS, login};
use crate::login::*;

/// The authorization URL's query as pairs.
fn query_of(url: &str) -> Vec<(String, String)> {
    url.split_once('?')
        .unwrap()
        .1
        .split('&')
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (
                k.to_owned(),
                crate::basics::encoding::form_urldecode(v).unwrap(),
            )
        })
        .collect()
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> &'a str {
    &q.iter().find(|(n, _)| n == k).unwrap().1
}

#[test]
fn paste_sends_pkce_s256_and_exchanges_the_code_with_its_verifier() {
    let (l, t, _) = login(&[(200, TOKENS)]);
    let l = l.with_audience("api://x").with_param("prompt", "consent");
    let url = Mutex::new(String::new());
    let e = l
        .paste(&mut std::io::Cursor::new(Vec::new()), &mut |u| {
            *url.lock().unwrap() = u.to_owned();
        })
        .unwrap_err();
    assert!(
        matches!(e, Error::LoginAborted { .. }),
        "an empty stdin aborts: {e}"
    );
    let q = query_of(&url.lock().unwrap());
    assert_eq!(param(&q, "response_type"), "code");
    assert_eq!(param(&q, "code_challenge_method"), "S256");
    assert_eq!(param(&q, "redirect_uri"), "http://127.0.0.1/callback");
    assert_eq!(param(&q, "scope"), "openid offline_access");
    assert_eq!(param(&q, "audience"), "api://x");
    assert_eq!(param(&q, "prompt"), "consent");
    assert_eq!(q.iter().filter(|(k, _)| k == "prompt").count(), 1);
    assert!(param(&q, "state").len() >= 32);
    assert_eq!(t.posts_sent(), 0, "nothing is exchanged without a code");

    // Now with a pasted redirect URL: the state is taken from what `tell` saw. (No id_token
    // in the answer: one would have to carry the nonce, which the next tests check.)
    let without_id_token = TOKENS.replace(r#","id_token":"h.p.s""#, "");
    let (l, t, _) = login(&[(200, &without_id_token)]);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = ChannelLine(rx, None);
    let session = l
        .paste(&mut std::io::BufReader::new(reader), &mut |u| {
            let q = query_of(u);
            let _ = tx.send(format!(
                "http://127.0.0.1/callback?code=the-code&state={}\n",
                param(&q, "state")
            ));
            let _ = tx.send(param(&q, "code_challenge").to_owned());
        })
        .unwrap();
    assert_eq!(session.refresh_token().secret(), "rt-1");
    let form = t.form(1);
    assert_eq!(form[0], ("grant_type".into(), "authorization_code".into()));
    assert_eq!(form[1], ("code".into(), "the-code".into()));
    assert_eq!(
        form[2],
        ("redirect_uri".into(), "http://127.0.0.1/callback".into())
    );
    let verifier = &form[3].1;
    assert_eq!(form[3].0, "code_verifier");
    let challenge = challenge_sent();
    assert_eq!(crate::login::pkce::challenge_s256(verifier), challenge);
}

thread_local! {
    static CHALLENGE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn challenge_sent() -> String {
    CHALLENGE.with(|c| c.borrow().clone())
}

/// Stdin fed by the `tell` callback: the first message is the line, the second the challenge
/// (kept for the assertion).
struct ChannelLine(
    std::sync::mpsc::Receiver<String>,
    Option<std::io::Cursor<Vec<u8>>>,
);

impl std::io::Read for ChannelLine {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        if self.1.is_none() {
            let line = self.0.recv().unwrap_or_default();
            if let Ok(ch) = self.0.recv() {
                CHALLENGE.with(|c| *c.borrow_mut() = ch);
            }
            self.1 = Some(std::io::Cursor::new(line.into_bytes()));
        }
        std::io::Read::read(self.1.as_mut().unwrap(), b)
    }
}

#[test]
fn a_pasted_redirect_with_another_state_or_an_error_exchanges_nothing() {
    for (pasted, want) in [
        (
            "http://127.0.0.1/callback?code=c&state=forged\n",
            "login_state_mismatch",
        ),
        (
            "http://127.0.0.1/callback?error=access_denied&state=STATE\n",
            "login_denied",
        ),
        (
            "http://127.0.0.1/callback?error=invalid_scope&state=STATE\n",
            "login_refused",
        ),
    ] {
        let (l, t, _) = login(&[]);
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let e = l
            .paste(
                &mut std::io::BufReader::new(ChannelLine(rx, None)),
                &mut |u| {
                    let q = query_of(u);
                    let _ = tx.send(pasted.replace("STATE", param(&q, "state")));
                    let _ = tx.send(String::new());
                },
            )
            .unwrap_err();
        assert_eq!(e.kind(), want, "{e}");
        assert_eq!(t.posts_sent(), 0);
    }
}

#[test]
fn a_refused_exchange_does_not_echo_the_code() {
    let (l, _, _) = login(&[(
        400,
        r#"{"error":"invalid_grant","error_description":"code the-secret-code-xyz is unknown"}"#,
    )]);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let e = l
        .paste(
            &mut std::io::BufReader::new(ChannelLine(rx, None)),
            &mut |_| {
                let _ = tx.send("the-secret-code-xyz\n".to_owned());
                let _ = tx.send(String::new());
            },
        )
        .unwrap_err();
    assert!(
        matches!(e, Error::LoginRefused { status: 400, .. }) && e.needs_login(),
        "{e}"
    );
    assert!(!e.to_string().contains("the-secret-code"), "{e}");
    assert!(!format!("{e:?}").contains("the-secret-code"), "{e:?}");
}

/// An unsigned JWT-shaped id_token whose payload is `claims`.
fn id_token_with(claims: &serde_json::Value) -> String {
    let part = |v: &[u8]| crate::login::pkce::base64url(v);
    format!(
        "{}.{}.sig",
        part(br#"{"alg":"none"}"#),
        part(claims.to_string().as_bytes())
    )
}

/// Pastes a code for `l`, answering the exchange with an id_token made from the nonce the
/// authorization URL carried (`None` if it carried none).
fn paste_answering(
    l: &Login,
    t: &test_transport::Scripted,
    answer: impl Fn(Option<&str>) -> serde_json::Value,
) -> (Result<Session, Error>, Option<String>) {
    let sent = Mutex::new(None);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let result = l.paste(
        &mut std::io::BufReader::new(ChannelLine(rx, None)),
        &mut |u| {
            let q = query_of(u);
            let nonce = q.iter().find(|(k, _)| k == "nonce").map(|(_, v)| v.clone());
            let body = serde_json::json!({
                "access_token": "at-1", "token_type": "Bearer", "expires_in": 3600,
                "refresh_token": "rt-1", "id_token": id_token_with(&answer(nonce.as_deref())),
            });
            t.then_post(200, &body.to_string());
            *sent.lock().unwrap() = nonce;
            let _ = tx.send(format!(
                "http://127.0.0.1/callback?code=c&state={}\n",
                param(&q, "state")
            ));
            let _ = tx.send(String::new());
        },
    );
    (result, sent.into_inner().unwrap())
}

#[test]
fn an_openid_request_carries_a_fresh_nonce_that_the_id_token_must_echo() {
    let (l, t, _) = login(&[]);
    let (ok, first) = paste_answering(&l, &t, |n| serde_json::json!({ "nonce": n }));
    let first = first.expect("a nonce is sent with scope openid");
    assert!(first.len() >= 22, "{first}");
    let session = ok.unwrap();
    assert!(session.id_token().is_some());
    let (l, t, _) = login(&[]);
    let (wrong, second) = paste_answering(&l, &t, |_| serde_json::json!({ "nonce": "other" }));
    assert_ne!(second.as_deref(), Some(first.as_str()), "fresh per login");
    let e = wrong.unwrap_err();
    assert!(matches!(e, Error::LoginInvalidResponse { .. }), "{e}");
    assert!(e.to_string().contains("nonce"), "{e}");
    let (l, t, _) = login(&[]);
    let (missing, _) = paste_answering(&l, &t, |_| serde_json::json!({ "sub": "u" }));
    assert!(matches!(missing, Err(Error::LoginInvalidResponse { .. })));
}

#[test]
fn a_request_without_openid_carries_no_nonce() {
    let t = Arc::new(test_transport::Scripted::new());
    let l = Login::new(
        Endpoints::new("https://id.example/token")
            .unwrap()
            .with_authorization("https://id.example/auth")
            .unwrap(),
        "cli",
        ClientAuth::None,
    )
    .unwrap()
    .with_scopes(["profile"])
    .with_transport(t.clone());
    let (ok, nonce) = paste_answering(&l, &t, |_| serde_json::json!({}));
    assert_eq!(nonce, None);
    ok.unwrap();
}

#[test]
fn an_error_in_the_redirect_is_reported_as_the_redirect_not_as_an_http_status() {
    let (l, _, _) = login(&[]);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let e = l
        .paste(
            &mut std::io::BufReader::new(ChannelLine(rx, None)),
            &mut |u| {
                let q = query_of(u);
                let _ = tx.send(format!(
                    "http://127.0.0.1/callback?error=invalid_scope&error_description=no+such+scope&state={}\n",
                    param(&q, "state")
                ));
                let _ = tx.send(String::new());
            },
        )
        .unwrap_err();
    let text = e.to_string();
    assert!(!text.contains("HTTP 302"), "{text}");
    assert!(
        text.contains("redirect") && text.contains("invalid_scope (no such scope)"),
        "{text}"
    );
    assert!(e.is_configuration(), "{text}");
}

#[test]
fn a_nonce_given_as_a_parameter_is_the_one_the_id_token_must_carry() {
    let (l, t, _) = login(&[]);
    let l = l.with_param("nonce", "my-own-nonce");
    let (ok, sent) = paste_answering(&l, &t, |n| serde_json::json!({ "nonce": n }));
    assert_eq!(sent.as_deref(), Some("my-own-nonce"));
    ok.unwrap();
    let (l, t, _) = login(&[]);
    let l = l.with_param("nonce", "my-own-nonce");
    let (wrong, _) = paste_answering(&l, &t, |_| serde_json::json!({ "nonce": "other" }));
    assert!(matches!(wrong, Err(Error::LoginInvalidResponse { .. })));
}

fn read(s: &str) -> Result<Redirect, Error> {
    read_redirect(&mut std::io::Cursor::new(s.as_bytes().to_vec()), "st")
}

#[test]
fn a_bare_code_a_url_or_a_query_are_accepted() {
    assert!(matches!(read("  abc-123 \n"), Ok(Redirect::Code(c)) if c == "abc-123"));
    assert!(matches!(
        read("http://127.0.0.1/callback?code=x%2By&state=st#frag\n"),
        Ok(Redirect::Code(c)) if c == "x+y"
    ));
    assert!(matches!(read("code=q&state=st"), Ok(Redirect::Code(c)) if c == "q"));
}

/// Google shows the code percent-encoded (`4%2F0Ab…`); sending it as pasted would spend
/// the single-use code on an `invalid_grant`.
#[test]
fn a_percent_encoded_bare_code_is_decoded_and_a_literal_percent_or_plus_is_kept() {
    assert!(matches!(read("4%2F0AbCd-e_f\n"), Ok(Redirect::Code(c)) if c == "4/0AbCd-e_f"));
    assert!(matches!(read("4/0Ab+x\n"), Ok(Redirect::Code(c)) if c == "4/0Ab+x"));
    assert!(matches!(read("4%2F0Ab+x\n"), Ok(Redirect::Code(c)) if c == "4/0Ab+x"));
    assert!(matches!(read("50%off\n"), Ok(Redirect::Code(c)) if c == "50%off"));
}

#[test]
fn paste_errors_are_typed() {
    assert!(matches!(read(""), Err(Error::LoginAborted { .. })));
    assert!(matches!(read("\n"), Err(Error::LoginAborted { .. })));
    assert!(matches!(
        read("http://h/cb?code=q&state=other"),
        Err(Error::LoginStateMismatch)
    ));
    assert!(matches!(
        read("http://h/cb?code=q"),
        Err(Error::LoginStateMismatch)
    ));
    assert!(matches!(
        read("http://h/cb?state=st"),
        Err(Error::LoginInvalidResponse { .. })
    ));
    assert!(matches!(
        read("http://h/cb?error=access_denied&state=st"),
        Ok(Redirect::Error { code, .. }) if code == "access_denied"
    ));
}
