//! A real `redis-server` per test: on a free loopback port, in its own temp directory, with
//! the append-only file fsynced on every write (so a restart brings the sessions back), and
//! killed by its PID when dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub password: Option<String>,
    /// Whether writes survive a restart (AOF, fsynced always).
    pub persistent: bool,
    /// A TLS port beside the plain one: (port, certificate, key) files.
    pub tls: Option<(u16, std::path::PathBuf, std::path::PathBuf)>,
    /// More arguments for `redis-server`.
    pub args: Vec<String>,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("addr")
        .port()
}

impl RedisServer {
    /// Starts a server, with `password` required if given. Fails loudly if `redis-server` is
    /// not installed (`apt-get install redis-server`; `.ci/run` does it).
    pub fn start(password: Option<&str>) -> RedisServer {
        let mut server = RedisServer {
            dir: tempfile::tempdir().expect("tempdir"),
            port: free_port(),
            password: password.map(str::to_owned),
            persistent: true,
            tls: None,
            args: Vec::new(),
            child: None,
        };
        server.restart();
        server
    }

    /// Starts a server without a password, with `args` added to its command line (e.g.
    /// `--rename-command AUTH XAUTH`).
    pub fn start_with_args(args: &[&str]) -> RedisServer {
        let mut server = RedisServer {
            dir: tempfile::tempdir().expect("tempdir"),
            port: free_port(),
            password: None,
            persistent: true,
            tls: None,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
        };
        server.restart();
        server
    }

    /// Starts a server that also listens for TLS (`rediss://`) with the certificate and key
    /// in the PEM files given, clients not authenticated; the plain port stays for the test.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> RedisServer {
        let mut server = RedisServer {
            dir: tempfile::tempdir().expect("tempdir"),
            port: free_port(),
            password: None,
            persistent: true,
            tls: Some((free_port(), cert.to_path_buf(), key.to_path_buf())),
            args: Vec::new(),
            child: None,
        };
        server.restart();
        server
    }

    /// Starts a server that keeps nothing across a restart (no AOF, no RDB).
    pub fn start_without_persistence() -> RedisServer {
        let mut server = RedisServer {
            dir: tempfile::tempdir().expect("tempdir"),
            port: free_port(),
            password: None,
            persistent: false,
            tls: None,
            args: Vec::new(),
            child: None,
        };
        server.restart();
        server
    }

    /// Starts the server again on the same port and directory (its AOF brings the data back).
    pub fn restart(&mut self) {
        self.stop();
        let mut c = Command::new("redis-server");
        c.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--appendonly",
                if self.persistent { "yes" } else { "no" },
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(pw) = &self.password {
            c.args(["--requirepass", pw]);
        }
        if let Some((port, cert, key)) = &self.tls {
            c.args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key);
        }
        c.args(&self.args);
        self.child = Some(c.spawn().expect(
            "redis-server runs (install it: apt-get install -y redis-server; .ci/run does)",
        ));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(reply) = self.try_cmd(&["PING"]) {
                // Loading the AOF answers -LOADING: wait for PONG.
                if reply == "PONG" {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server by its PID (as a crash would) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The URL of the session `key`, with the password if there is one.
    pub fn url(&self, key: &str) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}/0?key={key}", self.port),
            None => format!("redis://127.0.0.1:{}/0?key={key}", self.port),
        }
    }

    /// Runs one command as the test (another client), returning its reply as text (bulk
    /// strings as they are, integers in decimal, nil as `(nil)`, errors as `ERR …`).
    pub fn cmd(&self, args: &[&str]) -> String {
        self.try_cmd(args).expect("a Redis command")
    }

    fn try_cmd(&self, args: &[&str]) -> std::io::Result<String> {
        command(self.port, self.password.as_deref(), args)
    }

    /// Another client of the server on `port`, for a test's callback that cannot borrow the
    /// server.
    pub fn client(port: u16, password: Option<&str>) -> impl Fn(&[&str]) -> String {
        let password = password.map(str::to_owned);
        move |args| command(port, password.as_deref(), args).expect("a Redis command")
    }
}

pub fn command(port: u16, password: Option<&str>, args: &[&str]) -> std::io::Result<String> {
    {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut out = Vec::new();
        let mut send = |args: &[&str]| {
            out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in args {
                out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
            }
        };
        if let Some(pw) = password {
            send(&["AUTH", pw]);
        }
        send(args);
        s.write_all(&out)?;
        let mut r = BufReader::new(s);
        if password.is_some() {
            read_reply(&mut r)?;
        }
        read_reply(&mut r)
    }
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end().to_owned();
    let (kind, rest) = line.split_at(1.min(line.len()));
    Ok(match kind {
        "$" if rest == "-1" => "(nil)".to_owned(),
        "$" => {
            let n: usize = rest.parse().map_err(std::io::Error::other)?;
            let mut buf = vec![0; n + 2];
            r.read_exact(&mut buf)?;
            String::from_utf8_lossy(&buf[..n]).into_owned()
        }
        "*" => {
            let n: i64 = rest.parse().map_err(std::io::Error::other)?;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(read_reply(r)?);
            }
            items.join("\n")
        }
        _ => rest.to_owned(),
    })
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP proxy in front of a Redis server that, once a client has taken a guard through it
/// (`SET …:guard … NX`), holds every answer from the server for `stall` (on every connection
/// through it): Redis as seen by one instance, stalled past the guard's time-to-live.
pub struct StallingProxy {
    pub port: u16,
}

impl StallingProxy {
    pub fn start(upstream: u16, stall: Duration) -> StallingProxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // When the stall ends, in ms since `epoch`; 0: no stall yet.
        let until = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (mut c_in, mut s_out) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let (mut s_in, mut c_out) = (server, client);
                let up = Arc::clone(&until);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = std::io::Read::read(&mut c_in, &mut buf) {
                        if n == 0 || s_out.write_all(&buf[..n]).is_err() {
                            return;
                        }
                        let chunk = &buf[..n];
                        let takes_guard = chunk.windows(6).any(|w| w == b":guard")
                            && chunk.windows(2).any(|w| w == b"NX");
                        if takes_guard && up.load(Ordering::SeqCst) == 0 {
                            // The answer to this SET still passes; what follows waits.
                            let from = epoch.elapsed() + Duration::from_millis(50);
                            up.store((from + stall).as_millis() as u64, Ordering::SeqCst);
                        }
                    }
                });
                let down = Arc::clone(&until);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = std::io::Read::read(&mut s_in, &mut buf) {
                        if n == 0 {
                            return;
                        }
                        let end = down.load(Ordering::SeqCst);
                        let now = epoch.elapsed().as_millis() as u64;
                        // Held only once the guard's own answer has gone by.
                        let is_guard_answer = &buf[..n] == b"+OK\r\n";
                        if end > now && !is_guard_answer {
                            std::thread::sleep(Duration::from_millis(end - now));
                        }
                        if c_out.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        StallingProxy { port }
    }
}

/// A TCP proxy in front of a Redis server that forwards the first `SET …:guard … NX` it sees,
/// then drops the server's answer to it and closes that client's connection: the guard is
/// taken, and its taker never hears so (a proxy or network that fails at the worst moment).
pub struct ReplyDroppingProxy {
    pub port: u16,
}

impl ReplyDroppingProxy {
    pub fn start(upstream: u16) -> ReplyDroppingProxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU8, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // 0: no SET NX seen; 1: its answer is the next to drop; 2: dropped.
        let state = Arc::new(AtomicU8::new(0));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (mut c_in, mut s_out) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let (mut s_in, mut c_out) = (server, client);
                let up = Arc::clone(&state);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = std::io::Read::read(&mut c_in, &mut buf) {
                        if n == 0 {
                            return;
                        }
                        let chunk = &buf[..n];
                        let takes_guard = chunk.windows(6).any(|w| w == b":guard")
                            && chunk.windows(2).any(|w| w == b"NX");
                        if takes_guard {
                            let _ = up.compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst);
                        }
                        if s_out.write_all(chunk).is_err() {
                            return;
                        }
                    }
                });
                let down = Arc::clone(&state);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = std::io::Read::read(&mut s_in, &mut buf) {
                        if n == 0 {
                            return;
                        }
                        if down.load(Ordering::SeqCst) == 1 && &buf[..n] == b"+OK\r\n" {
                            down.store(2, Ordering::SeqCst);
                            let _ = c_out.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        if c_out.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        ReplyDroppingProxy { port }
    }
}
