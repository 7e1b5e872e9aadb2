//! Calendar dates of the catalog (`released = "2026-01-28"`) and the timestamps the Models and
//! Pricing APIs derive from them: Unix seconds for `created`, RFC 3339 for `released_at` and
//! `updated_at`. Written as strings in the TOML, like amounts, so a catalog reads the same in
//! every TOML library and a typo is reported by key.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

const SECONDS_PER_DAY: i64 = 86_400;

/// A day of the proleptic Gregorian calendar, `YYYY-MM-DD`, taken as midnight UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CalendarDate {
    year: i64,
    month: i64,
    day: i64,
}

impl CalendarDate {
    /// Seconds since 1970-01-01T00:00:00Z at the start of this day.
    pub fn unix_seconds(self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * SECONDS_PER_DAY
    }

    /// Midnight UTC of this day in RFC 3339: `2026-01-28T00:00:00Z`.
    pub fn rfc3339(self) -> String {
        rfc3339(self.unix_seconds())
    }
}

/// A Unix timestamp as RFC 3339 in UTC, to the second: `2026-01-28T13:05:09Z`.
pub fn rfc3339(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(SECONDS_PER_DAY);
    let second_of_day = unix_seconds.rem_euclid(SECONDS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's `days_from_civil`: 400-year eras of
/// 146,097 days, years starting in March so the leap day comes last).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Why a date was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a date written YYYY-MM-DD (1970 to 9999)")]
pub struct InvalidDate(String);

impl FromStr for CalendarDate {
    type Err = InvalidDate;

    /// Exactly `YYYY-MM-DD`, a real day from 1970 on: a timestamp before the epoch would be a
    /// negative `created`.
    fn from_str(s: &str) -> Result<Self, InvalidDate> {
        let invalid = || InvalidDate(s.to_owned());
        let bytes = s.as_bytes();
        let shape_ok = bytes.len() == 10
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && bytes
                .iter()
                .enumerate()
                .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
        if !shape_ok {
            return Err(invalid());
        }
        let number = |range: std::ops::Range<usize>| s[range].parse::<i64>().map_err(|_| invalid());
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        if year < 1970
            || !(1..=12).contains(&month)
            || !(1..=days_in_month(year, month)).contains(&day)
        {
            return Err(invalid());
        }
        Ok(Self { year, month, day })
    }
}

impl fmt::Display for CalendarDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl Serialize for CalendarDate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CalendarDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> CalendarDate {
        s.parse().unwrap()
    }

    #[test]
    fn dates_become_unix_midnight() {
        assert_eq!(date("1970-01-01").unix_seconds(), 0);
        assert_eq!(date("2026-01-28").unix_seconds(), 1_769_558_400);
        assert_eq!(date("2026-06-15").unix_seconds(), 1_781_481_600);
        assert_eq!(date("2000-02-29").unix_seconds(), 951_782_400);
        assert_eq!(date("2026-01-28").rfc3339(), "2026-01-28T00:00:00Z");
        assert_eq!(date("2026-01-28").to_string(), "2026-01-28");
    }

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(1_769_558_400 + 13 * 3600 + 5 * 60 + 9),
            "2026-01-28T13:05:09Z"
        );
        assert_eq!(rfc3339(951_782_400 + 86_399), "2000-02-29T23:59:59Z");
    }

    #[test]
    fn every_day_round_trips() {
        // 1970 to past 2100 (not a leap year), through 2000 (one).
        for days in 0..50_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            let text = format!("{y:04}-{m:02}-{d:02}");
            assert_eq!(date(&text).unix_seconds(), days * SECONDS_PER_DAY, "{text}");
        }
    }

    #[test]
    fn only_real_days_in_the_exact_form_are_dates() {
        for bad in [
            "2026-1-28",
            "2026-01-28T00:00:00Z",
            "26-01-28",
            "2026/01/28",
            "2026-13-01",
            "2026-00-10",
            "2026-02-29",
            "2100-02-29",
            "2026-04-31",
            "1969-12-31",
            "+026-01-28",
            "２０２６-01-28",
            "",
        ] {
            assert!(bad.parse::<CalendarDate>().is_err(), "{bad}");
        }
        assert!("2024-02-29".parse::<CalendarDate>().is_ok());
    }
}
