//! Errors a client can cause. Each maps to one documented `signal_error` code
//! (docs/protocol.md) and leaves every room untouched.

use serde::Serialize;

use crate::passcode::PasscodeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    #[error("room must be a string of 1-64 characters from [A-Za-z0-9_.~-]")]
    InvalidRoom,
    #[error("data must be an object of type offer, answer or candidate")]
    InvalidMessage,
    #[error("data is larger than the 64 KiB limit")]
    PayloadTooLarge,
    #[error("unknown event")]
    UnknownEvent,
    #[error("already in a room: leave it first")]
    AlreadyJoined,
    #[error("not in that room")]
    NotInRoom,
    #[error("nobody else is in the room yet")]
    NoPeer,
    #[error("too many events: slow down")]
    RateLimited,
    #[error("your token does not allow this room")]
    RoomNotAllowed,
    #[error(transparent)]
    Passcode(#[from] PasscodeError),
}

impl SignalError {
    pub fn code(self) -> &'static str {
        match self {
            SignalError::InvalidRoom => "invalid_room",
            SignalError::InvalidMessage => "invalid_message",
            SignalError::PayloadTooLarge => "payload_too_large",
            SignalError::UnknownEvent => "unknown_event",
            SignalError::AlreadyJoined => "already_joined",
            SignalError::NotInRoom => "not_in_room",
            SignalError::NoPeer => "no_peer",
            SignalError::RateLimited => "rate_limited",
            SignalError::RoomNotAllowed => "room_not_allowed",
            SignalError::Passcode(error) => error.code(),
        }
    }

    /// The `signal_error` payload sent back for a rejected `event`.
    pub fn report<'a>(self, event: &'a str) -> ErrorReport<'a> {
        ErrorReport {
            code: self.code(),
            message: self.to_string(),
            event,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ErrorReport<'a> {
    pub code: &'static str,
    pub message: String,
    pub event: &'a str,
}
