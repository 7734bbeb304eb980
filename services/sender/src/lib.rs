//! Sender: delivers each outbound message exactly once — over the SMTP relay or the
//! tenant's provider API (SES, Postmark, SendGrid, Mailgun), DKIM-signed per tenant — keeps
//! the send log and the suppression list in its own database, and publishes `email.sent` /
//! `email.bounced`. Transactional and marketing messages have separate consumers and
//! separate connections, so a campaign never delays an order confirmation.
//!
//! Two inputs besides the send queues:
//! - `POST /v1/feedback/{tenant}/{provider}` ([`feedback::http`], stored by
//!   `feedback_store`): the providers' bounce, complaint and unsubscribe webhooks, verified
//!   with the tenant's `delivery.webhook_secret`, and `POST /v1/feedback/{tenant}/dsn`, the
//!   bounce messages mailed back to an SMTP tenant's `delivery.bounce_address` and piped
//!   here by the MTA. Hard bounces and complaints suppress all mail to the address,
//!   unsubscribes the marketing lane; our own messages are announced as `email.bounced`;
//!   replays change nothing.
//! - `email.unsubscribed`, `email.topic_unsubscribed` and `email.resubscribed` from the
//!   tracker (and the providers): marketing and per-topic suppressions, lifted again by an
//!   opt-in (never a bounce's or complaint's; see `delivery::Unsubscribes`).
//!
//! Send-rate limits (`ratelimit`): a tenant's `delivery.max_per_second` (its provider
//! account) and `max_per_second_per_domain` (each recipient domain) are counted in
//! one-second windows in the database, so all replicas together stay under them; a message
//! over a limit goes back to the queue until the next window. A `prune` task deletes
//! windows that are over and replay keys past their retention.

mod delivery;
pub mod dkim;
pub mod feedback;
mod feedback_store;
mod mime;
mod ratelimit;
mod retry;
mod routes;
pub mod smtp;
pub mod transport;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, BusSettings, ConsumerSpec, Feed};
use contracts::{Envelope, EventKind, Lane, OutboundMessage};
use kit::db::DbSettings;
use kit::http::Readiness;
use kit::settings::{HttpSettings, ShutdownSettings};
use kit::{Clock, Supervisor};
use serde::Deserialize;
use telemetry::TelemetrySettings;
use tenancy::Tenants;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use delivery::Deliverer;
pub use smtp::SmtpSettings;
pub use transport::ProviderSettings;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Every route the sender serves besides the ops routes, as `(method, path)`.
pub const ROUTES: &[(&str, &str)] = feedback::http::ROUTES;

/// Unknown top-level sections are ignored (one environment can serve every service);
/// unknown keys inside a section are errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub nats: BusSettings,
    pub database: DbSettings,
    /// The relay for tenants whose `delivery.provider` is `smtp` (the default).
    pub smtp: SmtpSettings,
    /// `[providers]`: the HTTP APIs of tenants with a provider account.
    pub providers: ProviderSettings,
    /// The tenants directory (the one the renderer reads): each tenant's provider and DKIM key.
    pub tenants_dir: PathBuf,
    /// Messages in flight per lane (bounded further by the lane's SMTP connections).
    pub transactional_concurrency: usize,
    pub marketing_concurrency: usize,
    /// How long a claim without an outcome is assumed to be a live attempt. Must exceed
    /// the longest exchange: SMTP (connect + commands + body) or one provider request.
    #[serde(deserialize_with = "kit::settings::secs")]
    pub claim_lease: Duration,
    /// Temporary failures are retried (exponential backoff with jitter, from the `[nats]`
    /// backoff settings) until this long after the first attempt; then the message is
    /// given up as a non-permanent bounce.
    #[serde(deserialize_with = "kit::settings::secs")]
    pub retry_deadline: Duration,
    /// How often old send-rate windows and feedback replay keys are deleted.
    #[serde(deserialize_with = "kit::settings::secs")]
    pub prune_interval: Duration,
    /// For tests only: one more URL prefix (`http(s)://host[:port]/path/`) trusted for SNS
    /// signing certificates and subscription URLs besides Amazon's SNS endpoints, so a
    /// local stand-in can sign. Never set in production: whoever serves that prefix can
    /// forge SES feedback.
    pub insecure_sns_url_prefix: Option<String>,

    pub shutdown: ShutdownSettings,
    pub telemetry: TelemetrySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::on("127.0.0.1:8085"),
            nats: BusSettings::default(),
            database: DbSettings::new("postgres://postgres@127.0.0.1:5432/sender"),
            smtp: SmtpSettings::default(),
            providers: ProviderSettings::default(),
            tenants_dir: "tenants".into(),
            transactional_concurrency: 16,
            marketing_concurrency: 16,
            claim_lease: Duration::from_secs(300),
            retry_deadline: Duration::from_secs(24 * 3600),
            prune_interval: Duration::from_secs(60),
            insecure_sns_url_prefix: None,
            shutdown: ShutdownSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

pub struct Application {
    listener: TcpListener,
    deliverer: Arc<Deliverer>,
    feedback: Arc<feedback_store::FeedbackStore>,
    settings: Settings,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, kit::clock::system()).await
    }

    pub async fn build_with_clock(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        // Tenant config and keys first: a bad one stops the start before anything connects.
        let tenants = Tenants::load_dir(&settings.tenants_dir).map_err(|e| anyhow::anyhow!("tenant config is invalid:\n{e}"))?;
        // The HTTP clients use the process's TLS provider; ring, as everywhere in Postflow
        // (a no-op when main already installed it).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = transport::HttpClients::new(&settings.providers)?;
        let smtp: Arc<dyn transport::Transport> = Arc::new(transport::SmtpTransport::new(&settings.smtp));
        let routes = routes::Routes::build(&tenants, smtp, &http, &clock)?;
        for (what, limit) in [("smtp.timeout", settings.smtp.timeout), ("providers.timeout", settings.providers.timeout)] {
            if limit >= settings.claim_lease {
                tracing::warn!(setting = what, "claim_lease should exceed {what}: a live attempt could be taken for a crashed one");
            }
        }

        let pool_tx = kit::db::connect(&settings.database, &MIGRATOR).await?;
        // Same database, migrated above; a pool of its own so the lanes never wait on
        // each other's connections.
        let pool_mkt = kit::db::pool(&settings.database)?;
        let bus = Bus::connect(&settings.nats, "sender").await?;
        bus.ensure_topology().await?;
        let listener = TcpListener::bind(settings.http.addr).await?;
        // Feedback webhooks use the marketing pool: they never hold a connection an order
        // confirmation needs.
        if let Some(prefix) = &settings.insecure_sns_url_prefix {
            anyhow::ensure!(feedback::ses::url_prefix_is_usable(prefix), "insecure_sns_url_prefix must look like http(s)://host[:port]/path/ (ending in /)");
            tracing::warn!(prefix = %prefix, "insecure_sns_url_prefix is set: SNS messages signed with a certificate from there are trusted; for tests only");
        }
        let feedback = Arc::new(
            feedback_store::FeedbackStore::new(Arc::new(tenants), pool_mkt.clone(), bus.clone(), clock.clone(), http.other())
                .with_sns_url_prefix(settings.insecure_sns_url_prefix.clone()),
        );
        let deliverer = Arc::new(Deliverer {
            pool_tx,
            pool_mkt,
            bus,
            routes,
            clock,
            claim_lease: settings.claim_lease,
            retry: retry::RetryPolicy {
                base: settings.nats.backoff_base,
                max: settings.nats.backoff_max,
                deadline: settings.retry_deadline,
            },
        });
        Ok(Self { listener, deliverer, feedback, settings })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.settings.http.addr)
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let mut sup = Supervisor::new("sender");
        let stop = sup.stop_token();
        let drain = self.settings.shutdown.drain_timeout;
        let bus = self.deliverer.bus.clone();
        for (lane, concurrency) in [
            (Lane::Transactional, self.settings.transactional_concurrency),
            (Lane::Marketing, self.settings.marketing_concurrency),
        ] {
            let spec = ConsumerSpec::new("sender", Feed::Send(lane), concurrency);
            let (bus, deliverer, stop) = (bus.clone(), self.deliverer.clone(), stop.clone());
            sup.spawn(spec.durable_name(), async move { bus.run_consumer::<OutboundMessage, _>(spec, deliverer, stop, drain).await });
        }
        let unsubscribes = Arc::new(delivery::Unsubscribes { pool: self.deliverer.pool_mkt.clone() });
        for kind in [EventKind::EmailUnsubscribed, EventKind::EmailTopicUnsubscribed, EventKind::EmailResubscribed] {
            let spec = ConsumerSpec::new("sender", Feed::Events(kind), 4);
            let (b, s, u) = (bus.clone(), stop.clone(), unsubscribes.clone());
            sup.spawn(spec.durable_name(), async move { b.run_consumer::<Envelope, _>(spec, u, s, drain).await });
        }
        let (deliverer, every, s) = (self.deliverer.clone(), self.settings.prune_interval, stop.clone());
        sup.spawn("prune", async move { prune(&deliverer.pool_mkt, &deliverer.clock, every, s).await });
        let router = kit::http::ops_router(Readiness { bus: Some(bus), db: Some(self.deliverer.pool_tx.clone()), stop: stop.clone() })
            .merge(feedback::http::router(self.feedback));
        sup.spawn("http", kit::http::serve(self.listener, router, stop));
        let result = sup.run(shutdown, drain).await;
        self.deliverer.pool_tx.close().await;
        self.deliverer.pool_mkt.close().await;
        result
    }
}

/// Deletes send-rate windows that are over and feedback replay keys past their retention,
/// every `every`, until `stop`. A failure is logged and tried again next time.
async fn prune(pool: &sqlx::PgPool, clock: &Arc<dyn Clock>, every: Duration, stop: CancellationToken) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let now = clock.now();
        match ratelimit::prune(pool, now).await {
            Ok(n) => tracing::debug!(deleted = n, "pruned send-rate windows"),
            Err(e) => tracing::warn!(error = %e, "pruning send-rate windows failed; will retry"),
        }
        match feedback_store::prune(pool, now).await {
            Ok(n) => tracing::debug!(deleted = n, "pruned feedback replay keys"),
            Err(e) => tracing::warn!(error = %e, "pruning feedback replay keys failed; will retry"),
        }
    }
}
