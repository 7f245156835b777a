//! `GET /api/rooms`: per-room, per-participant media figures (docs/protocol.md).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    api::{Quality, TrackKind},
    ids::ParticipantId,
};

#[derive(Debug, Clone, Default, Serialize)]
pub struct RoomsReport {
    pub rooms: Vec<RoomReport>,
    pub participants: usize,
    pub joins: u64,
    pub leaves: u64,
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
    pub dropped_packets: u64,
    pub keyframe_requests_sent: u64,
    /// Server-initiated ICE restarts (a participant's path was lost, or it asked).
    pub ice_restarts: u64,
    /// The media socket's address as announced in our ICE candidates.
    pub media_address: String,
    /// Media-plane state alive: `rtc` (participants' connections) and `update` (offers
    /// waiting for a browser's answer); 0 when nobody is connected.
    pub tasks: i64,
    pub tasks_by_kind: BTreeMap<String, i64>,
    pub uptime_seconds: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoomReport {
    pub room: String,
    pub participants: Vec<ParticipantReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParticipantReport {
    pub id: ParticipantId,
    pub name: String,
    pub seconds: u64,
    pub publishing: Vec<TrackKind>,
    pub subscriptions: usize,
    pub bitrate_in_bps: u64,
    pub bitrate_out_bps: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Lost on the way from the browser (from our receive statistics).
    pub packets_lost_inbound: i64,
    /// Lost on the way to the browser (from its receiver reports).
    pub packets_lost_outbound: i64,
    pub rtt_ms: Option<f64>,
    /// Keyframe requests made on this participant's behalf (its PLI/FIR, joins).
    pub keyframes_requested: u64,
    /// Keyframe requests sent to this participant as a publisher, after throttling.
    pub keyframes_sent_upstream: u64,
    pub nacks_received: u64,
    /// Datagrams to this participant the socket refused (send buffer full).
    pub dropped: u64,
    pub negotiations: u64,
    pub ice_restarts: u64,
    /// Connection quality, both directions (`None` before its first statistics interval).
    pub quality: Option<Quality>,
}
