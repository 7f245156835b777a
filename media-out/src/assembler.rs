//! RTP packets of one stream back into whole frames, in order (sans-IO, time passed in).
//!
//! Packets may arrive out of order, and a lost one may come back as a retransmission a round
//! trip later, so a hole is waited for up to `hold` before it is given up. A video frame is
//! released only whole; after a hole that was not repaired, video is dropped until the next
//! keyframe (the decoder's references are gone) and a keyframe is asked for. Audio skips.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::codec::{append_frame_data, depacketize, keyframe_size, Codec};

/// A buffer this deep is a stream we cannot follow any more (a long hole, a flood): skip to
/// what is there.
const MAX_BUFFERED: usize = 4096;

/// One RTP packet of the stream.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Extended sequence number.
    pub seq: u64,
    pub rtp_time: u32,
    pub marker: bool,
    pub payload: Arc<[u8]>,
    pub arrived: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Extended RTP time.
    pub rtp_time: u64,
    pub keyframe: bool,
    /// A keyframe's picture size.
    pub size: Option<(u16, u16)>,
    pub data: Vec<u8>,
    /// When its first packet arrived.
    pub arrived: Instant,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AssemblerStats {
    pub frames: u64,
    /// Holes given up on.
    pub holes: u64,
    /// Video frames dropped while waiting for a keyframe.
    pub dropped_frames: u64,
    /// Packets that came after their place was given up, or twice.
    pub late_packets: u64,
    /// Payloads that are not what the codec says.
    pub malformed: u64,
}

#[derive(Debug)]
pub struct FrameAssembler {
    codec: Codec,
    hold: Duration,
    buffer: BTreeMap<u64, Packet>,
    /// The next sequence number to release (the first packet of a frame).
    next: Option<u64>,
    /// Video: nothing is released before a keyframe.
    waiting_keyframe: bool,
    keyframe_wanted: bool,
    /// Extends 32-bit RTP times: the last (32-bit, extended) pair.
    last_time: Option<(u32, u64)>,
    stats: AssemblerStats,
}

enum Head {
    /// Sequence numbers `next..=end` make a frame.
    Whole(u64),
    /// `missing` is missing from the frame at `next`.
    Missing(u64),
    /// The packet at `next` does not start a frame (or is unusable).
    NotAStart,
}

impl FrameAssembler {
    pub fn new(codec: Codec, hold: Duration) -> Self {
        FrameAssembler {
            codec,
            hold,
            buffer: BTreeMap::new(),
            next: None,
            waiting_keyframe: codec.is_video(),
            keyframe_wanted: false,
            last_time: None,
            stats: AssemblerStats::default(),
        }
    }

    pub fn stats(&self) -> AssemblerStats {
        self.stats
    }

    /// Whether a keyframe should be asked for (once per unrepaired hole).
    pub fn take_keyframe_wanted(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_wanted)
    }

    pub fn push(&mut self, packet: Packet) {
        if self.next.is_some_and(|next| packet.seq < next) || self.buffer.contains_key(&packet.seq)
        {
            self.stats.late_packets += 1;
            return;
        }
        self.buffer.insert(packet.seq, packet);
        if self.buffer.len() > MAX_BUFFERED {
            let first = *self.buffer.keys().next().expect("not empty");
            self.give_up(first + 1);
        }
    }

    /// When [`pop`](Self::pop) may release something without another packet.
    pub fn deadline(&self) -> Option<Instant> {
        self.buffer.values().map(|p| p.arrived + self.hold).min()
    }

    /// The next whole frame, if there is one by `now`.
    pub fn pop(&mut self, now: Instant) -> Option<Frame> {
        loop {
            let (&first, packet) = self.buffer.first_key_value()?;
            let next = *self.next.get_or_insert(first);
            if first > next {
                // A hole before anything we have.
                if now < packet.arrived + self.hold {
                    return None;
                }
                self.give_up(first);
                continue;
            }
            match self.head(next) {
                Head::Whole(end) => {
                    let frame = self.take_frame(next, end);
                    self.next = Some(end + 1);
                    let Some(frame) = frame else { continue };
                    if self.waiting_keyframe && !frame.keyframe {
                        self.stats.dropped_frames += 1;
                        continue;
                    }
                    self.waiting_keyframe = false;
                    self.stats.frames += 1;
                    return Some(frame);
                }
                Head::Missing(missing) => {
                    let after = self.buffer.range(missing..).next().map(|(_, p)| p.arrived);
                    if after.is_none_or(|arrived| now < arrived + self.hold) {
                        return None;
                    }
                    // The frame cannot be completed: its packets go, and the next frame start
                    // after the hole is where we go on.
                    self.give_up(missing + 1);
                }
                Head::NotAStart => {
                    self.buffer.remove(&next);
                    self.next = Some(next + 1);
                }
            }
        }
    }

    /// Everything still held is given up on: the whole frames are released (a recording that
    /// ends).
    pub fn drain(&mut self) -> Vec<Frame> {
        let far = self
            .buffer
            .values()
            .map(|p| p.arrived)
            .max()
            .map(|t| t + self.hold);
        let mut frames = Vec::new();
        if let Some(far) = far {
            while let Some(frame) = self.pop(far) {
                frames.push(frame);
            }
        }
        frames
    }

    /// Drops what is before `from` and goes on from the next frame start at or after it.
    fn give_up(&mut self, from: u64) {
        self.stats.holes += 1;
        self.buffer = self.buffer.split_off(&from);
        self.next = self.buffer.keys().next().copied();
        if self.codec.is_video() {
            if !self.waiting_keyframe {
                self.keyframe_wanted = true;
            }
            self.waiting_keyframe = true;
        }
    }

    fn head(&mut self, next: u64) -> Head {
        let mut expected = next;
        let mut time = None;
        for (&seq, packet) in self.buffer.range(next..) {
            if seq != expected {
                return Head::Missing(expected);
            }
            let Ok(fragment) = depacketize(self.codec, &packet.payload) else {
                return Head::NotAStart;
            };
            match time {
                None if !fragment.starts_frame => return Head::NotAStart,
                None => time = Some(packet.rtp_time),
                // A new frame began before the marker (a lost marker): the frame ends here.
                Some(t) if t != packet.rtp_time => return Head::Whole(seq - 1),
                Some(_) => {}
            }
            if packet.marker || self.codec == Codec::Opus {
                return Head::Whole(seq);
            }
            expected += 1;
        }
        Head::Missing(expected)
    }

    /// Takes packets `from..=to` out as one frame (`None` if a payload is malformed).
    fn take_frame(&mut self, from: u64, to: u64) -> Option<Frame> {
        let rest = self.buffer.split_off(&(to + 1));
        let packets = std::mem::replace(&mut self.buffer, rest);
        let first = packets.values().next()?;
        let (rtp_time, arrived) = (first.rtp_time, first.arrived);
        let mut data = Vec::new();
        for packet in packets.values() {
            if append_frame_data(self.codec, &packet.payload, &mut data).is_err() {
                self.stats.malformed += 1;
                return None;
            }
        }
        debug_assert!(packets.keys().next() == Some(&from));
        let size = keyframe_size(self.codec, &data);
        Some(Frame {
            rtp_time: self.extend(rtp_time),
            keyframe: size.is_some() || self.codec == Codec::Opus,
            size,
            data,
            arrived,
        })
    }

    fn extend(&mut self, time: u32) -> u64 {
        let extended = match self.last_time {
            None => u64::from(time) + (1 << 32), // room to go back a little
            Some((last, last_extended)) => {
                last_extended.wrapping_add_signed(i64::from(time.wrapping_sub(last) as i32))
            }
        };
        self.last_time = Some((time, extended));
        extended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VP8_KEY: [u8; 10] = [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];

    struct Stream {
        t0: Instant,
        seq: u64,
    }

    impl Stream {
        fn new() -> Self {
            Stream {
                t0: Instant::now(),
                seq: 100,
            }
        }

        /// A VP8 frame at `ms` in `parts` packets.
        fn vp8(&mut self, ms: u64, key: bool, parts: usize) -> Vec<Packet> {
            (0..parts)
                .map(|i| {
                    let mut payload = vec![if i == 0 { 0x10 } else { 0x00 }];
                    if i == 0 && key {
                        payload.extend_from_slice(&VP8_KEY);
                    } else {
                        payload.extend_from_slice(&[0x01, i as u8, 0xEE]);
                    }
                    self.packet(ms, i + 1 == parts, payload)
                })
                .collect()
        }

        fn packet(&mut self, ms: u64, marker: bool, payload: Vec<u8>) -> Packet {
            self.seq += 1;
            Packet {
                seq: self.seq,
                rtp_time: (ms * 90) as u32,
                marker,
                payload: payload.into(),
                arrived: self.t0 + Duration::from_millis(ms),
            }
        }
    }

    fn hold() -> Duration {
        Duration::from_millis(500)
    }

    #[test]
    fn frames_come_whole_and_in_order_whatever_the_arrival_order() {
        let mut s = Stream::new();
        let mut a = FrameAssembler::new(Codec::Vp8, hold());
        let mut packets: Vec<Packet> = (0..5).flat_map(|i| s.vp8(i * 100, i == 0, 3)).collect();
        packets.swap(1, 4);
        packets.reverse();
        let now = s.t0 + Duration::from_millis(400);
        for p in packets {
            a.push(p);
        }
        let frames: Vec<Frame> = std::iter::from_fn(|| a.pop(now)).collect();
        assert_eq!(frames.len(), 5);
        assert!(frames[0].keyframe && frames[0].size == Some((320, 240)));
        assert!(frames
            .windows(2)
            .all(|w| w[1].rtp_time == w[0].rtp_time + 9000));
        assert_eq!(
            frames[1].data,
            [0x01, 0, 0xEE, 0x01, 1, 0xEE, 0x01, 2, 0xEE]
        );
        assert_eq!(a.stats().frames, 5);
    }

    #[test]
    fn video_starts_on_a_keyframe() {
        let mut s = Stream::new();
        let mut a = FrameAssembler::new(Codec::Vp8, hold());
        for p in (0..4).flat_map(|i| s.vp8(i * 100, i == 2, 2)) {
            a.push(p);
        }
        let frames: Vec<Frame> = std::iter::from_fn(|| a.pop(s.t0)).collect();
        assert_eq!(frames.len(), 2);
        assert!(frames[0].keyframe);
        assert_eq!(a.stats().dropped_frames, 2);
    }

    #[test]
    fn a_hole_is_waited_for_then_given_up_until_the_next_keyframe() {
        let mut s = Stream::new();
        let mut a = FrameAssembler::new(Codec::Vp8, hold());
        let mut packets: Vec<Packet> = (0..6)
            .flat_map(|i| s.vp8(i * 100, i == 0 || i == 4, 2))
            .collect();
        let lost = packets.remove(3); // frame 1's second packet
        for p in packets {
            a.push(p);
        }
        let t = |ms| s.t0 + Duration::from_millis(ms);
        assert!(a.pop(t(500)).unwrap().keyframe);
        assert_eq!(a.pop(t(500)), None, "frame 1 waits for its packet");
        assert_eq!(
            a.deadline(),
            Some(t(600)),
            "until the packet after the hole is 500 ms old"
        );
        // The retransmission comes in time: everything is released.
        let mut repaired = FrameAssembler::new(Codec::Vp8, hold());
        let mut s2 = Stream::new();
        let mut again: Vec<Packet> = (0..6)
            .flat_map(|i| s2.vp8(i * 100, i == 0 || i == 4, 2))
            .collect();
        let late = again.remove(3);
        for p in again {
            repaired.push(p);
        }
        repaired.push(late);
        assert_eq!(std::iter::from_fn(|| repaired.pop(t(500))).count(), 6);
        // Not repaired: frames 1–3 go, a keyframe is asked for once, frame 4 (a keyframe) on.
        let frames: Vec<Frame> = std::iter::from_fn(|| a.pop(t(1100))).collect();
        assert_eq!(frames.len(), 2);
        assert!(frames[0].keyframe);
        assert!(a.take_keyframe_wanted());
        assert!(!a.take_keyframe_wanted());
        assert_eq!(
            a.stats().dropped_frames,
            2,
            "frames 2 and 3 waited for the keyframe"
        );
        // The lost packet comes too late: ignored.
        a.push(lost);
        assert_eq!(a.stats().late_packets, 1);
    }

    #[test]
    fn audio_skips_holes_and_times_are_extended_across_the_wrap() {
        let t0 = Instant::now();
        let mut a = FrameAssembler::new(Codec::Opus, hold());
        let start = u32::MAX - 960 * 2;
        for (i, seq) in [1u64, 2, 4, 5].into_iter().enumerate() {
            a.push(Packet {
                seq,
                rtp_time: start.wrapping_add(960 * seq as u32),
                marker: i == 0,
                payload: vec![0xF8, seq as u8].into(),
                arrived: t0 + Duration::from_millis(20 * seq),
            });
        }
        let early: Vec<Frame> =
            std::iter::from_fn(|| a.pop(t0 + Duration::from_millis(100))).collect();
        assert_eq!(early.len(), 2, "3 is waited for");
        let rest: Vec<Frame> = std::iter::from_fn(|| a.pop(t0 + Duration::from_secs(1))).collect();
        assert_eq!(rest.len(), 2);
        assert_eq!(
            rest[0].rtp_time - early[0].rtp_time,
            960 * 3,
            "across the 32-bit wrap"
        );
        assert!(!a.take_keyframe_wanted(), "audio asks for nothing");
        assert_eq!(a.stats().holes, 1);
    }

    #[test]
    fn garbage_is_dropped_and_a_flood_does_not_grow_without_bound() {
        let t0 = Instant::now();
        let mut a = FrameAssembler::new(Codec::Vp8, hold());
        for seq in 0..(MAX_BUFFERED as u64 + 100) {
            // Every other packet missing: nothing is ever whole.
            a.push(Packet {
                seq: seq * 2,
                rtp_time: seq as u32,
                marker: false,
                payload: vec![0x90].into(), // truncated descriptor
                arrived: t0,
            });
        }
        assert!(a.buffer.len() <= MAX_BUFFERED);
        assert_eq!(a.pop(t0 + Duration::from_secs(1)), None);
        assert!(a.buffer.is_empty());
    }
}
