//! Ephemeral `nats-server` with JetStream on a random local port, killed and wiped on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::AsyncBufReadExt as _;

use crate::process;

const START_DEADLINE: Duration = Duration::from_secs(10);

/// A private `nats-server` process (JetStream enabled, store in a temporary directory).
#[derive(Debug)]
pub struct NatsServer {
    // Declared before `dir` so the process is gone before its store is removed.
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts `nats-server -js` on 127.0.0.1 with a random port and waits (up to 10 s) until it serves clients.
    pub async fn start() -> anyhow::Result<Self> {
        let binary = process::find_binary("nats-server", &["/usr/sbin", "/usr/bin", "/usr/local/bin"])
            .context(
                "nats-server not found on PATH or in /usr/sbin; install the debian package `nats-server`",
            )?;
        let dir = tempfile::Builder::new()
            .prefix("postflow-nats-")
            .tempdir()
            .context("creating nats temp dir")?;
        let store = dir.path().join("store");
        let ports_dir = dir.path().join("ports");
        std::fs::create_dir(&ports_dir).context("creating nats ports dir")?;
        let log_path = dir.path().join("nats.log");
        let log = File::create(&log_path).context("creating nats log")?;
        let log_err = log.try_clone().context("cloning nats log handle")?;

        // `-p -1` picks a random port; `--ports_file_dir` makes the server report it in
        // `<dir>/nats-server_<pid>.ports` once it listens (the file is removed on shutdown).
        let child = Command::new(&binary)
            .arg("-js")
            .args(["-a", "127.0.0.1", "-p", "-1"])
            .arg("-sd")
            .arg(&store)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        let mut server = Self {
            child,
            port: 0,
            dir,
        };
        server.port = server.wait_ready(&ports_dir, &log_path).await?;
        tracing::debug!(url = %server.url(), "nats-server ready");
        Ok(server)
    }

    async fn wait_ready(&mut self, ports_dir: &Path, log_path: &Path) -> anyhow::Result<u16> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().context("checking nats-server")? {
                anyhow::bail!(
                    "nats-server exited during startup ({status}); log:\n{}",
                    process::log_tail(log_path, 30)
                );
            }
            let last = match read_port(ports_dir) {
                Some(port) => match probe(port).await {
                    Ok(()) => return Ok(port),
                    Err(err) => format!("port {port}: {err:#}"),
                },
                None => String::from("no ports file yet"),
            };
            if start.elapsed() >= START_DEADLINE {
                anyhow::bail!(
                    "nats-server not ready after {START_DEADLINE:?}: {last}; log:\n{}",
                    process::log_tail(log_path, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory (removed on drop).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        // SIGKILL: nothing to flush, and it cannot be ignored.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the client port from the `*.ports` file nats-server writes once it listens.
fn read_port(ports_dir: &Path) -> Option<u16> {
    let entries = std::fs::read_dir(ports_dir).ok()?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "ports") {
            continue;
        }
        // {"nats":["nats://127.0.0.1:40077"], ...}
        let text = std::fs::read_to_string(&path).ok()?;
        let rest = text.split("nats://").nth(1)?;
        let end = rest.find('"')?;
        let port = rest[..end].rsplit_once(':')?.1;
        return port.parse().ok();
    }
    None
}

/// Connects and checks the server greets with an `INFO` announcing JetStream.
async fn probe(port: u16) -> anyhow::Result<()> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .context("connecting")?;
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(2), reader.read_line(&mut line))
        .await
        .context("waiting for the info line")?
        .context("reading the info line")?;
    anyhow::ensure!(line.starts_with("INFO "), "unexpected greeting {line:?}");
    anyhow::ensure!(
        line.contains("\"jetstream\":true"),
        "server greeting does not announce jetstream: {line}"
    );
    Ok(())
}
