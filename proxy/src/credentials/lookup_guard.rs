//! What stops a client from turning the edge into an amplifier against the
//! control plane (or its own CPU), in the order a credential meets them:
//!
//! 1. **Format checks** ([`jwt_format_ok`], [`service_token_format_ok`]):
//!    a token that cannot be one is refused before any decoding, signature
//!    check or lookup.
//! 2. **Negative cache** ([`NegativeCache`]): a service token the control
//!    plane did not know is refused without asking again for
//!    [`NEGATIVE_TTL_S`] seconds.
//! 3. **Per-client budget** ([`LookupBudget`]): lookups that reach the
//!    control plane (service tokens, `/.portcullis/session` checks) draw
//!    from a token bucket per client address ([`RATE_PER_S`], burst
//!    [`BURST`]); IPv6 clients are counted per /64, which one host holds.
//!
//! Every refusal is counted in `portcullis_edge_credential_lookups_refused_total{reason}`
//! (`format`, `negative_cache`, `rate_limit`).

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use dashmap::DashMap;

use crate::metrics::credential_lookups_refused;

/// Longest JWT looked at, bytes.
pub const MAX_JWT_BYTES: usize = 8 * 1024;
/// Seconds an unknown service token is refused without asking again.
pub const NEGATIVE_TTL_S: i64 = 60;
/// Lookups per second a client may cause, sustained.
pub const RATE_PER_S: f64 = 10.0;
/// Lookups a client may cause at once.
pub const BURST: f64 = 20.0;
/// Most remembered unknown tokens, and most clients with a budget in use.
const MAX_ENTRIES: usize = 100_000;

/// Why a credential never reached a verifier or the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not shaped like the token it claims to be.
    Format,
    /// A service token the control plane recently said it does not know.
    NegativeCache,
    /// The client's lookup budget is spent.
    RateLimit,
}

impl Refused {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Format => "format",
            Refused::NegativeCache => "negative_cache",
            Refused::RateLimit => "rate_limit",
        }
    }

    /// Counts this refusal in the metric.
    pub fn count(self) -> Self {
        credential_lookups_refused().with_label_values(&[self.label()]).inc();
        self
    }
}

fn base64url(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// True when `token` can be a compact JWS: three non-empty base64url parts, at most [`MAX_JWT_BYTES`].
pub fn jwt_format_ok(token: &str) -> bool {
    if token.len() > MAX_JWT_BYTES {
        return false;
    }
    let mut parts = token.as_bytes().split(|b| *b == b'.');
    let mut count = 0;
    for part in parts.by_ref() {
        count += 1;
        if count > 3 || part.is_empty() || !base64url(part) {
            return false;
        }
    }
    count == 3
}

/// True when `token` can be a service token: `pcst_` and 43 to 64 base64url characters.
pub fn service_token_format_ok(token: &str) -> bool {
    token
        .strip_prefix(super::service_token::PREFIX)
        .is_some_and(|rest| (43..=64).contains(&rest.len()) && base64url(rest.as_bytes()))
}

/// Service tokens the control plane did not know, by keyed hash, with when
/// to forget them. Bounded: when full, entries already expired go first,
/// then everything (a refill costs one lookup per token, within budgets).
pub struct NegativeCache {
    until: DashMap<u64, i64>,
    hasher: foldhash::fast::RandomState,
}

impl Default for NegativeCache {
    fn default() -> Self {
        Self { until: DashMap::new(), hasher: foldhash::fast::RandomState::default() }
    }
}

impl NegativeCache {
    /// True when `token` was recorded unknown less than [`NEGATIVE_TTL_S`] before `now` (Unix seconds).
    pub fn contains(&self, token: &str, now: i64) -> bool {
        self.until.get(&self.hasher.hash_one(token)).is_some_and(|until| *until > now)
    }

    /// Records that the control plane does not know `token`.
    pub fn insert(&self, token: &str, now: i64) {
        if self.until.len() >= MAX_ENTRIES {
            self.until.retain(|_, until| *until > now);
            if self.until.len() >= MAX_ENTRIES {
                self.until.clear();
            }
        }
        self.until.insert(self.hasher.hash_one(token), now + NEGATIVE_TTL_S);
    }

    /// Number of remembered tokens.
    pub fn len(&self) -> usize {
        self.until.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket per client address for lookups that reach the control plane.
pub struct LookupBudget {
    buckets: Mutex<std::collections::HashMap<IpAddr, Bucket>>,
    rate_per_s: f64,
    burst: f64,
}

impl Default for LookupBudget {
    fn default() -> Self {
        Self::new(RATE_PER_S, BURST)
    }
}

/// The address a budget is kept for: IPv4 (and IPv4-mapped) as is, IPv6 by its /64.
fn budget_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

impl LookupBudget {
    /// `rate_per_s` lookups per second per client, `burst` at once.
    pub fn new(rate_per_s: f64, burst: f64) -> Self {
        Self { buckets: Mutex::new(std::collections::HashMap::new()), rate_per_s, burst: burst.max(1.0) }
    }

    /// Takes one lookup from `client`'s budget at `now`; false (and counted)
    /// when it is spent.
    pub fn try_acquire(&self, client: IpAddr, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_ENTRIES {
            // Full buckets carry no information: forget them.
            let (rate, burst) = (self.rate_per_s, self.burst);
            buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst);
            if buckets.len() >= MAX_ENTRIES {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(budget_key(client)).or_insert(Bucket { tokens: self.burst, at: now });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.rate_per_s;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = bucket.at.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            Refused::RateLimit.count();
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn malformed_tokens_fail_the_format_checks() {
        for hostile in [
            "",
            "a.b",
            "a.b.c.d",
            "a..c",
            ".b.c",
            "a.b.",
            "a.b.c=",
            "a+b.c.d",
            "a.b/c.d",
            "a.b.c ",
            "é.b.c",
            &format!("{}.b.c", "a".repeat(MAX_JWT_BYTES)),
        ] {
            assert!(!jwt_format_ok(hostile), "{hostile:?}");
        }
        for hostile in [
            "pcst_",
            "pcst_short",
            &format!("pcst_{}", "a".repeat(42)),
            &format!("pcst_{}", "a".repeat(65)),
            &format!("pcst_{}+", "a".repeat(43)),
            &format!("pcat_{}", "a".repeat(43)),
            &format!("PCST_{}", "a".repeat(43)),
        ] {
            assert!(!service_token_format_ok(hostile), "{hostile:?}");
        }
        assert!(jwt_format_ok("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_"));
        assert!(service_token_format_ok(&format!("pcst_{}", "Ab-_9".repeat(9).get(..43).unwrap())));
    }

    #[test]
    fn unknown_tokens_are_remembered_for_a_minute() {
        let cache = NegativeCache::default();
        cache.insert("pcst_x", 100);
        assert!(cache.contains("pcst_x", 100 + NEGATIVE_TTL_S - 1));
        assert!(!cache.contains("pcst_x", 100 + NEGATIVE_TTL_S), "forgotten after the TTL");
        assert!(!cache.contains("pcst_y", 100));
        for n in 0..(MAX_ENTRIES + 10) {
            cache.insert(&format!("t{n}"), 200);
        }
        assert!(cache.len() <= MAX_ENTRIES, "bounded");
    }

    #[test]
    fn a_client_past_its_burst_is_refused_until_the_bucket_refills() {
        let budget = LookupBudget::new(10.0, 20.0);
        let start = Instant::now();
        let attacker: IpAddr = "203.0.113.9".parse().unwrap();
        let granted = (0..100).filter(|_| budget.try_acquire(attacker, start)).count();
        assert_eq!(granted, 20, "the burst, then nothing");
        assert!(budget.try_acquire("198.51.100.1".parse().unwrap(), start), "other clients keep theirs");
        assert!(!budget.try_acquire("::ffff:203.0.113.9".parse().unwrap(), start), "the same IPv4 client, mapped");
        assert!(budget.try_acquire(attacker, start + Duration::from_millis(100)), "one lookup per 100 ms");
        assert!(!budget.try_acquire(attacker, start + Duration::from_millis(100)));
    }

    #[test]
    fn ipv6_clients_share_a_budget_per_64() {
        let budget = LookupBudget::new(1.0, 2.0);
        let now = Instant::now();
        assert!(budget.try_acquire("2001:db8:1:2::1".parse().unwrap(), now));
        assert!(budget.try_acquire("2001:db8:1:2:ffff::9".parse().unwrap(), now));
        assert!(!budget.try_acquire("2001:db8:1:2:abcd::3".parse().unwrap(), now), "another address of the same /64");
        assert!(budget.try_acquire("2001:db8:1:3::1".parse().unwrap(), now), "another /64");
    }
}
