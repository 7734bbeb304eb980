//! Mailgun: `POST /v3/{domain}/messages.mime`, basic auth `api:{key}`, multipart with the
//! recipient and our formatted message — byte for byte, so our headers and DKIM signature
//! arrive as we wrote them. Mailgun's tracking is switched off (it would rewrite the body
//! and break the signature); our message id travels as the user variable
//! `postflow_message_id`, which Mailgun repeats in its event webhooks.

use reqwest::multipart::{Form, Part};
use serde::Deserialize;
use tenancy::Delivery;
use time::OffsetDateTime;

use super::Outgoing;
use super::http::{Answer, Api, base, parse_url, refusal, secret};
use crate::transport::Failure;

pub(super) struct Mailgun {
    url: reqwest::Url,
    key: tenancy::Secret,
}

impl Mailgun {
    pub fn new(d: &Delivery) -> anyhow::Result<Self> {
        let domain = d.domain.as_deref().ok_or_else(|| anyhow::anyhow!("provider mailgun needs domain"))?;
        if domain.is_empty() || !domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
            anyhow::bail!("mailgun domain {domain:?} is not a domain name");
        }
        let default = match d.region.as_deref() {
            Some("eu") => "https://api.eu.mailgun.net",
            _ => "https://api.mailgun.net",
        };
        let url = format!("{}/v3/{domain}/messages.mime", base(d.endpoint.as_ref(), default.into()));
        Ok(Self { url: parse_url("mailgun", &url)?, key: secret("mailgun", "api_key", d.api_key.as_ref())?.clone() })
    }
}

#[derive(Deserialize)]
struct Reply {
    id: Option<String>,
    message: Option<String>,
}

impl Api for Mailgun {
    const NAME: &'static str = "mailgun";
    const SENDS_OUR_MIME: bool = true;

    fn request(&self, client: &reqwest::Client, out: &Outgoing<'_>, _now: OffsetDateTime) -> anyhow::Result<reqwest::Request> {
        let message = Part::bytes(out.mime.to_vec()).file_name("message.eml").mime_str("message/rfc822")?;
        let form = Form::new()
            .text("to", out.msg.to.email.as_str().to_owned())
            .text("v:postflow_message_id", out.msg.message_id.as_str().to_owned())
            .text("o:tracking", "no")
            .text("o:tracking-clicks", "no")
            .text("o:tracking-opens", "no")
            .part("message", message);
        Ok(client.post(self.url.clone()).basic_auth("api", Some(self.key.expose())).multipart(form).build()?)
    }

    fn outcome(&self, answer: &Answer) -> Result<String, Failure> {
        let reply: Option<Reply> = serde_json::from_slice(&answer.body).ok();
        if answer.ok() {
            return Ok(reply.and_then(|r| r.id).unwrap_or_else(|| format!("mailgun {}", answer.status)));
        }
        let detail = reply.and_then(|r| r.message).unwrap_or_else(|| answer.text());
        Err(refusal("mailgun", answer.status, &detail))
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderMap;

    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer { status, headers: HeaderMap::new(), body: body.as_bytes().to_vec() }
    }

    fn api() -> Mailgun {
        Mailgun { url: parse_url("mailgun", "http://stub/v3/mg.example/messages.mime").unwrap_or_else(|e| panic!("{e}")), key: tenancy::Secret::new("k") }
    }

    #[test]
    fn reads_mailgun_answers() {
        let ok = r#"{"id":"<20250301120000.1.ABCDEF@mg.example>","message":"Queued. Thank you."}"#;
        assert_eq!(api().outcome(&answer(200, ok)), Ok("<20250301120000.1.ABCDEF@mg.example>".into()));
        assert_eq!(
            api().outcome(&answer(400, r#"{"message":"to parameter is not a valid address. please check documentation"}"#)),
            Err(Failure::Permanent("mailgun 400: to parameter is not a valid address. please check documentation".into()))
        );
        assert!(matches!(api().outcome(&answer(401, "Forbidden")), Err(Failure::Temporary(m)) if m.contains("Forbidden")));
        assert!(matches!(api().outcome(&answer(404, r#"{"message":"Domain not found: mg.example"}"#)), Err(Failure::Temporary(_))));
        assert!(matches!(api().outcome(&answer(503, "")), Err(Failure::Temporary(_))));
    }

    #[test]
    fn the_domain_must_be_a_domain() {
        let d = Delivery { domain: Some("mg.example/../x".into()), api_key: Some(tenancy::Secret::new("k")), ..Delivery::default() };
        assert!(Mailgun::new(&d).is_err());
        let d = Delivery { domain: Some("mg.example".into()), region: Some("eu".into()), ..d };
        assert_eq!(Mailgun::new(&d).unwrap_or_else(|e| panic!("{e}")).url.as_str(), "https://api.eu.mailgun.net/v3/mg.example/messages.mime");
    }
}
