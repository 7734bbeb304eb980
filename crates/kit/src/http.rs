//! The ops endpoints every service serves next to its own routes, and the HTTP server loop.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What `/readyz` checks: the bus connection, the database, and that we are not draining.
#[derive(Clone, Debug)]
pub struct Readiness {
    pub bus: Option<bus::Bus>,
    pub db: Option<PgPool>,
    pub stop: CancellationToken,
}

impl Readiness {
    async fn check(&self) -> (bool, serde_json::Value) {
        let mut ok = true;
        let mut checks = serde_json::Map::new();
        if self.stop.is_cancelled() {
            ok = false;
            checks.insert("draining".into(), true.into());
        }
        if let Some(bus) = &self.bus {
            let up = bus.is_connected();
            ok &= up;
            checks.insert("nats".into(), if up { "up" } else { "down" }.into());
        }
        if let Some(db) = &self.db {
            let up = matches!(
                tokio::time::timeout(Duration::from_secs(2), sqlx::query("select 1").execute(db)).await,
                Ok(Ok(_))
            );
            ok &= up;
            checks.insert("database".into(), if up { "up" } else { "down" }.into());
        }
        (ok, serde_json::Value::Object(checks))
    }
}

/// The process-wide Prometheus recorder (installed once, shared by every service that runs
/// in this process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; then our handle stays empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// `/healthz`, `/readyz` and `/metrics`, merged into a service's own router.
pub fn ops_router(readiness: Readiness) -> Router {
    let handle = metrics_handle();
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready).with_state(Arc::new(readiness)))
        .route("/metrics", get(move || std::future::ready(handle.render())))
}

async fn ready(State(r): State<Arc<Readiness>>) -> impl IntoResponse {
    let (ok, checks) = r.check().await;
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(checks))
}

/// Serves `router` until `stop` is cancelled, then lets in-flight requests finish.
pub async fn serve(listener: TcpListener, router: Router, stop: CancellationToken) -> anyhow::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await?;
    Ok(())
}
