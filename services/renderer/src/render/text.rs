//! Plain-text alternative part: turns the final email HTML into readable text.
//!
//! Good enough for the `text/plain` part of a multipart email, not a general
//! HTML-to-text converter. It drops `<head>`, `<style>`, `<script>`, comments
//! (MSO conditional comments included, so Outlook-only markup is not repeated)
//! and any element hidden with an inline `display:none` (MJML's preheader div);
//! turns block ends, `<br>` and table rows into line breaks and table cells into
//! spaces; writes links as `text (url)` when the text is not already the URL;
//! writes image `alt` text; decodes entities; collapses whitespace and keeps at
//! most one blank line in a row.

use super::html::{self, Token, Tokenizer};

/// Elements that never have content or an end tag.
fn is_void(name: &str) -> bool {
    matches!(
        name,
        "area"
            | "base"
            | "br"
            | "col"
            | "embed"
            | "hr"
            | "img"
            | "input"
            | "link"
            | "meta"
            | "source"
            | "track"
            | "wbr"
    )
}

/// Elements whose whole content is skipped.
fn is_skipped(name: &str) -> bool {
    matches!(
        name,
        "head" | "title" | "style" | "script" | "noscript" | "template" | "xml"
    )
}

fn is_heading(name: &str) -> bool {
    matches!(name, "h1" | "h2" | "h3" | "h4" | "h5" | "h6")
}

/// Elements that start and end on their own line.
fn is_block(name: &str) -> bool {
    matches!(
        name,
        "div"
            | "tr"
            | "li"
            | "table"
            | "tbody"
            | "thead"
            | "tfoot"
            | "ul"
            | "ol"
            | "blockquote"
            | "center"
            | "section"
            | "article"
            | "header"
            | "footer"
            | "address"
            | "hr"
    )
}

/// An open `<a>`: where its text starts in the output and where it points.
struct OpenLink {
    href: Option<String>,
    text_start: usize,
}

struct Writer {
    out: String,
}

impl Writer {
    fn ends_with_newline(&self) -> bool {
        self.out.trim_end_matches([' ', '\t']).ends_with('\n')
    }

    /// Starts a new line unless already at the start of one.
    fn line_break(&mut self) {
        if !self.out.is_empty() && !self.ends_with_newline() {
            self.out.push('\n');
        }
    }

    /// Ends a paragraph: a line break followed by one blank line.
    fn paragraph_break(&mut self) {
        self.line_break();
        if !self.out.is_empty() && !self.out.trim_end_matches([' ', '\t']).ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    fn text(&mut self, raw: &str) {
        let decoded = html::decode_entities(raw);
        let mut last_space = self.out.ends_with([' ', '\n', '\t']);
        for c in decoded.chars() {
            if c.is_whitespace() {
                // Source whitespace (newlines included) is a single space in HTML.
                if !last_space {
                    self.out.push(' ');
                    last_space = true;
                }
            } else if !is_invisible(c) || (is_joiner(c) && self.out.ends_with(char::is_alphabetic))
            {
                self.out.push(c);
                last_space = false;
            }
        }
    }
}

/// Zero-width (non-)joiners: part of the spelling after a letter (Persian
/// `آماده‌سازی`), padding anywhere else.
fn is_joiner(c: char) -> bool {
    matches!(c, '\u{200c}' | '\u{200d}')
}

/// Zero-width and formatting characters used as preheader padding.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{feff}' | '\u{ad}' | '\u{34f}'
    )
}

/// Renders `html` as plain text for the `text/plain` part of an email.
pub fn html_to_text(html: &str) -> String {
    let mut w = Writer {
        out: String::with_capacity(html.len() / 4),
    };
    // Element being skipped (name, nesting depth of that name).
    let mut skipping: Option<(String, usize)> = None;
    let mut links: Vec<OpenLink> = Vec::new();

    for (_, token) in Tokenizer::new(html) {
        if let Some((skip_name, depth)) = skipping.as_mut() {
            match &token {
                Token::Start {
                    name,
                    self_closing: false,
                    ..
                } if name == skip_name => *depth += 1,
                Token::End { name } if name == skip_name => {
                    *depth -= 1;
                    if *depth == 0 {
                        skipping = None;
                    }
                }
                _ => {}
            }
            continue;
        }
        match token {
            Token::Text(text) => w.text(text),
            Token::Comment(_) | Token::Other(_) => {}
            Token::Start {
                name,
                attrs,
                self_closing,
                ..
            } => {
                let hidden = html::attr_value(attrs, "style")
                    .is_some_and(|s| html::is_hidden_style(&s))
                    || html::parse_attrs(attrs)
                        .iter()
                        .any(|a| a.name.eq_ignore_ascii_case("hidden"));
                if is_skipped(&name) || hidden {
                    if !self_closing && !is_void(&name) {
                        skipping = Some((name, 1));
                    }
                    continue;
                }
                match name.as_str() {
                    "br" => w.out.push('\n'),
                    "p" => w.line_break(),
                    n if is_heading(n) => w.paragraph_break(),
                    "li" => {
                        w.line_break();
                        w.out.push_str("- ");
                    }
                    "img" => {
                        if let Some(alt) = html::attr_value(attrs, "alt") {
                            let alt = alt.trim();
                            if !alt.is_empty() {
                                w.text(" ");
                                w.text(alt);
                                w.text(" ");
                            }
                        }
                    }
                    "a" if !self_closing => links.push(OpenLink {
                        href: html::attr_value(attrs, "href").map(|h| h.trim().to_owned()),
                        text_start: w.out.len(),
                    }),
                    n if is_block(n) => w.line_break(),
                    _ => {}
                }
            }
            Token::End { name } => match name.as_str() {
                "p" => w.paragraph_break(),
                n if is_heading(n) => w.paragraph_break(),
                "td" | "th" => w.text(" "),
                "a" => {
                    if let Some(link) = links.pop() {
                        close_link(&mut w, link);
                    }
                }
                n if is_block(n) => w.line_break(),
                _ => {}
            },
        }
    }
    finish(&w.out)
}

/// Appends ` (url)` after a link's text when the text does not already show the URL.
fn close_link(w: &mut Writer, link: OpenLink) {
    let Some(href) = link.href else { return };
    let lower = href.to_ascii_lowercase();
    let shown = ["http://", "https://", "mailto:", "tel:"]
        .iter()
        .any(|p| lower.starts_with(p));
    if !shown {
        return;
    }
    let text = w.out.get(link.text_start..).unwrap_or_default();
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() || same_target(&text, &href) {
        return;
    }
    let trimmed_len = w.out.trim_end().len();
    w.out.truncate(trimmed_len);
    w.out.push_str(" (");
    w.out.push_str(&href);
    w.out.push_str(") ");
}

/// Whether the visible link text is just the URL (give or take scheme or slash).
fn same_target(text: &str, href: &str) -> bool {
    let norm = |s: &str| {
        let s = s.trim();
        let lower = s.to_ascii_lowercase();
        let cut = ["mailto:", "tel:", "https://", "http://"]
            .iter()
            .find(|p| lower.starts_with(*p))
            .map_or(0, |p| p.len());
        s[cut..].trim_end_matches('/').to_owned()
    };
    norm(text).eq_ignore_ascii_case(&norm(href))
}

/// Trims every line, collapses inner runs of blanks, keeps at most one blank line.
fn finish(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut blank_run = 0usize;
    for line in raw.split('\n') {
        let line: String = line
            .split([' ', '\t', '\u{a0}', '\r'])
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if line.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
            if blank_run > 0 {
                out.push('\n');
            }
        }
        blank_run = 0;
        out.push_str(&line);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn drops_head_styles_scripts_and_comments() {
        let html = r#"<!doctype html><html><head><title>T</title><style>p{color:red}</style>
            <!--[if mso]><xml><o:OfficeDocumentSettings></o:OfficeDocumentSettings></xml><![endif]--></head>
            <body><script>alert(1)</script><!-- note --><p>Hello</p></body></html>"#;
        assert_eq!(html_to_text(html), "Hello");
    }

    #[test]
    fn line_breaks_cells_and_paragraphs() {
        let html = "<h1>Title</h1><p>One<br>Two</p><div>Three</div><table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table><ul><li>x</li><li>y</li></ul>";
        assert_eq!(
            html_to_text(html),
            "Title\n\nOne\nTwo\n\nThree\na b\nc\n- x\n- y"
        );
    }

    #[test]
    fn decodes_entities_and_collapses_whitespace() {
        let html = "<p>  Tom &amp; &quot;Jerry&quot;&nbsp;&#39;s   &#x263A;\n\n  cat &lt;3 </p>\n\n\n\n<p>end</p>";
        assert_eq!(
            html_to_text(html),
            "Tom & \"Jerry\" 's \u{263a} cat <3\n\nend"
        );
    }

    #[test]
    fn links_show_their_url_once() {
        let html = r##"<p><a href="https://shop.example/o?a=1&amp;b=2">View order</a>
            <a href="https://shop.example/">shop.example</a>
            <a href="mailto:help@shop.example">help@shop.example</a>
            <a href="#top">Top</a>
            <a href="https://x.example"><img src="x.png" alt=""></a></p>"##;
        assert_eq!(
            html_to_text(html),
            "View order (https://shop.example/o?a=1&b=2) shop.example help@shop.example Top"
        );
    }

    #[test]
    fn drops_hidden_elements_like_the_preheader() {
        let html = r#"<body><div style="display:none;font-size:1px;">Preview text</div><div>Preview text and more</div><span hidden>h</span></body>"#;
        assert_eq!(html_to_text(html), "Preview text and more");
    }

    #[test]
    fn keeps_joiners_inside_words_and_drops_padding() {
        let html = "<p>\u{622}\u{645}\u{627}\u{62f}\u{647}\u{200c}\u{633}\u{627}\u{632}\u{6cc}</p><p>a &#847;&zwnj;&nbsp;&zwnj; b\u{200b}c</p>";
        assert_eq!(
            html_to_text(html),
            "\u{622}\u{645}\u{627}\u{62f}\u{647}\u{200c}\u{633}\u{627}\u{632}\u{6cc}\n\na bc"
        );
    }

    #[test]
    fn writes_image_alt_text() {
        assert_eq!(
            html_to_text(r#"<div><img src="l.png" alt="Acme &amp; Co"/></div><p>Hi</p>"#),
            "Acme & Co\nHi"
        );
    }

    #[test]
    fn handles_mso_conditional_markup_from_mjml() {
        let html = concat!(
            "<!doctype html><html lang=\"en\" dir=\"auto\"><head><title>Subject</title>",
            "<!--[if !mso]><!--><meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\"><!--<![endif]-->",
            "<style type=\"text/css\">#outlook a { padding:0; } @media only screen and (min-width:480px) { .mj-column-per-100 { width:100% !important; } }</style>",
            "<!--[if mso]><noscript><xml><o:OfficeDocumentSettings><o:AllowPNG/></o:OfficeDocumentSettings></xml></noscript><![endif]-->",
            "</head><body style=\"word-spacing:normal;\">",
            "<div style=\"display:none;font-size:1px;color:#ffffff;line-height:1px;max-height:0px;max-width:0px;opacity:0;overflow:hidden;\">Your order is on its way</div>",
            "<div lang=\"en\" dir=\"auto\">",
            "<!--[if mso | IE]><table align=\"center\" border=\"0\" cellpadding=\"0\" cellspacing=\"0\" class=\"\" role=\"presentation\" style=\"width:600px;\" width=\"600\" ><tr><td style=\"line-height:0px;font-size:0px;mso-line-height-rule:exactly;\"><![endif]-->",
            "<div style=\"margin:0px auto;max-width:600px;\"><table align=\"center\" border=\"0\" cellpadding=\"0\" cellspacing=\"0\" role=\"presentation\" style=\"width:100%;\"><tbody><tr><td style=\"direction:ltr;font-size:0px;padding:20px 0;text-align:center;\">",
            "<!--[if mso | IE]><table role=\"presentation\" border=\"0\" cellpadding=\"0\" cellspacing=\"0\"><tr><td class=\"\" style=\"vertical-align:top;width:600px;\" ><![endif]-->",
            "<div class=\"mj-column-per-100 mj-outlook-group-fix\"><table border=\"0\" cellpadding=\"0\" cellspacing=\"0\" role=\"presentation\" width=\"100%\"><tbody><tr><td align=\"left\">",
            "<div style=\"font-family:Ubuntu, Helvetica, Arial, sans-serif;font-size:13px;line-height:1;text-align:left;color:#000000;\">Hello <b>Tom</b></div>",
            "</td></tr><tr><td align=\"center\"><table border=\"0\" cellpadding=\"0\" cellspacing=\"0\" role=\"presentation\"><tr><td>",
            "<a href=\"https://shop.example/status?id=1&amp;t=2\" style=\"display:inline-block;\" target=\"_blank\">Track it</a>",
            "</td></tr></table></td></tr></tbody></table></div>",
            "<!--[if mso | IE]></td></tr></table><![endif]-->",
            "</td></tr></tbody></table></div>",
            "<!--[if mso | IE]></td></tr></table><![endif]-->",
            "</div></body></html>",
        );
        let text = html_to_text(html);
        assert_eq!(
            text,
            "Hello Tom\nTrack it (https://shop.example/status?id=1&t=2)"
        );
    }
}
