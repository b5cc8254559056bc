//! The helpers of the library's suite (`tests/all/common/mod.rs`, included by path: one copy
//! for both suites), and what only this suite needs: the `credlock` binary on a store, racing
//! `credlock race-child` processes, node-oidc-provider (`idp`) and the tools' token server,
//! HTTPS stubs and real clients (`tools`).

#[path = "../../../../../tests/all/common/mod.rs"]
mod shared;

pub use shared::*;

#[cfg(unix)]
pub mod idp;
#[cfg(unix)]
pub mod tools;

use std::time::Duration;

/// Every `CREDLOCK_*` variable the binaries and the library read (`grep -rhoE
/// '"CREDLOCK_[A-Z_]+"' src crates/credlock-cli/src`), so that a test sees only what it sets.
pub const CREDLOCK_VARS: [&str; 10] = [
    "CREDLOCK_ACCESS_TOKEN",
    "CREDLOCK_DOCKER_REGISTRIES",
    "CREDLOCK_DOCKER_USERNAME",
    "CREDLOCK_FS_KIND",
    "CREDLOCK_KEYCHAIN_TIMEOUT",
    "CREDLOCK_LOCK",
    "CREDLOCK_MARGIN",
    "CREDLOCK_PEAK_RSS",
    "CREDLOCK_PROFILE",
    "CREDLOCK_STORE",
];

/// Removes every variable of [`CREDLOCK_VARS`] from `c`'s environment.
pub fn clear_credlock_env(c: &mut std::process::Command) {
    for var in CREDLOCK_VARS {
        c.env_remove(var);
    }
}

/// The `credlock` binary on `store`, with credlock's own environment variables cleared so the
/// caller's shell cannot change what a test sees.
pub fn credlock(store: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_credlock"));
    c.arg("--store").arg(store).args(args);
    clear_credlock_env(&mut c);
    c
}

/// Starts one `credlock race-child` per `(store, lock mode)`, waits until all are up, then
/// releases them at the same instant; returns each one's JSON answer (`token` or `error`).
/// This is how tests make processes really meet, which spawning them one by one does not.
pub fn released_together(racers: &[(&std::path::Path, &str)]) -> Vec<serde_json::Value> {
    use std::io::{BufRead, Write};
    let (tx, rx) = std::sync::mpsc::channel();
    let mut children = Vec::new();
    for (store, lock) in racers {
        let mut c = credlock(store, &["--lock", lock, "race-child"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn credlock race-child");
        let stdout = c.stdout.take().expect("stdout");
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        children.push(Reaped(c));
    }
    drop(tx);
    let mut ready = 0;
    while ready < children.len() {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the racers start");
        ready += usize::from(line == "ready");
    }
    for c in &mut children {
        let stdin = c.0.stdin.as_mut().expect("stdin");
        let _ = stdin.write_all(b"go\n");
        let _ = stdin.flush();
    }
    (0..children.len())
        .map(|_| {
            let line = rx
                .recv_timeout(Duration::from_secs(90))
                .expect("the racers answer");
            serde_json::from_str(&line).expect("a JSON line")
        })
        .collect()
}

/// Starts `tests/e2e/oidc-server` (node-oidc-provider) on a free loopback port with `extra`
/// arguments, and returns the child (the caller kills it by PID on drop) and its ready line.
/// Fails loudly when node or `npm ci` is missing.
pub fn start_oidc_server(extra: &[&str]) -> (std::process::Child, serde_json::Value) {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = repo_root().join("tests/e2e/oidc-server");
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "prerequisite missing: run `npm ci` in {} (Node.js 20.18+ needed)",
        dir.display()
    );
    let mut child = Command::new("node")
        .arg("server.js")
        .args(["--port", "0"])
        .args(extra)
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("prerequisite missing: cannot run `node` ({e})"));
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the oidc server printed no ready line within 30 s");
        }
    };
    let ready = serde_json::from_str(&line).unwrap_or_else(|e| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("bad ready line {line:?}: {e}")
    });
    (child, ready)
}
