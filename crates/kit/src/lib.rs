//! Plumbing every Postflow service shares, and nothing else: typed settings from file and
//! environment, the ops endpoints (`/healthz`, `/readyz`, `/metrics`), a supervisor that
//! drains gracefully on SIGTERM, PostgreSQL pools with embedded migrations, and the clock.
//!
//! Boundary: no domain logic lives here.

pub mod clock;
pub mod db;
pub mod http;
pub mod settings;
pub mod supervisor;

pub use clock::{Clock, ManualClock, SystemClock};
pub use supervisor::{Supervisor, shutdown_signal};
