//! `credlock exec [--env NAME] -- CMD ARGS…`: CMD runs with a valid token in its environment
//! and its exit status becomes credlock's.

use std::ffi::OsString;
use std::process::Command;

use crate::obtain;
use crate::{Failure, Global, Outcome};

/// Arguments of `credlock exec`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecArgs {
    /// The environment variable that receives the token (BEARER_TOKEN is the WLCG bearer
    /// token discovery name).
    #[arg(long, value_name = "NAME", default_value = "BEARER_TOKEN")]
    pub env: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// Exit status when CMD cannot be found, or found but not run (as shells do).
const NOT_FOUND: u8 = 127;
const NOT_EXECUTABLE: u8 = 126;

/// `credlock exec`. Nothing runs without a token: a failure to get one exits as `token`
/// would (3 login required, 4 transient).
pub fn run(g: &Global, args: &ExecArgs) -> Outcome {
    let valid_name = args
        .env
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && args
            .env
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid_name {
        return Err(Failure::Usage(format!(
            "--env {:?} is not an environment variable name (letters, digits, _)",
            args.env
        )));
    }
    let Some((program, rest)) = args.command.split_first() else {
        return Err(Failure::Usage("exec needs a command after --".into()));
    };
    let got = obtain::token(g, None)?;
    let mut cmd = Command::new(program);
    cmd.args(rest).env(&args.env, got.token.secret());
    drop(got);
    let error = match replace_or_wait(&mut cmd) {
        Ok(code) => return Ok(code),
        Err(e) => e,
    };
    let message = format!("could not run {}: {error}", program.to_string_lossy());
    eprintln!("credlock: error: {message}");
    let (kind, code) = match error.kind() {
        std::io::ErrorKind::NotFound => ("command_not_found", NOT_FOUND),
        _ => ("command_not_runnable", NOT_EXECUTABLE),
    };
    if g.json {
        // The command never ran, so stdout is still credlock's: one error object, as for
        // every other failure with --json.
        outln!(
            "{}",
            serde_json::json!({ "error": crate::plain_error_json(kind, &message, code) })
        )?;
    }
    Ok(code)
}

/// On Unix the process becomes CMD (`execvp`): signals, the exit status and the process id
/// are CMD's own, and no credlock process lingers holding the token.
#[cfg(unix)]
fn replace_or_wait(cmd: &mut Command) -> std::io::Result<u8> {
    use std::os::unix::process::CommandExt;
    Err(cmd.exec())
}

#[cfg(not(unix))]
fn replace_or_wait(cmd: &mut Command) -> std::io::Result<u8> {
    let status = cmd.status()?;
    // Windows exit codes are 32-bit; one that does not fit a u8 is reported as 1.
    Ok(status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(1))
}
