//! Process plumbing for the server fixtures: finding binaries, detecting root, signalling and watching pids.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Binds 127.0.0.1:0 and returns the port the kernel picked.
pub(crate) fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Looks `name` up in `PATH`.
pub(crate) fn find_on_path(name: impl AsRef<OsStr>) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name.as_ref()))
        .find(|candidate| is_executable(candidate))
}

/// Looks `name` up in `PATH`, then in `extra_dirs` (the sbin dirs are often missing from a user's PATH).
pub(crate) fn find_binary(name: &str, extra_dirs: &[&str]) -> Option<PathBuf> {
    find_on_path(name).or_else(|| {
        extra_dirs
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|candidate| is_executable(candidate))
    })
}

/// Whether this process runs as root, according to `id -u`.
pub(crate) fn is_root() -> anyhow::Result<bool> {
    let output = Command::new("id")
        .arg("-u")
        .stdin(Stdio::null())
        .output()
        .context("running `id -u`")?;
    anyhow::ensure!(output.status.success(), "`id -u` failed: {}", output.status);
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// Sends signal `name` (e.g. `QUIT`, `KILL`) to `pid` with the `kill` command; false when that failed.
pub(crate) fn send_signal(pid: u32, name: &str) -> bool {
    Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `pid` is a live (not zombie) process.
pub(crate) fn pid_alive(pid: u32) -> bool {
    let proc_root = Path::new("/proc");
    if proc_root.join("self").exists() {
        return match std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")) {
            // The state letter follows the parenthesised command name.
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X"),
            Err(_) => false,
        };
    }
    send_signal(pid, "0")
}

/// Whether the command line of `pid` mentions `needle` (true when `/proc` is unavailable).
pub(crate) fn pid_cmdline_contains(pid: u32, needle: &Path) -> bool {
    let proc_root = Path::new("/proc");
    if !proc_root.join("self").exists() {
        return true;
    }
    let Ok(raw) = std::fs::read(proc_root.join(pid.to_string()).join("cmdline")) else {
        return false;
    };
    let needle = needle.as_os_str().as_encoded_bytes();
    raw.split(|b| *b == 0)
        .any(|arg| arg.windows(needle.len()).any(|w| w == needle))
}

/// Blocking poll for `Drop` code: checks `done` every 10 ms until it holds or `deadline` passes.
pub(crate) fn poll_blocking(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The last `lines` lines of a log file, for error messages.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(raw) => {
            let text = String::from_utf8_lossy(&raw);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(no log at {}: {err})", path.display()),
    }
}
