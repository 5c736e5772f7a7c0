//! Time windows: days of the week and a range of hours in an IANA time zone,
//! e.g. Monday to Friday, 08:00–19:00 in Europe/Berlin. A range whose end is
//! before its start (`22:00-06:00`) runs over midnight; the day test uses the
//! local day at the moment of the request.

use chrono::{Datelike, TimeZone, Timelike};
use chrono_tz::Tz;

/// A weekly window in a time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeWindow {
    /// Bit 0 = Monday … bit 6 = Sunday.
    days: u8,
    /// Minutes after local midnight, start inclusive.
    start_minute: u16,
    /// Minutes after local midnight, end exclusive.
    end_minute: u16,
    zone: Tz,
}

/// Every day of the week.
pub(crate) const ALL_DAYS: u8 = 0b111_1111;

impl TimeWindow {
    /// A window on `days` (bit 0 = Monday) from `start` to `end` minutes after
    /// midnight in `zone`.
    pub(crate) fn new(days: u8, start_minute: u16, end_minute: u16, zone: Tz) -> Self {
        Self { days, start_minute, end_minute, zone }
    }

    /// True when the Unix time `now` (seconds) falls inside the window.
    pub fn contains(&self, now: i64) -> bool {
        let Some(local) = self.zone.timestamp_opt(now, 0).single() else {
            return false;
        };
        let day_bit = 1u8 << local.weekday().num_days_from_monday();
        let minute = (local.hour() * 60 + local.minute()) as u16;
        let in_hours = if self.start_minute <= self.end_minute {
            (self.start_minute..self.end_minute).contains(&minute)
        } else {
            minute >= self.start_minute || minute < self.end_minute
        };
        self.days & day_bit != 0 && in_hours
    }

    /// True when every moment inside `other` is also inside `self` (used to
    /// find rules shadowed by an earlier one). Conservative: equal windows only.
    pub(crate) fn covers(&self, other: &Self) -> bool {
        self == other
    }
}

/// Parses a day name (`mon`, `Monday`, …) into its bit; `weekdays` and
/// `weekends` name groups.
pub(crate) fn parse_days(text: &str) -> Result<u8, String> {
    let bits = match text.to_ascii_lowercase().as_str() {
        "mon" | "monday" => 1,
        "tue" | "tuesday" => 1 << 1,
        "wed" | "wednesday" => 1 << 2,
        "thu" | "thursday" => 1 << 3,
        "fri" | "friday" => 1 << 4,
        "sat" | "saturday" => 1 << 5,
        "sun" | "sunday" => 1 << 6,
        "weekdays" => 0b001_1111,
        "weekends" => 0b110_0000,
        _ => return Err(format!("expected a day such as `mon` or `weekdays`, found `{text}`")),
    };
    Ok(bits)
}

/// Parses `HH:MM-HH:MM` into (start, end) minutes after midnight. `24:00` is
/// allowed as an end.
pub(crate) fn parse_hours(text: &str) -> Result<(u16, u16), String> {
    let expected = || format!("expected hours as `HH:MM-HH:MM`, e.g. `08:00-19:00`, found `{text}`");
    let (start, end) = text.split_once('-').ok_or_else(expected)?;
    let minute = |part: &str, allow_24: bool| -> Option<u16> {
        let (h, m) = part.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        let valid = (h < 24 && m < 60) || (allow_24 && h == 24 && m == 0);
        valid.then_some(h * 60 + m)
    };
    let (start, end) = (minute(start, false).ok_or_else(expected)?, minute(end, true).ok_or_else(expected)?);
    if start == end {
        return Err(format!("the hours `{text}` start and end at the same minute"));
    }
    Ok((start, end))
}

/// Parses an IANA time zone name such as `Europe/Berlin`.
pub(crate) fn parse_zone(text: &str) -> Result<Tz, String> {
    text.parse::<Tz>()
        .map_err(|_| format!("unknown time zone `{text}`; expected an IANA name such as `Europe/Berlin` or `UTC`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-23 is a Monday.
    fn at(date_time: &str, zone: Tz) -> i64 {
        let naive = chrono::NaiveDateTime::parse_from_str(date_time, "%Y-%m-%d %H:%M").unwrap();
        zone.from_local_datetime(&naive).single().unwrap().timestamp()
    }

    #[test]
    fn office_hours_in_a_zone() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let window = TimeWindow::new(parse_days("weekdays").unwrap(), 8 * 60, 19 * 60, berlin);
        assert!(window.contains(at("2026-11-23 08:00", berlin)));
        assert!(window.contains(at("2026-11-23 18:59", berlin)));
        assert!(!window.contains(at("2026-11-23 19:00", berlin)));
        assert!(!window.contains(at("2026-11-28 10:00", berlin)), "Saturday");
        // 07:30 UTC is 08:30 in Berlin in winter.
        assert!(window.contains(at("2026-11-23 07:30", chrono_tz::UTC)));
    }

    #[test]
    fn windows_over_midnight() {
        let utc = chrono_tz::UTC;
        let window = TimeWindow::new(ALL_DAYS, 22 * 60, 6 * 60, utc);
        assert!(window.contains(at("2026-11-23 23:00", utc)));
        assert!(window.contains(at("2026-11-23 05:59", utc)));
        assert!(!window.contains(at("2026-11-23 12:00", utc)));
    }

    #[test]
    fn parse_errors_say_what_was_expected() {
        assert_eq!(parse_hours("08:00-24:00"), Ok((480, 1440)));
        assert!(parse_hours("8-19").is_err());
        assert!(parse_hours("25:00-26:00").is_err());
        assert!(parse_days("funday").is_err());
        assert!(parse_zone("Mars/Olympus").unwrap_err().contains("unknown time zone"));
    }
}
