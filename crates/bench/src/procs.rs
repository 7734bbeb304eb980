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
        pid_cpu_seconds(self.pid, false)
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

/// Busy and total CPU time of the whole machine so far (ticks, from /proc/stat): the load
/// of everything else on a shared machine shows up as the difference to our processes.
pub fn machine_cpu() -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return (0, 0) };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return (0, 0) };
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal …; idle and iowait are not busy.
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Share of the machine's CPU that was busy between two [`machine_cpu`] readings.
pub fn busy_share(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.1.saturating_sub(before.1);
    if total == 0 { 0.0 } else { after.0.saturating_sub(before.0) as f64 / total as f64 }
}

/// CPU seconds of process `pid` (user + system), with `reaped` also those of its children
/// that exited and were waited for.
pub fn pid_cpu_seconds(pid: u32, reaped: bool) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    stat_cpu_seconds(&stat, reaped)
}

fn stat_cpu_seconds(stat: &str, reaped: bool) -> f64 {
    // Fields after the parenthesised command name: utime, stime, cutime, cstime are the
    // 14th to 17th fields of the line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let own = ticks(11) + ticks(12);
    (if reaped { own + ticks(13) + ticks(14) } else { own }) / clock_ticks()
}

/// CPU seconds of a process tree: the root (with its reaped children) and its live
/// children. For PostgreSQL: the postmaster and every backend, including ended ones.
pub fn tree_cpu_seconds(root: u32) -> f64 {
    let mut total = pid_cpu_seconds(root, true);
    let Ok(dir) = std::fs::read_dir("/proc") else { return total };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let ppid = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(root) {
            total += stat_cpu_seconds(&stat, true);
        }
    }
    total
}

/// The first process whose command line contains `needle`.
pub fn find_pid(needle: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(needle).then_some(pid)
    })
}
