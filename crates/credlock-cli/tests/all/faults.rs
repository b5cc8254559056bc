//! Real faults: SIGKILL at random moments, a full disk, a read-only mount, a store owned by
//! someone else. The store always parses, holds a whole old or new session, and a failed
//! write leaves it byte for byte with no temp file.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use credlock::Store;
use credlock_test::{FakeServer, HttpServer, ReusePolicy};

use crate::common::{credlock, rerun_inside, run_with_stdin};

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

/// xorshift, seeded from the clock and printed, so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

struct KillStats {
    old: usize,
    new: usize,
    rotated_not_saved: usize,
    recovered_after_window: usize,
    leftover_temps: usize,
}

/// `rounds` times: seed an expired session, start `credlock token`, SIGKILL it at a random
/// moment, check the store. After a kill in the client-side window (the server rotated, the
/// child died before its rename), run `credlock token` once more and count whether it recovers.
fn kill_loop(policy: ReusePolicy, rounds: usize) -> KillStats {
    let fake = FakeServer::builder()
        .policy(policy)
        .latency(Duration::from_millis(3))
        .build();
    let http = HttpServer::start(fake.clone()).expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let seed = std::env::var("CREDLOCK_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("now")
                .as_nanos() as u64
                | 1
        });
    eprintln!(
        "kill -9 loop ({}) seed: {seed} (CREDLOCK_KILL_SEED={seed} replays it)",
        policy.name()
    );
    let mut rng = Rng(seed);
    let mut st = KillStats {
        old: 0,
        new: 0,
        rotated_not_saved: 0,
        recovered_after_window: 0,
        leftover_temps: 0,
    };
    for _ in 0..rounds {
        let before = fake
            .seed_session(&http.token_endpoint())
            .expect("seed")
            .with_expires_at(std::time::SystemTime::now());
        // The next write removes what a killed writer left behind.
        Store::new(&path).save(&before).expect("save");
        assert!(
            temp_files(dir.path()).is_empty(),
            "the write swept leftover temp files"
        );
        let mut child = credlock(&path, &["token"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_micros(rng.below(12_000)));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        st.leftover_temps += usize::from(!temp_files(dir.path()).is_empty());
        let after = Store::new(&path)
            .load()
            .expect("the store parses after every kill")
            .expect("a session");
        if after == before {
            st.old += 1;
            if !fake.is_live(before.refresh_token().secret()) {
                st.rotated_not_saved += 1;
                let retry = credlock(&path, &["token"]).output().expect("token");
                st.recovered_after_window += usize::from(retry.status.success());
            }
        } else {
            assert!(
                fake.is_live(after.refresh_token().secret()),
                "a new session is the server's, whole"
            );
            assert!(fake.is_access_token_valid(after.access_token().secret()));
            assert_eq!(after.client(), before.client());
            st.new += 1;
        }
    }
    eprintln!(
        "kill -9 loop ({}): {rounds} rounds; old session kept {} (the server had already rotated in {}, and the next `credlock token` recovered in {}), new session {}, rounds that left a temp file {}",
        policy.name(),
        st.old,
        st.rotated_not_saved,
        st.recovered_after_window,
        st.new,
        st.leftover_temps
    );
    assert_eq!(st.old + st.new, rounds);
    st
}

/// Failure table: process killed at any point
#[test]
fn two_hundred_sigkills_never_leave_a_torn_or_mixed_store() {
    let st = kill_loop(ReusePolicy::RevokeGrant, 200);
    assert!(
        st.new > 0 && st.old > 0,
        "the kills landed both before and after the save"
    );
    // A grant-revoking server without a grace period cannot forgive the window.
    assert_eq!(st.recovered_after_window, 0);
}

#[test]
fn a_server_reuse_grace_period_closes_the_client_side_kill_window() {
    let st = kill_loop(ReusePolicy::Grace(Duration::from_secs(5)), 100);
    assert!(st.rotated_not_saved > 0, "some kills landed in the window");
    assert_eq!(
        st.recovered_after_window, st.rotated_not_saved,
        "every one recovered"
    );
}

/// Runs the test `name` again inside a private mount namespace, as root (for `mount`).
fn in_mount_namespace(name: &str) -> bool {
    assert!(
        rustix::process::geteuid().is_root(),
        "prerequisite missing: this test mounts filesystems and needs root"
    );
    rerun_inside(
        &["unshare", "--mount", "--propagation", "private"],
        name,
        "CREDLOCK_FAULTS_INNER",
    )
}

fn mount_tmpfs(dir: &Path, size: &str) {
    let ok = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .status()
        .expect("mount");
    assert!(ok.success(), "mount tmpfs on {}", dir.display());
}

fn import(path: &Path, endpoint: &str, response: &[u8]) -> std::process::Output {
    let args = [
        "import",
        "--token-endpoint",
        endpoint,
        "--client-id",
        credlock_test::TEST_CLIENT_ID,
    ];
    run_with_stdin(credlock(path, &args), response)
}

/// Failure table: save/delete: directory not writable, disk full
#[test]
#[ignore = "needs root (mounts a tmpfs); .ci/run runs it"]
fn a_full_disk_fails_cleanly_and_a_refresh_still_hands_out_its_token() {
    if !in_mount_namespace(
        "faults::a_full_disk_fails_cleanly_and_a_refresh_still_hands_out_its_token",
    ) {
        return;
    }
    let fake = FakeServer::builder().build();
    let http = HttpServer::start(fake.clone()).expect("server");
    let mnt = tempfile::tempdir().expect("tempdir");
    mount_tmpfs(mnt.path(), "256k");
    let path = mnt.path().join("session.json");
    let session = fake
        .seed_session(&http.token_endpoint())
        .expect("seed")
        .with_expires_at(std::time::SystemTime::now());
    Store::new(&path).save(&session).expect("save");
    let before = std::fs::read(&path).expect("read");
    // A second store on the same disk, for the `--json` form of the same failure.
    let json_path = mnt.path().join("other.json");
    let other = fake
        .seed_session(&http.token_endpoint())
        .expect("seed")
        .with_expires_at(std::time::SystemTime::now());
    Store::new(&json_path).save(&other).expect("save");
    // Fill the filesystem.
    let mut filler = std::fs::File::create(mnt.path().join("filler")).expect("filler");
    let block = vec![0u8; 4096];
    while filler.write_all(&block).is_ok() {}
    let _ = filler.sync_all();

    let login = fake.seed().to_json();
    let out = import(&path, &http.token_endpoint(), &login);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("session.json"),
        "the error names the store"
    );
    assert_eq!(std::fs::read(&path).expect("read"), before, "byte for byte");
    assert!(temp_files(mnt.path()).is_empty(), "no temp file left");

    let out = credlock(&path, &["token"]).output().expect("token");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        fake.is_access_token_valid(&printed),
        "the refreshed token is still handed out"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("could not save"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&path).expect("read"), before, "byte for byte");
    assert!(temp_files(mnt.path()).is_empty(), "no temp file left");

    // With --json: one object on stdout, the usable token and the error together.
    let out = credlock(&json_path, &["token", "--json"])
        .output()
        .expect("token");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "one object: {stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(v["saved"], false, "{v}");
    assert_eq!(v["error"]["kind"], "not_saved", "{v}");
    assert!(fake.is_access_token_valid(v["access_token"].as_str().expect("token")));
    drop(filler);
    let _ = Command::new("umount").arg(mnt.path()).status();
}

#[test]
#[ignore = "needs root (mounts a tmpfs); .ci/run runs it"]
fn a_read_only_mount_fails_cleanly() {
    if !in_mount_namespace("faults::a_read_only_mount_fails_cleanly") {
        return;
    }
    let fake = FakeServer::builder().build();
    let mnt = tempfile::tempdir().expect("tempdir");
    mount_tmpfs(mnt.path(), "1m");
    let path = mnt.path().join("session.json");
    Store::new(&path)
        .save(&fake.seed_session("http://127.0.0.1:9/token").expect("seed"))
        .expect("save");
    let before = std::fs::read(&path).expect("read");
    let ok = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(mnt.path())
        .status()
        .expect("remount");
    assert!(ok.success());
    let out = import(&path, "http://127.0.0.1:9/token", &fake.seed().to_json());
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Read-only") && stderr.contains(&mnt.path().display().to_string()),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&path).expect("read"), before);
    assert!(temp_files(mnt.path()).is_empty());
    let _ = Command::new("umount").arg(mnt.path()).status();
}

#[cfg(unix)]
#[test]
#[ignore = "needs root (runs credlock as another user through setpriv); .ci/run runs it"]
fn a_store_owned_by_another_user_is_a_clear_error_and_untouched() {
    assert!(
        rustix::process::geteuid().is_root(),
        "prerequisite missing: needs root"
    );
    use std::os::unix::fs::PermissionsExt;
    let fake = FakeServer::builder().build();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = dir.path().join("session.json");
    Store::new(&path)
        .save(
            &fake
                .seed_session("http://127.0.0.1:9/token")
                .expect("seed")
                .with_expires_at(std::time::SystemTime::now()),
        )
        .expect("save");
    let before = std::fs::read(&path).expect("read");
    for args in [&["token"][..], &["status"], &["logout"]] {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_credlock"))
            .arg("--store")
            .arg(&path)
            .args(args)
            .env_remove("CREDLOCK_STORE")
            .output()
            .expect("setpriv");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("ermission denied") && stderr.contains("session.json"),
            "{args:?}: {stderr}"
        );
        assert_eq!(std::fs::read(&path).expect("read"), before, "{args:?}");
        assert!(temp_files(dir.path()).is_empty());
    }
}
