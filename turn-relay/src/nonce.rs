//! Stateless nonces.
//!
//! A nonce is `base64url(issued_secs || HMAC-SHA1(key, issued_secs || client_ip)[..8])`,
//! 16 characters (base64url is valid NONCE text: no quote, no backslash). Short because it
//! goes into the 401 that any unauthenticated request gets: the answer to a 28-byte Allocate
//! stays within 3× its size (coturn's bound), 24 hex digits made it 3.3×.
//! Verifying one needs only the server key, so no per-client state exists before a
//! client authenticates: an unauthenticated flood costs one HMAC per packet and no
//! memory. Binding the client IP stops a nonce harvested from one address being
//! replayed from another. Time is passed in (seconds on the relay's monotonic
//! clock); the key is random per process, so nonces die with a restart.

use crate::stun::integrity::hmac_sha1;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use std::net::IpAddr;

/// 4 bytes of timestamp + 8 bytes of MAC, base64url without padding.
pub const NONCE_LEN: usize = 16;
const RAW_LEN: usize = 12;

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

    /// The RESERVATION-TOKEN of reservation number `seq` (RFC 8656 §14.9): keyed like the
    /// nonces, so that nobody can guess another client's token and take its port.
    pub fn reservation_token(&self, seq: u64) -> [u8; 8] {
        let mac = hmac_sha1(&self.key, &[b"reservation", &seq.to_be_bytes()]);
        let mut token = [0u8; 8];
        token.copy_from_slice(&mac[..8]);
        token
    }

    /// The `seq`-th CONNECTION-ID of a TCP allocation (RFC 6062): unguessable, like the
    /// reservation tokens.
    pub fn connection_id(&self, seq: u64) -> u32 {
        let mac = hmac_sha1(&self.key, &[b"connection", &seq.to_be_bytes()]);
        u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]])
    }

    /// Issue a nonce at `now_secs` for a client at `ip`.
    pub fn issue(&self, now_secs: u64, ip: IpAddr) -> [u8; NONCE_LEN] {
        let ts = now_secs as u32;
        let mac = self.mac(ts, ip);
        let mut raw = [0u8; RAW_LEN];
        raw[..4].copy_from_slice(&ts.to_be_bytes());
        raw[4..].copy_from_slice(&mac[..8]);
        let mut out = [0u8; NONCE_LEN];
        // 12 bytes are exactly 16 base64 characters: this cannot fail.
        let _ = URL_SAFE_NO_PAD.encode_slice(raw, &mut out);
        out
    }

    pub fn check(&self, nonce: &[u8], now_secs: u64, ip: IpAddr) -> NonceCheck {
        if nonce.len() != NONCE_LEN {
            return NonceCheck::Invalid;
        }
        let mut raw = [0u8; RAW_LEN];
        if URL_SAFE_NO_PAD.decode_slice(nonce, &mut raw) != Ok(RAW_LEN) {
            return NonceCheck::Invalid;
        }
        let ts = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let mac = self.mac(ts, ip);
        // Constant-time compare: the MAC is the secret part.
        let diff = mac[..8]
            .iter()
            .zip(&raw[4..])
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
        nonce[15] = if nonce[15] == b'A' { b'B' } else { b'A' };
        assert_eq!(n.check(&nonce, 9, ip("::1")), NonceCheck::Invalid);
    }

    #[test]
    fn sixteen_characters_valid_as_nonce_text() {
        let n = NonceIssuer::new([7; 32], 600);
        for t in 0..200 {
            let nonce = n.issue(t * 7919, ip("198.51.100.3"));
            // RFC 8489 §14.10: qdtext or quoted-pair; base64url has neither quote nor backslash.
            assert!(nonce
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_'));
        }
    }
}
