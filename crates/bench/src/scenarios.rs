//! The scenarios. Each starts only the services it needs as separate processes, with a
//! fresh database per service, and measures a baseline in the same run.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use bus::{Bus, BusSettings, ConsumerSpec, Feed};
use bytes::Bytes;
use contracts::{Cause, Lane, Mailbox, MessageId, RenderRequest, SPEC_VERSION, TenantId};
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
use crate::procs::{Proc, busy_share, find_pid, machine_cpu, pid_cpu_seconds, tool, tree_cpu_seconds};
use crate::report::{Report, Row, ServiceRow, machine};
use crate::sample::Sample;

const SHOPIFY_SECRET: &str = "demo-secret";
const TRACKING_KEY: &str = "bench-tracking-key";

struct Params {
    duration: Duration,
    connections: usize,
    rate: u64,
    latency_duration: Duration,
    backlog: usize,
    send_n: usize,
    sender_n: usize,
    sender_connections: usize,
}

impl Params {
    fn new(quick: bool) -> Self {
        if quick {
            Self { duration: Duration::from_secs(2), connections: 16, rate: 20, latency_duration: Duration::from_secs(2), backlog: 300, send_n: 300, sender_n: 300, sender_connections: 4 }
        } else {
            Self { duration: Duration::from_secs(20), connections: 64, rate: 200, latency_duration: Duration::from_secs(60), backlog: 100_000, send_n: 100_000, sender_n: 100_000, sender_connections: 4 }
        }
    }
}

struct Env {
    root: PathBuf,
    /// The tenants directory the services read: the demo tenant's, or a copy with the
    /// `--max-per-second` limit.
    tenants: PathBuf,
    bins: PathBuf,
    logs: PathBuf,
    nats: NatsServer,
    pg: Postgres,
    bus: Bus,
    p: Params,
    run: usize,
    /// The real rendered message the sender and latency scenarios copy (made once).
    sample: Option<Sample>,
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
            ("POSTFLOW_TENANTS_DIR".into(), self.tenants.display().to_string()),
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

    /// The real rendered message the sender and latency scenarios copy: the send scenario's
    /// render request, rendered by the renderer and delivered by the sender to the in-repo
    /// capture, once per run. Leaves a fresh bus behind.
    async fn sample(&mut self) -> anyhow::Result<Sample> {
        if let Some(s) = &self.sample {
            return Ok(s.clone());
        }
        progress("rendering one message to copy (the send scenario's render request)");
        let capture = SmtpCapture::start(CaptureConfig::default()).await?;
        let renderer = self.service("renderer", &[("POSTFLOW_TRACKING__BASE_URL", "http://t.example".into())]).await?;
        let sender = self
            .service("sender", &[("POSTFLOW_SMTP__HOST", "127.0.0.1".into()), ("POSTFLOW_SMTP__PORT", capture.addr().port().to_string())])
            .await?;
        self.bus.publish_render(&render_request(usize::MAX)?).await?;
        let rendered = capture.wait_for(1, Duration::from_secs(60)).await;
        // Check that the current sender takes a copy as it is, and keep the copy as sent:
        // the baseline sends exactly those bytes.
        let copy = match &rendered {
            Ok(mails) => match mails.first().map(|m| Sample::from_mime(&m.data)) {
                Some(Ok(sample)) => {
                    self.bus.publish_outbound(&sample.outbound(0, Lane::Marketing, "Bench sender 0".into())?).await?;
                    match capture.wait_for(2, Duration::from_secs(30)).await {
                        Ok(mails) => mails.get(1).map(|m| Ok(Sample { mime: m.data.clone(), ..sample })),
                        Err(e) => Some(Err(anyhow::anyhow!("the sender did not deliver a copy of the rendered message: {e:#}{}", dead_letter(&self.bus).await))),
                    }
                }
                Some(Err(e)) => Some(Err(anyhow::anyhow!("taking the rendered message apart: {e:#}"))),
                None => None,
            },
            Err(e) => Some(Err(anyhow::anyhow!("rendering one message: {e:#}{}", dead_letter(&self.bus).await))),
        };
        sender.stop().await;
        renderer.stop().await;
        let sample = copy.ok_or_else(|| anyhow::anyhow!("the capture returned no message"))??;
        self.fresh_bus().await?;
        self.sample = Some(sample.clone());
        Ok(sample)
    }
}

/// The first dead letter's consumer and reason, for error messages ("" if none).
async fn dead_letter(bus: &Bus) -> String {
    match bus.dead_letters(1).await {
        Ok(d) => d.first().map(|d| format!("; dead-lettered by {}: {}", d.consumer, d.reason)).unwrap_or_default(),
        Err(_) => String::new(),
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
        p.sender_n = n;
        p.backlog = n;
    }
    if let Some(rate) = cli.rate {
        p.rate = rate.max(1);
    }
    p.sender_connections = cli.sender_connections.max(1);
    let tenants = tenants_dir(&cli.root, &logs, cli.max_per_second)?;
    let mut env = Env { root: cli.root.clone(), tenants, bins, logs, nats, pg, bus, p, run: 0, sample: None };
    let mut report = Report {
        mode: if cli.quick { "quick (smoke test; figures are not meaningful)" } else { "full" },
        machine: machine(),
        date: time::OffsetDateTime::now_utc().date().to_string(),
        rows: Vec::new(),
        services: Vec::new(),
        notes: Vec::new(),
    };
    const SCENARIOS: [&str; 5] = ["ingest", "latency", "send", "sender", "tracker"];
    if let Some(unknown) = cli.only.iter().find(|o| !SCENARIOS.contains(&o.as_str())) {
        anyhow::bail!("unknown scenario {unknown:?}; the scenarios are {}", SCENARIOS.join(", "));
    }
    let wanted = |s: &str| cli.only.is_empty() || cli.only.iter().any(|o| o == s);
    if wanted("ingest") {
        env.fresh_bus().await?;
        background_load(&mut report, "ingest", cli.quick).await;
        ingest(&mut env, &mut report).await?;
    }
    if let Some(limit) = cli.max_per_second {
        report.notes.push(format!(
            "the demo tenant's provider limit was {limit} messages/s ([delivery] max_per_second; marketing may fill each second up to all but a fifth of it)"
        ));
    }
    if wanted("latency") {
        env.fresh_bus().await?;
        background_load(&mut report, "latency", cli.quick).await;
        latency(&mut env, &mut report).await?;
    }
    if wanted("send") {
        env.fresh_bus().await?;
        background_load(&mut report, "send", cli.quick).await;
        send(&mut env, &mut report).await?;
    }
    if wanted("sender") {
        env.fresh_bus().await?;
        background_load(&mut report, "sender", cli.quick).await;
        sender(&mut env, &mut report).await?;
    }
    if wanted("tracker") {
        env.fresh_bus().await?;
        background_load(&mut report, "tracker", cli.quick).await;
        tracker(&mut env, &mut report).await?;
    }
    Ok(report)
}

/// How busy the machine is before a scenario starts (other users of a shared machine).
/// Not in a smoke test, which keeps it short.
async fn background_load(report: &mut Report, scenario: &str, quick: bool) {
    if quick {
        return;
    }
    let before = machine_cpu();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let share = busy_share(before, machine_cpu());
    report.notes.push(format!("{scenario}: the machine was {:.0}% busy in the 2 s before it started (other work on this shared machine)", share * 100.0));
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

/// The demo tenants, or with `max_per_second` a copy of them under `logs` in which the
/// demo tenant's `[delivery]` has that limit.
fn tenants_dir(root: &Path, logs: &Path, max_per_second: Option<u32>) -> anyhow::Result<PathBuf> {
    let demo = root.join("deploy/local/tenants");
    let Some(limit) = max_per_second else { return Ok(demo) };
    let dir = logs.join("tenants");
    std::fs::create_dir_all(dir.join("demo"))?;
    let toml = std::fs::read_to_string(demo.join("demo/tenant.toml"))?;
    let line = format!("max_per_second = {limit}\n");
    let toml = match toml.find("\n[delivery]\n") {
        Some(at) => {
            let after = at + "\n[delivery]\n".len();
            format!("{}{line}{}", &toml[..after], &toml[after..])
        }
        None => format!("{toml}\n[delivery]\nprovider = \"smtp\"\n{line}"),
    };
    std::fs::write(dir.join("demo/tenant.toml"), toml)?;
    Ok(dir)
}

/// Scenario 2: orders at a fixed rate; webhook arrival → SMTP acceptance of the
/// confirmation, per message. Then the same while a marketing backlog of copies of a real
/// rendered message is queued (and being sent).
async fn latency(env: &mut Env, report: &mut Report) -> anyhow::Result<()> {
    // First, on a bus of its own: the message the marketing backlog copies.
    let sample = env.sample().await?;
    progress("latency: starting all six services (SMTP: in-repo capture, to timestamp each message)");
    let capture = SmtpCapture::start(CaptureConfig::default()).await?;
    let arrivals = watch_arrivals(&capture);
    let smtp = capture.addr();
    let tracker_port_env = |p: &Proc| format!("http://{}", p.http.map(|a| a.to_string()).unwrap_or_default());
    let mut procs = Vec::new();
    let tracker = env.service("tracker", &[]).await?;
    let tracker_url = tracker_port_env(&tracker);
    procs.push(tracker);
    procs.push(env.service("segmenter", &[]).await?);
    procs.push(env.service("scheduler", &[("POSTFLOW_TIMER_POLL_INTERVAL", "0.2".into())]).await?);
    procs.push(env.service("renderer", &[("POSTFLOW_TRACKING__BASE_URL", tracker_url)]).await?);
    procs.push(latency_sender(env, smtp).await?);
    let ingest = env.service("ingest", &[]).await?;
    let ingest_addr = ingest.http.unwrap_or(([127, 0, 0, 1], 0).into());
    procs.push(ingest);
    let idle: Vec<f64> = procs.iter().map(|p| p.rss_mib().0).collect();
    let cpu0: Vec<f64> = procs.iter().map(Proc::cpu_seconds).collect();
    let (rate, backlog, size) = (env.p.rate, env.p.backlog, sample.mime.len());

    progress(&format!("latency: {rate} orders/s for {:?}", env.p.latency_duration));
    let m0 = machine_cpu();
    let (quiet, quiet_dup) = fixed_rate(&env.root, ingest_addr, rate, env.p.latency_duration, "L", &arrivals).await?;
    let quiet_busy = busy_share(m0, machine_cpu());
    report.rows.push(Row::new(
        "2 latency",
        format!("order webhook → confirmation at SMTP (transactional), {rate}/s, nothing else queued"),
        quiet,
        "p50 ≤ 20 ms, p99 ≤ 100 ms",
    ));

    // The sender is stopped while the backlog is queued, so all of it is waiting when the
    // orders start (queueing takes a while, and a running sender would be sending already).
    let first = procs.remove(SENDER);
    let mut quiet_sender = service_row("2 latency", &first, cpu0[SENDER], Some(idle[SENDER]));
    quiet_sender.service = "sender (no backlog)".into();
    let mut quiet_sender = Some(quiet_sender);
    first.stop().await;
    progress(&format!("latency: queueing a marketing backlog of {backlog} messages of {size} B (sender stopped)"));
    let t = Instant::now();
    queue_copies(&env.bus, &sample, backlog, Lane::Marketing, "Bench newsletter").await?;
    let queued_in = t.elapsed().as_secs_f64();
    let mkt_consumer = ConsumerSpec::new("sender", Feed::Send(Lane::Marketing), 1).durable_name();
    let queued_at_start = env.bus.consumer_pending(bus::subjects::SEND_STREAM, &mkt_consumer).await?;
    let second = latency_sender(env, smtp).await?;
    let second_cpu0 = second.cpu_seconds();
    procs.insert(SENDER, second);
    let sent_before = lock(&arrivals)?.marketing;
    progress("latency: the same orders while the backlog is queued and being sent");
    let m0 = machine_cpu();
    let (busy, busy_dup) = fixed_rate(&env.root, ingest_addr, rate, env.p.latency_duration, "M", &arrivals).await?;
    let busy_busy = busy_share(m0, machine_cpu());
    let still_queued = env.bus.consumer_pending(bus::subjects::SEND_STREAM, &mkt_consumer).await?;
    let (marketing_sent, other, lagged) = {
        let a = lock(&arrivals)?;
        (a.marketing, a.other.clone(), a.lagged)
    };
    let (p50, p99) = (busy.p50_ms, busy.p99_ms);
    report.rows.push(Row::new(
        "2 latency",
        format!("transactional webhook → SMTP, {rate}/s, while {backlog} marketing messages ({size} B each) are queued"),
        busy,
        "p99 ≤ 250 ms",
    ));
    report.notes.push(format!(
        "latency: transactional p50 {p50:.1} ms, p99 {p99:.1} ms webhook→SMTP while {backlog} marketing messages are queued \
         ({queued_at_start} still queued when the orders started, {still_queued} when they ended: {}); \
         {} marketing messages reached SMTP during the run; queueing the backlog took {queued_in:.1} s",
        if still_queued > 0 { "the backlog never ran dry" } else { "the backlog RAN DRY before the end, so the figure understates the load" },
        marketing_sent - sent_before,
    ));
    report.notes.push(format!(
        "latency: the machine's CPU was {:.0}% busy during the quiet run and {:.0}% during the run with the backlog; one email per order: {} duplicate confirmations, {} other emails{}{}; transactional mail has its own consumer, SMTP connections and database pool",
        quiet_busy * 100.0,
        busy_busy * 100.0,
        quiet_dup + busy_dup,
        other.len(),
        other.first().map(|s| format!(" (e.g. \"{s}\")")).unwrap_or_default(),
        if lagged > 0 { format!(", {lagged} accepted messages not seen by the bench (it lagged)") } else { String::new() },
    ));
    let dlq = dead_letter(&env.bus).await;
    if !dlq.is_empty() {
        report.notes.push(format!("latency: messages were dead-lettered{dlq}"));
    }
    for (i, p) in procs.iter().enumerate() {
        if i == SENDER {
            report.services.extend(quiet_sender.take());
            // Started with the backlog queued: never idle.
            let mut busy_sender = service_row("2 latency", p, second_cpu0, None);
            busy_sender.service = "sender (backlog)".into();
            report.services.push(busy_sender);
        } else {
            report.services.push(service_row("2 latency", p, cpu0[i], Some(idle[i])));
        }
    }
    for p in procs {
        p.stop().await;
    }
    Ok(())
}

/// Where the latency scenario keeps its sender in `procs`.
const SENDER: usize = 4;

async fn latency_sender(env: &mut Env, smtp: SocketAddr) -> anyhow::Result<Proc> {
    env.service(
        "sender",
        &[
            ("POSTFLOW_SMTP__HOST", smtp.ip().to_string()),
            ("POSTFLOW_SMTP__PORT", smtp.port().to_string()),
            ("POSTFLOW_MARKETING_CONCURRENCY", "64".into()),
        ],
    )
    .await
}

fn lock<T>(m: &Mutex<T>) -> anyhow::Result<std::sync::MutexGuard<'_, T>> {
    m.lock().map_err(|_| anyhow::anyhow!("poisoned"))
}

/// What the capture server accepted, classified as it arrives (the capture keeps every
/// message; copying them all on each poll would cost more than the services measured).
#[derive(Default)]
struct Arrivals {
    /// (order name prefix, order number) → when each email about that order was accepted.
    confirmations: HashMap<(char, u64), Vec<SystemTime>>,
    marketing: usize,
    /// Subjects of anything else.
    other: Vec<String>,
    /// Messages the watcher missed because it fell behind.
    lagged: u64,
}

fn watch_arrivals(capture: &SmtpCapture) -> Arc<Mutex<Arrivals>> {
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let mut rx = capture.subscribe();
    let a = arrivals.clone();
    tokio::spawn(async move {
        loop {
            let mail = match rx.recv().await {
                Ok(mail) => mail,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => {
                    a.lock().unwrap_or_else(|p| p.into_inner()).lagged += k;
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            };
            let subject = mail.subject().unwrap_or_default();
            let mut a = a.lock().unwrap_or_else(|p| p.into_inner());
            if subject.starts_with("Bench newsletter") {
                a.marketing += 1;
            } else if let Some(key) = order_key(&subject) {
                a.confirmations.entry(key).or_default().push(mail.received_at);
            } else {
                a.other.push(subject);
            }
        }
    });
    arrivals
}

/// The bench order a subject names: `#L12` → ('L', 12).
fn order_key(subject: &str) -> Option<(char, u64)> {
    subject.split('#').skip(1).find_map(|rest| {
        let mut chars = rest.chars();
        let prefix = chars.next().filter(|c| c.is_ascii_uppercase())?;
        let digits: String = chars.take_while(char::is_ascii_digit).collect();
        Some((prefix, digits.parse().ok()?))
    })
}

/// Posts orders at `rate` per second for `duration`; returns per-message latency from the
/// post to the capture server's acceptance of the confirmation, and how many orders got
/// more than one email.
async fn fixed_rate(
    root: &Path,
    ingest: SocketAddr,
    rate: u64,
    duration: Duration,
    prefix: &'static str,
    arrivals: &Mutex<Arrivals>,
) -> anyhow::Result<(Stats, u64)> {
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
                lock(&posted)?.insert(n, SystemTime::now());
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
    let key = prefix.chars().next().unwrap_or('L');
    let deadline = Instant::now() + Duration::from_secs(120);
    while lock(arrivals)?.confirmations.keys().filter(|(p, _)| *p == key).count() < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut lat, mut duplicates) = (Vec::with_capacity(want), 0u64);
    {
        let posted = lock(&posted)?;
        let a = lock(arrivals)?;
        for ((_, n), at) in a.confirmations.iter().filter(|((p, _), _)| *p == key) {
            duplicates += at.len() as u64 - 1;
            if let (Some(sent), Some(first)) = (posted.get(n), at.iter().min()) {
                let d = first.duration_since(*sent).unwrap_or_default();
                lat.push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
            }
        }
    }
    let missing = want.saturating_sub(lat.len()) as u64;
    let mut stats = Stats::from_micros(lat, errors.load(std::sync::atomic::Ordering::Relaxed) + missing + duplicates, send_seconds);
    stats.per_second = stats.count as f64 / send_seconds;
    Ok((stats, duplicates))
}

/// Queues `n` copies of the sample on `lane`, subjects `"{subject} {i}"`, from 32 tasks.
async fn queue_copies(bus: &Bus, sample: &Sample, n: usize, lane: Lane, subject: &'static str) -> anyhow::Result<()> {
    let sample = Arc::new(sample.clone());
    let mut set = tokio::task::JoinSet::new();
    for w in 0..32 {
        let (bus, sample) = (bus.clone(), sample.clone());
        set.spawn(async move {
            let mut i = w;
            while i < n {
                bus.publish_outbound(&sample.outbound(i, lane, format!("{subject} {i}"))?).await?;
                i += 32;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r?.map_err(|e| {
            let gb = (n * (sample.html.len() + sample.text.len()) * 11 / 10) as f64 / 1e9;
            anyhow::anyhow!("{e:#} ({n} copies take about {gb:.1} GB in the JetStream store, and nats-server uses at most 75% of the free disk)")
        })?;
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

/// Messages in flight per SMTP connection in the sender scenario: 4 connections and 16 in
/// flight are the sender's defaults, spelled out so the baseline cannot drift from them.
const IN_FLIGHT_PER_CONNECTION: usize = 4;

/// Scenario 3b: the sender alone. N ready-made outbound messages (copies of one real
/// rendered message) queued on the marketing lane, then the sender started against a fresh
/// smtp-sink and timed until its deliveries table holds N sent; baseline: `smtp-source`
/// sending the same message N times over as many connections, kept open like the
/// sender's pool, into another fresh smtp-sink.
async fn sender(env: &mut Env, report: &mut Report) -> anyhow::Result<()> {
    let (Some(sink_bin), Some(source_bin)) = (tool("smtp-sink"), tool("smtp-source")) else {
        report.notes.push("sender: skipped, postfix's smtp-sink/smtp-source are not installed (apt-get install postfix)".into());
        return Ok(());
    };
    let sample = env.sample().await?;
    let (n, size, connections) = (env.p.sender_n, sample.mime.len(), env.p.sender_connections);
    let in_flight = connections * IN_FLIGHT_PER_CONNECTION;

    progress(&format!("sender: queueing {n} outbound messages of {size} B on the marketing lane"));
    let t = Instant::now();
    queue_copies(&env.bus, &sample, n, Lane::Marketing, "Bench sender").await?;
    let queued_in = t.elapsed().as_secs_f64();
    let queued = env.bus.stream_len(bus::subjects::SEND_STREAM).await?;
    anyhow::ensure!(queued as usize == n, "{queued} messages in the send stream, expected {n}");

    // What everything else on the path costs: PostgreSQL (all backends), nats-server, the
    // sink, and this harness (its polling).
    let pg_pid: Option<u32> = std::fs::read_to_string(env.pg.data_dir().join("postmaster.pid"))
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()));
    let nats_pid = find_pid(&env.nats.store_dir().display().to_string());
    let me = std::process::id();
    let others = || [pg_pid.map_or(0.0, tree_cpu_seconds), nats_pid.map_or(0.0, |p| pid_cpu_seconds(p, false)), pid_cpu_seconds(me, false)];

    let (sink, sink_port) = smtp_sink(&sink_bin, &env.logs, "smtp-sink-sender").await?;
    progress(&format!("sender: delivering them into smtp-sink over {connections} connections, {in_flight} in flight"));
    let (others0, m0) = (others(), machine_cpu());
    let started = Instant::now();
    let svc = env
        .service(
            "sender",
            &[
                ("POSTFLOW_SMTP__HOST", "127.0.0.1".into()),
                ("POSTFLOW_SMTP__PORT", sink_port.to_string()),
                ("POSTFLOW_SMTP__MARKETING_CONNECTIONS", connections.to_string()),
                ("POSTFLOW_MARKETING_CONCURRENCY", in_flight.to_string()),
            ],
        )
        .await?;
    let ready_in = started.elapsed().as_secs_f64();
    // Done when the sender's consumer has acknowledged everything: a message is acked only
    // after its outcome was recorded and announced. (A cheap question to nats-server, unlike
    // counting rows in the sender's database while it works.)
    let durable = ConsumerSpec::new("sender", Feed::Send(Lane::Marketing), 1).durable_name();
    let deadline = Instant::now() + Duration::from_secs(1800);
    while env.bus.consumer_pending(bus::subjects::SEND_STREAM, &durable).await.map_or(true, |left| left > 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let (others1, sender_busy) = (others(), busy_share(m0, machine_cpu()));
    let sink_cpu = sink.cpu_seconds();
    let pool = sqlx::PgPool::connect(&env.pg.url(&format!("sender_{}", env.run))).await?;
    let (sent, failed): (i64, i64) =
        sqlx::query_as("select count(*) filter (where state = 'sent'), count(*) filter (where state <> 'sent') from deliveries").fetch_one(&pool).await?;
    // The same rate from the sender's own timestamps: first claim to last outcome.
    let window: Option<f64> =
        sqlx::query_scalar("select extract(epoch from max(finished_at) - min(claimed_at))::float8 from deliveries where state = 'sent'").fetch_one(&pool).await?;
    pool.close().await;
    let row = service_row("3b sender", &svc, 0.0, None);
    let sender_cpu = row.cpu_seconds;
    report.services.push(row);
    svc.stop().await;
    sink.stop().await;
    let ours = Stats {
        count: sent as u64,
        errors: (n as u64).saturating_sub(sent as u64),
        seconds: secs,
        per_second: sent as f64 / secs,
        p50_ms: 0.0,
        p90_ms: 0.0,
        p99_ms: 0.0,
        max_ms: 0.0,
    };

    let (sink, sink_port) = smtp_sink(&sink_bin, &env.logs, "smtp-sink-source").await?;
    let file = env.logs.join("sender-sample.eml");
    std::fs::write(&file, sample.source_file())?;
    progress(&format!("sender: baseline, smtp-source sending the same message {n} times over {connections} connections"));
    // smtp-source's CPU shows up in this process's reaped-children time once it exited.
    let (children0, m0) = (pid_cpu_seconds(me, true) - pid_cpu_seconds(me, false), machine_cpu());
    let t = Instant::now();
    let status = tokio::process::Command::new(&source_bin)
        .args(["-d", "-s", &connections.to_string(), "-m", &n.to_string(), "-F", &file.display().to_string()])
        .args(["-f", "orders@demo-shop.example", "-t", "reader@example.com", &format!("127.0.0.1:{sink_port}")])
        .status()
        .await?;
    let bsecs = t.elapsed().as_secs_f64();
    let source_busy = busy_share(m0, machine_cpu());
    let source_cpu = pid_cpu_seconds(me, true) - pid_cpu_seconds(me, false) - children0;
    let base_sink_cpu = sink.cpu_seconds();
    sink.stop().await;
    anyhow::ensure!(status.success(), "smtp-source failed: {status}");
    let base = Stats { count: n as u64, errors: 0, seconds: bsecs, per_second: n as f64 / bsecs, p50_ms: 0.0, p90_ms: 0.0, p99_ms: 0.0, max_ms: 0.0 };

    if (sent as usize) < n {
        report.notes.push(format!("sender: only {sent} of {n} were sent{}", dead_letter(&env.bus).await));
    }
    let per = |cpu: f64| cpu * 1000.0 / n.max(1) as f64;
    let [pg, nats, bench] = [0, 1, 2].map(|i| others1[i] - others0[i]);
    report.notes.push(format!(
        "sender: {sent} sent, {failed} not sent, of {n} queued (queueing took {queued_in:.1} s); {:.0}/s from process start \
         (ready after {ready_in:.2} s), {} from the first claim to the last outcome; \
         the machine's CPU was {:.0}% busy while the sender ran and {:.0}% during smtp-source",
        ours.per_second,
        window.map_or("–".to_owned(), |w| format!("{:.0}/s", sent as f64 / w.max(1e-3))),
        sender_busy * 100.0,
        source_busy * 100.0,
    ));
    report.notes.push(format!(
        "sender: CPU ms per message: sender {:.3}, PostgreSQL {:.3}, nats-server {:.3}, smtp-sink {:.3}, harness {:.3} (total {:.3}); \
         baseline: smtp-source {:.3}, smtp-sink {:.3} (total {:.3})",
        per(sender_cpu),
        per(pg),
        per(nats),
        per(sink_cpu),
        per(bench),
        per(sender_cpu + pg + nats + sink_cpu + bench),
        per(source_cpu),
        per(base_sink_cpu),
        per(source_cpu + base_sink_cpu),
    ));
    report.rows.push(
        Row::new(
            "3b sender",
            format!("{n} queued outbound messages ({size} B) → sent exactly once into smtp-sink, marketing lane, {connections} connections, {in_flight} in flight"),
            ours,
            "–",
        )
        .against(format!("smtp-source -d, same message, {connections} connections"), base),
    );
    Ok(())
}

/// A fresh `smtp-sink` on a free port, accepting connections when this returns.
async fn smtp_sink(bin: &Path, logs: &Path, name: &str) -> anyhow::Result<(Proc, u16)> {
    let port = testkit::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec![addr.as_str(), "1024"];
    if is_root() {
        args.splice(0..0, ["-u", "nobody"]);
    }
    let sink = Proc::spawn(name, bin, &args, &[], logs)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "smtp-sink did not listen on {addr} within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((sink, port))
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
        topic: None,
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
