//! Join tokens (docs/security.md): with an auth secret configured, every signaling
//! connection and every ICE-servers request carries a signed, expiring token (a JWT, HS256)
//! that an application backend mints — or `signal token` — naming who the bearer is, which
//! room(s) it may join and what it may do there.
//!
//! Time is passed in (Unix seconds), so expiry is tested without waiting.

use serde::{Deserialize, Serialize};

/// The shortest auth secret accepted: HS256 keys shorter than the hash are weak.
pub const MIN_SECRET_LEN: usize = 32;
/// Clock skew tolerated between the minting backend and this server.
pub const LEEWAY_SECS: u64 = 30;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The bearer's identity (application-defined; logged, not shown to others).
    pub sub: String,
    /// The room it may join: a name, `prefix*` for every room starting with `prefix`, or `*`.
    pub room: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Not before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default)]
    pub grants: Grants,
}

/// What the bearer may do in its room. Unknown grants in a token are ignored (a newer
/// backend's tokens keep working).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Grants {
    /// Send media (camera, microphone, screen) in SFU rooms. Without it a participant joins
    /// as a viewer (an offer that sends is refused).
    pub publish: bool,
    /// Start and stop the server's recording of SFU rooms (not granted unless named: a
    /// recording is made of everyone in the room).
    pub record: bool,
    /// Put SFU rooms on air for live viewers (HLS; not granted unless named: it shows
    /// everyone in the room to an audience).
    pub live: bool,
    /// Moderate SFU rooms: remove a participant, mute someone's audio for the room, end the
    /// room (not granted unless named).
    pub moderate: bool,
}

impl Default for Grants {
    fn default() -> Self {
        Grants {
            publish: true,
            record: false,
            live: false,
            moderate: false,
        }
    }
}

impl Claims {
    /// Whether the token lets its bearer into `room`.
    pub fn allows_room(&self, room: &str) -> bool {
        match self.room.strip_suffix('*') {
            Some(prefix) => room.starts_with(prefix),
            None => self.room == room,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a token is required (docs/security.md)")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "token_required",
            AuthError::Invalid(_) => "invalid_token",
            AuthError::Expired => "token_expired",
            AuthError::NotYetValid => "token_not_yet_valid",
        }
    }
}

/// Mints and checks tokens with one secret.
pub struct Authority {
    encoding: jsonwebtoken::EncodingKey,
    decoding: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authority(<secret>)")
    }
}

impl Authority {
    pub fn new(secret: &str) -> Self {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        // Expiry is checked below against the time passed in.
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp", "sub"].into_iter().map(String::from).collect();
        Authority {
            encoding: jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            decoding: jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    pub fn mint(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    /// The claims of a valid token at `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        // Tokens are small; a huge one is not worth decoding.
        if token.len() > 4096 {
            return Err(AuthError::Invalid("longer than 4096 bytes".into()));
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?
            .claims;
        if claims.exp + LEEWAY_SECS <= now {
            return Err(AuthError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
            return Err(AuthError::NotYetValid);
        }
        Ok(claims)
    }
}

/// Now, Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-that-is-long-enough-0123";
    const NOW: u64 = 1_800_000_000;

    fn claims(room: &str) -> Claims {
        Claims {
            sub: "alice".into(),
            room: room.into(),
            exp: NOW + 3600,
            nbf: None,
            iat: Some(NOW),
            grants: Grants::default(),
        }
    }

    #[test]
    fn a_minted_token_verifies_and_says_what_it_grants() {
        let authority = Authority::new(SECRET);
        let token = authority.mint(&claims("standup"));
        let got = authority.verify(&token, NOW).unwrap();
        assert_eq!(got, claims("standup"));
        assert!(got.grants.publish, "publishing is granted unless withheld");
        assert!(got.allows_room("standup"));
        assert!(!got.allows_room("standup2"));
        assert!(!got.allows_room("other"));
    }

    #[test]
    fn room_patterns() {
        let team = claims("team-*");
        assert!(team.allows_room("team-a"));
        assert!(team.allows_room("team-"));
        assert!(!team.allows_room("other"));
        assert!(claims("*").allows_room("anything"));
    }

    #[test]
    fn bad_tokens_say_why() {
        let authority = Authority::new(SECRET);
        let token = authority.mint(&claims("r"));
        assert_eq!(authority.verify("", NOW), Err(AuthError::Missing));
        assert_eq!(
            authority.verify(&token, NOW + 3600 + LEEWAY_SECS),
            Err(AuthError::Expired)
        );
        assert!(
            authority
                .verify(&token, NOW + 3600 + LEEWAY_SECS - 1)
                .is_ok(),
            "leeway"
        );
        let other = Authority::new("another-secret-that-is-long-enough-456");
        assert!(matches!(
            other.verify(&token, NOW),
            Err(AuthError::Invalid(_))
        ));
        let mut tampered = token.clone();
        tampered.insert(tampered.len() / 2, 'x');
        assert!(matches!(
            authority.verify(&tampered, NOW),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            authority.verify("not.a.jwt", NOW),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            authority.verify(&"a".repeat(5000), NOW),
            Err(AuthError::Invalid(_))
        ));
        let mut later = claims("r");
        later.nbf = Some(NOW + 600);
        assert_eq!(
            authority.verify(&authority.mint(&later), NOW),
            Err(AuthError::NotYetValid)
        );
    }

    #[test]
    fn a_viewer_token_and_unknown_grants() {
        let authority = Authority::new(SECRET);
        let mut viewer = claims("r");
        viewer.grants.publish = false;
        let got = authority.verify(&authority.mint(&viewer), NOW).unwrap();
        assert!(!got.grants.publish);
        // A token from a newer backend with grants we do not know yet.
        let json = serde_json::json!({"sub": "bob", "room": "r", "exp": NOW + 60,
            "grants": {"publish": true, "record": true}});
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &json,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert!(authority.verify(&token, NOW).unwrap().grants.publish);
        // Without exp, no token.
        let forever = serde_json::json!({"sub": "bob", "room": "r"});
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &forever,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert!(matches!(
            authority.verify(&token, NOW),
            Err(AuthError::Invalid(_))
        ));
    }
}
