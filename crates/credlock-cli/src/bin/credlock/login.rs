//! `credlock login`, and the login behind `credlock token --login`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use credlock::internal::rfc3339;
use credlock::login::{Endpoints, Flow, Login, open_browser};
use credlock::{ClientAuth, Error, LoggedIn, Secret, Session, UreqTransport};
use serde_json::json;

use crate::settings::{self, Remembered};
use crate::{Failure, Global, Outcome};

/// How to log in: shared by `login` and `token --login`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoginArgs {
    /// The issuer (its `/.well-known/openid-configuration`, or RFC 8414 metadata, is read).
    #[arg(long)]
    issuer: Option<String>,
    /// The OAuth client id.
    #[arg(long)]
    client_id: Option<String>,
    /// The environment variable that holds the client secret (never pass it on the command
    /// line). Without it the client is public.
    #[arg(long)]
    client_secret_env: Option<String>,
    /// How a confidential client authenticates: basic (client_secret_basic; the default when
    /// a secret variable is given), post (client_secret_post) or none (a public client).
    /// `--auth` is an alias.
    #[arg(long, alias = "auth", value_parser = ["basic", "post", "none"])]
    client_auth: Option<String>,
    /// Scopes to request (repeatable, or space-separated). `offline_access` is added when
    /// the issuer advertises it.
    #[arg(long)]
    scope: Vec<String>,
    /// The `audience` parameter.
    #[arg(long)]
    audience: Option<String>,
    /// A `resource` parameter (RFC 8707; repeatable).
    #[arg(long)]
    resource: Vec<String>,
    /// Device flow (RFC 8628): a code to enter on another device.
    #[arg(long, group = "flow")]
    device: bool,
    /// Browser with PKCE and a loopback redirect on 127.0.0.1.
    #[arg(long, group = "flow")]
    browser: bool,
    /// Print the URL, read the code (or the whole redirect URL) from stdin.
    #[arg(long, group = "flow")]
    paste: bool,
    /// The loopback port for --browser (default: any free port).
    #[arg(long)]
    port: Option<u16>,
    /// Give up on the login after this many seconds, counted from the start of the command
    /// (waiting for another process's login counts too).
    #[arg(long, default_value_t = 300)]
    login_timeout: u64,
    /// The token endpoint, instead of --issuer and its discovery (with the endpoints below).
    #[arg(long)]
    token_endpoint: Option<String>,
    /// The authorization endpoint (browser and paste flows; beside --issuer: instead of the
    /// one discovered, or where the metadata names none).
    #[arg(long)]
    authorization_endpoint: Option<String>,
    /// The device authorization endpoint (beside --issuer: instead of the one discovered, or
    /// where the metadata names none).
    #[arg(long)]
    device_authorization_endpoint: Option<String>,
    /// The revocation endpoint to store (beside --issuer: instead of the one discovered, or
    /// where the metadata names none).
    #[arg(long)]
    revocation_endpoint: Option<String>,
    /// How the new session is kept at rest: keyring (sealed with a key in the OS keychain) or
    /// none (plain JSON, mode 0600); remembered for the profile's next new sessions. Default:
    /// as the stored file is; for a new store, as remembered (`credlock protect`, an earlier
    /// --protect), else none.
    #[arg(long, value_parser = crate::commands::PROTECTIONS)]
    protect: Option<String>,
    /// The OpenID Connect `prompt` for the browser and paste flows: `select_account` to pick
    /// the account even when the browser is signed in, `login` to sign in again. It replaces
    /// the `consent` credlock asks for with `offline_access` (servers may then issue no
    /// refresh token): add it, as in "select_account consent".
    #[arg(long)]
    prompt: Option<String>,
    /// The OpenID Connect `login_hint` for the browser and paste flows: the account (an email
    /// address, a user name) the server should offer.
    #[arg(long)]
    login_hint: Option<String>,
    /// Another authorization parameter for the browser and paste flows (repeatable), such as
    /// `acr_values=mfa` or `hd=example.com`.
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_param)]
    param: Vec<(String, String)>,
}

/// The parameters credlock sends itself: a `--param` cannot replace them.
const OWN_PARAMS: [&str; 7] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "code_challenge",
    "code_challenge_method",
    "scope",
];

/// Parameters that carry a secret: refused, since parameters are remembered in the settings
/// file, which holds no secret.
const SECRET_PARAMS: [&str; 3] = ["client_secret", "client_assertion", "code_verifier"];

/// clap's parser for `--param NAME=VALUE` (the name is checked by `LoginArgs::check`, whose
/// message does not repeat the value as clap's would).
fn parse_param(given: &str) -> Result<(String, String), String> {
    match given.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err("expected NAME=VALUE".to_owned()),
    }
}

impl LoginArgs {
    fn deadline(&self) -> Duration {
        Duration::from_secs(self.login_timeout)
    }

    fn asked_flow(&self) -> Option<Flow> {
        if self.device {
            Some(Flow::Device)
        } else if self.browser {
            Some(Flow::Browser)
        } else if self.paste {
            Some(Flow::Paste)
        } else {
            None
        }
    }

    /// These flags, with what a profile remembers filling those not given: the endpoints
    /// (--issuer or --token-endpoint given replaces the remembered issuer, token endpoint and
    /// explicit endpoints together) and the client (--client-id given replaces the remembered
    /// client id, secret variable and method together) as groups, every other flag alone.
    pub fn with_remembered(&self, remembered: Option<&Remembered>) -> LoginArgs {
        let Some(r) = remembered else {
            return self.clone();
        };
        let mut out = self.clone();
        if self.issuer.is_none() && self.token_endpoint.is_none() {
            out.issuer.clone_from(&r.issuer);
            out.token_endpoint.clone_from(&r.token_endpoint);
            let or = |given: &Option<String>, kept: &Option<String>| given.clone().or(kept.clone());
            out.authorization_endpoint =
                or(&self.authorization_endpoint, &r.authorization_endpoint);
            out.device_authorization_endpoint = or(
                &self.device_authorization_endpoint,
                &r.device_authorization_endpoint,
            );
            out.revocation_endpoint = or(&self.revocation_endpoint, &r.revocation_endpoint);
        }
        if self.client_id.is_none() {
            out.client_id = Some(r.client_id.clone());
            if self.client_secret_env.is_none() {
                out.client_secret_env.clone_from(&r.client_secret_env);
            }
            if self.client_auth.is_none() && r.client_auth != "none" {
                out.client_auth = Some(r.client_auth.clone());
            }
        }
        if self.scope.is_empty() {
            out.scope.clone_from(&r.scopes);
        }
        if self.audience.is_none() {
            out.audience.clone_from(&r.audience);
        }
        if self.resource.is_empty() {
            out.resource.clone_from(&r.resources);
        }
        if self.asked_flow().is_none() {
            match r.flow.as_deref() {
                Some("device") => out.device = true,
                Some("browser") => out.browser = true,
                Some("paste") => out.paste = true,
                _ => {}
            }
        }
        out.port = self.port.or(r.port);
        if self.prompt.is_none() {
            out.prompt.clone_from(&r.prompt);
        }
        if self.login_hint.is_none() {
            out.login_hint.clone_from(&r.login_hint);
        }
        if self.param.is_empty() {
            out.param.clone_from(&r.params);
        }
        out
    }

    /// What to remember of these (resolved) flags: every one that says how to log in, the
    /// client secret's variable name but never the secret, not the timeout.
    fn remembered(&self) -> Remembered {
        let client_auth = match (&self.client_secret_env, self.client_auth.as_deref()) {
            (None, _) => "none",
            (Some(_), Some("post")) => "post",
            (Some(_), _) => "basic",
        };
        Remembered {
            issuer: self.issuer.clone(),
            token_endpoint: self.token_endpoint.clone(),
            authorization_endpoint: self.authorization_endpoint.clone(),
            device_authorization_endpoint: self.device_authorization_endpoint.clone(),
            revocation_endpoint: self.revocation_endpoint.clone(),
            client_id: self.client_id.clone().unwrap_or_default(),
            client_auth: client_auth.to_owned(),
            client_secret_env: self.client_secret_env.clone(),
            scopes: self.scope.clone(),
            audience: self.audience.clone(),
            resources: self.resource.clone(),
            flow: self.asked_flow().map(|f| flow_name(f).to_owned()),
            port: self.port,
            prompt: self.prompt.clone(),
            login_hint: self.login_hint.clone(),
            params: self.param.clone(),
        }
    }

    /// Whether any authorization parameter is given (the device flow sends none).
    fn has_url_params(&self) -> bool {
        self.prompt.is_some() || self.login_hint.is_some() || !self.param.is_empty()
    }

    /// Checked before any lock is taken or anything is sent.
    fn check(&self) -> Result<(), Failure> {
        if self.client_id.is_none() {
            return Err(Failure::Usage(
                "logging in needs --client-id (and --issuer): this profile remembers no login yet; after one login with them, `login` and `token --login` reuse its flags"
                    .into(),
            ));
        }
        for (name, _) in &self.param {
            if OWN_PARAMS.contains(&name.as_str()) {
                return Err(Failure::Usage(format!(
                    "--param {name}=…: credlock sends {name} itself (--scope gives the scope, --client-id the client)"
                )));
            }
            if SECRET_PARAMS.contains(&name.as_str()) {
                return Err(Failure::Usage(format!(
                    "--param {name}=… would put a secret in the profile's settings file: give a client secret with --client-secret-env VAR"
                )));
            }
        }
        if self.issuer.is_some() && self.token_endpoint.is_some() {
            return Err(Failure::Usage(
                "give either --issuer (its metadata names the token endpoint) or --token-endpoint, not both"
                    .into(),
            ));
        }
        if self.issuer.is_none() && self.token_endpoint.is_none() {
            return Err(Failure::Usage(
                "logging in needs --issuer URL (or --token-endpoint with the other endpoints)"
                    .into(),
            ));
        }
        self.auth().map(|_| ())
    }

    fn auth(&self) -> Result<ClientAuth, Failure> {
        let Some(var) = &self.client_secret_env else {
            return Ok(ClientAuth::None);
        };
        if self.client_auth.as_deref() == Some("none") {
            return Err(Failure::Usage(
                "--client-auth none is a public client: it takes no --client-secret-env".into(),
            ));
        }
        let secret = std::env::var(var)
            .map(Secret::new)
            .map_err(|_| Failure::Usage(format!("the environment variable {var} is not set")))?;
        Ok(match self.client_auth.as_deref().unwrap_or("basic") {
            "post" => ClientAuth::Post { secret },
            _ => ClientAuth::Basic { secret },
        })
    }

    /// Discovery (or the explicit endpoints) and the login's settings, for a login that
    /// has `left` of its deadline.
    fn build(&self, left: Duration) -> Result<Login, Failure> {
        // Discovery counts against the login's deadline: no request may outlive it (the
        // flows bound theirs by the time left; discovery runs before the flow starts).
        let transport = Arc::new(UreqTransport::with_timeouts(
            Duration::from_secs(10).min(left),
            Duration::from_secs(30).min(left),
        ));
        let mut endpoints = match (&self.token_endpoint, &self.issuer) {
            (Some(token), _) => Endpoints::new(token)?,
            (None, Some(issuer)) => Endpoints::discover(issuer, transport.as_ref())?,
            (None, None) => return Err(Failure::Usage("logging in needs --issuer".into())),
        };
        // Beside --issuer too: an endpoint given is one the user wants, whether the metadata
        // lacks it or names another.
        if let Some(u) = &self.authorization_endpoint {
            endpoints = endpoints.with_authorization(u)?;
        }
        if let Some(u) = &self.device_authorization_endpoint {
            endpoints = endpoints.with_device_authorization(u)?;
        }
        if let Some(u) = &self.revocation_endpoint {
            endpoints = endpoints.with_revocation(u)?;
        }
        let client_id = self.client_id.clone().unwrap_or_default();
        let mut login = Login::new(endpoints, client_id, self.auth()?)?
            .with_scopes(&self.scope)
            .with_deadline(left)
            .with_transport(transport);
        if let Some(a) = &self.audience {
            login = login.with_audience(a);
        }
        for r in &self.resource {
            login = login.with_resource(r);
        }
        if let Some(p) = self.port {
            login = login.with_port(p);
        }
        if let Some(prompt) = &self.prompt {
            login = login.with_param("prompt", prompt);
        }
        if let Some(hint) = &self.login_hint {
            login = login.with_param("login_hint", hint);
        }
        for (name, value) in &self.param {
            login = login.with_param(name, value);
        }
        Ok(login)
    }
}

/// With no flow flag: the device flow where a browser here is unlikely (over SSH, or no
/// display on a Unix other than macOS) and the issuer offers it, else the browser.
fn choose(asked: Option<Flow>, login: &Login) -> Flow {
    if let Some(flow) = asked {
        return flow;
    }
    let has_device = login.endpoints().device_authorization().is_some();
    let over_ssh = ["SSH_CONNECTION", "SSH_TTY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    let no_display = cfg!(unix)
        && !cfg!(target_os = "macos")
        && ["DISPLAY", "WAYLAND_DISPLAY"]
            .iter()
            .all(|v| std::env::var_os(v).is_none_or(|s| s.is_empty()));
    let no_browser_flow = login.endpoints().authorization().is_none();
    if has_device && (over_ssh || no_display || no_browser_flow) {
        Flow::Device
    } else {
        Flow::Browser
    }
}

fn flow_name(flow: Flow) -> &'static str {
    match flow {
        Flow::Device => "device",
        Flow::Browser => "browser",
        _ => "paste",
    }
}

/// Runs the chosen flow with what is left of the deadline that began at `started` (waiting
/// for another process's login counted); prompts go to stderr.
fn run(args: &LoginArgs, started: Instant, chosen: &mut Option<Flow>) -> Result<Session, Error> {
    let left = args.deadline().saturating_sub(started.elapsed());
    if left.is_zero() {
        return Err(Error::LoginExpired {
            what: format!(
                "the login deadline of {} s passed while waiting for another process's login",
                args.deadline().as_secs()
            ),
        });
    }
    // Usage errors were ruled out by `check` before the guards were taken.
    let login = args.build(left).map_err(|f| match f {
        Failure::Credlock(e) => e,
        Failure::Usage(reason) | Failure::Configuration(reason) | Failure::Other(reason) => {
            Error::LoginAborted { reason }
        }
        other => Error::LoginAborted {
            reason: format!("{other:?}"),
        },
    })?;
    let flow = choose(args.asked_flow(), &login);
    *chosen = Some(flow);
    if flow == Flow::Device && args.has_url_params() {
        eprintln!(
            "credlock: warning: --prompt, --login-hint and --param apply to the browser and paste flows; the device flow does not send them"
        );
    }
    let wait = login.deadline().as_secs();
    match flow {
        Flow::Device => login.device(&mut |code| {
            eprintln!(
                "credlock: to sign in, open {} and enter the code {}",
                code.verification_uri, code.user_code
            );
            if let Some(complete) = &code.verification_uri_complete {
                eprintln!("credlock: (or open {complete})");
            }
            eprintln!("credlock: waiting for approval (up to {wait} s)...");
        }),
        Flow::Browser => login.browser(&open_browser, &mut |url| {
            eprintln!("credlock: opening the browser to sign in; if it does not open, visit:");
            eprintln!("  {url}");
            eprintln!("credlock: waiting for the browser (up to {wait} s)...");
        }),
        _ => login.paste(&mut std::io::stdin().lock(), &mut |url| {
            eprintln!("credlock: open this URL in any browser and sign in:");
            eprintln!("  {url}");
            eprintln!("credlock: then paste the code, or the whole URL you were sent to, here:");
        }),
    }
}

/// `credlock login`: logs in and saves the session, replacing a stored one. It always logs
/// in (the user asked to): it waits for a refresh or another login in progress, then logs in
/// under the guards, never adopting what they saved (`token --login` is the command that
/// shares one login among many processes).
pub fn login(g: &Global, args: &LoginArgs) -> Outcome {
    let args = &resolve(g, args)?;
    args.check()?;
    crate::signals::release_leases_on_termination();
    let started = Instant::now();
    let store = crate::commands::with_protection(g, g.store(), args.protect.as_deref())?;
    // Before the user logs in, not at the save: a session that cannot be kept is lost.
    store.check_protection()?;
    let mut chosen = None;
    let outcome = match store.relogin_with(args.deadline(), || run(args, started, &mut chosen)) {
        Ok(session) => LoggedIn::Saved(session),
        Err(e @ Error::NotSaved { .. }) => {
            if g.json {
                let Error::NotSaved { session, .. } = &e else {
                    unreachable!("matched above")
                };
                // The same object as a saved login's, with why it was not saved.
                outln!("{}", login_json(g, session, true, chosen, Some(&e)))?;
                return Err(Failure::Reported(e));
            }
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    remember(g, args);
    report(g, &outcome, chosen)?;
    Ok(0)
}

/// The flags given, completed with what the profile remembers. Unreadable settings are an
/// error only when a flag they would give is missing: a login with every flag goes on (and
/// its success replaces them).
fn resolve(g: &Global, args: &LoginArgs) -> Result<LoginArgs, Failure> {
    match settings::load(&g.store) {
        Ok(settings) => Ok(args.with_remembered(settings.login.as_ref())),
        Err(e) if args.check().is_ok() => {
            eprintln!("credlock: warning: {e}");
            Ok(args.clone())
        }
        Err(e) => Err(Failure::Other(e)),
    }
}

/// After a login of this process's own was saved: its flags become the profile's login
/// settings, and the record of how the last session ended goes with the session it was about.
/// A failure is a warning: the session is saved, only the next login needs the flags again.
fn remember(g: &Global, args: &LoginArgs) {
    // Unreadable settings are replaced: these are the flags that just worked.
    let mut settings = settings::load(&g.store).unwrap_or_default();
    settings.login = Some(args.remembered());
    settings.last_session_end = None;
    if let Some(p) = &args.protect {
        settings.protection = Some(p.clone());
    }
    // Settings that could not be read have lost a remembered protection: keep the one the
    // session was just written with, so that the next session is not written plain.
    if settings.protection.is_none()
        && matches!(
            g.store().file_protection(),
            Ok(Some(credlock::FileProtection::Keyring { .. }))
        )
    {
        settings.protection = Some("keyring".to_owned());
    }
    let result = settings::save(&g.store, &settings);
    if let Err(e) = result {
        eprintln!("credlock: warning: could not remember the login settings: {e}");
    }
}

fn report(g: &Global, outcome: &LoggedIn, flow: Option<Flow>) -> Result<(), Failure> {
    let s = outcome.session();
    warn_if_unrevocable(outcome);
    if g.json {
        outln!("{}", login_json(g, s, outcome.logged_in(), flow, None))?;
    } else if outcome.logged_in() {
        eprintln!(
            "credlock: logged in{}; session saved to {}",
            as_account(s),
            g.store.display()
        );
    } else {
        eprintln!(
            "credlock: another process logged in meanwhile; using its session in {}",
            g.store.display()
        );
    }
    Ok(())
}

/// The `login --json` object (`docs/json.md`): `saved` is false, and `error` says why, when
/// the login worked but its session could not be stored.
fn login_json(
    g: &Global,
    s: &Session,
    logged_in: bool,
    flow: Option<Flow>,
    not_saved: Option<&Error>,
) -> serde_json::Value {
    json!({
        "logged_in": logged_in,
        "adopted": !logged_in,
        "flow": flow.map(flow_name),
        "saved": not_saved.is_none(),
        "store": g.store,
        "client_id": s.client().client_id(),
        "token_endpoint": s.client().token_endpoint_for_display(),
        "scope": s.scope(),
        "expires_at": s.expires_at().map(rfc3339),
        "has_id_token": s.id_token().is_some(),
        "account": crate::commands::account_json(s),
        "revocable": s.client().revocation_endpoint().is_some(),
        "error": not_saved.map(crate::error_json),
    })
}

/// `credlock token --login`: logs in first when the session needs a login (one login across
/// all the processes that ask at once), then hands the token out as `credlock token` does
/// with the same `--format`, `--out` and `--min-valid`. With `CREDLOCK_ACCESS_TOKEN` set the
/// store is not used, so there is nothing to log in to: the override is handed out.
pub fn token(g: &Global, args: &LoginArgs, tools: &crate::formats::TokenArgs) -> Outcome {
    let started = Instant::now();
    crate::formats::check(g, tools)?;
    if crate::obtain::override_active() {
        return crate::formats::token(g, false, tools);
    }
    match g.store().access_token() {
        Ok(_) => {}
        Err(e) if e.needs_login() => {
            let args = &resolve(g, args)?;
            args.check()
                .inspect_err(|_| crate::profiles::hint_if_unknown(g))?;
            // Chosen now, not before the token was asked for: a refused refresh has just
            // deleted the sealed file whose header said `keyring`.
            let store = crate::commands::with_protection(g, g.store(), args.protect.as_deref())?;
            store.check_protection()?;
            crate::signals::release_leases_on_termination();
            let mut chosen = None;
            match store.login_with(args.deadline(), || run(args, started, &mut chosen)) {
                Ok(outcome) => {
                    if outcome.logged_in() {
                        remember(g, args);
                    }
                    if g.verbose || outcome.logged_in() {
                        report_quietly(&outcome);
                    }
                }
                Err(e @ Error::NotSaved { .. }) => {
                    let Error::NotSaved { session, .. } = &e else {
                        unreachable!("matched above")
                    };
                    // The login worked: its token is valid now, though not stored.
                    let got = crate::obtain::Obtained {
                        token: Secret::new(session.access_token().secret()),
                        expires_at: session.expires_at(),
                        stored: Some(crate::obtain::FromStore {
                            token_type: session.token_type().to_owned(),
                            refreshed: false,
                            saved: false,
                        }),
                    };
                    crate::formats::deliver(g, tools, &got, Some(&e))?;
                    if crate::formats::delivers_json(g, tools) {
                        return Err(Failure::Reported(e));
                    }
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(e) => return Err(e.into()),
    }
    if tools.is_plain() {
        crate::commands::token(g, false)
    } else {
        crate::formats::token(g, false, tools)
    }
}

/// After a login of this process's own: say now, not at `logout --revoke`, that the server
/// named no revocation endpoint.
fn warn_if_unrevocable(outcome: &LoggedIn) {
    if outcome.logged_in() && outcome.session().client().revocation_endpoint().is_none() {
        eprintln!(
            "credlock: warning: the server names no revocation endpoint, so this session cannot be revoked by `logout --revoke` (give --revocation-endpoint at login if it has one)"
        );
    }
}

/// " as jane@example.com (unverified)", or nothing when the ID token names no account.
fn as_account(s: &Session) -> String {
    s.unverified_id_token_claims()
        .and_then(|c| c.account().map(|a| format!(" as {a} (unverified)")))
        .unwrap_or_default()
}

fn report_quietly(outcome: &LoggedIn) {
    warn_if_unrevocable(outcome);
    if outcome.logged_in() {
        eprintln!("credlock: logged in{}", as_account(outcome.session()));
    } else {
        eprintln!("credlock: adopted the session another process's login saved");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: LoginArgs,
    }

    fn given(flags: &[&str]) -> LoginArgs {
        let mut argv = vec!["credlock"];
        argv.extend_from_slice(flags);
        Wrapper::parse_from(argv).args
    }

    fn remembered() -> Remembered {
        Remembered {
            token_endpoint: Some("https://id.example/token".into()),
            device_authorization_endpoint: Some("https://id.example/device".into()),
            client_id: "kept".into(),
            client_auth: "post".into(),
            client_secret_env: Some("KEPT_SECRET".into()),
            scopes: vec!["openid".into()],
            flow: Some("device".into()),
            login_hint: Some("jane@example.com".into()),
            ..Remembered::default()
        }
    }

    #[test]
    fn no_flags_take_every_remembered_setting_and_remember_them_unchanged() {
        let args = given(&[]).with_remembered(Some(&remembered()));
        assert_eq!(args.remembered(), remembered());
    }

    #[test]
    fn an_issuer_or_client_id_given_replaces_its_whole_remembered_group() {
        let r = remembered();
        let args = given(&["--issuer", "https://other.example", "--client-id", "new"])
            .with_remembered(Some(&r));
        let kept = args.remembered();
        assert_eq!(kept.issuer.as_deref(), Some("https://other.example"));
        assert_eq!(kept.token_endpoint, None);
        assert_eq!(kept.device_authorization_endpoint, None);
        assert_eq!(kept.client_id, "new");
        assert_eq!(
            kept.client_secret_env, None,
            "a new client is public unless told"
        );
        assert_eq!(kept.client_auth, "none");
        // Flags outside the two groups stay remembered.
        assert_eq!(kept.scopes, r.scopes);
        assert_eq!(kept.login_hint, r.login_hint);
        assert_eq!(kept.flow.as_deref(), Some("device"));
    }

    #[test]
    fn a_single_flag_given_replaces_only_its_own_setting() {
        let args = given(&[
            "--browser",
            "--scope",
            "openid email",
            "--param",
            "acr_values=mfa",
        ])
        .with_remembered(Some(&remembered()));
        let kept = args.remembered();
        assert_eq!(kept.flow.as_deref(), Some("browser"));
        assert_eq!(kept.scopes, ["openid email"]);
        assert_eq!(kept.params, [("acr_values".to_owned(), "mfa".to_owned())]);
        assert_eq!(kept.client_id, "kept");
        assert_eq!(kept.client_secret_env.as_deref(), Some("KEPT_SECRET"));
        assert_eq!(kept.client_auth, "post");
    }
}
