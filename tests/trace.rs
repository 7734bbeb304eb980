//! One order is one trace: the W3C trace context travels in NATS headers (and through
//! the scheduler's durable timers) from the webhook to the tracker.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;

use std::collections::BTreeSet;

use common::{SHOPIFY_SECRET, Stack, shopify_sample};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test]
async fn one_order_is_one_trace_from_webhook_to_tracker() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("postflow-test")));
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber in this test binary");
    telemetry::install_propagator();

    let stack = Stack::start().await;
    let res = stack.post_shopify(&shopify_sample(), "trace-test", Some(SHOPIFY_SECRET)).await;
    assert_eq!(res.status(), 200);
    stack.smtp.wait_for(1, std::time::Duration::from_secs(60)).await.expect("an email");
    stack.settle().await;
    provider.force_flush().expect("flush spans");

    let spans = exporter.get_finished_spans().expect("spans");
    let webhook = spans.iter().find(|s| s.name == "webhook").expect("a webhook span");
    let trace = webhook.span_context.trace_id();
    let consumer_of = |s: &opentelemetry_sdk::trace::SpanData| {
        s.attributes.iter().find(|kv| kv.key.as_str() == "consumer").map(|kv| kv.value.to_string())
    };
    let mut seen = BTreeSet::new();
    for span in spans.iter().filter(|s| ["consume", "flow_step", "deliver"].contains(&s.name.as_ref())) {
        assert_eq!(
            span.span_context.trace_id(),
            trace,
            "span {} ({:?}) is not in the order's trace",
            span.name,
            consumer_of(span)
        );
        seen.insert(consumer_of(span).unwrap_or_else(|| span.name.to_string()));
    }
    for expected in [
        "segmenter-order-placed",
        "scheduler-order-placed",
        "flow_step",
        "renderer-render-tx",
        "sender-send-tx",
        "deliver",
        "tracker-email-sent",
    ] {
        assert!(seen.contains(expected), "no span from {expected} in the trace; saw {seen:?}");
    }
}
