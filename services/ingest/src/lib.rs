//! Ingest: the stateless HTTP edge. It verifies each webhook's signature before parsing,
//! normalises it into domain events with a pure adapter per source, and answers 2xx only
//! after JetStream has stored every event. Bad input gets a 4xx and publishes nothing.

mod dispatch;
pub mod sources;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bus::{Bus, BusSettings};
use bytes::Bytes;
use kit::http::Readiness;
use kit::settings::{HttpSettings, ShutdownSettings};
use kit::{Clock, Supervisor};
use serde::Deserialize;
use serde_json::json;
use telemetry::TelemetrySettings;
use tenancy::Tenants;
use tokio::net::TcpListener;
use tracing::{Instrument, info_span};

use sources::AdapterError;
use sources::Parsed;


/// The HTTP routes this service answers (checked against `proto/openapi.yaml`).
pub const ROUTES: &[(&str, &str)] = &[("POST", "/v1/webhooks/{tenant}/{source}")];

/// Unknown top-level sections are ignored (one environment can serve every service);
/// unknown keys inside a section are errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub nats: BusSettings,
    pub tenants_dir: PathBuf,
    /// Larger webhook bodies are refused with 413.
    pub max_body_bytes: usize,
    pub shutdown: ShutdownSettings,
    pub telemetry: TelemetrySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::on("127.0.0.1:8080"),
            nats: BusSettings::default(),
            tenants_dir: "tenants".into(),
            max_body_bytes: 1024 * 1024,
            shutdown: ShutdownSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

struct AppState {
    bus: Bus,
    tenants: Tenants,
    clock: Arc<dyn Clock>,
}

pub struct Application {
    listener: TcpListener,
    bus: Bus,
    state: Arc<AppState>,
    settings: Settings,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, kit::clock::system()).await
    }

    pub async fn build_with_clock(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let tenants = Tenants::load_dir(&settings.tenants_dir).map_err(|e| anyhow::anyhow!("tenant config is invalid:\n{e}"))?;
        let bus = Bus::connect(&settings.nats, "ingest").await?;
        bus.ensure_topology().await?;
        let listener = TcpListener::bind(settings.http.addr).await?;
        let state = Arc::new(AppState { bus: bus.clone(), tenants, clock });
        Ok(Self { listener, bus, state, settings })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.settings.http.addr)
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let mut sup = Supervisor::new("ingest");
        let stop = sup.stop_token();
        let router = router(self.state.clone(), self.settings.max_body_bytes)
            .merge(kit::http::ops_router(Readiness { bus: Some(self.bus.clone()), db: None, stop: stop.clone() }));
        sup.spawn("http", kit::http::serve(self.listener, router, stop));
        tracing::info!(tenants = self.state.tenants.len(), "ingest ready");
        sup.run(shutdown, self.settings.shutdown.drain_timeout).await
    }
}

fn router(state: Arc<AppState>, max_body: usize) -> Router {
    Router::new()
        .route("/v1/webhooks/{tenant}/{source}", post(webhook))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// A refusal: status and a short public reason. Internal detail goes to the log only.
fn refuse(status: StatusCode, reason: &str) -> Response {
    (status, axum::Json(json!({ "error": reason }))).into_response()
}

async fn webhook(
    State(app): State<Arc<AppState>>,
    Path((tenant, source)): Path<(String, String)>,
    Query(query): Query<WebhookQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers = dispatch::HttpHeaders { headers: &headers, url_token: query.token.as_deref() };
    let span = info_span!("webhook", tenant = %tenant, source = %source, topic = tracing::field::Empty, events = tracing::field::Empty);
    let response = handle_webhook(&app, &tenant, &source, &headers, body).instrument(span).await;
    let outcome = response.status().as_u16().to_string();
    metrics::counter!("ingest_webhooks_total", "source" => source_label(&source), "status" => outcome).increment(1);
    response
}

/// Keeps metric cardinality bounded: unknown sources share one label.
fn source_label(source: &str) -> &'static str {
    dispatch::KNOWN.iter().find(|s| **s == source).copied().unwrap_or("unknown")
}

/// `?token=…`: a shared secret in the URL, for platforms that cannot sign (Shippo).
#[derive(Debug, Default, Deserialize)]
struct WebhookQuery {
    token: Option<String>,
}

async fn handle_webhook(app: &AppState, tenant: &str, source: &str, headers: &dispatch::HttpHeaders<'_>, body: Bytes) -> Response {
    let Some(tenant) = app.tenants.find(tenant) else {
        return refuse(StatusCode::NOT_FOUND, "unknown tenant");
    };
    if !dispatch::KNOWN.contains(&source) {
        return refuse(StatusCode::NOT_FOUND, "unknown source");
    }
    let Some(secrets) = tenant.source(source) else {
        return refuse(StatusCode::NOT_FOUND, "source not configured for this tenant");
    };
    let parsed = dispatch::verify_and_parse(source, &secrets.as_bytes(), &tenant.id, headers, &body, app.clock.now());
    let events = match parsed {
        Ok(Parsed::Events(events)) => events,
        Ok(Parsed::Ignored { topic }) => {
            tracing::Span::current().record("topic", topic.as_str());
            metrics::counter!("ingest_ignored_total", "source" => source_label(source)).increment(1);
            return (StatusCode::OK, axum::Json(json!({ "status": "ignored", "topic": topic }))).into_response();
        }
        Err(e) => {
            tracing::info!(error = %e, "webhook refused");
            let status = match e {
                AdapterError::MissingSignature | AdapterError::BadSignature => StatusCode::UNAUTHORIZED,
                AdapterError::MalformedJson(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            return refuse(status, &e.to_string());
        }
    };
    tracing::Span::current().record("events", events.len());
    let mut duplicates = 0;
    for event in &events {
        match app.bus.publish_event(event).await {
            Ok(p) => duplicates += usize::from(p.duplicate),
            Err(e) => {
                // The platform will retry; a partial publish is safe because every event
                // has a stable id and JetStream drops the repeats.
                tracing::error!(error = %e, event_id = %event.id, "publish failed");
                return refuse(StatusCode::SERVICE_UNAVAILABLE, "event store unavailable, retry later");
            }
        }
    }
    (StatusCode::OK, axum::Json(json!({ "status": "accepted", "events": events.len(), "duplicates": duplicates })))
        .into_response()
}
