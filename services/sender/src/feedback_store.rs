//! The sender's side of the feedback endpoints (`feedback::http`): each tenant's webhook
//! secret, the SNS certificate fetch and subscription confirmation, and recording a verified
//! delivery — suppressions, `email.bounced`, replay refusal — in one transaction.
//!
//! What a piece of feedback does:
//! - hard bounce: an `all` suppression, and `email.bounced` (`permanent = true`) when the
//!   payload names one of our messages to that recipient;
//! - complaint: an `all` suppression, and `email.complained` for our message;
//! - unsubscribe: a `marketing` suppression, and `email.unsubscribed` (method `provider`)
//!   for our message, so consent is updated where it is kept (the segmenter);
//! - soft bounce: nothing (the provider keeps trying; its final word comes as another event).
//!
//! DSNs (bounce messages mailed to the tenant's bounce address and piped to the intake)
//! are unauthenticated at their source — anyone can mail one — so a DSN's feedback counts
//! only when its message id and recipient match a message in the send log; otherwise it
//! is ignored (logged and counted), never suppressing an address on a stranger's word.
//!
//! Replays. A delivery's replay key (Mailgun signature token, SNS `MessageId`, the DSN's
//! `Message-ID` or digest) and each
//! piece of feedback's event id are stored in `feedback_replays` in the same transaction as
//! the suppressions: a repeated delivery is answered `replay` and changes nothing, a
//! repeated event inside a new delivery is skipped. Events are published before the
//! commit, so a failure anywhere rolls the delivery back and the provider's retry redoes
//! all of it; a repeated publish has the same event id and is deduplicated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use bus::Bus;
use contracts::{EmailBounced, EmailComplained, EmailUnsubscribed, Envelope, Event, Source, TenantId};
use kit::Clock;
use sqlx::PgPool;
use tenancy::Tenants;
use time::OffsetDateTime;

use crate::feedback::http::{BoxFuture, FeedbackBackend, Received, Recorded};
use crate::feedback::{Feedback, FeedbackKind, Origin};

/// How long replay keys are kept. Mailgun and SNS refuse stale signatures after minutes to
/// an hour; Postmark signs nothing with a time, so its record ids are kept for a month.
pub(crate) const REPLAY_RETENTION: time::Duration = time::Duration::days(30);
/// Largest SNS certificate or confirmation answer read.
const MAX_FETCH: usize = 64 * 1024;
/// Certificates kept in memory; SNS signs with a handful (per region, per rotation).
const MAX_CACHED: usize = 64;

pub(crate) struct FeedbackStore {
    tenants: Arc<Tenants>,
    pool: PgPool,
    bus: Bus,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    certificates: Mutex<HashMap<String, String>>,
    /// `insecure_sns_url_prefix`: one more trusted SNS URL prefix, for tests only.
    sns_url_prefix: Option<String>,
}

/// What one piece of feedback changes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Effect {
    /// `(scope, reason)` of the suppression to write.
    pub suppression: Option<(&'static str, String)>,
    /// `email.bounced`, if the feedback names our message (still to be checked against
    /// the send log).
    pub event: Option<Envelope>,
}

impl FeedbackStore {
    pub(crate) fn new(tenants: Arc<Tenants>, pool: PgPool, bus: Bus, clock: Arc<dyn Clock>, http: reqwest::Client) -> Self {
        Self { tenants, pool, bus, clock, http, certificates: Mutex::default(), sns_url_prefix: None }
    }

    /// Trusts SNS URLs under `prefix` besides SNS's own endpoints (a local stand-in in tests).
    pub(crate) fn with_sns_url_prefix(mut self, prefix: Option<String>) -> Self {
        self.sns_url_prefix = prefix;
        self
    }

    async fn store(&self, tenant: &TenantId, received: Received) -> anyhow::Result<Recorded> {
        let provider = received.provider.as_str();
        let now = self.clock.now();
        let mut tx = self.pool.begin().await.context("beginning the feedback transaction")?;
        if let Some(key) = &received.replay_key
            && !remember(&mut tx, tenant, provider, &format!("delivery:{key}"), now).await?
        {
            // Dropping the transaction rolls it back.
            return Ok(Recorded::Replay);
        }
        let mut events = Vec::new();
        let mut ignored = 0;
        for f in &received.feedback {
            if let Some(key) = event_key(f)
                && !remember(&mut tx, tenant, provider, &key, now).await?
            {
                tracing::info!(tenant = %tenant, provider, kind = %f.kind, "feedback event seen before; skipped");
                ignored += 1;
                continue;
            }
            let effect = effect(tenant, f);
            let acts = effect.suppression.is_some() || effect.event.is_some();
            if acts && f.origin == Origin::Dsn && !sent_to(&mut tx, tenant, f).await? {
                // Anyone can mail a DSN to the bounce address: without one of our messages
                // to that recipient behind it, it suppresses nobody.
                tracing::info!(tenant = %tenant, provider, kind = %f.kind, "dsn names no message we sent to that recipient; ignored");
                ignored += 1;
                continue;
            }
            if let Some((scope, reason)) = &effect.suppression {
                // An unsubscribe reported by the provider is one more opt-out: like those
                // from the tracker, it counts only if nothing later (an opt-in on the
                // preferences page) has been recorded for the recipient.
                if f.kind == FeedbackKind::Unsubscribe
                    && !crate::delivery::record_change(&mut tx, tenant.as_str(), &f.recipient.key(), scope, false, f.occurred_at)
                        .await
                        .context("recording the opt-out")?
                {
                    tracing::info!(tenant = %tenant, provider, "provider unsubscribe older than the recipient's latest choice; not applied");
                    ignored += 1;
                    continue;
                }
                sqlx::query("insert into suppressions (tenant, email, scope, reason) values ($1, $2, $3, $4) on conflict do nothing")
                    .bind(tenant.as_str())
                    .bind(f.recipient.key())
                    .bind(*scope)
                    .bind(reason)
                    .execute(&mut *tx)
                    .await
                    .context("writing the suppression")?;
                tracing::info!(tenant = %tenant, provider, kind = %f.kind, scope = *scope, "recipient suppressed by provider feedback");
            }
            if let Some(event) = effect.event {
                // Only our own messages to that recipient: a payload cannot make us announce
                // a bounce for a message id we never sent to it.
                if sent_to(&mut tx, tenant, f).await? {
                    events.push(event);
                } else {
                    tracing::info!(tenant = %tenant, provider, "feedback names a message not in the send log; not announced");
                }
            }
        }
        for event in &events {
            self.bus.publish_event(event).await.context("publishing email.bounced")?;
        }
        tx.commit().await.context("committing the feedback")?;
        Ok(Recorded::Stored { ignored })
    }

    async fn certificate(&self, url: &str) -> anyhow::Result<String> {
        if let Some(pem) = self.certificates.lock().unwrap_or_else(|p| p.into_inner()).get(url) {
            return Ok(pem.clone());
        }
        let pem = self.get(url).await.context("fetching the sns signing certificate")?;
        anyhow::ensure!(pem.contains("-----BEGIN CERTIFICATE-----"), "the sns signing certificate is not pem");
        let mut cache = self.certificates.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(url.to_owned(), pem.clone());
        Ok(pem)
    }

    /// GETs `url` (already checked to be an SNS endpoint) and reads at most [`MAX_FETCH`].
    async fn get(&self, url: &str) -> anyhow::Result<String> {
        let mut response = self.http.get(url).send().await.with_context(|| format!("get {url}"))?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "get {url}: answered {status}");
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.with_context(|| format!("reading {url}"))? {
            body.extend_from_slice(&chunk);
            anyhow::ensure!(body.len() <= MAX_FETCH, "get {url}: answer larger than {MAX_FETCH} bytes");
        }
        String::from_utf8(body).with_context(|| format!("get {url}: answer is not utf-8"))
    }
}

/// Whether the send log has `f`'s message, to `f`'s recipient.
async fn sent_to(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, tenant: &TenantId, f: &Feedback) -> anyhow::Result<bool> {
    let Some(message_id) = &f.message_id else { return Ok(false) };
    let sent: Option<i32> = sqlx::query_scalar("select 1 from deliveries where tenant = $1 and message_id = $2 and lower(recipient) = $3")
        .bind(tenant.as_str())
        .bind(message_id.as_str())
        .bind(f.recipient.key())
        .fetch_optional(&mut **tx)
        .await
        .context("looking up the message in the send log")?;
    Ok(sent.is_some())
}

/// Remembers `key`; false if it was there already.
async fn remember(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant: &TenantId,
    provider: &str,
    key: &str,
    now: OffsetDateTime,
) -> anyhow::Result<bool> {
    let inserted = sqlx::query("insert into feedback_replays (tenant, provider, key, received_at) values ($1, $2, $3, $4) on conflict do nothing")
        .bind(tenant.as_str())
        .bind(provider)
        .bind(key)
        .bind(now)
        .execute(&mut **tx)
        .await
        .context("recording the replay key")?
        .rows_affected();
    Ok(inserted == 1)
}

/// Forgets replay keys older than [`REPLAY_RETENTION`].
pub(crate) async fn prune(pool: &PgPool, now: OffsetDateTime) -> sqlx::Result<u64> {
    Ok(sqlx::query("delete from feedback_replays where received_at < $1")
        .bind(now - REPLAY_RETENTION)
        .execute(pool)
        .await?
        .rows_affected())
}

/// The tenant's verification material for `origin`: its `delivery.webhook_secret`, when
/// its `delivery.provider` is that provider, or for DSNs when it sends through the SMTP
/// relay (DSNs of a provider's mail go to the provider).
pub(crate) fn secret_for(delivery: &tenancy::Delivery, origin: Origin) -> Option<String> {
    let own = match origin {
        Origin::Dsn => delivery.provider == tenancy::Provider::Smtp,
        _ => delivery.provider.as_str() == origin.as_str(),
    };
    if !own {
        return None;
    }
    delivery.webhook_secret.as_ref().map(|s| s.expose().to_owned())
}

/// The replay key of one piece of feedback: its source's event id with the recipient (one
/// SES bounce names several recipients under one id).
pub(crate) fn event_key(f: &Feedback) -> Option<String> {
    f.event_id.as_ref().map(|id| format!("event:{id}:{}", f.recipient.key()))
}

/// The suppression reason and event text.
pub(crate) fn describe(f: &Feedback) -> String {
    let what = match f.kind {
        FeedbackKind::HardBounce => "hard bounce",
        FeedbackKind::SoftBounce => "soft bounce",
        FeedbackKind::Complaint => "complaint",
        FeedbackKind::Unsubscribe => "unsubscribed",
    };
    match f.reason.trim() {
        "" => format!("{what} ({})", f.origin),
        reason => format!("{what} ({}): {reason}", f.origin),
    }
}

/// What `f` changes for `tenant` (pure).
pub(crate) fn effect(tenant: &TenantId, f: &Feedback) -> Effect {
    let scope = match f.kind {
        FeedbackKind::HardBounce | FeedbackKind::Complaint => Some("all"),
        FeedbackKind::Unsubscribe => Some("marketing"),
        FeedbackKind::SoftBounce => None,
    };
    let event = f.message_id.as_ref().and_then(|message_id| {
        let (message_id, recipient) = (message_id.clone(), f.recipient.clone());
        // A hard bounce shares the id of the bounce the sender announces itself (one bounce
        // per message); complaints and unsubscribes come after a delivery and have their own.
        let (key, event) = match f.kind {
            FeedbackKind::HardBounce => (
                format!("email.bounced:{message_id}"),
                Event::EmailBounced(EmailBounced { message_id: message_id.clone(), recipient, permanent: true, reason: describe(f) }),
            ),
            FeedbackKind::Complaint => (
                format!("email.complained:{message_id}"),
                Event::EmailComplained(EmailComplained { message_id: message_id.clone(), recipient, reason: describe(f) }),
            ),
            FeedbackKind::Unsubscribe => (
                format!("email.unsubscribed:{message_id}:provider"),
                Event::EmailUnsubscribed(EmailUnsubscribed { message_id: message_id.clone(), recipient, method: "provider".to_owned() }),
            ),
            FeedbackKind::SoftBounce => return None,
        };
        let source = Source { system: f.origin.as_str().to_owned(), delivery_id: f.event_id.clone(), topic: Some(f.kind.as_str().to_owned()) };
        Some(Envelope::new(tenant.clone(), f.occurred_at, source, key, event))
    });
    Effect { suppression: scope.map(|s| (s, describe(f))), event }
}

impl FeedbackBackend for FeedbackStore {
    fn webhook_secret(&self, tenant: &TenantId, provider: Origin) -> Option<String> {
        self.tenants.get(tenant).and_then(|t| secret_for(&t.delivery, provider))
    }

    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    fn sns_trusted_url_prefix(&self) -> Option<&str> {
        self.sns_url_prefix.as_deref()
    }

    fn sns_certificate<'a>(&'a self, url: &'a str) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(self.certificate(url))
    }

    fn confirm_sns_subscription<'a>(&'a self, _tenant: &'a TenantId, subscribe_url: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.get(subscribe_url).await.context("confirming the sns subscription")?;
            Ok(())
        })
    }

    fn record<'a>(&'a self, tenant: &'a TenantId, received: Received) -> BoxFuture<'a, anyhow::Result<Recorded>> {
        Box::pin(self.store(tenant, received))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use contracts::{EmailAddress, MessageId};
    use time::macros::datetime;

    fn feedback(kind: FeedbackKind, message_id: Option<&str>) -> Feedback {
        Feedback {
            recipient: EmailAddress::parse("Ada@Example.com").unwrap(),
            kind,
            origin: Origin::Postmark,
            reason: "550 5.1.1 unknown".to_owned(),
            status: Some("5.1.1".to_owned()),
            message_id: message_id.map(|m| MessageId::parse(m).unwrap()),
            event_id: Some("42".to_owned()),
            occurred_at: datetime!(2026-11-24 09:00 UTC),
        }
    }

    const MID: &str = "m_0123456789abcdef0123456789abcdef";

    fn tenant() -> TenantId {
        TenantId::parse("shop").unwrap()
    }

    #[test]
    fn the_secret_is_the_tenants_only_for_its_own_provider() {
        let delivery = tenancy::Delivery {
            provider: tenancy::Provider::Postmark,
            webhook_secret: Some(tenancy::Secret::new("s3cret")),
            ..Default::default()
        };
        assert_eq!(secret_for(&delivery, Origin::Postmark).as_deref(), Some("s3cret"));
        assert_eq!(secret_for(&delivery, Origin::Mailgun), None);
        assert_eq!(secret_for(&delivery, Origin::Dsn), None);
        let unset = tenancy::Delivery { provider: tenancy::Provider::Postmark, ..Default::default() };
        assert_eq!(secret_for(&unset, Origin::Postmark), None);
        // The SMTP relay's secret opens the DSN intake and no provider's webhook.
        let relay = tenancy::Delivery { webhook_secret: Some(tenancy::Secret::new("pipe")), ..Default::default() };
        assert_eq!(secret_for(&relay, Origin::Dsn).as_deref(), Some("pipe"));
        assert_eq!(secret_for(&relay, Origin::Postmark), None);
    }

    #[test]
    fn complaints_are_their_own_event() {
        let e = effect(&tenant(), &feedback(FeedbackKind::Complaint, Some(MID)));
        assert_eq!(e.suppression.as_ref().map(|(s, _)| *s), Some("all"));
        let event = e.event.unwrap();
        assert_eq!(event.idempotency_key, format!("email.complained:{MID}"));
        match event.event {
            Event::EmailComplained(c) => {
                assert_eq!(c.message_id.as_str(), MID);
                assert_eq!(c.reason, "complaint (postmark): 550 5.1.1 unknown");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hard_bounces_suppress_everything_and_are_announced() {
        {
            let (kind, key, reason) = (FeedbackKind::HardBounce, format!("email.bounced:{MID}"), "hard bounce (postmark): 550 5.1.1 unknown");
            let e = effect(&tenant(), &feedback(kind, Some(MID)));
            assert_eq!(e.suppression, Some(("all", reason.to_owned())), "{kind}");
            let event = e.event.unwrap();
            assert_eq!(event.idempotency_key, key);
            assert_eq!(event.occurred_at, datetime!(2026-11-24 09:00 UTC));
            assert_eq!(event.source.system, "postmark");
            assert_eq!(event.source.delivery_id.as_deref(), Some("42"));
            match event.event {
                Event::EmailBounced(b) => {
                    assert!(b.permanent);
                    assert_eq!(b.message_id.as_str(), MID);
                    assert_eq!(b.recipient.key(), "ada@example.com");
                    assert_eq!(b.reason, reason);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_hard_bounce_has_the_id_of_the_senders_own_bounce() {
        let e = effect(&tenant(), &feedback(FeedbackKind::HardBounce, Some(MID))).event.unwrap();
        let own = Envelope::new(
            tenant(),
            datetime!(2020-01-01 00:00 UTC),
            Source { system: "sender".into(), delivery_id: None, topic: None },
            format!("email.bounced:{MID}"),
            e.event.clone(),
        );
        assert_eq!(e.id, own.id);
    }

    #[test]
    fn unsubscribes_suppress_marketing_and_soft_bounces_nothing() {
        let u = effect(&tenant(), &feedback(FeedbackKind::Unsubscribe, Some(MID)));
        assert_eq!(u.suppression.map(|(s, _)| s), Some("marketing"));
        match u.event.map(|e| e.event) {
            Some(Event::EmailUnsubscribed(x)) => assert_eq!(x.method, "provider"),
            other => panic!("{other:?}"),
        }
        let soft = effect(&tenant(), &feedback(FeedbackKind::SoftBounce, Some(MID)));
        assert_eq!(soft, Effect { suppression: None, event: None });
    }

    #[test]
    fn without_our_message_id_there_is_no_event() {
        let e = effect(&tenant(), &feedback(FeedbackKind::HardBounce, None));
        assert!(e.suppression.is_some());
        assert!(e.event.is_none());
    }

    #[test]
    fn event_keys_name_the_recipient_and_reasons_stay_readable_when_empty() {
        let mut f = feedback(FeedbackKind::Complaint, None);
        assert_eq!(event_key(&f).as_deref(), Some("event:42:ada@example.com"));
        f.event_id = None;
        assert_eq!(event_key(&f), None);
        f.reason = " ".to_owned();
        assert_eq!(describe(&f), "complaint (postmark)");
    }
}
