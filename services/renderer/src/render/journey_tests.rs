//! Tests of the built-in post-purchase templates with the sample data in `samples/`,
//! rendered in English, Arabic and Persian (and German where it is cheap).

use serde_json::{Value, json};

use super::*;

/// The sample `RenderRequest.data` of a built-in template.
fn sample(template: &str) -> Value {
    sample_data(template).unwrap_or_else(|| panic!("no sample for {template}"))
}

#[test]
fn every_builtin_email_has_a_sample_and_nothing_else_does() {
    for name in BUILTIN_EMAILS {
        assert!(sample(name)["order"]["number"].is_string(), "{name}");
    }
    assert_eq!(SAMPLES.len(), BUILTIN_EMAILS.len());
    assert!(sample_data("layout").is_none());
}

/// `data` plus what the renderer adds: brand kit, sender identity, links.
fn with_brand(mut ctx: Value, locale: &str, native_digits: bool) -> Value {
    let rtl = matches!(locale, "ar" | "fa");
    ctx["brand"] = json!({
        "name": "Northwind Outfitters",
        "logo_url": "https://cdn.northwind.example/logo.png",
        "primary_color": "#0f766e",
        "text_color": "#1f2937",
        "background_color": "#f3f4f6",
        "direction": if rtl { "rtl" } else { "ltr" },
        "locale": locale,
        "native_digits": native_digits,
    });
    ctx["sender"] = json!({
        "from_name": "Northwind Outfitters",
        "physical_address": "100 Main Street\nPortland, OR 97201",
        "privacy_url": "https://northwind.example/privacy"
    });
    ctx["links"] = json!({});
    ctx
}

fn render_data(template: &str, data: Value, locale: &str, native_digits: bool) -> Rendered {
    TemplateSet::new(Vec::new())
        .unwrap()
        .render(template, &with_brand(data, locale, native_digits))
        .unwrap_or_else(|e| panic!("{template} in {locale}: {e}"))
}

fn render(template: &str, locale: &str, native_digits: bool) -> Rendered {
    render_data(template, sample(template), locale, native_digits)
}

fn assert_contains(haystack: &str, needles: &[&str]) {
    for needle in needles {
        assert!(haystack.contains(needle), "lacks {needle:?}:\n{haystack}");
    }
}

/// The `text-align` of the block that holds the first `needle`.
fn text_align_at(html: &str, needle: &str) -> String {
    let at = html
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} missing"));
    let style = html[..at].rfind("text-align:").unwrap();
    html[style + "text-align:".len()..]
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect()
}

/// Where buttons sit: the alignments of mrml's button cells.
fn button_alignments(html: &str) -> Vec<&str> {
    html.match_indices("<td align=\"")
        .filter_map(|(i, m)| {
            let rest = &html[i + m.len()..];
            let value = &rest[..rest.find('"')?];
            rest[value.len()..]
                .starts_with("\" vertical-align=\"middle\"")
                .then_some(value)
        })
        .collect()
}

fn has_persian_digits(s: &str) -> bool {
    s.chars().any(|c| ('\u{6f0}'..='\u{6f9}').contains(&c))
}

fn has_arabic_indic_digits(s: &str) -> bool {
    s.chars().any(|c| ('\u{660}'..='\u{669}').contains(&c))
}

#[test]
fn every_builtin_email_renders_its_sample_in_english_arabic_and_persian() {
    for template in BUILTIN_EMAILS {
        for (locale, native) in [("en", false), ("ar", true), ("fa", true), ("de", false)] {
            let r = render(template, locale, native);
            assert!(!r.subject.is_empty());
            assert!(r.preheader.is_some(), "{template} {locale} has a preheader");
            for garbage in ["{", "}", "<", ">", "&amp;", "&#", "None"] {
                assert!(
                    !r.text.contains(garbage) && !r.subject.contains(garbage),
                    "{template} {locale}: {garbage:?} in\n{}\n{}",
                    r.subject,
                    r.text
                );
            }
            assert!(r.html.contains(&format!(r#"<html lang="{locale}""#)));
            assert!(
                r.html.contains("https://cdn.northwind.example/logo.png"),
                "shop logo"
            );
            let arabic_script = r.text.chars().any(|c| ('\u{600}'..='\u{6ff}').contains(&c));
            if locale == "ar" || locale == "fa" {
                assert!(r.html.contains(r#"dir="rtl""#), "{template} {locale}");
                assert!(!r.html.contains("direction:ltr"), "{template} {locale}");
                assert!(arabic_script, "{template} {locale} speaks the language");
                let buttons = button_alignments(&r.html);
                assert!(
                    !buttons.is_empty() || *template == "order_cancelled",
                    "{template} has a button"
                );
                assert!(
                    buttons.iter().all(|a| *a == "right"),
                    "{template} {locale}: buttons start on the right"
                );
                // The greeting, a plain text block, sits on the right.
                let greeting = if locale == "ar" {
                    "مرحبًا"
                } else {
                    "سلام"
                };
                assert_eq!(text_align_at(&r.html, greeting), "right");
            } else {
                assert!(r.html.contains(r#"dir="ltr""#));
                assert!(!arabic_script, "{template} {locale}:\n{}", r.text);
                assert!(button_alignments(&r.html).iter().all(|a| *a == "left"));
            }
        }
    }
}

#[test]
fn shipping_confirmation_shows_carrier_tracking_parcel_items_and_destination() {
    let url = "https://www.ups.com/track?tracknum=1Z999AA10123456784";
    let r = render("shipping_confirmation", "en", false);
    assert_eq!(r.subject, "Your order #1001 is on its way");
    assert_contains(
        &r.html,
        &[
            "UPS",
            "1Z999AA10123456784",
            &format!(r#"href="{url}""#),
            "Track your parcel",
            "Merino Wool Sweater",
            "Leather Card Holder",
            "12 Harbor Street",
            "Portland, OR 97201",
        ],
    );
    // This parcel holds two of the order's three lines.
    assert!(!r.html.contains("Wool Socks"));
    assert_contains(
        &r.text,
        &[
            "Carrier\nUPS",
            &format!("Track your parcel ({url})"),
            "This parcel holds part of your order.",
            "Qty 2",
        ],
    );

    // No lines in the fulfillment: the order's; no tracking URL: no button; no carrier
    // name: the slug as a name.
    let mut data = sample("shipping_confirmation");
    data["fulfillment"]["lines"] = json!([]);
    data["fulfillment"]["tracking_urls"] = json!([]);
    data["fulfillment"]
        .as_object_mut()
        .unwrap()
        .remove("carrier_name");
    data["fulfillment"]["carrier"] = json!("royal_mail");
    let r = render_data("shipping_confirmation", data, "en", false);
    assert_contains(&r.text, &["Wool Socks", "Royal Mail", "1Z999AA10123456784"]);
    assert!(!r.text.contains("Track your parcel"));
    assert!(!r.text.contains("part of your order"));
}

#[test]
fn shipment_update_headline_follows_the_status_and_lists_the_merged_history() {
    let r = render("shipment_update", "en", false);
    assert_eq!(r.subject, "Your order #1001 is out for delivery");
    assert_contains(
        &r.text,
        &[
            "Your parcel is out for delivery",
            "Latest update from UPS\nOut for delivery\nOut for delivery today\nGresham, OR, US · March 5, 2025, 8:02 AM",
            "Estimated delivery: March 5, 2025",
            "Track your parcel (https://www.ups.com/track?tracknum=1Z999AA10123456784)",
            "Tracking history",
        ],
    );
    // Every history line, latest first.
    let history = &r.text[r.text.find("Tracking history").unwrap()..];
    let lines = [
        "March 5, 2025, 8:02 AM\nOut for delivery\nOut for delivery today",
        "March 5, 2025, 6:55 AM\nIn transit\nArrived at facility",
        "March 4, 2025, 2:15 AM\nIn transit\nDeparted from facility\nSalt Lake City, UT, US",
        "March 3, 2025, 6:40 PM\nIn transit\nOrigin scan",
        "March 3, 2025, 9:12 AM\nLabel created\nShipper created a label",
    ];
    let positions: Vec<usize> = lines
        .iter()
        .map(|l| {
            history
                .find(l)
                .unwrap_or_else(|| panic!("{l:?} in\n{history}"))
        })
        .collect();
    assert!(positions.is_sorted(), "latest first: {positions:?}");

    for (status, subject, headline) in [
        (
            "failed_attempt",
            "Delivery attempt failed for your order #1001",
            "Delivery attempt failed",
        ),
        (
            "available_for_pickup",
            "Your order #1001 is ready for pickup",
            "Your parcel is ready for pickup",
        ),
        (
            "exception",
            "A problem with the delivery of your order #1001",
            "There is a problem with your delivery",
        ),
        (
            "returned_to_sender",
            "Your order #1001 is being returned to us",
            "Your parcel is being returned to sender",
        ),
        (
            "in_transit",
            "News about your order #1001",
            "There is news about your parcel",
        ),
    ] {
        let mut data = sample("shipment_update");
        data["shipment"]["status"] = json!(status);
        let r = render_data("shipment_update", data, "en", false);
        assert_eq!(r.subject, subject);
        assert!(r.text.contains(headline), "{status}: {}", r.text);
    }

    // A single status: no history block.
    let mut data = sample("shipment_update");
    data["shipment"]["history"] = json!([data["shipment"]["history"][4]]);
    let r = render_data("shipment_update", data, "en", false);
    assert!(!r.text.contains("Tracking history"));
    assert!(r.text.contains("Out for delivery today"));

    // Localised headline and status labels.
    let fa = render("shipment_update", "fa", true);
    assert_contains(
        &fa.text,
        &[
            "مرسوله‌ی شما در مسیر تحویل است",
            "سابقه‌ی رهگیری",
            "برچسب ارسال صادر شد",
            "۲۰۲۵/۳/۵، ۰۸:۰۲",
        ],
    );
    let ar = render("shipment_update", "ar", false);
    assert_contains(&ar.text, &["شحنتك خرجت للتوصيل", "سجل التتبع", "8:02 ص"]);
    assert_eq!(text_align_at(&ar.html, "سجل التتبع"), "right");
    assert_eq!(text_align_at(&ar.html, "Arrived at facility"), "right");
}

#[test]
fn delivered_says_the_order_arrived_and_lists_the_items() {
    let r = render("delivered", "en", false);
    assert_eq!(r.subject, "Your order #1001 has arrived");
    assert_contains(
        &r.text,
        &[
            "Your order arrived!",
            "UPS delivered your order #1001 on March 5, 2025.",
            "Delivered to: Front door",
            "Merino Wool Sweater",
            "Leather Card Holder",
            "Wool Socks, 3-pack",
            "View your order (https://northwind.example/orders/1001/status?key=a1b2c3&ref=email)",
        ],
    );
    let ar = render("delivered", "ar", true);
    assert_contains(&ar.text, &["وصل طلبك!", "٥\u{200f}/٣\u{200f}/٢٠٢٥"]);
}

#[test]
fn review_request_asks_for_each_item_and_shows_the_coupon() {
    let status_url = "https://northwind.example/orders/1001/status?key=a1b2c3&ref=email";
    let r = render("review_request", "en", false);
    assert_eq!(r.subject, "How do you like your order #1001?");
    assert_eq!(r.text.matches("Write a review (").count(), 3, "{}", r.text);
    assert_contains(
        &r.text,
        &[
            "Write a review (https://northwind.example/products/merino-sweater)",
            "Write a review (https://northwind.example/products/leather-card-holder)",
            // The socks have no product page: the order's status page.
            &format!("Write a review ({status_url})"),
            "As a thank-you, here is something for your next order:",
            "15% off your next order",
            "Use this code at checkout:\nTHANKYOU15",
            "Valid until April 10, 2025.",
        ],
    );
    // The code is shown prominently and stays left to right.
    assert_contains(
        &r.html,
        &[r#"font-size:26px"#, r#"<span dir="ltr">THANKYOU15</span>"#],
    );

    let mut data = sample("review_request");
    data["offer"] = json!({ "kind": "free_shipping", "code": "SHIPFREE", "expires_at": "2025-04-30T23:59:59Z" });
    let r = render_data("review_request", data, "en", false);
    assert_contains(
        &r.text,
        &[
            "Free shipping on your next order",
            "SHIPFREE",
            "Valid until April 30, 2025.",
        ],
    );

    let mut data = sample("review_request");
    data["offer"] = Value::Null;
    let r = render_data("review_request", data, "en", false);
    assert!(!r.text.contains("Use this code"));
    assert!(!r.text.contains("thank-you"));

    let fa = render("review_request", "fa", true);
    assert_contains(
        &fa.text,
        &[
            "۱۵٪ تخفیف برای سفارش بعدی شما",
            "THANKYOU15",
            "معتبر تا ۲۰۲۵/۴/۱۰.",
        ],
    );
    let ar = render("review_request", "ar", true);
    assert_contains(
        &ar.text,
        &[
            "خصم ١٥٪ على طلبك القادم",
            "THANKYOU15",
            "صالح حتى ١٠\u{200f}/٤\u{200f}/٢٠٢٥.",
        ],
    );
}

#[test]
fn shipment_stalled_apologises_and_says_what_happens_next() {
    let r = render("shipment_stalled", "en", false);
    assert_eq!(r.subject, "Sorry, your order #1001 is delayed");
    assert_contains(
        &r.text,
        &[
            "We are sorry: your parcel is taking longer than expected",
            "UPS has not scanned your parcel for 6 days. The last scan was on March 4, 2025.",
            "Last known status: In transit · Salt Lake City, UT, US",
            "Track your parcel (https://www.ups.com/track?tracknum=1Z999AA10123456784)",
            "What happens next",
            "We have asked UPS to look into it.",
        ],
    );
    for (days, en, ar) in [
        (1, "for 1 day.", "منذ يوم واحد."),
        (2, "for 2 days.", "منذ يومين."),
        (6, "for 6 days.", "منذ 6 أيام."),
        (12, "for 12 days.", "منذ 12 يومًا."),
    ] {
        let mut data = sample("shipment_stalled");
        data["days_without_scan"] = json!(days);
        assert!(
            render_data("shipment_stalled", data.clone(), "en", false)
                .text
                .contains(en)
        );
        assert!(
            render_data("shipment_stalled", data, "ar", false)
                .text
                .contains(ar)
        );
    }
    let fa = render("shipment_stalled", "fa", true);
    assert!(fa.text.contains("۶ روز است که UPS"), "{}", fa.text);
}

#[test]
fn order_cancelled_shows_number_reason_items_and_refund() {
    let r = render("order_cancelled", "en", false);
    assert_eq!(r.subject, "Your order #1001 has been cancelled");
    assert_contains(
        &r.text,
        &[
            "Your order #1001 placed on March 1, 2025 has been cancelled.",
            "Reason: Some items are no longer in stock",
            "Merino Wool Sweater",
            "Qty 2 × $129.00",
            "$416.95",
            "we will refund $416.95 to your original payment method",
        ],
    );
    for (reason, shown) in [
        (json!("customer"), Some("Reason: Cancelled at your request")),
        (json!("declined"), Some("Reason: The payment was declined")),
        (
            json!("Address could not be verified"),
            Some("Reason: Address could not be verified"),
        ),
        (json!("fraud"), None),
        (json!("other"), None),
        (Value::Null, None),
    ] {
        let mut data = sample("order_cancelled");
        data["reason"] = reason.clone();
        let r = render_data("order_cancelled", data, "en", false);
        match shown {
            Some(line) => assert!(r.text.contains(line), "{reason}: {}", r.text),
            None => assert!(!r.text.contains("Reason:"), "{reason}: {}", r.text),
        }
    }
    let de = render("order_cancelled", "de", false);
    assert_contains(
        &de.text,
        &[
            "Ihre Bestellung #1001 vom 1. März 2025 wurde storniert.",
            "erstatten wir 416,95 $",
        ],
    );
}

#[test]
fn order_confirmation_has_cross_sell_and_the_same_day_offer() {
    let r = render("order_confirmation", "en", false);
    assert_contains(
        &r.text,
        &[
            "Frequently bought together",
            "Cashmere Beanie (https://northwind.example/products/cashmere-beanie)",
            "$59.00",
            "View product (https://northwind.example/products/merino-scarf)",
            "Wool Care Kit",
            "Today only\n10% off your next order",
            "TODAY10",
            "Expires tonight at 11:59 PM (UTC).",
        ],
    );
    assert_contains(
        &r.html,
        &["https://cdn.northwind.example/p/cashmere-beanie.jpg"],
    );
    let mut data = sample("order_confirmation");
    data["recommendations"] = json!([]);
    data["offer"] = Value::Null;
    let r = render_data("order_confirmation", data, "en", false);
    assert!(!r.text.contains("Frequently bought together"));
    assert!(!r.text.contains("Today only"));
}

#[test]
fn native_digits_only_when_the_brand_asks() {
    let fa = render("order_confirmation", "fa", true);
    assert_contains(
        &fa.text,
        &["$۴۱۶٫۹۵", "تعداد ۲ × $۱۲۹٫۰۰", "۲۰۲۵/۳/۱", "۱۰٪"],
    );
    assert!(!has_arabic_indic_digits(&fa.text));
    // Identifiers stay ASCII so they can be typed.
    assert_contains(&fa.text, &["#1001", "TODAY10"]);
    let fa_ascii = render("order_confirmation", "fa", false);
    assert!(!has_persian_digits(&fa_ascii.text), "{}", fa_ascii.text);
    assert_contains(&fa_ascii.text, &["$416.95", "2025/3/1"]);
    let ar = render("order_confirmation", "ar", true);
    assert_contains(&ar.text, &["$٤١٦٫٩٥", "١٠٪"]);
    assert!(!has_persian_digits(&ar.text));
    let ar_ascii = render("order_confirmation", "ar", false);
    assert!(!has_arabic_indic_digits(&ar_ascii.text));
    // Native digits mean nothing in English.
    assert!(
        render("order_confirmation", "en", true)
            .text
            .contains("$416.95")
    );
    // Amounts sit at the other end of their row: left in right-to-left mail.
    assert_eq!(text_align_at(&ar.html, "$٤١٦٫٩٥"), "left");
    // Left-to-right pieces stay whole inside right-to-left sentences.
    assert_contains(
        &ar.html,
        &[
            r#"<strong dir="ltr">#1001</strong>"#,
            r#"<span dir="auto">12 Harbor Street</span>"#,
            r#"<span dir="auto">100 Main Street, Portland, OR 97201</span>"#,
        ],
    );
}

#[test]
fn unsubscribe_link_only_when_the_renderer_gives_one() {
    let r = render("review_request", "fa", true);
    assert!(!r.text.contains("لغو اشتراک"));
    assert!(
        r.text
            .contains("حریم خصوصی (https://northwind.example/privacy)")
    );
    let mut ctx = with_brand(sample("review_request"), "fa", true);
    ctx["links"] = json!({ "unsubscribe": "https://t.northwind.example/u/abc" });
    let r = TemplateSet::new(Vec::new())
        .unwrap()
        .render("review_request", &ctx)
        .unwrap();
    assert!(
        r.text
            .contains("لغو اشتراک (https://t.northwind.example/u/abc)"),
        "{}",
        r.text
    );
}

#[test]
fn templates_tolerate_missing_and_null_optional_values() {
    for template in BUILTIN_EMAILS {
        // Nothing at all.
        let r = render_data(template, json!({}), "en", false);
        assert!(!r.subject.is_empty());
        // Every optional value null or empty.
        let mut data = sample(template);
        for key in [
            "customer",
            "offer",
            "recommendations",
            "previous",
            "reason",
            "days_without_scan",
            "last_scan_at",
        ] {
            if data.get(key).is_some() {
                data[key] = Value::Null;
            }
        }
        let order = data["order"].as_object_mut().unwrap();
        for key in ["shipping_address", "status_url", "customer", "placed_at"] {
            order.insert(key.into(), Value::Null);
        }
        for line in order["lines"].as_array_mut().unwrap() {
            for key in ["variant_title", "image_url", "url", "unit_price", "total"] {
                line[key] = Value::Null;
            }
        }
        if let Some(shipment) = data.get_mut("shipment").and_then(Value::as_object_mut) {
            for key in [
                "tracking_url",
                "message",
                "location",
                "estimated_delivery",
                "status_at",
            ] {
                shipment.insert(key.into(), Value::Null);
            }
            shipment.insert(
                "history".into(),
                json!([{ "status": "in_transit" }, { "at": null }]),
            );
        }
        if let Some(f) = data.get_mut("fulfillment").and_then(Value::as_object_mut) {
            for key in ["carrier", "carrier_name", "destination"] {
                f.insert(key.into(), Value::Null);
            }
            f.insert("tracking_urls".into(), json!([]));
        }
        for locale in ["en", "fa"] {
            let r = render_data(template, data.clone(), locale, true);
            assert!(!r.text.contains("None"), "{template}: {}", r.text);
        }
    }
}

#[test]
fn tenant_templates_can_use_the_blocks() {
    let source = r#"{% extends "layout" %}
{% from "partials/product" import product_row, product_grid %}
{% from "partials/offer" import offer_block %}
{% block subject %}{{ t("cross_sell.title") }}{% endblock %}
{% block content %}
{{ product_row(picks[0], cta="Buy now") }}
{{ product_grid(picks) }}
{{ offer_block(offer) }}
<mj-section><mj-column><mj-text>{{ 1234567 | number }} {{ 5 | percent }} {{ "2025-12-24T18:00:00+01:00" | date("datetime") }}</mj-text></mj-column></mj-section>
{% endblock %}"#;
    let set = TemplateSet::new(vec![("winback".into(), source.into())]).unwrap();
    let data = json!({
        "picks": [{ "title": "Merino Scarf", "url": "https://northwind.example/products/merino-scarf", "price": { "minor": 7900, "currency": "EUR" } }],
        "offer": { "kind": "coupon", "code": "COMEBACK", "percent_off": 20 },
    });
    let r = set
        .render("winback", &with_brand(data.clone(), "de", false))
        .unwrap();
    assert!(
        r.html.contains("79,00\u{a0}€"),
        "a no-break space between amount and symbol"
    );
    assert_eq!(r.subject, "Wird oft zusammen gekauft");
    assert_contains(
        &r.text,
        &[
            "Buy now (https://northwind.example/products/merino-scarf)",
            // The text part writes no-break spaces as spaces.
            "79,00 €",
            "Zum Produkt (https://northwind.example/products/merino-scarf)",
            "20 % Rabatt auf Ihre nächste Bestellung",
            "COMEBACK",
            "1.234.567 5 % 24. Dezember 2025, 18:00",
        ],
    );
    let r = set
        .render("winback", &with_brand(data, "fa", true))
        .unwrap();
    assert_contains(&r.text, &["€۷۹٫۰۰", "۱٬۲۳۴٬۵۶۷ ۵٪ ۲۰۲۵/۱۲/۲۴، ۱۸:۰۰"]);
}
