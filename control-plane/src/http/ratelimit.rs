//! A small fixed-window rate limiter (per key, in memory, per replica): login attempts per
//! client address. Account lockout (in the database) covers attacks spread across replicas.

use std::collections::HashMap;
use std::sync::Mutex;

pub struct RateLimiter {
    limit: u32,
    window_ms: i64,
    state: Mutex<HashMap<String, (i64, u32)>>,
}

impl RateLimiter {
    pub fn new(limit: u32, window_ms: i64) -> RateLimiter {
        RateLimiter {
            limit,
            window_ms,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one attempt for `key` at `now`; `Err(seconds to wait)` when over the limit.
    pub fn check(&self, key: &str, now: i64) -> Result<(), u64> {
        let Ok(mut map) = self.state.lock() else {
            return Ok(());
        };
        if map.len() > 100_000 {
            map.retain(|_, (start, _)| now - *start < self.window_ms);
        }
        let entry = map.entry(key.to_string()).or_insert((now, 0));
        if now - entry.0 >= self.window_ms {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 > self.limit {
            let wait = (entry.0 + self.window_ms - now).max(1000) / 1000;
            Err(wait as u64)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_window() {
        let r = RateLimiter::new(3, 60_000);
        for _ in 0..3 {
            assert!(r.check("a", 0).is_ok());
        }
        assert_eq!(r.check("a", 1_000), Err(59));
        assert!(r.check("b", 1_000).is_ok(), "keys are independent");
        assert!(r.check("a", 60_000).is_ok(), "a new window starts");
    }
}
