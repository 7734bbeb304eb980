//! The feedback endpoints: `POST /v1/feedback/{tenant}/{provider}` with `provider` one of
//! `ses`, `postmark`, `sendgrid`, `mailgun`, and `POST /v1/feedback/{tenant}/dsn`, the
//! intake for bounce messages (RFC 3464 DSNs) that the MTA receiving the tenant's bounce
//! address pipes to us, one raw `message/rfc822` per request. They verify and parse with
//! the pure modules and leave configuration, IO and storage to a [`FeedbackBackend`] the
//! service provides.
//!
//! Answers (providers retry on 5xx and give up on 4xx; the DSN pipe should defer on 5xx,
//! 401 and 404 and drop the message on the other 4xx):
//! - 200: verified; the feedback (possibly none) is recorded, or it was a replay of a
//!   delivery already recorded, or an SNS subscription was confirmed; `ignored` counts
//!   pieces of feedback that changed nothing (an event seen before, a DSN naming no
//!   message we sent to that recipient);
//! - 400: the body is not a payload of that provider (for `dsn`: not a delivery status
//!   report; the reason says what is wrong);
//! - 401: missing, wrong or stale signature or credentials, an SNS topic or certificate
//!   URL we do not trust;
//! - 404: unknown tenant or provider, or no webhook secret configured (indistinguishable);
//! - 413: the body is larger than [`MAX_BODY`] ([`dsn::MAX_SIZE`] for `dsn`);
//! - 415: (`dsn`) the body is not sent as `message/rfc822`;
//! - 500: the tenant's configured key is unusable;
//! - 503: the backend failed (certificate fetch, subscription confirmation, storage).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use axum::routing::post;
use contracts::TenantId;
use serde_json::json;
use time::OffsetDateTime;

use super::ses::{self, SesConfig, SnsOutcome};
use super::{Feedback, FeedbackError, Origin, dsn, mailgun, postmark, sendgrid};

/// The providers' webhooks.
pub const PATH: &str = "/v1/feedback/{tenant}/{provider}";
/// The DSN intake (a static last segment, so it wins over [`PATH`]).
pub const DSN_PATH: &str = "/v1/feedback/{tenant}/dsn";

/// Every route this module registers, as `(method, path)` (for the OpenAPI check).
pub const ROUTES: &[(&str, &str)] = &[("POST", PATH), ("POST", DSN_PATH)];

/// Largest request body accepted (SendGrid batches many events into one POST).
pub const MAX_BODY: usize = 8 * 1024 * 1024;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One verified delivery, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub provider: Origin,
    /// A value unique to this delivery that a replay would repeat (the Mailgun token, the
    /// SNS `MessageId`): store it with the tenant and refuse a second delivery with it.
    pub replay_key: Option<String>,
    /// May be empty (a delivery, open or click event): nothing to suppress.
    pub feedback: Vec<Feedback>,
}

/// What [`FeedbackBackend::record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Stored; `ignored` pieces of feedback changed nothing (an event id seen before, a
    /// DSN that names no message we sent to that recipient).
    Stored { ignored: usize },
    /// The replay key was seen before; nothing was stored.
    Replay,
}

/// What the endpoint needs from the service.
pub trait FeedbackBackend: Send + Sync + 'static {
    /// The tenant's verification material for `provider`, from its `delivery.webhook_secret`:
    /// the Mailgun signing key, the SendGrid verification key, the Postmark basic-auth
    /// password, or for SES the SNS topic ARNs allowed to publish to this tenant
    /// (separated by commas or whitespace). `None` if the tenant is unknown or has none.
    fn webhook_secret(&self, tenant: &TenantId, provider: Origin) -> Option<String>;

    /// Now, from the service's clock.
    fn now(&self) -> OffsetDateTime;

    /// One more URL prefix trusted for SNS `SigningCertURL` and `SubscribeURL` (see
    /// [`SesConfig::trusted_url_prefix`]): only ever set explicitly, for tests against a
    /// local SNS stand-in.
    fn sns_trusted_url_prefix(&self) -> Option<&str> {
        None
    }

    /// The PEM certificate at an SNS `SigningCertURL`, already checked with
    /// [`SesConfig::trusts_signing_cert_url`]. Fetch it over HTTPS and cache it by URL.
    fn sns_certificate<'a>(&'a self, url: &'a str) -> BoxFuture<'a, anyhow::Result<String>>;

    /// GETs an SNS `SubscribeURL` (already checked with [`SesConfig::trusts_subscribe_url`]).
    fn confirm_sns_subscription<'a>(
        &'a self,
        tenant: &'a TenantId,
        subscribe_url: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Stores a verified delivery for the tenant (suppressions, `email.bounced`, …),
    /// refusing a replayed `replay_key`.
    fn record<'a>(
        &'a self,
        tenant: &'a TenantId,
        received: Received,
    ) -> BoxFuture<'a, anyhow::Result<Recorded>>;
}

/// The feedback routes, to merge into the service's router.
pub fn router(backend: Arc<dyn FeedbackBackend>) -> Router {
    Router::new()
        .route(PATH, post(endpoint).layer(DefaultBodyLimit::max(MAX_BODY)))
        .route(
            DSN_PATH,
            post(dsn_endpoint).layer(DefaultBodyLimit::max(dsn::MAX_SIZE)),
        )
        .with_state(backend)
}

async fn endpoint(
    State(backend): State<Arc<dyn FeedbackBackend>>,
    Path((tenant, provider)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = handle(backend.as_ref(), &tenant, &provider, &headers, &body).await;
    (answer.status, axum::Json(answer.body)).into_response()
}

async fn dsn_endpoint(
    State(backend): State<Arc<dyn FeedbackBackend>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = handle_dsn(backend.as_ref(), &tenant, &headers, &body).await;
    (answer.status, axum::Json(answer.body)).into_response()
}

/// The status and JSON body to answer: `{"status": "recorded" | "replay" | "confirmed" |
/// "unsubscribed", "feedback": n}` (and `"ignored": k` when k > 0) on success,
/// `{"error": reason}` otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

impl Answer {
    fn ok(what: &str, feedback: usize) -> Self {
        Self {
            status: StatusCode::OK,
            body: json!({ "status": what, "feedback": feedback }),
        }
    }

    fn recorded(applied: usize, ignored: usize) -> Self {
        let mut answer = Self::ok("recorded", applied);
        if ignored > 0 {
            answer.body["ignored"] = json!(ignored);
        }
        answer
    }

    fn error(status: StatusCode, reason: &str) -> Self {
        Self {
            status,
            body: json!({ "error": reason }),
        }
    }

    fn not_found() -> Self {
        Self::error(StatusCode::NOT_FOUND, "unknown tenant or provider")
    }

    fn unavailable() -> Self {
        Self::error(StatusCode::SERVICE_UNAVAILABLE, "try again later")
    }
}

/// Verifies, parses and records one delivery; the status to answer.
pub async fn handle(
    backend: &dyn FeedbackBackend,
    tenant: &str,
    provider: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Answer {
    let (Ok(tenant), Some(origin)) = (TenantId::parse(tenant), Origin::from_segment(provider))
    else {
        return Answer::not_found();
    };
    let Some(secret) = backend
        .webhook_secret(&tenant, origin)
        .filter(|s| !s.trim().is_empty())
    else {
        return Answer::not_found();
    };
    let now = backend.now();
    let received = match origin {
        Origin::Postmark => postmark::parse(headers, body, &secret, now).map(|feedback| Received {
            provider: origin,
            replay_key: None,
            feedback,
        }),
        Origin::Sendgrid => sendgrid::parse(headers, body, &secret, now).map(|feedback| Received {
            provider: origin,
            replay_key: None,
            feedback,
        }),
        Origin::Mailgun => mailgun::parse(body, &secret, now).map(|d| Received {
            provider: origin,
            replay_key: Some(d.token),
            feedback: d.feedback,
        }),
        Origin::Ses => return handle_sns(backend, &tenant, headers, body, &secret, now).await,
        // Its own route: `handle_dsn`.
        Origin::Dsn => return Answer::not_found(),
    };
    match received {
        Ok(received) => record(backend, &tenant, received).await,
        Err(e) => refused(&tenant, origin, &e),
    }
}

/// Verifies, parses and records one DSN posted to the intake; the status to answer.
/// The secret is the tenant's `delivery.webhook_secret` for its SMTP relay.
pub async fn handle_dsn(
    backend: &dyn FeedbackBackend,
    tenant: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Answer {
    let Ok(tenant) = TenantId::parse(tenant) else {
        return Answer::not_found();
    };
    let Some(secret) = backend
        .webhook_secret(&tenant, Origin::Dsn)
        .filter(|s| !s.trim().is_empty())
    else {
        return Answer::not_found();
    };
    match dsn::receive(headers, body, &secret, backend.now()) {
        Ok(d) => {
            let received = Received {
                provider: Origin::Dsn,
                replay_key: Some(d.replay_key),
                feedback: d.feedback,
            };
            record(backend, &tenant, received).await
        }
        Err(e) => refused(&tenant, Origin::Dsn, &e),
    }
}

async fn handle_sns(
    backend: &dyn FeedbackBackend,
    tenant: &TenantId,
    headers: &HeaderMap,
    body: &[u8],
    topics: &str,
    now: OffsetDateTime,
) -> Answer {
    let envelope = match ses::envelope(body) {
        Ok(e) => e,
        Err(e) => return refused(tenant, Origin::Ses, &e),
    };
    let arns: Vec<&str> = topics
        .split([',', ' ', '\n', '\t'])
        .filter(|s| !s.is_empty())
        .collect();
    let config = SesConfig {
        trusted_url_prefix: backend.sns_trusted_url_prefix(),
        ..SesConfig::new(&arns)
    };
    if !config.trusts_signing_cert_url(&envelope.signing_cert_url) {
        let e = FeedbackError::UntrustedCertificate(
            "signing certificate url is not an sns endpoint".to_owned(),
        );
        return refused(tenant, Origin::Ses, &e);
    }
    let pem = match backend.sns_certificate(&envelope.signing_cert_url).await {
        Ok(pem) => pem,
        Err(e) => {
            tracing::warn!(tenant = %tenant, error = %format!("{e:#}"), "could not fetch the sns signing certificate");
            return Answer::unavailable();
        }
    };
    match ses::parse(headers, body, &pem, &config, now) {
        Ok(SnsOutcome::Feedback {
            sns_message_id,
            feedback,
        }) => {
            let received = Received {
                provider: Origin::Ses,
                replay_key: Some(sns_message_id),
                feedback,
            };
            record(backend, tenant, received).await
        }
        Ok(SnsOutcome::ConfirmSubscription {
            topic_arn,
            subscribe_url,
        }) => {
            match backend
                .confirm_sns_subscription(tenant, &subscribe_url)
                .await
            {
                Ok(()) => {
                    tracing::info!(tenant = %tenant, topic = %topic_arn, "confirmed the sns subscription");
                    Answer::ok("confirmed", 0)
                }
                Err(e) => {
                    tracing::warn!(tenant = %tenant, topic = %topic_arn, error = %format!("{e:#}"), "could not confirm the sns subscription");
                    Answer::unavailable()
                }
            }
        }
        Ok(SnsOutcome::Unsubscribed { topic_arn }) => {
            tracing::warn!(tenant = %tenant, topic = %topic_arn, "the sns subscription was removed");
            Answer::ok("unsubscribed", 0)
        }
        Err(e) => refused(tenant, Origin::Ses, &e),
    }
}

async fn record(backend: &dyn FeedbackBackend, tenant: &TenantId, received: Received) -> Answer {
    let provider = received.provider;
    let kinds: Vec<&'static str> = received.feedback.iter().map(|f| f.kind.as_str()).collect();
    let count = kinds.len();
    match backend.record(tenant, received).await {
        Ok(Recorded::Stored { ignored }) => {
            for kind in kinds {
                metrics::counter!("sender_feedback_total", "provider" => provider.as_str(), "kind" => kind).increment(1);
            }
            if ignored > 0 {
                metrics::counter!("sender_feedback_ignored_total", "provider" => provider.as_str())
                    .increment(ignored as u64);
            }
            Answer::recorded(count.saturating_sub(ignored), ignored)
        }
        Ok(Recorded::Replay) => {
            tracing::info!(tenant = %tenant, provider = %provider, "ignored a replayed feedback delivery");
            Answer::ok("replay", 0)
        }
        Err(e) => {
            tracing::warn!(tenant = %tenant, provider = %provider, error = %format!("{e:#}"), "could not record feedback");
            Answer::unavailable()
        }
    }
}

fn refused(tenant: &TenantId, provider: Origin, e: &FeedbackError) -> Answer {
    let status = status_for(e);
    metrics::counter!("sender_feedback_refused_total", "provider" => provider.as_str(), "status" => status.as_str().to_owned())
        .increment(1);
    tracing::warn!(tenant = %tenant, provider = %provider, error = %e, "refused a feedback delivery");
    match status {
        StatusCode::NOT_FOUND => Answer::not_found(),
        _ => Answer::error(status, &e.to_string()),
    }
}

/// The answer for a refused delivery.
pub fn status_for(e: &FeedbackError) -> StatusCode {
    match e {
        FeedbackError::NotConfigured => StatusCode::NOT_FOUND,
        FeedbackError::BadKey(_) => StatusCode::INTERNAL_SERVER_ERROR,
        FeedbackError::MissingSignature
        | FeedbackError::BadSignature
        | FeedbackError::MissingHeader(_)
        | FeedbackError::Stale
        | FeedbackError::UntrustedCertificate(_)
        | FeedbackError::TopicNotAllowed => StatusCode::UNAUTHORIZED,
        FeedbackError::MalformedJson(_) | FeedbackError::Invalid(_) => StatusCode::BAD_REQUEST,
        FeedbackError::MediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::feedback::FeedbackKind;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use time::macros::datetime;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    const NOW: OffsetDateTime = datetime!(2019-11-05 17:00 UTC);

    #[derive(Default)]
    struct Fake {
        recorded: Mutex<Vec<(TenantId, Received)>>,
        fail_record: bool,
    }

    impl FeedbackBackend for Fake {
        fn webhook_secret(&self, tenant: &TenantId, provider: Origin) -> Option<String> {
            match (tenant.to_string().as_str(), provider) {
                ("shop", Origin::Postmark) => Some("s3cret".to_owned()),
                ("shop", Origin::Mailgun) => Some("key-1".to_owned()),
                ("shop", Origin::Ses) => {
                    Some("arn:aws:sns:us-east-1:123456789012:ses-feedback".to_owned())
                }
                ("shop", Origin::Dsn) => Some("pipe-secret".to_owned()),
                _ => None,
            }
        }

        fn now(&self) -> OffsetDateTime {
            NOW
        }

        fn sns_certificate<'a>(&'a self, _url: &'a str) -> BoxFuture<'a, anyhow::Result<String>> {
            Box::pin(async { Err(anyhow::anyhow!("no network in tests")) })
        }

        fn confirm_sns_subscription<'a>(
            &'a self,
            _: &'a TenantId,
            _: &'a str,
        ) -> BoxFuture<'a, anyhow::Result<()>> {
            Box::pin(async { Ok(()) })
        }

        fn record<'a>(
            &'a self,
            tenant: &'a TenantId,
            received: Received,
        ) -> BoxFuture<'a, anyhow::Result<Recorded>> {
            Box::pin(async move {
                if self.fail_record {
                    anyhow::bail!("database down");
                }
                let mut recorded = self.recorded.lock().unwrap();
                let replay = received.replay_key.is_some()
                    && recorded
                        .iter()
                        .any(|(t, r)| t == tenant && r.replay_key == received.replay_key);
                if replay {
                    return Ok(Recorded::Replay);
                }
                recorded.push((tenant.clone(), received));
                Ok(Recorded::Stored { ignored: 0 })
            })
        }
    }

    const BOUNCE: &str = r#"{"RecordType":"Bounce","ID":7,"Type":"HardBounce","Email":"john@example.com","BouncedAt":"2019-11-05T16:33:54Z","Details":"550 5.1.1 unknown"}"#;

    fn basic(password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            format!("Basic {}", STANDARD.encode(format!("postmark:{password}")))
                .parse()
                .unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn postmark_bounce_is_recorded() {
        let fake = Fake::default();
        let answer = handle(
            &fake,
            "shop",
            "postmark",
            &basic("s3cret"),
            BOUNCE.as_bytes(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.body,
            serde_json::json!({"status": "recorded", "feedback": 1})
        );
        let recorded = fake.recorded.lock().unwrap();
        assert_eq!(recorded.len(), 1);
        let (tenant, r) = &recorded[0];
        assert_eq!(tenant.to_string(), "shop");
        assert_eq!(r.provider, Origin::Postmark);
        assert_eq!(r.feedback[0].kind, FeedbackKind::HardBounce);
        assert_eq!(r.feedback[0].recipient.as_str(), "john@example.com");
    }

    #[tokio::test]
    async fn refusals_map_to_statuses() {
        let fake = Fake::default();
        let b = BOUNCE.as_bytes();
        let wrong = handle(&fake, "shop", "postmark", &basic("wrong"), b).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert_eq!(wrong.body, serde_json::json!({"error": "bad signature"}));
        assert_eq!(
            handle(&fake, "shop", "postmark", &HeaderMap::new(), b)
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            handle(&fake, "shop", "postmark", &basic("s3cret"), b"{")
                .await
                .status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            handle(&fake, "other", "postmark", &basic("s3cret"), b)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            handle(&fake, "shop", "sendgrid", &basic("s3cret"), b)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            handle(&fake, "shop", "dsn", &basic("s3cret"), b)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            handle(&fake, "Not A Tenant", "postmark", &basic("s3cret"), b)
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        assert!(fake.recorded.lock().unwrap().is_empty());

        let failing = Fake {
            fail_record: true,
            ..Fake::default()
        };
        assert_eq!(
            handle(&failing, "shop", "postmark", &basic("s3cret"), b)
                .await
                .status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn mailgun_replays_are_accepted_but_recorded_once() {
        let fake = Fake::default();
        let (ts, token) = ("1572973200", "one-time-token");
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"key-1"),
            format!("{ts}{token}").as_bytes(),
        );
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let body = serde_json::json!({
            "signature": {"timestamp": ts, "token": token, "signature": hex},
            "event-data": {"event": "complained", "recipient": "a@example.com", "timestamp": 1572973100.0}
        })
        .to_string();
        let first = handle(&fake, "shop", "mailgun", &HeaderMap::new(), body.as_bytes()).await;
        assert_eq!(
            first.body,
            serde_json::json!({"status": "recorded", "feedback": 1})
        );
        let again = handle(&fake, "shop", "mailgun", &HeaderMap::new(), body.as_bytes()).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(
            again.body,
            serde_json::json!({"status": "replay", "feedback": 0})
        );
        let recorded = fake.recorded.lock().unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].1.replay_key.as_deref(), Some(token));
    }

    #[tokio::test]
    async fn sns_needs_a_trusted_cert_url_and_a_reachable_cert() {
        let fake = Fake::default();
        let envelope = |url: &str| {
            serde_json::json!({
                "Type": "Notification", "MessageId": "1", "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-feedback",
                "Message": "{}", "Timestamp": "2019-11-05T17:00:00Z", "SignatureVersion": "2", "Signature": "AAAA",
                "SigningCertURL": url
            })
            .to_string()
        };
        let h = HeaderMap::new();
        let off_sns = envelope("https://attacker.example/x.pem");
        assert_eq!(
            handle(&fake, "shop", "ses", &h, off_sns.as_bytes())
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
        let on_sns =
            envelope("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem");
        assert_eq!(
            handle(&fake, "shop", "ses", &h, on_sns.as_bytes())
                .await
                .status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            handle(&fake, "shop", "ses", &h, b"not json").await.status,
            StatusCode::BAD_REQUEST
        );
    }

    /// A Postfix-style DSN: one recipient failed with `status`, our message's headers returned.
    fn dsn(action: &str, status: &str) -> String {
        format!(
            "From: MAILER-DAEMON@mail.shop.example (Mail Delivery System)\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
To: bounces@bounce.shop.example\r\n\
Message-Id: <20240304121239.AAAA@mail.shop.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain\r\n\
\r\n\
I'm sorry to have to inform you that your message could not be delivered.\r\n\
--b1\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mail.shop.example\r\n\
\r\n\
Final-Recipient: rfc822; gone@example.com\r\n\
Action: {action}\r\n\
Status: {status}\r\n\
Diagnostic-Code: smtp; 550 {status} user unknown\r\n\
\r\n\
--b1\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
X-Postflow-Message-Id: m_0123456789abcdef0123456789abcdef\r\n\
To: gone@example.com\r\n\
\r\n\
--b1--\r\n"
        )
    }

    fn pipe(password: &str, content_type: &str) -> HeaderMap {
        let mut h = basic(password);
        h.insert("content-type", content_type.parse().unwrap());
        h
    }

    #[tokio::test]
    async fn a_dsn_is_verified_parsed_and_recorded_once() {
        let fake = Fake::default();
        let body = dsn("failed", "5.1.1");
        let headers = pipe("pipe-secret", "message/rfc822");
        let first = handle_dsn(&fake, "shop", &headers, body.as_bytes()).await;
        assert_eq!(
            (first.status, first.body),
            (
                StatusCode::OK,
                serde_json::json!({"status": "recorded", "feedback": 1})
            )
        );
        let again = handle_dsn(&fake, "shop", &headers, body.as_bytes()).await;
        assert_eq!(
            again.body,
            serde_json::json!({"status": "replay", "feedback": 0})
        );
        {
            let recorded = fake.recorded.lock().unwrap();
            assert_eq!(recorded.len(), 1);
            let r = &recorded[0].1;
            assert_eq!(r.provider, Origin::Dsn);
            // Keyed by its bytes (a sender of DSNs chooses their Message-ID), for the
            // whole delivery and for each recipient's feedback.
            let key = r.replay_key.as_deref().unwrap();
            assert!(key.starts_with("sha256:") && key.len() == 7 + 64, "{key}");
            assert_eq!(r.feedback[0].event_id.as_deref(), Some(key));
            assert_eq!(r.feedback[0].kind, FeedbackKind::HardBounce);
            assert_eq!(
                r.feedback[0].message_id.as_ref().map(|m| m.as_str()),
                Some("m_0123456789abcdef0123456789abcdef")
            );
        }
        // The same Message-ID on other bytes (a forgery) is not taken for a replay of it.
        let forged = body.replace("5.1.1", "5.1.2");
        let other = handle_dsn(&fake, "shop", &headers, forged.as_bytes()).await;
        assert_eq!(other.body, serde_json::json!({"status": "recorded", "feedback": 1}));
    }

    #[tokio::test]
    async fn a_dsn_without_message_id_is_keyed_by_its_bytes_and_delays_are_nothing() {
        let fake = Fake::default();
        let headers = pipe("pipe-secret", "Message/RFC822; charset=us-ascii");
        let body = dsn("failed", "5.1.1").replace(
            "Message-Id: <20240304121239.AAAA@mail.shop.example>\r\n",
            "",
        );
        let answer = handle_dsn(&fake, "shop", &headers, body.as_bytes()).await;
        assert_eq!(answer.status, StatusCode::OK);
        let delayed = dsn("delayed", "4.4.1");
        let answer = handle_dsn(&fake, "shop", &headers, delayed.as_bytes()).await;
        assert_eq!(
            answer.body,
            serde_json::json!({"status": "recorded", "feedback": 0})
        );
        let recorded = fake.recorded.lock().unwrap();
        let key = recorded[0].1.replay_key.clone().unwrap();
        assert!(
            key.starts_with("sha256:") && key.len() == "sha256:".len() + 64,
            "{key}"
        );
        assert!(recorded[1].1.feedback.is_empty());
    }

    #[tokio::test]
    async fn bad_dsn_posts_are_refused_with_a_reason() {
        let fake = Fake::default();
        let body = dsn("failed", "5.1.1");
        let b = body.as_bytes();
        let cases = [
            (
                "shop",
                pipe("guessed", "message/rfc822"),
                b,
                StatusCode::UNAUTHORIZED,
                "bad signature",
            ),
            (
                "shop",
                HeaderMap::new(),
                b,
                StatusCode::UNAUTHORIZED,
                "missing signature",
            ),
            (
                "shop",
                pipe("pipe-secret", "application/x-www-form-urlencoded"),
                b,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content-type must be message/rfc822",
            ),
            (
                "shop",
                basic("pipe-secret"),
                b,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content-type must be message/rfc822",
            ),
            (
                "shop",
                pipe("pipe-secret", "message/rfc822"),
                &b"From: a@example.com\r\nSubject: out of office\r\n\r\nback monday\r\n"[..],
                StatusCode::BAD_REQUEST,
                "invalid payload: not a multipart message",
            ),
            (
                "other",
                pipe("pipe-secret", "message/rfc822"),
                b,
                StatusCode::NOT_FOUND,
                "unknown tenant or provider",
            ),
        ];
        for (tenant, headers, body, status, reason) in cases {
            let answer = handle_dsn(&fake, tenant, &headers, body).await;
            assert_eq!(
                (answer.status, answer.body),
                (status, serde_json::json!({ "error": reason })),
                "{reason}"
            );
        }
        assert!(fake.recorded.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_router_serves_the_path() {
        let fake = Arc::new(Fake::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(fake.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let auth = STANDARD.encode("postmark:s3cret");
        let request = format!(
            "POST /v1/feedback/shop/postmark HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BOUNCE}",
            BOUNCE.len()
        );
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).await.unwrap();
            response
        };
        let response = tokio::time::timeout(std::time::Duration::from_secs(10), exchange)
            .await
            .unwrap();
        server.abort();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let (_, body) = response.split_once("\r\n\r\n").unwrap();
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"status": "recorded", "feedback": 1})
        );
        assert_eq!(fake.recorded.lock().unwrap().len(), 1);
    }

    /// One request over a socket to the router; the raw response.
    async fn exchange(app: Router, head: &str, body: &[u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let request = format!(
            "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            // The server may answer 413 before reading the whole body.
            let _ = stream.write_all(body).await;
            let mut response = Vec::new();
            let _ = stream.read_to_end(&mut response).await;
            String::from_utf8_lossy(&response).into_owned()
        };
        let response = tokio::time::timeout(std::time::Duration::from_secs(30), exchange)
            .await
            .unwrap();
        server.abort();
        response
    }

    #[tokio::test]
    async fn the_router_serves_the_dsn_intake_with_its_own_size_limit() {
        let fake = Arc::new(Fake::default());
        let auth = STANDARD.encode("postflow:pipe-secret");
        let head = format!(
            "POST /v1/feedback/shop/dsn HTTP/1.1\r\nAuthorization: Basic {auth}\r\nContent-Type: message/rfc822"
        );
        let body = dsn("failed", "5.1.1");
        let json = |response: &str| -> serde_json::Value {
            let (_, body) = response.split_once("\r\n\r\n").unwrap();
            serde_json::from_str(body).unwrap()
        };
        let response = exchange(router(fake.clone()), &head, body.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert_eq!(
            json(&response),
            serde_json::json!({"status": "recorded", "feedback": 1})
        );
        assert_eq!(fake.recorded.lock().unwrap()[0].1.provider, Origin::Dsn);

        // Larger than a provider webhook may be, within the DSN limit: read and parsed (the
        // same DSN with trailing bytes after its end: other bytes, so not a replay).
        let big = format!("{body}{}", "x".repeat(MAX_BODY));
        let response = exchange(router(fake.clone()), &head, big.as_bytes()).await;
        assert_eq!(
            json(&response),
            serde_json::json!({"status": "recorded", "feedback": 1})
        );
        let too_big = vec![b'x'; dsn::MAX_SIZE + 1];
        let response = exchange(router(fake.clone()), &head, &too_big).await;
        assert!(response.starts_with("HTTP/1.1 413"), "{response}");
        assert_eq!(fake.recorded.lock().unwrap().len(), 2);
    }
}
