//! Tests of the whole pipeline (template → MJML → HTML + text) with the
//! built-in templates and small tenant templates.

use serde_json::{Value, json};

use super::*;

fn money(minor: i64) -> Value {
    json!({ "minor": minor, "currency": "USD" })
}

/// A realistic `order.placed` context: two lines, USD, total $404.95.
fn order_context() -> Value {
    json!({
        "brand": {
            "name": "Northwind Outfitters",
            "logo_url": "https://cdn.northwind.example/logo.png",
            "primary_color": "#0f766e",
            "text_color": "#1f2937",
            "background_color": "#f3f4f6",
            "direction": "ltr",
            "locale": "en"
        },
        "order": {
            "id": "5551234567",
            "number": "#1001",
            "currency": "USD",
            "placed_at": "2025-03-01T14:30:00-05:00",
            "customer": {
                "email": "ana@example.com",
                "first_name": "Ana",
                "last_name": "Silva",
                "locale": "en",
                "country": "US"
            },
            "lines": [
                {
                    "title": "Merino Wool Sweater",
                    "variant_title": "Navy / M",
                    "sku": "MWS-NAVY-M",
                    "quantity": 2,
                    "unit_price": money(12900),
                    "total": money(25800),
                    "image_url": "https://cdn.northwind.example/p/sweater.jpg",
                    "url": "https://northwind.example/products/merino-sweater"
                },
                {
                    "title": "Leather Card Holder",
                    "quantity": 1,
                    "unit_price": money(11900),
                    "total": money(11900)
                }
            ],
            "subtotal": money(37700),
            "shipping": money(995),
            "tax": money(3000),
            "discounts": money(1200),
            "total": money(40495),
            "shipping_address": {
                "name": "Ana Silva",
                "lines": ["12 Harbor Street", "Apt 4"],
                "city": "Portland",
                "region": "OR",
                "postal_code": "97201",
                "country": "US"
            },
            "status_url": "https://northwind.example/orders/1001/status?key=a1&ref=email",
            "test": false
        },
        "sender": {
            "from_name": "Northwind Outfitters",
            "physical_address": "100 Main Street\nPortland, OR 97201",
            "privacy_url": "https://northwind.example/privacy"
        },
        "links": {}
    })
}

fn defaults() -> TemplateSet {
    TemplateSet::new(Vec::new()).unwrap()
}

fn tenant(templates: &[(&str, &str)]) -> Result<TemplateSet, TemplateError> {
    TemplateSet::new(
        templates
            .iter()
            .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
            .collect(),
    )
}

const MINIMAL: &str = r#"<mjml><mj-head><mj-title>{{ subject }}</mj-title></mj-head><mj-body><mj-section><mj-column><mj-text>{{ body }}</mj-text></mj-column></mj-section></mj-body></mjml>"#;

#[test]
fn builtin_templates_are_listed() {
    let names: Vec<_> = defaults().names().map(str::to_owned).collect();
    assert_eq!(
        names,
        [
            "delivered",
            "layout",
            "order_cancelled",
            "order_confirmation",
            "partials/footer",
            "partials/offer",
            "partials/order",
            "partials/product",
            "partials/shipment",
            "review_request",
            "shipment_stalled",
            "shipment_update",
            "shipping_confirmation",
        ]
    );
}

#[test]
fn order_confirmation_renders_subject_lines_totals_and_text() {
    let r = defaults()
        .render("order_confirmation", &order_context())
        .unwrap();

    assert_eq!(r.subject, "Your order #1001 is confirmed");
    assert_eq!(
        r.preheader.as_deref(),
        Some("Thanks for shopping with Northwind Outfitters. Here is the summary of order #1001.")
    );

    for needle in [
        "Merino Wool Sweater",
        "Navy / M",
        "Leather Card Holder",
        "$258.00",
        "$119.00",
        "$377.00",
        "$9.95",
        "$30.00",
        "-$12.00",
        "$404.95",
        "Hi Ana,",
        // The placed_at date, written for the locale (was ISO before localisation).
        "March 1, 2025",
        "12 Harbor Street",
        "Portland, OR 97201",
        "View your order",
        "https://northwind.example/orders/1001/status?key=a1&amp;ref=email",
        "https://cdn.northwind.example/logo.png",
        "100 Main Street, Portland, OR 97201",
        "https://northwind.example/privacy",
        r#"dir="ltr""#,
        r#"lang="en""#,
    ] {
        assert!(r.html.contains(needle), "html lacks {needle:?}");
    }
    assert!(
        !r.html.contains("Unsubscribe"),
        "no unsubscribe link was given"
    );
    assert!(!r.html.contains("test order"));

    for needle in [
        "Northwind Outfitters",
        "Hi Ana,",
        "Merino Wool Sweater",
        "Navy / M",
        "Qty 2 × $129.00",
        "$258.00",
        "Leather Card Holder",
        "$119.00",
        "Subtotal",
        "$404.95",
        "View your order (https://northwind.example/orders/1001/status?key=a1&ref=email)",
        "Privacy policy (https://northwind.example/privacy)",
        "100 Main Street, Portland, OR 97201",
    ] {
        assert!(
            r.text.contains(needle),
            "text lacks {needle:?}:\n{}",
            r.text
        );
    }
    for garbage in [
        "<",
        ">",
        "{",
        "}",
        "&amp;",
        "&#",
        "mso",
        "@media",
        "font-family",
        ";",
        "Thanks for shopping",
    ] {
        assert!(
            !r.text.contains(garbage),
            "text contains {garbage:?}:\n{}",
            r.text
        );
    }
    assert!(!r.text.contains("\n\n\n"));
    assert_eq!(r.text, r.text.trim());
}

#[test]
fn customer_data_is_escaped_in_html_and_decoded_in_text() {
    let mut ctx = order_context();
    ctx["order"]["customer"]["first_name"] = json!(r#"<b>Tom & "Jerry"</b>"#);
    ctx["order"]["lines"][1]["title"] = json!("Salt & Pepper <Set>");
    let r = defaults().render("order_confirmation", &ctx).unwrap();
    assert!(
        r.html
            .contains("Hi &lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt;,"),
        "{}",
        r.html
    );
    assert!(!r.html.contains("<b>Tom"));
    assert!(r.html.contains("Salt &amp; Pepper &lt;Set&gt;"));
    assert!(r.text.contains(r#"Hi <b>Tom & "Jerry"</b>,"#), "{}", r.text);
    assert!(r.text.contains("Salt & Pepper <Set>"));
}

#[test]
fn subject_is_decoded() {
    let mut ctx = order_context();
    ctx["order"]["number"] = json!("A&B <1>");
    let r = defaults().render("order_confirmation", &ctx).unwrap();
    assert_eq!(r.subject, "Your order A&B <1> is confirmed");
}

#[test]
fn optional_fields_may_be_absent_or_null() {
    let mut ctx = order_context();
    let order = ctx["order"].as_object_mut().unwrap();
    order.remove("status_url");
    order.remove("shipping_address");
    order.remove("test");
    order["customer"] = json!({ "email": "x@example.com", "first_name": null });
    order["discounts"] = money(0);
    order["shipping"] = money(0);
    let lines = order["lines"].as_array_mut().unwrap();
    lines[0]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| ["title", "quantity", "unit_price", "total"].contains(&k.as_str()));
    ctx["brand"] = json!({ "name": "Northwind" });
    ctx.as_object_mut().unwrap().remove("links");
    ctx["sender"] = json!({ "from_name": "Northwind", "physical_address": "100 Main Street" });

    let r = defaults().render("order_confirmation", &ctx).unwrap();
    assert!(r.text.contains("Hi there,"), "{}", r.text);
    assert!(r.text.contains("Free"));
    assert!(!r.text.contains("Discount"));
    assert!(!r.text.contains("View your order"));
    assert!(!r.text.contains("Shipping to"));
    assert!(!r.text.contains("Privacy"));
    assert!(r.html.contains(r#"lang="en""#) && r.html.contains(r#"dir="ltr""#));
}

#[test]
fn footer_shows_unsubscribe_only_when_given_and_test_orders_are_marked() {
    let mut ctx = order_context();
    ctx["links"] = json!({ "unsubscribe": "https://northwind.example/u/abc" });
    ctx["order"]["test"] = json!(true);
    let r = defaults().render("order_confirmation", &ctx).unwrap();
    assert!(r.html.contains(r#"href="https://northwind.example/u/abc""#));
    assert!(r.text.contains("Privacy policy (https://northwind.example/privacy) · Unsubscribe (https://northwind.example/u/abc)"), "{}", r.text);
    assert!(!r.text.contains("Manage preferences"), "no preferences link was given");
    assert!(r.text.contains("This is a test order."));

    ctx["links"]["preferences"] = json!("https://northwind.example/p/abc");
    ctx["brand"]["locale"] = json!("de");
    let r = defaults().render("order_confirmation", &ctx).unwrap();
    assert!(r.html.contains(r#"href="https://northwind.example/p/abc""#));
    assert!(
        r.text.contains("Abmelden (https://northwind.example/u/abc) · Einstellungen verwalten (https://northwind.example/p/abc)"),
        "{}",
        r.text
    );
}

#[test]
fn rtl_brand_flips_direction_and_alignment() {
    let mut ctx = order_context();
    ctx["brand"]["direction"] = json!("rtl");
    ctx["brand"]["locale"] = json!("ar");
    ctx["order"]["lines"][0]["title"] = json!("قميص قطني");
    ctx["order"]["customer"]["first_name"] = json!("ليلى");
    let r = defaults().render("order_confirmation", &ctx).unwrap();
    assert!(
        r.html.contains(r#"<html lang="ar" dir="rtl""#),
        "root attributes missing"
    );
    assert_eq!(
        r.html.matches(r#"lang="ar" dir="rtl""#).count(),
        2,
        "<html> and the body <div> carry lang and dir"
    );
    assert!(r.html.contains("text-align:right"));
    assert!(r.html.contains("direction:rtl"));
    assert!(!r.html.contains("direction:ltr"));
    assert!(r.html.contains("قميص قطني"));
    assert!(r.text.contains("قميص قطني"));
    assert!(r.text.contains("ليلى"));
    // Amounts sit on the other side: left in RTL.
    let amount = r.html.find("$258.00").unwrap();
    let style = r.html[..amount].rfind("text-align:").unwrap();
    assert!(r.html[style..amount].starts_with("text-align:left"));
}

#[test]
fn syntax_error_names_template_and_line() {
    let source = "<mjml>\n<mj-head><mj-title>Hi</mj-title></mj-head>\n<mj-body>{% if x %}\n</mj-body></mjml>\n";
    let err = tenant(&[("welcome", source)]).unwrap_err();
    match &err {
        TemplateError::Syntax {
            template,
            line,
            message,
            ..
        } => {
            assert_eq!(template, "welcome");
            assert!(line.is_some_and(|l| l >= 3), "{err}");
            assert!(!message.is_empty());
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    let err = tenant(&[("welcome", "<mjml>\n  {{ order.number | }}\n</mjml>")]).unwrap_err();
    match &err {
        TemplateError::Syntax {
            template,
            line,
            column,
            ..
        } => {
            assert_eq!(template, "welcome");
            assert_eq!(*line, Some(2));
            assert!(column.is_some(), "{err}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("syntax error in template \"welcome\" at line 2"),
        "{err}"
    );
}

#[test]
fn unknown_variable_names_variable_template_and_line() {
    let source = "<mjml>\n<mj-head><mj-title>Order {{ order.number }}</mj-title></mj-head>\n<mj-body><mj-section><mj-column>\n<mj-text>{{ order.numbr }}</mj-text>\n</mj-column></mj-section></mj-body></mjml>";
    let set = tenant(&[("shipped", source)]).unwrap();
    let err = set.render("shipped", &order_context()).unwrap_err();
    match &err {
        TemplateError::Render {
            template,
            line,
            message,
        } => {
            assert_eq!(template, "shipped");
            assert_eq!(*line, Some(4));
            assert!(message.contains("order.numbr"), "{message}");
        }
        other => panic!("expected a render error, got {other:?}"),
    }
    assert!(err.to_string().contains("at line 4"), "{err}");

    // In a partial, the error names the partial.
    let set = tenant(&[(
        "partials/footer",
        "\n<mj-section><mj-column><mj-text>{{ sender.nmae }}</mj-text></mj-column></mj-section>",
    )])
    .unwrap();
    match set
        .render("order_confirmation", &order_context())
        .unwrap_err()
    {
        TemplateError::Render {
            template,
            line,
            message,
        } => {
            assert_eq!(template, "partials/footer");
            assert_eq!(line, Some(2));
            assert!(message.contains("sender.nmae"), "{message}");
            assert!(message.contains(r#"included from "layout""#), "{message}");
        }
        other => panic!("expected a render error, got {other:?}"),
    }
}

#[test]
fn missing_subject_is_an_error() {
    let set = tenant(&[
        ("no_title", "<mjml><mj-body><mj-section><mj-column><mj-text>x</mj-text></mj-column></mj-section></mj-body></mjml>"),
        ("blank_title", MINIMAL),
    ])
    .unwrap();
    let ctx = json!({ "subject": "  ", "body": "x" });
    for name in ["no_title", "blank_title"] {
        assert_eq!(
            set.render(name, &ctx).unwrap_err(),
            TemplateError::MissingSubject {
                template: name.to_owned()
            }
        );
    }
}

#[test]
fn invalid_mjml_and_unknown_template_are_errors() {
    let set = tenant(&[(
        "broken",
        "<mjml><mj-head><mj-title>x</mj-title></mj-head><mj-body><mj-section></mj-body></mjml>",
    )])
    .unwrap();
    match set.render("broken", &json!({})).unwrap_err() {
        TemplateError::Mjml { template, message } => {
            assert_eq!(template, "broken");
            assert!(!message.is_empty());
        }
        other => panic!("expected an mjml error, got {other:?}"),
    }
    assert_eq!(
        set.render("nope", &json!({})).unwrap_err(),
        TemplateError::NotFound {
            template: "nope".into()
        }
    );
}

#[test]
fn tenant_template_overrides_builtin() {
    let set = tenant(&[("order_confirmation", MINIMAL)]).unwrap();
    let r = set
        .render(
            "order_confirmation",
            &json!({ "subject": "Danke!", "body": "Bestellung" }),
        )
        .unwrap();
    assert_eq!(r.subject, "Danke!");
    assert_eq!(r.text, "Bestellung");
    assert_eq!(
        set.names().filter(|n| *n == "order_confirmation").count(),
        1
    );

    // Overriding a partial changes the built-in template that includes it.
    let footer = r#"<mj-section><mj-column><mj-text>Custom footer for {{ sender.from_name }}</mj-text></mj-column></mj-section>"#;
    let set = tenant(&[("partials/footer", footer)]).unwrap();
    let r = set.render("order_confirmation", &order_context()).unwrap();
    assert!(r.text.contains("Custom footer for Northwind Outfitters"));
    assert!(!r.text.contains("Privacy policy"));
}

#[test]
fn tenant_templates_can_extend_the_layout() {
    let shipped = r#"{% extends "layout" %}
{% block subject %}Order {{ order.number }} has shipped{% endblock %}
{% block content %}<mj-section><mj-column><mj-text>On its way, {{ order.customer.first_name | name_or("friend") }}!</mj-text><mj-text mj-class="pf-end">{{ order.total | money }}</mj-text></mj-column></mj-section>{% endblock %}"#;
    let set = tenant(&[("order_shipped", shipped)]).unwrap();
    let r = set.render("order_shipped", &order_context()).unwrap();
    assert_eq!(r.subject, "Order #1001 has shipped");
    assert_eq!(r.preheader, None);
    assert!(r.text.contains("On its way, Ana!"));
    assert!(r.text.contains("$404.95"));
    assert!(r.text.contains("Privacy policy"), "layout footer included");
}

#[test]
fn link_rewriting_and_pixel_on_rendered_email() {
    let mut ctx = order_context();
    ctx["links"] = json!({ "unsubscribe": "https://northwind.example/u/abc" });
    let r = defaults().render("order_confirmation", &ctx).unwrap();
    let mut seen = Vec::new();
    let html = links::rewrite_links(&r.html, |url| {
        seen.push(url.to_owned());
        (!url.contains("/u/")).then(|| format!("https://t.example/c/{}", seen.len()))
    });
    assert!(
        seen.contains(&"https://northwind.example/orders/1001/status?key=a1&ref=email".to_owned())
    );
    assert!(seen.contains(&"https://northwind.example/products/merino-sweater".to_owned()));
    assert!(seen.iter().all(|u| u.starts_with("https://")));
    assert!(!html.contains("https://northwind.example/orders/1001/status"));
    assert!(html.contains(r#"href="https://northwind.example/u/abc""#));
    let html = links::insert_pixel(&html, "https://t.example/o/1");
    assert!(html.contains(r#"<img src="https://t.example/o/1" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px" /></body>"#));
    let text = text::html_to_text(&html);
    assert!(
        text.contains("View your order (https://t.example/c/"),
        "{text}"
    );
}

#[test]
fn tenant_templates_can_include_partials() {
    let source = r#"<mjml><mj-head><mj-title>Hello</mj-title></mj-head><mj-body>{% include "partials/footer" %}</mj-body></mjml>"#;
    let set = tenant(&[("plain", source)]).unwrap();
    let r = set.render("plain", &order_context()).unwrap();
    assert!(
        r.text.contains("100 Main Street, Portland, OR 97201"),
        "{}",
        r.text
    );
}

#[test]
fn template_set_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TemplateSet>();
}
