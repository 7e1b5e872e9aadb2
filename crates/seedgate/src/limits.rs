//! Request-rate limiting per key: a token bucket of `burst` requests refilled at
//! `requests_per_second`. Buckets live in this process: with several replicas each enforces its
//! share of the limit (`limits.replicas`, see `LimitsConfig::share`), so a balancer spreading a
//! key's requests evenly lets through the configured rate in all, without a shared counter on
//! the request path.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

use crate::ids::AccountId;

/// The answer for one request, with what the `X-RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// The sustained rate, in requests a minute (the platform's `X-RateLimit-Limit`).
    pub limit_per_minute: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_seconds: u64,
    /// Seconds until one request is allowed (0 when allowed now).
    pub retry_after_seconds: u64,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets per caller: API keys, or organizations on the management API.
pub struct RateLimiter<K = AccountId> {
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K> Default for RateLimiter<K> {
    fn default() -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// Takes one token from `key`'s bucket if it has one.
    pub fn check(&self, key: &K, per_second: u32, burst: u32, now: Instant) -> Decision {
        let rate = f64::from(per_second.max(1));
        let capacity = f64::from(burst.max(1));
        let Ok(mut buckets) = self.buckets.lock() else {
            // A poisoned lock must not take the API down: let the request through.
            return Decision {
                allowed: true,
                limit_per_minute: per_second.saturating_mul(60),
                remaining: burst,
                reset_seconds: 0,
                retry_after_seconds: 0,
            };
        };
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.last = now;
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        Decision {
            allowed,
            limit_per_minute: per_second.max(1).saturating_mul(60),
            remaining: bucket.tokens.floor() as u32,
            reset_seconds: ((capacity - bucket.tokens) / rate).ceil() as u64,
            retry_after_seconds: if allowed {
                0
            } else {
                ((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_steady_rate() {
        let limiter = RateLimiter::default();
        let t0 = Instant::now();
        for remaining in [2, 1, 0] {
            let d = limiter.check(&AccountId::new("k"), 2, 3, t0);
            assert!(d.allowed);
            assert_eq!(d.remaining, remaining);
        }
        let refused = limiter.check(&AccountId::new("k"), 2, 3, t0);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_seconds, 1);
        assert_eq!(refused.limit_per_minute, 120);
        // Half a second refills one token at 2 per second.
        assert!(
            limiter
                .check(&AccountId::new("k"), 2, 3, t0 + Duration::from_millis(500))
                .allowed
        );
        assert!(
            !limiter
                .check(&AccountId::new("k"), 2, 3, t0 + Duration::from_millis(500))
                .allowed
        );
        // Keys do not share buckets.
        assert!(limiter.check(&AccountId::new("other"), 2, 3, t0).allowed);
    }
}
