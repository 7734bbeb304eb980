//! Tracker: serves the open pixel, the click redirect, the one-click unsubscribe
//! (RFC 8058) and the preferences page, records every hit in its own database and
//! announces it on the bus.
//!
//! Invariants:
//! - it redirects only to a URL carried inside a token it can verify: no open redirect;
//! - a hit row and its event are one unit: rows are the outbox, and the relay publishes
//!   every row not yet published (event id derived from the row id), so a crash between
//!   the two only delays the event;
//! - GET never changes a choice (link scanners follow GETs); only POST does;
//! - the preferences page answers from the tracker's own `preferences` table, fed by its
//!   own changes and by the unsubscribe and resubscribe events (see [`preferences`]).
//!
//! It reads the tenants directory for each tenant's name, default locale and marketing
//! topics (the page's checkboxes), without the tenants' secrets: this service faces the
//! internet, so it holds no tenant's credentials, and a missing one cannot stop the
//! unsubscribe links.

mod choices;
mod classify;
mod page;
mod preferences;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use bus::{Bus, BusSettings, ConsumerSpec, Delivery, Feed, HandleError, Handler};
use contracts::{
    EmailAddress, EmailClicked, EmailOpened, EmailResubscribed, EmailTopicUnsubscribed, EmailUnsubscribed, Envelope,
    Event, EventKind, MessageId, Source, TenantId,
};
use kit::db::DbSettings;
use kit::http::Readiness;
use kit::settings::{HttpSettings, ShutdownSettings};
use kit::{Clock, Supervisor};
use linktoken::{Action, Claims, Signer};
use secrecy::SecretString;
use serde::Deserialize;
use sqlx::{PgPool, Row};
use telemetry::TelemetrySettings;
use tenancy::Tenants;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use classify::{is_machine_click, is_machine_open};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The HTTP routes this service answers (checked against `proto/openapi.yaml`).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/o/{token}"),
    ("GET", "/c/{token}"),
    ("GET", "/u/{token}"),
    ("POST", "/u/{token}"),
    ("GET", "/p/{token}"),
    ("POST", "/p/{token}"),
];

/// A 43-byte transparent 1×1 GIF.
pub const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
    0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// Unknown top-level sections are ignored (one environment can serve every service);
/// unknown keys inside a section are errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub nats: BusSettings,
    pub database: DbSettings,
    pub tracking: TrackingSettings,
    /// The tenants directory (the one the renderer reads): each tenant's name, locale and
    /// marketing topics for the preferences page.
    pub tenants_dir: PathBuf,
    pub shutdown: ShutdownSettings,
    pub telemetry: TelemetrySettings,
}

/// `[tracking]`: the key that verifies tokens (the renderer signs with the same one).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackingSettings {
    pub signing_key: SecretString,
    /// How often the relay looks for unpublished hits when nothing woke it.
    #[serde(deserialize_with = "kit::settings::secs")]
    pub relay_interval: Duration,
}

impl Default for TrackingSettings {
    fn default() -> Self {
        Self { signing_key: SecretString::from("change-me"), relay_interval: Duration::from_secs(2) }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::on("127.0.0.1:8081"),
            nats: BusSettings::default(),
            database: DbSettings::new("postgres://postgres@127.0.0.1:5432/tracker"),
            tracking: TrackingSettings::default(),
            tenants_dir: "tenants".into(),
            shutdown: ShutdownSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

struct Tracker {
    pool: PgPool,
    bus: Bus,
    signer: Signer,
    tenants: Tenants,
    clock: Arc<dyn Clock>,
    relay: Notify,
    writes: mpsc::Sender<(HitRow, oneshot::Sender<Result<(), String>>)>,
}

/// One hit on its way into the database.
struct HitRow {
    id: Uuid,
    tenant: String,
    message_id: String,
    kind: &'static str,
    url: Option<String>,
    user_agent: Option<String>,
    machine: bool,
    occurred_at: time::OffsetDateTime,
}

type Write = (HitRow, oneshot::Sender<Result<(), String>>);

pub struct Application {
    listener: TcpListener,
    tracker: Arc<Tracker>,
    writes: mpsc::Receiver<Write>,
    settings: Settings,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, kit::clock::system()).await
    }

    pub async fn build_with_clock(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        // Tenant config first: a bad one stops the start before anything connects. Without
        // secrets: nothing here uses one (see the module doc).
        let tenants =
            Tenants::load_dir_without_secrets(&settings.tenants_dir).map_err(|e| anyhow::anyhow!("tenant config is invalid:\n{e}"))?;
        let pool = kit::db::connect(&settings.database, &MIGRATOR).await?;
        let bus = Bus::connect(&settings.nats, "tracker").await?;
        bus.ensure_topology().await?;
        let listener = TcpListener::bind(settings.http.addr).await?;
        let signer = Signer::new(settings.tracking.signing_key.clone());
        let (tx, writes) = mpsc::channel(4096);
        let tracker = Arc::new(Tracker { pool, bus, signer, tenants, clock, relay: Notify::new(), writes: tx });
        Ok(Self { listener, tracker, writes, settings })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.settings.http.addr)
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let mut sup = Supervisor::new("tracker");
        let stop = sup.stop_token();
        let drain = self.settings.shutdown.drain_timeout;
        // What was sent, and every change of choice (for the preferences page).
        for (kind, concurrency) in [
            (EventKind::EmailSent, 16),
            (EventKind::EmailUnsubscribed, 4),
            (EventKind::EmailTopicUnsubscribed, 4),
            (EventKind::EmailResubscribed, 4),
        ] {
            let t = self.tracker.clone();
            let spec = ConsumerSpec::new("tracker", Feed::Events(kind), concurrency);
            let (bus, s) = (t.bus.clone(), stop.clone());
            sup.spawn(spec.durable_name(), async move { bus.run_consumer::<Envelope, _>(spec, t, s, drain).await });
        }
        let (t, every, s) = (self.tracker.clone(), self.settings.tracking.relay_interval, stop.clone());
        sup.spawn("relay", async move { t.run_relay(every, s).await });
        let (t, s) = (self.tracker.clone(), stop.clone());
        sup.spawn("writer", async move { t.run_writer(self.writes, s).await });
        let router = Router::new()
            .route("/o/{token}", get(open))
            .route("/c/{token}", get(click))
            .route("/u/{token}", get(preferences::unsubscribe_page).post(preferences::unsubscribe))
            .route("/p/{token}", get(preferences::preferences_page).post(preferences::save_preferences))
            .with_state(self.tracker.clone())
            .merge(kit::http::ops_router(Readiness {
                bus: Some(self.tracker.bus.clone()),
                db: Some(self.tracker.pool.clone()),
                stop: stop.clone(),
            }));
        sup.spawn("http", kit::http::serve(self.listener, router, stop));
        let result = sup.run(shutdown, drain).await;
        self.tracker.pool.close().await;
        result
    }
}

/// An open or a click about to be recorded (changes of choice are recorded by
/// [`preferences`], one transaction per recipient).
struct Hit<'a> {
    claims: &'a Claims,
    kind: &'static str,
    url: Option<&'a str>,
    user_agent: Option<&'a str>,
    machine: bool,
}

impl Tracker {
    /// Records a hit; returns once its row is committed.
    async fn record(&self, hit: Hit<'_>) -> Result<(), String> {
        let row = HitRow {
            id: Uuid::new_v4(),
            tenant: hit.claims.tenant.as_str().to_owned(),
            message_id: hit.claims.message_id.as_str().to_owned(),
            kind: hit.kind,
            url: hit.url.map(str::to_owned),
            user_agent: hit.user_agent.map(|u| u.chars().take(512).collect()),
            machine: hit.machine,
            occurred_at: self.clock.now(),
        };
        let (done, committed) = oneshot::channel();
        self.writes.send((row, done)).await.map_err(|_| "tracker is shutting down".to_owned())?;
        committed.await.map_err(|_| "tracker is shutting down".to_owned())??;
        metrics::counter!("tracker_hits_total", "kind" => hit.kind, "machine" => if hit.machine { "true" } else { "false" })
            .increment(1);
        Ok(())
    }

    /// Writes hits in batches: whatever is queued when the previous batch committed goes
    /// into one multi-row insert (no waiting to fill a batch, so an idle tracker adds no
    /// latency and a busy one pays one commit for many hits). On stop, takes no new hits
    /// and writes what is queued.
    async fn run_writer(&self, mut rx: mpsc::Receiver<Write>, stop: CancellationToken) -> anyhow::Result<()> {
        const MAX_BATCH: usize = 1024;
        let mut batch: Vec<Write> = Vec::with_capacity(MAX_BATCH);
        loop {
            let first = tokio::select! {
                w = rx.recv() => w,
                () = stop.cancelled() => {
                    rx.close();
                    rx.recv().await
                }
            };
            let Some(first) = first else { return Ok(()) };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(w) => batch.push(w),
                    Err(_) => break,
                }
            }
            let result = self.insert_batch(&batch).await.map_err(|e| {
                tracing::error!(error = %e, hits = batch.len(), "recording hits failed");
                "hit not recorded".to_owned()
            });
            metrics::histogram!("tracker_write_batch_size").record(batch.len() as f64);
            for (_, done) in batch.drain(..) {
                let _ = done.send(result.clone());
            }
            self.relay.notify_one();
        }
    }

    async fn insert_batch(&self, batch: &[Write]) -> Result<(), sqlx::Error> {
        let rows = batch.iter().map(|(r, _)| r);
        sqlx::query(
            "insert into hits (id, tenant, message_id, kind, url, user_agent, machine, occurred_at)
             select * from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                  $7::bool[], $8::timestamptz[])
             on conflict do nothing",
        )
        .bind(rows.clone().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.clone().map(|r| r.tenant.clone()).collect::<Vec<_>>())
        .bind(rows.clone().map(|r| r.message_id.clone()).collect::<Vec<_>>())
        .bind(rows.clone().map(|r| r.kind).collect::<Vec<_>>())
        .bind(rows.clone().map(|r| r.url.clone()).collect::<Vec<_>>())
        .bind(rows.clone().map(|r| r.user_agent.clone()).collect::<Vec<_>>())
        .bind(rows.clone().map(|r| r.machine).collect::<Vec<_>>())
        .bind(rows.map(|r| r.occurred_at).collect::<Vec<_>>())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Publishes unpublished hits until none are left or `stop`.
    async fn run_relay(&self, every: Duration, stop: CancellationToken) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = self.relay.notified() => {},
                _ = tick.tick() => {},
            }
            loop {
                match self.relay_batch().await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "relaying hits failed; will retry");
                        break;
                    }
                }
            }
        }
    }

    async fn relay_batch(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "select id, tenant, message_id, kind, url, email, method, topic, user_agent, machine, occurred_at
             from hits where published_at is null order by occurred_at limit 256 for update skip locked",
        )
        .fetch_all(&mut *tx)
        .await?;
        let n = rows.len();
        let mut published = Vec::with_capacity(n);
        for row in rows {
            let id: Uuid = row.try_get("id")?;
            match hit_event(&row) {
                Ok(env) => {
                    self.bus.publish_event(&env).await?;
                }
                Err(e) => tracing::error!(hit = %id, error = %format!("{e:#}"), "hit row cannot become an event; skipping"),
            }
            published.push(id);
        }
        sqlx::query("update hits set published_at = $2 where id = any($1)")
            .bind(&published)
            .bind(self.clock.now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n)
    }
}

/// The event for a hit row. Pure: the row decides everything, including the event id.
fn hit_event(row: &sqlx::postgres::PgRow) -> anyhow::Result<Envelope> {
    let id: Uuid = row.try_get("id")?;
    let tenant = TenantId::parse(&row.try_get::<String, _>("tenant")?)?;
    let message_id = MessageId::parse(&row.try_get::<String, _>("message_id")?)?;
    let kind: String = row.try_get("kind")?;
    let user_agent: Option<String> = row.try_get("user_agent")?;
    let machine: bool = row.try_get("machine")?;
    let recipient = || anyhow::Ok(EmailAddress::parse(&row.try_get::<Option<String>, _>("email")?.unwrap_or_default())?);
    let method = || anyhow::Ok(row.try_get::<Option<String>, _>("method")?.unwrap_or_else(|| "link".into()));
    let topic = || anyhow::Ok(row.try_get::<Option<String>, _>("topic")?);
    let event = match kind.as_str() {
        "open" => Event::EmailOpened(EmailOpened { message_id: message_id.clone(), machine, user_agent }),
        "click" => Event::EmailClicked(EmailClicked {
            message_id: message_id.clone(),
            url: row.try_get::<Option<String>, _>("url")?.unwrap_or_default(),
            machine,
            user_agent,
        }),
        "unsubscribe" => Event::EmailUnsubscribed(EmailUnsubscribed {
            message_id: message_id.clone(),
            recipient: recipient()?,
            method: method()?,
        }),
        "topic_unsubscribe" => Event::EmailTopicUnsubscribed(EmailTopicUnsubscribed {
            message_id: message_id.clone(),
            recipient: recipient()?,
            topic: topic()?.ok_or_else(|| anyhow::anyhow!("topic_unsubscribe hit without a topic"))?,
            method: method()?,
        }),
        "resubscribe" => Event::EmailResubscribed(EmailResubscribed {
            message_id: message_id.clone(),
            recipient: recipient()?,
            topic: topic()?,
            method: method()?,
        }),
        other => anyhow::bail!("unknown hit kind {other}"),
    };
    let source = Source { system: "tracker".into(), delivery_id: None, topic: None };
    Ok(Envelope::new(tenant, row.try_get("occurred_at")?, source, format!("hit:{id}"), event))
}

impl Handler<Envelope> for Tracker {
    async fn handle(&self, d: Delivery<Envelope>) -> Result<(), HandleError> {
        let env = d.body;
        let Event::EmailSent(sent) = &env.event else { return self.apply_choice_event(&env).await };
        sqlx::query(
            "insert into messages (tenant, message_id, recipient, template, flow, lane, sent_at)
             values ($1, $2, $3, $4, $5, $6, $7) on conflict do nothing",
        )
        .bind(env.tenant.as_str())
        .bind(sent.message_id.as_str())
        .bind(sent.recipient.as_str())
        .bind(&sent.template)
        .bind(&sent.flow)
        .bind(sent.lane.token())
        .bind(env.occurred_at)
        .execute(&self.pool)
        .await
        .map_err(HandleError::transient)?;
        Ok(())
    }
}

fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok())
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

async fn open(State(t): State<Arc<Tracker>>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    let token = token.strip_suffix(".gif").unwrap_or(&token);
    // A pixel always answers with the image, even for a bad token: mail clients show
    // broken-image icons otherwise. Only valid tokens are recorded.
    if let Ok(claims) = t.signer.verify(token)
        && claims.action == Action::Open {
            let ua = user_agent(&headers);
            let hit = Hit { claims: &claims, kind: "open", url: None, user_agent: ua, machine: is_machine_open(ua) };
            if let Err(e) = t.record(hit).await {
                tracing::error!(error = %e, "recording open failed");
            }
        }
    ([(header::CONTENT_TYPE, "image/gif"), (header::CACHE_CONTROL, "no-store, max-age=0")], PIXEL).into_response()
}

async fn click(State(t): State<Arc<Tracker>>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    let Ok(claims) = t.signer.verify(&token) else { return not_found() };
    let Action::Click { u } = &claims.action else { return not_found() };
    if !(u.starts_with("https://") || u.starts_with("http://")) {
        return not_found();
    }
    let ua = user_agent(&headers);
    let hit = Hit { claims: &claims, kind: "click", url: Some(u), user_agent: ua, machine: is_machine_click(ua) };
    if let Err(e) = t.record(hit).await {
        // The person still gets where they were going.
        tracing::error!(error = %e, "recording click failed");
    }
    Redirect::to(u).into_response()
}
