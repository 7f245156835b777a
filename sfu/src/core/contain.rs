//! A panic in str0m while it handles one participant's input (its SDP, an ICE candidate, a
//! datagram, a timeout) must cost that participant its join or its connection, never the
//! media thread that serves every room.
//!
//! str0m asserts on some input it does not expect: an offer that maps one payload type to
//! two codecs made it panic ("Pt locked multiple times"; found by fuzzing `sfu_sdp`). Our own
//! rules ([`super::sdp::check_payload_types`]) refuse that SDP before str0m sees it; this is
//! the backstop for what no rule of ours foresees, and for str0m's DTLS, SRTP and RTP paths,
//! which fuzzing does not reach (docs/fuzzing.md). Only calls into str0m are wrapped, so no
//! state of ours is left half-changed. The fuzz targets still count such a panic as a crash
//! (libFuzzer's panic hook aborts first), so each new one gets a rule.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::api::SfuError;

/// Runs `f`; a panic in it becomes [`SfuError::Contained`], naming `what` was being read.
/// What `f` changed must be thrown away by the caller on that error.
pub(super) fn contain<T>(what: &'static str, f: impl FnOnce() -> T) -> Result<T, SfuError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::warn!(what, %message, "str0m panicked on a participant's input; contained");
        SfuError::Contained { what, message }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error() {
        assert_eq!(contain("offer", || 7).unwrap(), 7);
        let error = contain("offer", || -> u8 {
            panic!("Pt locked multiple times: {}", 96)
        });
        assert!(matches!(
            error,
            Err(SfuError::Contained { what: "offer", ref message })
                if message == "Pt locked multiple times: 96"
        ));
    }
}
