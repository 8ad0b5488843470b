//! Durations written as `500ms`, `5s`, `2m`, or a plain number of seconds.

use std::fmt::Write as _;
use std::time::Duration;

/// The longest duration any of pgnotify's own settings accepts: one day.
///
/// The bound keeps `now + duration` far away from overflowing an
/// [`Instant`](std::time::Instant), and catches unit mistakes (`5000` meant
/// as milliseconds).
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

const UNITS: [(&str, Duration); 7] = [
    ("ns", Duration::from_nanos(1)),
    ("us", Duration::from_micros(1)),
    ("ms", Duration::from_millis(1)),
    ("s", Duration::from_secs(1)),
    ("m", Duration::from_secs(60)),
    ("min", Duration::from_secs(60)),
    ("h", Duration::from_secs(3600)),
];

pub(crate) const EXPECTED: &str = "expected a whole number with an optional unit (ns, us, ms, s, m, h), e.g. 500ms, 5s, 2m; \
     a plain number is seconds";

/// Parses `500ms`, `5s`, `2m`, `1h`, `250us`, `10ns` or a plain number of
/// seconds. Surrounding whitespace and a space before the unit are allowed.
pub(crate) fn parse(text: &str) -> Result<Duration, &'static str> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(EXPECTED);
    }
    let unit = unit.trim_start();
    let scale = if unit.is_empty() {
        Duration::from_secs(1)
    } else {
        UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|&(_, scale)| scale)
            .ok_or(EXPECTED)?
    };
    let count: u64 = digits.parse().map_err(|_| TOO_LONG)?;
    // Every unit is a whole number of nanoseconds well below u64::MAX.
    let scale_nanos = u64::try_from(scale.as_nanos()).map_err(|_| TOO_LONG)?;
    let nanos = scale_nanos.checked_mul(count).ok_or(TOO_LONG)?;
    let duration = Duration::from_nanos(nanos);
    if duration > MAX_DURATION {
        return Err(TOO_LONG);
    }
    Ok(duration)
}

const TOO_LONG: &str = "must be at most 24h";

/// Writes `duration` in the largest unit that represents it exactly, so that
/// [`parse`] gives back the same value.
pub(crate) fn format(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    let mut out = String::new();
    let (count, unit) = if nanos == 0 {
        (0, "s")
    } else if nanos % 3_600_000_000_000 == 0 {
        (nanos / 3_600_000_000_000, "h")
    } else if nanos % 60_000_000_000 == 0 {
        (nanos / 60_000_000_000, "m")
    } else if nanos % 1_000_000_000 == 0 {
        (nanos / 1_000_000_000, "s")
    } else if nanos % 1_000_000 == 0 {
        (nanos / 1_000_000, "ms")
    } else if nanos % 1_000 == 0 {
        (nanos / 1_000, "us")
    } else {
        (nanos, "ns")
    };
    let _ = write!(out, "{count}{unit}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_plain_seconds_parse() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse(" 3 s "), Ok(Duration::from_secs(3)));
        assert_eq!(parse("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn malformed_durations_are_refused() {
        for bad in ["", "s", "5x", "-1s", "1.5s", "5 ms x", "5S"] {
            assert_eq!(parse(bad), Err(EXPECTED), "input {bad:?}");
        }
    }

    #[test]
    fn durations_beyond_a_day_are_refused_without_overflow() {
        assert_eq!(parse("25h"), Err(TOO_LONG));
        assert_eq!(parse("99999999999999999999999h"), Err(TOO_LONG));
        assert_eq!(parse("4294967295h"), Err(TOO_LONG));
        assert_eq!(parse("24h"), Ok(MAX_DURATION));
    }

    #[test]
    fn format_round_trips_through_parse() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_micros(1500),
            Duration::from_millis(100),
            Duration::from_millis(1500),
            Duration::from_secs(90),
            Duration::from_secs(120),
            Duration::from_secs(7200),
            Duration::new(3, 7),
        ] {
            assert_eq!(parse(&format(d)), Ok(d), "formatted as {}", format(d));
        }
        assert_eq!(format(Duration::from_millis(100)), "100ms");
        assert_eq!(format(Duration::from_secs(120)), "2m");
    }
}
