//! Amazon SES, API v2: `POST /v2/email/outbound-emails` (`SendEmail`) with `Content.Raw`
//! — our formatted message, byte for byte, so our headers and DKIM signature arrive as we
//! wrote them — signed with SigV4 (service `ses`). Our message id travels as the email tag
//! `postflow_message_id`, which SES repeats in its event notifications.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::json;
use tenancy::Delivery;
use time::OffsetDateTime;

use super::Outgoing;
use super::http::{Answer, Api, base, parse_url, refusal, secret};
use super::sigv4;
use crate::transport::Failure;

pub(super) struct Ses {
    url: reqwest::Url,
    /// `Host` as sent and signed (with the port when it is not the scheme's).
    host: String,
    region: String,
    access_key_id: tenancy::Secret,
    secret_access_key: tenancy::Secret,
}

impl Ses {
    pub fn new(d: &Delivery) -> anyhow::Result<Self> {
        let region = d.region.clone().ok_or_else(|| anyhow::anyhow!("provider ses needs region"))?;
        if region.is_empty() || !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            anyhow::bail!("ses region {region:?} is not a region name");
        }
        let url = format!("{}/v2/email/outbound-emails", base(d.endpoint.as_ref(), format!("https://email.{region}.amazonaws.com")));
        let url = parse_url("ses", &url)?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => anyhow::bail!("ses endpoint {url} has no host"),
        };
        Ok(Self {
            url,
            host,
            region,
            access_key_id: secret("ses", "access_key_id", d.access_key_id.as_ref())?.clone(),
            secret_access_key: secret("ses", "secret_access_key", d.secret_access_key.as_ref())?.clone(),
        })
    }
}

#[derive(Deserialize)]
struct Sent {
    #[serde(rename = "MessageId")]
    message_id: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(alias = "Message")]
    message: Option<String>,
    #[serde(rename = "__type", alias = "code")]
    kind: Option<String>,
}

/// SendEmail errors about the account or its limits, not the message: retried.
const ACCOUNT_ERRORS: &[&str] = &[
    "TooManyRequestsException",
    "LimitExceededException",
    "SendingPausedException",
    "AccountSuspendedException",
    "MailFromDomainNotVerifiedException",
    "NotFoundException",
];

impl Api for Ses {
    const NAME: &'static str = "ses";
    const SENDS_OUR_MIME: bool = true;

    fn request(&self, client: &reqwest::Client, out: &Outgoing<'_>, now: OffsetDateTime) -> anyhow::Result<reqwest::Request> {
        let body = serde_json::to_vec(&json!({
            "Content": { "Raw": { "Data": BASE64.encode(out.mime) } },
            "Destination": { "ToAddresses": [out.msg.to.email.as_str()] },
            "EmailTags": [{ "Name": "postflow_message_id", "Value": out.msg.message_id.as_str() }],
        }))?;
        let headers = [("host", self.host.as_str()), ("content-type", "application/json")];
        let req = sigv4::Request { method: "POST", path: self.url.path(), query: &[], headers: &headers, payload: &body };
        let creds = sigv4::Credentials { access_key_id: self.access_key_id.expose(), secret_access_key: self.secret_access_key.expose() };
        let signed = sigv4::sign(&req, &creds, &self.region, "ses", now);
        Ok(client
            .post(self.url.clone())
            .header("host", &self.host)
            .header("content-type", "application/json")
            .header("x-amz-date", signed.amz_date)
            .header("authorization", signed.authorization)
            .body(body)
            .build()?)
    }

    fn outcome(&self, answer: &Answer) -> Result<String, Failure> {
        if answer.ok() {
            let sent: Option<Sent> = serde_json::from_slice(&answer.body).ok();
            return Ok(sent.and_then(|s| s.message_id).unwrap_or_else(|| format!("ses {}", answer.status)));
        }
        let body: Option<ErrorBody> = serde_json::from_slice(&answer.body).ok();
        // `x-amzn-ErrorType: MessageRejected:http://internal.amazon.com/...`, or `__type`.
        let from_header = answer.headers.get("x-amzn-errortype").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let kind = from_header
            .or_else(|| body.as_ref().and_then(|b| b.kind.clone()))
            .map(|k| {
                let k = k.split(':').next().unwrap_or_default();
                k.rsplit('#').next().unwrap_or_default().to_owned()
            })
            .unwrap_or_default();
        let message = body.and_then(|b| b.message).unwrap_or_else(|| answer.text());
        let detail = if kind.is_empty() { message } else { format!("{kind}: {message}") };
        Err(match kind.as_str() {
            // Content or recipient refused, or a request SES will never accept.
            "MessageRejected" | "BadRequestException" => Failure::Permanent(format!("ses {}: {detail}", answer.status)),
            k if ACCOUNT_ERRORS.contains(&k) => Failure::Temporary(format!("ses {}, account: {detail}", answer.status)),
            _ => refusal("ses", answer.status, &detail),
        })
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderMap, HeaderValue};

    use super::*;

    fn api() -> Ses {
        let d = Delivery {
            provider: tenancy::Provider::Ses,
            endpoint: Some("http://127.0.0.1:4566/".into()),
            region: Some("eu-west-1".into()),
            access_key_id: Some(tenancy::Secret::new("AKIDEXAMPLE")),
            secret_access_key: Some(tenancy::Secret::new("secret")),
            ..Delivery::default()
        };
        Ses::new(&d).unwrap_or_else(|e| panic!("{e}"))
    }

    fn answer(status: u16, error_type: Option<&'static str>, body: &str) -> Answer {
        let mut headers = HeaderMap::new();
        if let Some(t) = error_type {
            headers.insert("x-amzn-errortype", HeaderValue::from_static(t));
        }
        Answer { status, headers, body: body.as_bytes().to_vec() }
    }

    #[test]
    fn endpoint_and_host() {
        let ses = api();
        assert_eq!(ses.url.as_str(), "http://127.0.0.1:4566/v2/email/outbound-emails");
        assert_eq!(ses.host, "127.0.0.1:4566");
        let d = Delivery { endpoint: None, region: Some("us-east-1".into()), ..api_delivery() };
        assert_eq!(Ses::new(&d).unwrap_or_else(|e| panic!("{e}")).host, "email.us-east-1.amazonaws.com");
    }

    fn api_delivery() -> Delivery {
        Delivery {
            provider: tenancy::Provider::Ses,
            access_key_id: Some(tenancy::Secret::new("a")),
            secret_access_key: Some(tenancy::Secret::new("s")),
            ..Delivery::default()
        }
    }

    #[test]
    fn reads_ses_answers() {
        assert_eq!(
            api().outcome(&answer(200, None, r#"{"MessageId":"0102018e3c1d2f3a-11111111-2222-3333-4444-555555555555-000000"}"#)),
            Ok("0102018e3c1d2f3a-11111111-2222-3333-4444-555555555555-000000".into())
        );
        let rejected = answer(400, Some("MessageRejected:http://internal.amazon.com/coral/com.amazonaws.sesv2/"), r#"{"message":"Email address is not verified."}"#);
        assert_eq!(api().outcome(&rejected), Err(Failure::Permanent("ses 400: MessageRejected: Email address is not verified.".into())));
        let by_body = answer(400, None, r#"{"__type":"com.amazonaws.sesv2#SendingPausedException","Message":"paused"}"#);
        assert_eq!(api().outcome(&by_body), Err(Failure::Temporary("ses 400, account: SendingPausedException: paused".into())));
        assert!(matches!(api().outcome(&answer(429, Some("TooManyRequestsException"), "{}")), Err(Failure::Temporary(_))));
        assert!(matches!(api().outcome(&answer(403, Some("SignatureDoesNotMatch"), "{}")), Err(Failure::Temporary(_))));
        assert!(matches!(api().outcome(&answer(500, None, "")), Err(Failure::Temporary(_))));
    }
}
