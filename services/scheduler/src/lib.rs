//! Scheduler: keeps the journey's memory (orders, customer facts, products bought
//! together, parcels), starts each tenant's flows for the events that trigger them (when
//! their condition holds), ends them at their goal, and steps them forward with durable
//! timers. Parcels become `shipment.progressed` / `shipment.stalled` events here.
//!
//! Invariants:
//! - a run is keyed by (tenant, flow, trigger idempotency key): a redelivered or replayed
//!   event finds its run and starts nothing;
//! - every step's render request carries a message id derived from (tenant, run, step), so
//!   a step fired twice (crash between publish and commit) is still one email downstream;
//! - timers live in the database, are compared with the injected clock, and are claimed
//!   with `FOR UPDATE SKIP LOCKED`, so each fires once across replicas and restarts.

mod context;
mod flow;
mod journey;
pub mod shipments;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, BusSettings, ConsumerSpec, Delivery, Feed, HandleError, Handler};
use contracts::{Envelope, EventKind};
use kit::db::DbSettings;
use kit::http::Readiness;
use kit::settings::{HttpSettings, ShutdownSettings};
use kit::{Clock, Supervisor};
use serde::Deserialize;
use telemetry::TelemetrySettings;
use tenancy::Tenants;
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub use flow::{StepAction, next_action};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The event types the scheduler consumes: they feed its journey tables (orders, customers,
/// parcels), start flows and reach flow goals. Email lifecycle events are not among them.
pub const CONSUMED: &[EventKind] = &[
    EventKind::OrderPlaced,
    EventKind::OrderPaid,
    EventKind::OrderCancelled,
    EventKind::OrderFulfilled,
    EventKind::FulfillmentCreated,
    EventKind::FulfillmentUpdated,
    EventKind::FulfillmentStatusUpdated,
    EventKind::ShipmentUpdated,
    EventKind::ShipmentProgressed,
    EventKind::ShipmentStalled,
    EventKind::CheckoutUpdated,
    EventKind::CustomerCreated,
    EventKind::CustomerUpdated,
];

/// Unknown top-level sections are ignored (one environment can serve every service);
/// unknown keys inside a section are errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub nats: BusSettings,
    pub database: DbSettings,
    pub tenants_dir: PathBuf,
    pub concurrency: usize,
    /// How often due timers are looked for when nothing woke the worker.
    #[serde(deserialize_with = "kit::settings::secs")]
    pub timer_poll_interval: Duration,
    /// Timers fired per transaction.
    pub timer_batch: i64,
    pub shutdown: ShutdownSettings,
    pub telemetry: TelemetrySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::on("127.0.0.1:8083"),
            nats: BusSettings::default(),
            database: DbSettings::new("postgres://postgres@127.0.0.1:5432/scheduler"),
            tenants_dir: "tenants".into(),
            concurrency: 16,
            timer_poll_interval: Duration::from_secs(1),
            timer_batch: 64,
            shutdown: ShutdownSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

pub struct Application {
    listener: TcpListener,
    engine: Arc<flow::Engine>,
    settings: Settings,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, kit::clock::system()).await
    }

    pub async fn build_with_clock(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        // Without secrets: this service uses none (provider, webhook and DKIM secrets are
        // the sender's and ingest's).
        let tenants =
            Tenants::load_dir_without_secrets(&settings.tenants_dir).map_err(|e| anyhow::anyhow!("tenant config is invalid:\n{e}"))?;
        let pool = kit::db::connect(&settings.database, &MIGRATOR).await?;
        let bus = Bus::connect(&settings.nats, "scheduler").await?;
        bus.ensure_topology().await?;
        let listener = TcpListener::bind(settings.http.addr).await?;
        let engine = Arc::new(flow::Engine { pool, bus, tenants, clock, wake: Notify::new(), batch: settings.timer_batch });
        Ok(Self { listener, engine, settings })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.settings.http.addr)
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let mut sup = Supervisor::new("scheduler");
        let stop = sup.stop_token();
        let drain = self.settings.shutdown.drain_timeout;
        for kind in CONSUMED {
            let spec = ConsumerSpec::new("scheduler", Feed::Events(*kind), self.settings.concurrency);
            let (bus, engine, stop) = (self.engine.bus.clone(), self.engine.clone(), stop.clone());
            sup.spawn(spec.durable_name(), async move { bus.run_consumer::<Envelope, _>(spec, engine, stop, drain).await });
        }
        let (engine, poll, timer_stop) = (self.engine.clone(), self.settings.timer_poll_interval, stop.clone());
        sup.spawn("timers", async move { engine.run_timers(poll, timer_stop).await });
        let router = kit::http::ops_router(Readiness {
            bus: Some(self.engine.bus.clone()),
            db: Some(self.engine.pool.clone()),
            stop: stop.clone(),
        });
        sup.spawn("http", kit::http::serve(self.listener, router, stop));
        let result = sup.run(shutdown, drain).await;
        self.engine.pool.close().await;
        result
    }
}

impl Handler<Envelope> for flow::Engine {
    async fn handle(&self, d: Delivery<Envelope>) -> Result<(), HandleError> {
        self.handle_event(&d.body).await
    }
}
