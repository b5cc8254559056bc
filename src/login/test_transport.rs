//! A scripted transport for the login's unit tests: answers in order, records what was sent.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::form::FormRequest;
use crate::http::{HttpResponse, Transport, TransportError};

type Answer = Result<HttpResponse, TransportError>;
/// A request as sent: its URL and form fields (none for a GET).
type Sent = (String, Vec<(String, String)>);

#[derive(Debug, Default)]
pub(crate) struct Scripted {
    gets: Mutex<VecDeque<Answer>>,
    posts: Mutex<VecDeque<Answer>>,
    sent: Mutex<Vec<Sent>>,
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

    fn get(&self, url: &str) -> Answer {
        self.sent.lock().unwrap().push((url.to_owned(), Vec::new()));
        self.gets
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| panic!("unscripted GET of {url}"))
    }
}
