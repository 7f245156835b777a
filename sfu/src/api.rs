//! What the rest of the server sees of the media plane: configuration, errors, and the
//! events a participant's signaling must deliver. A leaf module: it imports nothing else
//! of this crate except the ids, so the core, the driver and the façade all depend on it
//! and never on each other's insides.

use std::{fmt, io, net::IpAddr, ops::RangeInclusive, str::FromStr, time::Duration};

use serde::Serialize;

use crate::ids::{ParticipantId, Round};

/// Where the media socket binds and what address it announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// Address the UDP socket is bound to (`0.0.0.0` = every interface).
    pub bind_ip: IpAddr,
    /// Put in the host candidate instead of the bound address (NAT 1:1).
    pub public_ip: Option<IpAddr>,
}

/// Codecs a participant may negotiate. Only codecs whose keyframes we recognise: every
/// video subscription starts on a keyframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaCodec {
    Opus,
    Vp8,
    Vp9,
    H264,
    Av1,
    H265,
}

impl MediaCodec {
    pub const ALL: [MediaCodec; 6] = [
        MediaCodec::Opus,
        MediaCodec::Vp8,
        MediaCodec::Vp9,
        MediaCodec::H264,
        MediaCodec::Av1,
        MediaCodec::H265,
    ];

    /// What browsers send and we have tested with Chromium.
    pub const DEFAULT: [MediaCodec; 4] = [
        MediaCodec::Opus,
        MediaCodec::Vp8,
        MediaCodec::Vp9,
        MediaCodec::H264,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MediaCodec::Opus => "opus",
            MediaCodec::Vp8 => "vp8",
            MediaCodec::Vp9 => "vp9",
            MediaCodec::H264 => "h264",
            MediaCodec::Av1 => "av1",
            MediaCodec::H265 => "h265",
        }
    }
}

impl fmt::Display for MediaCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown codec {0:?} (known: opus, vp8, vp9, h264, av1, h265)")]
pub struct UnknownCodec(pub String);

impl FromStr for MediaCodec {
    type Err = UnknownCodec;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MediaCodec::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownCodec(s.to_owned()))
    }
}

/// Where the estimate of what reaches each subscriber comes from (docs/sfu.md, "Bandwidth
/// estimation and allocation").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BandwidthEstimation {
    /// None: every subscriber gets the layers it asks for.
    Off,
    /// The subscriber's browser estimates what reaches it and says so in REMB: we send no
    /// transport-wide sequence numbers on its m-lines, so Chromium runs its receive-side
    /// estimator. Costs the server next to nothing; going up is found by sending more
    /// (`media/probe.rs`).
    Receiver,
    /// str0m's send-side estimator (GoogCC) on the subscriber's transport-wide feedback,
    /// starting from this many bits per second. Finds room by padding probes; str0m 0.25's
    /// pacer costs about a third more CPU per forwarded packet.
    SendSide { start_bps: u64 },
}

#[derive(Debug, Clone)]
pub struct SfuConfig {
    pub net: NetConfig,
    /// UDP ports the media socket may bind (the first free one); `None` = any free port.
    pub ports: Option<RangeInclusive<u16>>,
    pub room_capacity: usize,
    /// How long a browser has to answer an `update`.
    pub update_timeout: Duration,
    /// A participant whose media has not connected this long after joining gives its seat
    /// back (`ParticipantEvent::Failed`).
    pub connect_timeout: Duration,
    /// After the answer to an ICE-restart offer, media must be back within this long, or
    /// the participant is dropped (`ParticipantEvent::Failed`).
    pub restart_timeout: Duration,
    /// Nothing received from a connected browser this long means its path is gone: the
    /// server restarts ICE. A browser sends RTCP at least every second while it receives
    /// media, and a STUN consent check every 4-6 s even when alone.
    pub silence_limit: Duration,
    /// Minimum spacing of keyframe requests to one publisher track.
    pub keyframe_interval: Duration,
    pub codecs: Vec<MediaCodec>,
    /// How the bandwidth toward each subscriber is estimated; the estimate decides which
    /// layers each subscriber gets (`media/allocator.rs`).
    pub bandwidth_estimation: BandwidthEstimation,
    /// This core's shard (the first hex digit of its participant ids), < 16.
    pub shard: u8,
}

impl SfuConfig {
    pub fn new(net: NetConfig) -> Self {
        SfuConfig {
            net,
            ports: None,
            room_capacity: 16,
            update_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(20),
            restart_timeout: Duration::from_secs(10),
            silence_limit: Duration::from_secs(8),
            keyframe_interval: Duration::from_millis(500),
            codecs: MediaCodec::DEFAULT.to_vec(),
            bandwidth_estimation: BandwidthEstimation::Off,
            shard: 0,
        }
    }
}

/// An SDP refused by a rule of ours before str0m reads it (`core::sdp`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpRuleError {
    #[error("payload type {pt} means {first:?} in one place and {second:?} in another")]
    PayloadTypeConflict {
        pt: u8,
        first: String,
        second: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    #[error("the room is full")]
    RoomFull,
    #[error("not in a room")]
    NotJoined,
    #[error("cannot bind the SFU's media socket on {ip} (ports {ports}): {source}")]
    Bind {
        ip: IpAddr,
        /// The configured range, or "any".
        ports: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the media thread: {0}")]
    Thread(#[source] io::Error),
    #[error("the offer has {count} media sections; at most {max} are accepted")]
    TooManyMedia { count: usize, max: usize },
    #[error("invalid SDP: {0}")]
    Sdp(#[from] str0m::error::SdpError),
    #[error("refused SDP: {0}")]
    SdpRule(#[from] SdpRuleError),
    #[error("the media stack failed on this {what}: {message}")]
    Contained { what: &'static str, message: String },
    #[error("{0}")]
    Rtc(#[from] str0m::RtcError),
    #[error("invalid ICE candidate: {0}")]
    Candidate(#[from] str0m::error::IceError),
    #[error("participant {0} exists already")]
    Exists(ParticipantId),
    #[error("not publishing {0:?}")]
    NotPublishing(TrackKind),
    #[error("the media plane stopped")]
    Stopped,
    #[error("the room has a passcode")]
    PasscodeRequired,
    #[error("wrong passcode")]
    WrongPasscode,
    #[error("only a moderator may do that")]
    NotModerator,
    #[error("participant {0} is not in this room")]
    NotInRoom(ParticipantId),
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackKind {
    Audio,
    Video,
}

impl TrackKind {
    pub fn name(self) -> &'static str {
        match self {
            TrackKind::Audio => "audio",
            TrackKind::Video => "video",
        }
    }
}

impl From<str0m::media::MediaKind> for TrackKind {
    fn from(kind: str0m::media::MediaKind) -> Self {
        match kind {
            str0m::media::MediaKind::Audio => TrackKind::Audio,
            str0m::media::MediaKind::Video => TrackKind::Video,
        }
    }
}

impl From<TrackKind> for str0m::media::MediaKind {
    fn from(kind: TrackKind) -> Self {
        match kind {
            TrackKind::Audio => str0m::media::MediaKind::Audio,
            TrackKind::Video => str0m::media::MediaKind::Video,
        }
    }
}

/// What a video publication shows: the participant's camera, or its screen (a second video
/// publication, `share`). Audio is always the microphone's and counts as `Camera`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    #[default]
    Camera,
    Screen,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Camera => "camera",
            Source::Screen => "screen",
        }
    }
}

/// A browser's ICE candidate, validated (`candidate:…` as in `RTCIceCandidate.candidate`).
#[derive(Debug, Clone)]
pub struct IceCandidate(pub(crate) str0m::Candidate);

impl FromStr for IceCandidate {
    type Err = SfuError;

    fn from_str(s: &str) -> Result<Self, SfuError> {
        let text = s.trim().trim_start_matches("a=");
        Ok(IceCandidate(str0m::Candidate::from_sdp_string(text)?))
    }
}

/// What the signaling side must deliver to one participant's browser.
#[derive(Debug, Clone, PartialEq)]
pub enum ParticipantEvent {
    /// Send `update {type:'offer', sdp}`; the browser's answer (or why there is none) goes
    /// back with [`crate::Sfu::answer`] naming the same round.
    Update { round: Round, sdp: String },
    /// The room's participants changed.
    Participants(Vec<ParticipantInfo>),
    /// The media connection failed: treat as a leave (`media_failed`).
    Failed,
    /// Who speaks in the room now, loudest first (empty: nobody); sent when that changes.
    Speakers(Vec<Speaker>),
    /// Which simulcast layers of its track on an m-line the publisher should send (the others
    /// nobody needs); sent when that changes.
    PublishLayers(PublishLayers),
    /// The video (`source`) of `publisher` is paused for this participant because its connection
    /// cannot carry it (`paused`), or flows again; sent when that changes.
    VideoPaused {
        publisher: ParticipantId,
        source: Source,
        paused: bool,
    },
    /// A moderator (`by`, their name) took this participant out of the room, alone or with
    /// everyone (`ended`): its media has stopped; treat as a leave.
    Removed { by: String, ended: bool },
}

/// What a moderator does to a room (`core/moderation.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moderation {
    /// Take one participant out of the room.
    Remove(ParticipantId),
    /// Stop (`true`) or restart forwarding one participant's audio to the room, its
    /// recording and its live stream.
    Mute(ParticipantId, bool),
    /// Take everyone out of the room.
    EndRoom,
}

/// Why the participant asking may moderate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeratorRight {
    /// Its join token grants it (the caller checked).
    Granted,
    /// Without tokens: only while it is the room's longest-present member (its creator,
    /// while the creator stays).
    IfHost,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PublishLayers {
    pub mid: String,
    /// RID → whether to send that layer.
    pub active: std::collections::BTreeMap<String, bool>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Speaker {
    pub id: ParticipantId,
    /// Smoothed speech level, linear amplitude (1 = full scale).
    pub level: f32,
}

/// A participant's connection quality, both directions (`core/quality.rs`); ordered worst
/// first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    Poor,
    Fair,
    Good,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ParticipantInfo {
    pub id: ParticipantId,
    pub name: String,
    /// `MediaStream.id`s under which this participant's tracks reach the others.
    pub streams: Vec<String>,
    pub audio: bool,
    /// It sends its camera.
    pub video: bool,
    /// The `MediaStream.id` of its shared screen while it shares one.
    pub screen: Option<String>,
    /// Its connection quality; `None` until its first statistics interval.
    pub quality: Option<Quality>,
    /// A moderator muted its audio: nobody receives it until a moderator lifts that.
    pub muted: bool,
}

/// The join answer for the browser, and who is in the room.
#[derive(Debug, Clone)]
pub struct JoinAnswer {
    pub sdp: String,
    pub participants: Vec<ParticipantInfo>,
    /// The room is a live room: its video is H.264 ([`JoinOptions::live`]).
    pub live: bool,
}

/// What a joiner asks of its room. Only the first joiner's wishes shape a room; later
/// joiners take the room as it is (the join answer says what it is).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JoinOptions {
    /// A room that can be watched live over HLS: every participant's video is negotiated as
    /// H.264 (what HLS players decode; VP8 is not playable in HLS) and audio as Opus. Only
    /// if the server offers H.264 at all.
    pub live: bool,
    /// The room's passcode, as a digest the caller made (the SFU only compares them, in
    /// constant time): a new room takes it, an existing room that has one lets in only
    /// joiners that give the same.
    pub passcode: Option<[u8; 32]>,
}
