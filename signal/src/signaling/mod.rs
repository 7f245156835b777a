//! Signaling for 1-to-1 rooms (seed 002): the sans-IO core and its socket.io binding.
//!
//! - [`state`]: the per-client state machine (`leaved → joined → joined_conn ⇄ joined_unbind`).
//! - [`rooms`]: membership and capacity.
//! - [`command`]: validation of untrusted events into typed commands.
//! - [`rate_limit`]: the per-connection event budget.
//! - [`core`]: all of the above put together, with no I/O.
//! - [`socketio`]: the only part that touches sockets.

pub mod command;
pub mod core;
pub mod error;
pub mod rate_limit;
pub mod rooms;
pub mod socketio;
pub mod state;

pub use error::SignalError;
pub use socketio::{attach, Hub, SignalingConfig};
