//! Bus settings, embedded in every service's settings as `[nats]`.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusSettings {
    /// e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// Stream replicas: 1 for a single server, 3 for a JetStream cluster.
    pub replicas: usize,
    /// How long JetStream remembers a `Nats-Msg-Id` to drop duplicate publishes.
    #[serde(with = "humantime_secs")]
    pub duplicate_window: Duration,
    /// How long a delivered message may stay unacknowledged before redelivery.
    #[serde(with = "humantime_secs")]
    pub ack_wait: Duration,
    /// Deliveries of one message before it is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay after a transient failure; doubles each attempt.
    #[serde(with = "humantime_secs")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_secs")]
    pub backoff_max: Duration,
    /// How long domain events are kept for replays and late consumers.
    #[serde(with = "humantime_secs")]
    pub events_max_age: Duration,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            replicas: 1,
            duplicate_window: Duration::from_secs(15 * 60),
            ack_wait: Duration::from_secs(30),
            max_attempts: 20,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(300),
            events_max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Durations in settings are written as seconds (`30`, `0.5`), in files and env alike.
mod humantime_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        if !(secs.is_finite() && secs >= 0.0) {
            return Err(serde::de::Error::custom("duration must be a non-negative number of seconds"));
        }
        Ok(Duration::from_secs_f64(secs))
    }
}
