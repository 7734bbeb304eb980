//! Template helpers registered in every `TemplateSet` environment, and the
//! output formatter that HTML-escapes interpolated values.
//!
//! - `money` (filter and function): `{{ order.total | money }}` → `$404.95`.
//!   Takes a `{minor, currency}` object (or `money(minor, "USD")`). Integer
//!   arithmetic only; exponent per ISO 4217; `$ € £ ¥` for USD/EUR/GBP/JPY,
//!   otherwise the code and a space (`KWD 1.234`); `,` thousands separator
//!   and `.` decimal point whatever the locale (locale-aware formatting is a
//!   later task).
//! - `name_or(fallback)` (filter): the trimmed value when it is a non-empty
//!   string, else `fallback` — undefined and `none` are fine: `{{ order.customer.first_name | name_or("there") }}`.
//! - `date` (filter): an RFC 3339 timestamp as `YYYY-MM-DD`, in the timestamp's
//!   own UTC offset (the shop's local date as the platform sent it).
//! - `present` (test): `x is present` is false for undefined, `none`, blank
//!   strings and empty lists/objects, so optional fields need no `is defined and` chains.

use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::html::escape_attr;

/// Registers the filters, functions, tests and the escaping formatter.
pub(crate) fn register(env: &mut Environment<'static>) {
    env.add_filter("money", money);
    env.add_function("money", money);
    env.add_filter("name_or", name_or);
    env.add_filter("date", date);
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

/// Digits after the decimal point for an ISO 4217 currency (same table as
/// `contracts::Currency::exponent`).
pub(crate) fn currency_exponent(code: &str) -> u32 {
    match code {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

fn currency_symbol(code: &str) -> Option<&'static str> {
    match code {
        "USD" => Some("$"),
        "EUR" => Some("\u{20ac}"),
        "GBP" => Some("\u{a3}"),
        "JPY" => Some("\u{a5}"),
        _ => None,
    }
}

/// `40495, "USD"` → `$404.95`; `-1234, "KWD"` → `-KWD 1.234`. No floats.
pub fn format_money(minor: i64, currency: &str) -> String {
    let code = currency.trim().to_ascii_uppercase();
    let exp = currency_exponent(&code);
    let abs = minor.unsigned_abs();
    let scale = 10u64.pow(exp);
    let whole = group_thousands(abs / scale);
    let frac = if exp == 0 {
        String::new()
    } else {
        format!(".{:0width$}", abs % scale, width = exp as usize)
    };
    let sign = if minor < 0 { "-" } else { "" };
    match currency_symbol(&code) {
        Some(symbol) => format!("{sign}{symbol}{whole}{frac}"),
        None => format!("{sign}{code} {whole}{frac}"),
    }
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn integer(value: &Value) -> Option<i64> {
    (value.kind() == ValueKind::Number)
        .then(|| value.as_i64())
        .flatten()
}

fn money(value: &Value, currency: Option<&str>) -> Result<String, Error> {
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
        return Ok(format_money(minor, code));
    }
    match (integer(value), currency) {
        (Some(minor), Some(code)) => Ok(format_money(minor, code)),
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

fn date(value: &Value) -> Result<String, Error> {
    let raw = value.as_str().ok_or_else(|| {
        invalid(format!(
            "date: expected an rfc 3339 timestamp string, got {value}"
        ))
    })?;
    let ts = OffsetDateTime::parse(raw.trim(), &Rfc3339)
        .map_err(|e| invalid(format!("date: {raw:?} is not an rfc 3339 timestamp ({e})")))?;
    Ok(format!(
        "{:04}-{:02}-{:02}",
        ts.year(),
        u8::from(ts.month()),
        ts.day()
    ))
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
