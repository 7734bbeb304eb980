//! Template helpers registered in every `TemplateSet` environment, and the
//! output formatter that HTML-escapes interpolated values.
//!
//! Locale: the helpers that write numbers read `brand.locale` (BCP 47; English when
//! missing or unknown) and `brand.native_digits` from the context, which the renderer
//! fills from the recipient's locale and the tenant's brand kit. See [`super::format`].
//!
//! - `money` (filter and function): `{{ order.total | money }}` → `$404.95`
//!   (`404,95 €` in de, `$۴۰۴٫۹۵` in fa with native digits). Takes a `{minor, currency}`
//!   object (or `money(minor, "USD")`). Integer arithmetic only; exponent per ISO 4217.
//! - `number` (filter): `{{ 12345 | number }}` → `12,345`, `۱۲٬۳۴۵`.
//! - `percent` (filter): `{{ 10 | percent }}` → `10%`, `10 %` (de), `۱۰٪`.
//! - `date(style="iso")` (filter): an RFC 3339 timestamp, in the timestamp's own UTC
//!   offset, as `iso` (`2025-03-01`), `long` (`March 1, 2025`), `time` (`2:30 PM`),
//!   `datetime` (`March 1, 2025, 2:30 PM`) or `zone` (`UTC-5`).
//! - `t(key, name=value, …)` (function): the catalogue text of `key` in the recipient's
//!   language (English when the language or the key is missing there), `{name}`
//!   placeholders filled. Parameters are escaped unless already markup (a macro's output,
//!   a `{% set %}` block), numbers get the locale's digits, undefined or none is empty;
//!   `count=n` also picks the plural form. An unknown key or a missing parameter is an error.
//! - `status_label` (filter): a canonical shipment status (`out_for_delivery`) as its
//!   localised label (`Out for delivery`).
//! - `carrier_name` (filter): a carrier slug as people write it (`fedex` → `FedEx`).
//! - `name_or(fallback)` (filter): the trimmed value when it is a non-empty
//!   string, else `fallback` — undefined and `none` are fine: `{{ order.customer.first_name | name_or("there") }}`.
//! - `present` (test): `x is present` is false for undefined, `none`, blank
//!   strings and empty lists/objects, so optional fields need no `is defined and` chains.

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::format::{DateStyle, Numbers};
use super::html::escape_attr;
use super::i18n::{self, Lang, Piece};

/// Registers the filters, functions, tests and the escaping formatter.
pub(crate) fn register(env: &mut Environment<'static>) {
    env.add_filter("money", money);
    env.add_function("money", money);
    env.add_filter("number", number);
    env.add_filter("percent", percent);
    env.add_filter("name_or", name_or);
    env.add_filter("date", date);
    env.add_filter("status_label", status_label);
    env.add_filter("carrier_name", carrier_name);
    env.add_function("t", t);
    env.add_test("present", is_present);
    env.set_formatter(escape_formatter);
}

fn invalid(msg: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

/// Like minijinja's default formatter but escapes only `& < > " '` (not `/`),
/// so URLs stay readable in the MJML and HTML, and prints `none` as nothing.
fn escape_formatter(
    out: &mut minijinja::Output,
    state: &State,
    value: &Value,
) -> Result<(), Error> {
    if value.is_none() {
        return Ok(());
    }
    let text = match value.as_str() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(value.to_string()),
    };
    let escaped = if value.is_safe() || state.auto_escape() == AutoEscape::None {
        text
    } else {
        std::borrow::Cow::Owned(escape_attr(&text).into_owned())
    };
    out.write_str(&escaped).map_err(Error::from)
}

/// The recipient's number style, from `brand.locale` and `brand.native_digits`.
fn numbers(state: &State) -> Numbers {
    let brand = state.lookup("brand");
    let attr = |name: &str| brand.as_ref().and_then(|b| b.get_attr(name).ok());
    Numbers {
        lang: attr("locale")
            .and_then(|l| l.as_str().map(Lang::from_tag))
            .unwrap_or(Lang::En),
        native_digits: attr("native_digits").is_some_and(|v| v.is_true()),
    }
}

/// `40495, "USD"` → `$404.95`; `-1234, "KWD"` → `-KWD 1.234`. English, no floats.
pub fn format_money(minor: i64, currency: &str) -> String {
    Numbers::ENGLISH.money(minor, currency)
}

fn integer(value: &Value) -> Option<i64> {
    (value.kind() == ValueKind::Number)
        .then(|| value.as_i64())
        .flatten()
}

fn money(state: &State, value: &Value, currency: Option<&str>) -> Result<String, Error> {
    let numbers = numbers(state);
    if value.is_undefined() || value.is_none() {
        return Err(invalid("money: value is undefined".into()));
    }
    if value.kind() == ValueKind::Map {
        let minor = value.get_attr("minor")?;
        let minor = integer(&minor)
            .ok_or_else(|| invalid(format!("money: `minor` must be an integer, got {minor}")))?;
        let code = value.get_attr("currency")?;
        let code = currency
            .or(code.as_str())
            .ok_or_else(|| invalid("money: `currency` must be a string".into()))?;
        return Ok(numbers.money(minor, code));
    }
    match (integer(value), currency) {
        (Some(minor), Some(code)) => Ok(numbers.money(minor, code)),
        (Some(_), None) => Err(invalid(
            "money: a bare amount needs a currency, e.g. money(1000, \"USD\")".into(),
        )),
        (None, _) => Err(invalid(format!(
            "money: expected {{minor, currency}}, got {value}"
        ))),
    }
}

fn name_or(value: &Value, fallback: Value) -> Value {
    match value.as_str().map(str::trim) {
        Some(s) if !s.is_empty() => {
            if value.is_safe() {
                Value::from_safe_string(s.to_owned())
            } else {
                Value::from(s)
            }
        }
        _ => fallback,
    }
}

fn date(state: &State, value: &Value, style: Option<&str>) -> Result<String, Error> {
    let style = match style {
        None => DateStyle::Iso,
        Some(name) => DateStyle::parse(name).ok_or_else(|| {
            invalid(format!(
                "date: unknown style {name:?} (known: {})",
                DateStyle::NAMES
            ))
        })?,
    };
    let raw = value.as_str().ok_or_else(|| {
        invalid(format!(
            "date: expected an rfc 3339 timestamp string, got {value}"
        ))
    })?;
    let ts = OffsetDateTime::parse(raw.trim(), &Rfc3339)
        .map_err(|e| invalid(format!("date: {raw:?} is not an rfc 3339 timestamp ({e})")))?;
    Ok(numbers(state).date(ts, style))
}

fn number(state: &State, value: &Value) -> Result<String, Error> {
    let numbers = numbers(state);
    if let Some(n) = integer(value) {
        return Ok(numbers.integer(n));
    }
    match f64::try_from(value.clone()) {
        Ok(x) if value.kind() == ValueKind::Number => Ok(numbers.decimal(x)),
        _ => Err(invalid(format!("number: expected a number, got {value}"))),
    }
}

fn percent(state: &State, value: &Value) -> Result<String, Error> {
    integer(value)
        .map(|n| numbers(state).percent(n))
        .ok_or_else(|| invalid(format!("percent: expected a whole number, got {value}")))
}

fn status_label(state: &State, value: &Value) -> String {
    let Some(status) = value.as_str().map(str::trim).filter(|s| !s.is_empty()) else {
        return String::new();
    };
    let lang = numbers(state).lang;
    match i18n::message(lang, &format!("status.{status}"), None) {
        Some(label) => label.to_owned(),
        None => {
            let words = status.replace('_', " ");
            let mut chars = words.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().collect::<String>() + chars.as_str()
            })
        }
    }
}

fn carrier_name(value: &Value) -> String {
    value
        .as_str()
        .map(super::format::carrier_name)
        .unwrap_or_default()
}

/// A `t()` parameter as markup: escaped text, locale digits for numbers.
fn param_markup(value: &Value, numbers: Numbers) -> String {
    if value.is_undefined() || value.is_none() {
        return String::new();
    }
    if let Some(n) = integer(value) {
        return numbers.integer(n);
    }
    if value.kind() == ValueKind::Number
        && let Ok(x) = f64::try_from(value.clone())
    {
        return numbers.decimal(x);
    }
    let text = match value.as_str() {
        Some(s) => s.to_owned(),
        None => value.to_string(),
    };
    if value.is_safe() {
        text
    } else {
        escape_attr(&text).into_owned()
    }
}

fn t(state: &State, key: &str, kwargs: Kwargs) -> Result<Value, Error> {
    let numbers = numbers(state);
    let count = if kwargs.has("count") {
        let value: Value = kwargs.get("count")?;
        integer(&value).and_then(|n| u64::try_from(n).ok())
    } else {
        None
    };
    let text = i18n::message(numbers.lang, key, count)
        .ok_or_else(|| invalid(format!("t: unknown message key {key:?}")))?;
    let mut out = String::with_capacity(text.len() + 32);
    for piece in i18n::pieces(text) {
        match piece {
            Piece::Text(literal) => out.push_str(&escape_attr(literal)),
            Piece::Param(name) => {
                if !kwargs.has(name) {
                    return Err(invalid(format!(
                        "t: message {key:?} needs the parameter {name}"
                    )));
                }
                let value: Value = kwargs.get(name)?;
                out.push_str(&param_markup(&value, numbers));
            }
        }
    }
    kwargs.assert_all_used()?;
    Ok(Value::from_safe_string(out))
}

fn is_present(value: &Value) -> bool {
    if value.is_undefined() || value.is_none() {
        return false;
    }
    if let Some(s) = value.as_str() {
        return !s.trim().is_empty();
    }
    match value.kind() {
        ValueKind::Seq | ValueKind::Map => value.len().is_none_or(|n| n > 0),
        _ => true,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn money_per_currency() {
        assert_eq!(format_money(40495, "USD"), "$404.95");
        assert_eq!(format_money(5, "usd"), "$0.05");
        assert_eq!(format_money(123456789, "EUR"), "\u{20ac}1,234,567.89");
        assert_eq!(format_money(1500, "JPY"), "\u{a5}1,500");
        assert_eq!(format_money(1234, "KWD"), "KWD 1.234");
        assert_eq!(format_money(5, "BHD"), "BHD 0.005");
        assert_eq!(format_money(1999, "CHF"), "CHF 19.99");
        assert_eq!(format_money(-1050, "USD"), "-$10.50");
        assert_eq!(format_money(-7, "KWD"), "-KWD 0.007");
        assert_eq!(format_money(i64::MIN, "USD"), "-$92,233,720,368,547,758.08");
    }

    fn env() -> Environment<'static> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        register(&mut env);
        env
    }

    #[test]
    fn money_filter_and_function() {
        let env = env();
        let ctx = json!({ "t": { "minor": 40495, "currency": "USD" }, "k": { "minor": -1234, "currency": "KWD" } });
        assert_eq!(
            env.render_str(
                "{{ t | money }} {{ k | money }} {{ money(150, 'JPY') }}",
                &ctx
            )
            .unwrap(),
            "$404.95 -KWD 1.234 \u{a5}150"
        );
        let err = env
            .render_str("{{ {'minor': 1.5, 'currency': 'USD'} | money }}", &ctx)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("money: `minor` must be an integer"),
            "{err}"
        );
        assert!(env.render_str("{{ 100 | money }}", &ctx).is_err());
    }

    #[test]
    fn name_or_and_present() {
        let env = env();
        let ctx = json!({ "c": { "first_name": "  Ana ", "blank": " ", "null": null }, "l": [] });
        let out = env
            .render_str(
                "{{ c.first_name | name_or('there') }}|{{ c.blank | name_or('there') }}|{{ c.null | name_or('there') }}|{{ c.missing | name_or('there') }}",
                &ctx,
            )
            .unwrap();
        assert_eq!(out, "Ana|there|there|there");
        let out = env
            .render_str("{{ c.first_name is present }} {{ c.blank is present }} {{ c.null is present }} {{ c.missing is present }} {{ l is present }}", &ctx)
            .unwrap();
        assert_eq!(out, "True False False False False");
    }

    #[test]
    fn date_filter() {
        let env = env();
        let ctx = json!({ "a": "2025-03-01T23:30:00-05:00", "b": "yesterday" });
        assert_eq!(
            env.render_str("{{ a | date }}", &ctx).unwrap(),
            "2025-03-01"
        );
        let err = env.render_str("{{ b | date }}", &ctx).unwrap_err();
        assert!(
            err.to_string().contains("not an rfc 3339 timestamp"),
            "{err}"
        );
    }

    #[test]
    fn money_number_and_date_follow_the_brand_locale() {
        let env = env();
        let ctx = |locale: &str, native: bool| {
            json!({
                "brand": { "locale": locale, "native_digits": native },
                "m": { "minor": 123456, "currency": "EUR" },
                "ts": "2025-03-01T23:30:00-05:00",
            })
        };
        let tpl = "{{ m | money }}|{{ 1234 | number }}|{{ 15 | percent }}|{{ ts | date }}|{{ ts | date('long') }}";
        assert_eq!(
            env.render_str(tpl, ctx("en-US", true)).unwrap(),
            "\u{20ac}1,234.56|1,234|15%|2025-03-01|March 1, 2025"
        );
        assert_eq!(
            env.render_str(tpl, ctx("de", false)).unwrap(),
            "1.234,56\u{a0}\u{20ac}|1.234|15\u{a0}%|2025-03-01|1. März 2025"
        );
        assert_eq!(
            env.render_str(tpl, ctx("fa", true)).unwrap(),
            "\u{20ac}۱٬۲۳۴٫۵۶|۱٬۲۳۴|۱۵٪|۲۰۲۵-۰۳-۰۱|۲۰۲۵/۳/۱"
        );
        assert_eq!(
            env.render_str(tpl, ctx("fa", false)).unwrap(),
            "\u{20ac}1,234.56|1,234|15%|2025-03-01|2025/3/1"
        );
        let err = env
            .render_str("{{ ts | date('short') }}", ctx("en", false))
            .unwrap_err();
        assert!(err.to_string().contains("unknown style"), "{err}");
    }

    #[test]
    fn t_translates_fills_escapes_and_pluralises() {
        let env = env();
        let ctx = |locale: &str| json!({ "brand": { "locale": locale, "native_digits": true }, "name": "<Ana & Bo>" });
        assert_eq!(
            env.render_str("{{ t('greeting', name=name) }}", ctx("en"))
                .unwrap(),
            "Hi &lt;Ana &amp; Bo&gt;,"
        );
        assert_eq!(
            env.render_str("{{ t('greeting', name=name) }}", ctx("ar"))
                .unwrap(),
            "مرحبًا &lt;Ana &amp; Bo&gt;،"
        );
        // Markup from a set block passes; numbers get the locale's digits.
        assert_eq!(
            env.render_str(
                "{% set p %}<b>{{ name }}</b>{% endset %}{{ t('line.quantity', quantity=3, price=p) }}",
                ctx("fa")
            )
            .unwrap(),
            "تعداد ۳ × <b>&lt;Ana &amp; Bo&gt;</b>"
        );
        // Missing languages and none values.
        assert_eq!(
            env.render_str("{{ t('greeting', name=none) }}", ctx("pt-BR"))
                .unwrap(),
            "Hi ,"
        );
        assert_eq!(
            env.render_str(
                "{{ t('shipment_stalled.body', count=1, carrier='UPS', date='x') }}",
                ctx("en")
            )
            .unwrap(),
            "UPS has not scanned your parcel for 1 day. The last scan was on x."
        );
        assert_eq!(
            env.render_str("{{ 'out_for_delivery' | status_label }}|{{ 'lost_at_sea' | status_label }}|{{ none | status_label }}|{{ 'dhl' | carrier_name }}", ctx("en"))
                .unwrap(),
            "Out for delivery|Lost at sea||DHL"
        );
        for (src, message) in [
            ("{{ t('no.such.key') }}", "unknown message key"),
            ("{{ t('greeting') }}", "needs the parameter name"),
            ("{{ t('greeting', name='x', nmae='y') }}", "nmae"),
        ] {
            let err = env.render_str(src, ctx("en")).unwrap_err();
            assert!(err.to_string().contains(message), "{src}: {err}");
        }
    }

    #[test]
    fn formatter_escapes_html_but_not_slashes() {
        let env = env();
        let ctx =
            json!({ "n": "<b>Tom & \"Jerry\"</b>", "u": "https://x.example/a?b=1&c=2", "z": null });
        assert_eq!(
            env.render_str("{{ n }}|{{ u }}|{{ z }}|{{ n | safe }}", &ctx)
                .unwrap(),
            "&lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt;|https://x.example/a?b=1&amp;c=2||<b>Tom & \"Jerry\"</b>"
        );
    }
}
