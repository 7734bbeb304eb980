//! A small, forgiving HTML tokenizer plus entity decoding and attribute escaping,
//! shared by the text-part converter and the link rewriter.
//!
//! It is not a conforming HTML5 parser: it only knows enough to walk the markup
//! that MJML produces (and hand-written email HTML) without ever failing. Every
//! token carries its byte range in the source so callers can splice the input.

use std::borrow::Cow;
use std::ops::Range;

/// One piece of markup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// Character data between tags, entities still encoded.
    Text(&'a str),
    /// `<name attrs>`; `name` is ASCII-lowercased, `attrs` is the raw text after
    /// the name (without the closing `>` or `/>`), `attrs_start` its byte offset
    /// in the source.
    Start {
        name: String,
        attrs: &'a str,
        attrs_start: usize,
        self_closing: bool,
    },
    /// `</name>`, `name` ASCII-lowercased.
    End { name: String },
    /// `<!-- ... -->`, only when comments are opaque; the text between the markers.
    Comment(&'a str),
    /// Doctype, processing instruction, CDATA, or (with transparent comments) a
    /// comment marker such as `<!--[if mso]>` or `<![endif]-->`.
    Other(&'a str),
}

/// Walks a source string token by token.
#[derive(Debug)]
pub(crate) struct Tokenizer<'a> {
    src: &'a str,
    pos: usize,
    /// When false, `<!--` is treated like any `<!...>` declaration that ends at
    /// the next `>`, so markup inside conditional comments is tokenized too.
    opaque_comments: bool,
    /// Inside `<script>`/`<style>`: everything up to the matching end tag is text.
    raw_until: Option<&'static str>,
}

impl<'a> Tokenizer<'a> {
    /// Comments (including MSO conditional comments) come out as one `Comment` token.
    pub(crate) fn new(src: &'a str) -> Self {
        Self {
            src,
            pos: 0,
            opaque_comments: true,
            raw_until: None,
        }
    }

    /// Comment markers come out as `Other` tokens and their content is tokenized,
    /// so that markup Outlook sees inside `<!--[if mso]>` is visible.
    pub(crate) fn transparent_comments(src: &'a str) -> Self {
        Self {
            src,
            pos: 0,
            opaque_comments: false,
            raw_until: None,
        }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    /// Byte offset of the `>` that closes a tag starting at `from`, skipping
    /// quoted attribute values; `None` if the tag never closes.
    fn tag_end(&self, from: usize) -> Option<usize> {
        let bytes = self.src.as_bytes();
        let mut i = from;
        let mut quote: Option<u8> = None;
        let mut after_eq = false;
        while i < bytes.len() {
            let b = bytes[i];
            match quote {
                Some(q) => {
                    if b == q {
                        quote = None;
                    }
                }
                None => match b {
                    b'>' => return Some(i),
                    b'"' | b'\'' if after_eq => quote = Some(b),
                    _ => {}
                },
            }
            if quote.is_none() && !b.is_ascii_whitespace() {
                after_eq = b == b'=';
            }
            i += 1;
        }
        None
    }

    fn raw_text(&mut self, end_name: &'static str) -> (Range<usize>, Token<'a>) {
        let start = self.pos;
        let rest = self.rest();
        let needle = format!("</{end_name}");
        let end = find_ascii_ci(rest, &needle).map_or(self.src.len(), |i| start + i);
        self.pos = end;
        self.raw_until = None;
        (start..end, Token::Text(&self.src[start..end]))
    }
}

impl<'a> Iterator for Tokenizer<'a> {
    type Item = (Range<usize>, Token<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.src.len() {
            return None;
        }
        if let Some(end_name) = self.raw_until {
            let (range, token) = self.raw_text(end_name);
            if !range.is_empty() {
                return Some((range, token));
            }
        }
        let start = self.pos;
        let rest = self.rest();
        let bytes = rest.as_bytes();
        if bytes[0] != b'<' {
            let len = rest.find('<').unwrap_or(rest.len());
            self.pos += len;
            return Some((start..self.pos, Token::Text(&rest[..len])));
        }
        // A comment.
        if self.opaque_comments && rest.starts_with("<!--") {
            let (inner, end) = match rest[4..].find("-->") {
                Some(i) => (&rest[4..4 + i], 4 + i + 3),
                None => (&rest[4..], rest.len()),
            };
            self.pos += end;
            return Some((start..self.pos, Token::Comment(inner)));
        }
        // Doctype, conditional-comment markers, processing instructions.
        if bytes.len() > 1 && (bytes[1] == b'!' || bytes[1] == b'?') {
            let end = rest.find('>').map_or(rest.len(), |i| i + 1);
            self.pos += end;
            return Some((start..self.pos, Token::Other(&rest[..end])));
        }
        // End tag.
        if bytes.len() > 2 && bytes[1] == b'/' && bytes[2].is_ascii_alphabetic() {
            let name_len = name_len(&rest[2..]);
            let name = rest[2..2 + name_len].to_ascii_lowercase();
            let end = rest.find('>').map_or(rest.len(), |i| i + 1);
            self.pos += end;
            return Some((start..self.pos, Token::End { name }));
        }
        // Start tag.
        if bytes.len() > 1 && bytes[1].is_ascii_alphabetic() {
            let name_len = name_len(&rest[1..]);
            let name = rest[1..1 + name_len].to_ascii_lowercase();
            let attrs_start = start + 1 + name_len;
            let (attrs_end, end) = match self.tag_end(attrs_start) {
                Some(gt) => (gt, gt + 1),
                None => (self.src.len(), self.src.len()),
            };
            let mut attrs = &self.src[attrs_start..attrs_end];
            let self_closing = attrs.trim_end().ends_with('/');
            if self_closing {
                attrs = attrs.trim_end().trim_end_matches('/');
            }
            self.pos = end;
            if !self_closing {
                self.raw_until = match name.as_str() {
                    "script" => Some("script"),
                    "style" => Some("style"),
                    _ => None,
                };
            }
            return Some((
                start..end,
                Token::Start {
                    name,
                    attrs,
                    attrs_start,
                    self_closing,
                },
            ));
        }
        // A lone `<`: plain text up to the next `<`.
        let len = rest[1..].find('<').map_or(rest.len(), |i| i + 1);
        self.pos += len;
        Some((start..self.pos, Token::Text(&rest[..len])))
    }
}

fn name_len(s: &str) -> usize {
    s.bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'_'))
        .count()
}

/// Byte offset of the first ASCII-case-insensitive match of `needle` in `hay`.
pub(crate) fn find_ascii_ci(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return Some(0);
    }
    h.windows(n.len()).position(|w| w.eq_ignore_ascii_case(n))
}

/// Byte offset of the last ASCII-case-insensitive match of `needle` in `hay`.
pub(crate) fn rfind_ascii_ci(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.is_empty() || n.len() > h.len() {
        return None;
    }
    h.windows(n.len()).rposition(|w| w.eq_ignore_ascii_case(n))
}

/// One attribute of a start tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attr<'a> {
    /// As written (not lowercased).
    pub name: &'a str,
    /// Raw value without quotes, entities still encoded; `None` for a bare attribute.
    pub value: Option<&'a str>,
    /// Byte range of the whole value including its quotes, relative to the
    /// `attrs` string it was parsed from; empty for a bare attribute.
    pub value_range: Range<usize>,
}

/// Splits the raw attribute text of a start tag into attributes.
pub(crate) fn parse_attrs(attrs: &str) -> Vec<Attr<'_>> {
    let bytes = attrs.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        let name_start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && !matches!(bytes[i], b'=' | b'/')
        {
            i += 1;
        }
        if i == name_start {
            // A stray `=`: skip it.
            i += 1;
            continue;
        }
        let name = &attrs[name_start..i];
        let mut j = i;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if j < bytes.len() && bytes[j] == b'=' {
            j += 1;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            let value_start = j;
            if j < bytes.len() && (bytes[j] == b'"' || bytes[j] == b'\'') {
                let q = bytes[j];
                let close = attrs[j + 1..]
                    .find(q as char)
                    .map_or(attrs.len(), |k| j + 1 + k);
                let value = &attrs[j + 1..close];
                let end = (close + 1).min(attrs.len());
                out.push(Attr {
                    name,
                    value: Some(value),
                    value_range: value_start..end,
                });
                i = end;
            } else {
                while j < bytes.len() && !bytes[j].is_ascii_whitespace() {
                    j += 1;
                }
                out.push(Attr {
                    name,
                    value: Some(&attrs[value_start..j]),
                    value_range: value_start..j,
                });
                i = j;
            }
        } else {
            out.push(Attr {
                name,
                value: None,
                value_range: i..i,
            });
        }
    }
    out
}

/// The decoded value of the first attribute called `name` (ASCII case-insensitive).
pub(crate) fn attr_value(attrs: &str, name: &str) -> Option<String> {
    parse_attrs(attrs)
        .into_iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
        .and_then(|a| a.value)
        .map(|v| decode_entities(v).into_owned())
}

/// True when an inline `style` hides the element (`display:none`).
pub(crate) fn is_hidden_style(style: &str) -> bool {
    let compact: String = style
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    compact
        .split(';')
        .any(|decl| decl == "display:none" || decl == "display:none!important")
}

/// Escapes text for a double- or single-quoted HTML attribute value (or element text).
pub(crate) fn escape_attr(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Named entities worth knowing in email markup. Anything else is left as written.
fn named_entity(name: &str) -> Option<&'static str> {
    Some(match name {
        "amp" | "AMP" => "&",
        "lt" | "LT" => "<",
        "gt" | "GT" => ">",
        "quot" | "QUOT" => "\"",
        "apos" => "'",
        "nbsp" => "\u{a0}",
        "copy" => "\u{a9}",
        "reg" => "\u{ae}",
        "trade" => "\u{2122}",
        "hellip" => "\u{2026}",
        "mdash" => "\u{2014}",
        "ndash" => "\u{2013}",
        "lsquo" => "\u{2018}",
        "rsquo" => "\u{2019}",
        "ldquo" => "\u{201c}",
        "rdquo" => "\u{201d}",
        "laquo" => "\u{ab}",
        "raquo" => "\u{bb}",
        "bull" => "\u{2022}",
        "middot" => "\u{b7}",
        "times" => "\u{d7}",
        "euro" => "\u{20ac}",
        "pound" => "\u{a3}",
        "yen" => "\u{a5}",
        "cent" => "\u{a2}",
        "sol" => "/",
        "colon" => ":",
        "equals" => "=",
        "zwnj" => "\u{200c}",
        "zwj" => "\u{200d}",
        "shy" => "\u{ad}",
        "lrm" => "\u{200e}",
        "rlm" => "\u{200f}",
        _ => return None,
    })
}

/// Decodes named (a common subset), decimal (`&#39;`) and hex (`&#x2f;`) character
/// references. Malformed or unknown references are kept verbatim; invalid code
/// points become U+FFFD.
pub(crate) fn decode_entities(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        // References are short; look for the `;` within a small window.
        let semi = after
            .char_indices()
            .take(12)
            .find(|&(_, c)| c == ';' || c == '&' || c.is_whitespace() || c == '<')
            .filter(|&(_, c)| c == ';')
            .map(|(i, _)| i);
        let decoded = semi.and_then(|semi| {
            let body = &after[..semi];
            let ch = if let Some(num) = body.strip_prefix('#') {
                let code = match num.strip_prefix(['x', 'X']) {
                    Some(hex) if !hex.is_empty() => u32::from_str_radix(hex, 16).ok(),
                    Some(_) => None,
                    None if !num.is_empty() => num.parse::<u32>().ok(),
                    None => None,
                };
                code.map(|c| char::from_u32(c).unwrap_or('\u{fffd}').to_string())
            } else {
                named_entity(body).map(str::to_owned)
            };
            ch.map(|c| (c, semi))
        });
        match decoded {
            Some((text, semi)) => {
                out.push_str(&text);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decodes_entities() {
        assert_eq!(decode_entities("Tom &amp; Jerry"), "Tom & Jerry");
        assert_eq!(
            decode_entities("&lt;b&gt; &quot;x&quot; &#39;y&#39;"),
            "<b> \"x\" 'y'"
        );
        assert_eq!(decode_entities("a&nbsp;b"), "a\u{a0}b");
        assert_eq!(decode_entities("&#65;&#x42;&#X43;"), "ABC");
        assert_eq!(decode_entities("https:&#x2f;&#x2f;x"), "https://x");
        assert_eq!(
            decode_entities("a & b &unknown; &#xZZ; &"),
            "a & b &unknown; &#xZZ; &"
        );
        assert_eq!(decode_entities("&#1114112;"), "\u{fffd}");
    }

    #[test]
    fn escapes_attributes() {
        assert_eq!(
            escape_attr(r#"a&b<"c">'d'"#),
            "a&amp;b&lt;&quot;c&quot;&gt;&#39;d&#39;"
        );
        assert!(matches!(escape_attr("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn tokenizes_tags_comments_and_raw_text() {
        let src = r#"<!doctype html><p class="a>b" id=x>Hi<br/></p><!--[if mso]><b>x</b><![endif]--><style>a<b{}</style>"#;
        let tokens: Vec<_> = Tokenizer::new(src).map(|(_, t)| t).collect();
        assert!(matches!(tokens[0], Token::Other(_)));
        assert!(
            matches!(&tokens[1], Token::Start { name, attrs, .. } if name == "p" && attrs.contains("a>b"))
        );
        assert_eq!(tokens[2], Token::Text("Hi"));
        assert!(
            matches!(&tokens[3], Token::Start { name, self_closing: true, .. } if name == "br")
        );
        assert!(matches!(&tokens[4], Token::End { name } if name == "p"));
        assert!(matches!(
            tokens[5],
            Token::Comment("[if mso]><b>x</b><![endif]")
        ));
        assert!(matches!(&tokens[6], Token::Start { name, .. } if name == "style"));
        assert_eq!(tokens[7], Token::Text("a<b{}"));
        assert!(matches!(&tokens[8], Token::End { name } if name == "style"));
        assert_eq!(tokens.len(), 9);

        let transparent: Vec<_> =
            Tokenizer::transparent_comments("<!--[if mso]><b>x</b><![endif]-->")
                .map(|(_, t)| t)
                .collect();
        assert!(matches!(&transparent[1], Token::Start { name, .. } if name == "b"));
    }

    #[test]
    fn parses_attributes() {
        let attrs = parse_attrs(r#" href="a b" data-x='y' checked v=1 "#);
        let names: Vec<_> = attrs.iter().map(|a| a.name).collect();
        assert_eq!(names, ["href", "data-x", "checked", "v"]);
        assert_eq!(attrs[0].value, Some("a b"));
        assert_eq!(attrs[1].value, Some("y"));
        assert_eq!(attrs[2].value, None);
        assert_eq!(attrs[3].value, Some("1"));
        assert_eq!(
            &r#" href="a b" data-x='y' checked v=1 "#[attrs[0].value_range.clone()],
            "\"a b\""
        );
    }

    #[test]
    fn detects_hidden_style() {
        assert!(is_hidden_style("color:red; DISPLAY : none ;"));
        assert!(is_hidden_style("display:none!important"));
        assert!(!is_hidden_style("display:block"));
        assert!(!is_hidden_style("mso-display:none-ish"));
    }
}
