//! What each subscription rewrites in a forwarded packet (sans-IO).
//!
//! str0m rewrites what differs per connection when it serialises a packet (SSRC, header
//! extension ids, MID), so of a munger three things are left to us:
//! - which **layer** of a simulcast publication goes out, and switching between layers so that
//!   the subscriber sees one continuous stream ([`LayerSwitch`]): sequence numbers without
//!   jumps, timestamps that never go backwards, VP8 picture ids and TL0PICIDX that go on
//!   counting. str0m's RTP mode takes the *extended* (64-bit) sequence number from the caller,
//!   and a subscriber that joins a long-running stream must start near zero (RFC 3711 ROC 0,
//!   no out-of-band signalling), so sequence numbers are rebased from the first packet on;
//! - payload types ([`PtMap`]): publisher PT → the subscriber's PT for the same codec.
//!
//! The rules follow LiveKit's forwarder and mediasoup's `SimulcastConsumer`: switch only on a
//! keyframe of the target layer; the first packet after a switch is numbered one after the
//! last one sent, or two when the last frame was cut short (no marker), so the decoder sees
//! a hole and drops the incomplete frame instead of decoding garbage (versatica/mediasoup#408);
//! the new layer's timestamps continue from the last one sent plus the wall-clock time
//! between the two packets (the layers' RTP clocks have unrelated random offsets).

use std::time::Instant;

/// What the switch needs to know about one publisher packet.
#[derive(Debug, Clone, Copy)]
pub struct PacketFacts {
    pub layer: u8,
    /// The publisher's extended sequence number (per layer: each layer is its own stream).
    pub seq: u64,
    pub rtp_time: u32,
    /// A stream may start (or switch) here: the first packet of a keyframe; every audio packet.
    pub start: bool,
    pub marker: bool,
    pub arrived: Instant,
    /// RTP clock rate (Hz).
    pub clock_rate: u32,
    /// VP8 picture id and TL0PICIDX, when the payload descriptor has them.
    pub vp8: Option<Vp8Ids>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Ids {
    /// 15-bit (Chromium always sends the long form).
    pub picture_id: u16,
    pub tl0_pic_idx: Option<u8>,
}

/// Where a forwarded packet goes in the subscriber's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped {
    pub seq: u64,
    pub rtp_time: u32,
    /// VP8 ids to write into the payload descriptor, when they differ from the publisher's.
    pub vp8: Option<Vp8Ids>,
    /// The first packet this subscription sends.
    pub first: bool,
}

/// Why a packet is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Nothing is forwarded yet (or since a pause ended): waiting for a keyframe of this layer.
    WaitingKeyframe(u8),
    /// Not the forwarded layer, older than the switch to it, or the subscription is paused.
    NotForwarded,
}

const PICTURE_ID_MODULO: u16 = 1 << 15;

/// One subscription's choice of layer and the rewriting that hides its switches.
#[derive(Debug, Clone, Default)]
pub struct LayerSwitch {
    /// The layer forwarded now; `None` before the first start point and while paused.
    current: Option<u8>,
    /// The layer wanted; `None` = paused.
    target: Option<u8>,
    /// Subscriber seq = publisher seq + `seq_offset` (wrapping), for the current layer.
    seq_offset: u64,
    ts_offset: u32,
    picture_id_offset: u16,
    tl0_offset: u8,
    /// The current layer's publisher seq where forwarding it began: older packets stay behind.
    since: u64,
    /// The highest-numbered packet sent so far.
    last: Option<Sent>,
}

#[derive(Debug, Clone, Copy)]
struct Sent {
    seq: u64,
    rtp_time: u32,
    at: Instant,
    marker: bool,
    vp8: Option<Vp8Ids>,
}

impl LayerSwitch {
    /// A switch that wants `target` from the start.
    pub fn new(target: Option<u8>) -> Self {
        LayerSwitch {
            target,
            ..Default::default()
        }
    }

    /// Wants another layer, or `None` to pause. Pausing takes effect at once; a new layer
    /// at its next keyframe (until then the current one goes on).
    pub fn set_target(&mut self, target: Option<u8>) {
        self.target = target;
        if target.is_none() {
            self.current = None;
        }
    }

    pub fn target(&self) -> Option<u8> {
        self.target
    }

    pub fn current(&self) -> Option<u8> {
        self.current
    }

    /// The layer a keyframe is wanted on (a switch or a start is pending).
    pub fn keyframe_wanted(&self) -> Option<u8> {
        self.target.filter(|t| self.current != Some(*t))
    }

    /// Whether a packet was forwarded yet.
    pub fn started(&self) -> bool {
        self.last.is_some()
    }

    /// Where `packet` goes in the subscriber's stream, or why it does not.
    pub fn map(&mut self, packet: &PacketFacts) -> Result<Mapped, Held> {
        let switch_here =
            packet.start && self.target == Some(packet.layer) && self.current != Some(packet.layer);
        if switch_here {
            self.switch_to(packet);
        } else if self.current != Some(packet.layer) {
            return Err(match self.current {
                None => self
                    .target
                    .map_or(Held::NotForwarded, Held::WaitingKeyframe),
                Some(_) => Held::NotForwarded,
            });
        } else if packet.seq < self.since {
            return Err(Held::NotForwarded);
        }
        let first = self.last.is_none();
        let seq = packet.seq.wrapping_add(self.seq_offset);
        let rtp_time = packet.rtp_time.wrapping_add(self.ts_offset);
        let vp8 = packet.vp8.map(|ids| Vp8Ids {
            picture_id: ids.picture_id.wrapping_add(self.picture_id_offset) % PICTURE_ID_MODULO,
            tl0_pic_idx: ids.tl0_pic_idx.map(|t| t.wrapping_add(self.tl0_offset)),
        });
        if self.last.is_none_or(|last| seq > last.seq) {
            self.last = Some(Sent {
                seq,
                rtp_time,
                at: packet.arrived,
                marker: packet.marker,
                vp8,
            });
        }
        let rewritten = self.picture_id_offset != 0 || self.tl0_offset != 0;
        Ok(Mapped {
            seq,
            rtp_time,
            vp8: vp8.filter(|_| rewritten),
            first,
        })
    }

    fn switch_to(&mut self, packet: &PacketFacts) {
        let (seq, rtp_time) = match self.last {
            // The very first packet: numbering starts at 1, the publisher's clock is kept.
            None => (1, packet.rtp_time),
            Some(last) => {
                let seq = last.seq + if last.marker { 1 } else { 2 };
                let elapsed = packet.arrived.saturating_duration_since(last.at);
                let ticks = (elapsed.as_secs_f64() * f64::from(packet.clock_rate)) as u32;
                (seq, last.rtp_time.wrapping_add(ticks.max(1)))
            }
        };
        self.seq_offset = seq.wrapping_sub(packet.seq);
        self.ts_offset = rtp_time.wrapping_sub(packet.rtp_time);
        match (self.last.and_then(|l| l.vp8), packet.vp8) {
            (Some(last), Some(ids)) => {
                let next = (last.picture_id + 1) % PICTURE_ID_MODULO;
                self.picture_id_offset = (next + PICTURE_ID_MODULO
                    - ids.picture_id % PICTURE_ID_MODULO)
                    % PICTURE_ID_MODULO;
                if let (Some(last_tl0), Some(tl0)) = (last.tl0_pic_idx, ids.tl0_pic_idx) {
                    self.tl0_offset = last_tl0.wrapping_add(1).wrapping_sub(tl0);
                }
            }
            _ => {
                self.picture_id_offset = 0;
                self.tl0_offset = 0;
            }
        }
        self.since = packet.seq;
        self.current = Some(packet.layer);
    }
}

/// Payload type map of one subscription: publisher PT → subscriber PT, learnt lazily (the
/// publisher's codec is known only from its packets; the mapping itself is str0m's
/// `CodecConfig::match_params`).
#[derive(Debug, Clone)]
pub struct PtMap {
    /// 0 = not looked up yet, [`PtMap::NONE`] = the subscriber cannot receive this codec.
    slots: [u8; 128],
}

impl Default for PtMap {
    fn default() -> Self {
        PtMap { slots: [0; 128] }
    }
}

impl PtMap {
    const NONE: u8 = 0xff;

    /// The subscriber PT for `publisher_pt`, looking it up with `lookup` the first time.
    pub fn get(&mut self, publisher_pt: u8, lookup: impl FnOnce() -> Option<u8>) -> Option<u8> {
        let slot = self.slots.get_mut(usize::from(publisher_pt))?;
        if *slot == 0 {
            *slot = lookup()
                .filter(|pt| *pt != 0 && *pt < 128)
                .unwrap_or(Self::NONE);
        }
        (*slot != Self::NONE).then_some(*slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    fn at(ms: u64) -> Instant {
        // One base instant for the whole test binary: `at(0)` in two tests is the same time.
        static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *BASE.get_or_init(Instant::now) + Duration::from_millis(ms)
    }

    fn video(layer: u8, seq: u64, rtp_time: u32, start: bool, ms: u64) -> PacketFacts {
        PacketFacts {
            layer,
            seq,
            rtp_time,
            start,
            marker: true,
            arrived: at(ms),
            clock_rate: 90_000,
            vp8: None,
        }
    }

    fn seq_of(r: Result<Mapped, Held>) -> Option<u64> {
        r.ok().map(|m| m.seq)
    }

    #[test]
    fn starts_at_one_on_a_keyframe_and_keeps_gaps() {
        let mut s = LayerSwitch::new(Some(0));
        assert!(!s.started());
        assert_eq!(
            s.map(&video(0, 69_999, 0, false, 0)),
            Err(Held::WaitingKeyframe(0))
        );
        let first = s.map(&video(0, 70_000, 9000, true, 0)).unwrap();
        assert_eq!((first.seq, first.rtp_time, first.first), (1, 9000, true));
        assert_eq!(seq_of(s.map(&video(0, 70_001, 9000, false, 1))), Some(2));
        // Lost upstream: the gap stays, and a late retransmission fills it.
        assert_eq!(seq_of(s.map(&video(0, 70_004, 12_000, false, 40))), Some(5));
        assert_eq!(seq_of(s.map(&video(0, 70_003, 12_000, false, 41))), Some(4));
        // Older than the subscription: not forwarded.
        assert_eq!(
            s.map(&video(0, 69_998, 0, false, 42)),
            Err(Held::NotForwarded)
        );
        assert!(s.started());
    }

    #[test]
    fn audio_starts_anywhere() {
        let mut s = LayerSwitch::new(Some(0));
        let audio = |seq, ms| PacketFacts {
            start: true,
            clock_rate: 48_000,
            ..video(0, seq, 960 * seq as u32, true, ms)
        };
        assert_eq!(seq_of(s.map(&audio(500, 0))), Some(1));
        assert_eq!(seq_of(s.map(&audio(501, 20))), Some(2));
    }

    #[test]
    fn switches_only_on_a_keyframe_of_the_target_and_the_stream_stays_continuous() {
        let mut s = LayerSwitch::new(Some(0));
        // Layer 0 (its own sequence and clock) is forwarded…
        for i in 0..3u64 {
            s.map(&video(0, 100 + i, 3000 * i as u32, i == 0, 33 * i))
                .unwrap();
        }
        assert_eq!(s.current(), Some(0));
        // …the page wants layer 2: until its keyframe, layer 0 goes on, layer 2 waits.
        s.set_target(Some(2));
        assert_eq!(s.keyframe_wanted(), Some(2));
        assert_eq!(
            s.map(&video(2, 5000, 777_000, false, 99)),
            Err(Held::NotForwarded)
        );
        assert_eq!(seq_of(s.map(&video(0, 103, 9000, false, 99))), Some(4));
        // A keyframe of layer 1 is no switch point for a subscriber that wants 2.
        assert_eq!(s.map(&video(1, 40, 5, true, 100)), Err(Held::NotForwarded));
        // Layer 2's keyframe, 34 ms after the last packet sent.
        let switched = s.map(&video(2, 5001, 780_000, true, 133)).unwrap();
        assert_eq!(switched.seq, 5, "one after the last one sent");
        assert_eq!(
            switched.rtp_time,
            9000 + 34 * 90,
            "continues by the wall clock"
        );
        assert_eq!(s.current(), Some(2));
        assert_eq!(s.keyframe_wanted(), None);
        assert_eq!(
            s.map(&video(2, 5002, 783_000, false, 166))
                .unwrap()
                .rtp_time,
            9000 + 34 * 90 + 3000
        );
        // Late packets of the old layer, and of the new one from before the switch, stay behind.
        assert_eq!(
            s.map(&video(0, 104, 12_000, false, 167)),
            Err(Held::NotForwarded)
        );
        assert_eq!(
            s.map(&video(2, 5000, 777_000, false, 168)),
            Err(Held::NotForwarded)
        );
    }

    #[test]
    fn a_frame_cut_short_leaves_a_hole_so_the_decoder_drops_it() {
        let mut s = LayerSwitch::new(Some(1));
        s.map(&video(1, 10, 0, true, 0)).unwrap();
        // The last packet sent is in the middle of a frame (no marker).
        s.map(&PacketFacts {
            marker: false,
            ..video(1, 11, 3000, false, 33)
        })
        .unwrap();
        s.set_target(Some(0));
        assert_eq!(seq_of(s.map(&video(0, 900, 1, true, 40))), Some(4));
    }

    #[test]
    fn timestamps_never_go_backwards_across_switches() {
        let mut s = LayerSwitch::new(Some(0));
        s.map(&video(0, 1, u32::MAX - 10, true, 0)).unwrap();
        s.set_target(Some(1));
        // Arrives at the same instant: still one tick later, wrapping.
        let m = s.map(&video(1, 1, 5, true, 0)).unwrap();
        assert_eq!(m.rtp_time, (u32::MAX - 10).wrapping_add(1));
        s.set_target(Some(0));
        let m = s.map(&video(0, 2, 0, true, 100)).unwrap();
        assert_eq!(m.rtp_time, (u32::MAX - 9).wrapping_add(9000));
    }

    #[test]
    fn a_pause_stops_at_once_and_a_resume_waits_for_a_keyframe() {
        let mut s = LayerSwitch::new(Some(0));
        s.map(&video(0, 1, 0, true, 0)).unwrap();
        s.set_target(None);
        assert_eq!(
            s.map(&video(0, 2, 3000, false, 33)),
            Err(Held::NotForwarded)
        );
        assert_eq!(s.keyframe_wanted(), None);
        s.set_target(Some(0));
        assert_eq!(
            s.map(&video(0, 3, 6000, false, 66)),
            Err(Held::WaitingKeyframe(0))
        );
        let m = s.map(&video(0, 4, 9000, true, 100)).unwrap();
        assert_eq!(
            (m.seq, m.first),
            (2, false),
            "numbering goes on after the pause"
        );
        assert_eq!(m.rtp_time, 100 * 90);
    }

    #[test]
    fn vp8_picture_ids_and_tl0picidx_continue_across_a_switch() {
        let with_ids = |p: PacketFacts, picture_id, tl0| PacketFacts {
            vp8: Some(Vp8Ids {
                picture_id,
                tl0_pic_idx: Some(tl0),
            }),
            ..p
        };
        let mut s = LayerSwitch::new(Some(0));
        let m = s
            .map(&with_ids(video(0, 1, 0, true, 0), 32_766, 255))
            .unwrap();
        assert_eq!(m.vp8, None, "nothing to rewrite before a switch");
        let m = s
            .map(&with_ids(video(0, 2, 3000, false, 33), 32_767, 0))
            .unwrap();
        assert_eq!(m.vp8, None);
        s.set_target(Some(1));
        let m = s
            .map(&with_ids(video(1, 50, 7, true, 66), 1000, 17))
            .unwrap();
        assert_eq!(
            m.vp8,
            Some(Vp8Ids {
                picture_id: 0,
                tl0_pic_idx: Some(1)
            }),
            "one after the last, wrapping at 15 bits and 8 bits"
        );
        let m = s
            .map(&with_ids(video(1, 51, 3007, false, 99), 1001, 18))
            .unwrap();
        assert_eq!(
            m.vp8,
            Some(Vp8Ids {
                picture_id: 1,
                tl0_pic_idx: Some(2)
            })
        );
    }

    #[test]
    fn pt_map_looks_up_once() {
        let mut m = PtMap::default();
        let mut calls = 0;
        for (pt, expected) in [
            (96, Some(100)),
            (96, Some(100)),
            (111, None),
            (111, None),
            (200, None),
        ] {
            let got = m.get(pt, || {
                calls += 1;
                (pt == 96).then_some(100)
            });
            assert_eq!(got, expected, "pt {pt}");
        }
        // One lookup each for 96 and 111; 200 is not a payload type.
        assert_eq!(calls, 2);
    }
}
