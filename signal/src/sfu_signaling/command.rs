//! Validation of untrusted `/sfu` events into typed commands (no I/O).

use serde_json::Value;

use crate::signaling::command::{RoomName, MAX_MESSAGE_BYTES};

/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SfuSignalError {
    #[error("room must be a string of 1-64 characters from [A-Za-z0-9_.~-]")]
    InvalidRoom,
    #[error("name must be a string of 1-64 printable characters")]
    InvalidName,
    #[error("sdp must be an SDP offer string")]
    InvalidSdp,
    #[error("candidate must be an object with a candidate string")]
    InvalidCandidate,
    #[error("the SDP is larger than the 64 KiB limit")]
    PayloadTooLarge,
    #[error("unknown event")]
    UnknownEvent,
    #[error("already in a room: leave it first")]
    AlreadyJoined,
    #[error("not in a room")]
    NotJoined,
    #[error("the room is full")]
    RoomFull,
    #[error("too many events: slow down")]
    RateLimited,
    #[error("the media server could not accept this offer")]
    MediaError,
}

impl SfuSignalError {
    pub fn code(self) -> &'static str {
        match self {
            SfuSignalError::InvalidRoom => "invalid_room",
            SfuSignalError::InvalidName => "invalid_name",
            SfuSignalError::InvalidSdp => "invalid_sdp",
            SfuSignalError::InvalidCandidate => "invalid_candidate",
            SfuSignalError::PayloadTooLarge => "payload_too_large",
            SfuSignalError::UnknownEvent => "unknown_event",
            SfuSignalError::AlreadyJoined => "already_joined",
            SfuSignalError::NotJoined => "not_joined",
            SfuSignalError::RoomFull => "full",
            SfuSignalError::RateLimited => "rate_limited",
            SfuSignalError::MediaError => "media_error",
        }
    }

    /// The `{error: {...}}` ack / `sfu_error` payload.
    pub fn report(self, event: &str) -> Value {
        serde_json::json!({
            "error": { "code": self.code(), "message": self.to_string(), "event": event }
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum SfuCommand {
    Join {
        room: RoomName,
        name: String,
        offer: String,
    },
    Candidate {
        candidate: String,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u16>,
    },
    Leave,
}

pub fn parse_command(event: &str, data: &Value) -> Result<SfuCommand, SfuSignalError> {
    match event {
        "join" => {
            let object = data.as_object().ok_or(SfuSignalError::InvalidRoom)?;
            let room = RoomName::parse(object.get("room").unwrap_or(&Value::Null))
                .map_err(|_| SfuSignalError::InvalidRoom)?;
            let name = parse_name(object.get("name").unwrap_or(&Value::Null))?;
            let offer = parse_sdp(object.get("sdp"), "offer")?;
            Ok(SfuCommand::Join { room, name, offer })
        }
        "candidate" => {
            let object = data.as_object().ok_or(SfuSignalError::InvalidCandidate)?;
            let candidate = object
                .get("candidate")
                .and_then(Value::as_str)
                .filter(|c| c.len() <= 1024)
                .ok_or(SfuSignalError::InvalidCandidate)?
                .to_owned();
            let sdp_mid = match object.get("sdpMid") {
                None | Some(Value::Null) => None,
                Some(Value::String(mid)) if mid.len() <= 32 => Some(mid.clone()),
                Some(_) => return Err(SfuSignalError::InvalidCandidate),
            };
            let sdp_mline_index = match object.get("sdpMLineIndex") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_u64()
                        .and_then(|n| u16::try_from(n).ok())
                        .ok_or(SfuSignalError::InvalidCandidate)?,
                ),
            };
            Ok(SfuCommand::Candidate {
                candidate,
                sdp_mid,
                sdp_mline_index,
            })
        }
        "leave" => Ok(SfuCommand::Leave),
        _ => Err(SfuSignalError::UnknownEvent),
    }
}

fn parse_name(value: &Value) -> Result<String, SfuSignalError> {
    let name = value.as_str().ok_or(SfuSignalError::InvalidName)?.trim();
    let count = name.chars().count();
    if count == 0 || count > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(SfuSignalError::InvalidName);
    }
    Ok(name.to_owned())
}

/// An SDP string, given directly or as `{type, sdp}` of the expected type.
pub fn parse_sdp(value: Option<&Value>, expected_type: &str) -> Result<String, SfuSignalError> {
    let sdp = match value {
        Some(Value::String(sdp)) => sdp,
        Some(Value::Object(object)) => {
            if object.get("type").and_then(Value::as_str) != Some(expected_type) {
                return Err(SfuSignalError::InvalidSdp);
            }
            match object.get("sdp") {
                Some(Value::String(sdp)) => sdp,
                _ => return Err(SfuSignalError::InvalidSdp),
            }
        }
        _ => return Err(SfuSignalError::InvalidSdp),
    };
    if sdp.len() > MAX_MESSAGE_BYTES {
        return Err(SfuSignalError::PayloadTooLarge);
    }
    if !sdp.starts_with("v=0") {
        return Err(SfuSignalError::InvalidSdp);
    }
    Ok(sdp.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SDP: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n";

    #[test]
    fn join() {
        let cmd =
            parse_command("join", &json!({"room": "r1", "name": " Ada ", "sdp": SDP})).unwrap();
        let SfuCommand::Join { room, name, offer } = cmd else {
            panic!("not a join")
        };
        assert_eq!(
            (room.as_str(), name.as_str(), offer.as_str()),
            ("r1", "Ada", SDP)
        );
        // {type, sdp} is accepted too.
        assert!(parse_command(
            "join",
            &json!({"room": "r1", "name": "x", "sdp": {"type": "offer", "sdp": SDP}})
        )
        .is_ok());
    }

    #[test]
    fn bad_joins_say_what_is_wrong() {
        let err = |v: Value| parse_command("join", &v).unwrap_err();
        assert_eq!(err(json!("r1")), SfuSignalError::InvalidRoom);
        assert_eq!(
            err(json!({"room": "a b", "name": "x", "sdp": SDP})),
            SfuSignalError::InvalidRoom
        );
        assert_eq!(
            err(json!({"room": "r", "sdp": SDP})),
            SfuSignalError::InvalidName
        );
        assert_eq!(
            err(json!({"room": "r", "name": "  ", "sdp": SDP})),
            SfuSignalError::InvalidName
        );
        assert_eq!(
            err(json!({"room": "r", "name": "a\u{7}", "sdp": SDP})),
            SfuSignalError::InvalidName
        );
        assert_eq!(
            err(json!({"room": "r", "name": "n".repeat(65), "sdp": SDP})),
            SfuSignalError::InvalidName
        );
        assert_eq!(
            err(json!({"room": "r", "name": "x"})),
            SfuSignalError::InvalidSdp
        );
        assert_eq!(
            err(json!({"room": "r", "name": "x", "sdp": "hello"})),
            SfuSignalError::InvalidSdp
        );
        assert_eq!(
            err(json!({"room": "r", "name": "x", "sdp": {"type": "answer", "sdp": SDP}})),
            SfuSignalError::InvalidSdp
        );
        let big = format!("v=0\r\n{}", "a".repeat(MAX_MESSAGE_BYTES));
        assert_eq!(
            err(json!({"room": "r", "name": "x", "sdp": big})),
            SfuSignalError::PayloadTooLarge
        );
    }

    #[test]
    fn candidates_and_others() {
        assert_eq!(
            parse_command(
                "candidate",
                &json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0})
            ),
            Ok(SfuCommand::Candidate {
                candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_mline_index: Some(0),
            })
        );
        assert_eq!(
            parse_command("candidate", &json!({"candidate": 5})),
            Err(SfuSignalError::InvalidCandidate)
        );
        assert_eq!(
            parse_command(
                "candidate",
                &json!({"candidate": "c", "sdpMLineIndex": 70000})
            ),
            Err(SfuSignalError::InvalidCandidate)
        );
        assert_eq!(parse_command("leave", &Value::Null), Ok(SfuCommand::Leave));
        assert_eq!(
            parse_command("bye", &Value::Null),
            Err(SfuSignalError::UnknownEvent)
        );
        assert_eq!(
            SfuSignalError::RoomFull.report("join")["error"]["code"],
            "full"
        );
    }
}
