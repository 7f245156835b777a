//! Signaling for SFU rooms: the socket.io `/sfu` namespace (docs/protocol.md, "SFU rooms")
//! in front of the [`sfu`] media plane, and `GET /api/rooms`. Built like the 1-to-1 side
//! (`signaling`):
//!
//! - [`command`]: validation of untrusted events into typed commands, and their errors;
//! - [`state`]: the per-connection state machine (`idle → joining → joined`);
//! - [`core`]: all of the above plus rate limiting, with no I/O; it asks the media plane
//!   through a trait;
//! - [`socketio`]: the only part that touches sockets (and the order of events).

pub mod command;
pub mod core;
pub mod socketio;
pub mod state;

use std::sync::Arc;

use axum::{extract::State, routing::get, Json, Router};
use sfu::{Sfu, SfuError};
use socketioxide::SocketIo;

pub use socketio::{announcer, attach, live_announcer, SfuHub, NAMESPACE};

use crate::{live::LiveRooms, recordings::room::RoomRecorder};

/// Starts the media plane (binding its socket: an error stops the server) and serves `/sfu`
/// on `io`. Returns the media plane and the rooms' live streams (served over HTTP).
pub fn start(
    io: &SocketIo,
    config: &crate::config::Config,
    access: Arc<crate::access::Access>,
) -> Result<(Arc<Sfu>, Arc<LiveRooms>), SfuError> {
    let sfu = Sfu::new(config.sfu.clone())?;
    let recorder = RoomRecorder::new(
        sfu.clone(),
        &config.recordings.dir,
        config.recordings.room.clone(),
        announcer(io),
    );
    let live = LiveRooms::new(sfu.clone(), live_announcer(io));
    attach(
        io,
        SfuHub::new(sfu.clone(), config.rate_limit, recorder, live.clone()),
        access,
    );
    Ok((sfu, live))
}

/// `GET /api/rooms`: per-room, per-participant media statistics.
pub fn routes(sfu: Arc<Sfu>) -> Router {
    Router::new()
        .route("/api/rooms", get(rooms))
        .with_state(sfu)
}

async fn rooms(State(sfu): State<Arc<Sfu>>) -> Json<sfu::RoomsReport> {
    Json(sfu.report().await)
}
