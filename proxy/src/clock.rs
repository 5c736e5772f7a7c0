//! The wall clock, in the two units the edge uses: Unix seconds (token
//! expiry, `exp`/`iat`, policy time conditions) and Unix milliseconds
//! (termination times, staleness, reports). One place, so no module mixes
//! them up or grows its own copy.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_units_read_the_same_clock() {
        let (s, ms) = (super::unix_now_s(), super::unix_now_ms());
        assert!(s > 1_700_000_000, "after 2023: {s}");
        assert!((ms / 1000 - s).abs() <= 1, "{ms} ms against {s} s");
    }
}
