//! The sender as a real process, killed with SIGKILL at random moments while 5,000
//! messages flow and restarted each time: the SMTP server must receive no message twice,
//! and every message must end up delivered — or, when a kill landed in the one unsafe
//! instant (after the claim, before the final dot reached the server), recorded as
//! `indeterminate` instead of being sent a second time (see `services/sender/src/delivery.rs`).

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bus::{Bus, BusSettings};
use contracts::{Cause, EmailAddress, Lane, Mailbox, MessageId, OutboundMessage, SPEC_VERSION, TenantId};
use testkit::smtp_capture::{CaptureConfig, SmtpCapture};
use testkit::{NatsServer, Postgres};
use tokio::process::{Child, Command};
use uuid::Uuid;

const MESSAGES: usize = 5_000;
const KILLS: usize = 5;

/// The sender binary next to this test's own build (the test command builds every binary
/// first; a bare `cargo test` builds it here).
fn sender_binary() -> PathBuf {
    let dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let bin = dir.join("postflow-sender");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo).args(["build", "-p", "sender", "--bin", "postflow-sender"]).status().unwrap();
        assert!(status.success(), "building the sender binary failed");
    }
    bin
}

fn message(tenant: &TenantId, i: usize) -> OutboundMessage {
    let run = Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("run-{i}").as_bytes());
    OutboundMessage {
        spec: SPEC_VERSION,
        message_id: MessageId::derive(&[tenant.as_str(), &run.to_string(), "0"]),
        tenant: tenant.clone(),
        lane: if i.is_multiple_of(5) { Lane::Marketing } else { Lane::Transactional },
        from: Mailbox { name: Some("Demo".into()), email: EmailAddress::parse("orders@demo-shop.example").unwrap() },
        reply_to: None,
        to: Mailbox { name: None, email: EmailAddress::parse(&format!("customer{i}@example.com")).unwrap() },
        subject: format!("Message {i}"),
        html: format!("<p>Message {i}</p>"),
        text: format!("Message {i}"),
        headers: vec![],
        template: "order_confirmation".into(),
        topic: None,
        cause: Cause { flow: "kill-test".into(), run_id: run, step: 0, event_id: run },
    }
}

fn spawn_sender(env: &BTreeMap<&str, String>) -> Child {
    let mut cmd = Command::new(sender_binary());
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str()))).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    cmd.kill_on_drop(true).spawn().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_never_sends_a_message_twice() {
    testkit::init_test_tracing();
    let nats = NatsServer::start().await.unwrap();
    let pg = Postgres::start().await.unwrap();
    let db_url = pg.create_database("sender").await.unwrap();
    let smtp = SmtpCapture::start(CaptureConfig::default()).await.unwrap();
    let bus = Bus::connect(&BusSettings { url: nats.url(), ..BusSettings::default() }, "test").await.unwrap();
    bus.ensure_topology().await.unwrap();

    let tenants = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tenants.path().join("demo")).unwrap();
    std::fs::write(
        tenants.path().join("demo/tenant.toml"),
        "name = \"Demo\"\n[sender]\nfrom = \"orders@demo-shop.example\"\nphysical_address = \"1 Example Street, Berlin\"\n[flows]\ndefaults = false\n",
    )
    .unwrap();
    let env: BTreeMap<&str, String> = [
        ("POSTFLOW_HTTP__ADDR", "127.0.0.1:0".to_owned()),
        ("POSTFLOW_NATS__URL", nats.url()),
        ("POSTFLOW_NATS__ACK_WAIT", "2".to_owned()),
        ("POSTFLOW_DATABASE__URL", db_url.clone()),
        ("POSTFLOW_SMTP__HOST", smtp.addr().ip().to_string()),
        ("POSTFLOW_SMTP__PORT", smtp.addr().port().to_string()),
        ("POSTFLOW_CLAIM_LEASE", "2".to_owned()),
        ("POSTFLOW_TENANTS_DIR", tenants.path().display().to_string()),
        ("RUST_LOG", "warn".to_owned()),
    ]
    .into_iter()
    .collect();

    let tenant = TenantId::parse("demo").unwrap();
    for i in 0..MESSAGES {
        bus.publish_outbound(&message(&tenant, i)).await.unwrap();
    }

    // Kill at random moments while mail flows; each sender lives 0.3–1.5 s.
    let mut rng = fastrand::Rng::new();
    for kill in 0..KILLS {
        let mut child = spawn_sender(&env);
        let lived = Duration::from_millis(rng.u64(300..1500));
        tokio::time::sleep(lived).await; // the kill moment is the point of this test, not a wait for a result
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();
        eprintln!("kill {}: after {lived:?}, {} messages received so far", kill + 1, smtp.count());
    }
    let mut last = spawn_sender(&env);

    let db = sqlx::PgPool::connect(&db_url).await.unwrap();
    testkit::eventually_ok(Duration::from_secs(240), "every message settled", || async {
        let settled: i64 = sqlx::query_scalar("select count(*) from deliveries where state in ('sent', 'indeterminate')")
            .fetch_one(&db)
            .await?;
        let pending = bus.consumer_pending("PF_SEND", "sender-send-tx").await? + bus.consumer_pending("PF_SEND", "sender-send-mkt").await?;
        anyhow::ensure!(settled as usize == MESSAGES && pending == 0, "{settled} settled, {pending} pending");
        Ok(())
    })
    .await;
    last.start_kill().unwrap();
    last.wait().await.unwrap();

    // Count what the server received, by Message-ID.
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    for mail in smtp.messages() {
        *received.entry(mail.header("Message-ID").unwrap()).or_default() += 1;
    }
    let twice: Vec<_> = received.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "messages received more than once: {twice:?}");

    let rows: Vec<(String, String)> = sqlx::query_as("select message_id, state from deliveries").fetch_all(&db).await.unwrap();
    let mut lost = Vec::new();
    for (id, state) in &rows {
        let got = received.keys().any(|k| k.starts_with(&format!("<{id}@")));
        match (state.as_str(), got) {
            ("sent", true) | ("indeterminate", _) => {}
            (state, got) => panic!("{id}: state {state}, received: {got}"),
        }
        if state == "indeterminate" && !got {
            lost.push(id.clone());
        }
    }
    let indeterminate = rows.iter().filter(|(_, s)| s == "indeterminate").count();
    eprintln!(
        "{} of {MESSAGES} received exactly once; {indeterminate} indeterminate after {KILLS} kills, of which {} never reached the server",
        received.len(),
        lost.len()
    );
    assert_eq!(received.len() + lost.len(), MESSAGES, "every message is received once or accounted for");
    // A kill lands between the claim and the final dot only if it hits that instant; each
    // kill can strand at most one message per SMTP connection there.
    assert!(lost.len() <= KILLS * 8, "{} stranded messages for {KILLS} kills", lost.len());
}
