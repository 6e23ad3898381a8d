//! Per-token rate limiting: a token bucket per token id, in memory (each replica limits on
//! its own). Over the limit the request is answered 429 with `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Most tokens tracked before idle buckets are dropped (bounded memory).
const MAX_BUCKETS: usize = 100_000;

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_second` = 0 turns limiting off. The burst is twice the rate (at least 1).
    pub fn new(per_second: u32) -> RateLimiter {
        RateLimiter {
            per_second: f64::from(per_second),
            burst: (f64::from(per_second) * 2.0).max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `per_minute` per minute, in bursts of as many (0 turns limiting off).
    pub fn per_minute(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_second: f64::from(per_minute) / 60.0,
            burst: f64::from(per_minute).max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the token's bucket; `Err(seconds)` to wait when it is empty.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            let (rate, burst) = (self.per_second, self.burst);
            // A bucket that has refilled completely carries no information.
            buckets.retain(|_, (level, at)| {
                *level + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (level, at) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        *level = (*level + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *level >= 1.0 {
            *level -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *level) / self.per_second).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_limits() {
        let r = RateLimiter::new(5);
        for _ in 0..10 {
            assert!(r.check("a").is_ok());
        }
        assert_eq!(r.check("a"), Err(1));
        assert!(r.check("b").is_ok(), "buckets are per token");
        let off = RateLimiter::new(0);
        for _ in 0..1000 {
            assert!(off.check("a").is_ok());
        }
    }
}
