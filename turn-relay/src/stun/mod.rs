//! A small, zero-copy STUN codec (RFC 8489) with the TURN additions (RFC 8656).
//!
//! Parsing borrows the datagram ([`Message`] is a view over the input buffer) and
//! encoding appends to a caller-owned `Vec<u8>`, so the relay's hot path never
//! allocates. See the crate README for why we do not reuse webrtc-rs's `stun` crate.

pub mod attributes;
pub mod channel_data;
pub mod integrity;
pub mod message;

pub use channel_data::ChannelData;
pub use message::{Class, DecodeError, Message, MessageWriter, Method, TransactionId};

/// What the first bytes of a packet on a TURN listener say it is (RFC 8656 §12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketKind {
    Stun,
    ChannelData,
    Other,
}

/// Demultiplex by the two most significant bits of the first byte.
pub fn classify(packet: &[u8]) -> PacketKind {
    match packet.first().map(|b| b >> 6) {
        Some(0b00) => PacketKind::Stun,
        Some(0b01) => PacketKind::ChannelData,
        _ => PacketKind::Other,
    }
}
