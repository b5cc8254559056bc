//! Sessions sealed with a key in the OS keychain, on the real thing: gnome-keyring's Secret
//! Service on a private D-Bus session bus (the `#[ignore]`d tests; Debian packages `dbus`,
//! `gnome-keyring`, `libsecret-tools`), and no keychain at all or one that never answers (the
//! plain suite). Every refusal leaves the file byte for byte, and never says "log in again".

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use credlock::Store;
use credlock_test::{FakeServer, HttpServer, ReusePolicy};

use crate::common::{Reaped, credlock, finish, run_with_stdin};

/// A sealed file's first line, for a key this machine's keychain does not have.
const FOREIGN_SEALED: &[u8] = b"credlock-sealed/1 aes-256-gcm keyring:0123456789abcdef\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n";

fn run(mut cmd: Command) -> std::process::Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn credlock");
    finish(child, Duration::from_secs(60))
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// `credlock` with `DBUS_SESSION_BUS_ADDRESS` set to `bus`.
fn credlock_on(bus: &str, store: &Path, args: &[&str]) -> Command {
    let mut c = credlock(store, args);
    c.env("DBUS_SESSION_BUS_ADDRESS", bus);
    c
}

/// Failure table: sealed file, no keychain reachable (no session bus, no Secret Service, headless SSH, WSL)
#[test]
fn with_no_keychain_reachable_a_sealed_store_is_refused_without_exit_0_or_3_and_left_byte_for_byte()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    std::fs::write(&path, FOREIGN_SEALED).expect("write");
    let nowhere = format!("unix:path={}", dir.path().join("no-bus").display());
    for args in [
        &["token"][..],
        &["token", "--json"],
        &["status"],
        &["protect", "none"],
    ] {
        let out = run(credlock_on(&nowhere, &path, args));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {stderr}");
        assert!(
            stderr.contains("no OS keychain is reachable"),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("credlock protect none"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("log in again"), "{args:?}: {stderr}");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            FOREIGN_SEALED,
            "{args:?}"
        );
    }
    let out = run(credlock_on(&nowhere, &path, &["token", "--json"]));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["error"]["kind"], "keychain", "{json}");
    assert_eq!(json["error"]["needs_login"], false, "{json}");
}

/// Failure table: sealed file, keychain does not answer within the keychain timeout (5 s)
#[test]
fn a_keychain_that_never_answers_costs_the_keychain_timeout_not_forever() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    std::fs::write(&path, FOREIGN_SEALED).expect("write");
    // A socket that accepts connections and never says a word: a hung agent.
    let socket = dir.path().join("silent-bus");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    let mut cmd = credlock_on(
        &format!("unix:path={}", socket.display()),
        &path,
        &["token"],
    );
    cmd.env("CREDLOCK_KEYCHAIN_TIMEOUT", "1");
    let started = Instant::now();
    let out = run(cmd);
    let took = started.elapsed();
    drop(listener);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("did not answer in time"), "{stderr}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(std::fs::read(&path).expect("read"), FOREIGN_SEALED);
}

/// Failure table: `protect keyring` (or a first protected save) on NFS, SMB, FUSE, or under a lease
#[test]
fn protect_keyring_on_an_nfs_like_store_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let fake = FakeServer::builder().build();
    let session = fake.seed_session("http://127.0.0.1:9/token").expect("seed");
    Store::new(&path).save(&session).expect("save");
    let before = std::fs::read(&path).expect("read");
    let listing = || {
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("e").file_name())
            .collect();
        names.sort();
        names
    };
    let files_before = listing();
    for kind in ["nfs", "smb"] {
        let mut cmd = credlock(&path, &["protect", "keyring"]);
        cmd.env("CREDLOCK_FS_KIND", kind);
        let out = run(cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{kind}: {stderr}");
        assert!(stderr.contains("other machines"), "{kind}: {stderr}");
        assert!(stderr.contains("nothing was changed"), "{kind}: {stderr}");
    }
    let out = run(credlock(&path, &["--lock", "lease", "protect", "keyring"]));
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&path).expect("read"), before, "byte for byte");
    assert_eq!(listing(), files_before, "no lock, lease or temp file made");
}

/// A private D-Bus session bus (no service activation: a killed keyring stays gone) with
/// gnome-keyring's Secret Service on it, unlocked with a password on stdin; both killed by
/// PID on drop, their files in a temp directory.
struct Keyring {
    dir: tempfile::TempDir,
    bus: String,
    _dbus: Reaped,
    daemon: Option<Reaped>,
}

impl Keyring {
    fn start() -> Keyring {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("bus");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .expect("bus config");
        let mut dbus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("prerequisite missing: dbus-daemon (apt-get install dbus): {e}")
            });
        let mut line = String::new();
        std::io::BufReader::new(dbus.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the bus address");
        let dbus = Reaped(dbus);
        let bus = line.trim().to_owned();
        assert!(bus.starts_with("unix:"), "bus address {bus:?}");
        let mut keyring = Keyring {
            dir,
            bus,
            _dbus: dbus,
            daemon: None,
        };
        keyring.start_daemon();
        keyring
    }

    fn start_daemon(&mut self) {
        let home = self.dir.path().join("home");
        let runtime = self.dir.path().join("run");
        for d in [&home, &runtime] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        #[cfg(unix)]
        std::fs::set_permissions(
            &runtime,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod");
        let mut daemon = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("XDG_DATA_HOME", home.join("data"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("prerequisite missing: gnome-keyring-daemon (apt-get install gnome-keyring): {e}")
            });
        let mut stdin = daemon.stdin.take().expect("stdin");
        stdin.write_all(b"test-keyring-password").expect("password");
        drop(stdin);
        self.daemon = Some(Reaped(daemon));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.secrets_on_the_bus() {
            assert!(
                Instant::now() < deadline,
                "gnome-keyring did not come up on {}",
                self.bus
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the Secret Service owns its name on the bus.
    fn secrets_on_the_bus(&self) -> bool {
        Command::new("dbus-send")
            .args([
                &format!("--bus={}", self.bus),
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                "string:org.freedesktop.secrets",
            ])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
    }

    /// Kills the Secret Service by PID, and waits until its name is gone from the bus.
    fn kill_daemon(&mut self) {
        drop(self.daemon.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.secrets_on_the_bus() {
            assert!(Instant::now() < deadline, "the keyring is still on the bus");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn credlock(&self, store: &Path, args: &[&str]) -> Command {
        let mut c = credlock_on(&self.bus, store, args);
        c.env("CREDLOCK_KEYCHAIN_TIMEOUT", "5");
        c
    }

    /// `secret-tool` on this keyring.
    fn secret_tool(&self, args: &[&str]) -> std::process::Output {
        let child = Command::new("secret-tool")
            .args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("prerequisite missing: secret-tool (apt-get install libsecret-tools): {e}")
            });
        finish(child, Duration::from_secs(30))
    }
}

/// A token server on loopback HTTP and a plain store holding an expired session of it.
fn expired_store(dir: &Path) -> (std::sync::Arc<FakeServer>, HttpServer, PathBuf) {
    let fake = FakeServer::builder()
        .policy(ReusePolicy::RevokeGrant)
        .latency(Duration::from_millis(50))
        .build();
    let http = HttpServer::start(fake.clone()).expect("start the token server");
    let path = dir.join("session.json");
    let seeded = fake
        .seed_session(&http.token_endpoint())
        .expect("seed")
        .with_expires_at(SystemTime::now());
    Store::new(&path).save(&seeded).expect("save");
    (fake, http, path)
}

fn assert_no_token_in(path: &Path, tokens: &[&str], when: &str) {
    let bytes = std::fs::read(path).expect("read");
    assert!(
        bytes.starts_with(b"credlock-sealed/1 aes-256-gcm keyring:"),
        "{when}: not sealed"
    );
    for t in tokens {
        assert!(!contains(&bytes, t), "{when}: a token in the clear");
    }
}

fn sealed_key_id(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read");
    let line = bytes.split(|b| *b == b'\n').next().expect("a header");
    String::from_utf8_lossy(line)
        .rsplit_once("keyring:")
        .expect("a key id")
        .1
        .to_owned()
}

#[test]
#[ignore = "needs dbus-daemon and gnome-keyring (the CI's full run installs them)"]
fn protect_keyring_leaves_no_token_in_the_file_before_and_after_sixteen_processes_make_one_refresh()
{
    let keyring = Keyring::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (fake, _http, path) = expired_store(dir.path());
    let old = Store::new(&path).load().expect("load").expect("stored");

    let out = run(keyring.credlock(&path, &["protect", "keyring", "--json"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["changed"], true, "{json}");
    assert_no_token_in(
        &path,
        &[old.access_token().secret(), old.refresh_token().secret()],
        "after protect",
    );
    let key_id = sealed_key_id(&path);
    let found = keyring.secret_tool(&["lookup", "service", "credlock", "username", &key_id]);
    assert!(
        found.status.success() && found.stdout.len() >= 32,
        "the key is in the keychain"
    );

    let out = run(keyring.credlock(&path, &["status", "--json"]));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let protection = status["protection"].as_str().expect("a protection");
    assert!(protection.starts_with("keyring"), "{status}");
    assert!(protection.contains(&key_id), "{status}");

    // Started back to back on the expired session: they meet at the lock.
    let children: Vec<std::process::Child> = (0..16)
        .map(|_| {
            keyring
                .credlock(&path, &["token"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let tokens: Vec<String> = children
        .into_iter()
        .map(|child| {
            let out = finish(child, Duration::from_secs(90));
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
        .collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    let c = fake.counters();
    assert_eq!(c.refresh_requests, 1, "{c:?}");
    assert_eq!(c.invalid_grant, 0, "{c:?}");
    assert_eq!(sealed_key_id(&path), key_id, "a refresh keeps the key");
    let after_refresh = path.with_extension("after-refresh");
    std::fs::copy(&path, &after_refresh).expect("keep the refreshed file");

    let out = run(keyring.credlock(&path, &["protect", "none"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The tokens the refresh wrote, read in the clear now, were not in the file it wrote.
    let plain = Store::new(&path).load().expect("load").expect("stored");
    assert_eq!(plain.access_token().secret(), tokens[0]);
    assert_ne!(
        plain.refresh_token().secret(),
        old.refresh_token().secret(),
        "rotated"
    );
    assert!(
        fake.is_live(plain.refresh_token().secret()),
        "the rotated grant was kept"
    );
    assert_no_token_in(
        &after_refresh,
        &[
            plain.access_token().secret(),
            plain.refresh_token().secret(),
        ],
        "after the refresh",
    );
}

#[test]
#[ignore = "needs dbus-daemon and gnome-keyring (the CI's full run installs them)"]
fn the_keyring_killed_mid_run_refuses_the_sealed_store_and_leaves_it_byte_for_byte() {
    let mut keyring = Keyring::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (fake, _http, path) = expired_store(dir.path());
    let out = run(keyring.credlock(&path, &["protect", "keyring"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(keyring.credlock(&path, &["token"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sealed = std::fs::read(&path).expect("read");

    keyring.kill_daemon();
    // A new process has no key in memory: the keychain's absence must not turn into a
    // plaintext write, a delete, or "log in again".
    for args in [&["token"][..], &["status"], &["protect", "none"]] {
        let out = run(keyring.credlock(&path, args));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !matches!(out.status.code(), Some(0 | 3)),
            "{args:?}: {:?} {stderr}",
            out.status
        );
        assert!(!stderr.contains("log in again"), "{args:?}: {stderr}");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            sealed,
            "{args:?}: byte for byte"
        );
    }
    let out = run(keyring.credlock(&path, &["token"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("keychain"), "{stderr}");
    assert_eq!(
        fake.counters().refresh_requests,
        1,
        "nothing sent without the key"
    );

    keyring.start_daemon();
    let out = run(keyring.credlock(&path, &["token"]));
    assert!(
        out.status.success(),
        "back with the keyring: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Failure table: sealed file, its key gone from the keychain
#[test]
#[ignore = "needs dbus-daemon and gnome-keyring (the CI's full run installs them)"]
fn a_key_gone_from_the_keychain_makes_the_file_unreadable_says_so_and_keeps_it() {
    let keyring = Keyring::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_fake, _http, path) = expired_store(dir.path());
    let out = run(keyring.credlock(&path, &["protect", "keyring"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sealed = std::fs::read(&path).expect("read");
    let key_id = sealed_key_id(&path);
    let cleared = keyring.secret_tool(&["clear", "service", "credlock", "username", &key_id]);
    assert!(
        cleared.status.success(),
        "{}",
        String::from_utf8_lossy(&cleared.stderr)
    );

    let out = run(keyring.credlock(&path, &["token", "--json"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("the key is gone from the OS keychain"),
        "{stderr}"
    );
    assert!(stderr.contains("left untouched"), "{stderr}");
    assert_eq!(
        std::fs::read(&path).expect("read"),
        sealed,
        "kept byte for byte"
    );
}

/// Failure table: `login --protect keyring` (`Store::check_protection`) with no keychain answering, or on a shared filesystem
#[test]
fn login_with_protect_keyring_is_refused_before_the_login_when_the_session_could_not_be_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let nowhere = format!("unix:path={}", dir.path().join("no-bus").display());
    let login = [
        "login",
        "--protect",
        "keyring",
        "--issuer",
        "https://id.invalid",
        "--client-id",
        "my-cli",
        "--device",
    ];
    let out = run(credlock_on(&nowhere, &path, &login));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("no OS keychain is reachable"), "{stderr}");
    assert!(
        !stderr.contains("id.invalid"),
        "no login was started: {stderr}"
    );
    let mut on_nfs = credlock_on(&nowhere, &path, &login);
    on_nfs.env("CREDLOCK_FS_KIND", "nfs");
    let out = run(on_nfs);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("other machines"), "{stderr}");
    assert!(!path.exists(), "nothing stored");
}

/// Failure table: sealed file, keychain locked or refusing access
#[test]
#[ignore = "needs dbus-daemon and gnome-keyring (the CI's full run installs them)"]
fn a_locked_keyring_refuses_the_sealed_store_says_unlock_and_leaves_it_byte_for_byte() {
    let keyring = Keyring::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (fake, _http, path) = expired_store(dir.path());
    let out = run(keyring.credlock(&path, &["protect", "keyring"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sealed = std::fs::read(&path).expect("read");
    let locked = Command::new("dbus-send")
        .args([
            &format!("--bus={}", keyring.bus),
            "--print-reply",
            "--dest=org.freedesktop.secrets",
            "/org/freedesktop/secrets",
            "org.freedesktop.Secret.Service.Lock",
            "array:objpath:/org/freedesktop/secrets/collection/login",
        ])
        .output()
        .expect("dbus-send");
    assert!(
        locked.status.success(),
        "{}",
        String::from_utf8_lossy(&locked.stderr)
    );

    // No one can answer the unlock prompt here (no display): refused, within the timeout.
    let started = Instant::now();
    let out = run(keyring.credlock(&path, &["token", "--json"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("unlock"), "{stderr}");
    assert!(!stderr.contains("log in again"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["error"]["kind"], "keychain", "{json}");
    assert_eq!(std::fs::read(&path).expect("read"), sealed, "byte for byte");
    assert_eq!(
        fake.counters().refresh_requests,
        0,
        "nothing sent without the key"
    );
}

/// Failure table: sealed file with a damaged header
/// Failure table: sealed file of a newer format version, scheme or key source
/// Failure table: sealed file altered (any byte), or the keychain entry replaced by another key
#[test]
fn a_damaged_newer_or_altered_sealed_file_is_reported_as_such_and_kept_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let cases: [(&[u8], &str); 3] = [
        (b"credlock-sealed/1 aes-256-gcm\nAAAA\n", "corrupt"),
        (
            b"credlock-sealed/2 aes-256-gcm keyring:0123456789abcdef\nAAAA\n",
            "unsupported_protection",
        ),
        (
            b"credlock-sealed/1 chacha20-poly1305 tpm:0123456789abcdef\nAAAA\n",
            "unsupported_protection",
        ),
    ];
    for (bytes, kind) in cases {
        std::fs::write(&path, bytes).expect("write");
        let out = run(credlock(&path, &["token", "--json"]));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(json["error"]["kind"], kind, "{json}");
        assert_eq!(json["error"]["needs_login"], false, "{json}");
        assert_ne!(out.status.code(), Some(0));
        assert_ne!(out.status.code(), Some(3));
        assert_eq!(
            std::fs::read(&path).expect("read"),
            bytes,
            "kept byte for byte"
        );
    }
}

/// Failure table: `protect keyring`, keychain missing or refusing the new key
#[test]
fn protect_keyring_with_no_keychain_reachable_makes_no_key_and_leaves_the_plain_file_byte_for_byte()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let fake = FakeServer::builder().build();
    let session = fake.seed_session("http://127.0.0.1:9/token").expect("seed");
    Store::new(&path).save(&session).expect("save");
    let before = std::fs::read(&path).expect("read");
    let nowhere = format!("unix:path={}", dir.path().join("no-bus").display());
    let out = run(credlock_on(&nowhere, &path, &["protect", "keyring"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("keychain"), "{stderr}");
    assert!(
        !stderr.contains(session.access_token().secret()),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "kept byte for byte"
    );
}

/// Failure table: sealed file, keychain entry not a 32-byte key, or the keychain fails otherwise
#[test]
#[ignore = "needs dbus-daemon and gnome-keyring (the CI's full run installs them)"]
fn a_keychain_entry_that_is_not_a_key_is_refused_and_the_file_kept_byte_for_byte() {
    let keyring = Keyring::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_fake, _http, path) = expired_store(dir.path());
    let out = run(keyring.credlock(&path, &["protect", "keyring"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sealed = std::fs::read(&path).expect("read");
    let key_id = sealed_key_id(&path);
    let cleared = keyring.secret_tool(&["clear", "service", "credlock", "username", &key_id]);
    assert!(cleared.status.success());
    // The entry comes back holding something that is not a 32-byte key.
    let mut store = Command::new("secret-tool")
        .args([
            "store",
            "--label=not a key",
            "service",
            "credlock",
            "username",
            &key_id,
        ])
        .env("DBUS_SESSION_BUS_ADDRESS", &keyring.bus)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("secret-tool");
    store
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"short")
        .expect("write the secret");
    let stored = finish(store, Duration::from_secs(30));
    assert!(
        stored.status.success(),
        "{}",
        String::from_utf8_lossy(&stored.stderr)
    );

    let out = run(keyring.credlock(&path, &["token", "--json"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["error"]["kind"], "keychain", "{json}");
    assert!(stderr.contains("not a 32-byte credlock key"), "{stderr}");
    assert!(!stderr.contains("log in again"), "{stderr}");
    assert_eq!(
        std::fs::read(&path).expect("read"),
        sealed,
        "kept byte for byte"
    );
}

/// `credlock import` of a fresh token response from `fake`, with `extra` flags, on `bus`.
fn import_on(bus: &str, store: &Path, fake: &FakeServer, extra: &[&str]) -> std::process::Output {
    let response = fake.seed().to_json();
    let mut args = vec![
        "import",
        "--token-endpoint",
        "http://127.0.0.1:9/token",
        "--client-id",
        credlock_test::TEST_CLIENT_ID,
    ];
    args.extend_from_slice(extra);
    run_with_stdin(credlock_on(bus, store, &args), &response)
}

/// The protection a profile remembers (`session.settings.json`), if any.
fn remembered_protection(store: &Path) -> Option<String> {
    let bytes = std::fs::read(store.with_file_name("session.settings.json")).ok()?;
    let settings: serde_json::Value = serde_json::from_slice(&bytes).expect("settings JSON");
    settings["protection"].as_str().map(str::to_owned)
}

/// Failure table: a profile that remembers `keyring`, new session, no keychain reachable
///
/// The choice to seal outlives the sealed file: once the session is gone (logout, a refused
/// refresh), the next import is sealed as remembered or refused, never written in the clear.
#[test]
fn a_profile_that_remembers_keyring_refuses_a_new_session_with_no_keychain_rather_than_write_it_plain()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    std::fs::write(
        dir.path().join("session.settings.json"),
        b"{\"protection\": \"keyring\"}\n",
    )
    .expect("settings");
    let nowhere = format!("unix:path={}", dir.path().join("no-bus").display());
    let fake = FakeServer::builder().build();
    let out = import_on(&nowhere, &path, &fake, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("keychain"), "{stderr}");
    assert!(!path.exists(), "written without the keychain");

    let out = run(credlock_on(&nowhere, &path, &["status"]));
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("protection:     keyring (remembered"),
        "{stdout}"
    );
    let out = run(credlock_on(&nowhere, &path, &["status", "--json"]));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(status["remembered_protection"], "keyring", "{status}");

    // An explicit --protect none is the user's choice for this session, and is remembered.
    let out = import_on(&nowhere, &path, &fake, &["--protect", "none"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&path).expect("read").starts_with(b"{"));
    assert_eq!(remembered_protection(&path).as_deref(), Some("none"));
}

#[test]
#[ignore = "needs dbus-daemon and gnome-keyring (the CI's full run installs them)"]
fn protect_keyring_is_remembered_so_a_session_imported_after_logout_is_sealed_again() {
    let keyring = Keyring::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let fake = FakeServer::builder().build();
    let out = import_on(&keyring.bus, &path, &fake, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(keyring.credlock(&path, &["protect", "keyring"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(remembered_protection(&path).as_deref(), Some("keyring"));

    let out = run(keyring.credlock(&path, &["logout"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!path.exists());
    let out = run(keyring.credlock(&path, &["status"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("protection:     keyring (remembered"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = import_on(&keyring.bus, &path, &fake, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_token_in(&path, &[], "imported after logout");
    let out = run(keyring.credlock(&path, &["token"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // `protect none` is remembered too: the next new session is plain, as asked.
    let out = run(keyring.credlock(&path, &["protect", "none"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(remembered_protection(&path).as_deref(), Some("none"));
    let out = run(keyring.credlock(&path, &["logout"]));
    assert!(out.status.success());
    let out = import_on(&keyring.bus, &path, &fake, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&path).expect("read").starts_with(b"{"));
}
