//! Starts the real nats-server and PostgreSQL fixtures and checks they serve and clean up after themselves.

use std::process::Command;
use std::time::Duration;

use sqlx::Connection as _;
use testkit::{NatsServer, Postgres, eventually, eventually_ok};
use tokio::io::AsyncBufReadExt as _;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn nats_server_accepts_clients_with_jetstream() -> anyhow::Result<()> {
    testkit::init_test_tracing();
    let nats = NatsServer::start().await?;
    let other = NatsServer::start().await?;
    assert_ne!(nats.port(), other.port());
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{}", nats.port()));

    let stream = tokio::net::TcpStream::connect(("127.0.0.1", nats.port())).await?;
    let mut reader = tokio::io::BufReader::new(stream);
    let mut info = String::new();
    tokio::time::timeout(WAIT, reader.read_line(&mut info)).await??;
    assert!(info.starts_with("INFO "), "{info}");
    assert!(info.contains("\"jetstream\":true"), "{info}");

    let store = nats.store_dir();
    let port = nats.port();
    drop(nats);
    assert!(!store.exists(), "store dir removed on drop");
    eventually(WAIT, "nats port to close", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    Ok(())
}

#[tokio::test]
async fn postgres_cluster_serves_databases_and_cleans_up() -> anyhow::Result<()> {
    testkit::init_test_tracing();
    let pg = Postgres::start().await?;
    assert_eq!(
        pg.url("x"),
        format!("postgres://postgres@127.0.0.1:{}/x", pg.port())
    );

    let first = pg.create_database("alpha").await?;
    let second = pg.create_database("beta_2").await?;
    let fresh = pg.fresh_database().await?;
    for url in [&first, &second, &fresh] {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let (one, db): (i32, String) = sqlx::query_as("select 1, current_database()")
            .fetch_one(&mut conn)
            .await?;
        assert_eq!(one, 1);
        assert!(url.ends_with(&format!("/{db}")), "{url} vs {db}");
        conn.close().await?;
    }
    assert!(
        pg.create_database("alpha").await.is_err(),
        "duplicate name is an error"
    );
    assert!(
        pg.create_database("bad-name\"").await.is_err(),
        "unsafe name is rejected"
    );

    let data_dir = pg.data_dir().to_owned();
    let root = pg.root_dir().to_owned();
    assert!(data_dir.join("PG_VERSION").is_file());
    drop(pg);
    assert!(!root.exists(), "cluster dir removed on drop");
    let pattern = data_dir.to_string_lossy().into_owned();
    eventually_ok(WAIT, "no postgres process left for the data dir", || {
        let pattern = pattern.clone();
        async move {
            let out = Command::new("pgrep").arg("-f").arg(&pattern).output()?;
            let pids = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            anyhow::ensure!(pids.is_empty(), "still running: {pids}");
            Ok(())
        }
    })
    .await;
    Ok(())
}

#[tokio::test]
async fn postgres_clusters_run_side_by_side() -> anyhow::Result<()> {
    let (a, b) = tokio::try_join!(Postgres::start(), Postgres::start())?;
    assert_ne!(a.port(), b.port());
    for pg in [&a, &b] {
        let mut conn = sqlx::PgConnection::connect(&pg.url("postgres")).await?;
        let (n,): (i64,) = sqlx::query_as("select count(*) from pg_database")
            .fetch_one(&mut conn)
            .await?;
        assert!(n >= 3);
        conn.close().await?;
    }
    Ok(())
}

#[tokio::test]
async fn smtp_capture_is_reexported() -> anyhow::Result<()> {
    let capture = testkit::smtp_capture::SmtpCapture::start(Default::default()).await?;
    assert_eq!(capture.count(), 0);
    Ok(())
}
