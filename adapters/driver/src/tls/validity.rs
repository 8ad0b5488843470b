//! The validity period of an X.509 certificate, read from its DER.
//!
//! Only needed for a server certificate that is itself one of the trusted
//! roots (PostgreSQL's documented self-signed setup): webpki refuses a CA
//! certificate as an end entity before it looks at dates, so the driver
//! checks the dates itself, as OpenSSL (and so libpq) does for every
//! certificate of a chain. The input is a certificate byte-identical to
//! one from the user's root file; it is still parsed defensively, and any
//! structure this reader does not expect counts as invalid.

/// The certificate's `notBefore` and `notAfter`, in seconds since the Unix
/// epoch; `None` if the DER is not a certificate as expected.
pub(crate) fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (certificate, _) = element(der, SEQUENCE)?;
    let (mut tbs, _) = element(certificate, SEQUENCE)?;
    if tbs.first() == Some(&EXPLICIT_VERSION) {
        tbs = element(tbs, EXPLICIT_VERSION)?.1;
    }
    let (_serial, rest) = element(tbs, INTEGER)?;
    let (_signature, rest) = element(rest, SEQUENCE)?;
    let (_issuer, rest) = element(rest, SEQUENCE)?;
    let (validity, _) = element(rest, SEQUENCE)?;
    let (not_before, rest) = time(validity)?;
    let (not_after, _) = time(rest)?;
    Some((not_before, not_after))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const EXPLICIT_VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The content of the element at the start of `input` if its tag is
/// `tag`, and what follows it.
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81..=0x84 => {
            let (bytes, rest) = rest.split_at_checked(usize::from(first & 0x7f))?;
            let len = bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
            (len, rest)
        }
        _ => return None,
    };
    rest.split_at_checked(len)
}

/// A UTCTime or GeneralizedTime in seconds since the epoch, and what follows.
fn time(input: &[u8]) -> Option<(i64, &[u8])> {
    let tag = *input.first()?;
    let (text, rest) = element(input, tag)?;
    let digits = text.strip_suffix(b"Z")?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = std::str::from_utf8(digits.get(range)?).ok()?;
        part.parse().ok()
    };
    let (year, at) = match (tag, digits.len()) {
        // RFC 5280: two-digit years 50–99 are 19xx, 00–49 are 20xx.
        (UTC_TIME, 12) => {
            let yy = number(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (GENERALIZED_TIME, 14) => (number(0..4)?, 4),
        _ => return None,
    };
    let month = number(at..at + 2)?;
    let day = number(at + 2..at + 4)?;
    let hour = number(at + 4..at + 6)?;
    let minute = number(at + 6..at + 8)?;
    let second = number(at + 8..at + 10)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3_600 + minute * 60 + second, rest))
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_to_unix_seconds() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 11, 29), 20_786);
        let utc = [
            UTC_TIME, 13, b'2', b'6', b'1', b'1', b'2', b'9', b'0', b'0', b'0', b'0', b'1', b'0',
            b'Z',
        ];
        assert_eq!(time(&utc).map(|(t, _)| t), Some(20_786 * 86_400 + 10));
        let generalized = b"\x18\x0f20491231235959Z";
        assert_eq!(
            time(generalized).map(|(t, _)| t),
            Some(days_from_civil(2049, 12, 31) * 86_400 + 86_399)
        );
    }

    #[test]
    fn a_certificate_gives_its_validity_period() {
        let mut params = rcgen::CertificateParams::new(vec!["db.test".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2021, 2, 3);
        params.not_after = rcgen::date_time_ymd(2051, 4, 5);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            validity(cert.der()),
            Some((
                days_from_civil(2021, 2, 3) * 86_400,
                days_from_civil(2051, 4, 5) * 86_400
            ))
        );
    }

    #[test]
    fn malformed_input_is_none_and_never_panics() {
        assert_eq!(validity(&[]), None);
        assert_eq!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(validity(&[0x30, 0x03, 0x30, 0x01]), None);
        assert_eq!(time(b"\x17\x0d2611290000AAZ"), None);
        for len in 0..64 {
            let _ = validity(&vec![0x30; len]);
        }
    }
}
