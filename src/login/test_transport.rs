//! A scripted transport for the login's unit tests: answers in order, records what was sent.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::wire::form::FormRequest;
use crate::wire::http::{HttpResponse, Peek, Transport, TransportError};

type Answer = Result<HttpResponse, TransportError>;
/// How the transport answers a peek: from the URL peeked at.
type PeekAnswer = Box<dyn Fn(&str) -> Result<Peek, TransportError> + Send + Sync>;
/// A request as sent: its URL and form fields (none for a GET).
type Sent = (String, Vec<(String, String)>);

#[derive(Default)]
pub(crate) struct Scripted {
    gets: Mutex<VecDeque<Answer>>,
    posts: Mutex<VecDeque<Answer>>,
    sent: Mutex<Vec<Sent>>,
    peek: Option<PeekAnswer>,
    peeked: Mutex<Vec<(String, std::time::Duration)>>,
}

impl std::fmt::Debug for Scripted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scripted")
    }
}

fn ok(status: u16, body: &str) -> Answer {
    Ok(HttpResponse {
        status,
        retry_after: None,
        body: body.as_bytes().to_vec(),
    })
}

impl Scripted {
    pub(crate) fn new() -> Scripted {
        Scripted::default()
    }

    pub(crate) fn get(self, status: u16, body: &str) -> Scripted {
        self.gets.lock().unwrap().push_back(ok(status, body));
        self
    }

    pub(crate) fn get_fails(self) -> Scripted {
        self.gets
            .lock()
            .unwrap()
            .push_back(Err(TransportError::Connect("refused".into())));
        self
    }

    pub(crate) fn post(self, status: u16, body: &str) -> Scripted {
        self.posts.lock().unwrap().push_back(ok(status, body));
        self
    }

    /// Scripts one more POST answer after the transport was shared (for an answer that
    /// depends on what a flow showed, such as its nonce).
    pub(crate) fn then_post(&self, status: u16, body: &str) {
        self.posts.lock().unwrap().push_back(ok(status, body));
    }

    pub(crate) fn post_fails(self) -> Scripted {
        self.posts
            .lock()
            .unwrap()
            .push_back(Err(TransportError::Timeout("slow".into())));
        self
    }

    /// Scripts one POST that gets no answer, failing with `e`.
    pub(crate) fn post_fails_with(self, e: TransportError) -> Scripted {
        self.posts.lock().unwrap().push_back(Err(e));
        self
    }

    /// Answers peeks with `answer` (without it, peeks fail as unsupported).
    pub(crate) fn peek_with(
        mut self,
        answer: impl Fn(&str) -> Result<Peek, TransportError> + Send + Sync + 'static,
    ) -> Scripted {
        self.peek = Some(Box::new(answer));
        self
    }

    /// Every URL peeked at, with the timeout given.
    pub(crate) fn peeked(&self) -> Vec<(String, std::time::Duration)> {
        self.peeked.lock().unwrap().clone()
    }

    /// Every URL requested, in order.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// The form of the `n`th request.
    pub(crate) fn form(&self, n: usize) -> Vec<(String, String)> {
        self.sent.lock().unwrap()[n].1.clone()
    }

    /// How many POSTs were sent.
    pub(crate) fn posts_sent(&self) -> usize {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, f)| !f.is_empty())
            .count()
    }
}

impl Transport for Scripted {
    fn post_form(&self, request: &FormRequest) -> Answer {
        let form = request
            .form
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.secret().to_owned()))
            .collect();
        self.sent.lock().unwrap().push((request.url.clone(), form));
        self.posts
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| panic!("unscripted POST to {}", request.url))
    }

    fn peek(&self, url: &str, timeout: std::time::Duration) -> Result<Peek, TransportError> {
        self.peeked.lock().unwrap().push((url.to_owned(), timeout));
        match &self.peek {
            Some(answer) => answer(url),
            None => Err(TransportError::Other("peeks are not scripted".into())),
        }
    }

    fn get(&self, url: &str) -> Answer {
        self.sent.lock().unwrap().push((url.to_owned(), Vec::new()));
        self.gets
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| panic!("unscripted GET of {url}"))
    }
}
