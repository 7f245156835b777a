//! The validation of untrusted socket.io events, both namespaces: an event name and a JSON
//! payload as a client sends them. Nothing panics; what is accepted satisfies the limits
//! docs/protocol.md promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use signal::{
    auth::{Claims, Grants},
    sfu_signaling::command::{self as sfu_command, SfuCommand},
    signaling::command::{self as one_to_one, Command},
};

const EVENTS: [&str; 12] = [
    "join",
    "leave",
    "message",
    "candidate",
    "restart",
    "layer",
    "share",
    "record",
    "live",
    "moderate",
    "update",
    "",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let event = EVENTS[selector as usize % EVENTS.len()];
    let Ok(value) = serde_json::from_slice::<Value>(payload) else {
        return;
    };
    if selector & 0x80 == 0 {
        // 1-to-1 (`/`): positional arguments.
        let args = match &value {
            Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        if let Ok(Command::Join(room, _) | Command::Leave(room) | Command::Message(room, _)) =
            one_to_one::parse_command(event, args, payload.len())
        {
            let name = room.as_str();
            assert!((1..=64).contains(&name.len()), "room {name:?}");
        }
    } else if let Ok(command) = sfu_command::parse_command(event, &value) {
        if let SfuCommand::Join {
            room, name, offer, ..
        } = &command
        {
            assert!((1..=64).contains(&room.as_str().len()));
            assert!(
                !name.is_empty() && name.chars().count() <= 64,
                "name {name:?}"
            );
            assert!(offer.len() <= 64 * 1024 && offer.starts_with("v=0"));
        }
        let claims = Claims {
            sub: "fuzz".into(),
            room: "r*".into(),
            exp: 0,
            nbf: None,
            iat: None,
            grants: Grants::default(),
        };
        let _ = sfu_command::permitted(&claims, &command);
    }
});
