//! Telemetry for every service: JSON logs, OpenTelemetry traces (exported over OTLP/HTTP
//! when an endpoint is configured) and W3C trace-context propagation helpers, so that one
//! order is one trace from the webhook to the open pixel.
//!
//! Boundary: this crate knows nothing of NATS; the bus turns the `(name, value)` pairs
//! produced here into message headers and back.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, global};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, fmt};

/// Telemetry settings, part of every service's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `tracing` filter directive, e.g. `info,sqlx=warn`. `RUST_LOG` wins when set.
    pub log_filter: String,
    /// `json` (default, for machines) or `pretty` (for people at a terminal).
    pub log_format: LogFormat,
    /// OTLP/HTTP traces endpoint, e.g. `http://otel-collector:4318/v1/traces`.
    /// Traces are still created (and propagated) without one (or with an empty one), just
    /// not exported.
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self { log_filter: "info".into(), log_format: LogFormat::Json, otlp_endpoint: None }
    }
}

/// Flushes and shuts the trace pipeline down when dropped or on [`Guard::shutdown`].
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Guard {
    /// Flushes pending spans. Call once on the way out.
    pub fn shutdown(mut self) {
        self.flush();
    }

    fn flush(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown() {
                eprintln!("telemetry shutdown failed: {e}");
            }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Installs the global subscriber, tracer provider and W3C propagator for `service`.
pub fn init(service: &str, settings: &TelemetrySettings) -> anyhow::Result<Guard> {
    install_propagator();
    let mut builder = SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(service.to_owned()).build());
    if let Some(endpoint) = settings.otlp_endpoint.as_ref().filter(|e| !e.trim().is_empty()) {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.clone())
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    global::set_tracer_provider(provider.clone());
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer(service.to_owned()));

    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log_filter))?;
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    match settings.log_format {
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true).with_current_span(true).with_span_list(false))
            .try_init()?,
        LogFormat::Pretty => registry.with(fmt::layer().compact()).try_init()?,
    }
    Ok(Guard { provider: Some(provider) })
}

/// Installs the W3C trace-context propagator (idempotent). `init` calls it; tests that
/// install their own subscriber may call it directly.
pub fn install_propagator() {
    global::set_text_map_propagator(TextMapCompositePropagator::new(vec![Box::new(
        TraceContextPropagator::new(),
    )]));
}

/// The current span's trace context as `(header name, value)` pairs (`traceparent`, …).
/// Empty when no trace is active.
pub fn current_context_headers() -> Vec<(String, String)> {
    let cx = tracing::Span::current().context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    carrier.into_iter().collect()
}

/// Makes `span` a child of the trace described by `headers` (as produced by
/// [`current_context_headers`] on the other side of the bus). Unknown or absent headers
/// leave the span as a new root.
pub fn continue_trace(span: &tracing::Span, headers: &[(String, String)]) {
    if headers.is_empty() {
        return;
    }
    let carrier: HashMap<String, String> =
        headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
    let parent: Context = global::get_text_map_propagator(|p| p.extract(&carrier));
    let _ = span.set_parent(parent);
}

