//! Money in minor units with an ISO 4217 currency. Never a float.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid money: {0}")]
pub struct InvalidMoney(pub String);

/// An ISO 4217 alphabetic code, uppercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct Currency(#[schemars(regex(pattern = r"^[A-Z]{3}$"))] String);

impl Currency {
    pub fn parse(s: &str) -> Result<Self, InvalidMoney> {
        let up = s.trim().to_ascii_uppercase();
        if up.len() == 3 && up.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(up))
        } else {
            Err(InvalidMoney(format!("currency {s:?} is not a 3-letter code")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digits after the decimal point (ISO 4217 minor unit).
    pub fn exponent(&self) -> u32 {
        match self.0.as_str() {
            "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
            | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            _ => 2,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An amount in the currency's minor unit (cents for USD, fils for KWD, yen for JPY).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn zero(currency: Currency) -> Self {
        Self { minor: 0, currency }
    }

    /// Parses a decimal string such as `"404.95"` or `"-3"` exactly, without floats.
    /// More fractional digits than the currency has are rejected unless they are zeros.
    pub fn parse_decimal(s: &str, currency: Currency) -> Result<Self, InvalidMoney> {
        let bad = || InvalidMoney(format!("{s:?} is not a decimal amount"));
        let t = s.trim();
        let (neg, t) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let exp = currency.exponent() as usize;
        let (kept, extra) = frac.split_at(frac.len().min(exp));
        if extra.bytes().any(|b| b != b'0') {
            return Err(InvalidMoney(format!("{s:?} has more than {exp} decimals for {currency}")));
        }
        let digits = format!("{int}{kept:0<exp$}");
        let minor: i64 = digits.parse().map_err(|_| bad())?;
        Ok(Self { minor: if neg { -minor } else { minor }, currency })
    }

    /// The amount as a plain decimal string (`"404.95"`), for display and templates.
    pub fn to_decimal_string(&self) -> String {
        let exp = self.currency.exponent();
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        if exp == 0 {
            return format!("{sign}{abs}");
        }
        let scale = 10u64.pow(exp);
        format!("{sign}{}.{:0width$}", abs / scale, abs % scale, width = exp as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::parse("usd").unwrap()
    }

    #[test]
    fn parses_exactly() {
        assert_eq!(Money::parse_decimal("404.95", usd()).unwrap().minor, 40495);
        assert_eq!(Money::parse_decimal("10", usd()).unwrap().minor, 1000);
        assert_eq!(Money::parse_decimal("0.5", usd()).unwrap().minor, 50);
        assert_eq!(Money::parse_decimal("-3.10", usd()).unwrap().minor, -310);
        assert_eq!(Money::parse_decimal("1.500", usd()).unwrap().minor, 150);
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(Money::parse_decimal("1.234", kwd).unwrap().minor, 1234);
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(Money::parse_decimal("1500", jpy).unwrap().minor, 1500);
    }

    #[test]
    fn rejects_what_is_not_money() {
        for bad in ["", "1e3", "1.2.3", "abc", "1.005", "--1", "99999999999999999999"] {
            assert!(Money::parse_decimal(bad, usd()).is_err(), "{bad:?} accepted");
        }
        assert!(Currency::parse("US").is_err());
    }

    #[test]
    fn formats_back() {
        for s in ["404.95", "0.05", "-3.10", "10.00"] {
            assert_eq!(Money::parse_decimal(s, usd()).unwrap().to_decimal_string(), s);
        }
    }
}
