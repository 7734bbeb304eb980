//! Durable pull consumers with bounded concurrency, explicit acks, backoff and dead letters.
//!
//! Invariants:
//! - a message is acknowledged only after its handler returned `Ok` (its effect is durable)
//!   or after it was stored in the dead-letter stream;
//! - a transient failure is retried with exponential backoff and jitter, up to
//!   `max_attempts`, then dead-lettered with the last reason; nothing is silently dropped;
//! - on shutdown the loop stops pulling, then waits for in-flight handlers up to a timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::{self, AckKind};
use contracts::{EventKind, Lane};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use crate::{Bus, subjects};

/// What a consumer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// Domain events of one type, from every tenant.
    Events(EventKind),
    /// Render requests of one lane.
    Render(Lane),
    /// Outbound messages of one lane.
    Send(Lane),
}

impl Feed {
    fn stream(self) -> &'static str {
        match self {
            Self::Events(_) => subjects::EVENTS_STREAM,
            Self::Render(_) => subjects::RENDER_STREAM,
            Self::Send(_) => subjects::SEND_STREAM,
        }
    }

    fn filter(self) -> String {
        match self {
            Self::Events(kind) => subjects::event_filter(kind),
            Self::Render(lane) => subjects::render_filter(lane),
            Self::Send(lane) => subjects::send_filter(lane),
        }
    }

    fn label(self) -> String {
        match self {
            Self::Events(kind) => kind.as_str().replace('.', "-"),
            Self::Render(lane) => format!("render-{}", lane.token()),
            Self::Send(lane) => format!("send-{}", lane.token()),
        }
    }
}

/// One durable consumer: `{service}-{feed}` shares work among all replicas of a service.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub service: &'static str,
    pub feed: Feed,
    /// Messages handled at once by this process.
    pub concurrency: usize,
}

impl ConsumerSpec {
    pub fn new(service: &'static str, feed: Feed, concurrency: usize) -> Self {
        Self { service, feed, concurrency: concurrency.max(1) }
    }

    pub fn durable_name(&self) -> String {
        format!("{}-{}", self.service, self.feed.label())
    }

    pub fn stream(&self) -> &'static str {
        self.feed.stream()
    }
}

/// One message handed to a handler.
#[derive(Debug)]
pub struct Delivery<T> {
    pub body: T,
    pub subject: String,
    /// 1 on first delivery.
    pub attempt: u32,
    pub stream_sequence: u64,
}

/// How a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Worth retrying later (database or bus unavailable, SMTP 4xx, …).
    #[error("transient: {0:#}")]
    Transient(anyhow::Error),
    /// Retrying cannot help (invalid content, unknown tenant, …): dead-letter it now.
    #[error("permanent: {0:#}")]
    Permanent(anyhow::Error),
    /// Not an error: come back after this delay (e.g. another replica holds the work).
    #[error("deferred for {0:?}")]
    Defer(Duration),
}

impl HandleError {
    pub fn transient(e: impl Into<anyhow::Error>) -> Self {
        Self::Transient(e.into())
    }

    pub fn permanent(e: impl Into<anyhow::Error>) -> Self {
        Self::Permanent(e.into())
    }
}

/// The effect of one message. Must be idempotent: the bus delivers at least once.
pub trait Handler<T>: Send + Sync + 'static {
    fn handle(&self, delivery: Delivery<T>) -> impl Future<Output = Result<(), HandleError>> + Send;
}

impl Bus {
    /// Runs the consumer until `stop` is cancelled, then drains in-flight work for at most
    /// `drain`. Returns an error only if the consumer cannot be created.
    pub async fn run_consumer<T, H>(
        &self,
        spec: ConsumerSpec,
        handler: Arc<H>,
        stop: CancellationToken,
        drain: Duration,
    ) -> anyhow::Result<()>
    where
        T: DeserializeOwned + Send + 'static,
        H: Handler<T>,
    {
        let durable = spec.durable_name();
        let stream = self
            .js
            .get_stream(spec.stream())
            .await
            .map_err(|e| anyhow::anyhow!("opening stream {}: {e}", spec.stream()))?;
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: spec.feed.filter(),
                    ack_policy: AckPolicy::Explicit,
                    deliver_policy: DeliverPolicy::All,
                    ack_wait: self.settings.ack_wait,
                    max_deliver: -1,
                    max_ack_pending: (spec.concurrency * 4).max(64) as i64,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("creating consumer {durable}: {e}"))?;

        let semaphore = Arc::new(Semaphore::new(spec.concurrency));
        let mut in_flight = JoinSet::new();
        let consumer_name: Arc<str> = durable.clone().into();
        tracing::info!(consumer = %durable, concurrency = spec.concurrency, "consumer started");

        'pull: while !stop.is_cancelled() {
            let mut messages = match consumer
                .stream()
                .max_messages_per_batch(spec.concurrency.min(256))
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    warn!(consumer = %durable, error = %e, "pull failed, retrying");
                    tokio::select! {
                        _ = stop.cancelled() => break 'pull,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue 'pull,
                    }
                }
            };
            loop {
                let permit = tokio::select! {
                    _ = stop.cancelled() => break 'pull,
                    p = semaphore.clone().acquire_owned() => p?,
                };
                let next = tokio::select! {
                    _ = stop.cancelled() => break 'pull,
                    m = messages.next() => m,
                };
                let message = match next {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        warn!(consumer = %durable, error = %e, "message stream error");
                        continue;
                    }
                    None => continue 'pull,
                };
                while in_flight.try_join_next().is_some() {}
                let handler = handler.clone();
                let bus = self.clone();
                let name = consumer_name.clone();
                in_flight.spawn(async move {
                    bus.process::<T, H>(&name, message, &*handler).await;
                    drop(permit);
                });
            }
        }

        while in_flight.try_join_next().is_some() {}
        tracing::info!(consumer = %durable, in_flight = in_flight.len(), "consumer draining");
        let drained = tokio::time::timeout(drain, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(consumer = %durable, left = in_flight.len(), "drain timed out; unacked messages will be redelivered");
            in_flight.abort_all();
        }
        Ok(())
    }

    async fn process<T, H>(&self, consumer: &str, message: jetstream::Message, handler: &H)
    where
        T: DeserializeOwned + Send + 'static,
        H: Handler<T>,
    {
        let started = Instant::now();
        let (attempt, stream_sequence) = match message.info() {
            Ok(info) => (u32::try_from(info.delivered).unwrap_or(u32::MAX), info.stream_sequence),
            Err(_) => (1, 0),
        };
        let subject = message.subject.to_string();
        let span = info_span!("consume", consumer, subject = %subject, attempt, seq = stream_sequence);
        telemetry::continue_trace(&span, &header_pairs(message.headers.as_ref()));

        let outcome = async {
            let body: T = match serde_json::from_slice(&message.payload) {
                Ok(b) => b,
                Err(e) => return Err(HandleError::Permanent(anyhow::anyhow!("undecodable payload: {e}"))),
            };
            handler.handle(Delivery { body, subject: subject.clone(), attempt, stream_sequence }).await
        }
        .instrument(span.clone())
        .await;

        let label = match outcome {
            Ok(()) => {
                if let Err(e) = message.ack().await {
                    warn!(parent: &span, error = %e, "ack failed; message will be redelivered");
                }
                "ack"
            }
            Err(HandleError::Defer(delay)) => {
                let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
                "defer"
            }
            Err(HandleError::Transient(e)) if attempt < self.settings.max_attempts => {
                let delay = self.backoff(attempt);
                warn!(parent: &span, error = %format!("{e:#}"), retry_in_ms = delay.as_millis() as u64, "transient failure");
                let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
                "retry"
            }
            Err(e) => {
                let reason = e.to_string();
                warn!(parent: &span, reason = %reason, "dead-lettering message");
                match self.dead_letter(consumer, &message, &reason, attempt, stream_sequence).await {
                    Ok(()) => {
                        let _ = message.ack().await;
                        "dead"
                    }
                    Err(dlq) => {
                        warn!(parent: &span, error = %dlq, "dead-letter publish failed; retrying later");
                        let _ = message.ack_with(AckKind::Nak(Some(self.backoff(attempt)))).await;
                        "retry"
                    }
                }
            }
        };
        metrics::counter!("bus_messages_total", "consumer" => consumer.to_owned(), "outcome" => label).increment(1);
        metrics::histogram!("bus_handle_seconds", "consumer" => consumer.to_owned())
            .record(started.elapsed().as_secs_f64());
    }

    async fn dead_letter(
        &self,
        consumer: &str,
        message: &jetstream::Message,
        reason: &str,
        attempt: u32,
        stream_sequence: u64,
    ) -> anyhow::Result<()> {
        let mut headers = message.headers.clone().unwrap_or_default();
        headers.insert("Pf-Dlq-Consumer", consumer);
        headers.insert("Pf-Dlq-Subject", message.subject.as_str());
        headers.insert("Pf-Dlq-Reason", one_line(reason).as_str());
        headers.insert("Pf-Dlq-Attempts", attempt.to_string().as_str());
        let publish = Publish::build()
            .payload(message.payload.clone())
            .headers(headers)
            .message_id(format!("{consumer}:{stream_sequence}"));
        self.send(subjects::dead_letter(consumer), publish).await?;
        Ok(())
    }

    /// Exponential backoff with ±25 % jitter: base × 2^(attempt−1), capped.
    fn backoff(&self, attempt: u32) -> Duration {
        let s = &self.settings;
        let exp = s.backoff_base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(s.backoff_max);
        let jitter = 0.75 + fastrand::f64() * 0.5;
        capped.mul_f64(jitter)
    }
}

fn header_pairs(headers: Option<&HeaderMap>) -> Vec<(String, String)> {
    let Some(headers) = headers else { return Vec::new() };
    ["traceparent", "tracestate"]
        .iter()
        .filter_map(|name| headers.get(*name).map(|v| ((*name).to_owned(), v.as_str().to_owned())))
        .collect()
}

fn one_line(s: &str) -> String {
    let mut out: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    out.truncate(1000);
    out
}
