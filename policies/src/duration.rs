//! Durations written the way people write them: `90s`, `15m`, `8h`, `7d`,
//! or combined as `1h30m`.

/// Parses a duration into seconds. Returns a message saying what was expected.
pub fn parse_seconds(text: &str) -> Result<u32, String> {
    let expected = || format!("expected a duration such as `30m`, `8h` or `1h30m`, found `{text}`");
    if text.is_empty() {
        return Err(expected());
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for ch in text.chars() {
        if let Some(digit) = ch.to_digit(10) {
            number = Some(number.unwrap_or(0).saturating_mul(10).saturating_add(u64::from(digit)));
            continue;
        }
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(expected()),
        };
        total = total.saturating_add(number.take().ok_or_else(expected)?.saturating_mul(unit));
    }
    if number.is_some() {
        return Err(format!("`{text}` needs a unit: s, m, h or d"));
    }
    if total == 0 {
        return Err(format!("a duration must be longer than zero, found `{text}`"));
    }
    u32::try_from(total).map_err(|_| format!("`{text}` is too long (at most about 136 years)"))
}

/// Writes seconds the way [`parse_seconds`] reads them: `12h`, `1h30m`,
/// `7d`, `45s`.
pub fn format_seconds(seconds: u32) -> String {
    if seconds == 0 {
        return "0s".to_owned();
    }
    let mut text = String::new();
    let mut rest = seconds;
    for (unit, size) in [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)] {
        if rest >= size {
            text.push_str(&(rest / size).to_string());
            text.push(unit);
            rest %= size;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_what_it_parses() {
        for (seconds, text) in
            [(0, "0s"), (45, "45s"), (900, "15m"), (43_200, "12h"), (5_400, "1h30m"), (90_061, "1d1h1m1s")]
        {
            assert_eq!(format_seconds(seconds), text);
            if seconds > 0 {
                assert_eq!(parse_seconds(text), Ok(seconds));
            }
        }
    }

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse_seconds("90s"), Ok(90));
        assert_eq!(parse_seconds("15m"), Ok(900));
        assert_eq!(parse_seconds("8h"), Ok(28_800));
        assert_eq!(parse_seconds("1h30m"), Ok(5_400));
        assert_eq!(parse_seconds("7d"), Ok(604_800));
    }

    #[test]
    fn rejects_malformed_durations() {
        for bad in ["", "10", "h", "1x", "0m", "-1h", "1.5h", "99999999999d"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }
}
