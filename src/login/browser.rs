//! The seam to the user's browser: `$BROWSER` if set, else the platform's opener.
//!
//! Tests set `$BROWSER` to a script that drives the authorization server's pages itself.

use std::process::{Command, Stdio};

/// Opens `url` in the user's browser without waiting for it.
///
/// `$BROWSER` wins when set and not empty: a colon-separated list of commands (as `man 1
/// xdg-open`'s convention has it), of which the first is used; `%s` in it is replaced by the
/// URL, else the URL is added as the last argument. Otherwise `xdg-open` (Linux, BSD),
/// `open` (macOS) or `rundll32 url.dll,FileProtocolHandler` (Windows). The browser's output goes nowhere (it must not
/// reach a script reading credlock's stdout), and the child is reaped in the background.
///
/// # Errors
/// The command could not be started. The caller should then show the URL and keep waiting:
/// the user can open it by hand.
pub fn open_browser(url: &str) -> std::io::Result<()> {
    let mut command = match std::env::var("BROWSER").ok().and_then(|b| {
        b.split(':')
            .map(str::trim)
            .find(|c| !c.is_empty())
            .map(str::to_owned)
    }) {
        Some(browser) => from_template(&browser, url)?,
        None => platform_opener(url),
    };
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(())
}

fn from_template(template: &str, url: &str) -> std::io::Result<Command> {
    let mut words = template.split_whitespace();
    let program = words
        .next()
        .ok_or_else(|| std::io::Error::other("$BROWSER is empty"))?;
    let mut command = Command::new(program);
    let mut placed = false;
    for word in words {
        if word.contains("%s") {
            placed = true;
            command.arg(word.replace("%s", url));
        } else {
            command.arg(word);
        }
    }
    if !placed {
        command.arg(url);
    }
    Ok(command)
}

fn platform_opener(url: &str) -> Command {
    if cfg!(target_os = "macos") {
        let mut c = Command::new("open");
        c.arg(url);
        c
    } else if cfg!(windows) {
        // Not `cmd /c start`: cmd would split the URL at its `&`s.
        let mut c = Command::new("rundll32");
        c.args(["url.dll,FileProtocolHandler", url]);
        c
    } else {
        let mut c = Command::new("xdg-open");
        c.arg(url);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_places_the_url_at_percent_s_or_last() {
        let c = from_template("firefox --new-tab", "https://a/b?c=d").unwrap();
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["--new-tab", "https://a/b?c=d"]);
        let c = from_template("sh -c echo %s", "https://x").unwrap();
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["-c", "echo", "https://x"]);
        assert!(from_template("   ", "u").is_err());
    }
}
