//! The paste flow: PKCE, the code exchange, and what a pasted redirect may carry.

use std::sync::Mutex;

use super::tests::{TOKENS, login};
use super::*;

/// The authorization URL's query as pairs.
fn query_of(url: &str) -> Vec<(String, String)> {
    url.split_once('?')
        .unwrap()
        .1
        .split('&')
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (k.to_owned(), crate::encoding::form_urldecode(v).unwrap())
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

    // Now with a pasted redirect URL: the state is taken from what `tell` saw.
    let (l, t, _) = login(&[(200, TOKENS)]);
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
    assert_eq!(super::pkce::challenge_s256(verifier), challenge);
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
