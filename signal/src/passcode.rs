//! Room passcodes, for both kinds of room (docs/security.md): the first participant of a
//! room may set one, everyone after must give it. Kept only as a SHA-256 digest and compared
//! in constant time; wrong ones are rate-limited per client address and room, so that
//! guessing one takes months while other rooms stay open to the same address.

use std::{
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde_json::Value;
use socketioxide::extract::SocketRef;

use crate::access::{self, AddressLimiter};

/// The longest passcode, in characters.
pub const MAX_PASSCODE_CHARS: usize = 64;
/// Wrong passcodes one client address may give for one room at once, then one per
/// [`FAILURE_INTERVAL`]: guessing a 6-digit passcode takes months.
pub const FAILURE_BURST: u32 = 5;
pub const FAILURE_INTERVAL: Duration = Duration::from_secs(10);

/// A room passcode's digest.
#[derive(Clone, Copy)]
pub struct Passcode([u8; 32]);

/// Why a join was refused for its passcode: the same `signal_error` codes and words in
/// both namespaces (docs/protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasscodeError {
    /// Not a string of at most [`MAX_PASSCODE_CHARS`] printable characters.
    #[error("passcode must be a string of at most 64 printable characters")]
    Invalid,
    #[error("this room has a passcode: give it to join")]
    Required,
    #[error("wrong passcode for this room")]
    Wrong,
    #[error("too many wrong passcodes for this room from your address: wait a little before trying again")]
    RateLimited,
}

impl PasscodeError {
    pub fn code(self) -> &'static str {
        match self {
            PasscodeError::Invalid => "invalid_passcode",
            PasscodeError::Required => "passcode_required",
            PasscodeError::Wrong => "wrong_passcode",
            PasscodeError::RateLimited => "passcode_rate_limited",
        }
    }

    /// A refusal that counts toward the rate limit: a guess, right room, wrong passcode.
    pub fn is_guess(self) -> bool {
        matches!(self, PasscodeError::Required | PasscodeError::Wrong)
    }
}

impl Passcode {
    /// Absent, `null` or empty: none; else 1-64 printable characters.
    pub fn parse(value: Option<&Value>) -> Result<Option<Passcode>, PasscodeError> {
        let passcode = match value {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(passcode)) if passcode.is_empty() => return Ok(None),
            Some(Value::String(passcode)) => passcode,
            Some(_) => return Err(PasscodeError::Invalid),
        };
        if passcode.chars().count() > MAX_PASSCODE_CHARS || passcode.chars().any(char::is_control) {
            return Err(PasscodeError::Invalid);
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, passcode.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Ok(Some(Passcode(out)))
    }

    pub fn digest(&self) -> [u8; 32] {
        self.0
    }

    /// Whether `given` is this passcode, in constant time.
    pub fn admits(&self, given: &Passcode) -> bool {
        access::constant_time_eq(&self.0, &given.0)
    }
}

// Never the digest, even in logs.
impl std::fmt::Debug for Passcode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passcode(…)")
    }
}

// Two commands with passcodes compare equal if the passcodes are the same (tests).
impl PartialEq for Passcode {
    fn eq(&self, other: &Self) -> bool {
        self.admits(other)
    }
}

/// Wrong (or missing) passcodes per client address and room.
pub struct PasscodeGuard {
    failures: Mutex<AddressLimiter<(IpAddr, String)>>,
}

impl Default for PasscodeGuard {
    fn default() -> Self {
        PasscodeGuard {
            failures: Mutex::new(AddressLimiter::new(FAILURE_BURST, FAILURE_INTERVAL)),
        }
    }
}

impl PasscodeGuard {
    fn limiter(&self) -> std::sync::MutexGuard<'_, AddressLimiter<(IpAddr, String)>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `socket`'s address gave too many wrong passcodes for `room` lately.
    pub fn blocked(&self, socket: &SocketRef, room: &str) -> bool {
        let Some(ip) = access::socket_ip(socket) else {
            return false;
        };
        self.limiter()
            .blocked(&(ip, room.to_owned()), Instant::now())
    }

    /// `socket`'s address gave a wrong (or no) passcode for `room`.
    pub fn failed(&self, socket: &SocketRef, room: &str) {
        if let Some(ip) = access::socket_ip(socket) {
            let _ = self.limiter().take((ip, room.to_owned()), Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn passcodes_are_kept_as_digests_and_validated() {
        let parse = |v: Value| Passcode::parse(Some(&v));
        assert_eq!(Passcode::parse(None), Ok(None));
        assert_eq!(parse(json!(null)), Ok(None));
        assert_eq!(parse(json!("")), Ok(None), "empty: no passcode");
        let sesame = parse(json!("sesame")).unwrap().unwrap();
        assert!(sesame.admits(&parse(json!("sesame")).unwrap().unwrap()));
        assert!(!sesame.admits(&parse(json!("Sesame")).unwrap().unwrap()));
        assert_eq!(format!("{sesame:?}"), "Passcode(…)");
        assert!(parse(json!("é".repeat(MAX_PASSCODE_CHARS))).is_ok());
        for bad in [
            json!("x".repeat(MAX_PASSCODE_CHARS + 1)),
            json!("a\nb"),
            json!(1234),
            json!(["x"]),
        ] {
            assert_eq!(parse(bad.clone()), Err(PasscodeError::Invalid), "{bad}");
        }
    }
}
