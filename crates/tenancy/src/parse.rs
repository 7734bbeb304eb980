//! Reading a tenants directory: raw TOML shapes, then validation into the model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use contracts::{EmailAddress, EventKind, Lane, TenantId};
use serde::Deserialize;
use toml::Spanned;

use crate::model::{self, Brand, Direction, Flow, FlowStep, Secret, SenderIdentity, SourceSecrets, Tenant, TemplateSource, Tracking};
use crate::{ConfigError, ConfigErrors, Tenants};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: String,
    #[serde(default = "default_locale")]
    locale: Spanned<String>,
    sender: RawSender,
    #[serde(default)]
    brand: RawBrand,
    #[serde(default)]
    tracking: RawTracking,
    #[serde(default)]
    sources: BTreeMap<String, RawSource>,
}

fn default_locale() -> Spanned<String> {
    Spanned::new(0..0, "en".to_owned())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSender {
    from: Spanned<String>,
    from_name: Option<String>,
    reply_to: Option<Spanned<String>>,
    physical_address: Spanned<String>,
    privacy_url: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBrand {
    logo_url: Option<Spanned<String>>,
    primary_color: Option<Spanned<String>>,
    text_color: Option<Spanned<String>>,
    background_color: Option<Spanned<String>>,
    font_family: Option<String>,
    direction: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTracking {
    #[serde(default = "yes")]
    opens: bool,
    #[serde(default = "yes")]
    clicks: bool,
}

impl Default for RawTracking {
    fn default() -> Self {
        Self { opens: true, clicks: true }
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    secrets: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    id: Option<String>,
    trigger: Spanned<String>,
    #[serde(default = "default_lane")]
    lane: Spanned<String>,
    #[serde(default = "yes")]
    enabled: bool,
    steps: Spanned<Vec<RawStep>>,
}

fn default_lane() -> Spanned<String> {
    Spanned::new(0..0, "transactional".to_owned())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    send: Option<Spanned<String>>,
    wait: Option<Spanned<String>>,
}

/// Collects errors for one file.
struct FileCtx<'a> {
    path: &'a Path,
    source: &'a str,
    errors: &'a mut Vec<ConfigError>,
}

impl FileCtx<'_> {
    fn err<T>(&mut self, span: &Spanned<T>, message: impl Into<String>) {
        let e = ConfigError::at(self.path, self.source, span.span().start, message);
        self.errors.push(e);
    }
}

pub(crate) fn load_root(root: &Path) -> Result<Tenants, ConfigErrors> {
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) => return Err(ConfigErrors(vec![ConfigError::whole_file(root, format!("cannot read tenants directory: {e}"))])),
    };
    // Hidden entries are not tenants (a mounted Kubernetes ConfigMap has `..data` links).
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
        .collect();
    dirs.sort();
    let mut tenants = Vec::new();
    for dir in dirs {
        if let Some(t) = load_tenant(&dir, &mut errors) {
            tenants.push(t);
        }
    }
    if errors.is_empty() { Ok(Tenants::from_tenants(tenants)) } else { Err(ConfigErrors(errors)) }
}

fn read(path: &Path, errors: &mut Vec<ConfigError>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) => {
            errors.push(ConfigError::whole_file(path, format!("cannot read: {e}")));
            None
        }
    }
}

fn toml_error(path: &Path, source: &str, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map_or(0, |s| s.start);
    // toml's message repeats the position and a snippet; keep its first line.
    let message = e.message().lines().next().unwrap_or("invalid toml").to_owned();
    ConfigError::at(path, source, offset, message)
}

fn load_tenant(dir: &Path, errors: &mut Vec<ConfigError>) -> Option<Tenant> {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let id = match TenantId::parse(name) {
        Ok(id) => id,
        Err(e) => {
            errors.push(ConfigError::whole_file(dir, format!("directory name is not a tenant id: {e}")));
            return None;
        }
    };
    let path = dir.join("tenant.toml");
    let source = read(&path, errors)?;
    let raw: RawTenant = match toml::from_str(&source) {
        Ok(r) => r,
        Err(e) => {
            errors.push(toml_error(&path, &source, &e));
            return None;
        }
    };
    let before = errors.len();
    let mut cx = FileCtx { path: &path, source: &source, errors };

    let from = parse_email(&mut cx, &raw.sender.from);
    let reply_to = raw.sender.reply_to.as_ref().and_then(|r| parse_email(&mut cx, r));
    if raw.sender.physical_address.get_ref().trim().is_empty() {
        cx.err(&raw.sender.physical_address, "physical_address must not be empty (required in every email by CAN-SPAM)");
    }
    let privacy_url = raw.sender.privacy_url.as_ref().and_then(|u| check_url(&mut cx, u));
    let color = |cx: &mut FileCtx, c: &Option<Spanned<String>>, default: &str| match c {
        None => default.to_owned(),
        Some(c) if is_hex_color(c.get_ref()) => c.get_ref().clone(),
        Some(c) => {
            cx.err(c, format!("{:?} is not a colour like #1a2b3c", c.get_ref()));
            default.to_owned()
        }
    };
    let brand = Brand {
        logo_url: raw.brand.logo_url.as_ref().and_then(|u| check_url(&mut cx, u)),
        primary_color: color(&mut cx, &raw.brand.primary_color, "#111827"),
        text_color: color(&mut cx, &raw.brand.text_color, "#1f2937"),
        background_color: color(&mut cx, &raw.brand.background_color, "#f3f4f6"),
        font_family: raw.brand.font_family.clone().unwrap_or_else(|| "Helvetica, Arial, sans-serif".into()),
        direction: match raw.brand.direction.as_ref() {
            None => None,
            Some(d) => match d.get_ref().as_str() {
                "ltr" => Some(Direction::Ltr),
                "rtl" => Some(Direction::Rtl),
                "auto" => None,
                _ => {
                    cx.err(d, "direction must be \"ltr\", \"rtl\" or \"auto\"");
                    None
                }
            },
        },
    };
    let mut sources = BTreeMap::new();
    for (name, src) in &raw.sources {
        if src.secrets.get_ref().is_empty() {
            cx.err(&src.secrets, format!("source {name} needs at least one secret"));
        }
        let mut secrets = Vec::new();
        for s in src.secrets.get_ref() {
            match resolve_secret(s.get_ref()) {
                Ok(v) if !v.is_empty() => secrets.push(Secret::new(v)),
                Ok(_) => cx.err(s, "secret is empty"),
                Err(msg) => cx.err(s, msg),
            }
        }
        sources.insert(name.clone(), SourceSecrets { secrets });
    }
    if raw.locale.get_ref().trim().is_empty() {
        cx.err(&raw.locale, "locale must not be empty");
    }

    let templates = load_templates(&dir.join("templates"), cx.errors);
    let flows = load_flows(&dir.join("flows"), cx.errors);

    if errors.len() > before {
        return None;
    }
    Some(Tenant {
        id,
        name: raw.name,
        locale: raw.locale.into_inner(),
        sender: SenderIdentity {
            from: model::mailbox(raw.sender.from_name, from?),
            reply_to: reply_to.map(|e| model::mailbox(None, e)),
            physical_address: raw.sender.physical_address.into_inner(),
            privacy_url,
        },
        brand,
        tracking: Tracking { opens: raw.tracking.opens, clicks: raw.tracking.clicks },
        sources,
        flows,
        templates,
        dir: dir.to_path_buf(),
    })
}

fn parse_email(cx: &mut FileCtx, s: &Spanned<String>) -> Option<EmailAddress> {
    match EmailAddress::parse(s.get_ref()) {
        Ok(e) => Some(e),
        Err(e) => {
            cx.err(s, e.to_string());
            None
        }
    }
}

fn check_url(cx: &mut FileCtx, s: &Spanned<String>) -> Option<String> {
    let v = s.get_ref();
    if v.starts_with("https://") || v.starts_with("http://") {
        Some(v.clone())
    } else {
        cx.err(s, format!("{v:?} is not an http(s) url"));
        None
    }
}

fn is_hex_color(s: &str) -> bool {
    let hex = s.strip_prefix('#').unwrap_or("");
    (hex.len() == 3 || hex.len() == 6) && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

fn resolve_secret(raw: &str) -> Result<String, String> {
    match raw.strip_prefix("env:") {
        Some(var) => std::env::var(var).map_err(|_| format!("environment variable {var} is not set")),
        None => Ok(raw.to_owned()),
    }
}

fn sorted_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}

fn load_templates(dir: &Path, errors: &mut Vec<ConfigError>) -> Vec<TemplateSource> {
    let mut out = Vec::new();
    for sub in ["", "partials"] {
        let d = if sub.is_empty() { dir.to_path_buf() } else { dir.join(sub) };
        for file in sorted_files(&d, "mjml") {
            let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
            let name = if sub.is_empty() { stem } else { format!("{sub}/{stem}") };
            if let Some(source) = read(&file, errors) {
                out.push(TemplateSource { name, source, file });
            }
        }
    }
    out
}

fn load_flows(dir: &Path, errors: &mut Vec<ConfigError>) -> Vec<Flow> {
    let mut flows: Vec<Flow> = Vec::new();
    for path in sorted_files(dir, "toml") {
        let Some(source) = read(&path, errors) else { continue };
        let raw: RawFlow = match toml::from_str(&source) {
            Ok(r) => r,
            Err(e) => {
                errors.push(toml_error(&path, &source, &e));
                continue;
            }
        };
        let before = errors.len();
        let mut cx = FileCtx { path: &path, source: &source, errors };
        let id = raw.id.clone().unwrap_or_else(|| path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned());
        let trigger = EventKind::ALL.iter().copied().find(|k| k.as_str() == raw.trigger.get_ref());
        if trigger.is_none() {
            let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            cx.err(&raw.trigger, format!("unknown trigger {:?}; known: {}", raw.trigger.get_ref(), known.join(", ")));
        }
        let lane = match raw.lane.get_ref().as_str() {
            "transactional" => Lane::Transactional,
            "marketing" => Lane::Marketing,
            _ => {
                cx.err(&raw.lane, "lane must be \"transactional\" or \"marketing\"");
                Lane::Transactional
            }
        };
        if raw.steps.get_ref().is_empty() {
            cx.err(&raw.steps, "a flow needs at least one step");
        }
        let mut steps = Vec::new();
        for step in raw.steps.get_ref() {
            match (&step.send, &step.wait) {
                (Some(t), None) => {
                    if t.get_ref().trim().is_empty() {
                        cx.err(t, "send needs a template name");
                    }
                    steps.push(FlowStep::Send { template: t.get_ref().clone() });
                }
                (None, Some(w)) => match parse_wait(w.get_ref()) {
                    Some(d) => steps.push(FlowStep::Wait(d)),
                    None => cx.err(w, format!("{:?} is not a wait like \"30m\", \"2h\" or \"3d\"", w.get_ref())),
                },
                _ => cx.err(&raw.steps, "each step has exactly one of send or wait"),
            }
        }
        if let Some(dup) = flows.iter().find(|f| f.id == id) {
            let msg = format!("flow id {id:?} is also used by {}", dup.file.display());
            cx.errors.push(ConfigError::whole_file(&path, msg));
        }
        if cx.errors.len() == before
            && let Some(trigger) = trigger {
                flows.push(Flow { id, trigger, lane, enabled: raw.enabled, steps, file: path.clone() });
            }
    }
    flows
}

/// `"90s"`, `"30m"`, `"2h"`, `"3d"`, `"1w"`.
pub(crate) fn parse_wait(s: &str) -> Option<Duration> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: u64 = s[..s.len() - unit.len_utf8()].trim().parse().ok()?;
    let secs = match unit {
        's' => n,
        'm' => n.checked_mul(60)?,
        'h' => n.checked_mul(3600)?,
        'd' => n.checked_mul(86_400)?,
        'w' => n.checked_mul(604_800)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = r##"name = "Demo"
[sender]
from = "shop@demo.example"
from_name = "Demo"
physical_address = "1 Main St"
[brand]
primary_color = "#0f766e"
[sources.shopify]
secrets = ["one", "two"]
"##;

    const FLOW: &str = r#"trigger = "order.placed"
[[steps]]
send = "order_confirmation"
[[steps]]
wait = "3d"
[[steps]]
send = "review_request"
"#;

    fn write(dir: &Path, rel: &str, body: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    #[test]
    fn loads_a_valid_tenant() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "demo/tenant.toml", TENANT);
        write(root.path(), "demo/flows/order-confirmation.toml", FLOW);
        write(root.path(), "demo/templates/order_confirmation.mjml", "<mjml></mjml>");
        let tenants = Tenants::load_dir(root.path()).unwrap();
        let t = tenants.find("demo").unwrap();
        assert_eq!(t.sender.from.email.as_str(), "shop@demo.example");
        assert_eq!(t.source("shopify").unwrap().secrets.len(), 2);
        assert_eq!(t.flows[0].id, "order-confirmation");
        assert_eq!(t.flows[0].steps[1], FlowStep::Wait(Duration::from_secs(3 * 86_400)));
        assert_eq!(t.templates[0].name, "order_confirmation");
        assert!(!format!("{:?}", t.sources).contains("one"), "secrets must not print");
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "demo/tenant.toml", &TENANT.replace("shop@demo.example", "not-an-address"));
        write(root.path(), "demo/flows/x.toml", &FLOW.replace("order.placed", "order.teleported"));
        let errs = Tenants::load_dir(root.path()).unwrap_err();
        let text = errs.to_string();
        assert_eq!(errs.0.len(), 2, "{text}");
        assert!(text.contains("tenant.toml:3:8: invalid email address"), "{text}");
        assert!(text.contains("x.toml:1:11: unknown trigger \"order.teleported\""), "{text}");
    }

    #[test]
    fn syntax_errors_and_unknown_keys_are_located() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "demo/tenant.toml", &format!("{TENANT}colour = 1\n"));
        write(root.path(), "bad_id/tenant.toml", TENANT);
        write(root.path(), "..data/tenant.toml", "not a tenant");
        let text = Tenants::load_dir(root.path()).unwrap_err().to_string();
        assert!(text.contains("demo/tenant.toml:10:1: unknown field `colour`"), "{text}");
        assert!(text.contains("bad_id: directory name is not a tenant id"), "{text}");
    }

    #[test]
    fn waits_parse() {
        assert_eq!(parse_wait("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_wait("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_wait("3x"), None);
        assert_eq!(parse_wait("d"), None);
        assert_eq!(parse_wait("99999999999999999999d"), None);
    }

    #[test]
    fn direction_follows_locale() {
        assert_eq!(Direction::for_locale("fa-IR"), Direction::Rtl);
        assert_eq!(Direction::for_locale("ar"), Direction::Rtl);
        assert_eq!(Direction::for_locale("en-CA"), Direction::Ltr);
    }
}
