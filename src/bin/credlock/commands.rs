//! token, status, import, logout.

use std::io::Read;
use std::time::SystemTime;

use credlock::{
    Client, ClientAuth, FormRequest, Secret, Session, TokenResponse, Transport, UreqTransport,
    rfc3339,
};
use serde_json::json;

use crate::{Failure, Global, Outcome};

/// `credlock token`
///
/// A refresh that worked but could not be saved still prints the new token (it is valid
/// now), then reports the error and exits non-zero so automation notices.
pub fn token(g: &Global, rejected_on_stdin: bool) -> Outcome {
    let store = g.store();
    let result = if rejected_on_stdin {
        let mut rejected = String::new();
        std::io::stdin()
            .take(64 * 1024)
            .read_to_string(&mut rejected)
            .map_err(|e| {
                Failure::Other(format!("could not read the rejected token on stdin: {e}"))
            })?;
        let rejected = rejected.trim();
        if rejected.is_empty() {
            return Err(Failure::Usage(
                "--rejected-on-stdin needs the rejected token on stdin".into(),
            ));
        }
        store.access_token_after_rejection(rejected)
    } else {
        store.access_token()
    };
    let token = match result {
        Ok(token) => token,
        Err(credlock::Error::NotSaved { session, source }) => {
            println!("{}", session.access_token().secret());
            return Err(Failure::Credlock(credlock::Error::NotSaved {
                session,
                source,
            }));
        }
        Err(e) => return Err(e.into()),
    };
    if g.json {
        println!(
            "{}",
            json!({
                "access_token": token.secret(),
                "token_type": token.token_type(),
                "expires_at": token.expires_at().map(rfc3339),
                "refreshed": token.refreshed(),
            })
        );
    } else {
        println!("{}", token.secret());
    }
    Ok(0)
}

/// `credlock status`
pub fn status(g: &Global) -> Outcome {
    let store = g.store();
    let session = store.load()?;
    let lock = credlock::LockPlan::for_store(&store);
    let now = SystemTime::now();
    let mode = store.file_mode().map(|m| format!("{m:04o}"));
    let report = match &session {
        None => json!({
            "present": false,
            "store": store.path(),
            "lock_mode": lock.summary(),
            "filesystem": lock.filesystem.kind.name(),
        }),
        Some(s) => json!({
            "present": true,
            "store": store.path(),
            "expires_at": s.expires_at().map(rfc3339),
            "seconds_left": s.expires_at().map(|e| match e.duration_since(now) {
                Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                Err(past) => -i64::try_from(past.duration().as_secs()).unwrap_or(i64::MAX),
            }),
            "fresh": store.is_fresh(s),
            "has_refresh_token": !s.refresh_token().secret().is_empty(),
            "token_endpoint": s.client().token_endpoint(),
            "client_id": s.client().client_id(),
            "client_auth": s.client().auth().method_name(),
            "scope": s.scope(),
            "file_mode": mode,
            "lock_mode": lock.summary(),
            "filesystem": lock.filesystem.kind.name(),
        }),
    };
    if g.json {
        println!("{report}");
        return Ok(0);
    }
    println!("store:          {}", store.path().display());
    match &session {
        None => println!("session:        none (log in, then `credlock import`)"),
        Some(s) => {
            println!("session:        present");
            match s.expires_at() {
                Some(e) => println!(
                    "expires at:     {} ({} s left{})",
                    rfc3339(e),
                    report["seconds_left"],
                    if store.is_fresh(s) {
                        ""
                    } else {
                        ", will refresh on next use"
                    }
                ),
                None => println!("expires at:     unknown (the server gave no expires_in)"),
            }
            println!("refresh token:  present");
            println!("token endpoint: {}", s.client().token_endpoint());
            println!(
                "client id:      {} ({})",
                s.client().client_id(),
                s.client().auth().method_name()
            );
            println!("file mode:      {}", mode.as_deref().unwrap_or("n/a"));
        }
    }
    println!("lock:           {}", lock.summary());
    println!(
        "filesystem:     {} ({})",
        lock.filesystem.kind.name(),
        lock.filesystem.evidence
    );
    Ok(0)
}

/// Arguments of `credlock import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The token endpoint the session refreshes at.
    #[arg(long)]
    token_endpoint: String,
    /// The OAuth client id.
    #[arg(long)]
    client_id: String,
    /// Client authentication: basic (client_secret_basic), post (client_secret_post) or none.
    #[arg(long, default_value = "none", value_parser = ["basic", "post", "none"])]
    auth: String,
    /// The environment variable that holds the client secret (never pass it on the command line).
    #[arg(long)]
    client_secret_env: Option<String>,
    /// The RFC 7009 revocation endpoint, for `logout --revoke`.
    #[arg(long)]
    revocation_endpoint: Option<String>,
}

/// `credlock import`
pub fn import(g: &Global, args: &ImportArgs) -> Outcome {
    let secret = || -> Result<Secret, Failure> {
        let var = args.client_secret_env.as_deref().ok_or_else(|| {
            Failure::Usage(format!(
                "--auth {} needs --client-secret-env VAR",
                args.auth
            ))
        })?;
        std::env::var(var)
            .map(Secret::new)
            .map_err(|_| Failure::Usage(format!("the environment variable {var} is not set")))
    };
    let auth = match args.auth.as_str() {
        "basic" => ClientAuth::Basic { secret: secret()? },
        "post" => ClientAuth::Post { secret: secret()? },
        _ => ClientAuth::None,
    };
    // A bad endpoint is a usage error here, where it is typed, not at every refresh later.
    let endpoint_usage = |e: credlock::Error| match e {
        credlock::Error::InvalidEndpoint { .. } | credlock::Error::InsecureEndpoint { .. } => {
            Failure::Usage(e.to_string())
        }
        other => Failure::Credlock(other),
    };
    let mut client =
        Client::new(&args.token_endpoint, &args.client_id, auth).map_err(endpoint_usage)?;
    if let Some(url) = &args.revocation_endpoint {
        client = client
            .with_revocation_endpoint(url)
            .map_err(endpoint_usage)?;
    }
    let mut body = Vec::new();
    std::io::stdin()
        .take(1024 * 1024)
        .read_to_end(&mut body)
        .map_err(|e| Failure::Other(format!("could not read the token response on stdin: {e}")))?;
    let response = TokenResponse::from_json(&body)
        .map_err(|e| Failure::Other(format!("the token response on stdin is unusable: {e}")))?;
    let session = Session::from_token_response(client, response, SystemTime::now())?;
    let store = g.store();
    store.save(&session)?;
    if g.json {
        println!(
            "{}",
            json!({"stored": true, "store": store.path(), "client_id": args.client_id})
        );
    } else {
        println!(
            "Stored the session for client {} in {}",
            args.client_id,
            store.path().display()
        );
    }
    Ok(0)
}

/// `credlock logout [--revoke]`
pub fn logout(g: &Global, revoke: bool) -> Outcome {
    let store = g.store();
    let revoked = if revoke {
        match store.load()? {
            None => "no session".to_owned(),
            Some(session) => match FormRequest::revoke(&session) {
                Err(e) => format!("not sent ({e})"),
                Ok(None) => "no revocation endpoint in the session".to_owned(),
                Ok(Some(request)) => match UreqTransport::new().post_form(&request) {
                    Ok(r) if r.status == 200 => "revoked".to_owned(),
                    Ok(r) => format!("the server answered HTTP {}", r.status),
                    Err(e) => format!("the server could not be reached ({e})"),
                },
            },
        }
    } else {
        "not requested".to_owned()
    };
    let deleted = store.delete()?;
    if g.json {
        println!(
            "{}",
            json!({"deleted": deleted, "revocation": revoked, "store": store.path()})
        );
    } else {
        println!(
            "{} ({}); revocation: {revoked}",
            if deleted {
                "Logged out"
            } else {
                "No session was stored"
            },
            store.path().display()
        );
    }
    Ok(0)
}
