//! Postmark: `POST /email` with the `X-Postmark-Server-Token` header.
//!
//! Postmark takes the message as JSON fields and builds the MIME itself (signing it with
//! the DKIM key of the Postmark account), so our headers travel in `Headers` and our
//! message id in `Metadata`, which Postmark repeats in its bounce and delivery webhooks.
//! Each lane goes to its message stream, the tenant's `[delivery] transactional_stream`
//! and `marketing_stream` (default `outbound` and `broadcast`): Postmark requires
//! marketing mail on a broadcast stream.

use contracts::Lane;
use serde::Deserialize;
use serde_json::json;
use tenancy::Delivery;
use time::OffsetDateTime;

use super::Outgoing;
use super::http::{Answer, Api, base, mailbox, parse_url, refusal, secret};
use crate::transport::Failure;

pub(super) struct Postmark {
    url: reqwest::Url,
    token: tenancy::Secret,
    /// The message stream ids, transactional and marketing.
    streams: (String, String),
}

impl Postmark {
    pub fn new(d: &Delivery) -> anyhow::Result<Self> {
        let url = format!("{}/email", base(d.endpoint.as_ref(), "https://api.postmarkapp.com".into()));
        Ok(Self {
            url: parse_url("postmark", &url)?,
            token: secret("postmark", "api_key", d.api_key.as_ref())?.clone(),
            streams: (d.stream(Lane::Transactional).to_owned(), d.stream(Lane::Marketing).to_owned()),
        })
    }
}

/// Postmark's `ErrorCode`s that describe the account, not the message: a bad token (10), a
/// sender signature that is missing or unconfirmed (400, 401), no credits (405), an account
/// pending review or not allowed to send (412, 413).
const ACCOUNT_ERRORS: &[i64] = &[10, 400, 401, 405, 412, 413];

#[derive(Deserialize)]
struct Reply {
    #[serde(rename = "ErrorCode", default)]
    error_code: i64,
    #[serde(rename = "Message", default)]
    message: String,
    #[serde(rename = "MessageID")]
    message_id: Option<String>,
}

impl Api for Postmark {
    const NAME: &'static str = "postmark";
    const SENDS_OUR_MIME: bool = false;

    fn request(&self, client: &reqwest::Client, out: &Outgoing<'_>, _now: OffsetDateTime) -> anyhow::Result<reqwest::Request> {
        let msg = out.msg;
        let headers: Vec<_> = msg.headers.iter().map(|(name, value)| json!({ "Name": name, "Value": value })).collect();
        let mut body = json!({
            "From": mailbox(&msg.from),
            "To": mailbox(&msg.to),
            "Subject": msg.subject,
            "HtmlBody": msg.html,
            "TextBody": msg.text,
            "Headers": headers,
            // Postflow tracks opens and clicks itself.
            "TrackOpens": false,
            "TrackLinks": "None",
            "Metadata": { "postflow_message_id": msg.message_id.as_str() },
            "MessageStream": match msg.lane {
                Lane::Transactional => &self.streams.0,
                Lane::Marketing => &self.streams.1,
            },
        });
        if let Some(reply_to) = &msg.reply_to {
            body["ReplyTo"] = json!(mailbox(reply_to));
        }
        Ok(client
            .post(self.url.clone())
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .header("X-Postmark-Server-Token", self.token.expose())
            .body(serde_json::to_vec(&body)?)
            .build()?)
    }

    fn outcome(&self, answer: &Answer) -> Result<String, Failure> {
        let reply: Option<Reply> = serde_json::from_slice(&answer.body).ok();
        if answer.ok() {
            return Ok(reply.and_then(|r| r.message_id).unwrap_or_else(|| format!("postmark {}", answer.status)));
        }
        let Some(reply) = reply else { return Err(refusal("postmark", answer.status, &answer.text())) };
        let detail = format!("ErrorCode {}: {}", reply.error_code, reply.message.trim());
        if answer.status != 422 {
            return Err(refusal("postmark", answer.status, &detail));
        }
        // 422 is Postmark's "we read your request and will not send it"; the code says why.
        let account = ACCOUNT_ERRORS.contains(&reply.error_code)
            // 300 (invalid request) also reports a From address without a confirmed sender
            // signature: the tenant's setup, not the recipient.
            || (reply.error_code == 300 && reply.message.contains("'From'"))
            // A message stream the server does not have (e.g. no stream with the id in
            // `marketing_stream`) is the tenant's setup too.
            || reply.message.to_ascii_lowercase().contains("stream");
        Err(if account {
            Failure::Temporary(format!("postmark 422, account refused: {detail}"))
        } else {
            // 406 (inactive recipient: bounced or complained before), 300 (invalid
            // recipient or content), and the rest.
            Failure::Permanent(format!("postmark 422: {detail}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderMap;

    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer { status, headers: HeaderMap::new(), body: body.as_bytes().to_vec() }
    }

    fn api() -> Postmark {
        Postmark {
            url: parse_url("postmark", "http://stub/email").unwrap_or_else(|e| panic!("{e}")),
            token: tenancy::Secret::new("t"),
            streams: ("outbound".into(), "broadcast".into()),
        }
    }

    #[test]
    fn reads_postmark_answers() {
        let ok = r#"{"To":"a@b.example","SubmittedAt":"2025-01-01T00:00:00Z","MessageID":"b7bc2f4a-e38e-4336-af7d-e6c392c2f817","ErrorCode":0,"Message":"OK"}"#;
        assert_eq!(api().outcome(&answer(200, ok)), Ok("b7bc2f4a-e38e-4336-af7d-e6c392c2f817".into()));
        let inactive = r#"{"ErrorCode":406,"Message":"You tried to send to recipient(s) that have been marked as inactive."}"#;
        assert_eq!(
            api().outcome(&answer(422, inactive)),
            Err(Failure::Permanent("postmark 422: ErrorCode 406: You tried to send to recipient(s) that have been marked as inactive.".into()))
        );
        let unsigned = r#"{"ErrorCode":300,"Message":"Invalid 'From' address: 'x@y.example' is not a verified sender signature."}"#;
        assert!(matches!(api().outcome(&answer(422, unsigned)), Err(Failure::Temporary(_))));
        let no_stream = r#"{"ErrorCode":1235,"Message":"The message stream for the provided 'ID' was not found."}"#;
        assert!(matches!(api().outcome(&answer(422, no_stream)), Err(Failure::Temporary(_))));
        let bad_to = r#"{"ErrorCode":300,"Message":"Error parsing 'To': Illegal email address 'nope'."}"#;
        assert!(matches!(api().outcome(&answer(422, bad_to)), Err(Failure::Permanent(_))));
        for code in ACCOUNT_ERRORS {
            let body = format!(r#"{{"ErrorCode":{code},"Message":"account"}}"#);
            assert!(matches!(api().outcome(&answer(422, &body)), Err(Failure::Temporary(_))), "{code}");
        }
        let token = r#"{"ErrorCode":10,"Message":"No Account or Server API tokens were supplied in the HTTP headers."}"#;
        assert!(matches!(api().outcome(&answer(401, token)), Err(Failure::Temporary(_))));
        assert!(matches!(api().outcome(&answer(429, "")), Err(Failure::Temporary(_))));
        assert!(matches!(api().outcome(&answer(500, "<html>oops</html>")), Err(Failure::Temporary(m)) if m.contains("oops")));
    }
}
