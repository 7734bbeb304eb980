//! The scenarios. Each starts only the services it needs as separate processes, with a
//! fresh database per service, and measures a baseline in the same run.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use bus::{Bus, BusSettings};
use bytes::Bytes;
use contracts::{Cause, Lane, Mailbox, MessageId, OutboundMessage, RenderRequest, SPEC_VERSION, TenantId};
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::Request;
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::Sha256;
use testkit::smtp_capture::{CaptureConfig, SmtpCapture};
use testkit::{NatsServer, Postgres};

use crate::Cli;
use crate::load::{self, RequestSource, Stats};
use crate::procs::{Proc, tool};
use crate::report::{Report, Row, ServiceRow, machine};

const SHOPIFY_SECRET: &str = "demo-secret";
const TRACKING_KEY: &str = "bench-tracking-key";

struct Params {
    duration: Duration,
    connections: usize,
    rate: u64,
    latency_duration: Duration,
    backlog: usize,
    send_n: usize,
}

impl Params {
    fn new(quick: bool) -> Self {
        if quick {
            Self { duration: Duration::from_secs(2), connections: 16, rate: 20, latency_duration: Duration::from_secs(2), backlog: 300, send_n: 300 }
        } else {
            Self { duration: Duration::from_secs(20), connections: 64, rate: 200, latency_duration: Duration::from_secs(60), backlog: 100_000, send_n: 100_000 }
        }
    }
}

struct Env {
    root: PathBuf,
    bins: PathBuf,
    logs: PathBuf,
    nats: NatsServer,
    pg: Postgres,
    bus: Bus,
    p: Params,
    run: usize,
}


impl Env {
    /// A fresh nats-server, so no scenario inherits another's backlog.
    async fn fresh_bus(&mut self) -> anyhow::Result<()> {
        self.nats = NatsServer::start().await?;
        // The previous server's store (often hundreds of MB) was just deleted; flush that
        // to disk now rather than during the next scenario's durable commits.
        let _ = tokio::process::Command::new("sync").status().await;
        self.bus = Bus::connect(&BusSettings { url: self.nats.url(), ..BusSettings::default() }, "bench").await?;
        self.bus.ensure_topology().await?;
        Ok(())
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.bins.join(format!("postflow-{name}"))
    }

    /// Starts a service process with its own fresh database (if it has one).
    async fn service(&mut self, name: &str, extra: &[(&str, String)]) -> anyhow::Result<Proc> {
        self.run += 1;
        let port = testkit::free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut env: Vec<(String, String)> = vec![
            ("POSTFLOW_HTTP__ADDR".into(), addr.to_string()),
            ("POSTFLOW_NATS__URL".into(), self.nats.url()),
            ("POSTFLOW_TENANTS_DIR".into(), self.root.join("deploy/local/tenants").display().to_string()),
            ("POSTFLOW_TRACKING__SIGNING_KEY".into(), TRACKING_KEY.into()),
            ("RUST_LOG".into(), "info".into()),
        ];
        if ["segmenter", "scheduler", "sender", "tracker"].contains(&name) {
            let url = self.pg.create_database(&format!("{name}_{}", self.run)).await?;
            env.push(("POSTFLOW_DATABASE__URL".into(), url));
        }
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let proc = Proc::spawn(&format!("{name}-{}", self.run), &self.bin(name), &[], &env, &self.logs)?;
        proc.ready(addr).await
    }
}

fn progress(msg: &str) {
    eprintln!("postflow-bench: {msg}");
}

pub async fn run_all(cli: &Cli) -> anyhow::Result<Report> {
    let bins = std::env::current_exe()?.parent().map(Path::to_path_buf).unwrap_or_default();
    for svc in ["ingest", "segmenter", "scheduler", "renderer", "sender", "tracker"] {
        let b = bins.join(format!("postflow-{svc}"));
        anyhow::ensure!(b.exists(), "{} is missing: build the workspace binaries first (cargo build --release --bins)", b.display());
    }
    let logs = std::env::temp_dir().join(format!("postflow-bench-{}", std::process::id()));
    std::fs::create_dir_all(&logs)?;
    progress(&format!("logs in {}", logs.display()));
    progress("starting nats-server and PostgreSQL");
    let nats = NatsServer::start().await?;
    // Durable commits: the figures must include what a real deployment pays per commit.
    let pg = Postgres::start_durable().await?;
    let bus = Bus::connect(&BusSettings { url: nats.url(), ..BusSettings::default() }, "bench").await?;
    bus.ensure_topology().await?;
    let mut p = Params::new(cli.quick);
    if let Some(n) = cli.messages {
        p.send_n = n;
        p.backlog = n;
    }
    let mut env = Env { root: cli.root.clone(), bins, logs, nats, pg, bus, p, run: 0 };
    let mut report = Report {
        mode: if cli.quick { "quick (smoke test; figures are not meaningful)" } else { "full" },
        machine: machine(),
        date: time::OffsetDateTime::now_utc().date().to_string(),
        rows: Vec::new(),
        services: Vec::new(),
        notes: Vec::new(),
    };
    let wanted = |s: &str| cli.only.is_empty() || cli.only.iter().any(|o| o == s);
    if wanted("ingest") {
        env.fresh_bus().await?;
        ingest(&mut env, &mut report).await?;
    }
    if wanted("latency") {
        env.fresh_bus().await?;
        latency(&mut env, &mut report).await?;
    }
    if wanted("send") {
        env.fresh_bus().await?;
        send(&mut env, &mut report).await?;
    }
    if wanted("tracker") {
        env.fresh_bus().await?;
        tracker(&mut env, &mut report).await?;
    }
    Ok(report)
}

fn service_row(scenario: &'static str, p: &Proc, cpu_before: f64, idle: Option<f64>) -> ServiceRow {
    let (_, peak) = p.rss_mib();
    let name = p.name.rsplit_once('-').map_or(p.name.as_str(), |(n, _)| n).to_owned();
    ServiceRow { scenario, service: name, cpu_seconds: p.cpu_seconds() - cpu_before, rss_idle_mib: idle, rss_peak_mib: peak }
}

fn sign_shopify(body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SHOPIFY_SECRET.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Signed Shopify orders/create requests, each a distinct order (`#{prefix}{n}`).
fn order_source(root: &Path, prefix: &'static str) -> anyhow::Result<Arc<dyn RequestSource>> {
    let sample: Value = serde_json::from_slice(&std::fs::read(root.join("deploy/local/sample-order.json"))?)?;
    Ok(Arc::new(move |n: u64| order_request(&sample, prefix, n)))
}

fn order_body(sample: &Value, prefix: &str, n: u64) -> Vec<u8> {
    let mut order = sample.clone();
    // Distinct ids per run prefix: the same id would (rightly) be deduplicated as a repeat.
    let run = prefix.bytes().fold(0u64, |acc, b| acc * 256 + u64::from(b)) % 1000;
    order["id"] = json!(7_000_000_000_000_000_000u64 + run * 1_000_000_000 + n);
    order["name"] = json!(format!("#{prefix}{n}"));
    serde_json::to_vec(&order).unwrap_or_default()
}

fn order_request(sample: &Value, prefix: &str, n: u64) -> Request<Full<Bytes>> {
    let body = order_body(sample, prefix, n);
    let sig = sign_shopify(&body);
    Request::post("/v1/webhooks/demo/shopify")
        .header("host", "bench")
        .header("content-type", "application/json")
        .header("x-shopify-topic", "orders/create")
        .header("x-shopify-webhook-id", format!("bench-{prefix}-{n}"))
        .header("x-shopify-hmac-sha256", sig)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

/// Scenario 1: signed webhooks into ingest, each stored in JetStream before the 2xx.
async fn ingest(env: &mut Env, report: &mut Report) -> anyhow::Result<()> {
    progress("ingest: starting ingest");
    let svc = env.service("ingest", &[]).await?;
    let (idle, _) = svc.rss_mib();
    let cpu0 = svc.cpu_seconds();
    let addr = svc.http.unwrap_or(([127, 0, 0, 1], 0).into());
    progress(&format!("ingest: {} connections for {:?}", env.p.connections, env.p.duration));
    let stats = load::closed_loop(addr, env.p.connections, env.p.duration, order_source(&env.root, "I")?).await?;
    report.services.push(service_row("1 ingest", &svc, cpu0, Some(idle)));
    svc.stop().await;

    progress("ingest: baseline 1, a bare HTTP handler");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_addr = listener.local_addr()?;
    let bare = tokio::spawn(async move {
        let app = axum::Router::new().route("/v1/webhooks/demo/shopify", axum::routing::post(|| async { "ok" }));
        axum::serve(listener, app).await
    });
    let http = load::closed_loop(bare_addr, env.p.connections, env.p.duration, order_source(&env.root, "H")?).await?;
    bare.abort();

    progress("ingest: baseline 2, raw JetStream publishes of the same events");
    let bus_stats = publish_baseline(&env.bus, env.p.connections, env.p.duration).await?;
    report.rows.push(Row::new("1 ingest", "webhook → verified, parsed, stored in JetStream → 200", stats.clone(), "≥ 25k/s, p99 ≤ 20 ms, ≥ 0.5× bare HTTP").against("bare axum 200", http));
    report.rows.push(Row::new("1 ingest", "same, against the bus ceiling", stats, "–").against("raw JetStream publish", bus_stats));
    Ok(())
}

async fn publish_baseline(bus: &Bus, workers: usize, duration: Duration) -> anyhow::Result<Stats> {
    let started = Instant::now();
    let deadline = started + duration;
    let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let template = sample_envelope()?;
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (bus, seq, template) = (bus.clone(), seq.clone(), template.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut env = template.clone();
                env.idempotency_key = format!("bench:baseline:{n}");
                env.id = uuid::Uuid::new_v4();
                let t = Instant::now();
                bus.publish_event(&env).await?;
                lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(Stats::from_micros(all, 0, started.elapsed().as_secs_f64()))
}

fn sample_envelope() -> anyhow::Result<contracts::Envelope> {
    let order: contracts::Order = serde_json::from_value(json!({
        "id": "7000000000000000000", "number": "#B1", "currency": "EUR", "placed_at": "2026-11-24T09:30:00+01:00",
        "customer": { "email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace", "locale": "en" },
        "lines": [
            { "title": "Linen shirt", "variant_title": "Sand / M", "sku": "LS-SAND-M", "quantity": 2,
              "unit_price": { "minor": 3990, "currency": "EUR" }, "total": { "minor": 7980, "currency": "EUR" } },
            { "title": "Canvas tote bag", "quantity": 1,
              "unit_price": { "minor": 3500, "currency": "EUR" }, "total": { "minor": 3500, "currency": "EUR" } }
        ],
        "subtotal": { "minor": 11480, "currency": "EUR" }, "shipping": { "minor": 490, "currency": "EUR" },
        "tax": { "minor": 1833, "currency": "EUR" }, "discounts": { "minor": 0, "currency": "EUR" },
        "total": { "minor": 11970, "currency": "EUR" }
    }))?;
    Ok(contracts::Envelope::new(
        TenantId::parse("demo")?,
        time::OffsetDateTime::now_utc(),
        contracts::Source { system: "bench".into(), delivery_id: None, topic: None },
        "bench:0".into(),
        contracts::Event::OrderPlaced(contracts::OrderPlaced { order }),
    ))
}

/// Scenario 2: orders at a fixed rate; webhook arrival → SMTP acceptance of the
/// confirmation, per message. Then the same while a marketing backlog is being sent.
async fn latency(env: &mut Env, report: &mut Report) -> anyhow::Result<()> {
    progress("latency: starting all six services (SMTP: in-repo capture, to timestamp each message)");
    let capture = SmtpCapture::start(CaptureConfig::default()).await?;
    let smtp = capture.addr();
    let tracker_port_env = |p: &Proc| format!("http://{}", p.http.map(|a| a.to_string()).unwrap_or_default());
    let mut procs = Vec::new();
    let tracker = env.service("tracker", &[]).await?;
    let tracker_url = tracker_port_env(&tracker);
    procs.push(tracker);
    procs.push(env.service("segmenter", &[]).await?);
    procs.push(env.service("scheduler", &[("POSTFLOW_TIMER_POLL_INTERVAL", "0.2".into())]).await?);
    procs.push(env.service("renderer", &[("POSTFLOW_TRACKING__BASE_URL", tracker_url)]).await?);
    procs.push(
        env.service(
            "sender",
            &[
                ("POSTFLOW_SMTP__HOST", smtp.ip().to_string()),
                ("POSTFLOW_SMTP__PORT", smtp.port().to_string()),
                ("POSTFLOW_MARKETING_CONCURRENCY", "64".into()),
            ],
        )
        .await?,
    );
    let ingest = env.service("ingest", &[]).await?;
    let ingest_addr = ingest.http.unwrap_or(([127, 0, 0, 1], 0).into());
    procs.push(ingest);
    let idle: Vec<f64> = procs.iter().map(|p| p.rss_mib().0).collect();
    let cpu0: Vec<f64> = procs.iter().map(Proc::cpu_seconds).collect();

    progress(&format!("latency: {} orders/s for {:?}", env.p.rate, env.p.latency_duration));
    let quiet = fixed_rate(&env.root, ingest_addr, env.p.rate, env.p.latency_duration, "L", &capture).await?;
    report.rows.push(Row::new("2 latency", format!("order webhook → confirmation at SMTP, {}/s", env.p.rate), quiet, "p50 ≤ 20 ms, p99 ≤ 100 ms"));

    progress(&format!("latency: queueing a marketing backlog of {} messages", env.p.backlog));
    preload_marketing(&env.bus, env.p.backlog).await?;
    progress("latency: the same orders while the backlog is being sent");
    let busy = fixed_rate(&env.root, ingest_addr, env.p.rate, env.p.latency_duration, "M", &capture).await?;
    let marketing_sent = capture.messages().iter().filter(|m| m.subject().is_some_and(|s| s.starts_with("Bench newsletter"))).count();
    report.rows.push(Row::new("2 latency", format!("same, during a {}-message marketing send", env.p.backlog), busy, "p99 ≤ 250 ms"));
    report.notes.push(format!(
        "latency: {marketing_sent} of the {} marketing messages had reached SMTP when the transactional run ended; transactional mail has its own consumer and SMTP connections",
        env.p.backlog
    ));
    for (i, p) in procs.iter().enumerate() {
        report.services.push(service_row("2 latency", p, cpu0[i], Some(idle[i])));
    }
    for p in procs {
        p.stop().await;
    }
    Ok(())
}

/// Posts orders at `rate` per second for `duration`; returns per-message latency from the
/// post to the capture server's acceptance of the confirmation.
async fn fixed_rate(root: &Path, ingest: SocketAddr, rate: u64, duration: Duration, prefix: &'static str, capture: &SmtpCapture) -> anyhow::Result<Stats> {
    let sample: Value = serde_json::from_slice(&std::fs::read(root.join("deploy/local/sample-order.json"))?)?;
    let total = rate * duration.as_secs().max(1);
    let posted: Arc<Mutex<HashMap<u64, SystemTime>>> = Arc::default();
    let (tx, rx) = tokio::sync::mpsc::channel::<u64>(4096);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..32 {
        let (rx, posted, sample, errors) = (rx.clone(), posted.clone(), sample.clone(), errors.clone());
        workers.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(ingest).await?;
            stream.set_nodelay(true)?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            loop {
                let Some(n) = rx.lock().await.recv().await else { break };
                let req = order_request(&sample, prefix, n);
                posted.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(n, SystemTime::now());
                match sender.send_request(req).await {
                    Ok(r) if r.status().is_success() => {}
                    _ => {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for n in 0..total {
        tick.tick().await;
        tx.send(n).await?;
    }
    drop(tx);
    for w in workers {
        w.await??;
    }
    let send_seconds = started.elapsed().as_secs_f64();
    // Wait for every confirmation (bounded).
    let want = total as usize;
    let needle = format!("#{prefix}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut lat = Vec::with_capacity(want);
    loop {
        let mails = capture.messages();
        let ours: Vec<_> = mails.iter().filter(|m| m.subject().is_some_and(|s| s.contains(&needle))).collect();
        if ours.len() >= want || Instant::now() > deadline {
            let posted = posted.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            for m in ours {
                let subject = m.subject().unwrap_or_default();
                let n: Option<u64> = subject.split(&needle).nth(1).and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()).and_then(|d| d.parse().ok());
                if let Some(at) = n.and_then(|n| posted.get(&n)) {
                    let d = m.received_at.duration_since(*at).unwrap_or_default();
                    lat.push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
                }
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let missing = want.saturating_sub(lat.len()) as u64;
    let mut stats = Stats::from_micros(lat, errors.load(std::sync::atomic::Ordering::Relaxed) + missing, send_seconds);
    stats.per_second = stats.count as f64 / send_seconds;
    Ok(stats)
}

fn marketing_message(n: usize) -> anyhow::Result<OutboundMessage> {
    let tenant = TenantId::parse("demo")?;
    let html = format!("<html><body><h1>Autumn picks</h1><p>Hello reader {n}, here is what is new this week.</p>{}</body></html>", "<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit.</p>".repeat(40));
    Ok(OutboundMessage {
        spec: SPEC_VERSION,
        message_id: MessageId::derive(&["bench", "marketing", &n.to_string(), &uuid::Uuid::new_v4().to_string()]),
        tenant,
        lane: Lane::Marketing,
        from: Mailbox { name: Some("Demo Shop".into()), email: contracts::EmailAddress::parse("news@demo-shop.example")? },
        reply_to: None,
        to: Mailbox { name: None, email: contracts::EmailAddress::parse(&format!("reader{n}@example.com"))? },
        subject: format!("Bench newsletter {n}"),
        text: "Autumn picks".into(),
        html,
        headers: vec![],
        template: "newsletter".into(),
        cause: Cause { flow: "bench".into(), run_id: uuid::Uuid::nil(), step: 0, event_id: uuid::Uuid::nil() },
    })
}

async fn preload_marketing(bus: &Bus, n: usize) -> anyhow::Result<()> {
    let mut set = tokio::task::JoinSet::new();
    for w in 0..32 {
        let bus = bus.clone();
        set.spawn(async move {
            let mut i = w;
            while i < n {
                bus.publish_outbound(&marketing_message(i)?).await?;
                i += 32;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

/// Scenario 3: N personalised render requests rendered and delivered into smtp-sink;
/// baseline: smtp-source sending as many same-sized messages over as many connections.
async fn send(env: &mut Env, report: &mut Report) -> anyhow::Result<()> {
    let (Some(sink_bin), Some(source_bin)) = (tool("smtp-sink"), tool("smtp-source")) else {
        report.notes.push("send: skipped, postfix's smtp-sink/smtp-source are not installed (apt-get install postfix)".into());
        return Ok(());
    };
    let n = env.p.send_n;
    let connections = 4;
    let sink_port = testkit::free_port();
    let sink_addr = format!("127.0.0.1:{sink_port}");
    let mut sink_args = vec![sink_addr.as_str(), "1024"];
    if is_root() {
        sink_args.splice(0..0, ["-u", "nobody"]);
    }
    let sink = Proc::spawn("smtp-sink", &sink_bin, &sink_args, &[], &env.logs)?;

    progress("send: measuring one rendered message's size");
    let capture = SmtpCapture::start(CaptureConfig::default()).await?;
    let renderer = env.service("renderer", &[("POSTFLOW_TRACKING__BASE_URL", "http://t.example".into())]).await?;
    let probe = env
        .service("sender", &[("POSTFLOW_SMTP__HOST", "127.0.0.1".into()), ("POSTFLOW_SMTP__PORT", capture.addr().port().to_string())])
        .await?;
    env.bus.publish_render(&render_request(usize::MAX)?).await?;
    let size = capture.wait_for(1, Duration::from_secs(60)).await?.first().map_or(20_000, |m| m.data.len());
    probe.stop().await;
    renderer.stop().await;

    progress(&format!("send: queueing {n} render requests"));
    let mut set = tokio::task::JoinSet::new();
    for w in 0..32 {
        let bus = env.bus.clone();
        set.spawn(async move {
            let mut i = w;
            while i < n {
                bus.publish_render(&render_request(i)?).await?;
                i += 32;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    progress(&format!("send: rendering and delivering {n} messages into smtp-sink over {connections} connections"));
    let started = Instant::now();
    let renderer = env.service("renderer", &[("POSTFLOW_TRACKING__BASE_URL", "http://t.example".into())]).await?;
    let sender = env
        .service(
            "sender",
            &[
                ("POSTFLOW_SMTP__HOST", "127.0.0.1".into()),
                ("POSTFLOW_SMTP__PORT", sink_port.to_string()),
                ("POSTFLOW_SMTP__MARKETING_CONNECTIONS", connections.to_string()),
                ("POSTFLOW_MARKETING_CONCURRENCY", "64".into()),
            ],
        )
        .await?;
    let db = env.pg.url(&format!("sender_{}", env.run));
    let pool = sqlx::PgPool::connect(&db).await?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let sent: i64 = sqlx::query_scalar("select count(*) from deliveries where state = 'sent'").fetch_one(&pool).await?;
        if sent as usize >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let sent: i64 = sqlx::query_scalar("select count(*) from deliveries where state = 'sent'").fetch_one(&pool).await?;
    let ours = Stats { count: sent as u64, errors: (n as u64).saturating_sub(sent as u64), seconds: secs, per_second: sent as f64 / secs, p50_ms: 0.0, p90_ms: 0.0, p99_ms: 0.0, max_ms: 0.0 };
    report.services.push(service_row("3 send", &renderer, 0.0, None));
    report.services.push(service_row("3 send", &sender, 0.0, None));
    sender.stop().await;
    renderer.stop().await;

    progress(&format!("send: baseline, smtp-source sending {n} messages of {size} bytes"));
    let t = Instant::now();
    let status = tokio::process::Command::new(&source_bin)
        .args(["-m", &n.to_string(), "-s", &connections.to_string(), "-l", &size.to_string(), "-f", "news@demo-shop.example", "-t", "reader@example.com", &sink_addr])
        .status()
        .await?;
    anyhow::ensure!(status.success(), "smtp-source failed: {status}");
    let bsecs = t.elapsed().as_secs_f64();
    let base = Stats { count: n as u64, errors: 0, seconds: bsecs, per_second: n as f64 / bsecs, p50_ms: 0.0, p90_ms: 0.0, p99_ms: 0.0, max_ms: 0.0 };
    sink.stop().await;
    report.rows.push(
        Row::new("3 send", format!("{n} render requests → rendered, sent exactly once ({size} B each)"), ours, "≥ 10k/s, ≥ 0.3× smtp-source")
            .against(format!("smtp-source, {connections} connections"), base),
    );
    Ok(())
}

fn render_request(i: usize) -> anyhow::Result<RenderRequest> {
    let env = sample_envelope()?;
    let contracts::Event::OrderPlaced(placed) = env.event else { anyhow::bail!("sample is an order") };
    let mut order = placed.order;
    order.number = format!("#S{i}");
    Ok(RenderRequest {
        spec: SPEC_VERSION,
        message_id: MessageId::derive(&["bench", "send", &i.to_string(), &uuid::Uuid::new_v4().to_string()]),
        tenant: TenantId::parse("demo")?,
        lane: Lane::Marketing,
        template: "order_confirmation".into(),
        to: Mailbox { name: Some(format!("Reader {i}")), email: contracts::EmailAddress::parse(&format!("reader{i}@example.com"))? },
        locale: Some("en".into()),
        cause: Cause { flow: "bench".into(), run_id: uuid::Uuid::nil(), step: 0, event_id: uuid::Uuid::nil() },
        data: json!({ "order": order, "customer": order.customer }),
    })
}

/// Scenario 4: open-pixel hits at full speed, every one recorded; baseline: nginx's
/// `empty_gif` (the same 43 bytes from memory).
async fn tracker(env: &mut Env, report: &mut Report) -> anyhow::Result<()> {
    progress("tracker: starting the tracker");
    let svc = env.service("tracker", &[]).await?;
    let (idle, _) = svc.rss_mib();
    let cpu0 = svc.cpu_seconds();
    let addr = svc.http.unwrap_or(([127, 0, 0, 1], 0).into());
    let signer = linktoken::Signer::new(SecretString::from(TRACKING_KEY));
    let token = signer.sign(&linktoken::Claims {
        tenant: TenantId::parse("demo")?,
        message_id: MessageId::derive(&["bench", "open"]),
        action: linktoken::Action::Open,
    });
    let path = format!("/o/{token}");
    let source: Arc<dyn RequestSource> = Arc::new(move |_n: u64| {
        Request::get(path.as_str())
            .header("host", "bench")
            .header("user-agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148")
            .body(Full::new(Bytes::new()))
            .unwrap_or_default()
    });
    progress(&format!("tracker: {} connections for {:?}", env.p.connections, env.p.duration));
    let stats = load::closed_loop(addr, env.p.connections, env.p.duration, source.clone()).await?;
    let db = env.pg.url(&format!("tracker_{}", env.run));
    let pool = sqlx::PgPool::connect(&db).await?;
    let rows: i64 = sqlx::query_scalar("select count(*) from hits where kind = 'open'").fetch_one(&pool).await?;
    report.notes.push(format!(
        "tracker: {} hits answered, {} rows recorded, difference {}",
        stats.count,
        rows,
        stats.count as i64 - rows
    ));
    report.services.push(service_row("4 tracker", &svc, cpu0, Some(idle)));
    svc.stop().await;

    let row = Row::new("4 tracker", "open pixel → hit recorded in PostgreSQL → GIF", stats, "≥ 20k/s, 0 lost, ≥ 0.5× nginx");
    match tool("nginx") {
        Some(nginx) => {
            progress("tracker: baseline, nginx empty_gif");
            let port = testkit::free_port();
            let dir = env.logs.join("nginx");
            std::fs::create_dir_all(&dir)?;
            let conf = dir.join("nginx.conf");
            std::fs::write(
                &conf,
                format!(
                    "daemon off; worker_processes 2; pid {d}/nginx.pid; error_log {d}/error.log;\n\
                     events {{ worker_connections 1024; }}\n\
                     http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
                       server {{ listen 127.0.0.1:{port}; location / {{ empty_gif; }} }} }}\n",
                    d = dir.display()
                ),
            )?;
            let proc = Proc::spawn("nginx", &nginx, &["-c", &conf.display().to_string(), "-p", &dir.display().to_string()], &[], &env.logs)?;
            let naddr: SocketAddr = ([127, 0, 0, 1], port).into();
            let deadline = Instant::now() + Duration::from_secs(10);
            while tokio::net::TcpStream::connect(naddr).await.is_err() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let base = load::closed_loop(naddr, env.p.connections, env.p.duration, source).await?;
            proc.stop().await;
            report.rows.push(row.against("nginx empty_gif", base));
        }
        None => {
            report.notes.push("tracker: nginx baseline skipped, nginx is not installed (apt-get install nginx-light)".into());
            report.rows.push(row);
        }
    }
    Ok(())
}

fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
