//! Validation of untrusted `/sfu` events into typed commands, and the errors a client can
//! cause (no I/O).

use serde_json::Value;
use sfu::{IceCandidate, JoinOptions, Moderation, ParticipantId, Source};

use crate::auth::Claims;
use crate::passcode::{Passcode, PasscodeError};

use crate::signaling::{
    command::{RoomName, MAX_MESSAGE_BYTES},
    error::ErrorReport,
};

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
    #[error(
        "layer must be {{participant, quality, source?}} with quality one of off, low, medium, \
         high and source camera (the default) or screen"
    )]
    InvalidLayer,
    #[error("share must be {{on: true}} or {{on: false}}")]
    InvalidShare,
    #[error("record must be {{on: true}} or {{on: false}}")]
    InvalidRecord,
    #[error("live must be {{on: true}} or {{on: false}}")]
    InvalidLive,
    #[error(
        "moderate must be {{action, participant}} with action one of remove, mute, unmute, or \
         {{action: \"end\"}}"
    )]
    InvalidModerate,
    #[error(transparent)]
    Passcode(#[from] PasscodeError),
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
    #[error("your token does not allow this room")]
    RoomNotAllowed,
    #[error("your token does not allow publishing: join with a receive-only offer")]
    PublishNotAllowed,
    #[error("your token does not allow recording the room")]
    RecordNotAllowed,
    #[error("nobody in the room publishes media: nothing to record")]
    NothingToRecord,
    #[error("the server cannot store the recording")]
    StorageFailed,
    #[error("your token does not allow putting the room on air")]
    LiveNotAllowed,
    #[error(
        "this room cannot go live: its video is not H.264 (a room is live-ready when its first \
         participant joins with live: true, and the server offers H.264)"
    )]
    NotLiveRoom,
    #[error("nobody in the room publishes media: nothing to stream")]
    NothingToStream,
    #[error(
        "only a moderator may do that: a token with the moderate grant or, without tokens, the \
         room's longest-present participant"
    )]
    NotModerator,
    #[error("no such participant in this room")]
    NoSuchParticipant,
}

/// An `/sfu` error as sent to the client: the ack `{error: {...}}` and the `sfu_error`
/// event carry the same [`ErrorReport`] as the 1-to-1 side's `signal_error`.
pub fn ack_error(report: &ErrorReport<'_>) -> Value {
    serde_json::json!({ "error": report })
}

impl SfuSignalError {
    pub fn code(self) -> &'static str {
        match self {
            SfuSignalError::InvalidRoom => "invalid_room",
            SfuSignalError::InvalidName => "invalid_name",
            SfuSignalError::InvalidSdp => "invalid_sdp",
            SfuSignalError::InvalidCandidate => "invalid_candidate",
            SfuSignalError::InvalidLayer => "invalid_layer",
            SfuSignalError::InvalidShare => "invalid_share",
            SfuSignalError::InvalidRecord => "invalid_record",
            SfuSignalError::InvalidLive => "invalid_live",
            SfuSignalError::InvalidModerate => "invalid_moderate",
            SfuSignalError::Passcode(error) => error.code(),
            SfuSignalError::PayloadTooLarge => "payload_too_large",
            SfuSignalError::UnknownEvent => "unknown_event",
            SfuSignalError::AlreadyJoined => "already_joined",
            SfuSignalError::NotJoined => "not_joined",
            SfuSignalError::RoomFull => "full",
            SfuSignalError::RateLimited => "rate_limited",
            SfuSignalError::MediaError => "media_error",
            SfuSignalError::RoomNotAllowed => "room_not_allowed",
            SfuSignalError::PublishNotAllowed => "publish_not_allowed",
            SfuSignalError::RecordNotAllowed => "record_not_allowed",
            SfuSignalError::NothingToRecord => "nothing_to_record",
            SfuSignalError::StorageFailed => "storage_failed",
            SfuSignalError::LiveNotAllowed => "live_not_allowed",
            SfuSignalError::NotLiveRoom => "not_live_room",
            SfuSignalError::NothingToStream => "nothing_to_stream",
            SfuSignalError::NotModerator => "not_moderator",
            SfuSignalError::NoSuchParticipant => "no_such_participant",
        }
    }

    /// The error report for a refused `event`.
    pub fn report(self, event: &str) -> ErrorReport<'_> {
        ErrorReport {
            code: self.code(),
            message: self.to_string(),
            event,
        }
    }
}

#[derive(Debug, Clone)]
pub enum SfuCommand {
    Join {
        room: RoomName,
        name: String,
        offer: String,
        /// What the room is to be if this join creates it (live-ready, a passcode), and the
        /// passcode to enter it otherwise.
        options: JoinOptions,
    },
    /// `sdpMid`/`sdpMLineIndex` are validated and dropped: the server bundles every m-line
    /// on one transport.
    Candidate {
        candidate: IceCandidate,
    },
    /// The page asks for an ICE restart.
    Restart,
    /// The highest layer of `publisher`'s video from `source` the page needs (`None`:
    /// nothing, the tile is hidden; `u8::MAX`: the best there is).
    Layer {
        publisher: ParticipantId,
        source: Source,
        layer: Option<u8>,
    },
    /// The page starts (`on`) or stops sharing its screen.
    Share {
        on: bool,
    },
    /// Start (`on`) or stop the server's recording of the room.
    Record {
        on: bool,
    },
    /// Put the room on air (`on`) for live viewers, or take it off.
    Live {
        on: bool,
    },
    /// Remove someone, mute or unmute their audio, or end the room.
    Moderate(Moderation),
    Leave,
}

/// Whether a token's `claims` allow `command`: its room, and sending media (an offer that
/// sends, or a screen) only with the publish grant.
pub fn permitted(claims: &Claims, command: &SfuCommand) -> Result<(), SfuSignalError> {
    match command {
        SfuCommand::Join { room, .. } if !claims.allows_room(room.as_str()) => {
            Err(SfuSignalError::RoomNotAllowed)
        }
        SfuCommand::Join { offer, .. } if !claims.grants.publish && offer_sends(offer) => {
            Err(SfuSignalError::PublishNotAllowed)
        }
        SfuCommand::Share { on: true } if !claims.grants.publish => {
            Err(SfuSignalError::PublishNotAllowed)
        }
        SfuCommand::Record { .. } if !claims.grants.record => Err(SfuSignalError::RecordNotAllowed),
        SfuCommand::Live { .. } if !claims.grants.live => Err(SfuSignalError::LiveNotAllowed),
        SfuCommand::Moderate(_) if !claims.grants.moderate => Err(SfuSignalError::NotModerator),
        _ => Ok(()),
    }
}

/// Whether an offer sends media on any open m-line (`sendrecv` is the default direction).
pub fn offer_sends(sdp: &str) -> bool {
    sdp.split("\nm=").skip(1).any(|section| {
        let open = section.split_whitespace().nth(1) != Some("0");
        let receives_only = section.lines().any(|l| {
            let l = l.trim_end();
            l == "a=recvonly" || l == "a=inactive"
        });
        open && !receives_only
    })
}

/// A tile's need as the page says it, as a layer: `low`, `medium`, `high` are the
/// simulcast layers from the lowest up (`high` = the best there is), `off` = none.
pub fn parse_quality(quality: &str) -> Option<Option<u8>> {
    Some(match quality {
        "off" => None,
        "low" => Some(0),
        "medium" => Some(1),
        "high" => Some(u8::MAX),
        _ => return None,
    })
}

pub fn parse_command(event: &str, data: &Value) -> Result<SfuCommand, SfuSignalError> {
    match event {
        "join" => {
            let object = data.as_object().ok_or(SfuSignalError::InvalidRoom)?;
            let room = RoomName::parse(object.get("room").unwrap_or(&Value::Null))
                .map_err(|_| SfuSignalError::InvalidRoom)?;
            let name = parse_name(object.get("name").unwrap_or(&Value::Null))?;
            let offer = parse_sdp(object.get("sdp"), "offer")?;
            let live = match object.get("live") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(live)) => *live,
                Some(_) => return Err(SfuSignalError::InvalidLive),
            };
            let passcode = parse_passcode(object.get("passcode"))?;
            Ok(SfuCommand::Join {
                room,
                name,
                offer,
                options: JoinOptions { live, passcode },
            })
        }
        "candidate" => {
            let object = data.as_object().ok_or(SfuSignalError::InvalidCandidate)?;
            let candidate = object
                .get("candidate")
                .and_then(Value::as_str)
                .filter(|c| c.len() <= 1024)
                .ok_or(SfuSignalError::InvalidCandidate)?;
            match object.get("sdpMid") {
                None | Some(Value::Null) => {}
                Some(Value::String(mid)) if mid.len() <= 32 => {}
                Some(_) => return Err(SfuSignalError::InvalidCandidate),
            }
            match object.get("sdpMLineIndex") {
                None | Some(Value::Null) => {}
                Some(v) if v.as_u64().is_some_and(|n| n <= u64::from(u16::MAX)) => {}
                Some(_) => return Err(SfuSignalError::InvalidCandidate),
            }
            let candidate = candidate
                .parse()
                .map_err(|_| SfuSignalError::InvalidCandidate)?;
            Ok(SfuCommand::Candidate { candidate })
        }
        "restart" => Ok(SfuCommand::Restart),
        "layer" => {
            let object = data.as_object().ok_or(SfuSignalError::InvalidLayer)?;
            let publisher = object
                .get("participant")
                .and_then(Value::as_str)
                .and_then(|id| id.parse().ok())
                .ok_or(SfuSignalError::InvalidLayer)?;
            let layer = object
                .get("quality")
                .and_then(Value::as_str)
                .and_then(parse_quality)
                .ok_or(SfuSignalError::InvalidLayer)?;
            let source = match object.get("source") {
                None | Some(Value::Null) => Source::Camera,
                Some(source) => match source.as_str() {
                    Some("camera") => Source::Camera,
                    Some("screen") => Source::Screen,
                    _ => return Err(SfuSignalError::InvalidLayer),
                },
            };
            Ok(SfuCommand::Layer {
                publisher,
                source,
                layer,
            })
        }
        "share" => Ok(SfuCommand::Share {
            on: parse_on(data).ok_or(SfuSignalError::InvalidShare)?,
        }),
        "record" => Ok(SfuCommand::Record {
            on: parse_on(data).ok_or(SfuSignalError::InvalidRecord)?,
        }),
        "live" => Ok(SfuCommand::Live {
            on: parse_on(data).ok_or(SfuSignalError::InvalidLive)?,
        }),
        "moderate" => parse_moderation(data).map(SfuCommand::Moderate),
        "leave" => Ok(SfuCommand::Leave),
        _ => Err(SfuSignalError::UnknownEvent),
    }
}

/// `{action: "remove" | "mute" | "unmute", participant}` or `{action: "end"}`.
fn parse_moderation(data: &Value) -> Result<Moderation, SfuSignalError> {
    let object = data.as_object().ok_or(SfuSignalError::InvalidModerate)?;
    let participant = || -> Result<ParticipantId, SfuSignalError> {
        object
            .get("participant")
            .and_then(Value::as_str)
            .and_then(|id| id.parse().ok())
            .ok_or(SfuSignalError::InvalidModerate)
    };
    match object.get("action").and_then(Value::as_str) {
        Some("remove") => Ok(Moderation::Remove(participant()?)),
        Some("mute") => Ok(Moderation::Mute(participant()?, true)),
        Some("unmute") => Ok(Moderation::Mute(participant()?, false)),
        Some("end") => Ok(Moderation::EndRoom),
        _ => Err(SfuSignalError::InvalidModerate),
    }
}

/// A room passcode's digest (the media plane compares digests).
fn parse_passcode(value: Option<&Value>) -> Result<Option<[u8; 32]>, SfuSignalError> {
    Ok(Passcode::parse(value)?.map(|p| p.digest()))
}

/// `{on: true}` or `{on: false}`.
fn parse_on(data: &Value) -> Option<bool> {
    data.as_object()?.get("on")?.as_bool()
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
    use crate::auth::Grants;
    use serde_json::json;

    const SDP: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n";

    /// A token's claims for `room` with `grants`.
    fn token(room: &str, grants: crate::auth::Grants) -> Claims {
        Claims {
            sub: "a".into(),
            room: room.into(),
            exp: 0,
            nbf: None,
            iat: None,
            grants,
        }
    }

    #[test]
    fn join() {
        let cmd =
            parse_command("join", &json!({"room": "r1", "name": " Ada ", "sdp": SDP})).unwrap();
        let SfuCommand::Join {
            room,
            name,
            offer,
            options,
        } = cmd
        else {
            panic!("not a join")
        };
        assert_eq!(
            options,
            JoinOptions::default(),
            "not live-ready, no passcode, unless asked"
        );
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
    fn moderation_names_a_participant_and_needs_its_grant() {
        let id: ParticipantId = "p0123456789ab".parse().unwrap();
        for (data, expected) in [
            (
                json!({"action": "remove", "participant": id}),
                Moderation::Remove(id),
            ),
            (
                json!({"action": "mute", "participant": id}),
                Moderation::Mute(id, true),
            ),
            (
                json!({"action": "unmute", "participant": id}),
                Moderation::Mute(id, false),
            ),
            (json!({"action": "end"}), Moderation::EndRoom),
        ] {
            let Ok(SfuCommand::Moderate(got)) = parse_command("moderate", &data) else {
                panic!("{data}")
            };
            assert_eq!(got, expected);
        }
        for bad in [
            json!(null),
            json!("end"),
            json!({"action": "remove"}),
            json!({"action": "mute", "participant": "alice"}),
            json!({"action": "ban", "participant": id}),
            json!({"action": ["end"]}),
        ] {
            assert_eq!(
                parse_command("moderate", &bad).unwrap_err(),
                SfuSignalError::InvalidModerate,
                "{bad}"
            );
        }
        let command = SfuCommand::Moderate(Moderation::EndRoom);
        let claims = |moderate| {
            token(
                "r",
                Grants {
                    moderate,
                    ..Grants::default()
                },
            )
        };
        assert_eq!(
            permitted(&claims(false), &command),
            Err(SfuSignalError::NotModerator)
        );
        assert_eq!(permitted(&claims(true), &command), Ok(()));
        assert!(!Grants::default().moderate, "never granted unless named");
    }

    #[test]
    fn live_needs_its_grant_and_a_boolean() {
        for on in [true, false] {
            let Ok(SfuCommand::Live { on: got }) = parse_command("live", &json!({ "on": on }))
            else {
                panic!("live {on} refused")
            };
            assert_eq!(got, on);
        }
        for bad in [json!({}), json!({"on": "yes"}), json!(null), json!([true])] {
            assert_eq!(
                parse_command("live", &bad).unwrap_err(),
                SfuSignalError::InvalidLive
            );
        }
        let join = |live: Value| {
            parse_command(
                "join",
                &json!({"room": "r", "name": "A", "sdp": SDP, "live": live}),
            )
        };
        assert!(matches!(
            join(json!(true)),
            Ok(SfuCommand::Join {
                options: JoinOptions { live: true, .. },
                ..
            })
        ));
        assert_eq!(join(json!("yes")).unwrap_err(), SfuSignalError::InvalidLive);
        let claims = |live| {
            token(
                "r",
                Grants {
                    live,
                    ..Grants::default()
                },
            )
        };
        let command = SfuCommand::Live { on: true };
        assert_eq!(
            permitted(&claims(false), &command),
            Err(SfuSignalError::LiveNotAllowed)
        );
        assert_eq!(permitted(&claims(true), &command), Ok(()));
    }

    #[test]
    fn passcodes_are_kept_as_digests_and_validated() {
        let join = |passcode: Value| {
            parse_command(
                "join",
                &json!({"room": "r", "name": "A", "sdp": SDP, "passcode": passcode}),
            )
            .map(|command| match command {
                SfuCommand::Join { options, .. } => options.passcode,
                _ => panic!("not a join"),
            })
        };
        let digest = join(json!("open sesame")).unwrap().unwrap();
        assert_eq!(join(json!("open sesame")).unwrap(), Some(digest));
        assert_ne!(join(json!("open sesame!")).unwrap(), Some(digest));
        assert_eq!(join(json!("")).unwrap(), None, "empty: no passcode");
        assert_eq!(join(Value::Null).unwrap(), None);
        assert!(join(json!("é".repeat(64))).is_ok());
        for bad in [
            json!(1234),
            json!("x".repeat(65)),
            json!("a\nb"),
            json!(["pw"]),
        ] {
            assert_eq!(join(bad).unwrap_err(), PasscodeError::Invalid.into());
        }
    }

    #[test]
    fn layer() {
        let cmd = parse_command(
            "layer",
            &json!({"participant": "p000000000001", "quality": "low"}),
        )
        .unwrap();
        let SfuCommand::Layer {
            publisher,
            source,
            layer,
        } = cmd
        else {
            panic!("not a layer")
        };
        assert_eq!(
            (publisher.to_string().as_str(), source, layer),
            ("p000000000001", Source::Camera, Some(0))
        );
        let Ok(SfuCommand::Layer { source, .. }) = parse_command(
            "layer",
            &json!({"participant": "p000000000001", "quality": "low", "source": "screen"}),
        ) else {
            panic!("a screen's layer refused")
        };
        assert_eq!(source, Source::Screen);
        for (quality, layer) in [("off", None), ("medium", Some(1)), ("high", Some(u8::MAX))] {
            let Ok(SfuCommand::Layer { layer: got, .. }) = parse_command(
                "layer",
                &json!({"participant": "p000000000001", "quality": quality}),
            ) else {
                panic!("{quality} refused")
            };
            assert_eq!(got, layer, "{quality}");
        }
        for bad in [
            json!("low"),
            json!({"participant": "p000000000001", "quality": "ultra"}),
            json!({"participant": "p000000000001"}),
            json!({"participant": "alice", "quality": "low"}),
            json!({"participant": 7, "quality": "low"}),
            json!({"participant": "p000000000001", "quality": "low", "source": "tab"}),
            json!({"participant": "p000000000001", "quality": "low", "source": 1}),
        ] {
            assert_eq!(
                parse_command("layer", &bad).unwrap_err(),
                SfuSignalError::InvalidLayer,
                "{bad}"
            );
        }
    }

    #[test]
    fn a_token_limits_the_room_and_publishing() {
        let claims = |room: &str, publish| {
            token(
                room,
                Grants {
                    publish,
                    ..Grants::default()
                },
            )
        };
        let sends = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n";
        let receives = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\na=sendrecv\r\n";
        let default_direction = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n";
        assert!(offer_sends(sends));
        assert!(!offer_sends(receives), "a stopped m-line sends nothing");
        assert!(offer_sends(default_direction), "sendrecv is the default");
        let join = |room: &str, offer: &str| SfuCommand::Join {
            room: RoomName::parse(&json!(room)).unwrap(),
            name: "A".into(),
            offer: offer.into(),
            options: JoinOptions::default(),
        };
        assert_eq!(permitted(&claims("r", true), &join("r", sends)), Ok(()));
        assert_eq!(
            permitted(&claims("r", true), &join("s", sends)),
            Err(SfuSignalError::RoomNotAllowed)
        );
        assert_eq!(permitted(&claims("r*", true), &join("r2", sends)), Ok(()));
        assert_eq!(
            permitted(&claims("r", false), &join("r", sends)),
            Err(SfuSignalError::PublishNotAllowed)
        );
        assert_eq!(permitted(&claims("r", false), &join("r", receives)), Ok(()));
        assert_eq!(
            permitted(&claims("r", false), &SfuCommand::Share { on: true }),
            Err(SfuSignalError::PublishNotAllowed)
        );
        assert_eq!(
            permitted(&claims("r", false), &SfuCommand::Share { on: false }),
            Ok(())
        );
    }

    #[test]
    fn share() {
        for on in [true, false] {
            let Ok(SfuCommand::Share { on: got }) = parse_command("share", &json!({ "on": on }))
            else {
                panic!("share {on} refused")
            };
            assert_eq!(got, on);
        }
        for bad in [
            json!(true),
            json!({}),
            json!({"on": "yes"}),
            json!({"on": 1}),
        ] {
            assert_eq!(
                parse_command("share", &bad).unwrap_err(),
                SfuSignalError::InvalidShare,
                "{bad}"
            );
        }
    }

    #[test]
    fn record_needs_its_grant_with_tokens() {
        for on in [true, false] {
            let Ok(SfuCommand::Record { on: got }) = parse_command("record", &json!({ "on": on }))
            else {
                panic!("record {on} refused")
            };
            assert_eq!(got, on);
        }
        for bad in [json!(null), json!({}), json!({"on": "yes"}), json!([true])] {
            assert_eq!(
                parse_command("record", &bad).unwrap_err(),
                SfuSignalError::InvalidRecord,
                "{bad}"
            );
        }
        let claims = |record| {
            token(
                "r",
                Grants {
                    record,
                    ..Grants::default()
                },
            )
        };
        for on in [true, false] {
            assert_eq!(
                permitted(&claims(false), &SfuCommand::Record { on }),
                Err(SfuSignalError::RecordNotAllowed)
            );
            assert_eq!(permitted(&claims(true), &SfuCommand::Record { on }), Ok(()));
        }
        // A token that does not name the grant does not give it.
        let minted: Claims = serde_json::from_value(
            json!({"sub": "a", "room": "r", "exp": 1, "grants": {"publish": true}}),
        )
        .unwrap();
        assert!(!minted.grants.record);
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
        let host = "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host";
        assert!(matches!(
            parse_command(
                "candidate",
                &json!({"candidate": host, "sdpMid": "0", "sdpMLineIndex": 0})
            ),
            Ok(SfuCommand::Candidate { .. })
        ));
        assert!(matches!(
            parse_command("candidate", &json!({"candidate": format!("a={host}")})),
            Ok(SfuCommand::Candidate { .. })
        ));
        let err = |v: Value| parse_command("candidate", &v).unwrap_err();
        assert_eq!(
            err(json!({"candidate": 5})),
            SfuSignalError::InvalidCandidate
        );
        assert_eq!(
            err(json!({"candidate": "candidate:garbage"})),
            SfuSignalError::InvalidCandidate,
            "checked here, not later in the media plane"
        );
        assert_eq!(
            err(json!({"candidate": host, "sdpMLineIndex": 70000})),
            SfuSignalError::InvalidCandidate
        );
        assert_eq!(
            err(json!({"candidate": host, "sdpMid": 3})),
            SfuSignalError::InvalidCandidate
        );
        assert!(matches!(
            parse_command("leave", &Value::Null),
            Ok(SfuCommand::Leave)
        ));
        assert!(matches!(
            parse_command("restart", &json!({})),
            Ok(SfuCommand::Restart)
        ));
        assert_eq!(
            parse_command("bye", &Value::Null).unwrap_err(),
            SfuSignalError::UnknownEvent
        );
        let report = ack_error(&SfuSignalError::RoomFull.report("join"));
        assert_eq!(report["error"]["code"], "full");
        assert_eq!(report["error"]["event"], "join");
    }
}
