//! Synthetic media: VP8 frames (valid payload descriptor and frame tag, a key frame header with
//! start code and size every `keyframe_every` frames; optionally a picture id, as browsers send
//! and an SFU rewrites when it switches simulcast layers) and Opus 20 ms frames. Every packet
//! ends with a [`Stamp`]: stream id, per-stream packet counter and send time.

use std::{sync::OnceLock, time::Instant};

pub const STAMP_LEN: usize = 16;
const MAGIC: u32 = 0x5346_4c54; // "SFLT"
/// RTP payload budget per video packet (as browsers: ~1200 bytes on the wire).
pub const MAX_PAYLOAD: usize = 1100;

/// Microseconds since this process started measuring (one clock for senders and receivers).
pub fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub stream: u32,
    pub seq: u32,
    pub sent_us: u64,
}

impl Stamp {
    pub fn write(&self, out: &mut [u8]) {
        let n = out.len();
        let tail = &mut out[n - STAMP_LEN..];
        tail[0..2].copy_from_slice(&(MAGIC as u16).to_be_bytes());
        tail[2..4].copy_from_slice(&(self.stream as u16).to_be_bytes());
        tail[4..8].copy_from_slice(&self.seq.to_be_bytes());
        tail[8..16].copy_from_slice(&self.sent_us.to_be_bytes());
    }

    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let n = payload.len();
        if n < STAMP_LEN {
            return None;
        }
        let tail = &payload[n - STAMP_LEN..];
        if u16::from_be_bytes([tail[0], tail[1]]) != MAGIC as u16 {
            return None;
        }
        Some(Stamp {
            stream: u16::from_be_bytes([tail[2], tail[3]]) as u32,
            seq: u32::from_be_bytes(tail[4..8].try_into().ok()?),
            sent_us: u64::from_be_bytes(tail[8..16].try_into().ok()?),
        })
    }
}

/// A simulcast layer: its RID and its share of the publisher's video bitrate.
pub struct SimulcastLayer {
    pub rid: &'static str,
    pub percent: u32,
}

/// The layers a simulcast publisher sends, lowest first (as a browser's `q`/`h`/`f` at ¼, ½
/// and full resolution: Chromium's defaults for 720p are about 150, 500 and 1 700 kbit/s).
pub const SIMULCAST: [SimulcastLayer; 3] = [
    SimulcastLayer {
        rid: "q",
        percent: 10,
    },
    SimulcastLayer {
        rid: "h",
        percent: 30,
    },
    SimulcastLayer {
        rid: "f",
        percent: 100,
    },
];

/// One RTP payload with its marker bit.
pub struct Chunk {
    pub payload: Vec<u8>,
    pub marker: bool,
}

/// Synthetic VP8 at a target bitrate and frame rate.
pub struct Vp8Source {
    frame: u64,
    delta_bytes: usize,
    key_bytes: usize,
    keyframe_every: u64,
    force_key: bool,
    /// The 15-bit picture id of the next frame, when the descriptor carries one.
    picture_id: Option<u16>,
}

impl Vp8Source {
    pub fn new(kbps: u32, fps: u32, keyframe_every: u64) -> Self {
        let avg = (kbps as usize * 1000 / 8 / fps as usize).max(200);
        // A key frame is ~4x a delta frame; the average stays at the target bitrate.
        let k = keyframe_every.max(1) as usize;
        let delta_bytes = avg * k / (k + 3);
        Vp8Source {
            frame: 0,
            delta_bytes,
            key_bytes: delta_bytes * 4,
            keyframe_every,
            force_key: true,
            picture_id: None,
        }
    }

    /// Every frame's descriptor carries a 15-bit picture id (RFC 7741 §4.2, `M` set), as
    /// Chromium's do.
    pub fn with_picture_id(mut self) -> Self {
        self.picture_id = Some(0);
        self
    }

    /// The next frame's packets (payloads without the stamp's values filled in).
    pub fn next_frame(&mut self) -> (bool, Vec<Chunk>) {
        let key = self.force_key || self.frame % self.keyframe_every.max(1) == 0;
        self.force_key = false;
        self.frame += 1;
        let size = if key {
            self.key_bytes
        } else {
            self.delta_bytes
        };
        let mut frame = vec![0u8; size];
        // VP8 frame tag (RFC 6386 9.1): bit 0 = !key frame, show_frame = bit 4.
        frame[0] = if key { 0x10 } else { 0x11 };
        frame[1] = 0x02;
        frame[2] = 0x00;
        if key {
            frame[3..6].copy_from_slice(&[0x9d, 0x01, 0x2a]);
            frame[6..8].copy_from_slice(&640u16.to_le_bytes());
            frame[8..10].copy_from_slice(&360u16.to_le_bytes());
        }
        // RFC 7741 descriptor: S bit on the first packet of the frame, partition 0; with a
        // picture id, X then I, then the id with M (15 bits).
        let descriptor = |start: bool| -> Vec<u8> {
            let s = if start { 0x10 } else { 0x00 };
            match self.picture_id {
                None => vec![s],
                Some(id) => vec![0x80 | s, 0x80, 0x80 | (id >> 8) as u8, id as u8],
            }
        };
        let per = MAX_PAYLOAD - descriptor(false).len() - STAMP_LEN;
        let count = size.div_ceil(per);
        let mut chunks = Vec::with_capacity(count);
        for (i, part) in frame.chunks(per).enumerate() {
            let mut payload = descriptor(i == 0);
            payload.reserve(part.len() + STAMP_LEN);
            payload.extend_from_slice(part);
            payload.extend_from_slice(&[0; STAMP_LEN]);
            chunks.push(Chunk {
                payload,
                marker: i + 1 == count,
            });
        }
        if let Some(id) = &mut self.picture_id {
            *id = (*id + 1) & 0x7fff;
        }
        (key, chunks)
    }
}

/// Opus: one packet per 20 ms.
pub fn opus_frame(bytes: usize) -> Chunk {
    let mut payload = vec![0u8; bytes.max(STAMP_LEN + 2)];
    payload[0] = 0xfc; // TOC: CELT FB 20 ms, one frame
    Chunk {
        payload,
        marker: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        let mut buf = vec![7u8; 40];
        let s = Stamp {
            stream: 9,
            seq: 123456,
            sent_us: 987654321,
        };
        s.write(&mut buf);
        assert_eq!(Stamp::read(&buf), Some(s));
        assert_eq!(Stamp::read(&[0u8; 40]), None);
    }

    #[test]
    fn vp8_frames_have_valid_headers_and_rate() {
        let mut src = Vp8Source::new(1000, 30, 60);
        let (key, chunks) = src.next_frame();
        assert!(key);
        assert_eq!(chunks[0].payload[0], 0x10);
        assert_eq!(chunks[0].payload[1] & 1, 0, "key frame tag");
        assert_eq!(&chunks[0].payload[4..7], &[0x9d, 0x01, 0x2a]);
        assert!(chunks.last().unwrap().marker);
        assert!(chunks.iter().all(|c| c.payload.len() <= MAX_PAYLOAD));
        let mut bytes = chunks.iter().map(|c| c.payload.len()).sum::<usize>();
        for _ in 1..60 {
            let (key, chunks) = src.next_frame();
            assert!(!key);
            assert_eq!(chunks[0].payload[1] & 1, 1, "delta frame tag");
            bytes += chunks.iter().map(|c| c.payload.len()).sum::<usize>();
        }
        let kbps = bytes * 8 / 2 / 1000;
        assert!((900..=1150).contains(&kbps), "{kbps} kbit/s");
    }

    #[test]
    fn picture_ids_count_up_and_wrap_in_15_bits() {
        let mut src = Vp8Source::new(1000, 30, 60).with_picture_id();
        src.picture_id = Some(0x7ffe);
        let ids: Vec<(u16, bool)> = (0..3)
            .map(|_| {
                let (_, chunks) = src.next_frame();
                let p = &chunks[0].payload;
                assert_eq!(p[0], 0x90, "X and S on the frame's first packet");
                assert_eq!(p[1], 0x80, "I");
                assert!(chunks[1..]
                    .iter()
                    .all(|c| c.payload[0] == 0x80 && c.payload.len() <= MAX_PAYLOAD));
                (u16::from_be_bytes([p[2] & 0x7f, p[3]]), p[2] & 0x80 != 0)
            })
            .collect();
        assert_eq!(
            ids.iter().map(|i| i.0).collect::<Vec<_>>(),
            [0x7ffe, 0x7fff, 0]
        );
        assert!(ids.iter().all(|i| i.1), "M: 15-bit ids");
        assert_eq!(
            chunks_key_tag(&mut Vp8Source::new(1000, 30, 60).with_picture_id()),
            [0x9d, 0x01, 0x2a]
        );
    }

    /// The start code of the first (key) frame, after a 4-byte descriptor.
    fn chunks_key_tag(src: &mut Vp8Source) -> [u8; 3] {
        let (key, chunks) = src.next_frame();
        assert!(key);
        chunks[0].payload[7..10].try_into().unwrap()
    }
}
