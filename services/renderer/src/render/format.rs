//! Locale-aware writing of numbers, money and dates for the template filters. Pure.
//!
//! - Numbers: grouping and decimal separators per language (`1,234.5` en, `1.234,5` de);
//!   for `ar` and `fa` with the tenant's `native_digits` on, Arabic-Indic (`١٬٢٣٤٫٥`) or
//!   Persian (`۱٬۲۳۴٫۵`) digits with the Arabic separators U+066C and U+066B.
//! - Money: integer arithmetic on minor units, exponent per ISO 4217. English, Arabic and
//!   Persian put the symbol first (`$1,234.50`, `KWD 1.234`); German puts it last with a
//!   no-break space (`1.234,50 €`). Templates wrap amounts in `<span dir="ltr">`, so in
//!   right-to-left mail the symbol-first form shows the amount the way Arabic and Persian
//!   readers expect, and `-$5.00` stays in one piece. Gulf and Iranian currencies get their
//!   local symbol in `ar`/`fa` (`ر.س. 12.50`).
//! - Dates: in the timestamp's own UTC offset (the shop's or carrier's local time as sent).
//!   Month names for en and de; day/month/year (ar, with right-to-left marks) and
//!   year/month/day (fa) numbers for Arabic and Persian, which use the Gregorian calendar.
//!
//! Identifiers (order numbers, tracking numbers, coupon codes) are never passed through
//! here: they keep their ASCII digits so people can type them.

use time::{OffsetDateTime, UtcOffset};

use super::i18n::Lang;

/// How numbers are written: the language plus the tenant's digit choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbers {
    pub lang: Lang,
    /// Native digits for `ar` and `fa`; ignored for other languages.
    pub native_digits: bool,
}

impl Numbers {
    pub const ENGLISH: Numbers = Numbers {
        lang: Lang::En,
        native_digits: false,
    };

    fn native(self) -> bool {
        self.native_digits && matches!(self.lang, Lang::Ar | Lang::Fa)
    }

    /// The digit for zero, when not ASCII.
    fn zero(self) -> Option<u32> {
        match self.lang {
            Lang::Ar if self.native() => Some(0x0660),
            Lang::Fa if self.native() => Some(0x06F0),
            _ => None,
        }
    }

    fn group_separator(self) -> char {
        match self.lang {
            Lang::De => '.',
            _ if self.native() => '\u{66C}',
            _ => ',',
        }
    }

    fn decimal_separator(self) -> char {
        match self.lang {
            Lang::De => ',',
            _ if self.native() => '\u{66B}',
            _ => '.',
        }
    }

    /// Rewrites the ASCII digits of `s` in this locale's digits.
    pub fn digits(self, s: &str) -> String {
        match self.zero() {
            None => s.to_owned(),
            Some(zero) => s
                .chars()
                .map(|c| match c.to_digit(10) {
                    Some(d) if c.is_ascii_digit() => char::from_u32(zero + d).unwrap_or(c),
                    _ => c,
                })
                .collect(),
        }
    }

    fn group(self, n: u64) -> String {
        let digits = n.to_string();
        let sep = self.group_separator();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3 * 2);
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(sep);
            }
            out.push(c);
        }
        self.digits(&out)
    }

    /// A whole number with grouping: `12345` → `12,345` / `12.345` / `۱۲٬۳۴۵`.
    pub fn integer(self, n: i64) -> String {
        let sign = if n < 0 { "-" } else { "" };
        format!("{sign}{}", self.group(n.unsigned_abs()))
    }

    /// A decimal number as Rust prints it shortest, with this locale's separators.
    pub fn decimal(self, x: f64) -> String {
        if !x.is_finite() {
            return x.to_string();
        }
        let text = x.abs().to_string();
        let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
        let whole = whole
            .parse::<u64>()
            .map_or_else(|_| self.digits(whole), |w| self.group(w));
        let sign = if x < 0.0 { "-" } else { "" };
        if frac.is_empty() {
            format!("{sign}{whole}")
        } else {
            format!(
                "{sign}{whole}{}{}",
                self.decimal_separator(),
                self.digits(frac)
            )
        }
    }

    /// A percentage: `10%`, `10 %` (de), `١٠٪` / `۱۰٪` with native digits.
    pub fn percent(self, n: i64) -> String {
        let number = self.integer(n);
        match self.lang {
            Lang::De => format!("{number}\u{a0}%"),
            _ if self.native() => format!("{number}\u{66A}"),
            _ => format!("{number}%"),
        }
    }

    /// Money from minor units: `40495, "USD"` → `$404.95` (en), `404,95 $` (de).
    pub fn money(self, minor: i64, currency: &str) -> String {
        let code = currency.trim().to_ascii_uppercase();
        let exp = currency_exponent(&code);
        let abs = minor.unsigned_abs();
        let scale = 10u64.pow(exp);
        let whole = self.group(abs / scale);
        let frac = if exp == 0 {
            String::new()
        } else {
            let digits = format!("{:0width$}", abs % scale, width = exp as usize);
            format!("{}{}", self.decimal_separator(), self.digits(&digits))
        };
        let sign = if minor < 0 { "-" } else { "" };
        let number = format!("{whole}{frac}");
        match (self.lang, self.symbol(&code)) {
            (Lang::De, Some(symbol)) => format!("{sign}{number}\u{a0}{symbol}"),
            (Lang::De, None) => format!("{sign}{number}\u{a0}{code}"),
            (Lang::En, Some(symbol)) => format!("{sign}{symbol}{number}"),
            (Lang::En, None) => format!("{sign}{code} {number}"),
            (_, Some(symbol)) if symbol.chars().all(|c| !c.is_alphabetic()) => {
                format!("{sign}{symbol}{number}")
            }
            (_, Some(symbol)) => format!("{sign}{symbol}\u{a0}{number}"),
            (_, None) => format!("{sign}{code}\u{a0}{number}"),
        }
    }

    fn symbol(self, code: &str) -> Option<&'static str> {
        let local = match self.lang {
            Lang::Ar => match code {
                "AED" => Some("د.إ."),
                "SAR" => Some("ر.س."),
                "KWD" => Some("د.ك."),
                "BHD" => Some("د.ب."),
                "QAR" => Some("ر.ق."),
                "OMR" => Some("ر.ع."),
                "JOD" => Some("د.أ."),
                "EGP" => Some("ج.م."),
                _ => None,
            },
            Lang::Fa => match code {
                "IRR" => Some("ریال"),
                "AFN" => Some("؋"),
                _ => None,
            },
            _ => None,
        };
        local.or(match code {
            "USD" => Some("$"),
            "EUR" => Some("\u{20ac}"),
            "GBP" => Some("\u{a3}"),
            "JPY" => Some("\u{a5}"),
            _ => None,
        })
    }

    /// A timestamp in `style`, in its own UTC offset.
    pub fn date(self, ts: OffsetDateTime, style: DateStyle) -> String {
        let (y, m, d) = (ts.year(), u8::from(ts.month()), ts.day());
        let text = match style {
            DateStyle::Iso => format!("{y:04}-{m:02}-{d:02}"),
            DateStyle::Long => self.long_date(y, m, d),
            DateStyle::Time => self.time(ts),
            DateStyle::DateTime => {
                let sep = if matches!(self.lang, Lang::Ar | Lang::Fa) {
                    "\u{60c} "
                } else {
                    ", "
                };
                format!("{}{sep}{}", self.long_date(y, m, d), self.time(ts))
            }
            DateStyle::Zone => zone(ts.offset()),
        };
        self.digits(&text)
    }

    fn long_date(self, y: i32, m: u8, d: u8) -> String {
        let month = usize::from(m.saturating_sub(1)).min(11);
        match self.lang {
            Lang::En => format!("{} {d}, {y}", EN_MONTHS[month]),
            Lang::De => format!("{d}. {} {y}", DE_MONTHS[month]),
            // U+200F keeps day/month/year in reading order inside right-to-left text.
            Lang::Ar => format!("{d}\u{200f}/{m}\u{200f}/{y}"),
            Lang::Fa => format!("{y}/{m}/{d}"),
        }
    }

    fn time(self, ts: OffsetDateTime) -> String {
        let (h, min) = (ts.hour(), ts.minute());
        match self.lang {
            Lang::En => {
                let half = if h < 12 { "AM" } else { "PM" };
                let h12 = if h % 12 == 0 { 12 } else { h % 12 };
                format!("{h12}:{min:02} {half}")
            }
            Lang::Ar => {
                let half = if h < 12 { "ص" } else { "م" };
                let h12 = if h % 12 == 0 { 12 } else { h % 12 };
                format!("{h12}:{min:02} {half}")
            }
            Lang::De | Lang::Fa => format!("{h:02}:{min:02}"),
        }
    }
}

/// The formats of the `date` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateStyle {
    /// `2025-03-01` (the default, for tenant templates written before localisation).
    Iso,
    /// `March 1, 2025`, `1. März 2025`, `1/3/2025` (ar), `2025/3/1` (fa).
    Long,
    /// `2:30 PM`, `14:30`.
    Time,
    /// `March 1, 2025, 2:30 PM`.
    DateTime,
    /// The UTC offset: `UTC`, `UTC+2`, `UTC-5`, `UTC+5:30`.
    Zone,
}

impl DateStyle {
    pub const NAMES: &'static str = "iso, long, time, datetime, zone";

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "iso" => Self::Iso,
            "long" => Self::Long,
            "time" => Self::Time,
            "datetime" => Self::DateTime,
            "zone" => Self::Zone,
            _ => return None,
        })
    }
}

fn zone(offset: UtcOffset) -> String {
    if offset.is_utc() {
        return "UTC".to_owned();
    }
    let sign = if offset.is_negative() { '-' } else { '+' };
    let (h, m) = (
        offset.whole_hours().unsigned_abs(),
        offset.minutes_past_hour().unsigned_abs(),
    );
    if m == 0 {
        format!("UTC{sign}{h}")
    } else {
        format!("UTC{sign}{h}:{m:02}")
    }
}

const EN_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

const DE_MONTHS: [&str; 12] = [
    "Januar",
    "Februar",
    "März",
    "April",
    "Mai",
    "Juni",
    "Juli",
    "August",
    "September",
    "Oktober",
    "November",
    "Dezember",
];

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

/// Human name of a carrier slug: `ups` → `UPS`, `royal_mail` → `Royal Mail`; unknown
/// slugs are title-cased, anything that is not a slug is kept.
pub fn carrier_name(slug: &str) -> String {
    let known = match slug.trim().to_ascii_lowercase().as_str() {
        "ups" => "UPS",
        "usps" => "USPS",
        "fedex" => "FedEx",
        "dhl" => "DHL",
        "dhl_express" | "dhl-express" => "DHL Express",
        "dpd" => "DPD",
        "gls" => "GLS",
        "tnt" => "TNT",
        "hermes" => "Hermes",
        "evri" => "Evri",
        "royal_mail" | "royal-mail" => "Royal Mail",
        "canada_post" | "canada-post" => "Canada Post",
        "australia_post" | "australia-post" => "Australia Post",
        "postnl" => "PostNL",
        "la_poste" | "la-poste" => "La Poste",
        "aramex" => "Aramex",
        "smsa" => "SMSA Express",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_owned();
    }
    let slug = slug.trim();
    if !slug
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return slug.to_owned();
    }
    slug.split(['_', '-'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use time::format_description::well_known::Rfc3339;

    use super::*;

    fn n(lang: Lang, native_digits: bool) -> Numbers {
        Numbers {
            lang,
            native_digits,
        }
    }

    fn ts(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).unwrap()
    }

    #[test]
    fn english_money_keeps_iso_exponents() {
        let en = Numbers::ENGLISH;
        assert_eq!(en.money(40495, "USD"), "$404.95");
        assert_eq!(en.money(5, "usd"), "$0.05");
        assert_eq!(en.money(123456789, "EUR"), "\u{20ac}1,234,567.89");
        assert_eq!(en.money(1500, "JPY"), "\u{a5}1,500");
        assert_eq!(en.money(1234, "KWD"), "KWD 1.234");
        assert_eq!(en.money(-7, "KWD"), "-KWD 0.007");
        assert_eq!(en.money(i64::MIN, "USD"), "-$92,233,720,368,547,758.08");
    }

    #[test]
    fn german_money_puts_the_symbol_last() {
        let de = n(Lang::De, true);
        assert_eq!(de.money(123456789, "EUR"), "1.234.567,89\u{a0}\u{20ac}");
        assert_eq!(de.money(-1050, "USD"), "-10,50\u{a0}$");
        assert_eq!(de.money(1999, "CHF"), "19,99\u{a0}CHF");
        assert_eq!(de.money(1500, "JPY"), "1.500\u{a0}\u{a5}");
    }

    #[test]
    fn arabic_and_persian_money_with_and_without_native_digits() {
        assert_eq!(n(Lang::Ar, false).money(123456, "USD"), "$1,234.56");
        assert_eq!(n(Lang::Ar, true).money(123456, "USD"), "$١٬٢٣٤٫٥٦");
        assert_eq!(n(Lang::Ar, true).money(1250, "SAR"), "ر.س.\u{a0}١٢٫٥٠");
        assert_eq!(n(Lang::Ar, false).money(1234, "KWD"), "د.ك.\u{a0}1.234");
        assert_eq!(n(Lang::Fa, true).money(123456, "USD"), "$۱٬۲۳۴٫۵۶");
        assert_eq!(
            n(Lang::Fa, true).money(12000000, "IRR"),
            "ریال\u{a0}۱۲۰٬۰۰۰٫۰۰"
        );
        assert_eq!(n(Lang::Fa, false).money(-1999, "CHF"), "-CHF\u{a0}19.99");
        // Native digits are only for Arabic and Persian.
        assert_eq!(n(Lang::En, true).money(123456, "USD"), "$1,234.56");
    }

    #[test]
    fn numbers_and_percentages() {
        assert_eq!(Numbers::ENGLISH.integer(1234567), "1,234,567");
        assert_eq!(n(Lang::De, false).integer(-1234), "-1.234");
        assert_eq!(n(Lang::Fa, true).integer(1234), "۱٬۲۳۴");
        assert_eq!(n(Lang::Ar, true).integer(905), "٩٠٥");
        assert_eq!(n(Lang::Ar, false).integer(905), "905");
        assert_eq!(n(Lang::De, false).decimal(1234.5), "1.234,5");
        assert_eq!(n(Lang::Fa, true).decimal(-0.25), "-۰٫۲۵");
        assert_eq!(Numbers::ENGLISH.percent(10), "10%");
        assert_eq!(n(Lang::De, false).percent(10), "10\u{a0}%");
        assert_eq!(n(Lang::Fa, true).percent(15), "۱۵٪");
        assert_eq!(n(Lang::Ar, true).percent(15), "١٥٪");
        assert_eq!(n(Lang::Ar, false).percent(15), "15%");
    }

    #[test]
    fn dates_per_locale_in_their_own_offset() {
        let t = ts("2025-03-01T23:30:00-05:00");
        assert_eq!(Numbers::ENGLISH.date(t, DateStyle::Iso), "2025-03-01");
        assert_eq!(Numbers::ENGLISH.date(t, DateStyle::Long), "March 1, 2025");
        assert_eq!(Numbers::ENGLISH.date(t, DateStyle::Time), "11:30 PM");
        assert_eq!(
            Numbers::ENGLISH.date(t, DateStyle::DateTime),
            "March 1, 2025, 11:30 PM"
        );
        assert_eq!(Numbers::ENGLISH.date(t, DateStyle::Zone), "UTC-5");
        let de = n(Lang::De, false);
        assert_eq!(de.date(t, DateStyle::Long), "1. März 2025");
        assert_eq!(de.date(t, DateStyle::DateTime), "1. März 2025, 23:30");
        assert_eq!(n(Lang::Fa, true).date(t, DateStyle::Long), "۲۰۲۵/۳/۱");
        assert_eq!(n(Lang::Fa, false).date(t, DateStyle::Long), "2025/3/1");
        assert_eq!(n(Lang::Fa, true).date(t, DateStyle::Iso), "۲۰۲۵-۰۳-۰۱");
        assert_eq!(
            n(Lang::Ar, true).date(t, DateStyle::Long),
            "١\u{200f}/٣\u{200f}/٢٠٢٥"
        );
        assert_eq!(n(Lang::Ar, false).date(t, DateStyle::Time), "11:30 م");
        let midnight = ts("2025-03-01T00:05:00Z");
        assert_eq!(Numbers::ENGLISH.date(midnight, DateStyle::Time), "12:05 AM");
        assert_eq!(Numbers::ENGLISH.date(midnight, DateStyle::Zone), "UTC");
        assert_eq!(
            Numbers::ENGLISH.date(ts("2025-03-01T10:00:00+05:30"), DateStyle::Zone),
            "UTC+5:30"
        );
        assert_eq!(DateStyle::parse("long"), Some(DateStyle::Long));
        assert_eq!(DateStyle::parse("short"), None);
    }

    #[test]
    fn carrier_names() {
        assert_eq!(carrier_name("ups"), "UPS");
        assert_eq!(carrier_name("royal_mail"), "Royal Mail");
        assert_eq!(carrier_name("swiss-post"), "Swiss Post");
        assert_eq!(carrier_name("Correos Express"), "Correos Express");
    }
}
