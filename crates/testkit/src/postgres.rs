//! Ephemeral PostgreSQL cluster per call (initdb into a temp dir, postmaster on a free port), stopped and wiped on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::Connection as _;

use crate::process;

const START_DEADLINE: Duration = Duration::from_secs(20);
const STOP_DEADLINE: Duration = Duration::from_secs(10);
const DEBIAN_LIB_DIR: &str = "/usr/lib/postgresql";
const MISSING_HINT: &str = "install the debian package `postgresql`";

/// A private PostgreSQL cluster: superuser `postgres`, trust auth, listening on 127.0.0.1;
/// fsync off unless started with [`Postgres::start_durable`].
#[derive(Debug)]
pub struct Postgres {
    // Field order matters: the server stops before the directory holding its data is removed.
    server: Postmaster,
    port: u16,
    next_db: AtomicUsize,
    dir: tempfile::TempDir,
}

impl Postgres {
    /// Creates and starts a cluster, waiting (up to 20 s) until it accepts connections.
    ///
    /// Binaries come from `PATH` (`initdb` and the `postgres` beside it) or else the newest
    /// `/usr/lib/postgresql/<version>/bin`. As root, the cluster runs as the `postgres` user.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(false).await
    }

    /// Like [`Postgres::start`], but with PostgreSQL's durable defaults (fsync, synchronous
    /// commit, full page writes), for benchmarks whose figures must include commit cost.
    pub async fn start_durable() -> anyhow::Result<Self> {
        Self::start_with(true).await
    }

    async fn start_with(durable: bool) -> anyhow::Result<Self> {
        let bins = PgBinaries::locate()?;
        let run_as = RunAs::detect()?;
        let dir = tempfile::Builder::new()
            .prefix("postflow-pg-")
            .tempdir()
            .context("creating postgres temp dir")?;
        if run_as.is_postgres_user() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .stdin(Stdio::null())
                .status()
                .context("running chown")?;
            anyhow::ensure!(
                status.success(),
                "chown of {} to postgres failed: {status}",
                dir.path().display()
            );
        }
        let data_dir = dir.path().join("data");

        let mut initdb = run_as.command(&bins.initdb, dir.path());
        initdb.arg("-D").arg(&data_dir).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        let output = tokio::process::Command::from(initdb)
            .output()
            .await
            .with_context(|| format!("running {}", bins.initdb.display()))?;
        anyhow::ensure!(
            output.status.success(),
            "initdb failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );

        // The free port may be taken by someone else before postgres binds it: retry a few times.
        let mut attempt = 1;
        loop {
            let port = process::free_port().context("finding a free port")?;
            let log_path = dir.path().join(format!("postgres-{attempt}.log"));
            let mut server =
                Postmaster::spawn(&bins, &run_as, dir.path(), &data_dir, port, &log_path, durable)?;
            match server
                .wait_ready(&url_for(port, "postgres"), &log_path)
                .await
            {
                Ok(()) => {
                    tracing::debug!(port, data_dir = %data_dir.display(), "postgres ready");
                    return Ok(Self {
                        server,
                        port,
                        next_db: AtomicUsize::new(0),
                        dir,
                    });
                }
                Err(err)
                    if attempt < 3
                        && process::log_tail(&log_path, 50).contains("could not bind") =>
                {
                    tracing::debug!(
                        port,
                        error = format!("{err:#}"),
                        "postgres port taken, retrying"
                    );
                    drop(server);
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Connection URL for database `db`: `postgres://postgres@127.0.0.1:PORT/<db>`.
    pub fn url(&self, db: &str) -> String {
        url_for(self.port, db)
    }

    /// The TCP port the cluster listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory (removed on drop).
    pub fn data_dir(&self) -> &Path {
        &self.server.data_dir
    }

    /// The temporary directory holding the data directory, logs and the unix socket.
    pub fn root_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates database `name` (ASCII letters, digits and `_`, at most 63) and returns its URL.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        anyhow::ensure!(
            !name.is_empty()
                && name.len() <= 63
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "invalid database name {name:?}: use 1 to 63 ascii letters, digits or underscores"
        );
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .context("connecting to the postgres database")?;
        let sql = format!("CREATE DATABASE \"{name}\"");
        let created = sqlx::raw_sql(&sql).execute(&mut conn).await;
        let _ = conn.close().await;
        created.with_context(|| format!("creating database {name}"))?;
        Ok(self.url(name))
    }

    /// Creates a database with a fresh name (`test_<n>`) and returns its URL.
    pub async fn fresh_database(&self) -> anyhow::Result<String> {
        let n = self.next_db.fetch_add(1, Ordering::SeqCst) + 1;
        self.create_database(&format!("test_{n}")).await
    }
}

fn url_for(port: u16, db: &str) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/{db}")
}

/// `initdb` and `postgres` of one installation.
#[derive(Debug)]
struct PgBinaries {
    initdb: PathBuf,
    postgres: PathBuf,
}

impl PgBinaries {
    fn locate() -> anyhow::Result<Self> {
        if let Some(initdb) = process::find_on_path("initdb") {
            let beside = initdb.with_file_name("postgres");
            let postgres = if beside.is_file() {
                Some(beside)
            } else {
                process::find_on_path("postgres")
            };
            if let Some(postgres) = postgres {
                return Ok(Self { initdb, postgres });
            }
        }
        // Debian keeps server binaries out of PATH, one directory per major version.
        let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(DEBIAN_LIB_DIR)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let version: Option<Vec<u32>> = name.split('.').map(|p| p.parse().ok()).collect();
                Some((version?, entry.path().join("bin")))
            })
            .collect();
        versions.sort();
        versions
            .into_iter()
            .rev()
            .map(|(_, bin)| Self {
                initdb: bin.join("initdb"),
                postgres: bin.join("postgres"),
            })
            .find(|b| b.initdb.is_file() && b.postgres.is_file())
            .with_context(|| {
                format!(
                    "postgresql server binaries (initdb, postgres) not found on PATH or in \
                     {DEBIAN_LIB_DIR}/<version>/bin; {MISSING_HINT}"
                )
            })
    }
}

/// Who runs initdb and the server: initdb and postgres refuse to run as root.
#[derive(Debug)]
enum RunAs {
    CurrentUser,
    /// As root, switch to `postgres` with this wrapper (`setpriv` execs, `runuser` stays as parent).
    PostgresUser(Wrapper),
}

#[derive(Debug)]
enum Wrapper {
    Setpriv(PathBuf),
    Runuser(PathBuf),
}

impl RunAs {
    fn detect() -> anyhow::Result<Self> {
        if !process::is_root()? {
            return Ok(Self::CurrentUser);
        }
        let known = Command::new("id")
            .args(["-u", "postgres"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        anyhow::ensure!(
            known,
            "running as root but there is no `postgres` user to run the cluster as; {MISSING_HINT}"
        );
        let sbin = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"];
        // Prefer setpriv: it execs, so the child we hold is the postmaster itself.
        if let Some(path) = process::find_binary("setpriv", &sbin) {
            return Ok(Self::PostgresUser(Wrapper::Setpriv(path)));
        }
        if let Some(path) = process::find_binary("runuser", &sbin) {
            return Ok(Self::PostgresUser(Wrapper::Runuser(path)));
        }
        anyhow::bail!(
            "running as root and neither setpriv nor runuser was found to switch to the postgres user \
             (both come with the debian package `util-linux`)"
        )
    }

    fn is_postgres_user(&self) -> bool {
        matches!(self, Self::PostgresUser(_))
    }

    /// A command running `program` as the right user, in `cwd`, with a predictable environment.
    fn command(&self, program: &Path, cwd: &Path) -> Command {
        let mut command = match self {
            Self::CurrentUser => Command::new(program),
            Self::PostgresUser(Wrapper::Setpriv(setpriv)) => {
                let mut c = Command::new(setpriv);
                c.args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "--",
                ])
                .arg(program);
                c
            }
            Self::PostgresUser(Wrapper::Runuser(runuser)) => {
                let mut c = Command::new(runuser);
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            }
        };
        command
            .current_dir(cwd)
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .env_remove("PGPORT")
            .env_remove("PGHOST")
            .stdin(Stdio::null());
        command
    }
}

/// The running server process; stopping it is this type's `Drop`.
#[derive(Debug)]
struct Postmaster {
    child: Child,
    data_dir: PathBuf,
}

impl Postmaster {
    fn spawn(
        bins: &PgBinaries,
        run_as: &RunAs,
        dir: &Path,
        data_dir: &Path,
        port: u16,
        log_path: &Path,
        durable: bool,
    ) -> anyhow::Result<Self> {
        let log = File::create(log_path).context("creating postgres log")?;
        let log_err = log.try_clone().context("cloning postgres log handle")?;
        let mut command = run_as.command(&bins.postgres, dir);
        command
            .arg("-D")
            .arg(data_dir)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(dir)
            .args(["-c", "max_connections=300"]);
        if !durable {
            command
                .args(["-F", "-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off"]);
        }
        command
            .stdout(log)
            .stderr(log_err);
        let child = command
            .spawn()
            .with_context(|| format!("spawning {}", bins.postgres.display()))?;
        Ok(Self {
            child,
            data_dir: data_dir.to_owned(),
        })
    }

    async fn wait_ready(&mut self, url: &str, log_path: &Path) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().context("checking postgres")? {
                anyhow::bail!(
                    "postgres exited during startup ({status}); log:\n{}",
                    process::log_tail(log_path, 30)
                );
            }
            let last = match tokio::time::timeout(
                Duration::from_secs(2),
                sqlx::PgConnection::connect(url),
            )
            .await
            {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                Ok(Err(err)) => err.to_string(),
                Err(_) => String::from("connection attempt timed out"),
            };
            if start.elapsed() >= START_DEADLINE {
                anyhow::bail!(
                    "postgres did not accept connections within {START_DEADLINE:?}: {last}; log:\n{}",
                    process::log_tail(log_path, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The postmaster pid: from `postmaster.pid` when it names a live process for our data dir
    /// (needed when a wrapper such as runuser is our direct child), else our child's pid.
    fn postmaster_pid(&self) -> u32 {
        std::fs::read_to_string(self.data_dir.join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok())
            .filter(|pid| {
                process::pid_alive(*pid) && process::pid_cmdline_contains(*pid, &self.data_dir)
            })
            .unwrap_or_else(|| self.child.id())
    }
}

impl Drop for Postmaster {
    fn drop(&mut self) {
        let pid = self.postmaster_pid();
        let child_pid = self.child.id();
        let running = matches!(self.child.try_wait(), Ok(None));
        if running {
            // SIGQUIT is postgres' immediate shutdown: the postmaster takes all its backends
            // and helper processes down, waits for them, then exits.
            process::send_signal(pid, "QUIT");
            let stopped = process::poll_blocking(STOP_DEADLINE, || {
                !process::pid_alive(pid) && !matches!(self.child.try_wait(), Ok(None))
            });
            if !stopped {
                tracing::warn!(pid, "postgres ignored sigquit, killing it");
                if pid != child_pid {
                    process::send_signal(pid, "KILL");
                }
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
        if !process::poll_blocking(STOP_DEADLINE, || !process::pid_alive(pid)) {
            tracing::warn!(pid, "postgres still running after stop");
        }
    }
}
