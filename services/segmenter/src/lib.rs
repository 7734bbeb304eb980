//! Segmenter: keeps each tenant's customer profiles (who, locale, first and last order,
//! order count, total spent) and marketing consent, in its own database. Every event is
//! applied in one transaction together with its id, so redelivery changes nothing.
//!
//! Consent is kept per channel: `email_marketing` (all marketing mail: withdrawn by
//! `email.unsubscribed` or a complaint, given back by `email.resubscribed` without a topic)
//! and `email_marketing:{topic}` (one topic of the preferences page:
//! `email.topic_unsubscribed`, `email.resubscribed` with that topic). A change older than
//! the recorded one does not overwrite it.

use std::net::SocketAddr;
use std::sync::Arc;

use bus::{Bus, BusSettings, ConsumerSpec, Delivery, Feed, HandleError, Handler};
use contracts::{EmailAddress, Envelope, Event, EventKind, MessageId, Order};
use kit::db::DbSettings;
use kit::http::Readiness;
use kit::settings::{HttpSettings, ShutdownSettings};
use kit::Supervisor;
use serde::Deserialize;
use sqlx::PgPool;
use telemetry::TelemetrySettings;
use tokio::net::TcpListener;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Unknown top-level sections are ignored (one environment can serve every service);
/// unknown keys inside a section are errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub nats: BusSettings,
    pub database: DbSettings,
    pub concurrency: usize,
    pub shutdown: ShutdownSettings,
    pub telemetry: TelemetrySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::on("127.0.0.1:8082"),
            nats: BusSettings::default(),
            database: DbSettings::new("postgres://postgres@127.0.0.1:5432/segmenter"),
            concurrency: 16,
            shutdown: ShutdownSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

pub struct Application {
    listener: TcpListener,
    bus: Bus,
    pool: PgPool,
    settings: Settings,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = kit::db::connect(&settings.database, &MIGRATOR).await?;
        let bus = Bus::connect(&settings.nats, "segmenter").await?;
        bus.ensure_topology().await?;
        let listener = TcpListener::bind(settings.http.addr).await?;
        Ok(Self { listener, bus, pool, settings })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.settings.http.addr)
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let mut sup = Supervisor::new("segmenter");
        let stop = sup.stop_token();
        let drain = self.settings.shutdown.drain_timeout;
        let handler = Arc::new(Profiles { pool: self.pool.clone() });
        for kind in [
            EventKind::OrderPlaced,
            EventKind::EmailUnsubscribed,
            EventKind::EmailComplained,
            EventKind::EmailTopicUnsubscribed,
            EventKind::EmailResubscribed,
        ] {
            let spec = ConsumerSpec::new("segmenter", Feed::Events(kind), self.settings.concurrency);
            let (bus, handler, stop) = (self.bus.clone(), handler.clone(), stop.clone());
            sup.spawn(spec.durable_name(), async move { bus.run_consumer::<Envelope, _>(spec, handler, stop, drain).await });
        }
        let router = kit::http::ops_router(Readiness { bus: Some(self.bus.clone()), db: Some(self.pool.clone()), stop: stop.clone() });
        sup.spawn("http", kit::http::serve(self.listener, router, stop));
        let result = sup.run(shutdown, drain).await;
        self.pool.close().await;
        result
    }
}

/// Applies events to profiles and consents.
pub struct Profiles {
    pool: PgPool,
}

impl Handler<Envelope> for Profiles {
    async fn handle(&self, d: Delivery<Envelope>) -> Result<(), HandleError> {
        let env = d.body;
        let mut tx = self.pool.begin().await.map_err(HandleError::transient)?;
        let fresh = sqlx::query("insert into processed_events (tenant, event_id) values ($1, $2) on conflict do nothing")
            .bind(env.tenant.as_str())
            .bind(env.id)
            .execute(&mut *tx)
            .await
            .map_err(HandleError::transient)?
            .rows_affected()
            == 1;
        if !fresh {
            tracing::debug!(event_id = %env.id, "event already applied");
            return Ok(());
        }
        match (&env.event, consent_change(&env.event)) {
            (Event::OrderPlaced(placed), _) => apply_order(&mut tx, env.tenant.as_str(), &placed.order).await?,
            (_, Some(c)) => {
                sqlx::query(
                    "insert into consents (tenant, email, channel, status, source, message_id, recorded_at)
                     values ($1, $2, $3, $4, $5, $6, $7)
                     on conflict (tenant, email, channel) do update
                     set status = excluded.status, source = excluded.source,
                         message_id = excluded.message_id, recorded_at = excluded.recorded_at
                     where consents.recorded_at <= excluded.recorded_at",
                )
                .bind(env.tenant.as_str())
                .bind(c.recipient.key())
                .bind(&c.channel)
                .bind(c.status)
                .bind(c.source)
                .bind(c.message_id.as_str())
                .bind(env.occurred_at)
                .execute(&mut *tx)
                .await
                .map_err(HandleError::transient)?;
            }
            (other, None) => tracing::debug!(kind = other.kind().as_str(), "event not used by the segmenter"),
        }
        tx.commit().await.map_err(HandleError::transient)?;
        Ok(())
    }
}

/// A change of consent on one channel.
#[derive(Debug, PartialEq, Eq)]
struct ConsentChange<'a> {
    recipient: &'a EmailAddress,
    /// `email_marketing` or `email_marketing:{topic}`.
    channel: String,
    status: &'static str,
    /// How: the event's method (`one_click`, `link`, `preferences`, `provider`) or
    /// `complaint`.
    source: &'a str,
    message_id: &'a MessageId,
}

/// The consent `event` changes, if any (pure). A spam complaint withdraws marketing
/// consent just as an unsubscribe does.
fn consent_change(event: &Event) -> Option<ConsentChange<'_>> {
    let channel = |topic: Option<&String>| topic.map_or_else(|| "email_marketing".to_owned(), |t| format!("email_marketing:{t}"));
    let (recipient, channel, status, source, message_id) = match event {
        Event::EmailUnsubscribed(u) => (&u.recipient, channel(None), "unsubscribed", u.method.as_str(), &u.message_id),
        Event::EmailComplained(c) => (&c.recipient, channel(None), "unsubscribed", "complaint", &c.message_id),
        Event::EmailTopicUnsubscribed(u) => {
            (&u.recipient, channel(Some(&u.topic)), "unsubscribed", u.method.as_str(), &u.message_id)
        }
        Event::EmailResubscribed(r) => (&r.recipient, channel(r.topic.as_ref()), "subscribed", r.method.as_str(), &r.message_id),
        _ => return None,
    };
    Some(ConsentChange { recipient, channel, status, source, message_id })
}

async fn apply_order(tx: &mut sqlx::PgConnection, tenant: &str, order: &Order) -> Result<(), HandleError> {
    let Some(email) = &order.customer.email else {
        tracing::info!(order = %order.id, "order without an email address: no profile");
        return Ok(());
    };
    let c = &order.customer;
    sqlx::query(
        "insert into profiles (tenant, email, address, external_id, first_name, last_name, locale, country,
                               first_order_at, last_order_at, order_count, total_spent_minor, currency,
                               accepts_marketing)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, 1, $10, $11, $12)
         on conflict (tenant, email) do update set
             address = excluded.address,
             external_id = coalesce(excluded.external_id, profiles.external_id),
             first_name = coalesce(excluded.first_name, profiles.first_name),
             last_name = coalesce(excluded.last_name, profiles.last_name),
             locale = coalesce(excluded.locale, profiles.locale),
             country = coalesce(excluded.country, profiles.country),
             first_order_at = least(profiles.first_order_at, excluded.first_order_at),
             last_order_at = greatest(profiles.last_order_at, excluded.last_order_at),
             order_count = profiles.order_count + 1,
             -- Totals are kept in the profile's first currency; other currencies are not
             -- converted (no rates here) and so not added.
             total_spent_minor = case when profiles.currency = excluded.currency
                                      then profiles.total_spent_minor + excluded.total_spent_minor
                                      else profiles.total_spent_minor end,
             accepts_marketing = coalesce(excluded.accepts_marketing, profiles.accepts_marketing),
             updated_at = now()",
    )
    .bind(tenant)
    .bind(email.key())
    .bind(email.as_str())
    .bind(c.id.as_ref().map(|i| i.as_str()))
    .bind(&c.first_name)
    .bind(&c.last_name)
    .bind(&c.locale)
    .bind(&c.country)
    .bind(order.placed_at)
    .bind(order.total.minor)
    .bind(order.currency.as_str())
    .bind(c.accepts_marketing)
    .execute(tx)
    .await
    .map_err(HandleError::transient)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use contracts::{EmailResubscribed, EmailTopicUnsubscribed, EmailUnsubscribed};

    use super::*;

    #[test]
    fn consent_is_kept_per_topic_and_for_all_marketing() {
        let ana = EmailAddress::parse("ana@example.com").unwrap();
        let m = MessageId::derive(&["t"]);
        let all = Event::EmailUnsubscribed(EmailUnsubscribed { message_id: m.clone(), recipient: ana.clone(), method: "link".into() });
        let c = consent_change(&all).unwrap();
        assert_eq!((c.channel.as_str(), c.status, c.source), ("email_marketing", "unsubscribed", "link"));
        let topic = Event::EmailTopicUnsubscribed(EmailTopicUnsubscribed {
            message_id: m.clone(),
            recipient: ana.clone(),
            topic: "offers".into(),
            method: "preferences".into(),
        });
        let c = consent_change(&topic).unwrap();
        assert_eq!((c.channel.as_str(), c.status), ("email_marketing:offers", "unsubscribed"));
        for (topic, channel) in [(None, "email_marketing"), (Some("offers"), "email_marketing:offers")] {
            let back = Event::EmailResubscribed(EmailResubscribed {
                message_id: m.clone(),
                recipient: ana.clone(),
                topic: topic.map(str::to_owned),
                method: "preferences".into(),
            });
            let c = consent_change(&back).unwrap();
            assert_eq!((c.channel.as_str(), c.status, c.source), (channel, "subscribed", "preferences"));
        }
    }
}
