//! token, status, import, logout.

use std::io::Read;
use std::time::SystemTime;

use credlock::internal::rfc3339;
use credlock::{
    Client, ClientAuth, ClientCredentials, LoggedOut, Protected, Protection, Revocation, Secret,
    SecretMethod, Session, Store, TokenResponse,
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
        Err(e @ credlock::Error::NotSaved { .. }) => {
            let credlock::Error::NotSaved { session, .. } = &e else {
                unreachable!("matched above")
            };
            if g.json {
                // One object: the usable token and the error that it was not saved.
                let got = crate::obtain::Obtained {
                    token: credlock::Secret::new(session.access_token().secret()),
                    expires_at: session.expires_at(),
                    stored: Some(crate::obtain::FromStore {
                        token_type: session.token_type().to_owned(),
                        refreshed: true,
                        saved: false,
                    }),
                };
                outln!("{}", got.json(Some(&e)))?;
                return Err(Failure::Reported(e));
            }
            outln!("{}", session.access_token().secret())?;
            return Err(Failure::Credlock(e));
        }
        Err(e) => return Err(e.into()),
    };
    if g.json {
        outln!("{}", crate::obtain::Obtained::from_store(&token).json(None))?;
    } else {
        outln!("{}", token.secret())?;
    }
    Ok(0)
}

/// `credlock status`: exits 3 when no session is stored (as `token` would), so scripts can
/// test for a login with it.
pub fn status(g: &Global) -> Outcome {
    let store = g.store();
    let session = store.load()?;
    let protection = store.file_protection()?;
    let lock = store.lock_plan();
    let now = SystemTime::now();
    let mode = store.file_mode().map(|m| format!("{m:04o}"));
    let seconds_left =
        session
            .as_ref()
            .and_then(Session::expires_at)
            .map(|e| match e.duration_since(now) {
                Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                Err(past) => -i64::try_from(past.duration().as_secs()).unwrap_or(i64::MAX),
            });
    // The same keys with or without a session (docs/json.md): null where there is none.
    let s = session.as_ref();
    let mut report = json!({
        "present": session.is_some(),
        "store": store.path(),
        "lock_mode": lock.requested.name(),
        "lock_reason": lock.reason,
        "lock_degraded": lock.degraded,
        "filesystem": lock.filesystem.kind.name(),
        "access_token_override": crate::obtain::override_active(),
        "expires_at": s.and_then(Session::expires_at).map(rfc3339),
        "seconds_left": seconds_left,
        "expired": s.map(|_| seconds_left.is_some_and(|left| left <= 0)),
        "fresh": s.map(|s| store.is_fresh(s)),
        "has_refresh_token": s.map(|s| !s.refresh_token().secret().is_empty()),
        "token_endpoint": s.map(|s| s.client().token_endpoint_for_display()),
        "client_id": s.map(|s| s.client().client_id()),
        "client_auth": s.map(|s| match s.client_credentials_grant() {
            Some(grant) => grant.method_name(),
            None => s.client().auth().method_name(),
        }),
        "grant": s.map(|s| match s.client_credentials_grant() {
            Some(_) => "client_credentials",
            None => "refresh_token",
        }),
        "client_secret_env": s
            .and_then(Session::client_credentials_grant)
            .map(ClientCredentials::secret_env),
        "scope": s.and_then(Session::scope),
        "file_mode": s.and(mode.as_deref()),
        "protection": s.and(protection.as_ref()).map(ToString::to_string),
        "account": s.map(account_json),
    });
    // A session on a server: whether the server keeps it across a restart.
    let persistence = g.server.as_ref().map(|server| server.persistence());
    if let Some(all) = report.as_object_mut() {
        all.insert(
            "server_persistence".into(),
            json!(
                persistence
                    .as_ref()
                    .map(|p| p.as_ref().map_or("unknown", |p| p.0))
            ),
        );
    }
    // Read only when there is no session to describe: why the last one went, and whether a
    // login needs no flags.
    let settings = if session.is_none() {
        crate::settings::load(&g.store).ok()
    } else {
        None
    };
    let remembered = settings.as_ref().and_then(|s| s.login.clone());
    let remembered_protection = settings.as_ref().and_then(|s| s.protection.clone());
    let ended = settings.and_then(|s| s.last_session_end);
    if let Some(all) = report.as_object_mut() {
        all.insert("last_session_end".into(), json!(ended));
        all.insert("remembered_protection".into(), json!(remembered_protection));
    }
    if session.is_none() {
        crate::profiles::hint_if_unknown(g);
    }
    let code = if session.is_some() { 0 } else { 3 };
    if g.json {
        outln!("{report}")?;
        return Ok(code);
    }
    outln!("store:          {}", store.path().display())?;
    match &persistence {
        Some(Ok((_, _, sentence))) => outln!("persistence:    {sentence}")?,
        Some(Err(e)) => outln!("persistence:    unknown ({})", e.with_causes())?,
        None => {}
    }
    if crate::obtain::override_active() {
        outln!(
            "override:       {} is set: `token` prints it and uses no session",
            crate::obtain::OVERRIDE_VAR
        )?;
    }
    match &session {
        None => {
            outln!(
                "session:        none (log in with `credlock login`, or store a token response with `credlock import`)"
            )?;
            if let Some(end) = &ended {
                outln!("session ended:  {}: {}", end.at, end.reason)?;
            }
            match remembered_protection.as_deref() {
                Some("keyring") => outln!(
                    "protection:     keyring (remembered: the next login or import is sealed, or refused without a keychain)"
                )?,
                Some(p) => outln!("protection:     {p} (remembered for the next login or import)")?,
                None => {}
            }
            if let Some(login) = &remembered {
                outln!(
                    "login settings: remembered (client {} at {}): `credlock{} token --login` or `login` logs in again",
                    login.client_id,
                    login
                        .issuer
                        .as_deref()
                        .or(login.token_endpoint.as_deref())
                        .unwrap_or("-"),
                    g.profile
                        .as_deref()
                        .map(|p| format!(" --profile {p}"))
                        .unwrap_or_default()
                )?;
            }
        }
        Some(s) => {
            outln!("session:        present")?;
            if let Some(account) = describe_account(s) {
                outln!("account:        {account}")?;
            }
            match (s.expires_at(), seconds_left) {
                (Some(e), Some(left)) => outln!(
                    "expires at:     {} ({}{})",
                    rfc3339(e),
                    describe_time_left(left),
                    if store.is_fresh(s) {
                        ""
                    } else {
                        ", will refresh on next use"
                    }
                )?,
                _ => outln!("expires at:     unknown (the server gave no expires_in)")?,
            }
            match s.client_credentials_grant() {
                Some(grant) => {
                    outln!(
                        "grant:          client credentials (no refresh token: each expiry, one token request for every process)"
                    )?;
                    outln!(
                        "client secret:  read from ${} at each request (never stored)",
                        grant.secret_env()
                    )?;
                }
                None => outln!("refresh token:  present")?,
            }
            outln!(
                "token endpoint: {}",
                s.client().token_endpoint_for_display()
            )?;
            outln!("client id:      {}", s.client().client_id())?;
            match s.client_credentials_grant() {
                Some(grant) => outln!("client auth:    {}", grant.method_name())?,
                None => outln!(
                    "client auth:    {}",
                    describe_client_auth(s.client().auth())
                )?,
            }
            outln!("file mode:      {}", mode.as_deref().unwrap_or("n/a"))?;
            if let Some(p) = &protection {
                outln!("protection:     {p}")?;
            }
        }
    }
    outln!("lock:           {}", lock.summary())?;
    outln!(
        "filesystem:     {} ({})",
        lock.filesystem.kind.name(),
        lock.filesystem.evidence
    )?;
    Ok(code)
}

/// The account the session's ID token names, unverified: `null` when it names none.
pub fn account_json(s: &Session) -> serde_json::Value {
    match s.unverified_id_token_claims() {
        None => serde_json::Value::Null,
        Some(c) => json!({
            "sub": c.sub,
            "email": c.email,
            "preferred_username": c.preferred_username,
            "name": c.name,
            "iss": c.iss,
            "verified": false,
        }),
    }
}

/// "jane@example.com (sub 2482, iss https://id.example; from the ID token, unverified)".
pub fn describe_account(s: &Session) -> Option<String> {
    let c = s.unverified_id_token_claims()?;
    let mut details = Vec::new();
    if let Some(sub) = c.sub.as_deref().filter(|sub| Some(*sub) != c.account()) {
        details.push(format!("sub {sub}"));
    }
    if let Some(iss) = &c.iss {
        details.push(format!("iss {iss}"));
    }
    let details = if details.is_empty() {
        String::new()
    } else {
        format!("{}; ", details.join(", "))
    };
    Some(format!(
        "{} ({details}from the ID token, unverified)",
        c.account().unwrap_or("unnamed")
    ))
}

/// The client authentication method in words.
fn describe_client_auth(auth: &ClientAuth) -> &'static str {
    match auth {
        ClientAuth::Basic { .. } => "client_secret_basic (a secret, in HTTP Basic)",
        ClientAuth::Post { .. } => "client_secret_post (a secret, in the request body)",
        _ => "none (public client)",
    }
}

/// "42 s left", or "expired 12 s ago" (never "-12 s left").
fn describe_time_left(seconds_left: i64) -> String {
    if seconds_left > 0 {
        format!("{seconds_left} s left")
    } else {
        format!("expired {} s ago", seconds_left.unsigned_abs())
    }
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
    /// Client authentication: basic (client_secret_basic), post (client_secret_post) or none
    /// [default: basic with --client-secret-env, else none]. `--auth` is an alias.
    #[arg(long, alias = "auth", value_parser = ["basic", "post", "none"])]
    client_auth: Option<String>,
    /// The environment variable that holds the client secret (never pass it on the command line).
    #[arg(long)]
    client_secret_env: Option<String>,
    /// The RFC 7009 revocation endpoint, for `logout --revoke`.
    #[arg(long)]
    revocation_endpoint: Option<String>,
    /// How the session is kept at rest: keyring (sealed with a key in the OS keychain) or none
    /// (plain JSON, mode 0600); remembered for the profile's next new sessions. Default: as
    /// the stored file is; for a new store, as remembered (`credlock protect`, an earlier
    /// --protect), else none.
    #[arg(long, value_parser = PROTECTIONS)]
    protect: Option<String>,
    /// How the session gets its next access token: refresh-token (a token response on stdin
    /// starts the session) or client-credentials (RFC 6749 §4.4, machine to machine: nothing
    /// on stdin; the first `credlock token` requests a token with the secret read from
    /// --client-secret-env, which the session names but never stores, and every expiry costs
    /// one request for all the processes that share the store).
    #[arg(long, value_parser = ["refresh-token", "client-credentials"], default_value = "refresh-token")]
    grant: String,
    /// With --grant client-credentials: the scope to ask for (space-separated).
    #[arg(long)]
    scope: Option<String>,
    /// With --grant client-credentials: the audience to ask for (Auth0 and others).
    #[arg(long)]
    audience: Option<String>,
    /// With --grant client-credentials: the resource to ask for (RFC 8707).
    #[arg(long)]
    resource: Option<String>,
}

/// `credlock import --grant client-credentials`: a session that holds the grant and no token
/// yet, so nothing is requested (or read from stdin) until the first `credlock token`.
fn import_client_credentials(g: &Global, args: &ImportArgs) -> Outcome {
    let var = args.client_secret_env.as_deref().ok_or_else(|| {
        Failure::Usage("--grant client-credentials needs --client-secret-env VAR".into())
    })?;
    let method = match args.client_auth.as_deref() {
        None | Some("basic") => SecretMethod::Basic,
        Some("post") => SecretMethod::Post,
        Some(other) => {
            return Err(Failure::Usage(format!(
                "--grant client-credentials needs a client secret: --client-auth {other} is not possible"
            )));
        }
    };
    if args.revocation_endpoint.is_some() {
        return Err(Failure::Usage(
            "--grant client-credentials has no refresh token to revoke: drop --revocation-endpoint"
                .into(),
        ));
    }
    let mut grant = ClientCredentials::new(var).method(method);
    if let Some(scope) = &args.scope {
        grant = grant.scope(scope);
    }
    if let Some(audience) = &args.audience {
        grant = grant.audience(audience);
    }
    if let Some(resource) = &args.resource {
        grant = grant.resource(resource);
    }
    let session = Session::client_credentials(&args.token_endpoint, &args.client_id, grant)
        .map_err(|e| match e {
            credlock::Error::InvalidEndpoint { .. } | credlock::Error::InsecureEndpoint { .. } => {
                Failure::Usage(e.to_string())
            }
            other => Failure::Credlock(other),
        })?;
    let store = with_protection(g, g.store(), args.protect.as_deref())?;
    store.save(&session)?;
    remember_protection(g, args.protect.as_deref());
    if g.json {
        outln!(
            "{}",
            json!({"stored": true, "store": store.path(), "client_id": args.client_id, "grant": "client_credentials"})
        )?;
    } else {
        outln!(
            "Stored the client-credentials session for client {} in {} (its first token is requested on first use)",
            args.client_id,
            store.path().display()
        )?;
    }
    Ok(0)
}

/// `credlock import`
pub fn import(g: &Global, args: &ImportArgs) -> Outcome {
    if args.grant == "client-credentials" {
        return import_client_credentials(g, args);
    }
    if args.scope.is_some() || args.audience.is_some() || args.resource.is_some() {
        return Err(Failure::Usage(
            "--scope, --audience and --resource ask a client-credentials request for a token: they need --grant client-credentials".into(),
        ));
    }
    // As at login: a client secret without a method is basic, and none without a secret.
    let method = args
        .client_auth
        .as_deref()
        .unwrap_or(if args.client_secret_env.is_some() {
            "basic"
        } else {
            "none"
        });
    let secret = || -> Result<Secret, Failure> {
        let var = args.client_secret_env.as_deref().ok_or_else(|| {
            Failure::Usage(format!(
                "--client-auth {method} needs --client-secret-env VAR"
            ))
        })?;
        std::env::var(var)
            .map(Secret::new)
            .map_err(|_| Failure::Usage(format!("the environment variable {var} is not set")))
    };
    let auth = match method {
        "basic" => ClientAuth::Basic { secret: secret()? },
        "post" => ClientAuth::Post { secret: secret()? },
        _ if args.client_secret_env.is_some() => {
            return Err(Failure::Usage(
                "--client-auth none is a public client: it takes no --client-secret-env".into(),
            ));
        }
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
    let store = with_protection(g, g.store(), args.protect.as_deref())?;
    // This process ends here, so the session a failed save hands back is of no use: report
    // why the save failed (a lock timeout is still "try again later").
    store
        .import_token_response(client, response)
        .map_err(|e| match e {
            credlock::Error::NotSaved { source, .. } => *source,
            other => other,
        })?;
    remember_protection(g, args.protect.as_deref());
    if g.json {
        outln!(
            "{}",
            json!({"stored": true, "store": store.path(), "client_id": args.client_id, "grant": "refresh_token"})
        )?;
    } else {
        outln!(
            "Stored the session for client {} in {}",
            args.client_id,
            store.path().display()
        )?;
    }
    Ok(0)
}

/// `credlock logout [--revoke]`: `--revoke` revokes the refresh token first and keeps the
/// session if that fails (exit 4 when the server may answer later, 1 otherwise); without it,
/// only the local copy is deleted.
pub fn logout(g: &Global, revoke: bool) -> Outcome {
    let store = g.store();
    let revocation = if revoke {
        Revocation::Required
    } else {
        Revocation::LocalOnly
    };
    let outcome = store.logout(revocation)?;
    let (deleted, revoked) = match outcome {
        LoggedOut::NothingStored => (false, false),
        LoggedOut::Deleted { revoked } => (true, revoked),
    };
    if deleted {
        crate::settings::record_end(
            &g.store,
            if revoked {
                "logged out with `credlock logout --revoke` (the refresh token was revoked)"
            } else {
                "logged out with `credlock logout` (the refresh token was not revoked)"
            },
        );
    } else {
        crate::profiles::hint_if_unknown(g);
    }
    if g.json {
        outln!(
            "{}",
            json!({"deleted": deleted, "revoked": revoked, "store": store.path()})
        )?;
    } else if !deleted {
        outln!("No session was stored ({})", store.path().display())?;
    } else if revoked {
        outln!(
            "Logged out: revoked the refresh token and deleted {}",
            store.path().display()
        )?;
    } else {
        outln!(
            "Logged out locally: deleted {} (the refresh token was not revoked at the server; use --revoke for that)",
            store.path().display()
        )?;
    }
    Ok(0)
}

/// The names `--protect` and `credlock protect` accept.
pub const PROTECTIONS: [&str; 2] = ["keyring", "none"];

/// `store` set to write new sessions with `protection` (one of [`PROTECTIONS`]) if given,
/// else with `keyring` if the profile remembers it (so a session written after the sealed
/// file is gone, by a logout or a refused refresh, is sealed again or refused, never quietly
/// plain), else as the stored file is (plain for a new store). Settings that cannot be read
/// are warned about: they may hold `keyring`.
pub fn with_protection(
    g: &Global,
    store: Store,
    protection: Option<&str>,
) -> Result<Store, Failure> {
    let chosen = match protection {
        Some(p) => Some(p.to_owned()),
        // A login given every flag goes on past unreadable settings (`login::resolve`), so
        // here too, but not quietly: they may have said `keyring`.
        None => match crate::settings::load(&g.store) {
            Ok(settings) => settings
                .protection
                // `none` remembered is the library's own default: the stored file as it is.
                .filter(|p| p.as_str() != "none"),
            Err(e) => {
                eprintln!(
                    "credlock: warning: {e}; the protection they may remember is unknown, so a new session is written as the stored file is (plain JSON if there is none): give --protect keyring to seal it"
                );
                None
            }
        },
    };
    match chosen.map(|p| p.parse::<Protection>()) {
        Some(Ok(p)) => Ok(store.with_protection(p)),
        Some(Err(e)) => Err(Failure::Other(format!(
            "the login settings in {} name an unknown protection: {e}; fix the file, or give --protect keyring|none",
            crate::settings::path_for(&g.store).display()
        ))),
        None => Ok(store),
    }
}

/// After a session was saved with an explicit `--protect`: it becomes the profile's choice
/// for new sessions. A failure is a warning: this session carries its protection in its file.
pub fn remember_protection(g: &Global, protection: Option<&str>) {
    if let Some(p) = protection
        && let Err(e) = crate::settings::record_protection(&g.store, p)
    {
        eprintln!(
            "credlock: warning: could not remember --protect {p} for the next new session: {e}"
        );
    }
}

/// `credlock protect keyring|none`: converts the stored session, under the lock, atomically.
pub fn protect(g: &Global, to: &str) -> Outcome {
    let to = to.parse::<Protection>().map_err(Failure::Usage)?;
    let store = g.store();
    let outcome = store.protect(to)?;
    let (changed, from, now) = match &outcome {
        Protected::Unchanged(p) => (false, p.clone(), p.clone()),
        Protected::Changed { from, to } => (true, from.clone(), to.clone()),
        other => return Err(Failure::Other(format!("unexpected outcome {other:?}"))),
    };
    // The sealed file's header says `keyring` only while it exists: remembered, the choice
    // also holds for the session written after this one is gone.
    crate::settings::record_protection(&g.store, &to.to_string()).map_err(|e| {
        Failure::Other(format!(
            "{}: protection is {now}, but credlock could not remember it for the next new session: {e}",
            store.path().display()
        ))
    })?;
    if g.json {
        outln!(
            "{}",
            json!({
                "store": store.path(),
                "changed": changed,
                "from": from.to_string(),
                "protection": now.to_string(),
            })
        )?;
    } else if changed {
        outln!("{}: protection {from} -> {now}", store.path().display())?;
    } else {
        outln!("{}: protection already {now}", store.path().display())?;
    }
    Ok(0)
}
