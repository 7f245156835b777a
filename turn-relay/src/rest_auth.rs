//! TURN REST API credentials (draft-uberti-behave-turn-rest, coturn's
//! `use-auth-secret`): username `expiry[:id]`, password
//! `base64(HMAC-SHA1(secret, username))`.
//!
//! The `signal` server calls [`credentials`] to hand browsers time-limited
//! credentials; the relay re-derives the password from the username to check them.

use crate::stun::integrity::hmac_sha1;
use base64::Engine;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Username and password valid until `now + ttl` for `user_id` (may be empty).
pub fn credentials(
    secret: &str,
    user_id: &str,
    ttl: Duration,
    now: SystemTime,
) -> (String, String) {
    let expiry = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(ttl)
        .as_secs();
    let username = if user_id.is_empty() {
        expiry.to_string()
    } else {
        format!("{expiry}:{user_id}")
    };
    let password = password_for(secret, &username);
    (username, password)
}

/// The password the relay expects for a REST username.
pub fn password_for(secret: &str, username: &str) -> String {
    let mac = hmac_sha1(secret.as_bytes(), &[username.as_bytes()]);
    base64::engine::general_purpose::STANDARD.encode(mac)
}

/// Expiry (unix seconds) encoded in a REST username, if it has one. coturn takes
/// the leading digits up to the separator ':' (`expiry` or `expiry:id`).
pub fn expiry_of(username: &str) -> Option<u64> {
    let ts = username.split(':').next()?;
    if ts.is_empty() || ts.len() > 20 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ts.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_coturn_scheme() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (u, p) = credentials("s3cret", "alice", Duration::from_secs(3600), now);
        assert_eq!(u, "1700003600:alice");
        // Independent reference value: printf '1700003600:alice' |
        //   openssl dgst -sha1 -hmac s3cret -binary | base64
        assert_eq!(p, "YAFdW/YDZewZsR1QSgUk2IrfbRI=");
        assert_eq!(expiry_of(&u), Some(1_700_003_600));
        let (u2, _) = credentials("s3cret", "", Duration::from_secs(10), now);
        assert_eq!(u2, "1700000010");
    }

    #[test]
    fn expiry_parsing() {
        assert_eq!(expiry_of("123"), Some(123));
        assert_eq!(expiry_of("123:bob:x"), Some(123));
        assert_eq!(expiry_of("bob"), None);
        assert_eq!(expiry_of(":bob"), None);
        assert_eq!(expiry_of("99999999999999999999999"), None);
    }
}
