//! The bus: Postflow's only coupling between services, and the only crate that imports
//! `async_nats`.
//!
//! It owns the stream topology ([`topology`]), the subject names ([`subjects`]), publishing
//! with `Nats-Msg-Id` so JetStream drops duplicate publishes, and durable pull consumers
//! ([`consumer`]) that ack only after the handler's effect is durable, nak with backoff on
//! transient failures and move poison messages to a dead-letter stream with the reason.
//!
//! Invariant: services never build subject strings; they name a [`Feed`] and the bus maps
//! it to subjects, streams and filters.

pub mod consumer;
mod dead_letters;
mod publish;
mod settings;
pub mod subjects;
pub mod topology;

use std::time::Duration;

use async_nats::jetstream;

pub use consumer::{ConsumerSpec, Delivery, Feed, HandleError, Handler};
pub use dead_letters::DeadLetter;
pub use publish::{PublishError, Published};
pub use settings::BusSettings;

/// A connection to NATS with its JetStream context.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    settings: BusSettings,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("url", &self.settings.url).finish_non_exhaustive()
    }
}

impl Bus {
    /// Connects as `name` (shown in NATS monitoring). Keeps retrying in the background when
    /// NATS is not reachable yet; readiness reports it through [`Bus::is_connected`].
    pub async fn connect(settings: &BusSettings, name: &str) -> anyhow::Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .name(name)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(settings.url.as_str())
            .await?;
        let js = jetstream::new(client.clone());
        Ok(Self { client, js, settings: settings.clone() })
    }

    pub fn settings(&self) -> &BusSettings {
        &self.settings
    }

    /// True while the connection to NATS is up.
    pub fn is_connected(&self) -> bool {
        matches!(self.client.connection_state(), async_nats::connection::State::Connected)
    }


    /// How many messages `stream` holds now (for tests, benchmarks and operators).
    pub async fn stream_len(&self, stream: &str) -> anyhow::Result<u64> {
        let mut s = self.js.get_stream(stream).await?;
        Ok(s.info().await?.state.messages)
    }

    /// How many messages a durable consumer has not yet acknowledged or been delivered.
    pub async fn consumer_pending(&self, stream: &str, durable: &str) -> anyhow::Result<u64> {
        let s = self.js.get_stream(stream).await?;
        let mut c: jetstream::consumer::PullConsumer = s.get_consumer(durable).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let info = c.info().await?;
        Ok(info.num_pending + info.num_ack_pending as u64)
    }
}
