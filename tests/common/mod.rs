//! The whole Postflow cluster in one test process: a real nats-server with JetStream, a
//! real PostgreSQL cluster with a database per stateful service, an SMTP capture server,
//! and all six services started in-process on port 0.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, BusSettings};
use kit::db::DbSettings;
use kit::Clock;
use kit::settings::HttpSettings;
use secrecy::SecretString;
use sqlx::PgPool;
use testkit::smtp_capture::{CaptureConfig, SmtpCapture};
use testkit::{NatsServer, Postgres};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SIGNING_KEY: &str = "test-signing-key";
pub const SHOPIFY_SECRET: &str = "demo-secret";

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn tenants_dir() -> PathBuf {
    workspace_root().join("deploy/local/tenants")
}

pub fn shopify_sample() -> Vec<u8> {
    let path = workspace_root().join("services/ingest/fixtures/shopify_orders_create.json");
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A running service: stop it gracefully, or kill it like SIGKILL would.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn spawn<F>(addr: SocketAddr, run: impl FnOnce(oneshot::Receiver<()>) -> F) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        Self { addr, stop: Some(tx), task: tokio::spawn(run(rx)) }
    }

    /// Graceful: like SIGTERM.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await?
    }

    /// Abrupt, in place: the task is dropped wherever it is, like SIGKILL; the field can
    /// then be replaced by a new instance.
    pub async fn abort(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Abrupt: the task is dropped wherever it is, like SIGKILL.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn until(rx: oneshot::Receiver<()>) {
    let _ = rx.await;
}

pub struct Stack {
    pub nats: NatsServer,
    pub pg: Postgres,
    pub smtp: SmtpCapture,
    pub bus: Bus,
    pub bus_settings: BusSettings,
    pub db_urls: std::collections::BTreeMap<&'static str, String>,
    pub ingest: Running,
    pub tracker: Running,
    pub segmenter: Running,
    pub scheduler: Running,
    pub renderer: Running,
    pub sender: Option<Running>,
    /// The scheduler's clock: the system's, or one the test moves by hand.
    pub clock: Arc<dyn Clock>,
}

pub fn http() -> HttpSettings {
    HttpSettings::on("127.0.0.1:0")
}

async fn start_scheduler(bus: &BusSettings, db_url: &str, clock: Arc<dyn Clock>) -> Running {
    let s = scheduler::Settings {
        http: http(),
        nats: bus.clone(),
        database: DbSettings::new(db_url.to_owned()),
        tenants_dir: tenants_dir(),
        timer_poll_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let app = scheduler::Application::build_with_clock(s, clock).await.expect("scheduler");
    let addr = app.local_addr();
    Running::spawn(addr, |rx| app.run_until_stopped(until(rx)))
}

impl Stack {
    /// Everything, with the sender delivering to the capture server.
    pub async fn start() -> Self {
        let mut stack = Self::start_without_sender().await;
        let smtp = stack.smtp.addr();
        stack.sender = Some(stack.start_sender(smtp).await);
        stack
    }

    pub async fn start_without_sender() -> Self {
        Self::start_without_sender_with_clock(kit::clock::system()).await
    }

    /// Everything, with the scheduler reading `clock` (time-travel scenarios).
    pub async fn start_with_clock(clock: Arc<dyn Clock>) -> Self {
        let mut stack = Self::start_without_sender_with_clock(clock).await;
        let smtp = stack.smtp.addr();
        stack.sender = Some(stack.start_sender(smtp).await);
        stack
    }

    async fn start_without_sender_with_clock(clock: Arc<dyn Clock>) -> Self {
        testkit::init_test_tracing();
        let nats = NatsServer::start().await.expect("nats-server");
        let pg = Postgres::start().await.expect("postgres");
        let smtp = SmtpCapture::start(CaptureConfig::default()).await.expect("smtp capture");
        let bus_settings = BusSettings {
            url: nats.url(),
            ack_wait: Duration::from_secs(2),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..BusSettings::default()
        };
        let mut db_urls = std::collections::BTreeMap::new();
        for name in ["segmenter", "scheduler", "sender", "tracker"] {
            db_urls.insert(name, pg.create_database(name).await.expect("create database"));
        }
        let bus = Bus::connect(&bus_settings, "test").await.expect("bus");
        bus.ensure_topology().await.expect("topology");

        let tracker = {
            let s = tracker::Settings {
                http: http(),
                nats: bus_settings.clone(),
                database: DbSettings::new(db_urls["tracker"].clone()),
                tracking: tracker::TrackingSettings {
                    signing_key: SecretString::from(SIGNING_KEY),
                    relay_interval: Duration::from_millis(200),
                },
                tenants_dir: tenants_dir(),
                ..Default::default()
            };
            let app = tracker::Application::build(s).await.expect("tracker");
            let addr = app.local_addr();
            Running::spawn(addr, |rx| app.run_until_stopped(until(rx)))
        };
        let ingest = {
            let s = ingest::Settings { http: http(), nats: bus_settings.clone(), tenants_dir: tenants_dir(), max_body_bytes: 256 * 1024, ..Default::default() };
            let app = ingest::Application::build(s).await.expect("ingest");
            let addr = app.local_addr();
            Running::spawn(addr, |rx| app.run_until_stopped(until(rx)))
        };
        let segmenter = {
            let s = segmenter::Settings {
                http: http(),
                nats: bus_settings.clone(),
                database: DbSettings::new(db_urls["segmenter"].clone()),
                ..Default::default()
            };
            let app = segmenter::Application::build(s).await.expect("segmenter");
            let addr = app.local_addr();
            Running::spawn(addr, |rx| app.run_until_stopped(until(rx)))
        };
        let scheduler = start_scheduler(&bus_settings, &db_urls["scheduler"], clock.clone()).await;
        let renderer = {
            let s = renderer::Settings {
                http: http(),
                nats: bus_settings.clone(),
                tenants_dir: tenants_dir(),
                tracking: renderer::TrackingSettings {
                    base_url: format!("http://{}", tracker.addr),
                    signing_key: SecretString::from(SIGNING_KEY),
                },
                ..Default::default()
            };
            let app = renderer::Application::build(s).await.expect("renderer");
            let addr = app.local_addr();
            Running::spawn(addr, |rx| app.run_until_stopped(until(rx)))
        };
        Self { nats, pg, smtp, bus, bus_settings, db_urls, ingest, tracker, segmenter, scheduler, renderer, sender: None, clock }
    }

    /// Starts another scheduler on the same database and clock (after a stop or a kill).
    pub async fn start_scheduler(&self) -> Running {
        start_scheduler(&self.bus_settings, &self.db_urls["scheduler"], self.clock.clone()).await
    }

    /// Starts a sender delivering to `smtp`.
    pub async fn start_sender(&self, smtp: SocketAddr) -> Running {
        let s = sender::Settings {
            http: http(),
            nats: self.bus_settings.clone(),
            database: DbSettings::new(self.db_urls["sender"].clone()),
            smtp: sender::SmtpSettings {
                host: smtp.ip().to_string(),
                port: smtp.port(),
                timeout: Duration::from_secs(60),
                ..Default::default()
            },
            claim_lease: Duration::from_secs(5),
            tenants_dir: tenants_dir(),
            ..Default::default()
        };
        let app = sender::Application::build(s).await.expect("sender");
        let addr = app.local_addr();
        Running::spawn(addr, |rx| app.run_until_stopped(until(rx)))
    }

    pub async fn db(&self, service: &str) -> PgPool {
        PgPool::connect(&self.db_urls[service]).await.expect("connect to service database")
    }

    pub fn url(&self, running: &Running, path: &str) -> String {
        format!("http://{}{path}", running.addr)
    }

    /// Posts a Shopify webhook to the demo tenant.
    pub async fn post_shopify(&self, body: &[u8], webhook_id: &str, secret: Option<&str>) -> reqwest::Response {
        let mut req = reqwest::Client::new()
            .post(self.url(&self.ingest, "/v1/webhooks/demo/shopify"))
            .header("content-type", "application/json")
            .header("x-shopify-topic", "orders/create")
            .header("x-shopify-webhook-id", webhook_id)
            .header("x-shopify-shop-domain", "demo.myshopify.com")
            .body(body.to_vec());
        if let Some(secret) = secret {
            req = req.header("x-shopify-hmac-sha256", ingest::sources::shopify::sign(secret.as_bytes(), body));
        }
        req.send().await.expect("post webhook")
    }

    /// Waits until every consumer has nothing pending: the pipeline is at rest.
    pub async fn settle(&self) {
        let consumers = [
            ("PF_EVENTS", "segmenter-order-placed"),
            ("PF_EVENTS", "scheduler-order-placed"),
            ("PF_RENDER", "renderer-render-tx"),
            ("PF_SEND", "sender-send-tx"),
            ("PF_EVENTS", "tracker-email-sent"),
        ];
        let scheduler = self.db("scheduler").await;
        testkit::eventually_ok(Duration::from_secs(30), "pipeline at rest", || async {
            let due: i64 = sqlx::query_scalar("select count(*) from timers where fired_at is null and due_at <= now()")
                .fetch_one(&scheduler)
                .await?;
            anyhow::ensure!(due == 0, "{due} timers due");
            for (stream, durable) in consumers {
                let pending = self.bus.consumer_pending(stream, durable).await?;
                anyhow::ensure!(pending == 0, "{durable} has {pending} pending");
            }
            Ok(())
        })
        .await;
    }
}
