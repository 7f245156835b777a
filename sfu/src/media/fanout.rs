//! Fan-out: one publisher packet to every sink of its publication ([`super::sink`]). What
//! "deliver" means for each kind is the caller's ([`Deliver`]): the core writes to a
//! subscriber's `Rtc` or queues a [`TapPacket`]; [`Tap`] is what a tap keeps.

use std::{sync::Arc, time::Instant};

use str0m::format::{Codec, PayloadParams};

use crate::{
    api::{MediaCodec, TrackKind},
    ids::{PublicationSlot, TapId},
    media::{
        ingest::{Incoming, SenderClock},
        layers::LayerMask,
        munger::{Held, LayerSwitch},
        sink::{Delivery, Sink, Sinks},
    },
};

/// Delivers a packet to one sink.
pub(crate) trait Deliver {
    fn deliver(&mut self, sink: Sink, packet: &Incoming) -> Delivery;
}

/// What one fan-out did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanOut {
    pub written: u64,
    pub bytes: u64,
    /// A sink waits for a keyframe that this packet is not: ask the publisher.
    /// Layers a sink waits for a keyframe of.
    pub keyframes_wanted: LayerMask,
}

pub(crate) fn fan_out(packet: &Incoming, sinks: &Sinks, deliver: &mut impl Deliver) -> FanOut {
    let mut result = FanOut::default();
    for sink in sinks.iter() {
        match deliver.deliver(sink, packet) {
            Delivery::Written { bytes, .. } => {
                result.written += 1;
                result.bytes += bytes;
            }
            Delivery::WaitingKeyframe(layer) => {
                result.keyframes_wanted = result.keyframes_wanted.with(layer)
            }
            Delivery::Skipped => {}
        }
    }
    result
}

/// A tap: receives one publication's packets like a subscriber would (from a keyframe on,
/// sequence numbers from 1), for a consumer inside the server rather than a browser.
#[derive(Debug)]
pub struct Tap {
    pub id: TapId,
    pub(crate) publication: PublicationSlot,
    switch: LayerSwitch,
}

/// One packet for a tap's consumer.
#[derive(Debug, Clone)]
pub struct TapPacket {
    pub tap: TapId,
    pub kind: TrackKind,
    pub params: PayloadParams,
    /// Extended sequence number, 1 for the first packet the tap receives.
    pub seq: u64,
    pub rtp_time: u32,
    pub marker: bool,
    pub keyframe: bool,
    pub payload: Arc<[u8]>,
    /// When the publisher's packet arrived.
    pub arrived: Instant,
    /// The publisher's latest sender report, its RTP time in this tap's timeline.
    pub sender_report: Option<SenderClock>,
}

impl TapPacket {
    /// The packet's codec (`None`: one the SFU does not name).
    pub fn codec(&self) -> Option<MediaCodec> {
        Some(match self.params.spec().codec {
            Codec::Opus => MediaCodec::Opus,
            Codec::Vp8 => MediaCodec::Vp8,
            Codec::Vp9 => MediaCodec::Vp9,
            Codec::H264 => MediaCodec::H264,
            Codec::Av1 => MediaCodec::Av1,
            Codec::H265 => MediaCodec::H265,
            _ => return None,
        })
    }
}

impl Tap {
    /// A tap takes `layer` of a simulcast publication (the top one: a recording or a live
    /// stream wants the best picture).
    pub(crate) fn new(id: TapId, publication: PublicationSlot, layer: u8) -> Self {
        Tap {
            id,
            publication,
            switch: LayerSwitch::new(Some(layer)),
        }
    }

    /// The layer it takes.
    pub(crate) fn layer(&self) -> Option<u8> {
        self.switch.current().or(self.switch.target())
    }

    pub(crate) fn forward(&mut self, packet: &Incoming) -> Result<TapPacket, Delivery> {
        let mapped = match self.switch.map(&packet.facts()) {
            Ok(mapped) => mapped,
            Err(Held::WaitingKeyframe(layer)) => return Err(Delivery::WaitingKeyframe(layer)),
            Err(Held::NotForwarded) => return Err(Delivery::Skipped),
        };
        Ok(TapPacket {
            tap: self.id,
            kind: packet.kind,
            params: packet.params,
            seq: mapped.seq,
            rtp_time: mapped.rtp_time,
            marker: packet.marker,
            keyframe: packet.keyframe,
            payload: packet.payload.clone(),
            arrived: packet.arrived,
            sender_report: packet.sender_report.map(|report| SenderClock {
                ntp: report.ntp,
                // The tap's timeline is the publisher's shifted by a constant.
                rtp_time: report
                    .rtp_time
                    .wrapping_add(mapped.rtp_time.wrapping_sub(packet.rtp_time)),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use str0m::format::Codec;

    use super::*;
    use crate::{
        ids::{ParticipantSlot, SubscriptionSlot, TapSlot},
        media::ingest::tests::params,
    };

    fn packet(seq: u64, keyframe: bool) -> Incoming {
        Incoming {
            kind: TrackKind::Video,
            layer: 0,
            seq,
            pt: 96,
            params: params(96, Codec::Vp8),
            keyframe,
            rtp_time: 0,
            arrived: Instant::now(),
            captured: Instant::now(),
            marker: false,
            ext: Default::default(),
            payload: Arc::from(&[1u8, 2, 3][..]),
            vp8: None,
            sender_report: None,
        }
    }

    /// Records deliveries; subscriber slot 9 is still waiting for a keyframe.
    #[derive(Default)]
    struct Recorder {
        seen: Vec<Sink>,
        taps: Vec<TapPacket>,
        tap: Option<Tap>,
    }

    impl Deliver for Recorder {
        fn deliver(&mut self, sink: Sink, packet: &Incoming) -> Delivery {
            self.seen.push(sink);
            match sink {
                Sink::Subscriber { subscription, .. }
                    if subscription.0 == 9 && !packet.keyframe =>
                {
                    Delivery::WaitingKeyframe(0)
                }
                Sink::Subscriber { .. } => Delivery::Written {
                    bytes: packet.payload.len() as u64,
                    first: false,
                },
                Sink::Tap(_) => match self.tap.as_mut().unwrap().forward(packet) {
                    Ok(p) => {
                        self.taps.push(p);
                        Delivery::Written {
                            bytes: packet.payload.len() as u64,
                            first: false,
                        }
                    }
                    Err(d) => d,
                },
            }
        }
    }

    fn subscriber(participant: usize, subscription: usize) -> Sink {
        Sink::Subscriber {
            participant: ParticipantSlot(participant),
            subscription: SubscriptionSlot(subscription),
        }
    }

    #[test]
    fn every_sink_once_and_a_waiting_one_asks_for_a_keyframe() {
        let mut sinks = Sinks::default();
        sinks.add(subscriber(1, 0));
        sinks.add(subscriber(2, 9));
        sinks.add(Sink::Tap(TapSlot(0)));
        let mut recorder = Recorder {
            tap: Some(Tap::new(TapId(5), PublicationSlot(0), 0)),
            ..Default::default()
        };
        let result = fan_out(&packet(100, false), &sinks, &mut recorder);
        assert_eq!(
            recorder.seen,
            vec![subscriber(1, 0), subscriber(2, 9), Sink::Tap(TapSlot(0))]
        );
        assert_eq!(
            result,
            FanOut {
                written: 1,
                bytes: 3,
                keyframes_wanted: LayerMask(1)
            }
        );
        // The keyframe starts the tap too, at sequence number 1.
        let result = fan_out(&packet(101, true), &sinks, &mut recorder);
        assert_eq!((result.written, result.keyframes_wanted), (3, LayerMask(0)));
        assert_eq!(recorder.taps.len(), 1);
        assert_eq!((recorder.taps[0].tap, recorder.taps[0].seq), (TapId(5), 1));
        fan_out(&packet(103, false), &sinks, &mut recorder);
        assert_eq!(recorder.taps[1].seq, 3, "the gap is kept");
    }

    #[test]
    fn a_leaving_participant_takes_all_its_sinks() {
        let mut sinks = Sinks::default();
        sinks.add(subscriber(1, 0));
        sinks.add(subscriber(2, 0));
        sinks.add(subscriber(1, 1));
        sinks.add(Sink::Tap(TapSlot(3)));
        sinks.remove_participant(ParticipantSlot(1));
        assert_eq!(
            sinks.iter().collect::<Vec<_>>(),
            vec![subscriber(2, 0), Sink::Tap(TapSlot(3))]
        );
        sinks.remove(Sink::Tap(TapSlot(3)));
        assert_eq!(sinks.iter().count(), 1);
    }
}
