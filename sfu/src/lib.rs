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
//! - [`rtc_engine`]: the only module using the WebRTC library.
//! - [`rewrite`], [`keyframe`], [`nack_buffer`], [`subscriber_queue`], [`negotiation`],
//!   [`ports`]: forwarding logic without I/O, unit-tested.

pub mod keyframe;
pub mod nack_buffer;
pub mod negotiation;
pub mod ports;
pub mod rewrite;
pub mod rtc_engine;
pub mod subscriber_queue;

mod conference;

pub use conference::{
    Joined, ParticipantEvent, ParticipantInfo, ParticipantReport, RoomReport, RoomsReport, Sfu,
    SfuConfig, SfuError,
};
pub use rtc_engine::{Kind, NetConfig};
