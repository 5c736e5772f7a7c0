//! When to try again: exponential backoff with full jitter, or the wait the
//! receiver asked for (`Retry-After`), never past the job's deadline.

use std::time::Duration;

use rand::Rng;

/// First retry after about this long.
pub const BASE: Duration = Duration::from_secs(1);
/// Retries are never further apart than this (unless `Retry-After` says so).
pub const CAP: Duration = Duration::from_secs(300);

/// The wait before attempt `attempts + 1`, after `attempts` failed ones:
/// uniformly random in [d/2, d] with d = min(CAP, BASE·2^(attempts-1)), so
/// replicas retrying the same outage spread out; `retry_after` when the
/// receiver gave one (it knows best), plus up to 10 % so a burst of
/// rate-limited jobs does not return at the same instant.
pub fn delay(attempts: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
    if let Some(asked) = retry_after {
        let spread = asked.as_millis().min(u128::from(u64::MAX)) as u64 / 10;
        return asked + Duration::from_millis(rng.gen_range(0..=spread));
    }
    let exponent = attempts.saturating_sub(1).min(20);
    let full = BASE.saturating_mul(1u32 << exponent).min(CAP);
    let millis = full.as_millis() as u64;
    Duration::from_millis(rng.gen_range(millis / 2..=millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn doubles_with_jitter_up_to_the_cap() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (attempts, full) in [(1, 1_000), (2, 2_000), (3, 4_000), (9, 256_000), (10, 300_000), (40, 300_000)] {
            for _ in 0..200 {
                let d = delay(attempts, None, &mut rng).as_millis() as u64;
                assert!((full / 2..=full).contains(&d), "attempt {attempts}: {d} ms not in [{}, {full}]", full / 2);
            }
        }
    }

    #[test]
    fn retry_after_is_honoured() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let d = delay(1, Some(Duration::from_secs(30)), &mut rng);
            assert!(d >= Duration::from_secs(30) && d <= Duration::from_secs(33), "{d:?}");
        }
        assert_eq!(delay(5, Some(Duration::ZERO), &mut rng), Duration::ZERO);
    }
}
