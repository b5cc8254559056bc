//! One connection to a Redis (or Valkey) server, speaking RESP2 over TCP: enough for the
//! handful of commands the store sends (`AUTH`, `SELECT`, `HGET`, `SET … NX PX`, `EVAL`,
//! `INFO`). Every command has one deadline, checked before every socket call (connect, TLS
//! handshake, write, read): a server that stops answering, or trickles its reply a byte at a
//! time, is an error once it has passed, never a hang.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::url::RedisUrl;
use crate::basics::secret::Secret;

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A missing key or value (`$-1`, `*-1`).
    Nil,
    /// An integer (`:`).
    Int(i64),
    /// A simple (`+`) or bulk (`$`) string.
    Bytes(Vec<u8>),
    /// An array (`*`).
    Array(Vec<Value>),
}

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// The server could not be reached, stopped answering (a timeout, a reset), or answered
    /// that it cannot serve the request now (`LOADING`, `BUSY`, `READONLY`, `MASTERDOWN`…):
    /// the connection is dropped; trying again later may work.
    Unreachable(String),
    /// The server answered with an error (`WRONGPASS`, `NOPERM`, a script error…).
    Refused(String),
}

/// Replies larger than this are refused (a session is a few KiB).
const MAX_BULK: usize = 16 * 1024 * 1024;

/// Arrays longer than this are refused: the store's replies have a handful of items.
const MAX_ITEMS: usize = 1024;

/// Arrays nested deeper than this are refused: the store's replies nest at most twice.
const MAX_DEPTH: usize = 8;

/// A TCP stream whose reads and writes share one deadline (the command's): the socket's
/// timeout is set to what is left of it before each call, so a peer that sends a byte now
/// and then cannot stretch a command past it.
struct Timed {
    tcp: TcpStream,
    deadline: Instant,
}

impl Timed {
    fn left(&self) -> std::io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the command's deadline passed",
            ));
        }
        Ok(left)
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.tcp.set_read_timeout(Some(self.left()?))?;
        self.tcp.read(buf)
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tcp.set_write_timeout(Some(self.left()?))?;
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

/// The connection's byte stream: TCP, or TLS over TCP (`rediss://`).
enum Stream {
    Plain(Timed),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, Timed>>),
}

impl Stream {
    fn set_deadline(&mut self, deadline: Instant) {
        match self {
            Stream::Plain(s) => s.deadline = deadline,
            Stream::Tls(s) => s.sock.deadline = deadline,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

pub(crate) struct Conn {
    reader: BufReader<Stream>,
    /// Scrubbed from every error reply.
    password: Option<Secret>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

impl Conn {
    /// Connects, authenticates (a password never reaches an error message: of the server's
    /// reply to `AUTH` only its code word is kept) and selects the database.
    pub(crate) fn open(
        url: &RedisUrl,
        tls: Option<&Arc<rustls::ClientConfig>>,
        deadline: Instant,
    ) -> Result<Conn, Failure> {
        let addrs = resolve(&url.host, url.port, deadline)?;
        let mut last = None;
        let mut stream = None;
        for addr in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match TcpStream::connect_timeout(&addr, left) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = stream.ok_or_else(|| {
            Failure::Unreachable(match last {
                Some(e) => format!("cannot connect: {e}"),
                None if Instant::now() >= deadline => "cannot connect in time".to_owned(),
                None => "the host name resolves to no address".to_owned(),
            })
        })?;
        let _ = stream.set_nodelay(true);
        let stream = Timed {
            tcp: stream,
            deadline,
        };
        let stream = match tls {
            None => Stream::Plain(stream),
            Some(config) => {
                let name =
                    rustls::pki_types::ServerName::try_from(url.host.clone()).map_err(|e| {
                        Failure::Refused(format!("{} is not a TLS server name ({e})", url.host))
                    })?;
                let session = rustls::ClientConnection::new(Arc::clone(config), name)
                    .map_err(|e| Failure::Refused(format!("TLS: {e}")))?;
                let mut tls = rustls::StreamOwned::new(session, stream);
                // The handshake now, so that a certificate the roots do not trust is said as
                // such rather than as a failed command.
                while tls.conn.is_handshaking() {
                    tls.conn
                        .complete_io(&mut tls.sock)
                        .map_err(|e| tls_failure(&e))?;
                }
                Stream::Tls(Box::new(tls))
            }
        };
        let mut conn = Conn {
            reader: BufReader::new(stream),
            password: url.password().map(Secret::new),
        };
        if let Some(password) = url.password() {
            let reply = match &url.user {
                Some(user) => conn.call(&[b"AUTH", user.as_bytes(), password.as_bytes()], deadline),
                None => conn.call(&[b"AUTH", password.as_bytes()], deadline),
            };
            reply.map_err(|f| match f {
                // Only the error's code word: a server that does not know AUTH (renamed, a
                // proxy, a Redis-like) answers with the arguments it was given, the password
                // among them.
                Failure::Refused(reason) => Failure::Refused(format!(
                    "authentication refused ({}; if it is ERR, AUTH may be renamed or unsupported by the server or a proxy)",
                    code_word(&reason)
                )),
                other => other,
            })?;
        }
        if url.db != 0 {
            conn.call(&[b"SELECT", url.db.to_string().as_bytes()], deadline)?;
        }
        Ok(conn)
    }

    /// Sends one command and reads its reply, by `deadline`.
    pub(crate) fn call(&mut self, args: &[&[u8]], deadline: Instant) -> Result<Value, Failure> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        let stream = self.reader.get_mut();
        stream.set_deadline(deadline);
        stream.write_all(&out).map_err(io_failure)?;
        stream.flush().map_err(io_failure)?;
        read_value(&mut self.reader, 0)?.map_err(|f| match f {
            Failure::Refused(reason) => Failure::Refused(scrub(&reason, self.password.as_ref())),
            Failure::Unreachable(reason) => {
                Failure::Unreachable(scrub(&reason, self.password.as_ref()))
            }
        })
    }
}

/// The first word of an error reply (`WRONGPASS`, `NOPERM`, `ERR`…), if it is one: capitals
/// only, so that nothing the server echoes can pass for it.
fn code_word(reason: &str) -> &str {
    match reason.split_whitespace().next() {
        Some(word) if !word.is_empty() && word.bytes().all(|b| b.is_ascii_uppercase()) => word,
        _ => "an error",
    }
}

/// An error reply as it may be shown: without what Redis echoes of the command it refused
/// (`unknown command 'X', with args beginning with: …` quotes its arguments, a password or
/// a session among them), and without the password wherever else it might appear.
fn scrub(reason: &str, password: Option<&Secret>) -> String {
    let mut shown = match reason.find(", with args beginning with:") {
        Some(at) => format!("{} (its arguments not shown)", &reason[..at]),
        None => reason.to_owned(),
    };
    if let Some(password) = password.map(Secret::secret).filter(|p| !p.is_empty()) {
        shown = shown.replace(password, "[password]");
    }
    shown
}

/// The addresses of `host`, by `deadline`. The system's resolver has timeouts of its own
/// (`/etc/resolv.conf`), often longer: a name is resolved on a thread of its own, given up on
/// (the thread ends when the resolver does) once the deadline has passed. An IP address is
/// not resolved.
fn resolve(host: &str, port: u16, deadline: Instant) -> Result<Vec<SocketAddr>, Failure> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_owned();
    std::thread::Builder::new()
        .name("credlock-redis-resolve".to_owned())
        .spawn(move || {
            let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Vec::from_iter));
        })
        .map_err(|e| Failure::Unreachable(format!("cannot resolve {host}: {e}")))?;
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(Failure::Unreachable(format!("cannot resolve {host}: {e}"))),
        Err(_) => Err(Failure::Unreachable(format!(
            "cannot resolve {host} in time"
        ))),
    }
}

/// A failed TLS handshake: a certificate not trusted is a configuration error; anything else
/// (a reset, a timeout) may pass.
fn tls_failure(e: &std::io::Error) -> Failure {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => Failure::Refused(format!(
            "TLS: {tls} (the server's certificate is checked against the roots the HTTP transport trusts: the platform's, or SSL_CERT_FILE / SSL_CERT_DIR)"
        )),
        None => io_failure(std::io::Error::new(e.kind(), e.to_string())),
    }
}

fn io_failure(e: std::io::Error) -> Failure {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            Failure::Unreachable("the server did not answer in time".to_owned())
        }
        _ => Failure::Unreachable(e.to_string()),
    }
}

/// The error replies of a server that cannot serve the request now but will: loading its
/// data after a restart, busy with a script, a replica (read-only, or cut off from its
/// primary), a failover or resharding under way, too few replicas to accept a write.
const TRANSIENT: [&str; 7] = [
    "LOADING",
    "BUSY",
    "READONLY",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "NOREPLICAS",
];

/// An error reply: transient (try again later) for the codes of [`TRANSIENT`], else a
/// refusal (configuration: a password, an ACL, a script).
fn error_reply(text: String) -> Failure {
    if TRANSIENT.contains(&code_word(&text)) {
        Failure::Unreachable(format!("the server cannot serve the request now: {text}"))
    } else {
        Failure::Refused(text)
    }
}

fn protocol(what: &str) -> Failure {
    Failure::Unreachable(format!("the server's reply is not RESP: {what}"))
}

/// Reads one reply, `depth` arrays deep; the outer `Err` is a broken connection, the inner one
/// an error reply. A reply credlock would not read whole (too long, too deep) breaks the
/// connection rather than leaving the rest to be read as the next command's reply.
fn read_value(reader: &mut impl BufRead, depth: usize) -> Result<Result<Value, Failure>, Failure> {
    let line = read_line(reader)?;
    let (kind, rest) = line
        .split_first()
        .ok_or_else(|| protocol("an empty line"))?;
    let text = || String::from_utf8_lossy(rest).into_owned();
    let number = || -> Result<i64, Failure> {
        std::str::from_utf8(rest)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| protocol("a bad length or integer"))
    };
    Ok(match kind {
        b'+' => Ok(Value::Bytes(rest.to_vec())),
        b'-' => Err(error_reply(text())),
        b':' => Ok(Value::Int(number()?)),
        b'$' => {
            let len = number()?;
            if len < 0 {
                return Ok(Ok(Value::Nil));
            }
            let len = usize::try_from(len).map_err(|_| protocol("a bad length"))?;
            if len > MAX_BULK {
                return Err(protocol("a reply too large"));
            }
            let mut buf = vec![0; len + 2];
            reader.read_exact(&mut buf).map_err(io_failure)?;
            buf.truncate(len);
            Ok(Value::Bytes(buf))
        }
        b'*' => {
            let len = number()?;
            if len < 0 {
                return Ok(Ok(Value::Nil));
            }
            let len = usize::try_from(len).map_err(|_| protocol("a bad length"))?;
            if len > MAX_ITEMS {
                return Err(protocol("an array with too many items"));
            }
            if depth >= MAX_DEPTH {
                return Err(protocol("arrays nested too deep"));
            }
            let mut items = Vec::with_capacity(len);
            let mut failed = None;
            for _ in 0..len {
                // An error inside an array (a script's multi-reply) fails the whole reply,
                // once the rest is read: left unread, it would be taken for the answer to the
                // next command on this connection.
                match read_value(reader, depth + 1)? {
                    Ok(item) => items.push(item),
                    Err(f) => {
                        failed.get_or_insert(f);
                    }
                }
            }
            match failed {
                Some(f) => Err(f),
                None => Ok(Value::Array(items)),
            }
        }
        _ => return Err(protocol("an unknown reply type")),
    })
}

/// Reads one reply from `bytes`, as from a connection (for the fuzz target, through
/// `credlock::internal`).
pub fn read_reply(bytes: &[u8]) -> Result<Result<Value, Failure>, Failure> {
    read_value(&mut std::io::Cursor::new(bytes), 0)
}

fn read_line(reader: &mut impl BufRead) -> Result<Vec<u8>, Failure> {
    let mut line = Vec::new();
    let n = reader
        .take(64 * 1024)
        .read_until(b'\n', &mut line)
        .map_err(io_failure)?;
    if n == 0 {
        return Err(Failure::Unreachable(
            "the server closed the connection".to_owned(),
        ));
    }
    if !line.ends_with(b"\r\n") {
        return Err(protocol("a line without its end"));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Result<Value, Failure>, Failure> {
        read_value(&mut std::io::Cursor::new(bytes.to_vec()), 0)
    }

    #[test]
    fn replies_of_every_kind_parse() {
        assert_eq!(
            parse(b"+OK\r\n").unwrap().unwrap(),
            Value::Bytes(b"OK".to_vec())
        );
        assert_eq!(parse(b":-1\r\n").unwrap().unwrap(), Value::Int(-1));
        assert_eq!(parse(b"$-1\r\n").unwrap().unwrap(), Value::Nil);
        assert_eq!(
            parse(b"$4\r\na\r\nb\r\n").unwrap().unwrap(),
            Value::Bytes(b"a\r\nb".to_vec())
        );
        assert_eq!(
            parse(b"*2\r\n:1\r\n$1\r\nx\r\n").unwrap().unwrap(),
            Value::Array(vec![Value::Int(1), Value::Bytes(b"x".to_vec())])
        );
        assert!(matches!(parse(b"-NOAUTH x\r\n"), Ok(Err(Failure::Refused(r))) if r == "NOAUTH x"));
        for code in TRANSIENT {
            let reply = format!("-{code} try later\r\n");
            assert!(
                matches!(parse(reply.as_bytes()), Ok(Err(Failure::Unreachable(r))) if r.contains(code)),
                "{code}"
            );
        }
    }

    #[test]
    fn an_array_longer_than_the_limit_is_refused_rather_than_cut_short() {
        // Cut short, the rest of the array would be read as the replies to the next commands.
        let mut reply = format!("*{}\r\n", MAX_ITEMS + 1).into_bytes();
        for _ in 0..=MAX_ITEMS {
            reply.extend_from_slice(b":1\r\n");
        }
        assert!(matches!(parse(&reply), Err(Failure::Unreachable(m)) if m.contains("too many")));
        let mut fits = format!("*{MAX_ITEMS}\r\n").into_bytes();
        for _ in 0..MAX_ITEMS {
            fits.extend_from_slice(b":1\r\n");
        }
        assert!(matches!(parse(&fits), Ok(Ok(Value::Array(items))) if items.len() == MAX_ITEMS));
    }

    #[test]
    fn replies_nested_deeper_than_the_limit_are_refused_without_exhausting_the_stack() {
        // A hostile or broken server (or whoever sits between on plain `redis://`) could
        // otherwise nest arrays until the stack overflows and the process aborts.
        let mut reply = b"*1\r\n".repeat(200_000);
        reply.extend_from_slice(b":1\r\n");
        assert!(matches!(parse(&reply), Err(Failure::Unreachable(m)) if m.contains("nested")));
        let mut fits = b"*1\r\n".repeat(MAX_DEPTH);
        fits.extend_from_slice(b":1\r\n");
        assert!(matches!(parse(&fits), Ok(Ok(Value::Array(_)))));
    }

    #[test]
    fn an_error_reply_is_shown_without_the_arguments_it_echoes_or_the_password() {
        let pw = Secret::new("hunter2-SECRET");
        let echoed = "ERR unknown command 'AUTH', with args beginning with: 'hunter2-SECRET' ";
        assert_eq!(
            scrub(echoed, Some(&pw)),
            "ERR unknown command 'AUTH' (its arguments not shown)"
        );
        assert_eq!(
            scrub("ERR x hunter2-SECRET y", Some(&pw)),
            "ERR x [password] y"
        );
        assert_eq!(code_word(echoed), "ERR");
        assert_eq!(code_word("hunter2-SECRET is wrong"), "an error");
    }

    #[test]
    fn an_error_inside_an_array_fails_the_reply_only_once_the_whole_array_is_read() {
        // Left unread, the rest of the array would be taken for the next command's reply on
        // a connection that goes back to the pool.
        let bytes = b"*3\r\n-ERR first\r\n$1\r\nx\r\n-ERR second\r\n:7\r\n";
        let mut reader = std::io::Cursor::new(bytes.to_vec());
        assert!(
            matches!(read_value(&mut reader, 0), Ok(Err(Failure::Refused(r))) if r == "ERR first")
        );
        assert_eq!(read_value(&mut reader, 0).unwrap().unwrap(), Value::Int(7));
    }

    #[test]
    fn a_cut_or_garbled_reply_is_a_broken_connection() {
        assert!(matches!(parse(b"$5\r\nab"), Err(Failure::Unreachable(_))));
        assert!(matches!(parse(b"?x\r\n"), Err(Failure::Unreachable(_))));
        assert!(matches!(parse(b""), Err(Failure::Unreachable(_))));
    }
}
