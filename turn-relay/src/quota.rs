//! Allocation quotas (per user and total) and the per-allocation bandwidth cap.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaExceeded {
    User,
    Total,
}

/// Counts live allocations; `0` means unlimited, as in coturn.
#[derive(Debug, Default)]
pub struct Quotas {
    user_quota: u32,
    total_quota: u32,
    total: u32,
    per_user: HashMap<Box<str>, u32>,
}

impl Quotas {
    pub fn new(user_quota: u32, total_quota: u32) -> Self {
        Quotas {
            user_quota,
            total_quota,
            ..Default::default()
        }
    }

    pub fn try_acquire(&mut self, user: &str) -> Result<(), QuotaExceeded> {
        if self.total_quota != 0 && self.total >= self.total_quota {
            return Err(QuotaExceeded::Total);
        }
        let n = self.per_user.get(user).copied().unwrap_or(0);
        if self.user_quota != 0 && n >= self.user_quota {
            return Err(QuotaExceeded::User);
        }
        *self.per_user.entry(user.into()).or_insert(0) += 1;
        self.total += 1;
        Ok(())
    }

    pub fn release(&mut self, user: &str) {
        if let Some(n) = self.per_user.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                // Keep the map no larger than the set of users with allocations.
                self.per_user.remove(user);
            }
            self.total -= 1;
        }
    }

    pub fn total(&self) -> u32 {
        self.total
    }

    pub fn users(&self) -> usize {
        self.per_user.len()
    }
}

/// Token bucket in bytes, refilled at `rate` bytes/s with one second of burst.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    tokens: u64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate_bytes_per_sec: u64, now: Instant) -> Self {
        TokenBucket {
            rate: rate_bytes_per_sec,
            tokens: rate_bytes_per_sec,
            last: now,
        }
    }

    /// Take `bytes` tokens if available. Refill is computed from elapsed time so no
    /// timer is needed.
    pub fn allow(&mut self, now: Instant, bytes: usize) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        let refill = (elapsed.as_micros() as u64).saturating_mul(self.rate) / 1_000_000;
        if refill > 0 {
            self.tokens = (self.tokens + refill).min(self.rate);
            self.last = now;
        }
        if self.tokens >= bytes as u64 {
            self.tokens -= bytes as u64;
            true
        } else {
            false
        }
    }

    /// Take `bytes` tokens whether or not they are there, for a stream that waits instead
    /// of dropping: returns how long to wait before sending them (zero within the cap).
    /// The debt is paid in time: no tokens come back until it is, and whoever takes more
    /// meanwhile (the other direction of the same allocation) waits behind it.
    pub fn pace(&mut self, now: Instant, bytes: usize) -> Duration {
        if self.allow(now, bytes) {
            return Duration::ZERO;
        }
        let missing = bytes as u64 - self.tokens;
        let debt = Duration::from_micros(missing.saturating_mul(1_000_000) / self.rate.max(1));
        self.tokens = 0;
        self.last = self.last.max(now) + debt;
        self.last - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_total_quota() {
        let mut q = Quotas::new(2, 3);
        assert!(q.try_acquire("a").is_ok());
        assert!(q.try_acquire("a").is_ok());
        assert_eq!(q.try_acquire("a"), Err(QuotaExceeded::User));
        assert!(q.try_acquire("b").is_ok());
        assert_eq!(q.try_acquire("c"), Err(QuotaExceeded::Total));
        q.release("a");
        assert!(q.try_acquire("c").is_ok());
        q.release("a");
        q.release("b");
        q.release("c");
        assert_eq!(q.total(), 0);
        assert_eq!(q.users(), 0);
        // Releasing an unknown user is a no-op, not an underflow.
        q.release("nobody");
        assert_eq!(q.total(), 0);
    }

    #[test]
    fn unlimited_when_zero() {
        let mut q = Quotas::new(0, 0);
        for _ in 0..1000 {
            q.try_acquire("a").unwrap();
        }
        assert_eq!(q.total(), 1000);
    }

    #[test]
    fn bucket_caps_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, t0);
        assert!(b.allow(t0, 600));
        assert!(!b.allow(t0, 600));
        assert!(b.allow(t0 + Duration::from_millis(200), 600));
        // Burst never exceeds one second's worth.
        let later = t0 + Duration::from_secs(100);
        assert!(b.allow(later, 1000));
        assert!(!b.allow(later, 1));
    }
}
