//! A publication: one track a browser sends us (an m-line it sends on), with what every
//! packet of it shares: its codec, its layers (simulcast, each with its keyframe-request
//! throttle and loss count), and the sinks it feeds.

use str0m::{format::PayloadParams, media::Mid};

use crate::{
    api::{Source, TrackKind},
    ids::{ParticipantId, ParticipantSlot, PublicationId},
    media::{
        layers::{Layers, PublisherLayers},
        sink::Sinks,
        speaker::SpeakerMeter,
    },
};

#[derive(Debug)]
pub struct Publication {
    pub id: PublicationId,
    pub(crate) owner: ParticipantSlot,
    pub owner_id: ParticipantId,
    pub mid: Mid,
    pub kind: TrackKind,
    pub source: Source,
    pub codec: CodecCache,
    pub layers: Layers,
    /// Which of its layers the publisher is asked to send.
    pub publisher_layers: PublisherLayers,
    pub(crate) sinks: Sinks,
    /// Speech level (audio publications).
    pub speaker: SpeakerMeter,
}

impl Publication {
    pub(crate) fn new(
        id: PublicationId,
        owner: ParticipantSlot,
        owner_id: ParticipantId,
        mid: Mid,
        kind: TrackKind,
        source: Source,
        layers: Layers,
    ) -> Self {
        Publication {
            id,
            owner,
            owner_id,
            mid,
            kind,
            source,
            codec: CodecCache::default(),
            publisher_layers: PublisherLayers::new(layers.len(), false),
            layers,
            sinks: Sinks::default(),
            speaker: SpeakerMeter::default(),
        }
    }

    /// Layers nobody has needed yet are switched off at once (see [`PublisherLayers::new`]).
    pub(crate) fn with_lean_start(mut self, lean_start: bool) -> Self {
        self.publisher_layers = PublisherLayers::new(self.layers.len(), lean_start);
        self
    }

    /// The `MediaStream.id` its subscribers' m-lines carry: pages group tracks into tiles
    /// by it (the camera and microphone under the participant's id, the screen apart).
    pub fn stream_id(&self) -> String {
        stream_id(self.owner_id, self.source)
    }

    /// The track id of the m-line that carries this publication to a subscriber.
    pub fn track_id(&self) -> String {
        format!("{}-{}-{}", self.owner_id, self.kind.name(), self.id)
    }
}

/// The `MediaStream.id` of `owner`'s `source`.
pub fn stream_id(owner: ParticipantId, source: Source) -> String {
    match source {
        Source::Camera => owner.to_string(),
        Source::Screen => format!("{owner}-screen"),
    }
}

/// The publication's payload type of the last packet and what it is: a stream rarely
/// changes codec, so the lookup in the publisher's codec config happens once.
#[derive(Debug, Clone, Default)]
pub struct CodecCache {
    last: Option<(u8, Option<PayloadParams>)>,
}

impl CodecCache {
    /// Parameters of `pt`, looked up with `lookup` when it differs from the last packet's.
    pub fn params(
        &mut self,
        pt: u8,
        lookup: impl FnOnce(u8) -> Option<PayloadParams>,
    ) -> Option<PayloadParams> {
        match self.last {
            Some((last, params)) if last == pt => params,
            _ => {
                let params = lookup(pt);
                self.last = Some((pt, params));
                params
            }
        }
    }

    /// The codec the publisher currently sends, if it sent anything yet.
    pub fn current(&self) -> Option<PayloadParams> {
        self.last.and_then(|(_, params)| params)
    }
}

/// Packets a publisher's stream lost on the way to us, RFC 3550 A.3 style: expected (from
/// the highest extended sequence number seen) minus received. A retransmission counts as
/// received, so this is loss that was not repaired.
#[derive(Debug, Clone, Default)]
pub struct LossCounter {
    base: Option<u64>,
    highest: u64,
    received: u64,
}

impl LossCounter {
    pub fn packet(&mut self, seq: u64) {
        let base = *self.base.get_or_insert(seq);
        if seq < base {
            // Reordered before the first packet: move the base back.
            self.base = Some(seq);
        }
        self.highest = self.highest.max(seq);
        self.received += 1;
    }

    pub fn lost(&self) -> i64 {
        match self.base {
            Some(base) => (self.highest - base + 1) as i64 - self.received as i64,
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_expected_minus_received() {
        let mut l = LossCounter::default();
        assert_eq!(l.lost(), 0);
        for seq in [10, 11, 13, 14] {
            l.packet(seq);
        }
        assert_eq!(l.lost(), 1);
        // The retransmission arrives.
        l.packet(12);
        assert_eq!(l.lost(), 0);
        // Reordered before the first one.
        l.packet(9);
        assert_eq!(l.lost(), 0);
    }
}
