//! Time as the control plane stores it (unix milliseconds) and shows it (RFC 3339, UTC).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The instants a filter may name, in unix milliseconds: years 0000 to 9999, what RFC 3339
/// can write. Outside it, arithmetic on a range (a default `from` a week before `to`) could
/// overflow.
const INSTANT_MS: std::ops::RangeInclusive<i64> = -62_167_219_200_000..=253_402_300_799_999;

/// Parses an RFC 3339 timestamp or unix seconds/milliseconds (as the usage and logs filters
/// accept) into unix milliseconds.
pub fn parse_instant(field: &str, s: &str) -> Result<i64, crate::error::ApiError> {
    let ms = if let Ok(n) = s.parse::<i64>() {
        // Heuristic: values below 10^11 are seconds.
        if n.unsigned_abs() < 100_000_000_000 {
            n * 1000
        } else {
            n
        }
    } else {
        OffsetDateTime::parse(s, &Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .map_err(|_| {
                crate::error::ApiError::validation(
                    field,
                    "expected an RFC 3339 timestamp or unix seconds",
                )
            })?
    };
    if !INSTANT_MS.contains(&ms) {
        return Err(crate::error::ApiError::validation(
            field,
            "must be between the years 0000 and 9999",
        ));
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_600_123), "2025-01-01T00:00:00.123Z");
        assert_eq!(
            parse_instant("from", "2025-01-01T00:00:00Z").unwrap(),
            1_735_689_600_000
        );
        assert_eq!(
            parse_instant("from", "1735689600").unwrap(),
            1_735_689_600_000
        );
        assert!(parse_instant("from", "yesterday").is_err());
        // The ends of i64 (i64::MIN has no absolute value) and of RFC 3339.
        for s in [
            "-9223372036854775808",
            "9223372036854775807",
            "253402300800000",
        ] {
            assert!(parse_instant("to", s).is_err(), "{s}");
        }
        assert_eq!(
            parse_instant("to", "9999-12-31T23:59:59.999Z").unwrap(),
            *INSTANT_MS.end()
        );
        assert_eq!(
            parse_instant("from", "0000-01-01T00:00:00Z").unwrap(),
            *INSTANT_MS.start()
        );
    }
}
