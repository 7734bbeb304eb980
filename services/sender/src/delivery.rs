//! Exactly-once delivery: the send log, suppression, and the claim rule.
//!
//! The rule. A message is claimed in the database (`state = 'sending'`) only after the
//! SMTP server has accepted MAIL FROM, RCPT TO and DATA (it waits for the body), and
//! before the body and its final dot are written. Then:
//! - a crash before the claim: nothing was sent (a server discards a transaction without
//!   its final dot); the redelivered message is sent normally;
//! - a crash after the claim: the message may or may not have been accepted. A redelivery
//!   that finds a claim younger than the claim lease waits (the first attempt may still be
//!   running); one that finds an older claim marks it `indeterminate` and does NOT send
//!   again. Postflow prefers a possibly-missed email to a possibly-duplicated one; the
//!   window is the time it takes to write one message body, and every indeterminate
//!   message is counted (`sender_indeterminate_total`) and kept for review;
//! - a crash after the outcome is recorded: the redelivery re-publishes the outcome event
//!   (same event id, deduplicated on the bus) and acknowledges.
//!
//! A 4xx after the final dot means the server did not take the message: the claim is
//! released and the message is retried with backoff.

use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, Delivery, HandleError, Handler};
use contracts::{EmailBounced, EmailSent, Envelope, Event, Lane, OutboundMessage, Source};
use kit::Clock;
use sqlx::{PgPool, Row};

use crate::mime;
use crate::smtp::{Pool, SmtpFailure};

pub struct Deliverer {
    /// One pool per lane: marketing work can never hold every database connection a
    /// transactional message needs.
    pub(crate) pool_tx: PgPool,
    pub(crate) pool_mkt: PgPool,
    pub(crate) bus: Bus,
    pub(crate) smtp_tx: Pool,
    pub(crate) smtp_mkt: Pool,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) claim_lease: Duration,
}

enum Prior {
    None,
    Done { state: String, response: Option<String> },
    Claimed { age: Duration },
}

impl Deliverer {
    fn db(&self, lane: Lane) -> &PgPool {
        match lane {
            Lane::Transactional => &self.pool_tx,
            Lane::Marketing => &self.pool_mkt,
        }
    }

    fn smtp(&self, lane: Lane) -> &Pool {
        match lane {
            Lane::Transactional => &self.smtp_tx,
            Lane::Marketing => &self.smtp_mkt,
        }
    }

    async fn prior(&self, msg: &OutboundMessage) -> Result<Prior, HandleError> {
        let row = sqlx::query("select state, response, claimed_at from deliveries where tenant = $1 and message_id = $2")
            .bind(msg.tenant.as_str())
            .bind(msg.message_id.as_str())
            .fetch_optional(self.db(msg.lane))
            .await
            .map_err(HandleError::transient)?;
        let Some(row) = row else { return Ok(Prior::None) };
        let state: String = row.try_get("state").map_err(HandleError::transient)?;
        if state == "sending" {
            let claimed: time::OffsetDateTime = row.try_get("claimed_at").map_err(HandleError::transient)?;
            let age = (self.clock.now() - claimed).try_into().unwrap_or(Duration::ZERO);
            return Ok(Prior::Claimed { age });
        }
        Ok(Prior::Done { state, response: row.try_get("response").map_err(HandleError::transient)? })
    }

    async fn suppressed(&self, msg: &OutboundMessage) -> Result<Option<String>, HandleError> {
        let scopes: &[&str] = match msg.lane {
            Lane::Transactional => &["all"],
            Lane::Marketing => &["all", "marketing"],
        };
        let reason: Option<String> = sqlx::query_scalar(
            "select reason from suppressions where tenant = $1 and email = $2 and scope = any($3) limit 1",
        )
        .bind(msg.tenant.as_str())
        .bind(msg.to.email.key())
        .bind(scopes)
        .fetch_optional(self.db(msg.lane))
        .await
        .map_err(HandleError::transient)?;
        Ok(reason)
    }

    /// Inserts the claim; false if another attempt holds it already.
    async fn claim(&self, msg: &OutboundMessage, state: &str, response: Option<&str>) -> Result<bool, HandleError> {
        let now = self.clock.now();
        let done = (state != "sending").then_some(now);
        let inserted = sqlx::query(
            "insert into deliveries (tenant, message_id, recipient, lane, template, flow, state, response, claimed_at, finished_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) on conflict do nothing",
        )
        .bind(msg.tenant.as_str())
        .bind(msg.message_id.as_str())
        .bind(msg.to.email.as_str())
        .bind(msg.lane.token())
        .bind(&msg.template)
        .bind(&msg.cause.flow)
        .bind(state)
        .bind(response)
        .bind(now)
        .bind(done)
        .execute(self.db(msg.lane))
        .await
        .map_err(HandleError::transient)?
        .rows_affected();
        Ok(inserted == 1)
    }

    async fn finish(&self, msg: &OutboundMessage, state: &str, response: &str) -> Result<(), HandleError> {
        sqlx::query("update deliveries set state = $3, response = $4, finished_at = $5 where tenant = $1 and message_id = $2")
            .bind(msg.tenant.as_str())
            .bind(msg.message_id.as_str())
            .bind(state)
            .bind(response)
            .bind(self.clock.now())
            .execute(self.db(msg.lane))
            .await
            .map_err(HandleError::transient)?;
        Ok(())
    }

    async fn release(&self, msg: &OutboundMessage) -> Result<(), HandleError> {
        sqlx::query("delete from deliveries where tenant = $1 and message_id = $2 and state = 'sending'")
            .bind(msg.tenant.as_str())
            .bind(msg.message_id.as_str())
            .execute(self.db(msg.lane))
            .await
            .map_err(HandleError::transient)?;
        Ok(())
    }

    async fn suppress(&self, msg: &OutboundMessage, reason: &str) -> Result<(), HandleError> {
        sqlx::query("insert into suppressions (tenant, email, scope, reason) values ($1, $2, 'all', $3) on conflict do nothing")
            .bind(msg.tenant.as_str())
            .bind(msg.to.email.key())
            .bind(reason)
            .execute(self.db(msg.lane))
            .await
            .map_err(HandleError::transient)?;
        Ok(())
    }

    /// Publishes the outcome event for a finished delivery (idempotent: the event id is
    /// derived from the message id).
    async fn announce(&self, msg: &OutboundMessage, state: &str, response: &str) -> Result<(), HandleError> {
        let (key, event) = match state {
            "sent" => (
                format!("email.sent:{}", msg.message_id),
                Event::EmailSent(EmailSent {
                    message_id: msg.message_id.clone(),
                    recipient: msg.to.email.clone(),
                    lane: msg.lane,
                    template: msg.template.clone(),
                    flow: msg.cause.flow.clone(),
                    response: response.to_owned(),
                }),
            ),
            "bounced" => (
                format!("email.bounced:{}", msg.message_id),
                Event::EmailBounced(EmailBounced {
                    message_id: msg.message_id.clone(),
                    recipient: msg.to.email.clone(),
                    permanent: true,
                    reason: response.to_owned(),
                }),
            ),
            _ => return Ok(()),
        };
        let source = Source { system: "sender".into(), delivery_id: None, topic: None };
        let env = Envelope::new(msg.tenant.clone(), self.clock.now(), source, key, event);
        self.bus.publish_event(&env).await.map_err(HandleError::transient)?;
        Ok(())
    }

    async fn deliver(&self, msg: &OutboundMessage) -> Result<(), HandleError> {
        match self.prior(msg).await? {
            Prior::Done { state, response } => {
                tracing::info!(state = %state, "already delivered; not sending again");
                return self.announce(msg, &state, response.as_deref().unwrap_or("")).await;
            }
            Prior::Claimed { age } if age < self.claim_lease => {
                return Err(HandleError::Defer(self.claim_lease.saturating_sub(age).max(Duration::from_millis(200))));
            }
            Prior::Claimed { .. } => {
                tracing::warn!("claim expired without an outcome; marking indeterminate, not resending");
                metrics::counter!("sender_indeterminate_total").increment(1);
                return self.finish(msg, "indeterminate", "claim expired without an outcome").await;
            }
            Prior::None => {}
        }
        if let Some(reason) = self.suppressed(msg).await? {
            tracing::info!(reason = %reason, "recipient suppressed; not sending");
            metrics::counter!("sender_suppressed_total").increment(1);
            self.claim(msg, "suppressed", Some(&reason)).await?;
            return Ok(());
        }
        let body = mime::build(msg).map_err(HandleError::permanent)?;
        let from = mime::address(&msg.from.email).map_err(HandleError::permanent)?;
        let to = mime::address(&msg.to.email).map_err(HandleError::permanent)?;

        let smtp = self.smtp(msg.lane);
        let mut conn = smtp.get().await.map_err(HandleError::transient)?;
        let mut began = conn.begin(&from, &to).await;
        if matches!(began, Err(SmtpFailure::Broken(_))) && !conn.is_fresh() {
            // An idle pooled connection the server had closed: one fresh try.
            drop(conn);
            conn = smtp.get().await.map_err(HandleError::transient)?;
            began = conn.begin(&from, &to).await;
        }
        match began {
            Ok(()) => {}
            Err(SmtpFailure::Permanent(reason)) => return self.bounce(msg, &reason).await,
            Err(e) => return Err(HandleError::transient(e)),
        }
        if !self.claim(msg, "sending", None).await? {
            // Another attempt claimed it between our check and now.
            conn.reset().await;
            return Err(HandleError::Defer(Duration::from_secs(1)));
        }
        match conn.finish(&body).await {
            Ok(response) => {
                drop(conn);
                self.finish(msg, "sent", &response).await?;
                metrics::counter!("sender_messages_total", "lane" => msg.lane.token(), "outcome" => "sent").increment(1);
                tracing::info!(response = %response, "sent");
                self.announce(msg, "sent", &response).await
            }
            Err(SmtpFailure::Permanent(reason)) => {
                self.finish(msg, "bounced", &reason).await?;
                self.after_bounce(msg, &reason).await
            }
            Err(SmtpFailure::Transient(reason)) => {
                self.release(msg).await?;
                Err(HandleError::transient(anyhow::anyhow!(reason)))
            }
            Err(SmtpFailure::Broken(reason)) => {
                // We cannot know whether the server took it; the claim stays, and the
                // redelivery after the lease marks it indeterminate.
                conn.discard();
                Err(HandleError::transient(anyhow::anyhow!("{reason}; outcome unknown")))
            }
        }
    }

    async fn bounce(&self, msg: &OutboundMessage, reason: &str) -> Result<(), HandleError> {
        if !self.claim(msg, "bounced", Some(reason)).await? {
            return Err(HandleError::Defer(Duration::from_secs(1)));
        }
        self.after_bounce(msg, reason).await
    }

    async fn after_bounce(&self, msg: &OutboundMessage, reason: &str) -> Result<(), HandleError> {
        tracing::info!(reason = %reason, "permanent failure; suppressing recipient");
        metrics::counter!("sender_messages_total", "lane" => msg.lane.token(), "outcome" => "bounced").increment(1);
        self.suppress(msg, reason).await?;
        self.announce(msg, "bounced", reason).await
    }
}

impl Handler<OutboundMessage> for Deliverer {
    async fn handle(&self, d: Delivery<OutboundMessage>) -> Result<(), HandleError> {
        let msg = d.body;
        let span = tracing::info_span!("deliver", tenant = %msg.tenant, message_id = %msg.message_id, lane = msg.lane.token());
        tracing::Instrument::instrument(self.deliver(&msg), span).await
    }
}

/// Records unsubscribes as marketing suppressions.
pub struct Unsubscribes {
    pub(crate) pool: PgPool,
}

impl Handler<Envelope> for Unsubscribes {
    async fn handle(&self, d: Delivery<Envelope>) -> Result<(), HandleError> {
        let Event::EmailUnsubscribed(u) = &d.body.event else { return Ok(()) };
        sqlx::query("insert into suppressions (tenant, email, scope, reason) values ($1, $2, 'marketing', $3) on conflict do nothing")
            .bind(d.body.tenant.as_str())
            .bind(u.recipient.key())
            .bind(format!("unsubscribed ({})", u.method))
            .execute(&self.pool)
            .await
            .map_err(HandleError::transient)?;
        Ok(())
    }
}
