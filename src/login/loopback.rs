//! The loopback redirect (RFC 8252 §7.3): one listener on 127.0.0.1, one accepted redirect.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::redirect::{Redirect, redirect_from_query};
use crate::error::Error;

/// The path of the redirect URI on the loopback listener.
pub(crate) const CALLBACK_PATH: &str = "/callback";

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

    /// Waits until `deadline` for the redirect to [`CALLBACK_PATH`] whose `state` is
    /// `state`.
    ///
    /// Any local process (and any web page open in the user's browser) can connect to the
    /// port, so no connection may hold the wait up: connections are read without blocking,
    /// side by side, each first as it is accepted, and none outlives `deadline`. Every new
    /// connection is taken in; past [`MAX_CONNECTIONS`] the one opened longest ago makes
    /// room (a browser sends its whole request within milliseconds of connecting, so the
    /// oldest incomplete connection is a client that trickles or never speaks). At most
    /// [`ACCEPTS_PER_PASS`] are taken between two reads of every open connection, a
    /// fraction of the limit: a new connection is read several times before any flood can
    /// push it out, and trickling bytes buys no connection its place. Other paths (a browser's `/favicon.ico`) get a 404, and a
    /// callback with another `state` (or none) gets an error page: the wait goes on
    /// through both. Only the callback with this login's `state` ends it.
    pub(crate) fn wait(&self, state: &str, deadline: Instant) -> Result<Redirect, Error> {
        let mut open: Vec<Pending> = Vec::new();
        loop {
            // Bounded, so that a flood of connections cannot keep the wait from reading the
            // open ones and from seeing its deadline.
            for _ in 0..ACCEPTS_PER_PASS {
                match self.listener.accept() {
                    Ok((stream, _)) => {
                        if stream.set_nonblocking(true).is_err() {
                            continue;
                        }
                        let mut new = Pending {
                            stream,
                            head: Vec::new(),
                        };
                        // Read at once: a browser sends its request as it connects, so a
                        // flood of connections that never speak cannot push it out
                        // before it has been read.
                        match new.read_more() {
                            Progress::Gone => continue,
                            Progress::Complete => {
                                if let Some(result) = new.answer(state, deadline) {
                                    return result;
                                }
                                continue;
                            }
                            Progress::Waiting => {}
                        }
                        // `open` is in the order the connections were opened.
                        if open.len() >= MAX_CONNECTIONS {
                            open.remove(0);
                        }
                        open.push(new);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionAborted
                                | std::io::ErrorKind::ConnectionReset
                                | std::io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => {
                        return Err(Error::LoginAborted {
                            reason: format!("the loopback listener failed: {e}"),
                        });
                    }
                }
            }
            let mut i = 0;
            while i < open.len() {
                match open[i].read_more() {
                    Progress::Waiting => i += 1,
                    Progress::Gone => {
                        open.remove(i);
                    }
                    Progress::Complete => {
                        let done = open.remove(i);
                        if let Some(result) = done.answer(state, deadline) {
                            return result;
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::LoginExpired {
                    what: "the browser did not come back to the loopback redirect before the login's deadline".to_owned(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// How many connections are read at once; a new one beyond this drops the one opened
/// longest ago.
const MAX_CONNECTIONS: usize = 128;
/// How many connections are accepted before the open ones are all read again: a quarter of
/// [`MAX_CONNECTIONS`], so that a connection is read at least four times (each pass also
/// reads it as it is accepted) before a flood can drop it.
const ACCEPTS_PER_PASS: usize = 32;

/// The most of a request head read: a redirect with a code is well under 4 KiB.
const MAX_HEAD: usize = 16 * 1024;

/// A connection whose request head is still coming in.
struct Pending {
    stream: TcpStream,
    head: Vec<u8>,
}

enum Progress {
    Waiting,
    /// The head is complete (or at its limit): answer it.
    Complete,
    /// Closed or failed before a full head: nothing to answer.
    Gone,
}

impl Pending {
    /// Reads what has arrived, without blocking.
    fn read_more(&mut self) -> Progress {
        let mut buf = [0u8; 2048];
        loop {
            if self.head.windows(4).any(|w| w == b"\r\n\r\n") || self.head.len() >= MAX_HEAD {
                return Progress::Complete;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Progress::Gone,
                Ok(n) => self.head.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Progress::Waiting,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Progress::Gone,
            }
        }
    }

    /// Answers the request; `Some` when it was the callback with this login's `state`.
    fn answer(mut self, state: &str, deadline: Instant) -> Option<Result<Redirect, Error>> {
        // The answer is a few hundred bytes, but a peer that reads nothing must not block
        // the wait either.
        let _ = self.stream.set_nonblocking(false);
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = self.stream.set_write_timeout(Some(
            left.clamp(Duration::from_millis(10), Duration::from_secs(1)),
        ));
        let stream = &mut self.stream;
        let Some(target) = request_target(&self.head) else {
            respond(stream, "400 Bad Request", "Bad request.");
            return None;
        };
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        if path != CALLBACK_PATH {
            respond(stream, "404 Not Found", "Not found.");
            return None;
        }
        let result = redirect_from_query(query, state);
        match &result {
            Ok(Redirect::Code(_)) => respond(
                stream,
                "200 OK",
                "Signed in. You can close this tab and return to the terminal.",
            ),
            Ok(Redirect::Error { .. }) => respond(
                stream,
                "200 OK",
                "The sign-in was not completed. You can close this tab; the terminal says more.",
            ),
            Err(Error::LoginStateMismatch) => {
                // Any web page can send this request to a loopback port: it must not end
                // the login the user is in the middle of.
                respond(
                    stream,
                    "400 Bad Request",
                    "This redirect does not belong to the sign-in in progress. Nothing was done.",
                );
                return None;
            }
            Err(_) => respond(
                stream,
                "400 Bad Request",
                "The sign-in did not return a code. The terminal says more.",
            ),
        }
        Some(result)
    }
}

/// The request target of a `GET`, from its request line.
fn request_target(head: &[u8]) -> Option<String> {
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

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

    /// Runs `f` on a thread and fails the test if it takes longer than `limit`: a test of
    /// a hang must not hang.
    fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(limit)
            .unwrap_or_else(|_| panic!("still waiting after {limit:?}"))
    }

    /// Any web page can send a request to a loopback port: a callback with another `state`
    /// (or none) gets an error page, and only the one with this login's `state` ends the wait.
    #[test]
    fn a_wrong_state_gets_an_error_page_and_the_wait_goes_on_to_the_right_one() {
        within(Duration::from_secs(30), || {
            let lb = Loopback::bind(0).unwrap();
            let forged = in_thread("/callback?code=c-forged&state=other", lb.port);
            let stateless = in_thread("/callback?code=c-forged", lb.port);
            let port = lb.port;
            let real = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(500));
                get(port, "/callback?code=c-1&state=s1")
            });
            let r = lb.wait("s1", Instant::now() + Duration::from_secs(10));
            assert!(
                matches!(r, Ok(Redirect::Code(ref c)) if c == "c-1"),
                "{r:?}"
            );
            let (forged, stateless) = (forged.join().unwrap(), stateless.join().unwrap());
            assert!(forged.starts_with("HTTP/1.1 400"), "{forged}");
            assert!(forged.contains("does not belong"), "{forged}");
            assert!(stateless.starts_with("HTTP/1.1 400"), "{stateless}");
            assert!(real.join().unwrap().contains("Signed in"));
        });
    }

    /// A local client that sends one byte every 300 ms, until told to stop.
    fn slowloris(port: u16) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let t = std::thread::spawn(move || {
            for b in b"GET /callback?state=s1".iter().cycle() {
                if stop2.load(Ordering::SeqCst) || s.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        (stop, t)
    }

    /// The deadline bounds the wait whatever a connected client does.
    #[test]
    fn a_client_trickling_bytes_neither_holds_back_the_redirect_nor_outlives_the_deadline() {
        let lb = Loopback::bind(0).unwrap();
        let (stop, trickler) = slowloris(lb.port);
        let stop2 = stop.clone();
        let _stop_anyway = StopOnDrop(stop2);
        within(Duration::from_secs(30), move || {
            std::thread::sleep(Duration::from_millis(100));
            let real = in_thread("/callback?code=c-1&state=s1", lb.port);
            let started = Instant::now();
            let r = lb.wait("s1", Instant::now() + Duration::from_secs(20));
            let took = started.elapsed();
            assert!(
                matches!(r, Ok(Redirect::Code(ref c)) if c == "c-1"),
                "{r:?}"
            );
            assert!(
                took < Duration::from_secs(5),
                "the redirect waited {took:?}"
            );
            assert!(real.join().unwrap().contains("Signed in"));

            let started = Instant::now();
            let r = lb.wait("s1", Instant::now() + Duration::from_secs(1));
            let took = started.elapsed();
            stop.store(true, Ordering::SeqCst);
            trickler.join().unwrap();
            assert!(matches!(r, Err(Error::LoginExpired { .. })), "{r:?}");
            assert!(took < Duration::from_secs(4), "a 1 s wait took {took:?}");
        });
    }

    struct StopOnDrop(Arc<AtomicBool>);

    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// Connections that never send anything cannot crowd out the browser: the oldest goes.
    #[test]
    fn more_idle_connections_than_the_limit_do_not_keep_the_redirect_out() {
        within(Duration::from_secs(30), || {
            let lb = Loopback::bind(0).unwrap();
            let port = lb.port;
            // Opened while the listener runs: more than the kernel's backlog would hold.
            let client = std::thread::spawn(move || {
                let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS * 2)
                    .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
                    .collect();
                let answer = in_thread("/callback?code=c-1&state=s1", port)
                    .join()
                    .unwrap();
                drop(idle);
                answer
            });
            let started = Instant::now();
            let r = lb.wait("s1", Instant::now() + Duration::from_secs(20));
            let took = started.elapsed();
            assert!(
                matches!(r, Ok(Redirect::Code(ref c)) if c == "c-1"),
                "{r:?}"
            );
            assert!(
                took < Duration::from_secs(5),
                "the redirect waited {took:?}"
            );
            assert!(client.join().unwrap().contains("Signed in"));
        });
    }

    /// A local process that keeps opening idle connections cannot evict the browser's
    /// connection: each is read as it is accepted. Here
    /// the browser's request is followed, before the listener looks, by more silent
    /// connections than it keeps open.
    #[test]
    fn a_flood_of_idle_connections_does_not_keep_the_redirect_out() {
        within(Duration::from_secs(60), || {
            let lb = Loopback::bind(0).unwrap();
            let port = lb.port;
            let (sent, was_sent) = std::sync::mpsc::channel();
            let real = std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                write!(
                    s,
                    "GET /callback?code=real-code&state=s1 HTTP/1.1\r\nHost: x\r\n\r\n"
                )
                .unwrap();
                sent.send(()).unwrap();
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                out
            });
            was_sent.recv().unwrap();
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stop2 = std::sync::Arc::clone(&stop);
            let flood = std::thread::spawn(move || {
                let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                let mut open = Vec::new();
                while open.len() < MAX_CONNECTIONS * 3
                    && !stop2.load(std::sync::atomic::Ordering::SeqCst)
                {
                    // Bounded: once the wait is over nobody accepts, and the backlog fills.
                    if let Ok(c) = TcpStream::connect_timeout(&address, Duration::from_millis(100))
                    {
                        open.push(c);
                    }
                }
                open.len()
            });
            let r = lb.wait("s1", Instant::now() + Duration::from_secs(3));
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            flood.join().unwrap();
            assert!(
                matches!(r, Ok(Redirect::Code(ref c)) if c == "real-code"),
                "{r:?}"
            );
            assert!(real.join().unwrap().contains("Signed in"));
        });
    }

    /// Connections that trickle a byte now and then hold no place against the browser's:
    /// a browser connection silent for a moment after it connects (a preconnected socket, a
    /// slow first write) still gets in, is read, and ends the wait.
    #[test]
    fn trickling_connections_that_fill_every_place_do_not_keep_a_silent_browser_out() {
        let lb = Loopback::bind(0).unwrap();
        let port = lb.port;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let attacker = std::thread::spawn(move || {
            let mut conns: Vec<TcpStream> = (0..MAX_CONNECTIONS)
                .map(|_| {
                    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    s.write_all(b"G").unwrap();
                    s
                })
                .collect();
            while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
                for c in &mut conns {
                    let _ = c.write_all(b"E");
                }
            }
        });
        let browser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            let _ = write!(
                s,
                "GET /callback?code=real-code&state=s1 HTTP/1.1\r\nHost: x\r\n\r\n"
            );
        });
        let r = lb.wait("s1", Instant::now() + Duration::from_secs(3));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        attacker.join().unwrap();
        browser.join().unwrap();
        assert!(
            matches!(r, Ok(Redirect::Code(ref c)) if c == "real-code"),
            "{r:?}"
        );
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
