//! For the login tests against node-oidc-provider: the server (killed by PID on drop), a
//! scripted browser that drives the provider's own pages with plain HTTP and a cookie jar,
//! and a loopback stub for what the provider cannot script.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The server process, killed by PID on drop.
pub struct Provider {
    child: Child,
    pub issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    pub fn start(extra: &[&str]) -> Provider {
        let (child, ready) = crate::common::start_oidc_server(extra);
        let issuer = ready["issuer"].as_str().expect("issuer").to_owned();
        Provider { child, issuer }
    }

    pub fn stats(&self) -> Value {
        let mut b = Browser::new();
        let page = b.get(&format!("{}/test/stats", self.issuer));
        serde_json::from_str(&page.body).expect("stats")
    }
}

/// One HTTP response as the scripted browser sees it.
#[derive(Debug)]
pub struct Page {
    pub url: String,
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

/// A scripted browser: no redirects followed by ureq, cookies kept by name.
pub struct Browser {
    agent: ureq::Agent,
    cookies: Vec<(String, String)>,
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into(),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn page(&mut self, url: &str, mut resp: ureq::http::Response<ureq::Body>) -> Page {
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap_or_default();
            let pair = v.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let expired = v.to_ascii_lowercase().contains("expires=thu, 01 jan 1970");
            self.cookies.retain(|(k, _)| k != name);
            if !value.is_empty() && !expired {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(|l| absolute(url, l));
        Page {
            url: url.to_owned(),
            status: resp.status().as_u16(),
            location,
            body: resp.body_mut().read_to_string().unwrap_or_default(),
        }
    }

    pub fn get(&mut self, url: &str) -> Page {
        let resp = self
            .agent
            .get(url)
            .header("Cookie", &self.cookie_header())
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        self.page(url, resp)
    }

    pub fn post(&mut self, url: &str, form: &[(String, String)]) -> Page {
        let body = form
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    credlock::internal::form_urlencode(k),
                    credlock::internal::form_urlencode(v)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        let resp = self
            .agent
            .post(url)
            .header("Cookie", &self.cookie_header())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(body)
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        self.page(url, resp)
    }

    /// Follows redirects on the provider; stops at one that leaves it (the loopback callback).
    pub fn follow(&mut self, mut page: Page, provider: &str) -> Page {
        for _ in 0..20 {
            match &page.location {
                Some(next)
                    if (300..400).contains(&page.status)
                        && next.starts_with(&format!("{provider}/")) =>
                {
                    let next = next.clone();
                    page = self.get(&next);
                }
                _ => return page,
            }
        }
        panic!("too many redirects")
    }

    /// Signs in and consents on the provider's pages, starting at `page`; submits each form
    /// (login: any user and password) until a page without a form or a redirect off the
    /// provider. `deny` aborts at the device confirmation page.
    pub fn sign_in(&mut self, page: Page, provider: &str, deny: bool) -> Page {
        let mut page = self.follow(page, provider);
        for _ in 0..10 {
            if page.location.is_some() {
                return page;
            }
            let Some((action, mut fields)) = form_of(&page.body) else {
                return page;
            };
            for (k, v) in &mut fields {
                match k.as_str() {
                    "login" => *v = "user-1".to_owned(),
                    "password" => *v = "any".to_owned(),
                    _ => {}
                }
            }
            let aborting = deny && page.body.contains("name=\"abort\"");
            if aborting {
                fields.push(("abort".to_owned(), "yes".to_owned()));
            }
            let action = absolute(&page.url, &action);
            let next = self.post(&action, &fields);
            page = self.follow(next, provider);
            if aborting {
                return page;
            }
        }
        panic!("the sign-in did not finish: {}", page.body)
    }

    /// Enters `user_code` on the device page, then signs in (or aborts).
    pub fn approve_device(&mut self, provider: &str, user_code: &str, deny: bool) -> Page {
        let page = self.get(&format!("{provider}/device"));
        let (action, mut fields) = form_of(&page.body).expect("the device page has a form");
        for (k, v) in &mut fields {
            if k == "user_code" {
                *v = user_code.to_owned();
            }
        }
        if !fields.iter().any(|(k, _)| k == "user_code") {
            fields.push(("user_code".to_owned(), user_code.to_owned()));
        }
        let next = self.post(&absolute(&page.url, &action), &fields);
        self.sign_in(next, provider, deny)
    }
}

/// `location` resolved against `base` (absolute, or absolute-path).
pub fn absolute(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_owned();
    }
    let after = base.find("://").map_or(0, |i| i + 3);
    let origin_end = base[after..].find('/').map_or(base.len(), |i| after + i);
    format!("{}{location}", &base[..origin_end])
}

/// The first form's action and its named inputs (value, or empty).
pub fn form_of(html: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = html.find("<form")?;
    let end = html[start..]
        .find("</form>")
        .map_or(html.len(), |e| start + e);
    let form = &html[start..end];
    let tag_end = form.find('>')?;
    let action = attr(&form[..tag_end], "action")?;
    let mut fields = Vec::new();
    let mut rest = form;
    while let Some(i) = rest.find("<input") {
        let tag = &rest[i..];
        let close = tag.find('>').unwrap_or(tag.len());
        let tag = &tag[..close];
        if let Some(name) = attr(tag, "name") {
            fields.push((name, attr(tag, "value").unwrap_or_default()));
        }
        rest = &rest[i + close..];
    }
    Some((action.replace("&amp;", "&"), fields))
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let i = tag.find(&key)? + key.len();
    let j = tag[i..].find('"')? + i;
    Some(tag[i..j].to_owned())
}

/// A `$BROWSER` script that writes the URL it is given to a file in `dir`.
pub fn recording_browser(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("browser.sh");
    let out = dir.join("browser-url.txt");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s' \"$1\" > '{}.tmp' && mv '{0}.tmp' '{0}'\n",
            out.display()
        ),
    )
    .expect("write browser script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (script, out)
}

/// Waits (bounded) for `path` to exist and returns its content.
pub fn wait_for_file(path: &Path, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.is_empty()
        {
            return s;
        }
        assert!(start.elapsed() < limit, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) for a line of `path` (a child's stderr) holding "enter the code X";
/// returns X.
pub fn user_code_in(path: &Path, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(code) = text
            .lines()
            .find_map(|l| l.split("enter the code ").nth(1))
            .map(|c| c.trim().to_owned())
        {
            return code;
        }
        assert!(
            start.elapsed() < limit,
            "no user code in {}: {text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What [`Stub`] does with one request.
pub enum Reply {
    /// Answers with this status and JSON body.
    Json(u16, String),
    /// Never answers: the connection is held open until the stub is dropped.
    Hang,
}

/// A loopback authorization server for the behaviours node-oidc-provider cannot script (a
/// request it never answers, a server that never approves): `reply` decides from the path.
/// Stopped (thread joined, connections closed) on drop.
pub struct Stub {
    pub base: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Stub {
    pub fn start(reply: impl Fn(&str) -> Reply + Send + 'static) -> Stub {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop2, requests2) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop2.load(Ordering::SeqCst) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                // Read the body too: closing on unread bytes would reset the connection.
                let length = text
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                let split = text.find("\r\n\r\n").map_or(head.len(), |i| i + 4);
                let mut have = head.len().saturating_sub(split);
                while have < length {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => have += n,
                    }
                }
                let path = text.split(' ').nth(1).unwrap_or("").to_owned();
                requests2.lock().unwrap().push(path.clone());
                match reply(&path) {
                    Reply::Json(status, body) => {
                        let _ = write!(
                            s,
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Reply::Hang => held.push(s),
                }
            }
        });
        Stub {
            base,
            stop,
            thread: Some(thread),
            requests,
        }
    }

    /// The paths requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// `--token-endpoint` and `--device-authorization-endpoint` pointing here.
    pub fn device_args(&self) -> Vec<String> {
        vec![
            "--token-endpoint".into(),
            format!("{}/token", self.base),
            "--device-authorization-endpoint".into(),
            format!("{}/device", self.base),
            "--client-id".into(),
            "cli".into(),
            "--device".into(),
        ]
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A device authorization answer: code `user_code`, `interval` seconds, valid 10 minutes.
pub fn device_answer(user_code: &str, interval: u64) -> Reply {
    Reply::Json(
        200,
        format!(
            r#"{{"device_code":"dc-{user_code}","user_code":"{user_code}","verification_uri":"http://127.0.0.1/device","expires_in":600,"interval":{interval}}}"#
        ),
    )
}
