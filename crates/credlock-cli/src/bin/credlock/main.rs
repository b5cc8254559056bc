//! `credlock`: a valid access token for any process, from one shared session file.
//!
//! Exit codes: 0 success; 2 usage; 3 login required; 4 transient (network, 408, 425, 429,
//! 5xx, lock timeout); 5 configuration (client rejected, no refresh token issued, bad endpoint, no
//! configuration directory); 1 anything else.
#![forbid(unsafe_code)]

/// `println!` that hands a closed or full standard output back as a [`Failure`] instead of
/// panicking (`credlock token > /dev/full`, `credlock status | head -1`).
macro_rules! outln {
    () => {
        $crate::write_stdout(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*))
    };
}

mod bench;
mod commands;
mod doctor;
mod exec;
mod formats;
mod git_credential;
mod login;
mod obtain;
mod profiles;
mod race;
mod settings;
mod signals;
mod token_file;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use credlock::{Error, LockMode, Store};
use credlock_cli::config::{self, Origin, SelectError, StoreOptions};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    name = "credlock",
    version,
    about = "One OAuth session on disk, a valid access token for every process.",
    after_help = EXIT_CODES
)]
struct Cli {
    /// The session file [default: $XDG_CONFIG_HOME/credlock/session.json, or
    /// profiles/PROFILE/session.json there with --profile], or a session on a Redis or
    /// Valkey server: redis://[user:password@]host:port[/db]?key=NAME (or rediss://,
    /// valkey://, valkeys://, in any case; the key defaults to the profile; the password may
    /// come from REDISCLI_AUTH and is never shown). A URL of another scheme is refused.
    #[arg(long, global = true, env = "CREDLOCK_STORE")]
    store: Option<PathBuf>,
    /// A named session (its own file, lock and lease) under the default directory. Nothing
    /// remembers a current profile: name it on every call (or in the environment).
    /// A --store on the command line wins over CREDLOCK_PROFILE and --profile over
    /// CREDLOCK_STORE; both from the same place is an error.
    #[arg(long, global = true, env = "CREDLOCK_PROFILE", value_parser = profiles::parse_profile)]
    profile: Option<String>,
    /// How refreshes are serialised: auto, advisory, lease or off.
    #[arg(long, global = true, env = "CREDLOCK_LOCK", default_value = "auto")]
    lock: LockMode,
    /// Refresh a token this many seconds before it expires (capped at a quarter of its lifetime).
    #[arg(long, global = true, env = "CREDLOCK_MARGIN", default_value_t = 30)]
    margin: u64,
    /// One JSON object on stdout, with stable keys (docs/json.md); a failure is an
    /// `{"error": …}` object.
    #[arg(long, global = true)]
    json: bool,
    /// Also report the routine steps on stderr (refreshing, adopting another process's
    /// refresh, re-reads). Warnings are shown without it: a lock wait past about a second,
    /// permissions tightened, a session deleted, an unexpired token handed out, guards that may
    /// not exclude other machines (--lock off; advisory where locks do not cross machines).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a valid access token (refreshing it if needed) and a newline.
    Token {
        /// An API rejected the current token (HTTP 401): read that token on stdin and refresh
        /// unless another process already has (N callers reporting it cause one refresh).
        #[arg(long)]
        rejected_on_stdin: bool,
        #[command(flatten)]
        tools: formats::TokenArgs,
        /// When the session needs a login (none stored, or the grant is gone), log in first
        /// with the login flags below, or those the profile remembers from its last login: one
        /// login across all processes asking at once.
        #[arg(long, conflicts_with = "rejected_on_stdin")]
        login: bool,
        #[command(flatten)]
        login_args: Box<login::LoginArgs>,
    },
    /// Log in (device flow, browser with PKCE, or paste) and save the session. The flags of a
    /// login that succeeds are remembered for the profile (a client secret only by its
    /// variable's name), and fill in those a later login does not give.
    Login(Box<login::LoginArgs>),
    /// Describe the stored session without printing any secret.
    Status,
    /// Store an RFC 6749 token response read from stdin as the session (after a login), or,
    /// with --grant client-credentials, a machine session that requests its own tokens.
    Import(commands::ImportArgs),
    /// Delete the session (under the lock). Without --revoke only the local copy goes; the
    /// refresh token stays valid at the server until it expires. The remembered login
    /// settings stay.
    Logout {
        /// Revoke the refresh token at the session's revocation endpoint (RFC 7009) first, in
        /// the same critical section as the delete. If the revocation fails, the session is
        /// kept (exit 4 if the server may answer later, 1 otherwise); run `logout` without
        /// --revoke to delete the local copy anyway.
        #[arg(long)]
        revoke: bool,
    },
    /// Check the store, its permissions, the lock and the filesystem.
    Doctor,
    /// Change how the stored session is kept at rest, under the lock and atomically: `keyring`
    /// seals it with a new key kept in the OS keychain (refused on a filesystem other machines
    /// share); `none` writes it back as plain JSON (mode 0600), on a machine whose keychain
    /// has the key. The choice is remembered for the profile (session.settings.json): a
    /// session logged in or imported after this one is gone is kept the same way. Every
    /// keychain call gives up after CREDLOCK_KEYCHAIN_TIMEOUT seconds (default 5).
    Protect {
        /// keyring or none.
        #[arg(value_parser = commands::PROTECTIONS)]
        protection: String,
    },
    /// List the profiles and the state of their sessions (no secrets).
    Profiles,
    /// A git credential helper for the hosts named:
    /// `git config credential.https://HOST.helper '!credlock --profile X git-credential --host HOST'`.
    /// Without --host or --url-prefix it answers no host.
    GitCredential(git_credential::GitCredentialArgs),
    /// Run a command with a valid access token in its environment; exits with its status.
    Exec(exec::ExecArgs),
    /// The demo: many processes, one expiring session, one embedded token server. Runs on a
    /// temporary session of its own: --store and --profile do not apply to it.
    Race(race::RaceArgs),
    /// Measure the hot path, durable saves, race scaling and memory. Runs on temporary
    /// sessions of its own: --store and --profile do not apply to it.
    Bench(bench::BenchArgs),
    /// One racing process (spawned by `race`).
    #[command(hide = true)]
    RaceChild,
}

/// Options shared by the subcommands.
#[derive(Debug, Clone)]
struct Global {
    /// The session file, or the server session's URL without its password.
    store: PathBuf,
    /// The session on a server, if `--store` names one.
    server: Option<credlock_cli::server_store::ServerStore>,
    /// The profile named with --profile, if any.
    profile: Option<String>,
    lock: LockMode,
    margin: Duration,
    json: bool,
    verbose: bool,
}

impl Global {
    /// A store with these options (the same setup as the docker helper's,
    /// `credlock_cli::config`); events that matter to a user go to stderr.
    fn store(&self) -> Store {
        StoreOptions {
            path: self.store.clone(),
            server: self.server.clone(),
            lock: self.lock,
            margin: self.margin,
            verbose: self.verbose,
        }
        .open(|e| {
            // The server refused the grant and the dead session was deleted: remembered
            // beside the login settings, for `status` to say when and why it went.
            if let credlock::Event::DeletedStaleSession { path, .. } = e {
                settings::record_end(path, settings::REFUSED);
            }
        })
    }
}

const EXIT_CODES: &str = "Exit codes:
  0  success
  1  any other error (a corrupt file, a refused revocation, a full disk, ...)
  2  usage error (bad arguments, an unknown CREDLOCK_FS_KIND; at import, a malformed or
     insecure endpoint)
  3  log in again (no session; the grant expired or was revoked)
  4  try again later (network, HTTP 408, 425, 429 or 5xx, lock timeout, an incomplete
     refresh, a revocation that could not be sent)
  5  configuration error (the server rejects the client, no refresh token was issued, the
     stored endpoint is malformed or insecure, or no configuration directory: HOME and
     XDG_CONFIG_HOME unset and no store named)
`exec` exits with its command's status once the command runs (126/127 if it cannot run).";

/// What a failed command exits with.
fn exit_code_for(e: &Error) -> u8 {
    if e.is_configuration() {
        5
    } else if e.needs_login() {
        3
    } else if e.is_transient() {
        4
    } else {
        1
    }
}

fn main() -> ExitCode {
    let parsed = command_ignoring_empty_env()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches).map(|cli| (matches, cli)));
    let (matches, cli) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return usage_error(&with_exec_tip(e)),
    };
    let json_output = cli.json;
    // The same selection as the docker helper's; clap only says where each value came from.
    let origin = |id: &str| match matches.value_source(id) {
        Some(clap::parser::ValueSource::CommandLine) => Origin::CommandLine,
        _ => Origin::Environment,
    };
    let selection = match config::select(
        cli.store.map(|s| (s, origin("store"))),
        cli.profile.map(|p| (p, origin("profile"))),
    ) {
        Ok(selection) => selection,
        Err(SelectError::Usage(message)) => return fail(Failure::Usage(message), json_output),
        Err(SelectError::Configuration(message)) => {
            return fail(Failure::Configuration(message), json_output);
        }
    };
    let global = Global {
        store: selection.path,
        server: selection.server,
        profile: selection.profile,
        lock: cli.lock,
        margin: Duration::from_secs(cli.margin),
        json: cli.json,
        verbose: cli.verbose,
    };
    let result = match cli.command {
        Command::Token {
            login: true,
            login_args,
            tools,
            ..
        } => login::token(&global, &login_args, &tools),
        Command::Token {
            rejected_on_stdin,
            tools,
            ..
        } if tools.is_plain() => commands::token(&global, rejected_on_stdin),
        Command::Token {
            rejected_on_stdin,
            tools,
            ..
        } => formats::token(&global, rejected_on_stdin, &tools),
        Command::Login(args) => login::login(&global, &args),
        Command::Status => commands::status(&global),
        Command::Import(args) => commands::import(&global, &args),
        Command::Logout { revoke } => commands::logout(&global, revoke),
        Command::Doctor => doctor::run(&global),
        Command::Protect { protection } => commands::protect(&global, &protection),
        Command::Profiles => profiles::list(&global),
        Command::GitCredential(args) => git_credential::run(&global, &args),
        Command::Exec(args) => exec::run(&global, &args),
        Command::Race(args) => race::run(&global, &args),
        Command::Bench(args) => bench::run(&global, &args),
        Command::RaceChild => race::child(&global),
    };
    peak_rss_report();
    if let Err(
        Failure::Credlock(Error::NoSession { .. }) | Failure::Reported(Error::NoSession { .. }),
    ) = &result
    {
        profiles::hint_if_unknown(&global);
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => fail(failure, json_output),
    }
}

/// Reports `failure` on stderr (and with `--json` on stdout) and gives its exit code.
fn fail(failure: Failure, json_output: bool) -> ExitCode {
    let (code, object) = match &failure {
        // The reader went away: nothing to tell it, and other tools exit quietly here too.
        Failure::StdoutClosed => return ExitCode::from(1),
        Failure::Reported(e) => {
            eprintln!("credlock: error: {}", e.with_causes());
            return ExitCode::from(exit_code_for(e));
        }
        Failure::Credlock(e) => (exit_code_for(e), error_json(e)),
        Failure::Other(message) => (1, plain_error_json("other", message, 1)),
        Failure::Usage(message) => (2, plain_error_json("usage", message, 2)),
        Failure::Configuration(message) => (5, plain_error_json("configuration", message, 5)),
    };
    eprintln!(
        "credlock: error: {}",
        object["message"].as_str().unwrap_or_default()
    );
    if json_output {
        // Stdout may be the very thing that failed; the stderr line above already told.
        let _ = write_stdout(format_args!("{}", json!({ "error": object })));
    }
    ExitCode::from(code)
}

/// The command line parser, with the environment variables that are set but empty left out:
/// an empty `CREDLOCK_PROFILE=` (a blank `env:` entry in a kubeconfig, an `export VAR=`)
/// means "not set", as it does for every `CREDLOCK_*` variable, not a usage error.
fn command_ignoring_empty_env() -> clap::Command {
    let mut command = Cli::command();
    let empty: Vec<clap::Id> = command
        .get_arguments()
        .filter(|a| {
            a.get_env()
                .is_some_and(|var| std::env::var_os(var).is_some_and(|v| v.is_empty()))
        })
        .map(|a| a.get_id().clone())
        .collect();
    for id in empty {
        command = command.mut_arg(id, |a| a.env(None));
    }
    command
}

/// `credlock exec sh -c true` (the command without `--` before it): clap's "unexpected
/// argument 'sh'" alone does not say that the command goes after `--`; a tip does.
fn with_exec_tip(mut e: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let usage = e.render().to_string();
    // `credlock.exe` on Windows.
    if e.kind() != ErrorKind::UnknownArgument
        || !(usage.contains("Usage: credlock exec ") || usage.contains("Usage: credlock.exe exec "))
    {
        return e;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return e;
    };
    if arg.starts_with('-') {
        return e;
    }
    let tip = format!(
        "the command goes after '--': credlock exec [OPTIONS] -- COMMAND ARGS… (here: credlock exec -- {arg} …)"
    );
    e.insert(
        ContextKind::Suggested,
        ContextValue::StyledStrs(vec![tip.into()]),
    );
    e
}

/// A command line clap refused: its own text on stderr, and with `--json` anywhere on the
/// command line also the error object on stdout, as for every other failure. Help and
/// version requests print as usual and succeed.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let _ = e.print();
    if std::env::args_os().any(|a| a == "--json") {
        let rendered = e.render().to_string();
        let message = rendered
            .lines()
            .next()
            .unwrap_or("invalid command line")
            .trim_start_matches("error: ");
        let _ = write_stdout(format_args!(
            "{}",
            json!({ "error": plain_error_json("usage", message, 2) })
        ));
    }
    ExitCode::from(2)
}

/// The `error` object of `--json` output: kind, message (no secrets: it is the error's
/// `Display`), exit code and the two predicates.
fn error_json(e: &Error) -> serde_json::Value {
    json!({
        "kind": e.kind(),
        "message": e.with_causes(),
        "exit_code": exit_code_for(e),
        "needs_login": e.needs_login(),
        "transient": e.is_transient(),
        "configuration": e.is_configuration(),
    })
}

fn plain_error_json(kind: &str, message: &str, code: u8) -> serde_json::Value {
    json!({
        "kind": kind,
        "message": message,
        "exit_code": code,
        "needs_login": false,
        "transient": false,
        "configuration": code == 5,
    })
}

/// Writes one line to standard output and flushes it.
fn write_stdout(line: std::fmt::Arguments<'_>) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Failure::StdoutClosed,
            _ => Failure::Other(format!("could not write to standard output: {e}")),
        })
}

/// Why a command failed.
#[derive(Debug)]
enum Failure {
    Credlock(Error),
    Usage(String),
    /// Not the session's fault and not fixed by a login: the environment (exit 5).
    Configuration(String),
    Other(String),
    /// Standard output was closed by its reader (EPIPE).
    StdoutClosed,
    /// Already reported on stdout (in a `--json` object); stderr still gets its line.
    Reported(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Credlock(e)
    }
}

type Outcome = Result<u8, Failure>;

/// With `CREDLOCK_PEAK_RSS=1`, print the process's peak resident set size (Linux `VmHWM`)
/// on stderr at exit: how `credlock bench` measures the memory of `credlock token`.
fn peak_rss_report() {
    if std::env::var_os("CREDLOCK_PEAK_RSS").is_none_or(|v| v.is_empty()) {
        return;
    }
    if let Some(line) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
    {
        let kib = line.split_whitespace().nth(1).unwrap_or("0");
        eprintln!("credlock: peak RSS {kib} KiB");
    }
}
