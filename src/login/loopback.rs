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

    /// Waits until `deadline` for the redirect to [`CALLBACK_PATH`] whose `state` is
    /// `state`.
    ///
    /// Any local process (and any web page open in the user's browser) can connect to the
    /// port, so no connection may hold the wait up: connections are read without blocking,
    /// side by side, each first as it is accepted, and none outlives `deadline`; past
    /// [`MAX_CONNECTIONS`] the one idle longest makes room (see [`evictable`]), so a client
    /// that trickles bytes or floods the port with silent connections cannot keep the
    /// browser's redirect out. Other paths (a browser's `/favicon.ico`) get a 404, and a
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
                        let now = Instant::now();
                        let mut new = Pending {
                            stream,
                            head: Vec::new(),
                            opened: now,
                            last_bytes: None,
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
                        if open.len() >= MAX_CONNECTIONS {
                            match evictable(&open, &new, now) {
                                Some(i) => {
                                    open.remove(i);
                                }
                                // Every open connection is newer or busier than this one.
                                None => continue,
                            }
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

/// How many connections are read at once; a new one beyond this drops one that has been
/// idle (see [`evictable`]), or is itself dropped.
const MAX_CONNECTIONS: usize = 16;
/// How long a connection may stay silent before a new one may take its place.
const IDLE_GRACE: Duration = Duration::from_secs(1);
/// How many connections are accepted before the open ones are read again.
const ACCEPTS_PER_PASS: usize = 64;

/// Which open connection a new one may replace, if any: eviction goes by idleness, never by
/// arrival, so that a local process opening connections in a loop cannot push out the
/// browser's. A connection that has sent bytes is never dropped for one that has sent
/// none. Among those the new one may replace, the one idle longest goes if it has been idle
/// for [`IDLE_GRACE`]; a new connection that has sent bytes may also replace one that has
/// sent nothing at all, however young.
fn evictable(open: &[Pending], new: &Pending, now: Instant) -> Option<usize> {
    let replaceable = |p: &Pending| new.last_bytes.is_some() || p.last_bytes.is_none();
    let idle_for = |p: &Pending| now.saturating_duration_since(p.last_bytes.unwrap_or(p.opened));
    let longest_idle = |silent_only: bool| {
        open.iter()
            .enumerate()
            .filter(|(_, p)| replaceable(p) && (!silent_only || p.last_bytes.is_none()))
            .max_by_key(|(_, p)| idle_for(p))
    };
    match longest_idle(false) {
        Some((i, p)) if idle_for(p) >= IDLE_GRACE => Some(i),
        _ if new.last_bytes.is_some() => longest_idle(true).map(|(i, _)| i),
        _ => None,
    }
}
/// The most of a request head read: a redirect with a code is well under 4 KiB.
const MAX_HEAD: usize = 16 * 1024;

/// A connection whose request head is still coming in.
struct Pending {
    stream: TcpStream,
    head: Vec<u8>,
    opened: Instant,
    /// When bytes last arrived; `None` while it has sent nothing.
    last_bytes: Option<Instant>,
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
                Ok(n) => {
                    self.head.extend_from_slice(&buf[..n]);
                    self.last_bytes = Some(Instant::now());
                }
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
        let result = super::paste::redirect_from_query(query, state);
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
            let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS * 2)
                .map(|_| TcpStream::connect(("127.0.0.1", lb.port)).unwrap())
                .collect();
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
            drop(idle);
        });
    }

    /// A local process that keeps opening idle connections cannot evict the browser's
    /// connection: each is read as it is accepted, and only a silent one is dropped. Here
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
            let flood: Vec<TcpStream> = (0..MAX_CONNECTIONS * 3)
                .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
                .collect();
            let r = lb.wait("s1", Instant::now() + Duration::from_secs(3));
            drop(flood);
            assert!(
                matches!(r, Ok(Redirect::Code(ref c)) if c == "real-code"),
                "{r:?}"
            );
            assert!(real.join().unwrap().contains("Signed in"));
        });
    }

    /// Eviction goes by idleness: a silent connection makes room for one that has sent
    /// bytes, young silent ones are not dropped for a new silent one, and one silent for
    /// longer than the grace period makes room for anyone.
    #[test]
    fn eviction_goes_by_idleness_and_never_drops_a_talker_for_a_silent_one() {
        let lb = Loopback::bind(0).unwrap();
        let now = Instant::now();
        let pending = |opened: Instant, last_bytes: Option<Instant>| Pending {
            stream: TcpStream::connect(("127.0.0.1", lb.port)).unwrap(),
            head: Vec::new(),
            opened,
            last_bytes,
        };
        let old = now - IDLE_GRACE * 2;
        let open = vec![
            pending(now, Some(now)),
            pending(now, None),
            pending(now, Some(now)),
        ];
        assert_eq!(evictable(&open, &pending(now, Some(now)), now), Some(1));
        assert_eq!(evictable(&open, &pending(now, None), now), None);
        let open = vec![
            pending(now, None),
            pending(old, Some(old)),
            pending(now, Some(now)),
        ];
        assert_eq!(evictable(&open, &pending(now, None), now), None);
        assert_eq!(evictable(&open, &pending(now, Some(now)), now), Some(1));
        let open = vec![pending(now, None), pending(old, None)];
        assert_eq!(evictable(&open, &pending(now, None), now), Some(1));
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
