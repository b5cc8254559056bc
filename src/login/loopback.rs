//! The loopback redirect (RFC 8252 §7.3): one listener on 127.0.0.1, one accepted redirect.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::error::Error;

/// The path of the redirect URI on the loopback listener.
pub(crate) const CALLBACK_PATH: &str = "/callback";

/// What the authorization server's redirect carried, once its `state` matched.
#[derive(Debug)]
pub(crate) enum Redirect {
    Code(String),
    /// `error` (and `error_description`) instead of a code.
    Error {
        code: String,
        description: Option<String>,
    },
}

/// A listener on 127.0.0.1 for one redirect.
pub(crate) struct Loopback {
    listener: TcpListener,
    port: u16,
}

impl Loopback {
    /// Binds 127.0.0.1:`port` (0: any free port). The IP literal, not `localhost`, as RFC
    /// 8252 §8.3 recommends: no resolver, no IPv6/IPv4 mismatch.
    pub(crate) fn bind(port: u16) -> Result<Loopback, Error> {
        let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|e| Error::LoginAborted {
            reason: format!("could not listen on 127.0.0.1:{port} for the browser's redirect: {e}"),
        })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::LoginAborted {
                reason: format!("could not set up the loopback listener: {e}"),
            })?;
        Ok(Loopback { listener, port })
    }

    pub(crate) fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}{CALLBACK_PATH}", self.port)
    }

    /// Waits until `deadline` for the redirect to [`CALLBACK_PATH`]. Other paths (a
    /// browser's `/favicon.ico`) get a 404 and the wait goes on. The first request to the
    /// callback decides: a `state` other than `state` is [`Error::LoginStateMismatch`] and
    /// nothing else is accepted afterwards (the listener closes when this returns).
    pub(crate) fn wait(&self, state: &str, deadline: Instant) -> Result<Redirect, Error> {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Some(result) = handle(stream, state, deadline) {
                        return result;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(Error::LoginExpired {
                            what: "the browser did not come back to the loopback redirect before the login's deadline".to_owned(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(Error::LoginAborted {
                        reason: format!("the loopback listener failed: {e}"),
                    });
                }
            }
        }
    }
}

/// One HTTP request on the listener; `None` when it was not the callback.
fn handle(
    mut stream: TcpStream,
    state: &str,
    deadline: Instant,
) -> Option<Result<Redirect, Error>> {
    let _ = stream.set_nonblocking(false);
    let left = deadline.saturating_duration_since(Instant::now());
    let _ = stream.set_read_timeout(Some(
        left.clamp(Duration::from_millis(100), Duration::from_secs(5)),
    ));
    let Some(target) = read_request_target(&mut stream) else {
        respond(&mut stream, "400 Bad Request", "Bad request.");
        return None;
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    if path != CALLBACK_PATH {
        respond(&mut stream, "404 Not Found", "Not found.");
        return None;
    }
    let result = super::paste::redirect_from_query(query, state);
    match &result {
        Ok(Redirect::Code(_)) => respond(
            &mut stream,
            "200 OK",
            "Signed in. You can close this tab and return to the terminal.",
        ),
        Ok(Redirect::Error { .. }) => respond(
            &mut stream,
            "200 OK",
            "The sign-in was not completed. You can close this tab; the terminal says more.",
        ),
        Err(_) => respond(
            &mut stream,
            "400 Bad Request",
            "This redirect does not belong to the sign-in in progress. Nothing was done.",
        ),
    }
    Some(result)
}

/// The request target of a `GET`, from at most 16 KiB of request head.
fn read_request_target(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = line.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    (method == "GET").then(|| target.to_owned())
}

fn respond(stream: &mut TcpStream, status: &str, text: &str) {
    let body = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>credlock</title></head>\
         <body><p>{text}</p></body></html>"
    );
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(port: u16, target: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    fn in_thread(target: &'static str, port: u16) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || get(port, target))
    }

    #[test]
    fn the_callback_with_the_right_state_yields_the_code_and_other_paths_are_404() {
        let lb = Loopback::bind(0).unwrap();
        let port = lb.port;
        let fav = in_thread("/favicon.ico", port);
        let fav_page = {
            let r = lb.wait("s1", Instant::now() + Duration::from_millis(300));
            assert!(matches!(r, Err(Error::LoginExpired { .. })), "{r:?}");
            fav.join().unwrap()
        };
        assert!(fav_page.starts_with("HTTP/1.1 404"), "{fav_page}");
        let cb = in_thread("/callback?code=c-1&state=s1", port);
        let r = lb
            .wait("s1", Instant::now() + Duration::from_secs(5))
            .unwrap();
        assert!(matches!(r, Redirect::Code(ref c) if c == "c-1"), "{r:?}");
        assert!(cb.join().unwrap().contains("Signed in"));
        assert_eq!(
            lb.redirect_uri(),
            format!("http://127.0.0.1:{port}/callback")
        );
    }

    #[test]
    fn a_wrong_state_ends_the_wait_with_a_typed_error() {
        let lb = Loopback::bind(0).unwrap();
        let cb = in_thread("/callback?code=c-1&state=other", lb.port);
        let r = lb.wait("s1", Instant::now() + Duration::from_secs(5));
        assert!(matches!(r, Err(Error::LoginStateMismatch)), "{r:?}");
        assert!(cb.join().unwrap().starts_with("HTTP/1.1 400"));
    }

    #[test]
    fn an_error_redirect_is_reported() {
        let lb = Loopback::bind(0).unwrap();
        let cb = in_thread(
            "/callback?error=access_denied&error_description=no+way&state=s1",
            lb.port,
        );
        let r = lb
            .wait("s1", Instant::now() + Duration::from_secs(5))
            .unwrap();
        assert!(
            matches!(r, Redirect::Error { ref code, ref description } if code == "access_denied" && description.as_deref() == Some("no way")),
            "{r:?}"
        );
        cb.join().unwrap();
    }

    #[test]
    fn a_busy_port_is_a_typed_error() {
        let lb = Loopback::bind(0).unwrap();
        let e = Loopback::bind(lb.port).err().unwrap();
        assert!(matches!(e, Error::LoginAborted { .. }), "{e}");
    }
}
