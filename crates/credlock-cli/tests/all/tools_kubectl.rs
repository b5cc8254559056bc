//! kubectl: `credlock token --format exec-credential` as a client-go exec plugin, with the real
//! kubectl against an HTTPS stub of the API server that checks the bearer token.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::tools::{Backend, Stub, require, run_together, text};
use crate::common::{credlock, run_with_stdin};

fn kubeconfig(dir: &Path, port: u16, store: &Path, api_version: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig.yaml");
    let config = format!(
        r#"apiVersion: v1
kind: Config
clusters:
- name: stub
  cluster:
    server: https://127.0.0.1:{port}
    insecure-skip-tls-verify: true
users:
- name: credlock
  user:
    exec:
      apiVersion: client.authentication.k8s.io/{api_version}
      command: {credlock}
      args: ["--store", "{store}", "token", "--format", "exec-credential"]
      interactiveMode: Never
contexts:
- name: stub
  context:
    cluster: stub
    user: credlock
current-context: stub
"#,
        credlock = env!("CARGO_BIN_EXE_credlock"),
        store = store.display(),
    );
    std::fs::write(&path, config).expect("write kubeconfig");
    path
}

fn kubectl(dir: &Path, kubeconfig: &Path) -> Command {
    let mut c = Command::new("kubectl");
    c.args(["get", "--raw", "/api", "--request-timeout=60s"])
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", dir);
    for var in [
        "CREDLOCK_STORE",
        "CREDLOCK_PROFILE",
        "CREDLOCK_ACCESS_TOKEN",
    ] {
        c.env_remove(var);
    }
    c
}

#[test]
fn kubectl_authenticates_with_the_token_from_the_exec_plugin_in_v1_and_v1beta1() {
    require("kubectl", "kubectl (Google Cloud SDK apt repository)");
    let b = Backend::fresh();
    let stub = Stub::start(b.dir.path(), "bearer", true, None);
    for version in ["v1", "v1beta1"] {
        let config = kubeconfig(b.dir.path(), stub.port, &b.store, version);
        let out = run_with_stdin(kubectl(b.dir.path(), &config), b"");
        assert!(out.status.success(), "{version}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("APIVersions"), "{version}");
    }
    // kubectl may send more than one request per call; each carried the token.
    let tokens = stub.tokens();
    assert!(tokens.len() >= 2, "{tokens:?}");
    assert!(tokens.iter().all(|t| *t == b.access_token()), "{tokens:?}");
    assert_eq!(b.refreshes(), 0);
}

#[test]
fn eight_concurrent_kubectl_calls_on_an_expired_session_cause_one_refresh() {
    require("kubectl", "kubectl (Google Cloud SDK apt repository)");
    let b = Backend::expired_slow(Duration::from_millis(500));
    let stub = Stub::start(b.dir.path(), "bearer", true, None);
    stub.refuse(&b.access_token());
    let config = kubeconfig(b.dir.path(), stub.port, &b.store, "v1");
    let outs = run_together(
        (0..8).map(|_| kubectl(b.dir.path(), &config)).collect(),
        Duration::from_secs(120),
    );
    for out in &outs {
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    assert_eq!(b.refreshes(), 1, "one refresh for eight kubectl calls");
    let fresh = b.stored_token();
    assert_ne!(fresh, b.access_token());
    assert!(b.fake.is_access_token_valid(&fresh));
    let tokens = stub.tokens();
    assert!(tokens.len() >= 8, "{tokens:?}");
    assert!(
        tokens.iter().all(|t| *t == fresh),
        "every call sent the new token"
    );
}

fn exec_credential(store: &Path, exec_info: Option<&str>) -> std::process::Output {
    let mut cmd = credlock(store, &["token", "--format", "exec-credential"]);
    match exec_info {
        Some(info) => cmd.env("KUBERNETES_EXEC_INFO", info),
        None => cmd.env_remove("KUBERNETES_EXEC_INFO"),
    };
    run_with_stdin(cmd, b"")
}

#[test]
fn the_exec_credential_answers_in_the_api_version_kubectl_asked_for() {
    let b = Backend::fresh();
    let out = exec_credential(&b.store, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(v["kind"], "ExecCredential");
    assert_eq!(v["status"]["token"], b.access_token().as_str());
    let expiry = credlock::internal::rfc3339(b.session.expires_at().expect("expiry"));
    assert_eq!(v["status"]["expirationTimestamp"], expiry.as_str());

    let beta = r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":false}}"#;
    let out = exec_credential(&b.store, Some(beta));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["apiVersion"], "client.authentication.k8s.io/v1beta1");

    let alpha = r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1alpha1","spec":{}}"#;
    let out = exec_credential(&b.store, Some(alpha));
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unsupported version is a usage error"
    );
    assert!(text(&out.stderr).contains("v1alpha1"));
    assert!(!text(&out.stderr).contains(&b.access_token()));
    assert!(out.stdout.is_empty());
}

/// An empty `CREDLOCK_*` variable is an unset one: kubectl handing the plugin
/// `CREDLOCK_PROFILE=`, `CREDLOCK_LOCK=`, `CREDLOCK_MARGIN=` (an `env:` entry left blank, or
/// a shell's `export VAR=`) still gets its credential, not a usage error.
#[test]
fn kubectl_gets_its_credential_when_credlock_variables_are_set_but_empty() {
    require("kubectl", "kubectl (Google Cloud SDK apt repository)");
    let b = Backend::fresh();
    let stub = Stub::start(b.dir.path(), "bearer", true, None);
    let config = kubeconfig(b.dir.path(), stub.port, &b.store, "v1");
    let mut cmd = kubectl(b.dir.path(), &config);
    for var in [
        "CREDLOCK_PROFILE",
        "CREDLOCK_LOCK",
        "CREDLOCK_MARGIN",
        "CREDLOCK_ACCESS_TOKEN",
        "CREDLOCK_PEAK_RSS",
    ] {
        cmd.env(var, "");
    }
    let out = run_with_stdin(cmd, b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("peak RSS"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(stub.tokens().last(), Some(&b.access_token()));
}
