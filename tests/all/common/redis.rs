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
