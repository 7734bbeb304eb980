//! Just enough DER and X.509 to take the public key and validity period out of a
//! certificate, and the key out of a `SubjectPublicKeyInfo`. It does not check the
//! certificate's own signature or chain: the SNS certificate is trusted because the
//! caller fetched it over HTTPS from an SNS endpoint.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xa0;

/// rsaEncryption, 1.2.840.113549.1.1.1.
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey, 1.2.840.10045.2.1.
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 (secp256r1), 1.2.840.10045.3.1.7.
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// A public key as the verifiers of `ring` want it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicKey {
    /// `RSAPublicKey` DER (PKCS#1).
    Rsa(Vec<u8>),
    /// An uncompressed P-256 point (65 bytes, `04 || x || y`).
    P256(Vec<u8>),
}

/// What we use of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Certificate {
    pub key: PublicKey,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Certificate {
    pub fn valid_at(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// The DER of the first `-----BEGIN {label}-----` block of `pem`.
pub(crate) fn pem_block(pem: &str, label: &str) -> Result<Vec<u8>, &'static str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin).ok_or("no pem block")? + begin.len();
    let rest = pem.get(start..).ok_or("no pem block")?;
    let stop = rest.find(&end).ok_or("unterminated pem block")?;
    let b64: String = rest
        .get(..stop)
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD.decode(b64).map_err(|_| "pem block is not base64")
}

/// Parses a DER X.509 certificate.
pub(crate) fn certificate(der: &[u8]) -> Result<Certificate, &'static str> {
    let (cert, rest) = expect(der, SEQUENCE)?;
    if !rest.is_empty() {
        return Err("trailing data after certificate");
    }
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut r = tbs;
    if r.first() == Some(&VERSION) {
        r = tlv(r)?.2;
    }
    let (_serial, r) = expect(r, INTEGER)?;
    let (_signature_algorithm, r) = expect(r, SEQUENCE)?;
    let (_issuer, r) = expect(r, SEQUENCE)?;
    let (validity, r) = expect(r, SEQUENCE)?;
    let (_subject, r) = expect(r, SEQUENCE)?;
    let (spki_tag, spki, _) = tlv(r)?;
    if spki_tag != SEQUENCE {
        return Err("expected subject public key info");
    }
    let (not_before, v) = time_value(validity)?;
    let (not_after, _) = time_value(v)?;
    Ok(Certificate {
        key: public_key_info(spki)?,
        not_before,
        not_after,
    })
}

/// Parses a DER `SubjectPublicKeyInfo` (the whole TLV).
pub(crate) fn subject_public_key_info(der: &[u8]) -> Result<PublicKey, &'static str> {
    let (spki, rest) = expect(der, SEQUENCE)?;
    if !rest.is_empty() {
        return Err("trailing data after public key");
    }
    public_key_info(spki)
}

/// The contents of a `SubjectPublicKeyInfo` sequence.
fn public_key_info(spki: &[u8]) -> Result<PublicKey, &'static str> {
    let (algorithm, r) = expect(spki, SEQUENCE)?;
    let (bits, _) = expect(r, BIT_STRING)?;
    let key = match bits.split_first() {
        Some((0, key)) if !key.is_empty() => key.to_vec(),
        _ => return Err("bad public key bit string"),
    };
    let (oid, params) = expect(algorithm, OID)?;
    if oid == OID_RSA {
        Ok(PublicKey::Rsa(key))
    } else if oid == OID_EC {
        let (curve, _) = expect(params, OID).map_err(|_| "ec key without a named curve")?;
        if curve != OID_P256 {
            return Err("ec key is not on p-256");
        }
        if key.len() != 65 || key.first() != Some(&0x04) {
            return Err("p-256 key is not an uncompressed point");
        }
        Ok(PublicKey::P256(key))
    } else {
        Err("unsupported public key algorithm")
    }
}

/// `(tag, contents, rest)` of the first TLV of `input`. Single-byte tags, definite lengths.
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), &'static str> {
    let (&tag, r) = input.split_first().ok_or("truncated der")?;
    if tag & 0x1f == 0x1f {
        return Err("unsupported der tag");
    }
    let (&first, r) = r.split_first().ok_or("truncated der")?;
    let (len, r) = if first < 0x80 {
        (usize::from(first), r)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err("unsupported der length");
        }
        let bytes = r.get(..n).ok_or("truncated der")?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, r.get(n..).ok_or("truncated der")?)
    };
    let contents = r.get(..len).ok_or("truncated der")?;
    let rest = r.get(len..).ok_or("truncated der")?;
    Ok((tag, contents, rest))
}

/// `(contents, rest)` of the first TLV, which must have tag `want`.
fn expect(input: &[u8], want: u8) -> Result<(&[u8], &[u8]), &'static str> {
    let (tag, contents, rest) = tlv(input)?;
    if tag == want {
        Ok((contents, rest))
    } else {
        Err("unexpected der tag")
    }
}

/// A `UTCTime` or `GeneralizedTime` (the `Z` forms RFC 5280 requires) and the rest.
fn time_value(input: &[u8]) -> Result<(OffsetDateTime, &[u8]), &'static str> {
    let (tag, contents, rest) = tlv(input)?;
    let s = std::str::from_utf8(contents).map_err(|_| "bad time")?;
    let digits = s.strip_suffix('Z').ok_or("time is not in utc")?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("bad time");
    }
    let (year, rest_digits) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy: i32 = num(digits, 0, 2)?;
            (
                if yy >= 50 { 1900 + yy } else { 2000 + yy },
                digits.get(2..).ok_or("bad time")?,
            )
        }
        (GENERALIZED_TIME, 14) => (num(digits, 0, 4)?, digits.get(4..).ok_or("bad time")?),
        _ => return Err("bad time"),
    };
    let month = Month::try_from(num::<u8>(rest_digits, 0, 2)?).map_err(|_| "bad time")?;
    let date =
        Date::from_calendar_date(year, month, num(rest_digits, 2, 4)?).map_err(|_| "bad time")?;
    let time = Time::from_hms(
        num(rest_digits, 4, 6)?,
        num(rest_digits, 6, 8)?,
        num(rest_digits, 8, 10)?,
    )
    .map_err(|_| "bad time")?;
    Ok((PrimitiveDateTime::new(date, time).assume_utc(), rest))
}

fn num<T: std::str::FromStr>(s: &str, from: usize, to: usize) -> Result<T, &'static str> {
    s.get(from..to)
        .and_then(|d| d.parse().ok())
        .ok_or("bad time")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_truncation() {
        assert_eq!(
            tlv(&[0x04, 0x02, 0xaa, 0xbb, 0xcc]),
            Ok((0x04, &[0xaa, 0xbb][..], &[0xcc][..]))
        );
        let long = [&[0x04, 0x81, 0x80][..], &[0u8; 0x80]].concat();
        assert_eq!(tlv(&long).map(|(_, c, _)| c.len()), Ok(0x80));
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x05, 0x00],
            &[0x30, 0x80, 0x00],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x1f, 0x00],
        ] {
            assert!(tlv(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn utc_and_generalized_times() {
        let (t, rest) = time_value(b"\x17\x0d491231235959Z\x05").unwrap();
        assert_eq!(t, time::macros::datetime!(2049-12-31 23:59:59 UTC));
        assert_eq!(rest, b"\x05");
        let (t, _) = time_value(b"\x17\x0d500101000000Z").unwrap();
        assert_eq!(t.year(), 1950);
        let (t, _) = time_value(b"\x18\x0f20500101000000Z").unwrap();
        assert_eq!(t, time::macros::datetime!(2050-01-01 0:00 UTC));
        for bad in [
            &b"\x17\x0d491331235959Z"[..],
            b"\x17\x0b4912312359Z",
            b"\x17\x0d49123123595+Z",
            b"\x18\x0d491231235959Z",
        ] {
            assert!(time_value(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [&b""[..], b"\x30\x00", b"\x30\x03\x30\x01\x00", &[0x30; 64]] {
            assert!(certificate(bad).is_err());
            assert!(subject_public_key_info(bad).is_err());
        }
        assert!(pem_block("nothing here", "CERTIFICATE").is_err());
        assert!(
            pem_block(
                "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----",
                "CERTIFICATE"
            )
            .is_err()
        );
        assert!(pem_block("-----BEGIN CERTIFICATE-----\nAAAA", "CERTIFICATE").is_err());
    }
}
