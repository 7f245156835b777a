//! SFU media plane: every participant of a room has one peer connection to the server; the
//! server keeps one incoming stream per publisher track and one outgoing stream per
//! subscription, and renegotiates (`update`) whenever a participant's set of subscriptions
//! changes or its media path must be repaired (ICE restart). See docs/sfu.md.
//!
//! The signaling side talks to [`Sfu`] only ([`Sfu::join`], [`Sfu::ready`],
//! [`Sfu::answer`], [`Sfu::add_candidate`], [`Sfu::restart`], [`Sfu::leave`],
//! [`Sfu::report`]) and receives each participant's [`ParticipantEvent`]s.
//!
//! - [`api`], [`ids`], [`report`]: what the rest of the server sees (a leaf: no other
//!   module of this crate is imported by them);
//! - [`core`]: the sans-IO SFU — commands, datagrams and time in, datagrams, events and
//!   deadlines out; tested on virtual time with str0m clients (`tests/core`);
//! - [`media`]: the per-packet and per-track rules the core applies (ingest, fan-out,
//!   subscriptions, keyframes, munging);
//! - [`net`]: binding the media socket, batched I/O;
//! - `driver` (private): the thread that owns the socket and the clock and runs the core;
//! - `handle` (private): [`Sfu`], the façade that sends it requests.

pub mod api;
pub mod core;
pub mod ids;
pub mod media;
pub mod net;
pub mod report;

mod driver;
mod handle;

pub use crate::core::TapOutput;
pub use api::{
    BandwidthEstimation, IceCandidate, JoinAnswer, JoinOptions, MediaCodec, Moderation,
    ModeratorRight, NetConfig, ParticipantEvent, ParticipantInfo, PublishLayers, Quality,
    SfuConfig, SfuError, Source, Speaker, TrackKind, UnknownCodec,
};
pub use handle::{JoinRequest, Joined, Sfu};
pub use ids::{ParticipantId, PublicationId, Round, TapId};
pub use media::{fanout::TapPacket, ingest::SenderClock};
pub use report::{ParticipantReport, RoomReport, RoomsReport};
