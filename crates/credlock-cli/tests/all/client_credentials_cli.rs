//! `credlock import --grant client-credentials` and the commands on such a session: `token`
//! from many processes makes one token request, `status` names the grant and the variable,
//! a missing variable or a rejected client is exit 5 with the session kept. Against the test
//! kit's server over real HTTP (the real-server version is `oidc.rs`).

use std::process::{Child, Stdio};
use std::time::Duration;

use credlock::{ClientAuth, Secret};
use credlock_test::{Failure, FakeServer, HttpServer, ReusePolicy, TEST_CLIENT_ID};

use crate::common::{credlock, finish};

const VAR: &str = "CREDLOCK_CLI_TEST_MACHINE_SECRET";
const SECRET: &str = "machine-secret-Kp3-not-in-output";

fn import(store: &std::path::Path, endpoint: &str) {
    let out = credlock(
        store,
        &[
            "import",
            "--grant",
            "client-credentials",
            "--token-endpoint",
            endpoint,
            "--client-id",
            TEST_CLIENT_ID,
            "--client-secret-env",
            VAR,
            "--scope",
            "jobs:run",
        ],
    )
    .env_remove(VAR)
    .output()
    .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sixteen_credlock_token_processes_on_a_client_credentials_session_make_one_token_request() {
    let fake = FakeServer::builder()
        .policy(ReusePolicy::RevokeGrant)
        .client_auth(ClientAuth::Basic {
            secret: Secret::new(SECRET),
        })
        .latency(Duration::from_millis(200))
        .build();
    let http = HttpServer::start(fake.clone()).expect("start the token server");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("machine.json");
    import(&store, &http.token_endpoint());
    assert_eq!(
        fake.counters().client_credentials_requests,
        0,
        "import sends nothing"
    );

    let children: Vec<Child> = (0..16)
        .map(|_| {
            credlock(&store, &["token"])
                .env(VAR, SECRET)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let tokens: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = finish(c, Duration::from_secs(60));
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
    assert_eq!(c.client_credentials_requests, 1, "{c:?}");
    assert_eq!(c.refresh_requests, 0, "{c:?}");

    let status = credlock(&store, &["status"]).output().expect("status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("grant:          client credentials"),
        "{text}"
    );
    assert!(text.contains(VAR), "{text}");
    let json = credlock(&store, &["status", "--json"])
        .output()
        .expect("status");
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(v["grant"], "client_credentials", "{v}");
    assert_eq!(v["client_secret_env"], VAR, "{v}");
    assert_eq!(v["has_refresh_token"], false, "{v}");
    let file = std::fs::read_to_string(&store).expect("read");
    assert!(!file.contains(SECRET) && !text.contains(SECRET));

    // `exec` and the formats hand out the same token, without another request. (`exec` runs
    // `sh`, which a Windows machine lacks: `tools_exec` is the suite for `exec` itself.)
    #[cfg(unix)]
    {
        let out = credlock(
            &store,
            &["exec", "--", "sh", "-c", "printf %s \"$BEARER_TOKEN\""],
        )
        .env(VAR, SECRET)
        .output()
        .expect("exec");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), tokens[0]);
    }
    let out = credlock(&store, &["token", "--format", "header"])
        .env(VAR, SECRET)
        .output()
        .expect("token");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("Authorization: Bearer {}", tokens[0])
    );
    assert_eq!(fake.counters().client_credentials_requests, 1);
}

#[test]
fn credlock_token_without_the_secret_variable_or_with_a_rejected_client_exits_5_and_keeps_the_session()
 {
    let fake = FakeServer::builder()
        .client_auth(ClientAuth::Basic {
            secret: Secret::new(SECRET),
        })
        .build();
    let http = HttpServer::start(fake.clone()).expect("start the token server");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("machine.json");
    import(&store, &http.token_endpoint());
    let before = std::fs::read(&store).expect("read");

    let out = credlock(&store, &["token"])
        .env_remove(VAR)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains(VAR), "{stderr}");
    assert_eq!(fake.counters().client_credentials_requests, 0);

    fake.push_failure(Failure::Status {
        status: 401,
        body: r#"{"error":"invalid_client"}"#.into(),
        retry_after: None,
    });
    let out = credlock(&store, &["token"])
        .env(VAR, SECRET)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(!stderr.contains(SECRET), "{stderr}");
    assert_eq!(std::fs::read(&store).expect("read"), before);

    // With the variable set and the client accepted, the same session works.
    let out = credlock(&store, &["token"])
        .env(VAR, SECRET)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
