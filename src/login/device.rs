//! The device authorization grant (RFC 8628): a code to show, then polling until approval.

use std::time::Duration;

use serde_json::Value;

use super::device_code::DeviceCode;
use super::token::{self, Answer};
use super::{Bounded, Login};
use crate::basics::secret::Secret;
use crate::error::Error;
use crate::session::model::Session;
use crate::wire::form::FormRequest;
use crate::wire::http_answer::{Endpoint, Meaning};

/// The RFC 8628 grant type.
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 8628 §3.2: the interval when the server names none.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// RFC 8628 §3.5: `slow_down` adds five seconds to the interval, for this and every later poll.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// Network errors and 5xx answers while polling are retried at the interval, this many in a
/// row at most.
const MAX_TRANSIENT_POLLS: u32 = 3;

impl Login {
    /// Logs in with the device authorization grant: requests a code, hands it to `show`
    /// (print it, or render a QR code), then polls the token endpoint at the server's
    /// interval until the user approves, honouring `slow_down` (+5 s each time).
    ///
    /// # Errors
    /// - [`Error::LoginDenied`]: the user refused (`access_denied`).
    /// - [`Error::LoginExpired`]: the code expired (`expired_token`), or the login's deadline
    ///   passed first.
    /// - [`Error::LoginUnsupported`]: no device authorization endpoint is known.
    /// - [`Error::LoginRefused`], [`Error::LoginUnavailable`], [`Error::LoginInvalidResponse`],
    ///   [`Error::MissingRefreshToken`].
    pub fn device(&self, show: &mut dyn FnMut(&DeviceCode)) -> Result<Session, Error> {
        let endpoint = self.endpoints.device_authorization().ok_or_else(|| {
            Error::LoginUnsupported {
                issuer: self.endpoints.name(),
                reason: if self.endpoints.authorization().is_some() {
                    "it has no device authorization endpoint (RFC 8628); use the browser or paste flow".to_owned()
                } else {
                    super::no_flow_endpoint("device authorization endpoint (RFC 8628)")
                },
            }
        })?;
        let started = self.clock.now();
        let deadline = super::time_after(started, self.deadline);
        let no_answer = || Error::LoginExpired {
            what: format!(
                "the server did not answer within the login deadline of {} s",
                self.deadline.as_secs()
            ),
        };
        let mut request = FormRequest::for_client(&self.client, endpoint);
        // RFC 8628 §3.1 allows `client_id` beside the client's authentication, and some
        // servers (django-oauth-toolkit) refuse the request without it in the body.
        if !request.form.iter().any(|(k, _)| *k == "client_id") {
            request
                .form
                .insert(0, ("client_id", Secret::new(self.client.client_id())));
        }
        self.add_scope_and_targets(&mut request);
        let bounded = Bounded::new(&self.transport, self.deadline);
        let (code, device_code, mut interval) = match token::post(
            &bounded,
            Endpoint::DeviceAuthorization,
            &request,
            started,
            parse_authorization,
        ) {
            Err(_) if bounded.cut() => return Err(no_answer()),
            Err(e) => return Err(e),
            Ok(Answer::Ok(parsed)) => parsed,
            Ok(Answer::Refused { status, meaning }) => {
                return Err(token::refused(endpoint, status, meaning));
            }
        };
        let expires_at = started + code.expires_in;
        show(&code);
        let mut transient = 0;
        loop {
            let stop = expires_at.min(deadline);
            let now = self.clock.now();
            // A poll sent when no time is left could not be answered in time.
            if now + interval >= stop {
                self.clock
                    .sleep(stop.duration_since(now).unwrap_or_default());
                return Err(Error::LoginExpired {
                    what: if expires_at <= deadline {
                        "the device code expired before it was approved".to_owned()
                    } else {
                        format!(
                            "no approval within the login deadline of {} s",
                            self.deadline.as_secs()
                        )
                    },
                });
            }
            self.clock.sleep(interval);
            let mut poll = FormRequest::for_client(&self.client, self.endpoints.token());
            poll.form
                .insert(0, ("grant_type", Secret::new(DEVICE_GRANT)));
            poll.form.insert(1, ("device_code", device_code.clone()));
            let now = self.clock.now();
            let bounded = Bounded::new(
                &self.transport,
                stop.duration_since(now).unwrap_or_default(),
            );
            let answer = token::post(
                &bounded,
                Endpoint::DevicePoll,
                &poll,
                now,
                token::parse_tokens,
            );
            match answer {
                Err(_) if bounded.cut() => return Err(no_answer()),
                Ok(Answer::Ok(tokens)) => return self.session_from(tokens, now),
                Ok(Answer::Refused { status, meaning }) => {
                    transient = 0;
                    match meaning {
                        Meaning::Pending => {}
                        Meaning::SlowDown => interval += SLOW_DOWN_STEP,
                        meaning => {
                            return Err(token::refused(self.endpoints.token(), status, meaning));
                        }
                    }
                }
                Err(e) if e.is_transient() && transient < MAX_TRANSIENT_POLLS => transient += 1,
                Err(e) => return Err(e),
            }
        }
    }
}

/// The device authorization response (RFC 8628 §3.2): what to show, the device code, and
/// the polling interval.
fn parse_authorization(body: &[u8]) -> Result<(DeviceCode, Secret, Duration), String> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Err("the body is not a JSON object".to_owned());
    };
    let text = |key: &str| {
        map.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let device_code = text("device_code").ok_or("no device_code")?;
    let user_code = text("user_code").ok_or("no user_code")?;
    // Google's early implementation spelled it verification_url.
    let verification_uri = text("verification_uri")
        .or_else(|| text("verification_url"))
        .ok_or("no verification_uri")?;
    let seconds = |key: &str| map.get(key).and_then(Value::as_u64);
    let expires_in = seconds("expires_in").ok_or("no expires_in")?;
    let interval = seconds("interval").map_or(DEFAULT_INTERVAL, Duration::from_secs);
    let printable = |s: &str| {
        s.chars()
            .filter(|c| !c.is_control())
            .take(2048)
            .collect::<String>()
    };
    Ok((
        DeviceCode {
            user_code: printable(user_code),
            verification_uri: printable(verification_uri),
            verification_uri_complete: text("verification_uri_complete").map(printable),
            expires_in: Duration::from_secs(expires_in.min(24 * 3600)),
        },
        Secret::new(device_code),
        interval.clamp(Duration::from_secs(1), Duration::from_secs(60)),
    ))
}
