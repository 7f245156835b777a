//! Long-term credential lookup: static users and the TURN REST scheme.

use crate::rest_auth;
use crate::stun::integrity::long_term_key;
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// Unknown user, expired REST credential, or no scheme accepts it.
    UnknownUser,
    Expired,
}

/// Derives the 16-byte long-term key for a username. Static keys are computed
/// once at start-up; REST keys are derived per request (one HMAC + one MD5), which
/// is only ever done for STUN requests, never for relayed data.
#[derive(Clone)]
pub struct Authenticator {
    realm: String,
    users: HashMap<String, [u8; 16]>,
    secret: Option<String>,
    /// `no-auth`: accept requests without credentials.
    pub open: bool,
}

impl std::fmt::Debug for Authenticator {
    // Never print keys or the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("realm", &self.realm)
            .field("users", &self.users.len())
            .field("rest", &self.secret.is_some())
            .field("open", &self.open)
            .finish()
    }
}

impl Authenticator {
    pub fn new(realm: &str, secret: Option<String>, open: bool) -> Self {
        Authenticator {
            realm: realm.to_owned(),
            users: HashMap::new(),
            secret,
            open,
        }
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    pub fn add_user(&mut self, name: &str, password: &str) {
        let key = long_term_key(name, &self.realm, password);
        self.users.insert(name.to_owned(), key);
    }

    /// coturn's `user=name:0x<32 hex>` form: the key itself instead of a password.
    pub fn add_user_key(&mut self, name: &str, key: [u8; 16]) {
        self.users.insert(name.to_owned(), key);
    }

    pub fn key_for(&self, username: &str, unix_now: u64) -> Result<[u8; 16], AuthFailure> {
        if let Some(secret) = &self.secret {
            if let Some(expiry) = rest_auth::expiry_of(username) {
                if expiry < unix_now {
                    return Err(AuthFailure::Expired);
                }
                let password = rest_auth::password_for(secret, username);
                return Ok(long_term_key(username, &self.realm, &password));
            }
        }
        self.users
            .get(username)
            .copied()
            .ok_or(AuthFailure::UnknownUser)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn static_users() {
        let mut a = Authenticator::new("rtc.local", None, false);
        a.add_user("bob", "pw");
        assert_eq!(
            a.key_for("bob", 0),
            Ok(long_term_key("bob", "rtc.local", "pw"))
        );
        assert_eq!(a.key_for("eve", 0), Err(AuthFailure::UnknownUser));
        assert_eq!(a.key_for("123:bob", 0), Err(AuthFailure::UnknownUser));
    }

    #[test]
    fn rest_users() {
        let a = Authenticator::new("rtc.local", Some("sek".into()), false);
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let (u, p) = rest_auth::credentials("sek", "x", Duration::from_secs(60), now);
        assert_eq!(a.key_for(&u, 1000), Ok(long_term_key(&u, "rtc.local", &p)));
        assert_eq!(a.key_for(&u, 1061), Err(AuthFailure::Expired));
        assert_eq!(a.key_for("bob", 1000), Err(AuthFailure::UnknownUser));
    }
}
