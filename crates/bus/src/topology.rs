//! Streams declared in code. `ensure` is idempotent and safe to call from every replica.

use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};

use crate::{Bus, subjects};

impl Bus {
    /// Creates or updates every stream Postflow uses.
    pub async fn ensure_topology(&self) -> anyhow::Result<()> {
        let s = &self.settings;
        let streams = [
            Config {
                name: subjects::EVENTS_STREAM.into(),
                subjects: vec![subjects::EVENTS_ALL.into()],
                retention: RetentionPolicy::Limits,
                max_age: s.events_max_age,
                ..Default::default()
            },
            Config {
                name: subjects::RENDER_STREAM.into(),
                subjects: vec![subjects::RENDER_ALL.into()],
                retention: RetentionPolicy::WorkQueue,
                ..Default::default()
            },
            Config {
                name: subjects::SEND_STREAM.into(),
                subjects: vec![subjects::SEND_ALL.into()],
                retention: RetentionPolicy::WorkQueue,
                ..Default::default()
            },
            Config {
                name: subjects::DLQ_STREAM.into(),
                subjects: vec![subjects::DLQ_ALL.into()],
                retention: RetentionPolicy::Limits,
                max_age: std::time::Duration::from_secs(30 * 24 * 3600),
                ..Default::default()
            },
        ];
        for mut config in streams {
            config.storage = StorageType::File;
            config.num_replicas = s.replicas;
            config.duplicate_window = s.duplicate_window;
            let name = config.name.clone();
            self.js
                .create_or_update_stream(config)
                .await
                .map_err(|e| anyhow::anyhow!("declaring stream {name}: {e}"))?;
        }
        Ok(())
    }
}
