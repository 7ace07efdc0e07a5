//! RFC 3339 timestamps with millisecond precision in UTC (`2025-01-01T12:00:00.123Z`),
//! the one format of every JSON timestamp gsup writes (DESIGN §5). No calendar crate:
//! days-from-civil arithmetic (Howard Hinnant's algorithm) is a dozen lines.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn rfc3339_millis(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// (year, month, day) of the day `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Seconds as the float JSON durations use (DESIGN §5).
pub fn seconds(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> String {
        rfc3339_millis(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
    }

    #[test]
    fn known_dates() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_735_732_800, 123), "2025-01-01T12:00:00.123Z");
        assert_eq!(
            at(951_782_400, 0),
            "2000-02-29T00:00:00.000Z",
            "leap day of a 400-year leap year"
        );
        assert_eq!(
            at(4_107_542_399, 999),
            "2100-02-28T23:59:59.999Z",
            "2100 is not a leap year"
        );
        assert_eq!(at(1_709_164_800, 5), "2024-02-29T00:00:00.005Z");
    }
}
