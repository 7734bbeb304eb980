//! Test-only helpers for Postflow crates: ephemeral `nats-server` and PostgreSQL, polling with deadlines, and test tracing.
//!
//! Add as a dev-dependency (`testkit.workspace = true`) and use from `#[tokio::test]`s:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! testkit::init_test_tracing();
//! let nats = testkit::NatsServer::start().await?;
//! let pg = testkit::Postgres::start().await?;
//! let db_url = pg.create_database("ingest").await?;
//! let mail = testkit::smtp_capture::SmtpCapture::start(Default::default()).await?;
//! let n = testkit::eventually(Duration::from_secs(5), "a captured mail", || async {
//!     (mail.count() > 0).then_some(mail.count())
//! })
//! .await;
//! # let _ = (nats.url(), db_url, n); Ok(()) }
//! ```
//!
//! Keep the servers in test-local variables: they are stopped and their files removed on drop,
//! which never happens for values stored in statics.

mod nats;
mod postgres;
mod process;
mod wait;

pub use nats::NatsServer;
pub use postgres::Postgres;
pub use smtp_capture;
pub use wait::{eventually, eventually_ok};

use std::sync::Once;

use tracing_subscriber::EnvFilter;

/// Installs a `tracing` fmt subscriber writing through the test harness capture; safe to call from every test.
/// The filter defaults to `warn` and can be overridden with `RUST_LOG`.
pub fn init_test_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
        // Another subscriber may already be installed by the test itself; keep that one.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// A TCP port on 127.0.0.1 that was free a moment ago (another process may still take it).
///
/// # Panics
/// When no port can be bound at all.
pub fn free_port() -> u16 {
    process::free_port().expect("binding 127.0.0.1:0 to find a free port")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("port is free");
    }

    #[test]
    fn tracing_init_is_idempotent() {
        init_test_tracing();
        init_test_tracing();
        tracing::warn!("test tracing works");
    }
}
