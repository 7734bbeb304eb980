//! Exactly-once delivery: the send log, suppression, send-rate limits, the claim rule and
//! the retry deadline.
//!
//! The order of one attempt: a recorded outcome or a live claim ends it (below); then the
//! suppression check; then the message is formatted and signed; then one slot under each of
//! the tenant's send-rate limits; then the transport, which claims and sends.
//!
//! **Invariant (suppression):** checked before every send, against every suppression
//! source: a permanent bounce at send time, a provider's hard bounce or complaint webhook
//! (scope `all`), an unsubscribe from the tracker or a provider (scope `marketing`, which
//! transactional mail ignores), leaving one topic on the preferences page (scope
//! `topic:{id}`, which only marketing mail of that topic heeds). A suppressed message is
//! recorded `suppressed`, not sent.
//!
//! **Invariant (opting back in):** `email.resubscribed` lifts only the suppression an
//! unsubscribe made (`marketing`, or `topic:{id}` for that topic); a hard bounce or a
//! complaint (`all`) stays. Opt-outs and opt-ins are applied last change first
//! ([`Unsubscribes`]): out of order or replayed, they end in the recipient's latest choice.
//!
//! **Invariant (rate limits):** a slot is taken after the suppression check and before the
//! claim, so a suppressed message spends none and a message over the limit has claimed
//! nothing and sent nothing. Over a limit, the handler returns `Defer` until the next
//! window: the message goes back to the bus (not the retry schedule; it is not a failure
//! and has no deadline) and the consumer's slot is free for other tenants' messages in
//! the meantime. Waiting in place instead would let one tenant's backlog occupy every
//! in-flight slot of the lane, delaying every other tenant's mail. The bus's redelivery
//! after a `Defer` is precise enough that nothing is gained by waiting in place: measured
//! with three replicas (`tests/ratelimit.rs`), 60 messages at 5/s took exactly 12 windows,
//! and deferred messages reached the server 15–140 ms into their window. See
//! `ratelimit.rs` for the guard that keeps a slot's message inside its window at the
//! server.
//!
//! The rule. A message is claimed in the database (`state = 'sending'`) at the last moment
//! at which nothing has been handed over yet; the transport decides when that is:
//! - SMTP: after the server has accepted MAIL FROM, RCPT TO and DATA (it waits for the
//!   body) and the body has been written, and before the final dot is (the COMMIT and
//!   the dot leave in one poll; see `transport/smtp.rs`);
//! - HTTP providers: just before the request. One request hands the whole message over;
//!   there is no "354" moment to wait for.
//!
//! Then:
//! - a crash before the claim: nothing was sent (a server discards a transaction without
//!   its final dot; an HTTP request not made sends nothing); the redelivered message is
//!   sent normally;
//! - a crash after the claim: the message may or may not have been accepted. A redelivery
//!   that finds a claim younger than the claim lease waits (the first attempt may still be
//!   running); one that finds an older claim marks it `indeterminate` and does NOT send
//!   again. Postflow prefers a possibly-missed email to a possibly-duplicated one, and
//!   every indeterminate message is counted (`sender_indeterminate_total`) and kept for
//!   review;
//! - a crash after the outcome is recorded: the redelivery re-publishes the outcome event
//!   (same event id, deduplicated on the bus) and acknowledges.
//!
//! Why this is the safe choice over HTTP too. The window is one request's round trip
//! (bounded by `providers.timeout`) rather than the time to write one body, and the same
//! uncertainty arises without a crash: a request that went out and got no answer (a
//! timeout, a reset connection) may have been accepted. None of the providers we use (SES
//! `SendEmail`, Postmark `/email` and `/email/batch`, SendGrid `/v3/mail/send`, Mailgun
//! `messages.mime`) documents an idempotency key for sends, so sending again could deliver
//! twice; such a
//! message keeps its claim and becomes `indeterminate` like a crash. What is certain is
//! handled as such: no connection means nothing was sent (released, retried); a 429 or
//! 5xx answer means the provider did not take it (released, retried); a 2xx is `sent` with
//! the provider's message id as `response`. Our message id travels with every request
//! (SES email tag, Postmark `Metadata`, SendGrid `custom_args`, Mailgun user variable), so
//! the provider's webhooks and logs can be matched to the send log, and an indeterminate
//! message can be looked up at the provider.
//!
//! A refusal that says the message was not taken (SMTP 4xx, even after the final dot; HTTP
//! 429/5xx; an account problem) releases the claim and is retried. A permanent refusal
//! (SMTP 5xx, a provider's rejection) is a permanent bounce and suppresses the address.
//!
//! The deadline. Temporary failures are retried on the sender's own schedule (exponential
//! backoff with jitter, returned to the bus as a deferral) rather than the bus's transient
//! path, because the bus dead-letters after `max_attempts` (about an hour with the default
//! backoff) and a provider outage of a few hours must not dead-letter order confirmations.
//! The time of the first attempt is kept in `retries`; a temporary failure past
//! `retry_deadline` gives the message up: state `expired`, `email.bounced` with
//! `permanent = false` and the last error, no suppression (the address did nothing wrong),
//! and the message is acknowledged, not dead-lettered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::{Bus, Delivery, HandleError, Handler};
use contracts::{EmailAddress, EmailBounced, EmailSent, Envelope, Event, Lane, OutboundMessage, Source};
use kit::Clock;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;

use crate::mime;
use crate::ratelimit;
use crate::retry::{Next, RetryPolicy};
use crate::routes::Routes;
use crate::transport::{Accepted, BoxFuture, Claim, Failure, Outgoing};

pub struct Deliverer {
    /// One pool per lane: marketing work can never hold every database connection a
    /// transactional message needs.
    pub(crate) pool_tx: PgPool,
    pub(crate) pool_mkt: PgPool,
    pub(crate) bus: Bus,
    pub(crate) routes: Routes,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) claim_lease: Duration,
    pub(crate) retry: RetryPolicy,
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
        let scopes = suppression_scopes(msg);
        let reason: Option<String> = sqlx::query_scalar(
            "select reason from suppressions where tenant = $1 and email = $2 and scope = any($3) limit 1",
        )
        .bind(msg.tenant.as_str())
        .bind(msg.to.email.key())
        .bind(&scopes)
        .fetch_optional(self.db(msg.lane))
        .await
        .map_err(HandleError::transient)?;
        Ok(reason)
    }

    /// Inserts the claim; false if another attempt holds it already.
    async fn claim(&self, msg: &OutboundMessage, state: &str, response: Option<&str>) -> Result<bool, HandleError> {
        let inserted = claim_row(msg, state, response, self.clock.now())
            .execute(self.db(msg.lane))
            .await
            .map_err(HandleError::transient)?
            .rows_affected();
        Ok(inserted == 1)
    }

    /// Records the outcome. An upsert: if the claim's commit failed while the message went
    /// out anyway (see [`Claim::prepare`]), the outcome still lands in the send log.
    async fn finish(&self, msg: &OutboundMessage, state: &str, response: &str) -> Result<(), HandleError> {
        claim_row(msg, state, Some(response), self.clock.now())
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

    /// A recipient the provider keeps inactive: suppressed for this lane's mail only (see
    /// [`Failure::Inactive`]); no bounce is announced, nothing was sent.
    async fn suppress_lane(&self, msg: &OutboundMessage, reason: &str) -> Result<(), HandleError> {
        let scope = match msg.lane {
            Lane::Transactional => "all",
            Lane::Marketing => "marketing",
        };
        tracing::info!(reason = %reason, scope, "recipient inactive at the provider; suppressing for this lane");
        metrics::counter!("sender_messages_total", "lane" => msg.lane.token(), "outcome" => "inactive").increment(1);
        sqlx::query("insert into suppressions (tenant, email, scope, reason) values ($1, $2, $3, $4) on conflict do nothing")
            .bind(msg.tenant.as_str())
            .bind(msg.to.email.key())
            .bind(scope)
            .bind(format!("inactive at the provider: {reason}"))
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
            // `expired`: given up at the retry deadline; the address may well be fine.
            "bounced" | "expired" => (
                format!("email.bounced:{}", msg.message_id),
                Event::EmailBounced(EmailBounced {
                    message_id: msg.message_id.clone(),
                    recipient: msg.to.email.clone(),
                    permanent: state == "bounced",
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
        let started = self.clock.now();
        let route = self
            .routes
            .get(&msg.tenant)
            .ok_or_else(|| HandleError::permanent(anyhow::anyhow!("unknown tenant {}: not in the tenants directory", msg.tenant)))?;
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
        let mut body = mime::build(msg).map_err(HandleError::permanent)?;
        if let Some(signer) = &route.dkim {
            body = signer.sign(&body, self.clock.now()).map_err(|e| HandleError::permanent(anyhow::anyhow!("dkim signing: {e}")))?;
        }
        let from = mime::address(&msg.from.email).map_err(HandleError::permanent)?;
        let to = mime::address(&msg.to.email).map_err(HandleError::permanent)?;

        // The send-rate limits, last thing before the transport: a slot is spent only on a
        // message that is about to go. Refused: the message comes back at the next window.
        let limits = route.limits.for_message(msg.tenant.as_str(), msg.to.email.domain(), msg.lane);
        if let Some(wait) = ratelimit::acquire(self.db(msg.lane), &limits, self.clock.now()).await.map_err(HandleError::transient)? {
            tracing::debug!(wait_ms = wait.as_millis() as u64, "send rate limit reached; deferring to the next window");
            return Err(HandleError::Defer(wait));
        }

        let gate = Gate { deliverer: self, msg, claimed: AtomicBool::new(false), refused: Mutex::new(None) };
        let out = Outgoing { msg, mime: &body, from: &from, to: &to };
        let result = route.transport.send(&out, &gate).await;
        let claimed = gate.claimed.load(Ordering::SeqCst);
        match result {
            Ok(Accepted { response }) => {
                self.finish(msg, "sent", &response).await?;
                metrics::counter!("sender_messages_total", "lane" => msg.lane.token(), "outcome" => "sent").increment(1);
                tracing::info!(response = %response, transport = route.transport.name(), "sent");
                self.announce(msg, "sent", &response).await
            }
            Err(Failure::Permanent(reason)) if claimed => {
                self.finish(msg, "bounced", &reason).await?;
                self.after_bounce(msg, &reason).await
            }
            Err(Failure::Permanent(reason)) => self.bounce(msg, &reason).await,
            Err(Failure::Inactive(reason)) => {
                let state = if claimed { self.finish(msg, "suppressed", &reason).await.map(|()| true)? } else { self.claim(msg, "suppressed", Some(&reason)).await? };
                if !state {
                    return Err(HandleError::Defer(Duration::from_secs(1)));
                }
                self.suppress_lane(msg, &reason).await
            }
            Err(Failure::Temporary(reason)) => {
                if claimed {
                    self.release(msg).await?;
                }
                self.temporary(msg, started, &reason).await
            }
            // We cannot know whether it was taken; the claim stays, and the redelivery after
            // the lease marks it indeterminate.
            Err(Failure::Unknown(reason)) if claimed => Err(HandleError::transient(anyhow::anyhow!("{reason}; outcome unknown"))),
            Err(Failure::Unknown(reason)) => self.temporary(msg, started, &reason).await,
            Err(Failure::Invalid(reason)) => {
                if claimed {
                    self.release(msg).await?;
                }
                Err(HandleError::permanent(anyhow::anyhow!(reason)))
            }
            Err(Failure::NotClaimed) => Err(gate.refusal()),
        }
    }

    /// A temporary failure: retry later, or give up once past the deadline.
    async fn temporary(&self, msg: &OutboundMessage, started: OffsetDateTime, reason: &str) -> Result<(), HandleError> {
        let (first_attempt, failures): (OffsetDateTime, i32) = sqlx::query_as(
            "insert into retries (tenant, message_id, first_attempt_at, failures, last_error, updated_at)
             values ($1, $2, $3, 1, $4, $5)
             on conflict (tenant, message_id) do update
                set failures = retries.failures + 1, last_error = excluded.last_error, updated_at = excluded.updated_at
             returning first_attempt_at, failures",
        )
        .bind(msg.tenant.as_str())
        .bind(msg.message_id.as_str())
        .bind(started)
        .bind(reason)
        .bind(self.clock.now())
        .fetch_one(self.db(msg.lane))
        .await
        .map_err(HandleError::transient)?;
        let failures = u32::try_from(failures).unwrap_or(u32::MAX);
        match self.retry.next(first_attempt, self.clock.now(), failures, fastrand::f64(), reason) {
            Next::Retry(delay) => {
                tracing::warn!(error = %reason, failures, retry_in_ms = delay.as_millis() as u64, "temporary failure; will retry");
                metrics::counter!("sender_retries_total", "lane" => msg.lane.token()).increment(1);
                Err(HandleError::Defer(delay))
            }
            Next::GiveUp(why) => {
                if !self.claim(msg, "expired", Some(&why)).await? {
                    return Err(HandleError::Defer(Duration::from_secs(1)));
                }
                tracing::warn!(reason = %why, "retry deadline passed; giving up");
                metrics::counter!("sender_messages_total", "lane" => msg.lane.token(), "outcome" => "expired").increment(1);
                self.announce(msg, "expired", &why).await
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

/// The claim as a transport sees it: remembers whether it was taken, and why not.
/// The send-log row of `msg` in `state`: inserted as a claim (`sending`) or an outcome;
/// for an outcome, an existing claim is updated.
fn claim_row<'q>(
    msg: &'q OutboundMessage,
    state: &'q str,
    response: Option<&'q str>,
    now: OffsetDateTime,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let done = (state != "sending").then_some(now);
    let sql = if state == "sending" {
        "insert into deliveries (tenant, message_id, recipient, lane, template, flow, state, response, claimed_at, finished_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) on conflict do nothing"
    } else {
        "insert into deliveries (tenant, message_id, recipient, lane, template, flow, state, response, claimed_at, finished_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         on conflict (tenant, message_id) do update set state = excluded.state, response = excluded.response,
           finished_at = excluded.finished_at"
    };
    sqlx::query(sql)
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
}

struct Gate<'a> {
    deliverer: &'a Deliverer,
    msg: &'a OutboundMessage,
    claimed: AtomicBool,
    refused: Mutex<Option<HandleError>>,
}

impl Gate<'_> {
    /// What to tell the bus when the claim was refused.
    fn refusal(&self) -> HandleError {
        self.refused.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or(HandleError::Defer(Duration::from_secs(1)))
    }
}

impl Claim for Gate<'_> {
    fn claim(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let refused = match self.deliverer.claim(self.msg, "sending", None).await {
                Ok(true) => {
                    self.claimed.store(true, Ordering::SeqCst);
                    return true;
                }
                // Another attempt claimed it between our check and now.
                Ok(false) => HandleError::Defer(Duration::from_secs(1)),
                Err(e) => e,
            };
            *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(refused);
            false
        })
    }

    fn prepare(&self) -> BoxFuture<'_, Option<BoxFuture<'_, bool>>> {
        Box::pin(async move {
            let (d, msg) = (self.deliverer, self.msg);
            let attempt = async {
                let mut tx = d.db(msg.lane).begin().await?;
                let inserted = claim_row(msg, "sending", None, d.clock.now()).execute(&mut *tx).await?.rows_affected();
                Ok::<_, sqlx::Error>((tx, inserted))
            }
            .await;
            let refused = match attempt {
                Ok((tx, 1)) => {
                    let commit: BoxFuture<'_, bool> = Box::pin(async move {
                        match tx.commit().await {
                            Ok(()) => {
                                self.claimed.store(true, Ordering::SeqCst);
                                true
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "claim commit failed while the message was being handed over");
                                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(HandleError::transient(e));
                                false
                            }
                        }
                    });
                    return Some(commit);
                }
                Ok((tx, _)) => {
                    let _ = tx.rollback().await;
                    HandleError::Defer(Duration::from_secs(1))
                }
                Err(e) => HandleError::transient(e),
            };
            *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(refused);
            None
        })
    }
}

/// The suppression scopes that stop `msg`: `all` for every message; for marketing mail
/// also `marketing` and, when it has a topic, `topic:{id}`.
fn suppression_scopes(msg: &OutboundMessage) -> Vec<String> {
    let mut scopes = vec!["all".to_owned()];
    if msg.lane == Lane::Marketing {
        scopes.push("marketing".to_owned());
        scopes.extend(msg.topic.as_ref().map(|t| format!("topic:{t}")));
    }
    scopes
}

/// What an unsubscribe or resubscribe event asks of the suppression list.
#[derive(Debug, PartialEq, Eq)]
struct SubscriptionChange {
    /// `marketing` (all marketing mail) or `topic:{id}`.
    scope: String,
    subscribed: bool,
    /// The suppression's reason, for an opt-out.
    reason: String,
}

impl SubscriptionChange {
    /// The change `event` makes, if it is an unsubscribe or resubscribe (pure).
    fn of(event: &Event) -> Option<(&EmailAddress, Self)> {
        let scope = |topic: Option<&String>| topic.map_or_else(|| "marketing".to_owned(), |t| format!("topic:{t}"));
        Some(match event {
            Event::EmailUnsubscribed(u) => {
                (&u.recipient, Self { scope: scope(None), subscribed: false, reason: format!("unsubscribed ({})", u.method) })
            }
            Event::EmailTopicUnsubscribed(u) => (
                &u.recipient,
                Self {
                    scope: scope(Some(&u.topic)),
                    subscribed: false,
                    reason: format!("unsubscribed from topic {} ({})", u.topic, u.method),
                },
            ),
            Event::EmailResubscribed(r) => {
                (&r.recipient, Self { scope: scope(r.topic.as_ref()), subscribed: true, reason: String::new() })
            }
            _ => return None,
        })
    }
}

/// Applies `email.unsubscribed` (scope `marketing`), `email.topic_unsubscribed` (scope
/// `topic:{id}`) and `email.resubscribed` (lifts the suppression of its scope) to the
/// suppression list, in one transaction each.
///
/// The three types arrive on separate consumers, so a recipient's opt-out and opt-in may
/// be applied in either order; `subscription_changes` keeps the time of the latest change
/// per scope, and an event older than it (or the same one again) changes nothing. An
/// opt-in deletes only its own scope's row — never `all`, which hard bounces and
/// complaints write.
pub struct Unsubscribes {
    pub(crate) pool: PgPool,
}

/// Records a recipient's opt-out or opt-in for `scope` at `at`, unless a change at the same
/// time or later is recorded already: true when this change is now the latest (and its
/// effect on the suppressions should be applied in the same transaction).
pub(crate) async fn record_change(
    tx: &mut sqlx::PgConnection,
    tenant: &str,
    email: &str,
    scope: &str,
    subscribed: bool,
    at: OffsetDateTime,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "insert into subscription_changes (tenant, email, scope, subscribed, changed_at) values ($1, $2, $3, $4, $5)
         on conflict (tenant, email, scope) do update set subscribed = excluded.subscribed, changed_at = excluded.changed_at
         where subscription_changes.changed_at < excluded.changed_at",
    )
    .bind(tenant)
    .bind(email)
    .bind(scope)
    .bind(subscribed)
    .bind(at)
    .execute(tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

impl Unsubscribes {
    async fn apply(&self, env: &Envelope, recipient: &EmailAddress, change: &SubscriptionChange) -> Result<(), HandleError> {
        let (tenant, email) = (env.tenant.as_str(), recipient.key());
        let mut tx = self.pool.begin().await.map_err(HandleError::transient)?;
        let latest = record_change(&mut tx, tenant, &email, &change.scope, change.subscribed, env.occurred_at)
            .await
            .map_err(HandleError::transient)?;
        if !latest {
            tracing::debug!(scope = %change.scope, "a later change (or this one) is applied already; nothing to do");
            return Ok(());
        }
        if change.subscribed {
            sqlx::query("delete from suppressions where tenant = $1 and email = $2 and scope = $3 and scope <> 'all'")
                .bind(tenant)
                .bind(&email)
                .bind(&change.scope)
                .execute(&mut *tx)
                .await
                .map_err(HandleError::transient)?;
        } else {
            sqlx::query("insert into suppressions (tenant, email, scope, reason) values ($1, $2, $3, $4) on conflict do nothing")
                .bind(tenant)
                .bind(&email)
                .bind(&change.scope)
                .bind(&change.reason)
                .execute(&mut *tx)
                .await
                .map_err(HandleError::transient)?;
        }
        tx.commit().await.map_err(HandleError::transient)?;
        tracing::info!(scope = %change.scope, subscribed = change.subscribed, "subscription change applied");
        Ok(())
    }
}

impl Handler<Envelope> for Unsubscribes {
    async fn handle(&self, d: Delivery<Envelope>) -> Result<(), HandleError> {
        let env = &d.body;
        let Some((recipient, change)) = SubscriptionChange::of(&env.event) else { return Ok(()) };
        let span = tracing::info_span!("subscription_change", tenant = %env.tenant, event_id = %env.id, kind = env.kind().as_str());
        tracing::Instrument::instrument(self.apply(env, recipient, &change), span).await
    }
}

#[cfg(test)]
mod tests {
    use contracts::{EmailResubscribed, EmailTopicUnsubscribed, EmailUnsubscribed, Mailbox, MessageId, TenantId};

    use super::*;

    fn message(lane: Lane, topic: Option<&str>) -> OutboundMessage {
        OutboundMessage {
            spec: contracts::SPEC_VERSION,
            message_id: MessageId::derive(&["t"]),
            tenant: TenantId::parse("demo").unwrap(),
            lane,
            from: Mailbox { name: None, email: EmailAddress::parse("shop@demo.example").unwrap() },
            reply_to: None,
            to: Mailbox { name: None, email: EmailAddress::parse("ana@example.com").unwrap() },
            subject: "s".into(),
            html: String::new(),
            text: String::new(),
            headers: Vec::new(),
            template: "t".into(),
            topic: topic.map(str::to_owned),
            cause: contracts::Cause { flow: "f".into(), run_id: uuid::Uuid::nil(), step: 0, event_id: uuid::Uuid::nil() },
        }
    }

    #[test]
    fn topic_opt_outs_stop_only_marketing_mail_of_that_topic() {
        assert_eq!(suppression_scopes(&message(Lane::Transactional, None)), ["all"]);
        assert_eq!(suppression_scopes(&message(Lane::Transactional, Some("offers"))), ["all"], "transactional mail has no topics");
        assert_eq!(suppression_scopes(&message(Lane::Marketing, None)), ["all", "marketing"]);
        assert_eq!(suppression_scopes(&message(Lane::Marketing, Some("offers"))), ["all", "marketing", "topic:offers"]);
    }

    #[test]
    fn events_become_scoped_changes_and_opt_ins_never_name_all() {
        let ana = EmailAddress::parse("ana@example.com").unwrap();
        let m = MessageId::derive(&["t"]);
        let all = Event::EmailUnsubscribed(EmailUnsubscribed { message_id: m.clone(), recipient: ana.clone(), method: "one_click".into() });
        let (who, change) = SubscriptionChange::of(&all).unwrap();
        assert_eq!(who, &ana);
        assert_eq!(change, SubscriptionChange { scope: "marketing".into(), subscribed: false, reason: "unsubscribed (one_click)".into() });
        let topic = Event::EmailTopicUnsubscribed(EmailTopicUnsubscribed {
            message_id: m.clone(),
            recipient: ana.clone(),
            topic: "offers".into(),
            method: "preferences".into(),
        });
        assert_eq!(SubscriptionChange::of(&topic).unwrap().1.scope, "topic:offers");
        for (topic, scope) in [(None, "marketing"), (Some("offers"), "topic:offers")] {
            let back = Event::EmailResubscribed(EmailResubscribed {
                message_id: m.clone(),
                recipient: ana.clone(),
                topic: topic.map(str::to_owned),
                method: "preferences".into(),
            });
            let (_, change) = SubscriptionChange::of(&back).unwrap();
            assert!(change.subscribed);
            assert_eq!(change.scope, scope);
        }
        let other = Event::EmailOpened(contracts::EmailOpened { message_id: m, machine: false, user_agent: None });
        assert!(SubscriptionChange::of(&other).is_none());
    }
}
