//! Languages the built-in templates speak, plural rules, and the message lookup behind
//! the `t("key", name=value)` template function.
//!
//! The catalogues live in [`messages`]: one `(key, text)` list per language, English
//! complete, the others falling back to English key by key. Texts are plain text (no
//! markup, no digits: numbers come in as parameters so they get the locale's digits) with
//! `{name}` placeholders. A key may have plural variants `key.zero|one|two|few|many`
//! (CLDR categories), chosen by the `count` parameter; the bare key is the `other` form.

mod messages;

/// A language of the built-in catalogues (shared with the tracker's pages). Unknown
/// locales fall back to English.
pub use tenancy::Lang;

fn catalogue(lang: Lang) -> &'static [(&'static str, &'static str)] {
    match lang {
        Lang::En => messages::EN,
        Lang::De => messages::DE,
        Lang::Ar => messages::AR,
        Lang::Fa => messages::FA,
    }
}

/// CLDR plural category of a whole number `n` in `lang`.
pub fn plural_category(lang: Lang, n: u64) -> &'static str {
    match lang {
        Lang::En | Lang::De => {
            if n == 1 {
                "one"
            } else {
                "other"
            }
        }
        // Persian nouns stay singular after a numeral: one form is enough.
        Lang::Fa => "other",
        Lang::Ar => match (n, n % 100) {
            (0, _) => "zero",
            (1, _) => "one",
            (2, _) => "two",
            (_, 3..=10) => "few",
            (_, 11..=99) => "many",
            _ => "other",
        },
    }
}

type Catalogue = &'static [(&'static str, &'static str)];

fn lookup(catalogue: Catalogue, key: &str) -> Option<&'static str> {
    catalogue
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, text)| *text)
}

fn lookup_counted(
    lang: Lang,
    catalogue: Catalogue,
    key: &str,
    count: Option<u64>,
) -> Option<&'static str> {
    let variant = count.and_then(|n| {
        let category = plural_category(lang, n);
        (category != "other")
            .then(|| lookup(catalogue, &format!("{key}.{category}")))
            .flatten()
    });
    variant.or_else(|| lookup(catalogue, key))
}

/// `key` from `catalogue` (written in `lang`), else from the English catalogue.
fn resolve(
    lang: Lang,
    catalogue: Catalogue,
    key: &str,
    count: Option<u64>,
) -> Option<&'static str> {
    lookup_counted(lang, catalogue, key, count)
        .or_else(|| lookup_counted(Lang::En, messages::EN, key, count))
}

/// The text of `key` in `lang`, else in English; `count` picks a plural variant.
pub fn message(lang: Lang, key: &str, count: Option<u64>) -> Option<&'static str> {
    resolve(lang, catalogue(lang), key, count)
}

/// One piece of a message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    /// A `{name}` placeholder.
    Param(&'a str),
}

/// Splits a message into literal text and `{name}` placeholders. A `{` that does not
/// open a well-formed `{name}` is literal text.
pub fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('}') {
            if open > 0 {
                out.push(Piece::Text(&rest[..open]));
            }
            out.push(Piece::Param(&after[..name_len]));
            rest = &after[name_len + 1..];
        } else {
            out.push(Piece::Text(&rest[..=open]));
            rest = after;
        }
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out
}

/// Every key of the English catalogue (the reference), for checks and tooling.
pub fn keys() -> impl Iterator<Item = &'static str> {
    messages::EN.iter().map(|(k, _)| *k)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const PLURAL_SUFFIXES: [&str; 5] = [".zero", ".one", ".two", ".few", ".many"];

    fn base(key: &str) -> &str {
        PLURAL_SUFFIXES
            .iter()
            .find_map(|s| key.strip_suffix(s))
            .unwrap_or(key)
    }

    fn params(text: &str) -> BTreeSet<&str> {
        pieces(text)
            .into_iter()
            .filter_map(|p| match p {
                Piece::Param(name) => Some(name),
                Piece::Text(_) => None,
            })
            .collect()
    }

    #[test]
    fn every_key_exists_in_every_catalogue() {
        for lang in Lang::ALL {
            let own: BTreeSet<&str> = catalogue(lang).iter().map(|(k, _)| *k).collect();
            for key in keys().filter(|k| base(k) == *k) {
                assert!(own.contains(key), "{} lacks {key:?}", lang.code());
            }
            for key in &own {
                assert!(
                    lookup(messages::EN, base(key)).is_some(),
                    "{} has {key:?}, which English does not know",
                    lang.code()
                );
            }
            assert_eq!(
                own.len(),
                catalogue(lang).len(),
                "{} repeats a key",
                lang.code()
            );
        }
    }

    #[test]
    fn translations_use_the_same_placeholders_as_english() {
        for lang in Lang::ALL {
            for (key, text) in catalogue(lang) {
                let reference = message(Lang::En, base(key), None).unwrap();
                let (mut own, mut wanted) = (params(text), params(reference));
                if base(key) != *key {
                    // A plural variant may spell its number out ("one day").
                    own.remove("count");
                    wanted.remove("count");
                }
                assert_eq!(
                    own,
                    wanted,
                    "{} {key:?} has other placeholders than English",
                    lang.code()
                );
            }
        }
    }

    #[test]
    fn texts_hold_no_markup_digits_or_stray_braces() {
        for lang in Lang::ALL {
            for (key, text) in catalogue(lang) {
                assert!(
                    !text.contains(['<', '>']),
                    "{} {key:?} contains markup",
                    lang.code()
                );
                assert!(
                    !text.chars().any(|c| c.is_ascii_digit()),
                    "{} {key:?} contains a digit",
                    lang.code()
                );
                let literal: String = pieces(text)
                    .into_iter()
                    .filter_map(|p| match p {
                        Piece::Text(t) => Some(t),
                        Piece::Param(_) => None,
                    })
                    .collect();
                assert!(
                    !literal.contains(['{', '}']),
                    "{} {key:?} has a malformed placeholder",
                    lang.code()
                );
                assert!(!text.trim().is_empty(), "{} {key:?} is blank", lang.code());
            }
        }
    }


    #[test]
    fn missing_keys_fall_back_to_english_and_unknown_keys_are_none() {
        assert_eq!(
            message(Lang::De, "footer.privacy", None),
            Some("Datenschutzerklärung")
        );
        // A catalogue that lacks a key: the English text stands in.
        static PARTIAL: Catalogue = &[("footer.privacy", "Datenschutz")];
        assert_eq!(
            resolve(Lang::De, PARTIAL, "footer.privacy", None),
            Some("Datenschutz")
        );
        assert_eq!(
            resolve(Lang::De, PARTIAL, "footer.unsubscribe", None),
            Some("Unsubscribe")
        );
        assert_eq!(
            resolve(Lang::Ar, PARTIAL, "shipment_stalled.body", Some(1)),
            message(Lang::En, "shipment_stalled.body", Some(1))
        );
        assert_eq!(message(Lang::Fa, "no.such.key", None), None);
    }

    #[test]
    fn plural_variants_follow_cldr_categories() {
        let en = |n| message(Lang::En, "shipment_stalled.body", Some(n)).unwrap();
        assert!(en(1).contains("{count} day."), "{}", en(1));
        assert!(en(6).contains("{count} days."), "{}", en(6));
        let ar = |n| message(Lang::Ar, "shipment_stalled.body", Some(n)).unwrap();
        assert!(ar(1).contains("يوم واحد"));
        assert!(ar(2).contains("يومين"));
        assert!(ar(5).contains("{count} أيام"));
        assert!(ar(12).contains("{count} يومًا"));
        assert!(ar(100).contains("{count} يوم."));
        assert_eq!(plural_category(Lang::Ar, 103), "few");
        assert_eq!(plural_category(Lang::Ar, 111), "many");
        assert_eq!(plural_category(Lang::Fa, 1), "other");
        assert_eq!(plural_category(Lang::De, 0), "other");
    }

    #[test]
    fn pieces_split_placeholders() {
        assert_eq!(
            pieces("Hi {name}, {x} {not closed {} }"),
            [
                Piece::Text("Hi "),
                Piece::Param("name"),
                Piece::Text(", "),
                Piece::Param("x"),
                Piece::Text(" {"),
                Piece::Text("not closed {"),
                Piece::Text("} }"),
            ]
        );
        assert_eq!(pieces("{a}{b}"), [Piece::Param("a"), Piece::Param("b")]);
        assert_eq!(pieces(""), []);
    }
}
