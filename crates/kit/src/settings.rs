//! Typed settings: built-in defaults, then an optional TOML file, then environment.
//!
//! The file is named by `POSTFLOW_CONFIG`; environment variables are
//! `POSTFLOW_<SECTION>__<KEY>` (e.g. `POSTFLOW_NATS__URL`, `POSTFLOW_DATABASE__URL`).
//! Every settings struct uses `#[serde(default)]`, so a missing file means defaults.

use std::net::SocketAddr;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Loads `T` from `POSTFLOW_CONFIG` (if set) and `POSTFLOW_*` variables.
pub fn load<T: DeserializeOwned>() -> anyhow::Result<T> {
    let mut figment = Figment::new();
    if let Ok(path) = std::env::var("POSTFLOW_CONFIG") {
        if !std::path::Path::new(&path).exists() {
            anyhow::bail!("settings file {path} (from POSTFLOW_CONFIG) does not exist");
        }
        figment = figment.merge(Toml::file(path));
    }
    figment = figment.merge(Env::prefixed("POSTFLOW_").ignore(&["CONFIG"]).split("__"));
    figment.extract().map_err(|e| anyhow::anyhow!("invalid settings: {e}"))
}

/// `[http]`: where the service listens (port 0 picks a free port).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub addr: SocketAddr,
}

impl HttpSettings {
    pub fn on(addr: &str) -> Self {
        Self { addr: addr.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0))) }
    }
}

/// `[shutdown]`: how long in-flight work may take after SIGTERM.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownSettings {
    #[serde(deserialize_with = "secs")]
    pub drain_timeout: Duration,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self { drain_timeout: Duration::from_secs(20) }
    }
}

/// Deserializes a number of seconds (`30`, `0.5`) into a `Duration`.
pub fn secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let v = f64::deserialize(d)?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(serde::de::Error::custom("duration must be a non-negative number of seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}
