//! Service processes under measurement: spawn with settings in the environment, wait for
//! readiness, read CPU time and memory from /proc, stop with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

pub struct Proc {
    pub name: String,
    child: Child,
    pid: u32,
    pub http: Option<std::net::SocketAddr>,
}

impl Proc {
    pub fn spawn(name: &str, bin: &Path, args: &[&str], env: &[(String, String)], logs: &Path) -> anyhow::Result<Self> {
        let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
        let mut cmd = Command::new(bin);
        cmd.args(args).envs(env.iter().cloned()).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| anyhow::anyhow!("starting {}: {e}", bin.display()))?;
        let pid = child.id().ok_or_else(|| anyhow::anyhow!("{name} exited at once"))?;
        Ok(Self { name: name.to_owned(), child, pid, http: None })
    }

    /// Waits until `/readyz` answers 200.
    pub async fn ready(mut self, addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("{} exited during start ({status}); see its log", self.name);
            }
            if readyz(addr).await {
                self.http = Some(addr);
                return Ok(self);
            }
            anyhow::ensure!(Instant::now() < deadline, "{} not ready after 60 s", self.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// User + system CPU seconds used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else { return 0.0 };
        // Fields after the parenthesised command name; utime and stime are 14th and 15th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / clock_ticks()
    }

    /// (current, peak) resident memory in MiB.
    pub fn rss_mib(&self) -> (f64, f64) {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", self.pid)) else { return (0.0, 0.0) };
        let kib = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
    }

    /// SIGTERM, then wait up to 30 s for the drain.
    pub async fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status().await;
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

async fn readyz(addr: std::net::SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else { return false };
    let req = format!("GET /readyz HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).await.is_ok() && &buf[9..12] == b"200"
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Where a Debian tool lives: on PATH or in /usr/sbin.
pub fn tool(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|c| c.is_file()))
        .unwrap_or_default();
    on_path.or_else(|| {
        let s = PathBuf::from("/usr/sbin").join(name);
        s.is_file().then_some(s)
    })
}
