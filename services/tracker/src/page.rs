//! The pages recipients see (pure): the preferences page and the unsubscribe
//! confirmation, in the recipient's language (en, de, ar, fa; English otherwise), right to
//! left for Arabic and Persian.
//!
//! Small, accessible and phone-sized: one column, system fonts, a visible label on every
//! control, 44-pixel touch targets, a visible focus ring, the save result announced
//! (`role="status"`). Addresses, shop names and topic labels are isolated (`<bdi>`) so a
//! left-to-right address reads right inside right-to-left text. No scripts, no external
//! resources.

/// A language the pages speak (the built-in templates' languages).
pub use tenancy::Lang;

fn catalogue(lang: Lang) -> &'static [(&'static str, &'static str)] {
    match lang {
        Lang::En => EN,
        Lang::De => DE,
        Lang::Ar => AR,
        Lang::Fa => FA,
    }
}

/// The texts, with `{shop}` and `{email}` placeholders. Every language has every key
/// (checked by a test).
const EN: &[(&str, &str)] = &[
    ("preferences.title", "Email preferences"),
    ("preferences.intro", "Choose which emails {shop} sends to {email}."),
    ("preferences.topics", "Emails I want"),
    ("preferences.all", "All marketing email"),
    ("preferences.leave_all", "Unsubscribe from all marketing email"),
    ("preferences.leave_all_hint", "Order and shipping emails still arrive."),
    ("preferences.save", "Save preferences"),
    ("preferences.saved", "Your preferences are saved."),
    ("preferences.saved_all_out", "Your preferences are saved. You will not receive marketing email from {shop}."),
    ("unsubscribe.title", "Unsubscribe"),
    ("unsubscribe.question", "Stop marketing email from {shop} to {email}?"),
    ("unsubscribe.button", "Unsubscribe"),
    ("unsubscribe.done_title", "You are unsubscribed"),
    ("unsubscribe.done", "You will not receive marketing email from {shop} any more. Order and shipping emails still arrive."),
    ("unsubscribe.manage", "Choose which emails you get instead"),
];

const DE: &[(&str, &str)] = &[
    ("preferences.title", "E-Mail-Einstellungen"),
    ("preferences.intro", "Wählen Sie, welche E-Mails {shop} an {email} sendet."),
    ("preferences.topics", "Diese E-Mails möchte ich erhalten"),
    ("preferences.all", "Alle Werbe-E-Mails"),
    ("preferences.leave_all", "Von allen Werbe-E-Mails abmelden"),
    ("preferences.leave_all_hint", "Bestell- und Versand-E-Mails erhalten Sie weiterhin."),
    ("preferences.save", "Einstellungen speichern"),
    ("preferences.saved", "Ihre Einstellungen sind gespeichert."),
    ("preferences.saved_all_out", "Ihre Einstellungen sind gespeichert. Sie erhalten keine Werbe-E-Mails von {shop}."),
    ("unsubscribe.title", "Abmelden"),
    ("unsubscribe.question", "Keine Werbe-E-Mails mehr von {shop} an {email} senden?"),
    ("unsubscribe.button", "Abmelden"),
    ("unsubscribe.done_title", "Sie sind abgemeldet"),
    ("unsubscribe.done", "Sie erhalten keine Werbe-E-Mails mehr von {shop}. Bestell- und Versand-E-Mails erhalten Sie weiterhin."),
    ("unsubscribe.manage", "Stattdessen auswählen, welche E-Mails Sie erhalten"),
];

const AR: &[(&str, &str)] = &[
    ("preferences.title", "تفضيلات البريد الإلكتروني"),
    ("preferences.intro", "اختر الرسائل التي يرسلها {shop} إلى {email}."),
    ("preferences.topics", "الرسائل التي أريدها"),
    ("preferences.all", "جميع الرسائل التسويقية"),
    ("preferences.leave_all", "إلغاء الاشتراك في جميع الرسائل التسويقية"),
    ("preferences.leave_all_hint", "ستظل رسائل الطلبات والشحن تصلك."),
    ("preferences.save", "حفظ التفضيلات"),
    ("preferences.saved", "تم حفظ تفضيلاتك."),
    ("preferences.saved_all_out", "تم حفظ تفضيلاتك. لن تصلك رسائل تسويقية من {shop}."),
    ("unsubscribe.title", "إلغاء الاشتراك"),
    ("unsubscribe.question", "هل تريد إيقاف الرسائل التسويقية من {shop} إلى {email}؟"),
    ("unsubscribe.button", "إلغاء الاشتراك"),
    ("unsubscribe.done_title", "تم إلغاء اشتراكك"),
    ("unsubscribe.done", "لن تصلك رسائل تسويقية من {shop} بعد الآن. ستظل رسائل الطلبات والشحن تصلك."),
    ("unsubscribe.manage", "اختر الرسائل التي تريدها بدلاً من ذلك"),
];

const FA: &[(&str, &str)] = &[
    ("preferences.title", "تنظیمات ایمیل"),
    ("preferences.intro", "انتخاب کنید {shop} چه ایمیل‌هایی به {email} بفرستد."),
    ("preferences.topics", "ایمیل‌هایی که می‌خواهم"),
    ("preferences.all", "همه‌ی ایمیل‌های تبلیغاتی"),
    ("preferences.leave_all", "لغو اشتراک همه‌ی ایمیل‌های تبلیغاتی"),
    ("preferences.leave_all_hint", "ایمیل‌های سفارش و ارسال همچنان می‌رسند."),
    ("preferences.save", "ذخیره‌ی تنظیمات"),
    ("preferences.saved", "تنظیمات شما ذخیره شد."),
    ("preferences.saved_all_out", "تنظیمات شما ذخیره شد. دیگر ایمیل تبلیغاتی از {shop} دریافت نمی‌کنید."),
    ("unsubscribe.title", "لغو اشتراک"),
    ("unsubscribe.question", "ایمیل‌های تبلیغاتی {shop} به {email} متوقف شود؟"),
    ("unsubscribe.button", "لغو اشتراک"),
    ("unsubscribe.done_title", "اشتراک شما لغو شد"),
    ("unsubscribe.done", "دیگر ایمیل تبلیغاتی از {shop} دریافت نمی‌کنید. ایمیل‌های سفارش و ارسال همچنان می‌رسند."),
    ("unsubscribe.manage", "به‌جای آن، ایمیل‌هایی را که می‌خواهید انتخاب کنید"),
];

/// The text of `key` in `lang`, else in English, else the key.
fn text(lang: Lang, key: &'static str) -> &'static str {
    let find = |c: &'static [(&'static str, &'static str)]| c.iter().find(|(k, _)| *k == key).map(|(_, t)| *t);
    find(catalogue(lang)).or_else(|| find(EN)).unwrap_or(key)
}

/// `key` in `lang` as HTML, with `{shop}` and `{email}` filled in (escaped and isolated).
fn say(lang: Lang, key: &'static str, shop: &str, email: &str) -> String {
    escape(text(lang, key))
        .replace("{shop}", &format!("<bdi>{}</bdi>", escape(shop)))
        .replace("{email}", &format!("<bdi dir=\"ltr\">{}</bdi>", escape(email)))
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

const STYLE: &str = "body{margin:0;background:#f3f4f6;color:#1f2937;font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,\"Noto Sans\",\"Noto Sans Arabic\",Tahoma,sans-serif}\
main{box-sizing:border-box;max-width:34rem;margin:0 auto;padding:2rem 1rem}\
h1{font-size:1.5rem;line-height:1.25;margin:0 0 .25rem}\
.shop{color:#4b5563;margin:0 0 1.5rem}\
fieldset{border:1px solid #d1d5db;border-radius:.5rem;background:#fff;margin:0 0 1rem;padding:.5rem 1rem}\
legend{font-weight:600;padding:0 .25rem}\
label{display:flex;align-items:center;gap:.75rem;min-height:44px;cursor:pointer}\
input[type=checkbox]{flex:none;width:1.25rem;height:1.25rem;margin:0}\
.hint{color:#4b5563;font-size:.875rem;margin:0 0 .5rem}\
button{font:inherit;min-height:44px;padding:.625rem 1.5rem;border:0;border-radius:.5rem;background:#111827;color:#fff;cursor:pointer}\
a{color:#1d4ed8}\
:focus-visible{outline:3px solid #2563eb;outline-offset:2px}\
.status{background:#ecfdf5;border:1px solid #059669;border-radius:.5rem;padding:.75rem 1rem;margin:0 0 1rem}";

/// The document around `body`, in `lang` and its direction.
fn document(lang: Lang, title: &str, shop: &str, body: &str) -> String {
    let dir = if lang.rtl() { "rtl" } else { "ltr" };
    format!(
        "<!doctype html>\n<html lang=\"{lang}\" dir=\"{dir}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta name=\"robots\" content=\"noindex\">\
         <title>{title} · {shop}</title><style>{STYLE}</style></head>\
         <body><main><h1>{title}</h1><p class=\"shop\"><bdi>{shop}</bdi></p>{body}</main></body></html>\n",
        lang = lang.code(),
        title = escape(title),
        shop = escape(shop),
    )
}

/// One topic as the page lists it.
#[derive(Debug, Clone)]
pub struct TopicRow<'a> {
    pub id: &'a str,
    pub label: &'a str,
    pub keeps: bool,
}

/// What the preferences page shows.
#[derive(Debug, Clone)]
pub struct Preferences<'a> {
    pub lang: Lang,
    pub shop: &'a str,
    pub email: &'a str,
    pub topics: Vec<TopicRow<'a>>,
    pub all_out: bool,
    /// After a save: say so.
    pub saved: bool,
}

/// The preferences page: a checkbox per topic (ticked: wanted), one to leave all marketing
/// mail, a save button. The form posts back to the page's own URL.
pub fn preferences(p: &Preferences<'_>) -> String {
    let (lang, shop, email) = (p.lang, p.shop, p.email);
    let mut body = String::new();
    if p.saved {
        let key = if p.all_out { "preferences.saved_all_out" } else { "preferences.saved" };
        body.push_str(&format!("<p class=\"status\" role=\"status\">{}</p>", say(lang, key, shop, email)));
    }
    body.push_str(&format!("<p>{}</p><form method=\"post\"><input type=\"hidden\" name=\"v\" value=\"1\">", say(lang, "preferences.intro", shop, email)));
    if !p.topics.is_empty() {
        body.push_str(&format!("<fieldset><legend>{}</legend>", escape(text(lang, "preferences.topics"))));
        for (i, t) in p.topics.iter().enumerate() {
            body.push_str(&format!(
                "<label for=\"topic-{i}\"><input type=\"checkbox\" id=\"topic-{i}\" name=\"topic\" value=\"{id}\"{checked}><bdi>{label}</bdi></label>",
                id = escape(t.id),
                checked = if t.keeps { " checked" } else { "" },
                label = escape(t.label),
            ));
        }
        body.push_str("</fieldset>");
    }
    body.push_str(&format!(
        "<fieldset><legend>{legend}</legend><label for=\"all\"><input type=\"checkbox\" id=\"all\" name=\"all\" value=\"1\" \
         aria-describedby=\"all-hint\"{checked}>{leave}</label><p class=\"hint\" id=\"all-hint\">{hint}</p></fieldset>\
         <button type=\"submit\">{save}</button></form>",
        legend = escape(text(lang, "preferences.all")),
        checked = if p.all_out { " checked" } else { "" },
        leave = escape(text(lang, "preferences.leave_all")),
        hint = escape(text(lang, "preferences.leave_all_hint")),
        save = escape(text(lang, "preferences.save")),
    ));
    document(lang, text(lang, "preferences.title"), shop, &body)
}

/// The unsubscribe confirmation (GET `/u`): one button that posts, and a way to choose
/// topics instead.
pub fn unsubscribe(lang: Lang, shop: &str, email: &str, preferences_url: &str) -> String {
    let body = format!(
        "<p>{question}</p><form method=\"post\"><button type=\"submit\">{button}</button></form>\
         <p><a href=\"{url}\">{manage}</a></p>",
        question = say(lang, "unsubscribe.question", shop, email),
        button = escape(text(lang, "unsubscribe.button")),
        url = escape(preferences_url),
        manage = escape(text(lang, "unsubscribe.manage")),
    );
    document(lang, text(lang, "unsubscribe.title"), shop, &body)
}

/// After an unsubscribe (POST `/u`).
pub fn unsubscribed(lang: Lang, shop: &str, preferences_url: &str) -> String {
    let body = format!(
        "<p role=\"status\">{done}</p><p><a href=\"{url}\">{manage}</a></p>",
        done = say(lang, "unsubscribe.done", shop, ""),
        url = escape(preferences_url),
        manage = escape(text(lang, "unsubscribe.manage")),
    );
    document(lang, text(lang, "unsubscribe.done_title"), shop, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(lang: Lang, saved: bool, all_out: bool) -> String {
        preferences(&Preferences {
            lang,
            shop: "Demo & Co",
            email: "ana@example.com",
            topics: vec![
                TopicRow { id: "newsletter", label: "Newsletter", keeps: true },
                TopicRow { id: "offers", label: "Offers <and> discounts", keeps: false },
            ],
            all_out,
            saved,
        })
    }

    #[test]
    fn every_language_has_every_text() {
        for lang in [Lang::De, Lang::Ar, Lang::Fa] {
            for (key, _) in EN {
                assert!(catalogue(lang).iter().any(|(k, _)| k == key), "{} lacks {key}", lang.code());
            }
            assert_eq!(catalogue(lang).len(), EN.len(), "{} has keys English lacks", lang.code());
        }
    }

    #[test]
    fn the_page_shows_each_topic_with_the_current_choice() {
        let html = page(Lang::En, false, false);
        assert!(html.starts_with("<!doctype html>\n<html lang=\"en\" dir=\"ltr\">"), "{html}");
        assert!(html.contains("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"));
        assert!(html.contains("<title>Email preferences · Demo &amp; Co</title>"));
        assert!(html.contains(r#"<input type="checkbox" id="topic-0" name="topic" value="newsletter" checked><bdi>Newsletter</bdi>"#), "{html}");
        assert!(html.contains(r#"<input type="checkbox" id="topic-1" name="topic" value="offers"><bdi>Offers &lt;and&gt; discounts</bdi>"#), "{html}");
        assert!(html.contains(r#"name="all" value="1" aria-describedby="all-hint">Unsubscribe from all marketing email"#), "{html}");
        assert!(html.contains(r#"<form method="post"><input type="hidden" name="v" value="1">"#));
        assert!(html.contains(r#"<button type="submit">Save preferences</button>"#));
        assert!(html.contains(r#"Choose which emails <bdi>Demo &amp; Co</bdi> sends to <bdi dir="ltr">ana@example.com</bdi>."#), "{html}");
        assert!(!html.contains("role=\"status\""), "nothing saved yet");
        assert!(!html.contains("<script"));
        // Every control has a label.
        assert_eq!(html.matches("<input type=\"checkbox\"").count(), html.matches("<label for=").count());

        let saved = page(Lang::En, true, true);
        assert!(saved.contains(r#"<p class="status" role="status">Your preferences are saved. You will not receive marketing email from <bdi>Demo &amp; Co</bdi>.</p>"#), "{saved}");
        assert!(saved.contains(r#"aria-describedby="all-hint" checked>"#));
    }

    #[test]
    fn arabic_and_persian_pages_read_right_to_left() {
        let fa = page(Lang::Fa, true, false);
        assert!(fa.contains("<html lang=\"fa\" dir=\"rtl\">"), "{fa}");
        assert!(fa.contains("<h1>تنظیمات ایمیل</h1>"));
        assert!(fa.contains("ذخیره‌ی تنظیمات"));
        assert!(fa.contains("تنظیمات شما ذخیره شد."));
        assert!(fa.contains(r#"<bdi dir="ltr">ana@example.com</bdi>"#), "the address keeps its direction");
        let ar = page(Lang::Ar, false, false);
        assert!(ar.contains("<html lang=\"ar\" dir=\"rtl\">"));
        assert!(ar.contains("إلغاء الاشتراك في جميع الرسائل التسويقية"));
        let de = page(Lang::De, false, false);
        assert!(de.contains("<html lang=\"de\" dir=\"ltr\">") && de.contains("Einstellungen speichern"));
    }


    #[test]
    fn unsubscribe_pages_are_localised_and_offer_the_preferences_page() {
        let ask = unsubscribe(Lang::Ar, "متجر", "ana@example.com", "/p/abc");
        assert!(ask.contains("<html lang=\"ar\" dir=\"rtl\">"));
        assert!(ask.contains(r#"هل تريد إيقاف الرسائل التسويقية من <bdi>متجر</bdi> إلى <bdi dir="ltr">ana@example.com</bdi>؟"#), "{ask}");
        assert!(ask.contains(r#"<form method="post"><button type="submit">إلغاء الاشتراك</button></form>"#));
        assert!(ask.contains(r#"<a href="/p/abc">"#));
        let done = unsubscribed(Lang::En, "Demo", "/p/abc");
        assert!(done.contains("<h1>You are unsubscribed</h1>"));
        assert!(done.contains("You will not receive marketing email from <bdi>Demo</bdi> any more."));
    }
}
