//! `credlock token --format plain|header|exec-credential`, `--out FILE` and `--min-valid`:
//! the token in the shape a tool expects, and nowhere else.

use std::path::PathBuf;
use std::time::Duration;

use credlock::internal::rfc3339;
use serde_json::json;

use crate::obtain::{self, Obtained};
use crate::{Failure, Global, Outcome};

/// How `credlock token` prints the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// The token and a newline (`--json`: an object with its expiry).
    #[default]
    Plain,
    /// `Authorization: Bearer <token>`, for `curl -H @-`.
    Header,
    /// A Kubernetes `ExecCredential` (client.authentication.k8s.io v1 or v1beta1, as asked
    /// for in `KUBERNETES_EXEC_INFO`), for a kubeconfig `exec` plugin.
    ExecCredential,
}

/// The options of `credlock token` for tools.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Plain)]
    pub format: Format,
    /// Write the token to FILE instead of stdout: atomically, mode 0600, only when it
    /// changed. Without FILE: $XDG_RUNTIME_DIR/bt_u<uid> (the WLCG bearer token discovery
    /// location), or /tmp/bt_u<uid> when XDG_RUNTIME_DIR is unset (cron, batch; not
    /// $TMPDIR), with -NAME appended for --profile NAME. A file there that another user owns
    /// is refused (exit 1), never used. The session file and its own files (lock, lease,
    /// settings, temporary files) are refused as FILE (exit 2).
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    pub out: Option<Option<PathBuf>>,
    /// Refresh when the token has less than this many seconds left, capped at three
    /// quarters of the token's lifetime (a token is used for at least a quarter of its
    /// lifetime, so 600 s tokens with --min-valid 900 are refreshed once, not on every call;
    /// a warning says when the cap applies). If that refresh fails for a reason that may pass
    /// (network, 408, 425, 429, 5xx, lock timeout), a token that has not expired is still
    /// handed out, with a warning.
    #[arg(long, value_name = "SECONDS")]
    pub min_valid: Option<u64>,
}

impl TokenArgs {
    /// Whether the plain `credlock token` of `commands::token` is what was asked for.
    pub fn is_plain(&self) -> bool {
        self.format == Format::Plain
            && self.out.is_none()
            && self.min_valid.is_none()
            && !obtain::override_active()
    }
}

/// Checks what can be checked before any store access (or login), so that a misconfigured
/// kubeconfig costs no refresh: the `ExecCredential` version asked for, and an `--out` file
/// that is not the session's own.
pub fn check(g: &Global, args: &TokenArgs) -> Result<(), Failure> {
    if args.format == Format::ExecCredential {
        exec_credential_api_version()?;
    }
    if let Some(path) = out_path(g, args) {
        crate::token_file::refuse_session_files(&path, &g.store)?;
    }
    Ok(())
}

/// The token file `--out` names, if any.
fn out_path(g: &Global, args: &TokenArgs) -> Option<PathBuf> {
    args.out.as_ref().map(|out| match out {
        Some(path) => path.clone(),
        None => crate::token_file::default_path(g.profile.as_deref()),
    })
}

/// `credlock token` with a tool format, a token file, `--min-valid` or the override.
pub fn token(g: &Global, rejected_on_stdin: bool, args: &TokenArgs) -> Outcome {
    check(g, args)?;
    let min_valid = args.min_valid.map(Duration::from_secs);
    let got = if rejected_on_stdin && !obtain::override_active() {
        let rejected = obtain::read_stdin("the rejected token")?;
        let rejected = rejected.trim();
        if rejected.is_empty() {
            return Err(Failure::Usage(
                "--rejected-on-stdin needs the rejected token on stdin".into(),
            ));
        }
        let t = g.store().access_token_after_rejection(rejected)?;
        Obtained::from_store(&t)
    } else {
        obtain::token(g, min_valid)?
    };
    deliver(g, args, &got, None)
}

/// Whether [`deliver`] puts `--json` output of credlock's own (`docs/json.md`) on stdout,
/// where an `error` reported with it belongs.
pub fn delivers_json(g: &Global, args: &TokenArgs) -> bool {
    g.json && (args.out.is_some() || args.format == Format::Plain)
}

/// Hands `got` over as `args` ask: to the token file, or on stdout in the format asked for.
/// `error`, with `--json`, is why a token that works was not saved. Its callers ran [`check`]
/// first, which refused an `--out` naming the session's own files.
pub fn deliver(
    g: &Global,
    args: &TokenArgs,
    got: &Obtained,
    error: Option<&credlock::Error>,
) -> Outcome {
    if let Some(path) = out_path(g, args) {
        let written = crate::token_file::write_if_changed(&path, got.token.secret())?;
        if g.verbose {
            let what = if written { "wrote" } else { "unchanged:" };
            eprintln!("credlock: {what} {}", path.display());
        }
        if g.json {
            outln!(
                "{}",
                json!({
                    "out": path,
                    "written": written,
                    "expires_at": got.expires_at.map(rfc3339),
                    "error": error.map(crate::error_json),
                })
            )?;
        }
        return Ok(0);
    }
    match args.format {
        Format::ExecCredential => {
            let api_version = exec_credential_api_version()?;
            let mut status = json!({ "token": got.token.secret() });
            if let Some(e) = got.expires_at {
                status["expirationTimestamp"] = json!(rfc3339(e));
            }
            outln!(
                "{}",
                json!({"apiVersion": api_version, "kind": "ExecCredential", "status": status})
            )?;
        }
        Format::Header => outln!("Authorization: Bearer {}", got.token.secret())?,
        _ if g.json => outln!("{}", got.json(error))?,
        _ => outln!("{}", got.token.secret())?,
    }
    Ok(0)
}

const EXEC_API_GROUP: &str = "client.authentication.k8s.io/";
const EXEC_API_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// The `ExecCredential` API version kubectl asked for in `KUBERNETES_EXEC_INFO` (v1 when
/// the variable is unset, as when run by hand).
fn exec_credential_api_version() -> Result<String, Failure> {
    let Some(info) = std::env::var_os("KUBERNETES_EXEC_INFO") else {
        return Ok(format!("{EXEC_API_GROUP}v1"));
    };
    let info: serde_json::Value = serde_json::from_slice(info.as_encoded_bytes())
        .map_err(|e| Failure::Usage(format!("KUBERNETES_EXEC_INFO is not JSON: {e}")))?;
    let requested = info["apiVersion"].as_str().unwrap_or_default();
    match requested.strip_prefix(EXEC_API_GROUP) {
        Some(v) if EXEC_API_VERSIONS.contains(&v) => Ok(requested.to_owned()),
        _ => Err(Failure::Usage(format!(
            "KUBERNETES_EXEC_INFO asks for ExecCredential {requested:?}; credlock speaks {EXEC_API_GROUP}v1 and v1beta1"
        ))),
    }
}
