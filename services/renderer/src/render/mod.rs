//! The pure rendering core: tenant templates (minijinja + MJML) in, subject,
//! preheader, HTML and plain-text parts out. No IO, no async.
//!
//! Pipeline for one email: minijinja renders the named template with the JSON
//! context (strict undefined variables, HTML auto-escaping of every
//! interpolated value) into an MJML document; mrml parses it and renders it to
//! HTML; the subject is the document's `<mj-title>`, the preheader its
//! `<mj-preview>`; the text part is [`text::html_to_text`] of the HTML.
//!
//! Built-in templates ship inside the binary and can be overridden per tenant
//! by name:
//! - `layout`: the shared skeleton (head, direction switch, logo, footer).
//!   Children `{% extends "layout" %}` and fill `subject`, `preview`, `content`
//!   (and optionally `footer`).
//! - `partials/footer`: sender name, physical address, privacy, unsubscribe and
//!   preferences links (the last two for marketing mail only).
//! - `partials/order`, `partials/product`, `partials/offer`, `partials/shipment`:
//!   macros for order lines, totals, addresses, product blocks, coupon and offer blocks,
//!   tracking details and history; tenant templates import them too.
//! - the post-purchase journey the built-in flows send: `order_confirmation`
//!   (`order.placed`), `shipping_confirmation` (`fulfillment.created`),
//!   `shipment_update` and `delivered` (`shipment.progressed`), `review_request` (after
//!   delivery), `shipment_stalled` (`shipment.stalled`), `order_cancelled`
//!   (`order.cancelled`). Their sample data is in `samples/<template>.json`.
//!
//! Built-in texts come from the message catalogue ([`i18n`]) through `t("key")`, in the
//! language of `brand.locale`; numbers, money and dates are written for that locale
//! ([`format`]). Right-to-left is the layout's one switch on `brand.direction`.
//!
//! Click tracking and the open pixel are applied afterwards by the caller with
//! [`links::rewrite_links`] and [`links::insert_pixel`]; the caller then
//! recomputes the text part from the final HTML.

mod filters;
pub mod format;
mod html;
pub mod i18n;
pub mod links;
pub mod text;

use std::collections::BTreeMap;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

pub use filters::format_money;

/// Built-in templates: (name, MJML+Jinja source).
const BUILTIN_TEMPLATES: &[(&str, &str)] = &[
    ("layout", include_str!("../../templates/layout.mjml")),
    (
        "partials/footer",
        include_str!("../../templates/partials/footer.mjml"),
    ),
    (
        "partials/order",
        include_str!("../../templates/partials/order.mjml"),
    ),
    (
        "partials/product",
        include_str!("../../templates/partials/product.mjml"),
    ),
    (
        "partials/offer",
        include_str!("../../templates/partials/offer.mjml"),
    ),
    (
        "partials/shipment",
        include_str!("../../templates/partials/shipment.mjml"),
    ),
    (
        "order_confirmation",
        include_str!("../../templates/order_confirmation.mjml"),
    ),
    (
        "shipping_confirmation",
        include_str!("../../templates/shipping_confirmation.mjml"),
    ),
    (
        "shipment_update",
        include_str!("../../templates/shipment_update.mjml"),
    ),
    ("delivered", include_str!("../../templates/delivered.mjml")),
    (
        "review_request",
        include_str!("../../templates/review_request.mjml"),
    ),
    (
        "shipment_stalled",
        include_str!("../../templates/shipment_stalled.mjml"),
    ),
    (
        "order_cancelled",
        include_str!("../../templates/order_cancelled.mjml"),
    ),
];

/// Names of the built-in templates that are emails (not the layout or partials).
pub const BUILTIN_EMAILS: &[&str] = &[
    "order_confirmation",
    "shipping_confirmation",
    "shipment_update",
    "delivered",
    "review_request",
    "shipment_stalled",
    "order_cancelled",
];

/// Sample `RenderRequest.data` of each built-in email, as in `samples/`.
const SAMPLES: &[(&str, &str)] = &[
    (
        "order_confirmation",
        include_str!("../../samples/order_confirmation.json"),
    ),
    (
        "shipping_confirmation",
        include_str!("../../samples/shipping_confirmation.json"),
    ),
    (
        "shipment_update",
        include_str!("../../samples/shipment_update.json"),
    ),
    ("delivered", include_str!("../../samples/delivered.json")),
    (
        "review_request",
        include_str!("../../samples/review_request.json"),
    ),
    (
        "shipment_stalled",
        include_str!("../../samples/shipment_stalled.json"),
    ),
    (
        "order_cancelled",
        include_str!("../../samples/order_cancelled.json"),
    ),
];

/// The sample data of built-in email `name` (what the scheduler passes), for previews
/// and load-time checks; `None` for other names.
pub fn sample_data(name: &str) -> Option<serde_json::Value> {
    SAMPLES
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, raw)| serde_json::from_str(raw).ok())
}

/// Why a template could not be compiled or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template source is not valid minijinja (found at `TemplateSet::new`).
    #[error("syntax error in template {template:?}{}: {message}", location(*line, *column))]
    Syntax {
        template: String,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    /// Rendering failed: undefined variable, bad filter input, missing include...
    /// `template` is the template where it happened (may be a layout or partial).
    #[error("render error in template {template:?}{}: {message}", location(*line, None))]
    Render {
        template: String,
        line: Option<usize>,
        message: String,
    },
    /// No template of that name in the set.
    #[error("template {template:?} not found")]
    NotFound { template: String },
    /// The rendered document is not valid MJML, or mrml could not render it.
    #[error("invalid mjml from template {template:?}: {message}")]
    Mjml { template: String, message: String },
    /// The rendered document has no `<mj-title>`, or it is blank.
    #[error("template {template:?} has no subject: <mj-title> is missing or empty")]
    MissingSubject { template: String },
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

/// One rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// From `<mj-title>`, entities decoded, whitespace collapsed; never empty.
    pub subject: String,
    /// From `<mj-preview>`, entities decoded; `None` when absent or blank.
    pub preheader: Option<String>,
    /// The HTML part, before link rewriting and pixel insertion.
    pub html: String,
    /// The text part computed from `html`.
    pub text: String,
}

/// All templates of one tenant plus the built-in defaults, compiled once.
#[derive(Debug, Clone)]
pub struct TemplateSet {
    env: Environment<'static>,
    /// Sources by name, to locate errors (columns, failing expressions).
    sources: BTreeMap<String, String>,
}

impl TemplateSet {
    /// Compiles the built-ins and `templates` ((name, source) pairs, name = file
    /// stem such as `order_confirmation` or `partials/footer`). A tenant template
    /// replaces the built-in of the same name; if a name repeats, the last wins.
    /// Every template is compiled here, so syntax errors surface now.
    pub fn new(templates: Vec<(String, String)>) -> Result<Self, TemplateError> {
        let mut sources: BTreeMap<String, String> = BUILTIN_TEMPLATES
            .iter()
            .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
            .collect();
        sources.extend(templates);

        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_debug(false);
        filters::register(&mut env);

        for (name, source) in &sources {
            env.add_template_owned(name.clone(), source.clone())
                .map_err(|e| syntax_error(name, source, &e))?;
        }
        Ok(Self { env, sources })
    }

    /// Names of every template in the set, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    /// Renders template `name` with `ctx` into subject, preheader, HTML and text.
    pub fn render(&self, name: &str, ctx: &serde_json::Value) -> Result<Rendered, TemplateError> {
        if !self.sources.contains_key(name) {
            return Err(TemplateError::NotFound {
                template: name.to_owned(),
            });
        }
        let template = self
            .env
            .get_template(name)
            .map_err(|_| TemplateError::NotFound {
                template: name.to_owned(),
            })?;
        let mjml = template
            .render(ctx)
            .map_err(|e| self.render_error(name, &e))?;
        mjml_to_email(name, &mjml)
    }

    fn render_error(&self, requested: &str, err: &minijinja::Error) -> TemplateError {
        // Errors inside an include or a layout are wrapped ("error in \"partials/footer\"");
        // report the innermost one, where the template author has to look.
        let mut chain = vec![err];
        let mut source = std::error::Error::source(err);
        while let Some(s) = source {
            if let Some(inner) = s.downcast_ref::<minijinja::Error>() {
                chain.push(inner);
            }
            source = s.source();
        }
        let innermost = chain
            .iter()
            .rev()
            .find(|e| e.name().is_some())
            .copied()
            .unwrap_or(err);
        let template = innermost.name().unwrap_or(requested).to_owned();
        let mut message = error_message(innermost);
        let snippet = innermost
            .range()
            .and_then(|r| self.sources.get(&template).and_then(|src| src.get(r)))
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 120 && !s.contains('\n'));
        if let Some(snippet) = snippet {
            message.push_str(&format!(" in `{snippet}`"));
        }
        if !std::ptr::eq(err, innermost)
            && let (Some(name), Some(line)) = (err.name(), err.line())
        {
            message.push_str(&format!(" (included from {name:?} at line {line})"));
        }
        TemplateError::Render {
            template,
            line: innermost.line(),
            message,
        }
    }
}

/// minijinja's error kind and detail, without its own `(in name:line)` suffix.
fn error_message(err: &minijinja::Error) -> String {
    match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    }
}

fn syntax_error(name: &str, source: &str, err: &minijinja::Error) -> TemplateError {
    let column = err.range().and_then(|r| {
        let before = source.get(..r.start)?;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Some(before[line_start..].chars().count() + 1)
    });
    TemplateError::Syntax {
        template: err.name().unwrap_or(name).to_owned(),
        line: err.line(),
        column,
        // The variant already says "syntax error"; keep only what went wrong.
        message: err
            .detail()
            .map_or_else(|| error_message(err), str::to_owned),
    }
}

/// Parses and renders an MJML document produced by template `name`.
fn mjml_to_email(name: &str, mjml: &str) -> Result<Rendered, TemplateError> {
    let mjml_error = |message: String| TemplateError::Mjml {
        template: name.to_owned(),
        message,
    };
    let parsed = mrml::parse(mjml).map_err(|e| mjml_error(describe_parse_error(&e, mjml)))?;
    let doc = parsed.element;
    let subject = doc
        .get_title()
        .map(|t| clean_inline(&t))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| TemplateError::MissingSubject {
            template: name.to_owned(),
        })?;
    let preheader = doc
        .get_preview()
        .map(|p| clean_inline(&p))
        .filter(|s| !s.is_empty());
    let html = doc
        .render(&mrml::prelude::render::RenderOptions::default())
        .map_err(|e| mjml_error(e.to_string()))?;
    let text = text::html_to_text(&html);
    Ok(Rendered {
        subject,
        preheader,
        html,
        text,
    })
}

/// mrml's message plus the line and text of the generated MJML it points at
/// (its byte positions are meaningless to a template author).
fn describe_parse_error(err: &mrml::prelude::parser::Error, mjml: &str) -> String {
    use mrml::prelude::parser::Error as E;
    let position = match err {
        E::UnexpectedElement { position, .. }
        | E::UnexpectedToken { position, .. }
        | E::MissingAttribute { position, .. }
        | E::InvalidAttribute { position, .. }
        | E::InvalidFormat { position, .. }
        | E::IncludeLoaderError { position, .. } => Some(position.start),
        _ => None,
    };
    let mut message = err.to_string();
    if let Some(source) = std::error::Error::source(err) {
        message.push_str(&format!(" ({source})"));
    }
    if let Some(at) = position.filter(|&p| p <= mjml.len() && mjml.is_char_boundary(p)) {
        let line_no = mjml[..at].matches('\n').count() + 1;
        let line_start = mjml[..at].rfind('\n').map_or(0, |i| i + 1);
        let line_end = mjml[at..].find('\n').map_or(mjml.len(), |i| at + i);
        let excerpt: String = mjml[line_start..line_end]
            .trim()
            .chars()
            .take(120)
            .collect();
        message.push_str(&format!(" (rendered mjml line {line_no}: `{excerpt}`)"));
    }
    message
}

/// Header-safe single line: entities decoded, control characters dropped,
/// whitespace collapsed.
fn clean_inline(s: &str) -> String {
    let decoded = html::decode_entities(s);
    decoded
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod journey_tests;
