use std::path::Path;
use std::time::SystemTime;

use super::envelope::{self, KEY_LEN, Unreadable, aead_key, open, parse_header, seal};
use super::*;
use crate::session::model::{Client, ClientAuth};
use crate::session::token_response::TokenResponse;

const ACCESS: &str = "at-sealed-4f1c9";
const REFRESH: &str = "rt-sealed-8d2e7";

fn session() -> Session {
    let client =
        Client::new("https://auth.example.com/token", "cli", ClientAuth::None).expect("client");
    let body = format!(
        r#"{{"access_token":"{ACCESS}","token_type":"Bearer","expires_in":3600,"refresh_token":"{REFRESH}","id_token":"idt-sealed"}}"#
    );
    let response = TokenResponse::from_json(body.as_bytes()).expect("response");
    Session::from_token_response(client, response, SystemTime::now()).expect("session")
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

const KEY: [u8; KEY_LEN] = [7; KEY_LEN];

#[test]
fn a_sealed_session_opens_to_the_same_bytes_and_holds_no_token_in_the_clear() {
    let json = session().to_json();
    let sealed = seal(&aead_key(&KEY), "0a1b2c3d4e5f6071", &json).expect("seal");
    assert!(sealed.starts_with(b"credlock-sealed/1 aes-256-gcm keyring:0a1b2c3d4e5f6071\n"));
    for secret in [ACCESS, REFRESH, "idt-sealed"] {
        assert!(!contains(&sealed, secret), "{secret} in the sealed file");
    }
    assert_eq!(open(&aead_key(&KEY), &sealed).expect("open"), json);
}

#[test]
fn every_seal_uses_a_fresh_nonce() {
    let key = aead_key(&KEY);
    let a = seal(&key, "k1", b"{}").expect("seal");
    let b = seal(&key, "k1", b"{}").expect("seal");
    assert_ne!(
        a, b,
        "the same plaintext sealed twice must differ (fresh nonce)"
    );
}

#[test]
fn any_changed_byte_of_a_sealed_file_is_refused_never_opened() {
    let key = aead_key(&KEY);
    let sealed = seal(&key, "k1", &session().to_json()).expect("seal");
    for i in 0..sealed.len() {
        let mut tampered = sealed.clone();
        tampered[i] ^= 0x01;
        assert!(
            open(&key, &tampered).is_err(),
            "byte {i} changed and still opened"
        );
    }
}

#[test]
fn the_header_is_bound_to_the_ciphertext_so_another_key_id_does_not_open() {
    let key = aead_key(&KEY);
    let sealed = seal(&key, "k1", b"{}").expect("seal");
    let mut renamed = b"credlock-sealed/1 aes-256-gcm keyring:k2\n".to_vec();
    renamed.extend_from_slice(&sealed[sealed.iter().position(|b| *b == b'\n').expect("nl") + 1..]);
    assert_eq!(open(&key, &renamed), Err(Unreadable::DoesNotDecrypt));
}

#[test]
fn a_wrong_key_does_not_open_a_sealed_file() {
    let sealed = seal(&aead_key(&KEY), "k1", b"{}").expect("seal");
    assert_eq!(
        open(&aead_key(&[8; KEY_LEN]), &sealed),
        Err(Unreadable::DoesNotDecrypt)
    );
}

#[test]
fn a_newer_version_or_an_unknown_scheme_is_named_not_guessed() {
    assert_eq!(
        parse_header(b"credlock-sealed/2 aes-256-gcm keyring:k1\nAAAA\n").map(|h| h.0),
        Err(Unreadable::NewerVersion(2))
    );
    assert_eq!(
        parse_header(b"credlock-sealed/1 chacha20-poly1305 tpm:k1\nAAAA\n").map(|h| h.0),
        Err(Unreadable::UnknownScheme("chacha20-poly1305 tpm".into()))
    );
    for bad in [
        &b"credlock-sealed/1 aes-256-gcm keyring:K_1\n"[..],
        b"credlock-sealed/1 aes-256-gcm keyring:\n",
        b"credlock-sealed/1 aes-256-gcm\n",
        b"credlock-sealed/0 aes-256-gcm keyring:k1\n",
        b"credlock-sealed/1 aes-256-gcm keyring:k1",
        b"credlock-sealed/x\n",
    ] {
        assert!(
            matches!(parse_header(bad), Err(Unreadable::Malformed(_))),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn base64_decoding_undoes_the_crates_encoder_and_refuses_what_it_never_writes() {
    for len in 0..40 {
        let input: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        let text = crate::basics::encoding::base64(&input);
        assert_eq!(
            envelope::base64_decode_for_tests(text.as_bytes()),
            Some(input)
        );
    }
    for bad in [
        "A", "AB=C", "====", "AA==AAAA", "A B=", "AAA\n", "AB==", "AAB=",
    ] {
        assert_eq!(
            envelope::base64_decode_for_tests(bad.as_bytes()),
            None,
            "{bad}"
        );
    }
}

#[test]
fn decode_reads_a_sealed_file_with_a_key_this_process_holds_and_names_the_key_when_it_does_not_open()
 {
    let path = Path::new("/nonexistent/session.json");
    keys::remember_key_for_tests("decode-test-1", &KEY);
    let s = session();
    let sealed = seal(&aead_key(&KEY), "decode-test-1", &s.to_json()).expect("seal");
    let back = decode(&sealed, path, Duration::from_secs(1)).expect("decode");
    assert_eq!(back, s);
    let mut tampered = sealed.clone();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let e = decode(&tampered, path, Duration::from_secs(1)).expect_err("tampered");
    assert!(
        matches!(&e, Error::Undecryptable { key_id, .. } if key_id == "decode-test-1"),
        "{e:?}"
    );
    assert!(
        !e.needs_login() && !e.is_transient(),
        "not 'log in again', not 'retry': {e}"
    );
    for secret in [ACCESS, REFRESH] {
        assert!(!format!("{e} {e:?}").contains(secret));
    }
    assert_eq!(
        protection_of(&sealed, path).expect("header"),
        FileProtection::Keyring {
            key_id: "decode-test-1".into(),
            scheme: "aes-256-gcm"
        }
    );
    assert_eq!(
        protection_of(&s.to_json(), path).expect("plain"),
        FileProtection::None
    );
}

#[test]
fn a_keychain_error_says_what_to_do_and_is_neither_log_in_again_nor_transient() {
    let e = Error::Keychain {
        path: "/s.json".into(),
        key_id: "k1".into(),
        problem: KeychainProblem::Unreachable,
        detail: "no session bus".into(),
    };
    let text = e.to_string();
    assert!(
        text.contains("unlock") && text.contains("credlock protect none"),
        "{text}"
    );
    assert!(text.contains("left untouched"), "{text}");
    assert!(!e.needs_login() && !e.is_transient() && e.is_configuration());
    assert_eq!(e.kind(), "keychain");
}

#[test]
fn protections_parse_from_and_print_as_their_cli_names() {
    for p in [Protection::None, Protection::Keyring] {
        assert_eq!(p.to_string().parse::<Protection>(), Ok(p));
    }
    assert!("plain".parse::<Protection>().is_err());
    assert_eq!(
        FileProtection::Keyring {
            key_id: "k1".into(),
            scheme: "aes-256-gcm"
        }
        .to_string(),
        "keyring (aes-256-gcm, key k1)"
    );
}

#[test]
fn protect_keyring_on_a_shared_filesystem_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let json = session().to_json();
    std::fs::write(&path, &json).expect("write");
    for kind in [
        crate::FsKind::Nfs { local_locks: false },
        crate::FsKind::Smb,
    ] {
        let store = crate::Store::new(&path).with_filesystem_kind(kind);
        let e = store.protect(Protection::Keyring).expect_err("refused");
        assert!(matches!(e, Error::ProtectionRefused { .. }), "{e:?}");
        assert!(e.to_string().contains("other machines"), "{e}");
    }
    let leased = crate::Store::new(&path)
        .with_filesystem_kind(crate::FsKind::Local)
        .with_lock_mode(crate::LockMode::Lease);
    assert!(matches!(
        leased.protect(Protection::Keyring),
        Err(Error::ProtectionRefused { .. })
    ));
    assert_eq!(std::fs::read(&path).expect("read"), json, "byte for byte");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(names.len(), 1, "no lock, lease or temp file: {names:?}");
}
