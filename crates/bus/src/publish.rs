//! Publishing contracts with a dedupe id and the current trace context.

use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage as Publish;
use contracts::{Envelope, OutboundMessage, RenderRequest};
use serde::Serialize;

use crate::{Bus, subjects};

/// What JetStream said about a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The stream already held a message with the same `Nats-Msg-Id` (inside the window).
    pub duplicate: bool,
    pub sequence: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("encoding message: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("jetstream did not store the message: {0}")]
    NotStored(String),
}

impl Bus {
    /// Publishes a domain event. Its `Nats-Msg-Id` is the event id, derived from tenant and
    /// idempotency key, so a repeated webhook inside the duplicate window is dropped by
    /// JetStream. Returns once the event is stored.
    pub async fn publish_event(&self, event: &Envelope) -> Result<Published, PublishError> {
        let subject = subjects::event(&event.tenant, event.kind());
        self.publish_json(subject, Some(&event.id.to_string()), event).await
    }

    /// Publishes an event again under a fresh message id, bypassing the duplicate window.
    /// For operators replaying events (and for tests proving consumers are idempotent).
    pub async fn replay_event(&self, event: &Envelope) -> Result<Published, PublishError> {
        let subject = subjects::event(&event.tenant, event.kind());
        self.publish_json(subject, None, event).await
    }

    pub async fn publish_render(&self, req: &RenderRequest) -> Result<Published, PublishError> {
        let subject = subjects::render(req.lane, &req.tenant);
        self.publish_json(subject, Some(req.message_id.as_str()), req).await
    }

    pub async fn publish_outbound(&self, msg: &OutboundMessage) -> Result<Published, PublishError> {
        let subject = subjects::send(msg.lane, &msg.tenant);
        self.publish_json(subject, Some(msg.message_id.as_str()), msg).await
    }

    async fn publish_json(
        &self,
        subject: String,
        msg_id: Option<&str>,
        body: &impl Serialize,
    ) -> Result<Published, PublishError> {
        let payload = serde_json::to_vec(body)?;
        let mut headers = HeaderMap::new();
        for (name, value) in telemetry::current_context_headers() {
            headers.insert(name.as_str(), value.as_str());
        }
        let mut publish = Publish::build().payload(payload.into()).headers(headers);
        if let Some(id) = msg_id {
            publish = publish.message_id(id);
        }
        self.send(subject, publish).await
    }

    pub(crate) async fn send(&self, subject: String, publish: Publish) -> Result<Published, PublishError> {
        let ack = self
            .js
            .send_publish(subject, publish)
            .await
            .map_err(|e| PublishError::NotStored(e.to_string()))?
            .await
            .map_err(|e| PublishError::NotStored(e.to_string()))?;
        Ok(Published { duplicate: ack.duplicate, sequence: ack.sequence })
    }
}
