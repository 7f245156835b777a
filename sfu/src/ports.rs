//! The UDP port range (`--rtc-ports MIN-MAX`) handed out to peer connections (sans-IO).

use std::{collections::BTreeSet, ops::RangeInclusive};

#[derive(Debug)]
pub struct PortPool {
    range: RangeInclusive<u16>,
    in_use: BTreeSet<u16>,
    next: u16,
}

impl PortPool {
    pub fn new(range: RangeInclusive<u16>) -> Self {
        let next = *range.start();
        PortPool {
            range,
            in_use: BTreeSet::new(),
            next,
        }
    }

    /// A free port, round-robin so a port just released is not reused at once (a late packet
    /// of the previous connection would hit the new one).
    pub fn take(&mut self) -> Option<u16> {
        let size = usize::from(self.range.end() - self.range.start()) + 1;
        if self.in_use.len() >= size {
            return None;
        }
        loop {
            let port = self.next;
            self.next = if port >= *self.range.end() {
                *self.range.start()
            } else {
                port + 1
            };
            if self.in_use.insert(port) {
                return Some(port);
            }
        }
    }

    pub fn release(&mut self, port: u16) {
        self.in_use.remove(&port);
    }

    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }
}

/// Parses `MIN-MAX` (MIN ≤ MAX, MIN > 0).
pub fn parse_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let (min, max) = text
        .split_once('-')
        .ok_or_else(|| format!("expected MIN-MAX, got {text:?}"))?;
    let port = |s: &str| {
        s.trim()
            .parse::<u16>()
            .map_err(|_| format!("{s:?} is not a port number"))
    };
    let (min, max) = (port(min)?, port(max)?);
    if min == 0 || min > max {
        return Err(format!("invalid port range {min}-{max}"));
    }
    Ok(min..=max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_and_exhaustion() {
        let mut pool = PortPool::new(40000..=40002);
        assert_eq!(pool.take(), Some(40000));
        assert_eq!(pool.take(), Some(40001));
        pool.release(40000);
        assert_eq!(pool.take(), Some(40002));
        assert_eq!(pool.take(), Some(40000));
        assert_eq!(pool.take(), None);
        assert_eq!(pool.in_use(), 3);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("40000-40100"), Ok(40000..=40100));
        assert_eq!(parse_range("5000-5000"), Ok(5000..=5000));
        assert!(parse_range("0-10").is_err());
        assert!(parse_range("10-5").is_err());
        assert!(parse_range("10").is_err());
        assert!(parse_range("a-b").is_err());
    }
}
