//! The languages Postflow's own texts are written in: the built-in templates' catalogues,
//! the tracker's pages and the default topic labels.

/// A language of Postflow's own texts. Unknown locales fall back to English.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    En,
    De,
    Ar,
    Fa,
}

impl Lang {
    pub const ALL: [Lang; 4] = [Lang::En, Lang::De, Lang::Ar, Lang::Fa];

    /// The language of a BCP 47 tag (`fa-IR` → `Fa`, `de_AT` → `De`), English when unknown.
    pub fn from_tag(tag: &str) -> Self {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or_default();
        match primary.to_ascii_lowercase().as_str() {
            "de" => Self::De,
            "ar" => Self::Ar,
            "fa" => Self::Fa,
            _ => Self::En,
        }
    }

    /// The BCP 47 primary tag (`lang` attributes, messages).
    pub fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::De => "de",
            Self::Ar => "ar",
            Self::Fa => "fa",
        }
    }

    /// Written right to left.
    pub fn rtl(self) -> bool {
        matches!(self, Self::Ar | Self::Fa)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_map_to_their_primary_language_and_english_otherwise() {
        assert_eq!(Lang::from_tag("fa-IR"), Lang::Fa);
        assert_eq!(Lang::from_tag("AR"), Lang::Ar);
        assert_eq!(Lang::from_tag("de_AT"), Lang::De);
        assert_eq!(Lang::from_tag("en-GB"), Lang::En);
        assert_eq!(Lang::from_tag("pt-BR"), Lang::En);
        assert_eq!(Lang::from_tag(""), Lang::En);
        assert_eq!(Lang::ALL.map(Lang::code), ["en", "de", "ar", "fa"]);
        assert_eq!(Lang::ALL.map(Lang::rtl), [false, false, true, true]);
    }
}
