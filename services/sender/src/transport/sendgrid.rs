//! SendGrid: `POST /v3/mail/send` with a bearer API key; `202 Accepted` and the id in
//! `X-Message-Id`.
//!
//! The v3 API takes JSON fields only and builds the MIME itself (signing it with the
//! account's authenticated domain), so our headers travel in `headers` and our message id
//! in `custom_args`, which SendGrid repeats in every event webhook. SendGrid's own click,
//! open and subscription tracking are switched off: Postflow does that itself.

use serde::Deserialize;
use serde_json::{Value, json};
use tenancy::Delivery;
use time::OffsetDateTime;

use super::Outgoing;
use super::http::{Answer, Api, base, parse_url, refusal, secret};
use crate::transport::Failure;

pub(super) struct Sendgrid {
    url: reqwest::Url,
    key: tenancy::Secret,
}

impl Sendgrid {
    pub fn new(d: &Delivery) -> anyhow::Result<Self> {
        let default = match d.region.as_deref() {
            Some("eu") => "https://api.eu.sendgrid.com",
            _ => "https://api.sendgrid.com",
        };
        let url = format!("{}/v3/mail/send", base(d.endpoint.as_ref(), default.into()));
        Ok(Self { url: parse_url("sendgrid", &url)?, key: secret("sendgrid", "api_key", d.api_key.as_ref())?.clone() })
    }
}

fn address(m: &contracts::Mailbox) -> Value {
    match &m.name {
        Some(name) => json!({ "email": m.email.as_str(), "name": name }),
        None => json!({ "email": m.email.as_str() }),
    }
}

#[derive(Deserialize)]
struct Errors {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    message: String,
    field: Option<String>,
}

impl Api for Sendgrid {
    const NAME: &'static str = "sendgrid";
    const SENDS_OUR_MIME: bool = false;

    fn request(&self, client: &reqwest::Client, out: &Outgoing<'_>, _now: OffsetDateTime) -> anyhow::Result<reqwest::Request> {
        let msg = out.msg;
        // SendGrid refuses empty parts; text/plain must come first.
        let content: Vec<Value> = [("text/plain", &msg.text), ("text/html", &msg.html)]
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(kind, value)| json!({ "type": kind, "value": value }))
            .collect();
        let mut body = json!({
            "personalizations": [{ "to": [address(&msg.to)] }],
            "from": address(&msg.from),
            "subject": msg.subject,
            "content": content,
            "custom_args": { "postflow_message_id": msg.message_id.as_str() },
            "tracking_settings": {
                "click_tracking": { "enable": false, "enable_text": false },
                "open_tracking": { "enable": false },
                "subscription_tracking": { "enable": false },
            },
        });
        if let Some(reply_to) = &msg.reply_to {
            body["reply_to"] = address(reply_to);
        }
        if !msg.headers.is_empty() {
            body["headers"] = msg.headers.iter().map(|(n, v)| (n.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>().into();
        }
        Ok(client
            .post(self.url.clone())
            .bearer_auth(self.key.expose())
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&body)?)
            .build()?)
    }

    fn outcome(&self, answer: &Answer) -> Result<String, Failure> {
        if answer.ok() {
            let id = answer.headers.get("x-message-id").and_then(|v| v.to_str().ok());
            return Ok(id.map_or_else(|| format!("sendgrid {}", answer.status), str::to_owned));
        }
        let detail = match serde_json::from_slice::<Errors>(&answer.body) {
            Ok(e) if !e.errors.is_empty() => e
                .errors
                .iter()
                .map(|i| match &i.field {
                    Some(f) => format!("{f}: {}", i.message),
                    None => i.message.clone(),
                })
                .collect::<Vec<_>>()
                .join("; "),
            _ => answer.text(),
        };
        Err(refusal("sendgrid", answer.status, &detail))
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderMap, HeaderValue};

    use super::*;

    fn api() -> Sendgrid {
        Sendgrid { url: parse_url("sendgrid", "http://stub/v3/mail/send").unwrap_or_else(|e| panic!("{e}")), key: tenancy::Secret::new("k") }
    }

    #[test]
    fn reads_sendgrid_answers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-message-id", HeaderValue::from_static("Zr4cJxGkQZeWvHaDq1h7pA"));
        assert_eq!(api().outcome(&Answer { status: 202, headers, body: vec![] }), Ok("Zr4cJxGkQZeWvHaDq1h7pA".into()));

        let invalid = r#"{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to.0.email","help":"http://sendgrid.com/docs"}]}"#;
        let bad = Answer { status: 400, headers: HeaderMap::new(), body: invalid.as_bytes().to_vec() };
        assert_eq!(
            api().outcome(&bad),
            Err(Failure::Permanent("sendgrid 400: personalizations.0.to.0.email: Does not contain a valid address.".into()))
        );
        let unverified = r#"{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":"from"}]}"#;
        let forbidden = Answer { status: 403, headers: HeaderMap::new(), body: unverified.as_bytes().to_vec() };
        assert!(matches!(api().outcome(&forbidden), Err(Failure::Temporary(_))));
        let busy = Answer { status: 429, headers: HeaderMap::new(), body: vec![] };
        assert!(matches!(api().outcome(&busy), Err(Failure::Temporary(_))));
    }
}
