//! Sender: delivers each outbound message exactly once over SMTP, keeps the send log and
//! the suppression list in its own database, and publishes `email.sent` / `email.bounced`.
//! Transactional and marketing messages have separate consumers and separate SMTP
//! connections, so a campaign never delays an order confirmation.

mod delivery;
mod mime;
pub mod smtp;

use std::net::SocketAddr;
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
use tokio::net::TcpListener;

pub use delivery::Deliverer;
pub use smtp::SmtpSettings;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Unknown top-level sections are ignored (one environment can serve every service);
/// unknown keys inside a section are errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub nats: BusSettings,
    pub database: DbSettings,
    pub smtp: SmtpSettings,
    /// Messages in flight per lane (bounded further by the lane's SMTP connections).
    pub transactional_concurrency: usize,
    pub marketing_concurrency: usize,
    /// How long a claim without an outcome is assumed to be a live attempt. Must exceed
    /// the longest SMTP exchange (connect + commands + body).
    #[serde(deserialize_with = "kit::settings::secs")]
    pub claim_lease: Duration,

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
            transactional_concurrency: 16,
            marketing_concurrency: 16,
            claim_lease: Duration::from_secs(300),
            shutdown: ShutdownSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

pub struct Application {
    listener: TcpListener,
    deliverer: Arc<Deliverer>,
    settings: Settings,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, kit::clock::system()).await
    }

    pub async fn build_with_clock(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let pool_tx = kit::db::connect(&settings.database, &MIGRATOR).await?;
        // Same database, migrated above; a pool of its own so the lanes never wait on
        // each other's connections.
        let pool_mkt = kit::db::pool(&settings.database)?;
        let bus = Bus::connect(&settings.nats, "sender").await?;
        bus.ensure_topology().await?;
        let listener = TcpListener::bind(settings.http.addr).await?;
        let s = &settings.smtp;
        let deliverer = Arc::new(Deliverer {
            pool_tx,
            pool_mkt,
            bus,
            smtp_tx: smtp::Pool::new(s.clone(), s.transactional_connections),
            smtp_mkt: smtp::Pool::new(s.clone(), s.marketing_connections),
            clock,
            claim_lease: settings.claim_lease,
        });
        Ok(Self { listener, deliverer, settings })
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
        let spec = ConsumerSpec::new("sender", Feed::Events(EventKind::EmailUnsubscribed), 4);
        let (b, s) = (bus.clone(), stop.clone());
        sup.spawn(spec.durable_name(), async move { b.run_consumer::<Envelope, _>(spec, unsubscribes, s, drain).await });
        let router = kit::http::ops_router(Readiness { bus: Some(bus), db: Some(self.deliverer.pool_tx.clone()), stop: stop.clone() });
        sup.spawn("http", kit::http::serve(self.listener, router, stop));
        let result = sup.run(shutdown, drain).await;
        self.deliverer.pool_tx.close().await;
        self.deliverer.pool_mkt.close().await;
        result
    }
}
