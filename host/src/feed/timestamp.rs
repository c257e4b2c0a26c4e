//! The time column of a bar file, as data vendors and exchanges write it.
//!
//! Unless a strftime pattern is given, the layout is told from the first
//! row's value and every later row must follow it:
//! - `YYYY-MM-DD`: the day's start (midnight) in the zone;
//! - `YYYY-MM-DD HH:MM[:SS[.fff]]` (or with a `T`): a wall-clock time in
//!   the zone, which is how pandas and most vendors write;
//! - RFC 3339, with `Z` or an offset: an instant, whatever the zone;
//! - digits only: epoch seconds, milliseconds, microseconds or nanoseconds,
//!   told by their count (up to 11 digits are seconds, 12 to 14
//!   milliseconds, 15 to 17 microseconds, more nanoseconds), so any date
//!   from 1973 to 2286 is read right; seconds may have a fraction.
//!
//! The zone is UTC unless an IANA name is given; wall-clock times are then
//! read DST-aware (a time that a clock change skips is moved forward, one
//! it repeats is the first of the two). The zone database is built into the
//! binary, so the result does not depend on the machine.

use jiff::fmt::strtime::BrokenDownTime;
use jiff::tz::TimeZone;

use crate::bar::Millis;

/// What the user says about the time column, if anything.
#[derive(Debug, Clone)]
pub struct TimeSpec {
    /// A strftime pattern (`%Y-%m-%d %H:%M:%S`); detected when `None`.
    pattern: Option<String>,
    zone: TimeZone,
}

impl Default for TimeSpec {
    fn default() -> Self {
        Self { pattern: None, zone: TimeZone::UTC }
    }
}

/// A time zone name or pattern that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TimeSpecError {
    #[error("`{name}` is not an IANA time zone (e.g. America/New_York)")]
    Zone { name: String, source: jiff::Error },
    #[error("the time format must not be empty")]
    EmptyPattern,
}

impl TimeSpec {
    /// A wall-clock time, stored as if UTC (a Parquet timestamp not
    /// adjusted to UTC, or a date), read in this spec's zone.
    pub(crate) fn wall_clock_to_utc(&self, millis: Millis) -> Result<Millis, String> {
        if self.zone == TimeZone::UTC {
            return Ok(millis);
        }
        jiff::Timestamp::from_millisecond(millis)
            .ok()
            .and_then(|t| t.to_zoned(TimeZone::UTC).datetime().to_zoned(self.zone.clone()).ok())
            .map(|z| z.timestamp().as_millisecond())
            .ok_or_else(|| format!("time {millis} ms cannot be read in the given zone"))
    }

    /// `pattern` (strftime) and `zone` (an IANA name), each optional.
    pub fn new(pattern: Option<&str>, zone: Option<&str>) -> Result<Self, TimeSpecError> {
        if pattern.is_some_and(|p| p.trim().is_empty()) {
            return Err(TimeSpecError::EmptyPattern);
        }
        let zone = match zone {
            None => TimeZone::UTC,
            Some(name) => jiff::tz::db()
                .get(name)
                .map_err(|source| TimeSpecError::Zone { name: crate::runtime::bounded(name), source })?,
        };
        Ok(Self { pattern: pattern.map(str::to_string), zone })
    }
}

/// One time value, in any layout detection knows, read as UTC: for
/// command-line times such as `--from 2024-01-02`.
pub fn parse_instant(text: &str) -> Result<Millis, String> {
    let text = text.trim();
    let parser = TimeParser::detect(&TimeSpec::default(), text).ok();
    parser.and_then(|p| p.parse(text).ok()).ok_or_else(|| {
        format!(
            "`{}` is not a date (2024-01-02), a date and time, RFC 3339 or epoch time",
            crate::runtime::bounded(text)
        )
    })
}

/// How the values of one file are written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    Date,
    WallClock,
    Instant,
    /// Epoch time; the unit is 10^-`decimals` of a second.
    Epoch {
        decimals: u32,
    },
    Pattern {
        pattern: String,
    },
}

impl Layout {
    fn describe(&self) -> String {
        match self {
            Layout::Date => "YYYY-MM-DD".into(),
            Layout::WallClock => "YYYY-MM-DD HH:MM:SS".into(),
            Layout::Instant => "RFC 3339".into(),
            Layout::Epoch { decimals: 0 } => "epoch seconds".into(),
            Layout::Epoch { decimals: 3 } => "epoch milliseconds".into(),
            Layout::Epoch { decimals: 6 } => "epoch microseconds".into(),
            Layout::Epoch { .. } => "epoch nanoseconds".into(),
            Layout::Pattern { pattern } => format!("`{pattern}`"),
        }
    }
}

/// Reads one file's time values, in the layout of its first.
#[derive(Debug, Clone)]
pub(crate) struct TimeParser {
    layout: Layout,
    zone: TimeZone,
}

impl TimeParser {
    /// The parser for a file whose first time value is `first`.
    pub fn detect(spec: &TimeSpec, first: &str) -> Result<Self, String> {
        let layout = match &spec.pattern {
            Some(pattern) => Layout::Pattern { pattern: pattern.clone() },
            None => detect(first).ok_or_else(|| {
                format!(
                    "cannot tell how time `{}` is written: give its strftime pattern (--time-format)",
                    crate::runtime::bounded(first)
                )
            })?,
        };
        Ok(Self { layout, zone: spec.zone.clone() })
    }

    /// `text` as milliseconds since the epoch.
    pub fn parse(&self, text: &str) -> Result<Millis, String> {
        self.read(text).ok_or_else(|| {
            format!("time `{}` is not {} like the first row's", crate::runtime::bounded(text), self.layout.describe())
        })
    }

    fn read(&self, text: &str) -> Option<Millis> {
        // Most files are `YYYY-MM-DD[ HH:MM:SS]` in UTC: read those directly.
        if matches!(self.layout, Layout::Date | Layout::WallClock)
            && self.zone == TimeZone::UTC
            && let Some(millis) = utc_civil(text.as_bytes(), matches!(self.layout, Layout::Date))
        {
            return Some(millis);
        }
        let timestamp = match &self.layout {
            Layout::Date => {
                if text.len() != 10 {
                    return None;
                }
                text.parse::<jiff::civil::Date>().ok()?.to_zoned(self.zone.clone()).ok()?.timestamp()
            }
            Layout::WallClock => {
                let civil = text.parse::<jiff::civil::DateTime>().ok()?;
                // A bare date is not a time of day.
                if text.len() <= 10 {
                    return None;
                }
                civil.to_zoned(self.zone.clone()).ok()?.timestamp()
            }
            Layout::Instant => text.parse::<jiff::Timestamp>().ok()?,
            Layout::Epoch { decimals } => return epoch(text, *decimals),
            Layout::Pattern { pattern } => {
                let broken = BrokenDownTime::parse(pattern, text).ok()?;
                match broken.offset() {
                    Some(_) => broken.to_timestamp().ok()?,
                    None => match broken.to_datetime() {
                        Ok(civil) => civil.to_zoned(self.zone.clone()).ok()?.timestamp(),
                        Err(_) => broken.to_date().ok()?.to_zoned(self.zone.clone()).ok()?.timestamp(),
                    },
                }
            }
        };
        Some(timestamp.as_millisecond())
    }
}

/// `YYYY-MM-DD` (when `date`) or `YYYY-MM-DD HH:MM:SS` (or with a `T`)
/// as UTC milliseconds, for a valid date and time; `None` for anything else,
/// which the general parser then reads or refuses.
fn utc_civil(text: &[u8], date: bool) -> Option<Millis> {
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = text.get(range)?;
        digits.iter().try_fold(0i64, |n, &b| b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0')))
    };
    let shape = if date { text.len() == 10 } else { text.len() == 19 && matches!(text[10], b' ' | b'T') };
    if !shape || text[4] != b'-' || text[7] != b'-' {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day < 1 || day > month_days[(month - 1) as usize] {
        return None;
    }
    let seconds = if date {
        0
    } else {
        if text[13] != b':' || text[16] != b':' {
            return None;
        }
        let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        hour * 3600 + minute * 60 + second
    };
    // Days from 1970-01-01 to the date (the proleptic Gregorian calendar).
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y.div_euclid(400);
    let of_era = y - era * 400;
    let of_year = (153 * m + 2) / 5 + day - 1;
    let of_cycle = of_era * 365 + of_era / 4 - of_era / 100 + of_year;
    let days = era * 146_097 + of_cycle - 719_468;
    Some((days * 86_400 + seconds) * 1000)
}

/// The layout of `first`, if it is one of the common ones.
fn detect(first: &str) -> Option<Layout> {
    let (whole, fraction) = first.split_once('.').unwrap_or((first, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(whole) && (fraction.is_empty() || digits(fraction)) {
        let decimals = match whole.len() {
            _ if !fraction.is_empty() => 0,
            0..=11 => 0,
            12..=14 => 3,
            15..=17 => 6,
            _ => 9,
        };
        return Some(Layout::Epoch { decimals });
    }
    if first.len() == 10 && first.parse::<jiff::civil::Date>().is_ok() {
        return Some(Layout::Date);
    }
    if first.parse::<jiff::Timestamp>().is_ok() {
        return Some(Layout::Instant);
    }
    if first.len() > 10 && first.parse::<jiff::civil::DateTime>().is_ok() {
        return Some(Layout::WallClock);
    }
    None
}

/// Epoch `text` in units of 10^-`decimals` s (seconds may carry a
/// fraction), as milliseconds.
fn epoch(text: &str, decimals: u32) -> Option<Millis> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: i64 = whole.parse().ok()?;
    let millis = match decimals {
        0 => {
            if !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let ms: i64 = format!("{fraction:0<3}").get(..3)?.parse().ok()?;
            value.checked_mul(1000)?.checked_add(ms)?
        }
        _ if !fraction.is_empty() => return None,
        3 => value,
        6 => value / 1_000,
        _ => value / 1_000_000,
    };
    // Within what the engine's clock reads (years 1970 to 9999).
    (0..=253_402_300_799_999).contains(&millis).then_some(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The direct reading agrees with jiff's on every day of four centuries
    /// (leap years and their exceptions) and refuses what jiff refuses.
    #[test]
    fn the_direct_utc_reading_agrees_with_jiff() {
        let mut day = jiff::civil::date(1800, 1, 1);
        while day.year() < 2200 {
            let text = format!("{day} 13:07:59");
            let expected = text.parse::<jiff::civil::DateTime>().unwrap().to_zoned(TimeZone::UTC).unwrap();
            assert_eq!(utc_civil(text.as_bytes(), false), Some(expected.timestamp().as_millisecond()), "{text}");
            assert_eq!(
                utc_civil(day.to_string().as_bytes(), true),
                Some(expected.timestamp().as_millisecond() - 47_279_000)
            );
            day = day.tomorrow().unwrap();
        }
        for bad in [
            "2023-02-29 00:00:00",
            "2024-13-01 00:00:00",
            "2024-01-01 24:00:00",
            "2024-01-01 00:00:60",
            "2024-01-01x00:00:00",
            "2024-1-01 00:00:00",
        ] {
            assert_eq!(utc_civil(bad.as_bytes(), false), None, "{bad}");
        }
    }

    fn read(spec: &TimeSpec, first: &str, text: &str) -> Result<Millis, String> {
        TimeParser::detect(spec, first)?.parse(text)
    }

    fn auto(text: &str) -> Millis {
        read(&TimeSpec::default(), text, text).unwrap()
    }

    /// 2017-04-19 09:00:00 UTC.
    const T: Millis = 1_492_592_400_000;

    #[test]
    fn every_common_layout_is_detected() {
        assert_eq!(auto("2017-04-19"), T - 9 * 3_600_000);
        assert_eq!(auto("2017-04-19 09:00:00"), T);
        assert_eq!(auto("2017-04-19T09:00:00"), T);
        assert_eq!(auto("2017-04-19 09:00"), T);
        assert_eq!(auto("2017-04-19 09:00:00.250"), T + 250);
        assert_eq!(auto("2017-04-19T09:00:00Z"), T);
        assert_eq!(auto("2017-04-19T11:00:00+02:00"), T);
        assert_eq!(auto("1492592400"), T);
        assert_eq!(auto("1492592400.5"), T + 500);
        assert_eq!(auto("1492592400000"), T);
        assert_eq!(auto("1492592400000000"), T);
        assert_eq!(auto("1492592400000000000"), T);
    }

    #[test]
    fn a_zone_reads_wall_clock_times_across_daylight_saving() {
        let new_york = TimeSpec::new(None, Some("America/New_York")).unwrap();
        // EDT (UTC-4) in April, EST (UTC-5) in January.
        assert_eq!(read(&new_york, "2017-04-19 05:00:00", "2017-04-19 05:00:00"), Ok(T));
        assert_eq!(read(&new_york, "2017-01-19 04:00:00", "2017-01-19 04:00:00"), Ok(1_484_816_400_000));
        // Midnight of a day, in the zone.
        assert_eq!(read(&new_york, "2017-04-19", "2017-04-19"), Ok(T - 5 * 3_600_000));
        // A time the spring change skips (02:30 on 2017-03-12) moves forward.
        assert_eq!(
            read(&new_york, "2017-03-12 02:30:00", "2017-03-12 02:30:00"),
            read(&new_york, "2017-03-12 03:30:00", "2017-03-12 03:30:00")
        );
        // An instant with an offset is that instant, whatever the zone.
        assert_eq!(read(&new_york, "2017-04-19T09:00:00Z", "2017-04-19T09:00:00Z"), Ok(T));
        assert!(TimeSpec::new(None, Some("Mars/Olympus_Mons")).is_err());
    }

    #[test]
    fn a_pattern_reads_what_detection_cannot() {
        let us = TimeSpec::new(Some("%m/%d/%Y %H:%M"), None).unwrap();
        assert_eq!(read(&us, "04/19/2017 09:00", "04/19/2017 09:00"), Ok(T));
        let compact = TimeSpec::new(Some("%Y%m%d"), None).unwrap();
        assert_eq!(read(&compact, "20170419", "20170419"), Ok(T - 9 * 3_600_000));
        assert!(TimeSpec::new(Some(" "), None).is_err());
        let err = read(&TimeSpec::default(), "04/19/2017 09:00", "04/19/2017 09:00").unwrap_err();
        assert!(err.contains("--time-format"), "{err}");
    }

    #[test]
    fn every_row_must_follow_the_first() {
        let spec = TimeSpec::default();
        for (first, later) in [
            ("2017-04-19 09:00:00", "2017-04-19"),
            ("2017-04-19", "2017-04-19 09:00:00"),
            ("1492592400", "2017-04-19"),
            ("1492592400000", "1492592400.5"),
            ("2017-04-19T09:00:00Z", "2017-04-19 09:00:00"),
            ("2017-04-19", "2017-13-40"),
            ("1492592400", "-5"),
            ("1492592400", "99999999999999999999999"),
        ] {
            let err = read(&spec, first, later).unwrap_err();
            assert!(err.contains("like the first row's"), "{first} then {later}: {err}");
        }
    }
}
