//! Stateless nonces.
//!
//! A nonce is `hex(issued_secs) || hex(HMAC-SHA1(key, issued_secs || client_ip)[..8])`.
//! Verifying one needs only the server key, so no per-client state exists before a
//! client authenticates: an unauthenticated flood costs one HMAC per packet and no
//! memory. Binding the client IP stops a nonce harvested from one address being
//! replayed from another. Time is passed in (seconds on the relay's monotonic
//! clock); the key is random per process, so nonces die with a restart.

use crate::stun::integrity::hmac_sha1;
use std::net::IpAddr;

/// 8 hex digits of timestamp + 16 hex digits of MAC.
pub const NONCE_LEN: usize = 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceCheck {
    Valid,
    /// Ours and well-formed, but older than the stale-nonce lifetime.
    Stale,
    /// Not one we issued (or for another client address).
    Invalid,
}

pub struct NonceIssuer {
    key: [u8; 32],
    lifetime_secs: u64,
}

impl NonceIssuer {
    pub fn new(key: [u8; 32], lifetime_secs: u64) -> Self {
        NonceIssuer { key, lifetime_secs }
    }

    fn mac(&self, ts: u32, ip: IpAddr) -> [u8; 20] {
        let ip = crate::policy::normalize_ip(ip);
        match ip {
            IpAddr::V4(v4) => hmac_sha1(&self.key, &[&ts.to_be_bytes(), &v4.octets()]),
            IpAddr::V6(v6) => hmac_sha1(&self.key, &[&ts.to_be_bytes(), &v6.octets()]),
        }
    }

    /// Issue a nonce at `now_secs` for a client at `ip`.
    pub fn issue(&self, now_secs: u64, ip: IpAddr) -> [u8; NONCE_LEN] {
        let ts = now_secs as u32;
        let mac = self.mac(ts, ip);
        let mut out = [0u8; NONCE_LEN];
        hex_into(&ts.to_be_bytes(), &mut out[..8]);
        hex_into(&mac[..8], &mut out[8..]);
        out
    }

    pub fn check(&self, nonce: &[u8], now_secs: u64, ip: IpAddr) -> NonceCheck {
        if nonce.len() != NONCE_LEN {
            return NonceCheck::Invalid;
        }
        let Some(ts) = unhex_u32(&nonce[..8]) else {
            return NonceCheck::Invalid;
        };
        let mac = self.mac(ts, ip);
        let mut expect = [0u8; 16];
        hex_into(&mac[..8], &mut expect);
        // Constant-time compare: the MAC is the secret part.
        let diff = expect
            .iter()
            .zip(&nonce[8..])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return NonceCheck::Invalid;
        }
        // u32 seconds wraps after 136 years of uptime; compare in that space.
        let age = (now_secs as u32).wrapping_sub(ts) as u64;
        if age > self.lifetime_secs {
            NonceCheck::Stale
        } else {
            NonceCheck::Valid
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0xF) as usize];
    }
}

fn unhex_u32(s: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u32;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn valid_then_stale() {
        let n = NonceIssuer::new([1; 32], 600);
        let nonce = n.issue(1000, ip("192.0.2.7"));
        assert_eq!(n.check(&nonce, 1000, ip("192.0.2.7")), NonceCheck::Valid);
        assert_eq!(n.check(&nonce, 1600, ip("192.0.2.7")), NonceCheck::Valid);
        assert_eq!(n.check(&nonce, 1601, ip("192.0.2.7")), NonceCheck::Stale);
    }

    #[test]
    fn bound_to_ip_and_key() {
        let n = NonceIssuer::new([1; 32], 600);
        let nonce = n.issue(5, ip("192.0.2.7"));
        assert_eq!(n.check(&nonce, 5, ip("192.0.2.8")), NonceCheck::Invalid);
        // The same client seen as v4-mapped v6 (dual-stack socket) still matches.
        assert_eq!(
            n.check(&nonce, 5, ip("::ffff:192.0.2.7")),
            NonceCheck::Valid
        );
        let other = NonceIssuer::new([2; 32], 600);
        assert_eq!(other.check(&nonce, 5, ip("192.0.2.7")), NonceCheck::Invalid);
    }

    #[test]
    fn garbage_is_invalid() {
        let n = NonceIssuer::new([1; 32], 600);
        assert_eq!(n.check(b"", 0, ip("::1")), NonceCheck::Invalid);
        assert_eq!(
            n.check(&[b'z'; NONCE_LEN], 0, ip("::1")),
            NonceCheck::Invalid
        );
        let mut nonce = n.issue(9, ip("::1"));
        nonce[23] = if nonce[23] == b'0' { b'1' } else { b'0' };
        assert_eq!(n.check(&nonce, 9, ip("::1")), NonceCheck::Invalid);
    }
}
