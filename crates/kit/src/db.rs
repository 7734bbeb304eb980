//! PostgreSQL pools. Each stateful service owns its database and its migrations.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

/// `[database]`. The URL is a secret: it never appears in logs or debug output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbSettings {
    pub url: SecretString,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_max_connections() -> u32 {
    10
}

impl DbSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: SecretString::from(url.into()), max_connections: default_max_connections() }
    }
}

/// A pool that connects on first use. No migrations: see [`connect`].
pub fn pool(settings: &DbSettings) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        // No ping before every statement (a second round trip each time; a sixth of the
        // sender's CPU in the benchmark's profile). A dead connection fails its statement
        // instead, which every handler already treats as transient and retries.
        .test_before_acquire(false)
        .connect_lazy(settings.url.expose_secret())
        .map_err(|e| anyhow::anyhow!("invalid database url: {e}"))
}

/// Opens a pool and applies `migrator`, retrying for up to a minute while the database
/// comes up (a rolling deploy may start services before PostgreSQL is ready).
pub async fn connect(settings: &DbSettings, migrator: &Migrator) -> anyhow::Result<PgPool> {
    let pool = pool(settings)?;
    let mut delay = Duration::from_millis(200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match migrator.run(&pool).await {
            Ok(()) => return Ok(pool),
            Err(e) if tokio::time::Instant::now() < deadline && is_connect_error(&e) => {
                tracing::warn!(error = %e, "database not reachable yet, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(anyhow::anyhow!("applying migrations: {e}")),
        }
    }
}

fn is_connect_error(e: &sqlx::migrate::MigrateError) -> bool {
    matches!(e, sqlx::migrate::MigrateError::Execute(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut))
}
