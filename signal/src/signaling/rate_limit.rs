//! Per-connection token bucket. Time is passed in, so tests are deterministic.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Events allowed at once (an offer plus a burst of ICE candidates must fit).
    pub burst: u32,
    /// Sustained events per second.
    pub per_second: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            burst: 256,
            per_second: 64,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
    /// Events refused so far; a client that keeps flooding is disconnected.
    pub refused: u32,
}

impl TokenBucket {
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        TokenBucket {
            limit,
            tokens: f64::from(limit.burst),
            last: now,
            refused: 0,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * f64::from(self.limit.per_second))
            .min(f64::from(self.limit.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.refused = self.refused.saturating_add(1);
            false
        }
    }

    /// Time until the next token, for tests and diagnostics.
    pub fn refill_time(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.limit.per_second.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let limit = RateLimit {
            burst: 3,
            per_second: 10,
        };
        let mut bucket = TokenBucket::new(limit, t0);
        assert!(bucket.try_take(t0));
        assert!(bucket.try_take(t0));
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0));
        assert_eq!(bucket.refused, 1);
        // One token per 100 ms.
        let t1 = t0 + bucket.refill_time();
        assert!(bucket.try_take(t1));
        assert!(!bucket.try_take(t1));
        // Never more than the burst, however long the pause.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(bucket.try_take(t2));
        }
        assert!(!bucket.try_take(t2));
    }

    #[test]
    fn default_budget_fits_an_offer_and_a_hundred_candidates() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(RateLimit::default(), t0);
        assert!((0..101).all(|_| bucket.try_take(t0)));
    }

    #[test]
    fn time_going_backwards_grants_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut bucket = TokenBucket::new(
            RateLimit {
                burst: 1,
                per_second: 1,
            },
            t0,
        );
        assert!(bucket.try_take(t0));
        assert!(!bucket.try_take(t0 - Duration::from_secs(5)));
    }
}
