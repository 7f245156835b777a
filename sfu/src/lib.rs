//! SFU media plane: every participant of a room has one peer connection to the server; the
//! server keeps one incoming stream per publisher track and one outgoing stream per
//! subscription, and renegotiates (`update`) whenever a participant's set of subscriptions
//! changes (Medooze-style, see docs/sfu.md).
//!
//! The signaling side talks to [`Sfu`] only: [`Sfu::join`], [`Sfu::ready`],
//! [`Sfu::add_candidate`], [`Sfu::leave`], [`Sfu::report`]; it receives each participant's
//! [`ParticipantEvent`]s (offers to deliver with an answer expected back, the room's
//! participant list, media failure).
//!
//! - [`engine`]: the media loop — one thread, one UDP socket, a sans-IO str0m `Rtc` per
//!   participant; the only module using the WebRTC library.
//! - [`demux`], [`forwarding`], [`keyframe`], [`negotiation`], [`ports`]: demultiplexing and
//!   forwarding policy without I/O, unit-tested.
//! - [`net`]: binding the media socket and the announced address.

pub mod demux;
pub mod engine;
pub mod forwarding;
pub mod keyframe;
pub mod negotiation;
pub mod net;
pub mod ports;

mod conference;

pub use conference::{
    Joined, ParticipantEvent, ParticipantInfo, ParticipantReport, RoomReport, RoomsReport, Sfu,
    SfuConfig, SfuError,
};
pub use engine::Kind;
pub use net::NetConfig;
