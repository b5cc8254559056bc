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
mod tests {
    use super::*;

    fn read(s: &str) -> Result<Redirect, Error> {
        read_redirect(&mut std::io::Cursor::new(s.as_bytes().to_vec()), "st")
    }

    #[test]
    fn a_bare_code_a_url_or_a_query_are_accepted() {
        assert!(matches!(read("  abc-123 \n"), Ok(Redirect::Code(c)) if c == "abc-123"));
        assert!(matches!(
            read("http://127.0.0.1/callback?code=x%2By&state=st#frag\n"),
            Ok(Redirect::Code(c)) if c == "x+y"
        ));
        assert!(matches!(read("code=q&state=st"), Ok(Redirect::Code(c)) if c == "q"));
    }

    /// Google shows the code percent-encoded (`4%2F0Ab…`); sending it as pasted would spend
    /// the single-use code on an `invalid_grant`.
    #[test]
    fn a_percent_encoded_bare_code_is_decoded_and_a_literal_percent_or_plus_is_kept() {
        assert!(matches!(read("4%2F0AbCd-e_f\n"), Ok(Redirect::Code(c)) if c == "4/0AbCd-e_f"));
        assert!(matches!(read("4/0Ab+x\n"), Ok(Redirect::Code(c)) if c == "4/0Ab+x"));
        assert!(matches!(read("4%2F0Ab+x\n"), Ok(Redirect::Code(c)) if c == "4/0Ab+x"));
        assert!(matches!(read("50%off\n"), Ok(Redirect::Code(c)) if c == "50%off"));
    }

    #[test]
    fn paste_errors_are_typed() {
        assert!(matches!(read(""), Err(Error::LoginAborted { .. })));
        assert!(matches!(read("\n"), Err(Error::LoginAborted { .. })));
        assert!(matches!(
            read("http://h/cb?code=q&state=other"),
            Err(Error::LoginStateMismatch)
        ));
        assert!(matches!(
            read("http://h/cb?code=q"),
            Err(Error::LoginStateMismatch)
        ));
        assert!(matches!(
            read("http://h/cb?state=st"),
            Err(Error::LoginInvalidResponse { .. })
        ));
        assert!(matches!(
            read("http://h/cb?error=access_denied&state=st"),
            Ok(Redirect::Error { code, .. }) if code == "access_denied"
        ));
    }
}
