//! Link rewriting (click tracking) and open-pixel insertion on rendered email HTML.
//!
//! Both work on the final HTML string and leave every other byte untouched.
//! Markup inside MSO conditional comments is scanned too, because Outlook
//! renders it.

use super::html::{self, Token, Tokenizer};

/// Calls `f` with the decoded URL of every `<a href>` that points to `http(s)`;
/// `Some(new)` replaces the href (attribute-escaped, double-quoted), `None`
/// keeps it. `mailto:`, `tel:`, `#anchors`, relative links and URLs holding
/// template placeholders (`{{ }}`, `{% %}`, `%%...%%`, `*|...|*`, `[[...]]`)
/// are never passed to `f`.
pub fn rewrite_links(html: &str, mut f: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(html.len() + html.len() / 8);
    let mut copied = 0;
    for (_, token) in Tokenizer::transparent_comments(html) {
        let Token::Start {
            name,
            attrs,
            attrs_start,
            ..
        } = token
        else {
            continue;
        };
        if name != "a" {
            continue;
        }
        let Some(href) = html::parse_attrs(attrs)
            .into_iter()
            .find(|a| a.name.eq_ignore_ascii_case("href"))
        else {
            continue;
        };
        let Some(raw) = href.value else { continue };
        let url = html::decode_entities(raw);
        let url = url.trim();
        if !is_trackable(url) {
            continue;
        }
        let Some(new_url) = f(url) else { continue };
        let value_start = attrs_start + href.value_range.start;
        let value_end = attrs_start + href.value_range.end;
        out.push_str(&html[copied..value_start]);
        out.push('"');
        out.push_str(&html::escape_attr(&new_url));
        out.push('"');
        copied = value_end;
    }
    out.push_str(&html[copied..]);
    out
}

/// An absolute http(s) URL without template placeholders.
fn is_trackable(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let http = lower.starts_with("http://") || lower.starts_with("https://");
    let placeholder = ["{{", "}}", "{%", "%}", "%%", "*|", "|*", "[[", "]]"]
        .iter()
        .any(|p| url.contains(p));
    http && !placeholder
}

/// Inserts a 1×1 tracking image right before the last `</body>`, or at the end
/// when there is none. `pixel_url` is attribute-escaped.
pub fn insert_pixel(html: &str, pixel_url: &str) -> String {
    let img = format!(
        r#"<img src="{}" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px" />"#,
        html::escape_attr(pixel_url)
    );
    let at = html::rfind_ascii_ci(html, "</body>").unwrap_or(html.len());
    let mut out = String::with_capacity(html.len() + img.len());
    out.push_str(&html[..at]);
    out.push_str(&img);
    out.push_str(&html[at..]);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_http_links() {
        let html = concat!(
            r#"<p><a href="https://shop.example/o?a=1&amp;b=2" class="x">Order</a> "#,
            r#"<a class="y" href='http://shop.example/b'>B</a> "#,
            r#"<a href="mailto:help@shop.example">Mail</a> <a href="tel:+15551234">Call</a> "#,
            r##"<a href="#top">Top</a> <a href="/relative">Rel</a> <a name="anchor">N</a> "##,
            r#"<a href="https://shop.example/u/{{ token }}">Tpl</a> <a href="%%unsubscribe%%">Unsub</a> "#,
            r#"<link href="https://fonts.example/css" rel="stylesheet"></p>"#,
        );
        let mut seen = Vec::new();
        let out = rewrite_links(html, |url| {
            seen.push(url.to_owned());
            Some(format!("https://t.example/c?u={}&s=1", url.len()))
        });
        assert_eq!(
            seen,
            ["https://shop.example/o?a=1&b=2", "http://shop.example/b"]
        );
        assert!(out.contains(r#"<a href="https://t.example/c?u=30&amp;s=1" class="x">Order</a>"#));
        assert!(out.contains(r#"<a class="y" href="https://t.example/c?u=21&amp;s=1">B</a>"#));
        assert!(out.contains(r#"href="mailto:help@shop.example""#));
        assert!(out.contains(r#"href="tel:+15551234""#));
        assert!(out.contains(r##"href="#top""##));
        assert!(out.contains(r#"href="https://shop.example/u/{{ token }}""#));
        assert!(out.contains(r#"<link href="https://fonts.example/css""#));
    }

    #[test]
    fn none_keeps_the_link_and_escapes_replacements() {
        let html = r#"<a href="https://a.example/">A</a><A HREF="https://b.example/">B</A>"#;
        let out = rewrite_links(html, |url| {
            url.contains("b.example")
                .then(|| r#"https://t.example/?q="x"&y"#.to_owned())
        });
        assert_eq!(
            out,
            r#"<a href="https://a.example/">A</a><A HREF="https://t.example/?q=&quot;x&quot;&amp;y">B</A>"#
        );
    }

    #[test]
    fn rewrites_links_inside_mso_comments_and_decodes_numeric_entities() {
        let html = r#"<!--[if mso]><a href="https:&#x2f;&#x2f;o.example&#x2f;">O</a><![endif]--><a href=https://u.example>U</a>"#;
        let mut seen = Vec::new();
        let out = rewrite_links(html, |url| {
            seen.push(url.to_owned());
            Some("https://t.example/".to_owned())
        });
        assert_eq!(seen, ["https://o.example/", "https://u.example"]);
        assert_eq!(
            out,
            r#"<!--[if mso]><a href="https://t.example/">O</a><![endif]--><a href="https://t.example/">U</a>"#
        );
    }

    #[test]
    fn inserts_pixel_before_body_end() {
        let out = insert_pixel(
            "<html><body><p>x</p></BODY></html>",
            "https://t.example/o?id=1&s=2",
        );
        assert_eq!(
            out,
            r#"<html><body><p>x</p><img src="https://t.example/o?id=1&amp;s=2" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px" /></BODY></html>"#
        );
        let out = insert_pixel("<p>x</p>", "https://t.example/o");
        assert!(out.starts_with("<p>x</p><img src=\"https://t.example/o\""));
    }
}
