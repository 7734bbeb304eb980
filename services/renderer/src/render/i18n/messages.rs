//! The message catalogues of the built-in templates: English (the reference, complete),
//! German, Arabic and Persian. Keys are `template.part` or shared (`greeting`,
//! `totals.*`, `status.*`, …). Texts are plain text with `{name}` placeholders; plural
//! variants add `.one`, `.two`, `.few`, `.many` or `.zero` to the key.

pub(super) const EN: &[(&str, &str)] = &[
    // Shared.
    ("greeting", "Hi {name},"),
    ("greeting.anonymous", "Hi there,"),
    (
        "questions",
        "Questions about your order? Just reply to this email.",
    ),
    ("test_order", "This is a test order."),
    ("button.view_order", "View your order"),
    ("button.track", "Track your parcel"),
    ("order.summary", "Order summary"),
    ("items.title", "Your items"),
    ("items.in_parcel", "In this parcel"),
    ("line.quantity", "Qty {quantity} × {price}"),
    ("line.quantity_only", "Qty {quantity}"),
    ("totals.subtotal", "Subtotal"),
    ("totals.shipping", "Shipping"),
    ("totals.free", "Free"),
    ("totals.tax", "Tax"),
    ("totals.discount", "Discount"),
    ("totals.total", "Total"),
    ("address.shipping_to", "Shipping to"),
    ("footer.privacy", "Privacy policy"),
    ("footer.unsubscribe", "Unsubscribe"),
    ("footer.preferences", "Manage preferences"),
    ("product.view", "View product"),
    ("cross_sell.title", "Frequently bought together"),
    // Offers.
    ("offer.today_only", "Today only"),
    ("offer.coupon.percent", "{percent} off your next order"),
    ("offer.coupon.generic", "A discount on your next order"),
    ("offer.free_shipping", "Free shipping on your next order"),
    ("offer.use_code", "Use this code at checkout:"),
    (
        "offer.expires_tonight",
        "Expires tonight at {time} ({zone}).",
    ),
    ("offer.valid_until", "Valid until {date}."),
    // Shipments.
    ("shipment.carrier", "Carrier"),
    ("shipment.tracking_number", "Tracking number"),
    ("shipment.latest", "Latest update from {carrier}"),
    ("shipment.estimated_delivery", "Estimated delivery: {date}"),
    ("shipment.history", "Tracking history"),
    ("status.info_received", "Label created"),
    ("status.in_transit", "In transit"),
    ("status.out_for_delivery", "Out for delivery"),
    ("status.failed_attempt", "Delivery attempt failed"),
    ("status.available_for_pickup", "Ready for pickup"),
    ("status.delivered", "Delivered"),
    ("status.exception", "Delivery problem"),
    ("status.returned_to_sender", "Returned to sender"),
    ("status.expired", "Tracking expired"),
    // order_confirmation
    (
        "order_confirmation.subject",
        "Your order {number} is confirmed",
    ),
    (
        "order_confirmation.preview",
        "Thanks for shopping with {shop}. Here is the summary of order {number}.",
    ),
    ("order_confirmation.headline", "Thank you for your order!"),
    (
        "order_confirmation.body",
        "We have received your order {number} placed on {date} and are getting it ready. We will let you know as soon as it ships.",
    ),
    // shipping_confirmation
    (
        "shipping_confirmation.subject",
        "Your order {number} is on its way",
    ),
    (
        "shipping_confirmation.preview",
        "Good news: your order {number} has shipped.",
    ),
    (
        "shipping_confirmation.headline",
        "Your order is on its way!",
    ),
    (
        "shipping_confirmation.body",
        "Good news: your order {number} has left our warehouse.",
    ),
    (
        "shipping_confirmation.partial",
        "This parcel holds part of your order. We will send the rest separately.",
    ),
    // shipment_update
    ("shipment_update.subject", "News about your order {number}"),
    (
        "shipment_update.subject.out_for_delivery",
        "Your order {number} is out for delivery",
    ),
    (
        "shipment_update.subject.failed_attempt",
        "Delivery attempt failed for your order {number}",
    ),
    (
        "shipment_update.subject.available_for_pickup",
        "Your order {number} is ready for pickup",
    ),
    (
        "shipment_update.subject.exception",
        "A problem with the delivery of your order {number}",
    ),
    (
        "shipment_update.subject.returned_to_sender",
        "Your order {number} is being returned to us",
    ),
    (
        "shipment_update.headline",
        "There is news about your parcel",
    ),
    (
        "shipment_update.headline.out_for_delivery",
        "Your parcel is out for delivery",
    ),
    (
        "shipment_update.headline.failed_attempt",
        "Delivery attempt failed",
    ),
    (
        "shipment_update.headline.available_for_pickup",
        "Your parcel is ready for pickup",
    ),
    (
        "shipment_update.headline.exception",
        "There is a problem with your delivery",
    ),
    (
        "shipment_update.headline.returned_to_sender",
        "Your parcel is being returned to sender",
    ),
    ("shipment_update.next", "We will keep you posted."),
    (
        "shipment_update.next.out_for_delivery",
        "It should arrive today.",
    ),
    (
        "shipment_update.next.failed_attempt",
        "The carrier usually tries again on the next working day. You can also arrange a new delivery with the carrier through the tracking link.",
    ),
    (
        "shipment_update.next.available_for_pickup",
        "Please collect it soon: pickup points keep parcels for a limited time only. Bring an ID and your tracking number.",
    ),
    (
        "shipment_update.next.exception",
        "The carrier is working on it and we are keeping an eye on your parcel. We will let you know as soon as it moves again.",
    ),
    (
        "shipment_update.next.returned_to_sender",
        "As soon as it is back with us, we will contact you about a new delivery or a refund.",
    ),
    // delivered
    ("delivered.subject", "Your order {number} has arrived"),
    (
        "delivered.preview",
        "Your parcel was delivered. We hope you love it!",
    ),
    ("delivered.headline", "Your order arrived!"),
    (
        "delivered.body",
        "{carrier} delivered your order {number} on {date}.",
    ),
    ("delivered.location", "Delivered to: {location}"),
    (
        "delivered.problem",
        "Something not right? Just reply to this email and we will sort it out.",
    ),
    // review_request
    (
        "review_request.subject",
        "How do you like your order {number}?",
    ),
    (
        "review_request.preview",
        "Tell us what you think. It takes a minute and helps other shoppers.",
    ),
    ("review_request.headline", "How did we do?"),
    (
        "review_request.body",
        "Your order {number} arrived a few days ago. We would love to hear what you think of it. Your review helps other shoppers choose.",
    ),
    ("review_request.button", "Write a review"),
    (
        "review_request.offer_intro",
        "As a thank-you, here is something for your next order:",
    ),
    // shipment_stalled
    (
        "shipment_stalled.subject",
        "Sorry, your order {number} is delayed",
    ),
    (
        "shipment_stalled.preview",
        "We are on it. Here is what happens next.",
    ),
    (
        "shipment_stalled.headline",
        "We are sorry: your parcel is taking longer than expected",
    ),
    (
        "shipment_stalled.body",
        "{carrier} has not scanned your parcel for {count} days. The last scan was on {date}.",
    ),
    (
        "shipment_stalled.body.one",
        "{carrier} has not scanned your parcel for {count} day. The last scan was on {date}.",
    ),
    (
        "shipment_stalled.last_status",
        "Last known status: {status}",
    ),
    ("shipment_stalled.next_title", "What happens next"),
    (
        "shipment_stalled.next",
        "We have asked {carrier} to look into it. Most delayed parcels start moving again within a few days, and we will email you as soon as there is news. If your parcel does not turn up, reply to this email and we will send a replacement or refund you.",
    ),
    // order_cancelled
    (
        "order_cancelled.subject",
        "Your order {number} has been cancelled",
    ),
    (
        "order_cancelled.preview",
        "Here are the details, and what happens with your payment.",
    ),
    ("order_cancelled.headline", "Your order has been cancelled"),
    (
        "order_cancelled.body",
        "Your order {number} placed on {date} has been cancelled.",
    ),
    ("order_cancelled.reason", "Reason: {reason}"),
    (
        "order_cancelled.reason.customer",
        "Cancelled at your request",
    ),
    (
        "order_cancelled.reason.inventory",
        "Some items are no longer in stock",
    ),
    (
        "order_cancelled.reason.declined",
        "The payment was declined",
    ),
    (
        "order_cancelled.refund",
        "If you have already been charged, we will refund {total} to your original payment method. Depending on your bank, it can take a few business days to show up.",
    ),
    (
        "order_cancelled.sorry",
        "We are sorry for the inconvenience.",
    ),
];

pub(super) const DE: &[(&str, &str)] = &[
    ("greeting", "Hallo {name},"),
    ("greeting.anonymous", "Hallo,"),
    (
        "questions",
        "Fragen zu Ihrer Bestellung? Antworten Sie einfach auf diese E-Mail.",
    ),
    ("test_order", "Dies ist eine Testbestellung."),
    ("button.view_order", "Bestellung ansehen"),
    ("button.track", "Sendung verfolgen"),
    ("order.summary", "Bestellübersicht"),
    ("items.title", "Ihre Artikel"),
    ("items.in_parcel", "In diesem Paket"),
    ("line.quantity", "Menge {quantity} × {price}"),
    ("line.quantity_only", "Menge {quantity}"),
    ("totals.subtotal", "Zwischensumme"),
    ("totals.shipping", "Versand"),
    ("totals.free", "Kostenlos"),
    ("totals.tax", "MwSt."),
    ("totals.discount", "Rabatt"),
    ("totals.total", "Gesamt"),
    ("address.shipping_to", "Lieferadresse"),
    ("footer.privacy", "Datenschutzerklärung"),
    ("footer.unsubscribe", "Abmelden"),
    ("footer.preferences", "Einstellungen verwalten"),
    ("product.view", "Zum Produkt"),
    ("cross_sell.title", "Wird oft zusammen gekauft"),
    ("offer.today_only", "Nur heute"),
    (
        "offer.coupon.percent",
        "{percent} Rabatt auf Ihre nächste Bestellung",
    ),
    (
        "offer.coupon.generic",
        "Ein Rabatt auf Ihre nächste Bestellung",
    ),
    (
        "offer.free_shipping",
        "Kostenloser Versand für Ihre nächste Bestellung",
    ),
    ("offer.use_code", "Geben Sie diesen Code an der Kasse ein:"),
    (
        "offer.expires_tonight",
        "Gültig nur bis heute, {time} ({zone}).",
    ),
    ("offer.valid_until", "Gültig bis {date}."),
    ("shipment.carrier", "Versanddienst"),
    ("shipment.tracking_number", "Sendungsnummer"),
    ("shipment.latest", "Letzte Meldung von {carrier}"),
    (
        "shipment.estimated_delivery",
        "Voraussichtliche Zustellung: {date}",
    ),
    ("shipment.history", "Sendungsverlauf"),
    ("status.info_received", "Versandetikett erstellt"),
    ("status.in_transit", "Unterwegs"),
    ("status.out_for_delivery", "In Zustellung"),
    ("status.failed_attempt", "Zustellversuch fehlgeschlagen"),
    ("status.available_for_pickup", "Abholbereit"),
    ("status.delivered", "Zugestellt"),
    ("status.exception", "Zustellproblem"),
    ("status.returned_to_sender", "Zurück an den Absender"),
    ("status.expired", "Sendungsverfolgung abgelaufen"),
    (
        "order_confirmation.subject",
        "Ihre Bestellung {number} ist bestätigt",
    ),
    (
        "order_confirmation.preview",
        "Danke für Ihren Einkauf bei {shop}. Hier ist die Übersicht zu Bestellung {number}.",
    ),
    (
        "order_confirmation.headline",
        "Vielen Dank für Ihre Bestellung!",
    ),
    (
        "order_confirmation.body",
        "Wir haben Ihre Bestellung {number} vom {date} erhalten und bereiten sie vor. Wir melden uns, sobald sie versandt wird.",
    ),
    (
        "shipping_confirmation.subject",
        "Ihre Bestellung {number} ist unterwegs",
    ),
    (
        "shipping_confirmation.preview",
        "Gute Nachrichten: Ihre Bestellung {number} wurde versandt.",
    ),
    (
        "shipping_confirmation.headline",
        "Ihre Bestellung ist unterwegs!",
    ),
    (
        "shipping_confirmation.body",
        "Gute Nachrichten: Ihre Bestellung {number} hat unser Lager verlassen.",
    ),
    (
        "shipping_confirmation.partial",
        "Dieses Paket enthält einen Teil Ihrer Bestellung. Den Rest senden wir separat.",
    ),
    (
        "shipment_update.subject",
        "Neuigkeiten zu Ihrer Bestellung {number}",
    ),
    (
        "shipment_update.subject.out_for_delivery",
        "Ihre Bestellung {number} ist in der Zustellung",
    ),
    (
        "shipment_update.subject.failed_attempt",
        "Zustellversuch für Ihre Bestellung {number} fehlgeschlagen",
    ),
    (
        "shipment_update.subject.available_for_pickup",
        "Ihre Bestellung {number} liegt zur Abholung bereit",
    ),
    (
        "shipment_update.subject.exception",
        "Problem bei der Zustellung Ihrer Bestellung {number}",
    ),
    (
        "shipment_update.subject.returned_to_sender",
        "Ihre Bestellung {number} wird an uns zurückgeschickt",
    ),
    ("shipment_update.headline", "Neuigkeiten zu Ihrem Paket"),
    (
        "shipment_update.headline.out_for_delivery",
        "Ihr Paket ist in der Zustellung",
    ),
    (
        "shipment_update.headline.failed_attempt",
        "Zustellversuch fehlgeschlagen",
    ),
    (
        "shipment_update.headline.available_for_pickup",
        "Ihr Paket liegt zur Abholung bereit",
    ),
    (
        "shipment_update.headline.exception",
        "Es gibt ein Problem mit Ihrer Zustellung",
    ),
    (
        "shipment_update.headline.returned_to_sender",
        "Ihr Paket geht an den Absender zurück",
    ),
    ("shipment_update.next", "Wir halten Sie auf dem Laufenden."),
    (
        "shipment_update.next.out_for_delivery",
        "Es sollte heute bei Ihnen ankommen.",
    ),
    (
        "shipment_update.next.failed_attempt",
        "Der Versanddienst versucht es meist am nächsten Werktag erneut. Über den Link zur Sendungsverfolgung können Sie auch eine neue Zustellung vereinbaren.",
    ),
    (
        "shipment_update.next.available_for_pickup",
        "Bitte holen Sie es bald ab: Abholstellen bewahren Pakete nur begrenzte Zeit auf. Bringen Sie einen Ausweis und Ihre Sendungsnummer mit.",
    ),
    (
        "shipment_update.next.exception",
        "Der Versanddienst kümmert sich darum, und wir behalten Ihr Paket im Blick. Wir melden uns, sobald es weitergeht.",
    ),
    (
        "shipment_update.next.returned_to_sender",
        "Sobald es wieder bei uns ist, melden wir uns wegen einer neuen Zustellung oder einer Erstattung.",
    ),
    (
        "delivered.subject",
        "Ihre Bestellung {number} ist angekommen",
    ),
    (
        "delivered.preview",
        "Ihr Paket wurde zugestellt. Wir hoffen, es gefällt Ihnen!",
    ),
    ("delivered.headline", "Ihre Bestellung ist da!"),
    (
        "delivered.body",
        "{carrier} hat Ihre Bestellung {number} am {date} zugestellt.",
    ),
    ("delivered.location", "Zustellort: {location}"),
    (
        "delivered.problem",
        "Stimmt etwas nicht? Antworten Sie einfach auf diese E-Mail, wir kümmern uns darum.",
    ),
    (
        "review_request.subject",
        "Wie gefällt Ihnen Ihre Bestellung {number}?",
    ),
    (
        "review_request.preview",
        "Sagen Sie uns Ihre Meinung. Es dauert nur eine Minute und hilft anderen Kunden.",
    ),
    ("review_request.headline", "Wie zufrieden sind Sie?"),
    (
        "review_request.body",
        "Ihre Bestellung {number} ist vor ein paar Tagen angekommen. Wir würden gern wissen, wie sie Ihnen gefällt. Ihre Bewertung hilft anderen Kunden bei der Auswahl.",
    ),
    ("review_request.button", "Bewertung schreiben"),
    (
        "review_request.offer_intro",
        "Als Dankeschön haben wir etwas für Ihre nächste Bestellung:",
    ),
    (
        "shipment_stalled.subject",
        "Entschuldigung, Ihre Bestellung {number} verspätet sich",
    ),
    (
        "shipment_stalled.preview",
        "Wir kümmern uns darum. So geht es weiter.",
    ),
    (
        "shipment_stalled.headline",
        "Es tut uns leid: Ihr Paket braucht länger als erwartet",
    ),
    (
        "shipment_stalled.body",
        "{carrier} hat Ihr Paket seit {count} Tagen nicht mehr gescannt. Der letzte Scan war am {date}.",
    ),
    (
        "shipment_stalled.body.one",
        "{carrier} hat Ihr Paket seit {count} Tag nicht mehr gescannt. Der letzte Scan war am {date}.",
    ),
    (
        "shipment_stalled.last_status",
        "Letzter bekannter Status: {status}",
    ),
    ("shipment_stalled.next_title", "Wie es weitergeht"),
    (
        "shipment_stalled.next",
        "Wir haben {carrier} gebeten, der Sache nachzugehen. Die meisten verspäteten Pakete sind nach wenigen Tagen wieder unterwegs, und wir schreiben Ihnen, sobald es Neuigkeiten gibt. Sollte Ihr Paket nicht ankommen, antworten Sie auf diese E-Mail: Wir schicken Ersatz oder erstatten Ihnen den Betrag.",
    ),
    (
        "order_cancelled.subject",
        "Ihre Bestellung {number} wurde storniert",
    ),
    (
        "order_cancelled.preview",
        "Hier sind die Details und was mit Ihrer Zahlung passiert.",
    ),
    (
        "order_cancelled.headline",
        "Ihre Bestellung wurde storniert",
    ),
    (
        "order_cancelled.body",
        "Ihre Bestellung {number} vom {date} wurde storniert.",
    ),
    ("order_cancelled.reason", "Grund: {reason}"),
    (
        "order_cancelled.reason.customer",
        "Auf Ihren Wunsch storniert",
    ),
    (
        "order_cancelled.reason.inventory",
        "Einige Artikel sind nicht mehr vorrätig",
    ),
    (
        "order_cancelled.reason.declined",
        "Die Zahlung wurde abgelehnt",
    ),
    (
        "order_cancelled.refund",
        "Falls Ihnen bereits etwas berechnet wurde, erstatten wir {total} auf Ihre ursprüngliche Zahlungsart. Je nach Bank kann es einige Werktage dauern, bis der Betrag erscheint.",
    ),
    (
        "order_cancelled.sorry",
        "Wir bitten die Unannehmlichkeiten zu entschuldigen.",
    ),
];

pub(super) const AR: &[(&str, &str)] = &[
    ("greeting", "مرحبًا {name}،"),
    ("greeting.anonymous", "مرحبًا،"),
    (
        "questions",
        "هل لديك أسئلة حول طلبك؟ ما عليك سوى الرد على هذه الرسالة.",
    ),
    ("test_order", "هذا طلب تجريبي."),
    ("button.view_order", "عرض طلبك"),
    ("button.track", "تتبّع شحنتك"),
    ("order.summary", "ملخص الطلب"),
    ("items.title", "منتجاتك"),
    ("items.in_parcel", "في هذه الشحنة"),
    ("line.quantity", "الكمية {quantity} × {price}"),
    ("line.quantity_only", "الكمية {quantity}"),
    ("totals.subtotal", "المجموع الفرعي"),
    ("totals.shipping", "الشحن"),
    ("totals.free", "مجاني"),
    ("totals.tax", "الضريبة"),
    ("totals.discount", "الخصم"),
    ("totals.total", "الإجمالي"),
    ("address.shipping_to", "عنوان الشحن"),
    ("footer.privacy", "سياسة الخصوصية"),
    ("footer.unsubscribe", "إلغاء الاشتراك"),
    ("footer.preferences", "إدارة التفضيلات"),
    ("product.view", "عرض المنتج"),
    ("cross_sell.title", "يُشترى معه عادةً"),
    ("offer.today_only", "اليوم فقط"),
    ("offer.coupon.percent", "خصم {percent} على طلبك القادم"),
    ("offer.coupon.generic", "خصم على طلبك القادم"),
    ("offer.free_shipping", "شحن مجاني لطلبك القادم"),
    ("offer.use_code", "استخدم هذا الرمز عند الدفع:"),
    (
        "offer.expires_tonight",
        "ينتهي العرض الليلة الساعة {time} ({zone}).",
    ),
    ("offer.valid_until", "صالح حتى {date}."),
    ("shipment.carrier", "شركة الشحن"),
    ("shipment.tracking_number", "رقم التتبع"),
    ("shipment.latest", "آخر تحديث من {carrier}"),
    (
        "shipment.estimated_delivery",
        "موعد التوصيل المتوقع: {date}",
    ),
    ("shipment.history", "سجل التتبع"),
    ("status.info_received", "تم إنشاء بوليصة الشحن"),
    ("status.in_transit", "في الطريق"),
    ("status.out_for_delivery", "خرجت للتوصيل"),
    ("status.failed_attempt", "تعذّر التوصيل"),
    ("status.available_for_pickup", "جاهزة للاستلام"),
    ("status.delivered", "تم التوصيل"),
    ("status.exception", "مشكلة في التوصيل"),
    ("status.returned_to_sender", "أُعيدت إلى المرسل"),
    ("status.expired", "انتهت صلاحية التتبع"),
    ("order_confirmation.subject", "تم تأكيد طلبك {number}"),
    (
        "order_confirmation.preview",
        "شكرًا لتسوقك من {shop}. إليك ملخص الطلب {number}.",
    ),
    ("order_confirmation.headline", "شكرًا لطلبك!"),
    (
        "order_confirmation.body",
        "استلمنا طلبك {number} المقدَّم بتاريخ {date} ونعمل على تجهيزه. سنبلغك فور شحنه.",
    ),
    (
        "shipping_confirmation.subject",
        "طلبك {number} في الطريق إليك",
    ),
    (
        "shipping_confirmation.preview",
        "أخبار سارة: تم شحن طلبك {number}.",
    ),
    ("shipping_confirmation.headline", "طلبك في الطريق إليك!"),
    (
        "shipping_confirmation.body",
        "أخبار سارة: غادر طلبك {number} مستودعنا.",
    ),
    (
        "shipping_confirmation.partial",
        "تحتوي هذه الشحنة على جزء من طلبك، وسنرسل الباقي بشكل منفصل.",
    ),
    ("shipment_update.subject", "مستجدات طلبك {number}"),
    (
        "shipment_update.subject.out_for_delivery",
        "طلبك {number} خرج للتوصيل",
    ),
    (
        "shipment_update.subject.failed_attempt",
        "تعذّر توصيل طلبك {number}",
    ),
    (
        "shipment_update.subject.available_for_pickup",
        "طلبك {number} جاهز للاستلام",
    ),
    (
        "shipment_update.subject.exception",
        "مشكلة في توصيل طلبك {number}",
    ),
    (
        "shipment_update.subject.returned_to_sender",
        "طلبك {number} في طريق عودته إلينا",
    ),
    ("shipment_update.headline", "مستجدات حول شحنتك"),
    (
        "shipment_update.headline.out_for_delivery",
        "شحنتك خرجت للتوصيل",
    ),
    (
        "shipment_update.headline.failed_attempt",
        "تعذّرت محاولة التوصيل",
    ),
    (
        "shipment_update.headline.available_for_pickup",
        "شحنتك جاهزة للاستلام",
    ),
    (
        "shipment_update.headline.exception",
        "هناك مشكلة في توصيل شحنتك",
    ),
    (
        "shipment_update.headline.returned_to_sender",
        "تُعاد شحنتك إلى المرسل",
    ),
    ("shipment_update.next", "سنوافيك بكل جديد."),
    (
        "shipment_update.next.out_for_delivery",
        "من المتوقع أن تصلك اليوم.",
    ),
    (
        "shipment_update.next.failed_attempt",
        "عادةً ما تعيد شركة الشحن المحاولة في يوم العمل التالي. يمكنك أيضًا ترتيب موعد توصيل جديد مع شركة الشحن عبر رابط التتبع.",
    ),
    (
        "shipment_update.next.available_for_pickup",
        "يُرجى استلامها قريبًا، فنقاط الاستلام تحتفظ بالشحنات لفترة محدودة فقط. أحضر بطاقة هويتك ورقم التتبع.",
    ),
    (
        "shipment_update.next.exception",
        "تعمل شركة الشحن على حل المشكلة ونحن نتابع شحنتك. سنبلغك فور تحرّكها من جديد.",
    ),
    (
        "shipment_update.next.returned_to_sender",
        "فور وصولها إلينا سنتواصل معك بشأن توصيل جديد أو استرداد المبلغ.",
    ),
    ("delivered.subject", "وصل طلبك {number}"),
    ("delivered.preview", "تم توصيل شحنتك. نتمنى أن تنال إعجابك!"),
    ("delivered.headline", "وصل طلبك!"),
    (
        "delivered.body",
        "سلّمت {carrier} طلبك {number} بتاريخ {date}.",
    ),
    ("delivered.location", "مكان التسليم: {location}"),
    (
        "delivered.problem",
        "هل هناك خطأ ما؟ ما عليك سوى الرد على هذه الرسالة وسنتولى الأمر.",
    ),
    ("review_request.subject", "ما رأيك في طلبك {number}؟"),
    (
        "review_request.preview",
        "أخبرنا برأيك، فالأمر لا يستغرق سوى دقيقة ويساعد المتسوقين الآخرين.",
    ),
    ("review_request.headline", "كيف كانت تجربتك؟"),
    (
        "review_request.body",
        "وصل طلبك {number} قبل أيام قليلة. يسعدنا أن نعرف رأيك فيه، فتقييمك يساعد المتسوقين الآخرين على الاختيار.",
    ),
    ("review_request.button", "اكتب تقييمًا"),
    (
        "review_request.offer_intro",
        "تقديرًا لك، إليك هدية لطلبك القادم:",
    ),
    ("shipment_stalled.subject", "نعتذر، طلبك {number} متأخر"),
    (
        "shipment_stalled.preview",
        "نحن نتابع الأمر. إليك ما سيحدث بعد ذلك.",
    ),
    (
        "shipment_stalled.headline",
        "نعتذر: تستغرق شحنتك وقتًا أطول من المتوقع",
    ),
    (
        "shipment_stalled.body",
        "لم تسجّل {carrier} أي مسح لشحنتك منذ {count} يوم. كان آخر مسح بتاريخ {date}.",
    ),
    (
        "shipment_stalled.body.one",
        "لم تسجّل {carrier} أي مسح لشحنتك منذ يوم واحد. كان آخر مسح بتاريخ {date}.",
    ),
    (
        "shipment_stalled.body.two",
        "لم تسجّل {carrier} أي مسح لشحنتك منذ يومين. كان آخر مسح بتاريخ {date}.",
    ),
    (
        "shipment_stalled.body.few",
        "لم تسجّل {carrier} أي مسح لشحنتك منذ {count} أيام. كان آخر مسح بتاريخ {date}.",
    ),
    (
        "shipment_stalled.body.many",
        "لم تسجّل {carrier} أي مسح لشحنتك منذ {count} يومًا. كان آخر مسح بتاريخ {date}.",
    ),
    ("shipment_stalled.last_status", "آخر حالة معروفة: {status}"),
    ("shipment_stalled.next_title", "ما الذي سيحدث الآن"),
    (
        "shipment_stalled.next",
        "طلبنا من {carrier} التحقق من الأمر. تعود معظم الشحنات المتأخرة إلى الحركة خلال أيام قليلة، وسنراسلك فور وجود أي جديد. إذا لم تصل شحنتك، فما عليك سوى الرد على هذه الرسالة وسنرسل لك بديلًا أو نردّ لك المبلغ.",
    ),
    ("order_cancelled.subject", "تم إلغاء طلبك {number}"),
    (
        "order_cancelled.preview",
        "إليك التفاصيل وما سيحدث بشأن الدفع.",
    ),
    ("order_cancelled.headline", "تم إلغاء طلبك"),
    (
        "order_cancelled.body",
        "تم إلغاء طلبك {number} المقدَّم بتاريخ {date}.",
    ),
    ("order_cancelled.reason", "السبب: {reason}"),
    ("order_cancelled.reason.customer", "أُلغي بناءً على طلبك"),
    (
        "order_cancelled.reason.inventory",
        "بعض المنتجات لم تعد متوفرة",
    ),
    ("order_cancelled.reason.declined", "تم رفض الدفع"),
    (
        "order_cancelled.refund",
        "إذا خُصم منك المبلغ بالفعل، فسنردّ {total} إلى وسيلة الدفع الأصلية. قد يستغرق ظهوره بضعة أيام عمل حسب البنك.",
    ),
    ("order_cancelled.sorry", "نعتذر عن الإزعاج."),
];

pub(super) const FA: &[(&str, &str)] = &[
    ("greeting", "سلام {name}،"),
    ("greeting.anonymous", "سلام،"),
    (
        "questions",
        "درباره‌ی سفارشتان سؤالی دارید؟ کافی است به همین ایمیل پاسخ دهید.",
    ),
    ("test_order", "این یک سفارش آزمایشی است."),
    ("button.view_order", "مشاهده‌ی سفارش"),
    ("button.track", "پیگیری مرسوله"),
    ("order.summary", "خلاصه‌ی سفارش"),
    ("items.title", "کالاهای شما"),
    ("items.in_parcel", "در این مرسوله"),
    ("line.quantity", "تعداد {quantity} × {price}"),
    ("line.quantity_only", "تعداد {quantity}"),
    ("totals.subtotal", "جمع جزء"),
    ("totals.shipping", "هزینه‌ی ارسال"),
    ("totals.free", "رایگان"),
    ("totals.tax", "مالیات"),
    ("totals.discount", "تخفیف"),
    ("totals.total", "مبلغ کل"),
    ("address.shipping_to", "ارسال به"),
    ("footer.privacy", "حریم خصوصی"),
    ("footer.unsubscribe", "لغو اشتراک"),
    ("footer.preferences", "مدیریت تنظیمات ایمیل"),
    ("product.view", "مشاهده‌ی محصول"),
    ("cross_sell.title", "اغلب با هم خریداری می‌شوند"),
    ("offer.today_only", "فقط امروز"),
    (
        "offer.coupon.percent",
        "{percent} تخفیف برای سفارش بعدی شما",
    ),
    ("offer.coupon.generic", "تخفیف برای سفارش بعدی شما"),
    ("offer.free_shipping", "ارسال رایگان برای سفارش بعدی شما"),
    ("offer.use_code", "این کد را هنگام پرداخت وارد کنید:"),
    (
        "offer.expires_tonight",
        "امشب ساعت {time} ({zone}) منقضی می‌شود.",
    ),
    ("offer.valid_until", "معتبر تا {date}."),
    ("shipment.carrier", "شرکت حمل"),
    ("shipment.tracking_number", "کد رهگیری"),
    ("shipment.latest", "آخرین خبر از {carrier}"),
    ("shipment.estimated_delivery", "زمان تقریبی تحویل: {date}"),
    ("shipment.history", "سابقه‌ی رهگیری"),
    ("status.info_received", "برچسب ارسال صادر شد"),
    ("status.in_transit", "در حال ارسال"),
    ("status.out_for_delivery", "در مسیر تحویل"),
    ("status.failed_attempt", "تحویل ناموفق"),
    ("status.available_for_pickup", "آماده‌ی تحویل گرفتن"),
    ("status.delivered", "تحویل داده شد"),
    ("status.exception", "مشکل در تحویل"),
    ("status.returned_to_sender", "بازگشت به فرستنده"),
    ("status.expired", "رهگیری منقضی شد"),
    ("order_confirmation.subject", "سفارش {number} شما تأیید شد"),
    (
        "order_confirmation.preview",
        "از خرید شما از {shop} سپاسگزاریم. خلاصه‌ی سفارش {number} را در ادامه می‌بینید.",
    ),
    ("order_confirmation.headline", "از سفارش شما سپاسگزاریم!"),
    (
        "order_confirmation.body",
        "سفارش {number} شما را که در تاریخ {date} ثبت شد دریافت کردیم و در حال آماده‌سازی آن هستیم. به محض ارسال، به شما خبر می‌دهیم.",
    ),
    (
        "shipping_confirmation.subject",
        "سفارش {number} شما در راه است",
    ),
    (
        "shipping_confirmation.preview",
        "خبر خوب: سفارش {number} شما ارسال شد.",
    ),
    ("shipping_confirmation.headline", "سفارش شما در راه است!"),
    (
        "shipping_confirmation.body",
        "خبر خوب: سفارش {number} شما از انبار ما ارسال شد.",
    ),
    (
        "shipping_confirmation.partial",
        "این مرسوله بخشی از سفارش شماست. باقی آن را جداگانه ارسال می‌کنیم.",
    ),
    ("shipment_update.subject", "خبر تازه درباره‌ی سفارش {number}"),
    (
        "shipment_update.subject.out_for_delivery",
        "سفارش {number} شما در مسیر تحویل است",
    ),
    (
        "shipment_update.subject.failed_attempt",
        "تحویل سفارش {number} شما ناموفق بود",
    ),
    (
        "shipment_update.subject.available_for_pickup",
        "سفارش {number} شما آماده‌ی تحویل گرفتن است",
    ),
    (
        "shipment_update.subject.exception",
        "مشکلی در تحویل سفارش {number} شما پیش آمده است",
    ),
    (
        "shipment_update.subject.returned_to_sender",
        "سفارش {number} شما به ما بازگردانده می‌شود",
    ),
    ("shipment_update.headline", "خبر تازه درباره‌ی مرسوله‌ی شما"),
    (
        "shipment_update.headline.out_for_delivery",
        "مرسوله‌ی شما در مسیر تحویل است",
    ),
    (
        "shipment_update.headline.failed_attempt",
        "تلاش برای تحویل ناموفق بود",
    ),
    (
        "shipment_update.headline.available_for_pickup",
        "مرسوله‌ی شما آماده‌ی تحویل گرفتن است",
    ),
    (
        "shipment_update.headline.exception",
        "در تحویل مرسوله‌ی شما مشکلی پیش آمده است",
    ),
    (
        "shipment_update.headline.returned_to_sender",
        "مرسوله‌ی شما به فرستنده بازگردانده می‌شود",
    ),
    ("shipment_update.next", "شما را در جریان می‌گذاریم."),
    (
        "shipment_update.next.out_for_delivery",
        "انتظار می‌رود امروز به دستتان برسد.",
    ),
    (
        "shipment_update.next.failed_attempt",
        "شرکت حمل معمولاً روز کاری بعد دوباره تلاش می‌کند. می‌توانید از طریق پیوند رهگیری، زمان تحویل تازه‌ای هم با شرکت حمل هماهنگ کنید.",
    ),
    (
        "shipment_update.next.available_for_pickup",
        "لطفاً زودتر آن را تحویل بگیرید، چون مرسوله‌ها فقط مدت محدودی در محل تحویل نگه داشته می‌شوند. کارت شناسایی و کد رهگیری را همراه داشته باشید.",
    ),
    (
        "shipment_update.next.exception",
        "شرکت حمل در حال رسیدگی است و ما هم مرسوله‌ی شما را زیر نظر داریم. به محض اینکه دوباره به راه بیفتد، به شما خبر می‌دهیم.",
    ),
    (
        "shipment_update.next.returned_to_sender",
        "به محض بازگشت مرسوله به ما، درباره‌ی ارسال دوباره یا بازپرداخت با شما تماس می‌گیریم.",
    ),
    ("delivered.subject", "سفارش {number} شما رسید"),
    (
        "delivered.preview",
        "مرسوله‌ی شما تحویل داده شد. امیدواریم از آن لذت ببرید!",
    ),
    ("delivered.headline", "سفارش شما رسید!"),
    (
        "delivered.body",
        "{carrier} سفارش {number} شما را در تاریخ {date} تحویل داد.",
    ),
    ("delivered.location", "محل تحویل: {location}"),
    (
        "delivered.problem",
        "مشکلی هست؟ کافی است به همین ایمیل پاسخ دهید تا رسیدگی کنیم.",
    ),
    ("review_request.subject", "از سفارش {number} راضی هستید؟"),
    (
        "review_request.preview",
        "نظرتان را با ما در میان بگذارید. فقط یک دقیقه وقت می‌گیرد و به دیگر خریداران کمک می‌کند.",
    ),
    ("review_request.headline", "تجربه‌ی شما چطور بود؟"),
    (
        "review_request.body",
        "سفارش {number} شما چند روز پیش رسید. دوست داریم نظرتان را درباره‌ی آن بدانیم. نظر شما به دیگر خریداران در انتخاب کمک می‌کند.",
    ),
    ("review_request.button", "ثبت نظر"),
    (
        "review_request.offer_intro",
        "به رسم قدردانی، هدیه‌ای برای سفارش بعدی شما:",
    ),
    (
        "shipment_stalled.subject",
        "پوزش می‌خواهیم، سفارش {number} شما با تأخیر همراه شده است",
    ),
    (
        "shipment_stalled.preview",
        "در حال پیگیری هستیم. مراحل بعدی را در ادامه بخوانید.",
    ),
    (
        "shipment_stalled.headline",
        "متأسفیم: رسیدن مرسوله‌ی شما بیش از حد انتظار طول کشیده است",
    ),
    (
        "shipment_stalled.body",
        "{count} روز است که {carrier} اسکن تازه‌ای از مرسوله‌ی شما ثبت نکرده است. آخرین اسکن در تاریخ {date} بوده است.",
    ),
    ("shipment_stalled.last_status", "آخرین وضعیت: {status}"),
    ("shipment_stalled.next_title", "مراحل بعدی"),
    (
        "shipment_stalled.next",
        "از {carrier} خواسته‌ایم موضوع را بررسی کند. بیشتر مرسوله‌های تأخیری ظرف چند روز دوباره به راه می‌افتند و ما به محض دریافت خبر تازه به شما ایمیل می‌زنیم. اگر مرسوله به دستتان نرسید، به همین ایمیل پاسخ دهید تا کالای جایگزین بفرستیم یا مبلغ را بازگردانیم.",
    ),
    ("order_cancelled.subject", "سفارش {number} شما لغو شد"),
    (
        "order_cancelled.preview",
        "جزئیات و وضعیت پرداخت شما در ادامه آمده است.",
    ),
    ("order_cancelled.headline", "سفارش شما لغو شد"),
    (
        "order_cancelled.body",
        "سفارش {number} شما که در تاریخ {date} ثبت شده بود، لغو شد.",
    ),
    ("order_cancelled.reason", "دلیل: {reason}"),
    ("order_cancelled.reason.customer", "به درخواست شما لغو شد"),
    (
        "order_cancelled.reason.inventory",
        "برخی از کالاها دیگر موجود نیستند",
    ),
    ("order_cancelled.reason.declined", "پرداخت رد شد"),
    (
        "order_cancelled.refund",
        "اگر مبلغی از حساب شما کسر شده باشد، {total} به روش پرداخت اصلی شما بازگردانده می‌شود. بسته به بانک، ممکن است چند روز کاری طول بکشد تا نمایش داده شود.",
    ),
    ("order_cancelled.sorry", "بابت این ناراحتی پوزش می‌خواهیم."),
];
