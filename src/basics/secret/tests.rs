use super::{EchoGuard, Secret, display_url};

#[test]
fn an_echo_is_recognised_in_every_encoding_and_prose_is_not() {
    let secret = "rt+/0==Zq;x y@K9";
    let guard = EchoGuard::new(&[secret]);
    for echo in [
        "rt+/0==Zq;x y@K9",
        "rt%2B%2F0%3D%3DZq%3Bx+y%40K9",
        "rt%2b%2f0%3d%3dzq%3bx%20y%40k9",
        "RT+/0==ZQ;X Y@K9",
        "/0==Zq;x",
        r"r\u0074\u002b/0==Zq",
        "&#114;&#116;&#43;&#47;&#48;&#61;&#61;&#90;",
        "cnQrLzA9PVpxO3ggeUBLOQ==",
        "cnQrLzA9PVpxO3ggeUBLOQ",
        "xcnQrLzA9PVpxO3g",
        "72742b2f303d3d5a71",
        "rt+/0\u{200b}==Zq;x",
        "rt%252B%252F0%253D%253DZq",
    ] {
        assert!(guard.echoes(echo), "{echo}");
    }
    for prose in [
        "grant request is invalid",
        "client authentication failed",
        "The refresh token has expired. Log in again.",
        "",
    ] {
        assert!(!guard.echoes(prose), "{prose}");
    }
    assert!(!EchoGuard::new(&[]).echoes("anything"));
    assert!(!EchoGuard::new(&[""]).echoes("anything"));
}

#[test]
fn debug_never_shows_the_value() {
    let s = Secret::new("hunter2");
    assert!(!format!("{s:?}").contains("hunter2"));
    assert!(!format!("{s:#?}").contains("hunter2"));
}

#[test]
fn everything_before_the_last_at_sign_is_hidden() {
    for (url, shown) in [
        ("https://u:pa?ss@idp/t", "https://[redacted]@idp/t"),
        ("https://u:pa#ss@idp/t?x=1", "https://[redacted]@idp/t?x=1"),
        ("https://u:pa/ss@idp/t", "https://[redacted]@idp/t"),
        ("https://u:p@ss@idp/t", "https://[redacted]@idp/t"),
        ("https:/u:pw@idp", "https:[redacted]@idp"),
        ("u:pw@idp", "u:[redacted]@idp"),
        ("https://idp/t?q=1", "https://idp/t?q=1"),
    ] {
        assert_eq!(display_url(url), shown, "{url}");
    }
}
