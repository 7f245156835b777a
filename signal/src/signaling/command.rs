//! Turning untrusted socket.io events into typed commands. Everything a client sends passes
//! through [`parse_command`] before it can touch a room.

use std::{fmt, sync::Arc};

use serde_json::{Map, Value};

use super::error::SignalError;
use crate::passcode::Passcode;

pub const MAX_ROOM_LEN: usize = 64;
/// Largest `message` payload accepted (an SDP offer with many codecs is ~10 KiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A validated room name: 1..=64 bytes of `[A-Za-z0-9_.~-]`. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RoomName(Arc<str>);

impl RoomName {
    pub fn parse(value: &Value) -> Result<Self, SignalError> {
        let name = value.as_str().ok_or(SignalError::InvalidRoom)?;
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '~' | '-');
        if name.is_empty() || name.len() > MAX_ROOM_LEN || !name.chars().all(valid_char) {
            return Err(SignalError::InvalidRoom);
        }
        Ok(RoomName(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for RoomName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A validated offer/answer/candidate object, relayed unchanged. Shared, not copied, when
/// a room has several receivers.
pub type Payload = Arc<Value>;

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A room, and its passcode (the one to set if the room is new, else to enter it).
    Join(RoomName, Option<Passcode>),
    Leave(RoomName),
    Message(RoomName, Payload),
}

/// Parses one event. `args` are the event's positional arguments; `encoded_len` is the
/// size of the packet as received, used to refuse oversized payloads before looking inside.
pub fn parse_command(
    event: &str,
    mut args: Vec<Value>,
    encoded_len: usize,
) -> Result<Command, SignalError> {
    let room = |args: &[Value]| RoomName::parse(args.first().unwrap_or(&Value::Null));
    match event {
        "join" => {
            let room = room(&args)?;
            let passcode = Passcode::parse(args.get(1))?;
            Ok(Command::Join(room, passcode))
        }
        "leave" => Ok(Command::Leave(room(&args)?)),
        "message" => {
            let room = room(&args)?;
            if encoded_len > MAX_MESSAGE_BYTES + MAX_ROOM_LEN + 32 {
                return Err(SignalError::PayloadTooLarge);
            }
            if args.len() != 2 {
                return Err(SignalError::InvalidMessage);
            }
            let data = args.swap_remove(1);
            validate_signal(&data)?;
            Ok(Command::Message(room, Arc::new(data)))
        }
        _ => Err(SignalError::UnknownEvent),
    }
}

/// Checks that `data` is what peers exchange: an SDP or an ICE candidate object, or a plain
/// text message (the course's earlier chapters send chat text through `message`; it is
/// relayed as it is, within the same size limit).
fn validate_signal(data: &Value) -> Result<(), SignalError> {
    if data.is_string() {
        return Ok(());
    }
    let object = data.as_object().ok_or(SignalError::InvalidMessage)?;
    let is_string = |key: &str| object.get(key).is_some_and(Value::is_string);
    let valid = match object.get("type").and_then(Value::as_str) {
        Some("offer" | "answer") => is_string("sdp"),
        Some("candidate") => is_string("candidate") && valid_candidate_fields(object),
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(SignalError::InvalidMessage)
    }
}

fn valid_candidate_fields(object: &Map<String, Value>) -> bool {
    let index_ok = |key| match object.get(key) {
        None | Some(Value::Null) => true,
        Some(v) => v.as_u64().is_some_and(|n| n <= u64::from(u16::MAX)),
    };
    let mid_ok = |key| matches!(object.get(key), None | Some(Value::Null | Value::String(_)));
    index_ok("label") && index_ok("sdpMLineIndex") && mid_ok("id") && mid_ok("sdpMid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passcode::PasscodeError;
    use serde_json::json;

    fn parse(event: &str, args: Value) -> Result<Command, SignalError> {
        let len = args.to_string().len();
        let Value::Array(args) = args else {
            panic!("args must be an array")
        };
        parse_command(event, args, len)
    }

    #[test]
    fn room_names() {
        for ok in ["111", "a", "room-1_x.y~z", &"r".repeat(64)] {
            assert!(RoomName::parse(&json!(ok)).is_ok(), "{ok}");
        }
        for bad in [
            json!(""),
            json!("r".repeat(65)),
            json!("with space"),
            json!("../etc"),
            json!("é"),
            json!(42),
            json!(null),
            json!(["111"]),
            json!({"room": "111"}),
        ] {
            assert_eq!(
                RoomName::parse(&bad),
                Err(SignalError::InvalidRoom),
                "{bad}"
            );
        }
    }

    #[test]
    fn join_and_leave() {
        let room = RoomName::parse(&json!("111")).unwrap();
        assert_eq!(
            parse("join", json!(["111"])),
            Ok(Command::Join(room.clone(), None))
        );
        // The course's client sends the room only; a passcode may follow it.
        assert_eq!(
            parse("join", json!(["111", ""])),
            Ok(Command::Join(room.clone(), None))
        );
        let sesame = Passcode::parse(Some(&json!("sesame"))).unwrap();
        assert_eq!(
            parse("join", json!(["111", "sesame"])),
            Ok(Command::Join(room.clone(), sesame))
        );
        assert_eq!(
            parse("join", json!(["111", 1234])),
            Err(PasscodeError::Invalid.into())
        );
        assert_eq!(parse("leave", json!(["111"])), Ok(Command::Leave(room)));
        assert_eq!(parse("join", json!([])), Err(SignalError::InvalidRoom));
        assert_eq!(parse("join", json!([7])), Err(SignalError::InvalidRoom));
        assert_eq!(
            parse("hello", json!(["111"])),
            Err(SignalError::UnknownEvent)
        );
    }

    #[test]
    fn course_shaped_messages_pass() {
        for data in [
            json!({"type": "offer", "sdp": "v=0\r\n"}),
            json!({"type": "answer", "sdp": "v=0\r\n"}),
            json!({"type": "candidate", "label": 0, "id": "0", "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host"}),
            json!({"type": "candidate", "sdpMLineIndex": 1, "sdpMid": null, "candidate": ""}),
            json!("hello, 你好"),
            json!(""),
        ] {
            let got = parse("message", json!(["111", data.clone()]));
            assert!(
                matches!(got, Ok(Command::Message(_, ref d)) if **d == data),
                "{data}"
            );
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        for data in [
            json!(42),
            json!(null),
            json!([]),
            json!({"sdp": "v=0"}),
            json!({"type": "offer"}),
            json!({"type": "offer", "sdp": 5}),
            json!({"type": "bye"}),
            json!({"type": "candidate"}),
            json!({"type": "candidate", "candidate": "c", "label": -1}),
            json!({"type": "candidate", "candidate": "c", "sdpMLineIndex": 70000}),
            json!({"type": "candidate", "candidate": "c", "id": 3}),
        ] {
            assert_eq!(
                parse("message", json!(["111", data])),
                Err(SignalError::InvalidMessage),
                "{data}"
            );
        }
        assert_eq!(
            parse("message", json!(["111"])),
            Err(SignalError::InvalidMessage)
        );
        assert_eq!(
            parse(
                "message",
                json!(["111", {"type": "offer", "sdp": ""}, "extra"])
            ),
            Err(SignalError::InvalidMessage)
        );
        assert_eq!(
            parse("message", json!([null, {"type": "offer", "sdp": ""}])),
            Err(SignalError::InvalidRoom)
        );
    }

    #[test]
    fn relayed_objects_keep_their_key_order() {
        // The course's client and others may depend on it; serde_json's `preserve_order`.
        let text = r#"{"type":"candidate","label":0,"id":"0","candidate":"c"}"#;
        let data: Value = serde_json::from_str(text).unwrap();
        let Ok(Command::Message(_, relayed)) = parse("message", json!(["111", data])) else {
            panic!("valid candidate refused");
        };
        assert_eq!(relayed.to_string(), text);
    }

    #[test]
    fn oversized_payload_is_refused() {
        // Results are matched, not printed: a failure must not dump 64 KiB.
        let offer = |len| json!(["111", {"type": "offer", "sdp": "a".repeat(len)}]);
        let too_big = parse("message", offer(MAX_MESSAGE_BYTES + 100));
        assert!(matches!(too_big, Err(SignalError::PayloadTooLarge)));
        let fits = parse("message", offer(MAX_MESSAGE_BYTES - 100));
        assert!(matches!(fits, Ok(Command::Message(..))));
    }
}
