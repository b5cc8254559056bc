//! The paste flow: the user opens the URL anywhere and pastes back the code, or the whole
//! redirect URL, on standard input.

use std::io::BufRead;

use super::redirect::{Redirect, redirect_from_query};
use crate::basics::encoding::form_urldecode;
use crate::error::Error;

/// The longest line read from the user: a redirect URL with a code is well under 4 KiB.
const MAX_LINE: u64 = 16 * 1024;

/// Reads one line from `input`: a bare code, or a redirect URL / query string holding
/// `code` (or `error`) and `state`. A URL's `state` must equal `state`; a bare code has none
/// to check (PKCE still binds it to this login: the code is useless without the verifier).
pub(crate) fn read_redirect(input: &mut dyn BufRead, state: &str) -> Result<Redirect, Error> {
    let mut line = String::new();
    let read = std::io::Read::take(&mut *input, MAX_LINE)
        .read_line(&mut line)
        .map_err(|e| Error::LoginAborted {
            reason: format!("could not read the pasted code: {e}"),
        })?;
    if read == 0 {
        return Err(Error::LoginAborted {
            reason: "standard input closed before a code was pasted".to_owned(),
        });
    }
    let line = line.trim();
    if line.is_empty() {
        return Err(Error::LoginAborted {
            reason: "an empty line was pasted instead of the code".to_owned(),
        });
    }
    let query = if let Some((_, q)) = line.split_once('?') {
        Some(q)
    } else if line.contains("code=") || line.contains("error=") {
        Some(line)
    } else {
        None
    };
    match query {
        Some(q) => redirect_from_query(q.split('#').next().unwrap_or(q), state),
        None => Ok(Redirect::Code(percent_decoded(line))),
    }
}

/// A bare code as the server issued it: some pages show it percent-encoded (Google's
/// `4%2F0Ab…`), and a code sent still encoded is spent on an `invalid_grant`. Only `%XX`
/// escapes are decoded (a `+` stays a `+`: this is not a form), and only when every `%`
/// starts one and the result is UTF-8; otherwise the line is the code as it stands.
fn percent_decoded(line: &str) -> String {
    if !line.contains('%') {
        return line.to_owned();
    }
    form_urldecode(&line.replace('+', "%2B")).unwrap_or_else(|| line.to_owned())
}

#[cfg(test)]
mod tests;
