//! Time windows: days of the week and a range of hours in an IANA time zone,
//! e.g. Monday to Friday, 08:00–19:00 in Europe/Berlin. A range whose end is
//! before its start (`22:00-06:00`) runs over midnight; the day test uses the
//! local day at the moment of the request.
//!
//! [`TimeWindow::next_change_after`] says when a window next opens or closes,
//! so that live connections admitted by it can be closed on time.

use chrono::{Datelike, Days, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike};
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

    /// The window as written: `mon,tue 08:00-19:00 Europe/Berlin`.
    pub(crate) fn describe(&self) -> String {
        const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let days = match self.days {
            ALL_DAYS => "every day".to_owned(),
            0b001_1111 => "weekdays".to_owned(),
            0b110_0000 => "weekends".to_owned(),
            bits => NAMES
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, d)| *d)
                .collect::<Vec<_>>()
                .join(","),
        };
        let hhmm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        format!("{days} {}-{} {}", hhmm(self.start_minute), hhmm(self.end_minute), self.zone.name())
    }

    /// The Unix time `now` as the window's local day and time: `sat 10:00`.
    pub(crate) fn local_time(&self, now: i64) -> String {
        match self.zone.timestamp_opt(now, 0).single() {
            Some(local) => local.format("%a %H:%M").to_string().to_ascii_lowercase(),
            None => format!("Unix time {now}"),
        }
    }

    /// The earliest Unix second after `now` at which [`Self::contains`]
    /// gives another answer than at `now`, or `None` when it never does (a
    /// window open every minute of every day). Exact across midnight and
    /// daylight-saving changes: candidates are the local midnights, starts
    /// and ends from yesterday to eight days ahead (both instants of a local
    /// time that occurs twice) and the zone's offset changes between them.
    pub fn next_change_after(&self, now: i64) -> Option<i64> {
        let inside = self.contains(now);
        let today = self.zone.timestamp_opt(now, 0).single()?.date_naive();
        let mut candidates: Vec<i64> = Vec::with_capacity(64);
        for day in 0..10u64 {
            let Some(date) = today.checked_sub_days(Days::new(1)).and_then(|d| d.checked_add_days(Days::new(day)))
            else {
                continue;
            };
            let midnight = NaiveDateTime::from(date);
            for minute in [0, self.start_minute, self.end_minute] {
                match self.zone.from_local_datetime(&(midnight + TimeDelta::minutes(i64::from(minute)))) {
                    LocalResult::Single(t) => candidates.push(t.timestamp()),
                    LocalResult::Ambiguous(first, second) => candidates.extend([first.timestamp(), second.timestamp()]),
                    // A local time skipped by a clock change: the change itself is a candidate.
                    LocalResult::None => {}
                }
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        let shifts: Vec<i64> = candidates
            .windows(2)
            .filter(|pair| self.offset(pair[0]) != self.offset(pair[1]))
            .map(|pair| self.first_offset_change(pair[0], pair[1]))
            .collect();
        candidates.extend(shifts);
        candidates.sort_unstable();
        candidates.into_iter().filter(|&t| t > now).find(|&t| self.contains(t) != inside)
    }

    /// The zone's offset from UTC at `t`, seconds.
    fn offset(&self, t: i64) -> i32 {
        self.zone.timestamp_opt(t, 0).single().map_or(0, |local| local.offset().fix().local_minus_utc())
    }

    /// The first second in `(low, high]` with another offset than at `low`.
    fn first_offset_change(&self, mut low: i64, mut high: i64) -> i64 {
        let before = self.offset(low);
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if self.offset(middle) == before {
                low = middle;
            } else {
                high = middle;
            }
        }
        high
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
        // Lazily: `h` may be any u16 here, and `h * 60` overflows past 1092.
        valid.then(|| h * 60 + m)
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
    fn windows_describe_themselves_and_the_local_time() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let window = TimeWindow::new(parse_days("weekdays").unwrap(), 8 * 60, 19 * 60, berlin);
        assert_eq!(window.describe(), "weekdays 08:00-19:00 Europe/Berlin");
        assert_eq!(window.local_time(at("2026-11-28 10:00", berlin)), "sat 10:00");
        let odd = TimeWindow::new(0b100_0001, 22 * 60, 6 * 60, chrono_tz::UTC);
        assert_eq!(odd.describe(), "mon,sun 22:00-06:00 UTC");
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
    fn next_change_in_office_hours() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let window = TimeWindow::new(parse_days("weekdays").unwrap(), 8 * 60, 19 * 60, berlin);
        let next = |now: &str| window.next_change_after(at(now, berlin));
        assert_eq!(next("2026-11-23 10:00"), Some(at("2026-11-23 19:00", berlin)));
        assert_eq!(next("2026-11-23 07:59"), Some(at("2026-11-23 08:00", berlin)));
        assert_eq!(next("2026-11-23 08:00"), Some(at("2026-11-23 19:00", berlin)), "strictly after now");
        assert_eq!(next("2026-11-27 19:00"), Some(at("2026-11-30 08:00", berlin)), "Friday evening to Monday");
        assert_eq!(next("2026-11-28 12:00"), Some(at("2026-11-30 08:00", berlin)), "Saturday");
    }

    #[test]
    fn next_change_over_midnight() {
        let utc = chrono_tz::UTC;
        let nightly = TimeWindow::new(ALL_DAYS, 22 * 60, 6 * 60, utc);
        assert_eq!(nightly.next_change_after(at("2026-11-23 23:00", utc)), Some(at("2026-11-24 06:00", utc)));
        assert_eq!(nightly.next_change_after(at("2026-11-23 12:00", utc)), Some(at("2026-11-23 22:00", utc)));
        // Monday nights only: the day test uses the local day, so Tuesday 00:00 closes it.
        let monday_nights = TimeWindow::new(1, 22 * 60, 6 * 60, utc);
        assert_eq!(monday_nights.next_change_after(at("2026-11-23 23:00", utc)), Some(at("2026-11-24 00:00", utc)));
        let until_midnight = TimeWindow::new(1, 20 * 60, 24 * 60, utc);
        assert_eq!(until_midnight.next_change_after(at("2026-11-23 21:00", utc)), Some(at("2026-11-24 00:00", utc)));
        assert_eq!(until_midnight.next_change_after(at("2026-11-24 00:00", utc)), Some(at("2026-11-30 20:00", utc)));
        let always = TimeWindow::new(ALL_DAYS, 0, 24 * 60, utc);
        assert_eq!(always.next_change_after(at("2026-11-23 12:00", utc)), None);
    }

    #[test]
    fn next_change_across_daylight_saving() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let utc = chrono_tz::UTC;
        // 2026-03-29: 02:00 local does not exist (01:00 UTC, clocks go to 03:00).
        let early = TimeWindow::new(ALL_DAYS, 2 * 60 + 30, 4 * 60, berlin);
        assert_eq!(early.next_change_after(at("2026-03-29 00:00", utc)), Some(at("2026-03-29 01:00", utc)));
        assert_eq!(early.next_change_after(at("2026-03-29 01:00", utc)), Some(at("2026-03-29 02:00", utc)));
        // Office hours the Friday before: the next opening is Monday 08:00 summer time.
        let office = TimeWindow::new(parse_days("weekdays").unwrap(), 8 * 60, 19 * 60, berlin);
        assert_eq!(office.next_change_after(at("2026-03-27 20:00", berlin)), Some(at("2026-03-30 06:00", utc)));
        // 2026-10-25: 03:00 local goes back to 02:00 (at 01:00 UTC), so 02:00-02:59 happens twice.
        let late = TimeWindow::new(ALL_DAYS, 0, 2 * 60 + 30, berlin);
        assert_eq!(late.next_change_after(at("2026-10-24 22:00", utc)), Some(at("2026-10-25 00:30", utc)));
        assert_eq!(late.next_change_after(at("2026-10-25 00:45", utc)), Some(at("2026-10-25 01:00", utc)), "back in");
        assert_eq!(late.next_change_after(at("2026-10-25 01:00", utc)), Some(at("2026-10-25 01:30", utc)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// The answer is a change, and nothing changes before it.
        #[test]
        fn next_change_is_the_first_change(
            days in 1u8..128,
            start in 0u16..1440,
            length in 1u16..1440,
            zone in proptest::sample::select(vec!["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]),
            now in 1_767_225_600i64..1_830_297_600,
        ) {
            let zone: Tz = zone.parse().unwrap();
            let window = TimeWindow::new(days, start, (start + length) % 1440 + u16::from(start + length == 1440) * 1440, zone);
            let inside = window.contains(now);
            match window.next_change_after(now) {
                Some(change) => {
                    proptest::prop_assert!(change > now);
                    proptest::prop_assert_ne!(window.contains(change), inside);
                    let mut t = now + 1;
                    while t < change {
                        proptest::prop_assert_eq!(window.contains(t), inside, "changed at {} before {}", t, change);
                        t = (t + 60 - t.rem_euclid(60)).min(change - 1).max(t + 1);
                    }
                }
                None => {
                    for step in 0..(9 * 24 * 4) {
                        proptest::prop_assert_eq!(window.contains(now + step * 900), inside);
                    }
                }
            }
        }
    }

    #[test]
    fn parse_errors_say_what_was_expected() {
        assert_eq!(parse_hours("08:00-24:00"), Ok((480, 1440)));
        assert!(parse_hours("8-19").is_err());
        assert!(parse_hours("25:00-26:00").is_err());
        // Found by the policy_yaml fuzz target: an hour past 1092 overflowed `h * 60`.
        for huge in ["47002:00-0:", "65535:59-08:00", "08:00-65535:00"] {
            assert!(parse_hours(huge).is_err(), "{huge}");
        }
        assert!(parse_days("funday").is_err());
        assert!(parse_zone("Mars/Olympus").unwrap_err().contains("unknown time zone"));
    }
}
