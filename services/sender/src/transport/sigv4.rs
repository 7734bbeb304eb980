//! AWS Signature Version 4 for one request (header form): canonical request, string to
//! sign, the derived signing key and the `Authorization` header. Tested against AWS's
//! published examples.

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

type HmacSha256 = Hmac<Sha256>;

pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
}

/// What is signed. `path` and the query are given decoded; they are encoded here.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(&'a str, &'a str)],
    /// Headers to sign, `host` among them; `x-amz-date` is added.
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The `X-Amz-Date` header to send.
    pub amz_date: String,
    /// The `Authorization` header to send.
    pub authorization: String,
    pub canonical_request: String,
    pub string_to_sign: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so this cannot fail; a wrong signature would only make
    // AWS answer 403.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else { return [0; 32] };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// RFC 3986 unreserved characters stay, everything else is %XX (uppercase).
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

pub fn sign(req: &Request<'_>, creds: &Credentials<'_>, region: &str, service: &str, now: OffsetDateTime) -> Signed {
    let now = now.to_offset(time::UtcOffset::UTC);
    let amz_date = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let date = &amz_date[..8];

    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect();
    if !headers.iter().any(|(n, _)| n == "x-amz-date") {
        headers.push(("x-amz-date".into(), amz_date.clone()));
    }
    headers.sort();
    // Repeated names are one canonical header with comma-separated values.
    let mut canonical_headers = String::new();
    let mut names: Vec<&str> = Vec::new();
    for (name, value) in &headers {
        if names.last() == Some(&name.as_str()) {
            canonical_headers.pop();
            let _ = writeln!(canonical_headers, ",{value}");
        } else {
            let _ = writeln!(canonical_headers, "{name}:{value}");
            names.push(name);
        }
    }
    let signed_headers = names.join(";");

    let mut query: Vec<(String, String)> = req.query.iter().map(|(k, v)| (uri_encode(k, false), uri_encode(v, false))).collect();
    query.sort();
    let canonical_query = query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let path = if req.path.is_empty() { "/".to_owned() } else { uri_encode(req.path, true) };

    let canonical_request = format!(
        "{}\n{path}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{}",
        req.method,
        hex(&Sha256::digest(req.payload))
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex(&Sha256::digest(canonical_request.as_bytes())));

    let k_date = hmac(format!("AWS4{}", creds.secret_access_key).as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex(&hmac(&k_signing, string_to_sign.as_bytes()));

    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key_id
    );
    Signed { amz_date, authorization, canonical_request, string_to_sign }
}

#[cfg(test)]
mod tests {
    //! Expected values are AWS's: the SigV4 test suite (`get-vanilla`, `post-vanilla`,
    //! `get-vanilla-query-order-key-case`) and the S3 "GET object" header example.

    use time::macros::datetime;

    use super::*;

    const SUITE: Credentials<'static> =
        Credentials { access_key_id: "AKIDEXAMPLE", secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY" };
    const SUITE_TIME: OffsetDateTime = datetime!(2015-08-30 12:36:00 UTC);

    fn suite(method: &str, query: &[(&str, &str)]) -> Signed {
        let req = Request { method, path: "/", query, headers: &[("Host", "example.amazonaws.com")], payload: b"" };
        sign(&req, &SUITE, "us-east-1", "service", SUITE_TIME)
    }

    #[test]
    fn get_vanilla() {
        let s = suite("GET", &[]);
        assert_eq!(
            s.canonical_request,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            s.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        assert_eq!(s.amz_date, "20150830T123600Z");
        assert_eq!(
            s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn post_vanilla() {
        assert!(suite("POST", &[]).authorization.ends_with("Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"));
    }

    #[test]
    fn query_parameters_are_sorted() {
        let s = suite("GET", &[("Param2", "value2"), ("Param1", "value1")]);
        assert!(s.canonical_request.starts_with("GET\n/\nParam1=value1&Param2=value2\n"), "{}", s.canonical_request);
        assert!(s.authorization.ends_with("Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"));
    }

    #[test]
    fn s3_get_object_example() {
        // The S3 documentation's example key differs from the test suite's in one character.
        let creds = Credentials { access_key_id: "AKIAIOSFODNN7EXAMPLE", secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" };
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let headers = [("Host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9"), ("x-amz-content-sha256", empty)];
        let req = Request { method: "GET", path: "/test.txt", query: &[], headers: &headers, payload: b"" };
        let s = sign(&req, &creds, "us-east-1", "s3", datetime!(2013-05-24 00:00 UTC));
        assert!(s.string_to_sign.ends_with("\n7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"), "{}", s.string_to_sign);
        assert_eq!(
            s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn paths_and_values_are_encoded() {
        assert_eq!(uri_encode("/v2/email/outbound-emails", true), "/v2/email/outbound-emails");
        assert_eq!(uri_encode("a b/c~", false), "a%20b%2Fc~");
    }
}
