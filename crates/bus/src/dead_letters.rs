//! Reading the dead-letter stream: what was given up on, by which consumer, and why.

use crate::{Bus, subjects};

/// One dead-lettered message.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub sequence: u64,
    pub consumer: String,
    /// The subject the message was first published on.
    pub subject: String,
    pub reason: String,
    pub attempts: u32,
    pub payload: Vec<u8>,
}

impl Bus {
    /// Up to `limit` dead letters, oldest first.
    pub async fn dead_letters(&self, limit: usize) -> anyhow::Result<Vec<DeadLetter>> {
        let mut stream = self.js.get_stream(subjects::DLQ_STREAM).await?;
        let state = stream.info().await?.state.clone();
        let mut out = Vec::new();
        if state.messages == 0 {
            return Ok(out);
        }
        for seq in state.first_sequence..=state.last_sequence {
            if out.len() >= limit {
                break;
            }
            // Gaps (deleted messages) are skipped.
            let Ok(m) = stream.get_raw_message(seq).await else { continue };
            let h = |name: &str| m.headers.get(name).map(|v| v.as_str().to_owned()).unwrap_or_default();
            out.push(DeadLetter {
                sequence: m.sequence,
                consumer: h("Pf-Dlq-Consumer"),
                subject: h("Pf-Dlq-Subject"),
                reason: h("Pf-Dlq-Reason"),
                attempts: h("Pf-Dlq-Attempts").parse().unwrap_or(0),
                payload: m.payload.to_vec(),
            });
        }
        Ok(out)
    }
}
