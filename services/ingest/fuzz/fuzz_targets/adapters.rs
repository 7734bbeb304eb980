//! Arbitrary bytes into every webhook adapter: the untrusted mappings must never panic,
//! and neither may the signature code that parses header values or derives keys.
//!
//! Run from `services/ingest`: `cargo fuzz run adapters` (on a stable toolchain, with
//! `RUSTC_BOOTSTRAP=1`). Seeding `fuzz/corpus/adapters/` with the reference samples helps.

#![no_main]

use ingest::sources::{aftership, easypost, postflow, seventeen_track, shippo, shopify, woocommerce};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = shopify::parse_untrusted(data);
    for topic in shopify::TOPICS {
        let _ = shopify::parse_untrusted_topic(topic, data);
    }
    let _ = easypost::parse_untrusted(data);
    let _ = aftership::parse_untrusted(data);
    let _ = shippo::parse_untrusted(data);
    let _ = seventeen_track::parse_untrusted(data);
    let _ = woocommerce::parse_untrusted(data);
    let _ = postflow::parse_untrusted(data);
    for topic in ["order.created", "order.updated", "customer.created", "customer.updated"] {
        let _ = woocommerce::parse_untrusted_topic(topic, data);
    }

    // The input as a secret (EasyPost derives its key through NFKD) and as header values.
    let _ = easypost::sign(data, b"{}");
    if let Ok(value) = std::str::from_utf8(data) {
        let headers = [
            ("x-hmac-signature", value),
            ("aftership-hmac-sha256", value),
            ("shippo-auth-signature", value),
            ("x-postflow-token", value),
            ("sign", value),
            ("x-wc-webhook-signature", value),
        ];
        let secrets: [&[u8]; 2] = [b"secret", data];
        let _ = easypost::verify(&secrets, &headers, data);
        let _ = aftership::verify(&secrets, &headers, data);
        let _ = shippo::verify(&secrets, &headers, data);
        let _ = seventeen_track::verify(&secrets, &headers, data);
        let _ = woocommerce::verify(&secrets, &headers, data);
    }
});
