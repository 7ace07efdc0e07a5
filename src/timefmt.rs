//! RFC 3339 UTC timestamps with millisecond precision (`2025-01-01T12:00:00.123Z`), the
//! one timestamp format of every JSON answer and of the shutdown log (DESIGN §5).
//!
//! Written from Unix time with the civil-from-days algorithm (Howard Hinnant,
//! <https://howardhinnant.github.io/date_algorithms.html#civil_from_days>) so that gsup
//! needs no date crate for one format. Never reads the local time zone.

use std::time::{SystemTime, UNIX_EPOCH};

/// `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC, truncated (not rounded) to the millisecond so
/// a timestamp never lies in the future of the instant it names.
pub fn rfc3339_millis(t: SystemTime) -> String {
    rfc3339(t, Fraction::Millis)
}

/// `t` as `YYYY-MM-DDTHH:MM:SS.uuuuuuZ` in UTC, truncated to the microsecond: the log
/// lines' timestamps (DESIGN §10), as tracing-subscriber wrote them.
pub fn rfc3339_micros(t: SystemTime) -> String {
    rfc3339(t, Fraction::Micros)
}

#[derive(Clone, Copy)]
enum Fraction {
    Millis,
    Micros,
}

fn rfc3339(t: SystemTime, fraction: Fraction) -> String {
    let (per_second, digits) = match fraction {
        Fraction::Millis => (1_000, 3),
        Fraction::Micros => (1_000_000, 6),
    };
    let unit_nanos = 1_000_000_000 / per_second;
    // Seconds since the epoch and units within the second, signed: a clock set before
    // 1970 must still print.
    let (secs, part) = match t.duration_since(UNIX_EPOCH) {
        // Without 128-bit division: the shutdown report writes ~25 timestamps on gsup's
        // way out (issue 14).
        Ok(after) => (
            i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            i64::from(after.subsec_nanos()) / unit_nanos,
        ),
        Err(before) => {
            let d = before.duration();
            // Truncation towards the past: -0.0005 s is 1969-12-31T23:59:59.999Z.
            let whole = i64::try_from(d.as_nanos() / unit_nanos as u128).unwrap_or(i64::MAX);
            let partial = i64::from(d.as_nanos() % unit_nanos as u128 != 0);
            let units = -whole - partial;
            (units.div_euclid(per_second), units.rem_euclid(per_second))
        }
    };
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (of_day / 3600, of_day % 3600 / 60, of_day % 60);
    if !(0..=9999).contains(&year) {
        return format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{part:0digits$}Z");
    }
    // The common case by hand: `format!` costs ~2,800 instructions a timestamp, and the
    // shutdown report writes about thirty of them on gsup's way out.
    let mut out = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut value: i64| {
        for slot in out[at..at + width].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, i64::from(month));
    put(8, 2, i64::from(day));
    put(11, 2, hour);
    put(14, 2, minute);
    put(17, 2, second);
    put(20, digits, part);
    let end = 20 + digits;
    out[end] = b'Z';
    // ASCII digits and separators only: always UTF-8, and far cheaper to copy than to
    // collect char by char.
    String::from_utf8_lossy(&out[..=end]).into_owned()
}

/// (year, month 1–12, day 1–31) of the proleptic Gregorian calendar for `days` since
/// 1970-01-01. Eras are 400-year cycles starting on March 1st, which puts the leap day
/// at the end of the year and makes every month length a linear function.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
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

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn micros_for_the_log() {
        let t = at(1_735_732_800, 123) + Duration::from_nanos(456_789);
        assert_eq!(rfc3339_micros(t), "2025-01-01T12:00:00.123456Z");
        assert_eq!(
            rfc3339_micros(UNIX_EPOCH - Duration::from_nanos(1)),
            "1969-12-31T23:59:59.999999Z"
        );
        assert_eq!(rfc3339_micros(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn the_epoch() {
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn known_dates() {
        // Values from `date -u -d @SECS`.
        assert_eq!(rfc3339_millis(at(1_735_732_800, 123)), "2025-01-01T12:00:00.123Z");
        assert_eq!(rfc3339_millis(at(951_782_400, 0)), "2000-02-29T00:00:00.000Z"); // 400-year leap
        assert_eq!(rfc3339_millis(at(951_868_799, 999)), "2000-02-29T23:59:59.999Z");
        assert_eq!(rfc3339_millis(at(951_868_800, 0)), "2000-03-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(at(1_709_164_800, 5)), "2024-02-29T00:00:00.005Z");
        assert_eq!(rfc3339_millis(at(1_677_628_800, 0)), "2023-03-01T00:00:00.000Z"); // no Feb 29
        assert_eq!(rfc3339_millis(at(4_107_542_400, 0)), "2100-03-01T00:00:00.000Z"); // 2100 not leap
        assert_eq!(rfc3339_millis(at(1_704_067_199, 0)), "2023-12-31T23:59:59.000Z");
        assert_eq!(rfc3339_millis(at(2_147_483_648, 0)), "2038-01-19T03:14:08.000Z"); // past i32
    }

    #[test]
    fn truncates_to_the_millisecond() {
        let t = at(1_735_732_800, 123) + Duration::from_micros(999);
        assert_eq!(rfc3339_millis(t), "2025-01-01T12:00:00.123Z");
    }

    #[test]
    fn before_the_epoch() {
        let t = UNIX_EPOCH - Duration::from_micros(500);
        assert_eq!(rfc3339_millis(t), "1969-12-31T23:59:59.999Z");
        let t = UNIX_EPOCH - Duration::from_secs(86_400 * 365);
        assert_eq!(rfc3339_millis(t), "1969-01-01T00:00:00.000Z");
    }

    #[test]
    fn every_day_round_trips_through_the_calendar() {
        // Negative control for the arithmetic: consecutive days never skip or repeat a
        // date, across 1900–2200 (leap rules of 1900, 2000 and 2100 included).
        let mut previous = civil_from_days(-25_567); // 1900-01-01
        assert_eq!(previous, (1900, 1, 1));
        for days in -25_566..84_000 {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = previous;
            let next_day = (y, m, d) == (py, pm, pd + 1);
            let next_month = (y, m, d) == (py, pm + 1, 1);
            let next_year = (y, m, d) == (py + 1, 1, 1) && (pm, pd) == (12, 31);
            assert!(next_day || next_month || next_year, "{previous:?} -> {:?}", (y, m, d));
            if next_month || next_year {
                let leap = py % 4 == 0 && (py % 100 != 0 || py % 400 == 0);
                let length = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
                assert_eq!(pd, length[pm as usize - 1], "{previous:?} is not a month's end");
            }
            previous = (y, m, d);
        }
    }
}
