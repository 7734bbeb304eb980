//! Runs a service's tasks (HTTP server, consumers, workers) until a shutdown signal, then
//! drains: every task sees the stop token, stops taking new work and finishes what it has,
//! within the drain timeout.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub struct Supervisor {
    service: &'static str,
    stop: CancellationToken,
    tasks: JoinSet<(String, anyhow::Result<()>)>,
}

impl Supervisor {
    pub fn new(service: &'static str) -> Self {
        Self { service, stop: CancellationToken::new(), tasks: JoinSet::new() }
    }

    /// The token every task must watch.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub fn spawn(&mut self, name: impl Into<String>, task: impl Future<Output = anyhow::Result<()>> + Send + 'static) {
        let name = name.into();
        self.tasks.spawn(async move { (name.clone(), task.await) });
    }

    /// Runs until `shutdown` resolves or a task fails, then cancels and waits for the rest
    /// (at most `drain` plus a grace second). A task that failed makes this an error.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send, drain: Duration) -> anyhow::Result<()> {
        let mut failure = None;
        tokio::select! {
            () = shutdown => info!(service = self.service, "shutdown requested, draining"),
            Some(done) = self.tasks.join_next() => {
                let (name, result) = done.unwrap_or_else(|e| ("task".into(), Err(anyhow::anyhow!("panicked: {e}"))));
                match result {
                    Ok(()) => warn!(service = self.service, task = %name, "task ended early, stopping"),
                    Err(e) => {
                        error!(service = self.service, task = %name, error = %format!("{e:#}"), "task failed, stopping");
                        failure = Some(e.context(format!("{} task {name}", self.service)));
                    }
                }
            }
        }
        self.stop.cancel();
        let waited = tokio::time::timeout(drain + Duration::from_secs(1), async {
            while let Some(done) = self.tasks.join_next().await {
                if let Ok((name, Err(e))) = done {
                    warn!(service = self.service, task = %name, error = %format!("{e:#}"), "task failed while draining");
                }
            }
        })
        .await;
        if waited.is_err() {
            warn!(service = self.service, left = self.tasks.len(), "drain timed out, aborting the rest");
            self.tasks.abort_all();
        }
        info!(service = self.service, "stopped");
        failure.map_or(Ok(()), Err)
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
