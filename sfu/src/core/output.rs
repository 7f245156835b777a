//! What the core asks its driver to do: [`Output`].

use std::{net::SocketAddr, time::Instant};

use crate::{
    api::ParticipantEvent,
    ids::{ParticipantId, TapId},
    media::fanout::TapPacket,
};

/// What the driver must do next.
#[derive(Debug)]
pub enum Output {
    Transmit(Transmit),
    /// Deliver to this participant's signaling.
    Event {
        participant: ParticipantId,
        event: ParticipantEvent,
    },
    Tap(TapOutput),
    /// Nothing more now; call [`SfuCore::handle_timeout`] at this instant (or earlier, with
    /// a datagram or command).
    Timeout(Instant),
}

/// One datagram for the media socket.
#[derive(Debug)]
pub struct Transmit {
    /// Whom it is for (reported back with [`SfuCore::datagram_dropped`] if the socket
    /// refuses it).
    pub participant: ParticipantId,
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

#[derive(Debug)]
pub enum TapOutput {
    Packet(TapPacket),
    /// The publication ended (its publisher left): the tap is gone.
    Ended(TapId),
}
