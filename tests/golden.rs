//! Golden render tests: every built-in email, rendered for the demo shop in English,
//! Arabic and Persian through the renderer's `Composer` (brand kit, footer, tracked
//! links, pixel: what the service sends), laid out by headless Chromium at phone
//! (375 px) and desktop (800 px) widths.
//!
//! The layout is checked in the browser: a copy of each email is loaded into iframes of
//! those widths on a check page whose script measures it — no horizontal overflow, and
//! the body container, every text block, the logo, the headline, the buttons and the
//! footer run right-to-left and start on the right in Arabic and Persian, left-to-right
//! on the left in English (the footer is centred). (Iframes, because Chromium's headless windows are at least 500 px wide
//! while a page loads; the viewport of an iframe is exactly its width.)
//!
//! Screenshots of the emails themselves go to the target directory; the Arabic and
//! Persian ones are also committed under `tests/golden/` as the reference a person
//! reviewed (see its README). Pixels are not compared — they change with every Chromium
//! and font version — but each rendered template, locale and width needs its committed
//! screenshot, so a new template brings a new reviewed one. `POSTFLOW_GOLDEN_UPDATE=1`
//! rewrites them.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use contracts::{Cause, EmailAddress, Lane, Mailbox, MessageId, RenderRequest, SPEC_VERSION, TenantId};
use renderer::render::{BUILTIN_EMAILS, sample_data};
use renderer::{Composer, TrackingSettings};
use secrecy::SecretString;
use serde_json::Value;
use tenancy::{FlowStep, Tenant, Tenants};

const CHROMIUM: &str = "/usr/bin/chromium";
/// The CI machine has two cores.
const CONCURRENCY: usize = 2;
/// A Chromium run that takes longer than this has hung.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);
/// Screenshots are cropped to the email's height, but never taller than this.
const MAX_HEIGHT: u32 = 2400;
const LOCALES: &[&str] = &["en", "ar", "fa"];
/// Locales whose screenshots are committed.
const COMMITTED: &[&str] = &["ar", "fa"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Width {
    Phone,
    Desktop,
}

impl Width {
    const ALL: [Width; 2] = [Width::Phone, Width::Desktop];

    fn px(self) -> u32 {
        match self {
            Width::Phone => 375,
            Width::Desktop => 800,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Width::Phone => "phone",
            Width::Desktop => "desktop",
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn golden_dir() -> PathBuf {
    root().join("tests/golden")
}

/// One email as the renderer composed it.
struct Email {
    template: &'static str,
    locale: &'static str,
    html: String,
}

impl Email {
    fn stem(&self) -> String {
        format!("{}.{}", self.template, self.locale)
    }

    fn rtl(&self) -> bool {
        self.locale != "en"
    }
}

/// The lane of the built-in flow that sends `template` (transactional when none does).
fn lane_of(tenant: &Tenant, template: &str) -> Lane {
    tenant
        .flows
        .iter()
        .find(|f| f.steps.iter().any(|s| matches!(s, FlowStep::Send { template: t, .. } if t == template)))
        .map_or(Lane::Transactional, |f| f.lane)
}

/// Every built-in email in every locale, composed for the demo shop (direction `auto`).
/// Arabic uses the brand as shipped (ASCII digits); Persian the same brand with
/// `native_digits = true`, so the reviewed screenshots show both ways of writing numbers.
fn render_all() -> Vec<Email> {
    let tenants = Tenants::load_dir(&root().join("deploy/local/tenants")).unwrap();
    let demo = TenantId::parse("demo").unwrap();
    let tenant: Tenant = (**tenants.get(&demo).expect("the demo tenant")).clone();
    let mut native = tenant.clone();
    native.brand.native_digits = true;
    let tracking = TrackingSettings { base_url: "https://t.demo-shop.example".into(), signing_key: SecretString::from("golden") };
    let ascii = Composer::new(tenants, &tracking).unwrap();
    let native = Composer::new(Tenants::from_tenants([native]), &tracking).unwrap();
    let mut emails = Vec::new();
    for &template in BUILTIN_EMAILS {
        let data = sample_data(template).unwrap_or_else(|| panic!("no sample data for {template}"));
        for &locale in LOCALES {
            let req = RenderRequest {
                spec: SPEC_VERSION,
                message_id: MessageId::derive(&["golden", template, locale]),
                tenant: demo.clone(),
                lane: lane_of(&tenant, template),
                template: template.into(),
                to: Mailbox { name: Some("Ana Silva".into()), email: EmailAddress::parse("ana.silva@example.com").unwrap() },
                locale: Some(locale.into()),
                topic: None,
                cause: Cause { flow: "golden".into(), run_id: Default::default(), step: 0, event_id: Default::default() },
                data: data.clone(),
            };
            let composer = if locale == "fa" { &native } else { &ascii };
            let msg = composer.compose(&req).unwrap_or_else(|e| panic!("{template} ({locale}): {e:?}"));
            emails.push(Email { template, locale, html: msg.html });
        }
    }
    emails
}

/// Once everything loaded (images fail fast: the network is blocked), measures the email
/// in every iframe of every `section[data-email]` and writes the measurements as JSON,
/// by email and width, into `#pf-golden-result`.
const CHECK_SCRIPT: &str = r#"
function inspect(frame) {
  const doc = frame.contentDocument, win = frame.contentWindow;
  const vw = doc.documentElement.clientWidth;
  const resolve = (s) => {
    const a = s.textAlign.replace('-webkit-', '');
    if (a === 'start') return s.direction === 'rtl' ? 'right' : 'left';
    if (a === 'end') return s.direction === 'rtl' ? 'left' : 'right';
    return a;
  };
  const edge = (inner, outer) => {
    const i = inner.getBoundingClientRect(), o = outer.getBoundingClientRect(), s = win.getComputedStyle(outer);
    const left = o.left + parseFloat(s.paddingLeft), right = o.right - parseFloat(s.paddingRight);
    const atLeft = Math.abs(i.left - left) < 2, atRight = Math.abs(i.right - right) < 2;
    if (atLeft && atRight) return 'full';
    if (atLeft) return 'left';
    if (atRight) return 'right';
    return Math.abs((i.left - left) - (right - i.right)) < 2 ? 'center' : 'other';
  };
  const describe = (el) => {
    if (!el) return null;
    const s = win.getComputedStyle(el);
    const text = el === doc.documentElement ? '' : el.textContent.trim().replace(/\s+/g, ' ').slice(0, 80);
    return { direction: s.direction, align: resolve(s), text };
  };
  const textSide = (el) => { const r = doc.createRange(); r.selectNodeContents(el); return edge(r, el); };
  const article = doc.querySelector('[role=article]');
  const blocks = [...article.querySelectorAll('td[align] > div')].filter((d) => d.textContent.trim() !== '');
  // The headline: the first large bold text (the coupon code further down is larger).
  const headline = blocks.find((d) => {
    const s = win.getComputedStyle(d);
    return parseFloat(s.fontSize) >= 20 && parseInt(s.fontWeight, 10) >= 700;
  });
  const buttons = [...article.querySelectorAll('td[bgcolor] > a')].map((a) => {
    const cell = a.closest('table').closest('td');
    return Object.assign(describe(a), { side: edge(a, cell), cellAlign: resolve(win.getComputedStyle(cell)) });
  });
  // Everything that extends past the viewport, elements and text alike; the card clips
  // (overflow: hidden), so scrollWidth alone would not see a table wider than it.
  const off = (r) => r.width > 0 && r.height > 0 && (r.left < -0.5 || r.right > vw + 0.5);
  const wide = [...article.querySelectorAll('*')].filter((el) => off(el.getBoundingClientRect()));
  // The innermost ones: their ancestors stick out because they do.
  const outside = wide
    .filter((el) => !wide.some((o) => o !== el && el.contains(o)))
    .map((el) => '<' + el.tagName.toLowerCase() + '> ' + el.textContent.trim().slice(0, 40));
  const walker = doc.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.textContent.trim()) continue;
    const r = doc.createRange(); r.selectNodeContents(n);
    if (off(r.getBoundingClientRect())) outside.push('text ' + n.textContent.trim().slice(0, 40));
  }
  const logo = article.querySelector('img');
  return {
    viewport: vw,
    scrollWidth: doc.documentElement.scrollWidth,
    height: Math.ceil(doc.documentElement.scrollHeight),
    outside: outside.slice(0, 10),
    html: describe(doc.documentElement),
    body: describe(article),
    blocks: blocks.map(describe),
    headline: headline ? Object.assign(describe(headline), { side: textSide(headline) }) : null,
    buttons,
    logo: logo ? { side: edge(logo, logo.closest('td[align]')) } : null,
    footer: describe(blocks[blocks.length - 1]),
  };
}
window.addEventListener('load', () => {
  const results = {};
  for (const email of document.querySelectorAll('section[data-email]')) {
    const r = {};
    try {
      for (const frame of email.querySelectorAll('iframe')) r[frame.dataset.width] = inspect(frame);
    } catch (e) {
      r.error = String(e);
    }
    results[email.dataset.email] = r;
  }
  document.getElementById('pf-golden-result').textContent = JSON.stringify(results);
});
"#;

fn attr_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;")
}

/// The check page: each email in an iframe per width, and the script that measures them.
fn check_page(emails: &[Email]) -> String {
    let mut body = String::new();
    for email in emails {
        let doc = attr_escape(&email.html);
        body.push_str(&format!(r#"<section data-email="{}">"#, email.stem()));
        for w in Width::ALL {
            body.push_str(&format!(r#"<iframe data-width="{}" width="{}" height="200" srcdoc="{doc}"></iframe>"#, w.name(), w.px()));
        }
        body.push_str("</section>");
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><style>body{{margin:0}}iframe{{display:block;border:0}}</style></head>\
         <body>{body}<pre id=\"pf-golden-result\"></pre><script>{CHECK_SCRIPT}</script></body></html>"
    )
}

/// Runs Chromium headless on `page` with the network blocked and a fresh profile;
/// returns its standard output.
fn chromium(page: &Path, window: (u32, u32), extra: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let log_path = profile.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child: Child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().join("profile").display()))
        .arg(format!("--window-size={},{}", window.0, window.1))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {CHROMIUM} (Debian: apt-get install -y chromium): {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let read = stdout.read_to_string(&mut out).map(|_| out);
        let _ = tx.send(read);
    });
    let out = match rx.recv_timeout(RUN_TIMEOUT) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium hung on {}", page.display());
        }
    };
    let status = child.wait().unwrap();
    if !status.success() {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        panic!("chromium failed on {} ({status}):\n{log}", page.display());
    }
    out
}

/// Runs `jobs` on at most [`CONCURRENCY`] threads, results in order.
fn parallel<T: Sync, R: Send>(jobs: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(jobs.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..CONCURRENCY {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(job) = jobs.get(i) else { break };
                    let r = f(job);
                    results.lock().unwrap()[i] = Some(r);
                }
            });
        }
    });
    results.into_inner().unwrap().into_iter().map(Option::unwrap).collect()
}

/// The measurements the check script wrote into the dumped DOM.
fn result_json(dom: &str) -> Value {
    let start = dom.find("<pre id=\"pf-golden-result\">").expect("the result element") + "<pre id=\"pf-golden-result\">".len();
    let end = start + dom[start..].find("</pre>").expect("the end of the result");
    let raw = dom[start..end].replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
    serde_json::from_str(&raw).unwrap_or_else(|e| panic!("the check script wrote no JSON ({e}): {raw:?}"))
}

/// What is wrong with one email at one width; empty when the layout is right.
fn layout_problems(email: &Email, width: Width, m: &Value) -> Vec<String> {
    let (dir, start) = if email.rtl() { ("rtl", "right") } else { ("ltr", "left") };
    let mut problems = Vec::new();
    let mut problem = |what: String| problems.push(format!("{} at {} px: {what}", email.stem(), width.px()));
    let s = |v: &Value| v.as_str().unwrap_or("?").to_owned();

    if m["viewport"] != width.px() {
        problem(format!("the viewport is {} px wide, not {}", m["viewport"], width.px()));
    }
    let scroll = m["scrollWidth"].as_u64().unwrap_or(u64::MAX);
    if scroll > u64::from(width.px()) {
        problem(format!("the page scrolls sideways: {scroll} px wide"));
    }
    let outside: Vec<String> = m["outside"].as_array().unwrap().iter().map(s).collect();
    if !outside.is_empty() {
        problem(format!("{} elements or texts stick out of the viewport: {outside:?}", outside.len()));
    }
    for (name, block) in [("<html>", &m["html"]), ("body container", &m["body"]), ("footer", &m["footer"])] {
        if block["direction"] != dir {
            problem(format!("{name} runs {}, not {dir}: {}", s(&block["direction"]), s(&block["text"])));
        }
    }
    let blocks = m["blocks"].as_array().unwrap();
    if blocks.len() < 5 {
        problem(format!("only {} text blocks found", blocks.len()));
    }
    let wrong: Vec<String> = blocks.iter().filter(|b| b["direction"] != dir).map(|b| s(&b["text"])).collect();
    if !wrong.is_empty() {
        problem(format!("{} of {} text blocks do not run {dir}, e.g. {:?}", wrong.len(), blocks.len(), &wrong[..wrong.len().min(3)]));
    }
    // Amounts and values sit at the other side (pf-end), the footer is centred: most
    // blocks start at the start side, and none of the others claims it by accident.
    let at_start = blocks.iter().filter(|b| b["align"] == start).count();
    if at_start * 2 <= blocks.len() {
        problem(format!("only {at_start} of {} text blocks are aligned {start}", blocks.len()));
    }
    let headline = &m["headline"];
    if headline["direction"] != dir || headline["align"] != start || !matches!(headline["side"].as_str(), Some(side) if side == start || side == "full") {
        problem(format!("the headline is not at the {start}: {headline}"));
    }
    if m["logo"]["side"] != start {
        problem(format!("the logo is not at the {start}: {}", m["logo"]));
    }
    if m["footer"]["align"] != "center" {
        problem(format!("the footer is aligned {}, not centred", s(&m["footer"]["align"])));
    }
    for button in m["buttons"].as_array().unwrap() {
        if button["direction"] != dir || button["side"] != start || button["cellAlign"] != start {
            problem(format!("a button is not at the {start}: {button}"));
        }
    }
    problems
}

fn png_width(path: &Path) -> Option<u32> {
    let bytes = std::fs::read(path).ok()?;
    (bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR")
        .then(|| u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]))
}

#[test]
fn every_email_is_laid_out_right_in_every_direction_and_its_rtl_screenshots_are_committed() {
    assert!(Path::new(CHROMIUM).exists(), "{CHROMIUM} is missing (Debian: apt-get install -y chromium)");
    let emails = render_all();
    assert_eq!(emails.len(), BUILTIN_EMAILS.len() * LOCALES.len());

    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("golden");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    for email in &emails {
        std::fs::write(out.join(format!("{}.html", email.stem())), &email.html).unwrap();
    }

    // Measure every email at both widths, all in one page.
    let check = out.join("check.html");
    std::fs::write(&check, check_page(&emails)).unwrap();
    let measured = result_json(&chromium(&check, (1200, 900), &["--dump-dom".into()]));
    let mut problems = Vec::new();
    let mut shots = Vec::new();
    for email in &emails {
        let m = &measured[email.stem()];
        std::fs::write(out.join(format!("{}.layout.json", email.stem())), serde_json::to_string_pretty(m).unwrap()).unwrap();
        if m.is_null() || m.get("error").is_some() {
            problems.push(format!("{}: the check script failed: {}", email.stem(), m["error"]));
            continue;
        }
        for width in Width::ALL {
            let m = &m[width.name()];
            problems.extend(layout_problems(email, width, m));
            let height = m["height"].as_u64().and_then(|h| u32::try_from(h).ok()).unwrap_or(MAX_HEIGHT).clamp(200, MAX_HEIGHT);
            shots.push((email, width, height));
        }
    }

    // Screenshot every email at both widths, cropped to its height.
    parallel(&shots, |&(email, width, height)| {
        let png = out.join(format!("{}.{}.png", email.stem(), width.name()));
        chromium(&out.join(format!("{}.html", email.stem())), (width.px(), height), &[format!("--screenshot={}", png.display())]);
        assert_eq!(png_width(&png), Some(width.px()), "{}", png.display());
    });

    // The committed, reviewed right-to-left screenshots.
    let update = std::env::var("POSTFLOW_GOLDEN_UPDATE").is_ok_and(|v| v == "1");
    let mut expected = Vec::new();
    for &(email, width, _) in &shots {
        if !COMMITTED.contains(&email.locale) {
            continue;
        }
        let name = format!("{}.{}.png", email.stem(), width.name());
        let golden = golden_dir().join(&name);
        if update {
            std::fs::copy(out.join(&name), &golden).unwrap();
        } else if png_width(&golden) != Some(width.px()) {
            problems.push(format!(
                "tests/golden/{name} is missing (or not a {} px wide PNG): review {} and commit it \
                 (POSTFLOW_GOLDEN_UPDATE=1 cargo test --test golden writes it)",
                width.px(),
                out.join(&name).display()
            ));
        }
        expected.push(name);
    }
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".png") && !expected.contains(&name) {
            if update {
                std::fs::remove_file(golden_dir().join(&name)).unwrap();
            } else {
                problems.push(format!("tests/golden/{name} belongs to no rendered email: remove it"));
            }
        }
    }
    assert!(problems.is_empty(), "{} layout problems:\n{}", problems.len(), problems.join("\n"));
}
