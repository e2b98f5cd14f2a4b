//! Time as the control plane stores it (unix milliseconds) and shows it (RFC 3339, UTC).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Parses an RFC 3339 timestamp or unix seconds/milliseconds (as the usage and logs filters
/// accept) into unix milliseconds.
pub fn parse_instant(field: &str, s: &str) -> Result<i64, crate::error::ApiError> {
    if let Ok(n) = s.parse::<i64>() {
        // Heuristic: values below 10^11 are seconds.
        return Ok(if n.abs() < 100_000_000_000 {
            n * 1000
        } else {
            n
        });
    }
    OffsetDateTime::parse(s, &Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            crate::error::ApiError::validation(
                field,
                "expected an RFC 3339 timestamp or unix seconds",
            )
        })
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
    }
}
